/* bench_redis.h - the benchmark's Redis layout: one redis-server, one with a replica, or
 * a Redis Cluster of N primaries (with one replica each, or none), started on free
 * loopback ports and durable as in production (AOF, fsync every second, no RDB), ready
 * (replicas in sync, cluster_state:ok everywhere) before anything is measured; and the
 * node that holds a partition's keys (its slot's primary on a cluster, found with
 * common/rediscluster.h). Every server is a child of the bench (bench_proc.h): it dies
 * with the bench however the bench ends, and bench_redis_stop stops it before. */
#ifndef SAGA_BENCH_REDIS_H
#define SAGA_BENCH_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_REDIS_MAX_PRIMARIES 8
#define BENCH_REDIS_MAX_NODES (2 * BENCH_REDIS_MAX_PRIMARIES) /* each with a replica */
#define BENCH_REDIS_SEEDS_MAX (BENCH_REDIS_MAX_NODES * 24)
#define BENCH_REDIS_NODE_TIMEOUT_MS 15000   /* cluster-node-timeout: Redis's default; the
                                             * bench kills nobody, and a busy 2-core host
                                             * must not make a primary look dead */
#define BENCH_REDIS_READY_TIMEOUT_MS 60000  /* cluster create, replicas in sync */

typedef struct bench_redis_node {
    pid_t pid;
    int port;
    bool primary;              /* serves writes (the cluster: slots) */
    redisContext *ctx;         /* the bench's own connection (INFO), no redirections */
} bench_redis_node_t;

typedef struct bench_redis {
    int cluster;               /* primaries of the cluster; 0 = no cluster */
    bool replicas;             /* one replica per primary */
    int count;
    bench_redis_node_t nodes[BENCH_REDIS_MAX_NODES]; /* primaries first */
    char seeds[BENCH_REDIS_SEEDS_MAX];               /* "127.0.0.1:P,..." of every node */
    char layout[64];           /* "single", "single + replica", "cluster 3 + replicas" */
} bench_redis_t;

/* The name of a layout into out (size bytes), as the report prints it: "single", "single
 * + replica", "cluster N", "cluster N + replicas". Returns out. */
const char *bench_redis_layout_name(char *out, size_t size, int cluster, bool replicas);

/* Starts the layout: cluster primaries (0: one plain redis-server; else 3 ..
 * BENCH_REDIS_MAX_PRIMARIES) with one replica each when replicas, their data under
 * dir/redis-I and their logs under logdir, and waits until it is ready. *r is
 * overwritten. Returns 0, or -1 with the reason in err (whatever started is stopped). */
int bench_redis_start(bench_redis_t *r, int cluster, bool replicas, const char *dir,
                      const char *logdir, char *err, size_t errlen);
/* Closes the connections and stops every server (SIGTERM, then SIGKILL). A zeroed or
 * stopped *r: no-op. */
void bench_redis_stop(bench_redis_t *r);

/* The port of the primary that holds partition's keys (hash tag {pN}, rkeys.h): the
 * only primary, or on a cluster the one serving the slot of {pN} by its slot map.
 * Returns the port, or -1 with the reason in err. */
int bench_redis_partition_port(bench_redis_t *r, int32_t partition, char *err, size_t errlen);

#endif
