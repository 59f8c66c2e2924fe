"""Unit tests for nclib.imbalance (minority-collapse measurements, long-tail losses, the
multi-centre head, the imbalanced UFM) and for the pieces it adds elsewhere: registered losses in
nclib.train.fit (TrainConfig.loss_kwargs, cache keys unchanged), the fixed-head parameter savings
and make_head("multicenter"). Known answers throughout."""

import math

import pytest
import torch
import torch.nn.functional as F

from nclib import data as D
from nclib import geometry, metrics, models, ufm
from nclib import imbalance as imb
from nclib.train import TrainConfig, fit


# ----------------------------------------------------------------------------- cosines, accuracy
def test_mean_pairwise_cosine_known():
    K = 6
    E = geometry.simplex_etf(K, 8, seed=1)
    assert imb.mean_pairwise_cosine(E) == pytest.approx(-1 / (K - 1), abs=1e-12)
    assert imb.mean_pairwise_cosine(3 * E, rows=[3, 4, 5]) == pytest.approx(-1 / (K - 1), abs=1e-12)
    v = torch.randn(5, dtype=torch.float64)
    assert imb.mean_pairwise_cosine(torch.stack([v, 2 * v, 0.5 * v])) == pytest.approx(1.0, abs=1e-12)
    assert imb.mean_pairwise_cosine(torch.eye(4, dtype=torch.float64)) == pytest.approx(0.0, abs=1e-15)
    C = imb.pairwise_cosines(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert C[0, 1].item() == pytest.approx(1 / math.sqrt(2))


def test_cosine_validation():
    with pytest.raises(ValueError, match="zero"):
        imb.pairwise_cosines(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="rows"):
        imb.mean_pairwise_cosine(torch.eye(3), rows=[1])
    with pytest.raises(ValueError, match="rows"):
        imb.mean_pairwise_cosine(torch.eye(3), rows=[1, 3])
    with pytest.raises(TypeError):
        imb.pairwise_cosines([[1.0, 0.0]])


def test_per_class_accuracy_known():
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    acc = imb.per_class_accuracy(pred, y, 4)
    assert acc[:3].tolist() == pytest.approx([0.5, 2 / 3, 1.0]) and math.isnan(acc[3])
    scores = F.one_hot(pred, 4).double()
    assert torch.allclose(imb.per_class_accuracy(scores, y, 4)[:3], acc[:3])
    with pytest.raises(ValueError):
        imb.per_class_accuracy(pred, y[:-1], 4)
    with pytest.raises(ValueError):
        imb.per_class_accuracy(pred, torch.tensor([0, 0, 1, 1, 1, 5]), 4)


@pytest.mark.parametrize("gm", ["samples", "classes"])
def test_per_class_nc1_weighted_sum_is_nc1(make_data, gm):
    x, y = make_data(4, 6, [40, 30, 10, 5], seed=2, sep=3.0)
    per = imb.per_class_nc1(x, y, 4, global_mean=gm)
    stats = metrics.FeatureStats(4, 6, scatter=True).update(x, y)
    pi = stats.counts / stats.counts.sum()
    assert float((pi * per).sum()) == pytest.approx(metrics.nc1(stats, global_mean=gm), rel=1e-10)


def test_per_class_nc1_collapsed_class_is_zero(make_data):
    x, y = make_data(3, 5, [20, 20, 20], seed=0)
    x[y == 1] = x[y == 1].mean(0)
    per = imb.per_class_nc1(x, y, 3)
    assert per[1].item() == pytest.approx(0.0, abs=1e-12) and (per[[0, 2]] > 0).all()


# ----------------------------------------------------------------------------- losses
def test_logit_adjusted_loss_known():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 3, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    assert imb.logit_adjusted_loss(z, y, [5, 5, 5]).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)
    assert imb.logit_adjusted_loss(z, y, [9, 3, 1], tau=0.0).item() == pytest.approx(
        F.cross_entropy(z, y).item(), rel=1e-6
    )
    # zero logits: the loss is −log(π_y^τ / Σ_k π_k^τ)
    pi = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    for tau in (1.0, 0.5):
        val = imb.logit_adjusted_loss(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([2]), [6, 3, 1], tau=tau)
        assert val.item() == pytest.approx(-math.log(pi[2] ** tau / (pi**tau).sum()), rel=1e-12)
    with pytest.raises(ValueError):
        imb.logit_adjusted_loss(z, y, [1, 2])
    with pytest.raises(ValueError):
        imb.logit_adjusted_loss(z, y, [1, 0, 2])


