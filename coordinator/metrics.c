/* metrics.c - live metrics of the loop thread, the published snapshot, and its
 * Prometheus text rendering (see metrics.h). */
#include "metrics.h"
#include "saga_version.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Step duration buckets, seconds: from a fast local participant to a slow human-driven
 * one; the default step timeout range of the definitions falls in the middle. */
static const double BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                 2.5,   5,    10,    30,   60,  120, 300, 600};
#define BUCKET_COUNT (sizeof BUCKETS / sizeof *BUCKETS)

/* Latency the coordinator adds per transition, seconds: fine below the 2 ms a turn is
 * meant to take at half load, coarse above it for a loop held up by a slow Redis. */
static const double LAT_BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002,
                                     0.003,  0.005,   0.0075, 0.01,    0.025, 0.05,   0.1,
                                     0.25,   0.5,     1,      2.5,     5,     10};
#define LAT_BUCKET_COUNT (sizeof LAT_BUCKETS / sizeof *LAT_BUCKETS)

enum { OUT_STARTED, OUT_COMPLETED, OUT_COMPENSATED, OUT_STUCK, OUT_REJECTED, OUT_COUNT };
static const char *const OUT_NAMES[OUT_COUNT] = {"started", "completed", "compensated", "stuck",
                                                 "rejected"};
static const char *const OUT_HELP[OUT_COUNT] = {
    "Sagas started (created in Redis) by this instance",
    "Sagas that completed on this instance",
    "Sagas that compensated on this instance",
    "Times a saga became stuck (a compensation exhausted its retries) on this instance",
    "Start requests rejected (unknown definition or invalid input) by this instance"};

#define KIND_COUNT 2
enum { RES_OK, RES_FAILED, RES_TIMED_OUT, RES_COUNT };
static const char *const KIND_NAMES[KIND_COUNT] = {"action", "compensation"};
static const char *const RES_NAMES[RES_COUNT] = {"ok", "failed", "timed_out"};

typedef struct def_meta {
    char *name;
    char **steps;            /* union of the step names of every loaded version */
    size_t step_count;
    size_t hist_first;       /* index of its first histogram */
} def_meta_t;

typedef struct values {
    uint64_t *outcomes;      /* (ndefs + 1) * OUT_COUNT; the last row is "(unknown)" */
    uint64_t *buckets;       /* nhist * BUCKET_COUNT (not cumulative) */
    uint64_t *count;         /* nhist */
    double *sum;             /* nhist, seconds */
    uint64_t lat_buckets[LAT_BUCKET_COUNT + 1]; /* coordinator latency (not cumulative; +Inf last) */
    uint64_t lat_count;
    double lat_sum;
} values_t;

struct metrics {
    def_meta_t *defs;
    size_t ndefs, nhist;
    values_t live, snap;
    pthread_mutex_t lock;    /* guards snap, engine and the lag copies */
    bool published;
    metrics_engine_t engine; /* its lag pointers point at lag_partition/lag below */
    int32_t *lag_partition;
    int64_t *lag;
    size_t lag_cap;
    char waiting[512];       /* metrics_set_waiting; under lock */
};

static int values_init(values_t *v, size_t ndefs, size_t nhist)
{
    v->outcomes = calloc((ndefs + 1) * OUT_COUNT, sizeof *v->outcomes);
    v->buckets = calloc(nhist * BUCKET_COUNT + 1, sizeof *v->buckets);
    v->count = calloc(nhist + 1, sizeof *v->count);
    v->sum = calloc(nhist + 1, sizeof *v->sum);
    return v->outcomes && v->buckets && v->count && v->sum ? 0 : -1;
}

static void values_release(values_t *v)
{
    free(v->outcomes);
    free(v->buckets);
    free(v->count);
    free(v->sum);
}

static void values_copy(values_t *dst, const values_t *src, size_t ndefs, size_t nhist)
{
    memcpy(dst->outcomes, src->outcomes, (ndefs + 1) * OUT_COUNT * sizeof *dst->outcomes);
    memcpy(dst->buckets, src->buckets, nhist * BUCKET_COUNT * sizeof *dst->buckets);
    memcpy(dst->count, src->count, nhist * sizeof *dst->count);
    memcpy(dst->sum, src->sum, nhist * sizeof *dst->sum);
    memcpy(dst->lat_buckets, src->lat_buckets, sizeof dst->lat_buckets);
    dst->lat_count = src->lat_count;
    dst->lat_sum = src->lat_sum;
}

static long find_def(const metrics_t *m, const char *name)
{
    for (size_t i = 0; name && i < m->ndefs; i++)
        if (strcmp(m->defs[i].name, name) == 0)
            return (long)i;
    return -1;
}

