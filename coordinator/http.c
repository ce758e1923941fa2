/* http.c - metrics, health checks, dashboard and JSON API over libmicrohttpd (see
 * http.h). */
#include "http.h"
#include "definition.h"
#include "graph.h"

#include "log.h"
#include "query.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HTTP_CONNECTION_LIMIT 64
#define HTTP_CONNECTION_TIMEOUT_S 30
#define HTTP_API_PREFIX "/api/sagas/"
#define HTTP_DEFINITIONS_PREFIX "/api/definitions/"

/* dashboard/index.html, embedded by dashboard/embed.cmake. */
extern const unsigned char http_dashboard_html[];
extern const size_t http_dashboard_html_len;

struct http_server {
    struct MHD_Daemon *daemon;
    metrics_t *metrics;
    config_t cfg;        /* without the token (http_token, http_token_file cleared) */
    httpauth_t auth;
    query_t *query;      /* the API's Redis connection: used by the MHD thread only */
    int port;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int http_parse_listen(const char *listen, char *host, size_t hostlen, int *port, char *err,
                      size_t errlen)
{
    const char *colon;
    const char *h = listen;
    size_t hl;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "http_listen \"%s\": expected [IPV6]:PORT", listen);
            return -1;
        }
        h = listen + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon) {
            snprintf(err, errlen, "http_listen \"%s\": expected HOST:PORT", listen);
            return -1;
        }
        hl = (size_t)(colon - listen);
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535) {
        snprintf(err, errlen, "http_listen \"%s\": port must be 0..65535", listen);
        return -1;
    }
    if (hl == 0) {
        snprintf(err, errlen, "http_listen \"%s\": name the host (127.0.0.1, 0.0.0.0 for every "
                              "interface)", listen);
        return -1;
    }
    if (hl >= hostlen) {
        snprintf(err, errlen, "http_listen \"%s\": host too long", listen);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

/* Resolves listen as the daemon binds it: the first passive address. *ai is the caller's
 * (freeaddrinfo). Returns the port, or -1 with the reason in err. */
static int listen_resolve(const char *listen, struct addrinfo **ai, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (http_parse_listen(listen, host, sizeof host, &port, err, errlen) < 0)
        return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    *ai = NULL;
    int gai = getaddrinfo(host, ps, &hints, ai);
    if (gai != 0 || !*ai) {
        snprintf(err, errlen, "http_listen \"%s\": %s", listen,
                 gai != 0 ? gai_strerror(gai) : "no address");
        if (*ai)
            freeaddrinfo(*ai);
        *ai = NULL;
        return -1;
    }
    return port;
}

int http_listen_is_loopback(const char *listen, bool *loopback, char *err, size_t errlen)
{
    struct addrinfo *ai;
    if (listen_resolve(listen, &ai, err, errlen) < 0)
        return -1;
    *loopback = false;
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)ai->ai_addr;
        *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    } else if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ai->ai_addr;
        *loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr) ||
                    (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && v6->sin6_addr.s6_addr[12] == 127);
    }
    freeaddrinfo(ai);
    return 0;
}

/* --- responses -------------------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *type,
                                 char *body, size_t len, bool take)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, take ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (take)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Sends o as JSON (steals the reference). */
static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return send_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "out of memory\n",
                         14, false);
    return send_text(conn, status, "application/json", text, strlen(text), true);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *why)
{
    return send_json(conn, status, json_pack("{s:s}", "error", why));
}

/* 401 with the challenge; wrong: a token came and was not the one (RFC 6750's
 * invalid_token). */
static enum MHD_Result send_unauthorized(struct MHD_Connection *conn, bool wrong)
{
    static const char NONE[] =
        "{\"error\":\"this coordinator needs its bearer token (http_token): send "
        "'Authorization: Bearer TOKEN', or open /?token=TOKEN in a browser\"}";
    static const char WRONG[] = "{\"error\":\"wrong token\"}";
    const char *body = wrong ? WRONG : NONE;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                            wrong ? "Bearer realm=\"saga-coordinator\", error=\"invalid_token\""
                                  : "Bearer realm=\"saga-coordinator\"");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_UNAUTHORIZED, r);
    MHD_destroy_response(r);
    return ret;
}

/* 303 to / with the cookie that carries token (checked) from now on. */
static enum MHD_Result send_cookie_redirect(struct MHD_Connection *conn, const char *token)
{
    char cookie[HTTPAUTH_TOKEN_MAX + 128];
    if (httpauth_cookie(token, cookie, sizeof cookie) < 0)
        return send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "token too long for a cookie");
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, "/");
    MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_SEE_OTHER, r);
    MHD_destroy_response(r);
    return ret;
}

/* --- handlers --------------------------------------------------------------------- */

static enum MHD_Result serve_metrics(http_server_t *h, struct MHD_Connection *conn)
{
    size_t len;
    char *text = metrics_render(h->metrics, &len);
    if (!text)
        return send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return send_text(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
                     true);
}

