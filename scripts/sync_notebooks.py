"""Keep every chapter's Colab badge and install cell in step with `_config.yml`.

The repository URL lives once, in `_config.yml` (`repository.url`); this script writes it into
the first markdown cell (badge) and first code cell (install) of each notebook, and strips
outputs. `--check` only reports drift (used by the tests).
"""
import argparse
import re
import sys
from pathlib import Path

import nbformat as nbf
import yaml

ROOT = Path(__file__).resolve().parents[1]
BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
INSTALL_MARK = "# Colab bootstrap"


def repo_info():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = cfg["repository"]["url"].rstrip("/")
    branch = cfg["repository"].get("branch", "main")
    return url, branch


def colab_cells(nb_name: str):
    url, branch = repo_info()
    gh = url.split("github.com/")[-1]
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"(https://colab.research.google.com/github/{gh}/blob/{branch}/notebooks/{nb_name})")
    install = (f"{INSTALL_MARK}: on Google Colab, install nclib from the repository; elsewhere do nothing.\n"
               "import importlib.util, subprocess, sys\n"
               "try:\n"
               "    import google.colab  # noqa: F401  (only importable on Colab)\n"
               "    ON_COLAB = True\n"
               "except ImportError:\n"
               "    ON_COLAB = False\n"
               "if ON_COLAB and importlib.util.find_spec(\"nclib\") is None:\n"
               f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"git+{url}@{branch}\"], check=True)")
    return badge, install


def sync(path: Path, check: bool) -> list[str]:
    nb = nbf.read(path, as_version=4)
    badge, install = colab_cells(path.name)
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
    for c in nb.cells:
        if c.cell_type == "code" and (c.outputs or c.execution_count):
            problems.append("has outputs")
            c.outputs, c.execution_count = [], None
    if problems and not check:
        nbf.write(nb, path)
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    bad = 0
    for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        probs = sync(p, args.check)
        if probs:
            bad += 1
            print(f"{p.relative_to(ROOT)}: {'; '.join(sorted(set(probs)))}")
    return 1 if (bad and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
