"""Course assignments from the chapter notebooks (otter-grader, offline, no Docker).

    python scripts/assignments.py generate [NN ...]      # → assignments/NN_slug/{student,autograder}
    python scripts/assignments.py grade STUDENT.ipynb [--chapter NN] [--out DIR]

`generate` runs `otter assign` on every chapter whose notebook starts with an otter
`# ASSIGNMENT CONFIG` cell: the student notebook has each solution replaced by a stub (`...`),
hidden tests removed and visible tests turned into `grader.check(...)` cells; the autograder zip
keeps the hidden tests. `grade` executes a student's notebook against that zip (`otter run`) and
prints, per exercise, the score and passed/failed (hidden tests included), writing the same
table to `grades.json` and `grades.csv` in `--out`.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("NCLIB_ASSIGNMENTS", ROOT / "assignments"))


def _otter() -> str:
    exe = Path(sys.executable).with_name("otter")
    return str(exe) if exe.exists() else "otter"


def chapters_with_exercises() -> list[Path]:
    out = []
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(nb, as_version=4).cells
        if cells and cells[0].cell_type == "raw" and cells[0].source.startswith("# ASSIGNMENT CONFIG"):
            out.append(nb)
    return out


def _select(chapters: list[str]) -> list[Path]:
    found = chapters_with_exercises()
    if not chapters:
        return found
    sel = [nb for nb in found if nb.name[:2] in {c.zfill(2) for c in chapters}]
    missing = {c.zfill(2) for c in chapters} - {nb.name[:2] for nb in sel}
    if missing:
        raise SystemExit(f"no chapter with exercises numbered {sorted(missing)}")
    return sel


def generate(chapters: list[str]) -> list[Path]:
    """Run otter assign for the selected chapters; returns the output folders."""
    done = []
    for nb in _select(chapters):
        dest = OUT / nb.stem
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([_otter(), "assign", str(nb), str(dest)], cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"otter assign failed for {nb.name}:\n{r.stdout}\n{r.stderr}")
        _colab_ready(dest / "student" / nb.name)
        print(f"{nb.name}: student → {os.path.relpath(dest / 'student' / nb.name)}, "
              f"autograder → {os.path.relpath(next((dest / 'autograder').glob('*.zip')))}")
        done.append(dest)
    return done


_INIT = """# Initialize Otter (on Colab it is installed on the fly; keep the tests/ folder next to this notebook)
try:
    import otter
except ImportError:
    import subprocess, sys
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "otter-grader"], check=True)
    import otter
"""


def _colab_ready(student_nb: Path) -> None:
    """Let the student notebook's otter init cell install otter-grader where it is missing (Colab)."""
    nb = nbformat.read(student_nb, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("# Initialize Otter"):
            cell.source = _INIT + "\n".join(l for l in cell.source.splitlines()[1:] if l.strip() != "import otter")
            break
    nbformat.write(nb, student_nb)


def _autograder_zip(chapter: str) -> Path:
    dirs = [d for d in OUT.glob(f"{chapter.zfill(2)}_*") if (d / "autograder").is_dir()]
    if not dirs:
        raise SystemExit(f"no generated assignment for chapter {chapter}: run `generate {chapter}` first")
    return next((dirs[0] / "autograder").glob("*.zip"))


def grade(student: Path, chapter: str | None = None, out: Path | None = None) -> list[dict]:
    """Execute a student notebook against the chapter's autograder; return one row per exercise."""
    student = Path(student).resolve()
    if not student.exists():
        raise SystemExit(f"no such notebook: {student}")
    chapter = chapter or student.name[:2]
    zip_path = _autograder_zip(chapter)
    out = Path(out or student.parent / f"{student.stem}-grades").resolve()
    out.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([_otter(), "run", "-a", str(zip_path), "-o", str(out), str(student)],
                       cwd=student.parent, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    res_file = out / "results.json"
    if not res_file.exists():
        raise SystemExit(f"otter run produced no results (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    results = json.loads(res_file.read_text())
    rows = []
    for t in results.get("tests", []):
        if "max_score" not in t or t.get("name") == "Public Tests":
            continue
        score, mx = float(t.get("score") or 0), float(t["max_score"])
        rows.append({"exercise": t["name"], "score": score, "max_score": mx,
                     "status": "passed" if score >= mx else "failed"})
    (out / "grades.json").write_text(json.dumps({"notebook": str(student), "exercises": rows}, indent=1))
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["exercise", "score", "max_score", "status"])
        w.writeheader()
        w.writerows(rows)
    width = max([len(r["exercise"]) for r in rows] + [8])
    print(f"{'exercise':<{width}}  score  max  status")
    for r_ in rows:
        print(f"{r_['exercise']:<{width}}  {r_['score']:5.1f} {r_['max_score']:4.1f}  {r_['status']}")
    total, mx = sum(r["score"] for r in rows), sum(r["max_score"] for r in rows)
    print(f"{'total':<{width}}  {total:5.1f} {mx:4.1f}   (details: {out / 'grades.json'})")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="student versions + autograder zips into assignments/")
    g.add_argument("chapters", nargs="*", help="chapter numbers (default: all with exercises)")
    s = sub.add_parser("grade", help="grade a student notebook")
    s.add_argument("student", type=Path)
    s.add_argument("--chapter", help="chapter number (default: from the file name)")
    s.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "generate":
        generate(a.chapters)
    else:
        grade(a.student, a.chapter, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
