/* test_participant.c - integration tests of the participant side of docs/protocol.md:
 * the C SDK through the example inventory-service, and the Python example participant
 * (participants/python/example_participant.py) through the same cases.
 *
 * Each test starts its own redis-server and saga-devbroker (tests/support/fixture.h),
 * runs the participant program, produces command messages to inventory.commands as the
 * coordinator would, and checks the replies on the reply topic (topic, partition, key)
 * and the ledger and dedup records in Redis. Commands of one test go to one command
 * partition and ask for one reply partition, so their order is kept end to end; a final
 * "marker" command (an unknown type, answered at once) proves that everything before it
 * was handled, which is how "no further reply" and "ledger unchanged" are checked without
 * sleeping. */
#include "fixture.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_COMMAND_TOPIC "inventory.commands"
#define T_REPLY_TOPIC "replies"
#define T_TOPICS "inventory.commands:2,payment.commands:2,shipping.commands:2,replies:3"
#define T_CMD_PARTITION 1          /* every command of a test goes here ... */
#define T_REPLY_PARTITION 2        /* ... and asks for its reply here */
#define T_REPLY_TIMEOUT_MS 30000   /* includes the mock's ~3 s first group join */
#define T_EXIT_TIMEOUT_MS 20000
#define T_MAX_ARGS 32
#define T_SERVICE "inventory"

typedef enum { IMPL_C = 0, IMPL_PYTHON = 1 } impl_t;

static struct {
    redis_fixture_t redis;
    broker_fixture_t broker;
    rd_kafka_t *producer;
    fixture_collector_t *replies;
    redisContext *rc;
    pid_t svc;
    int nstarts;
    char log[PATH_MAX];
    char port[16];
} T;

static void env_setup(void)
{
    memset(&T, 0, sizeof T);
    cr_assert_eq(fixture_redis_start(&T.redis, NULL), 0, "redis-server");
    cr_assert_eq(fixture_broker_start(&T.broker, 1, T_TOPICS), 0, "saga-devbroker");
    T.producer = fixture_producer_new(T.broker.bootstrap);
    cr_assert_not_null(T.producer);
    T.replies = fixture_collector_new(T.broker.bootstrap, NULL, T_REPLY_TOPIC);
    cr_assert_not_null(T.replies);
    T.rc = fixture_redis_connect(&T.redis);
    cr_assert_not_null(T.rc);
    snprintf(T.port, sizeof T.port, "%d", T.redis.port);
}

static void env_teardown(void)
{
    if (T.svc > 0)
        (void)fixture_stop_process(T.svc, FIXTURE_STOP_TIMEOUT_MS);
    T.svc = 0;
    fixture_collector_free(T.replies);
    if (T.producer)
        rd_kafka_destroy(T.producer);
    if (T.rc)
        redisFree(T.rc);
    fixture_broker_stop(&T.broker);
    fixture_redis_stop(&T.redis);
}

/* Starts the participant playing service (argv extra: NULL-terminated flags). Its log
 * goes to the broker's temp dir (kept with SAGA_TEST_KEEP=1). */
static pid_t service_start_as(impl_t impl, const char *service, const char *const *extra)
{
    static char bin[PATH_MAX], script[PATH_MAX];
    const char *argv[T_MAX_ARGS];
    int n = 0;
    if (impl == IMPL_C) {
        char name[64];
        snprintf(name, sizeof name, "%s-service", service);
        cr_assert_eq(fixture_bin_path(name, bin, sizeof bin), 0, "SAGA_BIN_DIR");
        argv[n++] = bin;
    } else {
        const char *src = getenv("SAGA_SOURCE_DIR");
        cr_assert_not_null(src, "SAGA_SOURCE_DIR");
        snprintf(script, sizeof script, "%s/participants/python/example_participant.py", src);
        argv[n++] = "/usr/bin/python3";
        argv[n++] = script;
        argv[n++] = "--service";
        argv[n++] = service;
    }
    argv[n++] = "--bootstrap";
    argv[n++] = T.broker.bootstrap;
    argv[n++] = "--redis-port";
    argv[n++] = T.port;
    for (int i = 0; extra && extra[i]; i++) {
        cr_assert_lt(n, T_MAX_ARGS - 1);
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    int w = snprintf(T.log, sizeof T.log, "%.*s/participant-%d.log", (int)(sizeof T.log - 32), T.broker.dir,
                     ++T.nstarts);
    cr_assert(w > 0 && (size_t)w < sizeof T.log);
    const char *env[] = {"SAGA_LOG_LEVEL=info", NULL};
    pid_t pid = fixture_spawn(argv, T.log, env);
    cr_assert_gt(pid, 0, "cannot start the participant");
    return pid;
}

static pid_t service_start(impl_t impl, const char *const *extra)
{
    return service_start_as(impl, T_SERVICE, extra);
}

static bool log_has_assigned(void *opaque)
{
    (void)opaque;
    return fixture_file_contains(T.log, "assigned");
}

static bool log_has_waiting(void *opaque)
{
    (void)opaque;
    return fixture_file_contains(T.log, "redis does not answer yet");
}

/* Builds and produces one command as docs/protocol.md describes it. payload is JSON text
 * (NULL: {}). Returns the command_id in id (size 256). */
static void command_send_to(const char *topic, const char *saga, const char *step, const char *kind,
                            const char *type, int attempt, const char *payload, char *id)
{
    char cid[256], key[256];
    snprintf(cid, sizeof cid, "%s/%s/%s/%d", saga, step, kind, attempt);
    snprintf(key, sizeof key, "%s/%s/%s", saga, step, kind);
    json_t *p = json_loads(payload ? payload : "{}", 0, NULL);
    cr_assert_not_null(p, "bad payload in the test");
    json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:i, s:o, s:{s:s, s:i}, s:I, s:I}", "type",
                          "command", "command_id", cid, "idempotency_key", key, "saga_id", saga, "saga",
                          "order-placement", "saga_version", 1, "step", step, "kind", kind, "command", type,
                          "attempt", attempt, "payload", p, "reply_to", "topic", T_REPLY_TOPIC, "partition",
                          T_REPLY_PARTITION, "sent_at", (json_int_t)1764085000123, "deadline",
                          (json_int_t)1764085010123);
    cr_assert_not_null(c);
    char *text = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    cr_assert_eq(fixture_produce(T.producer, topic, T_CMD_PARTITION, saga, text), 0);
    free(text);
    if (id)
        snprintf(id, 256, "%s", cid);
}

