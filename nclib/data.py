"""Data sets behind the book, all returned with one interface, :class:`Data`.

* ``"mnist1d"`` — MNIST-1D (Greydanus & Kobak 2024) generated procedurally by the ``mnist1d``
  package (``make_dataset``; never ``get_dataset``, which downloads). The embedded default.
* ``"digits"`` — scikit-learn's 8×8 handwritten digits (shipped with scikit-learn).
* ``"gaussian"`` — a seeded Gaussian mixture with K classes in D dimensions.
* ``"many_class"`` — a seeded generator of unboundedly many classes drawn from one distribution
  over classes (prototypes through a fixed random nonlinear map, plus nuisance directions), for
  transfer to unseen classes (chapter 5).
* ``"cifar10"``, ``"cifar100"``, ``"mnist"``, ``"fashion_mnist"`` — torchvision sets for the *full* profile,
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

from . import _validate as _v

__all__ = [
    "Data",
    "load",
    "class_subset",
    "mnist1d",
    "digits",
    "gaussian_mixture",
    "torchvision_set",
    "DATASETS",
    "TORCHVISION_SETS",
]


__all__ += ["long_tail_counts", "long_tail", "LONG_TAIL_KINDS"]


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

    def loader(
        self, split: str = "train", batch_size: int = 128, *, shuffle: bool = False, seed: int = 0, **kwargs
    ) -> DataLoader:
        """A DataLoader over a split; shuffling draws from its own generator seeded by ``seed``."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        g = torch.Generator()
        g.manual_seed(seed)
        return DataLoader(self.split(split), batch_size=batch_size, shuffle=shuffle, generator=g, **kwargs)

    def counts(self, split: str = "train") -> torch.Tensor:
        """Samples per class in a split."""
        return torch.bincount(self.tensors(split)[1], minlength=self.num_classes)

    def __repr__(self) -> str:
        return (
            f"Data({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"num_classes={self.num_classes}, input_shape={self.input_shape})"
        )


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
        if _v.integer(v, name) < 1:
            raise ValueError(f"{name} must be positive, got {v}")


def _check_seed(seed) -> None:
    _v.integer(seed, "seed")


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
    return Data(
        "mnist1d",
        TensorDataset(X[:n_train], Y[:n_train]),
        TensorDataset(X[n_train:], Y[n_train:]),
        len(keep),
        (40,),
        {"seed": seed, "classes": keep},
    )


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

    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise TypeError(f"test_fraction must be a number, got {type(test_fraction).__name__}")
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


