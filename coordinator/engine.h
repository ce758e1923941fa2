/* engine.h - the engine: the partitions an instance owns, held in memory with their sagas
 * and timers; rounds of transitions written to Redis; what they emit produced on the bus;
 * input positions stored only after that. It includes no Kafka or hiredis header: the bus
 * is a port (bus.h), the store is a port (storeport.h), and the clock and the test points
 * come from an engine_env_t (the real ones unless engine_set_env says otherwise).
 *
 * One turn: engine_prepare_turn says how long the caller may wait for input (reloads and
 * reconnects happen there); the caller takes up to batch_size messages from the bus and
 * hands them to engine_turn, which decides every transition in memory, fires due timers,
 * writes the round to Redis in one pipeline, produces what the previous round recorded in
 * its outbox, and only then stores the input offsets. One thread runs it; every bus
 * callback (engine_assign, engine_on_delivery, ...) comes on that thread, from inside a
 * bus call. */
#ifndef SAGA_ENGINE_H
#define SAGA_ENGINE_H

#include "bus.h"
#include "config.h"
#include "registry.h"
#include "storeport.h"

#include <stddef.h>
#include <stdint.h>

struct metrics;

typedef struct engine engine_t;

/* Counters since start (exported as metrics). */
typedef struct engine_stats {
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
} engine_stats_t;

/* Where the engine gets the time and what it does at its test points: the real clocks
 * and engine_crash_point / engine_freeze_point by default; the simulation gives its
 * virtual clock and its own crash and freeze (tests/sim). */
typedef struct engine_env {
    void *opaque;                                  /* passed to every function */
    int64_t (*now_ms)(void *opaque);               /* wall clock, ms since 1970 */
    int64_t (*mono_us)(void *opaque);              /* monotonic clock, us */
    void (*crash_point)(void *opaque, const char *point);  /* NULL: engine_crash_point */
    void (*freeze_point)(void *opaque, const char *point); /* NULL: engine_freeze_point */
    uint64_t seed;                                 /* the engine's rng (backoff jitter); 0: keep */
} engine_env_t;

/* Creates the engine over the store port (copied; its self borrowed), registry and
 * metrics (borrowed: they outlive it; metrics may be NULL) and the bus port (copied).
 * Returns NULL when out of memory. */
engine_t *engine_new(const config_t *cfg, const store_port_t *store, registry_t *registry,
                     struct metrics *metrics, const bus_t *bus);
/* Replaces the clock and the test points (copied; NULL clocks = the real ones). Call it
 * before the engine is used. */
void engine_set_env(engine_t *e, const engine_env_t *env);
/* Frees the engine and the sagas it holds. NULL is a no-op. */
void engine_free(engine_t *e);

/* The bus port (copied): set once, before the engine is used (the bus's events need the
 * engine, so it is created first). */
void engine_set_bus(engine_t *e, const bus_t *bus);

/* The address of this instance's dashboard (HOST:PORT, copied; NULL or "" = none), for
 * its member record (docs/redis.md, "Member records"). */
void engine_set_http_address(engine_t *e, const char *address);

/* The routing partition count (saga:meta routing_partitions, route.h) and the input
 * topic's partition count now; set before any input is handed over. */
void engine_set_routing(engine_t *e, int32_t routing_partitions, int32_t topic_partitions);

/* Before a turn: reconnects Redis and reloads partitions in doubt when their time came.
 * Returns how long the caller may wait for input (ms, at most max_wait_ms), or -1 after a
 * fatal bus error (stop serving). */
int engine_prepare_turn(engine_t *e, int max_wait_ms);
/* One turn over n input messages (borrowed for the call; n may be 0). avail_us: since when
 * (CLOCK_MONOTONIC us) they were available, for saga_coordinator_latency_seconds. Returns
 * 0, or -1 after a fatal bus error. */
int engine_turn(engine_t *e, const bus_message_t *msgs, size_t n, int64_t avail_us);

/* The bus's events. engine_assign: partitions are about to be ours (each is loaded under
 * a new epoch); engine_assigned: they are (those that could not be loaded are paused for
 * their reload); engine_revoke: they are no longer ours (dropped from memory). */
void engine_assign(engine_t *e, const int32_t *partitions, int n);
void engine_assigned(engine_t *e, const int32_t *partitions, int n);
void engine_revoke(engine_t *e, const int32_t *partitions, int n);
/* membership=redis: partitions whose leases were taken, each under epochs[i] (loaded
 * under it, not under a new one); the caller assigns them on the bus at engine_position,
 * then calls engine_assigned. */
void engine_assign_taken(engine_t *e, const int32_t *partitions, const int64_t *epochs, int n);
/* membership=redis: the instance is a member (its heartbeat reached Redis), owning
 * partitions or not: ready to take some (/readyz). */
void engine_set_joined(engine_t *e);
/* Where an owned partition's input is to be read from: the confirmed position, else the
 * one Redis keeps with the state; -1 = neither (the group's committed offset, else the
 * beginning). */
int64_t engine_position(const engine_t *e, int32_t partition);
/* A hand-over: the open round written, everything produced delivered (at most
 * flush_timeout_ms) and acknowledged, positions stored, then the partitions revoked. */
void engine_hand_over(engine_t *e, const int32_t *partitions, int n, int flush_timeout_ms);
/* A delivery report: delivery is the token the engine gave bus.produce; partition and topic
 * where it went; err 0 = delivered, else errstr says why. */
void engine_on_delivery(engine_t *e, void *delivery, int32_t partition, const char *topic,
                        int err, const char *errstr);
/* A fatal bus error (the bus logged it): the engine stops serving (readyz false, turns -1). */
void engine_on_fatal(engine_t *e);

/* Completes the round in flight (before anything else talks to Redis synchronously). */
void engine_settle(engine_t *e);
/* Re-reads the definitions folder (cfg.definitions) and applies it all or not at all
 * (registry_reload): new versions are offered, sagas keep the version they run on, a
 * version whose content changed is refused. Logs what changed or every error, counts
 * reloads_ok / reloads_failed. Returns 0 when applied, -1 when refused. */
int engine_reload(engine_t *e);
/* A clean stop, while the partitions are still owned: the open round written, everything
 * produced delivered (at most flush_timeout_ms) and acknowledged in the outboxes, and the
 * member record removed (the cluster view drops the instance at once). The caller gives
 * the partitions up after. Returns 0, or -1 after a fatal bus error. */
int engine_stop(engine_t *e, int flush_timeout_ms);

const engine_stats_t *engine_stats(const engine_t *e);
/* Number of partitions owned and sagas in memory. */
int engine_partitions_owned(const engine_t *e);
size_t engine_sagas_in_memory(const engine_t *e);

/* Crash points for tests: when the environment variable SAGA_CRASH_AT names point, the
 * process kills itself with SIGKILL there (on hit SAGA_CRASH_AFTER, default 1). Points:
 * after_load, after_redis_write, after_timer_write, after_produce. */
void engine_crash_point(const char *point);

/* Freeze points for tests: when SAGA_FREEZE_AT names point, the process stops itself with
 * SIGSTOP there (on hit SAGA_FREEZE_AFTER, default 1), as a stalled zombie would; the
 * test resumes it with SIGCONT. Points: before_redis_write. */
void engine_freeze_point(const char *point);

#endif
