/* ctl.c - sagactl's verbs (see ctl.h): reads through query.h, requests through a Kafka
 * producer, outcomes through a consumer of the outcomes topic, text through table.h. */
#include "ctl.h"

#include "catalogue.h"
#include "dryrun.h"
#include "protocol.h"
#include "query.h"
#include "saga.h"
#include "table.h"

#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CTL_METADATA_TIMEOUT_MS 5000
#define CTL_INPUT_MAX_BYTES (16 * 1024 * 1024)

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- formatting ------------------------------------------------------------------- */

void ctl_format_time(int64_t ms, char *buf, size_t len)
{
    if (ms <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", day, (int)(ms % 1000));
}

void ctl_format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms < 0)
        snprintf(buf, len, "-");
    else if (ms < 1000)
        snprintf(buf, len, "%lld ms", (long long)ms);
    else if (ms < 60000)
        snprintf(buf, len, "%.1f s", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(buf, len, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else
        snprintf(buf, len, "%lldh%02lldm", (long long)(ms / 3600000),
                 (long long)(ms / 60000 % 60));
}

int ctl_parse_time(const char *s, int64_t now_ms, int64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == 0 && end != s && *end == '\0' && v >= 0) {
        *out = v;
        return 0;
    }
    if (errno == 0 && end != s && v >= 0 && end[1] == '\0') {
        int64_t unit = *end == 's' ? 1000 : *end == 'm' ? 60000 : *end == 'h' ? 3600000
                     : *end == 'd' ? 86400000 : 0;
        if (unit) {
            *out = now_ms - (int64_t)v * unit;
            return 0;
        }
    }
    static const char *const FORMATS[] = {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S",
                                          "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"};
    for (size_t i = 0; i < sizeof FORMATS / sizeof *FORMATS; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *rest = strptime(s, FORMATS[i], &tm);
        if (rest && *rest == '\0') {
            *out = (int64_t)timegm(&tm) * 1000;
            return 0;
        }
    }
    return -1;
}

