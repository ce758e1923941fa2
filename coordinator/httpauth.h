/* httpauth.h - who may use the coordinator's HTTP server: the bearer token (settings
 * http_token or http_token_file), the rule that decides when it is required, and the
 * checks of one request's credentials.
 *
 * The rule: a token that is set is required on any address; without one, a loopback
 * address serves everyone on the host (as before), and any other address is refused at
 * start unless http_open=1 says so explicitly. /healthz and /readyz never need the token
 * (container and load-balancer probes); http.c decides which paths are open.
 *
 * A request carries the token as `Authorization: Bearer TOKEN` (scrapers, curl) or as the
 * cookie HTTPAUTH_COOKIE, which `GET /?token=TOKEN` sets for browsers (HttpOnly,
 * SameSite=Strict) so that the dashboard's own fetch() calls carry it.
 *
 * Pure: no sockets and no logging. Only a SHA-256 digest of the token is kept, and a
 * candidate is compared digest to digest in constant time (neither its content nor its
 * length shows in the time taken). */
#ifndef SAGA_HTTPAUTH_H
#define SAGA_HTTPAUTH_H

#include "config.h"
#include "sha256.h"

#include <stdbool.h>
#include <stddef.h>

#define HTTPAUTH_TOKEN_MIN 16     /* shorter tokens are refused: guessable */
#define HTTPAUTH_TOKEN_MAX 256    /* the longest token accepted (also in a cookie) */
#define HTTPAUTH_COOKIE "saga_token"

typedef struct httpauth {
    bool required;                          /* requests other than health checks need it */
    bool open;                              /* no token on a non-loopback address (http_open) */
    unsigned char digest[SHA256_DIGEST_LEN]; /* SHA-256 of the token when required */
} httpauth_t;

/* Reads the token of cfg (http_token, or the content of the file http_token_file with
 * trailing newlines stripped; not both) and applies the rule above. loopback: whether
 * cfg->http_listen binds a loopback address (http_listen_is_loopback in http.h). A token
 * must be HTTPAUTH_TOKEN_MIN..HTTPAUTH_TOKEN_MAX characters of A-Z a-z 0-9 - . _ ~ + / =
 * (RFC 6750's b64token, which also fits a cookie unquoted).
 * Returns 0, or -1 with the reason, naming the setting, in err. */
int httpauth_init(httpauth_t *a, const config_t *cfg, bool loopback, char *err, size_t errlen);

/* Whether token (len bytes; NULL = none) is the configured token. Constant time in the
 * content and length of both. False when no token is configured. */
bool httpauth_token_ok(const httpauth_t *a, const char *token, size_t len);

/* The token of an Authorization header value "Bearer TOKEN" (scheme case-insensitive,
 * spaces around the token ignored): a pointer into header, its length in *len. NULL when
 * header is NULL or another scheme. */
const char *httpauth_bearer(const char *header, size_t *len);

/* Writes the Set-Cookie value that hands token (already checked) to a browser: HttpOnly,
 * SameSite=Strict, Path=/. Returns 0, or -1 when buf is too small. */
int httpauth_cookie(const char *token, char *buf, size_t buflen);

#endif
