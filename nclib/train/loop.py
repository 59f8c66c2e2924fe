"""The training loop: :func:`fit` → :class:`Run` (see the :mod:`nclib.train` docstring)."""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from .. import _validate as _v
from .. import data as data_mod
from .. import metrics as metrics_mod
from .. import models as models_mod
from ..features import extract
from ..profiles import default_device
from .cache import atomic_save, run_dir
from .config import _BUILTIN_LOSSES, TrainConfig, _registered_losses
from .engine import Callback, Objective, run_loop

__all__ = ["Run", "fit", "log_epochs", "features_of", "epoch_below", "stays_zero_from"]


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
            raise KeyError(
                f"no model state kept for epoch {epoch!r}; kept: {sorted(self.states)} "
                f"(ask fit(cfg, keep_states=(...)) for it)"
            )
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
        mistakes does not count. :func:`stays_zero_from` of the curve's running error."""
        err = self.curve["train_error_running"].to_numpy()
        if len(err) == 0 or err[-1] != 0:  # (MCR² has no running error: all NaN, so None)
            return None
        return stays_zero_from(self.curve["epoch"].to_numpy(), err)

    @property
    def final(self) -> pd.Series:
        """The last logged row of the history."""
        return self.history.iloc[-1]

    def features(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features (N×D, float64) and labels of a split, from the trained model."""
        X, y = self.data.tensors(split)
        return features_of(self.model, X), y


def log_epochs(epochs: int, n: int) -> list[int]:
    """Epoch 0 and ~n log-spaced epochs in 1..epochs (always including the last)."""
    epochs = _v.integer(epochs, "epochs", lo=1)
    n = _v.integer(n, "n", lo=1)
    pts = np.unique(np.round(np.geomspace(1, epochs, max(n, 2))).astype(int))
    return sorted({0, *pts.tolist(), epochs})


def features_of(model: nn.Module, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """``model.features`` on X in eval mode, batched, as float64 on the CPU
    (:func:`nclib.features.extract` without a layer)."""
    return extract(model, X, batch_size=batch_size)


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
        from ..noise import with_label_noise

        d = with_label_noise(d, cfg.label_noise, seed=cfg.seed)
    return d


def _build_model(cfg: TrainConfig, d: data_mod.Data) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return models_mod.build(cfg.model, d.input_shape, d.num_classes, seed=cfg.seed, **cfg.model_kwargs)


def _optimizer(cfg: TrainConfig, model: nn.Module):
    params = _objective_class(cfg).parameters(cfg, model)  # the objective says what it trains
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
    from ..evaluation import class_ranks, label_information
    from ..losses import coding_rate_per_class, rate_reduction

    rr = rate_reduction(Z, y, eps, K)
    means = (
        torch.zeros(K, Z.shape[1], dtype=Z.dtype).index_add_(0, y, Z)
        / torch.bincount(y, minlength=K).clamp_min(1)[:, None]
    )
    within = coding_rate_per_class(Z - means[y], y, eps, K)
    ranks = class_ranks(Z, y, K, measure="pr", center="global")
    ncc = torch.cdist(Z, means).argmin(1)
    return {
        "rate": float(rr.r),
        "rate_c": float(rr.r_c),
        "rate_within": float(within),
        "class_rank": float(torch.nanmean(ranks)),
        "label_info": label_information(ncc, y, K),
    }


def _tensor_batches(X, y, batch_size):
    return [(X[s : s + batch_size], y[s : s + batch_size]) for s in range(0, len(X), batch_size)]


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
    wrong = sum(
        int((model(X[s : s + 4096].to(dev)).argmax(1).cpu() != y[s : s + 4096]).sum()) for s in range(0, len(X), 4096)
    )
    model.train(was)
    return wrong / len(X)


def _log_mcr2(row, cfg, model, train, test, val, K) -> metrics_mod.FeatureStats:
    """Fill ``row`` for an MCR² run: NC metrics of the L2-normalised features (no classifier),
    nearest-subspace errors (fitted on the training labels), coding rates and class ranks."""
    from ..evaluation import NearestSubspace

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
    return {
        "means": stats.means.cpu().clone(),
        "W": W,
        "b": b.detach().double().cpu().clone() if b is not None else torch.zeros(W.shape[0], dtype=torch.float64),
    }


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
class _Supervised(Objective):
    """``"ce"``, ``"mse"`` or a registered loss on the logits of the whole model (:func:`_loss`).

    Registered losses that need the penultimate features get them from the classifier's input (a
    forward hook); a head that learns from the labels (``uses_labels = True``, e.g.
    :class:`nclib.models.NearestETFGuidedClassifier`) is called as ``classifier(h, labels)`` on
    training batches (a forward pre-hook), while measurement calls it without labels. Evaluation:
    NC metrics and errors of the train and test splits (sharded across ranks), the validation
    error, and the coding rates when ``log_rates``."""

    has_logits = True

    def __init__(self, cfg, model, K, train, test, val, *, rank, world, device):
        self.cfg, self.model, self.K = cfg, model, K
        self.train, self.test, self.val = train, test, val
        self.rank, self.world, self.device = rank, world, device
        self.net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
        self.captured, self.hook = {}, None
        if cfg.loss not in _BUILTIN_LOSSES and _registered_losses()[cfg.loss].needs_features:
            self.hook = model.classifier.register_forward_hook(
                lambda mod, inp, out: self.captured.__setitem__("h", inp[0])
            )
        self.batch_labels, self.label_hook = {}, None
        if getattr(model.classifier, "uses_labels", False):
            self.label_hook = model.classifier.register_forward_pre_hook(
                lambda mod, args: (
                    (*args, self.batch_labels["y"]) if "y" in self.batch_labels and len(args) == 1 else None
                )
            )

    @staticmethod
    def parameters(cfg, model) -> list:
        return [p for n, p in model.named_parameters() if p.requires_grad]

    def forward(self, batch):
        xb, yb, _ = batch
        if self.label_hook is not None:
            self.batch_labels["y"] = yb
        out = self.net(xb)
        self.batch_labels.clear()
        return _loss(self.cfg, out, yb, self.K, self.captured.pop("h", None), self.model.classifier), out

    def backward(self, loss, batch) -> None:
        weight = batch[2]
        if weight is not None:  # DDP averages the ranks' gradients: weight each rank by its share of the
            # batch, so an uneven split (the trailing batch) still gives the batch-mean gradient
            (loss * weight).backward()
        else:
            loss.backward()

    def errors(self, out, yb) -> int:
        return int((out.detach().argmax(1) != yb).sum())

    def curve_errors(self) -> dict:
        # with a validation split, every epoch's validation and test errors (cheap forward
        # passes): early stopping can then pick any epoch, not only a logged one
        (Xva, yva), (Xte, yte) = self.val, self.test
        if Xva is None:
            return {}
        return {"val_error": _error_of(self.model, Xva, yva), "test_error": _error_of(self.model, Xte, yte)}

    def evaluate(self, row: dict) -> metrics_mod.FeatureStats:
        cfg, model, K = self.cfg, self.model, self.K
        (Xtr, ytr), (Xte, yte), (Xva, yva) = self.train, self.test, self.val
        kw = dict(rank=self.rank, world=self.world, device=self.device)
        tr, stats = _measure_split(model, Xtr, ytr, K, **kw)
        row.update(tr)
        row["train_error"] = row.pop("error")
        te, _ = _measure_split(model, Xte, yte, K, prefix="test_", **kw)
        row["test_error"] = te["test_error"]
        if cfg.measure_test:
            row.update(te)
        if Xva is not None:
            row["val_error"] = _error_of(model, Xva, yva)
        if cfg.log_rates:
            row.update(_representation_rates(_normalized_features(model, Xtr), ytr, K, cfg.mcr2_eps))
        return stats

    def close(self) -> None:
        for h in (self.hook, self.label_hook):
            if h is not None:
                h.remove()


class _MCR2(_Supervised):
    """``loss="mcr2"``: the MCR² objective on the L2-normalised ``model.features`` alone (the
    classifier head is not optimised and not run); evaluated by :func:`_log_mcr2`. No logits, so
    no running error (NaN in ``curve``) and no per-epoch validation errors."""

    has_logits = False

    def __init__(self, cfg, model, K, train, test, val, *, rank, world, device):
        from ..losses import MCR2Loss

        self.cfg, self.model, self.K = cfg, model, K
        self.train, self.test, self.val = train, test, val
        self.net = _FeatureMap(model)
        if world > 1:
            self.net = nn.parallel.DistributedDataParallel(self.net)
        self.loss = MCR2Loss(K, eps=cfg.mcr2_eps, normalize=True)
        self.hook = self.label_hook = None

    @staticmethod
    def parameters(cfg, model) -> list:
        # MCR² trains the feature map only: the classifier head is not optimised (it stays at its init)
        return [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("classifier.")]

    def forward(self, batch):
        xb, yb, _ = batch
        out = self.net(xb)
        return self.loss(out, yb), out

    def errors(self, out, yb) -> None:
        return None

    def curve_errors(self) -> dict:
        return {}

    def evaluate(self, row: dict) -> metrics_mod.FeatureStats:
        return _log_mcr2(row, self.cfg, self.model, self.train, self.test, self.val, self.K)


def _objective_class(cfg: TrainConfig) -> type:
    return _MCR2 if cfg.loss == "mcr2" else _Supervised


class _At(Callback):
    """A callback from a function of the epoch, called at the end of every epoch. Its value is
    ignored unless ``stops=True`` (then a true value stops training): a function that merely
    returns something — ``tqdm.update`` returns True whenever it redraws — must not stop it."""

    def __init__(self, end, *, stops: bool = False):
        self.end, self.stops = end, stops

    def period_end(self, epoch):
        value = self.end(epoch)
        return bool(value) if self.stops else None


class _RunningCurve(Callback):
    """Train mode at the start of each epoch, the running loss and error over its mini-batches (summed
    over the ranks), and its row of ``curve`` (with the objective's per-epoch errors)."""

    def __init__(self, model, opt, objective, curve, *, world, device):
        self.model, self.opt, self.objective, self.curve = model, opt, objective, curve
        self.world, self.device = world, device

    def period_start(self, epoch):
        self.model.train()
        self.tot, self.cnt, self.wrong = 0.0, 0, 0
        self.lr = self.opt.param_groups[0]["lr"]

    def batch_end(self, batch, loss, out):
        yb = batch[1]
        self.tot += float(loss.detach()) * len(yb)
        self.cnt += len(yb)
        e = self.objective.errors(out, yb)
        self.wrong += 0 if e is None else e

    def period_end(self, epoch):
        if self.world > 1:
            import torch.distributed as dist

            red = torch.tensor([self.tot, self.cnt, self.wrong], dtype=torch.float64, device=self.device)
            dist.all_reduce(red)
            self.tot, self.cnt, self.wrong = float(red[0]), int(red[1]), int(red[2])
        self.mean_loss = self.tot / max(self.cnt, 1)
        # MCR² has no logits during training: its running error is undefined (nan)
        self.curve.append(
            {
                "epoch": epoch,
                "lr": self.lr,
                "train_loss": self.mean_loss,
                "train_error_running": self.wrong / max(self.cnt, 1) if self.objective.has_logits else math.nan,
            }
        )
        self.curve[-1].update(self.objective.curve_errors())


def fit(
    cfg: TrainConfig,
    *,
    cache: bool = True,
    progress: bool = True,
    device=None,
    checkpoint_every: int = 10,
    stop_after: int | None = None,
    root: str | Path | None = None,
    keep_states=(),
) -> Run:
    """Train (or load from the results cache) the run described by ``cfg``.

    ``keep_states`` (epochs, 0 = initialisation) stores the model's state_dict at the end of
    those epochs in ``Run.states`` (and in the cache), so features at intermediate epochs can
    be recomputed (``Run.features_at``). It is not part of the cache key: a cached run that
    lacks a requested state is trained again (same result on the CPU) to record it.

    ``checkpoint_every`` epochs a checkpoint is written atomically to the run's cache folder;
    calling ``fit`` again with the same config resumes from it and ends at the same result.
    ``stop_after=e`` trains only through epoch e and returns ``None`` (the checkpoint stays) —
    a way to split long runs. ``cache=False`` neither reads nor writes the cache/checkpoints.
    ``root`` overrides the cache folder (default :func:`cache_dir`). With ``cfg.target_loss`` > 0
    the run ends (and is returned, and cached) at the first epoch whose running training loss is
    at or below it; that epoch is measured even when it is not one of the log-spaced ones.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    t0 = time.perf_counter()
    rank, world = _dist()
    if cfg.loss == "mcr2" and world > 1:
        raise NotImplementedError(
            "loss='mcr2' is single-process only: its log-determinants do not split over per-rank shards of a batch"
        )
    folder = run_dir("runs", cfg.key(), root)
    result_path, ckpt_path = folder / "result.pt", folder / "ckpt.pt"
    d = _load_data(cfg)
    K = d.num_classes
    model = _build_model(cfg, d)
    keep = _check_keep_states(keep_states, cfg.epochs)
    if cache and result_path.exists():
        res = torch.load(result_path, map_location="cpu", weights_only=True)
        if keep <= set(res.get("states", {})):
            model.load_state_dict(res["model"])
            model.eval()
            return Run(
                cfg,
                pd.DataFrame(res["history"]),
                res["snapshots"],
                model,
                d,
                pd.DataFrame(res["curve"]),
                from_cache=True,
                seconds=time.perf_counter() - t0,
                states=res.get("states", {}),
            )
        keep |= set(res.get("states", {}))
        print(
            f"[nclib] the cached run {cfg.key()} lacks the model states of epochs "
            f"{sorted(keep - set(res.get('states', {})))}; training it again to keep them"
        )

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

    Xtr, ytr = d.tensors("train")
    Xte, yte = d.tensors("test")
    Xva, yva = _val_tensors(d)
    objective = _objective_class(cfg)(
        cfg, model, K, (Xtr, ytr), (Xte, yte), (Xva, yva), rank=rank, world=world, device=dev
    )
    Xtr_d, ytr_d = Xtr.to(dev), ytr.to(dev)
    logged = set(log_epochs(cfg.epochs, cfg.n_logs))

    def log(epoch, train_loss, lr):
        # lr: the learning rate used during this epoch (the scheduler has already stepped)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss}
        stats = objective.evaluate(row)
        rows.append(row)
        snaps[epoch] = _snapshot(stats, model)
        model.train()

    def batches(epoch):
        g = torch.Generator()
        g.manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(Xtr), generator=g).to(dev)
        n_full = len(perm) // cfg.batch_size * cfg.batch_size
        # a trailing batch of < 2 samples (per rank) would break BatchNorm: fold it away
        stops = list(range(0, n_full, cfg.batch_size))
        if len(perm) - n_full >= 2 * world:
            stops.append(n_full)
        for s in stops:
            full = perm[s : s + cfg.batch_size]
            idx = full[rank::world] if world > 1 else full
            # under DDP each rank's loss is weighted by its share of the batch (see _Supervised.backward)
            yield Xtr_d[idx], ytr_d[idx], (len(idx) * world / len(full) if world > 1 else None)

    def checkpoint(epoch):
        # (a stop at the last epoch also checkpoints, so the next call finishes without retraining)
        if cache and rank == 0 and ((epoch % checkpoint_every == 0 and epoch < cfg.epochs) or epoch == stop_after):
            atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sch.state_dict(),
                    "rows": rows,
                    "snapshots": snaps,
                    "curve": curve,
                    "epoch": epoch,
                    "states": states,
                },
                ckpt_path,
            )

    bar = _pbar(cfg.epochs, progress and rank == 0, f"fit {cfg.model}/{cfg.data}")
    bar.update(start)
    if start == 0 and 0 in logged:
        log(0, float("nan"), opt.param_groups[0]["lr"])
    if start == 0:
        keep_state(0)
    running = _RunningCurve(model, opt, objective, curve, world=world, device=dev)
    reached = []

    def reach_target(epoch):
        if not (cfg.target_loss > 0 and running.mean_loss <= cfg.target_loss):
            return False
        if epoch not in logged:
            log(epoch, running.mean_loss, running.lr)
        reached.append(epoch)
        return True

    callbacks = [
        running,  # train mode, running loss/error
        _At(end=lambda e: sch.step()),  # the learning-rate schedule
        _At(end=lambda e: log(e, running.mean_loss, running.lr) if e in logged else None),  # NC metrics
        _At(end=keep_state),
        _At(end=checkpoint),
        _At(end=lambda e: bar.update(1)),
        _At(end=lambda e: stop_after is not None and e >= stop_after, stops=True),
        _At(end=reach_target, stops=True),  # cfg.target_loss reached: the run ends there
    ]  # stop early (returns None)
    try:
        finished = run_loop(opt, range(max(start, 1), cfg.epochs + 1), batches, objective, callbacks)
    finally:
        bar.close()
        objective.close()
    if not finished and not reached:
        return None
    model.eval()
    model.cpu()
    history = pd.DataFrame(rows)
    if cache and rank == 0:
        atomic_save(
            {
                "model": model.state_dict(),
                "history": history.to_dict("list"),
                "snapshots": snaps,
                "curve": pd.DataFrame(curve).to_dict("list"),
                "config": json.dumps(cfg.to_dict(), default=str),
                "nclib": __version__,
                "states": states,
            },
            result_path,
        )
        if ckpt_path.exists():
            ckpt_path.unlink()
    return Run(
        cfg,
        history,
        snaps,
        model,
        d,
        pd.DataFrame(curve),
        from_cache=False,
        seconds=time.perf_counter() - t0,
        states=states,
    )


# ----------------------------------------------------------------------------- reading histories
def epoch_below(history: pd.DataFrame, threshold: float, key: str = "nc1", *, interpolate: bool = True) -> float:
    r"""The epoch at which ``history[key]`` first falls below ``threshold``.

    Metrics are logged at a few (log-spaced) epochs only, so by default the crossing is
    interpolated linearly in :math:`\log(\text{value})` against the epoch between the last logged
    epoch at or above the threshold and the first below it (``interpolate=False``: that first
    logged epoch). Returns the first logged epoch if the history starts below, and ``nan``
    if it never gets there. Positive values only (NC metrics are)."""
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    if "epoch" not in history.columns:
        raise ValueError("history has no column 'epoch'")
    if key not in history.columns:
        raise ValueError(f"key {key!r} is not a column of history; columns: {list(history.columns)}")
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


def stays_zero_from(epochs, values) -> int | None:
    """The first epoch from which ``values`` (e.g. the training error at logged epochs, or the
    fraction of negative margins) is 0 at that epoch and every later one — the start of a
    terminal phase that is not left again — or None when the last value is not 0."""
    e = np.asarray(epochs, dtype=float)
    v = np.asarray(values, dtype=float)
    if e.ndim != 1 or e.shape != v.shape or len(e) == 0:
        raise ValueError(f"need two non-empty 1-D sequences of the same length, got {e.shape} and {v.shape}")
    if np.any(np.diff(e) <= 0):
        raise ValueError("epochs must be strictly increasing")
    if np.isnan(v).any():
        raise ValueError("values contain NaN")
    nonzero = np.flatnonzero(v != 0)
    if len(nonzero) == 0:
        return int(e[0])
    if nonzero[-1] == len(v) - 1:
        return None
    return int(e[nonzero[-1] + 1])