/* Copies s into buf cut to max characters, with "..." when cut. */
static const char *cut(const char *s, size_t max, char *buf, size_t len)
{
    if (!s || !*s)
        return "-";
    size_t n = strlen(s);
    if (n <= max || max < 4 || max + 1 > len) {
        snprintf(buf, len, "%s", s);
    } else {
        size_t k = max - 3;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--; /* do not split a UTF-8 character */
        snprintf(buf, len, "%.*s...", (int)k, s);
    }
    return buf;
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int64_t jint(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

/* Prints a JSON document followed by a newline. Steals o. */
static void print_json(const ctl_options_t *o, json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text) {
        fprintf(o->out, "%s\n", text);
        free(text);
    }
    json_decref(doc);
}

/* --- Redis ------------------------------------------------------------------------ */

static query_t *open_query(const ctl_options_t *o)
{
    char err[512];
    query_t *q = query_new(o->cfg, err, sizeof err);
    if (!q)
        fprintf(o->err, "sagactl: %s\n", err);
    return q;
}

static int query_exit(const ctl_options_t *o, query_t *q, int rc)
{
    fprintf(o->err, "sagactl: %s\n", query_last_error(q));
    return rc == QUERY_ERR_NOT_FOUND ? CTL_NOT_FOUND
           : rc == QUERY_ERR_ARG     ? CTL_USAGE
                                     : CTL_UNREACHABLE;
}

/* --- list ------------------------------------------------------------------------- */

int ctl_list(const ctl_options_t *o)
{
    query_t *q = open_query(o);
    if (!q)
        return CTL_UNREACHABLE;
    query_filter_t f = {.status = o->status, .definition = o->definition,
                        .since_ms = o->since_ms, .until_ms = o->until_ms, .limit = o->limit,
                        .cursor = o->cursor};
    json_t *res = NULL;
    int rc = query_list(q, &f, &res);
    if (rc != QUERY_OK) {
        rc = query_exit(o, q, rc);
        query_free(q);
        return rc;
    }
    query_free(q);
    if (o->json) {
        print_json(o, res);
        return CTL_OK;
    }
    json_t *sagas = json_object_get(res, "sagas");
    table_t *t = table_new(7, "ID", "DEFINITION", "STATUS", "STEP", "ATTEMPT", "UPDATED", "ERROR");
    size_t i;
    json_t *s;
    int64_t now = wall_ms();
    json_array_foreach(sagas, i, s)
    {
        char def[300], att[32], when[64], age[32], err[CTL_ERROR_COLUMN + 8];
        snprintf(def, sizeof def, "%s v%lld", jstr(s, "definition") ? jstr(s, "definition") : "?",
                 (long long)jint(s, "definition_version"));
        snprintf(att, sizeof att, "%lld", (long long)jint(s, "attempt"));
        int64_t score = jint(s, "score");
        ctl_format_duration(now - score, age, sizeof age);
        ctl_format_time(score, when, sizeof when);
        snprintf(when + strlen(when), sizeof when - strlen(when), " (%s ago)", age);
        table_add(t, jstr(s, "id"), def, jstr(s, "status"), jstr(s, "step"), att, when,
                  cut(jstr(s, "error"), CTL_ERROR_COLUMN, err, sizeof err));
    }
    if (table_rows(t) == 0)
        fprintf(o->out, "no sagas match\n");
    else
        table_print(t, o->out);
    table_free(t);
    const char *next = jstr(res, "next_cursor");
    if (next)
        fprintf(o->out, "\nmore: add --cursor %s\n", next);
    json_decref(res);
    return CTL_OK;
}

/* --- show ------------------------------------------------------------------------- */

/* "+1.2 s" from the saga's start, or "-". */
static void rel(int64_t at, int64_t base, char *buf, size_t len)
{
    if (at <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    char d[32];
    ctl_format_duration(at >= base ? at - base : 0, d, sizeof d);
    snprintf(buf, len, "+%s", d);
}

static void show_text(const ctl_options_t *o, const json_t *saga, const json_t *history)
{
    char buf[512], a[64], b[64];
    int64_t created = jint(saga, "created_at");
    fprintf(o->out, "saga        %s\n", jstr(saga, "id"));
    fprintf(o->out, "definition  %s v%lld\n", jstr(saga, "definition"),
            (long long)jint(saga, "definition_version"));
    fprintf(o->out, "status      %s\n", jstr(saga, "status"));
    fprintf(o->out, "step        %s (attempt %lld)\n",
            jstr(saga, "step") && *jstr(saga, "step") ? jstr(saga, "step") : "-",
            (long long)jint(saga, "attempt"));
    fprintf(o->out, "partition   %lld (version %lld)\n", (long long)jint(saga, "partition"),
            (long long)jint(saga, "version"));
    ctl_format_time(created, a, sizeof a);
    fprintf(o->out, "created     %s\n", a);
    ctl_format_time(jint(saga, "updated_at"), a, sizeof a);
    fprintf(o->out, "updated     %s\n", a);
    if (jint(saga, "finished_at") > 0) {
        ctl_format_time(jint(saga, "finished_at"), a, sizeof a);
        ctl_format_duration(jint(saga, "finished_at") - created, b, sizeof b);
        fprintf(o->out, "finished    %s (took %s)\n", a, b);
    }
    if (jint(saga, "deadline_at") > 0) {
        ctl_format_time(jint(saga, "deadline_at"), a, sizeof a);
        fprintf(o->out, "deadline    %s\n", a);
    }
    const char *err = jstr(saga, "error");
    fprintf(o->out, "error       %s\n", err && *err ? err : "-");
    char *input = json_dumps(json_object_get(saga, "input"), JSON_COMPACT | JSON_SORT_KEYS);
    fprintf(o->out, "input       %s\n", input ? input : "-");
    free(input);

    fprintf(o->out, "\nSTEPS (times from the saga's start)\n");
    table_t *t = table_new(10, "#", "STEP", "PHASE", "ATTEMPTS", "STARTED", "TOOK", "COMP",
                           "COMP STARTED", "COMP TOOK", "ERROR");
    table_t *outs = table_new(2, "STEP", "OUTPUT");
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(saga, "steps"), i, st)
    {
        char idx[24], att[24], comp[24], s1[48], d1[48], s2[48], d2[48], e[CTL_ERROR_COLUMN + 8];
        snprintf(idx, sizeof idx, "%zu", i);
        snprintf(att, sizeof att, "%lld", (long long)jint(st, "attempt"));
        snprintf(comp, sizeof comp, "%lld", (long long)jint(st, "comp_attempt"));
        int64_t sa = jint(st, "started_at"), fa = jint(st, "finished_at");
        int64_t csa = jint(st, "comp_started_at"), cfa = jint(st, "comp_finished_at");
        rel(sa, created, s1, sizeof s1);
        rel(csa, created, s2, sizeof s2);
        if (sa > 0 && fa >= sa)
            ctl_format_duration(fa - sa, d1, sizeof d1);
        else
            snprintf(d1, sizeof d1, "%s", sa > 0 ? "(running)" : "-");
        if (csa > 0 && cfa >= csa)
            ctl_format_duration(cfa - csa, d2, sizeof d2);
        else
            snprintf(d2, sizeof d2, "%s", csa > 0 ? "(running)" : "-");
        table_add(t, idx, jstr(st, "name"), jstr(st, "phase"), att, s1, d1,
                  jint(st, "comp_attempt") ? comp : "-", s2, d2,
                  cut(jstr(st, "error"), CTL_ERROR_COLUMN, e, sizeof e));
        json_t *out = json_object_get(st, "output");
        if (out) {
            char *text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
            table_add(outs, jstr(st, "name"), cut(text, 100, buf, sizeof buf));
            free(text);
        }
    }
    table_print(t, o->out);
    table_free(t);
    if (table_rows(outs)) {
        fprintf(o->out, "\nOUTPUTS\n");
        table_print(outs, o->out);
    }
    table_free(outs);

    fprintf(o->out, "\nHISTORY (%zu events)\n", json_array_size(history));
    t = table_new(6, "AT", "EVENT", "STEP", "KIND", "ATTEMPT", "ERROR");
    json_t *h;
    json_array_foreach(history, i, h)
    {
        char at[48], att[24], e[CTL_ERROR_COLUMN + 8];
        rel(jint(h, "ts"), created, at, sizeof at);
        snprintf(att, sizeof att, "%lld", (long long)jint(h, "attempt"));
        table_add(t, at, jstr(h, "event"), jstr(h, "step"), jstr(h, "kind"),
                  json_object_get(h, "attempt") ? att : NULL,
                  cut(jstr(h, "error"), CTL_ERROR_COLUMN, e, sizeof e));
    }
    table_print(t, o->out);
    table_free(t);
}

int ctl_show(const ctl_options_t *o, const char *id)
{
    query_t *q = open_query(o);
    if (!q)
        return CTL_UNREACHABLE;
    json_t *res = NULL;
    int rc = query_show(q, id, &res);
    if (rc != QUERY_OK) {
        rc = query_exit(o, q, rc);
        query_free(q);
        return rc;
    }
    query_free(q);
    if (o->json)
        print_json(o, json_incref(res));
    else
        show_text(o, json_object_get(res, "saga"), json_object_get(res, "history"));
    json_decref(res);
    return CTL_OK;
}

/* --- stats ------------------------------------------------------------------------ */

static void stats_row(table_t *t, const char *name, const json_t *e)
{
    static const char *const KEYS[] = {"started", "completed", "compensated", "stuck",
                                       "running", "compensating", "stuck_now"};
    char cells[10][32];
    const char *row[10];
    row[0] = name;
    for (size_t i = 0; i < 7; i++) {
        snprintf(cells[i], sizeof cells[i], "%lld", (long long)jint(e, KEYS[i]));
        row[i + 1] = cells[i];
    }
    snprintf(cells[7], sizeof cells[7], "%.1f",
             json_real_value(json_object_get(e, "finished_per_min_1m")));
    snprintf(cells[8], sizeof cells[8], "%.2f",
             json_real_value(json_object_get(e, "finished_per_min_1h")));
    row[8] = cells[7];
    row[9] = cells[8];
    table_add_row(t, row);
}

int ctl_stats(const ctl_options_t *o)
{
    query_t *q = open_query(o);
    if (!q)
        return CTL_UNREACHABLE;
    json_t *res = NULL;
    int rc = query_stats(q, wall_ms(), &res);
    if (rc != QUERY_OK) {
        rc = query_exit(o, q, rc);
        query_free(q);
        return rc;
    }
    query_free(q);
    if (o->json) {
        print_json(o, res);
        return CTL_OK;
    }
    table_t *t = table_new(10, "DEFINITION", "STARTED", "COMPLETED", "COMPENSATED", "STUCK",
                           "RUNNING", "COMPENSATING", "STUCK NOW", "DONE/MIN 1M", "DONE/MIN 1H");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(res, "definitions"), i, e)
        stats_row(t, jstr(e, "definition"), e);
    stats_row(t, "(all)", json_object_get(res, "totals"));
    table_print(t, o->out);
    table_free(t);
    json_t *ix = json_object_get(res, "indexes");
    fprintf(o->out,
            "\nindexes: %lld running, %lld compensating, %lld stuck, %lld finished (kept for "
            "the retention) over %lld partitions\n",
            (long long)jint(ix, "running"), (long long)jint(ix, "compensating"),
            (long long)jint(ix, "stuck"), (long long)jint(ix, "finished"),
            (long long)jint(res, "partitions"));
    fprintf(o->out, "STUCK counts every time a saga got stuck; STUCK NOW those stuck now. "
                    "DONE/MIN: completed + compensated per minute.\n");
    if (json_is_true(json_object_get(res, "rates_truncated")))
        fprintf(o->out, "rates: more than %d sagas finished in the last hour; rates count the "
                        "newest only\n", QUERY_RATE_SCAN_MAX);
    json_decref(res);
    return CTL_OK;
}

