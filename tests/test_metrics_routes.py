"""Tests of the routes added for speed and memory in nclib.metrics, each against the direct/default
computation and against analytic cases:

* the K×K pair statistics in row blocks when K > D (cosines, Gram errors, CDNV, uniformity);
* NC4's decisions screened in float32 and certified (they must be float64's, ties included);
* the optional ``precision="float32"`` path (bounded error, NC4 still exact);
* ``TrainingTracker`` (the approximation from training forward passes): exact on its features;
* validation of the new arguments.
"""

import math

import pytest
import torch
from torch import nn

from nclib import metrics as M
from nclib.metrics import FeatureStats
from nclib.metrics import stats as MS

F64 = torch.float64
PAIR_FNS = ("equiangularity", "max_angle", "gram_etf_error", "cdnv", "hyperspherical_uniformity", "self_duality_zhu")


def rel(a, b):
    a, b = float(a), float(b)
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b), 1e-300)


def stats_from_means(means, var, n=5):
    K, D = means.shape
    st = FeatureStats(K, D, scatter=False)
    st.counts = torch.full((K,), float(n), dtype=F64)
    st.means = means.to(F64).clone()
    st.sq_dev = var.to(F64) * n
    return st


def pair_values(st, W):
    out = {}
    for name in PAIR_FNS:
        fn = getattr(M, name)
        v = fn(st, W) if name == "self_duality_zhu" else fn(st)
        if isinstance(v, dict):
            out.update({f"{name}.{k}": x for k, x in v.items()})
        else:
            out[name] = v
    return out


def direct_pair_values(st, W, unbiased=True):
    """The formulas on the full K×K matrices (what the single-block code computes)."""
    Mc = st.centered_means()
    K = Mc.shape[0]
    i, j = torch.triu_indices(K, K, 1)
    U = Mc / Mc.norm(dim=1, keepdim=True)
    cos = (U @ U.T)[i, j]
    P = torch.eye(K, dtype=F64) - 1.0 / K

    def etf(A, B):
        G = A @ B.T
        return float((G / G.norm() - P / math.sqrt(K - 1)).norm())

    d2 = (st.means[i] - st.means[j]).pow(2).sum(1)
    var = st.sq_dev / st.counts
    kern = -(U[i] - U[j]).norm(dim=1).log()
    return {
        "equiangularity": float(cos.std()),
        "max_angle": float((cos + 1 / (K - 1)).abs().mean()),
        "gram_etf_error": etf(Mc, Mc),
        "cdnv": float(((var[i] + var[j]) / (2 * d2)).mean()),
        "hyperspherical_uniformity.energy": float(kern.mean()),
        "hyperspherical_uniformity.spread": float(kern.std()),
        "self_duality_zhu": etf(W.to(F64), Mc),
    }


# ----------------------------------------------------------------------------- pair blocks
def test_pair_rows_bounds_the_block():
    assert MS._pair_rows(10, 512) == 10  # K ≤ D: one block, the direct code
    assert MS._pair_rows(100, 100) == 100
    r = MS._pair_rows(1000, 256)
    assert r < 1000 and r * 1000 <= 1000 * 256 + 256**2
    assert MS._pair_rows(10_000, 2) >= 1


@pytest.mark.parametrize("K,D,offset", [(60, 8, 0.0), (300, 16, 0.0), (120, 4, 30.0)])
def test_blocked_pair_statistics_match_the_formulas(K, D, offset):
    g = torch.Generator().manual_seed(K + D)
    means = torch.randn(K, D, generator=g, dtype=F64) + offset
    st = stats_from_means(means, torch.rand(K, generator=g, dtype=F64) + 0.1)
    W = torch.randn(K, D, generator=g, dtype=F64)
    assert MS._pair_rows(K, D) < K  # the blocked route is the one under test
    got, want = pair_values(st, W), direct_pair_values(st, W)
    for k in want:
        assert rel(got[k], want[k]) <= 1e-12, (k, got[k], want[k])


