#!/usr/bin/env bash
# Build the book: execute every chapter (quick profile by default) and render _build/html.
#   bash scripts/book.sh [--profile quick|full]
# Executions are cached by jupyter-cache in .cache/jupyter/<profile> (one cache per profile: the
# cache keys on notebook content, not on environment variables). Every page is re-read on each
# build (--all), so a chapter whose execution failed fails the build again, also incrementally.
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
mkdir -p .cache
CONFIG=".cache/_config.$PROFILE.yml"
python - "$PROFILE" "$CONFIG" <<'PY'
import sys, yaml
profile, out = sys.argv[1], sys.argv[2]
cfg = yaml.safe_load(open("_config.yml"))
cfg["execute"]["cache"] = f".cache/jupyter/{profile}"
yaml.safe_dump(cfg, open(out, "w"), sort_keys=False)
PY
start=$(date +%s)
set +e
jupyter-book build . --all -W -n --keep-going --config "$CONFIG" 2>&1 | tee .cache/book-build.log
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
    echo
    echo "BOOK BUILD FAILED (exit $rc). Execution reports of failing chapters:"
    found=0
    while IFS= read -r f; do echo "  $f"; found=1; done < <(find _build/html/reports -name '*.err.log' -newermt "@$start" 2>/dev/null)
    [ "$found" -eq 1 ] || grep -o '_build/html/reports/[^ ]*\.err\.log' .cache/book-build.log | sort -u | sed 's/^/  /' || true
    echo "Full log: .cache/book-build.log"
    exit "$rc"
fi
echo "Book built in $(( $(date +%s) - start )) s: _build/html/index.html"
