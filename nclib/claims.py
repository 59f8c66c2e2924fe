"""The book's two kinds of verdict, stated once, computed from data, recorded for the ledger.

**Reproduction claims** state a result of the literature as a rule on a statistic — never its
negation — measured over several seeds::

    claim("ch1.nc1-tpt-10x", "NC1 falls by an order of magnitude during the terminal phase",
          values=[r.nc1_drop for r in runs], seeds=SEEDS, rule=">= 10", source="papyan2020",
          chapter=1, paper="NC1 falls by orders of magnitude within the TPT (Fig. 6)")

The per-seed ``values`` give a statistic and an interval (``interval="range"``: median and
[min, max], the rule judged on every seed; ``"bootstrap"``: mean and a 95 % percentile-bootstrap
interval of the mean, see :mod:`nclib.stats`). The *status* is computed: **reproduced** when the
rule holds at the interval's conservative end, **not reproduced** when it fails at the other end,
**inconclusive** when the interval straddles the threshold.

The *expected* status comes from the committed calibration (``nclib/calibration/<profile>.json``,
written by ``scripts/calibrate.py``: every claim's experiment over ≥ 5 seeds under the native and
an emulated other-CPU numerics). The claim raises :class:`ClaimContradicted` only when a
decisive expectation is contradicted, i.e. the computed status is the *opposite* verdict
(reproduced expected, not reproduced computed, or the reverse): the interval lies wholly on the
other side of the rule's threshold. A decisive expectation that computes inconclusive — one seed
on a new machine, a new seed family or another thread count landing across the threshold — is
a weaker outcome, not a contradiction: it is reported (the ledger shows expected and computed
side by side) and does not fail the build. A claim expected inconclusive is reported, never
asserted. A quick-profile claim without a calibration entry, or
whose rule changed since calibration, is an error (the calibration is stale). Profiles without a
calibration file (``full``) are reported as ``uncalibrated`` and never fail. With
``NCLIB_CALIBRATE=1`` (set by the calibration script) nothing is asserted.

**Checks** — identities, closed forms, invariants, consistency — pass or fail with a tolerance
and are listed apart; they are not reproductions::

    check("ch7.han-closed-form", "the solver reaches the closed-form optimum",
          value=err, rule="<= 1e-8", source="han2022", chapter=7)

Both display their record as HTML carrying the JSON (``data-nclib-claim``) and an anchor
``claim-<id>``; the ledger page is built from those displays in the executed chapters, so it can
never drift from them. Inside IPython each record is also *glued* (myst-nb) so that prose quotes
its numbers instead of typing them: ``<id>`` (the statistic), ``<id>.lo``, ``<id>.hi``, ``<id>.n``
and ``<id>.status`` (markdown text), e.g. ``{glue:text}`ch1.nc1-tpt:.3g``` and
``{glue:md}`ch1.nc1-tpt.status```.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from . import stats

__all__ = [
    "Claim",
    "ClaimFailed",
    "ClaimContradicted",
    "claim",
    "check",
    "check_rule",
    "records_from_notebook",
    "ledger",
    "calibration",
    "anchor",
]

MARKER = "data-nclib-claim"
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
MIN_SEEDS = {"quick": 3, "full": 1}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CMP = re.compile(rf"^\s*(>=|<=|==|>|<)\s*({_NUM})\s*$")
_IN = re.compile(rf"^\s*in\s*\[\s*({_NUM})\s*,\s*({_NUM})\s*\]\s*$")
_STATUS_COLOURS = {
    "reproduced": "#1a7f37",
    "not reproduced": "#cf222e",
    "inconclusive": "#9a6700",
    "passed": "#1a7f37",
    "failed": "#cf222e",
}


class ClaimFailed(AssertionError):
    """A check did not hold, or a claim's computed status contradicts its calibrated expectation."""


class ClaimContradicted(ClaimFailed):
    """A reproduction claim came out decisively other than its calibration expects."""


def anchor(id: str) -> str:
    """The HTML anchor of a claim's display: ``claim-`` + the id with dots as dashes."""
    return "claim-" + re.sub(r"[^A-Za-z0-9_-]", "-", id)


