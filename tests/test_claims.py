"""Unit tests for nclib.claims: checks, reproduction claims over seeds, computed and expected
status, the HTML display, glue-free records and the notebook ledger."""

import html
import json
import math
import re
from dataclasses import asdict

import nbformat
import numpy as np
import pytest
import torch

from nclib.claims import (
    MARKER,
    ClaimContradicted,
    ClaimFailed,
    anchor,
    check,
    check_rule,
    claim,
    ledger,
    records_from_notebook,
)

BASE = dict(source="papyan2020", chapter=1, display=False)


@pytest.fixture
def table(tmp_path, monkeypatch):
    """A calibration table of our own (the real one is written by scripts/calibrate.py)."""
    path = tmp_path / "quick.json"
    monkeypatch.setenv("NCLIB_CALIBRATION", str(path))
    monkeypatch.delenv("NCLIB_CALIBRATE", raising=False)
    monkeypatch.setenv("NCLIB_PROFILE", "quick")

    def write(**entries):
        path.write_text(
            json.dumps(
                {
                    "claims": {
                        cid: {
                            "chapter": "1",
                            "rule": rule,
                            "method": method,
                            "expected": exp,
                            "runs": {
                                "native": {"seeds": [0, 1, 2, 3, 4], "values": [1, 2, 3, 4, 5]},
                                "emulated": {"seeds": [0, 1, 2, 3, 4], "values": [1, 2, 3, 4, 5]},
                            },
                        }
                        for cid, (rule, method, exp) in entries.items()
                    }
                }
            )
        )

    return write


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize(
    "value,rule,expected",
    [
        (2.0, "> 1", True),
        (1.0, "> 1", False),
        (0.5, ">1", False),
        (1.0, ">= 1", True),
        (0.999, ">= 1", False),
        (0.5, "< 1", True),
        (1.0, "< 1", False),
        (1.0, "<= 1", True),
        (1.001, "<= 1", False),
        (3.0, "== 3", True),
        (3.0000001, "== 3", False),
        (0.0, "in [0, 1]", True),
        (1.0, "in [0, 1]", True),
        (1.0001, "in [0, 1]", False),
        (-2.5, "in [-3, -2]", True),
        (2e-4, "< 1e-3", True),
        (150.0, ">= 1.5E+2", True),
        (0.4, "> .3", True),
        (5, "> 4", True),
        (np.float64(0.2), "< 0.5", True),
        (True, "true", True),
        (False, "true", False),
        (False, "false", True),
        (True, " TRUE ", True),
        (7.0, "  >=   7  ", True),
        (0.5, "IN [0, 1]", True),
        (math.nan, "> 0", False),
        (math.nan, "in [0, 1]", False),
        (math.inf, "> 1e300", True),
    ],
)
def test_check_rule(value, rule, expected):
    assert check_rule(value, rule) is expected


def test_check_rule_tolerance():
    assert check_rule(3.0 + 1e-9, "== 3", tol=1e-8) and not check_rule(3.0 + 1e-7, "== 3", tol=1e-8)


@pytest.mark.parametrize(
    "rule", ["~ 3", ">= abc", "in [1]", "in [2, 1]", "", "between 1 and 2", "=> 1", "> 1 2", "maybe"]
)
def test_bad_check_rules_raise_value_error(rule):
    with pytest.raises(ValueError, match="rule"):
        check_rule(1.0, rule)
    with pytest.raises(ValueError, match="rule"):
        check("t.bad", "s", value=1.0, rule=rule, **BASE)


def test_check_type_errors():
    with pytest.raises(TypeError, match="rule must be a str"):
        check_rule(1.0, 3)
    with pytest.raises(TypeError, match="needs a bool"):
        check_rule(1.0, "true")
    with pytest.raises(TypeError, match="needs a number"):
        check_rule(True, "> 0")
    with pytest.raises(TypeError, match="value must be a number"):
        check("t", "s", value="1.5", rule="> 1", **BASE)
    with pytest.raises(ValueError, match="tol"):
        check("t", "s", value=1.0, rule="== 1", tol=float("nan"), **BASE)


def test_check_passes_or_raises():
    c = check("t.ok", "identity", value=torch.tensor(1e-12, dtype=torch.float64), rule="<= 1e-10", **BASE)
    assert c.kind == "check" and c.status == "passed" and c.passed and c.value == 1e-12
    with pytest.raises(ClaimFailed, match="t.no"):
        check("t.no", "identity", value=1e-3, rule="<= 1e-10", **BASE)
    assert check("t.b", "s", value=np.bool_(True), rule="true", **BASE).value is True


