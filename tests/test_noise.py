"""Symmetric label noise: exact flip counts, flips to other classes, uniformity, seeding, Data wrapper."""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from nclib.data import Data, gaussian_mixture
from nclib.noise import RelabeledDataset, symmetric_label_noise, with_label_noise


def _labels(N, K, seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.randint(0, K, (N,), generator=g)


@pytest.mark.parametrize(
    "N,K,ratio",
    [(1, 2, 1.0), (10, 2, 0.3), (97, 3, 0.5), (1000, 10, 0.2), (1000, 10, 0.8), (50, 7, 1.0), (13, 4, 0.35)],
)
def test_exact_count_and_every_flip_changes(N, K, ratio):
    y = _labels(N, K)
    y_before = y.clone()
    noisy, flipped = symmetric_label_noise(y, ratio, K, seed=1)
    assert torch.equal(y, y_before)  # input untouched
    assert flipped.dtype == torch.bool and flipped.shape == (N,)
    assert int(flipped.sum()) == round(ratio * N)
    assert bool((noisy[flipped] != y[flipped]).all())
    assert torch.equal(noisy[~flipped], y[~flipped])
    assert torch.equal(flipped, noisy != y)
    assert noisy.dtype == y.dtype and int(noisy.min()) >= 0 and int(noisy.max()) < K


def test_ratio_zero_is_identity_and_empty_input():
    y = _labels(100, 5)
    noisy, flipped = symmetric_label_noise(y, 0.0, 5, seed=3)
    assert torch.equal(noisy, y) and not flipped.any()
    assert noisy.data_ptr() != y.data_ptr()  # a copy, not the input
    e, f = symmetric_label_noise(torch.zeros(0, dtype=torch.long), 0.5, 3, seed=0)
    assert e.shape == (0,) and f.shape == (0,)


def test_dtype_preserved():
    y = _labels(40, 4).to(torch.int32)
    noisy, _ = symmetric_label_noise(y, 0.5, 4, seed=0)
    assert noisy.dtype == torch.int32


def test_seeded_reproducible_and_global_rng_untouched():
    y = _labels(500, 10)
    torch.manual_seed(123)
    random.seed(7)
    np.random.seed(7)
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    a = symmetric_label_noise(y, 0.4, 10, seed=5)
    b = symmetric_label_noise(y, 0.4, 10, seed=5)
    c = symmetric_label_noise(y, 0.4, 10, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1]) and not torch.equal(a[0], c[0])
    assert torch.equal(torch.get_rng_state(), states[0])
    assert random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])


def test_new_labels_uniform_over_other_classes():
    """All true labels 2, K = 5: the 100,000 flips spread uniformly over {0, 1, 3, 4}.
    Chi-square with 3 d.o.f.; 21.1 is its 0.9999 quantile (fixed seed: deterministic)."""
    K, N = 5, 200_000
    y = torch.full((N,), 2)
    noisy, flipped = symmetric_label_noise(y, 0.5, K, seed=0)
    counts = torch.bincount(noisy[flipped], minlength=K).double()
    assert counts[2] == 0
    obs = counts[[0, 1, 3, 4]]
    expected = flipped.sum().double() / (K - 1)
    chi2 = float(((obs - expected) ** 2 / expected).sum())
    assert chi2 < 21.1
    # the flipped positions are spread uniformly too: each tenth of the array holds ~1/10 of them
    per_block = flipped.view(10, -1).sum(1).double()
    assert float(((per_block - per_block.mean()) ** 2 / per_block.mean()).sum()) < 33.7  # χ²(9) 0.9999


def test_redraw_any_matches_authors_model():
    """redraw="any": round(ρN) positions redrawn from all K classes, so ~ρN(K−1)/K labels change,
    and the new labels of the chosen positions are uniform over all K classes."""
    K, N, ratio = 4, 100_000, 0.6
    y = torch.full((N,), 1)
    noisy, flipped = symmetric_label_noise(y, ratio, K, seed=0, redraw="any")
    assert torch.equal(flipped, noisy != y)
    m = round(ratio * N)
    changed = int(flipped.sum())
    sd = (m * (1 / K) * (1 - 1 / K)) ** 0.5  # binomial s.d. of the unchanged ones
    assert abs(changed - m * (K - 1) / K) < 5 * sd
    counts = torch.bincount(noisy, minlength=K).double()
    counts[1] -= N - m  # remove the never-chosen positions
    chi2 = float(((counts - m / K) ** 2 / (m / K)).sum())
    assert chi2 < 21.1  # χ²(3) 0.9999 quantile
    with pytest.raises(ValueError, match="redraw"):
        symmetric_label_noise(y, ratio, K, seed=0, redraw="all")


