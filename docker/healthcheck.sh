#!/usr/bin/env bash
# saga-healthcheck - the containers' health checks, with nothing but bash (no curl in the
# runtime image). Installed as /usr/local/bin/saga-healthcheck by docker/Dockerfile.
#
#   saga-healthcheck http [PATH]      GET PATH (default /healthz) from the coordinator's
#                                     http_listen ($SAGA_HTTP_LISTEN, HOST:PORT or
#                                     [V6]:PORT; a wildcard host is asked on loopback).
#                                     Healthy when the answer is HTTP 200.
#   saga-healthcheck connected PORT.. healthy when this container has an established TCP
#                                     connection to a remote PORT, for every PORT given
#                                     (the example services: Kafka 9092 and Redis 6379;
#                                     they have no HTTP endpoint).
# Exit 0 healthy, 1 unhealthy (with one line on stderr saying why), 2 usage.
set -u
trap '' PIPE # a peer that closed early is an answer (a failed write), not a kill

fail() { echo "saga-healthcheck: $*" >&2; exit 1; }

check_http() {
  local path=${1:-/healthz} listen=${SAGA_HTTP_LISTEN-127.0.0.1:8080} host port
  [[ -n "$listen" ]] || fail "http_listen is empty: the HTTP server is off"
  if [[ "$listen" =~ ^\[([^]]*)\]:([0-9]+)$ ]]; then
    host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}
  elif [[ "$listen" =~ ^([^:]*):([0-9]+)$ ]]; then
    host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}
  else
    fail "cannot parse http_listen \"$listen\" (HOST:PORT or [V6]:PORT)"
  fi
  [[ "$port" != 0 ]] || fail "http_listen \"$listen\" has port 0: no fixed port to ask"
  case "$host" in
    ""|0.0.0.0|"*") host=127.0.0.1 ;;
    ::) host=::1 ;;
  esac
  { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || fail "cannot connect to $host:$port"
  local request
  printf -v request 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path"
  printf '%s' "$request" >&3 2>/dev/null || fail "cannot send to $host:$port"
  local status=""
  IFS= read -r -t 4 status <&3 || true
  exec 3<&- 3>&-
  status=${status%$'\r'}
  [[ "$status" =~ ^HTTP/[0-9.]+\ 200([^0-9]|$) ]] ||
    fail "GET http://$host:$port$path: ${status:-no answer}"
}

check_connected() {
  [[ $# -gt 0 ]] || { echo "usage: saga-healthcheck connected PORT..." >&2; exit 2; }
  local want hex found _sl _local remote state _rest f
  for want in "$@"; do
    [[ "$want" =~ ^[0-9]+$ ]] || { echo "saga-healthcheck: bad port \"$want\"" >&2; exit 2; }
    printf -v hex '%04X' "$want"
    found=0
    for f in /proc/net/tcp /proc/net/tcp6; do
      [[ -r "$f" ]] || continue
      # sl local_address rem_address st ...; addresses are HEXIP:HEXPORT; st 01 = ESTABLISHED
      while read -r _sl _local remote state _rest; do
        if [[ "$state" == 01 && "${remote##*:}" == "$hex" ]]; then found=1; break; fi
      done <"$f"
      [[ $found == 1 ]] && break
    done
    [[ $found == 1 ]] || fail "no established connection to a remote port $want"
  done
}

case "${1:-}" in
  http) shift; check_http "$@" ;;
  connected) shift; check_connected "$@" ;;
  *) echo "usage: saga-healthcheck http [PATH] | connected PORT..." >&2; exit 2 ;;
esac
exit 0
