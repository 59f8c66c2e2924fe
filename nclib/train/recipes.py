"""Named training recipes (one per experiment family and profile) and the profile fallback."""

from __future__ import annotations

from .. import data as data_mod
from ..profiles import check_profile
from .config import TrainConfig

__all__ = ["recipe", "resolve_profile"]

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
        print(
            f"[nclib] The full profile needs {dataset}, which could not be loaded or downloaded "
            f"({type(e).__name__}: {e}). Falling back to the QUICK profile: same claims, smaller experiment."
        )
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
            cfg = TrainConfig(
                data="mnist1d",
                data_kwargs={"n_train": 2000, "n_test": 1000, "seed": 0},
                model="mlp",
                model_kwargs={"width": 512, "depth": 3, "batchnorm": True},
                lr=0.05,
                weight_decay=5e-3,
                epochs=300,
                milestones=(100, 200),
                batch_size=128,
                n_logs=30,
            )
        else:
            cfg = TrainConfig(
                data="cifar10",
                data_kwargs={"download": True},
                model="resnet18",
                model_kwargs={},
                lr=0.05,
                weight_decay=5e-4,
                epochs=350,
                milestones=(117, 233),
                batch_size=128,
                n_logs=30,
            )
    else:
        raise ValueError(f"unknown recipe {name!r}; known: 'papyan'")
    return cfg.replace(**overrides) if overrides else cfg
