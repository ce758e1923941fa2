/* example_service.c - command line, failure injection, ledger effects and the main loop
 * shared by the example services (see example_service.h). */
#include "example_service.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EX_MAX_KAFKA_PROPS 64
#define EX_MAX_RULES 32
#define EX_MAX_FIELD_LEN 128
#define EX_MAX_VALUE_LEN 256
#define EX_SLEEP_SLICE_MS 50
#define EX_MAX_DELAY_MS (24L * 3600 * 1000)
#define EX_EXIT_OK 0
#define EX_EXIT_RUNTIME 1
#define EX_EXIT_USAGE 2
#define EX_FNV_OFFSET 1469598103934665603ULL
#define EX_FNV_PRIME 1099511628211ULL

typedef struct ex_rule {
    char field[EX_MAX_FIELD_LEN];
    char value[EX_MAX_VALUE_LEN];
    long ms;                       /* --delay-on only */
} ex_rule_t;

typedef struct ex_opts {
    const char *bootstrap, *group, *topic, *client_id;
    const char *redis_host, *redis_user, *redis_password, *dedup_prefix;
    const char *redis_sentinels, *redis_master_name, *redis_sentinel_user,
        *redis_sentinel_password;
    int redis_port, redis_db, redis_sync_replicas, redis_cluster, redis_timeout_ms;
    const char *redis_cluster_nodes;
    long retention_s, lease_ms;
    const char *kafka_props[EX_MAX_KAFKA_PROPS + 1];
    int nprops;
    unsigned long long seed;
    double fail_rate, fail_retryable_rate;
    ex_rule_t fail_on[EX_MAX_RULES];
    int nfail_on;
    long delay_ms;
    ex_rule_t delay_on[EX_MAX_RULES];
    int ndelay_on;
    int fail_compensation_times;
} ex_opts_t;

/* The running service, for the handler wrapper and the signal handler. */
typedef struct ex_runtime {
    const example_service_t *svc;
    ex_opts_t *opts;
    saga_participant_t *p;
} ex_runtime_t;

static saga_participant_t *volatile ex_signal_target = NULL;
static volatile sig_atomic_t ex_stop_seen = 0;

enum {
    OPT_BOOTSTRAP = 256, OPT_GROUP, OPT_TOPIC, OPT_CLIENT_ID, OPT_REDIS_HOST, OPT_REDIS_PORT,
    OPT_REDIS_USER, OPT_REDIS_PASSWORD, OPT_REDIS_DB, OPT_REDIS_SENTINELS, OPT_REDIS_MASTER_NAME,
    OPT_REDIS_SENTINEL_USER, OPT_REDIS_SENTINEL_PASSWORD, OPT_REDIS_SYNC_REPLICAS, OPT_REDIS_TIMEOUT, OPT_REDIS_CLUSTER, OPT_REDIS_CLUSTER_NODES, OPT_DEDUP_PREFIX, OPT_RETENTION, OPT_LEASE,
    OPT_LOG_LEVEL, OPT_SEED, OPT_FAIL_RATE, OPT_FAIL_RETRYABLE_RATE, OPT_FAIL_ON, OPT_DELAY_MS,
    OPT_DELAY_ON, OPT_FAIL_COMP_TIMES, OPT_HELP, OPT_VERSION
};

/* One table drives getopt, the environment and --help. */
typedef struct ex_flag {
    const char *name;
    int id;
    const char *env;     /* NULL: flag only */
    const char *arg;     /* NULL: no argument */
    const char *help;
} ex_flag_t;

