/* test_machine.c - unit tests of the pure saga state machine: every transition, with
 * definitions loaded from strings and time and randomness under the test's control. */
#include "machine.h"
#include "saga.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static const char ORDER_DEF[] =
    "{\"name\": \"order\", \"version\": 1, \"deadline_ms\": 60000,"
    " \"defaults\": {\"timeout_ms\": 1000,"
    "   \"retry\": {\"max_attempts\": 3, \"initial_backoff_ms\": 100, \"max_backoff_ms\": 1000,"
    "             \"multiplier\": 2.0, \"jitter\": 0},"
    "   \"compensation\": {\"timeout_ms\": 1000, \"retry\": {\"max_attempts\": 3,"
    "     \"initial_backoff_ms\": 100, \"max_backoff_ms\": 1000, \"multiplier\": 2.0, \"jitter\": 0}}},"
    " \"steps\": ["
    "  {\"name\": \"reserve\", \"topic\": \"inventory\","
    "   \"action\": {\"command\": \"inventory.reserve\", \"payload\": {\"sku\": \"{{input.sku}}\", \"qty\": \"{{input.qty}}\"}},"
    "   \"compensation\": {\"command\": \"inventory.release\", \"payload\": {\"order\": \"{{saga.id}}\"}}},"
    "  {\"name\": \"charge\", \"topic\": \"payment\","
    "   \"action\": {\"command\": \"payment.charge\", \"payload\": {\"res\": \"{{steps.reserve.output.reservation_id}}\"}},"
    "   \"compensation\": {\"command\": \"payment.refund\", \"payload\": {\"order\": \"{{saga.id}}\"}}},"
    "  {\"name\": \"ship\", \"topic\": \"shipping\","
    "   \"action\": {\"command\": \"shipping.schedule\", \"payload\": {\"pay\": \"{{steps.charge.output.payment_id}}\"}},"
    "   \"compensation\": {\"command\": \"shipping.cancel\", \"payload\": {\"order\": \"{{saga.id}}\"}}}"
    " ]}";

static definition_t *def;
static saga_t *saga;
static machine_result_t res;
static uint64_t rng = 42;
static int64_t clock_ms = 1000000;

static machine_env_t env(void)
{
    machine_env_t e = {.now_ms = clock_ms, .rng = &rng, .reply_topic = "saga.input"};
    return e;
}

static definition_t *load(const char *text)
{
    defn_errors_t errs = {0};
    definition_t *d = definition_load_string(text, strlen(text), "test.json", &errs);
    for (size_t i = 0; i < errs.count; i++) {
        char line[1024];
        defn_error_format(&errs.items[i], line, sizeof line);
        cr_log_error("%s", line);
    }
    defn_errors_release(&errs);
    cr_assert_not_null(d, "test definition must load");
    return d;
}

static void setup_with(const char *text)
{
    def = load(text);
    json_t *input = json_pack("{s:s, s:i}", "sku", "A-1", "qty", 2);
    saga = saga_new("s-1", def, 3, input, clock_ms);
    json_decref(input);
    machine_result_init(&res);
}

static void setup(void)
{
    setup_with(ORDER_DEF);
}

static void teardown(void)
{
    machine_result_release(&res);
    saga_free(saga);
    definition_free(def);
}

static void fresh(void)
{
    machine_result_release(&res);
}

/* The command's message parsed (borrowed: valid for the next few calls). The text must be
 * one JSON object. */
static json_t *message_of(const machine_command_t *c)
{
    static json_t *ring[4];
    static size_t next;
    json_error_t err;
    json_t *m = json_loads(c->text, 0, &err);
    cr_assert(json_is_object(m), "command %s is not a JSON object: %s (%s)", c->id, c->text,
              err.text);
    json_decref(ring[next]);
    ring[next] = m;
    next = (next + 1) % (sizeof ring / sizeof *ring);
    return m;
}

