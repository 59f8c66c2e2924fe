"""Margins (nclib.geometry), model states kept by fit (nclib.train) and the run-level measures of
chapters 2–3 (nclib.generalization), each against an analytically known case."""

import math

import pandas as pd
import pytest
import torch

from nclib import generalization as gen
from nclib import geometry as g
from nclib.train import TrainConfig, fit

TINY = TrainConfig(
    data="gaussian",
    data_kwargs=dict(num_classes=4, dim=8, n_per_class=30, n_test_per_class=20),
    model="mlp",
    model_kwargs=dict(width=32, depth=2, batchnorm=True),
    epochs=6,
    batch_size=32,
    n_logs=4,
)


@pytest.fixture(autouse=True)
def _no_shared_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NCLIB_CACHE", str(tmp_path / "nclib-cache"))


def etf_problem(K, D, *, n=3, seed=0, scale_w=2.0, scale_h=3.0):
    """Features exactly on a simplex ETF, W self-dual, shifted by a common vector (features)
    with the compensating bias, and W shifted by a common row vector: the ETF margin exactly."""
    gen_ = torch.Generator().manual_seed(seed)
    E = g.simplex_etf(K, D, seed=seed)
    y = torch.arange(K).repeat(n)
    c = torch.randn(D, generator=gen_, dtype=torch.float64)
    H = scale_h * E[y] + c
    W = scale_w * E + torch.randn(D, generator=gen_, dtype=torch.float64)  # same vector added to every row
    b = -W @ c
    return W, H, y, b


# ----------------------------------------------------------------------------- margins
def test_margins_by_hand():
    W = torch.eye(3, dtype=torch.float64)
    H = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    assert g.margins(W, H, y).tolist() == [1.0, -1.0, 5.0]
    b = torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64)  # logits [2, 4, 0], [2, 4, 0], [0, 3, 5]
    assert g.margins(W, H, y, b).tolist() == [-2.0, 2.0, 2.0]


def test_margins_accept_float32_and_return_float64():
    W, H, y, b = etf_problem(4, 6)
    q = g.margins(W.float(), H.float(), y, b.float())
    assert q.dtype == torch.float64 and q.shape == (len(y),)


@pytest.mark.parametrize("K,D", [(2, 2), (3, 5), (4, 3), (10, 10), (10, 64)])
def test_exact_etf_margin_is_closed_form(K, D):
    W, H, y, b = etf_problem(K, D, seed=K + D)
    q = g.normalized_margins(W, H, y, b)
    assert torch.allclose(q, torch.full_like(q, math.sqrt(K) / (K - 1)), atol=1e-12)
    assert g.etf_margin(K) == pytest.approx(math.sqrt(K) / (K - 1), abs=0)
    # raw margin: (scale_w·scale_h)·K/(K−1) for unit ETF rows
    assert torch.allclose(g.margins(W, H, y, b), torch.full_like(q, 6.0 * K / (K - 1)), atol=1e-10)


