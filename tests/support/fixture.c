/* fixture.c - test fixtures: child processes, redis-server, saga-devbroker and Kafka test clients (see fixture.h). */
/* _GNU_SOURCE (execvpe, pipe2) comes from the build. */
#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FIXTURE_PORT_ATTEMPTS 3        /* a "free" port can be taken before redis binds it */
#define FIXTURE_LOG_TAIL_LINES 20      /* printed from a server's log when it fails to start */
#define FIXTURE_CONNECT_TIMEOUT_MS 2000
#define FIXTURE_PROBE_TIMEOUT_MS 500   /* one PING or Metadata attempt */
#define FIXTURE_MESSAGE_TIMEOUT_MS 10000 /* producer message.timeout.ms: bounds fixture_produce */
#define FIXTURE_CLIENT_POLL_MS 100
#define FIXTURE_HEARTBEAT_MS 500       /* fast rejoin after a rebalance starts */
#define FIXTURE_MAX_TOPICS 64          /* topics in one fixture_broker_start spec */
#define FIXTURE_MAX_ENV 4096           /* entries in a spawned child's environment */
#define FIXTURE_EXIT_EXEC_FAILED 127

extern char **environ;

static atomic_int fixture_client_seq;

/* ---- time and waiting ---------------------------------------------------------------- */

int64_t fixture_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fixture_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool fixture_wait_until(bool (*cond)(void *opaque), void *opaque, int timeout_ms)
{
    int64_t deadline = fixture_now_ms() + timeout_ms;
    for (;;) {
        if (cond(opaque))
            return true;
        if (fixture_now_ms() >= deadline)
            return cond(opaque);
        fixture_sleep_ms(FIXTURE_POLL_MS);
    }
}

/* ---- small file helpers -------------------------------------------------------------- */

static bool fixture_keep_dirs(void)
{
    const char *v = getenv("SAGA_TEST_KEEP");
    return v && strcmp(v, "1") == 0;
}

static int fixture_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "fixture: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* Removes dir recursively (or keeps it when SAGA_TEST_KEEP=1) and empties the string. */
static void fixture_dir_remove(char *dir)
{
    if (dir[0] == '\0')
        return;
    if (fixture_keep_dirs())
        fprintf(stderr, "fixture: keeping %s (SAGA_TEST_KEEP=1)\n", dir);
    else
        (void)nftw(dir, fixture_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
}

static int fixture_dir_make(char *dir, size_t size, const char *prefix)
{
    if (snprintf(dir, size, "/tmp/%s-XXXXXX", prefix) >= (int)size || !mkdtemp(dir)) {
        fprintf(stderr, "fixture: mkdtemp /tmp/%s-XXXXXX: %s\n", prefix, strerror(errno));
        dir[0] = '\0';
        return -1;
    }
    return 0;
}

/* Prints the last lines of a log file to stderr, to explain why a server did not start. */
static void fixture_log_tail_print(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char *lines[FIXTURE_LOG_TAIL_LINES] = {0};
    size_t n = 0;
    char buf[1024];
    while (fgets(buf, sizeof buf, f)) {
        free(lines[n % FIXTURE_LOG_TAIL_LINES]);
        lines[n % FIXTURE_LOG_TAIL_LINES] = strdup(buf);
        n++;
    }
    fclose(f);
    size_t first = n > FIXTURE_LOG_TAIL_LINES ? n - FIXTURE_LOG_TAIL_LINES : 0;
    fprintf(stderr, "fixture: --- last lines of %s (%s) ---\n", what, path);
    for (size_t i = first; i < n; i++) {
        const char *l = lines[i % FIXTURE_LOG_TAIL_LINES];
        fprintf(stderr, "  %s%s", l ? l : "?\n", l && l[strlen(l) - 1] != '\n' ? "\n" : "");
    }
    for (size_t i = 0; i < FIXTURE_LOG_TAIL_LINES; i++)
        free(lines[i]);
}

bool fixture_file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[4096];
    bool found = false;
    while (!found && fgets(buf, sizeof buf, f))
        found = strstr(buf, needle) != NULL;
    fclose(f);
    return found;
}

/* ---- processes ----------------------------------------------------------------------- */

int fixture_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "fixture: socket: %s\n", strerror(errno));
        return -1;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
        fprintf(stderr, "fixture: bind 127.0.0.1:0: %s\n", strerror(errno));
    else
        port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

