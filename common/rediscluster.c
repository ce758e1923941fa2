/* rediscluster.c - Redis Cluster routing over hiredis 0.14: slots, the slot map, one
 * connection per node and the redirections (see rediscluster.h). */
#include "rediscluster.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct rcluster_node {
    char address[REDISCONN_ADDRESS_MAX]; /* "host:port" */
    redisconn_t *conn;                   /* made on first use */
    bool seed;                           /* from the configuration */
    bool primary;                        /* serves slots in the current map */
} rcluster_node_t;

struct rcluster {
    redisconn_config_t base;             /* AUTH and timeouts; strings owned below */
    char *user, *password;
    rcluster_node_t nodes[RCLUSTER_MAX_NODES];
    int nnodes;
    uint8_t slot_node[RCLUSTER_SLOTS];   /* node index + 1 of each slot; 0: none */
    bool have_map, stale;
    int uncovered;                       /* a slot no node serves in the map, or -1 */
    struct timespec last_try;            /* of the last map read that failed */
    unsigned long map_reads;
    char *config_error;                  /* a bad seed list: every use fails with it */
    bool refused;                        /* the last failure: rcluster_refused */
    char error[REDISCONN_ERROR_MAX];
};

static void set_error(rcluster_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(rcluster_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->refused = false; /* the callers that know better say so after */
}

const char *rcluster_last_error(const rcluster_t *c)
{
    return c->error;
}

bool rcluster_refused(const rcluster_t *c)
{
    return c->refused;
}

/* --- slots -------------------------------------------------------------------------- */

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as the cluster spec says. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int rcluster_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close && close > key + from)
            return crc16(key + from, (size_t)(close - (key + from))) & (RCLUSTER_SLOTS - 1);
    }
    return crc16(key, len) & (RCLUSTER_SLOTS - 1);
}

/* --- nodes -------------------------------------------------------------------------- */

/* The node at address, added when new. Returns its index, or -1 (reason kept). */
static int node_index(rcluster_t *c, const char *address)
{
    for (int i = 0; i < c->nnodes; i++)
        if (strcmp(c->nodes[i].address, address) == 0)
            return i;
    if (c->nnodes == RCLUSTER_MAX_NODES) {
        set_error(c, "redis cluster: more than %d nodes", RCLUSTER_MAX_NODES);
        return -1;
    }
    rcluster_node_t *n = &c->nodes[c->nnodes];
    memset(n, 0, sizeof *n);
    snprintf(n->address, sizeof n->address, "%s", address);
    return c->nnodes++;
}

/* The node's connection, made when needed. NULL when out of memory (reason kept). */
static redisconn_t *node_conn(rcluster_t *c, rcluster_node_t *n)
{
    if (n->conn)
        return n->conn;
    char host[REDISCONN_ADDRESS_MAX];
    int port;
    if (redisconn_parse_address(n->address, host, sizeof host, &port, REDISCONN_DEFAULT_PORT) < 0) {
        set_error(c, "redis cluster: \"%s\" is not HOST:PORT", n->address);
        return NULL;
    }
    redisconn_config_t cfg = c->base;
    cfg.host = host;
    cfg.port = port;
    if (!(n->conn = redisconn_new(&cfg)))
        set_error(c, "redis cluster: out of memory");
    return n->conn;
}

