/* test_route.c - a saga id's home partition (route.c): Kafka's murmur2 exactly as the
 * Java client and librdkafka compute it, and generated ids at home where they landed. */
#include "route.h"

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

Test(route, murmur2_matches_librdkafkas_partitioner)
{
    char err[256] = "";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "t", NULL);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 5000; i++) {
        char id[130];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int len = 1 + (int)(x % 128);
        for (int k = 0; k < len; k++)
            id[k] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789._:-"[(x >> (k % 50)) % 50];
        id[len] = '\0';
        for (int32_t n = 1; n <= 64; n *= 4) {
            int32_t want = rd_kafka_msg_partitioner_murmur2(rkt, id, (size_t)len, n, NULL, NULL);
            int32_t got = (int32_t)((route_murmur2(id, (size_t)len) & 0x7fffffff) % (uint32_t)n);
            cr_assert_eq(got, want, "%s over %d partitions: %d, librdkafka %d", id, n, got, want);
        }
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
}

Test(route, known_values_of_the_java_client)
{
    /* Utils.murmur2 of "21" is -973932308 in Java; of "" 275646681. */
    cr_assert_eq((int32_t)route_murmur2("21", 2), -973932308);
    cr_assert_eq((int32_t)route_murmur2("", 0), 275646681);
}

Test(route, generated_ids_stay_where_they_landed)
{
    char id[64];
    route_generated_id(id, sizeof id, 3, 17);
    cr_assert_str_eq(id, "p3-o17");
    cr_assert_eq(route_home(id, 2, 4), 3, "the partition it names, even past the routing count");
    cr_assert_eq(route_home("p9-o1", 4, 4), route_home("p9-o1", 4, 0),
                 "a partition the topic does not have: hashed like any id");
    cr_assert_eq(route_home("p3-o", 4, 4), (int32_t)((route_murmur2("p3-o", 4) & 0x7fffffff) % 4));
    cr_assert_eq(route_home("p3-o1x", 4, 4),
                 (int32_t)((route_murmur2("p3-o1x", 6) & 0x7fffffff) % 4));
}

Test(route, the_routing_count_decides_not_the_topic)
{
    const char *ids[] = {"order-1001", "a", "transfer:77", "x.y-z_1"};
    for (size_t i = 0; i < 4; i++) {
        uint32_t h = route_murmur2(ids[i], strlen(ids[i])) & 0x7fffffff;
        cr_assert_eq(route_home(ids[i], 4, 4), (int32_t)(h % 4));
        cr_assert_eq(route_home(ids[i], 2, 8), (int32_t)(h % 2), "the topic grew from 2 to 8");
        cr_assert_eq(route_home(ids[i], 1, 4), 0);
    }
}
