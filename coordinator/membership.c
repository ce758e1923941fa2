/* membership.c - partition leases in Redis spread by rendezvous hashing (see membership.h). */
#include "membership.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MEMBERSHIP_MAX_ALIVE 1024   /* instances read from one heartbeat */

struct membership {
    store_t *st;                 /* its own connection: never waits on a round */
    char *instance;
    int32_t partitions;
    int64_t lease_ms, renew_ms;
    membership_events_t ev;
    int64_t *epoch;              /* per partition: the epoch our lease was taken with (the
                                  * engine may take newer ones under it), 0 = not ours */
    int32_t *scratch_parts;      /* per partition: lists built by a beat */
    int64_t *scratch_epochs;
    bool *held;
    char **alive;                /* the instances of the last beat */
    size_t nalive;
    int64_t next_beat;           /* monotonic ms */
    int64_t last_renewed;        /* when the last successful beat was sent, -1 = never */
    bool waiting;                /* a partition of ours is held by another: try again soon */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- rendezvous hashing ------------------------------------------------------------- */

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

/* A 64-bit finalizer (splitmix64's): the weights of one member spread over partitions. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int membership_rendezvous(const char *const *members, size_t n, int32_t partition)
{
    int best = -1;
    uint64_t best_weight = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = mix64(fnv1a64(members[i]) ^ mix64((uint64_t)partition + 1));
        /* Ties (never in practice) go to the smaller name, so every instance agrees. */
        if (best < 0 || w > best_weight ||
            (w == best_weight && strcmp(members[i], members[best]) < 0)) {
            best = (int)i;
            best_weight = w;
        }
    }
    return best;
}

/* --- lifecycle ---------------------------------------------------------------------- */

membership_t *membership_new(store_t *st, const char *instance, int32_t partitions,
                             int64_t lease_ms, int64_t renew_ms, const membership_events_t *ev)
{
    membership_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->st = st;
    m->instance = strdup(instance);
    m->partitions = partitions;
    m->lease_ms = lease_ms;
    m->renew_ms = renew_ms > 0 ? renew_ms : (lease_ms / 10 > 10 ? lease_ms / 10 : 10);
    m->ev = *ev;
    size_t n = (size_t)(partitions > 0 ? partitions : 1);
    m->epoch = calloc(n, sizeof *m->epoch);
    m->scratch_parts = calloc(n, sizeof *m->scratch_parts);
    m->scratch_epochs = calloc(n, sizeof *m->scratch_epochs);
    m->held = calloc(n, sizeof *m->held);
    m->alive = calloc(MEMBERSHIP_MAX_ALIVE, sizeof *m->alive);
    m->last_renewed = -1;
    if (!m->instance || !m->epoch || !m->scratch_parts || !m->scratch_epochs || !m->held ||
        !m->alive) {
        membership_free(m);
        return NULL;
    }
    return m;
}

static void forget_alive(membership_t *m)
{
    for (size_t i = 0; i < m->nalive; i++)
        free(m->alive[i]);
    m->nalive = 0;
}

void membership_free(membership_t *m)
{
    if (!m)
        return;
    forget_alive(m);
    free(m->alive);
    free(m->instance);
    free(m->epoch);
    free(m->scratch_parts);
    free(m->scratch_epochs);
    free(m->held);
    free(m);
}

int membership_owned(const membership_t *m)
{
    int n = 0;
    for (int32_t p = 0; p < m->partitions; p++)
        n += m->epoch[p] > 0;
    return n;
}

int64_t membership_since_renewal_ms(const membership_t *m)
{
    return m->last_renewed < 0 ? -1 : mono_ms() - m->last_renewed;
}

/* --- the protocol --------------------------------------------------------------------- */

static void on_alive(const char *instance, void *opaque)
{
    membership_t *m = opaque;
    if (m->nalive < MEMBERSHIP_MAX_ALIVE) {
        char *copy = strdup(instance);
        if (copy)
            m->alive[m->nalive++] = copy;
    }
}

