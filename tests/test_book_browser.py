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
    return sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


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
        if not page.query_selector(".nclib-claim"):
            problems.append(f"{name}: no reproduction check displayed")
    page.close()
    assert not problems, "\n".join(problems)


def test_claims_ledger_lists_every_chapters_claims(server, browser, book):
    records = json.loads((book / "_static" / "claims.json").read_text())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server}/book/claims_ledger.html", wait_until="load")
    page.screenshot(path=str(SHOTS / "claims_ledger.png"), full_page=True)
    rows = page.query_selector_all("tr.nclib-claim-row")
    text = page.inner_text("main")
    page.close()
    chapters_with_claims = {r["doc"].split("/")[-1] for r in records}
    assert set(chapter_pages()) <= chapters_with_claims, "some chapters recorded no claims"
    assert len(rows) == len(records) > 0
    for r in records:
        assert r["id"] in text, f"claim {r['id']} missing from the ledger page"
