"""Sphinx extension (and plain helpers): the reader's and the course edition of the chapters.

A chapter source (``notebooks/NN_slug.md``) is the otter-grader *master*: every exercise carries
its solution (code between ``# BEGIN SOLUTION`` / ``# END SOLUTION``, in the raw-cell block form
or as marker lines inside a code cell) and its tests, some of them hidden (code cells starting
with ``# HIDDEN``). The book must not publish what would give the answers away, so this extension
rewrites every chapter *while Sphinx reads it* (the ``source-read`` event: myst-nb parses and
executes the text this event returns, never the file) — the sources are not touched:

* hidden tests are deleted (not executed, not rendered, not in any download);
* otter's raw marker cells (``# ASSIGNMENT CONFIG``, ``# BEGIN QUESTION`` ...) are deleted;
* the solution marker lines are removed from the solution code (the code itself is unchanged);
* **reader's edition** (default): each solution cell is tagged ``hide-input`` with the prompt
  "Show solution", so the page shows the exercise, a collapsed "Show solution" element and the
  visible tests;
* **course edition** (``NCLIB_BOOK_EDITION=course bash scripts/book.sh``): solution cells are
  still executed (the visible tests after them need the function) but tagged ``remove-cell``;
  the page shows, instead, the student's stub (the solution lines replaced by ``...``) as a
  non-executed code block. Nothing of the solution is in the page or in its downloads.

Downloads. For a MyST notebook page sphinx-book-theme offers ``.md`` (Sphinx's copy of the
*source file* in ``_sources/``, which would carry the hidden tests) and ``.ipynb`` (a copy of the
*executed* notebook myst-nb wrote to ``_build/jupyter_execute``, i.e. of the rewritten text).
After the build this extension overwrites ``_sources/<page>.md`` with the published MyST text of
the edition and, for the course edition, replaces the solution cells of ``_sources/<page>.ipynb``
by their stubs. So the download button gives the reader's (or course) version — the ``.ipynb``
executed where the book executed it.

Colab. The header's Colab launch button opens ``notebooks/<page>.ipynb`` (the master). When
``scripts/sync_notebooks.py`` has ``COLAB_OPENS_READER_EDITION = True`` (it then also writes the
reader editions to ``READER_DIR``), the button is pointed at ``READER_DIR/<page>.ipynb`` as the
badge is.

The functions above :func:`setup` are pure (nbformat notebooks in, out): scripts and tests use
them without Sphinx.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

EDITIONS = ("reader", "course")
EDITION_ENV = "NCLIB_BOOK_EDITION"
SHOW, HIDE = "Show solution", "Hide solution"
SOLUTION_TAG = "solution"  # marks the (transformed) solution cells in the built notebooks
STUB_TAG = "solution-stub"  # the course edition's markdown cell showing the student's stub
OTTER_RAW = re.compile(r"\s*#\s*(ASSIGNMENT CONFIG|(BEGIN|END)\s+(QUESTION|SOLUTION|TESTS|PROMPT))\b")
MARKER_LINE = re.compile(r"^\s*#\s*(BEGIN|END)\s+SOLUTION\b.*$")
INLINE_SOLUTION = re.compile(r"\s*#\s*SOLUTION(\s+NO\s+PROMPT)?\s*$")
LEAK_MARKERS = ("# BEGIN SOLUTION", "# END SOLUTION", "# HIDDEN", "# BEGIN QUESTION", "# ASSIGNMENT CONFIG")


def is_hidden_test(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith("# HIDDEN")


def is_otter_raw(cell) -> bool:
    return cell.cell_type == "raw" and bool(OTTER_RAW.match(cell.source))


def has_exercises(nb) -> bool:
    return any(
        is_otter_raw(c) or is_hidden_test(c) or _has_inline_markers(c.source)
        for c in nb.cells
        if c.cell_type in ("raw", "code")
    )


def _has_inline_markers(src: str) -> bool:
    return any(MARKER_LINE.match(l) or INLINE_SOLUTION.search(l) for l in src.splitlines())


def strip_markers(src: str) -> str:
    """The solution code without otter's marker lines / ``# SOLUTION`` comments (same behaviour)."""
    out = []
    for line in src.splitlines():
        if MARKER_LINE.match(line):
            continue
        out.append(INLINE_SOLUTION.sub("", line))
    return "\n".join(out)


