r"""Long-tailed (class-imbalanced) learning: minority collapse and the remedies tried against it.

Notation (features are rows, as everywhere in nclib): N features :math:`h_i\in\mathbb R^D` with
labels :math:`y_i`, class counts :math:`n_k`, priors :math:`\pi_k = n_k/N`, classifier rows
:math:`w_k` (K×D), logits :math:`z_i = W h_i + b`. The imbalance ratio is
:math:`R = n_{\max}/n_{\min}`; the long-tailed subsampling itself lives in
:func:`nclib.data.long_tail`.

* **Measurements** — :func:`pairwise_cosines`, :func:`mean_pairwise_cosine` (minority collapse of
  Fang et al. 2021 is the mean cosine between minority classifier rows rising towards 1),
  :func:`per_class_accuracy`, :func:`per_class_nc1` (class-balanced by default).
* **Losses** — :func:`logit_adjusted_loss` (Menon et al. 2021), :func:`class_balanced_loss`
  (inverse-frequency / effective-number weights), :func:`dot_regression_loss` (Yang et al. 2022),
  :func:`cosine_alignment_loss` (the multi-center cosine loss and the space-alignment regulariser).
  They are registered by name in :data:`LOSSES`, which :func:`nclib.train.fit` consults for any
  ``TrainConfig.loss`` other than ``"ce"``/``"mse"`` (arguments in ``TrainConfig.loss_kwargs``).
* **Heads** — :class:`MultiCenterClassifier`: a frozen classifier with several centres per class
  (more for rarer classes) and the generalised (max-over-centres) decision rule;
  ``make_head("multicenter", ...)``. The frozen simplex ETF is
  :class:`nclib.models.FixedETFClassifier`.
* **Simulation** — :func:`imbalanced_ufm`: the unconstrained-features model with imbalanced
  classes, reduced exactly to one free feature per class, solved by L-BFGS.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "pairwise_cosines",
    "mean_pairwise_cosine",
    "per_class_accuracy",
    "per_class_nc1",
    "long_tail_summary",
    "class_priors",
    "logit_adjusted_loss",
    "class_balanced_weights",
    "class_balanced_loss",
    "dot_regression_loss",
    "cosine_alignment_loss",
    "LossSpec",
    "LOSSES",
    "register_loss",
    "centers_per_class",
    "MultiCenterClassifier",
    "imbalanced_ufm",
    "UFMImbalanced",
    "METHODS",
    "long_tail_recipe",
]


# ----------------------------------------------------------------------------- validation
def _tensor(x, name: str, ndim: int | None = None, floating: bool = True) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if floating and not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    return x


def _labels(labels, n: int, K: int, what: str) -> Tensor:
    labels = _tensor(labels, "labels", 1, floating=False)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(f"labels must have one entry per row of {what}: {labels.shape[0]} vs {n}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= K):
        raise ValueError(f"labels out of range [{int(labels.min())}, {int(labels.max())}] for {K} classes")
    return labels.long()


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
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)):
        raise ValueError(f"{name} must be finite and {'>' if lo_open else '≥'} {lo}, got {v}")
    return v


# ----------------------------------------------------------------------------- measurements
def pairwise_cosines(V: Tensor) -> Tensor:
    r"""The K×K matrix of cosines :math:`\cos(v_j, v_k) = \langle v_j, v_k\rangle/(\lVert v_j\rVert\lVert v_k\rVert)`
    between the rows of V (float64). Zero rows raise ``ValueError``."""
    V = _tensor(V, "V", 2).detach().to(torch.float64)
    n = V.norm(dim=1)
    if (n == 0).any():
        raise ValueError(f"row(s) {(n == 0).nonzero().flatten().tolist()} of V are zero; their cosine is undefined")
    U = V / n[:, None]
    return U @ U.T


def mean_pairwise_cosine(V: Tensor, rows=None) -> float:
    r"""Mean cosine over the pairs :math:`j < k` of the selected rows of V (all rows by default):

    .. math:: \bar c = \binom{m}{2}^{-1}\sum_{j<k}\cos(v_j, v_k).

    Minority collapse (Fang et al. 2021) is this quantity over the **minority** classifier rows
    rising towards 1; a simplex ETF gives :math:`-1/(K-1)` over any subset of its rows, identical
    rows give 1.
    """
    V = _tensor(V, "V", 2)
    idx = list(range(V.shape[0])) if rows is None else [int(r) for r in rows]
    if len(idx) < 2 or len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) >= V.shape[0]:
        raise ValueError(f"rows must be ≥ 2 distinct row indices of V (0..{V.shape[0] - 1}), got {rows}")
    C = pairwise_cosines(V[idx])
    m = len(idx)
    return float((C.sum() - C.diagonal().sum()) / (m * (m - 1)))


def per_class_accuracy(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    r"""Accuracy of each class, :math:`a_k = |\{i: y_i = k, \hat y_i = k\}| / |\{i: y_i = k\}|`
    (float64, K; NaN for a class absent from ``labels``). ``pred`` is 1-D predicted labels or
    N×K scores (argmax taken)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int ≥ 2, got {num_classes!r}")
    pred = _tensor(pred, "pred", floating=False)
    if pred.ndim == 2:
        if pred.shape[1] != num_classes:
            raise ValueError(f"scores must be N×K with K = {num_classes}, got {tuple(pred.shape)}")
        pred = pred.argmax(1)
    elif pred.ndim != 1:
        raise ValueError(f"pred must be 1-D labels or N×K scores, got shape {tuple(pred.shape)}")
    y = _labels(labels, pred.shape[0], num_classes, "pred")
    pred = pred.long().to(y.device)
    n = torch.bincount(y, minlength=num_classes).to(torch.float64)
    hit = torch.bincount(y[pred == y], minlength=num_classes).to(torch.float64)
    return torch.where(n > 0, hit / n.clamp_min(1), torch.full_like(n, float("nan")))


