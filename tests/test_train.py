"""nclib.train: fit() on tiny configs — history/snapshots/curve, determinism, the results
cache, checkpoint/resume (also after a real SIGKILL), atomic saves, config validation, recipes,
and nclib.profiles. Every fit here takes well under a second."""

import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import nclib
import nclib.data
import nclib.train as train
from nclib import profiles
from nclib.train import Run, TrainConfig, atomic_save, features_of, fit, log_epochs, recipe

REPO = Path(__file__).resolve().parents[1]

TINY = TrainConfig(
    data="gaussian",
    data_kwargs=dict(num_classes=4, dim=8, n_per_class=30, n_test_per_class=10),
    model="mlp",
    model_kwargs=dict(width=32, depth=2, batchnorm=True),
    epochs=6,
    batch_size=32,
    n_logs=4,
)

METRIC_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "train_error",
    "test_error",
    "nc1",
    "trace_ratio",
    "equinorm_means",
    "equinorm_classifier",
    "equiangularity",
    "max_angle",
    "etf_error",
    "self_duality",
    "self_duality_zhu",
    "ncc_mismatch",
    "cdnv",
]


@pytest.fixture(autouse=True)
def _no_shared_cache(tmp_path, monkeypatch):
    """Whatever a test forgets, nothing may reach the shared results cache."""
    monkeypatch.setenv("NCLIB_CACHE", str(tmp_path / "nclib-cache"))


@pytest.fixture(scope="module")
def ref():
    """The uninterrupted, uncached reference run of TINY."""
    return fit(TINY, cache=False, progress=False)


def assert_same_run(a: Run, b: Run):
    """Bit-identical histories, curves, snapshots and weights."""
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)
    pd.testing.assert_frame_equal(a.curve, b.curve, check_exact=True)
    assert sorted(a.snapshots) == sorted(b.snapshots)
    for e in a.snapshots:
        for k in ("means", "W", "b"):
            assert torch.equal(a.snapshots[e][k], b.snapshots[e][k]), (e, k)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def states_differ(a: Run, b: Run) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return any(not torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- log_epochs
def test_log_epochs():
    assert log_epochs(6, 4) == [0, 1, 2, 3, 6]
    assert log_epochs(1, 5) == [0, 1]
    e = log_epochs(350, 30)
    assert e[0] == 0 and e[-1] == 350 and e == sorted(set(e))
    assert 20 <= len(e) <= 31
    # log spacing: the gaps grow
    assert e[2] - e[1] <= e[-1] - e[-2]


# ----------------------------------------------------------------------------- the Run
def test_fit_returns_history_snapshots_curve(ref):
    assert isinstance(ref, Run) and ref.from_cache is False and ref.config is TINY
    h = ref.history
    for col in METRIC_COLUMNS + ["test_cdnv", "test_nc1", "test_ncc_mismatch"]:
        assert col in h.columns, col
    logged = log_epochs(TINY.epochs, TINY.n_logs)
    assert h["epoch"].tolist() == logged
    assert len(h) == len(logged)
    assert np.isnan(h["train_loss"].iloc[0]) and np.isfinite(h["train_loss"].iloc[1:]).all()
    for col in METRIC_COLUMNS[3:]:
        assert np.isfinite(h[col]).all(), col
    for col in ("train_error", "test_error", "ncc_mismatch"):
        assert ((h[col] >= 0) & (h[col] <= 1)).all(), col
    assert ref.final.equals(h.iloc[-1])
    # snapshots keyed by the logged epochs: K×D means, K×D classifier, K bias
    assert sorted(ref.snapshots) == logged
    for snap in ref.snapshots.values():
        assert snap["means"].shape == (4, 32) and snap["W"].shape == (4, 32) and snap["b"].shape == (4,)
        assert all(v.dtype == torch.float64 for v in snap.values())
    assert torch.equal(ref.snapshots[6]["W"], ref.model.classifier.weight.detach().double())
    # the curve: one row per epoch
    assert ref.curve["epoch"].tolist() == list(range(1, TINY.epochs + 1))
    assert {"lr", "train_loss", "train_error_running"} <= set(ref.curve.columns)
    assert ref.curve["train_loss"].iloc[-1] == pytest.approx(h["train_loss"].iloc[-1])
    # the model comes back in eval mode on the CPU
    assert not ref.model.training
    assert all(p.device.type == "cpu" for p in ref.model.parameters())


def test_train_metrics_match_a_direct_measurement(ref):
    """The logged final row is metrics.measure of the returned model on the train split."""
    from nclib import metrics

    X, y = ref.data.tensors("train")
    m = metrics.measure(ref.model, [(X, y)], num_classes=4)
    for k in ("nc1", "equiangularity", "self_duality", "ncc_mismatch", "cdnv"):
        assert ref.final[k] == pytest.approx(m[k], rel=1e-9, abs=1e-12), k
    assert ref.final["train_error"] == pytest.approx(1 - m["accuracy"])
    assert torch.allclose(ref.snapshots[6]["means"], m.stats.means)


def test_measure_test_false_keeps_only_the_test_error():
    r = fit(TINY.replace(measure_test=False, epochs=2, n_logs=2), cache=False, progress=False)
    assert "test_error" in r.history.columns
    assert not any(c.startswith("test_") and c != "test_error" for c in r.history.columns)


def test_tpt_start_semantics():
    curve = pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "train_error_running": [0.5, 0.1, 0.0, 0.02, 0.0]})
    r = Run(TINY, pd.DataFrame(), {}, None, None, curve)
    assert r.tpt_start == 5  # a lucky error-free epoch followed by a mistake does not start the TPT
    r.curve = curve.assign(train_error_running=[0.5, 0.1, 0.0, 0.0, 0.0])
    assert r.tpt_start == 3  # from epoch 3 on, no mistake again
    r.curve = curve.assign(train_error_running=[0.0, 0.0, 0.0, 0.0, 0.0])
    assert r.tpt_start == 1
    r.curve = curve.assign(train_error_running=[0.5, 0.1, 0.0, 0.02, 0.01])
    assert r.tpt_start is None  # ends with errors


