r"""Losses and the coding-rate quantities of MCR² (maximal coding rate reduction).

The training-loss registry also lives here: :data:`LOSSES` maps a name to a :class:`LossSpec`
(the long-tail losses of chapter 6: logit adjustment, class-balanced re-weighting, dot regression,
the multi-centre cosine loss, cross-entropy with space alignment), which :func:`nclib.train.fit`
uses for any ``TrainConfig.loss`` other than ``"ce"``/``"mse"``/``"mcr2"``; :func:`register_loss` adds one.

Notation (features are **rows**, as everywhere in nclib): ``Z`` is n×d, one feature
:math:`z_i \in \mathbb R^d` per row, labels :math:`y_i \in \{0..K-1\}`, :math:`Z_j` the
:math:`n_j \times d` block of rows of class j.

Yu, Chan, You, Song & Ma (2020), "Learning diverse and discriminative representations via the
principle of maximal coding rate reduction", NeurIPS (bib key ``chan2021``), and Chan et al.
(2022), "ReduNet", JMLR 23 (``chan2022redunet``), write the features as *columns* of a d×n
matrix :math:`Z_{\text{paper}} = Z^\top` and define the coding rate

.. math:: R(Z_{\text{paper}}, \varepsilon) = \tfrac12 \log\det\big(I_d + \tfrac{d}{n\varepsilon^2}
          Z_{\text{paper}} Z_{\text{paper}}^\top\big).

In the rows convention the same number is

.. math:: R(Z, \varepsilon) = \tfrac12 \log\det\big(I_d + \tfrac{d}{n\varepsilon^2} Z^\top Z\big)
          = \tfrac12 \log\det\big(I_n + \tfrac{d}{n\varepsilon^2} Z Z^\top\big)
          = \tfrac12 \sum_i \log\big(1 + \tfrac{d}{n\varepsilon^2}\sigma_i^2\big),

the middle equality by Sylvester's determinant identity, :math:`\sigma_i` the singular values of Z.

**ε convention.** ``eps`` here is the ε of the formula (it enters squared). The authors' code
(``github.com/ryanchankh/mcr2``, ``loss.py``) computes ``d / (m * eps)``: its ``eps`` is ε², and
its ``train_sup.py`` documents ``--eps 0.5`` as "eps squared". So the published setting
ε² = 0.5 is ``eps=math.sqrt(0.5)`` here (the default of :class:`MCR2Loss`).

**Numerics.** Every log-determinant is taken of :math:`I + cG` with G a symmetric PSD Gram
matrix, in float64 (float32 on MPS), by a Cholesky factorisation (:math:`\log\det = 2\sum\log L_{ii}`),
falling back to clamped eigenvalues :math:`\sum\log(1+\max(c\lambda_i, 0))` if Cholesky fails.
Since all eigenvalues of :math:`I+cG` are ≥ 1, zero, rank-deficient or fully collapsed features
give finite values *and* finite gradients — unlike ``torch.logdet`` on the raw matrix in float32,
which can return NaN for ill-conditioned inputs. The Gram is the smaller of the d×d
(:math:`Z^\top Z`) and n×n (:math:`ZZ^\top`) ones unless ``route`` says otherwise.
Accuracy: the absolute error is of order :math:`u\,c\lVert G\rVert \le u\,d/\varepsilon^2` for
unit-norm rows (u ≈ 1.1e-16 in float64): ~1e-13 at ε² = 0.5, ~1e-5 for d = 512 and ε = 1e-4. For an
absurdly small ε (:math:`c\lVert G\rVert` beyond ~1e15) the identity is lost to rounding and the
value degrades, but stays finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _validate as _v

__all__ = [
    "coding_rate",
    "coding_rate_per_class",
    "rate_reduction",
    "RateReduction",
    "MCR2Loss",
    "mse_onehot_loss",
    "class_priors",
    "logit_adjusted_loss",
    "class_balanced_weights",
    "class_balanced_loss",
    "dot_regression_loss",
    "cosine_alignment_loss",
    "LossSpec",
    "LOSSES",
    "register_loss",
]

_ROUTES = ("auto", "dd", "nn")
_METHODS = ("cholesky", "eigh")


# ----------------------------------------------------------------------------- validation
def _require_tensor(x, name: str) -> Tensor:
    return _v.tensor(x, name, finite=False)


def _check_features(Z, name: str = "Z") -> Tensor:
    Z = _v.tensor(Z, name, ndim=2, floating=True, finite=False)
    if Z.shape[0] < 1 or Z.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {tuple(Z.shape)}")
    return _v.tensor(Z, name)


def _check_num_classes(num_classes, minimum: int = 1) -> int:
    return _v.integer(num_classes, "num_classes", lo=minimum)


def _check_labels(labels, n: int, num_classes: int, what: str = "Z") -> Tensor:
    return _v.labels(labels, "labels", n=n, num_classes=num_classes, what=what)


def _check_positive(value, name: str) -> float:
    return _v.positive(value, name)


def _check_nonnegative(value, name: str) -> float:
    return _v.nonnegative(value, name)


def _check_choice(value, name: str, choices) -> None:
    _v.choice(value, name, choices)


def _work_dtype(Z: Tensor) -> torch.dtype:
    return torch.float32 if Z.device.type == "mps" else torch.float64


def _out_dtype(Z: Tensor) -> torch.dtype:
    return torch.promote_types(Z.dtype, torch.float32)


def _pick_route(route: str, rows: int, d: int) -> str:
    _check_choice(route, "route", _ROUTES)
    if route == "auto":
        return "nn" if rows < d else "dd"
    return route


# ----------------------------------------------------------------------------- linear algebra
def _logdet_i_plus_cg(G: Tensor, c, method: str = "cholesky") -> Tensor:
    r""":math:`\log\det(I + cG)` for a (batch of) symmetric PSD G (..., m, m) and c ≥ 0 (scalar or (...)).

    ``"cholesky"``: :math:`2\sum_i \log L_{ii}` with :math:`LL^\top = I + cG`; if any factorisation
    fails (only for astronomically large :math:`c\lVert G\rVert`) the whole batch falls back to
    ``"eigh"``: :math:`\sum_i \log(1 + \max(\lambda_i(cG), 0))`. Both are differentiable with finite
    gradients for every PSD G, including G = 0 and rank-one G.
    """
    _check_choice(method, "method", _METHODS)
    G = 0.5 * (G + G.mT)
    c = torch.as_tensor(c, dtype=G.dtype, device=G.device)
    cG = c[..., None, None] * G
    if method == "cholesky":
        eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
        L, info = torch.linalg.cholesky_ex(eye + cG)
        if not bool((info != 0).any()):
            return 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    lam = torch.linalg.eigvalsh(cG).clamp_min(0.0)
    return torch.log1p(lam).sum(-1)


# ----------------------------------------------------------------------------- coding rates
def coding_rate(Z: Tensor, eps: float, *, route: str = "auto") -> Tensor:
    r"""Coding rate of the rows of ``Z`` (n×d) at distortion ε (Yu et al. 2020; ``chan2021``):

    .. math:: R(Z, \varepsilon) = \tfrac12 \log\det\big(I_d + \tfrac{d}{n\varepsilon^2} Z^\top Z\big)
              = \tfrac12 \log\det\big(I_n + \tfrac{d}{n\varepsilon^2} Z Z^\top\big)

    (the paper's d×n matrix is :math:`Z^\top`; see the module docstring). Closed forms: Z = 0 gives
    0; n identical rows z give :math:`\tfrac12\log(1 + d\lVert z\rVert^2/\varepsilon^2)`; rows that
    are orthogonal with norms :math:`\sigma_i` give :math:`\tfrac12\sum_i\log(1+\tfrac{d\sigma_i^2}{n\varepsilon^2})`.

    ``route``: ``"dd"`` uses the d×d Gram :math:`Z^\top Z`, ``"nn"`` the n×n Gram :math:`ZZ^\top`
    (equal by Sylvester's determinant identity); ``"auto"`` takes ``"nn"`` when n < d. Computed in
    float64 (float32 on MPS) and returned as a differentiable 0-dim tensor in Z's dtype (at least
    float32); finite, with finite gradients, for zero or collapsed features.
    """
    Z = _check_features(Z)
    eps = _check_positive(eps, "eps")
    n, d = Z.shape
    route = _pick_route(route, n, d)
    Zw = Z.to(_work_dtype(Z))
    G = Zw @ Zw.mT if route == "nn" else Zw.mT @ Zw
    c = d / (n * eps**2)
    return (0.5 * _logdet_i_plus_cg(G, c)).to(_out_dtype(Z))


def coding_rate_per_class(Z: Tensor, labels: Tensor, eps: float, num_classes: int, *, route: str = "auto") -> Tensor:
    r"""Coding rate of the rows of ``Z`` given the partition by ``labels`` (Yu et al. 2020):

    .. math:: R_c(Z, \Pi, \varepsilon) = \sum_{j=0}^{K-1} \frac{n_j}{2n}
              \log\det\big(I_d + \tfrac{d}{n_j\varepsilon^2} Z_j^\top Z_j\big),

    :math:`Z_j` the :math:`n_j` rows of class j (the paper's :math:`\operatorname{tr}(\Pi_j)=n_j`,
    :math:`Z\Pi_jZ^\top` becomes :math:`Z_j^\top Z_j`). Classes absent from the batch contribute 0.
    Closed form: if every row of class j equals :math:`\mu_j`,
    :math:`R_c = \sum_j \frac{n_j}{2n}\log(1 + d\lVert\mu_j\rVert^2/\varepsilon^2)`.

    Batched without a K×n×n membership tensor: the rows are sorted by class into a zero-padded
    :math:`K_{\text{present}}\times m\times d` block (m = the largest class count; zero rows add zero
    eigenvalues, so the padding changes no log-determinant), and all class Grams are factorised
    at once. ``route="auto"`` uses the m×m Grams :math:`Z_jZ_j^\top` when m < d, else the d×d
    ones. Differentiable, finite for collapsed classes.
    """
    Z = _check_features(Z)
    eps = _check_positive(eps, "eps")
    num_classes = _check_num_classes(num_classes)
    n, d = Z.shape
    labels = _check_labels(labels, n, num_classes)
    labels = labels.to(device=Z.device, dtype=torch.long)
    Zw = Z.to(_work_dtype(Z))
    _, inv, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inv, stable=True)
    cls = inv[order]
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(n, device=Z.device) - starts[cls]
    m = int(counts.max())
    P = Zw.new_zeros(counts.shape[0], m, d).index_put((cls, pos), Zw[order])
    route = _pick_route(route, m, d)
    G = P @ P.mT if route == "nn" else P.mT @ P
    nj = counts.to(Zw.dtype)
    logdets = _logdet_i_plus_cg(G, d / (nj * eps**2))
    return (nj / (2 * n) * logdets).sum().to(_out_dtype(Z))


class RateReduction(NamedTuple):
    """ΔR = R − R_c with its two parts (0-dim tensors); unpacks as ``(delta_r, r, r_c)``."""

    delta_r: Tensor
    r: Tensor
    r_c: Tensor


def rate_reduction(Z: Tensor, labels: Tensor, eps: float, num_classes: int, *, route: str = "auto") -> RateReduction:
    r"""Rate reduction (Yu et al. 2020; ``chan2021``; ``chan2022redunet``):

    .. math:: \Delta R(Z, \Pi, \varepsilon) = R(Z, \varepsilon) - R_c(Z, \Pi, \varepsilon),

    returned as :class:`RateReduction` ``(delta_r, r, r_c)`` with :func:`coding_rate` and
    :func:`coding_rate_per_class`. ΔR ≥ 0 (concavity of log det). The MCR² principle: on
    normalised features ΔR is large when the classes span large, mutually orthogonal subspaces,
    and much smaller for a collapsed (one point per class) configuration — e.g. for K classes on
    K orthonormal directions (n_j = n/K, d ≥ K):
    :math:`\Delta R = \tfrac K2\log(1+\tfrac{d}{K\varepsilon^2}) - \tfrac12\log(1+\tfrac{d}{\varepsilon^2})`.
    """
    r = coding_rate(Z, eps, route=route)
    r_c = coding_rate_per_class(Z, labels, eps, num_classes, route=route)
    return RateReduction(r - r_c, r, r_c)


class MCR2Loss(nn.Module):
    r"""The MCR² objective as a loss to minimise (Yu et al. 2020; ``chan2021``):

    .. math:: \mathcal L(Z) = -\big(\gamma_1 R(Z,\varepsilon) - \gamma_2 R_c(Z,\Pi,\varepsilon)\big),

    with γ1 = γ2 = 1 the plain :math:`-\Delta R`. The paper constrains features to the unit sphere
    (the network's last layer normalises them); ``normalize=True`` (default) applies
    ``F.normalize(Z, dim=1)`` inside, ``normalize=False`` leaves it to the caller.

    ``eps`` is ε (it enters squared); the default :math:`\sqrt{0.5}` is the paper's ε² = 0.5 (the
    authors' code passes ε² itself as ``eps=0.5``). Note the authors' code weights differently:
    its ``gam1`` multiplies the *argument* of R's log det and its ``gam2`` multiplies R; here the
    weights multiply R and R_c as in the formula above.

    ``forward(Z, labels)`` returns the scalar loss; ``forward(Z, labels, return_parts=True)``
    returns ``(loss, RateReduction)`` so that R and R_c can be logged without recomputing.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        eps: float = math.sqrt(0.5),
        gamma1: float = 1.0,
        gamma2: float = 1.0,
        normalize: bool = True,
        route: str = "auto",
    ):
        super().__init__()
        self.num_classes = _check_num_classes(num_classes)
        self.eps = _check_positive(eps, "eps")
        self.gamma1 = _check_nonnegative(gamma1, "gamma1")
        self.gamma2 = _check_nonnegative(gamma2, "gamma2")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        self.normalize = normalize
        _check_choice(route, "route", _ROUTES)
        self.route = route

    def forward(self, Z: Tensor, labels: Tensor, *, return_parts: bool = False):
        Z = _check_features(Z)
        if self.normalize:
            Z = F.normalize(Z, dim=1)
        rr = rate_reduction(Z, labels, self.eps, self.num_classes, route=self.route)
        loss = -(self.gamma1 * rr.r - self.gamma2 * rr.r_c)
        return (loss, rr) if return_parts else loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, eps={self.eps:.4g}, gamma1={self.gamma1:g}, "
            f"gamma2={self.gamma2:g}, normalize={self.normalize}"
        )


