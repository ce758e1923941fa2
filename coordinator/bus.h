/* bus.h - the bus port: what the engine (engine.c) needs of the message bus, as a table of
 * functions, so that the engine includes no Kafka header and can run on another bus.
 * kafka.c implements it over librdkafka (kafka_bus); the simulation is to implement it over
 * its own log (docs/simulation.md).
 *
 * Input comes to the engine as bus_message_t (engine_turn); what the engine produces is
 * confirmed later through engine_on_delivery with the token it gave produce(). Every
 * function runs on the engine's thread; a delivery report is only ever delivered from
 * inside poll() or flush(). */
#ifndef SAGA_BUS_H
#define SAGA_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One input message (every pointer borrowed until the turn that got it ends). */
typedef struct bus_message {
    int32_t partition;
    int64_t offset;
    const char *key;            /* NULL: no key */
    size_t key_len;
    const char *value;          /* NULL: no value */
    size_t len;
    int32_t forwarded_from;     /* its header saga-forwarded-from (route.h), -1 = none */
    int err;                    /* non-zero: not a message but a consumer error ... */
    bool err_is_eof;            /* ... the end of a partition (not a problem) */
    const char *errstr;         /* ... and what it says */
} bus_message_t;

typedef struct bus {
    void *opaque;               /* the implementation's, passed to every function */
    const char *input_topic;    /* borrowed: where starts, replies and commands come in */

    /* Queues one message: partition -1 = by key. delivery (may be NULL) comes back through
     * engine_on_delivery once the bus knows its fate. Returns 0, or -1 when it could not
     * be queued (err says why; no delivery report will come). */
    int (*produce)(void *opaque, const char *topic, int32_t partition, const char *key,
                   size_t key_len, const char *value, size_t len, int32_t forwarded_from,
                   void *delivery, char *err, size_t errlen);
    /* Waits until everything produced was delivered or failed (reports served), at most
     * timeout_ms. Returns 0 when nothing is left, -1 otherwise. */
    int (*flush)(void *opaque, int timeout_ms);
    /* Serves the delivery reports that are in, without waiting. */
    void (*poll)(void *opaque);
    /* Messages produced whose report has not been served yet. */
    int (*outq_len)(void *opaque);
    /* Stops or resumes fetching input partition. Returns 0, or -1 (err). */
    int (*pause)(void *opaque, int32_t partition, bool pause, char *err, size_t errlen);
    /* Moves the next input read of partition to offset (< 0: the group's committed offset,
     * else the beginning). Returns 0, or -1 (err). */
    int (*seek)(void *opaque, int32_t partition, int64_t offset, char *err, size_t errlen);
    /* Where input partition begins and ends now, asked of the broker (at most timeout_ms).
     * Any message appended before the call is below *high. Returns 0, or -1 (err). */
    int (*end_offsets)(void *opaque, int32_t partition, int timeout_ms, int64_t *low,
                       int64_t *high, char *err, size_t errlen);
    /* The group's committed offset of input partition: *offset gets it, or -1 when none is
     * committed. Returns 0, or -1 when the broker could not say. */
    int (*committed)(void *opaque, int32_t partition, int timeout_ms, int64_t *offset);
    /* Records the next offsets to commit for n input partitions (committed in the
     * background). Returns 0, or -1 (err). */
    int (*store_offsets)(void *opaque, const int32_t *partitions, const int64_t *offsets,
                         size_t n, char *err, size_t errlen);
    /* The lag of n owned input partitions (end of input minus read position, from what the
     * bus knows without asking the broker; fallback[i] when it has no position): lag[i],
     * -1 = unknown. */
    void (*lag)(void *opaque, const int32_t *partitions, const int64_t *fallback, size_t n,
                int64_t *lag);
    /* Tests only (SAGA_FATAL_AT): makes the bus raise a fatal error. */
    void (*test_fatal)(void *opaque);
} bus_t;

#endif