def gaussian_mixture(
    num_classes: int = 4,
    dim: int = 10,
    n_per_class: int = 100,
    *,
    n_test_per_class: int = 100,
    separation: float = 3.0,
    noise: float = 1.0,
    seed: int = 0,
) -> Data:
    r"""K isotropic Gaussian classes in D dimensions: :math:`x = \mu_y + \sigma\,\varepsilon`,
    with class centres :math:`\mu_k \sim \mathcal N(0, (s^2/D) I)` (so typical centre distances are
    about :math:`s\sqrt2`) drawn once from ``seed``; exactly ``n_per_class`` training samples per class."""
    _check_sizes(num_classes=num_classes, dim=dim, n_per_class=n_per_class, n_test_per_class=n_test_per_class)
    _check_seed(seed)
    if num_classes < 2:
        raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
    for name, v in (("noise", noise), ("separation", separation)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if not (noise >= 0 and separation > 0):  # also rejects NaN
        raise ValueError(f"need noise ≥ 0 and separation > 0, got noise={noise}, separation={separation}")
    g = torch.Generator()
    g.manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * separation / dim**0.5

    def draw(n):
        y = torch.arange(num_classes).repeat_interleave(n)
        x = centres[y] + noise * torch.randn(len(y), dim, generator=g)
        p = torch.randperm(len(y), generator=g)
        return x[p], y[p]

    Xtr, Ytr = draw(n_per_class)
    Xte, Yte = draw(n_test_per_class)
    return Data(
        "gaussian",
        TensorDataset(Xtr, Ytr),
        TensorDataset(Xte, Yte),
        num_classes,
        (dim,),
        {"seed": seed, "centres": centres},
    )


# ----------------------------------------------------------------------------- many classes (transfer)
__all__ += ["many_class"]


def _check_nonneg_float(**values) -> None:
    for name, v in values.items():
        _v.nonnegative(v, name)


def many_class(
    num_classes: int = 100,
    n_per_class: int = 50,
    n_test_per_class: int = 50,
    *,
    class_offset: int = 0,
    latent_dim: int = 16,
    input_dim: int = 64,
    hidden: int = 64,
    nuisance_dim: int = 8,
    within: float = 0.5,
    nuisance: float = 2.0,
    noise: float = 0.1,
    seed: int = 0,
) -> Data:
    r"""A seeded family of unboundedly many classes drawn from one distribution over classes —
    the setting of Galanti, György & Hutter (2022) in which "unseen classes" is meaningful.

    A fixed random nonlinear map is drawn once from ``seed``: :math:`A_1\in\mathbb R^{H\times d}`
    with N(0, 1/d) entries, :math:`c\in\mathbb R^H` with N(0, 1/4) entries,
    :math:`A_2\in\mathbb R^{p\times H}` with N(0, 4/H) entries and :math:`B\in\mathbb R^{p\times m}`
    with N(0, 1/m) entries (d = ``latent_dim``, H = ``hidden``, p = ``input_dim``,
    m = ``nuisance_dim``). Class *c* (an integer id ≥ 0) has a prototype
    :math:`z_c\sim\mathcal N(0, I_d)`; its samples are

    .. math:: x = A_2\tanh\big(A_1(z_c + s\,\varepsilon) + c\big) + a\,B u + \sigma\eta,\qquad
              \varepsilon\sim\mathcal N(0,I_d),\ u\sim\mathcal N(0,I_m),\ \eta\sim\mathcal N(0,I_p),

    with s = ``within`` (within-class variation along the class manifold), a = ``nuisance``
    (class-independent nuisance directions, which make nearest-mean classification on raw inputs
    hard) and σ = ``noise``. This returns the classes with ids ``class_offset`` …
    ``class_offset + num_classes − 1``, relabelled 0…num_classes−1 (``info["class_ids"]``).

    Every class draws from its own streams keyed by (``seed``, id), so a class is the same
    distribution and the same samples whichever other classes are requested, and a sample set
    grows by appending: the first n training samples of a class do not depend on
    ``n_per_class ≥ n``. Source and target classes for a transfer experiment are therefore
    disjoint id ranges of one generator (same map, same class distribution). Uses NumPy
    generators of its own; the global random state is untouched.
    """
    _check_sizes(
        num_classes=num_classes,
        n_per_class=n_per_class,
        n_test_per_class=n_test_per_class,
        latent_dim=latent_dim,
        input_dim=input_dim,
        hidden=hidden,
        nuisance_dim=nuisance_dim,
    )
    _check_seed(seed)
    if num_classes < 2:
        raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
    if isinstance(class_offset, bool) or not isinstance(class_offset, (int, np.integer)):
        raise TypeError(f"class_offset must be an int, got {type(class_offset).__name__}")
    if class_offset < 0 or seed < 0:
        raise ValueError(f"class_offset and seed must be ≥ 0, got class_offset={class_offset}, seed={seed}")
    _check_nonneg_float(within=within, nuisance=nuisance, noise=noise)
    d, H, p, m = latent_dim, hidden, input_dim, nuisance_dim
    g = np.random.default_rng([seed, 0])
    A1 = g.standard_normal((H, d)) / np.sqrt(d)
    c = g.standard_normal(H) * 0.5
    A2 = g.standard_normal((p, H)) * (2.0 / np.sqrt(H))
    B = g.standard_normal((p, m)) / np.sqrt(m)
    ids = np.arange(class_offset, class_offset + num_classes)
    protos = np.stack([np.random.default_rng([seed, 1, int(k)]).standard_normal(d) for k in ids])

    def draw(n, stream):
        X = np.empty((num_classes * n, p))
        for j, k in enumerate(ids):
            # one row per sample, filled row by row: the first n rows never depend on a larger n
            r = np.random.default_rng([seed, stream, int(k)]).standard_normal((n, d + m + p))
            eps, u, eta = r[:, :d], r[:, d : d + m], r[:, d + m :]
            X[j * n : (j + 1) * n] = (
                np.tanh((protos[j] + within * eps) @ A1.T + c) @ A2.T + nuisance * u @ B.T + noise * eta
            )
        y = np.repeat(np.arange(num_classes), n)
        return torch.tensor(X, dtype=torch.float32), torch.from_numpy(y)

    Xtr, ytr = draw(n_per_class, 2)
    Xte, yte = draw(n_test_per_class, 3)
    info = {"seed": seed, "class_ids": ids.tolist(), "prototypes": torch.from_numpy(protos)}
    return Data("many_class", TensorDataset(Xtr, ytr), TensorDataset(Xte, yte), num_classes, (p,), info)


# ----------------------------------------------------------------------------- torchvision (full profile)
# per-channel means/stds of the training sets (standard values)
TORCHVISION_SETS = {
    "cifar10": ("CIFAR10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist": ("MNIST", 10, (1, 28, 28), (0.1307,), (0.3081,)),
    "fashion_mnist": ("FashionMNIST", 10, (1, 28, 28), (0.2860,), (0.3530,)),
    "cifar100": ("CIFAR100", 100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def default_data_root() -> str:
    """Where torchvision sets live: ``$NCLIB_DATA`` or ``~/.cache/nclib/data``."""
    return os.environ.get("NCLIB_DATA", os.path.join(os.path.expanduser("~"), ".cache", "nclib", "data"))


def torchvision_set(
    name: str,
    *,
    root: str | None = None,
    download: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> Data:
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
        raise FileNotFoundError(
            f"{cls_name} not found under {root!r} ({e}); pass download=True with a network, or use the quick profile"
        ) from e
    g = torch.Generator()
    g.manual_seed(seed)
    if n_train is not None:
        _check_sizes(n_train=n_train)
        train = torch.utils.data.Subset(train, torch.randperm(len(train), generator=g)[:n_train].tolist())
    if n_test is not None:
        _check_sizes(n_test=n_test)
        test = torch.utils.data.Subset(test, torch.randperm(len(test), generator=g)[:n_test].tolist())
    return Data(name, train, test, K, shape, {"root": root, "seed": seed})


DATASETS = {"mnist1d": mnist1d, "digits": digits, "gaussian": gaussian_mixture, "many_class": many_class}


def load(name: str, **kwargs) -> Data:
    """Load a data set by name: ``mnist1d``, ``digits``, ``gaussian``, ``cifar10``, ``mnist``,
    ``fashion_mnist``; keyword arguments go to the generator/loader, and ``classes=[...]`` keeps
    only those classes (relabelled 0..len−1) of any set. ``long_tail={...}`` subsamples the
    training split with :func:`long_tail` (its keyword arguments), after everything else."""
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    lt = kwargs.pop("long_tail", None)
    if lt is not None:  # load(..., long_tail={"kind": "step", "ratio": 10, ...}): see long_tail()
        if not isinstance(lt, dict):
            raise TypeError(f"long_tail must be a dict of long_tail() arguments, got {type(lt).__name__}")
        return long_tail(load(name, **kwargs), **lt)
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


# ----------------------------------------------------------------------------- long-tailed subsampling
LONG_TAIL_KINDS = ("step", "exp")


def long_tail_counts(
    num_classes: int, n_max: int, ratio: float, kind: str = "step", *, n_minority: int | None = None
) -> list[int]:
    r"""Per-class training counts of a long-tailed profile with imbalance ratio
    :math:`R = n_{\max}/n_{\min}` (class 0 the most frequent).

    * ``"step"`` (Buda et al. 2018; the setting of Fang et al. 2021's minority collapse): the first
      :math:`K - m` classes keep :math:`n_{\max}` samples, the last :math:`m` = ``n_minority``
      (default :math:`\lfloor K/2\rfloor`) keep :math:`\lfloor n_{\max}/R\rfloor`;
    * ``"exp"`` (Cao et al. 2019's CIFAR-LT): :math:`n_k = \lfloor n_{\max} R^{-k/(K-1)}\rfloor`,
      k = 0..K−1.

    Counts are floored as in those constructions and never below 1, so the realised ratio
    :math:`n_{\max}/n_{\min}` can exceed R slightly (e.g. 500/16 = 31.25 for R = 30).
    Example: K = 3, n_max = 100, R = 100, ``"exp"`` → [100, 10, 1].
    """
    _check_sizes(num_classes=num_classes, n_max=n_max)
    if num_classes < 2:
        raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)):
        raise TypeError(f"ratio must be a real number, got {type(ratio).__name__}")
    ratio = float(ratio)
    if not (ratio >= 1 and np.isfinite(ratio)):
        raise ValueError(f"imbalance ratio must be finite and ≥ 1 (majority : minority), got {ratio}")
    if kind not in LONG_TAIL_KINDS:
        raise ValueError(f"kind must be one of {LONG_TAIL_KINDS}, got {kind!r}")
    if kind == "step":
        m = num_classes // 2 if n_minority is None else n_minority
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= num_classes - 1:
            raise ValueError(f"n_minority must be an int in 1..{num_classes - 1}, got {n_minority!r}")
        n_min = max(1, int(np.floor(n_max / ratio + 1e-9)))
        return [int(n_max)] * (num_classes - int(m)) + [n_min] * int(m)
    if n_minority is not None:
        raise ValueError("n_minority applies to kind='step' only")
    return [max(1, int(np.floor(n_max * ratio ** (-k / (num_classes - 1)) + 1e-9))) for k in range(num_classes)]


def _labels_of(ds) -> torch.Tensor:
    """Integer labels of a dataset without loading its inputs where possible."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[1].long()
    if isinstance(ds, torch.utils.data.Subset):
        return _labels_of(ds.dataset)[torch.as_tensor(ds.indices, dtype=torch.long)]
    if hasattr(ds, "targets"):
        return torch.as_tensor(ds.targets, dtype=torch.long)
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))], dtype=torch.long)


def long_tail(
    data: Data,
    kind: str = "step",
    ratio: float = 10.0,
    *,
    n_max: int | None = None,
    n_minority: int | None = None,
    order=None,
    seed: int = 0,
) -> Data:
    r"""Long-tailed version of ``data``: the training split subsampled to exact per-class counts
    :func:`long_tail_counts` (``kind``, ``ratio`` R = majority : minority count); the test split
    is left untouched (a balanced test set measures per-class accuracy fairly).

    ``n_max`` is the count of the most frequent class (default: the smallest class size of the
    training split, so that every class can supply it); ``order`` ranks the classes from most to
    least frequent (default 0, 1, …, K−1: class k gets the k-th count). Within each class the kept
    samples are the first :math:`n_k` of a random permutation drawn from ``seed`` — so for a fixed
    seed and ``n_max`` the subsets are **nested** across ratios (the minority samples at R = 100
    are among those at R = 10) — and are returned in their original order. A class with fewer
    samples than its requested count raises ``ValueError``. ``info["long_tail"]`` records the
    counts and the minority classes (those with fewer than ``n_max`` samples). Tensor-backed
    splits stay ``TensorDataset``; others become a ``Subset``. The global RNG is not touched.
    """
    if not isinstance(data, Data):
        raise TypeError(f"data must be a nclib.data.Data, got {type(data).__name__}")
    _check_seed(seed)
    K = data.num_classes
    y = _labels_of(data.train)
    avail = torch.bincount(y, minlength=K)
    if n_max is None:
        n_max = int(avail.min())
        if n_max < 1:
            raise ValueError("a class of the training split has no samples; pass n_max explicitly")
    counts = long_tail_counts(K, n_max, ratio, kind, n_minority=n_minority)
    rank = list(range(K)) if order is None else [int(c) for c in order]
    if sorted(rank) != list(range(K)):
        raise ValueError(f"order must be a permutation of 0..{K - 1}, got {list(order)}")
    want = torch.zeros(K, dtype=torch.long)
    for r, c in enumerate(rank):
        want[c] = counts[r]
    short = [(c, int(avail[c]), int(want[c])) for c in range(K) if avail[c] < want[c]]
    if short:
        raise ValueError(
            f"not enough training samples for the requested counts (class, available, requested): {short}; lower n_max"
        )
    g = torch.Generator()
    g.manual_seed(int(seed))
    keep = []
    for c in range(K):
        idx = (y == c).nonzero().flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[: int(want[c])]])
    keep = torch.sort(torch.cat(keep)).values
    if isinstance(data.train, TensorDataset):
        train = TensorDataset(*(t[keep] for t in data.train.tensors))
    else:
        train = torch.utils.data.Subset(data.train, keep.tolist())
    info = {
        **data.info,
        "long_tail": {
            "kind": kind,
            "ratio": float(ratio),
            "n_max": int(n_max),
            "counts": want.tolist(),
            "seed": int(seed),
            "minority": [c for c in range(K) if want[c] < int(n_max)],
        },
    }
    return Data(data.name, train, data.test, K, data.input_shape, info)
