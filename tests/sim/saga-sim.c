/* saga-sim.c - runs the deterministic simulation (the real engine in a simulated world)
 * over many seeds, or replays one.
 *
 *   saga-sim --seeds N [--from S] [--sagas K] [--plant NAME] [--first] [--verbose]
 *   saga-sim --seed S [--sagas K] [--plant NAME] [--trace]
 *
 * Exit status: 0 when no seed violated an invariant, 1 when one did, 2 on bad usage. */
#include "sim.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: saga-sim --seeds N [--from S] [--sagas K] [--plant NAME] [--first] [--verbose]\n"
            "       saga-sim --seed S [--sagas K] [--plant NAME] [--trace]\n"
            "  --seeds N    run seeds S..S+N-1 (S from --from, default 1)\n"
            "  --seed S     run one seed; with --trace print its whole event trace\n"
            "  --sagas K    sagas per seed (default: 5..15, chosen by the seed)\n"
            "  --plant NAME run with a participant's deliberate defect: double-apply,\n"
            "               fake-compensation (the checker must report violations; defects\n"
            "               of the engine: scripts/mutants.sh)\n"
            "  --first      stop at the first seed that violates an invariant\n"
            "  --verbose    one line per seed\n");
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s)
        return -1;
    *out = strtoull(s, &end, 0);
    return *end ? -1 : 0;
}

static void replay_hint(uint64_t seed, const sim_config_t *cfg, int sagas_flag)
{
    printf("  replay: saga-sim --seed %" PRIu64, seed);
    if (sagas_flag)
        printf(" --sagas %d", cfg->sagas);
    if (cfg->plant)
        printf(" --plant %s", sim_plant_name(cfg->plant));
    printf(" --trace\n");
}

