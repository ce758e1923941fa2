/* engine.c - the engine: partitions held in memory, rounds, pending transitions,
 * acknowledgements, input positions, dispatch to the machine, timers (see engine.h). It
 * reaches the bus through the bus port (bus.h) and includes no Kafka header.
 *
 * The order for each round of transitions is what makes the guarantees: Redis first, then
 * produce, then offsets; a crash anywhere re-does work, never loses it.
 *
 * Rounds: the transitions one turn computes are a round, written to Redis in one
 * pipeline. A turn sends its round and does not wait for it: the next turn takes and
 * computes its input while Redis works, then reads the previous round's replies,
 * produces what they confirmed and stores their offsets, then sends its own. So at most
 * one round is in flight and one open; the open one is built on the in-flight one's
 * state, which Redis's version and epoch checks make safe: when a round is refused for a
 * partition, the open round's transitions of that partition (not sent yet) are discarded
 * with its sagas, and the partition is reloaded from what Redis confirmed. Anything that
 * talks to Redis synchronously (loads, epochs, definitions, ping) settles the round in
 * flight first (settle_round). */
#include "engine.h"

#include "idmap.h"
#include "jsonw.h"
#include "log.h"
#include "machine.h"
#include "metrics.h"
#include "protocol.h"
#include "registry.h"
#include "route.h"
#include "saga_version.h"
#include "storeport.h"
#include "timers.h"
#include "vec.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COORD_RELOAD_RETRY_MS 500   /* between attempts to reload a partition */
#define COORD_FLUSH_TIMEOUT_MS 10000 /* producer flush at shutdown */
#define COORD_CATCHUP_MAX_MS 30000   /* longest a timer waits for the input before it */
#define COORD_CATCHUP_RECHECK_MS 20  /* how often a deferred timer looks again */
#define COORD_GATE_MIN_INTERVAL_MS 5 /* at most one end-of-input query per partition this often */
#define COORD_GATE_QUERY_MS 1000     /* the end-of-input query of a due timer */
#define COORD_QUERY_TIMEOUT_MS 5000  /* watermark and committed-offset queries */
#define COORD_REDIS_BACKOFF_MIN_MS 50   /* first reconnect attempt after Redis was lost */
#define COORD_REDIS_BACKOFF_MAX_MS 500  /* the longest wait between reconnect attempts */
#define COORD_REDIS_SUMMARY_MS 10000    /* a "still unavailable" line this often */
#define COORD_CHUNK 16               /* input messages handled between looks at Redis */
#define COORD_TRIM_MS 1000           /* most often an idle loop returns freed memory */
#define COORD_POSITION_EVERY_MS 100  /* a partition's position is written at most this often
                                      * (and at every hand-over and stop) */

typedef struct partition {
    int32_t id;
    bool owned;
    bool fenced;            /* another owner took our epoch: hands off until revoked */
    bool needs_reload;      /* state in memory may be wrong: reload from Redis */
    bool assigned_on_bus;   /* the bus has it assigned (engine_assigned): offsets may be stored */
    bool leased;            /* taken with a lease (engine_assign_taken, membership=redis) */
    int64_t epoch;
    idmap_t *sagas;
    bool paused;
    int64_t turn_first_offset; /* first input offset of the open round, -1 = none */
    int64_t turn_next_offset;  /* offset after the last one of the open round */
    int64_t sent_first_offset; /* the same for the round in flight */
    int64_t sent_next_offset;
    int64_t confirmed_offset;  /* next offset after the last confirmed turn, -1 = none yet */
    int64_t stored_position;   /* the position Redis held when p was taken, -1 = none */
    int64_t position_pending;  /* confirmed_offset to write to Redis next round, -1 = none */
    int64_t position_written_at; /* when the last one was queued (ms) */
    int64_t reload_at;
    /* The timer gate: no timer fires while input appended before its due time is unread,
     * so a reply that reached the topic in time always wins over the timeout, after a
     * load as after a pause of the process (see gate_open). */
    int64_t read_next;         /* offset after the last input message handled, -1 = unknown */
    int64_t gate_time;         /* input appended before this time (ms) ... */
    int64_t gate_offset;       /* ... is below this offset (the end of the input then) */
    int64_t gate_checked_at;   /* when the end was last asked for */
    int64_t gate_waiting_since;/* a due timer has been held back since, 0 = none */
    bool catching_up;          /* after a load: log when the gate offset is reached */
    int64_t loaded_at;
    int forwards_unconfirmed;  /* input of this partition forwarded to its home, in flight */
} partition_t;

/* A transition waiting for its round's Redis pipeline. */
typedef struct pending {
    saga_t *saga;                /* NULL once discarded */
    int32_t partition;
    int64_t expected_version;
    saga_status_t status;        /* the saga's status after this transition */
    int64_t avail_us;            /* its input message became available (0: a timer's) */
    json_t *history;             /* owned */
    outbox_entry_t *entries;     /* owned */
    size_t entry_count;
} pending_t;

/* What a produced message needs when its delivery report comes back. */
typedef struct delivery {
    int32_t partition;      /* input partition whose outbox holds it, -1 = not in an outbox */
    char *outbox_id;        /* NULL = not in an outbox */
    int32_t forward_from;   /* input partition it was forwarded from (route.h), -1 = none */
    bool counted;           /* counted in outbox_pending until its delivery report */
} delivery_t;

/* A round: the transitions of one turn, in queue order (their store positions). */
typedef struct round {
    pending_t *pending;
    size_t npending, cap;
    bool timer_fired;            /* holds a transition a timer caused */
} round_t;

typedef struct ack {
    int32_t partition;
    char *id;
} ack_t;

/* A reply for a saga not in memory on its home partition: Redis says whether it is a
 * late duplicate (the saga finished) or something an operator must see. */
typedef struct unknown_reply {
    const bus_message_t *km;       /* borrowed from the turn's batch */
    int32_t partition;
    char *saga_id;                 /* owned */
} unknown_reply_t;

struct engine {
    config_t cfg;
    bus_t bus;                   /* the bus port (bus.h) */
    store_port_t store;          /* the store (its self borrowed) */
    engine_env_t env;            /* the clock and the test points */
    partition_t **parts;
    size_t nparts;
    timer_heap_t timers;
    round_t open, sent;          /* being computed; written to Redis, replies unread */
    store_status_t *results;
    size_t results_cap;
    ack_t *acks;                 /* delivered, not yet acknowledged in Redis */
    size_t nacks, acks_cap;
    ack_t *sent_acks;            /* acknowledged in the round in flight */
    size_t nsent_acks, sent_acks_cap;
    const char **ack_ids;        /* one partition's ids for queue_acks */
    size_t ack_ids_cap;
    saga_t **doomed;
    size_t ndoomed, doomed_cap;
    unknown_reply_t *unknown;    /* this turn's replies for sagas not in memory */
    size_t nunknown, unknown_cap;
    int32_t routing_partitions;  /* saga:meta routing_partitions (route.h) */
    int32_t topic_partitions;    /* the input topic's partition count, as last seen */
    size_t open_forwards;        /* messages forwarded to their home in the open round */
    /* Redis availability: lost, then reconnect attempts with a bounded backoff. */
    bool redis_down;
    int64_t redis_down_since, redis_retry_at, redis_backoff_ms, redis_summary_at;
    uint64_t redis_attempts, redis_failed_rounds;
    int64_t msg_avail_us;        /* of the message being handled; 0 while timers run */
    uint64_t rng;
    jsonw_t scratch;             /* encodes outbox messages */
    engine_stats_t stats;
    /* Observability (see the section "observability" below; metrics.h): */
    metrics_t *metrics;          /* borrowed */
    bool joined;                  /* got an assignment from the group (maybe empty), or
                                   * the membership heard from Redis (membership=redis) */
    bool redis_ok;                /* the last Redis round trip succeeded */
    int64_t turns, last_publish_ms, last_redis_ms;
    int64_t outbox_pending;       /* outbox messages produced, delivery report not yet back */
    int64_t last_trim_ms;         /* trim_when_idle */
    uint64_t trim_transitions;
    int32_t *lag_partition;       /* scratch for metrics_publish */
    int64_t *lag, *lag_fallback;
    size_t lag_cap, lag_vcap, lag_fcap;
    int32_t *off_part;            /* scratch for store_offsets */
    int64_t *off_next;
    size_t off_cap, off_next_cap;
    registry_t *registry;        /* borrowed: the definitions (registry.h) */
    /* The member record (member_put; docs/redis.md, "Member records"): */
    int64_t started_ms, last_member_ms;
    char host[256];
    char http_address[256];      /* the dashboard's HOST:PORT, "" = none */
    bool fatal;                  /* a fatal bus error: stop serving (engine_turn -1) */
    bool finishing;              /* finish_everything runs: every position is due */
    char errbuf[512];            /* the bus's last error text */
};

static void settle_round(engine_t *c);
static void redis_lost(engine_t *c, const char *what);

