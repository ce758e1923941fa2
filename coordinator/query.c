/* query.c - read-only queries over the documented Redis keys (see query.h and
 * docs/redis.md). Every key and field name comes from rkeys.h. */
#include "query.h"

#include "rediscluster.h"
#include "redisconn.h"
#include "rkeys.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUERY_CHUNK_MIN 64       /* index entries read per round trip when listing */
#define QUERY_RATE_CHUNK 500     /* finished sagas read per pipeline for rates */

/* Hash fields read for a list row, in this order. */
static const char *const LIST_FIELDS[] = {
    RKEYS_F_ID,         RKEYS_F_DEFINITION, RKEYS_F_DEFINITION_VERSION, RKEYS_F_STATUS,
    RKEYS_F_STEP,       RKEYS_F_ATTEMPT,    RKEYS_F_PARTITION,          RKEYS_F_CREATED_AT,
    RKEYS_F_UPDATED_AT, RKEYS_F_FINISHED_AT, RKEYS_F_ERROR};
#define LIST_FIELD_COUNT (sizeof LIST_FIELDS / sizeof *LIST_FIELDS)

/* Hash fields that hold integers (converted to JSON integers). */
static const char *const INT_FIELDS[] = {
    RKEYS_F_DEFINITION_VERSION, RKEYS_F_STEP_INDEX, RKEYS_F_ATTEMPT,     RKEYS_F_PARTITION,
    RKEYS_F_VERSION,            RKEYS_F_CREATED_AT, RKEYS_F_UPDATED_AT, RKEYS_F_FINISHED_AT,
    RKEYS_F_DEADLINE_AT,        RKEYS_F_GROUP};

/* Arguments of one batched command at most: HMGET, the key and the list fields. */
#define QUERY_ARGS_MAX (2 + LIST_FIELD_COUNT)

struct query {
    redisconn_t *conn;      /* one Redis (a primary found through Sentinels too), or NULL */
    rcluster_t *cluster;    /* redis_cluster=1: every key routed to its slot's primary */
    rkeys_t keys;
    char error[REDISCONN_ERROR_MAX]; /* the last error */
};

static void set_error(query_t *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(query_t *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->error, sizeof q->error, fmt, ap);
    va_end(ap);
}

/* Keeps the reason of the last failure of the connection or the cluster. */
static void keep_transport_error(query_t *q)
{
    set_error(q, "%s", q->cluster ? rcluster_last_error(q->cluster)
                                   : redisconn_last_error(q->conn));
}

const char *query_last_error(const query_t *q)
{
    return q->error;
}

/* --- talking to Redis ----------------------------------------------------------------
 * Two ways, one Redis (q->conn) or a cluster (q->cluster), behind these two functions:
 * one command, and a batch of commands in one round trip (one pipeline per node on a
 * cluster). Every command names its key (its argv[1]), which picks the node. */

/* Runs one command on the node of key (hiredis format). Returns the reply (caller frees)
 * or NULL with the reason set; an error reply counts as a failure. */
