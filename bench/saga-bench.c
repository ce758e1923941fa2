/* saga-bench.c - the benchmark (issue #7, docs/performance.md): starts the embedded
 * broker, redis-server and one coordinator, drives sagas through them with built-in
 * participants that reply at once, and measures throughput, latency, cost per saga and
 * memory per in-flight saga, against the floor of the same broker and Redis in the same
 * run. Redis has two floors: our transition script through the store API, and the raw
 * writes a transition cannot do without (see "the Redis floors" below); the ratio to the
 * second shows what the script costs.
 *
 * Clocks: every latency is measured inside this process on CLOCK_MONOTONIC, so the
 * coordinator's clock does not enter. A "hop" is what the coordinator adds around one
 * transition as a participant sees it: from the moment the bench produced the previous
 * message of the saga (the start, or the previous step's reply) until it consumed the next
 * one (the next command, or the outcome). It holds two Kafka hops (message to the
 * coordinator, command back) plus the coordinator's turn; the "added" figure subtracts
 * twice the one-hop Kafka latency measured on the same broker at the same message rate.
 * The coordinator's own figure comes from its saga_coordinator_latency_seconds histogram
 * (scraped from its /metrics before and after the half-load phase): from an input
 * message being available to it to the produce of the commands it caused, Redis
 * included, Kafka's hops not. */
#include "bench_proc.h"
#include "bench_redis.h"
#include "bench_stats.h"

#include "catalogue.h"
#include "jsonw.h"
#include "log.h"
#include "machine.h"
#include "saga.h"
#include "store.h"

#include <getopt.h>
#include <stdarg.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define BENCH_MAX_SAGAS (4u << 20)      /* saga numbers per run (timestamps are kept per saga) */
#define BENCH_PARTICIPANTS 2            /* participant threads */
#define BENCH_INPUT_PARTITIONS 4
#define BENCH_CMD_PARTITIONS 4
#define BENCH_CMD_TOPIC "bench.commands"
#define BENCH_FLOOR_TOPIC "bench.floor"
#define BENCH_CONSUME_BATCH 1000
#define BENCH_STEP_TIMEOUT_MS 300000    /* held sagas must not time out while measured */
#define BENCH_READY_TIMEOUT_US 60000000
#define BENCH_DRAIN_TIMEOUT_US 120000000
#define BENCH_SETTLE_US 500000          /* after a drain: the coordinator's last acks */
#define BENCH_RAMP_US 1000000           /* closed loop: not counted at the start */
#define BENCH_MAX_CMDSTATS 64
#define BENCH_MSG_MAX 4096
#define BENCH_LAT_BUCKETS 32            /* of the coordinator's latency histogram */
#define BENCH_METRICS_MAX (1 << 20)     /* bytes of a /metrics scrape */
#define BENCH_FLOOR_ROUNDS 20           /* Redis floors: rounds of --depth sagas */
#define BENCH_FLOOR_ALONE_ROUNDS 40     /* the same with --redis-floor-only */

static const char *const TOPICS[] = {"saga.input", BENCH_CMD_TOPIC, "saga.outcomes",
                                     "saga.deadletter"};
#define BENCH_NTOPICS (sizeof TOPICS / sizeof *TOPICS)

typedef struct opts {
    int sizes[4];
    int nsizes;
    double duration_s;         /* each measured phase */
    int window;                /* closed loop: sagas in flight */
    int inflight;              /* memory phase: sagas held in flight */
    int depth;                 /* Redis floor: transitions per pipeline */
    int floor_messages;        /* Kafka floor: messages */
    bool no_rss;
    bool redis_floor_only;     /* only redis-server and the store's floor (profiling) */
    bool replica;              /* the bench's Redis has a replica (each primary, on a cluster) */
    int cluster;               /* the bench's Redis is a cluster of this many primaries (0: not) */
    int sync_replicas;         /* the coordinator's redis_sync_replicas */
    double rate;               /* open-loop phase: sagas/s (0: half the saturation) */
    const char *json_path;
    const char *keep_dir;      /* keep the temp dir (logs) there */
} opts_t;

typedef struct bench bench_t;

typedef struct participant {
    bench_t *b;
    int index;
    pthread_t thread;
    rd_kafka_t *consumer;
    samples_t hops;
} participant_t;

/* A snapshot of the counters a phase is measured by. */
typedef struct snapshot {
    int64_t at_us;
    double coord_cpu, broker_cpu, redis_cpu, self_cpu;
    long coord_rss_kib;
    int64_t kafka[BENCH_NTOPICS];        /* sum of high watermarks per topic */
    size_t ncmd;
    char cmd_names[BENCH_MAX_CMDSTATS][32];
    long long cmd_calls[BENCH_MAX_CMDSTATS];
    long long cmd_usec[BENCH_MAX_CMDSTATS];
    double redis_info_cpu;               /* INFO cpu: used_cpu_sys + used_cpu_user (s) */
    uint64_t finished;
    /* the coordinator's saga_coordinator_latency_seconds histogram (cumulative) */
    size_t nlat;
    double lat_le[BENCH_LAT_BUCKETS];
    double lat_cum[BENCH_LAT_BUCKETS];
} snapshot_t;

struct bench {
    opts_t o;
    char bindir[1024], tmp[1024], defs[1100];
    char bootstrap[512];
    int http_port;
    pid_t broker, coord;
    bench_redis_t redis;               /* the layout: single, with a replica, or a cluster */
    rd_kafka_t *producer;              /* starts and replies */
    rd_kafka_t *outcomes;              /* outcome consumer; also watermark queries */
    pthread_t outcome_thread;
    participant_t parts[BENCH_PARTICIPANTS];
    atomic_int stop, hold;
    atomic_ullong next_saga;           /* saga numbers handed out */
    atomic_ullong finished, not_completed, held;
    atomic_ullong outcomes_again;      /* outcomes received for a saga that had one already */
    unsigned char *outcome_seen;       /* per saga number, __atomic access */
    atomic_ullong msg_count, msg_bytes; /* every saga message the bench saw, for sizes */
    int64_t *start_us, *last_us;       /* per saga number, __atomic access */
    samples_t e2e, final_hops;
    int steps;
    char saga_name[32];
};

/* --- small helpers ---------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "saga-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void sleep_us(int64_t us)
{
    if (us > 0)
        usleep((useconds_t)us);
}

static void conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("kafka property %s=%s: %s", k, v, err);
}

/* A client with the coordinator's own settings (coordinator.c kafka_conf). */
static rd_kafka_t *kafka_client(bench_t *b, rd_kafka_type_t type, const char *extra[][2])
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    conf_set(c, "bootstrap.servers", b->bootstrap);
    if (type == RD_KAFKA_PRODUCER) {
        conf_set(c, "enable.idempotence", "true");
        conf_set(c, "linger.ms", "1");
        conf_set(c, "partitioner", "murmur2_random");
    } else {
        conf_set(c, "group.id", "saga-bench");
        conf_set(c, "enable.auto.commit", "false");
        conf_set(c, "enable.partition.eof", "false");
        conf_set(c, "fetch.wait.max.ms", "10");
        conf_set(c, "fetch.error.backoff.ms", "10");
    }
    for (size_t i = 0; extra && extra[i][0]; i++)
        conf_set(c, extra[i][0], extra[i][1]);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
    if (!rk)
        die("kafka client: %s", err);
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Assigns partitions [first, first + count) of topic, every step-th, from the start. */
static void assign(rd_kafka_t *rk, const char *topic, int first, int count, int step)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(count);
    for (int p = first; p < count; p += step)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        die("assign %s: %s", topic, rd_kafka_err2str(err));
}

/* Takes what is there: waits up to wait_ms for a first message, then takes the rest
 * without waiting (a batch call alone waits for a full batch). */
static ssize_t consume(rd_kafka_queue_t *q, int wait_ms, rd_kafka_message_t **msgs)
{
    ssize_t n = rd_kafka_consume_batch_queue(q, wait_ms, msgs, 1);
    if (n == 1) {
        ssize_t more = rd_kafka_consume_batch_queue(q, 0, msgs + 1, BENCH_CONSUME_BATCH - 1);
        n += more > 0 ? more : 0;
    }
    return n < 0 ? 0 : n;
}

static void produce(rd_kafka_t *rk, const char *topic, int32_t partition, const char *key,
                    size_t key_len, const char *value, size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 1);
            continue;
        }
        if (err)
            die("produce to %s: %s", topic, rd_kafka_err2str(err));
        return;
    }
}

static uint64_t saga_number(const void *key, size_t len)
{
    char buf[32];
    if (!key || len < 2 || len >= sizeof buf)
        return UINT64_MAX;
    memcpy(buf, key, len);
    buf[len] = '\0';
    return strtoull(buf + 1, NULL, 10);
}

/* --- participants and the outcome reader ------------------------------------------ */

/* Answers one command at once with ok and a small output, or holds it (drops the reply)
 * while b->hold is set. */
static void participant_handle(participant_t *pt, const rd_kafka_message_t *m)
{
    bench_t *b = pt->b;
    int64_t t = now_us();
    uint64_t n = saga_number(m->key, m->key_len);
    if (n < BENCH_MAX_SAGAS)
        samples_add(&pt->hops, t - __atomic_load_n(&b->last_us[n], __ATOMIC_RELAXED));
    atomic_fetch_add(&b->msg_count, 1);
    atomic_fetch_add(&b->msg_bytes, m->len);
    json_error_t jerr;
    json_t *cmd = json_loadb(m->payload, m->len, 0, &jerr);
    const char *command_id, *saga_id, *step, *kind, *reply_topic;
    int attempt, reply_partition;
    if (!cmd || json_unpack(cmd, "{s:s, s:s, s:s, s:s, s:i, s:{s:s, s:i}}", "command_id",
                            &command_id, "saga_id", &saga_id, "step", &step, "kind", &kind,
                            "attempt", &attempt, "reply_to", "topic", &reply_topic,
                            "partition", &reply_partition) < 0) {
        fprintf(stderr, "saga-bench: undecodable command: %.*s\n", (int)m->len,
                (const char *)m->payload);
        json_decref(cmd);
        return;
    }
    if (atomic_load(&b->hold)) {
        atomic_fetch_add(&b->held, 1);
        json_decref(cmd);
        return;
    }
    char reply[BENCH_MSG_MAX];
    int len = snprintf(reply, sizeof reply,
                       "{\"type\":\"reply\",\"command_id\":\"%s\",\"saga_id\":\"%s\","
                       "\"step\":\"%s\",\"kind\":\"%s\",\"attempt\":%d,\"status\":\"ok\","
                       "\"output\":{\"ref\":\"r-%s-%s\"}}",
                       command_id, saga_id, step, kind, attempt, saga_id, step);
    if (len > 0 && (size_t)len < sizeof reply) {
        atomic_fetch_add(&b->msg_count, 1);
        atomic_fetch_add(&b->msg_bytes, (unsigned long long)len);
        produce(b->producer, reply_topic, reply_partition, saga_id, strlen(saga_id), reply,
                (size_t)len);
        if (n < BENCH_MAX_SAGAS)
            __atomic_store_n(&b->last_us[n], now_us(), __ATOMIC_RELAXED);
    }
    json_decref(cmd);
}

