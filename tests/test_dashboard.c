/* test_dashboard.c - the dashboard end to end: a running system with sagas that complete,
 * compensate, get stuck, run and compensate after an abort, then headless Chromium
 * (tests/browser/dashboard.test.mjs, playwright-core with /usr/bin/chromium) checks the
 * statuses, the filters, the charts, one saga's timeline and history, the drawing of its
 * saga coloured by phase, the cluster view (the instance owning every partition), and that
 * the screenshots are not blank. They are kept as
 * dashboard.png and dashboard-saga.png (the drawing alone) in the build folder.
 * The browser script runs with the `node` found in PATH, or with $SAGA_NODE when set (a
 * path: e.g. Debian 12's Node 18 on a machine whose own Node is newer, docs/testing.md);
 * npm (from PATH) only installs tests/browser/node_modules. */
#include "opstest.h"
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 20000
#define NPM_TIMEOUT_MS 300000
#define BROWSER_TIMEOUT_MS 180000
#define CHROMIUM "/usr/bin/chromium"

static test_system_t sys;
static scripted_t *participant;
static char defs[PATH_MAX];
static int http_port;
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

static const script_rule_t RULES[] = {
    {"d-comp", "charge", "action", 0, SCRIPT_FAIL, NULL},
    {"d-stuck", "ship", "action", 0, SCRIPT_FAIL, NULL},
    {"d-stuck", "charge", "compensation", 0, SCRIPT_FAIL, NULL},
    {NULL, "hold", "action", 0, SCRIPT_SILENT, NULL},
};

static void setup(void)
{
    cr_assert_eq(ops_defs_make(defs, sizeof defs), 0);
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0, "system starts");
    http_port = fixture_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "--http_listen=127.0.0.1:%d", http_port);
    cr_assert_geq(system_add_coordinator(&sys,
                                         (const char *const[]){listen, "--instance_id=dash-1", NULL},
                                         NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, RULES,
                                 sizeof RULES / sizeof *RULES);
    cr_assert_not_null(participant);
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
}

static void teardown(void)
{
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
    if (defs[0])
        ops_defs_remove(defs);
    defs[0] = '\0';
}

/* The absolute path of program name found in PATH, or -1. */
static int which(const char *name, char *out, size_t len)
{
    const char *path = getenv("PATH");
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, len, "%s/%s", dir, name);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

static void expect_status(const char *id, const char *status)
{
    char why[8192] = "";
    cr_assert(system_expect_status(&sys, id, status, WAIT_MS, why, sizeof why), "%s", why);
}

TestSuite(dashboard, .init = setup, .fini = teardown, .timeout = 600);

/* Whether dir/node_modules holds the playwright-core version dir/package.json pins. */
static bool modules_current(const char *dir)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/package.json", dir);
    json_t *pkg = json_load_file(path, 0, NULL);
    snprintf(path, sizeof path, "%s/node_modules/playwright-core/package.json", dir);
    json_t *installed = json_load_file(path, 0, NULL);
    const char *want = json_string_value(json_object_get(json_object_get(pkg, "dependencies"),
                                                         "playwright-core"));
    const char *have = json_string_value(json_object_get(installed, "version"));
    bool current = want && have && strcmp(want, have) == 0;
    json_decref(pkg);
    json_decref(installed);
    return current;
}

/* The node that runs the browser script: $SAGA_NODE when set (it must then be
 * executable: a check asked for with a given node must not pass by skipping), else the
 * one in PATH. Returns 0, or -1 when there is none. */
static int choose_node(char *out, size_t len)
{
    const char *forced = getenv("SAGA_NODE");
    if (forced && *forced) {
        cr_assert_eq(access(forced, X_OK), 0, "SAGA_NODE=%s is not an executable", forced);
        snprintf(out, len, "%s", forced);
        return 0;
    }
    return which("node", out, len);
}

