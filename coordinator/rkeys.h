/* rkeys.h - the Redis key layout of docs/redis.md, in one place: the name of every key
 * (with the configurable prefix and a partition's {pN} hash tag), the status indexes and
 * which saga status lives in which, and the hash field names readers use.
 *
 * Every module that names a key or a field of the contract (the store that writes it,
 * the queries behind sagactl and the dashboard, the test helpers that read it) takes it
 * from here, so the layout changes in this file and docs/redis.md together. A change
 * that breaks a reader bumps RKEYS_LAYOUT_VERSION (recorded in the meta hash). No I/O. */
#ifndef SAGA_RKEYS_H
#define SAGA_RKEYS_H

#include "saga.h"

#include <stdint.h>

/* The layout version recorded in the meta hash (field RKEYS_META_LAYOUT_VERSION). */
#define RKEYS_LAYOUT_VERSION 1
#define RKEYS_DEFAULT_PREFIX "saga"
/* The longest prefix kept (the redis_prefix setting's size); a longer one is truncated. */
#define RKEYS_PREFIX_MAX 64
/* The size of a key buffer: every builder below writes at most this, NUL included (a
 * longer key, an id beyond SAGA_ID_MAX_LEN, is truncated). */
#define RKEYS_KEY_MAX 512

/* The prefix of one deployment's keys. Embedded by value; no release needed. */
typedef struct rkeys {
    char prefix[RKEYS_PREFIX_MAX];
} rkeys_t;

/* Sets the prefix (copied; NULL = RKEYS_DEFAULT_PREFIX). */
void rkeys_init(rkeys_t *k, const char *prefix);

/* --- keys ------------------------------------------------------------------------------
 * Each writes the key into buf (RKEYS_KEY_MAX bytes) and returns buf, so that a call can
 * be a command's argument. saga_id is borrowed for the call. */

/* PREFIX:{pN}:saga:ID, the saga hash. */
char *rkeys_saga(const rkeys_t *k, char *buf, int32_t partition, const char *saga_id);
/* PREFIX:{pN}:history:ID, the saga's history list. */
char *rkeys_history(const rkeys_t *k, char *buf, int32_t partition, const char *saga_id);
/* PREFIX:{pN}:counters, the partition's counters hash. */
char *rkeys_counters(const rkeys_t *k, char *buf, int32_t partition);
/* PREFIX:{pN}:epoch, the partition's fencing epoch. */
char *rkeys_epoch(const rkeys_t *k, char *buf, int32_t partition);
/* PREFIX:{pN}:owner, the partition's owner hash. */
char *rkeys_owner(const rkeys_t *k, char *buf, int32_t partition);
/* PREFIX:{pN}:lease, the partition's lease (membership=redis): the owner's epoch, expiring
 * lease_ms after its last renewal by Redis's clock. */
char *rkeys_lease(const rkeys_t *k, char *buf, int32_t partition);
/* PREFIX:{pN}:position, the partition's next input offset, written with the state. */
char *rkeys_position(const rkeys_t *k, char *buf, int32_t partition);
/* PREFIX:alive (no hash tag), instance ids by their last heartbeat (Redis's clock, ms). */
char *rkeys_alive(const rkeys_t *k, char *buf);
/* PREFIX:{pN}:outbox, the partition's outbox hash. */
char *rkeys_outbox(const rkeys_t *k, char *buf, int32_t partition);
/* PREFIX:meta (no hash tag). */
char *rkeys_meta(const rkeys_t *k, char *buf);
/* PREFIX:member:INSTANCE (no hash tag), an instance's short-lived member record. */
char *rkeys_member(const rkeys_t *k, char *buf, const char *instance);
/* PREFIX:members (no hash tag), the sorted set of instance ids by last_seen. */
char *rkeys_members(const rkeys_t *k, char *buf);
/* PREFIX:definitions (no hash tag): NAME@VERSION -> canonical JSON. */
char *rkeys_definitions(const rkeys_t *k, char *buf);
/* PREFIX:definition-hashes (no hash tag): NAME@VERSION -> content hash. */
char *rkeys_definition_hashes(const rkeys_t *k, char *buf);

/* The field of both definition hashes for name and version ("order@2") into buf of len
 * bytes; returns buf. */
char *rkeys_definition_field(char *buf, size_t len, const char *name, int version);

/* --- the status indexes ----------------------------------------------------------------
 * PREFIX:{pN}:index:NAME, sorted sets of saga ids. Running, compensating and stuck sagas
 * are each in the index of their status; completed and compensated ones in "finished". */
typedef enum {
    RKEYS_INDEX_RUNNING = 0,
    RKEYS_INDEX_COMPENSATING,
    RKEYS_INDEX_STUCK,
    RKEYS_INDEX_FINISHED,
    RKEYS_INDEX_COUNT
} rkeys_index_t;

/* The indexes of unfinished sagas (the ones a coordinator loads when it takes over a
 * partition) are the first RKEYS_INDEX_ACTIVE_COUNT. */
#define RKEYS_INDEX_ACTIVE_COUNT 3

/* PREFIX:{pN}:index:NAME of index. */
char *rkeys_index(const rkeys_t *k, char *buf, int32_t partition, rkeys_index_t index);
/* The index's name ("running", ...), or "unknown" for a value out of range. */
const char *rkeys_index_name(rkeys_index_t index);
/* The index of name ("running", "compensating", "stuck", "finished"), or -1. */
int rkeys_index_parse(const char *name);
/* The index a saga of status status is listed in. */
rkeys_index_t rkeys_index_of(saga_status_t status);

/* --- hash fields -------------------------------------------------------------------- */

/* The saga hash (every field of docs/redis.md; saga.c writes and decodes them). */
#define RKEYS_F_ID "id"
#define RKEYS_F_DEFINITION "definition"
#define RKEYS_F_DEFINITION_VERSION "definition_version"
#define RKEYS_F_DEFINITION_HASH "definition_hash"
#define RKEYS_F_STATUS "status"
#define RKEYS_F_STEP "step"
#define RKEYS_F_STEP_INDEX "step_index"
#define RKEYS_F_ATTEMPT "attempt"
#define RKEYS_F_PARTITION "partition"
#define RKEYS_F_VERSION "version"
#define RKEYS_F_CREATED_AT "created_at"
#define RKEYS_F_UPDATED_AT "updated_at"
#define RKEYS_F_FINISHED_AT "finished_at"
#define RKEYS_F_DEADLINE_AT "deadline_at"
#define RKEYS_F_GROUP "group"
#define RKEYS_F_ERROR "error"
#define RKEYS_F_INPUT "input"
#define RKEYS_F_STEPS "steps"

/* The meta hash. */
#define RKEYS_META_LAYOUT_VERSION "layout_version"
#define RKEYS_META_PARTITIONS "partitions"
#define RKEYS_META_ROUTING_PARTITIONS "routing_partitions"

/* The owner hash. */
#define RKEYS_OWNER_OWNER "owner"
#define RKEYS_OWNER_EPOCH "epoch"
#define RKEYS_OWNER_SINCE "since"

/* The counters hash: fields DEF:NAME for the totals below, DEF:active:STATUS for the
 * gauges of running, compensating and stuck sagas. */
#define RKEYS_COUNTER_STARTED "started"
#define RKEYS_COUNTER_COMPLETED "completed"
#define RKEYS_COUNTER_COMPENSATED "compensated"
#define RKEYS_COUNTER_STUCK "stuck"
#define RKEYS_COUNTER_ACTIVE "active"

#endif