/* Asserts the result sent exactly one command: step, kind, attempt. */
static const machine_command_t *expect_one_command(const char *step, command_kind_t kind,
                                                   int attempt)
{
    cr_assert_eq(res.command_count, 1, "expected one command, got %zu", res.command_count);
    const machine_command_t *c = &res.commands[0];
    cr_assert_str_eq(def->steps[c->step].name, step);
    cr_assert_eq(c->kind, kind);
    cr_assert_eq(c->attempt, attempt);
    return c;
}

static void reply(const char *step, command_kind_t kind, int attempt, bool ok, bool retryable,
                  json_t *output)
{
    fresh();
    machine_reply_t r = {.step = definition_step_index(def, step), .kind = kind,
                         .attempt = attempt, .ok = ok, .retryable = retryable,
                         .output = output, .error = ok ? NULL : "boom"};
    machine_env_t e = env();
    machine_on_reply(saga, &r, &e, &res);
    json_decref(output);
}

static void ok(const char *step, int attempt, const char *key, const char *value)
{
    reply(step, CMD_ACTION, attempt, true, false, key ? json_pack("{s:s}", key, value) : NULL);
}

static void tick(int64_t advance)
{
    fresh();
    clock_ms += advance;
    machine_env_t e = env();
    machine_on_timer(saga, &e, &res);
}

static void start(void)
{
    machine_env_t e = env();
    machine_start(saga, &e, &res);
}

TestSuite(machine, .init = setup, .fini = teardown);

Test(machine, happy_path_passes_outputs_between_steps)
{
    start();
    cr_assert(res.changed);
    const machine_command_t *c = expect_one_command("reserve", CMD_ACTION, 1);
    cr_assert_str_eq(c->id, "s-1/reserve/action/1");
    cr_assert_str_eq(c->topic, "inventory");
    json_t *payload = json_object_get(message_of(c), "payload");
    cr_assert_str_eq(json_string_value(json_object_get(payload, "sku")), "A-1");
    cr_assert_eq(json_integer_value(json_object_get(payload, "qty")), 2, "typed substitution");
    json_t *reply_to = json_object_get(message_of(c), "reply_to");
    cr_assert_eq(json_integer_value(json_object_get(reply_to, "partition")), 3);
    cr_assert_eq(saga->deadline_at, clock_ms + 60000);

    ok("reserve", 1, "reservation_id", "r-9");
    c = expect_one_command("charge", CMD_ACTION, 1);
    payload = json_object_get(message_of(c), "payload");
    cr_assert_str_eq(json_string_value(json_object_get(payload, "res")), "r-9");

    ok("charge", 1, "payment_id", "p-7");
    c = expect_one_command("ship", CMD_ACTION, 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(message_of(c), "payload"), "pay")),
                     "p-7");
    ok("ship", 1, "shipment_id", "sh-1");
    cr_assert_eq(res.command_count, 0);
    cr_assert_eq(saga->status, SAGA_COMPLETED);
    cr_assert_not_null(res.outcome);
    cr_assert_str_eq(json_string_value(json_object_get(res.outcome, "status")), "completed");
    cr_assert_eq(machine_next_timer(saga), 0, "a completed saga has no timer");
}

/* A non-retryable failure at step k compensates k-1..1, one at a time, in reverse. */
static void fail_at(int k)
{
    start();
    const char *names[] = {"reserve", "charge", "ship"};
    const char *outputs[] = {"reservation_id", "payment_id", "shipment_id"};
    for (int i = 0; i < k - 1; i++)
        ok(names[i], 1, outputs[i], "x");
    reply(names[k - 1], CMD_ACTION, 1, false, false, NULL);
    cr_assert_eq(saga->status, k == 1 ? SAGA_COMPENSATED : SAGA_COMPENSATING);
    for (int i = k - 2; i >= 0; i--) {
        expect_one_command(names[i], CMD_COMPENSATION, 1);
        reply(names[i], CMD_COMPENSATION, 1, true, false, NULL);
    }
    cr_assert_eq(res.command_count, 0);
    cr_assert_eq(saga->status, SAGA_COMPENSATED);
    cr_assert_str_eq(json_string_value(json_object_get(res.outcome, "status")), "compensated");
    cr_assert_eq(saga->steps[k - 1].phase, STEP_FAILED);
}

