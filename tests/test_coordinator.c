/* test_coordinator.c - integration tests of saga-coordinator against a real redis-server
 * and the embedded broker, with scripted participants. State is read only through the
 * documented Redis keys (docs/redis.md); effects through the commands participants got. */
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define WAIT_MS 20000

static test_system_t sys;
static scripted_t *participant;
static fixture_collector_t *outcomes, *deadletters;
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};

static void start_system(const script_rule_t *rules, size_t n)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, NULL), 0, "system starts");
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, rules, n);
    cr_assert_not_null(participant);
    outcomes = fixture_collector_new(sys.broker.bootstrap, NULL, "saga.outcomes");
    deadletters = fixture_collector_new(sys.broker.bootstrap, NULL, "saga.deadletter");
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
}

static void stop_system(void)
{
    fixture_collector_free(outcomes);
    fixture_collector_free(deadletters);
    scripted_stop(participant);
    system_stop(&sys);
    outcomes = deadletters = NULL;
    participant = NULL;
}

static void expect_trail(const char *id, const char *expected)
{
    char trail[2048];
    scripted_trail(participant, id, trail, sizeof trail);
    cr_assert_str_eq(trail, expected, "commands received for %s", id);
}

static void expect_status(const char *id, const char *status)
{
    char why[8192] = "";
    cr_assert(system_expect_status(&sys, id, status, WAIT_MS, why, sizeof why), "%s", why);
}

/* The outcome message of saga id, waiting for it; new reference or NULL. */
static json_t *outcome_of(const char *id)
{
    int64_t deadline = fixture_now_ms() + WAIT_MS;
    while (fixture_now_ms() < deadline) {
        for (size_t i = 0; i < fixture_collector_count(outcomes); i++) {
            const fixture_message_t *m = fixture_collector_at(outcomes, i);
            if (m->key && strcmp(m->key, id) == 0)
                return json_loads(m->value, 0, NULL);
        }
        fixture_collector_wait(outcomes, fixture_collector_count(outcomes) + 1, 50);
    }
    return NULL;
}

static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

TestSuite(coordinator, .fini = stop_system, .timeout = 120);

Test(coordinator, happy_path_passes_outputs_and_records_state)
{
    start_system(NULL, 0);
    cr_assert_eq(system_start_saga(&sys, "happy-1", "order", INPUT), 0);
    expect_status("happy-1", "completed");
    expect_trail("happy-1", "reserve/action/1 charge/action/1 ship/action/1");

    json_t *cmds = scripted_commands(participant, "happy-1");
    json_t *charge = json_array_get(cmds, 1);
    cr_assert_str_eq(json_string_value(json_object_get(charge, "command")), "payment.charge");
    json_t *payload = json_object_get(charge, "payload");
    cr_assert_str_eq(json_string_value(json_object_get(payload, "reservation")), "happy-1",
                     "the reserve step's output flows into charge");
    cr_assert_eq(json_integer_value(json_object_get(payload, "qty")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(charge, "idempotency_key")),
                     "happy-1/charge/action");
    json_decref(cmds);

    json_t *saga = system_saga(&sys, "happy-1", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(saga, "definition")), "order");
    cr_assert_str_eq(json_string_value(json_object_get(saga, "definition_version")), "1");
    cr_assert_str_eq(json_string_value(json_object_get(saga, "step")), "ship");
    cr_assert_neq(atoll(json_string_value(json_object_get(saga, "finished_at"))), 0);
    json_decref(saga);

    json_t *history = system_history(&sys, "happy-1");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(history, 0), "event")),
                     "started");
    cr_assert_str_eq(
        json_string_value(json_object_get(json_array_get(history, json_array_size(history) - 1), "event")),
        "completed");
    json_decref(history);

    json_t *out = outcome_of("happy-1");
    cr_assert_not_null(out, "an outcome is published");
    cr_assert_str_eq(json_string_value(json_object_get(out, "status")), "completed");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(out, "outputs"), "ship"), "ship_id")),
                     "happy-1");
    json_decref(out);
    cr_assert_eq(system_counter(&sys, "order:completed"), 1);
    cr_assert_eq(system_counter(&sys, "order:started"), 1);
    cr_assert_eq(system_counter(&sys, "order:active:running"), 0);
}

static const script_rule_t FAILURE_RULES[] = {
    {"fail-1", "reserve", "action", 0, SCRIPT_FAIL, NULL},
    {"fail-2", "charge", "action", 0, SCRIPT_FAIL, NULL},
    {"fail-3", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"timeout-1", "reserve", "action", 0, SCRIPT_SILENT, NULL},
    {"timeout-2", "charge", "action", 0, SCRIPT_SILENT, NULL},
    {"timeout-3", "ship", "action", 0, SCRIPT_SILENT, NULL},
};

