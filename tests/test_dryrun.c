/* test_dryrun.c - the dry run (dryrun.h, sagactl simulate): sagas/order-placement.json run
 * through the real state machine failing at charge, timing out at schedule, and the
 * errors: an unknown step, an input the schema rejects; sagactl simulate end to end. */
#include "dryrun.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opstest.h"
#include "test_paths.h"

#define RUN_TIMEOUT_MS 30000

static const char INPUT[] = "{\"order_id\": \"1001\", \"sku\": \"A-1\", \"qty\": 2, "
                            "\"amount\": 25.5, \"address\": \"1 Main St\"}";

static const char FAIL_AT_CHARGE[] =
    "Dry run of order-placement v1, saga dry-run, input {\"order_id\":\"1001\",\"sku\":\"A-1\",\"qty\":2,\"amount\":25.5,\"address\":\"1 Main St\"}\n"
    "\n"
    "Actions, in the order they are sent:\n"
    "   1. +0 ms  reserve action, attempt 1 -> inventory.commands\n"
    "      inventory.reserve {\"order_id\":\"1001\",\"sku\":\"A-1\",\"qty\":2}\n"
    "      reply: ok, output {\"reservation_id\":\"<steps.reserve.output.reservation_id>\"}\n"
    "   2. +0 ms  charge action, attempt 1 -> payment.commands\n"
    "      payment.charge {\"order_id\":\"1001\",\"amount\":25.5,\"reference\":\"dry-run\"}\n"
    "      reply: failed, not retryable (--fail charge)\n"
    "\n"
    "Compensations, in the order they are sent:\n"
    "   3. +0 ms  reserve compensation, attempt 1 -> inventory.commands\n"
    "      inventory.release {\"order_id\":\"1001\",\"reservation_id\":\"<steps.reserve.output.reservation_id>\"}\n"
    "      reply: ok\n"
    "\n"
    "Status: compensated after 0 ms (step charge failed: simulated failure (--fail))\n"
    "Steps: reserve compensated, charge failed, schedule pending\n";

static definition_t *def;
static json_t *input;

static void setup(void)
{
    char *path = test_source_path("sagas/order-placement.json");
    def = definition_load_file(path, NULL);
    free(path);
    cr_assert_not_null(def);
    input = json_loads(INPUT, 0, NULL);
    cr_assert_not_null(input);
}

static void teardown(void)
{
    json_decref(input);
    definition_free(def);
}

TestSuite(dryrun, .init = setup, .fini = teardown);

/* "STEP KIND ATTEMPT" of command i. */
static const char *describe(const dryrun_t *r, size_t i, char *buf, size_t len)
{
    const dryrun_command_t *c = &r->commands[i];
    snprintf(buf, len, "%s %s %d", def->steps[c->step].name, command_kind_name(c->kind),
             c->attempt);
    return buf;
}

static const char *payload(const dryrun_t *r, size_t i, char *buf, size_t len)
{
    char *text = json_dumps(json_object_get(r->commands[i].message, "payload"), JSON_COMPACT);
    snprintf(buf, len, "%s", text ? text : "");
    free(text);
    return buf;
}

Test(dryrun, order_placement_failing_at_charge)
{
    dryrun_options_t o = {.fail_step = "charge"};
    char why[256] = "";
    dryrun_t *r = dryrun_run(def, input, &o, why, sizeof why);
    cr_assert_not_null(r, "%s", why);
    /* Reserve, then charge (which fails), then only reserve is undone: a failed step had
     * no effect and schedule never ran. */
    const char *want[] = {"reserve action 1", "charge action 1", "reserve compensation 1"};
    const char *topics[] = {"inventory.commands", "payment.commands", "inventory.commands"};
    const char *payloads[] = {
        "{\"order_id\":\"1001\",\"sku\":\"A-1\",\"qty\":2}",
        "{\"order_id\":\"1001\",\"amount\":25.5,\"reference\":\"dry-run\"}",
        "{\"order_id\":\"1001\",\"reservation_id\":\"<steps.reserve.output.reservation_id>\"}"};
    cr_assert_eq(r->command_count, 3);
    char buf[512];
    for (size_t i = 0; i < 3; i++) {
        cr_expect_str_eq(describe(r, i, buf, sizeof buf), want[i]);
        cr_expect_str_eq(r->commands[i].topic, topics[i]);
        cr_expect_str_eq(payload(r, i, buf, sizeof buf), payloads[i]);
        cr_expect_str_eq(json_string_value(json_object_get(r->commands[i].message, "saga_id")),
                         "dry-run");
    }
    cr_expect_eq(r->commands[1].reply, DRYRUN_REPLY_FAILED);
    cr_expect_eq(r->status, SAGA_COMPENSATED);
    cr_expect_str_eq(r->error, "step charge failed: simulated failure (--fail)");

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_expect_eq(dryrun_print(r, out), 0);
    fclose(out);
    cr_expect_str_eq(text, FAIL_AT_CHARGE);
    free(text);
    json_t *j = dryrun_json(r);
    cr_expect_eq(json_array_size(json_object_get(j, "commands")), 3);
    cr_expect_str_eq(json_string_value(json_object_get(j, "status")), "compensated");
    json_decref(j);
    dryrun_free(r);
}

