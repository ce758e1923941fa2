/* test_httpauth.c - the HTTP server's bearer token (httpauth.c, http.c): the rule that
 * decides when a token is required, the parsing of credentials, and real coordinators
 * that refuse to start on 0.0.0.0 without a token, answer 401 without or with a wrong
 * one, 200 with it in a header or in the cookie /?token= sets, and keep /healthz and
 * /readyz open. */
#include "httpauth.h"
#include "http.h"
#include "opstest.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 20000
/* every kind of character a token may have; a raw '+' in ?token= reads as a space */
#define TOKEN "s3cret-Token_for.tests~0123456789+/=="

/* --------------------------------------------------------------- the rule, unit */

static config_t cfg_with(const char *listen, const char *token, int open)
{
    config_t c;
    config_defaults(&c);
    char err[256] = "";
    cr_assert_eq(config_set(&c, "http_listen", listen, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_set(&c, "http_token", token, err, sizeof err), 0, "%s", err);
    c.http_open = open;
    return c;
}

Test(httpauth, loopback_without_token_needs_none)
{
    config_t c = cfg_with("127.0.0.1:8080", "", 0);
    httpauth_t a;
    char err[512] = "";
    cr_assert_eq(httpauth_init(&a, &c, true, err, sizeof err), 0, "%s", err);
    cr_assert(!a.required);
    cr_assert(!a.open);
    cr_assert(!httpauth_token_ok(&a, "", 0), "no token configured: nothing matches");
}

Test(httpauth, other_address_without_token_is_refused_unless_open)
{
    config_t c = cfg_with("0.0.0.0:8080", "", 0);
    httpauth_t a;
    char err[512] = "";
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), -1);
    cr_assert(strstr(err, "http_listen \"0.0.0.0:8080\" is not a loopback address") &&
                  strstr(err, "http_token") && strstr(err, "http_open=1"),
              "%s", err);
    c.http_open = 1;
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), 0, "%s", err);
    cr_assert(!a.required);
    cr_assert(a.open);
}

Test(httpauth, a_token_is_required_on_any_address)
{
    httpauth_t a;
    char err[512] = "";
    config_t lo = cfg_with("127.0.0.1:8080", TOKEN, 0);
    cr_assert_eq(httpauth_init(&a, &lo, true, err, sizeof err), 0, "%s", err);
    cr_assert(a.required, "a token set on loopback is required there too");
    config_t any = cfg_with("0.0.0.0:8080", TOKEN, 1);
    cr_assert_eq(httpauth_init(&a, &any, false, err, sizeof err), 0, "%s", err);
    cr_assert(a.required, "http_open does not switch a set token off");
    cr_assert(!a.open);
    cr_assert(httpauth_token_ok(&a, TOKEN, strlen(TOKEN)));
    cr_assert(!httpauth_token_ok(&a, TOKEN, strlen(TOKEN) - 1), "a prefix");
    cr_assert(!httpauth_token_ok(&a, TOKEN "x", strlen(TOKEN) + 1), "longer");
    cr_assert(!httpauth_token_ok(&a, "s3cret-Token_for.tests~0123456789+/=+", strlen(TOKEN)));
    cr_assert(!httpauth_token_ok(&a, NULL, 0));
    cr_assert(!httpauth_token_ok(&a, "", 0));
}

Test(httpauth, bad_tokens_are_refused_naming_the_setting)
{
    httpauth_t a;
    char err[512] = "";
    config_t c = cfg_with("0.0.0.0:8080", "too-short", 0);
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), -1);
    cr_assert_str_eq(err, "http_token: the token must be 16 to 256 characters long (it has 9)");
    c = cfg_with("0.0.0.0:8080", "sixteen chars or more", 0);
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), -1);
    cr_assert_str_eq(err, "http_token: character 8 of the token is not one of A-Z a-z 0-9 "
                          "- . _ ~ + / =");
    c = cfg_with("0.0.0.0:8080", "abcdefghijklmnopqrstuvwxyz;x", 0);
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), -1, "a ; would end a cookie");
    c = cfg_with("0.0.0.0:8080", TOKEN, 0);
    snprintf(c.http_token_file, sizeof c.http_token_file, "/dev/null");
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), -1);
    cr_assert_str_eq(err, "http_token and http_token_file are both set: set one of them");
}