def test_blocked_route_equals_one_block(monkeypatch):
    """The same numbers whatever the block size (one block = the direct code when K ≤ D)."""
    g = torch.Generator().manual_seed(3)
    K, D = 40, 64
    st = stats_from_means(torch.randn(K, D, generator=g, dtype=F64), torch.rand(K, generator=g, dtype=F64) + 0.1)
    W = torch.randn(K, D, generator=g, dtype=F64)
    one = pair_values(st, W)
    calls = []
    monkeypatch.setattr(MS, "_pair_rows", lambda K, D: calls.append((K, D)) or 7)
    blocked = pair_values(st, W)
    assert calls, "the patched block size must reach the pair statistics"
    for k in one:
        assert rel(blocked[k], one[k]) <= 1e-12, (k, blocked[k], one[k])


def test_blocked_distances_of_near_pairs_are_exact():
    """Two means 1e-7 apart in a large offset: the Gram route would lose every digit; the close
    pair is recomputed from differences (CDNV and the log-distance kernel stay exact)."""
    g = torch.Generator().manual_seed(5)
    K, D = 50, 4
    means = torch.randn(K, D, generator=g, dtype=F64) * 3 + 100.0
    means[1] = means[0] + 1e-7 * torch.tensor([1.0, -2.0, 0.5, 1.0], dtype=F64)
    st = stats_from_means(means, torch.full((K,), 1e-3, dtype=F64))
    W = torch.randn(K, D, generator=g, dtype=F64)
    got, want = pair_values(st, W), direct_pair_values(st, W)
    for k in ("cdnv", "hyperspherical_uniformity.energy", "hyperspherical_uniformity.spread"):
        assert rel(got[k], want[k]) <= 1e-12, (k, got[k], want[k])


def test_blocked_cdnv_identical_means_error():
    means = torch.randn(40, 3, dtype=F64)
    means[7] = means[2]
    with pytest.raises(ValueError, match="identical means"):
        M.cdnv(stats_from_means(means, torch.ones(40, dtype=F64)))


def test_many_class_etf_free_analytic_case():
    """K points equally spaced on a circle (D=2, K > D+1): every cosine is cos(2πm/K), a known
    multiset; equinorm 0, max_angle from the closed form."""
    K = 12
    t = 2 * math.pi * torch.arange(K, dtype=F64) / K
    st = stats_from_means(torch.stack([t.cos(), t.sin()], 1), torch.ones(K, dtype=F64))
    cos = torch.tensor(
        [math.cos(2 * math.pi * ((j - i) % K) / K) for i in range(K) for j in range(i + 1, K)], dtype=F64
    )
    assert rel(M.equiangularity(st), cos.std()) <= 1e-12
    assert rel(M.max_angle(st), (cos + 1 / (K - 1)).abs().mean()) <= 1e-12
    assert M.equinorm(st) < 1e-14


# ----------------------------------------------------------------------------- certified NC4
def nc4_both(monkeypatch, x, y, W, b, K, **kw):
    screened = M.measure_features(x, y, W, b, num_classes=K, **kw).metrics
    monkeypatch.setattr(MS, "_NC4_SCREEN", False)
    plain = M.measure_features(x, y, W, b, num_classes=K, **kw).metrics
    monkeypatch.setattr(MS, "_NC4_SCREEN", True)
    return screened, plain


