/* simstore.c - the simulated store: the Redis server's data as store.c lays it out, and
 * each connection's pipelined rounds, behind the store port (see simstore.h).
 *
 * It follows store.c call by call: transitions are snapshotted when queued (fields by
 * saga_visit_fields, history entries and outbox values encoded as store.c encodes them)
 * into batches per partition and epoch; an acknowledgement appends the open batches to
 * the pipeline before itself; a send appends the rest and the round runs, one script
 * call after the other, with the checks of TRANSITION_SCRIPT and OUTBOX_ACK_SCRIPT in
 * their order. Out of memory aborts: this is a test model. */
#include "simstore.h"

#include "jsonw.h"
#include "rkeys.h"
#include "saga.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIMSTORE_ALIVE_TRIM_MS 60000 /* HEARTBEAT_SCRIPT trims entries silent this long */
#define SIMSTORE_MAX_BATCH 256 /* transitions per script call, as store.c's STORE_MAX_BATCH */

/* --- the server's data ------------------------------------------------------------- */

typedef struct ss_saga {
    char *id;
    json_t *fields;                     /* the hash: an object of strings */
    json_t *history;                    /* the history list: an array of strings */
    bool indexed[RKEYS_INDEX_COUNT];    /* member of each status index ... */
    int64_t score[RKEYS_INDEX_COUNT];   /* ... with this score */
} ss_saga_t;

typedef struct ss_entry {
    char *id;
    char *value;                        /* "topic\npartition\nkey\nmessage" */
} ss_entry_t;

typedef struct ss_part {
    int64_t epoch;                      /* 0: the key does not exist */
    bool has_position;                  /* the position key exists ... */
    int64_t position;                   /* ... with this next input offset */
    char *owner;                        /* the owner record's owner field, NULL: none */
    bool leased;                        /* the lease key exists (until lease_until) ... */
    int64_t lease;                      /* ... holding this epoch */
    int64_t lease_until;                /* server ms: it expires after this (Redis: now > when) */
    ss_saga_t *sagas;
    size_t nsagas, sagas_cap;
    ss_entry_t *outbox;                 /* a hash, kept in insertion order */
    size_t noutbox, outbox_cap;
} ss_part_t;

typedef struct ss_def {
    char *field;                        /* NAME@VERSION */
    char *hash;
    char *json;                         /* NULL until recorded */
} ss_def_t;

typedef struct ss_alive {
    char *instance;
    int64_t score;                      /* server ms of its last heartbeat */
} ss_alive_t;

struct simstore {
    int history_cap;
    int64_t (*now_ms)(void *opaque);    /* the server's clock (Redis TIME); NULL: the wall's */
    void *clock_opaque;
    ss_alive_t *alive;                  /* the alive set */
    size_t nalive, alive_cap;
    bool down;                          /* unreachable */
    uint64_t rng;                       /* 0: no shuffling, replies at once */
    ss_part_t *parts;
    size_t nparts;
    ss_def_t *defs;
    size_t ndefs, defs_cap;
};

/* --- a connection's rounds ------------------------------------------------------- */

/* One transition as the script call gets it. */
typedef struct ss_tx {
    size_t position;                    /* its index in the round's results */
    char *id;
    int64_t expected;
    int64_t score;
    rkeys_index_t left, entered;
    json_t *fields;                     /* the pairs to write */
    json_t *history;                    /* entries to append (strings) */
    ss_entry_t *outbox;
    size_t noutbox;
} ss_tx_t;

/* One script call: a batch of transitions of one partition and epoch, or an outbox
 * acknowledgement. */
typedef struct ss_call {
    bool ack;
    bool position;                      /* the position script (offset below) */
    int64_t offset;
    int32_t partition;
    int64_t epoch;
    ss_tx_t *txs;
    size_t ntx, txs_cap;
    char **ids;
    size_t nids;
} ss_call_t;

