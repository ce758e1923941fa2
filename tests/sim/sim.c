/* sim.c - the deterministic simulation: the real engine (coordinator/engine.c) in a
 * simulated world (see sim.h, docs/simulation.md).
 *
 * The world: an event queue on a virtual clock; the store (simstore.c, a model of the
 * Redis store behind the store port); the bus (simbus.c: the input topic's partitions as
 * logs, the group's committed offsets, a client per engine instance behind the bus port);
 * command topics as delayed deliveries; participants with a ledger per idempotency key; a
 * client that starts sagas; an operator. Engine instances are the real engine, each with
 * its own store connection, bus client and definition registry, on the virtual clock:
 * their loop is engine_prepare_turn, then the input waiting (up to a batch), then
 * engine_turn, as coordinator.c's. Faults: an instance is killed at the engine's crash
 * points or in the middle of produce (its store connection and bus client drop everything
 * from then on; the world frees it and a new instance takes the partitions), frozen for a
 * while (and sometimes its partitions are taken by a new instance meanwhile: it wakes as
 * a zombie, then is revoked), its Redis connection lost before or after a round ran, the
 * Redis server down for a while, its deliveries failed. After the faults stop, the world runs to quiescence and the checker
 * looks at the participants' ledgers and the store.
 * Ownership: on half the seeds (membership=kafka) the world plays Kafka's group protocol
 * (one instance gets every partition; a frozen one's go to a new one); on the others
 * (membership=redis) each instance runs the real membership.c over its own lease
 * connection, wired as coordinator.c wires it, and the world adds joins, SIGTERM leaves
 * and Redis losing its leases, and checks that the leases hold. */
#include "sim.h"

#include "catalogue.h"
#include "config.h"
#include "definition.h"
#include "engine.h"
#include "log.h"
#include "machine.h"
#include "membership.h"
#include "registry.h"
#include "route.h"
#include "saga.h"
#include "sim_defs.h"
#include "simbus.h"
#include "simstore.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SIM_T0_MS 1700000000000LL     /* virtual epoch: timestamps look real, never 0 */
#define SIM_FAULT_MS 3000             /* faults happen in [0, SIM_FAULT_MS) */
#define SIM_MAX_MS 120000             /* a run that is not quiescent by then is a violation */
#define SIM_OPERATOR_MS 150           /* the operator looks at the store this often */
#define SIM_OPERATOR_MAX_ACTIONS 10   /* retry/skip per saga before the operator gives up */
#define SIM_MAX_STEPS 8
#define SIM_MAX_RELOADS 200           /* more partition loads than this in one run: a livelock */
#define SIM_MAX_BATCH 64              /* input messages per turn when all are there */
#define SIM_MAX_PARTITIONS 3          /* input partitions: 1..this, chosen by the seed */
#define SIM_MAX_INSTANCES 8           /* engine instances alive at once (live, zombies) */
#define SIM_POLL_MS 100               /* poll_interval_ms: the longest wait for input */
#define SIM_DEF_COUNT 3
#define SIM_INPUT_TOPIC "saga.input"
#define SIM_OUTCOMES_TOPIC "saga.outcomes"
#define SIM_DEADLETTER_TOPIC "saga.deadletter"
#define SIM_LINE_MAX 512
#define SIM_PAUSE_MIN_MS 200          /* a frozen instance (SIGSTOP, starvation) sleeps ... */
#define SIM_PAUSE_MAX_MS 4000         /* ... this long while time and the world go on */
#define SIM_ZOMBIE_CHANCE 0.5         /* a pause during which the group moves its partitions */
#define SIM_REVOKE_MAX_MS 300         /* a zombie runs this long at most before its revoke */
#define SIM_OUTAGE_MIN_MS 20          /* Redis is down ... */
#define SIM_OUTAGE_MAX_MS 1500        /* ... this long */
#define SIM_LEASE_MS 1000             /* membership=redis: lease_ms (renewals every 100 ms) */
#define SIM_FLUSH_MS 10000            /* engine_hand_over / engine_stop flush timeout */
#define SIM_LEASED_MAX_LIVE 3         /* membership=redis: instances running at once, at most */

/* --- random numbers: splitmix64, one stream per run -------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* --- the world --------------------------------------------------------------------- */

typedef enum {
    EV_INPUT,      /* a message reaches the input topic */
    EV_COMMAND,    /* a command reaches its participant */
    EV_TURN,       /* an instance's loop goes round */
    EV_RECOVER,    /* the group gives the partitions of a dead instance to a new one */
    EV_TAKEOVER,   /* ... or those of a frozen one (which becomes a zombie) */
    EV_REVOKE,     /* a zombie hears that its partitions are gone */
    EV_REDIS_UP,   /* the Redis server is reachable again */
    EV_OPERATOR,
    EV_START,
    EV_JOIN,       /* membership=redis: a new instance starts (joins) */
    EV_LEAVE       /* membership=redis: an instance gets SIGTERM (a clean leave) */
} ev_type_t;

typedef struct event {
    int64_t at;
    uint64_t seq;             /* ties broken by scheduling order */
    ev_type_t type;
    int idx;                  /* saga index (start, input), or instance id */
    int32_t part;             /* EV_INPUT: the partition, -1 = the key's */
    char *text;               /* EV_INPUT: the message (owned) */
    json_t *msg;              /* EV_COMMAND: the command (owned reference) */
} event_t;

/* What the participants keep per saga and step: one record per idempotency key, plus the
 * facts the checker needs (how often and when each effect was applied). */
typedef struct ledger {
    int act_applies;          /* times the action's effect was applied (must be <= 1) */
    uint64_t act_seq;         /* global order of the first application */
    int comp_applies;
    uint64_t comp_seq;
    bool comp_acked;          /* answered ok to a compensation (applied, tombstone or fake) */
    bool tombstone;           /* compensation before its action: nothing to undo */
    int refused;              /* actions refused because their compensation came first */
} ledger_t;

/* An outcome message as published (its text identifies it: a re-send is the same text). */
typedef struct outcome_rec {
    int idx;
    saga_status_t status;
    char *text;
} outcome_rec_t;

/* Reply cache of the participants: command_id -> the reply they gave (string); also the
 * deadline of each command as first published. */
typedef struct reply_cache {
    char **keys;
    char **vals;
    size_t cap, count;
} reply_cache_t;

struct sim;

/* One coordinator process: the real engine with its store connection, bus client and
 * registry. */
typedef struct instance {
    struct sim *w;
    int id;
    engine_t *engine;
    registry_t *registry;
    simstore_conn_t *conn;
    simbus_client_t *client;
    store_port_t store;
    simstore_conn_t *lease_conn; /* membership=redis: the leases' own connection ... */
    membership_t *membership;    /* ... and the real membership.c over it, else NULL */
    bool stopping;            /* SIGTERM: it leaves at the start of its next loop */
    bool troubled;            /* lost a round or a delivery, saw Redis down or lose leases */
    bool dead;                /* killed: freed once the engine call it is in returns */
    bool zombie;              /* its partitions went to another instance while frozen */
    int64_t frozen_until;
    int64_t turn_at;          /* its next turn, 0 = none */
    bool polling;             /* waiting for input until turn_at, prepared already */
} instance_t;

typedef struct sim {
    sim_config_t cfg;
    sim_result_t *res;
    uint64_t rng;
    uint64_t frng;            /* the faults of the engine's surroundings */
    int64_t now;
    uint64_t seq, apply_seq;
    const definition_t *defs[SIM_DEF_COUNT]; /* borrowed from defset */
    defn_set_t *defset;       /* the definitions folder every instance reads */

    /* fault intensity, chosen per seed */
    double p_crash, p_dup, p_delay, p_lost, p_late, p_retryable, p_fail, p_comp_fail,
        p_abort, p_part_crash, p_pause, p_redis_err, p_produce_fail, p_redis_down;
    bool leased;              /* membership=redis (membership.c), else the group's (the world) */
    bool redis_down;          /* the server is down now */
    double p_join, p_leave, p_lease_reset;

    event_t *evq;
    size_t evn, evcap;

    int nsagas;
    const definition_t **def_of;
    ledger_t (*led)[SIM_MAX_STEPS];

    int32_t partitions;
    simstore_t *db;
    simbus_t *bus;
    instance_t *inst[SIM_MAX_INSTANCES];
    int ninst, started;
    instance_t *live;         /* the one the group gives the partitions to, NULL: none */
    int loads;                /* partition loads, all instances */
    bool livelock;

    /* operator */
    int op_patience;          /* retry/skip per saga before giving up (<= SIM_OPERATOR_MAX_ACTIONS) */
    int *op_actions;
    int64_t *op_seen_version;

    reply_cache_t replies;
    reply_cache_t deadlines;  /* command id -> its deadline (ms), as first published */
    outcome_rec_t *outcomes;
    size_t outcn, outccap;
    int pending_deliveries;   /* events other than turns and the operator's, queued */
} sim_t;

static void *grow(void *p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *n = realloc(p, c * sz);
    if (!n)
        abort(); /* a test program: out of memory ends it */
    *cap = c;
    return n;
}

