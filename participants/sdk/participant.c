/* participant.c - the participant: configuration, the Kafka consumer and producer, the
 * run loop, and what happens to one command from its offset to its committed reply
 * (saga_participant_* in saga_participant.h).
 *
 * One command at a time: decode, check the de-duplication record (sp_dedup), run the
 * handler, record its result with its effects, produce the reply asynchronously. Every
 * consumed message gets an entry in a FIFO (in consumption order); an entry is done when
 * its reply was delivered (or when it needs no reply). The offsets of the done prefix of
 * the FIFO are stored, and the auto-committer (and the explicit commits on revocation and
 * shutdown) commit only stored offsets: a command whose reply was not delivered is
 * consumed again after a crash or a rebalance. */
#include "saga_participant.h"

#include "sp_command.h"
#include "sp_dedup.h"
#include "sp_log.h"
#include "sp_result.h"

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SP_POLL_MS 100                   /* consumer poll: how soon a stop is seen */
#define SP_DRAIN_STEP_MS 50
#define SP_SHUTDOWN_DRAIN_MS 15000       /* waiting for reply deliveries at shutdown */
#define SP_REVOKE_DRAIN_MS 10000         /* ... and before giving partitions away */
#define SP_MAX_SYNC_REPLICAS 16          /* redis_sync_replicas at most */
#define SP_MIN_REDIS_TIMEOUT_MS 100      /* redis_timeout_ms at least */
#define SP_MAX_REDIS_TIMEOUT_MS 600000   /* and at most */
#define SP_REDIS_BACKOFF_MIN_MS 100
#define SP_REDIS_BACKOFF_MAX_MS 500
#define SP_QUEUE_FULL_WAIT_MS 100
#define SP_REPLY_OVERHEAD_BYTES 4096     /* room for the echo fields of a reply */
#define SP_DEFAULT_DEDUP_PREFIX_FMT "saga:dedup:{%s}:"
#define SP_MAX_PROPERTY_LEN 4096
#define SP_ERR_LEN 512

typedef enum {
    SP_ENTRY_WAITING = 0,    /* reply produced, delivery not reported yet */
    SP_ENTRY_DONE,           /* replied (or nothing to reply): its offset may be stored */
    SP_ENTRY_RETRY,          /* delivery failed, retriable: produce again */
    SP_ENTRY_ABANDONED       /* given up at shutdown: never store its offset */
} sp_entry_state_t;

typedef struct sp_entry {
    struct sp_entry *next;
    char *topic;             /* where the command was consumed */
    int32_t partition;
    int64_t offset;
    sp_entry_state_t state;
    char *reply;             /* the reply message (NULL: nothing to send) */
    size_t reply_len;
    char *reply_topic;
    int32_t reply_partition;
    char *key;
    int deliveries;          /* produce attempts */
} sp_entry_t;

typedef struct sp_handler {
    char *type;
    saga_handler_fn fn;
    void *opaque;
} sp_handler_t;

struct saga_participant_s {
    char *command_topic;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    sp_dedup_t *dedup;
    sp_handler_t *handlers;
    size_t nhandlers;
    atomic_int stop;
    int ran;
    int fatal;
    sp_entry_t *head;
    sp_entry_t *tail;
};

static int64_t sp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sp_stopping(saga_participant_t *p)
{
    return atomic_load_explicit(&p->stop, memory_order_relaxed) || p->fatal;
}

const char *saga_participant_version(void)
{
    return SAGA_PARTICIPANT_VERSION_STRING;
}

void saga_participant_config_init(saga_participant_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->redis_host = SAGA_PARTICIPANT_DEFAULT_REDIS_HOST;
    cfg->redis_port = SAGA_PARTICIPANT_DEFAULT_REDIS_PORT;
    cfg->dedup_retention_s = SAGA_PARTICIPANT_DEFAULT_RETENTION_S;
    cfg->inflight_lease_ms = SAGA_PARTICIPANT_DEFAULT_LEASE_MS;
    cfg->redis_timeout_ms = SAGA_PARTICIPANT_DEFAULT_REDIS_TIMEOUT_MS;
}

/* ---------------------------------------------------------------- the FIFO of entries */

