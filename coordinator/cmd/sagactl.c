/* sagactl.c - the operator's command line: arguments, settings (the coordinator's, through
 * config.h) and dispatch to the verbs of ctl.h. */
#include "config.h"
#include "ctl.h"
#include "saga_version.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "Usage: sagactl [OPTIONS] VERB [ARGS]\n"
    "\n"
    "Operates sagas: reads their state from Redis (the keys of docs/redis.md) and sends\n"
    "start, abort, retry and skip requests to the coordinators' input topic\n"
    "(docs/protocol.md). sagactl never writes saga state itself.\n"
    "\n"
    "Verbs:\n"
    "  list [--status S] [--definition NAME] [--since T] [--until T] [--limit N] [--cursor C]\n"
    "        sagas, newest first. S: running, compensating, stuck, finished, completed or\n"
    "        compensated (default: all). T: epoch ms, 2026-11-25T16:21:06Z, or an age such\n"
    "        as 30s, 15m, 2h, 7d; compared with the time the saga last changed (stuck: got\n"
    "        stuck, finished: finished). N: 1..1000, default 20. C: the cursor a page printed.\n"
    "  show ID\n"
    "        one saga: status, error, input; each step with its phase, attempts, timings,\n"
    "        output and error; the history of events.\n"
    "  stats\n"
    "        counts per definition and status (the counters hashes) and sagas finished per\n"
    "        minute over the last minute and the last hour (the finished index).\n"
    "  cluster\n"
    "        the whole cluster: the live coordinator instances (member records), each\n"
    "        partition's owner, epoch, when it was taken, sagas active, input lag and\n"
    "        outbox size, and the newest stuck sagas of every partition.\n"
    "  start NAME [--input FILE|-] [--id ID] [--version N] [--wait [--timeout S]]\n"
    "        starts a saga of definition NAME with the JSON object in FILE (- = stdin;\n"
    "        default {}). --id: idempotent start under that id (default: generated).\n"
    "        --version: that definition version (default: the latest). --wait: waits for\n"
    "        the outcome (outcomes topic, and Redis) up to S seconds (default 60).\n"
    "  abort ID [--reason TEXT]\n"
    "        compensates a running saga.\n"
    "  retry ID\n"
    "        gives a stuck saga's failed compensation a fresh retry budget.\n"
    "  skip ID [--reason TEXT]\n"
    "        marks a stuck saga's failed compensation as done by hand (the reason is\n"
    "        recorded) and goes on compensating the earlier steps.\n"
    "  simulate NAME [--input FILE|-] [--fail STEP] [--timeout STEP] [--id ID] [--version N]\n"
    "           [--definitions DIR]\n"
    "        a dry run, without Kafka or Redis: runs definition NAME of the definitions\n"
    "        folder through the coordinator's state machine, every participant replying ok\n"
    "        at once (with stand-ins for the outputs later payloads use), except that the\n"
    "        action of --fail STEP fails (not retryable) and the action of --timeout STEP\n"
    "        never replies. Prints the commands in order with their rendered payloads, then\n"
    "        the compensations, then the final status. Exit 0 when the saga would complete,\n"
    "        3 when it would not (or its input is rejected).\n"
    "\n"
    "Options:\n"
    "  --json           machine-readable output: one JSON document on stdout\n"
    "  --config FILE    a settings file, as the coordinator's (name = value lines)\n"
    "  --NAME=VALUE     any coordinator setting: --bootstrap_servers, --redis_host,\n"
    "                   --redis_port, --redis_user, --redis_password, --redis_db,\n"
    "                   --redis_prefix, --redis_sentinels, --redis_master_name,\n"
    "                   --redis_sentinel_user, --redis_sentinel_password,\n"
    "                   --redis_cluster, --redis_cluster_nodes,\n"
    "                   --input_topic, --outcomes_topic, --kafka.PROP, ...\n"
    "  --help           this text\n"
    "  --version        alone: print sagactl's version and exit (start --version N is the\n"
    "                   definition version)\n"
    "\n"
    "Settings, weakest first: defaults, --config FILE, environment, flags; the same names\n"
    "as the coordinator's: SAGA_BOOTSTRAP_SERVERS, SAGA_REDIS_HOST, SAGA_REDIS_PORT,\n"
    "SAGA_REDIS_USER, SAGA_REDIS_PASSWORD, SAGA_REDIS_DB, SAGA_REDIS_PREFIX,\n"
    "SAGA_REDIS_SENTINELS, SAGA_REDIS_MASTER_NAME, SAGA_REDIS_SENTINEL_USER,\n"
    "SAGA_REDIS_SENTINEL_PASSWORD, SAGA_REDIS_CLUSTER, SAGA_REDIS_CLUSTER_NODES,\n"
    "SAGA_INPUT_TOPIC, SAGA_OUTCOMES_TOPIC, SAGA_KAFKA_<PROP> (any librdkafka property).\n"
    "\n"
    "Exit codes:\n"
    "  0  done (start --wait: the saga completed)\n"
    "  1  usage: unknown verb or option, bad value\n"
    "  2  not found: no such saga\n"
    "  3  the saga ended not completed (start --wait: compensated, stuck or rejected)\n"
    "  4  Redis or Kafka unreachable or failing\n"
    "  5  timed out (start --wait: no outcome within --timeout)\n"
    "  6  not applicable: abort of a saga not running, retry/skip of a saga not stuck\n";

