/* test_fixture.c - tests of the process and waiting helpers of tests/support/fixture.c. */
#include "fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_EXIT_TIMEOUT_MS 5000
#define TEST_SHORT_TIMEOUT_MS 200

static char work_dir[PATH_MAX];

static void work_dir_make(void)
{
    snprintf(work_dir, sizeof work_dir, "/tmp/saga-test-fixture-XXXXXX");
    cr_assert_not_null(mkdtemp(work_dir), "mkdtemp: %s", strerror(errno));
}

static void work_dir_remove(void)
{
    if (work_dir[0] == '\0')
        return;
    const char *argv[] = {"rm", "-rf", work_dir, NULL};
    pid_t pid = fixture_spawn(argv, NULL, NULL);
    if (pid > 0)
        (void)fixture_wait_exit(pid, TEST_EXIT_TIMEOUT_MS, NULL);
    work_dir[0] = '\0';
}

TestSuite(fixture, .init = work_dir_make, .fini = work_dir_remove);

static void path_in(char *out, size_t size, const char *name)
{
    cr_assert_lt(snprintf(out, size, "%s/%s", work_dir, name), (int)size);
}

static char *file_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Alive = /proc/PID exists and is not a zombie. */
static bool process_alive(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *paren = strrchr(stat, ')');
    return paren && paren[1] == ' ' && paren[2] != 'Z';
}

static bool process_gone(void *opaque)
{
    return !process_alive(*(pid_t *)opaque);
}

static bool file_exists(void *opaque)
{
    return access((const char *)opaque, F_OK) == 0;
}

static bool always_false(void *opaque)
{
    (void)opaque;
    return false;
}

static bool counter_reaches_3(void *opaque)
{
    return ++*(int *)opaque >= 3;
}

Test(fixture, wait_until_polls_until_true_or_deadline)
{
    int calls = 0;
    cr_assert(fixture_wait_until(counter_reaches_3, &calls, TEST_EXIT_TIMEOUT_MS));
    cr_assert_eq(calls, 3);

    int64_t t0 = fixture_now_ms();
    cr_assert_not(fixture_wait_until(always_false, NULL, TEST_SHORT_TIMEOUT_MS));
    int64_t took = fixture_now_ms() - t0;
    cr_assert_geq(took, TEST_SHORT_TIMEOUT_MS);
    cr_assert_lt(took, TEST_SHORT_TIMEOUT_MS + 1000, "took %lld ms", (long long)took);
}

Test(fixture, free_port_is_a_loopback_port)
{
    int a = fixture_free_port();
    cr_assert_gt(a, 0);
    cr_assert_lt(a, 65536);
}

Test(fixture, spawn_reports_exit_status_and_env)
{
    char log[PATH_MAX];
    path_in(log, sizeof log, "env.log");
    const char *argv[] = {"sh", "-c", "printf '%s' \"$FIXTURE_X\"; exit 3", NULL};
    const char *env[] = {"FIXTURE_X=hello", NULL};
    pid_t pid = fixture_spawn(argv, log, env);
    cr_assert_gt(pid, 0);
    int status = 0;
    cr_assert_eq(fixture_wait_exit(pid, TEST_EXIT_TIMEOUT_MS, &status), 0);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 3);
    cr_assert_str_eq(file_read(log), "hello");
}

Test(fixture, spawn_of_a_missing_program_fails)
{
    const char *argv[] = {"/nonexistent/saga-no-such-program", NULL};
    cr_assert_eq(fixture_spawn(argv, NULL, NULL), -1);
    const char *argv2[] = {"saga-no-such-program-in-path", NULL};
    cr_assert_eq(fixture_spawn(argv2, NULL, NULL), -1);
}

Test(fixture, wait_exit_times_out_on_a_running_child)
{
    const char *argv[] = {"sleep", "30", NULL};
    pid_t pid = fixture_spawn(argv, NULL, NULL);
    cr_assert_gt(pid, 0);
    cr_assert_eq(fixture_wait_exit(pid, TEST_SHORT_TIMEOUT_MS, NULL), -1);
    cr_assert_eq(errno, ETIMEDOUT);
    cr_assert_eq(fixture_stop_process(pid, TEST_EXIT_TIMEOUT_MS), 0);
    cr_assert_not(process_alive(pid));
}

Test(fixture, stop_process_kills_the_group_of_a_child_ignoring_sigterm)
{
    char pidfile[PATH_MAX], script[PATH_MAX * 4];
    path_in(pidfile, sizeof pidfile, "grandchild.pid");
    snprintf(script, sizeof script, "trap '' TERM; sleep 30 & echo $! > %s.tmp && mv %s.tmp %s; wait", pidfile,
             pidfile, pidfile);
    const char *argv[] = {"sh", "-c", script, NULL};
    pid_t pid = fixture_spawn(argv, NULL, NULL);
    cr_assert_gt(pid, 0);
    cr_assert(fixture_wait_until(file_exists, pidfile, TEST_EXIT_TIMEOUT_MS), "the script wrote no pid file");
    char *text = file_read(pidfile);
    cr_assert_not_null(text);
    pid_t grandchild = (pid_t)atol(text);
    cr_assert_gt(grandchild, 0);

    cr_assert_eq(fixture_stop_process(pid, TEST_SHORT_TIMEOUT_MS), 0);
    cr_assert_not(process_alive(pid));
    cr_assert(fixture_wait_until(process_gone, &grandchild, TEST_EXIT_TIMEOUT_MS),
              "grandchild %ld survived the group kill", (long)grandchild);
}

Test(fixture, stop_process_of_nothing_is_a_no_op)
{
    cr_assert_eq(fixture_stop_process(0, TEST_SHORT_TIMEOUT_MS), 0);
    cr_assert_eq(fixture_stop_process(-1, TEST_SHORT_TIMEOUT_MS), 0);
}

Test(fixture, child_dies_with_the_process_that_spawned_it)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t middle = fork();
    if (middle == 0) { /* no cr_assert here: it would report from a pid Criterion does not know */
        const char *argv[] = {"sleep", "30", NULL};
        pid_t pid = fixture_spawn(argv, NULL, NULL);
        ssize_t w = write(fds[1], &pid, sizeof pid);
        _exit(w == (ssize_t)sizeof pid && pid > 0 ? 0 : 1); /* dies without stopping it */
    }
    cr_assert_gt(middle, 0, "fork: %s", strerror(errno));
    close(fds[1]);
    pid_t orphan = -1;
    cr_assert_eq(read(fds[0], &orphan, sizeof orphan), (ssize_t)sizeof orphan);
    close(fds[0]);
    int status = 0;
    cr_assert_eq(fixture_wait_exit(middle, TEST_EXIT_TIMEOUT_MS, &status), 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_gt(orphan, 0);
    cr_assert(fixture_wait_until(process_gone, &orphan, TEST_EXIT_TIMEOUT_MS),
              "pid %ld outlived its parent", (long)orphan);
}

Test(fixture, bin_path_finds_the_devbroker)
{
    char path[PATH_MAX];
    cr_assert_eq(fixture_bin_path("saga-devbroker", path, sizeof path), 0);
    cr_assert_eq(fixture_bin_path("saga-no-such-program", path, sizeof path), -1);
}