def per_class_nc1(features: Tensor, labels: Tensor, num_classes: int, *, global_mean: str = "classes") -> Tensor:
    r"""NC1 split by class: :math:`\mathrm{NC1}_k = \tfrac1K\operatorname{Tr}(\Sigma_k\Sigma_B^{+})`,
    with :math:`\Sigma_k = \frac1{n_k}\sum_{y_i=k}(h_i-\mu_k)(h_i-\mu_k)^\top` the covariance of class k
    and :math:`\Sigma_B = \frac1K\sum_k(\mu_k-\mu_G)(\mu_k-\mu_G)^\top`.

    Since Papyan's :math:`\Sigma_W = \sum_k \pi_k\Sigma_k`, the prior-weighted sum
    :math:`\sum_k \pi_k\mathrm{NC1}_k` is :func:`nclib.metrics.nc1` (with the same ``global_mean``),
    and the plain average :math:`\frac1K\sum_k\mathrm{NC1}_k` is its class-balanced version, in
    which a minority class counts as much as a majority one. ``global_mean="classes"`` (default)
    centres the means at the mean of class means (the class-balanced convention); ``"samples"`` is
    Papyan's. Returns a float64 tensor of K values.
    """
    from .metrics import FeatureStats, _pinv_psd

    X = _tensor(features, "features", 2).detach().to(torch.float64)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int ≥ 2, got {num_classes!r}")
    y = _labels(labels, X.shape[0], num_classes, "features").to(X.device)
    stats = FeatureStats(num_classes, X.shape[1], scatter=False, device=X.device).update(X, y)
    SB = stats.sigma_b(global_mean)
    P = _pinv_psd(SB)
    dev = X - stats.means[y]
    q = ((dev @ P) * dev).sum(1)
    per = torch.zeros(num_classes, dtype=torch.float64, device=X.device).index_add_(0, y, q)
    return per / stats.counts / num_classes


