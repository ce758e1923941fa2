#!/usr/bin/env bash
# The long variant of tests/test_redis_cluster.c (docs/high-availability.md, "Redis
# Cluster"): three primaries with a replica each, two coordinators and the example
# services on the cluster; the busiest partition's slot migrated a third of the way in,
# the primary serving the most partitions SIGKILLed two thirds in. RUNS runs of SAGAS
# sagas each; prints every run's figures (the test's "redis cluster: ..." line: the
# migration's time, the promotion's, how long the coordinators' store waited, when all
# ended, ledger violations) and exits non-zero when a run failed; a failed run's output and
# its processes' logs are kept in /tmp (scripts/soak-lib.sh).
# Usage: scripts/cluster-soak.sh [RUNS [SAGAS]]   (default 3 1500). Build first
# (scripts/build.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
sagas=${2:-1500}
source "$root/scripts/soak-lib.sh"
soak_setup cluster-soak "$root/build" test_redis_cluster
export SAGA_RCLUSTER_SAGAS="$sagas"
failed=0
for ((i = 1; i <= runs; i++)); do
  soak_run "run $i, $sagas sagas" '^redis cluster: ' "$bin" --jobs 1 || failed=1
done
exit $failed
