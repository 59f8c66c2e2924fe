"""The rendered book, as a reader sees it: build it, serve it on localhost, open every page in
headless Chromium (Debian's package, driven by Playwright with `executable_path`) with every
request to another host blocked (a classroom without internet), screenshot it, and check
typeset math (MathJax served by the book), stray dollars, figures readable at their rendered
width, tables, progress bars, raw reprs, errors, the bibliography and the claims ledger.

Marked `book`: scripts/test.sh runs it after the unit tests and nbval (so the training runs are
already in the shared results cache). Chromium is installed with apt when missing and we are
root; otherwise the test is skipped with the reason — except in CI (CI=true), where it must run.
Screenshots of every page are kept in `_build/screenshots/` (build artefacts, not committed).
`NCLIB_BOOK_HTML=<dir>` checks an existing build instead of running scripts/book.sh (e.g. one
built with execution off: the checks of executed outputs then fail, the others still apply).
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
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

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
    if os.environ.get("NCLIB_BOOK_HTML"):
        return Path(os.environ["NCLIB_BOOK_HTML"]).resolve()
    r = subprocess.run(["bash", str(ROOT / "scripts" / "book.sh")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"book build failed:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    return HTML


@pytest.fixture(scope="module")
def server(book):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(book))
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


def toc_pages():
    """Every page of the book as (url path without .html, source path), from _toc.yml."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [(f, ROOT / f"{f}.md") for f in files]


FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1\s*$", re.S | re.M)


def source_has_math(path: Path) -> bool:
    """Whether the page's markdown (outside code fences and inline code) holds a formula."""
    text = FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    return bool(re.search(r"\$[^$\s][^$]*\$|\{math\}", text))


