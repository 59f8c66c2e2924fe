"""Validation helpers, conventions and the linear algebra the NC metrics share (see
:mod:`nclib.metrics`)."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _validate as _v

_GLOBAL_MEANS = ("samples", "classes")
_WITHINS = ("samples", "classes")
_ROUTES = ("auto", "kk", "dd")
_PRECISIONS = ("float64", "float32")
PINV_RTOL = 1e-10


# ----------------------------------------------------------------------------- validation
def _require_tensor(x, name: str) -> Tensor:
    return _v.tensor(x, name, finite=False)


def _check_batch(features, labels, num_classes: int, dim: int, *, finite: bool = True) -> tuple[Tensor, Tensor]:
    features = _require_tensor(features, "features")
    labels = _require_tensor(labels, "labels")
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N×D), got shape {tuple(features.shape)}")
    if features.shape[1] != dim:
        raise ValueError(f"features have dimension {features.shape[1]}, the statistics expect {dim}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one label per feature row: got labels {tuple(labels.shape)} "
            f"for features {tuple(features.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if not features.dtype.is_floating_point:
        raise TypeError(f"features must be floating point, got {features.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels out of range: found [{int(labels.min())}, {int(labels.max())}], expected 0..{num_classes - 1}"
        )
    if finite and not torch.isfinite(features).all():
        raise ValueError("features contain NaN or inf")
    return features, labels


def _num_classes(num_classes) -> int:
    num_classes = _v.integer(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"num_classes: need at least 2 classes, got {num_classes}")
    return num_classes


def _check_choice(value, name: str, choices) -> None:
    _v.choice(value, name, choices)


def _check_classifier(W, K: int, D: int, b=None) -> tuple[Tensor, Tensor | None]:
    W = _require_tensor(W, "W")
    if W.ndim != 2 or W.shape != (K, D):
        raise ValueError(f"classifier W must have shape (K, D) = ({K}, {D}), got {tuple(W.shape)}")
    if not torch.isfinite(W).all():
        raise ValueError("classifier W contains NaN or inf")
    if b is not None:
        b = _require_tensor(b, "b")
        if b.shape != (K,):
            raise ValueError(f"bias b must have shape ({K},), got {tuple(b.shape)}")
        if b.dtype.is_floating_point and not torch.isfinite(b).all():
            raise ValueError("bias b contains NaN or inf")
    return W, b


def _check_means(means) -> Tensor:
    means = _require_tensor(means, "means")
    if means.ndim != 2:
        raise ValueError(f"means must be 2-D (K×D), got shape {tuple(means.shape)}")
    if means.shape[0] < 2:
        raise ValueError(f"need at least 2 classes, got {means.shape[0]}")
    if not torch.isfinite(means).all():
        raise ValueError("means contain NaN or inf")
    return means


# ----------------------------------------------------------------------------- linear algebra
def _pinv_psd(S: Tensor, rtol: float = PINV_RTOL) -> Tensor:
    """Pseudo-inverse of a symmetric PSD matrix by eigh, dropping eigenvalues ≤ rtol·λ_max."""
    S = (S + S.T) / 2
    evals, evecs = torch.linalg.eigh(S)
    top = evals.abs().max()
    keep = evals > rtol * top if top > 0 else torch.zeros_like(evals, dtype=torch.bool)
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    return (evecs * inv) @ evecs.T
