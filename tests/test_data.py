"""Unit tests for nclib.data: shapes, determinism under a seed, isolation of the global RNGs,
exact class counts, loading by name, loaders, and input validation."""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from nclib import data as D

# Small sizes keep MNIST-1D generation fast.
NTR, NTE = 120, 40


@pytest.fixture(scope="module")
def small_mnist1d():
    return D.mnist1d(NTR, NTE, seed=0)


# ----------------------------------------------------------------------------- MNIST-1D
def test_mnist1d_shapes_and_dtypes(small_mnist1d):
    d = small_mnist1d
    assert isinstance(d, D.Data)
    assert d.name == "mnist1d" and d.num_classes == 10 and d.input_shape == (40,)
    Xtr, ytr = d.tensors("train")
    Xte, yte = d.tensors("test")
    assert Xtr.shape == (NTR, 40) and Xte.shape == (NTE, 40)
    assert Xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert ytr.shape == (NTR,) and yte.shape == (NTE,)
    assert int(ytr.min()) >= 0 and int(ytr.max()) <= 9
    assert set(ytr.tolist()) == set(range(10))
    assert torch.isfinite(Xtr).all() and torch.isfinite(Xte).all()
    assert d.counts("train").sum() == NTR and d.counts("train").shape == (10,)
    assert d.info["seed"] == 0
    assert "mnist1d" in repr(d) and f"train={NTR}" in repr(d)


def test_mnist1d_seeds(small_mnist1d):
    again = D.mnist1d(NTR, NTE, seed=0)
    for split in ("train", "test"):
        a, b = small_mnist1d.tensors(split), again.tensors(split)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other = D.mnist1d(NTR, NTE, seed=1)
    assert not torch.equal(small_mnist1d.tensors()[0], other.tensors()[0])


def test_mnist1d_returns_independent_tensors(small_mnist1d):
    """The generator caches arrays: a caller modifying its tensors must not change the next call."""
    d = D.mnist1d(NTR, NTE, seed=0)
    X, _ = d.tensors()
    ref = X.clone()
    X.mul_(0).add_(123.0)
    assert torch.equal(D.mnist1d(NTR, NTE, seed=0).tensors()[0], ref)


def test_mnist1d_leaves_global_rng_untouched():
    """The mnist1d package reseeds Python's and NumPy's global RNGs; nclib must undo that."""
    D._mnist1d_arrays.cache_clear()  # make sure the package really runs
    random.seed(2024)
    np.random.seed(2024)
    torch.manual_seed(2024)
    py_state, np_state, t_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    D.mnist1d(37, 13, seed=9876)
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert torch.equal(torch.get_rng_state(), t_state)
    # and the draws continue as if nothing had happened
    random.seed(2024)
    np.random.seed(2024)
    expected = (random.random(), np.random.rand())
    random.setstate(py_state)
    np.random.set_state(np_state)
    D._mnist1d_arrays.cache_clear()
    D.mnist1d(37, 13, seed=9877)
    assert (random.random(), np.random.rand()) == expected


def test_mnist1d_errors():
    with pytest.raises(ValueError, match="n_train must be positive"):
        D.mnist1d(0, 10)
    with pytest.raises(ValueError, match="n_test must be positive"):
        D.mnist1d(10, -1)
    with pytest.raises(TypeError, match="n_train must be an int"):
        D.mnist1d(10.5, 10)
    with pytest.raises(TypeError, match="n_train must be an int"):
        D.mnist1d(True, 10)
    with pytest.raises(ValueError, match="at least 10 samples"):
        D.mnist1d(4, 3)
    with pytest.raises(TypeError, match="seed must be an int"):
        D.mnist1d(20, 10, seed="0")


# ----------------------------------------------------------------------------- digits
def test_digits():
    d = D.digits(seed=0)
    Xtr, ytr = d.tensors("train")
    Xte, yte = d.tensors("test")
    assert d.num_classes == 10 and d.input_shape == (64,)
    assert Xtr.shape[1] == 64 and Xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert len(ytr) + len(yte) == 1797
    assert len(yte) == round(0.25 * 1797)
    assert float(Xtr.min()) >= 0.0 and float(Xtr.max()) <= 1.0
    assert set(ytr.tolist()) == set(range(10))
    # the split partitions the full set: the class counts add up to those of the whole
    from sklearn.datasets import load_digits

    full = torch.bincount(torch.as_tensor(load_digits().target), minlength=10)
    assert torch.equal(d.counts("train") + d.counts("test"), full)
    again, other = D.digits(seed=0), D.digits(seed=1)
    assert torch.equal(again.tensors()[0], Xtr) and torch.equal(again.tensors()[1], ytr)
    assert not torch.equal(other.tensors()[1], ytr)
    assert len(D.digits(test_fraction=0.5).test) == round(0.5 * 1797)


def test_digits_errors():
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="test_fraction"):
            D.digits(test_fraction=bad)
    with pytest.raises(TypeError, match="seed"):
        D.digits(seed=None)