Test(httpauth, token_file_strips_the_trailing_newline)
{
    char path[] = "/tmp/saga-token-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, TOKEN "\r\n\n", strlen(TOKEN) + 3), (ssize_t)strlen(TOKEN) + 3);
    close(fd);
    config_t c = cfg_with("0.0.0.0:8080", "", 0);
    snprintf(c.http_token_file, sizeof c.http_token_file, "%s", path);
    httpauth_t a;
    char err[512] = "";
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), 0, "%s", err);
    cr_assert(a.required);
    cr_assert(httpauth_token_ok(&a, TOKEN, strlen(TOKEN)));

    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), -1);
    cr_assert(strstr(err, "http_token_file \"") && strstr(err, "\" is empty"), "%s", err);
    unlink(path);
    cr_assert_eq(httpauth_init(&a, &c, false, err, sizeof err), -1);
    cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(httpauth, bearer_header_and_cookie)
{
    size_t len = 0;
    const char *t = httpauth_bearer("Bearer abc", &len);
    cr_assert(t && len == 3 && strncmp(t, "abc", 3) == 0);
    t = httpauth_bearer("  bearer \t abc  ", &len);
    cr_assert(t && len == 3 && strncmp(t, "abc", 3) == 0, "scheme case-insensitive");
    cr_assert_null(httpauth_bearer("Basic dXNlcjpwYXNz", &len));
    cr_assert_null(httpauth_bearer("Bearerabc", &len));
    cr_assert_null(httpauth_bearer(NULL, &len));
    char cookie[512];
    cr_assert_eq(httpauth_cookie("abc", cookie, sizeof cookie), 0);
    cr_assert_str_eq(cookie, HTTPAUTH_COOKIE "=abc; Path=/; HttpOnly; SameSite=Strict");
    cr_assert_eq(httpauth_cookie("abc", cookie, 8), -1);
}

Test(httpauth, loopback_addresses)
{
    bool lo;
    char err[256] = "";
    static const struct { const char *listen; bool loopback; } CASES[] = {
        {"127.0.0.1:0", true}, {"127.1.2.3:8080", true}, {"[::1]:0", true},
        {"localhost:0", true}, {"0.0.0.0:0", false}, {"[::]:0", false}};
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        int rc = http_listen_is_loopback(CASES[i].listen, &lo, err, sizeof err);
        if (rc < 0 && CASES[i].listen[0] == '[') /* a host without IPv6 */
            continue;
        cr_assert_eq(rc, 0, "%s: %s", CASES[i].listen, err);
        cr_expect_eq(lo, CASES[i].loopback, "%s", CASES[i].listen);
    }
    cr_assert_eq(http_listen_is_loopback("8080", &lo, err, sizeof err), -1);
}

/* The real program: refused before it connects to anything, exit code 1 as for any
 * invalid setting, the message naming the setting. */
Test(httpauth, coordinator_refuses_to_start_on_every_interface_without_token)
{
    char bin[PATH_MAX];
    cr_assert_eq(fixture_bin_path("saga-coordinator", bin, sizeof bin), 0);
    ops_run_t r;
    int rc = ops_run(&r, (const char *const[]){bin, "--http_listen=0.0.0.0:0",
                                               "--redis_port=1", NULL},
                     NULL, NULL, 10000);
    cr_assert_eq(rc, 1, "exit 1 (got %d): %s", rc, r.err);
    cr_assert(strstr(r.err, "refusing to start: http_listen \"0.0.0.0:0\" is not a loopback "
                            "address: set http_token"),
              "%s", r.err);
    ops_run_release(&r);
    rc = ops_run(&r, (const char *const[]){bin, "--http_listen=[::]:0", NULL},
                 (const char *const[]){"SAGA_HTTP_TOKEN=short", NULL}, NULL, 10000);
    cr_assert_eq(rc, 1, "exit 1 (got %d): %s", rc, r.err);
    cr_assert(strstr(r.err, "http_token: the token must be 16 to 256 characters"), "%s", r.err);
    ops_run_release(&r);
}

/* ------------------------------------------------------- real coordinators, HTTP */

static test_system_t sys;
static int port_token_file, port_env_loopback, port_open;
static char token_path[PATH_MAX + 16];

static bool healthy(void *opaque)
{
    return ops_http_get(*(int *)opaque, "/healthz", NULL) == 200;
}

static void setup(void)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, NULL), 0, "system starts");
    snprintf(token_path, sizeof token_path, "%s/http_token", sys.dir);
    FILE *f = fopen(token_path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", TOKEN);
    fclose(f);
    char listen[64], file[sizeof token_path + 32];
    /* every interface, the token from a file */
    port_token_file = fixture_free_port();
    snprintf(listen, sizeof listen, "--http_listen=0.0.0.0:%d", port_token_file);
    snprintf(file, sizeof file, "--http_token_file=%s", token_path);
    cr_assert_geq(system_add_coordinator(&sys, (const char *const[]){listen, file, NULL}, NULL), 0);
    /* loopback, the token from the environment: required there too */
    port_env_loopback = fixture_free_port();
    snprintf(listen, sizeof listen, "--http_listen=127.0.0.1:%d", port_env_loopback);
    cr_assert_geq(system_add_coordinator(&sys, (const char *const[]){listen, NULL},
                                         (const char *const[]){"SAGA_HTTP_TOKEN=" TOKEN, NULL}),
                  0);
    /* every interface, explicitly open */
    port_open = fixture_free_port();
    snprintf(listen, sizeof listen, "--http_listen=0.0.0.0:%d", port_open);
    cr_assert_geq(system_add_coordinator(&sys, (const char *const[]){listen, "--http_open=1", NULL},
                                         NULL),
                  0);
    int ports[] = {port_token_file, port_env_loopback, port_open};
    for (int i = 0; i < 3; i++)
        cr_assert(fixture_wait_until(healthy, &ports[i], WAIT_MS), "coordinator %d serves /healthz", i);
}

