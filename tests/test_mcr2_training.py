"""fit(loss="mcr2"), the clean validation hold-out, log_rates, and the projection head."""

import hashlib
import json
import math

import pytest
import torch

from nclib.data import gaussian_mixture
from nclib.models import Projected, build
from nclib.train import TrainConfig, fit, library_fingerprint

TINY = dict(
    data="gaussian",
    data_kwargs={"num_classes": 3, "dim": 6, "n_per_class": 40, "n_test_per_class": 20, "separation": 4.0, "seed": 0},
    model="mlp",
    model_kwargs={"width": 16, "depth": 1},
    epochs=4,
    n_logs=3,
    batch_size=60,
)


def test_new_fields_at_defaults_leave_the_cache_key_unchanged():
    cfg = TrainConfig(epochs=5, lr=0.1)
    blob = json.dumps({"config": {"epochs": 5, "lr": 0.1}, "nclib": library_fingerprint()}, sort_keys=True, default=str)
    assert cfg.key() == hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert cfg.replace(mcr2_eps=math.sqrt(0.5), mcr2_components=20, val_size=0, log_rates=False).key() == cfg.key()
    assert cfg.replace(val_size=10).key() != cfg.key()
    assert cfg.replace(loss="mcr2").key() != cfg.replace(loss="mcr2", mcr2_eps=1.0).key()


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        ({"loss": "hinge"}, ValueError, "loss must be"),
        ({"mcr2_eps": 0.0}, ValueError, "mcr2_eps"),
        ({"mcr2_eps": float("nan")}, ValueError, "mcr2_eps"),
        ({"mcr2_components": 0}, ValueError, "mcr2_components"),
        ({"val_size": -1}, ValueError, "val_size"),
        ({"log_rates": 1}, TypeError, "log_rates"),
    ],
)
def test_config_validation(kw, exc, match):
    with pytest.raises(exc, match=match):
        TrainConfig(**kw)


def test_projection_head():
    base = build("mlp", (6,), 3, width=16, depth=1, seed=1)
    m = build("mlp", (6,), 3, width=16, depth=1, seed=1, projection=5).eval()
    assert isinstance(m, Projected)
    x = torch.randn(4, 6)
    assert m.features(x).shape == (4, 5) and m(x).shape == (4, 3)
    # same seed, same weights; the backbone is the model built without the projection
    m2 = build("mlp", (6,), 3, width=16, depth=1, seed=1, projection=5)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(m.base.body[0].weight, base.body[0].weight)
    assert not any(n.startswith("base.classifier") for n, _ in m.named_parameters())
    with pytest.raises(ValueError, match="projection"):
        build("mlp", (6,), 3, projection=0)


def test_validation_hold_out_is_clean_disjoint_and_logged():
    cfg = TrainConfig(**TINY, val_size=30, label_noise=0.5, log_rates=True)
    run = fit(cfg, cache=False, progress=False)
    clean = gaussian_mixture(**TINY["data_kwargs"])
    Xc, yc = clean.tensors("train")
    Xtr, ytr = run.data.tensors("train")
    Xva, yva = run.data.info["val"].tensors
    assert len(Xtr) == 90 and len(Xva) == 30
    # every validation row is a training row of the clean data set with its clean label
    idx = torch.cdist(Xva, Xc).argmin(1)
    assert torch.equal(Xc[idx], Xva) and torch.equal(yc[idx], yva)
    # and not among the rows trained on
    assert torch.cdist(Xva, Xtr).min() > 0
    # half of the remaining training labels are wrong
    assert int(run.data.info["flipped"].sum()) == 45
    for col in ("val_error", "rate", "rate_c", "rate_within", "class_rank"):
        assert col in run.history and run.history[col].notna().all()
    assert (run.history.rate >= run.history.rate_c - 1e-9).all()  # ΔR ≥ 0
    # every epoch's validation and test errors are in the curve, equal to the history's at logged epochs
    assert run.curve.val_error.notna().all() and len(run.curve) == cfg.epochs
    both = run.history.merge(run.curve, on="epoch", suffixes=("", "_curve"))
    assert len(both) == len(run.history) - 1  # all logged epochs but 0
    assert (both.val_error == both.val_error_curve).all()
    # the history's test error is computed in float64 from the features, the curve's from float32 logits:
    # a near-tie may flip, nothing more
    assert ((both.test_error - both.test_error_curve).abs() <= 2 / 60 + 1e-12).all()


def test_fit_mcr2_trains_the_feature_map_only():
    cfg = TrainConfig(
        **{**TINY, "model_kwargs": {"width": 16, "depth": 1, "projection": 8}, "epochs": 6, "n_logs": 6},
        loss="mcr2",
        lr=0.05,
        mcr2_components=3,
        val_size=30,
    )
    init = build("mlp", (6,), 3, width=16, depth=1, projection=8, seed=0)
    run = fit(cfg, cache=False, progress=False)
    h = run.history
    # the objective −ΔR decreases and ΔR = R − R_c grows
    assert run.curve.train_loss.iloc[-1] < run.curve.train_loss.iloc[0]
    assert (h.rate - h.rate_c).iloc[-1] > (h.rate - h.rate_c).iloc[0]
    # classifier head untouched; backbone and projection trained
    assert torch.equal(run.model.classifier.weight, init.classifier.weight)
    assert not torch.equal(run.model.projection.weight, init.projection.weight)
    # nearest-subspace errors, NC metrics of the normalised features, running error undefined
    for col in ("train_error", "test_error", "val_error", "nc1", "class_rank"):
        assert h[col].notna().all()
    assert h.test_error.iloc[-1] < 0.2  # well separated mixture
    assert run.curve.train_error_running.isna().all() and run.tpt_start is None
