"""Course assignments from the chapters (otter-grader 7, offline, no Docker).

    python scripts/assignments.py generate [NN ...]      # → assignments/NN_slug/{student,autograder}
    python scripts/assignments.py grade STUDENT.ipynb [--chapter NN] [--out DIR]

What a student gets. Not the whole chapter: its training runs and reproduction claims take
minutes and are the book's business, not the exercise's. `generate` cuts from each chapter
source (``notebooks/NN_slug.md``, the otter master) an *assignment master* with

* the chapter title and a short note, the Colab bootstrap, the parameters cell with a **fixed
  seed** (``SEED = 0``, profile ``quick``, whatever the environment says; otter's ``seed``
  config also pins ``SEED`` in every cell while grading), and the chapter's setup cells (those
  before its first ``##`` section);
* for each exercise, the prose just before it (its context), any earlier code cell it needs
  (found by name analysis; none today), and the whole otter question region;
* otter's **export cell** (a zip for the submission; on Colab, where otter cannot read the open
  notebook, it says to download the .ipynb instead).

and rewrites its ``# ASSIGNMENT CONFIG`` (the sources are never edited): export cell on, PDF off,
seed, requirements. `otter assign` then writes

* ``student/NN_slug.ipynb`` — solutions replaced by ``...``, hidden tests removed; its first cell
  installs otter-grader where missing (Colab) and writes the visible tests, **embedded in that
  cell**, to ``tests/`` — the notebook is the whole hand-out and runs top to bottom alone;
* ``autograder/NN_slug.ipynb`` (the solution) and ``autograder/NN_slug-autograder_*.zip``: all
  tests (hidden included), ``otter_config.json``, and an ``environment.yml`` whose pip section
  installs a CPU torch (PyTorch's CPU wheel index), nclib as a wheel built into the zip
  (``files/neural_collapse_book-*.whl``, installed from ``/autograder/source/files``), and every
  other package the notebook imports, at the versions of ``requirements/constraints.txt``.
  Upload that zip to Gradescope as an Otter autograder.

`grade` runs a submission against the zip (``otter run``, in the current environment) and prints,
per exercise, score and passed/failed (hidden tests included), also written to ``grades.json`` and
``grades.csv`` in ``--out``.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("NCLIB_ASSIGNMENTS", ROOT / "assignments"))
FIXED_SEED = 0
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
GRADESCOPE_FILES = "/autograder/source/files"  # where otter's setup puts the zip's files/
# distribution names for import names that differ (everything the chapters may import)
DIST_OF = {
    "nclib": "neural-collapse-book",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "IPython": "ipython",
    "otter": "otter-grader",
    "myst_nb": "myst-nb",
}
# imported only where available (guarded by try/except ImportError in the chapters)
OPTIONAL_IMPORTS = {"google", "myst_nb"}


def _otter() -> str:
    exe = Path(sys.executable).with_name("otter")
    return str(exe) if exe.exists() else "otter"


# ----------------------------------------------------------------------------- chapters
def chapters_with_exercises() -> list[Path]:
    """The chapter sources (notebooks/NN_slug.md) that start with an otter ASSIGNMENT CONFIG cell."""
    out = []
    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md")):
        cells = jupytext.read(src).cells
        if cells and cells[0].cell_type == "raw" and cells[0].source.lstrip().startswith("# ASSIGNMENT CONFIG"):
            out.append(src)
    return out


def _select(chapters: list[str]) -> list[Path]:
    found = chapters_with_exercises()
    if not chapters:
        return found
    want = {c.zfill(2) for c in chapters}
    sel = [nb for nb in found if nb.name[:2] in want]
    missing = want - {nb.name[:2] for nb in sel}
    if missing:
        raise SystemExit(f"no chapter with exercises numbered {sorted(missing)}")
    return sel


def _raw_head(cell) -> str:
    return cell.source.strip().splitlines()[0].strip() if cell.cell_type == "raw" and cell.source.strip() else ""


def question_regions(cells) -> list[tuple[str, int, int]]:
    """(name, index of the BEGIN QUESTION cell, index of the END QUESTION cell) per exercise."""
    out, start = [], None
    for i, c in enumerate(cells):
        head = _raw_head(c)
        if head.startswith("# BEGIN QUESTION"):
            start = i
        elif head.startswith("# END QUESTION") and start is not None:
            name = re.search(r"^name:\s*(\S+)", cells[start].source, re.M)
            out.append((name.group(1) if name else f"q{len(out) + 1}", start, i))
            start = None
    return out


def _names(src: str) -> tuple[set, set]:
    """(names defined, names read) by a code cell (magics and shell lines ignored)."""
    code = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set(), set()
    defs, loads = set(), set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            (defs if isinstance(n.ctx, ast.Store) else loads).add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            defs.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, ast.arg):
            defs.add(n.arg)
    return defs, loads


def _imports(src: str) -> set[str]:
    code = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    mods = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            mods.update(a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            mods.add(n.module.split(".")[0])
    return mods


WHEEL_PLACEHOLDER = "@WHEEL@"


def _config(cell, chapter: str) -> str:
    cfg = yaml.safe_load(cell.source.split("\n", 1)[1]) or {}
    cfg.update(
        {
            "name": cfg.get("name", f"ch{chapter}"),
            "init_cell": True,
            "check_all_cell": True,
            "export_cell": {
                "pdf": False,
                "run_tests": False,
                "instructions": "Hand in the zip file (on Colab: the downloaded .ipynb).",
            },
            "run_tests": False,  # the test suite grades the solution itself (tests/test_assignments.py)
            "seed": {"variable": "SEED", "autograder_value": FIXED_SEED, "student_value": FIXED_SEED},
            "solutions_pdf": False,
            "template_pdf": False,
            "tests": {"files": True},  # written as files by otter; embedded into the init cell below
            "requirements": "requirements.txt",
            "overwrite_requirements": False,
            "autograder_files": [WHEEL_PLACEHOLDER],
            "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
            "generate": {"pdf": False, "show_stdout": True, "show_hidden": True},
        }
    )
    return "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(cfg, sort_keys=False).strip()


PARAMS_APPENDIX = f"""
# Assignment: fixed profile and seed (the autograder runs the same), whatever the environment says.
PROFILE, SEED = "quick", {FIXED_SEED}"""


def assignment_master(src: Path):
    """The otter master of the assignment cut from chapter source ``src`` (see the module doc)."""
    nb = jupytext.read(src)
    cells = nb.cells
    chapter = src.name[:2]
    first_section = next(
        i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("## ")
    )
    regions = question_regions(cells)
    if not regions:
        raise SystemExit(f"{src.name}: no exercises")
    keep: list[int] = []
    setup = [i for i in range(first_section) if cells[i].cell_type == "code"]
    title = next(i for i, c in enumerate(cells) if c.cell_type == "markdown")
    keep += [0, title] + setup
    defined = set(dir(builtins))
    for i in setup:
        defined |= _names(cells[i].source)[0]
    for _name, a, b in regions:
        # context: the prose just before the exercise (back to the previous code cell)
        j = a - 1
        while j >= 0 and cells[j].cell_type in ("markdown", "raw") and j not in keep and j > title:
            j -= 1
        ctx = [k for k in range(j + 1, a) if cells[k].cell_type == "markdown"]
        if not any(cells[k].source.lstrip().startswith("#") for k in ctx):
            head = next(
                (
                    k
                    for k in range(a - 1, title, -1)
                    if cells[k].cell_type == "markdown" and cells[k].source.lstrip().startswith("## ")
                ),
                None,
            )
            if head is not None and head not in keep:
                ctx.insert(0, head)
        # code the exercise needs from outside its region (transitively)
        need, deps = set(), []
        for k in range(a, b + 1):
            if cells[k].cell_type == "code":
                d, l = _names(cells[k].source)
                need |= l
                defined |= d
        need -= defined
        while need:
            n = need.pop()
            k = next(
                (k for k in range(a - 1, -1, -1) if cells[k].cell_type == "code" and n in _names(cells[k].source)[0]),
                None,
            )
            if k is None or k in keep or k in deps:
                continue
            deps.append(k)
            d, l = _names(cells[k].source)
            defined |= d
            need |= l - defined
        keep += sorted(set(ctx) - set(keep)) + sorted(deps) + list(range(a, b + 1))
    out = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    for i in keep:
        c = cells[i]
        meta = {"tags": c.metadata["tags"]} if c.metadata.get("tags") else {}
        if i == 0:
            out.cells.append(nbformat.v4.new_raw_cell(_config(c, chapter)))
        elif i == title:
            text = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\s*", "", c.source)
            head, _, rest = text.partition("\n")
            out.cells.append(
                nbformat.v4.new_markdown_cell(
                    head
                    + "\n\n*Assignment.* This notebook holds the exercises of the chapter with the setup they need; "
                    "the chapter's experiments and reproduction claims are in the book. Run it top to bottom "
                    "(locally or on Colab), complete every `...`, check your work with the `grader.check` cells, "
                    "and hand in what the last cell exports. The seed is fixed: the autograder runs the same notebook."
                )
            )
        elif c.cell_type == "code":
            src_ = c.source + PARAMS_APPENDIX if "parameters" in c.metadata.get("tags", []) else c.source
            out.cells.append(nbformat.v4.new_code_cell(src_, metadata=meta))
        elif c.cell_type == "markdown":
            out.cells.append(nbformat.v4.new_markdown_cell(c.source, metadata=meta))
        else:
            out.cells.append(nbformat.v4.new_raw_cell(c.source, metadata=meta))
    return out


# ----------------------------------------------------------------------------- requirements
def _pins() -> dict[str, str]:
    pins = {}
    f = ROOT / "requirements" / "constraints.txt"
    for line in f.read_text().splitlines() if f.exists() else []:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_deps() -> list[str]:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [_norm(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in deps]


def build_wheel(dest: Path) -> Path:
    """nclib as a wheel, built from a copy of the package (nothing is written into the repository)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("pyproject.toml", "README.md", "LICENSE"):
            if (ROOT / f).exists():
                shutil.copy(ROOT / f, Path(tmp) / f)
        shutil.copytree(
            ROOT / "nclib", Path(tmp) / "nclib", ignore=shutil.ignore_patterns("__pycache__", "*.lock", "*.tmp")
        )
        r = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), tmp],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise SystemExit(f"building the nclib wheel failed:\n{r.stdout}\n{r.stderr}")
    return max(dest.glob("neural_collapse_book-*.whl"), key=lambda p: p.stat().st_mtime)