@dataclass
class Claim:
    kind: str  # "reproduction" or "check"
    id: str
    statement: str
    rule: str
    status: str  # reproduced / not reproduced / inconclusive; passed / failed
    source: str
    chapter: str
    note: str = ""
    paper: str = ""
    profile: str = ""
    # reproduction claims
    values: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    n: int = 0
    method: str = ""
    statistic: float | None = None
    interval: list = field(default_factory=list)
    expected: str = ""
    calibration: dict | None = None
    # checks
    value: float | bool | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def passed(self) -> bool:
        """A check that held, or a claim whose status agrees with (or is not contradicting) its expectation."""
        if self.kind == "check":
            return self.status == "passed"
        return not contradicts(self.expected, self.status)

    def value_text(self) -> str:
        if self.kind == "check":
            return str(self.value) if isinstance(self.value, bool) else f"{float(self.value):.4g}"
        lo, hi = self.interval
        return f"{self.statistic:.4g} [{lo:.4g}, {hi:.4g}] (n={self.n}, {self.method})"

    def _ipython_display_(self) -> None:
        # shown once: claim() displays it, and a claim returned as a cell's last value is not
        # displayed a second time (the ledger would count it twice)
        if getattr(self, "_shown", False):
            return
        from IPython.display import display

        display({"text/html": self._repr_html_(), "text/plain": repr(self)}, raw=True)
        object.__setattr__(self, "_shown", True)

    def _repr_html_(self) -> str:
        colour = _STATUS_COLOURS.get(self.status, "#57606a")
        badge = (
            f'<span class="nclib-status" style="background:{colour};color:#fff;border-radius:3px;'
            f'padding:0 .35em;font-size:.85em">{html.escape(self.status)}</span>'
        )
        kind = "check" if self.kind == "check" else "claim"
        exp = ""
        if self.kind == "reproduction":
            exp = f" · expected <i>{html.escape(self.expected)}</i>"
            vals = ", ".join(f"{v:.4g}" for v in self.values)
            exp += f"<br><small>per seed ({', '.join(map(str, self.seeds))}): {html.escape(vals)}</small>"
        note = f"<br><small>{html.escape(self.note)}</small>" if self.note else ""
        paper = f"<br><small>paper: {html.escape(self.paper)}</small>" if self.paper else ""
        return (
            f'<div class="nclib-claim" id="{anchor(self.id)}" {MARKER}="{html.escape(self.to_json(), quote=True)}">'
            f"{badge} <b>{kind} {html.escape(self.id)}</b> — {html.escape(self.statement)}: "
            f"<code>{html.escape(self.value_text())}</code>, rule <code>{html.escape(self.rule)}</code>"
            f"{exp}{paper}{note}</div>"
        )

    def __repr__(self) -> str:
        tail = f", expected {self.expected}" if self.kind == "reproduction" else ""
        return f"[{self.kind} {self.id}] {self.statement}: {self.value_text()} (rule {self.rule}) — {self.status}{tail}"


_OPPOSITE = {"reproduced": "not reproduced", "not reproduced": "reproduced"}


def contradicts(expected: str, status: str) -> bool:
    """True when a decisive expectation is contradicted — the computed status is the opposite
    verdict (the only case a claim fails the build). Inconclusive contradicts nothing: with the
    range interval it needs only one seed across the threshold, which another machine's rounding
    or another seed family can produce; the opposite verdict needs every seed across it."""
    return _OPPOSITE.get(expected) == status


# ----------------------------------------------------------------------------- checks
def check_rule(value, rule: str, tol: float = 0.0) -> bool:
    """Evaluate a check's ``value`` against ``rule``: ``"> x"``, ``">= x"``, ``"< x"``, ``"<= x"``,
    ``"== x"`` (within ``tol``: ``|value − x| <= tol``), ``"in [a, b]"`` for numbers; ``"true"`` /
    ``"false"`` for booleans. NaN never passes. Raises on a bad rule."""
    if not isinstance(rule, str):
        raise TypeError(f"rule must be a str, got {type(rule).__name__}")
    r = rule.strip().lower()
    if r in ("true", "false"):
        if not isinstance(value, bool):
            raise TypeError(f"rule {rule!r} needs a bool value, got {type(value).__name__}")
        return value is (r == "true")
    if (
        isinstance(value, bool)
        or isinstance(value, str)
        or not (isinstance(value, (int, float)) or hasattr(value, "__float__"))
    ):
        raise TypeError(f"rule {rule!r} needs a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        return False
    m = _CMP.match(r)
    if m:
        op, x = m.group(1), float(m.group(2))
        if op == "==":
            return abs(v - x) <= tol
        return {">": v > x, ">=": v >= x, "<": v < x, "<=": v <= x}[op]
    m = _IN.match(r)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        if lo > hi:
            raise ValueError(f"rule {rule!r}: empty interval")
        return lo <= v <= hi
    raise ValueError(
        f"cannot parse rule {rule!r}; use '> x', '>= x', '< x', '<= x', '== x', 'in [a, b]', 'true' or 'false'"
    )


def _nonempty(**kw):
    for name, v in kw.items():
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"claim {name} must be a non-empty string, got {v!r}")