static void sp_entry_free(sp_entry_t *e)
{
    if (!e)
        return;
    free(e->topic);
    free(e->reply);
    free(e->reply_topic);
    free(e->key);
    free(e);
}

static sp_entry_t *sp_entry_push(saga_participant_t *p, const rd_kafka_message_t *m)
{
    sp_entry_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->topic = strdup(rd_kafka_topic_name(m->rkt));
    if (!e->topic) {
        free(e);
        return NULL;
    }
    e->partition = m->partition;
    e->offset = m->offset;
    if (p->tail)
        p->tail->next = e;
    else
        p->head = e;
    p->tail = e;
    return e;
}

static void sp_offset_store(saga_participant_t *p, const sp_entry_t *e)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, e->topic, e->partition)->offset = e->offset + 1;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(p->consumer, l);
    if (!err)
        err = l->elems[0].err;
    if (err) /* the partition was revoked meanwhile: its next owner consumes it again */
        sp_log(SP_LOG_DEBUG, NULL, "offset %s[%d]@%lld not stored: %s", e->topic, e->partition,
               (long long)e->offset, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
}

static void sp_produce(saga_participant_t *p, sp_entry_t *e);

/* Produces again what failed retriably, then stores the offsets of the done prefix. */
static void sp_entries_advance(saga_participant_t *p)
{
    for (sp_entry_t *e = p->head; e; e = e->next)
        if (e->state == SP_ENTRY_RETRY && !p->fatal)
            sp_produce(p, e);
    while (p->head && (p->head->state == SP_ENTRY_DONE || p->head->state == SP_ENTRY_ABANDONED)) {
        sp_entry_t *e = p->head;
        if (e->state == SP_ENTRY_DONE)
            sp_offset_store(p, e);
        p->head = e->next;
        if (!p->head)
            p->tail = NULL;
        sp_entry_free(e);
    }
}

/* Serves delivery reports until every entry is done or timeout_ms passed. */
static void sp_entries_drain(saga_participant_t *p, int timeout_ms)
{
    int64_t deadline = sp_now_ms() + timeout_ms;
    sp_entries_advance(p);
    while (p->head && !p->fatal && sp_now_ms() < deadline) {
        rd_kafka_poll(p->producer, SP_DRAIN_STEP_MS);
        sp_entries_advance(p);
    }
    if (p->head)
        sp_log(SP_LOG_WARN, NULL, "replies still undelivered after %d ms: their commands will be consumed again",
               timeout_ms);
}

/* -------------------------------------------------------------------- Kafka callbacks */

static int sp_err_permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

static void sp_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    saga_participant_t *p = opaque;
    sp_entry_t *e = m->_private;
    if (!e)
        return;
    if (!m->err) {
        e->state = SP_ENTRY_DONE;
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[SP_ERR_LEN];
        rd_kafka_fatal_error(rk, why, sizeof why);
        sp_log(SP_LOG_ERROR, NULL, "producer fatal error: %s", why);
        p->fatal = 1;
        return;
    }
    if (sp_err_permanent(m->err)) {
        /* The reply cannot ever be delivered there; the result is recorded, so a later
         * attempt of the command gets it again. Skip rather than block the partition. */
        sp_log(SP_LOG_ERROR, NULL, "reply to %s[%d] for %s[%d]@%lld cannot be delivered: %s",
               e->reply_topic, e->reply_partition, e->topic, e->partition, (long long)e->offset,
               rd_kafka_err2str(m->err));
        e->state = SP_ENTRY_DONE;
        return;
    }
    sp_log(SP_LOG_WARN, NULL, "reply to %s[%d] not delivered (%s): producing it again", e->reply_topic,
           e->reply_partition, rd_kafka_err2str(m->err));
    e->state = SP_ENTRY_RETRY;
}

static void sp_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    saga_participant_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[SP_ERR_LEN];
        rd_kafka_fatal_error(rk, why, sizeof why);
        sp_log(SP_LOG_ERROR, NULL, "kafka fatal error: %s", why);
        p->fatal = 1;
        return;
    }
    sp_log(SP_LOG_WARN, NULL, "kafka %s: %s", rd_kafka_err2name(err), reason);
}

