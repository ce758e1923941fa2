#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/build.sh, clang), runs each for a bounded time, then
# replays every regression input (tests/fuzz-regressions/<target>/). Exits non-zero when
# any run or replay found a crash, leak, sanitizer report, timeout or broken invariant.
# Usage: scripts/fuzz.sh [TARGET...]   (targets: definition template protocol saga_fields)
# Environment: FUZZ_SECONDS per target (default 20), FUZZ_MAX_LEN (16384), FUZZ_TIMEOUT
# seconds per input (5), FUZZ_RSS_MB (1024), FUZZ_BUILD_DIR (build-fuzz/).
# New corpus inputs go to FUZZ_BUILD_DIR/corpus/<target> (not committed); crash inputs to
# FUZZ_BUILD_DIR/artifacts/<target>/. docs/fuzzing.md says how to keep them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-20}
max_len=${FUZZ_MAX_LEN:-16384}
timeout=${FUZZ_TIMEOUT:-5}
rss=${FUZZ_RSS_MB:-1024}

"$root/fuzz/build.sh" "$dir" >/dev/null
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in "$root"/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    targets+=("${name#fuzz_}")
  done
fi

status=0
for t in "${targets[@]}"; do
  bin=$dir/fuzz_$t
  [[ -x $bin ]] || { echo "fuzz: no target $t" >&2; exit 2; }
  mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
  log=$dir/$t.log
  rc=0
  # The first corpus folder receives new inputs; the committed seeds are only read.
  "$bin" -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss" \
    -max_len="$max_len" -dict="$root/fuzz/saga.dict" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/$t/" "$dir/corpus/$t" "$root/tests/fuzz-corpus/$t" \
    >"$log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  eps=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  printf 'fuzz %-12s %10s execs in %ss (%s/s)  cov %s  ft %s  corpus %s  %s\n' "$t" \
    "${execs:-?}" "$seconds" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (rc $rc, log $log)")"
  if [[ $rc -ne 0 ]]; then
    status=1
    grep -E 'ERROR|SUMMARY|runtime error|invariant|Test unit written' "$log" | head -n 20 >&2
  fi
done

for t in "${targets[@]}"; do
  reg=$root/tests/fuzz-regressions/$t
  files=()
  [[ -d $reg ]] && while IFS= read -r f; do files+=("$f"); done \
    < <(find "$reg" -type f ! -name '.*' | sort)
  [[ ${#files[@]} -eq 0 ]] && continue
  rc=0
  "$dir/fuzz_$t" -timeout="$timeout" -rss_limit_mb="$rss" "${files[@]}" \
    >"$dir/$t.regressions.log" 2>&1 || rc=$?
  printf 'replay %-12s %3d regression inputs  %s\n' "$t" "${#files[@]}" \
    "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (log $dir/$t.regressions.log)")"
  [[ $rc -eq 0 ]] || status=1
done
exit $status
