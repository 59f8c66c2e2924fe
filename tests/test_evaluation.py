"""nclib.evaluation: rank measures, nearest subspace and linear probe against known answers."""

import math

import pytest
import torch

from nclib.evaluation import (
    NearestSubspace,
    class_ranks,
    corrupted_label_fit,
    early_stopped_row,
    effective_rank,
    label_information,
    linear_probe,
    nearest_mean_predict,
    nearest_subspace_accuracy,
    participation_ratio,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _orthonormal(D, r, g):
    Q, _ = torch.linalg.qr(torch.randn(D, r, generator=g, dtype=torch.float64))
    return Q  # D×r


# ----------------------------------------------------------------------------- rank measures
@pytest.mark.parametrize("fn", [effective_rank, participation_ratio])
def test_rank_one_is_exactly_one(fn):
    g = _gen()
    Z = torch.randn(50, 1, generator=g, dtype=torch.float64) @ torch.randn(1, 20, generator=g, dtype=torch.float64)
    assert fn(Z) == pytest.approx(1.0, abs=1e-9)
    # identical rows: rank one, and zero spread around the mean
    row = torch.randn(1, 7, generator=g, dtype=torch.float64)
    assert fn(row.repeat(10, 1)) == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(fn(row.repeat(10, 1), center=True))


@pytest.mark.parametrize("fn", [effective_rank, participation_ratio])
@pytest.mark.parametrize("r", [1, 3, 8])
def test_equal_singular_values_give_r(fn, r):
    g = _gen(r)
    Q = _orthonormal(30, r, g)  # r orthonormal directions in R^30
    Z = 2.5 * Q.T  # r×30, all singular values 2.5
    assert fn(Z) == pytest.approx(r, rel=1e-9)
    assert fn(Z * 1e-3) == pytest.approx(fn(Z), rel=1e-9)  # scale invariant


def test_isotropic_gaussian_is_about_r():
    g = _gen(1)
    r, D, n = 6, 40, 20000
    Z = torch.randn(n, r, generator=g, dtype=torch.float64) @ _orthonormal(D, r, g).T
    assert effective_rank(Z) == pytest.approx(r, rel=0.01)
    # PR of a sample covariance: ≈ r / (1 + (r+1)/n) (Marchenko–Pastur correction, tiny here)
    assert participation_ratio(Z, center=True) == pytest.approx(r / (1 + (r + 1) / n), rel=0.01)


def test_pr_ignores_a_floor_of_tiny_noise_but_erank_does_not():
    g = _gen(2)
    Z = torch.randn(400, 1, generator=g, dtype=torch.float64) @ torch.randn(1, 100, generator=g, dtype=torch.float64)
    Z = Z + 1e-3 * Z.norm() / 20 * torch.randn(400, 100, generator=g, dtype=torch.float64)
    assert participation_ratio(Z) < 1.01
    assert effective_rank(Z) > 1.5


def test_class_ranks_known_per_class_dimensions():
    g = _gen(3)
    D, dims, n = 25, [1, 2, 5], 4000
    Zs, ys = [], []
    for k, r in enumerate(dims):
        mu = 10 * torch.randn(D, generator=g, dtype=torch.float64)
        Zs.append(mu + torch.randn(n, r, generator=g, dtype=torch.float64) @ _orthonormal(D, r, g).T)
        ys.append(torch.full((n,), k))
    Z, y = torch.cat(Zs), torch.cat(ys)
    pr = class_ranks(Z, y, 3, measure="pr", center="class")
    assert pr.tolist() == pytest.approx([1.0, 2.0, 5.0], rel=0.02)
    er = class_ranks(Z, y, 3, measure="erank", center="class")
    assert er.tolist() == pytest.approx([1.0, 2.0, 5.0], rel=0.02)
    # around the global mean (or uncentred) the offset of the class mean dominates: ~1 direction each
    assert (class_ranks(Z, y, 3, center="global") < 1.3).all()
    assert (class_ranks(Z, y, 3, center="none") < 1.3).all()
    # a class with < 2 samples gives nan; normalize=True runs on the sphere
    out = class_ranks(Z[:4001], y[:4001], 3, center="class")
    assert out[0] == pytest.approx(1.0, rel=0.02) and math.isnan(out[1]) and math.isnan(out[2])
    assert torch.isfinite(class_ranks(Z, y, 3, normalize=True)).all()


def test_class_ranks_around_the_global_mean_see_collapse():
    g = _gen(5)
    K, D, n = 4, 20, 500
    means = 3 * torch.randn(K, D, generator=g, dtype=torch.float64)
    y = torch.arange(K).repeat_interleave(n)
    # collapsed: a tiny isotropic spread around each mean — one direction each, seen from the centre,
    # while the class-centred rank (scale invariant) still sees the full isotropic spread
    Z = means[y] + 1e-4 * torch.randn(K * n, D, generator=g, dtype=torch.float64)
    assert class_ranks(Z, y, K, center="global").max() < 1.001
    assert class_ranks(Z, y, K, center="class").min() > 0.9 * D / (1 + (D + 1) / n)
    # K classes on orthogonal 5-d subspaces through the origin, balanced: about 5 each
    Q = _orthonormal(D, D, g)
    Zs = torch.cat([torch.randn(n, 5, generator=g, dtype=torch.float64) @ Q[:, 5 * k : 5 * k + 5].T for k in range(K)])
    assert class_ranks(Zs, y, K, center="global").tolist() == pytest.approx([5.0] * K, rel=0.05)


def test_label_information_known_values():
    y = torch.arange(4).repeat(25)  # uniform over 4 classes
    assert label_information(y, y) == pytest.approx(math.log(4), abs=1e-12)
    assert label_information((y + 1) % 4, y) == pytest.approx(math.log(4), abs=1e-12)  # permuted: same info
    assert label_information(torch.zeros_like(y), y) == pytest.approx(0.0, abs=1e-12)  # constant: none
    # two independent fair bits (all four combinations equally often): exactly 0
    a, b = torch.tensor([0, 0, 1, 1] * 10), torch.tensor([0, 1, 0, 1] * 10)
    assert label_information(a, b) == pytest.approx(0.0, abs=1e-12)
    # merging two of four classes: H(Y) − (1/2)·log 2
    assert label_information(torch.where(y == 3, 2, y), y) == pytest.approx(math.log(4) - 0.5 * math.log(2))
    with pytest.raises(ValueError, match="one label per row"):
        label_information(y[:3], y)
    with pytest.raises(TypeError, match="integer"):
        label_information(y.double(), y)


def test_rank_validation():
    with pytest.raises(TypeError, match="torch.Tensor"):
        effective_rank([[1.0, 2.0]])
    with pytest.raises(ValueError, match="2-D"):
        participation_ratio(torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(TypeError, match="floating"):
        effective_rank(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="measure"):
        class_ranks(torch.ones(4, 2), torch.tensor([0, 0, 1, 1]), 2, measure="entropy")
    with pytest.raises(ValueError, match="center"):
        class_ranks(torch.ones(4, 2), torch.tensor([0, 0, 1, 1]), 2, center=True)
    with pytest.raises(ValueError, match="out of range"):
        class_ranks(torch.ones(4, 2), torch.tensor([0, 0, 1, 2]), 2)
    assert math.isnan(effective_rank(torch.zeros(3, 4)))


# ----------------------------------------------------------------------------- nearest subspace
def _subspace_data(K=4, D=30, r=3, n=60, seed=0, offset=0.0):
    """K random r-dimensional subspaces of R^D (affine when offset > 0); n points on each."""
    g = _gen(seed)
    bases = [_orthonormal(D, r, g) for _ in range(K)]
    shifts = [offset * torch.randn(D, generator=g, dtype=torch.float64) for _ in range(K)]

    def draw(m):
        Z = torch.cat([shifts[k] + torch.randn(m, r, generator=g, dtype=torch.float64) @ bases[k].T for k in range(K)])
        return Z, torch.arange(K).repeat_interleave(m)

    return draw(n), draw(n)


@pytest.mark.parametrize("center,offset", [(False, 0.0), (True, 0.0), (True, 3.0)])
def test_points_in_per_class_subspaces_are_all_classified(center, offset):
    (Ztr, ytr), (Zte, yte) = _subspace_data(offset=offset)
    ns = NearestSubspace(3, center=center).fit(Ztr, ytr)
    assert ns.score(Zte, yte) == 1.0
    res = ns.residuals(Zte)
    own = res[torch.arange(len(yte)), yte]
    assert own.max() < 1e-10  # every point lies in its own class's subspace
    assert nearest_subspace_accuracy(Ztr, ytr, Zte, yte, 3, center=center) == 1.0


def test_too_few_components_leave_residuals_and_small_classes_keep_all_directions():
    (Ztr, ytr), (Zte, yte) = _subspace_data(K=3, D=6, r=3, offset=0.0, seed=4)
    # one direction per class cannot represent 3-d classes: residuals are not zero
    ns1 = NearestSubspace(1).fit(Ztr, ytr)
    assert ns1.residuals(Zte)[torch.arange(len(yte)), yte].min() > 1e-3
    # more components than a class has samples: the basis is the whole span of the class
    ns = NearestSubspace(50, center=False).fit(Ztr[:5], torch.tensor([0, 0, 0, 1, 1]), num_classes=2)
    assert [U.shape[1] for U in ns.bases] == [3, 2]
    assert ns.residuals(Ztr[:5])[torch.arange(5), torch.tensor([0, 0, 0, 1, 1])].max() < 1e-10


def test_nearest_subspace_validation():
    ns = NearestSubspace(2)
    with pytest.raises(RuntimeError, match="not fitted"):
        ns.predict(torch.ones(2, 3))
    with pytest.raises(ValueError, match="n_components"):
        NearestSubspace(0)
    with pytest.raises(TypeError, match="n_components"):
        NearestSubspace(2.0)
    with pytest.raises(ValueError, match="class 1 has no training samples"):
        NearestSubspace(1).fit(torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 0, 2, 2]), 3)
    ns.fit(torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="dimension"):
        ns.predict(torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="one label per row"):
        ns.fit(torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- linear probe
def test_linear_probe_separates_separable_data(make_data):
    x, y = make_data(4, 10, 100, seed=0, sep=5.0, noise=0.3)
    probe = linear_probe(x, y)
    assert probe.score(x, y) == 1.0
    xt, yt = make_data(4, 10, 100, seed=0, sep=5.0, noise=0.3)  # same centres (same seed), new order
    assert probe.score(xt, yt) == 1.0


def test_linear_probe_matches_sklearn_logistic_regression(make_data):
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = make_data(3, 5, 80, seed=1, sep=1.0, noise=1.0)
    lam = 1e-2
    probe = linear_probe(x, y, weight_decay=lam, standardize=False)
    ref = sklearn.LogisticRegression(C=1 / (len(y) * lam), tol=1e-10, max_iter=10000).fit(x.numpy(), y.numpy())
    # softmax parameters are defined up to a common shift per feature; with the L2 penalty sklearn's
    # multinomial solution has zero-sum columns, and so has ours (the gradient keeps the sum at 0)
    assert torch.allclose(probe.W, torch.as_tensor(ref.coef_), atol=1e-4)
    assert torch.equal(probe.predict(x), torch.as_tensor(ref.predict(x.numpy())))


def test_linear_probe_validation():
    with pytest.raises(ValueError, match="weight_decay"):
        linear_probe(torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1]), weight_decay=-1.0)
    with pytest.raises(TypeError, match="integer"):
        linear_probe(torch.randn(4, 2, dtype=torch.float64), torch.tensor([0.0, 1.0, 0.0, 1.0]))


