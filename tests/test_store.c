/* test_store.c - the Redis store against a real redis-server: the fenced transition
 * script (created, EXISTS, CONFLICT, FENCED), the documented keys it writes, the outbox,
 * retention, and loading a partition back for recovery. */
#include "fixture.h"
#include "machine.h"
#include "store.h"

#include <criterion/criterion.h>
#include <string.h>

static const char DEF[] =
    "{\"name\": \"pay\", \"version\": 3, \"steps\": ["
    " {\"name\": \"charge\", \"topic\": \"payment\","
    "  \"action\": {\"command\": \"charge\", \"payload\": {\"id\": \"{{saga.id}}\"}},"
    "  \"compensation\": {\"command\": \"refund\", \"payload\": {\"id\": \"{{saga.id}}\"}}}]}";

static redis_fixture_t redis;
static store_t *st;
static redisContext *rc;
static definition_t *def;
static uint64_t rng = 7;

static void setup(void)
{
    cr_assert_eq(fixture_redis_start(&redis, NULL), 0);
    rc = fixture_redis_connect(&redis);
    char err[256] = "";
    store_config_t cfg = {.redis = {.port = redis.port}, .retention_ms = 60000};
    st = store_new(&cfg, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    defn_errors_t errs = {0};
    def = definition_load_string(DEF, strlen(DEF), "pay.json", &errs);
    defn_errors_release(&errs);
    cr_assert_not_null(def);
}

static void teardown(void)
{
    definition_free(def);
    store_free(st);
    if (rc)
        redisFree(rc);
    fixture_redis_stop(&redis);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

static redisReply *cmd(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(rc, fmt, arg);
    cr_assert_not_null(r);
    return r;
}

static const char *hget(const char *key, const char *field, char *buf, size_t len)
{
    redisReply *r = redisCommand(rc, "HGET %s %s", key, field);
    snprintf(buf, len, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return buf;
}

/* Writes one transition and flushes; returns its status. */
static store_status_t write_one(saga_t *s, machine_result_t *res, int64_t epoch,
                                int64_t expected, outbox_entry_t *out, size_t nout)
{
    store_transition_t t = {.partition = 2, .epoch = epoch, .saga = s,
                            .expected_version = expected, .old_status = res->old_status,
                            .history = res->history, .outbox = out, .outbox_count = nout};
    cr_assert_eq(store_queue_transition(st, &t), 0);
    store_status_t result = STORE_ERROR;
    cr_assert_eq(store_flush(st, &result), 0);
    if (result == STORE_OK)
        s->version = expected + 1;
    return result;
}

Test(store, transition_writes_the_documented_keys_and_is_fenced)
{
    int64_t epoch;
    cr_assert_eq(store_take_epoch(st, 2, "test-a", &epoch), 0);
    cr_assert_eq(epoch, 1);
    json_t *input = json_pack("{s:i}", "amount", 5);
    saga_t *s = saga_new("s-1", def, 2, input, 1000);
    json_decref(input);
    machine_env_t env = {.now_ms = 1000, .rng = &rng, .reply_topic = "in"};
    machine_result_t res;
    machine_result_init(&res);
    machine_start(s, &env, &res);
    outbox_entry_t out = {.id = "s-1/charge/action/1", .topic = "payment", .key = "s-1",
                          .value = "{\"type\":\"command\"}", .partition = -1};
    cr_assert_eq(write_one(s, &res, epoch, 0, &out, 1), STORE_OK);

    char buf[4096];
    cr_assert_str_eq(hget("saga:{p2}:saga:s-1", "status", buf, sizeof buf), "running");
    cr_assert_str_eq(hget("saga:{p2}:saga:s-1", "definition", buf, sizeof buf), "pay");
    cr_assert_str_eq(hget("saga:{p2}:saga:s-1", "definition_version", buf, sizeof buf), "3");
    cr_assert_str_eq(hget("saga:{p2}:saga:s-1", "version", buf, sizeof buf), "1");
    cr_assert_str_eq(hget("saga:{p2}:saga:s-1", "partition", buf, sizeof buf), "2");
    cr_assert_str_eq(hget("saga:{p2}:saga:s-1", "step", buf, sizeof buf), "charge");
    cr_assert_str_eq(hget("saga:{p2}:counters", "pay:started", buf, sizeof buf), "1");
    cr_assert_str_eq(hget("saga:{p2}:counters", "pay:active:running", buf, sizeof buf), "1");
    cr_assert_str_eq(hget("saga:{p2}:outbox", "s-1/charge/action/1", buf, sizeof buf),
                     "payment\n-1\ns-1\n{\"type\":\"command\"}");
    redisReply *r = cmd("ZSCORE %s s-1", "saga:{p2}:index:running");
    cr_assert_str_eq(r->str, "1000");
    freeReplyObject(r);
    r = cmd("LRANGE %s 0 -1", "saga:{p2}:history:s-1");
    cr_assert_eq(r->elements, 2, "started + action_sent");
    cr_assert(strstr(r->element[0]->str, "\"event\": \"started\"") ||
              strstr(r->element[0]->str, "\"event\":\"started\""));
    freeReplyObject(r);

    /* the same create again: EXISTS, nothing written */
    cr_assert_eq(write_one(s, &res, epoch, 0, NULL, 0), STORE_EXISTS);
    cr_assert_str_eq(hget("saga:{p2}:counters", "pay:started", buf, sizeof buf), "1");

    /* a stale version: CONFLICT */
    cr_assert_eq(write_one(s, &res, epoch, 7, NULL, 0), STORE_CONFLICT);

    /* another instance takes the partition: our epoch is refused, nothing changes */
    int64_t epoch2;
    cr_assert_eq(store_take_epoch(st, 2, "test-b", &epoch2), 0);
    cr_assert_eq(epoch2, 2);
    cr_assert_str_eq(hget("saga:{p2}:owner", "owner", buf, sizeof buf), "test-b");
    machine_result_release(&res);
    env.now_ms = 2000;
    machine_reply_t ok = {.step = 0, .kind = CMD_ACTION, .attempt = 1, .ok = true};
    machine_on_reply(s, &ok, &env, &res);
    cr_assert_eq(s->status, SAGA_COMPLETED);
    cr_assert_eq(write_one(s, &res, epoch, 1, NULL, 0), STORE_FENCED);
    cr_assert_str_eq(hget("saga:{p2}:saga:s-1", "status", buf, sizeof buf), "running",
                     "a fenced writer changed nothing");

    /* the new owner writes the completion: moved to finished, expires */
    cr_assert_eq(write_one(s, &res, epoch2, 1, NULL, 0), STORE_OK);
    cr_assert_str_eq(hget("saga:{p2}:saga:s-1", "status", buf, sizeof buf), "completed");
    cr_assert_str_eq(hget("saga:{p2}:counters", "pay:completed", buf, sizeof buf), "1");
    cr_assert_str_eq(hget("saga:{p2}:counters", "pay:active:running", buf, sizeof buf), "0");
    r = cmd("ZSCORE %s s-1", "saga:{p2}:index:running");
    cr_assert_eq(r->type, REDIS_REPLY_NIL, "left the running index");
    freeReplyObject(r);
    r = cmd("ZSCORE %s s-1", "saga:{p2}:index:finished");
    cr_assert_str_eq(r->str, "2000");
    freeReplyObject(r);
    r = cmd("PTTL %s", "saga:{p2}:saga:s-1");
    cr_assert(r->integer > 0 && r->integer <= 60000, "finished sagas expire (pttl %lld)",
              r->integer);
    freeReplyObject(r);
    r = cmd("PTTL %s", "saga:{p2}:history:s-1");
    cr_assert(r->integer > 0);
    freeReplyObject(r);

    /* outbox acknowledgement, by the current owner */
    const char *acked = "s-1/charge/action/1";
    cr_assert_eq(store_queue_outbox_acks(st, 2, epoch2, &acked, 1), 0);
    cr_assert_eq(store_flush(st, NULL), 0);
    r = cmd("HLEN %s", "saga:{p2}:outbox");
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    machine_result_release(&res);
    saga_free(s);
}

static int loaded;
static json_t *loaded_fields;

static void on_saga(const json_t *fields, void *opaque)
{
    (void)opaque;
    loaded++;
    json_decref(loaded_fields);
    loaded_fields = json_deep_copy(fields);
}

static int outbox_seen;
static void on_outbox(const outbox_entry_t *e, void *opaque)
{
    (void)opaque;
    outbox_seen++;
    cr_assert_str_eq(e->topic, "payment");
    cr_assert_str_eq(e->key, "s-2");
    cr_assert_str_eq(e->value, "line one\nline two");
}

Test(store, a_partition_loads_back_for_recovery)
{
    int64_t epoch;
    cr_assert_eq(store_take_epoch(st, 2, "test", &epoch), 0);
    saga_t *s = saga_new("s-2", def, 2, NULL, 5000);
    machine_env_t env = {.now_ms = 5000, .rng = &rng, .reply_topic = "in"};
    machine_result_t res;
    machine_result_init(&res);
    machine_start(s, &env, &res);
    outbox_entry_t out = {.id = "s-2/charge/action/1", .topic = "payment", .key = "s-2",
                          .value = "line one\nline two", .partition = -1};
    cr_assert_eq(write_one(s, &res, epoch, 0, &out, 1), STORE_OK);
    cr_assert_eq(store_load_partition(st, 2, on_saga, NULL), 1);
    cr_assert_eq(loaded, 1);
    char why[256] = "";
    saga_t *back = saga_decode_fields(loaded_fields, def, why, sizeof why);
    cr_assert_not_null(back, "%s", why);
    cr_assert_eq(back->version, 1);
    cr_assert_eq(back->steps[0].phase, STEP_RUNNING);
    cr_assert_eq(machine_next_timer(back), machine_next_timer(s), "timers re-arm as they were");
    cr_assert_eq(store_load_outbox(st, 2, on_outbox, NULL), 1);
    cr_assert_eq(outbox_seen, 1);
    cr_assert_eq(store_load_partition(st, 1, on_saga, NULL), 0, "other partitions are empty");
    saga_free(back);
    json_decref(loaded_fields);
    loaded_fields = NULL;
    machine_result_release(&res);
    saga_free(s);
}

Test(store, a_lost_connection_reports_errors_and_reconnects)
{
    int64_t epoch;
    cr_assert_eq(store_take_epoch(st, 0, "test", &epoch), 0);
    cr_assert_eq(fixture_redis_restart(&redis), 0);
    saga_t *s = saga_new("s-3", def, 0, NULL, 1000);
    machine_env_t env = {.now_ms = 1000, .rng = &rng, .reply_topic = "in"};
    machine_result_t res;
    machine_result_init(&res);
    machine_start(s, &env, &res);
    /* The first use after the restart may fail (the old socket is dead): it must say so,
     * and the next one reconnects. Redis lost the epoch (no persistence here): FENCED. */
    store_transition_t t = {.partition = 0, .epoch = epoch, .saga = s, .expected_version = 0,
                            .old_status = SAGA_RUNNING, .history = res.history};
    store_status_t result = STORE_OK;
    if (store_queue_transition(st, &t) == 0)
        (void)store_flush(st, &result);
    if (result == STORE_ERROR) {
        cr_assert_eq(store_ensure_connected(st), 0, "reconnects");
        cr_assert_eq(store_queue_transition(st, &t), 0);
        cr_assert_eq(store_flush(st, &result), 0);
    }
    cr_assert_eq(result, STORE_FENCED, "an epoch Redis does not have is refused");
    machine_result_release(&res);
    saga_free(s);
}

/* An epoch bump that WAIT says reached no replica is not taken: the caller must not serve
 * under it (and takes a new one on its next try). */
Test(store, an_epoch_no_replica_acknowledged_is_not_taken)
{
    int64_t epoch = 0;
    cr_assert_eq(store_take_epoch(st, 1, "me", &epoch), 0);
    cr_assert_eq(epoch, 1);
    store_set_wait_replicas(st, 1); /* this Redis has none */
    int64_t kept = epoch;
    cr_assert_eq(store_take_epoch(st, 1, "me", &epoch), -1);
    cr_assert_eq(epoch, kept, "the caller's epoch is unchanged");
    cr_assert(strstr(store_last_error(st), "reached 0 of 1 replicas"), "%s", store_last_error(st));
    redisReply *r = cmd("HGET %s epoch", "saga:{p1}:owner");
    cr_assert_str_eq(r->str, "1", "the owner record is not moved to the untaken epoch");
    freeReplyObject(r);
}

static void count_entry(const outbox_entry_t *e, void *opaque)
{
    (void)e;
    (void)opaque;
}

/* redis_sync_replicas: a round counts once WAIT says that many replicas have it. With
 * fewer, every transition of the round is STORE_ERROR (written on the primary, but a
 * failover may lose it) and the outbox is not handed out again until they have it. */
Test(store, a_round_fewer_replicas_acknowledged_is_not_confirmed)
{
    char err[256] = "";
    store_config_t cfg = {.redis = {.port = redis.port, .command_timeout_ms = 1000},
                          .retention_ms = 60000};
    store_t *sync = store_new(&cfg, err, sizeof err);
    cr_assert_not_null(sync, "%s", err);
    store_set_sync_replicas(sync, 1); /* this Redis has none yet */
    int64_t epoch;
    cr_assert_eq(store_take_epoch(sync, 3, "me", &epoch), 0);
    saga_t *s = saga_new("s-sync", def, 3, NULL, 1000);
    machine_env_t env = {.now_ms = 1000, .rng = &rng, .reply_topic = "in"};
    machine_result_t res;
    machine_result_init(&res);
    machine_start(s, &env, &res);
    outbox_entry_t out = {.id = "s-sync/charge/action/1", .topic = "payment", .key = "s-sync",
                          .value = "{}", .partition = -1};
    store_transition_t t = {.partition = 3, .epoch = epoch, .saga = s, .expected_version = 0,
                            .old_status = SAGA_RUNNING, .history = res.history,
                            .outbox = &out, .outbox_count = 1};
    store_status_t results[2] = {STORE_OK, STORE_OK};
    cr_assert_eq(store_queue_transition(sync, &t), 0);
    int64_t t0 = fixture_now_ms();
    cr_assert_eq(store_flush(sync, results), 0, "WAIT falling short is no connection loss");
    int64_t waited = fixture_now_ms() - t0;
    cr_assert_eq(results[0], STORE_ERROR);
    cr_assert(strstr(store_last_error(sync), "a round reached 0 of 1 replicas in 500 ms"), "%s",
              store_last_error(sync));
    cr_assert(waited >= 400 && waited < 1000, "WAIT blocks half the command timeout: %lld ms",
              (long long)waited);
    char buf[256];
    cr_assert_str_eq(hget("saga:{p3}:saga:s-sync", "status", buf, sizeof buf), "running",
                     "the write is on the primary all the same");
    cr_assert_eq(store_load_outbox(sync, 3, count_entry, NULL), -1,
                 "the outbox waits for the replica");
    cr_assert(strstr(store_last_error(sync), "reached 0 of 1 replicas"), "%s",
              store_last_error(sync));

    /* A replica: the same round shape is confirmed. */
    redis_fixture_t replica;
    char conf[64];
    snprintf(conf, sizeof conf, "replicaof 127.0.0.1 %d\n", redis.port);
    cr_assert_eq(fixture_redis_start(&replica, conf), 0);
    int64_t deadline = fixture_now_ms() + 10000;
    long long acked = 0;
    while (acked < 1 && fixture_now_ms() < deadline) {
        redisReply *r = redisCommand(rc, "WAIT 1 100");
        acked = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
    }
    cr_assert_eq(acked, 1, "the replica is in sync");
    s->version = 1;
    t.expected_version = 1;
    t.outbox_count = 0;
    t.history = NULL;
    cr_assert_eq(store_queue_transition(sync, &t), 0);
    cr_assert_eq(store_flush(sync, results), 0);
    cr_assert_eq(results[0], STORE_OK, "%s", store_last_error(sync));
    cr_assert_eq(store_load_outbox(sync, 3, count_entry, NULL), 1, "one entry, handed out");
    fixture_redis_stop(&replica);
    machine_result_release(&res);
    saga_free(s);
    store_free(sync);
}

/* Outbox acknowledgements are fenced like transitions: a zombie's change nothing. */
Test(store, outbox_acknowledgements_check_the_epoch)
{
    int64_t epoch = 0;
    cr_assert_eq(store_take_epoch(st, 3, "me", &epoch), 0);
    freeReplyObject(cmd("HSET %s a/s/action/1 x", "saga:{p3}:outbox"));
    freeReplyObject(cmd("HSET %s a/t/action/1 y", "saga:{p3}:outbox"));
    const char *ids[] = {"a/s/action/1", "a/t/action/1"};
    cr_assert_eq(store_queue_outbox_acks(st, 3, epoch - 1, ids, 1), 0); /* a stale epoch */
    cr_assert_eq(store_flush(st, NULL), 0);
    redisReply *r = cmd("HLEN %s", "saga:{p3}:outbox");
    cr_assert_eq(r->integer, 2, "a stale owner's acknowledgement removes nothing");
    freeReplyObject(r);
    cr_assert_eq(store_queue_outbox_acks(st, 3, epoch, ids, 2), 0);
    cr_assert_eq(store_flush(st, NULL), 0);
    r = cmd("HLEN %s", "saga:{p3}:outbox");
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
}
