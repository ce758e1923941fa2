/* simstore.h - the simulated store: an in-memory model of the Redis store of
 * coordinator/store.c behind the store port (storeport.h), for the simulation
 * (docs/simulation.md) and for checking the model against the real store.
 *
 * A simstore_t is the Redis server: per partition an epoch and its owner, the outbox (id
 * -> "topic\npartition\nkey\nmessage", as store.c writes it), the input position kept
 * with the state (epoch-checked, as store.c's position script), and per saga the hash fields
 * exactly as saga_visit_fields gives them (the "version" field written as expected + 1),
 * its history entries and its place in the status indexes; the recorded definitions.
 * A simstore_conn_t is one client's connection to it, with that client's pipelined rounds
 * (store.h, "Pipelining in rounds"): simstore_port() makes it a store_port_t whose every
 * function has the meaning store.h gives it, including the order of the transition
 * script's checks (epoch first: FENCED for the whole call; then EXISTS for a create; then
 * CONFLICT for the version) and the epoch check of outbox acknowledgements.
 * Leases (membership=redis) as store.c's lease scripts: a connection with set_lease done
 * takes a lease with each new epoch (refused "HELD by X" while another instance's lease
 * lives), beats into the alive set and renews by the server's clock (simstore_config_t
 * now_ms: the simulation's virtual clock), and its transition scripts are FENCED when the
 * partition's lease no longer holds the writer's epoch (expired, released, taken).
 *
 * Not modeled: the counters hash (nothing reads it back), retention (finished sagas never
 * expire), member records (accepted and forgotten).
 *
 * A round is run by the model when it is sent (a valid place for it in time: Redis runs
 * it between send and receive). Faults, for the world to drive: a connection can be lost
 * before Redis ran a round (nothing written) or after (all written); either way its
 * client learns nothing (STORE_ERROR for each transition, receive returns -1). The
 * server can be down for a while: connecting fails, and so does every call that talks to
 * it (dropping the connection, as store.c does on a failed command). A
 * connection can be killed (its process died): from then on every call fails and nothing
 * it sends is written. */
#ifndef SAGA_SIMSTORE_H
#define SAGA_SIMSTORE_H

#include "storeport.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct simstore simstore_t;
typedef struct simstore_conn simstore_conn_t;

typedef struct simstore_config {
    int history_cap;   /* history entries kept per saga; <= 0: STORE_DEFAULT_HISTORY_CAP */
    uint64_t seed;     /* the order of an outbox as loaded (a Redis hash has none) and
                        * when replies arrive; 0: outbox in insertion order, replies
                        * arriving at once */
    /* The server's clock (Redis's TIME, ms): lease expiry and the alive set. NULL: the
     * wall clock. */
    int64_t (*now_ms)(void *opaque);
    void *clock_opaque;
} simstore_config_t;

/* What happens to a round when it is sent (simstore_hooks_t.round_fate). */
typedef enum {
    SIMSTORE_ROUND_OK = 0,
    SIMSTORE_ROUND_LOST_BEFORE,   /* the connection dropped before Redis ran it */
    SIMSTORE_ROUND_LOST_AFTER     /* the connection dropped after Redis ran it */
} simstore_round_fate_t;

/* What the world drives and watches on one connection; any function may be NULL. */
typedef struct simstore_hooks {
    void *opaque;
    /* Asked once per round sent: what becomes of it (NULL: every round goes through). */
    simstore_round_fate_t (*round_fate)(void *opaque);
    /* Told of every transition queued, before it is snapshotted (borrowed for the call). */
    void (*queued)(void *opaque, const store_transition_t *t);
    /* Told of every transition script call that passed its fences and wrote, with its
     * partition and epoch, as it runs (for the world's own lease check). */
    void (*written)(void *opaque, int32_t partition, int64_t epoch);
} simstore_hooks_t;

/* A new, empty server (cfg may be NULL: defaults). Returns NULL when out of memory. */
simstore_t *simstore_new(const simstore_config_t *cfg);
/* Frees the server. Its connections must be freed first. NULL is a no-op. */
void simstore_free(simstore_t *db);

/* The server goes down (unreachable) or comes back. */
void simstore_set_down(simstore_t *db, bool down);
/* The server restarted and lost its leases and its alive set (the epochs, owner records
 * and the rest survive). */
void simstore_forget_leases(simstore_t *db);

/* A new connection to db (borrowed: it must outlive the connection), connected. Returns
 * NULL when out of memory. */
simstore_conn_t *simstore_conn_new(simstore_t *db);
/* Closes the connection; a round queued or in flight is dropped. NULL is a no-op. */
void simstore_conn_free(simstore_conn_t *c);
/* The connection as a store port (self is c, borrowed). */
store_port_t simstore_port(simstore_conn_t *c);

/* Sets the connection's hooks (copied; NULL: none). */
void simstore_conn_set_hooks(simstore_conn_t *c, const simstore_hooks_t *hooks);
/* hold: the client process stopped just before writing its rounds (SIGSTOP): a round sent
 * from now on reaches Redis, and runs, only when the hold ends (or when its replies are
 * read: the process runs again). */
void simstore_conn_hold(simstore_conn_t *c, bool hold);
/* The client process was killed: every later call fails, nothing is written. */
void simstore_conn_kill(simstore_conn_t *c);

/* How many of the connection's transitions Redis answered with status (counted when the
 * round ran, whether or not its replies were read). */
size_t simstore_conn_count(const simstore_conn_t *c, store_status_t status);

/* --- reading the server, for checks (everything borrowed until the next write) ----- */

/* The partition's next input offset kept with the state (store_queue_position), or -1. */
int64_t simstore_position(const simstore_t *db, int32_t partition);
/* The partition's lease now: its holder (the owner record's owner) and *epoch (may be
 * NULL), or NULL when no lease is live. */
const char *simstore_lease(simstore_t *db, int32_t partition, int64_t *epoch);
/* The partition's epoch (0 when none was taken). */
int64_t simstore_epoch(const simstore_t *db, int32_t partition);
/* The saga's hash fields (a JSON object of strings), or NULL when it was never written. */
const json_t *simstore_saga_fields(const simstore_t *db, int32_t partition, const char *id);
/* Its "version" field as a number, 0 when the saga was never written. */
int64_t simstore_saga_version(const simstore_t *db, int32_t partition, const char *id);
/* Its history entries (a JSON array of the entries' JSON texts), or NULL. */
const json_t *simstore_saga_history(const simstore_t *db, int32_t partition, const char *id);
/* Whether the saga is listed in index. */
bool simstore_saga_indexed(const simstore_t *db, int32_t partition, const char *id,
                           rkeys_index_t index);
/* Entries in the partition's outbox, and entry i of them (in insertion order): *id and
 * *value ("topic\npartition\nkey\nmessage"). Returns 0, or -1 when i is out of range. */
size_t simstore_outbox_count(const simstore_t *db, int32_t partition);
int simstore_outbox_at(const simstore_t *db, int32_t partition, size_t i, const char **id,
                       const char **value);

#endif