def test_tpt_start_on_a_separable_problem():
    cfg = TINY.replace(
        data_kwargs=dict(num_classes=4, dim=8, n_per_class=30, n_test_per_class=10, separation=12.0, noise=0.5),
        epochs=10,
        n_logs=3,
    )
    r = fit(cfg, cache=False, progress=False)
    t = r.tpt_start
    assert t is not None and 1 <= t <= 10
    assert r.curve.set_index("epoch").loc[t, "train_error_running"] == 0
    assert (r.curve[r.curve["epoch"] < t]["train_error_running"] > 0).all()


def test_features_of_and_run_features(ref):
    X, y = ref.data.tensors("train")
    F, labels = ref.features("train")
    assert F.shape == (len(X), 32) and F.dtype == torch.float64
    assert torch.equal(labels, y)
    with torch.no_grad():
        assert torch.equal(F, ref.model.features(X).double())
    Ft, yt = ref.features("test")
    assert Ft.shape == (40, 32) and len(yt) == 40
    # batching changes nothing; the training mode is restored
    ref.model.train()
    try:
        F7 = features_of(ref.model, X, batch_size=7)
        assert ref.model.training
    finally:
        ref.model.eval()
    # (float32 matmuls of different batch sizes may round differently in the last bit)
    assert torch.allclose(F7, F, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "changes",
    [
        dict(loss="mse"),
        dict(optimizer="adam", lr=0.01, schedule="cosine"),
    ],
)
def test_other_losses_and_optimizers_train(changes):
    r = fit(TINY.replace(epochs=8, n_logs=2, **changes), cache=False, progress=False)
    loss = r.curve["train_loss"].to_numpy()
    assert np.isfinite(loss).all()
    assert loss[-1] < 0.7 * loss[0]


def test_mse_loss_is_half_squared_error_to_one_hot():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 1.0]])
    y = torch.tensor([0, 2])
    want = 0.5 * ((logits - torch.eye(3)[y]) ** 2).sum(1).mean()
    assert torch.allclose(train.loop._loss(TINY.replace(loss="mse"), logits, y, 3), want)


