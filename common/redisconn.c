/* redisconn.c - one blocking Redis connection with AUTH, SELECT, timeouts, the last error
 * and, when configured, the primary found through Redis Sentinel (see redisconn.h). */
#include "redisconn.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

typedef struct redisconn_sentinel {
    char *host;
    int port;
} redisconn_sentinel_t;

struct redisconn {
    redisContext *ctx;         /* NULL when not connected */
    char *host, *user, *password;
    int port, db;
    int connect_timeout_ms, command_timeout_ms;
    redisconn_sentinel_t sentinels[REDISCONN_MAX_SENTINELS]; /* the last that answered first */
    int nsentinels;
    char *master_name, *sentinel_user, *sentinel_password;
    char *config_error;        /* a bad Sentinel setting: every connect fails with it */
    char address[REDISCONN_ADDRESS_MAX]; /* of the server connected to, or last tried */
    redisContext *watch;       /* with Sentinels: subscribed to +switch-master, or NULL */
    struct timespec watched;   /* when the watch was last read */
    unsigned long switches;    /* +switch-master announcements that moved us */
    bool refused;              /* the last connect was refused for good (redisconn_refused) */
    char error[REDISCONN_ERROR_MAX];
};

#define REDISCONN_HOST_MAX 256 /* a host name the Sentinels answer, NUL included */

