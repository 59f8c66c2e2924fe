"""The training loop every chapter uses: config in, :class:`Run` out.

``fit(cfg)`` trains ``models.build(...)`` on ``data.load(...)`` with SGD/Adam, logs NC metrics at
log-spaced epochs (as Papyan et al. 2020) into a pandas DataFrame, keeps small per-epoch
snapshots (class means and classifier) for figures, writes atomic checkpoints that resume to the
same result, and caches finished runs keyed by the config and the nclib version, so the book build
and the tests never train the same configuration twice (both use ``$NCLIB_CACHE``).

Determinism: on the CPU, a config and its ``seed`` determine the result bit for bit — the
initialisation is drawn under a forked RNG seeded by ``seed`` and each epoch's batch order from a
generator seeded by ``(seed, epoch)``, so a resumed run replays exactly the same batches.

Distributed: launched under ``torchrun``, ``fit`` wraps the model in DistributedDataParallel,
gives each rank a disjoint shard of every batch (batch_size/world samples), measures collapse on
per-rank shards merged through :meth:`FeatureStats.sync`, and only rank 0 writes checkpoints
and the cache.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from . import data as data_mod
from . import metrics as metrics_mod
from . import models as models_mod
from .losses import LOSSES
from .profiles import check_profile, default_device

__all__ = ["TrainConfig", "Run", "fit", "fit_many", "library_fingerprint", "module_closure", "log_epochs", "cache_dir", "atomic_save", "recipe", "resolve_profile", "features_of"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and its cache key).

    ``data_kwargs``/``model_kwargs`` go to :func:`nclib.data.load` / :func:`nclib.models.build`.
    ``schedule``: ``"step"`` (×``gamma`` at ``milestones``), ``"cosine"`` or ``"constant"``.
    ``n_logs`` log-spaced epochs (plus epoch 0) are measured; ``measure_test`` also measures
    NC on the test split. ``loss``: ``"ce"``, ``"mse"`` (one-hot targets) or ``"mcr2"``.

    ``loss="mcr2"`` trains the feature map alone with the MCR² objective
    (:class:`nclib.losses.MCR2Loss`, ε = ``mcr2_eps``, default ε² = 0.5, on the L2-normalised
    ``model.features``; Yu, Chan et al. 2020) — the classifier head is left out of the optimiser.
    Its NC metrics are measured on the normalised features, and ``train_error``/``test_error``
    (and ``val_error``) are those of a :class:`nclib.evaluation.NearestSubspace` classifier with
    ``mcr2_components`` directions per class fitted on the (possibly noisy) training labels, as
    the MCR² authors evaluate. ``val_size`` > 0 holds out that many training samples (seeded by
    ``seed``, *before* any label noise, so their labels are clean) as a validation split whose
    error is logged as ``val_error`` (for early stopping); for ``"ce"``/``"mse"`` the per-epoch
    ``curve`` then also records ``val_error`` and ``test_error`` at every epoch. ``log_rates=True`` (always on for
    ``"mcr2"``) also logs, on the L2-normalised training features, the coding rates ``rate`` R
    and ``rate_c`` R_c of MCR², the class-conditional rate ``rate_within`` (R_c of the features
    minus their class means), ``class_rank`` (mean per-class participation ratio around the
    global mean; :func:`nclib.evaluation.class_ranks`) and ``label_info`` (plug-in mutual
    information, in nats, between the nearest-class-mean decision and the training label;
    :func:`nclib.evaluation.label_information`).
    Any other ``loss`` is looked up in the registry :data:`nclib.losses.LOSSES` (e.g.
    ``"logit_adjusted"``, ``"class_balanced"``, ``"dot_regression"``, ``"multicenter_cosine"``,
    ``"ce_align"``) and called with the logits, the labels, K, the penultimate features (captured
    at the classifier's input when the loss needs them), the classifier module and ``loss_kwargs``.
    New fields at their defaults leave :meth:`key` (and so existing cached runs) unchanged.
    """

    data: str = "mnist1d"
    data_kwargs: dict = field(default_factory=dict)
    model: str = "mlp"
    model_kwargs: dict = field(default_factory=dict)
    loss: str = "ce"
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"
    milestones: tuple = ()
    gamma: float = 0.1
    epochs: int = 100
    batch_size: int = 128
    seed: int = 0
    n_logs: int = 30
    measure_test: bool = True
    label_noise: float = 0.0
    mcr2_eps: float = math.sqrt(0.5)
    mcr2_components: int = 20
    val_size: int = 0
    log_rates: bool = False
    loss_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.loss not in _BUILTIN_LOSSES and self.loss not in _registered_losses():
            raise ValueError(f"loss must be 'ce', 'mse', 'mcr2' or a loss registered in nclib.losses.LOSSES "
                             f"({sorted(_registered_losses())}), got {self.loss!r}")
        if not isinstance(self.loss_kwargs, dict):
            raise TypeError(f"loss_kwargs must be a dict, got {type(self.loss_kwargs).__name__}")
        if self.loss_kwargs and self.loss in _BUILTIN_LOSSES:
            raise ValueError(f"loss_kwargs are for registered losses; loss={self.loss!r} takes none")
        if not (isinstance(self.mcr2_eps, (int, float)) and not isinstance(self.mcr2_eps, bool)
                and math.isfinite(self.mcr2_eps) and self.mcr2_eps > 0):
            raise ValueError(f"mcr2_eps must be a positive number, got {self.mcr2_eps!r}")
        for name, lo in (("mcr2_components", 1), ("val_size", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an int ≥ {lo}, got {v!r}")
        if not isinstance(self.log_rates, bool):
            raise TypeError(f"log_rates must be a bool, got {type(self.log_rates).__name__}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"schedule must be 'step', 'cosine' or 'constant', got {self.schedule!r}")
        for name in ("epochs", "batch_size", "n_logs"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.momentum < 1):
            raise ValueError(f"need lr > 0, weight_decay ≥ 0, 0 ≤ momentum < 1; got {self.lr}, {self.weight_decay}, {self.momentum}")
        if not 0 <= self.label_noise < 1:
            raise ValueError(f"label_noise must be in [0, 1), got {self.label_noise}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Cache key: sha256 of the config's non-default fields and :func:`library_fingerprint`
        (nclib's source, torch version, numerics). Fields at their default value are left out."""
        changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if getattr(self, f.name) != (f.default if f.default is not dataclasses.MISSING else f.default_factory())}
        blob = json.dumps({"config": changed, "nclib": library_fingerprint()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@dataclass
class Run:
    """A finished run: the config, the metric history (one row per logged epoch), snapshots
    (``{epoch: {"means": K×D, "W": K×D, "b": K}}``), the trained model (eval mode, CPU), the data,
    and ``curve`` — one row per epoch with the learning rate, the mean training loss and the
    running training error (mistakes on the mini-batches as they were trained, free to record)."""

    config: TrainConfig
    history: pd.DataFrame
    snapshots: dict
    model: nn.Module
    data: data_mod.Data
    curve: pd.DataFrame = None
    from_cache: bool = False
    seconds: float = 0.0
    states: dict = field(default_factory=dict)  # {epoch: model state_dict}, kept by fit(keep_states=...)

    def model_at(self, epoch: int) -> nn.Module:
        """A copy of the model (eval mode, CPU) with the weights it had at the end of ``epoch``
        (0: at initialisation) — only for epochs kept with ``fit(cfg, keep_states=...)``."""
        if epoch not in self.states:
            raise KeyError(f"no model state kept for epoch {epoch!r}; kept: {sorted(self.states)} "
                           f"(ask fit(cfg, keep_states=(...)) for it)")
        m = copy.deepcopy(self.model).cpu()
        m.load_state_dict(self.states[epoch])
        return m.eval()

    def features_at(self, epoch: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features (float64) and labels of a split under the weights of ``epoch``."""
        X, y = self.data.tensors(split)
        return features_of(self.model_at(epoch), X), y

    @property
    def tpt_start(self) -> int | None:
        """First epoch of the terminal phase of training: the epoch from which on no training
        mini-batch was ever misclassified again (the running error of ``curve`` stays 0 to the
        end), or None when training ends with errors. A lucky error-free epoch followed by
        mistakes does not count."""
        err = self.curve["train_error_running"].to_numpy()
        if len(err) == 0 or err[-1] != 0:
            return None
        nonzero = np.flatnonzero(err != 0)
        first = 0 if len(nonzero) == 0 else nonzero[-1] + 1
        return int(self.curve["epoch"].iloc[first])

    @property
    def final(self) -> pd.Series:
        """The last logged row of the history."""
        return self.history.iloc[-1]

    def features(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features (N×D, float64) and labels of a split, from the trained model."""
        X, y = self.data.tensors(split)
        return features_of(self.model, X), y


def library_fingerprint(module: str = "train") -> str:
    """What a cached result depends on besides its config: the source of the nclib modules that
    ``nclib.<module>`` imports, directly or not (found by reading their ``from . import``
    statements, imports inside functions included: :func:`module_closure`), the torch version,
    and the numerics of this process — ``$ATEN_CPU_CAPABILITY``, ``$MKL_ENABLE_INSTRUCTIONS`` and
    the number of torch threads, which change the float rounding. A changed library, or a run
    under other numerics, never reads a result trained by another; editing a module training does
    not import (e.g. ``ufm``, ``claims``) keeps the cached runs."""
    return _source_hash(module) + "|" + json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                                    "aten": os.environ.get("ATEN_CPU_CAPABILITY", ""),
                                                    "mkl": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "")},
                                                   sort_keys=True)


def module_closure(module: str) -> list[str]:
    """The nclib modules (file stems; ``__init__`` for the package) that ``nclib.<module>``
    depends on through relative imports, itself included, sorted."""
    import ast

    root = Path(__file__).resolve().parent
    known = {p.stem for p in root.glob("*.py")}
    if module not in known:
        raise ValueError(f"no module nclib.{module}")
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for node in ast.walk(ast.parse((root / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    todo.append(node.module.split(".")[0])
                else:
                    todo += [a.name if a.name in known else "__init__" for a in node.names]
    return sorted(seen & known)


@functools.lru_cache(maxsize=None)
def _source_hash(module: str = "train") -> str:
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for m in module_closure(module):
        h.update(m.encode() + b"\0" + (root / f"{m}.py").read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """``$NCLIB_CACHE`` or ``~/.cache/nclib`` — shared by the book build and the tests."""
    return Path(os.environ.get("NCLIB_CACHE", Path.home() / ".cache" / "nclib"))


def atomic_save(obj, path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def log_epochs(epochs: int, n: int) -> list[int]:
    """Epoch 0 and ~n log-spaced epochs in 1..epochs (always including the last)."""
    pts = np.unique(np.round(np.geomspace(1, epochs, max(n, 2))).astype(int))
    return sorted({0, *pts.tolist(), epochs})


@torch.no_grad()
def features_of(model: nn.Module, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """``model.features`` on X in eval mode, batched, as float64 on the CPU."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = [model.features(X[s:s + batch_size].to(dev)).double().cpu() for s in range(0, len(X), batch_size)]
    model.train(was)
    return torch.cat(out)


# ----------------------------------------------------------------------------- internals
def _dist():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _hold_out(d: data_mod.Data, n_val: int, seed: int) -> data_mod.Data:
    """Move ``n_val`` training samples (a seeded random choice) into ``info["val"]`` (a Dataset)."""
    n = len(d.train)
    if not 0 < n_val < n:
        raise ValueError(f"val_size must be between 1 and the training-set size − 1 ({n - 1}), got {n_val}")
    g = torch.Generator()
    g.manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    va, tr = perm[:n_val].sort().values, perm[n_val:].sort().values
    if isinstance(d.train, torch.utils.data.TensorDataset):
        ts = d.train.tensors
        train = torch.utils.data.TensorDataset(*(t[tr] for t in ts))
        val = torch.utils.data.TensorDataset(*(t[va] for t in ts))
    else:
        train, val = torch.utils.data.Subset(d.train, tr.tolist()), torch.utils.data.Subset(d.train, va.tolist())
    return data_mod.Data(d.name, train, d.test, d.num_classes, d.input_shape, {**d.info, "val": val})


def _val_tensors(d: data_mod.Data):
    """(X, y) of the held-out validation split, or (None, None)."""
    val = d.info.get("val")
    if val is None:
        return None, None
    if isinstance(val, torch.utils.data.TensorDataset):
        return val.tensors[0], val.tensors[1]
    xs, ys = zip(*(val[i] for i in range(len(val))))
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys, dtype=torch.long)


def _load_data(cfg: TrainConfig) -> data_mod.Data:
    d = data_mod.load(cfg.data, **cfg.data_kwargs)
    if cfg.val_size > 0:
        d = _hold_out(d, cfg.val_size, cfg.seed)
    if cfg.label_noise > 0:
        from .noise import with_label_noise

        d = with_label_noise(d, cfg.label_noise, seed=cfg.seed)
    return d


def _build_model(cfg: TrainConfig, d: data_mod.Data) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return models_mod.build(cfg.model, d.input_shape, d.num_classes, seed=cfg.seed, **cfg.model_kwargs)


def _optimizer(cfg: TrainConfig, model: nn.Module):
    # MCR² trains the feature map only: the classifier head is not optimised (it stays at its init)
    params = [p for n, p in model.named_parameters()
              if p.requires_grad and not (cfg.loss == "mcr2" and n.startswith("classifier."))]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "step":
        sch = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    elif cfg.schedule == "cosine":
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    else:
        sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    return opt, sch


_BUILTIN_LOSSES = ("ce", "mse", "mcr2")


def _registered_losses() -> dict:
    """The named extra losses (:data:`nclib.losses.LOSSES`)."""
    return LOSSES


def _loss(cfg: TrainConfig, logits, y, K, features=None, classifier=None):
    if cfg.loss == "ce":
        return F.cross_entropy(logits, y)
    if cfg.loss == "mse":
        return 0.5 * (logits - F.one_hot(y, K).to(logits.dtype)).pow(2).sum(1).mean()
    spec = _registered_losses()[cfg.loss]
    return spec.fn(logits, y, K, features=features, classifier=classifier, **cfg.loss_kwargs)


class _FeatureMap(nn.Module):
    """``model.features`` as a module's forward (so DDP can wrap the feature map alone)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.features(x)


def _normalized_features(model, X) -> torch.Tensor:
    return F.normalize(features_of(model, X), dim=1)


def _representation_rates(Z, y, K, eps) -> dict:
    """Coding rates and per-class rank of L2-normalised features Z (see TrainConfig)."""
    from .evaluation import class_ranks, label_information
    from .losses import coding_rate_per_class, rate_reduction

    rr = rate_reduction(Z, y, eps, K)
    means = torch.zeros(K, Z.shape[1], dtype=Z.dtype).index_add_(0, y, Z) / torch.bincount(y, minlength=K).clamp_min(1)[:, None]
    within = coding_rate_per_class(Z - means[y], y, eps, K)
    ranks = class_ranks(Z, y, K, measure="pr", center="global")
    ncc = torch.cdist(Z, means).argmin(1)
    return {"rate": float(rr.r), "rate_c": float(rr.r_c), "rate_within": float(within),
            "class_rank": float(torch.nanmean(ranks)), "label_info": label_information(ncc, y, K)}


def _tensor_batches(X, y, batch_size):
    return [(X[s:s + batch_size], y[s:s + batch_size]) for s in range(0, len(X), batch_size)]


def _measure_split(model, X, y, K, *, rank, world, device, prefix=""):
    """NC metrics + error of one split (sharded across ranks; statistics synced)."""
    Xs, ys = X[rank::world].to(device), y[rank::world].to(device)
    m = metrics_mod.measure(model, _tensor_batches(Xs, ys, 4096), num_classes=K, device=device)
    out = {f"{prefix}{k}": v for k, v in m.metrics.items() if k not in ("n", "accuracy")}
    out[f"{prefix}error"] = 1.0 - m.metrics["accuracy"]
    return out, m.stats


@torch.no_grad()
def _error_of(model, X, y) -> float:
    """Error of the model's own predictions (argmax of the logits) on (X, y)."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    wrong = sum(int((model(X[s:s + 4096].to(dev)).argmax(1).cpu() != y[s:s + 4096]).sum())
                for s in range(0, len(X), 4096))
    model.train(was)
    return wrong / len(X)


def _log_mcr2(row, cfg, model, train, test, val, K) -> metrics_mod.FeatureStats:
    """Fill ``row`` for an MCR² run: NC metrics of the L2-normalised features (no classifier),
    nearest-subspace errors (fitted on the training labels), coding rates and class ranks."""
    from .evaluation import NearestSubspace

    (Xtr, ytr), (Xte, yte), (Xva, yva) = train, test, val
    Ztr = _normalized_features(model, Xtr)
    m = metrics_mod.measure_features(Ztr, ytr, num_classes=K)
    row.update({k: v for k, v in m.metrics.items() if k != "n"})
    ns = NearestSubspace(cfg.mcr2_components).fit(Ztr, ytr, K)
    row["train_error"] = 1.0 - ns.score(Ztr, ytr)
    Zte = _normalized_features(model, Xte)
    row["test_error"] = 1.0 - ns.score(Zte, yte)
    if cfg.measure_test:
        mt = metrics_mod.measure_features(Zte, yte, num_classes=K)
        row.update({f"test_{k}": v for k, v in mt.metrics.items() if k != "n"})
    if Xva is not None:
        row["val_error"] = 1.0 - ns.score(_normalized_features(model, Xva), yva)
    row.update(_representation_rates(Ztr, ytr, K, cfg.mcr2_eps))
    model.train()
    return m.stats


def _snapshot(stats: metrics_mod.FeatureStats, model) -> dict:
    W = model.classifier.weight.detach().double().cpu().clone()
    b = getattr(model.classifier, "bias", None)
    return {"means": stats.means.cpu().clone(), "W": W,
            "b": b.detach().double().cpu().clone() if b is not None else torch.zeros(W.shape[0], dtype=torch.float64)}


def _check_keep_states(keep_states, epochs: int) -> set:
    """``fit(keep_states=...)`` as a set of epochs in 0..epochs (ValueError/TypeError otherwise)."""
    if isinstance(keep_states, (str, bytes)) or not hasattr(keep_states, "__iter__"):
        raise TypeError(f"keep_states must be an iterable of epochs, got {type(keep_states).__name__}")
    out = set()
    for e in keep_states:
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
            raise TypeError(f"keep_states must hold int epochs, got {e!r}")
        if not 0 <= int(e) <= epochs:
            raise ValueError(f"keep_states epoch {int(e)} is outside 0..{epochs}")
        out.add(int(e))
    return out


def _pbar(total, enabled, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)


# ----------------------------------------------------------------------------- fit
def fit(cfg: TrainConfig, *, cache: bool = True, progress: bool = True, device=None, checkpoint_every: int = 10,
        stop_after: int | None = None, root: str | Path | None = None, keep_states=()) -> Run:
    """Train (or load from the results cache) the run described by ``cfg``.

    ``keep_states`` (epochs, 0 = initialisation) stores the model's state_dict at the end of
    those epochs in ``Run.states`` (and in the cache), so features at intermediate epochs can
    be recomputed (``Run.features_at``). It is not part of the cache key: a cached run that
    lacks a requested state is trained again (same result on the CPU) to record it.

    ``checkpoint_every`` epochs a checkpoint is written atomically to the run's cache folder;
    calling ``fit`` again with the same config resumes from it and ends at the same result.
    ``stop_after=e`` trains only through epoch e and returns ``None`` (the checkpoint stays) —
    a way to split long runs. ``cache=False`` neither reads nor writes the cache/checkpoints.
    ``root`` overrides the cache folder (default :func:`cache_dir`).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    t0 = time.perf_counter()
    rank, world = _dist()
    if cfg.loss == "mcr2" and world > 1:
        raise NotImplementedError("loss='mcr2' is single-process only: its log-determinants do not split "
                                  "over per-rank shards of a batch")
    run_dir = Path(root or cache_dir()) / "runs" / cfg.key()
    result_path, ckpt_path = run_dir / "result.pt", run_dir / "ckpt.pt"
    d = _load_data(cfg)
    K = d.num_classes
    model = _build_model(cfg, d)
    keep = _check_keep_states(keep_states, cfg.epochs)
    if cache and result_path.exists():
        res = torch.load(result_path, map_location="cpu", weights_only=True)
        if keep <= set(res.get("states", {})):
            model.load_state_dict(res["model"])
            model.eval()
            return Run(cfg, pd.DataFrame(res["history"]), res["snapshots"], model, d, pd.DataFrame(res["curve"]),
                       from_cache=True, seconds=time.perf_counter() - t0, states=res.get("states", {}))
        keep |= set(res.get("states", {}))
        print(f"[nclib] the cached run {cfg.key()} lacks the model states of epochs "
              f"{sorted(keep - set(res.get('states', {})))}; training it again to keep them")

    dev = default_device(device)
    model.to(dev)
    opt, sch = _optimizer(cfg, model)
    rows, snaps, curve, start, states = [], {}, [], 0, {}
    if cache and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sch.load_state_dict(ck["scheduler"])
        rows, snaps, curve, start = ck["rows"], ck["snapshots"], ck["curve"], ck["epoch"] + 1
        states = ck.get("states", {})
        if keep - set(states) - set(range(start, cfg.epochs + 1)):  # a wanted state passed before this checkpoint
            rows, snaps, curve, start, states = [], {}, [], 0, {}
            model = _build_model(cfg, d).to(dev)
            opt, sch = _optimizer(cfg, model)

    def keep_state(epoch):
        if epoch in keep:
            states[epoch] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    mcr2 = cfg.loss == "mcr2"
    net = _FeatureMap(model) if mcr2 else model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net)
    mcr2_loss = None
    if mcr2:
        from .losses import MCR2Loss

        mcr2_loss = MCR2Loss(K, eps=cfg.mcr2_eps, normalize=True)

    Xtr, ytr = d.tensors("train")
    Xte, yte = d.tensors("test")
    Xva, yva = _val_tensors(d)
    Xtr_d, ytr_d = Xtr.to(dev), ytr.to(dev)
    logged = set(log_epochs(cfg.epochs, cfg.n_logs))
    # registered losses that need the penultimate features get them from the classifier's input
    captured, hook = {}, None
    if cfg.loss not in _BUILTIN_LOSSES and _registered_losses()[cfg.loss].needs_features:
        hook = model.classifier.register_forward_hook(lambda mod, inp, out: captured.__setitem__("h", inp[0]))
    # a head that learns from the labels (``uses_labels = True``, e.g. models.NearestETFGuidedClassifier)
    # is called as ``classifier(h, labels)`` on training batches; measurement calls it without labels
    batch_labels, label_hook = {}, None
    if getattr(model.classifier, "uses_labels", False):
        label_hook = model.classifier.register_forward_pre_hook(
            lambda mod, args: (*args, batch_labels["y"]) if "y" in batch_labels and len(args) == 1 else None)

    def log(epoch, train_loss, lr):
        # lr: the learning rate used during this epoch (the scheduler has already stepped)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss}
        if mcr2:
            stats = _log_mcr2(row, cfg, model, (Xtr, ytr), (Xte, yte), (Xva, yva), K)
        else:
            tr, stats = _measure_split(model, Xtr, ytr, K, rank=rank, world=world, device=dev)
            row.update(tr)
            row["train_error"] = row.pop("error")
            te, _ = _measure_split(model, Xte, yte, K, rank=rank, world=world, device=dev, prefix="test_")
            row["test_error"] = te["test_error"]
            if cfg.measure_test:
                row.update(te)
            if Xva is not None:
                row["val_error"] = _error_of(model, Xva, yva)
            if cfg.log_rates:
                row.update(_representation_rates(_normalized_features(model, Xtr), ytr, K, cfg.mcr2_eps))
        rows.append(row)
        snaps[epoch] = _snapshot(stats, model)
        model.train()

    bar = _pbar(cfg.epochs, progress and rank == 0, f"fit {cfg.model}/{cfg.data}")
    bar.update(start)
    if start == 0 and 0 in logged:
        log(0, float("nan"), opt.param_groups[0]["lr"])
    if start == 0:
        keep_state(0)
    for epoch in range(max(start, 1), cfg.epochs + 1):
        model.train()
        g = torch.Generator()
        g.manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(Xtr), generator=g).to(dev)
        n_full = len(perm) // cfg.batch_size * cfg.batch_size
        # a trailing batch of < 2 samples (per rank) would break BatchNorm: fold it away
        stops = list(range(0, n_full, cfg.batch_size))
        if len(perm) - n_full >= 2 * world:
            stops.append(n_full)
        tot, cnt, wrong = 0.0, 0, 0
        lr = opt.param_groups[0]["lr"]
        for s in stops:
            idx = perm[s:s + cfg.batch_size][rank::world] if world > 1 else perm[s:s + cfg.batch_size]
            xb, yb = Xtr_d[idx], ytr_d[idx]
            if label_hook is not None:
                batch_labels["y"] = yb
            out = net(xb)
            batch_labels.clear()
            loss = mcr2_loss(out, yb) if mcr2 else _loss(cfg, out, yb, K, captured.pop("h", None), model.classifier)
            opt.zero_grad(set_to_none=True)
            if world > 1:  # DDP averages the ranks' gradients: weight each rank by its share of the
                # batch, so an uneven split (the trailing batch) still gives the batch-mean gradient
                (loss * (len(idx) * world / len(perm[s:s + cfg.batch_size]))).backward()
            else:
                loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            cnt += len(idx)
            # MCR² has no logits during training: its running error is undefined (nan)
            wrong += 0 if mcr2 else int((out.detach().argmax(1) != yb).sum())
        if world > 1:
            import torch.distributed as dist

            red = torch.tensor([tot, cnt, wrong], dtype=torch.float64, device=dev)
            dist.all_reduce(red)
            tot, cnt, wrong = float(red[0]), int(red[1]), int(red[2])
        curve.append({"epoch": epoch, "lr": lr, "train_loss": tot / max(cnt, 1),
                      "train_error_running": math.nan if mcr2 else wrong / max(cnt, 1)})
        if Xva is not None and not mcr2:
            # with a validation split, every epoch's validation and test errors (cheap forward
            # passes): early stopping can then pick any epoch, not only a logged one
            curve[-1].update(val_error=_error_of(model, Xva, yva), test_error=_error_of(model, Xte, yte))
        sch.step()
        if epoch in logged:
            log(epoch, tot / max(cnt, 1), lr)
        keep_state(epoch)
        # (a stop at the last epoch also checkpoints, so the next call finishes without retraining)
        if cache and rank == 0 and ((epoch % checkpoint_every == 0 and epoch < cfg.epochs) or epoch == stop_after):
            atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sch.state_dict(),
                         "rows": rows, "snapshots": snaps, "curve": curve, "epoch": epoch, "states": states}, ckpt_path)
        bar.update(1)
        if stop_after is not None and epoch >= stop_after:
            bar.close()
            if hook is not None:
                hook.remove()
            if label_hook is not None:
                label_hook.remove()
            return None
    bar.close()
    if hook is not None:
        hook.remove()
    if label_hook is not None:
        label_hook.remove()
    model.eval()
    model.cpu()
    history = pd.DataFrame(rows)
    if cache and rank == 0:
        atomic_save({"model": model.state_dict(), "history": history.to_dict("list"), "snapshots": snaps,
                     "curve": pd.DataFrame(curve).to_dict("list"),
                     "config": json.dumps(cfg.to_dict(), default=str), "nclib": __version__, "states": states}, result_path)
        if ckpt_path.exists():
            ckpt_path.unlink()
    return Run(cfg, history, snaps, model, d, pd.DataFrame(curve), from_cache=False,
               seconds=time.perf_counter() - t0, states=states)


def _fit_in_child() -> None:
    """Entry point of a :func:`fit_many` worker: a JSON job on stdin (config, kept states, threads)."""
    job = json.loads(sys.stdin.read())
    torch.set_num_threads(job["threads"])
    fit(TrainConfig(**job["config"]), progress=False, keep_states=job["keep_states"])


def processes_default() -> int:
    """``$NCLIB_PROCS`` if set, else the number of CPUs this process may use."""
    env = os.environ.get("NCLIB_PROCS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"NCLIB_PROCS must be a positive int, got {env!r}")
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _worker_command() -> list[str]:
    return [sys.executable, "-c", "from nclib.train import _fit_in_child; _fit_in_child()"]


def run_workers(cmd: list[str], jobs: list[tuple[str, dict]], procs: int, *, progress: bool, what: str) -> None:
    """Run ``cmd`` once per job, at most ``procs`` at a time, each reading its job (a JSON
    object) on stdin; raise ``RuntimeError`` naming the first failed job (``(label, payload)``)
    with the end of its stderr. Shared by :func:`fit_many` and ``continual.train_many``."""
    bar = _pbar(len(jobs), progress, "runs (parallel)")
    pending, running, failed = list(jobs), [], []
    while pending or running:
        while pending and len(running) < procs:
            label, payload = pending.pop(0)
            log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty worker never blocks
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, text=True)
            p.stdin.write(json.dumps(payload, default=str))
            p.stdin.close()
            running.append((label, p, log))
        label, p, log = running.pop(0)
        rc = p.wait()
        log.seek(0)
        if rc != 0:
            failed.append((label, log.read()))
        log.close()
        bar.update(1)
    bar.close()
    if failed:
        label, err = failed[0]
        raise RuntimeError(f"{what}: {len(failed)} worker(s) failed; the first ({label}) said:\n{err[-3000:]}")


def fit_many(cfgs, *, processes: int | None = None, progress: bool = True, keep_states=()) -> list[Run]:
    """:func:`fit` for several configs (e.g. one per seed), trained in parallel worker processes.

    Each config not yet in the results cache is trained by :func:`fit` in a fresh (spawned)
    process with the same number of torch threads as this one, so every run is bit-identical to
    training it here; the runs are then read back from the cache, in the order given.
    ``processes`` defaults to ``$NCLIB_PROCS`` or the CPU count; ``processes=1`` trains in this
    process, one after the other. On CUDA the runs are always trained here, one after the other.
    """
    cfgs = list(cfgs)
    if not cfgs or not all(isinstance(c, TrainConfig) for c in cfgs):
        raise TypeError("cfgs must be a non-empty sequence of TrainConfig")
    procs = processes_default() if processes is None else processes
    if not isinstance(procs, int) or isinstance(procs, bool) or procs < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    keep = sorted(_check_keep_states(keep_states, min(c.epochs for c in cfgs)))
    todo, seen = [], set()
    for c in cfgs:
        k = c.key()
        res = cache_dir() / "runs" / k / "result.pt"
        if k not in seen and not res.exists():
            todo.append(c)
        seen.add(k)
    if len(todo) > 1 and procs > 1 and default_device().type == "cpu":
        threads = torch.get_num_threads()
        jobs = [(f"seed {c.seed}", {"config": c.to_dict(), "keep_states": keep, "threads": threads}) for c in todo]
        run_workers(_worker_command(), jobs, min(procs, len(todo)), progress=progress, what="fit_many")
    return [fit(c, progress=progress, keep_states=keep) for c in cfgs]


# ----------------------------------------------------------------------------- recipes
_RECIPE_DATA = {"papyan": "cifar10"}


def resolve_profile(profile: str, dataset: str | None) -> str:
    """The profile a chapter can actually run: ``"full"`` needs the torchvision ``dataset``
    (loaded, or downloaded when there is a network). When it cannot be had, print a clear
    message and return ``"quick"`` — same claims, smaller experiment."""
    check_profile(profile)
    if profile == "quick" or dataset is None:
        return profile
    try:
        data_mod.torchvision_set(dataset, download=True)
        return "full"
    except Exception as e:  # no network, corrupted files, ...
        print(f"[nclib] The full profile needs {dataset}, which could not be loaded or downloaded "
              f"({type(e).__name__}: {e}). Falling back to the QUICK profile: same claims, smaller experiment.")
        return "quick"


def recipe(name: str, profile: str = "quick", *, fallback: bool = True, **overrides) -> TrainConfig:
    """Named training recipes, one per experiment family, for each profile.

    ``"papyan"`` — the terminal-phase recipe of chapter 1. quick: MNIST-1D (2,000/1,000), MLP
    3×512 with BatchNorm, SGD momentum 0.9, weight decay 5e-3, batch 128, 300 epochs, lr 0.05
    ÷10 at epochs 100 and 200; full: CIFAR-10, ResNet-18, Papyan et al.'s recipe (SGD momentum 0.9, weight
    decay 5e-4, batch 128, 350 epochs, lr ÷10 at 1/3 and 2/3).

    With ``profile="full"`` and ``fallback=True``, when the torchvision data cannot be loaded or
    downloaded, a clear message is printed and the quick recipe is returned instead.
    """
    check_profile(profile)
    if fallback:
        profile = resolve_profile(profile, _RECIPE_DATA.get(name))
    if name == "papyan":
        if profile == "quick":
            cfg = TrainConfig(data="mnist1d", data_kwargs={"n_train": 2000, "n_test": 1000, "seed": 0},
                              model="mlp", model_kwargs={"width": 512, "depth": 3, "batchnorm": True},
                              lr=0.05, weight_decay=5e-3, epochs=300, milestones=(100, 200), batch_size=128, n_logs=30)
        else:
            cfg = TrainConfig(data="cifar10", data_kwargs={"download": True}, model="resnet18", model_kwargs={},
                              lr=0.05, weight_decay=5e-4, epochs=350, milestones=(117, 233), batch_size=128, n_logs=30)
    else:
        raise ValueError(f"unknown recipe {name!r}; known: 'papyan'")
    return cfg.replace(**overrides) if overrides else cfg


# ----------------------------------------------------------------------------- reading histories
__all__ += ["epoch_below"]


def epoch_below(history: pd.DataFrame, threshold: float, key: str = "nc1", *, interpolate: bool = True) -> float:
    r"""The epoch at which ``history[key]`` first falls below ``threshold``.

    Metrics are logged at a few (log-spaced) epochs only, so by default the crossing is
    interpolated linearly in :math:`\log(\text{value})` against the epoch between the last logged
    epoch at or above the threshold and the first below it (``interpolate=False``: that first
    logged epoch). Returns the first logged epoch if the history starts below, and ``nan``
    if it never gets there. Positive values only (NC metrics are)."""
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    for col in ("epoch", key):
        if col not in history.columns:
            raise ValueError(f"history has no column {col!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    h = history[["epoch", key]].dropna().sort_values("epoch")
    e, v = h["epoch"].to_numpy(dtype=float), h[key].to_numpy(dtype=float)
    below = np.nonzero(v < threshold)[0]
    if len(below) == 0:
        return math.nan
    i = int(below[0])
    if i == 0 or not interpolate:
        return float(e[i])
    if v[i] <= 0 or v[i - 1] <= 0:
        return float(e[i])
    t = (math.log(v[i - 1]) - math.log(threshold)) / (math.log(v[i - 1]) - math.log(v[i]))
    return float(e[i - 1] + t * (e[i] - e[i - 1]))
