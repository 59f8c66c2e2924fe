"""Unit tests for nclib.claims: rules, claim records, the HTML display and the notebook ledger."""
import html
import json
import math
import re
from dataclasses import asdict

import nbformat
import numpy as np
import pytest
import torch

from nclib.claims import MARKER, Claim, ClaimFailed, check_rule, claim, ledger, records_from_notebook

BASE = dict(source="papyan2020", chapter=1, display=False)


# ----------------------------------------------------------------------------- rules
@pytest.mark.parametrize("value,rule,expected", [
    (2.0, "> 1", True), (1.0, "> 1", False), (0.5, ">1", False),
    (1.0, ">= 1", True), (0.999, ">= 1", False),
    (0.5, "< 1", True), (1.0, "< 1", False),
    (1.0, "<= 1", True), (1.001, "<= 1", False),
    (3.0, "== 3", True), (3.0000001, "== 3", False),
    (0.0, "in [0, 1]", True), (1.0, "in [0, 1]", True), (0.5, "in [0,1]", True),
    (1.0001, "in [0, 1]", False), (-0.1, "in [0, 1]", False),
    (-2.5, "in [-3, -2]", True), (2e-4, "< 1e-3", True), (150.0, ">= 1.5E+2", True), (0.4, "> .3", True),
    (5, "> 4", True), (np.float64(0.2), "< 0.5", True),
    (True, "true", True), (False, "true", False), (False, "false", True), (True, "false", False),
    (True, " TRUE ", True), (7.0, "  >=   7  ", True), (0.5, "IN [0, 1]", True),
    (math.nan, "> 0", False), (math.nan, "in [0, 1]", False), (math.inf, "> 1e300", True),
])
def test_check_rule(value, rule, expected):
    assert check_rule(value, rule) is expected


@pytest.mark.parametrize("value,rule,expected", [
    (2.0, "> 1", True), (1.0, "> 1", False), (1.0, ">= 1", True), (0.5, "< 1", True), (2.0, "< 1", False),
    (1.0, "<= 1", True), (3.0, "== 3", True), (2.0, "== 3", False), (0.5, "in [0, 1]", True),
    (1.5, "in [0, 1]", False), (True, "true", True), (True, "false", False), (False, "false", True),
])
def test_claim_passes_or_raises(value, rule, expected):
    if expected:
        c = claim("t.rule", "a statement", value=value, rule=rule, **BASE)
        assert isinstance(c, Claim) and c.passed is True and c.rule == rule
    else:
        with pytest.raises(ClaimFailed, match="t.rule"):
            claim("t.rule", "a statement", value=value, rule=rule, **BASE)


@pytest.mark.parametrize("rule", ["~ 3", ">= abc", "in [1]", "in [2, 1]", "", "between 1 and 2", "=> 1", "> 1 2",
                                  "maybe"])
def test_bad_rules_raise_value_error(rule):
    with pytest.raises(ValueError, match="rule"):
        check_rule(1.0, rule)
    with pytest.raises(ValueError, match="rule"):
        claim("t.bad", "s", value=1.0, rule=rule, **BASE)


def test_rule_type_errors():
    with pytest.raises(TypeError, match="rule must be a str"):
        check_rule(1.0, 3)
    with pytest.raises(TypeError, match="needs a bool"):
        check_rule(1.0, "true")
    with pytest.raises(TypeError, match="needs a number"):
        check_rule(True, "> 0")
    with pytest.raises(TypeError, match="needs a number"):
        check_rule("3", "> 0")


def test_claim_failed_is_an_assertion_error():
    assert issubclass(ClaimFailed, AssertionError)
    with pytest.raises(AssertionError, match="measured 0.5, rule > 1"):
        claim("t.fail", "half is more than one", value=0.5, rule="> 1", **BASE)
    with pytest.raises(ClaimFailed):  # NaN never satisfies a numeric rule
        claim("t.nan", "s", value=float("nan"), rule="<= 1", **BASE)


# ----------------------------------------------------------------------------- records
def test_claim_record_fields(monkeypatch):
    monkeypatch.delenv("NCLIB_PROFILE", raising=False)
    c = claim("ch1.nc1-drop", "NC1 falls", value=torch.tensor(12.5), rule=">= 10", source="papyan2020",
              chapter=1, display=False)
    assert c.id == "ch1.nc1-drop" and c.statement == "NC1 falls"
    assert c.value == 12.5 and isinstance(c.value, float)
    assert c.passed and c.reproduced and c.note == ""
    assert c.source == "papyan2020" and c.chapter == "1" and c.profile == "quick"
    assert json.loads(c.to_json()) == asdict(c)
    monkeypatch.setenv("NCLIB_PROFILE", "full")
    assert claim("a", "s", value=1, rule="> 0", **BASE).profile == "full"
    assert claim("a", "s", value=1, rule="> 0", profile="quick", **BASE).profile == "quick"
    b = claim("b", "s", value=np.bool_(True), rule="true", **BASE)
    assert b.value is True
    bt = claim("b", "s", value=torch.tensor(False), rule="false", **BASE)
    assert bt.value is False
    assert claim("i", "s", value=np.int64(3), rule="== 3", **BASE).value == 3.0


