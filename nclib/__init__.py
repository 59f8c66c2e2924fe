"""nclib — exact, streaming neural-collapse measurements and the experiments of the
Neural Collapse companion book.

Modules (one responsibility each; see CONTRIBUTING.md):

* :mod:`nclib.metrics`  — per-class feature statistics and every NC measurement
* :mod:`nclib.geometry` — simplex ETFs, the nearest ETF
* :mod:`nclib.data`     — MNIST-1D (procedural), digits, Gaussian mixtures, torchvision sets
"""

__version__ = "0.1.0"

from . import geometry, metrics  # noqa: E402,F401  (light: torch/numpy only)

__all__ = ["__version__", "metrics", "geometry"]