static int64_t real_now_ms(void *opaque)
{
    (void)opaque;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* For the coordinator's own latency (saga_coordinator_latency_seconds). */
static int64_t real_mono_us(void *opaque)
{
    (void)opaque;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(const engine_t *c)
{
    return c->env.now_ms(c->env.opaque);
}

static int64_t mono_us(const engine_t *c)
{
    return c->env.mono_us(c->env.opaque);
}

/* Counts hits of a named point for the SAGA_CRASH_AT / SAGA_FREEZE_AT test hooks: true
 * when this hit is the one to act on. */
static bool test_point_hit(const char *var, const char *after_var, const char *point,
                           long *hits)
{
    const char *at = getenv(var);
    if (!at || strcmp(at, point) != 0)
        return false;
    const char *after = getenv(after_var);
    long n = after ? strtol(after, NULL, 10) : 1;
    return ++*hits == n;
}

void engine_freeze_point(const char *point)
{
    static long hits = 0;
    if (test_point_hit("SAGA_FREEZE_AT", "SAGA_FREEZE_AFTER", point, &hits)) {
        log_warn("freeze point %s reached: stopping myself (SAGA_FREEZE_AT)", point);
        raise(SIGSTOP);
        log_warn("resumed after freeze point %s", point);
    }
}

/* SAGA_FATAL_AT=POINT makes librdkafka raise a fatal error of the idempotent producer
 * there (bus.test_fatal), as a broker that fenced it would: tests check that
 * the coordinator stops serving. */
static void fatal_point(engine_t *c, const char *point)
{
    static long hits = 0;
    if (test_point_hit("SAGA_FATAL_AT", "SAGA_FATAL_AFTER", point, &hits))
        c->bus.test_fatal(c->bus.opaque);
}

void engine_crash_point(const char *point)
{
    static long hits = 0;
    if (test_point_hit("SAGA_CRASH_AT", "SAGA_CRASH_AFTER", point, &hits)) {
        log_warn("crash point %s reached: killing myself (SAGA_CRASH_AT)", point);
        raise(SIGKILL);
    }
}

/* The test points of this engine: the environment's hooks when it has them (the
 * simulation), else the process-wide ones above. */
static void crash_point(const engine_t *c, const char *point)
{
    if (c->env.crash_point)
        c->env.crash_point(c->env.opaque, point);
    else
        engine_crash_point(point);
}

static void freeze_point(const engine_t *c, const char *point)
{
    if (c->env.freeze_point)
        c->env.freeze_point(c->env.opaque, point);
    else
        engine_freeze_point(point);
}

/* --- partitions ------------------------------------------------------------------- */

static partition_t *part_get(engine_t *c, int32_t id, bool create)
{
    if (id < 0)
        return NULL;
    if ((size_t)id >= c->nparts) {
        if (!create)
            return NULL;
        size_t n = (size_t)id + 1;
        partition_t **p = realloc(c->parts, n * sizeof *p);
        if (!p)
            return NULL;
        for (size_t i = c->nparts; i < n; i++)
            p[i] = NULL;
        c->parts = p;
        c->nparts = n;
    }
    if (!c->parts[id] && create) {
        partition_t *p = calloc(1, sizeof *p);
        if (!p || !(p->sagas = idmap_new())) {
            free(p);
            return NULL;
        }
        p->id = id;
        p->turn_first_offset = p->sent_first_offset = -1;
        p->read_next = -1;
        c->parts[id] = p;
    }
    return c->parts[id];
}

static void pending_release(pending_t *pd)
{
    json_decref(pd->history);
    for (size_t k = 0; k < pd->entry_count; k++)
        outbox_entry_release(&pd->entries[k]);
    free(pd->entries);
    pd->history = NULL;
    pd->entries = NULL;
    pd->entry_count = 0;
}

/* Discards the open round's transitions of p (computed on state now in doubt): they are
 * not written, and its input of the round is read again. */
static void discard_open(engine_t *c, partition_t *p)
{
    for (size_t i = 0; i < c->open.npending; i++) {
        pending_t *pd = &c->open.pending[i];
        if (pd->partition != p->id || !pd->saga)
            continue;
        pd->saga->pending_writes--;
        pd->saga = NULL;
        pending_release(pd);
    }
    if (c->store.self)
        (void)c->store.discard_partition(c->store.self, p->id);
    p->turn_first_offset = -1;
}

/* Frees every saga of p held in memory, with the open round's transitions of p. Only
 * with no round in flight (its transitions point at these sagas). */
static void part_drop_sagas(engine_t *c, partition_t *p)
{
    discard_open(c, p);
    const char *id;
    void *v;
    for (size_t it = 0; idmap_next(p->sagas, &it, &id, &v);) {
        timers_remove(&c->timers, v);
        saga_free(v);
    }
    idmap_free(p->sagas);
    p->sagas = idmap_new();
}

static void pause_partition(engine_t *c, partition_t *p, bool pause)
{
    p->paused = pause;
    if (c->bus.pause(c->bus.opaque, p->id, pause, c->errbuf, sizeof c->errbuf) < 0)
        log_warn("partition %d: %s failed: %s", (int)p->id, pause ? "pause" : "resume",
                 c->errbuf);
}

/* --- definitions: versions, pinning, reload ------------------------------------ */

/* A start: the version it names (any known here or in Redis), else the folder's latest.
 * Returns NULL with *redis_error set when Redis could not say. */
static const definition_t *find_definition(engine_t *c, const char *name, int version,
                                           bool *redis_error)
{
    *redis_error = false;
    const definition_t *d = registry_find(c->registry, name, version);
    if (d || version <= 0 || !name)
        return d;
    int status;
    char why[512];
    settle_round(c);
    d = registry_fetch(c->registry, &c->store, name, version, NULL, &status, why, sizeof why);
    if (d)
        log_info("definition %s v%d loaded from Redis for a start naming it", name, version);
    else if (status < 0)
        *redis_error = true;
    return d;
}

typedef struct load_ctx {
    engine_t *c;
    partition_t *p;
    int failed;
    json_t *deferred;   /* hashes of sagas whose definition is fetched after the load */
} load_ctx_t;

/* Rebuilds one loaded saga on def, the exact definition it started with. */
static void adopt_loaded_saga(load_ctx_t *lc, const json_t *fields, const definition_t *def)
{
    const char *id = json_string_value(json_object_get(fields, "id"));
    const char *hash = json_string_value(json_object_get(fields, "definition_hash"));
    if (hash && *hash && strcmp(hash, def->content_hash) != 0) {
        log_msg(LOG_ERROR, id, "partition %d: saga started on %s v%d with hash %.12s, but that "
                "version here has hash %.12s; it stays in Redis untouched", (int)lc->p->id,
                def->name, def->version, hash, def->content_hash);
        lc->failed++;
        return;
    }
    char why[256];
    saga_t *s = saga_decode_fields(fields, def, why, sizeof why);
    if (!s) {
        log_msg(LOG_ERROR, id, "partition %d: cannot rebuild saga: %s", (int)lc->p->id, why);
        lc->failed++;
        return;
    }
    s->partition = lc->p->id;
    if (idmap_put(lc->p->sagas, s->id, s) < 0) {
        saga_free(s);
        lc->failed++;
        return;
    }
    (void)timers_set(&lc->c->timers, s, machine_next_timer(s));
}

/* Called while the store reads a pipeline: no Redis command may be sent from here, so a
 * saga whose definition version is not known here waits in lc->deferred. */
static void on_loaded_saga(const json_t *fields, void *opaque)
{
    load_ctx_t *lc = opaque;
    const char *name = json_string_value(json_object_get(fields, "definition"));
    const char *ver = json_string_value(json_object_get(fields, "definition_version"));
    const definition_t *def =
        name && ver && atoi(ver) > 0 ? registry_find(lc->c->registry, name, atoi(ver)) : NULL;
    if (def)
        adopt_loaded_saga(lc, fields, def);
    else if (!lc->deferred || json_array_append_new(lc->deferred, json_deep_copy(fields)) < 0)
        lc->failed++;
}

/* Rebuilds the deferred sagas on their definitions fetched from Redis. Returns 0, or -1
 * on a Redis error (the load is retried). */
static int adopt_deferred_sagas(load_ctx_t *lc)
{
    size_t i;
    json_t *fields;
    json_array_foreach(lc->deferred, i, fields)
    {
        const char *id = json_string_value(json_object_get(fields, "id"));
        const char *name = json_string_value(json_object_get(fields, "definition"));
        const char *ver = json_string_value(json_object_get(fields, "definition_version"));
        const char *hash = json_string_value(json_object_get(fields, "definition_hash"));
        int status = 1;
        char why[512] = "no definition name or version";
        const definition_t *def =
            name && ver && atoi(ver) > 0
                ? registry_fetch(lc->c->registry, &lc->c->store, name, atoi(ver), hash, &status,
                                 why, sizeof why)
                : NULL;
        if (status < 0)
            return -1;
        if (!def) {
            log_msg(LOG_ERROR, id, "partition %d: saga uses definition %s v%s, which is not "
                    "loaded and cannot be loaded from Redis (%s); it stays in Redis untouched",
                    (int)lc->p->id, name ? name : "?", ver ? ver : "?", why);
            lc->failed++;
            continue;
        }
        log_msg(LOG_INFO, id, "partition %d: runs on %s v%d (hash %.12s), loaded from Redis",
                (int)lc->p->id, def->name, def->version, def->content_hash);
        adopt_loaded_saga(lc, fields, def);
    }
    return 0;
}

int engine_reload(engine_t *c)
{
    settle_round(c);
    defn_errors_t errs = {0};
    registry_changes_t ch;
    int rc = registry_reload(c->registry, c->cfg.definitions, &c->store, &errs, &ch);
    if (rc == 0) {
        c->stats.reloads_ok++;
        log_info("definitions reloaded from %s: %zu in the folder, %zu new, %zu no longer "
                 "offered (sagas running on them keep them); reloads: %llu applied, %llu "
                 "refused", c->cfg.definitions, ch.files, ch.added, ch.removed,
                 (unsigned long long)c->stats.reloads_ok,
                 (unsigned long long)c->stats.reloads_failed);
    } else {
        c->stats.reloads_failed++;
        for (size_t i = 0; i < errs.count; i++) {
            char line[sizeof(defn_error_t) + 64];
            defn_error_format(&errs.items[i], line, sizeof line);
            log_error("reload: %s", line);
        }
        log_error("reload of %s refused: %zu error(s); nothing changed, the definitions "
                  "loaded before stay in use; reloads: %llu applied, %llu refused",
                  c->cfg.definitions, errs.count, (unsigned long long)c->stats.reloads_ok,
                  (unsigned long long)c->stats.reloads_failed);
    }
    defn_errors_release(&errs);
    return rc;
}

static void produce_entry(engine_t *c, const outbox_entry_t *e, int32_t in_partition);

static void on_loaded_outbox(const outbox_entry_t *e, void *opaque)
{
    load_ctx_t *lc = opaque;
    produce_entry(lc->c, e, lc->p->id);
    lc->c->stats.outbox_resent++;
    /* The command goes out only now: its timeout starts now. */
    char saga_id[SAGA_ID_MAX_LEN + 1], step[DEFN_MAX_NAME_LEN + 1];
    command_kind_t kind;
    int attempt;
    if (protocol_parse_command_id(e->id, saga_id, sizeof saga_id, step, sizeof step, &kind,
                                  &attempt) < 0)
        return;
    saga_t *s = idmap_get(lc->p->sagas, saga_id);
    if (s && machine_command_resent(s, definition_step_index(s->def, step), kind, attempt,
                                    now_ms(lc->c)))
        (void)timers_set(&lc->c->timers, s, machine_next_timer(s));
}

/* Where p's input is read from after a load: the confirmed position, else the one Redis
 * keeps with the state, else the group's committed offset, else the beginning (low). -1
 * when Kafka cannot say. */
static int64_t start_position(engine_t *c, partition_t *p, int64_t low)
{
    if (p->confirmed_offset >= 0)
        return p->confirmed_offset;
    if (p->stored_position >= 0)
        return p->stored_position;
    int64_t committed = -1;
    if (c->bus.committed(c->bus.opaque, p->id, COORD_QUERY_TIMEOUT_MS, &committed) < 0)
        return -1;
    return committed >= 0 ? committed : low;
}

/* Resuming from the position Redis keeps: the group's commit catches up to it, so that lag
 * tools do not show input as unread that an earlier owner handled. Only once the bus
 * has the partition assigned (engine_assigned, or a reload): a consumer refuses to store
 * offsets of a partition it is not assigned, and a first load runs before the assignment
 * (the simulation of membership=redis found a successor's commit left behind when no
 * input came after a hand-over). At assignment only for a leased partition: with the
 * group protocol the first load's catch-up stays as it was (refused by the consumer), as
 * doing it there changed the group-mode runs (docs/simulation.md, open questions). */
static void catch_up_commit(engine_t *c, partition_t *p)
{
    if (p->confirmed_offset < 0 && p->read_next >= 0 && p->read_next == p->stored_position &&
        c->bus.store_offsets(c->bus.opaque, &p->id, &p->read_next, 1, c->errbuf,
                             sizeof c->errbuf) < 0)
        log_warn("partition %d: offsets store: %s", (int)p->id, c->errbuf);
}

/* After a load, p's input from the confirmed position on is read again: its timers wait
 * until it has been (gate_open), since a reply that arrived while no one owned p must win
 * over its timeout. Finds where the input ends now, for that and for the log. */
static void start_catchup(engine_t *c, partition_t *p)
{
    p->read_next = -1;
    p->gate_time = p->gate_offset = p->gate_waiting_since = 0;
    p->catching_up = false;
    int64_t t = now_ms(c), low = 0, high = 0;
    p->gate_checked_at = t;
    if (c->bus.end_offsets(c->bus.opaque, p->id, COORD_QUERY_TIMEOUT_MS, &low, &high,
                           c->errbuf, sizeof c->errbuf) < 0) {
        log_warn("partition %d: no watermarks (%s): timers wait until the end of the input "
                 "is known", (int)p->id, c->errbuf);
        return;
    }
    p->read_next = start_position(c, p, low);
    p->gate_time = t;
    p->gate_offset = high;
    if (p->assigned_on_bus || !p->leased)
        catch_up_commit(c, p); /* the group's path: as before (refused before assignment) */
    if (p->read_next >= 0 && p->read_next < high) {
        p->catching_up = true;
        log_info("partition %d: %lld input messages to catch up on before timers fire",
                 (int)p->id, (long long)(high - p->read_next));
    }
}

/* The timer gate: may a timer of p due at `due` fire now? Only when every input message
 * appended to p before `due` has been handled, so that a reply that reached the topic in
 * time wins over the timeout whatever delayed its reading (a load, a paused or starved
 * process, a slow fetch). Asks Kafka where p's input ends (at most every
 * COORD_GATE_MIN_INTERVAL_MS) when the last answer is older than `due`: any message
 * appended before the time of the question is below that end. A timer held back longer
 * than COORD_CATCHUP_MAX_MS (Kafka unreachable, input stuck) fires anyway, said in the log:
 * a saga must not stall for good. */
static bool gate_open(engine_t *c, partition_t *p, int64_t due, int64_t now)
{
    if (p->gate_time < due && now - p->gate_checked_at >= COORD_GATE_MIN_INTERVAL_MS) {
        int64_t t = now_ms(c), low = 0, high = 0;
        p->gate_checked_at = t;
        if (c->bus.end_offsets(c->bus.opaque, p->id, COORD_GATE_QUERY_MS, &low, &high,
                               c->errbuf, sizeof c->errbuf) == 0) {
            if (p->read_next < 0)
                p->read_next = start_position(c, p, low);
            p->gate_time = t;
            p->gate_offset = high;
        }
    }
    if (p->gate_time >= due && p->read_next >= 0 && p->read_next >= p->gate_offset) {
        p->gate_waiting_since = 0;
        return true;
    }
    if (!p->gate_waiting_since)
        p->gate_waiting_since = now;
    if (now - p->gate_waiting_since < COORD_CATCHUP_MAX_MS)
        return false;
    log_warn("partition %d: the input before a due timer is still unread after %d ms (read "
             "up to %lld of %lld): its timers fire without it", (int)p->id,
             COORD_CATCHUP_MAX_MS, (long long)p->read_next, (long long)p->gate_offset);
    p->gate_waiting_since = 0;
    p->gate_time = now;
    p->gate_offset = p->read_next;
    return true;
}

/* Loads p's active sagas and re-sends its outbox. Takes a new epoch first when
 * new_epoch. Returns 0, or -1 (then p needs a reload later). */
static int partition_load(engine_t *c, partition_t *p, bool new_epoch)
{
    int64_t t0 = now_ms(c);
    part_drop_sagas(c, p);
    if (new_epoch) {
        p->epoch = 0; /* until one is taken: a failed take is retried with a new one */
        if (c->store.take_epoch(c->store.self, p->id, c->cfg.instance_id, &p->epoch) < 0)
            goto fail;
    }
    if (p->confirmed_offset < 0 &&
        c->store.read_position(c->store.self, p->id, &p->stored_position) < 0)
        goto fail;
    load_ctx_t lc = {.c = c, .p = p, .deferred = json_array()};
    int n = c->store.load_partition(c->store.self, p->id, on_loaded_saga, &lc);
    if (n < 0 || adopt_deferred_sagas(&lc) < 0) {
        json_decref(lc.deferred);
        goto fail;
    }
    json_decref(lc.deferred);
    int ob = c->store.load_outbox(c->store.self, p->id, on_loaded_outbox, &lc);
    if (ob < 0)
        goto fail;
    p->needs_reload = false;
    p->fenced = false;
    p->loaded_at = now_ms(c);
    start_catchup(c, p);
    c->redis_ok = true;
    c->stats.sagas_loaded += (uint64_t)idmap_size(p->sagas);
    c->stats.last_load_ms = now_ms(c) - t0;
    crash_point(c, "after_load");
    log_info("partition %d: epoch %lld, %d active sagas loaded, %d outbox messages re-sent in "
             "%lld ms", (int)p->id, (long long)p->epoch, (int)idmap_size(p->sagas), ob,
             (long long)(now_ms(c) - t0));
    return 0;
fail:
    c->stats.redis_errors++;
    c->redis_ok = false;
    if (c->store.ensure_connected(c->store.self) < 0)
        redis_lost(c, "loading a partition");
    else
        log_error("partition %d: cannot load from Redis (%s); will retry", (int)p->id,
                  c->store.last_error(c->store.self));
    part_drop_sagas(c, p);
    p->needs_reload = true;
    p->reload_at = now_ms(c) + COORD_RELOAD_RETRY_MS;
    return -1;
}

/* Takes p for this instance: under a new epoch taken now, or under epoch when it was
 * taken already (> 0: membership=redis took the lease with it). */
static void partition_acquire(engine_t *c, int32_t id, int64_t epoch)
{
    partition_t *p = part_get(c, id, true);
    if (!p)
        return;
    p->owned = true;
    p->assigned_on_bus = false; /* until engine_assigned */
    p->leased = epoch > 0;
    p->epoch = 0;
    p->paused = false;
    p->confirmed_offset = p->stored_position = p->position_pending = -1;
    p->turn_first_offset = p->sent_first_offset = -1;
    p->read_next = -1;
    p->forwards_unconfirmed = 0;
    if (id >= c->topic_partitions)
        c->topic_partitions = id + 1;
    c->stats.partitions_assigned++;
    p->epoch = epoch > 0 ? epoch : 0;
    (void)partition_load(c, p, epoch <= 0);
}

static void partition_release(engine_t *c, int32_t id)
{
    partition_t *p = part_get(c, id, false);
    if (!p)
        return;
    part_drop_sagas(c, p);
    p->owned = p->fenced = p->needs_reload = false;
    c->stats.partitions_revoked++;
    log_info("partition %d: released", (int)id);
}

void engine_assign(engine_t *c, const int32_t *partitions, int n)
{
    settle_round(c); /* loads need Redis, and the sagas the round points at */
    c->joined = true;
    for (int i = 0; i < n; i++)
        partition_acquire(c, partitions[i], 0);
}

void engine_assign_taken(engine_t *c, const int32_t *partitions, const int64_t *epochs, int n)
{
    settle_round(c);
    c->joined = true;
    for (int i = 0; i < n; i++)
        partition_acquire(c, partitions[i], epochs[i]);
}

void engine_set_joined(engine_t *c)
{
    c->joined = true;
}

int64_t engine_position(const engine_t *c, int32_t partition)
{
    const partition_t *p = partition >= 0 && (size_t)partition < c->nparts ? c->parts[partition]
                                                                            : NULL;
    if (!p || !p->owned)
        return -1;
    return p->confirmed_offset >= 0 ? p->confirmed_offset : p->stored_position;
}

void engine_assigned(engine_t *c, const int32_t *partitions, int n)
{
    /* A partition that could not be loaded waits, paused, for its reload. */
    for (int i = 0; i < n; i++) {
        partition_t *p = part_get(c, partitions[i], false);
        if (!p)
            continue;
        p->assigned_on_bus = true;
        if (p->owned && p->leased && !p->needs_reload)
            catch_up_commit(c, p);
        pause_partition(c, p, p->needs_reload);
    }
}

void engine_revoke(engine_t *c, const int32_t *partitions, int n)
{
    settle_round(c); /* releases drop the sagas the round points at */
    for (int i = 0; i < n; i++)
        partition_release(c, partitions[i]);
}

/* --- producing -------------------------------------------------------------------- */

void engine_on_delivery(engine_t *c, void *delivery, int32_t partition, const char *topic,
                        int err, const char *errstr)
{
    delivery_t *d = delivery;
    if (d && d->forward_from >= 0) {
        partition_t *p = part_get(c, d->forward_from, false);
        if (p && p->forwards_unconfirmed > 0)
            p->forwards_unconfirmed--;
        if (err && p && p->owned && !p->needs_reload) {
            /* Its offset is not stored: the reload reads it again and forwards it again. */
            log_error("partition %d: forwarding input to partition %d failed: %s; reloading",
                      (int)p->id, (int)partition, errstr);
            p->needs_reload = true;
            p->reload_at = now_ms(c);
        }
    }
    if (d && d->counted)
        c->outbox_pending--;
    if (err) {
        c->stats.kafka_errors++;
        log_error("delivery to %s failed: %s%s", topic, errstr,
                  d && d->outbox_id ? " (kept in the outbox: re-sent on the next load)" : "");
        /* Not acknowledged, the entry stays in the outbox; reload the partition so that it
         * is re-sent now rather than at the next rebalance. */
        partition_t *p = d ? part_get(c, d->partition, false) : NULL;
        if (p && p->owned && d->outbox_id && !p->needs_reload) {
            p->needs_reload = true;
            p->reload_at = now_ms(c);
        }
    } else if (d && d->outbox_id &&
               vec_grow((void **)&c->acks, &c->acks_cap, c->nacks + 1, sizeof *c->acks) == 0) {
        c->acks[c->nacks].partition = d->partition;
        c->acks[c->nacks].id = d->outbox_id;
        c->nacks++;
        d->outbox_id = NULL;
    }
    if (d) {
        free(d->outbox_id);
        free(d);
    }
}

void engine_on_fatal(engine_t *c)
{
    c->fatal = true;
    c->redis_ok = false; /* not ready from now on */
}

/* Produces one message; in_partition >= 0 means it is in that partition's outbox and is
 * acknowledged there once delivered. */
static void produce_raw(engine_t *c, const char *topic, int32_t partition,
                        const char *key, size_t key_len, const char *value, size_t len,
                        int32_t in_partition, const char *outbox_id, int32_t forward_from)
{
    delivery_t *d = calloc(1, sizeof *d);
    if (d) {
        d->partition = in_partition;
        d->outbox_id = outbox_id ? strdup(outbox_id) : NULL;
        d->forward_from = forward_from;
    }
    if (c->bus.produce(c->bus.opaque, topic, partition, key, key_len, value, len, forward_from,
                       d, c->errbuf, sizeof c->errbuf) < 0) {
        c->stats.kafka_errors++;
        log_error("cannot produce to %s: %s", topic, c->errbuf);
        if (forward_from >= 0) {
            partition_t *p = part_get(c, forward_from, false);
            if (p && p->owned)
                p->needs_reload = true; /* read again, forwarded again */
        }
        if (d) {
            free(d->outbox_id);
            free(d);
        }
    } else if (d && d->outbox_id) {
        d->counted = true;
        c->outbox_pending++;
    }
}

static void produce_entry(engine_t *c, const outbox_entry_t *e, int32_t in_partition)
{
    produce_raw(c, e->topic, e->partition, e->key, strlen(e->key), e->value, strlen(e->value),
                in_partition, e->id, -1);
}

static void produce_json(engine_t *c, const char *topic, const char *key, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text) {
        produce_raw(c, topic, -1, key, key ? strlen(key) : 0, text, strlen(text), -1, NULL, -1);
        free(text);
    }
}

static void dead_letter(engine_t *c, const bus_message_t *m, const char *why)
{
    c->stats.dead_letters++;
    json_t *dl = protocol_dead_letter(why, c->bus.input_topic, m->partition, m->offset, m->key,
                                      m->key_len, m->value, m->len);
    char key[SAGA_ID_MAX_LEN + 1] = "";
    if (m->key && m->key_len <= SAGA_ID_MAX_LEN)
        snprintf(key, sizeof key, "%.*s", (int)m->key_len, (const char *)m->key);
    log_msg(LOG_WARN, key[0] ? key : NULL, "input partition %d offset %lld dead-lettered: %s",
            (int)m->partition, (long long)m->offset, why);
    if (dl) {
        char *text = json_dumps(dl, JSON_COMPACT);
        if (text) {
            produce_raw(c, c->cfg.deadletter_topic, -1, m->key, m->key ? m->key_len : 0, text,
                        strlen(text), -1, NULL, -1);
            free(text);
        }
        json_decref(dl);
    }
}

/* --- transitions ------------------------------------------------------------------ */

static machine_env_t env_now(engine_t *c, int64_t now)
{
    machine_env_t env = {.now_ms = now, .rng = &c->rng, .reply_topic = c->cfg.input_topic};
    return env;
}

/* Fills an outbox entry; value (the message text, may be NULL after a failed encoding)
 * is taken over. Returns 0, or -1 when something is missing (out of memory). */
static int entry_set(outbox_entry_t *e, const char *id, const char *topic, const char *key,
                     char *value)
{
    e->id = strdup(id);
    e->topic = strdup(topic);
    e->key = strdup(key);
    e->value = value;
    e->partition = -1;
    return e->id && e->topic && e->key && e->value ? 0 : -1;
}

/* Queues the transition in res in the open round. Takes res's history; res can be
 * released by the caller after. */
static void queue_transition(engine_t *c, partition_t *p, saga_t *s, machine_result_t *res,
                             int64_t expected_version)
{
    round_t *r = &c->open;
    if (vec_grow((void **)&r->pending, &r->cap, r->npending + 1, sizeof *r->pending) < 0) {
        log_error("out of memory queueing a transition");
        p->needs_reload = true;
        return;
    }
    pending_t *pd = &r->pending[r->npending];
    memset(pd, 0, sizeof *pd);
    pd->saga = s;
    pd->partition = p->id;
    pd->expected_version = expected_version;
    pd->status = s->status;
    pd->avail_us = c->msg_avail_us;
    pd->history = res->history;
    res->history = NULL;
    size_t n = res->command_count + (res->outcome ? 1 : 0);
    pd->entries = calloc(n ? n : 1, sizeof *pd->entries);
    bool ok = pd->entries != NULL;
    for (size_t i = 0; ok && i < res->command_count; i++) {
        machine_command_t *cmd = &res->commands[i];
        ok = entry_set(&pd->entries[i], cmd->id, cmd->topic, s->id, cmd->text) == 0;
        cmd->text = NULL; /* taken over */
        pd->entry_count++;
    }
    if (ok && res->outcome) {
        char id[MACHINE_COMMAND_ID_MAX];
        snprintf(id, sizeof id, "%s/outcome/%lld", s->id, (long long)expected_version + 1);
        ok = entry_set(&pd->entries[pd->entry_count++], id, c->cfg.outcomes_topic, s->id,
                       jsonw_dump(&c->scratch, res->outcome)) == 0;
    }
    s->version = expected_version + 1;
    r->npending++;
    store_transition_t t = {.partition = p->id,
                            .epoch = p->epoch,
                            .saga = s,
                            .expected_version = expected_version,
                            .old_status = res->old_status,
                            .history = pd->history,
                            .outbox = pd->entries,
                            .outbox_count = pd->entry_count};
    if (!ok || c->store.queue_transition(c->store.self, &t) < 0) {
        log_error("partition %d: cannot queue a transition (%s); reloading", (int)p->id,
                  ok ? c->store.last_error(c->store.self) : "out of memory");
        p->needs_reload = true;
        r->npending--;
        pending_release(pd);
        return;
    }
    s->pending_writes++;
}

/* Applies a machine result: queue it when the saga changed, count it when not. */
static void apply_result(engine_t *c, partition_t *p, saga_t *s, machine_result_t *res)
{
    if (res->changed) {
        queue_transition(c, p, s, res, s->version);
        return;
    }
    switch (res->verdict) {
    case MACHINE_DUPLICATE: c->stats.duplicate_replies++; break;
    case MACHINE_LATE: c->stats.late_replies++; break;
    case MACHINE_UNEXPECTED: c->stats.unexpected_replies++; break;
    case MACHINE_NOT_APPLICABLE: c->stats.ignored_operator++; break;
    default: break;
    }
}

static void reject_start(engine_t *c, const input_msg_t *m, const char *id, const char *why)
{
    c->stats.rejected++;
    metrics_on_rejected(c->metrics, m->saga_name);
    log_msg(LOG_WARN, id, "start rejected: %s", why);
    json_t *o = machine_rejected_outcome(id, m->saga_name, m->version, why, now_ms(c));
    if (o) {
        produce_json(c, c->cfg.outcomes_topic, id, o);
        json_decref(o);
    }
}

static void handle_start(engine_t *c, partition_t *p, const bus_message_t *km,
                         input_msg_t *m, int64_t now)
{
    char id[SAGA_ID_MAX_LEN + 1];
    if (m->saga_id)
        snprintf(id, sizeof id, "%s", m->saga_id);
    else /* derived from the message's place, so a redelivery makes the same saga */
        route_generated_id(id, sizeof id, km->partition, km->offset);
    bool redis_error;
    const definition_t *def = find_definition(c, m->saga_name, m->version, &redis_error);
    char why[512];
    if (p->fenced || p->needs_reload)
        return; /* settling the round in flight put p in doubt: it is read again */
    if (redis_error) {
        /* Cannot tell whether that version exists: read the start again after a reload. */
        log_msg(LOG_ERROR, id, "partition %d: cannot look up %s v%d in Redis (%s); reloading",
                (int)p->id, m->saga_name, m->version, c->store.last_error(c->store.self));
        p->needs_reload = true;
        return;
    }
    if (!def) {
        if (m->version > 0 && registry_find(c->registry, m->saga_name, 0))
            snprintf(why, sizeof why, "saga definition \"%s\" has no version %d", m->saga_name,
                     m->version);
        else
            snprintf(why, sizeof why, "unknown saga definition \"%s\"", m->saga_name);
        reject_start(c, m, id, why);
        return;
    }
    if (definition_check_input(def, m->input, why, sizeof why) < 0) {
        reject_start(c, m, id, why);
        return;
    }
    if (idmap_get(p->sagas, id)) {
        c->stats.duplicate_starts++;
        log_msg(LOG_DEBUG, id, "duplicate start ignored: the saga is running");
        return;
    }
    saga_t *s = saga_new(id, def, p->id, m->input, now);
    if (s)
        s->creating = true;
    if (!s || idmap_put(p->sagas, s->id, s) < 0) {
        saga_free(s);
        log_msg(LOG_ERROR, id, "out of memory starting a saga");
        p->needs_reload = true;
        return;
    }
    machine_env_t env = env_now(c, now);
    machine_result_t res;
    machine_result_init(&res);
    machine_start(s, &env, &res);
    queue_transition(c, p, s, &res, 0);
    machine_result_release(&res);
}

static void handle_reply(engine_t *c, partition_t *p, const bus_message_t *km,
                         input_msg_t *m, int64_t now)
{
    saga_t *s = idmap_get(p->sagas, m->saga_id);
    char why[512];
    if (s && s->creating) {
        /* Its start is in this turn's writes and nothing was sent for it yet: the reply is
         * about an earlier saga of that id (the start may be a duplicate of a finished one,
         * and may turn out to change nothing). */
        c->stats.late_replies++;
        log_msg(LOG_DEBUG, s->id, "reply for an earlier saga of this id ignored");
        return;
    }
    if (!s) {
        /* Finished (a late duplicate, counted), or never started or expired (dead-lettered):
         * Redis says which, for all of this turn's such replies at once. */
        char *id = strdup(m->saga_id);
        if (id && vec_grow((void **)&c->unknown, &c->unknown_cap, c->nunknown + 1,
                           sizeof *c->unknown) == 0) {
            c->unknown[c->nunknown++] = (unknown_reply_t){km, p->id, id};
            return;
        }
        free(id);
        c->stats.unknown_saga_replies++;
        snprintf(why, sizeof why, "reply for saga \"%s\", which is not active on partition %d",
                 m->saga_id, (int)p->id);
        dead_letter(c, km, why);
        return;
    }
    int step = definition_step_index(s->def, m->step);
    if (step < 0) {
        c->stats.unexpected_replies++;
        snprintf(why, sizeof why, "$.step: saga \"%s\" (%s v%d) has no step \"%s\"", s->id,
                 s->def->name, s->def->version, m->step);
        dead_letter(c, km, why);
        return;
    }
    machine_reply_t r = {.step = step, .kind = m->kind, .attempt = m->attempt, .ok = m->ok,
                         .retryable = m->retryable, .output = m->output, .error = m->error};
    machine_env_t env = env_now(c, now);
    machine_result_t res;
    machine_result_init(&res);
    machine_on_reply(s, &r, &env, &res);
    if (!res.changed)
        log_msg(LOG_DEBUG, s->id, "reply %s/%s/%d ignored (verdict %d)", m->step,
                command_kind_name(m->kind), m->attempt, res.verdict);
    apply_result(c, p, s, &res);
    machine_result_release(&res);
}

static void handle_operator(engine_t *c, partition_t *p, const bus_message_t *km,
                            input_msg_t *m, int64_t now)
{
    saga_t *s = idmap_get(p->sagas, m->saga_id);
    if (s && s->creating)
        s = NULL; /* nothing was sent for it yet: the command is for an earlier saga */
    if (s && m->expected_version && m->expected_version != s->version) {
        /* The operator acted on a state that has changed since (or the command is read
         * again after a crash): acting now could skip a different compensation. */
        c->stats.ignored_operator++;
        log_msg(LOG_WARN, s->id, "%s ignored: sent for version %lld, the saga is at %lld",
                m->type == MSG_ABORT ? "abort" : m->type == MSG_RETRY ? "retry" : "skip",
                (long long)m->expected_version, (long long)s->version);
        return;
    }
    if (!s) {
        char why[512];
        c->stats.ignored_operator++;
        snprintf(why, sizeof why, "%s for saga \"%s\", which is not active on partition %d",
                 m->type == MSG_ABORT ? "abort" : m->type == MSG_RETRY ? "retry" : "skip",
                 m->saga_id, (int)p->id);
        dead_letter(c, km, why);
        return;
    }
    machine_env_t env = env_now(c, now);
    machine_result_t res;
    machine_result_init(&res);
    if (m->type == MSG_ABORT)
        machine_abort(s, m->reason, &env, &res);
    else if (m->type == MSG_RETRY)
        machine_retry(s, &env, &res);
    else
        machine_skip(s, m->reason, &env, &res);
    if (!res.changed)
        log_msg(LOG_WARN, s->id, "operator command ignored: the saga is %s",
                saga_status_name(s->status));
    apply_result(c, p, s, &res);
    machine_result_release(&res);
}

/* A start the protocol refused (bad input, version, name, ...): it cannot run, so its
 * caller gets a rejected outcome with the reason, under the id it gave or the one it
 * would have been given. A start whose saga_id itself is unusable has no id to address
 * an outcome to: it is only dead-lettered (docs/protocol.md). */
static void reject_invalid_start(engine_t *c, const bus_message_t *km,
                                 const input_msg_t *m, const char *why)
{
    if (m->refused_id_unusable) {
        dead_letter(c, km, why);
        return;
    }
    char id[SAGA_ID_MAX_LEN + 1];
    if (m->refused_id[0])
        snprintf(id, sizeof id, "%s", m->refused_id);
    else
        route_generated_id(id, sizeof id, km->partition, km->offset);
    input_msg_t named = {.type = MSG_START, .saga_name = m->refused_saga[0] ? m->refused_saga
                                                                             : NULL,
                         .version = m->refused_version};
    reject_start(c, &named, id, why);
}

/* Copies a message that landed on p to its saga's home partition (route.h). Its offset on
 * p is stored only once the copy is delivered (confirm_forwards): a crash before that
 * reads it again. A message that was forwarded once already is not forwarded again: that
 * would mean the coordinators disagree on routing, which an operator must see. */
static void forward_input(engine_t *c, partition_t *p, const bus_message_t *km,
                          const char *saga_id, int32_t home)
{
    if (km->forwarded_from >= 0) {
        char why[256];
        snprintf(why, sizeof why, "forwarded here as the home of saga \"%s\", but this "
                 "coordinator computes partition %d: do all coordinators read the same "
                 "saga:meta routing_partitions?", saga_id, (int)home);
        dead_letter(c, km, why);
        return;
    }
    c->stats.forwarded++;
    c->open_forwards++;
    p->forwards_unconfirmed++;
    log_msg(LOG_DEBUG, saga_id, "input partition %d offset %lld forwarded to partition %d, "
            "the saga's home", (int)p->id, (long long)km->offset, (int)home);
    produce_raw(c, c->bus.input_topic, home, saga_id, strlen(saga_id), km->value, km->len, -1,
                NULL, p->id);
}

/* Waits for the delivery of this round's forwarded messages, before the offsets they
 * came from are stored; a partition whose forward did not arrive reads its input again. */
static void confirm_forwards(engine_t *c)
{
    c->open_forwards = 0;
    if (c->bus.flush(c->bus.opaque, COORD_FLUSH_TIMEOUT_MS) < 0)
        log_error("forwarded input not delivered within %d ms", COORD_FLUSH_TIMEOUT_MS);
    for (size_t i = 0; i < c->nparts; i++) {
        partition_t *p = c->parts[i];
        if (p && p->forwards_unconfirmed > 0 && p->owned && !p->needs_reload) {
            p->needs_reload = true;
            p->reload_at = now_ms(c);
        }
    }
}

/* Settles this turn's replies for sagas not in memory: a saga Redis shows finished makes
 * the reply a late duplicate (counted, as by the machine); any other is dead-lettered,
 * since a participant replying to the wrong place must be visible. */
static void resolve_unknown_replies(engine_t *c)
{
    if (!c->nunknown)
        return;
    settle_round(c);
    size_t i = 0;
    while (i < c->nunknown) {
        /* One pipeline per partition: its keys share the partition's hash tag. */
        int32_t part = c->unknown[i].partition;
        size_t n = 0;
        const char *ids[64];
        size_t at[64];
        for (size_t k = i; k < c->nunknown && n < 64; k++)
            if (c->unknown[k].saga_id && c->unknown[k].partition == part) {
                ids[n] = c->unknown[k].saga_id;
                at[n++] = k;
            }
        char statuses[64][16];
        partition_t *p = part_get(c, part, false);
        bool asked = p && !p->fenced && !p->needs_reload &&
                     c->store.read_statuses(c->store.self, part, ids, n, statuses) == 0;
        for (size_t k = 0; k < n; k++) {
            unknown_reply_t *u = &c->unknown[at[k]];
            if (asked && (strcmp(statuses[k], "completed") == 0 ||
                          strcmp(statuses[k], "compensated") == 0)) {
                c->stats.late_replies++;
                log_msg(LOG_DEBUG, u->saga_id, "reply for a finished saga ignored");
            } else if (p && (p->fenced || p->needs_reload)) {
                /* Read again after the reload: nothing to say yet. */
            } else {
                char why[512];
                c->stats.unknown_saga_replies++;
                snprintf(why, sizeof why, "reply for saga \"%s\", which is not active on "
                         "partition %d (%s)", u->saga_id, (int)part,
                         !asked              ? "Redis could not say whether it finished"
                         : statuses[k][0]    ? "it is in Redis but not loaded here"
                                             : "never started, or expired");
                dead_letter(c, u->km, why);
            }
            free(u->saga_id);
            u->saga_id = NULL;
        }
        while (i < c->nunknown && !c->unknown[i].saga_id)
            i++;
        if (!asked && p && !p->fenced && !p->needs_reload && c->store.ensure_connected(c->store.self) < 0)
            redis_lost(c, "reading saga statuses");
    }
    c->nunknown = 0;
}

static void handle_message(engine_t *c, const bus_message_t *km, int64_t now)
{
    if (km->err) {
        if (!km->err_is_eof) {
            c->stats.kafka_errors++;
            log_error("consumer: %s", km->errstr ? km->errstr : "error");
        }
        return;
    }
    partition_t *p = part_get(c, km->partition, false);
    if (!p || !p->owned || p->fenced || p->needs_reload)
        return; /* not ours (any more): its offset is not stored, it will be re-read */
    c->stats.messages++;
    if (p->turn_first_offset < 0)
        p->turn_first_offset = km->offset;
    p->turn_next_offset = km->offset + 1;
    p->read_next = km->offset + 1;
    if (p->catching_up && p->read_next >= p->gate_offset) {
        log_info("partition %d: caught up %lld ms after the load", (int)p->id,
                 (long long)(now - p->loaded_at));
        p->catching_up = false;
    }

    input_msg_t m;
    char why[512];
    if (protocol_decode_input(km->value, km->len, km->key, km->key_len,
                              (size_t)c->cfg.max_message_bytes, &m, why, sizeof why) < 0) {
        if (m.refused_start)
            reject_invalid_start(c, km, &m, why);
        else
            dead_letter(c, km, why);
        return;
    }
    /* One saga per id: a message about a saga that is not here goes to the id's home
     * partition, whatever partition it landed on (route.h). */
    if (m.saga_id && !idmap_get(p->sagas, m.saga_id)) {
        int32_t home = route_home(m.saga_id, c->routing_partitions, c->topic_partitions);
        if (home != p->id) {
            forward_input(c, p, km, m.saga_id, home);
            input_msg_release(&m);
            return;
        }
    }
    switch (m.type) {
    case MSG_START: handle_start(c, p, km, &m, now); break;
    case MSG_REPLY: handle_reply(c, p, km, &m, now); break;
    default: handle_operator(c, p, km, &m, now); break;
    }
    input_msg_release(&m);
}

/* Fires every due timer once. */
static void run_timers(engine_t *c, int64_t now)
{
    saga_t *due[256];
    size_t n = 0;
    saga_t *s;
    while (n < sizeof due / sizeof *due && (s = timers_due(&c->timers, now))) {
        timers_remove(&c->timers, s);
        due[n++] = s;
    }
    for (size_t i = 0; i < n; i++) {
        s = due[i];
        partition_t *p = part_get(c, s->partition, false);
        int64_t due_at = machine_last_due(s, now); /* all that fires now must wait */
        if (due_at && !gate_open(c, p, due_at, now)) {
            c->stats.timers_held++;
            (void)timers_set(&c->timers, s, now + COORD_CATCHUP_RECHECK_MS);
            continue;
        }
        machine_env_t env = env_now(c, now);
        machine_result_t res;
        machine_result_init(&res);
        machine_on_timer(s, &env, &res);
        if (res.changed) {
            c->open.timer_fired = true;
            apply_result(c, p, s, &res);
        } else {
            /* Nothing was due after all (a stale heap entry): its next time, never a
             * time already past, which would spin. */
            int64_t next = machine_next_timer(s);
            if (next)
                (void)timers_set(&c->timers, s, next > now ? next : now + COORD_CATCHUP_RECHECK_MS);
        }
        machine_result_release(&res);
    }
}

/* --- finishing a turn ------------------------------------------------------------- */

static void log_transition(const saga_t *s, const json_t *history); /* observability */

/* A saga removed from its partition's map by its last transition: freed when the round
 * is done with (nothing later points at it), at once when there is no memory to wait. */
static void doom(engine_t *c, saga_t *s)
{
    if (vec_grow((void **)&c->doomed, &c->doomed_cap, c->ndoomed + 1, sizeof *c->doomed) == 0)
        c->doomed[c->ndoomed++] = s;
    else
        saga_free(s);
}

static void count_outcome(engine_t *c, const pending_t *pd)
{
    if (pd->expected_version == 0)
        c->stats.started++;
    switch (pd->status) {
    case SAGA_COMPLETED: c->stats.completed++; break;
    case SAGA_COMPENSATED: c->stats.compensated++; break;
    case SAGA_STUCK: c->stats.stuck++; break;
    default: break;
    }
}

/* Moves p's fetch position back to the first offset not confirmed, so that messages
 * skipped while its state was in doubt are read again. */
static void seek_to_confirmed(engine_t *c, partition_t *p)
{
    /* Nothing confirmed yet: the position Redis keeps, else the group's committed offset,
     * else the beginning (as auto.offset.reset=earliest). */
    int64_t to = p->confirmed_offset >= 0 ? p->confirmed_offset : p->stored_position;
    if (c->bus.seek(c->bus.opaque, p->id, to, c->errbuf, sizeof c->errbuf) < 0)
        log_error("partition %d: seek to %lld failed: %s", (int)p->id, (long long)to, c->errbuf);
}

/* A transition of p was refused by the epoch check. Normally another instance took p
 * over: let go. But when Redis holds an epoch lower than ours, Redis lost acknowledged
 * writes (a crash under appendfsync everysec, or a failover to a lagging replica): no one
 * else owns p, so take a new epoch and reload what Redis still has. */
static void fence_or_recover(engine_t *c, partition_t *p)
{
    int64_t stored = 0;
    if (c->store.read_epoch(c->store.self, p->id, &stored) == 0 && stored < p->epoch) {
        c->stats.redis_errors++;
        log_error("partition %d: Redis holds epoch %lld, lower than ours (%lld): it lost "
                  "acknowledged writes; taking a new epoch and reloading (docs/reliability.md)",
                  (int)p->id, (long long)stored, (long long)p->epoch);
        p->epoch = 0;
        p->needs_reload = true;
        return;
    }
    c->stats.fenced++;
    log_error("partition %d: fenced (another instance took it over); letting go", (int)p->id);
    p->fenced = true;
}

/* Queues the outbox acknowledgements of the deliveries reported so far: one HDEL per
 * partition with every delivered id, rather than one command per message. */
static void queue_acks(engine_t *c)
{
    if (c->nacks && vec_grow((void **)&c->ack_ids, &c->ack_ids_cap, c->nacks, sizeof *c->ack_ids) == 0) {
        for (size_t i = 0; i < c->nparts; i++) {
            partition_t *p = c->parts[i];
            if (!p || !p->owned || p->fenced)
                continue;
            size_t n = 0;
            for (size_t k = 0; k < c->nacks; k++)
                if (c->acks[k].partition == p->id)
                    c->ack_ids[n++] = c->acks[k].id;
            (void)c->store.queue_outbox_acks(c->store.self, p->id, p->epoch, c->ack_ids, n);
        }
    }
    /* They go with the round: if Redis never answers it, they are queued again (else the
     * delivered entries would stay in the outbox until the next load re-sent them). Without
     * memory for that they stay in the outbox: re-sent at the next load. */
    for (size_t i = 0; i < c->nacks; i++) {
        if (vec_grow((void **)&c->sent_acks, &c->sent_acks_cap, c->nsent_acks + 1,
                     sizeof *c->sent_acks) == 0)
            c->sent_acks[c->nsent_acks++] = c->acks[i];
        else
            free(c->acks[i].id);
    }
    c->nacks = 0;
}

/* The acknowledgements of the round just read: done with, or (when its replies were lost)
 * queued again for the next round. */
static void settle_acks(engine_t *c, bool lost)
{
    for (size_t i = 0; i < c->nsent_acks; i++) {
        if (lost && vec_grow((void **)&c->acks, &c->acks_cap, c->nacks + 1, sizeof *c->acks) == 0)
            c->acks[c->nacks++] = c->sent_acks[i];
        else
            free(c->sent_acks[i].id);
    }
    c->nsent_acks = 0;
}

/* Stores the input offsets of the round just completed (sent), or of the open round when
 * it wrote nothing: only for partitions whose whole part of it is confirmed. */
static void store_offsets(engine_t *c, bool sent)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nparts; i++) {
        partition_t *p = c->parts[i];
        if (!p)
            continue;
        int64_t *first = sent ? &p->sent_first_offset : &p->turn_first_offset;
        int64_t next = sent ? p->sent_next_offset : p->turn_next_offset;
        if (*first >= 0 && p->owned && !p->fenced && !p->needs_reload &&
            vec_grow((void **)&c->off_part, &c->off_cap, n + 1, sizeof *c->off_part) == 0 &&
            vec_grow((void **)&c->off_next, &c->off_next_cap, n + 1, sizeof *c->off_next) == 0) {
            c->off_part[n] = p->id;
            c->off_next[n++] = next;
            p->confirmed_offset = p->position_pending = next;
        }
        *first = -1;
    }
    if (n && c->bus.store_offsets(c->bus.opaque, c->off_part, c->off_next, n, c->errbuf,
                                  sizeof c->errbuf) < 0)
        log_warn("offsets store: %s", c->errbuf);
}

