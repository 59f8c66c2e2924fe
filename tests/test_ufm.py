"""Tests of nclib.ufm: the UFM solver against closed forms, and every helper on an analytic case."""

import math
import random

import numpy as np
import pytest
import torch

from nclib import ufm
from nclib.geometry import simplex_etf

F64 = torch.float64


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64)


# ----------------------------------------------------------------------------- labels, objective, gradients
def test_class_labels():
    assert ufm.class_labels([2, 1, 3]).tolist() == [0, 0, 1, 2, 2, 2]
    assert ufm.class_labels(torch.tensor([1, 1])).tolist() == [0, 1]
    with pytest.raises(ValueError, match="at least 2"):
        ufm.class_labels([3])
    with pytest.raises(ValueError, match="counts\\[1\\]"):
        ufm.class_labels([3, 0])
    with pytest.raises(TypeError):
        ufm.class_labels("33")


def test_objective_matches_hand_computation():
    N, D, K = 6, 3, 3
    H, W, b = _rand(N, D, seed=1), _rand(K, D, seed=2), _rand(K, seed=3)
    A = _rand(D, D, seed=4)
    y = ufm.class_labels([2, 2, 2])
    Z = torch.relu(H @ A.T) @ W.T + b
    ce = -torch.log_softmax(Z, 1)[torch.arange(N), y].mean()
    reg = 0.1 / 2 * H.pow(2).sum() + 0.2 / 2 * W.pow(2).sum() + 0.3 / 2 * b.pow(2).sum() + 0.4 / 2 * A.pow(2).sum()
    F = ufm.ufm_objective(
        H, W, labels=y, b=b, layers=[A], activation="relu", loss="ce", lam_H=0.1, lam_W=0.2, lam_b=0.3, lam_layers=0.4
    )
    assert float(F) == pytest.approx(float(ce + reg), rel=1e-14)
    Y = torch.nn.functional.one_hot(y, K).to(F64)
    mse = 0.5 * (Z - Y).pow(2).sum() / N
    F = ufm.ufm_objective(
        H,
        W,
        labels=y,
        b=b,
        layers=[A],
        activation="relu",
        loss="mse",
        lam_H=0.1,
        lam_W=0.2,
        lam_b=0.3,
        lam_layers=[0.4],
    )
    assert float(F) == pytest.approx(float(mse + reg), rel=1e-14)


def test_objective_validation():
    H, W = _rand(4, 3), _rand(2, 3)
    y = ufm.class_labels([2, 2])
    with pytest.raises(ValueError, match="loss"):
        ufm.ufm_objective(H, W, labels=y, loss="hinge")
    with pytest.raises(ValueError, match="needs labels"):
        ufm.ufm_objective(H, W)
    with pytest.raises(ValueError, match="W must have 3 columns"):
        ufm.ufm_objective(H, _rand(2, 4), labels=y)
    with pytest.raises(ValueError, match="lam_H"):
        ufm.ufm_objective(H, W, labels=y, lam_H=-1.0)
    with pytest.raises(ValueError, match="targets must have shape"):
        ufm.ufm_objective(H, W, targets=_rand(4, 3), loss="mse")
    with pytest.raises(TypeError, match="H must be a torch.Tensor"):
        ufm.ufm_objective(np.zeros((4, 3)), W, labels=y)


