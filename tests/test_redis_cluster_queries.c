/* test_redis_cluster_queries.c - sagactl (and so the dashboard's queries, coordinator/
 * query.c) on a Redis Cluster answer exactly as on one Redis.
 *
 * A real run makes the data: redis-server, the broker, a coordinator and a scripted
 * participant (as test_sagactl.c) take sagas to every status over the four partitions
 * (completed, compensated, stuck, running). The coordinator and the participant are then
 * stopped, and every key of that Redis is copied (DUMP, RESTORE) into a cluster of three
 * primaries (tests/support/rcfixture.h), where each partition's keys share the slot of
 * their {pN} tag and the untagged keys (saga:meta, the definitions, the members) sit on
 * slots of their own. Then each sagactl query verb (list with filters and pages, show,
 * stats, cluster; text and --json) runs against both, and the outputs must be equal
 * (less the fields that depend on the clock). Again after a partition's slot moved to
 * another primary (the client finds it through MOVED), and in the middle of a migration
 * (half the keys moved: ASK followed, in pipelines too).
 *
 * The participant SDK's de-duplication store (participants/sdk/sp_dedup.c) on the same
 * kind of cluster: a command decided, recorded with its effect, then its slot (the
 * prefix's tag) migrated to another primary: the repeat is still answered from the
 * record (MOVED followed, the scripts sent to the new primary), the effect applied once;
 * in the middle of a migration too (ASK). A prefix without a tag and an effect on another
 * slot are refused. And the example services, inventory-service (C SDK) and the Python
 * participant, configured with --redis-cluster: a repeat after the slot of {inventory}
 * moved is answered from the record, the handler run once, the ledger written once. */
#include "opstest.h"
#include "rcfixture.h"
#include "scripted.h"
#include "sp_command.h"
#include "sp_dedup.h"
#include "sp_result.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 20000
#define CTL_TIMEOUT_MS 60000
#define COMPARE_ATTEMPTS 3   /* a minute boundary can fall between the two runs of stats */

static test_system_t sys;
static scripted_t *participant;
static rcfixture_t cluster;
static char defs[PATH_MAX];
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

static const script_rule_t RULES[] = {
    {"comp-1", "charge", "action", 0, SCRIPT_FAIL, NULL},
    {"comp-2", "reserve", "action", 0, SCRIPT_FAIL, NULL},
    {"stuck-1", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"stuck-1", "charge", "compensation", 0, SCRIPT_FAIL, NULL},
    {"stuck-2", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"stuck-2", "charge", "compensation", 0, SCRIPT_FAIL, NULL},
    {NULL, "hold", "action", 0, SCRIPT_SILENT, NULL}, /* "slow" sagas stay running */
};

static const char *const DONE[] = {"done-1", "done-2", "done-3", "done-4", "done-5", "done-6"};
static const char *const ALL_IDS[] = {"done-1", "done-2", "done-3", "done-4", "done-5",
                                      "done-6", "comp-1", "comp-2", "stuck-1", "stuck-2",
                                      "run-1",  "run-2",  "run-3"};
#define DONE_COUNT (sizeof DONE / sizeof *DONE)
#define ID_COUNT (sizeof ALL_IDS / sizeof *ALL_IDS)

static void teardown(void)
{
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
    rcfixture_stop(&cluster);
    if (defs[0])
        ops_defs_remove(defs);
    defs[0] = '\0';
}

TestSuite(redis_cluster_queries, .fini = teardown, .timeout = 300);

static void expect_status(const char *id, const char *status)
{
    char why[8192] = "";
    cr_assert(system_expect_status(&sys, id, status, WAIT_MS, why, sizeof why), "%s", why);
}

/* Runs the sagas to their statuses on the single Redis, then stops the coordinator and
 * the participant so that nothing changes any more. */
static void make_data(void)
{
    cr_assert_eq(ops_defs_make(defs, sizeof defs), 0);
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0, "system starts");
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, RULES,
                                 sizeof RULES / sizeof *RULES);
    cr_assert_not_null(participant);
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
    for (size_t i = 0; i < DONE_COUNT; i++)
        cr_assert_eq(system_start_saga(&sys, DONE[i], "order", INPUT), 0);
    const char *order[] = {"comp-1", "comp-2", "stuck-1", "stuck-2"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(system_start_saga(&sys, order[i], "order", INPUT), 0);
    const char *slow[] = {"run-1", "run-2", "run-3"};
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(system_start_saga(&sys, slow[i], "slow", NULL), 0);
    for (size_t i = 0; i < DONE_COUNT; i++)
        expect_status(DONE[i], "completed");
    expect_status("comp-1", "compensated");
    expect_status("comp-2", "compensated");
    expect_status("stuck-1", "stuck");
    expect_status("stuck-2", "stuck");
    for (size_t i = 0; i < 3; i++)
        expect_status(slow[i], "running");
    for (int i = 0; i < sys.coordinator_count; i++) {
        cr_assert_eq(fixture_stop_process(sys.coordinators[i], FIXTURE_STOP_TIMEOUT_MS), 0);
        sys.coordinators[i] = 0;
    }
    scripted_stop(participant);
    participant = NULL;
}

