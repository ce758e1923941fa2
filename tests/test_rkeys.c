/* test_rkeys.c - the Redis key layout (rkeys.h) spells every key of docs/redis.md as that
 * page does, with the prefix and the {pN} hash tag, and maps statuses to their indexes. */
#include "rkeys.h"

#include <criterion/criterion.h>
#include <string.h>

Test(rkeys, names_every_documented_key)
{
    rkeys_t k;
    rkeys_init(&k, NULL);
    char b[RKEYS_KEY_MAX];
    cr_assert_str_eq(rkeys_saga(&k, b, 3, "order-1001"), "saga:{p3}:saga:order-1001");
    cr_assert_str_eq(rkeys_history(&k, b, 3, "order-1001"), "saga:{p3}:history:order-1001");
    cr_assert_str_eq(rkeys_index(&k, b, 0, RKEYS_INDEX_RUNNING), "saga:{p0}:index:running");
    cr_assert_str_eq(rkeys_index(&k, b, 0, RKEYS_INDEX_COMPENSATING),
                     "saga:{p0}:index:compensating");
    cr_assert_str_eq(rkeys_index(&k, b, 0, RKEYS_INDEX_STUCK), "saga:{p0}:index:stuck");
    cr_assert_str_eq(rkeys_index(&k, b, 0, RKEYS_INDEX_FINISHED), "saga:{p0}:index:finished");
    cr_assert_str_eq(rkeys_counters(&k, b, 12), "saga:{p12}:counters");
    cr_assert_str_eq(rkeys_epoch(&k, b, 1), "saga:{p1}:epoch");
    cr_assert_str_eq(rkeys_owner(&k, b, 1), "saga:{p1}:owner");
    cr_assert_str_eq(rkeys_outbox(&k, b, 1), "saga:{p1}:outbox");
    cr_assert_str_eq(rkeys_meta(&k, b), "saga:meta");
    cr_assert_str_eq(rkeys_definitions(&k, b), "saga:definitions");
    cr_assert_str_eq(rkeys_definition_hashes(&k, b), "saga:definition-hashes");
    char f[64];
    cr_assert_str_eq(rkeys_definition_field(f, sizeof f, "order-placement", 2),
                     "order-placement@2");
}

Test(rkeys, uses_the_configured_prefix)
{
    rkeys_t k;
    rkeys_init(&k, "shop");
    char b[RKEYS_KEY_MAX];
    cr_assert_str_eq(rkeys_saga(&k, b, 0, "a"), "shop:{p0}:saga:a");
    cr_assert_str_eq(rkeys_meta(&k, b), "shop:meta");
}

Test(rkeys, a_long_id_is_cut_to_the_buffer)
{
    rkeys_t k;
    rkeys_init(&k, NULL);
    char id[RKEYS_KEY_MAX * 2], b[RKEYS_KEY_MAX];
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    cr_assert_eq(strlen(rkeys_saga(&k, b, 0, id)), RKEYS_KEY_MAX - 1);
}

Test(rkeys, maps_statuses_to_indexes)
{
    cr_assert_eq(rkeys_index_of(SAGA_RUNNING), RKEYS_INDEX_RUNNING);
    cr_assert_eq(rkeys_index_of(SAGA_COMPENSATING), RKEYS_INDEX_COMPENSATING);
    cr_assert_eq(rkeys_index_of(SAGA_STUCK), RKEYS_INDEX_STUCK);
    cr_assert_eq(rkeys_index_of(SAGA_COMPLETED), RKEYS_INDEX_FINISHED);
    cr_assert_eq(rkeys_index_of(SAGA_COMPENSATED), RKEYS_INDEX_FINISHED);
    for (int i = 0; i < RKEYS_INDEX_COUNT; i++)
        cr_assert_eq(rkeys_index_parse(rkeys_index_name((rkeys_index_t)i)), i);
    cr_assert_eq(rkeys_index_parse("completed"), -1);
    cr_assert_eq(rkeys_index_parse(NULL), -1);
    cr_assert_str_eq(rkeys_index_name(RKEYS_INDEX_COUNT), "unknown");
}
