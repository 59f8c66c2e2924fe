r"""Transfer to unseen classes: frozen features, few-shot nearest-class-mean accuracy, collapse on
new classes, and the geometric complexity of a feature map.

* :func:`features_at` — frozen features of a trained model at its penultimate layer or at any
  named earlier module (conv maps are averaged over space).
* :func:`cdnv_of` — the class-distance normalised variance (Galanti, György & Hutter 2022) of a
  labelled feature set, through :class:`nclib.metrics.FeatureStats` and :func:`nclib.metrics.cdnv`.
* :func:`few_shot_episodes` / :func:`ncc_few_shot` — seeded N-way k-shot episodes classified by
  the nearest class mean of the support set (the transfer protocol of Galanti et al. 2022),
  reported as mean ± 95 % confidence half-width (:func:`mean_ci`); :func:`ridge_few_shot`, a
  linear probe (ridge-regression classifier fitted on each episode's support set) on the same episodes.
* :func:`geometric_complexity` — :math:`\mathrm{GC}(f) = \frac1N\sum_i \lVert\partial f(x_i)/\partial x\rVert_F^2`
  (Dherin et al. 2022; Munn, Dherin & Gonzalvo 2024), exactly by Jacobians or by a
  Hutchinson estimate with random probes.
* :func:`transfer_metrics` — target CDNV and few-shot accuracies of a frozen feature set at once.
* :func:`spearman` — :func:`nclib.stats.spearman` (exact, average ranks for ties), re-exported for the
  chapter's trend checks.
* :func:`source_config` / :func:`target_set` — chapter 5's source-training recipe on l classes
  and its disjoint target classes, per profile (quick: :func:`nclib.data.many_class`; full:
  CIFAR-100, source classes 0–49, target classes 50–99).

Everything that draws takes a ``seed`` and uses a private generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import metrics as metrics_mod
from ._rng import generator
from .features import extract
from .stats import spearman  # noqa: F401  (the exact rank correlation, re-exported)

__all__ = [
    "features_at",
    "cdnv_of",
    "few_shot_episodes",
    "ncc_few_shot",
    "ridge_few_shot",
    "FewShotResult",
    "mean_ci",
    "transfer_metrics",
    "geometric_complexity",
    "spearman",
    "source_config",
    "target_set",
]


# ----------------------------------------------------------------------------- validation
def _tensor(x, name: str, ndim: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    return x


def _labels(labels, n: int | None = None) -> Tensor:
    labels = _tensor(labels, "labels", 1)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if n is not None and labels.shape[0] != n:
        raise ValueError(f"need one label per feature row: {labels.shape[0]} labels for {n} rows")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("labels must be ≥ 0")
    return labels


def _pos_int(v, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {v}")
    return v


# ----------------------------------------------------------------------------- features
@torch.no_grad()
def features_at(model: nn.Module, X: Tensor, layer: str | None = None, *, batch_size: int = 4096) -> Tensor:
    """Frozen features of ``model`` on inputs ``X`` (N×…), as float64 on the CPU (N×D).

    ``layer=None``: the penultimate features ``model.features(x)``. ``layer="name"``: the
    *output* of the submodule of that name (e.g. ``"body.2"``, the first hidden ReLU of an
    :class:`~nclib.models.MLP`, or ``"stages.5"`` of the ResNet-18), captured by a forward hook
    while ``model.features`` runs; outputs with spatial dimensions (N×C×…) are averaged over them
    (global average pooling), others flattened. The model is evaluated in eval mode and restored.
    This is :func:`nclib.features.extract` with ``where="output"``, ``through="features"``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    X = _tensor(X, "X")
    _pos_int(batch_size, "batch_size")
    return extract(model, X, layer, where="output", through="features", pool="mean", batch_size=batch_size)