/* Copies every key of the single Redis into the cluster, without expiry, and makes the
 * originals persistent too (member records and leases would expire between two runs).
 * Returns the number of keys copied. */
static long copy_keys(void)
{
    long copied = 0;
    char cursor[32] = "0";
    do {
        redisReply *page = redisCommand(sys.rc, "SCAN %s COUNT 1000", cursor);
        cr_assert(page && page->type == REDIS_REPLY_ARRAY && page->elements == 2);
        snprintf(cursor, sizeof cursor, "%s", page->element[0]->str);
        for (size_t i = 0; i < page->element[1]->elements; i++) {
            const char *key = page->element[1]->element[i]->str;
            redisReply *d = redisCommand(sys.rc, "DUMP %s", key);
            cr_assert(d && d->type == REDIS_REPLY_STRING, "DUMP %s", key);
            redisReply *r = rcfixture_command(&cluster, key, "RESTORE %s 0 %b REPLACE", key,
                                              d->str, d->len);
            cr_assert(r && r->type == REDIS_REPLY_STATUS, "RESTORE %s: %s", key,
                      r && r->type == REDIS_REPLY_ERROR ? r->str : "no answer");
            freeReplyObject(r);
            freeReplyObject(d);
            freeReplyObject(redisCommand(sys.rc, "PERSIST %s", key));
            copied++;
        }
        freeReplyObject(page);
    } while (strcmp(cursor, "0") != 0);
    return copied;
}

/* Runs sagactl against the single Redis (cluster false) or the cluster, then args. */
static int ctl(ops_run_t *r, bool on_cluster, const char *const *args)
{
    char bin[PATH_MAX], port[64], nodes[600];
    cr_assert_eq(fixture_bin_path("sagactl", bin, sizeof bin), 0);
    const char *argv[32] = {bin};
    int n = 1;
    if (on_cluster) {
        snprintf(nodes, sizeof nodes, "--redis_cluster_nodes=%s", cluster.seeds);
        argv[n++] = "--redis_cluster=1";
        argv[n++] = nodes;
    } else {
        snprintf(port, sizeof port, "--redis_port=%d", sys.redis.port);
        argv[n++] = port;
    }
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return ops_run(r, argv, NULL, NULL, CTL_TIMEOUT_MS);
}

/* Removes the clock's fields (now, ages, time left) anywhere in v. */
static void strip_clock(json_t *v)
{
    static const char *const CLOCK[] = {"now", "seen_ago_ms", "taken_ago_ms", "lease_left_ms"};
    if (json_is_object(v)) {
        for (size_t i = 0; i < sizeof CLOCK / sizeof *CLOCK; i++)
            json_object_del(v, CLOCK[i]);
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
            strip_clock(e);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            strip_clock(e);
    }
}

/* The output of a run, --json ones parsed and stripped of the clock (owned text). */
static char *normalized(const ops_run_t *r, bool json)
{
    if (!json) {
        /* Text: ages ("(3.4 s ago)") dropped. */
        char *s = strdup(r->out), *w = s;
        for (const char *p = r->out; *p;) {
            const char *close = *p == '(' ? strchr(p, ')') : NULL;
            const char *nl = strchr(p, '\n');
            if (close && (!nl || close < nl) && close - p >= 4 &&
                strncmp(close - 4, " ago", 4) == 0) {
                p = close + 1;
                continue;
            }
            *w++ = *p++;
        }
        *w = '\0';
        return s;
    }
    json_error_t je;
    json_t *v = json_loads(r->out, 0, &je);
    cr_assert_not_null(v, "--json output parses: %s\n%s", je.text, r->out);
    strip_clock(v);
    char *s = json_dumps(v, JSON_SORT_KEYS | JSON_INDENT(1));
    json_decref(v);
    return s;
}

/* sagactl args on one Redis and on the cluster: the same exit code and output (less the
 * clock). Returns the cluster's output (owned) for more checks. */
