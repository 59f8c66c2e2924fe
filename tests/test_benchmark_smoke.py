"""Smoke test of benchmarks/bench.py: the quick mode runs, prints its table, and the three metric
implementations agree. No timing is asserted (speed lives in benchmarks/, see its README)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick_mode_runs_and_agrees(tmp_path):
    out_json = tmp_path / "quick.json"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "NCLIB_CACHE": str(tmp_path / "cache"),
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--json", str(out_json)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"bench.py --quick failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    text = proc.stdout
    assert "1. NC1-NC4 + CDNV" in text and "2. Tracking overhead" in text and "(c) public library" in text

    # the metrics table: header with an 'agree' column, then one row per method and case; the exact
    # methods agree (1e-6), the float32 path within its bound, the float32 library baseline is reported
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case") and line.rstrip().endswith("agree"))
    rows = []
    for line in lines[header + 2 :]:
        if not line.strip() or line.startswith("   ("):
            break
        rows.append(line.split()[-1])
    assert len(rows) == 2 * 5 + 3, f"expected 2 cases x 5 methods + 1 case x 3 methods in the table:\n{text}"
    assert set(rows) <= {"true", "n/a"} and rows.count("n/a") == 3, f"the methods disagree:\n{text}"

    res = json.loads(out_json.read_text())
    assert res["quick"] and res["book"] is None
    for i, case in enumerate(res["metrics"]):
        want = {"nclib", "f32", "c", "a", "b"} if i < 2 else {"nclib", "f32", "c"}
        assert set(case["methods"]) == want
        for key, m in case["methods"].items():
            if key == "c":
                assert m["agree"] is None and m["max_rel_diff"] <= 1e-2  # float32 arithmetic, reported
            else:
                assert m["agree"] and m["max_rel_diff"] <= m["tol"] <= 1e-5
    t = res["tracking"]
    assert t["logged_every"] == t["epochs"] + 1 and t["logged_never"] == 0
    # the approximation ran at every epoch, on the same training trajectory as the exact run
    assert t["same_trajectory"] and len(t["deviation_per_epoch"]) == t["epochs"]
    assert set(t["deviation"]) >= {"nc1", "ncc_mismatch", "error"}