def cdnv_of(features: Tensor, labels: Tensor) -> float:
    r"""Mean CDNV over the class pairs of a labelled feature set (Galanti et al. 2022):
    :math:`\mathrm{avg}_{i<j}\,(\sigma_i^2+\sigma_j^2)/(2\lVert\mu_i-\mu_j\rVert^2)`.

    Labels may be any non-negative integers (e.g. the ids of unseen classes); they are
    compacted to 0…K−1 first. Computed exactly by :func:`nclib.metrics.cdnv`."""
    features = _tensor(features, "features", 2)
    labels = _labels(labels, features.shape[0])
    classes, y = torch.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes, got {len(classes)}")
    stats = metrics_mod.FeatureStats(len(classes), features.shape[1], scatter=False)
    stats.update(features.double(), y)
    return metrics_mod.cdnv(stats)


# ----------------------------------------------------------------------------- few-shot
def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    r"""Mean and confidence half-width of i.i.d. values: :math:`\bar v \pm z\,s/\sqrt n` with the
    sample standard deviation s (n−1) and the normal quantile z (1.96 for 95 %) — the usual
    report of few-shot accuracy over episodes. A single value has half-width 0."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("need at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not torch.isfinite(v).all():
        raise ValueError("values contain NaN or inf")
    if v.numel() == 1:
        return float(v[0]), 0.0
    z = math.sqrt(2.0) * float(torch.erfinv(torch.tensor(level, dtype=torch.float64)))
    return float(v.mean()), z * float(v.std(unbiased=True)) / math.sqrt(v.numel())


def few_shot_episodes(
    labels: Tensor, *, ways: int, shots: int, queries: int, episodes: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Seeded N-way k-shot episodes: indices ``(support, query)`` of shapes E×N×k and E×N×q.

    Each episode draws ``ways`` distinct classes uniformly among those in ``labels``, then
    ``shots + queries`` distinct samples of each class (support and query never overlap).
    Position n of an episode is its n-th class; every class needs ≥ shots + queries samples."""
    labels = _labels(labels)
    for name, v, lo in (("ways", ways, 2), ("shots", shots, 1), ("queries", queries, 1), ("episodes", episodes, 1)):
        _pos_int(v, name, lo)
    g = generator(seed, allow_generator=False)
    classes, inv, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if ways > len(classes):
        raise ValueError(f"ways={ways} exceeds the {len(classes)} classes available")
    need = shots + queries
    if int(counts.min()) < need:
        raise ValueError(f"every class needs ≥ shots + queries = {need} samples; the smallest has {int(counts.min())}")
    # a C×max-count table of each class's sample indices (padded), then random keys: the
    # `need` smallest keys of a row are a uniform draw without replacement from that class
    order = torch.argsort(inv, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    C, width = len(classes), int(counts.max())
    pos = torch.arange(width)
    table = order[(starts[:, None] + pos.clamp_max(counts[:, None] - 1)).clamp_max(len(order) - 1)]
    pad = pos[None, :] >= counts[:, None]  # C×width
    picks = []
    for s in range(0, episodes, 256):
        e = min(256, episodes - s)
        cls = torch.rand(e, C, generator=g).argsort(1)[:, :ways]  # e×N distinct classes
        keys = torch.rand(e, ways, width, generator=g).masked_fill(pad[cls], 2.0)
        within = keys.argsort(2)[:, :, :need]  # e×N×need distinct positions
        picks.append(torch.gather(table[cls], 2, within))
    picks = torch.cat(picks)
    return picks[:, :, :shots], picks[:, :, shots:]


@dataclass
class FewShotResult:
    """Few-shot accuracy over episodes: ``mean`` ± ``ci`` (half-width at ``level``) and the
    per-episode ``accuracies``."""

    ways: int
    shots: int
    mean: float
    ci: float
    level: float = 0.95
    accuracies: Tensor = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.ways}-way {self.shots}-shot: {self.mean:.3f} ± {self.ci:.3f}"


def _episode_inputs(features, labels, ways, shots, queries, episodes, seed):
    """The validated float64 features and the seeded support/query episodes of a few-shot probe."""
    features = _tensor(features, "features", 2)
    labels = _labels(labels, features.shape[0])
    if not features.dtype.is_floating_point or not torch.isfinite(features).all():
        raise ValueError("features must be finite floating-point values")
    sup, qry = few_shot_episodes(labels, ways=ways, shots=shots, queries=queries, episodes=episodes, seed=seed)
    return features.double(), sup, qry


