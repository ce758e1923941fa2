#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs, only those that are missing.
# Usage: scripts/deps.sh [--test|--package]   (--test: also what the test suite needs;
# --package: also what building and checking the .debs needs, scripts/package.sh)
# Used by scripts/demo.sh, scripts/test.sh and .ci/run. Needs root or sudo for apt-get.
set -euo pipefail

# What building and the demo need.
PACKAGES=(
  build-essential cmake pkg-config
  librdkafka-dev libjansson-dev libhiredis-dev libcriterion-dev libmicrohttpd-dev
  redis-server kcat python3
)
# What the whole test suite needs besides (scripts/deps.sh --test).
TEST_PACKAGES=(
  clang libclang-rt-14-dev  # libFuzzer harnesses (scripts/fuzz.sh)
  python3-confluent-kafka   # the Python participant and its tests
  chromium                  # headless browser of tests/test_dashboard.c (playwright-core)
  docker-compose            # validates docker/docker-compose.yml in tests/test_docker.c
  python3-jsonschema        # tests/test_schema.c: docs/schemas/definition.json vs the loader
  prometheus                # promtool: checks and unit-tests docker/prometheus/ (tests/test_prometheus.c)
)
# What scripts/package.sh and checking its packages need besides (scripts/deps.sh --package).
PACKAGE_PACKAGES=(
  dpkg-dev fakeroot         # CPack's DEB generator: dpkg-shlibdeps, root-owned files
  lintian                   # checks the packages
  systemd                   # systemd-analyze verify of the units
)
if [[ "${1:-}" == "--package" ]]; then
  PACKAGES+=("${PACKAGE_PACKAGES[@]}")
fi
if [[ "${1:-}" == "--test" ]]; then
  PACKAGES+=("${TEST_PACKAGES[@]}")
  # The dashboard test drives Chromium with playwright-core from npm: Node.js and npm,
  # from Debian unless the machine already has them (Debian 12: Node 18 and npm 9, which
  # tests/browser/package.json is pinned for; docs/testing.md).
  command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
  command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
fi
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
