r"""Evaluating a representation on its own: classifiers on frozen features and rank measures.

Features are **rows** (N×D), labels integers 0..K−1, as everywhere in nclib.

* :class:`NearestSubspace` — the nearest-subspace classifier with which Yu, Chan et al. (2020,
  ``chan2021``) evaluate MCR² features: per class, the top-r principal subspace of its training
  features; a test feature goes to the class whose (affine) subspace it is closest to.
* :func:`linear_probe` — multinomial logistic regression on frozen features (full-batch L-BFGS).
* :func:`effective_rank` / :func:`participation_ratio` / :func:`class_ranks` — how many
  dimensions a cloud of features occupies (per class: within-class diversity, the quantity
  neural collapse drives to one direction and MCR² keeps large).
* :func:`label_information` — plug-in mutual information between two discrete labelings.
* :func:`nearest_mean_predict`, :func:`corrupted_label_fit`, :func:`early_stopped_row` — helpers
  of the label-noise experiments (which class mean a feature sits at; whether mislabelled
  samples collapsed onto their wrong class; the best epoch on a validation split).

All functions are deterministic (no randomness) and compute in float64.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _validate as _v

__all__ = [
    "effective_rank",
    "participation_ratio",
    "class_ranks",
    "label_information",
    "NearestSubspace",
    "nearest_subspace_accuracy",
    "linear_probe",
    "LinearProbe",
    "nearest_mean_predict",
    "early_stopped_row",
    "corrupted_label_fit",
]

_RANK_MEASURES = ("erank", "pr")
_CENTERS = ("global", "class", "none")


# ----------------------------------------------------------------------------- validation
def _check_features(Z, name: str = "features", min_rows: int = 1) -> Tensor:
    Z = _v.tensor(Z, name, ndim=2, floating=True, finite=False)
    if Z.shape[0] < min_rows or Z.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} row(s) and one column, got shape {tuple(Z.shape)}")
    return _v.tensor(Z, name).detach().to(torch.float64)


def _check_int(v, name: str, minimum: int) -> int:
    return _v.integer(v, name, lo=minimum)


def _check_labels(y, n: int, K: int | None, what: str = "features") -> tuple[Tensor, int]:
    if not isinstance(y, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must be 1-D with one label per row of {what}: got {tuple(y.shape)} for {n} rows")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {y.dtype}")
    y = y.detach().to(device="cpu", dtype=torch.long)
    if K is None:
        K = int(y.max()) + 1 if n else 0
    K = _check_int(K, "num_classes", 2)
    if n and (int(y.min()) < 0 or int(y.max()) >= K):
        raise ValueError(f"labels out of range: found [{int(y.min())}, {int(y.max())}], expected 0..{K - 1}")
    return y, K


# ----------------------------------------------------------------------------- rank measures
def _spectrum(Z: Tensor, center: bool) -> Tensor:
    """Singular values of Z (centred if asked); values at rounding level relative to the scale
    of the *uncentred* Z (max(n, d)·u·‖Z‖_F) are set to 0, so identical rows have no spread."""
    scale = torch.linalg.vector_norm(Z)
    if center:
        Z = Z - Z.mean(0, keepdim=True)
    s = torch.linalg.svdvals(Z)
    tol = max(Z.shape) * torch.finfo(Z.dtype).eps * scale
    return torch.where(s > tol, s, torch.zeros_like(s))


def effective_rank(Z: Tensor, *, center: bool = False) -> float:
    r"""Effective rank of Roy & Vetterli (2007, "The effective rank: a measure of effective
    dimensionality", EUSIPCO): with :math:`\sigma_i` the singular values of Z (n×d) and
    :math:`p_i = \sigma_i / \sum_j \sigma_j`,

    .. math:: \operatorname{erank}(Z) = \exp\Big(-\sum_i p_i \log p_i\Big) \in [1, \min(n, d)].

    Exactly 1 for a rank-one Z, exactly r when Z has r equal non-zero singular values, ≈ r for
    many samples of an isotropic r-dimensional Gaussian. Scale invariant. Because it weighs
    singular values (not their squares), small directions count noticeably: d tiny singular
    values of relative size δ raise it by about :math:`d\delta\log(1/\delta)`.
    ``center=True`` subtracts the row mean first (the rank of the spread around the mean).
    Returns ``nan`` for an all-zero Z (no direction at all).
    """
    s = _spectrum(_check_features(Z, "Z"), center)
    tot = s.sum()
    if tot <= 0:
        return math.nan
    p = s / tot
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def participation_ratio(Z: Tensor, *, center: bool = False) -> float:
    r"""Participation ratio of the second-moment spectrum (e.g. Gao et al. 2017, "A theory of
    multineuronal dimensionality", bioRxiv): with :math:`\lambda_i = \sigma_i^2` the eigenvalues of
    :math:`Z^\top Z` (of the covariance if ``center=True``),

    .. math:: \operatorname{PR}(Z) = \frac{(\sum_i \lambda_i)^2}{\sum_i \lambda_i^2} \in [1, \min(n, d)].

    Exactly 1 for rank one, exactly r for r equal non-zero eigenvalues; for n samples of an
    isotropic r-dimensional Gaussian :math:`\approx r/(1 + (r+1)/n)`. Energy-weighted: directions
    carrying a small fraction of the variance barely count, so it reads "how many directions
    carry the variance" and is robust to a floor of tiny noise. Scale invariant; ``nan`` for Z = 0.
    """
    Z = _check_features(Z, "Z")
    scale = torch.linalg.vector_norm(Z)
    if center:
        Z = Z - Z.mean(0, keepdim=True)
    # (Σλ)² / Σλ² = tr(G)² / ‖G‖_F² for the symmetric Gram G = ZᵀZ (or ZZᵀ): no decomposition needed
    G = Z.mT @ Z if Z.shape[0] >= Z.shape[1] else Z @ Z.mT
    lam_sum, den = torch.trace(G), G.pow(2).sum()
    # all energy at rounding level (e.g. identical rows after centring): no spread at all
    tol = max(Z.shape) * torch.finfo(Z.dtype).eps * scale
    if den <= 0 or lam_sum <= min(Z.shape) * tol**2:
        return math.nan
    return float(lam_sum.pow(2) / den)


def class_ranks(
    Z: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    measure: str = "pr",
    center: str = "global",
    normalize: bool = False,
) -> Tensor:
    r"""Per-class rank of the features: ``measure`` (:func:`participation_ratio` ``"pr"`` or
    :func:`effective_rank` ``"erank"``) of the rows :math:`Z_k` of each class, taken around

    * ``center="global"`` (default) the global mean :math:`\mu_G` of all rows: the spectrum of
      :math:`E[(h-\mu_G)(h-\mu_G)^\top \mid y=k] = (\mu_k-\mu_G)(\mu_k-\mu_G)^\top + \Sigma_k` —
      how many directions class k occupies as seen from the centre of the features (the
      centring of Papyan et al.'s NC metrics). Neural collapse (:math:`\Sigma_k \to 0`) drives it
      to exactly 1; features spread over an r-dimensional subspace through :math:`\mu_G` (MCR²'s
      ideal) give about r;
    * ``center="class"`` the class mean :math:`\mu_k`: the *shape* of the within-class spread
      :math:`\Sigma_k` alone (scale invariant, so it does **not** see collapse: a tiny isotropic
      spread has a large rank);
    * ``center="none"``: the raw second moment of the class.

    ``normalize=True`` first L2-normalises each row (the unit-sphere features MCR² learns).
    Returns a float64 tensor of K values (``nan`` for classes with fewer than 2 samples, or with
    no spread at all)."""
    if measure not in _RANK_MEASURES:
        raise ValueError(f"measure must be one of {_RANK_MEASURES}, got {measure!r}")
    if center not in _CENTERS:
        raise ValueError(f"center must be one of {_CENTERS}, got {center!r}")
    Z = _check_features(Z, "Z")
    y, K = _check_labels(labels, Z.shape[0], num_classes, "Z")
    if normalize:
        Z = F.normalize(Z, dim=1)
    if center == "global":
        Z = Z - Z.mean(0, keepdim=True)
    fn = participation_ratio if measure == "pr" else effective_rank
    out = torch.full((K,), math.nan, dtype=torch.float64)
    for k in range(K):
        Zk = Z[y == k]
        if Zk.shape[0] >= 2:
            out[k] = fn(Zk, center=center == "class")
    return out


def label_information(pred: Tensor, labels: Tensor, num_classes: int | None = None) -> float:
    r"""Plug-in mutual information (nats) between two discrete labelings of the same samples:

    .. math:: \hat I(\hat Y; Y) = \sum_{a,b} \hat p(a,b)\log\frac{\hat p(a,b)}{\hat p(a)\hat p(b)},

    :math:`\hat p` the empirical joint frequencies. With ``pred`` a deterministic function of the
    features (e.g. their nearest class mean), the data-processing inequality gives
    :math:`I(\hat Y;Y) \le I(h;Y) \le H(Y)`, and :math:`\hat I = \hat H(Y)` exactly when ``pred``
    determines the label (e.g. a perfect, or perfectly permuted, classifier): a finite-sample,
    estimator-free witness that the features carry all the information about Y. 0 for
    independent labelings (up to the plug-in bias, about (K−1)²/(2N) nats).
    """
    if not isinstance(pred, Tensor):
        raise TypeError(f"pred must be a torch.Tensor, got {type(pred).__name__}")
    if pred.ndim != 1:
        raise ValueError(f"pred must be 1-D, got shape {tuple(pred.shape)}")
    if num_classes is None and isinstance(labels, Tensor) and labels.numel() and pred.numel():
        num_classes = max(int(labels.max()), int(pred.max())) + 1
    y, K = _check_labels(labels, pred.shape[0], num_classes, "pred")
    p, _ = _check_labels(pred, pred.shape[0], K, "pred")
    n = y.shape[0]
    if n == 0:
        raise ValueError("no samples")
    joint = torch.bincount(p * K + y, minlength=K * K).reshape(K, K).double() / n
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / (pa * pb)[nz]).log()).sum())


# ----------------------------------------------------------------------------- nearest subspace
class NearestSubspace:
    r"""Nearest-subspace classifier (as Yu, Chan et al. 2020, ``chan2021``, evaluate MCR² features;
    their ``evaluate.py``, ``nearsub``).

    ``fit(Z, y)``: for every class k, :math:`U_k` (d×r) = the top-r right singular vectors of the
    class's rows :math:`Z_k` — centred at the class mean :math:`\mu_k` when ``center=True`` (the PCA
    variant, the accuracy their code reports) or not (``center=False``, a linear subspace through
    the origin, their "SVD" variant). ``predict(Z)``: the class with the smallest residual

    .. math:: \hat y(z) = \arg\min_k \big\lVert (I - U_kU_k^\top)(z - \mu_k) \big\rVert_2

    (:math:`\mu_k = 0` when ``center=False``). A class with fewer than r+1 samples keeps all its
    directions. Features lying exactly in K distinct r-dimensional subspaces (of which none
    contains another) are classified without error.
    """

    def __init__(self, n_components: int, *, center: bool = True):
        self.n_components = _check_int(n_components, "n_components", 1)
        if not isinstance(center, bool):
            raise TypeError(f"center must be a bool, got {type(center).__name__}")
        self.center = center
        self.bases: list[Tensor] | None = None
        self.means: Tensor | None = None

    def fit(self, Z: Tensor, labels: Tensor, num_classes: int | None = None) -> NearestSubspace:
        Z = _check_features(Z, "Z")
        y, K = _check_labels(labels, Z.shape[0], num_classes, "Z")
        Z = Z.cpu()
        self.means = torch.zeros(K, Z.shape[1], dtype=torch.float64)
        self.bases = []
        for k in range(K):
            Zk = Z[y == k]
            if Zk.shape[0] == 0:
                raise ValueError(f"class {k} has no training samples")
            if self.center:
                self.means[k] = Zk.mean(0)
                Zk = Zk - self.means[k]
            _, s, Vh = torch.linalg.svd(Zk, full_matrices=False)
            r = min(self.n_components, int((s > 1e-12 * max(float(s.max()), 1e-300)).sum()) if s.numel() else 0)
            self.bases.append(Vh[:r].T.contiguous())
        return self

    def residuals(self, Z: Tensor) -> Tensor:
        """N×K distances :math:`\\lVert (I-U_kU_k^\\top)(z-\\mu_k)\\rVert` to every class subspace."""
        if self.bases is None:
            raise RuntimeError("NearestSubspace is not fitted: call fit(Z, labels) first")
        Z = _check_features(Z, "Z").cpu()
        if Z.shape[1] != self.means.shape[1]:
            raise ValueError(
                f"features have dimension {Z.shape[1]}, the classifier was fitted on {self.means.shape[1]}"
            )
        out = torch.empty(Z.shape[0], len(self.bases), dtype=torch.float64)
        for k, U in enumerate(self.bases):
            X = Z - self.means[k]
            out[:, k] = (X - (X @ U) @ U.T).norm(dim=1)
        return out

    def predict(self, Z: Tensor) -> Tensor:
        return self.residuals(Z).argmin(1)

    def score(self, Z: Tensor, labels: Tensor) -> float:
        """Accuracy on (Z, labels)."""
        pred = self.predict(Z)
        y, _ = _check_labels(labels, Z.shape[0], len(self.bases), "Z")
        return float((pred == y).double().mean())


def nearest_subspace_accuracy(
    train_Z: Tensor,
    train_y: Tensor,
    test_Z: Tensor,
    test_y: Tensor,
    n_components: int,
    *,
    num_classes: int | None = None,
    center: bool = True,
) -> float:
    """Fit :class:`NearestSubspace` on (train_Z, train_y) and return its accuracy on (test_Z, test_y)."""
    return NearestSubspace(n_components, center=center).fit(train_Z, train_y, num_classes).score(test_Z, test_y)


# ----------------------------------------------------------------------------- linear probe
class LinearProbe:
    r"""A fitted linear probe: ``W`` (K×D), ``b`` (K), and the feature standardisation it applies."""

    def __init__(self, W: Tensor, b: Tensor, shift: Tensor, scale: Tensor):
        self.W, self.b, self.shift, self.scale = W, b, shift, scale

    def logits(self, Z: Tensor) -> Tensor:
        Z = _check_features(Z, "Z").cpu()
        return ((Z - self.shift) / self.scale) @ self.W.T + self.b

    def predict(self, Z: Tensor) -> Tensor:
        return self.logits(Z).argmax(1)

    def score(self, Z: Tensor, labels: Tensor) -> float:
        y, _ = _check_labels(labels, Z.shape[0], self.W.shape[0], "Z")
        return float((self.predict(Z) == y).double().mean())


def linear_probe(
    Z: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    weight_decay: float = 1e-4,
    standardize: bool = True,
    max_iter: int = 500,
    tol: float = 1e-9,
) -> LinearProbe:
    r"""Multinomial logistic regression on frozen features (a *linear probe*):

    .. math:: \min_{W,b}\ \frac1N\sum_i -\log\operatorname{softmax}(W z_i + b)_{y_i}
              + \frac\lambda2 \lVert W\rVert_F^2 ,

    λ = ``weight_decay`` (the bias is not penalised), solved in float64 by full-batch L-BFGS
    (strong-Wolfe line search) from W = 0, b = 0 — deterministic, and for λ > 0 the problem is
    strictly convex in W, so the optimum is unique (the same as scikit-learn's
    ``LogisticRegression(C=1/(Nλ))`` on the same inputs). ``standardize=True`` first scales each
    feature to mean 0 and standard deviation 1 on the training rows (stored in the probe).
    Returns a :class:`LinearProbe` (``.score(Z, y)``, ``.predict(Z)``).
    """
    Z = _check_features(Z, "Z").cpu()
    y, K = _check_labels(labels, Z.shape[0], num_classes, "Z")
    if not isinstance(weight_decay, numbers.Real) or isinstance(weight_decay, bool) or not weight_decay >= 0:
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    _check_int(max_iter, "max_iter", 1)
    D = Z.shape[1]
    if standardize:
        shift, scale = Z.mean(0), Z.std(0, unbiased=False).clamp_min(1e-12)
    else:
        shift, scale = torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64)
    X = (Z - shift) / scale
    W = torch.zeros(K, D, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol * 1e-3,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(X @ W.T + b, y) + 0.5 * float(weight_decay) * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LinearProbe(W.detach(), b.detach(), shift, scale)


# ----------------------------------------------------------------------------- small helpers
def nearest_mean_predict(
    Z: Tensor, labels: Tensor, num_classes: int | None = None, query: Tensor | None = None
) -> Tensor:
    r"""Nearest-class-mean decision: class means :math:`\mu_k` of the rows of ``Z`` grouped by
    ``labels``, then :math:`\arg\min_k \lVert q - \mu_k\rVert` for every row q of ``query``
    (default: Z itself). Classes without samples are never predicted. Used to ask *which label
    a feature has collapsed onto* — e.g. for a training sample with a corrupted label, whether it
    sits at the mean of its noisy class or of its true class."""
    Z = _check_features(Z, "Z").cpu()
    y, K = _check_labels(labels, Z.shape[0], num_classes, "Z")
    Q = Z if query is None else _check_features(query, "query").cpu()
    if Q.shape[1] != Z.shape[1]:
        raise ValueError(f"query has dimension {Q.shape[1]}, Z has {Z.shape[1]}")
    counts = torch.bincount(y, minlength=K)
    means = torch.zeros(K, Z.shape[1], dtype=torch.float64).index_add_(0, y, Z) / counts.clamp_min(1)[:, None]
    dist = torch.cdist(Q, means)
    dist[:, counts == 0] = math.inf
    return dist.argmin(1)


def early_stopped_row(history, by: str = "val_error"):
    """The row of a training record with the smallest ``by`` — early stopping on a validation
    split; the earliest such epoch on ties; rows where ``by`` is NaN are ignored. Pass a
    ``Run.curve`` (one row per epoch; it has ``val_error``/``test_error`` when the run held out a
    validation split) to choose among all epochs, or a ``Run.history`` for the logged ones."""
    import pandas as pd

    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    if by not in history:
        raise ValueError(f"history has no column {by!r} (was the run trained with val_size > 0?)")
    col = history[by]
    if col.notna().sum() == 0:
        raise ValueError(f"column {by!r} has no values")
    return history.loc[col.idxmin()]


def corrupted_label_fit(Z: Tensor, noisy_labels: Tensor, clean_labels: Tensor, num_classes: int | None = None) -> dict:
    r"""Where the training samples with a corrupted label sit in feature space.

    Class means are computed from ``noisy_labels`` (the labels the network was trained on); for
    the samples whose noisy label differs from the clean one, returns the fractions whose
    :func:`nearest_mean_predict` decision is their **noisy** label (``"memorized"``: the feature
    has collapsed onto the wrong class) or their **clean** label (``"kept"``: the feature still
    sits with its true class), and ``"n_corrupted"``. For a fully collapsed representation
    trained to zero error on the noisy labels, ``memorized`` = 1.
    """
    Z = _check_features(Z, "Z")
    noisy, K = _check_labels(noisy_labels, Z.shape[0], num_classes, "Z")
    clean, _ = _check_labels(clean_labels, Z.shape[0], K, "Z")
    bad = noisy != clean
    n_bad = int(bad.sum())
    if n_bad == 0:
        return {"memorized": math.nan, "kept": math.nan, "n_corrupted": 0}
    pred = nearest_mean_predict(Z, noisy, K)[bad]
    return {
        "memorized": float((pred == noisy[bad]).double().mean()),
        "kept": float((pred == clean[bad]).double().mean()),
        "n_corrupted": n_bad,
    }
