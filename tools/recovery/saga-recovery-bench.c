/* saga-recovery-bench.c - measures how long the sagas of a killed coordinator take to run
 * again on another instance (docs/high-availability.md).
 *
 * It starts redis-server, the embedded broker and two coordinators (rec-a, rec-b) on free
 * loopback ports, puts N sagas of tools/recovery/sagas/recovery-hold.json in flight (their
 * first step, "hold", is never answered by anyone, and its timeout is an hour), SIGKILLs the
 * coordinator owning most of them and, right after the kill, answers "hold" for every saga
 * of the dead instance, as a participant would that had been waiting for them.
 *
 * Recovery time = from the SIGKILL until the survivor has sent the command of step 2
 * ("next") for every saga of the dead instance, i.e. every one of them was taken over,
 * loaded from Redis, and moved one step forward by the survivor. Breakdown, from the
 * survivor's log and a consumer of step 2's topic:
 *   detection  kill -> the survivor's partitions revoked (the broker noticed the dead
 *              member: session timeout, checked once a second by the mock)
 *   rebalance  revoked -> first partition assigned (join/sync of the survivor)
 *   load       per partition: epoch taken, active sagas read and rebuilt, outbox re-sent
 *   catch-up   the input that arrived meanwhile (the replies) read and processed: until
 *              the last saga's step-2 command was seen
 *
 * With --membership redis (partition leases, docs/high-availability.md) there is no
 * rebalance: detection is the lease running out, then the survivor takes the partitions
 * ("takeover" below); the survivor's own partitions are not reloaded. --graceful sends
 * SIGTERM instead of SIGKILL (a hand-over: the leases are released at once), and the
 * participant is released once the victim has exited.
 *
 * --rolling: three coordinators restarted one after another (SIGTERM, wait for the exit,
 * start again) while sagas of tools/recovery/sagas/recovery-roll.json (three steps, each
 * answered at once by a participant) start at --rate per second. Prints the longest stall
 * of any saga (the largest gap between two consecutive events of its history) and checks
 * the ledger: every saga completed, every step's action sent under one attempt only.
 *
 * Usage: saga-recovery-bench [--sagas N] [--partitions P] [--membership redis|kafka]
 *                            [--lease-ms MS] [--session-timeout MS] [--heartbeat MS]
 *                            [--batch-size N] [--graceful] [--keep]
 *        saga-recovery-bench --rolling [--rate N] [--gap-ms MS] [--membership ...] ...
 * Needs $SAGA_BIN_DIR (default: this program's directory) for saga-coordinator and
 * saga-devbroker, and redis-server in PATH. Exit status 0 when every saga recovered. */
#include "fixture.h"
#include "rkeys.h"
#include "route.h"
#include "scripted.h"

#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define BENCH_MAX_PARTITIONS 64
#define BENCH_WAIT_MS 300000      /* bound of every wait */
#define BENCH_POLL_US 2000        /* how often the end condition is looked at */

typedef struct options {
    long sagas;
    int partitions;
    long session_timeout_ms;
    long heartbeat_ms;   /* 0 = librdkafka's default (3000) */
    long batch_size;     /* 0 = the coordinator's default */
    const char *membership; /* "redis" or "kafka" */
    long lease_ms;
    bool graceful;       /* SIGTERM instead of SIGKILL */
    bool rolling;        /* the rolling restart mode */
    long rate;           /* --rolling: sagas started per second */
    long gap_ms;         /* --rolling: time between two restarts (and before the first) */
    bool keep;
} options_t;

static redis_fixture_t redis;
static broker_fixture_t broker;
#define BENCH_MAX_COORDS 3
static pid_t coords[BENCH_MAX_COORDS];
static char logs[BENCH_MAX_COORDS][PATH_MAX + 64];
static const char *const NAMES[BENCH_MAX_COORDS] = {"rec-a", "rec-b", "rec-c"};
static redisContext *rc;
static const rkeys_t KEYS = {RKEYS_DEFAULT_PREFIX}; /* the coordinators' key prefix */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what)
{
    fprintf(stderr, "saga-recovery-bench: %s\n", what);
    for (int i = 0; i < BENCH_MAX_COORDS; i++)
        if (coords[i] > 0)
            (void)fixture_stop_process(coords[i], FIXTURE_STOP_TIMEOUT_MS);
    fixture_broker_stop(&broker);
    fixture_redis_stop(&redis);
    exit(1);
}