rcluster_t *rcluster_new(const redisconn_config_t *cfg)
{
    rcluster_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->user = cfg->user ? strdup(cfg->user) : NULL;
    c->password = cfg->password ? strdup(cfg->password) : NULL;
    if ((cfg->user && !c->user) || (cfg->password && !c->password)) {
        rcluster_free(c);
        return NULL;
    }
    c->base = (redisconn_config_t){.user = c->user,
                                   .password = c->password,
                                   .connect_timeout_ms = cfg->connect_timeout_ms,
                                   .command_timeout_ms = cfg->command_timeout_ms};
    char why[REDISCONN_ERROR_MAX] = "";
    if (cfg->db != 0)
        snprintf(why, sizeof why, "redis cluster: a cluster has only database 0 (redis_db is %d)",
                 cfg->db);
    else if (cfg->sentinels && *cfg->sentinels)
        snprintf(why, sizeof why, "redis cluster: Sentinels and a cluster cannot be used together "
                                  "(a cluster fails over by itself)");
    const char *list = cfg->cluster_nodes && *cfg->cluster_nodes ? cfg->cluster_nodes : NULL;
    char item[REDISCONN_ADDRESS_MAX], host[REDISCONN_ADDRESS_MAX];
    int port;
    if (!why[0] && !list) {
        snprintf(item, sizeof item, "%s:%d", cfg->host ? cfg->host : REDISCONN_DEFAULT_HOST,
                 cfg->port > 0 ? cfg->port : REDISCONN_DEFAULT_PORT);
        int i = node_index(c, item);
        if (i >= 0)
            c->nodes[i].seed = true;
    }
    for (const char *at = list; !why[0] && at && *at;) {
        int got = redisconn_list_item(&at, item, sizeof item);
        if (got <= 0 ||
            redisconn_parse_address(item, host, sizeof host, &port, REDISCONN_DEFAULT_PORT) < 0) {
            snprintf(why, sizeof why, "redis_cluster_nodes: \"%s\" is not HOST:PORT[,HOST:PORT...]",
                     list);
            break;
        }
        char address[REDISCONN_ADDRESS_MAX + 16];
        snprintf(address, sizeof address, "%s:%d", host, port);
        int i = strlen(address) < REDISCONN_ADDRESS_MAX ? node_index(c, address) : -1;
        if (i < 0) {
            snprintf(why, sizeof why, "redis_cluster_nodes: more than %d nodes", RCLUSTER_MAX_NODES);
            break;
        }
        c->nodes[i].seed = true;
    }
    if (why[0] && !(c->config_error = strdup(why))) {
        rcluster_free(c);
        return NULL;
    }
    c->stale = true;
    return c;
}

void rcluster_free(rcluster_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nnodes; i++)
        redisconn_free(c->nodes[i].conn);
    free(c->user);
    free(c->password);
    free(c->config_error);
    free(c);
}

/* --- the slot map ------------------------------------------------------------------- */

/* Reads CLUSTER SLOTS from node n into slots (node index + 1 per slot). Returns 0, or -1
 * (reason kept). */
static int read_slots(rcluster_t *c, rcluster_node_t *n, uint8_t *slots)
{
    redisconn_t *conn = node_conn(c, n);
    if (!conn)
        return -1;
    redisReply *r = redisconn_command(conn, "CLUSTER SLOTS");
    if (!r) {
        set_error(c, "redis cluster %s: %s", n->address, redisconn_last_error(conn));
        c->refused = redisconn_refused(conn);
        return -1;
    }
    char asked_host[REDISCONN_ADDRESS_MAX];
    int asked_port;
    if (redisconn_parse_address(n->address, asked_host, sizeof asked_host, &asked_port, 0) < 0)
        asked_host[0] = '\0';
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY) {
        set_error(c, "redis cluster %s: CLUSTER SLOTS answered no list", n->address);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
            set_error(c, "redis cluster %s: CLUSTER SLOTS entry %zu is not [from, to, [host, port]]",
                      n->address, i);
            rc = -1;
            break;
        }
        long long from = e->element[0]->integer, to = e->element[1]->integer;
        const char *host = e->element[2]->element[0]->str;
        /* An empty or "?" host: the node's address is unknown to the cluster; it is the one
         * asked's host (Redis 7, cluster-preferred-endpoint-type). */
        char address[REDISCONN_ADDRESS_MAX + 32];
        snprintf(address, sizeof address, "%s:%lld",
                 (!*host || strcmp(host, "?") == 0) ? asked_host : host,
                 e->element[2]->element[1]->integer);
        int idx = from >= 0 && to < RCLUSTER_SLOTS && from <= to &&
                          strlen(address) < REDISCONN_ADDRESS_MAX
                      ? node_index(c, address)
                      : -1;
        if (idx < 0 || idx >= 255) {
            if (idx >= 255)
                set_error(c, "redis cluster: more than 254 nodes");
            else if (!(from >= 0 && to < RCLUSTER_SLOTS && from <= to))
                set_error(c, "redis cluster %s: CLUSTER SLOTS range %lld-%lld", n->address, from, to);
            rc = -1;
            break;
        }
        for (long long s = from; s <= to; s++)
            slots[s] = (uint8_t)(idx + 1);
    }
    freeReplyObject(r);
    return rc;
}