def test_schedules_in_the_curve():
    base = TINY.replace(epochs=6, n_logs=2, lr=0.1)
    step = fit(base.replace(schedule="step", milestones=(2, 4), gamma=0.1), cache=False, progress=False)
    assert step.curve["lr"].to_numpy() == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cos = fit(base.replace(schedule="cosine"), cache=False, progress=False)
    want = [0.1 * (1 + np.cos(np.pi * e / 6)) / 2 for e in range(6)]  # CosineAnnealingLR, T_max = epochs
    assert cos.curve["lr"].to_numpy() == pytest.approx(want)
    const = fit(base.replace(schedule="constant"), cache=False, progress=False)
    assert (const.curve["lr"] == 0.1).all()


def test_fixed_etf_head_is_not_trained():
    r = fit(
        TINY.replace(model_kwargs=dict(width=16, depth=1, head="etf"), epochs=2, n_logs=2), cache=False, progress=False
    )
    assert torch.equal(r.snapshots[0]["W"], r.snapshots[2]["W"])
    assert (r.snapshots[0]["b"] == 0).all()


def test_label_noise_changes_the_training_labels():
    r = fit(TINY.replace(label_noise=0.25, epochs=1, n_logs=1), cache=False, progress=False)
    clean = nclib.data.load("gaussian", **TINY.data_kwargs)
    y_noisy, y_clean = r.data.tensors("train")[1], clean.tensors("train")[1]
    assert (y_noisy != y_clean).float().mean().item() == pytest.approx(0.25, abs=1 / 120)
    assert torch.equal(r.data.tensors("test")[1], clean.tensors("test")[1])


# ----------------------------------------------------------------------------- determinism
def test_fit_is_bit_deterministic_and_seed_matters(ref):
    again = fit(TINY, cache=False, progress=False)
    assert_same_run(ref, again)
    other = fit(TINY.replace(seed=1), cache=False, progress=False)
    assert states_differ(ref, other)
    assert not ref.history["train_loss"].iloc[1:].equals(other.history["train_loss"].iloc[1:])


def test_fit_leaves_the_global_rngs_alone(tmp_path):
    torch.manual_seed(1234)
    np.random.seed(5)
    random.seed(6)
    t, n, p = torch.get_rng_state(), np.random.get_state(), random.getstate()
    fit(TINY.replace(epochs=2, n_logs=2, label_noise=0.1), cache=False, progress=False)
    fit(TINY.replace(epochs=2, n_logs=2), root=tmp_path, progress=False)
    fit(TINY.replace(epochs=2, n_logs=2), root=tmp_path, progress=False)  # from the cache
    assert torch.equal(torch.get_rng_state(), t)
    n2 = np.random.get_state()
    assert n2[0] == n[0] and np.array_equal(n2[1], n[1]) and n2[2:] == n[2:]
    assert random.getstate() == p


def test_fit_rejects_a_non_config():
    with pytest.raises(TypeError, match="TrainConfig"):
        fit(TINY.to_dict())


# ----------------------------------------------------------------------------- cache
def test_results_cache_roundtrip(tmp_path, ref):
    first = fit(TINY, root=tmp_path, progress=False)
    assert first.from_cache is False
    run_dir = tmp_path / "runs" / TINY.key()
    result = run_dir / "result.pt"
    assert result.exists() and not (run_dir / "ckpt.pt").exists()
    assert list(run_dir.iterdir()) == [result]  # no temporary files left
    assert_same_run(first, ref)
    # the file is plain data: it loads with the safe unpickler
    saved = torch.load(result, map_location="cpu", weights_only=True)
    assert saved["nclib"] == nclib.__version__
    assert set(saved) >= {"model", "history", "snapshots", "curve", "config"}
    second = fit(TINY, root=tmp_path, progress=False)
    assert second.from_cache is True
    assert_same_run(second, ref)
    assert not second.model.training
    # a cached run still knows its data
    assert torch.equal(second.data.tensors("train")[0], ref.data.tensors("train")[0])