Test(coordinator, failure_at_step_k_compensates_k_minus_1_to_1_in_order)
{
    start_system(FAILURE_RULES, sizeof FAILURE_RULES / sizeof *FAILURE_RULES);
    for (int k = 1; k <= 3; k++) {
        char id[32];
        snprintf(id, sizeof id, "fail-%d", k);
        cr_assert_eq(system_start_saga(&sys, id, "order", INPUT), 0);
    }
    for (int k = 1; k <= 3; k++) {
        char id[32];
        snprintf(id, sizeof id, "fail-%d", k);
        expect_status(id, "compensated");
    }
    expect_trail("fail-1", "reserve/action/1");
    expect_trail("fail-2", "reserve/action/1 charge/action/1 reserve/compensation/1");
    expect_trail("fail-3", "reserve/action/1 charge/action/1 ship/action/1 "
                           "charge/compensation/1 reserve/compensation/1");
    char err[512] = "";
    cr_assert(strstr(system_field(&sys, "fail-3", "error", err, sizeof err), "step ship failed"),
              "error: %s", err);
    json_t *out = outcome_of("fail-2");
    cr_assert_str_eq(json_string_value(json_object_get(out, "status")), "compensated");
    json_decref(out);
    cr_assert_eq(system_counter(&sys, "order:compensated"), 3);
}

Test(coordinator, timeout_at_step_k_compensates_k_to_1)
{
    start_system(FAILURE_RULES, sizeof FAILURE_RULES / sizeof *FAILURE_RULES);
    for (int k = 1; k <= 3; k++) {
        char id[32];
        snprintf(id, sizeof id, "timeout-%d", k);
        cr_assert_eq(system_start_saga(&sys, id, "order", INPUT), 0);
    }
    for (int k = 1; k <= 3; k++) {
        char id[32];
        snprintf(id, sizeof id, "timeout-%d", k);
        expect_status(id, "compensated");
    }
    expect_trail("timeout-1", "reserve/action/1 reserve/compensation/1");
    expect_trail("timeout-3", "reserve/action/1 charge/action/1 ship/action/1 "
                              "ship/compensation/1 charge/compensation/1 reserve/compensation/1");
    json_t *ship = system_step(&sys, "timeout-3", "ship");
    cr_assert(json_is_true(json_object_get(ship, "action_timed_out")));
    cr_assert_str_eq(json_string_value(json_object_get(ship, "phase")), "compensated");
    json_decref(ship);
}

static const script_rule_t COMPENSATION_RULES[] = {
    /* flaky: the release fails twice, then succeeds */
    {"flaky", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"flaky", "reserve", "compensation", 2, SCRIPT_FAIL_RETRYABLE, NULL},
    /* broken: the refund never succeeds */
    {"broken", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"broken", "charge", "compensation", 0, SCRIPT_FAIL_RETRYABLE, NULL},
    /* retried: the charge fails retryably twice, then succeeds */
    {"retried", "charge", "action", 2, SCRIPT_FAIL_RETRYABLE, NULL},
};

Test(coordinator, compensation_retries_then_succeeds_or_leaves_saga_stuck)
{
    start_system(COMPENSATION_RULES, sizeof COMPENSATION_RULES / sizeof *COMPENSATION_RULES);
    cr_assert_eq(system_start_saga(&sys, "flaky", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "broken", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "retried", "order", INPUT), 0);

    expect_status("flaky", "compensated");
    expect_trail("flaky", "reserve/action/1 charge/action/1 ship/action/1 charge/compensation/1 "
                          "reserve/compensation/1 reserve/compensation/2 reserve/compensation/3");

    expect_status("broken", "stuck");
    expect_trail("broken", "reserve/action/1 charge/action/1 ship/action/1 charge/compensation/1 "
                           "charge/compensation/2 charge/compensation/3");
    char err[512] = "";
    cr_assert(strstr(system_field(&sys, "broken", "error", err, sizeof err),
                     "compensation of step charge failed after 3 attempts"), "error: %s", err);
    json_t *out = outcome_of("broken");
    cr_assert_str_eq(json_string_value(json_object_get(out, "status")), "stuck");
    json_decref(out);
    redisReply *r = redisCommand(sys.rc, "ZSCORE saga:{p%d}:index:stuck broken", 0);
    freeReplyObject(r);
    cr_assert_eq(system_counter(&sys, "order:active:stuck"), 1);

    expect_status("retried", "completed");
    expect_trail("retried", "reserve/action/1 charge/action/1 charge/action/2 charge/action/3 "
                            "ship/action/1");
    json_t *charge = system_step(&sys, "retried", "charge");
    cr_assert_eq(json_integer_value(json_object_get(charge, "attempt")), 3);
    json_decref(charge);
}

static const script_rule_t DUPLICATE_RULES[] = {
    {"dup", NULL, NULL, 0, SCRIPT_OK_TWICE, NULL},
};

Test(coordinator, duplicate_replies_and_duplicate_starts_change_nothing)
{
    start_system(DUPLICATE_RULES, 1);
    cr_assert_eq(system_start_saga(&sys, "dup", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "dup", "order", INPUT), 0);
    expect_status("dup", "completed");
    /* the same start twice after completion, too */
    cr_assert_eq(system_start_saga(&sys, "dup", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "after", "order", INPUT), 0);
    expect_status("after", "completed");
    expect_trail("dup", "reserve/action/1 charge/action/1 ship/action/1");
    cr_assert_eq(system_counter(&sys, "order:started"), 2, "one saga per id");
    json_t *history = system_history(&sys, "dup");
    size_t oks = 0, i;
    json_t *h;
    json_array_foreach(history, i, h)
        if (strcmp(json_string_value(json_object_get(h, "event")), "action_ok") == 0)
            oks++;
    cr_assert_eq(oks, 3, "each reply applied once");
    json_decref(history);
}

