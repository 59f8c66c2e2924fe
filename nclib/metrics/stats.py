"""The streaming accumulator :class:`FeatureStats` and the NC metrics of it (NC1–NC4, CDNV, uniformity,
all at once in :func:`collapse_metrics`), or of means and classifiers (conventions: see :mod:`nclib.metrics`)."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from .. import _validate as _v
from ._core import (
    _GLOBAL_MEANS,
    _ROUTES,
    _WITHINS,
    PINV_RTOL,
    _check_batch,
    _check_choice,
    _check_classifier,
    _check_means,
    _pinv_psd,
    _require_tensor,
)


# ----------------------------------------------------------------------------- accumulator
class FeatureStats:
    r"""Streaming per-class feature statistics (torchmetrics-style ``update``/``compute``/``reset``).

    State, all float64 on ``device``:

    * ``counts`` (K) — :math:`n_k`;
    * ``means`` (K×D) — :math:`\mu_k`;
    * ``sq_dev`` (K) — :math:`\sum_{i:y_i=k}\lVert h_i-\mu_k\rVert^2` (traces of the class scatters);
    * ``scatter`` (D×D, only when ``scatter=True``) — the pooled within-class scatter
      :math:`\sum_i (h_i-\mu_{y_i})(h_i-\mu_{y_i})^\top = N\,\Sigma_W`.

    Each batch is reduced to its own per-class statistics (deviations from the *batch* class
    means, so no catastrophic cancellation as features collapse) and merged with the running
    state by Chan et al.'s pairwise update: with :math:`\delta = \mu_b-\mu_a`,
    :math:`n=n_a+n_b`, :math:`\mu=\mu_a+\delta n_b/n`,
    :math:`S=S_a+S_b+\delta\delta^\top n_a n_b/n`. Merging two accumulators and
    :meth:`sync` across ``torch.distributed`` ranks use the same exact formula.

    Memory is :math:`O(KD + D^2)` with the scatter and :math:`O(KD)` without; the N×D feature
    matrix is never stored. Half-precision input is upcast to float64 before any arithmetic.
    """

    def __init__(self, num_classes: int, dim: int, *, scatter: bool = True, device=None):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool):
            raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}")
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got num_classes={num_classes}")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.num_classes = num_classes
        self.dim = dim
        self.track_scatter = bool(scatter)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.reset()

    # -- state -------------------------------------------------------------------------
    def reset(self) -> FeatureStats:
        K, D, dev = self.num_classes, self.dim, self.device
        self.counts = torch.zeros(K, dtype=torch.float64, device=dev)
        self.means = torch.zeros(K, D, dtype=torch.float64, device=dev)
        self.sq_dev = torch.zeros(K, dtype=torch.float64, device=dev)
        self.scatter = torch.zeros(D, D, dtype=torch.float64, device=dev) if self.track_scatter else None
        return self

    def to(self, device) -> FeatureStats:
        self.device = torch.device(device)
        for name in ("counts", "means", "sq_dev", "scatter"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(self.device))
        return self

    @property
    def n(self) -> int:
        """Total number of samples seen."""
        return int(self.counts.sum().item())

    def _merge_state(self, counts, means, sq_dev, scatter) -> None:
        na, nb = self.counts, counts
        n = na + nb
        safe = torch.where(n > 0, n, torch.ones_like(n))
        delta = means - self.means  # (K, D)
        wb = nb / safe  # weight of the new part in the mean
        cross = na * nb / safe  # n_a n_b / n
        self.means = self.means + delta * wb[:, None]
        self.sq_dev = self.sq_dev + sq_dev + cross * (delta * delta).sum(1)
        if self.track_scatter:
            wd = delta * cross.sqrt()[:, None]
            self.scatter = self.scatter + scatter + wd.T @ wd
        self.counts = n

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> FeatureStats:
        """Add a batch of features (N×D, any float dtype) with integer labels (N)."""
        features, labels = _check_batch(features, labels, self.num_classes, self.dim)
        x = features.detach().to(device=self.device, dtype=torch.float64)
        y = labels.detach().to(device=self.device, dtype=torch.long)
        K = self.num_classes
        counts = torch.bincount(y, minlength=K).to(torch.float64)
        sums = torch.zeros(K, self.dim, dtype=torch.float64, device=self.device).index_add_(0, y, x)
        means = sums / counts.clamp_min(1.0)[:, None]
        dev = x - means[y]
        sq_dev = torch.zeros(K, dtype=torch.float64, device=self.device).index_add_(0, y, (dev * dev).sum(1))
        scatter = dev.T @ dev if self.track_scatter else None
        self._merge_state(counts, means, sq_dev, scatter)
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Merge another accumulator's state into this one (exact; ``other`` is unchanged)."""
        if not isinstance(other, FeatureStats):
            raise TypeError(f"can only merge a FeatureStats, got {type(other).__name__}")
        if (other.num_classes, other.dim) != (self.num_classes, self.dim):
            raise ValueError(
                f"cannot merge statistics of shape (K={other.num_classes}, D={other.dim}) "
                f"into (K={self.num_classes}, D={self.dim})"
            )
        if self.track_scatter and not other.track_scatter:
            raise ValueError("cannot merge statistics without scatter into statistics with scatter")
        dev = self.device
        self._merge_state(
            other.counts.to(dev),
            other.means.to(dev),
            other.sq_dev.to(dev),
            other.scatter.to(dev) if self.track_scatter else None,
        )
        return self

    def sync(self, group=None) -> FeatureStats:
        r"""All-reduce the state across ``torch.distributed`` ranks (no-op when not initialised).

        Two all-reduce rounds, both exact: (1) counts and class sums give the global class means
        :math:`\mu_k`; (2) every rank adds its between-rank correction
        :math:`\sum_k n_{rk}(\mu_{rk}-\mu_k)(\mu_{rk}-\mu_k)^\top` to its scatter before the sum.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
            return self
        counts = self.counts.clone()
        sums = self.means * self.counts[:, None]
        dist.all_reduce(counts, group=group)
        dist.all_reduce(sums, group=group)
        means = sums / counts.clamp_min(1.0)[:, None]
        delta = self.means - means
        sq_dev = self.sq_dev + self.counts * (delta * delta).sum(1)
        dist.all_reduce(sq_dev, group=group)
        if self.track_scatter:
            wd = delta * self.counts.sqrt()[:, None]
            scatter = self.scatter + wd.T @ wd
            dist.all_reduce(scatter, group=group)
            self.scatter = scatter
        self.counts, self.means, self.sq_dev = counts, means, sq_dev
        return self

    def state_dict(self) -> dict:
        out = {
            "num_classes": self.num_classes,
            "dim": self.dim,
            "counts": self.counts,
            "means": self.means,
            "sq_dev": self.sq_dev,
        }
        if self.track_scatter:
            out["scatter"] = self.scatter
        return out

    # -- derived quantities -------------------------------------------------------------
    def _check_nonempty(self) -> None:
        empty = (self.counts == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"class(es) {empty} have no samples; every class needs at least one")

    def global_mean(self, global_mean: str = "samples") -> Tensor:
        """μ_G: sample-weighted (Papyan) or the plain mean of the class means."""
        _check_choice(global_mean, "global_mean", _GLOBAL_MEANS)
        self._check_nonempty()
        if global_mean == "classes":
            return self.means.mean(0)
        return (self.counts[:, None] * self.means).sum(0) / self.counts.sum()

    def centered_means(self, global_mean: str = "samples") -> Tensor:
        """The K×D matrix M̃ of class means minus the global mean."""
        return self.means - self.global_mean(global_mean)

    def class_variances(self) -> Tensor:
        r"""Per-class total variance :math:`\sigma_k^2 = \frac1{n_k}\sum_{y_i=k}\lVert h_i-\mu_k\rVert^2`."""
        self._check_nonempty()
        return self.sq_dev / self.counts

    def sigma_w(self, within: str = "samples") -> Tensor:
        """Σ_W (D×D): pooled scatter / N (Papyan) — needs ``scatter=True``."""
        _check_choice(within, "within", _WITHINS)
        if not self.track_scatter:
            raise ValueError("these statistics were accumulated with scatter=False; Σ_W is unavailable")
        self._check_nonempty()
        if within == "classes":
            raise ValueError(
                "within='classes' needs per-class scatters; the accumulator keeps the pooled one. "
                "Use within='samples' (Papyan) or trace_ratio(..., within='classes')."
            )
        return self.scatter / self.counts.sum()

    def sigma_b(self, global_mean: str = "samples") -> Tensor:
        """Σ_B (D×D) = M̃ᵀM̃ / K."""
        Mc = self.centered_means(global_mean)
        return Mc.T @ Mc / self.num_classes

    def compute(self, W: Tensor | None = None, b: Tensor | None = None, **conventions) -> dict:
        """All statistics-based NC metrics as a dict (see :func:`collapse_metrics`)."""
        return collapse_metrics(self, W=W, b=b, **conventions)

    def __repr__(self) -> str:
        return (
            f"FeatureStats(num_classes={self.num_classes}, dim={self.dim}, n={self.n}, "
            f"scatter={self.track_scatter}, device={self.device})"
        )


def _as_stats(stats) -> FeatureStats:
    if not isinstance(stats, FeatureStats):
        raise TypeError(f"stats must be a FeatureStats, got {type(stats).__name__}")
    return stats


# ----------------------------------------------------------------------------- pairs of classes
# The pair statistics (cosines, Gram errors, CDNV, uniformity) are K×K. When K > D the K×K matrix
# is larger than the K×D means and the D×D scatter, so it is formed in row blocks of at most
# K·D + D² entries (peak memory O(K·D + min(K, D)²)); when K ≤ D one block is the whole matrix and
# the code is the direct one.
_PAIR_TAU_PER_DIM = 1.1e-3  # Gram-route distances are recomputed from differences below this ratio × D


def _pair_rows(K: int, D: int) -> int:
    """Rows per block of a K×K pair statistic: K (one block) when K ≤ D, else ⌊(K·D + D²)/(4K)⌋
    (a block and its few temporaries then stay within about K·D + D² entries)."""
    if K <= D:
        return K
    return max(1, min(K, (K * D + D * D) // (4 * K)))


def _upper_blocks(K: int, rows: int, block):
    """The strict upper triangle (j > i) of the K×K matrix ``block(s, e)`` (rows s..e−1), block by block."""
    for s in range(0, K - 1, rows):
        e = min(K, s + rows)
        vals = block(s, e)
        i = torch.arange(s, e, device=vals.device)[:, None]
        j = torch.arange(K, device=vals.device)[None, :]
        yield vals[i < j]


def _blocked_mean_std(K: int, rows: int, block, unbiased: bool, f=None) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of the K(K−1)/2 upper-triangle values of ``block`` (after ``f``),
    two passes (mean, then squared deviations from it), so no cancellation."""
    n = K * (K - 1) // 2
    f = f or (lambda v: v)
    tot = sum(f(v).sum() for v in _upper_blocks(K, rows, block))
    mean = tot / n
    ss = sum((f(v) - mean).square().sum() for v in _upper_blocks(K, rows, block))
    dof = n - 1 if unbiased and n > 1 else n
    return mean, (ss / dof).sqrt()


