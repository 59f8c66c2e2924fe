"""Course assignments (scripts/assignments.py): generated for every chapter with exercises, then
graded. For each chapter the untouched student notebook runs to the end alone (no tests/ folder
beside it) and scores 0; the solution scores full marks; the autograder zip's requirements name
every package the graded notebook and its tests import (a CPU torch and the nclib wheel in the zip).

Only the exercise parts are executed (the student notebook holds the chapter's setup and its
exercises, not its training runs): ~3 short kernels per chapter.
"""

import importlib.metadata as md
import importlib.util
import os
import re
import sys
import zipfile
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("assignments", ROOT / "scripts" / "assignments.py")
CHAPTERS = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.md"))


def _module():
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    os.environ["NCLIB_ASSIGNMENTS"] = str(out)
    try:
        mod = _module()
        dests = mod.generate([])
    finally:
        os.environ.pop("NCLIB_ASSIGNMENTS", None)
    return mod, {d.name[:2]: d for d in dests}


def _solution_lines(master) -> list[str]:
    lines, inside = [], False
    for cell in master.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            if "# END SOLUTION" in line:
                inside = False
            elif inside and len(line.strip()) > 8:
                lines.append(line.strip())
            elif "# BEGIN SOLUTION" in line:
                inside = True
    return lines


def _questions(master) -> dict[str, float]:
    out = {}
    for c in master.cells:
        if c.cell_type == "raw" and c.source.lstrip().startswith("# BEGIN QUESTION"):
            cfg = yaml.safe_load(c.source.split("\n", 1)[1])
            out[cfg["name"]] = float(cfg.get("points", 1) or 0)
    return out


def test_every_chapter_has_exercises_and_an_assignment(generated):
    mod, dests = generated
    chapters = mod.chapters_with_exercises()
    assert [p.name[:2] for p in chapters] == CHAPTERS
    for src in chapters:
        assert len(_questions(jupytext.read(src))) >= 2, src.name
        assert src.name[:2] in dests


@pytest.mark.parametrize("ch", CHAPTERS)
def test_student_notebook_stands_alone_and_hides_solutions(generated, ch):
    mod, dests = generated
    dest = dests[ch]
    src = next((ROOT / "notebooks").glob(f"{ch}_*.md"))
    master = jupytext.read(src)
    student = dest / "student" / src.with_suffix(".ipynb").name
    assert sorted(p.name for p in student.parent.iterdir()) == [student.name], "the hand-out is one notebook"
    text = "\n".join(c.source for c in nbformat.read(student, as_version=4).cells)
    leaked = [l for l in _solution_lines(master) if l in text]
    assert not leaked, f"solution lines left in the student notebook: {leaked}"
    for c in master.cells:
        if c.cell_type == "code" and c.source.startswith("# HIDDEN"):
            assert c.source.split("\n", 1)[1].strip() not in text
    for q in _questions(master):
        assert f'grader.check("{q}")' in text
    assert "BEGIN QUESTION" not in text and "ASSIGNMENT CONFIG" not in text and "# HIDDEN" not in text
    assert "grader.export(" in text and "_TESTS = json.loads(" in text and "SEED = 0" in text
    assert "claim(" not in text.replace("from nclib.claims import", ""), "reproduction claims in the assignment"


@pytest.mark.parametrize("ch", CHAPTERS)
def test_zip_requirements_name_every_import(generated, ch):
    mod, dests = generated
    dest = dests[ch]
    (zip_path,) = (dest / "autograder").glob("*.zip")
    z = zipfile.ZipFile(zip_path)
    env = yaml.safe_load(z.read("environment.yml"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"--extra-index-url {mod.TORCH_CPU_INDEX}" in pip
    wheels = [p for p in pip if p.endswith(".whl")]
    assert len(wheels) == 1 and f"files/{Path(wheels[0]).name}" in z.namelist()
    assert wheels[0].startswith(mod.GRADESCOPE_FILES + "/neural_collapse_book-")
    named = {
        mod._norm(re.split(r"[<>=!~\[ ]", p, maxsplit=1)[0])
        for p in pip
        if not p.startswith("-") and not p.endswith(".whl")
    }
    named.add("neural-collapse-book")
    assert {"torch", "numpy", "otter-grader"} <= named
    # everything the graded notebook and its tests import
    nb = nbformat.read(dest / "autograder" / (dest.name + ".ipynb"), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    code += [z.read(n).decode() for n in z.namelist() if n.startswith("tests/")]
    mods = set().union(*(mod._imports(c) for c in code))
    for t in [z.read(n).decode() for n in z.namelist() if n.startswith("tests/")]:
        for m in re.findall(r"^\s*>>>\s*(?:import|from)\s+([A-Za-z_]\w*)", t, re.M):
            mods.add(m)
    dists = md.packages_distributions()
    missing = []
    for m in sorted(mods - set(sys.stdlib_module_names) - mod.OPTIONAL_IMPORTS):
        dist = mod._norm(mod.DIST_OF.get(m) or (dists.get(m) or [m])[0])
        if dist not in named:
            missing.append((m, dist))
    assert not missing, f"imported but not in the autograder's requirements: {missing}"
    # nclib's own dependencies are named too (not only through the wheel's metadata)
    assert set(mod._project_deps()) <= named


def _execute(path: Path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


@pytest.mark.parametrize("ch", CHAPTERS)
def test_untouched_student_scores_zero_and_solution_full_marks(generated, ch, tmp_path):
    mod, dests = generated
    dest = dests[ch]
    src = next((ROOT / "notebooks").glob(f"{ch}_*.md"))
    questions = _questions(jupytext.read(src))
    # the untouched student notebook, copied alone into an empty folder, runs to the end
    student = tmp_path / src.with_suffix(".ipynb").name
    student.write_bytes((dest / "student" / student.name).read_bytes())
    nb = _execute(student)  # raises if any cell fails
    outputs = "\n".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for q in questions:
        assert q in outputs
    assert list(tmp_path.glob("*.zip")), "the export cell wrote no submission zip"
    rows = mod.grade(student, ch, tmp_path / "grade-student")
    assert {r["exercise"] for r in rows} == set(questions)
    assert sum(r["score"] for r in rows) == 0 and all(r["status"] == "failed" for r in rows), rows
    assert (tmp_path / "grade-student" / "grades.csv").exists()
    # the solution scores full marks, hidden tests included
    rows = mod.grade(dest / "autograder" / student.name, ch, tmp_path / "grade-solution")
    assert rows and all(r["status"] == "passed" for r in rows), rows
    assert sum(r["score"] for r in rows) == sum(r["max_score"] for r in rows) == sum(questions.values())
