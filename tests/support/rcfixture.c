/* rcfixture.c - a Redis Cluster for tests (see rcfixture.h). */
#include "rcfixture.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define RCFIXTURE_NODE_ATTEMPTS 3     /* a node start retried with another bus port */
#define RCFIXTURE_PROBE_TIMEOUT_MS 1000 /* one command of a readiness poll */
#define RCFIXTURE_CONNECT_TIMEOUT_MS 2000
#define RCFIXTURE_MAX_REDIRECTS 16
#define RCFIXTURE_RETRY_PAUSE_MS 50   /* before TRYAGAIN, CLUSTERDOWN is tried again */
#define RCFIXTURE_SCAN_COUNT "1000"
#define RCFIXTURE_LIVE_MAX 16         /* fixtures stopped at exit if a test forgot */
#define RCFIXTURE_LOG_TAIL 4096       /* bytes of redis-cli's log printed when it failed */

/* ---- the at-exit safety net ------------------------------------------------------------ */

static rcfixture_t *rcfixture_live[RCFIXTURE_LIVE_MAX];
static bool rcfixture_atexit_set;

static void rcfixture_stop_all(void)
{
    for (int i = 0; i < RCFIXTURE_LIVE_MAX; i++)
        if (rcfixture_live[i])
            rcfixture_stop(rcfixture_live[i]);
}

static void rcfixture_track(rcfixture_t *c)
{
    if (!rcfixture_atexit_set && atexit(rcfixture_stop_all) == 0)
        rcfixture_atexit_set = true;
    for (int i = 0; i < RCFIXTURE_LIVE_MAX; i++)
        if (!rcfixture_live[i]) {
            rcfixture_live[i] = c;
            return;
        }
}

static void rcfixture_untrack(rcfixture_t *c)
{
    for (int i = 0; i < RCFIXTURE_LIVE_MAX; i++)
        if (rcfixture_live[i] == c)
            rcfixture_live[i] = NULL;
}

/* ---- small helpers ----------------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool running(const rcfixture_t *c, int idx)
{
    return c && idx >= 0 && idx < c->count && c->nodes[idx].pid > 0;
}

/* A connection to 127.0.0.1:port with timeout_ms for connect and commands, or NULL
 * (quietly: polls call this while a node is down). */
static redisContext *connect_port(int port, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!ctx || ctx->err) {
        redisFree(ctx);
        return NULL;
    }
    (void)redisSetTimeout(ctx, tv);
    return ctx;
}

/* Runs one command on nodes[idx] on a connection of its own. Returns the reply (caller
 * frees; error replies included) or NULL (node down, I/O error). */