struct simstore_conn {
    simstore_t *db;
    int64_t lease_ms;                   /* set_lease: > 0 = leased (membership=redis) */
    bool connected, dead;
    char error[256];
    size_t queued_transitions;          /* positions handed out in the open round */
    ss_call_t *batches;                 /* open batches, in the order opened */
    size_t nbatches, batches_cap;
    ss_call_t *calls;                   /* appended to the pipeline, in order */
    size_t ncalls, calls_cap;
    bool in_flight, send_failed, round_lost, arriving;
    bool hold, held;                    /* rounds wait; one is waiting */
    size_t sent_transitions;
    store_status_t *results;            /* the round in flight's, by position */
    size_t results_cap;
    simstore_hooks_t hooks;
    size_t answered[STORE_ERROR + 1];   /* transitions answered, by status */
    jsonw_t scratch;
};

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap : 8;
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
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static uint64_t next_rand(simstore_t *db)
{
    uint64_t z = (db->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void set_error(simstore_conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_error(simstore_conn_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

/* --- the data ---------------------------------------------------------------------- */

static ss_part_t *part_get(const simstore_t *db, int32_t partition)
{
    return partition >= 0 && (size_t)partition < db->nparts ? &db->parts[partition] : NULL;
}

static ss_part_t *part_make(simstore_t *db, int32_t partition)
{
    if ((size_t)partition >= db->nparts) {
        size_t cap = db->nparts;
        db->parts = grow(db->parts, &cap, (size_t)partition + 1, sizeof *db->parts);
        memset(db->parts + db->nparts, 0, (cap - db->nparts) * sizeof *db->parts);
        db->nparts = cap;
    }
    return &db->parts[partition];
}

static int64_t server_now(const simstore_t *db)
{
    if (db->now_ms)
        return db->now_ms(db->clock_opaque);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether the partition's lease key exists now (a PX key lives until now > its expiry). */
static bool lease_live(const simstore_t *db, ss_part_t *p)
{
    if (p->leased && server_now(db) > p->lease_until)
        p->leased = false; /* expired: Redis deletes it lazily, as here */
    return p->leased;
}

static ss_saga_t *saga_find(const ss_part_t *p, const char *id)
{
    for (size_t i = 0; p && i < p->nsagas; i++)
        if (strcmp(p->sagas[i].id, id) == 0)
            return &p->sagas[i];
    return NULL;
}

static ss_saga_t *saga_make(ss_part_t *p, const char *id)
{
    ss_saga_t *s = saga_find(p, id);
    if (s)
        return s;
    p->sagas = grow(p->sagas, &p->sagas_cap, p->nsagas + 1, sizeof *p->sagas);
    s = &p->sagas[p->nsagas++];
    memset(s, 0, sizeof *s);
    s->id = dup(id);
    s->fields = json_object();
    s->history = json_array();
    return s;
}

static ss_entry_t *outbox_find(const ss_part_t *p, const char *id)
{
    for (size_t i = 0; i < p->noutbox; i++)
        if (strcmp(p->outbox[i].id, id) == 0)
            return &p->outbox[i];
    return NULL;
}

/* HSET of one outbox field. */
static void outbox_set(ss_part_t *p, const ss_entry_t *e)
{
    ss_entry_t *at = outbox_find(p, e->id);
    if (at) {
        free(at->value);
        at->value = dup(e->value);
        return;
    }
    p->outbox = grow(p->outbox, &p->outbox_cap, p->noutbox + 1, sizeof *p->outbox);
    p->outbox[p->noutbox++] = (ss_entry_t){dup(e->id), dup(e->value)};
}

/* HDEL of one outbox field. */
static void outbox_del(ss_part_t *p, const char *id)
{
    ss_entry_t *at = outbox_find(p, id);
    if (!at)
        return;
    free(at->id);
    free(at->value);
    size_t i = (size_t)(at - p->outbox);
    memmove(at, at + 1, (p->noutbox - i - 1) * sizeof *at);
    p->noutbox--;
}

static ss_def_t *def_find(const simstore_t *db, const char *field)
{
    for (size_t i = 0; i < db->ndefs; i++)
        if (strcmp(db->defs[i].field, field) == 0)
            return &db->defs[i];
    return NULL;
}

/* --- running a round (the scripts of store.c) ------------------------------------- */

/* The transition script's writes for one transition whose checks passed. */
static void tx_write(simstore_t *db, ss_part_t *p, const ss_tx_t *t)
{
    ss_saga_t *s = saga_make(p, t->id);
    json_object_update(s->fields, t->fields);
    size_t nh = json_array_size(t->history);
    for (size_t i = 0; i < nh; i++)
        json_array_append(s->history, json_array_get(t->history, i));
    while (nh && json_array_size(s->history) > (size_t)db->history_cap)
        json_array_remove(s->history, 0);
    for (size_t i = 0; i < t->noutbox; i++)
        outbox_set(p, &t->outbox[i]);
    if (t->left != t->entered)
        s->indexed[t->left] = false;
    s->indexed[t->entered] = true;
    s->score[t->entered] = t->score;
}

/* The transition script: the epoch first, then (leased) the lease (FENCED for the whole
 * call), then per transition EXISTS for a create, CONFLICT for another version, else the
 * writes. */
static void run_batch(simstore_conn_t *c, const ss_call_t *b, store_status_t *results)
{
    simstore_t *db = c->db;
    bool leased = c->lease_ms > 0;
    size_t *answered = c->answered;
    ss_part_t *p = part_make(db, b->partition);
    /* With leases, the lease must still hold the writer's epoch (ARGV[4] == '1'). */
    bool fenced = p->epoch == 0 || p->epoch != b->epoch ||
                  (leased && (!lease_live(db, p) || p->lease != b->epoch));
    if (!fenced && b->ntx && c->hooks.written)
        c->hooks.written(c->hooks.opaque, b->partition, b->epoch);
    for (size_t i = 0; i < b->ntx; i++) {
        const ss_tx_t *t = &b->txs[i];
        store_status_t st;
        if (fenced) {
            st = STORE_FENCED;
        } else {
            ss_saga_t *s = saga_find(p, t->id);
            const char *cur = s ? json_string_value(json_object_get(s->fields, RKEYS_F_VERSION))
                                : NULL;
            char expected[JSONW_INT_MAX + 1];
            expected[jsonw_format_int(expected, t->expected)] = '\0';
            if (t->expected == 0 && cur)
                st = STORE_EXISTS;
            else if (t->expected != 0 && (!cur || strcmp(cur, expected) != 0))
                st = STORE_CONFLICT;
            else
                st = STORE_OK;
            if (st == STORE_OK)
                tx_write(db, p, t);
        }
        answered[st]++;
        if (results)
            results[t->position] = st;
    }
}

/* The acknowledgement script: only while the epoch is the writer's. */
static void run_ack(simstore_t *db, const ss_call_t *a)
{
    ss_part_t *p = part_make(db, a->partition);
    if (p->epoch == 0 || p->epoch != a->epoch)
        return;
    for (size_t i = 0; i < a->nids; i++)
        outbox_del(p, a->ids[i]);
}

/* The position script: only while the epoch is the writer's. */
static void run_position(simstore_t *db, const ss_call_t *k)
{
    ss_part_t *p = part_make(db, k->partition);
    if (p->epoch == 0 || p->epoch != k->epoch)
        return;
    p->has_position = true;
    p->position = k->offset;
}

/* --- a connection's queue ------------------------------------------------------------- */

static void tx_release(ss_tx_t *t)
{
    free(t->id);
    json_decref(t->fields);
    json_decref(t->history);
    for (size_t i = 0; i < t->noutbox; i++) {
        free(t->outbox[i].id);
        free(t->outbox[i].value);
    }
    free(t->outbox);
    memset(t, 0, sizeof *t);
}

/* Empties a call (its buffers stay for reuse). */
static void call_clear(ss_call_t *k)
{
    for (size_t i = 0; i < k->ntx; i++)
        tx_release(&k->txs[i]);
    k->ntx = 0;
    for (size_t i = 0; i < k->nids; i++)
        free(k->ids[i]);
    free(k->ids);
    k->ids = NULL;
    k->nids = 0;
}

/* Empties a call and frees its buffers. */
static void call_release(ss_call_t *k)
{
    call_clear(k);
    free(k->txs);
    memset(k, 0, sizeof *k);
}

/* Forgets what the open round queued (as store.c's drop_queued): positions handed out
 * stay taken, and report STORE_ERROR when the round is read. */
static void drop_queued(simstore_conn_t *c)
{
    for (size_t i = 0; i < c->nbatches; i++)
        call_release(&c->batches[i]);
    c->nbatches = 0;
    for (size_t i = 0; i < c->ncalls; i++)
        call_release(&c->calls[i]);
    c->ncalls = 0;
}

/* A new call at the end of the pipeline: takes over k's contents. */
static void call_append(simstore_conn_t *c, ss_call_t *k)
{
    c->calls = grow(c->calls, &c->calls_cap, c->ncalls + 1, sizeof *c->calls);
    c->calls[c->ncalls++] = *k;
    memset(k, 0, sizeof *k);
}

/* Appends every open batch with transitions to the pipeline (store.c's emit_batches). */
static void emit_batches(simstore_conn_t *c)
{
    for (size_t i = 0; i < c->nbatches; i++) {
        if (c->batches[i].ntx)
            call_append(c, &c->batches[i]);
        else
            call_release(&c->batches[i]);
    }
    c->nbatches = 0;
}

static ss_call_t *batch_for(simstore_conn_t *c, int32_t partition, int64_t epoch)
{
    for (size_t i = c->nbatches; i-- > 0;)
        if (c->batches[i].partition == partition && c->batches[i].epoch == epoch &&
            c->batches[i].ntx < SIMSTORE_MAX_BATCH)
            return &c->batches[i];
    c->batches = grow(c->batches, &c->batches_cap, c->nbatches + 1, sizeof *c->batches);
    ss_call_t *b = &c->batches[c->nbatches++];
    memset(b, 0, sizeof *b);
    b->partition = partition;
    b->epoch = epoch;
    return b;
}

static int ensure_connected(simstore_conn_t *c)
{
    if (c->dead) {
        set_error(c, "simstore: the process was killed");
        return -1;
    }
    if (c->connected)
        return 0;
    if (c->in_flight) {
        set_error(c, "redis: connection lost with a round in flight");
        return -1;
    }
    drop_queued(c);
    if (c->db->down) {
        set_error(c, "redis: connection refused (simulated: the server is down)");
        return -1;
    }
    c->connected = true;
    return 0;
}

/* What a synchronous command needs (store.c's command()): no round pending, connected. */
static int sync_ready(simstore_conn_t *c)
{
    if (!c->dead && (c->in_flight || c->ncalls)) {
        set_error(c, "redis: a pipelined round is pending (store_receive first)");
        return -1;
    }
    if (ensure_connected(c) < 0)
        return -1;
    if (c->db->down) { /* the command fails, and the connection with it */
        set_error(c, "redis: connection reset (simulated: the server is down)");
        c->connected = false;
        return -1;
    }
    return 0;
}

/* --- the port: connection, epochs, loading --------------------------------------------- */

static int port_ensure_connected(void *self)
{
    return ensure_connected(self);
}

static const char *port_last_error(void *self)
{
    simstore_conn_t *c = self;
    return c->error;
}

static int port_ping(void *self)
{
    return sync_ready(self);
}

static int port_take_epoch(void *self, int32_t partition, const char *owner, int64_t *epoch)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    ss_part_t *p = part_make(c->db, partition);
    if (c->lease_ms > 0) { /* LEASE_TAKE_SCRIPT */
        if (lease_live(c->db, p) && (!p->owner || strcmp(p->owner, owner) != 0)) {
            /* store.c's command() reports the script's error reply as it is */
            set_error(c, "redis: HELD by %s", p->owner ? p->owner : "nil");
            return -1;
        }
        p->leased = true;
        p->lease = p->epoch + 1;
        p->lease_until = server_now(c->db) + c->lease_ms;
    }
    free(p->owner);
    p->owner = dup(owner);
    *epoch = ++p->epoch;
    return 0;
}

static int port_read_epoch(void *self, int32_t partition, int64_t *epoch)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    *epoch = simstore_epoch(c->db, partition);
    return 0;
}

typedef struct ranked {
    int64_t score;
    const ss_saga_t *saga;
} ranked_t;

/* ZRANGE's order: by score, then by member. */
static int ranked_cmp(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return strcmp(x->saga->id, y->saga->id);
}

static int port_load_partition(void *self, int32_t partition, store_saga_fn fn, void *opaque)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    const ss_part_t *p = part_get(c->db, partition);
    if (!p || !p->nsagas)
        return 0;
    ranked_t *r = calloc(p->nsagas, sizeof *r);
    if (!r)
        abort();
    int total = 0;
    for (int k = 0; k < RKEYS_INDEX_ACTIVE_COUNT; k++) {
        size_t n = 0;
        for (size_t i = 0; i < p->nsagas; i++)
            if (p->sagas[i].indexed[k])
                r[n++] = (ranked_t){p->sagas[i].score[k], &p->sagas[i]};
        qsort(r, n, sizeof *r, ranked_cmp);
        for (size_t i = 0; i < n; i++) {
            if (json_object_size(r[i].saga->fields) == 0)
                continue; /* listed, but the hash is gone */
            fn(r[i].saga->fields, opaque);
            total++;
        }
    }
    free(r);
    return total;
}

/* Calls fn for one outbox entry parsed as store.c parses it; false when malformed. */
static bool outbox_visit(const ss_entry_t *e, store_outbox_fn fn, void *opaque)
{
    const char *v = e->value;
    const char *nl1 = strchr(v, '\n');
    const char *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;
    const char *nl3 = nl2 ? strchr(nl2 + 1, '\n') : NULL;
    if (!nl3)
        return false;
    outbox_entry_t out = {
        .id = e->id,
        .topic = strndup(v, (size_t)(nl1 - v)),
        .partition = (int32_t)strtol(nl1 + 1, NULL, 10),
        .key = strndup(nl2 + 1, (size_t)(nl3 - nl2 - 1)),
        .value = (char *)nl3 + 1,
    };
    if (!out.topic || !out.key)
        abort();
    fn(&out, opaque);
    free(out.topic);
    free(out.key);
    return true;
}

static int port_load_outbox(void *self, int32_t partition, store_outbox_fn fn, void *opaque)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    const ss_part_t *p = part_get(c->db, partition);
    if (!p || !p->noutbox)
        return 0;
    size_t n = p->noutbox, *order = calloc(n, sizeof *order);
    if (!order)
        abort();
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    /* HGETALL returns a hash in no particular order. */
    for (size_t i = n; c->db->rng && i > 1; i--) {
        size_t j = (size_t)(next_rand(c->db) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    int count = 0;
    for (size_t i = 0; i < n; i++)
        count += outbox_visit(&p->outbox[order[i]], fn, opaque) ? 1 : 0;
    free(order);
    return count;
}

static int port_read_statuses(void *self, int32_t partition, const char *const *ids, size_t n,
                              char (*statuses)[16])
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *f = simstore_saga_fields(c->db, partition, ids[i]);
        const char *st = f ? json_string_value(json_object_get(f, RKEYS_F_STATUS)) : NULL;
        snprintf(statuses[i], sizeof statuses[i], "%s", st ? st : "");
    }
    return 0;
}

/* --- the port: rounds ------------------------------------------------------------------ */

typedef struct field_ctx {
    json_t *fields;
    int64_t expected;
} field_ctx_t;

/* One hash field pair (a saga_field_fn); the version is always the one after expected. */
static int put_field(const char *name, const char *value, size_t len, void *opaque)
{
    field_ctx_t *fc = opaque;
    char version[JSONW_INT_MAX + 1];
    if (strcmp(name, RKEYS_F_VERSION) == 0) {
        len = jsonw_format_int(version, fc->expected + 1);
        version[len] = '\0';
        value = version;
    }
    return json_object_set_new(fc->fields, name, json_stringn(value, len));
}

/* The outbox value as store.c writes it: "topic\npartition\nkey\nmessage". */
static char *outbox_value(const outbox_entry_t *e)
{
    size_t len = strlen(e->topic) + strlen(e->key) + strlen(e->value) + JSONW_INT_MAX + 4;
    char *v = malloc(len);
    if (!v)
        abort();
    snprintf(v, len, "%s\n%d\n%s\n%s", e->topic, (int)e->partition, e->key, e->value);
    return v;
}

/* Snapshots t as store_queue_transition encodes it. */
static void tx_snapshot(simstore_conn_t *c, ss_tx_t *x, const store_transition_t *t)
{
    const saga_t *s = t->saga;
    bool finished = saga_status_is_terminal(s->status);
    x->id = dup(s->id);
    x->expected = t->expected_version;
    x->score = finished && s->finished_at ? s->finished_at : s->updated_at;
    x->left = rkeys_index_of(t->expected_version ? t->old_status : s->status);
    x->entered = rkeys_index_of(s->status);
    field_ctx_t fc = {.fields = json_object(), .expected = t->expected_version};
    if (saga_visit_fields(s, t->expected_version == 0, &c->scratch, put_field, &fc) < 0)
        abort();
    x->fields = fc.fields;
    x->history = json_array();
    for (size_t i = 0; i < json_array_size(t->history); i++) {
        jsonw_reset(&c->scratch);
        jsonw_value(&c->scratch, json_array_get(t->history, i));
        json_array_append_new(x->history, json_stringn(c->scratch.buf, c->scratch.len));
    }
    x->noutbox = t->outbox_count;
    x->outbox = calloc(t->outbox_count ? t->outbox_count : 1, sizeof *x->outbox);
    if (!x->outbox)
        abort();
    for (size_t i = 0; i < t->outbox_count; i++)
        x->outbox[i] = (ss_entry_t){dup(t->outbox[i].id), outbox_value(&t->outbox[i])};
}

static int port_queue_transition(void *self, const store_transition_t *t)
{
    simstore_conn_t *c = self;
    if (c->dead) {
        set_error(c, "simstore: the process was killed");
        return -1;
    }
    if (!c->in_flight && ensure_connected(c) < 0)
        return -1;
    if (c->hooks.queued)
        c->hooks.queued(c->hooks.opaque, t);
    ss_call_t *b = batch_for(c, t->partition, t->epoch);
    b->txs = grow(b->txs, &b->txs_cap, b->ntx + 1, sizeof *b->txs);
    ss_tx_t *x = &b->txs[b->ntx++];
    memset(x, 0, sizeof *x);
    tx_snapshot(c, x, t);
    x->position = c->queued_transitions++;
    return 0;
}

static int port_queue_outbox_acks(void *self, int32_t partition, int64_t epoch,
                                  const char *const *ids, size_t n)
{
    simstore_conn_t *c = self;
    if (n == 0)
        return 0;
    if (c->in_flight && !c->dead) {
        set_error(c, "redis: acknowledgements queued with a round in flight");
        return -1;
    }
    if (ensure_connected(c) < 0)
        return -1;
    emit_batches(c); /* Redis runs the pipeline in order */
    ss_call_t k = {.ack = true, .partition = partition, .epoch = epoch,
                   .ids = calloc(n, sizeof(char *)), .nids = n};
    if (!k.ids)
        abort();
    for (size_t i = 0; i < n; i++)
        k.ids[i] = dup(ids[i]);
    call_append(c, &k);
    return 0;
}

static int port_queue_position(void *self, int32_t partition, int64_t epoch, int64_t offset)
{
    simstore_conn_t *c = self;
    if (c->in_flight && !c->dead) {
        set_error(c, "redis: a position queued with a round in flight");
        return -1;
    }
    if (ensure_connected(c) < 0)
        return -1;
    emit_batches(c); /* Redis runs the pipeline in order */
    ss_call_t k = {.position = true, .partition = partition, .epoch = epoch, .offset = offset};
    call_append(c, &k);
    return 0;
}

static int port_read_position(void *self, int32_t partition, int64_t *offset)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    *offset = simstore_position(c->db, partition);
    return 0;
}

