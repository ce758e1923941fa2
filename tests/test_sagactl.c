/* test_sagactl.c - the real sagactl binary against a running system (redis-server, the
 * embedded broker, a coordinator, a scripted participant): every verb, its text and
 * --json output, and its exit codes. */
#include "opstest.h"
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 20000
#define CTL_TIMEOUT_MS 60000

static test_system_t sys;
static scripted_t *participant;
static char defs[PATH_MAX];
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

static const script_rule_t RULES[] = {
    {"comp-1", "charge", "action", 0, SCRIPT_FAIL, NULL},
    {"wait-comp", "reserve", "action", 0, SCRIPT_FAIL, NULL},
    {"stuck-1", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"stuck-1", "charge", "compensation", 0, SCRIPT_FAIL, NULL},
    {"stuck-retry", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"stuck-retry", "charge", "compensation", 1, SCRIPT_FAIL, NULL},
    {"stuck-skip", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"stuck-skip", "charge", "compensation", 0, SCRIPT_FAIL, NULL},
    {NULL, "hold", "action", 0, SCRIPT_SILENT, NULL}, /* "slow" sagas stay running */
};

static void setup(void)
{
    cr_assert_eq(ops_defs_make(defs, sizeof defs), 0);
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0, "system starts");
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, RULES,
                                 sizeof RULES / sizeof *RULES);
    cr_assert_not_null(participant);
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
}

static void teardown(void)
{
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
    if (defs[0])
        ops_defs_remove(defs);
    defs[0] = '\0';
}

/* Runs sagactl with the system's connection flags, then args (NULL-terminated). */
static int ctl_in(ops_run_t *r, const char *stdin_text, const char *const *args)
{
    char bin[PATH_MAX], boot[600], port[64];
    cr_assert_eq(fixture_bin_path("sagactl", bin, sizeof bin), 0);
    snprintf(boot, sizeof boot, "--bootstrap_servers=%s", sys.broker.bootstrap);
    snprintf(port, sizeof port, "--redis_port=%d", sys.redis.port);
    const char *argv[32] = {bin, boot, port};
    int n = 3;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return ops_run(r, argv, NULL, stdin_text, CTL_TIMEOUT_MS);
}

#define CTL(r, ...) ctl_in((r), NULL, (const char *const[]){__VA_ARGS__, NULL})

static void expect_status(const char *id, const char *status)
{
    char why[8192] = "";
    cr_assert(system_expect_status(&sys, id, status, WAIT_MS, why, sizeof why), "%s", why);
}

/* The line of out that starts with id (as a table row does), or NULL. */
static const char *row_of(const char *out, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, id, n) == 0 && p[n] == ' ')
            return p;
    return NULL;
}

static bool row_has(const char *out, const char *id, const char *word)
{
    const char *row = row_of(out, id);
    if (!row)
        return false;
    const char *end = strchr(row, '\n');
    const char *hit = strstr(row, word);
    return hit && (!end || hit < end);
}

static json_t *parse(const ops_run_t *r)
{
    json_error_t je;
    json_t *v = json_loads(r->out, 0, &je);
    cr_assert_not_null(v, "--json output parses: %s\n%s", je.text, r->out);
    return v;
}

TestSuite(sagactl, .init = setup, .fini = teardown, .timeout = 240);

