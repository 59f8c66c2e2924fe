"""Course assignments: generating student versions and grading them (otter-grader, offline).

Executes chapter 1 twice (untouched student version, solution); its training runs come from the
shared results cache when nbval has already run the chapter (notebooks run first, see conftest.py).
"""
import importlib.util
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("assignments", ROOT / "scripts" / "assignments.py")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    os.environ["NCLIB_ASSIGNMENTS"] = str(out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        dests = mod.generate(["01"])
    finally:
        os.environ.pop("NCLIB_ASSIGNMENTS", None)
    return mod, dests[0]


def _solution_lines(master: Path) -> list[str]:
    lines, inside = [], False
    for cell in nbformat.read(master, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            if "# END SOLUTION" in line:
                inside = False
            elif inside and line.strip():
                lines.append(line.strip())
            elif "# BEGIN SOLUTION" in line:
                inside = True
    return lines


def _hidden_tests(master: Path) -> list[str]:
    return [c.source for c in nbformat.read(master, as_version=4).cells
            if c.cell_type == "code" and c.source.startswith("# HIDDEN")]


def test_every_chapter_with_exercises_has_at_least_two():
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    chapters = mod.chapters_with_exercises()
    assert chapters, "no chapter carries exercises"
    for nb in chapters:
        names = re.findall(r"# BEGIN QUESTION\nname: (\S+)", "\n".join(
            c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "raw"))
        assert len(names) >= 2, f"{nb.name} has {len(names)} exercises"


def test_student_version_strips_solutions_and_hidden_tests(generated):
    _, dest = generated
    master = ROOT / "notebooks" / "01_what_is_neural_collapse.ipynb"
    student = dest / "student" / master.name
    text = "\n".join(c.source for c in nbformat.read(student, as_version=4).cells)
    sol = _solution_lines(master)
    assert len(sol) >= 5
    leaked = [l for l in sol if l in text]
    assert not leaked, f"solution lines left in the student notebook: {leaked}"
    for hidden in _hidden_tests(master):
        body = hidden.split("\n", 1)[1]
        assert body not in text
    assert 'grader.check("ex1.1-nc1")' in text and 'grader.check("ex1.2-etf")' in text
    assert "BEGIN QUESTION" not in text and "ASSIGNMENT CONFIG" not in text
    zips = list((dest / "autograder").glob("*.zip"))
    assert len(zips) == 1


def _execute(path: Path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def test_untouched_student_notebook_runs_but_fails_the_exercises(generated):
    mod, dest = generated
    student = dest / "student" / "01_what_is_neural_collapse.ipynb"
    # the rest of the chapter runs: no cell raises (the checks report failure, they don't raise)
    nb = _execute(student)
    outputs = "\n".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "ex1.1-nc1" in outputs and "ex1.2-etf" in outputs
    rows = mod.grade(student, "01", dest / "grade-student")
    assert {r["exercise"]: r["status"] for r in rows} == {"ex1.1-nc1": "failed", "ex1.2-etf": "failed"}
    assert sum(r["score"] for r in rows) == 0
    assert (dest / "grade-student" / "grades.json").exists() and (dest / "grade-student" / "grades.csv").exists()


def test_solution_notebook_passes_every_check(generated):
    mod, dest = generated
    solution = dest / "autograder" / "01_what_is_neural_collapse.ipynb"
    rows = mod.grade(solution, "01", dest / "grade-solution")
    assert rows and all(r["status"] == "passed" for r in rows), rows
    assert sum(r["score"] for r in rows) == sum(r["max_score"] for r in rows) == 4
