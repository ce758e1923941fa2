/* kafka.c - the coordinator's Kafka clients (see kafka.h). */
#include "kafka.h"

#include "log.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define KAFKA_FORWARD_HEADER "saga-forwarded-from" /* on input forwarded to its home */
#define KAFKA_METADATA_TIMEOUT_MS 5000
#define KAFKA_SEEK_TIMEOUT_MS 5000
#define KAFKA_FREE_FLUSH_MS 1000

struct kafka {
    config_t cfg;
    kafka_events_t ev;
    rd_kafka_t *consumer, *producer;
    rd_kafka_queue_t *queue;
    rd_kafka_message_t **batch;   /* the last kafka_consume's messages */
    bus_message_t *msgs;          /* ... as the engine sees them */
    size_t nbatch;
    int64_t drained_us;           /* the input queue was last found empty (monotonic us) */
    bool fatal;
    bool assigned;                /* partitions were assigned explicitly (no group) */
    bool *paused;                 /* by input partition: paused by us (bus_pause) */
    size_t npaused;               /* entries of paused */
    rd_kafka_topic_t **warm;      /* topics the producer knows from the start (kafka_warm) */
    size_t nwarm;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- configuration ---------------------------------------------------------------- */

/* A librdkafka property and its value. */
typedef struct kafka_prop {
    const char *name, *value;
} kafka_prop_t;

/* The properties the coordinator's guarantees rest on: set after the user's, and a user
 * setting that contradicts one is refused rather than silently replaced. */
static const kafka_prop_t PINNED_CONSUMER[] = {
    {"enable.auto.offset.store", "false"}, /* an offset is stored only after its round */
    {"enable.auto.commit", "true"},        /* commits what was stored, nothing else */
    {"enable.partition.eof", "false"},
};
static const kafka_prop_t PINNED_PRODUCER[] = {
    {"enable.idempotence", "true"}, /* no duplicate or reordered commands from retries */
    {"acks", "all"},
};

static bool same_value(const char *a, const char *b)
{
    if (strcasecmp(a, b) == 0)
        return true;
    bool at = !strcasecmp(a, "true") || !strcmp(a, "1"), bt = !strcasecmp(b, "true") || !strcmp(b, "1");
    bool af = !strcasecmp(a, "false") || !strcmp(a, "0"), bf = !strcasecmp(b, "false") || !strcmp(b, "0");
    return (at && bt) || (af && bf) || ((!strcasecmp(a, "all") || !strcmp(a, "-1")) &&
                                        (!strcasecmp(b, "all") || !strcmp(b, "-1")));
}

static int conf_set_all(rd_kafka_conf_t *conf, const kafka_prop_t *props, size_t n, char *err,
                        size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char why[512];
        if (props[i].value &&
            rd_kafka_conf_set(conf, props[i].name, props[i].value, why, sizeof why) !=
                RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka property %s: %s", props[i].name, why);
            return -1;
        }
    }
    return 0;
}

/* The client configuration of scope 1 (consumer) or 2 (producer): tunable defaults, then
 * the user's kafka.* / consumer.* / producer.* properties, then the pinned ones. Returns
 * NULL with the reason in err (a property librdkafka refuses, or one that contradicts a
 * pinned value or the coordinator's own settings). */