def ncc_few_shot(
    features: Tensor,
    labels: Tensor,
    *,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    episodes: int = 600,
    seed: int = 0,
    level: float = 0.95,
) -> FewShotResult:
    r"""N-way k-shot accuracy of the nearest-class-mean classifier on frozen features.

    In each episode (:func:`few_shot_episodes`) the class means of the k support samples,
    :math:`\hat\mu_n=\frac1k\sum_s h_{n,s}`, classify each query by
    :math:`\arg\min_n\lVert h-\hat\mu_n\rVert`; the episode's accuracy is the fraction of
    queries labelled with their own class. Returns mean ± confidence half-width over episodes.
    Ties in distance go to the lowest position, which is random because classes are shuffled."""
    F, sup, qry = _episode_inputs(features, labels, ways, shots, queries, episodes, seed)
    accs = []
    for s in range(0, episodes, 64):  # chunks keep E×N×q×D small
        protos = F[sup[s : s + 64]].mean(2)  # E×N×D
        Q = F[qry[s : s + 64]]  # E×N×q×D
        E, N, q, D = Q.shape
        # argmin_n ‖h − μ_n‖² = argmin_n (‖μ_n‖² − 2⟨h, μ_n⟩): one batched product
        score = protos.pow(2).sum(-1).unsqueeze(1) - 2 * torch.bmm(Q.reshape(E, N * q, D), protos.transpose(1, 2))
        pred = score.argmin(-1).reshape(E, N, q)
        accs.append((pred == torch.arange(N).view(1, N, 1)).double().mean((1, 2)))
    acc = torch.cat(accs)
    m, ci = mean_ci(acc, level)
    return FewShotResult(ways, shots, m, ci, level, acc)


def ridge_few_shot(
    features: Tensor,
    labels: Tensor,
    *,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    episodes: int = 600,
    seed: int = 0,
    ridge: float = 1e-2,
    level: float = 0.95,
) -> FewShotResult:
    r"""N-way k-shot accuracy of a **linear probe** on frozen features: a ridge-regression
    classifier fitted to each episode's support set (the same seeded episodes as
    :func:`ncc_few_shot`).

    With the n = N·k support rows centred on their mean :math:`\bar h` (:math:`X_c`, n×D) and
    one-hot targets centred on 1/N (:math:`Y_c`, n×N), the probe is

    .. math:: W=\arg\min_W \lVert X_cW-Y_c\rVert_F^2+\lambda\lVert W\rVert_F^2
              =X_c^\top\big(X_cX_c^\top+\lambda I_n\big)^{-1}Y_c ,
              \qquad \lambda=\texttt{ridge}\cdot\operatorname{tr}(X_cX_c^\top)/n,

    (the dual form: one n×n solve per episode, exact), and a query h is labelled
    :math:`\arg\max_n\,[(h-\bar h)W]_n`. Scaling λ with the mean squared support norm makes the
    probe invariant to a global rescaling of the features. Unlike the nearest class mean, the
    probe weighs feature directions by how they separate the support classes, so coordinates
    with large class-independent spread do not dominate it. No randomness beyond the episodes:
    deterministic under ``seed``. Returns mean ± confidence half-width over episodes."""
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge <= 0:
        raise ValueError(f"ridge must be a positive finite number, got {ridge!r}")
    F, sup, qry = _episode_inputs(features, labels, ways, shots, queries, episodes, seed)
    N = ways
    onehot = torch.eye(N, dtype=torch.float64).repeat_interleave(shots, 0) - 1.0 / N  # n×N, centred
    accs = []
    for s in range(0, episodes, 64):
        S = F[sup[s : s + 64]].flatten(1, 2)  # E×n×D, rows grouped by position n
        Q = F[qry[s : s + 64]]  # E×N×q×D
        E, _, q, D = Q.shape
        centre = S.mean(1, keepdim=True)
        Xc = S - centre
        K = torch.bmm(Xc, Xc.transpose(1, 2))  # E×n×n
        lam = ridge * K.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-300)  # E
        A = torch.linalg.solve(K + lam[:, None, None] * torch.eye(K.shape[1], dtype=K.dtype), onehot.expand(E, -1, -1))
        W = torch.bmm(Xc.transpose(1, 2), A)  # E×D×N
        score = torch.bmm(Q.reshape(E, N * q, D) - centre, W)
        pred = score.argmax(-1).reshape(E, N, q)
        accs.append((pred == torch.arange(N).view(1, N, 1)).double().mean((1, 2)))
    acc = torch.cat(accs)
    m, ci = mean_ci(acc, level)
    return FewShotResult(ways, shots, m, ci, level, acc)