Test(machine, failure_at_step_1_compensates_nothing) { fail_at(1); }
Test(machine, failure_at_step_2_compensates_step_1) { fail_at(2); }
Test(machine, failure_at_step_3_compensates_2_then_1) { fail_at(3); }

Test(machine, retryable_failure_is_retried_with_backoff_then_compensates)
{
    start();
    reply("reserve", CMD_ACTION, 1, false, true, NULL);
    cr_assert_eq(saga->steps[0].phase, STEP_RETRY_WAIT);
    cr_assert_eq(res.command_count, 0);
    cr_assert_eq(machine_next_timer(saga), clock_ms + 100, "first backoff is initial_backoff_ms");
    tick(99);
    cr_assert_not(res.changed, "nothing due before the backoff");
    tick(1);
    expect_one_command("reserve", CMD_ACTION, 2);
    reply("reserve", CMD_ACTION, 2, false, true, NULL);
    cr_assert_eq(machine_next_timer(saga), clock_ms + 200, "backoff doubles");
    tick(200);
    expect_one_command("reserve", CMD_ACTION, 3);
    reply("reserve", CMD_ACTION, 3, false, true, NULL);
    cr_assert_eq(saga->steps[0].phase, STEP_FAILED, "max_attempts 3 exhausted");
    cr_assert_eq(saga->status, SAGA_COMPENSATED);
    cr_assert(strstr(saga->error, "after all attempts"));
}

Test(machine, retry_then_success_goes_on)
{
    start();
    reply("reserve", CMD_ACTION, 1, false, true, NULL);
    tick(100);
    ok("reserve", 2, "reservation_id", "r-1");
    expect_one_command("charge", CMD_ACTION, 1);
    cr_assert_eq(saga->steps[0].attempt, 2);
}

Test(machine, timeout_at_step_k_compensates_k_down_to_1)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    tick(1000);
    cr_assert(saga->steps[1].action_timed_out);
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    expect_one_command("charge", CMD_COMPENSATION, 1);
    cr_assert_eq(saga->steps[1].phase, STEP_COMPENSATING);
    reply("charge", CMD_COMPENSATION, 1, true, false, NULL);
    expect_one_command("reserve", CMD_COMPENSATION, 1);
    reply("reserve", CMD_COMPENSATION, 1, true, false, NULL);
    cr_assert_eq(saga->status, SAGA_COMPENSATED);
}

Test(machine, timed_out_step_not_compensated_when_definition_says_so)
{
    teardown();
    char text[sizeof ORDER_DEF + 64];
    /* The charge step (second) declares compensate_on_timeout false. */
    const char *needle = "{\"name\": \"charge\", \"topic\": \"payment\",";
    const char *at = strstr(ORDER_DEF, needle);
    int n = snprintf(text, sizeof text, "%.*s%s \"compensate_on_timeout\": false,%s",
                     (int)(at - ORDER_DEF), ORDER_DEF, needle, at + strlen(needle));
    cr_assert_lt(n, (int)sizeof text);
    setup_with(text);
    start();
    ok("reserve", 1, "reservation_id", "r");
    tick(1000);
    expect_one_command("reserve", CMD_COMPENSATION, 1);
}

Test(machine, late_reply_after_timeout_changes_nothing)
{
    start();
    tick(1000);
    cr_assert_eq(saga->steps[0].phase, STEP_COMPENSATING);
    int64_t version_before = saga->updated_at;
    ok("reserve", 1, "reservation_id", "late");
    cr_assert_not(res.changed);
    cr_assert_eq(res.verdict, MACHINE_LATE);
    cr_assert_eq(saga->updated_at, version_before);
    cr_assert_null(saga->steps[0].output);
}

Test(machine, duplicate_reply_changes_nothing)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    ok("reserve", 1, "reservation_id", "r");
    cr_assert_not(res.changed);
    cr_assert_eq(res.verdict, MACHINE_DUPLICATE, "the step already took this reply");
    cr_assert_eq(res.command_count, 0);
    reply("charge", CMD_ACTION, 5, true, false, NULL);
    cr_assert_eq(res.verdict, MACHINE_UNEXPECTED, "attempt never sent");
    reply("ship", CMD_COMPENSATION, 1, true, false, NULL);
    cr_assert_not(res.changed);
}