static int port_discard_partition(void *self, int32_t partition)
{
    simstore_conn_t *c = self;
    size_t discarded = 0;
    for (size_t i = 0; i < c->nbatches; i++)
        if (c->batches[i].partition == partition) {
            discarded += c->batches[i].ntx;
            call_clear(&c->batches[i]);
        }
    return (int)discarded;
}

/* Runs the pipeline's calls (unless the connection dropped before Redis ran them); the
 * results are kept only when the replies will be read. */
static void run_round(simstore_conn_t *c, simstore_round_fate_t fate)
{
    for (size_t i = 0; fate != SIMSTORE_ROUND_LOST_BEFORE && i < c->ncalls; i++) {
        if (c->calls[i].ack)
            run_ack(c->db, &c->calls[i]);
        else if (c->calls[i].position)
            run_position(c->db, &c->calls[i]);
        else
            run_batch(c, &c->calls[i], fate == SIMSTORE_ROUND_OK ? c->results : NULL);
    }
    for (size_t i = 0; i < c->ncalls; i++)
        call_release(&c->calls[i]);
    c->ncalls = 0;
    c->round_lost = fate != SIMSTORE_ROUND_OK;
}

/* The round sent reaches Redis now. */
static void run_held(simstore_conn_t *c)
{
    c->held = false;
    if (c->db->down)
        run_round(c, SIMSTORE_ROUND_LOST_BEFORE);
    else
        run_round(c, c->hooks.round_fate ? c->hooks.round_fate(c->hooks.opaque)
                                         : SIMSTORE_ROUND_OK);
}

