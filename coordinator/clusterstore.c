/* clusterstore.c - the state store on a Redis Cluster: one store per primary, partitions
 * bound to the store of their slot's primary, rounds across them (see clusterstore.h). */
#include "clusterstore.h"

#include "vec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One primary's store. */
typedef struct node_store {
    char address[REDISCONN_ADDRESS_MAX];
    store_t *st;
    size_t queued;             /* transitions queued in its open round */
    size_t sent;               /* transitions of its round in flight */
    size_t first;              /* where its results start in the round's scratch */
    bool in_flight;
} node_store_t;

/* Where one transition of a round went: its primary's store and its position there. */
typedef struct placed {
    size_t node, local;
} placed_t;

struct clusterstore {
    store_config_t cfg;        /* for the stores made later; strings owned below */
    char *prefix, *user, *password;
    rcluster_t *cluster;
    store_t *routed;           /* the keys without a tag */
    node_store_t *nodes;       /* never shrinks: a primary that left keeps its store */
    size_t nnodes, nodes_cap;
    size_t *bound;             /* per partition: node index + 1 it is bound to; 0: none */
    size_t bound_cap;
    placed_t *open, *sent;     /* the open round's transitions, the round in flight's */
    size_t nopen, open_cap, nsent, sent_cap;
    store_status_t *scratch;   /* the round in flight's results, per node */
    size_t scratch_cap;
    int64_t *renewed;          /* per partition: when its lease was last known ours */
    size_t renewed_cap;
    int64_t lease_ms;
    int wait_replicas, sync_replicas;
    char error[REDISCONN_ERROR_MAX];
};

static void set_error(clusterstore_t *cs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(clusterstore_t *cs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cs->error, sizeof cs->error, fmt, ap);
    va_end(ap);
}

const char *clusterstore_last_error(const clusterstore_t *cs)
{
    return cs->error;
}

rcluster_t *clusterstore_cluster(clusterstore_t *cs)
{
    return cs->cluster;
}

/* Keeps a store's failure as ours; the slot map may be why (a redirection, a node gone),
 * so it is read again before the next use. Returns -1. */
static int failed(clusterstore_t *cs, const store_t *st)
{
    set_error(cs, "%s", st ? store_last_error(st) : rcluster_last_error(cs->cluster));
    rcluster_mark_stale(cs->cluster);
    return -1;
}

/* The store of the primary at address, made (and connected) when new. Returns its index,
 * or -1 (reason kept). */
static long node_at(clusterstore_t *cs, const char *address)
{
    size_t i = 0;
    while (i < cs->nnodes && strcmp(cs->nodes[i].address, address) != 0)
        i++;
    if (i < cs->nnodes && cs->nodes[i].st)
        return (long)i;
    if (i == cs->nnodes) {
        if (vec_grow((void **)&cs->nodes, &cs->nodes_cap, cs->nnodes + 1, sizeof *cs->nodes) < 0) {
            set_error(cs, "out of memory");
            return -1;
        }
        memset(&cs->nodes[i], 0, sizeof *cs->nodes);
        snprintf(cs->nodes[i].address, sizeof cs->nodes[i].address, "%s", address);
        cs->nnodes++;
    }
    char host[REDISCONN_ADDRESS_MAX], err[REDISCONN_ERROR_MAX];
    int port;
    if (redisconn_parse_address(address, host, sizeof host, &port, REDISCONN_DEFAULT_PORT) < 0) {
        set_error(cs, "redis cluster: \"%s\" is not HOST:PORT", address);
        return -1;
    }
    store_config_t cfg = cs->cfg;
    cfg.redis.host = host;
    cfg.redis.port = port;
    cfg.redis.cluster = false;
    cfg.redis.cluster_nodes = NULL;
    node_store_t *n = &cs->nodes[i];
    if (!(n->st = store_new(&cfg, err, sizeof err))) {
        set_error(cs, "redis cluster primary %s: %s", address, err);
        rcluster_mark_stale(cs->cluster);
        return -1;
    }
    store_set_lease(n->st, cs->lease_ms);
    store_set_wait_replicas(n->st, cs->wait_replicas);
    store_set_sync_replicas(n->st, cs->sync_replicas);
    return (long)i;
}