# ----------------------------------------------------------------------------- helpers
def test_nearest_mean_predict():
    Z = torch.tensor([[0.0, 0.0], [0.2, 0.0], [10.0, 0.0], [10.2, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert nearest_mean_predict(Z, y).tolist() == [0, 0, 1, 1]
    # a "mislabelled" point sitting among class 1 goes to class 1's mean when the means are clean
    q = torch.tensor([[9.9, 0.1]], dtype=torch.float64)
    assert nearest_mean_predict(Z, y, query=q).tolist() == [1]
    # a class without samples is never predicted
    assert nearest_mean_predict(Z, y, num_classes=3, query=torch.zeros(1, 2, dtype=torch.float64)).tolist() == [0]
    with pytest.raises(ValueError, match="dimension"):
        nearest_mean_predict(Z, y, query=torch.zeros(1, 3, dtype=torch.float64))


def test_early_stopped_row():
    import pandas as pd

    h = pd.DataFrame({"epoch": [0, 1, 2, 3], "val_error": [0.9, 0.2, 0.2, 0.5], "test_error": [0.9, 0.3, 0.25, 0.6]})
    row = early_stopped_row(h)
    assert int(row.epoch) == 1 and row.test_error == 0.3  # earliest of the tied minima
    with pytest.raises(ValueError, match="val_size"):
        early_stopped_row(h.drop(columns="val_error"))
    with pytest.raises(TypeError, match="DataFrame"):
        early_stopped_row({"val_error": [1.0]})


def test_corrupted_label_fit():
    g = _gen(7)
    K, n = 3, 100
    means = 10 * torch.eye(K, dtype=torch.float64)
    clean = torch.arange(K).repeat_interleave(n)
    noisy = clean.clone()
    bad = torch.arange(0, K * n, 10)  # 10 % corrupted
    noisy[bad] = (clean[bad] + 1) % K
    jitter = 0.1 * torch.randn(K * n, K, generator=g, dtype=torch.float64)
    # features that kept their true class: every corrupted sample sits with its clean class
    kept = corrupted_label_fit(means[clean] + jitter, noisy, clean)
    assert kept == {"memorized": 0.0, "kept": 1.0, "n_corrupted": len(bad)}
    # features collapsed onto the noisy labels (a network that memorised them)
    mem = corrupted_label_fit(means[noisy] + jitter, noisy, clean)
    assert mem["memorized"] == 1.0 and mem["kept"] == 0.0
    assert math.isnan(corrupted_label_fit(means[clean], clean, clean)["memorized"])