static int port_send(void *self)
{
    simstore_conn_t *c = self;
    if (c->in_flight) {
        set_error(c, "redis: a round is already in flight");
        return -1;
    }
    c->in_flight = true;
    c->arriving = false;
    c->sent_transitions = c->queued_transitions;
    c->queued_transitions = 0;
    c->results = grow(c->results, &c->results_cap, c->sent_transitions + 1, sizeof *c->results);
    for (size_t i = 0; i < c->sent_transitions; i++)
        c->results[i] = STORE_ERROR;
    if (c->dead || !c->connected) {
        set_error(c, c->dead ? "simstore: the process was killed" : "redis: not connected");
        drop_queued(c);
        c->send_failed = true;
        return -1;
    }
    emit_batches(c);
    if (c->hold)
        c->held = true;
    else
        run_held(c);
    return 0;
}

static bool port_in_flight(void *self)
{
    simstore_conn_t *c = self;
    return c->in_flight;
}

static bool port_replies_arriving(void *self)
{
    simstore_conn_t *c = self;
    if (!c->in_flight || c->held)
        return false;
    if (c->send_failed || c->arriving || !c->db->rng)
        return true;
    c->arriving = next_rand(c->db) & 1;
    return c->arriving;
}

static int port_receive(void *self, store_status_t *results)
{
    simstore_conn_t *c = self;
    if (!c->in_flight)
        return 0;
    if (c->held && !c->dead)
        run_held(c);
    bool lost = c->dead || c->send_failed || c->round_lost;
    for (size_t i = 0; i < c->sent_transitions; i++)
        results[i] = c->dead ? STORE_ERROR : c->results[i];
    if (lost && !c->send_failed) {
        set_error(c, "redis: connection lost");
        c->connected = false;
        drop_queued(c); /* the open round's batches were for that connection too */
    }
    c->in_flight = c->send_failed = c->round_lost = false;
    c->sent_transitions = 0;
    return lost ? -1 : 0;
}