/* The store of the primary serving partition's slot by the current map. */
static long route(clusterstore_t *cs, int32_t partition)
{
    if (rcluster_ensure_map(cs->cluster) < 0)
        return failed(cs, NULL);
    char tag[24];
    int len = snprintf(tag, sizeof tag, "{p%d}", (int)partition); /* as rkeys.h's keys */
    const char *address = rcluster_address_for_slot(cs->cluster, rcluster_key_slot(tag, (size_t)len));
    if (!address) {
        set_error(cs, "redis cluster: no primary known for partition %d", (int)partition);
        return -1;
    }
    return node_at(cs, address);
}

/* Binds partition to the store of its slot's primary by the map now. */
static node_store_t *bind(clusterstore_t *cs, int32_t partition)
{
    if (partition < 0) {
        set_error(cs, "partition %d", (int)partition);
        return NULL;
    }
    long i = route(cs, partition);
    if (i < 0)
        return NULL;
    size_t cap = cs->bound_cap;
    if (vec_grow((void **)&cs->bound, &cs->bound_cap, (size_t)partition + 1, sizeof *cs->bound) < 0) {
        set_error(cs, "out of memory");
        return NULL;
    }
    memset(cs->bound + cap, 0, (cs->bound_cap - cap) * sizeof *cs->bound);
    cs->bound[partition] = (size_t)i + 1;
    return &cs->nodes[i];
}

/* The store partition is bound to, bound now if it is not. */
static node_store_t *bound(clusterstore_t *cs, int32_t partition)
{
    if (partition >= 0 && (size_t)partition < cs->bound_cap && cs->bound[partition])
        return &cs->nodes[cs->bound[partition] - 1];
    return bind(cs, partition);
}

clusterstore_t *clusterstore_new(const store_config_t *cfg, char *err, size_t errlen)
{
    clusterstore_t *cs = calloc(1, sizeof *cs);
    if (!cs) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cs->cfg = *cfg;
    cs->prefix = cfg->prefix ? strdup(cfg->prefix) : NULL;
    cs->user = cfg->redis.user ? strdup(cfg->redis.user) : NULL;
    cs->password = cfg->redis.password ? strdup(cfg->redis.password) : NULL;
    cs->cfg.prefix = cs->prefix;
    cs->cfg.redis.user = cs->user;
    cs->cfg.redis.password = cs->password;
    cs->cfg.redis.sentinels = cs->cfg.redis.master_name = NULL;
    cs->cfg.redis.sentinel_user = cs->cfg.redis.sentinel_password = NULL;
    cs->cfg.redis.host = NULL;
    if ((cfg->prefix && !cs->prefix) || (cfg->redis.user && !cs->user) ||
        (cfg->redis.password && !cs->password) || !(cs->cluster = rcluster_new(&cfg->redis))) {
        snprintf(err, errlen, "out of memory");
        clusterstore_free(cs);
        return NULL;
    }
    if (!(cs->routed = store_new_routed(cfg, cs->cluster, err, errlen))) {
        clusterstore_free(cs);
        return NULL;
    }
    /* Every primary reached now: a bad address or AUTH shows at start. */
    redisconn_t *primaries[RCLUSTER_MAX_NODES];
    size_t n = rcluster_primaries(cs->cluster, primaries, RCLUSTER_MAX_NODES);
    for (size_t i = 0; i < n && i < RCLUSTER_MAX_NODES; i++)
        if (node_at(cs, redisconn_address(primaries[i])) < 0) {
            snprintf(err, errlen, "%s", cs->error);
            clusterstore_free(cs);
            return NULL;
        }
    return cs;
}

