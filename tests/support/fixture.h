/* fixture.h - test fixtures: child processes, redis-server and saga-devbroker on free loopback ports, Kafka helpers.
 *
 * Every integration suite starts its own redis-server and broker through these functions
 * in a Criterion .init and stops them in .fini (which Criterion runs even when an assertion
 * fails). Children started here get PR_SET_PDEATHSIG=SIGKILL, so a test process that
 * crashes never leaks a server. Conventions:
 * - start/new functions return 0 (or a non-NULL object) on success and -1 (or NULL) on
 *   failure, after printing one line on stderr naming what failed ("fixture: ...");
 * - stop/free functions accept NULL or a zeroed struct and are safe to call twice;
 * - nothing here sleeps a fixed time: every wait polls a condition with a deadline;
 * - programs of the project are found in $SAGA_BIN_DIR (set by ctest), data files under
 *   $SAGA_SOURCE_DIR; temp dirs live under /tmp and are removed on stop, unless
 *   SAGA_TEST_KEEP=1 (then their paths are printed, for post-mortems).
 *
 * A child process dies with the *thread* that spawned it (that is how PR_SET_PDEATHSIG
 * works): spawn from the test's main thread, not from a short-lived helper thread. */
#ifndef SAGA_TEST_FIXTURE_H
#define SAGA_TEST_FIXTURE_H

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FIXTURE_START_TIMEOUT_MS 10000 /* redis/broker readiness deadline */
#define FIXTURE_STOP_TIMEOUT_MS 5000   /* SIGTERM grace before SIGKILL */
#define FIXTURE_POLL_MS 5              /* fixture_wait_until's polling period */
#define FIXTURE_SESSION_TIMEOUT_MS 6000 /* consumer groups; the mock needs >= 4000 */

/* ---- time and waiting ---------------------------------------------------------------- */

/* Milliseconds of CLOCK_MONOTONIC: for deadlines, not wall-clock time. */
int64_t fixture_now_ms(void);

/* Polls cond(opaque) every FIXTURE_POLL_MS until it returns true or timeout_ms passed.
 * Returns true as soon as cond did (cond is checked once more at the deadline). */
bool fixture_wait_until(bool (*cond)(void *opaque), void *opaque, int timeout_ms);

/* ---- processes ----------------------------------------------------------------------- */

/* A free TCP port on 127.0.0.1 (bound to port 0, read back, closed), or -1. Another
 * process can take it before you bind it; the start functions below retry on that. */
int fixture_free_port(void);

/* Path of the project program `name` in $SAGA_BIN_DIR, written to out.
 * Returns 0, or -1 if SAGA_BIN_DIR is unset, the path does not fit, or is not executable. */
int fixture_bin_path(const char *name, char *out, size_t out_size);

/* Starts argv[0] (searched in PATH unless it contains a '/') with argv, in its own process
 * group, with stdin from /dev/null, PR_SET_PDEATHSIG=SIGKILL, and the environment of the
 * test plus env (NULL-terminated "K=V" strings overriding same-named variables; env may be
 * NULL). stdout and stderr are appended to log_path, or inherited when log_path is NULL.
 * Returns the child's pid, or -1 if it could not be started (exec failure included: it is
 * reported back through a close-on-exec pipe, and the child is reaped). The caller owns
 * the pid: reap it with fixture_stop_process or fixture_wait_exit. */
pid_t fixture_spawn(const char *const argv[], const char *log_path, const char *const env[]);

/* Waits up to timeout_ms for child pid to exit and reaps it; *status (may be NULL) gets the
 * waitpid status. Returns 0 when reaped, -1 on timeout (errno ETIMEDOUT; still running) or
 * if pid is not our child. */
int fixture_wait_exit(pid_t pid, int timeout_ms, int *status);

/* Sends SIGTERM to pid, waits up to timeout_ms, then SIGKILLs its process group, and reaps
 * it. pid <= 0 is a no-op. Returns 0 when the process is gone and reaped (stderr says so if
 * it needed SIGKILL), -1 if it could not be reaped (e.g. not our child). */
int fixture_stop_process(pid_t pid, int timeout_ms);

/* ---- redis-server -------------------------------------------------------------------- */

