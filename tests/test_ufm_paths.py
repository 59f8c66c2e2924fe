"""Tests of nclib.ufm's low-rank deep-UFM construction and the central path of a trained network."""

import math

import pytest
import torch
import torch.nn.functional as F

from nclib import ufm
from nclib.train import TrainConfig, fit

F64 = torch.float64


# ----------------------------------------------------------------------------- low-rank construction
@pytest.mark.parametrize(("K", "L"), [(10, 3), (10, 4), (6, 2), (5, 4), (3, 3)])
def test_low_rank_configuration_objective_ranks_and_relu_identity(K, L):
    lam, n = 1e-2, 3
    c = ufm.low_rank_configuration(K, n, L, K + 2, lam_H=lam, lam_W=lam)
    kw = dict(
        labels=c["labels"], layers=c["layers"], activation="relu", loss="mse", lam_H=lam, lam_W=lam, lam_layers=lam
    )
    assert float(ufm.ufm_objective(c["H"], c["W"], **kw)) == pytest.approx(c["objective"], rel=1e-10)
    m = 2
    while m * (m - 1) // 2 < K:
        m += 1
    assert c["rank"] == m
    feats = ufm.ufm_forward(c["H"], c["layers"], "relu")
    ranks = [int(torch.linalg.matrix_rank(h)) for h in feats]
    assert ranks == [m] * (L - 1) + [K]
    # the last features are a multiple of the one-hot targets: the ReLU turned B^T B - J into I
    Y = F.one_hot(c["labels"], K).to(F64)
    last = feats[-1][:, :K]
    scale = float(last.max())
    assert scale > 0 and torch.allclose(last, scale * Y, atol=1e-12)
    assert feats[-1][:, K:].abs().max() == 0
    # the output is s Y and the cost constant has the closed ratio m^(L-1) / (2 K^(L-2))
    assert torch.allclose(feats[-1] @ c["W"].T, c["s"] * Y, atol=1e-12)
    assert c["C_ratio"] == pytest.approx(m ** (L - 1) / (2 * K ** (L - 2)), rel=1e-12)


def test_low_rank_configuration_against_dnc_and_balance():
    lam, n = 1e-2, 4
    dnc = {L: ufm.dnc_loss(10, n, L, lam_H=lam, lam_W=lam)["objective"] for L in (3, 4)}
    # K = 10 (m = 5): C ratio 1.25 at L = 3 (worse than DNC), 0.625 at L = 4 (better), for any lambda
    assert ufm.low_rank_configuration(10, n, 3, 10, lam_H=lam, lam_W=lam)["objective"] > dnc[3]
    assert ufm.low_rank_configuration(10, n, 4, 10, lam_H=lam, lam_W=lam)["objective"] < dnc[4]
    # unbalancing two scales (product fixed) raises the objective
    c = ufm.low_rank_configuration(10, n, 4, 12, lam_H=lam, lam_W=lam)
    kw = dict(
        labels=c["labels"], layers=c["layers"], activation="relu", loss="mse", lam_H=lam, lam_W=lam, lam_layers=lam
    )
    assert float(ufm.ufm_objective(1.1 * c["H"], c["W"] / 1.1, **kw)) > c["objective"]
    # a strong penalty collapses everything to zero (objective 1/2), as for DNC
    big = ufm.low_rank_configuration(10, n, 4, 10, lam_H=1.0, lam_W=1.0)
    assert big["s"] == 0.0 and big["objective"] == pytest.approx(0.5)
    # more vertices than needed: rank m, still a valid configuration
    c7 = ufm.low_rank_configuration(10, n, 3, 10, lam_H=lam, lam_W=lam, vertices=7)
    assert c7["rank"] == 7 and c7["C_ratio"] == pytest.approx(49 / 20)


def test_low_rank_configuration_validates():
    with pytest.raises(ValueError, match="depth"):
        ufm.low_rank_configuration(10, 2, 1, 10, lam_H=1e-2, lam_W=1e-2)
    with pytest.raises(ValueError, match="width"):
        ufm.low_rank_configuration(10, 2, 3, 9, lam_H=1e-2, lam_W=1e-2)
    with pytest.raises(ValueError, match="vertices"):
        ufm.low_rank_configuration(10, 2, 3, 10, lam_H=1e-2, lam_W=1e-2, vertices=4)
    with pytest.raises(ValueError, match="positive"):
        ufm.low_rank_configuration(10, 2, 3, 10, lam_H=1e-2, lam_W=0.0)


# ----------------------------------------------------------------------------- central path of a network
@pytest.fixture(scope="module")
def mse_run():
    cfg = TrainConfig(
        data="mnist1d",
        data_kwargs={"n_train": 120, "n_test": 40, "seed": 0},
        model="mlp",
        model_kwargs={"width": 16, "depth": 1, "batchnorm": False},
        loss="mse",
        lr=0.05,
        weight_decay=1e-2,
        epochs=3,
        batch_size=40,
        n_logs=3,
        measure_test=False,
    )
    return fit(cfg, cache=False, progress=False, keep_states=(0, 3))


def test_network_central_path_is_an_exact_split_of_the_last_layer_loss(mse_run):
    cp = ufm.network_central_path(mse_run)
    assert list(cp.epoch) == [0, 3]
    lam = mse_run.config.weight_decay
    for e, row in cp.set_index("epoch").iterrows():
        H, y = mse_run.features_at(e)
        head = mse_run.model_at(e).classifier
        W, b = head.weight.detach().double(), head.bias.detach().double()
        Y = F.one_hot(y, 10).to(F64)
        direct = 0.5 * (H @ W.T + b - Y).pow(2).sum() / len(y) + 0.5 * lam * (W.pow(2).sum() + b.pow(2).sum())
        assert row.L_ls + row.L_perp == pytest.approx(float(direct), rel=1e-10)
        assert row.L_ls == pytest.approx(row.L_nc1 + row.L_nc23, rel=1e-12)
        assert row.L_perp >= 0 and row.perp_ratio == pytest.approx(row.L_perp / row.L_ls)
        # the least-squares classifier itself: direct loss = L_ls
        Ws, bs = ufm.least_squares_classifier(H, labels=y, num_classes=10, lam_W=lam, lam_b=lam)
        ls = 0.5 * (H @ Ws.T + bs - Y).pow(2).sum() / len(y) + 0.5 * lam * (Ws.pow(2).sum() + bs.pow(2).sum())
        assert float(ls) == pytest.approx(row.L_ls, rel=1e-10)
    assert math.isfinite(cp.classifier_gap.iloc[-1])
    assert list(ufm.network_central_path(mse_run, epochs=[3]).epoch) == [3]


def test_network_central_path_validates(mse_run):
    with pytest.raises(TypeError, match="Run"):
        ufm.network_central_path(object())
    with pytest.raises(ValueError, match="kept state"):
        ufm.network_central_path(mse_run, epochs=[1])
    with pytest.raises(TypeError, match="epochs"):
        ufm.network_central_path(mse_run, epochs=3)
    ce = type("R", (), {"config": TrainConfig(loss="ce"), "states": {0: {}}, "features_at": None, "model_at": None})()
    with pytest.raises(ValueError, match="MSE"):
        ufm.network_central_path(ce)