static struct timeval timeval_of(int ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

void redisconn_set_error(redisconn_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

const char *redisconn_last_error(const redisconn_t *c)
{
    return c->error;
}

bool redisconn_refused(const redisconn_t *c)
{
    return c->refused;
}

const char *redisconn_address(const redisconn_t *c)
{
    return c->address;
}

static char *strdup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

int redisconn_list_item(const char **at, char *item, size_t size)
{
    const char *p = *at;
    if (!*p)
        return 0;
    size_t len = strcspn(p, ",");
    *at = p[len] == ',' ? p + len + 1 : p + len;
    while (len && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= size)
        return -1;
    memcpy(item, p, len);
    item[len] = '\0';
    return 1;
}

int redisconn_parse_address(const char *item, char *host, size_t hostlen, int *port,
                            int default_port)
{
    char buf[REDISCONN_ADDRESS_MAX];
    if (snprintf(buf, sizeof buf, "%s", item) >= (int)sizeof buf)
        return -1;
    char *h = buf, *p = NULL;
    if (*h == '[') {
        char *close = strchr(h, ']');
        if (!close || (close[1] && close[1] != ':'))
            return -1;
        *close = '\0';
        h++;
        p = close[1] ? close + 2 : NULL;
    } else if ((p = strrchr(h, ':'))) {
        *p++ = '\0';
    }
    long n = default_port;
    if (p) {
        char *e;
        n = strtol(p, &e, 10);
        if (!*p || *e || n < 1 || n > 65535)
            return -1;
    }
    if (!*h || strlen(h) >= hostlen)
        return -1;
    memcpy(host, h, strlen(h) + 1);
    *port = (int)n;
    return 0;
}

/* Parses "host:port,host:port" ("[v6]:port" too; the port may be left out) into
 * c->sentinels. Returns 0, -1 with the reason in why, or -2 when out of memory. */
static int parse_sentinels(redisconn_t *c, const char *list, char *why, size_t n)
{
    const char *at = list;
    char item[REDISCONN_ADDRESS_MAX];
    int got;
    while ((got = redisconn_list_item(&at, item, sizeof item)) != 0) {
        if (got < 0) {
            snprintf(why, n, "redis_sentinels: an empty or too long entry in \"%s\"", list);
            return -1;
        }
        if (c->nsentinels == REDISCONN_MAX_SENTINELS) {
            snprintf(why, n, "redis_sentinels: more than %d entries", REDISCONN_MAX_SENTINELS);
            return -1;
        }
        char host[REDISCONN_ADDRESS_MAX];
        int p;
        if (redisconn_parse_address(item, host, sizeof host, &p, REDISCONN_DEFAULT_SENTINEL_PORT) < 0)
            goto bad;
        redisconn_sentinel_t *s = &c->sentinels[c->nsentinels];
        if (!(s->host = strdup(host)))
            return -2;
        s->port = p;
        c->nsentinels++;
        continue;
bad:
        snprintf(why, n, "redis_sentinels: \"%s\" is not HOST:PORT", item);
        return -1;
    }
    if (c->nsentinels == 0) {
        snprintf(why, n, "redis_sentinels: no Sentinel in \"%s\"", list);
        return -1;
    }
    if (!c->master_name) {
        snprintf(why, n, "redis_master_name is required with redis_sentinels");
        return -1;
    }
    return 0;
}

redisconn_t *redisconn_new(const redisconn_config_t *cfg)
{
    redisconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->host = strdup(cfg->host ? cfg->host : REDISCONN_DEFAULT_HOST);
    c->user = cfg->user ? strdup(cfg->user) : NULL;
    c->password = cfg->password ? strdup(cfg->password) : NULL;
    c->master_name = strdup_or_null(cfg->master_name);
    c->sentinel_user = strdup_or_null(cfg->sentinel_user);
    c->sentinel_password = strdup_or_null(cfg->sentinel_password);
    if (!c->host || (cfg->user && !c->user) || (cfg->password && !c->password) ||
        (cfg->master_name && *cfg->master_name && !c->master_name) ||
        (cfg->sentinel_user && *cfg->sentinel_user && !c->sentinel_user) ||
        (cfg->sentinel_password && *cfg->sentinel_password && !c->sentinel_password))
        goto err;
    c->port = cfg->port > 0 ? cfg->port : REDISCONN_DEFAULT_PORT;
    c->db = cfg->db;
    c->connect_timeout_ms =
        cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : REDISCONN_DEFAULT_TIMEOUT_MS;
    c->command_timeout_ms =
        cfg->command_timeout_ms > 0 ? cfg->command_timeout_ms : REDISCONN_DEFAULT_TIMEOUT_MS;
    snprintf(c->address, sizeof c->address, "%s:%d", c->host, c->port);
    if (cfg->sentinels && *cfg->sentinels) {
        char why[REDISCONN_ERROR_MAX];
        int rc = parse_sentinels(c, cfg->sentinels, why, sizeof why);
        if (rc == -2 || (rc == -1 && !(c->config_error = strdup(why))))
            goto err;
    }
    return c;
err:
    redisconn_free(c);
    return NULL;
}

void redisconn_free(redisconn_t *c)
{
    if (!c)
        return;
    redisFree(c->ctx);
    free(c->host);
    free(c->user);
    free(c->password);
    for (int i = 0; i < c->nsentinels; i++)
        free(c->sentinels[i].host);
    free(c->master_name);
    free(c->sentinel_user);
    free(c->sentinel_password);
    free(c->config_error);
    redisFree(c->watch);
    free(c);
}

bool redisconn_connected(const redisconn_t *c)
{
    return c->ctx && !c->ctx->err;
}

redisContext *redisconn_context(const redisconn_t *c)
{
    return c->ctx;
}

void redisconn_drop(redisconn_t *c)
{
    redisFree(c->ctx);
    c->ctx = NULL;
}

void redisconn_lost(redisconn_t *c)
{
    redisconn_set_error(c, "redis: %s", c->ctx ? c->ctx->errstr : "not connected");
    redisconn_drop(c);
}

bool redisconn_reply_readonly(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && r->str &&
           (strncmp(r->str, "READONLY", 8) == 0 || strstr(r->str, "-READONLY") ||
            strstr(r->str, "READONLY You can't write"));
}

/* Runs one set-up command (AUTH, SELECT, ROLE, SENTINEL) on a connection being made.
 * Returns the reply (caller frees), or NULL with the reason kept (an error reply too). */
static redisReply *setup_command(redisconn_t *c, redisContext *ctx, const char *where,
                                 int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    if (r && r->type != REDIS_REPLY_ERROR)
        return r;
    /* A server that answers AUTH or SELECT with an error refuses these settings (a wrong
     * password, a database it does not have): trying again will not mend that. */
    if (r && (strcmp(argv[0], "AUTH") == 0 || strcmp(argv[0], "SELECT") == 0))
        c->refused = true;
    redisconn_set_error(c, "redis %s: %s: %s", where, argv[0], r ? r->str : ctx->errstr);
    freeReplyObject(r);
    return NULL;
}

/* A new connection to host:port with the command timeout, AUTH (user may be NULL,
 * password NULL: none) and SELECT db (when > 0). Returns it, or NULL (reason kept). */
static redisContext *open_server(redisconn_t *c, const char *host, int port, const char *user,
                                 const char *password, int db)
{
    char where[REDISCONN_ADDRESS_MAX];
    snprintf(where, sizeof where, "%s:%d", host, port);
    redisContext *ctx = redisConnectWithTimeout(host, port, timeval_of(c->connect_timeout_ms));
    if (!ctx || ctx->err) {
        redisconn_set_error(c, "cannot connect to redis %s: %s", where,
                            ctx ? ctx->errstr : "out of memory");
        redisFree(ctx);
        return NULL;
    }
    if (redisSetTimeout(ctx, timeval_of(c->command_timeout_ms)) != REDIS_OK) {
        redisconn_set_error(c, "cannot connect to redis %s: cannot set the command timeout",
                            where);
        goto err;
    }
    redisReply *r;
    if (password) {
        const char *argv[] = {"AUTH", user ? user : password, password};
        if (!(r = setup_command(c, ctx, where, user ? 3 : 2, argv)))
            goto err;
        freeReplyObject(r);
    }
    if (db > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", db);
        const char *argv[] = {"SELECT", n};
        if (!(r = setup_command(c, ctx, where, 2, argv)))
            goto err;
        freeReplyObject(r);
    }
    return ctx;
err:
    redisFree(ctx);
    return NULL;
}

/* Asks Sentinel s for the primary's address. Returns 0 with host (REDISCONN_HOST_MAX
 * bytes) and *port, or -1 (reason kept). */
static int ask_sentinel(redisconn_t *c, const redisconn_sentinel_t *s, char *host, int *port)
{
    redisContext *ctx =
        open_server(c, s->host, s->port, c->sentinel_user, c->sentinel_password, 0);
    if (!ctx)
        return -1;
    char where[REDISCONN_ADDRESS_MAX + 16];
    snprintf(where, sizeof where, "sentinel %s:%d", s->host, s->port);
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", c->master_name};
    redisReply *r = setup_command(c, ctx, where, 3, argv);
    int rc = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[0]->len < REDISCONN_HOST_MAX && (*port = atoi(r->element[1]->str)) > 0) {
        memcpy(host, r->element[0]->str, r->element[0]->len + 1);
        rc = 0;
    } else if (r) {
        redisconn_set_error(c, "redis %s does not know a primary named \"%s\"", where,
                            c->master_name);
    }
    freeReplyObject(r);
    redisFree(ctx);
    return rc;
}

/* True when ctx's server says it is the primary (ROLE); otherwise the reason is kept. */
static bool is_primary(redisconn_t *c, redisContext *ctx, const redisconn_sentinel_t *s)
{
    const char *argv[] = {"ROLE"};
    redisReply *r = setup_command(c, ctx, c->address, 1, argv);
    bool primary = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                   r->element[0]->type == REDIS_REPLY_STRING &&
                   strcmp(r->element[0]->str, "master") == 0;
    if (r && !primary)
        redisconn_set_error(c, "redis %s, named the primary \"%s\" by sentinel %s:%d, is not "
                            "the primary (ROLE: %s)", c->address, c->master_name, s->host,
                            s->port, r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                            r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str : "?");
    freeReplyObject(r);
    return primary;
}

/* Subscribes to the Sentinel that named the primary (sentinels[0]) for +switch-master,
 * unless a subscription is open: redisconn_watch reads it. A Sentinel that cannot be
 * subscribed to leaves no watch (a failover is then seen by a lost connection or a
 * READONLY reply, as without one). */
static void watch_open(redisconn_t *c)
{
    if (c->watch && !c->watch->err)
        return;
    redisFree(c->watch);
    c->watch = NULL;
    char keep[REDISCONN_ERROR_MAX];
    snprintf(keep, sizeof keep, "%s", c->error); /* a failed watch is not the reason */
    const redisconn_sentinel_t *s = &c->sentinels[0];
    redisContext *ctx = open_server(c, s->host, s->port, c->sentinel_user, c->sentinel_password, 0);
    const char *argv[] = {"SUBSCRIBE", "+switch-master"};
    redisReply *r = ctx ? setup_command(c, ctx, "sentinel", 2, argv) : NULL;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        c->watch = ctx;
        ctx = NULL;
    }
    freeReplyObject(r);
    redisFree(ctx);
    snprintf(c->error, sizeof c->error, "%s", keep);
}

