/* test_broker.c - integration tests of saga-devbroker and of the redis/broker fixtures (kcat, librdkafka, hiredis). */
#include "fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_TOPICS "roundtrip:4,shared:4,fx:2"
#define TEST_KEYS 10
#define TEST_VALUES_PER_KEY 5
#define TEST_GROUP_MESSAGES 200
#define TEST_GROUP_KEYS 20
#define TEST_GROUP_PARTITIONS 4
#define TEST_FX_MESSAGES 10
#define TEST_PROCESS_TIMEOUT_MS 20000
#define TEST_MESSAGES_TIMEOUT_MS 20000
/* First join of an empty group: ~3 s in the mock; a second member forces a rebalance that
 * waits for the first to rejoin. Generous, since CI machines are slow. */
#define TEST_GROUP_TIMEOUT_MS 30000
#define TEST_LINE_MAX 512

static redis_fixture_t redis;
static broker_fixture_t broker;

static void suite_stop(void)
{
    fixture_broker_stop(&broker);
    fixture_redis_stop(&redis);
}

static void suite_start(void)
{
    if (fixture_redis_start(&redis, NULL) != 0)
        cr_assert_fail("redis fixture did not start (see stderr)");
    if (fixture_broker_start(&broker, 1, TEST_TOPICS) != 0) {
        suite_stop();
        cr_assert_fail("broker fixture did not start (see stderr)");
    }
}

TestSuite(broker, .init = suite_start, .fini = suite_stop);

/* ---- helpers ------------------------------------------------------------------------- */

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
    cr_assert_lt(snprintf(out, size, "%s/%s", dir, name), (int)size, "path too long");
}

/* Runs argv to completion (log appended to log_path); asserts exit status 0. */
static void run_ok(const char *const argv[], const char *log_path)
{
    pid_t pid = fixture_spawn(argv, log_path, NULL);
    cr_assert_gt(pid, 0, "cannot start %s", argv[0]);
    int status = 0;
    if (fixture_wait_exit(pid, TEST_PROCESS_TIMEOUT_MS, &status) != 0) {
        (void)fixture_stop_process(pid, FIXTURE_STOP_TIMEOUT_MS);
        cr_assert_fail("%s did not finish in %d ms", argv[0], TEST_PROCESS_TIMEOUT_MS);
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s failed (status 0x%x), see %s", argv[0], status,
              log_path ? log_path : "stderr");
}

static bool file_exists(void *opaque)
{
    return access((const char *)opaque, F_OK) == 0;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[TEST_LINE_MAX];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* ---- kcat ---------------------------------------------------------------------------- */

Test(broker, kcat_round_trips_keyed_messages_and_keeps_a_key_on_one_partition)
{
    char input[PATH_MAX], plog[PATH_MAX], clog[PATH_MAX];
    path_in(input, sizeof input, broker.dir, "kcat-input.txt");
    path_in(plog, sizeof plog, broker.dir, "kcat-produce.log");
    path_in(clog, sizeof clog, broker.dir, "kcat-consume.log");

    FILE *f = fopen(input, "w");
    cr_assert_not_null(f);
    for (int v = 0; v < TEST_VALUES_PER_KEY; v++)
        for (int k = 0; k < TEST_KEYS; k++)
            fprintf(f, "key%d:value%d-%d\n", k, k, v);
    cr_assert_eq(fclose(f), 0);

    const char *produce[] = {"kcat", "-P", "-b", broker.bootstrap, "-t", "roundtrip", "-K:", "-l", input, NULL};
    run_ok(produce, plog);
    /* -e: exit at the end of every partition; %k=%s %p: key=value partition. */
    const char *consume[] = {"kcat", "-C", "-b", broker.bootstrap, "-t", "roundtrip", "-o", "beginning", "-e", "-q",
                             "-f", "%k=%s %p\\n", NULL};
    run_ok(consume, clog);

    int seen[TEST_KEYS][TEST_VALUES_PER_KEY] = {{0}};
    int partition_of[TEST_KEYS];
    for (int k = 0; k < TEST_KEYS; k++)
        partition_of[k] = -1;
    int partitions_used[TEST_GROUP_PARTITIONS] = {0};
    f = fopen(clog, "r");
    cr_assert_not_null(f);
    char line[TEST_LINE_MAX];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        int k, k2, v, p;
        if (line[0] == '%')
            continue; /* a kcat diagnostic, not a message */
        cr_assert_eq(sscanf(line, "key%d=value%d-%d %d", &k, &k2, &v, &p), 4, "unexpected line: %s", line);
        cr_assert(k == k2 && k >= 0 && k < TEST_KEYS && v >= 0 && v < TEST_VALUES_PER_KEY, "bad line: %s", line);
        cr_assert(p >= 0 && p < TEST_GROUP_PARTITIONS, "bad partition: %s", line);
        seen[k][v]++;
        if (partition_of[k] < 0)
            partition_of[k] = p;
        cr_assert_eq(p, partition_of[k], "key%d on partitions %d and %d", k, partition_of[k], p);
        partitions_used[p] = 1;
        lines++;
    }
    fclose(f);
    cr_assert_eq(lines, TEST_KEYS * TEST_VALUES_PER_KEY);
    for (int k = 0; k < TEST_KEYS; k++)
        for (int v = 0; v < TEST_VALUES_PER_KEY; v++)
            cr_assert_eq(seen[k][v], 1, "key%d value %d seen %d times", k, v, seen[k][v]);
    int used = 0;
    for (int p = 0; p < TEST_GROUP_PARTITIONS; p++)
        used += partitions_used[p];
    cr_assert_gt(used, 1, "%d keys all landed on one partition", TEST_KEYS);
}

