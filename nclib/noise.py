r"""Symmetric label noise for the training set (the label-corruption experiments of MCR²).

Yu et al. (2020, ``chan2021``) corrupt a fraction of CIFAR-10 training labels and
compare cross-entropy with MCR²; the same protocol tests how memorising noisy labels interacts
with neural collapse. Default convention here (``redraw="other"``, "flip exactly"): of N labels,
exactly :math:`m = \operatorname{round}(\rho N)` positions are chosen uniformly without
replacement and each gets a label drawn uniformly from the **other** K−1 classes, so every chosen
label really changes and ``ratio`` ρ is the realised fraction of wrong labels.

The MCR² authors' code (``github.com/ryanchankh/mcr2``, ``corrupt.py``, ``default_corrupt``)
instead chooses ⌊ρN⌋ positions and redraws each from **all** K classes, so only about
ρ(K−1)/K of the labels end up wrong (0.9ρ on CIFAR-10). ``redraw="any"`` reproduces that model
(with round instead of floor); the returned mask then marks the labels that actually changed.

Randomness comes from a private ``torch.Generator`` seeded with ``seed``; the global state is
never touched and the input labels are never modified.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from . import _validate as _v
from .data import Data

__all__ = ["symmetric_label_noise", "with_label_noise", "RelabeledDataset"]

_REDRAWS = ("other", "any")


def _check_ratio(ratio) -> float:
    return _v.fraction(ratio, "ratio")


def _check_seed(seed) -> int:
    return _v.integer(seed, "seed")


def symmetric_label_noise(
    labels: Tensor, ratio: float, num_classes: int, seed: int = 0, *, redraw: str = "other"
) -> tuple[Tensor, Tensor]:
    r"""Flip exactly :math:`m = \operatorname{round}(\rho N)` of N labels to a uniformly drawn *other* class.

    The m positions are a uniform random subset (``torch.randperm``); each new label is
    :math:`\tilde y_i = (y_i + u_i) \bmod K` with :math:`u_i` uniform on {1..K−1}, i.e. uniform over
    the K−1 classes different from :math:`y_i`: for every flipped i,
    :math:`P(\tilde y_i = k) = 1/(K-1)` for k ≠ y_i (symmetric label noise; Yu et al. 2020,
    ``chan2021``, use symmetric corruption). ``round`` is Python's (halves to even).

    ``redraw="any"`` draws the m new labels uniformly from all K classes instead (the MCR²
    authors' ``default_corrupt``; see the module docstring), so a chosen label stays unchanged
    with probability 1/K and about :math:`m(K-1)/K` labels change.

    Returns ``(noisy_labels, flipped)``: a new tensor with ``labels``' dtype and device, and a
    bool mask of the positions whose label changed (exactly m of them for ``redraw="other"``).
    ``ratio=0`` returns an unchanged copy. ``seed`` seeds a private ``torch.Generator`` (same
    seed, same noise).
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got num_classes={num_classes}")
    ratio = _check_ratio(ratio)
    seed = _check_seed(seed)
    if redraw not in _REDRAWS:
        raise ValueError(f"redraw must be one of {_REDRAWS}, got {redraw!r}")
    K, N = int(num_classes), labels.shape[0]
    y = labels.detach().to("cpu", torch.long)
    if N and (int(y.min()) < 0 or int(y.max()) >= K):
        raise ValueError(f"labels out of range: found [{int(y.min())}, {int(y.max())}], expected 0..{K - 1}")
    m = round(ratio * N)
    g = torch.Generator()
    g.manual_seed(seed)
    idx = torch.randperm(N, generator=g)[:m]
    noisy = y.clone()
    if redraw == "other":
        noisy[idx] = (y[idx] + torch.randint(1, K, (m,), generator=g)) % K
    else:
        noisy[idx] = torch.randint(0, K, (m,), generator=g)
    flipped = noisy != y
    return noisy.to(device=labels.device, dtype=labels.dtype), flipped.to(labels.device)


class RelabeledDataset(Dataset):
    """``base`` with its labels replaced: item i is ``(base[i][0], labels[i])``."""

    def __init__(self, base: Dataset, labels: Tensor):
        if len(base) != len(labels):
            raise ValueError(f"need one label per item: dataset has {len(base)}, got {len(labels)} labels")
        self.base, self.labels = base, labels

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i][0], self.labels[i]


def _dataset_labels(ds: Dataset) -> Tensor:
    """Labels of a dataset without loading its inputs where possible (TensorDataset, ``targets``, Subset)."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[1]
    if isinstance(ds, RelabeledDataset):
        return ds.labels
    if isinstance(ds, Subset):
        return _dataset_labels(ds.dataset)[torch.as_tensor(ds.indices, dtype=torch.long)]
    if hasattr(ds, "targets"):
        return torch.as_tensor(ds.targets, dtype=torch.long)
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))], dtype=torch.long)


def with_label_noise(data: Data, ratio: float, seed: int = 0, *, redraw: str = "other") -> Data:
    r"""A copy of ``data`` whose **training** labels carry symmetric noise (test set untouched).

    The training labels get :func:`symmetric_label_noise` (with ``redraw="other"``: exactly
    round(ρN) flipped, each to a uniform other class; ``redraw="any"``: the MCR² authors' model). For a ``TensorDataset`` (the embedded
    sets) the new ``train`` is a ``TensorDataset`` sharing the inputs; otherwise a
    :class:`RelabeledDataset` wrapping the original (labels read from ``targets`` where available,
    so torchvision images are not loaded). ``info`` gains ``label_noise`` (ρ), ``noise_seed``,
    ``noise_redraw``, ``flipped`` (bool mask of the changed training labels) and
    ``clean_train_labels``.
    """
    if not isinstance(data, Data):
        raise TypeError(f"data must be an nclib.data.Data, got {type(data).__name__}")
    ratio = _check_ratio(ratio)
    seed = _check_seed(seed)
    clean = _dataset_labels(data.train)
    noisy, flipped = symmetric_label_noise(clean, ratio, data.num_classes, seed, redraw=redraw)
    if isinstance(data.train, TensorDataset):
        train = TensorDataset(*data.train.tensors[:1], noisy, *data.train.tensors[2:])
    else:
        train = RelabeledDataset(data.train, noisy)
    info = dict(data.info)
    info.update(
        label_noise=ratio, noise_seed=seed, noise_redraw=redraw, flipped=flipped, clean_train_labels=clean.clone()
    )
    return Data(data.name, train, data.test, data.num_classes, data.input_shape, info)
