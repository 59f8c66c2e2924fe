"""Data sets behind the book, all returned with one interface, :class:`Data`.

* ``"mnist1d"`` — MNIST-1D (Greydanus & Kobak 2024) generated procedurally by the ``mnist1d``
  package (``make_dataset``; never ``get_dataset``, which downloads). The embedded default.
* ``"digits"`` — scikit-learn's 8×8 handwritten digits (shipped with scikit-learn).
* ``"gaussian"`` — a seeded Gaussian mixture with K classes in D dimensions.
* ``"cifar10"``, ``"mnist"``, ``"fashion_mnist"`` — torchvision sets for the *full* profile,
  read from torchvision's on-disk format under ``root`` (downloaded there only when asked).

Every generator takes a ``seed`` and leaves the global random state untouched.
"""
from __future__ import annotations

import contextlib
import functools
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = ["Data", "load", "class_subset", "mnist1d", "digits", "gaussian_mixture", "torchvision_set", "DATASETS",
           "TORCHVISION_SETS"]


@dataclass
class Data:
    """A train/test pair with what a model needs to know about it.

    ``train``/``test`` are torch ``Dataset`` objects yielding ``(x, y)`` with integer labels;
    for the embedded sets they are ``TensorDataset`` objects, so :meth:`tensors` is free.
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple
    info: dict = field(default_factory=dict)

    def split(self, split: str) -> Dataset:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return self.train if split == "train" else self.test

    def tensors(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """(X, y) of a split as tensors (stacks a non-tensor dataset once)."""
        ds = self.split(split)
        if isinstance(ds, TensorDataset):
            return ds.tensors[0], ds.tensors[1]
        xs, ys = zip(*(ds[i] for i in range(len(ds))))
        return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys, dtype=torch.long)

    def loader(self, split: str = "train", batch_size: int = 128, *, shuffle: bool = False, seed: int = 0,
               **kwargs) -> DataLoader:
        """A DataLoader over a split; shuffling draws from its own generator seeded by ``seed``."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        g = torch.Generator()
        g.manual_seed(seed)
        return DataLoader(self.split(split), batch_size=batch_size, shuffle=shuffle, generator=g, **kwargs)

    def counts(self, split: str = "train") -> torch.Tensor:
        """Samples per class in a split."""
        return torch.bincount(self.tensors(split)[1], minlength=self.num_classes)

    def __repr__(self) -> str:
        return (f"Data({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"num_classes={self.num_classes}, input_shape={self.input_shape})")


@contextlib.contextmanager
def _isolated_global_rng():
    """Run code that reseeds Python's and NumPy's global RNGs without leaking the change."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _check_sizes(**sizes) -> None:
    for name, v in sizes.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if v < 1:
            raise ValueError(f"{name} must be positive, got {v}")


def _check_seed(seed) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")


@functools.lru_cache(maxsize=16)
def _mnist1d_arrays(n_total: int, seed: int):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_total
    args.train_split = 1.0
    args.seed = seed
    with _isolated_global_rng():
        d = make_dataset(args)
    return d["x"].astype(np.float32), d["y"].astype(np.int64)


def mnist1d(n_train: int = 4000, n_test: int = 1000, *, seed: int = 0, classes=None) -> Data:
    """MNIST-1D: 10 classes of length-40 signals, generated procedurally (no download).

    ``n_train + n_test`` samples are drawn with the package's ``make_dataset`` (10 templates
    under random padding, translation, shear, scale and correlated noise, ``seed``), shuffled,
    and split; the package standardises the whole set to mean 0 and std 1. The package reseeds
    Python's and NumPy's global RNGs; that side effect is undone here.

    ``classes`` (e.g. ``[0, 1, 2, 3]``) keeps only those digits, relabelled 0..len−1 in the
    given order; ``n_train``/``n_test`` then count the kept samples.
    """
    _check_sizes(n_train=n_train, n_test=n_test)
    _check_seed(seed)
    keep = _check_classes(classes, 10)
    n_total = n_train + n_test
    if n_total < len(keep):
        raise ValueError(f"MNIST-1D needs at least {len(keep)} samples in all, got {n_total}")
    # make_dataset draws num_samples // 10 per class: round up, then cut.
    per_class = -(-n_total // len(keep))
    x, y = _mnist1d_arrays(per_class * 10, int(seed))
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    if classes is not None:
        sel = torch.isin(Y, torch.tensor(keep))
        X, Y = X[sel], _relabel(Y[sel], keep)
    X, Y = X[:n_total].clone(), Y[:n_total].clone()
    return Data("mnist1d", TensorDataset(X[:n_train], Y[:n_train]), TensorDataset(X[n_train:], Y[n_train:]),
                len(keep), (40,), {"seed": seed, "classes": keep})


def _check_classes(classes, K: int) -> list[int]:
    if classes is None:
        return list(range(K))
    keep = [int(c) for c in classes]
    if len(keep) < 2 or len(set(keep)) != len(keep) or min(keep) < 0 or max(keep) >= K:
        raise ValueError(f"classes must be ≥ 2 distinct labels in 0..{K - 1}, got {list(classes)}")
    return keep


def _relabel(y: torch.Tensor, keep: list[int]) -> torch.Tensor:
    lut = torch.full((int(max(keep)) + 1,), -1, dtype=torch.long)
    lut[torch.tensor(keep)] = torch.arange(len(keep))
    return lut[y]


def class_subset(data: Data, classes) -> Data:
    """Keep only ``classes`` of a tensor-backed :class:`Data`, relabelled 0..len−1 in that order."""
    keep = _check_classes(classes, data.num_classes)
    splits = []
    for split in ("train", "test"):
        X, y = data.tensors(split)
        sel = torch.isin(y, torch.tensor(keep))
        splits.append(TensorDataset(X[sel], _relabel(y[sel], keep)))
    return Data(data.name, splits[0], splits[1], len(keep), data.input_shape, {**data.info, "classes": keep})


def digits(*, test_fraction: float = 0.25, seed: int = 0) -> Data:
    """scikit-learn's 1,797 handwritten 8×8 digits, pixel values scaled to [0, 1], as 64-vectors."""
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    _check_seed(seed)
    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    Y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator()
    g.manual_seed(seed)
    perm = torch.randperm(len(Y), generator=g)
    n_test = int(round(test_fraction * len(Y)))
    te, tr = perm[:n_test], perm[n_test:]
    return Data("digits", TensorDataset(X[tr], Y[tr]), TensorDataset(X[te], Y[te]), 10, (64,), {"seed": seed})


