/* test_input_safety.c - the guarantees a stranger's messages must not break, each found
 * once by a participant written from docs/protocol.md alone or by a chaos run:
 * - one saga per id, whatever partition a start lands on (keyed or not, any partitioner,
 *   after the input topic grew);
 * - a reply counts only with the awaited command's command_id;
 * - a reply that reached the input topic in time wins over the timeout, even when the
 *   coordinator was frozen (SIGSTOP) past the deadline;
 * - a start that cannot run gets a rejected outcome with the reason;
 * - a reply for a finished saga is a late duplicate, not a dead letter;
 * - a Redis outage neither spins nor floods the log, and loses nothing.
 * Messages are built as docs/protocol.md describes them (raw JSON, librdkafka or kcat),
 * not through our SDK; state is read through the documented Redis keys. */
#include "route.h"
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 30000

static test_system_t sys;
static scripted_t *participant;
static fixture_collector_t *outcomes, *deadletters, *input;
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";
static const char FULL_TRAIL[] = "reserve/action/1 charge/action/1 ship/action/1";

static void stop_all(void)
{
    for (int i = 0; i < sys.coordinator_count; i++)
        kill(sys.coordinators[i], SIGCONT); /* a frozen process cannot handle SIGTERM */
    fixture_collector_free(outcomes);
    fixture_collector_free(deadletters);
    fixture_collector_free(input);
    outcomes = deadletters = input = NULL;
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
}

TestSuite(input_safety, .fini = stop_all, .timeout = 240);

/* Starts Redis, the broker, the participant and collectors; the coordinator is started by
 * start_coordinator, so that a test can prepare Redis first. */
static void start(const script_rule_t *rules, size_t n, const char *redis_config)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, redis_config), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, rules, n);
    cr_assert_not_null(participant);
    outcomes = fixture_collector_new(sys.broker.bootstrap, NULL, "saga.outcomes");
    deadletters = fixture_collector_new(sys.broker.bootstrap, NULL, "saga.deadletter");
    cr_assert(outcomes && deadletters);
}

static void start_coordinator_with(const char *const *args)
{
    cr_assert_geq(system_add_coordinator(&sys, args, NULL), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
}

static void start_coordinator(void)
{
    start_coordinator_with(NULL);
}

static void expect_status(const char *id, const char *status)
{
    char why[8192] = "";
    cr_assert(system_expect_status(&sys, id, status, WAIT_MS, why, sizeof why), "%s", why);
}

static void expect_trail(const char *id, const char *expected)
{
    char trail[2048];
    scripted_trail(participant, id, trail, sizeof trail);
    cr_assert_str_eq(trail, expected, "commands received for %s: %s", id, trail);
}

/* The messages of a collector whose key is key and whose value holds needle. */
static size_t count_with(fixture_collector_t *col, const char *key, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < fixture_collector_count(col); i++) {
        const fixture_message_t *m = fixture_collector_at(col, i);
        if ((!key || (m->key && strcmp(m->key, key) == 0)) && m->value &&
            (!needle || strstr(m->value, needle)))
            n++;
    }
    return n;
}

typedef struct collected {
    fixture_collector_t *col;
    const char *key, *needle;
    size_t n;
} collected_t;

static bool has_collected(void *opaque)
{
    collected_t *c = opaque;
    return count_with(c->col, c->key, c->needle) >= c->n;
}

/* Waits until col holds n messages keyed key whose value holds needle. */
static bool wait_collected(fixture_collector_t *col, const char *key, const char *needle,
                           size_t n)
{
    collected_t c = {col, key, needle, n};
    return fixture_wait_until(has_collected, &c, WAIT_MS);
}

/* The outcome of id (new reference), waiting for it. */
static json_t *outcome_of(const char *id)
{
    cr_assert(wait_collected(outcomes, id, NULL, 1), "an outcome for %s", id);
    for (size_t i = 0; i < fixture_collector_count(outcomes); i++) {
        const fixture_message_t *m = fixture_collector_at(outcomes, i);
        if (m->key && strcmp(m->key, id) == 0)
            return json_loads(m->value, 0, NULL);
    }
    return NULL;
}