static redisReply *node_command(rcfixture_t *c, int idx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static redisReply *node_command(rcfixture_t *c, int idx, const char *fmt, ...)
{
    if (!running(c, idx))
        return NULL;
    redisContext *ctx = connect_port(c->nodes[idx].port, RCFIXTURE_PROBE_TIMEOUT_MS);
    if (!ctx)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(ctx, fmt, ap);
    va_end(ap);
    redisFree(ctx);
    return r;
}

/* The same with arguments as argv (the keys of MIGRATE). */
static redisReply *node_command_argv(rcfixture_t *c, int idx, int argc, const char **argv,
                                     int timeout_ms)
{
    if (!running(c, idx))
        return NULL;
    redisContext *ctx = connect_port(c->nodes[idx].port, timeout_ms);
    if (!ctx)
        return NULL;
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    redisFree(ctx);
    return r;
}

/* True when r is a status reply "OK". */
static bool reply_ok(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
}

/* Runs a command that must answer OK; prints what it answered otherwise. Returns 0 or -1. */
static int node_ok(rcfixture_t *c, int idx, const char *what, redisReply *r)
{
    int rc = reply_ok(r) ? 0 : -1;
    if (rc < 0)
        fprintf(stderr, "rcfixture: %s on node %d (port %d): %s\n", what, idx,
                running(c, idx) ? c->nodes[idx].port : 0,
                !r ? "no answer" : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return rc;
}

/* The node index listening on port, or -1. */
static int index_of_port(const rcfixture_t *c, int port)
{
    for (int i = 0; i < c->count; i++)
        if (c->nodes[i].port == port)
            return i;
    return -1;
}

/* ---- a node's own view (CLUSTER NODES, its "myself" line) ------------------------------- */

typedef struct self_view {
    bool primary;
    long long config_epoch;
    uint8_t slots[RCFIXTURE_SLOTS / 8];     /* the slots it claims */
    int replicas[RCFIXTURE_MAX_NODES];     /* indexes of the nodes it lists as its replicas */
    int nreplicas;
} self_view_t;

static void slot_set(uint8_t *bits, int slot)
{
    bits[slot / 8] |= (uint8_t)(1u << (slot % 8));
}

static bool slot_has(const uint8_t *bits, int slot)
{
    return (bits[slot / 8] >> (slot % 8)) & 1u;
}

/* Reads nodes[idx]'s CLUSTER NODES into *v. Returns 0, or -1 (not running, no answer). */
static int self_view_read(rcfixture_t *c, int idx, self_view_t *v)
{
    memset(v, 0, sizeof *v);
    redisReply *r = node_command(c, idx, "CLUSTER NODES");
    if (!r || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -1;
    }
    char myid[RCFIXTURE_ID_LEN + 1] = "";
    /* Two passes: the myself line first (its id), then the lines naming it as master. */
    for (int pass = 0; pass < 2; pass++) {
        char *save = NULL, *text = strdup(r->str);
        if (!text) {
            freeReplyObject(r);
            return -1;
        }
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            /* id addr flags master ping pong epoch link slot... */
            char *f[8 + 1], *s2 = NULL;
            int nf = 0;
            char *tok = strtok_r(line, " \r", &s2);
            for (; tok && nf < 8; tok = strtok_r(NULL, " \r", &s2))
                f[nf++] = tok;
            if (nf < 8)
                continue;
            bool myself = strstr(f[2], "myself") != NULL;
            if (pass == 0 && myself) {
                snprintf(myid, sizeof myid, "%s", f[0]);
                v->primary = strstr(f[2], "master") != NULL;
                v->config_epoch = strtoll(f[6], NULL, 10);
                for (; tok; tok = strtok_r(NULL, " \r", &s2)) {
                    if (tok[0] == '[')
                        continue; /* [slot->-id] migrating, [slot-<-id] importing */
                    char *dash = strchr(tok, '-');
                    int lo = atoi(tok), hi = dash ? atoi(dash + 1) : lo;
                    for (int s = lo; s <= hi && s >= 0 && s < RCFIXTURE_SLOTS; s++)
                        slot_set(v->slots, s);
                }
            } else if (pass == 1 && myid[0] && strcmp(f[3], myid) == 0 &&
                       !strstr(f[2], "fail") && v->nreplicas < RCFIXTURE_MAX_NODES) {
                const char *colon = strrchr(f[1], ':');
                int idx2 = colon ? index_of_port(c, atoi(colon + 1)) : -1;
                if (idx2 >= 0)
                    v->replicas[v->nreplicas++] = idx2;
            }
        }
        free(text);
    }
    freeReplyObject(r);
    return myid[0] ? 0 : -1;
}

/* ---- health ------------------------------------------------------------------------------- */

/* True when nodes[idx] says cluster_state:ok and knows `known` nodes (0: any number). */
static bool node_cluster_ok(rcfixture_t *c, int idx, int known)
{
    redisReply *r = node_command(c, idx, "CLUSTER INFO");
    char state[32] = "", nodes[32] = "";
    bool ok = r && r->type == REDIS_REPLY_STRING &&
              fixture_info_field(r->str, "cluster_state", state, sizeof state) &&
              strcmp(state, "ok") == 0 &&
              fixture_info_field(r->str, "cluster_known_nodes", nodes, sizeof nodes) &&
              (known == 0 || atoi(nodes) == known);
    freeReplyObject(r);
    return ok;
}

/* True when nodes[idx] is a primary, or a replica whose link to its primary is up and
 * not syncing; and no AOF rewrite is under way or due (a replica writes its initial AOF
 * after a full sync, and refuses a SIGTERM until it is written: "Writing initial AOF,
 * can't exit"). */
static bool node_in_sync(rcfixture_t *c, int idx)
{
    redisReply *r = node_command(c, idx, "INFO replication");
    char role[32] = "", v[32] = "";
    bool ok = r && r->type == REDIS_REPLY_STRING && fixture_info_field(r->str, "role", role, sizeof role);
    if (ok && strcmp(role, "slave") == 0)
        ok = fixture_info_field(r->str, "master_link_status", v, sizeof v) && strcmp(v, "up") == 0 &&
             fixture_info_field(r->str, "master_sync_in_progress", v, sizeof v) && strcmp(v, "0") == 0;
    freeReplyObject(r);
    if (!ok)
        return false;
    r = node_command(c, idx, "INFO persistence");
    ok = r && r->type == REDIS_REPLY_STRING &&
         fixture_info_field(r->str, "aof_rewrite_in_progress", v, sizeof v) && strcmp(v, "0") == 0 &&
         fixture_info_field(r->str, "aof_rewrite_scheduled", v, sizeof v) && strcmp(v, "0") == 0;
    freeReplyObject(r);
    return ok;
}

typedef struct healthy_wait {
    rcfixture_t *c;
    int known;      /* nodes each must know; 0 = any */
    int primaries;  /* running primaries expected; 0 = any */
} healthy_wait_t;

static bool cluster_healthy(void *opaque)
{
    healthy_wait_t *w = opaque;
    int primaries = 0;
    for (int i = 0; i < w->c->count; i++) {
        if (!running(w->c, i))
            continue;
        if (!node_cluster_ok(w->c, i, w->known) || !node_in_sync(w->c, i))
            return false;
        primaries += rcfixture_is_primary(w->c, i);
    }
    return w->primaries == 0 || primaries == w->primaries;
}

/* ---- start and stop ---------------------------------------------------------------------- */

/* Starts nodes[idx] with the cluster settings and extra_config. Returns 0 or -1. */
static int node_start(rcfixture_t *c, int idx, const char *extra_config)
{
    for (int attempt = 0; attempt < RCFIXTURE_NODE_ATTEMPTS; attempt++) {
        int bus = fixture_free_port();
        if (bus < 0)
            return -1;
        char *conf = NULL;
        if (asprintf(&conf,
                     "cluster-enabled yes\n"
                     "cluster-config-file nodes.conf\n"
                     "cluster-node-timeout %d\n"
                     "cluster-port %d\n"
                     "appendonly yes\n"
                     /* SIGTERM stops a primary at once, without waiting for replicas
                      * that the fixture may have stopped or killed already. */
                     "shutdown-timeout 0\n"
                     "%s",
                     RCFIXTURE_NODE_TIMEOUT_MS, bus, extra_config ? extra_config : "") < 0)
            return -1;
        int rc = fixture_redis_start(&c->nodes[idx], conf);
        free(conf);
        if (rc == 0) {
            c->bus_ports[idx] = bus;
            return 0;
        }
        fprintf(stderr, "rcfixture: node %d did not start (bus port %d), trying again\n", idx, bus);
    }
    return -1;
}

/* Prints the end of the file at path to stderr. */
static void log_tail_print(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    static char buf[RCFIXTURE_LOG_TAIL + 1];
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        (void)fseek(f, size > RCFIXTURE_LOG_TAIL ? size - RCFIXTURE_LOG_TAIL : 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, RCFIXTURE_LOG_TAIL, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "rcfixture: --- %s (%s) ---\n%s\nrcfixture: ---\n", what, path, buf);
}

/* Runs redis-cli --cluster create over every node. Returns 0 or -1. */
static int cluster_create(rcfixture_t *c, int replicas)
{
    char log[PATH_MAX + 32], rep[16], addr[RCFIXTURE_MAX_NODES][32];
    snprintf(log, sizeof log, "%s/cluster-create.log", c->nodes[0].dir);
    snprintf(rep, sizeof rep, "%d", replicas);
    const char *argv[RCFIXTURE_MAX_NODES + 8];
    int argc = 0;
    argv[argc++] = "redis-cli";
    argv[argc++] = "--cluster";
    argv[argc++] = "create";
    for (int i = 0; i < c->count; i++) {
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", c->nodes[i].port);
        argv[argc++] = addr[i];
    }
    argv[argc++] = "--cluster-replicas";
    argv[argc++] = rep;
    argv[argc++] = "--cluster-yes";
    argv[argc] = NULL;
    pid_t pid = fixture_spawn(argv, log, NULL);
    if (pid < 0)
        return -1;
    int status = 0;
    if (fixture_wait_exit(pid, RCFIXTURE_READY_TIMEOUT_MS, &status) != 0) {
        fprintf(stderr, "rcfixture: redis-cli --cluster create did not end in %d ms\n",
                RCFIXTURE_READY_TIMEOUT_MS);
        (void)fixture_stop_process(pid, FIXTURE_STOP_TIMEOUT_MS);
        log_tail_print("redis-cli --cluster create", log);
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "rcfixture: redis-cli --cluster create failed (status %d)\n", status);
        log_tail_print("redis-cli --cluster create", log);
        return -1;
    }
    return 0;
}

