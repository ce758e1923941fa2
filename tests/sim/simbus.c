/* simbus.c - the simulated bus: input logs, committed offsets, the group's owners, and
 * each instance's consumer and producer behind the bus port (see simbus.h). */
#include "simbus.h"

#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct log_entry {
    char *key;
    char *value;
    int64_t at;                 /* appended at (ms) */
    int32_t forwarded_from;
} log_entry_t;

typedef struct input_log {
    log_entry_t *entries;
    size_t n, cap;
    int64_t committed;          /* -1: none */
    simbus_client_t *owner;     /* the group's view: who may commit it */
    int64_t high_water;         /* furthest offset ever handed over */
} input_log_t;

struct simbus {
    char *input_topic;
    int32_t partitions;
    input_log_t *logs;
    simbus_hooks_t hooks;
    uint64_t rereads;
};

typedef struct report {
    void *delivery;
    int32_t partition;
    char *topic;
    bool failed;
} report_t;

typedef struct consumed {
    bool assigned, paused;
    int64_t position;           /* next offset to hand over */
    int64_t stored;             /* store_offsets' last, -1 = none */
} consumed_t;

struct simbus_client {
    simbus_t *bus;
    void *opaque;
    engine_t *engine;
    bool dead;
    consumed_t *parts;          /* bus->partitions entries */
    int32_t next_part;          /* where consume starts, for fairness */
    int64_t next_commit_at;
    report_t *reports;
    size_t nreports, reports_cap;
};

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    p = realloc(p, n * size);
    if (!p)
        abort(); /* a test model: out of memory ends the program */
    *cap = n;
    return p;
}

static char *dup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

static input_log_t *log_of(const simbus_t *bus, int32_t partition)
{
    return partition >= 0 && partition < bus->partitions ? &bus->logs[partition] : NULL;
}

/* --- the bus ------------------------------------------------------------------------ */

simbus_t *simbus_new(const char *input_topic, int32_t partitions, const simbus_hooks_t *hooks)
{
    simbus_t *bus = calloc(1, sizeof *bus);
    if (!bus)
        return NULL;
    bus->input_topic = dup(input_topic);
    bus->partitions = partitions;
    bus->logs = calloc((size_t)partitions, sizeof *bus->logs);
    if (!bus->logs)
        abort();
    for (int32_t p = 0; p < partitions; p++)
        bus->logs[p].committed = -1;
    bus->hooks = *hooks;
    return bus;
}

void simbus_free(simbus_t *bus)
{
    if (!bus)
        return;
    for (int32_t p = 0; p < bus->partitions; p++) {
        for (size_t i = 0; i < bus->logs[p].n; i++) {
            free(bus->logs[p].entries[i].key);
            free(bus->logs[p].entries[i].value);
        }
        free(bus->logs[p].entries);
    }
    free(bus->logs);
    free(bus->input_topic);
    free(bus);
}

static int64_t append(simbus_t *bus, int32_t partition, const char *key, const char *value,
                      int64_t now, int32_t forwarded_from)
{
    input_log_t *l = log_of(bus, partition);
    l->entries = grow(l->entries, &l->cap, l->n + 1, sizeof *l->entries);
    l->entries[l->n] = (log_entry_t){dup(key), dup(value), now, forwarded_from};
    return (int64_t)l->n++;
}

int64_t simbus_append(simbus_t *bus, int32_t partition, const char *key, const char *value,
                      int64_t now)
{
    return append(bus, partition, key, value, now, -1);
}

int64_t simbus_end(const simbus_t *bus, int32_t partition)
{
    const input_log_t *l = log_of(bus, partition);
    return l ? (int64_t)l->n : 0;
}

const char *simbus_message(const simbus_t *bus, int32_t partition, int64_t offset,
                           int64_t *appended_at)
{
    const input_log_t *l = log_of(bus, partition);
    if (!l || offset < 0 || (size_t)offset >= l->n)
        return NULL;
    *appended_at = l->entries[offset].at;
    return l->entries[offset].value;
}

int64_t simbus_committed(const simbus_t *bus, int32_t partition)
{
    const input_log_t *l = log_of(bus, partition);
    return l ? l->committed : -1;
}

uint64_t simbus_rereads(const simbus_t *bus)
{
    return bus->rereads;
}

/* --- the producer --------------------------------------------------------------------- */

/* The partition a key goes to: Kafka's default partitioner (murmur2). */
static int32_t by_key(const simbus_t *bus, const char *key, size_t key_len)
{
    return (int32_t)((route_murmur2(key, key_len) & 0x7fffffff) % (uint32_t)bus->partitions);
}