/* Gives up the partitions listed in scratch_parts[0..n-1] and forgets their leases. */
static void give_up(membership_t *m, int n, bool clean)
{
    if (n == 0)
        return;
    m->ev.give_up(m->ev.opaque, m->scratch_parts, n, clean);
    for (int i = 0; i < n; i++) {
        int32_t p = m->scratch_parts[i];
        if (clean && store_release_lease(m->st, p, m->instance) < 0)
            log_warn("partition %d: lease not released (%s): it expires within %lld ms",
                     (int)p, store_last_error(m->st), (long long)m->lease_ms);
        m->epoch[p] = 0;
    }
    log_info("partitions given up (%s): %d", clean ? "handed over" : "lease lost", n);
}

/* One heartbeat: renews our leases; lets go of those lost. Returns 0, or -1 when Redis
 * could not be asked (then every lease is given up once it must have expired). */
static int beat(membership_t *m, int64_t sent)
{
    int n = 0;
    for (int32_t p = 0; p < m->partitions; p++)
        if (m->epoch[p] > 0)
            m->scratch_parts[n++] = p;
    forget_alive(m);
    if (store_heartbeat(m->st, m->instance, m->scratch_parts, (size_t)n, m->held, on_alive,
                        m) < 0) {
        log_warn("membership: heartbeat failed: %s", store_last_error(m->st));
        if (m->last_renewed >= 0 && sent - m->last_renewed >= m->lease_ms)
            give_up(m, n, false); /* expired by now, whatever Redis says later */
        return -1;
    }
    m->last_renewed = sent;
    int lost = 0;
    for (int i = 0; i < n; i++)
        if (!m->held[i])
            m->scratch_parts[lost++] = m->scratch_parts[i];
    if (lost)
        log_warn("membership: %d lease(s) lost (expired or taken over)", lost);
    give_up(m, lost, false);
    return 0;
}

/* The partitions whose rendezvous owner among the live instances (us included) is us. */
static bool is_ours(membership_t *m, int32_t p)
{
    const char *members[MEMBERSHIP_MAX_ALIVE + 1];
    size_t n = 0;
    bool listed = false;
    for (size_t i = 0; i < m->nalive; i++) {
        members[n++] = m->alive[i];
        listed |= strcmp(m->alive[i], m->instance) == 0;
    }
    if (!listed)
        members[n++] = m->instance;
    int owner = membership_rendezvous(members, n, p);
    return owner >= 0 && strcmp(members[owner], m->instance) == 0;
}

/* Hands over what belongs to another live instance now, then takes what is ours and free. */
static void rebalance(membership_t *m)
{
    int n = 0;
    for (int32_t p = 0; p < m->partitions; p++)
        if (m->epoch[p] > 0 && !is_ours(m, p))
            m->scratch_parts[n++] = p;
    give_up(m, n, true);
    n = 0;
    m->waiting = false;
    for (int32_t p = 0; p < m->partitions; p++) {
        if (m->epoch[p] > 0 || !is_ours(m, p))
            continue;
        int64_t epoch = 0;
        if (store_take_epoch(m->st, p, m->instance, &epoch) < 0) {
            m->waiting = true; /* held by its last owner until it hands over or expires */
            log_debug("partition %d: %s", (int)p, store_last_error(m->st));
            continue;
        }
        m->epoch[p] = epoch;
        m->scratch_parts[n] = p;
        m->scratch_epochs[n++] = epoch;
    }
    if (n) {
        log_info("membership: %d partition(s) taken", n);
        m->ev.take(m->ev.opaque, m->scratch_parts, m->scratch_epochs, n);
    }
}

int membership_tick(membership_t *m)
{
    int64_t now = mono_ms();
    if (now < m->next_beat)
        return (int)(m->next_beat - now);
    if (beat(m, now) == 0)
        rebalance(m);
    /* Waiting for a partition to be handed over: look again sooner than a beat. */
    int64_t every = m->waiting ? (m->renew_ms / 4 > 5 ? m->renew_ms / 4 : 5) : m->renew_ms;
    m->next_beat = now + every;
    return (int)every;
}

void membership_leave(membership_t *m)
{
    int n = 0;
    for (int32_t p = 0; p < m->partitions; p++)
        if (m->epoch[p] > 0) {
            if (store_release_lease(m->st, p, m->instance) < 0)
                log_warn("partition %d: lease not released (%s)", (int)p,
                         store_last_error(m->st));
            m->epoch[p] = 0;
            n++;
        }
    if (store_leave(m->st, m->instance) < 0)
        log_warn("membership: not removed from the alive set (%s)", store_last_error(m->st));
    log_info("membership: left, %d lease(s) released", n);
}
