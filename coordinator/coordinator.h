/* coordinator.h - the coordinator process: the store, the definitions, the Kafka module
 * (kafka.h) and the engine (engine.h) wired together, the loop, and a clean stop. One
 * thread runs it; librdkafka's threads are behind its queues. */
#ifndef SAGA_COORDINATOR_H
#define SAGA_COORDINATOR_H

#include "catalogue.h"
#include "config.h"
#include "engine.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct coordinator coordinator_t;
struct metrics;

/* The engine's counters (engine.h). */
typedef engine_stats_t coordinator_stats_t;

/* Creates the coordinator: connects to Redis (refusing an unsafe one), records the
 * definitions there, creates the engine and the Kafka consumer (not yet subscribed) and
 * producer. defs (the definitions folder as loaded) and metrics (metrics_new(defs): the
 * HTTP server may serve it before, while start-up waits) are borrowed and must outlive
 * it.
 * Returns NULL with the reason in err: refused for good (*unavailable false: a setting
 * Redis refuses, an unsafe Redis, a definition's NAME@VERSION recorded in Redis with other
 * content), or because Redis does not answer now (*unavailable true: down, frozen, no
 * primary during a failover; the caller waits and calls it again). */
coordinator_t *coordinator_new(const config_t *cfg, defn_set_t *defs, struct metrics *metrics,
                               char *err, size_t errlen, bool *unavailable);
void coordinator_free(coordinator_t *c);

/* The address the HTTP server listens on (HOST:PORT, copied; NULL = none): published in
 * the instance's member record for the cluster view. */
void coordinator_set_http_address(coordinator_t *c, const char *address);

/* Records the input topic's partition count in saga:meta, then subscribes to the input
 * topic (membership=kafka) or starts taking leases (membership=redis). Returns 0, or -1
 * with the reason in err; *unavailable is then true when Kafka's metadata or Redis did
 * not answer: calling it again later may succeed. */
int coordinator_start(coordinator_t *c, char *err, size_t errlen, bool *unavailable);

/* Runs turns until *stop becomes non-zero, then leaves the group cleanly: finishes the
 * turn in flight, flushes the producer, commits offsets. Returns 0 or -1. */
int coordinator_run(coordinator_t *c, volatile sig_atomic_t *stop);

/* Re-reads the definitions folder (cfg.definitions) and applies it all or not at all
 * (registry_reload): new versions are offered, sagas keep the version they run on, a
 * version whose content changed is refused. Logs what changed or every error, counts
 * reloads_ok / reloads_failed. Returns 0 when applied, -1 when refused. Call it between
 * turns. */
int coordinator_reload(coordinator_t *c);

/* coordinator_run reloads (once) whenever *flag is non-zero, and clears it: a SIGHUP
 * handler only sets it. flag may be NULL (no reloads). */
void coordinator_set_reload_flag(coordinator_t *c, volatile sig_atomic_t *flag);

const coordinator_stats_t *coordinator_stats(const coordinator_t *c);
/* Number of partitions owned and sagas in memory. */
int coordinator_partitions_owned(const coordinator_t *c);
size_t coordinator_sagas_in_memory(const coordinator_t *c);

/* The engine's metrics (metrics.h), as given to coordinator_new: the loop publishes a
 * snapshot of them at most every METRICS_PUBLISH_MS, which any thread may read (the HTTP
 * server does). Borrowed. */
struct metrics *coordinator_metrics(coordinator_t *c);

#endif
