/* test_store_model.c - the differential test of the store model (issue #15): the same
 * random sequences of store-port calls (storeport.h) go to the real store (store.c over
 * the fixture's redis-server) and to the simulation's model of it (tests/sim/simstore.c),
 * and the two must answer alike and hold the same data.
 *
 * Compared, after every round read (touched sagas, every outbox and epoch) and in full
 * every SM_FULL_CHECK_OPS operations and at the end:
 * - every call's return: queue_transition, queue_outbox_acks, discard_partition (the
 *   count), send, receive, and flush (store_flush on the real store; on the model, which
 *   has no flush, send + receive as store_flush does them); the result of every
 *   transition by position (OK / EXISTS / FENCED / CONFLICT / ERROR);
 * - per saga ever written or tried: its hash, every field, as JSON objects of strings
 *   (HGETALL against simstore_saga_fields), so its version; its history (LRANGE against
 *   simstore_saga_history; the history cap is small so that trimming runs); its
 *   membership of the four status indexes (ZSCORE against simstore_saga_indexed);
 * - per partition: the outbox (HGETALL against simstore_outbox_count/at, as sets: a Redis
 *   hash has no order) and the epoch (GET against simstore_epoch);
 * - what the synchronous calls return: take_epoch, read_epoch, ping, load_partition (the
 *   sagas' fields in order: the model follows ZRANGE's, by score then id),
 *   load_outbox (as a set), read_statuses and the three definition calls; and that each
 *   is refused by both while a round is in flight or acknowledgements are queued.
 *
 * Not compared, by design (simstore.h, "Not modeled"): the counters hash; retention (the
 * store runs with retention_ms 0: nothing expires, no ZREMRANGEBYSCORE); member records;
 * the owner hash take_epoch writes (the model keeps the owner but shows it to no reader);
 * the index scores themselves (the model does not show them: load_partition's order
 * checks them); lost connections and killed clients (the model's faults are driven by the
 * simulated world through its hooks; store.c's own handling is test_store's); when
 * replies arrive (replies_arriving is timing).
 *
 * Known differences outside what the engine can write, so not generated here:
 * - a transition with more than about 4,000 outbox entries or 8,000 history entries:
 *   the transition script's unpack() exceeds Lua's stack ("too many results to unpack"),
 *   Redis fails the whole call after writing the transitions before it (and the hash and
 *   history of the failing one: a script is not transactional), and store.c reports each
 *   as STORE_ERROR, outcome unknown, as store.h allows; the model writes it all, OK. The
 *   engine writes at most DEFN_MAX_STEPS commands and an outcome per transition.
 * - index scores beyond 2^53 (Redis keeps doubles, the model int64): scores are epoch ms.
 * Where a round is cut into script calls (STORE_MAX_BATCH) cannot be seen from outside:
 * calls of different partitions touch different keys, and of two calls of one partition
 * under different epochs at most one passes the epoch check.
 *
 * The operations: sagas of the simulation's definitions (sim_defs.h), built and driven by
 * the coordinator's own code (saga_new, machine_start, replies, timers, abort, retry,
 * skip, saga_decode_fields to reload one in doubt) with the engine's outbox entries
 * (commands, outcomes) and random ones (a small pool of ids, so that entries are
 * overwritten, acknowledged and written again); sagas whose status the test forces, so
 * that every move between the indexes happens, and transitions that name another old
 * status than the stored one; creates of existing ids (EXISTS), wrong expected versions
 * (CONFLICT), stale, absent and future epochs (FENCED); epochs taken between rounds;
 * acknowledgements under current and stale epochs, of unknown ids, of a whole outbox, of
 * more ids than one script call takes; discards; transitions queued for the next round
 * while one is in flight; rare rounds of more transitions of one partition than one
 * script call takes; three partitions and one written to but never owned (its epoch key
 * never exists); two connections (an owner and a second coordinator or zombie), whose
 * rounds never overlap in Redis: while one connection's round is in flight, the other
 * only queues (Redis could run a second client's commands before or after that round, an
 * order the model cannot know).
 *
 * Leases (membership=redis) have their own scripted test, leases_agree_with_redis: take
 * with a new epoch, refused "HELD by" another, taken again by the holder (a reload),
 * heartbeats (held flags and the alive set), release by owner only, leave, and a write
 * after a release FENCED by the lease check, on both; with a lease long enough that
 * Redis's real clock never expires one (expiry by time is the simulation's, on its clock).
 *
 * SAGA_STORE_MODEL_SEED=N replays a run (the seed is printed first, a new one each run
 * otherwise); SAGA_STORE_MODEL_OPS=N sets the number of operations (SM_DEFAULT_OPS). */
#include "clusterstore.h"
#include "fixture.h"
#include "machine.h"
#include "rcfixture.h"
#include "rediscluster.h"
#include "rkeys.h"
#include "sim_defs.h"
#include "simstore.h"
#include "store.h"
#include "storeport.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SM_DEFAULT_OPS 12000       /* operations per run (SAGA_STORE_MODEL_OPS) */
#define SM_PARTITIONS 3            /* partitions whose epochs are taken */
#define SM_UNOWNED SM_PARTITIONS   /* one more, written to but never owned: always FENCED */
#define SM_ALL (SM_PARTITIONS + 1)
#define SM_CONNS 2                 /* the owner (most operations) and a second writer */
#define SM_HISTORY_CAP 6           /* small: histories are trimmed often */
#define SM_LIVE_MAX 10             /* unfinished sagas the machine drives per partition */
#define SM_TRACKED_MAX 30          /* sagas kept in memory per partition */
#define SM_FULL_CHECK_OPS 1500     /* every saga compared this often */
#define SM_BULK_PER_MILLE 1        /* operations that queue a round larger than a call */
#define SM_BULK_MIN 260            /* > STORE_MAX_BATCH (256) */
#define SM_BULK_SPREAD 40
#define SM_ACK_BULK 1100           /* > STORE_ACKS_PER_CALL (1000) */
#define SM_OUTBOX_POOL 24          /* ids of the random outbox entries, per partition */
#define SM_CHECK_CHUNK 256         /* sagas compared per pipeline */
#define SM_ID_LEN 48
#define SM_TEXT_MAX 160            /* shown of a value that differs */
#define SM_START_MS INT64_C(1700000000000)
#define SM_LEASE_MS 600000         /* the lease test's: Redis's clock never expires one in it */
#define SM_ALIVE_MAX 8

/* --- the run's state ------------------------------------------------------------------ */

typedef enum {
    TK_CREATE = 0,     /* a new saga, expected version 0 */
    TK_CREATE_DUP,     /* a create of an id already written (or tried) */
    TK_NEXT,           /* a machine event, the version memory expects */
    TK_WRONG_VERSION,  /* the saga as memory holds it, another expected version */
    TK_FORCED,         /* a status set by the test, the version memory expects */
    TK_COUNT
} tkind_t;

static const char *const TK_NAMES[TK_COUNT] = {"create", "create of an existing id",
                                               "machine event", "wrong version",
                                               "forced status"};

typedef enum {
    OP_TRANSITION = 0,
    OP_BULK,
    OP_ACKS,
    OP_DISCARD,
    OP_SEND,
    OP_RECEIVE,
    OP_FLUSH,
    OP_TAKE_EPOCH,
    OP_READ_EPOCH,
    OP_PING,
    OP_LOAD_PARTITION,
    OP_LOAD_OUTBOX,
    OP_READ_STATUSES,
    OP_DEFINITIONS,
    OP_COUNT
} op_t;

static const char *const OP_NAMES[OP_COUNT] = {
    "queue transition", "queue bulk round", "queue acknowledgements", "discard partition",
    "send",             "receive",          "flush",                  "take epoch",
    "read epoch",       "ping",             "load partition",         "load outbox",
    "read statuses",    "definition call"};

static const char *const RESULT_NAMES[STORE_ERROR + 1] = {"OK", "EXISTS", "FENCED",
                                                          "CONFLICT", "ERROR"};

/* A saga as the test's engine holds it. */
typedef struct tracked {
    saga_t *s;          /* owned */
    int64_t now;        /* the saga's own clock */
    bool synthetic;     /* its statuses are forced by the test, not driven by the machine */
} tracked_t;

/* A saga by partition and id. */
typedef struct sref {
    int32_t partition;
    char id[SM_ID_LEN];
} sref_t;

/* One transition of a round, by position. */
typedef struct slot {
    sref_t ref;
    tkind_t kind;
    bool stale;         /* queued under an epoch other than the partition's latest */
    bool temp;          /* written from a throwaway state: memory expects it to fail */
} slot_t;

typedef struct round {
    slot_t *v;
    size_t n, cap;
} round_t;

/* One client: the real store and a model connection, given the same calls. */
typedef struct side {
    store_t *st;                  /* one Redis; or NULL and cs: */
    clusterstore_t *cs;           /* a Redis Cluster (the store_model_cluster suite) */
    store_port_t real, model;
    simstore_conn_t *mc;
    round_t open, sent;
    bool in_flight;
    bool acks_queued;   /* in the open round: synchronous calls are refused */
    char owner[16];
} side_t;