def check(
    id: str,
    statement: str,
    *,
    value,
    rule: str,
    source: str,
    chapter,
    tol: float = 0.0,
    note: str = "",
    profile: str | None = None,
    display: bool = True,
) -> Claim:
    """A check (identity, closed form, invariant, consistency): ``value`` against ``rule`` with
    tolerance ``tol`` for ``"== x"``. Raises :class:`ClaimFailed` when it does not hold."""
    _nonempty(id=id, statement=statement, source=source)
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not (tol >= 0) or math.isinf(tol):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, str):
        raise TypeError(f"check {id!r}: value must be a number or a bool, got a str")
    if not isinstance(value, bool):
        value = float(value)
    ok = check_rule(value, rule, tol)
    c = Claim(
        kind="check",
        id=id,
        statement=statement,
        rule=rule + (f" (tol {tol:g})" if tol else ""),
        status="passed" if ok else "failed",
        source=source,
        chapter=str(chapter),
        note=note,
        profile=profile or os.environ.get("NCLIB_PROFILE", "quick"),
        value=value,
    )
    if not ok:
        raise ClaimFailed(f"check {id!r} failed: {statement} — measured {c.value_text()}, rule {c.rule}")
    _show(c, display)
    return c


# ----------------------------------------------------------------------------- reproduction claims
def calibration_path(profile: str) -> Path:
    """``$NCLIB_CALIBRATION`` if set, else ``nclib/calibration/<profile>.json``."""
    env = os.environ.get("NCLIB_CALIBRATION")
    return Path(env) if env else CALIBRATION_DIR / f"{profile}.json"


@lru_cache(maxsize=8)
def _load_calibration(path: str, mtime: float) -> dict | None:
    p = Path(path)
    if not p.exists():
        return None
    return json.loads(p.read_text())


def calibration(profile: str) -> dict | None:
    """The calibration table of ``profile`` (``{"claims": {id: entry}, ...}``), or None."""
    p = calibration_path(profile)
    return _load_calibration(str(p), p.stat().st_mtime if p.exists() else 0.0)


def _calibrating() -> bool:
    return os.environ.get("NCLIB_CALIBRATE", "") not in ("", "0")


