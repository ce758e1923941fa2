/* store.c - the Redis store: the fenced transition script, the outbox, loading, epochs
 * and definitions over the key layout of rkeys.h (see store.h). */
#include "store.h"
#include "storeport.h"

#include "log.h"
#include "rediscluster.h"
#include "redisconn.h"
#include "rkeys.h"
#include "vec.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* The transition script: every transition of one partition queued in a turn (up to
 * STORE_MAX_BATCH), applied in order in one call, so Redis pays its per-call cost
 * (script lookup, argument parsing, the AOF's MULTI/EXEC around a script's effects) once
 * per partition and turn rather than once per transition. The epoch is checked first:
 * nothing in the call can change it, so one check holds for every transition (FENCED is
 * the whole call's error). Each transition then checks its saga's version before its own
 * writes (a script is atomic but not transactional) and writes the saga's fields, its
 * history, the outbox, the counters and the status index. The reply has one status per
 * transition: "OK", or "EXISTS ..." / "CONFLICT ..." for one that wrote nothing.
 * With leases (membership=redis) the lease must still hold the epoch too: a frozen owner
 * whose lease expired changes nothing, even before another instance takes the partition.
 * KEYS: 1 epoch, 2 outbox, 3 counters, 4 lease, then per transition: saga hash, history,
 *       index left, index entered
 * ARGV: 1 epoch, 2 history cap, 3 transitions, 4 "1" when leased, then per transition: expected version
 *       (0 = create), saga id, score (ms), retention ms (>0: the saga finished and
 *       expires), then four counted lists: hash field pairs, history entries, outbox
 *       pairs, counter pairs (field, delta). */
static const char TRANSITION_SCRIPT[] =
    "local epoch = redis.call('GET', KEYS[1])\n"
    "if epoch ~= ARGV[1] then\n"
    "  return redis.error_reply('FENCED epoch is ' .. tostring(epoch) .. ', not ' .. ARGV[1])\n"
    "end\n"
    "if ARGV[4] == '1' and redis.call('GET', KEYS[4]) ~= ARGV[1] then\n"
    "  return redis.error_reply('FENCED the lease of epoch ' .. ARGV[1] .. ' expired')\n"
    "end\n"
    "local cap = tonumber(ARGV[2])\n"
    "local results = {}\n"
    "local i = 5\n"
    "for t = 0, tonumber(ARGV[3]) - 1 do\n"
    "  local k = 5 + 4 * t\n"
    "  local expected, id, score, ttl = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])\n"
    "  i = i + 4\n"
    "  local nf = tonumber(ARGV[i]); local fields = i + 1; i = fields + 2 * nf\n"
    "  local nh = tonumber(ARGV[i]); local hist = i + 1; i = hist + nh\n"
    "  local no = tonumber(ARGV[i]); local out = i + 1; i = out + 2 * no\n"
    "  local nc = tonumber(ARGV[i]); local cnt = i + 1; i = cnt + 2 * nc\n"
    "  local cur = redis.call('HGET', KEYS[k], 'version')\n"
    "  if expected == '0' and cur then\n"
    "    results[t + 1] = 'EXISTS saga ' .. id\n"
    "  elseif expected ~= '0' and cur ~= expected then\n"
    "    results[t + 1] = 'CONFLICT version is ' .. tostring(cur) .. ', not ' .. expected\n"
    "  else\n"
    "    if nf > 0 then redis.call('HSET', KEYS[k], unpack(ARGV, fields, fields + 2 * nf - 1)) end\n"
    "    if nh > 0 then\n"
    "      local len = redis.call('RPUSH', KEYS[k + 1], unpack(ARGV, hist, hist + nh - 1))\n"
    "      if len > cap then redis.call('LTRIM', KEYS[k + 1], -cap, -1) end\n"
    "    end\n"
    "    if no > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, out, out + 2 * no - 1)) end\n"
    "    for j = 0, nc - 1 do redis.call('HINCRBY', KEYS[3], ARGV[cnt + 2 * j], ARGV[cnt + 2 * j + 1]) end\n"
    "    if KEYS[k + 2] ~= KEYS[k + 3] then redis.call('ZREM', KEYS[k + 2], id) end\n"
    "    redis.call('ZADD', KEYS[k + 3], score, id)\n"
    "    if ttl > 0 then\n"
    "      redis.call('PEXPIRE', KEYS[k], ttl)\n"
    "      redis.call('PEXPIRE', KEYS[k + 1], ttl)\n"
    "      redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', '(' .. (tonumber(score) - ttl))\n"
    "    end\n"
    "    results[t + 1] = 'OK'\n"
    "  end\n"
    "end\n"
    "return results\n";

/* Transitions per script call: bounds the script's run time (each is ~10 commands), far
 * below Redis's busy threshold. */
#define STORE_MAX_BATCH 256

/* A list of strings in one growable buffer (offsets, so the buffer may move). */
typedef struct strlist {
    char *buf;
    size_t len, cap;
    struct strlist_item {
        size_t off, len;
    } *items;
    size_t count, items_cap;
} strlist_t;

/* The transitions queued for one partition and epoch, not yet appended to the pipeline. */
typedef struct batch {
    int32_t partition;
    int64_t epoch;
    size_t count;              /* transitions */
    size_t *results;           /* their positions in store_flush's results */
    size_t results_cap;
    strlist_t keys, args;      /* per transition, as the script reads them */
} batch_t;

/* One reply to read: a script call's transitions (their positions in reply_results), or
 * an outbox acknowledgement (count 0).
 *
 * A round is what store_send sends: the transitions queued since the last send (each
 * has a position, its index in the round's results) and the acknowledgements. Script
 * calls are appended to hiredis's buffer only when the round is sent (acknowledgements
 * append the open batches before themselves, to keep the order), so until then a
 * partition's transitions can still be discarded. While a round is in flight nothing is
 * appended: the replies read belong to it alone. */
typedef struct reply_slot {
    size_t first, count;
} reply_slot_t;

struct store {
    redisconn_t *conn;           /* the connection, and the last error */
    rcluster_t *cluster;         /* routed (store_new_routed): the commands on keys without
                                  * a hash tag go to their slot's primary; conn is not used
                                  * but for the last error. Borrowed. */
    rkeys_t keys;
    int64_t retention_ms;
    int history_cap;
    int timeout_ms;
    char script_sha[41];
    int wait_replicas;           /* replicas an epoch bump waits for */
    int sync_replicas;           /* replicas every round waits for */
    bool wait_sent;              /* the round in flight ends with a WAIT */
    int64_t lease_ms;            /* membership=redis: partitions are leased (0 = not) */
    size_t queued_transitions;   /* positions handed out in the open round */
    bool in_flight;              /* a round is sent and its replies are unread */
    bool send_failed;            /* the round in flight was not (all) written */
    size_t sent_transitions;     /* positions of the round in flight */
    batch_t *batches;            /* open batches, in the order opened (per partition and
                                  * epoch; a full one is followed by another) */
    size_t nbatches, batches_cap;
    reply_slot_t *replies;       /* every reply to read, in pipeline order */
    size_t queued_replies, replies_cap;
    size_t *reply_results;       /* positions in results, for the script replies */
    size_t nreply_results, reply_results_cap;
    const char **argv;           /* scratch for append_command */
    size_t *argv_lens;
    size_t argv_cap, argv_lens_cap;
    char *resp;                  /* scratch: one command in the Redis protocol */
    size_t resp_cap;
    jsonw_t scratch;             /* for saga_visit_fields */
    jsonw_t entry_scratch;       /* for history entries */
};

/* --- small helpers ---------------------------------------------------------------- */

/* The store's errors are kept on its connection, with the connection's own. */
#define set_error(st, ...) redisconn_set_error((st)->conn, __VA_ARGS__)

const char *store_last_error(const store_t *st)
{
    return redisconn_last_error(st->conn);
}

redisContext *store_context(store_t *st)
{
    return redisconn_context(st->conn);
}

const rkeys_t *store_keys(const store_t *st)
{
    return &st->keys;
}

/* A growable argv for redisAppendCommandArgv; the strings are borrowed. */
typedef struct argv_buf {
    const char **argv;
    size_t *lens;
    size_t count, cap;
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

static void argv_release(argv_buf_t *a)
{
    free(a->argv);
    free(a->lens);
    memset(a, 0, sizeof *a);
}

static int strlist_push(strlist_t *l, const char *s, size_t len)
{
    if (vec_grow((void **)&l->buf, &l->cap, l->len + len + 1, 1) < 0)
        return -1;
    if (vec_grow((void **)&l->items, &l->items_cap, l->count + 1, sizeof *l->items) < 0)
        return -1;
    memcpy(l->buf + l->len, s, len);
    l->buf[l->len + len] = '\0';
    l->items[l->count++] = (struct strlist_item){.off = l->len, .len = len};
    l->len += len + 1;
    return 0;
}

static int strlist_push_str(strlist_t *l, const char *s)
{
    return strlist_push(l, s, strlen(s));
}

static int strlist_push_int(strlist_t *l, int64_t v)
{
    char buf[JSONW_INT_MAX];
    return strlist_push(l, buf, jsonw_format_int(buf, v));
}

/* Pushes one item made of n parts joined by sep. */
static int strlist_push_joined(strlist_t *l, const char *const *parts, size_t n, char sep)
{
    size_t len = n ? n - 1 : 0, lens[8];
    for (size_t i = 0; i < n; i++)
        len += lens[i] = strlen(parts[i]);
    if (vec_grow((void **)&l->buf, &l->cap, l->len + len + 1, 1) < 0 ||
        vec_grow((void **)&l->items, &l->items_cap, l->count + 1, sizeof *l->items) < 0)
        return -1;
    char *at = l->buf + l->len;
    for (size_t i = 0; i < n; i++) {
        if (i)
            *at++ = sep;
        memcpy(at, parts[i], lens[i]);
        at += lens[i];
    }
    *at = '\0';
    l->items[l->count++] = (struct strlist_item){.off = l->len, .len = len};
    l->len += len + 1;
    return 0;
}

/* Points item i at a copy of s (for a count known only after the items it counts). */
static int strlist_patch(strlist_t *l, size_t i, const char *s)
{
    size_t len = strlen(s);
    if (vec_grow((void **)&l->buf, &l->cap, l->len + len + 1, 1) < 0)
        return -1;
    memcpy(l->buf + l->len, s, len + 1);
    l->items[i] = (struct strlist_item){.off = l->len, .len = len};
    l->len += len + 1;
    return 0;
}

static void strlist_release(strlist_t *l)
{
    free(l->buf);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Runs one command synchronously on key (its routing key; NULL: a partition's command,
 * refused by a routed store): on one Redis on the connection; on a cluster (a routed
 * store) on the primary of key's slot, following redirections. Returns the reply (caller
 * frees), or NULL: an error reply is kept as the last error, as redisconn_vcommand does.
 * Refused while the pipeline holds commands whose replies would come first. */
static redisReply *vkeyed(store_t *st, const char *key, const char *fmt, va_list ap)
{
    if (st->cluster && !key) {
        set_error(st, "redis: a partition's command on the store of the keys without a tag");
        return NULL;
    }
    if (st->in_flight || st->queued_replies) {
        set_error(st, "redis: a pipelined round is pending (store_receive first)");
        return NULL;
    }
    if (store_ensure_connected(st) < 0)
        return NULL;
    if (!st->cluster)
        return redisconn_vcommand(st->conn, fmt, ap);
    redisReply *r = rcluster_vcommand(st->cluster, key, fmt, ap);
    if (!r) {
        set_error(st, "%s", rcluster_last_error(st->cluster));
    } else if (r->type == REDIS_REPLY_ERROR) {
        set_error(st, "redis: %s", r->str);
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

static redisReply *command(store_t *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vkeyed(st, NULL, fmt, ap);
    va_end(ap);
    return r;
}

static redisReply *keyed(store_t *st, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static redisReply *keyed(store_t *st, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vkeyed(st, key, fmt, ap);
    va_end(ap);
    return r;
}

/* --- connection ------------------------------------------------------------------- */

/* Loads the transition script on a new connection (closed again when it cannot). */
static int load_script(store_t *st)
{
    redisReply *r = redisconn_command(st->conn, "SCRIPT LOAD %s", TRANSITION_SCRIPT);
    if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
        if (r)
            set_error(st, "redis: SCRIPT LOAD answered no script id");
        freeReplyObject(r);
        redisconn_drop(st->conn);
        return -1;
    }
    memcpy(st->script_sha, r->str, 40);
    st->script_sha[40] = '\0';
    freeReplyObject(r);
    return 0;
}

int store_ping(store_t *st)
{
    if (st->cluster)
        return store_ensure_connected(st);
    redisReply *r = command(st, "PING");
    freeReplyObject(r);
    return r ? 0 : -1;
}

static void batch_clear(batch_t *b)
{
    b->count = 0;
    b->keys.count = b->keys.len = b->args.count = b->args.len = 0;
}

static void drop_queued(store_t *st);

/* Drops the connection and what the open round queued for it (out of memory half-way
 * through appending to the pipeline: replies could no longer be matched). The next use
 * reconnects. */
static void reset_connection(store_t *st)
{
    redisconn_drop(st->conn);
    drop_queued(st);
}

/* Forgets what the open round queued (the connection it was for is gone). Positions
 * handed out stay taken: their transitions report STORE_ERROR when the round is read. */
static void drop_queued(store_t *st)
{
    for (size_t i = 0; i < st->batches_cap; i++)
        batch_clear(&st->batches[i]);
    st->nbatches = 0;
    st->queued_replies = st->nreply_results = 0;
}

int store_ensure_connected(store_t *st)
{
    if (st->cluster) {
        if (rcluster_ensure_map(st->cluster) == 0)
            return 0;
        set_error(st, "%s", rcluster_last_error(st->cluster));
        return -1;
    }
    /* A Sentinel's +switch-master drops the connection: between rounds, not under one. */
    if (redisconn_connected(st->conn) && (st->in_flight || !redisconn_watch(st->conn)))
        return 0;
    if (st->in_flight) {
        set_error(st, "redis: connection lost with a round in flight");
        return -1; /* store_receive reports the round and resets */
    }
    redisconn_drop(st->conn);
    drop_queued(st);
    return redisconn_connect(st->conn) < 0 ? -1 : load_script(st);
}

static store_t *store_create(const store_config_t *cfg, rcluster_t *cluster, char *err,
                             size_t errlen)
{
    store_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    redisconn_config_t rc = cfg->redis;
    st->timeout_ms = rc.command_timeout_ms > 0 ? rc.command_timeout_ms : STORE_DEFAULT_TIMEOUT_MS;
    rc.command_timeout_ms = st->timeout_ms;
    if (rc.connect_timeout_ms <= 0)
        rc.connect_timeout_ms = st->timeout_ms;
    st->conn = redisconn_new(&rc);
    if (!st->conn) {
        snprintf(err, errlen, "out of memory");
        store_free(st);
        return NULL;
    }
    rkeys_init(&st->keys, cfg->prefix);
    st->retention_ms = cfg->retention_ms;
    st->history_cap = cfg->history_cap > 0 ? cfg->history_cap : STORE_DEFAULT_HISTORY_CAP;
    st->cluster = cluster;
    if (store_ensure_connected(st) < 0) {
        snprintf(err, errlen, "%s", store_last_error(st));
        store_free(st);
        return NULL;
    }
    return st;
}

store_t *store_new(const store_config_t *cfg, char *err, size_t errlen)
{
    return store_create(cfg, NULL, err, errlen);
}

store_t *store_new_routed(const store_config_t *cfg, rcluster_t *cluster, char *err,
                          size_t errlen)
{
    return store_create(cfg, cluster, err, errlen);
}

void store_free(store_t *st)
{
    if (!st)
        return;
    redisconn_free(st->conn);
    for (size_t i = 0; i < st->batches_cap; i++) {
        free(st->batches[i].results);
        strlist_release(&st->batches[i].keys);
        strlist_release(&st->batches[i].args);
    }
    free(st->batches);
    free(st->replies);
    free(st->reply_results);
    free(st->argv);
    free(st->argv_lens);
    free(st->resp);
    jsonw_release(&st->scratch);
    jsonw_release(&st->entry_scratch);
    free(st);
}

/* --- epochs, meta, definitions ---------------------------------------------------- */

void store_set_wait_replicas(store_t *st, int replicas)
{
    st->wait_replicas = replicas;
}

void store_set_sync_replicas(store_t *st, int replicas)
{
    st->sync_replicas = replicas;
}

/* How long a WAIT blocks: half the socket's timeout, so that Redis answers (with the
 * replicas it reached) before the read gives up on the connection. */
static int wait_ms(const store_t *st)
{
    return st->timeout_ms / 2 > 0 ? st->timeout_ms / 2 : 1;
}

/* How long an epoch bump waits for its replicas: wait_ms, but with leases at most a tenth
 * of the lease (at least 10 ms), so that a primary left without replicas (a failover)
 * delays the heartbeat of the lease's other partitions, on other primaries of a
 * cluster, by little: the take fails, and is tried again. */
static int epoch_wait_ms(const store_t *st)
{
    int ms = wait_ms(st);
    if (st->lease_ms > 0 && st->lease_ms / 10 < ms)
        ms = st->lease_ms / 10 > 10 ? (int)(st->lease_ms / 10) : 10;
    return ms;
}

/* WAIT replicas epoch_wait_ms(st): waits until replicas replicas have every write made on this
 * connection. Returns 0 when they have, 1 when fewer acknowledged in time (*acked says
 * how many), -1 on a Redis error. */
static int wait_replicas(store_t *st, int replicas, long long *acked)
{
    redisReply *r = command(st, "WAIT %d %d", replicas, epoch_wait_ms(st));
    if (!r)
        return -1;
    *acked = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return *acked < replicas ? 1 : 0;
}

/* GET of an integer key: *value gets it, or missing when the key does not exist. */
static int read_int_key(store_t *st, const char *key, int64_t missing, int64_t *value)
{
    redisReply *r = command(st, "GET %s", key);
    if (!r)
        return -1;
    *value = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : missing;
    freeReplyObject(r);
    return 0;
}

int store_read_epoch(store_t *st, int32_t partition, int64_t *epoch)
{
    char key[RKEYS_KEY_MAX];
    return read_int_key(st, rkeys_epoch(&st->keys, key, partition), 0, epoch);
}

int store_read_statuses(store_t *st, int32_t partition, const char *const *ids, size_t n,
                        char (*statuses)[16])
{
    if (st->in_flight || st->queued_replies) {
        set_error(st, "redis: a pipelined round is pending (store_receive first)");
        return -1;
    }
    if (store_ensure_connected(st) < 0)
        return -1;
    redisContext *ctx = redisconn_context(st->conn);
    char key[RKEYS_KEY_MAX];
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommand(ctx, "HGET %s " RKEYS_F_STATUS,
                               rkeys_saga(&st->keys, key, partition, ids[i])) != REDIS_OK)
            goto lost;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
            goto lost;
        snprintf(statuses[i], sizeof statuses[i], "%s",
                 r->type == REDIS_REPLY_STRING ? r->str : "");
        freeReplyObject(r);
    }
    return 0;
lost:
    /* Replies may be left unread: the connection cannot be reused. */
    redisconn_lost(st->conn);
    return -1;
}

/* Takes a partition's lease (membership=redis) with a new epoch, unless another
 * instance holds it: the lease is free (expired, released, never taken) or already ours.
 * The owner record says who holds it since when (Redis's clock).
 * KEYS: 1 epoch, 2 lease, 3 owner. ARGV: 1 instance, 2 lease ms. */
static const char LEASE_TAKE_SCRIPT[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  local holder = redis.call('HGET', KEYS[3], '" RKEYS_OWNER_OWNER "')\n"
    "  if holder ~= ARGV[1] then\n"
    "    return redis.error_reply('HELD by ' .. tostring(holder))\n"
    "  end\n"
    "end\n"
    "local e = redis.call('INCR', KEYS[1])\n"
    "redis.call('SET', KEYS[2], e, 'PX', ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "redis.call('HSET', KEYS[3], '" RKEYS_OWNER_OWNER "', ARGV[1], '" RKEYS_OWNER_EPOCH "', e,\n"
    "           '" RKEYS_OWNER_SINCE "', t[1] * 1000 + math.floor(t[2] / 1000))\n"
    "return e\n";

/* Renews a lease while its owner record names the instance (the engine may have taken a
 * new epoch under it since: a reload). KEYS: 1 lease, 2 owner. ARGV: 1 instance, 2 lease
 * ms. 1 = renewed, 0 = lost. */
static const char LEASE_RENEW_SCRIPT[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 or\n"
    "   redis.call('HGET', KEYS[2], '" RKEYS_OWNER_OWNER "') ~= ARGV[1] then return 0 end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n";

/* Releases a lease its owner record says the instance holds. KEYS: 1 lease, 2 owner.
 * ARGV: 1 instance. */
static const char LEASE_RELEASE_SCRIPT[] =
    "if redis.call('HGET', KEYS[2], '" RKEYS_OWNER_OWNER "') ~= ARGV[1] then return 0 end\n"
    "return redis.call('DEL', KEYS[1])\n";

/* An instance's heartbeat: its entry in the alive set, scored by Redis's clock; entries
 * silent for a minute are trimmed. Returns the instances heard from within the lease.
 * KEYS: 1 alive. ARGV: 1 instance, 2 lease ms. */
static const char HEARTBEAT_SCRIPT[] =
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - 60000))\n"
    "return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[2]), '+inf')\n";

/* WAIT for the replicas an epoch bump must reach (store_set_wait_replicas). */
static int wait_for_replicas(store_t *st, int64_t taken, int32_t partition)
{
    if (st->wait_replicas <= 0)
        return 0;
    long long acked = 0;
    int rc = wait_replicas(st, st->wait_replicas, &acked);
    if (rc > 0)
        /* Not taken: the caller must not serve under an epoch a failover may lose. */
        set_error(st, "epoch %lld of partition %d reached %lld of %d replicas in %d ms",
                  (long long)taken, (int)partition, acked, st->wait_replicas, epoch_wait_ms(st));
    return rc == 0 ? 0 : -1;
}

void store_set_lease(store_t *st, int64_t lease_ms)
{
    st->lease_ms = lease_ms > 0 ? lease_ms : 0;
}

static int take_lease(store_t *st, int32_t partition, const char *owner, int64_t *epoch)
{
    char ekey[RKEYS_KEY_MAX], lkey[RKEYS_KEY_MAX], okey[RKEYS_KEY_MAX];
    redisReply *r = command(st, "EVAL %s 3 %s %s %s %s %lld", LEASE_TAKE_SCRIPT,
                            rkeys_epoch(&st->keys, ekey, partition),
                            rkeys_lease(&st->keys, lkey, partition),
                            rkeys_owner(&st->keys, okey, partition), owner,
                            (long long)st->lease_ms);
    if (!r)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_INTEGER) {
        *epoch = r->integer;
        rc = 0;
    } else {
        set_error(st, "partition %d: lease not taken: %s", (int)partition,
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    return rc;
}

int store_take_epoch(store_t *st, int32_t partition, const char *owner, int64_t *epoch)
{
    int64_t taken = 0;
    if (st->lease_ms > 0) {
        if (take_lease(st, partition, owner, &taken) < 0)
            return -1;
        if (wait_for_replicas(st, taken, partition) < 0)
            return -1;
        *epoch = taken;
        return 0;
    }
    char key[RKEYS_KEY_MAX], okey[RKEYS_KEY_MAX];
    rkeys_epoch(&st->keys, key, partition);
    rkeys_owner(&st->keys, okey, partition);
    redisReply *r = command(st, "INCR %s", key);
    if (!r)
        return -1;
    taken = r->integer;
    freeReplyObject(r);
    if (wait_for_replicas(st, taken, partition) < 0)
        return -1;
    r = command(st, "HSET %s " RKEYS_OWNER_OWNER " %s " RKEYS_OWNER_EPOCH " %lld " RKEYS_OWNER_SINCE
                " %lld", okey, owner, (long long)taken, (long long)time(NULL) * 1000);
    if (!r)
        return -1;
    freeReplyObject(r);
    *epoch = taken;
    return 0;
}

int store_release_lease(store_t *st, int32_t partition, const char *instance)
{
    char lkey[RKEYS_KEY_MAX], okey[RKEYS_KEY_MAX];
    redisReply *r = command(st, "EVAL %s 2 %s %s %s", LEASE_RELEASE_SCRIPT,
                            rkeys_lease(&st->keys, lkey, partition),
                            rkeys_owner(&st->keys, okey, partition), instance);
    freeReplyObject(r);
    return r ? 0 : -1;
}

/* Reads the replies of n lease renewals appended to ctx into held. Returns 0, or -1 when
 * the connection was lost; *readonly is set when the server was a replica. */
static int read_renewals(redisContext *ctx, size_t n, bool *held, bool *readonly)
{
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
            return -1;
        held[i] = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        *readonly |= redisconn_reply_readonly(r);
        freeReplyObject(r);
    }
    return 0;
}

/* Calls fn for each instance of the alive script's reply r. Returns 0, or -1 (reason set). */
static int deliver_alive(store_t *st, const redisReply *r, store_alive_fn fn, void *opaque)
{
    if (r->type != REDIS_REPLY_ARRAY) {
        set_error(st, "heartbeat: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            fn(r->element[i]->str, opaque);
    return 0;
}

int store_heartbeat(store_t *st, const char *instance, const int32_t *partitions, size_t n,
                    bool *held, store_alive_fn fn, void *opaque)
{
    if (st->in_flight || st->queued_replies) {
        set_error(st, "redis: a pipelined round is pending (store_receive first)");
        return -1;
    }
    char key[RKEYS_KEY_MAX];
    long long lease = (long long)st->lease_ms;
    rkeys_alive(&st->keys, key);
    if (st->cluster) {
        /* The alive set alone: the leases live on their partitions' primaries. */
        if (n) {
            set_error(st, "heartbeat: a routed store renews no lease");
            return -1;
        }
        redisReply *r = keyed(st, key, "EVAL %s 1 %s %s %lld", HEARTBEAT_SCRIPT, key, instance, lease);
        int rc = r ? deliver_alive(st, r, fn, opaque) : -1;
        freeReplyObject(r);
        return rc;
    }
    if (store_ensure_connected(st) < 0)
        return -1;
    redisContext *ctx = redisconn_context(st->conn);
    if (fn && redisAppendCommand(ctx, "EVAL %s 1 %s %s %lld", HEARTBEAT_SCRIPT, key, instance,
                                 lease) != REDIS_OK)
        goto lost;
    char okey[RKEYS_KEY_MAX];
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommand(ctx, "EVAL %s 2 %s %s %s %lld", LEASE_RENEW_SCRIPT,
                               rkeys_lease(&st->keys, key, partitions[i]),
                               rkeys_owner(&st->keys, okey, partitions[i]), instance,
                               lease) != REDIS_OK)
            goto lost;
    int rc = 0;
    bool readonly = false;
    if (fn) {
        redisReply *r = NULL;
        if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
            goto lost;
        rc = deliver_alive(st, r, fn, opaque);
        readonly = redisconn_reply_readonly(r);
        freeReplyObject(r);
    }
    if (read_renewals(ctx, n, held, &readonly) < 0)
        goto lost;
    if (readonly)
        redisconn_drop(st->conn); /* a replica now (a failover): the next beat asks again */
    return rc;
lost:
    redisconn_lost(st->conn); /* replies may be left unread */
    return -1;
}

int store_leave(store_t *st, const char *instance)
{
    char key[RKEYS_KEY_MAX];
    rkeys_alive(&st->keys, key);
    redisReply *r = keyed(st, key, "ZREM %s %s", key, instance);
    freeReplyObject(r);
    return r ? 0 : -1;
}

/* --- input positions kept with the state --------------------------------------------- */

/* Sets a partition's next input offset while the writer's epoch is the partition's.
 * KEYS: 1 epoch, 2 position. ARGV: 1 epoch, 2 offset. */
static const char POSITION_SCRIPT[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end\n"
    "redis.call('SET', KEYS[2], ARGV[2])\n"
    "return 1\n";

int store_read_position(store_t *st, int32_t partition, int64_t *offset)
{
    char key[RKEYS_KEY_MAX];
    return read_int_key(st, rkeys_position(&st->keys, key, partition), -1, offset);
}

int store_put_meta(store_t *st, int partitions, int *routing_partitions)
{
    char key[RKEYS_KEY_MAX];
    rkeys_meta(&st->keys, key);
    redisReply *r = keyed(st, key, "HSET %s " RKEYS_META_LAYOUT_VERSION " %d " RKEYS_META_PARTITIONS
                          " %d", key, RKEYS_LAYOUT_VERSION, partitions);
    if (!r)
        return -1;
    freeReplyObject(r);
    /* The first writer fixes the routing count for good (route.h). */
    r = keyed(st, key, "HSETNX %s " RKEYS_META_ROUTING_PARTITIONS " %d", key, partitions);
    if (!r)
        return -1;
    freeReplyObject(r);
    r = keyed(st, key, "HGET %s " RKEYS_META_ROUTING_PARTITIONS, key);
    if (!r)
        return -1;
    int n = r->type == REDIS_REPLY_STRING ? atoi(r->str) : 0;
    freeReplyObject(r);
    if (n < 1) {
        set_error(st, "redis: %s " RKEYS_META_ROUTING_PARTITIONS " is not a positive integer", key);
        return -1;
    }
    *routing_partitions = n;
    return 0;
}

/* Copies a string reply of at most STORE_HASH_HEX_LEN bytes into hash. */
static void copy_hash(const redisReply *r, char *hash)
{
    snprintf(hash, STORE_HASH_HEX_LEN + 1, "%s",
             r && r->type == REDIS_REPLY_STRING ? r->str : "");
}

int store_put_definition(store_t *st, const definition_t *d, char *existing)
{
    char key[RKEYS_KEY_MAX], hkey[RKEYS_KEY_MAX], field[DEFN_MAX_NAME_LEN + 32];
    rkeys_definitions(&st->keys, key);
    rkeys_definition_hashes(&st->keys, hkey);
    rkeys_definition_field(field, sizeof field, d->name, d->version);
    /* The hash first: it decides, atomically, which content owns NAME@VERSION. */
    redisReply *r = keyed(st, hkey, "HSETNX %s %s %s", hkey, field, d->content_hash);
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
    r = keyed(st, key, "HSET %s %s %s", key, field, text);
    free(text);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

int store_get_definition_hash(store_t *st, const char *name, int version, char *hash)
{
    char hkey[RKEYS_KEY_MAX], field[DEFN_MAX_NAME_LEN + 32];
    rkeys_definition_hashes(&st->keys, hkey);
    rkeys_definition_field(field, sizeof field, name, version);
    redisReply *r = keyed(st, hkey, "HGET %s %s", hkey, field);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_STRING ? 0 : 1;
    copy_hash(r, hash);
    freeReplyObject(r);
    return rc;
}

int store_get_definition(store_t *st, const char *name, int version, char **json, char *hash)
{
    char key[RKEYS_KEY_MAX], hkey[RKEYS_KEY_MAX], field[DEFN_MAX_NAME_LEN + 32];
    rkeys_definitions(&st->keys, key);
    rkeys_definition_hashes(&st->keys, hkey);
    rkeys_definition_field(field, sizeof field, name, version);
    *json = NULL;
    hash[0] = '\0';
    redisReply *r = keyed(st, key, "HGET %s %s", key, field);
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
    r = keyed(st, hkey, "HGET %s %s", hkey, field);
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
    redisContext *ctx = redisconn_context(st->conn);
    char key[RKEYS_KEY_MAX];
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommand(ctx, "HGETALL %s", rkeys_saga(&st->keys, key, partition,
                                                              ids[i]->str)) != REDIS_OK)
            return -1;
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
            return -1;
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
    int total = 0;
    for (int k = 0; k < RKEYS_INDEX_ACTIVE_COUNT; k++) {
        char key[RKEYS_KEY_MAX];
        redisReply *ids = command(st, "ZRANGE %s 0 -1",
                                  rkeys_index(&st->keys, key, partition, (rkeys_index_t)k));
        if (!ids)
            return -1;
        for (size_t i = 0; i < ids->elements; i += STORE_LOAD_CHUNK) {
            size_t n = ids->elements - i < STORE_LOAD_CHUNK ? ids->elements - i : STORE_LOAD_CHUNK;
            int c = load_chunk(st, partition, ids->element + i, n, fn, opaque);
            if (c < 0) {
                freeReplyObject(ids);
                redisconn_lost(st->conn); /* replies may be left unread */
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
    char key[RKEYS_KEY_MAX];
    long long acked;
    /* The outbox is sent again from here: what a round's WAIT did not confirm must reach
     * the replicas first (a round that fell short leaves its writes on the primary). */
    int waited = st->sync_replicas > 0 ? wait_replicas(st, st->sync_replicas, &acked) : 0;
    if (waited != 0) {
        if (waited > 0)
            set_error(st, "partition %d: the writes reached %lld of %d replicas in %d ms "
                      "(redis_sync_replicas)", (int)partition, acked, st->sync_replicas,
                      wait_ms(st));
        return -1;
    }
    redisReply *r = command(st, "HGETALL %s", rkeys_outbox(&st->keys, key, partition));
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

/* Appends one command to the pipeline, written in the Redis protocol here (hiredis's
 * redisAppendCommandArgv formats each argument with its printf-like sdscatfmt, a tenth of
 * the coordinator's instructions for the transition script's hundreds of arguments). */
static int append_command(store_t *st, size_t argc, const char *const *argv, const size_t *lens)
{
    size_t need = 2 * JSONW_INT_MAX + argc * (JSONW_INT_MAX + 8); /* headers, CRLFs */
    for (size_t i = 0; i < argc; i++)
        need += lens[i];
    if (vec_grow((void **)&st->resp, &st->resp_cap, need, 1) < 0)
        return -1;
    char *at = st->resp;
    *at++ = '*';
    at += jsonw_format_int(at, (int64_t)argc);
    *at++ = '\r', *at++ = '\n';
    for (size_t i = 0; i < argc; i++) {
        *at++ = '$';
        at += jsonw_format_int(at, (int64_t)lens[i]);
        *at++ = '\r', *at++ = '\n';
        memcpy(at, argv[i], lens[i]);
        at += lens[i];
        *at++ = '\r', *at++ = '\n';
    }
    return redisAppendFormattedCommand(redisconn_context(st->conn), st->resp, (size_t)(at - st->resp)) == REDIS_OK
               ? 0
               : -1;
}

static int note_reply(store_t *st, size_t first, size_t count)
{
    if (vec_grow((void **)&st->replies, &st->replies_cap, st->queued_replies + 1,
             sizeof *st->replies) < 0)
        return -1;
    st->replies[st->queued_replies++] = (reply_slot_t){.first = first, .count = count};
    return 0;
}

bool store_in_flight(const store_t *st)
{
    return st->in_flight;
}

/* Appends one script call with the batch's transitions to the pipeline and empties it
 * (it stays allocated for the next turn). */
static int emit_batch(store_t *st, batch_t *b)
{
    if (b->count == 0)
        return 0;
    char k_epoch[RKEYS_KEY_MAX], k_out[RKEYS_KEY_MAX], k_cnt[RKEYS_KEY_MAX],
        k_lease[RKEYS_KEY_MAX], epoch[24], cap[24], count[24], nkeys[24];
    rkeys_epoch(&st->keys, k_epoch, b->partition);
    rkeys_outbox(&st->keys, k_out, b->partition);
    rkeys_counters(&st->keys, k_cnt, b->partition);
    rkeys_lease(&st->keys, k_lease, b->partition);
    snprintf(epoch, sizeof epoch, "%" PRId64, b->epoch);
    snprintf(cap, sizeof cap, "%d", st->history_cap);
    snprintf(count, sizeof count, "%zu", b->count);
    snprintf(nkeys, sizeof nkeys, "%zu", 4 + b->keys.count);
    const char *head[] = {"EVALSHA", st->script_sha, nkeys, k_epoch, k_out, k_cnt, k_lease};
    const char *mid[] = {epoch, cap, count, st->lease_ms > 0 ? "1" : "0"};
    size_t nhead = sizeof head / sizeof *head, nmid = sizeof mid / sizeof *mid;
    size_t argc = nhead + b->keys.count + nmid + b->args.count;
    if (vec_grow((void **)&st->argv, &st->argv_cap, argc, sizeof *st->argv) < 0 ||
        vec_grow((void **)&st->argv_lens, &st->argv_lens_cap, argc, sizeof *st->argv_lens) < 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < nhead; i++, n++)
        st->argv[n] = head[i], st->argv_lens[n] = strlen(head[i]);
    for (size_t i = 0; i < b->keys.count; i++, n++)
        st->argv[n] = b->keys.buf + b->keys.items[i].off, st->argv_lens[n] = b->keys.items[i].len;
    for (size_t i = 0; i < nmid; i++, n++)
        st->argv[n] = mid[i], st->argv_lens[n] = strlen(mid[i]);
    for (size_t i = 0; i < b->args.count; i++, n++)
        st->argv[n] = b->args.buf + b->args.items[i].off, st->argv_lens[n] = b->args.items[i].len;
    if (append_command(st, argc, st->argv, st->argv_lens) < 0)
        return -1;
    if (vec_grow((void **)&st->reply_results, &st->reply_results_cap, st->nreply_results + b->count,
             sizeof *st->reply_results) < 0 ||
        note_reply(st, st->nreply_results, b->count) < 0)
        return -1;
    memcpy(st->reply_results + st->nreply_results, b->results, b->count * sizeof *b->results);
    st->nreply_results += b->count;
    batch_clear(b);
    return 0;
}

/* Appends every open batch to the pipeline, in the order they were opened. */
static int emit_batches(store_t *st)
{
    int rc = 0;
    for (size_t i = 0; i < st->nbatches && rc == 0; i++)
        if (emit_batch(st, &st->batches[i]) < 0)
            rc = -1;
    st->nbatches = 0;
    if (rc < 0)
        reset_connection(st); /* the pipeline may hold a call without its reply slot */
    return rc;
}

/* The open batch of partition and epoch with room, opened when there is none (after a
 * full one: the script calls run in the order the batches were opened). NULL when out of
 * memory. */
static batch_t *batch_for(store_t *st, int32_t partition, int64_t epoch)
{
    batch_t *b = NULL;
    for (size_t i = st->nbatches; i-- > 0 && !b;)
        if (st->batches[i].partition == partition && st->batches[i].epoch == epoch &&
            st->batches[i].count < STORE_MAX_BATCH)
            b = &st->batches[i];
    if (!b) {
        size_t cap = st->batches_cap;
        if (vec_grow((void **)&st->batches, &cap, st->nbatches + 1, sizeof *st->batches) < 0)
            return NULL;
        /* Batches keep their buffers between turns: new slots start empty. */
        memset(st->batches + st->batches_cap, 0, (cap - st->batches_cap) * sizeof *st->batches);
        st->batches_cap = cap;
        b = &st->batches[st->nbatches++];
        b->partition = partition;
        b->epoch = epoch;
    }
    if (vec_grow((void **)&b->results, &b->results_cap, b->count + 1, sizeof *b->results) < 0)
        return NULL;
    return b;
}

/* Counter changes of a transition: totals per definition and a gauge per active status.
 * Pushes the count, then the pairs. */
static int push_counters(strlist_t *a, const store_transition_t *t)
{
    const char *def = t->saga->def->name;
    bool created = t->expected_version == 0;
    saga_status_t now = t->saga->status;
    const char *names[4], *deltas[4];
    const char *statuses[4];
    size_t n = 0;
    if (created) {
        names[n] = RKEYS_COUNTER_STARTED, statuses[n] = NULL, deltas[n++] = "1";
    }
    /* The totals of completed, compensated and stuck are named after the status. */
    if (created || t->old_status != now) {
        if (!created && !saga_status_is_terminal(t->old_status))
            names[n] = RKEYS_COUNTER_ACTIVE, statuses[n] = saga_status_name(t->old_status),
            deltas[n++] = "-1";
        if (saga_status_is_terminal(now) || now == SAGA_STUCK)
            names[n] = saga_status_name(now), statuses[n] = NULL, deltas[n++] = "1";
        if (!saga_status_is_terminal(now))
            names[n] = RKEYS_COUNTER_ACTIVE, statuses[n] = saga_status_name(now), deltas[n++] = "1";
    }
    int rc = strlist_push_int(a, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        const char *field[] = {def, names[i], statuses[i]};
        rc |= strlist_push_joined(a, field, statuses[i] ? 3 : 2, ':');
        rc |= strlist_push_str(a, deltas[i]);
    }
    return rc;
}

typedef struct field_ctx {
    strlist_t *args;
    int64_t expected_version;
    size_t count;
} field_ctx_t;

/* Pushes one hash field pair (a saga_field_fn). */
static int push_field(const char *name, const char *value, size_t len, void *opaque)
{
    field_ctx_t *fc = opaque;
    char version[24];
    if (strcmp(name, RKEYS_F_VERSION) == 0) {
        /* The version written is always the one after expected, whatever the saga says. */
        len = (size_t)snprintf(version, sizeof version, "%" PRId64, fc->expected_version + 1);
        value = version;
    }
    fc->count++;
    return strlist_push_str(fc->args, name) | strlist_push(fc->args, value, len);
}

int store_queue_transition(store_t *st, const store_transition_t *t)
{
    if (!st->in_flight && store_ensure_connected(st) < 0)
        return -1;
    batch_t *b = batch_for(st, t->partition, t->epoch);
    if (!b)
        return -1;
    const saga_t *s = t->saga;
    /* Pushed onto the batch in place; on failure the batch is cut back to where it was. */
    size_t keys_count = b->keys.count, keys_len = b->keys.len;
    size_t args_count = b->args.count, args_len = b->args.len;
    char key[RKEYS_KEY_MAX];
    const rkeys_t *k = &st->keys;
    int rc = 0;
    rc |= strlist_push_str(&b->keys, rkeys_saga(k, key, t->partition, s->id));
    rc |= strlist_push_str(&b->keys, rkeys_history(k, key, t->partition, s->id));
    saga_status_t left = t->expected_version ? t->old_status : s->status;
    rc |= strlist_push_str(&b->keys, rkeys_index(k, key, t->partition, rkeys_index_of(left)));
    rc |= strlist_push_str(&b->keys, rkeys_index(k, key, t->partition, rkeys_index_of(s->status)));

    bool finished = saga_status_is_terminal(s->status);
    strlist_t *a = &b->args;
    rc |= strlist_push_int(a, t->expected_version);
    rc |= strlist_push_str(a, s->id);
    rc |= strlist_push_int(a, finished && s->finished_at ? s->finished_at : s->updated_at);
    rc |= strlist_push_int(a, finished ? st->retention_ms : 0);

    /* A create writes every field; a later transition only those that can change (the
     * version check proves the hash, and so its fixed fields, is there). */
    field_ctx_t fc = {.args = a, .expected_version = t->expected_version};
    size_t count_at = a->count;
    rc |= strlist_push(a, "", 0); /* the count, patched below */
    rc |= saga_visit_fields(s, t->expected_version == 0, &st->scratch, push_field, &fc);
    char nfields[24];
    snprintf(nfields, sizeof nfields, "%zu", fc.count);
    if (rc == 0)
        rc = strlist_patch(a, count_at, nfields);

    size_t nh = t->history ? json_array_size(t->history) : 0;
    rc |= strlist_push_int(a, (int64_t)nh);
    for (size_t i = 0; i < nh; i++) {
        jsonw_reset(&st->entry_scratch);
        jsonw_value(&st->entry_scratch, json_array_get(t->history, i));
        rc |= st->entry_scratch.failed
                  ? -1
                  : strlist_push(a, st->entry_scratch.buf, st->entry_scratch.len);
    }

    rc |= strlist_push_int(a, (int64_t)t->outbox_count);
    for (size_t i = 0; i < t->outbox_count; i++) {
        const outbox_entry_t *e = &t->outbox[i];
        rc |= strlist_push_str(a, e->id);
        char part[JSONW_INT_MAX];
        jsonw_format_int(part, e->partition);
        const char *value[] = {e->topic, part, e->key, e->value}; /* as docs/redis.md says */
        rc |= strlist_push_joined(a, value, 4, '\n');
    }
    rc |= push_counters(a, t);
    if (rc != 0) {
        b->keys.count = keys_count, b->keys.len = keys_len;
        b->args.count = args_count, b->args.len = args_len;
        return -1;
    }
    b->results[b->count++] = st->queued_transitions++;
    return 0;
}

/* Removes delivered entries from a partition's outbox, only while the writer's epoch is
 * the partition's: a zombie's acknowledgements change nothing. */
static const char OUTBOX_ACK_SCRIPT[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end\n"
    "return redis.call('HDEL', KEYS[2], unpack(ARGV, 2))";

#define STORE_ACKS_PER_CALL 1000 /* ids per script call: Lua's unpack has a stack limit */

/* Before a call appended to the open round after its transitions (acknowledgements,
 * positions): none may be added with a round in flight (what names it in the error); the
 * open batches go first, since Redis runs the pipeline in order. Returns 0 or -1. */
static int append_after_transitions(store_t *st, const char *what)
{
    if (st->in_flight) {
        set_error(st, "redis: %s queued with a round in flight", what);
        return -1;
    }
    if (store_ensure_connected(st) < 0)
        return -1;
    return emit_batches(st);
}

int store_queue_outbox_acks(store_t *st, int32_t partition, int64_t epoch,
                            const char *const *ids, size_t n)
{
    if (n == 0)
        return 0;
    if (append_after_transitions(st, "acknowledgements") < 0)
        return -1;
    char ekey[RKEYS_KEY_MAX], okey[RKEYS_KEY_MAX], ep[24];
    rkeys_epoch(&st->keys, ekey, partition);
    rkeys_outbox(&st->keys, okey, partition);
    snprintf(ep, sizeof ep, "%lld", (long long)epoch);
    int rc = 0;
    for (size_t from = 0; rc == 0 && from < n; from += STORE_ACKS_PER_CALL) {
        size_t count = n - from < STORE_ACKS_PER_CALL ? n - from : STORE_ACKS_PER_CALL;
        argv_buf_t a = {0};
        rc = argv_push_str(&a, "EVAL") | argv_push_str(&a, OUTBOX_ACK_SCRIPT) |
             argv_push_str(&a, "2") | argv_push_str(&a, ekey) | argv_push_str(&a, okey) |
             argv_push_str(&a, ep);
        for (size_t i = 0; rc == 0 && i < count; i++)
            rc = argv_push_str(&a, ids[from + i]);
        if (rc == 0)
            rc = append_command(st, a.count, a.argv, a.lens);
        argv_release(&a);
        if (rc == 0)
            rc = note_reply(st, 0, 0);
    }
    if (rc < 0)
        reset_connection(st);
    return rc;
}

int store_queue_position(store_t *st, int32_t partition, int64_t epoch, int64_t offset)
{
    if (append_after_transitions(st, "a position") < 0)
        return -1;
    char ekey[RKEYS_KEY_MAX], pkey[RKEYS_KEY_MAX], ep[24], off[24];
    snprintf(ep, sizeof ep, "%lld", (long long)epoch);
    snprintf(off, sizeof off, "%lld", (long long)offset);
    const char *argv[] = {"EVAL", POSITION_SCRIPT, "2", rkeys_epoch(&st->keys, ekey, partition),
                          rkeys_position(&st->keys, pkey, partition), ep, off};
    size_t lens[sizeof argv / sizeof *argv];
    for (size_t i = 0; i < sizeof argv / sizeof *argv; i++)
        lens[i] = strlen(argv[i]);
    if (append_command(st, sizeof argv / sizeof *argv, argv, lens) < 0 ||
        note_reply(st, 0, 0) < 0) {
        reset_connection(st);
        return -1;
    }
    return 0;
}

int store_discard_partition(store_t *st, int32_t partition)
{
    size_t discarded = 0;
    for (size_t i = 0; i < st->nbatches; i++)
        if (st->batches[i].partition == partition) {
            discarded += st->batches[i].count;
            batch_clear(&st->batches[i]);
        }
    return (int)discarded;
}

/* The status of a transition from its script's answer ("OK", "EXISTS ...", ...), or of
 * every transition of a call that failed as a whole (an error reply). */
static store_status_t classify(store_t *st, const redisReply *r)
{
    bool error = r->type == REDIS_REPLY_ERROR;
    if (!error && r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_STRING) {
        set_error(st, "redis: unexpected reply type %d to a transition", r->type);
        return STORE_ERROR;
    }
    if (strcmp(r->str, "OK") == 0 && !error)
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

int store_send(store_t *st)
{
    if (st->in_flight) {
        set_error(st, "redis: a round is already in flight");
        return -1;
    }
    int rc = 0;
    st->in_flight = true;
    st->sent_transitions = st->queued_transitions;
    st->queued_transitions = 0;
    redisContext *ctx = redisconn_context(st->conn);
    if (!ctx) {
        set_error(st, "redis: not connected");
        drop_queued(st);
        st->send_failed = true;
        return -1;
    }
    if (emit_batches(st) < 0) {
        set_error(st, "redis: cannot queue a script call (out of memory)");
        st->send_failed = true; /* the pipeline holds part of the round: start afresh */
        return -1;
    }
    /* The round counts once sync_replicas replicas have it: WAIT, read last. */
    if (st->sync_replicas > 0 && st->nreply_results > 0) {
        if (redisAppendCommand(ctx, "WAIT %d %d", st->sync_replicas, wait_ms(st)) != REDIS_OK) {
            set_error(st, "redis: cannot queue WAIT (out of memory)");
            st->send_failed = true;
            return -1;
        }
        st->wait_sent = true;
    }
    /* Write it all now (loopback: the socket takes it), so Redis works while we do. */
    int done = 0;
    while ((ctx = redisconn_context(st->conn)) && st->queued_replies && !done) {
        if (redisBufferWrite(ctx, &done) != REDIS_OK) {
            set_error(st, "redis: %s", ctx->errstr);
            st->send_failed = true;
            rc = -1;
            break;
        }
    }
    return rc;
}

bool store_pending(const store_t *st)
{
    return st->in_flight || st->queued_replies;
}

bool store_replies_arriving(const store_t *st)
{
    if (!st->in_flight)
        return false;
    if (!st->queued_replies && !st->wait_sent)
        return true; /* nothing to wait for: store_receive returns at once */
    const redisContext *ctx = redisconn_context(st->conn);
    if (!ctx || st->send_failed)
        return true; /* store_receive reports it at once */
    if (ctx->reader && ctx->reader->len > ctx->reader->pos)
        return true;
    struct pollfd pfd = {.fd = ctx->fd, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0;
}

/* Reads the WAIT that ends the round in flight: when fewer replicas than sync_replicas
 * acknowledged it, every transition of the round is STORE_ERROR (written on the primary,
 * but a failover may lose it). Returns 0, or -1 when the connection was lost. */
static int receive_wait(store_t *st, store_status_t *results)
{
    redisReply *r = NULL;
    redisContext *ctx = redisconn_context(st->conn);
    if (!ctx || redisGetReply(ctx, (void **)&r) != REDIS_OK || !r) {
        set_error(st, "redis: %s", ctx ? ctx->errstr : "not connected");
        return -1;
    }
    long long acked = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (acked < st->sync_replicas) {
        if (acked < 0)
            set_error(st, "redis: WAIT: %s", r->type == REDIS_REPLY_ERROR ? r->str : "not a number");
        else
            set_error(st, "a round reached %lld of %d replicas in %d ms (redis_sync_replicas): "
                      "not confirmed", acked, st->sync_replicas, wait_ms(st));
        for (size_t i = 0; i < st->sent_transitions; i++)
            results[i] = STORE_ERROR;
    }
    freeReplyObject(r);
    return 0;
}

int store_receive(store_t *st, store_status_t *results)
{
    if (!st->in_flight)
        return 0;
    int rc = st->send_failed ? -1 : 0;
    bool lost = st->send_failed;
    /* Transitions that never made it into the pipeline stay STORE_ERROR. */
    for (size_t i = 0; i < st->sent_transitions; i++)
        results[i] = STORE_ERROR;
    for (size_t i = 0; i < st->queued_replies; i++) {
        const reply_slot_t *slot = &st->replies[i];
        const size_t *pos = st->reply_results + slot->first;
        redisReply *r = NULL;
        redisContext *ctx = redisconn_context(st->conn);
        if (!lost && (!ctx || redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)) {
            set_error(st, "redis: %s", ctx ? ctx->errstr : "not connected");
            lost = true;
            rc = -1;
        }
        if (lost) {
            /* results already STORE_ERROR */
        } else if (slot->count && r->type == REDIS_REPLY_ARRAY && r->elements == slot->count) {
            for (size_t k = 0; k < slot->count; k++)
                results[pos[k]] = classify(st, r->element[k]);
        } else if (slot->count) {
            store_status_t all = r->type == REDIS_REPLY_ARRAY ? STORE_ERROR : classify(st, r);
            if (r->type == REDIS_REPLY_ARRAY)
                set_error(st, "redis: %zu results to %zu transitions", r->elements, slot->count);
            for (size_t k = 0; k < slot->count; k++)
                results[pos[k]] = all;
        } else if (r->type == REDIS_REPLY_ERROR) {
            log_warn("outbox acknowledgement failed: %s", r->str);
        }
        if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
            lost = true, rc = -1; /* the script cache was flushed: reconnect reloads it */
        if (redisconn_reply_readonly(r))
            lost = true, rc = -1; /* a replica now (failover): reconnecting finds the primary */
        freeReplyObject(r);
    }
    if (st->wait_sent && !lost && receive_wait(st, results) < 0)
        lost = true, rc = -1;
    st->wait_sent = false;
    st->queued_replies = st->nreply_results = 0;
    st->in_flight = st->send_failed = false;
    st->sent_transitions = 0;
    if (lost && redisconn_context(st->conn)) {
        redisconn_drop(st->conn);
        drop_queued(st); /* the open round's batches were for that connection too */
    }
    return rc;
}

int store_flush(store_t *st, store_status_t *results)
{
    if (st->in_flight)
        return -1;
    int rc = store_send(st);
    return store_receive(st, results) < 0 ? -1 : rc;
}

/* --- member records (docs/redis.md, "Member records") ----------------------------- */

/* Reads the replies of n commands appended to the pipeline. Returns 0, or -1 with the
 * reason set when one was an error, or when the connection was lost or the server is a
 * replica now (READONLY) (then it is dropped: the next use reconnects). */
static int read_appended(store_t *st, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        redisContext *ctx = redisconn_context(st->conn);
        if (!ctx || redisGetReply(ctx, (void **)&r) != REDIS_OK || !r) {
            freeReplyObject(r);
            redisconn_lost(st->conn);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            set_error(st, "redis: %s", r->str);
            rc = -1;
        }
        bool readonly = redisconn_reply_readonly(r);
        freeReplyObject(r);
        if (readonly) {
            /* A replica now (failover): its other replies are not worth reading. */
            redisconn_drop(st->conn);
            return -1;
        }
    }
    return rc;
}

/* Appends argv to the pipeline; on failure (out of memory) the connection is dropped, as
 * the replies could no longer be matched. Returns 0 or -1. */
static int append_argv(store_t *st, int argc, const char **argv)
{
    redisContext *ctx = redisconn_context(st->conn);
    if (ctx && redisAppendCommandArgv(ctx, argc, argv, NULL) == REDIS_OK)
        return 0;
    set_error(st, "redis: cannot queue a command (out of memory)");
    redisconn_drop(st->conn);
    return -1;
}

/* Runs n commands in one pipeline: on st's connection, or on a cluster (a routed store)
 * one pipeline per primary, each command to its key's. Returns 0, or -1 with the reason
 * set when one failed. */
static int run_pipeline(store_t *st, const rcluster_cmd_t *cmds, size_t n)
{
    if (!st->cluster) {
        for (size_t i = 0; i < n; i++)
            if (append_argv(st, cmds[i].argc, cmds[i].argv) < 0)
                return -1;
        return read_appended(st, n);
    }
    redisReply *replies[8];
    if (n > sizeof replies / sizeof *replies) {
        set_error(st, "redis: too many commands for one pipeline");
        return -1;
    }
    int rc = rcluster_pipeline(st->cluster, cmds, n, replies);
    if (rc < 0)
        set_error(st, "%s", rcluster_last_error(st->cluster));
    for (size_t i = 0; i < n; i++) {
        if (replies[i] && replies[i]->type == REDIS_REPLY_ERROR) {
            set_error(st, "redis: %s", replies[i]->str);
            rc = -1;
        }
        freeReplyObject(replies[i]);
    }
    return rc;
}

/* The member commands run outside rounds: refused while one is queued or in flight. */
static int member_ready(store_t *st)
{
    if (st->in_flight || st->queued_replies) {
        set_error(st, "redis: a pipelined round is pending (store_receive first)");
        return -1;
    }
    return store_ensure_connected(st);
}

int store_put_member(store_t *st, const store_member_t *m)
{
    if (member_ready(st) < 0)
        return -1;
    char key[RKEYS_KEY_MAX], index[RKEYS_KEY_MAX], pid[JSONW_INT_MAX], started[JSONW_INT_MAX];
    char seen[JSONW_INT_MAX], ttl[JSONW_INT_MAX], oldest[JSONW_INT_MAX];
    rkeys_member(store_keys(st), key, m->instance);
    rkeys_members(store_keys(st), index);
    jsonw_format_int(pid, m->pid);
    jsonw_format_int(started, m->started_at);
    jsonw_format_int(seen, m->last_seen);
    jsonw_format_int(ttl, m->ttl_ms);
    snprintf(oldest, sizeof oldest, "(%lld", (long long)(m->last_seen - STORE_MEMBER_INDEX_KEEP_MS));
    const char *hset[] = {"HSET", key,
                          "instance", m->instance,
                          "host", m->host ? m->host : "",
                          "pid", pid,
                          "http", m->http ? m->http : "",
                          "started_at", started,
                          "last_seen", seen,
                          "partitions", m->partitions ? m->partitions : "",
                          "partitions_json", m->partitions_json ? m->partitions_json : "[]",
                          "version", m->version};
    int hset_argc = (int)(sizeof hset / sizeof *hset) - (m->version ? 0 : 2);
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char *expire[] = {"PEXPIRE", key, ttl};
    const char *zadd[] = {"ZADD", index, seen, m->instance};
    const char *trim[] = {"ZREMRANGEBYSCORE", index, "-inf", oldest};
    const rcluster_cmd_t cmds[] = {{key, 1, multi, NULL},  {key, hset_argc, hset, NULL},
                                   {key, 3, expire, NULL}, {key, 1, exec, NULL},
                                   {index, 4, zadd, NULL}, {index, 4, trim, NULL}};
    return run_pipeline(st, cmds, sizeof cmds / sizeof *cmds);
}

int store_drop_member(store_t *st, const char *instance)
{
    if (member_ready(st) < 0)
        return -1;
    char key[RKEYS_KEY_MAX], index[RKEYS_KEY_MAX];
    rkeys_member(store_keys(st), key, instance);
    rkeys_members(store_keys(st), index);
    const char *del[] = {"DEL", key};
    const char *zrem[] = {"ZREM", index, instance};
    const rcluster_cmd_t cmds[] = {{key, 2, del, NULL}, {index, 3, zrem, NULL}};
    return run_pipeline(st, cmds, sizeof cmds / sizeof *cmds);
}

/* --- the store port (storeport.h) ------------------------------------------------- */

static int port_ensure_connected(void *s) { return store_ensure_connected(s); }
static const char *port_last_error(void *s) { return store_last_error(s); }
static int port_ping(void *s) { return store_ping(s); }
static int port_take_epoch(void *s, int32_t p, const char *owner, int64_t *epoch)
{
    return store_take_epoch(s, p, owner, epoch);
}
static int port_read_epoch(void *s, int32_t p, int64_t *epoch) { return store_read_epoch(s, p, epoch); }
static int port_load_partition(void *s, int32_t p, store_saga_fn fn, void *opaque)
{
    return store_load_partition(s, p, fn, opaque);
}
static int port_load_outbox(void *s, int32_t p, store_outbox_fn fn, void *opaque)
{
    return store_load_outbox(s, p, fn, opaque);
}
static int port_read_statuses(void *s, int32_t p, const char *const *ids, size_t n,
                              char (*statuses)[16])
{
    return store_read_statuses(s, p, ids, n, statuses);
}
static int port_queue_transition(void *s, const store_transition_t *t)
{
    return store_queue_transition(s, t);
}
static int port_queue_outbox_acks(void *s, int32_t p, int64_t epoch, const char *const *ids,
                                  size_t n)
{
    return store_queue_outbox_acks(s, p, epoch, ids, n);
}
static int port_discard_partition(void *s, int32_t p) { return store_discard_partition(s, p); }
static int port_queue_position(void *s, int32_t p, int64_t epoch, int64_t offset)
{
    return store_queue_position(s, p, epoch, offset);
}
static int port_read_position(void *s, int32_t p, int64_t *offset)
{
    return store_read_position(s, p, offset);
}
static int port_send(void *s) { return store_send(s); }
static bool port_in_flight(void *s) { return store_in_flight(s); }
static bool port_replies_arriving(void *s) { return store_replies_arriving(s); }
static int port_receive(void *s, store_status_t *results) { return store_receive(s, results); }
static int port_put_definition(void *s, const definition_t *d, char *existing)
{
    return store_put_definition(s, d, existing);
}
static int port_get_definition_hash(void *s, const char *name, int version, char *hash)
{
    return store_get_definition_hash(s, name, version, hash);
}
static int port_get_definition(void *s, const char *name, int version, char **json, char *hash)
{
    return store_get_definition(s, name, version, json, hash);
}
static int port_put_member(void *s, const store_member_t *m) { return store_put_member(s, m); }
static int port_drop_member(void *s, const char *instance) { return store_drop_member(s, instance); }
static void port_set_lease(void *s, int64_t lease_ms) { store_set_lease(s, lease_ms); }
static int port_heartbeat(void *s, const char *instance, const int32_t *partitions, size_t n,
                          bool *held, store_alive_fn fn, void *opaque)
{
    return store_heartbeat(s, instance, partitions, n, held, fn, opaque);
}
static int port_release_lease(void *s, int32_t p, const char *instance)
{
    return store_release_lease(s, p, instance);
}
static int port_leave(void *s, const char *instance) { return store_leave(s, instance); }

store_port_t store_port(store_t *st)
{
    return (store_port_t){.self = st,
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