/* An id "PREFIX-N" whose home is partition home. */
static void id_with_home(char *id, size_t len, const char *prefix, int32_t routing, int32_t home)
{
    for (int n = 0;; n++) {
        snprintf(id, len, "%s-%d", prefix, n);
        if (route_home(id, routing, SYSTEM_INPUT_PARTITIONS) == home)
            return;
    }
}

static void produce_to(int partition, const char *key, const char *value)
{
    cr_assert_eq(fixture_produce(sys.producer, "saga.input", partition, key, value), 0);
}

/* Produces with kcat, as an operator from the docs would: no key, to one partition. */
static void kcat_unkeyed(int partition, const char *value)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/kcat-input.json", sys.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", value);
    fclose(f);
    char p[16];
    snprintf(p, sizeof p, "%d", partition);
    const char *argv[] = {"kcat", "-P", "-b", sys.broker.bootstrap, "-t", "saga.input", "-p", p,
                          "-l", path, NULL};
    pid_t pid = fixture_spawn(argv, NULL, NULL);
    int status = 0;
    cr_assert_gt(pid, 0);
    cr_assert_eq(fixture_wait_exit(pid, WAIT_MS, &status), 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "kcat failed");
}

/* Every message produced before this call to any partition has been handled (and what
 * was forwarded, handled at its home): a start to each partition, then one more to each
 * home, completed. */
static void wait_input_handled(const char *tag)
{
    for (int round = 0; round < 2; round++) {
        for (int32_t p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
            char id[64], prefix[48], msg[256];
            snprintf(prefix, sizeof prefix, "%s-%d-%d", tag, round, (int)p);
            id_with_home(id, sizeof id, prefix, SYSTEM_INPUT_PARTITIONS, p);
            snprintf(msg, sizeof msg, "{\"type\":\"start\",\"saga_id\":\"%s\",\"saga\":\"order\","
                     "\"input\":%s}", id, INPUT);
            produce_to(p, id, msg);
        }
        for (int32_t p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
            char id[64], prefix[48];
            snprintf(prefix, sizeof prefix, "%s-%d-%d", tag, round, (int)p);
            id_with_home(id, sizeof id, prefix, SYSTEM_INPUT_PARTITIONS, p);
            expect_status(id, "completed");
        }
    }
}

/* The same start, keyed and unkeyed, to every partition: one saga, at its home, applied
 * once, one outcome. */
static void same_start_everywhere_makes_one_saga(const char *id, int32_t routing)
{
    char msg[256];
    snprintf(msg, sizeof msg, "{\"type\":\"start\",\"saga_id\":\"%s\",\"saga\":\"order\","
             "\"input\":%s}", id, INPUT);
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        produce_to(p, NULL, msg);  /* no key: whatever partition the producer picked */
        produce_to(p, id, msg);    /* keyed, but hashed by another partitioner */
    }
    kcat_unkeyed(SYSTEM_INPUT_PARTITIONS - 1, msg);
    expect_status(id, "completed");
    wait_input_handled("settle");
    int32_t home = route_home(id, routing, SYSTEM_INPUT_PARTITIONS);
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        redisReply *r = redisCommand(sys.rc, "EXISTS saga:{p%d}:saga:%s", p, id);
        cr_assert_eq(r->integer, p == home ? 1 : 0, "saga %s on partition %d (home %d)", id, p,
                     (int)home);
        freeReplyObject(r);
    }
    expect_trail(id, FULL_TRAIL);
    /* One outcome (delivered at least once: any copy is the same message). */
    cr_assert(wait_collected(outcomes, id, NULL, 1), "an outcome for %s", id);
    const char *first = NULL;
    for (size_t i = 0; i < fixture_collector_count(outcomes); i++) {
        const fixture_message_t *m = fixture_collector_at(outcomes, i);
        if (!m->key || strcmp(m->key, id) != 0)
            continue;
        if (!first)
            first = m->value;
        cr_assert_str_eq(m->value, first, "two different outcomes for %s", id);
    }
    cr_assert_eq(system_counter(&sys, "order:started"),
                 1 + 2 * SYSTEM_INPUT_PARTITIONS, "one start counted for %s", id);
}

Test(input_safety, the_same_start_on_every_partition_makes_one_saga)
{
    start(NULL, 0, NULL);
    start_coordinator();
    same_start_everywhere_makes_one_saga("twice-1", SYSTEM_INPUT_PARTITIONS);
}