void clusterstore_free(clusterstore_t *cs)
{
    if (!cs)
        return;
    for (size_t i = 0; i < cs->nnodes; i++)
        store_free(cs->nodes[i].st);
    free(cs->nodes);
    store_free(cs->routed);
    rcluster_free(cs->cluster);
    free(cs->bound);
    free(cs->open);
    free(cs->sent);
    free(cs->scratch);
    free(cs->renewed);
    free(cs->prefix);
    free(cs->user);
    free(cs->password);
    free(cs);
}

void clusterstore_set_lease(clusterstore_t *cs, int64_t lease_ms)
{
    cs->lease_ms = lease_ms;
    for (size_t i = 0; i < cs->nnodes; i++)
        if (cs->nodes[i].st)
            store_set_lease(cs->nodes[i].st, lease_ms);
    store_set_lease(cs->routed, lease_ms);
}

void clusterstore_set_wait_replicas(clusterstore_t *cs, int replicas)
{
    cs->wait_replicas = replicas;
    for (size_t i = 0; i < cs->nnodes; i++)
        if (cs->nodes[i].st)
            store_set_wait_replicas(cs->nodes[i].st, replicas);
}

void clusterstore_set_sync_replicas(clusterstore_t *cs, int replicas)
{
    cs->sync_replicas = replicas;
    for (size_t i = 0; i < cs->nnodes; i++)
        if (cs->nodes[i].st)
            store_set_sync_replicas(cs->nodes[i].st, replicas);
}

int clusterstore_put_meta(clusterstore_t *cs, int partitions, int *routing_partitions)
{
    return store_put_meta(cs->routed, partitions, routing_partitions) < 0 ? failed(cs, cs->routed)
                                                                          : 0;
}

/* --- the port ----------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Records when partition's lease was last known ours (taken or renewed). */
static void renewed_at(clusterstore_t *cs, int32_t partition, int64_t when)
{
    size_t cap = cs->renewed_cap;
    if (partition < 0 ||
        vec_grow((void **)&cs->renewed, &cs->renewed_cap, (size_t)partition + 1, sizeof *cs->renewed) < 0)
        return;
    memset(cs->renewed + cap, 0, (cs->renewed_cap - cap) * sizeof *cs->renewed);
    cs->renewed[partition] = when;
}


/* True when n serves slots by the current map. */
static bool serving(const clusterstore_t *cs, const node_store_t *n)
{
    return n->st && rcluster_is_primary(cs->cluster, n->address);
}

/* True when n takes part in rounds: it serves slots, or transitions are queued for it
 * (read back as errors when it is gone, so their partitions reload elsewhere). */
static bool in_rounds(const clusterstore_t *cs, const node_store_t *n)
{
    return n->st && (n->queued || serving(cs, n));
}


/* Connected means: a slot map that serves every slot, and every primary of it reached. */
static int cs_ensure_connected(void *self)
{
    clusterstore_t *cs = self;
    if (store_ensure_connected(cs->routed) < 0)
        return failed(cs, cs->routed);
    redisconn_t *primaries[RCLUSTER_MAX_NODES];
    size_t n = rcluster_primaries(cs->cluster, primaries, RCLUSTER_MAX_NODES);
    for (size_t i = 0; i < n && i < RCLUSTER_MAX_NODES; i++) {
        long k = node_at(cs, redisconn_address(primaries[i]));
        if (k < 0)
            return -1;
        if (!cs->nodes[k].in_flight && store_ensure_connected(cs->nodes[k].st) < 0)
            return failed(cs, cs->nodes[k].st);
    }
    return 0;
}

static const char *cs_last_error(void *self)
{
    return clusterstore_last_error(self);
}

static int cs_ping(void *self)
{
    clusterstore_t *cs = self;
    if (cs_ensure_connected(cs) < 0)
        return -1;
    for (size_t i = 0; i < cs->nnodes; i++)
        if (serving(cs, &cs->nodes[i]) && !cs->nodes[i].in_flight && store_ping(cs->nodes[i].st) < 0)
            return failed(cs, cs->nodes[i].st);
    return 0;
}