static void *participant_main(void *arg)
{
    participant_t *pt = arg;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(pt->consumer);
    rd_kafka_message_t *msgs[BENCH_CONSUME_BATCH];
    while (!atomic_load(&pt->b->stop)) {
        ssize_t n = consume(q, 100, msgs);
        for (ssize_t i = 0; i < n; i++) {
            if (!msgs[i]->err)
                participant_handle(pt, msgs[i]);
            rd_kafka_message_destroy(msgs[i]);
        }
    }
    rd_kafka_queue_destroy(q);
    return NULL;
}

static void *outcome_main(void *arg)
{
    bench_t *b = arg;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(b->outcomes);
    rd_kafka_message_t *msgs[BENCH_CONSUME_BATCH];
    while (!atomic_load(&b->stop)) {
        ssize_t n = consume(q, 100, msgs);
        int64_t t = now_us();
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            uint64_t k = m->err ? UINT64_MAX : saga_number(m->key, m->key_len);
            /* Delivery is at least once: a coordinator that reloads a partition (its
             * lease lost on a loaded host, say) sends again the outcomes its outbox still
             * holds. A saga finishes once, at its first outcome. */
            if (k < BENCH_MAX_SAGAS &&
                __atomic_exchange_n(&b->outcome_seen[k], 1, __ATOMIC_RELAXED)) {
                atomic_fetch_add(&b->outcomes_again, 1);
            } else if (!m->err) {
                if (k < BENCH_MAX_SAGAS) {
                    samples_add(&b->e2e, t - __atomic_load_n(&b->start_us[k], __ATOMIC_RELAXED));
                    samples_add(&b->final_hops,
                                t - __atomic_load_n(&b->last_us[k], __ATOMIC_RELAXED));
                }
                if (!memmem(m->payload, m->len, "\"status\":\"completed\"", 20))
                    atomic_fetch_add(&b->not_completed, 1);
                atomic_fetch_add(&b->msg_count, 1);
                atomic_fetch_add(&b->msg_bytes, m->len);
                atomic_fetch_add(&b->finished, 1);
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    return NULL;
}

/* Produces the start of a new saga. Returns false when the saga numbers ran out. */
static bool start_saga(bench_t *b)
{
    uint64_t n = atomic_fetch_add(&b->next_saga, 1);
    if (n >= BENCH_MAX_SAGAS)
        return false;
    char id[32], msg[512];
    int idlen = snprintf(id, sizeof id, "b%llu", (unsigned long long)n);
    int len = snprintf(msg, sizeof msg,
                       "{\"type\":\"start\",\"saga_id\":\"%s\",\"saga\":\"%s\",\"input\":"
                       "{\"order_id\":\"o-%llu\",\"customer\":\"c-%llu\",\"amount\":12.5}}",
                       id, b->saga_name, (unsigned long long)n, (unsigned long long)(n % 977));
    int64_t t = now_us();
    __atomic_store_n(&b->start_us[n], t, __ATOMIC_RELAXED);
    __atomic_store_n(&b->last_us[n], t, __ATOMIC_RELAXED);
    atomic_fetch_add(&b->msg_count, 1);
    atomic_fetch_add(&b->msg_bytes, (unsigned long long)len);
    produce(b->producer, "saga.input", RD_KAFKA_PARTITION_UA, id, (size_t)idlen, msg,
            (size_t)len);
    return true;
}

static uint64_t in_flight(bench_t *b)
{
    return atomic_load(&b->next_saga) - atomic_load(&b->finished);
}

/* Waits until every started saga finished. Returns false on timeout. */
static bool drain(bench_t *b, int64_t timeout_us)
{
    int64_t until = now_us() + timeout_us;
    rd_kafka_flush(b->producer, 1000);
    while (in_flight(b) > 0) {
        if (now_us() > until)
            return false;
        rd_kafka_poll(b->producer, 1);
        sleep_us(1000);
    }
    return true;
}

/* --- the stack: broker, redis, coordinator ---------------------------------------- */

static void write_definition(bench_t *b, int steps)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/bench%d.json", b->defs, steps);
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s", path);
    fprintf(f, "{\"name\": \"bench%d\", \"version\": 1,\n"
               " \"description\": \"saga-bench: %d steps, one topic, replies at once\",\n"
               " \"defaults\": {\"timeout_ms\": %d},\n \"steps\": [\n",
            steps, steps, BENCH_STEP_TIMEOUT_MS);
    for (int i = 0; i < steps; i++) {
        fprintf(f, "  {\"name\": \"s%d\", \"topic\": \"%s\",\n"
                   "   \"action\": {\"command\": \"bench.do\", \"payload\": {\"order\": "
                   "\"{{input.order_id}}\", \"customer\": \"{{input.customer}}\", \"amount\": "
                   "\"{{input.amount}}\"",
                i, BENCH_CMD_TOPIC);
        if (i > 0)
            fprintf(f, ", \"previous\": \"{{steps.s%d.output.ref}}\"", i - 1);
        fprintf(f, "}},\n   \"compensation\": {\"command\": \"bench.undo\", \"payload\": "
                   "{\"order\": \"{{input.order_id}}\", \"ref\": \"{{steps.s%d.output.ref?}}\"}}}%s\n",
                i, i + 1 < steps ? "," : "");
    }
    fprintf(f, " ]}\n");
    fclose(f);
}

static void wait_for_file(const char *path, char *buf, size_t len, pid_t pid)
{
    int64_t until = now_us() + 30000000;
    for (;;) {
        FILE *f = fopen(path, "r");
        if (f) {
            bool ok = fgets(buf, (int)len, f) != NULL;
            fclose(f);
            if (ok) {
                buf[strcspn(buf, "\n")] = '\0';
                return;
            }
        }
        if (!proc_alive(pid) || now_us() > until)
            die("%s never appeared", path);
        sleep_us(20000);
    }
}

/* Starts the bench's Redis layout (bench_redis.h) with its data under the temp dir's
 * dir: one redis-server, one with a replica (--replica), or a cluster (--cluster N). */
static void redis_start(bench_t *b, const char *dir)
{
    char rdir[PATH_MAX + 64], err[512];
    snprintf(rdir, sizeof rdir, "%s/%s", b->tmp, dir);
    if (bench_redis_start(&b->redis, b->o.cluster, b->o.replica, rdir, b->tmp, err, sizeof err) < 0)
        die("%s", err);
    fprintf(stderr, "saga-bench: Redis %s ready (%s)\n", b->redis.layout, b->redis.seeds);
}

/* CPU seconds of the Redis primaries (/proc), where the writes run. */
static double redis_proc_cpu(const bench_t *b)
{
    double cpu = 0;
    for (int i = 0; i < b->redis.count; i++)
        if (b->redis.nodes[i].primary)
            cpu += proc_cpu_seconds(b->redis.nodes[i].pid);
    return cpu;
}

static void stack_start(bench_t *b, int steps)
{
    char path[PATH_MAX + 64], logp[PATH_MAX + 64];
    b->steps = steps;
    snprintf(b->saga_name, sizeof b->saga_name, "bench%d", steps);
    atomic_store(&b->stop, 0);
    atomic_store(&b->hold, 0);

    /* Broker. */
    snprintf(path, sizeof path, "%s/bootstrap", b->tmp);
    unlink(path);
    char broker[PATH_MAX + 32], topics[256];
    snprintf(broker, sizeof broker, "%s/saga-devbroker", b->bindir);
    snprintf(topics, sizeof topics, "saga.input:%d,saga.outcomes:1,saga.deadletter:1,%s:%d,%s:4",
             BENCH_INPUT_PARTITIONS, BENCH_CMD_TOPIC, BENCH_CMD_PARTITIONS, BENCH_FLOOR_TOPIC);
    char *bargv[] = {broker, "--topics", topics, "--bootstrap-file", path, NULL};
    snprintf(logp, sizeof logp, "%s/broker.log", b->tmp);
    b->broker = proc_spawn(bargv, logp);
    wait_for_file(path, b->bootstrap, sizeof b->bootstrap, b->broker);

    /* A fresh data dir per stack: a cluster node must start empty (no nodes.conf). */
    static int stacks;
    char rdir[48];
    snprintf(rdir, sizeof rdir, "redis-%d-%d", steps, ++stacks);
    redis_start(b, rdir);

    /* Coordinator, with its defaults. */
    char coord[PATH_MAX + 32], bs[600], defs[PATH_MAX + 32];
    char rp[BENCH_REDIS_SEEDS_MAX + 32], rc[32];
    snprintf(coord, sizeof coord, "%s/saga-coordinator", b->bindir);
    snprintf(bs, sizeof bs, "--bootstrap_servers=%s", b->bootstrap);
    /* On a cluster: every node a seed (the coordinator reads the slot map from them). */
    if (b->redis.cluster > 0)
        snprintf(rp, sizeof rp, "--redis_cluster_nodes=%s", b->redis.seeds);
    else
        snprintf(rp, sizeof rp, "--redis_port=%d", b->redis.nodes[0].port);
    snprintf(rc, sizeof rc, "--redis_cluster=%d", b->redis.cluster > 0);
    snprintf(defs, sizeof defs, "--definitions=%s", b->defs);
    char lvl[] = "--log_level=warn", http[64];
    b->http_port = proc_free_port();
    snprintf(http, sizeof http, "--http_listen=127.0.0.1:%d", b->http_port);
    /* SAGA_BENCH_WRAPPER runs the coordinator under a profiler: "valgrind --tool=callgrind
     * --callgrind-out-file=/tmp/cg.out" (its /proc figures are then the wrapper's). */
    char *cargv[32], wrap[1024] = "";
    int ca = 0;
    const char *w = getenv("SAGA_BENCH_WRAPPER");
    if (w) {
        snprintf(wrap, sizeof wrap, "%s", w);
        for (char *t = strtok(wrap, " "); t && ca < 24; t = strtok(NULL, " "))
            cargv[ca++] = t;
    }
    char sync[64];
    snprintf(sync, sizeof sync, "--redis_sync_replicas=%d", b->o.sync_replicas);
    char *own[] = {coord, bs, rp, rc, defs, lvl, http, sync};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        cargv[ca++] = own[i];
    cargv[ca] = NULL;
    snprintf(logp, sizeof logp, "%s/coordinator.log", b->tmp);
    b->coord = proc_spawn(cargv, logp);

    /* Clients. */
    b->producer = kafka_client(b, RD_KAFKA_PRODUCER, NULL);
    b->outcomes = kafka_client(b, RD_KAFKA_CONSUMER, NULL);
    assign(b->outcomes, "saga.outcomes", 0, 1, 1);
    for (int i = 0; i < BENCH_PARTICIPANTS; i++) {
        participant_t *pt = &b->parts[i];
        pt->b = b;
        pt->index = i;
        samples_clear(&pt->hops);
        pt->consumer = kafka_client(b, RD_KAFKA_CONSUMER, NULL);
        assign(pt->consumer, BENCH_CMD_TOPIC, i, BENCH_CMD_PARTITIONS, BENCH_PARTICIPANTS);
        pthread_create(&pt->thread, NULL, participant_main, pt);
    }
    pthread_create(&b->outcome_thread, NULL, outcome_main, b);

    /* Ready when a saga goes through (the coordinator joins its group first: ~3 s). */
    int64_t t0 = now_us();
    start_saga(b);
    while (in_flight(b) > 0) {
        if (!proc_alive(b->coord))
            die("the coordinator exited; see %s/coordinator.log", b->tmp);
        if (now_us() - t0 > BENCH_READY_TIMEOUT_US)
            die("no saga finished within %d s; see %s", BENCH_READY_TIMEOUT_US / 1000000, b->tmp);
        rd_kafka_poll(b->producer, 10);
    }
    fprintf(stderr, "saga-bench: %d-step stack ready in %.1f s (first saga %.0f ms)\n", steps,
            (double)(now_us() - t0) / 1e6, (double)(now_us() - t0) / 1e3);
}

static void stack_stop(bench_t *b)
{
    atomic_store(&b->stop, 1);
    pthread_join(b->outcome_thread, NULL);
    for (int i = 0; i < BENCH_PARTICIPANTS; i++) {
        pthread_join(b->parts[i].thread, NULL);
        rd_kafka_consumer_close(b->parts[i].consumer);
        rd_kafka_destroy(b->parts[i].consumer);
    }
    rd_kafka_consumer_close(b->outcomes);
    rd_kafka_destroy(b->outcomes);
    rd_kafka_flush(b->producer, 1000);
    rd_kafka_destroy(b->producer);
    proc_stop(b->coord, 5000);
    bench_redis_stop(&b->redis);
    proc_stop(b->broker, 5000);
    b->coord = b->broker = 0;
}

/* --- snapshots -------------------------------------------------------------------- */

/* GET /metrics from the coordinator; a malloc'd body, or NULL. */
static char *scrape_metrics(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return NULL;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char *buf = NULL;
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1) &&
        (buf = malloc(BENCH_METRICS_MAX + 1))) {
        size_t len = 0;
        ssize_t got;
        while (len < BENCH_METRICS_MAX && (got = read(fd, buf + len, BENCH_METRICS_MAX - len)) > 0)
            len += (size_t)got;
        buf[len] = '\0';
    }
    close(fd);
    return buf;
}

