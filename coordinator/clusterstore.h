/* clusterstore.h - the state store on a Redis Cluster (redis_cluster=1), as a store port
 * (storeport.h) the engine, the registry and the membership use unchanged.
 *
 * Every key of a partition carries the hash tag {pN}, so a partition lives in one slot,
 * on one primary: the cluster store keeps one store (store.h, with its transition script,
 * rounds and WAIT) per primary, and binds each partition to the store of its slot's
 * primary when the engine loads it (the discard that starts every load unbinds it, and
 * the load's first call binds it by the slot map then); every later call about the
 * partition goes there until its next load. A round is the rounds of every primary's
 * store, sent together and read together; results come back in the order the transitions
 * were queued. When a primary answers with a redirection (MOVED after a slot migration
 * or a failover, ASK or TRYAGAIN during a migration, CLUSTERDOWN), the transitions there
 * report STORE_ERROR and the slot map is marked stale: the engine reloads the partition,
 * which binds it again by the new map. The keys without a tag (definitions, saga:meta,
 * member records, the alive set) go through a routed store (store_new_routed), each
 * command to its own slot. docs/redis.md, "Redis Cluster", is the operator's view. */
#ifndef SAGA_CLUSTERSTORE_H
#define SAGA_CLUSTERSTORE_H

#include "rediscluster.h"
#include "store.h"
#include "storeport.h"

typedef struct clusterstore clusterstore_t;

/* A cluster store for cfg (cfg->redis.cluster set; its seeds, AUTH and timeouts), the
 * slot map read and every primary reached. Returns NULL with the reason in err. */
clusterstore_t *clusterstore_new(const store_config_t *cfg, char *err, size_t errlen);
/* Frees cs and every store and connection it made. NULL is accepted. */
void clusterstore_free(clusterstore_t *cs);

/* cs as a store port (self is cs, borrowed). */
store_port_t clusterstore_port(clusterstore_t *cs);

/* As store.h's functions of the same names, for every primary's store. */
void clusterstore_set_lease(clusterstore_t *cs, int64_t lease_ms);
void clusterstore_set_wait_replicas(clusterstore_t *cs, int replicas);
void clusterstore_set_sync_replicas(clusterstore_t *cs, int replicas);
/* store_put_meta on the routed store. */
int clusterstore_put_meta(clusterstore_t *cs, int partitions, int *routing_partitions);
/* The routing module (borrowed): for the guards, which check every primary. */
rcluster_t *clusterstore_cluster(clusterstore_t *cs);
/* The reason of the last failure (borrowed). */
const char *clusterstore_last_error(const clusterstore_t *cs);

#endif
