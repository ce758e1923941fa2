/* test_metrics.c - the coordinator's HTTP endpoints against a running system: /metrics
 * scraped and parsed (counters per definition match what happened, histograms are
 * well-formed and count every settled step), /healthz, /readyz (also when Redis goes
 * away), and the JSON API the dashboard reads. */
#include "opstest.h"
#include "query.h"
#include "scripted.h"
#include "test_paths.h"
#include "system.h"
#include "saga_version.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 20000

static test_system_t sys;
static scripted_t *participant;
static int http_port;
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

static const script_rule_t RULES[] = {
    {"m-comp", "charge", "action", 0, SCRIPT_FAIL, NULL},
    {"m-stuck", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"m-stuck", "charge", "compensation", 0, SCRIPT_FAIL, NULL},
    {"m-dup", NULL, NULL, 0, SCRIPT_OK_TWICE, NULL},
};

static void setup(void)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, NULL), 0, "system starts");
    http_port = fixture_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "--http_listen=127.0.0.1:%d", http_port);
    cr_assert_geq(system_add_coordinator(&sys, (const char *const[]){listen, NULL}, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, RULES,
                                 sizeof RULES / sizeof *RULES);
    cr_assert_not_null(participant);
}

static void teardown(void)
{
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
}

/* The value of the sample whose name and labels are exactly `series` (as printed, e.g.
 * saga_completed_total{definition="order"}), or NAN. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return NAN;
}

static char *scrape(void)
{
    char *body = NULL;
    int status = ops_http_get(http_port, "/metrics", &body);
    cr_assert_eq(status, 200, "/metrics answers 200 (got %d)", status);
    return body;
}

typedef struct scrape_wait {
    const char *series;
    double want;
} scrape_wait_t;

static bool sample_is(void *opaque)
{
    scrape_wait_t *w = opaque;
    char *body = NULL;
    bool ok = ops_http_get(http_port, "/metrics", &body) == 200 && sample(body, w->series) == w->want;
    free(body);
    return ok;
}

/* Every line is a comment or "name{labels} value"; every family has HELP and TYPE. */
static void check_format(const char *text)
{
    const char *p = text;
    int samples = 0;
    while (*p) {
        const char *end = strchr(p, '\n');
        cr_assert_not_null(end, "every line ends with a newline");
        if (*p == '#') {
            cr_assert(strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0,
                      "comment: %.*s", (int)(end - p), p);
        } else {
            const char *sp = memchr(p, ' ', (size_t)(end - p));
            const char *brace = memchr(p, '{', (size_t)(end - p));
            if (brace && sp && brace < sp)
                sp = memchr(strchr(brace, '}'), ' ', (size_t)(end - brace));
            cr_assert_not_null(sp, "sample: %.*s", (int)(end - p), p);
            char *num_end;
            (void)strtod(sp + 1, &num_end);
            cr_assert_eq(num_end, end, "a number ends the line: %.*s", (int)(end - p), p);
            samples++;
        }
        p = end + 1;
    }
    cr_assert_gt(samples, 20);
}

/* For every histogram series of the step duration: buckets ascend in le and never
 * decrease, +Inf equals _count. Returns the sum of _count over series matching
 * (kind, result); kind/result NULL = any. */
static long check_histograms(const char *text, const char *kind, const char *result)
{
    long total = 0;
    const char *prefix = "saga_step_duration_seconds_bucket{";
    const char *p = text;
    while ((p = strstr(p, prefix))) {
        const char *line_end = strchr(p, '\n');
        const char *le = strstr(p, ",le=\"");
        cr_assert(le && le < line_end);
        char labels[512];
        snprintf(labels, sizeof labels, "%.*s", (int)(le - p - strlen(prefix)), p + strlen(prefix));
        /* Walk this series' buckets. */
        double last_le = -1, last = -1;
        const char *q = p;
        for (;;) {
            const char *qe = strchr(q, '\n');
            const char *lq = strstr(q, ",le=\"");
            double le_v = strncmp(lq + 5, "+Inf", 4) == 0 ? INFINITY : strtod(lq + 5, NULL);
            double v = strtod(strstr(lq, "} ") + 2, NULL);
            cr_assert_gt(le_v, last_le, "le ascends in %s", labels);
            cr_assert_geq(v, last, "cumulative buckets never decrease in %s", labels);
            last_le = le_v;
            last = v;
            if (isinf(le_v))
                break;
            q = qe + 1;
            cr_assert(strncmp(q, prefix, strlen(prefix)) == 0, "+Inf bucket closes %s", labels);
        }
        char series[600];
        snprintf(series, sizeof series, "saga_step_duration_seconds_count{%s}", labels);
        double count = sample(text, series);
        cr_assert_eq(count, last, "+Inf bucket equals _count in %s", labels);
        snprintf(series, sizeof series, "saga_step_duration_seconds_sum{%s}", labels);
        cr_assert(!isnan(sample(text, series)), "_sum of %s", labels);
        char want_kind[64], want_result[64];
        snprintf(want_kind, sizeof want_kind, "kind=\"%s\"", kind ? kind : "");
        snprintf(want_result, sizeof want_result, "result=\"%s\"", result ? result : "");
        if ((!kind || strstr(labels, want_kind)) && (!result || strstr(labels, want_result)))
            total += (long)count;
        p = strchr(q, '\n');
        if (!p)
            break;
    }
    return total;
}


