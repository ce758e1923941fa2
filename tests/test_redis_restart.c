/* test_redis_restart.c - Redis dies (SIGKILL) and comes back in the middle of a run, with
 * order-placement sagas in flight through two coordinators and the three example services.
 * Nothing Redis acknowledged may be lost: every saga's version, every partition's epoch
 * and the started counter read just before the kill are found again (or later values)
 * after the restart; then every saga finishes and the services' ledgers check out
 * (tests/support/ledger_check.h).
 *
 * appendfsync always: every acknowledged write is on disk. appendfsync everysec: a killed
 * redis-server process loses nothing either (Redis write(2)s the AOF before it replies,
 * so the data is in the kernel's page cache); what everysec risks is a crash of the
 * machine or of the OS, up to about a second of acknowledged writes, which a process kill
 * cannot show. docs/high-availability.md says what the coordinator does then. */
#include "ledger_check.h"
#include "services.h"
#include "system.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RR_SAGAS 600
#define RR_KILL_AT 300          /* sagas produced when redis is killed */
#define RR_PRODUCE_PER_S 150
#define RR_DOWN_MS 1000         /* redis stays down this long */
#define RR_WAIT_MS 120000

static test_system_t sys;
static services_t services;

static void stop_all(void)
{
    services_stop(&services);
    system_stop(&sys);
}

TestSuite(redis_restart, .fini = stop_all, .timeout = 300);

static void produce_order(long i)
{
    cr_assert_eq(services_produce_order(&sys, "rr", i), 0);
}

/* What Redis acknowledged at one instant: every saga's version, every epoch, the
 * started counter. versions[i] = 0 when saga i was not there (yet). */
typedef struct acked {
    long long versions[RR_SAGAS];
    long long epochs[SYSTEM_INPUT_PARTITIONS];
    long long started;
    long sagas;
} acked_t;

static void read_acked(acked_t *a)
{
    memset(a, 0, sizeof *a);
    for (long i = 0; i < RR_SAGAS; i++)
        for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++)
            cr_assert_eq(redisAppendCommand(sys.rc, "HGET saga:{p%d}:saga:rr-%ld version", p, i),
                         REDIS_OK);
    for (long i = 0; i < RR_SAGAS; i++)
        for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
            redisReply *r = NULL;
            cr_assert_eq(redisGetReply(sys.rc, (void **)&r), REDIS_OK);
            if (r->type == REDIS_REPLY_STRING) {
                a->versions[i] = atoll(r->str);
                a->sagas++;
            }
            freeReplyObject(r);
        }
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        redisReply *r = redisCommand(sys.rc, "GET saga:{p%d}:epoch", p);
        cr_assert_not_null(r);
        a->epochs[p] = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
        freeReplyObject(r);
    }
    a->started = system_counter(&sys, "order-placement:started");
}

static bool all_terminal(void *opaque)
{
    (void)opaque;
    return system_active(&sys) == 0 &&
           system_counter(&sys, "order-placement:started") == RR_SAGAS;
}

static void run(const char *redis_config)
{
    char defs[PATH_MAX];
    const char *src = getenv("SAGA_SOURCE_DIR");
    snprintf(defs, sizeof defs, "%s/sagas", src ? src : ".");
    cr_assert_eq(system_start(&sys, defs, NULL, redis_config), 0);
    const char *flags[] = {"--fail-rate", "0.05", NULL};
    const char *const *const all[SERVICES_COUNT] = {flags, flags, flags};
    cr_assert_eq(services_start(&services, &sys, all), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_geq(system_add_coordinator(&sys, (const char *[]){"--log_level=info", NULL},
                                             NULL), 0);
    cr_assert(system_wait_owned(&sys, 60000));
    cr_assert(services_wait_log(&services, "assigned", 60000));

    int64_t start = fixture_now_ms();
    long produced = 0;
    while (produced < RR_KILL_AT) {
        long target = (long)((fixture_now_ms() - start) * RR_PRODUCE_PER_S / 1000);
        while (produced < target && produced < RR_KILL_AT)
            produce_order(produced++);
        usleep(10000);
    }
    cr_assert_eq(rd_kafka_flush(sys.producer, 10000), 0);

    static acked_t before, after;
    read_acked(&before);
    cr_assert_gt(before.sagas, 0, "sagas were in flight");
    long in_flight = 0;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        redisReply *r = redisCommand(sys.rc, "ZCARD saga:{p%d}:index:running", p);
        in_flight += r && r->type == REDIS_REPLY_INTEGER ? (long)r->integer : 0;
        freeReplyObject(r);
    }
    kill(sys.redis.pid, SIGKILL);
    cr_assert_eq(fixture_wait_exit(sys.redis.pid, 5000, NULL), 0);
    sys.redis.pid = 0;
    redisFree(sys.rc);
    sys.rc = NULL;
    int64_t killed = fixture_now_ms();
    while (produced < RR_KILL_AT + 60) /* starts keep coming while redis is down */
        produce_order(produced++);
    usleep(RR_DOWN_MS * 1000);
    cr_assert_eq(fixture_redis_restart(&sys.redis), 0, "redis restarts from its AOF");
    cr_assert_not_null(sys.rc = fixture_redis_connect(&sys.redis));
    read_acked(&after);
    long lost = 0;
    for (long i = 0; i < RR_SAGAS; i++)
        if (after.versions[i] < before.versions[i]) {
            if (lost++ < 10)
                fprintf(stderr, "redis_restart: rr-%ld was at version %lld before the kill, "
                        "%lld after\n", i, before.versions[i], after.versions[i]);
        }
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++)
        cr_assert_geq(after.epochs[p], before.epochs[p], "partition %d's epoch went back", p);
    cr_assert_geq(after.started, before.started, "the started counter went back");
    cr_assert_eq(lost, 0, "%ld sagas lost acknowledged transitions", lost);

    while (produced < RR_SAGAS)
        produce_order(produced++);
    cr_assert_eq(rd_kafka_flush(sys.producer, 30000), 0);
    cr_assert(fixture_wait_until(all_terminal, NULL, RR_WAIT_MS), "every saga finished");
    int64_t finished = fixture_now_ms();

    ledger_report_t r;
    int rc = ledger_check_orders(sys.rc, SYSTEM_INPUT_PARTITIONS, "rr", RR_SAGAS, stderr, 20, &r);
    fprintf(stderr,
            "redis_restart (%s): killed with %ld sagas in Redis (%ld running), down %d ms; "
            "after the restart: %ld sagas lost a transition; all %ld finished %lld ms after the "
            "kill: completed %ld, compensated %ld, stuck %ld; violations %ld\n",
            strstr(redis_config, "always") ? "appendfsync always" : "appendfsync everysec",
            before.sagas, in_flight, RR_DOWN_MS, lost, r.sagas, (long long)(finished - killed),
            r.completed, r.compensated, r.stuck, r.violations);
    cr_assert_eq(rc, 0);
    cr_assert_eq(r.violations, 0);
}

Test(redis_restart, sigkill_with_sagas_in_flight_appendfsync_always)
{
    run("appendonly yes\nappendfsync always\n");
}

Test(redis_restart, sigkill_with_sagas_in_flight_appendfsync_everysec)
{
    run("appendonly yes\nappendfsync everysec\n");
}