/* True when message is a +switch-master of our primary's name to an address other than
 * the one connected to: "NAME OLDIP OLDPORT NEWIP NEWPORT". */
static bool switched_away(const redisconn_t *c, const redisReply *m, char *to, size_t len)
{
    if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
        m->element[2]->type != REDIS_REPLY_STRING ||
        strcmp(m->element[1]->str ? m->element[1]->str : "", "+switch-master") != 0)
        return false;
    char name[256], old_ip[REDISCONN_HOST_MAX], new_ip[REDISCONN_HOST_MAX];
    int old_port, new_port;
    if (sscanf(m->element[2]->str, "%255s %255s %d %255s %d", name, old_ip, &old_port, new_ip,
               &new_port) != 5 ||
        !c->master_name || strcmp(name, c->master_name) != 0)
        return false;
    snprintf(to, len, "%s:%d", new_ip, new_port);
    return strcmp(to, c->address) != 0;
}

bool redisconn_watch(redisconn_t *c)
{
    if (!c->watch || !c->ctx)
        return false;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long since = (now.tv_sec - c->watched.tv_sec) * 1000 + (now.tv_nsec - c->watched.tv_nsec) / 1000000;
    if (since >= 0 && since < REDISCONN_WATCH_EVERY_MS)
        return false;
    c->watched = now;
    struct pollfd pfd = {.fd = c->watch->fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) <= 0)
        return false;
    if (redisBufferRead(c->watch) != REDIS_OK) {
        redisFree(c->watch); /* opened again at the next connect */
        c->watch = NULL;
        return false;
    }
    bool moved = false;
    redisReply *m = NULL;
    char to[REDISCONN_ADDRESS_MAX];
    while (redisGetReplyFromReader(c->watch, (void **)&m) == REDIS_OK && m) {
        if (!moved && switched_away(c, m, to, sizeof to)) {
            redisconn_set_error(c, "sentinel: +switch-master: the primary \"%s\" moved from %s "
                                "to %s", c->master_name, c->address, to);
            moved = true;
        }
        freeReplyObject(m);
        m = NULL;
    }
    if (moved) {
        c->switches++;
        redisconn_drop(c); /* the next use asks the Sentinels */
    }
    return moved;
}

