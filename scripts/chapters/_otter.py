"""Exercise regions for chapter notebooks, in otter-grader's master-notebook syntax.

The chapter notebook *is* the master: it runs with the solutions in place (book, nbval), and
`python scripts/assignments.py generate` turns it into a student version (solutions → `...`,
hidden tests removed, visible tests → `grader.check(...)`) plus an autograder zip.
Otter's raw delimiter cells carry the `remove-cell` tag so the book does not show them; hidden
tests are also removed from the rendered page (they still run there).
"""
import nbformat as nbf

_HIDE = {"tags": ["remove-cell"]}


def assignment_config(name: str):
    """The ASSIGNMENT CONFIG raw cell (first cell of a chapter with exercises)."""
    cfg = (f"# ASSIGNMENT CONFIG\nname: {name}\ninit_cell: true\ncheck_all_cell: false\nexport_cell: false\n"
           "run_tests: false\ngenerate: true\nsolutions_pdf: false\ntemplate_pdf: false\ntests:\n  files: true\n")
    return nbf.v4.new_raw_cell(cfg, metadata=_HIDE)


def question(name: str, points: int, prompt: str, solution: str, visible: list[str], hidden: list[str]):
    """Cells of one exercise: prompt (markdown), solution (code with `# BEGIN/END SOLUTION`
    lines around what students must write), visible and hidden test cells."""
    if "# BEGIN SOLUTION" not in solution or "# END SOLUTION" not in solution:
        raise ValueError(f"exercise {name}: the solution must mark the students' part with # BEGIN/END SOLUTION")
    if not visible or not hidden:
        raise ValueError(f"exercise {name}: give at least one visible and one hidden test")
    raw = lambda s: nbf.v4.new_raw_cell(s, metadata=_HIDE)  # noqa: E731
    cells = [raw(f"# BEGIN QUESTION\nname: {name}\npoints: {points}"), nbf.v4.new_markdown_cell(prompt),
             raw("# BEGIN SOLUTION"), nbf.v4.new_code_cell(solution), raw("# END SOLUTION"), raw("# BEGIN TESTS")]
    cells += [nbf.v4.new_code_cell(t) for t in visible]
    cells += [nbf.v4.new_code_cell("# HIDDEN\n" + t, metadata=_HIDE) for t in hidden]
    cells += [raw("# END TESTS"), raw("# END QUESTION")]
    return cells