static void command_send(const char *saga, const char *step, const char *kind, const char *type, int attempt,
                         const char *payload, char *id)
{
    command_send_to(T_COMMAND_TOPIC, saga, step, kind, type, attempt, payload, id);
}

static void raw_send(const char *key, const char *value)
{
    cr_assert_eq(fixture_produce(T.producer, T_COMMAND_TOPIC, T_CMD_PARTITION, key, value), 0);
}

/* ---- replies ---- */

typedef struct {
    const char *command_id;
    int nth;           /* wait for the nth reply (1-based) with that command_id */
    json_t *found;     /* new reference */
    size_t at;         /* collector index of the found reply */
} reply_wait_t;

static json_t *reply_parse(const fixture_message_t *m)
{
    return m && m->value ? json_loads(m->value, 0, NULL) : NULL;
}

static bool reply_cond(void *opaque)
{
    reply_wait_t *w = opaque;
    int seen = 0;
    size_t n = fixture_collector_count(T.replies);
    for (size_t i = 0; i < n; i++) {
        json_t *r = reply_parse(fixture_collector_at(T.replies, i));
        const char *cid = json_string_value(json_object_get(r, "command_id"));
        if (cid && strcmp(cid, w->command_id) == 0 && ++seen == w->nth) {
            w->found = r;
            w->at = i;
            return true;
        }
        json_decref(r);
    }
    return false;
}

/* The nth reply to command_id (new reference); fails the test after the timeout. Checks
 * where it was produced: the asked partition, keyed by the saga id. */
static json_t *reply_wait(const char *command_id, int nth)
{
    reply_wait_t w = {command_id, nth, NULL, 0};
    cr_assert(fixture_wait_until(reply_cond, &w, T_REPLY_TIMEOUT_MS), "no reply #%d to %s (participant log: %s)", nth,
              command_id, T.log);
    const fixture_message_t *m = fixture_collector_at(T.replies, w.at);
    cr_assert_eq(m->partition, T_REPLY_PARTITION, "reply on partition %d", m->partition);
    cr_assert_str_eq(m->key, json_string_value(json_object_get(w.found, "saga_id")), "reply key");
    cr_assert_str_eq(json_string_value(json_object_get(w.found, "type")), "reply");
    return w.found;
}

static size_t reply_count(const char *command_id)
{
    size_t c = 0, n = fixture_collector_count(T.replies);
    for (size_t i = 0; i < n; i++) {
        json_t *r = reply_parse(fixture_collector_at(T.replies, i));
        const char *cid = json_string_value(json_object_get(r, "command_id"));
        if (cid && strcmp(cid, command_id) == 0)
            c++;
        json_decref(r);
    }
    return c;
}

/* Sends a marker (an unknown command type) and waits for its reply: every command sent
 * before it has been handled and replied to. */
static void marker_sync(void)
{
    static int seq;
    char saga[64], id[256];
    snprintf(saga, sizeof saga, "marker-%d", ++seq);
    command_send(saga, "m", "action", "test.marker", 1, NULL, id);
    json_t *r = reply_wait(id, 1);
    cr_assert_str_eq(json_string_value(json_object_get(r, "error")), "unknown command type test.marker");
    json_decref(r);
}

