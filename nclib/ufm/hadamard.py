"""Hadamard initialisation and the reduced cross-entropy dynamics (Garrod et al. 2025); principal angles
and singular drift."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import _generator, _int, _nonneg, _positive, _tensor, class_labels

__all__ = ["hadamard", "hadamard_init", "hadamard_reduced_gd", "principal_angles", "singular_drift"]


# ----------------------------------------------------------------------------- Hadamard initialisation
def hadamard(K: int, *, dtype=torch.float64) -> Tensor:
    r"""The K×K Sylvester–Hadamard matrix (entries ±1, :math:`HH^\top = KI`), K a power of 2:
    :math:`H_1 = [1]`, :math:`H_{2m} = \begin{pmatrix}H_m & H_m\\ H_m & -H_m\end{pmatrix}`, i.e.
    :math:`H_{ij} = (-1)^{\mathrm{popcount}(i\,\&\,j)}`. Its first column is all ones."""
    K = _int(K, "K")
    if K & (K - 1):
        raise ValueError(f"the Sylvester construction needs K a power of 2, got {K}")
    Hm = torch.ones(1, 1, dtype=dtype)
    while Hm.shape[0] < K:
        Hm = torch.cat([torch.cat([Hm, Hm], 1), torch.cat([Hm, -Hm], 1)], 0)
    return Hm


def hadamard_init(
    num_classes: int,
    n_per_class: int,
    dim: int | None = None,
    *,
    sigma: float = 0.05,
    low: float = 0.5,
    high: float = 1.5,
    seed=0,
) -> dict:
    r"""Hadamard initialisation of the two-layer linear network on standard-basis inputs
    (Garrod et al. 2025) — which is the UFM: input :math:`e_i` gives feature
    :math:`h_i = W_1e_i`, so ``H`` = :math:`W_1^\top` (N×d) and ``W`` = :math:`W_2` (K×d).

    With :math:`Q = \mathrm{hadamard}(K)/\sqrt K` (orthogonal; column 0 is the all-ones mode),
    :math:`P = Q\otimes\mathbf 1_n/\sqrt n` (N×K, orthonormal columns; class-major samples),
    V a d×K matrix with orthonormal columns (Haar, from ``seed``), :math:`a, b \sim U[\text{low},
    \text{high}]^K`:

    .. math:: W_1 = \sigma V\mathrm{diag}(a)P^\top,\qquad W_2 = \sigma Q\mathrm{diag}(b)V^\top,
              \qquad Z = W_2W_1 = Q\,\mathrm{diag}(\alpha\beta)\,P^\top,\ \alpha = \sigma a,\ \beta = \sigma b.

    Why the structure survives cross-entropy GD: with Sylvester Q, a matrix
    :math:`Q\mathrm{diag}(m)Q^\top` has entries depending only on i XOR j; the column-wise softmax
    keeps that property, so the CE gradient :math:`G = (\mathrm{softmax}(Z) - Y)/N` is again
    :math:`Q\mathrm{diag}(g)P^\top` and the updates only rescale α, β (:func:`hadamard_reduced_gd`).
    ``dim`` d defaults to 2K (d ≥ K required). Returns ``H, W, Q, P, V, alpha, beta, labels``.
    """
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    d = 2 * K if dim is None else _int(dim, "dim")
    if d < K:
        raise ValueError(f"need dim ≥ K = {K} for orthonormal V, got {d}")
    sigma = _positive(sigma, "sigma")
    low, high = _nonneg(low, "low"), _nonneg(high, "high")
    if not low < high:
        raise ValueError(f"need low < high, got [{low}, {high}]")
    g = _generator(seed)
    Q = hadamard(K) / math.sqrt(K)
    P = torch.kron(Q, torch.ones(n, 1, dtype=torch.float64) / math.sqrt(n))
    A = torch.randn(d, K, generator=g, dtype=torch.float64)
    V, R = torch.linalg.qr(A)
    V = V * torch.sign(torch.diagonal(R))[None, :]
    a = low + (high - low) * torch.rand(K, generator=g, dtype=torch.float64)
    bb = low + (high - low) * torch.rand(K, generator=g, dtype=torch.float64)
    W1 = sigma * V @ torch.diag(a) @ P.T
    W2 = sigma * Q @ torch.diag(bb) @ V.T
    return {
        "H": W1.T.contiguous(),
        "W": W2,
        "Q": Q,
        "P": P,
        "V": V,
        "alpha": sigma * a,
        "beta": sigma * bb,
        "labels": class_labels([n] * K),
    }


def hadamard_reduced_gd(
    alpha: Tensor,
    beta: Tensor,
    n_per_class: int,
    *,
    lr: float,
    steps: int,
    weight_decay: float = 0.0,
    log_every: int | None = None,
    progress: bool = False,
) -> dict:
    r"""Cross-entropy gradient descent under Hadamard initialisation, reduced to 2K scalars.

    With :math:`W_1 = V\mathrm{diag}(\alpha)P^\top`, :math:`W_2 = Q\mathrm{diag}(\beta)V^\top`
    (:func:`hadamard_init`) and mean CE over N = nK samples, the class-k logits are column k of
    :math:`M = Q\,\mathrm{diag}(\alpha\beta/\sqrt n)\,Q^\top`; the column-wise softmax
    :math:`S = Q\,\mathrm{diag}(\mu)\,Q^\top` is diagonalised by Q (XOR invariance), so the
    gradient w.r.t. Z is :math:`Q\,\mathrm{diag}(g)P^\top` with :math:`g = \sqrt n(\mu - 1)/N` and GD
    with weight decay λ on both layers becomes

    .. math:: \alpha \leftarrow \alpha - \eta(g\beta + \lambda\alpha),\qquad
              \beta \leftarrow \beta - \eta(g\alpha + \lambda\beta).

    :math:`\mu_0 = 1` (softmax columns sum to one), so the all-ones mode gets no gradient.
    Returns ``{"alpha", "beta"`` (final), ``"steps"``, ``"singular_values"`` (αβ at the logged
    steps, a list)``}``.
    """
    alpha = _tensor(alpha, "alpha", 1).to(torch.float64).clone()
    beta = _tensor(beta, "beta", 1).to(torch.float64).clone()
    if alpha.shape != beta.shape:
        raise ValueError(f"alpha and beta must have the same shape, got {tuple(alpha.shape)} and {tuple(beta.shape)}")
    K = alpha.shape[0]
    hadamard(K)  # validates K
    n = _int(n_per_class, "n_per_class")
    lr, steps, lam = _positive(lr, "lr"), _int(steps, "steps"), _nonneg(weight_decay, "weight_decay")
    log_every = max(1, steps // 100) if log_every is None else _int(log_every, "log_every")
    from tqdm.auto import tqdm

    Q = hadamard(K) / math.sqrt(K)
    N = n * K
    logged_steps, svs = [], []
    for t in tqdm(range(steps + 1), desc="reduced GD", disable=not progress, leave=False):
        if t % log_every == 0 or t == steps:
            logged_steps.append(t)
            svs.append(alpha * beta)
        if t == steps:
            break
        M = Q @ torch.diag(alpha * beta / math.sqrt(n)) @ Q.T
        S = torch.softmax(M, dim=0)
        mu = torch.diagonal(Q.T @ S @ Q)
        gz = math.sqrt(n) * (mu - 1.0) / N
        alpha, beta = alpha - lr * (gz * beta + lam * alpha), beta - lr * (gz * alpha + lam * beta)
    return {"alpha": alpha, "beta": beta, "steps": logged_steps, "singular_values": svs}


def principal_angles(A: Tensor, B: Tensor, *, degrees: bool = True) -> Tensor:
    r"""Principal angles between the column spans of A (m×p) and B (m×q), ascending, min(p, q) of them
    (Björck & Golub 1973). With orthonormal bases :math:`Q_A, Q_B` the cosines are the singular
    values of :math:`Q_A^\top Q_B` and the sines those of :math:`(I - Q_AQ_A^\top)Q_B`; the sine
    formula is used below 45° where the cosine one loses all precision."""
    A = _tensor(A, "A", 2).to(torch.float64)
    B = _tensor(B, "B", 2).to(torch.float64)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must have the same number of rows, got {A.shape[0]} and {B.shape[0]}")

    def basis(X, name):
        U, s, _ = torch.linalg.svd(X, full_matrices=False)
        r = int((s > 1e-12 * s.max()).sum()) if s.numel() and s.max() > 0 else 0
        if r < X.shape[1]:
            raise ValueError(f"{name} must have full column rank ({X.shape[1]}), got rank {r}")
        return U[:, :r]

    QA, QB = basis(A, "A"), basis(B, "B")
    if QA.shape[1] < QB.shape[1]:
        QA, QB = QB, QA
    ang_cos = torch.arccos(torch.linalg.svdvals(QA.T @ QB).clamp(-1, 1))  # ascending angles
    ang_sin = torch.arcsin(torch.linalg.svdvals(QB - QA @ (QA.T @ QB)).clamp(0, 1)).flip(0)  # ascending
    ang = torch.where(ang_sin < math.pi / 4, ang_sin, ang_cos)
    return torch.rad2deg(ang) if degrees else ang


def singular_drift(
    W0: Tensor, H0: Tensor, W: Tensor, H: Tensor, *, left: Tensor | None = None, right: Tensor | None = None
) -> dict:
    r"""How far the singular structure of the logits :math:`Z = WH^\top` (K×N) has moved since
    :math:`Z_0 = W_0H_0^\top` (two-layer network / UFM, rows convention).

    * ``offdiag`` — :math:`\lVert\mathrm{off}(L_0^\top Z R_0)\rVert_F/\lVert Z\rVert_F` with
      :math:`L_0` (K×K), :math:`R_0` (N×K) the initial singular vectors (``left``/``right``, default
      the SVD of Z_0): 0 while the singular vectors stay fixed, insensitive to their order.
    * ``angle_samples`` — the largest principal angle (degrees) between the row spaces of the
      class-centred logits :math:`CZ_0` and :math:`CZ` (:math:`C = I - \frac1K\mathbf 1\mathbf 1^\top`;
      rank K−1): the all-ones mode is removed because softmax ignores it, so its singular value
      may shrink or swap order with the others without counting as drift.
    * ``angle_features`` — the same for the row spaces of :math:`CW_0` and :math:`CW` (in feature space).
    """
    W0, H0, W, H = (_tensor(x, nm, 2).to(torch.float64) for x, nm in ((W0, "W0"), (H0, "H0"), (W, "W"), (H, "H")))
    if W0.shape != W.shape or H0.shape != H.shape or W.shape[1] != H.shape[1]:
        raise ValueError("W0/W (K×d) and H0/H (N×d) must have matching shapes")
    K = W.shape[0]
    Z0, Z = W0 @ H0.T, W @ H.T
    if left is None or right is None:
        U, _, Vh = torch.linalg.svd(Z0, full_matrices=False)
        left = U if left is None else left
        right = Vh.T if right is None else right
    M = left.to(torch.float64).T @ Z @ right.to(torch.float64)
    off = M - torch.diag(torch.diagonal(M))
    C = torch.eye(K, dtype=torch.float64) - 1.0 / K

    def rowspace(X):
        return torch.linalg.svd(C @ X, full_matrices=False)[2][: K - 1].T

    return {
        "offdiag": float(off.norm() / Z.norm()),
        "angle_samples": float(principal_angles(rowspace(Z0), rowspace(Z)).max()),
        "angle_features": float(principal_angles(rowspace(W0), rowspace(W)).max()),
    }