# ----------------------------------------------------------------------------- reproduction claims
@pytest.mark.parametrize(
    "values,rule,status",
    [
        ([12, 15, 30], ">= 10", "reproduced"),
        ([3, 15, 30], ">= 10", "inconclusive"),
        ([3, 4, 5], ">= 10", "not reproduced"),
        ([0.01, 0.02, 0.03], "< 0.05", "reproduced"),
        ([0.01, 0.02, 0.06], "< 0.05", "inconclusive"),
        ([0.06, 0.07, 0.08], "< 0.05", "not reproduced"),
        ([0.2, 0.5, 0.7], "in [0, 1]", "reproduced"),
        ([0.2, 0.5, 1.7], "in [0, 1]", "inconclusive"),
        ([1.2, 1.5, 1.7], "in [0, 1]", "not reproduced"),
        ([True, True, True], ">= 1", "reproduced"),
    ],
)
def test_status_is_computed_from_the_interval(values, rule, status, monkeypatch):
    monkeypatch.setenv("NCLIB_CALIBRATE", "1")  # nothing asserted: only the status is looked at
    c = claim("t.s", "s", values=values, rule=rule, **BASE)
    assert c.status == status and c.n == 3 and c.method == "range"
    assert c.interval == [min(map(float, values)), max(map(float, values))]
    assert c.statistic == float(np.median(np.asarray(values, dtype=float)))


def test_expected_status_from_the_calibration_table(table):
    table(
        **{
            "t.r": (">= 10", "range", "reproduced"),
            "t.i": (">= 10", "range", "inconclusive"),
            "t.n": (">= 10", "range", "not reproduced"),
        }
    )
    assert claim("t.r", "s", values=[11, 12, 13], rule=">= 10", **BASE).expected == "reproduced"
    # expected reproduced, computed not reproduced (every seed across the threshold): the build fails
    with pytest.raises(ClaimContradicted, match="expects reproduced"):
        claim("t.r", "s", values=[1, 2, 3], rule=">= 10", **BASE)
    # computed inconclusive (one seed across): weaker, reported with both statuses, not a contradiction
    weak = claim("t.r", "s", values=[9, 12, 13], rule=">= 10", **BASE)
    assert weak.status == "inconclusive" and weak.expected == "reproduced" and weak.passed
    # expected inconclusive: reported, never asserted
    for vals in ([1, 2, 3], [9, 12, 13], [11, 12, 13]):
        c = claim("t.i", "s", values=vals, rule=">= 10", **BASE)
        assert c.expected == "inconclusive" and c.passed
    # a not-reproduced expectation is decisive too — and the rule is still the paper's
    assert claim("t.n", "s", values=[1, 2, 3], rule=">= 10", **BASE).status == "not reproduced"
    with pytest.raises(ClaimContradicted):
        claim("t.n", "s", values=[11, 12, 13], rule=">= 10", **BASE)
    assert claim("t.n", "s", values=[1, 2, 13], rule=">= 10", **BASE).passed  # inconclusive
    assert issubclass(ClaimContradicted, ClaimFailed) and issubclass(ClaimFailed, AssertionError)


def test_missing_or_stale_calibration_is_an_error(table):
    table(**{"t.r": (">= 10", "range", "reproduced")})
    with pytest.raises(ValueError, match="no calibration"):
        claim("t.other", "s", values=[11, 12, 13], rule=">= 10", **BASE)
    with pytest.raises(ValueError, match="recalibrate"):
        claim("t.r", "s", values=[11, 12, 13], rule=">= 5", **BASE)
    with pytest.raises(ValueError, match="recalibrate"):
        claim("t.r", "s", values=[11, 12, 13], rule=">= 10", interval="bootstrap", **BASE)


def test_uncalibrated_profile_never_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("NCLIB_CALIBRATION", str(tmp_path / "none.json"))
    monkeypatch.delenv("NCLIB_CALIBRATE", raising=False)
    c = claim("t.u", "s", values=[1.0], rule=">= 10", profile="full", **BASE)
    assert c.expected == "uncalibrated" and c.status == "not reproduced" and c.passed


def test_calibrating_records_without_asserting(table, monkeypatch):
    table()
    monkeypatch.setenv("NCLIB_CALIBRATE", "1")
    c = claim("t.new", "s", values=[1, 2, 3, 4, 5], rule=">= 10", seeds=[0, 1, 2, 3, 4], **BASE)
    assert c.expected == "uncalibrated" and c.seeds == [0, 1, 2, 3, 4] and c.n == 5


def test_claim_argument_errors(monkeypatch):
    monkeypatch.setenv("NCLIB_CALIBRATE", "1")
    monkeypatch.setenv("NCLIB_PROFILE", "quick")
    with pytest.raises(ValueError, match="at least 3"):
        claim("t", "s", values=[1, 2], rule="> 0", **BASE)
    with pytest.raises(TypeError, match="sequence"):
        claim("t", "s", values=3.0, rule="> 0", **BASE)
    with pytest.raises(TypeError, match="numbers"):
        claim("t", "s", values=["1", "2", "3"], rule="> 0", **BASE)
    with pytest.raises(ValueError, match="finite"):
        claim("t", "s", values=[1, float("nan"), 3], rule="> 0", **BASE)
    with pytest.raises(ValueError, match="seeds"):
        claim("t", "s", values=[1, 2, 3], seeds=[0, 1], rule="> 0", **BASE)
    with pytest.raises(ValueError, match="interval"):
        claim("t", "s", values=[1, 2, 3], rule="> 0", interval="t-test", **BASE)
    with pytest.raises(ValueError, match="rule"):
        claim("t", "s", values=[1, 2, 3], rule="== 2", **BASE)  # equality is a check, not a reproduction
    with pytest.raises(ValueError, match="rule"):
        claim("t", "s", values=[1, 2, 3], rule="true", **BASE)
    for field in ("id", "statement", "source"):
        kw = dict(id="a", statement="s", source="src")
        kw[field] = "  "
        with pytest.raises(ValueError, match=f"claim {field} must be a non-empty string"):
            claim(
                kw["id"], kw["statement"], values=[1, 2, 3], rule="> 0", source=kw["source"], chapter=1, display=False
            )