def stub(src: str, whole: bool = False) -> str:
    """The student's version of a solution cell, as otter-grader makes it: each block between
    ``# BEGIN SOLUTION`` and ``# END SOLUTION`` becomes ``...`` (at the block's indentation), each
    ``x = value  # SOLUTION`` line ``x = ...``. A cell of a solution region without marker lines
    (``whole``) becomes ``...``."""
    if whole and not _has_inline_markers(src):
        return "..."
    out, inside = [], False
    for line in src.splitlines():
        m = MARKER_LINE.match(line)
        if m and "BEGIN" in line:
            inside = True
            if not re.search(r"NO\s+PROMPT", line):
                out.append(line[: len(line) - len(line.lstrip())] + "...")
            continue
        if m:
            inside = False
            continue
        if inside:
            continue
        if INLINE_SOLUTION.search(line):
            code = INLINE_SOLUTION.sub("", line)
            if re.search(r"NO\s+PROMPT", line):
                continue
            lhs = re.match(r"^(\s*[^=#]+?=)(?!=)", code)
            out.append(f"{lhs.group(1)} ..." if lhs else code[: len(code) - len(code.lstrip())] + "...")
            continue
        out.append(line)
    return "\n".join(out)


def _tags(cell, *add, remove=()):
    tags = [t for t in cell.metadata.get("tags", []) if t not in remove]
    tags += [t for t in add if t not in tags]
    cell.metadata["tags"] = tags


def edition(nb, which: str = "reader", *, target: str = "build", colab: bool = False):
    """The reader's or the course edition of chapter notebook ``nb`` (a copy; ``nb`` is unchanged).

    ``target="build"``: what Sphinx parses and executes (course edition: the solution cells stay,
    tagged ``remove-cell``, after a markdown cell showing the stub). ``target="publish"``: what a
    reader downloads (course edition: the solution cells *are* the stubs). ``colab``: also collapse
    the solution cells in Jupyter (``jupyter.source_hidden``) and Colab (a ``#@title`` form cell).
    """
    if which not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, not {which!r}")
    import nbformat

    out = copy.deepcopy(nb)
    cells, in_solution = [], False
    for cell in out.cells:
        if cell.cell_type == "raw" and OTTER_RAW.match(cell.source):
            head = cell.source.strip().splitlines()[0]
            if re.search(r"BEGIN\s+SOLUTION", head):
                in_solution = True
            elif re.search(r"END\s+SOLUTION", head):
                in_solution = False
            continue  # otter's marker cells are never published
        if is_hidden_test(cell):
            continue
        if cell.cell_type != "code" or not (in_solution or _has_inline_markers(cell.source)):
            cells.append(cell)
            continue
        student = stub(cell.source, whole=in_solution)
        _tags(cell, SOLUTION_TAG)
        if which == "reader":
            cell.source = strip_markers(cell.source)
            _tags(cell, "hide-input")
            cell.metadata["mystnb"] = {
                **cell.metadata.get("mystnb", {}),
                "code_prompt_show": SHOW,
                "code_prompt_hide": HIDE,
            }
            if colab:
                cell.source = "#@title " + SHOW + " (double-click to show the code)\n" + cell.source
                cell.metadata["cellView"] = "form"
                cell.metadata["jupyter"] = {"source_hidden": True}
        elif target == "build":
            cell.source = strip_markers(cell.source)
            _tags(cell, "remove-cell", remove=("hide-input",))
            md = nbformat.v4.new_markdown_cell(
                "Your code goes here (the course edition of the book does not show the solution):\n\n"
                "```python\n" + student + "\n```",
                metadata={"tags": [STUB_TAG]},
            )
            cells.append(md)
        else:
            cell.source = student
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    out.cells = cells
    return out


def published_executed(nb, which: str):
    """Scrub an executed notebook built from the ``target="build"`` edition for download."""
    out = copy.deepcopy(nb)
    if which == "reader":
        return out
    cells, student = [], None
    for cell in out.cells:
        tags = cell.metadata.get("tags", [])
        if STUB_TAG in tags:
            student = re.search(r"```python\n(.*)\n```", cell.source, re.S)
            continue
        if cell.cell_type == "code" and SOLUTION_TAG in tags:
            cell.source = student.group(1) if student else "..."
            student = None
            cell.outputs = []
            cell.execution_count = None
            _tags(cell, remove=("remove-cell",))
        cells.append(cell)
    out.cells = cells
    return out


def leaks(text: str) -> list[str]:
    """The otter markers found in published text (solution markers, hidden tests, configs)."""
    return [m for m in LEAK_MARKERS if m in text]