/* --- cluster ---------------------------------------------------------------------- */

/* An integer cell, or "-" for null. */
static const char *int_cell(const json_t *v, char *buf, size_t len)
{
    if (!json_is_integer(v))
        return "-";
    snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    return buf;
}

static void cluster_members_text(const ctl_options_t *o, const json_t *members)
{
    fprintf(o->out, "INSTANCES (%zu live)\n", json_array_size(members));
    table_t *t = table_new(8, "INSTANCE", "HOST", "PID", "VERSION", "HTTP", "UP", "LAST SEEN",
                           "PARTITIONS");
    size_t i;
    json_t *m;
    int64_t now = wall_ms();
    json_array_foreach(members, i, m)
    {
        char pid[32], up[32], seen[48], parts[512] = "";
        snprintf(pid, sizeof pid, "%lld", (long long)jint(m, "pid"));
        ctl_format_duration(jint(m, "started_at") ? now - jint(m, "started_at") : -1, up,
                            sizeof up);
        ctl_format_duration(jint(m, "seen_ago_ms"), seen, sizeof seen);
        snprintf(seen + strlen(seen), sizeof seen - strlen(seen), " ago");
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(m, "partitions"), k, e)
        {
            size_t len = strlen(parts);
            snprintf(parts + len, sizeof parts - len, "%s%lld", k ? "," : "",
                     (long long)jint(e, "partition"));
        }
        const char *http = jstr(m, "http");
        table_add(t, jstr(m, "instance"), jstr(m, "host"), pid, jstr(m, "version"),
                  http && *http ? http : NULL, up, seen, parts[0] ? parts : NULL);
    }
    if (table_rows(t))
        table_print(t, o->out);
    else
        fprintf(o->out, "no live coordinator (no member record in Redis)\n");
    table_free(t);
}