/* The coordinator's latency histogram from a scrape (cumulative counts per bound). */
static void read_latency(bench_t *b, snapshot_t *s)
{
    char *text = scrape_metrics(b->http_port);
    if (!text)
        die("cannot read the coordinator's /metrics on port %d", b->http_port);
    static const char name[] = "saga_coordinator_latency_seconds_bucket{le=\"";
    for (char *at = strstr(text, name); at && s->nlat < BENCH_LAT_BUCKETS;
         at = strstr(at + 1, name)) {
        char *le = at + sizeof name - 1;
        double bound = strncmp(le, "+Inf", 4) == 0 ? INFINITY : strtod(le, NULL);
        char *val = strstr(le, "} ");
        if (!val)
            break;
        s->lat_le[s->nlat] = bound;
        s->lat_cum[s->nlat++] = strtod(val + 2, NULL);
    }
    free(text);
    if (s->nlat == 0)
        die("the coordinator's /metrics has no saga_coordinator_latency_seconds");
}

/* Percentiles (ms) of the latency histogram's growth between two scrapes, interpolated
 * linearly inside a bucket (as Prometheus's histogram_quantile does). */
static void latency_percentiles(const snapshot_t *s0, const snapshot_t *s1, const double *ps,
                                size_t nps, double *out)
{
    size_t n = s1->nlat;
    double total = n ? s1->lat_cum[n - 1] - (s0->nlat == n ? s0->lat_cum[n - 1] : 0) : 0;
    for (size_t k = 0; k < nps; k++) {
        out[k] = 0;
        if (total <= 0)
            continue;
        double want = total * ps[k] / 100.0, prev_cum = 0, prev_le = 0;
        for (size_t i = 0; i < n; i++) {
            double cum = s1->lat_cum[i] - (s0->nlat == n ? s0->lat_cum[i] : 0);
            if (cum >= want) {
                double le = isinf(s1->lat_le[i]) ? prev_le : s1->lat_le[i];
                double f = cum > prev_cum ? (want - prev_cum) / (cum - prev_cum) : 1;
                out[k] = (prev_le + (le - prev_le) * f) * 1000.0;
                break;
            }
            prev_cum = cum;
            prev_le = s1->lat_le[i];
        }
    }
}

/* Adds calls and usec of command name to s's commandstats. */
static void add_cmdstat(snapshot_t *s, const char *name, long long calls, long long usec)
{
    size_t i = 0;
    while (i < s->ncmd && strcmp(s->cmd_names[i], name) != 0)
        i++;
    if (i == s->ncmd) {
        if (s->ncmd == BENCH_MAX_CMDSTATS)
            return;
        snprintf(s->cmd_names[s->ncmd++], sizeof s->cmd_names[0], "%s", name);
        s->cmd_calls[i] = s->cmd_usec[i] = 0;
    }
    s->cmd_calls[i] += calls;
    s->cmd_usec[i] += usec;
}

/* Redis's own counters into s, summed over the primaries (one, or a cluster's): every
 * command's calls and microseconds (INFO commandstats; commands run inside a script are
 * counted under their own names too) and the processes' CPU seconds (INFO cpu,
 * microsecond resolution, all threads). */
static void read_redis_stats(bench_t *b, snapshot_t *s)
{
    s->ncmd = 0;
    s->redis_info_cpu = 0;
    for (int n = 0; n < b->redis.count; n++) {
        redisContext *c = b->redis.nodes[n].ctx;
        if (!b->redis.nodes[n].primary)
            continue;
        redisReply *r = redisCommand(c, "INFO cpu");
        if (!r || r->type != REDIS_REPLY_STRING)
            die("INFO cpu failed on port %d", b->redis.nodes[n].port);
        const char *sys = strstr(r->str, "used_cpu_sys:"), *user = strstr(r->str, "used_cpu_user:");
        if (!sys || !user)
            die("INFO cpu has no used_cpu_sys / used_cpu_user");
        s->redis_info_cpu += strtod(sys + 13, NULL) + strtod(user + 14, NULL);
        freeReplyObject(r);
        r = redisCommand(c, "INFO commandstats");
        if (!r || r->type != REDIS_REPLY_STRING)
            die("INFO commandstats failed on port %d", b->redis.nodes[n].port);
        for (char *line = strtok(r->str, "\r\n"); line; line = strtok(NULL, "\r\n")) {
            char name[32];
            long long calls, usec;
            if (sscanf(line, "cmdstat_%31[^:]:calls=%lld,usec=%lld", name, &calls, &usec) == 3)
                add_cmdstat(s, name, calls, usec);
        }
        freeReplyObject(r);
    }
}

static void take_snapshot(bench_t *b, snapshot_t *s)
{
    memset(s, 0, sizeof *s);
    s->at_us = now_us();
    s->finished = atomic_load(&b->finished);
    s->coord_cpu = proc_cpu_seconds(b->coord);
    s->broker_cpu = proc_cpu_seconds(b->broker);
    s->redis_cpu = redis_proc_cpu(b);
    s->self_cpu = proc_cpu_seconds(getpid());
    s->coord_rss_kib = proc_rss_kib(b->coord);
    for (size_t t = 0; t < BENCH_NTOPICS; t++) {
        for (int p = 0; p < 64; p++) {
            int64_t lo, hi;
            if (rd_kafka_query_watermark_offsets(b->outcomes, TOPICS[t], p, &lo, &hi, 5000))
                break;
            s->kafka[t] += hi;
        }
    }
    read_redis_stats(b, s);
    read_latency(b, s);
}

/* Index of command name in s's commandstats, or -1 when Redis has not run it. */
static int cmd_index(const snapshot_t *s, const char *name)
{
    for (size_t i = 0; i < s->ncmd; i++)
        if (strcmp(s->cmd_names[i], name) == 0)
            return (int)i;
    return -1;
}

static long long cmd_calls(const snapshot_t *s, const char *name)
{
    int i = cmd_index(s, name);
    return i < 0 ? 0 : s->cmd_calls[i];
}

/* The commands the store sends (INFO commandstats counts a script's inner commands under
 * their own names as well: they are in EVALSHA's time already). */
static const char *const SCRIPT_COMMANDS[] = {"evalsha", "eval", "hdel", NULL};

static bool listed(const char *name, const char *const *names)
{
    for (size_t k = 0; names[k]; k++)
        if (strcmp(name, names[k]) == 0)
            return true;
    return false;
}

/* Microseconds Redis spent in the named commands (a NULL-ended list) from s0 to s1. */
static double cmd_usec_between(const snapshot_t *s0, const snapshot_t *s1,
                               const char *const *names)
{
    long long usec = 0;
    for (size_t k = 0; names[k]; k++) {
        int i0 = cmd_index(s0, names[k]), i1 = cmd_index(s1, names[k]);
        usec += (i1 < 0 ? 0 : s1->cmd_usec[i1]) - (i0 < 0 ? 0 : s0->cmd_usec[i0]);
    }
    return (double)usec;
}

/* --- results ---------------------------------------------------------------------- */

/* What one Redis floor measured. Only its writes are timed (not the machine that makes
 * the transitions); Redis's CPU is counted over the whole floor. */
typedef struct redis_floor_result {
    double transitions_per_s;
    double build_share;                /* of the timed part: building commands */
    double cpu_us;                     /* redis-server CPU per transition (INFO cpu) */
    double cmd_us;                     /* Redis's time inside the commands sent, per
                                        * transition (INFO commandstats usec: wall clock,
                                        * so a preempted Redis counts the time it waited) */
    double sagas_per_s;                /* transitions/s / (steps + 1) */
} redis_floor_result_t;