int rcluster_refresh(rcluster_t *c)
{
    if (c->config_error) {
        set_error(c, "%s", c->config_error);
        c->refused = true;
        return -1;
    }
    uint8_t slots[RCLUSTER_SLOTS];
    char first_error[REDISCONN_ERROR_MAX] = "";
    bool refused = false;
    /* The primaries of the map first (they know the newest map), then every other node. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < c->nnodes; i++) {
            if (c->nodes[i].primary != (pass == 0))
                continue;
            memset(slots, 0, sizeof slots);
            if (read_slots(c, &c->nodes[i], slots) < 0) {
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "%s", c->error);
                refused = refused || c->refused;
                continue;
            }
            memcpy(c->slot_node, slots, sizeof slots);
            for (int k = 0; k < c->nnodes; k++)
                c->nodes[k].primary = false;
            for (int s = 0; s < RCLUSTER_SLOTS; s++)
                if (slots[s])
                    c->nodes[slots[s] - 1].primary = true;
            /* Nodes no longer primaries keep no connection open. */
            for (int k = 0; k < c->nnodes; k++)
                if (!c->nodes[k].primary && c->nodes[k].conn)
                    redisconn_drop(c->nodes[k].conn);
            c->uncovered = -1;
            for (int k = 0; k < RCLUSTER_SLOTS && c->uncovered < 0; k++)
                if (!slots[k])
                    c->uncovered = k;
            c->have_map = true;
            c->stale = false;
            c->map_reads++;
            return 0;
        }
    }
    set_error(c, "redis cluster: no node answered CLUSTER SLOTS (%s)",
              first_error[0] ? first_error : "no node known");
    c->refused = refused;
    return -1;
}

void rcluster_mark_stale(rcluster_t *c)
{
    c->stale = true;
}

unsigned long rcluster_map_reads(const rcluster_t *c)
{
    return c->map_reads;
}

static long ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

int rcluster_ensure_map(rcluster_t *c)
{
    if (c->have_map && !c->stale)
        goto check;
    if (c->last_try.tv_sec && ms_since(&c->last_try) < RCLUSTER_RETRY_PAUSE_MS && c->have_map)
        goto check; /* read again shortly: keep the old map meanwhile */
    if (rcluster_refresh(c) < 0) {
        clock_gettime(CLOCK_MONOTONIC, &c->last_try);
        return -1;
    }
    c->last_try = (struct timespec){0};
check:
    if (c->uncovered >= 0) {
        set_error(c, "redis cluster: no node serves slot %d (cluster_state fail?)", c->uncovered);
        c->stale = true;
        return -1;
    }
    return 0;
}

redisconn_t *rcluster_conn_for_slot(rcluster_t *c, int slot)
{
    if (slot < 0 || slot >= RCLUSTER_SLOTS || !c->slot_node[slot]) {
        set_error(c, "redis cluster: no node known for slot %d", slot);
        return NULL;
    }
    return node_conn(c, &c->nodes[c->slot_node[slot] - 1]);
}

redisconn_t *rcluster_conn_for_key(rcluster_t *c, const char *key)
{
    return rcluster_conn_for_slot(c, rcluster_key_slot(key, strlen(key)));
}

const char *rcluster_address_for_slot(const rcluster_t *c, int slot)
{
    if (slot < 0 || slot >= RCLUSTER_SLOTS || !c->slot_node[slot])
        return NULL;
    return c->nodes[c->slot_node[slot] - 1].address;
}

size_t rcluster_primaries(rcluster_t *c, redisconn_t **out, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < c->nnodes; i++) {
        if (!c->nodes[i].primary)
            continue;
        redisconn_t *conn = node_conn(c, &c->nodes[i]);
        if (conn && n < max)
            out[n] = conn;
        if (conn)
            n++;
    }
    return n;
}

bool rcluster_is_primary(const rcluster_t *c, const char *address)
{
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].primary && strcmp(c->nodes[i].address, address) == 0)
            return true;
    return false;
}

redisconn_t *rcluster_conn_for_address(rcluster_t *c, const char *address)
{
    int i = node_index(c, address);
    return i < 0 ? NULL : node_conn(c, &c->nodes[i]);
}

/* --- redirections ------------------------------------------------------------------- */

