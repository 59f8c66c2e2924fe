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
import hashlib
import json
import math
import os
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
from .profiles import check_profile, default_device

__all__ = ["TrainConfig", "Run", "fit", "log_epochs", "cache_dir", "atomic_save", "recipe", "features_of"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and its cache key).

    ``data_kwargs``/``model_kwargs`` go to :func:`nclib.data.load` / :func:`nclib.models.build`.
    ``schedule``: ``"step"`` (×``gamma`` at ``milestones``), ``"cosine"`` or ``"constant"``.
    ``n_logs`` log-spaced epochs (plus epoch 0) are measured; ``measure_test`` also measures
    NC on the test split. ``loss``: ``"ce"`` or ``"mse"`` (one-hot targets).
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

    def __post_init__(self):
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', got {self.loss!r}")
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
        """Cache key: sha256 of the config and the nclib version."""
        blob = json.dumps({"config": self.to_dict(), "nclib": __version__}, sort_keys=True, default=str)
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

    @property
    def tpt_start(self) -> int | None:
        """First epoch of the terminal phase: the first epoch during which no training
        mini-batch was misclassified (the running error of ``curve``), or None."""
        z = self.curve[self.curve["train_error_running"] == 0]
        return int(z["epoch"].iloc[0]) if len(z) else None

    @property
    def final(self) -> pd.Series:
        """The last logged row of the history."""
        return self.history.iloc[-1]

    def features(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features (N×D, float64) and labels of a split, from the trained model."""
        X, y = self.data.tensors(split)
        return features_of(self.model, X), y


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


def _load_data(cfg: TrainConfig) -> data_mod.Data:
    d = data_mod.load(cfg.data, **cfg.data_kwargs)
    if cfg.label_noise > 0:
        from .noise import with_label_noise

        d = with_label_noise(d, cfg.label_noise, seed=cfg.seed)
    return d


def _build_model(cfg: TrainConfig, d: data_mod.Data) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return models_mod.build(cfg.model, d.input_shape, d.num_classes, seed=cfg.seed, **cfg.model_kwargs)


def _optimizer(cfg: TrainConfig, model: nn.Module):
    params = [p for p in model.parameters() if p.requires_grad]
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


def _loss(cfg: TrainConfig, logits, y, K):
    if cfg.loss == "ce":
        return F.cross_entropy(logits, y)
    return 0.5 * (logits - F.one_hot(y, K).to(logits.dtype)).pow(2).sum(1).mean()


def _tensor_batches(X, y, batch_size):
    return [(X[s:s + batch_size], y[s:s + batch_size]) for s in range(0, len(X), batch_size)]


def _measure_split(model, X, y, K, *, rank, world, device, prefix=""):
    """NC metrics + error of one split (sharded across ranks; statistics synced)."""
    Xs, ys = X[rank::world].to(device), y[rank::world].to(device)
    m = metrics_mod.measure(model, _tensor_batches(Xs, ys, 4096), num_classes=K, device=device)
    out = {f"{prefix}{k}": v for k, v in m.metrics.items() if k not in ("n", "accuracy")}
    out[f"{prefix}error"] = 1.0 - m.metrics["accuracy"]
    return out, m.stats


def _snapshot(stats: metrics_mod.FeatureStats, model) -> dict:
    W = model.classifier.weight.detach().double().cpu().clone()
    b = getattr(model.classifier, "bias", None)
    return {"means": stats.means.cpu().clone(), "W": W,
            "b": b.detach().double().cpu().clone() if b is not None else torch.zeros(W.shape[0], dtype=torch.float64)}


def _pbar(total, enabled, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)


# ----------------------------------------------------------------------------- fit
def fit(cfg: TrainConfig, *, cache: bool = True, progress: bool = True, device=None, checkpoint_every: int = 10,
        stop_after: int | None = None, root: str | Path | None = None) -> Run:
    """Train (or load from the results cache) the run described by ``cfg``.

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
    run_dir = Path(root or cache_dir()) / "runs" / cfg.key()
    result_path, ckpt_path = run_dir / "result.pt", run_dir / "ckpt.pt"
    d = _load_data(cfg)
    K = d.num_classes
    model = _build_model(cfg, d)
    if cache and result_path.exists():
        res = torch.load(result_path, map_location="cpu", weights_only=True)
        model.load_state_dict(res["model"])
        model.eval()
        return Run(cfg, pd.DataFrame(res["history"]), res["snapshots"], model, d, pd.DataFrame(res["curve"]),
                   from_cache=True, seconds=time.perf_counter() - t0)

    dev = default_device(device)
    model.to(dev)
    opt, sch = _optimizer(cfg, model)
    rows, snaps, curve, start = [], {}, [], 0
    if cache and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sch.load_state_dict(ck["scheduler"])
        rows, snaps, curve, start = ck["rows"], ck["snapshots"], ck["curve"], ck["epoch"] + 1
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)

    Xtr, ytr = d.tensors("train")
    Xte, yte = d.tensors("test")
    Xtr_d, ytr_d = Xtr.to(dev), ytr.to(dev)
    logged = set(log_epochs(cfg.epochs, cfg.n_logs))
    local_bs = max(1, cfg.batch_size // world)

    def log(epoch, train_loss):
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss}
        tr, stats = _measure_split(model, Xtr, ytr, K, rank=rank, world=world, device=dev)
        row.update(tr)
        row["train_error"] = row.pop("error")
        te, _ = _measure_split(model, Xte, yte, K, rank=rank, world=world, device=dev, prefix="test_")
        row["test_error"] = te["test_error"]
        if cfg.measure_test:
            row.update(te)
        rows.append(row)
        snaps[epoch] = _snapshot(stats, model)
        model.train()

    bar = _pbar(cfg.epochs, progress and rank == 0, f"fit {cfg.model}/{cfg.data}")
    bar.update(start)
    if start == 0 and 0 in logged:
        log(0, float("nan"))
    for epoch in range(max(start, 1), cfg.epochs + 1):
        model.train()
        g = torch.Generator()
        g.manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(Xtr), generator=g).to(dev)
        n_full = len(perm) // cfg.batch_size * cfg.batch_size
        # a trailing batch of < 2 samples would break BatchNorm: fold it away
        stops = list(range(0, n_full, cfg.batch_size))
        if len(perm) - n_full >= 2:
            stops.append(n_full)
        tot, cnt, wrong = 0.0, 0, 0
        lr = opt.param_groups[0]["lr"]
        for s in stops:
            idx = perm[s:s + cfg.batch_size][rank::world] if world > 1 else perm[s:s + cfg.batch_size]
            xb, yb = Xtr_d[idx], ytr_d[idx]
            logits = net(xb)
            loss = _loss(cfg, logits, yb, K)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            cnt += len(idx)
            wrong += int((logits.detach().argmax(1) != yb).sum())
        if world > 1:
            import torch.distributed as dist

            red = torch.tensor([tot, cnt, wrong], dtype=torch.float64, device=dev)
            dist.all_reduce(red)
            tot, cnt, wrong = float(red[0]), int(red[1]), int(red[2])
        curve.append({"epoch": epoch, "lr": lr, "train_loss": tot / max(cnt, 1),
                      "train_error_running": wrong / max(cnt, 1)})
        sch.step()
        if epoch in logged:
            log(epoch, tot / max(cnt, 1))
        if cache and rank == 0 and (epoch % checkpoint_every == 0 or epoch == stop_after) and epoch < cfg.epochs:
            atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sch.state_dict(),
                         "rows": rows, "snapshots": snaps, "curve": curve, "epoch": epoch}, ckpt_path)
        bar.update(1)
        if stop_after is not None and epoch >= stop_after:
            bar.close()
            return None
    bar.close()
    model.eval()
    model.cpu()
    history = pd.DataFrame(rows)
    if cache and rank == 0:
        atomic_save({"model": model.state_dict(), "history": history.to_dict("list"), "snapshots": snaps,
                     "curve": pd.DataFrame(curve).to_dict("list"),
                     "config": json.dumps(cfg.to_dict(), default=str), "nclib": __version__}, result_path)
        if ckpt_path.exists():
            ckpt_path.unlink()
    return Run(cfg, history, snaps, model, d, pd.DataFrame(curve), from_cache=False,
               seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- recipes
_RECIPE_DATA = {"papyan": "cifar10"}


def _full_data_available(name: str) -> bool:
    """Try to load (downloading if needed) the torchvision set a full-profile recipe uses."""
    ds = _RECIPE_DATA.get(name)
    if ds is None:
        return True
    try:
        data_mod.torchvision_set(ds, download=True)
        return True
    except Exception as e:  # no network, corrupted files, ...
        print(f"[nclib] could not load {ds}: {type(e).__name__}: {e}")
        return False


def recipe(name: str, profile: str = "quick", *, fallback: bool = True, **overrides) -> TrainConfig:
    """Named training recipes, one per experiment family, for each profile.

    ``"papyan"`` — the terminal-phase recipe of chapter 1. quick: MNIST-1D (4,000/1,000), MLP
    3×512 with BatchNorm, SGD momentum 0.9, weight decay 5e-4·10, batch 128, lr ÷10 at 1/2 and
    3/4 of the epochs; full: CIFAR-10, ResNet-18, Papyan et al.'s recipe (SGD momentum 0.9, weight
    decay 5e-4, batch 128, 350 epochs, lr ÷10 at 1/3 and 2/3).

    With ``profile="full"`` and ``fallback=True``, when the torchvision data cannot be loaded or
    downloaded, a clear message is printed and the quick recipe is returned instead.
    """
    check_profile(profile)
    if profile == "full" and fallback and not _full_data_available(name):
        print(f"[nclib] The full profile needs torchvision data that could not be found or downloaded "
              f"(no network?). Falling back to the QUICK profile: same claims, smaller experiment.")
        profile = "quick"
    if name == "papyan":
        if profile == "quick":
            cfg = TrainConfig(data="mnist1d", data_kwargs={"n_train": 4000, "n_test": 1000, "seed": 0},
                              model="mlp", model_kwargs={"width": 512, "depth": 3, "batchnorm": True},
                              lr=0.05, weight_decay=5e-3, epochs=200, milestones=(100, 150), batch_size=128, n_logs=30)
        else:
            cfg = TrainConfig(data="cifar10", data_kwargs={"download": True}, model="resnet18", model_kwargs={},
                              lr=0.05, weight_decay=5e-4, epochs=350, milestones=(117, 233), batch_size=128, n_logs=30)
    else:
        raise ValueError(f"unknown recipe {name!r}; known: 'papyan'")
    return cfg.replace(**overrides) if overrides else cfg
