"""The committed calibration table (nclib/calibration/quick.json, written by scripts/calibrate.py)
is what every quick-profile claim reads its expected status from: it must be complete, consistent
with its own per-seed values, and never hand-edited into a verdict its data do not support."""

import json
import re
from pathlib import Path

import jupytext
import pytest

from nclib import stats

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "nclib" / "calibration" / "quick.json"
CLAIM_ID = re.compile(r"""\bclaim\(\s*(?:f?["'])([^"']+)["']""")


@pytest.fixture(scope="module")
def table():
    return json.loads(TABLE.read_text())


def test_every_entry_has_five_seeds_under_both_numerics(table):
    assert table["claims"], "empty calibration table: run scripts/calibrate.py"
    for cid, e in table["claims"].items():
        assert set(e["runs"]) == {"native", "emulated"}, cid
        for label, run in e["runs"].items():
            assert len(run["values"]) == len(run["seeds"]) >= 5, f"{cid} ({label})"
            assert len(set(run["seeds"])) == len(run["seeds"]), f"{cid} ({label}): repeated seeds"


def test_expected_status_follows_from_the_calibration_values(table):
    for cid, e in table["claims"].items():
        runs = {k: v["values"] for k, v in e["runs"].items()}
        assert e["expected"] == stats.calibrated_status(e["rule"], e["method"], runs, n=3), cid


def test_the_book_default_seed_family_is_calibrated(table):
    for cid, e in table["claims"].items():
        for label, run in e["runs"].items():
            assert {0, 1, 2} <= set(run["seeds"]), f"{cid} ({label})"


def test_every_claim_in_a_chapter_source_is_calibrated(table):
    """Claims whose id is a literal in a chapter source: each must have an entry (the chapter would stop)."""
    missing = []
    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md")):
        code = "\n".join(c.source for c in jupytext.read(src).cells if c.cell_type == "code")
        for cid in CLAIM_ID.findall(code):
            if "{" not in cid and cid not in table["claims"]:
                missing.append(f"{src.name}: {cid}")
    assert not missing, "uncalibrated claims:\n" + "\n".join(missing)


def test_no_chapter_states_a_negated_claim():
    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md")):
        text = src.read_text()
        assert "reproduced=False" not in text, f"{src.name}: a claim marked not reproduced by hand"


def test_inconclusive_claims_are_a_minority(table):
    exp = [e["expected"] for e in table["claims"].values()]
    assert exp.count("inconclusive") <= len(exp) // 4, f"{exp.count('inconclusive')} of {len(exp)} inconclusive"
