#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined), outside the
# CMake build, which stays gcc-only. Usage: fuzz/build.sh [OUT_DIR]   (default build-fuzz/)
# Produces OUT_DIR/fuzz_<name> for each fuzz/fuzz_<name>.c and OUT_DIR/gen_saga_corpus,
# which writes the seed corpus of fuzz_saga_fields. Prints OUT_DIR last.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-fuzz}
cc=${FUZZ_CC:-clang}
mkdir -p "$out/obj"

# The modules the targets reach: no Kafka, no Redis, no I/O.
core=(definition jschema catalogue template suggest sha256 protocol saga jsonw machine)
common=(-g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter
        -fno-omit-frame-pointer -I"$root/coordinator" $(pkg-config --cflags jansson))
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
libs=($(pkg-config --libs jansson) -lm)

objs=()
for m in "${core[@]}"; do
  # The coordinator itself is instrumented for coverage; the harness entry is linked
  # with the fuzzer's main.
  "$cc" "${common[@]}" "${san[@]}" -fsanitize=fuzzer-no-link \
    -c "$root/coordinator/$m.c" -o "$out/obj/$m.o"
  objs+=("$out/obj/$m.o")
done
for src in "$root"/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  "$cc" "${common[@]}" "${san[@]}" -fsanitize=fuzzer "$src" "${objs[@]}" "${libs[@]}" \
    -o "$out/$name"
done
core_src=()
for m in "${core[@]}"; do core_src+=("$root/coordinator/$m.c"); done
"$cc" "${common[@]}" "${san[@]}" "$root/fuzz/gen_saga_corpus.c" "${core_src[@]}" "${libs[@]}" \
  -o "$out/gen_saga_corpus"
echo "$out"
