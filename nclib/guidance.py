r"""The inner problem of nearest-ETF guidance (Markou, Ajanthan and Gould 2024, "Guiding neural
collapse"), solved exactly, with its implicit gradient.

Markou et al. set the classifier, at every training step, to the simplex ETF nearest to the current
(running, centred) feature means. Their code poses it as a Riemannian optimisation over the Stiefel
manifold, solved by a trust-region method warm-started at the previous solution, with a proximal
term towards that previous solution, and back-propagates through the solution by implicit
differentiation (a deep declarative node). In the book's row convention (K classes, D features):

.. math::

    P^\star = \arg\min_{P\in\mathbb R^{K\times D},\ PP^\top = I_K}
        \Big\lVert Y - \tfrac{1}{\sqrt{K-1}}\,M P\Big\rVert_F^2
        + \tfrac{\delta}{2}\,\lVert P - P_{\text{prox}}\rVert_F^2,
    \qquad W = \sqrt{\tfrac{K}{K-1}}\,M P^\star ,

with :math:`Y` (K×D) the centred running means scaled to unit Frobenius norm,
:math:`M = I_K - \frac1K\mathbf 1\mathbf 1^\top`, :math:`\delta = 10^{-3}` and :math:`W` the unit-row
ETF classifier. On the manifold :math:`\lVert P\rVert_F^2 = K` and
:math:`\operatorname{tr}(P^\top M^2 P) = K-1` are constants, so the objective is
:math:`\text{const} - \operatorname{tr}(P^\top C)` with

.. math:: C = \tfrac{2}{\sqrt{K-1}}\,M Y + \delta\,P_{\text{prox}},

and its global minimiser is the orthonormal polar factor of :math:`C` (orthogonal Procrustes):
:math:`P^\star = UV^\top` for the thin SVD :math:`C = USV^\top`, unique when :math:`C` has full row
rank (the proximal term guarantees it: without it :math:`MY` has rank K − 1 and the direction of
:math:`P` along :math:`\mathbf 1` is free). :func:`nearest_etf_frame` returns it; the iterative
solver of the authors converges to the same point (``tests/test_guided.py`` compares with a
Riemannian gradient ascent).

The implicit gradient of the argmin equals the derivative of this solution map (implicit function
theorem at a non-degenerate maximum); :func:`polar` implements it analytically. For
:math:`C = USV^\top` (K×D, full row rank) and an upstream gradient :math:`G = \partial L/\partial P`:

.. math::

    \frac{\partial L}{\partial C} = U\big[(H - H^\top)\circ F\big]V^\top
        + U S^{-1} U^\top G\,(I - VV^\top),\qquad H = U^\top G V,\quad F_{ij} = \frac{1}{\sigma_i+\sigma_j}.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _validate as _v

__all__ = ["polar", "nearest_etf_frame", "etf_from_frame"]


class _Polar(torch.autograd.Function):
    @staticmethod
    def forward(ctx, C):
        U, S, Vh = torch.linalg.svd(C, full_matrices=False)
        ctx.save_for_backward(U, S, Vh)
        return U @ Vh

    @staticmethod
    def backward(ctx, G):
        U, S, Vh = ctx.saved_tensors
        V = Vh.mT
        H = U.mT @ G @ V
        F = 1.0 / (S[:, None] + S[None, :])
        inner = U @ ((H - H.mT) * F) @ Vh
        outer = (U / S) @ (U.mT @ G - (U.mT @ G @ V) @ Vh)
        return inner + outer


def polar(C: Tensor) -> Tensor:
    r"""The orthonormal polar factor :math:`UV^\top` of a K×D matrix :math:`C = USV^\top` (thin SVD,
    K ≤ D, full row rank): the maximiser of :math:`\operatorname{tr}(P^\top C)` over matrices with
    orthonormal rows (orthogonal Procrustes). Differentiable with the analytic derivative of the
    module docstring (well defined while :math:`C` has full row rank, whatever the multiplicities of
    its singular values)."""
    C = _v.tensor(C, "C", ndim=2, floating=True)
    if C.shape[0] > C.shape[1]:
        raise ValueError(f"C must have at most as many rows as columns, got shape {tuple(C.shape)}")
    return _Polar.apply(C)


def nearest_etf_frame(means: Tensor, prox: Tensor | None = None, delta: float = 1e-3) -> Tensor:
    r"""The authors' inner problem (module docstring), solved in closed form: the K×D matrix
    :math:`P^\star` with orthonormal rows that minimises
    :math:`\lVert Y - MP/\sqrt{K-1}\rVert_F^2 + \frac\delta2\lVert P - P_{\text{prox}}\rVert_F^2`,
    where ``means`` is :math:`Y` (K×D, used as given: the caller centres and scales it) and
    ``prox`` is :math:`P_{\text{prox}}` (K×D; ``None``: :math:`\delta = 0`, and then the solution is
    unique only up to the row space's component along :math:`\mathbf 1`). Differentiable in
    ``means`` (not in ``prox``) through :func:`polar`."""
    Y = _v.tensor(means, "means", ndim=2, floating=True)
    K, D = Y.shape
    if K < 2 or K > D:
        raise ValueError(f"means must be K×D with 2 ≤ K ≤ D, got shape {tuple(Y.shape)}")
    delta = _v.nonnegative(delta, "delta")
    C = (2.0 / math.sqrt(K - 1)) * (Y - Y.mean(0, keepdim=True))  # M Y
    if prox is not None:
        prox = _v.tensor(prox, "prox", ndim=2)
        if prox.shape != Y.shape:
            raise ValueError(f"prox must have the shape of means {tuple(Y.shape)}, got {tuple(prox.shape)}")
        C = C + delta * prox.detach().to(C.dtype)
    return polar(C)


def etf_from_frame(P: Tensor) -> Tensor:
    r"""The unit-row simplex ETF :math:`W = \sqrt{K/(K-1)}\,MP` of a K×D frame ``P`` with orthonormal
    rows (:math:`M = I - \frac1K\mathbf 1\mathbf 1^\top`: the rows of P re-centred)."""
    P = _v.tensor(P, "P", ndim=2)
    K = P.shape[0]
    if K < 2:
        raise ValueError(f"P must have at least 2 rows, got {K}")
    return math.sqrt(K / (K - 1)) * (P - P.mean(0, keepdim=True))
