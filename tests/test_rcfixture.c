/* test_rcfixture.c - the Redis Cluster fixture (tests/support/rcfixture.h) itself: three
 * primaries with a replica each, a slot holding a few hundred keys migrated to another
 * primary in batches while the test writes to it (ASK followed), then the primary holding
 * it killed and its replica promoted: every key is still readable, where the fixture says
 * it is, and all of them copy into one Redis. */
#include "rcfixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define KEYS_IN_SLOT 300
#define KEYS_OTHER 60
#define MIGRATE_BATCH 40
#define MIGRATE_PAUSE_MS 20
#define KILL_TIMEOUT_MS 20000

static rcfixture_t cluster;

static void cluster_stop(void)
{
    rcfixture_stop(&cluster);
}

TestSuite(rcfixture, .fini = cluster_stop, .timeout = 180);

static void set_key(const char *key, const char *value)
{
    redisReply *r = rcfixture_command(&cluster, key, "SET %s %s", key, value);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "SET %s: %s", key,
              r && r->type == REDIS_REPLY_ERROR ? r->str : "no answer");
    freeReplyObject(r);
}

static void expect_key(const char *key, const char *value)
{
    redisReply *r = rcfixture_command(&cluster, key, "GET %s", key);
    cr_assert(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, value) == 0,
              "GET %s: %s (expected %s)", key,
              !r ? "no answer" : r->type == REDIS_REPLY_STRING ? r->str
                             : r->type == REDIS_REPLY_ERROR    ? r->str
                                                               : "not a string",
              value);
    freeReplyObject(r);
}

/* The keys of slot `slot` as a plain connection to nodes[idx] sees them (no redirection). */
static long keys_on_node(int idx, int slot)
{
    redisContext *ctx = rcfixture_connect(&cluster, idx);
    cr_assert_not_null(ctx);
    redisReply *r = redisCommand(ctx, "CLUSTER COUNTKEYSINSLOT %d", slot);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    long n = (long)r->integer;
    freeReplyObject(r);
    redisFree(ctx);
    return n;
}

