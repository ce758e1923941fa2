/* guards.h - production guards checked at start-up: settings of Redis and Kafka under
 * which the coordinator's guarantees would not hold.
 *
 * Refusals (the coordinator does not start): Redis would evict saga keys (a
 * maxmemory-policy other than noeviction); Redis keeps nothing across a restart (no AOF,
 * no RDB save points) unless dev_mode says this is a development instance. Warnings: an
 * input topic with one partition (one coordinator does all the work, no spreading) or
 * with one replica (a broker loss loses sagas' input). Redis replicas are counted so that
 * the fencing-epoch bump can wait for one (WAIT) before a partition is served. */
#ifndef SAGA_GUARDS_H
#define SAGA_GUARDS_H

#include "config.h"

#include <hiredis/hiredis.h>
#include <stddef.h>

typedef struct guards_redis_report {
    char maxmemory_policy[64];
    int aof_enabled;
    int rdb_save_points;   /* number of "save" rules; -1 when CONFIG GET is not allowed */
    int replicas;          /* connected replicas */
    char address[300];     /* "host:port" read from (the primary the Sentinels named);
                            * "": redis_host:redis_port */
} guards_redis_report_t;

/* Reads what the guards need from a connected Redis. Returns 0, or -1 with the reason. */
int guards_read_redis(redisContext *rc, guards_redis_report_t *out, char *err, size_t len);

/* Decides on a report: 0 when the coordinator may start, -1 with the refusal (naming the
 * setting and how to fix it) in err. Warnings are logged. */
int guards_check_redis(const guards_redis_report_t *r, const config_t *cfg, char *err,
                       size_t len);

/* Logs warnings for an input topic of partitions partitions with replicas replicas. */
void guards_check_input_topic(const char *topic, int partitions, int replicas);

#endif