/* --- the port: definitions and members ---------------------------------------------- */

static int port_put_definition(void *self, const definition_t *d, char *existing)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    char field[DEFN_MAX_NAME_LEN + 32];
    rkeys_definition_field(field, sizeof field, d->name, d->version);
    ss_def_t *def = def_find(c->db, field);
    if (!def) { /* HSETNX of the hash decides */
        simstore_t *db = c->db;
        db->defs = grow(db->defs, &db->defs_cap, db->ndefs + 1, sizeof *db->defs);
        def = &db->defs[db->ndefs++];
        *def = (ss_def_t){dup(field), dup(d->content_hash), NULL};
    } else if (strcmp(def->hash, d->content_hash) != 0) {
        if (existing)
            snprintf(existing, STORE_HASH_HEX_LEN + 1, "%s", def->hash);
        return 1;
    }
    char *text = json_dumps(d->json, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return -1;
    free(def->json);
    def->json = text;
    return 0;
}

static int port_get_definition_hash(void *self, const char *name, int version, char *hash)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    char field[DEFN_MAX_NAME_LEN + 32];
    const ss_def_t *def = def_find(c->db, rkeys_definition_field(field, sizeof field, name,
                                                                 version));
    snprintf(hash, STORE_HASH_HEX_LEN + 1, "%s", def ? def->hash : "");
    return def ? 0 : 1;
}