@torch.no_grad()
def long_tail_summary(model: nn.Module, data, minority, *, batch_size: int = 4096) -> dict:
    r"""The numbers chapter 6 tabulates for one trained model on a long-tailed ``data``
    (:class:`nclib.data.Data`; ``minority`` = the minority class indices, ≥ 2 of them):

    * ``acc_majority``, ``acc_minority``, ``acc_balanced`` — mean per-class **test** accuracy over
      the majority classes, the minority classes and all classes (the test split is balanced),
      from the model's own forward pass (so a multi-centre head uses its decision rule);
    * ``cos_W_minority`` — mean pairwise cosine between the minority classifier rows (minority
      collapse of the classifier; −1/(K−1) for a simplex ETF);
    * ``cos_means_minority`` — the same between the minority **class means** of the training
      features, centred at the mean of class means (feature-level minority collapse);
    * ``nc1`` — NC1 with the class-balanced global mean; ``nc1_majority``/``nc1_minority`` — the
      mean of :func:`per_class_nc1` over each group (class-balanced);
    * ``self_duality`` (class-balanced centring), ``train_error`` and ``train_acc_minority`` (the
      mean training accuracy of the minority classes: does the network even fit them?).
    """
    from .metrics import FeatureStats, measure_features

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    K = data.num_classes
    minority = sorted({int(k) for k in minority})
    if len(minority) < 2 or minority[0] < 0 or minority[-1] >= K or len(minority) == K:
        raise ValueError(f"minority must list ≥ 2 (and not all) of the classes 0..{K - 1}, got {minority}")
    majority = [k for k in range(K) if k not in minority]
    was = model.training
    model.eval()
    dev = next(iter(model.parameters())).device

    def run(X):
        hs, zs = [], []
        for s in range(0, len(X), batch_size):
            h = model.features(X[s:s + batch_size].to(dev))
            hs.append(h.double().cpu())
            zs.append(model.classifier(h).double().cpu())
        return torch.cat(hs), torch.cat(zs)

    Xtr, ytr = data.tensors("train")
    Xte, yte = data.tensors("test")
    htr, ztr = run(Xtr)
    _, zte = run(Xte)
    model.train(was)
    acc = per_class_accuracy(zte, yte, K)
    W = model.classifier.weight.detach().double().cpu()
    b = getattr(model.classifier, "bias", None)
    b = None if b is None else b.detach().double().cpu()
    m = measure_features(htr, ytr, W, b, num_classes=K, global_mean="classes").metrics
    stats = FeatureStats(K, htr.shape[1], scatter=False).update(htr, ytr)
    nc1k = per_class_nc1(htr, ytr, K, global_mean="classes")
    return {
        "acc_majority": float(acc[majority].mean()), "acc_minority": float(acc[minority].mean()),
        "acc_balanced": float(acc.mean()),
        "cos_W_minority": mean_pairwise_cosine(W, minority),
        "cos_means_minority": mean_pairwise_cosine(stats.centered_means("classes"), minority),
        "nc1": float(m["nc1"]), "nc1_majority": float(nc1k[majority].mean()),
        "nc1_minority": float(nc1k[minority].mean()), "self_duality": float(m["self_duality"]),
        "train_error": float((ztr.argmax(1) != ytr).double().mean()),
        "train_acc_minority": float(per_class_accuracy(ztr, ytr, K)[minority].mean()),
    }


# ----------------------------------------------------------------------------- losses
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
        w = (1.0 - beta) / (1.0 - beta ** c)
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
    base = (F.cross_entropy(logits, labels) if counts is None
            else logit_adjusted_loss(logits, labels, counts, tau=tau))
    return base + _real(alpha, "alpha", 0.0) * cosine_alignment_loss(features, labels, classifier.weight)


def _head_targets(classifier) -> Tensor:
    t = getattr(classifier, "targets", None)
    if t is None:
        raise TypeError("the 'multicenter_cosine' loss needs a MultiCenterClassifier head "
                        "(model_kwargs={'head': 'multicenter', ...})")
    return t


