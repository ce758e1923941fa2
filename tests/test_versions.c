/* test_versions.c - pinned definition versions and hot reload, end to end: a saga runs to
 * its end on the exact definition it started with (name, version, content hash), when a
 * new version is loaded by SIGHUP while it is in flight, and when a coordinator whose
 * folder has only the new version takes its partition over (it loads the old version
 * from Redis). A bad reload (an invalid file, or a version whose content changed) is
 * refused whole, logged and counted, and the definitions loaded before stay in use.
 *
 * Each test copies tests/sagas to a temp folder that the coordinator reads; order v2
 * renames two command types (inventory.reserve.v2, shipping.schedule.v2), so every
 * command shows the version it was rendered from (also its saga_version field). */
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 30000
#define LATE_MS 1500   /* charge replies late (its timeout is 3 s, so a loaded machine keeps
                        * 1.5 s of margin): sagas stay in flight across the reload */
#define SAGAS 3

static test_system_t sys;
static scripted_t *participant;
static fixture_collector_t *outcomes;
static char dir_a[PATH_MAX], dir_b[PATH_MAX];
static const char *const TOPICS[] = {"inventory.commands", "payment.commands",
                                     "shipping.commands", NULL};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

static void remove_dir(char *dir)
{
    if (dir[0] && !getenv("SAGA_TEST_KEEP")) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        (void)!system(cmd);
    }
    dir[0] = '\0';
}

static void stop_all(void)
{
    fixture_collector_free(outcomes);
    outcomes = NULL;
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
    remove_dir(dir_a);
    remove_dir(dir_b);
}

TestSuite(versions, .fini = stop_all, .timeout = 180);

/* A temp copy of tests/sagas in dir (PATH_MAX). */
static void copy_sagas(char *dir)
{
    snprintf(dir, PATH_MAX, "/tmp/saga-defs-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char cmd[2 * PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "cp '%s/tests/sagas/'*.json '%s/'",
             getenv("SAGA_SOURCE_DIR") ? getenv("SAGA_SOURCE_DIR") : ".", dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static void remove_file(const char *dir, const char *name)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(unlink(path), 0, "unlink %s", path);
}

/* tests/sagas/order.json changed by edit: "v2" (version 2, two command types renamed) or
 * "same-version" (version 1, another description). Caller frees. */
static char *order_variant(const char *edit)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tests/sagas/order.json",
             getenv("SAGA_SOURCE_DIR") ? getenv("SAGA_SOURCE_DIR") : ".");
    json_t *d = json_load_file(path, 0, NULL);
    cr_assert_not_null(d);
    json_t *steps = json_object_get(d, "steps");
    if (strcmp(edit, "v2") == 0) {
        json_object_set_new(d, "version", json_integer(2));
        json_object_set_new(json_object_get(json_array_get(steps, 0), "action"), "command",
                            json_string("inventory.reserve.v2"));
        json_object_set_new(json_object_get(json_array_get(steps, 2), "action"), "command",
                            json_string("shipping.schedule.v2"));
    } else {
        json_object_set_new(d, "description", json_string("changed without a new version"));
    }
    char *text = json_dumps(d, JSON_INDENT(2));
    json_decref(d);
    return text;
}

static void start_system(const char *defs, const script_rule_t *rules, size_t n)
{
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0, "system starts");
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, TOPICS, rules, n);
    cr_assert_not_null(participant);
    outcomes = fixture_collector_new(sys.broker.bootstrap, NULL, "saga.outcomes");
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
}

/* A start naming a version (0: none). */
static void start_saga(const char *id, int version)
{
    json_t *m = json_pack("{s:s, s:s, s:s, s:o}", "type", "start", "saga_id", id, "saga",
                          "order", "input", json_loads(INPUT, 0, NULL));
    if (version > 0)
        json_object_set_new(m, "version", json_integer(version));
    char *text = json_dumps(m, JSON_COMPACT);
    cr_assert_eq(system_produce_input(&sys, id, text), 0);
    free(text);
    json_decref(m);
}

