/* sim.c - the deterministic simulation of the coordinator's logic (see sim.h).
 *
 * The world: an event queue on a virtual clock; a store (saga fields as saga_encode_fields
 * writes them, a version per saga, the partition's epoch, the outbox, the committed input
 * offset); the input topic as a log; command topics as delayed deliveries; participants
 * with a ledger per idempotency key; a client that starts sagas; an operator. The engine is
 * coordinator.c's turn in miniature, rounds included: read a batch of input, run the
 * machine, run due timers (the open round, built on the state of the round in flight);
 * then act on the round in flight as the store answered it (produce, store its offset);
 * then write the open round with its outbox in one flush (version + epoch checked) and
 * leave it in flight for the next turn; the offset is committed every SIM_COMMIT_MS as librdkafka's
 * auto-commit does. A crash drops the engine's memory; recovery takes a new epoch, rebuilds
 * the active sagas with saga_decode_fields, re-arms timers from machine_next_timer,
 * re-sends the outbox and reads the input again from the committed offset. */
#include "sim.h"

#include "definition.h"
#include "machine.h"
#include "protocol.h"
#include "saga.h"
#include "sim_defs.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SIM_T0_MS 1700000000000LL     /* virtual epoch: timestamps look real, never 0 */
#define SIM_FAULT_MS 3000             /* faults happen in [0, SIM_FAULT_MS) */
#define SIM_MAX_MS 120000             /* a run that is not quiescent by then is a violation */
#define SIM_COMMIT_MS 500             /* auto.commit.interval.ms of coordinator.c */
#define SIM_OPERATOR_MS 150           /* the operator looks at the store this often */
#define SIM_OPERATOR_MAX_ACTIONS 10   /* retry/skip per saga before the operator gives up */
#define SIM_MAX_STEPS 8
#define SIM_MAX_RELOADS 200           /* more reloads than this in one run: a livelock */
#define SIM_MAX_BATCH 64              /* input messages per turn when all are there */
#define SIM_DEF_COUNT 3
#define SIM_INPUT_TOPIC "saga.input"
#define SIM_LINE_MAX 512
#define SIM_PAUSE_MIN_MS 200          /* a frozen engine (SIGSTOP, starvation) sleeps ... */
#define SIM_PAUSE_MAX_MS 4000         /* ... this long while time and the world go on */

/* --- random numbers: splitmix64, one stream per run -------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* --- the world --------------------------------------------------------------------- */

typedef enum { EV_INPUT, EV_COMMAND, EV_TURN, EV_RECOVER, EV_OPERATOR, EV_START } ev_type_t;

typedef struct event {
    int64_t at;
    uint64_t seq;             /* ties broken by scheduling order */
    ev_type_t type;
    int idx;                  /* saga index (start) */
    char *text;               /* EV_INPUT: the message as Kafka holds it (owned) */
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
    bool comp_exhausted;      /* the coordinator once gave up on this compensation */
} ledger_t;

typedef struct outbox_entry {
    char *id;
    json_t *msg;              /* owned reference */
    const char *topic;        /* borrowed from the definition, or NULL for the outcome */
} outbox_entry_t;

typedef struct store_rec {
    json_t *fields;           /* saga_encode_fields() output, or NULL: never written */
    int64_t version;
    saga_status_t status;
} store_rec_t;

typedef struct pending {
    int idx;
    int64_t expected;
    json_t *fields;           /* snapshot at queue time, as store_queue_transition encodes */
    saga_status_t status;
    json_t *history;
    outbox_entry_t *entries;
    size_t n;
    int result;               /* set by the flush */
} pending_t;

enum { STORE_R_OK, STORE_R_EXISTS, STORE_R_CONFLICT, STORE_R_FENCED, STORE_R_ERROR };

typedef struct outcome_rec {
    int idx;
    char id[MACHINE_COMMAND_ID_MAX];
    saga_status_t status;
    bool resent;
} outcome_rec_t;

/* Reply cache of the participants: command_id -> the reply they gave (string). */
typedef struct reply_cache {
    char **keys;
    char **vals;
    size_t cap, count;
} reply_cache_t;

