"""The bibliography and the chapters' references: author–year labels (book/_ext/bibstyle.py) that
match the text's author–year citations, no internal notes in references.bib, every cited key in
it, and every chapter linking the claims ledger."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
bibstyle = pytest.importorskip("bibstyle")
from pybtex.database import parse_file  # noqa: E402

BIB = parse_file(str(ROOT / "book" / "references.bib"))
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
PAGES = CHAPTERS + sorted((ROOT / "book").glob("*.md"))
INTERNAL = re.compile(r"seed paper|spine of|this book|\btodo\b|internal", re.I)


def test_labels_are_author_year_and_unique():
    style = bibstyle.AuthorYearStyle()
    entries = list(style.sort(BIB.entries.values()))
    labels = list(style.format_labels(entries))
    assert len(set(labels)) == len(labels)
    for label in labels:
        assert re.fullmatch(r"[^\d\[\]]+ \d{4}[a-z]?", label), label
    by_key = dict(zip((e.key for e in entries), labels))
    assert by_key["papyan2020"] == "Papyan et al. 2020"
    assert by_key["crammer2001"] == "Crammer & Singer 2001"
    assert by_key["kothapalli2023"] == "Kothapalli 2023"


def test_no_internal_notes():
    notes = {k: e.fields["note"] for k, e in BIB.entries.items() if "note" in e.fields}
    bad = {k: v for k, v in notes.items() if INTERNAL.search(v)}
    assert not bad, f"notes for the authors, not the readers: {bad}"


def test_every_cited_key_is_in_the_bibliography():
    cited = {
        k.strip()
        for p in PAGES
        for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", p.read_text())
        for k in group.split(",")
    }
    assert cited and not cited - set(BIB.entries), sorted(cited - set(BIB.entries))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_links_the_claims_ledger(path):
    assert re.search(r"\{doc\}`[^`]*claims_ledger>?`", path.read_text()), f"{path.name} does not link the ledger"