def test_cache_load_uses_weights_only(tmp_path, monkeypatch):
    cfg = TINY.replace(epochs=1, n_logs=1)
    fit(cfg, root=tmp_path, progress=False)
    calls = []
    real = torch.load

    def spy(*a, **kw):
        calls.append(kw.get("weights_only"))
        return real(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    assert fit(cfg, root=tmp_path, progress=False).from_cache
    assert calls == [True]


def test_cache_false_neither_reads_nor_writes(tmp_path):
    cfg = TINY.replace(epochs=2, n_logs=2)
    fit(cfg, cache=False, root=tmp_path, progress=False, checkpoint_every=1)
    assert not (tmp_path / "runs").exists()
    fit(cfg, root=tmp_path, progress=False)
    assert fit(cfg, cache=False, root=tmp_path, progress=False).from_cache is False


def test_env_var_sets_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NCLIB_CACHE", str(tmp_path / "elsewhere"))
    assert train.cache_dir() == tmp_path / "elsewhere"
    cfg = TINY.replace(epochs=1, n_logs=1)
    fit(cfg, progress=False)
    assert (tmp_path / "elsewhere" / "runs" / cfg.key() / "result.pt").exists()


def test_cache_key(monkeypatch):
    k = TINY.key()
    assert isinstance(k, str) and len(k) == 20 and int(k, 16) >= 0
    assert TrainConfig(**TINY.to_dict()).key() == k
    assert TINY.replace(seed=1).key() != k
    assert TINY.replace(lr=0.051).key() != k
    assert TINY.replace(model_kwargs=dict(width=32, depth=2, batchnorm=False)).key() != k
    assert TINY.replace(data_kwargs={**TINY.data_kwargs, "n_per_class": 31}).key() != k
    monkeypatch.setattr(train.cache, "_source_hash", lambda module="train": "changed-library-source")
    assert TINY.key() != k


def test_cache_key_follows_the_library_source_and_the_numerics(monkeypatch):
    # start from the native numerics whatever the caller's environment (e.g. NCLIB_NUMERICS=emulated)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    k = TINY.key()
    assert train.library_fingerprint().split("|")[0] == train._source_hash()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    k_aten = TINY.key()
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")
    k_mkl = TINY.key()
    assert len({k, k_aten, k_mkl}) == 3
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")
    assert TINY.key() == k
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert TINY.key() != k
    finally:
        torch.set_num_threads(threads)


def test_source_hash_covers_what_training_imports():
    assert len(train._source_hash()) == 16
    deps = train.module_closure("train")
    # imports inside functions count too (evaluation's probes, noise); the loss registry and the
    # multi-centre head live in losses and models, so chapter 6's imbalance is not a dependency
    assert {"train", "data", "models", "metrics", "losses", "evaluation", "noise", "__init__"} <= set(deps)
    assert not {"ufm", "claims", "stats", "transfer", "continual", "imbalance"} & set(deps)
    assert set(train.module_closure("continual")) >= set(deps) | {"continual"}
    # the loop itself, in the package: ``from ..metrics``/``..losses`` (top level and inside functions)
    # and ``from .. import __version__`` are followed; the package's own __init__ comes with it
    loop = set(train.module_closure("train.loop"))
    assert {
        "train.loop",
        "train.config",
        "train.cache",
        "train",
        "metrics",
        "losses",
        "models",
        "data",
        "evaluation",
        "noise",
        "__init__",
    } <= loop
    assert not {"claims", "ufm", "continual", "imbalance", "transfer"} & loop
    assert train.module_closure("nclib.train.loop") == sorted(loop)
    ufm_closure = set(train.module_closure("ufm"))
    # chapter 7's regression MLP trains through the one loop (nclib.train.engine), imported inside it
    assert {"ufm", "ufm.solver", "ufm.regression", "metrics", "train.engine"} <= ufm_closure
    assert not {"claims", "continual", "imbalance"} & ufm_closure
    with pytest.raises(ValueError, match="no module"):
        train.module_closure("nope")


def test_fit_many_trains_in_parallel_bit_identical_to_fit(tmp_path):
    cfgs = [TINY.replace(epochs=2, n_logs=2, seed=s) for s in (0, 1, 2)]
    runs = train.fit_many(cfgs, processes=2, progress=False)
    assert [r.config for r in runs] == cfgs and all(r.from_cache for r in runs)
    for c, r in zip(cfgs, runs):
        ref = fit(c, cache=False, progress=False)
        pd.testing.assert_frame_equal(r.history, ref.history)
    # all cached now: nothing is trained again, also not serially
    again = train.fit_many(cfgs, processes=1, progress=False)
    assert all(r.from_cache for r in again)


def test_fit_many_serial_and_errors(monkeypatch):
    cfgs = [TINY.replace(epochs=1, n_logs=1, seed=s) for s in (0, 1)]
    runs = train.fit_many(cfgs, processes=1, progress=False)
    assert [r.config.seed for r in runs] == [0, 1]
    with pytest.raises(TypeError, match="TrainConfig"):
        train.fit_many([])
    with pytest.raises(TypeError, match="TrainConfig"):
        train.fit_many([TINY, "x"])
    with pytest.raises(ValueError, match="processes"):
        train.fit_many(cfgs, processes=0)
    monkeypatch.setenv("NCLIB_PROCS", "two")
    with pytest.raises(ValueError, match="NCLIB_PROCS"):
        train.processes_default()
    monkeypatch.setenv("NCLIB_PROCS", "3")
    assert train.processes_default() == 3


def test_fit_many_reports_a_failing_worker(tmp_path, monkeypatch):
    bad = TINY.replace(epochs=1, n_logs=1, seed=5)
    good = TINY.replace(epochs=1, n_logs=1, seed=6)
    monkeypatch.setattr(
        train.workers,
        "_worker_command",
        lambda: [
            sys.executable,
            "-c",
            "import json,sys; j=json.loads(sys.stdin.read()); "
            "sys.exit('boom seed %d' % j['config']['seed'] if j['config']['seed'] == 5 else 0)",
        ],
    )
    with pytest.raises(RuntimeError, match="boom seed 5"):
        train.fit_many([bad, good], processes=2, progress=False)


def test_changed_config_is_a_different_cache_entry(tmp_path):
    cfg = TINY.replace(epochs=1, n_logs=1)
    fit(cfg, root=tmp_path, progress=False)
    other = fit(cfg.replace(seed=7), root=tmp_path, progress=False)
    assert other.from_cache is False
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted([cfg.key(), cfg.replace(seed=7).key()])


def test_changed_library_does_not_read_old_results(tmp_path, monkeypatch):
    cfg = TINY.replace(epochs=1, n_logs=1)
    fit(cfg, root=tmp_path, progress=False)
    monkeypatch.setattr(train.cache, "_source_hash", lambda module="train": "changed-library-source")
    assert fit(cfg, root=tmp_path, progress=False).from_cache is False


# ----------------------------------------------------------------------------- checkpoints
def test_stop_and_resume_is_bit_identical(tmp_path, ref, monkeypatch):
    run_dir = tmp_path / "runs" / TINY.key()
    assert fit(TINY, root=tmp_path, stop_after=3, checkpoint_every=2, progress=False) is None
    ckpt = run_dir / "ckpt.pt"
    assert ckpt.exists() and not (run_dir / "result.pt").exists()
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert ck["epoch"] == 3 and [r["epoch"] for r in ck["rows"]] == [0, 1, 2, 3]
    # the second call resumes: it trains only epochs 4..6
    trained = []
    real_loss = train.loop._loss
    monkeypatch.setattr(train.loop, "_loss", lambda *a, **kw: trained.append(1) or real_loss(*a, **kw))
    resumed = fit(TINY, root=tmp_path, progress=False)
    assert len(trained) == 3 * 4  # 3 epochs × 4 batches of 32 of 120 samples (the last one of 24)
    assert resumed.from_cache is False
    assert_same_run(resumed, ref)
    assert (run_dir / "result.pt").exists() and not ckpt.exists()


def test_stop_after_the_last_epoch_keeps_the_work(tmp_path, ref, monkeypatch):
    """stop_after = epochs returns None but leaves a checkpoint at that epoch: nothing is retrained."""
    assert fit(TINY, root=tmp_path, stop_after=TINY.epochs, checkpoint_every=100, progress=False) is None
    ck = torch.load(tmp_path / "runs" / TINY.key() / "ckpt.pt", weights_only=True)
    assert ck["epoch"] == TINY.epochs
    trained = []
    real_loss = train.loop._loss
    monkeypatch.setattr(train.loop, "_loss", lambda *a, **kw: trained.append(1) or real_loss(*a, **kw))
    resumed = fit(TINY, root=tmp_path, progress=False)
    assert trained == []
    assert_same_run(resumed, ref)


def test_resume_from_several_stops(tmp_path, ref):
    for stop in (1, 2, 4):
        assert fit(TINY, root=tmp_path, stop_after=stop, checkpoint_every=3, progress=False) is None
    assert_same_run(fit(TINY, root=tmp_path, progress=False), ref)


def _slow_fit(cfg_dict, root):
    """The victim of the kill test: fit with checkpoints every epoch, slowed down (results
    unchanged) so that the kill lands mid-run; leaves root/FINISHED if it ever completes."""
    import nclib.train as tr

    torch.set_num_threads(1)
    real_loss = tr.loop._loss

    def slow_loss(*a, **kw):
        time.sleep(0.02)
        return real_loss(*a, **kw)

    tr.loop._loss = slow_loss
    tr.fit(tr.TrainConfig(**cfg_dict), root=root, checkpoint_every=1, progress=False)
    Path(root, "FINISHED").touch()


_KILL_SCRIPT = "import json, sys; from test_train import _slow_fit; _slow_fit(json.loads(sys.argv[2]), sys.argv[1])"


def test_resume_after_sigkill(tmp_path, monkeypatch):
    """A real SIGKILL of a separate training process: the next fit resumes from its checkpoint.
    The victim is forked from this process where possible (no second interpreter start-up),
    else a fresh interpreter."""
    cfg = TINY.replace(epochs=60, n_logs=5)
    run_dir = tmp_path / "runs" / cfg.key()
    ckpt = run_dir / "ckpt.pt"
    if "fork" in mp.get_all_start_methods():
        proc = mp.get_context("fork").Process(target=_slow_fit, args=(cfg.to_dict(), str(tmp_path)))
        proc.start()
        pid, running = proc.pid, proc.is_alive
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path), json.dumps(cfg.to_dict())], cwd=REPO, env=env
        )
        pid, running = proc.pid, lambda: proc.poll() is None

    def reap():
        if isinstance(proc, subprocess.Popen):
            return proc.wait(timeout=30)
        proc.join(timeout=30)
        return proc.exitcode

    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists():
            assert running(), "the training process died before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        time.sleep(0.2)  # let it get a few epochs further
        os.kill(pid, signal.SIGKILL)
        code = reap()
    finally:
        if running():
            os.kill(pid, signal.SIGKILL)
            reap()
    assert code == -signal.SIGKILL
    assert not (tmp_path / "FINISHED").exists() and not (run_dir / "result.pt").exists()
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    killed_at = ck["epoch"]
    assert 1 <= killed_at < cfg.epochs
    # resume in this process: only the missing epochs are trained, the result is the uninterrupted one
    trained = []
    real_loss = train.loop._loss
    monkeypatch.setattr(train.loop, "_loss", lambda *a, **kw: trained.append(1) or real_loss(*a, **kw))
    resumed = fit(cfg, root=tmp_path, progress=False)
    monkeypatch.setattr(train.loop, "_loss", real_loss)
    assert len(trained) == (cfg.epochs - killed_at) * 4
    assert_same_run(resumed, fit(cfg, cache=False, progress=False))
    assert (run_dir / "result.pt").exists() and not ckpt.exists()


