/* test_redis_cluster.c - the coordinators on a Redis Cluster under load (issue #17): three
 * primaries with a replica each (tests/support/rcfixture.h, `redis-cli --cluster create`),
 * two coordinators with redis_cluster=1 and the three example services with their
 * de-duplication records and ledgers on the cluster too, the embedded broker.
 *
 * While the order-placement sagas run: the slot of the busiest partition is migrated to
 * another primary (MIGRATING/IMPORTING, MIGRATE in batches, SETSLOT NODE), then the
 * primary serving the most partitions is SIGKILLed; its replica is promoted, the killed
 * node comes back as a replica. Asserted: every partition's keys live on the primary of
 * its slot {pN}, as docs/redis.md says, and on every primary some; every saga ends; with
 * the cluster's keys copied into one Redis, the ledger check (tests/support/ledger_check.h)
 * finds no violation: no step applied twice, none left applied in a compensated saga.
 * SAGA_RCLUSTER_SAGAS sets the number of sagas (default 450). */
#include "ledger_check.h"
#include "rcfixture.h"
#include "services.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RC_PRIMARIES 3
#define RC_WAIT_MS 120000
#define RC_MAX_SAGAS 5000

static test_system_t sys;
static services_t services;
static rcfixture_t cluster;

static void teardown(void)
{
    services_stop(&services);
    system_stop(&sys);
    rcfixture_stop(&cluster);
}

/* An integer reply of a command on the cluster (-1 when none). */
static long long cluster_int(const char *key, const char *fmt, const char *arg)
{
    redisReply *r = rcfixture_command(&cluster, key, fmt, key, arg);
    long long v = !r                               ? -1
                  : r->type == REDIS_REPLY_INTEGER ? r->integer
                  : r->type == REDIS_REPLY_STRING  ? atoll(r->str)
                  : r->type == REDIS_REPLY_NIL     ? 0
                                                   : -1;
    freeReplyObject(r);
    return v;
}

/* Sagas running or compensating now, summed over the partitions. */
static long long active_sagas(void)
{
    long long n = 0;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[64];
        snprintf(key, sizeof key, "saga:{p%d}:index:running", p);
        n += cluster_int(key, "ZCARD %s", "");
        snprintf(key, sizeof key, "saga:{p%d}:index:compensating", p);
        n += cluster_int(key, "ZCARD %s", "");
    }
    return n;
}

static long long started_sagas(void)
{
    long long n = 0;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[64];
        snprintf(key, sizeof key, "saga:{p%d}:counters", p);
        n += cluster_int(key, "HGET %s %s", "order-placement:started");
    }
    return n;
}

static long sagas_total;

static bool all_finished(void *opaque)
{
    (void)opaque;
    return started_sagas() == sagas_total && active_sagas() == 0;
}

static bool all_owned(void *opaque)
{
    (void)opaque;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[64];
        snprintf(key, sizeof key, "saga:{p%d}:lease", p);
        if (cluster_int(key, "EXISTS %s", "") != 1)
            return false;
    }
    return true;
}

/* The node index of the primary serving partition p's slot now. */
static int primary_of_partition(int p)
{
    char tag[16];
    snprintf(tag, sizeof tag, "{p%d}", p);
    return rcfixture_primary_of(&cluster, rcfixture_key_slot(&cluster, tag));
}

/* The longest "Redis available again after N ms" the coordinators logged (-1: none): how
 * long their store waited for the cluster after the kill. */
static long longest_outage_ms(void)
{
    long most = -1;
    for (int k = 0; k < sys.coordinator_count; k++) {
        char path[PATH_MAX + 32], line[4096];
        snprintf(path, sizeof path, "%s/coordinator-%d.log", sys.dir, k);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            const char *at = strstr(line, "Redis available again after ");
            long ms = at ? atol(at + strlen("Redis available again after ")) : -1;
            if (ms > most)
                most = ms;
        }
        if (f)
            fclose(f);
    }
    return most;
}

/* Produces sagas from *produced up to until, as fast as the producer takes them. */
static void produce_to(long *produced, long until)
{
    while (*produced < until)
        cr_assert_eq(services_produce_order(&sys, "rc", (*produced)++), 0);
    cr_assert_eq(rd_kafka_flush(sys.producer, 30000), 0);
}