int rcfixture_start(rcfixture_t *c, int primaries, int replicas, const char *extra_config)
{
    memset(c, 0, sizeof *c);
    int n = primaries * (1 + replicas);
    if (primaries < 3 || replicas < 0 || n > RCFIXTURE_MAX_NODES) {
        fprintf(stderr, "rcfixture: %d primaries with %d replicas each: expected at least 3 "
                        "primaries and at most %d nodes\n", primaries, replicas,
                RCFIXTURE_MAX_NODES);
        return -1;
    }
    rcfixture_track(c);
    for (int i = 0; i < n; i++) {
        if (node_start(c, i, extra_config) != 0)
            goto err;
        c->count = i + 1;
        size_t len = strlen(c->seeds);
        snprintf(c->seeds + len, sizeof c->seeds - len, "%s127.0.0.1:%d", i ? "," : "",
                 c->nodes[i].port);
    }
    for (int i = 0; i < n; i++) {
        redisReply *r = node_command(c, i, "CLUSTER MYID");
        if (!r || r->type != REDIS_REPLY_STRING || r->len != RCFIXTURE_ID_LEN) {
            fprintf(stderr, "rcfixture: CLUSTER MYID on node %d: %s\n", i,
                    r && r->type == REDIS_REPLY_ERROR ? r->str : "no id");
            freeReplyObject(r);
            goto err;
        }
        memcpy(c->ids[i], r->str, RCFIXTURE_ID_LEN + 1);
        freeReplyObject(r);
    }
    if (cluster_create(c, replicas) != 0)
        goto err;
    healthy_wait_t w = {.c = c, .known = n, .primaries = primaries};
    if (!fixture_wait_until(cluster_healthy, &w, RCFIXTURE_READY_TIMEOUT_MS)) {
        fprintf(stderr, "rcfixture: the cluster of %d nodes was not healthy within %d ms "
                        "(cluster_state:ok and %d known nodes everywhere, replicas in sync)\n",
                n, RCFIXTURE_READY_TIMEOUT_MS, n);
        goto err;
    }
    return 0;
err:
    rcfixture_stop(c);
    return -1;
}