typedef struct world {
    uint64_t seed, rng, mrng;
    size_t op, nops;
    op_t kind;
    redis_fixture_t redis;
    redisContext *rc;
    rcfixture_t cluster;          /* the store_model_cluster suite: instead of redis */
    rcluster_t *router;           /* its checking reads, each to its key's primary */
    redisContext **pending;       /* where each checking command was appended, in order */
    size_t npending, pending_cap, pending_at;
    rkeys_t keys;
    simstore_t *db;
    side_t side[SM_CONNS];
    definition_t *defs[3];
    definition_t *others[2];      /* order@1 with other content, order@2 */
    tracked_t *tracked[SM_ALL];
    size_t ntracked[SM_ALL], tracked_cap[SM_ALL];
    sref_t *known;                /* every saga written or tried */
    size_t nknown, known_cap;
    int64_t epoch[SM_ALL];        /* the latest taken */
    int64_t clock;                /* new sagas start here */
    unsigned next_id;
    size_t ops[OP_COUNT];
    size_t results[TK_COUNT][STORE_ERROR + 1];
    size_t stale_results[STORE_ERROR + 1];
    size_t unchanged, odd_old_status, refused, ack_ids, reloads, undecodable, rounds;
    size_t full_checks, sagas_compared, loaded_sagas, loaded_entries, outbox_max;
    bool full_due;
    bool exact_epoch;             /* transitions under the latest epoch only (the lease test) */
} world_t;

static world_t w;

/* The run's checks call Criterion only when they fail: under --full-stats (as ctest runs
 * the suites) every passing cr_assert is reported to the runner, thirty times the run's
 * cost for the hundreds of thousands of comparisons made here. */
#define SM_FAIL(fmt, ...)                                                                  \
    cr_assert_fail("seed %" PRIu64 ", operation %zu (%s; replay: SAGA_STORE_MODEL_SEED=%"   \
                   PRIu64 " SAGA_STORE_MODEL_OPS=%zu): " fmt, w.seed, w.op,               \
                   OP_NAMES[w.kind], w.seed, w.nops, ##__VA_ARGS__)
#define SM_EXPECT(cond, fmt, ...)                                                          \
    do {                                                                                   \
        if (!(cond))                                                                       \
            SM_FAIL(fmt, ##__VA_ARGS__);                                                   \
    } while (0)

/* Prints a line on stderr, whatever Criterion's verbosity: the seed and the counts. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[store model] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t rnd(void)
{
    uint64_t z = (w.rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

static bool chance(unsigned percent)
{
    return below(100) < percent;
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    p = realloc(p, n * size);
    SM_EXPECT(p, "out of memory");
    *cap = n;
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    SM_EXPECT(d, "out of memory");
    return d;
}

/* --- setup ---------------------------------------------------------------------------- */

static definition_t *load_def(const char *text)
{
    defn_errors_t errs = {0};
    definition_t *d = definition_load_string(text, strlen(text), "test_store_model", &errs);
    defn_errors_release(&errs);
    cr_assert_not_null(d, "a test definition does not load");
    return d;
}

/* Another content under order@1, and order@2: put_definition's first-writer-wins. */
static const char OTHER_ORDER_V1[] =
    "{\"name\": \"order\", \"version\": 1, \"steps\": ["
    " {\"name\": \"only\", \"topic\": \"t\","
    "  \"action\": {\"command\": \"c\", \"payload\": {}}, \"compensation\": \"none\"}]}";
static const char ORDER_V2[] =
    "{\"name\": \"order\", \"version\": 2, \"steps\": ["
    " {\"name\": \"only\", \"topic\": \"t2\","
    "  \"action\": {\"command\": \"c\", \"payload\": {}}, \"compensation\": \"none\"}]}";

/* What both suites set up: the seed, the model, the definitions; stores made by make_store. */
static void setup_world(void (*make_store)(side_t *sd))
{
    const char *env = getenv("SAGA_STORE_MODEL_SEED");
    w.seed = env && *env ? strtoull(env, NULL, 10)
                         : ((uint64_t)time(NULL) * 1000003u) ^ (uint64_t)getpid();
    env = getenv("SAGA_STORE_MODEL_OPS");
    w.nops = env && *env ? strtoull(env, NULL, 10) : SM_DEFAULT_OPS;
    say("seed %" PRIu64 ", %zu operations (replay: SAGA_STORE_MODEL_SEED=%" PRIu64 ")",
        w.seed, w.nops, w.seed);
    w.rng = w.seed;
    w.mrng = w.seed * 2654435761u | 1; /* the machine's xorshift: nonzero */
    w.clock = SM_START_MS;
    rkeys_init(&w.keys, NULL);
    simstore_config_t mcfg = {.history_cap = SM_HISTORY_CAP, .seed = w.seed | 1};
    w.db = simstore_new(&mcfg);
    cr_assert_not_null(w.db);
    for (size_t i = 0; i < SM_CONNS; i++) {
        side_t *sd = &w.side[i];
        make_store(sd);
        sd->mc = simstore_conn_new(w.db);
        cr_assert_not_null(sd->mc);
        sd->model = simstore_port(sd->mc);
        snprintf(sd->owner, sizeof sd->owner, "coordinator-%zu", i);
    }
    w.defs[0] = load_def(SIM_DEF_ORDER);
    w.defs[1] = load_def(SIM_DEF_TRANSFER);
    w.defs[2] = load_def(SIM_DEF_TRIP);
    w.others[0] = load_def(OTHER_ORDER_V1);
    w.others[1] = load_def(ORDER_V2);
}

static void teardown(void)
{
    for (size_t i = 0; i < SM_CONNS; i++) {
        store_free(w.side[i].st);
        clusterstore_free(w.side[i].cs);
        simstore_conn_free(w.side[i].mc);
        free(w.side[i].open.v);
        free(w.side[i].sent.v);
    }
    simstore_free(w.db);
    for (size_t p = 0; p < SM_ALL; p++) {
        for (size_t i = 0; i < w.ntracked[p]; i++)
            saga_free(w.tracked[p][i].s);
        free(w.tracked[p]);
    }
    free(w.known);
    for (size_t i = 0; i < 3; i++)
        definition_free(w.defs[i]);
    for (size_t i = 0; i < 2; i++)
        definition_free(w.others[i]);
    if (w.rc)
        redisFree(w.rc);
    fixture_redis_stop(&w.redis);
    rcluster_free(w.router);
    free(w.pending);
    rcfixture_stop(&w.cluster);
    memset(&w, 0, sizeof w);
}

static void make_single_store(side_t *sd)
{
    char err[256] = "";
    store_config_t cfg = {.redis = {.port = w.redis.port}, .history_cap = SM_HISTORY_CAP};
    sd->st = store_new(&cfg, err, sizeof err);
    cr_assert_not_null(sd->st, "%s", err);
    sd->real = store_port(sd->st);
}

static void setup(void)
{
    memset(&w, 0, sizeof w);
    cr_assert_eq(fixture_redis_start(&w.redis, NULL), 0, "redis-server does not start");
    w.rc = fixture_redis_connect(&w.redis);
    cr_assert_not_null(w.rc);
    setup_world(make_single_store);
}

/* The cluster suite: the same calls through the cluster store (clusterstore.c: one store
 * per primary, rounds across them, results put back in order) on three primaries, where
 * the partitions' slots {p0}..{p3} fall on all three. */
static void make_cluster_store(side_t *sd)
{
    char err[256] = "";
    store_config_t cfg = {.redis = {.cluster = true, .cluster_nodes = w.cluster.seeds},
                          .history_cap = SM_HISTORY_CAP};
    sd->cs = clusterstore_new(&cfg, err, sizeof err);
    cr_assert_not_null(sd->cs, "%s", err);
    sd->real = clusterstore_port(sd->cs);
}

static void setup_cluster(void)
{
    memset(&w, 0, sizeof w);
    cr_assert_eq(rcfixture_start(&w.cluster, 3, 0, NULL), 0, "the cluster does not start");
    redisconn_config_t rc = {.cluster = true, .cluster_nodes = w.cluster.seeds};
    w.router = rcluster_new(&rc);
    cr_assert(w.router && rcluster_ensure_map(w.router) == 0, "%s",
              w.router ? rcluster_last_error(w.router) : "out of memory");
    setup_world(make_cluster_store);
}

TestSuite(store_model, .init = setup, .fini = teardown);
TestSuite(store_model_cluster, .init = setup_cluster, .fini = teardown);

/* --- the registry of sagas and the memory --------------------------------------------- */

static bool known_has(int32_t p, const char *id)
{
    for (size_t i = 0; i < w.nknown; i++)
        if (w.known[i].partition == p && strcmp(w.known[i].id, id) == 0)
            return true;
    return false;
}

static void known_add(int32_t p, const char *id)
{
    if (known_has(p, id))
        return;
    w.known = grow(w.known, &w.known_cap, w.nknown + 1, sizeof *w.known);
    sref_t *k = &w.known[w.nknown++];
    k->partition = p;
    snprintf(k->id, sizeof k->id, "%s", id);
}

static tracked_t *tracked_find(int32_t p, const char *id)
{
    for (size_t i = 0; i < w.ntracked[p]; i++)
        if (strcmp(w.tracked[p][i].s->id, id) == 0)
            return &w.tracked[p][i];
    return NULL;
}

static void tracked_remove(int32_t p, tracked_t *t)
{
    saga_free(t->s);
    *t = w.tracked[p][--w.ntracked[p]];
}

static void tracked_add(int32_t p, saga_t *s, int64_t now, bool synthetic)
{
    w.tracked[p] = grow(w.tracked[p], &w.tracked_cap[p], w.ntracked[p] + 1,
                        sizeof *w.tracked[p]);
    w.tracked[p][w.ntracked[p]++] = (tracked_t){s, now, synthetic};
}

/* Unfinished sagas the machine drives in partition p. */
static size_t live_count(int32_t p)
{
    size_t n = 0;
    for (size_t i = 0; i < w.ntracked[p]; i++)
        if (!w.tracked[p][i].synthetic && !saga_status_is_terminal(w.tracked[p][i].s->status))
            n++;
    return n;
}

/* Forgets finished sagas beyond SM_TRACKED_MAX (they stay known and compared). */
static void tracked_cull(int32_t p)
{
    for (size_t i = 0; i < w.ntracked[p] && w.ntracked[p] > SM_TRACKED_MAX;)
        if (saga_status_is_terminal(w.tracked[p][i].s->status))
            tracked_remove(p, &w.tracked[p][i]);
        else
            i++;
}

static const definition_t *def_named(const char *name, const char *version)
{
    for (size_t i = 0; i < 3; i++)
        if (name && version && strcmp(w.defs[i]->name, name) == 0 &&
            w.defs[i]->version == atoi(version))
            return w.defs[i];
    return NULL;
}

/* The saga's state turned out to be in doubt: memory takes it back from the store (the
 * model's fields, compared with Redis's just before), or forgets it when never written. */
static void reload(int32_t p, const char *id)
{
    tracked_t *t = tracked_find(p, id);
    if (!t)
        return;
    const json_t *f = simstore_saga_fields(w.db, p, id);
    if (!f) {
        tracked_remove(p, t);
        return;
    }
    const definition_t *d =
        def_named(json_string_value(json_object_get(f, RKEYS_F_DEFINITION)),
                  json_string_value(json_object_get(f, RKEYS_F_DEFINITION_VERSION)));
    char why[256] = "";
    saga_t *s = d ? saga_decode_fields(f, d, why, sizeof why) : NULL;
    if (!s) {
        /* Two writers' states mixed under one version (a create of the id by another
         * writer won, then memory's next transition matched its version): the store
         * allows that, and both sides hold the same mix (compared above). Memory lets
         * the saga go. */
        tracked_remove(p, t);
        w.undecodable++;
        return;
    }
    saga_free(t->s);
    t->s = s;
    if (t->now < s->updated_at)
        t->now = s->updated_at;
    w.reloads++;
}

/* --- comparing ------------------------------------------------------------------------ */

/* Writes the first difference of two objects of strings into buf. */
static void describe_diff(const json_t *real, const json_t *model, char *buf, size_t len)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)real, key, v) {
        const json_t *m = json_object_get(model, key);
        if (!m || !json_equal(v, m)) {
            snprintf(buf, len, "field \"%s\": Redis \"%.*s\", model %s%.*s%s", key,
                     SM_TEXT_MAX, json_string_value(v) ? json_string_value(v) : "?",
                     m ? "\"" : "(none)", SM_TEXT_MAX,
                     m && json_string_value(m) ? json_string_value(m) : "", m ? "\"" : "");
            return;
        }
    }
    json_object_foreach((json_t *)model, key, v) {
        if (!json_object_get(real, key)) {
            snprintf(buf, len, "field \"%s\": Redis (none), model \"%.*s\"", key, SM_TEXT_MAX,
                     json_string_value(v) ? json_string_value(v) : "?");
            return;
        }
    }
    snprintf(buf, len, "(no difference)");
}

