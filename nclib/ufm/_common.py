"""Argument checks, generators and labels shared by the UFM modules."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _validate as _v
from .._rng import generator as _generator  # noqa: F401  (int or torch.Generator)

LOSSES = ("ce", "mse")
OPTIMIZERS = ("gd", "lbfgs")
ACTIVATIONS = ("linear", "relu")
RECORDS = ("nc", "central_path", "nrc", "snapshots")
NC_KEYS = (
    "nc1",
    "trace_ratio",
    "etf_error",
    "equinorm_means",
    "equinorm_classifier",
    "equiangularity",
    "max_angle",
    "self_duality",
    "self_duality_zhu",
    "ncc_mismatch",
    "accuracy",
)


# ----------------------------------------------------------------------------- validation
def _int(v, name: str, minimum: int = 1) -> int:
    return _v.integer(v, name, lo=minimum)


def _nonneg(v, name: str) -> float:
    return _v.nonnegative(v, name)


def _positive(v, name: str) -> float:
    return _v.positive(v, name)


def _choice(v, name: str, choices) -> str:
    _v.choice(v, name, choices)
    return v


def _tensor(x, name: str, ndim: int | None = None, floating: bool = True) -> Tensor:
    return _v.tensor(x, name, ndim=ndim, floating=True if floating else None, finite=floating)


def _labels(labels, num_classes: int | None = None) -> tuple[Tensor, int]:
    labels = _tensor(labels, "labels", 1, floating=False)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.numel() == 0:
        raise ValueError("labels are empty")
    K = int(labels.max()) + 1 if num_classes is None else _int(num_classes, "num_classes", 2)
    if int(labels.min()) < 0 or int(labels.max()) >= K:
        raise ValueError(f"labels must lie in 0..{K - 1}, found [{int(labels.min())}, {int(labels.max())}]")
    if K < 2:
        raise ValueError(f"need at least 2 classes, got {K}")
    return labels.long(), K


def _one_hot(labels: Tensor, K: int, dtype=torch.float64) -> Tensor:
    return torch.nn.functional.one_hot(labels, K).to(dtype)


def class_labels(counts) -> Tensor:
    r"""Integer labels ``0..K−1`` in class-major order: class k repeated ``counts[k]`` times.

    ``counts`` is a sequence (or 1-D integer tensor) of K ≥ 2 positive class sizes; a balanced
    UFM with n samples per class is ``class_labels([n] * K)``, N = Σ n_k.
    """
    if isinstance(counts, Tensor):
        if counts.dtype.is_floating_point or counts.ndim != 1:
            raise TypeError("counts must be a 1-D integer tensor or a sequence of ints")
        counts = [int(c) for c in counts.tolist()]
    if not isinstance(counts, (list, tuple)):
        raise TypeError(f"counts must be a sequence of ints, got {type(counts).__name__}")
    if len(counts) < 2:
        raise ValueError(f"need at least 2 classes, got {len(counts)} count(s)")
    for k, c in enumerate(counts):
        _int(c, f"counts[{k}]", 1)
    return torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
