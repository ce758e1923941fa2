/* saga-coordinator.c - the coordinator daemon: configuration, definitions, signals and
 * the main loop; `--check` validates definitions and `--graph` draws one, then exit. */
#include "check.h"
#include "config.h"
#include "coordinator.h"
#include "catalogue.h"
#include "graph.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "saga_version.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define START_RETRY_FIRST_MS 100  /* a start-up step that found no Redis or Kafka: first wait */
#define START_RETRY_MAX_MS 1000   /* the waits double up to this */
#define START_LOG_EVERY_MS 10000  /* the same reason is logged again at most this often */

static volatile sig_atomic_t stop_requested = 0;
static volatile sig_atomic_t reload_requested = 0;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* SIGHUP: re-read the definitions folder; the loop does it between turns. */
static void on_hangup(int sig)
{
    (void)sig;
    reload_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: saga-coordinator [--config FILE] [--NAME=VALUE ...]\n"
            "       saga-coordinator --check DIR_OR_FILE [--format text|json|github]\n"
            "       saga-coordinator --graph FILE [--graph-format mermaid|dot]\n"
            "\n"
            "Runs sagas declared in JSON definitions: consumes the input topic, sends step\n"
            "commands, compensates in reverse order on failure, keeps every saga in Redis.\n"
            "Instances sharing group_id share the input topic's partitions.\n"
            "\n"
            "  --check PATH    validate the definitions in PATH, print every error, exit 1 on any\n"
            "  --format F      how --check prints errors: text (default), json (JSON Lines, one\n"
            "                  object per error) or github (workflow annotations)\n"
            "  --graph FILE    print the definition in FILE as a Mermaid flowchart\n"
            "  --graph-format F  mermaid (default) or dot (Graphviz)\n"
            "  --config FILE   read settings from FILE (name = value lines)\n"
            "  --help          this text\n"
            "  --version       print the version and exit\n"
            "\n"
            "Precedence: defaults < config file < SAGA_* environment < flags.\n"
            "SIGHUP re-reads the definitions folder: all of it is applied, or nothing\n"
            "(docs/definitions.md, \"Versions and reloading\").\n\n");
    config_usage(out);
    fprintf(out, "\nExit codes: 0 stopped cleanly, 1 invalid definitions or settings, 2 a\n"
                 "fatal error at start (Redis refusing the settings or unsafe, a definition\n"
                 "recorded with other content, a librdkafka property librdkafka refuses,\n"
                 "http_listen not available). A Redis or Kafka that does not answer yet is\n"
                 "waited for, not an exit (docs/operations.md).\n"
                 "--check and --graph: 0 valid, 1 a definition error, 2 bad arguments.\n"
                 "A non-loopback http_listen needs http_token (or http_token_file), or\n"
                 "http_open=1; without either the coordinator does not start (exit 1).\n"
                 "\n"
                 "HTTP (http_listen): GET /metrics (Prometheus), /healthz, /readyz, / (dashboard),\n"
                 "/api/sagas, /api/sagas/ID, /api/stats, /api/throughput,\n"
                 "/api/definitions/NAME?version=V. With a token, all but /healthz and /readyz\n"
                 "need 'Authorization: Bearer TOKEN' (browsers: open /?token=TOKEN).\n"
                 "See docs/operations.md.\n");
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A start-up step waiting for Redis or Kafka to answer (a coordinator started during a
 * Redis failover, or before Redis is up): how long, and what was logged. */
typedef struct start_wait {
    metrics_t *metrics;        /* the health checks show what is waited for */
    int64_t since, logged_at;
    int backoff_ms;
    char logged[512];
} start_wait_t;

/* After a step failed for want of Redis or Kafka (why): logs it (when the reason changes,
 * and every START_LOG_EVERY_MS), sleeps the next backoff, and returns true to try again;
 * false when a stop was asked for meanwhile. */
