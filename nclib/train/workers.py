"""Several runs in parallel worker processes: :func:`fit_many` and the shared pool :func:`run_workers`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import torch

from ..profiles import default_device
from .cache import run_dir
from .config import TrainConfig
from .loop import Run, _check_keep_states, _pbar, fit

__all__ = ["fit_many", "run_workers", "processes_default"]


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
        res = run_dir("runs", k) / "result.pt"
        if k not in seen and not res.exists():
            todo.append(c)
        seen.add(k)
    if len(todo) > 1 and procs > 1 and default_device().type == "cpu":
        threads = torch.get_num_threads()
        jobs = [(f"seed {c.seed}", {"config": c.to_dict(), "keep_states": keep, "threads": threads}) for c in todo]
        run_workers(_worker_command(), jobs, min(procs, len(todo)), progress=progress, what="fit_many")
    return [fit(c, progress=progress, keep_states=keep) for c in cfgs]
