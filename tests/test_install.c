/* test_install.c - the project as users get it: `cmake --install` into a temporary
 * prefix, then participants/examples/minimal-participant.c (its installed copy) built
 * outside the source tree, once with `pkg-config --cflags --libs saga-participant` and once
 * as a CMake project with find_package(saga-participant), each run against the installed
 * saga-coordinator and saga-devbroker, completing a one-step saga checked in Redis.
 *
 * Needs the build tree ($SAGA_BUILD_DIR, set by ctest), cmake, cc and pkg-config (all
 * build dependencies). Skipped in the sanitizer build: programs linked against its
 * installed SDK would need the sanitizer runtime, which an outside build does not ask for. */
#include "saga_version.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 60000
#define CMD_MAX 8192

/* The one-step saga the minimal participant serves (its greet.hello / greet.undo). */
static const char GREETING_SAGA[] =
    "{\"name\": \"greeting\", \"version\": 1,\n"
    " \"input\": {\"type\": \"object\", \"required\": [\"name\"],\n"
    "           \"properties\": {\"name\": {\"type\": \"string\"}}},\n"
    " \"defaults\": {\"timeout_ms\": 20000},\n"
    " \"steps\": [{\"name\": \"greet\", \"topic\": \"greeter.commands\",\n"
    "   \"action\": {\"command\": \"greet.hello\", \"payload\": {\"name\": \"{{input.name}}\"}},\n"
    "   \"compensation\": {\"command\": \"greet.undo\"}}]}\n";

static char tmp[PATH_MAX];    /* everything of this test: prefix, sources, builds, logs */
static char prefix[PATH_MAX + 16];
static test_system_t sys;
static pid_t participant;

static void cleanup(void)
{
    fixture_stop_process(participant, FIXTURE_STOP_TIMEOUT_MS);
    participant = 0;
    system_stop(&sys);
    if (*tmp && !getenv("SAGA_TEST_KEEP")) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        (void)system(cmd);
    } else if (*tmp) {
        fprintf(stderr, "test_install: kept %s\n", tmp);
    }
    *tmp = '\0';
}

TestSuite(install, .fini = cleanup, .timeout = 400);

/* Runs a shell command (printf-style) with its output in tmp/cmd.log; on failure the
 * assertion shows the command and that output. */
static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
    char cmd[CMD_MAX], full[CMD_MAX + PATH_MAX + 64], log[PATH_MAX + 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(log, sizeof log, "%s/cmd.log", tmp);
    snprintf(full, sizeof full, "(%s) >'%s' 2>&1", cmd, log);
    int rc = system(full);
    if (rc != 0) {
        char out[4096] = "";
        FILE *f = fopen(log, "r");
        if (f) {
            out[fread(out, 1, sizeof out - 1, f)] = '\0';
            fclose(f);
        }
        cr_assert_fail("`%s` exited %d:\n%s", cmd, rc, out);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fputs(text, f) < 0, 0);
    cr_assert_eq(fclose(f), 0);
}

static void assert_installed(const char *rel)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", prefix, rel);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "installed: %s", rel);
}

