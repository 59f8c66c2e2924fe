"""The two run profiles and the per-notebook setup.

* ``quick`` — the default: CPU, embedded data (MNIST-1D, digits, Gaussian mixtures), small
  models; every chapter executes in a few minutes on 2 cores. This is what CI and the book
  build run.
* ``full`` — paper scale on a GPU (e.g. Colab): torchvision data sets, ResNet-18, Papyan's
  350-epoch recipe. When the torchvision data cannot be had (no network), chapters say so and
  fall back to ``quick`` — with the same claims, checked the same way.

A chapter chooses its profile in its ``parameters`` cell (``PROFILE``, ``SEED``) and passes it
explicitly; nothing here is a hidden global switch except that :func:`setup_notebook` exports
``NCLIB_PROFILE`` so claim records carry the profile they were measured under.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

PROFILES = ("quick", "full")

__all__ = ["PROFILES", "check_profile", "default_device", "setup_notebook", "pick", "seed_family"]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    return profile


def default_device(device=None) -> torch.device:
    """``device`` if given, else CUDA when available, else Apple MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick(profile: str, quick, full):
    """``quick`` or ``full`` by profile — the one place a chapter's settings differ."""
    return quick if check_profile(profile) == "quick" else full


def setup_notebook(profile: str = "quick", seed: int = 0, *, verbose: bool = True) -> torch.device:
    """Common first step of every chapter: check the profile, seed Python/NumPy/torch, set the
    plotting theme, and return the device that training will use."""
    check_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"SEED must be an int, got {type(seed).__name__}")
    os.environ["NCLIB_PROFILE"] = profile
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        from . import plots

        plots.set_theme()
    except ImportError:  # plotting stack missing: the numbers still work
        pass
    dev = default_device()
    if verbose:
        from . import __version__

        print(f"nclib {__version__} · profile={profile} · seed={seed} · device={dev} · torch {torch.__version__}")
    return dev


def seed_family(seed: int, n: int = 3) -> list[int]:
    """The seeds a chapter's reproduction claims are measured on: ``seed, seed+1, ..., seed+n-1``.

    A chapter's ``parameters`` cell sets ``SEED`` (the family; ``$NCLIB_SEED``, default 0) and
    ``N_SEEDS`` (``$NCLIB_SEEDS``, default 3); the calibration runs the same chapter with a
    larger ``N_SEEDS``, so the book's default family is part of the calibrated one."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"SEED must be an int, got {type(seed).__name__}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"N_SEEDS must be a positive int, got {n!r}")
    return [seed + i for i in range(n)]
