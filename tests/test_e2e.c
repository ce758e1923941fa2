/* test_e2e.c - end to end with the real example services (C, and the Python participant
 * in one test) and the order-placement saga of sagas/: completed sagas have every effect
 * applied exactly once, compensated sagas net to zero in every ledger, and commands
 * delivered again (after the fact, and by a coordinator crash) apply nothing twice. */
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 60000
#define MAX_SERVICES 4

static test_system_t sys;
static pid_t services[MAX_SERVICES];
static int nservices;
static fixture_collector_t *commands;

static void stop_all(void)
{
    fixture_collector_free(commands);
    commands = NULL;
    for (int i = 0; i < nservices; i++)
        fixture_stop_process(services[i], FIXTURE_STOP_TIMEOUT_MS);
    nservices = 0;
    system_stop(&sys);
}

TestSuite(e2e, .fini = stop_all, .timeout = 240);

/* Starts a service: name is inventory, payment or shipping; python selects the Python
 * participant instead of the C one. extra: NULL-terminated flags. */
static void start_service(const char *name, bool python, const char *const *extra)
{
    char bin[PATH_MAX], script[PATH_MAX], port[16], log[PATH_MAX + 64], svc[64];
    const char *argv[32];
    int n = 0;
    if (python) {
        snprintf(script, sizeof script, "%s/participants/python/example_participant.py",
                 getenv("SAGA_SOURCE_DIR"));
        argv[n++] = "/usr/bin/python3";
        argv[n++] = script;
        argv[n++] = "--service";
        argv[n++] = name;
    } else {
        snprintf(svc, sizeof svc, "%s-service", name);
        cr_assert_eq(fixture_bin_path(svc, bin, sizeof bin), 0);
        argv[n++] = bin;
    }
    snprintf(port, sizeof port, "%d", sys.redis.port);
    argv[n++] = "--bootstrap";
    argv[n++] = sys.broker.bootstrap;
    argv[n++] = "--redis-port";
    argv[n++] = port;
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    snprintf(log, sizeof log, "%s/%s%s.log", sys.dir, name, python ? "-python" : "");
    pid_t pid = fixture_spawn(argv, log, NULL);
    cr_assert_gt(pid, 0, "cannot start %s", name);
    services[nservices++] = pid;
}

/* Waits until the three services answer: a saga started before a service joined its
 * group would time out. Warm-up sagas are compensated or completed, never left running. */
static bool settled(void *opaque)
{
    char status[64];
    system_field(&sys, opaque, "status", status, sizeof status);
    return *status && strcmp(status, "running") && strcmp(status, "compensating");
}

static void warm_up(void)
{
    int64_t deadline = fixture_now_ms() + WAIT_MS;
    char id[32], status[64] = "";
    for (int i = 0; fixture_now_ms() < deadline; i++) {
        snprintf(id, sizeof id, "warm-up-%d", i);
        cr_assert_eq(system_start_saga(&sys, id, "order-placement",
                                       "{\"order_id\": \"w\", \"sku\": \"W\", \"qty\": 1, "
                                       "\"amount\": 1, \"address\": \"here\"}"), 0);
        fixture_wait_until(settled, id, (int)(deadline - fixture_now_ms()));
        if (strcmp(system_field(&sys, id, "status", status, sizeof status), "completed") == 0)
            return;
    }
    cr_assert_fail("the services never answered");
}

static void start_system(bool python_payment, const char *const *coordinator_env)
{
    char defs[PATH_MAX];
    snprintf(defs, sizeof defs, "%s/sagas", getenv("SAGA_SOURCE_DIR"));
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0);
    cr_assert_geq(system_add_coordinator(&sys, NULL, coordinator_env), 0);
    const char *inventory_flags[] = {"--fail-on", "sku=OUT-OF-STOCK", NULL};
    const char *payment_flags[] = {"--fail-on", "amount=9999", NULL};
    const char *shipping_flags[] = {"--fail-on", "address=Nowhere", "--delay-on",
                                    "address=Slow Lane:7000", NULL};
    start_service("inventory", false, inventory_flags);
    start_service("payment", python_payment, payment_flags);
    start_service("shipping", false, shipping_flags);
    commands = fixture_collector_new(sys.broker.bootstrap, NULL, "inventory.commands");
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    warm_up();
}

/* The order input for a saga: which step it fails at, by design. */
static void start_order(const char *id, const char *sku, double amount, const char *address)
{
    char input[512];
    snprintf(input, sizeof input,
             "{\"order_id\": \"%s\", \"sku\": \"%s\", \"qty\": 2, \"amount\": %g, "
             "\"address\": \"%s\"}", id, sku, amount, address);
    cr_assert_eq(system_start_saga(&sys, id, "order-placement", input), 0);
}

static void expect_status(const char *id, const char *status)
{
    char why[8192] = "";
    cr_assert(system_expect_status(&sys, id, status, WAIT_MS, why, sizeof why), "%s", why);
}

/* Counts the ledger entries of service for saga id with that effect. */
static int effects(const char *service, const char *id, const char *effect)
{
    redisReply *r = redisCommand(sys.rc, "LRANGE ledger:{%s}:entries 0 -1", service);
    int n = 0;
    for (size_t i = 0; r && i < r->elements; i++) {
        json_t *e = json_loads(r->element[i]->str, 0, NULL);
        const char *saga = json_string_value(json_object_get(e, "saga_id"));
        const char *eff = json_string_value(json_object_get(e, "effect"));
        if (saga && eff && strcmp(saga, id) == 0 && strcmp(eff, effect) == 0)
            n++;
        json_decref(e);
    }
    freeReplyObject(r);
    return n;
}