static bool wait_to_retry(start_wait_t *w, const char *step, const char *why)
{
    int64_t now = mono_ms();
    if (!w->since) {
        w->since = now;
        w->backoff_ms = START_RETRY_FIRST_MS;
    }
    if (strcmp(w->logged, why) != 0 || now - w->logged_at >= START_LOG_EVERY_MS) {
        log_warn("%s: waiting for it to answer (%lld ms so far, trying every %d ms at most): "
                 "%s", step, (long long)(now - w->since), START_RETRY_MAX_MS, why);
        snprintf(w->logged, sizeof w->logged, "%s", why);
        w->logged_at = now;
    }
    char waiting[sizeof w->logged + 64];
    snprintf(waiting, sizeof waiting, "%s: %s", step, why);
    metrics_set_waiting(w->metrics, waiting);
    for (int64_t until = now + w->backoff_ms; !stop_requested && mono_ms() < until;) {
        struct timespec nap = {0, 20 * 1000000L};
        nanosleep(&nap, NULL);
    }
    w->backoff_ms = w->backoff_ms * 2 < START_RETRY_MAX_MS ? w->backoff_ms * 2
                                                           : START_RETRY_MAX_MS;
    return !stop_requested;
}

/* Says how long a step waited, once it succeeded after waiting. */
static void waited(const start_wait_t *w, const char *step)
{
    if (w->since)
        log_info("%s: done after waiting %lld ms", step, (long long)(mono_ms() - w->since));
    metrics_set_waiting(w->metrics, NULL);
}

/* coordinator_new, tried again while Redis does not answer (started with it, or during its
 * failover): an exit only when Redis refuses (coordinator.h). NULL when refused (logged)
 * or when a stop was asked for while waiting (*stopped). */
static coordinator_t *open_coordinator(const config_t *cfg, defn_set_t *defs, metrics_t *metrics,
                                       bool *stopped)
{
    char err[1024];
    bool unavailable = false;
    start_wait_t wait = {.metrics = metrics};
    coordinator_t *c;
    while (!(c = coordinator_new(cfg, defs, metrics, err, sizeof err, &unavailable)) &&
           unavailable && wait_to_retry(&wait, "redis", err))
        ;
    *stopped = !c && unavailable;
    if (c)
        waited(&wait, "redis");
    else if (unavailable)
        log_info("stopped while waiting for Redis");
    else
        log_error("cannot start: %s", err);
    return c;
}

/* The HTTP server's address, for the member record (cluster view). */
static void publish_http_address(coordinator_t *c, const config_t *cfg, http_server_t *http)
{
    char host[256], address[300], err[256];
    int port;
    if (http_parse_listen(cfg->http_listen, host, sizeof host, &port, err, sizeof err) == 0) {
        bool v6 = strchr(host, ':') != NULL;
        snprintf(address, sizeof address, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
                 http_port(http));
        coordinator_set_http_address(c, address);
    }
}

/* coordinator_start, tried again while Kafka's metadata or Redis does not answer, then the
 * loop until a stop. Returns the exit code: 0 after a clean stop (also while waiting), 2
 * after a failure. */
static int start_and_run(coordinator_t *c, metrics_t *metrics)
{
    char err[1024];
    bool unavailable = false;
    start_wait_t wait = {.metrics = metrics};
    int started;
    while ((started = coordinator_start(c, err, sizeof err, &unavailable)) < 0 && unavailable &&
           wait_to_retry(&wait, "saga:meta", err))
        ;
    if (started == 0) {
        waited(&wait, "saga:meta");
        return coordinator_run(c, &stop_requested) == 0 ? 0 : 2;
    }
    if (unavailable) {
        log_info("stopped while waiting for Kafka and Redis");
        return 0;
    }
    log_error("cannot start: %s", err);
    return 2;
}