static void sp_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                            void *opaque)
{
    saga_participant_t *p = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        sp_log(SP_LOG_INFO, NULL, "assigned %d partition(s) of %s", parts->cnt, p->command_topic);
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, parts);
    } else {
        /* Finish what was replied for the partitions going away, so their next owner
         * starts after it: deliver, store, commit, then let go. */
        sp_log(SP_LOG_INFO, NULL, "revoking %d partition(s) of %s (%s)", parts->cnt, p->command_topic,
               rd_kafka_err2name(err));
        sp_entries_drain(p, SP_REVOKE_DRAIN_MS);
        if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && !rd_kafka_assignment_lost(rk)) {
            rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
            if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
                sp_log(SP_LOG_WARN, NULL, "commit on revocation: %s", rd_kafka_err2str(cerr));
        }
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        sp_log(SP_LOG_ERROR, NULL, "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr) {
        sp_log(SP_LOG_ERROR, NULL, "rebalance: %s", rd_kafka_err2str(aerr));
    }
}

/* ---------------------------------------------------------------------- configuration */

static int sp_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    char why[SP_ERR_LEN];
    if (rd_kafka_conf_set(conf, k, v, why, sizeof why) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka property %s: %s", k, why);
        return -1;
    }
    return 0;
}

/* Applies the user's "key=value" properties; "consumer."/"producer." prefixed ones only
 * to that client. */
