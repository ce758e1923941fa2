/* saga-devbroker.c - the development/test Kafka broker: librdkafka's mock cluster in its own process.
 *
 * Runs rd_kafka_mock_cluster_new() (librdkafka/rdkafka_mock.h) with N brokers, creates the
 * requested topics, prints "bootstrap=HOST:PORT,..." on stdout, optionally writes the bare
 * bootstrap list to a file (atomically: tmp + rename), and serves until SIGTERM/SIGINT, then
 * destroys the cluster, removes the bootstrap file and exits 0.
 *
 * Measured with Debian 12's librdkafka 2.0.2 (see docs/devbroker.md for the details):
 * - Unknown topics ARE auto-created, with 4 partitions (the mock's default, not
 *   configurable in 2.0.2) and replication factor min(brokers, 3), whenever a client's
 *   Metadata request names the topic. The mock ignores the request's AllowAutoTopicCreation
 *   flag: a producer's first message, `kcat -L -t x`, and a consumer subscribing with the
 *   default allow.auto.create.topics=false all create it. A Metadata request for all topics
 *   creates nothing. Create the topics whose partition count matters with --topic; a typo
 *   in a topic name silently makes a new 4-partition topic.
 * - Ports cannot be chosen: 2.0.2 has no API or property for the mock's listen address;
 *   every mock broker binds 127.0.0.1 on an ephemeral port picked by the kernel. So the
 *   brokers listen on loopback only (checked with `ss -ltnp`), and the address changes on
 *   every start: read it from stdout or from --bootstrap-file.
 *
 * Exit status: 0 after a clean stop (or --help), 2 on a usage error, 1 on a runtime error. */
#include "log.h"
#include "saga_version.h"

#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEVBROKER_MAX_BROKERS 16
#define DEVBROKER_MAX_TOPICS 64
#define DEVBROKER_MAX_PARTITIONS 1024
#define DEVBROKER_MAX_TOPIC_NAME 249 /* Kafka's own limit */
#define DEVBROKER_MAX_REPLICATION 3
#define DEVBROKER_TICK_MS 50
#define DEVBROKER_EXIT_RUNTIME 1
#define DEVBROKER_EXIT_USAGE 2

typedef struct devbroker_topic {
    char name[DEVBROKER_MAX_TOPIC_NAME + 1];
    int partitions;
} devbroker_topic_t;

typedef struct devbroker_opts {
    int brokers;
    devbroker_topic_t topics[DEVBROKER_MAX_TOPICS];
    int topic_cnt;
    const char *bootstrap_file; /* borrowed from argv, or NULL */
} devbroker_opts_t;

static volatile sig_atomic_t devbroker_stop_requested = 0;

static void devbroker_on_signal(int sig)
{
    (void)sig;
    devbroker_stop_requested = 1;
}

static void devbroker_usage_print(FILE *out)
{
    fprintf(out,
            "Usage: saga-devbroker [--brokers N] [--topic NAME:PARTITIONS]... [--topics A:P,B:P]\n"
            "                      [--bootstrap-file PATH] [--help]\n"
            "\n"
            "Runs librdkafka's mock Kafka cluster on 127.0.0.1 (ephemeral ports) until SIGTERM/SIGINT.\n"
            "Prints \"bootstrap=HOST:PORT,...\" on stdout once the cluster is up.\n"
            "\n"
            "  --brokers N              number of brokers, 1..%d (default 1)\n"
            "  --topic NAME:PARTITIONS  create a topic (repeatable); partitions 1..%d,\n"
            "                           replication factor min(brokers, %d)\n"
            "  --topics A:P,B:P         several topics at once (same as repeated --topic)\n"
            "  --bootstrap-file PATH    also write the bootstrap list to PATH (atomically);\n"
            "                           removed again on a clean stop\n"
            "  --help                   this text\n"
            "  --version                print the version and exit\n"
            "\n"
            "Unknown topics are auto-created with 4 partitions as soon as a client names them.\n"
            "Logs go to stderr (SAGA_LOG_LEVEL=debug|info|warn|error).\n",
            DEVBROKER_MAX_BROKERS, DEVBROKER_MAX_PARTITIONS, DEVBROKER_MAX_REPLICATION);
}