static char *same_answer(const char *what, const char *const *args, bool json)
{
    char *one = NULL, *many = NULL;
    for (int attempt = 0; attempt < COMPARE_ATTEMPTS; attempt++) {
        free(one);
        free(many);
        ops_run_t a, b;
        int ra = ctl(&a, false, args), rb = ctl(&b, true, args);
        cr_assert_eq(ra, rb, "%s: exit %d on one Redis, %d on the cluster: %s / %s", what, ra,
                     rb, a.err, b.err);
        one = normalized(&a, json);
        many = normalized(&b, json);
        ops_run_release(&a);
        ops_run_release(&b);
        if (strcmp(one, many) == 0)
            break;
    }
    cr_assert_str_eq(many, one, "%s: the cluster's answer differs from one Redis's:\n%s\n--- one Redis:\n%s",
                     what, many, one);
    free(one);
    return many;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Every query verb, both ways. */
static void compare_all(const char *when)
{
    char what[256];
    struct {
        const char *const *args;
        bool json;
    } cases[] = {
        {ARGS("list", "--json"), true},
        {ARGS("list"), false},
        {ARGS("list", "--status", "stuck", "--json"), true},
        {ARGS("list", "--status", "completed", "--json"), true},
        {ARGS("list", "--status", "finished", "--definition", "order", "--json"), true},
        {ARGS("list", "--definition", "slow", "--json"), true},
        {ARGS("stats", "--json"), true},
        {ARGS("cluster", "--json"), true},
        {ARGS("show", "no-such-saga"), false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(what, sizeof what, "%s: %s %s", when, cases[i].args[0],
                 cases[i].args[1] ? cases[i].args[1] : "");
        free(same_answer(what, cases[i].args, cases[i].json));
    }
    for (size_t i = 0; i < ID_COUNT; i++) {
        snprintf(what, sizeof what, "%s: show %s", when, ALL_IDS[i]);
        free(same_answer(what, ARGS("show", ALL_IDS[i], "--json"), true));
    }
    /* Pages of 3: the same cursors, every saga once. */
    char cursor[300] = "";
    int rows = 0;
    for (int page = 0; page < 10; page++) {
        snprintf(what, sizeof what, "%s: list page %d", when, page);
        char *out = cursor[0] ? same_answer(what, ARGS("list", "--limit", "3", "--cursor",
                                                       cursor, "--json"),
                                            true)
                              : same_answer(what, ARGS("list", "--limit", "3", "--json"), true);
        json_t *doc = json_loads(out, 0, NULL);
        free(out);
        cr_assert_not_null(doc);
        rows += (int)json_array_size(json_object_get(doc, "sagas"));
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        json_decref(doc);
        if (!cursor[0])
            break;
    }
    cr_assert_eq(rows, (int)ID_COUNT, "%s: every saga once over the pages", when);
}

/* The primary serving partition p's tag, and how many keys of p it holds. */
static int partition_primary(int p, long *keys)
{
    char tag[32], pattern[64];
    snprintf(tag, sizeof tag, "{p%d}", p);
    snprintf(pattern, sizeof pattern, "*{p%d}*", p);
    int slot = rcfixture_key_slot(&cluster, tag);
    cr_assert_geq(slot, 0);
    long counts[RCFIXTURE_MAX_NODES];
    cr_assert_geq(rcfixture_count_keys(&cluster, pattern, counts), 1);
    int owner = rcfixture_primary_of(&cluster, slot);
    cr_assert_geq(owner, 0);
    if (keys)
        *keys = counts[owner];
    return owner;
}

Test(redis_cluster_queries, sagactl_answers_the_same_on_a_cluster)
{
    make_data();
    cr_assert_eq(rcfixture_start(&cluster, 3, 0, NULL), 0);
    long copied = copy_keys();
    long counts[RCFIXTURE_MAX_NODES];
    cr_assert_eq(rcfixture_count_keys(&cluster, "*", counts), copied);
    /* Each partition's keys on one primary; the partitions and the untagged keys over
     * more than one. */
    int holders = 0;
    for (int i = 0; i < cluster.count; i++)
        holders += counts[i] > 0;
    cr_assert_geq(holders, 2, "the keys are spread over the primaries");
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char pattern[64];
        snprintf(pattern, sizeof pattern, "*{p%d}*", p);
        long per[RCFIXTURE_MAX_NODES];
        long all = rcfixture_count_keys(&cluster, pattern, per);
        long on_owner = 0;
        partition_primary(p, &on_owner);
        cr_assert_eq(on_owner, all, "partition %d: all %ld keys on its slot's primary", p, all);
    }

    compare_all("as copied");

    /* The busiest partition's slot moves to another primary: the client's map is read
     * afresh (a new sagactl each time), and its keys are where the map says. */
    int busiest = 0;
    long most = -1;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char pattern[64];
        snprintf(pattern, sizeof pattern, "*{p%d}*", p);
        long n = rcfixture_count_keys(&cluster, pattern, NULL);
        if (n > most) {
            most = n;
            busiest = p;
        }
    }
    char tag[32];
    snprintf(tag, sizeof tag, "{p%d}", busiest);
    int slot = rcfixture_key_slot(&cluster, tag);
    int from = rcfixture_primary_of(&cluster, slot), to = (from + 1) % cluster.count;
    cr_assert_eq(rcfixture_migrate_slot(&cluster, slot, to, 5, 0), 0);
    cr_assert_eq(rcfixture_primary_of(&cluster, slot), to);
    compare_all("after a slot migration");

    /* Half-way through moving it back: the source answers ASK for the keys it gave away,
     * to single commands and to the pipelined HMGETs alike. */
    cr_assert_eq(rcfixture_migrate_begin(&cluster, slot, from, 2, 0, (int)(most / 2)), 0);
    redisContext *src = rcfixture_connect(&cluster, to), *dst = rcfixture_connect(&cluster, from);
    cr_assert(src && dst);
    redisReply *a = redisCommand(src, "CLUSTER COUNTKEYSINSLOT %d", slot);
    redisReply *b = redisCommand(dst, "CLUSTER COUNTKEYSINSLOT %d", slot);
    cr_assert(a && b && a->integer > 0 && b->integer > 0, "keys on both sides mid-migration");
    freeReplyObject(a);
    freeReplyObject(b);
    redisFree(src);
    redisFree(dst);
    compare_all("in the middle of a migration");
    cr_assert_eq(rcfixture_migrate_finish(&cluster, slot, from, 10), 0);
    compare_all("after the migration back");
}

