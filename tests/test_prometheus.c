/* test_prometheus.c - the Prometheus rules and configuration shipped in docker/prometheus/,
 * checked with Debian's promtool (package prometheus, installed by scripts/deps.sh
 * --test): the rules and the config are valid, the rules' unit tests (rules_test.yml)
 * pass, and every alert of rules.yml has a test where it fires and one where it stays
 * silent. That the rules name only metrics the coordinator exports is checked against a
 * real scrape in test_metrics.c. */
#include "opstest.h"
#include "test_paths.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROM_DIR "docker/prometheus"
#define PROMTOOL_TIMEOUT_MS 60000
#define ALERT_NAME_MAX 128
#define GRAFANA_DASHBOARD "docker/grafana/dashboards/saga-coordinator.json"
#define PROM_TOKEN_FILE "/run/saga/http_token" /* written by the compose entrypoint */

static char promtool[PATH_MAX];

/* Finds promtool in PATH; skips the test when there is none. */
static void require_promtool(void)
{
    const char *path = getenv("PATH");
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        snprintf(promtool, sizeof promtool, "%s/promtool", dir);
        if (access(promtool, X_OK) == 0)
            return;
    }
    cr_skip_test("needs promtool (Debian package prometheus; scripts/deps.sh --test installs it)");
}

/* Runs promtool with args (NULL-terminated) on a file of PROM_DIR; asserts exit 0 and that
 * its output says SUCCESS. */
static void promtool_ok(const char *verb, const char *object, const char *file)
{
    char *path = test_source_path(PROM_DIR);
    cr_assert_not_null(path);
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s/%s", path, file);
    free(path);
    ops_run_t r;
    int rc = ops_run(&r, (const char *const[]){promtool, verb, object, full, NULL}, NULL, NULL,
                     PROMTOOL_TIMEOUT_MS);
    cr_log_info("promtool %s %s %s:\n%s%s", verb, object, file, r.out, r.err);
    cr_assert_eq(rc, 0, "promtool %s %s %s exits 0:\n%s%s", verb, object, file, r.out, r.err);
    cr_assert(strstr(r.out, "SUCCESS") || strstr(r.err, "SUCCESS"), "SUCCESS:\n%s%s", r.out,
              r.err);
    cr_assert(!strstr(r.out, "FAILED") && !strstr(r.err, "FAILED"), "%s%s", r.out, r.err);
    ops_run_release(&r);
}