typedef struct result {
    int steps;
    /* saturation (closed loop) */
    double max_rate;
    double sat_e2e[3];
    double sat_cpu_per_1000;
    double sat_cores[4];               /* coordinator, broker, redis, bench: CPU s per s */
    /* half load (open loop) */
    double half_rate, half_achieved;
    size_t half_sagas;
    double e2e[3], hop[3], added[3];
    double coord_latency[3];           /* the coordinator's own histogram, ms */
    double cpu_per_1000;
    double redis_calls_per_saga;       /* every command Redis ran, scripts' inner ones too */
    double redis_sent_per_saga;        /* commands the coordinator sent (EVALSHA, HDEL, ...) */
    double evalsha_per_saga;
    json_t *redis_breakdown;
    double kafka_per_saga;
    double kafka_topic_per_saga[BENCH_NTOPICS];
    double avg_msg_bytes;
    uint64_t not_completed;
    uint64_t outcomes_again;           /* duplicates over the whole stack (see outcome_main) */
    /* memory */
    long rss_before_kib, rss_after_kib;
    double rss_per_saga_bytes;
    int rss_sagas;
    /* floor */
    double kafka_floor_msgs;           /* produce+consume, messages/s */
    double kafka_hop[3];               /* one hop at the half-load message rate */
    double redis_cpu_us, redis_cmd_us; /* ours at half load, per transition, as the floors' */
    redis_floor_result_t script;       /* the transition script, through the store API */
    redis_floor_result_t raw;          /* the least a transition must write, as plain commands */
    double floor_kafka_sagas;
    double floor_sagas, ratio;         /* min(Kafka, script floor); our rate / it */
    double raw_floor_sagas, raw_ratio; /* min(Kafka, raw floor); our rate / it */
} result_t;

static const double PCTS[3] = {50, 95, 99};

static void percentiles(samples_t *const *sets, size_t n, double out[3])
{
    samples_percentiles(sets, n, PCTS, 3, out);
    for (int i = 0; i < 3; i++)
        out[i] /= 1000.0; /* ms */
}

static void clear_samples(bench_t *b)
{
    samples_clear(&b->e2e);
    samples_clear(&b->final_hops);
    for (int i = 0; i < BENCH_PARTICIPANTS; i++)
        samples_clear(&b->parts[i].hops);
    atomic_store(&b->msg_count, 0);
    atomic_store(&b->msg_bytes, 0);
}

/* --- phases ----------------------------------------------------------------------- */

/* Closed loop: keeps window sagas in flight for the duration; returns sagas/s finished
 * after the ramp. */
static double closed_loop(bench_t *b, int window, double seconds)
{
    int64_t t0 = now_us(), end = t0 + (int64_t)(seconds * 1e6);
    int64_t ramp_end = t0 + BENCH_RAMP_US;
    uint64_t at_ramp = 0;
    bool ramped = false;
    while (now_us() < end) {
        if (!ramped && now_us() >= ramp_end) {
            at_ramp = atomic_load(&b->finished);
            ramped = true;
        }
        uint64_t inflight = in_flight(b);
        for (uint64_t i = inflight; i < (uint64_t)window; i++)
            if (!start_saga(b))
                break;
        rd_kafka_poll(b->producer, 0);
        sleep_us(200);
    }
    uint64_t done = atomic_load(&b->finished) - at_ramp;
    double rate = (double)done / ((double)(now_us() - ramp_end) / 1e6);
    if (!drain(b, BENCH_DRAIN_TIMEOUT_US))
        die("closed loop: %llu sagas never finished", (unsigned long long)in_flight(b));
    return rate;
}

/* Open loop: starts sagas at rate for the duration, then waits for all of them. Returns
 * the number started. */
static size_t open_loop(bench_t *b, double rate, double seconds, double *achieved)
{
    int64_t t0 = now_us();
    size_t total = (size_t)(rate * seconds), sent = 0;
    while (sent < total) {
        double elapsed = (double)(now_us() - t0) / 1e6;
        size_t due = (size_t)(elapsed * rate);
        if (due > total)
            due = total;
        for (; sent < due; sent++)
            if (!start_saga(b))
                die("out of saga numbers");
        rd_kafka_poll(b->producer, 0);
        sleep_us(200);
    }
    *achieved = (double)sent / ((double)(now_us() - t0) / 1e6);
    if (!drain(b, BENCH_DRAIN_TIMEOUT_US))
        die("open loop: %llu sagas never finished", (unsigned long long)in_flight(b));
    return sent;
}

/* --- the floor -------------------------------------------------------------------- */

typedef struct floor_consumer {
    bench_t *b;
    rd_kafka_t *rk;
    atomic_ullong count;
    atomic_int stop;
    int64_t last_us;
    samples_t hops;
} floor_consumer_t;

static void *floor_consumer_main(void *arg)
{
    floor_consumer_t *fc = arg;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(fc->rk);
    rd_kafka_message_t *msgs[BENCH_CONSUME_BATCH];
    while (!atomic_load(&fc->stop)) {
        ssize_t n = consume(q, 50, msgs);
        int64_t t = now_us();
        for (ssize_t i = 0; i < n; i++) {
            if (!msgs[i]->err && msgs[i]->len >= 20)
                samples_add(&fc->hops, t - strtoll(msgs[i]->payload, NULL, 10));
            rd_kafka_message_destroy(msgs[i]);
        }
        if (n) {
            fc->last_us = t;
            atomic_fetch_add(&fc->count, (unsigned long long)n);
        }
    }
    rd_kafka_queue_destroy(q);
    return NULL;
}

static void floor_message(char *buf, size_t size, uint64_t i)
{
    memset(buf, 'x', size);
    char head[24];
    int n = snprintf(head, sizeof head, "%020lld", (long long)now_us());
    memcpy(buf, head, (size_t)n);
    buf[size - 1] = '\0';
    (void)i;
}

/* Raw produce and consume through the same broker, with the coordinator's client
 * settings and messages of size bytes: messages/s for count messages as fast as they go,
 * then the one-hop latency at hop_rate messages/s. */
static void kafka_floor(bench_t *b, size_t size, int count, double hop_rate, result_t *r)
{
    floor_consumer_t fc = {.b = b};
    samples_init(&fc.hops);
    fc.rk = kafka_client(b, RD_KAFKA_CONSUMER, NULL);
    assign(fc.rk, BENCH_FLOOR_TOPIC, 0, 4, 1);
    rd_kafka_t *p = kafka_client(b, RD_KAFKA_PRODUCER, NULL);
    pthread_t th;
    pthread_create(&th, NULL, floor_consumer_main, &fc);
    char *buf = malloc(size + 1);
    char key[32];
    /* Warm the path up (first fetches of a fresh consumer are slow). */
    for (int i = 0; i < 100; i++) {
        floor_message(buf, size, (uint64_t)i);
        int kl = snprintf(key, sizeof key, "k%d", i);
        produce(p, BENCH_FLOOR_TOPIC, RD_KAFKA_PARTITION_UA, key, (size_t)kl, buf, size - 1);
    }
    rd_kafka_flush(p, 5000);
    while (atomic_load(&fc.count) < 100)
        sleep_us(1000);

    uint64_t base = atomic_load(&fc.count);
    int64_t t0 = now_us();
    for (int i = 0; i < count; i++) {
        floor_message(buf, size, (uint64_t)i);
        int kl = snprintf(key, sizeof key, "k%d", i);
        produce(p, BENCH_FLOOR_TOPIC, RD_KAFKA_PARTITION_UA, key, (size_t)kl, buf, size - 1);
        if ((i & 1023) == 0)
            rd_kafka_poll(p, 0);
    }
    rd_kafka_flush(p, 30000);
    while (atomic_load(&fc.count) < base + (uint64_t)count && now_us() - t0 < 60000000)
        sleep_us(1000);
    r->kafka_floor_msgs = (double)count / ((double)(fc.last_us - t0) / 1e6);

    /* Latency of one hop at the message rate of the half-load run. */
    samples_clear(&fc.hops);
    int64_t t1 = now_us();
    int total = (int)(hop_rate * 3.0), sent = 0;
    while (sent < total) {
        int due = (int)((double)(now_us() - t1) / 1e6 * hop_rate);
        for (; sent < due && sent < total; sent++) {
            floor_message(buf, size, (uint64_t)sent);
            int kl = snprintf(key, sizeof key, "h%d", sent);
            produce(p, BENCH_FLOOR_TOPIC, RD_KAFKA_PARTITION_UA, key, (size_t)kl, buf, size - 1);
        }
        rd_kafka_poll(p, 0);
        sleep_us(200);
    }
    rd_kafka_flush(p, 5000);
    base = atomic_load(&fc.count);
    sleep_us(200000);
    samples_t *set[] = {&fc.hops};
    percentiles(set, 1, r->kafka_hop);
    (void)base;

    atomic_store(&fc.stop, 1);
    pthread_join(th, NULL);
    free(buf);
    rd_kafka_destroy(p);
    rd_kafka_consumer_close(fc.rk);
    rd_kafka_destroy(fc.rk);
    samples_release(&fc.hops);
}

/* --- the Redis floors ------------------------------------------------------------- */

/* Two floors run on the same redis-server, each pipelined --depth transitions deep as a
 * coordinator turn is, over the machine's real transitions of depth sagas advancing one
 * step per pipeline:
 * - the script floor: the coordinator's transition script through the store API (what
 *   a coordinator with no overhead of its own would reach);
 * - the raw floor: the least a transition must make durable, as plain commands (the
 *   saga's changed fields, one history entry, its outbox entry), so that "our rate /
 *   floor" cannot hide what the script itself costs Redis. */

/* The raw floor's commands. */
static const char *const RAW_COMMANDS[] = {"hset", "rpush", "hdel", NULL};
/* The fields the raw floor writes on a saga that exists: those every transition changes.
 * A create writes every field, as the store does. */
static const char *const RAW_FIELDS[] = {"status", "step", "version", "updated_at", "steps"};
#define RAW_MAX_ARGS 64                 /* of one raw HSET: a create's every field */
#define FLOOR_OUTBOX_PER_TRANSITION 2   /* the bench's sagas: one command, or an outcome */

/* One command's arguments in one growable buffer (offsets: the buffer may move). */
typedef struct raw_cmd {
    jsonw_t text;
    size_t off[RAW_MAX_ARGS], len[RAW_MAX_ARGS];
    int argc;
} raw_cmd_t;

/* One pipeline: depth sagas, the transitions the machine made for them this step, and
 * the outbox entries of this pipeline (cur) and of the previous one (prev, acknowledged
 * in this one as the coordinator's next turn does). */
typedef struct floor_round {
    size_t depth;
    int64_t epoch;
    saga_t **sagas;
    json_t **hist;                     /* each transition's history entries (owned) */
    store_transition_t *ts;
    store_status_t *results;
    outbox_entry_t *cur, *prev;
    size_t ncur, nprev;
    raw_cmd_t cmd;                     /* the raw floor's scratch */
    jsonw_t entry;
} floor_round_t;

/* Writes one pipeline and reads its replies. Returns the microseconds it took; *build_us
 * gets those spent building the commands, before anything went to Redis. */
typedef int64_t (*floor_write_fn)(store_t *st, floor_round_t *fr, int64_t *build_us);

