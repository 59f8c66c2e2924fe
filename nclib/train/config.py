"""``TrainConfig``: everything that determines a training run, and its cache key."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .. import _validate as _v
from ..losses import LOSSES
from .cache import config_key

__all__ = ["TrainConfig"]

_BUILTIN_LOSSES = ("ce", "mse", "mcr2")


def _registered_losses() -> dict:
    """The named extra losses (:data:`nclib.losses.LOSSES`)."""
    return LOSSES


def _milestones(v) -> tuple[int, ...]:
    """Learning-rate milestones as a tuple of epochs ≥ 1 (whole floats such as 10.0 accepted)."""
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(f"milestones must be a sequence of epochs, got {type(v).__name__} {v!r}")
    out = []
    for i, m in enumerate(v):
        f = _v.real(m, f"milestones[{i}]", lo=1)
        if f != int(f):
            raise ValueError(f"milestones[{i}] must be a whole epoch, got {m!r}")
        out.append(int(f))
    return tuple(out)


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
    ``target_loss`` > 0 ends training at the end of the first epoch whose running training loss
    (the mean over its mini-batches) is at or below it — Hui et al.'s (2022) "train to a target
    loss" protocol; that epoch is then logged too, and ``epochs`` is the cap (0: off).
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
    target_loss: float = 0.0

    def __post_init__(self):
        if self.loss not in _BUILTIN_LOSSES and self.loss not in _registered_losses():
            raise ValueError(
                f"loss must be 'ce', 'mse', 'mcr2' or a loss registered in nclib.losses.LOSSES "
                f"({sorted(_registered_losses())}), got {self.loss!r}"
            )
        if not isinstance(self.loss_kwargs, dict):
            raise TypeError(f"loss_kwargs must be a dict, got {type(self.loss_kwargs).__name__}")
        if self.loss_kwargs and self.loss in _BUILTIN_LOSSES:
            raise ValueError(f"loss_kwargs are for registered losses; loss={self.loss!r} takes none")
        if not (
            isinstance(self.mcr2_eps, (int, float))
            and not isinstance(self.mcr2_eps, bool)
            and math.isfinite(self.mcr2_eps)
            and self.mcr2_eps > 0
        ):
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
            _v.integer(getattr(self, name), name, lo=1)
        # checked, not converted: the cache key is built from the values as given
        _v.positive(self.lr, "lr")
        _v.nonnegative(self.weight_decay, "weight_decay")
        _v.nonnegative(self.target_loss, "target_loss")
        _v.real(self.momentum, "momentum", lo=0.0, hi=1.0, hi_open=True)
        _v.positive(self.gamma, "gamma")
        _v.real(self.label_noise, "label_noise", lo=0.0, hi=1.0, hi_open=True)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        object.__setattr__(self, "milestones", _milestones(self.milestones))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Cache key: sha256 of the config's non-default fields and :func:`library_fingerprint`
        (nclib's source, torch version, numerics). Fields at their default value are left out."""
        changed = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        }
        return config_key({"config": changed}, "train")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)
