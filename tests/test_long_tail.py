"""Unit tests for the long-tailed subsampling of nclib.data: exact counts against the closed-form
profiles, seeding, nesting across ratios, the untouched test split, load(..., long_tail=...),
and input validation."""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from nclib import data as D


# ----------------------------------------------------------------------------- counts
def test_step_counts_known():
    assert D.long_tail_counts(10, 500, 100) == [500] * 5 + [5] * 5
    assert D.long_tail_counts(10, 500, 30) == [500] * 5 + [16] * 5  # floor(500/30) = 16
    assert D.long_tail_counts(10, 500, 1) == [500] * 10
    assert D.long_tail_counts(4, 100, 10, n_minority=3) == [100, 10, 10, 10]
    assert D.long_tail_counts(3, 100, 1000) == [100, 100, 1]  # K//2 = 1 minority; ≥ 1


def test_exp_counts_known():
    assert D.long_tail_counts(3, 100, 100, "exp") == [100, 10, 1]
    assert D.long_tail_counts(5, 1000, 16, "exp") == [1000, 500, 250, 125, 62]
    c = D.long_tail_counts(10, 5000, 100, "exp")  # Cao et al.'s CIFAR-10-LT
    assert c[0] == 5000 and c[-1] == 50 and all(a >= b for a, b in zip(c, c[1:]))


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(num_classes=10, n_max=100, ratio=0.5), ValueError),
        (dict(num_classes=10, n_max=100, ratio=float("inf")), ValueError),
        (dict(num_classes=10, n_max=100, ratio="10"), TypeError),
        (dict(num_classes=10, n_max=100, ratio=10, kind="linear"), ValueError),
        (dict(num_classes=10, n_max=100, ratio=10, n_minority=10), ValueError),
        (dict(num_classes=10, n_max=100, ratio=10, n_minority=0), ValueError),
        (dict(num_classes=10, n_max=100, ratio=10, kind="exp", n_minority=3), ValueError),
        (dict(num_classes=1, n_max=100, ratio=10), ValueError),
        (dict(num_classes=10, n_max=0, ratio=10), ValueError),
        (dict(num_classes=10, n_max=10.0, ratio=10), TypeError),
    ],
)
def test_counts_validation(kwargs, err):
    with pytest.raises(err):
        D.long_tail_counts(**kwargs)


# ----------------------------------------------------------------------------- subsampling
@pytest.fixture(scope="module")
def gm():
    return D.gaussian_mixture(num_classes=6, dim=4, n_per_class=50, n_test_per_class=10, seed=3)


def test_exact_counts_and_untouched_test(gm):
    lt = D.long_tail(gm, "step", 10, n_max=40, seed=0)
    assert lt.counts("train").tolist() == [40, 40, 40, 4, 4, 4]
    assert lt.info["long_tail"]["counts"] == [40, 40, 40, 4, 4, 4]
    assert lt.info["long_tail"]["minority"] == [3, 4, 5]
    assert lt.test is gm.test and lt.num_classes == 6 and lt.input_shape == gm.input_shape
    ex = D.long_tail(gm, "exp", 25, seed=0)  # n_max defaults to 50
    assert ex.counts("train").tolist() == D.long_tail_counts(6, 50, 25, "exp")


def test_subset_of_original_rows_with_their_labels(gm):
    X, y = gm.tensors("train")
    lt = D.long_tail(gm, "step", 5, seed=1)
    Xs, ys = lt.tensors("train")
    # every kept row is a row of the original with the same label
    match = (Xs[:, None, :] == X[None, :, :]).all(-1)
    assert (match.sum(1) == 1).all()
    assert torch.equal(y[match.float().argmax(1)], ys)


def test_seeded_and_nested(gm):
    a = D.long_tail(gm, "step", 10, n_max=40, seed=7)
    b = D.long_tail(gm, "step", 10, n_max=40, seed=7)
    c = D.long_tail(gm, "step", 10, n_max=40, seed=8)
    assert torch.equal(a.tensors()[0], b.tensors()[0])
    assert not torch.equal(a.tensors()[0], c.tensors()[0])
    # for a fixed seed and n_max, the subsets are nested across ratios
    rows = lambda d: {tuple(r.tolist()) for r in d.tensors()[0]}  # noqa: E731
    r2, r10, r40 = (rows(D.long_tail(gm, "step", R, n_max=40, seed=7)) for R in (2, 10, 40))
    assert r40 <= r10 <= r2


def test_global_rng_untouched(gm):
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(5)
    state = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    D.long_tail(gm, "exp", 10, seed=0)
    assert torch.equal(torch.get_rng_state(), state[0]) and random.getstate() == state[1]
    assert (np.random.get_state()[1] == state[2]).all()


def test_order_ranks_classes(gm):
    lt = D.long_tail(gm, "step", 10, n_max=40, order=[5, 4, 3, 2, 1, 0], seed=0)
    assert lt.counts("train").tolist() == [4, 4, 4, 40, 40, 40]
    with pytest.raises(ValueError, match="permutation"):
        D.long_tail(gm, "step", 10, order=[0, 0, 1, 2, 3, 4])


def test_not_enough_samples_and_types(gm):
    with pytest.raises(ValueError, match="not enough"):
        D.long_tail(gm, "step", 10, n_max=51)
    with pytest.raises(TypeError):
        D.long_tail(gm.train, "step", 10)
    with pytest.raises(TypeError):
        D.long_tail(gm, "step", 10, seed=1.5)


class _PlainDataset(Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


def test_non_tensor_dataset_becomes_subset(gm):
    plain = D.Data("plain", _PlainDataset(gm.train), gm.test, gm.num_classes, gm.input_shape)
    lt = D.long_tail(plain, "step", 10, n_max=40, seed=0)
    assert isinstance(lt.train, torch.utils.data.Subset)
    assert lt.counts("train").tolist() == [40, 40, 40, 4, 4, 4]
    ref = D.long_tail(gm, "step", 10, n_max=40, seed=0)
    assert torch.equal(lt.tensors()[0], ref.tensors()[0])


def test_load_with_long_tail_matches_function():
    kw = dict(num_classes=4, dim=3, n_per_class=30, n_test_per_class=5, seed=1)
    a = D.load("gaussian", **kw, long_tail={"kind": "step", "ratio": 6, "seed": 2})
    b = D.long_tail(D.gaussian_mixture(**kw), "step", 6, seed=2)
    assert torch.equal(a.tensors()[0], b.tensors()[0]) and a.counts().tolist() == [30, 30, 5, 5]
    with pytest.raises(TypeError, match="long_tail"):
        D.load("gaussian", **kw, long_tail=10)


def test_load_mnist1d_long_tail_exact():
    d = D.load("mnist1d", n_train=300, n_test=50, seed=0, long_tail={"ratio": 10, "n_max": 20, "seed": 0})
    assert d.counts("train").tolist() == [20] * 5 + [2] * 5
    assert len(d.test) == 50
    assert isinstance(d.train, TensorDataset)