Test(rcfixture, migrate_then_kill_keeps_every_key)
{
    cr_assert_eq(rcfixture_start(&cluster, 3, 1, NULL), 0);
    cr_assert_eq(cluster.count, 6);
    int primaries = 0;
    for (int i = 0; i < cluster.count; i++)
        primaries += rcfixture_is_primary(&cluster, i);
    cr_assert_eq(primaries, 3);

    char key[64], value[64];
    for (int i = 0; i < KEYS_IN_SLOT; i++) {
        snprintf(key, sizeof key, "fx:{moving}:%d", i);
        snprintf(value, sizeof value, "v%d", i);
        set_key(key, value);
    }
    for (int i = 0; i < KEYS_OTHER; i++) {
        snprintf(key, sizeof key, "fx:other:%d", i);
        set_key(key, "o");
    }
    int slot = rcfixture_key_slot(&cluster, "fx:{moving}:0");
    cr_assert_eq(slot, rcfixture_key_slot(&cluster, "{moving}"));
    int from = rcfixture_primary_of(&cluster, slot);
    cr_assert_geq(from, 0);
    long counts[RCFIXTURE_MAX_NODES];
    cr_assert_eq(rcfixture_count_keys(&cluster, "fx:*", counts), KEYS_IN_SLOT + KEYS_OTHER);
    cr_assert_geq(counts[from], KEYS_IN_SLOT);
    int spread = 0;
    for (int i = 0; i < cluster.count; i++)
        spread += counts[i] > 0;
    cr_assert_geq(spread, 2, "60 untagged keys all on one primary?");

    int to = -1;
    for (int i = 0; i < cluster.count && to < 0; i++)
        if (i != from && rcfixture_is_primary(&cluster, i))
            to = i;
    cr_assert_geq(to, 0);

    /* Half-way: some keys moved, some not; each is found (ASK for the moved ones), and a
     * new key of the slot goes to the target. */
    cr_assert_eq(rcfixture_migrate_begin(&cluster, slot, to, MIGRATE_BATCH, MIGRATE_PAUSE_MS,
                                         KEYS_IN_SLOT / 2),
                 0);
    long left = keys_on_node(from, slot), moved = keys_on_node(to, slot);
    cr_assert(left > 0 && moved > 0 && left + moved == KEYS_IN_SLOT, "left %ld moved %ld",
              left, moved);
    for (int i = 0; i < KEYS_IN_SLOT; i++) {
        snprintf(key, sizeof key, "fx:{moving}:%d", i);
        snprintf(value, sizeof value, "v%d", i);
        expect_key(key, value);
    }
    set_key("fx:{moving}:new", "during");
    cr_assert_eq(keys_on_node(to, slot), moved + 1, "a new key during the migration: target");
    cr_assert_eq(rcfixture_migrate_finish(&cluster, slot, to, MIGRATE_BATCH), 0);
    cr_assert_eq(rcfixture_primary_of(&cluster, slot), to);
    cr_assert_eq(keys_on_node(from, slot), 0);
    cr_assert_eq(keys_on_node(to, slot), KEYS_IN_SLOT + 1);

    /* Kill the primary holding the slot now, once its replica has every key. */
    redisContext *ctx = rcfixture_connect(&cluster, to);
    cr_assert_not_null(ctx);
    redisReply *w = redisCommand(ctx, "WAIT 1 5000");
    cr_assert(w && w->type == REDIS_REPLY_INTEGER && w->integer >= 1, "WAIT");
    freeReplyObject(w);
    redisFree(ctx);
    cr_assert_eq(rcfixture_kill_primary(&cluster, to, KILL_TIMEOUT_MS), 0);
    int now = rcfixture_primary_of(&cluster, slot);
    cr_assert(now >= 0 && now != to, "slot %d served by %d after the kill of %d", slot, now, to);
    for (int i = 0; i < KEYS_IN_SLOT; i++) {
        snprintf(key, sizeof key, "fx:{moving}:%d", i);
        snprintf(value, sizeof value, "v%d", i);
        expect_key(key, value);
    }
    expect_key("fx:{moving}:new", "during");
    for (int i = 0; i < KEYS_OTHER; i++) {
        snprintf(key, sizeof key, "fx:other:%d", i);
        expect_key(key, "o");
    }
    cr_assert_eq(rcfixture_count_keys(&cluster, "fx:*", counts), KEYS_IN_SLOT + KEYS_OTHER + 1);
    cr_assert_eq(counts[to], 0);

    /* Everything copied into one Redis, for checks that read one. */
    redis_fixture_t single;
    cr_assert_eq(fixture_redis_start(&single, NULL), 0);
    redisContext *one = fixture_redis_connect(&single);
    cr_assert_not_null(one);
    cr_assert_eq(rcfixture_copy_to(&cluster, one, "fx:*"), KEYS_IN_SLOT + KEYS_OTHER + 1);
    redisReply *g = redisCommand(one, "GET fx:{moving}:7");
    cr_assert(g && g->type == REDIS_REPLY_STRING && strcmp(g->str, "v7") == 0);
    freeReplyObject(g);
    redisFree(one);
    fixture_redis_stop(&single);

    /* The killed node comes back as a replica of the one that took over. */
    cr_assert_eq(rcfixture_start_again(&cluster, to, KILL_TIMEOUT_MS), 0);
    cr_assert(!rcfixture_is_primary(&cluster, to));
    cr_assert_eq(rcfixture_primary_of(&cluster, slot), now);
}

Test(rcfixture, bad_arguments_start_nothing)
{
    cr_assert_eq(rcfixture_start(&cluster, 2, 0, NULL), -1);
    cr_assert_eq(rcfixture_start(&cluster, 3, 3, NULL), -1); /* 12 nodes */
    cr_assert_eq(cluster.count, 0);
    rcfixture_stop(&cluster);
    rcfixture_stop(&cluster);
}