Test(machine, compensation_fails_a_few_times_then_succeeds)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    reply("charge", CMD_ACTION, 1, false, false, NULL);
    expect_one_command("reserve", CMD_COMPENSATION, 1);
    reply("reserve", CMD_COMPENSATION, 1, false, true, NULL);
    cr_assert_eq(saga->steps[0].phase, STEP_COMP_RETRY_WAIT);
    tick(100);
    expect_one_command("reserve", CMD_COMPENSATION, 2);
    reply("reserve", CMD_COMPENSATION, 2, false, true, NULL);
    tick(200);
    expect_one_command("reserve", CMD_COMPENSATION, 3);
    reply("reserve", CMD_COMPENSATION, 3, true, false, NULL);
    cr_assert_eq(saga->status, SAGA_COMPENSATED);
}

Test(machine, compensation_timeout_is_retried)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    reply("charge", CMD_ACTION, 1, false, false, NULL);
    tick(1000); /* the compensation's own timeout */
    cr_assert_eq(saga->steps[0].phase, STEP_COMP_RETRY_WAIT);
    tick(100);
    expect_one_command("reserve", CMD_COMPENSATION, 2);
}

static void drive_to_stuck(void)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    ok("charge", 1, "payment_id", "p");
    reply("ship", CMD_ACTION, 1, false, false, NULL);
    expect_one_command("charge", CMD_COMPENSATION, 1);
    reply("charge", CMD_COMPENSATION, 1, false, true, NULL);
    tick(100);
    reply("charge", CMD_COMPENSATION, 2, false, true, NULL);
    tick(200);
    reply("charge", CMD_COMPENSATION, 3, false, true, NULL);
}

Test(machine, compensation_exhausting_retries_leaves_saga_stuck)
{
    drive_to_stuck();
    cr_assert_eq(saga->status, SAGA_STUCK);
    cr_assert_eq(saga->steps[1].phase, STEP_COMP_FAILED);
    cr_assert_eq(saga->steps[0].phase, STEP_DONE, "stop policy: earlier steps wait");
    cr_assert(strstr(saga->error, "compensation of step charge failed after 3 attempts"));
    cr_assert_str_eq(json_string_value(json_object_get(res.outcome, "status")), "stuck");
    cr_assert_eq(machine_next_timer(saga), 0, "stuck sagas wait for an operator");
}

Test(machine, operator_retry_gives_a_fresh_budget)
{
    drive_to_stuck();
    fresh();
    machine_env_t e = env();
    machine_retry(saga, &e, &res);
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    expect_one_command("charge", CMD_COMPENSATION, 4);
    reply("charge", CMD_COMPENSATION, 4, true, false, NULL);
    expect_one_command("reserve", CMD_COMPENSATION, 1);
    reply("reserve", CMD_COMPENSATION, 1, true, false, NULL);
    cr_assert_eq(saga->status, SAGA_COMPENSATED);
}

Test(machine, operator_skip_marks_done_and_goes_on)
{
    drive_to_stuck();
    fresh();
    machine_env_t e = env();
    machine_skip(saga, "refunded by hand", &e, &res);
    cr_assert_eq(saga->steps[1].phase, STEP_SKIPPED);
    cr_assert(strstr(saga->steps[1].error, "refunded by hand"));
    expect_one_command("reserve", CMD_COMPENSATION, 1);
    reply("reserve", CMD_COMPENSATION, 1, true, false, NULL);
    cr_assert_eq(saga->status, SAGA_COMPENSATED);
}

Test(machine, retry_and_skip_ignored_unless_stuck)
{
    start();
    fresh();
    machine_env_t e = env();
    machine_retry(saga, &e, &res);
    cr_assert_eq(res.verdict, MACHINE_NOT_APPLICABLE);
    machine_skip(saga, "x", &e, &res);
    cr_assert_eq(res.verdict, MACHINE_NOT_APPLICABLE);
    cr_assert_eq(saga->status, SAGA_RUNNING);
}

