/* test_guards.c - production guards: a coordinator refuses an evicting or volatile Redis
 * with a clear message, and accepts a safe one (and a volatile one in dev_mode). */
#include "fixture.h"
#include "guards.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static redis_fixture_t redis;
static broker_fixture_t broker;

static void stop(void)
{
    fixture_broker_stop(&broker);
    fixture_redis_stop(&redis);
}

TestSuite(guards, .fini = stop, .timeout = 60);

static config_t cfg_with(int dev_mode)
{
    config_t c;
    config_defaults(&c);
    c.dev_mode = dev_mode;
    return c;
}

Test(guards, decisions_on_reports)
{
    char err[512] = "";
    config_t cfg = cfg_with(0);
    guards_redis_report_t r = {.maxmemory_policy = "noeviction", .aof_enabled = 1};
    cr_assert_eq(guards_check_redis(&r, &cfg, err, sizeof err), 0);
    snprintf(r.maxmemory_policy, sizeof r.maxmemory_policy, "allkeys-lru");
    cr_assert_eq(guards_check_redis(&r, &cfg, err, sizeof err), -1);
    cr_assert(strstr(err, "maxmemory-policy allkeys-lru") && strstr(err, "noeviction"), "%s", err);
    snprintf(r.maxmemory_policy, sizeof r.maxmemory_policy, "noeviction");
    r.aof_enabled = 0;
    r.rdb_save_points = 0;
    cr_assert_eq(guards_check_redis(&r, &cfg, err, sizeof err), -1);
    cr_assert(strstr(err, "keeps nothing across a restart"), "%s", err);
    cfg.dev_mode = 1;
    cr_assert_eq(guards_check_redis(&r, &cfg, err, sizeof err), 0, "dev_mode accepts it");
    r.rdb_save_points = 2;
    cfg.dev_mode = 0;
    cr_assert_eq(guards_check_redis(&r, &cfg, err, sizeof err), 0, "RDB alone is persistence");
}

Test(guards, reads_a_real_redis)
{
    cr_assert_eq(fixture_redis_start(&redis, "maxmemory-policy volatile-lru\nappendonly yes\n"), 0);
    redisContext *rc = fixture_redis_connect(&redis);
    guards_redis_report_t r;
    char err[256] = "";
    cr_assert_eq(guards_read_redis(rc, &r, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(r.maxmemory_policy, "volatile-lru");
    cr_assert_eq(r.aof_enabled, 1);
    cr_assert_eq(r.rdb_save_points, 0, "the fixture sets save \"\"");
    cr_assert_eq(r.replicas, 0);
    redisFree(rc);
}

/* Runs saga-coordinator against the fixtures; returns its exit status, its output in out. */
static int run_coordinator(const char *extra, char *out, size_t len)
{
    char bin[PATH_MAX], cmd[PATH_MAX * 3];
    cr_assert_eq(fixture_bin_path("saga-coordinator", bin, sizeof bin), 0);
    const char *src = getenv("SAGA_SOURCE_DIR");
    int w = snprintf(cmd, sizeof cmd,
             "timeout 20 %s --bootstrap_servers=%s --redis_port=%d --definitions=%s/tests/sagas "
             "--http_listen= %s 2>&1",
             bin, broker.bootstrap, redis.port, src ? src : ".", extra);
    cr_assert(w > 0 && (size_t)w < sizeof cmd);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(guards, an_evicting_redis_is_refused_with_a_clear_message)
{
    cr_assert_eq(fixture_redis_start(&redis, "maxmemory-policy allkeys-lru\nappendonly yes\n"), 0);
    cr_assert_eq(fixture_broker_start(&broker, 1, "saga.input:4"), 0);
    char out[8192];
    int status = run_coordinator("", out, sizeof out);
    cr_assert_eq(status, 2, "exit status %d, output:\n%s", status, out);
    cr_assert(strstr(out, "maxmemory-policy allkeys-lru: under memory pressure it would evict "
                          "saga keys and lose sagas. Set maxmemory-policy noeviction."),
              "output:\n%s", out);
}

Test(guards, a_volatile_redis_is_refused_unless_dev_mode)
{
    cr_assert_eq(fixture_redis_start(&redis, NULL), 0);
    cr_assert_eq(fixture_broker_start(&broker, 1, "saga.input:4"), 0);
    char out[8192];
    int status = run_coordinator("", out, sizeof out);
    cr_assert_eq(status, 2, "exit status %d, output:\n%s", status, out);
    cr_assert(strstr(out, "keeps nothing across a restart"), "output:\n%s", out);
    /* In dev mode it starts: it runs until timeout stops it (exit 124 from timeout(1) or 0
     * when SIGTERM made it stop cleanly). */
    status = run_coordinator("--dev_mode=1", out, sizeof out);
    cr_assert(strstr(out, "dev_mode: Redis") && strstr(out, "partition 0: epoch"),
              "output:\n%s", out);
    cr_assert(status == 0 || status == 124, "exit status %d", status);
}