static json_t *health_json(http_server_t *h, const metrics_health_t *mh, int64_t now)
{
    json_t *o = json_pack("{s:s, s:b, s:I, s:i, s:b, s:b}", "instance", h->cfg.instance_id,
                          "loop_started", mh->published, "last_turn_age_ms",
                          (json_int_t)(mh->published ? now - mh->last_turn_ms : -1),
                          "partitions_owned", mh->partitions_owned, "joined", mh->joined,
                          "redis_ok", mh->redis_ok);
    if (o && mh->waiting[0])
        json_object_set_new(o, "waiting", json_string(mh->waiting));
    return o;
}

static enum MHD_Result serve_health(http_server_t *h, struct MHD_Connection *conn, bool ready)
{
    metrics_health_t mh;
    metrics_health(h->metrics, &mh);
    int64_t now = wall_ms();
    const char *why = NULL;
    char waiting[sizeof mh.waiting + 32];
    bool starting = !mh.published && mh.waiting[0];
    if (starting) {
        /* Start-up waits for Redis or Kafka: alive (it retries), not ready. */
        snprintf(waiting, sizeof waiting, "starting, waiting for %s", mh.waiting);
        why = ready ? waiting : NULL;
    } else if (!mh.published)
        why = "the engine loop has not turned yet";
    else if (now - mh.last_turn_ms > HTTP_STALL_MS)
        why = "the engine loop has not turned recently";
    else if (ready && mh.fatal)
        why = "a fatal Kafka error: the instance is stopping";
    else if (ready && !(mh.joined || mh.partitions_owned > 0))
        why = "not yet a member of the consumer group";
    else if (ready && !mh.redis_ok)
        why = "redis unreachable at the last turn";
    json_t *o = health_json(h, &mh, now);
    json_object_set_new(o, "status", json_string(why ? "fail" : starting ? "starting" : "ok"));
    if (why)
        json_object_set_new(o, "reason", json_string(why));
    return send_json(conn, why ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, o);
}

/* The API's Redis connection, connected on first use. NULL (and a 503 sent by the caller)
 * when Redis is unreachable. */
static query_t *api_query(http_server_t *h, char *err, size_t errlen)
{
    if (!h->query)
        h->query = query_new(&h->cfg, err, errlen);
    return h->query;
}

static int64_t arg_int(struct MHD_Connection *conn, const char *name)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

static enum MHD_Result query_failed(http_server_t *h, struct MHD_Connection *conn, int rc)
{
    unsigned status = rc == QUERY_ERR_NOT_FOUND ? MHD_HTTP_NOT_FOUND
                      : rc == QUERY_ERR_ARG     ? MHD_HTTP_BAD_REQUEST
                                                : MHD_HTTP_SERVICE_UNAVAILABLE;
    return send_error(conn, status, query_last_error(h->query));
}

/* GET /api/definitions/NAME?version=V: the shape of a definition (graph_json), which the
 * dashboard draws, from the JSON coordinators recorded in Redis: every version a saga ran
 * on is there, whichever coordinator's folder it came from. */
static enum MHD_Result serve_definition(http_server_t *h, struct MHD_Connection *conn,
                                        const char *name)
{
    char *text = NULL;
    int rc = query_definition(h->query, name, (int)arg_int(conn, "version"), &text);
    if (rc != QUERY_OK)
        return query_failed(h, conn, rc);
    char source[DEFN_MAX_NAME_LEN + 64];
    snprintf(source, sizeof source, "redis saga:definitions %s", name);
    defn_errors_t errs = {0};
    definition_t *d = definition_load_string(text, strlen(text), source, &errs);
    free(text);
    char why[sizeof(defn_error_t) + 64] = "out of memory";
    if (!d && errs.count)
        defn_error_format(&errs.items[0], why, sizeof why);
    defn_errors_release(&errs);
    if (!d)
        return send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, why);
    json_t *out = graph_json(d);
    definition_free(d);
    if (!out)
        return send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return send_json(conn, MHD_HTTP_OK, out);
}