Test(input_safety, one_saga_per_id_after_the_input_topic_grew)
{
    start(NULL, 0, NULL);
    /* As if the first coordinator had started when saga.input had 2 partitions. */
    freeReplyObject(redisCommand(sys.rc, "HSET saga:meta routing_partitions 2"));
    start_coordinator();
    same_start_everywhere_makes_one_saga("grown-1", 2);
    char buf[16];
    cr_assert_str_eq(system_field(&sys, "grown-1", "partition", buf, sizeof buf),
                     route_home("grown-1", 2, SYSTEM_INPUT_PARTITIONS) == 0 ? "0" : "1");
}

static const script_rule_t SILENT_CHARGE[] = {
    {"cmdid", "charge", "action", 1, SCRIPT_SILENT, NULL},
};

Test(input_safety, a_reply_counts_only_with_the_awaited_command_id)
{
    start(SILENT_CHARGE, 1, NULL);
    start_coordinator();
    cr_assert_eq(system_start_saga(&sys, "cmdid", "order", INPUT), 0);
    cr_assert(scripted_wait(participant, 2, WAIT_MS), "reserve and charge sent");
    int part = 0;
    json_decref(system_saga(&sys, "cmdid", &part));
    const char *wrong[] = {
        "\"command_id\":\"cmdid/charge/action/2\",\"attempt\":1",   /* a later attempt's */
        "\"command_id\":\"other/charge/action/1\",\"attempt\":1",   /* another saga's */
        "\"command_id\":\"cmdid/reserve/action/1\",\"attempt\":1",  /* another step's */
        "\"attempt\":1",                                            /* none */
        "\"command_id\":\"nonsense\",\"attempt\":1",                /* not a command id */
    };
    char msg[512];
    for (size_t i = 0; i < 5; i++) {
        snprintf(msg, sizeof msg, "{\"type\":\"reply\",\"saga_id\":\"cmdid\",%s,\"step\":"
                 "\"charge\",\"kind\":\"action\",\"status\":\"ok\",\"output\":{\"charge_id\":"
                 "\"forged\"}}", wrong[i]);
        produce_to(part, "cmdid", msg);
    }
    cr_assert(wait_collected(deadletters, "cmdid", NULL, 5), "each is dead-lettered: %zu",
              count_with(deadletters, "cmdid", NULL));
    cr_assert_eq(count_with(deadletters, "cmdid", "command_id"), 5);
    char buf[64];
    cr_assert_str_eq(system_field(&sys, "cmdid", "status", buf, sizeof buf), "running");
    json_t *charge = system_step(&sys, "cmdid", "charge");
    cr_assert_null(json_object_get(charge, "output"), "no forged output was taken");
    json_decref(charge);
    produce_to(part, "cmdid", "{\"type\":\"reply\",\"saga_id\":\"cmdid\",\"command_id\":"
               "\"cmdid/charge/action/1\",\"status\":\"ok\",\"output\":{\"charge_id\":\"c-1\"}}");
    expect_status("cmdid", "completed");
    expect_trail("cmdid", FULL_TRAIL);
}