def test_claim_display(capsys):
    claim("d.1", "shown", value=2.0, rule="> 1", source="x", chapter=2)
    out = capsys.readouterr().out
    assert "[claim d.1] shown: measured 2 (rule > 1) — reproduced" in out
    claim("d.2", "hidden", value=2.0, rule="> 1", source="x", chapter=2, display=False)
    assert capsys.readouterr().out == ""


def test_not_reproduced_needs_note():
    with pytest.raises(ValueError, match="needs a note"):
        claim("t.nr", "s", value=0.3, rule="< 1", reproduced=False, **BASE)
    c = claim("t.nr", "s", value=0.3, rule="< 1", reproduced=False, note="our net is too small", **BASE)
    assert c.reproduced is False and c.passed is True
    assert "NOT reproduced" in repr(c)
    h = c._repr_html_()
    assert "not reproduced" in h and "our net is too small" in h
    # the counter-claim is checked too
    with pytest.raises(ClaimFailed):
        claim("t.nr", "s", value=3.0, rule="< 1", reproduced=False, note="n", **BASE)


def test_claim_argument_errors():
    for field in ("id", "statement", "source"):
        kw = dict(id="a", statement="s", source="src")
        kw[field] = "  "
        with pytest.raises(ValueError, match=f"claim {field} must be a non-empty string"):
            claim(kw["id"], kw["statement"], value=1.0, rule="> 0", source=kw["source"], chapter=1, display=False)
    with pytest.raises(ValueError, match="claim id"):
        claim(None, "s", value=1.0, rule="> 0", source="x", chapter=1, display=False)
    with pytest.raises(TypeError, match="reproduced must be a bool"):
        claim("a", "s", value=1.0, rule="> 0", reproduced="yes", note="n", **BASE)


# ----------------------------------------------------------------------------- HTML and notebooks
def _attr_record(h):
    m = re.search(MARKER + r'="([^"]*)"', h)
    assert m, "the HTML must carry the record in the data attribute"
    return json.loads(html.unescape(m.group(1)))


def test_html_repr_embeds_the_record():
    tricky = 'means "collapse" <fast> & R² — naïve\'s'
    c = claim("ch2.tricky", tricky, value=0.25, rule="in [0, 1]", source="han2022", chapter="2",
              note="", **{"display": False})
    h = c._repr_html_()
    assert h.startswith('<div class="nclib-claim"')
    assert _attr_record(h) == asdict(c)
    assert "<fast>" not in h  # escaped in the visible text
    assert html.escape(tricky) in h
    assert "<code>0.25</code>" in h and "reproduced" in h


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


def test_records_from_notebook(tmp_path):
    c1 = claim("ch1.a", "first", value=12.0, rule=">= 10", source="papyan2020", chapter=1, display=False)
    c2 = claim("ch1.b", 'second "quoted" <b>', value=True, rule="true", source="zhu2021", chapter=1,
               reproduced=False, note="multi\nline note & <tags>", display=False)
    c3 = claim("ch3.c", "third", value=1e-12, rule="< 1e-6", source="x", chapter=3, display=False)
    path = tmp_path / "01_test.ipynb"
    _write_notebook(path, [("display_data", [c1._repr_html_()]),
                           ("execute_result", [c2._repr_html_() + c3._repr_html_()])])
    records = records_from_notebook(path)
    assert records == [asdict(c1), asdict(c2), asdict(c3)]
    assert records_from_notebook(str(path)) == records
    empty = tmp_path / "empty.ipynb"
    _write_notebook(empty, [])
    assert records_from_notebook(empty) == []


def test_ledger_order():
    cs = [claim(i, "s", value=1.0, rule="> 0", source="x", chapter=ch, display=False)
          for i, ch in [("b", 2), ("z", 10), ("a", 2), ("c", 1), ("y", 10)]]
    df = ledger([asdict(c) for c in cs])
    assert list(df["chapter"]) == ["1", "2", "2", "10", "10"]
    assert list(df["id"]) == ["c", "a", "b", "y", "z"]
    assert list(df.columns) == ["chapter", "id", "source", "statement", "rule", "value", "reproduced", "note",
                                "profile"]
