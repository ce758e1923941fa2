/* test_cluster.c - the cluster view against three real coordinators (redis-server and the
 * embedded broker from tests/support/system.c): every instance writes its member record
 * (docs/redis.md, "Member records"); `sagactl cluster --json` and GET /api/cluster show the
 * live instances and every partition owned by one of them; after a SIGKILL the dead
 * instance's record expires, the group rebalances and the view shows the two survivors
 * owning everything; a clean stop (SIGTERM) removes the record at once. */
#include "opstest.h"
#include "saga_version.h"
#include "system.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 30000
#define REBALANCE_WAIT_MS 60000   /* record expiry (5 s) + session timeout + rebalance */
#define POLL_US (100 * 1000)
#define CTL_TIMEOUT_MS 30000
#define COORDINATORS 3
#define MEMBER_TTL_MS 5000        /* as docs/redis.md says */

static test_system_t sys;
static int http_ports[COORDINATORS];
static const char *const IDS[COORDINATORS] = {"node-a", "node-b", "node-c"};

static void setup(void)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, NULL), 0, "system starts");
    for (int i = 0; i < COORDINATORS; i++) {
        char listen[64], id[64];
        http_ports[i] = fixture_free_port();
        snprintf(listen, sizeof listen, "--http_listen=127.0.0.1:%d", http_ports[i]);
        snprintf(id, sizeof id, "--instance_id=%s", IDS[i]);
        cr_assert_eq(system_add_coordinator(&sys, (const char *const[]){listen, id, NULL}, NULL),
                     i);
    }
}

static void teardown(void)
{
    system_stop(&sys);
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 240);

/* The cluster view from coordinator i's /api/cluster, or NULL. */
static json_t *api_cluster(int i)
{
    char *body = NULL;
    json_t *doc = NULL;
    if (ops_http_get(http_ports[i], "/api/cluster", &body) == 200)
        doc = json_loads(body, 0, NULL);
    free(body);
    return doc;
}

/* The cluster view from `sagactl cluster --json`. */
static json_t *ctl_cluster(void)
{
    char bin[PATH_MAX], boot[600], port[64];
    cr_assert_eq(fixture_bin_path("sagactl", bin, sizeof bin), 0);
    snprintf(boot, sizeof boot, "--bootstrap_servers=%s", sys.broker.bootstrap);
    snprintf(port, sizeof port, "--redis_port=%d", sys.redis.port);
    const char *argv[] = {bin, boot, port, "cluster", "--json", NULL};
    ops_run_t r;
    cr_assert_eq(ops_run(&r, argv, NULL, NULL, CTL_TIMEOUT_MS), 0, "sagactl cluster: %s", r.err);
    json_error_t je;
    json_t *doc = json_loads(r.out, 0, &je);
    cr_assert_not_null(doc, "--json parses: %s\n%s", je.text, r.out);
    ops_run_release(&r);
    return doc;
}

static bool live_member(const json_t *doc, const char *id)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(doc, "members"), i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "instance")), id) == 0)
            return true;
    }
    return false;
}

/* Whether doc shows exactly the live instances ids (n of them), and every partition
 * (SYSTEM_INPUT_PARTITIONS) owned by one of them, marked live, each owned partition listed
 * by its owner's record. */
static bool view_is(const json_t *doc, const char *const *ids, size_t n)
{
    if (!doc || json_array_size(json_object_get(doc, "members")) != n)
        return false;
    for (size_t k = 0; k < n; k++)
        if (!live_member(doc, ids[k]))
            return false;
    const json_t *parts = json_object_get(doc, "partitions");
    if (json_array_size(parts) != SYSTEM_INPUT_PARTITIONS)
        return false;
    size_t i;
    json_t *p;
    json_array_foreach(parts, i, p)
    {
        const char *owner = json_string_value(json_object_get(p, "owner"));
        bool ours = false;
        for (size_t k = 0; owner && k < n; k++)
            ours = ours || strcmp(owner, ids[k]) == 0;
        /* sagas_in_memory is known only when the owner's record lists the partition. */
        if (!ours || !json_is_true(json_object_get(p, "owner_live")) ||
            !json_is_integer(json_object_get(p, "sagas_in_memory")))
            return false;
    }
    return true;
}

/* Polls coordinator i's /api/cluster until view_is(ids) or the deadline; returns the last
 * view seen (new reference, may be NULL). */
static json_t *wait_view(int i, const char *const *ids, size_t n, int timeout_ms)
{
    int64_t deadline = fixture_now_ms() + timeout_ms;
    json_t *doc = NULL;
    for (;;) {
        json_decref(doc);
        doc = api_cluster(i);
        if (view_is(doc, ids, n) || fixture_now_ms() >= deadline)
            return doc;
        usleep(POLL_US);
    }
}

static char *dump(const json_t *doc)
{
    return doc ? json_dumps(doc, JSON_INDENT(1)) : strdup("(no document)");
}