static uint64_t rnd(sim_t *w)
{
    return splitmix64(&w->rng);
}

static double rnd01(sim_t *w)
{
    return (double)(rnd(w) >> 11) / 9007199254740992.0;
}

static int64_t rnd_range(sim_t *w, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd(w) % (uint64_t)(hi - lo + 1));
}

static double frnd01(sim_t *w)
{
    return (double)(splitmix64(&w->frng) >> 11) * 0x1.0p-53;
}

static bool faults_on(const sim_t *w)
{
    return w->now < SIM_T0_MS + SIM_FAULT_MS;
}

static bool chance(sim_t *w, double p)
{
    return faults_on(w) && rnd01(w) < p;
}

/* A fault of the engine's surroundings (crash, pause, Redis, delivery), from its stream. */
static bool fault(sim_t *w, double p)
{
    return faults_on(w) && p > 0 && frnd01(w) < p;
}

/* --- trace and violations ---------------------------------------------------------- */

static void trace(sim_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(sim_t *w, const char *fmt, ...)
{
    char line[SIM_LINE_MAX];
    int n = snprintf(line, sizeof line, "%6lld ", (long long)(w->now - SIM_T0_MS));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    uint64_t h = w->res->trace_hash;
    for (const char *p = line; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001B3ULL;
    w->res->trace_hash = (h ^ '\n') * 0x100000001B3ULL;
    if (w->cfg.trace)
        fprintf(w->cfg.trace, "%s\n", line);
}

static void violate(sim_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violate(sim_t *w, const char *fmt, ...)
{
    sim_result_t *r = w->res;
    char text[SIM_VIOLATION_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (r->violations < SIM_MAX_VIOLATIONS)
        snprintf(r->violation[r->violations], SIM_VIOLATION_LEN, "%s", text);
    r->violations++;
    trace(w, "VIOLATION %s", text);
}

/* --- event queue: a binary min-heap on (at, seq) ------------------------------------ */

static bool ev_less(const event_t *a, const event_t *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void ev_push(sim_t *w, event_t e)
{
    e.seq = w->seq++;
    if (e.type != EV_TURN && e.type != EV_OPERATOR)
        w->pending_deliveries++;
    w->evq = grow(w->evq, &w->evcap, w->evn + 1, sizeof *w->evq);
    size_t i = w->evn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_less(&e, &w->evq[p]))
            break;
        w->evq[i] = w->evq[p];
        i = p;
    }
    w->evq[i] = e;
}

static event_t ev_pop(sim_t *w)
{
    event_t top = w->evq[0];
    event_t last = w->evq[--w->evn];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const event_t *best = &last;
        if (l < w->evn && ev_less(&w->evq[l], best)) {
            m = l;
            best = &w->evq[l];
        }
        if (r < w->evn && ev_less(&w->evq[r], best))
            m = r;
        if (m == i)
            break;
        w->evq[i] = w->evq[m];
        i = m;
    }
    if (w->evn)
        w->evq[i] = last;
    if (top.type != EV_TURN && top.type != EV_OPERATOR)
        w->pending_deliveries--;
    return top;
}

/* --- small helpers ---------------------------------------------------------------- */

static int saga_index(const char *id)
{
    return id && id[0] == 's' ? atoi(id + 1) : -1;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void saga_name(char *buf, size_t len, int idx)
{
    snprintf(buf, len, "s%d", idx);
}

/* The saga's home partition (route.h): where its key takes its messages. */
static int32_t home_of(const sim_t *w, int idx)
{
    char id[16];
    saga_name(id, sizeof id, idx);
    return route_home(id, w->partitions, w->partitions);
}

/* The saga's hash in the store, or NULL before its start was written. */
static const json_t *stored(const sim_t *w, int idx)
{
    char id[16];
    saga_name(id, sizeof id, idx);
    return simstore_saga_fields(w->db, home_of(w, idx), id);
}

static saga_status_t stored_status(const sim_t *w, int idx)
{
    saga_status_t st = SAGA_RUNNING;
    (void)saga_status_parse(jstr(stored(w, idx), RKEYS_F_STATUS), &st);
    return st;
}

/* A message about saga idx for the input topic, after delay: on its key's partition, or
 * on part. */
static void input_send_to(sim_t *w, int idx, int32_t part, const char *text, int64_t delay)
{
    event_t e = {.at = w->now + delay, .type = EV_INPUT, .idx = idx, .part = part,
                 .text = strdup(text)};
    ev_push(w, e);
}

static void input_send(sim_t *w, int idx, json_t *msg, int64_t delay)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    input_send_to(w, idx, -1, text, delay);
    free(text);
}

static const char *cache_get(const reply_cache_t *c, const char *key)
{
    if (!c->cap)
        return NULL;
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001B3ULL;
    for (size_t i = h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        if (!c->keys[i])
            return NULL;
        if (strcmp(c->keys[i], key) == 0)
            return c->vals[i];
    }
}

static void cache_put(reply_cache_t *c, char *key, char *val);

static void cache_rehash(reply_cache_t *c)
{
    reply_cache_t n = {.cap = c->cap ? c->cap * 2 : 256};
    n.keys = calloc(n.cap, sizeof *n.keys);
    n.vals = calloc(n.cap, sizeof *n.vals);
    if (!n.keys || !n.vals)
        abort();
    for (size_t i = 0; i < c->cap; i++)
        if (c->keys[i])
            cache_put(&n, c->keys[i], c->vals[i]);
    free(c->keys);
    free(c->vals);
    *c = n;
}

/* Takes key and val (malloc'd). The key is new. */
static void cache_put(reply_cache_t *c, char *key, char *val)
{
    if ((c->count + 1) * 2 > c->cap)
        cache_rehash(c);
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001B3ULL;
    size_t i = h & (c->cap - 1);
    while (c->keys[i])
        i = (i + 1) & (c->cap - 1);
    c->keys[i] = key;
    c->vals[i] = val;
    c->count++;
}

static void cache_release(reply_cache_t *c)
{
    for (size_t i = 0; i < c->cap; i++) {
        free(c->keys[i]);
        free(c->vals[i]);
    }
    free(c->keys);
    free(c->vals);
    memset(c, 0, sizeof *c);
}

/* --- participants ------------------------------------------------------------------ */

/* Sends a reply the way a participant's producer would, with the network's faults. */
static void reply_send(sim_t *w, int idx, const char *text, int64_t timeout_ms,
                       const char *cid)
{
    if (chance(w, w->p_lost)) {
        trace(w, "  reply %s lost", cid);
        return;
    }
    int64_t delay = rnd_range(w, 1, 15);
    if (chance(w, w->p_late))
        delay += timeout_ms + rnd_range(w, 1, 2 * timeout_ms);
    input_send_to(w, idx, -1, text, delay);
    if (chance(w, w->p_dup))
        input_send_to(w, idx, -1, text, delay + rnd_range(w, 0, timeout_ms));
}

/* A participant handles one command: de-duplication by command id (same reply) and by
 * idempotency key (apply at most once), tombstones for a compensation that came first,
 * refusal of an action whose compensation came first (docs/protocol.md). */
static void participant_handle(sim_t *w, json_t *cmd)
{
    const char *cid = jstr(cmd, "command_id");
    int idx = saga_index(jstr(cmd, "saga_id"));
    if (idx < 0 || idx >= w->nsagas)
        return;
    const definition_t *def = w->def_of[idx];
    int step = definition_step_index(def, jstr(cmd, "step"));
    bool action = strcmp(jstr(cmd, "kind"), "action") == 0;
    int64_t timeout = json_integer_value(json_object_get(cmd, "deadline")) -
                      json_integer_value(json_object_get(cmd, "sent_at"));
    if (step < 0)
        return;
    if (chance(w, w->p_part_crash)) {
        trace(w, "  participant crashed before %s", cid);
        return;
    }
    ledger_t *L = &w->led[idx][step];
    const char *cached = cache_get(&w->replies, cid);
    if (cached) {
        if (w->cfg.plant == SIM_PLANT_DOUBLE_APPLY && action && L->act_applies > 0)
            L->act_applies++; /* planted: a redelivery applied again */
        trace(w, "  participant repeats its reply to %s", cid);
        reply_send(w, idx, cached, timeout, cid);
        return;
    }
    bool ok = true, retryable = false;
    const char *error = NULL;
    const char *effect;
    if (action) {
        if (L->comp_acked) {
            ok = false;
            error = "refused: compensated already";
            L->refused++;
            effect = "refused";
        } else if (L->act_applies > 0) {
            effect = "dedup";
        } else {
            double r = rnd01(w);
            double p_fail = faults_on(w) ? w->p_fail : w->p_fail / 2;
            double p_retry = faults_on(w) ? w->p_retryable : 0;
            if (r < p_fail) {
                ok = false;
                error = "declined";
                effect = "failed";
            } else if (r < p_fail + p_retry) {
                ok = false;
                retryable = true;
                error = "busy";
                effect = "failed-retryable";
            } else {
                L->act_applies = 1;
                L->act_seq = ++w->apply_seq;
                effect = "applied";
            }
        }
    } else {
        if (L->comp_acked) {
            effect = "dedup";
        } else if (L->act_applies == 0) {
            L->tombstone = true;
            L->comp_acked = true;
            effect = "tombstone";
        } else {
            double r = rnd01(w);
            if (faults_on(w) && r < w->p_comp_fail) {
                ok = false;
                error = "cannot undo now";
                effect = "failed";
            } else if (faults_on(w) && r < 4 * w->p_comp_fail) {
                ok = false;
                retryable = true;
                error = "locked";
                effect = "failed-retryable";
            } else {
                L->comp_acked = true;
                if (w->cfg.plant != SIM_PLANT_FAKE_COMPENSATION) {
                    L->comp_applies++;
                    L->comp_seq = ++w->apply_seq;
                }
                effect = "undone";
            }
        }
    }
    json_t *reply = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:s}", "type", "reply",
                              "command_id", cid, "saga_id", jstr(cmd, "saga_id"), "step",
                              jstr(cmd, "step"), "kind", jstr(cmd, "kind"), "attempt",
                              json_object_get(cmd, "attempt"), "status", ok ? "ok" : "failed");
    if (ok) {
        json_t *out = json_object();
        if (action) {
            char id[160];
            snprintf(id, sizeof id, "%s-%s", def->steps[step].name, jstr(cmd, "saga_id"));
            json_object_set_new(out, "id", json_string(id));
        }
        json_object_set_new(reply, "output", out);
    } else {
        json_object_set_new(reply, "error", json_string(error));
        json_object_set_new(reply, "retryable", json_boolean(retryable));
    }
    char *text = json_dumps(reply, JSON_COMPACT);
    json_decref(reply);
    trace(w, "  participant %s %s", cid, effect);
    reply_send(w, idx, text, timeout, cid);
    cache_put(&w->replies, strdup(cid), text);
}