def _sq_dists_block(X: Tensor, Xc: Tensor, n2: Tensor, s: int, e: int) -> Tensor:
    r"""Squared distances :math:`\lVert x_i-x_j\rVert^2` of rows s..e−1 to all rows of X.

    Gram route on the centred rows ``Xc`` (:math:`n_i+n_j-2x_i\cdot x_j`, error
    ≤ γ_D (n_i+n_j)/2); pairs with :math:`d^2 < 1.1\cdot10^{-3} D\,(n_i+n_j)` — where that error
    could exceed ~1e-13 of d² — are recomputed from explicit differences of the rows of X."""
    D = X.shape[1]
    d2 = torch.addmm(n2[s:e, None] + n2[None, :], Xc[s:e], Xc.T, alpha=-2.0)
    near = d2 < _PAIR_TAU_PER_DIM * D * (n2[s:e, None] + n2[None, :])
    if bool(near.any()):
        ii, jj = near.nonzero(as_tuple=True)
        step = max(1, X.shape[0])  # at most K difference rows (K·D entries) at a time
        for a in range(0, ii.numel(), step):
            i, j = ii[a : a + step], jj[a : a + step]
            d2[i, j] = (X[i + s] - X[j]).square().sum(1)
    return d2


# ----------------------------------------------------------------------------- NC1
def nc1(stats: FeatureStats, *, global_mean: str = "samples", route: str = "auto", rtol: float = PINV_RTOL) -> float:
    r"""NC1, within-class variability collapse (Papyan et al. 2020, Fig. 6):

    .. math:: \mathrm{NC1} = \tfrac1K \operatorname{Tr}\big(\Sigma_W \Sigma_B^{+}\big)

    with Σ_W sample-weighted (/N) and Σ_B class-averaged (/K), pseudo-inverse by eigen-
    decomposition dropping eigenvalues ≤ ``rtol``·λ_max (Σ_B has rank ≤ K−1 for balanced data).

    ``route``: ``"dd"`` forms the D×D pseudo-inverse (O(D³)); ``"kk"`` works in the K×K Gram of
    the centred means — with :math:`G=\tilde M\tilde M^\top` and
    :math:`A=\tilde M\Sigma_W\tilde M^\top`, the identity
    :math:`(\tilde M^\top\tilde M)^{+}=\tilde M^\top G^{+2}\tilde M` gives
    :math:`\mathrm{NC1}=\operatorname{Tr}(G^{+}AG^{+})` in O(KD²+K³). ``"auto"`` takes ``"kk"``
    when D > K. Both routes give the same number (tested to 1e-8).
    When all class means coincide (Σ_B = 0) there is no collapse at all: ∞, as :func:`trace_ratio`.
    """
    stats = _as_stats(stats)
    rtol = _v.nonnegative(rtol, "rtol")
    _check_choice(route, "route", _ROUTES)
    Sw = stats.sigma_w("samples")
    Mc = stats.centered_means(global_mean)
    K, D = Mc.shape
    if not bool(Mc.any()):
        return math.inf
    if route == "auto":
        route = "kk" if D > K else "dd"
    if route == "kk":
        G = Mc @ Mc.T
        A = Mc @ Sw @ Mc.T
        Gp = _pinv_psd(G, rtol)
        return float(torch.trace(Gp @ A @ Gp))
    Sb = Mc.T @ Mc / K
    return float(torch.trace(Sw @ _pinv_psd(Sb, rtol)) / K)