static void expect_status(const char *id, const char *status)
{
    char why[8192] = "";
    cr_assert(system_expect_status(&sys, id, status, WAIT_MS, why, sizeof why), "%s", why);
}

/* The recorded content hash of order@version (saga:definition-hashes), into hash[65]. */
static const char *recorded_hash(int version, char *hash)
{
    redisReply *r = redisCommand(sys.rc, "HGET saga:definition-hashes order@%d", version);
    snprintf(hash, 65, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return hash;
}

static bool definition_recorded(int version)
{
    redisReply *r = redisCommand(sys.rc, "HEXISTS saga:definitions order@%d", version);
    bool yes = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return yes;
}

/* Checks that saga id ran on order vversion: the hash's fields, and every command's
 * saga_version and command types. */
static void expect_version(const char *id, int version)
{
    char buf[128], hash[65], want[16];
    snprintf(want, sizeof want, "%d", version);
    cr_assert_str_eq(system_field(&sys, id, "definition_version", buf, sizeof buf), want,
                     "%s runs on v%d", id, version);
    cr_assert_str_eq(system_field(&sys, id, "definition_hash", buf, sizeof buf),
                     recorded_hash(version, hash), "%s: the hash of v%d", id, version);
    json_t *cmds = scripted_commands(participant, id);
    cr_assert_geq(json_array_size(cmds), 3, "%s: commands", id);
    size_t i;
    json_t *c;
    json_array_foreach(cmds, i, c)
    {
        cr_assert_eq(json_integer_value(json_object_get(c, "saga_version")), version,
                     "%s: command %s has saga_version %lld", id,
                     json_string_value(json_object_get(c, "command_id")),
                     (long long)json_integer_value(json_object_get(c, "saga_version")));
        const char *type = json_string_value(json_object_get(c, "command"));
        const char *step = json_string_value(json_object_get(c, "step"));
        bool renamed = strcmp(step, "charge") != 0 &&
                       strcmp(json_string_value(json_object_get(c, "kind")), "action") == 0;
        cr_assert_eq(strstr(type, ".v2") != NULL, renamed && version == 2,
                     "%s: command type %s rendered from v%d", id, type, version);
    }
    json_decref(cmds);
}

/* The sent_at of saga id's ship action (0 when not sent). */
static long long ship_sent_at(const char *id)
{
    json_t *cmds = scripted_commands(participant, id);
    long long at = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cmds, i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "step")), "ship") == 0)
            at = (long long)json_integer_value(json_object_get(c, "sent_at"));
    }
    json_decref(cmds);
    return at;
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Occurrences of needle in coordinator idx's log (JSON lines: a quote is \" there). */
static int log_count(int idx, const char *needle)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/coordinator-%d.log", sys.dir, idx);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0;
    char line[8192];
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

typedef struct log_wait {
    int idx, n;
    const char *needle;
} log_wait_t;

static bool log_has(void *opaque)
{
    log_wait_t *w = opaque;
    return log_count(w->idx, w->needle) >= w->n;
}

static void expect_log(int idx, const char *needle, int n)
{
    log_wait_t w = {idx, n, needle};
    cr_assert(fixture_wait_until(log_has, &w, WAIT_MS), "coordinator %d logs \"%s\" %d time(s)",
              idx, needle, n);
}

/* The outcome of saga id, waiting for it; new reference or NULL. */
static json_t *outcome_of(const char *id)
{
    int64_t deadline = fixture_now_ms() + WAIT_MS;
    while (fixture_now_ms() < deadline) {
        for (size_t i = 0; i < fixture_collector_count(outcomes); i++) {
            const fixture_message_t *m = fixture_collector_at(outcomes, i);
            if (m->key && strcmp(m->key, id) == 0)
                return json_loads(m->value, 0, NULL);
        }
        fixture_collector_wait(outcomes, fixture_collector_count(outcomes) + 1, 50);
    }
    return NULL;
}

/* Starts SAGAS sagas prefix-N on the latest version and waits until each one's charge is
 * in flight (its reply comes LATE_MS later). */