LOSSES: dict[str, LossSpec] = {
    "logit_adjusted": LossSpec(lambda z, y, K, counts, tau=1.0, **_: logit_adjusted_loss(z, y, counts, tau=tau),
                               doc="cross-entropy on logits + τ log π (Menon et al. 2021); kwargs counts, tau"),
    "class_balanced": LossSpec(lambda z, y, K, counts, beta=None, **_: class_balanced_loss(z, y, counts, beta=beta),
                               doc="re-weighted cross-entropy; kwargs counts, beta"),
    "dot_regression": LossSpec(lambda z, y, K, *, features, classifier, **_: dot_regression_loss(
        features, y, classifier.weight), needs_features=True, doc="½(cos(h, w_y) − 1)² (Yang et al. 2022)"),
    "multicenter_cosine": LossSpec(lambda z, y, K, *, features, classifier, **_: cosine_alignment_loss(
        features, y, _head_targets(classifier)), needs_features=True,
        doc="1 − cos(h, mean of the class's centres) for a MultiCenterClassifier head"),
    "ce_align": LossSpec(_ce_align, needs_features=True,
                         doc="cross-entropy (logit-adjusted when counts are given) + α(1 − cos(h, w_y)); kwargs alpha, counts, tau"),
}


def register_loss(name: str, spec: LossSpec) -> None:
    """Add a named loss for :func:`nclib.train.fit` (``TrainConfig(loss=name, loss_kwargs=...)``)."""
    if not isinstance(name, str) or not name or name in ("ce", "mse"):
        raise ValueError(f"loss name must be a new non-empty string other than 'ce'/'mse', got {name!r}")
    if not isinstance(spec, LossSpec):
        raise TypeError(f"spec must be a LossSpec, got {type(spec).__name__}")
    LOSSES[name] = spec


# ----------------------------------------------------------------------------- multi-center head
def centers_per_class(counts, f_max: int) -> list[int]:
    r"""How many centres each class gets: rarer classes get more,

    .. math:: f_k = 1 + \operatorname{round}\Big((f_{\max}-1)\,\frac{\log(n_{\max}/n_k)}{\log(n_{\max}/n_{\min})}\Big),

    so the most frequent class has 1 centre and the rarest :math:`f_{\max}` (all 1 when balanced).
    Example: counts (100, 10, 1), f_max = 5 → (1, 3, 5). (A simple class-aware rule in the spirit
    of neural collapse to multiple centres; the paper's own strategy differs in detail.)
    """
    c = _counts(counts)
    if isinstance(f_max, bool) or not isinstance(f_max, int) or f_max < 1:
        raise ValueError(f"f_max must be a positive int, got {f_max!r}")
    lo, hi = float(c.min()), float(c.max())
    if hi == lo:
        return [1] * c.numel()
    t = torch.log(hi / c) / math.log(hi / lo)
    return [int(1 + round((f_max - 1) * float(v))) for v in t]