# ----------------------------------------------------------------------------- atomic_save
def test_atomic_save_roundtrip(tmp_path):
    p = tmp_path / "sub" / "x.pt"
    atomic_save({"a": torch.arange(3)}, p)
    assert torch.equal(torch.load(p, weights_only=True)["a"], torch.arange(3))
    atomic_save({"a": torch.arange(4)}, p)
    assert torch.equal(torch.load(p, weights_only=True)["a"], torch.arange(4))
    assert [q.name for q in p.parent.iterdir()] == ["x.pt"]


def test_atomic_save_failure_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "x.pt"
    atomic_save({"a": torch.ones(2)}, p)
    before = p.read_bytes()
    real_save = torch.save
    targets = []

    def broken_save(obj, f, *a, **kw):
        targets.append(Path(f))
        Path(f).write_bytes(b"half a file")  # some bytes are written, then the disk "fails"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"a": torch.zeros(2)}, p)
    monkeypatch.setattr(torch, "save", real_save)
    # it wrote to a temporary file in the same folder, never to the target itself
    assert len(targets) == 1 and targets[0] != p and targets[0].parent == p.parent
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["x.pt"]


def test_atomic_save_renames_with_os_replace(tmp_path, monkeypatch):
    calls = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append((Path(a), Path(b))) or real(a, b))
    p = tmp_path / "y.pt"
    atomic_save([1, 2], p)
    assert len(calls) == 1 and calls[0][1] == p and calls[0][0].parent == tmp_path and calls[0][0] != p