Test(dashboard, shows_statuses_and_a_timeline_in_chromium)
{
    char node[PATH_MAX], npm[PATH_MAX];
    if (access(CHROMIUM, X_OK) != 0 || choose_node(node, sizeof node) < 0 ||
        which("npm", npm, sizeof npm) < 0)
        cr_skip_test("needs " CHROMIUM " (scripts/deps.sh installs it), node and npm");
    ops_run_t version;
    cr_assert_eq(ops_run(&version, (const char *const[]){node, "--version", NULL}, NULL, NULL,
                         WAIT_MS), 0, "%s --version: %s", node, version.err);
    if (version.out)
        version.out[strcspn(version.out, "\n")] = '\0';
    cr_log_info("node: %s (%s)", node, version.out);
    ops_run_release(&version);

    const char *src = getenv("SAGA_SOURCE_DIR");
    char dir[PATH_MAX], script[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/tests/browser", src && *src ? src : ".");
    snprintf(script, sizeof script, "%s/dashboard.test.mjs", dir);
    ops_run_t r;
    if (!modules_current(dir)) {
        /* npm ci installs exactly package-lock.json into tests/browser/node_modules (and
         * replaces a node_modules left by an older pin). */
        char prefix[PATH_MAX + 16];
        snprintf(prefix, sizeof prefix, "--prefix=%s", dir);
        int rc = ops_run(&r, (const char *const[]){npm, "ci", prefix, "--no-audit", "--no-fund", NULL},
                         NULL, NULL, NPM_TIMEOUT_MS);
        cr_assert_eq(rc, 0, "npm ci in %s: %s%s", dir, r.out, r.err);
        ops_run_release(&r);
    }

    const char *done[] = {"d-done-1", "d-done-2"};
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(system_start_saga(&sys, done[i], "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "d-comp", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "d-stuck", "order", INPUT), 0);
    cr_assert_eq(system_start_saga(&sys, "d-run", "slow", NULL), 0);
    cr_assert_eq(system_start_saga(&sys, "d-abort", "slow", NULL), 0);
    expect_status("d-abort", "running");
    /* An abort keyed by the saga id lands on the saga's partition, as sagactl's does. */
    cr_assert_eq(system_produce_input(&sys, "d-abort",
                                      "{\"type\": \"abort\", \"saga_id\": \"d-abort\", "
                                      "\"reason\": \"dashboard test\"}"), 0);
    expect_status("d-done-1", "completed");
    expect_status("d-done-2", "completed");
    expect_status("d-comp", "compensated");
    expect_status("d-stuck", "stuck");
    expect_status("d-run", "running");
    expect_status("d-abort", "compensating");

    char url[128], shot[PATH_MAX + 32];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", http_port);
    const char *bin = getenv("SAGA_BIN_DIR");
    snprintf(shot, sizeof shot, "%s/../dashboard.png", bin && *bin ? bin : ".");
    /* The saga drawing of the compensated run: its own screenshot, dashboard-saga.png. */
    char drawing_shot[PATH_MAX + 32], expect[2 * PATH_MAX + 1024];
    snprintf(drawing_shot, sizeof drawing_shot, "%s/../dashboard-saga.png",
             bin && *bin ? bin : ".");
    snprintf(expect, sizeof expect,
        "{\"statuses\": {\"d-done-1\": \"completed\", \"d-done-2\": \"completed\", "
        "\"d-comp\": \"compensated\", \"d-stuck\": \"stuck\", \"d-run\": \"running\", "
        "\"d-abort\": \"compensating\"}, \"select\": \"d-comp\", "
        "\"phases\": {\"reserve\": \"compensated\", \"charge\": \"failed\", \"ship\": \"pending\"}, "
        "\"last_event\": \"compensated\", \"definitions\": [\"order\", \"slow\"], "
        "\"bars\": {\"reserve\": [\"act ok\", \"comp ok\"], \"charge\": [\"act failed\"], \"ship\": []}, "
        "\"finished\": {\"completed\": 2, \"compensated\": 1}, "
        "\"drawing\": {\"reserve\": \"compensated\", \"charge\": \"failed\", \"ship\": \"pending\"}, "
        "\"drawing_shot\": \"%s\", "
        "\"cluster\": {\"instance\": \"dash-1\", \"partitions\": %d, \"stuck\": 1}}",
        drawing_shot, SYSTEM_INPUT_PARTITIONS);
    int rc = ops_run(&r, (const char *const[]){node, script, url, expect, shot, NULL}, NULL, NULL,
                     BROWSER_TIMEOUT_MS);
    cr_log_info("%s%s", r.out, r.err);
    cr_assert_eq(rc, 0, "the browser test passes:\n%s%s", r.out, r.err);
    ops_run_release(&r);
}
