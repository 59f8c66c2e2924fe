"""Create a chapter notebook skeleton with the book's standard first cells.

    python scripts/new_chapter.py 07 theory_lab "The theory lab"

The Colab cells are filled from `_config.yml` (repository url) by scripts/sync_notebooks.py.
"""
import sys
from pathlib import Path

import nbformat as nbf

sys.path.insert(0, str(Path(__file__).parent))
from sync_notebooks import colab_cells  # noqa: E402


PARAMETERS = ('import os\n'
              'PROFILE = os.environ.get("NCLIB_PROFILE", "quick")  # "quick": CPU, embedded data · "full": GPU, paper scale\n'
              'SEED = 0')


def main(num: str, slug: str, title: str) -> None:
    path = Path(__file__).resolve().parents[1] / "notebooks" / f"{num}_{slug}.ipynb"
    if path.exists():
        raise SystemExit(f"{path} exists")
    nb = nbf.v4.new_notebook()
    badge, install = colab_cells(path.name)
    nb.cells = [
        nbf.v4.new_markdown_cell(f"# {title}\n\n{badge}"),
        nbf.v4.new_code_cell(install),
        nbf.v4.new_code_cell(PARAMETERS,
                             metadata={"tags": ["parameters"]}),
        nbf.v4.new_code_cell("import nclib\nfrom nclib.claims import claim\n\nnclib.setup_notebook(PROFILE, SEED)"),
        nbf.v4.new_markdown_cell("## Reproduction checks"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, path)
    print(path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