/* Reads the replies of the round in flight (if any) and acts on them: produces what
 * was confirmed, retires finished sagas, stores the offsets of the partitions whose part
 * of the round was all confirmed, and marks the others for a reload. */
static void complete_round(engine_t *c)
{
    if (!c->store.in_flight(c->store.self))
        return;
    round_t *r = &c->sent;
    size_t n = r->npending;
    if (vec_grow((void **)&c->results, &c->results_cap, n + 1, sizeof *c->results) < 0) {
        log_error("out of memory finishing a turn");
        abort(); /* cannot know what to do safely; a restart recovers everything */
    }
    int received = c->store.receive(c->store.self, c->results);
    if (received < 0) {
        c->stats.redis_errors++;
        redis_lost(c, "a round");
    }
    settle_acks(c, received < 0);
    c->redis_ok = received == 0;
    c->last_redis_ms = now_ms(c);
    if (r->timer_fired)
        crash_point(c, "after_timer_write");
    if (n) {
        crash_point(c, "after_redis_write");
        fatal_point(c, "after_redis_write");
    }

    for (size_t i = 0; i < n; i++) {
        pending_t *pd = &r->pending[i];
        partition_t *p = part_get(c, pd->partition, false);
        saga_t *s = pd->saga;
        if (!s)
            continue; /* discarded before it was sent */
        s->pending_writes--;
        switch (c->results[i]) {
        case STORE_OK:
            s->creating = false;
            c->stats.transitions++;
            c->stats.commands_sent += pd->entry_count;
            for (size_t k = 0; k < pd->entry_count; k++)
                produce_entry(c, &pd->entries[k], p->id);
            if (pd->avail_us)
                metrics_on_latency(c->metrics, (double)(mono_us(c) - pd->avail_us) / 1e6);
            count_outcome(c, pd);
            metrics_on_transition(c->metrics, s, pd->expected_version == 0, pd->status,
                                  pd->history);
            log_transition(s, pd->history);
            /* A finishing transition is a saga's last: nothing later points at it. */
            if (saga_status_is_terminal(pd->status)) {
                timers_remove(&c->timers, s);
                if (idmap_get(p->sagas, s->id) == s) {
                    idmap_remove(p->sagas, s->id);
                    doom(c, s);
                }
            } else {
                (void)timers_set(&c->timers, s, machine_next_timer(s));
            }
            break;
        case STORE_EXISTS:
            c->stats.duplicate_starts++;
            log_msg(LOG_DEBUG, s->id, "duplicate start ignored: the saga exists in Redis");
            if (s->pending_writes > 0) {
                /* The open round moved this phantom on: reload, which discards that too. */
                p->needs_reload = true;
                break;
            }
            timers_remove(&c->timers, s);
            if (idmap_get(p->sagas, s->id) == s) {
                idmap_remove(p->sagas, s->id);
                doom(c, s);
            }
            break;
        case STORE_FENCED:
            if (!p->fenced && !p->needs_reload)
                fence_or_recover(c, p);
            break;
        default:
            if (!p->needs_reload)
                log_msg(LOG_ERROR, s->id,
                        "partition %d: transition of saga %s not confirmed (%s); reloading",
                          (int)p->id, s->id,
                          c->results[i] == STORE_CONFLICT ? "version conflict"
                                                          : c->store.last_error(c->store.self));
            p->needs_reload = true;
            break;
        }
    }
    if (n)
        crash_point(c, "after_produce");

    store_offsets(c, true);

    for (size_t i = 0; i < n; i++)
        pending_release(&r->pending[i]);
    r->npending = 0;
    r->timer_fired = false;
    for (size_t i = 0; i < c->ndoomed; i++)
        saga_free(c->doomed[i]);
    c->ndoomed = 0;
}