# ----------------------------------------------------------------------------- MSE
def mse_onehot_loss(logits: Tensor, labels: Tensor, num_classes: int, scale: float = 1.0) -> Tensor:
    r"""Square loss against (scaled) one-hot targets, as in the MSE neural-collapse literature:

    .. math:: \mathcal L = \frac1N \sum_{i=1}^N \tfrac12 \big\lVert z_i - s\,e_{y_i} \big\rVert_2^2,

    z_i the K logits of sample i, :math:`e_y` the one-hot vector, s = ``scale``: squared error
    **summed over classes, halved, averaged over samples** — Han, Papyan & Donoho (2022,
    ``han2022``), whose (1/2N) normalisation this is. ``scale`` is the target magnitude M of Hui &
    Belkin (2021, "Evaluation of neural architectures trained with square loss vs cross-entropy",
    ICLR), who use M > 1 for many classes (their extra weight k on the true class is not included).
    Equal to ``K/2 * F.mse_loss(logits, s * one_hot)`` (torch averages over all N·K entries).
    Zero exactly when ``logits == scale * one_hot(labels)``.
    """
    logits = _require_tensor(logits, "logits")
    num_classes = _check_num_classes(num_classes, minimum=2)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"logits must be 2-D (N×K) with K = num_classes = {num_classes}, got shape {tuple(logits.shape)}"
        )
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    if logits.shape[0] < 1:
        raise ValueError("logits are empty (N = 0)")
    labels = _check_labels(labels, logits.shape[0], num_classes, what="logits")
    scale = _check_positive(scale, "scale")
    target = F.one_hot(labels.to(device=logits.device, dtype=torch.long), num_classes).to(logits.dtype) * scale
    return 0.5 * ((logits - target) ** 2).sum(1).mean()