/* Prints the partitions table; returns how many have no live owner. */
static int cluster_partitions_text(const ctl_options_t *o, const json_t *parts)
{
    fprintf(o->out, "\nPARTITIONS (%zu)\n", json_array_size(parts));
    table_t *t = table_new(12, "PARTITION", "OWNER", "LIVE", "EPOCH", "TAKEN", "LEASE",
                           "ACTIVE", "RUNNING", "COMPENSATING", "STUCK", "LAG", "OUTBOX");
    size_t i;
    json_t *p;
    int orphans = 0;
    json_array_foreach(parts, i, p)
    {
        char c[10][48];
        bool live = json_is_true(json_object_get(p, "owner_live"));
        if (!live)
            orphans++;
        snprintf(c[0], sizeof c[0], "%lld", (long long)jint(p, "partition"));
        snprintf(c[1], sizeof c[1], "%lld", (long long)jint(p, "epoch"));
        if (json_is_integer(json_object_get(p, "taken_ago_ms"))) {
            ctl_format_duration(jint(p, "taken_ago_ms"), c[2], sizeof c[2]);
            snprintf(c[2] + strlen(c[2]), sizeof c[2] - strlen(c[2]), " ago");
        } else {
            snprintf(c[2], sizeof c[2], "-");
        }
        /* membership=redis: the time the owner's lease has left ("-": no lease). */
        if (json_is_integer(json_object_get(p, "lease_left_ms")))
            snprintf(c[9], sizeof c[9], "%lld ms", (long long)jint(p, "lease_left_ms"));
        else
            snprintf(c[9], sizeof c[9], "-");
        table_add(t, c[0], jstr(p, "owner"), live ? "yes" : "NO", c[1], c[2], c[9],
                  int_cell(json_object_get(p, "active"), c[3], sizeof c[3]),
                  int_cell(json_object_get(p, "running"), c[4], sizeof c[4]),
                  int_cell(json_object_get(p, "compensating"), c[5], sizeof c[5]),
                  int_cell(json_object_get(p, "stuck"), c[6], sizeof c[6]),
                  int_cell(json_object_get(p, "lag"), c[7], sizeof c[7]),
                  int_cell(json_object_get(p, "outbox"), c[8], sizeof c[8]));
    }
    table_print(t, o->out);
    table_free(t);
    return orphans;
}

