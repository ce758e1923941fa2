/* kafka.h - the Kafka module: the coordinator's consumer and producer (librdkafka), their
 * configuration with the safety-critical properties pinned, rebalances, delivery reports,
 * input batches, lag and metadata. It implements the bus port (bus.h) for the engine and
 * tells it what happens through kafka_events_t; nothing else in the coordinator includes
 * librdkafka's header. */
#ifndef SAGA_KAFKA_H
#define SAGA_KAFKA_H

#include "bus.h"
#include "config.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kafka kafka_t;

/* What the Kafka module tells its user (the engine), on the thread that calls into it:
 * from kafka_consume (rebalances), and from the bus's poll and flush (deliveries). */
typedef struct kafka_events {
    void *opaque;
    void (*on_assign)(void *opaque, const int32_t *partitions, int n);    /* about to be ours */
    void (*after_assign)(void *opaque, const int32_t *partitions, int n); /* now ours */
    void (*on_revoke)(void *opaque, const int32_t *partitions, int n);    /* no longer ours */
    void (*on_delivery)(void *opaque, void *delivery, int32_t partition, const char *topic,
                        int err, const char *errstr);
    void (*on_fatal)(void *opaque); /* logged already; stop serving */
} kafka_events_t;

/* Creates the consumer (not yet subscribed) and the producer from cfg: tunable defaults,
 * then the user's kafka.* / consumer.* / producer.* properties, then the pinned ones (a
 * user property contradicting one is refused). ev is copied. Returns NULL with the reason
 * in err. */
kafka_t *kafka_new(const config_t *cfg, const kafka_events_t *ev, char *err, size_t errlen);
/* Destroys both clients (the producer waits up to 1 s for what is in flight; its delivery
 * reports still reach ev). NULL is a no-op. */
void kafka_free(kafka_t *k);

/* The bus port over this module (opaque is k; valid while k lives). */
bus_t kafka_bus(kafka_t *k);

/* The input topic's partition count and the replication factor of its first partition,
 * from the broker's metadata. Returns 0, or -1 (err). */
int kafka_input_topic(kafka_t *k, int *partitions, int *replicas, char *err, size_t errlen);
/* Makes the producer learn the partitions and leaders of n topics now (one metadata
 * request), so that the first message to each is not held back by a metadata round at
 * the worst time: the first command of a takeover. Best effort. */
void kafka_warm(kafka_t *k, const char *const *topics, size_t n);
/* Joins the consumer group on the input topic. Returns 0, or -1 (logged). */
int kafka_subscribe(kafka_t *k);
/* Explicit assignment (membership=redis: no group protocol): starts reading n input
 * partitions, each at offsets[i] (offsets NULL or < 0: the group's committed offset, else
 * the beginning), or stops reading them. Offsets are still committed under group_id, so
 * that lag tools keep working. Returns 0, or -1 (logged). */
int kafka_assign(kafka_t *k, const int32_t *partitions, const int64_t *offsets, int n);
int kafka_unassign(kafka_t *k, const int32_t *partitions, int n);
/* Leaves the group: the partitions are revoked (on_revoke) and stored offsets committed. */
void kafka_close(kafka_t *k);

/* Takes the input that is there, or waits up to wait_ms for the first message and then
 * takes what came with it (a batch call alone would wait for a full batch), at most
 * batch_size messages. *msgs points at the batch (valid until kafka_release), *avail_us
 * says since when they were available (CLOCK_MONOTONIC us): a message found waiting since
 * the queue was last found empty (an upper bound of its wait), one waited for since it
 * came. Returns the count (0 when none). Rebalance events are served from inside. */
size_t kafka_consume(kafka_t *k, int wait_ms, const bus_message_t **msgs, int64_t *avail_us);
/* Releases the batch of the last kafka_consume. */
void kafka_release(kafka_t *k);

#endif