/* Every metric name (saga_...) in file (the text of what, a repository file) is a family
 * of the scrape text (histogram suffixes _bucket, _sum, _count stripped): rules and
 * dashboards shipped with the coordinator must name only what it exports. */
static void check_names_in(const char *text, const char *file, const char *rel)
{
    int names = 0;
    for (const char *p = strstr(file, "saga_"); p; p = strstr(p + 1, "saga_")) {
        if (p > file && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == ':'))
            continue;
        char name[128];
        size_t len = 0;
        while (len + 1 < sizeof name && (islower((unsigned char)p[len]) ||
                                         isdigit((unsigned char)p[len]) || p[len] == '_'))
            name[len] = p[len], len++;
        name[len] = '\0';
        static const char *const SUFFIXES[] = {"_bucket", "_sum", "_count"};
        char type_line[160];
        snprintf(type_line, sizeof type_line, "# TYPE %s ", name);
        if (!strstr(text, type_line))
            for (size_t i = 0; i < 3; i++) {
                size_t sl = strlen(SUFFIXES[i]);
                if (len > sl && strcmp(name + len - sl, SUFFIXES[i]) == 0) {
                    snprintf(type_line, sizeof type_line, "# TYPE %.*s histogram", (int)(len - sl), name);
                    break;
                }
            }
        cr_expect(strstr(text, type_line) != NULL, "%s names %s, which /metrics does not export", rel, name);
        names++;
    }
    cr_assert_gt(names, 0, "%s names metrics", rel);
}

static void check_names_exported(const char *text, const char *rel)
{
    char *path = test_source_path(rel);
    cr_assert_not_null(path);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    free(path);
    static char file[1 << 20];
    size_t n = fread(file, 1, sizeof file - 1, f);
    fclose(f);
    file[n] = '\0';
    check_names_in(text, file, rel);
}

/* Appends every query of a Grafana dashboard (the panels' targets' "expr", the template
 * variables' "query") found under v to out, one per line. Returns how many. */
static int grafana_queries(json_t *v, const char *key, json_t *out)
{
    int n = 0;
    if (json_is_string(v) && key && (strcmp(key, "expr") == 0 || strcmp(key, "query") == 0)) {
        json_array_append(out, v);
        return 1;
    }
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_object(v))
        json_object_foreach(v, k, x) n += grafana_queries(x, k, out);
    else if (json_is_array(v))
        json_array_foreach(v, i, x) n += grafana_queries(x, NULL, out);
    return n;
}

/* The Grafana dashboard rel: well-formed JSON, every panel queries something, and every
 * query names only metrics the scrape text exports. */
static void check_grafana_exported(const char *text, const char *rel)
{
    char *path = test_source_path(rel);
    cr_assert_not_null(path);
    json_error_t err;
    json_t *dash = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    cr_assert_not_null(dash, "%s:%d:%d: %s", rel, err.line, err.column, err.text);
    free(path);
    json_t *panels = json_object_get(dash, "panels");
    cr_assert_gt(json_array_size(panels), 8, "%s has panels", rel);
    size_t i;
    json_t *panel;
    json_array_foreach(panels, i, panel) {
        json_t *targets = json_object_get(panel, "targets");
        json_t *exprs = json_array();
        cr_expect_gt(grafana_queries(targets, NULL, exprs), 0, "%s: panel \"%s\" has no expr", rel,
                     json_string_value(json_object_get(panel, "title")));
        json_decref(exprs);
    }
    json_t *queries = json_array();
    int n = grafana_queries(dash, NULL, queries);
    size_t len = 1;
    json_t *q;
    json_array_foreach(queries, i, q) len += json_string_length(q) + 1;
    char *all = malloc(len);
    cr_assert_not_null(all);
    all[0] = '\0';
    json_array_foreach(queries, i, q) {
        strcat(all, json_string_value(q));
        strcat(all, "\n");
    }
    cr_log_info("%s: %d queries", rel, n);
    check_names_in(text, all, rel);
    free(all);
    json_decref(queries);
    json_decref(dash);
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 180);