# ----------------------------------------------------------------------------- text round trips
def _is_myst_notebook(text: str) -> bool:
    """A jupytext MyST notebook: YAML front matter naming jupytext or a kernelspec."""
    head = text.lstrip()
    if not head.startswith("---"):
        return False
    front = head.split("---", 2)[1]
    return "jupytext" in front or "kernelspec" in front


def _read(text: str, suffix: str):
    import jupytext
    import nbformat

    if suffix == ".ipynb":
        return nbformat.reads(text, as_version=4)
    return jupytext.reads(text, fmt="md:myst")


def _write(nb, suffix: str) -> str:
    import jupytext
    import nbformat

    if suffix == ".ipynb":
        return nbformat.writes(nb)
    return jupytext.writes(nb, fmt="md:myst")


def transform_text(text: str, suffix: str, which: str, target: str = "build") -> str | None:
    """The edition of a chapter's source text, or None when it has no exercises to transform."""
    if suffix == ".md" and not _is_myst_notebook(text):
        return None
    if suffix not in (".md", ".ipynb"):
        return None
    if not any(k in text for k in ("# HIDDEN", "SOLUTION", "ASSIGNMENT CONFIG", "QUESTION")):
        return None
    nb = _read(text, suffix)
    if not has_exercises(nb):
        return None
    return _write(edition(nb, which, target=target), suffix)


# ----------------------------------------------------------------------------- Sphinx
def _edition(app) -> str:
    which = app.config.exercises_edition or "reader"
    if which not in EDITIONS:
        raise ValueError(f"{EDITION_ENV} / exercises_edition must be one of {EDITIONS}, not {which!r}")
    return which


def _source_read(app, docname, content):
    suffix = Path(app.env.doc2path(docname)).suffix
    new = transform_text(content[0], suffix, _edition(app), "build")
    if new is not None:
        content[0] = new


def _colab_reader(app):
    """(on, reader_dir) from scripts/sync_notebooks.py, if the project has one."""
    import importlib.util

    path = Path(app.srcdir) / "scripts" / "sync_notebooks.py"
    if app.config.exercises_colab_reader_dir:
        return True, app.config.exercises_colab_reader_dir
    if not path.exists():
        return False, None
    spec = importlib.util.spec_from_file_location("_nc_sync_notebooks", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception:  # never break the build over a launch button
        return False, None
    return bool(getattr(mod, "COLAB_OPENS_READER_EDITION", False)), getattr(mod, "READER_DIR", None)


def _launch_button(app, pagename, templatename, context, doctree):
    on, reader_dir = getattr(app, "_exercises_colab", (False, None))
    if not on or not reader_dir or not context.get("header_buttons"):
        return
    name = Path(pagename).name + ".ipynb"

    def walk(buttons):
        for b in buttons:
            if isinstance(b.get("buttons"), list):
                walk(b["buttons"])
            url = b.get("url", "")
            stem = Path(pagename).name
            if (
                "colab" in url
                and "/github/" in url
                and "/blob/" in url
                and (url.endswith(f"/{stem}.ipynb") or url.endswith(f"/{stem}.md"))
            ):
                head, _, tail = url.partition("/blob/")
                branch = tail.split("/", 1)[0]
                b["url"] = f"{head}/blob/{branch}/{reader_dir.strip('/')}/{name}"

    walk(context["header_buttons"])


def _builder_inited(app):
    app._exercises_colab = _colab_reader(app)


def _build_finished(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    import nbformat

    which = _edition(app)
    sources = Path(app.outdir) / "_sources"
    for docname in sorted(app.env.found_docs):
        src = Path(app.env.doc2path(docname))
        if src.suffix not in (".md", ".ipynb") or not src.exists():
            continue
        text = src.read_text(encoding="utf8")
        new = transform_text(text, src.suffix, which, "publish")
        if new is None:
            continue
        dest = sources / (docname + src.suffix + (app.config.html_sourcelink_suffix or ""))
        if dest.exists() or src.suffix == ".md":
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(new, encoding="utf8")
        ipynb = sources / (docname + ".ipynb")
        if src.suffix == ".md" and ipynb.exists():
            nb = nbformat.read(ipynb, as_version=4)
            nbformat.write(published_executed(nb, which), ipynb)


def setup(app):
    app.add_config_value("exercises_edition", os.environ.get(EDITION_ENV, "reader"), "env")
    app.add_config_value("exercises_colab_reader_dir", None, "html")
    app.connect("builder-inited", _builder_inited)
    app.connect("source-read", _source_read)
    app.connect("html-page-context", _launch_button, priority=900)
    app.connect("build-finished", _build_finished)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