Test(machine, non_retryable_compensation_failure_is_stuck_at_once)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    reply("charge", CMD_ACTION, 1, false, false, NULL);
    reply("reserve", CMD_COMPENSATION, 1, false, false, NULL);
    cr_assert_eq(saga->status, SAGA_STUCK);
}

Test(machine, continue_policy_compensates_earlier_steps_then_stuck)
{
    teardown();
    char text[sizeof ORDER_DEF + 64];
    snprintf(text, sizeof text, "{\"on_compensation_failure\": \"continue\", %s", ORDER_DEF + 1);
    setup_with(text);
    drive_to_stuck();
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    expect_one_command("reserve", CMD_COMPENSATION, 1);
    reply("reserve", CMD_COMPENSATION, 1, true, false, NULL);
    cr_assert_eq(saga->status, SAGA_STUCK);
    cr_assert_eq(saga->steps[0].phase, STEP_COMPENSATED);
    cr_assert_eq(saga->steps[1].phase, STEP_COMP_FAILED);
}

Test(machine, deadline_starts_compensation)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    saga->steps[1].timer_at = clock_ms + 10 * 60000; /* a long step: the deadline comes first */
    cr_assert_eq(machine_next_timer(saga), saga->deadline_at);
    tick(saga->deadline_at - clock_ms);
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    cr_assert(strstr(saga->error, "deadline"));
    /* The deadline cuts charge, still in flight: it counts as timed out (its effect is
     * unknown) and is compensated now, not when its own timeout ends. */
    cr_assert(saga->steps[1].action_timed_out);
    expect_one_command("charge", CMD_COMPENSATION, 1);
    ok("charge", 1, "payment_id", "p"); /* the cut attempt's reply comes too late */
    cr_assert_not(res.changed);
    cr_assert_eq(res.verdict, MACHINE_LATE);
    reply("charge", CMD_COMPENSATION, 1, true, false, NULL);
    expect_one_command("reserve", CMD_COMPENSATION, 1);
    reply("reserve", CMD_COMPENSATION, 1, true, false, NULL);
    cr_assert_eq(saga->status, SAGA_COMPENSATED);
}

/* ORDER_DEF with one more field in the charge step. */
static void setup_with_charge_field(const char *field)
{
    teardown();
    char text[sizeof ORDER_DEF + 128];
    const char *needle = "{\"name\": \"charge\", \"topic\": \"payment\",";
    const char *at = strstr(ORDER_DEF, needle);
    int n = snprintf(text, sizeof text, "%.*s%s %s,%s", (int)(at - ORDER_DEF), ORDER_DEF,
                     needle, field, at + strlen(needle));
    cr_assert_lt(n, (int)sizeof text);
    setup_with(text);
}

static const char *idempotency_key(const machine_command_t *c)
{
    return json_string_value(json_object_get(message_of(c), "idempotency_key"));
}

Test(machine, a_timed_out_action_is_compensated_by_default_not_retried)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    tick(1000);
    cr_assert_eq(saga->steps[1].attempt, 1);
    expect_one_command("charge", CMD_COMPENSATION, 1);
}

Test(machine, retry_on_timeout_resends_with_the_same_key_then_compensates)
{
    setup_with_charge_field("\"retry_on_timeout\": true");
    start();
    ok("reserve", 1, "reservation_id", "r");
    char key[256];
    snprintf(key, sizeof key, "%s", idempotency_key(&res.commands[0]));
    tick(1000); /* attempt 1 times out: a retry after the backoff, nothing compensated */
    cr_assert(res.changed);
    cr_assert_eq(res.command_count, 0);
    cr_assert_eq(saga->status, SAGA_RUNNING);
    cr_assert_eq(saga->steps[1].phase, STEP_RETRY_WAIT);
    tick(100);
    expect_one_command("charge", CMD_ACTION, 2);
    cr_assert_str_eq(idempotency_key(&res.commands[0]), key);
    ok("charge", 1, "payment_id", "late"); /* the timed-out attempt answers late */
    cr_assert_eq(res.verdict, MACHINE_LATE);
    tick(1000);
    tick(200);
    expect_one_command("charge", CMD_ACTION, 3);
    cr_assert_str_eq(idempotency_key(&res.commands[0]), key);
    tick(1000); /* max_attempts (3) reached: the step timed out for good */
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    expect_one_command("charge", CMD_COMPENSATION, 1);
    cr_assert(strstr(saga->error, "charge timed out"), "%s", saga->error);
}

