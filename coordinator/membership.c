/* membership.c - partition leases in Redis spread by rendezvous hashing (see membership.h). */
#include "membership.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MEMBERSHIP_MAX_ALIVE 1024   /* instances read from one heartbeat */

struct membership {
    store_port_t st;             /* its own connection: never waits on a round */
    membership_env_t env;        /* the clock */
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
    bool *ours;                  /* per partition: the spread gives it to us */
    char *spread_of;             /* the member list the spread was computed for */
    int64_t next_beat;           /* monotonic ms */
    int64_t last_renewed;        /* when the last successful beat was sent, -1 = never */
    bool waiting;                /* a partition of ours is held by another: try again soon */
};

static int64_t mono_ms(const membership_t *m)
{
    if (m->env.mono_ms)
        return m->env.mono_ms(m->env.opaque);
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

static uint64_t pair_weight(const char *member, int32_t partition)
{
    return mix64(fnv1a64(member) ^ mix64((uint64_t)partition + 1));
}

typedef struct pair {
    uint64_t weight;
    int32_t partition;
    int member;
    const char *name;
} pair_t;

/* Heaviest first; ties (never in practice) by name, then partition, so every instance
 * orders the pairs alike. */
static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    if (x->weight != y->weight)
        return x->weight > y->weight ? -1 : 1;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

int membership_spread(const char *const *members, size_t n, int32_t partitions, int *owner)
{
    for (int32_t p = 0; p < partitions; p++)
        owner[p] = -1;
    if (n == 0 || partitions <= 0)
        return 0;
    size_t npairs = n * (size_t)partitions;
    pair_t *pairs = malloc(npairs * sizeof *pairs);
    size_t *load = calloc(n, sizeof *load);
    if (!pairs || !load) {
        free(pairs);
        free(load);
        return -1;
    }
    size_t k = 0;
    for (int32_t p = 0; p < partitions; p++)
        for (size_t m = 0; m < n; m++)
            pairs[k++] = (pair_t){pair_weight(members[m], p), p, (int)m, members[m]};
    qsort(pairs, npairs, sizeof *pairs, pair_cmp);
    /* Each member takes base partitions, and `extra` of them one more. */
    size_t base = (size_t)partitions / n, extra = (size_t)partitions % n, over = 0;
    int32_t left = partitions;
    for (size_t i = 0; i < npairs && left > 0; i++) {
        pair_t *x = &pairs[i];
        if (owner[x->partition] >= 0 || load[x->member] > base ||
            (load[x->member] == base && over >= extra))
            continue;
        over += load[x->member] == base;
        owner[x->partition] = x->member;
        load[x->member]++;
        left--;
    }
    free(pairs);
    free(load);
    return 0;
}

/* --- lifecycle ---------------------------------------------------------------------- */

membership_t *membership_new(const store_port_t *store, const char *instance,
                             int32_t partitions, int64_t lease_ms, int64_t renew_ms,
                             const membership_events_t *ev)
{
    membership_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->st = *store;
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
    m->ours = calloc(n, sizeof *m->ours);
    m->alive = calloc(MEMBERSHIP_MAX_ALIVE, sizeof *m->alive);
    m->last_renewed = -1;
    if (!m->instance || !m->epoch || !m->scratch_parts || !m->scratch_epochs || !m->held ||
        !m->alive || !m->ours) {
        membership_free(m);
        return NULL;
    }
    return m;
}

void membership_set_env(membership_t *m, const membership_env_t *env)
{
    m->env = env ? *env : (membership_env_t){0};
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
    free(m->ours);
    free(m->spread_of);
    free(m);
}

int membership_owned(const membership_t *m)
{
    int n = 0;
    for (int32_t p = 0; p < m->partitions; p++)
        n += m->epoch[p] > 0;
    return n;
}

static int membership_count_ours(const membership_t *m)
{
    int n = 0;
    for (int32_t p = 0; p < m->partitions; p++)
        n += m->ours[p];
    return n;
}

int64_t membership_since_renewal_ms(const membership_t *m)
{
    return m->last_renewed < 0 ? -1 : mono_ms(m) - m->last_renewed;
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
        if (clean && m->st.release_lease(m->st.self, p, m->instance) < 0)
            log_warn("partition %d: lease not released (%s): it expires within %lld ms",
                     (int)p, m->st.last_error(m->st.self), (long long)m->lease_ms);
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
    if (m->st.heartbeat(m->st.self, m->instance, m->scratch_parts, (size_t)n, m->held,
                        on_alive, m) < 0) {
        log_warn("membership: heartbeat failed: %s", m->st.last_error(m->st.self));
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

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Recomputes which partitions are ours when the live instances (us included) changed. */
static void update_spread(membership_t *m)
{
    const char *members[MEMBERSHIP_MAX_ALIVE + 1];
    size_t n = 0, len = 0;
    bool listed = false;
    for (size_t i = 0; i < m->nalive; i++) {
        members[n++] = m->alive[i];
        listed |= strcmp(m->alive[i], m->instance) == 0;
    }
    if (!listed)
        members[n++] = m->instance;
    qsort(members, n, sizeof *members, name_cmp);
    for (size_t i = 0; i < n; i++)
        len += strlen(members[i]) + 1;
    char *key = malloc(len + 1), *at = key;
    if (!key)
        return; /* keep the last spread */
    for (size_t i = 0; i < n; i++)
        at += sprintf(at, "%s\n", members[i]);
    if (m->spread_of && strcmp(m->spread_of, key) == 0) {
        free(key);
        return;
    }
    int *owner = malloc((size_t)m->partitions * sizeof *owner);
    if (!owner || membership_spread(members, n, m->partitions, owner) < 0) {
        free(owner);
        free(key);
        return;
    }
    for (int32_t p = 0; p < m->partitions; p++)
        m->ours[p] = owner[p] >= 0 && strcmp(members[owner[p]], m->instance) == 0;
    free(owner);
    free(m->spread_of);
    m->spread_of = key;
    log_info("membership: %zu live instance(s), %d partition(s) are ours", n,
             membership_count_ours(m));
}

/* Hands over what belongs to another live instance now, then takes what is ours and free. */
static void rebalance(membership_t *m)
{
    update_spread(m);
    int n = 0;
    for (int32_t p = 0; p < m->partitions; p++)
        if (m->epoch[p] > 0 && !m->ours[p])
            m->scratch_parts[n++] = p;
    give_up(m, n, true);
    n = 0;
    m->waiting = false;
    for (int32_t p = 0; p < m->partitions; p++) {
        if (m->epoch[p] > 0 || !m->ours[p])
            continue;
        int64_t epoch = 0;
        if (m->st.take_epoch(m->st.self, p, m->instance, &epoch) < 0) {
            m->waiting = true; /* held by its last owner until it hands over or expires */
            log_debug("partition %d: %s", (int)p, m->st.last_error(m->st.self));
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
    int64_t now = mono_ms(m);
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
            if (m->st.release_lease(m->st.self, p, m->instance) < 0)
                log_warn("partition %d: lease not released (%s)", (int)p,
                         m->st.last_error(m->st.self));
            m->epoch[p] = 0;
            n++;
        }
    if (m->st.leave(m->st.self, m->instance) < 0)
        log_warn("membership: not removed from the alive set (%s)", m->st.last_error(m->st.self));
    log_info("membership: left, %d lease(s) released", n);
}
