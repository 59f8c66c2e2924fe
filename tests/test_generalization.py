"""Hui et al.'s train-to-target-loss protocol: the config and ``TrainConfig.target_loss`` in ``fit``."""

import math

import pytest

from nclib import generalization as gen
from nclib.train import TrainConfig, fit


def test_target_loss_config_is_the_size_sweep_with_hui_et_al_s_stopping_rule():
    base = gen.size_sweep_config("quick", 500, seed=3)
    cfg = gen.target_loss_config("quick", 500, seed=3, target=0.05, max_steps=400)
    assert cfg.target_loss == 0.05 and cfg.weight_decay == 0.0 and cfg.schedule == "constant"
    # 500 samples, batch 128: 3 full batches and a trailing one of 116 -> 4 steps an epoch
    assert cfg.epochs == gen.budget_epochs(500, 128, 400) == 100
    same = ("data", "data_kwargs", "model", "model_kwargs", "lr", "momentum", "batch_size", "n_logs", "seed")
    assert all(getattr(cfg, f) == getattr(base, f) for f in same)
    assert gen.target_loss_config("quick", 250).target_loss == gen.TARGET_LOSS["quick"]


@pytest.mark.parametrize("target", [0, -1e-3, 10, math.nan, True, "1e-3"])
def test_target_loss_config_validates(target):
    with pytest.raises(ValueError):
        gen.target_loss_config("quick", 250, target=target)


def test_target_loss_default_leaves_the_cache_key_unchanged_and_validates():
    cfg = TrainConfig(epochs=3)
    assert cfg.key() == cfg.replace(target_loss=0.0).key() != cfg.replace(target_loss=0.1).key()
    with pytest.raises(ValueError):
        TrainConfig(target_loss=-1.0)


def _tiny(**kw):
    return TrainConfig(
        data="mnist1d",
        data_kwargs={"n_train": 200, "n_test": 100, "seed": 0},
        model="mlp",
        model_kwargs={"width": 32, "depth": 2},
        lr=0.1,
        weight_decay=0.0,
        schedule="constant",
        epochs=60,
        batch_size=50,
        n_logs=5,
        **kw,
    )


def test_fit_stops_at_the_first_epoch_whose_running_loss_reaches_the_target():
    full = fit(_tiny(), cache=False, progress=False)
    loss = full.curve.set_index("epoch").train_loss
    target = float(loss.quantile(0.5))  # reached half-way through the full run
    hit = int(loss[loss <= target].index.min())
    r = fit(_tiny(target_loss=target), cache=False, progress=False)
    assert r is not None
    assert int(r.curve.epoch.iloc[-1]) == hit  # the same trajectory up to the first epoch at the target
    assert int(r.history.epoch.iloc[-1]) == hit  # and that epoch is measured
    assert r.curve.train_loss.iloc[-1] <= target < r.curve.train_loss.iloc[:-1].min()
    assert abs(r.history.train_loss.iloc[-1] - loss[hit]) < 1e-12


def test_an_unreached_target_runs_to_the_epoch_cap():
    r = fit(_tiny(target_loss=1e-12), cache=False, progress=False)
    assert int(r.curve.epoch.iloc[-1]) == 60 and int(r.history.epoch.iloc[-1]) == 60