static int cs_take_epoch(void *self, int32_t p, const char *owner, int64_t *epoch)
{
    clusterstore_t *cs = self;
    int64_t started = mono_ms();
    node_store_t *n = bind(cs, p);
    if (!n)
        return -1;
    if (store_take_epoch(n->st, p, owner, epoch) < 0)
        return failed(cs, n->st);
    renewed_at(cs, p, started);
    return 0;
}

static int cs_read_epoch(void *self, int32_t p, int64_t *epoch)
{
    clusterstore_t *cs = self;
    node_store_t *n = bound(cs, p);
    if (!n)
        return -1;
    return store_read_epoch(n->st, p, epoch) < 0 ? failed(cs, n->st) : 0;
}

static int cs_load_partition(void *self, int32_t p, store_saga_fn fn, void *opaque)
{
    clusterstore_t *cs = self;
    node_store_t *n = bind(cs, p);
    if (!n)
        return -1;
    int rc = store_load_partition(n->st, p, fn, opaque);
    return rc < 0 ? failed(cs, n->st) : rc;
}

static int cs_load_outbox(void *self, int32_t p, store_outbox_fn fn, void *opaque)
{
    clusterstore_t *cs = self;
    node_store_t *n = bound(cs, p);
    if (!n)
        return -1;
    int rc = store_load_outbox(n->st, p, fn, opaque);
    return rc < 0 ? failed(cs, n->st) : rc;
}

static int cs_read_statuses(void *self, int32_t p, const char *const *ids, size_t count,
                            char (*statuses)[16])
{
    clusterstore_t *cs = self;
    node_store_t *n = bound(cs, p);
    if (!n)
        return -1;
    return store_read_statuses(n->st, p, ids, count, statuses) < 0 ? failed(cs, n->st) : 0;
}

static int cs_queue_transition(void *self, const store_transition_t *t)
{
    clusterstore_t *cs = self;
    node_store_t *n = bound(cs, t->partition);
    if (!n)
        return -1;
    if (vec_grow((void **)&cs->open, &cs->open_cap, cs->nopen + 1, sizeof *cs->open) < 0) {
        set_error(cs, "out of memory");
        return -1;
    }
    if (store_queue_transition(n->st, t) < 0)
        return failed(cs, n->st);
    cs->open[cs->nopen++] = (placed_t){.node = (size_t)(n - cs->nodes), .local = n->queued++};
    return 0;
}

static int cs_queue_outbox_acks(void *self, int32_t p, int64_t epoch, const char *const *ids,
                                size_t count)
{
    clusterstore_t *cs = self;
    node_store_t *n = bound(cs, p);
    if (!n)
        return -1;
    return store_queue_outbox_acks(n->st, p, epoch, ids, count) < 0 ? failed(cs, n->st) : 0;
}

static int cs_discard_partition(void *self, int32_t p)
{
    clusterstore_t *cs = self;
    if (p < 0 || (size_t)p >= cs->bound_cap || !cs->bound[p])
        return 0; /* never bound: nothing of it is queued */
    node_store_t *n = &cs->nodes[cs->bound[p] - 1];
    /* Unbound: a discard starts every load, and what follows binds it by the map then. */
    cs->bound[p] = 0;
    return store_discard_partition(n->st, p) < 0 ? failed(cs, n->st) : 0;
}

static int cs_queue_position(void *self, int32_t p, int64_t epoch, int64_t offset)
{
    clusterstore_t *cs = self;
    node_store_t *n = bound(cs, p);
    if (!n)
        return -1;
    return store_queue_position(n->st, p, epoch, offset) < 0 ? failed(cs, n->st) : 0;
}

static int cs_read_position(void *self, int32_t p, int64_t *offset)
{
    clusterstore_t *cs = self;
    node_store_t *n = bound(cs, p);
    if (!n)
        return -1;
    return store_read_position(n->st, p, offset) < 0 ? failed(cs, n->st) : 0;
}