class MultiCenterClassifier(nn.Module):
    r"""A frozen classifier with :math:`f_k` centres for class k (neural collapse to multiple
    centres; our construction).

    Class directions :math:`e_k` form a unit simplex ETF (seeded rotation); each class gets
    :math:`f_k` unit centres :math:`c_{kj} = \cos\theta\,e_k + \sin\theta\,v_{kj}` — at angle θ from
    their class direction — with the :math:`v_{kj}` orthonormal and orthogonal to every :math:`e_k`
    (needs :math:`D \ge K-1+\sum_k f_k`). (An earlier version had sin and cos swapped, which put the
    centres 78° from their class direction at θ = 0.2.) The class *target* is the mean of its centres,
    :math:`m_k = \frac1{f_k}\sum_j c_{kj}`, the point features of class k are trained towards
    (``"multicenter_cosine"`` loss).

    ``forward(h)`` returns ``scale`` × the scores of ``rule``:

    * ``"max"`` — the generalised classification rule: :math:`s_k(h) = \max_j\cos(h, c_{kj})`;
      a class with more centres owns a wider region of directions;
    * ``"mean"`` — :math:`s_k(h) = \cos(h, m_k)`, the nearest target by angle.

    ``weight`` (K×D buffer) holds the unit targets :math:`m_k/\lVert m_k\rVert`, so a linear read-out
    :math:`\arg\max_k\langle w_k, h\rangle` is exactly the ``"mean"`` rule (what
    :func:`nclib.metrics.measure` evaluates). No trainable parameters.
    """

    def __init__(self, in_features: int, num_classes: int, *, centers=None, theta: float = 0.2,
                 rule: str = "max", scale: float = 1.0, seed: int = 0):
        super().__init__()
        from .geometry import simplex_etf

        K, D = int(num_classes), int(in_features)
        f = [1] * K if centers is None else [int(c) for c in centers]
        if len(f) != K or min(f) < 1:
            raise ValueError(f"centers must give a positive count for each of the {K} classes, got {centers}")
        M = sum(f)
        if D < K - 1 + M:
            raise ValueError(f"{M} centres around a {K}-class ETF need feature dimension ≥ {K - 1 + M}, got {D}")
        if rule not in ("max", "mean"):
            raise ValueError(f"rule must be 'max' or 'mean', got {rule!r}")
        theta = _real(theta, "theta")
        E = simplex_etf(K, D, seed=seed)                                   # K×D unit rows
        U = torch.linalg.svd(E, full_matrices=False)[2][:K - 1]            # basis of span(E)
        g = torch.Generator().manual_seed(int(seed) + 1)
        G = torch.randn(D, M, generator=g, dtype=torch.float64)
        G = G - U.T @ (U @ G)
        V = torch.linalg.qr(G)[0].T                                         # M×D orthonormal, ⊥ span(E)
        owner = torch.arange(K).repeat_interleave(torch.tensor(f))
        C = math.cos(theta) * E[owner] + math.sin(theta) * V
        T = torch.zeros(K, D, dtype=torch.float64).index_add_(0, owner, C) / torch.tensor(f, dtype=torch.float64)[:, None]
        self.register_buffer("centers", C.float())
        self.register_buffer("owner", owner)
        self.register_buffer("targets", T.float())
        self.register_buffer("weight", F.normalize(T, dim=1).float())
        self.bias = None
        self.rule, self.scale, self.theta = rule, float(scale), theta
        self.in_features, self.out_features, self.num_centers = D, K, f

    def scores(self, h: Tensor, rule: str | None = None) -> Tensor:
        """Unscaled class scores (N×K) under ``rule`` (default: the head's)."""
        rule = self.rule if rule is None else rule
        hn = F.normalize(h, dim=1)
        if rule == "mean":
            return hn @ self.weight.T
        if rule != "max":
            raise ValueError(f"rule must be 'max' or 'mean', got {rule!r}")
        s = hn @ self.centers.T                                             # N×M cosines
        out = torch.full((h.shape[0], self.out_features), -2.0, dtype=s.dtype, device=s.device)
        return out.scatter_reduce(1, self.owner.expand(h.shape[0], -1), s, reduce="amax")

    def forward(self, h: Tensor) -> Tensor:
        return self.scale * self.scores(h)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, centers={self.num_centers}, "
                f"theta={self.theta:g}, rule={self.rule!r}, scale={self.scale:g}")


# ----------------------------------------------------------------------------- UFM simulation
@dataclass
class UFMImbalanced:
    """Solution of :func:`imbalanced_ufm`: class features ``H`` (K×D), classifier ``W`` (K×D),
    the priors, the objective value, L-BFGS iterations and final gradient norm."""

    H: Tensor
    W: Tensor
    priors: Tensor
    objective: float
    iterations: int
    grad_norm: float

    def minority_cosine(self, minority) -> float:
        """Mean pairwise cosine between the classifier rows of the ``minority`` classes."""
        return mean_pairwise_cosine(self.W, minority)