static long find_step(const def_meta_t *d, const char *name)
{
    for (size_t i = 0; name && i < d->step_count; i++)
        if (strcmp(d->steps[i], name) == 0)
            return (long)i;
    return -1;
}

metrics_t *metrics_new(const defn_set_t *defs)
{
    metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    size_t n = defs ? defn_set_count(defs) : 0;
    m->defs = calloc(n + 1, sizeof *m->defs);
    if (!m->defs)
        goto err;
    for (size_t i = 0; i < n; i++) {
        const definition_t *d = defn_set_at(defs, i);
        long at = find_def(m, d->name);
        def_meta_t *dm;
        if (at < 0) {
            dm = &m->defs[m->ndefs];
            if (!(dm->name = strdup(d->name)))
                goto err;
            m->ndefs++;
        } else {
            dm = &m->defs[at];
        }
        for (size_t k = 0; k < d->step_count; k++) {
            if (find_step(dm, d->steps[k].name) >= 0)
                continue;
            char **p = realloc(dm->steps, (dm->step_count + 1) * sizeof *p);
            if (!p)
                goto err;
            dm->steps = p;
            if (!(p[dm->step_count] = strdup(d->steps[k].name)))
                goto err;
            dm->step_count++;
        }
    }
    for (size_t i = 0; i < m->ndefs; i++) {
        m->defs[i].hist_first = m->nhist;
        m->nhist += m->defs[i].step_count * KIND_COUNT * RES_COUNT;
    }
    if (values_init(&m->live, m->ndefs, m->nhist) < 0 ||
        values_init(&m->snap, m->ndefs, m->nhist) < 0)
        goto err;
    return m;
err:
    metrics_free(m);
    return NULL;
}

void metrics_free(metrics_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->defs && i < m->ndefs; i++) {
        free(m->defs[i].name);
        for (size_t k = 0; k < m->defs[i].step_count; k++)
            free(m->defs[i].steps[k]);
        free(m->defs[i].steps);
    }
    free(m->defs);
    values_release(&m->live);
    values_release(&m->snap);
    free(m->lag_partition);
    free(m->lag);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void count_outcome(metrics_t *m, const char *definition, int which)
{
    long d = find_def(m, definition);
    size_t row = d < 0 ? m->ndefs : (size_t)d;
    m->live.outcomes[row * OUT_COUNT + (size_t)which]++;
}

static void observe(metrics_t *m, long def, long step, int kind, int result, double seconds)
{
    size_t h = m->defs[def].hist_first + ((size_t)step * KIND_COUNT + (size_t)kind) * RES_COUNT +
               (size_t)result;
    for (size_t b = 0; b < BUCKET_COUNT; b++) {
        if (seconds <= BUCKETS[b]) {
            m->live.buckets[h * BUCKET_COUNT + b]++;
            break;
        }
    }
    m->live.count[h]++;
    m->live.sum[h] += seconds;
}

void metrics_on_transition(metrics_t *m, const saga_t *s, bool created, saga_status_t status,
                           const json_t *history)
{
    if (!m || !s || !s->def)
        return;
    if (created)
        count_outcome(m, s->def->name, OUT_STARTED);
    size_t i;
    const json_t *e;
    bool finished = false, stuck = false;
    long def = find_def(m, s->def->name);
    json_array_foreach(history, i, e)
    {
        const char *event = json_string_value(json_object_get(e, "event"));
        if (!event)
            continue;
        /* The final entries say how the saga ended in this transition. */
        if (strcmp(event, "completed") == 0 || strcmp(event, "compensated") == 0)
            finished = true;
        if (strcmp(event, "stuck") == 0)
            stuck = true;
        /* A step settles on these events only: a failure that is retried says
         * *_retry_scheduled instead, a compensation time-out is followed by either. */
        int kind, result;
        if (strcmp(event, "action_ok") == 0)
            kind = 0, result = RES_OK;
        else if (strcmp(event, "action_failed") == 0)
            kind = 0, result = RES_FAILED;
        else if (strcmp(event, "action_timed_out") == 0)
            kind = 0, result = RES_TIMED_OUT;
        else if (strcmp(event, "compensation_ok") == 0)
            kind = 1, result = RES_OK;
        else if (strcmp(event, "compensation_failed") == 0)
            kind = 1, result = RES_FAILED;
        else
            continue;
        const char *step = json_string_value(json_object_get(e, "step"));
        int idx = step ? definition_step_index(s->def, step) : -1;
        long hs = def >= 0 && step ? find_step(&m->defs[def], step) : -1;
        if (idx < 0 || hs < 0)
            continue;
        const step_state_t *st = &s->steps[idx];
        int64_t from = kind == 0 ? st->started_at : st->comp_started_at;
        int64_t ts = json_integer_value(json_object_get(e, "ts"));
        if (from <= 0 || ts < from)
            continue;
        observe(m, def, hs, kind, result, (double)(ts - from) / 1000.0);
    }
    if (finished && status == SAGA_COMPLETED)
        count_outcome(m, s->def->name, OUT_COMPLETED);
    else if (finished && status == SAGA_COMPENSATED)
        count_outcome(m, s->def->name, OUT_COMPENSATED);
    if (stuck && status == SAGA_STUCK)
        count_outcome(m, s->def->name, OUT_STUCK);
}