/* A reply to HGETALL as an object of strings (new reference). */
static json_t *reply_object(const redisReply *r)
{
    json_t *o = json_object();
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        json_object_set_new(o, r->element[i]->str,
                            json_stringn(r->element[i + 1]->str, r->element[i + 1]->len));
    return o;
}

/* Appends a checking command about key: on one Redis to w.rc; on a cluster to the primary
 * of key's slot, remembered so that next_reply reads each reply where it will come. */
static int chk_append(const char *key, const char *fmt, ...)
{
    redisContext *ctx = w.rc;
    if (w.router) {
        redisconn_t *node = rcluster_conn_for_key(w.router, key);
        if (!node || redisconn_connect(node) < 0)
            SM_FAIL("no primary for %s: %s", key, rcluster_last_error(w.router));
        ctx = redisconn_context(node);
        if (w.pending_at == w.npending)
            w.pending_at = w.npending = 0;
        if (w.npending == w.pending_cap) {
            w.pending_cap = w.pending_cap ? 2 * w.pending_cap : 256;
            w.pending = realloc(w.pending, w.pending_cap * sizeof *w.pending);
            SM_EXPECT(w.pending, "out of memory");
        }
        w.pending[w.npending++] = ctx;
    }
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAppendCommand(ctx, fmt, ap);
    va_end(ap);
    return rc;
}

static redisReply *next_reply(void)
{
    redisReply *r = NULL;
    redisContext *ctx = w.router ? w.pending[w.pending_at++] : w.rc;
    if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
        SM_FAIL("the checking connection failed: %s", ctx->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        SM_FAIL("redis: %s", r->str);
    return r;
}

static void compare_saga(const sref_t *k)
{
    redisReply *r = next_reply();
    json_t *real = reply_object(r);
    freeReplyObject(r);
    const json_t *mf = simstore_saga_fields(w.db, k->partition, k->id);
    json_t *empty = json_object();
    const json_t *model = mf ? mf : empty;
    if (!json_equal(real, model)) {
        char diff[2 * SM_TEXT_MAX + 128];
        describe_diff(real, model, diff, sizeof diff);
        SM_FAIL("saga %s (partition %d): the hashes differ (%zu fields in Redis, %zu in the "
                "model): %s", k->id, (int)k->partition, json_object_size(real),
                json_object_size(model), diff);
    }
    json_decref(real);
    json_decref(empty);

    r = next_reply();
    json_t *hist = json_array();
    for (size_t i = 0; i < r->elements; i++)
        json_array_append_new(hist, json_stringn(r->element[i]->str, r->element[i]->len));
    freeReplyObject(r);
    const json_t *mh = simstore_saga_history(w.db, k->partition, k->id);
    size_t mn = mh ? json_array_size(mh) : 0;
    if (!(mh ? json_equal(hist, mh) : json_array_size(hist) == 0)) {
        size_t i = 0;
        while (i < json_array_size(hist) && i < mn &&
               json_equal(json_array_get(hist, i), json_array_get(mh, i)))
            i++;
        SM_FAIL("saga %s (partition %d): the histories differ (%zu entries in Redis, %zu in "
                "the model), first at entry %zu: Redis %.*s, model %.*s", k->id,
                (int)k->partition, json_array_size(hist), mn, i, SM_TEXT_MAX,
                i < json_array_size(hist) ? json_string_value(json_array_get(hist, i)) : "-",
                SM_TEXT_MAX, i < mn ? json_string_value(json_array_get(mh, i)) : "-");
    }
    json_decref(hist);

    for (int x = 0; x < RKEYS_INDEX_COUNT; x++) {
        r = next_reply();
        bool real_in = r->type != REDIS_REPLY_NIL;
        freeReplyObject(r);
        bool model_in = simstore_saga_indexed(w.db, k->partition, k->id, (rkeys_index_t)x);
        SM_EXPECT(real_in == model_in, "saga %s (partition %d): in the %s index: Redis %s, "
                  "model %s", k->id, (int)k->partition, rkeys_index_name((rkeys_index_t)x),
                  real_in ? "yes" : "no", model_in ? "yes" : "no");
    }
}

/* Compares the hash, history and index membership of each of n sagas (in pipelines). */
static void check_sagas(const sref_t *v, size_t n)
{
    char key[RKEYS_KEY_MAX];
    for (size_t from = 0; from < n; from += SM_CHECK_CHUNK) {
        size_t m = n - from < SM_CHECK_CHUNK ? n - from : SM_CHECK_CHUNK;
        for (size_t i = 0; i < m; i++) {
            const sref_t *k = &v[from + i];
            rkeys_saga(&w.keys, key, k->partition, k->id);
            int rc = chk_append(key, "HGETALL %s", key);
            rkeys_history(&w.keys, key, k->partition, k->id);
            rc |= chk_append(key, "LRANGE %s 0 -1", key);
            for (int x = 0; x < RKEYS_INDEX_COUNT; x++) {
                rkeys_index(&w.keys, key, k->partition, (rkeys_index_t)x);
                rc |= chk_append(key, "ZSCORE %s %s", key, k->id);
            }
            SM_EXPECT(rc == REDIS_OK, "cannot queue the checking commands");
        }
        for (size_t i = 0; i < m; i++)
            compare_saga(&v[from + i]);
    }
    w.sagas_compared += n;
}

/* One outbox entry, borrowed from a reply or from the model. */
typedef struct pair {
    const char *id, *value;
} pair_t;

static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : strcmp(x->value, y->value);
}

/* Compares the outbox of p in Redis (an HGETALL reply) with the model's, as sets (sorted
 * by id: a Redis hash has no order), without building JSON: this runs after every round. */