# ----------------------------------------------------------------------------- the loss registry (chapter 6)
# validation of the long-tail losses (also used by nclib.imbalance)
def _tensor(x, name: str, ndim: int | None = None, floating: bool = True) -> Tensor:
    return _v.tensor(x, name, ndim=ndim, floating=True if floating else None, finite=False)


def _labels(labels, n: int, K: int, what: str) -> Tensor:
    return _v.labels(labels, "labels", n=n, num_classes=K, what=what).long()


def _counts(counts, K: int | None = None) -> Tensor:
    if isinstance(counts, Tensor):
        c = counts.detach().to(torch.float64).flatten()
    elif isinstance(counts, (list, tuple, np.ndarray)):
        c = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    else:
        raise TypeError(f"counts must be a sequence or tensor of class counts, got {type(counts).__name__}")
    if c.ndim != 1 or c.numel() < 2:
        raise ValueError(f"counts must list at least 2 class counts, got shape {tuple(c.shape)}")
    if not torch.isfinite(c).all() or (c <= 0).any():
        raise ValueError(f"class counts must be positive and finite, got {c.tolist()}")
    if K is not None and c.numel() != K:
        raise ValueError(f"counts has {c.numel()} entries but there are {K} classes")
    return c


def _real(v, name: str, lo: float | None = None, lo_open: bool = False) -> float:
    return _v.real(v, name, lo=lo, lo_open=lo_open)