/* Completes the round in flight now: before anything that talks to Redis synchronously. */
static void settle_round(engine_t *c)
{
    complete_round(c);
}

/* Whether p's confirmed position is to be written to Redis with this round: at most
 * every COORD_POSITION_EVERY_MS (a position is a lower bound: an older one only makes the
 * next owner read a little input again), and always when the engine finishes everything
 * (a hand-over or a stop). */
static bool position_due(const engine_t *c, const partition_t *p, int64_t now)
{
    return p->position_pending >= 0 &&
           (c->finishing || now - p->position_written_at >= COORD_POSITION_EVERY_MS);
}

/* True when a confirmed position is due to be written to Redis. */
static bool positions_pending(const engine_t *c)
{
    int64_t now = now_ms(c);
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i] && position_due(c, c->parts[i], now))
            return true;
    return false;
}

/* Queues the positions due into the open round, after its transitions and its
 * partitions' discards (the new owner of a partition resumes from the position Redis
 * keeps with its state: docs/redis.md). */
static void queue_positions(engine_t *c)
{
    int64_t now = now_ms(c);
    for (size_t i = 0; i < c->nparts; i++) {
        partition_t *p = c->parts[i];
        if (!p || !position_due(c, p, now))
            continue;
        if (p->owned && !p->fenced && !p->needs_reload &&
            c->store.queue_position(c->store.self, p->id, p->epoch, p->position_pending) < 0)
            log_warn("partition %d: position not queued: %s", (int)p->id,
                     c->store.last_error(c->store.self));
        p->position_pending = -1;
        p->position_written_at = now;
    }
}