static redisReply *command(query_t *q, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static redisReply *command(query_t *q, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = q->cluster ? rcluster_vcommand(q->cluster, key, fmt, ap)
                               : redisconn_vcommand(q->conn, fmt, ap);
    va_end(ap);
    if (!r) {
        keep_transport_error(q);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        set_error(q, "redis cluster: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Commands run together: each one's arguments, key buffer and reply. */
typedef struct batch {
    size_t n, cap;
    rcluster_cmd_t *cmds;
    redisReply **replies;                /* after batch_run: one per command */
    const char **args;                   /* QUERY_ARGS_MAX per command */
    char (*keys)[RKEYS_KEY_MAX];         /* one key buffer per command */
} batch_t;

static void batch_release(batch_t *b)
{
    for (size_t i = 0; b->replies && i < b->n; i++)
        freeReplyObject(b->replies[i]);
    free(b->cmds);
    free(b->replies);
    free(b->args);
    free(b->keys);
    memset(b, 0, sizeof *b);
}

/* Room for cap commands. Returns 0, or -1 (out of memory, reason set). */
static int batch_init(query_t *q, batch_t *b, size_t cap)
{
    memset(b, 0, sizeof *b);
    size_t c = cap ? cap : 1;
    b->cap = cap;
    b->cmds = calloc(c, sizeof *b->cmds);
    b->replies = calloc(c, sizeof *b->replies);
    b->args = calloc(c * QUERY_ARGS_MAX, sizeof *b->args);
    b->keys = calloc(c, sizeof *b->keys);
    if (!b->cmds || !b->replies || !b->args || !b->keys) {
        batch_release(b);
        set_error(q, "out of memory");
        return -1;
    }
    return 0;
}

/* The key buffer of the next command (RKEYS_KEY_MAX bytes). */
static char *batch_key(batch_t *b)
{
    return b->keys[b->n];
}

/* Adds a command of argc (<= QUERY_ARGS_MAX) arguments, argv[1] its key; the strings must
 * live until batch_run (the key may be batch_key's buffer). */
static void batch_add(batch_t *b, int argc, const char *const *argv)
{
    if (b->n >= b->cap || argc > (int)QUERY_ARGS_MAX)
        return; /* a caller's bug: sized by the caller */
    const char **a = b->args + b->n * QUERY_ARGS_MAX;
    for (int i = 0; i < argc; i++)
        a[i] = argv[i];
    b->cmds[b->n] = (rcluster_cmd_t){.key = argv[1], .argc = argc, .argv = a, .lens = NULL};
    b->n++;
}

/* Runs the batch in one round trip (per node). Afterwards b->replies[i] is command i's
 * reply (error replies included; freed by batch_release). Returns 0, or -1 with the
 * reason set (then no reply is kept). */
static int batch_run(query_t *q, batch_t *b)
{
    int rc = 0;
    if (q->cluster) {
        rc = rcluster_pipeline(q->cluster, b->cmds, b->n, b->replies);
    } else if (redisconn_connect(q->conn) < 0) {
        rc = -1;
    } else {
        redisContext *ctx = redisconn_context(q->conn);
        for (size_t i = 0; i < b->n && rc == 0; i++)
            if (redisAppendCommandArgv(ctx, b->cmds[i].argc, b->cmds[i].argv, NULL) != REDIS_OK)
                rc = -1;
        for (size_t i = 0; i < b->n && rc == 0; i++)
            if (redisGetReply(ctx, (void **)&b->replies[i]) != REDIS_OK || !b->replies[i])
                rc = -1;
        if (rc < 0)
            redisconn_lost(q->conn); /* replies left unread go with the connection */
    }
    if (rc < 0) {
        keep_transport_error(q);
        for (size_t i = 0; i < b->n; i++) {
            freeReplyObject(b->replies[i]);
            b->replies[i] = NULL;
        }
    }
    return rc;
}

query_t *query_new(const config_t *cfg, char *err, size_t errlen)
{
    query_t *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    redisconn_config_t rc = config_redis(cfg);
    rkeys_init(&q->keys, cfg->redis_prefix);
    if (rc.cluster && rc.db != 0) {
        snprintf(err, errlen, "redis_db=%d with redis_cluster=1: a Redis Cluster has only "
                              "database 0 (set redis_db=0, and a redis_prefix of its own "
                              "to keep deployments apart)", rc.db);
        goto err;
    }
    if (rc.cluster && rc.sentinels && *rc.sentinels) {
        snprintf(err, errlen, "redis_sentinels with redis_cluster=1: a Redis Cluster fails "
                              "over by itself, without Sentinels (set one of the two)");
        goto err;
    }
    if (rc.cluster ? !(q->cluster = rcluster_new(&rc)) : !(q->conn = redisconn_new(&rc))) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    if (q->cluster ? rcluster_ensure_map(q->cluster) < 0 : redisconn_connect(q->conn) < 0) {
        keep_transport_error(q);
        snprintf(err, errlen, "%s", q->error);
        goto err;
    }
    return q;
err:
    query_free(q);
    return NULL;
}

void query_free(query_t *q)
{
    if (!q)
        return;
    redisconn_free(q->conn);
    rcluster_free(q->cluster);
    free(q);
}

int query_partitions(query_t *q)
{
    char key[RKEYS_KEY_MAX];
    rkeys_meta(&q->keys, key);
    redisReply *r = command(q, key, "HGET %s " RKEYS_META_PARTITIONS, key);
    if (!r)
        return QUERY_ERR_REDIS;
    int n = r->type == REDIS_REPLY_STRING ? atoi(r->str) : 0;
    freeReplyObject(r);
    return n > 0 ? n : 0;
}

static bool is_int_field(const char *name)
{
    for (size_t i = 0; i < sizeof INT_FIELDS / sizeof *INT_FIELDS; i++)
        if (strcmp(INT_FIELDS[i], name) == 0)
            return true;
    return false;
}

/* Sets field name of o from a hash value, typed as documented. */
static void set_typed(json_t *o, const char *name, const char *value, size_t len)
{
    if (is_int_field(name)) {
        json_object_set_new(o, name, json_integer(strtoll(value, NULL, 10)));
    } else if (strcmp(name, RKEYS_F_INPUT) == 0 || strcmp(name, RKEYS_F_STEPS) == 0) {
        json_t *v = json_loadb(value, len, 0, NULL);
        json_object_set_new(o, name, v ? v : json_stringn(value, len));
    } else {
        json_object_set_new(o, name, json_stringn(value, len));
    }
}

/* --- list ------------------------------------------------------------------------- */

typedef struct row {
    double score;
    char *id;
    json_t *saga;   /* owned */
} row_t;

typedef struct rows {
    row_t *items;
    size_t n, cap;
} rows_t;

static void rows_release(rows_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->items[i].id);
        json_decref(rs->items[i].saga);
    }
    free(rs->items);
    rs->items = NULL;
    rs->n = rs->cap = 0;
}

static int rows_push(rows_t *rs, double score, const char *id, json_t *saga)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        row_t *p = realloc(rs->items, cap * sizeof *p);
        if (!p)
            return -1;
        rs->items = p;
        rs->cap = cap;
    }
    rs->items[rs->n].score = score;
    rs->items[rs->n].id = strdup(id);
    rs->items[rs->n].saga = saga;
    rs->n++;
    return 0;
}

/* Newest first; equal scores by id descending (as ZREVRANGEBYSCORE orders them). */
static int row_cmp(const void *a, const void *b)
{
    const row_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return strcmp(y->id, x->id);
}

/* True when (score, id) comes after the cursor (score desc, id desc). */
static bool after_cursor(double score, const char *id, bool has_cursor, double cscore,
                         const char *cid)
{
    if (!has_cursor)
        return true;
    if (score != cscore)
        return score < cscore;
    return strcmp(id, cid) < 0;
}

typedef struct list_ctx {
    const query_filter_t *f;
    const char *status_exact;   /* completed/compensated: filter the finished index */
    bool has_cursor;
    double cursor_score;
    char cursor_id[256];
    char max[64], min[64];
    size_t want;                /* rows per index key: limit + 1 */
} list_ctx_t;

