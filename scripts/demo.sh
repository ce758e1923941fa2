#!/usr/bin/env bash
# The demo: installs what is missing, builds, then starts the embedded Kafka broker,
# redis-server, one coordinator and the example services (inventory, payment, shipping)
# on free loopback ports; prints the coordinator's dashboard address; runs a batch of
# order sagas of which some complete, some fail at each step and compensate and one times
# out; prints what Redis says about each saga and the services' ledgers; stops everything
# it started, also on Ctrl-C or failure.
# Usage: scripts/demo.sh [--keep] [--stay]
#   --keep  leave the run folder with logs behind
#   --stay  after the report, keep the system running and start an order saga every
#           second (most complete, some compensate) to watch on the dashboard, until
#           Ctrl-C (SIGINT) or SIGTERM; then stop everything as usual
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=0 stay=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    --stay) stay=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument \"$arg\" (--keep, --stay)" >&2; exit 2 ;;
  esac
done
echo "== installing missing Debian packages and building (the first run takes a few minutes)"
"$root/scripts/deps.sh"
build=$("$root/scripts/build.sh" | tail -n 1)
bin="$build/bin"

run=$(mktemp -d /tmp/saga-demo-XXXXXX)
pids=()
cleanup() { # newest first: the services and coordinator leave their groups while Kafka runs
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $keep == 1 ]]; then echo "logs kept in $run"; else rm -rf "$run"; fi
}
# Ctrl-C or SIGTERM end the script (bash runs the trap once the command in the foreground
# returns); the EXIT trap then stops everything, exactly once.
trap cleanup EXIT
trap 'echo; echo "== stopping"; exit 130' INT
trap 'echo "== stopping"; exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "demo: timed out waiting for $what" >&2; exit 1; fi
    sleep 0.1
  done
}

echo "== starting redis-server, the embedded Kafka broker, the coordinator and three services"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$run" --appendonly yes \
  --save "" --logfile "$run/redis.log" --daemonize no &
pids+=($!)
wait_for 10 "redis-server" redis-cli -p "$redis_port" ping

"$bin/saga-devbroker" --brokers 1 --bootstrap-file "$run/bootstrap" \
  --topics saga.input:4,saga.outcomes:1,saga.deadletter:1,inventory.commands:2,payment.commands:2,shipping.commands:2,accounts.commands:1,travel.commands:1 \
  >"$run/devbroker.out" 2>"$run/devbroker.log" &
pids+=($!)
wait_for 10 "the broker" test -s "$run/bootstrap"
bootstrap=$(cat "$run/bootstrap")

export SAGA_BOOTSTRAP_SERVERS="$bootstrap" SAGA_REDIS_PORT="$redis_port"
# Its HTTP server (dashboard, /metrics) on a free loopback port: no token needed there.
http_port=$(free_port)
dashboard="http://127.0.0.1:$http_port/"
"$bin/saga-coordinator" --definitions "$root/sagas" --http_listen="127.0.0.1:$http_port" \
  >"$run/coordinator.log" 2>&1 &
pids+=($!)
"$bin/inventory-service" --bootstrap "$bootstrap" --redis-port "$redis_port" \
  --fail-on sku=OUT-OF-STOCK >"$run/inventory.log" 2>&1 &
pids+=($!)
"$bin/payment-service" --bootstrap "$bootstrap" --redis-port "$redis_port" \
  --fail-on amount=9999 >"$run/payment.log" 2>&1 &
pids+=($!)
"$bin/shipping-service" --bootstrap "$bootstrap" --redis-port "$redis_port" \
  --fail-on address=Nowhere --delay-on "address=Slow Lane:8000" >"$run/shipping.log" 2>&1 &
pids+=($!)
owned() { for p in 0 1 2 3; do [[ $(redis-cli -p "$redis_port" EXISTS "saga:{p$p}:owner") == 1 ]] || return 1; done; }
wait_for 30 "the coordinator to own the input partitions" owned
healthy() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "${dashboard}healthz"; }
wait_for 10 "the coordinator's HTTP server" healthy
echo "== the coordinator's dashboard: $dashboard (metrics: ${dashboard}metrics)"

