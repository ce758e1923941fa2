/* redisconn.h - one blocking Redis connection: connect with a timeout, AUTH (ACL user and
 * password, or the password alone), SELECT the database, the command timeout, connect
 * again after a loss, and the last error kept on the object, as hiredis keeps errstr on
 * its context. With Sentinels configured it finds the primary through them: each
 * connect asks them in turn (SENTINEL get-master-addr-by-name), connects to the address
 * named and checks with ROLE that it is the primary; a lost connection or a READONLY
 * reply (the server was demoted by a failover) closes the connection, so the next
 * connect asks the Sentinels again (docs/high-availability.md, "Redis Sentinel").
 *
 * The coordinator's store (store.h) and queries (query.h) and the participant SDK's
 * de-duplication store (sp_dedup.h) each hold one. This file is compiled into both the
 * coordinator library and the SDK (common/: neither links the other); in the SDK's shared
 * library its symbols are hidden. A redisconn_t is used by one thread at a time. */
#ifndef SAGA_REDISCONN_H
#define SAGA_REDISCONN_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define REDISCONN_DEFAULT_HOST "127.0.0.1"
#define REDISCONN_DEFAULT_PORT 6379
#define REDISCONN_DEFAULT_TIMEOUT_MS 5000
#define REDISCONN_DEFAULT_SENTINEL_PORT 26379
#define REDISCONN_ERROR_MAX 512  /* the last error's text, NUL included */
#define REDISCONN_MAX_SENTINELS 16
#define REDISCONN_ADDRESS_MAX 300 /* "host:port", NUL included */
#define REDISCONN_WATCH_EVERY_MS 20 /* how often redisconn_watch reads the Sentinel */

typedef struct redisconn_config {
    const char *host;          /* NULL: REDISCONN_DEFAULT_HOST */
    int port;                  /* <= 0: REDISCONN_DEFAULT_PORT */
    const char *user;          /* ACL user, or NULL: AUTH with the password alone */
    const char *password;      /* NULL: no AUTH */
    int db;                    /* SELECT db when > 0 */
    int connect_timeout_ms;    /* <= 0: REDISCONN_DEFAULT_TIMEOUT_MS */
    int command_timeout_ms;    /* <= 0: REDISCONN_DEFAULT_TIMEOUT_MS */
    /* Sentinel: "host:port,host:port" (port default REDISCONN_DEFAULT_SENTINEL_PORT, at
     * most REDISCONN_MAX_SENTINELS). NULL or "": no Sentinel, connect to host:port. With
     * Sentinels, host and port are not used and master_name is required. */
    const char *sentinels;
    const char *master_name;       /* the name the Sentinels monitor the primary under */
    const char *sentinel_user;     /* ACL user on the Sentinels, or NULL */
    const char *sentinel_password; /* NULL: no AUTH on the Sentinels */
    /* Redis Cluster (common/rediscluster.h): when cluster is true, the users of this
     * configuration route every key to the primary serving its slot, starting from the
     * seed nodes cluster_nodes ("host:port,host:port"; NULL or "": host:port). A
     * redisconn_t itself is one connection to one server and does not look at these. */
    bool cluster;
    const char *cluster_nodes;
} redisconn_config_t;

typedef struct redisconn redisconn_t;

/* A connection to cfg's Redis (every string copied), not connected yet: the first
 * redisconn_connect or command connects. Returns NULL when out of memory. A bad Sentinel
 * setting (an entry that is not host:port, too many, no master_name) does not fail here:
 * every connect then fails with the reason (redisconn_last_error). */
redisconn_t *redisconn_new(const redisconn_config_t *cfg);
/* Closes and frees c. NULL is accepted. */
void redisconn_free(redisconn_t *c);