void rcfixture_stop(rcfixture_t *c)
{
    if (!c)
        return;
    /* Every node told at once, then each waited for: one grace period, not one each. */
    for (int i = 0; i < RCFIXTURE_MAX_NODES; i++)
        if (c->nodes[i].pid > 0)
            (void)kill(c->nodes[i].pid, SIGTERM);
    for (int i = 0; i < RCFIXTURE_MAX_NODES; i++)
        fixture_redis_stop(&c->nodes[i]);
    rcfixture_untrack(c);
    memset(c, 0, sizeof *c);
}

/* ---- slots ------------------------------------------------------------------------------- */

bool rcfixture_is_primary(rcfixture_t *c, int idx)
{
    redisReply *r = node_command(c, idx, "ROLE");
    bool primary = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                   r->element[0]->type == REDIS_REPLY_STRING &&
                   strcmp(r->element[0]->str, "master") == 0;
    freeReplyObject(r);
    return primary;
}

int rcfixture_primary_of(rcfixture_t *c, int slot)
{
    if (!c || slot < 0 || slot >= RCFIXTURE_SLOTS)
        return -1;
    int best = -1;
    long long best_epoch = -1;
    for (int i = 0; i < c->count; i++) {
        self_view_t v;
        if (self_view_read(c, i, &v) != 0 || !v.primary || !slot_has(v.slots, slot))
            continue;
        if (v.config_epoch > best_epoch) {
            best = i;
            best_epoch = v.config_epoch;
        }
    }
    return best;
}