/* Parses a decimal int in [min, max]; returns 0, or -1 if s is not exactly such a number. */
static int devbroker_int_parse(const char *s, int min, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int devbroker_topic_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > DEVBROKER_MAX_TOPIC_NAME)
        return 0;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

/* Adds one "NAME:PARTITIONS" spec (len bytes of spec). Returns 0, or -1 after printing why. */
static int devbroker_topic_add(devbroker_opts_t *o, const char *spec, size_t len)
{
    char buf[DEVBROKER_MAX_TOPIC_NAME + 32];
    if (len >= sizeof buf) {
        fprintf(stderr, "saga-devbroker: --topic '%.*s...': too long\n", 40, spec);
        return -1;
    }
    memcpy(buf, spec, len);
    buf[len] = '\0';

    char *colon = strrchr(buf, ':');
    if (!colon) {
        fprintf(stderr, "saga-devbroker: --topic '%s': expected NAME:PARTITIONS\n", buf);
        return -1;
    }
    *colon = '\0';
    const char *name = buf, *count = colon + 1;
    if (!devbroker_topic_name_valid(name, strlen(name))) {
        fprintf(stderr,
                "saga-devbroker: --topic '%s:%s': bad topic name (1..%d characters of "
                "[a-zA-Z0-9._-], not '.' or '..')\n",
                name, count, DEVBROKER_MAX_TOPIC_NAME);
        return -1;
    }
    int partitions;
    if (devbroker_int_parse(count, 1, DEVBROKER_MAX_PARTITIONS, &partitions) != 0) {
        fprintf(stderr, "saga-devbroker: --topic '%s:%s': partition count must be an integer in 1..%d\n",
                name, count, DEVBROKER_MAX_PARTITIONS);
        return -1;
    }
    for (int i = 0; i < o->topic_cnt; i++) {
        if (strcmp(o->topics[i].name, name) == 0) {
            fprintf(stderr, "saga-devbroker: --topic '%s' given twice\n", name);
            return -1;
        }
    }
    if (o->topic_cnt >= DEVBROKER_MAX_TOPICS) {
        fprintf(stderr, "saga-devbroker: too many topics (at most %d)\n", DEVBROKER_MAX_TOPICS);
        return -1;
    }
    devbroker_topic_t *t = &o->topics[o->topic_cnt++];
    size_t name_len = strlen(name); /* <= DEVBROKER_MAX_TOPIC_NAME: checked above */
    memcpy(t->name, name, name_len + 1);
    t->partitions = partitions;
    return 0;
}

/* Adds a comma-separated list of topic specs. Returns 0 or -1. */
static int devbroker_topics_add(devbroker_opts_t *o, const char *list)
{
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (devbroker_topic_add(o, p, len) != 0)
            return -1;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

enum { OPT_BROKERS = 1, OPT_TOPIC, OPT_TOPICS, OPT_BOOTSTRAP_FILE, OPT_HELP, OPT_VERSION };

/* Parses argv into o. Returns 0 to run, 1 for --help, 2 for --version, -1 on a usage
 * error (printed). */
static int devbroker_opts_parse(devbroker_opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, OPT_BROKERS},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"topics", required_argument, NULL, OPT_TOPICS},
        {"bootstrap-file", required_argument, NULL, OPT_BOOTSTRAP_FILE},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->brokers = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_BROKERS:
            if (devbroker_int_parse(optarg, 1, DEVBROKER_MAX_BROKERS, &o->brokers) != 0) {
                fprintf(stderr, "saga-devbroker: --brokers '%s': must be an integer in 1..%d\n", optarg,
                        DEVBROKER_MAX_BROKERS);
                return -1;
            }
            break;
        case OPT_TOPIC:
        case OPT_TOPICS:
            if (devbroker_topics_add(o, optarg) != 0)
                return -1;
            break;
        case OPT_BOOTSTRAP_FILE:
            if (optarg[0] == '\0') {
                fprintf(stderr, "saga-devbroker: --bootstrap-file: empty path\n");
                return -1;
            }
            o->bootstrap_file = optarg;
            break;
        case 'h':
        case OPT_HELP:
            return 1;
        case OPT_VERSION:
            return 2;
        case ':':
            fprintf(stderr, "saga-devbroker: %s needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "saga-devbroker: unknown option '%s' (try --help)\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "saga-devbroker: unexpected argument '%s' (try --help)\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Writes "bootstrap\n" to path via path.tmp.PID + rename, so a reader sees all or nothing.
 * Returns 0 or -1 (logged). */
static int devbroker_bootstrap_write(const char *path, const char *bootstrap)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        log_error("bootstrap file path too long: %s", path);
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        log_error("cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    int bad = fprintf(f, "%s\n", bootstrap) < 0;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad) {
        log_error("cannot write %s: %s", tmp, strerror(errno));
        (void)unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        log_error("cannot rename %s to %s: %s", tmp, path, strerror(errno));
        (void)unlink(tmp);
        return -1;
    }
    return 0;
}

