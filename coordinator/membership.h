/* membership.h - who owns which input partition when membership=redis: partition leases
 * in Redis, spread over the live instances by rendezvous hashing (docs/high-availability.md).
 *
 * Each instance beats every renew_ms: one pipelined call puts it in the alive set (by
 * Redis's clock), renews the lease of every partition it owns and returns the instances
 * heard from within lease_ms. Partitions are spread over the live instances by rendezvous
 * hashing with bounded loads (membership_spread), so a join or a death moves few
 * partitions and no instance holds more than one above another.
 * An instance takes the leases of its partitions that are free (taking one bumps the
 * fencing epoch in the same script), hands over those that now belong to another instance
 * (finishing their rounds first), and lets go at once of a lease it lost. A lease not
 * renewed expires by Redis's clock: the instances' clocks do not matter. Safety rests on
 * the epoch and lease checks of the transition script alone (store.h). */
#ifndef SAGA_MEMBERSHIP_H
#define SAGA_MEMBERSHIP_H

#include "storeport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct membership membership_t;

/* What the membership tells the coordinator, from inside membership_tick/leave. */
typedef struct membership_events {
    void *opaque;
    /* These partitions are ours now, each under epochs[i]: start serving them. */
    void (*take)(void *opaque, const int32_t *partitions, const int64_t *epochs, int n);
    /* Stop serving these partitions: clean = a hand-over (finish the rounds and deliver
     * first, the lease is released after), else the lease is lost already. */
    void (*give_up)(void *opaque, const int32_t *partitions, int n, bool clean);
} membership_events_t;

/* The clock membership reads (monotonic ms), for a simulation to drive it on virtual time,
 * as engine_env_t does for the engine. NULL mono_ms = CLOCK_MONOTONIC. */
typedef struct membership_env {
    void *opaque;
    int64_t (*mono_ms)(void *opaque);
} membership_env_t;

/* Over the store port (copied; its self borrowed: its own connection, with set_lease done),
 * for instance (copied) and the input topic's partitions 0..partitions-1. renew_ms 0 =
 * lease_ms / 10. ev is copied. NULL when out of memory. */
membership_t *membership_new(const store_port_t *store, const char *instance,
                             int32_t partitions, int64_t lease_ms, int64_t renew_ms,
                             const membership_events_t *ev);
/* Replaces the clock (copied; NULL = the real one). Call it before the first tick. */
void membership_set_env(membership_t *m, const membership_env_t *env);
void membership_free(membership_t *m);

/* Beats, renews, hands over and takes when it is time. Returns the ms until it wants to
 * run again (the caller's longest wait). */
int membership_tick(membership_t *m);

/* A clean stop, after the engine finished and delivered everything: releases every lease
 * and leaves the alive set, so that the others take the partitions at their next beat. */
void membership_leave(membership_t *m);

/* The owned partitions: count, and how long since the last renewal (ms, -1 = never: not
 * yet a member). */
int membership_owned(const membership_t *m);
int64_t membership_since_renewal_ms(const membership_t *m);

/* Rendezvous hashing with bounded loads: owner[p] gets the index in members[0..n-1] of
 * partition p's owner, for p in 0..partitions-1 (-1 when n is 0). Every (partition,
 * member) pair has a weight; pairs are taken from the heaviest down, and a member takes a
 * partition while it holds fewer than partitions / n (partitions % n of them one more). So the spread is even (no
 * member more than one partition above another) and a join or a death moves few more
 * partitions than plain rendezvous hashing would. Pure: every instance computes the same
 * answer from the same member names, whatever their order. Returns 0, or -1 when out of
 * memory. */
int membership_spread(const char *const *members, size_t n, int32_t partitions, int *owner);

#endif