static void compare_outbox(int32_t p, const redisReply *r)
{
    size_t nr = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    size_t nm = simstore_outbox_count(w.db, p);
    pair_t *real = calloc(nr + 1, sizeof *real), *model = calloc(nm + 1, sizeof *model);
    SM_EXPECT(real && model, "out of memory");
    for (size_t i = 0; i < nr; i++)
        real[i] = (pair_t){r->element[2 * i]->str, r->element[2 * i + 1]->str};
    for (size_t i = 0; i < nm; i++)
        SM_EXPECT(simstore_outbox_at(w.db, p, i, &model[i].id, &model[i].value) == 0,
                  "simstore_outbox_at");
    qsort(real, nr, sizeof *real, pair_cmp);
    qsort(model, nm, sizeof *model, pair_cmp);
    size_t i = 0;
    while (i < nr && i < nm && pair_cmp(&real[i], &model[i]) == 0)
        i++;
    if (i < nr || i < nm)
        SM_FAIL("partition %d: the outboxes differ (%zu entries in Redis, %zu in the model), "
                "first at %zu in id order: Redis %s = \"%.*s\", model %s = \"%.*s\"", (int)p,
                nr, nm, i, i < nr ? real[i].id : "-", SM_TEXT_MAX, i < nr ? real[i].value : "",
                i < nm ? model[i].id : "-", SM_TEXT_MAX, i < nm ? model[i].value : "");
    for (i = 1; i < nm; i++)
        SM_EXPECT(strcmp(model[i - 1].id, model[i].id) != 0, "the model's outbox %d holds %s "
                  "twice", (int)p, model[i].id);
    if (nr > w.outbox_max)
        w.outbox_max = nr;
    free(real);
    free(model);
}

/* Compares every partition's outbox and epoch. */
static void check_partitions(void)
{
    char key[RKEYS_KEY_MAX];
    for (int32_t p = 0; p < SM_ALL; p++) {
        rkeys_outbox(&w.keys, key, p);
        int rc = chk_append(key, "HGETALL %s", key);
        rkeys_epoch(&w.keys, key, p);
        rc |= chk_append(key, "GET %s", key);
        SM_EXPECT(rc == REDIS_OK, "cannot queue the checking commands");
    }
    for (int32_t p = 0; p < SM_ALL; p++) {
        redisReply *r = next_reply();
        compare_outbox(p, r);
        freeReplyObject(r);
        r = next_reply();
        int64_t epoch = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
        freeReplyObject(r);
        SM_EXPECT(epoch == simstore_epoch(w.db, p), "partition %d: epoch %" PRId64
                  " in Redis, %" PRId64 " in the model", (int)p, epoch,
                  simstore_epoch(w.db, p));
    }
}

static void check_all(void)
{
    check_sagas(w.known, w.nknown);
    check_partitions();
    w.full_checks++;
    w.full_due = false;
}

static bool any_in_flight(void)
{
    for (size_t i = 0; i < SM_CONNS; i++)
        if (w.side[i].in_flight)
            return true;
    return false;
}

/* --- transitions ---------------------------------------------------------------------- */

typedef struct entries {
    outbox_entry_t *v;
    size_t n, cap;
} entries_t;

static void entries_add(entries_t *e, const char *id, const char *topic, const char *key,
                        const char *value, int32_t partition)
{
    e->v = grow(e->v, &e->cap, e->n + 1, sizeof *e->v);
    e->v[e->n++] = (outbox_entry_t){.id = xstrdup(id), .topic = xstrdup(topic),
                                    .key = xstrdup(key), .value = xstrdup(value),
                                    .partition = partition};
}

static void entries_release(entries_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        outbox_entry_release(&e->v[i]);
    free(e->v);
    memset(e, 0, sizeof *e);
}

/* Random outbox entries: ids from a small pool, values with newlines and UTF-8. */
static void entries_random(entries_t *e, const char *saga_id)
{
    static const char *const topics[] = {"inventory", "payment", "saga.outcomes", "t.x", ""};
    static const char *const values[] = {"{\"type\":\"command\"}", "line one\nline two", "",
                                         "caf\xc3\xa9 \xe2\x9c\x93", "a\n\n\nb", "{}"};
    size_t n = below(100) < 70 ? 0 : 1 + below(2);
    for (size_t i = 0; i < n; i++) {
        char id[32], key[SM_ID_LEN + 8], value[256];
        snprintf(id, sizeof id, "x/%u", (unsigned)below(SM_OUTBOX_POOL));
        snprintf(key, sizeof key, "%s", chance(70) ? saga_id : chance(50) ? "" : "k1");
        snprintf(value, sizeof value, "%s#%u", values[below(6)], (unsigned)below(1000));
        entries_add(e, id, topics[below(5)], key, value, (int32_t)below(5) - 1);
    }
    if (e->n && chance(10)) /* one id twice in one transition: the last value wins */
        entries_add(e, e->v[e->n - 1].id, "dup", saga_id, "second value", -1);
}

/* The engine's entries for a machine result (its queue_transition), plus random ones. */
static void entries_from(entries_t *e, const saga_t *s, const machine_result_t *res,
                         int64_t expected)
{
    for (size_t i = 0; i < res->command_count; i++)
        entries_add(e, res->commands[i].id, res->commands[i].topic, s->id,
                    res->commands[i].text, -1);
    if (res->outcome) {
        char id[MACHINE_COMMAND_ID_MAX];
        snprintf(id, sizeof id, "%s/outcome/%lld", s->id, (long long)expected + 1);
        char *text = json_dumps(res->outcome, JSON_COMPACT);
        SM_EXPECT(text, "out of memory");
        entries_add(e, id, "saga.outcomes", s->id, text, -1);
        free(text);
    }
    entries_random(e, s->id);
}

/* A partition to write to: now and then the one never owned. */
static int32_t pick_partition(void)
{
    return chance(3) ? SM_UNOWNED : (int32_t)below(SM_PARTITIONS);
}

/* The epoch a transition of p is written under: mostly the latest, sometimes an older
 * one, none, or one not taken yet. */
static int64_t pick_epoch(int32_t p, bool *stale)
{
    *stale = !w.exact_epoch && chance(12);
    if (!*stale)
        return w.epoch[p];
    switch (below(3)) {
    case 0:
        return w.epoch[p] > 1 ? 1 + (int64_t)below((uint64_t)w.epoch[p] - 1) : 0;
    case 1:
        return 0;
    default:
        return w.epoch[p] + 1 + (int64_t)below(2);
    }
}

/* Queues one transition on both clients and records its position. */
static void queue_both(side_t *sd, int32_t p, const saga_t *s, int64_t expected,
                       saga_status_t old_status, const json_t *history, const entries_t *e,
                       tkind_t kind, bool temp)
{
    bool stale;
    int64_t epoch = pick_epoch(p, &stale);
    store_transition_t t = {.partition = p, .epoch = epoch, .saga = s,
                            .expected_version = expected, .old_status = old_status,
                            .history = history, .outbox = e ? e->v : NULL,
                            .outbox_count = e ? e->n : 0};
    int rr = sd->real.queue_transition(sd->real.self, &t);
    int rm = sd->model.queue_transition(sd->model.self, &t);
    SM_EXPECT(rr == 0 && rm == 0, "queue_transition of saga %s: Redis %d (%s), model %d (%s)",
              s->id, rr, sd->real.last_error(sd->real.self), rm,
              sd->model.last_error(sd->model.self));
    sd->open.v = grow(sd->open.v, &sd->open.cap, sd->open.n + 1, sizeof *sd->open.v);
    slot_t *sl = &sd->open.v[sd->open.n++];
    memset(sl, 0, sizeof *sl);
    sl->ref.partition = p;
    snprintf(sl->ref.id, sizeof sl->ref.id, "%s", s->id);
    sl->kind = kind;
    sl->stale = stale;
    sl->temp = temp;
    known_add(p, s->id);
}

static void make_id(char *buf, size_t len, int32_t p)
{
    /* Sometimes an id that lives in another partition: a separate saga there. */
    if (w.nknown && chance(8)) {
        const sref_t *k = &w.known[below(w.nknown)];
        if (k->partition != p && !known_has(p, k->id)) {
            snprintf(buf, len, "%s", k->id);
            return;
        }
    }
    unsigned n = w.next_id++;
    switch (below(20)) {
    case 0:
        snprintf(buf, len, "caf\xc3\xa9 %u", n);
        break;
    case 1:
        snprintf(buf, len, "{t}%u", n);
        break;
    default:
        snprintf(buf, len, "s%u", n);
    }
}

/* A new saga started by the machine; kept in memory unless bulk. */
static void queue_create(side_t *sd, int32_t p, bool keep)
{
    char id[SM_ID_LEN];
    make_id(id, sizeof id, p);
    const definition_t *d = w.defs[below(3)];
    json_t *input = json_pack("{s:I}", "amount", (json_int_t)below(1000));
    int64_t now = w.clock;
    w.clock += (int64_t)below(3); /* equal scores now and then: ZRANGE orders by id */
    saga_t *s = saga_new(id, d, p, input, now);
    json_decref(input);
    SM_EXPECT(s, "out of memory");
    machine_env_t env = {.now_ms = now, .rng = &w.mrng, .reply_topic = "saga.input"};
    machine_result_t res;
    machine_result_init(&res);
    machine_start(s, &env, &res);
    entries_t e = {0};
    entries_from(&e, s, &res, 0);
    queue_both(sd, p, s, 0, res.old_status, res.history, &e, TK_CREATE, false);
    s->version = 1;
    entries_release(&e);
    machine_result_release(&res);
    if (keep)
        tracked_add(p, s, now, chance(15));
    else
        saga_free(s);
}