def transfer_metrics(
    features: Tensor,
    labels: Tensor,
    *,
    ways: int = 20,
    shots=(1, 5),
    queries: int = 15,
    episodes: int = 300,
    seed: int = 0,
) -> dict:
    """Target collapse and few-shot transfer of frozen features in one dict:
    ``{"cdnv": …, "fs1": mean, "fs1_ci": half-width, "fs5": …, …}`` — CDNV over all classes of
    ``labels`` (:func:`cdnv_of`) and ``ways``-way k-shot nearest-class-mean accuracy for each k in
    ``shots`` (:func:`ncc_few_shot`, the same seeded episodes for every feature set)."""
    out = {"cdnv": cdnv_of(features, labels)}
    for k in shots:
        r = ncc_few_shot(features, labels, ways=ways, shots=k, queries=queries, episodes=episodes, seed=seed)
        out[f"fs{k}"], out[f"fs{k}_ci"] = r.mean, r.ci
    return out


# ----------------------------------------------------------------------------- geometric complexity
def geometric_complexity(fn, X: Tensor, *, batch_size: int = 256, probes: int | None = None, seed: int = 0) -> float:
    r"""Geometric complexity of a feature map on inputs ``X`` (Dherin et al. 2022; Munn, Dherin
    & Gonzalvo 2024): the mean squared Frobenius norm of its input Jacobian,

    .. math:: \mathrm{GC}(f; X) = \frac1N\sum_{i=1}^N \Big\lVert \frac{\partial f}{\partial x}(x_i)\Big\rVert_F^2 .

    ``fn`` maps a batch (B×…) to features (B×D) sample by sample — e.g. ``model.features`` of a
    model in eval mode (an ``nn.Module`` passed here is put in eval mode for the computation;
    BatchNorm in training mode would couple the samples of a batch; inputs go to the module's
    device). ``probes=None`` computes
    every Jacobian exactly, row by row (D vector–Jacobian products per batch); ``probes=k``
    uses Hutchinson's unbiased estimate :math:`\lVert J\rVert_F^2=\mathbb E_v\lVert v^\top J\rVert^2`,
    :math:`v\sim\mathcal N(0,I_D)`, with k seeded probes per sample — k vector–Jacobian products
    instead of D, for large models. For a linear map :math:`f(x)=Ax` the value is
    :math:`\lVert A\rVert_F^2`. Evaluate on a subsample: the cost is N·D backward passes."""
    X = _tensor(X, "X")
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty batch (N×…), got shape {tuple(X.shape)}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _pos_int(batch_size, "batch_size")
    if probes is not None:
        _pos_int(probes, "probes")
    g = generator(seed, allow_generator=False)
    if not X.dtype.is_floating_point:
        raise TypeError(f"X must be floating point, got {X.dtype}")
    module = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    module = module if isinstance(module, nn.Module) else None
    was = module.training if module is not None else None
    if module is not None:
        module.eval()
    p0 = next(module.parameters(), None) if module is not None else None
    dev = p0.device if p0 is not None else X.device
    try:
        total = 0.0
        for s in range(0, X.shape[0], batch_size):
            xb = X[s : s + batch_size].detach().to(dev).clone().requires_grad_(True)
            with torch.enable_grad():
                out = fn(xb)
                if out.ndim != 2 or out.shape[0] != xb.shape[0]:
                    raise ValueError(f"fn must map a batch to N×D features, got shape {tuple(out.shape)}")
                # samples are independent, so the gradient of Σ_b ⟨v_b, f(x_b)⟩ w.r.t. x_b is v_bᵀJ(x_b)
                n_dirs = out.shape[1] if probes is None else probes
                for j in range(n_dirs):
                    if probes is None:  # exact: the D rows of every Jacobian
                        v = torch.zeros_like(out)
                        v[:, j] = 1.0
                    else:  # Hutchinson: Gaussian probes
                        v = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out)
                    (gx,) = torch.autograd.grad(out, xb, grad_outputs=v, retain_graph=j < n_dirs - 1)
                    total += float(gx.detach().double().pow(2).sum()) / (1 if probes is None else probes)
        return total / X.shape[0]
    finally:
        if module is not None:
            module.train(was)


