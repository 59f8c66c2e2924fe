#!/usr/bin/env bash
# Run the whole test suite: nclib unit tests and every chapter notebook under nbval.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests -k metrics`).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
JOBS="${NC_TEST_JOBS:-2}"
if [ "$#" -eq 0 ]; then set -- tests notebooks; fi
# --dist loadfile keeps each notebook (and each test module) on one worker.
exec python -m pytest -n "$JOBS" --dist loadfile --nbval-lax --nbval-current-env "$@"
