/* metrics.h - the coordinator's metrics: sagas per definition and outcome, step duration
 * histograms, the engine's counters and gauges, and the snapshot other threads read.
 *
 * Threading: the loop thread owns the live values and is the only one that calls the
 * metrics_on_* and metrics_publish functions. metrics_publish copies everything into a
 * snapshot under a mutex (the coordinator does it at most every METRICS_PUBLISH_MS); the
 * HTTP thread reads only that snapshot (metrics_render, metrics_health). So a scrape never
 * touches engine state and never waits for more than a copy.
 *
 * Series per definition and step are created up front from the loaded definitions, so
 * input (an unknown definition name in a start, say) cannot grow them: rejections of
 * definitions not loaded count under definition="(unknown)". docs/operations.md lists
 * every metric. */
#ifndef SAGA_METRICS_H
#define SAGA_METRICS_H

#include "engine.h"
#include "catalogue.h"
#include "saga.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_PUBLISH_MS 100         /* most often the loop publishes a snapshot */
#define METRICS_UNKNOWN_DEFINITION "(unknown)"
#define METRICS_MAX_LAG_PARTITIONS 4096

typedef struct metrics metrics_t;

/* What the engine reports at each publish, besides what metrics_on_* counted. */
typedef struct metrics_engine {
    engine_stats_t stats;
    int partitions_owned;
    size_t sagas_in_memory;
    bool joined;              /* the consumer got an assignment (maybe empty) */
    bool redis_ok;            /* the engine's last Redis round trip succeeded */
    bool fatal;               /* a fatal Kafka error: the instance is stopping */
    int64_t turns;            /* loop turns run */
    int64_t last_turn_ms;     /* wall clock of the last turn's end, epoch ms */
    int64_t outbox_pending;   /* outbox messages produced, Kafka's acknowledgement not back */
    int input_partitions;     /* of the input topic (metadata at start); 0 = unknown, no series */
    size_t lag_count;         /* entries of lag_partition/lag */
    const int32_t *lag_partition;  /* owned input partitions (borrowed for the call) */
    const int64_t *lag;       /* their lag in messages, -1 = unknown yet */
} metrics_engine_t;

/* The health view of the snapshot (copied out). */
typedef struct metrics_health {
    bool published;           /* at least one snapshot exists */
    int64_t last_turn_ms;
    int partitions_owned;
    bool joined;
    bool redis_ok;
    bool fatal;
    char waiting[512];        /* non-empty: start-up waits for Redis or Kafka (why) */
} metrics_health_t;

/* Creates the series of every definition in defs (borrowed for the call; names are
 * copied). Returns NULL when out of memory. */
metrics_t *metrics_new(const defn_set_t *defs);
void metrics_free(metrics_t *m);

/* Start-up, before the loop's first snapshot: what the process waits for (why: "redis:
 * cannot connect ...", copied), or NULL when it no longer waits. Health checks show it:
 * alive, not ready. Any thread. */
void metrics_set_waiting(metrics_t *m, const char *why);

/* Loop thread. A transition of s was written: created says it was the saga's first (a
 * start); status is the saga's status after it (s may have moved on since, in a later
 * round); history is the transition's entries (may be NULL). Counts outcomes and observes
 * the duration of every step action or compensation that settled in it. */
void metrics_on_transition(metrics_t *m, const saga_t *s, bool created, saga_status_t status,
                           const json_t *history);

/* Loop thread. One transition's commands were produced, seconds after its input message
 * became available to the coordinator (saga_coordinator_latency_seconds). */
void metrics_on_latency(metrics_t *m, double seconds);

/* Loop thread. A start was rejected; definition is the requested name (may be NULL). */
void metrics_on_rejected(metrics_t *m, const char *definition);

/* Loop thread. Copies the live values and e into the snapshot. */
void metrics_publish(metrics_t *m, const metrics_engine_t *e);

/* Any thread. The snapshot in the Prometheus text format 0.0.4; a malloc'd string the
 * caller frees, NULL when out of memory. *len (may be NULL) gets its length. */
char *metrics_render(metrics_t *m, size_t *len);

/* Any thread. Copies the snapshot's health fields into *out. */
void metrics_health(metrics_t *m, metrics_health_t *out);

#endif
