#!/usr/bin/env python3
"""demo_report.py - the demo's summary, read back from Redis through the documented keys
(docs/redis.md) and the example services' ledgers (docs/participants.md).

Usage: demo_report.py [--wait SECONDS] ID|INPUT|STATUS|NOTE ...   (REDIS_PORT in the environment)
Waits until every saga is finished (completed, compensated or stuck), then prints each
saga's status and step trail and the ledgers' balances. Exits 1 if a saga did not finish
or did not end in the STATUS expected of it.
Only the standard library: redis-cli does the talking."""
import json
import os
import subprocess
import sys
import time

PORT = os.environ.get("REDIS_PORT", "6379")


def redis(*args):
    out = subprocess.run(["redis-cli", "-p", PORT, "--raw", *args], capture_output=True,
                         text=True, check=True).stdout
    return out[:-1].split("\n") if out else []


def partitions():
    meta = redis("HGET", "saga:meta", "partitions")
    return int(meta[0]) if meta and meta[0] else 4


def saga(sid):
    for p in range(partitions()):
        flat = redis("HGETALL", f"saga:{{p{p}}}:saga:{sid}")
        if len(flat) >= 2:
            # values never hold newlines: they are compact JSON or plain words
            return dict(zip(flat[0::2], flat[1::2]))
    return None


def trail(s):
    marks = {"done": "ok", "failed": "FAILED", "timed_out": "TIMED OUT", "compensated": "undone",
             "comp_failed": "UNDO FAILED", "pending": "-", "skipped": "skipped"}
    parts = []
    for st in json.loads(s["steps"]):
        mark = marks.get(st["phase"], st["phase"])
        if st["phase"] == "compensated":
            mark = "timed out, undone" if st.get("action_timed_out") else "ok, undone"
        parts.append(f"{st['name']}: {mark}")
    return " -> ".join(parts)


def main():
    args = sys.argv[1:]
    wait = 30.0
    if args[:1] == ["--wait"]:
        wait = float(args[1])
        args = args[2:]
    entries, seen = [], set()
    expected = {}
    for a in args:
        sid, _, status, note = a.split("|", 3)
        entries.append((sid, note))
        expected[sid] = status
    deadline = time.time() + wait
    ids = sorted({sid for sid, _ in entries})
    while True:
        states = {sid: saga(sid) for sid in ids}
        done = all(s and s["status"] in ("completed", "compensated", "stuck")
                   for s in states.values())
        if done or time.time() > deadline:
            break
        time.sleep(0.2)

    print()
    print(f"{'saga':<11} {'status':<12} {'expected':<36} steps")
    print(f"{'-' * 11} {'-' * 12} {'-' * 36} {'-' * 40}")
    for sid, note in entries:
        if sid in seen:
            print(f"{sid:<11} {'(same id)':<12} {note}")
            continue
        seen.add(sid)
        s = states[sid]
        if not s:
            print(f"{sid:<11} {'MISSING':<12} {note}")
            continue
        print(f"{sid:<11} {s['status']:<12} {note:<36} {trail(s)}")
        if s.get("error"):
            print(f"{'':<11} {'':<12} {'':<36} why: {s['error']}")

    print()
    print("Counters (saga:{pN}:counters, summed over partitions):")
    totals = {}
    for p in range(partitions()):
        flat = redis("HGETALL", f"saga:{{p{p}}}:counters")
        for k, v in zip(flat[0::2], flat[1::2]):
            totals[k] = totals.get(k, 0) + int(v)
    for k in sorted(totals):
        if ":active:" not in k:
            print(f"  {k:<34} {totals[k]}")

    print()
    print("Ledgers (every effect and its undoing; compensated orders net to zero):")
    for key in sorted(redis("--scan", "--pattern", "ledger:*:balance*")):
        flat = redis("HGETALL", key)
        pairs = ", ".join(f"{k}={v}" for k, v in zip(flat[0::2], flat[1::2]))
        print(f"  {key:<34} {pairs or '(empty)'}")
    unfinished = [sid for sid, s in states.items()
                  if not s or s["status"] not in ("completed", "compensated", "stuck")]
    if unfinished:
        print(f"\ndemo: not finished in {wait:.0f} s: {', '.join(unfinished)}", file=sys.stderr)
        return 1
    wrong = [f"{sid} is {s['status']}, expected {expected[sid]}" for sid, s in states.items()
             if s["status"] != expected[sid]]
    if wrong:
        print(f"\ndemo: not as expected: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    print(f"\n{len(ids)} sagas finished: "
          f"{sum(1 for s in states.values() if s['status'] == 'completed')} completed, "
          f"{sum(1 for s in states.values() if s['status'] == 'compensated')} compensated, "
          f"{sum(1 for s in states.values() if s['status'] == 'stuck')} stuck.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