/* --- what the engine's surroundings see of it -------------------------------------- */

/* The machine-level invariant of parallel groups (machine.h): a group compensates only
 * after every step of the later groups settled, and never while one of its own steps is
 * in flight. Checked on the engine's memory after every transition. */
static void check_group_order(sim_t *w, const saga_t *s)
{
    const definition_t *d = s->def;
    for (int i = 0; i < s->step_count; i++) {
        step_phase_t ph = s->steps[i].phase;
        if (ph != STEP_COMPENSATING && ph != STEP_COMP_RETRY_WAIT)
            continue;
        for (int j = 0; j < s->step_count; j++) {
            step_phase_t pj = s->steps[j].phase;
            if (j == i || d->steps[j].group < d->steps[i].group)
                continue;
            bool busy = pj == STEP_RUNNING || pj == STEP_RETRY_WAIT ||
                        (d->steps[j].group > d->steps[i].group &&
                         (pj == STEP_COMPENSATING || pj == STEP_COMP_RETRY_WAIT ||
                          pj == STEP_COMP_PENDING));
            if (busy)
                violate(w, "saga %s: compensation of %s (group %d) in flight while %s "
                        "(group %d) is %s", s->id, d->steps[i].name, d->steps[i].group,
                        d->steps[j].name, d->steps[j].group, step_phase_name(pj));
        }
    }
}

/* The rule the timer gate keeps (engine.c, gate_open): a reply to the attempt a timer gives
 * up on, which reached the input before that attempt's deadline, is read first. Checked
 * on every timeout the engine writes, against what the instance was handed so far. The
 * deadline is the command's as first sent: a re-sent command's timer runs later, so a
 * reply in before it was in before the timer, too. */
static void check_timeout(sim_t *w, instance_t *in, const store_transition_t *t,
                          const json_t *entry)
{
    const char *ev = jstr(entry, "event");
    bool act = strcmp(ev, "action_timed_out") == 0;
    if ((!act && strcmp(ev, "compensation_timed_out") != 0) ||
        strncmp(jstr(entry, "error"), "no ", 3) != 0)
        return; /* not a timeout of its own (a saga deadline cuts actions short) */
    char cid[MACHINE_COMMAND_ID_MAX];
    machine_command_id(cid, sizeof cid, t->saga->id, jstr(entry, "step"),
                       act ? CMD_ACTION : CMD_COMPENSATION,
                       (int)json_integer_value(json_object_get(entry, "attempt")));
    const char *deadline_text = cache_get(&w->deadlines, cid);
    int64_t read = simbus_client_position(in->client, t->partition);
    if (!deadline_text || read < 0)
        return;
    int64_t deadline = atoll(deadline_text), at;
    char needle[MACHINE_COMMAND_ID_MAX + 16];
    snprintf(needle, sizeof needle, "\"%s\"", cid);
    const char *text;
    for (int64_t k = read; (text = simbus_message(w->bus, t->partition, k, &at)); k++)
        if (at < deadline && strstr(text, needle) && strstr(text, "\"reply\""))
            violate(w, "saga %s: the reply to %s reached the input at +%lld ms, before its "
                    "deadline (+%lld), and lost to the timeout", t->saga->id, cid,
                    (long long)(at - SIM_T0_MS), (long long)(deadline - SIM_T0_MS));
}

/* Every transition an instance queues (simstore_hooks_t.queued): traced, and checked on
 * the engine's memory, which the ledger cannot see. */
static void on_queued(void *opaque, const store_transition_t *t)
{
    instance_t *in = opaque;
    sim_t *w = in->w;
    trace(w, "  [%d] saga %s v%lld %s -> %s, %zu outbox entries", in->id, t->saga->id,
          (long long)t->expected_version + 1,
          t->expected_version ? saga_status_name(t->old_status) : "new",
          saga_status_name(t->saga->status), t->outbox_count);
    check_group_order(w, t->saga);
    for (size_t i = 0; i < json_array_size(t->history); i++)
        check_timeout(w, in, t, json_array_get(t->history, i));
}

/* membership=redis: a transition script call that wrote (simstore_hooks_t.written) did so
 * while the partition's lease held the writer's epoch: a frozen owner whose lease expired
 * changes nothing (store.h), checked here by the world on the server's state, not by the
 * script's own check. */
static void on_written(void *opaque, int32_t partition, int64_t epoch)
{
    instance_t *in = opaque;
    sim_t *w = in->w;
    int64_t held = 0;
    const char *holder = w->leased ? simstore_lease(w->db, partition, &held) : "";
    if (w->leased && (!holder || held != epoch))
        violate(w, "instance %d wrote partition %d under epoch %lld while the lease %s",
                in->id, (int)partition, (long long)epoch,
                holder ? "held another epoch" : "was not live");
}

static void instance_kill(sim_t *w, instance_t *in, const char *where)
{
    if (in->dead)
        return;
    in->dead = true;
    simstore_conn_kill(in->conn);
    if (in->lease_conn)
        simstore_conn_kill(in->lease_conn);
    simbus_client_kill(in->client);
    w->res->crashes++;
    trace(w, "CRASH [%d] %s", in->id, where);
}

/* The engine's crash points (engine_env_t.crash_point). */
static void on_crash_point(void *opaque, const char *point)
{
    instance_t *in = opaque;
    sim_t *w = in->w;
    if (strcmp(point, "after_load") == 0 && ++w->loads > SIM_MAX_RELOADS && !w->livelock) {
        violate(w, "livelock: partitions loaded %d times", w->loads);
        w->livelock = true;
    }
    if (!in->dead && fault(w, w->p_crash))
        instance_kill(w, in, point);
}

static void instance_pause(sim_t *w, instance_t *in);

/* The engine's freeze point, before it writes a round: the process stops there (SIGSTOP),
 * so the round reaches Redis only when it wakes, perhaps a zombie by then. The rest of
 * its turn is its first work after the pause. */
static void on_freeze_point(void *opaque, const char *point)
{
    instance_t *in = opaque;
    sim_t *w = in->w;
    if (strcmp(point, "before_redis_write") != 0 || in->dead || in->zombie ||
        !fault(w, w->p_pause))
        return;
    trace(w, "FREEZE [%d] before its Redis write", in->id);
    simstore_conn_hold(in->conn, true);
    instance_pause(w, in);
}

static int64_t clock_ms(void *opaque)
{
    instance_t *in = opaque;
    return in->w->now;
}

static int64_t clock_us(void *opaque)
{
    instance_t *in = opaque;
    return in->w->now * 1000;
}

/* A round sent on an instance's Redis connection (simstore_hooks_t.round_fate). */
static simstore_round_fate_t round_fate(void *opaque)
{
    instance_t *in = opaque;
    sim_t *w = in->w;
    if (!fault(w, w->p_redis_err))
        return SIMSTORE_ROUND_OK;
    bool before = frnd01(w) < 0.5;
    w->res->redis_errors++;
    in->troubled = true;
    trace(w, "  REDIS [%d] connection lost %s the round", in->id, before ? "before" : "after");
    return before ? SIMSTORE_ROUND_LOST_BEFORE : SIMSTORE_ROUND_LOST_AFTER;
}

