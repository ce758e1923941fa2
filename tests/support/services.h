/* services.h - the three example participant services (inventory, payment, shipping) as
 * child processes of a test, on the same broker and Redis as a test_system_t, with
 * per-service flags (failure injection, see docs/participants.md); and (re)starting a
 * coordinator into a given slot of a test_system_t, for tests that kill and restart
 * coordinators more often than SYSTEM_MAX_COORDINATORS allows.
 *
 * Like every fixture, each start prints one "services: ..." line on stderr when it fails,
 * and every stop accepts a zeroed struct and can be called twice. */
#ifndef SAGA_TEST_SERVICES_H
#define SAGA_TEST_SERVICES_H

#include "system.h"

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#define SERVICES_COUNT 3
#define SERVICES_MAX_FLAGS 24

/* The services in step order of the order-placement saga. */
extern const char *const SERVICES_NAMES[SERVICES_COUNT]; /* "inventory", "payment", "shipping" */

typedef struct services {
    pid_t pids[SERVICES_COUNT];
    char logs[SERVICES_COUNT][PATH_MAX];
} services_t;

/* Starts inventory-service, payment-service and shipping-service (from $SAGA_BIN_DIR) on
 * s's broker and Redis, logs in s->dir. flags[i] (NULL-terminated, may be NULL) are extra
 * flags of service i (SERVICES_NAMES order); flags may be NULL. Returns 0, or -1 after
 * stopping what started. */
int services_start(services_t *sv, test_system_t *s, const char *const *const flags[SERVICES_COUNT]);

/* Produces, without waiting for its delivery, the start of the order-placement saga
 * "PREFIX-I" (the saga the services run), with an input that varies with i: sku, qty,
 * amount. Returns 0, or -1 when the producer refused it (printed why). */
int services_produce_order(test_system_t *s, const char *prefix, long i);

/* Stops the services with SIGTERM (graceful: in-flight commands finish). */
void services_stop(services_t *sv);

/* Waits until every service's log contains text (e.g. "assigned" once its consumer owns
 * its command topic's partition). */
bool services_wait_log(const services_t *sv, const char *text, int timeout_ms);

/* Starts a saga-coordinator exactly as system_add_coordinator does (same flags, then
 * args), but into slot idx (0 <= idx < SYSTEM_MAX_COORDINATORS), replacing a pid that
 * must already be stopped and reaped; its log is s->dir/coordinator-IDX-GEN.log.
 * Grows s->coordinator_count to cover idx, so system_stop stops it. Returns the pid, or -1. */
pid_t services_spawn_coordinator(test_system_t *s, int idx, int gen, const char *const *args,
                                 const char *const *env);

#endif