@pytest.mark.parametrize("loss,activation", [("ce", "relu"), ("mse", "linear"), ("mse", "relu")])
def test_manual_gradients_match_autograd(loss, activation):
    N, D, K = 8, 5, 4
    H, W, b = _rand(N, D, seed=1), _rand(K, D, seed=2), _rand(K, seed=3)
    layers = [_rand(6, D, seed=4), _rand(D, 6, seed=5)]
    y = ufm.class_labels([2] * K)
    Y = torch.nn.functional.one_hot(y, K).to(F64)
    lams = [0.1, 0.2, 0.3, 0.4, 0.5]
    params = [H, *layers, W, b]
    for p in params:
        p.requires_grad_(True)
    F = ufm.ufm_objective(
        H,
        W,
        labels=y,
        b=b,
        layers=layers,
        activation=activation,
        loss=loss,
        lam_H=0.1,
        lam_layers=[0.2, 0.3],
        lam_W=0.4,
        lam_b=0.5,
    )
    auto = torch.autograd.grad(F, params)
    with torch.no_grad():
        manual = ufm.solver._gd_gradients(H, layers, W, b, Y, loss, activation, lams)
    for a, m in zip(auto, manual):
        torch.testing.assert_close(a, m, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- convergence to NC and closed forms
def test_balanced_ce_ufm_converges_to_nc_and_the_closed_form():
    K, n, D, lam = 4, 5, 6, 5e-4
    r = ufm.train_ufm(
        num_classes=K,
        n_per_class=n,
        dim=D,
        loss="ce",
        bias=True,
        lam_H=lam,
        lam_W=lam,
        lam_b=lam,
        lr=4.0,
        steps=3000,
        log_every=1000,
        seed=3,
        progress=False,
    )
    last = r.history.iloc[-1]
    assert last["nc1"] < 1e-3 and last["etf_error"] < 1e-2
    assert last["self_duality"] < 1e-3
    opt = ufm.ce_ufm_optimum(K, n, lam_W=lam, lam_H=lam)
    assert r.objective() == pytest.approx(opt["objective"], rel=1e-6)
    # the optimum's geometry: feature norm h and classifier row norm w
    assert float(r.W.norm(dim=1).mean()) == pytest.approx(opt["w_norm"], rel=1e-3)
    assert float(r.H.norm(dim=1).mean()) == pytest.approx(opt["h_norm"], rel=1e-3)


def test_ce_optimum_formula():
    K, n, lam = 5, 3, 1e-3
    opt = ufm.ce_ufm_optimum(K, n, lam_W=lam, lam_H=lam)
    kappa, a = math.sqrt(lam * lam * K * K * n), K / (K - 1)
    f = lambda p: math.log1p((K - 1) * math.exp(-a * p)) + kappa * p  # noqa: E731
    grid = np.linspace(0, 3 * opt["p"], 200001)
    best = min(grid, key=f)
    assert opt["p"] == pytest.approx(best, abs=1e-3)
    assert opt["objective"] == pytest.approx(f(opt["p"]), rel=1e-14)
    assert opt["w_norm"] * opt["h_norm"] == pytest.approx(opt["p"], rel=1e-12)
    # weight decay strong enough to kill the features: the optimum is log K at the origin
    assert ufm.ce_ufm_optimum(3, 2, lam_W=1.0, lam_H=1.0)["objective"] == pytest.approx(math.log(3))
    with pytest.raises(ValueError, match="lam_W"):
        ufm.ce_ufm_optimum(3, 2, lam_W=0.0, lam_H=1.0)


def test_balanced_mse_ufm_converges_to_the_soft_threshold_optimum():
    K, n, D, lam = 4, 5, 8, 5e-3
    r = ufm.train_ufm(
        num_classes=K,
        n_per_class=n,
        dim=D,
        loss="mse",
        lam_H=lam,
        lam_W=lam,
        lr=1.0,
        steps=3000,
        log_every=1000,
        seed=0,
        progress=False,
    )
    opt = ufm.mse_ufm_optimum(labels=r.labels, dim=D, lam_W=lam, lam_H=lam)
    # the balanced closed form, stated: F* = K c (sqrt(n) - N c / 2), c = sqrt(lam_W lam_H)
    c, N = lam, K * n
    assert opt["objective"] == pytest.approx(K * c * (math.sqrt(n) - N * c / 2), rel=1e-12)
    assert abs(r.objective() - opt["objective"]) / opt["objective"] < 1e-4
    # singular values of the product H Wᵀ: soft-thresholded sqrt(n) at N c
    s = torch.linalg.svdvals(r.H @ r.W.T)
    torch.testing.assert_close(s, torch.full((K,), math.sqrt(n) - N * c, dtype=F64), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(s, opt["singular_values"], rtol=1e-6, atol=1e-9)
    last = r.history.iloc[-1]
    assert last["nc1"] < 1e-3 and last["etf_error"] < 1e-2


def test_mse_optimum_with_bias_imbalance_and_rank_limit():
    lam = 1e-2
    # balanced with a free bias: (K-1) c (sqrt(n) - N c / 2)
    K, n = 3, 4
    opt = ufm.mse_ufm_optimum(labels=ufm.class_labels([n] * K), dim=K, lam_W=lam, lam_H=lam, bias=True)
    assert opt["objective"] == pytest.approx((K - 1) * lam * (math.sqrt(n) - K * n * lam / 2), rel=1e-12)
    # imbalanced, bias, and D = 1 < K - 1: only the top singular value survives; L-BFGS finds it
    counts = [2, 3, 5]
    r = ufm.train_ufm(
        counts=counts,
        dim=1,
        loss="mse",
        bias=True,
        lam_H=lam,
        lam_W=lam,
        optimizer="lbfgs",
        steps=100,
        log_every=100,
        record=(),
        seed=1,
        progress=False,
    )
    opt = ufm.mse_ufm_optimum(labels=r.labels, dim=1, lam_W=lam, lam_H=lam, bias=True)
    assert (opt["singular_values"] > 0).sum() == 1
    assert r.objective() == pytest.approx(opt["objective"], rel=1e-6)
    # the threshold removes everything when it exceeds the targets' singular values
    big = ufm.mse_ufm_optimum(labels=ufm.class_labels([2, 2]), dim=2, lam_W=10.0, lam_H=10.0)
    assert big["objective"] == pytest.approx(0.5) and float(big["singular_values"].sum()) == 0.0
    with pytest.raises(ValueError, match="exactly one"):
        ufm.mse_ufm_optimum(dim=2, lam_W=1.0, lam_H=1.0)


def test_fixed_etf_classifier_reaches_the_same_optimum():
    K, n, D, lam = 4, 3, 5, 5e-4
    opt = ufm.ce_ufm_optimum(K, n, lam_W=lam, lam_H=lam)
    E = simplex_etf(K, D, seed=2, scale=opt["w_norm"])
    r = ufm.train_ufm(
        num_classes=K,
        n_per_class=n,
        dim=D,
        loss="ce",
        lam_H=lam,
        lam_W=lam,
        fixed_W=E,
        optimizer="lbfgs",
        steps=100,
        log_every=50,
        progress=False,
    )
    torch.testing.assert_close(r.W, E)
    assert r.objective() == pytest.approx(opt["objective"], rel=1e-8)
    assert r.history.iloc[-1]["self_duality"] < 1e-6


# ----------------------------------------------------------------------------- central path
def test_least_squares_classifier_is_stationary():
    H, y = _rand(12, 4, seed=5), ufm.class_labels([4, 4, 4])
    W, b = ufm.least_squares_classifier(H, labels=y, lam_W=0.1, lam_b=0.05)
    W.requires_grad_(True)
    b.requires_grad_(True)
    F = ufm.ufm_objective(H, W, b=b, labels=y, loss="mse", lam_W=0.1, lam_b=0.05)
    gW, gb = torch.autograd.grad(F, [W, b])
    assert gW.abs().max() < 1e-12 and gb.abs().max() < 1e-12


@pytest.mark.parametrize("bias", [True, False])
def test_central_path_decomposition_is_exact(bias):
    H, y = _rand(12, 4, seed=6), ufm.class_labels([3, 4, 5])
    W, b = _rand(3, 4, seed=7), (_rand(3, seed=8) if bias else None)
    kw = dict(lam_W=0.1, lam_b=0.05, lam_H=0.02)
    d = ufm.central_path_decomposition(H, W, b, labels=y, **kw)
    F = ufm.ufm_objective(H, W, b=b, labels=y, loss="mse", **kw)
    assert d["objective"] == pytest.approx(float(F), rel=1e-12)
    assert min(d["L_nc1"], d["L_nc23"], d["L_perp"]) >= 0
    Ws, bs = ufm.least_squares_classifier(H, labels=y, lam_W=0.1, bias=bias, lam_b=0.05)
    on = ufm.central_path_decomposition(H, Ws, bs, labels=y, **kw)
    assert on["L_perp"] < 1e-14 and on["classifier_gap"] < 1e-12
    # collapsed features (every sample at its class mean): no NC1 part
    M = _rand(3, 4, seed=9)
    assert ufm.central_path_decomposition(M[y], W, b, labels=y, **kw)["L_nc1"] < 1e-14


# ----------------------------------------------------------------------------- deep NC
def test_dnc_loss_matches_its_configuration_and_the_shallow_optimum():
    K, n, lam = 4, 3, 1e-2
    for L in (2, 3):
        for act in ("linear", "relu"):
            cfg = ufm.dnc_configuration(K, n, L, 6, lam_H=lam, lam_W=lam)
            F = ufm.ufm_objective(
                cfg["H"],
                cfg["W"],
                labels=cfg["labels"],
                layers=cfg["layers"],
                activation=act,
                loss="mse",
                lam_H=lam,
                lam_W=lam,
                lam_layers=lam,
            )
            assert float(F) == pytest.approx(cfg["objective"], rel=1e-10)
            # moving any scale away from the AM-GM balance raises the loss
            H2 = 1.05 * cfg["H"]
            W2 = cfg["W"] / 1.05
            F2 = ufm.ufm_objective(
                H2,
                W2,
                labels=cfg["labels"],
                layers=cfg["layers"],
                activation=act,
                loss="mse",
                lam_H=lam,
                lam_W=lam,
                lam_layers=lam,
            )
            assert float(F2) > float(F)
    # depth 1: DNC is the orthogonal frame, i.e. the no-bias MSE optimum
    one = ufm.dnc_loss(K, n, 1, lam_H=lam, lam_W=lam)
    mse = ufm.mse_ufm_optimum(labels=ufm.class_labels([n] * K), dim=K, lam_W=lam, lam_H=lam)
    assert one["objective"] == pytest.approx(mse["objective"], rel=1e-10)
    # the numbers quoted in the chapter: K=10, n=4, lambda=1e-2
    assert ufm.dnc_loss(10, 4, 4, lam_H=lam, lam_W=lam)["objective"] == pytest.approx(0.3204, abs=1e-4)
    with pytest.raises(ValueError, match="width"):
        ufm.dnc_configuration(4, 2, 2, 3, lam_H=lam, lam_W=lam)


def test_class_mean_spectra_and_numerical_rank():
    K, n = 3, 2
    cfg = ufm.dnc_configuration(K, n, 2, 5, lam_H=1e-2, lam_W=1e-2)
    r = ufm.train_ufm(
        num_classes=K,
        n_per_class=n,
        dim=5,
        depth=2,
        activation="relu",
        loss="mse",
        lam_H=1e-2,
        lam_W=1e-2,
        steps=1,
        lr=1e-12,
        init={"H": cfg["H"], "W": cfg["W"], "layers": cfg["layers"]},
        record=(),
        progress=False,
    )
    spectra = ufm.class_mean_spectra(r)
    assert [ufm.numerical_rank(s) for s in spectra] == [K, K]
    assert ufm.numerical_rank(torch.tensor([1.0, 1e-4, 0.0], dtype=F64), rtol=1e-3) == 1
    assert ufm.numerical_rank(torch.zeros(3, dtype=F64)) == 0


# ----------------------------------------------------------------------------- regression collapse
def test_nrc_metrics_analytic_cases():
    N, D, t = 50, 6, 2
    g = torch.Generator().manual_seed(0)
    Y = torch.randn(N, t, generator=g, dtype=F64) * torch.tensor([2.0, 0.5], dtype=F64)
    # features exactly in a t-dim subspace, W spanning it
    B = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=F64))[0]
    U = B[:, :t]
    H = Y @ U.T
    lam = 1e-2
    WWt = ufm.nrc_optimal_gram(Y, lam_W=lam, lam_H=lam)
    ev, V = torch.linalg.eigh(WWt)
    W = (V * ev.sqrt()) @ V.T @ U.T  # W Wᵀ = WWt, rows in span(U)
    gamma = math.sqrt(N * lam * lam)
    m = ufm.nrc_metrics(H, Y, W, gamma=gamma)
    assert m["nrc1"] < 1e-20 and m["nrc2"] < 1e-20 and m["nrc3"] < 1e-20
    fitted = ufm.nrc_metrics(H, Y, W)
    assert fitted["nrc3"] < 1e-10 and fitted["nrc_gamma"] == pytest.approx(gamma, rel=1e-3)
    # add an orthogonal component carrying a known share of the centred energy
    extra = torch.randn(N, 1, generator=g, dtype=F64) @ B[:, t : t + 1].T
    Hc = (H - H.mean(0)).pow(2).sum()
    e = (extra - extra.mean(0)).pow(2).sum()
    m2 = ufm.nrc_metrics(H + extra * math.sqrt(0.25 * Hc / e), Y, W, gamma=gamma)
    assert m2["nrc2"] == pytest.approx(0.2, rel=1e-10)
    with pytest.raises(ValueError, match="W must have shape"):
        ufm.nrc_metrics(H, Y, W.T)