/* ---- consumer group ------------------------------------------------------------------ */

typedef struct two_collectors {
    fixture_collector_t *a, *b;
    size_t total;
} two_collectors_t;

static bool both_assigned_half(void *opaque)
{
    two_collectors_t *t = opaque;
    return fixture_collector_assigned(t->a) == TEST_GROUP_PARTITIONS / 2 &&
           fixture_collector_assigned(t->b) == TEST_GROUP_PARTITIONS / 2;
}

static bool both_collected_total(void *opaque)
{
    two_collectors_t *t = opaque;
    return fixture_collector_count(t->a) + fixture_collector_count(t->b) >= t->total;
}

static void collector_tally(fixture_collector_t *c, int *value_seen, int *partition_owner, int owner,
                            int *sentinels)
{
    for (size_t i = 0;; i++) {
        const fixture_message_t *m = fixture_collector_at(c, i);
        if (!m)
            break;
        cr_assert(partition_owner[m->partition] == -1 || partition_owner[m->partition] == owner,
                  "partition %d consumed by both members", m->partition);
        partition_owner[m->partition] = owner;
        if (m->key && strcmp(m->key, "sentinel") == 0) {
            (*sentinels)++;
            continue;
        }
        int v = -1;
        cr_assert(m->value && sscanf(m->value, "m%d", &v) == 1 && v >= 0 && v < TEST_GROUP_MESSAGES,
                  "unexpected value %s", m->value ? m->value : "(null)");
        value_seen[v]++;
    }
}

