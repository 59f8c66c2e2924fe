"""Deep neural collapse vs low rank in the deep UFM (Súkeník et al. 2024)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from ._common import _int, _nonneg, _positive, _tensor, class_labels
from .solver import UFMResult, _lam_list

__all__ = ["dnc_loss", "dnc_configuration", "low_rank_configuration", "class_mean_spectra", "numerical_rank"]


# ----------------------------------------------------------------------------- deep NC vs low rank
def _dnc_lams(depth: int, lam_W, lam_layers) -> list[float]:
    lam_W = _nonneg(lam_W, "lam_W")
    hidden = _lam_list(lam_W if lam_layers is None else lam_layers, depth - 1)
    return hidden + [lam_W]


def dnc_loss(num_classes: int, n_per_class: int, depth: int, *, lam_H: float, lam_W: float, lam_layers=None) -> dict:
    r"""The regularised loss of the best deep-neural-collapse (DNC) configuration of the
    no-bias MSE deep UFM with L = ``depth`` weight matrices (ReLU or linear; Súkeník et al. 2024).

    In a DNC configuration every layer's features are collapsed to class means forming an
    orthogonal frame (no bias: the targets are one-hot, so the frame has rank K, not K−1),
    :math:`H_l = h_l\,Q_lY` with :math:`Q_l` a d×K matrix of orthonormal non-negative columns (the
    first K coordinate vectors), and each layer maps one frame to the next,
    :math:`A_l = w_l\,Q_{l+1}Q_l^\top` (the minimum-norm choice; ReLU acts as the identity on the
    non-negative frames). The output is :math:`sY` with :math:`s = h_1\prod_l w_l`, and

    .. math:: F = \tfrac12(1-s)^2 + \tfrac12\Big[\lambda_H N h_1^2 + \sum_{l=1}^{L} \lambda_l K w_l^2\Big].

    For a fixed product s the bracket is minimised when its L+1 terms are equal (AM–GM), giving
    :math:`(L+1)\,(C s^2)^{1/(L+1)}` with :math:`C = \lambda_H N \prod_l(\lambda_l K)`, so

    .. math:: F_{\mathrm{DNC}} = \min_{s\ge0}\ \tfrac12(1-s)^2 + \tfrac{L+1}2\,C^{1/(L+1)}\,s^{2/(L+1)},

    a 1-D problem (non-convex for L ≥ 2: s = 0, value ½, competes with an interior minimum),
    solved here by a fine grid and a golden-section refinement. ``lam_layers`` are the hidden
    layers' decays (default ``lam_W``); ``lam_W`` is the classifier's. Returns
    ``{"objective", "s", "h", "w"`` (list of the L layer scales, classifier last)``}``.
    """
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    L = _int(depth, "depth")
    lam_H = _positive(lam_H, "lam_H")
    lams = _dnc_lams(L, lam_W, lam_layers)
    if any(v <= 0 for v in lams):
        raise ValueError("every layer needs a positive weight decay for the DNC closed form")
    sol = _balanced_scales([lam_H * K * n] + [v * K for v in lams])
    return {"objective": sol["objective"], "s": sol["s"], "h": sol["x"][0], "w": sol["x"][1:]}


def _balanced_scales(coefs: list[float]) -> dict:
    r"""Solve :math:`\min_{x>0}\ 	frac12(1-s)^2 + 	frac12\sum_{j=0}^{L} c_jx_j^2` with
    :math:`s=\prod_j x_j` (the fit of a configuration whose output is sY, and its penalty).

    For a fixed s the penalty is smallest when the L+1 terms are equal (AM–GM), giving
    :math:`	frac{L+1}2(Cs^2)^{1/(L+1)}`, :math:`C=\prod_jc_j`; the remaining 1-D problem
    (non-convex for L ≥ 2: s = 0, value ½, competes with an interior minimum) is solved by a fine
    grid and a golden-section refinement. Returns ``{"objective", "s", "x"}``.
    """
    L = len(coefs) - 1
    logC = sum(math.log(c) for c in coefs)
    coef = 0.5 * (L + 1) * math.exp(logC / (L + 1))
    q = 2.0 / (L + 1)

    def f(s):
        return 0.5 * (1 - s) ** 2 + coef * s**q

    grid = [i / 4000 for i in range(4001)]
    i = min(range(len(grid)), key=lambda j: f(grid[j]))
    lo, hi = max(0.0, grid[i] - 1 / 4000), min(1.0, grid[i] + 1 / 4000)
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        x1, x2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if f(x1) <= f(x2):
            hi = x2
        else:
            lo = x1
    s = (lo + hi) / 2
    if f(0.0) <= f(s):
        s = 0.0
    m = math.exp((logC + 2 * math.log(s)) / (L + 1)) if s > 0 else 0.0
    return {"objective": f(s), "s": s, "x": [math.sqrt(m / c) for c in coefs]}


def dnc_configuration(
    num_classes: int, n_per_class: int, depth: int, width: int, *, lam_H: float, lam_W: float, lam_layers=None
) -> dict:
    r"""The DNC configuration of :func:`dnc_loss` as explicit tensors (rows convention), ready for
    :func:`ufm_objective` or as ``init`` of :func:`train_ufm`: ``H`` (N×width, row i = h·e_{y_i}),
    ``layers`` (A_l = w_l · diag(1_K, 0)), ``W`` (K×width, w_L·[I_K 0]); needs width ≥ K."""
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    L = _int(depth, "depth")
    width = _int(width, "width")
    if width < K:
        raise ValueError(f"a rank-K orthogonal frame needs width ≥ K = {K}, got {width}")
    sol = dnc_loss(K, n, L, lam_H=lam_H, lam_W=lam_W, lam_layers=lam_layers)
    E = torch.eye(K, width, dtype=torch.float64)
    labels = class_labels([n] * K)
    H = sol["h"] * E[labels]
    P = torch.zeros(width, width, dtype=torch.float64)
    P[:K, :K] = torch.eye(K, dtype=torch.float64)
    layers = [w * P for w in sol["w"][:-1]]
    W = sol["w"][-1] * E
    return {"H": H, "layers": layers, "W": W, "labels": labels, "objective": sol["objective"]}


def low_rank_configuration(
    num_classes: int,
    n_per_class: int,
    depth: int,
    width: int,
    *,
    lam_H: float,
    lam_W: float,
    lam_layers=None,
    vertices: int | None = None,
) -> dict:
    r"""An explicit low-rank configuration of the no-bias ReLU MSE deep UFM that, like deep neural
    collapse, fits every class by the same output sY, but whose features have rank m < K in every
    layer but the last (the low-rank mechanism of Súkeník et al. 2024: a ReLU can raise the rank).

    **Construction** (ours; a graph construction in the spirit of the paper). Identify the K
    classes with K edges {i, j} of the complete graph on m vertices (the first K pairs in
    lexicographic order; m = ``vertices``, default the smallest m with m(m−1)/2 ≥ K) and let B be
    the m×K incidence matrix (column k = e_i + e_j). Then :math:`(B^\top B)_{kl}` = 2, 1, 0 for the
    same, adjacent, disjoint edges, so

    .. math:: \sigma\big((B^\top - \tfrac12 J_{K\times m})B\big) = \sigma(B^\top B - J) = I_K ,

    a rank-≤m pre-activation that the ReLU turns into the identity. Layers (rows convention, all
    padded to ``width`` ≥ K): features :math:`h_1\,b_{y_i}` (non-negative, rank m), hidden layers
    1..L−2 :math:`w_l\,\mathrm{diag}(1_m, 0)` (ReLU inactive), layer L−1
    :math:`w_{L-1}(B^\top-\tfrac12J)` (the rank-raising layer), classifier :math:`w_L[I_K\ 0]`. The
    output is sY with s = h_1∏w_l, the penalties are
    :math:`\lambda_Hn\lVert B\rVert_F^2h_1^2 = 2\lambda_HKn\,h_1^2`, :math:`\lambda_l m\,w_l^2`,
    :math:`\lambda_{L-1}\tfrac{Km}4w_{L-1}^2` and :math:`\lambda_WK\,w_L^2` (halved), and the scales
    are balanced exactly as in :func:`dnc_loss` (same 1-D problem, with
    :math:`C_{\rm LR}=2\lambda_HKn\prod_{l\le L-2}(\lambda_lm)\cdot\lambda_{L-1}\tfrac{Km}4\cdot\lambda_WK`).
    With equal decays :math:`C_{\rm LR}/C_{\rm DNC} = m^{L-1}/(2K^{L-2})`, independent of λ: the
    construction beats DNC iff this is below 1 (e.g. K = 10, m = 5 from L = 4 on).
    Needs depth ≥ 2. Returns ``{"H", "layers", "W", "labels", "objective", "s", "rank", "C_ratio"}``
    (``rank`` = rank of B, the rank of layers 1..L−1; ``C_ratio`` = :math:`C_{\rm LR}/C_{\rm DNC}`).
    """
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    L = _int(depth, "depth", 2)
    width = _int(width, "width")
    lam_H = _positive(lam_H, "lam_H")
    lams = _dnc_lams(L, lam_W, lam_layers)
    if any(v <= 0 for v in lams):
        raise ValueError("every layer needs a positive weight decay for the closed form")
    m = 2
    while m * (m - 1) // 2 < K:
        m += 1
    if vertices is not None:
        vertices = _int(vertices, "vertices", 2)
        if vertices * (vertices - 1) // 2 < K:
            raise ValueError(f"{vertices} vertices have fewer than K = {K} edges")
        m = vertices
    if width < max(K, m):
        raise ValueError(f"the construction needs width ≥ max(K, m) = {max(K, m)}, got {width}")
    B = torch.zeros(m, K, dtype=torch.float64)
    for k, (i, j) in enumerate(itertools.islice(itertools.combinations(range(m), 2), K)):
        B[i, k] = B[j, k] = 1.0
    A = B.T - 0.5
    coefs = [lam_H * n * 2 * K] + [v * m for v in lams[: L - 2]] + [lams[L - 2] * K * m / 4, lams[L - 1] * K]
    sol = _balanced_scales(coefs)
    x = sol["x"]
    labels = class_labels([n] * K)
    H = torch.zeros(K * n, width, dtype=torch.float64)
    H[:, :m] = x[0] * B.T[labels]
    P = torch.zeros(width, width, dtype=torch.float64)
    P[:m, :m] = torch.eye(m, dtype=torch.float64)
    E = torch.zeros(width, width, dtype=torch.float64)
    E[:K, :m] = A
    layers = [x[1 + l] * P for l in range(L - 2)] + [x[L - 1] * E]
    W = torch.zeros(K, width, dtype=torch.float64)
    W[:, :K] = x[L] * torch.eye(K, dtype=torch.float64)
    dnc = [lam_H * K * n] + [v * K for v in lams]
    c_ratio = math.exp(sum(math.log(c) for c in coefs) - sum(math.log(c) for c in dnc))
    return {
        "H": H,
        "layers": layers,
        "W": W,
        "labels": labels,
        "objective": sol["objective"],
        "s": sol["s"],
        "rank": int(torch.linalg.matrix_rank(B)),
        "C_ratio": c_ratio,
    }


def class_mean_spectra(result: UFMResult) -> list[Tensor]:
    r"""Singular values of the (uncentred) K×d class-mean matrix of every layer's features,
    :math:`[\sigma(M_1), \dots, \sigma(M_L)]` — the rank diagnostic of Súkeník et al. (2024)
    (uncentred because with no bias the DNC frame is orthogonal, of rank K)."""
    if not isinstance(result, UFMResult):
        raise TypeError(f"result must be a UFMResult, got {type(result).__name__}")
    if result.labels is None:
        raise ValueError("class-mean spectra need class labels")
    return [torch.linalg.svdvals(result.class_means(l)) for l in range(result.config["depth"])]


def numerical_rank(singular_values: Tensor, rtol: float = 1e-3) -> int:
    r"""The number of singular values above ``rtol`` times the largest:
    :math:`\#\{j: s_j > \mathrm{rtol}\cdot s_1\}` (0 for an all-zero spectrum)."""
    s = _tensor(singular_values, "singular_values", 1)
    rtol = _positive(rtol, "rtol")
    if s.numel() == 0 or float(s.max()) == 0.0:
        return 0
    return int((s > rtol * s.max()).sum())