Test(coordinator, bad_input_is_dead_lettered_and_nothing_else_is_lost)
{
    start_system(NULL, 0);
    cr_assert_eq(system_produce_input(&sys, "junk", "{not json"), 0);
    cr_assert_eq(system_produce_input(&sys, "x", "{\"type\": \"reply\", \"saga_id\": \"x\"}"), 0);
    cr_assert_eq(system_produce_input(&sys, "ghost",
                                      "{\"type\": \"reply\", \"saga_id\": \"ghost\", "
                                      "\"command_id\": \"ghost/reserve/action/1\", \"step\": "
                                      "\"reserve\", \"kind\": \"action\", \"attempt\": 1, "
                                      "\"status\": \"ok\", \"output\": {}}"),
                 0);
    cr_assert_eq(system_produce_input(&sys, "typo",
                                      "{\"type\": \"start\", \"saga_id\": \"typo\", \"saga\": "
                                      "\"order\", \"inptu\": {}}"),
                 0);
    cr_assert_eq(system_start_saga(&sys, "after-junk", "order", INPUT), 0);
    expect_status("after-junk", "completed");
    cr_assert(fixture_collector_wait(deadletters, 3, WAIT_MS), "dead letters: %zu",
              fixture_collector_count(deadletters));
    const char *expected[] = {"invalid JSON", "$.command_id: missing", "not active on partition"};
    for (size_t e = 0; e < 3; e++) {
        bool found = false;
        for (size_t i = 0; i < fixture_collector_count(deadletters); i++) {
            json_t *dl = json_loads(fixture_collector_at(deadletters, i)->value, 0, NULL);
            const char *reason = json_string_value(json_object_get(dl, "reason"));
            if (reason && strstr(reason, expected[e]))
                found = true;
            json_decref(dl);
        }
        cr_assert(found, "a dead letter says \"%s\"", expected[e]);
    }
    json_t *typo = system_saga(&sys, "typo", NULL);
    cr_assert_null(typo, "nothing is created for an invalid start");
    json_t *rejected = outcome_of("typo"); /* an invalid start is rejected, not only dropped */
    cr_assert_not_null(rejected);
    cr_assert_str_eq(json_string_value(json_object_get(rejected, "status")), "rejected");
    cr_assert(strstr(json_string_value(json_object_get(rejected, "error")),
                     "$.inptu: unknown field"));
    json_decref(rejected);
}

Test(coordinator, rejected_starts_publish_a_reason_and_create_nothing)
{
    start_system(NULL, 0);
    cr_assert_eq(system_start_saga(&sys, "nodef", "no-such-saga", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "badin", "order", "{\"sku\": 5}"), 0);
    json_t *a = outcome_of("nodef");
    json_t *b = outcome_of("badin");
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_str_eq(json_string_value(json_object_get(a, "status")), "rejected");
    cr_assert(strstr(json_string_value(json_object_get(a, "error")), "unknown saga definition"));
    cr_assert_str_eq(json_string_value(json_object_get(b, "status")), "rejected");
    cr_assert(strstr(json_string_value(json_object_get(b, "error")), "input"), "%s",
              json_string_value(json_object_get(b, "error")));
    json_decref(a);
    json_decref(b);
    cr_assert_null(system_saga(&sys, "nodef", NULL));
    cr_assert_null(system_saga(&sys, "badin", NULL));
}

static const script_rule_t LATE_RULES[] = {
    {"late", "charge", "action", 0, SCRIPT_SILENT, NULL},
    {"late", "charge", "compensation", 1, SCRIPT_SILENT, NULL},
};

Test(coordinator, late_reply_after_timeout_changes_nothing)
{
    start_system(LATE_RULES, 2);
    cr_assert_eq(system_start_saga(&sys, "late", "order", INPUT), 0);
    /* wait for charge to time out: its compensation is then in flight (and silent) */
    expect_status("late", "compensating");
    int p = 0;
    json_decref(system_saga(&sys, "late", &p));
    char reply[512];
    snprintf(reply, sizeof reply,
             "{\"type\": \"reply\", \"saga_id\": \"late\", \"command_id\": "
             "\"late/charge/action/1\", \"step\": \"charge\", \"kind\": \"action\", "
             "\"attempt\": 1, \"status\": \"ok\", \"output\": {\"charge_id\": \"x\"}}");
    cr_assert_eq(fixture_produce(sys.producer, "saga.input", p, "late", reply), 0);
    expect_status("late", "compensated");
    json_t *charge = system_step(&sys, "late", "charge");
    cr_assert_null(json_object_get(charge, "output"), "the late output was not taken");
    json_decref(charge);
    expect_trail("late", "reserve/action/1 charge/action/1 charge/compensation/1 "
                         "charge/compensation/2 reserve/compensation/1");
}
