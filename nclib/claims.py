"""Reproduction checks: a claim is stated once, checked, and recorded for the claims ledger.

In a chapter::

    claim("ch1.nc1-drop", "NC1 falls by at least 10x over the terminal phase",
          value=nc1_start / nc1_end, rule=">= 10", source="papyan2020", chapter=1)

:func:`claim` evaluates ``value`` against ``rule`` and raises :class:`ClaimFailed` (an
``AssertionError``) when it fails — nbval and the book build then fail. When it holds, it
displays the record; the display carries the record as JSON (``data-nclib-claim``), and the
book's ledger page is built from those displays in the executed notebooks, so the ledger can
never drift from the chapters.

A literature claim that does **not** reproduce on our data is stated with
``reproduced=False`` and a ``note`` giving the likely reason; its ``rule`` then checks what we
*did* measure (so the counter-claim can fail too, if the behaviour changes).

Rules: ``"> x"``, ``">= x"``, ``"< x"``, ``"<= x"``, ``"== x"``, ``"in [a, b]"`` for numbers;
``"true"`` / ``"false"`` for booleans.
"""
from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import asdict, dataclass

__all__ = ["Claim", "ClaimFailed", "claim", "check_rule", "records_from_notebook", "ledger"]

MARKER = "data-nclib-claim"
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CMP = re.compile(rf"^\s*(>=|<=|==|>|<)\s*({_NUM})\s*$")
_IN = re.compile(rf"^\s*in\s*\[\s*({_NUM})\s*,\s*({_NUM})\s*\]\s*$")


class ClaimFailed(AssertionError):
    """A reproduction check did not hold."""


@dataclass
class Claim:
    id: str
    statement: str
    value: float | bool
    rule: str
    passed: bool
    reproduced: bool
    source: str
    chapter: str
    note: str = ""
    profile: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def _value_text(self) -> str:
        if isinstance(self.value, bool):
            return str(self.value)
        v = float(self.value)
        return f"{v:.4g}"

    def _ipython_display_(self) -> None:
        # shown once: claim() displays it, and a claim returned as a cell's last value is not
        # displayed a second time (the ledger would count it twice)
        if getattr(self, "_shown", False):
            return
        from IPython.display import display

        display({"text/html": self._repr_html_(), "text/plain": repr(self)}, raw=True)
        object.__setattr__(self, "_shown", True)

    def _repr_html_(self) -> str:
        status = "reproduced" if self.reproduced else "not reproduced (measured counter-claim holds)"
        mark = "✅" if self.reproduced else "⚠️"
        note = f"<br><small>{html.escape(self.note)}</small>" if self.note else ""
        return (f'<div class="nclib-claim" {MARKER}="{html.escape(self.to_json(), quote=True)}">'
                f"{mark} <b>{html.escape(self.id)}</b> — {html.escape(self.statement)}: measured "
                f"<code>{html.escape(self._value_text())}</code>, rule <code>{html.escape(self.rule)}</code> "
                f"— {status}{note}</div>")

    def __repr__(self) -> str:
        tag = "reproduced" if self.reproduced else "NOT reproduced"
        return f"[claim {self.id}] {self.statement}: measured {self._value_text()} (rule {self.rule}) — {tag}"


def check_rule(value, rule: str) -> bool:
    """Evaluate ``value`` against a rule string (see module docstring); raises on a bad rule."""
    if not isinstance(rule, str):
        raise TypeError(f"rule must be a str, got {type(rule).__name__}")
    r = rule.strip().lower()
    if r in ("true", "false"):
        if not isinstance(value, bool):
            raise TypeError(f"rule {rule!r} needs a bool value, got {type(value).__name__}")
        return value is (r == "true")
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"rule {rule!r} needs a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        return False
    m = _CMP.match(r)
    if m:
        op, x = m.group(1), float(m.group(2))
        return {">": v > x, ">=": v >= x, "<": v < x, "<=": v <= x, "==": v == x}[op]
    m = _IN.match(r)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        if lo > hi:
            raise ValueError(f"rule {rule!r}: empty interval")
        return lo <= v <= hi
    raise ValueError(f"cannot parse rule {rule!r}; use '> x', '>= x', '< x', '<= x', '== x', 'in [a, b]', 'true' or 'false'")


def claim(id: str, statement: str, *, value, rule: str, source: str, chapter, reproduced: bool = True,
          note: str = "", profile: str | None = None, display: bool = True) -> Claim:
    """Check one claim and record it (see the module docstring). Returns the :class:`Claim`.

    ``source`` is a key of ``book/references.bib``; ``chapter`` the chapter number or name;
    ``profile`` defaults to ``$NCLIB_PROFILE`` or ``"quick"``.
    """
    for name, v in (("id", id), ("statement", statement), ("source", source)):
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"claim {name} must be a non-empty string, got {v!r}")
    if not isinstance(reproduced, bool):
        raise TypeError("reproduced must be a bool")
    if not reproduced and not note:
        raise ValueError(f"claim {id!r}: a claim marked not reproduced needs a note with the likely reason")
    if hasattr(value, "item"):
        value = value.item()
    if not isinstance(value, bool):
        value = float(value)
    passed = check_rule(value, rule)
    c = Claim(id=id, statement=statement, value=value, rule=rule, passed=passed, reproduced=reproduced,
              source=source, chapter=str(chapter), note=note,
              profile=profile or os.environ.get("NCLIB_PROFILE", "quick"))
    if not passed:
        raise ClaimFailed(f"claim {id!r} failed: {statement} — measured {c._value_text()}, rule {rule}")
    if display:
        try:
            from IPython import get_ipython
            from IPython.display import display as _display

            if get_ipython() is not None:
                _display(c)
            else:
                print(repr(c))
        except ImportError:  # pragma: no cover
            print(repr(c))
    return c


def records_from_notebook(path) -> list[dict]:
    """The claim records displayed in an executed notebook (.ipynb), in order."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    out = []
    pat = re.compile(MARKER + r'="([^"]*)"')
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            h = o.get("data", {}).get("text/html")
            if not h:
                continue
            h = "".join(h) if isinstance(h, list) else h
            for m in pat.finditer(h):
                out.append(json.loads(html.unescape(m.group(1))))
    return out


def ledger(records: list[dict]):
    """The ledger as a pandas DataFrame: one row per claim, ordered by chapter then id
    (numbered chapters numerically, so chapter 2 comes before chapter 10)."""
    import pandas as pd

    def order(col):
        if col.name != "chapter":
            return col
        return col.map(lambda c: f"{int(c):09d}" if str(c).strip().isdigit() else str(c))

    cols = ["chapter", "id", "source", "statement", "rule", "value", "reproduced", "note", "profile"]
    df = pd.DataFrame(records, columns=cols)
    return df.sort_values(["chapter", "id"], kind="stable", key=order).reset_index(drop=True)
