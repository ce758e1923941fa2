#!/usr/bin/env bash
# Configures and builds the project. Usage: scripts/build.sh [--sanitize]
# Build trees: build/ (normal) and build-sanitize/ (ASan+UBSan).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/build"; flags=()
if [[ "${1:-}" == "--sanitize" ]]; then
  dir="$root/build-sanitize"; flags+=(-DSAGA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
fi
cmake -S "$root" -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)" -- --no-print-directory
echo "$dir"
