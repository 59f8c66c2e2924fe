"""Produce the chapters' .ipynb files from their MyST sources, and keep the Colab cells in step.

Each chapter has one source, ``notebooks/NN_slug.md`` (a jupytext MyST notebook: ``{code-cell}``
blocks with their tags, otter's raw cells as ``{raw-cell}``). The book is built from these
sources. ``notebooks/NN_slug.ipynb`` — what Colab opens, nbval tests and otter-grader turns into
assignments — is *generated* from the source by this script, committed without outputs, and
checked by ``tests/test_notebooks_sync.py``: a hand edit of a generated .ipynb makes that test fail.

The repository URL lives once, in ``_config.yml`` (``repository.url``); this script writes it
into each source's first markdown cell (badge) and first code cell (install cell).

    python scripts/sync_notebooks.py           # rewrite the .ipynb files (and fix the Colab cells)
    python scripts/sync_notebooks.py --check   # report drift only; exit 1 if any
"""

import argparse
import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import jupytext
import nbformat as nbf
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Reader's edition for Colab. While True, this script also writes READER_DIR/NN_slug.ipynb — the
# reader's edition made by book/_ext/exercises.py (hidden tests and otter markers removed,
# solutions in collapsed cells) — checks them with --check, and points the Colab badge there; the
# book's extension points the Colab launch button there too. Set False and the badge opens the
# master notebooks/NN_slug.ipynb (solutions and hidden tests included).
COLAB_OPENS_READER_EDITION = True
READER_DIR = "reader"  # outside notebooks/, so nbval does not collect the reader editions
BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
INSTALL_MARK = "# Colab bootstrap"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def repo_info():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = cfg["repository"]["url"].rstrip("/")
    branch = cfg["repository"].get("branch", "main")
    return url, branch


def colab_cells(nb_name: str):
    """The badge (markdown) and the install cell (code) for notebook file ``nb_name``."""
    url, branch = repo_info()
    gh = url.split("github.com/")[-1]
    badge = (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{gh}/blob/{branch}/"
        f"{READER_DIR if COLAB_OPENS_READER_EDITION else 'notebooks'}/{nb_name})"
    )
    install = (
        f"{INSTALL_MARK}: on Google Colab, install nclib from the repository; elsewhere do nothing.\n"
        "import importlib.util, subprocess, sys\n"
        "try:\n"
        "    import google.colab  # noqa: F401  (only importable on Colab)\n"
        "    ON_COLAB = True\n"
        "except ImportError:\n"
        "    ON_COLAB = False\n"
        'if ON_COLAB and importlib.util.find_spec("nclib") is None:\n'
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{url}@{branch}"], check=True)'
    )
    return badge, install


def fix_colab_cells(nb, ipynb_name: str) -> list[str]:
    """Bring the badge and install cell of ``nb`` in line with ``_config.yml``; returns the problems found."""
    badge, install = colab_cells(ipynb_name)
    problems = []
    md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    code = next((c for c in nb.cells if c.cell_type == "code"), None)
    if md is None or not BADGE_RE.search(md.source):
        problems.append("first markdown cell has no Open-in-Colab badge")
    elif BADGE_RE.search(md.source).group(0) != badge:
        problems.append("Colab badge differs from _config.yml")
        md.source = BADGE_RE.sub(lambda m: badge, md.source)
    if code is None or not code.source.startswith(INSTALL_MARK):
        problems.append("first code cell is not the Colab bootstrap")
    elif code.source != install:
        problems.append("Colab install cell differs from _config.yml")
        code.source = install
    return problems


def to_ipynb(nb):
    """The .ipynb notebook generated from a (jupytext-read) MyST source: no outputs, stable cell ids."""
    out = nbf.v4.new_notebook()
    out.metadata["kernelspec"] = dict(KERNELSPEC)
    seen = set()
    for c in nb.cells:
        meta = {k: v for k, v in c.metadata.items() if k in ("tags",)}
        if c.cell_type == "code":
            cell = nbf.v4.new_code_cell(c.source, metadata=meta)
        elif c.cell_type == "markdown":
            cell = nbf.v4.new_markdown_cell(c.source, metadata=meta)
        else:
            cell = nbf.v4.new_raw_cell(c.source, metadata=meta)
        cid = hashlib.sha1(f"{c.cell_type}\0{c.source}".encode()).hexdigest()[:10]
        while cid in seen:  # identical cells: keep ids unique and still deterministic
            cid = hashlib.sha1(cid.encode()).hexdigest()[:10]
        seen.add(cid)
        cell["id"] = cid
        out.cells.append(cell)
    return out


def reader_edition(nb):
    """The reader's edition of a generated chapter notebook (for Colab): see book/_ext/exercises.py."""
    spec = importlib.util.spec_from_file_location("_nc_exercises", ROOT / "book" / "_ext" / "exercises.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    out = ex.edition(nb, "reader", target="publish", colab=True)
    for c in out.cells:  # nbformat cells need ids; keep them stable
        c.setdefault("id", hashlib.sha1(f"{c.cell_type}\0{c.source}".encode()).hexdigest()[:10])
    return out


def write_reader_edition(nb, dest: Path, check: bool) -> list[str]:
    """Write (or with ``check`` compare) the reader's edition of ``nb`` at ``dest``."""
    want = nbf.writes(reader_edition(nb))
    have = dest.read_text() if dest.exists() else None
    if have == want:
        return []
    if not check:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(want)
    return [
        f"{dest.relative_to(dest.parents[1])} is not the reader's edition of its source"
        if have is not None
        else f"{dest.name} (reader's edition) is missing"
    ]


def sources() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))


def sync(source: Path, check: bool) -> list[str]:
    """Fix the Colab cells in ``source`` and regenerate its .ipynb; with ``check``, only report."""
    ipynb = source.with_suffix(".ipynb")
    nb = jupytext.read(source)
    problems = fix_colab_cells(nb, ipynb.name)
    if problems and not check:
        jupytext.write(nb, source, fmt="md:myst")
    want = nbf.writes(to_ipynb(nb))
    have = ipynb.read_text() if ipynb.exists() else None
    if have != want:
        problems.append(
            f"{ipynb.name} is not what {source.name} generates (edit the .md, then run this script)"
            if have is not None
            else f"{ipynb.name} is missing"
        )
        if not check:
            ipynb.write_text(want)
    if COLAB_OPENS_READER_EDITION:
        problems += write_reader_edition(to_ipynb(nb), ROOT / READER_DIR / ipynb.name, check)
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="report drift only (exit 1 if any)")
    args = ap.parse_args()
    bad = 0
    for src in sources():
        probs = sync(src, args.check)
        if probs:
            bad += 1
            print(f"{src.relative_to(ROOT)}: {'; '.join(probs)}")
    orphans = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if not p.with_suffix(".md").exists()]
    for p in orphans:
        bad += 1
        print(f"{p.relative_to(ROOT)}: no MyST source {p.with_suffix('.md').name}")
    return 1 if (bad and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