# ----------------------------------------------------------------------------- TrainConfig
@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (dict(loss="not-a-loss"), ValueError, "loss"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer"),
        (dict(schedule="linear"), ValueError, "schedule"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(epochs=2.5), TypeError, "epochs"),
        (dict(epochs=True), TypeError, "epochs"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(n_logs=-1), ValueError, "n_logs"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr=-0.1), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
        (dict(momentum=1.0), ValueError, "momentum"),
        (dict(momentum=-0.1), ValueError, "momentum"),
        (dict(label_noise=1.0), ValueError, "label_noise"),
        (dict(label_noise=-0.1), ValueError, "label_noise"),
        (dict(seed=1.0), TypeError, "seed"),
        (dict(seed=True), TypeError, "seed"),
    ],
)
def test_config_validation(bad, exc, match):
    with pytest.raises(exc, match=match):
        TrainConfig(**bad)


def test_config_basics():
    c = TrainConfig(milestones=[10.0, 20])
    assert c.milestones == (10, 20)
    assert c.replace(lr=0.1).lr == 0.1 and c.lr == 0.05
    with pytest.raises(Exception):
        c.lr = 1.0  # frozen
    assert c.to_dict()["milestones"] == (10, 20)


# ----------------------------------------------------------------------------- recipes
def test_recipe_papyan_quick():
    c = recipe("papyan")
    assert c == recipe("papyan", "quick")
    # the structure of the quick recipe (its sizes/epochs are tuned by the chapter, not pinned here)
    assert c.data == "mnist1d" and {"n_train", "n_test"} <= set(c.data_kwargs)
    assert c.model == "mlp" and c.model_kwargs == {"width": 512, "depth": 3, "batchnorm": True}
    assert (c.optimizer, c.momentum, c.batch_size, c.loss, c.schedule) == ("sgd", 0.9, 128, "ce", "step")
    assert c.weight_decay > 0 and c.gamma == 0.1
    assert len(c.milestones) == 2 and 0 < c.milestones[0] < c.milestones[1] < c.epochs
    assert c.label_noise == 0 and c.measure_test
    assert recipe("papyan", epochs=10).epochs == 10