/* Ends the open round: partitions in doubt drop their part of it with their sagas and
 * pause until reloaded (or revoked, when fenced); the rest is sent with the outbox
 * acknowledgements, without waiting. Nothing may be in flight. */
static void send_round(engine_t *c)
{
    if (c->open_forwards)
        confirm_forwards(c);
    resolve_unknown_replies(c);
    for (size_t i = 0; i < c->nparts; i++) {
        partition_t *p = c->parts[i];
        if (p && p->owned && (p->fenced || p->needs_reload) && !p->paused) {
            part_drop_sagas(c, p);
            pause_partition(c, p, true);
            p->reload_at = now_ms(c);
        }
    }
    /* Discarded transitions stay in place (no saga): positions are the store's. */
    bool talked = c->nacks > 0 || c->open.npending > 0 || positions_pending(c);
    if (c->redis_down && talked)
        return; /* kept (acknowledgements) or discarded with the partitions in doubt */
    queue_acks(c);
    queue_positions(c);
    if (!talked) {
        /* Input that changed nothing (duplicates, dead letters) has nothing to confirm. */
        store_offsets(c, false);
        return;
    }
    if (c->open.npending)
        freeze_point(c, "before_redis_write");
    for (size_t i = 0; i < c->nparts; i++) {
        partition_t *p = c->parts[i];
        if (!p)
            continue;
        p->sent_first_offset = p->turn_first_offset;
        p->sent_next_offset = p->turn_next_offset;
        p->turn_first_offset = -1;
    }
    round_t t = c->sent;
    c->sent = c->open;
    c->open = t;
    if (c->store.send(c->store.self) < 0)
        redis_lost(c, "sending a round");
}