static int bus_produce(void *opaque, const char *topic, int32_t partition, const char *key,
                       size_t key_len, const char *value, size_t len, int32_t forwarded_from,
                       void *delivery, char *err, size_t errlen)
{
    simbus_client_t *c = opaque;
    simbus_t *bus = c->bus;
    simbus_fate_t fate = c->dead ? SIMBUS_KILLED : bus->hooks.fate(bus->hooks.opaque, c->opaque,
                                                                    topic);
    if (fate == SIMBUS_KILLED || c->dead) {
        snprintf(err, errlen, "the process was killed");
        return -1;
    }
    char *k = strndup(key ? key : "", key ? key_len : 0), *v = strndup(value, len);
    if (!k || !v)
        abort();
    bool input = strcmp(topic, bus->input_topic) == 0;
    if (partition < 0)
        partition = input ? by_key(bus, k, strlen(k)) : 0;
    if (fate == SIMBUS_DELIVER && input)
        append(bus, partition, k, v, bus->hooks.now_ms(bus->hooks.opaque), forwarded_from);
    else if (fate == SIMBUS_DELIVER)
        bus->hooks.publish(bus->hooks.opaque, topic, k, v);
    free(k);
    free(v);
    c->reports = grow(c->reports, &c->reports_cap, c->nreports + 1, sizeof *c->reports);
    c->reports[c->nreports++] = (report_t){delivery, partition, dup(topic), fate != SIMBUS_DELIVER};
    return 0;
}

/* Serves every queued delivery report (the engine may produce while they are served:
 * those wait for the next call). */
static void serve_reports(simbus_client_t *c, bool all_failed)
{
    size_t n = c->nreports;
    if (!n)
        return;
    report_t *r = malloc(n * sizeof *r);
    if (!r)
        abort();
    memcpy(r, c->reports, n * sizeof *r);
    c->nreports = 0;
    for (size_t i = 0; i < n; i++) {
        bool failed = r[i].failed || all_failed;
        engine_on_delivery(c->engine, r[i].delivery, r[i].partition, r[i].topic,
                           failed ? -1 : 0, failed ? "simulated delivery failure" : NULL);
        free(r[i].topic);
    }
    free(r);
}

static int bus_flush(void *opaque, int timeout_ms)
{
    (void)timeout_ms;
    simbus_client_t *c = opaque;
    while (c->nreports)
        serve_reports(c, false);
    return 0;
}

static void bus_poll(void *opaque)
{
    serve_reports(opaque, false);
}

static int bus_outq_len(void *opaque)
{
    return simbus_client_unreported(opaque);
}

/* --- the consumer --------------------------------------------------------------------- */

static consumed_t *consumed_of(const simbus_client_t *c, int32_t partition)
{
    return partition >= 0 && partition < c->bus->partitions ? &c->parts[partition] : NULL;
}

static int bus_pause(void *opaque, int32_t partition, bool pause, char *err, size_t errlen)
{
    consumed_t *p = consumed_of(opaque, partition);
    if (!p) {
        snprintf(err, errlen, "no partition %d", (int)partition);
        return -1;
    }
    p->paused = pause;
    return 0;
}

/* Where a consumer starts on partition: the committed offset, else the beginning. */
static int64_t start_offset(const simbus_t *bus, int32_t partition)
{
    int64_t committed = simbus_committed(bus, partition);
    return committed >= 0 ? committed : 0;
}

static int bus_seek(void *opaque, int32_t partition, int64_t offset, char *err, size_t errlen)
{
    simbus_client_t *c = opaque;
    consumed_t *p = consumed_of(c, partition);
    if (!p || !p->assigned) {
        snprintf(err, errlen, "partition %d is not assigned", (int)partition);
        return -1;
    }
    p->position = offset >= 0 ? offset : start_offset(c->bus, partition);
    return 0;
}

static int bus_end_offsets(void *opaque, int32_t partition, int timeout_ms, int64_t *low,
                           int64_t *high, char *err, size_t errlen)
{
    (void)timeout_ms;
    simbus_client_t *c = opaque;
    if (!log_of(c->bus, partition)) {
        snprintf(err, errlen, "no partition %d", (int)partition);
        return -1;
    }
    *low = 0;
    *high = simbus_end(c->bus, partition);
    return 0;
}

static int bus_committed(void *opaque, int32_t partition, int timeout_ms, int64_t *offset)
{
    (void)timeout_ms;
    simbus_client_t *c = opaque;
    *offset = simbus_committed(c->bus, partition);
    return 0;
}

static int bus_store_offsets(void *opaque, const int32_t *partitions, const int64_t *offsets,
                             size_t n, char *err, size_t errlen)
{
    simbus_client_t *c = opaque;
    for (size_t i = 0; i < n && !c->dead; i++) {
        consumed_t *p = consumed_of(c, partitions[i]);
        if (!p || !p->assigned) {
            snprintf(err, errlen, "partition %d is not assigned", (int)partitions[i]);
            return -1;
        }
        p->stored = offsets[i];
    }
    return 0;
}

static void bus_lag(void *opaque, const int32_t *partitions, const int64_t *fallback, size_t n,
                    int64_t *lag)
{
    simbus_client_t *c = opaque;
    for (size_t i = 0; i < n; i++) {
        const consumed_t *p = consumed_of(c, partitions[i]);
        int64_t at = p && p->assigned ? p->position : fallback[i];
        lag[i] = at >= 0 ? simbus_end(c->bus, partitions[i]) - at : -1;
    }
}

static void bus_test_fatal(void *opaque)
{
    (void)opaque; /* SAGA_FATAL_AT is not simulated */
}