Test(sagactl, list_show_and_stats_read_the_documented_keys)
{
    const char *ids[] = {"done-1", "done-2", "comp-1", "stuck-1"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(system_start_saga(&sys, ids[i], "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "run-1", "slow", NULL), 0);
    expect_status("done-1", "completed");
    expect_status("done-2", "completed");
    expect_status("comp-1", "compensated");
    expect_status("stuck-1", "stuck");
    expect_status("run-1", "running");

    ops_run_t r;
    cr_assert_eq(CTL(&r, "list"), 0, "list: %s", r.err);
    cr_assert(strstr(r.out, "ID ") == r.out, "a header first:\n%s", r.out);
    cr_assert(strstr(r.out, "STATUS") && strstr(r.out, "DEFINITION") && strstr(r.out, "ERROR"));
    cr_assert(row_has(r.out, "done-1", "completed"), "%s", r.out);
    cr_assert(row_has(r.out, "comp-1", "compensated"), "%s", r.out);
    cr_assert(row_has(r.out, "comp-1", "step charge failed"), "%s", r.out);
    cr_assert(row_has(r.out, "stuck-1", "stuck"), "%s", r.out);
    cr_assert(row_has(r.out, "run-1", "running"), "%s", r.out);
    cr_assert(row_has(r.out, "run-1", "slow v1"), "%s", r.out);
    ops_run_release(&r);

    cr_assert_eq(CTL(&r, "list", "--status", "stuck"), 0);
    cr_assert(row_of(r.out, "stuck-1") && !row_of(r.out, "done-1") && !row_of(r.out, "run-1"),
              "%s", r.out);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "list", "--definition", "slow"), 0);
    cr_assert(row_of(r.out, "run-1") && !row_of(r.out, "done-1"), "%s", r.out);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "list", "--until", "1"), 0);
    cr_assert_str_eq(r.out, "no sagas match\n");
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "list", "--since", "1h", "--status", "finished"), 0);
    cr_assert(row_of(r.out, "done-1") && row_of(r.out, "comp-1") && !row_of(r.out, "stuck-1"));
    ops_run_release(&r);

    /* --json: completed only, newest first */
    cr_assert_eq(CTL(&r, "list", "--status", "completed", "--json"), 0);
    json_t *doc = parse(&r);
    json_t *sagas = json_object_get(doc, "sagas");
    cr_assert_eq(json_array_size(sagas), 2);
    size_t i;
    json_t *s;
    json_array_foreach(sagas, i, s)
    {
        cr_assert_str_eq(json_string_value(json_object_get(s, "status")), "completed");
        cr_assert_str_eq(json_string_value(json_object_get(s, "definition")), "order");
    }
    cr_assert_geq(json_integer_value(json_object_get(json_array_get(sagas, 0), "score")),
                  json_integer_value(json_object_get(json_array_get(sagas, 1), "score")));
    cr_assert(json_is_null(json_object_get(doc, "next_cursor")));
    json_decref(doc);
    ops_run_release(&r);

    /* paging: 2 at a time, every saga once */
    char cursor[300] = "";
    json_t *seen = json_object();
    for (int page = 0; page < 5; page++) {
        if (cursor[0])
            cr_assert_eq(CTL(&r, "list", "--limit", "2", "--cursor", cursor, "--json"), 0, "%s", r.err);
        else
            cr_assert_eq(CTL(&r, "list", "--limit", "2", "--json"), 0);
        doc = parse(&r);
        json_array_foreach(json_object_get(doc, "sagas"), i, s)
        {
            const char *id = json_string_value(json_object_get(s, "id"));
            cr_assert_null(json_object_get(seen, id), "%s listed twice", id);
            json_object_set_new(seen, id, json_true());
        }
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        json_decref(doc);
        ops_run_release(&r);
        if (!cursor[0])
            break;
    }
    cr_assert_eq(json_object_size(seen), 5, "five sagas over the pages");
    cr_assert_eq(cursor[0], '\0', "the last page has no cursor");
    json_decref(seen);

    cr_assert_eq(CTL(&r, "list", "--status", "bogus"), 1);
    cr_assert(strstr(r.err, "unknown status"), "%s", r.err);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "list", "--cursor", "garbage"), 1);
    ops_run_release(&r);

    /* show */
    cr_assert_eq(CTL(&r, "show", "done-1"), 0, "%s", r.err);
    cr_assert(strstr(r.out, "saga        done-1\n"), "%s", r.out);
    cr_assert(strstr(r.out, "status      completed\n"), "%s", r.out);
    cr_assert(strstr(r.out, "definition  order v1\n"), "%s", r.out);
    cr_assert(row_has(r.out, "0", "reserve") && row_has(r.out, "2", "ship"), "%s", r.out);
    cr_assert(strstr(r.out, "OUTPUTS") && strstr(r.out, "{\"reserve_id\":\"done-1\"}"), "%s", r.out);
    cr_assert(strstr(r.out, "HISTORY (") && strstr(r.out, "action_ok") &&
              strstr(r.out, "completed"), "%s", r.out);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "show", "stuck-1"), 0);
    cr_assert(strstr(r.out, "status      stuck\n") && strstr(r.out, "comp_failed"), "%s", r.out);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "show", "comp-1", "--json"), 0);
    doc = parse(&r);
    json_t *saga = json_object_get(doc, "saga");
    cr_assert_str_eq(json_string_value(json_object_get(saga, "status")), "compensated");
    json_t *steps = json_object_get(saga, "steps");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(steps, 0), "phase")),
                     "compensated");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(steps, 1), "phase")),
                     "failed");
    json_t *history = json_object_get(doc, "history");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(history, json_array_size(history) - 1), "event")),
                     "compensated");
    cr_assert(json_is_integer(json_object_get(saga, "created_at")));
    json_decref(doc);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "show", "no-such-saga"), 2);
    cr_assert(strstr(r.err, "no saga \"no-such-saga\""), "%s", r.err);
    ops_run_release(&r);

    /* stats */
    cr_assert_eq(CTL(&r, "stats"), 0, "%s", r.err);
    cr_assert(strstr(r.out, "DEFINITION") && row_has(r.out, "order", "4") &&
              row_of(r.out, "slow") && row_of(r.out, "(all)"), "%s", r.out);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "stats", "--json"), 0);
    doc = parse(&r);
    json_t *order = NULL, *slow = NULL;
    json_array_foreach(json_object_get(doc, "definitions"), i, s)
    {
        const char *name = json_string_value(json_object_get(s, "definition"));
        if (strcmp(name, "order") == 0)
            order = s;
        if (strcmp(name, "slow") == 0)
            slow = s;
    }
    cr_assert(order && slow);
    cr_assert_eq(json_integer_value(json_object_get(order, "started")), 4);
    cr_assert_eq(json_integer_value(json_object_get(order, "completed")), 2);
    cr_assert_eq(json_integer_value(json_object_get(order, "compensated")), 1);
    cr_assert_eq(json_integer_value(json_object_get(order, "stuck_now")), 1);
    cr_assert_eq(json_integer_value(json_object_get(order, "completed_1m")), 2);
    cr_assert_eq(json_integer_value(json_object_get(order, "compensated_1h")), 1);
    cr_assert_eq(json_integer_value(json_object_get(slow, "running")), 1);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(doc, "indexes"), "stuck")), 1);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(doc, "totals"), "started")), 5);
    json_decref(doc);
    ops_run_release(&r);

    /* cluster: the one coordinator owns every partition; stuck-1 is listed; run-1 and
     * stuck-1 are active in their partitions */
    cr_assert_eq(CTL(&r, "cluster", "--json"), 0, "%s", r.err);
    doc = parse(&r);
    json_t *members = json_object_get(doc, "members");
    cr_assert_eq(json_array_size(members), 1, "%s", r.out);
    char me[256];
    const char *instance =
        json_string_value(json_object_get(json_array_get(members, 0), "instance"));
    cr_assert_not_null(instance);
    snprintf(me, sizeof me, "%s", instance); /* kept after doc goes */
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(members, 0), "pid")),
                 sys.coordinators[0]);
    json_int_t active = 0;
    json_array_foreach(json_object_get(doc, "partitions"), i, s)
    {
        cr_assert_str_eq(json_string_value(json_object_get(s, "owner")), me);
        cr_assert(json_is_true(json_object_get(s, "owner_live")), "%s", r.out);
        cr_assert_geq(json_integer_value(json_object_get(s, "epoch")), 1);
        cr_assert(json_is_integer(json_object_get(s, "taken_ago_ms")), "%s", r.out);
        cr_assert(json_is_integer(json_object_get(s, "outbox")), "%s", r.out);
        active += json_integer_value(json_object_get(s, "active"));
    }
    cr_assert_eq(json_array_size(json_object_get(doc, "partitions")), SYSTEM_INPUT_PARTITIONS);
    cr_assert_eq(active, 2, "run-1 and stuck-1: %s", r.out);
    json_t *stuck = json_object_get(doc, "stuck");
    cr_assert_eq(json_integer_value(json_object_get(stuck, "count")), 1);
    s = json_array_get(json_object_get(stuck, "sagas"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(s, "id")), "stuck-1");
    cr_assert_str_eq(json_string_value(json_object_get(s, "definition")), "order");
    cr_assert(json_string_length(json_object_get(s, "error")) > 0, "%s", r.out);
    json_decref(doc);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "cluster"), 0, "%s", r.err);
    cr_assert(strstr(r.out, "INSTANCES (1 live)") && strstr(r.out, me), "%s", r.out);
    cr_assert(strstr(r.out, "PARTITIONS (4)") && strstr(r.out, "OWNER"), "%s", r.out);
    cr_assert(strstr(r.out, "STUCK SAGAS (1") && row_has(r.out, "stuck-1", "order v1"), "%s",
              r.out);
    ops_run_release(&r);
}

