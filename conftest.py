"""Test ordering for the xdist run (scripts/test.sh: `-n 2 --dist loadfile`).

`--dist loadfile` keeps every notebook's cells (one kernel) and every test module on one worker.
Notebooks are moved to the front: they are the long items, so both workers start on them, and
tests that re-execute a chapter (tests/test_assignments.py) then find its training runs in the
shared results cache ($NCLIB_CACHE) instead of training them a second time.
"""


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda it: 0 if str(it.fspath).endswith(".ipynb") else 1)  # stable: cell order kept