/* r as text, for assertion messages (a static buffer: nothing to free). */
static const char *reply_text(const json_t *r)
{
    static char buf[4096];
    size_t n = json_dumpb(r, buf, sizeof buf - 1, JSON_COMPACT);
    buf[n < sizeof buf ? n : 0] = '\0';
    return buf;
}

static void reply_assert_ok(json_t *r, const char *command_id, int attempt)
{
    cr_assert_str_eq(json_string_value(json_object_get(r, "status")), "ok", "reply %s", reply_text(r));
    cr_assert_str_eq(json_string_value(json_object_get(r, "command_id")), command_id);
    cr_assert_eq(json_integer_value(json_object_get(r, "attempt")), attempt);
    cr_assert(json_is_object(json_object_get(r, "output")));
}

static void reply_assert_failed(json_t *r, const char *error, int retryable)
{
    cr_assert_str_eq(json_string_value(json_object_get(r, "status")), "failed", "reply %s", reply_text(r));
    const char *e = json_string_value(json_object_get(r, "error"));
    cr_assert(e && strstr(e, error), "error \"%s\" lacks \"%s\"", e ? e : "(none)", error);
    cr_assert_eq(json_is_true(json_object_get(r, "retryable")), retryable);
}

/* ---- Redis ---- */

static long long redis_hget_int(const char *key, const char *field)
{
    redisReply *r = redisCommand(T.rc, "HGET %s %s", key, field);
    cr_assert_not_null(r);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

static char *redis_hget_str(const char *key, const char *field)
{
    redisReply *r = redisCommand(T.rc, "HGET %s %s", key, field);
    cr_assert_not_null(r);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

static long long redis_llen(const char *key)
{
    redisReply *r = redisCommand(T.rc, "LLEN %s", key);
    cr_assert_not_null(r);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void dedup_state_assert(const char *idem_key, const char *state)
{
    char key[256];
    snprintf(key, sizeof key, "dedup:{" T_SERVICE "}:%s", idem_key);
    char *s = redis_hget_str(key, "state");
    cr_assert(s && strcmp(s, state) == 0, "%s state %s, expected %s", key, s ? s : "(none)", state);
    free(s);
    redisReply *r = redisCommand(T.rc, "TTL %s", key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0, "%s has no TTL", key);
    freeReplyObject(r);
}

#define LEDGER(k) "ledger:{" T_SERVICE "}:" k

/* ---- the cases, each run against one implementation ---- */

static void case_ok_path(impl_t impl)
{
    T.svc = service_start(impl, NULL);
    char id[256];
    command_send("o-ok", "reserve", "action", "inventory.reserve", 1, "{\"order_id\":\"1\",\"sku\":\"A-1\",\"qty\":2,\"extra\":true}", id);
    json_t *r = reply_wait(id, 1);
    reply_assert_ok(r, id, 1);
    cr_assert_str_eq(json_string_value(json_object_get(r, "saga_id")), "o-ok");
    cr_assert_str_eq(json_string_value(json_object_get(r, "step")), "reserve");
    cr_assert_str_eq(json_string_value(json_object_get(r, "kind")), "action");
    cr_assert(json_is_string(json_object_get(json_object_get(r, "output"), "reservation_id")));
    json_decref(r);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "A-1"), 2);
    cr_assert_eq(redis_hget_int(LEDGER("by_saga"), "o-ok"), 2);
    cr_assert_eq(redis_hget_int(LEDGER("counts"), "reserve"), 1);
    cr_assert_eq(redis_llen(LEDGER("entries")), 1);
    dedup_state_assert("o-ok/reserve/action", "ok");
}

static void case_redelivered_not_applied_twice(impl_t impl)
{
    T.svc = service_start(impl, NULL);
    char id[256];
    const char *payload = "{\"order_id\":\"2\",\"sku\":\"B-2\",\"qty\":3}";
    for (int i = 0; i < 3; i++)
        command_send("o-dup", "reserve", "action", "inventory.reserve", 1, payload, id);
    marker_sync();
    cr_assert_eq(reply_count(id), 3, "one reply per delivery");
    json_t *first = reply_wait(id, 1);
    for (int i = 2; i <= 3; i++) {
        json_t *r = reply_wait(id, i);
        cr_assert(json_equal(first, r), "a repeat is answered with the recorded reply");
        json_decref(r);
    }
    json_decref(first);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "B-2"), 3);
    cr_assert_eq(redis_hget_int(LEDGER("counts"), "reserve"), 1);
    cr_assert_eq(redis_llen(LEDGER("entries")), 1);
}

