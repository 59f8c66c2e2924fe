"""nclib — exact, streaming neural-collapse measurements and the experiments of the
Neural Collapse companion book.

Modules (one responsibility each; see CONTRIBUTING.md): ``metrics``, ``geometry``, ``data``,
``models``, ``losses``, ``features``, ``train`` (a package), ``ufm`` (a package), ``plots``, ``claims``,
``profiles``, and the chapter modules.
Submodules are imported on first use, so ``import nclib`` stays light.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "metrics",
    "geometry",
    "data",
    "models",
    "losses",
    "noise",
    "evaluation",
    "train",
    "ufm",
    "plots",
    "claims",
    "profiles",
    "transfer",
    "imbalance",
    "generalization",
    "continual",
    "stats",
    "features",
)

__all__ = ["__version__", "setup_notebook", "seed_family", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in ("setup_notebook", "seed_family"):  # lazily, like the submodules: profiles imports
        # __version__ from this package, so a static import here would close a circle
        return getattr(importlib.import_module(".profiles", __name__), name)
    raise AttributeError(f"module 'nclib' has no attribute {name!r}")
