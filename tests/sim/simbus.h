/* simbus.h - the simulated bus: the input topic as in-memory logs (one per partition),
 * the consumer group's committed offsets and its view of who owns each partition, and
 * per engine instance a client behind the bus port (bus.h) for the simulation
 * (docs/simulation.md).
 *
 * A client is what one coordinator process has of Kafka: a consumer (a position per
 * assigned partition, pause, seek, the offsets stored for the next auto-commit, which
 * commits them every SIMBUS_COMMIT_MS as librdkafka's enable.auto.commit does, and only
 * for the partitions the group gives it) and a producer (a message reaches its topic when
 * produced, or never when its delivery fails; the delivery report is served by the next
 * poll() or flush() through engine_on_delivery). What reaches a topic other than the input
 * goes to the world through simbus_hooks_t.publish; what the engine forwards to the input
 * topic is appended to that partition's log. */
#ifndef SAGA_SIMBUS_H
#define SAGA_SIMBUS_H

#include "bus.h"
#include "engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIMBUS_COMMIT_MS 500   /* auto.commit.interval.ms */

typedef struct simbus simbus_t;
typedef struct simbus_client simbus_client_t;

/* What becomes of one produced message (simbus_hooks_t.fate). */
typedef enum {
    SIMBUS_DELIVER = 0,   /* it reaches its topic; the report says delivered */
    SIMBUS_FAIL,          /* it never does; the report says why */
    SIMBUS_KILLED         /* the hook killed the producing process (simbus_client_kill) */
} simbus_fate_t;

typedef struct simbus_hooks {
    void *opaque;
    /* The virtual time (ms): when a forwarded message is appended. */
    int64_t (*now_ms)(void *opaque);
    /* A message reached topic (not the input topic); every argument borrowed for the call. */
    void (*publish)(void *opaque, const char *topic, const char *key, const char *value);
    /* Asked once per message produced by the client whose opaque is client_opaque. */
    simbus_fate_t (*fate)(void *opaque, void *client_opaque, const char *topic);
} simbus_hooks_t;

/* A bus whose input topic (name borrowed) has partitions partitions. Returns NULL when out
 * of memory. */
simbus_t *simbus_new(const char *input_topic, int32_t partitions, const simbus_hooks_t *hooks);
/* Frees the bus. Its clients must be freed first. NULL is a no-op. */
void simbus_free(simbus_t *bus);

/* The world's producers (client, participants, operator): appends a message (copied) to
 * the input partition at time now (ms). Returns its offset. */
int64_t simbus_append(simbus_t *bus, int32_t partition, const char *key, const char *value,
                      int64_t now);
/* The input partition's end offset, message `offset`'s text and append time. */
int64_t simbus_end(const simbus_t *bus, int32_t partition);
const char *simbus_message(const simbus_t *bus, int32_t partition, int64_t offset,
                           int64_t *appended_at);
/* The group's committed offset of partition, -1 when none. */
int64_t simbus_committed(const simbus_t *bus, int32_t partition);
/* Input messages handed over again after a seek back (re-reads), all clients. */
uint64_t simbus_rereads(const simbus_t *bus);

/* A new client of bus for one engine instance (opaque given to the fate hook). Returns
 * NULL when out of memory. */
simbus_client_t *simbus_client_new(simbus_t *bus, void *opaque);
/* Serves the delivery reports still queued (as failed: the process is gone) and frees
 * the client. Call it before engine_free. NULL is a no-op. */
void simbus_client_free(simbus_client_t *c);
/* The client as a bus port (opaque is c, borrowed). */
bus_t simbus_client_port(simbus_client_t *c);
/* The engine delivery reports go to (borrowed: set before it produces). */
void simbus_client_set_engine(simbus_client_t *c, engine_t *e);

/* The group gives the client partitions (it consumes each from the committed offset,
 * else from the beginning; it owns them for commits), or takes them back. */
void simbus_client_assign(simbus_client_t *c, const int32_t *partitions, int n);
void simbus_client_revoke(simbus_client_t *c, const int32_t *partitions, int n);
/* membership=redis: an explicit assignment (kafka_assign), each partition read from
 * offsets[i] (-1 or offsets NULL: as simbus_client_assign). The last client assigned a
 * partition is the one whose commits count (a standalone consumer's commits are not
 * fenced by a group: the model keeps the last assigner's, the engine's positions in the
 * store are what a successor resumes from). */
void simbus_client_assign_at(simbus_client_t *c, const int32_t *partitions,
                             const int64_t *offsets, int n);
/* The process was killed: nothing it produces or stores counts from now on. */
void simbus_client_kill(simbus_client_t *c);

/* Whether input is waiting for the client (assigned, not paused, not yet handed over). */
bool simbus_client_has_input(const simbus_client_t *c);
/* Hands over up to max waiting input messages (pointers borrowed from the bus's logs, as
 * long as the bus). Returns how many. */
size_t simbus_client_consume(simbus_client_t *c, bus_message_t *msgs, size_t max);
/* The client's next read offset of partition, -1 when it is not assigned. */
int64_t simbus_client_position(const simbus_client_t *c, int32_t partition);
/* The auto-commit: at most every SIMBUS_COMMIT_MS, commits the stored offsets of the
 * partitions the group gives the client. */
void simbus_client_tick(simbus_client_t *c, int64_t now);
/* Delivery reports produced and not served yet. */
int simbus_client_unreported(const simbus_client_t *c);

#endif
