"""Each chapter has one source (notebooks/NN_slug.md, MyST); its .ipynb is generated from it."""

import subprocess
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]


def test_every_ipynb_is_generated_from_its_myst_source():
    r = subprocess.run(
        [sys.executable, "scripts/sync_notebooks.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, (
        "generated notebooks out of date — run `python scripts/sync_notebooks.py`:\n" + r.stdout + r.stderr
    )


def test_every_chapter_is_a_myst_notebook():
    srcs = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
    assert len(srcs) >= 8
    for src in srcs:
        head = src.read_text().split("---")[1]
        assert "format_name: myst" in head and "kernelspec" in head, src.name
        nb = jupytext.read(src)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{src.name}: one cell tagged parameters"
        assert "SEED" in params[0].source and "N_SEEDS" in params[0].source, src.name


def test_a_hand_edit_of_a_generated_notebook_is_detected(tmp_path):
    import shutil

    for p in ("scripts", "notebooks", "reader", "book/_ext"):
        shutil.copytree(ROOT / p, tmp_path / p, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    nb = next((tmp_path / "notebooks").glob("01_*.ipynb"))
    nb.write_text(nb.read_text().replace("Chapter 1", "Chapter One", 1))
    r = subprocess.run(
        [sys.executable, "scripts/sync_notebooks.py", "--check"], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 1 and "01_" in r.stdout
