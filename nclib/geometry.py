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

from . import _rng
from . import _validate as _v

__all__ = [
    "simplex_etf",
    "coordinate_etf",
    "etf_coordinates",
    "nearest_etf",
    "distance_to_nearest_etf",
    "random_orthonormal",
    "margins",
    "margin_scale",
    "normalized_margins",
    "etf_margin",
    "classifier_cosine",
    "max_margin_classifier",
    "cross_entropy_gd",
]


def _check_kd(K, D) -> None:
    for v, name in ((K, "K"), (D, "D")):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if K < 2:
        raise ValueError(f"a simplex ETF needs K ≥ 2 vectors, got K={K}")
    if K > D + 1:
        raise ValueError(f"a simplex ETF of K={K} vectors needs dimension D ≥ K−1 = {K - 1}, got D={D}")


def random_orthonormal(rows: int, cols: int, *, seed=0, dtype=torch.float64) -> Tensor:
    """A rows×cols matrix with orthonormal rows (rows ≤ cols), Haar-distributed, from ``seed``."""
    rows = _v.integer(rows, "rows", lo=1)
    cols = _v.integer(cols, "cols", lo=1)
    if rows > cols:
        raise ValueError(f"rows must be ≤ cols for orthonormal rows, got rows={rows}, cols={cols}")
    g = _rng.generator(seed, allow_none=True)
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
    scale = _v.real(scale, "scale")
    C = etf_coordinates(K)  # K × (K-1)
    if seed is None:
        R = torch.eye(K - 1, D, dtype=torch.float64)
    else:
        R = random_orthonormal(K - 1, D, seed=seed)
    return (scale * C @ R).to(dtype)


def coordinate_etf(K: int, D: int | None = None, *, dtype=torch.float64) -> Tensor:
    r"""The coordinate-aligned K×D simplex ETF of Zhu et al. (2021)'s code: unit rows
    :math:`w_k=\sqrt{K/(K-1)}\,(e_k-\tfrac1K\mathbf 1)` in the first K coordinates, zeros beyond.

    Rows have norm 1, pairwise cosines exactly −1/(K−1) and sum to zero, like :func:`simplex_etf`;
    unlike a randomly rotated ETF, row k is the one that scores a coordinate vector :math:`e_k`
    highest, so non-negative features (after a ReLU) can reach every class. That is what makes the
    fixed head with feature dimension d = K trainable on post-ReLU features. Needs D ≥ K
    (default D = K)."""
    K = _v.integer(K, "K", lo=2)
    D = K if D is None else _v.integer(D, "D", lo=1)
    if D < K:
        raise ValueError(
            f"D must be ≥ K = {K} for the coordinate-aligned ETF (it lives in the first K coordinates), got {D}"
        )
    E = torch.zeros(K, D, dtype=torch.float64)
    E[:, :K] = math.sqrt(K / (K - 1)) * (torch.eye(K, dtype=torch.float64) - 1.0 / K)
    return E.to(dtype)


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


# ----------------------------------------------------------------------------- margins
def _check_margin_inputs(W, H, labels, b) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    for x, name in ((W, "W"), (H, "H"), (labels, "labels")):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if W.ndim != 2 or W.shape[0] < 2:
        raise ValueError(f"W must be K×D with K ≥ 2 classes, got shape {tuple(W.shape)}")
    K, D = W.shape
    if H.ndim != 2 or H.shape[1] != D:
        raise ValueError(f"H must be N×{D} (features as rows, D matching W), got shape {tuple(H.shape)}")
    if H.shape[0] == 0:
        raise ValueError("H has no rows")
    if labels.ndim != 1 or labels.shape[0] != H.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one label per row of H: got {tuple(labels.shape)} for {H.shape[0]} rows"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if int(labels.min()) < 0 or int(labels.max()) >= K:
        raise ValueError(f"labels out of range: found [{int(labels.min())}, {int(labels.max())}], expected 0..{K - 1}")
    if not W.dtype.is_floating_point or not H.dtype.is_floating_point:
        raise TypeError(f"W and H must be floating point, got {W.dtype} and {H.dtype}")
    if b is not None:
        if not isinstance(b, Tensor):
            raise TypeError(f"b must be a torch.Tensor or None, got {type(b).__name__}")
        if b.shape != (K,):
            raise ValueError(f"bias b must have shape ({K},), got {tuple(b.shape)}")
    Wd, Hd = W.detach().to(torch.float64), H.detach().to(torch.float64)
    bd = None if b is None else b.detach().to(Wd)
    for x, name in ((Wd, "W"), (Hd, "H")) + (((bd, "b"),) if bd is not None else ()):
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
    return Wd, Hd, labels.to(torch.long), bd