/* Reads up to lc->want accepted rows of one index key into out. Returns 0 or -1. */
static int scan_index(query_t *q, const list_ctx_t *lc, int partition, rkeys_index_t index,
                      rows_t *out)
{
    char key[RKEYS_KEY_MAX];
    rkeys_index(&q->keys, key, partition, index);
    size_t chunk = lc->want > QUERY_CHUNK_MIN ? lc->want : QUERY_CHUNK_MIN;
    size_t accepted = 0;
    for (long long offset = 0;; offset += (long long)chunk) {
        redisReply *r = command(q, key, "ZREVRANGEBYSCORE %s %s %s WITHSCORES LIMIT %lld %lld",
                                key, lc->max, lc->min, offset, (long long)chunk);
        if (!r)
            return -1;
        size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
        /* One HMGET per candidate, in one round trip. */
        batch_t b;
        if (batch_init(q, &b, n) < 0) {
            freeReplyObject(r);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            const char *id = r->element[2 * i]->str;
            double score = strtod(r->element[2 * i + 1]->str, NULL);
            if (!after_cursor(score, id, lc->has_cursor, lc->cursor_score, lc->cursor_id))
                continue;
            const char *argv[QUERY_ARGS_MAX] = {"HMGET",
                                                rkeys_saga(&q->keys, batch_key(&b), partition, id)};
            for (size_t k = 0; k < LIST_FIELD_COUNT; k++)
                argv[2 + k] = LIST_FIELDS[k];
            batch_add(&b, (int)QUERY_ARGS_MAX, argv);
        }
        int rc = batch_run(q, &b);
        size_t got = 0;
        for (size_t i = 0; rc == 0 && i < n && got < b.n; i++) {
            const char *id = r->element[2 * i]->str;
            double score = strtod(r->element[2 * i + 1]->str, NULL);
            if (!after_cursor(score, id, lc->has_cursor, lc->cursor_score, lc->cursor_id))
                continue;
            const redisReply *h = b.replies[got++];
            bool ok = h->type == REDIS_REPLY_ARRAY && h->elements == LIST_FIELD_COUNT &&
                      h->element[0]->type == REDIS_REPLY_STRING; /* expired: no fields */
            json_t *saga = NULL;
            if (ok) {
                saga = json_object();
                for (size_t k = 0; k < LIST_FIELD_COUNT; k++)
                    if (h->element[k]->type == REDIS_REPLY_STRING)
                        set_typed(saga, LIST_FIELDS[k], h->element[k]->str, h->element[k]->len);
                json_object_set_new(saga, "score", json_integer((json_int_t)score));
                const char *def = json_string_value(json_object_get(saga, RKEYS_F_DEFINITION));
                const char *st = json_string_value(json_object_get(saga, RKEYS_F_STATUS));
                if (lc->f->definition && lc->f->definition[0] &&
                    (!def || strcmp(def, lc->f->definition) != 0))
                    ok = false;
                if (lc->status_exact && (!st || strcmp(st, lc->status_exact) != 0))
                    ok = false;
            }
            if (ok && accepted < lc->want) {
                if (rows_push(out, score, id, saga) < 0) {
                    json_decref(saga);
                    rc = -1;
                    set_error(q, "out of memory");
                } else {
                    accepted++;
                }
            } else {
                json_decref(saga);
            }
        }
        batch_release(&b);
        freeReplyObject(r);
        if (rc < 0)
            return -1;
        if (accepted >= lc->want || n < chunk)
            return 0;
    }
}

/* "since"/"until" and the cursor become the score range. */
static int parse_cursor(query_t *q, const char *cursor, list_ctx_t *lc)
{
    const char *colon = cursor ? strchr(cursor, ':') : NULL;
    char *end;
    if (!colon || colon == cursor || strlen(colon + 1) >= sizeof lc->cursor_id) {
        set_error(q, "invalid cursor \"%s\": expected SCORE:ID from a previous page",
                  cursor ? cursor : "");
        return -1;
    }
    lc->cursor_score = strtod(cursor, &end);
    if (end != colon) {
        set_error(q, "invalid cursor \"%s\": expected SCORE:ID from a previous page", cursor);
        return -1;
    }
    snprintf(lc->cursor_id, sizeof lc->cursor_id, "%s", colon + 1);
    lc->has_cursor = true;
    return 0;
}

int query_list(query_t *q, const query_filter_t *f, json_t **out)
{
    *out = NULL;
    list_ctx_t lc;
    memset(&lc, 0, sizeof lc);
    lc.f = f;
    int limit = f->limit > 0 ? f->limit : QUERY_LIMIT_DEFAULT;
    if (limit > QUERY_LIMIT_MAX) {
        set_error(q, "limit %d: at most %d", limit, QUERY_LIMIT_MAX);
        return QUERY_ERR_ARG;
    }
    lc.want = (size_t)limit + 1;
    bool use[RKEYS_INDEX_COUNT] = {true, true, true, true};
    const char *st = f->status && f->status[0] && strcmp(f->status, "all") ? f->status : NULL;
    if (st) {
        int which = rkeys_index_parse(st);
        saga_status_t status;
        if (saga_status_parse(st, &status) == 0 && saga_status_is_terminal(status)) {
            which = rkeys_index_of(status);
            lc.status_exact = st;
        }
        if (which < 0) {
            set_error(q, "unknown status \"%s\": expected running, compensating, stuck, "
                         "finished, completed or compensated", st);
            return QUERY_ERR_ARG;
        }
        for (int i = 0; i < RKEYS_INDEX_COUNT; i++)
            use[i] = i == which;
    }
    if (f->cursor && f->cursor[0] && parse_cursor(q, f->cursor, &lc) < 0)
        return QUERY_ERR_ARG;
    double max = f->until_ms > 0 ? (double)f->until_ms : -1;
    if (lc.has_cursor && (max < 0 || lc.cursor_score < max))
        max = lc.cursor_score;
    if (max < 0)
        snprintf(lc.max, sizeof lc.max, "+inf");
    else
        snprintf(lc.max, sizeof lc.max, "%.0f", max);
    if (f->since_ms > 0)
        snprintf(lc.min, sizeof lc.min, "%lld", (long long)f->since_ms);
    else
        snprintf(lc.min, sizeof lc.min, "-inf");

    int parts = query_partitions(q);
    if (parts < 0)
        return QUERY_ERR_REDIS;
    rows_t rows = {0};
    for (int p = 0; p < parts; p++) {
        for (int i = 0; i < RKEYS_INDEX_COUNT; i++) {
            if (use[i] && scan_index(q, &lc, p, (rkeys_index_t)i, &rows) < 0) {
                rows_release(&rows);
                return QUERY_ERR_REDIS;
            }
        }
    }
    if (rows.n > 1)
        qsort(rows.items, rows.n, sizeof *rows.items, row_cmp);
    json_t *list = json_array();
    size_t n = rows.n < (size_t)limit ? rows.n : (size_t)limit;
    for (size_t i = 0; i < n; i++) {
        json_array_append(list, rows.items[i].saga);
    }
    json_t *next = json_null();
    if (rows.n > (size_t)limit) {
        char cur[300];
        snprintf(cur, sizeof cur, "%.0f:%s", rows.items[n - 1].score, rows.items[n - 1].id);
        json_decref(next);
        next = json_string(cur);
    }
    rows_release(&rows);
    *out = json_pack("{s:o, s:o}", "sagas", list, "next_cursor", next);
    return *out ? QUERY_OK : QUERY_ERR_REDIS;
}

