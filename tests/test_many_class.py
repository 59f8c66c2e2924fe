"""Unit tests for nclib.data.many_class: shapes, seeding, class identity across requests,
prefix-stable sample sets, analytic special cases of the generative model, loading by name,
and input validation."""

import random

import numpy as np
import pytest
import torch

from nclib import data as D


def test_shapes_labels_and_info():
    d = D.many_class(7, 5, 3, seed=0)
    assert isinstance(d, D.Data) and d.name == "many_class"
    assert d.num_classes == 7 and d.input_shape == (64,)
    Xtr, ytr = d.tensors("train")
    Xte, yte = d.tensors("test")
    assert Xtr.shape == (35, 64) and Xte.shape == (21, 64)
    assert Xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert torch.equal(d.counts("train"), torch.full((7,), 5)) and torch.equal(d.counts("test"), torch.full((7,), 3))
    assert d.info["class_ids"] == list(range(7)) and d.info["prototypes"].shape == (7, 16)
    assert torch.isfinite(Xtr).all()
    d2 = D.many_class(3, 2, 1, input_dim=10, latent_dim=4, hidden=12, nuisance_dim=2, class_offset=50)
    assert d2.tensors()[0].shape == (6, 10) and d2.info["class_ids"] == [50, 51, 52]


def test_seeded_and_global_rng_untouched():
    py, npst, tst = random.getstate(), np.random.get_state(), torch.get_rng_state()
    a, b = D.many_class(4, 6, 2, seed=3), D.many_class(4, 6, 2, seed=3)
    assert random.getstate() == py and torch.equal(torch.get_rng_state(), tst)
    assert np.array_equal(np.random.get_state()[1], npst[1])
    assert torch.equal(a.tensors()[0], b.tensors()[0]) and torch.equal(a.tensors("test")[0], b.tensors("test")[0])
    c = D.many_class(4, 6, 2, seed=4)
    assert not torch.allclose(a.tensors()[0], c.tensors()[0])


def test_a_class_is_the_same_whatever_else_is_requested():
    """Class id k has the same prototype and samples alone or among others (disjoint id ranges
    of one generator = source and target classes from one class distribution)."""
    whole = D.many_class(10, 4, 2, seed=1)
    part = D.many_class(3, 4, 2, class_offset=6, seed=1)
    Xw, yw = whole.tensors()
    Xp, yp = part.tensors()
    for j in range(3):
        assert torch.equal(Xp[yp == j], Xw[yw == 6 + j])
    assert torch.equal(part.info["prototypes"], whole.info["prototypes"][6:9])


def test_more_samples_append():
    small, big = D.many_class(3, 4, 2, seed=2), D.many_class(3, 9, 5, seed=2)
    for split, n in (("train", 4), ("test", 2)):
        Xs, ys = small.tensors(split)
        Xb, yb = big.tensors(split)
        for k in range(3):
            assert torch.equal(Xs[ys == k], Xb[yb == k][:n])


def test_train_and_test_are_different_draws():
    d = D.many_class(2, 5, 5, seed=0)
    assert not torch.allclose(d.tensors("train")[0], d.tensors("test")[0])


def test_no_variation_means_one_point_per_class():
    """within = nuisance = noise = 0: every sample of class c is A2 tanh(A1 z_c + c)."""
    d = D.many_class(5, 6, 2, within=0.0, nuisance=0.0, noise=0.0, seed=0)
    X, y = d.tensors()
    for k in range(5):
        Xk = X[y == k]
        assert torch.allclose(Xk, Xk[:1].expand_as(Xk), atol=1e-6)
    means = torch.stack([X[y == k][0] for k in range(5)])
    assert torch.pdist(means).min() > 0.1


def test_nuisance_lives_in_an_m_dimensional_subspace():
    """within = noise = 0: the deviations from the class point are a·B u, rank m = nuisance_dim."""
    d = D.many_class(3, 40, 1, within=0.0, noise=0.0, nuisance=1.0, nuisance_dim=5, seed=0)
    X, y = d.tensors()
    dev = torch.cat([X[y == k] - X[y == k].mean(0) for k in range(3)]).double()
    s = torch.linalg.svdvals(dev)
    assert (s > 1e-4 * s[0]).sum() == 5


def test_pure_noise_has_variance_sigma_squared():
    d = D.many_class(2, 2000, 1, within=0.0, nuisance=0.0, noise=0.3, seed=0)
    X, y = d.tensors()
    v = torch.cat([X[y == k] - X[y == k].mean(0) for k in range(2)]).double().var(0)
    assert torch.allclose(v.mean(), torch.tensor(0.09, dtype=torch.float64), rtol=0.03)


def test_nuisance_makes_raw_nearest_mean_harder():
    """The calibration behind chapter 5: nuisance directions raise the within-class spread
    relative to the distances between class means."""

    def ratio(nuisance):
        X, y = D.many_class(20, 30, 1, nuisance=nuisance, seed=0).tensors()
        X = X.double()
        mu = torch.stack([X[y == k].mean(0) for k in range(20)])
        within = torch.stack([(X[y == k] - mu[k]).pow(2).sum(1).mean() for k in range(20)]).mean()
        return within / torch.pdist(mu).pow(2).mean()

    assert ratio(2.0) > 3 * ratio(0.0)


def test_load_by_name_and_class_subset():
    d = D.load("many_class", num_classes=6, n_per_class=3, n_test_per_class=2, seed=0)
    assert d.num_classes == 6 and len(d.train) == 18
    s = D.load("many_class", num_classes=6, n_per_class=3, n_test_per_class=2, seed=0, classes=[4, 1])
    X, y = s.tensors()
    Xf, yf = d.tensors()
    assert s.num_classes == 2 and torch.equal(X[y == 0], Xf[yf == 4])
    assert "many_class" in D.DATASETS


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(num_classes=1), ValueError),
        (dict(num_classes=0), ValueError),
        (dict(n_per_class=0), ValueError),
        (dict(num_classes=2.0), TypeError),
        (dict(class_offset=-1), ValueError),
        (dict(class_offset=1.5), TypeError),
        (dict(seed=-1), ValueError),
        (dict(seed=True), TypeError),
        (dict(noise=-0.1), ValueError),
        (dict(within=float("nan")), ValueError),
        (dict(nuisance="big"), TypeError),
        (dict(latent_dim=0), ValueError),
    ],
)
def test_validation(kwargs, exc):
    with pytest.raises(exc):
        D.many_class(**{"num_classes": 3, "n_per_class": 2, "n_test_per_class": 1, **kwargs})


def test_cifar100_is_a_known_torchvision_set():
    name, K, shape, mean, std = D.TORCHVISION_SETS["cifar100"]
    assert name == "CIFAR100" and K == 100 and shape == (3, 32, 32) and len(mean) == len(std) == 3