int rcfixture_key_slot(rcfixture_t *c, const char *key)
{
    for (int i = 0; c && i < c->count; i++) {
        redisReply *r = node_command(c, i, "CLUSTER KEYSLOT %s", key);
        if (!r)
            continue;
        int slot = r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
        freeReplyObject(r);
        return slot;
    }
    fprintf(stderr, "rcfixture: CLUSTER KEYSLOT %s: no node answered\n", key);
    return -1;
}

/* ---- migration ----------------------------------------------------------------------------- */

/* Moves keys of slot from nodes[from] to nodes[to] in batches until at most keep remain.
 * Returns 0 or -1. */
static int migrate_keys(rcfixture_t *c, int slot, int from, int to, int batch, int pause_ms,
                        long keep)
{
    char port[16], timeout[16];
    snprintf(port, sizeof port, "%d", c->nodes[to].port);
    snprintf(timeout, sizeof timeout, "%d", RCFIXTURE_MIGRATE_TIMEOUT_MS);
    for (bool first = true;; first = false) {
        redisReply *r = node_command(c, from, "CLUSTER COUNTKEYSINSLOT %d", slot);
        if (!r || r->type != REDIS_REPLY_INTEGER) {
            fprintf(stderr, "rcfixture: CLUSTER COUNTKEYSINSLOT %d on node %d: %s\n", slot, from,
                    r && r->type == REDIS_REPLY_ERROR ? r->str : "no answer");
            freeReplyObject(r);
            return -1;
        }
        long left = (long)r->integer;
        freeReplyObject(r);
        if (left <= keep)
            return 0;
        if (!first && pause_ms > 0)
            sleep_ms(pause_ms);
        long take = left - keep < batch ? left - keep : batch;
        r = node_command(c, from, "CLUSTER GETKEYSINSLOT %d %ld", slot, take);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "rcfixture: CLUSTER GETKEYSINSLOT %d on node %d: %s\n", slot, from,
                    r && r->type == REDIS_REPLY_ERROR ? r->str : "no answer");
            freeReplyObject(r);
            return -1;
        }
        if (r->elements == 0) {
            freeReplyObject(r);
            return 0;
        }
        size_t argc = 7 + r->elements;
        const char **argv = calloc(argc, sizeof *argv);
        if (!argv) {
            freeReplyObject(r);
            return -1;
        }
        /* MIGRATE host port "" db timeout KEYS key... */
        argv[0] = "MIGRATE";
        argv[1] = "127.0.0.1";
        argv[2] = port;
        argv[3] = "";
        argv[4] = "0";
        argv[5] = timeout;
        argv[6] = "KEYS";
        for (size_t i = 0; i < r->elements; i++)
            argv[7 + i] = r->element[i]->str;
        redisReply *m = node_command_argv(c, from, (int)argc, argv,
                                          RCFIXTURE_MIGRATE_TIMEOUT_MS * 2);
        free(argv);
        freeReplyObject(r);
        /* NOKEY: the keys were deleted meanwhile, by the test's traffic. */
        bool ok = m && m->type == REDIS_REPLY_STATUS &&
                  (strcmp(m->str, "OK") == 0 || strcmp(m->str, "NOKEY") == 0);
        if (!ok) {
            fprintf(stderr, "rcfixture: MIGRATE of slot %d from node %d to node %d: %s\n", slot,
                    from, to, !m ? "no answer" : m->type == REDIS_REPLY_ERROR ? m->str : "?");
            freeReplyObject(m);
            return -1;
        }
        freeReplyObject(m);
    }
}

/* Checks the arguments of a migration; *from gets the slot's primary now. Returns 1 when
 * the slot is already at `to`, 0 to go on, -1 on a bad argument. */
