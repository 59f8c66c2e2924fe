"""Chapter 8, part A: the guided nearest-ETF head, feature normalisation, label passing in fit,
crossing epochs and the seed-band figure."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nclib import geometry, models
from nclib.models import FixedETFClassifier, NearestETFGuidedClassifier, UnitFeatures, build, make_head
from nclib.train import TrainConfig, epoch_below, fit

K, D = 5, 8


def _etf(K=K, D=D, seed=3):
    return geometry.simplex_etf(K, D, seed=seed)


# ----------------------------------------------------------------------------- the nearest ETF
def test_etf_of_an_exact_rotated_etf_is_itself():
    E = _etf()
    # scaled and shifted: centring and row normalisation undo both
    W = NearestETFGuidedClassifier.etf_of(3.7 * E + torch.randn(D, dtype=torch.float64))
    assert torch.allclose(W, E, atol=1e-10)


def test_etf_of_matches_geometry_nearest_etf_of_row_normalised_centred_means():
    M = torch.randn(K, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    W = NearestETFGuidedClassifier.etf_of(M)
    ref, _ = geometry.nearest_etf(F.normalize(M - M.mean(0), dim=1))
    assert torch.allclose(W, ref, atol=1e-10)
    G = W @ W.T
    assert torch.allclose(torch.diagonal(G), torch.ones(K, dtype=torch.float64), atol=1e-10)
    off = G[~torch.eye(K, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / (K - 1)), atol=1e-10)
    assert torch.allclose(W.sum(0), torch.zeros(D, dtype=torch.float64), atol=1e-10)


def test_etf_of_is_the_closed_form_and_the_exact_minimiser():
    """W = sqrt(K/(K-1)) (I - 11ᵀ/K) U Vᵀ with Ñ = U S Vᵀ the thin SVD of the re-centred,
    row-normalised centred means N; it is the unit-row ETF closest to N — closer than the same
    formula applied to N without re-centring, and than any other (random) ETF."""
    M = torch.randn(K, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    N = F.normalize(M - M.mean(0), dim=1)
    P = torch.eye(K, dtype=torch.float64) - 1.0 / K

    def closed(A):
        U, _, Vh = torch.linalg.svd(A, full_matrices=False)
        return math.sqrt(K / (K - 1)) * P @ U @ Vh

    W = NearestETFGuidedClassifier.etf_of(M)
    assert torch.allclose(W, closed(P @ N), atol=1e-8)
    best = float((N - W).norm())
    assert best <= float((N - closed(N)).norm()) + 1e-12
    for s in range(20):
        assert best <= float((N - geometry.simplex_etf(K, D, seed=s)).norm()) + 1e-12


# ----------------------------------------------------------------------------- the head
def test_head_sets_weight_to_the_etf_of_the_batch_means_when_they_form_one():
    head = NearestETFGuidedClassifier(D, K, momentum=0.0, scale=2.0)
    E = _etf().float()
    y = torch.arange(K).repeat(3)
    h = 5.0 * E[y]  # features exactly on an ETF (norm 5)
    out = head(h, y)
    assert torch.allclose(head.weight, E, atol=1e-5)
    assert bool(head.seen.all())
    assert torch.allclose(out, 2.0 * F.normalize(h, dim=1) @ E.T, atol=1e-5)


def test_running_means_follow_the_ema_rule_exactly():
    head = NearestETFGuidedClassifier(D, K, momentum=0.75, normalize=False)
    g = torch.Generator().manual_seed(0)
    y1, y2 = torch.tensor([0, 0, 1, 2, 3, 4]), torch.tensor([0, 1, 1, 2])
    h1, h2 = torch.randn(6, D, generator=g), torch.randn(4, D, generator=g)
    head(h1, y1)
    first = torch.stack([h1[y1 == k].mean(0) for k in range(K)])
    assert torch.allclose(head.means, first, atol=1e-6)
    head(h2, y2)
    want = first.clone()
    for k in (0, 1, 2):  # classes present in batch 2
        want[k] = 0.75 * first[k] + 0.25 * h2[y2 == k].mean(0)
    assert torch.allclose(head.means, want, atol=1e-6)  # classes 3, 4 untouched


def test_weight_is_the_seeded_random_etf_until_every_class_was_seen_and_frozen_without_labels():
    head = NearestETFGuidedClassifier(D, K, seed=4)
    init = geometry.simplex_etf(K, D, seed=4, dtype=torch.float32)
    assert torch.equal(head.weight, init)
    h = torch.randn(4, D, generator=torch.Generator().manual_seed(1))
    head(h, torch.tensor([0, 1, 2, 3]))  # class 4 missing
    assert torch.equal(head.weight, init)
    head(h)  # no labels: nothing changes
    head.eval()
    head(torch.randn(K, D), torch.arange(K))  # eval mode: labels ignored
    assert torch.equal(head.weight, init) and not bool(head.seen.all())


def test_no_gradient_through_the_classifier_by_default_but_through_the_svd_with_grad():
    E = _etf().float()
    y = torch.arange(K).repeat(2)
    base = E[y] + 0.3 * torch.randn(2 * K, D, generator=torch.Generator().manual_seed(2))
    grads = {}
    for grad in (False, True):
        head = NearestETFGuidedClassifier(D, K, momentum=0.0, grad=grad)
        h = base.clone().requires_grad_(True)
        loss = F.cross_entropy(head(h, y), y)
        loss.backward()
        grads[grad] = h.grad.clone()
        W = head.weight.clone()
        # with W held fixed, the gradient is that of a frozen classifier
        h2 = base.clone().requires_grad_(True)
        F.cross_entropy(10.0 * F.normalize(h2, dim=1) @ W.T, y).backward()
        same = torch.allclose(grads[grad], h2.grad, atol=1e-6)
        assert same == (not grad)
    assert torch.isfinite(grads[True]).all()


def test_guided_head_validates_its_inputs():
    with pytest.raises(ValueError, match="feature dimension"):
        NearestETFGuidedClassifier(3, 6)
    with pytest.raises(ValueError, match="momentum"):
        NearestETFGuidedClassifier(D, K, momentum=1.0)
    with pytest.raises(ValueError, match="scale"):
        NearestETFGuidedClassifier(D, K, scale=0)
    with pytest.raises(TypeError, match="grad"):
        NearestETFGuidedClassifier(D, K, grad=1)
    head = NearestETFGuidedClassifier(D, K)
    with pytest.raises(ValueError, match="labels"):
        head(torch.randn(3, D), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="0..4"):
        head(torch.randn(2, D), torch.tensor([0, 5]))


def test_make_head_selects_guided_and_keeps_the_others():
    assert isinstance(make_head("guided", D, K, scale=3.0), NearestETFGuidedClassifier)
    assert type(make_head("linear", D, K)) is nn.Linear
    assert isinstance(make_head("etf", D, K), FixedETFClassifier)
    with pytest.raises(ValueError, match="guided"):
        make_head("nope", D, K)
    m = build("mlp", (6,), K, width=D, depth=1, head="guided")
    assert isinstance(m.classifier, NearestETFGuidedClassifier)
    assert models.count_parameters(m) == models.count_parameters(build("mlp", (6,), K, width=D, depth=1, head="etf"))


def test_normalize_features_puts_features_on_a_sphere_and_default_is_unchanged():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    plain = build("mlp", (6,), K, width=D, depth=2, seed=1)
    m = build("mlp", (6,), K, width=D, depth=2, seed=1, normalize_features=10.0).eval()
    assert type(plain) is models.MLP
    assert isinstance(m, UnitFeatures) and isinstance(m.classifier, nn.Linear)
    with torch.no_grad():
        h = m.features(x)
        assert torch.allclose(h.norm(dim=1), torch.full((4,), 10.0), atol=1e-5)
        assert torch.allclose(h, 10 * F.normalize(plain.eval().features(x), dim=1), atol=1e-5)
        assert torch.equal(m(x), m.classifier(h))
    assert torch.allclose(
        build("mlp", (6,), K, width=D, depth=2, normalize_features=True).eval().features(x).norm(dim=1),
        torch.ones(4),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="radius"):
        build("mlp", (6,), K, normalize_features=-1.0)
    with pytest.raises(TypeError, match="normalize_features"):
        build("mlp", (6,), K, normalize_features="yes")


# ----------------------------------------------------------------------------- fit passes the labels
def _cfg(head_kw, **kw):
    return TrainConfig(
        data="gaussian",
        data_kwargs={"num_classes": 4, "dim": 6, "n_per_class": 20, "n_test_per_class": 5, "seed": 0},
        model="mlp",
        model_kwargs={"width": 8, "depth": 1, "batchnorm": False, **head_kw},
        epochs=3,
        batch_size=16,
        n_logs=3,
        lr=0.05,
        **kw,
    )


def test_fit_feeds_the_training_labels_to_a_guided_head():
    run = fit(_cfg({"head": "guided", "normalize_features": True}), cache=False, progress=False)
    head = run.model.classifier
    assert bool(head.seen.all())
    ref, _ = geometry.nearest_etf(F.normalize(head.means - head.means.mean(0), dim=1))
    assert torch.allclose(head.weight, ref, atol=1e-5)
    # the weight moved away from the random initial ETF, and no hook was left behind
    assert not torch.allclose(head.weight, geometry.simplex_etf(4, 8, seed=0, dtype=torch.float32), atol=1e-3)
    assert len(head._forward_pre_hooks) == 0
    assert np.isfinite(run.history.nc1).all() and "self_duality" in run.history


def test_fit_of_other_heads_is_unchanged_by_the_label_hook():
    cfg = _cfg({"head": "linear"})
    assert cfg.key() == TrainConfig(**{**cfg.to_dict()}).key()
    a = fit(cfg, cache=False, progress=False)
    b = fit(cfg, cache=False, progress=False)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])


# ----------------------------------------------------------------------------- reading histories
def test_epoch_below_interpolates_in_log_space():
    h = pd.DataFrame({"epoch": [0, 10, 20], "nc1": [1.0, 0.1, 0.01]})
    assert epoch_below(h, math.sqrt(0.1)) == pytest.approx(5.0)
    assert epoch_below(h, 0.05, interpolate=False) == 20
    assert epoch_below(h, 2.0) == 0.0
    assert math.isnan(epoch_below(h, 0.001))
    with pytest.raises(ValueError, match="threshold"):
        epoch_below(h, 0)
    with pytest.raises(ValueError, match="column"):
        epoch_below(h, 0.5, key="nc2")


def test_seed_bands_draws_one_line_and_band_per_label():
    import matplotlib

    matplotlib.use("Agg")
    from nclib import plots

    hs = [pd.DataFrame({"epoch": [0, 1, 2], "nc1": [1.0, 0.5 * s, 0.1 * s]}) for s in (1, 2)]
    fig = plots.seed_bands({"a": hs, "b": hs[:1]}, thresholds=(0.5,))
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3  # two means + one threshold
    assert ax.get_yscale() == "log"
    with pytest.raises(TypeError):
        plots.seed_bands({"a": []})


# ----------------------------------------------------------------------------- the authors' options
def test_auto_rate_is_two_over_t_plus_one_floored():
    head = NearestETFGuidedClassifier(D, K, momentum="auto", normalize=False)
    g = torch.Generator().manual_seed(5)
    y = torch.arange(K).repeat(2)
    want = None
    for t in range(1, 6):
        h = torch.randn(2 * K, D, generator=g)
        head(h, y)
        bm = torch.stack([h[y == k].mean(0) for k in range(K)])
        a = max(2.0 / (t + 1), 1e-4)
        want = bm if want is None else (1 - a) * want + a * bm
        assert torch.allclose(head.means, want, atol=1e-6)
    assert int(head.steps) == 5
    with pytest.raises(ValueError, match="auto"):
        NearestETFGuidedClassifier(D, K, momentum="fast")


def test_frobenius_mean_norm_and_centring_bias_and_fixed_variant():
    g = torch.Generator().manual_seed(6)
    y = torch.arange(K).repeat(3)
    h = torch.randn(3 * K, D, generator=g) + 4.0
    head = NearestETFGuidedClassifier(
        D, K, momentum=0.0, normalize=False, mean_norm="frobenius", center=True, scale=1.0
    )
    out = head(h, y)
    M = torch.stack([h[y == k].mean(0) for k in range(K)])
    ref, _ = geometry.nearest_etf(M.double())  # centring only: the rotation ignores a global scale
    assert torch.allclose(head.weight.double(), ref, atol=1e-5)
    assert torch.allclose(out, (h - M.mean(0)) @ head.weight.T, atol=1e-4)
    fixed = NearestETFGuidedClassifier(D, K, seed=2, momentum=0.0, normalize=False, center=True, guide=False)
    out = fixed(h, y)
    assert torch.equal(fixed.weight, geometry.simplex_etf(K, D, seed=2, dtype=torch.float32))
    assert torch.allclose(out, 10.0 * (h - M.mean(0)) @ fixed.weight.T, atol=1e-4)
    with pytest.raises(ValueError, match="mean_norm"):
        NearestETFGuidedClassifier(D, K, mean_norm="l1")
    with pytest.raises(TypeError, match="center"):
        NearestETFGuidedClassifier(D, K, center=1)


# ----------------------------------------------------------------------------- the authors' inner problem
def _authors_cost(Y, P, prox, delta):
    """‖Y − MP/√(K−1)‖²_F + δ/2 ‖P − P_prox‖²_F, written out as in the paper's inner problem."""
    K = Y.shape[0]
    Mm = torch.eye(K, dtype=Y.dtype) - 1.0 / K
    return float((Y - Mm @ P / math.sqrt(K - 1)).norm() ** 2 + delta / 2 * (P - prox).norm() ** 2)