Test(redis_cluster_queries, settings_that_a_cluster_cannot_have_are_refused)
{
    cr_assert_eq(rcfixture_start(&cluster, 3, 0, NULL), 0);
    char nodes[600];
    snprintf(nodes, sizeof nodes, "--redis_cluster_nodes=%s", cluster.seeds);
    char bin[PATH_MAX];
    cr_assert_eq(fixture_bin_path("sagactl", bin, sizeof bin), 0);
    ops_run_t r;
    const char *db[] = {bin, "--redis_cluster=1", nodes, "--redis_db=2", "list", NULL};
    cr_assert_eq(ops_run(&r, db, NULL, NULL, CTL_TIMEOUT_MS), 4, "%s", r.err);
    cr_assert(strstr(r.err, "redis_db=2 with redis_cluster=1"), "%s", r.err);
    ops_run_release(&r);
    const char *sentinels[] = {bin,           "--redis_cluster=1", nodes,
                               "--redis_sentinels=127.0.0.1:1", "--redis_master_name=m",
                               "list",        NULL};
    cr_assert_eq(ops_run(&r, sentinels, NULL, NULL, CTL_TIMEOUT_MS), 4, "%s", r.err);
    cr_assert(strstr(r.err, "redis_sentinels with redis_cluster=1"), "%s", r.err);
    ops_run_release(&r);
    /* A seed that is no node: the reason, not a hang. */
    const char *bad[] = {bin, "--redis_cluster=1", "--redis_cluster_nodes=127.0.0.1:1", "list",
                         NULL};
    cr_assert_eq(ops_run(&r, bad, NULL, NULL, CTL_TIMEOUT_MS), 4, "%s", r.err);
    cr_assert(strstr(r.err, "127.0.0.1:1"), "%s", r.err);
    ops_run_release(&r);
    /* An empty database through the cluster: no partitions, nothing listed. */
    const char *empty[] = {bin, "--redis_cluster=1", nodes, "list", NULL};
    cr_assert_eq(ops_run(&r, empty, NULL, NULL, CTL_TIMEOUT_MS), 0, "%s", r.err);
    ops_run_release(&r);
}

/* ---- the SDK's de-duplication store ---------------------------------------------------- */

#define DEDUP_PREFIX "dedup:{grp}:"
#define LEDGER "ledger:{grp}:balance"

static saga_command_t *command_of(const char *saga_id)
{
    char text[1024], why[SP_MAX_ERROR_TEXT] = "";
    snprintf(text, sizeof text,
             "{\"type\":\"command\",\"command_id\":\"%s/reserve/action/1\",\"idempotency_key\":"
             "\"%s/reserve/action\",\"saga_id\":\"%s\",\"saga\":\"order\",\"saga_version\":1,"
             "\"step\":\"reserve\",\"kind\":\"action\",\"command\":\"inventory.reserve\","
             "\"attempt\":1,\"payload\":{\"sku\":\"A-1\",\"qty\":2},\"reply_to\":{\"topic\":"
             "\"saga.input\",\"partition\":0},\"sent_at\":1764085000123,\"deadline\":"
             "1764085010123}",
             saga_id, saga_id, saga_id);
    saga_command_t *cmd = NULL;
    cr_assert_eq(sp_command_parse(text, strlen(text), &cmd, why, sizeof why), SP_PARSE_OK, "%s",
                 why);
    return cmd;
}

static sp_dedup_t *dedup_new(const char *prefix, char *err, size_t errlen)
{
    sp_dedup_config_t cfg = {
        .redis = {.cluster = true, .cluster_nodes = cluster.seeds},
        .prefix = prefix,
        .retention_s = 3600,
        .lease_ms = 60000,
    };
    return sp_dedup_new(&cfg, err, errlen);
}

/* Decides and records saga_id's action with one effect on effect_key; returns the
 * recorded body's "status" check: the verdict of the check (RUN expected) and of the
 * record. */