/* Moves the rounds on: completes the round in flight when its replies are arriving (or,
 * with wait, in any case), then sends the open round if nothing is in flight. Called
 * between chunks of a turn's input, so that a round's commands go out as soon as Redis
 * confirms it rather than after the whole batch is computed, and Redis gets the next
 * round as soon as it is free. */
static void advance_rounds(engine_t *c, bool wait)
{
    if (c->store.in_flight(c->store.self) && (wait || c->store.replies_arriving(c->store.self)))
        complete_round(c);
    if (!c->store.in_flight(c->store.self))
        send_round(c);
}

/* --- observability ---------------------------------------------------------------- */

#define COORD_REDIS_PING_MS 1000  /* an idle loop checks Redis this often (for /readyz) */
#define COORD_MEMBER_REFRESH_MS 1000 /* the member record is rewritten this often ... */
#define COORD_MEMBER_TTL_MS 5000     /* ... and expires this long after (docs/redis.md) */
#define COORD_MEMBER_LATE_MS 2000    /* a busy loop settles its round to refresh it */

/* One log line, with saga_id, for the moments an operator looks for: a saga started,
 * began compensating, and how it ended (the final history entry says so). */
static void log_transition(const saga_t *s, const json_t *history)
{
    size_t i;
    const json_t *e;
    json_array_foreach(history, i, e)
    {
        const char *ev = json_string_value(json_object_get(e, "event"));
        if (!ev)
            continue;
        if (strcmp(ev, "started") == 0)
            log_msg(LOG_DEBUG, s->id, "saga started (%s v%d, partition %d)", s->def->name,
                    s->def->version, (int)s->partition);
        else if (strcmp(ev, "compensation_started") == 0)
            log_msg(LOG_INFO, s->id, "saga compensating: %s", s->error ? s->error : "");
        else if (strcmp(ev, "completed") == 0)
            log_msg(LOG_INFO, s->id, "saga completed (%s v%d)", s->def->name, s->def->version);
        else if (strcmp(ev, "compensated") == 0)
            log_msg(LOG_INFO, s->id, "saga compensated (%s v%d): %s", s->def->name,
                    s->def->version, s->error ? s->error : "");
        else if (strcmp(ev, "stuck") == 0)
            log_msg(LOG_WARN, s->id, "saga stuck, needs an operator (sagactl retry/skip): %s",
                    s->error ? s->error : "");
    }
}