bool rcluster_parse_redirect(const redisReply *r, bool *ask, int *slot, char *address,
                             size_t len)
{
    if (!r || r->type != REDIS_REPLY_ERROR || !r->str)
        return false;
    bool is_ask = strncmp(r->str, "ASK ", 4) == 0;
    if (!is_ask && strncmp(r->str, "MOVED ", 6) != 0)
        return false;
    const char *p = r->str + (is_ask ? 4 : 6);
    char *end;
    long s = strtol(p, &end, 10);
    if (end == p || *end != ' ' || s < 0 || s >= RCLUSTER_SLOTS || !end[1])
        return false;
    const char *addr = end + 1;
    /* "MOVED 3999 :6381": an unknown host means the host of the node that answered;
     * callers resolve that (the address then starts with ':'). */
    if (strlen(addr) >= len)
        return false;
    memcpy(address, addr, strlen(addr) + 1);
    *ask = is_ask;
    *slot = (int)s;
    return true;
}

bool rcluster_reply_is_redirect(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && r->str &&
           (strncmp(r->str, "MOVED ", 6) == 0 || strncmp(r->str, "ASK ", 4) == 0 ||
            strncmp(r->str, "TRYAGAIN", 8) == 0 || strncmp(r->str, "CLUSTERDOWN", 11) == 0);
}

static void pause_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* The address a redirection names, with the host of the node that answered when the
 * redirection left it out. */
static void redirect_address(const char *named, const redisconn_t *from, char *out, size_t len)
{
    if (named[0] != ':') {
        snprintf(out, len, "%s", named);
        return;
    }
    char host[REDISCONN_ADDRESS_MAX];
    int port;
    if (redisconn_parse_address(redisconn_address(from), host, sizeof host, &port, 0) < 0)
        snprintf(host, sizeof host, "%s", REDISCONN_DEFAULT_HOST);
    if ((size_t)snprintf(out, len, "%s%s", host, named) >= len)
        out[0] = '\0';
}

/* Runs one command already in the protocol (cmd, len bytes) for slot, following the
 * cluster. A command is re-sent only when it certainly did not run: after a refused
 * connection or a redirection; an I/O error while waiting for the reply returns NULL. */
static redisReply *run_formatted(rcluster_t *c, int slot, const char *cmd, size_t len)
{
    char ask_to[REDISCONN_ADDRESS_MAX] = "";
    int refused = 0;
    for (int attempt = 0; attempt < RCLUSTER_MAX_REDIRECTS; attempt++) {
        redisconn_t *conn;
        if (ask_to[0]) {
            conn = rcluster_conn_for_address(c, ask_to);
        } else {
            if (rcluster_ensure_map(c) < 0) {
                pause_ms(RCLUSTER_RETRY_PAUSE_MS);
                continue;
            }
            conn = rcluster_conn_for_slot(c, slot);
        }
        if (!conn)
            return NULL;
        if (redisconn_connect(conn) < 0) {
            /* A node down: the map may name its successor already; else give up soon,
             * the caller retries later (a failover takes the cluster's node timeout). */
            set_error(c, "%s", redisconn_last_error(conn));
            c->refused = redisconn_refused(conn);
            rcluster_mark_stale(c);
            ask_to[0] = '\0';
            if (++refused == RCLUSTER_MAX_REFUSED)
                return NULL;
            pause_ms(RCLUSTER_RETRY_PAUSE_MS);
            continue;
        }
        redisContext *ctx = redisconn_context(conn);
        bool asking = ask_to[0] != '\0';
        ask_to[0] = '\0';
        if ((asking && redisAppendCommand(ctx, "ASKING") != REDIS_OK) ||
            redisAppendFormattedCommand(ctx, cmd, len) != REDIS_OK) {
            set_error(c, "redis cluster: cannot queue a command (out of memory)");
            redisconn_drop(conn);
            return NULL;
        }
        redisReply *r = NULL;
        if (asking) {
            if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
                goto lost;
            freeReplyObject(r);
            r = NULL;
        }
        if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r)
            goto lost;
        bool ask;
        int moved_slot;
        char named[REDISCONN_ADDRESS_MAX];
        if (rcluster_parse_redirect(r, &ask, &moved_slot, named, sizeof named)) {
            set_error(c, "redis cluster %s: %s", redisconn_address(conn), r->str);
            if (ask)
                redirect_address(named, conn, ask_to, sizeof ask_to);
            else
                rcluster_mark_stale(c);
            freeReplyObject(r);
            continue;
        }
        if (rcluster_reply_is_redirect(r) || redisconn_reply_readonly(r)) {
            /* TRYAGAIN (a migration), CLUSTERDOWN or READONLY (a failover): wait, re-read. */
            set_error(c, "redis cluster %s: %s", redisconn_address(conn), r->str);
            if (redisconn_reply_readonly(r))
                redisconn_drop(conn);
            if (strncmp(r->str, "TRYAGAIN", 8) != 0)
                rcluster_mark_stale(c);
            freeReplyObject(r);
            pause_ms(RCLUSTER_RETRY_PAUSE_MS);
            continue;
        }
        return r;
lost:
        set_error(c, "redis cluster %s: %s", redisconn_address(conn), ctx->errstr);
        redisconn_lost(conn);
        rcluster_mark_stale(c);
        return NULL;
    }
    char last[REDISCONN_ERROR_MAX];
    snprintf(last, sizeof last, "%s", c->error);
    set_error(c, "redis cluster: slot %d still unavailable after %d tries (the last: %s)", slot,
              RCLUSTER_MAX_REDIRECTS, last);
    return NULL;
}

