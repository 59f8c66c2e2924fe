"""The reader's and the course edition (book/_ext/exercises.py): no page or download of the book
carries a solution marker or a hidden test; solutions are collapsed (reader) or absent (course).

The chapter sources are checked with the pure functions (cheap); the Sphinx hooks on a tiny
jupyter-book project with a fake chapter (two builds, ~15 s each), never on the real book.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("exercises", ROOT / "book" / "_ext" / "exercises.py")
ex = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ex)
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))


def _solution_lines(nb) -> list[str]:
    """Non-trivial lines of every solution (marker blocks and whole-cell solution regions)."""
    lines, region = [], False
    for c in nb.cells:
        if c.cell_type == "raw":
            region = bool(re.match(r"\s*# BEGIN SOLUTION", c.source)) or (
                region and not re.match(r"\s*# END SOLUTION", c.source)
            )
            continue
        if c.cell_type != "code":
            continue
        inside = False
        for line in c.source.splitlines():
            if "# END SOLUTION" in line:
                inside = False
            elif "# BEGIN SOLUTION" in line:
                inside = True
            elif (inside or (region and "# BEGIN SOLUTION" not in c.source)) and len(line.strip()) > 12:
                lines.append(line.strip())
    return lines


@pytest.mark.parametrize("src", CHAPTERS, ids=lambda p: p.name[:2])
def test_chapter_editions_publish_no_solution_or_hidden_test(src):
    text = src.read_text()
    master = jupytext.reads(text, fmt="md:myst")
    hidden = [c.source.split("\n", 1)[1].strip() for c in master.cells if ex.is_hidden_test(c)]
    sols = _solution_lines(master)
    n_regions = sum(
        1 for c in master.cells if c.cell_type == "raw" and c.source.lstrip().startswith("# BEGIN SOLUTION")
    )
    assert hidden and sols and n_regions >= 2
    for which in ex.EDITIONS:
        for target in ("build", "publish"):
            out = ex.transform_text(text, ".md", which, target)
            assert not ex.leaks(out), (which, target, ex.leaks(out))
            assert not [h for h in hidden if h in out]
            nb = jupytext.reads(out, fmt="md:myst")
            assert sum(ex.SOLUTION_TAG in c.metadata.get("tags", []) for c in nb.cells) == n_regions
            if (which, target) == ("course", "publish"):
                assert not [l for l in sols if l in out], "a solution line is published in the course edition"
            if target == "build":  # what is executed: the master's code without hidden tests and marker lines
                want = [
                    ex.strip_markers(c.source)
                    for c in master.cells
                    if c.cell_type == "code" and not ex.is_hidden_test(c)
                ]
                assert [c.source for c in nb.cells if c.cell_type == "code"] == want
    reader = ex.edition(master, "reader", target="publish", colab=True)
    for c in reader.cells:
        if ex.SOLUTION_TAG in c.metadata.get("tags", []):
            assert "hide-input" in c.metadata["tags"] and c.metadata["mystnb"]["code_prompt_show"] == ex.SHOW
            assert c.source.startswith("#@title") and c.metadata["cellView"] == "form"


def test_stub_is_otters():
    src = "def f(x):\n    y = 2  # SOLUTION\n    # BEGIN SOLUTION\n    z = x * y\n    return z\n    # END SOLUTION"
    assert ex.stub(src) == "def f(x):\n    y = ...\n    ..."
    assert ex.strip_markers(src) == "def f(x):\n    y = 2\n    z = x * y\n    return z"
    assert ex.stub("answer = 42", whole=True) == "..."


def _book(tmp_path, edition, extra_sphinx_config=""):
    proj = tmp_path / edition
    (proj / "notebooks").mkdir(parents=True)
    (proj / "_config.yml").write_text(f"""title: tiny
author: t
only_build_toc_files: true
execute:
  execute_notebooks: force
  timeout: 300
repository:
  url: https://github.com/example/tiny
  branch: main
launch_buttons:
  colab_url: "https://colab.research.google.com"
