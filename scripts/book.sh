#!/usr/bin/env bash
# Build the book: execute every chapter (quick profile by default) and render _build/html.
#   bash scripts/book.sh [--profile quick|full]
# Executions are cached by jupyter-cache in .cache/jupyter/<profile>. That cache keys on notebook
# content only, so it is emptied whenever anything else a chapter's outputs depend on changes:
# nclib's source, the seed family (NCLIB_SEED, NCLIB_SEEDS), the numerics (NCLIB_NUMERICS, the
# thread count) or the calibration table. Every page is re-read on each build (--all), so a
# chapter whose execution failed fails the build again, also incrementally.
#   NCLIB_SEED=101 bash scripts/book.sh             # another seed family
#   NCLIB_NUMERICS=emulated bash scripts/book.sh    # another CPU's float rounding
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
PROFILE="${NCLIB_PROFILE:-quick}"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --profile) PROFILE="$2"; shift 2 ;;
        --profile=*) PROFILE="${1#*=}"; shift ;;
        *) echo "usage: bash scripts/book.sh [--profile quick|full]" >&2; exit 2 ;;
    esac
done
case "$PROFILE" in quick|full) ;; *) echo "unknown profile '$PROFILE' (quick or full)" >&2; exit 2 ;; esac
export NCLIB_PROFILE="$PROFILE"
# figures must reach the notebook outputs: the inline backend, whatever the caller's MPLBACKEND
export MPLBACKEND="module://matplotlib_inline.backend_inline"
mkdir -p .cache
JCACHE=".cache/jupyter/$PROFILE"
FINGERPRINT="$( { cat $(find nclib -name '*.py' -o -name '*.json' | sort); echo "${NCLIB_SEED:-0} ${NCLIB_SEEDS:-3} ${NCLIB_NUMERICS:-native} ${OMP_NUM_THREADS} ${MKL_NUM_THREADS}"; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$JCACHE.fingerprint" 2>/dev/null)" != "$FINGERPRINT" ]; then
    rm -rf "$JCACHE"
    mkdir -p "$(dirname "$JCACHE")"
    echo "$FINGERPRINT" > "$JCACHE.fingerprint"
fi
CONFIG=".cache/_config.$PROFILE.yml"
python - "$PROFILE" "$CONFIG" <<'PY'
import os, sys, yaml
profile, out = sys.argv[1], sys.argv[2]
cfg = yaml.safe_load(open("_config.yml"))
cfg["execute"]["cache"] = os.path.abspath(f".cache/jupyter/{profile}")
# the generated config lives in .cache/: make its relative paths absolute
cfg["sphinx"]["local_extensions"] = {k: os.path.abspath(v) for k, v in cfg["sphinx"]["local_extensions"].items()}
cfg["bibtex_bibfiles"] = [os.path.abspath(b) for b in cfg["bibtex_bibfiles"]]
yaml.safe_dump(cfg, open(out, "w"), sort_keys=False)
PY
start=$(date +%s)
set +e
jupyter-book build . --all -W -n --keep-going --config "$CONFIG" 2>&1 | tee .cache/book-build.log
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
    echo
    echo "BOOK BUILD FAILED (exit $rc)."
    # raise_on_error stops the build before myst-nb writes its report: write one per failing
    # chapter from the build log (traceback included: nb_execution_show_tb).
    python - <<'PY'
import re
from pathlib import Path
log = re.sub(r"\x1b\[[0-9;]*m", "", Path(".cache/book-build.log").read_text(errors="replace"))
failed = sorted(set(re.findall(r"ExecutionError: (\S+\.(?:ipynb|md))", log)))
start = log.find("Executing notebook failed")
for nb in failed:
    rep = Path("_build/html/reports") / (Path(nb).stem + ".err.log")
    rep.parent.mkdir(parents=True, exist_ok=True)
    rep.write_text(log[start:] if start >= 0 else log)
    print(f"  execution report of the failing chapter {nb}:\n    {rep.resolve()}")
if not failed:
    print("  no chapter failed to execute; see the Sphinx errors above (warnings count as errors: -W)")
PY
    echo "Full log: .cache/book-build.log"
    exit "$rc"
fi
echo "Book built in $(( $(date +%s) - start )) s: _build/html/index.html"
