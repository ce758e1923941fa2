/* route.h - which input-topic partition a saga id belongs to (its home).
 *
 * "The same id twice makes one saga" must hold whatever partition a message lands on:
 * a start sent without a key, by a producer with another partitioner, or after the input
 * topic grew. So every coordinator computes an id's home the same way and forwards a
 * message that landed elsewhere to it (coordinator.c), and only the home creates the
 * saga, where the store's create-if-absent check makes one saga per id.
 *
 * The home is Kafka's default partitioner (murmur2 of the id, as the Java client and
 * librdkafka's murmur2_random compute it) over the routing partition count: the input
 * topic's partition count when the first coordinator recorded it in saga:meta
 * (routing_partitions). It never changes afterwards, so all coordinators agree even while
 * the topic grows; a generated id ("p<N>-o<OFFSET>", made for a start without an id) is
 * at home on the partition N it names, where its start landed. Pure functions, no I/O. */
#ifndef SAGA_ROUTE_H
#define SAGA_ROUTE_H

#include <stddef.h>
#include <stdint.h>

/* Kafka's murmur2 hash of len bytes (the Java client's Utils.murmur2). */
uint32_t route_murmur2(const void *key, size_t len);

/* The home partition of saga id: a generated id's own partition when id is one and names
 * a partition below topic_partitions (the input topic's partition count now), else
 * (murmur2(id) & 0x7fffffff) % routing_partitions (>= 1). */
int32_t route_home(const char *id, int32_t routing_partitions, int32_t topic_partitions);

/* Formats the id of a start that gave none: "p<partition>-o<offset>", so that a
 * redelivery of the same message makes the same saga. */
void route_generated_id(char *buf, size_t len, int32_t partition, int64_t offset);

#endif