static long long redis_int(const char *fmt, const char *key)
{
    redisReply *r = redisCommand(rc, fmt, key);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    else if (r && r->type == REDIS_REPLY_NIL)
        v = 0;
    freeReplyObject(r);
    return v;
}

/* The instance owning partition p (index into NAMES), or -1. */
static int owner_of(int p)
{
    char key[RKEYS_KEY_MAX];
    redisReply *r = redisCommand(rc, "HGET %s " RKEYS_OWNER_OWNER, rkeys_owner(&KEYS, key, p));
    int who = -1;
    for (int i = 0; i < BENCH_MAX_COORDS && r && r->type == REDIS_REPLY_STRING; i++)
        if (strcmp(r->str, NAMES[i]) == 0)
            who = i;
    freeReplyObject(r);
    return who;
}

static const options_t *opt;

/* Every partition has an owner. */
static bool all_owned(void *opaque)
{
    (void)opaque;
    for (int p = 0; p < opt->partitions; p++)
        if (owner_of(p) < 0)
            return false;
    return true;
}

static bool both_own(void *opaque)
{
    (void)opaque;
    bool seen[2] = {false, false};
    for (int p = 0; p < opt->partitions; p++) {
        int o = owner_of(p);
        if (o < 0)
            return false;
        seen[o] = true;
    }
    return seen[0] && seen[1];
}

static bool all_in_flight(void *opaque)
{
    (void)opaque;
    long long started = 0;
    char key[RKEYS_KEY_MAX];
    for (int p = 0; p < opt->partitions; p++) {
        if (redis_int("HLEN %s", rkeys_outbox(&KEYS, key, p)) != 0)
            return false;
        started += redis_int("HGET %s recovery-hold:" RKEYS_COUNTER_STARTED,
                             rkeys_counters(&KEYS, key, p));
    }
    return started == opt->sagas;
}

static void parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){.sagas = 10000, .partitions = 4, .session_timeout_ms = 6000,
                     .membership = "redis", .lease_ms = 1000, .rate = 200, .gap_ms = 4000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--keep") == 0 || strcmp(a, "--graceful") == 0 ||
            strcmp(a, "--rolling") == 0) {
            *(a[2] == 'k' ? &o->keep : a[2] == 'g' ? &o->graceful : &o->rolling) = true;
            continue;
        }
        if (strcmp(a, "--membership") == 0 && v && (!strcmp(v, "redis") || !strcmp(v, "kafka"))) {
            o->membership = v;
            i++;
            continue;
        }
        if (!v || strncmp(a, "--", 2) != 0 || strcmp(a, "--help") == 0) {
            fprintf(stderr, "usage: %s [--sagas N] [--partitions P] [--membership redis|kafka] "
                    "[--lease-ms MS] [--session-timeout MS] [--heartbeat MS] [--batch-size N] "
                    "[--graceful] [--keep]\n", argv[0]);
            exit(strcmp(a, "--help") == 0 ? 0 : 2);
        }
        long n = strtol(v, NULL, 10);
        if (strcmp(a, "--sagas") == 0)
            o->sagas = n;
        else if (strcmp(a, "--partitions") == 0)
            o->partitions = (int)n;
        else if (strcmp(a, "--session-timeout") == 0)
            o->session_timeout_ms = n;
        else if (strcmp(a, "--heartbeat") == 0)
            o->heartbeat_ms = n;
        else if (strcmp(a, "--batch-size") == 0)
            o->batch_size = n;
        else if (strcmp(a, "--lease-ms") == 0)
            o->lease_ms = n;
        else if (strcmp(a, "--rate") == 0)
            o->rate = n;
        else if (strcmp(a, "--gap-ms") == 0)
            o->gap_ms = n;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            exit(2);
        }
        i++;
    }
    if (o->sagas < 1 || o->partitions < 2 || o->partitions > BENCH_MAX_PARTITIONS) {
        fprintf(stderr, "need --sagas >= 1 and 2 <= --partitions <= %d\n", BENCH_MAX_PARTITIONS);
        exit(2);
    }
}