int main(int argc, char **argv)
{
    uint64_t seeds = 0, from = 1, one = 0;
    bool have_one = false, verbose = false, trace = false, first = false;
    sim_config_t cfg = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (!strcmp(a, "--seeds") && parse_u64(v, &seeds) == 0) {
            i++;
        } else if (!strcmp(a, "--from") && parse_u64(v, &from) == 0) {
            i++;
        } else if (!strcmp(a, "--seed") && parse_u64(v, &one) == 0) {
            have_one = true;
            i++;
        } else if (!strcmp(a, "--sagas") && parse_u64(v, &n) == 0 && n >= 1 &&
                   n <= SIM_MAX_SAGAS) {
            cfg.sagas = (int)n;
            i++;
        } else if (!strcmp(a, "--plant") && v) {
            int p;
            for (p = 0; p < SIM_PLANT_COUNT && strcmp(v, sim_plant_name(p)); p++)
                ;
            if (p == SIM_PLANT_COUNT) {
                fprintf(stderr, "saga-sim: unknown --plant %s\n", v);
                return 2;
            }
            cfg.plant = (sim_plant_t)p;
            i++;
        } else if (!strcmp(a, "--first")) {
            first = true;
        } else if (!strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--trace")) {
            trace = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "saga-sim: bad argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (have_one) {
        from = one;
        seeds = 1;
        if (trace)
            cfg.trace = stdout;
    }
    if (!seeds) {
        usage(stderr);
        return 2;
    }
    double t0 = wall_s();
    uint64_t events = 0, sagas = 0, crashes = 0, transitions = 0, commands = 0, resent = 0;
    uint64_t aborts = 0, retries = 0, skips = 0, redelivered = 0, redis_errors = 0;
    uint64_t pauses = 0, timers_held = 0, zombies = 0, fenced = 0, delivery_failures = 0;
    uint64_t outages = 0;
    uint64_t leased_seeds = 0, leased_bad = 0, leases_lost = 0, hand_overs = 0, joins = 0;
    uint64_t leaves = 0, lease_resets = 0, leased_zombies = 0;
    uint64_t bad_seeds = 0, violations = 0, completed = 0, compensated = 0, stuck = 0;
    for (uint64_t k = 0; k < seeds; k++) {
        uint64_t seed = from + k;
        sim_result_t r;
        int rc = sim_run(seed, &cfg, &r);
        if (rc < 0) {
            fprintf(stderr, "saga-sim: the simulation cannot run (definitions)\n");
            return 2;
        }
        events += r.events;
        sagas += (uint64_t)r.sagas;
        crashes += r.crashes;
        redis_errors += r.redis_errors;
        pauses += r.pauses;
        zombies += r.zombies;
        outages += r.redis_outages;
        fenced += r.fenced;
        delivery_failures += r.delivery_failures;
        timers_held += r.timers_held;
        transitions += r.transitions;
        commands += r.commands;
        resent += r.outbox_resent;
        aborts += r.aborts;
        retries += r.retries;
        skips += r.skips;
        redelivered += r.input_redelivered;
        completed += (uint64_t)r.completed;
        compensated += (uint64_t)r.compensated;
        stuck += (uint64_t)r.stuck;
        violations += (uint64_t)r.violations;
        if (r.leased) {
            leased_seeds++;
            leased_bad += rc != 0;
            leased_zombies += r.zombies;
        }
        leases_lost += r.leases_lost;
        hand_overs += r.hand_overs;
        joins += r.joins;
        leaves += r.leaves;
        lease_resets += r.lease_resets;
        if (verbose || have_one)
            printf("seed %" PRIu64 ": %d sagas (%d completed, %d compensated, %d stuck), "
                   "%" PRIu64 " events, %" PRIu64 " crashes, %lld virtual ms, "
                   "membership %s, trace %016" PRIx64 ", %d violations\n",
                   seed, r.sagas, r.completed, r.compensated, r.stuck, r.events, r.crashes,
                   (long long)r.end_ms, r.leased ? "redis" : "kafka", r.trace_hash,
                   r.violations);
        if (rc) {
            bad_seeds++;
            printf("VIOLATION seed %" PRIu64 ": %d violations\n", seed, r.violations);
            for (int i = 0; i < r.violations && i < SIM_MAX_VIOLATIONS; i++)
                printf("  %s\n", r.violation[i]);
            replay_hint(seed, &cfg, cfg.sagas > 0);
            if (first)
                seeds = k + 1; /* the summary counts the seeds run */
        }
    }
    double dt = wall_s() - t0;
    printf("seeds %" PRIu64 " (from %" PRIu64 "), events %" PRIu64 ", sagas %" PRIu64
           " (%" PRIu64 " completed, %" PRIu64 " compensated, %" PRIu64 " stuck), "
           "transitions %" PRIu64 ", commands %" PRIu64 ", crashes %" PRIu64
           ", Redis connections lost %" PRIu64 ", Redis down %" PRIu64
           " times, deliveries failed %" PRIu64 ", pauses %" PRIu64
           " (zombies %" PRIu64 ", fenced %" PRIu64 "), timers held %" PRIu64
           ", outbox re-sent %" PRIu64 ", input re-read %" PRIu64 ", operator aborts %" PRIu64
           " retries %" PRIu64 " skips %" PRIu64 ", violations %" PRIu64 " in %" PRIu64
           " seeds, wall %.2f s\n",
           seeds, from, events, sagas, completed, compensated, stuck, transitions, commands,
           crashes, redis_errors, outages, delivery_failures, pauses, zombies, fenced, timers_held, resent,
           redelivered, aborts, retries, skips, violations, bad_seeds, dt);
    printf("membership: redis (membership.c) %" PRIu64 " seeds, %" PRIu64 " with violations "
           "(lease expired in a pause %" PRIu64 ", leases lost %" PRIu64 ", handed over %" PRIu64
           ", joins %" PRIu64 ", SIGTERM leaves %" PRIu64 ", Redis lost its leases %" PRIu64
           " times); kafka (the world's) %" PRIu64 " seeds, %" PRIu64 " with violations\n",
           leased_seeds, leased_bad, leased_zombies, leases_lost, hand_overs, joins, leaves,
           lease_resets, seeds - leased_seeds, bad_seeds - leased_bad);
    return bad_seeds ? 1 : 0;
}
