#!/usr/bin/env bash
# Mutation testing of the simulation (docs/simulation.md, "Mutants"): puts deliberate bugs
# into the real coordinator code, one at a time, in a temporary copy of the source tree
# (never in the tree itself), builds saga-sim on each and runs it over up to SEEDS seeds.
# Prints, for each mutant, the first seed that caught it and the violation; exits 1 when
# a mutant survives (the simulation cannot see that bug), 2 when one no longer applies
# (the code it mutates changed: update the mutant).
#
# Usage: scripts/mutants.sh [--seeds N] [--keep] [NAME...]   (default: every mutant, 2000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seeds=2000 keep=0 only=()
while (($#)); do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) only+=("$1"); shift ;;
  esac
done

# Each mutant: NAME, FILE, the exact text to replace (it must occur once), the new text.
mutants=(
  "fenced-as-ok" coordinator/engine.c
  $'        switch (c->results[i]) {'
  $'        switch (c->results[i] == STORE_FENCED ? STORE_OK : c->results[i]) {'

  "compensate-forward" coordinator/machine.c
  $'    for (int g = s->group; g >= 0; g--) {'
  $'    for (int g = 0; g <= s->group; g++) {'

  "offsets-before-confirm" coordinator/engine.c
  $'        p->sent_first_offset = p->turn_first_offset;\n        p->sent_next_offset = p->turn_next_offset;\n        p->turn_first_offset = -1;\n    }'
  $'        p->sent_first_offset = -1;\n        p->sent_next_offset = p->turn_next_offset;\n    }\n    store_offsets(c, false);'

  "ack-dropped" coordinator/engine.c
  $'(void)c->store.queue_outbox_acks(c->store.self, p->id, p->epoch, c->ack_ids, n);'
  $'(void)c->store.queue_outbox_acks(c->store.self, p->id, p->epoch, c->ack_ids, n ? n - 1 : 0);'

  "timer-lost-on-reload" coordinator/engine.c
  $'        lc->failed++;\n        return;\n    }\n    (void)timers_set(&lc->c->timers, s, machine_next_timer(s));'
  $'        lc->failed++;\n        return;\n    }'

  "no-timer-gate" coordinator/engine.c
  $'    if (p->gate_time >= due && p->read_next >= 0 && p->read_next >= p->gate_offset) {'
  $'    if (true) {'

  "no-seek-after-reload" coordinator/engine.c
  $'        if (partition_load(c, p, p->epoch == 0) == 0) {\n            seek_to_confirmed(c, p);'
  $'        if (partition_load(c, p, p->epoch == 0) == 0) {\n            (void)seek_to_confirmed;'

  "reply-reaches-phantom" coordinator/engine.c
  $'    if (s && s->creating) {\n        /* Its start'
  $'    if (s && s->creating && false) {\n        /* Its start'

  "skip-any-version" coordinator/engine.c
  $'    if (s && m->expected_version && m->expected_version != s->version) {'
  $'    if (s && m->expected_version && m->expected_version != s->version && false) {'

  # membership=redis (membership.c, run by half the seeds)
  "renewal-never-lost" coordinator/membership.c
  $'        if (!m->held[i])\n            m->scratch_parts[lost++] = m->scratch_parts[i];'
  $'        if (!m->held[i] && false)\n            m->scratch_parts[lost++] = m->scratch_parts[i];'

  "hand-over-as-revoke" coordinator/membership.c
  $'    m->ev.give_up(m->ev.opaque, m->scratch_parts, n, clean);'
  $'    m->ev.give_up(m->ev.opaque, m->scratch_parts, n, false);'

  "no-expiry-on-failed-beat" coordinator/membership.c
  $'            give_up(m, n, false); /* expired by now, whatever Redis says later */'
  $'            (void)0; /* expired by now, whatever Redis says later */'

  # the model's transition-script lease check (the real one is Lua: it is mutated here,
  # in the model the simulation runs, to see what rests on it)
  "lease-check-off" tests/sim/simstore.c
  $'                  (leased && (!lease_live(db, p) || p->lease != b->epoch));'
  $'                  (leased && false && (!lease_live(db, p) || p->lease != b->epoch));'
)

work=$(mktemp -d "${TMPDIR:-/tmp}/mutants.XXXXXX")
cleanup() { if ((keep)); then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
src="$work/src" build="$work/build"
mkdir -p "$src"
git -C "$root" ls-files -z --cached --others --exclude-standard |
  (cd "$root" && tar --null -T - -cf -) | tar -C "$src" -xf -
echo "mutants: copy of $root in $src; configuring"
nice cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

# replace FILE OLD NEW: exactly one occurrence of OLD becomes NEW.
replace() {
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"{text.count(old)} occurrences of the text to mutate in {path}")
open(path, "w").write(text.replace(old, new))
EOF
}

survived=0 stale=0
printf '%-24s %s\n' "MUTANT" "FIRST SEED CATCHING IT / VIOLATION"
for ((i = 0; i < ${#mutants[@]}; i += 4)); do
  name=${mutants[i]} file=${mutants[i+1]} old=${mutants[i+2]} new=${mutants[i+3]}
  if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then continue; fi
  cp "$root/$file" "$src/$file"
  if ! replace "$src/$file" "$old" "$new"; then
    printf '%-24s DOES NOT APPLY to %s\n' "$name" "$file"; stale=1; continue
  fi
  if ! nice cmake --build "$build" --target saga-sim -j2 >"$work/$name.build" 2>&1; then
    printf '%-24s DOES NOT BUILD (%s)\n' "$name" "$work/$name.build"; stale=1
    cp "$root/$file" "$src/$file"; continue
  fi
  cp "$root/$file" "$src/$file"
  out=$(nice "$build/bin/saga-sim" --seeds "$seeds" --first || true)
  seed=$(sed -n 's/^VIOLATION seed \([0-9]*\):.*/\1/p' <<<"$out" | head -1)
  if [[ -n $seed ]]; then
    what=$(grep -A1 '^VIOLATION seed' <<<"$out" | sed -n '2s/^ *//p')
    printf '%-24s seed %-5s %s\n' "$name" "$seed" "${what:0:150}"
  else
    printf '%-24s SURVIVED %s seeds\n' "$name" "$seeds"; survived=1
  fi
done
((stale)) && exit 2
((survived)) && exit 1
echo "every mutant was caught"