static int port_get_definition(void *self, const char *name, int version, char **json,
                               char *hash)
{
    simstore_conn_t *c = self;
    *json = NULL;
    hash[0] = '\0';
    if (sync_ready(c) < 0)
        return -1;
    char field[DEFN_MAX_NAME_LEN + 32];
    const ss_def_t *def = def_find(c->db, rkeys_definition_field(field, sizeof field, name,
                                                                 version));
    if (!def || !def->json)
        return 1;
    *json = dup(def->json);
    snprintf(hash, STORE_HASH_HEX_LEN + 1, "%s", def->hash);
    return 0;
}

static int port_put_member(void *self, const store_member_t *m)
{
    (void)m; /* member records are not modeled: nothing reads them back */
    return sync_ready(self);
}

static int port_drop_member(void *self, const char *instance)
{
    (void)instance;
    return sync_ready(self);
}

/* --- the port: leases (membership=redis), as store.c's lease scripts -------------------- */

static void port_set_lease(void *self, int64_t lease_ms)
{
    simstore_conn_t *c = self;
    c->lease_ms = lease_ms > 0 ? lease_ms : 0;
}

static int alive_cmp(const void *a, const void *b)
{
    const ss_alive_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return strcmp(x->instance, y->instance);
}

static void alive_remove(simstore_t *db, size_t i)
{
    free(db->alive[i].instance);
    db->alive[i] = db->alive[--db->nalive];
}