static long long net(const char *service, const char *id)
{
    redisReply *r = redisCommand(sys.rc, "HGET ledger:{%s}:by_saga %s", service, id);
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

static const char *const SERVICES[] = {"inventory", "payment", "shipping"};
static const char *const DO[] = {"reserve", "charge", "schedule"};
static const char *const UNDO[] = {"release", "refund", "cancel"};

static void expect_completed_once(const char *id)
{
    expect_status(id, "completed");
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(effects(SERVICES[s], id, DO[s]), 1, "%s: %s applied once", id, DO[s]);
        cr_assert_eq(effects(SERVICES[s], id, UNDO[s]), 0, "%s: never undone", id);
    }
}

/* A compensated saga: every ledger nets to zero, nothing applied or undone twice, no undo
 * without its effect. */
static void expect_compensated_to_zero(const char *id)
{
    expect_status(id, "compensated");
    for (int s = 0; s < 3; s++) {
        int done = effects(SERVICES[s], id, DO[s]), undone = effects(SERVICES[s], id, UNDO[s]);
        cr_assert_leq(done, 1, "%s: %s applied %d times", id, DO[s], done);
        cr_assert_eq(undone, done, "%s: %s applied %d, undone %d", id, DO[s], done, undone);
        cr_assert_eq(net(SERVICES[s], id), 0, "%s nets to zero at %s", id, SERVICES[s]);
    }
}

static void run_the_order_mix(void)
{
    start_order("ok-1", "BOOK", 12.5, "1 Main St");
    start_order("ok-2", "MUG", 27, "2 High St");
    start_order("fail-inventory", "OUT-OF-STOCK", 5, "3 Elm St");
    start_order("fail-payment", "LAMP", 9999, "4 Oak St");
    start_order("fail-shipping", "DESK", 150, "Nowhere");
    expect_completed_once("ok-1");
    expect_completed_once("ok-2");
    expect_compensated_to_zero("fail-inventory");
    expect_compensated_to_zero("fail-payment");
    expect_compensated_to_zero("fail-shipping");
    /* Last: the shipping service is busy with it for 7 s, and its one partition would make
     * the other sagas' schedule steps wait behind it and time out too. */
    start_order("timeout-shipping", "CHAIR", 80, "Slow Lane");
    expect_compensated_to_zero("timeout-shipping");
    cr_assert_eq(effects("inventory", "fail-payment", "reserve"), 1, "reserved, then released");
    cr_assert_eq(effects("payment", "fail-shipping", "charge"), 1, "charged, then refunded");
}

Test(e2e, real_services_complete_and_compensate_to_zero)
{
    start_system(false, NULL);
    run_the_order_mix();

    /* Every command the inventory service got, delivered once more, long after the fact:
     * each is answered from the dedup record and applies nothing. */
    size_t n = fixture_collector_count(commands);
    cr_assert_geq(n, 8);
    redisReply *before = redisCommand(sys.rc, "LLEN ledger:{inventory}:entries");
    for (size_t i = 0; i < n; i++) {
        const fixture_message_t *m = fixture_collector_at(commands, i);
        cr_assert_eq(fixture_produce(sys.producer, "inventory.commands", m->partition, m->key,
                                     m->value), 0);
    }
    cr_assert(fixture_collector_wait(commands, 2 * n, WAIT_MS));
    start_order("ok-after", "PEN", 3, "5 Low Rd"); /* a marker: served after the repeats */
    expect_completed_once("ok-after");
    redisReply *after = redisCommand(sys.rc, "LLEN ledger:{inventory}:entries");
    cr_assert_eq(after->integer, before->integer + 1, "only the marker's reserve was applied");
    freeReplyObject(before);
    freeReplyObject(after);
}

Test(e2e, python_participant_completes_and_compensates)
{
    start_system(true, NULL);
    run_the_order_mix();
}

Test(e2e, commands_resent_by_a_new_coordinator_apply_once)
{
    /* The coordinator dies right after producing its second batch of commands, before its
     * offsets are stored: the next one re-sends what the outbox still holds. */
    start_system(false, NULL);
    /* Warmed up: hand over to an instance that crashes at its third produce. */
    cr_assert_eq(fixture_stop_process(sys.coordinators[0], FIXTURE_STOP_TIMEOUT_MS), 0);
    sys.coordinators[0] = 0;
    const char *env[] = {"SAGA_CRASH_AT=after_produce", "SAGA_CRASH_AFTER=3", NULL};
    cr_assert_geq(system_add_coordinator(&sys, NULL, env), 0);
    redisReply *r = redisCommand(sys.rc, "DEL saga:{p0}:owner saga:{p1}:owner saga:{p2}:owner "
                                         "saga:{p3}:owner");
    freeReplyObject(r);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    for (int i = 0; i < 6; i++) {
        char id[32];
        snprintf(id, sizeof id, "crash-%d", i);
        start_order(id, "BOOK", 10 + i, "1 Main St");
    }
    cr_assert_eq(fixture_wait_exit(sys.coordinators[1], WAIT_MS, NULL), 0,
                 "the coordinator reached its crash point");
    sys.coordinators[1] = 0;
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    for (int i = 0; i < 6; i++) {
        char id[32];
        snprintf(id, sizeof id, "crash-%d", i);
        expect_completed_once(id);
    }
}
