/* opstest.c - helpers of the operations suites (see opstest.h). */
#include "opstest.h"

#include "fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char SLOW_JSON[] =
    "{\"name\": \"slow\", \"version\": 1,\n"
    " \"description\": \"Test saga: one step whose reply may take five minutes.\",\n"
    " \"defaults\": {\"timeout_ms\": 300000},\n"
    " \"steps\": [{\"name\": \"hold\", \"topic\": \"inventory.commands\",\n"
    "   \"action\": {\"command\": \"inventory.hold\", \"payload\": {\"saga\": \"{{saga.id}}\"}},\n"
    "   \"compensation\": {\"command\": \"inventory.unhold\", \"payload\": {\"saga\": \"{{saga.id}}\"}}}]}\n";

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = s && n > 0 ? fread(s, 1, (size_t)n, f) : 0;
    if (s)
        s[got] = '\0';
    fclose(f);
    return s;
}

int ops_run(ops_run_t *r, const char *const *argv, const char *const *env,
            const char *stdin_text, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    char dir[] = "/tmp/saga-opsrun-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    char outp[64], errp[64], inp[64];
    snprintf(outp, sizeof outp, "%s/out", dir);
    snprintf(errp, sizeof errp, "%s/err", dir);
    snprintf(inp, sizeof inp, "%s/in", dir);
    FILE *in = fopen(inp, "w");
    if (in) {
        if (stdin_text)
            fputs(stdin_text, in);
        fclose(in);
    }
    /* The environment is built before fork: the child of a threaded process may only
     * call async-signal-safe functions until exec. */
    extern char **environ;
    size_t ne = 0, nx = 0;
    while (environ[ne])
        ne++;
    while (env && env[nx])
        nx++;
    char **envp = calloc(ne + nx + 1, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; envp && i < ne; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) + 1 : strlen(environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < nx; j++)
            overridden = overridden || strncmp(env[j], environ[i], nl) == 0;
        if (!overridden)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; envp && j < nx; j++)
        envp[k++] = (char *)env[j];
    pid_t pid = envp ? fork() : -1;
    if (pid == 0) {
        int fi = open(stdin_text ? inp : "/dev/null", O_RDONLY);
        int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fi < 0 || fo < 0 || fe < 0)
            _exit(127);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    if (pid > 0) {
        int st;
        int64_t deadline = fixture_now_ms() + timeout_ms;
        pid_t w;
        while ((w = waitpid(pid, &st, WNOHANG)) == 0 && fixture_now_ms() < deadline)
            usleep(10 * 1000);
        if (w == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fprintf(stderr, "ops_run: %s timed out\n", argv[0]);
        } else if (w == pid) {
            r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
    }
    free(envp);
    r->out = slurp(outp);
    r->err = slurp(errp);
    unlink(outp);
    unlink(errp);
    unlink(inp);
    rmdir(dir);
    return r->status;
}

void ops_run_release(ops_run_t *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

int ops_http_request(int port, const char *path, const char *const *headers, char **head,
                     char **body)
{
    if (body)
        *body = NULL;
    if (head)
        *head = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    char req[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n", path);
    for (size_t i = 0; headers && headers[i] && n > 0 && (size_t)n < sizeof req; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "%s\r\n", headers[i]);
    if (n > 0 && (size_t)n < sizeof req)
        n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    if (n < 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    char *sep = strstr(buf, "\r\n\r\n");
    if (body)
        *body = strdup(sep ? sep + 4 : "");
    if (head)
        *head = strndup(buf, sep ? (size_t)(sep - buf) + 2 : len);
    free(buf);
    return status;
}

int ops_http_get(int port, const char *path, char **body)
{
    return ops_http_request(port, path, NULL, NULL, body);
}

int ops_defs_make(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/saga-opsdefs-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    const char *src = getenv("SAGA_SOURCE_DIR");
    char from[PATH_MAX], to[PATH_MAX + 32];
    snprintf(from, sizeof from, "%s/tests/sagas/order.json", src && *src ? src : ".");
    snprintf(to, sizeof to, "%s/order.json", dir);
    char *order = slurp(from);
    FILE *f = fopen(to, "w");
    if (!f || !order || !*order) {
        if (f)
            fclose(f);
        free(order);
        return -1;
    }
    fputs(order, f);
    fclose(f);
    free(order);
    snprintf(to, sizeof to, "%s/slow.json", dir);
    f = fopen(to, "w");
    if (!f)
        return -1;
    fputs(SLOW_JSON, f);
    fclose(f);
    return 0;
}

void ops_defs_remove(const char *dir)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/order.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/slow.json", dir);
    unlink(p);
    rmdir(dir);
}