static int migrate_check(rcfixture_t *c, int slot, int to, int *from)
{
    if (!c || slot < 0 || slot >= RCFIXTURE_SLOTS || !running(c, to) ||
        !rcfixture_is_primary(c, to)) {
        fprintf(stderr, "rcfixture: migrate slot %d to node %d: not a running primary\n", slot, to);
        return -1;
    }
    *from = rcfixture_primary_of(c, slot);
    if (*from < 0) {
        fprintf(stderr, "rcfixture: migrate slot %d: no primary serves it\n", slot);
        return -1;
    }
    return *from == to ? 1 : 0;
}

int rcfixture_migrate_begin(rcfixture_t *c, int slot, int to, int batch, int pause_ms,
                            int keep_keys)
{
    int from;
    int rc = migrate_check(c, slot, to, &from);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (batch <= 0)
        batch = 1;
    if (node_ok(c, to, "CLUSTER SETSLOT IMPORTING",
                node_command(c, to, "CLUSTER SETSLOT %d IMPORTING %s", slot, c->ids[from])) != 0 ||
        node_ok(c, from, "CLUSTER SETSLOT MIGRATING",
                node_command(c, from, "CLUSTER SETSLOT %d MIGRATING %s", slot, c->ids[to])) != 0)
        return -1;
    return migrate_keys(c, slot, from, to, batch, pause_ms, keep_keys < 0 ? 0 : keep_keys);
}

int rcfixture_migrate_finish(rcfixture_t *c, int slot, int to, int batch)
{
    int from;
    int rc = migrate_check(c, slot, to, &from);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (migrate_keys(c, slot, from, to, batch > 0 ? batch : 1, 0, 0) != 0)
        return -1;
    /* The target first, then the source (so that the slot is never without an owner that
     * knows it), then every other primary. */
    if (node_ok(c, to, "CLUSTER SETSLOT NODE",
                node_command(c, to, "CLUSTER SETSLOT %d NODE %s", slot, c->ids[to])) != 0 ||
        node_ok(c, from, "CLUSTER SETSLOT NODE",
                node_command(c, from, "CLUSTER SETSLOT %d NODE %s", slot, c->ids[to])) != 0)
        return -1;
    for (int i = 0; i < c->count; i++) {
        if (i == to || i == from || !running(c, i) || !rcfixture_is_primary(c, i))
            continue;
        if (node_ok(c, i, "CLUSTER SETSLOT NODE",
                    node_command(c, i, "CLUSTER SETSLOT %d NODE %s", slot, c->ids[to])) != 0)
            return -1;
    }
    return 0;
}

int rcfixture_migrate_slot(rcfixture_t *c, int slot, int to, int batch, int pause_ms)
{
    if (rcfixture_migrate_begin(c, slot, to, batch, pause_ms, 0) != 0)
        return -1;
    return rcfixture_migrate_finish(c, slot, to, batch);
}

/* ---- failures ------------------------------------------------------------------------------ */

typedef struct takeover_wait {
    rcfixture_t *c;
    const self_view_t *old;  /* the killed primary's view */
    int winner;              /* the replica that took its slots, once found */
} takeover_wait_t;

static bool taken_over(void *opaque)
{
    takeover_wait_t *w = opaque;
    w->winner = -1;
    for (int k = 0; k < w->old->nreplicas && w->winner < 0; k++) {
        int r = w->old->replicas[k];
        self_view_t v;
        if (self_view_read(w->c, r, &v) != 0 || !v.primary)
            continue;
        bool all = true;
        for (int s = 0; s < RCFIXTURE_SLOTS && all; s++)
            if (slot_has(w->old->slots, s) && !slot_has(v.slots, s))
                all = false;
        if (all)
            w->winner = r;
    }
    if (w->winner < 0)
        return false;
    for (int i = 0; i < w->c->count; i++)
        if (running(w->c, i) && !node_cluster_ok(w->c, i, 0))
            return false;
    return true;
}

