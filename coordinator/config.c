/* config.c - defaults, config file, environment and flags for the coordinator. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { T_STR, T_INT, T_I64 } setting_type_t;

typedef struct setting {
    const char *name;
    setting_type_t type;
    size_t offset;
    size_t size;      /* for strings */
    int64_t min, max; /* for numbers */
    const char *def;
    const char *help;
} setting_t;

#define STR(field, def, help) \
    {#field, T_STR, offsetof(config_t, field), sizeof(((config_t *)0)->field), 0, 0, def, help}
#define INT(field, lo, hi, def, help) \
    {#field, T_INT, offsetof(config_t, field), 0, lo, hi, def, help}
#define I64(field, lo, hi, def, help) \
    {#field, T_I64, offsetof(config_t, field), 0, lo, hi, def, help}

static const setting_t SETTINGS[] = {
    STR(bootstrap_servers, "127.0.0.1:9092", "Kafka bootstrap servers"),
    STR(group_id, "saga-coordinator", "consumer group shared by all coordinator instances"),
    STR(instance_id, "", "this instance's name; \"\" = hostname-pid"),
    STR(input_topic, "saga.input", "topic of starts, replies and operator commands"),
    STR(outcomes_topic, "saga.outcomes", "topic the outcome of every saga is published on"),
    STR(deadletter_topic, "saga.deadletter", "topic invalid input messages are copied to"),
    STR(definitions, "sagas", "folder (or file) of saga definitions"),
    STR(redis_host, "127.0.0.1", "Redis host"),
    INT(redis_port, 1, 65535, "6379", "Redis port"),
    STR(redis_user, "", "Redis ACL user (with redis_password)"),
    STR(redis_password, "", "Redis password"),
    INT(redis_db, 0, 1024, "0", "Redis database number"),
    STR(redis_prefix, "saga", "prefix of every Redis key"),
    INT(redis_timeout_ms, 100, 600000, "5000", "Redis connect and command timeout"),
    INT(redis_wait_replicas, -1, 16, "-1", "replicas an epoch bump waits for (WAIT); -1 = 1 when Redis has replicas"),
    STR(redis_sentinels, "", "Redis Sentinels, HOST:PORT[,HOST:PORT...]: find the primary through them (then redis_host and redis_port are not used)"),
    STR(redis_master_name, "", "the name the Sentinels monitor the primary under (required with redis_sentinels)"),
    STR(redis_sentinel_user, "", "ACL user on the Sentinels (with redis_sentinel_password)"),
    STR(redis_sentinel_password, "", "password of the Sentinels (\"\" = no AUTH on them)"),
    INT(redis_sync_replicas, 0, 16, "0", "replicas that must have a round (WAIT) before its commands are sent and its input counts as done; 0 = none"),
    INT(redis_cluster, 0, 1, "0", "1 = Redis Cluster: route every key to the primary serving its slot (docs/redis.md, \"Redis Cluster\")"),
    STR(redis_cluster_nodes, "", "seed nodes of the Redis Cluster, HOST:PORT[,HOST:PORT...]; \"\" = redis_host:redis_port"),
    INT(dev_mode, 0, 1, "0", "1 = accept a Redis without persistence (development and tests only)"),
    I64(retention_ms, 0, INT64_MAX, "604800000", "how long finished sagas stay in Redis (0 = forever)"),
    INT(history_cap, 10, 1000000, "1000", "history entries kept per saga"),
    INT(batch_size, 1, 100000, "1000", "input messages taken per loop turn"),
    I64(max_message_bytes, 1024, 100 * 1024 * 1024, "1048576", "largest input message accepted"),
    INT(poll_interval_ms, 1, 10000, "100", "longest wait for input when no timer is due"),
    I64(session_timeout_ms, 1000, 3600000, "6000", "Kafka consumer session timeout (failover time)"),
    STR(membership, "redis", "who owns which input partition: redis (leases, failover in about lease_ms) or kafka (the consumer group protocol)"),
    I64(lease_ms, 100, 600000, "1000", "membership=redis: a partition's lease; an owner silent this long loses it"),
    I64(lease_renew_ms, 0, 600000, "0", "membership=redis: heartbeat and lease renewal interval; 0 = lease_ms / 10"),
    STR(group_instance_id, "", "static group membership: a stable id per instance (restart keeps its partitions)"),
    STR(log_level, "info", "debug, info, warn or error"),
    STR(http_listen, "127.0.0.1:8080", "HOST:PORT of metrics, health checks and dashboard (\"\" = off)"),
    STR(http_token, "", "bearer token required by everything on http_listen but /healthz and /readyz; needed on a non-loopback address"),
    STR(http_token_file, "", "file holding http_token (trailing newline stripped)"),
    INT(http_open, 0, 1, "0", "1 = serve a non-loopback http_listen without a token (anyone who reaches it reads everything)"),
};
#define SETTING_COUNT (sizeof SETTINGS / sizeof *SETTINGS)

static int set_value(config_t *c, const setting_t *s, const char *value, char *err, size_t n)
{
    char *base = (char *)c + s->offset;
    if (s->type == T_STR) {
        if (strlen(value) >= s->size) {
            snprintf(err, n, "%s: longer than %zu characters", s->name, s->size - 1);
            return -1;
        }
        memcpy(base, value, strlen(value) + 1);
        return 0;
    }
    errno = 0;
    char *end;
    long long v = strtoll(value, &end, 10);
    if (errno || *value == '\0' || *end != '\0' || v < s->min || v > s->max) {
        snprintf(err, n, "%s: expected an integer from %lld to %lld, got \"%s\"", s->name,
                 (long long)s->min, (long long)s->max, value);
        return -1;
    }
    if (s->type == T_INT)
        *(int *)base = (int)v;
    else
        *(int64_t *)base = v;
    return 0;
}

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    char err[256];
    for (size_t i = 0; i < SETTING_COUNT; i++)
        (void)set_value(c, &SETTINGS[i], SETTINGS[i].def, err, sizeof err);
    char host[128] = "host";
    (void)gethostname(host, sizeof host - 1);
    snprintf(c->instance_id, sizeof c->instance_id, "%s-%d", host, (int)getpid());
}

static int set_prop(config_t *c, int scope, const char *name, const char *value, char *err,
                    size_t n)
{
    if (!*name || strlen(name) >= sizeof c->props[0].name ||
        strlen(value) >= sizeof c->props[0].value) {
        snprintf(err, n, "kafka property \"%s\": name or value too long or empty", name);
        return -1;
    }
    for (size_t i = 0; i < c->prop_count; i++) {
        if (c->props[i].scope == scope && strcmp(c->props[i].name, name) == 0) {
            snprintf(c->props[i].value, sizeof c->props[i].value, "%s", value);
            return 0;
        }
    }
    if (c->prop_count == CONFIG_MAX_PASSTHROUGH) {
        snprintf(err, n, "more than %d kafka properties", CONFIG_MAX_PASSTHROUGH);
        return -1;
    }
    config_prop_t *p = &c->props[c->prop_count++];
    p->scope = scope;
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->value, sizeof p->value, "%s", value);
    return 0;
}

int config_set(config_t *c, const char *name, const char *value, char *err, size_t n)
{
    static const struct { const char *prefix; int scope; } PREFIXES[] = {
        {"kafka.", 0}, {"consumer.", 1}, {"producer.", 2}};
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(PREFIXES[i].prefix);
        if (strncmp(name, PREFIXES[i].prefix, len) == 0)
            return set_prop(c, PREFIXES[i].scope, name + len, value, err, n);
    }
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (strcmp(SETTINGS[i].name, name) == 0)
            return set_value(c, &SETTINGS[i], value, err, n);
    snprintf(err, n, "unknown setting \"%s\" (see --help)", name);
    return -1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int config_load_file(config_t *c, const char *path, char *err, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[2048], why[512];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, n, "%s:%d: expected \"name = value\"", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        if (config_set(c, trim(s), trim(eq + 1), why, sizeof why) < 0) {
            snprintf(err, n, "%s:%d: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* SAGA_REDIS_PORT -> redis_port; SAGA_KAFKA_SECURITY_PROTOCOL -> kafka.security.protocol */
int config_load_env(config_t *c, char *err, size_t n)
{
    extern char **environ;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "SAGA_", 5) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char name[300];
        size_t len = (size_t)(eq - *e) - 5;
        if (len >= sizeof name)
            continue;
        for (size_t i = 0; i < len; i++)
            name[i] = (char)tolower((unsigned char)(*e)[5 + i]);
        name[len] = '\0';
        bool passthrough = false;
        static const char *const PASS[] = {"kafka_", "consumer_", "producer_"};
        for (size_t i = 0; i < 3; i++) {
            size_t pl = strlen(PASS[i]);
            if (strncmp(name, PASS[i], pl) == 0) {
                name[pl - 1] = '.';
                for (char *p = name + pl; *p; p++)
                    if (*p == '_')
                        *p = '.';
                passthrough = true;
            }
        }
        bool known = passthrough;
        for (size_t i = 0; i < SETTING_COUNT && !known; i++)
            known = strcmp(SETTINGS[i].name, name) == 0;
        if (!known)
            continue; /* SAGA_* variables of other tools (SAGA_LOG_LEVEL is also a setting) */
        char why[512];
        if (config_set(c, name, eq + 1, why, sizeof why) < 0) {
            snprintf(err, n, "environment %.*s: %s", (int)(eq - *e), *e, why);
            return -1;
        }
    }
    return 0;
}

redisconn_config_t config_redis(const config_t *c)
{
    return (redisconn_config_t){
        .host = c->redis_host,
        .port = c->redis_port,
        .user = c->redis_user[0] ? c->redis_user : NULL,
        .password = c->redis_password[0] ? c->redis_password : NULL,
        .db = c->redis_db,
        .connect_timeout_ms = c->redis_timeout_ms,
        .command_timeout_ms = c->redis_timeout_ms,
        .sentinels = c->redis_sentinels[0] ? c->redis_sentinels : NULL,
        .master_name = c->redis_master_name[0] ? c->redis_master_name : NULL,
        .sentinel_user = c->redis_sentinel_user[0] ? c->redis_sentinel_user : NULL,
        .sentinel_password = c->redis_sentinel_password[0] ? c->redis_sentinel_password : NULL,
        .cluster = c->redis_cluster != 0,
        .cluster_nodes = c->redis_cluster_nodes[0] ? c->redis_cluster_nodes : NULL,
    };
}

void config_usage(FILE *out)
{
    fprintf(out, "Settings (file: name = value; environment: SAGA_NAME; flag: --name=value):\n");
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        char env[128];
        size_t j = 0;
        for (const char *p = SETTINGS[i].name; *p && j < sizeof env - 1; p++)
            env[j++] = (char)toupper((unsigned char)*p);
        env[j] = '\0';
        fprintf(out, "  --%-20s SAGA_%-22s %s (default: \"%s\")\n", SETTINGS[i].name, env,
                SETTINGS[i].help, SETTINGS[i].def);
    }
    fprintf(out,
            "  --%-20s SAGA_%-22s any librdkafka property, both clients\n"
            "  --%-20s SAGA_%-22s a librdkafka property of the consumer\n"
            "  --%-20s SAGA_%-22s a librdkafka property of the producer\n",
            "kafka.PROP=V", "KAFKA_PROP", "consumer.PROP=V", "CONSUMER_PROP", "producer.PROP=V",
            "PRODUCER_PROP");
}