static void case_retry_after_success_not_reapplied(impl_t impl)
{
    T.svc = service_start(impl, NULL);
    char id1[256], id2[256];
    const char *payload = "{\"sku\":\"C-3\",\"qty\":1}";
    command_send("o-retry", "reserve", "action", "inventory.reserve", 1, payload, id1);
    command_send("o-retry", "reserve", "action", "inventory.reserve", 2, payload, id2);
    json_t *r1 = reply_wait(id1, 1), *r2 = reply_wait(id2, 1);
    reply_assert_ok(r1, id1, 1);
    reply_assert_ok(r2, id2, 2); /* the new attempt's id and number are echoed */
    cr_assert(json_equal(json_object_get(r1, "output"), json_object_get(r2, "output")));
    json_decref(r1);
    json_decref(r2);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "C-3"), 1);
    cr_assert_eq(redis_llen(LEDGER("entries")), 1);
}

static void case_empty_compensation(impl_t impl)
{
    T.svc = service_start(impl, NULL);
    char id[256];
    command_send("o-empty", "reserve", "compensation", "inventory.release", 1, "{\"reservation_id\":\"r-unknown\"}", id);
    json_t *r = reply_wait(id, 1);
    reply_assert_ok(r, id, 1);
    cr_assert_eq(json_object_size(json_object_get(r, "output")), 0);
    json_decref(r);
    dedup_state_assert("o-empty/reserve/action", "tombstone");
    dedup_state_assert("o-empty/reserve/compensation", "ok");
    cr_assert_eq(redis_llen(LEDGER("entries")), 0, "the handler was not called");
}

static void case_suspension(impl_t impl)
{
    T.svc = service_start(impl, NULL);
    char cid[256], aid[256];
    command_send("o-susp", "reserve", "compensation", "inventory.release", 1, NULL, cid);
    command_send("o-susp", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"D-4\",\"qty\":5}", aid);
    json_t *c = reply_wait(cid, 1), *a = reply_wait(aid, 1);
    reply_assert_ok(c, cid, 1);
    reply_assert_failed(a, "compensated before applied", 0);
    json_decref(c);
    json_decref(a);
    /* and its retries too */
    command_send("o-susp", "reserve", "action", "inventory.reserve", 2, "{\"sku\":\"D-4\",\"qty\":5}", aid);
    a = reply_wait(aid, 1);
    reply_assert_failed(a, "compensated before applied", 0);
    json_decref(a);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "D-4"), 0);
    cr_assert_eq(redis_llen(LEDGER("entries")), 0, "never applied");
    dedup_state_assert("o-susp/reserve/action", "tombstone");
}

static void case_compensation_undoes_once(impl_t impl)
{
    T.svc = service_start(impl, NULL);
    char aid[256], cid1[256], cid2[256];
    command_send("o-comp", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"E-5\",\"qty\":4}", aid);
    json_t *a = reply_wait(aid, 1);
    reply_assert_ok(a, aid, 1);
    char payload[256];
    snprintf(payload, sizeof payload, "{\"reservation_id\":\"%s\"}",
             json_string_value(json_object_get(json_object_get(a, "output"), "reservation_id")));
    json_decref(a);
    command_send("o-comp", "reserve", "compensation", "inventory.release", 1, payload, cid1);
    command_send("o-comp", "reserve", "compensation", "inventory.release", 1, payload, cid1);
    command_send("o-comp", "reserve", "compensation", "inventory.release", 2, payload, cid2);
    marker_sync();
    cr_assert_eq(reply_count(cid1), 2);
    for (int i = 1; i <= 2; i++) {
        json_t *r = reply_wait(cid1, i);
        reply_assert_ok(r, cid1, 1);
        json_decref(r);
    }
    json_t *r = reply_wait(cid2, 1);
    reply_assert_ok(r, cid2, 2);
    json_decref(r);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "E-5"), 0, "nets to zero");
    cr_assert_eq(redis_hget_int(LEDGER("by_saga"), "o-comp"), 0);
    cr_assert_eq(redis_hget_int(LEDGER("counts"), "reserve"), 1);
    cr_assert_eq(redis_hget_int(LEDGER("counts"), "release"), 1);
    cr_assert_eq(redis_llen(LEDGER("entries")), 2);
    /* the action again, after its compensation: the recorded ok, nothing re-applied */
    command_send("o-comp", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"E-5\",\"qty\":4}", aid);
    r = reply_wait(aid, 2);
    reply_assert_ok(r, aid, 1);
    json_decref(r);
    cr_assert_eq(redis_llen(LEDGER("entries")), 2);
}