def _offline_page(browser, blocked):
    """A page whose requests to any host but the local server are aborted (and recorded)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:", "about:")) or host in ("127.0.0.1", "localhost"):
            return r.continue_()
        blocked.append((r.request.resource_type, r.request.url))
        return r.abort()

    page.route("**/*", route)
    return page


TYPESET = """async () => {
    if (!document.querySelector('.math')) return {math: 0, typeset: 0, raw: [], errors: []};
    for (let i = 0; i < 150 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
        await new Promise(r => setTimeout(r, 100));
    if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return {math: -1};
    await MathJax.startup.promise;
    const math = [...document.querySelectorAll('main .math')];
    return {math: math.length, typeset: document.querySelectorAll('main mjx-container').length,
            raw: math.filter(e => !e.querySelector('mjx-container')).slice(0, 5).map(e => e.textContent.slice(0, 80)),
            errors: [...document.querySelectorAll('main mjx-merror, main [data-mjx-error]')].slice(0, 5)
                .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80))};
}"""

# the text a reader sees, without code, typeset formulas and scripts: where a stray '$' (or raw
# TeX delimiters) would show that a formula was not recognised
PROSE = """() => {
    const main = document.querySelector('main') || document.body;
    const c = main.cloneNode(true);
    c.querySelectorAll('pre, code, .highlight, mjx-container, script, style, .cell_input, .nclib-claim-row')
        .forEach(e => e.remove());
    return c.innerText;
}"""

OUTPUTS = """() => {
    const out = [...document.querySelectorAll('main .cell_output')];
    const tables = [...document.querySelectorAll('main .cell_output table')];
    const first = document.querySelector('main .nclib-table td, main .nclib-table th[scope=row]');
    const cs = first ? getComputedStyle(first) : null;
    const rowHead = document.querySelector('main .nclib-table tr > :first-child');
    return {
        text: out.map(e => e.innerText).join('\\n'),
        tables: tables.length,
        bare_tables: tables.filter(t => !t.closest('.nclib-table')).length,
        overflowing: [...document.querySelectorAll('main .nclib-table')].filter(d => {
            const s = getComputedStyle(d); return d.scrollWidth > d.clientWidth + 1 && !['auto', 'scroll'].includes(s.overflowX);
        }).length,
        padding: cs ? Math.min(parseFloat(cs.paddingLeft), parseFloat(cs.paddingRight)) : null,
        sticky: rowHead ? getComputedStyle(rowHead).position : null,
        widgets: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"], .widget-area, .jupyter-widgets').length,
        page_overflow: document.documentElement.scrollWidth - window.innerWidth,
        images: [...document.querySelectorAll('main .cell_output img')].filter(i => i.src.includes('/_images/'))
            .map(i => ({src: i.src, natural: i.naturalWidth, shown: i.getBoundingClientRect().width, ok: i.complete && i.naturalWidth > 0})),
        ledger_link: !!document.querySelector('main a[href*="claims_ledger"]'),
    };
}"""
RAW_REPRS = (
    "np.float64(",
    "np.int64(",
    "np.float32(",
    "device(type=",
    "<pandas.io.formats.style.Styler",
    "dtype=torch.",
)
BAR = re.compile(r"\d{1,3}%\|[^|\n]{0,60}\|")


def _png_font_px(book, src):
    """The smallest font (px at the PNG's own size) recorded by nclib.plots in the PNG, or None."""
    from PIL import Image

    path = Path(book) / unquote(urlparse(src).path).lstrip("/")
    with Image.open(path) as im:
        v = getattr(im, "text", {}).get("nclib-min-font-px")
    return float(v) if v is not None else None


def test_every_page_reads_offline(server, browser, book):
    """Every page with every outside host blocked: math typeset by the book's own MathJax on each
    page whose source has formulas, no TeX error, no stray '$', no raw TeX delimiters; nothing the
    page needs (script, style, font) comes from another host; a screenshot of every page."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems, blocked = [], []
    page = _offline_page(browser, blocked)
    for name, src in toc_pages():
        blocked.clear()
        page.goto(f"{server}/{name}.html", wait_until="load")
        m = page.evaluate(TYPESET)
        page.screenshot(path=str(SHOTS / f"{Path(name).name}.png"), full_page=True)
        needs = source_has_math(src)
        if m["math"] == -1:
            problems.append(f"{name}: MathJax did not load")
        elif needs and not m["typeset"]:
            problems.append(f"{name}: the source has formulas but the page shows no typeset math (mjx-container)")
        elif m["math"]:
            if m["raw"]:
                problems.append(f"{name}: {m['math'] - m['typeset']} formulas not typeset, e.g. {m['raw']}")
            if m["errors"]:
                problems.append(f"{name}: TeX errors {m['errors']}")
        prose = page.evaluate(PROSE)
        for pat in ("$", "\\(", "\\[", "\\begin{"):
            i = prose.find(pat)
            if i >= 0:
                problems.append(f"{name}: stray {pat!r} in the rendered text: …{prose[max(0, i - 60) : i + 40]!r}…")
        needed = [u for kind, u in blocked if kind in ("script", "stylesheet", "font", "xhr", "fetch")]
        if needed:
            problems.append(f"{name}: needs {len(needed)} resources from other hosts: {needed[:4]}")
    page.close()
    assert not problems, "\n".join(problems)


def test_every_chapter_renders(server, browser, book):
    """Every executed chapter, offline: figures load and their smallest text is >= 9 px at the width
    the page shows them; tables go through nclib.display (padding, scroll container, sticky first
    column) and the page never scrolls sideways; no raw reprs, no progress bars, no errors; claims
    displayed with anchors; a link to the claims ledger."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    blocked = []
    page = _offline_page(browser, blocked)
    problems = []
    for name in chapter_pages():
        page.goto(f"{server}/notebooks/{name}.html", wait_until="load")
        page.evaluate(TYPESET)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        imgs = page.eval_on_selector_all(
            ".cell_output img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])"
        )
        if not imgs:
            problems.append(f"{name}: no figure in any cell output")
        bad = [i for i in imgs if not (i[0] and i[1] > 0 and i[2] > 0)]
        if bad:
            problems.append(f"{name}: {len(bad)} of {len(imgs)} images did not load")
        o = page.evaluate(OUTPUTS)
        for im in o["images"]:
            if not im["ok"] or im["shown"] == 0:  # not loaded (reported above) or in a collapsed cell
                continue
            font = _png_font_px(book, im["src"])
            if font is None:
                problems.append(f"{name}: {Path(im['src']).name} was not drawn through nclib.plots (no font record)")
                continue
            shown = font * im["shown"] / im["natural"]
            if shown < 9.0:
                problems.append(
                    f"{name}: {Path(im['src']).name}: smallest text {shown:.1f} px at {im['shown']:.0f} px wide"
                )
        if o["bare_tables"]:
            problems.append(
                f"{name}: {o['bare_tables']} of {o['tables']} output tables not shown through nclib.display"
            )
        if o["tables"] and (o["padding"] is None or o["padding"] < 4 or o["sticky"] != "sticky"):
            problems.append(f"{name}: table cells padded {o['padding']} px, first column {o['sticky']}")
        if o["overflowing"]:
            problems.append(f"{name}: {o['overflowing']} tables overflow without a scroll container")
        if o["page_overflow"] > 0:
            problems.append(f"{name}: the page scrolls sideways by {o['page_overflow']} px")
        for r in RAW_REPRS:
            if r in o["text"]:
                problems.append(f"{name}: raw repr {r!r} in an output")
        if o["widgets"] or BAR.search(o["text"]):
            problems.append(f"{name}: a progress bar in the outputs")
        if not o["ledger_link"]:
            problems.append(f"{name}: no link to the claims ledger")
        outputs = page.inner_text("main") if page.query_selector("main") else page.inner_text("body")
        for marker in ("Traceback (most recent call last)", "ClaimFailed", "CellExecutionError"):
            if marker in outputs:
                problems.append(f"{name}: output contains {marker!r}")
        if not page.query_selector("mjx-container"):
            problems.append(f"{name}: no typeset math on the page")
        shown = page.eval_on_selector_all(".nclib-claim", "els => els.map(e => e.id)")
        if not shown:
            problems.append(f"{name}: no claim or check displayed")
        if any(not i.startswith("claim-") for i in shown):
            problems.append(f"{name}: a claim display without its claim-<id> anchor")
    page.close()
    assert not problems, "\n".join(problems)


def test_bibliography_is_author_year_and_release_pages(server, browser):
    """The bibliography's labels are author–year like the citations in the text ("Papyan et al.
    2020", not "[PHD20]"), without internal notes; the intro page has the BibTeX "cite this book"
    block; the execution-statistics page has its table."""
    page = _offline_page(browser, [])
    page.goto(f"{server}/book/bibliography.html", wait_until="load")
    labels = page.eval_on_selector_all("main .citation .label, main dt.label", "els => els.map(e => e.innerText)")
    text = page.inner_text("main")
    assert labels, "no bibliography entries"
    bad = [lab for lab in labels if not re.fullmatch(r"\[?[^\[\]]+ \d{4}[a-z]?\]?", lab.strip())]
    assert not bad, f"labels not in author-year style: {bad[:5]}"
    assert "Papyan et al. 2020" in text
    assert not re.search(r"seed paper|spine of this book", text, re.I), "internal notes in the bibliography"
    page.goto(f"{server}/book/intro.html", wait_until="load")
    assert "@misc{" in page.inner_text("main") and "CC BY 4.0" in page.inner_text("main")
    page.goto(f"{server}/book/execution_statistics.html", wait_until="load")
    assert page.query_selector("main table"), "no execution-statistics table"
    page.close()


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

    page = _offline_page(browser, [])
    page.goto(f"{server}/book/claims_ledger.html", wait_until="load")
    page.screenshot(path=str(SHOTS / "claims_ledger.png"), full_page=True)
    text = page.inner_text("main")
    rows = page.eval_on_selector_all(
        "details.nclib-claim-row",
        """els => els.map(e => ({
        id: e.dataset.claimId, status: e.querySelector('.nclib-c-status .nclib-badge').textContent,
        href: e.querySelector('a.nclib-id').href,
        source: (e.querySelector('.nclib-c-source a') || {}).href || null,
        detail: e.querySelector('.nclib-detail').textContent}))""",
    )
    check_rows = page.eval_on_selector_all(
        "tr.nclib-check-row",
        """els => els.map(e => ({
        id: e.dataset.claimId, status: e.querySelector('.nclib-badge').textContent,
        href: e.querySelector('a.nclib-id').href}))""",
    )
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
