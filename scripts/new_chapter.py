"""Create a chapter's MyST source with the book's standard first cells.

    python scripts/new_chapter.py 09 slug "Title"

writes notebooks/09_slug.md; then `python scripts/sync_notebooks.py` fills the Colab cells from
`_config.yml` and generates notebooks/09_slug.ipynb.
"""

import sys
from pathlib import Path

import jupytext
import nbformat as nbf

sys.path.insert(0, str(Path(__file__).parent))
from sync_notebooks import KERNELSPEC, colab_cells  # noqa: E402

PARAMETERS = (
    "import os\n"
    'PROFILE = os.environ.get("NCLIB_PROFILE", "quick")  # "quick": CPU, embedded data · "full": GPU, paper scale\n'
    'SEED = int(os.environ.get("NCLIB_SEED", 0))  # first seed of the family; claims use SEED, SEED+1, ...\n'
    'N_SEEDS = int(os.environ.get("NCLIB_SEEDS", 3))  # seeds per reproduction claim (>= 3)'
)


def main(num: str, slug: str, title: str) -> None:
    path = Path(__file__).resolve().parents[1] / "notebooks" / f"{num}_{slug}.md"
    if path.exists():
        raise SystemExit(f"{path} exists")
    nb = nbf.v4.new_notebook()
    badge, install = colab_cells(path.with_suffix(".ipynb").name)
    nb.cells = [
        nbf.v4.new_markdown_cell(f"# {title}\n\n{badge}"),
        nbf.v4.new_code_cell(install),
        nbf.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        nbf.v4.new_code_cell(
            "import nclib\nfrom nclib.claims import claim, check\n\n"
            "device = nclib.setup_notebook(PROFILE, SEED)\nSEEDS = nclib.seed_family(SEED, N_SEEDS)"
        ),
        nbf.v4.new_markdown_cell("## Reproduction checks"),
    ]
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    jupytext.write(nb, path, fmt="md:myst")
    print(path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
