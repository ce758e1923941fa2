/* test_dashboard.c - the dashboard end to end: a running system with sagas that complete,
 * compensate, get stuck, run and compensate after an abort, then headless Chromium
 * (tests/browser/dashboard.test.mjs, playwright-core with /usr/bin/chromium) checks the
 * statuses, the filters, one saga's timeline and history, the drawing of its saga
 * coloured by phase, and that the screenshots are not blank. They are kept as
 * dashboard.png and dashboard-saga.png (the drawing alone) in the build folder. */
#include "opstest.h"
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    cr_assert_geq(system_add_coordinator(&sys, (const char *const[]){listen, NULL}, NULL), 0);
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
    char buf[64];
    cr_assert(system_wait_status(&sys, id, status, WAIT_MS), "%s: status %s, expected %s", id,
              system_field(&sys, id, "status", buf, sizeof buf), status);
}

TestSuite(dashboard, .init = setup, .fini = teardown, .timeout = 600);

Test(dashboard, shows_statuses_and_a_timeline_in_chromium)
{
    char node[PATH_MAX], npm[PATH_MAX];
    if (access(CHROMIUM, X_OK) != 0 || which("node", node, sizeof node) < 0 ||
        which("npm", npm, sizeof npm) < 0)
        cr_skip_test("needs " CHROMIUM " (scripts/deps.sh installs it), node and npm");

    const char *src = getenv("SAGA_SOURCE_DIR");
    char dir[PATH_MAX], script[PATH_MAX + 32], modules[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/tests/browser", src && *src ? src : ".");
    snprintf(script, sizeof script, "%s/dashboard.test.mjs", dir);
    snprintf(modules, sizeof modules, "%s/node_modules/playwright-core", dir);
    ops_run_t r;
    struct stat st;
    if (stat(modules, &st) != 0) {
        /* npm ci installs exactly package-lock.json into tests/browser/node_modules. */
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
        "\"drawing\": {\"reserve\": \"compensated\", \"charge\": \"failed\", \"ship\": \"pending\"}, "
        "\"drawing_shot\": \"%s\"}", drawing_shot);
    int rc = ops_run(&r, (const char *const[]){node, script, url, expect, shot, NULL}, NULL, NULL,
                     BROWSER_TIMEOUT_MS);
    cr_log_info("%s%s", r.out, r.err);
    cr_assert_eq(rc, 0, "the browser test passes:\n%s%s", r.out, r.err);
    ops_run_release(&r);
}
