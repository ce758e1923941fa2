/* test_chaos.c - thousands of order-placement sagas through three coordinators and the
 * three example services while coordinators are killed with SIGKILL (by the test, and at
 * their own crash points) and restarted at random, one is frozen with SIGSTOP past its
 * session (a zombie) and woken later, and the services inject failures (random and per
 * sku/amount, steps delayed beyond their timeout, compensations failing a few times).
 * Once the faults stop, every saga must end terminal and the services' ledgers must show
 * every effect applied at most once, no compensation without its action, compensated
 * sagas netting to zero and completed sagas fully applied (tests/support/ledger_check.h).
 * Only valid input is produced, so the dead-letter topic must stay empty: a reply read
 * again after a takeover for a saga that finished is a late duplicate, not a dead letter.
 *
 * It runs twice: with membership=redis (partition leases) and membership=kafka (the group
 * protocol). Seeded: the seed is printed; rerun one with SAGA_CHAOS_SEED=N. Size and length
 * of each run: SAGA_CHAOS_SAGAS (default 1250), SAGA_CHAOS_FAULT_MS (default 30000). */
#include "ledger_check.h"
#include "services.h"
#include "system.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHAOS_SAGAS 2500
#define CHAOS_FAULT_MS 60000
#define CHAOS_DRAIN_MS 180000   /* after the faults: every saga terminal by then */
#define CHAOS_COORDINATORS 3
#define CHAOS_TICK_MS 20        /* pacing of the fault loop (not a synchronisation) */
#define CHAOS_SLOW_MS "5600"    /* beyond the order saga's 5000 ms step timeout */

static test_system_t sys;
static services_t services;
static fixture_collector_t *deadletters;

/* The coordinators' flags: the membership under test (--membership=...) goes last. */
static const char *coord_args[] = {"--session_timeout_ms=4000",
                                   "--consumer.heartbeat.interval.ms=1000", "--lease_ms=1000",
                                   "--log_level=info", NULL, NULL};

static void stop_all(void)
{
    for (int i = 0; i < sys.coordinator_count; i++)
        if (sys.coordinators[i] > 0)
            kill(sys.coordinators[i], SIGCONT); /* a frozen process cannot handle SIGTERM */
    fixture_collector_free(deadletters);
    deadletters = NULL;
    services_stop(&services);
    system_stop(&sys);
}