def test_regression_ufm_reaches_the_nrc_closed_form():
    g = torch.Generator().manual_seed(1)
    Y = (
        torch.randn(40, 3, generator=g, dtype=F64)
        @ torch.tensor([[1.0, 0.3, 0.0], [0, 0.7, 0.2], [0, 0, 0.4]], dtype=F64)
        + 0.5
    )
    lam = 1e-2
    r = ufm.train_ufm(
        targets=Y,
        dim=6,
        loss="mse",
        bias=True,
        lam_H=lam,
        lam_W=lam,
        lr=1.0,
        steps=4000,
        init_scale=0.3,
        record=("nrc",),
        log_every=2000,
        progress=False,
    )
    G = ufm.nrc_optimal_gram(Y, lam_W=lam, lam_H=lam)
    assert float((r.W @ r.W.T - G).norm() / G.norm()) < 1e-6
    opt = ufm.mse_ufm_optimum(targets=Y, dim=6, lam_W=lam, lam_H=lam, bias=True)
    assert r.objective() == pytest.approx(opt["objective"], rel=1e-8)
    last = r.history.iloc[-1]
    assert max(last["nrc1"], last["nrc2"], last["nrc3"]) < 1e-6


# ----------------------------------------------------------------------------- Hadamard initialisation
def test_hadamard():
    for K in (1, 2, 4, 8):
        Hm = ufm.hadamard(K)
        torch.testing.assert_close(Hm @ Hm.T, K * torch.eye(K, dtype=F64))
        assert (Hm[:, 0] == 1).all()
    with pytest.raises(ValueError, match="power of 2"):
        ufm.hadamard(6)