@pytest.mark.parametrize("N,D,K", [(3000, 64, 10), (3000, 8, 60), (500, 3, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_certified_decisions_equal_float64(monkeypatch, N, D, K, dtype):
    g = torch.Generator().manual_seed(N + K)
    mu = torch.randn(K, D, generator=g)
    y = torch.randint(0, K, (N,), generator=g)
    x = (mu[y] + 0.8 * torch.randn(N, D, generator=g)).to(dtype)
    W = mu - mu.mean(0) + 0.3 * torch.randn(K, D, generator=g)
    b = torch.randn(K, generator=g)
    s, p = nc4_both(monkeypatch, x, y, W, b, K)
    assert s["ncc_mismatch"] == p["ncc_mismatch"] and s["accuracy"] == p["accuracy"]
    for k in p:
        assert rel(s[k], p[k]) <= 1e-12, k


def test_certified_decisions_with_exact_ties(monkeypatch):
    """Integer features and duplicated classifier rows: exact ties everywhere; the screen sends
    them to float64, which breaks them as before (first index)."""
    g = torch.Generator().manual_seed(0)
    K, D, N = 6, 5, 600
    y = torch.arange(N) % K
    x = torch.randint(-2, 3, (N, D), generator=g).float()
    W = torch.randint(-1, 2, (K, D), generator=g).float()
    W[3] = W[1]
    b = torch.zeros(K)
    s, p = nc4_both(monkeypatch, x, y, W, b, K)
    assert s["ncc_mismatch"] == p["ncc_mismatch"] and s["accuracy"] == p["accuracy"]


def test_certified_argmax_resolves_a_float32_tie_as_float64():
    """Scores 1 + 3e-9 vs 1: equal in float32, ordered in float64: the certified argmax must give
    float64's answer, and a clear winner is taken from float32 directly."""
    A = torch.tensor([[1.0, 0.0], [1.0, 3e-9]], dtype=F64)
    h = torch.tensor([[1.0, 1.0], [2.0, -1.0], [0.0, 5.0]], dtype=F64)
    dec = MS._CertifiedArgmax(A, None)
    calls = []

    def exact(rows):
        calls.append(rows.tolist())
        return (h[rows] @ A.T).argmax(1)

    h32 = h.float()
    pred = dec(h32, torch.linalg.vector_norm(h32, dim=1), exact)
    assert pred.tolist() == (h @ A.T).argmax(1).tolist() == [1, 0, 1]
    assert calls == [[0, 1, 2]] or all(0 in c for c in calls)  # the near-tie row went to float64


def test_screen_is_off_for_reduced_precision_matmuls(monkeypatch):
    assert MS._screen_ok(torch.device("cpu"))
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert not MS._screen_ok(torch.device("cpu"))
    finally:
        torch.set_float32_matmul_precision(old)
    monkeypatch.setattr(MS, "_NC4_SCREEN", False)
    assert not MS._screen_ok(torch.device("cpu"))


# ----------------------------------------------------------------------------- precision="float32"
@pytest.mark.parametrize("N,D,K,route", [(4000, 128, 10, "auto"), (4000, 128, 10, "dd"), (4000, 16, 50, "auto")])
def test_float32_path_error_bound(N, D, K, route):
    g = torch.Generator().manual_seed(D * K)
    mu = torch.randn(K, D, generator=g)
    y = torch.randint(0, K, (N,), generator=g)
    x = mu[y] + torch.randn(N, D, generator=g)
    W = mu - mu.mean(0) + 0.5 * torch.randn(K, D, generator=g)
    b = torch.randn(K, generator=g)
    ref = M.measure_features(x, y, W, b, num_classes=K, route=route).metrics
    got = M.measure_features(x, y, W, b, num_classes=K, route=route, precision="float32").metrics
    assert list(got) == list(ref)
    for k in ref:
        assert rel(got[k], ref[k]) <= 1e-5, (k, got[k], ref[k])
    assert got["ncc_mismatch"] == ref["ncc_mismatch"] and got["accuracy"] == ref["accuracy"]  # still certified


def test_default_key_order_unchanged():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 6, generator=g), torch.arange(200) % 4
    W = torch.randn(4, 6, generator=g)
    m = M.measure_features(x, y, W)
    keys = list(M.collapse_metrics(m.stats, W))
    assert list(m.metrics)[: len(keys)] == keys
    assert not math.isnan(m["cdnv"]) and m["cdnv"] == M.cdnv(m.stats)


# ----------------------------------------------------------------------------- TrainingTracker
class Net(nn.Module):
    def __init__(self, d_in=6, D=8, K=4):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, D), nn.ReLU())
        self.classifier = nn.Linear(D, K)

    def forward(self, x):
        return self.classifier(self.body(x))


def test_tracker_is_exact_on_its_features():
    """Without weight updates or train/eval differences the approximation has nothing to
    approximate: it equals measure() on the same data."""
    torch.manual_seed(0)
    net, K = Net(), 4
    X, y = torch.randn(90, 6), torch.arange(90) % K
    tr = M.TrainingTracker(net.classifier, K, precision="float64")
    net.train()
    for s in range(0, 90, 32):
        tr.labels(y[s : s + 32])
        net(X[s : s + 32])
    net.eval()
    net(X)  # evaluation-mode calls are ignored
    net.train()
    assert tr.pending == 90
    got = tr.compute().metrics
    want = M.measure(net, [(X, y)], num_classes=K).metrics
    for k in want:
        assert rel(got[k], want[k]) <= 1e-12, k
    assert tr.pending == 0
    with pytest.raises(ValueError, match="no training batches"):
        tr.compute()
    tr.remove()
    net(X)
    assert tr.pending == 0 and tr._rows == 0


