/* store.h - the Redis store: the fenced transition script, the outbox, partition loading,
 * the fencing epochs and the recorded definitions, written in the key layout of rkeys.h.
 *
 * Every key of a partition carries the hash tag {pN} so that one partition's sagas,
 * indexes, outbox and epoch live in one Redis Cluster slot and one script can check and
 * write them atomically (docs/redis.md is the contract; rkeys.h names the keys). Writes are pipelined: queue any
 * number of transitions and outbox acknowledgements, then store_flush() sends them in one
 * round trip and reports a result per queued transition, in order. */
#ifndef SAGA_STORE_H
#define SAGA_STORE_H

#include "redisconn.h"
#include "rkeys.h"
#include "saga.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_DEFAULT_HISTORY_CAP 1000
#define STORE_DEFAULT_TIMEOUT_MS 5000
#define STORE_LOAD_CHUNK 1000 /* sagas fetched per pipeline when loading a partition */

typedef struct store store_t;

typedef struct store_config {
    redisconn_config_t redis;  /* the server (or the Sentinels), AUTH, db, timeouts: a
                                * command timeout <= 0 is STORE_DEFAULT_TIMEOUT_MS */
    const char *prefix;        /* key prefix, default RKEYS_DEFAULT_PREFIX */
    int64_t retention_ms;      /* how long finished sagas stay; 0 = forever */
    int history_cap;           /* history entries kept per saga */
} store_config_t;

/* One message to produce, recorded in the outbox by the transition that caused it. */
typedef struct outbox_entry {
    char *id;                  /* unique in the partition: command id, or saga/outcome/... */
    char *topic;
    char *key;
    char *value;               /* the serialized message */
    int32_t partition;         /* -1: by key */
} outbox_entry_t;

void outbox_entry_release(outbox_entry_t *e);

typedef enum {
    STORE_OK = 0,
    STORE_EXISTS = 1,          /* a create found the saga already there */
    STORE_FENCED = 2,          /* the partition's epoch moved on: another owner */
    STORE_CONFLICT = 3,        /* the saga's version is not the expected one */
    STORE_ERROR = 4            /* connection or server error: outcome unknown */
} store_status_t;

/* One transition to write. All pointers are borrowed until store_flush() returns. The
 * saga's "version" field is written as expected_version + 1. */
typedef struct store_transition {
    int32_t partition;
    int64_t epoch;
    const saga_t *saga;        /* the state after the transition */
    int64_t expected_version;  /* 0 = the saga must not exist yet */
    saga_status_t old_status;  /* ignored when expected_version is 0 */
    const json_t *history;     /* array of entries, or NULL */
    const outbox_entry_t *outbox;
    size_t outbox_count;
} store_transition_t;

/* Connects (common/redisconn.h: timeout, AUTH, SELECT) and loads the transition script.
 * Returns NULL with the reason in err. */
store_t *store_new(const store_config_t *cfg, char *err, size_t errlen);
/* The store of the keys without a hash tag on a Redis Cluster (clusterstore.h): the
 * definitions, saga:meta, the member records and the alive set, each command sent to the
 * primary of its key's slot through cluster (borrowed, outlives the store). Only those
 * functions may be called on it (a partition's are refused), and store_heartbeat only
 * with no partitions. Connecting means knowing the slot map. */
struct rcluster;
store_t *store_new_routed(const store_config_t *cfg, struct rcluster *cluster, char *err,
                          size_t errlen);
/* Closes and frees st. NULL is accepted. */
void store_free(store_t *st);

/* Reconnects if the connection was lost. 0 when connected. */
int store_ensure_connected(store_t *st);
/* The reason of the last failure (borrowed from st). */
const char *store_last_error(const store_t *st);
/* PING (reconnecting first if needed). Nothing may be queued. Returns 0 or -1. */
int store_ping(store_t *st);
/* The connection's hiredis context, or NULL when not connected (borrowed, valid until a
 * reconnection): for the guards. */
struct redisContext *store_context(store_t *st);
/* The key names of st's prefix (borrowed, as long as st). */
const rkeys_t *store_keys(const store_t *st);

/* Takes a new fencing epoch for partition (INCR) and records owner. With replicas to
 * wait for (store_set_wait_replicas), the bump must reach that many replicas (WAIT)
 * before it counts: a Redis failover must not lose it. Returns 0 and the epoch in *epoch,
 * or -1 (*epoch unchanged: the epoch was not taken, whatever Redis incremented). */
int store_take_epoch(store_t *st, int32_t partition, const char *owner, int64_t *epoch);

/* Reads partition's current epoch (0 when Redis has none). Returns 0, or -1. */
int store_read_epoch(store_t *st, int32_t partition, int64_t *epoch);

