r"""Does collapse generalise? Run-level measurements of test collapse and of margins.

* :func:`train_test_collapse` — train versus held-out collapse of a trained :class:`~nclib.train.Run`:
  the class-distance normalised variance (CDNV, Galanti et al. 2022) on both splits, test
  accuracy, and NC4 on test data (agreement of the network with the nearest *training* class mean).
* :func:`budget_epochs`, :func:`size_sweep_config`, :data:`SIZES` — training sets of increasing
  size under one SGD-step budget (the experiment of Hui et al. 2022 and the survey's answer).
* :func:`target_loss_config`, :data:`TARGET_SIZES`, :data:`TARGET_LOSS` — Hui et al.'s own
  protocol: every size trained (constant learning rate, no weight decay) until its running
  training loss reaches one common target.
* :func:`margin_trajectory`, :func:`margin_summary` — normalised multiclass margins
  (:func:`nclib.geometry.normalized_margins`) at the epochs a run kept its weights
  (``fit(cfg, keep_states=...)``), as in Banburski et al. (2021).
* :func:`rank_correlation` — Spearman's rank correlation, the monotonicity test of the checks.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch

from . import geometry, metrics
from .features import extract
from .profiles import check_profile, default_device
from .stats import spearman
from .train import Run, TrainConfig, log_epochs, stays_zero_from  # noqa: F401  (re-exported)

__all__ = [
    "SIZES",
    "STEPS",
    "budget_epochs",
    "size_sweep_config",
    "TARGET_SIZES",
    "TARGET_LOSS",
    "target_loss_config",
    "margin_epochs",
    "train_test_collapse",
    "margin_trajectory",
    "margin_summary",
    "rank_correlation",
    "stays_zero_from",
    "run_features",
]

#: training-set sizes of the size sweep (each profile spans 16×)
SIZES = {"quick": (250, 500, 1000, 2000, 4000), "full": (3125, 6250, 12500, 25000, 50000)}
#: the SGD-step budget every size gets
STEPS = {"quick": 1500, "full": 15625}
_POOL = 5000  # quick profile: one MNIST-1D draw of 5,000 samples; the first n train, the rest test


def budget_epochs(n_train: int, batch_size: int, steps: int) -> int:
    """Epochs that give ≈ ``steps`` SGD steps on ``n_train`` samples with :func:`nclib.train.fit`'s
    batching (full batches, plus a trailing batch when it holds ≥ 2 samples); at least 1."""
    for v, name in ((n_train, "n_train"), (batch_size, "batch_size"), (steps, "steps")):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    per_epoch = n_train // batch_size + (1 if n_train % batch_size >= 2 else 0)
    if per_epoch == 0:
        raise ValueError(f"n_train={n_train} gives no training batch of ≥ 2 samples")
    return max(1, round(steps / per_epoch))


def size_sweep_config(profile: str, n_train: int, *, seed: int = 0, steps: int | None = None) -> TrainConfig:
    """The recipe of the size sweep (chapters 2 and 3): the same network, optimiser and SGD-step
    budget for every training-set size, cosine learning-rate decay to 0 so that every size ends
    annealed.

    quick — MNIST-1D: one draw of 5,000 samples (``seed``), the first ``n_train`` for training and
    the remaining ``5000 − n_train`` held out (so training sets are nested and every test set
    comes from the same distribution); MLP 3×128 with BatchNorm; SGD lr 0.05, momentum 0.9,
    weight decay 5e-3, batch 128, 1,500 steps. full — CIFAR-10 (seeded nested subsets of
    ``n_train`` images, the 10,000 test images), ResNet-18, SGD lr 0.05, momentum 0.9, weight
    decay 5e-4, batch 128, 15,625 steps (40 epochs of the full set).
    """
    check_profile(profile)
    steps = STEPS[profile] if steps is None else steps
    if profile == "quick":
        if not isinstance(n_train, int) or not 10 <= n_train <= _POOL - 500:
            raise ValueError(f"quick profile: n_train must be an int in 10..{_POOL - 500}, got {n_train!r}")
        epochs = budget_epochs(n_train, 128, steps)
        return TrainConfig(
            data="mnist1d",
            data_kwargs={"n_train": n_train, "n_test": _POOL - n_train, "seed": seed},
            model="mlp",
            model_kwargs={"width": 128, "depth": 3, "batchnorm": True},
            lr=0.05,
            weight_decay=5e-3,
            schedule="cosine",
            epochs=epochs,
            batch_size=128,
            n_logs=15,
            seed=seed,
        )
    if not isinstance(n_train, int) or not 10 <= n_train <= 50000:
        raise ValueError(f"full profile: n_train must be an int in 10..50000, got {n_train!r}")
    epochs = budget_epochs(n_train, 128, steps)
    return TrainConfig(
        data="cifar10",
        data_kwargs={"download": True, "n_train": n_train, "seed": seed},
        model="resnet18",
        lr=0.05,
        weight_decay=5e-4,
        schedule="cosine",
        epochs=epochs,
        batch_size=128,
        n_logs=15,
        seed=seed,
    )


#: training-set sizes of the train-to-target-loss sweep (quick: 8×, the largest size left out for time)
TARGET_SIZES = {"quick": (250, 500, 1000, 2000), "full": (3125, 6250, 12500, 25000, 50000)}
#: the common training loss every size is trained to (Hui et al. 2022 use 1e-6)
TARGET_LOSS = {"quick": 1e-2, "full": 1e-4}
#: the cap on SGD steps of the target-loss sweep (the run ends earlier when the target is reached)
TARGET_MAX_STEPS = {"quick": 8000, "full": 78125}


def target_loss_config(
    profile: str, n_train: int, *, seed: int = 0, target: float | None = None, max_steps: int | None = None
) -> TrainConfig:
    """Hui, Belkin & Nakkiran's (2022) protocol on the size sweep's data and network: every size
    is trained until its running training loss (mean over an epoch's mini-batches) first reaches
    the common ``target`` (``TrainConfig.target_loss``), with a constant learning rate and no
    weight decay (weight decay would put a floor under the cross-entropy and make a small common
    target unreachable); ``max_steps`` SGD steps is the cap. Everything else — data split,
    network, SGD lr 0.05, momentum 0.9, batch 128, 15 log-spaced measurements — is
    :func:`size_sweep_config`'s.
    """
    check_profile(profile)
    target = TARGET_LOSS[profile] if target is None else target
    max_steps = TARGET_MAX_STEPS[profile] if max_steps is None else max_steps
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 10:
        raise ValueError(f"target must be a loss in (0, 10), got {target!r}")
    base = size_sweep_config(profile, n_train, seed=seed)
    return base.replace(
        schedule="constant",
        weight_decay=0.0,
        epochs=budget_epochs(n_train, base.batch_size, max_steps),
        target_loss=float(target),
    )


def margin_epochs(cfg: TrainConfig, n: int = 24) -> list[int]:
    """The epochs whose weights chapter 3 keeps: epoch 0 and ~n log-spaced epochs to the end."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    return log_epochs(cfg.epochs, n)


def _classifier(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = getattr(model, "classifier", None)
    W = getattr(head, "weight", None)
    if W is None:
        raise TypeError("the model has no linear classifier (model.classifier.weight)")
    b = getattr(head, "bias", None)
    return W.detach().double().cpu(), None if b is None else b.detach().double().cpu()


def _features(model, X, device) -> torch.Tensor:
    """Penultimate features (float64, CPU) computed on ``device`` (default: the best available),
    on a copy of the model when it lives elsewhere (the run's model is left where it is)."""
    dev = default_device(device)
    p = next(model.parameters(), None)
    if p is not None and p.device != dev:
        model = copy.deepcopy(model).to(dev)
    return extract(model, X)


def run_features(run: Run, split: str = "train", *, epoch: int | None = None, device=None):
    """``(features, labels)`` of a split — under the final weights, or those kept at ``epoch`` —
    computed on ``device`` (default: CUDA when available, else the CPU); features float64 on the CPU."""
    if not isinstance(run, Run):
        raise TypeError(f"run must be an nclib.train.Run, got {type(run).__name__}")
    X, y = run.data.tensors(split)
    model = run.model if epoch is None else run.model_at(epoch)
    return _features(model, X, device), y


def _stats(F, y, K) -> metrics.FeatureStats:
    return metrics.FeatureStats(K, F.shape[1], scatter=False).update(F, y)


def train_test_collapse(run: Run, *, device=None) -> dict:
    r"""Train versus test collapse of a trained run (final weights):

    * ``train_cdnv`` / ``test_cdnv`` — :func:`nclib.metrics.cdnv` of the training features and of
      the held-out features, each around its *own* class means: the empirical
      :math:`V_f(S_i,S_j)` and a held-out estimate of the population :math:`V_f(P_i,P_j)` of
      Galanti et al. (2022), averaged over class pairs;
    * ``test_cdnv_train_means`` — the held-out variance measured around the *training* means,
      over the distances of the training means (how tightly unseen data gathers where the
      classifier expects it): :math:`\frac{v_i+v_j}{2\lVert\mu_i-\mu_j\rVert^2}`,
      :math:`v_k=\operatorname{avg}_{\text{test},y=k}\lVert h-\mu_k^{\text{train}}\rVert^2`;
    * ``train_accuracy``, ``test_accuracy``;
    * ``ncc_agreement_test`` — NC4 on unseen data: the fraction of test inputs on which the
      network's prediction equals the nearest training class mean's.

    Features are computed on ``device`` (default: CUDA when available, else the CPU).
    """
    if not isinstance(run, Run):
        raise TypeError(f"run must be an nclib.train.Run, got {type(run).__name__}")
    K = run.data.num_classes
    Xtr, ytr = run.data.tensors("train")
    Xte, yte = run.data.tensors("test")
    Ftr, Fte = _features(run.model, Xtr, device), _features(run.model, Xte, device)
    W, b = _classifier(run.model)
    st_tr, st_te = _stats(Ftr, ytr, K), _stats(Fte, yte, K)
    mu = st_tr.means
    v = torch.zeros(K, dtype=torch.float64).index_add_(0, yte, (Fte - mu[yte]).pow(2).sum(1))
    v = v / torch.bincount(yte, minlength=K).clamp_min(1)
    d2 = (mu[:, None, :] - mu[None, :, :]).pow(2).sum(-1)  # explicit differences: exact as means move
    i, j = torch.triu_indices(K, K, 1)
    logits_tr, logits_te = Ftr @ W.T, Fte @ W.T
    if b is not None:
        logits_tr, logits_te = logits_tr + b, logits_te + b
    return {
        "n_train": len(ytr),
        "n_test": len(yte),
        "train_cdnv": metrics.cdnv(st_tr),
        "test_cdnv": metrics.cdnv(st_te),
        "test_cdnv_train_means": float(((v[i] + v[j]) / (2 * d2[i, j])).mean()),
        "train_accuracy": float((logits_tr.argmax(1) == ytr).double().mean()),
        "test_accuracy": float((logits_te.argmax(1) == yte).double().mean()),
        "ncc_agreement_test": 1.0 - metrics.ncc_mismatch(Fte, W, mu, b),
    }


def margin_trajectory(run: Run, epochs=None, *, split: str = "train", center: bool = True, device=None) -> dict:
    """``{epoch: normalised margins}`` (:func:`nclib.geometry.normalized_margins`, float64 of
    length N) of a split under the weights kept at each epoch (default: all kept epochs);
    features are computed on ``device`` (default: CUDA when available, else the CPU)."""
    if not isinstance(run, Run):
        raise TypeError(f"run must be an nclib.train.Run, got {type(run).__name__}")
    epochs = sorted(run.states) if epochs is None else list(epochs)
    if not epochs:
        raise ValueError("the run kept no model states: train it with fit(cfg, keep_states=...)")
    X, y = run.data.tensors(split)
    out = {}
    for e in epochs:
        model = run.model_at(e)
        H = _features(model, X, device)
        W, b = _classifier(model)
        out[int(e)] = geometry.normalized_margins(W, H, y, b, center=center)
    return out


def margin_summary(trajectory: dict, num_classes: int) -> pd.DataFrame:
    """One row per epoch of a :func:`margin_trajectory`: ``min``, ``q05``, ``median``, ``mean``,
    ``cov`` (std/mean; NaN while the mean margin is ≤ 0), ``min_vs_etf`` and ``median_vs_etf``
    (the margin over :func:`nclib.geometry.etf_margin`), ``negative`` (fraction < 0)."""
    if not isinstance(trajectory, dict) or not trajectory:
        raise ValueError("trajectory must be a non-empty dict {epoch: margins}")
    ref = geometry.etf_margin(num_classes)
    rows = []
    for e, q in sorted(trajectory.items()):
        q = torch.as_tensor(q, dtype=torch.float64)
        mean = float(q.mean())
        rows.append(
            {
                "epoch": int(e),
                "min": float(q.min()),
                "q05": float(torch.quantile(q, 0.05)),
                "median": float(q.median()),
                "mean": mean,
                "cov": float(q.std() / mean) if mean > 0 else math.nan,
                "min_vs_etf": float(q.min()) / ref,
                "median_vs_etf": float(q.median()) / ref,
                "negative": float((q < 0).double().mean()),
            }
        )
    return pd.DataFrame(rows)


rank_correlation = spearman
"""Spearman's rank correlation, computed exactly: :func:`nclib.stats.spearman` itself (+1 when y
rises with x at every step, −1 when it falls)."""