def requirements(master, wheel_name: str) -> list[str]:
    """The autograder's pip requirements: CPU torch, the nclib wheel, and every package imported."""
    import importlib.metadata as md

    pins = _pins()
    dists = md.packages_distributions()
    mods = set()
    for c in master.cells:
        if c.cell_type == "code":
            mods |= _imports(c.source)
    names = set(_project_deps())
    for m in sorted(mods - set(sys.stdlib_module_names) - OPTIONAL_IMPORTS):
        names.add(_norm(DIST_OF.get(m) or (dists.get(m) or [m])[0]))
    names -= {"neural-collapse-book", "otter-grader"}  # the wheel; otter pins its own version
    lines = [f"--extra-index-url {TORCH_CPU_INDEX}"]
    for n in ["torch"] + sorted(names - {"torch"}):
        lines.append(f"{n}=={pins[n]}" if n in pins else n)
    lines.append(f"{GRADESCOPE_FILES}/{wheel_name}")
    return lines


# ----------------------------------------------------------------------------- generate
_INIT = """# Initialize Otter: installed on the fly where it is missing (Colab); this notebook's visible
# tests are embedded below and written to tests/ (nothing to download besides this notebook)
import importlib.util, json, os, subprocess, sys
if importlib.util.find_spec("otter") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "otter-grader=={version}"], check=True)
_TESTS = json.loads({tests!r})
os.makedirs("tests", exist_ok=True)
for _name, _text in _TESTS.items():
    with open(os.path.join("tests", _name), "w") as _f:
        _f.write(_text)
import otter
grader = otter.Notebook({nb_name!r}, tests_dir="tests")"""