static char *read_prom_file(const char *file)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s", PROM_DIR, file);
    char *path = test_source_path(rel);
    cr_assert_not_null(path);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    free(path);
    size_t cap = 1 << 20;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    size_t n = fread(text, 1, cap - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

TestSuite(prometheus, .timeout = 120);

Test(prometheus, rules_are_valid)
{
    require_promtool();
    promtool_ok("check", "rules", "rules.yml");
}

/* The scrape's token file (credentials_file) exists only in the Prometheus container,
 * and promtool's full check opens every file the config names: the full check runs on a
 * copy in a temp folder whose token file exists; the original gets --syntax-only. */
Test(prometheus, config_is_valid)
{
    require_promtool();
    char *path = test_source_path(PROM_DIR "/prometheus.yml");
    cr_assert_not_null(path);
    ops_run_t r;
    int rc = ops_run(&r, (const char *const[]){promtool, "check", "config", "--syntax-only", path,
                                               NULL},
                     NULL, NULL, PROMTOOL_TIMEOUT_MS);
    cr_assert_eq(rc, 0, "promtool check config --syntax-only:\n%s%s", r.out, r.err);
    ops_run_release(&r);
    free(path);

    char *yml = read_prom_file("prometheus.yml");
    char *rules = read_prom_file("rules.yml");
    cr_assert(strstr(yml, "credentials_file: " PROM_TOKEN_FILE "\n"), "the scrape sends the token");
    char dir[] = "/tmp/saga-promcheck-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/http_token", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("a-token-for-the-check-only", f);
    fclose(f);
    snprintf(file, sizeof file, "%s/rules.yml", dir);
    f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs(rules, f);
    fclose(f);
    snprintf(file, sizeof file, "%s/prometheus.yml", dir);
    f = fopen(file, "w");
    cr_assert_not_null(f);
    const char *at = strstr(yml, PROM_TOKEN_FILE);
    fprintf(f, "%.*s%s/http_token%s", (int)(at - yml), yml, dir, at + strlen(PROM_TOKEN_FILE));
    fclose(f);
    rc = ops_run(&r, (const char *const[]){promtool, "check", "config", file, NULL}, NULL, NULL,
                 PROMTOOL_TIMEOUT_MS);
    cr_log_info("promtool check config (copy):\n%s%s", r.out, r.err);
    cr_expect_eq(rc, 0, "promtool check config exits 0:\n%s%s", r.out, r.err);
    cr_expect(strstr(r.out, "SUCCESS") && !strstr(r.out, "FAILED") && !strstr(r.err, "FAILED"),
              "%s%s", r.out, r.err);
    ops_run_release(&r);
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    (void)!system(rm);
    free(yml);
    free(rules);
}

Test(prometheus, rules_unit_tests_pass)
{
    require_promtool();
    promtool_ok("test", "rules", "rules_test.yml");
}

/* Whether test has a case for alert that expects it silent (`exp_alerts: []`) or firing
 * (exp_alerts followed by an exp_labels entry) depending on firing. */
static bool has_case(const char *test, const char *alert, bool firing)
{
    char key[ALERT_NAME_MAX + 16];
    snprintf(key, sizeof key, "alertname: %s", alert);
    size_t kl = strlen(key);
    for (const char *p = strstr(test, key); p; p = strstr(p + 1, key)) {
        char next = p[kl];
        if (next != ',' && next != '\n')
            continue; /* a longer name that starts with this one */
        const char *exp = strstr(p, "exp_alerts:");
        if (!exp)
            return false;
        const char *after = exp + strlen("exp_alerts:");
        while (*after == ' ')
            after++;
        bool silent = strncmp(after, "[]", 2) == 0;
        const char *labels = strstr(after, "exp_labels");
        const char *next_case = strstr(after, "alertname:");
        bool fires = !silent && labels && (!next_case || labels < next_case);
        if (firing ? fires : silent)
            return true;
    }
    return false;
}

Test(prometheus, every_alert_fires_in_a_test_and_is_silent_when_healthy)
{
    char *rules = read_prom_file("rules.yml");
    char *test = read_prom_file("rules_test.yml");
    int alerts = 0;
    for (const char *p = strstr(rules, "- alert: "); p; p = strstr(p + 1, "- alert: ")) {
        char name[ALERT_NAME_MAX];
        size_t n = strcspn(p + 9, " \n#");
        cr_assert_lt(n, sizeof name);
        memcpy(name, p + 9, n);
        name[n] = '\0';
        cr_expect(has_case(test, name, true), "rules_test.yml: a case where %s fires", name);
        cr_expect(has_case(test, name, false), "rules_test.yml: a case where %s is silent", name);
        alerts++;
    }
    cr_assert_geq(alerts, 8, "stuck, unowned, lag, fenced, outbox, dead letters, not ready, p99");
    free(rules);
    free(test);
}

/* Writes expr to f as PromQL promtool can parse: Grafana's variables replaced by what
 * they stand for ($__rate_interval a range, $instance and $definition regexes). */
static void put_promql(FILE *f, const char *expr)
{
    static const struct { const char *var, *value; } VARS[] = {
        {"$__rate_interval", "1m"}, {"$instance", ".*"}, {"$definition", ".*"}};
    for (const char *p = expr; *p;) {
        bool replaced = false;
        for (size_t i = 0; i < sizeof VARS / sizeof *VARS && !replaced; i++) {
            size_t n = strlen(VARS[i].var);
            if (strncmp(p, VARS[i].var, n) == 0) {
                fputs(VARS[i].value, f);
                p += n;
                replaced = true;
            }
        }
        if (!replaced) {
            if (*p == '\'' )
                fputs("''", f); /* inside a single-quoted YAML scalar */
            else
                fputc(*p, f);
            p++;
        }
    }
}

/* Every panel expression of the Grafana dashboard is PromQL Prometheus accepts: each is
 * written as a recording rule and checked with `promtool check rules`. (That they name
 * only exported metrics is checked against a real scrape in test_metrics.c.) */
Test(prometheus, grafana_expressions_parse)
{
    require_promtool();
    char *path = test_source_path(GRAFANA_DASHBOARD);
    cr_assert_not_null(path);
    json_error_t err;
    json_t *dash = json_load_file(path, 0, &err);
    cr_assert_not_null(dash, "%s:%d: %s", path, err.line, err.text);
    free(path);
    char file[] = "/tmp/saga-grafana-rules-XXXXXX";
    int fd = mkstemp(file);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_not_null(f);
    fputs("groups:\n  - name: grafana\n    rules:\n", f);
    int n = 0;
    size_t i, j;
    json_t *panel, *target;
    json_array_foreach(json_object_get(dash, "panels"), i, panel) {
        json_array_foreach(json_object_get(panel, "targets"), j, target) {
            const char *expr = json_string_value(json_object_get(target, "expr"));
            cr_assert_not_null(expr, "panel %zu target %zu has no expr", i, j);
            fprintf(f, "      - record: grafana:panel_%zu_%zu\n        expr: '", i, j);
            put_promql(f, expr);
            fputs("'\n", f);
            n++;
        }
    }
    fclose(f);
    json_decref(dash);
    cr_assert_gt(n, 10, "the dashboard's panels query Prometheus");
    ops_run_t r;
    int rc = ops_run(&r, (const char *const[]){promtool, "check", "rules", file, NULL}, NULL, NULL,
                     PROMTOOL_TIMEOUT_MS);
    unlink(file);
    cr_assert_eq(rc, 0, "promtool check rules on the dashboard's expressions:\n%s%s", r.out, r.err);
    ops_run_release(&r);
}