Test(broker, two_group_members_share_four_partitions_and_see_each_message_once)
{
    two_collectors_t t = {0};
    rd_kafka_t *p = NULL;
    int64_t t0 = fixture_now_ms();
    t.a = fixture_collector_new(broker.bootstrap, "share-group", "shared");
    cr_assert_not_null(t.a);
    cr_assert(fixture_collector_wait_assigned(t.a, TEST_GROUP_PARTITIONS, TEST_GROUP_TIMEOUT_MS),
              "first member got %d partitions", fixture_collector_assigned(t.a));
    int64_t t1 = fixture_now_ms();
    t.b = fixture_collector_new(broker.bootstrap, "share-group", "shared");
    cr_assert_not_null(t.b);
    bool shared = fixture_wait_until(both_assigned_half, &t, TEST_GROUP_TIMEOUT_MS);
    int64_t t2 = fixture_now_ms();
    cr_log_info("group timings: first assignment %lld ms, rebalance to 2 members %lld ms", (long long)(t1 - t0),
                (long long)(t2 - t1));
    cr_assert(shared, "members have %d and %d partitions", fixture_collector_assigned(t.a),
              fixture_collector_assigned(t.b));

    p = fixture_producer_new(broker.bootstrap);
    cr_assert_not_null(p);
    char key[32], value[32];
    for (int i = 0; i < TEST_GROUP_MESSAGES; i++) {
        snprintf(key, sizeof key, "s%d", i % TEST_GROUP_KEYS);
        snprintf(value, sizeof value, "m%d", i);
        cr_assert_eq(fixture_produce(p, "shared", -1, key, value), 0);
    }
    /* A sentinel at the end of every partition: once all arrived, nothing earlier is
     * still in flight (order is kept per partition), so the counts below are final. */
    for (int part = 0; part < TEST_GROUP_PARTITIONS; part++)
        cr_assert_eq(fixture_produce(p, "shared", part, "sentinel", "end"), 0);
    t.total = TEST_GROUP_MESSAGES + TEST_GROUP_PARTITIONS;
    cr_assert(fixture_wait_until(both_collected_total, &t, TEST_MESSAGES_TIMEOUT_MS), "collected %zu + %zu",
              fixture_collector_count(t.a), fixture_collector_count(t.b));

    int value_seen[TEST_GROUP_MESSAGES] = {0};
    int owner[TEST_GROUP_PARTITIONS] = {-1, -1, -1, -1};
    int sentinels = 0;
    collector_tally(t.a, value_seen, owner, 0, &sentinels);
    collector_tally(t.b, value_seen, owner, 1, &sentinels);
    cr_assert_eq(sentinels, TEST_GROUP_PARTITIONS);
    for (int i = 0; i < TEST_GROUP_MESSAGES; i++)
        cr_assert_eq(value_seen[i], 1, "m%d received %d times", i, value_seen[i]);
    cr_assert_gt(fixture_collector_count(t.a), 0);
    cr_assert_gt(fixture_collector_count(t.b), 0);
    cr_assert_eq(fixture_collector_count(t.a) + fixture_collector_count(t.b), t.total);

    rd_kafka_destroy(p);
    fixture_collector_free(t.b);
    fixture_collector_free(t.a);
}

/* ---- fixture clients ----------------------------------------------------------------- */

Test(broker, fixture_producer_and_consumer_round_trip)
{
    rd_kafka_t *p = fixture_producer_new(broker.bootstrap);
    cr_assert_not_null(p);
    char key[32], value[32];
    for (int i = 0; i < TEST_FX_MESSAGES; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(value, sizeof value, "v%d", i);
        cr_assert_eq(fixture_produce(p, "fx", i % 3 == 0 ? 1 : -1, key, value), 0);
    }
    cr_assert_eq(fixture_produce(p, "fx", -1, NULL, "no-key"), 0);
    rd_kafka_destroy(p);

    fixture_consumer_t *c = fixture_consumer_new(broker.bootstrap, NULL, "fx");
    cr_assert_not_null(c);
    int seen[TEST_FX_MESSAGES] = {0};
    int null_keys = 0;
    for (int n = 0; n < TEST_FX_MESSAGES + 1; n++) {
        char *k = NULL, *v = NULL;
        int rc = fixture_consume(c, TEST_MESSAGES_TIMEOUT_MS, &k, &v);
        cr_assert_eq(rc, 1, "message %d: consume returned %d", n, rc);
        if (!k) {
            cr_assert_str_eq(v, "no-key");
            null_keys++;
        } else {
            int i = -1, j = -1;
            cr_assert(sscanf(k, "k%d", &i) == 1 && sscanf(v, "v%d", &j) == 1 && i == j && i >= 0 &&
                      i < TEST_FX_MESSAGES, "bad message %s=%s", k, v);
            seen[i]++;
        }
        free(k);
        free(v);
    }
    cr_assert_eq(null_keys, 1);
    for (int i = 0; i < TEST_FX_MESSAGES; i++)
        cr_assert_eq(seen[i], 1, "k%d seen %d times", i, seen[i]);
    cr_assert_eq(fixture_consume(c, 200, NULL, NULL), 0, "an extra message arrived");
    fixture_consumer_free(c);
}