/* The greeting counter of name, as the participant's effect keeps it ("" when none). */
static void greetings(const char *name, char *out, size_t len)
{
    redisReply *r = redisCommand(sys.rc, "HGET greeter:{greeter}:count %s", name);
    cr_assert_not_null(r);
    snprintf(out, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

/* Starts the participant at bin, completes saga id in Redis with it, stops it. */
static void complete_saga_with(const char *bin, const char *id, const char *want_count)
{
    char port[16], log[PATH_MAX * 2], count[32];
    snprintf(port, sizeof port, "%d", sys.redis.port);
    snprintf(log, sizeof log, "%s/%s.log", tmp, id);
    const char *argv[] = {bin, sys.broker.bootstrap, port, NULL};
    participant = fixture_spawn(argv, log, NULL);
    cr_assert_gt(participant, 0, "cannot start %s", bin);
    cr_assert_eq(system_start_saga(&sys, id, "greeting", "{\"name\": \"ada\"}"), 0);
    cr_assert(system_wait_status(&sys, id, "completed", WAIT_MS),
              "saga %s completed with %s (participant log: %s)", id, bin, log);
    greetings("ada", count, sizeof count);
    cr_assert_str_eq(count, want_count, "the greet step's effect applied once");
    cr_assert_eq(fixture_stop_process(participant, FIXTURE_STOP_TIMEOUT_MS), 0);
    participant = 0;
}

Test(install, prefix_pkg_config_and_find_package_run_a_saga)
{
#ifdef SAGA_TEST_SANITIZE
    cr_skip_test("sanitizer build: an outside build would need the sanitizer runtime");
#endif
    const char *build = getenv("SAGA_BUILD_DIR");
    cr_assert(build && *build, "SAGA_BUILD_DIR (set by ctest)");
    snprintf(tmp, sizeof tmp, "/tmp/saga-install-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(prefix, sizeof prefix, "%s/prefix", tmp);

    /* 1. Install, and what it put where. */
    run("cmake --install '%s' --prefix '%s'", build, prefix);
    static const char *const FILES[] = {
        "bin/saga-coordinator", "bin/sagactl", "bin/saga-devbroker", "bin/saga-example-inventory",
        "bin/saga-example-minimal", "include/saga_participant.h",
        "include/saga_participant_version.h", "lib/libsagaparticipant.so.2",
        "lib/libsagaparticipant.a", "lib/pkgconfig/saga-participant.pc",
        "lib/cmake/saga-participant/saga-participant-config.cmake",
        "share/saga/schemas/command.json", "share/saga/sagas/order-placement.json",
        "share/man/man8/saga-coordinator.8.gz", "share/man/man1/sagactl.1.gz",
        "share/man/man5/saga-definition.5.gz", "etc/saga/coordinator.conf",
        "lib/systemd/system/saga-coordinator.service",
        "lib/systemd/system/saga-coordinator@.service",
        "share/doc/libsagaparticipant-dev/examples/minimal-participant.c"};
    for (size_t i = 0; i < sizeof FILES / sizeof *FILES; i++)
        assert_installed(FILES[i]);
    run("test \"$('%s/bin/saga-coordinator' --version)\" = 'saga-coordinator %s'", prefix,
        SAGA_VERSION);
    /* The private headers are not installed: a program cannot include them. */
    run("test ! -e '%s/include/sp_log.h'", prefix);

    /* 2. The example, outside the source tree, with pkg-config. */
    char src[PATH_MAX * 2], pc[PATH_MAX * 2];
    snprintf(src, sizeof src, "%s/src", tmp);
    snprintf(pc, sizeof pc, "PKG_CONFIG_PATH='%s/lib/pkgconfig'", prefix);
    run("mkdir -p '%s' && cp '%s/share/doc/libsagaparticipant-dev/examples/minimal-participant.c' '%s/'",
        src, prefix, src);
    run("cd '%s' && cc -std=c11 -Wall -Wextra -Werror -o minimal-pc minimal-participant.c "
        "$(%s pkg-config --cflags --libs saga-participant) -Wl,-rpath,'%s/lib'",
        src, pc, prefix);
    run("test \"$(%s pkg-config --modversion saga-participant)\" = '%s'", pc, SAGA_VERSION);
    run("ldd '%s/minimal-pc' | grep -q 'libsagaparticipant.so.2 => %s/lib/'", src, prefix);
    run("test \"$('%s/minimal-pc' --version)\" = 'minimal-participant (libsagaparticipant %s)'", src,
        SAGA_VERSION);

    /* 3. The same source as a CMake project using find_package. */
    char cm[PATH_MAX * 2], cmakelists[PATH_MAX * 3];
    snprintf(cm, sizeof cm, "%s/cmake-project", tmp);
    run("mkdir -p '%s'", cm);
    snprintf(cmakelists, sizeof cmakelists, "%s/CMakeLists.txt", cm);
    write_file(cmakelists,
               "cmake_minimum_required(VERSION 3.18)\n"
               "project(minimal C)\n"
               "find_package(saga-participant " SAGA_VERSION " EXACT REQUIRED)\n"
               "add_executable(minimal-cmake ../src/minimal-participant.c)\n"
               "target_compile_options(minimal-cmake PRIVATE -Wall -Wextra -Werror)\n"
               "target_link_libraries(minimal-cmake PRIVATE saga::participant)\n");
    run("cmake -S '%s' -B '%s/build' -DCMAKE_PREFIX_PATH='%s' && cmake --build '%s/build'", cm,
        cm, prefix, cm);
    run("ldd '%s/build/minimal-cmake' | grep -q 'libsagaparticipant.so.2 => %s/lib/'", cm, prefix);

    /* 4. Both against the installed coordinator and broker, on a real Redis. */
    char bin[PATH_MAX * 2], defs[PATH_MAX * 2], saga_file[PATH_MAX * 3];
    snprintf(bin, sizeof bin, "%s/bin", prefix);
    setenv("SAGA_BIN_DIR", bin, 1); /* the fixtures start programs from here */
    snprintf(defs, sizeof defs, "%s/sagas", tmp);
    run("mkdir -p '%s'", defs);
    snprintf(saga_file, sizeof saga_file, "%s/greeting.json", defs);
    write_file(saga_file, GREETING_SAGA);
    cr_assert_eq(system_start(&sys, defs, "greeter.commands:1", NULL), 0);
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the installed coordinator owns the partitions");

    char pc_bin[PATH_MAX * 3], cmake_bin[PATH_MAX * 3];
    snprintf(pc_bin, sizeof pc_bin, "%s/minimal-pc", src);
    snprintf(cmake_bin, sizeof cmake_bin, "%s/build/minimal-cmake", cm);
    complete_saga_with(pc_bin, "greet-pkg-config", "1");
    complete_saga_with(cmake_bin, "greet-find-package", "2");
}