static bool healthz_ok(void *opaque)
{
    (void)opaque;
    char *body = NULL;
    bool ok = ops_http_get(http_port, "/healthz", &body) == 200;
    free(body);
    return ok;
}

Test(metrics, counters_histograms_health_and_api)
{
    char *body = NULL;
    /* Alive as soon as the loop turns (the partitions may be taken just before its first
     * turn); ready once it owns the partitions. */
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
    cr_assert(fixture_wait_until(healthz_ok, NULL, WAIT_MS), "/healthz turns ok");
    cr_assert_eq(ops_http_get(http_port, "/healthz", &body), 200, "%s", body);
    cr_assert(strstr(body, "\"status\":\"ok\""), "%s", body);
    free(body);
    scrape_wait_t owned = {"saga_partitions_owned", 4};
    cr_assert(fixture_wait_until(sample_is, &owned, WAIT_MS));
    cr_assert_eq(ops_http_get(http_port, "/readyz", &body), 200, "%s", body);
    free(body);

    const char *done[] = {"m-1", "m-2", "m-3", "m-dup"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(system_start_saga(&sys, done[i], "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "m-comp", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "m-stuck", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "m-rej", "no-such-definition", NULL), 0);
    cr_assert_eq(system_start_saga(&sys, "m-bad", "order", "{\"sku\": 5}"), 0);
    for (size_t i = 0; i < 4; i++)
        cr_assert(system_wait_status(&sys, done[i], "completed", WAIT_MS), "%s", done[i]);
    cr_assert(system_wait_status(&sys, "m-comp", "compensated", WAIT_MS));
    cr_assert(system_wait_status(&sys, "m-stuck", "stuck", WAIT_MS));
    scrape_wait_t stuck = {"saga_stuck_total{definition=\"order\"}", 1};
    cr_assert(fixture_wait_until(sample_is, &stuck, WAIT_MS), "the snapshot catches up");
    scrape_wait_t rejected = {"saga_rejected_total{definition=\"order\"}", 1};
    cr_assert(fixture_wait_until(sample_is, &rejected, WAIT_MS));

    /* Every outbox message produced was acknowledged by Kafka (the gauge goes back to 0). */
    scrape_wait_t drained = {"saga_outbox_pending_messages", 0};
    cr_assert(fixture_wait_until(sample_is, &drained, WAIT_MS), "the outbox drains");

    char *text = scrape();
    check_format(text);
    cr_assert_eq(sample(text, "saga_coordinator_build_info{version=\"" SAGA_VERSION "\"}"), 1,
                 "the build-info gauge names the project version");
    cr_assert_eq(sample(text, "saga_input_partitions"), 4, "the input topic's partitions");
    check_names_exported(text, "docker/prometheus/rules.yml");
    check_grafana_exported(text, "docker/grafana/dashboards/saga-coordinator.json");
    cr_assert_eq(sample(text, "saga_started_total{definition=\"order\"}"), 6);
    cr_assert_eq(sample(text, "saga_completed_total{definition=\"order\"}"), 4);
    cr_assert_eq(sample(text, "saga_compensated_total{definition=\"order\"}"), 1);
    cr_assert_eq(sample(text, "saga_stuck_total{definition=\"order\"}"), 1);
    cr_assert_eq(sample(text, "saga_rejected_total{definition=\"(unknown)\"}"), 1);
    cr_assert_eq(sample(text, "saga_rejected_total{definition=\"order\"}"), 1, "invalid input");
    cr_assert_eq(sample(text, "saga_partitions_owned"), 4);
    cr_assert_eq(sample(text, "saga_sagas_in_memory"), 1, "only the stuck saga stays active");
    cr_assert_eq(sample(text, "saga_redis_up"), 1);
    cr_assert_geq(sample(text, "saga_transitions_total"), 6 * 3);
    cr_assert_geq(sample(text, "saga_input_messages_total"), 8);
    cr_assert_eq(sample(text, "saga_dead_letters_total"), 0);
    cr_assert_geq(sample(text, "saga_replies_ignored_total{reason=\"duplicate\"}"), 3,
                  "m-dup's participant answered every command twice");
    cr_assert_geq(sample(text, "saga_input_lag_messages{partition=\"0\"}"), 0);
    cr_assert(sample(text, "saga_loop_turns_total") > 0);
    /* The coordinator's own latency: one observation per transition an input message
     * caused (starts and replies, not timers), buckets cumulative up to the count. */
    double lat_count = sample(text, "saga_coordinator_latency_seconds_count");
    cr_assert_geq(lat_count, 6, "every start at least");
    cr_assert_leq(lat_count, sample(text, "saga_transitions_total"));
    cr_assert_eq(sample(text, "saga_coordinator_latency_seconds_bucket{le=\"+Inf\"}"), lat_count);
    cr_assert_leq(sample(text, "saga_coordinator_latency_seconds_bucket{le=\"0.0001\"}"),
                  sample(text, "saga_coordinator_latency_seconds_bucket{le=\"10\"}"));
    cr_assert_gt(sample(text, "saga_coordinator_latency_seconds_sum"), 0);

    /* Durations: one observation per settled step. Actions that succeeded: 4 completed
     * sagas x 3 steps, the compensated one's reserve, the stuck one's reserve and charge. */
    cr_assert_eq(check_histograms(text, "action", "ok"), 4 * 3 + 1 + 2);
    cr_assert_eq(check_histograms(text, "action", "failed"), 2, "m-comp's charge, m-stuck's ship");
    /* Compensations: m-comp's reserve ok; m-stuck's charge failed (then it stops). */
    cr_assert_eq(check_histograms(text, "compensation", "ok"), 1);
    cr_assert_eq(check_histograms(text, "compensation", "failed"), 1);
    cr_assert_eq(sample(text, "saga_step_duration_seconds_count{definition=\"order\",step=\"reserve\","
                              "kind=\"action\",result=\"ok\"}"), 6);
    cr_assert_eq(sample(text, "saga_step_duration_seconds_count{definition=\"order\",step=\"ship\","
                              "kind=\"action\",result=\"ok\"}"), 4);
    free(text);

    /* The JSON API the dashboard reads. */
    cr_assert_eq(ops_http_get(http_port, "/api/sagas?status=stuck", &body), 200);
    json_t *doc = json_loads(body, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(doc, "sagas")), 1, "%s", body);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(doc, "sagas"), 0), "id")),
                     "m-stuck");
    json_decref(doc);
    free(body);
    cr_assert_eq(ops_http_get(http_port, "/api/sagas/m-comp", &body), 200);
    doc = json_loads(body, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "saga"), "status")),
                     "compensated");
    cr_assert_gt(json_array_size(json_object_get(doc, "history")), 4);
    json_decref(doc);
    free(body);
    cr_assert_eq(ops_http_get(http_port, "/api/sagas/nobody", &body), 404);
    free(body);
    cr_assert_eq(ops_http_get(http_port, "/api/sagas?status=nonsense", &body), 400);
    free(body);
    cr_assert_eq(ops_http_get(http_port, "/api/stats", &body), 200);
    doc = json_loads(body, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(doc, "totals"), "completed")), 4,
                 "%s", body);
    json_decref(doc);
    free(body);
    /* Finished per minute: the last hour, the sagas above in it. */
    cr_assert_eq(ops_http_get(http_port, "/api/throughput", &body), 200);
    doc = json_loads(body, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(doc, "buckets")), QUERY_THROUGHPUT_BUCKETS, "%s", body);
    cr_assert_eq(json_integer_value(json_object_get(doc, "completed")), 4, "%s", body);
    cr_assert_eq(json_integer_value(json_object_get(doc, "compensated")), 1, "%s", body);
    json_decref(doc);
    free(body);
    cr_assert_eq(ops_http_get(http_port, "/", &body), 200);
    cr_assert(strstr(body, "<html") && strstr(body, "/api/stats"), "the dashboard page");
    free(body);
    cr_assert_eq(ops_http_get(http_port, "/nothing-here", &body), 404);
    free(body);

    /* Redis gone: still alive, not ready (the idle loop pings Redis every second). */
    fixture_redis_stop(&sys.redis);
    int64_t deadline = fixture_now_ms() + WAIT_MS;
    int status = 0;
    while (fixture_now_ms() < deadline &&
           (status = ops_http_get(http_port, "/readyz", NULL)) == 200)
        usleep(50 * 1000);
    cr_assert_eq(status, 503, "/readyz fails without Redis");
    cr_assert_eq(ops_http_get(http_port, "/healthz", NULL), 200, "the loop still turns");
    text = scrape();
    cr_assert_eq(sample(text, "saga_redis_up"), 0);
    free(text);
}

