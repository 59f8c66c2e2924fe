"""FeatureStats.sync and measure_features under torch.distributed: two CPU processes (gloo over
127.0.0.1), each with an imbalanced shard (some classes absent on rank 1), must reproduce the
single-process results over all the data."""

import math
import multiprocessing
import os
import socket
import traceback
from datetime import timedelta

import pytest
import torch

from nclib import metrics as M
from nclib.metrics import FeatureStats

K, D = 5, 12  # D > K: measure_features takes the projected (K×K) route by default
MISSING_ON_RANK1 = (2, K - 1)  # rank 1 never sees these classes (including the top label)
WORLD = 2
TIMEOUT_S = 120


def _dataset():
    g = torch.Generator().manual_seed(0)
    counts = [40, 7, 23, 15, 31]
    centres = torch.randn(K, D, generator=g, dtype=torch.float64) * 1.5 + 2.0
    y = torch.arange(K).repeat_interleave(torch.tensor(counts))
    y = y[torch.randperm(len(y), generator=g)]
    x = centres[y] + torch.randn(len(y), D, generator=g, dtype=torch.float64)
    W = torch.randn(K, D, generator=g, dtype=torch.float64)
    b = torch.randn(K, generator=g, dtype=torch.float64)
    return x, y, W, b


def _shards(y):
    """Imbalanced shards: ~75 % of the samples on rank 0; rank 1 lacks MISSING_ON_RANK1."""
    g = torch.Generator().manual_seed(1)
    to_rank1 = torch.rand(len(y), generator=g) < 0.25
    for k in MISSING_ON_RANK1:
        to_rank1 &= y != k
    return [(~to_rank1).nonzero().flatten(), to_rank1.nonzero().flatten()]


def _stats(x, y, batch_size):
    st = FeatureStats(K, D)
    for s in range(0, len(y), batch_size):
        st.update(x[s : s + batch_size], y[s : s + batch_size])
    return st


def _summary(st):
    return {
        "counts": st.counts.clone(),
        "means": st.means.clone(),
        "sq_dev": st.sq_dev.clone(),
        "scatter": st.scatter.clone(),
        "nc1_kk": M.nc1(st, route="kk"),
        "nc1_dd": M.nc1(st, route="dd"),
        "nc1_classes": M.nc1(st, global_mean="classes"),
        "cdnv": M.cdnv(st),
        "metrics": M.collapse_metrics(st),
    }


def _worker(rank, port, out_dir):
    """One rank: every stage stores its result, or its traceback under "<stage>_error"."""
    torch.set_num_threads(1)
    import torch.distributed as dist

    result = {}
    path = os.path.join(out_dir, f"rank{rank}.pt")
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
        )
        x, y, W, b = _dataset()
        idx = _shards(y)[rank]
        xs, ys = x[idx], y[idx]
        stages = [
            ("stats", lambda: _summary(_stats(xs, ys, batch_size=9 + 4 * rank).sync())),
            ("measure", lambda: M.measure_features(xs, ys, W, b, num_classes=K, batch_size=11).metrics),
            (
                "measure_dd",
                lambda: M.measure_features(xs, ys, W, b, num_classes=K, route="dd", global_mean="classes").metrics,
            ),
            # num_classes inferred from the labels (rank 1 lacks the top label): last, as a failure
            # here can leave the process group unusable
            ("measure_default", lambda: M.measure_features(xs, ys, W, b).metrics),
        ]
        result["local_n"] = len(ys)
        for name, fn in stages:
            try:
                result[name] = fn()
            except Exception:
                result[name + "_error"] = traceback.format_exc()
                break
            finally:  # saved after every stage: a later hard crash (gloo abort) keeps the earlier ones
                torch.save(result, path)
    except BaseException:  # report to the parent instead of dying silently
        result["error"] = traceback.format_exc()
    finally:
        torch.save(result, path)
        if dist.is_initialized():
            dist.destroy_process_group()


def _stage(results, name):
    """The per-rank results of one stage, failing with the rank's traceback if it raised."""
    out = []
    for r, (res, exitcode) in enumerate(results):
        assert res is not None, f"rank {r} produced no result (exit code {exitcode})"
        assert "error" not in res, f"rank {r} failed:\n{res['error']}"
        assert name + "_error" not in res, f"rank {r} failed in {name}:\n{res[name + '_error']}"
        assert name in res, f"rank {r} did not complete {name} (exit code {exitcode})"
        out.append(res[name])
    return out


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("dist"))
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, out_dir), daemon=True) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT_S)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    results = []  # (result dict or None, exit code) per rank; the tests check the stages they need
    for r in range(WORLD):
        path = os.path.join(out_dir, f"rank{r}.pt")
        res = torch.load(path, weights_only=False) if os.path.exists(path) else None
        results.append((res, procs[r].exitcode))
    return results


@pytest.fixture(scope="module")
def reference():
    x, y, W, b = _dataset()
    st = _stats(x, y, batch_size=len(y))
    return {
        "stats": _summary(st),
        "measure": M.measure_features(x, y, W, b, num_classes=K).metrics,
        "measure_dd": M.measure_features(x, y, W, b, num_classes=K, route="dd", global_mean="classes").metrics,
        "n": len(y),
    }


def _close(a, b, rel=1e-10):
    if isinstance(a, torch.Tensor):
        scale = float(b.abs().max())
        return float((a - b).abs().max()) <= rel * scale
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


def test_shards_are_imbalanced_with_missing_classes():
    x, y, _, _ = _dataset()
    idx0, idx1 = _shards(y)
    assert len(idx0) + len(idx1) == len(y) and len(idx1) > 5 and len(idx0) > 2 * len(idx1)
    present1 = set(y[idx1].tolist())
    assert present1 and not present1 & set(MISSING_ON_RANK1)


def test_sync_equals_single_process(rank_results, reference):
    ref = reference["stats"]
    _stage(rank_results, "local_n")
    assert sum(res["local_n"] for res, _ in rank_results) == reference["n"]
    for r, got in enumerate(_stage(rank_results, "stats")):
        assert torch.equal(got["counts"], ref["counts"]), f"rank {r} counts"
        for key in ("means", "sq_dev", "scatter"):
            assert _close(got[key], ref[key]), f"rank {r} {key}"
        for key in ("nc1_kk", "nc1_dd", "nc1_classes", "cdnv"):
            assert _close(got[key], ref[key]), f"rank {r} {key}: {got[key]} vs {ref[key]}"
        for key, v in ref["metrics"].items():
            assert _close(got["metrics"][key], v), f"rank {r} {key}"


@pytest.mark.parametrize("which", ["measure", "measure_dd"])
def test_measure_features_under_distributed(rank_results, reference, which):
    ref = reference[which]
    for r, got in enumerate(_stage(rank_results, which)):
        assert set(got) == set(ref)
        assert got["n"] == reference["n"]
        for key, v in ref.items():
            assert _close(got[key], v), f"rank {r} {which} {key}: {got[key]} vs {v}"


def test_measure_features_infers_num_classes_across_ranks(rank_results, reference):
    ref = reference["measure"]
    for r, got in enumerate(_stage(rank_results, "measure_default")):
        for key, v in ref.items():
            assert _close(got[key], v), f"rank {r} {key}: {got[key]} vs {v}"


def test_sync_is_a_noop_without_process_group():
    x, y, _, _ = _dataset()
    st = _stats(x, y, 50)
    before = {k: v.clone() for k, v in st.state_dict().items() if isinstance(v, torch.Tensor)}
    assert st.sync() is st
    for k, v in before.items():
        assert torch.equal(getattr(st, k), v)