int ctl_cluster(const ctl_options_t *o)
{
    query_t *q = open_query(o);
    if (!q)
        return CTL_UNREACHABLE;
    json_t *res = NULL;
    int rc = query_cluster(q, wall_ms(), &res);
    if (rc != QUERY_OK) {
        rc = query_exit(o, q, rc);
        query_free(q);
        return rc;
    }
    query_free(q);
    if (o->json) {
        print_json(o, res);
        return CTL_OK;
    }
    cluster_members_text(o, json_object_get(res, "members"));
    int orphans = cluster_partitions_text(o, json_object_get(res, "partitions"));
    if (orphans)
        fprintf(o->out, "LIVE NO: the owner recorded for the partition has no member record "
                        "(stopped, crashed or cut off): its sagas wait until another instance "
                        "takes it over.\n");
    const json_t *stuck = json_object_get(res, "stuck");
    fprintf(o->out, "\nSTUCK SAGAS (%lld, newest first%s)\n", (long long)jint(stuck, "count"),
            json_is_true(json_object_get(stuck, "truncated")) ? ", the newest listed" : "");
    table_t *t = table_new(6, "ID", "DEFINITION", "PARTITION", "STEP", "STUCK SINCE", "ERROR");
    size_t i;
    json_t *s;
    int64_t now = wall_ms();
    json_array_foreach(json_object_get(stuck, "sagas"), i, s)
    {
        char def[300], part[32], when[64], age[32], err[CTL_ERROR_COLUMN + 8];
        snprintf(def, sizeof def, "%s v%lld", jstr(s, "definition") ? jstr(s, "definition") : "?",
                 (long long)jint(s, "definition_version"));
        snprintf(part, sizeof part, "%lld", (long long)jint(s, "partition"));
        ctl_format_duration(now - jint(s, "score"), age, sizeof age);
        snprintf(when, sizeof when, "%s ago", age);
        table_add(t, jstr(s, "id"), def, part, jstr(s, "step"), when,
                  cut(jstr(s, "error"), CTL_ERROR_COLUMN, err, sizeof err));
    }
    if (table_rows(t))
        table_print(t, o->out);
    else
        fprintf(o->out, "none\n");
    table_free(t);
    json_decref(res);
    return CTL_OK;
}

/* --- Kafka ------------------------------------------------------------------------ */

typedef struct delivery {
    bool done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
} delivery_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    delivery_t *d = m->_private;
    if (!d)
        return;
    d->done = true;
    d->err = m->err;
    d->partition = m->partition;
    d->offset = m->offset;
}

/* A client of the cfg's cluster with its pass-through properties (scope 0 and scope).
 * Returns NULL with the reason printed. */
static rd_kafka_t *kafka_new(const ctl_options_t *o, rd_kafka_type_t type)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int scope = type == RD_KAFKA_PRODUCER ? 2 : 1;
    char timeout[32], group[128];
    snprintf(timeout, sizeof timeout, "%d", CTL_PRODUCE_TIMEOUT_MS);
    snprintf(group, sizeof group, "sagactl-%d", (int)getpid());
    const char *base[][2] = {{"bootstrap.servers", o->cfg->bootstrap_servers},
                             {"client.id", "sagactl"},
                             {"log_level", "3"}};
    const char *producer[][2] = {{"enable.idempotence", "true"},
                                 {"partitioner", "murmur2_random"},
                                 {"message.timeout.ms", timeout},
                                 {"linger.ms", "0"}};
    /* Assigned partitions only (no group is joined); group.id is still required. */
    const char *consumer[][2] = {{"group.id", group},
                                 {"enable.auto.commit", "false"},
                                 {"enable.partition.eof", "false"},
                                 {"fetch.wait.max.ms", "50"}};
    for (size_t i = 0; i < 3; i++)
        if (rd_kafka_conf_set(conf, base[i][0], base[i][1], err, sizeof err) != RD_KAFKA_CONF_OK)
            goto fail;
    for (size_t i = 0; i < 4; i++) {
        const char *const *kv = type == RD_KAFKA_PRODUCER ? producer[i] : consumer[i];
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof err) != RD_KAFKA_CONF_OK)
            goto fail;
    }
    for (size_t i = 0; i < o->cfg->prop_count; i++) {
        const config_prop_t *p = &o->cfg->props[i];
        if (p->scope != 0 && p->scope != scope)
            continue;
        if (rd_kafka_conf_set(conf, p->name, p->value, err, sizeof err) != RD_KAFKA_CONF_OK)
            goto fail;
    }
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) {
        fprintf(o->err, "sagactl: kafka: %s\n", err);
        return NULL;
    }
    return rk;