static void start_in_flight(const char *prefix)
{
    for (int i = 0; i < SAGAS; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        start_saga(id, 0);
    }
    bool all_sent = scripted_wait(participant, 2 * SAGAS, WAIT_MS);
    if (!all_sent)
        for (int i = 0; i < SAGAS; i++) { /* what the coordinators logged about each */
            char id[64];
            snprintf(id, sizeof id, "%s-%d", prefix, i);
            system_explain(&sys, id);
        }
    cr_assert(all_sent, "reserve and charge of each (%zu commands seen)",
              scripted_count(participant));
    for (int i = 0; i < SAGAS; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        json_t *charge = system_step(&sys, id, "charge");
        cr_assert_str_eq(json_string_value(json_object_get(charge, "phase")), "running",
                         "%s: charge in flight", id);
        json_decref(charge);
    }
}

static void expect_all(const char *prefix, const char *status, int version)
{
    for (int i = 0; i < SAGAS; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        expect_status(id, status);
        expect_version(id, version);
    }
}

/* The charge of the in-flight sagas answers late. */
static const script_rule_t LATE_RULES[] = {
    {"old-0", "charge", "action", 0, SCRIPT_OK_AFTER, NULL, LATE_MS},
    {"old-1", "charge", "action", 0, SCRIPT_OK_AFTER, NULL, LATE_MS},
    {"old-2", "charge", "action", 0, SCRIPT_OK_AFTER, NULL, LATE_MS},
};

Test(versions, sighup_loads_a_new_version_while_sagas_of_the_old_one_finish_on_it)
{
    copy_sagas(dir_a);
    start_system(dir_a, LATE_RULES, sizeof LATE_RULES / sizeof *LATE_RULES);
    start_in_flight("old");
    char v1_hash[65];
    cr_assert_str_neq(recorded_hash(1, v1_hash), "", "order@1 is recorded with its hash");

    char *v2 = order_variant("v2");
    write_file(dir_a, "order-v2.json", v2);
    free(v2);
    cr_assert_eq(kill(sys.coordinators[0], SIGHUP), 0);
    expect_log(0, "definitions reloaded from", 1);
    long long reloaded_at = wall_ms();
    cr_assert(definition_recorded(2), "order@2 is recorded in Redis by the reload");
    cr_assert_eq(log_count(0, "reloads: 1 applied, 0 refused"), 1, "the reload is counted");

    start_saga("new", 0);      /* no version: the latest of the folder */
    start_saga("named-1", 1);  /* an older version, by name */
    start_saga("named-7", 7);  /* a version nobody has */

    expect_all("old", "completed", 1);
    for (int i = 0; i < SAGAS; i++) {
        char id[64];
        snprintf(id, sizeof id, "old-%d", i);
        cr_assert_gt(ship_sent_at(id), reloaded_at - 1000,
                     "%s sent its last step after the reload, still from v1", id);
    }
    cr_assert_str_eq(recorded_hash(1, v1_hash), v1_hash, "order@1 unchanged");
    expect_status("new", "completed");
    expect_version("new", 2);
    expect_status("named-1", "completed");
    expect_version("named-1", 1);

    json_t *o = outcome_of("named-7");
    cr_assert_not_null(o);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "rejected");
    cr_assert_str_eq(json_string_value(json_object_get(o, "error")),
                     "saga definition \"order\" has no version 7");
    json_decref(o);
    cr_assert_null(system_saga(&sys, "named-7", NULL), "a rejected start writes nothing");
}