Test(machine, retry_on_timeout_success_on_a_later_attempt_goes_on)
{
    setup_with_charge_field("\"retry_on_timeout\": true");
    start();
    ok("reserve", 1, "reservation_id", "r");
    tick(1000);
    tick(100);
    expect_one_command("charge", CMD_ACTION, 2);
    ok("charge", 2, "payment_id", "p");
    expect_one_command("ship", CMD_ACTION, 1);
    cr_assert_not(saga->steps[1].action_timed_out);
    ok("charge", 2, "payment_id", "p"); /* a duplicate, not a late reply */
    cr_assert_eq(res.verdict, MACHINE_DUPLICATE);
}

Test(machine, a_retry_of_a_timed_out_action_cut_by_the_deadline_is_compensated)
{
    setup_with_charge_field("\"retry_on_timeout\": true");
    start();
    ok("reserve", 1, "reservation_id", "r");
    saga->deadline_at = clock_ms + 1050; /* falls in the backoff after attempt 1 */
    tick(1000);
    cr_assert_eq(saga->steps[1].phase, STEP_RETRY_WAIT);
    tick(50);
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    /* attempt 1 timed out: its effect is unknown, so it is undone like any timed-out step */
    expect_one_command("charge", CMD_COMPENSATION, 1);
}

Test(machine, abort_compensates_a_running_saga_once)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    ok("charge", 1, "payment_id", "p");
    fresh();
    machine_env_t e = env();
    machine_abort(saga, "customer cancelled", &e, &res);
    /* ship is in flight: wait for its reply or timeout before compensating anything */
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    cr_assert_eq(res.command_count, 0);
    ok("ship", 1, "shipment_id", "s");
    expect_one_command("ship", CMD_COMPENSATION, 1);
    fresh();
    machine_abort(saga, "again", &e, &res);
    cr_assert_eq(res.verdict, MACHINE_NOT_APPLICABLE);
}

Test(machine, unrenderable_payload_fails_the_step)
{
    start();
    ok("reserve", 1, NULL, NULL); /* no reservation_id: charge's payload cannot render */
    cr_assert_eq(saga->steps[1].phase, STEP_FAILED);
    cr_assert(strstr(saga->steps[1].error, "cannot build the action payload"));
    expect_one_command("reserve", CMD_COMPENSATION, 1);
}

Test(machine, backoff_grows_caps_and_jitters)
{
    defn_retry_t p = {.max_attempts = 10, .initial_backoff_ms = 100, .max_backoff_ms = 1000,
                      .multiplier = 2.0, .jitter = 0.0};
    cr_assert_eq(machine_backoff_ms(&p, 2, &rng), 100);
    cr_assert_eq(machine_backoff_ms(&p, 3, &rng), 200);
    cr_assert_eq(machine_backoff_ms(&p, 9, &rng), 1000);
    p.jitter = 0.5;
    for (int i = 0; i < 1000; i++) {
        int64_t b = machine_backoff_ms(&p, 2, &rng);
        cr_assert(b >= 50 && b <= 150, "jittered backoff %lld out of range", (long long)b);
    }
}

