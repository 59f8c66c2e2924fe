"""Unit tests for nclib.geometry: simplex ETFs and the nearest ETF (orthogonal Procrustes)."""

import math

import pytest
import torch

from nclib import metrics as M
from nclib.geometry import (
    classifier_cosine,
    cross_entropy_gd,
    distance_to_nearest_etf,
    etf_coordinates,
    max_margin_classifier,
    nearest_etf,
    random_orthonormal,
    simplex_etf,
)

F64 = torch.float64


def assert_simplex_etf(E, scale=1.0, tol=1e-12):
    K = E.shape[0]
    E = E.double()
    assert torch.allclose(E.norm(dim=1), torch.full((K,), scale, dtype=F64), atol=tol * max(scale, 1))
    cos = (E @ E.T) / scale**2
    off = cos[~torch.eye(K, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1.0 / (K - 1)), atol=tol)
    assert float(E.sum(0).abs().max()) <= tol * max(scale, 1)


def rotation(D, seed):
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=F64))
    return Q * torch.sign(torch.diagonal(R))


# ----------------------------------------------------------------------------- simplex_etf
@pytest.mark.parametrize("K,D", [(2, 1), (3, 2), (5, 4), (5, 5), (4, 50), (10, 10)])
def test_simplex_etf_properties(K, D):
    E = simplex_etf(K, D, seed=3)
    assert E.shape == (K, D) and E.dtype == F64
    assert_simplex_etf(E)
    assert torch.linalg.matrix_rank(E) == K - 1
    assert M.gram_etf_error(E) < 1e-12 and M.equinorm(E) < 1e-12 and M.max_angle(E) < 1e-12


def test_simplex_etf_defaults_scale_dtype_and_canonical():
    E = simplex_etf(4)
    assert E.shape == (4, 4)
    assert_simplex_etf(E)
    S = simplex_etf(6, 9, seed=1, scale=2.5, dtype=torch.float32)
    assert S.dtype == torch.float32
    assert_simplex_etf(S, scale=2.5, tol=1e-6)
    C = simplex_etf(4, 6, seed=None)  # canonical embedding: the first K−1 coordinates
    assert_simplex_etf(C)
    assert float(C[:, 3:].abs().max()) == 0.0
    assert torch.allclose(C[:, :3], etf_coordinates(4))


def test_simplex_etf_seeds():
    a, b, c = simplex_etf(5, 8, seed=1), simplex_etf(5, 8, seed=1), simplex_etf(5, 8, seed=2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(simplex_etf(5, 8, seed=g1), simplex_etf(5, 8, seed=g2))
    state = torch.get_rng_state()
    simplex_etf(5, 8, seed=3)
    assert torch.equal(state, torch.get_rng_state()), "simplex_etf must not touch the global RNG"


def test_simplex_etf_errors():
    with pytest.raises(ValueError, match="D ≥ K−1"):
        simplex_etf(5, 3)
    with pytest.raises(ValueError, match="K ≥ 2"):
        simplex_etf(1, 3)
    with pytest.raises(ValueError, match="K ≥ 2"):
        simplex_etf(0)
    with pytest.raises(TypeError, match="K must be an int"):
        simplex_etf(3.0, 4)
    with pytest.raises(TypeError, match="D must be an int"):
        simplex_etf(3, "4")
    with pytest.raises(TypeError, match="seed"):
        simplex_etf(3, 4, seed=1.5)


def test_etf_coordinates_and_random_orthonormal():
    C = etf_coordinates(6)
    assert C.shape == (6, 5)
    assert_simplex_etf(C)
    Q = random_orthonormal(3, 7, seed=4)
    assert Q.shape == (3, 7)
    assert torch.allclose(Q @ Q.T, torch.eye(3, dtype=F64), atol=1e-12)
    assert torch.equal(Q, random_orthonormal(3, 7, seed=4))
    assert not torch.allclose(Q, random_orthonormal(3, 7, seed=5))
    with pytest.raises(ValueError, match="rows must be ≤ cols"):
        random_orthonormal(4, 3)


# ----------------------------------------------------------------------------- nearest_etf
@pytest.mark.parametrize("K,D", [(4, 3), (5, 5), (6, 30)])
def test_nearest_etf_of_transformed_etf(K, D):
    """Rotated, scaled, permuted and translated ETF: distance 0 and the ETF is the input itself
    (centred, rows normalised)."""
    E = simplex_etf(K, D, seed=11)
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(12))
    X = 4.2 * E[perm] @ rotation(D, 13) + torch.linspace(-1, 2, D, dtype=F64)
    etf, dist = nearest_etf(X)
    assert dist < 1e-12
    assert_simplex_etf(etf)
    Xc = X - X.mean(0)
    assert torch.allclose(etf, Xc / Xc.norm(dim=1, keepdim=True), atol=1e-12)
    assert distance_to_nearest_etf(X) == dist


