"""nclib.continual: task splits, the replay buffer's exact counts, the task loop, shallow/deep
forgetting measures and the geometry of replayed classes."""

import math

import pandas as pd
import pytest
import torch
from torch import nn

from nclib import continual
from nclib.continual import (
    ContinualConfig,
    ReplayBuffer,
    class_incremental_split,
    network_accuracies,
    probe_accuracies,
    replay_geometry,
    task_of,
    train_class_incremental,
)
from nclib.evaluation import effective_rank


# ----------------------------------------------------------------------------- splits
def test_split_in_order_and_seeded_partition():
    assert class_incremental_split(10, 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    a = class_incremental_split(10, 5, seed=3)
    assert a == class_incremental_split(10, 5, seed=3)
    assert sorted(c for t in a for c in t) == list(range(10)) and all(len(t) == 2 for t in a)
    assert a != class_incremental_split(10, 5, seed=4)
    assert class_incremental_split(6, 1) == [[0, 1, 2, 3, 4, 5]]
    with pytest.raises(ValueError, match="divisible"):
        class_incremental_split(10, 3)
    with pytest.raises(TypeError):
        class_incremental_split(10, 5, seed=1.5)


def test_task_of_maps_classes_and_rejects_non_partitions():
    assert task_of([[0, 3], [1, 2]], 4).tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="repeated"):
        task_of([[0, 1], [1, 2]], 3)
    with pytest.raises(ValueError, match="cover"):
        task_of([[0, 1]], 3)


# ----------------------------------------------------------------------------- replay buffer
@pytest.mark.parametrize(
    "fraction, n, want",
    [
        (0.05, 200, 10),
        (0.005, 200, 1),
        (0.01, 200, 2),
        (0.0, 200, 0),
        (1.0, 200, 200),
        (0.05, 30, 2),
        (0.001, 30, 1),
        (0.25, 7, 2),
    ],
)
def test_buffer_keeps_exactly_the_stated_count(fraction, n, want):
    buf = ReplayBuffer(fraction=fraction)
    assert buf.size_for(n) == want
    idx = torch.arange(100, 100 + n)
    buf.add(idx, torch.full((n,), 3))
    assert len(buf) == want and buf.counts(5).tolist() == [0, 0, 0, want, 0]
    kept = buf.indices(3)
    assert len(set(kept.tolist())) == want and torch.isin(kept, idx).all()


def test_buffer_per_class_rule_counts_and_independence_of_other_classes():
    y = torch.tensor([0] * 12 + [1] * 3 + [2] * 8)
    idx = torch.arange(len(y)) + 1000
    buf = ReplayBuffer(per_class=5, seed=7).add(idx, y)
    assert buf.counts(3).tolist() == [5, 3, 5]
    assert len(buf) == 13 and buf.labels().tolist() == [0] * 5 + [1] * 3 + [2] * 5
    # a class's choice depends only on (seed, class): adding it alone gives the same samples
    alone = ReplayBuffer(per_class=5, seed=7).add(idx[y == 2], y[y == 2])
    assert torch.equal(alone.indices(2), buf.indices(2))
    assert not torch.equal(ReplayBuffer(per_class=5, seed=8).add(idx, y).indices(0), buf.indices(0))
    with pytest.raises(ValueError, match="already"):
        buf.add(idx[:2], y[:2])


def test_buffer_sampling_is_uniform_with_replacement_and_empty_when_empty():
    buf = ReplayBuffer(per_class=2).add(torch.tensor([10, 11, 12, 20, 21]), torch.tensor([0, 0, 0, 1, 1]))
    g = torch.Generator().manual_seed(0)
    s = buf.sample(4000, g)
    assert len(s) == 4000 and torch.isin(s, buf.indices()).all()
    freq = torch.stack([(s == i).double().mean() for i in buf.indices()])
    assert torch.allclose(freq, torch.full((4,), 0.25, dtype=torch.float64), atol=0.03)
    assert len(ReplayBuffer(fraction=0.0).sample(8, g)) == 0


def test_buffer_validation():
    with pytest.raises(ValueError, match="exactly one"):
        ReplayBuffer()
    with pytest.raises(ValueError, match="exactly one"):
        ReplayBuffer(fraction=0.1, per_class=2)
    with pytest.raises(ValueError, match="fraction"):
        ReplayBuffer(fraction=1.5)
    with pytest.raises(ValueError, match="equal length"):
        ReplayBuffer(per_class=1).add(torch.arange(3), torch.zeros(2, dtype=torch.long))


# ----------------------------------------------------------------------------- the task loop
def _cfg(**kw):
    base = dict(
        data="gaussian",
        data_kwargs={"num_classes": 4, "dim": 6, "n_per_class": 20, "n_test_per_class": 10, "seed": 0},
        model_kwargs={"width": 16, "depth": 1, "batchnorm": False},
        num_tasks=2,
        epochs_per_task=3,
        batch_size=8,
        replay_batch_size=8,
        buffer_fraction=0.25,
        lr=1e-2,
    )
    base.update(kw)
    return ContinualConfig(**base)