static long long redis_int(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(sys.rc, fmt, arg);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s %s", fmt, arg);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The member records hold what docs/redis.md says, with an expiry. */
static void expect_records(const json_t *doc)
{
    for (int i = 0; i < COORDINATORS; i++) {
        long long ttl = redis_int("PTTL saga:member:%s", IDS[i]);
        cr_expect(ttl > 0 && ttl <= MEMBER_TTL_MS, "%s: PTTL %lld", IDS[i], ttl);
        redisReply *r = redisCommand(sys.rc, "ZSCORE saga:members %s", IDS[i]);
        cr_expect(r && r->type == REDIS_REPLY_STRING, "%s is in saga:members", IDS[i]);
        freeReplyObject(r);
    }
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(doc, "members"), i, m)
    {
        const char *id = json_string_value(json_object_get(m, "instance"));
        int k = 0;
        while (k < COORDINATORS && strcmp(IDS[k], id) != 0)
            k++;
        cr_assert_lt(k, COORDINATORS, "unknown member %s", id);
        char http[64];
        snprintf(http, sizeof http, "127.0.0.1:%d", http_ports[k]);
        cr_expect_str_eq(json_string_value(json_object_get(m, "http")), http);
        cr_expect_eq(json_integer_value(json_object_get(m, "pid")), sys.coordinators[k]);
        cr_expect_str_eq(json_string_value(json_object_get(m, "version")), SAGA_VERSION);
        cr_expect(json_string_length(json_object_get(m, "host")) > 0);
        json_int_t seen = json_integer_value(json_object_get(m, "seen_ago_ms"));
        cr_expect(seen >= -1000 && seen <= MEMBER_TTL_MS, "%s seen %lld ms ago", id,
                  (long long)seen);
        cr_expect(json_integer_value(json_object_get(m, "started_at")) > 0);
    }
}

Test(cluster, three_live_then_one_killed_then_two_own_everything)
{
    const char *const all[] = {IDS[0], IDS[1], IDS[2]};
    json_t *doc = wait_view(0, all, 3, WAIT_MS);
    char *text = dump(doc);
    cr_assert(view_is(doc, all, 3), "3 live members owning every partition:\n%s", text);
    free(text);
    expect_records(doc);
    json_decref(doc);
    for (int i = 1; i < COORDINATORS; i++) {
        doc = wait_view(i, all, 3, WAIT_MS);
        cr_assert(view_is(doc, all, 3), "the same on coordinator %d", i);
        json_decref(doc);
    }
    doc = ctl_cluster();
    text = dump(doc);
    cr_assert(view_is(doc, all, 3), "sagactl cluster --json:\n%s", text);
    free(text);
    cr_expect(json_is_object(json_object_get(doc, "stuck")));
    json_decref(doc);

    /* A crash: no clean stop, the record lives until it expires. */
    pid_t victim = sys.coordinators[2];
    cr_assert_eq(kill(victim, SIGKILL), 0);
    cr_assert_eq(fixture_wait_exit(victim, WAIT_MS, NULL), 0);
    sys.coordinators[2] = 0;
    const char *const survivors[] = {IDS[0], IDS[1]};
    doc = wait_view(0, survivors, 2, REBALANCE_WAIT_MS);
    text = dump(doc);
    cr_assert(view_is(doc, survivors, 2), "2 live members owning every partition:\n%s", text);
    free(text);
    json_decref(doc);
    cr_expect_eq(redis_int("EXISTS saga:member:%s", IDS[2]), 0, "the record expired");
    doc = ctl_cluster();
    text = dump(doc);
    cr_assert(view_is(doc, survivors, 2), "sagactl cluster --json:\n%s", text);
    free(text);
    json_decref(doc);
}

static bool record_gone(void *opaque)
{
    redisReply *r = redisCommand(sys.rc, "EXISTS saga:member:%s", (const char *)opaque);
    bool gone = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    freeReplyObject(r);
    return gone;
}

Test(cluster, clean_stop_removes_the_member_record_at_once)
{
    const char *const all[] = {IDS[0], IDS[1], IDS[2]};
    json_t *doc = wait_view(0, all, 3, WAIT_MS);
    cr_assert(view_is(doc, all, 3), "3 live members first");
    json_decref(doc);
    /* The record would live this long without a clean stop: it must go well before. */
    long long ttl = redis_int("PTTL saga:member:%s", IDS[1]);
    cr_assert_gt(ttl, 0);
    cr_assert_eq(kill(sys.coordinators[1], SIGTERM), 0);
    cr_assert(fixture_wait_until(record_gone, (void *)IDS[1], (int)ttl - 200),
              "the record is removed by the stop, not by its expiry");
    cr_assert_eq(fixture_stop_process(sys.coordinators[1], WAIT_MS), 0);
    sys.coordinators[1] = 0;
    redisReply *r = redisCommand(sys.rc, "ZSCORE saga:members %s", IDS[1]);
    cr_expect(r && r->type == REDIS_REPLY_NIL, "and its saga:members entry");
    freeReplyObject(r);
    doc = api_cluster(0);
    cr_assert(doc && json_array_size(json_object_get(doc, "members")) == 2 &&
              !live_member(doc, IDS[1]), "the view drops it at once");
    json_decref(doc);
    const char *const survivors[] = {IDS[0], IDS[2]};
    doc = wait_view(0, survivors, 2, REBALANCE_WAIT_MS);
    char *text = dump(doc);
    cr_assert(view_is(doc, survivors, 2), "the survivors own every partition:\n%s", text);
    free(text);
    json_decref(doc);
}