static void run_once(sp_dedup_t *d, const char *saga_id, const char *effect_key,
                     const char *expect_status)
{
    saga_command_t *cmd = command_of(saga_id);
    sp_check_t chk;
    cr_assert_eq(sp_dedup_check(d, cmd, &chk), 0, "%s: check", saga_id);
    cr_assert_eq(chk.verdict, SP_CHECK_RUN, "%s: a new command runs", saga_id);
    json_decref(chk.body);
    saga_result_t res;
    sp_result_init(&res);
    cr_assert_eq(saga_result_ok(&res, json_pack("{s:s}", "reservation", saga_id)), 0);
    cr_assert_eq(saga_result_effectl(&res, "HINCRBY", effect_key, "A-1", "2", NULL), 0);
    json_t *body = sp_result_body_new(&res);
    sp_record_t rec;
    cr_assert_eq(sp_dedup_record(d, cmd, &res, body, &rec), 0, "%s: record", saga_id);
    cr_assert_eq(rec.verdict, SP_RECORD_RECORDED);
    char *recorded = json_dumps(rec.body, 0); /* the message is formatted even on a pass */
    cr_assert_str_eq(json_string_value(json_object_get(rec.body, "status")), expect_status,
                     "%s", recorded ? recorded : "?");
    free(recorded);
    json_decref(rec.body);
    json_decref(body);
    sp_result_release(&res);
    sp_command_free(cmd);
}

/* The repeat of saga_id's action is answered from its record. */
static void repeat_resends(sp_dedup_t *d, const char *saga_id)
{
    saga_command_t *cmd = command_of(saga_id);
    sp_check_t chk;
    cr_assert_eq(sp_dedup_check(d, cmd, &chk), 0, "%s: check of the repeat", saga_id);
    cr_assert_eq(chk.verdict, SP_CHECK_RESEND, "%s: the repeat is resent", saga_id);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(chk.body, "output"), "reservation")),
                     saga_id);
    json_decref(chk.body);
    sp_command_free(cmd);
}

static long long balance(void)
{
    redisReply *r = rcfixture_command(&cluster, LEDGER, "HGET %s A-1", LEDGER);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "HGET " LEDGER);
    long long v = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return v;
}

Test(redis_cluster_queries, sdk_dedupe_follows_its_slot_across_primaries)
{
    cr_assert_eq(rcfixture_start(&cluster, 3, 0, NULL), 0);
    char err[512] = "";
    sp_dedup_t *d = dedup_new(DEDUP_PREFIX, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    int slot = rcfixture_key_slot(&cluster, DEDUP_PREFIX);
    cr_assert_eq(slot, rcfixture_key_slot(&cluster, LEDGER));
    int first = rcfixture_primary_of(&cluster, slot);

    run_once(d, "o-1", LEDGER, "ok");
    cr_assert_eq(balance(), 2);
    repeat_resends(d, "o-1");

    /* The slot moves between two calls: MOVED, the map read again, and the scripts,
     * unknown to the new primary, sent along (NOSCRIPT, then EVAL). */
    int second = (first + 1) % cluster.count;
    cr_assert_eq(rcfixture_migrate_slot(&cluster, slot, second, 10, 0), 0);
    repeat_resends(d, "o-1");
    cr_assert_eq(balance(), 2, "the repeat applied nothing");
    run_once(d, "o-2", LEDGER, "ok");
    cr_assert_eq(balance(), 4);
    redisContext *ctx = rcfixture_connect(&cluster, second);
    cr_assert_not_null(ctx);
    redisReply *r = redisCommand(ctx, "CLUSTER COUNTKEYSINSLOT %d", slot);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 3,
              "the two records and the ledger on the new primary");
    freeReplyObject(r);
    redisFree(ctx);

    /* Half-way back: the repeats are answered wherever their record is (ASK). */
    cr_assert_eq(rcfixture_migrate_begin(&cluster, slot, first, 1, 0, 1), 0);
    repeat_resends(d, "o-1");
    repeat_resends(d, "o-2");
    cr_assert_eq(rcfixture_migrate_finish(&cluster, slot, first, 10), 0);
    repeat_resends(d, "o-1");
    run_once(d, "o-3", LEDGER, "ok");
    cr_assert_eq(balance(), 6);

    /* An effect on a key of another slot: rejected, recorded as a retryable failure,
     * nothing applied. */
    run_once(d, "o-4", "ledger:{other}:balance", "failed");
    redisReply *other = rcfixture_command(&cluster, "ledger:{other}:balance", "EXISTS %s",
                                          "ledger:{other}:balance");
    cr_assert(other && other->type == REDIS_REPLY_INTEGER && other->integer == 0);
    freeReplyObject(other);
    sp_dedup_free(d);

    /* A prefix without a hash tag cannot keep a command's keys on one slot. */
    cr_assert_null(dedup_new("dedup:grp:", err, sizeof err));
    cr_assert(strstr(err, "has no hash tag"), "%s", err);
}

/* ---- the example services (C SDK and Python) on a cluster ------------------------------- */

#define SVC_TOPICS "inventory.commands:1,py.commands:1,replies:1"
#define SVC_REPLY_TIMEOUT_MS 30000