def test_training_is_deterministic_and_fills_the_buffer_with_the_stated_counts():
    a = train_class_incremental(_cfg(), cache=False, progress=False)
    b = train_class_incremental(_cfg(), cache=False, progress=False)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    assert a.tasks == [[0, 1], [2, 3]]
    assert a.buffer.counts(4).tolist() == [5, 5, 0, 0]  # 25 % of 20, past task only
    assert list(a.accuracy.columns) == ["after_task", "task", "accuracy"] and len(a.accuracy) == 3
    assert a.past_classes == [0, 1]
    c = train_class_incremental(_cfg(seed=1), cache=False, progress=False)
    assert not torch.equal(c.model.classifier.weight, a.model.classifier.weight)


def test_results_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("NCLIB_CACHE", str(tmp_path))
    a = train_class_incremental(_cfg(), progress=False)
    b = train_class_incremental(_cfg(), progress=False)
    assert not a.from_cache and b.from_cache
    assert torch.equal(a.model.classifier.weight, b.model.classifier.weight)
    assert torch.equal(a.buffer.indices(), b.buffer.indices())
    pd.testing.assert_frame_equal(a.accuracy, b.accuracy)


def test_train_many_in_workers_is_bit_identical_to_training_here(tmp_path, monkeypatch):
    from nclib.continual import train_many

    monkeypatch.setenv("NCLIB_CACHE", str(tmp_path))
    cfgs = [_cfg(seed=0), _cfg(seed=1, buffer_fraction=0.0), _cfg(seed=0)]
    runs = train_many(cfgs, processes=2, progress=False)
    assert [r.config for r in runs] == cfgs and all(r.from_cache for r in runs)
    for c, r in zip(cfgs, runs):
        here = train_class_incremental(c, cache=False, progress=False)
        for k, v in here.model.state_dict().items():
            assert torch.equal(v, r.model.state_dict()[k])
    with pytest.raises(TypeError):
        train_many([], progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="buffer_fraction"):
        _cfg(buffer_fraction=2.0)
    with pytest.raises(ValueError, match="optimizer"):
        _cfg(optimizer="rmsprop")
    with pytest.raises(TypeError):
        train_class_incremental("cfg")


# ----------------------------------------------------------------------------- forgetting measures
class _Logits(nn.Module):
    """A model whose logits are its inputs (features = inputs too)."""

    def __init__(self, K):
        super().__init__()
        self.classifier = nn.Linear(K, K, bias=False)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.eye(K))

    def features(self, x):
        return x

    def forward(self, x):
        return self.classifier(x)


def test_network_accuracies_on_known_logits():
    tasks = [[0, 1], [2, 3]]
    # four past-task inputs (classes 0, 1): logits chosen so that
    #  #0 class 0: argmax 0 (right); #1 class 0: argmax 2 (last task), within-task argmax 0 (right)
    #  #2 class 1: argmax 3 (last task), within-task 0 (wrong); #3 class 1: argmax 1 (right); #4 class 2: not past
    X = torch.tensor([[5.0, 1, 0, 0], [3, 1, 4, 0], [2, 1, 0, 9], [0, 4, 1, 1], [0, 0, 9, 0]])
    y = torch.tensor([0, 0, 1, 1, 2])
    r = network_accuracies(_Logits(4), X, y, tasks)
    assert r["net_all"] == pytest.approx(2 / 4)
    assert r["net_within"] == pytest.approx(3 / 4)
    assert r["to_last"] == pytest.approx(2 / 4)


def test_probe_accuracies_separable_features_and_task_view():
    g = torch.Generator().manual_seed(0)
    centres = 6 * torch.eye(6, dtype=torch.float64)
    ytr, yte = torch.arange(6).repeat(20), torch.arange(6).repeat(10)
    Ztr = centres[ytr] + 0.3 * torch.randn(len(ytr), 6, generator=g, dtype=torch.float64)
    Zte = centres[yte] + 0.3 * torch.randn(len(yte), 6, generator=g, dtype=torch.float64)
    r = probe_accuracies(Ztr, ytr, Zte, yte, [[0, 1], [2, 3], [4, 5]])
    assert r["probe_all"] == 1.0 and r["probe_within"] == 1.0
    # uninformative features: the within-task view cannot be worse than the all-class view
    noise = torch.randn(len(yte), 6, generator=g, dtype=torch.float64)
    r2 = probe_accuracies(
        torch.randn(len(ytr), 6, generator=g, dtype=torch.float64), ytr, noise, yte, [[0, 1], [2, 3], [4, 5]]
    )
    assert r2["probe_within"] >= r2["probe_all"]


