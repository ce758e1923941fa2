/* test_leases.c - membership=redis with real coordinator processes (docs/high-availability.md):
 * partition leases spread over the live instances; a SIGKILLed owner's partitions taken
 * by the survivors once its leases expire, without Kafka's group protocol; a join takes
 * its share by hand-over; SIGTERM releases the leases at once; an owner frozen past its
 * lease writes nothing even before anyone else takes its partitions; the input position
 * is kept in Redis with the state. Every saga ends and no step is applied twice. */
#include "membership.h"
#include "rkeys.h"
#include "route.h"
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define WAIT_MS 40000
#define LEASE_MS 1000

static test_system_t sys;
static scripted_t *participant;
static const char *const COMMAND_TOPICS[] = {"inventory.commands", "payment.commands",
                                             "shipping.commands", NULL};
static const char *const NAMES[] = {"lease-a", "lease-b", "lease-c"};
static const char INPUT[] = "{\"sku\": \"A-1\", \"qty\": 2}";

static void stop_all(void)
{
    for (int i = 0; i < sys.coordinator_count; i++)
        if (sys.coordinators[i] > 0)
            kill(sys.coordinators[i], SIGCONT); /* a frozen process cannot handle SIGTERM */
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
}

TestSuite(leases, .fini = stop_all, .timeout = 180);

/* Starts coordinator NAMES[i] with membership=redis. */
static void add_leased(int i, const char *const *env)
{
    char name[64];
    snprintf(name, sizeof name, "--instance_id=%s", NAMES[i]);
    const char *args[] = {"--membership=redis", "--lease_ms=1000", name, NULL};
    cr_assert_eq(system_add_coordinator(&sys, args, env), i);
}

/* The owner the spread gives partition p among the first n NAMES but skip. */
static const char *expected_owner(int n, int skip, int p)
{
    const char *members[3];
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (i != skip)
            members[k++] = NAMES[i];
    int owner[SYSTEM_INPUT_PARTITIONS];
    cr_assert_eq(membership_spread(members, k, SYSTEM_INPUT_PARTITIONS, owner), 0);
    return members[owner[p]];
}

static void start(int coordinators, const char *const *env)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, COMMAND_TOPICS, NULL, 0);
    cr_assert_not_null(participant);
    for (int i = 0; i < coordinators; i++)
        add_leased(i, env);
    cr_assert(system_wait_owned(&sys, WAIT_MS), "every partition has an owner");
}

static void start_sagas(const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        cr_assert_eq(system_start_saga(&sys, id, "order", INPUT), 0);
    }
}

/* Every saga completed with each action taken once (first attempts only). */
static void expect_completed_once(const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char id[64], why[4096];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        cr_assert(system_expect_status(&sys, id, "completed", WAIT_MS, why, sizeof why), "%s",
                  why);
        json_t *cmds = scripted_commands(participant, id);
        size_t k;
        json_t *c;
        json_array_foreach(cmds, k, c)
            cr_assert_eq(json_integer_value(json_object_get(c, "attempt")), 1,
                         "%s: only first attempts were ever sent", id);
        json_decref(cmds);
    }
}

/* The owner record's owner of partition p into buf ("" when none). */
static const char *owner_of(int p, char *buf, size_t len)
{
    redisReply *r = redisCommand(sys.rc, "HGET saga:{p%d}:owner owner", p);
    snprintf(buf, len, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return buf;
}

static long long lease_pttl(int p)
{
    redisReply *r = redisCommand(sys.rc, "PTTL saga:{p%d}:lease", p);
    long long ttl = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -3;
    freeReplyObject(r);
    return ttl;
}

typedef struct owners_wait {
    int n, skip; /* the owners rendezvous hashing gives among NAMES[0..n-1] but skip */
} owners_wait_t;

static bool owners_are(void *opaque)
{
    const owners_wait_t *w = opaque;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char owner[256];
        owner_of(p, owner, sizeof owner);
        if (strcmp(owner, expected_owner(w->n, w->skip, p)) != 0 || lease_pttl(p) <= 0)
            return false; /* not the expected owner, or its lease is not live */
    }
    return true;
}

static void expect_owners(int n, int skip, const char *what)
{
    owners_wait_t w = {n, skip};
    if (fixture_wait_until(owners_are, &w, WAIT_MS))
        return;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char owner[256];
        fprintf(stderr, "partition %d: owner %s (lease %lld ms), expected %s\n", p,
                owner_of(p, owner, sizeof owner), lease_pttl(p), expected_owner(n, skip, p));
    }
    cr_assert_fail("%s", what);
}

