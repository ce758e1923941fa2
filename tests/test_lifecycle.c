/* test_lifecycle.c - how a coordinator process starts and stops, against real redis-server
 * and the embedded broker: a clean stop (SIGTERM) hands its partitions over with nothing
 * left for the next owner to re-send; a fatal Kafka error stops it (exit non-zero) instead
 * of looping; Kafka properties that would break its guarantees are refused at start; a
 * Redis that is down or frozen at start is waited for, one that refuses the settings is
 * an exit. */
#include "opstest.h"
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define WAIT_MS 30000
#define SAGAS 150

static test_system_t sys;
static scripted_t *participant;
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

static void stop_all(void)
{
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
}

TestSuite(lifecycle, .fini = stop_all, .timeout = 180);

/* redis_config: extra redis.conf lines, or NULL. */
static void start_with(const char *redis_config)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, redis_config), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, NULL, 0);
    cr_assert_not_null(participant);
}

static void start(void)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, NULL, 0);
    cr_assert_not_null(participant);
}

static long long outbox_entries(void)
{
    long long n = 0;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        redisReply *r = redisCommand(sys.rc, "HLEN saga:{p%d}:outbox", p);
        n += r ? r->integer : 0;
        freeReplyObject(r);
    }
    return n;
}

static bool some_completed(void *opaque)
{
    (void)opaque;
    return system_counter(&sys, "order:completed") >= 20;
}