def gaussian_mixture(num_classes: int = 4, dim: int = 10, n_per_class: int = 100, *, n_test_per_class: int = 100,
                     separation: float = 3.0, noise: float = 1.0, seed: int = 0) -> Data:
    r"""K isotropic Gaussian classes in D dimensions: :math:`x = \mu_y + \sigma\,\varepsilon`,
    with class centres :math:`\mu_k \sim \mathcal N(0, (s^2/D) I)` (so typical centre distances are
    about :math:`s\sqrt2`) drawn once from ``seed``; exactly ``n_per_class`` training samples per class."""
    _check_sizes(num_classes=num_classes, dim=dim, n_per_class=n_per_class, n_test_per_class=n_test_per_class)
    _check_seed(seed)
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    if noise < 0 or separation <= 0:
        raise ValueError(f"need noise ≥ 0 and separation > 0, got noise={noise}, separation={separation}")
    g = torch.Generator()
    g.manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * separation / dim ** 0.5

    def draw(n):
        y = torch.arange(num_classes).repeat_interleave(n)
        x = centres[y] + noise * torch.randn(len(y), dim, generator=g)
        p = torch.randperm(len(y), generator=g)
        return x[p], y[p]

    Xtr, Ytr = draw(n_per_class)
    Xte, Yte = draw(n_test_per_class)
    return Data("gaussian", TensorDataset(Xtr, Ytr), TensorDataset(Xte, Yte), num_classes, (dim,),
                {"seed": seed, "centres": centres})


# ----------------------------------------------------------------------------- torchvision (full profile)
# per-channel means/stds of the training sets (standard values)
TORCHVISION_SETS = {
    "cifar10": ("CIFAR10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist": ("MNIST", 10, (1, 28, 28), (0.1307,), (0.3081,)),
    "fashion_mnist": ("FashionMNIST", 10, (1, 28, 28), (0.2860,), (0.3530,)),
}


def default_data_root() -> str:
    """Where torchvision sets live: ``$NCLIB_DATA`` or ``~/.cache/nclib/data``."""
    return os.environ.get("NCLIB_DATA", os.path.join(os.path.expanduser("~"), ".cache", "nclib", "data"))


def torchvision_set(name: str, *, root: str | None = None, download: bool = False,
                    n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Data:
    """CIFAR-10 / MNIST / Fashion-MNIST through ``torchvision.datasets`` (full profile).

    Images are converted to tensors and normalised per channel; no augmentation (Papyan et al.
    2020 trained without it). ``n_train``/``n_test`` take seeded random subsets. With
    ``download=False`` (the default) a missing data set raises ``FileNotFoundError`` naming
    ``root``; chapters catch it and fall back to the quick profile.
    """
    import torchvision
    from torchvision import transforms

    if name not in TORCHVISION_SETS:
        raise ValueError(f"unknown torchvision set {name!r}; choose from {sorted(TORCHVISION_SETS)}")
    _check_seed(seed)
    cls_name, K, shape, mean, std = TORCHVISION_SETS[name]
    cls = getattr(torchvision.datasets, cls_name)
    root = root or default_data_root()
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    try:
        train = cls(root, train=True, transform=tf, download=download)
        test = cls(root, train=False, transform=tf, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(f"{cls_name} not found under {root!r} ({e}); pass download=True "
                                f"with a network, or use the quick profile") from e
    g = torch.Generator()
    g.manual_seed(seed)
    if n_train is not None:
        _check_sizes(n_train=n_train)
        train = torch.utils.data.Subset(train, torch.randperm(len(train), generator=g)[:n_train].tolist())
    if n_test is not None:
        _check_sizes(n_test=n_test)
        test = torch.utils.data.Subset(test, torch.randperm(len(test), generator=g)[:n_test].tolist())
    return Data(name, train, test, K, shape, {"root": root, "seed": seed})


DATASETS = {"mnist1d": mnist1d, "digits": digits, "gaussian": gaussian_mixture}


def load(name: str, **kwargs) -> Data:
    """Load a data set by name: ``mnist1d``, ``digits``, ``gaussian``, ``cifar10``, ``mnist``,
    ``fashion_mnist``; keyword arguments go to the generator/loader, and ``classes=[...]`` keeps
    only those classes (relabelled 0..len−1) of any set."""
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    if name == "mnist1d":
        return mnist1d(**kwargs)
    classes = kwargs.pop("classes", None)
    if name in DATASETS:
        d = DATASETS[name](**kwargs)
    elif name in TORCHVISION_SETS:
        d = torchvision_set(name, **kwargs)
    else:
        d = None
    if d is not None:
        return d if classes is None else class_subset(d, classes)
    raise ValueError(f"unknown data set {name!r}; choose from {sorted(DATASETS) + sorted(TORCHVISION_SETS)}")