/* --- one saga --------------------------------------------------------------------- */

int query_find(query_t *q, const char *id, int *partition, char *status, size_t len,
               int64_t *version)
{
    int parts = query_partitions(q);
    if (parts < 0)
        return QUERY_ERR_REDIS;
    if (!id || !*id || strlen(id) > 256) {
        set_error(q, "no saga \"%s\"", id ? id : "");
        return QUERY_ERR_NOT_FOUND;
    }
    batch_t b;
    if (batch_init(q, &b, (size_t)parts) < 0)
        return QUERY_ERR_REDIS;
    for (int p = 0; p < parts; p++) {
        const char *argv[] = {"HMGET", rkeys_saga(&q->keys, batch_key(&b), p, id),
                              RKEYS_F_STATUS, RKEYS_F_VERSION};
        batch_add(&b, 4, argv);
    }
    int found = -1, rc = batch_run(q, &b) == 0 ? QUERY_OK : QUERY_ERR_REDIS;
    for (int p = 0; rc == QUERY_OK && p < parts; p++) {
        const redisReply *r = b.replies[p];
        if (found < 0 && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_STRING) {
            found = p;
            if (status)
                snprintf(status, len, "%s", r->element[0]->str);
            if (version)
                *version = r->element[1]->type == REDIS_REPLY_STRING
                               ? strtoll(r->element[1]->str, NULL, 10)
                               : 0;
        }
    }
    batch_release(&b);
    if (rc != QUERY_OK)
        return rc;
    if (found < 0) {
        set_error(q, "no saga \"%s\" in Redis (in none of %d partitions)", id, parts);
        return QUERY_ERR_NOT_FOUND;
    }
    if (partition)
        *partition = found;
    return QUERY_OK;
}

int query_show(query_t *q, const char *id, json_t **out)
{
    *out = NULL;
    int p;
    int rc = query_find(q, id, &p, NULL, 0, NULL);
    if (rc != QUERY_OK)
        return rc;
    char key[RKEYS_KEY_MAX];
    rkeys_saga(&q->keys, key, p, id);
    redisReply *r = command(q, key, "HGETALL %s", key);
    if (!r)
        return QUERY_ERR_REDIS;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        set_error(q, "no saga \"%s\" (it expired just now)", id);
        return QUERY_ERR_NOT_FOUND;
    }
    json_t *saga = json_object();
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        set_typed(saga, r->element[i]->str, r->element[i + 1]->str, r->element[i + 1]->len);
    freeReplyObject(r);
    rkeys_history(&q->keys, key, p, id);
    r = command(q, key, "LRANGE %s 0 -1", key);
    if (!r) {
        json_decref(saga);
        return QUERY_ERR_REDIS;
    }
    json_t *history = json_array();
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        json_t *e = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        json_array_append_new(history, e ? e : json_stringn(r->element[i]->str, r->element[i]->len));
    }
    freeReplyObject(r);
    *out = json_pack("{s:o, s:o}", "saga", saga, "history", history);
    return *out ? QUERY_OK : QUERY_ERR_REDIS;
}

/* --- stats ------------------------------------------------------------------------ */

/* The counters of a definition, as the counters hash names them after "DEF:". */
static const char *const COUNTER_NAMES[] = {
    RKEYS_COUNTER_STARTED, RKEYS_COUNTER_COMPLETED, RKEYS_COUNTER_COMPENSATED,
    RKEYS_COUNTER_STUCK,   RKEYS_COUNTER_ACTIVE ":running", RKEYS_COUNTER_ACTIVE ":compensating",
    RKEYS_COUNTER_ACTIVE ":stuck"};
static const char *const COUNTER_KEYS[] = {"started", "completed", "compensated", "stuck",
                                           "running", "compensating", "stuck_now"};
#define COUNTER_COUNT (sizeof COUNTER_NAMES / sizeof *COUNTER_NAMES)
static const char *const RATE_KEYS[] = {"completed_1m", "compensated_1m", "completed_1h",
                                        "compensated_1h"};

/* The entry of definition name in defs (an object name -> counters), created at zero. */
static json_t *def_entry(json_t *defs, const char *name)
{
    json_t *e = json_object_get(defs, name);
    if (e)
        return e;
    e = json_object();
    json_object_set_new(e, "definition", json_string(name));
    for (size_t i = 0; i < COUNTER_COUNT; i++)
        json_object_set_new(e, COUNTER_KEYS[i], json_integer(0));
    for (size_t i = 0; i < 4; i++)
        json_object_set_new(e, RATE_KEYS[i], json_integer(0));
    json_object_set_new(defs, name, e);
    return e;
}

static void add_int(json_t *o, const char *key, json_int_t v)
{
    json_object_set_new(o, key, json_integer(json_integer_value(json_object_get(o, key)) + v));
}

/* Adds one partition's counters hash to defs. The "active:" gauges are matched first:
 * "DEF:active:stuck" also ends with ":stuck". */