void metrics_on_latency(metrics_t *m, double seconds)
{
    if (!m)
        return;
    size_t b = 0;
    while (b < LAT_BUCKET_COUNT && seconds > LAT_BUCKETS[b])
        b++;
    m->live.lat_buckets[b]++;
    m->live.lat_count++;
    m->live.lat_sum += seconds;
}

void metrics_on_rejected(metrics_t *m, const char *definition)
{
    if (m)
        count_outcome(m, definition, OUT_REJECTED);
}

void metrics_publish(metrics_t *m, const metrics_engine_t *e)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    values_copy(&m->snap, &m->live, m->ndefs, m->nhist);
    m->engine = *e;
    size_t n = e->lag_count < METRICS_MAX_LAG_PARTITIONS ? e->lag_count : METRICS_MAX_LAG_PARTITIONS;
    if (n > m->lag_cap) {
        int32_t *p = realloc(m->lag_partition, n * sizeof *p);
        if (p)
            m->lag_partition = p;
        int64_t *l = realloc(m->lag, n * sizeof *l);
        if (l)
            m->lag = l;
        if (p && l)
            m->lag_cap = n;
    }
    n = n < m->lag_cap ? n : m->lag_cap;
    if (n) {
        memcpy(m->lag_partition, e->lag_partition, n * sizeof *m->lag_partition);
        memcpy(m->lag, e->lag, n * sizeof *m->lag);
    }
    m->engine.lag_count = n;
    m->engine.lag_partition = m->lag_partition;
    m->engine.lag = m->lag;
    m->published = true;
    pthread_mutex_unlock(&m->lock);
}

void metrics_set_waiting(metrics_t *m, const char *why)
{
    pthread_mutex_lock(&m->lock);
    snprintf(m->waiting, sizeof m->waiting, "%s", why ? why : "");
    pthread_mutex_unlock(&m->lock);
}

void metrics_health(metrics_t *m, metrics_health_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->lock);
    memcpy(out->waiting, m->waiting, sizeof out->waiting);
    out->published = m->published;
    out->last_turn_ms = m->engine.last_turn_ms;
    out->partitions_owned = m->engine.partitions_owned;
    out->joined = m->engine.joined;
    out->redis_ok = m->engine.redis_ok;
    out->fatal = m->engine.fatal;
    pthread_mutex_unlock(&m->lock);
}

/* --- rendering -------------------------------------------------------------------- */

typedef struct buf {
    char *data;
    size_t len, cap;
    bool failed;
} buf_t;

static void bprintf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf_t *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

/* A label value with \, " and newline escaped as the text format requires. */
static void blabel(buf_t *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"')
            bprintf(b, "\\%c", *p);
        else if (*p == '\n')
            bprintf(b, "\\n");
        else
            bprintf(b, "%c", *p);
    }
}

static void header(buf_t *b, const char *name, const char *type, const char *help)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(buf_t *b, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    header(b, name, type, help);
    bprintf(b, "%s %llu\n", name, v);
}

/* A double in the text format's spelling. */
static void bnum(buf_t *b, double v)
{
    bprintf(b, "%.15g", v);
}

/* The Prometheus "info" idiom: a constant 1 whose label says which build runs. */
static void render_build_info(buf_t *b)
{
    header(b, "saga_coordinator_build_info", "gauge",
           "the coordinator's build: its version in the label, the value is always 1");
    bprintf(b, "saga_coordinator_build_info{version=\"");
    blabel(b, SAGA_VERSION);
    bprintf(b, "\"} 1\n");
}