static pid_t start_coordinator(int i, const options_t *o)
{
    char bin[PATH_MAX], boot[512], port[64], inst[64], sess[64], hb[80], batch[64], memb[64],
        lease[64];
    if (fixture_bin_path("saga-coordinator", bin, sizeof bin) < 0)
        die("saga-coordinator not found in $SAGA_BIN_DIR");
    snprintf(boot, sizeof boot, "--bootstrap_servers=%s", broker.bootstrap);
    snprintf(port, sizeof port, "--redis_port=%d", redis.port);
    snprintf(inst, sizeof inst, "--instance_id=%s", NAMES[i]);
    snprintf(sess, sizeof sess, "--session_timeout_ms=%ld", o->session_timeout_ms);
    snprintf(memb, sizeof memb, "--membership=%s", o->membership);
    snprintf(lease, sizeof lease, "--lease_ms=%ld", o->lease_ms);
    const char *argv[16] = {bin, boot, port, "--definitions=" RECOVERY_SAGAS_DIR, inst, sess,
                            "--log_level=info", "--http_listen=", "--dev_mode=1", memb, lease};
    int n = 11;
    if (o->heartbeat_ms > 0) {
        snprintf(hb, sizeof hb, "--consumer.heartbeat.interval.ms=%ld", o->heartbeat_ms);
        argv[n++] = hb;
    }
    if (o->batch_size > 0) {
        snprintf(batch, sizeof batch, "--batch_size=%ld", o->batch_size);
        argv[n++] = batch;
    }
    argv[n] = NULL;
    snprintf(logs[i], sizeof logs[i], "%s/coordinator-%s.log", broker.dir, NAMES[i]);
    pid_t pid = fixture_spawn(argv, logs[i], NULL);
    if (pid < 0)
        die("cannot start a coordinator");
    return pid;
}

static void produce(rd_kafka_t *p, int32_t partition, const char *key, const char *value)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC("saga.input"),
            RD_KAFKA_V_PARTITION(partition >= 0 ? partition : RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)value, strlen(value)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (err)
                die(rd_kafka_err2str(err));
            return;
        }
        rd_kafka_poll(p, 10);
    }
}

typedef struct part_figures {
    int64_t loaded_ts, load_ms, caught_up_ts, caught_up_after;
    long sagas_loaded, catchup_messages;
    bool victim;
} part_figures_t;

/* Reads the survivor's log lines written at or after since. */
static void read_survivor_log(const char *path, int64_t since, int64_t *revoked_ts,
                              int64_t *taken_ts, part_figures_t *parts, int nparts)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        int64_t ts = json_integer_value(json_object_get(j, "ts"));
        const char *msg = json_string_value(json_object_get(j, "msg"));
        int p, k, ob;
        long long e, ms, n;
        if (!msg || ts < since) {
            json_decref(j);
            continue;
        }
        if (sscanf(msg, "membership: %d partition(s) taken", &p) == 1) {
            if (!*taken_ts)
                *taken_ts = ts;
        } else if (sscanf(msg, "partition %d: released", &p) == 1 && strstr(msg, "released")) {
            if (!*revoked_ts)
                *revoked_ts = ts;
        } else if (sscanf(msg, "partition %d: epoch %lld, %d active sagas loaded, %d outbox "
                          "messages re-sent in %lld ms", &p, &e, &k, &ob, &ms) == 5) {
            if (p >= 0 && p < nparts) {
                parts[p].loaded_ts = ts;
                parts[p].load_ms = ms;
                parts[p].sagas_loaded = k;
            }
        } else if (sscanf(msg, "partition %d: caught up %lld ms after the load", &p, &ms) == 2) {
            if (p >= 0 && p < nparts) {
                parts[p].caught_up_ts = ts;
                parts[p].caught_up_after = ms;
            }
        } else if (sscanf(msg, "partition %d: %lld input messages to catch up on", &p, &n) == 2) {
            if (p >= 0 && p < nparts)
                parts[p].catchup_messages = (long)n;
        }
        json_decref(j);
    }
    fclose(f);
}

/* --- the rolling restart mode --------------------------------------------------------- */

/* The largest gap between two consecutive events of id's history (ms), or -1. */
static int64_t history_max_gap(const char *id, int partitions)
{
    char key[RKEYS_KEY_MAX];
    int32_t p = route_home(id, partitions, partitions);
    redisReply *r = redisCommand(rc, "LRANGE %s 0 -1", rkeys_history(&KEYS, key, p, id));
    int64_t prev = -1, gap = -1;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        json_t *e = json_loads(r->element[i]->str, 0, NULL);
        int64_t ts = json_integer_value(json_object_get(e, "ts"));
        json_decref(e);
        if (prev >= 0 && ts - prev > gap)
            gap = ts - prev;
        prev = ts;
    }
    freeReplyObject(r);
    return gap;
}