def claim(
    id: str,
    statement: str,
    *,
    values,
    rule: str,
    source: str,
    chapter,
    seeds=None,
    interval: str = "range",
    paper: str = "",
    note: str = "",
    profile: str | None = None,
    display: bool = True,
) -> Claim:
    """State, decide and record one reproduction claim (see the module docstring).

    ``values``: the statistic measured on each seed (numbers; booleans count as 0/1);
    ``seeds``: the seeds they came from (default 0..n−1); ``rule``: ``"> x"``, ``">= x"``,
    ``"< x"``, ``"<= x"`` or ``"in [a, b]"`` — the literature's result, never its negation;
    ``interval``: ``"range"`` or ``"bootstrap"``; ``paper``: the paper's own number, where it
    gives one; ``source``: a key of ``book/references.bib``.
    """
    _nonempty(id=id, statement=statement, source=source)
    profile = profile or os.environ.get("NCLIB_PROFILE", "quick")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"claim {id!r}: values must be a sequence of per-seed numbers, got {type(values).__name__}")
    vals = []
    for v in values:
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, str) or not isinstance(v, (bool, int, float)):
            raise TypeError(f"claim {id!r}: values must be numbers, got {type(v).__name__}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"claim {id!r}: a per-seed value is {v} — a claim is decided on finite numbers")
        vals.append(v)
    need = MIN_SEEDS.get(profile, 3)
    if len(vals) < need:
        raise ValueError(f"claim {id!r}: {len(vals)} seed(s); the {profile} profile needs at least {need}")
    seeds = list(range(len(vals))) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != len(vals):
        raise ValueError(f"claim {id!r}: {len(vals)} values but {len(seeds)} seeds")
    if interval not in stats.INTERVAL_METHODS:
        raise ValueError(f"claim {id!r}: interval must be one of {stats.INTERVAL_METHODS}, got {interval!r}")
    stats.parse_rule(rule)
    stat, lo, hi = stats.seed_interval(vals, interval)
    status = stats.rule_status(rule, lo, hi)
    expected, cal = _expected(id, rule, interval, profile)
    c = Claim(
        kind="reproduction",
        id=id,
        statement=statement,
        rule=rule,
        status=status,
        source=source,
        chapter=str(chapter),
        note=note,
        paper=paper,
        profile=profile,
        values=vals,
        seeds=seeds,
        n=len(vals),
        method=interval,
        statistic=stat,
        interval=[lo, hi],
        expected=expected,
        calibration=cal,
    )
    _show(c, display)
    if contradicts(expected, status) and not _calibrating():
        raise ClaimContradicted(
            f"claim {id!r}: {statement} — computed {status} ({c.value_text()}, rule {rule}), "
            f"but the calibration expects {expected}"
        )
    return c


def _expected(id: str, rule: str, method: str, profile: str):
    table = calibration(profile)
    if table is None or _calibrating():
        return ("uncalibrated", None)
    entry = table.get("claims", {}).get(id)
    if entry is None:
        raise ValueError(
            f"claim {id!r} has no calibration for the {profile} profile "
            f"(run `python scripts/calibrate.py` for its chapter)"
        )
    if entry.get("rule") != rule or entry.get("method") != method:
        raise ValueError(
            f"claim {id!r}: its rule/interval ({rule!r}, {method!r}) differ from the calibrated ones "
            f"({entry.get('rule')!r}, {entry.get('method')!r}); recalibrate its chapter"
        )
    return entry["expected"], {k: entry["runs"][k] for k in entry.get("runs", {})}


# ----------------------------------------------------------------------------- display and glue
class _Text:
    """A glued piece of prose: shown as plain markdown text by ``{glue:md}`` and ``{glue:text}``."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self):
        return self.text

    def _repr_markdown_(self):
        return self.text


def _glue(c: Claim) -> None:
    try:
        from myst_nb import glue
    except ImportError:  # e.g. on Colab: prose then shows the roles, the numbers are in the records
        return
    if c.kind == "check":
        if not isinstance(c.value, bool):
            glue(c.id, c.value, display=False)
        glue(f"{c.id}.status", _Text(c.status), display=False)
        return
    glue(c.id, c.statistic, display=False)
    glue(f"{c.id}.lo", c.interval[0], display=False)
    glue(f"{c.id}.hi", c.interval[1], display=False)
    glue(f"{c.id}.n", c.n, display=False)
    glue(f"{c.id}.status", _Text(c.status), display=False)


def _show(c: Claim, display: bool) -> None:
    if not display:
        return
    try:
        from IPython import get_ipython
        from IPython.display import display as _display
    except ImportError:  # pragma: no cover
        print(repr(c))
        return
    if get_ipython() is None:
        print(repr(c))
        return
    _display(c)
    _glue(c)


# ----------------------------------------------------------------------------- reading records back
def records_from_notebook(path) -> list[dict]:
    """The claim and check records displayed in an executed notebook (.ipynb), in order."""
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
    """The records as a pandas DataFrame, one row each, ordered by kind, chapter, then id
    (numbered chapters numerically, so chapter 2 comes before chapter 10)."""
    import pandas as pd

    def order(col):
        if col.name == "chapter":
            return col.map(lambda c: f"{int(c):09d}" if str(c).strip().isdigit() else str(c))
        if col.name == "kind":
            return col.map(lambda k: 0 if k == "reproduction" else 1)
        return col

    cols = [
        "kind",
        "chapter",
        "id",
        "source",
        "statement",
        "rule",
        "status",
        "expected",
        "statistic",
        "interval",
        "n",
        "values",
        "seeds",
        "value",
        "paper",
        "note",
        "profile",
    ]
    df = pd.DataFrame(records).reindex(columns=cols)
    return df.sort_values(["kind", "chapter", "id"], kind="stable", key=order).reset_index(drop=True)
