"""The claims ledger (book/_ext/claims_ledger.py): its HTML builders on synthetic records, and a
tiny Sphinx project built with the extension (two chapters whose raw HTML carries records
displayed by nclib.claims, a bibliography, the ledger page), checked for rows, links to the
chapters' anchors, badges, details and claims.json. If Debian's chromium and Playwright are
present, the ledger is also opened at 1280 px to check that nothing overflows."""

import html
import importlib.util
import json
import shutil
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nclib.claims import Claim, anchor

ROOT = Path(__file__).resolve().parents[1]
EXT = ROOT / "book" / "_ext"


def _load_ext():
    spec = importlib.util.spec_from_file_location("claims_ledger", EXT / "claims_ledger.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


L = _load_ext()

NASTY = "NC1 < 1e-3 & \"ETF\" <b>bold</b> 'quoted'"
CAL = {
    "native": {"seeds": [0, 1, 2, 3, 4], "values": [12.5, 14.0, 11.0, 15.5, 13.0]},
    "emulated": {"seeds": [0, 1, 2, 3, 4], "values": [12.0, 14.5, 10.5, 16.0, 13.5]},
}


def rep(id, status="reproduced", chapter="1", **kw):
    c = dict(
        kind="reproduction",
        id=id,
        statement=f"statement of {id}",
        rule=">= 10",
        status=status,
        source="papyan2020",
        chapter=chapter,
        note="",
        paper="10x (Fig. 6)",
        profile="quick",
        values=[12.0, 14.8, 11.1],
        seeds=[0, 1, 2],
        n=3,
        method="range",
        statistic=12.0,
        interval=[11.1, 14.8],
        expected=status,
        calibration=CAL,
        value=None,
    )
    c.update(kw)
    return c


def chk(id, status="passed", chapter="1", **kw):
    c = dict(
        kind="check",
        id=id,
        statement=f"check {id}",
        rule="<= 1e-10",
        status=status,
        source="han2022",
        chapter=chapter,
        note="",
        paper="",
        profile="quick",
        values=[],
        seeds=[],
        n=0,
        method="",
        statistic=None,
        interval=[],
        expected="",
        calibration=None,
        value=3e-16,
    )
    c.update(kw)
    return c


class Tags(HTMLParser):
    """Elements (tag, attrs, text inside) of an HTML fragment, and whether the tags balance."""

    VOID = {"br", "col", "img", "meta", "link", "hr", "input", "wbr"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.stack, self.elements, self.unbalanced = [], [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1]["tag"] != tag:
            self.unbalanced.append(tag)
            return
        self.stack.pop()

    def handle_data(self, data):
        for el in self.stack:
            el["text"] += data

    def find(self, tag=None, cls=None):
        return [
            e
            for e in self.elements
            if (tag is None or e["tag"] == tag) and (cls is None or cls in e["attrs"].get("class", "").split())
        ]


# ----------------------------------------------------------------------------- pure functions
def test_anchor_matches_nclib():
    for id in ["ch1.nc1-tpt-10x", "ch7.sukenik L4/low rank", "a_b-c.d", "x<&>\"'"]:
        assert L.anchor(id) == anchor(id)


def test_summary_counts_per_status_and_chapter():
    groups = L.group(
        [
            ("notebooks/01", rep("a")),
            ("notebooks/01", rep("b", "not reproduced")),
            ("notebooks/01", chk("c")),
            ("notebooks/02", rep("d", "inconclusive", chapter="2")),
            ("notebooks/02", rep("e", chapter="2", expected="uncalibrated")),
            ("notebooks/02", chk("f", chapter="2")),
            ("notebooks/02", chk("g", chapter="2")),
        ],
        doc_order=["notebooks/02", "notebooks/01"],
        titles={"notebooks/01": "One", "notebooks/02": "Two"},
        hrefs={"notebooks/01": "../notebooks/01.html", "notebooks/02": "../notebooks/02.html"},
    )
    assert [g["label"] for g in groups] == ["Chapter 2 · Two", "Chapter 1 · One"]  # the toc order
    rows, total = L.counts(groups)
    assert total["claims"] == {"reproduced": 2, "not reproduced": 1, "inconclusive": 1}
    assert total["checks"] == {"passed": 3}
    assert total["expected"]["uncalibrated"] == 1
    h = L.summary_html(groups)
    t = Tags(h)
    assert not t.unbalanced and not t.stack
    assert "<b>4</b> reproduction claims: 2 reproduced, 1 not reproduced, 1 inconclusive" in h
    assert "<b>3</b> checks" in h and "3 passed, 0 failed" in h
    body = t.find("tr", "nclib-summary-row")
    assert len(body) == 2
    # chapter 2: rep 1, not 0, inc 1, all 2 | passed 2, failed 0, all 2
    cells = [e["text"] for e in t.elements if e["tag"] == "td"]
    assert cells[:7] == ["1", "0", "1", "2", "2", "0", "2"]
    assert cells[7:14] == ["1", "1", "0", "2", "1", "0", "1"]
    assert [e["attrs"]["href"] for e in t.find("a")] == ["../notebooks/02.html", "../notebooks/01.html"]
    total_row = t.find("tr", "nclib-summary-total")[0]["text"]
    assert "All" in total_row and "4" in total_row and "3" in total_row


def test_claim_row_escapes_text_and_links():
    r = rep(
        "ch1.x<y",
        statement=NASTY,
        note="note & <i>",
        paper='"10x" & more',
        rule="< 5",
        values=[1.0, 2.0, 3.0],
        seeds=[7, 8, 9],
    )
    cite = lambda key: ("../book/bibliography.html#id3", "Papyan et al. 2020", 'A "title" & <more>')
    h = L.claim_row(r, "../notebooks/01.html#" + anchor(r["id"]), cite)
    t = Tags(h)
    assert not t.unbalanced and not t.stack, t.unbalanced
    # nothing of the record's text became markup
    assert all(e["text"] != "bold" for e in t.find("b"))
    assert all(e["text"].startswith("seed ") for e in t.find("i"))  # only the seed labels are italic
    assert "<b>bold</b>" not in h
    assert html.escape(NASTY, quote=True) in h
    assert "note &amp; &lt;i&gt;" in h and "&quot;10x&quot; &amp; more" in h and "<code>&lt; 5</code>" in h
    det = t.find("details", "nclib-claim-row")
    assert len(det) == 1 and det[0]["attrs"]["data-claim-id"] == "ch1.x<y"  # attribute round-trips
    assert det[0]["attrs"]["id"] == "ledger-" + anchor("ch1.x<y")
    summary = t.find("summary")[0]
    assert NASTY not in summary["text"]  # the statement sits in the detail only
    assert NASTY in t.find("div", "nclib-detail")[0]["text"]
    links = {e["attrs"]["href"]: e for e in t.find("a")[::-1]}  # the first link of each href
    assert links["../notebooks/01.html#claim-ch1-x-y"]["text"] == "ch1.x<y"
    assert links["../book/bibliography.html#id3"]["text"] == "Papyan et al. 2020"
    assert links["../book/bibliography.html#id3"]["attrs"]["title"] == 'A "title" & <more>'
    assert [e["text"] for e in t.find("span", "nclib-badge")] == ["reproduced"]
    assert "nclib-s-reproduced" in t.find("span", "nclib-badge")[0]["attrs"]["class"]
    assert [e["text"] for e in t.find("span", "nclib-expected")] == ["reproduced", "reproduced"]  # row + detail
    stat = t.find("span", "nclib-stat")[0]["text"]
    assert stat == "12 [11.1, 14.8] (n=3)"
    seeds = [e["text"] for e in t.find("span", "nclib-sv")]
    assert seeds[:3] == ["seed 7 1", "seed 8 2", "seed 9 3"] and len(seeds) == 3 + 5 + 5  # + calibration
    cal = [e["text"] for e in t.find("div", "nclib-cal")]
    assert cal[0].startswith("native") and "min 11, max 15.5" in cal[0] and cal[1].startswith("emulated")


def test_claims_and_checks_tables():
    groups = L.group(
        [
            ("a", rep("r1")),
            ("a", chk("k1", statement="x & <y>")),
            ("b", rep("r2", "not reproduced")),
            ("b", rep("r3", "inconclusive", method="bootstrap", source="nokey")),
        ],
        titles={"a": "A", "b": "B"},
        hrefs={"a": "a.html", "b": "b.html"},
    )
    cite = lambda key: ("bib.html#id1", "Han et al. 2022", None) if key == "han2022" else None
    h = L.claims_html(groups, cite)
    t = Tags(h)
    assert not t.unbalanced and not t.stack
    rows = t.find("details", "nclib-claim-row")
    assert [r["attrs"]["data-claim-id"] for r in rows] == ["r1", "r2", "r3"]
    assert [r["attrs"]["data-status"] for r in rows] == ["reproduced", "not reproduced", "inconclusive"]
    assert [e["text"] for e in t.find("div", "nclib-group")] == ["Chapter 1 · A", "Chapter 1 · B"]
    assert {e["attrs"]["href"] for e in t.find("a", "nclib-id")} == {
        "a.html#claim-r1",
        "b.html#claim-r2",
        "b.html#claim-r3",
    }
    assert "<code>nokey</code>" in h  # unknown bibliography key: shown, not linked
    assert "bootstrap" in h and "mean" in h
    assert len([e for e in t.elements if e["attrs"].get("class") == "nclib-c"]) == len(L.CLAIM_HEAD)  # header
    c = L.checks_html(groups, cite)
    t = Tags(c)
    assert not t.unbalanced and not t.stack
    rows = t.find("tr", "nclib-check-row")
    assert [r["attrs"]["data-claim-id"] for r in rows] == ["k1"]
    assert "x &amp; &lt;y&gt;" in c and "<code>3e-16</code>" in c
    assert t.find("a", "nclib-id")[0]["attrs"]["href"] == "a.html#claim-k1"
    assert t.find("a")[-1]["attrs"]["href"] == "bib.html#id1"
    assert [e["text"] for e in t.find("span", "nclib-badge")] == ["passed"]
    assert "No check recorded" in L.checks_html(L.group([("b", rep("r"))]))
    assert "No reproduction claim recorded" in L.claims_html(L.group([("b", chk("k"))]))


@pytest.mark.parametrize(
    "rec",
    [
        {},
        {"id": "old.v1", "statement": "v1 record", "rule": ">= 1", "reproduced": False, "value": 0.5, "source": "x"},
        {
            "kind": "reproduction",
            "id": "partial",
            "statistic": "n/a",
            "interval": [None],
            "values": "oops",
            "seeds": None,
            "calibration": [1, 2],
            "expected": None,
        },
        {"kind": "check", "id": "c", "value": True, "rule": "true"},
        {
            "kind": "reproduction",
            "id": "nan",
            "statistic": float("nan"),
            "interval": [float("-inf"), 1],
            "values": [1, "x", None],
            "seeds": [0],
            "calibration": {"native": {"values": [1, 2]}, "emulated": "?"},
        },
    ],
)
def test_old_or_partial_records_do_not_crash(rec):
    groups = L.group([("doc", rec), ("doc", "not a dict")])
    h = L.ledger_html(groups)
    t = Tags(h)
    assert not t.unbalanced and not t.stack
    if rec.get("id"):
        assert html.escape(rec["id"]) in h
    if "reproduced" in rec:
        assert "not reproduced" in h


def test_parts_option():
    assert L._parts("summary") == ("summary",)
    assert L._parts("claims, checks") == ("claims", "checks")
    assert L._parts("") == L.PARTS
    with pytest.raises(ValueError):
        L._parts("everything")


# ----------------------------------------------------------------------------- a tiny Sphinx build
BIB = """
@article{papyan2020,
  author = {Papyan, Vardan and Han, X. Y. and Donoho, David L.},
  title = {Prevalence of neural collapse during the terminal phase of deep learning training},
  journal = {PNAS}, year = {2020}
}
@inproceedings{han2022,
  author = {Han, X. Y. and Papyan, Vardan},
  title = {Neural collapse under {MSE} loss},
  booktitle = {ICLR}, year = {2022}
}
"""


def _display(c: Claim) -> str:
    return c._repr_html_()


def _records():
    ch1 = [
        Claim(
            kind="reproduction",
            id="ch1.nc1-tpt-10x",
            statement=NASTY,
            rule=">= 10",
            status="reproduced",
            source="papyan2020",
            chapter="1",
            note="quick profile: 60 epochs",
            paper="orders of magnitude (Fig. 6)",
            profile="quick",
            values=[14.8, 12.1, 10.4],
            seeds=[0, 1, 2],
            n=3,
            method="range",
            statistic=12.1,
            interval=[10.4, 14.8],
            expected="reproduced",
            calibration=CAL,
        ),
        Claim(
            kind="reproduction",
            id="ch1.etf-cos",
            statement="cosines approach -1/(K-1)",
            rule="< 0.1",
            status="not reproduced",
            source="survey2022",
            chapter="1",
            note="too few epochs",
            paper="0.05",
            profile="quick",
            values=[0.3, 0.2, 0.25],
            seeds=[0, 1, 2],
            n=3,
            method="bootstrap",
            statistic=0.25,
            interval=[0.2, 0.3],
            expected="not reproduced",
            calibration=CAL,
        ),
        Claim(
            kind="check",
            id="ch1.closed-form",
            statement="solver & closed form <agree>",
            rule="<= 1e-10",
            status="passed",
            source="han2022",
            chapter="1",
            profile="quick",
            value=2e-16,
        ),
    ]
    ch2 = [
        Claim(
            kind="reproduction",
            id="ch2.cdnv",
            statement="CDNV falls on test data",
            rule="in [0, 0.5]",
            status="inconclusive",
            source="han2022",
            chapter="2",
            paper="",
            profile="quick",
            values=[0.3, 0.6, 0.4],
            seeds=[3, 4, 5],
            n=3,
            method="range",
            statistic=0.4,
            interval=[0.3, 0.6],
            expected="inconclusive",
            calibration=CAL,
        ),
        Claim(
            kind="check",
            id="ch2.sum-one",
            statement="probabilities sum to 1",
            rule="== 1 (tol 1e-12)",
            status="passed",
            source="papyan2020",
            chapter="2",
            profile="quick",
            value=1.0,
        ),
    ]
    return ch1, ch2


def _page(title, claims):
    body = "\n\n".join(".. raw:: html\n\n" + textwrap.indent(_display(c), "   ") for c in claims)
    return f"{title}\n{'=' * len(title)}\n\nSome prose.\n\n{body}\n"


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    from sphinx.cmd.build import build_main

    src = tmp_path_factory.mktemp("tiny")
    ch1, ch2 = _records()
    (src / "conf.py").write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(EXT)!r})
        extensions = ["myst_parser", "sphinxcontrib.bibtex", "claims_ledger"]
        myst_enable_extensions = ["dollarmath", "deflist", "colon_fence"]
        bibtex_bibfiles = ["refs.bib"]
        bibtex_reference_style = "author_year"
        html_theme = "sphinx_book_theme"
        project = "tiny"
        """)
    )
    (src / "refs.bib").write_text(
        BIB + "\n@misc{survey2022, author = {Agarwal, C.}, title = {Survey}, year = {2022}}\n"
    )
    (src / "index.rst").write_text("Tiny\n====\n\n.. toctree::\n\n   ch1\n   ch2\n   ledger\n   bib\n")
    (src / "ch1.rst").write_text(_page("What is collapse", ch1))
    (src / "ch2.rst").write_text(_page("Test collapse", ch2))
    # the book's own ledger page, its links made relative to this flat project
    (src / "ledger.md").write_text((ROOT / "book" / "claims_ledger.md").read_text().replace("../_static/", "_static/"))
    (src / "bib.rst").write_text("Bibliography\n============\n\n.. bibliography::\n   :all:\n")
    out = src / "_build"
    rc = build_main(["-b", "html", "-W", "-q", "-d", str(src / "_doctrees"), str(src), str(out)])
    assert rc == 0, "tiny book build failed (warnings count as errors)"
    return out, ch1 + ch2


def test_tiny_book_ledger(tiny_book):
    out, recs = tiny_book
    page = (out / "ledger.html").read_text()
    t = Tags(page)
    reps = [r for r in recs if r.kind == "reproduction"]
    checks = [r for r in recs if r.kind == "check"]
    rows = t.find("details", "nclib-claim-row")
    assert [r["attrs"]["data-claim-id"] for r in rows] == [r.id for r in reps]
    assert [r["attrs"]["data-claim-id"] for r in t.find("tr", "nclib-check-row")] == [r.id for r in checks]
    # each id links to its display in its chapter page, and that anchor exists there
    for r, doc in zip(recs, ["ch1"] * 3 + ["ch2"] * 2):
        links = [e for e in t.find("a", "nclib-id") if e["text"] == r.id]
        assert len(links) == 1, r.id
        assert links[0]["attrs"]["href"] == f"{doc}.html#{anchor(r.id)}"
        assert f'id="{anchor(r.id)}"' in (out / f"{doc}.html").read_text()
    # badges: text and colour class, per row
    for row, r in zip(rows, reps):
        assert r.status in row["text"]
    badges = [e["text"] for e in t.find("span", "nclib-badge")]
    for s in ["reproduced", "not reproduced", "inconclusive", "passed"]:
        assert s in badges
    # the statement (escaped in the source, intact as text) and per-seed values sit in the details
    details = [e["text"] for e in t.find("div", "nclib-detail")]
    assert NASTY in details[0] and "quick profile: 60 epochs" in details[0]
    assert "seed 0 14.8" in details[0] and "native" in details[0] and "emulated" in details[0]
    assert "<b>bold</b>" not in page
    # sources link to the bibliography entries, with an author-year label
    bib = (out / "bib.html").read_text()
    src_links = [e for e in t.find("a") if e["attrs"].get("href", "").startswith("bib.html#")]
    assert {e["text"] for e in src_links} == {"Papyan et al. 2020", "Han & Papyan 2022", "Agarwal 2022"}
    for e in src_links:
        assert f'id="{e["attrs"]["href"].split("#")[1]}"' in bib
    # the summary: per chapter and in total
    summary_rows = [e["text"] for e in t.find("tr", "nclib-summary-row")]
    assert len(summary_rows) == 2 and "Chapter 1" in summary_rows[0] and "Chapter 2" in summary_rows[1]
    assert "3 reproduction claims: 1 reproduced, 1 not reproduced, 1 inconclusive" in html.unescape(
        " ".join(e["text"] for e in t.find("p", "nclib-summary-text"))
    )
    # the stylesheet is shipped and linked
    assert (out / "_static" / "claims_ledger.css").is_file() and "_static/claims_ledger.css" in page
    # claims.json: every field of every record, plus doc
    data = json.loads((out / "_static" / "claims.json").read_text())
    assert [d["id"] for d in data] == [r.id for r in recs]
    for d, r in zip(data, recs):
        assert d == {"doc": "ch1" if r.chapter == "1" else "ch2", **json.loads(r.to_json())}


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe or importlib.util.find_spec("playwright") is None:
        pytest.skip("Debian's chromium or Playwright is not installed")
    return exe


def test_tiny_book_ledger_fits_1280px(tiny_book):
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    out, recs = tiny_book
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.goto((out / "ledger.html").as_uri(), wait_until="load")
        page.eval_on_selector_all("details.nclib-claim-row", "els => els.forEach(e => e.open = true)")
        overflow = page.evaluate("""() => {
            const bad = [];
            if (document.documentElement.scrollWidth > window.innerWidth) bad.push('page ' + document.documentElement.scrollWidth);
            for (const el of document.querySelectorAll('.nclib-ledger, .nclib-ledger td, .nclib-ledger th, .nclib-c, .nclib-detail dd'))
                if (el.scrollWidth > el.clientWidth + 1) bad.push(el.className + ' ' + el.tagName + ' ' + el.scrollWidth + '>' + el.clientWidth);
            const art = document.querySelector('.bd-article') || document.body;
            const r = art.getBoundingClientRect();
            for (const el of document.querySelectorAll('.nclib-ledger')) {
                const q = el.getBoundingClientRect();
                if (q.right > r.right + 1) bad.push('ledger past the article ' + q.right + '>' + r.right);
            }
            return bad;
        }""")
        visible = page.eval_on_selector_all(
            "details.nclib-claim-row .nclib-detail", "els => els.map(e => e.offsetHeight > 0)"
        )
        b.close()
    assert not overflow, overflow
    assert visible and all(visible)