static void teardown(void)
{
    system_stop(&sys);
}

/* The value of response header name (case-insensitive) in head, copied into buf; "" when
 * absent. */
static const char *header(const char *head, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    buf[0] = '\0';
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(buf, len, "%.*s", (int)strcspn(v, "\r\n"), v);
            break;
        }
    }
    return buf;
}

/* GETs path with one extra header line (NULL: none); returns the status, head in *head. */
static int get(int port, const char *path, const char *line, char **head)
{
    const char *headers[] = {line, NULL};
    char *body = NULL;
    int st = ops_http_request(port, path, line ? headers : NULL, head, &body);
    free(body);
    return st;
}

static void check_requires_token(int port)
{
    static const char *const GUARDED[] = {"/metrics", "/", "/dashboard", "/api/stats",
                                          "/api/sagas", "/api/instance", "/nothing-here"};
    char *head = NULL;
    char v[256];
    for (size_t i = 0; i < sizeof GUARDED / sizeof *GUARDED; i++) {
        cr_assert_eq(get(port, GUARDED[i], NULL, &head), 401, "%s without a token:\n%s",
                     GUARDED[i], head);
        cr_assert(strncmp(header(head, "WWW-Authenticate", v, sizeof v), "Bearer", 6) == 0,
                  "WWW-Authenticate: %s", v);
        free(head);
        cr_assert_eq(get(port, GUARDED[i], "Authorization: Bearer wrong-token-0123456789", &head),
                     401, "%s with a wrong token", GUARDED[i]);
        cr_assert(strstr(header(head, "WWW-Authenticate", v, sizeof v), "invalid_token"), "%s", v);
        free(head);
        cr_assert_eq(get(port, GUARDED[i], "Authorization: Basic dXNlcjpwYXNz", NULL), 401);
        cr_assert_eq(get(port, GUARDED[i], "Cookie: " HTTPAUTH_COOKIE "=wrong-token-0123456789",
                         NULL), 401);
    }
    cr_assert_eq(get(port, "/metrics", "Authorization: Bearer " TOKEN, &head), 200, "%s", head);
    cr_assert(strstr(header(head, "Content-Type", v, sizeof v), "text/plain"), "%s", v);
    free(head);
    cr_assert_eq(get(port, "/api/stats", "authorization: bearer " TOKEN, NULL), 200);
    cr_assert_eq(get(port, "/healthz", NULL, NULL), 200, "/healthz needs no token");
    int ready = get(port, "/readyz", NULL, NULL);
    cr_assert(ready == 200 || ready == 503, "/readyz answers without a token (%d)", ready);

    /* A browser: /?token= sets the cookie and redirects to /, the cookie opens the rest. */
    cr_assert_eq(get(port, "/?token=wrong-token-0123456789", NULL, NULL), 401);
    cr_assert_eq(get(port, "/?token=s3cret-Token_for.tests~0123456789%2B%2F%3D%3D", NULL, NULL),
                 303, "the token percent-encoded, as a browser may send it");
    cr_assert_eq(get(port, "/?token=" TOKEN, NULL, &head), 303, "%s", head);
    cr_assert_str_eq(header(head, "Location", v, sizeof v), "/");
    header(head, "Set-Cookie", v, sizeof v);
    cr_assert(strncmp(v, HTTPAUTH_COOKIE "=" TOKEN ";", strlen(HTTPAUTH_COOKIE "=" TOKEN ";")) == 0,
              "%s", v);
    cr_assert(strstr(v, "HttpOnly") && strstr(v, "SameSite=Strict") && strstr(v, "Path=/"), "%s", v);
    free(head);
    char cookie[300]; /* as a browser sends it back: the pair, among others */
    snprintf(cookie, sizeof cookie, "Cookie: other=1; %.*s", (int)strcspn(v, ";"), v);
    char *body = NULL;
    const char *headers[] = {cookie, NULL};
    cr_assert_eq(ops_http_request(port, "/", headers, NULL, &body), 200, "%s", cookie);
    cr_assert(strstr(body, "<html"), "the dashboard page");
    free(body);
    cr_assert_eq(ops_http_request(port, "/api/instance", headers, NULL, &body), 200);
    cr_assert(strstr(body, "\"instance\""), "%s", body);
    free(body);
    cr_assert_eq(ops_http_request(port, "/metrics", headers, NULL, NULL), 200);
}

TestSuite(httpauth_server, .init = setup, .fini = teardown, .timeout = 180);

Test(httpauth_server, token_required_open_and_health)
{
    check_requires_token(port_token_file);
    check_requires_token(port_env_loopback);
    /* http_open=1 without a token: served to anyone, as loopback without a token. */
    cr_assert_eq(get(port_open, "/metrics", NULL, NULL), 200);
    cr_assert_eq(get(port_open, "/api/stats", NULL, NULL), 200);
    cr_assert_eq(get(port_open, "/?token=anything-at-all-here", NULL, NULL), 200,
                 "no token to set: the page");
    cr_assert_eq(get(port_open, "/healthz", NULL, NULL), 200);
}