typedef struct floor_kind {
    const char *name;
    const char *prefix;                /* keys of its own, apart from the other floor's */
    floor_write_fn write;
    const char *const *commands;       /* what it sends, for INFO commandstats */
} floor_kind_t;

static void entries_release(outbox_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        outbox_entry_release(&e[i]);
}

static void floor_round_init(floor_round_t *fr, size_t depth, int64_t epoch)
{
    *fr = (floor_round_t){.depth = depth, .epoch = epoch};
    fr->sagas = calloc(depth, sizeof *fr->sagas);
    fr->hist = calloc(depth, sizeof *fr->hist);
    fr->ts = calloc(depth, sizeof *fr->ts);
    fr->results = calloc(depth, sizeof *fr->results);
    if (!fr->sagas || !fr->hist || !fr->ts || !fr->results)
        die("out of memory");
    jsonw_init(&fr->cmd.text);
    jsonw_init(&fr->entry);
}

static void floor_round_release(floor_round_t *fr)
{
    entries_release(fr->prev, fr->nprev);
    entries_release(fr->cur, fr->ncur);
    free(fr->prev);
    free(fr->cur);
    free(fr->sagas);
    free(fr->hist);
    free(fr->ts);
    free(fr->results);
    jsonw_release(&fr->cmd.text);
    jsonw_release(&fr->entry);
}

/* depth new sagas (ids unique per round and kind of floor). */
static void floor_sagas_new(floor_round_t *fr, const definition_t *def, int round)
{
    for (size_t i = 0; i < fr->depth; i++) {
        char id[64];
        snprintf(id, sizeof id, "f%d-%zu", round, i);
        json_t *input = json_pack("{s:s, s:s, s:f}", "order_id", id, "customer", "c-1",
                                  "amount", 12.5);
        fr->sagas[i] = saga_new(id, def, 0, input, 0);
        json_decref(input);
    }
}

static void floor_sagas_free(floor_round_t *fr)
{
    for (size_t i = 0; i < fr->depth; i++)
        saga_free(fr->sagas[i]);
}

/* Fills e; value is stolen. */
static void outbox_set(outbox_entry_t *e, const char *id, const char *topic, const char *key,
                       char *value)
{
    *e = (outbox_entry_t){.id = strdup(id), .topic = strdup(topic), .key = strdup(key),
                          .value = value, .partition = -1};
}

/* Saga i's transition at step: step 0 starts it, step k answers step k - 1 with ok. */
static void floor_advance_saga(floor_round_t *fr, size_t i, int step, const machine_env_t *env,
                               json_t *output)
{
    saga_t *s = fr->sagas[i];
    machine_result_t res;
    machine_result_init(&res);
    if (step == 0) {
        machine_start(s, env, &res);
    } else {
        machine_reply_t rep = {.step = step - 1, .kind = CMD_ACTION, .attempt = 1, .ok = true,
                               .output = output};
        machine_on_reply(s, &rep, env, &res);
    }
    size_t first = fr->ncur;
    if (res.command_count + (res.outcome ? 1 : 0) > FLOOR_OUTBOX_PER_TRANSITION)
        die("redis floor: a transition sent more than %d messages", FLOOR_OUTBOX_PER_TRANSITION);
    for (size_t k = 0; k < res.command_count; k++)
        outbox_set(&fr->cur[fr->ncur++], res.commands[k].id, res.commands[k].topic, s->id,
                   strdup(res.commands[k].text));
    if (res.outcome) {
        char oid[MACHINE_COMMAND_ID_MAX];
        snprintf(oid, sizeof oid, "%s/outcome/%lld", s->id, (long long)s->version + 1);
        outbox_set(&fr->cur[fr->ncur++], oid, "saga.outcomes", s->id,
                   json_dumps(res.outcome, JSON_COMPACT));
    }
    fr->hist[i] = res.history;
    res.history = NULL;
    fr->ts[i] = (store_transition_t){.partition = 0, .epoch = fr->epoch, .saga = s,
                                     .expected_version = s->version,
                                     .old_status = res.old_status, .history = fr->hist[i],
                                     .outbox = fr->cur + first, .outbox_count = fr->ncur - first};
    machine_result_release(&res);
}

/* Every saga of the pipeline one step on (nothing written yet). */
static void floor_round_advance(floor_round_t *fr, int step, const machine_env_t *env,
                                json_t *output)
{
    fr->cur = calloc(fr->depth * FLOOR_OUTBOX_PER_TRANSITION, sizeof *fr->cur);
    if (!fr->cur)
        die("out of memory");
    fr->ncur = 0;
    for (size_t i = 0; i < fr->depth; i++)
        floor_advance_saga(fr, i, step, env, output);
}

/* After the pipeline was written: every transition must have been; the sagas are at
 * their next version; this pipeline's entries are the next one's to acknowledge. */
static void floor_round_settle(floor_round_t *fr)
{
    for (size_t i = 0; i < fr->depth; i++) {
        if (fr->results[i] != STORE_OK)
            die("redis floor: transition refused (%d)", (int)fr->results[i]);
        fr->sagas[i]->version = fr->ts[i].expected_version + 1;
        json_decref(fr->hist[i]);
        fr->hist[i] = NULL;
    }
    entries_release(fr->prev, fr->nprev);
    free(fr->prev);
    fr->prev = fr->cur;
    fr->nprev = fr->ncur;
    fr->cur = NULL;
    fr->ncur = 0;
}

/* The previous pipeline's entry ids after lead free slots (malloc'd). */
static const char **floor_ack_ids(const floor_round_t *fr, size_t lead)
{
    const char **ids = malloc((lead + fr->nprev + 1) * sizeof *ids);
    if (!ids)
        die("out of memory");
    for (size_t k = 0; k < fr->nprev; k++)
        ids[lead + k] = fr->prev[k].id;
    return ids;
}

/* The script floor: one HDEL of the previous pipeline's entries (as queue_acks does),
 * then the transitions through store_queue_transition, then store_flush. */
static int64_t floor_write_script(store_t *st, floor_round_t *fr, int64_t *build_us)
{
    int64_t t0 = now_us();
    const char **ids = floor_ack_ids(fr, 0);
    int rc = store_queue_outbox_acks(st, 0, fr->epoch, ids, fr->nprev);
    free(ids);
    for (size_t i = 0; rc == 0 && i < fr->depth; i++)
        rc = store_queue_transition(st, &fr->ts[i]);
    int64_t t1 = now_us();
    if (rc < 0 || store_flush(st, fr->results) < 0)
        die("redis floor: %s", store_last_error(st));
    *build_us = t1 - t0;
    return now_us() - t0;
}

/* Ends the argument that started at offset at of c's text. */
static void raw_end_arg(raw_cmd_t *c, size_t at)
{
    if (c->argc == RAW_MAX_ARGS)
        die("raw floor: more than %d arguments", RAW_MAX_ARGS);
    c->off[c->argc] = at;
    c->len[c->argc++] = c->text.len - at;
}

static void raw_arg(raw_cmd_t *c, const char *s, size_t len)
{
    size_t at = c->text.len;
    jsonw_raw(&c->text, s, len);
    raw_end_arg(c, at);
}

static void raw_arg_str(raw_cmd_t *c, const char *s)
{
    raw_arg(c, s, strlen(s));
}

/* One argument: n strings joined by sep. */
static void raw_arg_joined(raw_cmd_t *c, const char *const *parts, size_t n, char sep)
{
    size_t at = c->text.len;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            jsonw_raw(&c->text, &sep, 1);
        jsonw_raw(&c->text, parts[i], strlen(parts[i]));
    }
    raw_end_arg(c, at);
}

/* Appends the command to hiredis's pipeline and empties c. */
static void raw_append(redisContext *ctx, raw_cmd_t *c)
{
    const char *argv[RAW_MAX_ARGS];
    for (int i = 0; i < c->argc; i++)
        argv[i] = c->text.buf + c->off[i];
    if (c->text.failed || redisAppendCommandArgv(ctx, c->argc, argv, c->len) != REDIS_OK)
        die("raw floor: cannot append a command");
    c->argc = 0;
    jsonw_reset(&c->text);
}

typedef struct raw_fields {
    raw_cmd_t *cmd;
    bool all;
    const char *version;       /* written for "version", as the store does */
} raw_fields_t;

/* A saga_field_fn: every field for a create, else those of RAW_FIELDS. */
static int raw_field(const char *name, const char *value, size_t len, void *opaque)
{
    raw_fields_t *rf = opaque;
    bool take = rf->all;
    for (size_t k = 0; !take && k < sizeof RAW_FIELDS / sizeof *RAW_FIELDS; k++)
        take = strcmp(name, RAW_FIELDS[k]) == 0;
    if (!take)
        return 0;
    raw_arg_str(rf->cmd, name);
    if (strcmp(name, "version") == 0)
        raw_arg_str(rf->cmd, rf->version);
    else
        raw_arg(rf->cmd, value, len);
    return 0;
}

/* The least a transition must make durable, as plain commands: HSET of the saga's
 * changed fields, RPUSH of one history entry, HSET of its first outbox entry (the value
 * laid out as docs/redis.md says). Returns the number of commands appended. */
static size_t raw_queue_transition(store_t *st, floor_round_t *fr, const store_transition_t *t)
{
    redisContext *ctx = store_context(st);
    raw_cmd_t *c = &fr->cmd;
    const rkeys_t *keys = store_keys(st);
    char key[RKEYS_KEY_MAX];
    size_t n = 0;
    raw_arg_str(c, "HSET");
    raw_arg_str(c, rkeys_saga(keys, key, t->partition, t->saga->id));
    char version[JSONW_INT_MAX];
    jsonw_format_int(version, t->expected_version + 1);
    raw_fields_t rf = {.cmd = c, .all = t->expected_version == 0, .version = version};
    if (saga_visit_fields(t->saga, rf.all, &fr->entry, raw_field, &rf) < 0)
        die("raw floor: cannot encode a saga");
    raw_append(ctx, c), n++;
    if (t->history && json_array_size(t->history) > 0) {
        jsonw_reset(&fr->entry);
        jsonw_value(&fr->entry, json_array_get(t->history, 0));
        raw_arg_str(c, "RPUSH");
        raw_arg_str(c, rkeys_history(keys, key, t->partition, t->saga->id));
        raw_arg(c, fr->entry.buf, fr->entry.len);
        raw_append(ctx, c), n++;
    }
    if (t->outbox_count > 0) {
        const outbox_entry_t *e = &t->outbox[0];
        raw_arg_str(c, "HSET");
        raw_arg_str(c, rkeys_outbox(keys, key, t->partition));
        raw_arg_str(c, e->id);
        char part[JSONW_INT_MAX];
        jsonw_format_int(part, e->partition);
        const char *value[] = {e->topic, part, e->key, e->value};
        raw_arg_joined(c, value, 4, '\n');
        raw_append(ctx, c), n++;
    }
    return n;
}