Test(machine, saga_fields_round_trip)
{
    start();
    ok("reserve", 1, "reservation_id", "r-1");
    reply("charge", CMD_ACTION, 1, false, true, NULL);
    json_t *fields = saga_encode_fields(saga);
    cr_assert_str_eq(json_string_value(json_object_get(fields, "status")), "running");
    cr_assert_str_eq(json_string_value(json_object_get(fields, "step")), "charge");
    cr_assert_str_eq(json_string_value(json_object_get(fields, "partition")), "3");
    char why[256] = "";
    saga_t *back = saga_decode_fields(fields, def, why, sizeof why);
    cr_assert_not_null(back, "%s", why);
    cr_assert_eq(back->status, saga->status);
    cr_assert_eq(back->steps[1].phase, STEP_RETRY_WAIT);
    cr_assert_eq(back->steps[1].timer_at, saga->steps[1].timer_at);
    cr_assert_str_eq(json_string_value(json_object_get(back->steps[0].output, "reservation_id")),
                     "r-1");
    cr_assert_eq(machine_next_timer(back), machine_next_timer(saga));
    json_t *again = saga_encode_fields(back);
    cr_assert(json_equal(fields, again), "decode(encode(s)) encodes the same");
    json_decref(again);
    json_decref(fields);
    saga_free(back);
}

Test(machine, decode_refuses_a_mismatched_definition)
{
    json_t *fields = saga_encode_fields(saga);
    json_object_set_new(fields, "steps", json_string("[]"));
    char why[256] = "";
    cr_assert_null(saga_decode_fields(fields, def, why, sizeof why));
    cr_assert(strstr(why, "0 steps recorded"));
    json_decref(fields);
}

Test(machine, a_resent_command_restarts_its_timeout_only_while_awaited)
{
    start();
    int64_t first = saga->steps[0].timer_at;
    clock_ms += 500;
    cr_assert(machine_command_resent(saga, 0, CMD_ACTION, 1, clock_ms));
    cr_assert_eq(saga->steps[0].timer_at, first + 500, "the timeout counts from the re-send");
    cr_assert_not(machine_command_resent(saga, 0, CMD_ACTION, 2, clock_ms), "not that attempt");
    cr_assert_not(machine_command_resent(saga, 0, CMD_COMPENSATION, 1, clock_ms));
    ok("reserve", 1, "reservation_id", "r");
    cr_assert_not(machine_command_resent(saga, 0, CMD_ACTION, 1, clock_ms), "no longer awaited");
}

/* A parallel group: book, then {hotel, car, insure} at once, then confirm. */
static const char TRIP_DEF[] =
    "{\"name\": \"trip\", \"version\": 1,"
    " \"defaults\": {\"timeout_ms\": 1000, \"retry\": {\"max_attempts\": 1},"
    "   \"compensation\": {\"timeout_ms\": 1000}},"
    " \"steps\": ["
    "  {\"name\": \"flight\", \"topic\": \"f\", \"action\": {\"command\": \"f.book\"},"
    "   \"compensation\": {\"command\": \"f.cancel\"}},"
    "  {\"name\": \"stay\", \"parallel\": ["
    "    {\"name\": \"hotel\", \"topic\": \"h\", \"action\": {\"command\": \"h.book\"},"
    "     \"compensation\": {\"command\": \"h.cancel\"}},"
    "    {\"name\": \"car\", \"topic\": \"c\", \"action\": {\"command\": \"c.rent\"},"
    "     \"compensation\": {\"command\": \"c.return\"}},"
    "    {\"name\": \"insure\", \"topic\": \"i\", \"action\": {\"command\": \"i.buy\"},"
    "     \"compensation\": {\"command\": \"i.cancel\"}}]},"
    "  {\"name\": \"confirm\", \"topic\": \"m\", \"action\": {\"command\": \"m.send\"},"
    "   \"compensation\": \"none\"}"
    " ]}";

/* Runs after the suite's setup (Criterion runs both): trade its saga for a trip. */
static void setup_trip(void)
{
    teardown();
    setup_with(TRIP_DEF);
}

Test(machine, parallel_group_sends_its_steps_at_once_and_goes_on_when_all_done,
     .init = setup_trip)
{
    start();
    ok("flight", 1, "id", "f-1");
    cr_assert_eq(res.command_count, 3, "hotel, car and insure at once");
    ok("car", 1, "id", "c-1");
    cr_assert_eq(res.command_count, 0);
    ok("hotel", 1, "id", "h-1");
    cr_assert_eq(res.command_count, 0);
    ok("insure", 1, "id", "i-1");
    expect_one_command("confirm", CMD_ACTION, 1);
}