typedef struct sim {
    sim_config_t cfg;
    sim_result_t *res;
    uint64_t rng;
    int64_t now;
    uint64_t seq, apply_seq;
    definition_t *defs[SIM_DEF_COUNT];

    /* fault intensity, chosen per seed */
    double p_crash, p_dup, p_delay, p_lost, p_late, p_drop, p_retryable, p_fail, p_comp_fail,
        p_abort, p_part_crash, p_pause;
    /* Redis connection losses: their own random stream, so that seeds without them (every
     * planted-defect run but keep-open-round) play exactly as before they were modelled. */
    double p_redis_err;
    uint64_t frng;

    event_t *evq;
    size_t evn, evcap;

    int nsagas;
    const definition_t **def_of;
    ledger_t (*led)[SIM_MAX_STEPS];

    /* store */
    store_rec_t *recs;
    outbox_entry_t *outbox;
    size_t outn, outcap;
    int64_t store_epoch;
    size_t committed;

    /* input topic */
    char **log;
    int64_t *log_at;          /* when each input message was appended */
    size_t logn, logcap, log_at_cap;
    size_t high_water;        /* furthest offset ever read, to count re-reads */

    /* engine */
    bool alive;
    int64_t epoch;
    saga_t **mem;
    bool *unconfirmed;        /* the saga's start is in this turn's flush, not yet written */
    int reloads;              /* partition reloads after a refused write */
    bool livelock;
    uint64_t mrng;
    size_t pos, stored;
    int64_t next_commit_at;
    int64_t turn_at;          /* the turn scheduled, 0 = none */
    int64_t frozen_until;     /* the pause fault: no turn before then */
    char **acks;
    size_t ackn, ackcap;
    pending_t *pend;          /* the open round */
    size_t pendn, pendcap;
    pending_t *sent;          /* the round in flight: written, its results not acted on */
    size_t sentn, sentcap;
    bool in_flight;
    size_t sent_pos;          /* the input position after the round in flight */

    /* operator */
    int op_patience;          /* retry/skip per saga before giving up (<= SIM_OPERATOR_MAX_ACTIONS) */
    int *op_actions;
    int64_t *op_seen_version;

    reply_cache_t replies;
    outcome_rec_t *outcomes;
    size_t outcn, outccap;
    int pending_deliveries;   /* EV_INPUT/EV_COMMAND/EV_START/EV_RECOVER queued */
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

static bool faults_on(const sim_t *w)
{
    return w->now < SIM_T0_MS + SIM_FAULT_MS;
}

static bool chance(sim_t *w, double p)
{
    return faults_on(w) && rnd01(w) < p;
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

static void input_send(sim_t *w, json_t *msg, int64_t delay)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    event_t e = {.at = w->now + delay, .type = EV_INPUT, .text = text};
    ev_push(w, e);
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
static void reply_send(sim_t *w, const char *text, int64_t timeout_ms, const char *cid)
{
    if (chance(w, w->p_lost)) {
        trace(w, "  reply %s lost", cid);
        return;
    }
    int64_t delay = rnd_range(w, 1, 15);
    if (chance(w, w->p_late))
        delay += timeout_ms + rnd_range(w, 1, 2 * timeout_ms);
    event_t e = {.at = w->now + delay, .type = EV_INPUT, .text = strdup(text)};
    ev_push(w, e);
    if (chance(w, w->p_dup)) {
        event_t d = {.at = w->now + delay + rnd_range(w, 0, timeout_ms), .type = EV_INPUT,
                     .text = strdup(text)};
        ev_push(w, d);
    }
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
        reply_send(w, cached, timeout, cid);
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
    reply_send(w, text, timeout, cid);
    cache_put(&w->replies, strdup(cid), text);
}

/* --- the engine (coordinator.c in miniature) --------------------------------------- */

static void engine_wake(sim_t *w, int64_t at)
{
    if (!w->alive)
        return;
    if (at < w->now)
        at = w->now;
    if (at < w->frozen_until)
        at = w->frozen_until;
    if (w->turn_at && w->turn_at <= at)
        return;
    w->turn_at = at;
    event_t e = {.at = at, .type = EV_TURN};
    ev_push(w, e);
}

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

/* Queues a machine result for the turn's flush (queue_transition of coordinator.c). */
static void engine_queue(sim_t *w, saga_t *s, machine_result_t *res, int64_t expected)
{
    int idx = saga_index(s->id);
    w->pend = grow(w->pend, &w->pendcap, w->pendn + 1, sizeof *w->pend);
    pending_t *p = &w->pend[w->pendn++];
    memset(p, 0, sizeof *p);
    p->idx = idx;
    p->expected = expected;
    p->history = res->history;
    res->history = NULL;
    p->n = res->command_count + (res->outcome ? 1 : 0);
    p->entries = calloc(p->n ? p->n : 1, sizeof *p->entries);
    for (size_t i = 0; i < res->command_count; i++) {
        p->entries[i].id = strdup(res->commands[i].id);
        p->entries[i].topic = res->commands[i].topic;
        p->entries[i].msg = json_loads(res->commands[i].text, 0, NULL);
    }
    if (res->outcome) {
        char id[MACHINE_COMMAND_ID_MAX];
        snprintf(id, sizeof id, "%s/outcome/%lld", s->id, (long long)expected + 1);
        p->entries[p->n - 1].id = strdup(id);
        p->entries[p->n - 1].topic = NULL; /* the outcomes topic */
        p->entries[p->n - 1].msg = json_incref(res->outcome);
    }
    s->version = expected + 1;
    p->status = s->status;
    p->fields = saga_encode_fields(s);
    trace(w, "  saga %s v%lld %s -> %s, %zu commands%s", s->id, (long long)s->version,
          saga_status_name(res->old_status), saga_status_name(s->status),
          res->command_count, res->outcome ? ", outcome" : "");
    check_group_order(w, s);
}

static void engine_apply(sim_t *w, saga_t *s, machine_result_t *res)
{
    if (res->changed)
        engine_queue(w, s, res, s->version);
    else
        trace(w, "  saga %s unchanged (verdict %d)", s->id, (int)res->verdict);
}

static machine_env_t engine_env(sim_t *w)
{
    machine_env_t e = {.now_ms = w->now, .rng = &w->mrng, .reply_topic = SIM_INPUT_TOPIC};
    return e;
}

static void engine_handle(sim_t *w, const char *text)
{
    input_msg_t m;
    char why[512];
    if (protocol_decode_input(text, strlen(text), NULL, 0, PROTOCOL_MAX_MESSAGE_BYTES, &m, why,
                              sizeof why) < 0) {
        violate(w, "input message refused by protocol_decode_input: %s: %s", why, text);
        return;
    }
    int idx = saga_index(m.saga_id);
    machine_env_t env = engine_env(w);
    machine_result_t res;
    machine_result_init(&res);
    saga_t *s = idx >= 0 && idx < w->nsagas ? w->mem[idx] : NULL;
    if (m.type == MSG_START) {
        const definition_t *def = w->def_of[idx];
        if (s) {
            trace(w, "  start %s: duplicate, running", m.saga_id);
        } else {
            s = saga_new(m.saga_id, def, 0, m.input, w->now);
            w->mem[idx] = s;
            w->unconfirmed[idx] = true;
            machine_start(s, &env, &res);
            engine_queue(w, s, &res, 0);
        }
    } else if (!s || (w->unconfirmed[idx] && w->cfg.plant != SIM_PLANT_START_RACE)) {
        /* A saga whose start is in this turn's flush has sent nothing yet: whatever comes
         * for it in the same turn is about an earlier saga of that id (the start may be a
         * duplicate of a finished one). coordinator.c as of db9e7ac lets it through. */
        trace(w, "  %s for %s: not active%s, dead-lettered", jstr(m.root, "type"), m.saga_id,
              s ? " (start not yet written)" : "");
    } else if (m.type == MSG_REPLY) {
        int step = definition_step_index(s->def, m.step);
        machine_reply_t r = {.step = step, .kind = m.kind, .attempt = m.attempt, .ok = m.ok,
                             .retryable = m.retryable, .output = m.output, .error = m.error};
        w->res->replies++;
        machine_on_reply(s, &r, &env, &res);
        engine_apply(w, s, &res);
    } else if (m.type != MSG_ABORT && w->cfg.plant != SIM_PLANT_SKIP_REDELIVERY &&
               m.expected_version != s->version) {
        /* A retry or skip is about the state the operator saw: read again after a crash it
         * must not act on a compensation that failed since (docs/simulation.md). */
        trace(w, "  %s for %s v%lld: saga at v%lld, ignored", jstr(m.root, "type"), s->id,
              (long long)m.expected_version,
              (long long)s->version);
    } else {
        if (m.type == MSG_ABORT)
            machine_abort(s, m.reason, &env, &res);
        else if (m.type == MSG_RETRY)
            machine_retry(s, &env, &res);
        else
            machine_skip(s, m.reason, &env, &res);
        engine_apply(w, s, &res);
    }
    machine_result_release(&res);
    input_msg_release(&m);
}

/* Whether the input from `from` on holds a message appended at or before `due`: the
 * timer gate of coordinator.c (gate_open) holds a timer back while it does. */
static bool unread_input_before(const sim_t *w, size_t from, int64_t due)
{
    return from < w->logn && w->log_at[from] <= due; /* the log is in append order */
}

/* The rule the gate keeps: a reply to the attempt a timer is about to give up on, which
 * reached the input before that attempt's deadline, must be read first. */
static void check_no_reply_lost_to_timer(sim_t *w, const saga_t *s, size_t from)
{
    for (int i = 0; i < s->step_count; i++) {
        const step_state_t *st = &s->steps[i];
        bool act = st->phase == STEP_RUNNING, comp = st->phase == STEP_COMPENSATING;
        if ((!act && !comp) || !st->timer_at || st->timer_at > w->now)
            continue;
        char cid[MACHINE_COMMAND_ID_MAX];
        machine_command_id(cid, sizeof cid, s->id, s->def->steps[i].name,
                           act ? CMD_ACTION : CMD_COMPENSATION,
                           act ? st->attempt : st->comp_attempt);
        char needle[MACHINE_COMMAND_ID_MAX + 16];
        snprintf(needle, sizeof needle, "\"%s\"", cid);
        for (size_t k = from; k < w->logn && w->log_at[k] <= st->timer_at; k++)
            if (strstr(w->log[k], needle) && strstr(w->log[k], "\"reply\""))
                violate(w, "saga %s: the reply to %s reached the input at +%lld ms, before "
                        "its deadline (+%lld), and lost to the timeout", s->id, cid,
                        (long long)(w->log_at[k] - SIM_T0_MS),
                        (long long)(st->timer_at - SIM_T0_MS));
    }
}

static void engine_run_timers(sim_t *w, size_t read_pos)
{
    for (int i = 0; i < w->nsagas; i++) {
        saga_t *s = w->mem[i];
        if (!s || !s->timer_due || s->timer_due > w->now)
            continue;
        int64_t due = machine_last_due(s, w->now);
        if (due && w->cfg.plant != SIM_PLANT_NO_TIMER_GATE &&
            unread_input_before(w, read_pos, due)) {
            w->res->timers_held++;
            s->timer_due = w->now + 1;
            continue;
        }
        check_no_reply_lost_to_timer(w, s, read_pos);
        s->timer_due = 0;
        machine_env_t env = engine_env(w);
        machine_result_t res;
        machine_result_init(&res);
        machine_on_timer(s, &env, &res);
        if (res.changed) {
            trace(w, "  timer %s", s->id);
            engine_apply(w, s, &res);
        } else {
            int64_t next = machine_next_timer(s);
            s->timer_due = next > w->now ? next : w->now + 1;
        }
        machine_result_release(&res);
    }
}

static void pending_release(pending_t *p)
{
    json_decref(p->fields);
    json_decref(p->history);
    for (size_t k = 0; k < p->n; k++) {
        free(p->entries[k].id);
        json_decref(p->entries[k].msg);
    }
    free(p->entries);
    memset(p, 0, sizeof *p);
}

static void engine_drop_memory(sim_t *w)
{
    for (int i = 0; i < w->nsagas; i++) {
        saga_free(w->mem[i]);
        w->mem[i] = NULL;
    }
    for (size_t i = 0; i < w->pendn; i++) {
        w->unconfirmed[w->pend[i].idx] = false;
        pending_release(&w->pend[i]);
    }
    w->pendn = 0;
    for (size_t i = 0; i < w->sentn; i++) {
        w->unconfirmed[w->sent[i].idx] = false;
        pending_release(&w->sent[i]);
    }
    w->sentn = 0;
    w->in_flight = false;
    for (size_t i = 0; i < w->ackn; i++)
        free(w->acks[i]);
    w->ackn = 0;
}

static void engine_crash(sim_t *w, const char *point)
{
    w->res->crashes++;
    trace(w, "CRASH %s", point);
    engine_drop_memory(w);
    w->alive = false;
    w->turn_at = 0;
    event_t e = {.at = w->now + rnd_range(w, 5, 400), .type = EV_RECOVER};
    ev_push(w, e);
}

/* Produces one outbox entry: an outcome is recorded, a command travels to its
 * participant with the network's faults. Its outbox entry is acknowledged in the next
 * flush, as the delivery report of coordinator.c does. */
static void engine_produce(sim_t *w, const outbox_entry_t *e, bool resent)
{
    if (!e->topic) {
        w->outcomes = grow(w->outcomes, &w->outccap, w->outcn + 1, sizeof *w->outcomes);
        outcome_rec_t *o = &w->outcomes[w->outcn++];
        o->idx = saga_index(jstr(e->msg, "saga_id"));
        snprintf(o->id, sizeof o->id, "%s", e->id);
        (void)saga_status_parse(jstr(e->msg, "status"), &o->status);
        o->resent = resent;
        trace(w, "  outcome %s %s%s", e->id, jstr(e->msg, "status"), resent ? " (re-sent)" : "");
    } else {
        w->res->commands++;
        int64_t timeout = json_integer_value(json_object_get(e->msg, "deadline")) -
                          json_integer_value(json_object_get(e->msg, "sent_at"));
        int64_t delay = rnd_range(w, 1, 10);
        if (chance(w, w->p_delay))
            delay += rnd_range(w, 1, 2 * timeout);
        event_t ev = {.at = w->now + delay, .type = EV_COMMAND, .msg = json_incref(e->msg)};
        ev_push(w, ev);
        if (chance(w, w->p_dup)) {
            event_t d = {.at = w->now + delay + rnd_range(w, 0, 2 * timeout),
                         .type = EV_COMMAND, .msg = json_incref(e->msg)};
            ev_push(w, d);
        }
        trace(w, "  send %s%s", e->id, resent ? " (re-sent)" : "");
    }
    w->acks = grow(w->acks, &w->ackcap, w->ackn + 1, sizeof *w->acks);
    w->acks[w->ackn++] = strdup(e->id);
}

static void outbox_remove(sim_t *w, const char *id)
{
    for (size_t i = 0; i < w->outn; i++) {
        if (strcmp(w->outbox[i].id, id) == 0) {
            free(w->outbox[i].id);
            json_decref(w->outbox[i].msg);
            w->outbox[i] = w->outbox[--w->outn];
            return;
        }
    }
}

static double frnd01(sim_t *w)
{
    return (double)(splitmix64(&w->frng) >> 11) * 0x1.0p-53;
}

/* The store's atomic write of each pending transition: epoch, then version, then the
 * fields and the outbox (store_flush + the Lua script of store.c). With the Redis fault,
 * the connection is lost: before Redis ran the round (nothing written) or after (all
 * written), and either way the engine learns nothing (STORE_ERROR for every transition,
 * as store_receive reports it). */
static void store_flush(sim_t *w)
{
    int lost = faults_on(w) && frnd01(w) < w->p_redis_err ? (frnd01(w) < 0.5 ? 1 : 2) : 0;
    if (lost) {
        w->res->redis_errors++;
        trace(w, "  REDIS connection lost %s the round", lost == 1 ? "before" : "after");
    }
    if (lost == 1) {
        /* The acknowledgements stay queued for the next flush (settle_acks). */
        for (size_t i = 0; i < w->pendn; i++)
            w->pend[i].result = STORE_R_ERROR;
        return;
    }
    for (size_t i = 0; i < w->ackn; i++) {
        outbox_remove(w, w->acks[i]);
        free(w->acks[i]);
    }
    w->ackn = 0;
    for (size_t i = 0; i < w->pendn; i++) {
        pending_t *p = &w->pend[i];
        store_rec_t *r = &w->recs[p->idx];
        if (w->epoch != w->store_epoch) {
            p->result = STORE_R_FENCED;
        } else if (p->expected == 0 && r->fields) {
            p->result = STORE_R_EXISTS;
        } else if (r->version != p->expected) {
            p->result = STORE_R_CONFLICT;
        } else {
            p->result = STORE_R_OK;
            json_decref(r->fields);
            r->fields = json_incref(p->fields);
            r->version = p->expected + 1;
            r->status = p->status;
            for (size_t k = 0; k < p->n; k++) {
                w->outbox = grow(w->outbox, &w->outcap, w->outn + 1, sizeof *w->outbox);
                outbox_entry_t *o = &w->outbox[w->outn++];
                o->id = strdup(p->entries[k].id);
                o->topic = p->entries[k].topic;
                o->msg = json_incref(p->entries[k].msg);
            }
            size_t nh = json_array_size(p->history);
            for (size_t h = 0; h < nh; h++) {
                json_t *e = json_array_get(p->history, h);
                if (strcmp(jstr(e, "event"), "compensation_failed") == 0) {
                    int st = definition_step_index(w->def_of[p->idx], jstr(e, "step"));
                    if (st >= 0)
                        w->led[p->idx][st].comp_exhausted = true;
                }
            }
            w->res->transitions++;
        }
    }
    if (lost == 2)
        for (size_t i = 0; i < w->pendn; i++)
            w->pend[i].result = STORE_R_ERROR;
}

static void engine_load(sim_t *w, bool new_epoch);

typedef enum { CP_NONE, CP_TIMERS, CP_AFTER_WRITE, CP_MID_PRODUCE, CP_AFTER_PRODUCE } crash_point_t;

/* Whether the open round holds a transition of saga idx. */
static bool open_round_has(const sim_t *w, int idx)
{
    for (size_t i = 0; i < w->pendn; i++)
        if (w->pend[i].idx == idx)
            return true;
    return false;
}

/* One turn of the engine: coordinator_turn(): the open round computed, then
 * complete_round() on the round in flight, then send_round(). */
static void engine_turn(sim_t *w)
{
    if (faults_on(w) && w->p_pause > 0 && frnd01(w) < w->p_pause) {
        /* Frozen: the process does nothing, its clock and everyone else's go on. (Drawn
         * from the fault stream: runs without pauses play as they did before.) */
        w->frozen_until = w->now + SIM_PAUSE_MIN_MS +
                          (int64_t)(frnd01(w) * (SIM_PAUSE_MAX_MS - SIM_PAUSE_MIN_MS));
        w->res->pauses++;
        trace(w, "PAUSE until +%lld ms", (long long)(w->frozen_until - SIM_T0_MS));
        engine_wake(w, w->frozen_until);
        return;
    }
    w->res->turns++;
    size_t avail = w->logn - w->pos;
    /* Usually everything already fetched (as after a seek), sometimes a trickle. */
    size_t batch = rnd01(w) < 0.7 ? SIM_MAX_BATCH : (size_t)rnd_range(w, 1, 8);
    size_t n = avail < batch ? avail : batch;
    crash_point_t cp = CP_NONE;
    if (chance(w, w->p_crash))
        cp = (crash_point_t)rnd_range(w, CP_TIMERS, CP_AFTER_PRODUCE);
    trace(w, "turn: input %zu..%zu of %zu%s", w->pos, w->pos + n, w->logn,
          w->in_flight ? ", a round in flight" : "");
    for (size_t i = 0; i < n; i++) {
        if (w->pos + i < w->high_water)
            w->res->input_redelivered++;
        engine_handle(w, w->log[w->pos + i]);
    }
    if (w->pos + n > w->high_water)
        w->high_water = w->pos + n;
    size_t next_pos = w->pos + n;
    engine_run_timers(w, next_pos);
    if (cp == CP_TIMERS) {
        engine_crash(w, "before the store write of the open round");
        return;
    }

    /* complete_round: the store's answers to the round in flight. */
    if (w->in_flight) {
        if (cp == CP_AFTER_WRITE && w->sentn) {
            engine_crash(w, "after the store write, before produce");
            return;
        }
        size_t total = 0, produced = 0;
        for (size_t i = 0; i < w->sentn; i++)
            total += w->sent[i].result == STORE_R_OK ? w->sent[i].n : 0;
        bool reload = false;
        size_t crash_after = cp == CP_MID_PRODUCE && total
                                 ? (size_t)rnd_range(w, 0, (int64_t)total - 1)
                                 : SIZE_MAX;
        for (size_t i = 0; i < w->sentn; i++) {
            pending_t *p = &w->sent[i];
            saga_t *s = w->mem[p->idx];
            switch (p->result) {
            case STORE_R_OK:
                for (size_t k = 0; k < p->n; k++) {
                    if (produced++ == crash_after) {
                        engine_crash(w, "in the middle of produce");
                        return;
                    }
                    engine_produce(w, &p->entries[k], false);
                }
                break;
            case STORE_R_EXISTS:
                trace(w, "  start %s: duplicate, exists in the store", s ? s->id : "?");
                if (s && open_round_has(w, p->idx)) {
                    trace(w, "  s%d: the open round moved the phantom on: reload", p->idx);
                    reload = true;
                } else if (s) {
                    saga_free(s);
                    w->mem[p->idx] = NULL;
                }
                break;
            case STORE_R_ERROR:
                trace(w, "  s%d: outcome unknown: reload", p->idx);
                reload = true;
                break;
            default:
                if (w->cfg.plant != SIM_PLANT_START_RACE)
                    violate(w, "store refused a transition of s%d (%s) with one owner", p->idx,
                            p->result == STORE_R_FENCED ? "fenced" : "version conflict");
                trace(w, "  s%d: transition refused (%s): reload", p->idx,
                      p->result == STORE_R_FENCED ? "fenced" : "version conflict");
                reload = true;
                break;
            }
        }
        for (size_t i = 0; i < w->sentn && !reload; i++) {
            pending_t *p = &w->sent[i];
            saga_t *s = w->mem[p->idx];
            if (!s || p->result != STORE_R_OK)
                continue;
            /* A finishing transition is the saga's last; otherwise the open round may
             * have moved it on already. */
            if (saga_status_is_terminal(p->status)) {
                saga_free(s);
                w->mem[p->idx] = NULL;
            } else {
                s->timer_due = machine_next_timer(s);
            }
        }
        for (size_t i = 0; i < w->sentn; i++) {
            w->unconfirmed[w->sent[i].idx] = false;
            pending_release(&w->sent[i]);
        }
        w->sentn = 0;
        w->in_flight = false;
        if (reload) {
            /* The partition in doubt: offsets not stored, memory dropped with the open
             * round, loaded again (same epoch) and read from the last confirmed offset. */
            pending_t *kept = NULL;
            size_t nkept = 0, kept_cap = 0;
            if (w->cfg.plant == SIM_PLANT_KEEP_OPEN_ROUND) {
                kept = w->pend, nkept = w->pendn, kept_cap = w->pendcap;
                w->pend = NULL, w->pendn = w->pendcap = 0;
            }
            engine_drop_memory(w);
            engine_load(w, false);
            if (kept) {
                free(w->pend);
                w->pend = kept, w->pendn = nkept, w->pendcap = kept_cap;
                w->pos = next_pos; /* and its input counts as read */
            }
            if (++w->reloads > SIM_MAX_RELOADS) {
                violate(w, "livelock: the partition reloaded %d times at input offset %zu",
                        w->reloads, w->pos);
                w->livelock = true;
            }
            return;
        }
        if (cp == CP_AFTER_PRODUCE && produced) {
            engine_crash(w, "after produce, before the offset is stored");
            return;
        }
        w->stored = w->sent_pos;
        if (w->now >= w->next_commit_at) {
            w->committed = w->stored;
            w->next_commit_at = w->now + SIM_COMMIT_MS;
        }
    }

    /* send_round: the open round written now; acted on in the next turn. */
    w->pos = next_pos;
    if (w->pendn || w->ackn) {
        store_flush(w);
        pending_t *t = w->sent;
        size_t tcap = w->sentcap;
        w->sent = w->pend;
        w->sentcap = w->pendcap;
        w->sentn = w->pendn;
        w->pend = t;
        w->pendcap = tcap;
        w->pendn = 0;
        w->in_flight = true;
        w->sent_pos = next_pos;
    } else {
        w->stored = next_pos; /* nothing to write: the input read is settled */
    }
}

/* Recovery as partition_load() does it: new epoch, active sagas rebuilt from their
 * fields, timers from machine_next_timer, the outbox re-sent, input from the committed
 * offset. */
static void engine_load(sim_t *w, bool new_epoch)
{
    w->alive = true;
    if (new_epoch) {
        w->epoch = ++w->store_epoch;
        w->mrng = splitmix64(&w->rng) | 1;
    }
    int loaded = 0;
    for (int i = 0; i < w->nsagas; i++) {
        store_rec_t *r = &w->recs[i];
        if (!r->fields || saga_status_is_terminal(r->status))
            continue;
        char why[256];
        saga_t *s = saga_decode_fields(r->fields, w->def_of[i], why, sizeof why);
        if (!s) {
            violate(w, "saga s%d cannot be rebuilt from its fields: %s", i, why);
            continue;
        }
        if (s->version != r->version || s->status != r->status)
            violate(w, "saga s%d decoded as v%lld %s, stored v%lld %s", i,
                    (long long)s->version, saga_status_name(s->status),
                    (long long)r->version, saga_status_name(r->status));
        w->mem[i] = s;
        s->timer_due = w->cfg.plant == SIM_PLANT_NO_TIMER_REARM ? 0 : machine_next_timer(s);
        loaded++;
    }
    /* Redis gives a hash's fields in no particular order: re-send shuffled. */
    for (size_t i = w->outn; i > 1; i--) {
        size_t j = (size_t)(rnd(w) % i);
        outbox_entry_t t = w->outbox[i - 1];
        w->outbox[i - 1] = w->outbox[j];
        w->outbox[j] = t;
    }
    trace(w, "%s epoch %lld: %d sagas loaded, %zu outbox entries, input from %zu",
          new_epoch ? "RECOVER" : "RELOAD", (long long)w->epoch, loaded, w->outn,
          new_epoch ? w->committed : w->stored);
    for (size_t i = 0; i < w->outn; i++) {
        w->res->outbox_resent++;
        engine_produce(w, &w->outbox[i], true);
    }
    if (new_epoch) {
        w->pos = w->stored = w->committed;
        w->next_commit_at = w->now + SIM_COMMIT_MS;
    } else {
        w->pos = w->stored;
    }
}

static void engine_schedule(sim_t *w)
{
    int64_t next = 0;
    for (int i = 0; i < w->nsagas; i++)
        if (w->mem[i] && w->mem[i]->timer_due && (!next || w->mem[i]->timer_due < next))
            next = w->mem[i]->timer_due;
    if (w->pos < w->logn || w->ackn || w->in_flight)
        next = w->now + rnd_range(w, 1, 5);
    if (next)
        engine_wake(w, next);
}

/* --- client and operator ------------------------------------------------------------ */

static void client_start(sim_t *w, int idx)
{
    char id[16];
    snprintf(id, sizeof id, "s%d", idx);
    json_t *m = json_pack("{s:s, s:s, s:s, s:{s:i}}", "type", "start", "saga_id", id, "saga",
                          w->def_of[idx]->name, "input", "amount", (int)rnd_range(w, 1, 500));
    input_send(w, m, rnd_range(w, 1, 10));
    if (chance(w, w->p_dup)) /* the caller retries its start: idempotent by saga id */
        input_send(w, m, rnd_range(w, 1, 3000));
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
        if (w->recs[idx].fields && w->recs[idx].status == SAGA_RUNNING) {
            char id[16];
            snprintf(id, sizeof id, "s%d", idx);
            json_t *m = json_pack("{s:s, s:s, s:s}", "type", "abort", "saga_id", id, "reason",
                                  "customer cancelled");
            trace(w, "operator: abort %s", id);
            input_send(w, m, rnd_range(w, 1, 10));
            json_decref(m);
            w->res->aborts++;
        }
    }
    for (int idx = 0; idx < w->nsagas; idx++) {
        store_rec_t *r = &w->recs[idx];
        if (!r->fields || r->status != SAGA_STUCK || r->version == w->op_seen_version[idx] ||
            w->op_actions[idx] >= w->op_patience)
            continue;
        w->op_seen_version[idx] = r->version;
        w->op_actions[idx]++;
        char id[16];
        snprintf(id, sizeof id, "s%d", idx);
        const char *err = jstr(r->fields, "error");
        bool skip = strstr(err, "cannot build") != NULL || w->op_actions[idx] > 3 ||
                    rnd01(w) < 0.25;
        json_t *m;
        if (skip) {
            json_t *steps = json_loads(jstr(r->fields, "steps"), 0, NULL);
            for (size_t k = 0; k < json_array_size(steps); k++)
                if (strcmp(jstr(json_array_get(steps, k), "phase"), "comp_failed") == 0)
                    operator_compensate_by_hand(w, idx, (int)k);
            json_decref(steps);
            m = json_pack("{s:s, s:s, s:s, s:I}", "type", "skip", "saga_id", id, "reason",
                          "undone by hand", "expected_version", (json_int_t)r->version);
            w->res->skips++;
        } else {
            m = json_pack("{s:s, s:s, s:I}", "type", "retry", "saga_id", id, "expected_version",
                          (json_int_t)r->version);
            w->res->retries++;
        }
        trace(w, "operator: %s %s (%s)", skip ? "skip" : "retry", id, err);
        input_send(w, m, rnd_range(w, 1, 10));
        json_decref(m);
    }
}

static bool quiescent(const sim_t *w)
{
    if (faults_on(w) || !w->alive || w->pending_deliveries || w->pos < w->logn || w->outn ||
        w->in_flight)
        return false;
    for (int i = 0; i < w->nsagas; i++) {
        const store_rec_t *r = &w->recs[i];
        if (!r->fields)
            return false;
        if (saga_status_is_terminal(r->status))
            continue;
        if (r->status != SAGA_STUCK || w->op_actions[i] < w->op_patience)
            return false; /* stuck and the operator gave up: a valid end state */
    }
    return true;
}

/* --- the checker -------------------------------------------------------------------- */

static bool exempt_from_undo(const definition_t *d, const saga_t *s, int i)
{
    if (!d->steps[i].has_compensation)
        return true;
    return s && s->steps[i].phase == STEP_TIMED_OUT && !d->steps[i].compensate_on_timeout;
}

static void check_saga(sim_t *w, int idx)
{
    const definition_t *d = w->def_of[idx];
    store_rec_t *r = &w->recs[idx];
    ledger_t *L = w->led[idx];
    if (!r->fields) {
        violate(w, "s%d: never written to the store", idx);
        return;
    }
    char why[256];
    saga_t *s = saga_decode_fields(r->fields, d, why, sizeof why);
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
                L[b].comp_exhausted)
                continue; /* "continue" undoes the earlier steps past a failed one */
            if (!L[b].comp_applies || L[b].comp_seq > L[a].comp_seq)
                violate(w, "s%d: %s undone before %s of a later group was undone", idx,
                        d->steps[a].name, d->steps[b].name);
        }
    }
    /* Outcomes: each id is one transition to an end state; the same id again only when
     * recovery re-sent the outbox. */
    int terminal_ids = 0;
    bool saw_completed = false, saw_compensated = false;
    const outcome_rec_t *last = NULL;
    for (size_t k = 0; k < w->outcn; k++) {
        const outcome_rec_t *o = &w->outcomes[k];
        if (o->idx != idx)
            continue;
        bool repeat = false;
        for (size_t j = 0; j < k; j++)
            if (w->outcomes[j].idx == idx && strcmp(w->outcomes[j].id, o->id) == 0)
                repeat = true;
        if (repeat && !o->resent)
            violate(w, "s%d: outcome %s published twice without a re-send", idx, o->id);
        if (repeat)
            continue;
        if (saga_status_is_terminal(o->status))
            terminal_ids++;
        saw_completed |= o->status == SAGA_COMPLETED;
        saw_compensated |= o->status == SAGA_COMPENSATED;
        int64_t v = atoll(strrchr(o->id, '/') + 1);
        if (!last || v > atoll(strrchr(last->id, '/') + 1))
            last = o;
    }
    if (terminal_ids > 1 || (saw_completed && saw_compensated))
        violate(w, "s%d: %d end outcomes published%s", idx, terminal_ids,
                saw_completed && saw_compensated ? ", both completed and compensated" : "");
    if (s->status == SAGA_COMPLETED || s->status == SAGA_COMPENSATED || s->status == SAGA_STUCK) {
        if (!last || last->status != s->status)
            violate(w, "s%d: ends %s, last outcome published: %s", idx,
                    saga_status_name(s->status), last ? saga_status_name(last->status) : "none");
    }
    saga_free(s);
}

