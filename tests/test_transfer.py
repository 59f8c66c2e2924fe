"""Unit tests for nclib.transfer against hand-computable cases: CDNV of a labelled set, the
confidence interval, seeded few-shot episodes, nearest-class-mean accuracy (exact cases and a
naive reference), the ridge linear probe (primal formula, a separable case), geometric
complexity of maps with known Jacobians, frozen features at named layers, Spearman's rank
correlation, and the chapter-5 recipe."""

import math

import pytest
import torch
from torch import nn

from nclib import data as D
from nclib import models
from nclib import transfer as T
from nclib.train import TrainConfig


# ----------------------------------------------------------------------------- CDNV
def test_cdnv_of_two_classes_by_hand():
    # class 7: (±1, 0) → mean (0,0), variance 1; class 100: (4, ±1) → mean (4,0), variance 1
    F = torch.tensor([[-1.0, 0], [1, 0], [4, 1], [4, -1]], dtype=torch.float64)
    y = torch.tensor([7, 7, 100, 100])
    assert T.cdnv_of(F, y) == pytest.approx((1 + 1) / (2 * 16))
    assert T.cdnv_of(3.0 * F + 5.0, y) == pytest.approx(1 / 16)  # invariant to scale and shift


def test_cdnv_of_three_classes_is_the_pair_average():
    F = torch.tensor([[0.0], [2], [10], [10], [20], [24]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    var, mu = [1.0, 0.0, 4.0], [1.0, 10.0, 22.0]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expect = sum((var[i] + var[j]) / (2 * (mu[i] - mu[j]) ** 2) for i, j in pairs) / 3
    assert T.cdnv_of(F, y) == pytest.approx(expect)


def test_cdnv_of_validation():
    with pytest.raises(ValueError, match="2 classes"):
        T.cdnv_of(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="one label"):
        T.cdnv_of(torch.zeros(3, 2), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        T.cdnv_of(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError):
        T.cdnv_of([[0.0]], torch.tensor([0]))


# ----------------------------------------------------------------------------- confidence interval
def test_mean_ci_known_values():
    m, h = T.mean_ci([0.0, 1.0])
    assert m == 0.5 and h == pytest.approx(1.959964 * math.sqrt(0.5) / math.sqrt(2), rel=1e-5)
    assert T.mean_ci([0.3]) == (0.3, 0.0)
    assert T.mean_ci([2.0, 2.0, 2.0]) == (2.0, 0.0)
    m, h = T.mean_ci(torch.tensor([1.0, 2.0, 3.0, 4.0]), level=0.9)
    assert m == 2.5 and h == pytest.approx(1.644854 * torch.tensor([1.0, 2, 3, 4]).std().item() / 2, rel=1e-5)
    with pytest.raises(ValueError):
        T.mean_ci([])
    with pytest.raises(ValueError):
        T.mean_ci([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError):
        T.mean_ci([1.0, float("nan")])


# ----------------------------------------------------------------------------- episodes
def test_episodes_shapes_disjoint_and_labelled():
    y = torch.tensor([3] * 7 + [5] * 4 + [9] * 12 + [11] * 6)
    sup, qry = T.few_shot_episodes(y, ways=3, shots=2, queries=2, episodes=200, seed=0)
    assert sup.shape == (200, 3, 2) and qry.shape == (200, 3, 2)
    both = torch.cat([sup, qry], 2)
    assert (y[both] == y[both[:, :, :1]]).all()  # one class per position
    for e in range(200):
        assert len(set(both[e].flatten().tolist())) == 12  # no sample twice
        assert len(set(y[both[e, :, 0]].tolist())) == 3  # distinct classes
    counts = torch.bincount(y[both[:, :, 0]].flatten(), minlength=12)[[3, 5, 9, 11]]
    assert counts.sum() == 600 and counts.min() > 100  # every class is used
    again = T.few_shot_episodes(y, ways=3, shots=2, queries=2, episodes=200, seed=0)
    assert torch.equal(again[0], sup) and torch.equal(again[1], qry)
    other = T.few_shot_episodes(y, ways=3, shots=2, queries=2, episodes=200, seed=1)
    assert not torch.equal(other[0], sup)


def test_episodes_validation():
    y = torch.tensor([0] * 5 + [1] * 3)
    with pytest.raises(ValueError, match="shots \\+ queries"):
        T.few_shot_episodes(y, ways=2, shots=2, queries=2, episodes=1)
    with pytest.raises(ValueError, match="exceeds"):
        T.few_shot_episodes(y, ways=3, shots=1, queries=1, episodes=1)
    with pytest.raises(ValueError):
        T.few_shot_episodes(y, ways=1, shots=1, queries=1, episodes=1)
    with pytest.raises(TypeError):
        T.few_shot_episodes(y, ways=2, shots=1.0, queries=1, episodes=1)
    with pytest.raises(TypeError):
        T.few_shot_episodes(y, ways=2, shots=1, queries=1, episodes=1, seed="0")


# ----------------------------------------------------------------------------- nearest class mean
def test_ncc_separated_classes_is_perfect():
    y = torch.arange(6).repeat_interleave(10)
    g = torch.Generator().manual_seed(0)
    F = 10.0 * torch.eye(6, dtype=torch.float64)[y] + 0.01 * torch.randn(60, 6, generator=g, dtype=torch.float64)
    r = T.ncc_few_shot(F, y, ways=4, shots=1, queries=5, episodes=50, seed=0)
    assert r.mean == 1.0 and r.ci == 0.0 and r.accuracies.shape == (50,)
    assert "4-way 1-shot" in str(r)


def test_ncc_identical_features_is_chance_exactly():
    """All features equal: every distance ties and the first position wins, so each episode
    classifies exactly one of its N classes correctly — accuracy 1/N."""
    y = torch.arange(5).repeat_interleave(4)
    r = T.ncc_few_shot(torch.ones(20, 3), y, ways=5, shots=2, queries=2, episodes=30, seed=0)
    assert r.mean == pytest.approx(1 / 5) and r.ci == pytest.approx(0.0, abs=1e-12)


def test_ncc_matches_a_naive_reference():
    g = torch.Generator().manual_seed(1)
    y = torch.arange(8).repeat_interleave(9)
    F = torch.randn(8, 4, generator=g, dtype=torch.float64)[y] + torch.randn(72, 4, generator=g, dtype=torch.float64)
    ways, shots, q, E = 5, 3, 4, 70  # 70 episodes: more than one internal chunk
    r = T.ncc_few_shot(F, y, ways=ways, shots=shots, queries=q, episodes=E, seed=7)
    sup, qry = T.few_shot_episodes(y, ways=ways, shots=shots, queries=q, episodes=E, seed=7)
    accs = []
    for e in range(E):
        means = [F[sup[e, n]].mean(0) for n in range(ways)]
        right = 0
        for n in range(ways):
            for i in qry[e, n]:
                d = [float((F[i] - m).norm()) for m in means]
                right += int(min(range(ways), key=d.__getitem__) == n)
        accs.append(right / (ways * q))
    assert torch.allclose(r.accuracies, torch.tensor(accs, dtype=torch.float64))
    assert r.mean == pytest.approx(sum(accs) / E)


def test_transfer_metrics_keys():
    y = torch.arange(4).repeat_interleave(8)
    g = torch.Generator().manual_seed(0)
    F = torch.eye(4, dtype=torch.float64)[y] * 5 + 0.1 * torch.randn(32, 4, generator=g, dtype=torch.float64)
    m = T.transfer_metrics(F, y, ways=3, shots=(1, 5), queries=2, episodes=20)
    assert set(m) == {"cdnv", "fs1", "fs1_ci", "fs5", "fs5_ci"}
    assert m["fs5"] == 1.0 and m["cdnv"] == pytest.approx(T.cdnv_of(F, y))


# ----------------------------------------------------------------------------- geometric complexity
def test_gc_of_a_linear_map_is_its_frobenius_norm():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 3, generator=g)
    X = torch.randn(40, 3, generator=g)
    fn = lambda x: x @ A.T  # noqa: E731
    assert T.geometric_complexity(fn, X, batch_size=16) == pytest.approx(float(A.pow(2).sum()), rel=1e-5)
    lin = nn.Linear(3, 5)
    assert T.geometric_complexity(lin, X) == pytest.approx(float(lin.weight.detach().pow(2).sum()), rel=1e-5)
    est = T.geometric_complexity(fn, X, probes=400, seed=0)
    assert est == pytest.approx(float(A.pow(2).sum()), rel=0.1)


def test_gc_of_elementwise_maps():
    """f(x) = x²: J = diag(2x), ‖J‖_F² = 4‖x‖². f = tanh: ‖J‖_F² = Σ (1 − tanh² x)²."""
    X = torch.randn(30, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert T.geometric_complexity(lambda x: x**2, X) == pytest.approx(float(4 * X.pow(2).sum(1).mean()))
    expect = float((1 - torch.tanh(X) ** 2).pow(2).sum(1).mean())
    assert T.geometric_complexity(torch.tanh, X) == pytest.approx(expect)
    img = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    assert T.geometric_complexity(lambda x: 3 * x.flatten(1), img) == pytest.approx(9 * 4)


def test_gc_puts_a_model_in_eval_mode_and_restores_it():
    m = models.build("mlp", (6,), 3, width=8, depth=2, batchnorm=True, seed=0)
    m.train()
    X = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    a = T.geometric_complexity(m.features, X, batch_size=7)
    assert m.training
    m.eval()
    b = T.geometric_complexity(m.features, X, batch_size=20)
    assert a == pytest.approx(b, rel=1e-5)  # eval mode: samples independent, batching irrelevant


def test_gc_validation():
    with pytest.raises(TypeError):
        T.geometric_complexity(3, torch.zeros(2, 2))
    with pytest.raises(ValueError):
        T.geometric_complexity(torch.tanh, torch.zeros(0, 2))
    with pytest.raises(ValueError):
        T.geometric_complexity(lambda x: x.sum(), torch.zeros(2, 2))
    with pytest.raises(ValueError):
        T.geometric_complexity(torch.tanh, torch.zeros(2, 2), probes=0)
    with pytest.raises(TypeError):
        T.geometric_complexity(torch.tanh, torch.zeros(2, 2, dtype=torch.long))


# ----------------------------------------------------------------------------- features
def test_features_at_penultimate_and_named_layer():
    m = models.build("mlp", (6,), 3, width=8, depth=2, batchnorm=True, seed=0)
    m.train()
    X = torch.randn(10, 6, generator=torch.Generator().manual_seed(0))
    F = T.features_at(m, X, batch_size=4)
    assert m.training and F.dtype == torch.float64 and F.shape == (10, 8)
    m.eval()
    with torch.no_grad():
        assert torch.allclose(F, m.features(X).double())
        assert torch.allclose(T.features_at(m, X, "body.2"), m.body[:3](X).double())
    with pytest.raises(ValueError, match="no submodule"):
        T.features_at(m, X, "body.99")
    with pytest.raises(TypeError):
        T.features_at(nn.Linear(2, 2), X)


def test_features_at_pools_conv_maps():
    class Tiny(models.NCModel):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1, bias=False)
            self.classifier = nn.Linear(2, 2)

        def features(self, x):
            return self.conv(x).mean((2, 3))

    m = Tiny()
    with torch.no_grad():
        m.conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
    X = torch.arange(8.0).view(2, 1, 2, 2)
    F = T.features_at(m, X, "conv")
    means = X.mean((1, 2, 3))
    assert torch.allclose(F, torch.stack([means, -2 * means], 1).double())


# ----------------------------------------------------------------------------- spearman
def test_spearman_known_values():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert T.spearman(x, [v**3 for v in x]) == pytest.approx(1.0)
    assert T.spearman(x, [-math.exp(v) for v in x]) == pytest.approx(-1.0)
    assert T.spearman(x, [1, 3, 2, 4, 5]) == pytest.approx(0.9)  # one adjacent swap: 1 − 6·2/(5·24)
    # ties get average ranks: ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4)
    rx = torch.tensor([1, 2.5, 2.5, 4]) - 2.5
    ry = torch.tensor([1.0, 2, 3, 4]) - 2.5
    assert T.spearman([0, 1, 1, 2], [0, 1, 2, 3]) == pytest.approx(float((rx * ry).sum() / (rx.norm() * ry.norm())))
    with pytest.raises(ValueError):
        T.spearman([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        T.spearman([1, 1, 1], [1, 2, 3])


# ----------------------------------------------------------------------------- the chapter's recipe
def test_source_config_and_target_set():
    cfg = T.source_config("quick", 5, seed=2)
    assert isinstance(cfg, TrainConfig) and cfg.data == "many_class" and cfg.seed == 2
    assert cfg.data_kwargs["num_classes"] == 5 and cfg.data_kwargs["n_per_class"] == 50
    assert T.source_config("quick", 5, n_per_class=800).data_kwargs["n_per_class"] == 800
    assert T.source_config("quick", 5, epochs=3).epochs == 3
    full = T.source_config("full", 20)
    assert full.data == "cifar100" and full.data_kwargs["classes"] == list(range(20)) and full.model == "resnet18"
    with pytest.raises(ValueError):
        T.source_config("full", 51)
    with pytest.raises(ValueError):
        T.source_config("medium", 5)
    X, y = T.target_set("quick", seed=1, num_classes=4, n_per_class=3)
    Xr, yr = D.many_class(4, 3, 1, class_offset=T.TARGET_OFFSET, seed=1).tensors()
    assert torch.equal(X, Xr) and torch.equal(y, yr)


# ----------------------------------------------------------------------------- figures
def test_transfer_panels_and_log_ticks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from nclib import plots

    t = pd.DataFrame(
        {
            "l": [5, 10, 20],
            "cdnv": [0.2, 0.1, 0.1],
            "test_cdnv": [0.3, 0.2, 0.2],
            "target_cdnv": [1.0, 0.5, 0.4],
            "fs1": [0.3, 0.5, 0.7],
            "fs1_ci": [0.01] * 3,
            "fs5": [0.5, 0.7, 0.9],
            "fs5_ci": [0.01] * 3,
        }
    )
    fig = plots.transfer_panels(t, baselines={"raw": 0.4}, title="t")
    a1, a2 = fig.axes
    assert a1.get_yscale() == "log" and [tk.get_text() for tk in a1.get_xticklabels()] == ["5", "10", "20"]
    assert len(a1.lines) == 3 and "raw" in [h.get_label() for h in a2.lines]
    plt.close(fig)
    with pytest.raises(ValueError, match="lacks columns"):
        plots.transfer_panels(t.drop(columns="fs5"))
    with pytest.raises(TypeError):
        plots.transfer_panels({"l": [1]})
    fig, ax = plt.subplots()
    with pytest.raises(ValueError):
        plots.plain_log_ticks(ax, "z")
    plt.close(fig)


# ----------------------------------------------------------------------------- ridge linear probe
def _ridge_reference(S, ys, Q, N, ridge):
    """The primal ridge solution (XcᵀXc + λI)⁻¹XcᵀYc of one episode, written out directly."""
    centre = S.mean(0)
    Xc = S - centre
    Yc = torch.eye(N, dtype=torch.float64)[ys] - 1.0 / N
    lam = ridge * float(Xc.pow(2).sum()) / S.shape[0]
    W = torch.linalg.solve(Xc.T @ Xc + lam * torch.eye(S.shape[1], dtype=torch.float64), Xc.T @ Yc)
    return ((Q - centre) @ W).argmax(1)


def test_ridge_few_shot_matches_primal_formula():
    g = torch.Generator().manual_seed(5)
    y = torch.arange(10).repeat_interleave(12)
    F = torch.randn(10, 6, generator=g, dtype=torch.float64)[y] + torch.randn(120, 6, generator=g, dtype=torch.float64)
    res = T.ridge_few_shot(F, y, ways=4, shots=3, queries=5, episodes=7, seed=2, ridge=0.3)
    sup, qry = T.few_shot_episodes(y, ways=4, shots=3, queries=5, episodes=7, seed=2)
    for e in range(7):
        pred = _ridge_reference(F[sup[e].flatten()], torch.arange(4).repeat_interleave(3), F[qry[e].flatten()], 4, 0.3)
        acc = float((pred == torch.arange(4).repeat_interleave(5)).double().mean())
        assert abs(acc - float(res.accuracies[e])) < 1e-12


def test_ridge_few_shot_separable_and_invariances():
    # classes on orthogonal axes with small noise: linearly separable, the probe is exact
    g = torch.Generator().manual_seed(6)
    y = torch.arange(8).repeat_interleave(10)
    F = 5 * torch.eye(8, dtype=torch.float64)[y] + 0.05 * torch.randn(80, 8, generator=g, dtype=torch.float64)
    r = T.ridge_few_shot(F, y, ways=5, shots=2, queries=6, episodes=20, seed=0, ridge=1e-3)
    assert r.mean == 1.0 and r.ci == 0.0
    # a class-independent coordinate with huge spread ruins the nearest class mean, not the probe
    G = torch.cat([F, 1e3 * torch.randn(80, 1, generator=g, dtype=torch.float64)], 1)
    assert T.ncc_few_shot(G, y, ways=5, shots=5, queries=5, episodes=50, seed=0).mean < 0.6
    assert T.ridge_few_shot(G, y, ways=5, shots=5, queries=5, episodes=50, seed=0, ridge=1e-6).mean > 0.95
    # deterministic under the seed, invariant to a global rescaling of the features
    a = T.ridge_few_shot(G, y, ways=5, shots=1, queries=5, episodes=30, seed=3)
    b = T.ridge_few_shot(7.0 * G, y, ways=5, shots=1, queries=5, episodes=30, seed=3)
    assert torch.equal(a.accuracies, b.accuracies)
    c = T.ridge_few_shot(G, y, ways=5, shots=1, queries=5, episodes=30, seed=4)
    assert not torch.equal(a.accuracies, c.accuracies)


def test_ridge_few_shot_validates():
    y = torch.arange(4).repeat_interleave(5)
    F = torch.randn(20, 3, dtype=torch.float64)
    for bad in (0.0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError):
            T.ridge_few_shot(F, y, ways=2, shots=1, queries=2, episodes=2, ridge=bad)
    with pytest.raises(ValueError):
        T.ridge_few_shot(F[:, :, None], y, ways=2, shots=1, queries=2, episodes=2)
    with pytest.raises(ValueError):
        T.ridge_few_shot(F, y[:-1], ways=2, shots=1, queries=2, episodes=2)
    with pytest.raises(TypeError):
        T.ridge_few_shot(F, y.double(), ways=2, shots=1, queries=2, episodes=2)
    with pytest.raises(ValueError):
        T.ridge_few_shot(F, y, ways=2, shots=4, queries=2, episodes=2)  # needs 6 samples per class