/* A create of an id already written or tried: a throwaway saga, memory untouched. */
static void queue_create_dup(side_t *sd, int32_t p)
{
    const sref_t *k = NULL;
    for (int tries = 0; tries < 8 && !k; tries++) {
        const sref_t *c = w.nknown ? &w.known[below(w.nknown)] : NULL;
        if (c && c->partition == p)
            k = c;
    }
    if (!k) {
        queue_create(sd, p, true);
        return;
    }
    /* The definition the id has in memory or in the store, so that mixes decode. */
    const tracked_t *t = tracked_find(p, k->id);
    const json_t *f = simstore_saga_fields(w.db, p, k->id);
    const definition_t *d =
        t ? t->s->def
        : f ? def_named(json_string_value(json_object_get(f, RKEYS_F_DEFINITION)),
                        json_string_value(json_object_get(f, RKEYS_F_DEFINITION_VERSION)))
            : NULL;
    saga_t *s = saga_new(k->id, d ? d : w.defs[below(3)], p, NULL, w.clock);
    SM_EXPECT(s, "out of memory");
    machine_env_t env = {.now_ms = w.clock, .rng = &w.mrng, .reply_topic = "saga.input"};
    machine_result_t res;
    machine_result_init(&res);
    machine_start(s, &env, &res);
    entries_t e = {0};
    entries_from(&e, s, &res, 0);
    queue_both(sd, p, s, 0, res.old_status, res.history, &e, TK_CREATE_DUP, true);
    entries_release(&e);
    machine_result_release(&res);
    saga_free(s);
}

/* One event for the machine; true when the saga changed. */
static bool drive(tracked_t *t, machine_result_t *res)
{
    saga_t *s = t->s;
    int candidates[DEFN_MAX_STEPS], n = 0;
    for (int i = 0; i < s->step_count; i++)
        if (s->steps[i].phase == STEP_RUNNING || s->steps[i].phase == STEP_COMPENSATING)
            candidates[n++] = i;
    t->now += (int64_t)below(30);
    machine_env_t env = {.now_ms = t->now, .rng = &w.mrng, .reply_topic = "saga.input"};
    unsigned r = (unsigned)below(100);
    if (s->status == SAGA_STUCK) {
        if (r < 50)
            machine_retry(s, &env, res);
        else
            machine_skip(s, "undone by hand", &env, res);
    } else if (n && r < 70) {
        int i = candidates[below((uint64_t)n)];
        bool comp = s->steps[i].phase == STEP_COMPENSATING;
        char out_id[32];
        snprintf(out_id, sizeof out_id, "o%u", (unsigned)below(100000));
        json_t *output = json_pack("{s:s}", "id", out_id);
        machine_reply_t reply = {.step = i,
                                 .kind = comp ? CMD_COMPENSATION : CMD_ACTION,
                                 .attempt = comp ? s->steps[i].comp_attempt : s->steps[i].attempt,
                                 .ok = chance(comp ? 55 : 75),
                                 .retryable = chance(50),
                                 .output = output,
                                 .error = "participant said no"};
        if (chance(5))
            reply.attempt++; /* a reply to an attempt never sent: nothing changes */
        machine_on_reply(s, &reply, &env, res);
        json_decref(output);
    } else if (r < 94 && machine_next_timer(s)) {
        if (t->now < machine_next_timer(s))
            t->now = machine_next_timer(s);
        env.now_ms = t->now;
        machine_on_timer(s, &env, res);
    } else {
        machine_abort(s, "aborted by the test", &env, res);
    }
    return res->changed;
}

/* A status set by the test: every move between the indexes, finished ones included. */
static void force(tracked_t *t, machine_result_t *res)
{
    saga_t *s = t->s;
    res->old_status = s->status;
    res->changed = true;
    saga_status_t now = chance(20) ? s->status : (saga_status_t)below(SAGA_STATUS_COUNT);
    t->now += (int64_t)below(30);
    s->status = now;
    s->updated_at = t->now;
    s->finished_at = saga_status_is_terminal(now) && chance(80) ? t->now : 0;
    saga_set_text(&s->error, now == SAGA_STUCK ? "forced stuck" : NULL);
    res->history = json_pack("[{s:s, s:s, s:I}]", "event", "forced", "status",
                             saga_status_name(now), "at", (json_int_t)t->now);
}

/* A random saga of p in memory, one the test forces (synthetic) or one the machine
 * drives, unfinished if asked; NULL when there is none. */
static tracked_t *pick_tracked(int32_t p, bool synthetic, bool unfinished)
{
    size_t n = w.ntracked[p];
    if (!n)
        return NULL;
    size_t from = below(n);
    for (size_t i = 0; i < n; i++) {
        tracked_t *t = &w.tracked[p][(from + i) % n];
        if (t->synthetic == synthetic &&
            (!unfinished || !saga_status_is_terminal(t->s->status)))
            return t;
    }
    return NULL;
}

/* The saga's next transition: expected version memory's (or a wrong one). */
static void queue_event(side_t *sd, int32_t p, tracked_t *t, tkind_t kind)
{
    machine_result_t res;
    machine_result_init(&res);
    saga_t *s = t->s;
    if (kind == TK_WRONG_VERSION) {
        /* A writer with a stale view: the saga as memory holds it, another version. */
        static const int64_t deltas[] = {-2, -1, 1, 2, 7};
        int64_t expected = s->version + deltas[below(5)];
        if (expected <= 0 && chance(80))
            expected = s->version + 1;
        res.old_status = s->status;
        entries_t e = {0};
        entries_random(&e, s->id);
        queue_both(sd, p, s, expected, s->status, NULL, &e, kind, true);
        entries_release(&e);
    } else {
        bool changed = kind == TK_FORCED ? (force(t, &res), true) : drive(t, &res);
        if (!changed) {
            w.unchanged++;
        } else {
            entries_t e = {0};
            entries_from(&e, s, &res, s->version);
            /* Now and then the caller names another old status than the stored one: the
             * script leaves that index, enters the new one, and the saga may stay listed
             * where it was (both must agree on that too). */
            saga_status_t old = res.old_status;
            if (chance(3)) {
                old = (saga_status_t)below(SAGA_STATUS_COUNT);
                w.odd_old_status++;
            }
            queue_both(sd, p, s, s->version, old, res.history, &e, kind, false);
            s->version++;
            entries_release(&e);
        }
    }
    machine_result_release(&res);
}

static void op_transition(side_t *sd)
{
    int32_t p = pick_partition();
    unsigned r = (unsigned)below(100);
    tracked_t *t;
    if (r < 10 && live_count(p) < SM_LIVE_MAX)
        queue_create(sd, p, true);
    else if (r < 14)
        queue_create_dup(sd, p);
    else if (r < 21 && (t = pick_tracked(p, chance(50), false)))
        queue_event(sd, p, t, TK_WRONG_VERSION);
    else if (r < 30 && (t = pick_tracked(p, true, false)))
        queue_event(sd, p, t, TK_FORCED);
    else if ((t = pick_tracked(p, false, true)))
        queue_event(sd, p, t, TK_NEXT);
    else if (live_count(p) < SM_LIVE_MAX)
        queue_create(sd, p, true);
    else
        w.unchanged++;
    tracked_cull(p);
}

/* A round of more transitions of one partition than one script call takes: creates (not
 * kept in memory), creates of existing ids, and events of the sagas in memory. */
static void op_bulk(side_t *sd)
{
    int32_t p = (int32_t)below(SM_PARTITIONS);
    size_t n = SM_BULK_MIN + below(SM_BULK_SPREAD);
    for (size_t i = 0; i < n; i++) {
        unsigned r = (unsigned)below(100);
        tracked_t *t;
        if (r < 50)
            queue_create(sd, p, false);
        else if (r < 70)
            queue_create_dup(sd, p);
        else if ((t = pick_tracked(p, false, true)))
            queue_event(sd, p, t, TK_NEXT);
        else if ((t = pick_tracked(p, true, false)))
            queue_event(sd, p, t, TK_FORCED);
    }
}

/* --- rounds --------------------------------------------------------------------------- */

/* The replies of the round sent on sd: both sides' returns and results, then the data of
 * the sagas it touched and of every partition; sagas in doubt are reloaded. */
static void settle(side_t *sd, int rr, int rm, const store_status_t *real,
                   const store_status_t *model, const char *what)
{
    SM_EXPECT(rr == rm, "%s returned %d from Redis (%s), %d from the model (%s)", what, rr,
              sd->real.last_error(sd->real.self), rm, sd->model.last_error(sd->model.self));
    SM_EXPECT(rr == 0, "%s failed on both: %s", what, sd->real.last_error(sd->real.self));
    for (size_t i = 0; i < sd->sent.n; i++) {
        const slot_t *sl = &sd->sent.v[i];
        SM_EXPECT(real[i] == model[i], "%s: transition %zu of %zu (%s of saga %s, partition "
                  "%d%s): Redis answered %s, the model %s", what, i, sd->sent.n,
                  TK_NAMES[sl->kind], sl->ref.id, (int)sl->ref.partition,
                  sl->stale ? ", another epoch" : "", RESULT_NAMES[real[i]],
                  RESULT_NAMES[model[i]]);
        w.results[sl->kind][real[i]]++;
        if (sl->stale)
            w.stale_results[real[i]]++;
    }
    sref_t *touched = calloc(sd->sent.n + 1, sizeof *touched);
    SM_EXPECT(touched, "out of memory");
    for (size_t i = 0; i < sd->sent.n; i++)
        touched[i] = sd->sent.v[i].ref;
    check_sagas(touched, sd->sent.n);
    free(touched);
    check_partitions();
    for (size_t i = 0; i < sd->sent.n; i++) {
        const slot_t *sl = &sd->sent.v[i];
        if ((real[i] == STORE_OK) == sl->temp)
            reload(sl->ref.partition, sl->ref.id);
    }
    sd->sent.n = 0;
    sd->in_flight = false;
    w.rounds++;
    if (w.full_due)
        check_all();
}