Test(sagactl, start_abort_retry_skip_and_exit_codes)
{
    ops_run_t r;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/input.json", sys.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(INPUT, f);
    fclose(f);

    /* start --wait: completed 0, compensated 3, rejected 3, timeout 5 */
    cr_assert_eq(CTL(&r, "start", "order", "--id", "cli-1", "--input", path, "--wait",
                     "--timeout", "30"), 0, "%s%s", r.out, r.err);
    cr_assert(strstr(r.out, "cli-1 completed after "), "%s", r.out);
    ops_run_release(&r);
    cr_assert_eq(ctl_in(&r, INPUT, (const char *const[]){"start", "order", "--id", "wait-comp",
                                                          "--input", "-", "--wait", "--json", NULL}),
                 3, "%s%s", r.out, r.err);
    json_t *doc = parse(&r);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "status")), "compensated");
    cr_assert_str_eq(json_string_value(json_object_get(doc, "saga_id")), "wait-comp");
    json_decref(doc);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "start", "no-such-definition", "--wait", "--timeout", "30"), 3);
    cr_assert(strstr(r.out, "rejected") && strstr(r.out, "unknown saga definition"), "%s", r.out);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "start", "slow", "--id", "run-3", "--wait", "--timeout", "1"), 5);
    cr_assert(strstr(r.err, "no outcome for run-3 within 1 s"), "%s", r.err);
    ops_run_release(&r);
    cr_assert_eq(ctl_in(&r, "[1, 2", (const char *const[]){"start", "order", "--input", "-", NULL}), 1);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "start", "order", "--id", "bad id!"), 1);
    ops_run_release(&r);

    /* start without waiting, then abort it */
    cr_assert_eq(CTL(&r, "start", "slow", "--id", "run-2", "--json"), 0, "%s", r.err);
    doc = parse(&r);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "saga_id")), "run-2");
    int reported = (int)json_integer_value(json_object_get(doc, "partition"));
    json_decref(doc);
    ops_run_release(&r);
    expect_status("run-2", "running");
    char buf[64];
    cr_assert_eq(atoi(system_field(&sys, "run-2", "partition", buf, sizeof buf)), reported,
                 "the saga lives on the partition its start was produced to");
    cr_assert_eq(CTL(&r, "abort", "run-2", "--reason", "operator test"), 0, "%s", r.err);
    cr_assert(strstr(r.out, "abort sent for run-2 (was running)"), "%s", r.out);
    ops_run_release(&r);
    expect_status("run-2", "compensating"); /* its step is in flight: compensation waits */
    char err[256] = "";
    cr_assert(strstr(system_field(&sys, "run-2", "error", err, sizeof err), "operator test"),
              "%s", err);
    cr_assert_eq(CTL(&r, "abort", "run-2"), 6, "abort of a compensating saga");
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "abort", "cli-1"), 6, "abort of a completed saga");
    cr_assert(strstr(r.err, "saga cli-1 is completed"), "%s", r.err);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "abort", "nobody"), 2);
    ops_run_release(&r);

    /* retry and skip of stuck sagas */
    cr_assert_eq(system_start_saga(&sys, "stuck-retry", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "stuck-skip", "order", INPUT), 0);
    expect_status("stuck-retry", "stuck");
    expect_status("stuck-skip", "stuck");
    cr_assert_eq(CTL(&r, "retry", "cli-1"), 6);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "retry", "stuck-retry", "--reason", "x"), 1, "retry takes no reason");
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "retry", "stuck-retry"), 0, "%s", r.err);
    ops_run_release(&r);
    expect_status("stuck-retry", "compensated");
    cr_assert_eq(CTL(&r, "skip", "stuck-skip"), 1, "skip needs a reason");
    cr_assert(strstr(r.err, "--reason"), "%s", r.err);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "skip", "stuck-skip", "--reason", "refunded by hand", "--json"), 0);
    doc = parse(&r);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "request")), "skip");
    json_decref(doc);
    ops_run_release(&r);
    expect_status("stuck-skip", "compensated");
    json_t *h = system_history(&sys, "stuck-skip");
    size_t i;
    json_t *e;
    bool skipped = false;
    json_array_foreach(h, i, e)
        skipped = skipped || strcmp(json_string_value(json_object_get(e, "event")),
                                    "compensation_skipped") == 0;
    json_decref(h);
    cr_assert(skipped, "the history records the skip");

    /* settings from the environment, as the coordinator's */
    char bin[PATH_MAX], env_port[64], env_boot[600];
    cr_assert_eq(fixture_bin_path("sagactl", bin, sizeof bin), 0);
    snprintf(env_port, sizeof env_port, "SAGA_REDIS_PORT=%d", sys.redis.port);
    snprintf(env_boot, sizeof env_boot, "SAGA_BOOTSTRAP_SERVERS=%s", sys.broker.bootstrap);
    cr_assert_eq(ops_run(&r, (const char *const[]){bin, "show", "cli-1", NULL},
                         (const char *const[]){env_port, env_boot, NULL}, NULL, CTL_TIMEOUT_MS), 0);
    ops_run_release(&r);

    /* unreachable: 4; usage: 1 */
    cr_assert_eq(CTL(&r, "list", "--redis_port=1"), 4);
    cr_assert(strstr(r.err, "cannot connect to redis"), "%s", r.err);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "start", "order", "--bootstrap_servers=127.0.0.1:1",
                     "--kafka.message.timeout.ms=1000"), 4);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "frobnicate"), 1);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "show"), 1);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "list", "--wait"), 1);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "list", "--no_such_setting=1"), 1);
    ops_run_release(&r);
    cr_assert_eq(CTL(&r, "--help"), 0);
    cr_assert(strstr(r.out, "Exit codes:") && strstr(r.out, "SAGA_REDIS_PORT"), "%s", r.out);
    ops_run_release(&r);
}