static void case_invalid_messages(impl_t impl)
{
    T.svc = service_start(impl, NULL);
    raw_send("x", "not json at all");
    raw_send("x", "[1,2,3]");
    raw_send("x", "{\"type\":\"command\"}");
    raw_send(NULL, NULL);
    raw_send("x", "{\"type\":\"start\",\"saga\":\"order-placement\"}");
    /* enough to answer: reply_to, saga_id, command_id, but no kind */
    raw_send("o-inv", "{\"type\":\"command\",\"command_id\":\"o-inv/s/action/1\",\"saga_id\":\"o-inv\","
                      "\"step\":\"s\",\"command\":\"inventory.reserve\",\"attempt\":1,"
                      "\"reply_to\":{\"topic\":\"" T_REPLY_TOPIC "\",\"partition\":2}}");
    char uid[256], oid[256];
    command_send("o-unk", "s", "action", "inventory.teleport", 1, NULL, uid);
    command_send("o-after", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"F-6\",\"qty\":1}", oid);
    json_t *r = reply_wait("o-inv/s/action/1", 1);
    reply_assert_failed(r, "invalid command", 0);
    json_decref(r);
    r = reply_wait(uid, 1);
    reply_assert_failed(r, "unknown command type inventory.teleport", 0);
    json_decref(r);
    r = reply_wait(oid, 1);
    reply_assert_ok(r, oid, 1);
    json_decref(r);
    cr_assert_eq(kill(T.svc, 0), 0, "still running");
    cr_assert_eq(redis_llen(LEDGER("entries")), 1);
}

static void case_failed_action_then_compensation(impl_t impl)
{
    const char *flags[] = {"--fail-on", "sku=BROKEN", NULL};
    T.svc = service_start(impl, flags);
    char aid[256], cid[256];
    command_send("o-fail", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"BROKEN\",\"qty\":1}", aid);
    command_send("o-fail", "reserve", "compensation", "inventory.release", 1, NULL, cid);
    json_t *a = reply_wait(aid, 1), *c = reply_wait(cid, 1);
    reply_assert_failed(a, "injected failure: sku=BROKEN", 0);
    reply_assert_ok(c, cid, 1); /* nothing to undo */
    json_decref(a);
    json_decref(c);
    dedup_state_assert("o-fail/reserve/action", "failed");
    cr_assert_eq(redis_llen(LEDGER("entries")), 0);
}

static void case_compensation_fails_retryably_first(impl_t impl)
{
    const char *flags[] = {"--fail-compensation-times", "2", NULL};
    T.svc = service_start(impl, flags);
    char aid[256], cid[3][256];
    command_send("o-cf", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"G-7\",\"qty\":6}", aid);
    for (int i = 0; i < 3; i++)
        command_send("o-cf", "reserve", "compensation", "inventory.release", i + 1, NULL, cid[i]);
    for (int i = 0; i < 2; i++) {
        json_t *r = reply_wait(cid[i], 1);
        reply_assert_failed(r, "injected compensation failure", 1);
        json_decref(r);
    }
    json_t *r = reply_wait(cid[2], 1);
    reply_assert_ok(r, cid[2], 3);
    json_decref(r);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "G-7"), 0);
    cr_assert_eq(redis_hget_int(LEDGER("counts"), "release"), 1);
}

/* The slow command's record exists (state pending) once its handler runs. */
static bool slow_started(void *opaque)
{
    (void)opaque;
    char *st = redis_hget_str("dedup:{" T_SERVICE "}:o-term/reserve/action", "state");
    bool started = st != NULL;
    free(st);
    return started;
}

/* A compensation that failed (not retryable: the saga is stuck) runs again when the
 * operator retries it, and undoes the action once. */
static void case_compensation_failure_not_final(impl_t impl)
{
    T.svc = service_start(impl, NULL);
    char aid[256], cid1[256], cid2[256];
    command_send("o-stuck", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"M-1\",\"qty\":3}", aid);
    json_t *a = reply_wait(aid, 1);
    reply_assert_ok(a, aid, 1);
    char payload[256];
    snprintf(payload, sizeof payload, "{\"reservation_id\":\"%s\"}",
             json_string_value(json_object_get(json_object_get(a, "output"), "reservation_id")));
    json_decref(a);
    command_send("o-stuck", "reserve", "compensation", "inventory.release", 1, "{\"reservation_id\":\"r-other\"}", cid1);
    json_t *r = reply_wait(cid1, 1);
    reply_assert_failed(r, "is not this step's reservation", 0);
    json_decref(r);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "M-1"), 3, "nothing undone yet");
    command_send("o-stuck", "reserve", "compensation", "inventory.release", 2, payload, cid2);
    r = reply_wait(cid2, 1);
    reply_assert_ok(r, cid2, 2);
    json_decref(r);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "M-1"), 0);
    cr_assert_eq(redis_hget_int(LEDGER("counts"), "release"), 1);
}