# ----------------------------------------------------------------------------- the chapter's recipe
TARGET_OFFSET = 10_000  # many_class ids of the target classes: far from any source id used here
CIFAR100_SOURCE, CIFAR100_TARGET = tuple(range(50)), tuple(range(50, 100))


def source_config(profile: str, num_classes: int, *, n_per_class: int | None = None, seed: int = 0, **overrides):
    """The source-training run of chapter 5 on ``num_classes`` = l source classes.

    quick: :func:`nclib.data.many_class` classes 0…l−1 (``n_per_class`` training samples each,
    default 50; 20 test samples each), an MLP with three hidden layers of 256 units and
    BatchNorm, SGD (momentum 0.9, lr 0.05, cosine schedule, weight decay 5e-4), batch 128,
    30 epochs. full: CIFAR-100 classes 0…l−1 (l ≤ 50; ``n_per_class`` ≈ images per class, drawn
    as a random subset of about 100·n images of the whole training set; default all 500), a
    CIFAR ResNet-18, the same optimiser for 100 epochs. ``overrides`` replace config fields."""
    from .profiles import check_profile
    from .train import TrainConfig

    check_profile(profile)
    _pos_int(num_classes, "num_classes", 2)
    if n_per_class is not None:
        _pos_int(n_per_class, "n_per_class")
    if profile == "quick":
        cfg = TrainConfig(
            data="many_class",
            data_kwargs={
                "num_classes": num_classes,
                "n_per_class": n_per_class or 50,
                "n_test_per_class": 20,
                "seed": seed,
            },
            model="mlp",
            model_kwargs={"width": 256, "depth": 3, "batchnorm": True},
            lr=0.05,
            weight_decay=5e-4,
            schedule="cosine",
            epochs=30,
            batch_size=128,
            n_logs=2,
            seed=seed,
        )
    else:
        if num_classes > len(CIFAR100_SOURCE):
            raise ValueError(f"the CIFAR-100 source half has {len(CIFAR100_SOURCE)} classes, asked for {num_classes}")
        dk = {"classes": list(CIFAR100_SOURCE[:num_classes]), "download": True, "seed": seed}
        if n_per_class is not None:
            dk["n_train"] = 100 * n_per_class
        cfg = TrainConfig(
            data="cifar100",
            data_kwargs=dk,
            model="resnet18",
            lr=0.05,
            weight_decay=5e-4,
            schedule="cosine",
            epochs=100,
            batch_size=128,
            n_logs=10,
            seed=seed,
        )
    return cfg.replace(**overrides) if overrides else cfg


def target_set(profile: str, *, seed: int = 0, num_classes: int = 100, n_per_class: int = 20) -> tuple[Tensor, Tensor]:
    """Inputs and labels (0…K−1) of the unseen target classes of chapter 5.

    quick: ``num_classes`` classes of :func:`nclib.data.many_class` with ids from
    ``TARGET_OFFSET`` on — the same generator (same ``seed``) as the source classes, disjoint ids;
    ``n_per_class`` samples each. full: the CIFAR-100 *test* images of classes 50–99 (100 each;
    the arguments other than ``seed`` are ignored)."""
    from . import data as data_mod
    from .profiles import check_profile

    check_profile(profile)
    if profile == "quick":
        d = data_mod.many_class(num_classes, n_per_class, 1, class_offset=TARGET_OFFSET, seed=seed)
        return d.tensors("train")
    d = data_mod.load("cifar100", classes=list(CIFAR100_TARGET), download=True)
    return d.tensors("test")