Test(leases, partitions_spread_over_the_instances_and_a_killed_ones_move_to_the_survivors)
{
    start(3, NULL);
    expect_owners(3, -1, "each partition is owned by its rendezvous owner");
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        long long ttl = lease_pttl(p);
        cr_assert(ttl > 0 && ttl <= LEASE_MS, "partition %d: lease ttl %lld ms", p, ttl);
    }
    start_sagas("before", 8);
    expect_completed_once("before", 8);

    /* Kill the owner of partition 0: its partitions move to the survivors. */
    int victim = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(NAMES[i], expected_owner(3, -1, 0)) == 0)
            victim = i;
    int64_t t0 = fixture_now_ms();
    kill(sys.coordinators[victim], SIGKILL);
    (void)waitpid(sys.coordinators[victim], NULL, 0);
    sys.coordinators[victim] = 0;
    expect_owners(3, victim, "the survivors own the killed instance's partitions");
    fprintf(stderr, "leases: the killed instance's partitions taken %lld ms after SIGKILL "
            "(lease %d ms)\n", (long long)(fixture_now_ms() - t0), LEASE_MS);
    start_sagas("after", 8);
    expect_completed_once("after", 8);
}

Test(leases, a_join_takes_its_share_by_hand_over_and_sigterm_releases_at_once)
{
    int moving = 0;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++)
        moving += strcmp(expected_owner(2, -1, p), NAMES[1]) == 0;
    cr_assert(moving > 0 && moving < SYSTEM_INPUT_PARTITIONS, "the names share the partitions");
    start(1, NULL);
    start_sagas("one", 6);
    expect_completed_once("one", 6);
    add_leased(1, NULL);
    expect_owners(2, -1, "the newcomer took its share, and only it");
    char log[PATH_MAX + 64];
    snprintf(log, sizeof log, "%s/coordinator-0.log", sys.dir);
    cr_assert(fixture_file_contains(log, "(handed over)"), "the first instance handed over");
    start_sagas("two", 6);
    expect_completed_once("two", 6);

    /* SIGTERM: the leaving instance finishes, releases its leases and leaves the alive
     * set; the other takes everything without waiting for a lease to expire. */
    cr_assert_eq(fixture_stop_process(sys.coordinators[1], WAIT_MS), 0);
    sys.coordinators[1] = 0;
    int64_t t0 = fixture_now_ms();
    expect_owners(1, -1, "the other took everything");
    fprintf(stderr, "leases: partitions taken %lld ms after the SIGTERMed instance exited\n",
            (long long)(fixture_now_ms() - t0));
    snprintf(log, sizeof log, "%s/coordinator-1.log", sys.dir);
    cr_assert(fixture_file_contains(log, "lease(s) released"), "it released its leases");
    start_sagas("three", 6);
    expect_completed_once("three", 6);
}

/* A coordinator frozen with a transition in hand for longer than its lease, while no
 * other instance runs: when it wakes, the transition script refuses the write (the lease
 * expired although the epoch did not move), it takes its partitions again under new
 * epochs and the saga completes, each step once. */
Test(leases, an_owner_frozen_past_its_lease_writes_nothing)
{
    const char *env[] = {"SAGA_FREEZE_AT=before_redis_write", NULL};
    start(1, env);
    cr_assert_eq(system_start_saga(&sys, "frozen-0", "order", INPUT), 0);
    pid_t pid = sys.coordinators[0];
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    bool stopped = false;
    for (int i = 0; i < 2000 && !stopped; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        stopped = p && p[1] == ' ' && p[2] == 'T';
        if (!stopped)
            usleep(10000);
    }
    cr_assert(stopped, "the coordinator froze with the saga's first transition in hand");
    usleep(3 * LEASE_MS * 1000); /* its leases expire; no one takes them */
    char home = (char)route_home("frozen-0", SYSTEM_INPUT_PARTITIONS, SYSTEM_INPUT_PARTITIONS);
    cr_assert_leq(lease_pttl(home), -2, "the lease of partition %d expired", (int)home);
    kill(pid, SIGCONT);
    expect_completed_once("frozen", 1);
    char log[PATH_MAX + 64];
    snprintf(log, sizeof log, "%s/coordinator-0.log", sys.dir);
    cr_assert(fixture_file_contains(log, "expired"), "the frozen write was refused by the lease");
    cr_assert_str_eq(system_field(&sys, "frozen-0", "version", buf, sizeof buf), "4",
                     "start and three replies: the refused write did not get in");
}

/* The next input offset of each partition is kept in Redis with the state, so that a new
 * owner resumes from a position consistent with what it loads. */
Test(leases, the_input_position_is_kept_with_the_state)
{
    start(1, NULL);
    start_sagas("pos", 8);
    expect_completed_once("pos", 8);
    int with_input = 0;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[RKEYS_KEY_MAX];
        rkeys_t keys = {RKEYS_DEFAULT_PREFIX};
        int64_t low = 0, high = 0;
        cr_assert_eq(fixture_watermarks(sys.producer, "saga.input", p, &low, &high), 0);
        if (high == 0)
            continue;
        with_input++;
        bool caught_up = false;
        long long pos = -1;
        for (int i = 0; i < 400 && !caught_up; i++) {
            redisReply *r = redisCommand(sys.rc, "GET %s", rkeys_position(&keys, key, p));
            pos = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
            freeReplyObject(r);
            caught_up = pos == high;
            if (!caught_up)
                usleep(25000);
        }
        cr_assert(caught_up, "partition %d: position %lld in Redis, input ends at %lld", p, pos,
                  (long long)high);
    }
    cr_assert_gt(with_input, 0);
}