/* The open round becomes the one in flight. */
static void round_sent(side_t *sd)
{
    round_t t = sd->sent;
    sd->sent = sd->open;
    sd->open = t;
    sd->open.n = 0;
    sd->in_flight = true;
    sd->acks_queued = false;
}

static void op_send(side_t *sd)
{
    bool was = sd->in_flight;
    int rr = sd->real.send(sd->real.self);
    int rm = sd->model.send(sd->model.self);
    SM_EXPECT(rr == rm, "send returned %d from Redis (%s), %d from the model (%s)", rr,
              sd->real.last_error(sd->real.self), rm, sd->model.last_error(sd->model.self));
    SM_EXPECT(rr == (was ? -1 : 0), "send with a round %sin flight returned %d: %s",
              was ? "" : "not ", rr, sd->real.last_error(sd->real.self));
    SM_EXPECT(sd->real.in_flight(sd->real.self) && sd->model.in_flight(sd->model.self),
              "in_flight after send");
    if (was)
        w.refused++;
    else
        round_sent(sd);
}

static void op_receive(side_t *sd)
{
    size_t n = sd->sent.n + 1;
    store_status_t *real = calloc(n, sizeof *real), *model = calloc(n, sizeof *model);
    SM_EXPECT(real && model, "out of memory");
    int rr = sd->real.receive(sd->real.self, real);
    int rm = sd->model.receive(sd->model.self, model);
    SM_EXPECT(!sd->real.in_flight(sd->real.self) && !sd->model.in_flight(sd->model.self),
              "in_flight after receive");
    if (sd->in_flight) {
        settle(sd, rr, rm, real, model, "receive");
    } else {
        SM_EXPECT(rr == 0 && rm == 0, "receive with nothing in flight: Redis %d, model %d",
                  rr, rm);
    }
    free(real);
    free(model);
}

/* store_flush on the real store; the model has no flush: send + receive, as store_flush. */
static void op_flush(side_t *sd)
{
    size_t n = sd->open.n + 1;
    store_status_t *real = calloc(n, sizeof *real), *model = calloc(n, sizeof *model);
    SM_EXPECT(real && model, "out of memory");
    int rr = -1;
    if (sd->st) {
        rr = store_flush(sd->st, real);
    } else if (!sd->real.in_flight(sd->real.self)) {
        int sent = sd->real.send(sd->real.self);
        rr = sd->real.receive(sd->real.self, real) < 0 ? -1 : sent;
    }
    int rm = -1;
    if (!sd->model.in_flight(sd->model.self)) {
        int sent = sd->model.send(sd->model.self);
        rm = sd->model.receive(sd->model.self, model) < 0 ? -1 : sent;
    }
    if (sd->in_flight) {
        SM_EXPECT(rr == -1 && rm == -1, "flush with a round in flight: Redis %d, model %d",
                  rr, rm);
        w.refused++;
    } else {
        round_sent(sd);
        settle(sd, rr, rm, real, model, "flush");
    }
    free(real);
    free(model);
}

