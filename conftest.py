"""Test ordering for the xdist run (scripts/test.sh: `-n 2 --dist loadfile`).

`--dist loadfile` keeps every notebook's cells (one kernel) and every test module on one worker.
Notebooks are moved to the front: they are the long items, so both workers start on them, and
tests that re-execute a chapter (tests/test_assignments.py) then find its training runs in the
shared results cache ($NCLIB_CACHE) instead of training them a second time.
"""


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda it: 0 if str(it.fspath).endswith(".ipynb") else 1)  # stable: cell order kept


# nbval waits at most 5 s (hard-coded ``IPyNbCell.output_timeout``) for each output message after a
# cell has finished. On a loaded machine (2 cores, the emulated numerics with 2 threads per worker)
# a kernel that has just streamed hundreds of progress-bar updates can fall silent for longer while
# it flushes, and nbval then stops the kernel and fails the chapter. Wait up to 120 s instead (a
# cell's own execution limit, --nbval-cell-timeout, is unchanged).
NBVAL_OUTPUT_TIMEOUT = 120


def pytest_configure(config):
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval not installed: nothing to adjust
        return
    if getattr(IPyNbCell.__init__, "_nclib_patched", False):
        return
    original = IPyNbCell.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.output_timeout = max(getattr(self, "output_timeout", 0), NBVAL_OUTPUT_TIMEOUT)

    __init__._nclib_patched = True
    IPyNbCell.__init__ = __init__