unsigned long redisconn_switches(const redisconn_t *c)
{
    return c->switches;
}

/* The primary through the Sentinels, each asked in turn; the one that named it moves to
 * the front of the list (it is asked first next time). Returns the connection, or NULL
 * (the reason kept: the last Sentinel's). */
static redisContext *open_primary(redisconn_t *c)
{
    for (int i = 0; i < c->nsentinels; i++) {
        redisconn_sentinel_t s = c->sentinels[i];
        char host[REDISCONN_HOST_MAX];
        int port;
        if (ask_sentinel(c, &s, host, &port) < 0)
            continue;
        snprintf(c->address, sizeof c->address, "%s:%d", host, port);
        redisContext *ctx = open_server(c, host, port, c->user, c->password, c->db);
        if (!ctx)
            continue;
        if (!is_primary(c, ctx, &s)) {
            redisFree(ctx);
            continue;
        }
        memmove(&c->sentinels[1], &c->sentinels[0], (size_t)i * sizeof s);
        c->sentinels[0] = s;
        watch_open(c);
        return ctx;
    }
    char last[REDISCONN_ERROR_MAX];
    snprintf(last, sizeof last, "%s", c->error);
    redisconn_set_error(c, "no Sentinel of %d named a primary \"%s\" that answers (the last "
                        "reason: %s)", c->nsentinels, c->master_name, last);
    return NULL;
}

int redisconn_connect(redisconn_t *c)
{
    if (redisconn_connected(c) && !redisconn_watch(c))
        return 0;
    redisconn_drop(c);
    c->refused = c->config_error != NULL;
    if (c->config_error) {
        redisconn_set_error(c, "%s", c->config_error);
        return -1;
    }
    redisContext *ctx = c->nsentinels
                            ? open_primary(c)
                            : open_server(c, c->host, c->port, c->user, c->password, c->db);
    if (!ctx)
        return -1;
    c->ctx = ctx;
    return 1;
}

/* The reply of a command sent on the connection: NULL (connection closed) on an I/O
 * error or when the server turned out to be a replica (READONLY: reason kept). */
static redisReply *checked(redisconn_t *c, redisReply *r)
{
    if (!r) {
        redisconn_lost(c);
    } else if (redisconn_reply_readonly(r)) {
        redisconn_set_error(c, "redis %s: %s", c->address, r->str);
        freeReplyObject(r);
        redisconn_drop(c);
        return NULL;
    }
    return r;
}

redisReply *redisconn_vcommand(redisconn_t *c, const char *fmt, va_list ap)
{
    if (redisconn_connect(c) < 0)
        return NULL;
    redisReply *r = checked(c, redisvCommand(c->ctx, fmt, ap));
    if (r && r->type == REDIS_REPLY_ERROR) {
        redisconn_set_error(c, "redis: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *redisconn_command(redisconn_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisconn_vcommand(c, fmt, ap);
    va_end(ap);
    return r;
}

redisReply *redisconn_command_argv(redisconn_t *c, int argc, const char **argv,
                                   const size_t *lens)
{
    if (redisconn_connect(c) < 0)
        return NULL;
    return checked(c, redisCommandArgv(c->ctx, argc, argv, lens));
}