def class_priors(counts) -> Tensor:
    r"""Class priors :math:`\pi_k = n_k / \sum_j n_j` (float64)."""
    c = _counts(counts)
    return c / c.sum()


def logit_adjusted_loss(logits: Tensor, labels: Tensor, counts, *, tau: float = 1.0) -> Tensor:
    r"""Logit-adjusted cross-entropy (Menon et al. 2021, the loss form):

    .. math:: \ell(z, y) = -\log\frac{e^{z_y + \tau\log\pi_y}}{\sum_k e^{z_k + \tau\log\pi_k}}.

    Training adds the log-priors to the logits; prediction uses the *plain* logits
    :math:`\arg\max_k z_k`, which then estimates the balanced-error Bayes rule. With equal counts
    (or τ = 0) it is the ordinary cross-entropy. Mean over the batch.
    """
    logits = _tensor(logits, "logits", 2)
    K = logits.shape[1]
    y = _labels(labels, logits.shape[0], K, "logits")
    tau = _real(tau, "tau", 0.0)
    logp = torch.log(class_priors(_counts(counts, K))).to(logits)
    return F.cross_entropy(logits + tau * logp, y.to(logits.device))


def class_balanced_weights(counts, *, beta: float | None = None) -> Tensor:
    r"""Per-class loss weights, normalised to :math:`\sum_k w_k = K`:

    * ``beta=None``: inverse frequency, :math:`w_k \propto 1/n_k`;
    * ``0 ≤ beta < 1``: the "effective number" weights of Cui et al. (2019),
      :math:`w_k \propto (1-\beta)/(1-\beta^{n_k})` (β = 0 gives equal weights; β → 1 inverse frequency).
    """
    c = _counts(counts)
    if beta is None:
        w = 1.0 / c
    else:
        beta = _real(beta, "beta", 0.0)
        if beta >= 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        w = (1.0 - beta) / (1.0 - beta**c)
    return w * c.numel() / w.sum()


