/* store.c - the Redis store: key layout, fenced transition script, outbox (see store.h). */
#include "store.h"

#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* The transition script. Checks everything before the first write (a script is atomic
 * but not transactional), then writes the saga's fields, its history, the outbox, the
 * counters and the status index in one step.
 * KEYS: 1 epoch, 2 saga hash, 3 history, 4 outbox, 5 counters, 6 index left, 7 index entered
 * ARGV: 1 epoch, 2 expected version (0 = create), 3 saga id, 4 score (ms), 5 retention ms
 *       (>0: the saga finished and expires), 6 history cap, then four counted lists:
 *       hash field pairs, history entries, outbox pairs, counter pairs (field, delta). */
static const char TRANSITION_SCRIPT[] =
    "local epoch = redis.call('GET', KEYS[1])\n"
    "if epoch ~= ARGV[1] then\n"
    "  return redis.error_reply('FENCED epoch is ' .. tostring(epoch) .. ', not ' .. ARGV[1])\n"
    "end\n"
    "local cur = redis.call('HGET', KEYS[2], 'version')\n"
    "if ARGV[2] == '0' then\n"
    "  if cur then return redis.error_reply('EXISTS saga ' .. ARGV[3]) end\n"
    "elseif cur ~= ARGV[2] then\n"
    "  return redis.error_reply('CONFLICT version is ' .. tostring(cur) .. ', not ' .. ARGV[2])\n"
    "end\n"
    "local i = 7\n"
    "local n = tonumber(ARGV[i]); i = i + 1\n"
    "if n > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, i, i + 2 * n - 1)); i = i + 2 * n end\n"
    "n = tonumber(ARGV[i]); i = i + 1\n"
    "if n > 0 then\n"
    "  local len = redis.call('RPUSH', KEYS[3], unpack(ARGV, i, i + n - 1)); i = i + n\n"
    "  if len > tonumber(ARGV[6]) then redis.call('LTRIM', KEYS[3], -tonumber(ARGV[6]), -1) end\n"
    "end\n"
    "n = tonumber(ARGV[i]); i = i + 1\n"
    "if n > 0 then redis.call('HSET', KEYS[4], unpack(ARGV, i, i + 2 * n - 1)); i = i + 2 * n end\n"
    "n = tonumber(ARGV[i]); i = i + 1\n"
    "for j = 0, n - 1 do redis.call('HINCRBY', KEYS[5], ARGV[i + 2 * j], ARGV[i + 2 * j + 1]) end\n"
    "if KEYS[6] ~= KEYS[7] then redis.call('ZREM', KEYS[6], ARGV[3]) end\n"
    "redis.call('ZADD', KEYS[7], ARGV[4], ARGV[3])\n"
    "local ttl = tonumber(ARGV[5])\n"
    "if ttl > 0 then\n"
    "  redis.call('PEXPIRE', KEYS[2], ttl)\n"
    "  redis.call('PEXPIRE', KEYS[3], ttl)\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (tonumber(ARGV[4]) - ttl))\n"
    "end\n"
    "return 'OK'\n";

struct store {
    redisContext *ctx;
    char host[256];
    int port;
    char *user, *password;
    int db;
    char prefix[64];
    int64_t retention_ms;
    int history_cap;
    int timeout_ms;
    char script_sha[41];
    int wait_replicas;
    size_t queued_transitions;
    size_t queued_replies;       /* every reply to read, acks included */
    unsigned char *reply_is_transition; /* per queued reply: 1 transition, 0 ack */
    size_t reply_cap;
    char last_error[256];
};

/* --- small helpers ---------------------------------------------------------------- */

static void set_error(store_t *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(store_t *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->last_error, sizeof st->last_error, fmt, ap);
    va_end(ap);
}

const char *store_last_error(const store_t *st)
{
    return st->last_error;
}

redisContext *store_context(store_t *st)
{
    return st->ctx;
}

void outbox_entry_release(outbox_entry_t *e)
{
    if (!e)
        return;
    free(e->id);
    free(e->topic);
    free(e->key);
    free(e->value);
    memset(e, 0, sizeof *e);
}

void store_key_saga(const store_t *st, char *buf, int32_t partition, const char *saga_id)
{
    snprintf(buf, STORE_KEY_MAX, "%s:{p%d}:saga:%s", st->prefix, (int)partition, saga_id);
}

