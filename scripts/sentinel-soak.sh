#!/usr/bin/env bash
# The long variants of tests/test_sentinel.c's failover (docs/high-availability.md, "Redis
# Sentinel"): SIGKILL of the Redis primary under load with three Sentinels, two replicas,
# two coordinators and the example services, RUNS times for each redis_sync_replicas value,
# with SAGAS sagas each (half before the kill). Prints the figures of every run (the
# test's "sentinel (...)" line: time until the Sentinels named a new primary, until every
# saga active at the kill moved again, until all finished; transitions lost; ledger
# violations) and exits non-zero when a run failed; a failed run's output and its
# processes' logs are kept in /tmp (scripts/soak-lib.sh).
# Usage: scripts/sentinel-soak.sh [RUNS [SAGAS [SYNC_VALUES]]]   (default 3 1000 "1 0")
# With redis_sync_replicas=0 a lost transition is reported, not failed: it is what the
# setting allows. Build first (scripts/build.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
sagas=${2:-1000}
syncs=${3:-"1 0"}
source "$root/scripts/soak-lib.sh"
soak_setup sentinel-soak "$root/build" test_sentinel
export SAGA_SENTINEL_SAGAS="$sagas"
failed=0
for sync in $syncs; do
  for ((i = 1; i <= runs; i++)); do
    SAGA_SENTINEL_SYNC_REPLICAS="$sync" soak_run "run $i, redis_sync_replicas=$sync, $sagas sagas" \
      '^sentinel (redis_sync_replicas' "$bin" --jobs 1 --filter 'sentinel_failover/*' || failed=1
  done
done
exit $failed