/* A round is every primary's round, sent together. */
static int cs_send(void *self)
{
    clusterstore_t *cs = self;
    int rc = 0;
    for (size_t i = 0; i < cs->nnodes; i++) {
        node_store_t *n = &cs->nodes[i];
        if (!in_rounds(cs, n) || n->in_flight)
            continue;
        n->sent = n->queued;
        n->queued = 0;
        n->in_flight = true;
        /* A node the map dropped fails alone: its transitions report errors. */
        if (store_send(n->st) < 0 && (failed(cs, n->st), serving(cs, n)))
            rc = -1;
    }
    placed_t *t = cs->sent;
    size_t cap = cs->sent_cap;
    cs->sent = cs->open, cs->sent_cap = cs->open_cap, cs->nsent = cs->nopen;
    cs->open = t, cs->open_cap = cap, cs->nopen = 0;
    return rc;
}

static bool cs_in_flight(void *self)
{
    clusterstore_t *cs = self;
    for (size_t i = 0; i < cs->nnodes; i++)
        if (cs->nodes[i].in_flight)
            return true;
    return false;
}

/* True when every primary in flight has begun to answer: receiving then hardly waits. */
static bool cs_replies_arriving(void *self)
{
    clusterstore_t *cs = self;
    bool any = false;
    for (size_t i = 0; i < cs->nnodes; i++) {
        if (!cs->nodes[i].in_flight)
            continue;
        if (!store_replies_arriving(cs->nodes[i].st))
            return false;
        any = true;
    }
    return any;
}

static int cs_receive(void *self, store_status_t *results)
{
    clusterstore_t *cs = self;
    size_t total = 0;
    for (size_t i = 0; i < cs->nnodes; i++)
        if (cs->nodes[i].in_flight)
            cs->nodes[i].first = total, total += cs->nodes[i].sent;
    if (vec_grow((void **)&cs->scratch, &cs->scratch_cap, total + 1, sizeof *cs->scratch) < 0) {
        set_error(cs, "out of memory reading a round");
        abort(); /* the round's outcome would be lost: a restart recovers everything */
    }
    int rc = 0;
    for (size_t i = 0; i < cs->nnodes; i++) {
        node_store_t *n = &cs->nodes[i];
        if (!n->in_flight)
            continue;
        if (store_receive(n->st, cs->scratch + n->first) < 0 && (failed(cs, n->st), serving(cs, n)))
            rc = -1;
        n->in_flight = false;
    }
    bool doubt = false;
    for (size_t i = 0; i < cs->nsent; i++) {
        const placed_t *pl = &cs->sent[i];
        results[i] = cs->scratch[cs->nodes[pl->node].first + pl->local];
        if (results[i] == STORE_ERROR && !doubt) {
            doubt = true;
            failed(cs, cs->nodes[pl->node].st); /* MOVED, ASK, TRYAGAIN...: map again */
        }
    }
    cs->nsent = 0;
    return rc;
}

static int cs_put_definition(void *self, const definition_t *d, char *existing)
{
    clusterstore_t *cs = self;
    int rc = store_put_definition(cs->routed, d, existing);
    return rc < 0 ? failed(cs, cs->routed) : rc;
}

static int cs_get_definition_hash(void *self, const char *name, int version, char *hash)
{
    clusterstore_t *cs = self;
    int rc = store_get_definition_hash(cs->routed, name, version, hash);
    return rc < 0 ? failed(cs, cs->routed) : rc;
}

static int cs_get_definition(void *self, const char *name, int version, char **json, char *hash)
{
    clusterstore_t *cs = self;
    int rc = store_get_definition(cs->routed, name, version, json, hash);
    return rc < 0 ? failed(cs, cs->routed) : rc;
}

static int cs_put_member(void *self, const store_member_t *m)
{
    clusterstore_t *cs = self;
    return store_put_member(cs->routed, m) < 0 ? failed(cs, cs->routed) : 0;
}

static int cs_drop_member(void *self, const char *instance)
{
    clusterstore_t *cs = self;
    return store_drop_member(cs->routed, instance) < 0 ? failed(cs, cs->routed) : 0;
}

static void cs_set_lease(void *self, int64_t lease_ms)
{
    clusterstore_set_lease(self, lease_ms);
}