def class_balanced_loss(logits: Tensor, labels: Tensor, counts, *, beta: float | None = None) -> Tensor:
    r"""Class-balanced (re-weighted) cross-entropy:
    :math:`\sum_i w_{y_i}\,\mathrm{CE}(z_i, y_i) / \sum_i w_{y_i}` with
    :func:`class_balanced_weights` — each class contributes as if the batch were balanced.
    Equal counts give the ordinary cross-entropy."""
    logits = _tensor(logits, "logits", 2)
    K = logits.shape[1]
    y = _labels(labels, logits.shape[0], K, "logits")
    w = class_balanced_weights(_counts(counts, K), beta=beta).to(logits)
    return F.cross_entropy(logits, y.to(logits.device), weight=w)


def _row_cosines(features: Tensor, labels: Tensor, W: Tensor) -> Tensor:
    H = _tensor(features, "features", 2)
    W = _tensor(W, "W", 2)
    if W.shape[1] != H.shape[1]:
        raise ValueError(f"W must be K×D with D = {H.shape[1]} (the feature dimension), got {tuple(W.shape)}")
    y = _labels(labels, H.shape[0], W.shape[0], "features").to(H.device)
    return F.cosine_similarity(H, W.to(H)[y], dim=1, eps=1e-12)


def dot_regression_loss(features: Tensor, labels: Tensor, W: Tensor) -> Tensor:
    r"""Dot-regression loss of Yang et al. (2022) for a fixed (ETF) classifier and normalised features:

    .. math:: \ell(h, y) = \tfrac12\big(\cos(h, w_y) - 1\big)^2,

    their :math:`\frac1{2E_WE_H}(w_y^\top h - E_WE_H)^2` with :math:`\lVert h\rVert = E_H`,
    :math:`\lVert w_y\rVert = E_W`, divided by the constant :math:`E_WE_H`. Only the true class's
    row enters: no other classifier row pushes the feature, so majority classes cannot push the
    minority features around through the loss. Zero exactly when :math:`h` points along
    :math:`w_y`. Mean over the batch.
    """
    return 0.5 * (_row_cosines(features, labels, W) - 1.0).pow(2).mean()