static broker_fixture_t broker;
static rd_kafka_t *producer;
static fixture_collector_t *replies;
static pid_t services[2];

static void services_teardown(void)
{
    for (int i = 0; i < 2; i++)
        if (services[i] > 0)
            (void)fixture_stop_process(services[i], FIXTURE_STOP_TIMEOUT_MS);
    fixture_collector_free(replies);
    replies = NULL;
    if (producer)
        rd_kafka_destroy(producer);
    producer = NULL;
    fixture_broker_stop(&broker);
    rcfixture_stop(&cluster);
}

/* Produces inventory.reserve for saga to topic, as a coordinator would. */
static void reserve_send(const char *topic, const char *saga)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"type\":\"command\",\"command_id\":\"%s/reserve/action/1\",\"idempotency_key\":"
             "\"%s/reserve/action\",\"saga_id\":\"%s\",\"saga\":\"order\",\"saga_version\":1,"
             "\"step\":\"reserve\",\"kind\":\"action\",\"command\":\"inventory.reserve\","
             "\"attempt\":1,\"payload\":{\"sku\":\"A-1\",\"qty\":2},\"reply_to\":{\"topic\":"
             "\"replies\",\"partition\":0},\"sent_at\":1764085000123,\"deadline\":"
             "4102444800000}",
             saga, saga, saga);
    cr_assert_eq(fixture_produce(producer, topic, 0, saga, text), 0);
}

typedef struct reply_wait {
    const char *saga;
    size_t nth;
} reply_wait_t;

static size_t replies_of(const char *saga, const char **status)
{
    size_t seen = 0, n = fixture_collector_count(replies);
    for (size_t i = 0; i < n; i++) {
        const fixture_message_t *m = fixture_collector_at(replies, i);
        if (m->key && strcmp(m->key, saga) == 0) {
            seen++;
            if (status)
                *status = strstr(m->value, "\"status\":\"ok\"") ? "ok" : m->value;
        }
    }
    return seen;
}

static bool reply_came(void *opaque)
{
    const reply_wait_t *w = opaque;
    return replies_of(w->saga, NULL) >= w->nth;
}

/* Waits for the nth reply to saga's command; it must be ok. */
static void reply_ok(const char *saga, size_t nth, const char *log)
{
    reply_wait_t w = {saga, nth};
    cr_assert(fixture_wait_until(reply_came, &w, SVC_REPLY_TIMEOUT_MS),
              "no reply #%zu for %s (service log: %s)", nth, saga, log);
    const char *status = NULL;
    replies_of(saga, &status);
    cr_assert_str_eq(status, "ok", "%s", status);
}

/* The handler runs recorded for saga's reserve action under prefix. */
static long long runs_of(const char *prefix, const char *saga)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s/reserve/action", prefix, saga);
    redisReply *r = rcfixture_command(&cluster, key, "HGET %s runs", key);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "no dedup record %s", key);
    long long n = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return n;
}

Test(redis_cluster_queries, example_services_follow_their_slot, .fini = services_teardown)
{
    cr_assert_eq(rcfixture_start(&cluster, 3, 0, NULL), 0);
    cr_assert_eq(fixture_broker_start(&broker, 1, SVC_TOPICS), 0);
    producer = fixture_producer_new(broker.bootstrap);
    replies = fixture_collector_new(broker.bootstrap, NULL, "replies");
    cr_assert(producer && replies);

    /* The C example and the Python one, each with its own topic and dedup prefix (both
     * tagged {inventory}, as their shared ledger is). */
    char bin[PATH_MAX], script[PATH_MAX], logs[2][PATH_MAX + 32];
    cr_assert_eq(fixture_bin_path("inventory-service", bin, sizeof bin), 0);
    snprintf(script, sizeof script, "%s/participants/python/example_participant.py",
             getenv("SAGA_SOURCE_DIR"));
    for (int i = 0; i < 2; i++)
        snprintf(logs[i], sizeof logs[i], "%s/service-%d.log", broker.dir, i);
    const char *c_argv[] = {bin, "--bootstrap", broker.bootstrap, "--redis-cluster", "1",
                            "--redis-cluster-nodes", cluster.seeds, NULL};
    const char *py_argv[] = {"/usr/bin/python3", script, "--service", "inventory",
                             "--bootstrap", broker.bootstrap, "--topic", "py.commands",
                             "--group", "py-inventory", "--dedup-prefix", "pydedup:{inventory}:",
                             "--redis-cluster", "1", "--redis-cluster-nodes", cluster.seeds,
                             NULL};
    services[0] = fixture_spawn(c_argv, logs[0], NULL);
    services[1] = fixture_spawn(py_argv, logs[1], NULL);
    cr_assert(services[0] > 0 && services[1] > 0);
    const char *topics[] = {"inventory.commands", "py.commands"};
    const char *prefixes[] = {"dedup:{inventory}:", "pydedup:{inventory}:"};
    const char *firsts[] = {"c-1", "py-1"}, *seconds[] = {"c-2", "py-2"};

    for (int i = 0; i < 2; i++) {
        reserve_send(topics[i], firsts[i]);
        reply_ok(firsts[i], 1, logs[i]);
    }
    /* The slot of {inventory} moves: the repeats are answered from the records on the
     * new primary, the handlers not run again. */
    int slot = rcfixture_key_slot(&cluster, "{inventory}");
    int from = rcfixture_primary_of(&cluster, slot), to = (from + 1) % cluster.count;
    cr_assert_eq(rcfixture_migrate_slot(&cluster, slot, to, 10, 0), 0);
    for (int i = 0; i < 2; i++) {
        reserve_send(topics[i], firsts[i]);
        reply_ok(firsts[i], 2, logs[i]);
        cr_assert_eq(runs_of(prefixes[i], firsts[i]), 1, "%s: the handler ran once",
                     firsts[i]);
        reserve_send(topics[i], seconds[i]);
        reply_ok(seconds[i], 1, logs[i]);
        cr_assert_eq(runs_of(prefixes[i], seconds[i]), 1);
    }
    /* Both reservations of each service are in the shared ledger, once each. */
    redisReply *r = rcfixture_command(&cluster, "ledger:{inventory}:entries", "LLEN %s",
                                      "ledger:{inventory}:entries");
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 4, "ledger entries: %lld",
              r ? r->integer : -1);
    freeReplyObject(r);
}

