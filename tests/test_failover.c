/* test_failover.c - crash safety and fencing of real coordinator processes: a kill -9 at
 * each named point between two I/O operations loses no saga and applies no step twice; a
 * frozen zombie's writes are refused by the epoch; a Redis restart with appendonly loses
 * nothing. The scripted participant records every command: "applied twice" would show as
 * two commands with different command ids for one idempotency key, or two action_ok. */
#include "route.h"
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define WAIT_MS 40000
#define SAGAS 6

static test_system_t sys;
static scripted_t *participant;
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

static void stop_all(void)
{
    for (int i = 0; i < sys.coordinator_count; i++)
        kill(sys.coordinators[i], SIGCONT); /* a frozen process cannot handle SIGTERM */
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
}

TestSuite(failover, .fini = stop_all, .timeout = 180);

static void start(const script_rule_t *rules, size_t n, const char *redis_config)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, redis_config), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, rules, n);
    cr_assert_not_null(participant);
}

static void start_sagas(const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        cr_assert_eq(system_start_saga(&sys, id, "order", INPUT), 0);
    }
}

static void expect_all(const char *prefix, int count, const char *status)
{
    for (int i = 0; i < count; i++) {
        char id[64], buf[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        if (!system_wait_status(&sys, id, status, WAIT_MS))
            system_explain(&sys, id);
        cr_assert(system_wait_status(&sys, id, status, 0), "%s is %s, expected %s", id,
                  system_field(&sys, id, "status", buf, sizeof buf), status);
    }
}

/* Every action of every saga was taken exactly once: one action_ok per step in the
 * history, and the participant never saw two different attempts of one action. */
static void expect_applied_once(const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        json_t *history = system_history(&sys, id);
        int oks = 0;
        size_t k;
        json_t *h;
        json_array_foreach(history, k, h)
            if (strcmp(json_string_value(json_object_get(h, "event")), "action_ok") == 0)
                oks++;
        json_decref(history);
        cr_assert_eq(oks, 3, "%s: %d action_ok events, expected 3", id, oks);
        json_t *cmds = scripted_commands(participant, id);
        json_t *c;
        json_array_foreach(cmds, k, c)
            cr_assert_eq(json_integer_value(json_object_get(c, "attempt")), 1,
                         "%s: only first attempts were ever sent", id);
        json_decref(cmds);
    }
}

static bool process_stopped(void *opaque)
{
    pid_t pid = *(pid_t *)opaque;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'T';
}

static bool process_gone(void *opaque)
{
    pid_t pid = *(pid_t *)opaque;
    int status;
    return waitpid(pid, &status, WNOHANG) == pid;
}

