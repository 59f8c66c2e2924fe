r"""Class-incremental learning with experience replay, and how to tell *deep* from *shallow* forgetting.

Chapter 8 (Part B) follows Lanzillotta, Meier & Hofmann (2025, ``lanzillotta2025``): a network with
one shared K-way head learns the classes of a data set in T tasks, one after another; a replay
buffer keeps a few training samples of every finished task and mixes them into each batch of the
later tasks. After the last task we ask two questions about the classes of the *past* tasks:

* **shallow** — does the network itself still classify their test inputs? (its own argmax);
* **deep** — are their features still linearly separable? (a linear probe refitted on the frozen
  features of all classes, :func:`nclib.evaluation.linear_probe`).

What is here:

* :func:`class_incremental_split` — a seeded split of the K classes into T tasks;
* :class:`ReplayBuffer` — which samples are kept (an exact, seeded per-class rule) and how replay
  batches are drawn from them;
* :class:`ContinualConfig` / :func:`train_class_incremental` — the task loop (cached like
  :func:`nclib.train.fit`), returning a :class:`ContinualRun`; :func:`train_many` trains several
  configs (seeds, buffer sizes) in parallel worker processes, bit-identical to training them here;
* :func:`network_accuracies`, :func:`probe_accuracies`, :func:`forgetting_report` — shallow and
  deep forgetting on the past tasks, in the class-incremental (all K outputs) and the
  task-incremental (within a task's own classes) views;
* :func:`deep_forgetting` — the paper's deep forgetting :math:`A^*_{jj}-A^*_{Tj}`, the drop of a
  probe's accuracy on task j from the end of task j to the end of training (needs
  ``ContinualConfig(probe_tasks=True)``);
* :func:`replay_geometry` — effective rank and class-mean norm of the replayed classes' features,
  compared at *equal sample counts* with the rest of their class and with the current task.

Features are rows (N×D), labels 0..K−1, as everywhere in nclib. Randomness comes from ``seed``
arguments only; the global RNG is never reseeded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import __version__
from . import _validate as _v
from . import data as data_mod
from . import models as models_mod
from ._rng import mixed_generator as _generator
from .evaluation import effective_rank, linear_probe
from .features import extract
from .train import atomic_save, processes_default, run_workers
from .train.cache import config_key, run_dir
from .train.engine import Callback, Objective, run_loop

__all__ = [
    "class_incremental_split",
    "ReplayBuffer",
    "ContinualConfig",
    "ContinualRun",
    "train_class_incremental",
    "train_many",
    "network_accuracies",
    "probe_accuracies",
    "forgetting_report",
    "deep_forgetting",
    "replay_geometry",
    "task_of",
]


def _check_int(v, name: str, lo: int) -> int:
    return _v.integer(v, name, lo=lo)


# ----------------------------------------------------------------------------- task split
def class_incremental_split(num_classes: int, num_tasks: int, *, seed: int | None = None) -> list[list[int]]:
    """Split classes 0..K−1 into ``num_tasks`` tasks of K/T classes each.

    ``seed=None`` keeps the natural order (task t gets classes tK/T … (t+1)K/T − 1); an int
    first permutes the classes with a generator seeded by it. K must be divisible by T.
    Returns a list of T sorted class lists that together cover every class exactly once."""
    K = _check_int(num_classes, "num_classes", 2)
    T = _check_int(num_tasks, "num_tasks", 1)
    if K % T:
        raise ValueError(f"num_classes={K} is not divisible by num_tasks={T}")
    if seed is None:
        order = list(range(K))
    else:
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        order = torch.randperm(K, generator=_generator(int(seed))).tolist()
    c = K // T
    return [sorted(order[t * c : (t + 1) * c]) for t in range(T)]


def task_of(tasks: list[list[int]], num_classes: int) -> Tensor:
    """A length-K tensor: the task index of every class (ValueError unless the tasks partition 0..K−1)."""
    K = _check_int(num_classes, "num_classes", 2)
    out = torch.full((K,), -1, dtype=torch.long)
    for t, cls in enumerate(tasks):
        for c in cls:
            if not 0 <= int(c) < K or out[int(c)] >= 0:
                raise ValueError(f"tasks must partition the classes 0..{K - 1}; class {c} is out of range or repeated")
            out[int(c)] = t
    if (out < 0).any():
        raise ValueError(f"tasks do not cover classes {(out < 0).nonzero().flatten().tolist()}")
    return out


# ----------------------------------------------------------------------------- replay buffer
class ReplayBuffer:
    r"""The replay memory: indices of kept training samples, grouped by class.

    **Selection rule.** :meth:`add` is called once per finished task with the indices and labels
    of its training samples. For every class k in it, with :math:`N_k` samples, the buffer keeps

    * ``fraction`` f: :math:`n_k=\min(N_k,\max(1,\lfloor fN_k+\tfrac12\rfloor))` samples when f > 0, none when f = 0;
    * ``per_class`` m: :math:`n_k=\min(N_k, m)` samples;

    a uniformly random subset without replacement, drawn from a generator seeded by
    ``(seed, k)`` (so a class's kept samples do not depend on which other classes exist).
    Exactly one of ``fraction``/``per_class`` is given. Nothing is ever evicted.

    **Sampling rule.** :meth:`sample` draws replay samples uniformly *with* replacement from
    everything stored (a buffer smaller than the replay batch still fills it).
    """

    def __init__(self, *, fraction: float | None = None, per_class: int | None = None, seed: int = 0):
        if (fraction is None) == (per_class is None):
            raise ValueError("give exactly one of fraction and per_class")
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction <= 1:
                raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}")
            fraction = float(fraction)
        if per_class is not None:
            per_class = _check_int(per_class, "per_class", 0)
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.fraction, self.per_class, self.seed = fraction, per_class, int(seed)
        self._store: dict[int, Tensor] = {}

    def size_for(self, n: int) -> int:
        """How many of a class's ``n`` samples the rule keeps."""
        n = _check_int(n, "n", 0)
        if self.per_class is not None:
            return min(n, self.per_class)
        if self.fraction == 0 or n == 0:
            return 0
        return min(n, max(1, math.floor(self.fraction * n + 0.5)))

    def add(self, indices: Tensor, labels: Tensor) -> ReplayBuffer:
        """Store the kept samples of the classes in ``labels`` (``indices`` point into the training set)."""
        if not isinstance(indices, Tensor) or not isinstance(labels, Tensor):
            raise TypeError("indices and labels must be torch.Tensors")
        if indices.ndim != 1 or labels.shape != indices.shape:
            raise ValueError(
                f"indices and labels must be 1-D of equal length, got {tuple(indices.shape)} and {tuple(labels.shape)}"
            )
        if indices.dtype.is_floating_point or labels.dtype.is_floating_point:
            raise TypeError("indices and labels must be integer tensors")
        indices, labels = indices.long(), labels.long()
        for k in labels.unique().tolist():
            if k in self._store:
                raise ValueError(f"class {k} is already in the buffer (each class is added once, when its task ends)")
            idx = indices[labels == k]
            m = self.size_for(len(idx))
            pick = torch.randperm(len(idx), generator=_generator(self.seed, k))[:m]
            self._store[int(k)] = idx[pick].sort().values
        return self

    @property
    def classes(self) -> list[int]:
        return sorted(self._store)

    def indices(self, k: int | None = None) -> Tensor:
        """Stored indices of class ``k`` (or of all classes, grouped by class)."""
        if k is not None:
            return self._store.get(int(k), torch.zeros(0, dtype=torch.long))
        if not self._store:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([self._store[c] for c in self.classes])

    def labels(self) -> Tensor:
        """Labels matching :meth:`indices` (all classes)."""
        if not self._store:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([torch.full((len(self._store[c]),), c, dtype=torch.long) for c in self.classes])

    def counts(self, num_classes: int) -> Tensor:
        """Stored samples per class (length ``num_classes``)."""
        K = _check_int(num_classes, "num_classes", 1)
        out = torch.zeros(K, dtype=torch.long)
        for c, idx in self._store.items():
            if c >= K:
                raise ValueError(f"the buffer holds class {c} ≥ num_classes={K}")
            out[c] = len(idx)
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self._store.values())

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` stored indices drawn uniformly with replacement (empty when the buffer is)."""
        n = _check_int(n, "n", 0)
        pool = self.indices()
        if len(pool) == 0 or n == 0:
            return torch.zeros(0, dtype=torch.long)
        return pool[torch.randint(len(pool), (n,), generator=generator)]

    def __repr__(self) -> str:
        rule = f"fraction={self.fraction}" if self.fraction is not None else f"per_class={self.per_class}"
        return f"ReplayBuffer({rule}, seed={self.seed}, classes={self.classes}, size={len(self)})"


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class ContinualConfig:
    """A class-incremental run: data, model, task split, replay, optimiser.

    Each task trains ``epochs_per_task`` epochs on its own classes in batches of ``batch_size``;
    from the second task on, every batch is joined by ``replay_batch_size`` samples drawn from the
    buffer (:class:`ReplayBuffer` with ``buffer_fraction`` of each past class, seeded by ``seed``).
    The loss is the cross-entropy over all K outputs (one shared head: class-incremental).
    One optimiser (``"adam"`` or ``"sgd"`` with momentum 0.9), kept across tasks.
    ``num_tasks=1`` is joint training on all classes. ``probe_tasks=True`` also fits, at the end
    of every task, a K-way linear probe on the frozen features of all training data and records its
    test accuracy on each task so far (column ``probe`` of :attr:`ContinualRun.accuracy`; the
    :math:`A^*_{ij}` of Lanzillotta et al.)."""

    data: str = "mnist1d"
    data_kwargs: dict = field(default_factory=lambda: {"n_train": 2000, "n_test": 1000, "seed": 0})
    model: str = "mlp"
    model_kwargs: dict = field(default_factory=lambda: {"width": 128, "depth": 3, "batchnorm": False})
    num_tasks: int = 5
    task_seed: int | None = None
    buffer_fraction: float = 0.0
    epochs_per_task: int = 15
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    replay_batch_size: int = 64
    seed: int = 0
    probe_tasks: bool = False

    def __post_init__(self):
        for name, lo in (("num_tasks", 1), ("epochs_per_task", 1), ("batch_size", 1), ("replay_batch_size", 0)):
            _check_int(getattr(self, name), name, lo)
        _check_int(self.seed, "seed", -(2**62))
        if self.task_seed is not None:
            _check_int(self.task_seed, "task_seed", -(2**62))
        if (
            isinstance(self.buffer_fraction, bool)
            or not isinstance(self.buffer_fraction, numbers.Real)
            or not 0 <= self.buffer_fraction <= 1
        ):
            raise ValueError(f"buffer_fraction must be in [0, 1], got {self.buffer_fraction!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"need lr > 0 and weight_decay ≥ 0, got {self.lr}, {self.weight_decay}")
        _v.boolean(self.probe_tasks, "probe_tasks")

    def key(self) -> str:
        d = dataclasses.asdict(self)
        if not d["probe_tasks"]:  # runs without the per-task probes keep their earlier keys
            del d["probe_tasks"]
        return config_key({"config": d, "kind": "continual"}, "continual")

    def replace(self, **changes) -> ContinualConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class ContinualRun:
    """A finished class-incremental run. ``accuracy``: one row per (task just finished, task
    evaluated) with the network's test accuracy on that task's classes (argmax over all K
    outputs); ``buffer``: the :class:`ReplayBuffer` after the last task."""

    config: ContinualConfig
    model: nn.Module
    data: data_mod.Data
    tasks: list
    buffer: ReplayBuffer
    accuracy: pd.DataFrame
    seconds: float = 0.0
    from_cache: bool = False

    @property
    def past_classes(self) -> list[int]:
        """Classes of every task but the last."""
        return sorted(c for t in self.tasks[:-1] for c in t)

    def features(self, split: str = "train") -> tuple[Tensor, Tensor]:
        """Penultimate features (float64) and labels of a split, from the final model."""
        X, y = self.data.tensors(split)
        return extract(self.model, X), y


@torch.no_grad()
def _predict(model: nn.Module, X: Tensor, batch_size: int = 4096) -> Tensor:
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model(X[s : s + batch_size].to(dev)).cpu() for s in range(0, len(X), batch_size)])
    model.train(was)
    return out


def _task_accuracy(model, X, y, classes) -> float:
    sel = torch.isin(y, torch.tensor(classes))
    return float((_predict(model, X[sel]).argmax(1) == y[sel]).double().mean())


class _CrossEntropy(Objective):
    """The class-incremental objective: cross-entropy over all K outputs (one shared head)."""

    def __init__(self, model, X, y):
        self.model, self.X, self.y = model, X, y

    def forward(self, idx):
        return F.cross_entropy(self.model(self.X[idx]), self.y[idx]), None


class _TaskSchedule(Callback):
    """The task schedule around :func:`nclib.train.engine.run_loop`: periods (task t, epoch); at
    the start of a task its training indices and its replay generator, seeded by (seed, 7919, t);
    each epoch's order from a generator seeded by (seed, t, epoch), every batch joined by
    ``replay_batch_size`` buffer samples once the buffer holds some (a batch of < 2 samples is
    skipped when the model has BatchNorm); at the end of a task the buffer takes its samples and
    the network's test accuracy on every task so far is recorded (with ``probe_tasks``, also the
    accuracy of a K-way probe fitted on the features of all training data)."""

    def __init__(self, cfg, model, tasks, buffer, ytr, test, rows, bar, device, Xtr=None):
        self.cfg, self.model, self.tasks, self.buffer, self.ytr = cfg, model, tasks, buffer, ytr
        self.test, self.rows, self.bar, self.device, self.Xtr = test, rows, bar, device, Xtr

    def period_start(self, period):
        t, epoch = period
        if epoch == 0:
            self.cur = torch.isin(self.ytr, torch.tensor(self.tasks[t])).nonzero().flatten()
            self.g_replay = _generator(self.cfg.seed, 7919, t)

    def batches(self, period):
        t, epoch = period
        cfg, buffer = self.cfg, self.buffer
        perm = self.cur[torch.randperm(len(self.cur), generator=_generator(cfg.seed, t, epoch))]
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            if len(buffer) and cfg.replay_batch_size:
                idx = torch.cat([idx, buffer.sample(cfg.replay_batch_size, self.g_replay)])
            if len(idx) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
                continue  # a single sample would break BatchNorm
            yield idx.to(self.device)

    def period_end(self, period):
        t, epoch = period
        self.bar.update(1)
        if epoch == self.cfg.epochs_per_task - 1:
            sel = self.ytr[self.cur]
            self.buffer.add(self.cur, sel)  # the buffer is filled when the task ends (the last one's is never replayed)
            Xte, yte = self.test
            if self.cfg.probe_tasks:
                K = sum(len(tk) for tk in self.tasks)
                probe = linear_probe(extract(self.model, self.Xtr), self.ytr, K, weight_decay=1e-3, max_iter=100)
                pred = probe.logits(extract(self.model, Xte)).argmax(1)
            for u in range(t + 1):
                row = {"after_task": t, "task": u, "accuracy": _task_accuracy(self.model, Xte, yte, self.tasks[u])}
                if self.cfg.probe_tasks:
                    sel = torch.isin(yte, torch.tensor(self.tasks[u]))
                    row["probe"] = float((pred[sel] == yte[sel]).double().mean())
                self.rows.append(row)
            self.model.train()


def train_class_incremental(
    cfg: ContinualConfig, *, cache: bool = True, progress: bool = True, device=None
) -> ContinualRun:
    """Train ``cfg`` task by task with experience replay (see :class:`ContinualConfig`).

    Deterministic on the CPU: the initialisation comes from ``models.build(seed=cfg.seed)``, each
    epoch's order from a generator seeded by (seed, task, epoch), replay draws from one seeded by
    (seed, task), the buffer's choice from (seed, class). Finished runs are cached under
    ``$NCLIB_CACHE/continual/<key>`` (``cache=False`` neither reads nor writes)."""
    from tqdm.auto import tqdm

    from .profiles import default_device

    if not isinstance(cfg, ContinualConfig):
        raise TypeError(f"cfg must be a ContinualConfig, got {type(cfg).__name__}")
    t0 = time.perf_counter()
    d = data_mod.load(cfg.data, **cfg.data_kwargs)
    K = d.num_classes
    tasks = class_incremental_split(K, cfg.num_tasks, seed=cfg.task_seed)
    model = models_mod.build(cfg.model, d.input_shape, K, seed=cfg.seed, **cfg.model_kwargs)
    Xtr, ytr = d.tensors("train")
    Xte, yte = d.tensors("test")
    buffer = ReplayBuffer(fraction=float(cfg.buffer_fraction), seed=cfg.seed)
    path = run_dir("continual", cfg.key()) / "result.pt"
    if cache and path.exists():
        res = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(res["model"])
        for t in tasks[:-1]:
            sel = torch.isin(ytr, torch.tensor(t))
            buffer.add(sel.nonzero().flatten(), ytr[sel])
        return ContinualRun(
            cfg, model.eval(), d, tasks, buffer, pd.DataFrame(res["accuracy"]), time.perf_counter() - t0, True
        )

    dev = default_device(device)
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    Xd, yd = Xtr.to(dev), ytr.to(dev)
    rows = []
    bar = tqdm(
        total=cfg.num_tasks * cfg.epochs_per_task,
        disable=not progress,
        leave=False,
        desc=f"continual f={cfg.buffer_fraction:g}",
    )
    schedule = _TaskSchedule(cfg, model, tasks, buffer, ytr, (Xte, yte), rows, bar, dev, Xtr)
    periods = [(t, epoch) for t in range(len(tasks)) for epoch in range(cfg.epochs_per_task)]
    try:
        run_loop(opt, periods, schedule.batches, _CrossEntropy(model, Xd, yd), [schedule])
    finally:
        bar.close()
    model.eval().cpu()
    # the buffer as it was during training: the last task's classes were never replayed
    final = ReplayBuffer(fraction=float(cfg.buffer_fraction), seed=cfg.seed)
    for tk in tasks[:-1]:
        s = torch.isin(ytr, torch.tensor(tk))
        final.add(s.nonzero().flatten(), ytr[s])
    acc = pd.DataFrame(rows)
    if cache:
        atomic_save(
            {
                "model": model.state_dict(),
                "accuracy": acc.to_dict("list"),
                "nclib": __version__,
                "config": json.dumps(dataclasses.asdict(cfg), default=str),
            },
            path,
        )
    return ContinualRun(cfg, model, d, tasks, final, acc, time.perf_counter() - t0, False)


def _train_in_child() -> None:
    """Worker entry point of :func:`train_many`: one config (JSON on stdin), trained into the cache."""
    import sys

    msg = json.loads(sys.stdin.read())
    torch.set_num_threads(int(msg["threads"]))
    train_class_incremental(ContinualConfig(**msg["config"]), progress=False)


def train_many(cfgs, *, processes: int | None = None, progress: bool = True) -> list[ContinualRun]:
    """:func:`train_class_incremental` for several configs, trained in parallel worker processes.

    Every config not yet in the results cache is trained in a fresh process with the same number
    of torch threads as this one — the loop is seeded by the config alone, so each run is
    bit-identical to training it here — then all runs are read back from the cache, in order.
    ``processes`` defaults to ``$NCLIB_PROCS`` or the CPU count; 1 (or CUDA) trains here."""
    import sys

    from .profiles import default_device

    cfgs = list(cfgs)
    if not cfgs or not all(isinstance(c, ContinualConfig) for c in cfgs):
        raise TypeError("cfgs must be a non-empty sequence of ContinualConfig")
    procs = processes_default() if processes is None else processes
    if not isinstance(procs, int) or isinstance(procs, bool) or procs < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    todo, seen = [], set()
    for c in cfgs:
        k = c.key()
        if k not in seen and not (run_dir("continual", k) / "result.pt").exists():
            todo.append(c)
        seen.add(k)
    if len(todo) > 1 and procs > 1 and default_device().type == "cpu":
        cmd = [sys.executable, "-c", "from nclib.continual import _train_in_child; _train_in_child()"]
        threads = torch.get_num_threads()
        jobs = [
            (f"seed {c.seed}, buffer {c.buffer_fraction}", {"config": dataclasses.asdict(c), "threads": threads})
            for c in todo
        ]
        run_workers(cmd, jobs, min(procs, len(todo)), progress=progress, what="train_many")
    return [train_class_incremental(c, progress=progress) for c in cfgs]


# ----------------------------------------------------------------------------- evaluation
def _past(tasks, y) -> tuple[list[int], Tensor]:
    if not isinstance(tasks, (list, tuple)) or len(tasks) < 2:
        raise ValueError("need a list of at least two tasks (the past ones and the last one)")
    past = sorted(int(c) for t in tasks[:-1] for c in t)
    return past, torch.isin(y, torch.tensor(past))


def network_accuracies(model: nn.Module, X: Tensor, y: Tensor, tasks: list[list[int]]) -> dict:
    """Shallow forgetting: the network's own predictions on the inputs of the *past* tasks
    (every task but the last).

    * ``net_all`` — accuracy of the argmax over all K outputs (class-incremental view);
    * ``net_within`` — accuracy of the argmax restricted to each input's own task's classes
      (task-incremental view: the task identity is given), averaged over past inputs;
    * ``to_last`` — fraction of past inputs predicted as one of the last task's classes."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    past, sel = _past(tasks, y)
    if not sel.any():
        raise ValueError("no inputs of the past tasks' classes")
    logits = _predict(model, X[sel]).double()
    yp = y[sel]
    K = logits.shape[1]
    tid = task_of(tasks, K)
    own = tid[None, :] == tid[yp][:, None]
    within = logits.masked_fill(~own, -math.inf).argmax(1)
    pred = logits.argmax(1)
    last = torch.tensor(tasks[-1])
    return {
        "net_all": float((pred == yp).double().mean()),
        "net_within": float((within == yp).double().mean()),
        "to_last": float(torch.isin(pred, last).double().mean()),
    }


def probe_accuracies(
    Ztr: Tensor,
    ytr: Tensor,
    Zte: Tensor,
    yte: Tensor,
    tasks: list[list[int]],
    *,
    weight_decay: float = 1e-3,
    max_iter: int = 100,
) -> dict:
    """Deep forgetting: a K-way linear probe (:func:`nclib.evaluation.linear_probe`, standardised
    features, fitted on the training features of **all** classes) scored on the test inputs of
    the *past* tasks (every task but the last).

    * ``probe_all`` — accuracy of the probe's argmax over all K classes (class-incremental view);
    * ``probe_within`` — accuracy of its argmax restricted to each input's own task's classes
      (task-incremental view), the probe analogue of ``net_within`` of :func:`network_accuracies`."""
    for x, name in ((Ztr, "Ztr"), (ytr, "ytr"), (Zte, "Zte"), (yte, "yte")):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    K = sum(len(t) for t in tasks) if isinstance(tasks, (list, tuple)) else 0
    tid = task_of(tasks, K)  # the tasks must partition 0..K−1
    past, sel = _past(tasks, yte)
    if not sel.any():
        raise ValueError("no test inputs of the past tasks' classes")
    probe = linear_probe(Ztr, ytr, K, weight_decay=weight_decay, max_iter=max_iter)
    logits, yp = probe.logits(Zte[sel]), yte[sel]
    own = tid[None, :] == tid[yp][:, None]
    return {
        "probe_all": float((logits.argmax(1) == yp).double().mean()),
        "probe_within": float((logits.masked_fill(~own, -math.inf).argmax(1) == yp).double().mean()),
    }


def forgetting_report(
    model: nn.Module, data: data_mod.Data, tasks: list[list[int]], *, weight_decay: float = 1e-3
) -> dict:
    """:func:`network_accuracies` and :func:`probe_accuracies` (on ``model.features``) of one
    model on the test inputs of the past tasks, plus ``gap`` = ``probe_all`` − ``net_all``
    (the share of forgetting that is *shallow*: separable features, failing classifier)."""
    Xtr, ytr = data.tensors("train")
    Xte, yte = data.tensors("test")
    out = network_accuracies(model, Xte, yte, tasks)
    out.update(probe_accuracies(extract(model, Xtr), ytr, extract(model, Xte), yte, tasks, weight_decay=weight_decay))
    out["gap"] = out["probe_all"] - out["net_all"]
    return out


def deep_forgetting(run: ContinualRun) -> pd.DataFrame:
    r"""Deep forgetting as Lanzillotta et al. define it: for every past task j (all but the last),
    :math:`F^{\text{deep}}_j = A^*_{jj} - A^*_{Tj}`, the accuracy of a K-way linear probe (fitted on
    the frozen features of all training data) on task j's test inputs at the end of task j minus
    the same at the end of training; likewise the network's own shallow forgetting
    :math:`F_j = A_{jj} - A_{Tj}`. One row per past task: ``task``, ``probe_then``, ``probe_end``,
    ``deep`` and ``shallow``. Needs a run trained with ``ContinualConfig(probe_tasks=True)``."""
    if not isinstance(run, ContinualRun):
        raise TypeError(f"run must be a ContinualRun, got {type(run).__name__}")
    acc = run.accuracy
    if "probe" not in acc or not run.config.probe_tasks:
        raise ValueError("run has no per-task probe accuracies: train it with ContinualConfig(probe_tasks=True)")
    last = len(run.tasks) - 1
    if last < 1:
        raise ValueError("need at least two tasks")
    at = acc.set_index(["after_task", "task"])
    rows = []
    for j in range(last):
        then, end = at.loc[(j, j)], at.loc[(last, j)]
        rows.append(
            {
                "task": j,
                "probe_then": float(then.probe),
                "probe_end": float(end.probe),
                "deep": float(then.probe - end.probe),
                "shallow": float(then.accuracy - end.accuracy),
            }
        )
    return pd.DataFrame(rows)


def replay_geometry(
    Z: Tensor, y: Tensor, buffer: ReplayBuffer, current: list[int], *, seed: int = 0, global_mean: Tensor | None = None
) -> pd.DataFrame:
    r"""How the replayed samples of each past class sit in feature space, against controls of
    **equal sample count** n (the buffer size of that class):

    * ``erank_buffer`` — effective rank (:func:`nclib.evaluation.effective_rank`, centred) of the
      features of the n buffered samples of class k;
    * ``erank_rest`` — the same for n other training samples of class k (never replayed);
    * ``erank_current`` — the same for n training samples of the current (last) task's classes
      (averaged over those classes);
    * ``spread_buffer`` / ``spread_rest`` — their mean squared distance to their own mean (the
      trace of the within-class covariance, same n): how tightly the replayed samples collapse
      compared with other samples of their class;
    * ``norm_buffer`` / ``norm_class`` / ``norm_current`` — the norm of the mean of those features
      minus the global mean :math:`\mu_G` of all rows of Z: buffered samples, all samples of class
      k, n samples of the current classes (averaged);
    * ``inflation`` = ``norm_buffer`` / ``norm_class``.

    A centred cloud of n points has rank at most n − 1, so ranks are only comparable at equal n;
    classes with fewer than 2 buffered samples get ``nan`` ranks. ``Z`` holds the training
    features (rows indexed like the buffer's indices), ``seed`` draws the equal-n controls."""
    if not isinstance(Z, Tensor) or Z.ndim != 2:
        raise ValueError("Z must be an N×D tensor of training features")
    if not isinstance(y, Tensor) or y.shape != (Z.shape[0],):
        raise ValueError("y must hold one label per row of Z")
    if not isinstance(buffer, ReplayBuffer):
        raise TypeError(f"buffer must be a ReplayBuffer, got {type(buffer).__name__}")
    current = [int(c) for c in current]
    if not current or any(not (y == c).any() for c in current):
        raise ValueError(f"current must list classes present in y, got {current}")
    Z = Z.detach().double()
    mu = Z.mean(0) if global_mean is None else global_mean.double()

    def norm(rows):
        return float((rows.mean(0) - mu).norm())

    def erank(rows):
        return effective_rank(rows, center=True) if len(rows) >= 2 else math.nan

    def spread(rows):
        return float((rows - rows.mean(0)).pow(2).sum(1).mean()) if len(rows) >= 2 else math.nan

    out = []
    for k in buffer.classes:
        b = buffer.indices(k)
        n = len(b)
        if n == 0:
            continue
        rest = (y == k).nonzero().flatten()
        rest = rest[~torch.isin(rest, b)]
        g = _generator(seed, k)
        rest_n = rest[torch.randperm(len(rest), generator=g)[:n]]
        cur_r, cur_n = [], []
        for c in current:
            ic = (y == c).nonzero().flatten()
            ic = ic[torch.randperm(len(ic), generator=_generator(seed, k, c))[:n]]
            cur_r.append(erank(Z[ic]))
            cur_n.append(norm(Z[ic]))
        out.append(
            {
                "class": k,
                "n": n,
                "erank_buffer": erank(Z[b]),
                "erank_rest": erank(Z[rest_n]) if len(rest_n) == n else math.nan,
                "spread_buffer": spread(Z[b]),
                "spread_rest": spread(Z[rest_n]) if len(rest_n) == n else math.nan,
                "erank_current": sum(cur_r) / len(cur_r),
                "norm_buffer": norm(Z[b]),
                "norm_class": norm(Z[y == k]),
                "norm_current": sum(cur_n) / len(cur_n),
            }
        )
    df = pd.DataFrame(out)
    if len(df):
        df["inflation"] = df.norm_buffer / df.norm_class
    return df