/* ---- a coordinator on the cluster: sagactl and the dashboard API read its sagas -------- */

#define LIVE_WAIT_MS 40000

typedef struct live_wait {
    const char *id, *status;
} live_wait_t;

/* True when saga id has status in the cluster (looked up in every partition). */
static bool live_status(void *opaque)
{
    const live_wait_t *w = opaque;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[128];
        snprintf(key, sizeof key, "saga:{p%d}:saga:%s", p, w->id);
        redisReply *r = rcfixture_command(&cluster, key, "HGET %s status", key);
        bool hit = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, w->status) == 0;
        freeReplyObject(r);
        if (hit)
            return true;
    }
    return false;
}

static void live_expect(const char *id, const char *status)
{
    live_wait_t w = {id, status};
    cr_assert(fixture_wait_until(live_status, &w, LIVE_WAIT_MS), "saga %s is not %s (logs: %s)",
              id, status, sys.dir);
}

static bool live_owned(void *opaque)
{
    (void)opaque;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[64];
        snprintf(key, sizeof key, "saga:{p%d}:owner", p);
        redisReply *r = rcfixture_command(&cluster, key, "EXISTS %s", key);
        bool ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (!ok)
            return false;
    }
    return true;
}

/* The sagas of a sagactl list --json or GET /api/sagas document, as "id=status," text. */
static void ids_of(const char *doc_text, char *out, size_t len)
{
    json_t *doc = json_loads(doc_text, 0, NULL);
    cr_assert_not_null(doc, "%s", doc_text);
    out[0] = '\0';
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(doc, "sagas"), i, s)
    {
        size_t n = strlen(out);
        snprintf(out + n, len - n, "%s=%s,", json_string_value(json_object_get(s, "id")),
                 json_string_value(json_object_get(s, "status")));
    }
    json_decref(doc);
}