int rcfixture_kill_primary(rcfixture_t *c, int idx, int timeout_ms)
{
    self_view_t old;
    if (!running(c, idx) || self_view_read(c, idx, &old) != 0 || !old.primary) {
        fprintf(stderr, "rcfixture: kill primary %d: not a running primary\n", idx);
        return -1;
    }
    if (old.nreplicas == 0) {
        fprintf(stderr, "rcfixture: kill primary %d: it has no replica to take over\n", idx);
        return -1;
    }
    if (fixture_redis_kill(&c->nodes[idx]) != 0)
        return -1;
    takeover_wait_t w = {.c = c, .old = &old, .winner = -1};
    int64_t t0 = fixture_now_ms();
    if (!fixture_wait_until(taken_over, &w, timeout_ms)) {
        fprintf(stderr, "rcfixture: node %d killed: %s within %d ms\n", idx,
                w.winner < 0 ? "no replica took its slots" : "cluster_state is not ok everywhere",
                timeout_ms);
        return -1;
    }
    fprintf(stderr, "rcfixture: node %d killed; node %d took its slots in %lld ms\n", idx,
            w.winner, (long long)(fixture_now_ms() - t0));
    return 0;
}

int rcfixture_start_again(rcfixture_t *c, int idx, int timeout_ms)
{
    if (!c || idx < 0 || idx >= c->count || running(c, idx)) {
        fprintf(stderr, "rcfixture: start again node %d: not a killed node\n", idx);
        return -1;
    }
    if (fixture_redis_start_again(&c->nodes[idx]) != 0)
        return -1;
    healthy_wait_t w = {.c = c, .known = c->count, .primaries = 0};
    if (!fixture_wait_until(cluster_healthy, &w, timeout_ms)) {
        fprintf(stderr, "rcfixture: node %d started again: the cluster was not healthy "
                        "within %d ms\n", idx, timeout_ms);
        return -1;
    }
    return 0;
}

/* ---- clients ------------------------------------------------------------------------------- */

redisContext *rcfixture_connect(rcfixture_t *c, int idx)
{
    if (!running(c, idx)) {
        fprintf(stderr, "rcfixture: connect: node %d is not running\n", idx);
        return NULL;
    }
    return fixture_redis_connect(&c->nodes[idx]);
}

/* Sends the formatted command cmd (len bytes) to 127.0.0.1:port, with ASKING first when
 * asking. Returns the reply or NULL. */
static redisReply *send_to(int port, const char *cmd, size_t len, bool asking)
{
    redisContext *ctx = connect_port(port, RCFIXTURE_CONNECT_TIMEOUT_MS);
    if (!ctx)
        return NULL;
    redisReply *r = NULL;
    if (asking)
        (void)redisAppendCommand(ctx, "ASKING");
    if (redisAppendFormattedCommand(ctx, cmd, len) == REDIS_OK) {
        redisReply *a = NULL;
        if (!asking || (redisGetReply(ctx, (void **)&a) == REDIS_OK && reply_ok(a)))
            (void)redisGetReply(ctx, (void **)&r);
        freeReplyObject(a);
    }
    redisFree(ctx);
    return r;
}

redisReply *rcfixture_command(rcfixture_t *c, const char *key, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    /* Start at the slot's primary as the nodes see it; any running node would do. */
    int slot = rcfixture_key_slot(c, key);
    int owner = slot >= 0 ? rcfixture_primary_of(c, slot) : -1;
    int port = running(c, owner) ? c->nodes[owner].port : -1;
    for (int i = 0; port < 0 && i < c->count; i++)
        if (running(c, i))
            port = c->nodes[i].port;
    bool asking = false;
    redisReply *r = NULL;
    for (int hop = 0; port > 0 && hop < RCFIXTURE_MAX_REDIRECTS; hop++) {
        r = send_to(port, cmd, (size_t)len, asking);
        if (!r || r->type != REDIS_REPLY_ERROR)
            break;
        bool moved = strncmp(r->str, "MOVED ", 6) == 0, ask = strncmp(r->str, "ASK ", 4) == 0;
        if (moved || ask) {
            const char *colon = strrchr(r->str, ':');
            port = colon ? atoi(colon + 1) : -1;
            asking = ask;
        } else if (strncmp(r->str, "TRYAGAIN", 8) == 0 ||
                   strncmp(r->str, "CLUSTERDOWN", 11) == 0) {
            sleep_ms(RCFIXTURE_RETRY_PAUSE_MS);
            asking = false;
        } else {
            break;
        }
        freeReplyObject(r);
        r = NULL;
    }
    redisFreeCommand(cmd);
    return r;
}