static const ex_flag_t EX_FLAGS[] = {
    {"bootstrap", OPT_BOOTSTRAP, "SAGA_BOOTSTRAP_SERVERS", "HOSTS", "Kafka bootstrap servers (required)"},
    {"group", OPT_GROUP, "SAGA_GROUP", "ID", "consumer group (default NAME-service)"},
    {"topic", OPT_TOPIC, "SAGA_COMMAND_TOPIC", "TOPIC", "command topic (default NAME.commands)"},
    {"client-id", OPT_CLIENT_ID, "SAGA_CLIENT_ID", "ID", "Kafka client.id (default: the group)"},
    {"redis-host", OPT_REDIS_HOST, "SAGA_REDIS_HOST", "HOST", "Redis host (default 127.0.0.1)"},
    {"redis-port", OPT_REDIS_PORT, "SAGA_REDIS_PORT", "PORT", "Redis port (default 6379)"},
    {"redis-user", OPT_REDIS_USER, "SAGA_REDIS_USER", "USER", "Redis ACL user"},
    {"redis-password", OPT_REDIS_PASSWORD, "SAGA_REDIS_PASSWORD", "PASS", "Redis password"},
    {"redis-db", OPT_REDIS_DB, "SAGA_REDIS_DB", "N", "Redis database (default 0)"},
    {"redis-sentinels", OPT_REDIS_SENTINELS, "SAGA_REDIS_SENTINELS", "HOST:PORT,...", "Redis Sentinels to find the primary through (then --redis-host/--redis-port are not used)"},
    {"redis-master-name", OPT_REDIS_MASTER_NAME, "SAGA_REDIS_MASTER_NAME", "NAME", "the primary's name at the Sentinels"},
    {"redis-sentinel-user", OPT_REDIS_SENTINEL_USER, "SAGA_REDIS_SENTINEL_USER", "USER", "ACL user on the Sentinels"},
    {"redis-sentinel-password", OPT_REDIS_SENTINEL_PASSWORD, "SAGA_REDIS_SENTINEL_PASSWORD", "PASS", "password of the Sentinels"},
    {"redis-cluster", OPT_REDIS_CLUSTER, "SAGA_REDIS_CLUSTER", "0|1", "1 = a Redis Cluster: the de-duplication records (and the ledger, same hash tag) go to the primary of their slot (default 0)"},
    {"redis-cluster-nodes", OPT_REDIS_CLUSTER_NODES, "SAGA_REDIS_CLUSTER_NODES", "HOST:PORT,...", "seed nodes of the Redis Cluster (default: --redis-host:--redis-port)"},
    {"redis-sync-replicas", OPT_REDIS_SYNC_REPLICAS, "SAGA_REDIS_SYNC_REPLICAS", "N", "replicas each de-duplication record must reach (WAIT) before it counts (default 0)"},
    {"redis-timeout-ms", OPT_REDIS_TIMEOUT, "SAGA_REDIS_TIMEOUT_MS", "MS", "how long one Redis command may take before the primary is looked for again (default 10000)"},
    {"dedup-prefix", OPT_DEDUP_PREFIX, "SAGA_DEDUP_PREFIX", "PREFIX", "dedup key prefix (default dedup:{NAME}:)"},
    {"dedup-retention", OPT_RETENTION, "SAGA_DEDUP_RETENTION_S", "SECONDS", "dedup record retention (default 604800)"},
    {"lease-ms", OPT_LEASE, "SAGA_LEASE_MS", "MS", "in-flight lease of a handler run (default 60000)"},
    {"kafka", 'X', NULL, "KEY=VALUE", "librdkafka property, repeatable (consumer./producer. prefix: one client)"},
    {"log-level", OPT_LOG_LEVEL, "SAGA_LOG_LEVEL", "LEVEL", "debug, info, warn or error (default info)"},
    {"seed", OPT_SEED, "SAGA_SEED", "N", "seed of the injected failures (default 1)"},
    {"fail-rate", OPT_FAIL_RATE, "SAGA_FAIL_RATE", "F", "fraction of actions failing, not retryable (0..1)"},
    {"fail-retryable-rate", OPT_FAIL_RETRYABLE_RATE, "SAGA_FAIL_RETRYABLE_RATE", "F", "fraction of action attempts failing retryably (0..1)"},
    {"fail-on", OPT_FAIL_ON, "SAGA_FAIL_ON", "FIELD=VALUE", "actions whose payload FIELD equals VALUE fail, not retryable (repeatable)"},
    {"delay-ms", OPT_DELAY_MS, "SAGA_DELAY_MS", "MS", "sleep MS before every action"},
    {"delay-on", OPT_DELAY_ON, "SAGA_DELAY_ON", "FIELD=VALUE:MS", "sleep MS before actions whose payload FIELD equals VALUE (repeatable)"},
    {"fail-compensation-times", OPT_FAIL_COMP_TIMES, "SAGA_FAIL_COMPENSATION_TIMES", "N", "compensation attempts 1..N fail retryably"},
    {"help", OPT_HELP, NULL, NULL, "this text"},
    {"version", OPT_VERSION, NULL, NULL, "print the version and exit"},
};
#define EX_NFLAGS ((int)(sizeof EX_FLAGS / sizeof EX_FLAGS[0]))