def test_class_balanced_weights_and_loss():
    assert imb.class_balanced_weights([1, 2]).tolist() == pytest.approx([4 / 3, 2 / 3])
    assert imb.class_balanced_weights([10, 1000], beta=0.0).tolist() == pytest.approx([1.0, 1.0])
    b = 0.9
    w = torch.tensor([(1 - b) / (1 - b**10), (1 - b) / (1 - b**2)], dtype=torch.float64)
    assert imb.class_balanced_weights([10, 2], beta=b).tolist() == pytest.approx((2 * w / w.sum()).tolist())
    with pytest.raises(ValueError):
        imb.class_balanced_weights([1, 2], beta=1.0)
    z = torch.randn(6, 2, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 1, 1])
    assert imb.class_balanced_loss(z, y, [3, 3]).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-12)
    # weights 1/n_k: each class's mean loss counts equally
    ce = F.cross_entropy(z, y, reduction="none")
    expected = 0.5 * (ce[:4].mean() + ce[4:].mean())
    assert imb.class_balanced_loss(z, y, [4, 2]).item() == pytest.approx(expected.item(), rel=1e-12)


def test_dot_regression_and_cosine_alignment_known():
    W = torch.eye(3, dtype=torch.float64)
    y = torch.tensor([0, 1])
    aligned = torch.tensor([[2.0, 0, 0], [0, 0.5, 0]], dtype=torch.float64)
    ortho = torch.tensor([[0, 1.0, 0], [0, 0, 3.0]], dtype=torch.float64)
    assert imb.dot_regression_loss(aligned, y, W).item() == pytest.approx(0.0, abs=1e-15)
    assert imb.dot_regression_loss(ortho, y, W).item() == pytest.approx(0.5)
    assert imb.dot_regression_loss(-aligned, y, W).item() == pytest.approx(2.0)
    assert imb.cosine_alignment_loss(aligned, y, W).item() == pytest.approx(0.0, abs=1e-15)
    assert imb.cosine_alignment_loss(ortho, y, W).item() == pytest.approx(1.0)
    assert imb.cosine_alignment_loss(-aligned, y, 5 * W).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="K×D"):
        imb.cosine_alignment_loss(aligned, y, torch.eye(3, 4, dtype=torch.float64))


# ----------------------------------------------------------------------------- multi-centre head
def test_centers_per_class_known():
    assert imb.centers_per_class([100, 10, 1], 5) == [1, 3, 5]
    assert imb.centers_per_class([7, 7, 7], 5) == [1, 1, 1]
    assert imb.centers_per_class([400] * 5 + [4] * 5, 8) == [1] * 5 + [8] * 5
    with pytest.raises(ValueError):
        imb.centers_per_class([1, 2], 0)