def imbalanced_ufm(counts, *, lam: float = 5e-3, lam_H: float | None = None, lam_W: float | None = None,
                   dim: int | None = None, seed: int = 0, init: UFMImbalanced | None = None,
                   max_iter: int = 5000, gtol: float = 1e-10) -> UFMImbalanced:
    r"""The unconstrained-features model with imbalanced classes (the layer-peeled model of Fang
    et al. 2021 with penalties instead of constraints), solved to high accuracy.

    The UFM with free features :math:`h_i` and classifier W (no bias), cross-entropy averaged over
    the N samples and weight decay on both,

    .. math:: \frac1N\sum_i \mathrm{CE}(Wh_i, y_i) + \frac{\lambda_H}{2N}\sum_i\lVert h_i\rVert^2 + \frac{\lambda_W}2\lVert W\rVert_F^2,

    has, for fixed W, a strictly convex problem in each :math:`h_i` that is the same for all samples
    of a class — so at every minimiser the features of a class coincide, :math:`h_i = h_{y_i}`, and the
    problem is **exactly** the class-level one solved here:

    .. math:: \min_{H, W}\ \sum_k \pi_k\Big(\mathrm{CE}(Wh_k, k) + \frac{\lambda_H}2\lVert h_k\rVert^2\Big) + \frac{\lambda_W}2\lVert W\rVert_F^2,

    which depends on the counts only through the priors :math:`\pi_k = n_k/N` — so any ratio R
    costs the same. (The feature penalty is averaged over samples, so λ does not scale with N;
    :func:`nclib.ufm.train_ufm` sums it instead: its ``lam_H`` is this λ_H / N.)

    ``lam`` sets λ_H = λ_W unless they are given; ``dim`` defaults to K. Float64 L-BFGS (SciPy)
    from an N(0, 0.1²) initialisation drawn from ``seed`` or from a previous solution ``init``
    (warm start along a sweep of R).
    """
    from scipy.optimize import minimize

    p = class_priors(counts).numpy()
    K = p.size
    D = K if dim is None else int(dim)
    if D < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    lam_H = _real(lam if lam_H is None else lam_H, "lam_H", 0.0, lo_open=True)
    lam_W = _real(lam if lam_W is None else lam_W, "lam_W", 0.0, lo_open=True)
    if init is not None:
        if tuple(init.H.shape) != (K, D):
            raise ValueError(f"init has shape {tuple(init.H.shape)}, expected {(K, D)}")
        x0 = np.concatenate([init.H.numpy().ravel(), init.W.numpy().ravel()])
    else:
        x0 = 0.1 * np.random.default_rng(seed).standard_normal(2 * K * D)
    eye = np.eye(K)

    def f(x):
        H, W = x[:K * D].reshape(K, D), x[K * D:].reshape(K, D)
        Z = H @ W.T
        zm = Z.max(1, keepdims=True)
        E = np.exp(Z - zm)
        s = E.sum(1, keepdims=True)
        ce = (np.log(s) + zm)[:, 0] - np.diag(Z)
        val = (p * (ce + 0.5 * lam_H * (H ** 2).sum(1))).sum() + 0.5 * lam_W * (W ** 2).sum()
        dZ = p[:, None] * (E / s - eye)
        gH = dZ @ W + lam_H * p[:, None] * H
        gW = dZ.T @ H + lam_W * W
        return val, np.concatenate([gH.ravel(), gW.ravel()])

    r = minimize(f, x0, jac=True, method="L-BFGS-B",
                 options=dict(maxiter=int(max_iter), maxcor=30, gtol=gtol, ftol=1e-15))
    H, W = r.x[:K * D].reshape(K, D), r.x[K * D:].reshape(K, D)
    return UFMImbalanced(torch.from_numpy(H.copy()), torch.from_numpy(W.copy()), torch.from_numpy(p), float(r.fun),
                         int(r.nit), float(np.linalg.norm(r.jac)))



# ----------------------------------------------------------------------------- chapter 6 recipes
METHODS = {
    "ce": "learnable linear head, cross-entropy",
    "etf": "fixed simplex-ETF head, cross-entropy (Zhu et al. 2021)",
    "etf_dr": "fixed ETF head on normalised features, dot-regression loss (Yang et al. 2022)",
    "multicenter": "fixed multi-centre head, cosine loss, max-over-centres rule (neural collapse to multiple centres)",
    "logit_adjusted": "learnable head, logit-adjusted cross-entropy (Menon et al. 2021)",
    "class_balanced": "learnable head, inverse-frequency re-weighted cross-entropy",
    "la_align": "learnable head, logit-adjusted cross-entropy + feature–classifier alignment (space alignment)",
}