redisReply *rcluster_command_argv(rcluster_t *c, const char *key, int argc, const char **argv,
                                  const size_t *lens)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
        set_error(c, "redis cluster: cannot format a command (out of memory)");
        return NULL;
    }
    redisReply *r = run_formatted(c, rcluster_key_slot(key, strlen(key)), cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

redisReply *rcluster_vcommand(rcluster_t *c, const char *key, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0) {
        set_error(c, "redis cluster: cannot format a command");
        return NULL;
    }
    redisReply *r = run_formatted(c, rcluster_key_slot(key, strlen(key)), cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

redisReply *rcluster_command(rcluster_t *c, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = rcluster_vcommand(c, key, fmt, ap);
    va_end(ap);
    return r;
}

/* --- pipelines ---------------------------------------------------------------------- */

int rcluster_pipeline(rcluster_t *c, const rcluster_cmd_t *cmds, size_t n, redisReply **replies)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (n == 0)
        return 0;
    char **text = calloc(n, sizeof *text);
    int *len = calloc(n, sizeof *len), *slot = calloc(n, sizeof *slot);
    redisconn_t **conn = calloc(n, sizeof *conn);
    bool *sent = calloc(n, sizeof *sent);
    if (!text || !len || !slot || !conn || !sent) {
        set_error(c, "redis cluster: out of memory");
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((len[i] = redisFormatCommandArgv(&text[i], cmds[i].argc, cmds[i].argv, cmds[i].lens)) < 0) {
            set_error(c, "redis cluster: cannot format a command (out of memory)");
            rc = -1;
            goto out;
        }
        slot[i] = rcluster_key_slot(cmds[i].key, strlen(cmds[i].key));
    }
    /* One pipeline per node: append everything, then read each node's replies in order. */
    if (rcluster_ensure_map(c) == 0) {
        for (size_t i = 0; i < n; i++) {
            redisconn_t *k = rcluster_conn_for_slot(c, slot[i]);
            if (!k || redisconn_connect(k) < 0)
                continue; /* run alone below */
            if (redisAppendFormattedCommand(redisconn_context(k), text[i], (size_t)len[i]) != REDIS_OK)
                continue;
            conn[i] = k;
            sent[i] = true;
        }
        for (size_t i = 0; i < n; i++) {
            if (!sent[i])
                continue;
            redisContext *ctx = redisconn_context(conn[i]);
            redisReply *r = NULL;
            if (!ctx || redisGetReply(ctx, (void **)&r) != REDIS_OK || !r) {
                /* That node's later replies are lost with the connection. */
                if (ctx) {
                    set_error(c, "redis cluster %s: %s", redisconn_address(conn[i]), ctx->errstr);
                    redisconn_lost(conn[i]);
                }
                rcluster_mark_stale(c);
                rc = -1;
                continue;
            }
            if (rcluster_reply_is_redirect(r) || redisconn_reply_readonly(r)) {
                if (redisconn_reply_readonly(r))
                    rcluster_mark_stale(c);
                freeReplyObject(r);
                sent[i] = false; /* run alone below */
                continue;
            }
            replies[i] = r;
        }
    }
    /* What was redirected, or could not be sent, runs alone, following the cluster. */
    for (size_t i = 0; i < n; i++) {
        if (replies[i] || (sent[i] && rc < 0))
            continue;
        if (!(replies[i] = run_formatted(c, slot[i], text[i], (size_t)len[i])))
            rc = -1;
    }
out:
    if (text)
        for (size_t i = 0; i < n; i++)
            if (text[i])
                redisFreeCommand(text[i]);
    free(text);
    free(len);
    free(slot);
    free(conn);
    free(sent);
    return rc;
}