def margins(W: Tensor, H: Tensor, labels: Tensor, b: Tensor | None = None) -> Tensor:
    r"""Multiclass margin of every sample (float64, length N):

    .. math:: q_i = z_{i,y_i} - \max_{j\ne y_i} z_{i,j},\qquad z_i = W h_i + b,

    the margin :math:`q_{k,i}(W, f)` of Agarwal et al.'s survey (2022, §3.2.2; Crammer & Singer 2001) with the
    bias included when given. :math:`q_i > 0` exactly when sample i is classified correctly
    with no tie; the dataset margin is :math:`\min_i q_i`. Raw margins scale with W and H — use
    :func:`normalized_margins` to compare them across epochs or networks.
    """
    W, H, y, b = _check_margin_inputs(W, H, labels, b)
    z = H @ W.T
    if b is not None:
        z = z + b
    own = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], -math.inf).max(1).values
    return own - other


def margin_scale(W: Tensor, H: Tensor, *, center: bool = True) -> float:
    r"""The scale :func:`normalized_margins` divides by:
    :math:`\lVert W - \mathbf 1\bar w^\top\rVert_F \cdot \max_i \lVert h_i - \mu_G\rVert` with
    :math:`\bar w` the mean classifier row and :math:`\mu_G` the mean feature (``center=True``),
    or :math:`\lVert W\rVert_F\max_i\lVert h_i\rVert` (``center=False``)."""
    if not isinstance(W, Tensor) or not isinstance(H, Tensor):
        raise TypeError("W and H must be torch.Tensors")
    if W.ndim != 2 or H.ndim != 2 or W.shape[1] != H.shape[1] or H.shape[0] == 0:
        raise ValueError(f"need W K×D and H N×D with N ≥ 1, got {tuple(W.shape)} and {tuple(H.shape)}")
    W, H = W.detach().to(torch.float64), H.detach().to(torch.float64)
    if center:
        W, H = W - W.mean(0), H - H.mean(0)
    s = float(W.norm() * H.norm(dim=1).max())
    if not s > 0:
        raise ValueError("the margin scale is zero (all classifier rows equal, or all features equal)")
    return s


def normalized_margins(W: Tensor, H: Tensor, labels: Tensor, b: Tensor | None = None, *, center: bool = True) -> Tensor:
    r"""Scale-free multiclass margins: :func:`margins` divided by :func:`margin_scale`,

    .. math:: \bar q_i = \frac{q_i}{\lVert W-\mathbf 1\bar w^\top\rVert_F\,\max_j\lVert h_j-\mu_G\rVert}.

    Why this scale. Raw margins grow without bound by scaling W or H, so only a normalised margin
    says anything. Adding one vector to every row of W, or shifting every feature by a constant
    vector, changes no decision (the shift is absorbed by the bias), so the normaliser is taken
    on the centred W and centred features, making :math:`\bar q` invariant to all four moves.
    Then for any bias the dataset margin obeys

    .. math:: \min_i \bar q_i \le \frac{\sqrt K}{K-1} = \texttt{etf\_margin}(K),

    with equality for features on a simplex ETF and self-dual classifier rows (no bias
    differences): pick one sample :math:`h_k` per class; the minimum is at most the average of
    :math:`q_k \le \frac1{K-1}\sum_{j\ne k}(w_k-w_j)^\top\tilde h_k + (b_k-b_j)`; summed over k the
    bias terms cancel and :math:`\sum_k \frac K{K-1}(w_k-\bar w)^\top\tilde h_k
    \le \frac K{K-1}\sqrt K\,\lVert W-\mathbf 1\bar w^\top\rVert_F\max\lVert\tilde h\rVert` by
    Cauchy–Schwarz. ``center=False`` divides by :math:`\lVert W\rVert_F\max_i\lVert h_i\rVert`
    instead (the bound still holds, but post-ReLU features far from the origin make it loose).
    """
    q = margins(W, H, labels, b)
    return q / margin_scale(W, H, center=center)