fail:
    fprintf(o->err, "sagactl: kafka: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Produces msg keyed by key to the input topic (partition -1: by the partitioner) and
 * waits for its delivery. Returns CTL_OK with *d filled, or CTL_UNREACHABLE. */
static int produce_request(const ctl_options_t *o, rd_kafka_t *rk, int32_t partition,
                           const char *key, const json_t *msg, delivery_t *d)
{
    memset(d, 0, sizeof *d);
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text) {
        fprintf(o->err, "sagactl: out of memory\n");
        return CTL_UNREACHABLE;
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(o->cfg->input_topic),
        RD_KAFKA_V_PARTITION(partition >= 0 ? partition : RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(text, strlen(text)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    free(text);
    if (err) {
        fprintf(o->err, "sagactl: cannot produce to %s: %s\n", o->cfg->input_topic,
                rd_kafka_err2str(err));
        return CTL_UNREACHABLE;
    }
    int64_t deadline = mono_ms() + CTL_PRODUCE_TIMEOUT_MS + 5000;
    while (!d->done && mono_ms() < deadline)
        rd_kafka_poll(rk, 100);
    if (!d->done || d->err) {
        fprintf(o->err, "sagactl: kafka %s: request not delivered to %s: %s\n",
                o->cfg->bootstrap_servers, o->cfg->input_topic,
                d->done ? rd_kafka_err2str(d->err) : "timed out");
        return CTL_UNREACHABLE;
    }
    return CTL_OK;
}

/* --- start ------------------------------------------------------------------------ */

/* Reads the whole input (path or "-"), parses it as a JSON object. NULL with the reason
 * printed. */
static json_t *read_input(const ctl_options_t *o)
{
    if (!o->input_path)
        return json_object();
    json_error_t je;
    json_t *v;
    if (strcmp(o->input_path, "-") == 0)
        v = json_loadf(stdin, JSON_REJECT_DUPLICATES, &je);
    else
        v = json_load_file(o->input_path, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        fprintf(o->err, "sagactl: --input %s:%d:%d: %s\n",
                strcmp(o->input_path, "-") == 0 ? "<stdin>" : o->input_path, je.line, je.column,
                je.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        fprintf(o->err, "sagactl: --input %s: expected a JSON object, got %s\n", o->input_path,
                json_is_array(v) ? "an array" : "a scalar");
        json_decref(v);
        return NULL;
    }
    return v;
}

/* A fresh saga id: DEFINITION-YYYYMMDDHHMMSS-RANDOM, valid as docs/protocol.md says. */
static void generate_id(const char *definition, char *buf, size_t len)
{
    char name[64];
    size_t n = 0;
    for (const char *p = definition; *p && n < sizeof name - 1; p++)
        name[n++] = isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-' ? *p : '-';
    name[n] = '\0';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    unsigned seed = (unsigned)ts.tv_nsec ^ ((unsigned)getpid() << 16);
    unsigned r1 = (unsigned)rand_r(&seed), r2 = (unsigned)rand_r(&seed);
    snprintf(buf, len, "%s-%s-%04x%04x", name, stamp, r1 & 0xffff, r2 & 0xffff);
}

/* Consumer of every partition of the outcomes topic from its current end: set up before
 * the start is produced, so the outcome cannot be missed. NULL when the topic cannot be
 * read (then only Redis is polled). */
static rd_kafka_t *outcome_consumer(const ctl_options_t *o)
{
    rd_kafka_t *rk = kafka_new(o, RD_KAFKA_CONSUMER);
    if (!rk)
        return NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->cfg->outcomes_topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(rk, 0, rkt, &md, CTL_METADATA_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (err || !md || md->topic_cnt != 1 || md->topics[0].err ||
        md->topics[0].partition_cnt == 0) {
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return NULL;
    }
    int n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(rk, o->cfg->outcomes_topic, p, &lo, &hi,
                                             CTL_METADATA_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_topic_partition_list_destroy(l);
            rd_kafka_destroy(rk);
            return NULL;
        }
        rd_kafka_topic_partition_list_add(l, o->cfg->outcomes_topic, p)->offset = hi;
    }
    err = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/* Waits for the saga's outcome: on the outcomes topic (the only place a rejection shows)
 * and, every CTL_WAIT_POLL_MS, in Redis (which also answers for a saga that ended before
 * we listened, e.g. a repeated start). *outcome gets the outcome (new reference): the
 * message, or {saga_id, status, error, finished_at} from Redis. */
static int wait_outcome(const ctl_options_t *o, rd_kafka_t *consumer, query_t *q,
                        const char *id, json_t **outcome)
{
    double secs = o->timeout_s > 0 ? o->timeout_s : CTL_WAIT_TIMEOUT_DEFAULT_S;
    int64_t deadline = mono_ms() + (int64_t)(secs * 1000.0);
    int64_t next_poll = 0;
    *outcome = NULL;
    while (mono_ms() < deadline) {
        if (consumer) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
            if (m && !m->err && m->key && m->key_len == strlen(id) &&
                memcmp(m->key, id, m->key_len) == 0) {
                json_t *v = json_loadb(m->payload, m->len, 0, NULL);
                if (v && jstr(v, "type") && strcmp(jstr(v, "type"), "outcome") == 0 &&
                    jstr(v, "status")) {
                    *outcome = v;
                    rd_kafka_message_destroy(m);
                    return CTL_OK;
                }
                json_decref(v);
            }
            if (m)
                rd_kafka_message_destroy(m);
        } else {
            usleep(100 * 1000);
        }
        if (q && mono_ms() >= next_poll) {
            next_poll = mono_ms() + CTL_WAIT_POLL_MS;
            json_t *res = NULL;
            if (query_show(q, id, &res) == QUERY_OK) {
                const json_t *saga = json_object_get(res, "saga");
                const char *st = jstr(saga, "status");
                saga_status_t status;
                if (st && saga_status_parse(st, &status) == 0 &&
                    (saga_status_is_terminal(status) || status == SAGA_STUCK)) {
                    const char *err = jstr(saga, "error");
                    *outcome = json_pack("{s:s, s:s, s:s, s:I, s:s?, s:s}", "type", "outcome",
                                         "saga_id", id, "status", st, "finished_at",
                                         (json_int_t)jint(saga, "finished_at"), "error",
                                         err && *err ? err : NULL, "source", "redis");
                    json_decref(res);
                    return *outcome ? CTL_OK : CTL_UNREACHABLE;
                }
            }
            json_decref(res);
        }
    }
    return CTL_TIMEOUT;
}

int ctl_start(const ctl_options_t *o, const char *definition)
{
    char id[SAGA_ID_MAX_LEN + 1];
    if (o->id) {
        if (!protocol_valid_saga_id(o->id)) {
            fprintf(o->err, "sagactl: --id \"%s\": expected 1-%d characters of "
                            "[A-Za-z0-9._:-]\n", o->id, SAGA_ID_MAX_LEN);
            return CTL_USAGE;
        }
        snprintf(id, sizeof id, "%s", o->id);
    } else {
        generate_id(definition, id, sizeof id);
    }
    json_t *input = read_input(o);
    if (!input)
        return CTL_USAGE;
    json_t *msg = json_pack("{s:s, s:s, s:s, s:o}", "type", "start", "saga_id", id, "saga",
                            definition, "input", input);
    if (o->version > 0)
        json_object_set_new(msg, "version", json_integer(o->version));

    rd_kafka_t *consumer = NULL;
    query_t *q = NULL;
    if (o->wait) {
        consumer = outcome_consumer(o);
        char err[512];
        q = query_new(o->cfg, err, sizeof err);
        if (!consumer && !q) {
            fprintf(o->err, "sagactl: cannot wait: neither the outcomes topic %s nor Redis "
                            "can be read (%s)\n", o->cfg->outcomes_topic, err);
            json_decref(msg);
            return CTL_UNREACHABLE;
        }
    }
    rd_kafka_t *producer = kafka_new(o, RD_KAFKA_PRODUCER);
    delivery_t d;
    int rc = producer ? produce_request(o, producer, -1, id, msg, &d) : CTL_UNREACHABLE;
    json_decref(msg);
    if (producer)
        rd_kafka_destroy(producer);
    if (rc != CTL_OK)
        goto out;
    int64_t t0 = wall_ms();
    if (!o->wait) {
        if (o->json)
            print_json(o, json_pack("{s:s, s:s, s:i, s:I}", "saga_id", id, "definition",
                                    definition, "partition", (int)d.partition, "offset",
                                    (json_int_t)d.offset));
        else
            fprintf(o->out, "started %s (%s) on partition %d; follow it with: sagactl show %s\n",
                    id, definition, (int)d.partition, id);
        goto out;
    }
    if (!o->json)
        fprintf(o->err, "started %s (%s) on partition %d; waiting for its outcome...\n", id,
                definition, (int)d.partition);
    json_t *outcome = NULL;
    rc = wait_outcome(o, consumer, q, id, &outcome);
    if (rc == CTL_TIMEOUT) {
        fprintf(o->err, "sagactl: no outcome for %s within %.0f s; it may still be running: "
                        "sagactl show %s\n", id,
                o->timeout_s > 0 ? o->timeout_s : CTL_WAIT_TIMEOUT_DEFAULT_S, id);
        goto out;
    }
    const char *status = jstr(outcome, "status");
    rc = status && strcmp(status, "completed") == 0 ? CTL_OK : CTL_NOT_COMPLETED;
    if (o->json) {
        print_json(o, json_incref(outcome));
    } else {
        char took[32];
        ctl_format_duration(wall_ms() - t0, took, sizeof took);
        const char *err = jstr(outcome, "error");
        fprintf(o->out, "%s %s after %s%s%s\n", id, status ? status : "?", took,
                err ? ": " : "", err ? err : "");
    }
    json_decref(outcome);
out:
    if (consumer) {
        (void)rd_kafka_assign(consumer, NULL);
        rd_kafka_destroy(consumer);
    }
    query_free(q);
    return rc;
}

/* --- abort, retry, skip ----------------------------------------------------------- */

int ctl_operator(const ctl_options_t *o, const char *verb, const char *id)
{
    query_t *q = open_query(o);
    if (!q)
        return CTL_UNREACHABLE;
    int partition;
    char status[32] = "";
    int64_t version = 0;
    int rc = query_find(q, id, &partition, status, sizeof status, &version);
    if (rc != QUERY_OK) {
        rc = query_exit(o, q, rc);
        query_free(q);
        return rc;
    }
    query_free(q);
    bool abort_verb = strcmp(verb, "abort") == 0;
    bool applies = abort_verb ? strcmp(status, "running") == 0 : strcmp(status, "stuck") == 0;
    if (!applies) {
        fprintf(o->err, "sagactl: %s: saga %s is %s; %s applies only to a %s saga\n", verb, id,
                status, verb, abort_verb ? "running" : "stuck");
        return CTL_NOT_APPLICABLE;
    }
    json_t *msg = json_pack("{s:s, s:s}", "type", verb, "saga_id", id);
    /* The state this decision was made on: if the saga changes before the coordinator
     * reads the request, the request is ignored rather than applied to another state. */
    if (version > 0)
        json_object_set_new(msg, "expected_version", json_integer(version));
    if (o->reason)
        json_object_set_new(msg, "reason", json_string(o->reason));
    rd_kafka_t *producer = kafka_new(o, RD_KAFKA_PRODUCER);
    delivery_t d;
    rc = producer ? produce_request(o, producer, partition, id, msg, &d) : CTL_UNREACHABLE;
    json_decref(msg);
    if (producer)
        rd_kafka_destroy(producer);
    if (rc != CTL_OK)
        return rc;
    if (o->json)
        print_json(o, json_pack("{s:s, s:s, s:s, s:i, s:I}", "saga_id", id, "request", verb,
                                "status_before", status, "partition", partition, "offset",
                                (json_int_t)d.offset));
    else
        fprintf(o->out, "%s sent for %s (was %s) to %s partition %d; follow it with: "
                        "sagactl show %s\n", verb, id, status, o->cfg->input_topic, partition, id);
    return CTL_OK;
}

/* --- simulate --------------------------------------------------------------------- */

int ctl_simulate(const ctl_options_t *o, const char *definition)
{
    defn_errors_t errs = {0};
    defn_set_t *set = defn_set_load(o->cfg->definitions, &errs);
    if (!set) {
        for (size_t i = 0; i < errs.count; i++) {
            char line[sizeof(defn_error_t) + 64];
            defn_error_format(&errs.items[i], line, sizeof line);
            fprintf(o->err, "%s\n", line);
        }
        fprintf(o->err, "sagactl: simulate: the definitions in %s do not load (%zu error%s)\n",
                o->cfg->definitions, errs.count, errs.count == 1 ? "" : "s");
        defn_errors_release(&errs);
        return CTL_USAGE;
    }
    defn_errors_release(&errs);
    int rc = CTL_NOT_FOUND;
    json_t *input = NULL;
    const definition_t *d = defn_set_find(set, definition, o->version);
    if (!d) {
        if (o->version > 0)
            fprintf(o->err, "sagactl: simulate: %s has no definition \"%s\" version %d\n",
                    o->cfg->definitions, definition, o->version);
        else
            fprintf(o->err, "sagactl: simulate: %s has no definition \"%s\"\n",
                    o->cfg->definitions, definition);
        goto done;
    }
    rc = CTL_USAGE;
    input = read_input(o);
    if (!input)
        goto done;
    dryrun_options_t opts = {.saga_id = o->id, .fail_step = o->fail_step,
                             .timeout_step = o->timeout_step,
                             .reply_topic = o->cfg->input_topic};
    char why[512] = "";
    dryrun_t *run = dryrun_run(d, input, &opts, why, sizeof why);
    if (!run) {
        /* A step option that names no step is a usage error; anything else is what the
         * coordinator would reject the start with. */
        bool usage = strncmp(why, "--", 2) == 0 || strcmp(why, "out of memory") == 0;
        fprintf(o->err, "sagactl: simulate: %s%s\n", usage ? "" : "the start is rejected: ",
                why);
        rc = usage ? CTL_USAGE : CTL_NOT_COMPLETED;
        goto done;
    }
    if (o->json)
        print_json(o, dryrun_json(run));
    else
        dryrun_print(run, o->out);
    rc = run->status == SAGA_COMPLETED ? CTL_OK : CTL_NOT_COMPLETED;
    dryrun_free(run);
done:
    json_decref(input);
    defn_set_free(set);
    return rc;
}