static void ex_usage_print(const example_service_t *svc, FILE *out)
{
    fprintf(out, "Usage: %s-service [FLAGS]\n%s\n\nFlags (environment variable in brackets; flags win):\n",
            svc->name, svc->description);
    for (int i = 0; i < EX_NFLAGS; i++) {
        const ex_flag_t *f = &EX_FLAGS[i];
        char left[64];
        snprintf(left, sizeof left, "%s--%s%s%s", f->id == 'X' ? "-X, " : "", f->name, f->arg ? " " : "",
                 f->arg ? f->arg : "");
        fprintf(out, "  %-36s %s", left, f->help);
        if (f->env)
            fprintf(out, " [%s]", f->env);
        fputc('\n', out);
    }
    fprintf(out, "\nCommands handled:");
    for (int i = 0; i < svc->nhandlers; i++)
        fprintf(out, " %s", svc->handlers[i].command_type);
    fprintf(out, "\nLedger: ledger:{%s}:entries, :balance, :by_saga, :counts (docs/participants.md)\n", svc->name);
}

static int ex_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int ex_parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0.0 && v <= 1.0))
        return -1;
    *out = v;
    return 0;
}

/* FIELD=VALUE, or FIELD=VALUE:MS when with_ms. */
static int ex_parse_rule(const char *s, int with_ms, ex_rule_t *r)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s || (size_t)(eq - s) >= sizeof r->field)
        return -1;
    snprintf(r->field, sizeof r->field, "%.*s", (int)(eq - s), s);
    const char *v = eq + 1;
    size_t vlen = strlen(v);
    if (with_ms) {
        const char *colon = strrchr(v, ':');
        if (!colon || ex_parse_long(colon + 1, 0, EX_MAX_DELAY_MS, &r->ms) != 0)
            return -1;
        vlen = (size_t)(colon - v);
    }
    if (vlen >= sizeof r->value)
        return -1;
    snprintf(r->value, sizeof r->value, "%.*s", (int)vlen, v);
    return 0;
}