def etf_margin(K: int) -> float:
    r"""The largest possible normalised dataset margin of :func:`normalized_margins` with K
    classes, :math:`\sqrt K/(K-1)`, reached by a simplex ETF with self-dual classifiers
    (Papyan et al. 2020, §6; a self-contained proof is in :func:`normalized_margins`)."""
    if not isinstance(K, int) or isinstance(K, bool):
        raise TypeError(f"K must be an int, got {type(K).__name__}")
    if K < 2:
        raise ValueError(f"need K ≥ 2 classes, got {K}")
    return math.sqrt(K) / (K - 1)


def classifier_cosine(A: Tensor, B: Tensor, *, center: bool = True) -> float:
    r"""Cosine between two K×D classifiers as matrices,
    :math:`\langle \tilde A,\tilde B\rangle_F/(\lVert\tilde A\rVert_F\lVert\tilde B\rVert_F)`, with rows
    centred (``center=True``: a common vector added to every row changes no decision). 1 when
    they agree up to positive scale; the angle is its arccos."""
    for x, name in ((A, "A"), (B, "B")):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if A.ndim != 2 or A.shape != B.shape:
        raise ValueError(f"A and B must be K×D of the same shape, got {tuple(A.shape)} and {tuple(B.shape)}")
    A, B = A.detach().to(torch.float64), B.detach().to(torch.float64)
    if center:
        A, B = A - A.mean(0), B - B.mean(0)
    na, nb = A.norm(), B.norm()
    if na == 0 or nb == 0:
        raise ValueError("a classifier is zero (after centring); its direction is undefined")
    return float((A * B).sum() / (na * nb))