/* HEARTBEAT_SCRIPT, then LEASE_RENEW_SCRIPT per partition, in one pipeline. */
static int port_heartbeat(void *self, const char *instance, const int32_t *partitions, size_t n,
                          bool *held, store_alive_fn fn, void *opaque)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    simstore_t *db = c->db;
    int64_t now = server_now(db);
    size_t i = 0;
    for (; i < db->nalive && strcmp(db->alive[i].instance, instance) != 0; i++)
        ;
    if (i == db->nalive) {
        db->alive = grow(db->alive, &db->alive_cap, db->nalive + 1, sizeof *db->alive);
        db->alive[db->nalive++] = (ss_alive_t){.instance = dup(instance)};
    }
    db->alive[i].score = now;
    for (i = db->nalive; i-- > 0;)
        if (db->alive[i].score < now - SIMSTORE_ALIVE_TRIM_MS)
            alive_remove(db, i);
    qsort(db->alive, db->nalive, sizeof *db->alive, alive_cmp); /* ZRANGEBYSCORE's order */
    for (i = 0; i < db->nalive; i++)
        if (db->alive[i].score >= now - c->lease_ms)
            fn(db->alive[i].instance, opaque);
    for (i = 0; i < n; i++) {
        ss_part_t *p = part_make(db, partitions[i]);
        held[i] = lease_live(db, p) && p->owner && strcmp(p->owner, instance) == 0;
        if (held[i])
            p->lease_until = now + c->lease_ms;
    }
    return 0;
}

static int port_release_lease(void *self, int32_t partition, const char *instance)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    ss_part_t *p = part_make(c->db, partition);
    if (p->owner && strcmp(p->owner, instance) == 0)
        p->leased = false;
    return 0;
}

static int port_leave(void *self, const char *instance)
{
    simstore_conn_t *c = self;
    if (sync_ready(c) < 0)
        return -1;
    for (size_t i = 0; i < c->db->nalive; i++)
        if (strcmp(c->db->alive[i].instance, instance) == 0) {
            alive_remove(c->db, i);
            break;
        }
    return 0;
}

store_port_t simstore_port(simstore_conn_t *c)
{
    return (store_port_t){.self = c,
                          .ensure_connected = port_ensure_connected,
                          .last_error = port_last_error,
                          .ping = port_ping,
                          .take_epoch = port_take_epoch,
                          .read_epoch = port_read_epoch,
                          .load_partition = port_load_partition,
                          .load_outbox = port_load_outbox,
                          .read_statuses = port_read_statuses,
                          .queue_transition = port_queue_transition,
                          .queue_outbox_acks = port_queue_outbox_acks,
                          .discard_partition = port_discard_partition,
                          .queue_position = port_queue_position,
                          .read_position = port_read_position,
                          .send = port_send,
                          .in_flight = port_in_flight,
                          .replies_arriving = port_replies_arriving,
                          .receive = port_receive,
                          .put_definition = port_put_definition,
                          .get_definition_hash = port_get_definition_hash,
                          .get_definition = port_get_definition,
                          .put_member = port_put_member,
                          .drop_member = port_drop_member,
                          .set_lease = port_set_lease,
                          .heartbeat = port_heartbeat,
                          .release_lease = port_release_lease,
                          .leave = port_leave};
}

/* --- lifecycle and faults ------------------------------------------------------------ */

