#!/usr/bin/env bash
# Run the whole test suite:
#   0. ruff: lint and format check of nclib, tests, scripts, benchmarks, book/_ext;
#   1. nclib unit tests and every chapter notebook under nbval (2 workers; conftest.py orders notebooks first; loadfile keeps
#      each notebook on one worker);
#   2. the book built and checked in headless Chromium (tests marked `book`), after phase 1 so
#      that its training runs come from the shared results cache.
# Extra arguments replace the default selection and go to pytest as they are
# (e.g. `bash scripts/test.sh tests/test_metrics.py -k nc1`).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
JOBS="${NC_TEST_JOBS:-2}"
PYTEST=(python -m pytest -n "$JOBS" --dist loadfile --nbval-lax --nbval-current-env)
if [ "$#" -gt 0 ]; then
    exec "${PYTEST[@]}" "$@"
fi
start=$(date +%s)
# lint and format (configured in pyproject.toml [tool.ruff]); `ruff format .` fixes the formatting
ruff check .
ruff format --check .
# the xdist workers already use both cores: each trains its chapter's seeds one after the other
NCLIB_PROCS="${NCLIB_PROCS:-1}" "${PYTEST[@]}" -m "not book" tests notebooks
python -m pytest -m book tests/test_book_browser.py
echo "test command finished in $(( $(date +%s) - start )) s"
