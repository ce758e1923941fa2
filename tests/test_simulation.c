/* test_simulation.c - the deterministic simulation (tests/sim/, docs/simulation.md) as a
 * test: the real engine holds every invariant over thousands of seeds of crashes, pauses,
 * zombies and lost connections; a seed replays exactly; and the checker catches the
 * planted defects of the world's participants (a checker that cannot fail proves nothing;
 * scripts/mutants.sh shows it catching bugs planted in the engine). */
#include "sim.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SANITIZE_ADDRESS__
#define SIM_TEST_SEEDS 300         /* under the sanitizers: ten times slower */
#else
#define SIM_TEST_SEEDS 2000        /* SAGA_SIM_SEEDS overrides */
#endif
#define SIM_TEST_SAGAS 6           /* sagas per seed: small seeds, many of them */
#define SIM_PLANT_SEARCH 1000      /* seeds tried before a planted defect counts as missed */

static uint64_t seeds_to_run(void)
{
    const char *env = getenv("SAGA_SIM_SEEDS");
    uint64_t n = env ? strtoull(env, NULL, 10) : 0;
    return n ? n : SIM_TEST_SEEDS;
}

Test(simulation, every_seed_holds_every_invariant, .timeout = 600)
{
    sim_config_t cfg = {.sagas = SIM_TEST_SAGAS};
    uint64_t n = seeds_to_run(), bad = 0, first_bad = 0, leased = 0;
    sim_result_t sum = {0};
    for (uint64_t seed = 1; seed <= n; seed++) {
        sim_result_t r;
        int rc = sim_run(seed, &cfg, &r);
        cr_assert_geq(rc, 0, "the simulation cannot run");
        sum.events += r.events;
        sum.crashes += r.crashes;
        sum.pauses += r.pauses;
        sum.zombies += r.zombies;
        sum.fenced += r.fenced;
        sum.redis_errors += r.redis_errors;
        sum.redis_outages += r.redis_outages;
        leased += r.leased;
        sum.leases_lost += r.leases_lost;
        sum.hand_overs += r.hand_overs;
        sum.leaves += r.leaves;
        sum.lease_resets += r.lease_resets;
        if (rc) {
            if (!bad++)
                first_bad = seed;
            cr_log_error("seed %" PRIu64 ": %s (replay: saga-sim --seed %" PRIu64
                         " --sagas %d --trace)", seed, r.violation[0], seed, cfg.sagas);
        }
    }
    cr_log_info("%" PRIu64 " seeds, %" PRIu64 " events, %" PRIu64 " crashes, %" PRIu64
                " zombies, %" PRIu64 " seeds with violations", n, sum.events, sum.crashes,
                sum.zombies, bad);
    cr_assert_eq(bad, 0, "%" PRIu64 " seeds violated invariants, the first %" PRIu64, bad,
                 first_bad);
    /* The faults did happen: a calm world would prove little. */
    cr_assert_gt(sum.crashes, n / 2, "the runs kill engine instances (%" PRIu64 ")", sum.crashes);
    cr_assert_gt(sum.pauses, n / 4, "the runs freeze instances (%" PRIu64 ")", sum.pauses);
    cr_assert_gt(sum.zombies, n / 8, "zombies wake up (%" PRIu64 ")", sum.zombies);
    cr_assert_gt(sum.fenced, 0, "a zombie's writes are fenced");
    cr_assert_gt(sum.redis_errors, n / 2, "Redis connections are lost (%" PRIu64 ")",
                 sum.redis_errors);
    cr_assert_gt(sum.redis_outages, n / 8, "Redis goes down (%" PRIu64 ")", sum.redis_outages);
    /* membership=redis (the real membership.c) on about half the seeds, with its faults. */
    cr_assert(leased > n / 3 && leased < 2 * n / 3,
              "half the seeds run membership=redis (%" PRIu64 " of %" PRIu64 ")", leased, n);
    cr_assert_gt(sum.leases_lost, n / 8, "leases are lost (%" PRIu64 ")", sum.leases_lost);
    cr_assert_gt(sum.hand_overs, n / 8, "partitions are handed over (%" PRIu64 ")",
                 sum.hand_overs);
    cr_assert_gt(sum.leaves, 0, "instances leave on SIGTERM");
    if (n >= 1000)
        cr_assert_gt(sum.lease_resets, 0, "Redis loses its leases");
}

Test(simulation, a_seed_replays_identically)
{
    sim_config_t cfg = {0};
    sim_result_t a, b, c;
    cr_assert_eq(sim_run(42, &cfg, &a), 0);
    cr_assert_eq(sim_run(42, &cfg, &b), 0);
    cr_assert_eq(a.trace_hash, b.trace_hash, "same seed, same trace");
    cr_assert_eq(a.events, b.events);
    cr_assert_eq(a.crashes, b.crashes);
    cr_assert_eq(a.end_ms, b.end_ms);
    cr_assert_eq(sim_run(43, &cfg, &c), 0);
    cr_assert_neq(a.trace_hash, c.trace_hash, "another seed, another trace");
}

/* Runs seeds from 1 until one reports a violation; returns that seed, or 0. */
static uint64_t first_caught(sim_plant_t plant, sim_result_t *r)
{
    sim_config_t cfg = {.plant = plant};
    for (uint64_t seed = 1; seed <= SIM_PLANT_SEARCH; seed++)
        if (sim_run(seed, &cfg, r) == 1)
            return seed;
    return 0;
}

static void expect_caught(sim_plant_t plant, const char *what)
{
    sim_result_t r;
    uint64_t seed = first_caught(plant, &r);
    cr_assert_neq(seed, 0, "planted %s went unnoticed in %d seeds", sim_plant_name(plant),
                  SIM_PLANT_SEARCH);
    bool named = false;
    for (int i = 0; i < r.violations && i < SIM_MAX_VIOLATIONS; i++)
        named |= strstr(r.violation[i], what) != NULL;
    cr_assert(named, "planted %s (seed %" PRIu64 ") reported as \"%s\", expected \"%s\"",
              sim_plant_name(plant), seed, r.violation[0], what);
}

Test(simulation, checker_catches_a_participant_that_applies_twice)
{
    expect_caught(SIM_PLANT_DOUBLE_APPLY, "applied 2 times");
}

Test(simulation, checker_catches_a_compensation_that_undoes_nothing)
{
    expect_caught(SIM_PLANT_FAKE_COMPENSATION, "left the action applied");
}
