r"""Simplex equiangular tight frames (ETFs) and the nearest ETF to a set of class means.

A simplex ETF of K vectors is, up to rotation and scale, the rows of
:math:`\sqrt{K/(K-1)}\,(I_K - \tfrac1K\mathbf 1\mathbf 1^\top)`: unit norms, pairwise cosines
:math:`-1/(K-1)`, summing to zero. It spans K−1 dimensions, so it exists in
:math:`\mathbb R^D` exactly when K ≤ D+1 (Papyan et al. 2020, Definition 1).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["simplex_etf", "etf_coordinates", "nearest_etf", "distance_to_nearest_etf", "random_orthonormal"]


def _check_kd(K, D) -> None:
    for v, name in ((K, "K"), (D, "D")):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if K < 2:
        raise ValueError(f"a simplex ETF needs K ≥ 2 vectors, got K={K}")
    if K > D + 1:
        raise ValueError(f"a simplex ETF of K={K} vectors needs dimension D ≥ K−1 = {K - 1}, got D={D}")


def _generator(seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise TypeError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")
    g = torch.Generator()
    g.manual_seed(0 if seed is None else seed)
    return g


def random_orthonormal(rows: int, cols: int, *, seed=0, dtype=torch.float64) -> Tensor:
    """A rows×cols matrix with orthonormal rows (rows ≤ cols), Haar-distributed, from ``seed``."""
    if rows > cols:
        raise ValueError(f"need rows ≤ cols for orthonormal rows, got {rows}×{cols}")
    g = _generator(seed)
    A = torch.randn(cols, rows, generator=g, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R))[None, :]  # Haar measure (sign fix)
    return Q.T.to(dtype)


def etf_coordinates(K: int, *, dtype=torch.float64) -> Tensor:
    r"""The K×(K−1) coordinates of a unit-norm simplex ETF in its own (K−1)-dim span.

    Rows of :math:`\sqrt{K/(K-1)}(I-\frac1K\mathbf 1\mathbf 1^\top)` expressed in an orthonormal
    basis B (K×(K−1)) of the complement of the all-ones vector."""
    _check_kd(K, K - 1)
    P = torch.eye(K, dtype=torch.float64) - 1.0 / K
    B = torch.linalg.svd(P)[0][:, : K - 1]  # orthonormal basis of 1^⊥
    return (math.sqrt(K / (K - 1)) * P @ B).to(dtype)


def simplex_etf(K: int, D: int | None = None, *, seed=0, scale: float = 1.0, dtype=torch.float64) -> Tensor:
    r"""A K×D simplex ETF (rows), randomly rotated into :math:`\mathbb R^D` with ``seed``.

    Rows have norm ``scale``, pairwise cosines exactly −1/(K−1), and sum to zero.
    ``D`` defaults to K (the usual "feature dimension = number of classes" head); any
    D ≥ K−1 works. ``seed=None`` gives the canonical (unrotated) embedding.
    """
    D = K if D is None else D
    _check_kd(K, D)
    C = etf_coordinates(K)  # K × (K-1)
    if seed is None:
        R = torch.eye(K - 1, D, dtype=torch.float64)
    else:
        R = random_orthonormal(K - 1, D, seed=seed)
    return (scale * C @ R).to(dtype)


def nearest_etf(means: Tensor, *, center: bool = True) -> tuple[Tensor, float]:
    r"""The simplex ETF nearest to the class means, and the distance to it.

    With :math:`\tilde M` the K×D centred means scaled to unit Frobenius norm, we seek the
    unit-Frobenius-norm ETF :math:`E = BQ/\sqrt{K-1}` (B: fixed orthonormal basis of
    :math:`\mathbf 1^\perp`, K×(K−1); Q: any (K−1)×D matrix with orthonormal rows) minimising
    :math:`\lVert\tilde M - E\rVert_F`. Expanding, this maximises
    :math:`\operatorname{tr}(Q^\top B^\top\tilde M)`: an orthogonal Procrustes problem solved by
    one SVD, :math:`B^\top\tilde M = U S V^\top \Rightarrow Q = UV^\top`.

    Returns ``(etf, distance)``: the ETF rows with unit norm (K×D), and the minimised
    :math:`\lVert\tilde M/\lVert\tilde M\rVert_F - E\rVert_F` — rotation- and scale-invariant,
    0 exactly when the means form a simplex ETF, at most 2.
    """
    if not isinstance(means, Tensor):
        raise TypeError(f"means must be a torch.Tensor, got {type(means).__name__}")
    if means.ndim != 2:
        raise ValueError(f"means must be K×D, got shape {tuple(means.shape)}")
    K, D = means.shape
    _check_kd(K, D)
    if not torch.isfinite(means).all():
        raise ValueError("means contain NaN or inf")
    M = means.detach().to(torch.float64)
    if center:
        M = M - M.mean(0)
    nrm = M.norm()
    if nrm == 0:
        raise ValueError("the centred means are all zero; no nearest ETF is defined")
    M = M / nrm
    P = torch.eye(K, dtype=torch.float64, device=M.device) - 1.0 / K
    B = torch.linalg.svd(P)[0][:, : K - 1]
    U, _, Vh = torch.linalg.svd(B.T @ M, full_matrices=False)
    Q = U @ Vh
    E = B @ Q / math.sqrt(K - 1)
    dist = float((M - E).norm())
    return (E * math.sqrt(K)).to(means.dtype), dist


def distance_to_nearest_etf(means: Tensor, *, center: bool = True) -> float:
    """Only the distance of :func:`nearest_etf` — an NC2 measure that needs no fixed rotation."""
    return nearest_etf(means, center=center)[1]
