/* httpauth.c - the HTTP server's bearer token: where it comes from, when it is required,
 * and the constant-time check of a candidate (see httpauth.h). */
#include "httpauth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

_Static_assert(sizeof ((config_t *)0)->http_token > HTTPAUTH_TOKEN_MAX + 2,
               "http_token holds the longest token and a CRLF");

/* RFC 6750 b64token characters; none of them needs quoting in a cookie value. */
static bool token_char(char c)
{
    return isalnum((unsigned char)c) || strchr("-._~+/=", c) != NULL;
}

/* Reads the token file into buf; trailing \n and \r are stripped. Returns 0 or -1. */
static int read_token_file(const char *path, char *buf, size_t buflen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "http_token_file \"%s\": %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, buflen - 1, f);
    bool more = !ferror(f) && fgetc(f) != EOF;
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "http_token_file \"%s\": read error", path);
        return -1;
    }
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (more) { /* longer than any token we accept, even before stripping */
        snprintf(err, errlen, "http_token_file \"%s\": longer than %d characters", path,
                 HTTPAUTH_TOKEN_MAX);
        return -1;
    }
    return 0;
}

int httpauth_init(httpauth_t *a, const config_t *cfg, bool loopback, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    char token[sizeof cfg->http_token]; /* > HTTPAUTH_TOKEN_MAX + "\r\n" */
    const char *setting = "http_token";
    if (cfg->http_token[0] && cfg->http_token_file[0]) {
        snprintf(err, errlen, "http_token and http_token_file are both set: set one of them");
        return -1;
    }
    if (cfg->http_token_file[0]) {
        setting = "http_token_file";
        if (read_token_file(cfg->http_token_file, token, sizeof token, err, errlen) < 0)
            return -1;
        if (!token[0]) {
            snprintf(err, errlen, "http_token_file \"%s\" is empty", cfg->http_token_file);
            return -1;
        }
    } else {
        snprintf(token, sizeof token, "%s", cfg->http_token);
    }
    size_t len = strlen(token);
    if (len == 0) {
        if (!loopback && !cfg->http_open) {
            snprintf(err, errlen,
                     "http_listen \"%s\" is not a loopback address: set http_token (or "
                     "http_token_file, SAGA_HTTP_TOKEN) so that the dashboard, metrics and API "
                     "need a bearer token, or http_open=1 to serve them to anyone who can reach "
                     "the address",
                     cfg->http_listen);
            return -1;
        }
        a->open = !loopback;
        return 0;
    }
    if (len < HTTPAUTH_TOKEN_MIN || len > HTTPAUTH_TOKEN_MAX) {
        snprintf(err, errlen, "%s: the token must be %d to %d characters long (it has %zu)",
                 setting, HTTPAUTH_TOKEN_MIN, HTTPAUTH_TOKEN_MAX, len);
        memset(token, 0, sizeof token);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!token_char(token[i])) {
            snprintf(err, errlen, "%s: character %zu of the token is not one of A-Z a-z 0-9 "
                                  "- . _ ~ + / =", setting, i + 1);
            memset(token, 0, sizeof token);
            return -1;
        }
    }
    sha256_t s;
    sha256_init(&s);
    sha256_update(&s, token, len);
    sha256_final(&s, a->digest);
    memset(token, 0, sizeof token);
    a->required = true;
    return 0;
}

bool httpauth_token_ok(const httpauth_t *a, const char *token, size_t len)
{
    if (!a->required || !token)
        return false;
    /* Digests of equal length, compared without an early exit: the time depends on
     * neither the candidate's content nor its length relation to the token's. */
    unsigned char d[SHA256_DIGEST_LEN];
    sha256_t s;
    sha256_init(&s);
    sha256_update(&s, token, len);
    sha256_final(&s, d);
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < SHA256_DIGEST_LEN; i++)
        diff |= (unsigned char)(d[i] ^ a->digest[i]);
    return diff == 0;
}

const char *httpauth_bearer(const char *header, size_t *len)
{
    if (!header)
        return NULL;
    while (*header == ' ' || *header == '\t')
        header++;
    if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return NULL;
    const char *t = header + 6;
    while (*t == ' ' || *t == '\t')
        t++;
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    *len = n;
    return t;
}

int httpauth_cookie(const char *token, char *buf, size_t buflen)
{
    int n = snprintf(buf, buflen, "%s=%s; Path=/; HttpOnly; SameSite=Strict", HTTPAUTH_COOKIE,
                     token);
    return n < 0 || (size_t)n >= buflen ? -1 : 0;
}