def _even_batch_size(n: int, target: int) -> int:
    """A batch size near ``target`` whose trailing batch is at least half a batch.

    First try equal batches, ⌈n / ⌈n/target⌉⌉; if the remainder is still under half a batch, step
    down until it is not (or divides n). A tiny trailing batch — one SGD step per epoch on a handful
    of samples, with BatchNorm statistics of that handful — derails training: 2,065 = 8·256 + 17 at
    R = 30 does (here: 230, trailing 225). E.g. (2065, 256) → 230, (25250, 128) → 127."""
    b = -(-n // -(-n // target))
    while b > 1 and n % b and n % b < b / 2:
        b -= 1
    return b


def long_tail_recipe(method: str, ratio: float, profile: str = "quick", *, seed: int = 0, n_minority: int = 5,
                     f_max: int = 8, **overrides):
    r"""The chapter-6 training configuration for one ``method`` (a key of :data:`METHODS`) at
    imbalance ratio ``ratio`` (step imbalance: the first K − ``n_minority`` classes keep
    :math:`n_{\max}` samples, the rest :math:`\lfloor n_{\max}/R\rfloor`).

    quick: MNIST-1D (4,500 generated training samples → :math:`n_{\max}` = 400, so 4 per minority class
    at R = 100; 1,500 balanced test samples), MLP 3×128 with BatchNorm and a linear projection to
    64-d signed features (``projection=64``; the cosine-based losses need features that can point
    anywhere, which ReLU outputs cannot), SGD momentum 0.9, lr 0.1, cosine schedule, weight decay
    5e-3, batches of about 256 (the training set split into equal-sized batches), 30 epochs. full: CIFAR-10 (:math:`n_{\max}` = 5,000, 50 per minority class at
    R = 100), ResNet-18 with a 128-d projection, lr 0.1, weight decay 5e-4, batches of about 128, 200 epochs.
    The long-tailed subset is drawn from ``seed`` (nested across R), as is the initialisation.
    ``overrides`` replace TrainConfig fields.
    """
    from .data import long_tail_counts
    from .profiles import check_profile
    from .train import TrainConfig

    check_profile(profile)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    K = 10
    if profile == "quick":
        n_max = 400
        cfg = TrainConfig(data="mnist1d", data_kwargs={"n_train": 4500, "n_test": 1500, "seed": 0},
                          model="mlp", model_kwargs={"width": 128, "depth": 3, "batchnorm": True, "projection": 64},
                          lr=0.1, momentum=0.9, weight_decay=5e-3, schedule="cosine", epochs=30, batch_size=256,
                          n_logs=2, measure_test=False, seed=seed)
    else:
        n_max = 5000
        cfg = TrainConfig(data="cifar10", data_kwargs={"download": True}, model="resnet18",
                          model_kwargs={"projection": 128}, lr=0.1, momentum=0.9, weight_decay=5e-4,
                          schedule="cosine", epochs=200, batch_size=128, n_logs=10, measure_test=False, seed=seed)
    counts = long_tail_counts(K, n_max, ratio, "step", n_minority=n_minority)
    lt = {"kind": "step", "ratio": float(ratio), "n_max": n_max, "n_minority": n_minority, "seed": seed}
    mk = dict(cfg.model_kwargs)
    changes = {"data_kwargs": {**cfg.data_kwargs, "long_tail": lt},
               "batch_size": _even_batch_size(sum(counts), cfg.batch_size)}
    if method == "etf":
        changes["model_kwargs"] = {**mk, "head": "etf"}
    elif method == "etf_dr":
        changes.update(model_kwargs={**mk, "head": "etf", "normalize": True}, loss="dot_regression")
    elif method == "multicenter":
        changes.update(model_kwargs={**mk, "head": "multicenter", "centers": centers_per_class(counts, f_max)},
                       loss="multicenter_cosine")
    elif method == "logit_adjusted":
        changes.update(loss="logit_adjusted", loss_kwargs={"counts": counts})
    elif method == "class_balanced":
        changes.update(loss="class_balanced", loss_kwargs={"counts": counts})
    elif method == "la_align":
        changes.update(loss="ce_align", loss_kwargs={"counts": counts, "alpha": 1.0})
    changes.update(overrides)
    return cfg.replace(**changes)