/* Whether coordinator i's log has a line containing needle. */
static bool log_of_says(int i, const char *needle)
{
    char path[PATH_MAX + 32], line[4096];
    snprintf(path, sizeof path, "%s/coordinator-%d.log", sys.dir, i);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static bool log_says(const char *needle)
{
    return log_of_says(0, needle);
}

Test(lifecycle, a_clean_stop_leaves_nothing_for_the_next_owner_to_resend)
{
    start();
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    for (int i = 0; i < SAGAS; i++) {
        char id[32];
        snprintf(id, sizeof id, "stop-%d", i);
        cr_assert_eq(system_start_saga(&sys, id, "order", INPUT), 0);
    }
    cr_assert(fixture_wait_until(some_completed, NULL, WAIT_MS), "sagas are moving");
    pid_t pid = sys.coordinators[0];
    cr_assert_eq(kill(pid, SIGTERM), 0); /* mid-stream */
    int status = 0;
    cr_assert_eq(fixture_wait_exit(pid, WAIT_MS, &status), 0);
    sys.coordinators[0] = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a clean stop exits 0");
    cr_assert_eq(outbox_entries(), 0,
                 "every command produced before the stop was delivered and acknowledged");
    /* And the next owner finishes what is left, each command applied once. */
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    for (int i = 0; i < SAGAS; i++) {
        char id[32], buf[32];
        snprintf(id, sizeof id, "stop-%d", i);
        cr_assert(system_wait_status(&sys, id, "completed", WAIT_MS), "%s is %s", id,
                  system_field(&sys, id, "status", buf, sizeof buf));
        char trail[512];
        scripted_trail(participant, id, trail, sizeof trail);
        cr_assert_str_eq(trail, "reserve/action/1 charge/action/1 ship/action/1", "%s: %s", id,
                         trail);
    }
}

Test(lifecycle, a_fatal_kafka_error_stops_the_coordinator)
{
    start();
    const char *const env[] = {"SAGA_FATAL_AT=after_redis_write", NULL};
    cr_assert_geq(system_add_coordinator(&sys, NULL, env), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    cr_assert_eq(system_start_saga(&sys, "fatal-1", "order", INPUT), 0);
    int status = 0;
    cr_assert_eq(fixture_wait_exit(sys.coordinators[0], WAIT_MS, &status), 0,
                 "the coordinator stops by itself");
    sys.coordinators[0] = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "and fails (status %d)", status);
    cr_assert(log_says("kafka: fatal error"), "the log says why");
    /* Another instance finishes the saga. */
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    cr_assert(system_wait_status(&sys, "fatal-1", "completed", WAIT_MS));
}

/* Runs a coordinator with one more flag; returns its exit status, its log in log. */
static int run_with(const char *flag, char *log, size_t len)
{
    static int n;
    char name[64];
    snprintf(name, sizeof name, "refused-%d.log", n++);
    const char *const args[] = {flag, NULL};
    pid_t pid = system_spawn_coordinator(&sys, 0, name, args, NULL);
    cr_assert_gt(pid, 0);
    int status = 0;
    cr_assert_eq(fixture_wait_exit(pid, WAIT_MS, &status), 0, "%s: it exits", flag);
    sys.coordinators[0] = 0;
    sys.coordinator_count = 0; /* the slot is free again */
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", sys.dir, name);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(log, 1, len - 1, f) : 0;
    log[got] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(lifecycle, kafka_properties_that_break_the_guarantees_are_refused)
{
    start();
    static const struct {
        const char *flag, *says;
    } cases[] = {
        {"--producer.enable.idempotence=false", "the coordinator needs enable.idempotence=true"},
        {"--kafka.enable.auto.offset.store=true",
         "the coordinator needs enable.auto.offset.store=false"},
        {"--consumer.enable.auto.commit=false", "the coordinator needs enable.auto.commit=true"},
        {"--producer.acks=1", "the coordinator needs acks=all"},
        {"--kafka.group.id=other", "set the group with group_id"},
        {"--consumer.partition.assignment.strategy=cooperative-sticky",
         "eager rebalancing only"},
    };
    char log[8192];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(run_with(cases[i].flag, log, sizeof log), 2, "%s: exit 2", cases[i].flag);
        cr_assert(strstr(log, cases[i].says), "%s: the log says \"%s\": %s", cases[i].flag,
                  cases[i].says, log);
    }
    /* The same values as the pinned ones are fine, as are tunables. */
    const char *const ok_args[] = {"--producer.enable.idempotence=true",
                                   "--consumer.fetch.wait.max.ms=20", NULL};
    cr_assert_geq(system_add_coordinator(&sys, ok_args, NULL), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    cr_assert_eq(system_start_saga(&sys, "tuned-1", "order", INPUT), 0);
    cr_assert(system_wait_status(&sys, "tuned-1", "completed", WAIT_MS));
}

/* Whether coordinator i is still running (not exited). */
static bool running(int i)
{
    int status;
    return sys.coordinators[i] > 0 && waitpid(sys.coordinators[i], &status, WNOHANG) == 0;
}

typedef struct log_wait {
    int coordinator;
    const char *needle;
} log_wait_t;

static bool log_has(void *opaque)
{
    const log_wait_t *w = opaque;
    return log_of_says(w->coordinator, w->needle);
}

/* Starts saga id and expects it completed; if not, what the coordinators logged of it. */
static void expect_completed(const char *id)
{
    cr_assert_eq(system_start_saga(&sys, id, "order", INPUT), 0);
    char why[8192] = "";
    bool completed = system_expect_status(&sys, id, "completed", WAIT_MS, why, sizeof why);
    if (!completed)
        system_explain(&sys, id);
    cr_assert(completed, "%s", why);
}

/* A coordinator started while Redis is frozen (SIGSTOP: connections are accepted, nothing
 * answers), then while it is down (killed: connections refused), waits for it instead of
 * exiting, says so, and runs sagas once Redis answers. */
Test(lifecycle, a_coordinator_started_without_redis_waits_for_it)
{
    /* Redis keeps its data across the kill below: an outage, not a loss of data. */
    start_with("appendonly yes\nappendfsync always\n");
    int http = fixture_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "--http_listen=127.0.0.1:%d", http);
    const char *const frozen_args[] = {"--redis_timeout_ms=500", listen, NULL};
    const char *const args[] = {"--redis_timeout_ms=500", NULL};
    cr_assert_eq(kill(sys.redis.pid, SIGSTOP), 0);
    int frozen = system_add_coordinator(&sys, frozen_args, NULL);
    cr_assert_geq(frozen, 0);
    log_wait_t w = {frozen, "redis: waiting for it to answer"};
    bool said = fixture_wait_until(log_has, &w, WAIT_MS);
    bool alive = running(frozen);
    /* Meanwhile the health checks say so: alive (it retries), not ready, and why. */
    char *live = NULL, *ready = NULL;
    int live_status = ops_http_get(http, "/healthz", &live);
    int ready_status = ops_http_get(http, "/readyz", &ready);
    cr_assert_eq(kill(sys.redis.pid, SIGCONT), 0);
    cr_assert(said, "the coordinator says it waits for the frozen Redis");
    cr_assert(alive, "and waits rather than exits");
    bool live_ok = live_status == 200 && live && strstr(live, "\"starting\"");
    bool ready_ok = ready_status == 503 && ready && strstr(ready, "waiting for redis: ");
    free(live);
    free(ready);
    cr_assert(live_ok, "/healthz: 200, status starting (got %d)", live_status);
    cr_assert(ready_ok, "/readyz: 503, waiting for redis (got %d)", ready_status);
    cr_assert(system_wait_owned(&sys, WAIT_MS), "it starts once Redis answers");
    w.needle = "redis: done after waiting";
    cr_assert(log_has(&w), "and says how long it waited");
    expect_completed("after-frozen");

    /* Redis down: connections are refused. A second coordinator waits, is stopped while
     * waiting (a clean exit), and a third starts once Redis is back. */
    cr_assert_eq(fixture_redis_kill(&sys.redis), 0);
    int down = system_add_coordinator(&sys, args, NULL);
    cr_assert_geq(down, 0);
    w = (log_wait_t){down, "redis: waiting for it to answer"};
    cr_assert(fixture_wait_until(log_has, &w, WAIT_MS), "it waits for the Redis that is down");
    w.needle = "cannot connect to redis";
    cr_assert(log_has(&w), "naming why");
    cr_assert_eq(kill(sys.coordinators[down], SIGTERM), 0);
    int status = 0;
    cr_assert_eq(fixture_wait_exit(sys.coordinators[down], WAIT_MS, &status), 0,
                 "SIGTERM stops it while it waits");
    sys.coordinators[down] = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "cleanly (status 0x%x)", status);
    int later = system_add_coordinator(&sys, args, NULL);
    cr_assert_geq(later, 0);
    w = (log_wait_t){later, "redis: waiting for it to answer"};
    cr_assert(fixture_wait_until(log_has, &w, WAIT_MS));
    cr_assert_eq(fixture_redis_start_again(&sys.redis), 0);
    redisFree(sys.rc);
    cr_assert_not_null(sys.rc = fixture_redis_connect(&sys.redis));
    w.needle = "redis: done after waiting";
    cr_assert(fixture_wait_until(log_has, &w, WAIT_MS), "it starts once Redis is back");
    cr_assert(running(later));
    expect_completed("after-down");
}

/* A Redis that answers but refuses the settings (AUTH here) will not change its mind:
 * the coordinator exits at once with the reason, rather than wait. */
Test(lifecycle, a_redis_refusing_the_password_is_an_exit_not_a_wait)
{
    start();
    char log[8192];
    cr_assert_eq(run_with("--redis_password=not-the-password", log, sizeof log), 2,
                 "exit 2: %s", log);
    cr_assert(strstr(log, "cannot start: ") && strstr(log, "AUTH"), "the log says why: %s", log);
    cr_assert_null(strstr(log, "waiting for it to answer"), "no wait: %s", log);
}