static void add_counters(json_t *defs, const redisReply *r)
{
    static const size_t ORDER[] = {4, 5, 6, 0, 1, 2, 3};
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *field = r->element[i]->str;
        size_t fl = strlen(field);
        for (size_t o = 0; o < COUNTER_COUNT; o++) {
            size_t k = ORDER[o], cl = strlen(COUNTER_NAMES[k]);
            if (fl > cl + 1 && field[fl - cl - 1] == ':' &&
                strcmp(field + fl - cl, COUNTER_NAMES[k]) == 0) {
                char name[256];
                snprintf(name, sizeof name, "%.*s", (int)(fl - cl - 1), field);
                add_int(def_entry(defs, name), COUNTER_KEYS[k],
                        strtoll(r->element[i + 1]->str, NULL, 10));
                break;
            }
        }
    }
}

/* Called once per finished saga by finished_scan: its definition and status (borrowed,
 * valid during the call) and when it finished (epoch ms). */
typedef void (*finished_visit_fn)(const char *definition, const char *status,
                                  int64_t finished_at, void *opaque);

/* Visits the sagas of partition's finished index that finished at since_ms or later, at
 * most budget of them (*truncated set when there were more), reading each one's
 * definition and status from its hash (pipelined). Returns the number read, or -1. */
static long finished_scan(query_t *q, int partition, int64_t since_ms, long budget,
                          bool *truncated, finished_visit_fn visit, void *opaque)
{
    char key[RKEYS_KEY_MAX];
    rkeys_index(&q->keys, key, partition, RKEYS_INDEX_FINISHED);
    redisReply *r = command(q, key, "ZRANGEBYSCORE %s %lld +inf WITHSCORES LIMIT 0 %ld", key,
                            (long long)since_ms, budget + 1);
    if (!r)
        return -1;
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    if ((long)n > budget) {
        *truncated = true;
        n = (size_t)budget;
    }
    long done = 0;
    for (size_t start = 0; start < n; start += QUERY_RATE_CHUNK) {
        size_t end = start + QUERY_RATE_CHUNK < n ? start + QUERY_RATE_CHUNK : n;
        batch_t b;
        if (batch_init(q, &b, end - start) < 0) {
            freeReplyObject(r);
            return -1;
        }
        for (size_t i = start; i < end; i++) {
            const char *argv[] = {
                "HMGET", rkeys_saga(&q->keys, batch_key(&b), partition, r->element[2 * i]->str),
                RKEYS_F_DEFINITION, RKEYS_F_STATUS};
            batch_add(&b, 4, argv);
        }
        if (batch_run(q, &b) < 0) {
            batch_release(&b);
            freeReplyObject(r);
            return -1;
        }
        for (size_t i = start; i < end; i++) {
            const redisReply *h = b.replies[i - start];
            double score = strtod(r->element[2 * i + 1]->str, NULL);
            /* A saga trimmed between the index read and its hash read has no fields. */
            if (h->type == REDIS_REPLY_ARRAY && h->elements == 2 &&
                h->element[0]->type == REDIS_REPLY_STRING &&
                h->element[1]->type == REDIS_REPLY_STRING)
                visit(h->element[0]->str, h->element[1]->str, (int64_t)score, opaque);
            done++;
        }
        batch_release(&b);
    }
    freeReplyObject(r);
    return done;
}

typedef struct rate_ctx {
    json_t *defs;
    int64_t now_ms;
} rate_ctx_t;

static void rate_visit(const char *definition, const char *status, int64_t finished_at,
                       void *opaque)
{
    rate_ctx_t *rc = opaque;
    json_t *e = def_entry(rc->defs, definition);
    bool completed = strcmp(status, "completed") == 0;
    add_int(e, completed ? "completed_1h" : "compensated_1h", 1);
    if (finished_at >= rc->now_ms - QUERY_MINUTE_MS)
        add_int(e, completed ? "completed_1m" : "compensated_1m", 1);
}

/* Counts finished sagas of the last hour per definition and status into defs. Returns
 * the number read, or -1. */
static long rate_scan(query_t *q, int partition, int64_t now_ms, json_t *defs, long budget,
                      bool *truncated)
{
    rate_ctx_t rc = {defs, now_ms};
    return finished_scan(q, partition, now_ms - QUERY_HOUR_MS, budget, truncated, rate_visit,
                         &rc);
}

static void set_rates(json_t *e)
{
    json_int_t m = json_integer_value(json_object_get(e, "completed_1m")) +
                   json_integer_value(json_object_get(e, "compensated_1m"));
    json_int_t h = json_integer_value(json_object_get(e, "completed_1h")) +
                   json_integer_value(json_object_get(e, "compensated_1h"));
    json_object_set_new(e, "finished_per_min_1m", json_real((double)m));
    json_object_set_new(e, "finished_per_min_1h", json_real((double)h / 60.0));
}

static int definition_cmp(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "definition"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "definition"));
    return strcmp(x ? x : "", y ? y : "");
}

/* Sorts the array of definition entries by their "definition" name. */
static void definitions_sort(json_t *list)
{
    size_t n = json_array_size(list);
    json_t **items = n > 1 ? malloc(n * sizeof *items) : NULL;
    if (!items)
        return; /* 0 or 1 entry, or out of memory: left as it is */
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(list, i));
    qsort(items, n, sizeof *items, definition_cmp);
    json_array_clear(list);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, items[i]);
    free(items);
}

