/* query.h - read-only queries over the documented Redis keys (docs/redis.md): lists of
 * sagas by status and time, one saga with its history, counters and rates per definition.
 *
 * Shared by sagactl and the coordinator's dashboard API, so both show the same thing. A
 * query_t is one blocking Redis connection (common/redisconn.h), or with redis_cluster=1
 * a Redis Cluster client (common/rediscluster.h) that sends each command to the primary
 * serving its key's slot and a batch as one pipeline per primary: the answers are the
 * same. Use it from one thread at a time (the HTTP server keeps its own, never the
 * engine's). It reconnects by itself after a lost connection. Keys and fields are named
 * by rkeys.h. Nothing here writes to Redis, and nothing here scans the keyspace: every
 * key read is named from saga:meta, the indexes and saga:members.
 *
 * Results are JSON (jansson): sagactl formats them as text or prints them with --json, the
 * HTTP API serves them as they are. Numeric hash fields become JSON integers, `input`,
 * `steps` and history entries are parsed; everything else stays a string. */
#ifndef SAGA_QUERY_H
#define SAGA_QUERY_H

#include "config.h"

#include <jansson.h>
#include <stdint.h>

#define QUERY_LIMIT_DEFAULT 20
#define QUERY_LIMIT_MAX 1000
#define QUERY_RATE_SCAN_MAX 50000   /* finished sagas read for the last hour's rates */
#define QUERY_MINUTE_MS 60000
#define QUERY_HOUR_MS 3600000
#define QUERY_THROUGHPUT_BUCKETS 60  /* one per minute: the last hour */

/* Return codes of the query functions. */
#define QUERY_OK 0
#define QUERY_ERR_REDIS (-1)       /* Redis unreachable or answered an error */
#define QUERY_ERR_NOT_FOUND (-2)   /* no such saga */
#define QUERY_ERR_ARG (-3)         /* a bad filter value or cursor */

typedef struct query query_t;

typedef struct query_filter {
    /* running, compensating, stuck, finished, completed, compensated, or NULL/"" = all */
    const char *status;
    const char *definition;  /* NULL or "" = every definition */
    int64_t since_ms;        /* index score >= since_ms; 0 = no bound */
    int64_t until_ms;        /* index score <= until_ms; 0 = no bound */
    int limit;               /* 1..QUERY_LIMIT_MAX; 0 = QUERY_LIMIT_DEFAULT */
    const char *cursor;      /* next_cursor of the previous page, or NULL */
} query_filter_t;

/* Connects to the Redis of cfg (host, port, user, password, db, timeout, prefix, the
 * Sentinels, or the cluster's seed nodes; cfg is copied); on a cluster it reads the slot
 * map. redis_cluster=1 is refused with redis_db != 0 or with redis_sentinels. Returns NULL
 * with the reason in err. */
query_t *query_new(const config_t *cfg, char *err, size_t errlen);
/* Closes and frees q. NULL is accepted. */
void query_free(query_t *q);

/* The reason of the last QUERY_ERR_* (kept on q's connection; borrowed from q). */
const char *query_last_error(const query_t *q);

/* Number of input-topic partitions recorded in saga:meta (0 when no coordinator ever ran),
 * or QUERY_ERR_REDIS. */
int query_partitions(query_t *q);

/* Lists sagas newest first (by their index score: last update, stuck time or finished_at),
 * merged over every partition and the indexes the status selects. *out gets
 * {"sagas": [{id, definition, definition_version, status, step, attempt, partition,
 * created_at, updated_at, finished_at, error, score}], "next_cursor": "..." or null}
 * (new reference). Returns QUERY_OK, QUERY_ERR_ARG (bad status or cursor, reason in
 * query_last_error) or QUERY_ERR_REDIS. */
int query_list(query_t *q, const query_filter_t *f, json_t **out);

/* Finds saga id: *partition gets its partition and status (may be NULL, len bytes) its
 * status. Returns QUERY_OK, QUERY_ERR_NOT_FOUND or QUERY_ERR_REDIS. */
int query_find(query_t *q, const char *id, int *partition, char *status, size_t len,
               int64_t *version /* may be NULL: the saga's version field */);

/* One saga: *out gets {"saga": {every hash field, typed}, "history": [entries]} (new
 * reference). Returns QUERY_OK, QUERY_ERR_NOT_FOUND or QUERY_ERR_REDIS. */
int query_show(query_t *q, const char *id, json_t **out);

/* Counters per definition summed over the partitions, index sizes, and finished sagas per
 * definition in the last minute and hour (from the finished index, at now_ms). *out gets
 * {"now", "partitions", "definitions": [{definition, started, completed, compensated,
 * stuck, running, compensating, stuck_now, completed_1m, compensated_1m, completed_1h,
 * compensated_1h, finished_per_min_1m, finished_per_min_1h}], "totals": {...},
 * "indexes": {running, compensating, stuck, finished}, "rates_truncated"}.
 * Returns QUERY_OK or QUERY_ERR_REDIS. */
int query_stats(query_t *q, int64_t now_ms, json_t **out);

/* The JSON of definition name@version as coordinators recorded it (saga:definitions,
 * docs/redis.md) into *json (caller frees). Returns QUERY_OK, QUERY_ERR_ARG (no name, or
 * version < 1), QUERY_ERR_NOT_FOUND or QUERY_ERR_REDIS. */
int query_definition(query_t *q, const char *name, int version, char **json);
/* Sagas finished per minute over the last hour, from the finished index at now_ms:
 * QUERY_THROUGHPUT_BUCKETS whole minutes, the last one the current (partial) minute. Only
 * sagas of definition when it is not NULL or "". *out gets {"now", "from" (start of the
 * first minute), "bucket_ms", "definition" (absent when all), "buckets": [{"start",
 * "completed", "compensated"}] oldest first, "completed", "compensated" (the sums),
 * "truncated" (true when more than QUERY_RATE_SCAN_MAX sagas finished: the rest is not
 * counted)} (new reference). Returns QUERY_OK or QUERY_ERR_REDIS. */
int query_throughput(query_t *q, int64_t now_ms, const char *definition, json_t **out);

/* --- the cluster view (docs/operations.md, "The cluster view") --------------------- */

#define QUERY_CLUSTER_STUCK_MAX 50   /* stuck sagas query_cluster lists, newest first */

/* The whole cluster at now_ms, from the documented keys (docs/redis.md): the live
 * coordinator instances (member records listed in saga:members whose record has not
 * expired), each partition's owner (saga:{pN}:owner), sagas active (its running,
 * compensating and stuck indexes), outbox size, and input lag and sagas in memory (from
 * the owner's member record), and the stuck sagas of every partition. Pipelined: three
 * round trips after saga:meta. *out gets (new reference)
 *   {"now", "partitions_count",
 *    "members": [{instance, host, pid, version, http, started_at, last_seen,
 *                 seen_ago_ms, partitions: [{partition, lag, sagas}]}] by instance,
 *    "partitions": [{partition, owner, epoch, since, taken_ago_ms, owner_live, running,
 *                    compensating, stuck, active, outbox, lag, sagas_in_memory}],
 *    "stuck": {"count", "truncated", "sagas": [rows as query_list's]}}
 * where owner, since, taken_ago_ms, lag and sagas_in_memory are null when unknown (no
 * owner recorded; the owner not live or not reporting the partition; lag unknown to it),
 * and stuck.sagas holds at most QUERY_CLUSTER_STUCK_MAX, newest first (truncated: there
 * are more). Returns QUERY_OK or QUERY_ERR_REDIS. */
int query_cluster(query_t *q, int64_t now_ms, json_t **out);

#endif