static int sp_conf_apply_user(rd_kafka_conf_t *conf, const char *const *props, int consumer, char *err,
                              size_t errlen)
{
    for (size_t i = 0; props && props[i]; i++) {
        char buf[SP_MAX_PROPERTY_LEN];
        if (strlen(props[i]) >= sizeof buf) {
            snprintf(err, errlen, "kafka property too long: %.40s...", props[i]);
            return -1;
        }
        snprintf(buf, sizeof buf, "%s", props[i]);
        char *eq = strchr(buf, '=');
        if (!eq || eq == buf) {
            snprintf(err, errlen, "kafka property \"%s\": expected key=value", props[i]);
            return -1;
        }
        *eq = '\0';
        const char *k = buf;
        if (strncmp(k, "consumer.", 9) == 0) {
            if (!consumer)
                continue;
            k += 9;
        } else if (strncmp(k, "producer.", 9) == 0) {
            if (consumer)
                continue;
            k += 9;
        }
        if (sp_conf_set(conf, k, eq + 1, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static rd_kafka_t *sp_consumer_new(saga_participant_t *p, const saga_participant_config_t *cfg, char *err,
                                   size_t errlen)
{
    char session[16];
    snprintf(session, sizeof session, "%d", SAGA_PARTICIPANT_DEFAULT_SESSION_TIMEOUT_MS);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sp_conf_set(conf, "bootstrap.servers", cfg->bootstrap_servers, err, errlen) ||
        sp_conf_set(conf, "group.id", cfg->group_id, err, errlen) ||
        sp_conf_set(conf, "client.id", cfg->client_id ? cfg->client_id : cfg->group_id, err, errlen) ||
        sp_conf_set(conf, "session.timeout.ms", session, err, errlen) ||
        sp_conf_set(conf, "enable.auto.commit", "true", err, errlen) ||
        sp_conf_set(conf, "auto.commit.interval.ms", "1000", err, errlen) ||
        sp_conf_set(conf, "auto.offset.reset", "earliest", err, errlen) ||
        sp_conf_set(conf, "enable.partition.eof", "false", err, errlen) ||
        /* A short fetch wait: a broker that does not answer a waiting fetch as soon as data
         * arrives (librdkafka's mock cluster) would otherwise add up to 500 ms (librdkafka's
         * default) to every step. Apache Kafka answers at once either way. */
        sp_conf_set(conf, "fetch.wait.max.ms", "10", err, errlen) ||
        sp_conf_set(conf, "fetch.error.backoff.ms", "10", err, errlen) ||
        sp_conf_apply_user(conf, cfg->kafka_properties, 1, err, errlen) ||
        /* Not overridable: an offset is stored only after its reply was delivered. */
        sp_conf_set(conf, "enable.auto.offset.store", "false", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_rebalance_cb(conf, sp_rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, sp_error_cb);
    char why[SP_ERR_LEN];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        snprintf(err, errlen, "kafka consumer: %s", why);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static rd_kafka_t *sp_producer_new(saga_participant_t *p, const saga_participant_config_t *cfg, char *err,
                                   size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sp_conf_set(conf, "bootstrap.servers", cfg->bootstrap_servers, err, errlen) ||
        sp_conf_set(conf, "client.id", cfg->client_id ? cfg->client_id : cfg->group_id, err, errlen) ||
        sp_conf_set(conf, "linger.ms", "1", err, errlen) ||
        sp_conf_apply_user(conf, cfg->kafka_properties, 0, err, errlen) ||
        sp_conf_set(conf, "enable.idempotence", "true", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, sp_delivery_cb);
    rd_kafka_conf_set_error_cb(conf, sp_error_cb);
    char why[SP_ERR_LEN];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!rk) {
        snprintf(err, errlen, "kafka producer: %s", why);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

saga_participant_t *saga_participant_new(const saga_participant_config_t *cfg, char *errbuf, size_t errlen)
{
    char scratch[SP_ERR_LEN];
    if (!errbuf) {
        errbuf = scratch;
        errlen = sizeof scratch;
    }
    if (!cfg || !cfg->bootstrap_servers || !*cfg->bootstrap_servers || !cfg->group_id || !*cfg->group_id ||
        !cfg->command_topic || !*cfg->command_topic) {
        snprintf(errbuf, errlen, "bootstrap_servers, group_id and command_topic are required");
        return NULL;
    }
    if (cfg->redis_port <= 0 || cfg->redis_port > 65535 || cfg->dedup_retention_s <= 0 ||
        cfg->inflight_lease_ms <= 0 || cfg->redis_db < 0 || cfg->redis_sync_replicas < 0 ||
        cfg->redis_sync_replicas > SP_MAX_SYNC_REPLICAS || cfg->redis_cluster < 0 ||
        cfg->redis_cluster > 1 || cfg->redis_timeout_ms < SP_MIN_REDIS_TIMEOUT_MS ||
        cfg->redis_timeout_ms > SP_MAX_REDIS_TIMEOUT_MS) {
        snprintf(errbuf, errlen, "redis_port, redis_db, redis_sync_replicas, redis_cluster, "
                 "redis_timeout_ms, dedup_retention_s or inflight_lease_ms out of range");
        return NULL;
    }
    sp_log_init_once(cfg->client_id ? cfg->client_id : cfg->group_id);
    saga_participant_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&p->stop, 0);
    p->command_topic = strdup(cfg->command_topic);
    char prefix[SP_MAX_PROPERTY_LEN];
    if (cfg->dedup_prefix)
        snprintf(prefix, sizeof prefix, "%s", cfg->dedup_prefix);
    else
        snprintf(prefix, sizeof prefix, SP_DEFAULT_DEDUP_PREFIX_FMT, cfg->group_id);
    sp_dedup_config_t dc = {
        .redis = {.host = cfg->redis_host ? cfg->redis_host : SAGA_PARTICIPANT_DEFAULT_REDIS_HOST,
                  .port = cfg->redis_port,
                  .user = cfg->redis_user,
                  .password = cfg->redis_password,
                  .db = cfg->redis_db,
                  .sentinels = cfg->redis_sentinels,
                  .master_name = cfg->redis_master_name,
                  .sentinel_user = cfg->redis_sentinel_user,
                  .sentinel_password = cfg->redis_sentinel_password,
                  .cluster = cfg->redis_cluster != 0,
                  .cluster_nodes = cfg->redis_cluster_nodes},
        .prefix = prefix,
        .retention_s = cfg->dedup_retention_s,
        .lease_ms = cfg->inflight_lease_ms,
        .sync_replicas = cfg->redis_sync_replicas,
        .timeout_ms = cfg->redis_timeout_ms,
    };
    if (!p->command_topic) {
        snprintf(errbuf, errlen, "out of memory");
        goto err;
    }
    if (!(p->dedup = sp_dedup_new(&dc, errbuf, errlen)))
        goto err;
    if (!(p->producer = sp_producer_new(p, cfg, errbuf, errlen)))
        goto err;
    if (!(p->consumer = sp_consumer_new(p, cfg, errbuf, errlen)))
        goto err;
    return p;
err:
    saga_participant_free(p);
    return NULL;
}

void saga_participant_free(saga_participant_t *p)
{
    if (!p)
        return;
    if (p->consumer)
        rd_kafka_destroy(p->consumer);
    if (p->producer) {
        (void)rd_kafka_purge(p->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(p->producer); /* no delivery report is served after this */
    }
    while (p->head) {
        sp_entry_t *e = p->head;
        p->head = e->next;
        sp_entry_free(e);
    }
    sp_dedup_free(p->dedup);
    for (size_t i = 0; i < p->nhandlers; i++)
        free(p->handlers[i].type);
    free(p->handlers);
    free(p->command_topic);
    free(p);
}

int saga_participant_on(saga_participant_t *p, const char *command_type, saga_handler_fn fn, void *opaque)
{
    if (!p || !command_type || !*command_type || !fn)
        return -1;
    for (size_t i = 0; i < p->nhandlers; i++) {
        if (strcmp(p->handlers[i].type, command_type) == 0) {
            p->handlers[i].fn = fn;
            p->handlers[i].opaque = opaque;
            return 0;
        }
    }
    sp_handler_t *h = realloc(p->handlers, (p->nhandlers + 1) * sizeof *h);
    if (!h)
        return -1;
    p->handlers = h;
    char *type = strdup(command_type);
    if (!type)
        return -1;
    h[p->nhandlers++] = (sp_handler_t){type, fn, opaque};
    return 0;
}

void saga_participant_stop(saga_participant_t *p)
{
    if (p)
        atomic_store_explicit(&p->stop, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------- one command */

static void sp_produce(saga_participant_t *p, sp_entry_t *e)
{
    for (;;) {
        e->deliveries++;
        e->state = SP_ENTRY_WAITING;
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->producer, RD_KAFKA_V_TOPIC(e->reply_topic), RD_KAFKA_V_PARTITION(e->reply_partition),
            RD_KAFKA_V_KEY(e->key, strlen(e->key)), RD_KAFKA_V_VALUE(e->reply, e->reply_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(e), RD_KAFKA_V_END);
        if (!err)
            return;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !p->fatal) {
            rd_kafka_poll(p->producer, SP_QUEUE_FULL_WAIT_MS);
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            p->fatal = 1;
            sp_log(SP_LOG_ERROR, NULL, "producer fatal error: replies stop");
            return;
        }
        sp_log(SP_LOG_ERROR, NULL, "reply to %s[%d] cannot be produced: %s", e->reply_topic, e->reply_partition,
               rd_kafka_err2str(err));
        e->state = SP_ENTRY_DONE;
        return;
    }
}

/* Waits before retrying Redis, serving delivery reports meanwhile. Returns 0 to retry,
 * -1 when the participant is stopping. */
static int sp_redis_backoff(saga_participant_t *p, int *delay_ms)
{
    int64_t until = sp_now_ms() + *delay_ms;
    while (sp_now_ms() < until) {
        if (sp_stopping(p))
            return -1;
        rd_kafka_poll(p->producer, SP_DRAIN_STEP_MS);
        sp_entries_advance(p);
    }
    *delay_ms = *delay_ms * 2 > SP_REDIS_BACKOFF_MAX_MS ? SP_REDIS_BACKOFF_MAX_MS : *delay_ms * 2;
    return sp_stopping(p) ? -1 : 0;
}

static const sp_handler_t *sp_handler_find(const saga_participant_t *p, const char *type)
{
    for (size_t i = 0; i < p->nhandlers; i++)
        if (strcmp(p->handlers[i].type, type) == 0)
            return &p->handlers[i];
    return NULL;
}

#define SP_STORE_ERROR "participant store error (see the participant's log)"
#define SP_REFUSED_ERROR "compensated before applied"
#define SP_BUSY_ERROR "action still in progress: retry the compensation later"

/* Runs the handler and records its result. Returns the reply body (new reference), or
 * NULL when the participant stops while Redis is unreachable (nothing is replied; the
 * command will be consumed again). */
static json_t *sp_run_handler(saga_participant_t *p, saga_command_t *cmd, const sp_handler_t *h)
{
    saga_result_t res;
    sp_result_init(&res);
    h->fn(cmd, &res, h->opaque);
    if (res.status == SP_RESULT_NONE)
        sp_log(SP_LOG_WARN, cmd->saga_id, "handler for %s set no result: answering failed, retryable", cmd->type);
    json_t *body = sp_result_body_new(&res);
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (s && strlen(s) > SAGA_PARTICIPANT_MAX_REPLY_BYTES - SP_REPLY_OVERHEAD_BYTES) {
        sp_log(SP_LOG_ERROR, cmd->saga_id, "%s: reply of %zu bytes is too large", cmd->command_id, strlen(s));
        sp_result_release(&res);
        saga_result_fail(&res, "reply output too large");
        json_decref(body);
        body = sp_result_body_new(&res);
    }
    free(s);
    if (!body) {
        sp_result_release(&res);
        return sp_body_failed_new(SP_STORE_ERROR, 1);
    }

    sp_record_t rec;
    int delay = SP_REDIS_BACKOFF_MIN_MS, rc;
    while ((rc = sp_dedup_record(p->dedup, cmd, &res, body, &rec)) == -1)
        if (sp_redis_backoff(p, &delay) != 0)
            break;
    sp_result_release(&res);
    json_decref(body);
    if (rc == -1)
        return NULL;
    if (rc != 0)
        return sp_body_failed_new(SP_STORE_ERROR, 1);
    switch (rec.verdict) {
    case SP_RECORD_RESEND:
        sp_log(SP_LOG_INFO, cmd->saga_id, "%s: another run recorded first; its reply is sent", cmd->command_id);
        return rec.body;
    case SP_RECORD_REFUSE:
        json_decref(rec.body);
        sp_log(SP_LOG_WARN, cmd->saga_id, "%s: compensated while it ran; refused, nothing applied", cmd->command_id);
        return sp_body_failed_new(SP_REFUSED_ERROR, 0);
    case SP_RECORD_RECORDED:
    default:
        return rec.body;
    }
}

/* Decides the reply to a valid command with a handler. Same returns as sp_run_handler. */
static json_t *sp_decide(saga_participant_t *p, saga_command_t *cmd, const sp_handler_t *h)
{
    sp_check_t chk;
    int delay = SP_REDIS_BACKOFF_MIN_MS, rc;
    while ((rc = sp_dedup_check(p->dedup, cmd, &chk)) == -1)
        if (sp_redis_backoff(p, &delay) != 0)
            return NULL;
    if (rc != 0)
        return sp_body_failed_new(SP_STORE_ERROR, 1);
    switch (chk.verdict) {
    case SP_CHECK_RESEND:
        sp_log(SP_LOG_INFO, cmd->saga_id, "%s: repeat of %s; recorded reply sent again", cmd->command_id, cmd->key);
        return chk.body;
    case SP_CHECK_REFUSE:
        sp_log(SP_LOG_INFO, cmd->saga_id, "%s: refused, its compensation came first", cmd->command_id);
        return sp_body_failed_new(SP_REFUSED_ERROR, 0);
    case SP_CHECK_BUSY:
        sp_log(SP_LOG_INFO, cmd->saga_id, "%s: its action is in flight elsewhere", cmd->command_id);
        return sp_body_failed_new(SP_BUSY_ERROR, 1);
    case SP_CHECK_NOOP:
        sp_log(SP_LOG_INFO, cmd->saga_id, "%s: ok without the handler: %s", cmd->command_id, chk.why);
        return json_loads(SP_NOOP_BODY, 0, NULL);
    case SP_CHECK_RUN:
    default:
        break;
    }
    if (cmd->kind == SAGA_KIND_COMPENSATION) {
        json_t *out = json_object_get(chk.body, "output");
        cmd->action_output = json_is_object(out) ? json_incref(out) : json_object();
    }
    json_decref(chk.body);
    return sp_run_handler(p, cmd, h);
}

static void sp_handle_message(saga_participant_t *p, const rd_kafka_message_t *m)
{
    sp_entry_t *e = sp_entry_push(p, m);
    if (!e) {
        sp_log(SP_LOG_ERROR, NULL, "out of memory: stopping");
        p->fatal = 1;
        return;
    }
    char why[SP_MAX_ERROR_TEXT];
    saga_command_t *cmd = NULL;
    json_t *body = NULL;
    sp_parse_status_t st = sp_command_parse(m->payload ? m->payload : "", m->len, &cmd, why, sizeof why);
    if (st == SP_PARSE_INVALID) {
        sp_log(SP_LOG_WARN, NULL, "invalid command at %s[%d]@%lld skipped: %s", e->topic, e->partition,
               (long long)e->offset, why);
        e->state = SP_ENTRY_DONE;
        return;
    }
    if (st == SP_PARSE_REPLYABLE) {
        sp_log(SP_LOG_WARN, cmd->saga_id, "invalid command at %s[%d]@%lld answered failed: %s", e->topic,
               e->partition, (long long)e->offset, why);
        char text[SP_MAX_ERROR_TEXT + 32];
        snprintf(text, sizeof text, "invalid command: %s", why);
        body = sp_body_failed_new(text, 0);
    } else {
        const sp_handler_t *h = sp_handler_find(p, cmd->type);
        if (!h) {
            char text[SP_MAX_NAME_LEN + 32];
            snprintf(text, sizeof text, "unknown command type %s", cmd->type);
            sp_log(SP_LOG_WARN, cmd->saga_id, "%s at %s[%d]@%lld", text, e->topic, e->partition, (long long)e->offset);
            body = sp_body_failed_new(text, 0);
        } else {
            body = sp_decide(p, cmd, h);
            if (!body) {
                e->state = SP_ENTRY_ABANDONED;
                sp_command_free(cmd);
                return;
            }
        }
    }
    e->reply = body ? sp_command_reply_dumps(cmd, body, &e->reply_len) : NULL;
    e->reply_topic = strdup(cmd->reply_topic);
    e->key = strdup(cmd->saga_id);
    e->reply_partition = cmd->reply_partition;
    json_decref(body);
    if (!e->reply || !e->reply_topic || !e->key) {
        sp_log(SP_LOG_ERROR, cmd->saga_id, "out of memory: stopping");
        e->state = SP_ENTRY_ABANDONED;
        p->fatal = 1;
    } else {
        sp_log(SP_LOG_DEBUG, cmd->saga_id, "reply %.*s", (int)e->reply_len, e->reply);
        sp_produce(p, e);
    }
    sp_command_free(cmd);
}

/* ------------------------------------------------------------------------ the loop */

int saga_participant_run(saga_participant_t *p)
{
    if (!p || p->ran)
        return -1;
    p->ran = 1;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, p->command_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(p->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        sp_log(SP_LOG_ERROR, NULL, "subscribe to %s: %s", p->command_topic, rd_kafka_err2str(err));
        return -1;
    }
    sp_log(SP_LOG_INFO, NULL, "consuming %s", p->command_topic);
    while (!sp_stopping(p)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, SP_POLL_MS);
        if (m) {
            if (!m->err)
                sp_handle_message(p, m);
            else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sp_log(SP_LOG_WARN, NULL, "consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
        }
        rd_kafka_poll(p->producer, 0);
        sp_entries_advance(p);
    }
    sp_log(SP_LOG_INFO, NULL, "stopping: flushing replies and committing offsets");
    sp_entries_drain(p, SP_SHUTDOWN_DRAIN_MS);
    err = rd_kafka_commit(p->consumer, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        sp_log(SP_LOG_WARN, NULL, "commit at shutdown: %s", rd_kafka_err2str(err));
    err = rd_kafka_consumer_close(p->consumer);
    if (err)
        sp_log(SP_LOG_WARN, NULL, "consumer close: %s", rd_kafka_err2str(err));
    sp_log(SP_LOG_INFO, NULL, "stopped");
    return p->fatal ? -1 : 0;
}