def test_multicenter_geometry_and_rules():
    K, D, theta = 4, 20, 0.3
    head = imb.MultiCenterClassifier(D, K, centers=[1, 2, 3, 4], theta=theta, seed=2)
    C, own = head.centers.double(), head.owner
    assert C.shape == (10, D) and own.tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert torch.allclose(C.norm(dim=1), torch.ones(10, dtype=torch.float64), atol=1e-6)
    # the paper's construction c_kj = sin θ w_k + cos θ v_kj: the class directions w_k an ETF, every
    # centre at angle π/2 − θ from its w_k and θ from its own direction v_kj
    E = geometry.simplex_etf(K, D, seed=2)
    assert torch.allclose((C * E[own]).sum(1), torch.full((10,), math.sin(theta), dtype=torch.float64), atol=1e-6)
    V = (C - math.sin(theta) * E[own]) / math.cos(theta)
    assert torch.allclose(V @ V.T, torch.eye(10, dtype=torch.float64), atol=1e-5)
    assert (V @ E.T).abs().max() < 1e-5
    T = torch.stack([C[own == k].mean(0) for k in range(K)])
    assert torch.allclose(head.targets.double(), T, atol=1e-6)
    # |m_k|² = sin²θ + cos²θ / f_k, and cos(m_k, w_k) = sin θ / |m_k|
    f = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    norm = (math.sin(theta) ** 2 + math.cos(theta) ** 2 / f).sqrt()
    assert torch.allclose(T.norm(dim=1), norm, atol=1e-6)
    assert torch.allclose(F.cosine_similarity(T, E, dim=1), math.sin(theta) / norm, atol=1e-6)
    assert torch.allclose(head.weight.double(), F.normalize(T, dim=1), atol=1e-6)
    assert models.count_parameters(head) == 0
    # rules: at a centre c_kj the max rule gives 1 for class k
    s = head.scores(head.centers)
    assert torch.allclose(s[torch.arange(10), own], torch.ones(10), atol=1e-5)
    assert torch.equal(head.scores(head.targets, "mean").argmax(1), torch.arange(K))
    assert torch.allclose(head(head.centers), head.scale * s)
    with pytest.raises(ValueError, match="dimension"):
        imb.MultiCenterClassifier(8, K, centers=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="rule"):
        imb.MultiCenterClassifier(D, K, rule="min")
    assert isinstance(models.make_head("multicenter", D, K, centers=[1, 1, 2, 2]), imb.MultiCenterClassifier)


def test_projected_features_and_fixed_head_parameter_savings():
    K, Dh = 10, 16
    lin = models.build("mlp", (40,), K, width=32, depth=2, projection=Dh)
    etf = models.build("mlp", (40,), K, width=32, depth=2, projection=Dh, head="etf")
    x = torch.randn(5, 40)
    assert lin.features(x).shape == (5, Dh) and (lin.features(x) < 0).any()  # signed features
    assert models.count_parameters(lin) - models.count_parameters(etf) == K * Dh + K
    etf_k = models.build("mlp", (40,), K, width=32, depth=2, projection=K, head="etf")
    assert etf_k.classifier.weight.shape == (K, K) and models.count_parameters(etf_k.classifier) == 0


# ----------------------------------------------------------------------------- imbalanced UFM
def test_imbalanced_ufm_balanced_is_simplex_etf():
    res = imb.imbalanced_ufm([1] * 5, lam=5e-3, seed=0)
    assert res.grad_norm < 1e-6
    assert imb.mean_pairwise_cosine(res.W) == pytest.approx(-0.25, abs=1e-5)
    assert imb.mean_pairwise_cosine(res.H) == pytest.approx(-0.25, abs=1e-5)


def test_imbalanced_ufm_is_the_sample_level_ufm():
    counts = [6, 6, 2, 2]
    lam = 2e-2
    res = imb.imbalanced_ufm(counts, lam=lam, dim=4, seed=1)
    labels = ufm.class_labels(counts)
    N = len(labels)
    H = res.H[labels].clone().requires_grad_(True)
    W = res.W.clone().requires_grad_(True)
    # nclib.ufm sums the feature penalty over samples: its lam_H is λ_H / N
    Fval = ufm.ufm_objective(H, W, labels=labels, lam_H=lam / N, lam_W=lam)
    assert Fval.item() == pytest.approx(res.objective, rel=1e-10)
    Fval.backward()
    assert H.grad.norm() < 1e-6 and W.grad.norm() < 1e-6  # a stationary point there too