Test(redis_cluster, sagas_end_through_a_slot_migration_and_a_primary_failover,
     .fini = teardown, .timeout = 600)
{
    const char *env = getenv("SAGA_RCLUSTER_SAGAS");
    sagas_total = env && atol(env) > 0 ? (atol(env) < RC_MAX_SAGAS ? atol(env) : RC_MAX_SAGAS)
                                       : 450;
    char defs[PATH_MAX];
    const char *src = getenv("SAGA_SOURCE_DIR");
    snprintf(defs, sizeof defs, "%s/sagas", src ? src : ".");
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0);
    cr_assert_eq(rcfixture_start(&cluster, RC_PRIMARIES, 1, NULL), 0, "the cluster starts");

    const char *svc[] = {"--fail-rate", "0.05", "--redis-cluster", "1",
                         "--redis-cluster-nodes", cluster.seeds, NULL};
    const char *const *const all[SERVICES_COUNT] = {svc, svc, svc};
    cr_assert_eq(services_start(&services, &sys, all), 0);
    char nodes[600];
    snprintf(nodes, sizeof nodes, "--redis_cluster_nodes=%s", cluster.seeds);
    const char *coord[] = {"--redis_cluster=1", nodes, "--redis_timeout_ms=2000",
                           "--log_level=info", NULL};
    for (int i = 0; i < 2; i++)
        cr_assert_geq(system_add_coordinator(&sys, coord, NULL), 0);
    cr_assert(fixture_wait_until(all_owned, NULL, 60000), "every partition is leased");
    cr_assert(services_wait_log(&services, "assigned", 60000));

    /* Where the state lives: partition p's keys on the primary of {pN}'s slot. */
    int serving[RCFIXTURE_MAX_NODES] = {0}, home[SYSTEM_INPUT_PARTITIONS];
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        home[p] = primary_of_partition(p);
        cr_assert_geq(home[p], 0);
        serving[home[p]]++;
    }

    long produced = 0;
    produce_to(&produced, sagas_total / 3);

    /* The slot of the partition with the most sagas, of those on a primary that serves
     * two or more (so that every primary keeps one), moves to another primary while the
     * coordinators work through that backlog. */
    int busiest = 0;
    long long most = -1;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        if (serving[home[p]] < 2)
            continue;
        char key[64];
        snprintf(key, sizeof key, "saga:{p%d}:index:running", p);
        long long n = cluster_int(key, "ZCARD %s", "");
        if (n > most)
            most = n, busiest = p;
    }
    char tag[16];
    snprintf(tag, sizeof tag, "{p%d}", busiest);
    int slot = rcfixture_key_slot(&cluster, tag), from = home[busiest], to = -1;
    for (int i = 0; i < cluster.count && to < 0; i++)
        if (i != from && rcfixture_is_primary(&cluster, i))
            to = i;
    int64_t t0 = fixture_now_ms();
    cr_assert_eq(rcfixture_migrate_slot(&cluster, slot, to, 10, 50), 0, "slot %d migrates", slot);
    int64_t migrated_ms = fixture_now_ms() - t0;
    cr_assert_eq(primary_of_partition(busiest), to);

    produce_to(&produced, 2 * sagas_total / 3);

    /* The primary serving the most partitions now dies; its replica takes over, and it
     * comes back as a replica (a promoted primary without one takes no new epoch while
     * redis_wait_replicas is 1, the default when Redis has replicas). */
    int victim = -1, victim_parts = 0;
    for (int i = 0; i < cluster.count; i++) {
        int n = 0;
        for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++)
            n += primary_of_partition(p) == i;
        if (n > victim_parts)
            victim_parts = n, victim = i;
    }
    long long active_at_kill = active_sagas();
    t0 = fixture_now_ms();
    cr_assert_eq(rcfixture_kill_primary(&cluster, victim, 30000), 0, "a replica is promoted");
    int64_t promoted_ms = fixture_now_ms() - t0;
    cr_assert_eq(rcfixture_start_again(&cluster, victim, 30000), 0, "the old primary rejoins");

    produce_to(&produced, sagas_total);
    bool finished = fixture_wait_until(all_finished, NULL, RC_WAIT_MS);
    cr_assert(finished, "every saga ended: %lld started of %ld, %lld active", started_sagas(),
              sagas_total, active_sagas());
    int64_t finished_ms = fixture_now_ms() - t0;

    /* Every partition's sagas on the primary of its slot, and every primary holds some. */
    long per_node[RCFIXTURE_MAX_NODES];
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char pattern[64];
        snprintf(pattern, sizeof pattern, "saga:{p%d}:saga:*", p);
        cr_assert_gt(rcfixture_count_keys(&cluster, pattern, per_node), 0);
        int at = primary_of_partition(p);
        for (int i = 0; i < cluster.count; i++)
            cr_assert_eq(per_node[i] > 0, i == at, "partition %d's sagas on node %d only", p, at);
    }
    long total = rcfixture_count_keys(&cluster, "saga:{p*}:saga:*", per_node);
    int primaries_with_sagas = 0;
    for (int i = 0; i < cluster.count; i++)
        primaries_with_sagas += per_node[i] > 0;
    cr_assert_eq(primaries_with_sagas, RC_PRIMARIES, "the sagas are spread over every shard");

    long copied = rcfixture_copy_to(&cluster, sys.rc, "*");
    cr_assert_gt(copied, 0, "the cluster's keys copied into one Redis");
    ledger_report_t r;
    int rc = ledger_check_orders(sys.rc, SYSTEM_INPUT_PARTITIONS, "rc", sagas_total, stderr, 20,
                                 &r);
    fprintf(stderr,
            "redis cluster: %ld sagas (%ld saga hashes on %d primaries); slot %d of partition "
            "%d migrated from node %d to %d in %lld ms; primary node %d (%d partitions, %lld "
            "sagas active) killed, replica promoted in %lld ms, the coordinators' store back "
            "after %ld ms at most; all ended %lld ms after the kill: completed %ld, "
            "compensated %ld, stuck %ld; %ld keys checked, violations %ld\n",
            sagas_total, total, primaries_with_sagas, slot, busiest, from, to,
            (long long)migrated_ms, victim, victim_parts, active_at_kill, (long long)promoted_ms,
            longest_outage_ms(), (long long)finished_ms, r.completed, r.compensated, r.stuck, copied, r.violations);
    cr_assert_eq(rc, 0);
    cr_assert_eq(r.violations, 0);
    cr_assert_eq(r.stuck, 0);
    cr_assert_eq(r.sagas, sagas_total);
}