_EXPORT = """# Save your notebook first, then run this cell to export your submission.
try:
    import google.colab  # noqa: F401  (otter cannot read the open notebook on Colab)
    print("On Colab: File > Download > Download .ipynb, and hand in that notebook.")
except ImportError:
    grader.export({args})"""


def _finish_student(student_dir: Path, nb_name: str) -> None:
    """Embed the visible tests into the init cell, make the export cell Colab-proof, drop tests/."""
    import otter

    path = student_dir / nb_name
    nb = nbformat.read(path, as_version=4)
    tests = {p.name: p.read_text() for p in sorted((student_dir / "tests").glob("*.py"))}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.source.startswith("# Initialize Otter"):
            cell.source = _INIT.format(version=otter.__version__, tests=json.dumps(tests), nb_name=nb_name)
        m = re.search(r"^grader\.export\((.*)\)\s*$", cell.source, re.M)
        if m:
            cell.source = _EXPORT.format(args=m.group(1))
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), 0)
    nb.cells.insert(0, nb.cells.pop(first_md))  # the title first, then otter's init cell
    nbformat.write(nb, path)
    shutil.rmtree(student_dir / "tests", ignore_errors=True)


def generate(chapters: list[str]) -> list[Path]:
    """Assignment master → otter assign, for the selected chapters; returns the output folders."""
    done = []
    OUT.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(OUT / "_wheel")
    for src in _select(chapters):
        nb_name = src.with_suffix(".ipynb").name
        dest = OUT / src.stem
        if dest.exists():
            shutil.rmtree(dest)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            master = assignment_master(src)
            for c in master.cells[:1]:
                c.source = c.source.replace(WHEEL_PLACEHOLDER, wheel.name)
            nbformat.write(master, tmp / nb_name)
            shutil.copy(wheel, tmp / wheel.name)  # → files/<wheel> in the zip
            (tmp / "requirements.txt").write_text("\n".join(requirements(master, wheel.name)) + "\n")
            r = subprocess.run([_otter(), "assign", nb_name, str(dest)], cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"otter assign failed for {src.name}:\n{r.stdout}\n{r.stderr}")
        _finish_student(dest / "student", nb_name)
        zip_path = next((dest / "autograder").glob("*.zip"))
        print(
            f"{src.name}: student → {os.path.relpath(dest / 'student' / nb_name)}, "
            f"autograder → {os.path.relpath(zip_path)}"
        )
        done.append(dest)
    return done