@pytest.mark.parametrize("K,D", [(3, 2), (5, 7), (4, 40)])
def test_nearest_etf_of_random_means(K, D):
    g = torch.Generator().manual_seed(K * 100 + D)
    X = torch.randn(K, D, generator=g, dtype=F64)
    etf, dist = nearest_etf(X)
    assert 0 < dist <= 2
    assert dist > 1e-3
    assert etf.shape == (K, D)
    assert_simplex_etf(etf)
    # the returned ETF, scaled to unit Frobenius norm, attains the reported distance
    Xc = X - X.mean(0)
    Xn = Xc / Xc.norm()
    assert (Xn - etf / math.sqrt(K)).norm().item() == pytest.approx(dist, abs=1e-12)
    # ... and no other unit-Frobenius-norm ETF is closer
    for seed in range(25):
        other = simplex_etf(K, D, seed=1000 + seed) / math.sqrt(K)
        assert dist <= (Xn - other).norm().item() + 1e-12
    for _ in range(5):  # nor a small perturbation of the optimum (rotate it a little)
        A = 1e-3 * torch.randn(D, D, generator=g, dtype=F64)
        R = torch.linalg.matrix_exp(A - A.T)
        assert dist <= (Xn - etf @ R / math.sqrt(K)).norm().item() + 1e-12
    assert distance_to_nearest_etf(X * 7.0) == pytest.approx(dist, abs=1e-12)  # scale-invariant


def test_nearest_etf_brute_force_in_the_plane():
    """K=3, D=2: every ETF is a rotation (and possibly reflection) of a triangle; a fine sweep of
    the angle approaches, but never beats, the Procrustes optimum."""
    g = torch.Generator().manual_seed(21)
    X = torch.randn(3, 2, generator=g, dtype=F64)
    _, dist = nearest_etf(X)
    Xc = X - X.mean(0)
    Xn = Xc / Xc.norm()
    base = simplex_etf(3, 2, seed=None) / math.sqrt(3)
    t = torch.linspace(0, 2 * math.pi, 200001, dtype=F64)
    R = torch.stack([torch.stack([t.cos(), -t.sin()], -1), torch.stack([t.sin(), t.cos()], -1)], -2)  # n×2×2
    best = math.inf
    for refl in (1.0, -1.0):
        F = torch.diag(torch.tensor([1.0, refl], dtype=F64))
        cands = (base @ F) @ R  # n×3×2
        best = min(best, (Xn - cands).flatten(1).norm(dim=1).min().item())
    assert dist <= best + 1e-12
    assert best - dist < 1e-6


def test_nearest_etf_center_flag_and_dtype():
    E = simplex_etf(4, 5, seed=2) + 3.0
    assert nearest_etf(E)[1] < 1e-12
    assert nearest_etf(E, center=False)[1] > 0.1  # the offset is not removed
    etf, _ = nearest_etf(E.float())
    assert etf.dtype == torch.float32


