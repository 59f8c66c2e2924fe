"""Small statistics the claims are decided with: exact rank correlations, intervals over seeds,
and the three-way status of a rule evaluated on an interval.

Everything here is deterministic (the bootstrap uses a fixed generator) and exact where the
answer is a rational number, so no reproduction status is ever decided by float round-off.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

__all__ = [
    "spearman",
    "seed_interval",
    "rule_status",
    "parse_rule",
    "INTERVAL_METHODS",
    "STATUSES",
    "calibrated_status",
]

INTERVAL_METHODS = ("range", "bootstrap")
STATUSES = ("reproduced", "not reproduced", "inconclusive")
_BOOT_RESAMPLES = 4000
_BOOT_LEVEL = 0.95


def _average_ranks(v: list[float]) -> list[Fraction]:
    """Ranks 1..n with ties sharing their average rank, as exact fractions."""
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [Fraction(0)] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        r = Fraction(i + j + 2, 2)  # average of the 1-based positions i+1 .. j+1
        for t in range(i, j + 1):
            ranks[order[t]] = r
        i = j + 1
    return ranks


def _finite_list(x, name: str) -> list[float]:
    try:
        a = np.asarray(x, dtype=float).ravel()
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a sequence of numbers ({e})") from None
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a.tolist()


def spearman(x, y) -> float:
    r"""Spearman's rank correlation :math:`\rho` of two equally long sequences, computed exactly.

    :math:`\rho` is the Pearson correlation of the ranks (ties get their average rank). Ranks are
    exact fractions, so the covariance and both variances are exact rationals; without ties
    :math:`\rho = 1 - 6\sum d_i^2 / (n(n^2-1))` is returned as the double nearest to that
    rational (0.8 is ``0.8``, never ``0.7999999999999999``). With ties the final square root is
    the only rounding. +1 when ``y`` rises with ``x`` at every step, −1 when it falls.
    """
    xs, ys = _finite_list(x, "x"), _finite_list(y, "y")
    if len(xs) != len(ys):
        raise ValueError(f"x and y need the same length, got {len(xs)} and {len(ys)}")
    if len(xs) < 2:
        raise ValueError(f"need at least 2 points, got {len(xs)}")
    rx, ry = _average_ranks(xs), _average_ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        raise ValueError("a constant sequence has no rank correlation")
    if sxx == syy:  # no ties in either (or the same tie pattern): rho is rational
        return float(sxy / sxx)
    r2 = sxy * sxy / (sxx * syy)  # exact
    return math.copysign(math.sqrt(r2), float(sxy))


def seed_interval(values, method: str = "range") -> tuple[float, float, float]:
    """``(statistic, lo, hi)`` of per-seed ``values``.

    * ``"range"`` — statistic = median, interval = [min, max]: the rule is judged *on every
      seed* (its conservative end is the worst seed).
    * ``"bootstrap"`` — statistic = mean, interval = 95 % percentile bootstrap of the mean over
      seeds (4,000 resamples, fixed generator: the same values give the same interval).
    """
    v = np.asarray(_finite_list(values, "values"))
    if len(v) == 0:
        raise ValueError("values is empty")
    if method == "range":
        return float(np.median(v)), float(v.min()), float(v.max())
    if method == "bootstrap":
        rng = np.random.default_rng(0)
        means = v[rng.integers(0, len(v), size=(_BOOT_RESAMPLES, len(v)))].mean(axis=1)
        a = (1 - _BOOT_LEVEL) / 2
        return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))
    raise ValueError(f"method must be one of {INTERVAL_METHODS}, got {method!r}")


_OPS = (">=", "<=", ">", "<")


def parse_rule(rule: str):
    """``("cmp", op, x)`` for ``"> x"``, ``">= x"``, ``"< x"``, ``"<= x"``; ``("in", a, b)`` for
    ``"in [a, b]"``. Raises ``ValueError`` naming the rule otherwise."""
    if not isinstance(rule, str):
        raise TypeError(f"rule must be a str, got {type(rule).__name__}")
    r = rule.strip()
    if r.startswith("in"):
        body = r[2:].strip()
        if body.startswith("[") and body.endswith("]"):
            parts = body[1:-1].split(",")
            if len(parts) == 2:
                try:
                    a, b = float(parts[0]), float(parts[1])
                except ValueError:
                    a = b = None
                if a is not None and math.isfinite(a) and math.isfinite(b):
                    if a > b:
                        raise ValueError(f"rule {rule!r}: empty interval")
                    return ("in", a, b)
    for op in _OPS:
        if r.startswith(op):
            try:
                x = float(r[len(op) :])
            except ValueError:
                break
            if math.isfinite(x):
                return ("cmp", op, x)
            break
    raise ValueError(f"cannot parse rule {rule!r}; a reproduction rule is '> x', '>= x', '< x', '<= x' or 'in [a, b]'")


def _holds(v: float, parsed) -> bool:
    kind, a, b = parsed
    if kind == "in":
        return a <= v <= b
    return {">": v > b, ">=": v >= b, "<": v < b, "<=": v <= b}[a]


def rule_status(rule: str, lo: float, hi: float) -> str:
    """Status of ``rule`` on the interval [lo, hi]: *reproduced* when the rule holds at the
    interval's conservative end (everywhere on it), *not reproduced* when it fails at the other
    end (nowhere on it), *inconclusive* when the interval straddles the threshold."""
    p = parse_rule(rule)
    if not (lo <= hi):
        raise ValueError(f"need lo <= hi, got [{lo}, {hi}]")
    if p[0] == "in":
        a, b = p[1], p[2]
        if a <= lo and hi <= b:
            return "reproduced"
        if hi < a or lo > b:
            return "not reproduced"
        return "inconclusive"
    op = p[1]
    worst, best = (lo, hi) if op in (">", ">=") else (hi, lo)
    if _holds(worst, p):
        return "reproduced"
    if not _holds(best, p):
        return "not reproduced"
    return "inconclusive"


def calibrated_status(rule: str, method: str, runs: dict, n: int = 3) -> str:
    """The status a claim can be *expected* to have with ``n`` seeds, from calibration runs.

    ``runs`` maps a numerics label (e.g. ``"native"``, ``"emulated"``) to its per-seed values.
    Every subset of ``n`` seeds of every run is judged with :func:`rule_status`; the expected
    status is the one they all agree on when it is decisive, else ``"inconclusive"``.
    """
    seen = set()
    for label, vals in runs.items():
        vals = _finite_list(vals, f"calibration values of {label!r}")
        if len(vals) < n:
            raise ValueError(f"calibration run {label!r} has {len(vals)} seeds, fewer than n={n}")
        for sub in itertools.combinations(vals, n):
            _, lo, hi = seed_interval(sub, method)
            seen.add(rule_status(rule, lo, hi))
    if len(seen) == 1 and seen != {"inconclusive"}:
        return seen.pop()
    return "inconclusive"
