/* coordinator.c - the coordinator process around the engine (see coordinator.h): start-up
 * (the store, its guards, the definitions, the Kafka module, the engine, wired together),
 * the loop, and shutdown. Read it top to bottom, as Redis's aeProcessEvents: each turn
 * asks the engine how long it may wait, takes input from Kafka, hands it to the engine,
 * and gives the batch back. The guarantees live in engine.c. */
#include "coordinator.h"

#include "catalogue.h"
#include "clusterstore.h"
#include "engine.h"
#include "guards.h"
#include "kafka.h"
#include "log.h"
#include "membership.h"
#include "metrics.h"
#include "redisconn.h"
#include "registry.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COORD_FLUSH_TIMEOUT_MS 10000 /* producer flush at shutdown */

struct coordinator {
    config_t cfg;
    store_t *store;
    store_port_t store_port;     /* the store as the engine and the registry see it */
    metrics_t *metrics;          /* borrowed from the caller (coordinator_new) */
    registry_t *registry;
    kafka_t *kafka;
    engine_t *engine;
    store_t *lease_store;        /* membership=redis: the leases' own connection */
    clusterstore_t *cluster_store, *cluster_lease_store; /* redis_cluster=1: instead */
    store_port_t lease_port;     /* the lease store as the membership sees it */
    membership_t *membership;    /* membership=redis, else NULL (the group protocol) */
    bool subscribed;             /* membership=kafka: subscribed (coordinator_start) */
    volatile sig_atomic_t *reload_flag;   /* set by a signal: reload between turns */
};

/* The Kafka module's events go to the engine. */
static void on_assign(void *opaque, const int32_t *partitions, int n)
{
    engine_assign(opaque, partitions, n);
}

static void after_assign(void *opaque, const int32_t *partitions, int n)
{
    engine_assigned(opaque, partitions, n);
}

static void on_revoke(void *opaque, const int32_t *partitions, int n)
{
    engine_revoke(opaque, partitions, n);
}

static void on_delivery(void *opaque, void *delivery, int32_t partition, const char *topic,
                        int err, const char *errstr)
{
    engine_on_delivery(opaque, delivery, partition, topic, err, errstr);
}

static void on_fatal(void *opaque)
{
    engine_on_fatal(opaque);
}

/* membership=redis: leases taken become the engine's partitions, read from where the
 * engine says; leases given up stop being read. */
static void on_take(void *opaque, const int32_t *partitions, const int64_t *epochs, int n)
{
    coordinator_t *c = opaque;
    engine_assign_taken(c->engine, partitions, epochs, n);
    int64_t *offsets = calloc((size_t)n, sizeof *offsets);
    for (int i = 0; offsets && i < n; i++)
        offsets[i] = engine_position(c->engine, partitions[i]);
    (void)kafka_assign(c->kafka, partitions, offsets, n);
    free(offsets);
    engine_assigned(c->engine, partitions, n);
}

static void on_give_up(void *opaque, const int32_t *partitions, int n, bool clean)
{
    coordinator_t *c = opaque;
    if (clean)
        engine_hand_over(c->engine, partitions, n, COORD_FLUSH_TIMEOUT_MS);
    else
        engine_revoke(c->engine, partitions, n);
    (void)kafka_unassign(c->kafka, partitions, n);
}

static bool leased(const config_t *cfg)
{
    return strcmp(cfg->membership, "redis") == 0;
}

static store_config_t store_config_of(const config_t *cfg)
{
    return (store_config_t){.redis = config_redis(cfg),
                            .prefix = cfg->redis_prefix,
                            .retention_ms = cfg->retention_ms,
                            .history_cap = cfg->history_cap};
}

/* What a start-up step returns: done; refused for good (a setting, an unsafe Redis, a
 * changed definition: the process exits, saying why); or not possible now (Redis or Kafka
 * does not answer: down, frozen, failing over; the caller waits and tries again). */
enum { START_DONE = 0, START_REFUSED = -1, START_UNAVAILABLE = 1 };

/* Whether the configured Redis can be reached (a seed node of a cluster, the primary the
 * Sentinels name, or the one Redis), without the rest of start-up: tells a setting that
 * will never work (redisconn_refused) from a Redis that does not answer now. */