def test_imbalanced_ufm_minority_collapse_threshold():
    counts = lambda R: [R] * 3 + [1] * 3  # noqa: E731
    low = imb.imbalanced_ufm(counts(1), lam=5e-2)
    high = imb.imbalanced_ufm(counts(1000), lam=5e-2)
    assert low.minority_cosine([3, 4, 5]) == pytest.approx(-0.2, abs=1e-5)
    assert high.minority_cosine([3, 4, 5]) > 0.999
    with pytest.raises(ValueError):
        imb.imbalanced_ufm([3, 0, 1])


# ----------------------------------------------------------------------------- training with registered losses
def _tiny_cfg(**kw):
    base = dict(
        data="gaussian",
        data_kwargs={"num_classes": 4, "dim": 8, "n_per_class": 20, "n_test_per_class": 5, "seed": 0},
        model="mlp",
        model_kwargs={"width": 16, "depth": 1, "batchnorm": False},
        epochs=2,
        n_logs=1,
        batch_size=16,
        schedule="constant",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_loss_kwargs_keep_cache_keys():
    cfg = _tiny_cfg()
    assert cfg.key() == _tiny_cfg(loss_kwargs={}).key()
    la = _tiny_cfg(loss="logit_adjusted", loss_kwargs={"counts": [20] * 4})
    assert la.key() != cfg.key() != la.replace(loss_kwargs={"counts": [20] * 4, "tau": 0.5}).key()
    with pytest.raises(ValueError, match="registered"):
        _tiny_cfg(loss="focal")
    with pytest.raises(ValueError, match="loss_kwargs"):
        _tiny_cfg(loss_kwargs={"tau": 1.0})
    with pytest.raises(TypeError):
        _tiny_cfg(loss="logit_adjusted", loss_kwargs=[1, 2])


def test_fit_with_logit_adjustment_tau0_equals_ce():
    ce = fit(_tiny_cfg(), cache=False, progress=False)
    la = fit(
        _tiny_cfg(loss="logit_adjusted", loss_kwargs={"counts": [9, 3, 2, 1], "tau": 0.0}), cache=False, progress=False
    )
    for a, b in zip(ce.model.state_dict().values(), la.model.state_dict().values()):
        assert torch.equal(a, b)


def test_fit_with_feature_losses_and_hook_removed():
    for loss, mk, kw in [
        ("dot_regression", {"head": "etf", "normalize": True}, {}),
        ("ce_align", {}, {"alpha": 0.5, "counts": [20] * 4}),
        ("multicenter_cosine", {"head": "multicenter", "centers": [1, 1, 2, 2]}, {}),
    ]:
        cfg = _tiny_cfg(loss=loss, loss_kwargs=kw, model_kwargs={"width": 16, "depth": 1, "batchnorm": False, **mk})
        run = fit(cfg, cache=False, progress=False)
        assert math.isfinite(run.curve.train_loss.iloc[-1])
        assert len(run.model.classifier._forward_hooks) == 0
    with pytest.raises(TypeError, match="MultiCenterClassifier"):
        fit(_tiny_cfg(loss="multicenter_cosine"), cache=False, progress=False)


def test_register_loss_and_summary():
    imb.register_loss("_test_ce", imb.LossSpec(lambda z, y, K, **_: F.cross_entropy(z, y)))
    try:
        run = fit(_tiny_cfg(loss="_test_ce"), cache=False, progress=False)
        ref = fit(_tiny_cfg(), cache=False, progress=False)
        assert torch.equal(run.model.classifier.weight, ref.model.classifier.weight)
    finally:
        imb.LOSSES.pop("_test_ce")
    with pytest.raises(ValueError):
        imb.register_loss("ce", imb.LossSpec(F.cross_entropy))
    d = D.long_tail(D.gaussian_mixture(4, 8, 20, n_test_per_class=5, seed=0), "step", 4, seed=0)
    s = imb.long_tail_summary(ref.model, d, [2, 3])
    assert set(s) >= {"acc_minority", "acc_majority", "cos_W_minority", "cos_means_minority", "nc1_minority"}
    assert s["cos_W_minority"] == pytest.approx(imb.mean_pairwise_cosine(ref.model.classifier.weight, [2, 3]))
    with pytest.raises(ValueError):
        imb.long_tail_summary(ref.model, d, [2])


# ----------------------------------------------------------------------------- recipes and figure
def test_class_priors_known():
    assert imb.class_priors([3, 1]).tolist() == [0.75, 0.25]
    with pytest.raises(ValueError):
        imb.class_priors([3])


def test_even_batch_size_known():
    from nclib.imbalance import _even_batch_size

    assert _even_batch_size(2065, 256) == 230  # 9 batches, trailing 225 (not 8·256 + 17)
    assert _even_batch_size(4000, 256) == 250  # 16 equal batches
    assert _even_batch_size(25250, 128) == 127  # 128 would leave a trailing batch of 34
    assert _even_batch_size(10, 256) == 10
    for n in range(2, 400):
        b = _even_batch_size(n, 64)
        assert 1 <= b <= 64 and (n % b == 0 or n % b >= b / 2)


def test_long_tail_recipe():
    for method in imb.METHODS:
        for R in (1, 30):
            cfg = imb.long_tail_recipe(method, R, seed=2)
            lt = cfg.data_kwargs["long_tail"]
            assert lt["ratio"] == R and lt["seed"] == 2 and cfg.seed == 2
            N = sum(D.long_tail_counts(10, lt["n_max"], R))
            last = N % cfg.batch_size or cfg.batch_size  # no tiny trailing batch
            assert cfg.batch_size <= 256 and last >= cfg.batch_size / 2
    assert imb.long_tail_recipe("multicenter", 100).model_kwargs["centers"] == [1] * 5 + [8] * 5
    assert imb.long_tail_recipe("logit_adjusted", 10).loss_kwargs["counts"] == [400] * 5 + [40] * 5
    assert imb.long_tail_recipe("ce", 10, epochs=3).epochs == 3
    assert [imb.long_tail_recipe(m, 10).epochs for m in ("ce", "etf", "etf_dr", "multicenter")] == [30, 30, 90, 90]
    assert (
        imb.long_tail_recipe("etf_dr", 10, epochs=5).epochs == 5
        and imb.long_tail_recipe("etf_dr", 10, "full").epochs == 200
    )
    full = imb.long_tail_recipe("etf", 100, "full")
    assert full.data == "cifar10" and full.model == "resnet18" and full.model_kwargs["head"] == "etf"
    with pytest.raises(ValueError, match="method"):
        imb.long_tail_recipe("focal", 10)
    with pytest.raises(ValueError):
        imb.long_tail_recipe("ce", 10, "medium")


def test_minority_collapse_panels():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from nclib import plots

    sweep = pd.DataFrame(
        {
            "R": [1, 10, 1, 10],
            "head": ["a", "a", "b", "b"],
            "cos_W_minority": [-0.1, 0.2, -0.1, -0.1],
            "cos_means_minority": [-0.1, 0.3, -0.1, 0.4],
            "acc_minority": [0.8, 0.3, 0.8, 0.3],
            "acc_majority": [0.8, 0.8, 0.8, 0.8],
        }
    )
    ufm_df = pd.DataFrame({"R": [1, 10], "lam": [5e-3, 5e-3], "cos": [-0.1, 0.03]})
    fig = plots.minority_collapse_panels(sweep, ufm=ufm_df, num_classes=10, title="t")
    assert len(fig.axes) == 3 and all(ax.get_xlabel() for ax in fig.axes)
    with pytest.raises(ValueError, match="columns"):
        plots.minority_collapse_panels(sweep.drop(columns=["head"]))
