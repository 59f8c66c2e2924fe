"""Write a chapter notebook from its generator's cells (shared by scripts/chapters/chNN.py)."""
from pathlib import Path

import nbformat as nbf


def write_chapter(name: str, cells) -> Path:
    """Write ``notebooks/<name>`` with the book's kernelspec and no outputs; returns the path."""
    nb = nbf.v4.new_notebook()
    nb.cells = list(cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = Path(__file__).resolve().parents[2] / "notebooks" / name
    nbf.write(nb, out)
    print(out)
    return out