/* Writes a finished saga as the coordinator would leave it, as far as the finished index
 * and the two fields the throughput reads go. */
static void put_finished(redisContext *rc, int partition, const char *id, const char *definition,
                         const char *status, long long finished_at)
{
    redisReply *r = redisCommand(rc, "ZADD saga:{p%d}:index:finished %lld %s", partition,
                                 finished_at, id);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    r = redisCommand(rc, "HSET saga:{p%d}:saga:%s definition %s status %s finished_at %lld",
                     partition, id, definition, status, finished_at);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
}

/* The bucket of the throughput document doc that holds time t, or NULL. */
static json_t *bucket_at(json_t *doc, long long t)
{
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(doc, "buckets"), i, b)
    {
        long long start = json_integer_value(json_object_get(b, "start"));
        if (t >= start && t < start + QUERY_MINUTE_MS)
            return b;
    }
    return NULL;
}

Test(metrics, throughput_per_minute_over_the_last_hour)
{
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
    long long now = (long long)time(NULL) * 1000;
    redisContext *rc = fixture_redis_connect(&sys.redis);
    cr_assert_not_null(rc);
    put_finished(rc, 0, "t-30a", "order", "completed", now - 30 * 60000LL);
    put_finished(rc, 1, "t-30b", "order", "compensated", now - 30 * 60000LL + 10);
    put_finished(rc, 2, "t-30c", "slow", "completed", now - 30 * 60000LL + 20);
    put_finished(rc, 3, "t-old", "order", "completed", now - 61 * 60000LL);
    redisFree(rc);
    cr_assert_eq(system_start_saga(&sys, "t-now", "order", INPUT), 0);
    cr_assert(system_wait_status(&sys, "t-now", "completed", WAIT_MS));

    char *body = NULL;
    cr_assert_eq(ops_http_get(http_port, "/api/throughput", &body), 200);
    json_t *doc = json_loads(body, 0, NULL);
    cr_assert_not_null(doc, "%s", body);
    json_t *buckets = json_object_get(doc, "buckets");
    cr_assert_eq(json_array_size(buckets), QUERY_THROUGHPUT_BUCKETS);
    long long from = json_integer_value(json_object_get(doc, "from"));
    cr_assert_eq(from % QUERY_MINUTE_MS, 0, "whole minutes");
    cr_assert_eq(json_integer_value(json_object_get(doc, "bucket_ms")), QUERY_MINUTE_MS);
    long long last = json_integer_value(json_object_get(json_array_get(buckets, QUERY_THROUGHPUT_BUCKETS - 1), "start"));
    long long at = json_integer_value(json_object_get(doc, "now"));
    cr_assert(at >= last && at < last + QUERY_MINUTE_MS, "the last bucket is the current minute");
    json_t *b30 = bucket_at(doc, now - 30 * 60000LL);
    cr_assert_not_null(b30);
    cr_assert_eq(json_integer_value(json_object_get(b30, "completed")) +
                 json_integer_value(json_object_get(b30, "compensated")), 3, "%s", body);
    cr_assert_eq(json_integer_value(json_object_get(doc, "completed")), 3, "t-30a, t-30c, t-now: %s", body);
    cr_assert_eq(json_integer_value(json_object_get(doc, "compensated")), 1, "%s", body);
    cr_assert_not_null(bucket_at(doc, at), "now is in a bucket");
    cr_assert(json_is_false(json_object_get(doc, "truncated")));
    json_decref(doc);
    free(body);

    cr_assert_eq(ops_http_get(http_port, "/api/throughput?definition=slow", &body), 200);
    doc = json_loads(body, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "definition")), "slow");
    cr_assert_eq(json_integer_value(json_object_get(doc, "completed")), 1, "%s", body);
    cr_assert_eq(json_integer_value(json_object_get(doc, "compensated")), 0, "%s", body);
    json_decref(doc);
    free(body);
}