def trace_ratio(stats: FeatureStats, *, global_mean: str = "samples", within: str = "samples") -> float:
    r"""Tr Σ_W / Tr Σ_B — the scalar within/between ratio (no pseudo-inverse).

    Needs only per-class sums of squares, so it works with ``scatter=False``.
    ``within="classes"`` averages the per-class variances :math:`\sigma_k^2` instead of pooling.
    """
    stats = _as_stats(stats)
    _check_choice(within, "within", _WITHINS)
    Mc = stats.centered_means(global_mean)
    tr_b = float((Mc * Mc).sum() / stats.num_classes)
    if within == "samples":
        tr_w = float(stats.sq_dev.sum() / stats.counts.sum())
    else:
        tr_w = float(stats.class_variances().mean())
    return tr_w / tr_b if tr_b > 0 else math.inf


# ----------------------------------------------------------------------------- NC2
def _std(x: Tensor, unbiased: bool) -> Tensor:
    return x.std(correction=1 if unbiased and x.numel() > 1 else 0)


def _offdiag_cosines(X: Tensor) -> Tensor:
    Xn = X / X.norm(dim=1, keepdim=True).clamp_min(torch.finfo(X.dtype).tiny)
    C = Xn @ Xn.T
    i, j = torch.triu_indices(X.shape[0], X.shape[0], 1, device=X.device)
    return C[i, j]