# ----------------------------------------------------------------------------- Gaussian mixture
def test_gaussian_mixture_counts_and_shapes():
    K, dim, n, nt = 5, 7, 13, 4
    d = D.gaussian_mixture(K, dim, n, n_test_per_class=nt, seed=3)
    Xtr, ytr = d.tensors("train")
    Xte, yte = d.tensors("test")
    assert d.num_classes == K and d.input_shape == (dim,)
    assert Xtr.shape == (K * n, dim) and Xte.shape == (K * nt, dim)
    assert torch.equal(d.counts("train"), torch.full((K,), n))
    assert torch.equal(d.counts("test"), torch.full((K,), nt))
    assert ytr.dtype == torch.int64
    assert d.info["centres"].shape == (K, dim)
    assert not torch.equal(ytr, ytr.sort().values), "samples are shuffled"


def test_gaussian_mixture_seed_and_noise():
    a = D.gaussian_mixture(3, 4, 10, seed=5)
    b = D.gaussian_mixture(3, 4, 10, seed=5)
    c = D.gaussian_mixture(3, 4, 10, seed=6)
    assert torch.equal(a.tensors()[0], b.tensors()[0]) and torch.equal(a.tensors()[1], b.tensors()[1])
    assert not torch.equal(a.tensors()[0], c.tensors()[0])
    z = D.gaussian_mixture(3, 4, 10, noise=0.0, seed=5)  # no noise: every sample is its centre
    X, y = z.tensors()
    assert torch.equal(X, z.info["centres"][y])
    # the per-class means approach the centres
    big = D.gaussian_mixture(2, 3, 2000, n_test_per_class=1, separation=5.0, seed=1)
    X, y = big.tensors()
    for k in range(2):
        assert torch.allclose(X[y == k].mean(0), big.info["centres"][k], atol=0.1)
    state = torch.get_rng_state()
    D.gaussian_mixture(3, 4, 10, seed=7)
    assert torch.equal(state, torch.get_rng_state())


def test_gaussian_mixture_errors():
    with pytest.raises(ValueError, match="num_classes must be ≥ 2"):
        D.gaussian_mixture(1, 4)
    with pytest.raises(ValueError, match="dim must be positive"):
        D.gaussian_mixture(3, 0)
    with pytest.raises(ValueError, match="n_per_class must be positive"):
        D.gaussian_mixture(3, 4, 0)
    with pytest.raises(TypeError, match="n_per_class must be an int"):
        D.gaussian_mixture(3, 4, 2.5)
    with pytest.raises(ValueError, match="noise"):
        D.gaussian_mixture(3, 4, noise=-1.0)
    with pytest.raises(ValueError, match="separation"):
        D.gaussian_mixture(3, 4, separation=0.0)
    with pytest.raises(TypeError, match="seed"):
        D.gaussian_mixture(3, 4, seed=1.0)


# ----------------------------------------------------------------------------- load, Data
def test_load_by_name(small_mnist1d):
    g = D.load("gaussian", num_classes=3, dim=4, n_per_class=6, seed=2)
    ref = D.gaussian_mixture(3, 4, 6, seed=2)
    assert g.name == "gaussian" and torch.equal(g.tensors()[0], ref.tensors()[0])
    m = D.load("mnist1d", n_train=NTR, n_test=NTE, seed=0)
    assert torch.equal(m.tensors()[0], small_mnist1d.tensors()[0])
    assert D.load("digits").name == "digits"
    assert {"mnist1d", "digits", "gaussian"} <= set(D.DATASETS)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        D.load("imagenet")
    with pytest.raises(TypeError, match="must be a str"):
        D.load(3)
    with pytest.raises(TypeError):
        D.load("gaussian", bogus=1)
    with pytest.raises(FileNotFoundError, match="not found under"):
        D.load("cifar10", root=str(tmp_path))  # no download by default
    with pytest.raises(ValueError, match="unknown torchvision set"):
        D.torchvision_set("svhn", root=str(tmp_path))


def test_loader_shuffles_deterministically():
    d = D.gaussian_mixture(4, 3, 10, n_test_per_class=10, seed=0)
    X, y = d.tensors()

    def order(loader):
        return torch.cat([xb for xb, _ in loader])

    plain = order(d.loader(batch_size=7))
    assert torch.equal(plain, X), "shuffle=False keeps the order"
    a = order(d.loader(batch_size=7, shuffle=True, seed=3))
    b = order(d.loader(batch_size=7, shuffle=True, seed=3))
    c = order(d.loader(batch_size=7, shuffle=True, seed=4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, X)
    assert torch.equal(a.sort(0).values, X.sort(0).values), "a permutation of the data"
    state = torch.get_rng_state()
    order(d.loader(batch_size=7, shuffle=True, seed=5))
    assert torch.equal(state, torch.get_rng_state()), "shuffling must not draw from the global RNG"
    batches = list(d.loader("test", batch_size=16))
    assert [len(xb) for xb, _ in batches] == [16, 16, 8]


def test_data_errors():
    d = D.gaussian_mixture(2, 3, 4, seed=0)
    with pytest.raises(ValueError, match="split must be"):
        d.split("val")
    with pytest.raises(ValueError, match="split must be"):
        d.tensors("validation")
    for bad in (0, -3, 2.0):
        with pytest.raises(ValueError, match="batch_size"):
            d.loader(batch_size=bad)


def test_tensors_of_non_tensor_dataset():
    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((2,), float(i)), i

    d = D.Data("pairs", Pairs(), TensorDataset(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)), 3, (2,))
    X, y = d.tensors()
    assert X.shape == (3, 2) and torch.equal(y, torch.arange(3)) and y.dtype == torch.long
    assert torch.equal(d.counts(), torch.ones(3, dtype=torch.long))