Test(broker, unknown_topics_are_auto_created_with_four_partitions)
{
    rd_kafka_t *p = fixture_producer_new(broker.bootstrap);
    cr_assert_not_null(p);
    cr_assert_eq(fixture_produce(p, "auto.created", -1, "k", "v"), 0);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p, "auto.created", NULL);
    const struct rd_kafka_metadata *md = NULL;
    cr_assert_eq(rd_kafka_metadata(p, 0, rkt, &md, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert_eq(md->topic_cnt, 1);
    cr_assert_eq(md->topics[0].err, RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert_eq(md->topics[0].partition_cnt, 4);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(p);
}

/* ---- devbroker process --------------------------------------------------------------- */

Test(broker, devbroker_exits_0_on_sigterm_and_sigint_and_removes_its_bootstrap_file)
{
    char bin[PATH_MAX];
    cr_assert_eq(fixture_bin_path("saga-devbroker", bin, sizeof bin), 0);
    const int signals[] = {SIGTERM, SIGINT};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        char file[PATH_MAX], log[PATH_MAX], name[64];
        snprintf(name, sizeof name, "own-%zu.bootstrap", i);
        path_in(file, sizeof file, broker.dir, name);
        snprintf(name, sizeof name, "own-%zu.log", i);
        path_in(log, sizeof log, broker.dir, name);
        const char *argv[] = {bin, "--brokers", "3", "--topic", "t:2", "--bootstrap-file", file, NULL};
        pid_t pid = fixture_spawn(argv, log, NULL);
        cr_assert_gt(pid, 0);
        bool up = fixture_wait_until(file_exists, file, FIXTURE_START_TIMEOUT_MS);
        if (!up)
            (void)fixture_stop_process(pid, FIXTURE_STOP_TIMEOUT_MS);
        cr_assert(up, "no bootstrap file; see %s", log);
        cr_assert(file_contains(log, "bootstrap=127.0.0.1:"), "no bootstrap line on stdout");
        cr_assert_eq(kill(pid, signals[i]), 0);
        int status = 0;
        cr_assert_eq(fixture_wait_exit(pid, FIXTURE_STOP_TIMEOUT_MS, &status), 0, "still running after signal %d",
                     signals[i]);
        cr_assert(WIFEXITED(status), "status 0x%x", status);
        cr_assert_eq(WEXITSTATUS(status), 0);
        cr_assert_not(file_exists(file), "bootstrap file left behind");
    }
}

/* ---- devbroker flags (no servers needed) --------------------------------------------- */

static char flags_dir[PATH_MAX];

static void flags_start(void)
{
    snprintf(flags_dir, sizeof flags_dir, "/tmp/saga-test-flags-XXXXXX");
    cr_assert_not_null(mkdtemp(flags_dir));
}

static void flags_stop(void)
{
    if (flags_dir[0] == '\0')
        return;
    const char *argv[] = {"rm", "-rf", flags_dir, NULL};
    pid_t pid = fixture_spawn(argv, NULL, NULL);
    if (pid > 0)
        (void)fixture_wait_exit(pid, TEST_PROCESS_TIMEOUT_MS, NULL);
    flags_dir[0] = '\0';
}

TestSuite(devbroker_flags, .init = flags_start, .fini = flags_stop);

typedef struct bad_flags_case {
    const char *args[4];
    const char *message;
} bad_flags_case_t;

Test(devbroker_flags, bad_flags_exit_2_with_a_message)
{
    static const bad_flags_case_t cases[] = {
        {{"--brokers", "0"}, "--brokers '0': must be an integer in 1..16"},
        {{"--brokers", "two"}, "--brokers 'two'"},
        {{"--brokers", "17"}, "--brokers '17'"},
        {{"--topic", "orders"}, "expected NAME:PARTITIONS"},
        {{"--topic", "orders:0"}, "partition count must be an integer"},
        {{"--topic", "orders:x"}, "partition count must be an integer"},
        {{"--topic", ":3"}, "bad topic name"},
        {{"--topic", "a/b:1"}, "bad topic name"},
        {{"--topics", "a:1,a:2"}, "'a' given twice"},
        {{"--topics", "a:1,"}, "expected NAME:PARTITIONS"},
        {{"--bogus"}, "unknown option '--bogus'"},
        {{"--brokers"}, "--brokers needs a value"},
        {{"stray"}, "unexpected argument 'stray'"},
    };
    char bin[PATH_MAX];
    cr_assert_eq(fixture_bin_path("saga-devbroker", bin, sizeof bin), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char log[PATH_MAX], name[32];
        snprintf(name, sizeof name, "case-%zu.log", i);
        path_in(log, sizeof log, flags_dir, name);
        const char *argv[6] = {bin, cases[i].args[0], cases[i].args[1], cases[i].args[2], NULL, NULL};
        pid_t pid = fixture_spawn(argv, log, NULL);
        cr_assert_gt(pid, 0);
        int status = 0;
        if (fixture_wait_exit(pid, TEST_PROCESS_TIMEOUT_MS, &status) != 0) {
            (void)fixture_stop_process(pid, FIXTURE_STOP_TIMEOUT_MS);
            cr_assert_fail("case %zu (%s) did not exit", i, cases[i].args[0]);
        }
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "case %zu (%s %s): status 0x%x", i,
                  cases[i].args[0], cases[i].args[1] ? cases[i].args[1] : "", status);
        cr_assert(file_contains(log, cases[i].message), "case %zu: no '%s' in its output", i, cases[i].message);
    }
}

