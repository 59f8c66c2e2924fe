"""Sphinx extension: MathJax served from the book itself, never from a CDN.

The MathJax 3 distribution shipped in the ``sphinx-mathjax-offline`` package (its ``static/mathjax``
folder: ``tex-chtml.js`` and the CHTML web fonts) is copied into ``_build/html/_static/mathjax``
and ``mathjax_path`` points at it, so every formula is typeset without a network connection
(a classroom without internet). Set on ``config-inited`` so that no ``mathjax_path`` in
``_config.yml`` can point the pages back at a CDN; a missing package is a build error.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sphinx.errors import ExtensionError

MATHJAX_PATH = "mathjax/tex-chtml.js"


def mathjax_static() -> Path:
    """The folder holding ``mathjax/`` in the installed ``sphinx-mathjax-offline`` package."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError("offline math needs the package 'sphinx-mathjax-offline' (pip install -e '.[book]')")
    static = Path(list(spec.submodule_search_locations)[0]) / "static"
    if not (static / MATHJAX_PATH).is_file():
        raise ExtensionError(f"no {MATHJAX_PATH} in {static}")
    return static


def _config_inited(app, config):
    static = mathjax_static()
    config.mathjax_path = MATHJAX_PATH
    if str(static) not in map(str, config.html_static_path):
        config.html_static_path = list(config.html_static_path) + [str(static)]


def setup(app):
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _config_inited, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