def _riemannian_ascent(C, P, steps=3000, lr=0.1):
    """Brute force: gradient ascent of tr(PᵀC) on the manifold of K×D matrices with orthonormal
    rows (tangent projection, QR retraction) — the kind of solver the authors run."""
    for _ in range(steps):
        g = C - 0.5 * (C @ P.T + P @ C.T) @ P
        Q, R = torch.linalg.qr((P + lr * g).T)
        P = (Q * torch.sign(torch.diagonal(R))).T
    return P


def test_nearest_etf_frame_is_the_minimiser_of_the_authors_inner_problem():
    from nclib.guidance import nearest_etf_frame

    g = torch.Generator().manual_seed(7)
    K, D, delta = 4, 6, 0.2  # a large δ: the brute force converges along 1 at a rate ∝ δ
    Y = torch.randn(K, D, generator=g, dtype=torch.float64)
    Y = (Y - Y.mean(0)) / (Y - Y.mean(0)).norm()
    prox = torch.linalg.qr(torch.randn(D, K, generator=g, dtype=torch.float64))[0].T
    P = nearest_etf_frame(Y, prox, delta)
    assert torch.allclose(P @ P.T, torch.eye(K, dtype=torch.float64), atol=1e-12)
    best = _authors_cost(Y, P, prox, delta)
    C = 2 / math.sqrt(K - 1) * Y + delta * prox
    for s in range(5):  # the iterative solver from random starts never does better, and reaches it
        P0 = torch.linalg.qr(torch.randn(D, K, generator=torch.Generator().manual_seed(100 + s), dtype=torch.float64))[
            0
        ].T
        Pr = _riemannian_ascent(C, P0)
        assert _authors_cost(Y, Pr, prox, delta) >= best - 1e-10
        assert _authors_cost(Y, Pr, prox, delta) == pytest.approx(best, abs=1e-8)
        assert torch.allclose(Pr, P, atol=1e-5)
    for s in range(50):  # nor does any random frame
        Q = torch.linalg.qr(torch.randn(D, K, generator=torch.Generator().manual_seed(200 + s), dtype=torch.float64))[
            0
        ].T
        assert _authors_cost(Y, Q, prox, delta) >= best