void store_key_history(const store_t *st, char *buf, int32_t partition, const char *saga_id)
{
    snprintf(buf, STORE_KEY_MAX, "%s:{p%d}:history:%s", st->prefix, (int)partition, saga_id);
}

void store_key_index(const store_t *st, char *buf, int32_t partition, const char *index)
{
    snprintf(buf, STORE_KEY_MAX, "%s:{p%d}:index:%s", st->prefix, (int)partition, index);
}

void store_key_partition(const store_t *st, char *buf, int32_t partition, const char *what)
{
    snprintf(buf, STORE_KEY_MAX, "%s:{p%d}:%s", st->prefix, (int)partition, what);
}

void store_key_global(const store_t *st, char *buf, const char *what)
{
    snprintf(buf, STORE_KEY_MAX, "%s:%s", st->prefix, what);
}

/* A growable argv for redisAppendCommandArgv. Strings are copied only when asked. */
typedef struct argv_buf {
    const char **argv;
    size_t *lens;
    char **owned;
    size_t count, cap, owned_count, owned_cap;
} argv_buf_t;

static int argv_push(argv_buf_t *a, const char *s, size_t len)
{
    if (a->count == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        const char **v = realloc(a->argv, cap * sizeof *v);
        if (!v)
            return -1;
        a->argv = v;
        size_t *l = realloc(a->lens, cap * sizeof *l);
        if (!l)
            return -1;
        a->lens = l;
        a->cap = cap;
    }
    a->argv[a->count] = s;
    a->lens[a->count] = len;
    a->count++;
    return 0;
}

static int argv_push_str(argv_buf_t *a, const char *s)
{
    return argv_push(a, s, strlen(s));
}

/* Pushes a string the buffer owns (freed with it). */
static int argv_push_owned(argv_buf_t *a, char *s)
{
    if (!s)
        return -1;
    if (a->owned_count == a->owned_cap) {
        size_t cap = a->owned_cap ? a->owned_cap * 2 : 32;
        char **o = realloc(a->owned, cap * sizeof *o);
        if (!o) {
            free(s);
            return -1;
        }
        a->owned = o;
        a->owned_cap = cap;
    }
    a->owned[a->owned_count++] = s;
    return argv_push_str(a, s);
}

