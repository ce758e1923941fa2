/* system.h - a whole running system for integration tests: redis-server, the embedded
 * broker with the project's topics, and saga-coordinator processes, plus helpers that
 * start sagas and read their state through the documented Redis keys (docs/redis.md).
 *
 * Start it in a Criterion .init and stop it in .fini: every process is stopped even when
 * a test fails. Definitions come from a folder (default: the repository's tests/sagas). */
#ifndef SAGA_TEST_SYSTEM_H
#define SAGA_TEST_SYSTEM_H

#include "fixture.h"

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#define SYSTEM_MAX_COORDINATORS 4
#define SYSTEM_INPUT_PARTITIONS 4
#define SYSTEM_TOPICS \
    "saga.input:4,saga.outcomes:1,saga.deadletter:1,inventory.commands:1,payment.commands:1," \
    "shipping.commands:1,accounts.commands:1,travel.commands:1"

typedef struct test_system {
    redis_fixture_t redis;
    broker_fixture_t broker;
    pid_t coordinators[SYSTEM_MAX_COORDINATORS];
    int coordinator_count;
    char dir[PATH_MAX];          /* temp dir of the run: coordinator logs */
    char definitions[PATH_MAX];
    redisContext *rc;
    rd_kafka_t *producer;
} test_system_t;

/* Starts redis-server and the broker (SYSTEM_TOPICS plus extra_topics, may be NULL).
 * definitions: a folder of saga definitions, or NULL for the repository's tests/sagas.
 * redis_config: extra redis.conf lines or NULL. Returns 0 or -1. */
int system_start(test_system_t *s, const char *definitions, const char *extra_topics,
                 const char *redis_config);

/* Starts one more coordinator (args: extra "--name=value" flags, NULL-terminated or NULL;
 * env: extra "K=V", NULL-terminated or NULL). Returns its index, or -1. */
int system_add_coordinator(test_system_t *s, const char *const *args, const char *const *env);

/* Starts a coordinator into slot idx (0..SYSTEM_MAX_COORDINATORS-1, replacing whatever
 * pid the slot held) logging to dir/log_name, with the flags every test coordinator gets
 * plus args and env as above. Returns its pid, or -1. */
pid_t system_spawn_coordinator(test_system_t *s, int idx, const char *log_name,
                               const char *const *args, const char *const *env);

/* Waits until every input partition has an owner recorded in Redis. */
bool system_wait_owned(test_system_t *s, int timeout_ms);

/* Stops everything started. Safe on a zeroed or half-started system. */
void system_stop(test_system_t *s);

/* Produces a start request for saga id (id may be NULL) of definition name with input
 * (JSON text, may be NULL). Returns 0 or -1. */
int system_start_saga(test_system_t *s, const char *id, const char *name, const char *input);

/* Produces raw bytes to the input topic with key (may be NULL). */
int system_produce_input(test_system_t *s, const char *key, const char *value);

/* The saga's hash (documented fields, as a JSON object of strings), found by looking in
 * every partition; NULL when absent. New reference. *partition gets where it was found
 * (may be NULL). */
json_t *system_saga(test_system_t *s, const char *id, int *partition);

/* The saga's history entries, oldest first (a JSON array, new reference). */
json_t *system_history(test_system_t *s, const char *id);

/* Waits until the saga's status is status. */
bool system_wait_status(test_system_t *s, const char *id, const char *status, int timeout_ms);
/* The same; when the saga does not get there, why (len bytes) says where it is and its
 * history, for the test's assertion message. */
/* Prints what the coordinators' logs say about a saga and its home partition (stderr). */
void system_explain(test_system_t *s, const char *id);

bool system_expect_status(test_system_t *s, const char *id, const char *status,
                          int timeout_ms, char *why, size_t len);

/* A field of the saga's hash, copied into buf ("" when absent). */
const char *system_field(test_system_t *s, const char *id, const char *field, char *buf,
                         size_t len);

/* Reads a field of a saga's "steps" array: steps[step].key, as a new JSON reference. */
json_t *system_step(test_system_t *s, const char *id, const char *step);

/* Sums a counter field of every partition's counters hash. */
long long system_counter(test_system_t *s, const char *field);

/* The sagas listed running or compensating, over every partition; a partition whose
 * index cannot be read counts as one (so that "none active" is never a Redis error). */
long long system_active(test_system_t *s);

#endif
