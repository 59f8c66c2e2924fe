"""Sphinx extension: progress bars stay in Jupyter; the book shows none.

In Jupyter (and on Colab) the chapters' training loops show tqdm progress bars, which are
ipywidgets. Executed for the book they would be saved as widget views whose rendering needs
require.js and the widgets bundle from a CDN: blank boxes offline, and bars frozen at whatever
state the kernel last sent (e.g. "99 %") online. This extension removes every widget-view output
from the chapters while Sphinx reads them (an output cell left empty goes as well) and loads no
widget JavaScript (``nb_ipywidgets_js = {}``), so the pages request nothing from outside and
show no dead bars. The book has no interactive widgets (the collapse animation is plain
HTML/JS); one added later would need this extension changed.
"""

from __future__ import annotations

from docutils import nodes

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_VIEW = f'<script type="{WIDGET_MIME}">'


def _is_widget_bundle(node) -> bool:
    """A myst-nb output (a mime bundle, or a single rendered output) holding a widget view."""
    if not isinstance(node, nodes.container):
        return False
    if node.get("nb_element") == "mime_bundle":
        return any(c.get("mime_type") == WIDGET_MIME for c in node.children)
    inside_bundle = isinstance(node.parent, nodes.container) and node.parent.get("nb_element") == "mime_bundle"
    return node.get("mime_type") == WIDGET_MIME and not inside_bundle


def _is_widget_raw(node) -> bool:
    return isinstance(node, nodes.raw) and node.astext().lstrip().startswith(WIDGET_VIEW)


def _remove(node):
    parent = node.parent
    parent.remove(node)
    # climb while the container is now empty (up to and including the cell's output area)
    while isinstance(parent, nodes.container) and not parent.children and parent.parent is not None:
        up = parent.parent
        classes = parent.get("classes", [])
        up.remove(parent)
        if "cell_output" in classes:
            break
        parent = up


def strip_widget_views(doctree) -> int:
    """Remove widget-view outputs (the whole mime bundle: its text/plain fallback is a frozen bar)
    and the output containers they leave empty; returns how many."""
    found = list(doctree.findall(_is_widget_bundle))
    for node in found:
        _remove(node)
    raws = [n for n in doctree.findall(_is_widget_raw)]
    for node in raws:
        _remove(node)
    return len(found) + len(raws)


def _doctree_read(app, doctree):
    strip_widget_views(doctree)


def _config_inited(app, config):
    if hasattr(config, "nb_ipywidgets_js"):
        config.nb_ipywidgets_js = {}


def setup(app):
    app.connect("config-inited", _config_inited, priority=900)
    app.connect("doctree-read", _doctree_read)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
