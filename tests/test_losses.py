"""Coding rate, rate reduction, MCR² loss and the one-hot MSE loss against closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F

from nclib.geometry import random_orthonormal, simplex_etf
from nclib.losses import (
    MCR2Loss,
    RateReduction,
    _logdet_i_plus_cg,
    coding_rate,
    coding_rate_per_class,
    mse_onehot_loss,
    rate_reduction,
)

D64 = torch.float64


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _brute_rate(Z, eps):
    n, d = Z.shape
    return 0.5 * torch.logdet(torch.eye(d, dtype=D64) + d / (n * eps**2) * Z.T @ Z)


def _brute_rate_c(Z, y, eps, K):
    n, d = Z.shape
    out = torch.zeros((), dtype=D64)
    for j in range(K):
        Zj = Z[y == j]
        nj = Zj.shape[0]
        if nj:
            out = out + nj / (2 * n) * torch.logdet(torch.eye(d, dtype=D64) + d / (nj * eps**2) * Zj.T @ Zj)
    return out


# ----------------------------------------------------------------------------- coding_rate closed forms
@pytest.mark.parametrize("n,d", [(3, 8), (5, 5)])
def test_coding_rate_orthogonal_rows(n, d):
    """Rows σ_i q_i with orthonormal q_i: R = ½ Σ log(1 + d σ_i² / (n ε²))."""
    sig = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.1], dtype=D64)[:n]
    Z = sig[:, None] * random_orthonormal(n, d, seed=1)
    eps = 0.7
    expected = 0.5 * sum(math.log(1 + d * s**2 / (n * eps**2)) for s in sig.tolist())
    for route in ("auto", "dd", "nn"):
        assert coding_rate(Z, eps, route=route).item() == pytest.approx(expected, rel=1e-12)


def test_coding_rate_orthonormal_columns():
    """n > d with orthonormal columns: ZᵀZ = I_d, so R = (d/2) log(1 + d/(n ε²))."""
    n, d, eps = 9, 4, 0.5
    Z = random_orthonormal(d, n, seed=2).T  # n×d, ZᵀZ = I_d
    expected = d / 2 * math.log(1 + d / (n * eps**2))
    assert coding_rate(Z, eps).item() == pytest.approx(expected, rel=1e-12)
    assert coding_rate(Z, eps, route="nn").item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n,d", [(6, 3), (2, 10), (1, 4)])
def test_coding_rate_identical_rows(n, d):
    """n copies of z: ZᵀZ = n z zᵀ has the single eigenvalue n‖z‖², so R = ½ log(1 + d‖z‖²/ε²)."""
    z = torch.randn(d, generator=_gen(3), dtype=D64)
    Z = z.repeat(n, 1)
    eps = 0.3
    expected = 0.5 * math.log(1 + d * float(z @ z) / eps**2)
    for route in ("dd", "nn"):
        assert coding_rate(Z, eps, route=route).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (1, 1)])
def test_coding_rate_zero_features(shape):
    Z = torch.zeros(shape, requires_grad=True)
    r = coding_rate(Z, 0.5)
    assert r.item() == 0.0 and r.dtype == torch.float32
    r.backward()
    assert torch.equal(Z.grad, torch.zeros(shape))


@pytest.mark.parametrize("n,d", [(4, 12), (15, 6)])
def test_routes_agree_and_match_brute_force(n, d):
    Z = torch.randn(n, d, generator=_gen(4), dtype=D64)
    dd, nn_ = coding_rate(Z, 0.5, route="dd"), coding_rate(Z, 0.5, route="nn")
    assert dd.item() == pytest.approx(nn_.item(), rel=1e-12)
    assert dd.item() == pytest.approx(_brute_rate(Z, 0.5).item(), rel=1e-12)
    assert coding_rate(Z, 0.5).item() == pytest.approx(dd.item(), rel=1e-12)


def test_coding_rate_scaling_in_eps():
    """R depends on Z and ε only through Z/ε."""
    Z = torch.randn(6, 4, generator=_gen(5), dtype=D64)
    assert coding_rate(Z, 0.25).item() == pytest.approx(coding_rate(2 * Z, 0.5).item(), rel=1e-12)


def test_float32_input_keeps_dtype_and_is_accurate():
    Z = torch.randn(20, 8, generator=_gen(6))
    r = coding_rate(Z, 0.5)
    assert r.dtype == torch.float32
    assert r.item() == pytest.approx(_brute_rate(Z.double(), 0.5).item(), rel=1e-6)


# ----------------------------------------------------------------------------- logdet kernel
def test_logdet_methods_agree_batched():
    A = torch.randn(3, 5, 2, generator=_gen(7), dtype=D64)
    G = A @ A.mT  # rank 2 in 5×5: rank-deficient
    c = torch.tensor([0.1, 1.0, 50.0], dtype=D64)
    chol = _logdet_i_plus_cg(G, c, "cholesky")
    eig = _logdet_i_plus_cg(G, c, "eigh")
    brute = torch.stack([torch.logdet(torch.eye(5, dtype=D64) + c[i] * G[i]) for i in range(3)])
    torch.testing.assert_close(chol, brute, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(eig, brute, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="method"):
        _logdet_i_plus_cg(G, c, "lu")


def test_small_eps_accurate_tiny_eps_finite():
    """Large c = d/(nε²) on a rank-one Gram: accurate for ε = 1e-4 (c‖G‖ ≈ 3e9); for an absurd
    ε = 1e-9 (c‖G‖ ≈ 3e19, beyond float64) the value is no longer accurate but still finite."""
    z = torch.tensor([1.0, 2.0, 2.0], dtype=D64)  # ‖z‖² = 9
    Z = z.repeat(4, 1).requires_grad_(True)
    expected = 0.5 * math.log1p(3 * 9 / 1e-4**2)
    assert coding_rate(Z, 1e-4).item() == pytest.approx(expected, rel=1e-8)
    r = coding_rate(Z, 1e-9)
    r.backward()
    assert torch.isfinite(r) and torch.isfinite(Z.grad).all()


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("route", ["dd", "nn"])
def test_gradcheck(route):
    Z = torch.randn(5, 3, generator=_gen(8), dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: coding_rate(z, 0.6, route=route), (Z,))
    y = torch.tensor([0, 1, 0, 2, 1])
    assert torch.autograd.gradcheck(lambda z: coding_rate_per_class(z, y, 0.6, 3, route=route), (Z,))


def test_gradient_finite_on_collapsed_features():
    """Neural collapse: every row of class k equals the ETF vertex m_k (rank-deficient Grams)."""
    K, d, per = 4, 6, 5
    M = simplex_etf(K, d, seed=0)  # K×d, unit rows
    y = torch.arange(K).repeat_interleave(per)
    Z = M[y].clone().float().requires_grad_(True)
    loss = MCR2Loss(K)(Z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(Z.grad).all()
    for route in ("dd", "nn"):
        Z.grad = None
        rr = rate_reduction(Z, y, 0.5, K, route=route)
        (rr.r + rr.r_c).backward()
        assert torch.isfinite(Z.grad).all()
    # all features identical and all features zero (normalize=True maps 0 to 0)
    for Z0 in (torch.ones(8, 5), torch.zeros(8, 5)):
        Z0 = Z0.clone().requires_grad_(True)
        loss = MCR2Loss(2)(Z0, torch.tensor([0, 1] * 4))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(Z0.grad).all()


# ----------------------------------------------------------------------------- per-class rate
@pytest.mark.parametrize("n,d,K", [(30, 4, 3), (12, 20, 5)])
def test_per_class_matches_loop(n, d, K):
    Z = torch.randn(n, d, generator=_gen(9), dtype=D64)
    y = torch.randint(0, K - 1, (n,), generator=_gen(10))  # class K-1 absent
    y[0] = 0
    expected = _brute_rate_c(Z, y, 0.5, K).item()
    for route in ("auto", "dd", "nn"):
        assert coding_rate_per_class(Z, y, 0.5, K, route=route).item() == pytest.approx(expected, rel=1e-12)


def test_per_class_collapsed_closed_form_and_imbalance():
    """Rows of class j all equal μ_j: R_c = Σ_j n_j/(2n) log(1 + d‖μ_j‖²/ε²), any counts n_j."""
    d, eps = 5, 0.4
    mu = torch.randn(3, d, generator=_gen(11), dtype=D64)
    counts = [1, 4, 7]
    y = torch.tensor([0] * 1 + [1] * 4 + [2] * 7)[torch.randperm(12, generator=_gen(12))]
    Z = mu[y]
    n = 12
    expected = sum(c / (2 * n) * math.log(1 + d * float(mu[j] @ mu[j]) / eps**2) for j, c in enumerate(counts))
    assert coding_rate_per_class(Z, y, eps, 3).item() == pytest.approx(expected, rel=1e-10)


def test_single_class_gives_zero_reduction():
    Z = torch.randn(10, 4, generator=_gen(13), dtype=D64)
    rr = rate_reduction(Z, torch.zeros(10, dtype=torch.long), 0.5, 3)
    assert rr.delta_r.item() == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- rate reduction
def _orthogonal_subspaces(K, s, m):
    """Class j: each of s orthonormal basis vectors e_{js..js+s-1} repeated m times (n_j = s·m)."""
    d = K * s
    E = torch.eye(d, dtype=D64)
    rows, labels = [], []
    for j in range(K):
        for t in range(s):
            rows += [E[j * s + t]] * m
            labels += [j] * m
    return torch.stack(rows), torch.tensor(labels)


def test_rate_reduction_closed_forms_mcr2_principle():
    """Unit-norm features in d = K·s dimensions, n_j = s·m per class:

    * collapse onto K orthonormal directions: R = (K/2) log(1 + d/(Kε²)), R_c = ½ log(1 + d/ε²);
    * classes spanning orthogonal s-dim subspaces: R = (d/2) log(1 + 1/ε²), R_c = (s/2) log(1 + K/ε²);
    the subspace configuration has the larger ΔR (the MCR² principle, Yu et al. 2020).
    """
    K, s, m, eps = 4, 3, 2, 0.5
    Zs, y = _orthogonal_subspaces(K, s, m)
    d = K * s
    Zc = torch.eye(d, dtype=D64)[:K][y]  # collapsed, n_j = s·m too
    rc = rate_reduction(Zc, y, eps, K)
    rs = rate_reduction(Zs, y, eps, K)
    assert isinstance(rs, RateReduction)
    assert rc.r.item() == pytest.approx(K / 2 * math.log(1 + d / (K * eps**2)), rel=1e-12)
    assert rc.r_c.item() == pytest.approx(0.5 * math.log(1 + d / eps**2), rel=1e-12)
    assert rs.r.item() == pytest.approx(d / 2 * math.log(1 + 1 / eps**2), rel=1e-12)
    assert rs.r_c.item() == pytest.approx(s / 2 * math.log(1 + K / eps**2), rel=1e-12)
    dR, r, r_c = rs
    assert dR.item() == pytest.approx(r.item() - r_c.item(), rel=1e-12)
    assert rs.delta_r > rc.delta_r > 0


def test_rate_reduction_simplex_etf_closed_form():
    """Balanced collapse onto a unit simplex ETF: MMᵀ has eigenvalue K/(K−1) (K−1 times), so
    R = ((K−1)/2) log(1 + d/((K−1)ε²)) and R_c = ½ log(1 + d/ε²)."""
    K, d, per, eps = 5, 7, 3, 0.6
    M = simplex_etf(K, d, seed=3)
    y = torch.arange(K).repeat(per)
    rr = rate_reduction(M[y], y, eps, K)
    assert rr.r.item() == pytest.approx((K - 1) / 2 * math.log(1 + d / ((K - 1) * eps**2)), rel=1e-10)
    assert rr.r_c.item() == pytest.approx(0.5 * math.log(1 + d / eps**2), rel=1e-10)


# ----------------------------------------------------------------------------- MCR2Loss
def test_mcr2_loss_values_and_normalization():
    K, s, m = 3, 2, 2
    Z, y = _orthogonal_subspaces(K, s, m)
    eps = math.sqrt(0.5)
    rr = rate_reduction(Z, y, eps, K)
    loss_fn = MCR2Loss(K)
    assert loss_fn.eps == pytest.approx(eps)
    assert loss_fn(Z, y).item() == pytest.approx(-rr.delta_r.item(), rel=1e-12)
    # normalize=True is invariant to positive row scalings; normalize=False is not
    scales = torch.tensor([0.5, 2.0, 3.0] * 4, dtype=D64)[:, None]
    assert loss_fn(scales * Z, y).item() == pytest.approx(-rr.delta_r.item(), rel=1e-12)
    raw = MCR2Loss(K, normalize=False)
    assert raw(scales * Z, y).item() != pytest.approx(-rr.delta_r.item(), rel=1e-6)
    weighted = MCR2Loss(K, eps=0.5, gamma1=2.0, gamma2=0.5)
    loss, parts = weighted(Z, y, return_parts=True)
    assert loss.item() == pytest.approx(-(2.0 * parts.r - 0.5 * parts.r_c).item(), rel=1e-12)
    assert "num_classes=3" in repr(weighted)


def test_mcr2_loss_trains_toward_larger_rate_reduction():
    """A few Adam steps on free features increase ΔR (sanity of the sign)."""
    K, n, d = 3, 30, 6
    y = torch.arange(K).repeat(n // K)
    Z = torch.randn(n, d, generator=_gen(14), requires_grad=True)
    loss_fn = MCR2Loss(K)
    opt = torch.optim.Adam([Z], lr=0.05)
    before = -loss_fn(Z, y).item()
    for _ in range(30):
        opt.zero_grad()
        loss_fn(Z, y).backward()
        opt.step()
    assert -loss_fn(Z, y).item() > before + 0.5


# ----------------------------------------------------------------------------- MSE
def test_mse_onehot_loss_closed_form():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 1])
    # sample 0: perfect (0); sample 1 at scale 1: (0² + 1² + 1²)/2 = 1 → mean 0.5
    assert mse_onehot_loss(logits, y, 3).item() == pytest.approx(0.5)
    # at scale 2: sample 0: (1² + 0 + 0)/2 = 0.5; sample 1: (0 + 0 + 1)/2 = 0.5 → 0.5
    assert mse_onehot_loss(logits, y, 3, scale=2.0).item() == pytest.approx(0.5)
    assert mse_onehot_loss(2.0 * F.one_hot(y, 3).float(), y, 3, scale=2.0).item() == 0.0
    Zr = torch.randn(7, 4, generator=_gen(15))
    yr = torch.randint(0, 4, (7,), generator=_gen(16))
    torch.testing.assert_close(mse_onehot_loss(Zr, yr, 4), 4 / 2 * F.mse_loss(Zr, F.one_hot(yr, 4).float()))


# ----------------------------------------------------------------------------- validation
def test_bad_inputs_raise():
    Z = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="2-D"):
        coding_rate(torch.randn(6), 0.5)
    with pytest.raises(ValueError, match="2-D"):
        coding_rate(torch.randn(2, 3, 4), 0.5)
    with pytest.raises(TypeError, match="torch.Tensor"):
        coding_rate([[1.0]], 0.5)
    with pytest.raises(TypeError, match="floating"):
        coding_rate(torch.ones(3, 2, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="at least one row"):
        coding_rate(torch.zeros(0, 3), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        coding_rate(torch.tensor([[float("nan"), 1.0]]), 0.5)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="eps"):
            coding_rate(Z, bad)
    with pytest.raises(TypeError, match="eps"):
        coding_rate(Z, True)
    with pytest.raises(ValueError, match="route"):
        coding_rate(Z, 0.5, route="kk")
    with pytest.raises(ValueError, match="one label per row"):
        coding_rate_per_class(Z, y[:5], 0.5, 3)
    with pytest.raises(ValueError, match="out of range"):
        coding_rate_per_class(Z, y, 0.5, 2)
    with pytest.raises(ValueError, match="out of range"):
        rate_reduction(Z, y - 1, 0.5, 3)
    with pytest.raises(TypeError, match="integer"):
        coding_rate_per_class(Z, y.float(), 0.5, 3)
    with pytest.raises(TypeError, match="num_classes"):
        coding_rate_per_class(Z, y, 0.5, 3.0)
    with pytest.raises(ValueError, match="eps"):
        MCR2Loss(3, eps=0)
    with pytest.raises(ValueError, match="gamma1"):
        MCR2Loss(3, gamma1=-1)
    with pytest.raises(ValueError, match="out of range"):
        MCR2Loss(2)(Z, y)
    with pytest.raises(ValueError, match="num_classes"):
        mse_onehot_loss(Z, y, 4)
    with pytest.raises(ValueError, match="one label per row"):
        mse_onehot_loss(Z, y[:4], 3)
    with pytest.raises(ValueError, match="scale"):
        mse_onehot_loss(Z, y, 3, scale=0)