static int argv_push_fmt(argv_buf_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int argv_push_fmt(argv_buf_t *a, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    return argv_push_owned(a, s);
}

static void argv_release(argv_buf_t *a)
{
    for (size_t i = 0; i < a->owned_count; i++)
        free(a->owned[i]);
    free(a->owned);
    free(a->argv);
    free(a->lens);
    memset(a, 0, sizeof *a);
}

/* Runs one command synchronously; returns the reply (caller frees) or NULL. */
static redisReply *command(store_t *st, const char *fmt, ...)
{
    if (store_ensure_connected(st) < 0)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(st->ctx, fmt, ap);
    va_end(ap);
    if (!r) {
        set_error(st, "redis: %s", st->ctx->errstr);
        redisFree(st->ctx);
        st->ctx = NULL;
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        set_error(st, "redis: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* --- connection ------------------------------------------------------------------- */

static int connect_now(store_t *st)
{
    struct timeval tv = {st->timeout_ms / 1000, (st->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(st->host, st->port, tv);
    if (!c || c->err) {
        set_error(st, "cannot connect to redis %s:%d: %s", st->host, st->port,
                  c ? c->errstr : "out of memory");
        redisFree(c);
        return -1;
    }
    redisSetTimeout(c, tv);
    st->ctx = c;
    redisReply *r = NULL;
    if (st->password) {
        r = st->user ? redisCommand(c, "AUTH %s %s", st->user, st->password)
                     : redisCommand(c, "AUTH %s", st->password);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    if (st->db > 0) {
        r = redisCommand(c, "SELECT %d", st->db);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    r = redisCommand(c, "SCRIPT LOAD %s", TRANSITION_SCRIPT);
    if (!r || r->type != REDIS_REPLY_STRING || r->len != 40)
        goto fail;
    memcpy(st->script_sha, r->str, 40);
    st->script_sha[40] = '\0';
    freeReplyObject(r);
    return 0;
fail:
    set_error(st, "redis %s:%d: %s", st->host, st->port,
              r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
    st->ctx = NULL;
    return -1;
}

int store_ping(store_t *st)
{
    redisReply *r = command(st, "PING");
    freeReplyObject(r);
    return r ? 0 : -1;
}

int store_ensure_connected(store_t *st)
{
    if (st->ctx && !st->ctx->err)
        return 0;
    if (st->ctx) {
        redisFree(st->ctx);
        st->ctx = NULL;
    }
    st->queued_replies = st->queued_transitions = 0;
    return connect_now(st);
}

store_t *store_new(const store_config_t *cfg, char *err, size_t errlen)
{
    store_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(st->host, sizeof st->host, "%s", cfg->host ? cfg->host : "127.0.0.1");
    st->port = cfg->port > 0 ? cfg->port : 6379;
    st->user = cfg->user ? strdup(cfg->user) : NULL;
    st->password = cfg->password ? strdup(cfg->password) : NULL;
    st->db = cfg->db;
    snprintf(st->prefix, sizeof st->prefix, "%s", cfg->prefix ? cfg->prefix : STORE_DEFAULT_PREFIX);
    st->retention_ms = cfg->retention_ms;
    st->history_cap = cfg->history_cap > 0 ? cfg->history_cap : STORE_DEFAULT_HISTORY_CAP;
    st->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
    if (connect_now(st) < 0) {
        snprintf(err, errlen, "%s", st->last_error);
        store_free(st);
        return NULL;
    }
    return st;
}

void store_free(store_t *st)
{
    if (!st)
        return;
    redisFree(st->ctx);
    free(st->user);
    free(st->password);
    free(st->reply_is_transition);
    free(st);
}

/* --- epochs, meta, definitions ---------------------------------------------------- */

void store_set_wait_replicas(store_t *st, int replicas)
{
    st->wait_replicas = replicas;
}

int store_read_epoch(store_t *st, int32_t partition, int64_t *epoch)
{
    char key[STORE_KEY_MAX];
    store_key_partition(st, key, partition, "epoch");
    redisReply *r = command(st, "GET %s", key);
    if (!r)
        return -1;
    *epoch = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return 0;
}

int store_take_epoch(store_t *st, int32_t partition, const char *owner, int64_t *epoch)
{
    char key[STORE_KEY_MAX], okey[STORE_KEY_MAX];
    store_key_partition(st, key, partition, "epoch");
    store_key_partition(st, okey, partition, "owner");
    redisReply *r = command(st, "INCR %s", key);
    if (!r)
        return -1;
    *epoch = r->integer;
    freeReplyObject(r);
    if (st->wait_replicas > 0) {
        r = command(st, "WAIT %d %d", st->wait_replicas, st->timeout_ms);
        if (!r)
            return -1;
        long long acked = r->integer;
        freeReplyObject(r);
        if (acked < st->wait_replicas) {
            set_error(st, "epoch %lld of partition %d reached %lld of %d replicas in %d ms",
                      (long long)*epoch, (int)partition, acked, st->wait_replicas,
                      st->timeout_ms);
            return -1;
        }
    }
    r = command(st, "HSET %s owner %s epoch %lld since %lld", okey, owner, (long long)*epoch,
                (long long)time(NULL) * 1000);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

int store_put_meta(store_t *st, int partitions)
{
    char key[STORE_KEY_MAX];
    store_key_global(st, key, "meta");
    redisReply *r = command(st, "HSET %s layout_version %d partitions %d", key,
                            STORE_LAYOUT_VERSION, partitions);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

static void definition_field(char *field, size_t len, const char *name, int version)
{
    snprintf(field, len, "%s@%d", name, version);
}

/* Copies a string reply of at most STORE_HASH_HEX_LEN bytes into hash. */
static void copy_hash(const redisReply *r, char *hash)
{
    snprintf(hash, STORE_HASH_HEX_LEN + 1, "%s",
             r && r->type == REDIS_REPLY_STRING ? r->str : "");
}

int store_put_definition(store_t *st, const definition_t *d, char *existing)
{
    char key[STORE_KEY_MAX], hkey[STORE_KEY_MAX], field[DEFN_MAX_NAME_LEN + 32];
    store_key_global(st, key, "definitions");
    store_key_global(st, hkey, "definition-hashes");
    definition_field(field, sizeof field, d->name, d->version);
    /* The hash first: it decides, atomically, which content owns NAME@VERSION. */
    redisReply *r = command(st, "HSETNX %s %s %s", hkey, field, d->content_hash);
    if (!r)
        return -1;
    bool first = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!first) {
        char recorded[STORE_HASH_HEX_LEN + 1];
        int rc = store_get_definition_hash(st, d->name, d->version, recorded);
        if (rc < 0)
            return -1;
        if (rc == 0 && strcmp(recorded, d->content_hash) != 0) {
            if (existing)
                snprintf(existing, STORE_HASH_HEX_LEN + 1, "%s", recorded);
            return 1;
        }
    }
    char *text = json_dumps(d->json, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return -1;
    r = command(st, "HSET %s %s %s", key, field, text);
    free(text);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

int store_get_definition_hash(store_t *st, const char *name, int version, char *hash)
{
    char hkey[STORE_KEY_MAX], field[DEFN_MAX_NAME_LEN + 32];
    store_key_global(st, hkey, "definition-hashes");
    definition_field(field, sizeof field, name, version);
    redisReply *r = command(st, "HGET %s %s", hkey, field);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_STRING ? 0 : 1;
    copy_hash(r, hash);
    freeReplyObject(r);
    return rc;
}

int store_get_definition(store_t *st, const char *name, int version, char **json, char *hash)
{
    char key[STORE_KEY_MAX], hkey[STORE_KEY_MAX], field[DEFN_MAX_NAME_LEN + 32];
    store_key_global(st, key, "definitions");
    store_key_global(st, hkey, "definition-hashes");
    definition_field(field, sizeof field, name, version);
    *json = NULL;
    hash[0] = '\0';
    redisReply *r = command(st, "HGET %s %s", key, field);
    if (!r)
        return -1;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return 1;
    }
    *json = strndup(r->str, r->len);
    freeReplyObject(r);
    if (!*json)
        return -1;
    r = command(st, "HGET %s %s", hkey, field);
    if (!r) {
        free(*json);
        *json = NULL;
        return -1;
    }
    copy_hash(r, hash);
    freeReplyObject(r);
    return 0;
}

/* --- loading ---------------------------------------------------------------------- */

static json_t *reply_to_object(const redisReply *r)
{
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
            json_object_set_new(o, k->str, json_stringn(v->str, v->len));
    }
    return o;
}

/* Fetches the hashes of ids[0..n) in one pipeline and calls fn for each that exists. */
static int load_chunk(store_t *st, int32_t partition, redisReply **ids, size_t n,
                      store_saga_fn fn, void *opaque)
{
    char key[STORE_KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        store_key_saga(st, key, partition, ids[i]->str);
        if (redisAppendCommand(st->ctx, "HGETALL %s", key) != REDIS_OK)
            return -1;
    }
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r) {
            set_error(st, "redis: %s", st->ctx->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
            json_t *fields = reply_to_object(r);
            fn(fields, opaque);
            json_decref(fields);
            count++;
        }
        freeReplyObject(r);
    }
    return count;
}

int store_load_partition(store_t *st, int32_t partition, store_saga_fn fn, void *opaque)
{
    static const char *const INDEXES[] = {"running", "compensating", "stuck"};
    int total = 0;
    for (size_t k = 0; k < sizeof INDEXES / sizeof *INDEXES; k++) {
        char key[STORE_KEY_MAX];
        store_key_index(st, key, partition, INDEXES[k]);
        redisReply *ids = command(st, "ZRANGE %s 0 -1", key);
        if (!ids)
            return -1;
        for (size_t i = 0; i < ids->elements; i += STORE_LOAD_CHUNK) {
            size_t n = ids->elements - i < STORE_LOAD_CHUNK ? ids->elements - i : STORE_LOAD_CHUNK;
            int c = load_chunk(st, partition, ids->element + i, n, fn, opaque);
            if (c < 0) {
                freeReplyObject(ids);
                redisFree(st->ctx);
                st->ctx = NULL;
                return -1;
            }
            total += c;
        }
        freeReplyObject(ids);
    }
    return total;
}

int store_load_outbox(store_t *st, int32_t partition, store_outbox_fn fn, void *opaque)
{
    char key[STORE_KEY_MAX];
    store_key_partition(st, key, partition, "outbox");
    redisReply *r = command(st, "HGETALL %s", key);
    if (!r)
        return -1;
    int count = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        /* value: "topic\npartition\nkey\nmessage" */
        const char *v = r->element[i + 1]->str;
        const char *nl1 = strchr(v, '\n');
        const char *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;
        const char *nl3 = nl2 ? strchr(nl2 + 1, '\n') : NULL;
        if (!nl3) {
            log_warn("outbox entry %s of partition %d is malformed; dropped",
                     r->element[i]->str, (int)partition);
            continue;
        }
        outbox_entry_t e = {
            .id = r->element[i]->str,
            .topic = strndup(v, (size_t)(nl1 - v)),
            .partition = (int32_t)strtol(nl1 + 1, NULL, 10),
            .key = strndup(nl2 + 1, (size_t)(nl3 - nl2 - 1)),
            .value = (char *)nl3 + 1,
        };
        fn(&e, opaque);
        free(e.topic);
        free(e.key);
        count++;
    }
    freeReplyObject(r);
    return count;
}

/* --- the pipeline ----------------------------------------------------------------- */

static int note_reply(store_t *st, bool transition)
{
    if (st->queued_replies == st->reply_cap) {
        size_t cap = st->reply_cap ? st->reply_cap * 2 : 256;
        unsigned char *n = realloc(st->reply_is_transition, cap);
        if (!n)
            return -1;
        st->reply_is_transition = n;
        st->reply_cap = cap;
    }
    st->reply_is_transition[st->queued_replies++] = transition;
    if (transition)
        st->queued_transitions++;
    return 0;
}

size_t store_queued(const store_t *st)
{
    return st->queued_transitions;
}

/* Counter changes of a transition: totals per definition and a gauge per active status. */
static void push_counters(argv_buf_t *a, const store_transition_t *t, size_t *count)
{
    const char *def = t->saga->def->name;
    bool created = t->expected_version == 0;
    saga_status_t now = t->saga->status;
    if (created) {
        argv_push_fmt(a, "%s:started", def);
        argv_push_str(a, "1");
        (*count)++;
    }
    if (created || t->old_status != now) {
        if (!created && !saga_status_is_terminal(t->old_status)) {
            argv_push_fmt(a, "%s:active:%s", def, saga_status_name(t->old_status));
            argv_push_str(a, "-1");
            (*count)++;
        }
        if (saga_status_is_terminal(now) || now == SAGA_STUCK) {
            argv_push_fmt(a, "%s:%s", def, saga_status_name(now));
            argv_push_str(a, "1");
            (*count)++;
        }
        if (!saga_status_is_terminal(now)) {
            argv_push_fmt(a, "%s:active:%s", def, saga_status_name(now));
            argv_push_str(a, "1");
            (*count)++;
        }
    }
}

int store_queue_transition(store_t *st, const store_transition_t *t)
{
    if (store_ensure_connected(st) < 0)
        return -1;
    const saga_t *s = t->saga;
    argv_buf_t a = {0};
    char k_epoch[STORE_KEY_MAX], k_saga[STORE_KEY_MAX], k_hist[STORE_KEY_MAX],
        k_out[STORE_KEY_MAX], k_cnt[STORE_KEY_MAX], k_old[STORE_KEY_MAX], k_new[STORE_KEY_MAX];
    store_key_partition(st, k_epoch, t->partition, "epoch");
    store_key_saga(st, k_saga, t->partition, s->id);
    store_key_history(st, k_hist, t->partition, s->id);
    store_key_partition(st, k_out, t->partition, "outbox");
    store_key_partition(st, k_cnt, t->partition, "counters");
    store_key_index(st, k_new, t->partition, saga_status_index(s->status));
    store_key_index(st, k_old, t->partition,
                    saga_status_index(t->expected_version ? t->old_status : s->status));
    bool finished = saga_status_is_terminal(s->status);

    argv_push_str(&a, "EVALSHA");
    argv_push_str(&a, st->script_sha);
    argv_push_str(&a, "7");
    argv_push_str(&a, k_epoch);
    argv_push_str(&a, k_saga);
    argv_push_str(&a, k_hist);
    argv_push_str(&a, k_out);
    argv_push_str(&a, k_cnt);
    argv_push_str(&a, k_old);
    argv_push_str(&a, k_new);
    argv_push_fmt(&a, "%" PRId64, t->epoch);
    argv_push_fmt(&a, "%" PRId64, t->expected_version);
    argv_push_str(&a, s->id);
    argv_push_fmt(&a, "%" PRId64, finished && s->finished_at ? s->finished_at : s->updated_at);
    argv_push_fmt(&a, "%" PRId64, finished ? st->retention_ms : 0);
    argv_push_fmt(&a, "%d", st->history_cap);

    /* A create writes every field; a later transition only those that can change (the
     * version check proves the hash, and so its fixed fields, is there). */
    json_t *fields = t->expected_version ? saga_encode_changed_fields(s) : saga_encode_fields(s);
    /* The version written is always the one after expected, whatever s says. */
    char version[24];
    snprintf(version, sizeof version, "%" PRId64, t->expected_version + 1);
    json_object_set_new(fields, "version", json_string(version));
    argv_push_fmt(&a, "%zu", json_object_size(fields));
    const char *fk;
    json_t *fv;
    json_object_foreach(fields, fk, fv)
    {
        argv_push_str(&a, fk);
        argv_push(&a, json_string_value(fv), json_string_length(fv));
    }

    size_t nh = t->history ? json_array_size(t->history) : 0;
    argv_push_fmt(&a, "%zu", nh);
    for (size_t i = 0; i < nh; i++)
        argv_push_owned(&a, json_dumps(json_array_get(t->history, i), JSON_COMPACT));

    argv_push_fmt(&a, "%zu", t->outbox_count);
    for (size_t i = 0; i < t->outbox_count; i++) {
        const outbox_entry_t *e = &t->outbox[i];
        argv_push_str(&a, e->id);
        argv_push_fmt(&a, "%s\n%d\n%s\n%s", e->topic, (int)e->partition, e->key, e->value);
    }

    size_t counter_pos = a.count, ncounters = 0;
    argv_push_str(&a, "0"); /* replaced below */
    push_counters(&a, t, &ncounters);
    char ncount[24];
    snprintf(ncount, sizeof ncount, "%zu", ncounters);
    a.argv[counter_pos] = ncount;
    a.lens[counter_pos] = strlen(ncount);

    int rc = redisAppendCommandArgv(st->ctx, (int)a.count, a.argv, a.lens) == REDIS_OK ? 0 : -1;
    json_decref(fields);
    argv_release(&a);
    if (rc == 0)
        rc = note_reply(st, true);
    return rc;
}

int store_queue_outbox_ack(store_t *st, int32_t partition, const char *id)
{
    return store_queue_outbox_acks(st, partition, &id, 1);
}

int store_queue_outbox_acks(store_t *st, int32_t partition, const char *const *ids, size_t n)
{
    if (n == 0)
        return 0;
    if (store_ensure_connected(st) < 0)
        return -1;
    char key[STORE_KEY_MAX];
    store_key_partition(st, key, partition, "outbox");
    argv_buf_t a = {0};
    int rc = argv_push_str(&a, "HDEL") | argv_push_str(&a, key);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = argv_push_str(&a, ids[i]);
    if (rc == 0)
        rc = redisAppendCommandArgv(st->ctx, (int)a.count, a.argv, a.lens) == REDIS_OK ? 0 : -1;
    argv_release(&a);
    return rc == 0 ? note_reply(st, false) : -1;
}

static store_status_t classify(store_t *st, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR)
        return STORE_OK;
    if (strncmp(r->str, "EXISTS", 6) == 0)
        return STORE_EXISTS;
    if (strncmp(r->str, "FENCED", 6) == 0)
        return STORE_FENCED;
    if (strncmp(r->str, "CONFLICT", 8) == 0)
        return STORE_CONFLICT;
    set_error(st, "redis: %s", r->str);
    return STORE_ERROR;
}

int store_flush(store_t *st, store_status_t *results)
{
    size_t nreplies = st->queued_replies, ti = 0;
    int rc = 0;
    bool lost = false;
    for (size_t i = 0; i < nreplies; i++) {
        bool is_transition = st->reply_is_transition[i];
        redisReply *r = NULL;
        if (!lost && (!st->ctx || redisGetReply(st->ctx, (void **)&r) != REDIS_OK || !r)) {
            set_error(st, "redis: %s", st->ctx ? st->ctx->errstr : "not connected");
            lost = true;
            rc = -1;
        }
        if (is_transition)
            results[ti++] = lost ? STORE_ERROR : classify(st, r);
        else if (!lost && r->type == REDIS_REPLY_ERROR)
            log_warn("outbox acknowledgement failed: %s", r->str);
        if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
            lost = true, rc = -1; /* the script cache was flushed: reconnect reloads it */
        freeReplyObject(r);
    }
    st->queued_replies = st->queued_transitions = 0;
    if (lost && st->ctx) {
        redisFree(st->ctx);
        st->ctx = NULL;
    }
    return rc;
}