def test_hadamard_init_structure_and_reduced_dynamics():
    K, n, lam, lr, steps = 4, 2, 1e-3, 0.5, 400
    hi = ufm.hadamard_init(K, n, seed=0)
    Q, P = hi["Q"], hi["P"]
    torch.testing.assert_close(P.T @ P, torch.eye(K, dtype=F64))
    Z0 = hi["W"] @ hi["H"].T
    torch.testing.assert_close(Q.T @ Z0 @ P, torch.diag(hi["alpha"] * hi["beta"]), atol=1e-15, rtol=0)
    r = ufm.train_ufm(
        num_classes=K,
        n_per_class=n,
        dim=2 * K,
        loss="ce",
        lam_H=lam,
        lam_W=lam,
        lr=lr,
        steps=steps,
        init={"H": hi["H"], "W": hi["W"]},
        record=("snapshots",),
        log_every=100,
        progress=False,
    )
    red = ufm.hadamard_reduced_gd(hi["alpha"], hi["beta"], n, lr=lr, steps=steps, weight_decay=lam, log_every=100)
    assert red["steps"] == [s["step"] for s in r.snapshots]
    for snap, sv in zip(r.snapshots, red["singular_values"]):
        d = ufm.singular_drift(hi["W"], hi["H"], snap["W"], snap["H"], left=Q, right=P)
        assert d["offdiag"] < 1e-13 and d["angle_samples"] < 1e-6 and d["angle_features"] < 1e-6
        diag = torch.diagonal(Q.T @ (snap["W"] @ snap["H"].T) @ P)
        assert float((diag - sv).abs().max() / sv.abs().max()) < 1e-12
    # the all-ones mode gets no gradient: only weight decay shrinks it
    torch.testing.assert_close(red["alpha"][0], hi["alpha"][0] * (1 - lr * lam) ** steps, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="power of 2"):
        ufm.hadamard_init(6, 2)


