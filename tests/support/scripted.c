/* scripted.c - the scripted test participant (see scripted.h). */
#include "scripted.h"

#include "fixture.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reply held back by SCRIPT_OK_AFTER until due_ms. */
typedef struct delayed {
    int64_t due_ms;
    json_t *cmd, *output;   /* owned */
} delayed_t;

struct scripted {
    rd_kafka_t *consumer, *producer;
    script_rule_t *rules;
    size_t nrules;
    json_t *commands;          /* guarded by lock */
    pthread_mutex_t lock;
    pthread_t thread;
    volatile int stop;
    delayed_t *delayed;        /* only the thread touches these */
    size_t ndelayed, delayed_cap;
};

static bool rule_matches(const script_rule_t *r, const char *saga, const char *step,
                         const char *kind, int attempt)
{
    return (!r->saga_id || strcmp(r->saga_id, saga) == 0) &&
           (!r->step || strcmp(r->step, step) == 0) &&
           (!r->kind || strcmp(r->kind, kind) == 0) &&
           (r->attempt_max == 0 || attempt <= r->attempt_max);
}

static void send_reply(scripted_t *p, const json_t *cmd, const char *status, bool retryable,
                       json_t *output)
{
    const json_t *reply_to = json_object_get(cmd, "reply_to");
    const char *topic = json_string_value(json_object_get(reply_to, "topic"));
    int partition = (int)json_integer_value(json_object_get(reply_to, "partition"));
    const char *saga = json_string_value(json_object_get(cmd, "saga_id"));
    json_t *r = json_pack("{s:s, s:O, s:O, s:O, s:O, s:O, s:s}", "type", "reply", "command_id",
                          json_object_get(cmd, "command_id"), "saga_id",
                          json_object_get(cmd, "saga_id"), "step", json_object_get(cmd, "step"),
                          "kind", json_object_get(cmd, "kind"), "attempt",
                          json_object_get(cmd, "attempt"), "status", status);
    if (output)
        json_object_set(r, "output", output);
    else if (strcmp(status, "ok") == 0)
        json_object_set_new(r, "output", json_object()); /* reply.json: ok carries one */
    if (strcmp(status, "failed") == 0) {
        json_object_set_new(r, "error", json_string("scripted failure"));
        json_object_set_new(r, "retryable", json_boolean(retryable));
    }
    char *text = json_dumps(r, JSON_COMPACT);
    rd_kafka_producev(p->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                      RD_KAFKA_V_KEY(saga, strlen(saga)), RD_KAFKA_V_VALUE(text, strlen(text)),
                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    rd_kafka_poll(p->producer, 0);
    free(text);
    json_decref(r);
}

static void answer(scripted_t *p, json_t *cmd)
{
    const char *saga = json_string_value(json_object_get(cmd, "saga_id"));
    const char *step = json_string_value(json_object_get(cmd, "step"));
    const char *kind = json_string_value(json_object_get(cmd, "kind"));
    int attempt = (int)json_integer_value(json_object_get(cmd, "attempt"));
    if (!saga || !step || !kind)
        return;
    const script_rule_t *rule = NULL;
    for (size_t i = 0; i < p->nrules && !rule; i++)
        if (rule_matches(&p->rules[i], saga, step, kind, attempt))
            rule = &p->rules[i];
    script_answer_t a = rule ? rule->answer : SCRIPT_OK;
    json_t *output = NULL;
    if (a == SCRIPT_OK || a == SCRIPT_OK_TWICE || a == SCRIPT_OK_AFTER) {
        if (rule && rule->output)
            output = json_loads(rule->output, 0, NULL);
        if (!output) {
            char key[256];
            snprintf(key, sizeof key, "%s_id", step);
            output = json_pack("{s:s}", key, saga);
        }
    }
    switch (a) {
    case SCRIPT_OK: send_reply(p, cmd, "ok", false, output); break;
    case SCRIPT_OK_TWICE:
        send_reply(p, cmd, "ok", false, output);
        send_reply(p, cmd, "ok", false, output);
        break;
    case SCRIPT_FAIL: send_reply(p, cmd, "failed", false, NULL); break;
    case SCRIPT_FAIL_RETRYABLE: send_reply(p, cmd, "failed", true, NULL); break;
    case SCRIPT_SILENT: break;
    case SCRIPT_OK_AFTER:
        if (p->ndelayed == p->delayed_cap) {
            size_t cap = p->delayed_cap ? 2 * p->delayed_cap : 16;
            delayed_t *d = realloc(p->delayed, cap * sizeof *d);
            if (!d)
                break;
            p->delayed = d;
            p->delayed_cap = cap;
        }
        p->delayed[p->ndelayed++] = (delayed_t){fixture_now_ms() + rule->delay_ms,
                                                json_incref(cmd), json_incref(output)};
        break;
    }
    json_decref(output);
}

/* Sends the held-back replies that are due; with all, every one (at stop: dropped). */
static void send_due(scripted_t *p, bool drop_all)
{
    int64_t now = fixture_now_ms();
    for (size_t i = 0; i < p->ndelayed;) {
        delayed_t *d = &p->delayed[i];
        if (!drop_all && d->due_ms > now) {
            i++;
            continue;
        }
        if (!drop_all)
            send_reply(p, d->cmd, "ok", false, d->output);
        json_decref(d->cmd);
        json_decref(d->output);
        p->delayed[i] = p->delayed[--p->ndelayed];
    }
}

static void *run(void *opaque)
{
    scripted_t *p = opaque;
    while (!p->stop) {
        send_due(p, false);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, p->ndelayed ? 5 : 50);
        if (!m)
            continue;
        if (!m->err) {
            json_t *cmd = json_loadb(m->payload, m->len, 0, NULL);
            if (cmd) {
                pthread_mutex_lock(&p->lock);
                json_array_append(p->commands, cmd);
                pthread_mutex_unlock(&p->lock);
                answer(p, cmd);
                json_decref(cmd);
            }
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* Assigns every partition of every topic from the beginning. */
static int assign_all(rd_kafka_t *rk, const char *const *topics)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (const char *const *t = topics; *t; t++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, *t, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int tries = 0; tries < 50; tries++) {
            err = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
            if (!err && md->topic_cnt == 1 && md->topics[0].partition_cnt > 0)
                break;
            if (md)
                rd_kafka_metadata_destroy(md);
            md = NULL;
        }
        rd_kafka_topic_destroy(rkt);
        if (!md) {
            fprintf(stderr, "scripted: no metadata for %s: %s\n", *t, rd_kafka_err2str(err));
            rd_kafka_topic_partition_list_destroy(l);
            return -1;
        }
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(l, *t, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    return err ? -1 : 0;
}

scripted_t *scripted_start(const char *bootstrap, const char *const *topics,
                           const script_rule_t *rules, size_t n)
{
    scripted_t *p = calloc(1, sizeof *p);
    char err[512] = "";
    p->rules = calloc(n ? n : 1, sizeof *rules);
    if (n)
        memcpy(p->rules, rules, n * sizeof *rules);
    p->nrules = n;
    p->commands = json_array();
    pthread_mutex_init(&p->lock, NULL);
    p->producer = fixture_producer_new(bootstrap);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "scripted-participant", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, sizeof err);
    rd_kafka_conf_set(conf, "fetch.error.backoff.ms", "10", err, sizeof err);
    p->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!p->producer || !p->consumer || assign_all(p->consumer, topics) < 0) {
        fprintf(stderr, "scripted: cannot start: %s\n", err);
        scripted_stop(p);
        return NULL;
    }
    pthread_create(&p->thread, NULL, run, p);
    return p;
}

void scripted_stop(scripted_t *p)
{
    if (!p)
        return;
    if (p->thread) {
        p->stop = 1;
        pthread_join(p->thread, NULL);
    }
    if (p->consumer) {
        rd_kafka_consumer_close(p->consumer);
        rd_kafka_destroy(p->consumer);
    }
    if (p->producer) {
        rd_kafka_flush(p->producer, 2000);
        rd_kafka_destroy(p->producer);
    }
    send_due(p, true);
    free(p->delayed);
    json_decref(p->commands);
    pthread_mutex_destroy(&p->lock);
    free(p->rules);
    free(p);
}

size_t scripted_count(scripted_t *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = json_array_size(p->commands);
    pthread_mutex_unlock(&p->lock);
    return n;
}

void scripted_forget(scripted_t *p)
{
    pthread_mutex_lock(&p->lock);
    json_array_clear(p->commands);
    pthread_mutex_unlock(&p->lock);
}

typedef struct wait_ctx {
    scripted_t *p;
    size_t n;
} wait_ctx_t;

static bool enough(void *opaque)
{
    wait_ctx_t *w = opaque;
    return scripted_count(w->p) >= w->n;
}

bool scripted_wait(scripted_t *p, size_t n, int timeout_ms)
{
    wait_ctx_t w = {p, n};
    return fixture_wait_until(enough, &w, timeout_ms);
}

json_t *scripted_commands(scripted_t *p, const char *saga_id)
{
    json_t *out = json_array();
    pthread_mutex_lock(&p->lock);
    size_t i;
    json_t *c;
    json_array_foreach(p->commands, i, c)
    {
        const char *s = json_string_value(json_object_get(c, "saga_id"));
        if (!saga_id || (s && strcmp(s, saga_id) == 0))
            json_array_append_new(out, json_deep_copy(c));
    }
    pthread_mutex_unlock(&p->lock);
    return out;
}

void scripted_trail(scripted_t *p, const char *saga_id, char *buf, size_t len)
{
    json_t *cmds = scripted_commands(p, saga_id);
    size_t used = 0, i;
    json_t *c;
    buf[0] = '\0';
    json_array_foreach(cmds, i, c)
    {
        int n = snprintf(buf + used, len - used, "%s%s/%s/%lld", used ? " " : "",
                         json_string_value(json_object_get(c, "step")),
                         json_string_value(json_object_get(c, "kind")),
                         (long long)json_integer_value(json_object_get(c, "attempt")));
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    json_decref(cmds);
}
