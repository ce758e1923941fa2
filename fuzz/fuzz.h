/* fuzz.h - the fuzz targets: one entry point per input decoder of the coordinator.
 *
 * Each fuzz/fuzz_<name>.c defines fuzz_<name>_one() and, unless FUZZ_NO_ENTRY is defined,
 * the libFuzzer entry LLVMFuzzerTestOneInput() that calls it. fuzz/build.sh links each
 * file with -fsanitize=fuzzer into its own binary; tests/test_fuzz_regressions.c includes
 * all four with FUZZ_NO_ENTRY and replays the corpora and regression inputs through the
 * same functions in the normal (gcc) build.
 *
 * An entry point returns 0 and never keeps anything: every crash, leak or sanitizer
 * report is a finding. A broken invariant (a decoder that says yes but hands back
 * something invalid) calls fuzz_fail(), which aborts with the reason. */
#ifndef SAGA_FUZZ_H
#define SAGA_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int fuzz_definition_one(const uint8_t *data, size_t size);
int fuzz_template_one(const uint8_t *data, size_t size);
int fuzz_protocol_one(const uint8_t *data, size_t size);
int fuzz_saga_fields_one(const uint8_t *data, size_t size);

#ifndef FUZZ_FAIL_DEFINED
#define FUZZ_FAIL_DEFINED
/* Aborts with what went wrong: libFuzzer saves the input, Criterion reports a crash. */
#define fuzz_fail(...)                                                                    \
    do {                                                                                  \
        fprintf(stderr, "fuzz invariant broken at %s:%d: ", __FILE__, __LINE__);          \
        fprintf(stderr, __VA_ARGS__);                                                     \
        fputc('\n', stderr);                                                              \
        abort();                                                                          \
    } while (0)
#endif

#endif
