"""The rendered book, as a reader sees it: build it, serve it on localhost, open every chapter in
headless Chromium (Debian's package, driven by Playwright with `executable_path`), screenshot it,
and check figures, errors, math and the claims ledger.

Marked `book`: scripts/test.sh runs it after the unit tests and nbval (so the training runs are
already in the shared results cache). Chromium is installed with apt when missing and we are
root; otherwise the test is skipped with the reason — except in CI (CI=true), where it must run.
Screenshots are kept in `_build/screenshots/` (build artefacts, not committed).
"""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.book


def _skip_or_fail(reason):
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, text=True)
        exe = shutil.which("chromium")
        if exe:
            return exe
        _skip_or_fail(f"could not install Debian's chromium: {r.stderr[-500:]}")
    _skip_or_fail("Debian's chromium is not installed and cannot be installed here (not root / no apt-get)")


@pytest.fixture(scope="module")
def book():
    r = subprocess.run(["bash", str(ROOT / "scripts" / "book.sh")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"book build failed:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    return HTML


@pytest.fixture(scope="module")
def server(book):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


def chapter_pages():
    # each chapter's source is notebooks/NN_slug.md (the .ipynb beside it is a generated copy)
    return sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.md"))


def test_every_chapter_renders(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = []
    for name in chapter_pages():
        page.goto(f"{server}/notebooks/{name}.html", wait_until="load")
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        imgs = page.eval_on_selector_all(
            ".cell_output img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
        if not imgs:
            problems.append(f"{name}: no figure in any cell output")
        bad = [i for i in imgs if not (i[0] and i[1] > 0 and i[2] > 0)]
        if bad:
            problems.append(f"{name}: {len(bad)} of {len(imgs)} images did not load")
        outputs = page.inner_text("main") if page.query_selector("main") else page.inner_text("body")
        for marker in ("Traceback (most recent call last)", "ClaimFailed", "CellExecutionError"):
            if marker in outputs:
                problems.append(f"{name}: output contains {marker!r}")
        if not page.query_selector(".math, mjx-container, span.math, div.math"):
            problems.append(f"{name}: no math on the page")
        shown = page.eval_on_selector_all(".nclib-claim", "els => els.map(e => e.id)")
        if not shown:
            problems.append(f"{name}: no claim or check displayed")
        if any(not i.startswith("claim-") for i in shown):
            problems.append(f"{name}: a claim display without its claim-<id> anchor")
    page.close()
    assert not problems, "\n".join(problems)


def _anchor(id):
    return "claim-" + re.sub(r"[^A-Za-z0-9_-]", "-", id)


def test_claims_ledger_lists_every_chapters_claims(server, browser, book):
    records = json.loads((book / "_static" / "claims.json").read_text())
    reps = [r for r in records if r["kind"] == "reproduction"]
    checks = [r for r in records if r["kind"] == "check"]
    chapters_with_claims = {r["doc"].split("/")[-1] for r in records}
    assert set(chapter_pages()) <= chapters_with_claims, "some chapters recorded no claims"
    assert reps and checks
    for r in reps:  # every reproduction claim shows n >= 3 and an interval
        assert r["profile"] != "quick" or (r["n"] >= 3 and len(r["values"]) == r["n"]), r["id"]
        assert len(r["interval"]) == 2 and r["interval"][0] <= r["interval"][1], r["id"]
        assert r["method"] != "range" or r["interval"][0] <= r["statistic"] <= r["interval"][1], r["id"]
        assert r["method"] in ("range", "bootstrap") and r["expected"], r["id"]

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server}/book/claims_ledger.html", wait_until="load")
    page.screenshot(path=str(SHOTS / "claims_ledger.png"), full_page=True)
    text = page.inner_text("main")
    rows = page.eval_on_selector_all("details.nclib-claim-row", """els => els.map(e => ({
        id: e.dataset.claimId, status: e.querySelector('.nclib-c-status .nclib-badge').textContent,
        href: e.querySelector('a.nclib-id').href,
        source: (e.querySelector('.nclib-c-source a') || {}).href || null,
        detail: e.querySelector('.nclib-detail').textContent}))""")
    check_rows = page.eval_on_selector_all("tr.nclib-check-row", """els => els.map(e => ({
        id: e.dataset.claimId, status: e.querySelector('.nclib-badge').textContent,
        href: e.querySelector('a.nclib-id').href}))""")
    summary_rows = page.query_selector_all("tr.nclib-summary-row")
    # every row open: the page still fits a 1280 px window, no cell overflows
    page.eval_on_selector_all("details.nclib-claim-row", "els => els.forEach(e => e.open = true)")
    overflow = page.evaluate("""() => {
        const bad = [];
        if (document.documentElement.scrollWidth > window.innerWidth) bad.push('page ' + document.documentElement.scrollWidth);
        for (const el of document.querySelectorAll('.nclib-ledger, .nclib-ledger td, .nclib-ledger th, .nclib-c, .nclib-detail dd'))
            if (el.scrollWidth > el.clientWidth + 1) bad.push((el.closest('[data-claim-id]') || {dataset: {}}).dataset.claimId + ' ' + el.className);
        return bad;
    }""")
    assert not overflow, f"the ledger does not fit 1280 px: {overflow[:10]}"

    assert [r["id"] for r in rows] == [r["id"] for r in reps]
    assert [r["id"] for r in check_rows] == [r["id"] for r in checks]
    assert len(summary_rows) == len(chapters_with_claims)
    for r in records:
        assert r["id"] in text, f"claim {r['id']} missing from the ledger page"
    by_id = {r["id"]: r for r in records}
    for row in rows + check_rows:
        assert row["status"] == by_id[row["id"]]["status"], row["id"]
    for row, r in zip(rows, reps):
        assert r["statement"] in row["detail"] and (not r["note"] or r["note"] in row["detail"]), r["id"]
    # ids link to the claim's display in its chapter; sources to the bibliography entries
    targets = {}
    for row in rows + check_rows:
        url, _, frag = row["href"].partition("#")
        assert frag == _anchor(row["id"]) and url.endswith(by_id[row["id"]]["doc"] + ".html"), row
        targets.setdefault(url, []).append(frag)
    bib = {}
    for row in rows:
        assert row["source"], f"{row['id']}: source {by_id[row['id']]['source']!r} not in the bibliography"
        url, _, frag = row["source"].partition("#")
        assert url.endswith("book/bibliography.html"), row
        bib.setdefault(url, []).append(frag)
    missing = []
    for url, frags in {**targets, **bib}.items():
        page.goto(url, wait_until="load")
        ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
        missing += [f"{url}#{f}" for f in frags if f not in ids]
    page.close()
    assert not missing, f"ledger links to missing anchors: {missing[:10]}"
