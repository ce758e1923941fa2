#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (ctest runs every
# Criterion suite). Usage: scripts/test.sh [--sanitize]
# With --sanitize the build has ASan+UBSan, and the run fails on any sanitizer report in
# the output, leaks included: Criterion runs tests in forked workers and does not turn a
# LeakSanitizer report at a worker's exit into a failed test by itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
dir=$("$root/scripts/build.sh" "$@" | tail -n 1)
log="$dir/Testing/Temporary/LastTest.log" # every test's whole output
if [[ "${1:-}" == "--sanitize" ]]; then
  export ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:${LSAN_OPTIONS:-}"
fi
cd "$dir"
status=0
ctest --output-on-failure -j"$(nproc)" --timeout 600 || status=$?
if [[ "${1:-}" == "--sanitize" ]] &&
   grep -E "ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:" "$log" >/dev/null; then
  echo "sanitizer reports found in the test output:" >&2
  grep -E -B2 -A20 "ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:" "$log" | head -200 >&2
  status=1
fi
exit $status
