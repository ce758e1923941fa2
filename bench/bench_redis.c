/* bench_redis.c - the benchmark's Redis layout (see bench_redis.h). */
#include "bench_redis.h"

#include "bench_proc.h"
#include "rediscluster.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BENCH_REDIS_POLL_US 20000
#define BENCH_REDIS_CONNECT_TIMEOUT_MS 30000
#define BENCH_REDIS_STOP_GRACE_MS 5000
#define BENCH_REDIS_MAX_ARGS 40

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The value of field in an INFO-style text into out (len bytes); false when absent. */
static bool info_field(const char *text, const char *field, char *out, size_t len)
{
    size_t flen = strlen(field);
    for (const char *at = strstr(text, field); at; at = strstr(at + 1, field)) {
        if ((at == text || at[-1] == '\n') && at[flen] == ':') {
            const char *v = at + flen + 1;
            size_t n = strcspn(v, "\r\n");
            snprintf(out, len, "%.*s", (int)n, v);
            return true;
        }
    }
    return false;
}

/* A connection to the node that answers PING, made within the timeout, or NULL. */
static redisContext *node_connect(const bench_redis_node_t *n)
{
    int64_t until = now_us() + (int64_t)BENCH_REDIS_CONNECT_TIMEOUT_MS * 1000;
    while (now_us() < until && proc_alive(n->pid)) {
        redisContext *c = redisConnect("127.0.0.1", n->port);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            if (ok)
                return c;
        }
        redisFree(c);
        usleep(BENCH_REDIS_POLL_US);
    }
    return NULL;
}

/* Field of INFO section on node n into out; false when it cannot be read. */
static bool node_info(const bench_redis_node_t *n, const char *section, const char *field,
                      char *out, size_t len)
{
    redisReply *r = redisCommand(n->ctx, "INFO %s", section);
    bool ok = r && r->type == REDIS_REPLY_STRING && info_field(r->str, field, out, len);
    freeReplyObject(r);
    return ok;
}

/* True when node n is ready: a primary, or a replica in sync with its primary; on a
 * cluster also cluster_state:ok and every node known. Sets n->primary. */
static bool node_ready(const bench_redis_t *r, bench_redis_node_t *n)
{
    char v[64];
    if (!node_info(n, "replication", "role", v, sizeof v))
        return false;
    n->primary = strcmp(v, "master") == 0;
    if (!n->primary &&
        !(node_info(n, "replication", "master_link_status", v, sizeof v) && strcmp(v, "up") == 0 &&
          node_info(n, "replication", "master_sync_in_progress", v, sizeof v) && strcmp(v, "0") == 0))
        return false;
    if (r->cluster == 0)
        return true;
    redisReply *c = redisCommand(n->ctx, "CLUSTER INFO");
    char state[16] = "", known[16] = "";
    bool ok = c && c->type == REDIS_REPLY_STRING &&
              info_field(c->str, "cluster_state", state, sizeof state) && strcmp(state, "ok") == 0 &&
              info_field(c->str, "cluster_known_nodes", known, sizeof known) &&
              atoi(known) == r->count;
    freeReplyObject(c);
    return ok;
}

/* Starts node i: port chosen, data in dir/redis-I, log in logdir; replica_of > 0 makes
 * it a replica of that port (no cluster). Returns 0 or -1. */