def test_recipe_papyan_full_without_fallback():
    c = recipe("papyan", "full", fallback=False)
    assert c.data == "cifar10" and c.model == "resnet18"
    assert (c.epochs, c.milestones, c.batch_size, c.weight_decay, c.momentum) == (350, (117, 233), 128, 5e-4, 0.9)


def test_recipe_full_falls_back_to_quick_without_data(monkeypatch, capsys):
    def no_network(*a, **kw):
        raise RuntimeError("no network here")

    monkeypatch.setattr(nclib.data, "torchvision_set", no_network)
    c = recipe("papyan", "full")
    assert c == recipe("papyan", "quick")
    out = capsys.readouterr().out
    assert "no network here" in out and "QUICK" in out


def test_recipe_errors():
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("zhu")
    with pytest.raises(ValueError, match="PROFILE"):
        recipe("papyan", "medium")


# ----------------------------------------------------------------------------- profiles
def test_check_profile_and_pick():
    assert profiles.check_profile("quick") == "quick" and profiles.check_profile("full") == "full"
    with pytest.raises(ValueError, match="PROFILE"):
        profiles.check_profile("QUICK")
    assert profiles.pick("quick", 1, 2) == 1 and profiles.pick("full", 1, 2) == 2
    with pytest.raises(ValueError):
        profiles.pick("fast", 1, 2)