int fixture_bin_path(const char *name, char *out, size_t out_size)
{
    const char *bin = getenv("SAGA_BIN_DIR");
    if (!bin || !*bin) {
        fprintf(stderr, "fixture: SAGA_BIN_DIR is not set (run the tests through ctest)\n");
        return -1;
    }
    if (snprintf(out, out_size, "%s/%s", bin, name) >= (int)out_size) {
        fprintf(stderr, "fixture: path of %s too long\n", name);
        return -1;
    }
    if (access(out, X_OK) != 0) {
        fprintf(stderr, "fixture: %s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

static size_t fixture_env_key_len(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* Builds environ + extra (extra wins on equal keys) as a new NULL-terminated array of
 * borrowed strings. Done before fork: the child of a threaded process must not malloc. */
static char **fixture_env_build(const char *const extra[])
{
    size_t n_env = 0, n_extra = 0;
    while (environ && environ[n_env])
        n_env++;
    while (extra && extra[n_extra])
        n_extra++;
    if (n_env + n_extra >= FIXTURE_MAX_ENV)
        return NULL;
    char **envp = calloc(n_env + n_extra + 1, sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        size_t klen = fixture_env_key_len(environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < n_extra && !overridden; j++)
            overridden = fixture_env_key_len(extra[j]) == klen && strncmp(extra[j], environ[i], klen) == 0;
        if (!overridden)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++)
        envp[k++] = (char *)extra[j];
    envp[k] = NULL;
    return envp;
}

/* In the child after fork: only async-signal-safe calls, then exec. Reports errno on fd. */
static void fixture_child_exec(const char *const argv[], char **envp, int devnull, int logfd, int errfd,
                               pid_t parent)
{
    (void)setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(FIXTURE_EXIT_EXEC_FAILED); /* the parent is already gone */
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    const int reset[] = {SIGPIPE, SIGTERM, SIGINT, SIGCHLD, SIGHUP};
    for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
        (void)signal(reset[i], SIG_DFL);
    if (dup2(devnull, STDIN_FILENO) < 0)
        goto fail;
    if (logfd >= 0 && (dup2(logfd, STDOUT_FILENO) < 0 || dup2(logfd, STDERR_FILENO) < 0))
        goto fail;
    execvpe(argv[0], (char *const *)argv, envp);
fail:;
    int e = errno;
    ssize_t w = write(errfd, &e, sizeof e);
    (void)w;
    _exit(FIXTURE_EXIT_EXEC_FAILED);
}

pid_t fixture_spawn(const char *const argv[], const char *log_path, const char *const env[])
{
    if (!argv || !argv[0]) {
        fprintf(stderr, "fixture: spawn: empty argv\n");
        return -1;
    }
    int devnull = -1, logfd = -1, errpipe[2] = {-1, -1};
    char **envp = NULL;
    pid_t pid = -1;

    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) {
        fprintf(stderr, "fixture: spawn %s: /dev/null: %s\n", argv[0], strerror(errno));
        goto out;
    }
    if (log_path) {
        logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0) {
            fprintf(stderr, "fixture: spawn %s: log %s: %s\n", argv[0], log_path, strerror(errno));
            goto out;
        }
    }
    envp = fixture_env_build(env);
    if (!envp) {
        fprintf(stderr, "fixture: spawn %s: cannot build the environment\n", argv[0]);
        goto out;
    }
    if (pipe2(errpipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "fixture: spawn %s: pipe: %s\n", argv[0], strerror(errno));
        goto out;
    }
    fflush(NULL); /* or the child's exit path could flush our buffers twice */
    pid_t parent = getpid();
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fixture: spawn %s: fork: %s\n", argv[0], strerror(errno));
        goto out;
    }
    if (pid == 0)
        fixture_child_exec(argv, envp, devnull, logfd, errpipe[1], parent);

    (void)setpgid(pid, pid); /* also here, so a stop right after spawn finds the group */
    close(errpipe[1]);
    errpipe[1] = -1;
    int child_errno = 0;
    ssize_t r;
    do
        r = read(errpipe[0], &child_errno, sizeof child_errno);
    while (r < 0 && errno == EINTR);
    if (r > 0) { /* exec failed: the pipe carried errno instead of closing on exec */
        fprintf(stderr, "fixture: spawn %s: %s\n", argv[0], strerror(child_errno));
        (void)waitpid(pid, NULL, 0);
        pid = -1;
    }
out:
    free(envp);
    if (devnull >= 0)
        close(devnull);
    if (logfd >= 0)
        close(logfd);
    if (errpipe[0] >= 0)
        close(errpipe[0]);
    if (errpipe[1] >= 0)
        close(errpipe[1]);
    return pid;
}

int fixture_wait_exit(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = fixture_now_ms() + timeout_ms;
    int nap = 1;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (status)
                *status = st;
            return 0;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (fixture_now_ms() >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        fixture_sleep_ms(nap);
        if (nap < FIXTURE_POLL_MS * 2)
            nap *= 2;
    }
}

int fixture_stop_process(pid_t pid, int timeout_ms)
{
    if (pid <= 0)
        return 0;
    if (kill(pid, SIGTERM) != 0 && errno != ESRCH) {
        fprintf(stderr, "fixture: kill %ld: %s\n", (long)pid, strerror(errno));
        return -1;
    }
    if (fixture_wait_exit(pid, timeout_ms, NULL) == 0)
        return 0;
    if (errno != ETIMEDOUT) {
        fprintf(stderr, "fixture: waitpid %ld: %s\n", (long)pid, strerror(errno));
        return -1;
    }
    fprintf(stderr, "fixture: pid %ld ignored SIGTERM for %d ms, sending SIGKILL to its group\n", (long)pid,
            timeout_ms);
    (void)kill(-pid, SIGKILL);
    (void)kill(pid, SIGKILL);
    if (fixture_wait_exit(pid, FIXTURE_STOP_TIMEOUT_MS, NULL) != 0) {
        fprintf(stderr, "fixture: pid %ld survived SIGKILL: %s\n", (long)pid, strerror(errno));
        return -1;
    }
    return 0;
}

/* Waits for a just-spawned server: ready(opaque) until true, but stops early when the
 * child exits. Returns 0 ready, -1 timeout, 1 exited (reaped, *pid set to 0). */
typedef struct fixture_ready_wait {
    pid_t *pid;
    bool (*ready)(void *opaque);
    void *opaque;
    bool exited;
} fixture_ready_wait_t;

static bool fixture_ready_or_exited(void *opaque)
{
    fixture_ready_wait_t *w = opaque;
    int st;
    if (waitpid(*w->pid, &st, WNOHANG) == *w->pid) {
        w->exited = true;
        *w->pid = 0;
        return true;
    }
    return w->ready(w->opaque);
}

static int fixture_ready_wait(pid_t *pid, bool (*ready)(void *), void *opaque, int timeout_ms)
{
    fixture_ready_wait_t w = {.pid = pid, .ready = ready, .opaque = opaque, .exited = false};
    if (!fixture_wait_until(fixture_ready_or_exited, &w, timeout_ms))
        return -1;
    return w.exited ? 1 : 0;
}

/* ---- redis-server -------------------------------------------------------------------- */

static bool fixture_redis_pong(void *opaque)
{
    const redis_fixture_t *r = opaque;
    struct timeval tv = {.tv_sec = 0, .tv_usec = FIXTURE_PROBE_TIMEOUT_MS * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    bool ok = false;
    if (c && !c->err) {
        (void)redisSetTimeout(c, tv);
        redisReply *rep = redisCommand(c, "PING");
        ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
        freeReplyObject(rep);
    }
    redisFree(c);
    return ok;
}

/* Starts redis-server on r->port with dir/redis.conf and waits for PONG.
 * Returns 0, -1 on failure, 1 if the port was taken (retry with another). */
static int fixture_redis_launch(redis_fixture_t *r)
{
    char conf[PATH_MAX + 16], out[PATH_MAX + 16], log[PATH_MAX + 16], port[16];
    snprintf(conf, sizeof conf, "%s/redis.conf", r->dir);
    snprintf(out, sizeof out, "%s/stdout.log", r->dir);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    snprintf(port, sizeof port, "%d", r->port);
    const char *argv[] = {"redis-server", conf, "--port", port, r->sentinel ? "--sentinel" : NULL,
                          NULL};
    r->pid = fixture_spawn(argv, out, NULL);
    if (r->pid < 0) {
        r->pid = 0;
        return -1;
    }
    int w = fixture_ready_wait(&r->pid, fixture_redis_pong, r, FIXTURE_START_TIMEOUT_MS);
    if (w == 0)
        return 0;
    if (w == 1 && fixture_file_contains(log, "Address already in use"))
        return 1;
    fprintf(stderr, "fixture: redis-server on port %d %s\n", r->port,
            w == 1 ? "exited during start-up" : "did not answer PING in time");
    fixture_log_tail_print("redis-server", log);
    fixture_log_tail_print("redis-server stdout", out);
    (void)fixture_stop_process(r->pid, FIXTURE_STOP_TIMEOUT_MS);
    r->pid = 0;
    return -1;
}

static int redis_start(redis_fixture_t *r, const char *extra_config, bool sentinel)
{
    memset(r, 0, sizeof *r);
    r->sentinel = sentinel;
    if (fixture_dir_make(r->dir, sizeof r->dir, "saga-redis") != 0)
        return -1;
    char conf[PATH_MAX + 16];
    snprintf(conf, sizeof conf, "%s/redis.conf", r->dir);
    FILE *f = fopen(conf, "w");
    if (!f) {
        fprintf(stderr, "fixture: %s: %s\n", conf, strerror(errno));
        goto err;
    }
    fprintf(f,
            "bind 127.0.0.1\n"
            "protected-mode yes\n"
            "daemonize no\n"
            "dir \"%s\"\n"
            "logfile \"%s/redis.log\"\n"
            "save \"\"\n"
            "appendonly no\n"
            "%s%s",
            r->dir, r->dir, extra_config ? extra_config : "",
            extra_config && *extra_config && extra_config[strlen(extra_config) - 1] != '\n' ? "\n" : "");
    if (fclose(f) != 0) {
        fprintf(stderr, "fixture: writing %s: %s\n", conf, strerror(errno));
        goto err;
    }
    for (int attempt = 0; attempt < FIXTURE_PORT_ATTEMPTS; attempt++) {
        r->port = fixture_free_port();
        if (r->port < 0)
            goto err;
        int rc = fixture_redis_launch(r);
        if (rc == 0)
            return 0;
        if (rc < 0)
            goto err;
        fprintf(stderr, "fixture: redis port %d was taken, trying another\n", r->port);
    }
    fprintf(stderr, "fixture: redis-server: no free port after %d attempts\n", FIXTURE_PORT_ATTEMPTS);
err:
    fixture_redis_stop(r);
    return -1;
}

int fixture_redis_start(redis_fixture_t *r, const char *extra_config)
{
    return redis_start(r, extra_config, false);
}

int fixture_sentinel_start(redis_fixture_t *r, const char *config)
{
    return redis_start(r, config, true);
}

void fixture_redis_stop(redis_fixture_t *r)
{
    if (!r)
        return;
    (void)fixture_stop_process(r->pid, FIXTURE_STOP_TIMEOUT_MS);
    fixture_dir_remove(r->dir);
    memset(r, 0, sizeof *r);
}

int fixture_redis_restart(redis_fixture_t *r)
{
    if (!r || r->dir[0] == '\0' || r->port <= 0) {
        fprintf(stderr, "fixture: redis restart: not started\n");
        return -1;
    }
    if (fixture_stop_process(r->pid, FIXTURE_STOP_TIMEOUT_MS) != 0)
        return -1;
    r->pid = 0;
    int rc = fixture_redis_launch(r);
    if (rc == 1)
        fprintf(stderr, "fixture: redis restart: port %d is now taken by another process\n", r->port);
    return rc == 0 ? 0 : -1;
}

int fixture_redis_kill(redis_fixture_t *r)
{
    if (!r || r->pid <= 0) {
        fprintf(stderr, "fixture: redis kill: not running\n");
        return -1;
    }
    if (kill(r->pid, SIGKILL) != 0 || fixture_wait_exit(r->pid, FIXTURE_STOP_TIMEOUT_MS, NULL) != 0) {
        fprintf(stderr, "fixture: redis kill: pid %d did not exit\n", (int)r->pid);
        return -1;
    }
    r->pid = 0;
    return 0;
}

int fixture_redis_start_again(redis_fixture_t *r)
{
    if (!r || r->dir[0] == '\0' || r->port <= 0 || r->pid > 0) {
        fprintf(stderr, "fixture: redis start again: not killed before\n");
        return -1;
    }
    int rc = fixture_redis_launch(r);
    if (rc == 1)
        fprintf(stderr, "fixture: redis start again: port %d is now taken by another process\n",
                r->port);
    return rc == 0 ? 0 : -1;
}

int fixture_redis_start_again_replica(redis_fixture_t *r, int primary_port)
{
    if (!r || r->dir[0] == '\0' || r->pid > 0) {
        fprintf(stderr, "fixture: redis start again: not killed before\n");
        return -1;
    }
    char conf[PATH_MAX + 16];
    snprintf(conf, sizeof conf, "%s/redis.conf", r->dir);
    FILE *f = fopen(conf, "a");
    if (!f) {
        fprintf(stderr, "fixture: %s: %s\n", conf, strerror(errno));
        return -1;
    }
    int written = fprintf(f, "\nreplicaof 127.0.0.1 %d\n", primary_port);
    if (fclose(f) != 0 || written < 0) {
        fprintf(stderr, "fixture: appending to %s: %s\n", conf, strerror(errno));
        return -1;
    }
    return fixture_redis_start_again(r);
}

redisContext *fixture_redis_connect(const redis_fixture_t *r)
{
    if (!r || r->port <= 0) {
        fprintf(stderr, "fixture: redis connect: not started\n");
        return NULL;
    }
    struct timeval tv = {.tv_sec = FIXTURE_CONNECT_TIMEOUT_MS / 1000, .tv_usec = 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (!c || c->err) {
        fprintf(stderr, "fixture: redis connect 127.0.0.1:%d: %s\n", r->port, c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    return c;
}

/* ---- saga-devbroker ------------------------------------------------------------------ */

typedef struct fixture_topic_spec {
    char name[256];
    int partitions;
} fixture_topic_spec_t;

/* Parses "a:4,b:1" into specs. Returns the count, or -1 on a malformed spec. */
static int fixture_topics_parse(const char *topics, fixture_topic_spec_t *out, int max)
{
    int n = 0;
    const char *p = topics;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        if (n >= max || !colon || colon == p || (size_t)(colon - p) >= sizeof out[n].name)
            return -1;
        memcpy(out[n].name, p, (size_t)(colon - p));
        out[n].name[colon - p] = '\0';
        out[n].partitions = atoi(colon + 1);
        n++;
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

static bool fixture_file_exists(void *opaque)
{
    return access((const char *)opaque, F_OK) == 0;
}

typedef struct fixture_metadata_probe {
    rd_kafka_t *rk;
    const fixture_topic_spec_t *topics;
    int topic_cnt;
} fixture_metadata_probe_t;

/* True when metadata lists every wanted topic with its partition count and leaders. */
static bool fixture_metadata_ready(void *opaque)
{
    fixture_metadata_probe_t *p = opaque;
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(p->rk, 1, NULL, &md, FIXTURE_PROBE_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    int found = 0;
    for (int i = 0; i < p->topic_cnt; i++) {
        for (int t = 0; t < md->topic_cnt; t++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[t];
            if (strcmp(mt->topic, p->topics[i].name) != 0 || mt->err ||
                mt->partition_cnt != p->topics[i].partitions)
                continue;
            bool leaders = true;
            for (int k = 0; k < mt->partition_cnt; k++)
                leaders &= mt->partitions[k].leader >= 0;
            found += leaders;
            break;
        }
    }
    rd_kafka_metadata_destroy(md);
    return found == p->topic_cnt;
}

static rd_kafka_conf_t *fixture_conf_new(const char *bootstrap)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "fixture: bootstrap.servers=%s: %s\n", bootstrap, errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

static int fixture_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "fixture: %s=%s: %s\n", name, value, errstr);
        return -1;
    }
    return 0;
}

/* Waits until the broker at b->bootstrap lists the topics. Returns 0 or -1. */
static int fixture_broker_probe(const broker_fixture_t *b, const char *topics)
{
    fixture_topic_spec_t specs[FIXTURE_MAX_TOPICS];
    int n = fixture_topics_parse(topics, specs, FIXTURE_MAX_TOPICS);
    if (n < 0) {
        fprintf(stderr, "fixture: broker: malformed topics '%s'\n", topics);
        return -1;
    }
    char errstr[256];
    rd_kafka_conf_t *conf = fixture_conf_new(b->bootstrap);
    if (!conf)
        return -1;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "fixture: broker probe: rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    fixture_metadata_probe_t probe = {.rk = rk, .topics = specs, .topic_cnt = n};
    bool ok = fixture_wait_until(fixture_metadata_ready, &probe, FIXTURE_START_TIMEOUT_MS);
    rd_kafka_destroy(rk);
    if (!ok)
        fprintf(stderr, "fixture: broker %s: metadata did not list topics '%s' in time\n", b->bootstrap,
                topics ? topics : "");
    return ok ? 0 : -1;
}

int fixture_broker_start(broker_fixture_t *b, int brokers, const char *topics)
{
    memset(b, 0, sizeof *b);
    char bin[PATH_MAX], file[PATH_MAX + 16], log[PATH_MAX + 16], count[16];
    if (fixture_bin_path("saga-devbroker", bin, sizeof bin) != 0)
        return -1;
    if (fixture_dir_make(b->dir, sizeof b->dir, "saga-broker") != 0)
        return -1;
    snprintf(file, sizeof file, "%s/bootstrap", b->dir);
    snprintf(log, sizeof log, "%s/devbroker.log", b->dir);
    snprintf(count, sizeof count, "%d", brokers);
    bool with_topics = topics && *topics;
    const char *argv[] = {bin, "--brokers", count, "--bootstrap-file", file,
                          with_topics ? "--topics" : NULL, topics, NULL};
    b->pid = fixture_spawn(argv, log, NULL);
    if (b->pid < 0) {
        b->pid = 0;
        goto err;
    }
    int w = fixture_ready_wait(&b->pid, fixture_file_exists, file, FIXTURE_START_TIMEOUT_MS);
    if (w != 0) {
        fprintf(stderr, "fixture: saga-devbroker %s\n",
                w == 1 ? "exited during start-up" : "wrote no bootstrap file in time");
        fixture_log_tail_print("saga-devbroker", log);
        goto err;
    }
    FILE *f = fopen(file, "r");
    if (!f || !fgets(b->bootstrap, sizeof b->bootstrap, f)) {
        fprintf(stderr, "fixture: reading %s: %s\n", file, f ? "empty" : strerror(errno));
        if (f)
            fclose(f);
        goto err;
    }
    fclose(f);
    b->bootstrap[strcspn(b->bootstrap, "\r\n")] = '\0';
    if (fixture_broker_probe(b, with_topics ? topics : NULL) != 0) {
        fixture_log_tail_print("saga-devbroker", log);
        goto err;
    }
    return 0;
err:
    fixture_broker_stop(b);
    return -1;
}

void fixture_broker_stop(broker_fixture_t *b)
{
    if (!b)
        return;
    (void)fixture_stop_process(b->pid, FIXTURE_STOP_TIMEOUT_MS);
    fixture_dir_remove(b->dir);
    memset(b, 0, sizeof *b);
}

/* ---- producer ------------------------------------------------------------------------ */

typedef struct fixture_delivery {
    bool done;
    rd_kafka_resp_err_t err;
} fixture_delivery_t;

static void fixture_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    fixture_delivery_t *d = m->_private; /* NULL when the caller produced on its own */
    if (d) {
        d->err = m->err;
        d->done = true;
    }
}

rd_kafka_t *fixture_producer_new(const char *bootstrap)
{
    char errstr[256], timeout[16];
    rd_kafka_conf_t *conf = fixture_conf_new(bootstrap);
    if (!conf)
        return NULL;
    snprintf(timeout, sizeof timeout, "%d", FIXTURE_MESSAGE_TIMEOUT_MS);
    if (fixture_conf_set(conf, "enable.idempotence", "true") != 0 ||
        fixture_conf_set(conf, "partitioner", "murmur2_random") != 0 ||
        fixture_conf_set(conf, "message.timeout.ms", timeout) != 0 ||
        fixture_conf_set(conf, "linger.ms", "1") != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, fixture_on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "fixture: producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int fixture_produce(rd_kafka_t *p, const char *topic, int partition, const char *key, const char *value)
{
    if (!p || !topic) {
        fprintf(stderr, "fixture: produce: no producer or topic\n");
        return -1;
    }
    fixture_delivery_t d = {.done = false, .err = RD_KAFKA_RESP_ERR_NO_ERROR};
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)value, value ? strlen(value) : 0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
    if (err) {
        fprintf(stderr, "fixture: produce to %s: %s\n", topic, rd_kafka_err2str(err));
        return -1;
    }
    /* message.timeout.ms guarantees a report; past it (plus slack) purge, which reports
     * too, so &d is never written after we return. */
    int64_t deadline = fixture_now_ms() + FIXTURE_MESSAGE_TIMEOUT_MS + FIXTURE_START_TIMEOUT_MS;
    bool purged = false;
    while (!d.done) {
        rd_kafka_poll(p, FIXTURE_CLIENT_POLL_MS);
        if (!d.done && !purged && fixture_now_ms() > deadline) {
            (void)rd_kafka_purge(p, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            purged = true;
        }
    }
    if (d.err) {
        fprintf(stderr, "fixture: delivery to %s: %s\n", topic, rd_kafka_err2str(d.err));
        return -1;
    }
    return 0;
}

/* ---- consumer ------------------------------------------------------------------------ */

struct fixture_consumer {
    rd_kafka_t *rk;
    atomic_int assigned; /* partitions currently assigned */
};

/* Eager rebalance: take what is given, drop everything on revoke; count for tests. */
static void fixture_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                                 void *opaque)
{
    fixture_consumer_t *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
        if (e)
            fprintf(stderr, "fixture: assign: %s\n", rd_kafka_err2str(e));
        atomic_store(&c->assigned, e ? 0 : parts->cnt);
    } else {
        (void)rd_kafka_assign(rk, NULL);
        atomic_store(&c->assigned, 0);
    }
}

/* Assigns every partition of topic from the beginning (no group). Returns 0 or -1. */
static int fixture_consumer_assign_all(fixture_consumer_t *c, const char *topic)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, topic, NULL);
    if (!rkt) {
        fprintf(stderr, "fixture: consumer: topic %s: %s\n", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    int64_t deadline = fixture_now_ms() + FIXTURE_START_TIMEOUT_MS;
    int partitions = 0;
    while (partitions == 0 && fixture_now_ms() < deadline) {
        if (rd_kafka_metadata(c->rk, 0, rkt, &md, FIXTURE_PROBE_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && !md->topics[0].err)
                partitions = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
        if (partitions == 0)
            fixture_sleep_ms(FIXTURE_POLL_MS);
    }
    rd_kafka_topic_destroy(rkt);
    if (partitions == 0) {
        fprintf(stderr, "fixture: consumer: no metadata for topic %s\n", topic);
        return -1;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) {
        fprintf(stderr, "fixture: consumer: assign %s: %s\n", topic, rd_kafka_err2str(err));
        return -1;
    }
    atomic_store(&c->assigned, partitions);
    return 0;
}

fixture_consumer_t *fixture_consumer_new(const char *bootstrap, const char *group, const char *topic)
{
    if (!bootstrap || !topic) {
        fprintf(stderr, "fixture: consumer: bootstrap and topic are required\n");
        return NULL;
    }
    fixture_consumer_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    char errstr[256], group_id[128], session[16], heartbeat[16];
    /* librdkafka's assign() needs a group.id even when no group is joined. */
    if (group)
        snprintf(group_id, sizeof group_id, "%s", group);
    else
        snprintf(group_id, sizeof group_id, "fixture-nogroup-%ld-%d", (long)getpid(),
                 atomic_fetch_add(&fixture_client_seq, 1));
    snprintf(session, sizeof session, "%d", FIXTURE_SESSION_TIMEOUT_MS);
    snprintf(heartbeat, sizeof heartbeat, "%d", FIXTURE_HEARTBEAT_MS);
    rd_kafka_conf_t *conf = fixture_conf_new(bootstrap);
    if (!conf)
        goto err;
    if (fixture_conf_set(conf, "group.id", group_id) != 0 ||
        fixture_conf_set(conf, "auto.offset.reset", "earliest") != 0 ||
        fixture_conf_set(conf, "enable.auto.commit", group ? "true" : "false") != 0 ||
        fixture_conf_set(conf, "session.timeout.ms", session) != 0 ||
        fixture_conf_set(conf, "heartbeat.interval.ms", heartbeat) != 0 ||
        /* Fetches answer within 10 ms (librdkafka's default waits up to 500 ms on an empty
         * partition): what a test or a benchmark measures is the system, not the wait. */
        fixture_conf_set(conf, "fetch.wait.max.ms", "10") != 0 ||
        fixture_conf_set(conf, "fetch.error.backoff.ms", "10") != 0) {
        rd_kafka_conf_destroy(conf);
        goto err;
    }
    rd_kafka_conf_set_opaque(conf, c);
    if (group)
        rd_kafka_conf_set_rebalance_cb(conf, fixture_on_rebalance);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!c->rk) {
        fprintf(stderr, "fixture: consumer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto err;
    }
    (void)rd_kafka_poll_set_consumer(c->rk);
    if (group) {
        rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        if (err) {
            fprintf(stderr, "fixture: consumer: subscribe %s: %s\n", topic, rd_kafka_err2str(err));
            goto err;
        }
    } else if (fixture_consumer_assign_all(c, topic) != 0) {
        goto err;
    }
    return c;
err:
    fixture_consumer_free(c);
    return NULL;
}

static char *fixture_strndup_or_null(const void *p, size_t len)
{
    return p ? strndup(p, len) : NULL;
}

/* Polls one message into *out (caller destroys it). Returns 1, 0 on timeout, -1 fatal. */
static int fixture_consumer_next(rd_kafka_t *rk, int timeout_ms, rd_kafka_message_t **out)
{
    int64_t deadline = fixture_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - fixture_now_ms();
        if (left < 0)
            return 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, left > FIXTURE_CLIENT_POLL_MS ? FIXTURE_CLIENT_POLL_MS : (int)left);
        if (!m)
            continue;
        if (!m->err) {
            *out = m;
            return 1;
        }
        bool fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fprintf(stderr, "fixture: consumer: %s\n", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        if (fatal)
            return -1;
    }
}

int fixture_consume(fixture_consumer_t *c, int timeout_ms, char **key, char **value)
{
    if (key)
        *key = NULL;
    if (value)
        *value = NULL;
    if (!c)
        return -1;
    rd_kafka_message_t *m = NULL;
    int rc = fixture_consumer_next(c->rk, timeout_ms, &m);
    if (rc != 1)
        return rc;
    if (key)
        *key = fixture_strndup_or_null(m->key, m->key_len);
    if (value)
        *value = fixture_strndup_or_null(m->payload, m->len);
    rd_kafka_message_destroy(m);
    return 1;
}

rd_kafka_t *fixture_consumer_handle(fixture_consumer_t *c)
{
    return c ? c->rk : NULL;
}

void fixture_consumer_free(fixture_consumer_t *c)
{
    if (!c)
        return;
    if (c->rk) {
        (void)rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    free(c);
}

/* ---- collector ----------------------------------------------------------------------- */

struct fixture_collector {
    fixture_consumer_t *consumer;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    pthread_mutex_t lock; /* guards msgs, count, cap */
    fixture_message_t **msgs;
    size_t count, cap;
};

static int fixture_collector_append(fixture_collector_t *c, const rd_kafka_message_t *m)
{
    fixture_message_t *fm = calloc(1, sizeof *fm);
    if (!fm)
        return -1;
    fm->key = fixture_strndup_or_null(m->key, m->key_len);
    fm->value = fixture_strndup_or_null(m->payload, m->len);
    fm->partition = m->partition;
    fm->offset = m->offset;
    pthread_mutex_lock(&c->lock);
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        fixture_message_t **grown = realloc(c->msgs, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&c->lock);
            free(fm->key);
            free(fm->value);
            free(fm);
            return -1;
        }
        c->msgs = grown;
        c->cap = cap;
    }
    c->msgs[c->count++] = fm;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void *fixture_collector_run(void *arg)
{
    fixture_collector_t *c = arg;
    while (!atomic_load(&c->stop)) {
        rd_kafka_message_t *m = NULL;
        int rc = fixture_consumer_next(c->consumer->rk, FIXTURE_CLIENT_POLL_MS, &m);
        if (rc < 0)
            break;
        if (rc == 1) {
            if (fixture_collector_append(c, m) != 0)
                fprintf(stderr, "fixture: collector: out of memory, message dropped\n");
            rd_kafka_message_destroy(m);
        }
    }
    return NULL;
}

fixture_collector_t *fixture_collector_new(const char *bootstrap, const char *group, const char *topic)
{
    fixture_collector_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->consumer = fixture_consumer_new(bootstrap, group, topic);
    if (!c->consumer)
        goto err;
    int e = pthread_create(&c->thread, NULL, fixture_collector_run, c);
    if (e != 0) {
        fprintf(stderr, "fixture: collector: pthread_create: %s\n", strerror(e));
        goto err;
    }
    c->thread_started = true;
    return c;
err:
    fixture_collector_free(c);
    return NULL;
}

size_t fixture_collector_count(fixture_collector_t *c)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->lock);
    size_t n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}

typedef struct fixture_collector_goal {
    fixture_collector_t *c;
    size_t n;
    int partitions;
} fixture_collector_goal_t;

static bool fixture_collector_has(void *opaque)
{
    fixture_collector_goal_t *g = opaque;
    return fixture_collector_count(g->c) >= g->n;
}

bool fixture_collector_wait(fixture_collector_t *c, size_t n, int timeout_ms)
{
    fixture_collector_goal_t g = {.c = c, .n = n};
    return c && fixture_wait_until(fixture_collector_has, &g, timeout_ms);
}

int fixture_collector_assigned(fixture_collector_t *c)
{
    return c ? atomic_load(&c->consumer->assigned) : 0;
}

static bool fixture_collector_has_assigned(void *opaque)
{
    fixture_collector_goal_t *g = opaque;
    return fixture_collector_assigned(g->c) == g->partitions;
}

bool fixture_collector_wait_assigned(fixture_collector_t *c, int partitions, int timeout_ms)
{
    fixture_collector_goal_t g = {.c = c, .partitions = partitions};
    return c && fixture_wait_until(fixture_collector_has_assigned, &g, timeout_ms);
}

const fixture_message_t *fixture_collector_at(fixture_collector_t *c, size_t i)
{
    if (!c)
        return NULL;
    pthread_mutex_lock(&c->lock);
    const fixture_message_t *m = i < c->count ? c->msgs[i] : NULL;
    pthread_mutex_unlock(&c->lock);
    return m;
}

size_t fixture_collector_count_key(fixture_collector_t *c, const char *key)
{
    if (!c)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->count; i++) {
        const char *k = c->msgs[i]->key;
        n += (k == NULL && key == NULL) || (k && key && strcmp(k, key) == 0);
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

void fixture_collector_free(fixture_collector_t *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, true);
    if (c->thread_started)
        pthread_join(c->thread, NULL);
    fixture_consumer_free(c->consumer);
    for (size_t i = 0; i < c->count; i++) {
        free(c->msgs[i]->key);
        free(c->msgs[i]->value);
        free(c->msgs[i]);
    }
    free(c->msgs);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int fixture_watermarks(rd_kafka_t *rk, const char *topic, int partition, int64_t *low,
                       int64_t *high)
{
    return rd_kafka_query_watermark_offsets(rk, topic, partition, low, high, 5000) ==
                   RD_KAFKA_RESP_ERR_NO_ERROR
               ? 0
               : -1;
}

bool fixture_info_field(const char *text, const char *field, char *out, size_t len)
{
    size_t fl = strlen(field);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, field, fl) == 0 && p[fl] == ':') {
            const char *v = p + fl + 1;
            snprintf(out, len, "%.*s", (int)strcspn(v, "\r\n"), v);
            return true;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

const char *fixture_redis_info(const redis_fixture_t *r, const char *section, const char *field,
                               char *out, size_t len)
{
    out[0] = '\0';
    redisContext *c = fixture_redis_connect(r);
    redisReply *rep = c ? redisCommand(c, "INFO %s", section) : NULL;
    if (rep && rep->type == REDIS_REPLY_STRING)
        (void)fixture_info_field(rep->str, field, out, len);
    freeReplyObject(rep);
    redisFree(c);
    return out;
}
