/* config.h - the coordinator's configuration: defaults, a config file, environment
 * variables and flags, in that order of strength.
 *
 * Every setting has one name used everywhere: `name = value` in the file, SAGA_NAME (upper
 * case, dots as underscores) in the environment, --name=value on the command line. Any
 * librdkafka property passes through as kafka.PROP (both clients), consumer.PROP or
 * producer.PROP; in the environment SAGA_KAFKA_SECURITY_PROTOCOL means
 * kafka.security.protocol. config_usage() prints them all for --help. */
#ifndef SAGA_CONFIG_H
#define SAGA_CONFIG_H

#include "redisconn.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_PASSTHROUGH 128
#define CONFIG_VALUE_MAX 1024

typedef struct config_prop {
    char name[256];            /* librdkafka property name, without the kafka. prefix */
    char value[CONFIG_VALUE_MAX];
    int scope;                 /* 0 both clients, 1 consumer, 2 producer */
} config_prop_t;

typedef struct config {
    char bootstrap_servers[CONFIG_VALUE_MAX];
    char group_id[256];
    char instance_id[256];     /* names this process in logs and partition owners */
    char input_topic[256];
    char outcomes_topic[256];
    char deadletter_topic[256];
    char definitions[CONFIG_VALUE_MAX];   /* folder or file of saga definitions */
    char redis_host[256];
    int redis_port;
    char redis_user[256];
    char redis_password[256];
    int redis_db;
    char redis_prefix[64];
    int redis_timeout_ms;
    int redis_wait_replicas;   /* -1 = decide from the replicas Redis has */
    char redis_sentinels[CONFIG_VALUE_MAX]; /* "host:port,..." ("" = no Sentinel) */
    char redis_master_name[256];
    char redis_sentinel_user[256];
    char redis_sentinel_password[256];
    int redis_sync_replicas;   /* replicas every round waits for (WAIT) before it counts */
    int redis_cluster;
    char redis_cluster_nodes[CONFIG_VALUE_MAX];
    int dev_mode;              /* 1 = accept a Redis without persistence */
    int64_t retention_ms;
    int history_cap;
    int batch_size;            /* input messages taken per loop turn */
    int64_t max_message_bytes;
    int poll_interval_ms;      /* longest wait for input when nothing is due */
    int64_t session_timeout_ms;
    char membership[16];       /* "redis" (leases) or "kafka" (the group protocol) */
    int64_t lease_ms;          /* membership=redis: lease time */
    int64_t lease_renew_ms;    /* ... heartbeat interval, 0 = lease_ms / 10 */
    char group_instance_id[256]; /* static membership when not "" */
    char log_level[16];
    char http_listen[256];     /* host:port of metrics, health and dashboard; "" = off */
    char http_token[260];      /* bearer token the HTTP server requires (httpauth.h); "" = none */
    char http_token_file[CONFIG_VALUE_MAX]; /* a file holding it instead */
    int http_open;             /* 1 = serve a non-loopback address without a token */
    size_t prop_count;
    config_prop_t props[CONFIG_MAX_PASSTHROUGH];
} config_t;

/* Fills c with the defaults. */
void config_defaults(config_t *c);

/* Sets one setting by name ("redis_port", "kafka.linger.ms", ...). Returns 0, or -1 with
 * the reason in err (unknown name, bad value). */
int config_set(config_t *c, const char *name, const char *value, char *err, size_t errlen);

/* Reads a file of "name = value" lines (# comments). Returns 0, or -1 with
 * "file:line: reason" in err. */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);

/* Applies SAGA_* environment variables. Returns 0 or -1 with the reason. */
int config_load_env(config_t *c, char *err, size_t errlen);

/* The Redis connection c's settings describe (host, port, AUTH, db, timeouts, Sentinel):
 * the one place that maps them, for the store, sagactl and the dashboard. Strings are
 * borrowed from c. */
redisconn_config_t config_redis(const config_t *c);

/* Prints every setting with its environment variable, default and meaning. */
void config_usage(FILE *out);

#endif
