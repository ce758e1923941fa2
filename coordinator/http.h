/* http.h - the coordinator's HTTP server: Prometheus metrics, health checks, the
 * operations dashboard and the small JSON API it reads.
 *
 *   GET /metrics          the metrics snapshot, Prometheus text format 0.0.4
 *   GET /healthz          200 while the engine loop turns (last turn < HTTP_STALL_MS ago)
 *   GET /readyz           200 once the instance joined the group (or owns a partition)
 *                         and its last Redis round trip succeeded; 503 otherwise
 *   GET /                 the dashboard (one self-contained page, embedded at build time)
 *   GET /api/sagas        ?status=&definition=&since=&until=&limit=&cursor= (query_list)
 *   GET /api/sagas/ID     one saga and its history (query_show)
 *   GET /api/stats        counters and rates per definition (query_stats)
 *   GET /api/throughput   ?definition=: sagas finished per minute over the last hour
 *                         (query_throughput)
 *   GET /api/instance     this instance: id, partitions owned, health
 *   GET /api/cluster      every live instance, each partition's owner, epoch, sagas
 *                         active, lag and outbox, stuck sagas (query_cluster)
 *
 * Access (httpauth.h): when a bearer token is required, every path but /healthz and
 * /readyz answers 401 with `WWW-Authenticate: Bearer` unless the request carries the
 * token in `Authorization: Bearer TOKEN` or in the cookie HTTPAUTH_COOKIE;
 * `GET /?token=TOKEN` sets that cookie and redirects (303) to `/`.
 *
 * Threading: libmicrohttpd runs one internal thread that serves every request in turn.
 * That thread reads only the metrics snapshot (metrics.h) and Redis through its own
 * connection (query.h), never the engine's state or the engine's Redis connection. */
#ifndef SAGA_HTTP_H
#define SAGA_HTTP_H

#include "config.h"
#include "httpauth.h"
#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>

#define HTTP_STALL_MS 10000   /* /healthz fails when the loop has not turned for this long */

typedef struct http_server http_server_t;

/* Parses cfg->http_listen ("HOST:PORT", "[V6]:PORT"; port 0 = any free port) into
 * host (hostlen bytes) and *port. Returns 0, or -1 with the reason in err. */
int http_parse_listen(const char *listen, char *host, size_t hostlen, int *port, char *err,
                      size_t errlen);

/* Whether listen ("HOST:PORT") binds a loopback address (127.0.0.0/8, ::1), resolved as
 * http_start resolves it: *loopback gets the answer. Returns 0, or -1 with the reason in
 * err (unparsable, unknown host). */
int http_listen_is_loopback(const char *listen, bool *loopback, char *err, size_t errlen);

/* Starts serving on cfg->http_listen (must not be ""). auth (from httpauth_init) is
 * copied; metrics is borrowed and must outlive the server; cfg is copied without its
 * token (Redis settings for the API, instance id). Returns NULL with the reason in err
 * (bad address, port in use). */
http_server_t *http_start(const config_t *cfg, const httpauth_t *auth, metrics_t *metrics,
                          char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
int http_port(const http_server_t *h);

/* Stops the thread and frees everything. NULL is a no-op. */
void http_stop(http_server_t *h);

#endif