Test(devbroker_flags, help_exits_0_with_usage)
{
    char bin[PATH_MAX], log[PATH_MAX];
    cr_assert_eq(fixture_bin_path("saga-devbroker", bin, sizeof bin), 0);
    path_in(log, sizeof log, flags_dir, "help.log");
    const char *argv[] = {bin, "--help", NULL};
    run_ok(argv, log);
    cr_assert(file_contains(log, "Usage: saga-devbroker"));
    cr_assert(file_contains(log, "--bootstrap-file"));
}

/* ---- redis fixture ------------------------------------------------------------------- */

static redis_fixture_t aof_redis;

static void redis_suite_stop(void)
{
    fixture_redis_stop(&aof_redis);
    fixture_redis_stop(&aof_redis); /* twice on purpose: must be harmless */
}

TestSuite(redis, .fini = redis_suite_stop);

static void redis_expect(redisContext *c, const char *key, const char *value)
{
    redisReply *r = redisCommand(c, "GET %s", key);
    cr_assert_not_null(r, "GET failed: %s", c->errstr);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "GET %s: reply type %d", key, r->type);
    cr_assert_str_eq(r->str, value);
    freeReplyObject(r);
}

static void redis_set(redisContext *c, const char *key, const char *value)
{
    redisReply *r = redisCommand(c, "SET %s %s", key, value);
    cr_assert_not_null(r, "SET failed: %s", c->errstr);
    cr_assert_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

Test(broker, redis_fixture_serves_set_and_get)
{
    redisContext *c = fixture_redis_connect(&redis);
    cr_assert_not_null(c);
    redis_set(c, "saga:test", "hello");
    redis_expect(c, "saga:test", "hello");
    redisFree(c);
}

Test(redis, restart_with_appendonly_keeps_data_and_stop_cleans_up)
{
    cr_assert_eq(fixture_redis_start(&aof_redis, "appendonly yes\nappendfsync always\n"), 0);
    int port = aof_redis.port;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", aof_redis.dir);
    redisContext *c = fixture_redis_connect(&aof_redis);
    cr_assert_not_null(c);
    redis_set(c, "saga:durable", "kept");
    redisFree(c);

    cr_assert_eq(fixture_redis_restart(&aof_redis), 0);
    cr_assert_eq(aof_redis.port, port);
    c = fixture_redis_connect(&aof_redis);
    cr_assert_not_null(c);
    redis_expect(c, "saga:durable", "kept");
    redisFree(c);

    fixture_redis_stop(&aof_redis);
    cr_assert_eq(aof_redis.pid, 0);
    cr_assert_not(file_exists(dir), "%s left behind", dir);
}

Test(redis, without_appendonly_a_restart_loses_data)
{
    cr_assert_eq(fixture_redis_start(&aof_redis, NULL), 0);
    redisContext *c = fixture_redis_connect(&aof_redis);
    cr_assert_not_null(c);
    redis_set(c, "saga:volatile", "gone");
    redisFree(c);
    cr_assert_eq(fixture_redis_restart(&aof_redis), 0);
    c = fixture_redis_connect(&aof_redis);
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, "EXISTS saga:volatile");
    cr_assert_not_null(r);
    cr_assert_eq(r->integer, 0, "save \"\" and appendonly no should keep nothing");
    freeReplyObject(r);
    redisFree(c);
}