static int probe_redis(const config_t *cfg, char *err, size_t errlen)
{
    redisconn_config_t rc = config_redis(cfg);
    const char *seeds = rc.cluster && rc.cluster_nodes && *rc.cluster_nodes ? rc.cluster_nodes
                                                                            : NULL;
    bool refused = false;
    do {
        redisconn_config_t one = rc;
        char item[REDISCONN_ADDRESS_MAX], host[REDISCONN_ADDRESS_MAX];
        int port;
        if (seeds) {
            int got = redisconn_list_item(&seeds, item, sizeof item);
            if (got == 0)
                break;
            if (got < 0 || redisconn_parse_address(item, host, sizeof host, &port,
                                                   REDISCONN_DEFAULT_PORT) < 0) {
                snprintf(err, errlen, "redis_cluster_nodes: an entry is not host:port");
                return START_REFUSED;
            }
            one.host = host;
            one.port = port;
        }
        redisconn_t *conn = redisconn_new(&one);
        if (!conn) {
            snprintf(err, errlen, "out of memory");
            return START_REFUSED;
        }
        bool reached = redisconn_connect(conn) >= 0;
        if (!reached) {
            snprintf(err, errlen, "%s", redisconn_last_error(conn));
            refused = refused || redisconn_refused(conn);
        }
        redisconn_free(conn);
        if (reached)
            return START_DONE;
    } while (seeds);
    return refused ? START_REFUSED : START_UNAVAILABLE;
}