static rd_kafka_conf_t *kafka_conf(const config_t *cfg, int scope, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char session[32];
    snprintf(session, sizeof session, "%lld", (long long)cfg->session_timeout_ms);
    const kafka_prop_t base[] = {{"bootstrap.servers", cfg->bootstrap_servers},
                                 {"client.id", cfg->instance_id}};
    const kafka_prop_t consumer[] = {{"auto.commit.interval.ms", "500"},
                                     {"auto.offset.reset", "earliest"},
                                     {"session.timeout.ms", session},
                                     {"fetch.wait.max.ms", "10"},
                                     {"fetch.error.backoff.ms", "10"},
                                     {"group.instance.id", cfg->group_instance_id[0]
                                                               ? cfg->group_instance_id
                                                               : NULL}};
    const kafka_prop_t producer[] = {{"linger.ms", "1"}, {"partitioner", "murmur2_random"}};
    /* What the coordinator's own settings decide: group_id, not kafka.group.id. */
    const kafka_prop_t owned[] = {{"group.id", cfg->group_id}};
    const kafka_prop_t *pinned = scope == 1 ? PINNED_CONSUMER : PINNED_PRODUCER;
    size_t npinned = scope == 1 ? sizeof PINNED_CONSUMER / sizeof *PINNED_CONSUMER
                                : sizeof PINNED_PRODUCER / sizeof *PINNED_PRODUCER;
    if (conf_set_all(conf, base, 2, err, errlen) < 0 ||
        (scope == 1 ? conf_set_all(conf, consumer, sizeof consumer / sizeof *consumer, err, errlen)
                    : conf_set_all(conf, producer, sizeof producer / sizeof *producer, err,
                                   errlen)) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->prop_count; i++) {
        const config_prop_t *p = &cfg->props[i];
        if (p->scope != 0 && p->scope != scope)
            continue;
        for (size_t k = 0; k < npinned; k++)
            if (strcmp(p->name, pinned[k].name) == 0 && !same_value(p->value, pinned[k].value)) {
                snprintf(err, errlen, "kafka property %s=%s: the coordinator needs %s=%s (its "
                         "delivery guarantees rest on it; docs/reliability.md)", p->name,
                         p->value, pinned[k].name, pinned[k].value);
                goto fail;
            }
        if (scope == 1 && strcmp(p->name, "group.id") == 0 && strcmp(p->value, cfg->group_id)) {
            snprintf(err, errlen, "kafka property group.id=%s: set the group with group_id "
                     "(now \"%s\")", p->value, cfg->group_id);
            goto fail;
        }
        if (scope == 1 && strcmp(p->name, "partition.assignment.strategy") == 0 &&
            strstr(p->value, "cooperative")) {
            snprintf(err, errlen, "kafka property partition.assignment.strategy=%s: the "
                     "coordinator handles eager rebalancing only (range or roundrobin)",
                     p->value);
            goto fail;
        }
        char why[512];
        if (rd_kafka_conf_set(conf, p->name, p->value, why, sizeof why) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka property %s: %s", p->name, why);
            goto fail;
        }
    }
    if ((scope == 1 && conf_set_all(conf, owned, 1, err, errlen) < 0) ||
        conf_set_all(conf, pinned, npinned, err, errlen) < 0)
        goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* --- pausing ------------------------------------------------------------------------

   librdkafka before 2.4.0 (Debian 12 has 2.0.2) bumps a partition's fetch version on a
   resume even when the partition is not paused, and the fetcher then starts from a stale
   position (confluentinc/librdkafka#4637): right after an assignment, that can leave the
   partition never fetched (its input waits for good), or fetched from where an earlier
   assignment had read to (input skipped). So only a partition paused here is resumed,
   and a paused partition is resumed before it is given up, so that none stays paused
   into its next assignment. */

static bool paused_here(const kafka_t *k, int32_t partition)
{
    return partition >= 0 && (size_t)partition < k->npaused && k->paused[partition];
}

/* Records partition's pause state. Returns 0, or -1 when out of memory. */
static int note_paused(kafka_t *k, int32_t partition, bool paused)
{
    if (partition < 0)
        return -1;
    if ((size_t)partition >= k->npaused) {
        if (!paused)
            return 0;
        size_t n = (size_t)partition + 1;
        bool *grown = realloc(k->paused, n * sizeof *grown);
        if (!grown)
            return -1;
        memset(grown + k->npaused, 0, (n - k->npaused) * sizeof *grown);
        k->paused = grown;
        k->npaused = n;
    }
    k->paused[partition] = paused;
    return 0;
}

/* Resumes those of partitions[0..n) paused here (all of them when partitions is NULL), before
 * they are given up. */
static void resume_before_giving_up(kafka_t *k, const int32_t *partitions, int n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (partitions) {
        for (int i = 0; i < n; i++)
            if (paused_here(k, partitions[i])) {
                rd_kafka_topic_partition_list_add(l, k->cfg.input_topic, partitions[i]);
                k->paused[partitions[i]] = false;
            }
    } else {
        for (size_t p = 0; p < k->npaused; p++)
            if (k->paused[p]) {
                rd_kafka_topic_partition_list_add(l, k->cfg.input_topic, (int32_t)p);
                k->paused[p] = false;
            }
    }
    if (l->cnt > 0)
        (void)rd_kafka_resume_partitions(k->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* --- callbacks --------------------------------------------------------------------- */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *list, void *opaque)
{
    kafka_t *k = opaque;
    int32_t *parts = calloc((size_t)(list->cnt ? list->cnt : 1), sizeof *parts);
    if (!parts) {
        log_error("out of memory in a rebalance");
        abort(); /* cannot own partitions it does not know of; a restart recovers all */
    }
    for (int i = 0; i < list->cnt; i++)
        parts[i] = list->elems[i].partition;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        k->ev.on_assign(k->ev.opaque, parts, list->cnt);
        rd_kafka_assign(rk, list);
        k->ev.after_assign(k->ev.opaque, parts, list->cnt);
    } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            log_error("rebalance error: %s", rd_kafka_err2str(err));
        k->ev.on_revoke(k->ev.opaque, parts, list->cnt);
        resume_before_giving_up(k, NULL, 0);
        rd_kafka_assign(rk, NULL);
    }
    free(parts);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kafka_t *k = opaque;
    k->ev.on_delivery(k->ev.opaque, m->_private, m->partition, rd_kafka_topic_name(m->rkt),
                      (int)m->err, m->err ? rd_kafka_err2str(m->err) : NULL);
}

/* librdkafka's errors. Most are transient and librdkafka retries them itself; a fatal one
 * (the idempotent producer lost its guarantees, a fenced or unrecoverable client) means
 * this instance must stop serving: with no reliable producer, rounds cannot complete and
 * every reload would re-send the same outbox again. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_t *k = opaque;
    if (err != RD_KAFKA_RESP_ERR__FATAL) {
        log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
        return;
    }
    char why[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
    if (!k->fatal)
        log_error("kafka: fatal error %s: %s; this instance stops serving (another takes its "
                  "partitions over)", rd_kafka_err2name(orig), why);
    k->fatal = true;
    k->ev.on_fatal(k->ev.opaque);
}

/* --- the bus port ----------------------------------------------------------------- */

static int bus_produce(void *opaque, const char *topic, int32_t partition, const char *key,
                       size_t key_len, const char *value, size_t len, int32_t forwarded_from,
                       void *delivery, char *err, size_t errlen)
{
    kafka_t *k = opaque;
    for (;;) {
        char from[24];
        int from_len = snprintf(from, sizeof from, "%d", (int)forwarded_from);
        rd_kafka_headers_t *hdrs = NULL;
        if (forwarded_from >= 0) {
            hdrs = rd_kafka_headers_new(1);
            rd_kafka_header_add(hdrs, KAFKA_FORWARD_HEADER, -1, from, from_len);
        }
        rd_kafka_resp_err_t e = rd_kafka_producev(
            k->producer, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_PARTITION(partition >= 0 ? partition : RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(delivery),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (e && hdrs)
            rd_kafka_headers_destroy(hdrs); /* owned by the message only when produced */
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(k->producer, 10);
            continue;
        }
        if (e) {
            snprintf(err, errlen, "%s", rd_kafka_err2str(e));
            return -1;
        }
        return 0;
    }
}

static int bus_flush(void *opaque, int timeout_ms)
{
    kafka_t *k = opaque;
    return rd_kafka_flush(k->producer, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

static void bus_poll(void *opaque)
{
    kafka_t *k = opaque;
    rd_kafka_poll(k->producer, 0);
}

static int bus_outq_len(void *opaque)
{
    kafka_t *k = opaque;
    return rd_kafka_outq_len(k->producer);
}

static rd_kafka_topic_partition_list_t *one_partition(kafka_t *k, int32_t partition,
                                                      rd_kafka_topic_partition_t **tp)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    *tp = rd_kafka_topic_partition_list_add(l, k->cfg.input_topic, partition);
    return l;
}

/* Pauses or resumes partition; a resume of a partition not paused here is nothing (see
 * "pausing" above). */
static int bus_pause(void *opaque, int32_t partition, bool pause, char *err, size_t errlen)
{
    kafka_t *k = opaque;
    if (!pause && !paused_here(k, partition))
        return 0;
    if (pause && note_paused(k, partition, true) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rd_kafka_topic_partition_t *tp;
    rd_kafka_topic_partition_list_t *l = one_partition(k, partition, &tp);
    rd_kafka_resp_err_t e = pause ? rd_kafka_pause_partitions(k->consumer, l)
                                  : rd_kafka_resume_partitions(k->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errlen, "%s", rd_kafka_err2str(e));
        return -1;
    }
    if (!pause)
        (void)note_paused(k, partition, false);
    return 0;
}

static int bus_committed(void *opaque, int32_t partition, int timeout_ms, int64_t *offset)
{
    kafka_t *k = opaque;
    rd_kafka_topic_partition_t *tp;
    rd_kafka_topic_partition_list_t *l = one_partition(k, partition, &tp);
    int rc = -1;
    if (!rd_kafka_committed(k->consumer, l, timeout_ms) && !tp->err) {
        *offset = tp->offset >= 0 ? tp->offset : -1;
        rc = 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static int bus_seek(void *opaque, int32_t partition, int64_t offset, char *err, size_t errlen)
{
    kafka_t *k = opaque;
    if (offset < 0 && (bus_committed(k, partition, KAFKA_SEEK_TIMEOUT_MS, &offset) < 0 ||
                       offset < 0))
        offset = RD_KAFKA_OFFSET_BEGINNING; /* nothing committed: as auto.offset.reset */
    rd_kafka_topic_partition_t *tp;
    rd_kafka_topic_partition_list_t *l = one_partition(k, partition, &tp);
    tp->offset = offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(k->consumer, l, KAFKA_SEEK_TIMEOUT_MS);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errlen, "%s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    return 0;
}

static int bus_end_offsets(void *opaque, int32_t partition, int timeout_ms, int64_t *low,
                           int64_t *high, char *err, size_t errlen)
{
    kafka_t *k = opaque;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(k->consumer, k->cfg.input_topic,
                                                             partition, low, high, timeout_ms);
    if (e)
        snprintf(err, errlen, "%s", rd_kafka_err2str(e));
    return e ? -1 : 0;
}

static int bus_store_offsets(void *opaque, const int32_t *partitions, const int64_t *offsets,
                             size_t n, char *err, size_t errlen)
{
    kafka_t *k = opaque;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, k->cfg.input_topic, partitions[i])->offset =
            offsets[i];
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(k->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        snprintf(err, errlen, "%s", rd_kafka_err2str(e));
    return e ? -1 : 0;
}

/* High watermark (cached by librdkafka from fetches, no round trip) minus the consumer's
 * position (local). */
static void bus_lag(void *opaque, const int32_t *partitions, const int64_t *fallback,
                    size_t n, int64_t *lag)
{
    kafka_t *k = opaque;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, k->cfg.input_topic, partitions[i]);
    (void)rd_kafka_position(k->consumer, l); /* per-partition errors checked below */
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_partition_t *tp = &l->elems[i];
        int64_t lo = -1, hi = -1, pos = tp->err ? -1 : tp->offset;
        if (pos < 0)
            pos = fallback[i];
        (void)rd_kafka_get_watermark_offsets(k->consumer, k->cfg.input_topic, partitions[i],
                                             &lo, &hi);
        lag[i] = hi >= 0 && pos >= 0 ? (hi > pos ? hi - pos : 0) : -1;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void bus_test_fatal(void *opaque)
{
    kafka_t *k = opaque;
    (void)rd_kafka_test_fatal_error(k->producer, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                    "test: SAGA_FATAL_AT");
}

bus_t kafka_bus(kafka_t *k)
{
    bus_t b = {.opaque = k,
               .input_topic = k->cfg.input_topic,
               .produce = bus_produce,
               .flush = bus_flush,
               .poll = bus_poll,
               .outq_len = bus_outq_len,
               .pause = bus_pause,
               .seek = bus_seek,
               .end_offsets = bus_end_offsets,
               .committed = bus_committed,
               .store_offsets = bus_store_offsets,
               .lag = bus_lag,
               .test_fatal = bus_test_fatal};
    return b;
}

/* --- input -------------------------------------------------------------------------- */

static void to_bus_message(const rd_kafka_message_t *km, bus_message_t *m)
{
    memset(m, 0, sizeof *m);
    m->partition = km->partition;
    m->offset = km->offset;
    m->key = km->key;
    m->key_len = km->key_len;
    m->value = km->payload;
    m->len = km->len;
    m->forwarded_from = -1;
    if (km->err) {
        m->err = (int)km->err;
        m->err_is_eof = km->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
        m->errstr = rd_kafka_message_errstr(km);
        return;
    }
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t size;
    if (rd_kafka_message_headers(km, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, KAFKA_FORWARD_HEADER, &val, &size) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
        char text[24];
        snprintf(text, sizeof text, "%.*s", (int)(size < 23 ? size : 23), val ? (const char *)val : "");
        m->forwarded_from = (int32_t)atoi(text);
        if (m->forwarded_from < 0)
            m->forwarded_from = 0; /* forwarded all the same */
    }
}

size_t kafka_consume(kafka_t *k, int wait_ms, const bus_message_t **msgs, int64_t *avail_us)
{
    kafka_release(k);
    size_t cap = (size_t)k->cfg.batch_size;
    ssize_t n = rd_kafka_consume_batch_queue(k->queue, 0, k->batch, 1);
    *avail_us = k->drained_us; /* this turn's messages were available since */
    if (n == 0) {
        n = rd_kafka_consume_batch_queue(k->queue, wait_ms, k->batch, 1);
        *avail_us = mono_us();
    }
    if (n == 1 && cap > 1) {
        ssize_t more = rd_kafka_consume_batch_queue(k->queue, 0, k->batch + 1, cap - 1);
        n += more > 0 ? more : 0;
    }
    if (n < 0) {
        log_error("consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
        n = 0;
    }
    if ((size_t)n < cap)
        k->drained_us = mono_us();
    k->nbatch = (size_t)n;
    for (size_t i = 0; i < k->nbatch; i++)
        to_bus_message(k->batch[i], &k->msgs[i]);
    *msgs = k->msgs;
    return k->nbatch;
}

void kafka_release(kafka_t *k)
{
    for (size_t i = 0; i < k->nbatch; i++)
        rd_kafka_message_destroy(k->batch[i]);
    k->nbatch = 0;
}

/* --- lifecycle ---------------------------------------------------------------------- */

kafka_t *kafka_new(const config_t *cfg, const kafka_events_t *ev, char *err, size_t errlen)
{
    kafka_t *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    k->cfg = *cfg;
    k->ev = *ev;
    k->batch = calloc((size_t)cfg->batch_size, sizeof *k->batch);
    k->msgs = calloc((size_t)cfg->batch_size, sizeof *k->msgs);
    if (!k->batch || !k->msgs) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    rd_kafka_conf_t *pconf = kafka_conf(cfg, 2, err, errlen);
    if (!pconf)
        goto err;
    rd_kafka_conf_set_opaque(pconf, k);
    rd_kafka_conf_set_dr_msg_cb(pconf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(pconf, error_cb);
    k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, errlen);
    if (!k->producer) {
        rd_kafka_conf_destroy(pconf);
        goto err;
    }
    rd_kafka_conf_t *cconf = kafka_conf(cfg, 1, err, errlen);
    if (!cconf)
        goto err;
    rd_kafka_conf_set_opaque(cconf, k);
    rd_kafka_conf_set_rebalance_cb(cconf, rebalance_cb);
    rd_kafka_conf_set_error_cb(cconf, error_cb);
    k->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, errlen);
    if (!k->consumer) {
        rd_kafka_conf_destroy(cconf);
        goto err;
    }
    rd_kafka_poll_set_consumer(k->consumer);
    k->queue = rd_kafka_queue_get_consumer(k->consumer);
    return k;
err:
    kafka_free(k);
    return NULL;
}

void kafka_free(kafka_t *k)
{
    if (!k)
        return;
    kafka_release(k);
    for (size_t i = 0; i < k->nwarm; i++)
        rd_kafka_topic_destroy(k->warm[i]);
    free(k->warm);
    if (k->queue)
        rd_kafka_queue_destroy(k->queue);
    if (k->consumer)
        rd_kafka_destroy(k->consumer);
    if (k->producer) {
        rd_kafka_flush(k->producer, KAFKA_FREE_FLUSH_MS);
        rd_kafka_destroy(k->producer); /* its delivery reports still reach ev */
    }
    free(k->batch);
    free(k->msgs);
    free(k->paused);
    free(k);
}

int kafka_input_topic(kafka_t *k, int *partitions, int *replicas, char *err, size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->producer, k->cfg.input_topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(k->producer, 0, rkt, &md, KAFKA_METADATA_TIMEOUT_MS);
    int rc = -1;
    if (!e && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0) {
        *partitions = md->topics[0].partition_cnt;
        *replicas = md->topics[0].partitions[0].replica_cnt;
        rc = 0;
    } else {
        snprintf(err, errlen, "%s",
                 rd_kafka_err2str(e ? e
                                    : md && md->topic_cnt ? md->topics[0].err
                                                          : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

void kafka_warm(kafka_t *k, const char *const *topics, size_t n)
{
    rd_kafka_topic_t **warm = realloc(k->warm, (k->nwarm + n) * sizeof *warm);
    if (!warm)
        return; /* only slower: metadata is then fetched at the first produce */
    k->warm = warm;
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (size_t j = 0; j < k->nwarm && !known; j++)
            known = strcmp(rd_kafka_topic_name(k->warm[j]), topics[i]) == 0;
        rd_kafka_topic_t *t = known ? NULL : rd_kafka_topic_new(k->producer, topics[i], NULL);
        if (t)
            k->warm[k->nwarm++] = t;
    }
    /* One metadata request for the topics the producer knows (all_topics 0, no topic). */
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(k->producer, 0, NULL, &md, KAFKA_METADATA_TIMEOUT_MS) ==
        RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
}

int kafka_subscribe(kafka_t *k)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, k->cfg.input_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        log_error("cannot subscribe to %s: %s", k->cfg.input_topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* One incremental (un)assignment of input partitions, at offsets when given. */
static int change_assignment(kafka_t *k, const int32_t *partitions, const int64_t *offsets,
                             int n, bool assign)
{
    if (!assign)
        resume_before_giving_up(k, partitions, n);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, k->cfg.input_topic, partitions[i])->offset =
            offsets && offsets[i] >= 0 ? offsets[i] : RD_KAFKA_OFFSET_INVALID;
    rd_kafka_error_t *e = assign ? rd_kafka_incremental_assign(k->consumer, l)
                                 : rd_kafka_incremental_unassign(k->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        log_error("cannot %s input partitions: %s", assign ? "assign" : "unassign",
                  rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    k->assigned = true;
    return 0;
}

int kafka_assign(kafka_t *k, const int32_t *partitions, const int64_t *offsets, int n)
{
    return change_assignment(k, partitions, offsets, n, true);
}

int kafka_unassign(kafka_t *k, const int32_t *partitions, int n)
{
    return change_assignment(k, partitions, NULL, n, false);
}

void kafka_close(kafka_t *k)
{
    kafka_release(k);
    if (k->assigned) {
        /* Explicit assignment (membership=redis): no group to leave; commit what is
         * stored, as leaving the group would. */
        (void)rd_kafka_commit(k->consumer, NULL, 0);
        (void)rd_kafka_assign(k->consumer, NULL);
    }
    rd_kafka_consumer_close(k->consumer); /* revokes: stored offsets are committed */
}