/* Applies one option value. Returns 0, or -1 after printing what is wrong. */
static int ex_opt_apply(ex_opts_t *o, int id, const char *name, const char *v)
{
    long n;
    switch (id) {
    case OPT_BOOTSTRAP: o->bootstrap = v; return 0;
    case OPT_GROUP: o->group = v; return 0;
    case OPT_TOPIC: o->topic = v; return 0;
    case OPT_CLIENT_ID: o->client_id = v; return 0;
    case OPT_REDIS_HOST: o->redis_host = v; return 0;
    case OPT_REDIS_USER: o->redis_user = v; return 0;
    case OPT_REDIS_PASSWORD: o->redis_password = v; return 0;
    case OPT_DEDUP_PREFIX: o->dedup_prefix = v; return 0;
    case OPT_REDIS_SENTINELS: o->redis_sentinels = v; return 0;
    case OPT_REDIS_MASTER_NAME: o->redis_master_name = v; return 0;
    case OPT_REDIS_SENTINEL_USER: o->redis_sentinel_user = v; return 0;
    case OPT_REDIS_SENTINEL_PASSWORD: o->redis_sentinel_password = v; return 0;
    case OPT_REDIS_CLUSTER_NODES: o->redis_cluster_nodes = v; return 0;
    case OPT_REDIS_CLUSTER:
        if (ex_parse_long(v, 0, 1, &n) != 0)
            goto bad;
        o->redis_cluster = (int)n;
        return 0;
    case OPT_REDIS_PORT:
        if (ex_parse_long(v, 1, 65535, &n) != 0)
            goto bad;
        o->redis_port = (int)n;
        return 0;
    case OPT_REDIS_SYNC_REPLICAS:
        if (ex_parse_long(v, 0, 16, &n) != 0)
            goto bad;
        o->redis_sync_replicas = (int)n;
        return 0;
    case OPT_REDIS_TIMEOUT:
        if (ex_parse_long(v, 100, 600000, &n) != 0)
            goto bad;
        o->redis_timeout_ms = (int)n;
        return 0;
    case OPT_REDIS_DB:
        if (ex_parse_long(v, 0, 1 << 20, &n) != 0)
            goto bad;
        o->redis_db = (int)n;
        return 0;
    case OPT_RETENTION:
        if (ex_parse_long(v, 1, 10L * 365 * 24 * 3600, &o->retention_s) != 0)
            goto bad;
        return 0;
    case OPT_LEASE:
        if (ex_parse_long(v, 1, EX_MAX_DELAY_MS, &o->lease_ms) != 0)
            goto bad;
        return 0;
    case 'X':
        if (o->nprops == EX_MAX_KAFKA_PROPS || !strchr(v, '='))
            goto bad;
        o->kafka_props[o->nprops++] = v;
        return 0;
    case OPT_LOG_LEVEL:
        if (saga_participant_log_level_set(v) != 0)
            goto bad;
        return 0;
    case OPT_SEED: {
        char *end;
        errno = 0;
        o->seed = strtoull(v, &end, 10);
        if (errno || end == v || *end)
            goto bad;
        return 0;
    }
    case OPT_FAIL_RATE:
        return ex_parse_rate(v, &o->fail_rate) == 0 ? 0 : (fprintf(stderr, "--%s: expected 0..1\n", name), -1);
    case OPT_FAIL_RETRYABLE_RATE:
        return ex_parse_rate(v, &o->fail_retryable_rate) == 0 ? 0 : (fprintf(stderr, "--%s: expected 0..1\n", name), -1);
    case OPT_FAIL_ON:
        if (o->nfail_on == EX_MAX_RULES || ex_parse_rule(v, 0, &o->fail_on[o->nfail_on]) != 0)
            goto bad;
        o->nfail_on++;
        return 0;
    case OPT_DELAY_ON:
        if (o->ndelay_on == EX_MAX_RULES || ex_parse_rule(v, 1, &o->delay_on[o->ndelay_on]) != 0)
            goto bad;
        o->ndelay_on++;
        return 0;
    case OPT_DELAY_MS:
        if (ex_parse_long(v, 0, EX_MAX_DELAY_MS, &o->delay_ms) != 0)
            goto bad;
        return 0;
    case OPT_FAIL_COMP_TIMES:
        if (ex_parse_long(v, 0, 1000000, &n) != 0)
            goto bad;
        o->fail_compensation_times = (int)n;
        return 0;
    default:
        return -1;
    }
bad:
    fprintf(stderr, "--%s: invalid value \"%s\" (see --help)\n", name, v);
    return -1;
}