def test_frame_etf_is_the_procrustes_nearest_etf_as_the_proximal_weight_vanishes():
    from nclib.guidance import etf_from_frame, nearest_etf_frame

    M = torch.randn(K, D, generator=torch.Generator().manual_seed(8), dtype=torch.float64) + 2.0
    Y = (M - M.mean(0)) / (M - M.mean(0)).norm()
    W = etf_from_frame(nearest_etf_frame(Y, torch.eye(K, D, dtype=torch.float64), 1e-10))
    assert torch.allclose(W, geometry.nearest_etf(M)[0], atol=1e-7)
    G = W @ W.T  # a unit-row simplex ETF
    assert torch.allclose(torch.diagonal(G), torch.ones(K, dtype=torch.float64), atol=1e-12)
    off = G[~torch.eye(K, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / (K - 1)), atol=1e-12)


def test_polar_gradient_is_the_derivative_of_the_solution():
    from nclib.guidance import nearest_etf_frame, polar

    g = torch.Generator().manual_seed(9)
    C = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(polar, (C,))
    G = torch.randn(3, 5, generator=g, dtype=torch.float64)
    C1 = C.detach().clone().requires_grad_(True)
    U, _, Vh = torch.linalg.svd(C1, full_matrices=False)
    (G * (U @ Vh)).sum().backward()
    C2 = C.detach().clone().requires_grad_(True)
    (G * polar(C2)).sum().backward()
    assert torch.allclose(C1.grad, C2.grad, atol=1e-10)
    prox = torch.eye(3, 5, dtype=torch.float64)
    Y = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: nearest_etf_frame(y / y.norm(), prox, 1e-2), (Y,))
    with pytest.raises(ValueError, match="rows"):
        polar(torch.randn(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="prox"):
        nearest_etf_frame(Y.detach(), torch.eye(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="delta"):
        nearest_etf_frame(Y.detach(), prox, -1.0)


def test_authors_head_batch_centring_proximal_solve_and_implicit_gradient():
    from nclib.guidance import etf_from_frame, nearest_etf_frame

    g = torch.Generator().manual_seed(10)
    y = torch.arange(K).repeat(3)
    h = torch.randn(3 * K, D, generator=g) + 2.0
    kw = dict(momentum="auto", normalize=False, mean_norm="frobenius", center="batch", scale=1.0, prox=1e-3)
    head = NearestETFGuidedClassifier(D, K, **kw)
    out = head(h, y)
    mu = h.mean(0)
    Mb = torch.stack([h[y == k].mean(0) for k in range(K)]) - mu  # batch-centred class means
    assert torch.allclose(head.means, Mb, atol=1e-6)
    Y = (Mb - Mb.mean(0)).double()
    W = etf_from_frame(nearest_etf_frame(Y / Y.norm(), torch.eye(K, D, dtype=torch.float64), 1e-3))
    assert torch.allclose(head.weight.double(), W, atol=1e-5)
    assert torch.allclose(out, (h - mu) @ head.weight.T, atol=1e-4)  # bias −W μ_G of the batch
    head.eval()
    assert torch.allclose(head(h + 1.0), (h + 1.0 - mu) @ head.weight.T, atol=1e-4)  # last batch's μ_G
    # the second step is proximal to the first solution
    head.train()
    h2 = torch.randn(3 * K, D, generator=g)
    P1 = head.frame.clone()
    head(h2, y)
    M2 = torch.stack([h2[y == k].mean(0) for k in range(K)]) - h2.mean(0)
    Y2 = (1 - 2 / 3) * Mb + 2 / 3 * M2  # α_2 = 2/3
    Y2 = (Y2 - Y2.mean(0)).double()
    assert torch.allclose(head.frame.double(), nearest_etf_frame(Y2 / Y2.norm(), P1.double(), 1e-3), atol=1e-5)
    # gradients: the implicit head's gradient differs from the detached one's by the path through W
    grads = {}
    for grad in (False, "implicit"):
        hd = NearestETFGuidedClassifier(D, K, **kw, grad=grad)
        x = h.clone().requires_grad_(True)
        F.cross_entropy(hd(x, y), y).backward()
        grads[grad] = x.grad
        x2 = h.clone().requires_grad_(True)
        F.cross_entropy((x2 - x2.mean(0)) @ hd.weight.T, y).backward()
        assert torch.allclose(grads[grad], x2.grad, atol=1e-6) == (grad is False)
    assert torch.isfinite(grads["implicit"]).all()
    with pytest.raises(ValueError, match="prox"):
        NearestETFGuidedClassifier(D, K, grad="implicit")
    with pytest.raises(TypeError, match="center"):
        NearestETFGuidedClassifier(D, K, center="global")
    with pytest.raises(ValueError, match="prox"):
        NearestETFGuidedClassifier(D, K, prox=-1.0)
    with pytest.raises(TypeError, match="grad"):
        NearestETFGuidedClassifier(D, K, grad="yes")