Test(redis_cluster_queries, a_coordinator_on_the_cluster_is_read_by_sagactl_and_the_dashboard)
{
    cr_assert_eq(ops_defs_make(defs, sizeof defs), 0);
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0, "system starts");
    cr_assert_eq(rcfixture_start(&cluster, 3, 0, NULL), 0);
    int http_port = fixture_free_port();
    char nodes[600], listen[64];
    snprintf(nodes, sizeof nodes, "--redis_cluster_nodes=%s", cluster.seeds);
    snprintf(listen, sizeof listen, "--http_listen=127.0.0.1:%d", http_port);
    const char *args[] = {"--redis_cluster=1", nodes, listen, NULL};
    cr_assert_geq(system_add_coordinator(&sys, args, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, RULES,
                                 sizeof RULES / sizeof *RULES);
    cr_assert_not_null(participant);
    cr_assert(fixture_wait_until(live_owned, NULL, LIVE_WAIT_MS),
              "the coordinator owns every partition on the cluster (logs: %s)", sys.dir);
    const char *ids[] = {"done-1", "done-2", "comp-1", "stuck-1", "run-1"};
    const char *want[] = {"completed", "completed", "compensated", "stuck", "running"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(system_start_saga(&sys, ids[i], "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "run-1", "slow", NULL), 0);
    for (size_t i = 0; i < 5; i++)
        live_expect(ids[i], want[i]);
    /* Nothing is in the single Redis the system also started: all went to the cluster. */
    redisReply *none = redisCommand(sys.rc, "DBSIZE");
    cr_assert(none && none->type == REDIS_REPLY_INTEGER && none->integer == 0,
              "keys in the single Redis: %lld", none ? none->integer : -1);
    freeReplyObject(none);

    /* sagactl on the cluster and the coordinator's dashboard API list the same sagas. */
    ops_run_t r;
    cr_assert_eq(ctl(&r, true, ARGS("list", "--json")), 0, "%s", r.err);
    char from_ctl[4096], from_http[4096];
    ids_of(r.out, from_ctl, sizeof from_ctl);
    ops_run_release(&r);
    for (size_t i = 0; i < 5; i++) {
        char pair[64];
        snprintf(pair, sizeof pair, "%s=%s,", ids[i], want[i]);
        cr_assert(strstr(from_ctl, pair), "sagactl list: %s lacks %s", from_ctl, pair);
    }
    char *body = NULL;
    cr_assert_eq(ops_http_get(http_port, "/api/sagas", &body), 200, "%s", body ? body : "");
    ids_of(body, from_http, sizeof from_http);
    free(body);
    cr_assert_str_eq(from_http, from_ctl, "the dashboard lists what sagactl lists");
    cr_assert_eq(ops_http_get(http_port, "/api/sagas/stuck-1", &body), 200);
    cr_assert(strstr(body, "\"stuck\""), "%s", body);
    free(body);
    cr_assert_eq(ops_http_get(http_port, "/api/stats", &body), 200);
    cr_assert(strstr(body, "\"order\""), "%s", body);
    free(body);
    cr_assert_eq(ops_http_get(http_port, "/api/cluster", &body), 200);
    json_t *view = json_loads(body, 0, NULL);
    free(body);
    cr_assert_eq(json_array_size(json_object_get(view, "partitions")), SYSTEM_INPUT_PARTITIONS);
    cr_assert_eq(json_array_size(json_object_get(view, "members")), 1);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(view, "stuck"), "count")), 1);
    json_decref(view);
    cr_assert_eq(ctl(&r, true, ARGS("show", "comp-1")), 0, "%s", r.err);
    cr_assert(strstr(r.out, "status      compensated\n"), "%s", r.out);
    ops_run_release(&r);

}

/* The slot of a busy partition moves under the running coordinator; new sagas of every
 * partition still end, and the queries still find everything. (Before clusterstore.c
 * rebound a partition at the start of its reload, the reload of a moved partition read
 * its position from the old primary and answered MOVED forever.) */
Test(redis_cluster_queries, a_coordinator_follows_a_slot_migration)
{
    cr_assert_eq(ops_defs_make(defs, sizeof defs), 0);
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0, "system starts");
    cr_assert_eq(rcfixture_start(&cluster, 3, 0, NULL), 0);
    char nodes[600];
    snprintf(nodes, sizeof nodes, "--redis_cluster_nodes=%s", cluster.seeds);
    const char *args[] = {"--redis_cluster=1", nodes, NULL};
    cr_assert_geq(system_add_coordinator(&sys, args, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, RULES,
                                 sizeof RULES / sizeof *RULES);
    cr_assert_not_null(participant);
    cr_assert(fixture_wait_until(live_owned, NULL, LIVE_WAIT_MS),
              "the coordinator owns every partition on the cluster (logs: %s)", sys.dir);
    cr_assert_eq(system_start_saga(&sys, "done-1", "order", INPUT), 0);
    live_expect("done-1", "completed");
    ops_run_t r;
    char from_ctl[4096];
    int p = -1;
    for (int q = 0; q < SYSTEM_INPUT_PARTITIONS && p < 0; q++) {
        char key[128];
        snprintf(key, sizeof key, "saga:{p%d}:saga:done-1", q);
        redisReply *e = rcfixture_command(&cluster, key, "EXISTS %s", key);
        if (e && e->type == REDIS_REPLY_INTEGER && e->integer == 1)
            p = q;
        freeReplyObject(e);
    }
    cr_assert_geq(p, 0);
    char tag[16];
    snprintf(tag, sizeof tag, "{p%d}", p);
    int slot = rcfixture_key_slot(&cluster, tag);
    int from = rcfixture_primary_of(&cluster, slot), to = (from + 1) % cluster.count;
    cr_assert_eq(rcfixture_migrate_slot(&cluster, slot, to, 10, 5), 0);
    const char *later[] = {"late-1", "late-2", "late-3", "late-4", "late-5", "late-6"};
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(system_start_saga(&sys, later[i], "order", INPUT), 0);
    for (size_t i = 0; i < 6; i++)
        live_expect(later[i], "completed");
    cr_assert_eq(ctl(&r, true, ARGS("list", "--status", "completed", "--json")), 0, "%s", r.err);
    ids_of(r.out, from_ctl, sizeof from_ctl);
    ops_run_release(&r);
    for (size_t i = 0; i < 6; i++)
        cr_assert(strstr(from_ctl, later[i]), "%s", from_ctl);
    cr_assert(strstr(from_ctl, "done-1=completed,"), "%s", from_ctl);
}