/* A message an instance produces (simbus_hooks_t.fate). */
static simbus_fate_t produce_fate(void *opaque, void *client_opaque, const char *topic)
{
    sim_t *w = opaque;
    instance_t *in = client_opaque;
    if (fault(w, w->p_crash / 4)) {
        instance_kill(w, in, "in the middle of produce");
        return SIMBUS_KILLED;
    }
    if (fault(w, w->p_produce_fail)) {
        w->res->delivery_failures++;
        in->troubled = true;
        trace(w, "  [%d] delivery to %s fails", in->id, topic);
        return SIMBUS_FAIL;
    }
    return SIMBUS_DELIVER;
}

static void record_outcome(sim_t *w, const char *value)
{
    json_t *m = json_loads(value, 0, NULL);
    int idx = saga_index(jstr(m, "saga_id"));
    if (idx >= 0 && idx < w->nsagas) {
        w->outcomes = grow(w->outcomes, &w->outccap, w->outcn + 1, sizeof *w->outcomes);
        outcome_rec_t *o = &w->outcomes[w->outcn++];
        o->idx = idx;
        o->status = SAGA_RUNNING;
        (void)saga_status_parse(jstr(m, "status"), &o->status);
        o->text = strdup(value);
        trace(w, "  outcome s%d %s", idx, jstr(m, "status"));
    } else {
        violate(w, "an outcome for no saga of the run: %.120s", value);
    }
    json_decref(m);
}

/* A command travels to its participant with the network's faults. */
static void send_command(sim_t *w, const char *value)
{
    json_t *msg = json_loads(value, 0, NULL);
    const char *cid = jstr(msg, "command_id");
    w->res->commands++;
    json_int_t deadline = json_integer_value(json_object_get(msg, "deadline"));
    int64_t timeout = deadline - json_integer_value(json_object_get(msg, "sent_at"));
    if (!cache_get(&w->deadlines, cid)) {
        char text[32];
        snprintf(text, sizeof text, "%lld", (long long)deadline);
        cache_put(&w->deadlines, strdup(cid), strdup(text));
    }
    int64_t delay = rnd_range(w, 1, 10);
    if (chance(w, w->p_delay))
        delay += rnd_range(w, 1, 2 * timeout);
    trace(w, "  send %s", cid);
    event_t ev = {.at = w->now + delay, .type = EV_COMMAND, .msg = json_incref(msg)};
    ev_push(w, ev);
    if (chance(w, w->p_dup)) {
        event_t d = {.at = w->now + delay + rnd_range(w, 0, 2 * timeout), .type = EV_COMMAND,
                     .msg = json_incref(msg)};
        ev_push(w, d);
    }
    json_decref(msg);
}

/* A message reached a topic other than the input (simbus_hooks_t.publish). */
static void on_publish(void *opaque, const char *topic, const char *key, const char *value)
{
    sim_t *w = opaque;
    if (strcmp(topic, SIM_OUTCOMES_TOPIC) == 0)
        record_outcome(w, value);
    else if (strcmp(topic, SIM_DEADLETTER_TOPIC) == 0)
        trace(w, "  dead letter %s: %.200s", key, value);
    else
        send_command(w, value);
}

static int64_t bus_clock(void *opaque)
{
    sim_t *w = opaque;
    return w->now;
}

/* --- engine instances ------------------------------------------------------------- */

static void turn_at(sim_t *w, instance_t *in, int64_t at)
{
    if (at < w->now)
        at = w->now;
    if (at < in->frozen_until)
        at = in->frozen_until;
    if (in->turn_at && in->turn_at <= at)
        return;
    in->turn_at = at;
    event_t e = {.at = at, .type = EV_TURN, .idx = in->id};
    ev_push(w, e);
}

static instance_t *instance_by_id(const sim_t *w, int id)
{
    for (int i = 0; i < w->ninst; i++)
        if (w->inst[i]->id == id)
            return w->inst[i];
    return NULL;
}

/* Frees an instance as the end of its process: its reports served (failed), its engine,
 * its registry, its connection. Counts what its engine did. */
static void instance_free(sim_t *w, instance_t *in)
{
    size_t fenced = simstore_conn_count(in->conn, STORE_FENCED);
    size_t conflicts = simstore_conn_count(in->conn, STORE_CONFLICT);
    /* With leases any instance may write once after its lease lapsed (a pause, Redis down
     * or restarted, a beat late): FENCED is then the lease check doing its work. */
    if (conflicts || (fenced && !in->zombie && !in->membership))
        violate(w, "instance %d: the store refused %zu transitions as fenced and %zu as "
                "conflicting, with %s", in->id, fenced, conflicts,
                in->zombie ? "its partitions gone" : "a single owner");
    const engine_stats_t *st = engine_stats(in->engine);
    w->res->transitions += st->transitions;
    w->res->outbox_resent += st->outbox_resent;
    w->res->timers_held += st->timers_held;
    w->res->fenced += st->fenced;
    simbus_client_free(in->client);
    engine_free(in->engine);
    membership_free(in->membership);
    registry_free(in->registry);
    simstore_conn_free(in->conn);
    simstore_conn_free(in->lease_conn);
    for (int i = 0; i < w->ninst; i++)
        if (w->inst[i] == in)
            w->inst[i] = w->inst[--w->ninst];
    if (w->live == in)
        w->live = NULL;
    free(in);
}

/* After every engine call: a killed instance is freed, and when it was the one owning
 * the partitions, the group gives them to a new one after its session times out. Returns
 * true when in is gone. */
static bool reap(sim_t *w, instance_t *in)
{
    if (!in->dead)
        return false;
    if (w->live == in || in->membership) { /* leased: its process is restarted */
        event_t e = {.at = w->now + rnd_range(w, 5, 400), .type = EV_RECOVER};
        ev_push(w, e);
    }
    instance_free(w, in);
    return true;
}

static int64_t membership_clock(void *opaque)
{
    instance_t *in = opaque;
    return in->w->now;
}

/* membership=redis: leases taken become the engine's partitions, read from where the
 * engine says; leases given up stop being read (coordinator.c's on_take, on_give_up). */
static void on_take(void *opaque, const int32_t *partitions, const int64_t *epochs, int n)
{
    instance_t *in = opaque;
    sim_t *w = in->w;
    for (int i = 0; i < n; i++)
        trace(w, "LEASE [%d] takes partition %d with epoch %lld", in->id, (int)partitions[i],
              (long long)epochs[i]);
    engine_assign_taken(in->engine, partitions, epochs, n);
    int64_t offsets[SIM_MAX_PARTITIONS];
    for (int i = 0; i < n && i < SIM_MAX_PARTITIONS; i++)
        offsets[i] = engine_position(in->engine, partitions[i]);
    simbus_client_assign_at(in->client, partitions, offsets, n);
    engine_assigned(in->engine, partitions, n);
}

static void on_give_up(void *opaque, const int32_t *partitions, int n, bool clean)
{
    instance_t *in = opaque;
    sim_t *w = in->w;
    for (int i = 0; i < n; i++)
        trace(w, "LEASE [%d] %s partition %d", in->id, clean ? "hands over" : "lost",
              (int)partitions[i]);
    if (clean) {
        /* A hand-over finishes the rounds and deliveries under the lease it still holds:
         * nothing fenced, nothing left in flight or unreported (engine.h). */
        w->res->hand_overs += (uint64_t)n;
        size_t fenced = simstore_conn_count(in->conn, STORE_FENCED);
        engine_hand_over(in->engine, partitions, n, SIM_FLUSH_MS);
        if (!in->dead && simstore_conn_count(in->conn, STORE_FENCED) > fenced)
            violate(w, "instance %d: a hand-over's writes were fenced", in->id);
        if (!in->dead && (in->store.in_flight(in->store.self) ||
                          simbus_client_unreported(in->client)))
            violate(w, "instance %d: a hand-over left a round in flight or %d deliveries "
                    "unreported", in->id, simbus_client_unreported(in->client));
        /* ... and acknowledged: an instance that never lost a round or a delivery leaves
         * the outboxes of what it hands over empty. */
        for (int i = 0; i < n && !in->dead && !in->troubled; i++)
            if (simstore_outbox_count(w->db, partitions[i]))
                violate(w, "instance %d: a hand-over left %zu entries in the outbox of "
                        "partition %d", in->id, simstore_outbox_count(w->db, partitions[i]),
                        (int)partitions[i]);
    } else {
        /* Lost means lost: not while Redis says the lease is still this instance's. */
        char name[32];
        snprintf(name, sizeof name, "sim-%d", in->id);
        for (int i = 0; i < n && !w->redis_down; i++) {
            const char *holder = simstore_lease(w->db, partitions[i], NULL);
            if (holder && strcmp(holder, name) == 0)
                violate(w, "instance %d gives partition %d up as lost while its lease is live",
                        in->id, (int)partitions[i]);
        }
        w->res->leases_lost += (uint64_t)n;
        engine_revoke(in->engine, partitions, n);
    }
    simbus_client_revoke(in->client, partitions, n);
}

/* membership=redis: instances running (not killed, not leaving). */
static int live_members(const sim_t *w)
{
    int n = 0;
    for (int i = 0; i < w->ninst; i++)
        n += !w->inst[i]->dead && !w->inst[i]->stopping;
    return n;
}