/* Returns 0 to run, 1 when --help or --version was printed, -1 on a usage error. */
static int ex_opts_parse(ex_opts_t *o, const example_service_t *svc, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->redis_host = SAGA_PARTICIPANT_DEFAULT_REDIS_HOST;
    o->redis_port = SAGA_PARTICIPANT_DEFAULT_REDIS_PORT;
    o->retention_s = SAGA_PARTICIPANT_DEFAULT_RETENTION_S;
    o->lease_ms = SAGA_PARTICIPANT_DEFAULT_LEASE_MS;
    o->seed = 1;
    for (int i = 0; i < EX_NFLAGS; i++) {
        const char *v = EX_FLAGS[i].env ? getenv(EX_FLAGS[i].env) : NULL;
        if (v && *v && ex_opt_apply(o, EX_FLAGS[i].id, EX_FLAGS[i].env, v) != 0)
            return -1;
    }
    struct option longopts[EX_NFLAGS + 1];
    for (int i = 0; i < EX_NFLAGS; i++)
        longopts[i] = (struct option){EX_FLAGS[i].name, EX_FLAGS[i].arg ? required_argument : no_argument, NULL,
                                      EX_FLAGS[i].id};
    longopts[EX_NFLAGS] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    int c, idx = -1;
    while ((c = getopt_long(argc, argv, "X:h", longopts, &idx)) != -1) {
        if (c == OPT_HELP || c == 'h') {
            ex_usage_print(svc, stdout);
            return 1;
        }
        if (c == OPT_VERSION) {
            /* the name it runs under: NAME-service built, saga-example-NAME installed */
            printf("%s %s (libsagaparticipant %s)\n", program_invocation_short_name,
                   SAGA_PARTICIPANT_VERSION_STRING, saga_participant_version());
            return 1;
        }
        if (c == '?' || c == ':')
            return -1;
        const char *name = c == 'X' ? "kafka" : longopts[idx].name;
        if (ex_opt_apply(o, c, name, optarg) != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }
    if (!o->bootstrap) {
        fprintf(stderr, "--bootstrap (or SAGA_BOOTSTRAP_SERVERS) is required\n");
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- failure injection */

static uint64_t ex_hash(unsigned long long seed, const char *a, const char *b)
{
    uint64_t h = EX_FNV_OFFSET ^ (seed * EX_FNV_PRIME);
    for (const char *s = a; s && *s; s++)
        h = (h ^ (unsigned char)*s) * EX_FNV_PRIME;
    h = (h ^ 0xff) * EX_FNV_PRIME;
    for (const char *s = b; s && *s; s++)
        h = (h ^ (unsigned char)*s) * EX_FNV_PRIME;
    h ^= h >> 33; /* finalise (murmur3 fmix64) so nearby keys spread */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* A deterministic draw in [0, 1) for (seed, salt, key). */
static double ex_draw(unsigned long long seed, const char *salt, const char *key)
{
    return (double)(ex_hash(seed, salt, key) >> 11) * (1.0 / 9007199254740992.0);
}

/* Whether payload field equals value, comparing strings as they are and other scalars
 * in their JSON text. */
static int ex_field_matches(json_t *payload, const ex_rule_t *r)
{
    json_t *v = json_object_get(payload, r->field);
    if (!v)
        return 0;
    if (json_is_string(v))
        return strcmp(json_string_value(v), r->value) == 0;
    if (json_is_object(v) || json_is_array(v))
        return 0;
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    int eq = s && strcmp(s, r->value) == 0;
    free(s);
    return eq;
}

static void ex_sleep_ms(long ms)
{
    while (ms > 0 && !ex_stop_seen) {
        long slice = ms < EX_SLEEP_SLICE_MS ? ms : EX_SLEEP_SLICE_MS;
        struct timespec ts = {slice / 1000, (slice % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

/* The handler every command type is registered with: injects what the flags ask for,
 * then calls the service's handler. */
static void ex_dispatch(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    const ex_runtime_t *rt = opaque;
    const ex_opts_t *o = rt->opts;
    const example_handler_t *h = NULL;
    for (int i = 0; i < rt->svc->nhandlers; i++)
        if (strcmp(rt->svc->handlers[i].command_type, saga_command_type(cmd)) == 0)
            h = &rt->svc->handlers[i];
    if (!h) {
        saga_result_fail(res, "no handler");
        return;
    }
    json_t *payload = saga_command_payload(cmd);
    char why[EX_MAX_FIELD_LEN + EX_MAX_VALUE_LEN + 64];
    if (saga_command_kind(cmd) == SAGA_KIND_ACTION) {
        long delay = o->delay_ms;
        for (int i = 0; i < o->ndelay_on; i++)
            if (ex_field_matches(payload, &o->delay_on[i]))
                delay = o->delay_on[i].ms;
        if (delay > 0) {
            saga_participant_log(SAGA_LOG_INFO, saga_command_saga_id(cmd), "injected delay of %ld ms", delay);
            ex_sleep_ms(delay);
        }
        for (int i = 0; i < o->nfail_on; i++) {
            if (ex_field_matches(payload, &o->fail_on[i])) {
                snprintf(why, sizeof why, "injected failure: %s=%s", o->fail_on[i].field, o->fail_on[i].value);
                saga_result_fail(res, why);
                return;
            }
        }
        if (o->fail_rate > 0 && ex_draw(o->seed, "fail", saga_command_idempotency_key(cmd)) < o->fail_rate) {
            saga_result_fail(res, "injected failure (fail-rate)");
            return;
        }
        if (o->fail_retryable_rate > 0 &&
            ex_draw(o->seed, "retry", saga_command_id(cmd)) < o->fail_retryable_rate) {
            saga_result_retry(res, "injected retryable failure (fail-retryable-rate)");
            return;
        }
    } else if (saga_command_attempt(cmd) <= o->fail_compensation_times) {
        snprintf(why, sizeof why, "injected compensation failure (attempt %d of the first %d)",
                 saga_command_attempt(cmd), o->fail_compensation_times);
        saga_result_retry(res, why);
        return;
    }
    h->fn(cmd, res, (void *)rt->svc);
}

/* ---------------------------------------------------------------------------- ledger */

int example_ledger_add(saga_result_t *res, const example_service_t *svc, const saga_command_t *cmd,
                       const char *effect, const char *field, long long delta, json_t *details)
{
    char entries[160], balance[160], by_saga[160], counts[160], d[32];
    snprintf(entries, sizeof entries, "ledger:{%s}:entries", svc->name);
    snprintf(balance, sizeof balance, "ledger:{%s}:balance", svc->name);
    snprintf(by_saga, sizeof by_saga, "ledger:{%s}:by_saga", svc->name);
    snprintf(counts, sizeof counts, "ledger:{%s}:counts", svc->name);
    snprintf(d, sizeof d, "%lld", delta);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *entry = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "saga_id", saga_command_saga_id(cmd),
                              "step", saga_command_step(cmd), "kind",
                              saga_command_kind(cmd) == SAGA_KIND_ACTION ? "action" : "compensation",
                              "command_id", saga_command_id(cmd), "effect", effect, "field", field, "delta",
                              (json_int_t)delta, "ts", (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    if (!entry)
        return -1;
    if (details)
        json_object_update_missing(entry, details);
    char *text = json_dumps(entry, JSON_COMPACT);
    json_decref(entry);
    if (!text)
        return -1;
    int rc = saga_result_effectl(res, "RPUSH", entries, text, NULL);
    free(text);
    if (rc == 0)
        rc = saga_result_effectl(res, "HINCRBY", balance, field, d, NULL);
    if (rc == 0)
        rc = saga_result_effectl(res, "HINCRBY", by_saga, saga_command_saga_id(cmd), d, NULL);
    if (rc == 0)
        rc = saga_result_effectl(res, "HINCRBY", counts, effect, "1", NULL);
    return rc;
}

void example_id_make(char *buf, size_t len, const char *prefix, const saga_command_t *cmd)
{
    snprintf(buf, len, "%s%016" PRIx64, prefix, ex_hash(0, "id", saga_command_idempotency_key(cmd)));
}

int example_payload_int(json_t *payload, const char *name, long long *out)
{
    json_t *v = json_object_get(payload, name);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        char *end;
        errno = 0;
        long long n = strtoll(json_string_value(v), &end, 10);
        if (!errno && end != json_string_value(v) && !*end) {
            *out = n;
            return 0;
        }
    }
    return -1;
}

int example_payload_number(json_t *payload, const char *name, double *out)
{
    json_t *v = json_object_get(payload, name);
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return isfinite(*out) ? 0 : -1;
    }
    if (json_is_string(v)) {
        char *end;
        errno = 0;
        double n = strtod(json_string_value(v), &end);
        if (!errno && end != json_string_value(v) && !*end && isfinite(n)) {
            *out = n;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------------------ main */

static void ex_on_signal(int sig)
{
    (void)sig;
    ex_stop_seen = 1;
    saga_participant_stop(ex_signal_target);
}

int example_service_main(const example_service_t *svc, int argc, char **argv)
{
    char component[64], group[128], topic[128], prefix[128];
    snprintf(component, sizeof component, "%s-service", svc->name);
    saga_participant_log_init(component);
    ex_opts_t *o = calloc(1, sizeof *o);
    if (!o)
        return EX_EXIT_RUNTIME;
    int prc = ex_opts_parse(o, svc, argc, argv);
    if (prc != 0) {
        free(o);
        return prc > 0 ? EX_EXIT_OK : EX_EXIT_USAGE;
    }
    snprintf(group, sizeof group, "%s-service", svc->name);
    snprintf(topic, sizeof topic, "%s.commands", svc->name);
    snprintf(prefix, sizeof prefix, "dedup:{%s}:", svc->name);

    saga_participant_config_t cfg;
    saga_participant_config_init(&cfg);
    cfg.bootstrap_servers = o->bootstrap;
    cfg.group_id = o->group ? o->group : group;
    cfg.command_topic = o->topic ? o->topic : topic;
    cfg.client_id = o->client_id;
    cfg.redis_host = o->redis_host;
    cfg.redis_port = o->redis_port;
    cfg.redis_user = o->redis_user;
    cfg.redis_password = o->redis_password;
    cfg.redis_sentinels = o->redis_sentinels;
    cfg.redis_master_name = o->redis_master_name;
    cfg.redis_sentinel_user = o->redis_sentinel_user;
    cfg.redis_sentinel_password = o->redis_sentinel_password;
    cfg.redis_sync_replicas = o->redis_sync_replicas;
    if (o->redis_timeout_ms > 0)
        cfg.redis_timeout_ms = o->redis_timeout_ms;
    cfg.redis_cluster = o->redis_cluster;
    cfg.redis_cluster_nodes = o->redis_cluster_nodes;
    cfg.redis_db = o->redis_db;
    cfg.dedup_prefix = o->dedup_prefix ? o->dedup_prefix : prefix;
    cfg.dedup_retention_s = o->retention_s;
    cfg.inflight_lease_ms = o->lease_ms;
    cfg.kafka_properties = o->kafka_props;

    char err[512];
    ex_runtime_t rt = {svc, o, NULL};
    rt.p = saga_participant_new(&cfg, err, sizeof err);
    if (!rt.p) {
        saga_participant_log(SAGA_LOG_ERROR, NULL, "cannot start: %s", err);
        free(o);
        return EX_EXIT_RUNTIME;
    }
    for (int i = 0; i < svc->nhandlers; i++) {
        if (saga_participant_on(rt.p, svc->handlers[i].command_type, ex_dispatch, &rt) != 0) {
            saga_participant_log(SAGA_LOG_ERROR, NULL, "cannot register %s", svc->handlers[i].command_type);
            saga_participant_free(rt.p);
            free(o);
            return EX_EXIT_RUNTIME;
        }
    }
    ex_signal_target = rt.p;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ex_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    saga_participant_log(SAGA_LOG_INFO, NULL, "%s-service: topic %s, group %s, redis %s:%d, fail-rate %.3f, retryable %.3f, "
           "fail-on %d, delay %ld ms, delay-on %d, compensation failures %d, seed %llu",
           svc->name, cfg.command_topic, cfg.group_id, cfg.redis_host, cfg.redis_port, o->fail_rate,
           o->fail_retryable_rate, o->nfail_on, o->delay_ms, o->ndelay_on, o->fail_compensation_times,
           o->seed);
    int rc = saga_participant_run(rt.p);
    ex_signal_target = NULL;
    saga_participant_free(rt.p);
    free(o);
    return rc == 0 ? EX_EXIT_OK : EX_EXIT_RUNTIME;
}
