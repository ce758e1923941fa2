#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (ctest runs every
# Criterion suite). Usage: scripts/test.sh [--sanitize]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
dir=$("$root/scripts/build.sh" "$@" | tail -n 1)
if [[ "${1:-}" == "--sanitize" ]]; then
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:${LSAN_OPTIONS:-}"
fi
cd "$dir"
ctest --output-on-failure -j"$(nproc)" --timeout 600