static const script_rule_t SLOW_CHARGE[] = {
    {"frozen", "charge", "action", 1, SCRIPT_OK_AFTER, NULL, 300},
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool wall_clock_past(void *opaque)
{
    return wall_ms() > *(int64_t *)opaque;
}

Test(input_safety, a_reply_in_time_wins_over_the_timeout_after_a_freeze)
{
    start(SLOW_CHARGE, 1, NULL);
    input = fixture_collector_new(sys.broker.bootstrap, NULL, "saga.input");
    /* A session (or lease) longer than the freeze: no failover, only a late wake-up. */
    const char *const args[] = {"--session_timeout_ms=20000", "--lease_ms=20000", NULL};
    start_coordinator_with(args);
    cr_assert_eq(system_start_saga(&sys, "frozen", "order", INPUT), 0);
    cr_assert(scripted_wait(participant, 2, WAIT_MS), "charge sent");
    pid_t coordinator = sys.coordinators[0];
    cr_assert_eq(kill(coordinator, SIGSTOP), 0); /* the reply comes 300 ms later */
    json_t *cmds = scripted_commands(participant, "frozen");
    int64_t deadline = json_integer_value(json_object_get(json_array_get(cmds, 1), "deadline"));
    json_decref(cmds);
    cr_assert_gt(deadline, 0);
    cr_assert(wait_collected(input, "frozen", "\"charge\"", 1), "the reply is on the topic");
    for (size_t i = 0; i < fixture_collector_count(input); i++) {
        const fixture_message_t *m = fixture_collector_at(input, i);
        if (m->key && strcmp(m->key, "frozen") == 0 && strstr(m->value, "\"charge\""))
            cr_assert(strstr(m->value, "\"reply\""));
    }
    /* Frozen until well past the charge deadline (the session has not expired). */
    int64_t thaw = deadline + 1500;
    cr_assert(fixture_wait_until(wall_clock_past, &thaw, 10000));
    cr_assert_eq(kill(coordinator, SIGCONT), 0);
    expect_status("frozen", "completed");
    expect_trail("frozen", FULL_TRAIL);
    json_t *charge = system_step(&sys, "frozen", "charge");
    cr_assert_eq(json_integer_value(json_object_get(charge, "attempt")), 1);
    json_decref(charge);
}

typedef struct bad_start {
    const char *id;
    const char *body;   /* the rest of the start message */
    const char *reason; /* the rejected outcome's error contains it */
} bad_start_t;

Test(input_safety, every_start_that_cannot_run_is_rejected_with_its_reason)
{
    start(NULL, 0, NULL);
    start_coordinator();
    char *big = malloc(270 * 1024);
    cr_assert_not_null(big);
    int n = snprintf(big, 64, "\"saga\":\"order\",\"input\":{\"sku\":\"");
    memset(big + n, 'x', 265 * 1024);
    strcpy(big + n + 265 * 1024, "\",\"qty\":1}");
    char deep[512] = "\"saga\":\"order\",\"input\":";
    for (int i = 0; i < 34; i++)
        strcat(deep, "{\"a\":");
    strcat(deep, "1");
    for (int i = 0; i < 34; i++)
        strcat(deep, "}");
    const bad_start_t cases[] = {
        {"rej-big", big, "$.input: "},
        {"rej-deep", deep, "$.input: nested deeper than 32 levels"},
        {"rej-notobj", "\"saga\":\"order\",\"input\":[1]", "$.input: expected an object"},
        {"rej-v-str", "\"saga\":\"order\",\"version\":\"1\"", "$.version: expected an integer"},
        {"rej-v-0", "\"saga\":\"order\",\"version\":0", "$.version: expected an integer >= 1"},
        {"rej-v-frac", "\"saga\":\"order\",\"version\":1.5", "$.version: expected an integer"},
        {"rej-v-neg", "\"saga\":\"order\",\"version\":-1", "$.version: expected an integer"},
        {"rej-nosaga", "\"input\":{}", "$.saga: missing"},
        {"rej-numsaga", "\"saga\":7", "$.saga: expected a string"},
        {"rej-field", "\"saga\":\"order\",\"colour\":\"red\"", "$.colour: unknown field"},
    };
    size_t ncases = sizeof cases / sizeof *cases;
    for (size_t i = 0; i < ncases; i++) {
        size_t len = strlen(cases[i].body) + 128;
        char *msg = malloc(len);
        snprintf(msg, len, "{\"type\":\"start\",\"saga_id\":\"%s\",%s}", cases[i].id,
                 cases[i].body);
        cr_assert_eq(system_produce_input(&sys, cases[i].id, msg), 0);
        free(msg);
    }
    free(big);
    /* No usable id: nothing to address an outcome to; the dead letter says why. */
    cr_assert_eq(system_produce_input(&sys, NULL, "{\"type\":\"start\",\"saga_id\":\"a b\","
                                      "\"saga\":\"order\"}"), 0);
    /* No id given: rejected under the id it would have had. */
    cr_assert_eq(fixture_produce(sys.producer, "saga.input", 2, NULL,
                                 "{\"type\":\"start\",\"saga\":\"order\",\"version\":0}"), 0);
    for (size_t i = 0; i < ncases; i++) {
        json_t *o = outcome_of(cases[i].id);
        cr_assert_not_null(o);
        cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "rejected", "%s",
                         cases[i].id);
        const char *error = json_string_value(json_object_get(o, "error"));
        cr_assert(error && strstr(error, cases[i].reason), "%s: %s, expected %s", cases[i].id,
                  error, cases[i].reason);
        json_decref(o);
        cr_assert_null(system_saga(&sys, cases[i].id, NULL), "nothing created for %s",
                       cases[i].id);
    }
    cr_assert(wait_collected(outcomes, NULL, "\"saga_id\":\"p2-o", 1),
              "the start without an id is rejected under its generated id");
    cr_assert(wait_collected(deadletters, NULL, "$.saga_id: expected 1-128 characters", 1));
}