/* A coordinator that kills itself at point, then a fresh one that takes over. */
static void crash_and_take_over(const char *point, const char *after)
{
    start(NULL, 0, NULL);
    char env_at[64], env_after[64];
    snprintf(env_at, sizeof env_at, "SAGA_CRASH_AT=%s", point);
    snprintf(env_after, sizeof env_after, "SAGA_CRASH_AFTER=%s", after);
    const char *env[] = {env_at, env_after, NULL};
    cr_assert_geq(system_add_coordinator(&sys, NULL, env), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    start_sagas(point, SAGAS);
    pid_t victim = sys.coordinators[0];
    cr_assert(fixture_wait_until(process_gone, &victim, WAIT_MS), "crash point %s was reached",
              point);
    sys.coordinators[0] = 0;
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    expect_all(point, SAGAS, "completed");
    expect_applied_once(point, SAGAS);
}

Test(failover, kill_after_redis_write_before_produce)
{
    crash_and_take_over("after_redis_write", "1");
}

Test(failover, kill_after_produce_before_offset_commit)
{
    crash_and_take_over("after_produce", "2");
}

Test(failover, kill_in_the_middle_of_a_saga)
{
    crash_and_take_over("after_redis_write", "4");
}

static const script_rule_t TIMEOUT_RULES[] = {
    {NULL, "charge", "action", 0, SCRIPT_SILENT, NULL},
};

Test(failover, kill_while_a_timeout_fires_and_during_compensation)
{
    start(TIMEOUT_RULES, 1, NULL);
    const char *env[] = {"SAGA_CRASH_AT=after_timer_write", NULL};
    cr_assert_geq(system_add_coordinator(&sys, NULL, env), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    start_sagas("timer", 3);
    pid_t victim = sys.coordinators[0];
    cr_assert(fixture_wait_until(process_gone, &victim, WAIT_MS), "a timer fired");
    sys.coordinators[0] = 0;
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    expect_all("timer", 3, "compensated");
    for (int i = 0; i < 3; i++) {
        char id[32], trail[1024];
        snprintf(id, sizeof id, "timer-%d", i);
        scripted_trail(participant, id, trail, sizeof trail);
        /* charge timed out: compensated (effect unknown), then reserve; each once, in order
         * (a re-sent command keeps its id, so the same attempt number may repeat). */
        cr_assert(strstr(trail, "charge/compensation/1"), "%s: %s", id, trail);
        cr_assert_lt(strstr(trail, "charge/compensation/1"), strstr(trail, "reserve/compensation/1"),
                     "%s: reverse order: %s", id, trail);
        cr_assert_null(strstr(trail, "compensation/2"), "%s: no compensation retried: %s", id,
                       trail);
    }
}

/* The coordinator log at path contains needle (a log_wait_t). */
typedef struct log_wait {
    const char *path, *needle;
} log_wait_t;

static bool log_contains(void *opaque)
{
    const log_wait_t *w = opaque;
    FILE *f = fopen(w->path, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, w->needle) != NULL;
    fclose(f);
    return found;
}

Test(failover, a_frozen_zombie_cannot_write)
{
    start(NULL, 0, NULL);
    const char *env[] = {"SAGA_FREEZE_AT=before_redis_write", NULL};
    cr_assert_geq(system_add_coordinator(&sys, NULL, env), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    cr_assert_eq(system_start_saga(&sys, "zombie-0", "order", INPUT), 0);
    pid_t zombie = sys.coordinators[0];
    cr_assert(fixture_wait_until(process_stopped, &zombie, WAIT_MS),
              "the coordinator froze with the saga's first transition in hand");

    /* Another instance takes over once the zombie's session expires, and runs the saga. */
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    expect_all("zombie", 1, "completed");

    /* The zombie wakes up and flushes its stale transition: the epoch check refuses it. */
    kill(zombie, SIGCONT);
    char log[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/coordinator-0.log", sys.dir);
    log_wait_t fenced = {log, "fenced (another instance took it over)"};
    cr_assert(fixture_wait_until(log_contains, &fenced, WAIT_MS), "the zombie was fenced");
    expect_applied_once("zombie", 1);
    char buf[64];
    cr_assert_str_eq(system_field(&sys, "zombie-0", "status", buf, sizeof buf), "completed");
    cr_assert_str_eq(system_field(&sys, "zombie-0", "version", buf, sizeof buf), "4",
                     "start and three replies: no other write got in");

    /* It rejoins cleanly: new sagas complete with both instances in the group. */
    start_sagas("after", 4);
    expect_all("after", 4, "completed");
}

Test(failover, redis_restart_with_appendonly_loses_nothing)
{
    start(NULL, 0, "appendonly yes\nappendfsync always\n");
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    start_sagas("before", SAGAS);
    expect_all("before", SAGAS, "completed");
    cr_assert_eq(fixture_redis_restart(&sys.redis), 0);
    redisFree(sys.rc);
    sys.rc = fixture_redis_connect(&sys.redis);
    expect_all("before", SAGAS, "completed"); /* nothing acknowledged was lost */
    start_sagas("after", SAGAS);
    expect_all("after", SAGAS, "completed"); /* the coordinator reconnected by itself */
    expect_applied_once("after", SAGAS);
}

Test(failover, an_epoch_lost_by_redis_is_taken_again_not_fenced_forever)
{
    start(NULL, 0, NULL);
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS));
    start_sagas("before", 2);
    expect_all("before", 2, "completed");
    /* What a Redis crash under appendfsync everysec can do: the epoch bumps are gone. */
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++)
        freeReplyObject(redisCommand(sys.rc, "DEL saga:{p%d}:epoch", p));
    start_sagas("after", SAGAS);
    expect_all("after", SAGAS, "completed");
    expect_applied_once("after", SAGAS);
    char log[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/coordinator-0.log", sys.dir);
    log_wait_t lost = {log, "lower than ours"};
    cr_assert(fixture_wait_until(log_contains, &lost, 1000), "the loss was logged");
}