/* Starts an instance (a coordinator process): with the group's membership it gets every
 * partition; with membership=redis its membership takes leases at its first ticks. */
static void instance_start(sim_t *w)
{
    instance_t *in = calloc(1, sizeof *in);
    if (!in)
        abort();
    in->w = w;
    in->id = ++w->started;
    in->conn = simstore_conn_new(w->db);
    in->client = simbus_client_new(w->bus, in);
    in->registry = registry_new(w->defset);
    if (!in->conn || !in->client || !in->registry)
        abort();
    simstore_hooks_t hooks = {.opaque = in, .round_fate = round_fate, .queued = on_queued,
                              .written = on_written};
    simstore_conn_set_hooks(in->conn, &hooks);
    in->store = simstore_port(in->conn);
    config_t cfg;
    config_defaults(&cfg);
    snprintf(cfg.membership, sizeof cfg.membership, "%s", w->leased ? "redis" : "kafka");
    cfg.lease_ms = SIM_LEASE_MS;
    snprintf(cfg.instance_id, sizeof cfg.instance_id, "sim-%d", in->id);
    snprintf(cfg.input_topic, sizeof cfg.input_topic, "%s", SIM_INPUT_TOPIC);
    snprintf(cfg.outcomes_topic, sizeof cfg.outcomes_topic, "%s", SIM_OUTCOMES_TOPIC);
    snprintf(cfg.deadletter_topic, sizeof cfg.deadletter_topic, "%s", SIM_DEADLETTER_TOPIC);
    bus_t bus = simbus_client_port(in->client);
    in->engine = engine_new(&cfg, &in->store, in->registry, NULL, &bus);
    if (!in->engine)
        abort();
    simbus_client_set_engine(in->client, in->engine);
    engine_env_t env = {.opaque = in,
                        .now_ms = clock_ms,
                        .mono_us = clock_us,
                        .crash_point = on_crash_point,
                        .freeze_point = on_freeze_point,
                        .seed = splitmix64(&w->frng) | 1};
    engine_set_env(in->engine, &env);
    engine_set_routing(in->engine, w->partitions, w->partitions);
    w->inst[w->ninst++] = in;
    if (w->leased) { /* coordinator.c: both connections leased, membership on its own */
        in->lease_conn = simstore_conn_new(w->db);
        if (!in->lease_conn)
            abort();
        store_port_t lease_port = simstore_port(in->lease_conn);
        in->store.set_lease(in->store.self, cfg.lease_ms);
        lease_port.set_lease(lease_port.self, cfg.lease_ms);
        membership_events_t ev = {.opaque = in, .take = on_take, .give_up = on_give_up};
        in->membership = membership_new(&lease_port, cfg.instance_id, w->partitions,
                                        cfg.lease_ms, cfg.lease_renew_ms, &ev);
        if (!in->membership)
            abort();
        membership_env_t menv = {.opaque = in, .mono_ms = membership_clock};
        membership_set_env(in->membership, &menv);
    } else {
        w->live = in;
    }
    defn_errors_t errs = {0};
    int published = registry_publish(in->registry, &in->store, &errs);
    defn_errors_release(&errs);
    if (published != 0) { /* Redis down: coordinator.c waits and starts again (the same) */
        trace(w, "START [%d] fails: %s", in->id, in->store.last_error(in->store.self));
        in->dead = true;
        (void)reap(w, in);
        return;
    }
    if (in->membership) {
        trace(w, "START [%d] joins (membership=redis)", in->id);
        turn_at(w, in, w->now);
        return;
    }
    int32_t parts[SIM_MAX_PARTITIONS];
    for (int32_t p = 0; p < w->partitions; p++)
        parts[p] = p;
    trace(w, "START [%d] takes %d partitions", in->id, (int)w->partitions);
    engine_assign(in->engine, parts, w->partitions);
    simbus_client_assign(in->client, parts, w->partitions);
    engine_assigned(in->engine, parts, w->partitions);
    if (!reap(w, in))
        turn_at(w, in, w->now);
}

/* SIGSTOP, or a starved process: no turn for a while, while the world goes on. Sometimes
 * the group gives its partitions to a new instance meanwhile (its session timed out). */
static void instance_pause(sim_t *w, instance_t *in)
{
    int64_t pause = SIM_PAUSE_MIN_MS + (int64_t)(frnd01(w) * (SIM_PAUSE_MAX_MS - SIM_PAUSE_MIN_MS));
    in->frozen_until = w->now + pause;
    w->res->pauses++;
    trace(w, "PAUSE [%d] until +%lld ms", in->id, (long long)(in->frozen_until - SIM_T0_MS));
    turn_at(w, in, in->frozen_until);
    if (in->membership) {
        /* Its leases expire meanwhile when the pause is long: it wakes a zombie, and
         * sometimes a new instance joins while the others take its partitions over. */
        if (pause > SIM_LEASE_MS && membership_owned(in->membership) > 0)
            w->res->zombies++;
        if (frnd01(w) < SIM_ZOMBIE_CHANCE) {
            event_t e = {.at = w->now + 1 + (int64_t)(frnd01(w) * (double)(pause - 2)),
                         .type = EV_JOIN};
            ev_push(w, e);
        }
        return;
    }
    if (in == w->live && frnd01(w) < SIM_ZOMBIE_CHANCE) {
        event_t e = {.at = w->now + 1 + (int64_t)(frnd01(w) * (double)(pause - 2)),
                     .type = EV_TAKEOVER, .idx = in->id};
        ev_push(w, e);
    }
}

/* The group moved the partitions of frozen instance in to a new one: in wakes a zombie,
 * runs a little while (every write it makes must be fenced), then hears of its revoke. */
static void instance_takeover(sim_t *w, instance_t *in)
{
    if (!in || in->dead || in != w->live || w->now >= in->frozen_until ||
        w->ninst == SIM_MAX_INSTANCES)
        return;
    in->zombie = true;
    w->res->zombies++;
    trace(w, "TAKEOVER from frozen [%d]", in->id);
    event_t e = {.at = in->frozen_until + rnd_range(w, 1, SIM_REVOKE_MAX_MS), .type = EV_REVOKE,
                 .idx = in->id};
    ev_push(w, e);
    instance_start(w);
}

static void instance_revoke(sim_t *w, instance_t *in)
{
    if (!in)
        return;
    int32_t parts[SIM_MAX_PARTITIONS];
    for (int32_t p = 0; p < w->partitions; p++)
        parts[p] = p;
    trace(w, "REVOKE [%d]", in->id);
    engine_revoke(in->engine, parts, w->partitions);
    simbus_client_revoke(in->client, parts, w->partitions);
    if (!reap(w, in))
        instance_free(w, in); /* it leaves the group */
}

/* SIGTERM, as coordinator.c's shutdown: engine_stop (the rounds finished, everything
 * delivered and acknowledged), then membership_leave (leases released, out of the alive
 * set: the others take the partitions at their next beat), then the process exits. */
static void instance_leave(sim_t *w, instance_t *in)
{
    trace(w, "LEAVE [%d] (SIGTERM)", in->id);
    (void)engine_stop(in->engine, SIM_FLUSH_MS);
    if (reap(w, in))
        return;
    membership_leave(in->membership);
    if (reap(w, in))
        return;
    w->res->leaves++;
    instance_free(w, in);
    if (live_members(w) == 0) {
        event_t e = {.at = w->now + rnd_range(w, 5, 400), .type = EV_RECOVER};
        ev_push(w, e);
    }
}

/* One round of an instance's loop, as coordinator.c's: engine_prepare_turn says how long
 * to wait for input; the input waiting (a batch) goes to engine_turn. */
static void instance_turn(sim_t *w, instance_t *in)
{
    in->turn_at = 0;
    simstore_conn_hold(in->conn, false); /* awake: a round it stopped before is written */
    if (!in->zombie && fault(w, w->p_pause)) {
        instance_pause(w, in);
        return;
    }
    simbus_client_tick(in->client, w->now);
    if (!in->polling && in->stopping) {
        instance_leave(w, in);
        return;
    }
    if (!in->polling) {
        int most = SIM_POLL_MS;
        if (in->membership) { /* coordinator.c's loop: the membership first */
            int beat = membership_tick(in->membership);
            if (reap(w, in))
                return;
            /* Its leases must have expired by its own clock: it serves none of them. */
            int64_t since = membership_since_renewal_ms(in->membership);
            if (since > SIM_LEASE_MS + SIM_LEASE_MS / 10 && membership_owned(in->membership))
                violate(w, "instance %d serves %d partitions %lld ms after its last renewal",
                        in->id, membership_owned(in->membership), (long long)since);
            most = beat < most ? beat : most;
            if (membership_since_renewal_ms(in->membership) >= 0)
                engine_set_joined(in->engine);
        }
        int wait = engine_prepare_turn(in->engine, most);
        if (reap(w, in))
            return;
        if (wait < 0)
            violate(w, "instance %d stopped serving (a fatal bus error)", in->id);
        if (wait != 0 && !simbus_client_has_input(in->client)) {
            in->polling = true;
            turn_at(w, in, w->now + (wait > 0 ? wait : SIM_POLL_MS));
            return;
        }
    }
    in->polling = false;
    w->res->turns++;
    bus_message_t msgs[SIM_MAX_BATCH];
    /* Usually everything already fetched (as after a seek), sometimes a trickle. */
    size_t batch = rnd01(w) < 0.7 ? SIM_MAX_BATCH : (size_t)rnd_range(w, 1, 8);
    size_t n = simbus_client_consume(in->client, msgs, batch);
    if (n)
        trace(w, "turn [%d]%s: %zu messages from partition %d offset %lld", in->id,
              in->zombie ? " (zombie)" : "", n, (int)msgs[0].partition,
              (long long)msgs[0].offset);
    (void)engine_turn(in->engine, msgs, n, w->now * 1000);
    if (!reap(w, in))
        turn_at(w, in, w->now + rnd_range(w, 1, 3));
}