def test_claim_display(capsys, monkeypatch):
    monkeypatch.setenv("NCLIB_CALIBRATE", "1")
    claim("d.1", "shown", values=[2.0, 3.0, 4.0], rule="> 1", source="x", chapter=2)
    out = capsys.readouterr().out
    assert "[reproduction d.1] shown: 3 [2, 4] (n=3, range) (rule > 1) — reproduced" in out
    claim("d.2", "hidden", values=[2.0, 3.0, 4.0], rule="> 1", source="x", chapter=2, display=False)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- HTML and notebooks
def _attr_record(h):
    m = re.search(MARKER + r'="([^"]*)"', h)
    assert m, "the HTML must carry the record in the data attribute"
    return json.loads(html.unescape(m.group(1)))


def test_html_repr_embeds_the_record(monkeypatch):
    monkeypatch.setenv("NCLIB_CALIBRATE", "1")
    tricky = 'means "collapse" <fast> & R² — naïve\'s'
    c = claim(
        "ch2.tricky",
        tricky,
        values=[0.25, 0.5, 0.75],
        rule="in [0, 1]",
        source="han2022",
        chapter="2",
        paper="≈ 0.5 (Fig. 3)",
        display=False,
    )
    h = c._repr_html_()
    assert h.startswith(f'<div class="nclib-claim" id="{anchor("ch2.tricky")}"')
    assert anchor("ch2.tricky") == "claim-ch2-tricky"
    assert _attr_record(h) == asdict(c)
    assert "<fast>" not in h and html.escape(tricky) in h
    assert "reproduced" in h and "0.25, 0.5, 0.75" in h and "Fig. 3" in h
    k = check("ch2.id", "an identity", value=0.0, rule="== 0", source="x", chapter=2, display=False)
    assert "check ch2.id" in k._repr_html_() and "passed" in k._repr_html_()


def _write_notebook(path, html_outputs):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell('<div data-nclib-claim="{&quot;id&quot;: &quot;no&quot;}"></div>'))
    for kind, htmls in html_outputs:
        cell = nbformat.v4.new_code_cell("claim(...)")
        for h in htmls:
            if kind == "display_data":
                cell.outputs.append(nbformat.v4.new_output("display_data", data={"text/html": h, "text/plain": "x"}))
            else:
                cell.outputs.append(nbformat.v4.new_output("execute_result", data={"text/html": h}, execution_count=1))
        cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text="[claim] printed\n"))
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nbformat.validate(nb)
    nbformat.write(nb, str(path))


def test_records_from_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("NCLIB_CALIBRATE", "1")
    c1 = claim("ch1.a", "first", values=[12.0, 13, 14], rule=">= 10", source="papyan2020", chapter=1, display=False)
    c2 = check(
        "ch1.b",
        'second "quoted" <b>',
        value=True,
        rule="true",
        source="zhu2021",
        chapter=1,
        note="multi\nline note & <tags>",
        display=False,
    )
    c3 = claim("ch3.c", "third", values=[1e-12, 2e-12, 3e-12], rule="< 1e-6", source="x", chapter=3, display=False)
    path = tmp_path / "01_test.ipynb"
    _write_notebook(
        path, [("display_data", [c1._repr_html_()]), ("execute_result", [c2._repr_html_() + c3._repr_html_()])]
    )
    records = records_from_notebook(path)
    assert records == [asdict(c1), asdict(c2), asdict(c3)]
    empty = tmp_path / "empty.ipynb"
    _write_notebook(empty, [])
    assert records_from_notebook(empty) == []


def test_ledger_order(monkeypatch):
    monkeypatch.setenv("NCLIB_CALIBRATE", "1")
    cs = [
        claim(i, "s", values=[1.0, 2, 3], rule="> 0", source="x", chapter=ch, display=False)
        for i, ch in [("b", 2), ("z", 10), ("a", 2), ("c", 1), ("y", 10)]
    ]
    cs.append(check("k", "s", value=1.0, rule="> 0", source="x", chapter=1, display=False))
    df = ledger([asdict(c) for c in cs])
    assert list(df["kind"]) == ["reproduction"] * 5 + ["check"]
    assert list(df["chapter"]) == ["1", "2", "2", "10", "10", "1"]
    assert list(df["id"]) == ["c", "a", "b", "y", "z", "k"]