/* Reads n replies; an error reply or a lost connection ends the bench. */
static void raw_read_replies(redisContext *ctx, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
            die("raw floor: %s", ctx->errstr);
        if (r->type == REDIS_REPLY_ERROR)
            die("raw floor: %s", r->str);
        freeReplyObject(r);
    }
}

/* The raw floor: one HDEL of the previous pipeline's entries, then each transition's
 * least durable write; one pipeline, as the script floor's. */
static int64_t floor_write_raw(store_t *st, floor_round_t *fr, int64_t *build_us)
{
    redisContext *ctx = store_context(st);
    int64_t t0 = now_us();
    size_t n = 0;
    if (fr->nprev > 0) {
        char key[RKEYS_KEY_MAX];
        rkeys_outbox(store_keys(st), key, 0);
        const char **argv = floor_ack_ids(fr, 2);
        argv[0] = "HDEL";
        argv[1] = key;
        if (redisAppendCommandArgv(ctx, (int)fr->nprev + 2, argv, NULL) != REDIS_OK)
            die("raw floor: cannot append HDEL");
        free(argv);
        n++;
    }
    for (size_t i = 0; i < fr->depth; i++) {
        n += raw_queue_transition(st, fr, &fr->ts[i]);
        fr->results[i] = STORE_OK;
    }
    int64_t t1 = now_us();
    raw_read_replies(ctx, n);
    *build_us = t1 - t0;
    return now_us() - t0;
}

static const floor_kind_t FLOOR_SCRIPT = {"script", "benchfloor", floor_write_script,
                                          SCRIPT_COMMANDS};
static const floor_kind_t FLOOR_RAW = {"raw", "benchraw", floor_write_raw, RAW_COMMANDS};

/* A store on the bench's Redis with the coordinator's settings and its own key prefix,
 * holding a fresh epoch of partition 0: on the primary that serves partition 0's slot
 * on a cluster (as the coordinator's cluster store keeps one store per primary). */
static store_t *floor_store(bench_t *b, const char *prefix, int64_t *epoch)
{
    char err[512];
    int port = bench_redis_partition_port(&b->redis, 0, err, sizeof err);
    if (port < 0)
        die("redis floor: %s", err);
    store_config_t sc = {.redis = {.host = "127.0.0.1", .port = port,
                                   .command_timeout_ms = 5000},
                         .prefix = prefix, .retention_ms = 7LL * 24 * 3600 * 1000,
                         .history_cap = 1000};
    store_t *st = store_new(&sc, err, sizeof err);
    if (!st)
        die("redis floor: %s", err);
    if (store_take_epoch(st, 0, "saga-bench", epoch) < 0)
        die("redis floor: %s", store_last_error(st));
    return st;
}

/* Runs one floor: rounds of depth new sagas taken from start to finish, one pipeline
 * per step. Redis's CPU and command time are read before and after (the coordinator is
 * idle meanwhile). */
static void redis_floor(bench_t *b, const floor_kind_t *kind, int rounds, redis_floor_result_t *out)
{
    defn_errors_t errs = {0};
    defn_set_t *set = defn_set_load(b->defs, &errs);
    defn_errors_release(&errs);
    const definition_t *def = set ? defn_set_find(set, b->saga_name, 0) : NULL;
    if (!def)
        die("cannot load %s for the Redis floor", b->saga_name);
    int64_t epoch;
    store_t *st = floor_store(b, kind->prefix, &epoch);
    floor_round_t fr;
    floor_round_init(&fr, (size_t)b->o.depth, epoch);
    uint64_t rng = 42;
    machine_env_t env = {.rng = &rng, .reply_topic = "saga.input"};
    json_t *output = json_pack("{s:s}", "ref", "r-floor-s0");
    int64_t timed = 0, build = 0;
    size_t transitions = 0;
    snapshot_t s0, s1;
    read_redis_stats(b, &s0);
    for (int round = 0; round < rounds; round++) {
        floor_sagas_new(&fr, def, round);
        for (int step = 0; step <= b->steps; step++) {
            env.now_ms = (int64_t)time(NULL) * 1000;
            floor_round_advance(&fr, step, &env, output);
            int64_t build_us;
            timed += kind->write(st, &fr, &build_us);
            build += build_us;
            floor_round_settle(&fr);
            transitions += fr.depth;
        }
        floor_sagas_free(&fr);
    }
    read_redis_stats(b, &s1);
    out->transitions_per_s = (double)transitions / ((double)timed / 1e6);
    out->build_share = (double)build / (double)timed;
    out->cpu_us = (s1.redis_info_cpu - s0.redis_info_cpu) * 1e6 / (double)transitions;
    out->cmd_us = cmd_usec_between(&s0, &s1, kind->commands) / (double)transitions;
    out->sagas_per_s = out->transitions_per_s / (double)(b->steps + 1);
    json_decref(output);
    floor_round_release(&fr);
    store_free(st);
    defn_set_free(set);
}

static void print_redis_floor(const floor_kind_t *kind, const redis_floor_result_t *f, int depth)
{
    printf("  %-6s floor: %8.0f transitions/s (depth %d), %2.0f%% of it building commands; "
           "Redis CPU %.1f us per transition, %.1f us (wall) in commands\n",
           kind->name, f->transitions_per_s, depth, f->build_share * 100, f->cpu_us, f->cmd_us);
}

/* Starts redis-server alone and prints the two floors (for profiling the store). */
static void redis_floor_alone(bench_t *b, int steps)
{
    char rdir[32];
    b->steps = steps;
    snprintf(b->saga_name, sizeof b->saga_name, "bench%d", steps);
    snprintf(rdir, sizeof rdir, "redis-floor-%d", steps);
    redis_start(b, rdir);
    redis_floor_result_t script, raw;
    redis_floor(b, &FLOOR_SCRIPT, BENCH_FLOOR_ALONE_ROUNDS, &script);
    redis_floor(b, &FLOOR_RAW, BENCH_FLOOR_ALONE_ROUNDS, &raw);
    printf("%d steps (Redis %s, redis-server pid %d):\n", steps, b->redis.layout,
           (int)b->redis.nodes[0].pid);
    print_redis_floor(&FLOOR_SCRIPT, &script, b->o.depth);
    print_redis_floor(&FLOOR_RAW, &raw, b->o.depth);
    bench_redis_stop(&b->redis);
}

/* --- one saga size ---------------------------------------------------------------- */

static void run_size(bench_t *b, int steps, result_t *r)
{
    memset(r, 0, sizeof *r);
    r->steps = steps;
    stack_start(b, steps);

    /* Warm-up. */
    closed_loop(b, 200, 2.0);

    /* Saturation: the most it sustains with a window of sagas in flight. */
    clear_samples(b);
    snapshot_t s0, s1;
    take_snapshot(b, &s0);
    r->max_rate = closed_loop(b, b->o.window, b->o.duration_s);
    take_snapshot(b, &s1);
    samples_t *e2e_set[] = {&b->e2e};
    percentiles(e2e_set, 1, r->sat_e2e);
    r->sat_cpu_per_1000 =
        (s1.coord_cpu - s0.coord_cpu) / (double)(s1.finished - s0.finished) * 1000.0;
    double wall = (double)(s1.at_us - s0.at_us) / 1e6;
    r->sat_cores[0] = (s1.coord_cpu - s0.coord_cpu) / wall;
    r->sat_cores[1] = (s1.broker_cpu - s0.broker_cpu) / wall;
    r->sat_cores[2] = (s1.redis_cpu - s0.redis_cpu) / wall;
    r->sat_cores[3] = (s1.self_cpu - s0.self_cpu) / wall;
    fprintf(stderr, "saga-bench: %d steps: saturation %.0f sagas/s (window %d)\n", steps,
            r->max_rate, b->o.window);

    /* Half load: latencies, and exact counts per saga (every saga drained). */
    sleep_us(BENCH_SETTLE_US);
    clear_samples(b);
    take_snapshot(b, &s0);
    r->half_rate = b->o.rate > 0 ? b->o.rate : r->max_rate / 2;
    r->half_sagas = open_loop(b, r->half_rate, b->o.duration_s, &r->half_achieved);
    int64_t half_end = now_us();
    sleep_us(BENCH_SETTLE_US);
    take_snapshot(b, &s1);
    double n = (double)(s1.finished - s0.finished);
    r->not_completed = atomic_load(&b->not_completed);
    r->outcomes_again = atomic_load(&b->outcomes_again);
    percentiles(e2e_set, 1, r->e2e);
    samples_t *hop_set[BENCH_PARTICIPANTS + 1];
    for (int i = 0; i < BENCH_PARTICIPANTS; i++)
        hop_set[i] = &b->parts[i].hops;
    hop_set[BENCH_PARTICIPANTS] = &b->final_hops;
    percentiles(hop_set, BENCH_PARTICIPANTS + 1, r->hop);
    latency_percentiles(&s0, &s1, PCTS, 3, r->coord_latency);
    r->cpu_per_1000 = (s1.coord_cpu - s0.coord_cpu) / n * 1000.0;
    r->redis_breakdown = json_object();
    long long all = 0, sent = 0;
    for (size_t i = 0; i < s1.ncmd; i++) {
        if (strcmp(s1.cmd_names[i], "info") == 0)
            continue;
        long long d = s1.cmd_calls[i] - cmd_calls(&s0, s1.cmd_names[i]);
        if (d <= 0)
            continue;
        all += d;
        if (listed(s1.cmd_names[i], SCRIPT_COMMANDS))
            sent += d;
        json_object_set_new(r->redis_breakdown, s1.cmd_names[i], json_real((double)d / n));
    }
    r->redis_calls_per_saga = (double)all / n;
    r->redis_sent_per_saga = (double)sent / n;
    r->evalsha_per_saga = (double)(cmd_calls(&s1, "evalsha") - cmd_calls(&s0, "evalsha")) / n;
    int64_t kt = 0;
    for (size_t t = 0; t < BENCH_NTOPICS; t++) {
        r->kafka_topic_per_saga[t] = (double)(s1.kafka[t] - s0.kafka[t]) / n;
        kt += s1.kafka[t] - s0.kafka[t];
    }
    r->kafka_per_saga = (double)kt / n;
    r->avg_msg_bytes = (double)atomic_load(&b->msg_bytes) / (double)atomic_load(&b->msg_count);
    double half_msgs_per_s = (double)kt / ((double)(half_end - s0.at_us) / 1e6);
    double transitions = n * (double)(steps + 1);
    r->redis_cpu_us = (s1.redis_info_cpu - s0.redis_info_cpu) * 1e6 / transitions;
    r->redis_cmd_us = cmd_usec_between(&s0, &s1, SCRIPT_COMMANDS) / transitions;

    /* The floor, on the same broker and Redis, with the coordinator idle. */
    kafka_floor(b, (size_t)(r->avg_msg_bytes + 0.5), b->o.floor_messages, half_msgs_per_s, r);
    redis_floor(b, &FLOOR_SCRIPT, BENCH_FLOOR_ROUNDS, &r->script);
    redis_floor(b, &FLOOR_RAW, BENCH_FLOOR_ROUNDS, &r->raw);
    for (int i = 0; i < 3; i++)
        r->added[i] = r->hop[i] - 2 * r->kafka_hop[0];
    r->floor_kafka_sagas = r->kafka_floor_msgs / r->kafka_per_saga;
    r->floor_sagas = fmin(r->floor_kafka_sagas, r->script.sagas_per_s);
    r->ratio = r->max_rate / r->floor_sagas;
    r->raw_floor_sagas = fmin(r->floor_kafka_sagas, r->raw.sagas_per_s);
    r->raw_ratio = r->max_rate / r->raw_floor_sagas;
    stack_stop(b);

    /* Memory per in-flight saga, on a fresh stack: participants hold every command. */
    if (b->o.no_rss)
        return;
    stack_start(b, steps);
    closed_loop(b, 200, 2.0);
    sleep_us(1000000);
    r->rss_before_kib = proc_rss_kib(b->coord);
    atomic_store(&b->held, 0);
    atomic_store(&b->hold, 1);
    int64_t t0 = now_us();
    for (int i = 0; i < b->o.inflight; i++) {
        start_saga(b);
        if ((i & 1023) == 0)
            rd_kafka_poll(b->producer, 0);
    }
    rd_kafka_flush(b->producer, 30000);
    while (atomic_load(&b->held) < (unsigned long long)b->o.inflight) {
        if (now_us() - t0 > BENCH_DRAIN_TIMEOUT_US)
            die("memory phase: only %llu of %d sagas in flight",
                (unsigned long long)atomic_load(&b->held), b->o.inflight);
        sleep_us(10000);
    }
    sleep_us(1000000);
    r->rss_after_kib = proc_rss_kib(b->coord);
    r->rss_sagas = b->o.inflight;
    r->rss_per_saga_bytes =
        (double)(r->rss_after_kib - r->rss_before_kib) * 1024.0 / (double)b->o.inflight;
    fprintf(stderr, "saga-bench: %d steps: %d sagas in flight after %.1f s, RSS %ld -> %ld KiB\n",
            steps, b->o.inflight, (double)(now_us() - t0) / 1e6, r->rss_before_kib,
            r->rss_after_kib);
    /* Nobody waits for the held sagas: the stack goes away with them. */
    atomic_store(&b->finished, atomic_load(&b->next_saga));
    stack_stop(b);
}

