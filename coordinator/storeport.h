/* storeport.h - the store port: what the engine (engine.c), the definition registry
 * (registry.c) and the membership (membership.c) need of the state store, as a table of functions, so that they include no
 * Redis header and can run on another store. store.c implements it over Redis
 * (store_port); the simulation implements it over its model of the transition script
 * (tests/sim/simstore.c), and tests/test_store_model.c checks that the two agree.
 *
 * Every function has the meaning of the store.h function of the same name (store.h says
 * what each does, and the types are store.h's); self is the implementation's, passed to
 * every call. */
#ifndef SAGA_STOREPORT_H
#define SAGA_STOREPORT_H

#include "store.h"

typedef struct store_port {
    void *self;

    /* connection */
    int (*ensure_connected)(void *self);
    const char *(*last_error)(void *self);
    int (*ping)(void *self);

    /* epochs and loading */
    int (*take_epoch)(void *self, int32_t partition, const char *owner, int64_t *epoch);
    int (*read_epoch)(void *self, int32_t partition, int64_t *epoch);
    int (*load_partition)(void *self, int32_t partition, store_saga_fn fn, void *opaque);
    int (*load_outbox)(void *self, int32_t partition, store_outbox_fn fn, void *opaque);
    int (*read_statuses)(void *self, int32_t partition, const char *const *ids, size_t n,
                         char (*statuses)[16]);

    /* rounds */
    int (*queue_transition)(void *self, const store_transition_t *t);
    int (*queue_outbox_acks)(void *self, int32_t partition, int64_t epoch,
                             const char *const *ids, size_t n);
    int (*discard_partition)(void *self, int32_t partition);
    int (*queue_position)(void *self, int32_t partition, int64_t epoch, int64_t offset);
    int (*read_position)(void *self, int32_t partition, int64_t *offset);
    int (*send)(void *self);
    bool (*in_flight)(void *self);
    bool (*replies_arriving)(void *self);
    int (*receive)(void *self, store_status_t *results);

    /* definitions (registry.c) */
    int (*put_definition)(void *self, const definition_t *d, char *existing);
    int (*get_definition_hash)(void *self, const char *name, int version, char *hash);
    int (*get_definition)(void *self, const char *name, int version, char **json,
                          char *hash);

    /* member records */
    int (*put_member)(void *self, const store_member_t *m);
    int (*drop_member)(void *self, const char *instance);

    /* leases (membership=redis: membership.c; take_epoch takes the lease once set) */
    void (*set_lease)(void *self, int64_t lease_ms);
    int (*heartbeat)(void *self, const char *instance, const int32_t *partitions, size_t n,
                     bool *held, store_alive_fn fn, void *opaque);
    int (*release_lease)(void *self, int32_t partition, const char *instance);
    int (*leave)(void *self, const char *instance);
} store_port_t;

/* The Redis store as a port (store.c): self is st, borrowed. */
store_port_t store_port(store_t *st);

#endif