def cosine_alignment_loss(features: Tensor, labels: Tensor, W: Tensor) -> Tensor:
    r""":math:`\ell(h, y) = 1 - \cos(h, w_y)`, mean over the batch: 0 when every feature points
    along its class's row of W, 2 when opposite. With W the class targets of a
    :class:`MultiCenterClassifier` it is our form of the *cosine loss* of neural collapse to
    multiple centres; with W a learnable classifier it is the feature–classifier *space alignment*
    regulariser (used with ``"ce_align"``)."""
    return (1.0 - _row_cosines(features, labels, W)).mean()


@dataclass(frozen=True)
class LossSpec:
    """A training loss for :func:`nclib.train.fit`: ``fn(logits, labels, K, features=..., classifier=..., **kw)``.
    ``needs_features``: the loop captures the penultimate features (the classifier's input)."""

    fn: Callable
    needs_features: bool = False
    doc: str = ""


def _ce_align(logits, labels, K, *, features, classifier, alpha: float = 1.0, counts=None, tau: float = 1.0):
    base = F.cross_entropy(logits, labels) if counts is None else logit_adjusted_loss(logits, labels, counts, tau=tau)
    return base + _real(alpha, "alpha", 0.0) * cosine_alignment_loss(features, labels, classifier.weight)


def _head_targets(classifier) -> Tensor:
    t = getattr(classifier, "targets", None)
    if t is None:
        raise TypeError(
            "the 'multicenter_cosine' loss needs a MultiCenterClassifier head "
            "(model_kwargs={'head': 'multicenter', ...})"
        )
    return t


LOSSES: dict[str, LossSpec] = {
    "logit_adjusted": LossSpec(
        lambda z, y, K, counts, tau=1.0, **_: logit_adjusted_loss(z, y, counts, tau=tau),
        doc="cross-entropy on logits + τ log π (Menon et al. 2021); kwargs counts, tau",
    ),
    "class_balanced": LossSpec(
        lambda z, y, K, counts, beta=None, **_: class_balanced_loss(z, y, counts, beta=beta),
        doc="re-weighted cross-entropy; kwargs counts, beta",
    ),
    "dot_regression": LossSpec(
        lambda z, y, K, *, features, classifier, **_: dot_regression_loss(features, y, classifier.weight),
        needs_features=True,
        doc="½(cos(h, w_y) − 1)² (Yang et al. 2022)",
    ),
    "multicenter_cosine": LossSpec(
        lambda z, y, K, *, features, classifier, **_: cosine_alignment_loss(features, y, _head_targets(classifier)),
        needs_features=True,
        doc="1 − cos(h, mean of the class's centres) for a MultiCenterClassifier head",
    ),
    "ce_align": LossSpec(
        _ce_align,
        needs_features=True,
        doc="cross-entropy (logit-adjusted when counts are given) + α(1 − cos(h, w_y)); kwargs alpha, counts, tau",
    ),
}


def register_loss(name: str, spec: LossSpec) -> None:
    """Add a named loss for :func:`nclib.train.fit` (``TrainConfig(loss=name, loss_kwargs=...)``)."""
    if not isinstance(name, str) or not name or name in ("ce", "mse"):
        raise ValueError(f"loss name must be a new non-empty string other than 'ce'/'mse', got {name!r}")
    if not isinstance(spec, LossSpec):
        raise TypeError(f"spec must be a LossSpec, got {type(spec).__name__}")
    LOSSES[name] = spec