int query_stats(query_t *q, int64_t now_ms, json_t **out)
{
    *out = NULL;
    int parts = query_partitions(q);
    if (parts < 0)
        return QUERY_ERR_REDIS;
    json_t *defs = json_object();
    /* Every loaded definition shows, even with nothing counted yet. */
    char key[RKEYS_KEY_MAX];
    rkeys_definitions(&q->keys, key);
    redisReply *r = command(q, key, "HKEYS %s", key);
    if (!r)
        goto redis_err;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s", r->element[i]->str);
        char *at = strrchr(name, '@');
        if (at)
            *at = '\0';
        def_entry(defs, name);
    }
    freeReplyObject(r);

    json_t *indexes = json_object();
    for (int i = 0; i < RKEYS_INDEX_COUNT; i++)
        json_object_set_new(indexes, rkeys_index_name((rkeys_index_t)i), json_integer(0));
    bool truncated = false;
    long budget = QUERY_RATE_SCAN_MAX;
    for (int p = 0; p < parts; p++) {
        rkeys_counters(&q->keys, key, p);
        r = command(q, key, "HGETALL %s", key);
        if (!r) {
            json_decref(indexes);
            goto redis_err;
        }
        add_counters(defs, r);
        freeReplyObject(r);
        for (int i = 0; i < RKEYS_INDEX_COUNT; i++) {
            rkeys_index(&q->keys, key, p, (rkeys_index_t)i);
            r = command(q, key, "ZCARD %s", key);
            if (!r) {
                json_decref(indexes);
                goto redis_err;
            }
            add_int(indexes, rkeys_index_name((rkeys_index_t)i), r->integer);
            freeReplyObject(r);
        }
        long n = budget > 0 ? rate_scan(q, p, now_ms, defs, budget, &truncated) : 0;
        if (n < 0) {
            json_decref(indexes);
            goto redis_err;
        }
        budget -= n;
        if (budget <= 0 && p + 1 < parts)
            truncated = true;
    }

    json_t *holder = json_object(), *list = json_array();
    json_t *totals = json_incref(def_entry(holder, "*"));
    json_decref(holder);
    const char *name;
    json_t *e;
    json_object_foreach(defs, name, e)
    {
        set_rates(e);
        json_array_append(list, e);
    }
    /* By name: the hash's own order (HKEYS) is Redis's, not stable across servers. */
    definitions_sort(list);
    size_t at;
    json_array_foreach(list, at, e)
    {
        const char *k;
        json_t *v;
        json_object_foreach(e, k, v)
        {
            if (json_is_integer(v))
                add_int(totals, k, json_integer_value(v));
        }
    }
    set_rates(totals);
    json_object_del(totals, "definition");
    json_decref(defs);
    *out = json_pack("{s:I, s:i, s:o, s:o, s:o, s:b}", "now", (json_int_t)now_ms, "partitions",
                     parts, "definitions", list, "totals", totals, "indexes", indexes,
                     "rates_truncated", truncated);
    return *out ? QUERY_OK : QUERY_ERR_REDIS;
redis_err:
    json_decref(defs);
    return QUERY_ERR_REDIS;
}

int query_definition(query_t *q, const char *name, int version, char **json)
{
    *json = NULL;
    if (!name || !*name || version < 1) {
        set_error(q, "a definition is named by its name and version (?version=N, N >= 1)");
        return QUERY_ERR_ARG;
    }
    char key[RKEYS_KEY_MAX], field[RKEYS_KEY_MAX];
    rkeys_definitions(&q->keys, key);
    redisReply *r = command(q, key, "HGET %s %s", key,
                            rkeys_definition_field(field, sizeof field, name, version));
    if (!r)
        return QUERY_ERR_REDIS;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        set_error(q, "no definition %s version %d in %s", name, version, key);
        return QUERY_ERR_NOT_FOUND;
    }
    *json = strdup(r->str);
    freeReplyObject(r);
    if (!*json) {
        set_error(q, "out of memory");
        return QUERY_ERR_REDIS;
    }
    return QUERY_OK;
}

typedef struct throughput_ctx {
    const char *definition;  /* NULL = every definition */
    int64_t from_ms;
    json_int_t completed[QUERY_THROUGHPUT_BUCKETS];
    json_int_t compensated[QUERY_THROUGHPUT_BUCKETS];
} throughput_ctx_t;

static void throughput_visit(const char *definition, const char *status, int64_t finished_at,
                             void *opaque)
{
    throughput_ctx_t *tc = opaque;
    if (tc->definition && strcmp(definition, tc->definition) != 0)
        return;
    int64_t b = (finished_at - tc->from_ms) / QUERY_MINUTE_MS;
    if (b < 0 || b >= QUERY_THROUGHPUT_BUCKETS)
        return;
    if (strcmp(status, "completed") == 0)
        tc->completed[b]++;
    else
        tc->compensated[b]++;
}

int query_throughput(query_t *q, int64_t now_ms, const char *definition, json_t **out)
{
    *out = NULL;
    int parts = query_partitions(q);
    if (parts < 0)
        return QUERY_ERR_REDIS;
    throughput_ctx_t tc = {.definition = definition && *definition ? definition : NULL};
    /* Whole minutes, the last one being the current (partial) minute. */
    tc.from_ms = (now_ms / QUERY_MINUTE_MS - (QUERY_THROUGHPUT_BUCKETS - 1)) * QUERY_MINUTE_MS;
    bool truncated = false;
    long budget = QUERY_RATE_SCAN_MAX;
    for (int p = 0; p < parts && budget > 0; p++) {
        long n = finished_scan(q, p, tc.from_ms, budget, &truncated, throughput_visit, &tc);
        if (n < 0)
            return QUERY_ERR_REDIS;
        budget -= n;
        if (budget <= 0 && p + 1 < parts)
            truncated = true;
    }
    json_t *buckets = json_array();
    json_int_t completed = 0, compensated = 0;
    for (int b = 0; b < QUERY_THROUGHPUT_BUCKETS; b++) {
        json_array_append_new(buckets,
                              json_pack("{s:I, s:I, s:I}", "start",
                                        (json_int_t)(tc.from_ms + (int64_t)b * QUERY_MINUTE_MS),
                                        "completed", tc.completed[b], "compensated",
                                        tc.compensated[b]));
        completed += tc.completed[b];
        compensated += tc.compensated[b];
    }
    *out = json_pack("{s:I, s:I, s:I, s:o*, s:o, s:I, s:I, s:b}", "now", (json_int_t)now_ms,
                     "from", (json_int_t)tc.from_ms, "bucket_ms", (json_int_t)QUERY_MINUTE_MS,
                     "definition", tc.definition ? json_string(tc.definition) : NULL, "buckets",
                     buckets, "completed", completed, "compensated", compensated, "truncated",
                     truncated);
    return *out ? QUERY_OK : QUERY_ERR_REDIS;
}