/* Finds --config among the flags first: the file is weaker than the flags after it. */
static const char *find_config_flag(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

static int apply_flags(config_t *cfg, int argc, char **argv)
{
    char err[512];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "saga-coordinator: unexpected argument \"%s\" (see --help)\n", a);
            return -1;
        }
        char name[300];
        const char *value;
        const char *eq = strchr(a, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a - 2), a + 2);
            value = eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "saga-coordinator: %s needs a value\n", a);
                return -1;
            }
            snprintf(name, sizeof name, "%s", a + 2);
            value = argv[++i];
        }
        for (char *p = name; *p; p++)
            if (*p == '-' && strncmp(name, "kafka.", 6) && strncmp(name, "consumer.", 9) &&
                strncmp(name, "producer.", 9))
                *p = '_';
        if (config_set(cfg, name, value, err, sizeof err) < 0) {
            fprintf(stderr, "saga-coordinator: --%s: %s\n", name, err);
            return -1;
        }
    }
    return 0;
}

/* The value of option argv[*i] ("--name=value" or "--name value"); NULL when missing. */
static const char *tool_value(int argc, char **argv, int *i, size_t name_len)
{
    const char *a = argv[*i];
    if (a[name_len] == '=')
        return a + name_len + 1;
    if (a[name_len] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int tool_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "saga-coordinator: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see --help)\n");
    return CHECK_EXIT_USAGE;
}

/* --check and --graph: a tool run that reads definitions, prints and exits. Returns the
 * exit status (check.h). */