/* --- clients ------------------------------------------------------------------------ */

simbus_client_t *simbus_client_new(simbus_t *bus, void *opaque)
{
    simbus_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->bus = bus;
    c->opaque = opaque;
    c->parts = calloc((size_t)bus->partitions, sizeof *c->parts);
    if (!c->parts)
        abort();
    for (int32_t p = 0; p < bus->partitions; p++)
        c->parts[p].stored = c->parts[p].position = -1;
    return c;
}

void simbus_client_free(simbus_client_t *c)
{
    if (!c)
        return;
    while (c->nreports)
        serve_reports(c, true);
    for (int32_t p = 0; p < c->bus->partitions; p++)
        if (c->bus->logs[p].owner == c)
            c->bus->logs[p].owner = NULL;
    free(c->reports);
    free(c->parts);
    free(c);
}

bus_t simbus_client_port(simbus_client_t *c)
{
    return (bus_t){.opaque = c,
                   .input_topic = c->bus->input_topic,
                   .produce = bus_produce,
                   .flush = bus_flush,
                   .poll = bus_poll,
                   .outq_len = bus_outq_len,
                   .pause = bus_pause,
                   .seek = bus_seek,
                   .end_offsets = bus_end_offsets,
                   .committed = bus_committed,
                   .store_offsets = bus_store_offsets,
                   .lag = bus_lag,
                   .test_fatal = bus_test_fatal};
}

void simbus_client_set_engine(simbus_client_t *c, engine_t *e)
{
    c->engine = e;
}

void simbus_client_assign(simbus_client_t *c, const int32_t *partitions, int n)
{
    simbus_client_assign_at(c, partitions, NULL, n);
}

void simbus_client_assign_at(simbus_client_t *c, const int32_t *partitions,
                             const int64_t *offsets, int n)
{
    for (int i = 0; i < n; i++) {
        consumed_t *p = consumed_of(c, partitions[i]);
        if (!p)
            continue;
        int64_t at = offsets && offsets[i] >= 0 ? offsets[i] : start_offset(c->bus, partitions[i]);
        *p = (consumed_t){.assigned = true, .position = at, .stored = -1};
        c->bus->logs[partitions[i]].owner = c;
    }
}

void simbus_client_revoke(simbus_client_t *c, const int32_t *partitions, int n)
{
    for (int i = 0; i < n; i++) {
        consumed_t *p = consumed_of(c, partitions[i]);
        if (!p)
            continue;
        *p = (consumed_t){.position = -1, .stored = -1};
        if (c->bus->logs[partitions[i]].owner == c)
            c->bus->logs[partitions[i]].owner = NULL;
    }
}

void simbus_client_kill(simbus_client_t *c)
{
    c->dead = true;
    for (int32_t p = 0; p < c->bus->partitions; p++)
        if (c->bus->logs[p].owner == c)
            c->bus->logs[p].owner = NULL;
}

static bool waiting(const simbus_client_t *c, int32_t partition)
{
    const consumed_t *p = &c->parts[partition];
    return p->assigned && !p->paused && p->position < simbus_end(c->bus, partition);
}

bool simbus_client_has_input(const simbus_client_t *c)
{
    for (int32_t p = 0; !c->dead && p < c->bus->partitions; p++)
        if (waiting(c, p))
            return true;
    return false;
}

size_t simbus_client_consume(simbus_client_t *c, bus_message_t *msgs, size_t max)
{
    size_t n = 0;
    int32_t parts = c->bus->partitions;
    for (int32_t k = 0; k < parts && n < max && !c->dead; k++) {
        int32_t p = (c->next_part + k) % parts;
        input_log_t *l = &c->bus->logs[p];
        consumed_t *at = &c->parts[p];
        while (n < max && waiting(c, p)) {
            const log_entry_t *e = &l->entries[at->position];
            if (at->position < l->high_water)
                c->bus->rereads++;
            msgs[n++] = (bus_message_t){.partition = p,
                                        .offset = at->position,
                                        .key = e->key,
                                        .key_len = strlen(e->key),
                                        .value = e->value,
                                        .len = strlen(e->value),
                                        .forwarded_from = e->forwarded_from};
            at->position++;
            if (at->position > l->high_water)
                l->high_water = at->position;
        }
    }
    c->next_part = parts ? (c->next_part + 1) % parts : 0;
    return n;
}

int64_t simbus_client_position(const simbus_client_t *c, int32_t partition)
{
    const consumed_t *p = consumed_of(c, partition);
    return p && p->assigned ? p->position : -1;
}

void simbus_client_tick(simbus_client_t *c, int64_t now)
{
    if (c->dead || now < c->next_commit_at)
        return;
    c->next_commit_at = now + SIMBUS_COMMIT_MS;
    for (int32_t p = 0; p < c->bus->partitions; p++)
        if (c->bus->logs[p].owner == c && c->parts[p].stored >= 0)
            c->bus->logs[p].committed = c->parts[p].stored;
}

int simbus_client_unreported(const simbus_client_t *c)
{
    return (int)c->nreports;
}