typedef struct redis_fixture {
    int port;            /* 127.0.0.1:port */
    pid_t pid;           /* 0 when not running */
    bool sentinel;       /* run as a Sentinel (redis-server CONF --sentinel) */
    char dir[PATH_MAX];  /* temp dir: redis.conf, redis.log, AOF/RDB files; "" when none */
} redis_fixture_t;

/* Starts `redis-server` from PATH on 127.0.0.1 and a free port, in a new temp dir, with
 * save "", appendonly no, daemonize no and its log in dir/redis.log; extra_config (NULL or
 * config lines, e.g. "appendonly yes\n") is appended and so overrides those. Waits until
 * PING answers PONG (FIXTURE_START_TIMEOUT_MS). *r is overwritten. Returns 0 or -1 (then
 * nothing is left running and no dir remains). */
int fixture_redis_start(redis_fixture_t *r, const char *extra_config);

/* Starts a Redis Sentinel (`redis-server CONF --sentinel`, no package beyond
 * redis-server) as fixture_redis_start starts a server: on a free port, with config (the
 * `sentinel monitor ...` lines) appended. Every fixture_redis_* function below applies
 * to it. Returns 0 or -1 (nothing left running). */
int fixture_sentinel_start(redis_fixture_t *r, const char *config);

/* Stops redis with SIGTERM (so it can write its AOF), then SIGKILL after
 * FIXTURE_STOP_TIMEOUT_MS; removes its dir and zeroes *r. NULL, zeroed or stopped: no-op. */
void fixture_redis_stop(redis_fixture_t *r);

/* Stops redis with SIGTERM (AOF and dir are kept) and starts it again with the same
 * config, port and dir; waits for PONG. Returns 0 or -1. */
int fixture_redis_restart(redis_fixture_t *r);

/* Kills redis with SIGKILL (a crash: nothing written at exit; dir, port and config are
 * kept) and reaps it. Returns 0 or -1. */
int fixture_redis_kill(redis_fixture_t *r);
/* Starts a killed redis again with the same config, port and dir; waits for PONG.
 * Returns 0 or -1. */
int fixture_redis_start_again(redis_fixture_t *r);
/* Starts a killed redis again as a replica of 127.0.0.1:primary_port: a `replicaof` line
 * is appended to its config first (the last such line wins), so that it does not come
 * back as an empty primary. Returns 0 or -1. */
int fixture_redis_start_again_replica(redis_fixture_t *r, int primary_port);
/* The value of field ("master_link_status") in INFO-style text (a line "field:value")
 * into out (len bytes); false when absent. */
bool fixture_info_field(const char *text, const char *field, char *out, size_t len);
/* The value of field in r's `INFO section` into out (len bytes; "" when absent or when
 * r does not answer). Returns out. */
const char *fixture_redis_info(const redis_fixture_t *r, const char *section, const char *field,
                               char *out, size_t len);
/* A new blocking hiredis connection to r (2 s connect timeout), or NULL (printed why).
 * The caller frees it with redisFree. */
redisContext *fixture_redis_connect(const redis_fixture_t *r);

/* ---- saga-devbroker (librdkafka's mock cluster) -------------------------------------- */

typedef struct broker_fixture {
    pid_t pid;            /* 0 when not running */
    char bootstrap[256];  /* "127.0.0.1:PORT[,...]" for bootstrap.servers */
    char dir[PATH_MAX];   /* temp dir: bootstrap file, devbroker.log; "" when none */
} broker_fixture_t;

/* Starts $SAGA_BIN_DIR/saga-devbroker with `brokers` brokers and the topics in `topics`
 * ("saga.input:4,inventory:1", or NULL for none), waits for its bootstrap file, then
 * fetches metadata until every requested topic is listed with its partitions
 * (FIXTURE_START_TIMEOUT_MS). Its stderr goes to dir/devbroker.log. Remember that the mock
 * auto-creates any topic a client names, with 4 partitions: create the ones whose partition
 * count matters here. *b is overwritten. Returns 0 or -1 (nothing left running). */
int fixture_broker_start(broker_fixture_t *b, int brokers, const char *topics);

/* SIGTERM (SIGKILL after FIXTURE_STOP_TIMEOUT_MS), removes dir, zeroes *b. Safe twice. */
void fixture_broker_stop(broker_fixture_t *b);

/* ---- Kafka clients for tests ---------------------------------------------------------- */

/* An idempotent producer (acks=all, partitioner murmur2_random, the Java client's
 * key hashing) for bootstrap, or NULL. Free with rd_kafka_destroy (after rd_kafka_flush if
 * you produced asynchronously yourself). */