/* --- report ----------------------------------------------------------------------- */

/* The Redis layout as the report names it (bench_redis.h). */
static const char *redis_layout(const bench_t *b)
{
    static char layout[64];
    return bench_redis_layout_name(layout, sizeof layout, b->o.cluster, b->o.replica);
}

static void print_table(const result_t *rs, size_t n, const bench_t *b)
{
    printf("\nsaga-bench: 1 coordinator, %d input partitions, %d participant threads, "
           "phases of %.0f s, window %d, Redis layout: %s, redis_sync_replicas=%d\n\n",
           BENCH_INPUT_PARTITIONS, BENCH_PARTICIPANTS, b->o.duration_s, b->o.window,
           redis_layout(b), b->o.sync_replicas);
    printf("%-44s", "");
    for (size_t i = 0; i < n; i++)
        printf("%14d-step", rs[i].steps);
    printf("\n");
#define ROW(label, fmt, ...)                                                                \
    do {                                                                                     \
        printf("%-44s", label);                                                              \
        for (size_t i = 0; i < n; i++)                                                       \
            printf(fmt, __VA_ARGS__);                                                        \
        printf("\n");                                                                        \
    } while (0)
    ROW("max sustained sagas/s (closed loop)", "%19.0f", rs[i].max_rate);
    ROW("  e2e p99 at saturation (ms)", "%19.1f", rs[i].sat_e2e[2]);
    ROW("  cores: coordinator/broker/redis/bench", "%7.2f/%.2f/%.2f/%.2f", rs[i].sat_cores[0],
        rs[i].sat_cores[1], rs[i].sat_cores[2], rs[i].sat_cores[3]);
    ROW(b->o.rate > 0 ? "fixed load: sagas/s (open loop)" : "half load: sagas/s (open loop)", "%19.0f",
        rs[i].half_achieved);
    ROW("  e2e latency p50 (ms)", "%19.2f", rs[i].e2e[0]);
    ROW("  e2e latency p95 (ms)", "%19.2f", rs[i].e2e[1]);
    ROW("  e2e latency p99 (ms)", "%19.2f", rs[i].e2e[2]);
    ROW("  hop per transition p50/p99 (ms)", "%12.2f / %5.2f", rs[i].hop[0], rs[i].hop[2]);
    ROW("  added per step p50/p99 (ms)", "%12.2f / %5.2f", rs[i].added[0], rs[i].added[2]);
    ROW("  coordinator latency p50/p99 (ms)", "%12.2f / %5.2f", rs[i].coord_latency[0],
        rs[i].coord_latency[2]);
    ROW("Redis commands per saga (all / sent)", "%12.1f / %5.1f", rs[i].redis_calls_per_saga,
        rs[i].redis_sent_per_saga);
    ROW("Kafka messages per saga", "%19.2f", rs[i].kafka_per_saga);
    ROW("avg message bytes", "%19.0f", rs[i].avg_msg_bytes);
    ROW("coordinator CPU s per 1000 sagas (half/sat)", "%12.3f / %5.3f", rs[i].cpu_per_1000,
        rs[i].sat_cpu_per_1000);
    ROW("coordinator RSS per in-flight saga (bytes)", "%19.0f", rs[i].rss_per_saga_bytes);
    ROW("  RSS before / after (MiB)", "%12.1f / %5.1f", rs[i].rss_before_kib / 1024.0,
        rs[i].rss_after_kib / 1024.0);
    ROW("floor: Kafka produce+consume msgs/s", "%19.0f", rs[i].kafka_floor_msgs);
    ROW("floor: Kafka one hop p50/p99 (ms)", "%12.2f / %5.2f", rs[i].kafka_hop[0],
        rs[i].kafka_hop[2]);
    ROW("floor: Redis transitions/s (store API)", "%19.0f", rs[i].script.transitions_per_s);
    ROW("floor: Redis transitions/s (raw writes)", "%19.0f", rs[i].raw.transitions_per_s);
    ROW("Redis CPU us/transition: ours/script/raw", "%9.1f/%.1f/%.1f", rs[i].redis_cpu_us,
        rs[i].script.cpu_us, rs[i].raw.cpu_us);
    ROW("  wall us in commands: ours/script/raw", "%9.1f/%.1f/%.1f", rs[i].redis_cmd_us,
        rs[i].script.cmd_us, rs[i].raw.cmd_us);
    ROW("floor: sagas/s Kafka / Redis (script)", "%12.0f / %5.0f", rs[i].floor_kafka_sagas,
        rs[i].script.sagas_per_s);
    ROW("floor: sagas/s Redis (raw)", "%19.0f", rs[i].raw.sagas_per_s);
    ROW("our rate / floor (script)", "%19.2f", rs[i].ratio);
    ROW("our rate / raw floor", "%19.2f", rs[i].raw_ratio);
    ROW("sagas not completed", "%19llu", (unsigned long long)rs[i].not_completed);
    ROW("outcomes received again (partition reloads)", "%19llu",
        (unsigned long long)rs[i].outcomes_again);
#undef ROW
    printf("\nhop = previous message of the saga produced -> next one consumed (2 Kafka hops + "
           "the coordinator's turn);\nadded = hop - 2 x Kafka one-hop p50 at the same message "
           "rate; coordinator latency = its own histogram\n(input message available -> its "
           "commands produced, Redis write included). Redis 'all' counts commands run inside "
           "the script.\n"
           "floor (script) = min(Kafka, Redis running our transition script); raw floor = "
           "min(Kafka, Redis taking the least\na transition must write: HSET of the changed "
           "fields, RPUSH of one history entry, HSET of one outbox\nentry); both pipelined "
           "%d deep. Redis CPU: INFO cpu's used_cpu_sys+user (ours: at half load); wall us in "
           "commands: INFO commandstats\n(wall clock inside the commands sent: EVALSHA/HDEL, "
           "or HSET/RPUSH/HDEL; above the CPU when Redis is preempted).\n",
           b->o.depth);
}

static json_t *pct_json(const double v[3])
{
    return json_pack("{s:f, s:f, s:f}", "p50", v[0], "p95", v[1], "p99", v[2]);
}

static json_t *redis_floor_json(const redis_floor_result_t *f)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f}", "transitions_per_s", f->transitions_per_s,
                     "build_share", f->build_share, "redis_cpu_us_per_transition", f->cpu_us,
                     "redis_command_wall_us_per_transition", f->cmd_us, "sagas_per_s",
                     f->sagas_per_s);
}

/* The two Redis floors and what they give (the older keys of "floor" are the script's). */
static void add_floors_json(json_t *entry, const result_t *r)
{
    json_t *floor = json_object_get(entry, "floor");
    json_object_set_new(floor, "redis_script", redis_floor_json(&r->script));
    json_object_set_new(floor, "redis_raw", redis_floor_json(&r->raw));
    json_object_set_new(floor, "raw_sagas_per_s", json_real(r->raw_floor_sagas));
    json_object_set_new(entry, "fraction_of_raw_floor", json_real(r->raw_ratio));
    json_object_set_new(entry, "redis_cpu_us_per_transition", json_real(r->redis_cpu_us));
    json_object_set_new(entry, "redis_command_wall_us_per_transition",
                        json_real(r->redis_cmd_us));
}