sphinx:
  local_extensions:
    exercises: {ROOT / "book" / "_ext"}
  config:
    nb_merge_streams: true
{extra_sphinx_config}""")
    (proj / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/01_fake\n")
    (proj / "intro.md").write_text("# Tiny\n\nintro\n")
    (proj / "notebooks" / "01_fake.md").write_text(FAKE)
    env = {**os.environ, ex.EDITION_ENV: edition, "MPLBACKEND": "Agg"}
    r = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter-book")), "build", str(proj), "-W", "-n", "--keep-going"],
        cwd=proj,
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return proj / "_build" / "html"


def _published_text(html):
    return {
        p: p.read_text(errors="replace")
        for p in html.rglob("*")
        if p.is_file() and p.suffix in (".html", ".md", ".ipynb", ".js", ".txt", ".json")
    }


def test_tiny_book_reader_edition(tmp_path):
    html = _book(tmp_path, "reader")
    files = _published_text(html)
    for p, t in files.items():
        assert "uniquehiddenline" not in t and not ex.leaks(t), p
    page = files[html / "notebooks" / "01_fake.html"]
    # the solution is in the page, inside the collapsed "Show solution" element only
    i = page.index("uniquesolutionline")
    det = page.rfind("<details", 0, i)
    assert det >= 0 and "</details>" not in page[det:i] and ex.SHOW in page[det:i]
    assert [p.name for p in html.rglob("*") if "uniquesolutionline" in files.get(p, "")] and "visible test ran" in page
    # downloads: the .md is the reader's text, the .ipynb the executed reader's notebook
    md = files[html / "_sources" / "notebooks" / "01_fake.md"]
    assert "uniquesolutionline" in md and "hide-input" in md
    nb = json.loads(files[html / "_sources" / "notebooks" / "01_fake.ipynb"])
    outs = "".join(str(o) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])
    assert "visible test ran" in outs and "chapter output 25" in outs
    assert "colab.research.google.com/github/example/tiny/blob/main/notebooks/01_fake." in page  # switch off: unchanged


def test_tiny_book_course_edition(tmp_path):
    html = _book(tmp_path, "course", "    exercises_colab_reader_dir: reader\n")
    files = _published_text(html)
    for p, t in files.items():
        assert "uniquehiddenline" not in t and "uniquesolutionline" not in t and not ex.leaks(t), p
    page = files[html / "notebooks" / "01_fake.html"]
    assert "Your code goes here" in page and "visible test ran" in page  # stub shown, solution executed
    nb = json.loads(files[html / "_sources" / "notebooks" / "01_fake.ipynb"])
    sol = [c for c in nb["cells"] if ex.SOLUTION_TAG in c["metadata"].get("tags", [])]
    assert len(sol) == 1 and "".join(sol[0]["source"]) == "def square(x):\n    ..." and not sol[0]["outputs"]
    assert "colab.research.google.com/github/example/tiny/blob/main/reader/01_fake.ipynb" in page


FAKE = (
    (Path(__file__).with_name("_fake_chapter.md")).read_text()
    if Path(__file__).with_name("_fake_chapter.md").exists()
    else ""
)


def test_sync_writes_reader_editions_when_switched_on(tmp_path, monkeypatch):
    sspec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "scripts" / "sync_notebooks.py")
    sync = importlib.util.module_from_spec(sspec)
    sspec.loader.exec_module(sync)
    monkeypatch.setattr(sync, "COLAB_OPENS_READER_EDITION", False)
    assert "/notebooks/01_x.ipynb" in sync.colab_cells("01_x.ipynb")[0]
    monkeypatch.setattr(sync, "COLAB_OPENS_READER_EDITION", True)
    assert f"/{sync.READER_DIR}/01_x.ipynb" in sync.colab_cells("01_x.ipynb")[0]
    nb = sync.to_ipynb(jupytext.read(CHAPTERS[0]))
    dest = tmp_path / sync.READER_DIR / "01.ipynb"
    assert sync.write_reader_edition(nb, dest, check=True) and not dest.exists()
    assert sync.write_reader_edition(nb, dest, check=False) and dest.exists()
    assert sync.write_reader_edition(nb, dest, check=True) == []
    text = dest.read_text()
    assert not ex.leaks(text) and '"cellView": "form"' in text
    import nbformat

    nbformat.validate(nbformat.reads(text, as_version=4))