static void case_graceful_sigterm(impl_t impl)
{
    const char *flags[] = {"--delay-on", "sku=SLOW:1500", NULL};
    T.svc = service_start(impl, flags);
    char warm[256], id[256];
    command_send("o-warm", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"H-8\",\"qty\":1}", warm);
    json_decref(reply_wait(warm, 1)); /* assigned and running */
    command_send("o-term", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"SLOW\",\"qty\":1}", id);
    /* SIGTERM once the slow command is in the handler: wait for its ledger-less state */
    cr_assert(fixture_wait_until(slow_started, NULL, T_REPLY_TIMEOUT_MS), "the slow command never started");
    cr_assert_eq(kill(T.svc, SIGTERM), 0);
    int status = 0;
    cr_assert_eq(fixture_wait_exit(T.svc, T_EXIT_TIMEOUT_MS, &status), 0, "no exit after SIGTERM");
    T.svc = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    /* the command in flight was finished and replied to before the exit */
    json_t *r = reply_wait(id, 1);
    reply_assert_ok(r, id, 1);
    json_decref(r);
    /* and its offset committed: a restart does not consume it again */
    T.svc = service_start(impl, NULL);
    marker_sync();
    cr_assert_eq(reply_count(id), 1, "consumed again after a graceful stop");
    cr_assert_eq(redis_hget_int(LEDGER("counts"), "reserve"), 2);
}

#define T_KILL_SAGAS 30

static void case_kill9_restart(impl_t impl)
{
    const char *flags[] = {"--delay-ms", "60", "-X", "session.timeout.ms=6000", NULL};
    T.svc = service_start(impl, flags);
    char ids[T_KILL_SAGAS][256];
    for (int i = 0; i < T_KILL_SAGAS; i++) {
        char saga[64];
        snprintf(saga, sizeof saga, "o-kill-%d", i);
        command_send(saga, "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"K-1\",\"qty\":1}", ids[i]);
    }
    json_decref(reply_wait(ids[T_KILL_SAGAS / 3], 1)); /* a third done: kill it mid-way */
    cr_assert_eq(kill(T.svc, SIGKILL), 0);
    cr_assert_eq(fixture_wait_exit(T.svc, T_EXIT_TIMEOUT_MS, NULL), 0);
    const char *rejoin[] = {"-X", "session.timeout.ms=6000", NULL};
    T.svc = service_start(impl, rejoin);
    for (int i = 0; i < T_KILL_SAGAS; i++)
        json_decref(reply_wait(ids[i], 1));
    marker_sync();
    /* replies may repeat (re-delivery), effects never do */
    cr_assert_eq(redis_hget_int(LEDGER("counts"), "reserve"), T_KILL_SAGAS);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "K-1"), T_KILL_SAGAS);
    cr_assert_eq(redis_llen(LEDGER("entries")), T_KILL_SAGAS);
    for (int i = 0; i < T_KILL_SAGAS; i++) {
        json_t *first = reply_wait(ids[i], 1);
        for (int n = 2; n <= (int)reply_count(ids[i]); n++) {
            json_t *again = reply_wait(ids[i], n);
            cr_assert(json_equal(first, again), "a re-delivered command got a different reply");
            json_decref(again);
        }
        json_decref(first);
    }
}

/* payment-service and shipping-service: an action, its compensation twice, and the
 * ledger nets to zero with one effect each way. */
static void case_payment_and_shipping(impl_t impl)
{
    pid_t pay = service_start_as(impl, "payment", NULL);
    T.svc = service_start_as(impl, "shipping", NULL);
    char a[256], c[256], sa[256], sc[256];
    command_send_to("payment.commands", "o-ps", "charge", "action", "payment.charge", 1,
                    "{\"order_id\":\"9\",\"amount\":25.5}", a);
    command_send_to("shipping.commands", "o-ps", "ship", "action", "shipping.schedule", 1,
                    "{\"order_id\":\"9\",\"address\":\"1 Main St\"}", sa);
    json_t *ra = reply_wait(a, 1), *rs = reply_wait(sa, 1);
    reply_assert_ok(ra, a, 1);
    reply_assert_ok(rs, sa, 1);
    char pp[256], sp[256];
    snprintf(pp, sizeof pp, "{\"payment_id\":\"%s\",\"amount\":25.5}",
             json_string_value(json_object_get(json_object_get(ra, "output"), "payment_id")));
    snprintf(sp, sizeof sp, "{\"shipment_id\":\"%s\"}",
             json_string_value(json_object_get(json_object_get(rs, "output"), "shipment_id")));
    json_decref(ra);
    json_decref(rs);
    cr_assert_eq(redis_hget_int("ledger:{payment}:balance", "charged_cents"), 2550);
    cr_assert_eq(redis_hget_int("ledger:{shipping}:balance", "scheduled"), 1);
    for (int i = 0; i < 2; i++) {
        command_send_to("payment.commands", "o-ps", "charge", "compensation", "payment.refund", 1, pp, c);
        command_send_to("shipping.commands", "o-ps", "ship", "compensation", "shipping.cancel", 1, sp, sc);
    }
    for (int i = 1; i <= 2; i++) {
        json_t *r = reply_wait(c, i);
        reply_assert_ok(r, c, 1);
        json_decref(r);
        r = reply_wait(sc, i);
        reply_assert_ok(r, sc, 1);
        json_decref(r);
    }
    cr_assert_eq(redis_hget_int("ledger:{payment}:balance", "charged_cents"), 0);
    cr_assert_eq(redis_hget_int("ledger:{payment}:by_saga", "o-ps"), 0);
    cr_assert_eq(redis_hget_int("ledger:{payment}:counts", "refund"), 1);
    cr_assert_eq(redis_hget_int("ledger:{shipping}:balance", "scheduled"), 0);
    cr_assert_eq(redis_hget_int("ledger:{shipping}:counts", "cancel"), 1);
    cr_assert_eq(redis_llen("ledger:{shipping}:entries"), 2);
    cr_assert_eq(fixture_stop_process(pay, FIXTURE_STOP_TIMEOUT_MS), 0);
}