/* How many replicas an epoch bump waits for (0 = none). */
void store_set_wait_replicas(store_t *st, int replicas);

/* How many replicas every round waits for (0 = none, the default): store_send appends
 * WAIT replicas T after the round's commands (T: half the command timeout, so that Redis
 * answers before the socket gives up), and when fewer replicas than that acknowledge the
 * round, store_receive reports every transition of the round as STORE_ERROR (the writes
 * are on the primary, but a failover may lose them: the caller must not act on them).
 * store_load_outbox then waits as well before it hands out anything to send again. */
void store_set_sync_replicas(store_t *st, int replicas);

/* Calls fn for every saga of partition listed as running, compensating or stuck, with
 * its hash fields (a JSON object of strings, borrowed for the call). Returns the number
 * of sagas, or -1 on a Redis error. */
typedef void (*store_saga_fn)(const json_t *fields, void *opaque);
int store_load_partition(store_t *st, int32_t partition, store_saga_fn fn, void *opaque);

/* Calls fn for every outbox entry of partition (borrowed for the call). Returns the count
 * or -1. */
typedef void (*store_outbox_fn)(const outbox_entry_t *e, void *opaque);
int store_load_outbox(store_t *st, int32_t partition, store_outbox_fn fn, void *opaque);

/* Queues a transition; its result comes from store_flush at the same position. */
int store_queue_transition(store_t *st, const store_transition_t *t);
/* Queues the removal of n delivered entries of partition's outbox (ids borrowed for the
 * call), applied only while partition's epoch is still epoch (no result reported). */
int store_queue_outbox_acks(store_t *st, int32_t partition, int64_t epoch,
                            const char *const *ids, size_t n);

/* Input positions kept with the state (docs/redis.md, PREFIX:{pN}:position).
 * store_queue_position queues, into the open round after its transitions, the write of
 * partition's next input offset, applied only while partition's epoch is still epoch (no
 * result reported); call it after the round's discards, as acknowledgements.
 * store_read_position reads it: *offset gets it, or -1 when none is stored. Both return 0,
 * or -1. */
int store_queue_position(store_t *st, int32_t partition, int64_t epoch, int64_t offset);
int store_read_position(store_t *st, int32_t partition, int64_t *offset);

/* --- leases (membership=redis, docs/high-availability.md) ------------------------------
 * With a lease time set, store_take_epoch takes the partition's lease with the new epoch
 * (refused while another instance holds it), and every transition script also checks that
 * the lease still holds the writer's epoch: a frozen owner whose lease expired writes
 * nothing, even before another instance takes the partition. 0 = no leases. */
void store_set_lease(store_t *st, int64_t lease_ms);
/* Called with every instance id heard from within the lease time (borrowed for the call). */
typedef void (*store_alive_fn)(const char *instance, void *opaque);
/* One pipelined call: instance's heartbeat in the alive set (by Redis's clock), then the
 * renewal of the leases of its n partitions (held[i]: still ours and renewed, or lost:
 * expired, or taken by another instance). fn gets the live instances, this one
 * included; fn NULL: the renewals alone (on a Redis Cluster the alive set lives on
 * another primary). Nothing may be queued or in flight. Returns 0, or -1. */
int store_heartbeat(store_t *st, const char *instance, const int32_t *partitions, size_t n,
                    bool *held, store_alive_fn fn, void *opaque);
/* Releases partition's lease if instance holds it (a hand-over). Returns 0, or -1. */
int store_release_lease(store_t *st, int32_t partition, const char *instance);
/* Removes instance from the alive set (a clean stop). Returns 0, or -1. */
int store_leave(store_t *st, const char *instance);

/* Pipelining in rounds: what is queued since the last send is a round. store_send
 * writes it to Redis and returns without waiting; store_receive reads its replies. In
 * between the caller may queue the next round's transitions (not acknowledgements), but
 * no synchronous call (epochs, loads, definitions, ping) may run: they fail until the
 * round is read. So the caller's work on the next round overlaps Redis's on this one.
 *
 * store_send: returns 0, or -1 when the round could not be written (store_receive then
 * reports each of its transitions as STORE_ERROR). -1 also when a round is in flight. */
int store_send(store_t *st);
/* True while synchronous calls are refused: a round is in flight, or acknowledgements or
 * positions are queued in the pipeline. */
bool store_pending(const store_t *st);
/* True between store_send and store_receive. */
bool store_in_flight(const store_t *st);
/* True when the round in flight has (some of) its replies waiting to be read, so that
 * store_receive would not wait for Redis to start answering. Never blocks. */