echo "== starting 8 order sagas"
sagas=(
  "order-1001|{\"order_id\":\"1001\",\"sku\":\"BOOK-1\",\"qty\":1,\"amount\":12.5,\"address\":\"1 Main St\"}|completed|completes"
  "order-1002|{\"order_id\":\"1002\",\"sku\":\"MUG-7\",\"qty\":3,\"amount\":27,\"address\":\"2 High St\"}|completed|completes"
  "order-1003|{\"order_id\":\"1003\",\"sku\":\"PEN-2\",\"qty\":10,\"amount\":8.9,\"address\":\"3 Low Rd\"}|completed|completes"
  "order-1004|{\"order_id\":\"1004\",\"sku\":\"OUT-OF-STOCK\",\"qty\":1,\"amount\":5,\"address\":\"4 Elm St\"}|compensated|inventory refuses: nothing to undo"
  "order-1005|{\"order_id\":\"1005\",\"sku\":\"LAMP-3\",\"qty\":2,\"amount\":9999,\"address\":\"5 Oak St\"}|compensated|card declined: stock released"
  "order-1006|{\"order_id\":\"1006\",\"sku\":\"DESK-9\",\"qty\":1,\"amount\":150,\"address\":\"Nowhere\"}|compensated|no shipping: refund, release"
  "order-1007|{\"order_id\":\"1007\",\"sku\":\"CHAIR-4\",\"qty\":4,\"amount\":80,\"address\":\"Slow Lane\"}|compensated|shipping times out: all undone"
  "order-1001|{\"order_id\":\"1001\",\"sku\":\"BOOK-1\",\"qty\":1,\"amount\":12.5,\"address\":\"1 Main St\"}|completed|the same start again: one saga"
)
start_sagas() { # start_sagas ENTRY... (id|input|expected status|note)
  for s in "$@"; do
    IFS='|' read -r id input _ <<<"$s"
    printf '%s|{"type":"start","saga_id":"%s","saga":"order-placement","input":%s}\n' "$id" "$id" "$input"
  done | kcat -P -b "$bootstrap" -t saga.input -K '|' -X partitioner=murmur2_random
}
finished() { # finished ID...: each saga's status, in whichever partition it is, is final
  for id in "$@"; do
    local st=""
    for p in 0 1 2 3; do
      st=$(redis-cli -p "$redis_port" HGET "saga:{p$p}:saga:$id" status)
      [[ -n $st ]] && break
    done
    [[ $st == completed || $st == compensated ]] || return 1
  done
}
# The slow-lane order goes last: the shipping service sleeps 8 s in its handler, and every
# shipping command queued behind it on its partition would wait (and time out) too.
start_sagas "${sagas[@]:0:6}"
wait_for 30 "the first six sagas to finish" finished order-1001 order-1002 order-1003 \
  order-1004 order-1005 order-1006
start_sagas "${sagas[@]:6}"

echo "== waiting for every saga to finish (one waits for a 5 s step timeout)"
export REDIS_PORT=$redis_port
python3 "$root/scripts/demo_report.py" --wait 45 "${sagas[@]}"

if [[ $stay == 1 ]]; then
  echo
  echo "== --stay: the system keeps running and starts an order saga every second"
  echo "   dashboard: $dashboard    Ctrl-C stops everything"
  # Most complete; every 4th is declined by the payment service and every 7th is out of
  # stock: both compensate.
  n=0
  while :; do
    n=$((n + 1))
    sku="ITEM-$((n % 10))" amount=$((10 + n % 90))
    ((n % 4 == 0)) && amount=9999
    ((n % 7 == 0)) && sku=OUT-OF-STOCK
    id="live-$$-$n"
    start_sagas "$id|{\"order_id\":\"$n\",\"sku\":\"$sku\",\"qty\":1,\"amount\":$amount,\"address\":\"$n Demo St\"}"
    ((n % 30 == 0)) && echo "   $n sagas started (dashboard: $dashboard)"
    sleep 1
  done
fi