Test(dryrun, a_timeout_at_schedule_undoes_every_step_in_reverse)
{
    dryrun_options_t o = {.timeout_step = "schedule", .saga_id = "o-7"};
    char why[256] = "";
    dryrun_t *r = dryrun_run(def, input, &o, why, sizeof why);
    cr_assert_not_null(r, "%s", why);
    const char *want[] = {"reserve action 1", "charge action 1", "schedule action 1",
                          "schedule compensation 1", "charge compensation 1",
                          "reserve compensation 1"};
    cr_assert_eq(r->command_count, 6);
    char buf[512];
    for (size_t i = 0; i < 6; i++)
        cr_expect_str_eq(describe(r, i, buf, sizeof buf), want[i]);
    /* The compensations go out when schedule's 5 s timeout fires; schedule never replied,
     * so its optional shipment_id renders as null. */
    cr_expect_eq(r->commands[3].at_ms, 5000);
    cr_expect_str_eq(payload(r, 3, buf, sizeof buf),
                     "{\"order_id\":\"1001\",\"shipment_id\":null}");
    cr_expect_eq(r->status, SAGA_COMPENSATED);
    dryrun_free(r);
}

Test(dryrun, completes_without_options_and_refuses_bad_runs)
{
    char why[256] = "";
    dryrun_t *r = dryrun_run(def, input, NULL, why, sizeof why);
    cr_assert_not_null(r, "%s", why);
    cr_expect_eq(r->command_count, 3);
    cr_expect_eq(r->status, SAGA_COMPLETED);
    dryrun_free(r);

    dryrun_options_t o = {.fail_step = "chrage"};
    cr_expect_null(dryrun_run(def, input, &o, why, sizeof why));
    cr_expect_str_eq(why, "--fail: saga \"order-placement\" has no step \"chrage\"");
    json_object_del(input, "address");
    cr_expect_null(dryrun_run(def, input, NULL, why, sizeof why));
    cr_expect_str_eq(why, "input: missing required property \"address\"");
}

Test(dryrun, sagactl_simulate)
{
    const char *bin = getenv("SAGA_BIN_DIR");
    char sagactl[PATH_MAX], defs[PATH_MAX];
    snprintf(sagactl, sizeof sagactl, "%s/sagactl", bin && *bin ? bin : "bin");
    snprintf(defs, sizeof defs, "--definitions=%s/sagas", test_source_dir());
    ops_run_t r;
    int rc = ops_run(&r, (const char *const[]){sagactl, "simulate", "order-placement", "--input",
                                               "-", "--fail", "charge", defs, NULL},
                     NULL, INPUT, RUN_TIMEOUT_MS);
    cr_expect_eq(rc, 3, "compensated: exit 3\n%s", r.err);
    cr_expect_str_eq(r.out, FAIL_AT_CHARGE);
    ops_run_release(&r);
    rc = ops_run(&r, (const char *const[]){sagactl, "simulate", "order-placement", "--input",
                                           "-", defs, NULL},
                 NULL, INPUT, RUN_TIMEOUT_MS);
    cr_expect_eq(rc, 0, "completes: exit 0\n%s", r.err);
    ops_run_release(&r);
    rc = ops_run(&r, (const char *const[]){sagactl, "simulate", "nope", defs, NULL}, NULL, NULL,
                 RUN_TIMEOUT_MS);
    cr_expect_eq(rc, 2, "unknown definition: exit 2");
    ops_run_release(&r);
    rc = ops_run(&r, (const char *const[]){sagactl, "simulate", "order-placement", "--input",
                                           "-", "--timeout", "nope", defs, NULL},
                 NULL, INPUT, RUN_TIMEOUT_MS);
    cr_expect_eq(rc, 1, "unknown step: exit 1");
    cr_expect(strstr(r.err, "--timeout: saga \"order-placement\" has no step \"nope\""), "%s",
              r.err);
    ops_run_release(&r);
}
