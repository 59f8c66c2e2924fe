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
  They live in :mod:`nclib.losses`, registered by name in :data:`nclib.losses.LOSSES`, which
  :func:`nclib.train.fit` consults for any ``TrainConfig.loss`` other than ``"ce"``/``"mse"``/``"mcr2"``
  (arguments in ``TrainConfig.loss_kwargs``); they are re-exported here under their old names.
* **Heads** — :func:`centers_per_class` for :class:`nclib.models.MultiCenterClassifier` (re-exported
  here): a frozen classifier with several centres per class (more for rarer classes) and the
  generalised (max-over-centres) decision rule; ``make_head("multicenter", ...)``. The frozen
  simplex ETF is :class:`nclib.models.FixedETFClassifier`.
* **Simulation** — :func:`imbalanced_ufm`: the unconstrained-features model with imbalanced
  classes, reduced exactly to one free feature per class, solved by L-BFGS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from . import _validate as _v
from .losses import (  # noqa: F401
    LOSSES,
    LossSpec,
    _counts,
    _labels,
    _real,
    _tensor,
    class_balanced_loss,
    class_balanced_weights,
    class_priors,
    cosine_alignment_loss,
    dot_regression_loss,
    logit_adjusted_loss,
    register_loss,
)
from .models import MultiCenterClassifier  # noqa: F401  (re-exported: it lived here)

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
    from .metrics import FeatureStats
    from .metrics._core import _pinv_psd

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
            h = model.features(X[s : s + batch_size].to(dev))
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
        "acc_majority": float(acc[majority].mean()),
        "acc_minority": float(acc[minority].mean()),
        "acc_balanced": float(acc.mean()),
        "cos_W_minority": mean_pairwise_cosine(W, minority),
        "cos_means_minority": mean_pairwise_cosine(stats.centered_means("classes"), minority),
        "nc1": float(m["nc1"]),
        "nc1_majority": float(nc1k[majority].mean()),
        "nc1_minority": float(nc1k[minority].mean()),
        "self_duality": float(m["self_duality"]),
        "train_error": float((ztr.argmax(1) != ytr).double().mean()),
        "train_acc_minority": float(per_class_accuracy(ztr, ytr, K)[minority].mean()),
    }


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


def imbalanced_ufm(
    counts,
    *,
    lam: float = 5e-3,
    lam_H: float | None = None,
    lam_W: float | None = None,
    dim: int | None = None,
    seed: int = 0,
    init: UFMImbalanced | None = None,
    max_iter: int = 5000,
    gtol: float = 1e-10,
) -> UFMImbalanced:
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
    D = K if dim is None else _v.integer(dim, "dim", lo=1)
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
        H, W = x[: K * D].reshape(K, D), x[K * D :].reshape(K, D)
        Z = H @ W.T
        zm = Z.max(1, keepdims=True)
        E = np.exp(Z - zm)
        s = E.sum(1, keepdims=True)
        ce = (np.log(s) + zm)[:, 0] - np.diag(Z)
        val = (p * (ce + 0.5 * lam_H * (H**2).sum(1))).sum() + 0.5 * lam_W * (W**2).sum()
        dZ = p[:, None] * (E / s - eye)
        gH = dZ @ W + lam_H * p[:, None] * H
        gW = dZ.T @ H + lam_W * W
        return val, np.concatenate([gH.ravel(), gW.ravel()])

    r = minimize(
        f, x0, jac=True, method="L-BFGS-B", options=dict(maxiter=int(max_iter), maxcor=30, gtol=gtol, ftol=1e-15)
    )
    H, W = r.x[: K * D].reshape(K, D), r.x[K * D :].reshape(K, D)
    return UFMImbalanced(
        torch.from_numpy(H.copy()),
        torch.from_numpy(W.copy()),
        torch.from_numpy(p),
        float(r.fun),
        int(r.nit),
        float(np.linalg.norm(r.jac)),
    )


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


def long_tail_recipe(
    method: str,
    ratio: float,
    profile: str = "quick",
    *,
    seed: int = 0,
    n_minority: int = 5,
    f_max: int = 8,
    **overrides,
):
    r"""The chapter-6 training configuration for one ``method`` (a key of :data:`METHODS`) at
    imbalance ratio ``ratio`` (step imbalance: the first K − ``n_minority`` classes keep
    :math:`n_{\max}` samples, the rest :math:`\lfloor n_{\max}/R\rfloor`).

    quick: MNIST-1D (4,500 generated training samples → :math:`n_{\max}` = 400, so 4 per minority class
    at R = 100; 1,500 balanced test samples), MLP 3×128 with BatchNorm and a linear projection to
    64-d signed features (``projection=64``; the cosine-based losses need features that can point
    anywhere, which ReLU outputs cannot), SGD momentum 0.9, lr 0.1, cosine schedule, weight decay
    5e-3, batches of about 256 (the training set split into equal-sized batches), 30 epochs (90 for
    ``etf_dr`` and ``multicenter``, whose bounded cosine-type losses need that long to pass zero training
    error). full: CIFAR-10 (:math:`n_{\max}` = 5,000, 50 per minority class at
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
        cfg = TrainConfig(
            data="mnist1d",
            data_kwargs={"n_train": 4500, "n_test": 1500, "seed": 0},
            model="mlp",
            model_kwargs={"width": 128, "depth": 3, "batchnorm": True, "projection": 64},
            lr=0.1,
            momentum=0.9,
            weight_decay=5e-3,
            schedule="cosine",
            epochs=30,
            batch_size=256,
            n_logs=2,
            measure_test=False,
            seed=seed,
        )
    else:
        n_max = 5000
        cfg = TrainConfig(
            data="cifar10",
            data_kwargs={"download": True},
            model="resnet18",
            model_kwargs={"projection": 128},
            lr=0.1,
            momentum=0.9,
            weight_decay=5e-4,
            schedule="cosine",
            epochs=200,
            batch_size=128,
            n_logs=10,
            measure_test=False,
            seed=seed,
        )
    counts = long_tail_counts(K, n_max, ratio, "step", n_minority=n_minority)
    lt = {"kind": "step", "ratio": float(ratio), "n_max": n_max, "n_minority": n_minority, "seed": seed}
    mk = dict(cfg.model_kwargs)
    changes = {
        "data_kwargs": {**cfg.data_kwargs, "long_tail": lt},
        "batch_size": _even_batch_size(sum(counts), cfg.batch_size),
    }
    if method in ("etf_dr", "multicenter") and profile == "quick":
        # the bounded cosine losses fit the minority training examples only after about three times
        # the cross-entropy schedule; the papers train past zero training error, and so do we
        changes["epochs"] = 3 * cfg.epochs
    if method == "etf":
        changes["model_kwargs"] = {**mk, "head": "etf"}
    elif method == "etf_dr":
        changes.update(model_kwargs={**mk, "head": "etf", "normalize": True}, loss="dot_regression")
    elif method == "multicenter":
        changes.update(
            model_kwargs={**mk, "head": "multicenter", "centers": centers_per_class(counts, f_max)},
            loss="multicenter_cosine",
        )
    elif method == "logit_adjusted":
        changes.update(loss="logit_adjusted", loss_kwargs={"counts": counts})
    elif method == "class_balanced":
        changes.update(loss="class_balanced", loss_kwargs={"counts": counts})
    elif method == "la_align":
        changes.update(loss="ce_align", loss_kwargs={"counts": counts, "alpha": 1.0})
    changes.update(overrides)
    return cfg.replace(**changes)