typedef struct args {
    const char *verb;
    const char *positional[2];
    int npositional;
    bool timeout_given;
    const char *timeout_value;  /* --timeout as written: seconds, or simulate's step */
} args_t;

static int usage_error(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "sagactl: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see sagactl --help)\n");
    return CTL_USAGE;
}

/* Finds --config first: the file is weaker than the flags after it. */
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

/* The value of option a: after '=' or the next argument. NULL when missing. */
static const char *option_value(int argc, char **argv, int *i, const char *eq)
{
    if (eq)
        return eq + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int parse_int(const char *name, const char *v, int lo, int hi, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < lo || n > hi) {
        fprintf(stderr, "sagactl: %s: expected an integer from %d to %d, got \"%s\"\n", name, lo,
                hi, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* Parses argv into o, cfg and a. Returns -1 after printing why. */
static int parse(int argc, char **argv, ctl_options_t *o, config_t *cfg, args_t *a)
{
    int64_t now = (int64_t)time(NULL) * 1000;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || strcmp(arg, "--") == 0) {
            if (!a->verb)
                a->verb = arg;
            else if (a->npositional < 2)
                a->positional[a->npositional++] = arg;
            else
                return usage_error("unexpected argument \"%s\"%s", arg, ""), -1;
            continue;
        }
        char name[300];
        const char *eq = strchr(arg, '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq ? (size_t)(eq - arg - 2) : strlen(arg + 2)),
                 arg + 2);
        if (strcmp(name, "json") == 0 && !eq) {
            o->json = true;
            continue;
        }
        if (strcmp(name, "wait") == 0 && !eq) {
            o->wait = true;
            continue;
        }
        static const char *const VALUED[] = {"status", "definition", "since", "until", "limit",
                                             "cursor", "input", "id", "version", "timeout",
                                             "reason", "config", "fail"};
        bool ours = false;
        for (size_t k = 0; k < sizeof VALUED / sizeof *VALUED; k++)
            ours = ours || strcmp(name, VALUED[k]) == 0;
        const char *v = option_value(argc, argv, &i, eq);
        if (!v)
            return usage_error("--%s needs a value%s", name, ""), -1;
        if (!ours) {
            /* A coordinator setting: --redis-port is --redis_port. */
            for (char *p = name; *p; p++)
                if (*p == '-' && strncmp(name, "kafka.", 6) && strncmp(name, "consumer.", 9) &&
                    strncmp(name, "producer.", 9))
                    *p = '_';
            char err[512];
            if (config_set(cfg, name, v, err, sizeof err) < 0) {
                fprintf(stderr, "sagactl: --%s: %s\n", name, err);
                return -1;
            }
            continue;
        }
        if (strcmp(name, "status") == 0) {
            o->status = v;
        } else if (strcmp(name, "definition") == 0) {
            o->definition = v;
        } else if (strcmp(name, "since") == 0 || strcmp(name, "until") == 0) {
            int64_t *t = name[0] == 's' ? &o->since_ms : &o->until_ms;
            if (ctl_parse_time(v, now, t) < 0)
                return usage_error("--%s: expected epoch ms, an ISO time or an age like 15m, "
                                   "got \"%s\"", name, v), -1;
        } else if (strcmp(name, "limit") == 0) {
            if (parse_int("--limit", v, 1, 1000, &o->limit) < 0)
                return -1;
        } else if (strcmp(name, "cursor") == 0) {
            o->cursor = v;
        } else if (strcmp(name, "input") == 0) {
            o->input_path = v;
        } else if (strcmp(name, "id") == 0) {
            o->id = v;
        } else if (strcmp(name, "version") == 0) {
            if (parse_int("--version", v, 1, 1000000, &o->version) < 0)
                return -1;
        } else if (strcmp(name, "timeout") == 0) {
            a->timeout_value = v; /* read once the verb is known */
            a->timeout_given = true;
        } else if (strcmp(name, "reason") == 0) {
            o->reason = v;
        } else if (strcmp(name, "fail") == 0) {
            o->fail_step = v;
        }
        /* --config was read before the environment. */
    }
    if (a->timeout_value && a->verb && strcmp(a->verb, "simulate") == 0) {
        o->timeout_step = a->timeout_value;
    } else if (a->timeout_value) {
        char *end;
        o->timeout_s = strtod(a->timeout_value, &end);
        if (*end != '\0' || o->timeout_s <= 0 || o->timeout_s > 86400)
            return usage_error("--timeout: expected seconds (0 < S <= 86400), got \"%s\"%s",
                               a->timeout_value, ""), -1;
    }
    return 0;
}

/* Which options each verb accepts (others are a usage error, not silently ignored). */
static int check_options(const ctl_options_t *o, const args_t *a)
{
    const char *v = a->verb;
    bool list = strcmp(v, "list") == 0, start = strcmp(v, "start") == 0;
    bool simulate = strcmp(v, "simulate") == 0;
    bool reason_ok = strcmp(v, "abort") == 0 || strcmp(v, "skip") == 0;
    if (!list && (o->status || o->definition || o->since_ms || o->until_ms || o->limit ||
                  o->cursor))
        return usage_error("%s: --status, --definition, --since, --until, --limit and --cursor "
                           "are options of list%s", v, ""), -1;
    if (simulate && (o->wait))
        return usage_error("simulate: --wait is an option of start%s%s", "", ""), -1;
    if (!start && !simulate && (o->input_path || o->id || o->version || o->wait ||
                                a->timeout_given))
        return usage_error("%s: --input, --id, --version, --wait and --timeout are options of "
                           "start (and simulate)%s", v, ""), -1;
    if (!simulate && o->fail_step)
        return usage_error("%s: --fail is an option of simulate%s", v, ""), -1;
    if (!reason_ok && o->reason)
        return usage_error("%s: --reason is an option of abort and skip%s", v, ""), -1;
    if (a->timeout_given && !o->wait && !simulate)
        return usage_error("start: --timeout goes with --wait%s%s", "", ""), -1;
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            strcmp(argv[i], "help") == 0) {
            fputs(USAGE, stdout);
            return CTL_OK;
        }
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("sagactl %s\n", SAGA_VERSION);
        return CTL_OK;
    }
    signal(SIGPIPE, SIG_IGN);
    static config_t cfg; /* large: not on the stack */
    config_defaults(&cfg);
    char err[1024];
    const char *file = find_config_flag(argc, argv);
    if (file && config_load_file(&cfg, file, err, sizeof err) < 0) {
        fprintf(stderr, "sagactl: %s\n", err);
        return CTL_USAGE;
    }
    if (config_load_env(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "sagactl: %s\n", err);
        return CTL_USAGE;
    }
    ctl_options_t o = {.cfg = &cfg, .out = stdout, .err = stderr};
    args_t a = {0};
    if (parse(argc, argv, &o, &cfg, &a) < 0)
        return CTL_USAGE;
    if (!a.verb) {
        fputs(USAGE, stderr);
        return CTL_USAGE;
    }
    if (check_options(&o, &a) < 0)
        return CTL_USAGE;

    static const struct {
        const char *verb;
        int positional;
        const char *what;
    } VERBS[] = {{"list", 0, ""}, {"stats", 0, ""}, {"show", 1, "a saga id"},
                 {"start", 1, "a definition name"}, {"abort", 1, "a saga id"},
                 {"retry", 1, "a saga id"}, {"skip", 1, "a saga id"},
                 {"simulate", 1, "a definition name"}, {"cluster", 0, ""}};
    size_t k = 0;
    while (k < sizeof VERBS / sizeof *VERBS && strcmp(VERBS[k].verb, a.verb) != 0)
        k++;
    if (k == sizeof VERBS / sizeof *VERBS)
        return usage_error("unknown verb \"%s\"%s", a.verb, "");
    if (a.npositional != VERBS[k].positional) {
        if (a.npositional < VERBS[k].positional)
            return usage_error("%s needs %s", a.verb, VERBS[k].what);
        return usage_error("%s: unexpected argument \"%s\"", a.verb,
                           a.positional[VERBS[k].positional]);
    }
    if (strcmp(a.verb, "skip") == 0 && (!o.reason || !*o.reason))
        return usage_error("skip needs --reason TEXT: say why the compensation is done by "
                           "hand%s%s", "", "");

    switch (k) {
    case 0: return ctl_list(&o);
    case 1: return ctl_stats(&o);
    case 2: return ctl_show(&o, a.positional[0]);
    case 3: return ctl_start(&o, a.positional[0]);
    case 7: return ctl_simulate(&o, a.positional[0]);
    case 8: return ctl_cluster(&o);
    default: return ctl_operator(&o, a.verb, a.positional[0]);
    }
}