static int node_start(bench_redis_t *r, int i, int replica_of, const char *dir,
                      const char *logdir, char *err, size_t errlen)
{
    bench_redis_node_t *n = &r->nodes[i];
    char port[16], bus[16], of[16], ndir[PATH_MAX], logp[PATH_MAX], timeout[16];
    n->port = proc_free_port();
    snprintf(port, sizeof port, "%d", n->port);
    snprintf(ndir, sizeof ndir, "%s/redis-%d", dir, i);
    snprintf(logp, sizeof logp, "%s/redis-%d.log", logdir, i);
    mkdir(ndir, 0755);
    char *argv[BENCH_REDIS_MAX_ARGS];
    int a = 0;
    char *base[] = {"/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1", "--dir",
                    ndir, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                    "--daemonize", "no", "--shutdown-timeout", "0"};
    for (size_t k = 0; k < sizeof base / sizeof *base; k++)
        argv[a++] = base[k];
    if (replica_of > 0) {
        snprintf(of, sizeof of, "%d", replica_of);
        char *more[] = {"--replicaof", "127.0.0.1", of};
        for (size_t k = 0; k < sizeof more / sizeof *more; k++)
            argv[a++] = more[k];
    }
    if (r->cluster > 0) {
        /* A cluster bus port of its own, not port + 10000 (taken, or past 65535). */
        int busport;
        do
            busport = proc_free_port();
        while (busport == n->port);
        snprintf(bus, sizeof bus, "%d", busport);
        snprintf(timeout, sizeof timeout, "%d", BENCH_REDIS_NODE_TIMEOUT_MS);
        char *more[] = {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-port", bus, "--cluster-node-timeout", timeout};
        for (size_t k = 0; k < sizeof more / sizeof *more; k++)
            argv[a++] = more[k];
    }
    argv[a] = NULL;
    n->pid = proc_spawn(argv, logp);
    if (n->pid < 0)
        return fail(err, errlen, "cannot start redis-server");
    if (!(n->ctx = node_connect(n)))
        return fail(err, errlen, "redis-server on port %d did not answer; see %s", n->port, logp);
    size_t len = strlen(r->seeds);
    snprintf(r->seeds + len, sizeof r->seeds - len, "%s127.0.0.1:%d", len ? "," : "", n->port);
    return 0;
}

/* redis-cli --cluster create over every node, the first r->cluster as primaries (as
 * redis-cli picks them on one host). Returns 0 or -1. */
static int cluster_create(bench_redis_t *r, const char *logdir, char *err, size_t errlen)
{
    char addr[BENCH_REDIS_MAX_NODES][32], logp[PATH_MAX];
    char *argv[BENCH_REDIS_MAX_NODES + 8];
    int a = 0;
    argv[a++] = "/usr/bin/redis-cli";
    argv[a++] = "--cluster";
    argv[a++] = "create";
    for (int i = 0; i < r->count; i++) {
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", r->nodes[i].port);
        argv[a++] = addr[i];
    }
    argv[a++] = "--cluster-replicas";
    argv[a++] = r->replicas ? "1" : "0";
    argv[a++] = "--cluster-yes";
    argv[a] = NULL;
    snprintf(logp, sizeof logp, "%s/cluster-create.log", logdir);
    pid_t pid = proc_spawn(argv, logp);
    if (pid < 0)
        return fail(err, errlen, "cannot run redis-cli");
    int rc = proc_wait(pid, BENCH_REDIS_READY_TIMEOUT_MS);
    if (rc != 0)
        return fail(err, errlen, "redis-cli --cluster create %s; see %s",
                    rc < 0 ? "did not end in time" : "failed", logp);
    return 0;
}

const char *bench_redis_layout_name(char *out, size_t size, int cluster, bool replicas)
{
    if (cluster > 0)
        snprintf(out, size, "cluster %d%s", cluster, replicas ? " + replicas" : "");
    else
        snprintf(out, size, "single%s", replicas ? " + replica" : "");
    return out;
}

int bench_redis_start(bench_redis_t *r, int cluster, bool replicas, const char *dir,
                      const char *logdir, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (cluster != 0 && (cluster < 3 || cluster > BENCH_REDIS_MAX_PRIMARIES)) {
        fail(err, errlen, "a cluster has 3 to %d primaries", BENCH_REDIS_MAX_PRIMARIES);
        return -1;
    }
    r->cluster = cluster;
    r->replicas = replicas;
    int primaries = cluster > 0 ? cluster : 1;
    bench_redis_layout_name(r->layout, sizeof r->layout, cluster, replicas);
    mkdir(dir, 0755);
    int want = primaries * (replicas ? 2 : 1);
    for (int i = 0; i < want; i++) {
        r->count = i + 1;
        int of = cluster == 0 && i > 0 ? r->nodes[0].port : 0;
        if (node_start(r, i, of, dir, logdir, err, errlen) < 0)
            goto err;
    }
    if (cluster > 0 && cluster_create(r, logdir, err, errlen) < 0)
        goto err;
    int64_t until = now_us() + (int64_t)BENCH_REDIS_READY_TIMEOUT_MS * 1000;
    for (;;) {
        int ready = 0, primary = 0;
        for (int i = 0; i < r->count; i++) {
            ready += node_ready(r, &r->nodes[i]);
            primary += r->nodes[i].primary;
        }
        if (ready == r->count && primary == primaries)
            break;
        if (now_us() > until) {
            fail(err, errlen, "Redis (%s) not ready within %d ms: %d of %d nodes ready, %d "
                 "primaries; logs in %s", r->layout, BENCH_REDIS_READY_TIMEOUT_MS, ready,
                 r->count, primary, logdir);
            goto err;
        }
        usleep(BENCH_REDIS_POLL_US);
    }
    return 0;
err:
    bench_redis_stop(r);
    return -1;
}

void bench_redis_stop(bench_redis_t *r)
{
    for (int i = 0; i < r->count; i++) {
        redisFree(r->nodes[i].ctx);
        proc_stop(r->nodes[i].pid, BENCH_REDIS_STOP_GRACE_MS);
    }
    memset(r, 0, sizeof *r);
}

int bench_redis_partition_port(bench_redis_t *r, int32_t partition, char *err, size_t errlen)
{
    if (r->cluster == 0)
        return r->nodes[0].port;
    redisconn_config_t cfg = {.cluster = true, .cluster_nodes = r->seeds};
    rcluster_t *c = rcluster_new(&cfg);
    if (!c)
        return fail(err, errlen, "out of memory");
    char tag[24], host[REDISCONN_ADDRESS_MAX];
    int len = snprintf(tag, sizeof tag, "{p%d}", (int)partition); /* as rkeys.h's keys */
    int port = -1;
    const char *address = NULL;
    if (rcluster_ensure_map(c) < 0)
        fail(err, errlen, "redis cluster: %s", rcluster_last_error(c));
    else if (!(address = rcluster_address_for_slot(c, rcluster_key_slot(tag, (size_t)len))))
        fail(err, errlen, "redis cluster: no primary serves partition %d", (int)partition);
    else if (redisconn_parse_address(address, host, sizeof host, &port, 0) < 0)
        port = fail(err, errlen, "redis cluster: \"%s\" is not HOST:PORT", address);
    rcluster_free(c);
    return port;
}
