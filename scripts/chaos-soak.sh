#!/usr/bin/env bash
# The long runs of tests/test_chaos.c (docs/high-availability.md, "The chaos test"): each
# chosen run of the chaos test RUNS times, with SAGAS sagas and FAULT_MS ms of faults
# (SAGA_CHAOS_SAGAS, SAGA_CHAOS_FAULT_MS; a new seed each time unless SAGA_CHAOS_SEED is
# set). Prints the figures of every run (the test's "chaos: seed N: ..." line: sagas and
# outcomes, kills, freezes, Redis faults and promotions, versions lost, ledger violations,
# drain and total time) and exits non-zero when a run failed, after the tail of its output;
# a failed run's whole output and its processes' logs (coordinators, services, redis-server,
# Sentinels) are kept in /tmp and their paths printed.
# Usage: scripts/chaos-soak.sh [RUNS [SAGAS [FAULT_MS [VARIANTS]]]]
#   default: 3 2500 60000 "leases group redis-failover"
#   leases: membership=redis; group: membership=kafka; redis-failover: membership=redis on
#   a primary, two replicas and three Sentinels, with SIGKILL/SIGSTOP of the primary.
# SAGA_BUILD_DIR picks the build (default build/; build-sanitize/ for ASan+UBSan: set
# ASAN_OPTIONS/UBSAN_OPTIONS as scripts/test.sh --sanitize does). Build first
# (scripts/build.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
sagas=${2:-2500}
fault_ms=${3:-60000}
variants=${4:-"leases group redis-failover"}
source "$root/scripts/soak-lib.sh"
soak_setup chaos-soak "${SAGA_BUILD_DIR:-$root/build}" test_chaos
export SAGA_CHAOS_SAGAS="$sagas" SAGA_CHAOS_FAULT_MS="$fault_ms"
failed=0
for variant in $variants; do
  case $variant in
    leases) filter='chaos/*_with_leases' ;;
    group) filter='chaos/*_with_the_group_protocol' ;;
    redis-failover) filter='chaos/sagas_survive_redis_failovers_with_sentinels' ;;
    *) echo "chaos-soak: unknown variant $variant (leases, group, redis-failover)" >&2; exit 2 ;;
  esac
  for ((i = 1; i <= runs; i++)); do
    soak_run "run $i, $variant, $sagas sagas, $fault_ms ms of faults" '^chaos: seed [0-9]*: ' \
      "$bin" --jobs 1 --filter "$filter" || failed=1
  done
done
exit $failed