/* The alive set on its own primary, then each primary's leases renewed in one call. A
 * primary that cannot be reached fails only its partitions: each still counts as held
 * until its own lease time has passed since it was last renewed (as membership.c counts
 * a failed heartbeat for all of them on one Redis). */
static int cs_heartbeat(void *self, const char *instance, const int32_t *partitions, size_t n,
                        bool *held, store_alive_fn fn, void *opaque)
{
    clusterstore_t *cs = self;
    int64_t started = mono_ms();
    if (fn && store_heartbeat(cs->routed, instance, NULL, 0, NULL, fn, opaque) < 0)
        return failed(cs, cs->routed);
    if (n == 0)
        return 0;
    long *at = malloc(n * sizeof *at);
    int32_t *group = malloc(n * sizeof *group);
    bool *group_held = malloc(n * sizeof *group_held), *reached = calloc(n, sizeof *reached);
    if (!at || !group || !group_held || !reached) {
        free(at), free(group), free(group_held), free(reached);
        set_error(cs, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        held[i] = false;
        at[i] = route(cs, partitions[i]);
    }
    for (size_t i = 0; i < cs->nnodes; i++) {
        size_t k = 0;
        for (size_t j = 0; j < n; j++)
            if (at[j] == (long)i)
                group[k++] = partitions[j];
        if (k == 0)
            continue;
        bool ok = store_heartbeat(cs->nodes[i].st, instance, group, k, group_held, NULL, NULL) == 0;
        if (!ok)
            failed(cs, cs->nodes[i].st);
        for (size_t j = 0, g = 0; j < n; j++)
            if (at[j] == (long)i) {
                reached[j] = ok;
                held[j] = ok && group_held[g];
                g++;
            }
    }
    for (size_t i = 0; i < n; i++) {
        int32_t p = partitions[i];
        if (held[i])
            renewed_at(cs, p, started);
        else if (!reached[i] && p >= 0 && (size_t)p < cs->renewed_cap && cs->renewed[p] &&
                 started - cs->renewed[p] < cs->lease_ms)
            held[i] = true; /* not reached, and its lease cannot have expired yet */
    }
    free(at), free(group), free(group_held), free(reached);
    return 0;
}

static int cs_release_lease(void *self, int32_t p, const char *instance)
{
    clusterstore_t *cs = self;
    long i = route(cs, p);
    if (i < 0)
        return -1;
    return store_release_lease(cs->nodes[i].st, p, instance) < 0 ? failed(cs, cs->nodes[i].st) : 0;
}

static int cs_leave(void *self, const char *instance)
{
    clusterstore_t *cs = self;
    return store_leave(cs->routed, instance) < 0 ? failed(cs, cs->routed) : 0;
}

store_port_t clusterstore_port(clusterstore_t *cs)
{
    return (store_port_t){.self = cs,
                          .ensure_connected = cs_ensure_connected,
                          .last_error = cs_last_error,
                          .ping = cs_ping,
                          .take_epoch = cs_take_epoch,
                          .read_epoch = cs_read_epoch,
                          .load_partition = cs_load_partition,
                          .load_outbox = cs_load_outbox,
                          .read_statuses = cs_read_statuses,
                          .queue_transition = cs_queue_transition,
                          .queue_outbox_acks = cs_queue_outbox_acks,
                          .discard_partition = cs_discard_partition,
                          .queue_position = cs_queue_position,
                          .read_position = cs_read_position,
                          .send = cs_send,
                          .in_flight = cs_in_flight,
                          .replies_arriving = cs_replies_arriving,
                          .receive = cs_receive,
                          .put_definition = cs_put_definition,
                          .get_definition_hash = cs_get_definition_hash,
                          .get_definition = cs_get_definition,
                          .put_member = cs_put_member,
                          .drop_member = cs_drop_member,
                          .set_lease = cs_set_lease,
                          .heartbeat = cs_heartbeat,
                          .release_lease = cs_release_lease,
                          .leave = cs_leave};
}
