#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs, only those that are missing.
# Used by scripts/demo.sh, scripts/test.sh and .ci/run. Needs root or sudo for apt-get.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  librdkafka-dev libjansson-dev libhiredis-dev libcriterion-dev libmicrohttpd-dev
  redis-server kcat
  clang libclang-rt-14-dev
  python3 python3-confluent-kafka
  chromium  # headless browser of tests/test_dashboard.c (with node + npm: playwright-core)
)
if [[ "${SAGA_DEPS_EXTRA:-}" != "" ]]; then
  read -r -a extra <<<"$SAGA_DEPS_EXTRA"
  PACKAGES+=("${extra[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a system redis-server on 6379; we run our own on free ports.