def _means_arg(x, global_mean: str) -> Tensor:
    """Centred class means from FeatureStats, or a K×D tensor taken as already centred."""
    if isinstance(x, FeatureStats):
        return x.centered_means(global_mean)
    return _check_means(x).to(torch.float64)


def equinorm(x, *, global_mean: str = "samples", unbiased: bool = True) -> float:
    r"""NC2 equal norms: :math:`\mathrm{std}_k\lVert v_k\rVert / \mathrm{mean}_k\lVert v_k\rVert`
    (Papyan et al. 2020, Fig. 2).

    ``x`` is a :class:`FeatureStats` (uses the centred class means) or a K×D tensor of rows
    taken as given (e.g. the classifier ``W``, or means you centred yourself).
    """
    V = _means_arg(x, global_mean)
    norms = V.norm(dim=1)
    if float(norms.max()) == 0.0:
        raise ValueError(
            "x: identical means — every centred class mean is the zero vector, so equal norms are undefined"
        )
    return float(_std(norms, unbiased) / norms.mean())


def equiangularity(x, *, global_mean: str = "samples", unbiased: bool = True) -> float:
    r"""NC2 equal angles: :math:`\mathrm{std}_{k\ne k'}\cos(v_k, v_{k'})` over unordered pairs
    (Papyan et al. 2020, Fig. 3). 0 for a simplex ETF (every cosine is −1/(K−1))."""
    V = _means_arg(x, global_mean)
    K, D = V.shape
    rows = _pair_rows(K, D)
    if rows < K:
        Xn = V / V.norm(dim=1, keepdim=True).clamp_min(torch.finfo(V.dtype).tiny)
        # K > D: the pair sums from D-sized quantities, Σ_{i<j} c_ij = (‖Σx_i‖² − Σ‖x_i‖²)/2 and
        # Σ_{i<j} c_ij² = (‖XᵀX‖_F² − Σ‖x_i‖⁴)/2, unless the variance is < 1% of the mean square
        # (cancellation): then two passes over row blocks
        n = K * (K - 1) // 2
        sq = (Xn * Xn).sum(1)
        s1 = (Xn.sum(0).square().sum() - sq.sum()) / 2
        s2 = ((Xn.T @ Xn).square().sum() - sq.square().sum()) / 2
        var = (s2 - s1 * s1 / n) / (n - 1 if unbiased and n > 1 else n)
        if var > 1e-2 * s2 / n:
            return float(var.sqrt())
        return float(_blocked_mean_std(K, rows, lambda s, e: Xn[s:e] @ Xn.T, unbiased)[1])
    return float(_std(_offdiag_cosines(V), unbiased))


