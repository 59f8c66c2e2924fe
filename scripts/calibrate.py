"""Calibrate the reproduction claims: the expected status of every claim, from many seeds and two numerics.

    .venv/bin/python scripts/calibrate.py                 # every chapter, 5 seeds, native + emulated
    .venv/bin/python scripts/calibrate.py 01 04 --seeds 6 # some chapters

Each chapter is executed (nbclient, quick profile) with ``NCLIB_SEEDS=<seeds>`` (the family
``0..seeds-1``, which contains the book's default family 0, 1, 2) and ``NCLIB_CALIBRATE=1`` (no
claim is asserted), twice:

* ``native``   — this machine's kernels, 1 torch thread;
* ``emulated`` — another CPU's rounding: ``ATEN_CPU_CAPABILITY=default`` (torch's non-SIMD
  kernels), ``MKL_ENABLE_INSTRUCTIONS=SSE4_2`` (an older BLAS path) and 2 threads.

Each numerics has its own results cache (``.cache/calibrate/<numerics>/nclib-cache``); the cache
keys include nclib's source and the numerics (``nclib.train.library_fingerprint``), so a run is
only ever reused by an execution that would have trained it bit for bit the same (``--fresh``
empties the caches first; do not use it while another calibration runs). For every claim the per-seed values of both runs are written to
``nclib/calibration/quick.json`` with the *expected* status: the status that every subset of 3
seeds of both runs agrees on (:func:`nclib.stats.calibrated_status`), or ``inconclusive`` when
they disagree. The chapters read that table; a claim whose rule changed since, or that has no
entry, stops the chapter until it is recalibrated. The table printed at the end is the
calibration report.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TABLE = ROOT / "nclib" / "calibration" / "quick.json"
WORK = ROOT / ".cache" / "calibrate"
NUMERICS = {
    "native": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    # OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning, so several
    # two-thread executions at once do not starve each other (no effect on the numbers)
    "emulated": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "OMP_WAIT_POLICY": "PASSIVE",
    },
}


def chapters(selected: list[str]) -> list[Path]:
    found = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
    if not selected:
        return found
    want = {c.zfill(2) for c in selected}
    sel = [p for p in found if p.name[:2] in want]
    missing = want - {p.name[:2] for p in sel}
    if missing:
        raise SystemExit(f"no chapter {sorted(missing)} in notebooks/")
    return sel


def execute(src: Path, numerics: str, seeds: int, timeout: int) -> tuple[Path, float]:
    """Execute one chapter under one numerics in a fresh process; returns the executed .ipynb."""
    out_dir = WORK / numerics
    cache = out_dir / "nclib-cache"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")}
    env.update(
        NUMERICS[numerics],
        NCLIB_PROFILE="quick",
        NCLIB_SEED="0",
        NCLIB_SEEDS=str(seeds),
        NCLIB_CALIBRATE="1",
        NCLIB_CACHE=str(cache),
        NCLIB_PROCS="1",
        MPLBACKEND="Agg",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    out = out_dir / (src.stem + ".ipynb")
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, __file__, "--execute", str(src), str(out), str(timeout)],
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"{src.name} under {numerics} numerics failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return out, time.perf_counter() - t0


def _execute_here(src: str, out: str, timeout: str) -> None:
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    nb = jupytext.read(src)
    NotebookClient(
        nb, timeout=int(timeout), kernel_name="python3", resources={"metadata": {"path": str(Path(src).parent)}}
    ).execute()
    nbformat.write(nb, out)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--execute":
        _execute_here(*sys.argv[2:5])
        return 0
    from nclib.claims import records_from_notebook
    from nclib.stats import calibrated_status

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="chapter numbers (default: all)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per claim in calibration (default 5, at least 5)")
    ap.add_argument("--jobs", type=int, default=2, help="executions at a time (default 2)")
    ap.add_argument("--timeout", type=int, default=3600, help="per-cell timeout, seconds")
    ap.add_argument("--fresh", action="store_true", help="empty the calibration results caches first")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="reuse an executed notebook of an earlier calibration when it is newer than the chapter "
        "source and every nclib module and has the same number of seeds",
    )
    a = ap.parse_args()
    if a.seeds < 5:
        raise SystemExit("--seeds must be at least 5")
    srcs = chapters(a.chapters)
    if a.fresh:
        for n in NUMERICS:
            shutil.rmtree(WORK / n / "nclib-cache", ignore_errors=True)
    jobs = [(s, n) for s in srcs for n in NUMERICS]
    t0 = time.perf_counter()
    results = {}
    if a.reuse:
        newest = max(p.stat().st_mtime for p in (ROOT / "nclib").rglob("*.py"))
        for s, n in jobs:
            out = WORK / n / (s.stem + ".ipynb")
            if out.exists() and out.stat().st_mtime > max(newest, s.stat().st_mtime):
                recs = [r for r in records_from_notebook(out) if r.get("kind") == "reproduction"]
                if recs and all(r["n"] == a.seeds for r in recs):
                    print(f"reusing {out.relative_to(ROOT)}")
                    results[(s, n)] = (out, None)
    todo = [j for j in jobs if j not in results]
    with ThreadPoolExecutor(max_workers=a.jobs) as ex:
        results.update(zip(todo, ex.map(lambda j: execute(j[0], j[1], a.seeds, a.timeout), todo)))
    import fcntl

    TABLE.parent.mkdir(parents=True, exist_ok=True)
    lock = open(TABLE.with_suffix(".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # several calibrations may finish at once: one writer at a time
    table = json.loads(TABLE.read_text()) if TABLE.exists() else {"claims": {}}
    rows = []
    for src in srcs:
        per = {
            n: {r["id"]: r for r in records_from_notebook(results[(src, n)][0]) if r.get("kind") == "reproduction"}
            for n in NUMERICS
        }
        ids = list(per["native"])
        if set(ids) != set(per["emulated"]):
            raise SystemExit(
                f"{src.name}: the two numerics recorded different claims: {sorted(set(ids) ^ set(per['emulated']))}"
            )
        chap = {r["chapter"] for r in per["native"].values()}
        table["claims"] = {k: v for k, v in table["claims"].items() if v.get("chapter") not in chap}
        for cid in ids:
            recs = {n: per[n][cid] for n in NUMERICS}
            r0 = recs["native"]
            runs = {n: {"seeds": recs[n]["seeds"], "values": recs[n]["values"]} for n in NUMERICS}
            exp = calibrated_status(r0["rule"], r0["method"], {n: runs[n]["values"] for n in NUMERICS}, n=3)
            table["claims"][cid] = {
                "chapter": r0["chapter"],
                "statement": r0["statement"],
                "rule": r0["rule"],
                "method": r0["method"],
                "expected": exp,
                "runs": runs,
            }
            lo = min(min(runs[n]["values"]) for n in NUMERICS)
            hi = max(max(runs[n]["values"]) for n in NUMERICS)
            rows.append((cid, r0["rule"], exp, lo, hi))
    old_seconds = table.get("meta", {}).get("seconds", {})
    table["meta"] = {
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": a.seeds,
        "numerics": NUMERICS,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "seconds": {
            **old_seconds,
            **{f"{s.stem}/{n}": round(results[(s, n)][1], 1) for s, n in jobs if results[(s, n)][1] is not None},
        },
    }
    table["claims"] = dict(sorted(table["claims"].items()))
    tmp = TABLE.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    tmp.replace(TABLE)
    fcntl.flock(lock, fcntl.LOCK_UN)
    w = max((len(r[0]) for r in rows), default=10)
    print(f"{'claim':<{w}}  {'rule':<14} {'expected':<15} values over {a.seeds} seeds x 2 numerics")
    for cid, rule, exp, lo, hi in rows:
        print(f"{cid:<{w}}  {rule:<14} {exp:<15} [{lo:.4g}, {hi:.4g}]")
    counts = {s: sum(r[2] == s for r in rows) for s in ("reproduced", "not reproduced", "inconclusive")}
    print(
        f"\n{len(rows)} claims: {counts}; {time.perf_counter() - t0:.0f} s; per execution: "
        + ", ".join(f"{s.stem}/{n} {results[(s, n)][1]:.0f}s" for s, n in jobs if results[(s, n)][1] is not None)
    )
    print(f"wrote {TABLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