static int devbroker_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = devbroker_on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = SIG_IGN; /* a reader closing our stdout must not kill the broker */
    return sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv)
{
    log_init("devbroker");
    devbroker_opts_t opts;
    int rc = devbroker_opts_parse(&opts, argc, argv);
    if (rc == 1) {
        devbroker_usage_print(stdout);
        return 0;
    }
    if (rc == 2) {
        printf("saga-devbroker %s (librdkafka %s)\n", SAGA_VERSION, rd_kafka_version_str());
        return 0;
    }
    if (rc != 0)
        return DEVBROKER_EXIT_USAGE;

    /* librdkafka blocks signals in the threads it starts, so SIGTERM/SIGINT reach this
     * (main) thread; the handler only sets a flag that the loop below checks. */
    if (devbroker_signals_install() != 0) {
        log_error("sigaction: %s", strerror(errno));
        return DEVBROKER_EXIT_RUNTIME;
    }

    int status = DEVBROKER_EXIT_RUNTIME;
    int file_written = 0;
    rd_kafka_mock_cluster_t *mcluster = NULL;
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only hosts the cluster's threads; it never connects anywhere, so its
     * notice "No bootstrap.servers configured" is noise: log warnings and worse only. */
    if (rd_kafka_conf_set(conf, "client.id", "saga-devbroker", errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        log_error("rd_kafka_conf_set: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return DEVBROKER_EXIT_RUNTIME;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        log_error("rd_kafka_new: %s", errstr);
        rd_kafka_conf_destroy(conf); /* rd_kafka_new owns conf only on success */
        return DEVBROKER_EXIT_RUNTIME;
    }

    mcluster = rd_kafka_mock_cluster_new(rk, opts.brokers);
    if (!mcluster) {
        log_error("rd_kafka_mock_cluster_new(%d brokers) failed", opts.brokers);
        goto out;
    }
    int replication = opts.brokers < DEVBROKER_MAX_REPLICATION ? opts.brokers : DEVBROKER_MAX_REPLICATION;
    for (int i = 0; i < opts.topic_cnt; i++) {
        const devbroker_topic_t *t = &opts.topics[i];
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mcluster, t->name, t->partitions, replication);
        if (err) {
            log_error("creating topic %s (%d partitions): %s", t->name, t->partitions, rd_kafka_err2str(err));
            goto out;
        }
        log_info("topic %s: %d partitions, replication factor %d", t->name, t->partitions, replication);
    }

    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mcluster);
    if (opts.bootstrap_file) {
        if (devbroker_bootstrap_write(opts.bootstrap_file, bootstrap) != 0)
            goto out;
        file_written = 1;
    }
    log_info("mock cluster up: %d broker(s), bootstrap %s", opts.brokers, bootstrap);
    if (printf("bootstrap=%s\n", bootstrap) < 0 || fflush(stdout) != 0)
        log_warn("cannot write the bootstrap line to stdout: %s", strerror(errno));

    const struct timespec tick = {.tv_sec = 0, .tv_nsec = DEVBROKER_TICK_MS * 1000000L};
    while (!devbroker_stop_requested)
        (void)nanosleep(&tick, NULL); /* EINTR just ends this tick early */

    log_info("stop requested, shutting down");
    status = 0;

out:
    if (file_written && unlink(opts.bootstrap_file) != 0) {
        log_warn("cannot remove %s: %s", opts.bootstrap_file, strerror(errno));
        status = DEVBROKER_EXIT_RUNTIME;
    }
    if (mcluster)
        rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(rk);
    return status;
}
