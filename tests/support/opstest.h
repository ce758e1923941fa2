/* opstest.h - helpers of the operations suites (sagactl, metrics, dashboard): run a
 * program and capture its output and exit code, a minimal HTTP GET, and a definitions
 * folder with the test saga "order" plus "slow" (one step that waits five minutes for its
 * reply, so a saga stays running as long as a test needs). */
#ifndef SAGA_TEST_OPSTEST_H
#define SAGA_TEST_OPSTEST_H

#include <limits.h>
#include <stddef.h>

typedef struct ops_run {
    int status;      /* exit code, or 128 + signal, or -1 when it could not run */
    char *out;       /* its stdout (owned, NUL-terminated) */
    char *err;       /* its stderr (owned) */
} ops_run_t;

/* Runs argv (argv[0] a path) with stdin from stdin_text (NULL: /dev/null) and the test's
 * environment plus env (NULL-terminated "K=V", may be NULL); waits up to timeout_ms
 * (then SIGKILL, status -1). Returns r->status. Release r with ops_run_release. */
int ops_run(ops_run_t *r, const char *const *argv, const char *const *env,
            const char *stdin_text, int timeout_ms);
void ops_run_release(ops_run_t *r);

/* GET path from 127.0.0.1:port (HTTP/1.0). Returns the status code (body in *body,
 * owned, may be NULL) or -1 when the connection failed. */
int ops_http_get(int port, const char *path, char **body);

/* As ops_http_get, with extra request header lines (each "Name: value"; NULL-terminated,
 * may be NULL); *head gets the response's status line and headers, each line ending in
 * CRLF (owned; head may be NULL). */
int ops_http_request(int port, const char *path, const char *const *headers, char **head,
                     char **body);

/* Makes a temp folder holding tests/sagas/order.json and slow.json; path in dir. Returns
 * 0 or -1. Remove it with ops_defs_remove. */
int ops_defs_make(char *dir, size_t len);
void ops_defs_remove(const char *dir);

#endif
