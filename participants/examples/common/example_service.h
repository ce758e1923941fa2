/* example_service.h - what the example services (inventory, payment, shipping) share:
 * the command line and environment, failure injection, the Redis ledger, and a main()
 * that runs a participant until SIGTERM/SIGINT.
 *
 * A service declares its name and handlers (example_service_t) and calls
 * example_service_main. Flags and ledger keys: docs/participants.md. */
#ifndef EXAMPLE_SERVICE_H
#define EXAMPLE_SERVICE_H

#include "saga_participant.h"

#include <jansson.h>

#define EXAMPLE_MAX_HANDLERS 8

typedef struct example_handler {
    const char *command_type;     /* "inventory.reserve" */
    saga_kind_t kind;             /* what it is meant for: injection differs per kind */
    saga_handler_fn fn;           /* opaque is the example_service_t */
} example_handler_t;

typedef struct example_service {
    const char *name;             /* "inventory": ledger hash tag, group, topic defaults */
    const char *description;      /* one line for --help */
    example_handler_t handlers[EXAMPLE_MAX_HANDLERS];
    int nhandlers;
} example_service_t;

/* Parses flags and environment, runs the participant until SIGTERM/SIGINT. Returns the
 * process exit status: 0 after a clean stop (or --help), 1 on a runtime error, 2 on a
 * usage error. */
int example_service_main(const example_service_t *svc, int argc, char **argv);

/* Adds the ledger effects of one applied effect (or undoing) to res, all atomic with the
 * dedup record: an entry appended to ledger:{NAME}:entries, delta added to field of
 * ledger:{NAME}:balance, to the saga's field of ledger:{NAME}:by_saga, and 1 to effect's
 * field of ledger:{NAME}:counts. details (borrowed, may be NULL) is merged into the entry.
 * Returns 0, or -1 (then the caller fails the command, retryably). */
int example_ledger_add(saga_result_t *res, const example_service_t *svc, const saga_command_t *cmd,
                       const char *effect, const char *field, long long delta, json_t *details);

/* A stable id for what cmd does: prefix + 16 hex digits of a hash of its idempotency key
 * (so a re-run after a crash produces the same id). Writes into buf (size len). */
void example_id_make(char *buf, size_t len, const char *prefix, const saga_command_t *cmd);

/* Reads an integer from payload field name: a JSON integer or a string of digits.
 * Returns 0, or -1 when absent or not an integer. */
int example_payload_int(json_t *payload, const char *name, long long *out);

/* Reads a number (JSON number or numeric string). Returns 0 or -1. */
int example_payload_number(json_t *payload, const char *name, double *out);

#endif