def test_principal_angles():
    th = 0.3
    A = torch.tensor([[1.0], [0.0]], dtype=F64)
    B = torch.tensor([[math.cos(th)], [math.sin(th)]], dtype=F64)
    assert float(ufm.principal_angles(A, B, degrees=False)[0]) == pytest.approx(th, rel=1e-14)
    tiny = 1e-9
    Bt = torch.tensor([[math.cos(tiny)], [math.sin(tiny)]], dtype=F64)
    assert float(ufm.principal_angles(A, Bt, degrees=False)[0]) == pytest.approx(tiny, rel=1e-6)
    X = _rand(6, 3)
    ang = ufm.principal_angles(X, X @ _rand(3, 3, seed=1))
    assert float(ang.max()) < 1e-6
    e = torch.eye(4, dtype=F64)
    torch.testing.assert_close(ufm.principal_angles(e[:, :2], e[:, 1:3]), torch.tensor([0.0, 90.0], dtype=F64))
    with pytest.raises(ValueError, match="full column rank"):
        ufm.principal_angles(torch.zeros(3, 1, dtype=F64), A[:1].T.repeat(3, 1))


def test_singular_drift_of_a_rotation():
    W, H = _rand(4, 6, seed=1), _rand(8, 6, seed=2)
    assert ufm.singular_drift(W, H, W, H)["offdiag"] < 1e-12
    d = ufm.singular_drift(W, H, W, H @ _rand(6, 6, seed=3))
    assert d["offdiag"] > 1e-2 and d["angle_samples"] > 1.0