/* Found by the simulation (seed 15 of saga-sim, issue #9): a sibling's failure made the
 * machine compensate the group's completed steps while another sibling was still in
 * flight, against the rule of machine.h. The group now waits for that sibling. */
Test(machine, parallel_group_compensates_only_when_no_sibling_is_in_flight,
     .init = setup_trip)
{
    start();
    ok("flight", 1, "id", "f-1");
    reply("car", CMD_ACTION, 1, false, false, NULL);
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    cr_assert_eq(res.command_count, 0, "hotel and insure are in flight");
    ok("hotel", 1, "id", "h-1");
    cr_assert_eq(res.command_count, 0, "insure is still in flight: hotel waits");
    cr_assert_eq(saga->steps[1].phase, STEP_DONE);
    ok("insure", 1, "id", "i-1");
    cr_assert_eq(res.command_count, 2, "now hotel and insure are undone together");
    cr_assert_eq(res.commands[0].kind, CMD_COMPENSATION);
    cr_assert_eq(res.commands[1].kind, CMD_COMPENSATION);
    reply("insure", CMD_COMPENSATION, 1, true, false, NULL);
    cr_assert_eq(res.command_count, 0, "flight waits for hotel's compensation");
    reply("hotel", CMD_COMPENSATION, 1, true, false, NULL);
    expect_one_command("flight", CMD_COMPENSATION, 1);
    reply("flight", CMD_COMPENSATION, 1, true, false, NULL);
    cr_assert_eq(saga->status, SAGA_COMPENSATED);
    cr_assert_eq(saga->steps[2].phase, STEP_FAILED, "car failed: nothing to undo");
}

Test(machine, parallel_group_sibling_timeout_releases_the_group,
     .init = setup_trip)
{
    start();
    ok("flight", 1, "id", "f-1");
    ok("hotel", 1, "id", "h-1");
    reply("car", CMD_ACTION, 1, false, false, NULL);
    cr_assert_eq(res.command_count, 0, "insure is in flight: hotel waits");
    tick(1000);
    cr_assert_eq(saga->steps[3].phase, STEP_COMPENSATING, "timed-out insure is undone");
    cr_assert_eq(saga->steps[1].phase, STEP_COMPENSATING);
    cr_assert_eq(res.command_count, 2);
}

Test(machine, an_oversized_output_is_not_kept_and_the_saga_is_undone)
{
    start();
    json_t *big = json_object();
    char *blob = malloc(MACHINE_MAX_OUTPUTS_BYTES);
    memset(blob, 'x', MACHINE_MAX_OUTPUTS_BYTES - 1);
    blob[MACHINE_MAX_OUTPUTS_BYTES - 1] = '\0';
    json_object_set_new(big, "reservation_id", json_string(blob));
    free(blob);
    reply("reserve", CMD_ACTION, 1, true, false, big);
    cr_assert_eq(saga->status, SAGA_COMPENSATING);
    cr_assert_eq(json_object_size(saga->steps[0].output), 0, "the output was not kept");
    cr_assert(strstr(saga->error, "not kept"));
    expect_one_command("reserve", CMD_COMPENSATION, 1); /* it was applied: undo it */
}

Test(machine, last_due_covers_every_timer_that_fires_now)
{
    start();
    ok("reserve", 1, "reservation_id", "r");
    int64_t charge_due = saga->steps[1].timer_at;
    cr_assert_eq(machine_last_due(saga, charge_due - 1), 0, "nothing due yet");
    cr_assert_eq(machine_last_due(saga, charge_due + 500), charge_due);
    saga->steps[0].timer_at = charge_due - 300; /* a stale timer, due earlier */
    cr_assert_eq(machine_next_timer(saga), charge_due - 300);
    cr_assert_eq(machine_last_due(saga, charge_due + 500), charge_due,
                 "the latest of what fires, not the earliest");
    cr_assert_eq(machine_last_due(saga, saga->deadline_at + 1), saga->deadline_at);
}