TestSuite(participant, .init = env_setup, .fini = env_teardown, .timeout = 120);

Test(participant, ok_path) { case_ok_path(IMPL_C); }
Test(participant, redelivered_command_answered_from_record) { case_redelivered_not_applied_twice(IMPL_C); }
Test(participant, retry_after_success_not_reapplied) { case_retry_after_success_not_reapplied(IMPL_C); }
Test(participant, empty_compensation_leaves_tombstone) { case_empty_compensation(IMPL_C); }
Test(participant, action_after_compensation_refused) { case_suspension(IMPL_C); }
Test(participant, compensation_undoes_once) { case_compensation_undoes_once(IMPL_C); }
Test(participant, invalid_messages_do_not_stop_it) { case_invalid_messages(IMPL_C); }
Test(participant, failed_action_compensated_without_handler) { case_failed_action_then_compensation(IMPL_C); }
Test(participant, compensation_fails_retryably_then_succeeds) { case_compensation_fails_retryably_first(IMPL_C); }
Test(participant, failed_compensation_runs_again_on_retry) { case_compensation_failure_not_final(IMPL_C); }
Test(participant, graceful_shutdown_on_sigterm) { case_graceful_sigterm(IMPL_C); }
Test(participant, payment_and_shipping_net_to_zero) { case_payment_and_shipping(IMPL_C); }
Test(participant, kill9_then_restart_applies_once) { case_kill9_restart(IMPL_C); }

/* Started while Redis is down, the service does not exit: it says so, and its first
 * command waits until Redis is back, then is applied once. A Redis that refuses the
 * password is an exit at start, naming AUTH. */
Test(participant, started_while_redis_is_down_it_waits_for_it)
{
    cr_assert_eq(fixture_redis_kill(&T.redis), 0);
    T.svc = service_start(IMPL_C, NULL);
    cr_assert(fixture_wait_until(log_has_waiting, NULL, T_REPLY_TIMEOUT_MS),
              "the service says Redis does not answer yet (log %s)", T.log);
    char id[256];
    command_send("o-late", "reserve", "action", "inventory.reserve", 1,
                 "{\"order_id\":\"9\",\"sku\":\"W-1\",\"qty\":4}", id);
    cr_assert(fixture_wait_until(log_has_assigned, NULL, T_REPLY_TIMEOUT_MS),
              "the service joins its group (log %s)", T.log);
    usleep(1000 * 1000); /* it has the command now, and Redis does not answer */
    int status;
    cr_assert_eq(waitpid(T.svc, &status, WNOHANG), 0, "it is still running");
    cr_assert_eq(reply_count(id), 0, "no reply while Redis is down");
    cr_assert_eq(fixture_redis_start_again(&T.redis), 0);
    redisFree(T.rc);
    cr_assert_not_null(T.rc = fixture_redis_connect(&T.redis));
    json_t *r = reply_wait(id, 1);
    reply_assert_ok(r, id, 1);
    json_decref(r);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "W-1"), 4);
    cr_assert_eq(redis_llen(LEDGER("entries")), 1);
    cr_assert_eq(fixture_stop_process(T.svc, FIXTURE_STOP_TIMEOUT_MS), 0);
    T.svc = 0;

    const char *wrong[] = {"--redis-password", "not-the-password", NULL};
    pid_t refused = service_start(IMPL_C, wrong);
    cr_assert_eq(fixture_wait_exit(refused, T_REPLY_TIMEOUT_MS, &status), 0, "it exits");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "with a failure (0x%x)", status);
    cr_assert(fixture_file_contains(T.log, "AUTH"), "naming AUTH (log %s)", T.log);
}

/* Lines of the participant's log holding both needles. */
static int log_lines_with(const char *a, const char *b)
{
    FILE *f = fopen(T.log, "r");
    int n = 0;
    char line[4096];
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, a) && strstr(line, b);
    if (f)
        fclose(f);
    return n;
}

/* A frozen Redis (SIGSTOP: it accepts, never answers) holds a command redis_timeout_ms at
 * a time: with --redis-timeout-ms 300 the service gives up on the connection and tries
 * again several times during a 2.5 s freeze (the default, 10 s, would not once), and
 * answers the command once Redis is back, applied once. */