/* --- the run ------------------------------------------------------------------------ */

static int load_defs(sim_t *w)
{
    const char *texts[SIM_DEF_COUNT] = {SIM_DEF_ORDER, SIM_DEF_TRANSFER, SIM_DEF_TRIP};
    for (int i = 0; i < SIM_DEF_COUNT; i++) {
        defn_errors_t errs = {0};
        w->defs[i] = definition_load_string(texts[i], strlen(texts[i]), "sim", &errs);
        for (size_t k = 0; k < errs.count; k++) {
            char line[1024];
            defn_error_format(&errs.items[k], line, sizeof line);
            fprintf(stderr, "saga-sim: definition %d: %s\n", i, line);
        }
        defn_errors_release(&errs);
        if (!w->defs[i] || w->defs[i]->step_count > SIM_MAX_STEPS)
            return -1;
    }
    return 0;
}

static void sim_free(sim_t *w)
{
    engine_drop_memory(w);
    for (size_t i = 0; i < w->evn; i++) {
        free(w->evq[i].text);
        json_decref(w->evq[i].msg);
    }
    free(w->evq);
    for (int i = 0; i < w->nsagas; i++)
        json_decref(w->recs[i].fields);
    free(w->recs);
    for (size_t i = 0; i < w->outn; i++) {
        free(w->outbox[i].id);
        json_decref(w->outbox[i].msg);
    }
    free(w->outbox);
    for (size_t i = 0; i < w->logn; i++)
        free(w->log[i]);
    free(w->log);
    free(w->log_at);
    free(w->mem);
    free(w->unconfirmed);
    free(w->acks);
    free(w->pend);
    for (size_t i = 0; i < w->sentn; i++)
        pending_release(&w->sent[i]);
    free(w->sent);
    free(w->def_of);
    free(w->led);
    free(w->op_actions);
    free(w->op_seen_version);
    free(w->outcomes);
    cache_release(&w->replies);
    for (int i = 0; i < SIM_DEF_COUNT; i++)
        definition_free(w->defs[i]);
}