def test_replay_geometry_exact_values():
    D = 4
    # class 0: 6 samples; the buffer keeps indices 0, 1, 2 which sit at 2·e0 ± spread in a plane,
    # the others at e0; class 1 (current): 6 samples around 3·e3
    e = torch.eye(D, dtype=torch.float64)
    Z = torch.stack(
        [
            2 * e[0] + e[1],
            2 * e[0] - e[1],
            2 * e[0] + e[2],
            e[0],
            e[0] + 0.1 * e[1],
            e[0] - 0.1 * e[1],
            3 * e[3],
            3 * e[3] + e[1],
            3 * e[3] - e[1],
            3 * e[3] + e[2],
            3 * e[3],
            3 * e[3],
        ]
    )
    y = torch.tensor([0] * 6 + [1] * 6)
    buf = ReplayBuffer(per_class=3)
    buf._store[0] = torch.tensor([0, 1, 2])  # set the kept samples by hand for an exact answer
    g = replay_geometry(Z, y, buf, [1], global_mean=torch.zeros(D, dtype=torch.float64))
    row = g.iloc[0]
    assert row["n"] == 3
    assert row["erank_buffer"] == pytest.approx(effective_rank(Z[:3], center=True))
    assert row["norm_buffer"] == pytest.approx(float(Z[:3].mean(0).norm()))
    assert row["norm_class"] == pytest.approx(float(Z[:6].mean(0).norm()))
    assert row["inflation"] == pytest.approx(float(Z[:3].mean(0).norm() / Z[:6].mean(0).norm()))
    rest = Z[3:6]
    assert row["erank_rest"] == pytest.approx(effective_rank(rest, center=True))
    assert row["spread_rest"] == pytest.approx(float((rest - rest.mean(0)).pow(2).sum(1).mean()))
    assert row["spread_buffer"] == pytest.approx(float((Z[:3] - Z[:3].mean(0)).pow(2).sum(1).mean()))
    with pytest.raises(ValueError, match="current"):
        replay_geometry(Z, y, buf, [7])


def test_forgetting_report_has_the_gap():
    run = train_class_incremental(_cfg(), cache=False, progress=False)
    r = continual.forgetting_report(run.model, run.data, run.tasks)
    assert set(r) == {"net_all", "net_within", "to_last", "probe_all", "probe_within", "gap"}
    assert r["gap"] == pytest.approx(r["probe_all"] - r["net_all"])
    assert all(0 <= r[k] <= 1 for k in ("net_all", "net_within", "to_last", "probe_all", "probe_within"))
    assert not math.isnan(r["gap"])


def test_replay_panels_draws_three_labelled_panels():
    import matplotlib

    matplotlib.use("Agg")
    from nclib import plots

    sweep = pd.DataFrame(
        {
            "fraction": [0, 0.01, 0.1, 1.0],
            "net_all": [0, 0.1, 0.3, 0.5],
            "probe_all": [0.4, 0.4, 0.45, 0.5],
            "gap": [0.4, 0.3, 0.15, 0.0],
            "inflation": [math.nan, 3.0, 1.5, 1.0],
        }
    )
    fig = plots.replay_panels(sweep, baselines={"joint": 0.55})
    assert len(fig.axes) == 3 and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    with pytest.raises(ValueError, match="columns"):
        plots.replay_panels(sweep.drop(columns="gap"))


# ----------------------------------------------------------------------------- deep forgetting (A*_jj − A*_Tj)
def test_per_task_probes_and_deep_forgetting_follow_the_definition():
    from nclib.continual import deep_forgetting
    from nclib.evaluation import linear_probe
    from nclib.features import extract

    cfg = _cfg(num_tasks=2, probe_tasks=True)
    run = train_class_incremental(cfg, cache=False, progress=False)
    plain = train_class_incremental(_cfg(num_tasks=2), cache=False, progress=False)
    for k, v in plain.model.state_dict().items():  # the probes do not change the training
        assert torch.equal(v, run.model.state_dict()[k])
    assert _cfg().key() == plain.config.key() and cfg.key() != plain.config.key()
    acc = run.accuracy.set_index(["after_task", "task"])
    assert list(run.accuracy.columns) == ["after_task", "task", "accuracy", "probe"]
    # the final probe: refit by hand on the final features, scored on each task's test inputs
    (Xtr, ytr), (Xte, yte) = run.data.tensors("train"), run.data.tensors("test")
    pred = (
        linear_probe(extract(run.model, Xtr), ytr, 4, weight_decay=1e-3, max_iter=100)
        .logits(extract(run.model, Xte))
        .argmax(1)
    )
    for u, tk in enumerate(run.tasks):
        sel = torch.isin(yte, torch.tensor(tk))
        assert acc.loc[(1, u)].probe == pytest.approx(float((pred[sel] == yte[sel]).double().mean()))
    df = deep_forgetting(run)
    assert list(df.task) == [0]
    assert df.deep[0] == pytest.approx(acc.loc[(0, 0)].probe - acc.loc[(1, 0)].probe)
    assert df.shallow[0] == pytest.approx(acc.loc[(0, 0)].accuracy - acc.loc[(1, 0)].accuracy)
    with pytest.raises(ValueError, match="probe_tasks"):
        deep_forgetting(plain)
    with pytest.raises(TypeError, match="probe_tasks"):
        _cfg(probe_tasks=1)
    with pytest.raises(TypeError, match="ContinualRun"):
        deep_forgetting(run.accuracy)