static void case_frozen_redis_let_go(impl_t impl)
{
    const char *flags[] = {"--redis-timeout-ms", "300", NULL};
    T.svc = service_start(impl, flags);
    char first[256], second[256];
    command_send("o-frz", "reserve", "action", "inventory.reserve", 1,
                 "{\"order_id\":\"7\",\"sku\":\"F-1\",\"qty\":1}", first);
    json_decref(reply_wait(first, 1)); /* joined, connected */
    int before = log_lines_with("\"warn\"", "redis");
    cr_assert_eq(kill(T.redis.pid, SIGSTOP), 0);
    command_send("o-frz2", "reserve", "action", "inventory.reserve", 1,
                 "{\"order_id\":\"8\",\"sku\":\"F-1\",\"qty\":2}", second);
    usleep(2500 * 1000);
    int during = log_lines_with("\"warn\"", "redis") - before;
    cr_assert_eq(kill(T.redis.pid, SIGCONT), 0);
    cr_assert_geq(during, 2, "gave up on the frozen Redis %d time(s) in 2.5 s (log %s)", during,
                  T.log);
    json_t *r = reply_wait(second, 1);
    reply_assert_ok(r, second, 1);
    json_decref(r);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "F-1"), 3);
    cr_assert_eq(redis_llen(LEDGER("entries")), 2);
}

Test(participant, a_frozen_redis_is_let_go_after_redis_timeout_ms) { case_frozen_redis_let_go(IMPL_C); }

/* The effects are checked against the data before anything is written: a key of the
 * wrong type rejects the whole result (nothing applied, failed retryably), and a retry
 * after an operator fixed the data applies it once. */
Test(participant, rejected_effect_applies_nothing)
{
    redisReply *r = redisCommand(T.rc, "SET %s %s", LEDGER("by_saga"), "not-a-hash");
    cr_assert_not_null(r);
    freeReplyObject(r);
    T.svc = service_start(IMPL_C, NULL);
    char id1[256], id2[256];
    command_send("o-eff", "reserve", "action", "inventory.reserve", 1, "{\"sku\":\"L-1\",\"qty\":7}", id1);
    json_t *a = reply_wait(id1, 1);
    reply_assert_failed(a, "effect rejected", 1);
    json_decref(a);
    cr_assert_eq(redis_llen(LEDGER("entries")), 0, "the first effect was not applied either");
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "L-1"), 0);
    dedup_state_assert("o-eff/reserve/action", "retryable");
    r = redisCommand(T.rc, "DEL %s", LEDGER("by_saga"));
    freeReplyObject(r);
    command_send("o-eff", "reserve", "action", "inventory.reserve", 2, "{\"sku\":\"L-1\",\"qty\":7}", id2);
    a = reply_wait(id2, 1);
    reply_assert_ok(a, id2, 2);
    json_decref(a);
    cr_assert_eq(redis_llen(LEDGER("entries")), 1);
    cr_assert_eq(redis_hget_int(LEDGER("balance"), "L-1"), 7);
}

TestSuite(participant_python, .init = env_setup, .fini = env_teardown, .timeout = 120);

Test(participant_python, ok_path) { case_ok_path(IMPL_PYTHON); }
Test(participant_python, redelivered_command_answered_from_record) { case_redelivered_not_applied_twice(IMPL_PYTHON); }
Test(participant_python, retry_after_success_not_reapplied) { case_retry_after_success_not_reapplied(IMPL_PYTHON); }
Test(participant_python, empty_compensation_leaves_tombstone) { case_empty_compensation(IMPL_PYTHON); }
Test(participant_python, action_after_compensation_refused) { case_suspension(IMPL_PYTHON); }
Test(participant_python, compensation_undoes_once) { case_compensation_undoes_once(IMPL_PYTHON); }
Test(participant_python, invalid_messages_do_not_stop_it) { case_invalid_messages(IMPL_PYTHON); }
Test(participant_python, failed_action_compensated_without_handler) { case_failed_action_then_compensation(IMPL_PYTHON); }
Test(participant_python, compensation_fails_retryably_then_succeeds) { case_compensation_fails_retryably_first(IMPL_PYTHON); }
Test(participant_python, failed_compensation_runs_again_on_retry) { case_compensation_failure_not_final(IMPL_PYTHON); }
Test(participant_python, graceful_shutdown_on_sigterm) { case_graceful_sigterm(IMPL_PYTHON); }
Test(participant_python, payment_and_shipping_net_to_zero) { case_payment_and_shipping(IMPL_PYTHON); }
Test(participant_python, kill9_then_restart_applies_once) { case_kill9_restart(IMPL_PYTHON); }
Test(participant_python, a_frozen_redis_is_let_go_after_redis_timeout_ms) { case_frozen_redis_let_go(IMPL_PYTHON); }