/* --- the cluster view ------------------------------------------------------------- */

static int member_cmp(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "instance"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "instance"));
    return strcmp(x ? x : "", y ? y : "");
}

/* One member record (HGETALL's reply) as JSON, or NULL when it expired (no fields). */
static json_t *member_json(const redisReply *r, int64_t now_ms)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return NULL;
    json_t *m = json_object(), *parts = NULL;
    const char *list = NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!k || !v)
            continue;
        if (strcmp(k, "pid") == 0 || strcmp(k, "started_at") == 0 || strcmp(k, "last_seen") == 0)
            json_object_set_new(m, k, json_integer(strtoll(v, NULL, 10)));
        else if (strcmp(k, "partitions_json") == 0)
            parts = json_loads(v, 0, NULL);
        else if (strcmp(k, "partitions") == 0)
            list = v;
        else
            json_object_set_new(m, k, json_string(v));
    }
    if (!json_is_array(parts)) {
        /* A record without a readable partitions_json: the comma list, figures unknown. */
        json_decref(parts);
        parts = json_array();
        for (const char *p = list; p && *p;) {
            char *end;
            long n = strtol(p, &end, 10);
            if (end == p)
                break;
            json_array_append_new(parts, json_pack("{s:i, s:n, s:n}", "partition", (int)n, "lag",
                                                   "sagas"));
            p = *end == ',' ? end + 1 : end;
        }
    }
    json_object_set_new(m, "partitions", parts);
    json_int_t seen = json_integer_value(json_object_get(m, "last_seen"));
    json_object_set_new(m, "seen_ago_ms", json_integer(seen ? now_ms - seen : -1));
    return m;
}

/* The live members (records listed in saga:members that have not expired), sorted by
 * instance, into *out (new reference). Returns 0 or -1. */
static int cluster_members(query_t *q, int64_t now_ms, json_t **out)
{
    *out = NULL;
    char mkey[RKEYS_KEY_MAX];
    rkeys_members(&q->keys, mkey);
    redisReply *ids = command(q, mkey, "ZRANGE %s 0 -1", mkey);
    if (!ids)
        return -1;
    size_t n = ids->type == REDIS_REPLY_ARRAY ? ids->elements : 0;
    json_t **found = calloc(n ? n : 1, sizeof *found);
    size_t nfound = 0;
    batch_t b;
    int rc = found ? batch_init(q, &b, n) : -1;
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            const char *argv[] = {"HGETALL",
                                  rkeys_member(&q->keys, batch_key(&b), ids->element[i]->str)};
            batch_add(&b, 2, argv);
        }
        rc = batch_run(q, &b);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            json_t *m = member_json(b.replies[i], now_ms);
            if (m)
                found[nfound++] = m;
        }
        batch_release(&b);
    }
    freeReplyObject(ids);
    if (nfound > 1)
        qsort(found, nfound, sizeof *found, member_cmp);
    json_t *list = json_array();
    for (size_t i = 0; i < nfound; i++)
        json_array_append_new(list, found[i]);
    free(found);
    if (rc < 0) {
        json_decref(list);
        return -1;
    }
    *out = list;
    return 0;
}

/* The member whose instance is owner, or NULL (borrowed). */
static json_t *member_of(json_t *members, const char *owner)
{
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "instance"));
        if (owner && id && strcmp(id, owner) == 0)
            return m;
    }
    return NULL;
}

/* The entry of partition p in member m's partitions, or NULL (borrowed). */
static json_t *member_partition(json_t *m, int p)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(m, "partitions"), i, e)
    {
        if (json_integer_value(json_object_get(e, "partition")) == p)
            return e;
    }
    return NULL;
}

static json_int_t reply_int(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return (json_int_t)r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return (json_int_t)strtoll(r->str, NULL, 10);
    return 0;
}

#define CLUSTER_PER_PARTITION 7  /* owner, three index sizes, outbox, newest stuck, lease */

/* One partition's row from its CLUSTER_PER_PARTITION replies; the newest stuck ids go to
 * stuck (their partition in the row's placeholder object). Returns the row. */
static json_t *cluster_partition(int p, redisReply **r, json_t *members, int64_t now_ms,
                                 rows_t *stuck, json_int_t *stuck_count)
{
    const redisReply *own = r[0];
    const char *owner = NULL;
    json_int_t epoch = 0, since = 0;
    if (own->type == REDIS_REPLY_ARRAY && own->elements == 3) {
        if (own->element[0]->type == REDIS_REPLY_STRING)
            owner = own->element[0]->str;
        epoch = reply_int(own->element[1]);
        since = reply_int(own->element[2]);
    }
    json_int_t running = reply_int(r[1]), compensating = reply_int(r[2]), nstuck = reply_int(r[3]);
    json_t *m = member_of(members, owner);
    json_t *mp = m ? member_partition(m, p) : NULL;
    json_t *lag = mp ? json_object_get(mp, "lag") : NULL;
    json_t *sagas = mp ? json_object_get(mp, "sagas") : NULL;
    json_t *row = json_pack(
        "{s:i, s:o, s:I, s:o, s:o, s:b, s:I, s:I, s:I, s:I, s:I, s:O, s:O}", "partition", p,
        "owner", owner ? json_string(owner) : json_null(), "epoch", epoch, "since",
        owner && since ? json_integer(since) : json_null(), "taken_ago_ms",
        owner && since ? json_integer(now_ms - since) : json_null(), "owner_live", m != NULL,
        "running", running, "compensating", compensating, "stuck", nstuck, "active",
        running + compensating + nstuck, "outbox", reply_int(r[4]), "lag",
        lag ? lag : json_null(), "sagas_in_memory", sagas ? sagas : json_null());
    /* membership=redis: how long the owner's lease has left (PTTL; none: -2). */
    json_object_set_new(row, "lease_left_ms",
                        r[6]->type == REDIS_REPLY_INTEGER && r[6]->integer >= 0
                            ? json_integer((json_int_t)r[6]->integer)
                            : json_null());
    *stuck_count += nstuck;
    const redisReply *ids = r[5];
    for (size_t i = 0; ids->type == REDIS_REPLY_ARRAY && i + 1 < ids->elements; i += 2) {
        json_t *where = json_pack("{s:i}", "partition", p);
        if (rows_push(stuck, strtod(ids->element[i + 1]->str, NULL), ids->element[i]->str,
                      where) < 0)
            json_decref(where); /* out of memory: the list is short of it */
    }
    return row;
}