# ----------------------------------------------------------------------------- solver plumbing
def test_restarts_equal_single_runs_and_leave_global_rng_alone():
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state().clone())
    kw = dict(num_classes=3, n_per_class=2, dim=4, loss="ce", lr=1.0, steps=50, log_every=25, progress=False)
    rs = ufm.train_ufm_restarts([5, 6], **kw)
    single = ufm.train_ufm(seed=6, **kw)
    torch.testing.assert_close(rs[1].H, single.H, rtol=1e-12, atol=1e-14)
    assert rs[1].config["seed"] == 6 and list(rs[1].history["step"]) == [0, 25, 50]
    assert random.getstate() == state[0]
    assert (np.random.get_state()[1] == state[1]).all()
    assert torch.equal(torch.random.get_rng_state(), state[2])
    with pytest.raises(ValueError, match="init"):
        ufm.train_ufm_restarts([0, 1], init={"H": single.H}, **kw)


def test_train_ufm_validation_and_failures():
    base = dict(num_classes=3, n_per_class=2, dim=4, steps=5, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        ufm.train_ufm(optimizer="adam", **base)
    with pytest.raises(ValueError, match="lr"):
        ufm.train_ufm(lr=0.0, **base)
    with pytest.raises(ValueError, match="regression targets need loss='mse'"):
        ufm.train_ufm(targets=_rand(6, 2), dim=3, loss="ce", progress=False)
    with pytest.raises(ValueError, match="either targets"):
        ufm.train_ufm(targets=_rand(6, 2), **base)
    with pytest.raises(ValueError, match="central-path"):
        ufm.train_ufm(loss="ce", record=("central_path",), **base)
    with pytest.raises(ValueError, match="init\\['H'\\] must have shape"):
        ufm.train_ufm(init={"H": _rand(5, 4)}, **base)
    with pytest.raises(ValueError, match="lam_layers"):
        ufm.train_ufm(depth=3, lam_layers=[0.1], **base)
    with pytest.raises(TypeError, match="seed"):
        ufm.train_ufm(seed=1.5, **base)
    with pytest.raises(ValueError, match="fixed_W or init"):
        ufm.train_ufm(fixed_W=_rand(3, 4), init={"W": _rand(3, 4)}, **base)
    with pytest.raises(ValueError, match="b must have shape"):
        ufm.central_path_decomposition(_rand(6, 4), _rand(3, 4), _rand(2), labels=ufm.class_labels([2, 2, 2]))
    with pytest.raises(FloatingPointError, match="reduce lr"):
        ufm.train_ufm(
            num_classes=3,
            n_per_class=2,
            dim=4,
            loss="mse",
            lr=1e6,
            steps=50,
            init_scale=3.0,
            log_every=10,
            progress=False,
        )


def test_lbfgs_snapshots_and_callback():
    seen = []
    r = ufm.train_ufm(
        num_classes=3,
        n_per_class=2,
        dim=4,
        loss="mse",
        optimizer="lbfgs",
        steps=20,
        log_every=10,
        record=("nc", "snapshots"),
        callback=lambda step, p: seen.append(step) or {"wn": float(p["W"].norm())},
        progress=False,
    )
    assert seen == [0, 10, 20] and list(r.history["step"]) == seen and "wn" in r.history
    assert len(r.snapshots) == 3 and r.snapshots[-1]["H"].shape == (6, 4)
    torch.testing.assert_close(r.snapshots[-1]["W"], r.W)


# ----------------------------------------------------------------------------- MNIST-1D latents and the MLP
def test_mnist1d_latents():
    py, npst = random.getstate(), np.random.get_state()[1].copy()
    X, Y, d = ufm.mnist1d_latents(40, seed=3)
    assert X.shape == (40, 40) and Y.shape == (40, 3) and d.tolist()[:12] == list(range(10)) + [0, 1]
    torch.testing.assert_close(Y.mean(0), torch.zeros(3, dtype=F64), atol=1e-12, rtol=0)
    X2, Y2, _ = ufm.mnist1d_latents(40, seed=3)
    assert torch.equal(X, X2) and torch.equal(Y, Y2)
    assert not torch.equal(Y, ufm.mnist1d_latents(40, seed=4)[1])
    assert random.getstate() == py and (np.random.get_state()[1] == npst).all()
    with pytest.raises(ValueError, match="latent"):
        ufm.mnist1d_latents(20, latents=("colour",))


def test_train_regression_mlp_runs_and_records():
    X, Y, _ = ufm.mnist1d_latents(30, seed=0)
    out = ufm.train_regression_mlp(X, Y, hidden=8, dim=4, steps=20, log_every=10, progress=False)
    h = out["history"]
    assert list(h["step"]) == [0, 10, 20] and {"nrc1", "nrc2", "nrc3", "r2"} <= set(h.columns)
    assert h["loss"].iloc[-1] < h["loss"].iloc[0]
    assert out["features"].shape == (30, 4) and out["W"].shape == (3, 4)
    with pytest.raises(ValueError, match="optimizer"):
        ufm.train_regression_mlp(X, Y, optimizer="rmsprop", steps=2, progress=False)
