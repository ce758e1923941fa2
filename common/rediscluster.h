/* rediscluster.h - Redis Cluster routing over hiredis 0.14, which has none (and Debian 12
 * packages no cluster client for C): the hash slot of a key, the slot map read with
 * CLUSTER SLOTS, one connection (redisconn_t) per primary, and commands that follow the
 * cluster's redirections: MOVED (the slot lives elsewhere now: the map is read again and
 * the command re-sent to the node named), ASK (the slot is being migrated and this key
 * already moved: ASKING, then the command, at the node named, without changing the map),
 * TRYAGAIN (a multi-key command during a migration) and CLUSTERDOWN (a failover under way)
 * retried after a short pause. docs/redis.md, "Redis Cluster", says what runs where.
 *
 * With a cluster configured (redisconn_config_t.cluster), the coordinator's store
 * (clusterstore.h: one store per primary, partitions routed by the slot of {pN}), its
 * queries (sagactl, the dashboard) and the participant SDK's de-duplication store route
 * through one of these. Like redisconn.c it is compiled into the coordinator library and
 * the SDK (common/). An rcluster_t is used by one thread at a time. */
#ifndef SAGA_REDISCLUSTER_H
#define SAGA_REDISCLUSTER_H

#include "redisconn.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define RCLUSTER_SLOTS 16384
#define RCLUSTER_MAX_NODES 128     /* primaries and seeds remembered */
#define RCLUSTER_MAX_REDIRECTS 16  /* redirections and retries of one command */
#define RCLUSTER_RETRY_PAUSE_MS 50 /* pause before a TRYAGAIN or CLUSTERDOWN is retried */
#define RCLUSTER_MAX_REFUSED 2     /* connections refused before a command gives up */

typedef struct rcluster rcluster_t;

/* The hash slot of key (len bytes): CRC16 (XMODEM) modulo 16384 of the key, or of its
 * hash tag, the part between the first '{' and the next '}' when that is not empty. */
int rcluster_key_slot(const char *key, size_t len);

/* A cluster client. Seeds: cfg->cluster_nodes ("host:port,host:port"), or cfg->host and
 * cfg->port when that is NULL or "". AUTH and the timeouts of cfg are used on every node;
 * cfg->db must be 0 (a cluster has one database) and Sentinels are not used. Nothing is
 * connected until the first use. Returns NULL when out of memory; a bad seed list makes
 * every use fail with the reason (rcluster_last_error). */
rcluster_t *rcluster_new(const redisconn_config_t *cfg);
/* Closes every connection and frees c. NULL is accepted. */
void rcluster_free(rcluster_t *c);

/* Reads the slot map (CLUSTER SLOTS) from the first node that answers: the nodes of the
 * current map, then the seeds. Connections to primaries that left the map are closed.
 * Returns 0, or -1 with the reason (the old map is kept). */
int rcluster_refresh(rcluster_t *c);
/* Marks the map stale: the next rcluster_ensure_map reads it again. A caller does this
 * when a node it was routed to failed or redirected it. */
void rcluster_mark_stale(rcluster_t *c);
/* Reads the map when it is stale or was never read (at most every
 * RCLUSTER_RETRY_PAUSE_MS when reads keep failing). Returns 0 when a map is known that
 * serves every slot, or -1 with the reason. */
int rcluster_ensure_map(rcluster_t *c);
/* How many times the map was read (a test and the metrics watch it change). */
unsigned long rcluster_map_reads(const rcluster_t *c);

/* The connection to the primary serving slot by the current map (borrowed: valid until
 * the next refresh drops that node; shared by every caller of c), or NULL when the map
 * has no node for it (reason kept). Not connected until used. */
redisconn_t *rcluster_conn_for_slot(rcluster_t *c, int slot);
/* The same for the slot of key (NUL-terminated). */
redisconn_t *rcluster_conn_for_key(rcluster_t *c, const char *key);
/* "host:port" of the primary serving slot, or NULL (borrowed, as above). */
const char *rcluster_address_for_slot(const rcluster_t *c, int slot);
/* The primaries of the current map (at most max, borrowed); returns how many there are. */
size_t rcluster_primaries(rcluster_t *c, redisconn_t **out, size_t max);
/* True when the node at address ("host:port") serves slots in the current map. */
bool rcluster_is_primary(const rcluster_t *c, const char *address);
/* The connection to the node at address ("host:port"), made and kept when new (a node a
 * redirection names before the map knows it). NULL when out of memory. */
redisconn_t *rcluster_conn_for_address(rcluster_t *c, const char *address);

/* True when r is a MOVED or ASK error: *ask tells which, *slot and address ("host:port",
 * len bytes) where to go. */
bool rcluster_parse_redirect(const redisReply *r, bool *ask, int *slot, char *address,
                             size_t len);
/* True when r is an error that a cluster's changes cause and that clears by itself:
 * MOVED, ASK, TRYAGAIN, CLUSTERDOWN. A caller that cannot follow it (a script in a
 * pipelined round) treats the command as not run and retries after rcluster_ensure_map. */
bool rcluster_reply_is_redirect(const redisReply *r);

/* Runs one command given as argc arguments (lens may be NULL: strlen) on the node of key's
 * slot, following MOVED and ASK and retrying TRYAGAIN and CLUSTERDOWN, at most
 * RCLUSTER_MAX_REDIRECTS times. Returns the reply, error replies included (caller frees),
 * or NULL when no node could be reached (the reason kept; the map marked stale). */
redisReply *rcluster_command_argv(rcluster_t *c, const char *key, int argc, const char **argv,
                                  const size_t *lens);
/* The same with a hiredis format string; key is the routing key (usually the first %s). */
redisReply *rcluster_command(rcluster_t *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

redisReply *rcluster_vcommand(rcluster_t *c, const char *key, const char *fmt, va_list ap);

/* One command of a pipeline: its routing key and its arguments (lens may be NULL). */
typedef struct rcluster_cmd {
    const char *key;
    int argc;
    const char **argv;
    const size_t *lens;
} rcluster_cmd_t;

/* Runs n commands as one pipeline per node (one round trip to each node), and returns
 * their replies in order in replies[0..n-1] (caller frees each). A command redirected is
 * run again alone, as rcluster_command_argv runs it. Returns 0, or -1 when a node could
 * not be reached: the replies of the commands that did not run are NULL. */
int rcluster_pipeline(rcluster_t *c, const rcluster_cmd_t *cmds, size_t n, redisReply **replies);

/* The reason of the last failure (never NULL; "" when none). Borrowed from c. */
const char *rcluster_last_error(const rcluster_t *c);
/* True when the last failure is one that trying again does not mend (redisconn_refused:
 * a bad seed list, or a node that refused AUTH); false when nodes did not answer. */
bool rcluster_refused(const rcluster_t *c);

#endif