simstore_t *simstore_new(const simstore_config_t *cfg)
{
    simstore_t *db = calloc(1, sizeof *db);
    if (!db)
        return NULL;
    db->history_cap = cfg && cfg->history_cap > 0 ? cfg->history_cap : STORE_DEFAULT_HISTORY_CAP;
    db->rng = cfg ? cfg->seed : 0;
    db->now_ms = cfg ? cfg->now_ms : NULL;
    db->clock_opaque = cfg ? cfg->clock_opaque : NULL;
    return db;
}

void simstore_free(simstore_t *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->nparts; i++) {
        ss_part_t *p = &db->parts[i];
        free(p->owner);
        for (size_t k = 0; k < p->nsagas; k++) {
            free(p->sagas[k].id);
            json_decref(p->sagas[k].fields);
            json_decref(p->sagas[k].history);
        }
        free(p->sagas);
        for (size_t k = 0; k < p->noutbox; k++) {
            free(p->outbox[k].id);
            free(p->outbox[k].value);
        }
        free(p->outbox);
    }
    free(db->parts);
    for (size_t i = 0; i < db->ndefs; i++) {
        free(db->defs[i].field);
        free(db->defs[i].hash);
        free(db->defs[i].json);
    }
    free(db->defs);
    while (db->nalive)
        alive_remove(db, db->nalive - 1);
    free(db->alive);
    free(db);
}

void simstore_set_down(simstore_t *db, bool down)
{
    db->down = down;
}

void simstore_forget_leases(simstore_t *db)
{
    for (size_t i = 0; i < db->nparts; i++)
        db->parts[i].leased = false;
    while (db->nalive)
        alive_remove(db, db->nalive - 1);
}

const char *simstore_lease(simstore_t *db, int32_t partition, int64_t *epoch)
{
    ss_part_t *p = part_get(db, partition);
    if (!p || !lease_live(db, p))
        return NULL;
    if (epoch)
        *epoch = p->lease;
    return p->owner ? p->owner : "";
}

simstore_conn_t *simstore_conn_new(simstore_t *db)
{
    simstore_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->db = db;
    c->connected = true;
    jsonw_init(&c->scratch);
    return c;
}

void simstore_conn_free(simstore_conn_t *c)
{
    if (!c)
        return;
    drop_queued(c);
    free(c->batches);
    free(c->calls);
    free(c->results);
    jsonw_release(&c->scratch);
    free(c);
}

void simstore_conn_set_hooks(simstore_conn_t *c, const simstore_hooks_t *hooks)
{
    c->hooks = hooks ? *hooks : (simstore_hooks_t){0};
}

void simstore_conn_hold(simstore_conn_t *c, bool hold)
{
    c->hold = hold;
    if (!hold && c->held && !c->dead)
        run_held(c);
}

void simstore_conn_kill(simstore_conn_t *c)
{
    c->dead = true;
    c->connected = false;
    drop_queued(c);
}

size_t simstore_conn_count(const simstore_conn_t *c, store_status_t status)
{
    return status <= STORE_ERROR ? c->answered[status] : 0;
}

/* --- reading the server ------------------------------------------------------------ */

int64_t simstore_position(const simstore_t *db, int32_t partition)
{
    const ss_part_t *p = part_get(db, partition);
    return p && p->has_position ? p->position : -1;
}

int64_t simstore_epoch(const simstore_t *db, int32_t partition)
{
    const ss_part_t *p = part_get(db, partition);
    return p ? p->epoch : 0;
}

const json_t *simstore_saga_fields(const simstore_t *db, int32_t partition, const char *id)
{
    const ss_saga_t *s = saga_find(part_get(db, partition), id);
    return s && json_object_size(s->fields) ? s->fields : NULL;
}

int64_t simstore_saga_version(const simstore_t *db, int32_t partition, const char *id)
{
    const json_t *f = simstore_saga_fields(db, partition, id);
    const char *v = f ? json_string_value(json_object_get(f, RKEYS_F_VERSION)) : NULL;
    return v ? strtoll(v, NULL, 10) : 0;
}

const json_t *simstore_saga_history(const simstore_t *db, int32_t partition, const char *id)
{
    const ss_saga_t *s = saga_find(part_get(db, partition), id);
    return s ? s->history : NULL;
}

bool simstore_saga_indexed(const simstore_t *db, int32_t partition, const char *id,
                           rkeys_index_t index)
{
    const ss_saga_t *s = saga_find(part_get(db, partition), id);
    return s && index < RKEYS_INDEX_COUNT && s->indexed[index];
}

size_t simstore_outbox_count(const simstore_t *db, int32_t partition)
{
    const ss_part_t *p = part_get(db, partition);
    return p ? p->noutbox : 0;
}

int simstore_outbox_at(const simstore_t *db, int32_t partition, size_t i, const char **id,
                       const char **value)
{
    const ss_part_t *p = part_get(db, partition);
    if (!p || i >= p->noutbox)
        return -1;
    *id = p->outbox[i].id;
    *value = p->outbox[i].value;
    return 0;
}