/* An input message was appended: instances waiting for input fetch it soon. */
static void wake_pollers(sim_t *w)
{
    for (int i = 0; i < w->ninst; i++)
        if (w->inst[i]->polling)
            turn_at(w, w->inst[i], w->now + rnd_range(w, 0, 3));
}

/* --- client and operator ------------------------------------------------------------ */

/* Starts saga idx; sometimes on a partition that is not its home (a producer with another
 * partitioner: the engine forwards it), sometimes twice (the caller retries its start). */
static void client_start(sim_t *w, int idx)
{
    char id[16];
    saga_name(id, sizeof id, idx);
    json_t *m = json_pack("{s:s, s:s, s:s, s:{s:i}}", "type", "start", "saga_id", id, "saga",
                          w->def_of[idx]->name, "input", "amount", (int)rnd_range(w, 1, 500));
    char *text = json_dumps(m, JSON_COMPACT);
    int32_t part = rnd01(w) < 0.2 ? (int32_t)rnd_range(w, 0, w->partitions - 1) : -1;
    input_send_to(w, idx, part, text, rnd_range(w, 1, 10));
    if (chance(w, w->p_dup)) /* the caller retries its start: idempotent by saga id */
        input_send_to(w, idx, -1, text, rnd_range(w, 1, 3000));
    free(text);
    json_decref(m);
}

/* What a careful operator does before `sagactl skip`: undo by hand, at the participant,
 * what the failed compensation should have undone (or record that nothing was done). */
static void operator_compensate_by_hand(sim_t *w, int idx, int step)
{
    ledger_t *L = &w->led[idx][step];
    if (L->comp_acked)
        return;
    L->comp_acked = true;
    if (L->act_applies > 0) {
        L->comp_applies++;
        L->comp_seq = ++w->apply_seq;
    } else {
        L->tombstone = true;
    }
}

static void operator_look(sim_t *w)
{
    if (faults_on(w) && rnd01(w) < w->p_abort) {
        int idx = (int)rnd_range(w, 0, w->nsagas - 1);
        if (stored(w, idx) && stored_status(w, idx) == SAGA_RUNNING) {
            char id[16];
            saga_name(id, sizeof id, idx);
            json_t *m = json_pack("{s:s, s:s, s:s}", "type", "abort", "saga_id", id, "reason",
                                  "customer cancelled");
            trace(w, "operator: abort %s", id);
            input_send(w, idx, m, rnd_range(w, 1, 10));
            json_decref(m);
            w->res->aborts++;
        }
    }
    for (int idx = 0; idx < w->nsagas; idx++) {
        const json_t *fields = stored(w, idx);
        int64_t version = atoll(jstr(fields, RKEYS_F_VERSION));
        if (!fields || stored_status(w, idx) != SAGA_STUCK ||
            version == w->op_seen_version[idx] || w->op_actions[idx] >= w->op_patience)
            continue;
        w->op_seen_version[idx] = version;
        w->op_actions[idx]++;
        char id[16];
        saga_name(id, sizeof id, idx);
        const char *err = jstr(fields, "error");
        bool skip = strstr(err, "cannot build") != NULL || w->op_actions[idx] > 3 ||
                    rnd01(w) < 0.25;
        json_t *m;
        if (skip) {
            json_t *steps = json_loads(jstr(fields, "steps"), 0, NULL);
            for (size_t k = 0; k < json_array_size(steps); k++)
                if (strcmp(jstr(json_array_get(steps, k), "phase"), "comp_failed") == 0)
                    operator_compensate_by_hand(w, idx, (int)k);
            json_decref(steps);
            m = json_pack("{s:s, s:s, s:s, s:I}", "type", "skip", "saga_id", id, "reason",
                          "undone by hand", "expected_version", (json_int_t)version);
            w->res->skips++;
        } else {
            m = json_pack("{s:s, s:s, s:I}", "type", "retry", "saga_id", id, "expected_version",
                          (json_int_t)version);
            w->res->retries++;
        }
        trace(w, "operator: %s %s (%s)", skip ? "skip" : "retry", id, err);
        input_send(w, idx, m, rnd_range(w, 1, 10));
        json_decref(m);
    }
}

/* Why the world is not quiescent yet, or NULL when it is: faults over, one live instance
 * and no other, nothing in flight anywhere, all input committed, every outbox empty, every
 * saga ended (or stuck after the operator gave up on it). why: room for the reason. */
static const char *unsettled_leased(sim_t *w, char *why, size_t len);

static const char *unsettled(sim_t *w, char *why, size_t len)
{
    if (w->leased) {
        const char *u = unsettled_leased(w, why, len);
        if (u)
            return u;
    } else {
        instance_t *in = w->live;
        if (faults_on(w) || !in || w->ninst != 1 || w->pending_deliveries)
            return "faults on, no single live instance, or deliveries on their way";
        if (in->store.in_flight(in->store.self) || simbus_client_unreported(in->client))
            return "a round or deliveries in flight";
    }
    for (int32_t p = 0; p < w->partitions; p++) {
        if (simbus_committed(w->bus, p) != simbus_end(w->bus, p)) {
            snprintf(why, len, "partition %d: input committed up to %lld of %lld", (int)p,
                     (long long)simbus_committed(w->bus, p), (long long)simbus_end(w->bus, p));
            return why;
        }
        if (simstore_outbox_count(w->db, p)) {
            snprintf(why, len, "partition %d: %zu outbox entries left", (int)p,
                     simstore_outbox_count(w->db, p));
            return why;
        }
    }
    for (int i = 0; i < w->nsagas; i++) {
        saga_status_t st = stored_status(w, i);
        if (!stored(w, i) || (!saga_status_is_terminal(st) &&
                              (st != SAGA_STUCK || w->op_actions[i] < w->op_patience))) {
            /* stuck and the operator gave up: a valid end state */
            snprintf(why, len, "s%d %s", i, stored(w, i) ? saga_status_name(st) : "not started");
            return why;
        }
    }
    return NULL;
}

/* membership=redis: every instance running and a member, every partition's lease live
 * and held by exactly one instance whose engine serves it, nothing in flight. */
static const char *unsettled_leased(sim_t *w, char *why, size_t len)
{
    if (faults_on(w) || w->ninst == 0 || w->pending_deliveries)
        return "faults on, no instance, or deliveries on their way";
    int owned = 0, served = 0;
    for (int i = 0; i < w->ninst; i++) {
        instance_t *in = w->inst[i];
        if (in->dead || in->stopping || in->frozen_until > w->now ||
            membership_since_renewal_ms(in->membership) < 0)
            return "an instance frozen, leaving or not yet a member";
        if (in->store.in_flight(in->store.self) || simbus_client_unreported(in->client))
            return "a round or deliveries in flight";
        owned += membership_owned(in->membership);
        served += engine_partitions_owned(in->engine);
    }
    for (int32_t p = 0; p < w->partitions; p++)
        if (!simstore_lease(w->db, p, NULL)) {
            snprintf(why, len, "partition %d: no live lease", (int)p);
            return why;
        }
    if (owned != w->partitions || served != w->partitions) {
        snprintf(why, len, "%d partitions: %d leases held, %d served", (int)w->partitions, owned,
                 served);
        return why;
    }
    return NULL;
}

static bool quiescent(sim_t *w)
{
    char why[128];
    return unsettled(w, why, sizeof why) == NULL;
}

/* --- the checker -------------------------------------------------------------------- */

static bool exempt_from_undo(const definition_t *d, const saga_t *s, int i)
{
    if (!d->steps[i].has_compensation)
        return true;
    return s && s->steps[i].phase == STEP_TIMED_OUT && !d->steps[i].compensate_on_timeout;
}

/* Which steps' compensations the coordinator once gave up on (their history says so). */
static void find_exhausted(const sim_t *w, int idx, bool *exhausted)
{
    char id[16];
    saga_name(id, sizeof id, idx);
    const json_t *history = simstore_saga_history(w->db, home_of(w, idx), id);
    for (size_t i = 0; i < json_array_size(history); i++) {
        json_t *e = json_loads(json_string_value(json_array_get(history, i)), 0, NULL);
        int step = definition_step_index(w->def_of[idx], jstr(e, "step"));
        if (step >= 0 && strcmp(jstr(e, "event"), "compensation_failed") == 0)
            exhausted[step] = true;
        json_decref(e);
    }
}