static void render_outcomes(buf_t *b, const metrics_t *m)
{
    for (int o = 0; o < OUT_COUNT; o++) {
        char name[64];
        snprintf(name, sizeof name, "saga_%s_total", OUT_NAMES[o]);
        header(b, name, "counter", OUT_HELP[o]);
        for (size_t d = 0; d <= m->ndefs; d++) {
            if (d == m->ndefs && o != OUT_REJECTED)
                continue; /* only rejections can name a definition not loaded */
            bprintf(b, "%s{definition=\"", name);
            blabel(b, d < m->ndefs ? m->defs[d].name : METRICS_UNKNOWN_DEFINITION);
            bprintf(b, "\"} %llu\n", (unsigned long long)m->snap.outcomes[d * OUT_COUNT + (size_t)o]);
        }
    }
}

static void render_histograms(buf_t *b, const metrics_t *m)
{
    const char *name = "saga_step_duration_seconds";
    header(b, name, "histogram",
           "Time from a step's first action (or compensation) attempt sent to its settling "
           "reply or time-out, retries included");
    for (size_t d = 0; d < m->ndefs; d++) {
        const def_meta_t *dm = &m->defs[d];
        for (size_t s = 0; s < dm->step_count; s++) {
            for (int k = 0; k < KIND_COUNT; k++) {
                for (int r = 0; r < RES_COUNT; r++) {
                    size_t h = dm->hist_first + (s * KIND_COUNT + (size_t)k) * RES_COUNT + (size_t)r;
                    /* Every definition's action/ok series is always there; the others
                     * appear once something was observed in them. */
                    if (m->snap.count[h] == 0 && !(k == 0 && r == RES_OK))
                        continue;
                    uint64_t cum = 0;
                    for (size_t i = 0; i <= BUCKET_COUNT; i++) {
                        bprintf(b, "%s_bucket{definition=\"", name);
                        blabel(b, dm->name);
                        bprintf(b, "\",step=\"");
                        blabel(b, dm->steps[s]);
                        bprintf(b, "\",kind=\"%s\",result=\"%s\",le=\"", KIND_NAMES[k], RES_NAMES[r]);
                        if (i < BUCKET_COUNT) {
                            cum += m->snap.buckets[h * BUCKET_COUNT + i];
                            bnum(b, BUCKETS[i]);
                        } else {
                            cum = m->snap.count[h];
                            bprintf(b, "+Inf");
                        }
                        bprintf(b, "\"} %llu\n", (unsigned long long)cum);
                    }
                    for (int which = 0; which < 2; which++) {
                        bprintf(b, "%s_%s{definition=\"", name, which ? "count" : "sum");
                        blabel(b, dm->name);
                        bprintf(b, "\",step=\"");
                        blabel(b, dm->steps[s]);
                        bprintf(b, "\",kind=\"%s\",result=\"%s\"} ", KIND_NAMES[k], RES_NAMES[r]);
                        if (which)
                            bprintf(b, "%llu\n", (unsigned long long)m->snap.count[h]);
                        else {
                            bnum(b, m->snap.sum[h]);
                            bprintf(b, "\n");
                        }
                    }
                }
            }
        }
    }
}

static void render_latency(buf_t *b, const values_t *v)
{
    const char *name = "saga_coordinator_latency_seconds";
    header(b, name, "histogram",
           "Latency the coordinator adds per transition: from its input message being "
           "available (taken from the consumer queue, or the queue last found empty) to the "
           "produce of the commands it caused, the Redis write included");
    uint64_t cum = 0;
    for (size_t i = 0; i < LAT_BUCKET_COUNT; i++) {
        cum += v->lat_buckets[i];
        bprintf(b, "%s_bucket{le=\"", name);
        bnum(b, LAT_BUCKETS[i]);
        bprintf(b, "\"} %llu\n", (unsigned long long)cum);
    }
    bprintf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)v->lat_count);
    bprintf(b, "%s_sum ", name);
    bnum(b, v->lat_sum);
    bprintf(b, "\n%s_count %llu\n", name, (unsigned long long)v->lat_count);
}