/* The guards' verdict on the Redis behind ctx (where names it in err). */
static int guard_redis(coordinator_t *c, redisContext *ctx, const char *where,
                       guards_redis_report_t *report, char *err, size_t errlen)
{
    char why[512] = "";
    if (!ctx || guards_read_redis(ctx, report, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s%s%s", where, where[0] ? ": " : "",
                 ctx ? why : "not connected");
        return START_UNAVAILABLE;
    }
    if (guards_check_redis(report, &c->cfg, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s%s%s", where, where[0] ? ": " : "", why);
        return START_REFUSED;
    }
    return START_DONE;
}

/* The stores on a Redis Cluster (clusterstore.h), each primary checked by the guards.
 * Returns a START_ value, the reason in err. */
static int open_cluster_stores(coordinator_t *c, store_config_t *sc, guards_redis_report_t *report,
                               char *err, size_t errlen)
{
    const config_t *cfg = &c->cfg;
    if (!(c->cluster_store = clusterstore_new(sc, err, errlen)))
        return START_UNAVAILABLE;
    c->store_port = clusterstore_port(c->cluster_store);
    if (leased(cfg)) {
        if (!(c->cluster_lease_store = clusterstore_new(sc, err, errlen)))
            return START_UNAVAILABLE;
        clusterstore_set_lease(c->cluster_store, cfg->lease_ms);
        clusterstore_set_lease(c->cluster_lease_store, cfg->lease_ms);
        c->lease_port = clusterstore_port(c->cluster_lease_store);
    }
    redisconn_t *primaries[RCLUSTER_MAX_NODES];
    size_t n = rcluster_primaries(clusterstore_cluster(c->cluster_store), primaries,
                                  RCLUSTER_MAX_NODES);
    for (size_t i = 0; i < n && i < RCLUSTER_MAX_NODES; i++) {
        char where[REDISCONN_ADDRESS_MAX + 32];
        snprintf(where, sizeof where, "redis cluster primary %s", redisconn_address(primaries[i]));
        if (redisconn_connect(primaries[i]) < 0) {
            snprintf(err, errlen, "%s: %s", where, redisconn_last_error(primaries[i]));
            return START_UNAVAILABLE;
        }
        int rc = guard_redis(c, redisconn_context(primaries[i]), where, report, err, errlen);
        if (rc != START_DONE)
            return rc;
    }
    log_info("Redis Cluster: %zu primaries serve every slot; each partition's state lives on "
             "the primary of its slot {pN}", n);
    return START_DONE;
}

/* The stores on one Redis (or the primary the Sentinels name), checked by the guards.
 * Returns a START_ value, the reason in err. */
static int open_single_stores(coordinator_t *c, store_config_t *sc, guards_redis_report_t *report,
                              char *err, size_t errlen)
{
    const config_t *cfg = &c->cfg;
    if (!(c->store = store_new(sc, err, errlen)))
        return START_UNAVAILABLE;
    c->store_port = store_port(c->store);
    if (leased(cfg)) {
        if (!(c->lease_store = store_new(sc, err, errlen)))
            return START_UNAVAILABLE;
        store_set_lease(c->store, cfg->lease_ms);
        store_set_lease(c->lease_store, cfg->lease_ms);
        c->lease_port = store_port(c->lease_store);
    }
    return guard_redis(c, store_context(c->store), "", report, err, errlen);
}

/* The replicas an epoch bump waits for, and those every round waits for. */
static void set_replicas(coordinator_t *c, int wait, int sync)
{
    if (c->cluster_store) {
        clusterstore_set_wait_replicas(c->cluster_store, wait);
        clusterstore_set_sync_replicas(c->cluster_store, sync);
    } else {
        store_set_wait_replicas(c->store, wait);
        store_set_sync_replicas(c->store, sync);
    }
    if (c->cluster_lease_store)
        clusterstore_set_wait_replicas(c->cluster_lease_store, wait);
    if (c->lease_store)
        store_set_wait_replicas(c->lease_store, wait);
}

/* The store, checked by the guards (refuses an unsafe Redis), with the definitions
 * published. Returns a START_ value, the reason in err. */
static int open_store(coordinator_t *c, defn_set_t *defs, char *err, size_t errlen)
{
    const config_t *cfg = &c->cfg;
    int rc = probe_redis(cfg, err, errlen);
    if (rc != START_DONE)
        return rc;
    store_config_t sc = store_config_of(cfg);
    guards_redis_report_t report;
    rc = cfg->redis_cluster ? open_cluster_stores(c, &sc, &report, err, errlen)
                            : open_single_stores(c, &sc, &report, err, errlen);
    if (rc != START_DONE)
        return rc;
    set_replicas(c,
                 cfg->redis_wait_replicas >= 0 ? cfg->redis_wait_replicas
                 : report.replicas > 0         ? 1
                                               : 0,
                 cfg->redis_sync_replicas);
    c->registry = registry_new(defs);
    if (!c->registry) {
        snprintf(err, errlen, "out of memory");
        return START_REFUSED;
    }
    defn_errors_t errs = {0};
    rc = registry_publish(c->registry, &c->store_port, &errs);
    if (rc != 0) {
        char line[sizeof(defn_error_t) + 64] = "";
        for (size_t i = 0; i < errs.count; i++) {
            defn_error_format(&errs.items[i], line, sizeof line);
            if (rc < 0)
                log_error("%s", line);
        }
        if (rc < 0)
            snprintf(err, errlen, "definitions refused (%zu error(s), the last: %s)",
                     errs.count, line);
        else
            snprintf(err, errlen, "%s", line);
        defn_errors_release(&errs);
        return rc < 0 ? START_REFUSED : START_UNAVAILABLE;
    }
    return START_DONE;
}

/* Every topic the coordinator produces to: the producer learns them now (kafka_warm). */
static void warm_topics(coordinator_t *c, const defn_set_t *defs)
{
    size_t cap = 3, n = 0;
    for (size_t i = 0; i < defn_set_count(defs); i++)
        cap += 2 * defn_set_at(defs, i)->step_count;
    const char **topics = calloc(cap, sizeof *topics);
    if (!topics)
        return;
    topics[n++] = c->cfg.input_topic; /* forwarded input */
    topics[n++] = c->cfg.outcomes_topic;
    topics[n++] = c->cfg.deadletter_topic;
    for (size_t i = 0; i < defn_set_count(defs); i++) {
        const definition_t *d = defn_set_at(defs, i);
        for (size_t s = 0; s < d->step_count; s++) {
            topics[n++] = d->steps[s].action.topic;
            if (d->steps[s].has_compensation)
                topics[n++] = d->steps[s].compensation.topic;
        }
    }
    kafka_warm(c->kafka, topics, n);
    free(topics);
}

coordinator_t *coordinator_new(const config_t *cfg, defn_set_t *defs, metrics_t *metrics,
                               char *err, size_t errlen, bool *unavailable)
{
    *unavailable = false;
    coordinator_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    c->metrics = metrics;
    if (!leased(cfg) && strcmp(cfg->membership, "kafka") != 0) {
        snprintf(err, errlen, "membership: expected redis or kafka, got \"%s\"", cfg->membership);
        goto err;
    }
    int opened = open_store(c, defs, err, errlen);
    if (opened != START_DONE) {
        *unavailable = opened == START_UNAVAILABLE;
        goto err;
    }
    /* The engine needs the bus and the bus's events need the engine: the engine is made
     * on a bus whose module is created right after, and both are wired before use. */
    kafka_events_t ev = {.on_assign = on_assign,
                         .after_assign = after_assign,
                         .on_revoke = on_revoke,
                         .on_delivery = on_delivery,
                         .on_fatal = on_fatal};
    c->engine = engine_new(cfg, &c->store_port, c->registry, c->metrics, &(bus_t){0});
    if (!c->engine) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    ev.opaque = c->engine;
    c->kafka = kafka_new(cfg, &ev, err, errlen);
    if (!c->kafka)
        goto err;
    bus_t bus = kafka_bus(c->kafka);
    engine_set_bus(c->engine, &bus);
    warm_topics(c, defs);
    return c;
err:
    coordinator_free(c);
    return NULL;
}

/* Records the input topic's partition count in saga:meta, so readers know which {pN}
 * to look in, and reads the routing partition count every coordinator uses (route.h).
 * Returns the partition count, or -1 with the reason in err when either is unknown: the
 * coordinator cannot route without it. */
static int record_partition_count(coordinator_t *c, char *err, size_t errlen)
{
    int n = 0, replicas = 0, routing = 0;
    char why[256] = "";
    if (kafka_input_topic(c->kafka, &n, &replicas, why, sizeof why) < 0) {
        snprintf(err, errlen, "kafka: no metadata for %s (%s)", c->cfg.input_topic, why);
        return -1;
    }
    guards_check_input_topic(c->cfg.input_topic, n, replicas);
    if (c->cluster_store ? clusterstore_put_meta(c->cluster_store, n, &routing) < 0
                         : store_put_meta(c->store, n, &routing) < 0) {
        snprintf(err, errlen, "cannot record saga:meta: %s",
                 c->store_port.last_error(c->store_port.self));
        return -1;
    }
    engine_set_routing(c->engine, routing, n);
    if (routing != n)
        log_warn("%s has %d partitions, saga ids are routed over the first %d (saga:meta "
                 "routing_partitions, fixed when the first coordinator started): input "
                 "landing on the others is forwarded (docs/high-availability.md)",
                 c->cfg.input_topic, n, routing);
    return n;
}

int coordinator_start(coordinator_t *c, char *err, size_t errlen, bool *unavailable)
{
    *unavailable = false;
    if (c->membership || c->subscribed)
        return 0; /* started already */
    int partitions = record_partition_count(c, err, errlen);
    if (partitions < 0) {
        *unavailable = true;
        return -1;
    }
    if (leased(&c->cfg)) {
        membership_events_t ev = {.opaque = c, .take = on_take, .give_up = on_give_up};
        c->membership = membership_new(&c->lease_port, c->cfg.instance_id, partitions,
                                       c->cfg.lease_ms, c->cfg.lease_renew_ms, &ev);
        if (!c->membership) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        log_info("instance %s reads %s by leases of %lld ms (membership=redis)",
                 c->cfg.instance_id, c->cfg.input_topic, (long long)c->cfg.lease_ms);
        return 0;
    }
    if (kafka_subscribe(c->kafka) < 0) {
        snprintf(err, errlen, "cannot subscribe to %s (see the error above)", c->cfg.input_topic);
        return -1;
    }
    c->subscribed = true;
    log_info("instance %s subscribed to %s as group %s", c->cfg.instance_id, c->cfg.input_topic,
             c->cfg.group_id);
    return 0;
}

void coordinator_set_http_address(coordinator_t *c, const char *address)
{
    engine_set_http_address(c->engine, address);
}

int coordinator_reload(coordinator_t *c)
{
    return engine_reload(c->engine);
}

void coordinator_set_reload_flag(coordinator_t *c, volatile sig_atomic_t *flag)
{
    c->reload_flag = flag;
}

int coordinator_run(coordinator_t *c, volatile sig_atomic_t *stop)
{
    while (!*stop) {
        if (c->reload_flag && *c->reload_flag) {
            *c->reload_flag = 0;
            (void)engine_reload(c->engine);
        }
        int most = c->cfg.poll_interval_ms;
        if (c->membership) {
            int beat = membership_tick(c->membership);
            most = beat < most ? beat : most;
            if (membership_since_renewal_ms(c->membership) >= 0)
                engine_set_joined(c->engine); /* a member: ready, with partitions or not */
        }
        int wait = engine_prepare_turn(c->engine, most);
        if (wait < 0)
            break; /* fatal: give the partitions up as cleanly as can be, then fail */
        const bus_message_t *msgs = NULL;
        int64_t avail_us = 0;
        size_t n = kafka_consume(c->kafka, wait, &msgs, &avail_us);
        int rc = engine_turn(c->engine, msgs, n, avail_us);
        kafka_release(c->kafka);
        if (rc < 0)
            break;
    }
    log_info("stopping: finishing the rounds, then leaving the group");
    int rc = engine_stop(c->engine, COORD_FLUSH_TIMEOUT_MS);
    if (c->membership)
        membership_leave(c->membership); /* the others take the partitions at once */
    kafka_close(c->kafka); /* revokes: stored offsets are committed */
    return rc;
}

void coordinator_free(coordinator_t *c)
{
    if (!c)
        return;
    kafka_free(c->kafka); /* first: its last delivery reports still reach the engine */
    engine_free(c->engine);
    membership_free(c->membership);
    store_free(c->lease_store);
    store_free(c->store);
    clusterstore_free(c->cluster_lease_store);
    clusterstore_free(c->cluster_store);
    registry_free(c->registry); /* after the sagas: they point into it */
    free(c);
}

const engine_stats_t *coordinator_stats(const coordinator_t *c)
{
    return engine_stats(c->engine);
}

int coordinator_partitions_owned(const coordinator_t *c)
{
    return engine_partitions_owned(c->engine);
}

size_t coordinator_sagas_in_memory(const coordinator_t *c)
{
    return engine_sagas_in_memory(c->engine);
}

struct metrics *coordinator_metrics(coordinator_t *c)
{
    return c->metrics;
}