/* Outcomes: the same text again is a re-send (from the outbox, or by a zombie of a round
 * it had confirmed); distinct end outcomes are distinct transitions to an end state, of
 * which a saga has one. A saga's final status was published. */
static void check_outcomes(sim_t *w, int idx, saga_status_t final)
{
    int ends = 0;
    bool saw_final = false, saw_completed = false, saw_compensated = false;
    for (size_t k = 0; k < w->outcn; k++) {
        const outcome_rec_t *o = &w->outcomes[k];
        if (o->idx != idx)
            continue;
        bool repeat = false;
        for (size_t j = 0; j < k && !repeat; j++)
            repeat = w->outcomes[j].idx == idx && strcmp(w->outcomes[j].text, o->text) == 0;
        if (repeat)
            continue;
        ends += saga_status_is_terminal(o->status);
        saw_final |= o->status == final;
        saw_completed |= o->status == SAGA_COMPLETED;
        saw_compensated |= o->status == SAGA_COMPENSATED;
    }
    if (ends > 1)
        violate(w, "s%d: %d end outcomes published%s", idx, ends,
                saw_completed && saw_compensated ? ", both completed and compensated" : "");
    if (!saw_final || (final == SAGA_STUCK && ends))
        violate(w, "s%d: ends %s, outcome %s", idx, saga_status_name(final),
                saw_final ? "of an end published too" : "not published");
}

static void check_saga(sim_t *w, int idx)
{
    const definition_t *d = w->def_of[idx];
    const json_t *fields = stored(w, idx);
    ledger_t *L = w->led[idx];
    bool exhausted[SIM_MAX_STEPS] = {false};
    if (!fields) {
        violate(w, "s%d: never written to the store", idx);
        return;
    }
    find_exhausted(w, idx, exhausted);
    char why[256];
    saga_t *s = saga_decode_fields(fields, d, why, sizeof why);
    if (!s) {
        violate(w, "s%d: final fields do not decode: %s", idx, why);
        return;
    }
    int sc = (int)d->step_count;
    switch (s->status) {
    case SAGA_COMPLETED: w->res->completed++; break;
    case SAGA_COMPENSATED: w->res->compensated++; break;
    case SAGA_STUCK:
        w->res->stuck++;
        if (!s->error || !*s->error)
            violate(w, "s%d: stuck without a reason", idx);
        break;
    default:
        violate(w, "s%d: %s at quiescence", idx, saga_status_name(s->status));
        break;
    }
    for (int i = 0; i < sc; i++) {
        const char *n = d->steps[i].name;
        if (L[i].act_applies > 1)
            violate(w, "s%d/%s: action applied %d times", idx, n, L[i].act_applies);
        if (L[i].comp_applies > 1)
            violate(w, "s%d/%s: compensation applied %d times", idx, n, L[i].comp_applies);
        if (L[i].comp_applies && !L[i].act_applies)
            violate(w, "s%d/%s: compensation applied without the action", idx, n);
        if (L[i].comp_applies && L[i].act_applies && L[i].comp_seq < L[i].act_seq)
            violate(w, "s%d/%s: compensation applied before its action", idx, n);
        if (s->status == SAGA_COMPLETED && (L[i].act_applies != 1 || L[i].comp_acked))
            violate(w, "s%d/%s: completed saga with action applied %d times, compensation %s",
                    idx, n, L[i].act_applies, L[i].comp_acked ? "answered" : "not sent");
        if (s->status == SAGA_COMPENSATED && L[i].act_applies && !L[i].comp_applies &&
            !exempt_from_undo(d, s, i))
            violate(w, "s%d/%s: compensated saga left the action applied (step %s)", idx, n,
                    step_phase_name(s->steps[i].phase));
    }
    /* Order: forward group by group; undo strictly in reverse. */
    for (int a = 0; a < sc; a++) {
        for (int b = 0; b < sc; b++) {
            if (d->steps[a].group >= d->steps[b].group)
                continue;
            if (L[a].act_applies && L[b].act_applies && L[b].act_seq < L[a].act_seq)
                violate(w, "s%d: action %s applied before %s of an earlier group", idx,
                        d->steps[b].name, d->steps[a].name);
            if (!L[a].comp_applies || !L[b].act_applies || exempt_from_undo(d, s, b))
                continue;
            if (d->on_compensation_failure == DEFN_ON_COMP_FAILURE_CONTINUE &&
                exhausted[b])
                continue; /* "continue" undoes the earlier steps past a failed one */
            if (!L[b].comp_applies || L[b].comp_seq > L[a].comp_seq)
                violate(w, "s%d: %s undone before %s of a later group was undone", idx,
                        d->steps[a].name, d->steps[b].name);
        }
    }
    if (s->status == SAGA_COMPLETED || s->status == SAGA_COMPENSATED || s->status == SAGA_STUCK)
        check_outcomes(w, idx, s->status);
    saga_free(s);
}

/* --- the run ------------------------------------------------------------------------ */

/* The definitions, as the folder every instance reads (defset, which owns them) and by
 * index (defs). */
static int load_defs(sim_t *w)
{
    const char *texts[SIM_DEF_COUNT] = {SIM_DEF_ORDER, SIM_DEF_TRANSFER, SIM_DEF_TRIP};
    w->defset = defn_set_new();
    for (int i = 0; w->defset && i < SIM_DEF_COUNT; i++) {
        defn_errors_t errs = {0};
        definition_t *d = definition_load_string(texts[i], strlen(texts[i]), "sim", &errs);
        for (size_t k = 0; k < errs.count; k++) {
            char line[1024];
            defn_error_format(&errs.items[k], line, sizeof line);
            fprintf(stderr, "saga-sim: definition %d: %s\n", i, line);
        }
        defn_errors_release(&errs);
        if (!d || d->step_count > SIM_MAX_STEPS) {
            definition_free(d);
            return -1;
        }
        if (defn_set_add(w->defset, d, NULL) < 0) /* it frees d */
            return -1;
        w->defs[i] = d;
    }
    return w->defset ? 0 : -1;
}

static void sim_free(sim_t *w)
{
    while (w->ninst)
        instance_free(w, w->inst[0]);
    for (size_t i = 0; i < w->evn; i++) {
        free(w->evq[i].text);
        json_decref(w->evq[i].msg);
    }
    free(w->evq);
    simbus_free(w->bus);
    simstore_free(w->db);
    free(w->def_of);
    free(w->led);
    free(w->op_actions);
    free(w->op_seen_version);
    for (size_t i = 0; i < w->outcn; i++)
        free(w->outcomes[i].text);
    free(w->outcomes);
    cache_release(&w->replies);
    cache_release(&w->deadlines);
    defn_set_free(w->defset);
}

/* Fault intensity varies by seed: some runs are calm, some are storms. */
static void choose_faults(sim_t *w, uint64_t seed)
{
    double storm = rnd01(w);
    w->p_crash = 0.04 * storm;
    w->p_dup = 0.15 * rnd01(w);
    w->p_delay = 0.10 * rnd01(w);
    w->p_lost = 0.10 * rnd01(w);
    w->p_late = 0.10 * rnd01(w);
    w->p_part_crash = 0.05 * rnd01(w);
    w->p_retryable = 0.25 * rnd01(w);
    w->p_fail = 0.08 * rnd01(w);
    w->p_comp_fail = 0.15 * rnd01(w);
    w->p_abort = 0.2 * rnd01(w);
    uint64_t fseed = seed ^ 0x5eed0fa11ULL;
    w->frng = splitmix64(&fseed);
    w->p_redis_err = 0.08 * frnd01(w);
    w->p_pause = 0.03 * frnd01(w);
    w->p_produce_fail = 0.02 * frnd01(w);
    w->p_redis_down = 0.03 * frnd01(w);
    uint64_t mseed = seed ^ 0x1ea5edULL;
    uint64_t m = splitmix64(&mseed);
    w->leased = m & 1; /* half the seeds each, from the seed alone */
    w->p_join = 0.05 * (double)((m >> 8) & 0xffff) / 65536.0;
    w->p_leave = 0.03 * (double)((m >> 24) & 0xffff) / 65536.0;
    w->p_lease_reset = 0.01 * (double)((m >> 40) & 0xffff) / 65536.0;
}

/* Sometimes (looked at with the operator's rounds) the Redis server goes down for a while:
 * connections are refused, commands fail, rounds are lost. */
static void redis_outage(sim_t *w)
{
    if (!fault(w, w->p_redis_down))
        return;
    int64_t up = w->now + SIM_OUTAGE_MIN_MS +
                 (int64_t)(frnd01(w) * (SIM_OUTAGE_MAX_MS - SIM_OUTAGE_MIN_MS));
    w->res->redis_outages++;
    trace(w, "REDIS down until +%lld ms", (long long)(up - SIM_T0_MS));
    simstore_set_down(w->db, true);
    w->redis_down = true;
    for (int i = 0; i < w->ninst; i++)
        w->inst[i]->troubled = true;
    event_t e = {.at = up, .type = EV_REDIS_UP};
    ev_push(w, e);
}