static void op_acks(side_t *sd)
{
    int32_t p = pick_partition();
    bool stale = chance(20);
    int64_t epoch = stale ? (w.epoch[p] > 1 ? (int64_t)below((uint64_t)w.epoch[p]) : 0)
                          : w.epoch[p];
    unsigned r = (unsigned)below(100);
    size_t have = simstore_outbox_count(w.db, p);
    /* None; more than one call takes; every entry (all delivered); a few. */
    bool all = r >= 4 && r < 16;
    size_t n = r < 2 ? 0 : r < 4 ? SM_ACK_BULK : all ? have : 1 + below(10);
    char **ids = calloc(n + 1, sizeof *ids);
    SM_EXPECT(ids, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        const char *id = buf, *value;
        if (all)
            SM_EXPECT(simstore_outbox_at(w.db, p, i, &id, &value) == 0,
                      "simstore_outbox_at");
        else if (have && chance(85))
            SM_EXPECT(simstore_outbox_at(w.db, p, below(have), &id, &value) == 0,
                      "simstore_outbox_at");
        else
            snprintf(buf, sizeof buf, chance(50) ? "x/%u" : "unknown/%u",
                     (unsigned)below(SM_OUTBOX_POOL));
        ids[i] = xstrdup(id);
    }
    bool refused = sd->in_flight;
    int rr = sd->real.queue_outbox_acks(sd->real.self, p, epoch, (const char *const *)ids, n);
    int rm = sd->model.queue_outbox_acks(sd->model.self, p, epoch, (const char *const *)ids, n);
    SM_EXPECT(rr == rm, "queue_outbox_acks of %zu ids returned %d from Redis (%s), %d from "
              "the model (%s)", n, rr, sd->real.last_error(sd->real.self), rm,
              sd->model.last_error(sd->model.self));
    SM_EXPECT(rr == (refused && n ? -1 : 0), "queue_outbox_acks with a round %sin flight "
              "returned %d", refused ? "" : "not ", rr);
    if (rr == 0 && n)
        sd->acks_queued = true;
    if (rr < 0)
        w.refused++;
    else
        w.ack_ids += n;
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static void op_discard(side_t *sd)
{
    /* store.h: "call it before any acknowledgement is queued in the round" (the engine
     * does). One store then can no longer discard what the acknowledgements appended; the
     * cluster store appends only the partition's own primary's, so it discards more: a
     * difference outside the contract, not tried on the cluster. */
    if (sd->cs && sd->acks_queued)
        return;
    int32_t p = pick_partition();
    int rr = sd->real.discard_partition(sd->real.self, p);
    int rm = sd->model.discard_partition(sd->model.self, p);
    SM_EXPECT(rr == rm, "discard_partition(%d) discarded %d transitions of Redis's round, %d "
              "of the model's", (int)p, rr, rm);
}

/* --- synchronous calls ---------------------------------------------------------------- */

/* Both returned the same, and refused exactly when a round is pending on sd. */
static void expect_sync(side_t *sd, int rr, int rm, const char *what)
{
    bool refused = sd->in_flight || sd->acks_queued;
    SM_EXPECT(rr == rm, "%s returned %d from Redis (%s), %d from the model (%s)", what, rr,
              sd->real.last_error(sd->real.self), rm, sd->model.last_error(sd->model.self));
    SM_EXPECT((rr < 0) == refused, "%s returned %d with %s pending: %s", what, rr,
              refused ? "a round" : "nothing", sd->real.last_error(sd->real.self));
    if (refused)
        w.refused++;
}

static void take_epoch(side_t *sd, int32_t p)
{
    int64_t er = -1, em = -1;
    int rr = sd->real.take_epoch(sd->real.self, p, sd->owner, &er);
    int rm = sd->model.take_epoch(sd->model.self, p, sd->owner, &em);
    expect_sync(sd, rr, rm, "take_epoch");
    if (rr == 0) {
        SM_EXPECT(er == em, "take_epoch(%d): Redis %" PRId64 ", model %" PRId64, (int)p, er, em);
        w.epoch[p] = er;
    }
}

static void op_take_epoch(side_t *sd)
{
    take_epoch(sd, (int32_t)below(SM_PARTITIONS));
}

static void op_read_epoch(side_t *sd)
{
    int32_t p = (int32_t)below(SM_ALL + 1); /* and one never written */
    int64_t er = -1, em = -1;
    int rr = sd->real.read_epoch(sd->real.self, p, &er);
    int rm = sd->model.read_epoch(sd->model.self, p, &em);
    expect_sync(sd, rr, rm, "read_epoch");
    SM_EXPECT(rr < 0 || er == em, "read_epoch(%d): Redis %" PRId64 ", model %" PRId64, (int)p,
              er, em);
}

static void op_ping(side_t *sd)
{
    expect_sync(sd, sd->real.ping(sd->real.self), sd->model.ping(sd->model.self), "ping");
}

static void collect_saga(const json_t *fields, void *opaque)
{
    json_array_append_new(opaque, json_deep_copy(fields));
}

static void load_partition(side_t *sd, int32_t p)
{
    json_t *real = json_array(), *model = json_array();
    int rr = sd->real.load_partition(sd->real.self, p, collect_saga, real);
    int rm = sd->model.load_partition(sd->model.self, p, collect_saga, model);
    expect_sync(sd, rr, rm, "load_partition");
    SM_EXPECT(rr < 0 || (size_t)rr == json_array_size(real), "load_partition counted %d, "
              "called back %zu times", rr, json_array_size(real));
    if (!json_equal(real, model)) {
        size_t i = 0;
        while (i < json_array_size(real) && i < json_array_size(model) &&
               json_equal(json_array_get(real, i), json_array_get(model, i)))
            i++;
        const json_t *a = json_array_get(real, i), *b = json_array_get(model, i);
        SM_FAIL("load_partition(%d): %zu sagas from Redis, %zu from the model, first "
                "difference at %zu: Redis saga %s (%s), model saga %s (%s)", (int)p,
                json_array_size(real), json_array_size(model), i,
                a ? json_string_value(json_object_get(a, "id")) : "-",
                a ? json_string_value(json_object_get(a, "status")) : "-",
                b ? json_string_value(json_object_get(b, "id")) : "-",
                b ? json_string_value(json_object_get(b, "status")) : "-");
    }
    w.loaded_sagas += json_array_size(real);
    json_decref(real);
    json_decref(model);
}

static void collect_entry(const outbox_entry_t *e, void *opaque)
{
    json_t *o = opaque;
    SM_EXPECT(!json_object_get(o, e->id), "outbox entry %s loaded twice", e->id);
    json_object_set_new(o, e->id, json_pack("[s, i, s, s]", e->topic, (int)e->partition,
                                            e->key, e->value));
}

static void load_outbox(side_t *sd, int32_t p)
{
    json_t *real = json_object(), *model = json_object();
    int rr = sd->real.load_outbox(sd->real.self, p, collect_entry, real);
    int rm = sd->model.load_outbox(sd->model.self, p, collect_entry, model);
    expect_sync(sd, rr, rm, "load_outbox");
    if (!json_equal(real, model)) {
        char *a = json_dumps(real, JSON_SORT_KEYS | JSON_COMPACT);
        char *b = json_dumps(model, JSON_SORT_KEYS | JSON_COMPACT);
        cr_log_error("load_outbox(%d): Redis %s", (int)p, a);
        cr_log_error("load_outbox(%d): model %s", (int)p, b);
        free(a);
        free(b);
        SM_FAIL("load_outbox(%d): %zu entries from Redis, %zu from the model, not the same",
                (int)p, json_object_size(real), json_object_size(model));
    }
    w.loaded_entries += json_object_size(real);
    json_decref(real);
    json_decref(model);
}

/* A partition at random, or one never written. */
static void op_load_partition(side_t *sd)
{
    load_partition(sd, (int32_t)below(SM_ALL + 1));
}

static void op_load_outbox(side_t *sd)
{
    load_outbox(sd, (int32_t)below(SM_ALL + 1));
}

static void op_read_statuses(side_t *sd)
{
    int32_t p = (int32_t)below(SM_ALL);
    size_t n = 1 + below(6);
    char ids[6][SM_ID_LEN];
    const char *ptrs[6];
    for (size_t i = 0; i < n; i++) {
        if (w.nknown && chance(85))
            snprintf(ids[i], sizeof ids[i], "%s", w.known[below(w.nknown)].id);
        else
            snprintf(ids[i], sizeof ids[i], "never-%u", (unsigned)below(100));
        ptrs[i] = ids[i];
    }
    char real[6][16], model[6][16];
    memset(real, 0, sizeof real);
    memset(model, 0, sizeof model);
    int rr = sd->real.read_statuses(sd->real.self, p, ptrs, n, real);
    int rm = sd->model.read_statuses(sd->model.self, p, ptrs, n, model);
    expect_sync(sd, rr, rm, "read_statuses");
    for (size_t i = 0; rr == 0 && i < n; i++)
        SM_EXPECT(strcmp(real[i], model[i]) == 0, "read_statuses(%d): saga %s is \"%s\" in "
                  "Redis, \"%s\" in the model", (int)p, ids[i], real[i], model[i]);
}

static void op_definitions(side_t *sd)
{
    static const char *const names[] = {"order", "trip", "transfer", "nope"};
    char hr[STORE_HASH_HEX_LEN + 1] = "", hm[STORE_HASH_HEX_LEN + 1] = "";
    int rr, rm;
    switch (below(3)) {
    case 0: {
        unsigned i = (unsigned)below(5);
        const definition_t *d = i < 3 ? w.defs[i] : w.others[i - 3];
        rr = sd->real.put_definition(sd->real.self, d, hr);
        rm = sd->model.put_definition(sd->model.self, d, hm);
        expect_sync(sd, rr, rm, "put_definition");
        SM_EXPECT(rr != 1 || strcmp(hr, hm) == 0, "put_definition(%s@%d): recorded hash %s in "
                  "Redis, %s in the model", d->name, d->version, hr, hm);
        break;
    }
    case 1: {
        const char *name = names[below(4)];
        int version = 1 + (int)below(2);
        rr = sd->real.get_definition_hash(sd->real.self, name, version, hr);
        rm = sd->model.get_definition_hash(sd->model.self, name, version, hm);
        expect_sync(sd, rr, rm, "get_definition_hash");
        SM_EXPECT(rr < 0 || strcmp(hr, hm) == 0, "get_definition_hash(%s@%d): Redis \"%s\", "
                  "model \"%s\"", name, version, hr, hm);
        break;
    }
    default: {
        const char *name = names[below(4)];
        int version = 1 + (int)below(2);
        char *jr = NULL, *jm = NULL;
        rr = sd->real.get_definition(sd->real.self, name, version, &jr, hr);
        rm = sd->model.get_definition(sd->model.self, name, version, &jm, hm);
        bool same = rr != 0 || (jr && jm && strcmp(jr, jm) == 0 && strcmp(hr, hm) == 0);
        free(jr);
        free(jm);
        expect_sync(sd, rr, rm, "get_definition");
        SM_EXPECT(same, "get_definition(%s@%d): the JSON or hash differ", name, version);
    }
    }
}

/* --- the run -------------------------------------------------------------------------- */

/* Whether op talks to Redis now (it must not while another client's round is in flight:
 * Redis could run it on either side of that round). */
static bool contacts_server(op_t op)
{
    return op != OP_TRANSITION && op != OP_BULK && op != OP_ACKS && op != OP_DISCARD;
}

static op_t pick_op(const side_t *sd)
{
    if (below(1000) < SM_BULK_PER_MILLE)
        return OP_BULK;
    unsigned weights[OP_COUNT] = {
        [OP_TRANSITION] = 46, [OP_ACKS] = 7,         [OP_DISCARD] = 2,
        [OP_SEND] = sd->in_flight ? 2 : 12,          [OP_RECEIVE] = sd->in_flight ? 22 : 1,
        [OP_FLUSH] = 6,       [OP_TAKE_EPOCH] = 2,   [OP_READ_EPOCH] = 1,
        [OP_PING] = 1,        [OP_LOAD_PARTITION] = 2, [OP_LOAD_OUTBOX] = 2,
        [OP_READ_STATUSES] = 2, [OP_DEFINITIONS] = 1};
    unsigned total = 0;
    for (int i = 0; i < OP_COUNT; i++)
        total += weights[i];
    unsigned r = (unsigned)below(total);
    for (int i = 0; i < OP_COUNT; i++) {
        if (r < weights[i])
            return (op_t)i;
        r -= weights[i];
    }
    return OP_TRANSITION;
}

static void step(void)
{
    size_t c = chance(80) ? 0 : 1;
    side_t *sd = &w.side[c], *other = &w.side[1 - c];
    op_t op = pick_op(sd);
    if (contacts_server(op) && other->in_flight) {
        sd = other; /* read the other client's replies first */
        op = OP_RECEIVE;
    }
    w.kind = op;
    w.ops[op]++;
    switch (op) {
    case OP_TRANSITION: op_transition(sd); break;
    case OP_BULK: op_bulk(sd); break;
    case OP_ACKS: op_acks(sd); break;
    case OP_DISCARD: op_discard(sd); break;
    case OP_SEND: op_send(sd); break;
    case OP_RECEIVE: op_receive(sd); break;
    case OP_FLUSH: op_flush(sd); break;
    case OP_TAKE_EPOCH: op_take_epoch(sd); break;
    case OP_READ_EPOCH: op_read_epoch(sd); break;
    case OP_PING: op_ping(sd); break;
    case OP_LOAD_PARTITION: op_load_partition(sd); break;
    case OP_LOAD_OUTBOX: op_load_outbox(sd); break;
    case OP_READ_STATUSES: op_read_statuses(sd); break;
    case OP_DEFINITIONS: op_definitions(sd); break;
    case OP_COUNT: break;
    }
    if (w.op % SM_FULL_CHECK_OPS == SM_FULL_CHECK_OPS - 1)
        w.full_due = true;
    if (w.full_due && !any_in_flight())
        check_all();
}

static void report(int64_t elapsed_ms)
{
    size_t total = 0;
    for (int i = 0; i < OP_COUNT; i++)
        total += w.ops[i];
    say("seed %" PRIu64 ": %zu operations in %.2f s, %zu rounds, %zu sagas, %zu full "
        "checks, %zu saga comparisons", w.seed, total, (double)elapsed_ms / 1000.0, w.rounds,
        w.nknown, w.full_checks, w.sagas_compared);
    for (int i = 0; i < OP_COUNT; i++)
        say("  %-24s %zu", OP_NAMES[i], w.ops[i]);
    for (int k = 0; k < TK_COUNT; k++) {
        size_t *r = w.results[k];
        say("  transitions, %-24s OK %zu, EXISTS %zu, FENCED %zu, CONFLICT %zu, ERROR %zu",
            TK_NAMES[k], r[STORE_OK], r[STORE_EXISTS], r[STORE_FENCED], r[STORE_CONFLICT],
            r[STORE_ERROR]);
    }
    size_t *s = w.stale_results;
    say("  of which under another epoch: OK %zu, EXISTS %zu, FENCED %zu, CONFLICT %zu, "
        "ERROR %zu", s[STORE_OK], s[STORE_EXISTS], s[STORE_FENCED], s[STORE_CONFLICT],
        s[STORE_ERROR]);
    say("  machine events that changed nothing %zu, another old status named %zu, sagas "
        "reloaded %zu (%zu mixed by two writers, let go), calls refused while a round was "
        "pending %zu, ids acknowledged %zu, sagas loaded %zu, outbox entries loaded %zu, "
        "largest outbox %zu", w.unchanged, w.odd_old_status, w.reloads, w.undecodable,
        w.refused, w.ack_ids, w.loaded_sagas, w.loaded_entries, w.outbox_max);
}

static void agrees(void)
{
    int64_t t0 = fixture_now_ms();
    w.kind = OP_TAKE_EPOCH;
    for (int32_t p = 0; p < SM_PARTITIONS; p++)
        take_epoch(&w.side[0], p);
    for (w.op = 0; w.op < w.nops; w.op++)
        step();
    /* The end: every round read, every open one flushed, everything compared. */
    for (size_t i = 0; i < SM_CONNS; i++) {
        w.kind = OP_RECEIVE;
        if (w.side[i].in_flight)
            op_receive(&w.side[i]);
    }
    for (size_t i = 0; i < SM_CONNS; i++) {
        w.kind = OP_FLUSH;
        op_flush(&w.side[i]);
    }
    check_all();
    for (int32_t p = 0; p < SM_ALL; p++) {
        w.kind = OP_LOAD_PARTITION;
        load_partition(&w.side[0], p);
        w.kind = OP_LOAD_OUTBOX;
        load_outbox(&w.side[0], p);
    }
    report(fixture_now_ms() - t0);
    size_t total = 0;
    for (int i = 0; i < OP_COUNT; i++)
        total += w.ops[i];
    cr_assert_geq(total, w.nops);
    if (w.nops < SM_DEFAULT_OPS / 2)
        return; /* a short replay need not meet every kind of answer */
    /* Each kind of answer did happen: a run that never fenced proves little about fences. */
    cr_assert_gt(w.results[TK_CREATE][STORE_OK] + w.results[TK_NEXT][STORE_OK], 0);
    cr_assert_gt(w.results[TK_CREATE_DUP][STORE_EXISTS], 0, "EXISTS happened");
    cr_assert_gt(w.results[TK_WRONG_VERSION][STORE_CONFLICT], 0, "CONFLICT happened");
    cr_assert_gt(w.stale_results[STORE_FENCED], 0, "FENCED happened");
}

/* --- leases (membership=redis) ----------------------------------------------------------
 * The lease scripts (take with a new epoch, HELD by another, renew by owner, release,
 * the alive set, leave) and the transition script's lease check, on both. The lease is
 * long enough that Redis's clock never expires one during the test: expiry by time is the
 * model's alone (its clock is the simulation's), checked by the simulation. */

typedef struct alive_list {
    char names[SM_ALIVE_MAX][32];
    size_t n;
} alive_list_t;

static void collect_alive(const char *instance, void *opaque)
{
    alive_list_t *l = opaque;
    if (l->n < SM_ALIVE_MAX)
        snprintf(l->names[l->n++], sizeof l->names[0], "%s", instance);
}

static int alive_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* A lease taken by sd (expect_ok) or refused as held by holder, alike on both. */
static void lease_take(side_t *sd, int32_t p, const char *holder)
{
    int64_t er = -1, em = -1;
    int rr = sd->real.take_epoch(sd->real.self, p, sd->owner, &er);
    int rm = sd->model.take_epoch(sd->model.self, p, sd->owner, &em);
    SM_EXPECT(rr == rm, "lease take of %d by %s: Redis %d (%s), model %d (%s)", (int)p,
              sd->owner, rr, sd->real.last_error(sd->real.self), rm,
              sd->model.last_error(sd->model.self));
    if (holder) {
        char want[128];
        snprintf(want, sizeof want, "redis: HELD by %s", holder);
        SM_EXPECT(rr < 0, "lease of %d taken by %s while %s holds it", (int)p, sd->owner, holder);
        SM_EXPECT(strcmp(sd->real.last_error(sd->real.self), want) == 0 &&
                  strcmp(sd->model.last_error(sd->model.self), want) == 0,
                  "refusal: Redis \"%s\", model \"%s\", expected \"%s\"",
                  sd->real.last_error(sd->real.self), sd->model.last_error(sd->model.self), want);
        return;
    }
    SM_EXPECT(rr == 0 && er == em, "lease of %d by %s: Redis %" PRId64 " (%s), model %" PRId64,
              (int)p, sd->owner, er, sd->real.last_error(sd->real.self), em);
    w.epoch[p] = er;
}

/* One heartbeat of sd renewing partitions[0..n-1]: the held flags (expected: want) and the
 * alive sets (expected: alive, sorted) agree. */
static void heartbeat(side_t *sd, const int32_t *partitions, size_t n, const bool *want,
                      const char *const *alive, size_t nalive)
{
    bool hr[SM_ALL] = {false}, hm[SM_ALL] = {false};
    alive_list_t lr = {0}, lm = {0};
    int rr = sd->real.heartbeat(sd->real.self, sd->owner, partitions, n, hr, collect_alive, &lr);
    int rm = sd->model.heartbeat(sd->model.self, sd->owner, partitions, n, hm, collect_alive,
                                 &lm);
    SM_EXPECT(rr == 0 && rm == 0, "heartbeat of %s: Redis %d (%s), model %d (%s)", sd->owner,
              rr, sd->real.last_error(sd->real.self), rm, sd->model.last_error(sd->model.self));
    for (size_t i = 0; i < n; i++)
        SM_EXPECT(hr[i] == hm[i] && hr[i] == want[i], "heartbeat of %s, partition %d: Redis "
                  "%s, model %s, expected %s", sd->owner, (int)partitions[i],
                  hr[i] ? "held" : "lost", hm[i] ? "held" : "lost", want[i] ? "held" : "lost");
    qsort(lr.names, lr.n, sizeof lr.names[0], alive_cmp);
    qsort(lm.names, lm.n, sizeof lm.names[0], alive_cmp);
    SM_EXPECT(lr.n == nalive && lm.n == nalive, "alive after %s's beat: Redis %zu, model %zu, "
              "expected %zu", sd->owner, lr.n, lm.n, nalive);
    for (size_t i = 0; i < nalive; i++)
        SM_EXPECT(strcmp(lr.names[i], alive[i]) == 0 && strcmp(lm.names[i], alive[i]) == 0,
                  "alive[%zu]: Redis %s, model %s, expected %s", i, lr.names[i], lm.names[i],
                  alive[i]);
}

static void release_lease(side_t *sd, int32_t p)
{
    int rr = sd->real.release_lease(sd->real.self, p, sd->owner);
    int rm = sd->model.release_lease(sd->model.self, p, sd->owner);
    SM_EXPECT(rr == 0 && rm == 0, "release of %d by %s: Redis %d, model %d", (int)p, sd->owner,
              rr, rm);
}

/* One create on p by sd under p's latest epoch, written: the answer agrees and is want. */
static void write_one(side_t *sd, int32_t p, store_status_t want)
{
    size_t before[STORE_ERROR + 1];
    memcpy(before, w.results[TK_CREATE], sizeof before);
    w.kind = OP_TRANSITION;
    queue_create(sd, p, false);
    w.kind = OP_FLUSH;
    op_flush(sd); /* compares the answers and the data */
    SM_EXPECT(w.results[TK_CREATE][want] == before[want] + 1, "a write to %d by %s was not "
              "answered %s", (int)p, sd->owner, RESULT_NAMES[want]);
}

static void leases_agree(void)
{
    w.exact_epoch = true;
    side_t *a = &w.side[0], *b = &w.side[1];
    for (size_t i = 0; i < SM_CONNS; i++) {
        w.side[i].real.set_lease(w.side[i].real.self, SM_LEASE_MS);
        w.side[i].model.set_lease(w.side[i].model.self, SM_LEASE_MS);
    }
    w.kind = OP_TAKE_EPOCH;
    lease_take(a, 0, NULL);
    lease_take(a, 1, NULL);
    lease_take(b, 0, a->owner); /* held: refused, the epoch unchanged */
    lease_take(b, 2, NULL);
    lease_take(a, 0, NULL);     /* a reload under its own lease: a new epoch */
    check_partitions();
    const int32_t abc[] = {0, 1, 2};
    const char *just_a[] = {a->owner}, *both[] = {a->owner, b->owner}, *just_b[] = {b->owner};
    heartbeat(a, abc, 3, (const bool[]){true, true, false}, just_a, 1);
    heartbeat(b, (const int32_t[]){0, 2}, 2, (const bool[]){false, true}, both, 2);
    write_one(a, 0, STORE_OK);      /* under its lease */
    write_one(b, 2, STORE_OK);
    release_lease(b, 0);            /* not b's: nothing happens */
    write_one(a, 0, STORE_OK);
    release_lease(a, 0);            /* a hand-over: the lease is gone, the epoch stays ... */
    write_one(a, 0, STORE_FENCED);  /* ... and a write under it is refused */
    heartbeat(a, abc, 2, (const bool[]){false, true}, both, 2);
    lease_take(b, 0, NULL);         /* free now: b takes it with a new epoch */
    write_one(b, 0, STORE_OK);
    lease_take(a, 0, b->owner);
    int ra = a->real.leave(a->real.self, a->owner), ma = a->model.leave(a->model.self, a->owner);
    SM_EXPECT(ra == 0 && ma == 0, "leave: Redis %d, model %d", ra, ma);
    heartbeat(b, abc, 3, (const bool[]){true, false, true}, just_b, 1);
    check_all();
}

Test(store_model, agrees_with_redis, .timeout = 600)
{
    agrees();
}

Test(store_model, leases_agree_with_redis, .timeout = 120)
{
    leases_agree();
}

/* The same calls through the cluster store on three primaries. */
Test(store_model_cluster, agrees_with_a_cluster, .timeout = 600)
{
    agrees();
}

Test(store_model_cluster, leases_agree_with_a_cluster, .timeout = 120)
{
    leases_agree();
}