static void render_engine(buf_t *b, const metrics_engine_t *e)
{
    const engine_stats_t *st = &e->stats;
    scalar(b, "saga_input_messages_total", "counter", "Input messages taken from the input topic",
           st->messages);
    scalar(b, "saga_transitions_total", "counter", "Saga transitions written to Redis",
           st->transitions);
    scalar(b, "saga_commands_sent_total", "counter",
           "Commands and outcomes produced by confirmed transitions", st->commands_sent);
    scalar(b, "saga_duplicate_starts_total", "counter",
           "Start requests for a saga id that already exists (idempotent starts)",
           st->duplicate_starts);
    header(b, "saga_replies_ignored_total", "counter",
           "Participant replies that changed nothing, by reason");
    bprintf(b, "saga_replies_ignored_total{reason=\"duplicate\"} %llu\n",
            (unsigned long long)st->duplicate_replies);
    bprintf(b, "saga_replies_ignored_total{reason=\"late\"} %llu\n",
            (unsigned long long)st->late_replies);
    bprintf(b, "saga_replies_ignored_total{reason=\"unexpected\"} %llu\n",
            (unsigned long long)st->unexpected_replies);
    bprintf(b, "saga_replies_ignored_total{reason=\"unknown_saga\"} %llu\n",
            (unsigned long long)st->unknown_saga_replies);
    scalar(b, "saga_operator_commands_ignored_total", "counter",
           "abort/retry/skip that did not apply to the saga's state", st->ignored_operator);
    scalar(b, "saga_dead_letters_total", "counter",
           "Input messages copied to the dead-letter topic", st->dead_letters);
    scalar(b, "saga_redis_errors_total", "counter", "Failed Redis pipelines and loads",
           st->redis_errors);
    scalar(b, "saga_kafka_errors_total", "counter",
           "Kafka produce, delivery and consume errors", st->kafka_errors);
    scalar(b, "saga_fenced_total", "counter",
           "Times a partition was found taken over by another instance", st->fenced);
    scalar(b, "saga_input_forwarded_total", "counter",
           "Input messages forwarded to their saga's home partition", st->forwarded);
    scalar(b, "saga_timers_held_total", "counter",
           "Due timers held back until the input appended before them was read",
           st->timers_held);
    scalar(b, "saga_redis_outages_total", "counter",
           "Times Redis became unavailable (every partition waits and reloads)",
           st->redis_outages);
    scalar(b, "saga_partitions_assigned_total", "counter", "Input partitions assigned",
           st->partitions_assigned);
    scalar(b, "saga_partitions_revoked_total", "counter", "Input partitions revoked",
           st->partitions_revoked);
    scalar(b, "saga_outbox_resent_total", "counter",
           "Outbox messages re-sent when loading a partition", st->outbox_resent);
    scalar(b, "saga_sagas_loaded_total", "counter", "Active sagas loaded from Redis",
           st->sagas_loaded);
    header(b, "saga_partition_load_seconds", "gauge",
           "Time the last partition load (epoch, sagas, outbox) took");
    bprintf(b, "saga_partition_load_seconds ");
    bnum(b, (double)st->last_load_ms / 1000.0);
    bprintf(b, "\n");
    scalar(b, "saga_partitions_owned", "gauge", "Input partitions this instance owns",
           (unsigned long long)e->partitions_owned);
    scalar(b, "saga_sagas_in_memory", "gauge", "Active sagas held in memory",
           (unsigned long long)e->sagas_in_memory);
    scalar(b, "saga_outbox_pending_messages", "gauge",
           "Outbox messages produced whose Kafka acknowledgement has not come back yet",
           (unsigned long long)(e->outbox_pending > 0 ? e->outbox_pending : 0));
    if (e->input_partitions > 0)
        scalar(b, "saga_input_partitions", "gauge",
               "Partitions of the input topic (from metadata when the instance started)",
               (unsigned long long)e->input_partitions);
    scalar(b, "saga_loop_turns_total", "counter", "Engine loop turns", (unsigned long long)e->turns);
    header(b, "saga_loop_last_turn_timestamp_seconds", "gauge",
           "Wall clock time of the last loop turn");
    bprintf(b, "saga_loop_last_turn_timestamp_seconds ");
    bnum(b, (double)e->last_turn_ms / 1000.0);
    bprintf(b, "\n");
    scalar(b, "saga_redis_up", "gauge", "1 when the engine's last Redis round trip succeeded",
           e->redis_ok ? 1 : 0);
    header(b, "saga_input_lag_messages", "gauge",
           "Messages of an owned input partition not yet taken (high watermark - position)");
    for (size_t i = 0; i < e->lag_count; i++)
        if (e->lag[i] >= 0)
            bprintf(b, "saga_input_lag_messages{partition=\"%d\"} %lld\n",
                    (int)e->lag_partition[i], (long long)e->lag[i]);
}

char *metrics_render(metrics_t *m, size_t *len)
{
    buf_t b = {.cap = 16384};
    b.data = malloc(b.cap);
    if (!b.data)
        return NULL;
    b.data[0] = '\0';
    pthread_mutex_lock(&m->lock);
    render_build_info(&b);
    render_outcomes(&b, m);
    render_histograms(&b, m);
    render_latency(&b, &m->snap);
    render_engine(&b, &m->engine);
    pthread_mutex_unlock(&m->lock);
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.data;
}