bool store_replies_arriving(const store_t *st);
/* Reads the replies of the round in flight. results gets one status per transition of
 * the round, by position (the caller provides one entry per transition it sent; may be
 * NULL when there are none). Returns 0 when every reply was read (individual transitions may still be
 * EXISTS/FENCED/CONFLICT), -1 on a connection error (then every unread result is
 * STORE_ERROR and the open round's transitions are dropped: they report STORE_ERROR when
 * it is sent). Returns 0 at once when nothing is in flight. */
int store_receive(store_t *st, store_status_t *results);

/* Discards the transitions of partition queued in the open round (their state turned
 * out to be in doubt): they are not written and report STORE_ERROR. Call it before any
 * acknowledgement is queued in the round (those append the open batches). Returns the
 * number discarded. */
int store_discard_partition(store_t *st, int32_t partition);

/* store_send + store_receive: sends everything queued and reads the replies. results gets
 * one status per queued transition (the caller provides one entry per transition it
 * queued). Returns as store_receive; -1 when a round is in flight. */
int store_flush(store_t *st, store_status_t *results);

/* Records the layout version and the input topic's partition count (saga:meta), and the
 * routing partition count (route.h) when none is recorded yet; *routing_partitions gets
 * the one recorded. Returns 0 or -1. */
int store_put_meta(store_t *st, int partitions, int *routing_partitions);

/* Reads the status field of each of n sagas of partition in one pipeline: statuses[i]
 * gets it (at most 16 bytes with the NUL), or "" when the saga is not in Redis. Nothing
 * may be queued or in flight. Returns 0, or -1 on a Redis error. */
int store_read_statuses(store_t *st, int32_t partition, const char *const *ids, size_t n,
                        char (*statuses)[16]);

/* Length of a content hash in hex (SHA-256), without the NUL. */
#define STORE_HASH_HEX_LEN 64

/* Records a definition: its content hash in saga:definition-hashes (first writer wins,
 * HSETNX) and its canonical JSON in saga:definitions, both under field NAME@VERSION. A
 * NAME@VERSION is recorded once for good: content may never change under a version.
 * Returns 0 (recorded, or already recorded with the same hash), 1 when NAME@VERSION is
 * recorded with another hash (then nothing is written; that hash is copied to existing,
 * which may be NULL, of STORE_HASH_HEX_LEN + 1 bytes), -1 on a Redis error. */
int store_put_definition(store_t *st, const definition_t *d, char *existing);

/* Reads the recorded hash of NAME@VERSION into hash (STORE_HASH_HEX_LEN + 1 bytes).
 * Returns 0 when recorded, 1 when not, -1 on a Redis error. */
int store_get_definition_hash(store_t *st, const char *name, int version, char *hash);

/* Reads the recorded definition NAME@VERSION: its JSON (*json, caller frees) and its
 * hash (hash, STORE_HASH_HEX_LEN + 1 bytes; "" when only the JSON is recorded, as a Redis
 * written before hashes were recorded has it). Returns 0 when recorded, 1 when not, -1
 * on a Redis error. */
int store_get_definition(store_t *st, const char *name, int version, char **json, char *hash);

/* --- member records (docs/redis.md, "Member records") ----------------------------- */

/* saga:members entries whose score (last_seen) is older than this are trimmed by every
 * writer: the index stays bounded although crashed instances never remove themselves. */
#define STORE_MEMBER_INDEX_KEEP_MS 600000

/* What one coordinator instance says about itself. Strings are borrowed for the call. */
typedef struct store_member {
    const char *instance;          /* instance id: the record is PREFIX:member:INSTANCE */
    const char *host;              /* host name */
    int pid;
    const char *version;           /* the build's version, or NULL (field left out) */
    const char *http;              /* HOST:PORT of its dashboard, or NULL / "" when off */
    int64_t started_at;            /* epoch ms */
    int64_t last_seen;             /* epoch ms: now */
    const char *partitions;        /* owned partitions, comma list ("" = none) */
    const char *partitions_json;   /* [{"partition", "lag" (null: unknown), "sagas"}] */
    int64_t ttl_ms;                /* the record expires this long after the write */
} store_member_t;

/* Writes the member record (HSET and PEXPIRE in one MULTI/EXEC, so a record never lives
 * without its expiry) and its saga:members entry (ZADD, score last_seen; entries older
 * than STORE_MEMBER_INDEX_KEEP_MS are trimmed), pipelined: one round trip. Nothing may be
 * queued or in flight. Returns 0, or -1 (store_last_error says why). */
int store_put_member(store_t *st, const store_member_t *m);

/* Removes instance's member record and its saga:members entry (a clean stop), pipelined.
 * Nothing may be queued or in flight. Returns 0, or -1. */
int store_drop_member(store_t *st, const char *instance);

#endif
