#!/usr/bin/env bash
# soak-lib.sh - what the soak scripts share (chaos-soak.sh, cluster-soak.sh,
# sentinel-soak.sh): run one test run, print its figures line, keep its output and its
# processes' logs when it failed, remove them when it passed. Sourced, not run.

# soak_setup NAME BUILD TEST: the test binary BUILD/tests/TEST into $bin (exits 2, naming
# NAME, when it is not built) and the environment its fixtures read.
soak_setup() {
  bin="$2/tests/$3"
  [[ -x "$bin" ]] || { echo "$1: build first ($bin is missing)" >&2; exit 2; }
  export SAGA_BIN_DIR="$2/bin" SAGA_SOURCE_DIR="$root" SAGA_BUILD_DIR="$2"
}

# soak_run LABEL PATTERN CMD...: runs CMD (a test binary and its flags) with
# SAGA_TEST_KEEP=1, prints "LABEL: ok|FAILED: <the first output line matching the grep
# PATTERN>", and returns 0 when CMD passed. A failed run's tail is printed, and its whole
# output and the logs it kept stay in /tmp (paths printed).
soak_run() {
  local label=$1 pattern=$2
  shift 2
  local out status line kept d
  out=$(mktemp /tmp/soak-XXXXXX)
  if SAGA_TEST_KEEP=1 "$@" >"$out" 2>&1; then status=ok; else status=FAILED; fi
  line=$(grep -m1 -e "$pattern" "$out" || echo "(no figures: see below)")
  echo "$label: $status: $line"
  kept=$(sed -n 's/^system: logs kept in \(.*\)$/\1/p; s/^fixture: keeping \(.*\) (SAGA_TEST_KEEP=1)$/\1/p' "$out")
  if [[ $status == ok ]]; then
    for d in $kept; do [[ $d == /tmp/saga-* ]] && rm -rf "$d"; done
    rm -f "$out"
    return 0
  fi
  tail -n 40 "$out"
  echo "soak: the whole output is in $out; the logs in:" $kept
  return 1
}
