# Sourced by scripts/book.sh and scripts/test.sh: create or reuse .venv at the repo root.
# The venv is reinstalled only when the stamp (hash of the constraints and pyproject) changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
STAMP_SRC="$(cat requirements/constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.nc-stamp" 2>/dev/null)" != "$STAMP_SRC" ]; then
    echo ">> installing the environment into .venv (first run or changed requirements; ~3 minutes)"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
    echo "$STAMP_SRC" > "$VENV/.nc-stamp"
else
    # the editable install follows the source tree; nothing to do
    :
fi
export PATH="$VENV/bin:$PATH"
# NCLIB_NUMERICS=emulated: another CPU's float rounding — torch's non-SIMD kernels and an older
# MKL code path — to show that the chapters' verdicts do not depend on this machine's CPU.
case "${NCLIB_NUMERICS:-native}" in
    native) ;;
    emulated) export ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ;;
    *) echo "NCLIB_NUMERICS must be 'native' or 'emulated', got '${NCLIB_NUMERICS}'" >&2; exit 2 ;;
esac
# Small models on 2 cores: one BLAS thread per process is usually fastest.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
# One results cache for the book build and the tests: a run trained by one is reused by the other.
export NCLIB_CACHE="${NCLIB_CACHE:-$ROOT/.cache/nclib}"
export PYDEVD_DISABLE_FILE_VALIDATION=1
