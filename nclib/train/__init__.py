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

from .cache import _source_hash, atomic_save, cache_dir, library_fingerprint, module_closure  # noqa: F401
from .config import TrainConfig  # noqa: F401
from .loop import Run, epoch_below, features_of, fit, log_epochs, stays_zero_from  # noqa: F401
from .recipes import recipe, resolve_profile  # noqa: F401
from .workers import _fit_in_child, _worker_command, fit_many, processes_default, run_workers  # noqa: F401

__all__ = [
    "TrainConfig",
    "Run",
    "fit",
    "fit_many",
    "library_fingerprint",
    "module_closure",
    "log_epochs",
    "cache_dir",
    "atomic_save",
    "recipe",
    "resolve_profile",
    "features_of",
    "epoch_below",
    "stays_zero_from",
    "run_workers",
    "processes_default",
]