def test_tracker_pairs_in_order_and_checks_sizes():
    net, K = Net(), 4
    X, y = torch.randn(40, 6), torch.arange(40) % K
    with M.TrainingTracker(net.classifier, K) as tr:
        net.train()
        net(X[:20])  # forward first, labels after: paired in order
        tr.labels(y[:20])
        net(X[20:])  # a forward whose labels come later stays pending
        m = tr.compute()
        assert m["n"] == 20
        assert tr._rows == 20  # the second forward pass waits for its labels
        tr.labels(y[20:30])  # wrong size for the pending batch
        with pytest.raises(ValueError, match="labels"):
            tr.compute()


def test_tracker_validation():
    net = Net()
    with pytest.raises(TypeError, match="module"):
        M.TrainingTracker("classifier", 4)
    with pytest.raises(TypeError, match="num_classes"):
        M.TrainingTracker(net.classifier, 4.0)
    with pytest.raises(ValueError, match="num_classes"):
        M.TrainingTracker(net.classifier, 1)
    with pytest.raises(ValueError, match="precision"):
        M.TrainingTracker(net.classifier, 4, precision="half")
    with pytest.raises(ValueError, match="global_mean"):
        M.TrainingTracker(net.classifier, 4, global_mean="median")
    tr = M.TrainingTracker(net.classifier, 4)
    with pytest.raises(ValueError, match="1-D"):
        tr.labels(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        tr.labels([0, 1])
    tr.remove()


# ----------------------------------------------------------------------------- validation
def test_new_arguments_are_validated():
    x, y = torch.randn(20, 3), torch.arange(20) % 2
    with pytest.raises(ValueError, match="precision"):
        M.measure_features(x, y, precision="float16")
    with pytest.raises(ValueError, match="batch_size"):
        M.measure_features(x, y, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        M.measure_features(x, y, batch_size=2.5)
    net = Net(d_in=3, K=2)
    with pytest.raises(ValueError, match="precision"):
        M.measure(net, [(x, y)], num_classes=2, precision="double")


def test_many_class_identities_fall_back_when_they_would_cancel():
    """Nearly parallel rows (cosines ≈ 1, tiny spread) with K > D: the D×D identities for the
    cosine variance and the Gram error would cancel; the blocked two-pass route is taken and the
    values still match the direct formulas."""
    g = torch.Generator().manual_seed(11)
    K, D = 80, 3
    V = torch.ones(K, D, dtype=F64) + 1e-4 * torch.randn(K, D, generator=g, dtype=F64)
    i, j = torch.triu_indices(K, K, 1)
    U = V / V.norm(dim=1, keepdim=True)
    cos = (U @ U.T)[i, j]
    assert rel(M.equiangularity(V), cos.std()) <= 1e-9
    P = torch.eye(K, dtype=F64) - 1.0 / K
    A = torch.randn(K, D, generator=g, dtype=F64)
    G = A @ V.T
    want = float((G / G.norm() - P / math.sqrt(K - 1)).norm())
    assert rel(MS._etf_gram_error(A, V), want) <= 1e-12
    # an orthogonal pair (G = 0 up to rounding) takes the blocked route too
    B = torch.zeros(K, D, dtype=F64)
    B[:, 0] = 1.0
    C = torch.zeros(K, D, dtype=F64)
    C[:, 1] = 1.0
    assert MS._etf_gram_error(B, C) == math.inf


def test_tracker_float32_default_is_close_to_exact():
    torch.manual_seed(1)
    net, K = Net(d_in=6, D=16, K=3), 3
    X, y = torch.randn(300, 6), torch.arange(300) % K
    tr = M.TrainingTracker(net.classifier, K)  # precision="float32"
    net.train()
    for s in range(0, 300, 64):
        net(X[s : s + 64])
        tr.labels(y[s : s + 64])
    got = tr.compute().metrics
    want = M.measure(net, [(X, y)], num_classes=K).metrics
    for k in want:
        assert rel(got[k], want[k]) <= 1e-5, k
    assert got["ncc_mismatch"] == want["ncc_mismatch"]
    tr.remove()
