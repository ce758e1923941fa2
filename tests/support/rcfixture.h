/* rcfixture.h - a Redis Cluster for tests: primaries and replicas started as
 * redis_fixture_t servers (fixture.h) on free loopback ports, joined with
 * `redis-cli --cluster create`, and the operations a test runs on it: which primary
 * serves a slot, a slot migrated in the documented steps while the test's traffic goes
 * on, a primary killed and its replica promoted, keys counted per primary.
 *
 * Every node gets its own cluster bus port (`cluster-port`, Redis 7), a free port chosen
 * like the node's own, instead of the default port+10000 (which can be taken, or past
 * 65535). Conventions are fixture.h's: 0/-1 returns, one "rcfixture: ..." line on stderr
 * saying what failed, no fixed sleeps (every wait polls a condition with a deadline), and
 * stop always safe. Nodes die with the test process (PR_SET_PDEATHSIG) and are stopped
 * at exit too if a test forgot rcfixture_stop; call it in the suite's .fini. */
#ifndef SAGA_TEST_RCFIXTURE_H
#define SAGA_TEST_RCFIXTURE_H

#include "fixture.h"

#include <hiredis/hiredis.h>

#define RCFIXTURE_MAX_NODES 9
#define RCFIXTURE_SLOTS 16384
#define RCFIXTURE_NODE_TIMEOUT_MS 1000   /* cluster-node-timeout unless extra config says */
#define RCFIXTURE_READY_TIMEOUT_MS 30000 /* cluster create and the wait for a healthy cluster */
#define RCFIXTURE_MIGRATE_TIMEOUT_MS 5000 /* MIGRATE's own timeout */
#define RCFIXTURE_ID_LEN 40              /* a node id's hex characters */

typedef struct rcfixture {
    /* Started with cluster-enabled yes, cluster-node-timeout 1000, appendonly yes and a
     * cluster-port of its own (or as extra config says). A killed node keeps its entry
     * with pid 0 (its port and dir kept). shutdown-timeout 0: a SIGTERM does not wait
     * for replicas (that may be stopped already). */
    redis_fixture_t nodes[RCFIXTURE_MAX_NODES];
    int count;
    char seeds[512];          /* "127.0.0.1:P0,127.0.0.1:P1,..." of every node */
    int bus_ports[RCFIXTURE_MAX_NODES];                 /* each node's cluster-port */
    char ids[RCFIXTURE_MAX_NODES][RCFIXTURE_ID_LEN + 1]; /* each node's id (CLUSTER MYID) */
} rcfixture_t;

/* Starts primaries*(1+replicas) redis-servers (primaries >= 3, at most
 * RCFIXTURE_MAX_NODES in all) and makes them one cluster with `redis-cli --cluster create
 * ... --cluster-replicas R --cluster-yes`, waits until CLUSTER INFO says cluster_state:ok
 * on every node, every node knows every other and every replica is in sync
 * (RCFIXTURE_READY_TIMEOUT_MS). extra_config is appended to each node's config (NULL =
 * none). *c is overwritten. Returns 0, or -1 (nothing left running). */
int rcfixture_start(rcfixture_t *c, int primaries, int replicas, const char *extra_config);
/* Stops every node, removes their dirs and zeroes *c. NULL, zeroed or stopped: no-op. */
void rcfixture_stop(rcfixture_t *c);

/* The index in nodes[] of the primary serving slot now (the running primary that claims
 * it; the one with the newest config epoch if two do, as during the last step of a
 * migration), or -1. */
int rcfixture_primary_of(rcfixture_t *c, int slot);
/* The slot of key (CLUSTER KEYSLOT asked of a running node), or -1. */
int rcfixture_key_slot(rcfixture_t *c, const char *key);
/* True when nodes[idx] runs and is a primary (ROLE). */
bool rcfixture_is_primary(rcfixture_t *c, int idx);

/* Moves slot from its primary to the primary nodes[to] in the documented steps: CLUSTER
 * SETSLOT IMPORTING on the target, SETSLOT MIGRATING on the source, then the keys in
 * batches of `batch` (CLUSTER GETKEYSINSLOT + MIGRATE ... KEYS), pausing pause_ms between
 * batches (so a test can run traffic during the migration), then SETSLOT NODE on the
 * target, the source and every other running primary. A slot already at `to`: 0 at once.
 * Returns 0 or -1. */
int rcfixture_migrate_slot(rcfixture_t *c, int slot, int to, int batch, int pause_ms);
/* The first half of rcfixture_migrate_slot: SETSLOT IMPORTING and MIGRATING, and the
 * keys moved in batches until at most keep_keys remain on the source; the slot stays
 * half-migrated (the source answers ASK for a key it no longer has) until
 * rcfixture_migrate_finish. Returns 0 or -1. */
int rcfixture_migrate_begin(rcfixture_t *c, int slot, int to, int batch, int pause_ms,
                            int keep_keys);
/* Moves the keys left and ends the migration begun by rcfixture_migrate_begin (SETSLOT
 * NODE everywhere). Returns 0 or -1. */
int rcfixture_migrate_finish(rcfixture_t *c, int slot, int to, int batch);

/* SIGKILLs the primary nodes[idx] and waits until one of its replicas is primary for all
 * its slots and cluster_state is ok again on the remaining nodes (timeout_ms). Returns 0
 * or -1. */
int rcfixture_kill_primary(rcfixture_t *c, int idx, int timeout_ms);
/* Starts a killed node again (same port, dir and nodes.conf: it rejoins, as a replica
 * of the primary that took its slots) and waits until cluster_state is ok on every node
 * and it is in sync (timeout_ms). Returns 0 or -1. */
int rcfixture_start_again(rcfixture_t *c, int idx, int timeout_ms);

/* A plain hiredis connection to one node (2 s timeout), or NULL. Caller frees it with
 * redisFree. It follows no redirection. */
redisContext *rcfixture_connect(rcfixture_t *c, int idx);
/* Runs one command (hiredis format) on the node serving key's slot, following MOVED and
 * ASK (ASKING first) up to 16 times: the least a test needs to read and write a cluster
 * without the module under test. fmt is hiredis's (%b takes a pointer and a size_t), so
 * it has no printf format attribute. Returns the reply (caller frees; error replies
 * included), or NULL when no node answered. */
redisReply *rcfixture_command(rcfixture_t *c, const char *key, const char *fmt, ...);

/* Counts the keys matching pattern on every running primary (SCAN ... MATCH), per primary
 * into counts[] (indexed by node, c->count entries, replicas and killed nodes 0; counts
 * may be NULL), and returns the total, or -1. */
long rcfixture_count_keys(rcfixture_t *c, const char *pattern, long *counts);

/* Copies every key of every running primary that matches pattern (NULL: all) into dst,
 * a plain connection to one Redis (DUMP, then RESTORE ... REPLACE with the key's time to
 * live), so that a check written for one Redis (ledger_check.h, system.h's readers) can
 * read a cluster's data. Returns how many keys were copied, or -1. */
long rcfixture_copy_to(rcfixture_t *c, redisContext *dst, const char *pattern);

#endif
