"""Closed forms of the UFM optimum: MSE (singular-value soft thresholding) and CE (the simplex-ETF family)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import _int, _labels, _nonneg, _one_hot, _positive, _tensor

__all__ = ["mse_ufm_optimum", "ce_ufm_optimum"]


# ----------------------------------------------------------------------------- closed forms: MSE and CE
def _target_matrix(labels, num_classes, targets, dtype=torch.float64) -> Tensor:
    if (labels is None) == (targets is None):
        raise ValueError("give exactly one of labels (classification) or targets (N×t regression targets)")
    if targets is not None:
        return _tensor(targets, "targets", 2).to(dtype)
    labels, K = _labels(labels, num_classes)
    return _one_hot(labels, K, dtype)


def mse_ufm_optimum(
    *,
    labels: Tensor | None = None,
    num_classes: int | None = None,
    targets: Tensor | None = None,
    dim: int,
    lam_W: float,
    lam_H: float,
    bias: bool = False,
) -> dict:
    r"""The global optimum of the MSE UFM, in closed form.

    Problem (no hidden layers, bias unregularised when present):
    :math:`\min_{H,W,b}\ \frac1{2N}\lVert HW^\top + \mathbf 1b^\top - Y\rVert_F^2
    + \frac{\lambda_W}{2}\lVert W\rVert_F^2 + \frac{\lambda_H}{2}\lVert H\rVert_F^2`.

    Derivation. (i) For a fixed product :math:`Z = HW^\top` of rank ≤ D,
    :math:`\min \frac{\lambda_W}2\lVert W\rVert^2 + \frac{\lambda_H}2\lVert H\rVert^2 = c\lVert Z\rVert_*`
    with :math:`c = \sqrt{\lambda_W\lambda_H}` (AM–GM on the variational form of the nuclear norm,
    :math:`\lVert Z\rVert_* = \min_{Z=AB^\top}\frac12(\lVert A\rVert^2+\lVert B\rVert^2)`; Srebro et al. 2005,
    Recht, Fazel & Parrilo 2010). (ii) A free bias fits the column means exactly, leaving the
    centred targets :math:`\tilde Y = (I - \frac1N\mathbf 1\mathbf 1^\top)Y` (centring Z never raises
    its nuclear norm). (iii) :math:`\min_Z \frac1{2N}\lVert Z-\tilde Y\rVert^2 + c\lVert Z\rVert_*`
    over rank ≤ D is solved by soft-thresholding the singular values σ_j of :math:`\tilde Y`
    at :math:`\tau = Nc` and keeping the D largest:

    .. math:: s_j = (\sigma_j - Nc)_+\ (j \le D),\qquad
              F^\star = \sum_{j\le D} \Big[\tfrac{(\sigma_j - s_j)^2}{2N} + c\,s_j\Big]
              + \sum_{j > D}\tfrac{\sigma_j^2}{2N}.

    Balanced one-hot targets (n per class, N = nK, D ≥ K): σ_j = √n, so without bias
    :math:`F^\star = K\,c\,(\sqrt n - Nc/2)` when √n > Nc (else ½); with a free bias the K−1
    centred singular values are √n and :math:`F^\star = (K-1)\,c\,(\sqrt n - Nc/2)`.

    Returns ``{"objective", "singular_values"`` (s, of the optimal :math:`HW^\top` (+bias part
    excluded)), ``"target_singular_values"`` (σ), ``"threshold"`` (Nc)``}``.
    """
    Y = _target_matrix(labels, num_classes, targets)
    dim = _int(dim, "dim")
    lam_W, lam_H = _nonneg(lam_W, "lam_W"), _nonneg(lam_H, "lam_H")
    if not isinstance(bias, bool):
        raise TypeError("bias must be a bool")
    N = Y.shape[0]
    if bias:
        Y = Y - Y.mean(0, keepdim=True)
    sigma = torch.linalg.svdvals(Y)
    c = math.sqrt(lam_W * lam_H)
    tau = N * c
    s = (sigma - tau).clamp_min(0.0)
    s[dim:] = 0.0
    F = float(((sigma - s) ** 2).sum() / (2 * N) + c * s.sum())
    return {"objective": F, "singular_values": s, "target_singular_values": sigma, "threshold": tau}


def ce_ufm_optimum(num_classes: int, n_per_class: int, *, lam_W: float, lam_H: float) -> dict:
    r"""The global optimum of the balanced cross-entropy UFM (Zhu et al. 2021).

    Zhu et al. prove that with K classes of n samples, D ≥ K−1 and weight decays
    :math:`\lambda_W, \lambda_H > 0` (and any :math:`\lambda_b > 0`, or no bias), every global
    minimiser has collapsed features, a simplex-ETF classifier with features aligned to it, and
    b = 0. Writing :math:`W = w\,E`, :math:`h_i = h\,e_{y_i}` with E a unit-row simplex ETF,
    the correct logit is :math:`wh` and the others :math:`-wh/(K-1)`; for a product
    :math:`p = wh` the penalty :math:`\frac{\lambda_W}2 Kw^2 + \frac{\lambda_H}2 Nh^2` is at least
    :math:`\kappa p` with :math:`\kappa = \sqrt{\lambda_W\lambda_H KN}` (AM–GM, equality when
    :math:`\lambda_W K w^2 = \lambda_H N h^2`). So the optimum solves the 1-D convex problem
    :math:`\min_p \log(1 + (K-1)e^{-ap}) + \kappa p`, :math:`a = K/(K-1)`, whose stationarity
    condition gives, for κ < 1,

    .. math:: p^\star = \tfrac{K-1}{K}\log\frac{(K-1)(1-r)}{r},\qquad r = \kappa\,\tfrac{K-1}{K},

    (p* = 0 and F* = log K when κ ≥ 1: the features collapse to the origin).
    Returns ``{"objective", "p", "w_norm"`` (row norm w of W), ``"h_norm"`` (feature norm h)``}``.
    """
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    lam_W, lam_H = _positive(lam_W, "lam_W"), _positive(lam_H, "lam_H")
    N = K * n
    a = K / (K - 1)
    kappa = math.sqrt(lam_W * lam_H * K * N)
    if kappa >= 1:
        return {"objective": math.log(K), "p": 0.0, "w_norm": 0.0, "h_norm": 0.0}
    r = kappa * (K - 1) / K
    p = math.log((K - 1) * (1 - r) / r) / a
    F = math.log1p((K - 1) * math.exp(-a * p)) + kappa * p
    w = math.sqrt(p * math.sqrt(lam_H * N / (lam_W * K)))
    h = p / w
    return {"objective": F, "p": p, "w_norm": w, "h_norm": h}