def max_angle(x, *, global_mean: str = "samples") -> float:
    r"""NC2 maximal angles: :math:`\mathrm{mean}_{k\ne k'}\,\lvert\cos(v_k, v_{k'}) + 1/(K-1)\rvert`
    (Papyan et al. 2020, Fig. 4). 0 for a simplex ETF."""
    V = _means_arg(x, global_mean)
    K, D = V.shape
    rows = _pair_rows(K, D)
    if rows < K:
        Xn = V / V.norm(dim=1, keepdim=True).clamp_min(torch.finfo(V.dtype).tiny)
        tot = sum((v + 1.0 / (K - 1)).abs().sum() for v in _upper_blocks(K, rows, lambda s, e: Xn[s:e] @ Xn.T))
        return float(tot / (K * (K - 1) // 2))
    return float((_offdiag_cosines(V) + 1.0 / (K - 1)).abs().mean())


def _etf_gram_error(A: Tensor, B: Tensor) -> float:
    K = A.shape[0]
    rows = _pair_rows(K, A.shape[1])
    if rows < K:
        # K > D: with G = ABᵀ, ‖G/‖G‖ − P/√(K−1)‖² = 2 − 2⟨G,P⟩/(‖G‖√(K−1)), ‖G‖² = ⟨AᵀA, BᵀB⟩ and
        # ⟨G,P⟩ = Σ a_k·b_k − (Σa_k)·(Σb_k)/K: D×D work. Unless that cancels (value² < 1e-2, or
        # ‖G‖² < 1e-6 ‖AᵀA‖‖BᵀB‖): blocks of rows, ‖G‖_F first, then the distance to the ETF Gram
        s2 = math.sqrt(K - 1)
        AA, BB = A.T @ A, B.T @ B
        g2 = (AA * BB).sum()
        if g2 > 1e-6 * AA.norm() * BB.norm():
            gp = (A * B).sum() - A.sum(0) @ B.sum(0) / K
            v2 = 2.0 - 2.0 * gp / (g2.sqrt() * s2)
            if v2 > 1e-2:
                return float(v2.sqrt())
        blocks = [(s, min(K, s + rows)) for s in range(0, K, rows)]
        nrm = sum((A[s:e] @ B.T).square().sum() for s, e in blocks).sqrt()
        if nrm == 0:
            return math.inf
        tot = 0.0
        for s, e in blocks:
            P = -torch.full((e - s, K), 1.0 / K, dtype=A.dtype, device=A.device)
            P[torch.arange(e - s), torch.arange(s, e)] += 1.0
            tot = tot + ((A[s:e] @ B.T) / nrm - P / s2).square().sum()
        return float(tot.sqrt())
    P = torch.eye(K, dtype=A.dtype, device=A.device) - 1.0 / K
    G = A @ B.T
    nrm = G.norm()
    if nrm == 0:
        return math.inf
    return float((G / nrm - P / math.sqrt(K - 1)).norm())


def gram_etf_error(x, *, global_mean: str = "samples") -> float:
    r"""NC2 as one number (Zhu et al. 2021, "A geometric analysis of neural collapse with
    unconstrained features"):
    :math:`\big\lVert \frac{VV^\top}{\lVert VV^\top\rVert_F} - \frac{I_K-\frac1K\mathbf 1\mathbf 1^\top}{\sqrt{K-1}}\big\rVert_F`.
    Invariant to rotation and scale of V; 0 exactly for a simplex ETF."""
    V = _means_arg(x, global_mean)
    return _etf_gram_error(V, V)


# ----------------------------------------------------------------------------- NC3
def self_duality(stats: FeatureStats, W: Tensor, *, global_mean: str = "samples") -> float:
    r"""NC3 (Papyan et al. 2020, Fig. 5):
    :math:`\big\lVert \frac{W}{\lVert W\rVert_F} - \frac{\tilde M}{\lVert\tilde M\rVert_F}\big\rVert_F^2`
    (squared, as in Papyan's code). 0 when the classifier rows are the centred means up to scale."""
    stats = _as_stats(stats)
    W, _ = _check_classifier(W, stats.num_classes, stats.dim)
    Mc = stats.centered_means(global_mean)
    W = W.to(Mc)
    if float(Mc.norm()) == 0.0 or float(W.norm()) == 0.0:
        raise ValueError("stats/W: identical means (or W = 0) — the normalised self-duality distance is undefined")
    return float((W / W.norm() - Mc / Mc.norm()).pow(2).sum())


def self_duality_zhu(stats: FeatureStats, W: Tensor, *, global_mean: str = "samples") -> float:
    r"""NC3 in Zhu et al.'s (2021) form:
    :math:`\big\lVert \frac{W\tilde M^\top}{\lVert W\tilde M^\top\rVert_F} - \frac{I_K-\frac1K\mathbf 1\mathbf 1^\top}{\sqrt{K-1}}\big\rVert_F`
    — 0 when W and M̃ are dual *and* form an ETF together."""
    stats = _as_stats(stats)
    W, _ = _check_classifier(W, stats.num_classes, stats.dim)
    Mc = stats.centered_means(global_mean)
    return _etf_gram_error(W.to(Mc), Mc)


# ----------------------------------------------------------------------------- NC4
def _ncc_predict(x: Tensor, means: Tensor) -> Tensor:
    # argmin_k ||x - mu_k||^2 = argmin_k (||mu_k||^2 - 2 x·mu_k)
    return ((means * means).sum(1)[None, :] - 2.0 * x @ means.T).argmin(1)


def _net_predict(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    logits = x @ W.T
    if b is not None:
        logits = logits + b
    return logits.argmax(1)


def ncc_mismatch(features: Tensor, W: Tensor, means: Tensor, b: Tensor | None = None) -> float:
    r"""NC4 (Papyan et al. 2020, Fig. 7): the fraction of samples where the linear classifier
    and the nearest class centre disagree,
    :math:`\frac1N\#\{i: \arg\max_k (Wh_i+b)_k \ne \arg\min_k\lVert h_i-\mu_k\rVert\}`.
    The bias is included when given (pass ``b=None`` for the bias-free rule). Computed in float64.
    """
    features = _require_tensor(features, "features")
    means = _check_means(means)
    K, D = means.shape
    if features.ndim != 2 or features.shape[1] != D:
        raise ValueError(
            f"features must be N×{D} (the D = {D} columns of means, K×D = {K}×{D}), got {tuple(features.shape)}"
        )
    if features.dtype.is_floating_point and not torch.isfinite(features).all():
        raise ValueError("features contain NaN or inf")
    W, b = _check_classifier(W, K, D, b)
    x = features.detach().to(torch.float64)
    m = means.detach().to(x)
    bb = None if b is None else b.detach().to(x)
    return float((_net_predict(x, W.detach().to(x), bb) != _ncc_predict(x, m)).double().mean())


# ----------------------------------------------------------------------------- NC4 decisions
_U32, _U64 = 2.0**-24, 2.0**-53
# NC4's argmax/argmin decisions are screened in float32 and certified (see _CertifiedArgmax); set to
# False to take every decision from the float64 scores directly (the tests compare the two).
_NC4_SCREEN = True


def _screen_ok(device: torch.device) -> bool:
    # the float32 error bound assumes IEEE float32 products: no TF32/bf16 matmul shortcuts
    return _NC4_SCREEN and device.type == "cpu" and torch.get_float32_matmul_precision() == "highest"


class _CertifiedArgmax:
    r"""Row-wise argmax of affine scores :math:`s_{ik} = h_i\cdot a_k + c_k`, exactly as float64
    would decide it, at float32 cost.

    The scores are computed in float32. With :math:`u=2^{-24}`, each float32 score is within
    :math:`E_i=\gamma\,(\lVert h_i\rVert\max_k\lVert a_k\rVert+\max_k|c_k|)` of the exact one,
    :math:`\gamma = 1.5\,(D+4)(2^{-24}+2^{-53})` (Higham, *Accuracy and Stability of Numerical
    Algorithms*, §3.1: :math:`|fl(x\cdot y)-x\cdot y|\le\gamma_D\sum|x_j||y_j|`, plus the
    roundings of h, a, c to float32 and of the final sum; the 2⁻⁵³ term covers float64's own
    error). A row whose float32 top-two gap exceeds :math:`2E_i` has the same argmax in exact,
    float64 and float32 arithmetic; every other row (and any non-finite one) is recomputed by
    ``exact(rows)`` in float64. So the decisions, hence NC4 and the accuracy, are those of the
    float64 computation.
    """

    def __init__(self, A: Tensor, c: Tensor | None):
        self.At = A.T.to(torch.float32).contiguous()
        self.c = None if c is None else c.to(torch.float32)
        self.amax = float(A.norm(dim=1).max())
        self.cmax = 0.0 if c is None else float(c.abs().max())
        self.gamma = 1.5 * (A.shape[1] + 4) * (_U32 + _U64)

    def __call__(self, h32: Tensor, hnorm: Tensor, exact) -> Tensor:
        sc = torch.addmm(self.c, h32, self.At) if self.c is not None else h32 @ self.At
        return _certify(sc, (2.0 * self.gamma) * (hnorm * self.amax + self.cmax), exact)

    @staticmethod
    def stack(*decs: _CertifiedArgmax):
        """Several decisions on the same rows from one float32 product (their score columns side by
        side); each keeps its own bound. Returns f(h32, hnorm, exacts) -> tuple of predictions."""
        At = torch.cat([d.At for d in decs], 1)
        c = torch.cat([d.c if d.c is not None else At.new_zeros(d.At.shape[1]) for d in decs])
        cuts = [0]
        for d in decs:
            cuts.append(cuts[-1] + d.At.shape[1])

        def decide(h32, hnorm, exacts):
            sc = torch.addmm(c, h32, At)
            return tuple(
                _certify(sc[:, a:z], (2.0 * d.gamma) * (hnorm * d.amax + d.cmax), ex)
                for d, a, z, ex in zip(decs, cuts, cuts[1:], exacts)
            )

        return decide


def _certify(sc: Tensor, thr: Tensor, exact) -> Tensor:
    """Row-wise argmax of the float32 scores ``sc`` (overwritten); rows whose top-two gap is not
    above ``thr`` (or not finite) are decided by ``exact(rows)`` instead."""
    best, pred = sc.max(1)
    sc.scatter_(1, pred[:, None], -math.inf)  # the runner-up: the max without the winner
    amb = ~((best - sc.amax(1)) > thr)
    if bool(amb.any()):
        rows = amb.nonzero().flatten()
        pred[rows] = exact(rows)
    return pred


# ----------------------------------------------------------------------------- CDNV
def cdnv(stats: FeatureStats, *, reduce: str = "mean") -> float | Tensor:
    r"""Class-distance normalised variance (Galanti, György & Hutter 2022, "On the role of
    neural collapse in transfer learning"):

    .. math:: V(i,j) = \frac{\sigma_i^2+\sigma_j^2}{2\lVert\mu_i-\mu_j\rVert^2},\qquad
              \sigma_k^2 = \frac1{n_k}\sum_{y=k}\lVert h-\mu_k\rVert^2,

    averaged over the K(K−1)/2 unordered pairs (``reduce="mean"``) or returned as the K×K
    matrix (``reduce="none"``, zero diagonal). σ² comes from the accumulator's exact per-class
    sums of squared deviations and the distances from explicit differences of means, so the
    ratio keeps full precision as it goes to 0.
    """
    stats = _as_stats(stats)
    _check_choice(reduce, "reduce", ("mean", "none"))
    var = stats.class_variances()
    mu = stats.means
    K = stats.num_classes
    rows = _pair_rows(K, stats.dim)
    if reduce == "mean" and rows < K:
        mc = mu - mu.mean(0)
        n2 = (mc * mc).sum(1)
        tot = 0.0
        for s in range(0, K - 1, rows):
            e = min(K, s + rows)
            d2 = _sq_dists_block(mu, mc, n2, s, e)
            upper = torch.arange(s, e, device=mu.device)[:, None] < torch.arange(K, device=mu.device)[None, :]
            if bool(((d2 == 0) & upper).any()):
                raise ValueError("two classes have identical means; CDNV is undefined")
            V = (var[s:e, None] + var[None, :]) / 2 / torch.where(upper, d2, torch.ones_like(d2))
            tot = tot + V[upper].sum()
        return float(tot / (K * (K - 1) // 2))
    d2 = torch.cdist(mu, mu, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    num = (var[:, None] + var[None, :]) / 2
    eye = torch.eye(K, dtype=torch.bool, device=mu.device)
    if bool(((d2 == 0) & ~eye).any()):
        raise ValueError("two classes have identical means; CDNV is undefined")
    V = torch.where(eye, torch.zeros_like(d2), num / torch.where(eye, torch.ones_like(d2), d2))
    if reduce == "none":
        return V
    i, j = torch.triu_indices(K, K, 1, device=mu.device)
    return float(V[i, j].mean())


# ----------------------------------------------------------------------------- many classes
def equinorm_log(x, *, global_mean: str = "samples", unbiased: bool = True) -> float:
    r"""Equinorm for many classes (K > D+1, where no simplex ETF exists; Wu & Papyan 2024,
    "Linguistic Collapse"): the spread of log-norms :math:`\mathrm{std}_k \log\lVert\tilde\mu_k\rVert`.

    Our reading of their log-distance variant: scale-invariant like the coefficient of
    variation (to first order it *is* the CoV of the norms), and meaningful when norms span
    orders of magnitude, as they do with thousands of classes.
    """
    V = _means_arg(x, global_mean)
    return float(_std(V.norm(dim=1).clamp_min(torch.finfo(V.dtype).tiny).log(), unbiased))


def hyperspherical_uniformity(x, *, global_mean: str = "samples", unbiased: bool = True) -> dict:
    r"""GNC2, hyperspherical uniformity (Liu et al. 2023, "Generalizing and decoupling neural
    collapse via hyperspherical uniformity gap"; Wu & Papyan 2024): project the centred means on
    the unit sphere, :math:`u_k=\tilde\mu_k/\lVert\tilde\mu_k\rVert`, and evaluate the
    logarithmic inverse-distance kernel :math:`\kappa(u_i,u_j)=\log\lVert u_i-u_j\rVert^{-1}` on
    all unordered pairs. Returns ``{"energy": mean κ, "spread": std κ}`` — a uniform spread of the
    means minimises the energy; equal pairwise distances give spread 0 (exactly so for an ETF).
    """
    V = _means_arg(x, global_mean)
    U = V / V.norm(dim=1, keepdim=True)
    K, D = U.shape
    rows = _pair_rows(K, D)
    if rows < K:  # blocks: distances by the Gram route, near pairs from differences
        n2 = (U * U).sum(1)

        def block(s, e):
            d2 = _sq_dists_block(U, U, n2, s, e)
            upper = torch.arange(s, e, device=U.device)[:, None] < torch.arange(K, device=U.device)[None, :]
            if bool(((d2 <= 0) & upper).any()):
                raise ValueError("two class means point the same way; the log-distance kernel is infinite")
            return torch.where(upper, d2, torch.ones_like(d2))

        mean, std = _blocked_mean_std(K, rows, block, unbiased, f=lambda d2: -0.5 * d2.log())
        return {"energy": float(mean), "spread": float(std)}
    i, j = torch.triu_indices(K, K, 1, device=U.device)
    d = (U[i] - U[j]).norm(dim=1)
    if bool((d == 0).any()):
        raise ValueError("two class means point the same way; the log-distance kernel is infinite")
    kern = -d.log()
    return {"energy": float(kern.mean()), "spread": float(_std(kern, unbiased))}


def uniform_duality(stats: FeatureStats, W: Tensor, *, global_mean: str = "samples", unbiased: bool = True) -> float:
    r"""UNC3, uniform duality (Wu & Papyan 2024): coefficient of variation of the per-class
    cosines :math:`\cos(w_k, \tilde\mu_k)` — 0 when every classifier row makes the same angle
    with its class mean, which is what duality can still mean when no ETF exists."""
    stats = _as_stats(stats)
    W, _ = _check_classifier(W, stats.num_classes, stats.dim)
    Mc = stats.centered_means(global_mean)
    W = W.to(Mc)
    cos = (W * Mc).sum(1) / (W.norm(dim=1) * Mc.norm(dim=1)).clamp_min(torch.finfo(Mc.dtype).tiny)
    return float(_std(cos, unbiased) / cos.mean().abs())


# ----------------------------------------------------------------------------- all at once
def collapse_metrics(
    stats: FeatureStats,
    W: Tensor | None = None,
    b: Tensor | None = None,
    *,
    global_mean: str = "samples",
    unbiased: bool = True,
    route: str = "auto",
    _cdnv: bool = True,
) -> dict:
    """Every metric computable from the statistics (and W), keyed by the book's stable names.

    NC4 (``ncc_mismatch``) needs the features themselves and is added by :func:`measure`.
    (``_cdnv=False``, internal: the CDNV slot is left NaN, for a caller that fills it later.)
    """
    stats = _as_stats(stats)
    kw = dict(global_mean=global_mean)
    out = {
        "trace_ratio": trace_ratio(stats, **kw),
        "equinorm_means": equinorm(stats, unbiased=unbiased, **kw),
        "equiangularity": equiangularity(stats, unbiased=unbiased, **kw),
        "max_angle": max_angle(stats, **kw),
        "etf_error": gram_etf_error(stats, **kw),
        "cdnv": cdnv(stats) if _cdnv else math.nan,
    }
    if stats.track_scatter:
        out["nc1"] = nc1(stats, route=route, **kw)
    if stats.num_classes > stats.dim + 1:  # optional many-class metrics: no value (and a warning) when undefined
        out["equinorm_log"] = _optional("equinorm_log", lambda: equinorm_log(stats, unbiased=unbiased, **kw))
        hu = _optional("uniformity", lambda: hyperspherical_uniformity(stats, unbiased=unbiased, **kw))
        out["uniformity_energy"], out["uniformity_spread"] = (
            (math.nan, math.nan) if isinstance(hu, float) else (hu["energy"], hu["spread"])
        )
    if W is not None:
        W, b = _check_classifier(W, stats.num_classes, stats.dim, b)
        out["equinorm_classifier"] = equinorm(W.detach().to(torch.float64), unbiased=unbiased)
        out["self_duality"] = self_duality(stats, W.detach(), **kw)
        out["self_duality_zhu"] = self_duality_zhu(stats, W.detach(), **kw)
        if stats.num_classes > stats.dim + 1:
            out["uniform_duality"] = _optional(
                "uniform_duality", lambda: uniform_duality(stats, W.detach(), unbiased=unbiased, **kw)
            )
    return out


def _optional(name: str, compute):
    """An optional metric's value, or NaN with a warning giving the reason when it is undefined for
    these statistics (e.g. two class means pointing the same way for the log-distance kernel), so
    that an optional metric never aborts the required ones."""
    try:
        return compute()
    except ValueError as e:
        warnings.warn(f"{name} not computed: {e}", RuntimeWarning, stacklevel=3)
        return math.nan