Test(input_safety, a_reply_for_a_finished_saga_is_late_not_dead)
{
    start(NULL, 0, NULL);
    start_coordinator();
    cr_assert_eq(system_start_saga(&sys, "done-1", "order", INPUT), 0);
    expect_status("done-1", "completed");
    int part = 0;
    json_decref(system_saga(&sys, "done-1", &part));
    char ghost[64];
    id_with_home(ghost, sizeof ghost, "ghost", SYSTEM_INPUT_PARTITIONS, part);
    /* A redelivered reply of the finished saga, then one for a saga that never was. */
    produce_to(part, "done-1", "{\"type\":\"reply\",\"saga_id\":\"done-1\",\"command_id\":"
               "\"done-1/charge/action/1\",\"status\":\"ok\",\"output\":{}}");
    char msg[256];
    snprintf(msg, sizeof msg, "{\"type\":\"reply\",\"saga_id\":\"%s\",\"command_id\":"
             "\"%s/charge/action/1\",\"status\":\"ok\",\"output\":{}}", ghost, ghost);
    produce_to(part, ghost, msg);
    cr_assert(wait_collected(deadletters, ghost, "never started, or expired", 1),
              "the ghost's reply is dead-lettered");
    cr_assert_eq(count_with(deadletters, "done-1", NULL), 0,
                 "the finished saga's reply is only counted");
}

/* CPU seconds (user + system) pid has used, from /proc. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    cr_assert_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                        &stime), 2);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Lines of the coordinator's log that hold needle. */
static size_t log_lines_with(const char *needle)
{
    char path[PATH_MAX + 32], line[4096];
    snprintf(path, sizeof path, "%s/coordinator-0.log", sys.dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

static bool log_says_back(void *opaque)
{
    (void)opaque;
    return log_lines_with("Redis available again") > 0;
}

Test(input_safety, a_redis_outage_neither_spins_nor_floods_the_log)
{
    start(NULL, 0, "appendonly yes\nappendfsync always\n");
    start_coordinator();
    for (int i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof id, "pre-%d", i);
        cr_assert_eq(system_start_saga(&sys, id, "order", INPUT), 0);
        expect_status(id, "completed");
    }
    pid_t coordinator = sys.coordinators[0];
    size_t lines_before = log_lines_with(""); /* every line */
    cr_assert_eq(fixture_redis_kill(&sys.redis), 0);
    /* Sagas started during the outage wait for Redis. */
    cr_assert_eq(system_start_saga(&sys, "during-1", "order", INPUT), 0);
    double cpu0 = cpu_seconds(coordinator);
    int64_t until = fixture_now_ms() + 3000;
    while (fixture_now_ms() < until)
        usleep(50 * 1000); /* the outage lasts 3 s: time itself is what is tested */
    double cpu = cpu_seconds(coordinator) - cpu0;
    size_t lines = log_lines_with("") - lines_before;
    cr_assert_eq(fixture_redis_start_again(&sys.redis), 0);
    redisFree(sys.rc);
    sys.rc = fixture_redis_connect(&sys.redis);
    cr_assert_not_null(sys.rc);
    cr_assert_lt(cpu, 0.5, "the coordinator used %.2f s of CPU in a 3 s outage", cpu);
    cr_assert_lt(lines, 40, "%zu log lines in a 3 s outage", lines);
    cr_assert_eq(log_lines_with("Redis unavailable ("), 1, "the loss is said once");
    cr_assert(fixture_wait_until(log_says_back, NULL, WAIT_MS), "and the return once");
    expect_status("during-1", "completed");
    expect_trail("during-1", FULL_TRAIL);
    for (int i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof id, "pre-%d", i);
        expect_status(id, "completed");
        expect_trail(id, FULL_TRAIL);
    }
}
