#!/usr/bin/env bash
# Builds the Debian packages with CPack: saga-coordinator, libsagaparticipant2 and
# libsagaparticipant-dev (docs/install.md). Usage: scripts/package.sh [OUT_DIR]
# A Release build under /usr in build-pkg/ (without the tests); the .debs go to OUT_DIR
# (default build-pkg/). Needs dpkg-dev (dpkg-shlibdeps) and fakeroot: scripts/deps.sh --package.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/build-pkg"
out="${1:-$dir}"
# Debian's hardening flags (fortify, stack protector, PIE, full RELRO with bindnow).
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
cflags="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS)"
ldflags="$(dpkg-buildflags --get LDFLAGS)"
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DSAGA_TESTS=OFF -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" \
  -DCMAKE_SHARED_LINKER_FLAGS="$ldflags" >/dev/null
cmake --build "$dir" -j"$(nproc)" -- --no-print-directory >/dev/null
(cd "$dir" && fakeroot cpack -G DEB -B "$out" >/dev/null)
ls "$out"/*.deb