def test_bad_inputs_raise():
    y = _labels(20, 3)
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            symmetric_label_noise(y, bad, 3, seed=0)
    with pytest.raises(TypeError, match="ratio"):
        symmetric_label_noise(y, "0.2", 3, seed=0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        symmetric_label_noise([0, 1], 0.5, 2, seed=0)
    with pytest.raises(ValueError, match="1-D"):
        symmetric_label_noise(y.view(4, 5), 0.5, 3, seed=0)
    with pytest.raises(TypeError, match="integer"):
        symmetric_label_noise(y.float(), 0.5, 3, seed=0)
    with pytest.raises(ValueError, match="out of range"):
        symmetric_label_noise(y, 0.5, 2, seed=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        symmetric_label_noise(torch.zeros(5, dtype=torch.long), 0.5, 1, seed=0)
    with pytest.raises(TypeError, match="seed"):
        symmetric_label_noise(y, 0.5, 3, seed=1.5)
    with pytest.raises(TypeError, match="Data"):
        with_label_noise((torch.zeros(3, 2), y[:3]), 0.5, seed=0)


# ----------------------------------------------------------------------------- Data wrapper
def test_with_label_noise_tensor_dataset():
    data = gaussian_mixture(num_classes=4, dim=5, n_per_class=25, n_test_per_class=10, seed=0)
    X, y = data.tensors("train")
    Xt, yt = data.tensors("test")
    y_before = y.clone()
    noisy = with_label_noise(data, 0.3, seed=2)
    assert isinstance(noisy, Data) and isinstance(noisy.train, TensorDataset)
    Xn, yn = noisy.tensors("train")
    assert torch.equal(Xn, X) and torch.equal(y, y_before)  # inputs shared, original labels intact
    assert noisy.test is data.test
    assert torch.equal(noisy.tensors("test")[1], yt)
    flipped = noisy.info["flipped"]
    assert int(flipped.sum()) == round(0.3 * 100)
    assert torch.equal(flipped, yn != y)
    assert torch.equal(noisy.info["clean_train_labels"], y)
    assert noisy.info["label_noise"] == 0.3 and noisy.info["noise_seed"] == 2
    assert noisy.info["noise_redraw"] == "other"
    assert "centres" in noisy.info and "flipped" not in data.info  # original info not mutated
    assert noisy.num_classes == 4 and noisy.input_shape == data.input_shape
    same = with_label_noise(data, 0.0, seed=2)
    assert torch.equal(same.tensors("train")[1], y)


class _ImageLike(Dataset):
    """A non-tensor dataset with torchvision-style ``targets``; inputs must not be needed."""

    def __init__(self, n, K):
        self.targets = [i % K for i in range(n)]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.full((2,), float(i)), self.targets[i]


def test_with_label_noise_non_tensor_dataset():
    base = _ImageLike(30, 3)
    sub = Subset(base, list(range(0, 30, 2)))  # 15 items
    data = Data("fake", sub, base, 3, (2,))
    noisy = with_label_noise(data, 0.4, seed=0)
    assert isinstance(noisy.train, RelabeledDataset)
    clean = torch.tensor([base.targets[i] for i in range(0, 30, 2)])
    assert torch.equal(noisy.info["clean_train_labels"], clean)
    _, yn = noisy.tensors("train")
    assert int((yn != clean).sum()) == round(0.4 * 15) == int(noisy.info["flipped"].sum())
    x0, _ = noisy.train[1]
    assert torch.equal(x0, torch.full((2,), 2.0))  # inputs from the wrapped dataset
    with pytest.raises(ValueError, match="one label per item"):
        RelabeledDataset(base, torch.zeros(3, dtype=torch.long))