rd_kafka_t *fixture_producer_new(const char *bootstrap);

/* Produces one message and waits for its delivery report. partition -1 picks it from the
 * key; key and value may be NULL (null key / null value). Returns 0 when delivered, -1
 * otherwise (printed why). */
/* Where partition of topic begins and ends now (asked of the broker). Returns 0, or -1. */
int fixture_watermarks(rd_kafka_t *rk, const char *topic, int partition, int64_t *low,
                       int64_t *high);
/* True when a line of the file at path (lines up to 4 KiB) contains needle. */
bool fixture_file_contains(const char *path, const char *needle);
int fixture_produce(rd_kafka_t *p, const char *topic, int partition, const char *key, const char *value);

typedef struct fixture_consumer fixture_consumer_t;

/* A consumer of one topic. group NULL: no group; every partition of topic is assigned from
 * the beginning (the topic must exist or is auto-created with 4 partitions; no offsets are
 * committed). group non-NULL: subscribes as a member of group (auto.offset.reset=earliest,
 * auto commit, session.timeout.ms FIXTURE_SESSION_TIMEOUT_MS); remember that the mock makes
 * the first member of an empty group wait ~3 s before its first assignment. Returns NULL on
 * failure. */
fixture_consumer_t *fixture_consumer_new(const char *bootstrap, const char *group, const char *topic);

/* Waits up to timeout_ms for the next message. On a message, *key and *value (either
 * pointer may be NULL if not wanted) get malloc'd NUL-terminated copies owned by the
 * caller, or NULL for a null key/value. Transient consumer errors are printed and skipped.
 * Returns 1 when a message was received, 0 on timeout, -1 on bad arguments or a fatal
 * client error. */
int fixture_consume(fixture_consumer_t *c, int timeout_ms, char **key, char **value);

/* The underlying rd_kafka_t (borrowed), for what the helpers above do not cover. */
rd_kafka_t *fixture_consumer_handle(fixture_consumer_t *c);

/* Closes (leaving the group, if any) and frees c. NULL is a no-op. */
void fixture_consumer_free(fixture_consumer_t *c);

/* ---- collector: a background consumer that keeps every message of a topic ------------- */

/* One collected message; fields are owned by the collector. */
typedef struct fixture_message {
    char *key;          /* NULL for a null key */
    char *value;        /* NULL for a null value */
    int32_t partition;
    int64_t offset;
} fixture_message_t;

typedef struct fixture_collector fixture_collector_t;

/* Starts a thread that consumes topic (group semantics as in fixture_consumer_new) and
 * appends every message, in arrival order, to a list. Returns NULL on failure. Typical use:
 *     fixture_collector_t *col = fixture_collector_new(b.bootstrap, NULL, "outcomes");
 *     ... make the system under test produce ...
 *     cr_assert(fixture_collector_wait(col, 10, 5000), "got %zu", fixture_collector_count(col));
 *     const fixture_message_t *m = fixture_collector_at(col, 0);
 *     fixture_collector_free(col); */
fixture_collector_t *fixture_collector_new(const char *bootstrap, const char *group, const char *topic);

/* Number of messages collected so far. */
size_t fixture_collector_count(fixture_collector_t *c);

/* Waits up to timeout_ms until at least n messages were collected; true if so. */
bool fixture_collector_wait(fixture_collector_t *c, size_t n, int timeout_ms);

/* Number of partitions currently assigned to the collector (group mode: changes with
 * rebalances; no-group mode: all partitions from the start). */
int fixture_collector_assigned(fixture_collector_t *c);

/* Waits up to timeout_ms until exactly `partitions` partitions are assigned; true if so. */
bool fixture_collector_wait_assigned(fixture_collector_t *c, int partitions, int timeout_ms);

/* Message i (0-based, arrival order), or NULL if i >= count. The pointer stays valid until
 * fixture_collector_free, even while collection goes on. */
const fixture_message_t *fixture_collector_at(fixture_collector_t *c, size_t i);

/* Number of collected messages whose key equals key (NULL counts null keys). */
size_t fixture_collector_count_key(fixture_collector_t *c, const char *key);

/* Stops the thread, closes the consumer and frees every message. NULL is a no-op. */
void fixture_collector_free(fixture_collector_t *c);

#endif