# ----------------------------------------------------------------------------- grade
def _autograder_zip(chapter: str) -> Path:
    dirs = [d for d in OUT.glob(f"{chapter.zfill(2)}_*") if (d / "autograder").is_dir()]
    if not dirs:
        raise SystemExit(f"no generated assignment for chapter {chapter}: run `generate {chapter}` first")
    return next((dirs[0] / "autograder").glob("*.zip"))


def grade(student: Path, chapter: str | None = None, out: Path | None = None) -> list[dict]:
    """Execute a submission (.ipynb or otter's export .zip) against the chapter's autograder."""
    student = Path(student).resolve()
    if not student.exists():
        raise SystemExit(f"no such notebook: {student}")
    chapter = chapter or student.name[:2]
    zip_path = _autograder_zip(chapter)
    out = Path(out or student.parent / f"{student.stem}-grades").resolve()
    out.mkdir(parents=True, exist_ok=True)
    res_file = out / "results.json"
    res_file.unlink(missing_ok=True)
    for _attempt in range(2):  # a kernel can die of a heartbeat timeout on a loaded machine: retry once
        r = subprocess.run(
            [_otter(), "run", "-a", str(zip_path), "-o", str(out), str(student)],
            cwd=student.parent,
            capture_output=True,
            text=True,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
        if res_file.exists() or "DeadKernelError" not in r.stdout + r.stderr:
            break
    if not res_file.exists():
        raise SystemExit(f"otter run produced no results (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    results = json.loads(res_file.read_text())
    rows = []
    for t in results.get("tests", []):
        if "max_score" not in t or t.get("name") == "Public Tests":
            continue
        score, mx = float(t.get("score") or 0), float(t["max_score"])
        rows.append(
            {"exercise": t["name"], "score": score, "max_score": mx, "status": "passed" if score >= mx else "failed"}
        )
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
