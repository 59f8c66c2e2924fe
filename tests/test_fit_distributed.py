"""fit() under torch.distributed: 2 CPU processes (gloo) give the single-process result, and
only rank 0 writes checkpoints and the results cache.

The ranks run tests/_fit_dist_worker.py (one launch, several fits each).
Models have no BatchNorm, so per-rank batch statistics play no part; the only difference from a
single process is the float summation order of the gradient all-reduce, hence the tolerance.
"""

import importlib.util
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from nclib.train import TrainConfig, fit

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

HERE = Path(__file__).resolve().parent
WORLD = 2
RTOL, ATOL = 1e-4, 1e-6  # stated tolerance: DDP sums the gradients in another order

BASE = dict(
    data="gaussian",
    model="mlp",
    model_kwargs=dict(width=16, depth=2, batchnorm=False),
    epochs=4,
    batch_size=32,
    n_logs=3,
    lr=0.05,
)
CONFIGS = [
    # 128 samples: four full batches of 32 = 2 × 16 per rank
    TrainConfig(data_kwargs=dict(num_classes=4, dim=8, n_per_class=32, n_test_per_class=8), **BASE),
    # 69 samples: two full batches and a trailing one of 5, split 3 + 2 across the ranks
    TrainConfig(data_kwargs=dict(num_classes=3, dim=8, n_per_class=23, n_test_per_class=8), **BASE),
]
COMPARED = [
    "train_loss",
    "nc1",
    "equiangularity",
    "self_duality",
    "ncc_mismatch",
    "train_error",
    "cdnv",
    "test_error",
    "test_nc1",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_worker():
    spec = importlib.util.spec_from_file_location("_fit_dist_worker", HERE / "_fit_dist_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, single):
    """Run the WORLD ranks. Where the platform can fork, the ranks are forked from this process
    (torch and nclib already imported by ``single``: much faster than fresh interpreters);
    elsewhere (or with NCLIB_TEST_DDP_NO_FORK=1) they are fresh interpreters running the worker script."""
    tmp = tmp_path_factory.mktemp("ddp")
    cache_root = tmp / "shared-cache"
    configs = [c.to_dict() for c in CONFIGS]
    port = _free_port()
    args = [(r, WORLD, port, str(tmp), str(cache_root), configs) for r in range(WORLD)]
    old_cache = os.environ.get("NCLIB_CACHE")
    os.environ["NCLIB_CACHE"] = str(tmp / "must-not-be-used")  # inherited by the ranks
    try:
        if "fork" in mp.get_all_start_methods() and not os.environ.get("NCLIB_TEST_DDP_NO_FORK"):
            worker = _load_worker()
            ctx = mp.get_context("fork")
            procs = [ctx.Process(target=worker.run, args=a) for a in args]
            for p in procs:
                p.start()
            for p in procs:
                p.join(timeout=240)
            codes = []
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
                codes.append(p.exitcode)
        else:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
            procs = [
                subprocess.Popen(
                    [sys.executable, str(HERE / "_fit_dist_worker.py"), *map(str, a[:5]), json.dumps(configs)], env=env
                )
                for a in args
            ]
            codes = []
            for p in procs:
                try:
                    codes.append(p.wait(timeout=240))
                except subprocess.TimeoutExpired:
                    p.kill()
                    codes.append(p.wait())
    finally:
        if old_cache is None:
            os.environ.pop("NCLIB_CACHE", None)
        else:
            os.environ["NCLIB_CACHE"] = old_cache
    for r, code in enumerate(codes):
        err = tmp / f"rank{r}.err"
        assert code == 0, f"rank {r} exited with {code}\n" + (err.read_text() if err.exists() else "")
    res = [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    return res, cache_root, tmp


@pytest.fixture(scope="module")
def single():
    return [fit(c, cache=False, progress=False) for c in CONFIGS]


@pytest.mark.parametrize("i", range(len(CONFIGS)))
def test_ddp_matches_single_process(ranks, single, i):
    res, _, _ = ranks
    ref = single[i]
    got = res[0]["runs"][i]
    h = got["history"]
    assert h["epoch"] == ref.history["epoch"].tolist()
    for col in COMPARED:
        a = np.asarray(h[col], dtype=float)
        b = ref.history[col].to_numpy(dtype=float)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=col)
    np.testing.assert_allclose(got["curve"]["train_loss"], ref.curve["train_loss"], rtol=RTOL, atol=ATOL)
    assert got["curve"]["train_error_running"] == ref.curve["train_error_running"].tolist()
    sd = ref.model.state_dict()
    assert got["state"].keys() == sd.keys()
    for k in sd:
        torch.testing.assert_close(got["state"][k], sd[k], rtol=RTOL, atol=ATOL, msg=k)


@pytest.mark.parametrize("i", range(len(CONFIGS)))
def test_ranks_agree_exactly(ranks, i):
    """Every rank ends with the same weights and logs the same (all-reduced) history."""
    res, _, _ = ranks
    r0, r1 = res[0]["runs"][i], res[1]["runs"][i]
    assert r0["history"].keys() == r1["history"].keys()
    for k in r0["history"]:
        np.testing.assert_array_equal(
            np.asarray(r0["history"][k], dtype=float), np.asarray(r1["history"][k], dtype=float), err_msg=k
        )
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k


def test_only_rank0_writes_the_cache(ranks, single):
    res, cache_root, tmp = ranks
    # rank 0 wrote a checkpoint after each non-final epoch, then the result; rank 1 wrote nothing
    assert res[0]["saved"] == ["ckpt.pt"] * (CONFIGS[0].epochs - 1) + ["result.pt"]
    assert res[1]["saved"] == []
    results = sorted(cache_root.rglob("*.pt"))
    assert results == [cache_root / "runs" / CONFIGS[0].key() / "result.pt"]
    assert not any(cache_root.rglob("*.tmp"))
    assert not (tmp / "must-not-be-used").exists()
    saved = torch.load(results[0], map_location="cpu", weights_only=True)
    assert saved["history"]["epoch"] == single[0].history["epoch"].tolist()
    # both ranks returned the same run as with cache=False
    for r in res:
        for k, v in r["runs"][0]["state"].items():
            assert torch.equal(r["cached_state"][k], v), k
    # the cache written by the distributed run serves a later single-process fit
    again = fit(CONFIGS[0], root=cache_root, progress=False)
    assert again.from_cache
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, res[0]["cached_state"][k]), k
    np.testing.assert_array_equal(again.history["nc1"].to_numpy(), np.asarray(res[0]["cached_history"]["nc1"]))