Test(versions, takeover_by_a_coordinator_with_only_the_new_version_finishes_on_the_old)
{
    copy_sagas(dir_a);
    copy_sagas(dir_b);
    char *v2 = order_variant("v2");
    write_file(dir_b, "order.json", v2); /* B's folder: order v2 only */
    free(v2);
    start_system(dir_a, LATE_RULES, sizeof LATE_RULES / sizeof *LATE_RULES);
    start_in_flight("old");

    char defs_b[PATH_MAX + 32];
    snprintf(defs_b, sizeof defs_b, "--definitions=%s", dir_b);
    const char *args_b[] = {defs_b, NULL};
    int b = system_add_coordinator(&sys, args_b, NULL);
    cr_assert_geq(b, 0);
    /* A leaves while every saga's charge is in flight: B takes every partition. */
    cr_assert_eq(fixture_stop_process(sys.coordinators[0], FIXTURE_STOP_TIMEOUT_MS), 0);
    sys.coordinators[0] = 0;

    expect_all("old", "completed", 1);
    cr_assert_geq(log_count(b, "loaded from Redis"), 1,
                  "B loaded order v1 from Redis for the sagas it took over");
    cr_assert_eq(log_count(b, "stays in Redis untouched"), 0);

    start_saga("new-on-b", 0);
    start_saga("named-1-on-b", 1);
    expect_status("new-on-b", "completed");
    expect_version("new-on-b", 2);
    expect_status("named-1-on-b", "completed");
    expect_version("named-1-on-b", 1);
}

Test(versions, a_bad_reload_is_refused_whole_and_the_old_definitions_stay)
{
    copy_sagas(dir_a);
    start_system(dir_a, NULL, 0);
    char v1_hash[65], buf[128];
    recorded_hash(1, v1_hash);

    /* An invalid file next to a valid new version: neither is applied. */
    char *v2 = order_variant("v2");
    write_file(dir_a, "order-v2.json", v2);
    write_file(dir_a, "broken.json", "{\"name\": \"broken\", \"version\": 1,,}");
    cr_assert_eq(kill(sys.coordinators[0], SIGHUP), 0);
    expect_log(0, "reloads: 0 applied, 1 refused", 1);
    cr_assert_geq(log_count(0, "broken.json:1:"), 1, "the error names the file and place");
    cr_assert(!definition_recorded(2), "nothing of the refused reload reached Redis");
    start_saga("after-invalid", 0);
    expect_status("after-invalid", "completed");
    expect_version("after-invalid", 1);

    /* A version whose content changed without a new version number. */
    remove_file(dir_a, "broken.json");
    remove_file(dir_a, "order-v2.json");
    char *same = order_variant("same-version");
    write_file(dir_a, "order.json", same);
    free(same);
    cr_assert_eq(kill(sys.coordinators[0], SIGHUP), 0);
    expect_log(0, "reloads: 0 applied, 2 refused", 1);
    cr_assert_geq(log_count(0, "order.json: saga \\\"order\\\" version 1 changed content"), 1,
                  "the error names the file and the version");
    cr_assert_str_eq(recorded_hash(1, buf), v1_hash, "order@1 keeps its content in Redis");
    start_saga("after-changed", 0);
    expect_status("after-changed", "completed");
    expect_version("after-changed", 1);

    /* A coordinator starting with that changed file is refused too (checked against
     * Redis), naming the file and the version. */
    const char *args[] = {NULL};
    int bad = system_add_coordinator(&sys, args, NULL);
    cr_assert_geq(bad, 0);
    int status = 0;
    cr_assert_eq(fixture_wait_exit(sys.coordinators[bad], WAIT_MS, &status), 0,
                 "the coordinator refuses to start");
    sys.coordinators[bad] = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    cr_assert_geq(log_count(bad, "order.json: saga \\\"order\\\" version 1 is recorded in Redis "
                                 "with other content"), 1);

    /* Fixed: the folder is v1 as before plus v2; the reload applies. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tests/sagas/order.json",
             getenv("SAGA_SOURCE_DIR") ? getenv("SAGA_SOURCE_DIR") : ".");
    json_t *orig = json_load_file(path, 0, NULL);
    char *orig_text = json_dumps(orig, JSON_INDENT(2));
    json_decref(orig);
    write_file(dir_a, "order.json", orig_text);
    free(orig_text);
    write_file(dir_a, "order-v2.json", v2);
    free(v2);
    cr_assert_eq(kill(sys.coordinators[0], SIGHUP), 0);
    expect_log(0, "reloads: 1 applied, 2 refused", 1);
    start_saga("after-fixed", 0);
    expect_status("after-fixed", "completed");
    expect_version("after-fixed", 2);
}