def test_normalized_margins_are_scale_invariant():
    W, H, y, b = etf_problem(5, 7)
    H = H + 0.1 * torch.randn(H.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q = g.normalized_margins(W, H, y, b)
    assert torch.allclose(g.normalized_margins(7.0 * W, H, y, 7.0 * b), q, atol=1e-12)
    assert torch.allclose(g.normalized_margins(W, 0.3 * H, y, 0.3 * b), q, atol=1e-12)


def test_dataset_margin_never_exceeds_the_etf_value():
    gen_ = torch.Generator().manual_seed(0)
    for trial in range(120):
        K = 2 + trial % 6
        D = K + trial % 4
        y = torch.arange(K).repeat(2)
        H = torch.randn(len(y), D, generator=gen_, dtype=torch.float64)
        W = torch.randn(K, D, generator=gen_, dtype=torch.float64)
        b = torch.randn(K, generator=gen_, dtype=torch.float64)
        assert float(g.normalized_margins(W, H, y, b).min()) <= g.etf_margin(K) + 1e-12
        # also for the best linear classifier of those features (max-margin on separable data)
        W, b = g.max_margin_classifier(H, y, C=1e3) if trial % 40 == 0 else (W, b)
        assert float(g.normalized_margins(W, H, y, b).min()) <= g.etf_margin(K) + 1e-9


def test_margin_scale_center_options():
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    H = torch.tensor([[3.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert g.margin_scale(W, H, center=False) == pytest.approx(math.sqrt(2) * 3)
    # centred: W − mean row has Frobenius norm 1, H − mean has max norm 1
    assert g.margin_scale(W, H, center=True) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args,err",
    [
        ((torch.eye(3), torch.ones(2, 4), torch.tensor([0, 1])), ValueError),  # D mismatch
        ((torch.eye(3), torch.ones(2, 3), torch.tensor([0, 3])), ValueError),  # label out of range
        ((torch.eye(3), torch.ones(2, 3), torch.tensor([0.0, 1.0])), TypeError),  # float labels
        ((torch.eye(3), torch.ones(2, 3), torch.tensor([0])), ValueError),  # one label too few
        ((torch.ones(1, 3), torch.ones(2, 3), torch.tensor([0, 0])), ValueError),  # K = 1
        (([[1.0]], torch.ones(2, 3), torch.tensor([0, 0])), TypeError),  # not a tensor
    ],
)
def test_margins_validate(args, err):
    with pytest.raises(err):
        g.margins(*args)


def test_margins_validate_bias_and_nonfinite():
    W, H, y = torch.eye(3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="bias"):
        g.margins(W, H, y, torch.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        g.margins(W, H * float("nan"), y)
    with pytest.raises(ValueError, match="zero"):
        g.normalized_margins(torch.ones(3, 3), H, y)  # all classifier rows equal


@pytest.mark.parametrize("K,err", [(1, ValueError), (2.0, TypeError), (True, TypeError)])
def test_etf_margin_validates(K, err):
    with pytest.raises(err):
        g.etf_margin(K)


def test_classifier_cosine_known_values():
    A = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.randn(6, dtype=torch.float64)
    assert g.classifier_cosine(A, 3 * A + shift) == pytest.approx(1.0)
    assert g.classifier_cosine(A, -A) == pytest.approx(-1.0)
    B = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    C = torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    assert g.classifier_cosine(B, C) == pytest.approx(0.0)
    assert g.classifier_cosine(B + 5, B, center=False) != pytest.approx(1.0)
    with pytest.raises(ValueError):
        g.classifier_cosine(A, A[:3])
    with pytest.raises(ValueError):
        g.classifier_cosine(torch.ones(3, 2), A[:3, :2])  # zero after centring


@pytest.mark.parametrize("K,D", [(3, 4), (5, 8), (10, 12)])
def test_max_margin_classifier_of_etf_features_is_the_etf(K, D):
    """For features on a simplex ETF the hard-margin multiclass SVM is the ETF itself (self-dual),
    with the ETF margin."""
    W, H, y, b = etf_problem(K, D, n=4, seed=K)
    Ws, bs = g.max_margin_classifier(H, y, C=1e4)
    assert g.classifier_cosine(Ws, W) == pytest.approx(1.0, abs=1e-5)
    assert float(g.normalized_margins(Ws, H, y, bs).min()) == pytest.approx(g.etf_margin(K), rel=1e-4)


def test_max_margin_classifier_two_classes():
    H = torch.tensor([[1.0, 5.0], [-1.0, 5.0], [2.0, 5.0], [-2.0, 5.0]], dtype=torch.float64)
    y = torch.tensor([1, 0, 1, 0])
    W, b = g.max_margin_classifier(H, y, C=1e4)
    assert W.shape == (2, 2) and b.shape == (2,)
    assert g.classifier_cosine(W, torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)) == pytest.approx(
        1.0, abs=1e-6
    )
    assert bool((g.margins(W, H, y, b) > 0).all())


def test_max_margin_classifier_validates():
    H = torch.randn(6, 3, dtype=torch.float64)
    with pytest.raises(ValueError):
        g.max_margin_classifier(H, torch.tensor([0, 0, 0, 2, 2, 2]))  # class 1 missing
    with pytest.raises(ValueError):
        g.max_margin_classifier(H, torch.tensor([0, 1, 0, 1, 0, 1]), C=0)
    with pytest.raises(TypeError):
        g.max_margin_classifier(H, torch.tensor([0.0, 1, 0, 1, 0, 1]))


# ----------------------------------------------------------------------------- fit(keep_states=...)
def test_keep_states_records_weights_and_features():
    run = fit(TINY, progress=False, keep_states=(0, 3, 6))
    assert sorted(run.states) == [0, 3, 6]
    final = run.model.state_dict()
    for k, v in run.states[6].items():
        assert torch.equal(v, final[k]), k
    H0, y0 = run.features_at(0)
    H6, y6 = run.features_at(6)
    assert torch.equal(y0, y6) and not torch.allclose(H0, H6)
    assert torch.equal(H6, run.features()[0])
    with pytest.raises(KeyError, match="keep_states"):
        run.model_at(2)


def test_keep_states_default_changes_nothing():
    plain = fit(TINY, progress=False, cache=False)
    kept = fit(TINY, progress=False, cache=False, keep_states=(2,))
    assert plain.states == {}
    pd.testing.assert_frame_equal(plain.history, kept.history, check_exact=True)


def test_keep_states_cached_and_added_on_demand(tmp_path, capsys):
    root = tmp_path / "c"
    first = fit(TINY, progress=False, root=root, keep_states=(2,))
    again = fit(TINY, progress=False, root=root, keep_states=(2,))
    assert again.from_cache and sorted(again.states) == [2]
    subset = fit(TINY, progress=False, root=root)  # asks for nothing: served from the cache
    assert subset.from_cache
    more = fit(TINY, progress=False, root=root, keep_states=(4,))  # not cached: trained again, both kept
    assert not more.from_cache and sorted(more.states) == [2, 4]
    assert "lacks the model states" in capsys.readouterr().out
    pd.testing.assert_frame_equal(first.history, more.history, check_exact=True)
    for k, v in first.states[2].items():
        assert torch.equal(v, more.states[2][k])


def test_keep_states_survive_a_resume(tmp_path):
    root = tmp_path / "c"
    ref = fit(TINY, progress=False, cache=False, keep_states=(1, 5))
    assert fit(TINY, progress=False, root=root, stop_after=3, checkpoint_every=2, keep_states=(1, 5)) is None
    run = fit(TINY, progress=False, root=root, keep_states=(1, 5))
    for e in (1, 5):
        for k, v in ref.states[e].items():
            assert torch.equal(v, run.states[e][k]), (e, k)


@pytest.mark.parametrize(
    "keep,err",
    [
        ((7,), ValueError),
        ((-1,), ValueError),
        (("3",), TypeError),
        ("3", TypeError),
        ((1.0,), TypeError),
        (3, TypeError),
    ],
)
def test_keep_states_validated(keep, err):
    with pytest.raises(err):
        fit(TINY, progress=False, cache=False, keep_states=keep)


# ----------------------------------------------------------------------------- nclib.generalization
def test_budget_epochs_matches_fit_batching():
    assert gen.budget_epochs(250, 128, 1500) == 750  # 1 full batch + a trailing batch of 122
    assert gen.budget_epochs(257, 128, 1000) == 500  # trailing batch of 1 is folded away
    assert gen.budget_epochs(4000, 128, 1500) == 47  # 31 full + trailing 32 → 32 per epoch
    assert gen.budget_epochs(10, 128, 5) == 5
    with pytest.raises(ValueError):
        gen.budget_epochs(0, 128, 10)
    with pytest.raises(ValueError):
        gen.budget_epochs(1, 128, 10)  # no batch of ≥ 2 samples


def test_budget_epochs_counts_the_steps_fit_takes():
    cfg = TINY.replace(epochs=gen.budget_epochs(120, 32, 12))  # 3 full + trailing 24 → 4 steps per epoch
    run = fit(cfg, progress=False, cache=False)
    assert cfg.epochs == 3 and len(run.curve) == 3


def test_size_sweep_config():
    for p in ("quick", "full"):
        sizes = gen.SIZES[p]
        assert max(sizes) / min(sizes) >= 16 and len(sizes) >= 5
        cfgs = [gen.size_sweep_config(p, n, seed=1) for n in sizes]
        assert all(c.seed == 1 and c.schedule == "cosine" for c in cfgs)
        assert [c.epochs for c in cfgs] == sorted((c.epochs for c in cfgs), reverse=True)
    q = gen.size_sweep_config("quick", 1000)
    assert q.data_kwargs == {"n_train": 1000, "n_test": 4000, "seed": 0} and q.epochs == 188
    with pytest.raises(ValueError):
        gen.size_sweep_config("quick", 4900)
    with pytest.raises(ValueError):
        gen.size_sweep_config("medium", 1000)


def test_rank_correlation_known_values():
    assert gen.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert gen.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert gen.rank_correlation([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(0.9)  # 1 − 6·2/(5·24)
    with pytest.raises(ValueError):
        gen.rank_correlation([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        gen.rank_correlation([1, 2, 3], [1, 1, 1])


def test_train_test_collapse_agrees_with_the_logged_history():
    run = fit(TINY.replace(epochs=10), progress=False, cache=False)
    r = gen.train_test_collapse(run)
    last = run.history.iloc[-1]
    assert r["train_cdnv"] == pytest.approx(last["cdnv"], rel=1e-9)
    assert r["test_cdnv"] == pytest.approx(last["test_cdnv"], rel=1e-9)
    assert r["test_accuracy"] == pytest.approx(1 - last["test_error"], abs=1e-12)
    assert 0 <= r["ncc_agreement_test"] <= 1 and r["test_cdnv_train_means"] > 0
    assert (r["n_train"], r["n_test"]) == (120, 80)


def test_train_test_collapse_train_means_convention():
    """Around the training means, with test features = train features, the two conventions agree."""
    run = fit(TINY, progress=False, cache=False)
    run.data.test = run.data.train
    r = gen.train_test_collapse(run)
    assert r["test_cdnv_train_means"] == pytest.approx(r["train_cdnv"], rel=1e-9)
    assert r["test_cdnv"] == pytest.approx(r["train_cdnv"], rel=1e-12)
    assert r["ncc_agreement_test"] == pytest.approx(1 - run.history.iloc[-1]["ncc_mismatch"], abs=1e-12)


def test_margin_trajectory_and_summary():
    run = fit(TINY, progress=False, cache=False, keep_states=(0, 6))
    traj = gen.margin_trajectory(run)
    assert sorted(traj) == [0, 6] and all(len(q) == 120 for q in traj.values())
    s = gen.margin_summary(traj, 4)
    assert list(s.epoch) == [0, 6]
    assert s["min_vs_etf"].max() <= 1 + 1e-12
    assert (s["min"] <= s["q05"]).all() and (s["q05"] <= s["median"]).all()
    traj_etf = {1: torch.full((5,), g.etf_margin(4))}
    s = gen.margin_summary(traj_etf, 4)
    assert s["min_vs_etf"].iloc[0] == pytest.approx(1.0) and s["cov"].iloc[0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="keep_states"):
        gen.margin_trajectory(fit(TINY, progress=False, cache=False))


def test_stays_zero_from():
    assert gen.stays_zero_from([0, 1, 2, 5, 9], [0.5, 0.0, 0.1, 0.0, 0.0]) == 5
    assert gen.stays_zero_from([0, 1, 2], [0.0, 0.0, 0.0]) == 0
    assert gen.stays_zero_from([0, 1, 2], [0.0, 0.0, 0.2]) is None
    with pytest.raises(ValueError):
        gen.stays_zero_from([0, 2, 1], [1, 0, 0])
    with pytest.raises(ValueError):
        gen.stays_zero_from([0, 1], [0])


def test_run_features_final_and_kept():
    run = fit(TINY, progress=False, cache=False, keep_states=(0,))
    H, y = gen.run_features(run, "test")
    assert torch.equal(H, run.features("test")[0]) and torch.equal(y, run.features("test")[1])
    H0, _ = gen.run_features(run, epoch=0, device="cpu")
    assert torch.equal(H0, run.features_at(0)[0])
    with pytest.raises(KeyError):
        gen.run_features(run, epoch=3)


def test_keep_states_asked_only_after_a_checkpoint_restarts_cleanly(tmp_path):
    """A resumed run that is asked for a state from before its checkpoint trains from scratch."""
    root = tmp_path / "c"
    ref = fit(TINY, progress=False, cache=False, keep_states=(1,))
    assert fit(TINY, progress=False, root=root, stop_after=4, checkpoint_every=2) is None
    run = fit(TINY, progress=False, root=root, keep_states=(1,))
    pd.testing.assert_frame_equal(ref.history, run.history, check_exact=True)
    for k, v in ref.states[1].items():
        assert torch.equal(v, run.states[1][k]), k
