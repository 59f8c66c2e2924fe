"""Test distribution over xdist workers (scripts/test.sh runs `-n 2 --dist loadgroup`).

Every item gets an xdist group named after its file, so a notebook's cells (one kernel) and a
test module stay on one worker, as with `--dist loadfile`. Tests that re-execute a chapter join
that chapter's group (`CHAPTER_GROUPS`), so they run after nbval on the same worker and find its
training runs in the shared results cache instead of training them again concurrently.
"""
from pathlib import Path

import pytest

CHAPTER_GROUPS = {"test_assignments.py": "01_what_is_neural_collapse.ipynb"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        name = Path(str(item.fspath)).name
        item.add_marker(pytest.mark.xdist_group(CHAPTER_GROUPS.get(name, name)))
    # within a group, notebooks first (they train), then the tests that reuse their runs
    items.sort(key=lambda it: 0 if str(it.fspath).endswith(".ipynb") else 1)
