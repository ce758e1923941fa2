#!/usr/bin/env bash
# recovery-compare.sh - failover figures of both memberships side by side
# (docs/high-availability.md, "Measured recovery time"): runs build/bin/saga-recovery-bench
# RUNS times (default 5) per configuration and prints the median and the range of each.
#
#   scripts/recovery-compare.sh [--runs N] [--sagas N] [--build DIR]
#
# Configurations: SIGKILL with membership=redis at lease_ms 1000 and 500, SIGTERM
# (hand-over) with membership=redis, SIGKILL with membership=kafka (default session 6 s).
set -euo pipefail

runs=5 sagas=10000 build=build
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --sagas) sagas=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--sagas N] [--build DIR]" >&2; exit 2 ;;
  esac
done
bench="$build/bin/saga-recovery-bench"
[[ -x "$bench" ]] || { echo "recovery-compare: $bench not built" >&2; exit 1; }

# median and range of whitespace-separated numbers
summary() {
  tr ' ' '\n' | grep -v '^$' | sort -n | awk '{v[NR]=$1} END {
    if (NR == 0) { print "-"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%d ms (%d-%d, %d runs)", m, v[1], v[NR], NR }'
}

run_config() {
  local label=$1; shift
  local totals="" takeovers=""
  for ((i = 1; i <= runs; i++)); do
    out=$("$bench" --sagas "$sagas" "$@" 2>&1) || { echo "$out" >&2; echo "recovery-compare: a run failed ($label)" >&2; exit 1; }
    totals+=" $(sed -n 's/.*TOTAL .*: \([0-9]*\) ms (.*/\1/p' <<<"$out")"
    takeovers+=" $(sed -n 's/.*takeover .*: *\([0-9]*\) ms/\1/p;s/.*detection .*: *\([0-9]*\) ms/\1/p' <<<"$out" | head -1)"
  done
  printf '%-40s total %-32s takeover/detection %s\n' "$label" "$(summary <<<"$totals")" \
    "$(summary <<<"$takeovers")"
}

echo "saga-recovery-bench, $sagas sagas in flight, $runs runs each (median (min-max)):"
run_config "redis, lease 1000 ms, SIGKILL" --membership redis --lease-ms 1000
run_config "redis, lease 500 ms, SIGKILL" --membership redis --lease-ms 500
run_config "redis, lease 1000 ms, SIGTERM" --membership redis --lease-ms 1000 --graceful
run_config "kafka, session 6000 ms, SIGKILL" --membership kafka
