/* redisconn.c - one blocking Redis connection with AUTH, SELECT, timeouts and the last
 * error (see redisconn.h). */
#include "redisconn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

struct redisconn {
    redisContext *ctx;         /* NULL when not connected */
    char *host, *user, *password;
    int port, db;
    int connect_timeout_ms, command_timeout_ms;
    char error[REDISCONN_ERROR_MAX];
};

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

redisconn_t *redisconn_new(const redisconn_config_t *cfg)
{
    redisconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->host = strdup(cfg->host ? cfg->host : REDISCONN_DEFAULT_HOST);
    c->user = cfg->user ? strdup(cfg->user) : NULL;
    c->password = cfg->password ? strdup(cfg->password) : NULL;
    if (!c->host || (cfg->user && !c->user) || (cfg->password && !c->password))
        goto err;
    c->port = cfg->port > 0 ? cfg->port : REDISCONN_DEFAULT_PORT;
    c->db = cfg->db;
    c->connect_timeout_ms =
        cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : REDISCONN_DEFAULT_TIMEOUT_MS;
    c->command_timeout_ms =
        cfg->command_timeout_ms > 0 ? cfg->command_timeout_ms : REDISCONN_DEFAULT_TIMEOUT_MS;
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

/* Runs one set-up command (AUTH, SELECT) on a new connection; 0, or -1 (reason kept). */
static int setup_command(redisconn_t *c, redisContext *ctx, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    int rc = r && r->type != REDIS_REPLY_ERROR ? 0 : -1;
    if (rc < 0)
        redisconn_set_error(c, "redis %s:%d: %s", c->host, c->port,
                            r ? r->str : ctx->errstr);
    freeReplyObject(r);
    return rc;
}

int redisconn_connect(redisconn_t *c)
{
    if (redisconn_connected(c))
        return 0;
    redisconn_drop(c);
    redisContext *ctx = redisConnectWithTimeout(c->host, c->port, timeval_of(c->connect_timeout_ms));
    if (!ctx || ctx->err) {
        redisconn_set_error(c, "cannot connect to redis %s:%d: %s", c->host, c->port,
                            ctx ? ctx->errstr : "out of memory");
        redisFree(ctx);
        return -1;
    }
    if (redisSetTimeout(ctx, timeval_of(c->command_timeout_ms)) != REDIS_OK) {
        redisconn_set_error(c, "cannot connect to redis %s:%d: cannot set the command timeout",
                            c->host, c->port);
        goto err;
    }
    if (c->password) {
        const char *argv[] = {"AUTH", c->user ? c->user : c->password, c->password};
        if (setup_command(c, ctx, c->user ? 3 : 2, argv) < 0)
            goto err;
    }
    if (c->db > 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->db);
        const char *argv[] = {"SELECT", db};
        if (setup_command(c, ctx, 2, argv) < 0)
            goto err;
    }
    c->ctx = ctx;
    return 1;
err:
    redisFree(ctx);
    return -1;
}

/* The reply of a command sent on the connection: NULL (connection closed) on an I/O
 * error. */
static redisReply *checked(redisconn_t *c, redisReply *r)
{
    if (!r)
        redisconn_lost(c);
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
