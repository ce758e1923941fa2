#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (ctest runs every
# Criterion suite). Usage: scripts/test.sh [--sanitize]
# With --sanitize the build has ASan+UBSan, and the run fails on any sanitizer report in
# the output, leaks included: Criterion runs tests in forked workers and does not turn a
# LeakSanitizer report at a worker's exit into a failed test by itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh" --test
dir=$("$root/scripts/build.sh" "$@" | tail -n 1)
log="$dir/Testing/Temporary/LastTest.log" # every test's whole output
reports="$dir/sanitizer-reports"
if [[ "${1:-}" == "--sanitize" ]]; then
  # Every instrumented process (test workers, and the coordinators and services the tests
  # start) writes its reports to files here, so that none is lost in a child's log.
  rm -rf "$reports" && mkdir -p "$reports"
  export ASAN_OPTIONS="detect_leaks=1:log_path=$reports/asan:${ASAN_OPTIONS:-}"
  export UBSAN_OPTIONS="print_stacktrace=1:log_path=$reports/ubsan:${UBSAN_OPTIONS:-}"
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:${LSAN_OPTIONS:-}"
  export SAGA_SIM_SEEDS="${SAGA_SIM_SEEDS:-1000}" # the simulation is 20-50x slower here
fi
cd "$dir"
status=0
ctest --output-on-failure -j"$(nproc)" --timeout 600 || status=$?
if [[ "${1:-}" == "--sanitize" ]]; then
  if grep -E "ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:" "$log" >/dev/null; then
    echo "sanitizer reports found in the test output:" >&2
    grep -E -B2 -A20 "ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:" "$log" | head -200 >&2
    status=1
  fi
  if compgen -G "$reports/*" >/dev/null; then
    echo "sanitizer reports written by processes the tests ran ($reports):" >&2
    head -n 60 "$reports"/* >&2
    status=1
  fi
fi
exit $status
