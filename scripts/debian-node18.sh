#!/usr/bin/env bash
# Fetches Debian 12's own Node.js 18 (packages nodejs and libnode108) and unpacks it into a
# folder, without installing it: the machine's node stays what it is. Prints the path of a
# `node` wrapper that runs it; give that to the dashboard test to check the suite with the
# Node a fresh Debian 12 has (docs/testing.md):
#
#   SAGA_NODE=$(bash scripts/debian-node18.sh) ctest -R test_dashboard --output-on-failure
#
# Usage: scripts/debian-node18.sh [DIR]   (default ~/.cache/saga-debian-node18; reused when
# present. Not under /tmp: temp-folder cleaners would take it away between runs)
# Debian's node loads three of its builtins (cjs-module-lexer, acorn, undici) from
# /usr/share/nodejs, so their Debian packages are installed with apt when missing: they are
# JavaScript files only and do not replace or change another node. Shared libraries it
# needs (libuv1, libicu72, libc-ares2, ...) are installed with apt when missing too.
# Needs Debian 12 (bookworm) sources, and root or sudo for apt-get.
set -euo pipefail
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/saga-debian-node18}
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

if [[ ! -x "$dir/root/usr/bin/node" ]]; then
  mkdir -p "$dir/debs"
  # The candidate of Debian's own archive, not another repository's nodejs (e.g. NodeSource).
  version=$(apt-cache madison libnode108 | awk '/debian/ {print $3; exit}')
  if [[ -z "$version" ]]; then
    $SUDO apt-get update -qq
    version=$(apt-cache madison libnode108 | awk '/debian/ {print $3; exit}')
  fi
  [[ -n "$version" ]] || { echo "debian-node18: no libnode108 in the apt sources" >&2; exit 1; }
  # apt-get download writes into the current folder; _apt may not write there: fine as root.
  (cd "$dir/debs" && apt-get download -qq "nodejs=$version" "libnode108=$version" 2>/dev/null)
  mkdir -p "$dir/root"
  for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
fi

# What libnode108 depends on, from Debian: install the missing ones.
needed=()
for dep in $(apt-cache depends libnode108 | awk '/Depends:/ && $2 !~ /^</ {print $2}' | sort -u); do
  dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'install ok installed' || needed+=("$dep")
done
if [[ ${#needed[@]} -gt 0 ]]; then
  echo "debian-node18: installing ${needed[*]}" >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi

cat >"$dir/node" <<EOF
#!/bin/sh
# Debian 12's Node 18 unpacked in $dir/root (scripts/debian-node18.sh).
LD_LIBRARY_PATH=$dir/root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec $dir/root/usr/bin/node "\$@"
EOF
chmod +x "$dir/node"
"$dir/node" --version >&2
echo "$dir/node"