static void write_json(const result_t *rs, size_t n, const bench_t *b, const char *path)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const result_t *r = &rs[i];
        json_t *kt = json_object();
        for (size_t t = 0; t < BENCH_NTOPICS; t++)
            json_object_set_new(kt, TOPICS[t], json_real(r->kafka_topic_per_saga[t]));
        json_array_append_new(
            arr,
            json_pack("{s:i, s:f, s:o, s:f, s:f, s:i, s:o, s:o, s:o, s:f, s:f, s:f, s:f, s:O,"
                      " s:f, s:o, s:f, s:f, s:f, s:{s:i, s:i, s:i, s:f},"
                      " s:{s:f, s:o, s:f, s:f, s:i, s:f, s:f, s:f}, s:f, s:I, s:{s:f, s:f, s:f, s:f}}",
                      "steps", r->steps, "max_sagas_per_s", r->max_rate, "saturation_e2e_ms",
                      pct_json(r->sat_e2e), "half_load_target_per_s", r->half_rate,
                      "half_load_per_s", r->half_achieved, "half_load_sagas",
                      (int)r->half_sagas, "e2e_ms", pct_json(r->e2e), "hop_ms",
                      pct_json(r->hop), "added_per_step_ms", pct_json(r->added),
                      "redis_commands_per_saga", r->redis_calls_per_saga,
                      "redis_commands_sent_per_saga", r->redis_sent_per_saga,
                      "evalsha_per_saga", r->evalsha_per_saga, "kafka_messages_per_saga",
                      r->kafka_per_saga, "redis_breakdown_per_saga", r->redis_breakdown,
                      "avg_message_bytes", r->avg_msg_bytes, "kafka_messages_per_saga_by_topic",
                      kt, "cpu_s_per_1000_sagas_half_load", r->cpu_per_1000,
                      "cpu_s_per_1000_sagas_saturated", r->sat_cpu_per_1000,
                      "rss_bytes_per_inflight_saga", r->rss_per_saga_bytes, "rss",
                      "sagas_in_flight", r->rss_sagas, "before_kib", (int)r->rss_before_kib,
                      "after_kib", (int)r->rss_after_kib, "bytes_per_saga",
                      r->rss_per_saga_bytes, "floor", "kafka_messages_per_s",
                      r->kafka_floor_msgs, "kafka_one_hop_ms", pct_json(r->kafka_hop),
                      "redis_transitions_per_s", r->script.transitions_per_s,
                      "redis_queue_share", r->script.build_share, "redis_depth",
                      b->o.depth, "kafka_sagas_per_s", r->floor_kafka_sagas,
                      "redis_sagas_per_s", r->script.sagas_per_s, "sagas_per_s",
                      r->floor_sagas, "fraction_of_floor", r->ratio, "not_completed",
                      (json_int_t)r->not_completed, "saturation_cores", "coordinator",
                      r->sat_cores[0], "broker", r->sat_cores[1], "redis", r->sat_cores[2],
                      "bench", r->sat_cores[3]));
        json_t *entry = json_array_get(arr, json_array_size(arr) - 1);
        json_object_set_new(entry, "coordinator_latency_ms", pct_json(r->coord_latency));
        json_object_set_new(entry, "outcomes_received_again", json_integer((json_int_t)r->outcomes_again));
        add_floors_json(entry, r);
    }
    char host[256] = "";
    gethostname(host, sizeof host);
    char model[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                snprintf(model, sizeof model, "%.200s", c ? c + 2 : line);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        fclose(f);
    }
    json_t *doc = json_pack("{s:{s:i, s:s, s:I}, s:{s:f, s:i, s:i, s:i, s:i, s:b, s:i}, s:o}",
                            "machine",
                            "nproc", (int)sysconf(_SC_NPROCESSORS_ONLN), "cpu", model,
                            "mem_kib",
                            (json_int_t)(sysconf(_SC_PHYS_PAGES) / 1024 *
                                         (sysconf(_SC_PAGESIZE) / 1024) * 1024),
                            "options", "phase_s", b->o.duration_s, "window", b->o.window,
                            "inflight", b->o.inflight, "redis_depth", b->o.depth,
                            "floor_messages", b->o.floor_messages, "replica", b->o.replica,
                            "sync_replicas", b->o.sync_replicas, "results", arr);
    json_t *options = json_object_get(doc, "options");
    json_object_set_new(options, "cluster", json_integer(b->o.cluster));
    json_object_set_new(options, "redis_layout", json_string(redis_layout(b)));
    if (json_dump_file(doc, path, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
        fprintf(stderr, "saga-bench: cannot write %s\n", path);
    json_decref(doc);
}

/* --- main ------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: saga-bench [--steps 3,10] [--duration S] [--window N] [--inflight N]\n"
            "                  [--depth N] [--floor-messages N] [--no-rss] [--json FILE]\n"
            "                  [--keep DIR] [--replica] [--sync-replicas N] [--rate R]\n"
            "                  [--cluster N]\n\n"
            "Starts saga-devbroker, redis-server (AOF, fsync every second) and one\n"
            "saga-coordinator from the folder of this program, drives sagas through them with\n"
            "built-in participants, measures against the floor of the same broker and Redis\n"
            "(two Redis floors: our transition script, and the raw writes a transition needs),\n"
            "prints a table and optionally writes JSON.\n\n"
            "  --steps LIST       saga sizes to run (default 3,10)\n"
            "  --duration S       seconds of each measured phase (default 10)\n"
            "  --window N         closed loop: sagas in flight (default 2000)\n"
            "  --inflight N       memory phase: sagas held in flight (default 100000)\n"
            "  --depth N          Redis floors: transitions per pipeline (default 256)\n"
            "  --floor-messages N Kafka floor: messages (default 200000)\n"
            "  --no-rss           skip the memory phase\n"
            "  --json FILE        write the results as JSON\n"
            "  --keep DIR         work (definitions, logs, AOF) in DIR and keep it\n"
            "  --replica          give the bench's Redis a replica (in sync before measuring);\n"
            "                     with --cluster, one replica per primary\n"
            "  --sync-replicas N  the coordinator's redis_sync_replicas (default 0): every\n"
            "                     round waits until N replicas have it (WAIT)\n"
            "  --rate R           the open-loop (\"half load\") phase at R sagas/s instead of half\n"
            "                     the saturation: latencies of two runs at the same load\n"
            "  --cluster N        the bench's Redis is a Redis Cluster of N primaries (3..%d,\n"
            "                     redis-cli --cluster create), the coordinator runs with\n"
            "                     redis_cluster=1; Redis figures are summed over the primaries,\n"
            "                     the Redis floors run on the primary of partition 0's slot\n",
            BENCH_REDIS_MAX_PRIMARIES);
}

int main(int argc, char **argv)
{
    static bench_t bench;
    bench_t *b = &bench;
    b->o = (opts_t){.sizes = {3, 10}, .nsizes = 2, .duration_s = 10, .window = 2000,
                    .inflight = 100000, .depth = 256, .floor_messages = 200000};
    static const struct option longs[] = {
        {"steps", required_argument, NULL, 's'},   {"duration", required_argument, NULL, 'd'},
        {"window", required_argument, NULL, 'w'},  {"inflight", required_argument, NULL, 'i'},
        {"depth", required_argument, NULL, 'p'},   {"floor-messages", required_argument, NULL, 'f'},
        {"no-rss", no_argument, NULL, 'n'},        {"json", required_argument, NULL, 'j'},
        {"keep", required_argument, NULL, 'k'},    {"help", no_argument, NULL, 'h'},
        {"redis-floor-only", no_argument, NULL, 'r'},
        {"replica", no_argument, NULL, 'R'},       {"sync-replicas", required_argument, NULL, 'S'},
        {"rate", required_argument, NULL, 'T'},  {"cluster", required_argument, NULL, 'C'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 's': {
            b->o.nsizes = 0;
            for (char *t = strtok(optarg, ","); t && b->o.nsizes < 4; t = strtok(NULL, ","))
                b->o.sizes[b->o.nsizes++] = atoi(t);
            break;
        }
        case 'd': b->o.duration_s = atof(optarg); break;
        case 'w': b->o.window = atoi(optarg); break;
        case 'i': b->o.inflight = atoi(optarg); break;
        case 'p': b->o.depth = atoi(optarg); break;
        case 'f': b->o.floor_messages = atoi(optarg); break;
        case 'n': b->o.no_rss = true; break;
        case 'j': b->o.json_path = optarg; break;
        case 'k': b->o.keep_dir = optarg; break;
        case 'r': b->o.redis_floor_only = true; break;
        case 'R': b->o.replica = true; break;
        case 'S': b->o.sync_replicas = atoi(optarg); break;
        case 'T': b->o.rate = atof(optarg); break;
        case 'C': b->o.cluster = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    for (int i = 0; i < b->o.nsizes; i++)
        if (b->o.sizes[i] < 1 || b->o.sizes[i] > 64)
            die("--steps: sizes are 1..64");
    if (b->o.sync_replicas < 0 || b->o.sync_replicas > (b->o.replica ? 1 : 0))
        die("--sync-replicas: 0, or 1 with --replica");
    if (b->o.cluster != 0 && (b->o.cluster < 3 || b->o.cluster > BENCH_REDIS_MAX_PRIMARIES))
        die("--cluster: 3..%d primaries", BENCH_REDIS_MAX_PRIMARIES);
    if (b->o.duration_s < 2 || b->o.window < 1 || b->o.inflight < 1 || b->o.depth < 1 ||
        b->o.floor_messages < 1000)
        die("a value is out of range (see --help)");

    log_init("bench");
    signal(SIGPIPE, SIG_IGN);
    ssize_t len = readlink("/proc/self/exe", b->bindir, sizeof b->bindir - 1);
    if (len <= 0)
        die("cannot find my own folder");
    b->bindir[len] = '\0';
    *strrchr(b->bindir, '/') = '\0';
    if (b->o.keep_dir) {
        snprintf(b->tmp, sizeof b->tmp, "%.1000s", b->o.keep_dir);
        mkdir(b->tmp, 0755);
    } else {
        snprintf(b->tmp, sizeof b->tmp, "/tmp/saga-bench.XXXXXX");
        if (!mkdtemp(b->tmp))
            die("cannot make a temp dir");
    }
    snprintf(b->defs, sizeof b->defs, "%.1000s/sagas", b->tmp);
    mkdir(b->defs, 0755);
    for (int i = 0; i < b->o.nsizes; i++)
        write_definition(b, b->o.sizes[i]);
    b->start_us = calloc(BENCH_MAX_SAGAS, sizeof *b->start_us);
    b->last_us = calloc(BENCH_MAX_SAGAS, sizeof *b->last_us);
    b->outcome_seen = calloc(BENCH_MAX_SAGAS, 1);
    if (!b->start_us || !b->last_us || !b->outcome_seen)
        die("out of memory");
    samples_init(&b->e2e);
    samples_init(&b->final_hops);
    for (int i = 0; i < BENCH_PARTICIPANTS; i++)
        samples_init(&b->parts[i].hops);

    result_t rs[4];
    if (b->o.redis_floor_only) {
        for (int i = 0; i < b->o.nsizes; i++)
            redis_floor_alone(b, b->o.sizes[i]);
        return 0;
    }
    for (int i = 0; i < b->o.nsizes; i++)
        run_size(b, b->o.sizes[i], &rs[i]);
    print_table(rs, (size_t)b->o.nsizes, b);
    if (b->o.json_path)
        write_json(rs, (size_t)b->o.nsizes, b, b->o.json_path);
    for (int i = 0; i < b->o.nsizes; i++)
        json_decref(rs[i].redis_breakdown);
    if (!b->o.keep_dir) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "rm -rf '%.1000s'", b->tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "saga-bench: could not remove %s\n", b->tmp);
    }
    return 0;
}
