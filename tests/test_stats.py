"""nclib.stats: exact rank correlation, intervals over seeds, the three-way rule status and the
calibrated expectation — each against a case worked out by hand."""

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from nclib import generalization, stats, transfer


def test_spearman_is_exact_on_the_lattice():
    # one adjacent swap among 5 points: 1 - 6*2/(5*24) = 0.9 exactly; among 6: 1 - 12/210
    assert stats.spearman([1, 2, 3, 4, 5], [1, 3, 2, 4, 5]) == 0.9
    assert stats.spearman([1, 2, 3, 4, 5], [2, 1, 3, 5, 4]) == 0.8
    assert stats.spearman([0.1, 0.2, 0.3, 0.4, 0.5], [5, 4, 3, 2, 1]) == -1.0
    assert stats.spearman(range(6), [0, 2, 1, 3, 4, 5]) == 1 - 12 / 210
    # every permutation of 5: the exact rational, as scipy computes it up to round-off
    for p in itertools.permutations(range(5)):
        d2 = sum((i - j) ** 2 for i, j in zip(range(5), p))
        assert stats.spearman(range(5), p) == float(1 - __import__("fractions").Fraction(6 * d2, 120))


def test_spearman_with_ties_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = rng.integers(0, 4, 8), rng.integers(0, 4, 8)
        if len(set(x)) > 1 and len(set(y)) > 1:
            assert stats.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_the_chapter_helpers_use_the_exact_correlation():
    assert generalization.rank_correlation([1, 2, 3, 4, 5], [2, 1, 3, 5, 4]) == 0.8
    assert transfer.spearman([1, 2, 3, 4, 5], [1, 3, 2, 4, 5]) == 0.9


@pytest.mark.parametrize(
    "x,y,match",
    [
        ([1, 2], [1], "same length"),
        ([1], [1], "at least 2"),
        ([1, 1, 1], [1, 2, 3], "constant"),
        ([1, float("nan")], [1, 2], "NaN"),
    ],
)
def test_spearman_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        stats.spearman(x, y)


def test_seed_interval():
    assert stats.seed_interval([3, 1, 2]) == (2.0, 1.0, 3.0)
    m, lo, hi = stats.seed_interval([1.0, 2.0, 3.0, 4.0], "bootstrap")
    assert m == 2.5 and 1.0 <= lo < m < hi <= 4.0
    assert stats.seed_interval([1.0, 2.0, 3.0, 4.0], "bootstrap") == (m, lo, hi)  # deterministic
    assert stats.seed_interval([5.0, 5.0, 5.0], "bootstrap") == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="method"):
        stats.seed_interval([1, 2], "t")
    with pytest.raises(ValueError, match="empty"):
        stats.seed_interval([])


@pytest.mark.parametrize(
    "rule,lo,hi,status",
    [
        (">= 10", 10, 20, "reproduced"),
        (">= 10", 9.99, 20, "inconclusive"),
        (">= 10", 1, 9.99, "not reproduced"),
        ("> 10", 10, 20, "inconclusive"),
        ("> 10", 1, 10, "not reproduced"),
        ("< 0.1", 0, 0.09, "reproduced"),
        ("< 0.1", 0, 0.1, "inconclusive"),
        ("< 0.1", 0.1, 0.2, "not reproduced"),
        ("<= 0.1", 0, 0.1, "reproduced"),
        ("in [1, 2]", 1, 2, "reproduced"),
        ("in [1, 2]", 0, 1, "inconclusive"),
        ("in [1, 2]", 2.5, 3, "not reproduced"),
        ("in [1, 2]", 0, 3, "inconclusive"),
    ],
)
def test_rule_status(rule, lo, hi, status):
    assert stats.rule_status(rule, lo, hi) == status


@pytest.mark.parametrize("rule", ["== 1", "true", "> x", "in [2, 1]", ">= inf", ""])
def test_parse_rule_rejects(rule):
    with pytest.raises(ValueError, match="rule"):
        stats.parse_rule(rule)


def test_calibrated_status():
    ok = {"native": [11, 12, 13, 14, 15], "emulated": [11, 12, 13, 14, 16]}
    assert stats.calibrated_status(">= 10", "range", ok) == "reproduced"
    bad = {"native": [1, 2, 3, 4, 5], "emulated": [1, 2, 3, 4, 6]}
    assert stats.calibrated_status(">= 10", "range", bad) == "not reproduced"
    # one seed under one numerics below the threshold: some 3-seed family would be inconclusive
    mixed = {"native": [11, 12, 13, 14, 15], "emulated": [9, 12, 13, 14, 15]}
    assert stats.calibrated_status(">= 10", "range", mixed) == "inconclusive"
    with pytest.raises(ValueError, match="fewer than"):
        stats.calibrated_status(">= 10", "range", {"native": [1, 2]})