def test_default_device():
    assert profiles.default_device("cpu") == torch.device("cpu")
    assert isinstance(profiles.default_device(), torch.device)


def test_setup_notebook(monkeypatch, capsys):
    import matplotlib

    monkeypatch.delenv("NCLIB_PROFILE", raising=False)
    t, n, p = torch.get_rng_state(), np.random.get_state(), random.getstate()
    themed = []
    # the theme itself (seaborn, slow to import) is tested in test_plots.py
    monkeypatch.setattr(nclib.plots, "set_theme", lambda: themed.append(1))
    try:
        with matplotlib.rc_context():
            dev = nclib.setup_notebook("quick", 3)
            a = (torch.rand(3), np.random.rand(2), random.random())
            nclib.setup_notebook("quick", 3, verbose=False)
            b = (torch.rand(3), np.random.rand(2), random.random())
    finally:
        torch.set_rng_state(t)
        np.random.set_state(n)
        random.setstate(p)
    assert isinstance(dev, torch.device) and themed == [1, 1]
    assert os.environ["NCLIB_PROFILE"] == "quick"
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert torch.equal(a[0], torch.rand(3, generator=torch.Generator().manual_seed(3)))
    out = capsys.readouterr().out
    assert "profile=quick" in out and "seed=3" in out and out.count("nclib") == 1


@pytest.mark.parametrize(
    "args, exc",
    [(("fast", 0), ValueError), (("quick", 1.5), TypeError), (("quick", True), TypeError), (("quick", "0"), TypeError)],
)
def test_setup_notebook_rejects(args, exc, monkeypatch):
    monkeypatch.delenv("NCLIB_PROFILE", raising=False)
    with pytest.raises(exc):
        nclib.setup_notebook(*args, verbose=False)


def test_a_progress_bar_that_redraws_does_not_stop_training(monkeypatch, tmp_path):
    """tqdm's update() returns True whenever it redraws: a visible bar must not end fit early."""
    monkeypatch.setenv("NCLIB_CACHE", str(tmp_path))

    class Redrawing:
        def update(self, n=1):
            return True

        def close(self):
            pass

    from nclib.train import loop

    monkeypatch.setattr(loop, "_pbar", lambda total, enabled, desc: Redrawing())
    run = train.fit(TINY, cache=False, progress=True)
    assert run is not None and int(run.history.epoch.iloc[-1]) == TINY.epochs


def test_the_fingerprint_follows_every_file_of_the_metrics_package(monkeypatch):
    """nclib.metrics is a package: an edit to any of its files changes what training's cache keys hash."""
    from pathlib import Path

    files = sorted((Path(train.__file__).resolve().parents[1] / "metrics").glob("*.py"))
    assert len(files) > 1
    source_hash = train._source_hash.__wrapped__  # uncached: the files are read each call
    base = source_hash()
    real = Path.read_bytes
    for f in files:
        monkeypatch.setattr(Path, "read_bytes", lambda p, f=f: real(p) + (b"\n# edited" if p.resolve() == f else b""))
        assert source_hash() != base, f.name
    monkeypatch.setattr(Path, "read_bytes", real)
    assert source_hash() == base