def max_margin_classifier(
    H: Tensor,
    labels: Tensor,
    *,
    C: float = 100.0,
    center: bool = True,
    max_iter: int = 20000,
    tol: float = 1e-6,
    seed: int = 0,
    bias: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""The multiclass max-margin linear classifier of fixed features (Crammer & Singer 2001):

    .. math:: \min_{W,\xi}\ \tfrac12\lVert W\rVert_F^2 + C\sum_i\xi_i\quad\text{s.t.}\quad
              (w_{y_i}-w_j)^\top h_i \ge 1-\xi_i\ \ (j\ne y_i),

    solved by scikit-learn's ``LinearSVC(multi_class="crammer_singer")`` (imported here only).
    On separable features a large ``C`` approaches the hard-margin solution — the direction that
    gradient descent on the cross-entropy converges to for a linear model (Soudry et al. 2018).
    ``center=True`` fits on :math:`h_i-\mu_G` (the bias then only absorbs the shift) and
    returns the bias for the *uncentred* features: ``(W, b)`` as float64 tensors (K×D, K).
    ``bias=False`` fits no intercept (the problem above exactly, as in Soudry et al.'s multiclass
    theorem for logits :math:`Wh` without bias); the returned bias is then ``-W mu`` (zero when
    ``center=False``).
    """
    from sklearn.svm import LinearSVC

    if not isinstance(H, Tensor) or not isinstance(labels, Tensor):
        raise TypeError("H and labels must be torch.Tensors")
    if H.ndim != 2 or labels.ndim != 1 or labels.shape[0] != H.shape[0]:
        raise ValueError(f"need H N×D and N labels, got {tuple(H.shape)} and {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if not C > 0:
        raise ValueError(f"C must be positive, got {C}")
    K = int(labels.max()) + 1
    if K < 2 or torch.bincount(labels.long(), minlength=K).min() == 0:
        raise ValueError("labels must cover every class 0..K-1 with K ≥ 2")
    X = H.detach().to(torch.float64)
    mu = X.mean(0) if center else torch.zeros(X.shape[1], dtype=torch.float64)
    svm = LinearSVC(
        multi_class="crammer_singer",
        C=float(C),
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
        fit_intercept=_v.boolean(bias, "bias"),
    )
    svm.fit((X - mu).numpy(), labels.numpy())
    W = torch.as_tensor(svm.coef_, dtype=torch.float64)
    b = torch.as_tensor(svm.intercept_, dtype=torch.float64) if bias else torch.zeros(W.shape[0], dtype=torch.float64)
    if K == 2 and W.shape[0] == 1:  # scikit-learn returns one vector for two classes
        W, b = torch.cat([-W / 2, W / 2]), torch.cat([-b / 2, b / 2])
    return W, b - W @ mu


def cross_entropy_gd(
    H: Tensor,
    W: Tensor,
    labels: Tensor,
    *,
    lr: float,
    steps: int,
    log_steps=(),
    train_features: bool = True,
) -> list[tuple[int, Tensor, Tensor]]:
    r"""Plain full-batch gradient descent on the *unregularised* mean cross-entropy of the logits
    :math:`Z = HW^\top` (no bias, no weight decay):

    .. math:: L(W,H)=\frac1N\sum_i -\log\operatorname{softmax}(Wh_i)_{y_i},\qquad
              \nabla_W L = G^\top H,\quad \nabla_H L = G W,\quad
              G=\tfrac1N(\operatorname{softmax}(Z)-Y),

    with steps :math:`\theta\leftarrow\theta-\eta\nabla_\theta L` taken on W and H together
    (``train_features=True``: the unconstrained layer-peeled model of Ji et al. 2022, whose
    gradient flow converges in direction to a KKT point of
    :math:`\min\lVert W\rVert_F^2+\lVert H\rVert_F^2` s.t. all margins ≥ 1, neural collapse at
    its global minimum) or on W alone with H frozen (``train_features=False``: a linear classifier,
    which converges in direction to the multiclass hard-margin SVM of H on separable data, Soudry
    et al. 2018, Thm. 7). ``H`` is N×D (rows), ``W`` K×D (initial values, not modified).
    Returns ``[(step, W, H), ...]`` (float64 copies) at every step in ``log_steps`` (0..steps).
    """
    W, H, y, _ = _check_margin_inputs(W, H, labels, None)
    lr = _v.positive(lr, "lr")
    steps = _v.integer(steps, "steps", lo=0)
    train_features = _v.boolean(train_features, "train_features")
    logs = {_v.integer(t, "log_steps entry", lo=0, hi=steps) for t in log_steps}
    W, H = W.clone(), H.clone()
    Y = torch.zeros(H.shape[0], W.shape[0], dtype=torch.float64).scatter_(1, y[:, None], 1.0)
    out = []
    for t in range(steps + 1):
        if t in logs:
            out.append((t, W.clone(), H.clone()))
        if t == steps:
            break
        G = (torch.softmax(H @ W.T, 1) - Y) / H.shape[0]
        gW = G.T @ H
        if train_features:
            H -= lr * (G @ W)
        W -= lr * gW
    if not (torch.isfinite(W).all() and torch.isfinite(H).all()):
        raise FloatingPointError("gradient descent diverged (reduce lr)")
    return out