/* Lag of every owned partition: high watermark (cached by librdkafka from fetches, no
 * round trip) minus the consumer's position (local). Fills c->lag*; returns the count. */
static size_t compute_lag(engine_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nparts; i++) {
        partition_t *p = c->parts[i];
        if (!p || !p->owned)
            continue;
        if (vec_grow((void **)&c->lag_partition, &c->lag_cap, n + 1, sizeof *c->lag_partition) < 0 ||
            vec_grow((void **)&c->lag, &c->lag_vcap, n + 1, sizeof *c->lag) < 0 ||
            vec_grow((void **)&c->lag_fallback, &c->lag_fcap, n + 1, sizeof *c->lag_fallback) < 0)
            return 0;
        c->lag_partition[n] = p->id;
        c->lag_fallback[n++] = p->confirmed_offset;
    }
    if (n)
        c->bus.lag(c->bus.opaque, c->lag_partition, c->lag_fallback, n, c->lag);
    return n;
}

/* After a turn that found no input: gives the memory freed since the last time back to
 * the system (malloc_trim also releases free pages inside the heap). The rounds' transient
 * buffers are freed between the sagas' long-lived blocks; without this the holes they
 * leave stay resident, a third more than the sagas themselves after a burst of starts. */
static void trim_when_idle(engine_t *c, bool idle)
{
    int64_t now = now_ms(c);
    if (!idle || now - c->last_trim_ms < COORD_TRIM_MS ||
        c->stats.transitions == c->trim_transitions)
        return;
    c->last_trim_ms = now;
    c->trim_transitions = c->stats.transitions;
    (void)malloc_trim(0);
}

/* Writes this instance's member record (store_put_member): who it is, the partitions it
 * owns, each one's input lag and sagas in memory. One pipelined round trip. Returns 0 or
 * -1 (Redis failed). */
static int member_put(engine_t *c, int64_t now)
{
    size_t n = compute_lag(c);
    json_t *parts = json_array();
    char *list = malloc(n * (JSONW_INT_MAX + 1) + 1);
    if (!parts || !list) {
        json_decref(parts);
        free(list);
        return 0; /* out of memory: not Redis's fault; the next refresh tries again */
    }
    size_t len = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        partition_t *p = part_get(c, c->lag_partition[i], false);
        if (i)
            list[len++] = ',';
        len += jsonw_format_int(list + len, c->lag_partition[i]);
        json_array_append_new(parts, json_pack("{s:i, s:o, s:I}", "partition",
                                               (int)c->lag_partition[i], "lag",
                                               c->lag[i] >= 0 ? json_integer(c->lag[i])
                                                              : json_null(),
                                               "sagas", (json_int_t)(p ? idmap_size(p->sagas) : 0)));
    }
    char *parts_json = json_dumps(parts, JSON_COMPACT);
    json_decref(parts);
    store_member_t m = {.instance = c->cfg.instance_id,
                        .host = c->host,
                        .pid = (int)getpid(),
                        .version = SAGA_VERSION,
                        .http = c->http_address,
                        .started_at = c->started_ms,
                        .last_seen = now,
                        .partitions = list,
                        .partitions_json = parts_json,
                        .ttl_ms = COORD_MEMBER_TTL_MS};
    int rc = parts_json ? c->store.put_member(c->store.self, &m) : 0;
    free(parts_json);
    free(list);
    return rc;
}

/* Ends a turn for the observers: refreshes the member record (it is the idle loop's Redis
 * check too) or checks Redis when the loop was idle, and publishes the metrics snapshot
 * for the HTTP thread at most every METRICS_PUBLISH_MS. A loop busy enough to always have
 * a round in flight settles it once the record is COORD_MEMBER_LATE_MS old: the record
 * must not lapse while the instance works. */
static void observe_turn(engine_t *c)
{
    int64_t now = now_ms(c);
    c->turns++;
    if (!c->redis_down && now - c->last_member_ms >= COORD_MEMBER_REFRESH_MS &&
        (!c->store.in_flight(c->store.self) || now - c->last_member_ms >= COORD_MEMBER_LATE_MS)) {
        settle_round(c);
        if (!c->redis_down) {
            c->redis_ok = member_put(c, now) == 0;
            c->last_member_ms = c->last_redis_ms = now;
            if (!c->redis_ok)
                redis_lost(c, "member record");
        }
    }
    if (!c->redis_down && now - c->last_redis_ms >= COORD_REDIS_PING_MS &&
        !c->store.in_flight(c->store.self)) {
        c->redis_ok = c->store.ping(c->store.self) == 0;
        c->last_redis_ms = now;
        if (!c->redis_ok)
            redis_lost(c, "ping");
    }
    if (now - c->last_publish_ms < METRICS_PUBLISH_MS)
        return;
    c->last_publish_ms = now;
    metrics_engine_t e = {.stats = c->stats,
                          .partitions_owned = engine_partitions_owned(c),
                          .sagas_in_memory = engine_sagas_in_memory(c),
                          .joined = c->joined,
                          .redis_ok = c->redis_ok,
                          .fatal = c->fatal,
                          .turns = c->turns,
                          .last_turn_ms = now,
                          .outbox_pending = c->outbox_pending,
                          .input_partitions = c->topic_partitions};
    e.lag_count = compute_lag(c);
    e.lag_partition = c->lag_partition;
    e.lag = c->lag;
    metrics_publish(c->metrics, &e);
}