/* Reads the hash fields of the first n stuck rows (pipelined) into a list like
 * query_list's. Returns the list (new reference) or NULL. */
static json_t *cluster_stuck(query_t *q, rows_t *rows, size_t n)
{
    batch_t b;
    if (batch_init(q, &b, n) < 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *argv[QUERY_ARGS_MAX] = {
            "HMGET",
            rkeys_saga(&q->keys, batch_key(&b),
                       (int32_t)json_integer_value(json_object_get(rows->items[i].saga, "partition")),
                       rows->items[i].id)};
        for (size_t k = 0; k < LIST_FIELD_COUNT; k++)
            argv[2 + k] = LIST_FIELDS[k];
        batch_add(&b, (int)QUERY_ARGS_MAX, argv);
    }
    int rc = batch_run(q, &b);
    json_t *list = json_array();
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const redisReply *h = b.replies[i];
        if (h->type == REDIS_REPLY_ARRAY && h->elements == LIST_FIELD_COUNT &&
            h->element[0]->type == REDIS_REPLY_STRING) {
            json_t *saga = json_object();
            for (size_t k = 0; k < LIST_FIELD_COUNT; k++)
                if (h->element[k]->type == REDIS_REPLY_STRING)
                    set_typed(saga, LIST_FIELDS[k], h->element[k]->str, h->element[k]->len);
            json_object_set_new(saga, "score", json_integer((json_int_t)rows->items[i].score));
            json_array_append_new(list, saga);
        }
    }
    batch_release(&b);
    if (rc < 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}

int query_cluster(query_t *q, int64_t now_ms, json_t **out)
{
    *out = NULL;
    int parts = query_partitions(q);
    if (parts < 0)
        return QUERY_ERR_REDIS;
    json_t *members = NULL;
    if (cluster_members(q, now_ms, &members) < 0)
        return QUERY_ERR_REDIS;
    char stop[16];
    snprintf(stop, sizeof stop, "%d", QUERY_CLUSTER_STUCK_MAX - 1);
    batch_t b;
    if (batch_init(q, &b, (size_t)parts * CLUSTER_PER_PARTITION) < 0) {
        json_decref(members);
        return QUERY_ERR_REDIS;
    }
    for (int p = 0; p < parts; p++) {
        /* The replies come in this order: cluster_partition reads them so. */
        const char *hmget[] = {"HMGET", rkeys_owner(&q->keys, batch_key(&b), p), "owner", "epoch",
                               "since"};
        batch_add(&b, 5, hmget);
        for (int i = 0; i < RKEYS_INDEX_ACTIVE_COUNT; i++) { /* running, compensating, stuck */
            const char *zcard[] = {"ZCARD", rkeys_index(&q->keys, batch_key(&b), p,
                                                        (rkeys_index_t)i)};
            batch_add(&b, 2, zcard);
        }
        const char *hlen[] = {"HLEN", rkeys_outbox(&q->keys, batch_key(&b), p)};
        batch_add(&b, 2, hlen);
        const char *newest[] = {"ZREVRANGE",
                                rkeys_index(&q->keys, batch_key(&b), p, RKEYS_INDEX_STUCK), "0",
                                stop, "WITHSCORES"};
        batch_add(&b, 5, newest);
        const char *pttl[] = {"PTTL", rkeys_lease(&q->keys, batch_key(&b), p)};
        batch_add(&b, 2, pttl);
    }
    int rc = batch_run(q, &b);
    json_t *rows_json = json_array();
    rows_t stuck = {0};
    json_int_t stuck_count = 0;
    for (int p = 0; rc == 0 && p < parts; p++)
        json_array_append_new(rows_json,
                              cluster_partition(p, b.replies + (size_t)p * CLUSTER_PER_PARTITION,
                                                members, now_ms, &stuck, &stuck_count));
    batch_release(&b);
    json_t *stuck_list = NULL;
    if (rc == 0) {
        if (stuck.n > 1)
            qsort(stuck.items, stuck.n, sizeof *stuck.items, row_cmp);
        size_t n = stuck.n < QUERY_CLUSTER_STUCK_MAX ? stuck.n : QUERY_CLUSTER_STUCK_MAX;
        stuck_list = cluster_stuck(q, &stuck, n);
        if (!stuck_list)
            rc = -1;
    }
    rows_release(&stuck);
    if (rc < 0) {
        json_decref(members);
        json_decref(rows_json);
        return QUERY_ERR_REDIS;
    }
    *out = json_pack("{s:I, s:i, s:o, s:o, s:{s:I, s:b, s:o}}", "now", (json_int_t)now_ms,
                     "partitions_count", parts, "members", members, "partitions", rows_json,
                     "stuck", "count", stuck_count, "truncated",
                     stuck_count > (json_int_t)json_array_size(stuck_list), "sagas", stuck_list);
    return *out ? QUERY_OK : QUERY_ERR_REDIS;
}