/* membership=redis, looked at with the operator's rounds: an instance joins, one gets
 * SIGTERM (a clean leave; a new one is started if it was the last), or the Redis server
 * restarts and loses every lease and the alive set while they are held. */
static void membership_faults(sim_t *w)
{
    if (fault(w, w->p_join)) {
        event_t e = {.at = w->now, .type = EV_JOIN};
        ev_push(w, e);
    }
    if (w->ninst && fault(w, w->p_leave)) {
        instance_t *in = w->inst[(size_t)(frnd01(w) * w->ninst) % (size_t)w->ninst];
        trace(w, "SIGTERM [%d]", in->id);
        event_t e = {.at = w->now, .type = EV_LEAVE, .idx = in->id};
        ev_push(w, e);
    }
    if (fault(w, w->p_lease_reset)) {
        w->res->lease_resets++;
        trace(w, "REDIS restarted: every lease and the alive set lost");
        simstore_forget_leases(w->db);
        for (int i = 0; i < w->ninst; i++)
            w->inst[i]->troubled = true;
    }
}

/* Handles one event; returns false when the run is over. */
static bool handle_event(sim_t *w, event_t *e)
{
    instance_t *in = NULL;
    switch (e->type) {
    case EV_START:
        trace(w, "client: start s%d (%s)", e->idx, w->def_of[e->idx]->name);
        client_start(w, e->idx);
        break;
    case EV_INPUT: {
        char key[16];
        saga_name(key, sizeof key, e->idx);
        int32_t part = e->part >= 0 ? e->part : home_of(w, e->idx);
        int64_t off = simbus_append(w->bus, part, key, e->text, w->now);
        trace(w, "input %d@%lld: %.160s", (int)part, (long long)off, e->text);
        wake_pollers(w);
        break;
    }
    case EV_COMMAND:
        trace(w, "deliver %s", jstr(e->msg, "command_id"));
        participant_handle(w, e->msg);
        break;
    case EV_TURN:
        if ((in = instance_by_id(w, e->idx)))
            instance_turn(w, in);
        break;
    case EV_RECOVER:
        if (w->leased) { /* the process is restarted (an orchestrator), up to the limit */
            if (live_members(w) < SIM_LEASED_MAX_LIVE && w->ninst < SIM_MAX_INSTANCES)
                instance_start(w);
            else if (live_members(w) == 0) {
                event_t again = {.at = w->now + SIM_REVOKE_MAX_MS, .type = EV_RECOVER};
                ev_push(w, again);
            }
        } else if (!w->live && w->ninst < SIM_MAX_INSTANCES) {
            instance_start(w);
        } else if (!w->live) { /* zombies still around: the group waits for them */
            event_t again = {.at = w->now + SIM_REVOKE_MAX_MS, .type = EV_RECOVER};
            ev_push(w, again);
        }
        break;
    case EV_TAKEOVER:
        instance_takeover(w, instance_by_id(w, e->idx));
        break;
    case EV_REVOKE:
        instance_revoke(w, instance_by_id(w, e->idx));
        break;
    case EV_JOIN:
        if (live_members(w) < SIM_LEASED_MAX_LIVE && w->ninst < SIM_MAX_INSTANCES) {
            w->res->joins++;
            instance_start(w);
        }
        break;
    case EV_LEAVE:
        if ((in = instance_by_id(w, e->idx)) && !in->dead && !in->stopping) {
            in->stopping = true; /* SIGTERM: acted on at the top of its loop */
            turn_at(w, in, w->now);
        }
        break;
    case EV_REDIS_UP:
        trace(w, "REDIS up");
        simstore_set_down(w->db, false);
        w->redis_down = false;
        break;
    case EV_OPERATOR:
        redis_outage(w);
        if (w->leased)
            membership_faults(w);
        operator_look(w);
        if (quiescent(w)) {
            trace(w, "quiescent");
            return false;
        }
        event_t next = {.at = w->now + SIM_OPERATOR_MS, .type = EV_OPERATOR};
        ev_push(w, next);
        break;
    }
    return !w->livelock;
}

static int64_t server_clock(void *opaque)
{
    sim_t *w = opaque;
    return w->now;
}

static int sim_setup(sim_t *w, uint64_t seed, const sim_config_t *cfg, sim_result_t *out)
{
    w->cfg = *cfg;
    w->res = out;
    w->rng = seed;
    w->now = SIM_T0_MS;
    json_object_seed(1);
    log_set_level(cfg->trace ? LOG_INFO : (log_level_t)(LOG_ERROR + 1));
    if (load_defs(w) < 0)
        return -1;
    choose_faults(w, seed);
    /* One run in five has an operator who gives up soon: stuck is a valid end state. */
    w->op_patience = rnd01(w) < 0.2 ? (int)rnd_range(w, 0, 2) : SIM_OPERATOR_MAX_ACTIONS;
    w->nsagas = cfg->sagas > 0 ? cfg->sagas : (int)rnd_range(w, 5, 15);
    if (w->nsagas > SIM_MAX_SAGAS)
        w->nsagas = SIM_MAX_SAGAS;
    w->partitions = (int32_t)rnd_range(w, 1, SIM_MAX_PARTITIONS);
    out->sagas = w->nsagas;
    w->def_of = calloc((size_t)w->nsagas, sizeof *w->def_of);
    w->led = calloc((size_t)w->nsagas, sizeof *w->led);
    w->op_actions = calloc((size_t)w->nsagas, sizeof *w->op_actions);
    w->op_seen_version = calloc((size_t)w->nsagas, sizeof *w->op_seen_version);
    simstore_config_t sc = {.seed = splitmix64(&w->frng) | 1, .now_ms = server_clock,
                            .clock_opaque = w};
    w->db = simstore_new(&sc);
    simbus_hooks_t bh = {.opaque = w, .now_ms = bus_clock, .publish = on_publish,
                         .fate = produce_fate};
    w->bus = simbus_new(SIM_INPUT_TOPIC, w->partitions, &bh);
    if (!w->def_of || !w->led || !w->op_actions || !w->op_seen_version || !w->db || !w->bus)
        return -1;
    trace(w, "seed %llu: %d sagas, %d partitions, crash %.3f dup %.3f delay %.3f lost %.3f "
          "late %.3f redis %.3f pause %.3f, membership %s", (unsigned long long)seed, w->nsagas,
          (int)w->partitions, w->p_crash, w->p_dup, w->p_delay, w->p_lost, w->p_late,
          w->p_redis_err, w->p_pause, w->leased ? "redis" : "kafka (the world's)");
    out->leased = w->leased;
    for (int i = 0; i < w->nsagas; i++) {
        w->def_of[i] = w->defs[rnd(w) % SIM_DEF_COUNT];
        event_t e = {.at = w->now + rnd_range(w, 0, SIM_FAULT_MS * 2 / 3), .type = EV_START,
                     .idx = i};
        ev_push(w, e);
    }
    event_t op = {.at = w->now + SIM_OPERATOR_MS, .type = EV_OPERATOR};
    ev_push(w, op);
    instance_start(w);
    if (w->leased) { /* 1-3 instances: at once (racing for the leases) or joining later */
        int more = (int)(splitmix64(&w->frng) % SIM_LEASED_MAX_LIVE);
        for (int i = 0; i < more; i++) {
            event_t j = {.at = w->now + (frnd01(w) < 0.5 ? 0 : rnd_range(w, 1, 2000)),
                         .type = EV_JOIN};
            ev_push(w, j);
        }
    }
    return 0;
}

int sim_run(uint64_t seed, const sim_config_t *cfg, sim_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->seed = seed;
    out->trace_hash = 1469598103934665603ULL;
    sim_t *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    if (sim_setup(w, seed, cfg, out) < 0) {
        sim_free(w);
        free(w);
        return -1;
    }
    bool running = true;
    while (running && w->evn) {
        event_t e = ev_pop(w);
        if (e.at > SIM_T0_MS + SIM_MAX_MS) {
            free(e.text);
            json_decref(e.msg);
            break;
        }
        w->now = e.at;
        instance_t *in = e.type == EV_TURN ? instance_by_id(w, e.idx) : NULL;
        if (e.type != EV_TURN || (in && e.at == in->turn_at)) { /* else superseded */
            out->events++;
            running = handle_event(w, &e);
        }
        free(e.text);
        json_decref(e.msg);
    }
    out->end_ms = w->now - SIM_T0_MS;
    out->input_redelivered = simbus_rereads(w->bus);
    char why[128];
    const char *unsettled_why = unsettled(w, why, sizeof why);
    if (unsettled_why)
        violate(w, "not quiescent at %lld ms: %s", (long long)out->end_ms, unsettled_why);
    for (int i = 0; i < w->nsagas; i++)
        check_saga(w, i);
    trace(w, "end: %d completed, %d compensated, %d stuck, %d violations", out->completed,
          out->compensated, out->stuck, out->violations);
    sim_free(w);
    free(w);
    return out->violations ? 1 : 0;
}

const char *sim_plant_name(sim_plant_t p)
{
    static const char *const names[] = {"none", "double-apply", "fake-compensation"};
    return p < SIM_PLANT_COUNT ? names[p] : "?";
}