def test_nearest_etf_errors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        nearest_etf([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="K×D"):
        nearest_etf(torch.zeros(4))
    with pytest.raises(ValueError, match="D ≥ K−1"):
        nearest_etf(torch.randn(5, 3))
    with pytest.raises(ValueError, match="K ≥ 2"):
        nearest_etf(torch.randn(1, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        nearest_etf(torch.tensor([[0.0, math.nan], [1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="all zero"):
        nearest_etf(torch.ones(3, 4))


# ----------------------------------------------------------------------------- unregularised gradient descent
def test_max_margin_classifier_without_intercept_matches_the_two_point_svm():
    # class 1 at (1, 0), class 0 at (-1, 0): the hard-margin SVM without intercept is u = (1, 0),
    # i.e. the Crammer-Singer rows w_1 = -w_0 = u/2 (min ||W||^2 s.t. (w_1 - w_0)·x >= 1)
    H = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.3], [-2.0, -0.1]], dtype=F64)
    y = torch.tensor([1, 0, 1, 0])
    W, b = max_margin_classifier(H, y, C=1e4, center=False, bias=False, tol=1e-10, max_iter=100000)
    assert torch.allclose(W, torch.tensor([[-0.5, 0.0], [0.5, 0.0]], dtype=F64), atol=1e-4)
    assert torch.equal(b, torch.zeros(2, dtype=F64))


def test_cross_entropy_gd_first_step_is_the_autograd_gradient_step():
    g = torch.Generator().manual_seed(0)
    H, W = torch.randn(12, 5, generator=g, dtype=F64), torch.randn(3, 5, generator=g, dtype=F64)
    y = torch.arange(3).repeat(4)
    Ht, Wt = H.clone().requires_grad_(), W.clone().requires_grad_()
    torch.nn.functional.cross_entropy(Ht @ Wt.T, y).backward()
    for train_features in (True, False):
        (t0, W0, H0), (t1, W1, H1) = cross_entropy_gd(
            H, W, y, lr=0.3, steps=1, log_steps=[0, 1], train_features=train_features
        )
        assert (t0, t1) == (0, 1) and torch.equal(W0, W) and torch.equal(H0, H)
        assert torch.allclose(W1, W - 0.3 * Wt.grad, atol=1e-14)
        assert torch.allclose(H1, H - 0.3 * Ht.grad if train_features else H, atol=1e-14)


def test_cross_entropy_gd_on_frozen_features_turns_towards_the_svm():
    # Soudry et al.: on separable data the direction of W converges (slowly) to the hard-margin SVM
    H = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.3], [-2.0, -0.1]], dtype=F64)
    y = torch.tensor([1, 0, 1, 0])
    W_svm = torch.tensor([[-0.5, 0.0], [0.5, 0.0]], dtype=F64)
    W0 = torch.tensor([[0.0, 0.1], [0.0, -0.1]], dtype=F64)
    out = cross_entropy_gd(H, W0, y, lr=1.0, steps=5000, log_steps=[10, 100, 5000], train_features=False)
    cos = [classifier_cosine(W, W_svm) for _, W, _ in out]
    assert cos[0] < cos[1] < cos[2] and cos[2] > 0.999
    assert all(torch.equal(Hs, H) for _, _, Hs in out)


def test_cross_entropy_gd_validates_its_inputs():
    H, W, y = torch.zeros(4, 2, dtype=F64), torch.zeros(2, 2, dtype=F64), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError):
        cross_entropy_gd(H, W, y, lr=-1.0, steps=3)
    with pytest.raises(ValueError):
        cross_entropy_gd(H, W, y, lr=1.0, steps=3, log_steps=[4])
    with pytest.raises(TypeError):
        cross_entropy_gd(H, W, y, lr=1.0, steps=3, train_features=1)
    with pytest.raises(ValueError):
        cross_entropy_gd(H, torch.zeros(2, 3, dtype=F64), y, lr=1.0, steps=3)