int sim_run(uint64_t seed, const sim_config_t *cfg, sim_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->seed = seed;
    out->trace_hash = 1469598103934665603ULL;
    sim_t *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->cfg = *cfg;
    w->res = out;
    w->rng = seed;
    w->now = SIM_T0_MS;
    json_object_seed(1);
    if (load_defs(w) < 0) {
        sim_free(w);
        free(w);
        return -1;
    }
    /* Fault intensity varies by seed: some runs are calm, some are storms. */
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
    if (cfg->plant == SIM_PLANT_NONE || cfg->plant == SIM_PLANT_KEEP_OPEN_ROUND)
        w->p_redis_err = 0.08 * frnd01(w);
    if (cfg->plant == SIM_PLANT_NONE || cfg->plant == SIM_PLANT_NO_TIMER_GATE)
        w->p_pause = 0.03 * frnd01(w);
    /* One run in five has an operator who gives up soon: stuck is a valid end state. */
    w->op_patience = rnd01(w) < 0.2 ? (int)rnd_range(w, 0, 2) : SIM_OPERATOR_MAX_ACTIONS;
    w->nsagas = cfg->sagas > 0 ? cfg->sagas : (int)rnd_range(w, 5, 15);
    if (w->nsagas > SIM_MAX_SAGAS)
        w->nsagas = SIM_MAX_SAGAS;
    out->sagas = w->nsagas;
    w->def_of = calloc((size_t)w->nsagas, sizeof *w->def_of);
    w->led = calloc((size_t)w->nsagas, sizeof *w->led);
    w->recs = calloc((size_t)w->nsagas, sizeof *w->recs);
    w->mem = calloc((size_t)w->nsagas, sizeof *w->mem);
    w->unconfirmed = calloc((size_t)w->nsagas, sizeof *w->unconfirmed);
    w->op_actions = calloc((size_t)w->nsagas, sizeof *w->op_actions);
    w->op_seen_version = calloc((size_t)w->nsagas, sizeof *w->op_seen_version);
    w->mrng = splitmix64(&w->rng) | 1;
    w->alive = true;
    w->epoch = w->store_epoch = 1;
    w->next_commit_at = w->now + SIM_COMMIT_MS;
    trace(w, "seed %llu: %d sagas, crash %.3f dup %.3f delay %.3f lost %.3f late %.3f",
          (unsigned long long)seed, w->nsagas, w->p_crash, w->p_dup, w->p_delay, w->p_lost,
          w->p_late);
    for (int i = 0; i < w->nsagas; i++) {
        w->def_of[i] = w->defs[rnd(w) % SIM_DEF_COUNT];
        event_t e = {.at = w->now + rnd_range(w, 0, SIM_FAULT_MS * 2 / 3), .type = EV_START,
                     .idx = i};
        ev_push(w, e);
    }
    event_t op = {.at = w->now + SIM_OPERATOR_MS, .type = EV_OPERATOR};
    ev_push(w, op);

    while (w->evn) {
        event_t e = ev_pop(w);
        if (e.at > SIM_T0_MS + SIM_MAX_MS) {
            free(e.text);
            json_decref(e.msg);
            break;
        }
        w->now = e.at;
        if (e.type == EV_TURN && e.at != w->turn_at)
            continue; /* superseded by an earlier wake-up */
        out->events++;
        switch (e.type) {
        case EV_START:
            trace(w, "client: start s%d (%s)", e.idx, w->def_of[e.idx]->name);
            client_start(w, e.idx);
            break;
        case EV_INPUT:
            trace(w, "input @%zu: %.160s", w->logn, e.text);
            w->log = grow(w->log, &w->logcap, w->logn + 1, sizeof *w->log);
            w->log_at = grow(w->log_at, &w->log_at_cap, w->logn + 1, sizeof *w->log_at);
            w->log_at[w->logn] = w->now;
            w->log[w->logn++] = e.text;
            e.text = NULL;
            engine_wake(w, w->now + rnd_range(w, 0, 3));
            break;
        case EV_COMMAND:
            trace(w, "deliver %s", jstr(e.msg, "command_id"));
            participant_handle(w, e.msg);
            break;
        case EV_TURN:
            w->turn_at = 0;
            if (w->alive)
                engine_turn(w);
            break;
        case EV_RECOVER:
            engine_load(w, true);
            break;
        case EV_OPERATOR:
            operator_look(w);
            if (quiescent(w)) {
                trace(w, "quiescent");
                goto done;
            }
            event_t next = {.at = w->now + SIM_OPERATOR_MS, .type = EV_OPERATOR};
            ev_push(w, next);
            break;
        }
        free(e.text);
        json_decref(e.msg);
        if (w->livelock)
            break;
        if (w->alive)
            engine_schedule(w);
    }
done:
    out->end_ms = w->now - SIM_T0_MS;
    if (!quiescent(w))
        violate(w, "not quiescent at %lld ms: %zu input unread, %zu outbox entries",
                (long long)out->end_ms, w->logn - w->pos, w->outn);
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
    static const char *const names[] = {"none", "double-apply", "fake-compensation",
                                        "no-timer-rearm", "start-race",
                                        "skip-redelivery", "keep-open-round",
                                        "no-timer-gate"};
    return p < SIM_PLANT_COUNT ? names[p] : "?";
}