/* --- Redis availability ----------------------------------------------------------- */

/* Redis did not answer (what: the operation that found out). The first time, says so
 * once and puts every owned partition in doubt: they pause, and are reloaded from Redis
 * when it is back (it may have restarted with less than we hold). Then reconnects are
 * tried with a bounded backoff (redis_reconnect), and the loop sleeps in between rather
 * than spinning or logging every failure. */
static void redis_lost(engine_t *c, const char *what)
{
    c->redis_ok = false;
    c->redis_failed_rounds++;
    if (c->redis_down)
        return;
    int64_t now = now_ms(c);
    c->redis_down = true;
    c->redis_down_since = now;
    c->redis_backoff_ms = COORD_REDIS_BACKOFF_MIN_MS;
    c->redis_retry_at = now + c->redis_backoff_ms;
    c->redis_summary_at = now + COORD_REDIS_SUMMARY_MS;
    c->redis_attempts = 0;
    c->redis_failed_rounds = 1;
    c->stats.redis_outages++;
    int n = 0;
    for (size_t i = 0; i < c->nparts; i++) {
        partition_t *p = c->parts[i];
        if (p && p->owned && !p->fenced && !p->needs_reload) {
            p->needs_reload = true;
            p->reload_at = now;
            n++;
        }
    }
    log_error("Redis unavailable (%s: %s): %d partitions wait and are reloaded when it is "
              "back; reconnecting with a backoff of up to %d ms (one line every %d s until "
              "then)", what, c->store.last_error(c->store.self), n, COORD_REDIS_BACKOFF_MAX_MS,
              COORD_REDIS_SUMMARY_MS / 1000);
}

/* While Redis is down: one reconnect attempt when its time has come. Returns how long the
 * loop may sleep before the next one (0 when Redis is back). */
static int redis_reconnect(engine_t *c, int64_t now)
{
    if (!c->redis_down)
        return 0;
    if (now < c->redis_retry_at)
        return (int)(c->redis_retry_at - now);
    settle_round(c); /* a round sent before the loss reports its errors */
    c->redis_attempts++;
    if (c->store.ensure_connected(c->store.self) == 0 && c->store.ping(c->store.self) == 0) {
        log_info("Redis available again after %lld ms (%llu reconnect attempts, %llu failed "
                 "operations); reloading the partitions", (long long)(now - c->redis_down_since),
                 (unsigned long long)c->redis_attempts,
                 (unsigned long long)c->redis_failed_rounds);
        c->redis_down = false;
        c->redis_ok = true;
        c->last_redis_ms = now;
        for (size_t i = 0; i < c->nparts; i++)
            if (c->parts[i] && c->parts[i]->needs_reload)
                c->parts[i]->reload_at = now;
        return 0;
    }
    c->redis_backoff_ms = c->redis_backoff_ms * 2 > COORD_REDIS_BACKOFF_MAX_MS
                              ? COORD_REDIS_BACKOFF_MAX_MS
                              : c->redis_backoff_ms * 2;
    c->redis_retry_at = now + c->redis_backoff_ms;
    if (now >= c->redis_summary_at) {
        c->redis_summary_at = now + COORD_REDIS_SUMMARY_MS;
        log_warn("Redis still unavailable after %lld s (%llu reconnect attempts): %s",
                 (long long)((now - c->redis_down_since) / 1000),
                 (unsigned long long)c->redis_attempts, c->store.last_error(c->store.self));
    }
    return (int)c->redis_backoff_ms;
}

/* Reloads the partitions whose state is in doubt, when their retry time came. */
static void reload_partitions(engine_t *c, int64_t now)
{
    if (c->redis_down)
        return; /* redis_reconnect first */
    for (size_t i = 0; i < c->nparts; i++) {
        partition_t *p = c->parts[i];
        if (!p || !p->owned || p->fenced || !p->needs_reload || p->reload_at > now)
            continue;
        settle_round(c);
        if (c->store.ensure_connected(c->store.self) < 0) {
            p->reload_at = now + COORD_RELOAD_RETRY_MS;
            continue;
        }
        if (partition_load(c, p, p->epoch == 0) == 0) {
            seek_to_confirmed(c, p);
            pause_partition(c, p, false);
        }
    }
}

int engine_prepare_turn(engine_t *c, int max_wait_ms)
{
    if (c->fatal)
        return -1;
    int64_t now = now_ms(c);
    int redis_wait = redis_reconnect(c, now);
    reload_partitions(c, now);
    int wait = max_wait_ms;
    if (redis_wait > 0 && redis_wait < wait)
        wait = redis_wait;
    int64_t next = timers_next(&c->timers);
    if (next) {
        int64_t until = next - now;
        if (until < wait)
            wait = until < 0 ? 0 : (int)until;
    }
    if (!c->redis_down && (c->nacks || c->store.in_flight(c->store.self)))
        wait = 0; /* a round's replies are due: read them rather than wait for input */
    return wait;
}

int engine_turn(engine_t *c, const bus_message_t *msgs, size_t n, int64_t avail_us)
{
    int64_t now = now_ms(c);
    c->msg_avail_us = avail_us;
    advance_rounds(c, false);
    for (size_t i = 0; i < n; i++) {
        handle_message(c, &msgs[i], now);
        if ((i + 1) % COORD_CHUNK == 0)
            advance_rounds(c, false);
    }
    c->msg_avail_us = 0;
    run_timers(c, now);
    advance_rounds(c, true);
    c->bus.poll(c->bus.opaque);
    observe_turn(c);
    trim_when_idle(c, n == 0 && !c->store.in_flight(c->store.self));
    return c->fatal ? -1 : 0;
}

/* --- lifecycle -------------------------------------------------------------------- */

engine_t *engine_new(const config_t *cfg, const store_port_t *store, registry_t *registry,
                     metrics_t *metrics, const bus_t *bus)
{
    engine_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->bus = *bus;
    c->store = *store;
    c->env = (engine_env_t){.now_ms = real_now_ms, .mono_us = real_mono_us};
    c->registry = registry;
    c->metrics = metrics;
    c->rng = (uint64_t)now_ms(c) ^ ((uint64_t)getpid() << 32);
    c->redis_ok = true;
    c->started_ms = now_ms(c);
    if (gethostname(c->host, sizeof c->host - 1) < 0)
        snprintf(c->host, sizeof c->host, "unknown");
    timers_init(&c->timers);
    return c;
}

void engine_set_bus(engine_t *c, const bus_t *bus)
{
    c->bus = *bus;
}

void engine_set_env(engine_t *c, const engine_env_t *env)
{
    c->env = *env;
    if (!c->env.now_ms)
        c->env.now_ms = real_now_ms;
    if (!c->env.mono_us)
        c->env.mono_us = real_mono_us;
    c->rng = env->seed ? env->seed : c->rng;
    c->started_ms = now_ms(c);
}

void engine_set_http_address(engine_t *c, const char *address)
{
    snprintf(c->http_address, sizeof c->http_address, "%s", address ? address : "");
}

void engine_set_routing(engine_t *c, int32_t routing_partitions, int32_t topic_partitions)
{
    c->routing_partitions = routing_partitions;
    if (topic_partitions > c->topic_partitions)
        c->topic_partitions = topic_partitions;
}

void engine_settle(engine_t *c)
{
    settle_round(c);
}

/* While the partitions are still ours: the open round written, everything produced
 * delivered, the deliveries acknowledged in the outboxes (else the next owner re-sends
 * them all) and the positions stored; only then may they be given up. */
static void finish_everything(engine_t *c, int flush_timeout_ms, const char *why)
{
    c->finishing = true;
    settle_round(c);
    send_round(c);
    settle_round(c); /* its commands produced, its offsets stored */
    if (c->bus.flush(c->bus.opaque, flush_timeout_ms) < 0)
        log_warn("%s: %d messages not delivered within %d ms (kept in the outbox: the next "
                 "owner re-sends them)", why, c->bus.outq_len(c->bus.opaque), flush_timeout_ms);
    send_round(c); /* the acknowledgements of what the flush delivered, the positions */
    settle_round(c);
    c->finishing = false;
}

void engine_hand_over(engine_t *c, const int32_t *partitions, int n, int flush_timeout_ms)
{
    int64_t t0 = mono_us(c);
    finish_everything(c, flush_timeout_ms, "handing over");
    engine_revoke(c, partitions, n);
    log_info("handing over %d partition(s): rounds finished and delivered in %lld us", n,
             (long long)(mono_us(c) - t0));
}

int engine_stop(engine_t *c, int flush_timeout_ms)
{
    finish_everything(c, flush_timeout_ms, "stopping");
    /* Gone from the cluster view at once, rather than when the record expires. */
    if (!c->redis_down && c->store.drop_member(c->store.self, c->cfg.instance_id) < 0)
        log_warn("stopping: member record not removed (%s); it expires within %d s",
                 c->store.last_error(c->store.self), COORD_MEMBER_TTL_MS / 1000);
    return c->fatal ? -1 : 0;
}

void engine_free(engine_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nparts; i++) {
        if (!c->parts[i])
            continue;
        part_drop_sagas(c, c->parts[i]);
        idmap_free(c->parts[i]->sagas);
        free(c->parts[i]);
    }
    free(c->parts);
    for (size_t i = 0; i < c->nacks; i++)
        free(c->acks[i].id);
    free(c->acks);
    for (size_t i = 0; i < c->nsent_acks; i++)
        free(c->sent_acks[i].id);
    free(c->sent_acks);
    free(c->ack_ids);
    round_t *rounds[] = {&c->open, &c->sent};
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < rounds[k]->npending; i++)
            pending_release(&rounds[k]->pending[i]);
        free(rounds[k]->pending);
    }
    free(c->results);
    free(c->doomed);
    for (size_t i = 0; i < c->nunknown; i++)
        free(c->unknown[i].saga_id);
    free(c->unknown);
    timers_release(&c->timers);
    jsonw_release(&c->scratch);
    free(c->lag_partition);
    free(c->lag);
    free(c->lag_fallback);
    free(c->off_part);
    free(c->off_next);
    free(c);
}

const engine_stats_t *engine_stats(const engine_t *c)
{
    return &c->stats;
}

int engine_partitions_owned(const engine_t *c)
{
    int n = 0;
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i] && c->parts[i]->owned)
            n++;
    return n;
}

size_t engine_sagas_in_memory(const engine_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i])
            n += idmap_size(c->parts[i]->sagas);
    return n;
}