long rcfixture_count_keys(rcfixture_t *c, const char *pattern, long *counts)
{
    if (!c)
        return -1;
    if (counts)
        for (int i = 0; i < c->count; i++)
            counts[i] = 0;
    long total = 0;
    for (int i = 0; i < c->count; i++) {
        if (!running(c, i) || !rcfixture_is_primary(c, i))
            continue;
        redisContext *ctx = rcfixture_connect(c, i);
        if (!ctx)
            return -1;
        char cursor[32] = "0";
        long n = 0;
        do {
            redisReply *r = redisCommand(ctx, "SCAN %s MATCH %s COUNT " RCFIXTURE_SCAN_COUNT,
                                         cursor, pattern);
            if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                fprintf(stderr, "rcfixture: SCAN on node %d: %s\n", i,
                        r && r->type == REDIS_REPLY_ERROR ? r->str : ctx->errstr);
                freeReplyObject(r);
                redisFree(ctx);
                return -1;
            }
            snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
            n += (long)r->element[1]->elements;
            freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
        redisFree(ctx);
        if (counts)
            counts[i] = n;
        total += n;
    }
    return total;
}

/* Copies one key from src to dst. Returns 1 when copied, 0 when it vanished meanwhile,
 * -1 on an error (printed). */
static int copy_key(redisContext *src, redisContext *dst, const char *key, size_t len)
{
    redisReply *ttl = redisCommand(src, "PTTL %b", key, len);
    redisReply *d = redisCommand(src, "DUMP %b", key, len);
    int rc = -1;
    if (!ttl || ttl->type != REDIS_REPLY_INTEGER || !d) {
        fprintf(stderr, "rcfixture: copy %.*s: %s\n", (int)len, key, src->errstr);
    } else if (d->type == REDIS_REPLY_NIL) {
        rc = 0; /* expired or deleted between SCAN and DUMP */
    } else if (d->type == REDIS_REPLY_STRING) {
        char ms[32];
        snprintf(ms, sizeof ms, "%lld", ttl->integer > 0 ? ttl->integer : 0LL);
        redisReply *r = redisCommand(dst, "RESTORE %b %s %b REPLACE", key, len, ms, d->str,
                                     d->len);
        if (r && r->type == REDIS_REPLY_STATUS)
            rc = 1;
        else
            fprintf(stderr, "rcfixture: RESTORE %.*s: %s\n", (int)len, key,
                    r && r->type == REDIS_REPLY_ERROR ? r->str : dst->errstr);
        freeReplyObject(r);
    }
    freeReplyObject(ttl);
    freeReplyObject(d);
    return rc;
}

long rcfixture_copy_to(rcfixture_t *c, redisContext *dst, const char *pattern)
{
    if (!c || !dst)
        return -1;
    long copied = 0;
    for (int i = 0; i < c->count; i++) {
        if (!running(c, i) || !rcfixture_is_primary(c, i))
            continue;
        redisContext *src = rcfixture_connect(c, i);
        if (!src)
            return -1;
        char cursor[32] = "0";
        do {
            redisReply *page = redisCommand(src, "SCAN %s MATCH %s COUNT " RCFIXTURE_SCAN_COUNT,
                                            cursor, pattern ? pattern : "*");
            if (!page || page->type != REDIS_REPLY_ARRAY || page->elements != 2) {
                fprintf(stderr, "rcfixture: SCAN on node %d: %s\n", i,
                        page && page->type == REDIS_REPLY_ERROR ? page->str : src->errstr);
                freeReplyObject(page);
                redisFree(src);
                return -1;
            }
            snprintf(cursor, sizeof cursor, "%s", page->element[0]->str);
            for (size_t k = 0; k < page->element[1]->elements; k++) {
                const redisReply *key = page->element[1]->element[k];
                int rc = copy_key(src, dst, key->str, key->len);
                if (rc < 0) {
                    freeReplyObject(page);
                    redisFree(src);
                    return -1;
                }
                copied += rc;
            }
            freeReplyObject(page);
        } while (strcmp(cursor, "0") != 0);
        redisFree(src);
    }
    return copied;
}