static enum MHD_Result serve_api(http_server_t *h, struct MHD_Connection *conn, const char *url)
{
    char err[512];
    query_t *q = api_query(h, err, sizeof err);
    if (!q)
        return send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, err);
    json_t *out = NULL;
    int rc;
    if (strcmp(url, "/api/sagas") == 0) {
        query_filter_t f = {
            .status = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "status"),
            .definition = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "definition"),
            .cursor = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "cursor"),
            .since_ms = arg_int(conn, "since"),
            .until_ms = arg_int(conn, "until"),
            .limit = (int)arg_int(conn, "limit")};
        rc = query_list(q, &f, &out);
    } else if (strncmp(url, HTTP_API_PREFIX, strlen(HTTP_API_PREFIX)) == 0) {
        rc = query_show(q, url + strlen(HTTP_API_PREFIX), &out);
    } else if (strcmp(url, "/api/stats") == 0) {
        rc = query_stats(q, wall_ms(), &out);
    } else if (strcmp(url, "/api/cluster") == 0) {
        rc = query_cluster(q, wall_ms(), &out);
    } else if (strncmp(url, HTTP_DEFINITIONS_PREFIX, strlen(HTTP_DEFINITIONS_PREFIX)) == 0) {
        return serve_definition(h, conn, url + strlen(HTTP_DEFINITIONS_PREFIX));
    } else if (strcmp(url, "/api/throughput") == 0) {
        rc = query_throughput(
            q, wall_ms(), MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "definition"),
            &out);
    } else {
        return send_error(conn, MHD_HTTP_NOT_FOUND, "no such API path");
    }
    if (rc != QUERY_OK)
        return query_failed(h, conn, rc);
    return send_json(conn, MHD_HTTP_OK, out);
}

/* Whether the request may go on (access is required and granted, or not required). When
 * it may not, *answer is what was queued instead: 401, or the cookie-setting redirect of
 * `GET /?token=TOKEN`. */
static bool access_granted(http_server_t *h, struct MHD_Connection *conn, const char *url,
                           enum MHD_Result *answer)
{
    if (!h->auth.required)
        return true;
    bool page = strcmp(url, "/") == 0 || strcmp(url, "/dashboard") == 0;
    const char *arg = page ? MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token")
                           : NULL;
    if (arg) {
        /* libmicrohttpd decodes a query's '+' as a space; a token has no spaces, so every
         * space was a '+' of the token (tokens may hold + / =, RFC 6750's b64token). */
        char token[HTTPAUTH_TOKEN_MAX + 1];
        size_t len = strlen(arg);
        bool ok = len < sizeof token;
        if (ok) {
            for (size_t i = 0; i <= len; i++)
                token[i] = arg[i] == ' ' ? '+' : arg[i];
            ok = httpauth_token_ok(&h->auth, token, len);
        }
        *answer = ok ? send_cookie_redirect(conn, token) : send_unauthorized(conn, true);
        return false;
    }
    size_t len = 0;
    const char *bearer = httpauth_bearer(
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION), &len);
    if (bearer) {
        if (httpauth_token_ok(&h->auth, bearer, len))
            return true;
        *answer = send_unauthorized(conn, true);
        return false;
    }
    const char *cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, HTTPAUTH_COOKIE);
    if (cookie && httpauth_token_ok(&h->auth, cookie, strlen(cookie)))
        return true;
    *answer = send_unauthorized(conn, cookie != NULL);
    return false;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    http_server_t *h = cls;
    (void)version;
    (void)upload_data;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET");
    if (*upload_data_size != 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    (void)con_cls;
    if (strcmp(url, "/healthz") == 0)
        return serve_health(h, conn, false);
    if (strcmp(url, "/readyz") == 0)
        return serve_health(h, conn, true);
    enum MHD_Result answer;
    if (!access_granted(h, conn, url, &answer))
        return answer;
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(h, conn);
    if (strcmp(url, "/") == 0 || strcmp(url, "/dashboard") == 0)
        return send_text(conn, MHD_HTTP_OK, "text/html; charset=utf-8",
                         (char *)http_dashboard_html, http_dashboard_html_len, false);
    if (strcmp(url, "/api/instance") == 0) {
        metrics_health_t mh;
        metrics_health(h->metrics, &mh);
        json_t *o = health_json(h, &mh, wall_ms());
        json_object_set_new(o, "group", json_string(h->cfg.group_id));
        json_object_set_new(o, "input_topic", json_string(h->cfg.input_topic));
        return send_json(conn, MHD_HTTP_OK, o);
    }
    if (strncmp(url, "/api/", 5) == 0)
        return serve_api(h, conn, url);
    return send_error(conn, MHD_HTTP_NOT_FOUND, "not found");
}

/* --- lifecycle -------------------------------------------------------------------- */

http_server_t *http_start(const config_t *cfg, const httpauth_t *auth, metrics_t *metrics,
                          char *err, size_t errlen)
{
    struct addrinfo *ai;
    int port = listen_resolve(cfg->http_listen, &ai, err, errlen);
    if (port < 0)
        return NULL;
    http_server_t *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->metrics = metrics;
    h->cfg = *cfg;
    memset(h->cfg.http_token, 0, sizeof h->cfg.http_token); /* the digest in auth suffices */
    h->cfg.http_token_file[0] = '\0';
    h->auth = *auth;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, h,
                                 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTION_LIMIT,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONNECTION_TIMEOUT_S,
                                 MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->daemon) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not ours?)",
                 cfg->http_listen);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    return h;
}

int http_port(const http_server_t *h)
{
    return h->port;
}

void http_stop(http_server_t *h)
{
    if (!h)
        return;
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    query_free(h->query);
    free(h);
}