TestSuite(chaos, .fini = stop_all, .timeout = 420);

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int64_t rnd_between(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static long env_long(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

/* The saga input of order i: a few orders hit each service's injected failures. */
static char *order_input(long i)
{
    char sku[32], address[32];
    if (i % 97 == 13)
        snprintf(sku, sizeof sku, "BROKEN");
    else
        snprintf(sku, sizeof sku, "SKU-%ld", i % 50);
    long amount = i % 89 == 7 ? 999 : 10 + i % 50;
    if (i % 700 == 350)
        snprintf(address, sizeof address, "slow-lane");
    else
        snprintf(address, sizeof address, "street %ld", i);
    char oid[32];
    snprintf(oid, sizeof oid, "o-%ld", i);
    json_t *in = json_pack("{s:s, s:s, s:i, s:i, s:s}", "order_id", oid, "sku", sku, "qty",
                           (int)(1 + i % 5), "amount", (int)amount, "address", address);
    json_t *msg = json_pack("{s:s, s:s, s:s+, s:o}", "type", "start", "saga", "order-placement",
                            "saga_id", "chaos-", oid, "input", in);
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    return text;
}

static void produce_order(long i, char **ids)
{
    char id[64];
    snprintf(id, sizeof id, "chaos-o-%ld", i);
    ids[i] = strdup(id);
    char *text = order_input(i);
    cr_assert_not_null(text);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            sys.producer, RD_KAFKA_V_TOPIC("saga.input"), RD_KAFKA_V_KEY(id, strlen(id)),
            RD_KAFKA_V_VALUE(text, strlen(text)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            cr_assert_eq(err, 0, "produce: %s", rd_kafka_err2str(err));
            break;
        }
        rd_kafka_poll(sys.producer, 10);
    }
    free(text);
    rd_kafka_poll(sys.producer, 0);
}

typedef enum { SLOT_ALIVE, SLOT_DEAD, SLOT_FROZEN } slot_state_t;

typedef struct slot {
    slot_state_t state;
    int gen;
    int64_t wake_at;         /* DEAD: restart then; FROZEN: SIGCONT then */
    bool crash_env;          /* started with a SAGA_CRASH_AT point */
} slot_t;

static slot_t slots[CHAOS_COORDINATORS];
static long kills, self_kills, freezes, restarts;

static void start_slot(int i, bool allow_crash_point)
{
    static const char *const POINTS[] = {"after_redis_write", "after_produce",
                                         "after_timer_write", "after_load"};
    char at[64], after[64];
    const char *env[3] = {NULL};
    slots[i].crash_env = false;
    if (allow_crash_point && rnd() % 2 == 0) {
        const char *point = POINTS[rnd() % 4];
        snprintf(at, sizeof at, "SAGA_CRASH_AT=%s", point);
        snprintf(after, sizeof after, "SAGA_CRASH_AFTER=%lld",
                 (long long)(strcmp(point, "after_load") == 0 ? rnd_between(1, 3)
                                                              : rnd_between(3, 100)));
        env[0] = at;
        env[1] = after;
        slots[i].crash_env = true;
        fprintf(stderr, "chaos: coordinator %d (gen %d) starts with %s %s\n", i, slots[i].gen + 1,
                at, after);
    }
    pid_t pid = services_spawn_coordinator(&sys, i, ++slots[i].gen, coord_args, env);
    cr_assert_gt(pid, 0, "coordinator %d restarts", i);
    slots[i].state = SLOT_ALIVE;
}

static int alive_count(void)
{
    int n = 0;
    for (int i = 0; i < CHAOS_COORDINATORS; i++)
        n += slots[i].state == SLOT_ALIVE;
    return n;
}

static int pick_alive(void)
{
    int n = alive_count(), k = (int)(rnd() % (uint64_t)n);
    for (int i = 0; i < CHAOS_COORDINATORS; i++)
        if (slots[i].state == SLOT_ALIVE && k-- == 0)
            return i;
    return -1;
}

/* Notices coordinators that killed themselves at a crash point. */
static void reap_self_kills(int64_t now, bool restart_now)
{
    for (int i = 0; i < CHAOS_COORDINATORS; i++) {
        int status;
        if (slots[i].state != SLOT_ALIVE ||
            waitpid(sys.coordinators[i], &status, WNOHANG) != sys.coordinators[i])
            continue;
        fprintf(stderr, "chaos: coordinator %d exited by itself (%s %d)\n", i,
                WIFSIGNALED(status) ? "signal" : "status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        cr_assert(slots[i].crash_env && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "coordinator %d died without being told to (see its log in %s)", i, sys.dir);
        self_kills++;
        sys.coordinators[i] = 0;
        slots[i].state = SLOT_DEAD;
        slots[i].wake_at = restart_now ? now : now + rnd_between(500, 4000);
    }
}

typedef struct drain {
    int partitions;
    long sagas;
} drain_t;

/* True when every saga was started and none is running or compensating. */
static bool all_terminal(void *opaque)
{
    drain_t *d = opaque;
    long long active = 0;
    for (int p = 0; p < d->partitions; p++) {
        redisReply *r = redisCommand(sys.rc, "ZCARD saga:{p%d}:index:running", p);
        active += r && r->type == REDIS_REPLY_INTEGER ? r->integer : 1;
        freeReplyObject(r);
        r = redisCommand(sys.rc, "ZCARD saga:{p%d}:index:compensating", p);
        active += r && r->type == REDIS_REPLY_INTEGER ? r->integer : 1;
        freeReplyObject(r);
    }
    return active == 0 && system_counter(&sys, "order-placement:started") == d->sagas;
}

/* One chaos run under membership ("redis": leases, or "kafka": the group protocol). The
 * suite runs both, each with half the sagas and half the faulty time. */
static void chaos_run(const char *membership)
{
    char membership_flag[64];
    snprintf(membership_flag, sizeof membership_flag, "--membership=%s", membership);
    coord_args[4] = membership_flag;
    int64_t t0 = fixture_now_ms();
    uint64_t seed = (uint64_t)env_long("SAGA_CHAOS_SEED", 0);
    if (!seed)
        seed = ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16)) % 1000000 + 1;
    rng_state = seed * 0x9E3779B97F4A7C15ull | 1;
    long nsagas = env_long("SAGA_CHAOS_SAGAS", CHAOS_SAGAS / 2);
    int64_t fault_ms = env_long("SAGA_CHAOS_FAULT_MS", CHAOS_FAULT_MS / 2);
    fprintf(stderr, "chaos: membership=%s, seed %llu (rerun with SAGA_CHAOS_SEED=%llu), %ld "
            "sagas, %lld ms of faults\n", membership, (unsigned long long)seed,
            (unsigned long long)seed, nsagas, (long long)fault_ms);

    char defs[PATH_MAX];
    const char *src = getenv("SAGA_SOURCE_DIR");
    snprintf(defs, sizeof defs, "%s/sagas", src ? src : ".");
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0, "redis and broker start");
    deadletters = fixture_collector_new(sys.broker.bootstrap, NULL, "saga.deadletter");
    cr_assert_not_null(deadletters);

    char seedflag[32];
    snprintf(seedflag, sizeof seedflag, "%llu", (unsigned long long)seed);
    const char *inventory[] = {"--seed", seedflag, "--fail-rate", "0.03", "--fail-on",
                               "sku=BROKEN", "--fail-compensation-times", "2", NULL};
    const char *payment[] = {"--seed", seedflag, "--fail-rate", "0.03", "--fail-on",
                             "amount=999", "--fail-compensation-times", "1", NULL};
    const char *shipping[] = {"--seed", seedflag, "--fail-rate", "0.03", "--delay-on",
                              "address=slow-lane:" CHAOS_SLOW_MS, "--fail-compensation-times",
                              "2", NULL};
    const char *const *const flags[SERVICES_COUNT] = {inventory, payment, shipping};
    cr_assert_eq(services_start(&services, &sys, flags), 0, "services start");
    for (int i = 0; i < CHAOS_COORDINATORS; i++)
        start_slot(i, false);
    cr_assert(system_wait_owned(&sys, 60000), "every input partition has an owner");
    cr_assert(services_wait_log(&services, "assigned", 60000), "the services joined");
    fprintf(stderr, "chaos: system up in %lld ms\n", (long long)(fixture_now_ms() - t0));

    /* Faults while sagas arrive. */
    char **ids = calloc((size_t)nsagas, sizeof *ids);
    cr_assert_not_null(ids);
    long produced = 0;
    int64_t start = fixture_now_ms(), fault_end = start + fault_ms;
    int64_t produce_ms = fault_ms * 4 / 5;
    int64_t next_kill = start + rnd_between(3000, 6000);
    int64_t freeze_at = start + rnd_between(fault_ms / 4, fault_ms / 2);
    bool frozen_once = false;
    for (int64_t now = start; now < fault_end; now = fixture_now_ms()) {
        long target = (long)((now - start) * nsagas / (produce_ms > 0 ? produce_ms : 1));
        while (produced < nsagas && produced < target)
            produce_order(produced++, ids);
        reap_self_kills(now, false);
        for (int i = 0; i < CHAOS_COORDINATORS; i++) {
            if (slots[i].state == SLOT_DEAD && now >= slots[i].wake_at) {
                start_slot(i, true);
                restarts++;
            } else if (slots[i].state == SLOT_FROZEN && now >= slots[i].wake_at) {
                fprintf(stderr, "chaos: +%lld ms: SIGCONT coordinator %d\n",
                        (long long)(now - start), i);
                kill(sys.coordinators[i], SIGCONT);
                slots[i].state = SLOT_ALIVE;
            }
        }
        if (!frozen_once && now >= freeze_at && alive_count() >= 2) {
            int i = pick_alive();
            fprintf(stderr, "chaos: +%lld ms: SIGSTOP coordinator %d\n", (long long)(now - start), i);
            kill(sys.coordinators[i], SIGSTOP);
            slots[i].state = SLOT_FROZEN;
            /* past the 4 s session and the 1 s lease */
            slots[i].wake_at = now + rnd_between(6000, 9000);
            frozen_once = true;
            freezes++;
        }
        if (now >= next_kill) {
            if (alive_count() >= 2) {
                int i = pick_alive();
                fprintf(stderr, "chaos: +%lld ms: SIGKILL coordinator %d\n",
                        (long long)(now - start), i);
                kill(sys.coordinators[i], SIGKILL);
                cr_assert_eq(fixture_wait_exit(sys.coordinators[i], 5000, NULL), 0);
                sys.coordinators[i] = 0;
                slots[i].state = SLOT_DEAD;
                slots[i].wake_at = now + rnd_between(1000, 6000);
                kills++;
            }
            next_kill = now + rnd_between(4000, 9000);
        }
        usleep(CHAOS_TICK_MS * 1000);
    }
    while (produced < nsagas)
        produce_order(produced++, ids);
    cr_assert_eq(rd_kafka_flush(sys.producer, 30000), 0, "every start was delivered");
    for (int i = 0; i < CHAOS_COORDINATORS; i++) {
        if (slots[i].state == SLOT_FROZEN)
            kill(sys.coordinators[i], SIGCONT);
        if (slots[i].state != SLOT_ALIVE) {
            start_slot(i, false);
            restarts += slots[i].state == SLOT_DEAD;
        }
        slots[i].state = SLOT_ALIVE;
    }
    int64_t faults_stopped = fixture_now_ms();
    fprintf(stderr, "chaos: faults stopped after %lld ms: %ld kills, %ld self-kills, %ld freezes, "
            "%ld restarts\n", (long long)(faults_stopped - start), kills, self_kills, freezes,
            restarts);

    /* Drain: restart whoever still dies at a crash point, until every saga is terminal. */
    drain_t d = {SYSTEM_INPUT_PARTITIONS, nsagas};
    bool drained = false;
    while (!drained && fixture_now_ms() - faults_stopped < CHAOS_DRAIN_MS) {
        int64_t now = fixture_now_ms();
        reap_self_kills(now, true);
        for (int i = 0; i < CHAOS_COORDINATORS; i++)
            if (slots[i].state == SLOT_DEAD) {
                start_slot(i, false);
                restarts++;
            }
        drained = fixture_wait_until(all_terminal, &d, 500);
    }
    int64_t drain_ms = fixture_now_ms() - faults_stopped;

    static const ledger_step_t STEPS[] = {
        {"reserve", "inventory"}, {"charge", "payment"}, {"schedule", "shipping"}};
    ledger_report_t r;
    cr_assert_eq(ledger_check(sys.rc, SYSTEM_INPUT_PARTITIONS, (const char *const *)ids,
                              (size_t)nsagas, STEPS, 3, stderr, 50, &r),
                 0, "the ledgers and sagas could be read");
    int64_t total_ms = fixture_now_ms() - t0;
    fprintf(stderr,
            "chaos: seed %llu: sagas %ld, completed %ld, compensated %ld, stuck %ld, missing %ld, "
            "active %ld; ledger entries %ld (actions %ld, undone %ld); kills %ld (SIGKILL by the "
            "test) + %ld (crash points), freezes %ld, restarts %ld; violations %ld; drain %lld ms, "
            "total %lld ms\n",
            (unsigned long long)seed, r.sagas, r.completed, r.compensated, r.stuck, r.missing,
            r.active, r.entries, r.actions_applied, r.actions_undone, kills, self_kills, freezes,
            restarts, r.violations, (long long)drain_ms, (long long)total_ms);
    for (long i = 0; i < nsagas; i++)
        free(ids[i]);
    free(ids);
    cr_assert(drained, "every saga terminal within %d ms of the faults stopping (seed %llu)",
              CHAOS_DRAIN_MS, (unsigned long long)seed);
    cr_assert_eq(r.violations, 0, "%ld violations (seed %llu; SAGA_TEST_KEEP=1 keeps the logs)",
                 r.violations, (unsigned long long)seed);
    cr_assert_gt(r.completed, 0);
    cr_assert_gt(r.compensated, 0);
    size_t dead = fixture_collector_count(deadletters);
    for (size_t i = 0; i < dead && i < 5; i++)
        fprintf(stderr, "chaos: dead letter: %.300s\n", fixture_collector_at(deadletters, i)->value);
    cr_assert_eq(dead, 0, "%zu dead letters from valid input (seed %llu)", dead,
                 (unsigned long long)seed);
}

Test(chaos, sagas_survive_kills_freezes_and_failures_with_leases)
{
    chaos_run("redis");
}

Test(chaos, sagas_survive_kills_freezes_and_failures_with_the_group_protocol)
{
    chaos_run("kafka");
}