static const char *saga_status(const char *id, int partitions, char *buf, size_t len)
{
    char key[RKEYS_KEY_MAX];
    int32_t p = route_home(id, partitions, partitions);
    redisReply *r = redisCommand(rc, "HGET %s " RKEYS_F_STATUS, rkeys_saga(&KEYS, key, p, id));
    snprintf(buf, len, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return buf;
}

typedef struct roll_state {
    const options_t *o;
    rd_kafka_t *producer;
    long started;
} roll_state_t;

/* Starts the sagas due by now (rate per second since t0). */
static void roll_produce_due(roll_state_t *rs, int64_t t0)
{
    long due = (long)((fixture_now_ms() - t0) * rs->o->rate / 1000);
    for (; rs->started < due; rs->started++) {
        char id[64], msg[256];
        snprintf(id, sizeof id, "roll-%ld", rs->started);
        snprintf(msg, sizeof msg,
                 "{\"type\":\"start\",\"saga_id\":\"%s\",\"saga\":\"recovery-roll\","
                 "\"input\":{\"n\":%ld}}", id, rs->started);
        produce(rs->producer, -1, id, msg);
    }
    rd_kafka_poll(rs->producer, 0);
}

/* Keeps the load going for ms. */
static void roll_load_for(roll_state_t *rs, int64_t t0, int64_t ms)
{
    int64_t end = fixture_now_ms() + ms;
    while (fixture_now_ms() < end) {
        roll_produce_due(rs, t0);
        usleep(5000);
    }
}

static int run_rolling(const options_t *o, rd_kafka_t *producer)
{
    static const char *const TOPICS[] = {"recovery.roll", NULL};
    scripted_t *participant = scripted_start(broker.bootstrap, TOPICS, NULL, 0);
    if (!participant)
        die("cannot start the participant");
    for (int i = 0; i < BENCH_MAX_COORDS; i++)
        coords[i] = start_coordinator(i, o);
    if (!fixture_wait_until(all_owned, NULL, BENCH_WAIT_MS))
        die("the coordinators did not take the partitions");
    printf("setup: %d coordinators, membership=%s, %ld sagas/s of recovery-roll (3 steps), a "
           "restart every %ld ms\n", BENCH_MAX_COORDS, o->membership, o->rate, o->gap_ms);
    fflush(stdout);

    roll_state_t rs = {.o = o, .producer = producer};
    int64_t t0 = fixture_now_ms();
    roll_load_for(&rs, t0, o->gap_ms);
    for (int i = 0; i < BENCH_MAX_COORDS; i++) {
        int64_t t = fixture_now_ms();
        kill(coords[i], SIGTERM);
        int status = 0;
        while (waitpid(coords[i], &status, WNOHANG) == 0) {
            roll_produce_due(&rs, t0);
            usleep(2000);
        }
        int64_t exited = fixture_now_ms() - t;
        coords[i] = start_coordinator(i, o);
        printf("restart %s: SIGTERM -> exit %lld ms, started again\n", NAMES[i],
               (long long)exited);
        fflush(stdout);
        roll_load_for(&rs, t0, o->gap_ms);
    }
    rd_kafka_flush(producer, 60000);
    long total = rs.started;
    double secs = (double)(fixture_now_ms() - t0) / 1000.0;

    /* Every saga ends; then the stalls and the ledger. */
    long completed = 0, violations = 0, worst_index = -1;
    int64_t worst = -1, deadline = fixture_now_ms() + 120000;
    int64_t *gaps = calloc((size_t)total + 1, sizeof *gaps);
    for (long i = 0; i < total; i++) {
        char id[64], st[32];
        snprintf(id, sizeof id, "roll-%ld", i);
        while (strcmp(saga_status(id, o->partitions, st, sizeof st), "completed") != 0 &&
               fixture_now_ms() < deadline)
            usleep(20000);
        if (strcmp(st, "completed") != 0) {
            if (violations++ < 10)
                printf("violation: %s is %s, expected completed\n", id, st[0] ? st : "missing");
            continue;
        }
        completed++;
        gaps[i] = history_max_gap(id, o->partitions);
        json_t *cmds = scripted_commands(participant, id);
        size_t k;
        json_t *c;
        json_array_foreach(cmds, k, c)
            if (json_integer_value(json_object_get(c, "attempt")) != 1 && violations++ < 10)
                printf("violation: %s: step %s sent under attempt %lld\n", id,
                       json_string_value(json_object_get(c, "step")),
                       (long long)json_integer_value(json_object_get(c, "attempt")));
        json_decref(cmds);
    }
    /* The first second of load meets consumers idle since they started (the embedded
     * broker's first fetch is slow, docs/devbroker.md): the restarts' stalls are measured
     * on the sagas started after it. */
    long warm = o->rate, over = 0;
    worst = -1;
    worst_index = -1;
    for (long i = warm; i < total; i++) {
        over += gaps[i] > 1000;
        if (gaps[i] > worst) {
            worst = gaps[i];
            worst_index = i;
        }
    }
    printf("\nrolling restart of %d coordinators (membership=%s): %ld sagas in %.1f s (%.0f/s)\n",
           BENCH_MAX_COORDS, o->membership, total, secs, (double)total / secs);
    printf("  completed %ld of %ld; violations %ld\n", completed, total, violations);
    printf("  longest stall of any saga after the first second: %lld ms (roll-%ld); sagas "
           "with a stall over 1 s: %ld\n", (long long)worst, worst_index, over);
    /* Where the stalls are: the longest per second of load (the restarts are at gap_ms,
     * 2 gap_ms, 3 gap_ms). */
    printf("  longest stall per second of load:");
    for (long from = warm; from < total; from += o->rate) {
        int64_t m = 0;
        for (long i = from; i < total && i < from + o->rate; i++)
            m = gaps[i] > m ? gaps[i] : m;
        printf(" %lld", (long long)m);
    }
    printf("\n");
    free(gaps);
    scripted_stop(participant);
    return violations == 0 && completed == total ? 0 : 1;
}

int main(int argc, char **argv)
{
    options_t o;
    parse_options(argc, argv, &o);
    opt = &o;
    if (!getenv("SAGA_BIN_DIR")) {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
            setenv("SAGA_BIN_DIR", dirname(self), 1);
        }
    }
    if (o.keep)
        setenv("SAGA_TEST_KEEP", "1", 1);
    signal(SIGPIPE, SIG_IGN);

    char topics[512];
    snprintf(topics, sizeof topics,
             "saga.input:%d,saga.outcomes:1,saga.deadletter:1,recovery.hold:1,recovery.next:1,"
             "recovery.roll:1", o.partitions);
    if (fixture_redis_start(&redis, NULL) < 0)
        die("redis-server did not start");
    if (fixture_broker_start(&broker, 1, topics) < 0)
        die("the broker did not start");
    if (!(rc = fixture_redis_connect(&redis)))
        die("cannot connect to redis");
    fixture_collector_t *next = fixture_collector_new(broker.bootstrap, NULL, "recovery.next");
    rd_kafka_t *producer = fixture_producer_new(broker.bootstrap);
    if (!next || !producer)
        die("cannot create the Kafka clients");

    if (o.rolling) {
        int rc_roll = run_rolling(&o, producer);
        fixture_collector_free(next);
        rd_kafka_destroy(producer);
        redisFree(rc);
        for (int i = 0; i < BENCH_MAX_COORDS; i++)
            if (coords[i] > 0)
                (void)fixture_stop_process(coords[i], FIXTURE_STOP_TIMEOUT_MS);
        if (o.keep)
            printf("logs kept in %s\n", broker.dir);
        fixture_broker_stop(&broker);
        fixture_redis_stop(&redis);
        return rc_roll;
    }
    for (int i = 0; i < 2; i++)
        coords[i] = start_coordinator(i, &o);
    int64_t t = fixture_now_ms();
    if (!fixture_wait_until(both_own, NULL, BENCH_WAIT_MS))
        die("the two coordinators did not share the partitions");
    if (strcmp(o.membership, "redis") == 0)
        printf("setup: both coordinators own partitions after %lld ms; membership=redis, "
               "lease_ms %ld\n", (long long)(fixture_now_ms() - t), o.lease_ms);
    else
        printf("setup: both coordinators own partitions after %lld ms; membership=kafka, "
               "session.timeout.ms %ld, heartbeat.interval.ms %s\n",
               (long long)(fixture_now_ms() - t), o.session_timeout_ms,
               o.heartbeat_ms ? "(set)" : "3000 (librdkafka default)");
    if (o.heartbeat_ms)
        printf("setup: heartbeat.interval.ms %ld\n", o.heartbeat_ms);

    t = fixture_now_ms();
    for (long i = 0; i < o.sagas; i++) {
        char id[64], msg[256];
        snprintf(id, sizeof id, "rec-%ld", i);
        snprintf(msg, sizeof msg,
                 "{\"type\":\"start\",\"saga_id\":\"%s\",\"saga\":\"recovery-hold\","
                 "\"input\":{\"n\":%ld}}", id, i);
        produce(producer, -1, id, msg);
    }
    rd_kafka_flush(producer, 60000);
    if (!fixture_wait_until(all_in_flight, NULL, BENCH_WAIT_MS))
        die("the sagas did not all start");
    printf("setup: %ld sagas in flight (started, first command delivered) after %lld ms\n",
           o.sagas, (long long)(fixture_now_ms() - t));

    /* The victim: the instance owning the most sagas. */
    long per_instance[2] = {0, 0};
    int owner[BENCH_MAX_PARTITIONS];
    long running[BENCH_MAX_PARTITIONS];
    for (int p = 0; p < o.partitions; p++) {
        owner[p] = owner_of(p);
        char key[RKEYS_KEY_MAX];
        running[p] = (long)redis_int("ZCARD %s",
                                     rkeys_index(&KEYS, key, p, RKEYS_INDEX_RUNNING));
        if (owner[p] >= 0)
            per_instance[owner[p]] += running[p];
    }
    int victim = per_instance[1] > per_instance[0] ? 1 : 0, survivor = 1 - victim;

    /* The replies the participant will send right after the kill, rendered beforehand. */
    size_t nreplies = 0, cap = (size_t)o.sagas;
    char **rkeys = calloc(cap, sizeof *rkeys), **rvals = calloc(cap, sizeof *rvals);
    int32_t *rparts = calloc(cap, sizeof *rparts);
    part_figures_t parts[BENCH_MAX_PARTITIONS] = {0};
    for (int p = 0; p < o.partitions; p++) {
        if (owner[p] != victim)
            continue;
        parts[p].victim = true;
        char key[RKEYS_KEY_MAX];
        redisReply *r = redisCommand(rc, "ZRANGE %s 0 -1",
                                     rkeys_index(&KEYS, key, p, RKEYS_INDEX_RUNNING));
        for (size_t i = 0; r && i < r->elements && nreplies < cap; i++) {
            const char *id = r->element[i]->str;
            char val[512];
            snprintf(val, sizeof val,
                     "{\"type\":\"reply\",\"command_id\":\"%s/hold/action/1\",\"saga_id\":\"%s\","
                     "\"step\":\"hold\",\"kind\":\"action\",\"attempt\":1,\"status\":\"ok\","
                     "\"output\":{}}", id, id);
            rkeys[nreplies] = strdup(id);
            rvals[nreplies] = strdup(val);
            rparts[nreplies++] = p;
        }
        freeReplyObject(r);
    }
    printf("victim: %s owns", NAMES[victim]);
    for (int p = 0; p < o.partitions; p++)
        if (owner[p] == victim)
            printf(" p%d (%ld sagas)", p, running[p]);
    printf(": %zu of %ld sagas; survivor: %s\n", nreplies, o.sagas, NAMES[survivor]);
    fflush(stdout);

    /* Kill, then release the participant. */
    size_t seen_before = fixture_collector_count(next);
    int64_t kill_wall = wall_ms(), kill_mono = fixture_now_ms();
    kill(coords[victim], o.graceful ? SIGTERM : SIGKILL);
    (void)fixture_wait_exit(coords[victim], 30000, NULL);
    coords[victim] = 0;
    for (size_t i = 0; i < nreplies; i++)
        produce(producer, rparts[i], rkeys[i], rvals[i]);
    rd_kafka_flush(producer, 60000);
    int64_t replies_ms = fixture_now_ms() - kill_mono;

    /* Until every victim saga's step-2 command was sent (each is sent once: count them). */
    json_t *done = json_object();
    size_t scanned = seen_before;
    int64_t first_ms = -1, last_ms = -1;
    while (json_object_size(done) < nreplies && fixture_now_ms() - kill_mono < BENCH_WAIT_MS) {
        size_t count = fixture_collector_count(next);
        for (; scanned < count; scanned++) {
            const fixture_message_t *m = fixture_collector_at(next, scanned);
            if (m->key && !json_object_get(done, m->key)) {
                json_object_set_new(done, m->key, json_true());
                last_ms = fixture_now_ms() - kill_mono;
                if (first_ms < 0)
                    first_ms = last_ms;
            }
        }
        if (json_object_size(done) < nreplies)
            usleep(BENCH_POLL_US);
    }
    size_t recovered = json_object_size(done);
    json_decref(done);

    int64_t revoked_ts = 0, taken_ts = 0;
    read_survivor_log(logs[survivor], kill_wall, &revoked_ts, &taken_ts, parts, o.partitions);
    int64_t first_load_start = 0, last_loaded = 0, last_caught_up = 0, load_sum = 0;
    long loaded_sagas = 0;
    for (int p = 0; p < o.partitions; p++) {
        if (!parts[p].loaded_ts)
            continue;
        int64_t start = parts[p].loaded_ts - parts[p].load_ms;
        if (!first_load_start || start < first_load_start)
            first_load_start = start;
        if (parts[p].loaded_ts > last_loaded)
            last_loaded = parts[p].loaded_ts;
        if (parts[p].caught_up_ts > last_caught_up)
            last_caught_up = parts[p].caught_up_ts;
        load_sum += parts[p].load_ms;
        loaded_sagas += parts[p].sagas_loaded;
    }

    printf("\nrecovery of %zu in-flight sagas (of %ld) after %s of %s (membership=%s):\n",
           nreplies, o.sagas, o.graceful ? "SIGTERM" : "SIGKILL", NAMES[victim], o.membership);
    if (taken_ts)
        printf("  takeover   kill -> survivor took the leases:  %6lld ms\n",
               (long long)(taken_ts - kill_wall));
    printf("  replies produced (the participant released):  %6lld ms after the kill\n",
           (long long)replies_ms);
    if (revoked_ts)
        printf("  detection  kill -> survivor revoked:          %6lld ms\n",
               (long long)(revoked_ts - kill_wall));
    if (revoked_ts && first_load_start)
        printf("  rebalance  revoked -> assigned (load starts): %6lld ms\n",
               (long long)(first_load_start - revoked_ts));
    for (int p = 0; p < o.partitions; p++)
        if (parts[p].loaded_ts)
            printf("  load       p%-2d %-8s %6ld sagas in %5lld ms (%.1f us/saga); "
                   "caught up %lld ms after its load (%ld input messages)\n",
                   p, parts[p].victim ? "(taken)" : "(kept)", parts[p].sagas_loaded,
                   (long long)parts[p].load_ms,
                   parts[p].sagas_loaded ? 1000.0 * (double)parts[p].load_ms /
                                               (double)parts[p].sagas_loaded
                                         : 0.0,
                   (long long)parts[p].caught_up_after, parts[p].catchup_messages);
    if (first_load_start)
        printf("  load       all partitions: %ld sagas, %lld ms summed, %lld ms wall\n",
               loaded_sagas, (long long)load_sum, (long long)(last_loaded - first_load_start));
    if (last_loaded && last_caught_up)
        printf("  catch-up   last load -> last partition caught up: %lld ms\n",
               (long long)(last_caught_up - last_loaded));
    if (last_loaded && last_ms >= 0)
        printf("  progress   last load -> every saga moved one step: %lld ms (first after %lld ms)\n",
               (long long)(kill_wall + last_ms - last_loaded), (long long)first_ms);
    printf("  TOTAL      signal -> all %zu sagas running again on %s: %lld ms (%zu recovered)\n",
           nreplies, NAMES[survivor], (long long)last_ms, recovered);
    fflush(stdout);

    for (size_t i = 0; i < nreplies; i++) {
        free(rkeys[i]);
        free(rvals[i]);
    }
    free(rkeys);
    free(rvals);
    free(rparts);
    fixture_collector_free(next);
    rd_kafka_destroy(producer);
    redisFree(rc);
    for (int i = 0; i < 2; i++)
        if (coords[i] > 0)
            (void)fixture_stop_process(coords[i], FIXTURE_STOP_TIMEOUT_MS);
    if (o.keep)
        printf("logs kept in %s\n", broker.dir);
    fixture_broker_stop(&broker);
    fixture_redis_stop(&redis);
    return recovered == nreplies ? 0 : 1;
}