static int run_tool(int argc, char **argv)
{
    const char *check = NULL, *graph = NULL, *format = NULL, *graph_format = NULL;
    static const char *const OPTS[] = {"--check", "--graph", "--format", "--graph-format"};
    const char **vals[] = {&check, &graph, &format, &graph_format};
    for (int i = 1; i < argc; i++) {
        size_t k = 0, n = 0;
        for (; k < sizeof OPTS / sizeof *OPTS; k++) {
            n = strlen(OPTS[k]);
            if (strncmp(argv[i], OPTS[k], n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '='))
                break;
        }
        if (k == sizeof OPTS / sizeof *OPTS)
            return tool_usage("unexpected argument \"%s\" with --check or --graph", argv[i]);
        const char *v = tool_value(argc, argv, &i, n);
        if (!v)
            return tool_usage("%s needs a value", OPTS[k]);
        *vals[k] = v;
    }
    if (check && graph)
        return tool_usage("--check and --graph go alone%s", "");
    if (check) {
        check_format_t fmt = CHECK_FORMAT_TEXT;
        if (graph_format)
            return tool_usage("--graph-format goes with --graph%s", "");
        if (format && check_format_parse(format, &fmt) < 0)
            return tool_usage("--format: expected text, json or github, got \"%s\"", format);
        return check_path(check, fmt, stdout);
    }
    graph_format_t gfmt = GRAPH_MERMAID;
    if (format)
        return tool_usage("--format goes with --check%s", "");
    if (graph_format && graph_format_parse(graph_format, &gfmt) < 0)
        return tool_usage("--graph-format: expected mermaid or dot, got \"%s\"", graph_format);
    defn_errors_t errs = {0};
    definition_t *d = definition_load_file(graph, &errs);
    for (size_t i = 0; i < errs.count; i++) {
        char line[sizeof(defn_error_t) + 64];
        defn_error_format(&errs.items[i], line, sizeof line);
        fprintf(stderr, "%s\n", line);
    }
    defn_errors_release(&errs);
    if (!d)
        return CHECK_EXIT_INVALID;
    int rc = graph_write(d, gfmt, stdout) == 0 ? CHECK_EXIT_OK : CHECK_EXIT_INVALID;
    definition_free(d);
    return rc;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("saga-coordinator %s\n", SAGA_VERSION);
            return 0;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--check", 7) == 0 || strncmp(argv[i], "--graph", 7) == 0)
            return run_tool(argc, argv);
    }

    log_init("coordinator");
    config_t cfg;
    config_defaults(&cfg);
    char err[1024];
    const char *file = find_config_flag(argc, argv);
    if (file && config_load_file(&cfg, file, err, sizeof err) < 0) {
        fprintf(stderr, "saga-coordinator: %s\n", err);
        return 1;
    }
    if (config_load_env(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "saga-coordinator: %s\n", err);
        return 1;
    }
    if (apply_flags(&cfg, argc, argv) < 0)
        return 1;
    log_level_t level;
    if (log_level_parse(cfg.log_level, &level) < 0) {
        fprintf(stderr, "saga-coordinator: log_level: expected debug, info, warn or error\n");
        return 1;
    }
    log_set_level(level);
    /* The HTTP server's access rule is a setting like any other: checked before anything
     * connects (httpauth.h). */
    httpauth_t auth = {0};
    if (cfg.http_listen[0]) {
        bool loopback;
        if (http_listen_is_loopback(cfg.http_listen, &loopback, err, sizeof err) < 0 ||
            httpauth_init(&auth, &cfg, loopback, err, sizeof err) < 0) {
            fprintf(stderr, "saga-coordinator: refusing to start: %s\n", err);
            return 1;
        }
    }
    log_info("saga-coordinator %s starting: instance %s, group %s", SAGA_VERSION,
             cfg.instance_id, cfg.group_id);

    defn_errors_t errs = {0};
    defn_set_t *defs = defn_set_load(cfg.definitions, &errs);
    if (!defs) {
        for (size_t i = 0; i < errs.count; i++) {
            char line[1024];
            defn_error_format(&errs.items[i], line, sizeof line);
            fprintf(stderr, "%s\n", line);
        }
        fprintf(stderr, "saga-coordinator: refusing to start: %zu error(s) in %s\n", errs.count,
                cfg.definitions);
        defn_errors_release(&errs);
        return 1;
    }
    defn_errors_release(&errs);
    log_info("%zu saga definitions loaded from %s", defn_set_count(defs), cfg.definitions);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sigaction hup;
    memset(&hup, 0, sizeof hup);
    hup.sa_handler = on_hangup;
    sigaction(SIGHUP, &hup, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The HTTP server first: while start-up waits for Redis, /healthz says the process is
     * alive and /readyz what it waits for. */
    metrics_t *metrics = metrics_new(defs);
    if (!metrics) {
        log_error("cannot start: out of memory");
        defn_set_free(defs);
        return 2;
    }
    http_server_t *http = NULL;
    if (cfg.http_listen[0]) {
        http = http_start(&cfg, &auth, metrics, err, sizeof err);
        if (!http) {
            log_error("cannot start: %s (set http_listen to another address, or \"\" to turn "
                      "the HTTP server off)", err);
            metrics_free(metrics);
            defn_set_free(defs);
            return 2;
        }
        log_info("http: metrics, health checks and dashboard on %s (port %d)%s", cfg.http_listen,
                 http_port(http),
                 auth.required ? ", bearer token required (but for /healthz, /readyz)" : "");
        if (auth.open)
            log_warn("http: %s is not a loopback address and no http_token is set "
                     "(http_open=1): anyone who reaches it reads every saga",
                     cfg.http_listen);
    }
    bool stopped = false;
    coordinator_t *c = open_coordinator(&cfg, defs, metrics, &stopped);
    if (!c) {
        http_stop(http);
        metrics_free(metrics);
        defn_set_free(defs);
        return stopped ? 0 : 2;
    }
    if (http)
        publish_http_address(c, &cfg, http);
    coordinator_set_reload_flag(c, &reload_requested);
    int rc = start_and_run(c, metrics);
    http_stop(http); /* before the engine: it reads the engine's metrics */
    const coordinator_stats_t *st = coordinator_stats(c);
    log_info("stopped: %llu started, %llu completed, %llu compensated, %llu stuck, %llu "
             "rejected, %llu dead letters",
             (unsigned long long)st->started, (unsigned long long)st->completed,
             (unsigned long long)st->compensated, (unsigned long long)st->stuck,
             (unsigned long long)st->rejected, (unsigned long long)st->dead_letters);
    coordinator_free(c);
    metrics_free(metrics); /* after the engine: it counts into them until freed */
    defn_set_free(defs);
    return rc;
}
