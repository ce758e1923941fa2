/* coordinator.h - the coordinator engine: owns the partitions it is assigned, their
 * sagas and timers, and runs the loop turn that connects Kafka, the state machine and
 * Redis.
 *
 * One turn (coordinator_turn): take up to batch_size input messages, decide every
 * transition in memory, fire due timers, write all transitions to Redis in one pipeline,
 * then produce the commands and outcomes they recorded in the outbox, and only then store
 * the input offsets. One thread runs it; librdkafka's threads are behind its queues. */
#ifndef SAGA_COORDINATOR_H
#define SAGA_COORDINATOR_H

#include "config.h"
#include "catalogue.h"

#include <signal.h>
#include <stdint.h>

typedef struct coordinator coordinator_t;

/* Counters since start (exported as metrics). */
typedef struct coordinator_stats {
    uint64_t messages;           /* input messages taken */
    uint64_t started, completed, compensated, stuck, rejected;
    uint64_t transitions;        /* written to Redis */
    uint64_t commands_sent;
    uint64_t duplicate_starts;
    uint64_t duplicate_replies, late_replies, unexpected_replies, unknown_saga_replies;
    uint64_t ignored_operator;   /* abort of a finished saga, retry of one not stuck, ... */
    uint64_t dead_letters;
    uint64_t redis_errors, kafka_errors, fenced;
    uint64_t partitions_assigned, partitions_revoked;
    uint64_t outbox_resent;
    uint64_t sagas_loaded;
    int64_t last_load_ms;        /* time the last assignment's loading took */
    uint64_t reloads_ok;         /* definition reloads applied (SIGHUP) */
    uint64_t reloads_failed;     /* definition reloads refused: nothing changed */
    uint64_t forwarded;          /* input that landed off its saga's home partition (route.h) */
    uint64_t timers_held;        /* due timers held back until the input before them was read */
    uint64_t redis_outages;      /* times Redis became unavailable */
} coordinator_stats_t;

/* Creates the engine: connects to Redis, records the definitions there, creates the Kafka
 * consumer (not yet subscribed) and producer. defs (the definitions folder as loaded) is
 * borrowed and must outlive it. Returns NULL with the reason in err, also when a
 * definition's NAME@VERSION is recorded in Redis with other content. */
coordinator_t *coordinator_new(const config_t *cfg, defn_set_t *defs, char *err, size_t errlen);
void coordinator_free(coordinator_t *c);

/* Subscribes to the input topic. Returns 0 or -1. */
int coordinator_start(coordinator_t *c);

/* Runs one loop turn, waiting at most max_wait_ms for input. Returns 0, or -1 on a fatal
 * error (the reason is logged). */
int coordinator_turn(coordinator_t *c, int max_wait_ms);

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

/* The engine's metrics (metrics.h): the loop publishes a snapshot of them at most every
 * METRICS_PUBLISH_MS, which any thread may read (the HTTP server does). Borrowed. */
struct metrics *coordinator_metrics(coordinator_t *c);

/* Crash points for tests: when the environment variable SAGA_CRASH_AT names point, the
 * process kills itself with SIGKILL there (on hit SAGA_CRASH_AFTER, default 1). Points:
 * after_load, after_redis_write, after_timer_write, after_produce. */
void coordinator_crash_point(const char *point);

/* Freeze points for tests: when SAGA_FREEZE_AT names point, the process stops itself with
 * SIGSTOP there (on hit SAGA_FREEZE_AFTER, default 1), as a stalled zombie would; the
 * test resumes it with SIGCONT. Points: before_redis_write. */
void coordinator_freeze_point(const char *point);

#endif