/* Connects unless connected: a new connection, the command timeout, AUTH, SELECT; with
 * Sentinels, to the primary they name (each asked in turn until one names an address
 * that answers ROLE with "master"; the one that did is asked first next time).
 * Returns 1 when it connected now (what a caller sets up per connection, as loading its
 * scripts, it does then), 0 when the connection was up, -1 when it cannot connect (the
 * reason in redisconn_last_error; not connected). */
int redisconn_connect(redisconn_t *c);
/* With Sentinels: reads, without waiting, the +switch-master announcements of the
 * Sentinel that named the primary (subscribed at each connect), at most every
 * REDISCONN_WATCH_EVERY_MS; when one says our primary moved to another address, closes
 * the connection (the reason kept) and returns true: the next use asks the Sentinels.
 * So a primary demoted or cut off is left even before it fails a command. redisconn_connect
 * calls it; a caller that pipelines on the context calls it between rounds. Without
 * Sentinels, or not connected: false at once. */
bool redisconn_watch(redisconn_t *c);
/* How many times redisconn_watch moved c to a new primary. */
unsigned long redisconn_switches(const redisconn_t *c);
/* True when a connection is up and hiredis saw no error on it. */
bool redisconn_connected(const redisconn_t *c);
/* The hiredis context for pipelining (redisAppendCommand, redisGetReply, ...), or NULL
 * when not connected. Borrowed: valid until the next redisconn_drop, redisconn_lost or
 * reconnection. */
redisContext *redisconn_context(const redisconn_t *c);
/* "host:port" of the server connected to, or of the last one tried (borrowed from c). */
const char *redisconn_address(const redisconn_t *c);
/* Closes the connection (replies left unread are lost); the next use connects again. */
void redisconn_drop(redisconn_t *c);
/* After a failed read or write on the context: keeps "redis: <hiredis's reason>" as the
 * last error and closes the connection. */
void redisconn_lost(redisconn_t *c);

/* True when r is an error reply saying that the server no longer takes writes: READONLY,
 * a replica after a failover. A caller reading pipelined replies treats it as a lost
 * connection (redisconn_drop), so that the next connect finds the new primary. */
bool redisconn_reply_readonly(const redisReply *r);

/* Runs one command (hiredis format), connecting first. Returns the reply (caller frees
 * it with freeReplyObject), or NULL when it cannot connect, on an I/O error or a READONLY
 * reply (the connection is closed) or on another error reply (the connection stays); the
 * reason is kept. */
redisReply *redisconn_command(redisconn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
redisReply *redisconn_vcommand(redisconn_t *c, const char *fmt, va_list ap);
/* Runs one command given as argc arguments (lens may be NULL: strlen), connecting first.
 * Returns any reply, error replies included (caller frees), but NULL when it cannot
 * connect, on an I/O error or on a READONLY reply (the connection is closed; the reason
 * is kept). */
redisReply *redisconn_command_argv(redisconn_t *c, int argc, const char **argv,
                                   const size_t *lens);

/* Takes the next entry of a comma-separated list at *at (blanks around it trimmed) into
 * item (size bytes) and moves *at past it. Returns 1, 0 at the end of the list, or -1 for
 * an empty or too long entry. */
int redisconn_list_item(const char **at, char *item, size_t size);
/* Parses one "host:port" ("[v6]:port" too; the port may be left out: default_port) into
 * host (hostlen bytes) and *port. Returns 0, or -1 when it is not HOST:PORT. */
int redisconn_parse_address(const char *item, char *host, size_t hostlen, int *port,
                            int default_port);

/* True when the last connect failed for a reason that trying again does not mend: a bad
 * Sentinel setting, or a server (Redis or a Sentinel) that answered AUTH or SELECT with an
 * error. False when it failed because nothing answered in time (down, frozen, failing
 * over): worth waiting for. */
bool redisconn_refused(const redisconn_t *c);
/* The reason of the last failure (never NULL; "" when none). Borrowed from c. */
const char *redisconn_last_error(const redisconn_t *c);
/* Keeps a caller's reason as the last error (printf format). */
void redisconn_set_error(redisconn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
