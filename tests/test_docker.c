/* test_docker.c - checks of the Docker deployment (docker/, docs/docker.md) that run
 * without a Docker engine: the image is never built and nothing is started here.
 *
 * - docker/docker-compose.yml: `docker-compose config -q` accepts it, and its normalized
 *   form (`docker-compose config`, turned into JSON) keeps the rules the deployment
 *   promises: two coordinators in one group, ports on 127.0.0.1 only, a durable Redis,
 *   Kafka in KRaft mode without topic auto-creation, every topic created by the one-shot
 *   kafka-init, healthchecks, start order, and every SAGA_* variable is a real setting of
 *   the program it is given to (a misspelt one would be silently ignored at run time).
 *   Also: the image is built by one service only, Kafka is pinned to a release >= 3.7.1,
 *   the project has a name (and the docs use its network name), kafka-init creates no
 *   topic nobody uses. docker-compose is Debian's v1 package (scripts/deps.sh installs
 *   it): as a validator of everything but the top-level `name:`, which v1 does not know
 *   (the file needs Compose v2 to run; `name:` is checked on the raw text); its own Python
 *   (with python3-yaml, a dependency of the package) turns the YAML into JSON. A v2
 *   docker-compose binary is used directly, through `config --format json`.
 * - docker/docker-compose.sentinel.yml, the Sentinel variant (an override of the base
 *   file): the merged configuration keeps the rules above (healthchecks, loopback ports,
 *   durable Redis, real settings), and has a replica, three Sentinels monitoring the
 *   primary under the name every program of ours is given, with their SAGA_REDIS_SENTINELS.
 * - docker/Dockerfile: a small lint (multi-stage, Release without tests installed with
 *   cmake --install, non-root user, healthcheck), and the runtime stage installs a
 *   package for every shared library our binaries link (readelf + dpkg -S).
 * - .gitattributes keeps shell scripts LF (a CRLF healthcheck.sh breaks the image).
 * - docker/healthcheck.sh (the image's saga-healthcheck): run against a tiny HTTP server
 *   and a TCP connection of this test. */
#include "fixture.h"
#include "test_paths.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_COMPOSE "docker/docker-compose.yml"
#define T_COMPOSE_SENTINEL "docker/docker-compose.sentinel.yml"
#define T_DOCKERFILE "docker/Dockerfile"
#define T_HEALTHCHECK "docker/healthcheck.sh"
#define T_IMAGE "saga-coordinator:local"
#define T_EXAMPLE_PREFIX "saga-example-" /* installed names of the example services */
#define T_KAFKA_MIN_VERSION 30701        /* 3.7.1: 3.7.0 has KAFKA-16473 */
#define T_MAX_OUTPUT (4 * 1024 * 1024)

/* ------------------------------------------------------------------------- helpers */

/* Runs cmd with sh -c and returns its stdout (free() it); *status gets the exit code
 * (-1 when it did not exit normally). */
static char *run_capture(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen(%s)", cmd);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 == cap) {
            cr_assert(cap < T_MAX_OUTPUT, "output of %s too large", cmd);
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
    }
    buf[len] = '\0';
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return buf;
}

static char *read_source_file(const char *rel)
{
    char *path = test_source_path(rel);
    cr_assert_not_null(path);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    free(path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    cr_assert_not_null(text);
    cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    return text;
}

static void require_compose(void)
{
    int st;
    free(run_capture("command -v docker-compose >/dev/null 2>&1", &st));
    cr_assert_eq(st, 0,
                 "docker-compose is not installed: scripts/deps.sh installs it (Debian package "
                 "docker-compose); it is needed to validate " T_COMPOSE);
}

/* The compose file as docker-compose normalizes it (anchors merged, defaults filled,
 * `$$` kept escaped), as JSON: docker-compose.yml, merged with the Sentinel override
 * (T_COMPOSE_SENTINEL) when sentinel. v1 gets the base file without its top-level name:
 * (unknown to v1), from a temporary copy (v1 reads no other file with one from stdin). env:
 * shell commands run first (e.g. "export SAGA_HTTP_TOKEN=...;"; NULL: none). */
static json_t *compose_variant_env(bool sentinel, const char *env)
{
    require_compose();
    char cmd[4096];
    const char *more = sentinel ? " -f " T_COMPOSE_SENTINEL : "";
    snprintf(cmd, sizeof cmd,
             "cd '%s' && { %s true; } && dc=$(command -v docker-compose) && "
             "if \"$dc\" config --help 2>&1 | grep -q -- '--format'; then "
             "  \"$dc\" -f " T_COMPOSE "%s config --format json; "
             "else "
             "  py=$(sed -n '1s/^#! *//p' \"$dc\"); [ -n \"$py\" ] || py=/usr/bin/python3; "
             "  t=$(mktemp -d) && sed '/^name:/d' " T_COMPOSE " > \"$t/base.yml\" && "
             "  { \"$dc\" --project-directory \"$(dirname " T_COMPOSE ")\" -f \"$t/base.yml\"%s "
             "config; echo $? > \"$t/rc\"; } | $py -c "
             "'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'; "
             "rc=$(cat \"$t/rc\"); rm -rf \"$t\"; exit $rc; "
             "fi",
             test_source_dir(), env ? env : "", more, more);
    int st;
    char *out = run_capture(cmd, &st);
    cr_assert_eq(st, 0, "docker-compose config (as JSON) failed: %s", out);
    json_error_t err;
    json_t *cfg = json_loads(out, 0, &err);
    cr_assert_not_null(cfg, "docker-compose config output is not JSON: %s", err.text);
    free(out);
    return cfg;
}

static json_t *compose_config_env(const char *env)
{
    return compose_variant_env(false, env);
}

/* The normalized compose file with the variables it substitutes as the test's environment
 * has them. */
static json_t *compose_config(void)
{
    return compose_config_env(NULL);
}

/* The variants every deployment rule holds for: 0 the base file, 1 with Sentinel. */
#define T_VARIANTS 2
static json_t *compose_variant(int v)
{
    return compose_variant_env(v == 1, NULL);
}

static json_t *service(json_t *cfg, const char *name)
{
    json_t *s = json_object_get(json_object_get(cfg, "services"), name);
    cr_assert(json_is_object(s), "the compose file has no service %s", name);
    return s;
}

static const char *env_of(json_t *svc, const char *name)
{
    json_t *env = json_object_get(svc, "environment");
    cr_assert(json_is_object(env), "environment is not a mapping");
    return json_string_value(json_object_get(env, name));
}

/* The program a service runs: command[0] (the image has no ENTRYPOINT). */
static const char *program_of(json_t *svc)
{
    json_t *cmd = json_object_get(svc, "command");
    if (json_is_array(cmd))
        return json_string_value(json_array_get(cmd, 0));
    return json_string_value(cmd);
}

static bool is_our_image(json_t *svc)
{
    const char *image = json_string_value(json_object_get(svc, "image"));
    return image && strcmp(image, T_IMAGE) == 0;
}

/* One published port as (host_ip, published, target), from v1's "IP:PUB:TARGET/tcp"
 * strings or v2's mappings. */
typedef struct port {
    char host_ip[64];
    int published, target;
} port_t;

static port_t port_of(json_t *p)
{
    port_t r = {"", 0, 0};
    if (json_is_string(p)) {
        char ip[64] = "";
        int pub = 0, tgt = 0;
        const char *s = json_string_value(p);
        if (sscanf(s, "%63[^:]:%d:%d", ip, &pub, &tgt) == 3) {
            snprintf(r.host_ip, sizeof r.host_ip, "%s", ip);
            r.published = pub;
            r.target = tgt;
        } else if (sscanf(s, "%d:%d", &pub, &tgt) == 2) {
            r.published = pub;
            r.target = tgt;
        }
        return r;
    }
    const char *ip = json_string_value(json_object_get(p, "host_ip"));
    snprintf(r.host_ip, sizeof r.host_ip, "%s", ip ? ip : "");
    json_t *pub = json_object_get(p, "published");
    r.published = json_is_string(pub) ? atoi(json_string_value(pub)) : (int)json_integer_value(pub);
    r.target = (int)json_integer_value(json_object_get(p, "target"));
    return r;
}

static const char *dep_condition(json_t *svc, const char *on)
{
    json_t *d = json_object_get(json_object_get(svc, "depends_on"), on);
    return json_string_value(json_object_get(d, "condition"));
}

/* Whether command (a string or an array of strings) has arg a followed by arg b. */
static bool command_has_pair(json_t *svc, const char *a, const char *b)
{
    json_t *cmd = json_object_get(svc, "command");
    for (size_t i = 0; i + 1 < json_array_size(cmd); i++) {
        const char *x = json_string_value(json_array_get(cmd, i));
        const char *y = json_string_value(json_array_get(cmd, i + 1));
        if (x && y && strcmp(x, a) == 0 && strcmp(y, b) == 0)
            return true;
    }
    return false;
}

/* The text of kafka-init's script (its command). */
static const char *init_script(json_t *cfg)
{
    json_t *cmd = json_object_get(service(cfg, "kafka-init"), "command");
    const char *s = json_is_array(cmd) ? json_string_value(json_array_get(cmd, json_array_size(cmd) - 1))
                                       : json_string_value(cmd);
    cr_assert_not_null(s, "kafka-init has no command");
    return s;
}

/* Partitions kafka-init creates topic with ("NAME:N" in its list), or 0 if absent. */
static int init_partitions(const char *script, const char *topic)
{
    size_t tl = strlen(topic);
    for (const char *p = strstr(script, topic); p; p = strstr(p + 1, topic)) {
        bool start = p == script || p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n';
        if (start && p[tl] == ':')
            return atoi(p + tl + 1);
    }
    return 0;
}

/* Every "topic" string anywhere in a definition. */
static void collect_topics(json_t *v, json_t *into)
{
    const char *key;
    json_t *x;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, key, x) {
            if (strcmp(key, "topic") == 0 && json_is_string(x))
                json_object_set_new(into, json_string_value(x), json_true());
            else
                collect_topics(x, into);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) collect_topics(x, into);
    }
}

/* ------------------------------------------------------------------ compose file */

Test(docker, compose_file_is_valid)
{
    require_compose();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && if docker-compose config --help 2>&1 | grep -q -- '--format'; then "
             "  docker-compose -f " T_COMPOSE " config -q 2>&1; "
             "else sed '/^name:/d' " T_COMPOSE " | "
             "  docker-compose --project-directory docker -f - config -q 2>&1; fi",
             test_source_dir());
    int st;
    char *out = run_capture(cmd, &st);
    cr_assert_eq(st, 0, "docker-compose config -q rejects " T_COMPOSE ":\n%s", out);
    free(out);
}

Test(docker, every_long_running_service_has_a_healthcheck)
{
    for (int variant = 0; variant < T_VARIANTS; variant++) {
        json_t *cfg = compose_variant(variant);
        static const char *const NAMES[] = {"kafka", "kafka-init", "redis", "coordinator-1",
                                            "coordinator-2", "inventory", "payment", "shipping"};
        for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++)
            service(cfg, NAMES[i]);
        const char *name;
        json_t *svc;
        json_object_foreach(json_object_get(cfg, "services"), name, svc) {
            if (strcmp(name, "kafka-init") == 0) {
                cr_expect_str_eq(json_string_value(json_object_get(svc, "restart")), "no",
                                 "kafka-init is a one-shot: it must not restart");
                continue;
            }
            json_t *test = json_object_get(json_object_get(svc, "healthcheck"), "test");
            cr_expect(json_array_size(test) >= 2, "service %s has no healthcheck", name);
        }
        json_decref(cfg);
    }
}

Test(docker, coordinators_share_the_group)
{
    for (int variant = 0; variant < T_VARIANTS; variant++) {
        json_t *cfg = compose_variant(variant);
        json_t *c1 = service(cfg, "coordinator-1"), *c2 = service(cfg, "coordinator-2");
        static const int PUBLISHED[] = {8081, 8082};
        json_t *cs[] = {c1, c2};
        for (int i = 0; i < 2; i++) {
            json_t *c = cs[i];
            cr_assert(is_our_image(c), "coordinator-%d does not run " T_IMAGE, i + 1);
            cr_assert_str_eq(program_of(c), "saga-coordinator");
            const char *group = env_of(c, "SAGA_GROUP_ID");
            cr_assert(group && *group, "coordinator-%d has no SAGA_GROUP_ID", i + 1);
            cr_assert(env_of(c, "SAGA_INSTANCE_ID"), "coordinator-%d has no SAGA_INSTANCE_ID", i + 1);
            cr_expect_str_eq(env_of(c, "SAGA_HTTP_LISTEN"), "0.0.0.0:8080",
                             "http_listen inside the container must be 0.0.0.0:8080, explicitly");
            cr_expect_str_eq(env_of(c, "SAGA_DEFINITIONS"), "/etc/saga/sagas");
            const char *token = env_of(c, "SAGA_HTTP_TOKEN");
            cr_expect(token && strlen(token) >= 16,
                      "coordinator-%d listens on 0.0.0.0: it needs SAGA_HTTP_TOKEN (16+ characters), "
                      "or it refuses to start", i + 1);
            json_t *ports = json_object_get(c, "ports");
            cr_assert_eq(json_array_size(ports), 1, "coordinator-%d publishes one port", i + 1);
            port_t p = port_of(json_array_get(ports, 0));
            cr_expect_str_eq(p.host_ip, "127.0.0.1");
            cr_expect_eq(p.published, PUBLISHED[i]);
            cr_expect_eq(p.target, 8080);
            cr_expect_str_eq(dep_condition(c, "kafka-init"), "service_completed_successfully");
            cr_expect_str_eq(dep_condition(c, "redis"), "service_healthy");
            cr_expect_str_eq(dep_condition(c, "kafka"), "service_healthy");
        }
        cr_expect_str_eq(env_of(c1, "SAGA_GROUP_ID"), env_of(c2, "SAGA_GROUP_ID"),
                         "both coordinators must share the consumer group");
        cr_expect_str_eq(env_of(c1, "SAGA_BOOTSTRAP_SERVERS"), env_of(c2, "SAGA_BOOTSTRAP_SERVERS"));
        cr_expect_str_eq(env_of(c1, "SAGA_INPUT_TOPIC"), env_of(c2, "SAGA_INPUT_TOPIC"));
        cr_expect_str_eq(env_of(c1, "SAGA_HTTP_TOKEN"), env_of(c2, "SAGA_HTTP_TOKEN"),
                         "one token for both: Prometheus scrapes both with it");
        cr_expect_str_neq(env_of(c1, "SAGA_INSTANCE_ID"), env_of(c2, "SAGA_INSTANCE_ID"),
                          "the coordinators need distinct instance ids");
        json_decref(cfg);
    }
}

Test(docker, ports_are_published_on_loopback_only)
{
    for (int variant = 0; variant < T_VARIANTS; variant++) {
        json_t *cfg = compose_variant(variant);
        const char *name;
        json_t *svc;
        json_object_foreach(json_object_get(cfg, "services"), name, svc) {
            size_t i;
            json_t *p;
            json_array_foreach(json_object_get(svc, "ports"), i, p) {
                port_t pt = port_of(p);
                cr_expect_str_eq(pt.host_ip, "127.0.0.1", "service %s publishes port %d beyond loopback",
                                 name, pt.target);
            }
        }
        json_decref(cfg);
    }
}

Test(docker, prometheus_scrapes_both_coordinators_with_the_rules)
{
    json_t *cfg = compose_config();
    json_t *prom = service(cfg, "prometheus");
    bool config_mounted = false;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(prom, "volumes"), i, v) {
        /* Normalized: {"type": "bind", "source": "/abs/docker/prometheus", "target": ...}
         * (v2), or "SOURCE:TARGET:MODE" (v1). */
        const char *src = json_string_value(json_object_get(v, "source"));
        const char *dst = json_string_value(json_object_get(v, "target"));
        const char *text = json_string_value(v);
        if ((src && dst && strstr(src, "docker/prometheus") && strcmp(dst, "/etc/prometheus") == 0) ||
            (text && strstr(text, "docker/prometheus:/etc/prometheus")))
            config_mounted = true;
    }
    cr_expect(config_mounted, "docker/prometheus is mounted at /etc/prometheus");
    char *yml = read_source_file("docker/prometheus/prometheus.yml");
    cr_expect(strstr(yml, "\"coordinator-1:8080\"") && strstr(yml, "\"coordinator-2:8080\""),
              "prometheus.yml scrapes both coordinators");
    cr_expect(strstr(yml, "job_name: saga-coordinator"), "the job the rules' up{} alert names");
    cr_expect(strstr(yml, "\n  - rules.yml\n"), "prometheus.yml loads rules.yml");
    /* The coordinators require their token: the scrape sends it from the file the
     * entrypoint writes from SAGA_HTTP_TOKEN, on a tmpfs. */
    cr_expect(strstr(yml, "    authorization:\n      type: Bearer\n"
                          "      credentials_file: /run/saga/http_token\n"),
              "prometheus.yml sends the token (authorization: credentials_file)");
    free(yml);
    cr_expect_str_eq(env_of(prom, "SAGA_HTTP_TOKEN"), env_of(service(cfg, "coordinator-1"), "SAGA_HTTP_TOKEN"),
                     "Prometheus has the coordinators' token");
    const char *script = json_string_value(json_array_get(json_object_get(prom, "command"), 0));
    cr_assert_not_null(script, "prometheus runs a script (entrypoint /bin/sh -c)");
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(prom, "entrypoint"), 0)), "/bin/sh");
    cr_expect(strstr(script, "SAGA_HTTP_TOKEN\" > /run/saga/http_token") != NULL,
              "the entrypoint writes the token file: %s", script);
    cr_expect(strstr(script, "umask 077") != NULL, "the token file is private");
    cr_expect(strstr(script, "exec /bin/prometheus --config.file=/etc/prometheus/prometheus.yml") != NULL,
              "then runs Prometheus on the mounted config: %s", script);
    bool tmpfs = false;
    json_array_foreach(json_object_get(prom, "tmpfs"), i, v)
        tmpfs = tmpfs || (json_is_string(v) && strncmp(json_string_value(v), "/run/saga", 9) == 0);
    cr_expect(tmpfs, "/run/saga is a tmpfs (the token never reaches a volume)");
    json_decref(cfg);
}

Test(docker, http_token_comes_from_the_environment)
{
    json_t *cfg = compose_config_env("export SAGA_HTTP_TOKEN=from-the-environment-0123456789;");
    static const char *const NAMES[] = {"coordinator-1", "coordinator-2", "prometheus"};
    for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++)
        cr_expect_str_eq(env_of(service(cfg, NAMES[i]), "SAGA_HTTP_TOKEN"),
                         "from-the-environment-0123456789", "%s takes SAGA_HTTP_TOKEN", NAMES[i]);
    json_decref(cfg);
}

/* Whether svc mounts the repository folder ending in src (e.g. "docker/grafana/dashboards")
 * at target, read-only. */
static bool mounts(json_t *svc, const char *src, const char *target)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(svc, "volumes"), i, v) {
        const char *s = json_string_value(json_object_get(v, "source"));
        const char *t = json_string_value(json_object_get(v, "target"));
        const char *text = json_string_value(v);
        size_t sl = strlen(src);
        if (s && t && strlen(s) >= sl && strcmp(s + strlen(s) - sl, src) == 0 &&
            strcmp(t, target) == 0 && json_is_true(json_object_get(v, "read_only")))
            return true;
        char needle[512];
        snprintf(needle, sizeof needle, "%s:%s:ro", src, target);
        if (text && strstr(text, needle))
            return true;
    }
    return false;
}

Test(docker, grafana_is_provisioned_with_the_dashboard)
{
    json_t *cfg = compose_config();
    json_t *g = service(cfg, "grafana");
    const char *image = json_string_value(json_object_get(g, "image"));
    cr_assert(image && strncmp(image, "grafana/grafana:", 16) == 0, "grafana image %s", image);
    json_t *ports = json_object_get(g, "ports");
    cr_assert_eq(json_array_size(ports), 1);
    port_t p = port_of(json_array_get(ports, 0));
    cr_expect_str_eq(p.host_ip, "127.0.0.1");
    cr_expect_eq(p.target, 3000);
    cr_expect(mounts(g, "docker/grafana/provisioning", "/etc/grafana/provisioning"),
              "docker/grafana/provisioning is mounted at /etc/grafana/provisioning");
    cr_expect(mounts(g, "docker/grafana/dashboards", "/var/lib/grafana/dashboards"),
              "docker/grafana/dashboards is mounted at /var/lib/grafana/dashboards");
    cr_expect_str_eq(env_of(g, "GF_AUTH_ANONYMOUS_ENABLED"), "true");
    cr_expect_str_eq(env_of(g, "GF_AUTH_ANONYMOUS_ORG_ROLE"), "Viewer",
                     "anonymous visitors read, never edit");
    cr_expect_str_eq(env_of(g, "GF_USERS_ALLOW_SIGN_UP"), "false");
    cr_expect(env_of(g, "GF_SECURITY_ADMIN_PASSWORD") != NULL, "the admin password is set (documented)");
    cr_expect_str_eq(env_of(g, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"),
                     "/var/lib/grafana/dashboards/saga-coordinator.json");

    /* the data source: the compose file's Prometheus, with the uid the dashboard uses */
    char *ds = read_source_file("docker/grafana/provisioning/datasources/prometheus.yml");
    cr_expect(strstr(ds, "    type: prometheus\n") && strstr(ds, "    url: http://prometheus:9090\n") &&
                  strstr(ds, "    uid: saga-prometheus\n"),
              "the data source is the compose file's Prometheus, uid saga-prometheus");
    free(ds);
    char *prov = read_source_file("docker/grafana/provisioning/dashboards/saga.yml");
    cr_expect(strstr(prov, "    type: file\n") && strstr(prov, "      path: /var/lib/grafana/dashboards\n"),
              "the dashboard provider reads the mounted folder");
    free(prov);

    char *path = test_source_path("docker/grafana/dashboards/saga-coordinator.json");
    json_error_t err;
    json_t *dash = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    cr_assert_not_null(dash, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    free(path);
    cr_expect_str_eq(json_string_value(json_object_get(dash, "uid")), "saga-coordinator");
    json_t *var = NULL, *x;
    size_t i;
    json_array_foreach(json_object_get(json_object_get(dash, "templating"), "list"), i, x)
        if (strcmp(json_string_value(json_object_get(x, "name")), "datasource") == 0)
            var = x;
    cr_assert_not_null(var, "a datasource variable");
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(var, "current"), "value")),
                     "saga-prometheus", "it defaults to the provisioned data source");
    json_t *panel;
    json_array_foreach(json_object_get(dash, "panels"), i, panel) {
        const char *title = json_string_value(json_object_get(panel, "title"));
        cr_expect_str_eq(json_string_value(json_object_get(json_object_get(panel, "datasource"), "uid")),
                         "${datasource}", "panel %s queries the chosen data source", title);
        json_t *pos = json_object_get(panel, "gridPos");
        cr_expect(json_integer_value(json_object_get(pos, "x")) + json_integer_value(json_object_get(pos, "w")) <= 24,
                  "panel %s fits the 24-column grid", title);
    }
    json_decref(dash);
    json_decref(cfg);
}

Test(docker, redis_is_durable_and_never_evicts)
{
    for (int variant = 0; variant < T_VARIANTS; variant++) {
        json_t *cfg = compose_variant(variant);
        /* With Sentinel the replica may become the primary: the same rules. */
        for (int k = 0; k <= variant; k++) {
            const char *name = k ? "redis-replica" : "redis";
            json_t *r = service(cfg, name);
            const char *image = json_string_value(json_object_get(r, "image"));
            cr_assert(image && strncmp(image, "redis:7", 7) == 0, "%s image %s is not Redis 7",
                      name, image);
            cr_expect(command_has_pair(r, "--appendonly", "yes"), "%s needs appendonly yes", name);
            cr_expect(command_has_pair(r, "--maxmemory-policy", "noeviction"),
                      "%s needs maxmemory-policy noeviction (an evicted saga is a lost saga)", name);
            cr_expect(json_array_size(json_object_get(r, "volumes")) >= 1,
                      "%s keeps /data in a volume", name);
        }
        json_decref(cfg);
    }
}

/* The Sentinel variant: a replica of redis, three Sentinels agreeing (quorum 2) on the
 * primary named as the programs are told, and every program of ours told so. */
Test(docker, sentinel_variant_finds_the_primary_through_three_sentinels)
{
    json_t *cfg = compose_variant(1);
    json_t *replica = service(cfg, "redis-replica");
    cr_expect(command_has_pair(replica, "--replicaof", "redis"), "redis-replica follows redis");
    cr_expect(command_has_pair(service(cfg, "redis"), "--replica-announce-ip", "redis") &&
              command_has_pair(replica, "--replica-announce-ip", "redis-replica"),
              "each Redis announces its hostname: the Sentinels hand out names, not addresses");
    char sentinels[256] = "";
    for (int i = 1; i <= 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "sentinel-%d", i);
        json_t *svc = service(cfg, name);
        json_t *cmd = json_object_get(svc, "command");
        const char *script = json_string_value(json_is_array(cmd) ? json_array_get(cmd, 0) : cmd);
        cr_assert_not_null(script, "%s runs a script", name);
        cr_expect(strstr(script, "sentinel monitor saga redis 6379 2\n"),
                  "%s monitors redis as \"saga\" with quorum 2: %s", name, script);
        cr_expect(strstr(script, "sentinel resolve-hostnames yes\n") &&
                  strstr(script, "sentinel announce-hostnames yes\n"), "%s uses hostnames", name);
        cr_expect(strstr(script, "exec redis-server /data/sentinel.conf --sentinel"),
                  "%s runs redis-server --sentinel on its config in /data", name);
        cr_expect(strstr(script, "if [ ! -f /data/sentinel.conf ]"),
                  "%s writes its config once: a Sentinel keeps what it learnt in it", name);
        cr_expect(json_array_size(json_object_get(svc, "volumes")) >= 1,
                  "%s keeps its config in a volume", name);
        cr_expect_null(json_object_get(svc, "ports"), "%s publishes no port", name);
        snprintf(sentinels + strlen(sentinels), sizeof sentinels - strlen(sentinels), "%s%s:26379",
                 i > 1 ? "," : "", name);
    }
    const char *name;
    json_t *svc;
    int told = 0;
    json_object_foreach(json_object_get(cfg, "services"), name, svc) {
        if (!is_our_image(svc))
            continue;
        cr_expect_str_eq(env_of(svc, "SAGA_REDIS_SENTINELS"), sentinels,
                         "%s finds the primary through the three Sentinels", name);
        cr_expect_str_eq(env_of(svc, "SAGA_REDIS_MASTER_NAME"), "saga", "%s", name);
        for (int i = 1; i <= 3; i++) {
            char s[32];
            snprintf(s, sizeof s, "sentinel-%d", i);
            cr_expect_str_eq(dep_condition(svc, s), "service_healthy", "%s waits for %s", name, s);
        }
        cr_expect_str_eq(env_of(svc, "SAGA_REDIS_SYNC_REPLICAS"), "1",
                         "%s: rounds and de-duplication records wait for the replica", name);
        told++;
    }
    cr_expect_eq(told, 5, "two coordinators and three services");
    json_decref(cfg);
}

Test(docker, kafka_runs_kraft_without_auto_creation)
{
    json_t *cfg = compose_config();
    json_t *k = service(cfg, "kafka");
    const char *image = json_string_value(json_object_get(k, "image"));
    cr_assert(image && strncmp(image, "apache/kafka:", 13) == 0, "kafka image %s", image);
    const char *roles = env_of(k, "KAFKA_PROCESS_ROLES");
    cr_assert(roles && strstr(roles, "broker") && strstr(roles, "controller"), "process roles %s", roles);
    cr_expect_str_eq(env_of(k, "KAFKA_NODE_ID"), "1");
    cr_expect_str_eq(env_of(k, "KAFKA_CONTROLLER_QUORUM_VOTERS"), "1@kafka:9093");
    cr_expect_str_eq(env_of(k, "KAFKA_LISTENERS"), "PLAINTEXT://:9092,CONTROLLER://:9093");
    cr_expect_str_eq(env_of(k, "KAFKA_ADVERTISED_LISTENERS"), "PLAINTEXT://kafka:9092");
    cr_expect_str_eq(env_of(k, "KAFKA_CONTROLLER_LISTENER_NAMES"), "CONTROLLER");
    cr_expect_str_eq(env_of(k, "KAFKA_AUTO_CREATE_TOPICS_ENABLE"), "false");
    json_t *init = service(cfg, "kafka-init");
    cr_expect_str_eq(json_string_value(json_object_get(init, "image")), image,
                     "kafka-init uses the kafka image's kafka-topics.sh");
    cr_expect_str_eq(dep_condition(init, "kafka"), "service_healthy");
    json_decref(cfg);
}

Test(docker, kafka_init_creates_every_topic_used)
{
    json_t *cfg = compose_config();
    const char *script = init_script(cfg);
    cr_expect(strstr(script, "/opt/kafka/bin/kafka-topics.sh") != NULL);
    cr_expect(strstr(script, "--if-not-exists") != NULL, "topic creation must be idempotent");
    json_t *topics = json_object();

    /* the coordinators' own topics; the input topic's partitions cap the instances */
    json_t *c1 = service(cfg, "coordinator-1");
    static const char *const COORD_TOPICS[] = {"SAGA_INPUT_TOPIC", "SAGA_OUTCOMES_TOPIC",
                                               "SAGA_DEADLETTER_TOPIC"};
    static const char *const COORD_DEFAULTS[] = {"saga.input", "saga.outcomes", "saga.deadletter"};
    for (int i = 0; i < 3; i++) {
        const char *t = env_of(c1, COORD_TOPICS[i]);
        json_object_set_new(topics, t ? t : COORD_DEFAULTS[i], json_true());
    }
    const char *input = env_of(c1, "SAGA_INPUT_TOPIC");
    cr_expect(init_partitions(script, input ? input : "saga.input") >= 2,
              "the input topic needs a partition per coordinator at least");

    /* every topic the shipped definitions send commands to */
    char *cmd;
    cr_assert(asprintf(&cmd, "ls '%s'/sagas/*.json", test_source_dir()) > 0);
    int st;
    char *files = run_capture(cmd, &st);
    free(cmd);
    cr_assert_eq(st, 0);
    int ndefs = 0;
    for (char *f = strtok(files, "\n"); f; f = strtok(NULL, "\n")) {
        json_error_t err;
        json_t *d = json_load_file(f, 0, &err);
        cr_assert_not_null(d, "%s: %s", f, err.text);
        collect_topics(d, topics);
        json_decref(d);
        ndefs++;
    }
    free(files);
    cr_assert(ndefs > 0, "no definitions in sagas/");

    /* the example services' command topics (NAME.commands unless SAGA_COMMAND_TOPIC) */
    const char *name;
    json_t *svc;
    json_object_foreach(json_object_get(cfg, "services"), name, svc) {
        const char *prog = program_of(svc);
        size_t pl = strlen(T_EXAMPLE_PREFIX);
        if (!is_our_image(svc) || !prog || strncmp(prog, T_EXAMPLE_PREFIX, pl) != 0)
            continue;
        const char *t = env_of(svc, "SAGA_COMMAND_TOPIC");
        char def[128];
        snprintf(def, sizeof def, "%s.commands", prog + pl);
        json_object_set_new(topics, t ? t : def, json_true());
    }

    const char *topic;
    json_t *x;
    json_object_foreach(topics, topic, x) {
        cr_expect(init_partitions(script, topic) >= 1,
                  "kafka-init does not create topic %s (auto-creation is off)", topic);
    }
    /* ... and nothing else: every NAME:N of its list ("for spec in ...; do") is a topic
     * somebody uses. */
    const char *list = strstr(script, "for spec in "), *list_end = list ? strstr(list, "; do") : NULL;
    cr_assert(list && list_end, "kafka-init's topic list (for spec in ...; do) not found");
    for (const char *p = list; p < list_end; p++) {
        if (p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n')
            continue;
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789._-");
        if (n == 0 || p[n] != ':' || p[n + 1] < '0' || p[n + 1] > '9')
            continue;
        char created[256];
        snprintf(created, sizeof created, "%.*s", (int)n, p);
        cr_expect_not_null(json_object_get(topics, created),
                           "kafka-init creates %s, which no definition, coordinator or service uses",
                           created);
    }
    json_decref(topics);
    json_decref(cfg);
}

/* Every SAGA_* token a program's --help names (the build tree's program: an example
 * service installed as saga-example-NAME is bin/NAME-service there). */
static json_t *help_names(const char *program)
{
    char bin[4096], build_name[256];
    size_t pl = strlen(T_EXAMPLE_PREFIX);
    if (strncmp(program, T_EXAMPLE_PREFIX, pl) == 0) { /* installed name -> build name */
        snprintf(build_name, sizeof build_name, "%s-service", program + pl);
        program = build_name;
    }
    cr_assert_eq(fixture_bin_path(program, bin, sizeof bin), 0,
                 "%s is not in $SAGA_BIN_DIR (the compose file runs it)", program);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' --help", bin);
    int st;
    char *out = run_capture(cmd, &st);
    cr_assert_eq(st, 0, "%s --help failed", program);
    json_t *names = json_object();
    for (char *p = strstr(out, "SAGA_"); p; p = strstr(p + 1, "SAGA_")) {
        size_t n = 5;
        while ((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '_')
            n++;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        json_object_set_new(names, name, json_true());
    }
    free(out);
    return names;
}

Test(docker, every_saga_variable_is_a_setting_of_its_program)
{
    for (int variant = 0; variant < T_VARIANTS; variant++) {
        json_t *cfg = compose_variant(variant);
        const char *name;
        json_t *svc;
        int checked = 0;
        json_object_foreach(json_object_get(cfg, "services"), name, svc) {
            if (!is_our_image(svc))
                continue;
            const char *prog = program_of(svc);
            cr_assert(prog, "service %s names no program (command)", name);
            json_t *known = help_names(prog);
            bool coordinator = strcmp(prog, "saga-coordinator") == 0;
            const char *var;
            json_t *v;
            json_object_foreach(json_object_get(svc, "environment"), var, v) {
                if (strncmp(var, "SAGA_", 5) != 0)
                    continue;
                bool passthrough = coordinator && (strncmp(var, "SAGA_KAFKA_", 11) == 0 ||
                                                   strncmp(var, "SAGA_CONSUMER_", 14) == 0 ||
                                                   strncmp(var, "SAGA_PRODUCER_", 14) == 0);
                cr_expect(passthrough || json_object_get(known, var),
                          "service %s: %s is not a setting of %s (see %s --help)", name, var, prog, prog);
                checked++;
            }
            json_decref(known);
        }
        cr_expect(checked > 10, "only %d SAGA_* variables found", checked);
        json_decref(cfg);
    }
}

/* ---------------------------------------------------------------------- Dockerfile */

/* The text of the last stage (from the last FROM line). */
static const char *last_stage(const char *text)
{
    const char *last = text;
    for (const char *p = text; (p = strstr(p, "\nFROM ")); p++)
        last = p + 1;
    return last;
}

Test(docker, dockerfile_lint)
{
    char *df = read_source_file(T_DOCKERFILE);
    cr_expect(strstr(df, "\nFROM debian:12 AS build\n") != NULL, "a build stage FROM debian:12 AS build");
    cr_expect(strstr(df, "-DCMAKE_BUILD_TYPE=Release") != NULL, "a Release build");
    cr_expect(strstr(df, "-DSAGA_TESTS=OFF") != NULL, "no test suites in the image build");
    const char *rt = last_stage(df);
    cr_expect(strncmp(rt, "FROM debian:12-slim\n", 20) == 0, "the runtime stage is debian:12-slim");
    cr_expect(strstr(rt, "COPY --from=build ") != NULL, "the runtime stage copies from the build stage");
    cr_expect(strstr(rt, "-dev ") == NULL && strstr(rt, "-dev\n") == NULL,
              "no -dev package in the runtime stage");
    cr_expect(strstr(rt, "build-essential") == NULL && strstr(rt, "cmake") == NULL);
    cr_expect(strstr(rt, "--uid 10001") != NULL, "the runtime stage creates the user uid 10001");
    const char *user = strstr(rt, "\nUSER ");
    cr_assert_not_null(user, "no USER line in the runtime stage");
    cr_expect(strncmp(user, "\nUSER 10001", 11) == 0, "USER must be the non-root uid 10001");
    cr_expect(strstr(user + 1, "\nUSER ") == NULL, "one USER line");
    cr_expect(strstr(rt, "\nHEALTHCHECK ") != NULL, "a HEALTHCHECK");
    cr_expect(strstr(rt, "/healthz") != NULL, "the healthcheck asks /healthz");
    cr_expect(strstr(rt, "\nCMD [") != NULL || strstr(rt, "\nENTRYPOINT [") != NULL,
              "an exec-form CMD or ENTRYPOINT");
    cr_expect(strstr(rt, "/etc/saga/sagas") != NULL, "the definitions go to /etc/saga/sagas");
    cr_expect(strstr(rt, "SAGA_DEFINITIONS=/etc/saga/sagas") != NULL);
    /* The programs come from cmake --install, not from copies made by hand. */
    cr_expect(strstr(df, "cmake --install /build --prefix /out --component coordinator") != NULL,
              "the build stage installs with cmake --install");
    cr_expect(strstr(df, "/build/bin/") == NULL, "no program copied out of the build tree by hand");
    cr_expect(strstr(rt, "COPY --from=build /out/ /usr/local/") != NULL,
              "the runtime stage takes the installed tree");
    free(df);

    char *ignore = read_source_file(".dockerignore");
    static const char *const IGNORED[] = {".git\n", "build*/\n", "node_modules/\n"};
    for (size_t i = 0; i < sizeof IGNORED / sizeof *IGNORED; i++)
        cr_expect(strstr(ignore, IGNORED[i]) != NULL, ".dockerignore lacks %s", IGNORED[i]);
    free(ignore);
}

Test(docker, runtime_stage_provides_every_linked_library)
{
    char *df = read_source_file(T_DOCKERFILE);
    const char *rt = last_stage(df);
    /* The shell pipeline prints "BINARY LIBRARY PACKAGE..." per NEEDED entry; sanitizer
     * runtimes are skipped (scripts/test.sh --sanitize; the image builds without them). */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd \"$SAGA_BIN_DIR\" || exit 9; "
             "for b in saga-coordinator sagactl inventory-service payment-service shipping-service; do "
             "  [ -x \"$b\" ] || { [ \"$b\" = sagactl ] && continue; echo \"missing $b\"; exit 8; }; "
             "  for l in $(readelf -d \"$b\" | sed -n 's/.*Shared library: \\[\\(.*\\)\\]/\\1/p' | "
             "             grep -Ev '^lib(a|ub|l|t)san\\.so'); do "
             "    echo \"$b $l $(dpkg -S \"*/$l\" 2>/dev/null | cut -d: -f1 | sort -u | tr '\\n' ' ')\"; "
             "  done; "
             "done");
    int st;
    char *out = run_capture(cmd, &st);
    cr_assert_eq(st, 0, "listing the binaries' libraries failed: %s", out);
    int lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char bin[64], lib[128];
        cr_assert_eq(sscanf(line, "%63s %127s", bin, lib), 2, "%s", line);
        bool ok = false;
        const char *p = line + strlen(bin) + 1 + strlen(lib); /* the packages */
        while (*p && !ok) {
            while (*p == ' ')
                p++;
            size_t n = strcspn(p, " ");
            if (n == 0)
                break;
            char pkg[128];
            snprintf(pkg, sizeof pkg, "%.*s", (int)n, p);
            char needle[140];
            snprintf(needle, sizeof needle, " %s ", pkg);
            ok = strcmp(pkg, "libc6") == 0 || strstr(rt, needle) != NULL ||
                 (snprintf(needle, sizeof needle, " %s\n", pkg), strstr(rt, needle) != NULL);
            p += n;
        }
        cr_expect(ok, "%s links %s, which no package of the runtime stage provides (dpkg -S: %s)",
                  bin, lib, line + strlen(bin) + 1 + strlen(lib));
        lines++;
    }
    cr_expect(lines >= 8, "only %d libraries found", lines);
    free(out);
    free(df);
}

/* ------------------------------------------------------------- compose: one image */

Test(docker, one_service_builds_the_image)
{
    json_t *cfg = compose_config();
    const char *name, *builder = NULL;
    json_t *svc;
    int users = 0;
    json_object_foreach(json_object_get(cfg, "services"), name, svc) {
        if (!is_our_image(svc)) {
            cr_expect_null(json_object_get(svc, "build"), "%s builds an image that is not " T_IMAGE, name);
            continue;
        }
        users++;
        if (json_object_get(svc, "build")) {
            cr_expect_null(builder, "both %s and %s build " T_IMAGE ": build it once", builder, name);
            builder = name;
        } else {
            const char *pull = json_string_value(json_object_get(svc, "pull_policy"));
            cr_expect(pull && strcmp(pull, "never") == 0,
                      "%s uses " T_IMAGE " (built here, in no registry): pull_policy never", name);
        }
    }
    cr_expect_not_null(builder, "no service builds " T_IMAGE);
    cr_expect_geq(users, 5, "the coordinators and the services run " T_IMAGE);
    json_decref(cfg);
}

Test(docker, kafka_is_a_pinned_release_without_kafka_16473)
{
    json_t *cfg = compose_config();
    const char *image = json_string_value(json_object_get(service(cfg, "kafka"), "image"));
    int major = 0, minor = 0, patch = 0, end = 0;
    cr_assert(image && sscanf(image, "apache/kafka:%d.%d.%d%n", &major, &minor, &patch, &end) == 3 &&
                  image[end] == '\0',
              "kafka image %s: pin a release (apache/kafka:X.Y.Z), not a moving tag", image);
    cr_expect_geq(major * 10000 + minor * 100 + patch, T_KAFKA_MIN_VERSION,
                  "%s: 3.7.0 and older have KAFKA-16473; use >= 3.7.1", image);
    json_decref(cfg);
}

Test(docker, the_project_is_named_and_the_docs_say_so)
{
    char *compose = read_source_file(T_COMPOSE);
    const char *line = strstr(compose, "\nname: ");
    cr_assert_not_null(line, T_COMPOSE " has no top-level name:");
    char project[64] = "";
    cr_assert_eq(sscanf(line + 7, "%63s", project), 1);
    free(compose);
    char *doc = read_source_file("docs/docker.md");
    char network[96];
    snprintf(network, sizeof network, "%s_default", project);
    cr_expect_not_null(strstr(doc, network), "docs/docker.md names the network %s", network);
    cr_expect_null(strstr(doc, "docker_default"), "docs/docker.md hard-codes the network docker_default");
    cr_expect_null(strstr(doc, "Compose v1 does the same"), "docs/docker.md claims Compose v1 works");
    cr_expect_null(strstr(doc, "`docker-compose -f"), "docs/docker.md shows the v1 command");
    free(doc);
}

Test(docker, shell_scripts_keep_lf_endings)
{
    char *attrs = read_source_file(".gitattributes");
    cr_expect_not_null(strstr(attrs, "\n*.sh text eol=lf\n"), ".gitattributes: *.sh text eol=lf");
    free(attrs);
    char *hc = read_source_file(T_HEALTHCHECK);
    cr_expect_null(strchr(hc, '\r'), T_HEALTHCHECK " has CR characters");
    free(hc);
}

/* ------------------------------------------------------------------- healthcheck */

typedef struct responder {
    int fd;
    int status;
    char request[256];
} responder_t;

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Answers one HTTP request with r->status and keeps its first line. */
static void *respond_once(void *opaque)
{
    responder_t *r = opaque;
    int c = accept(r->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[1024];
    size_t len = 0;
    while (len < sizeof buf - 1) { /* the whole request head, as a real server would */
        ssize_t n = recv(c, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    buf[len] = '\0';
    snprintf(r->request, sizeof r->request, "%.*s", (int)strcspn(buf, "\r\n"), buf);
    char resp[128];
    int rlen = snprintf(resp, sizeof resp,
                        "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", r->status);
    (void)!send(c, resp, (size_t)rlen, MSG_NOSIGNAL);
    close(c);
    return NULL;
}

static int run_healthcheck(const char *listen, const char *args)
{
    char *script = test_source_path(T_HEALTHCHECK);
    char *cmd;
    cr_assert(asprintf(&cmd, "SAGA_HTTP_LISTEN='%s' bash '%s' %s", listen, script, args) > 0);
    int st;
    free(run_capture(cmd, &st));
    free(cmd);
    free(script);
    return st;
}

static int http_check(int status, const char *listen_host, char *request, size_t len)
{
    responder_t r = {.status = status};
    int port;
    r.fd = listen_loopback(&port);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, respond_once, &r), 0);
    char listen[64];
    snprintf(listen, sizeof listen, "%s:%d", listen_host, port);
    int rc = run_healthcheck(listen, "http /healthz");
    shutdown(r.fd, SHUT_RDWR); /* wakes accept() if the script never connected */
    pthread_join(t, NULL);
    close(r.fd);
    snprintf(request, len, "%s", r.request);
    return rc;
}

Test(docker, healthcheck_http)
{
    char req[256];
    cr_expect_eq(http_check(200, "0.0.0.0", req, sizeof req), 0, "200 is healthy");
    cr_expect_str_eq(req, "GET /healthz HTTP/1.0");
    cr_expect_eq(http_check(200, "127.0.0.1", req, sizeof req), 0);
    cr_expect_eq(http_check(503, "0.0.0.0", req, sizeof req), 1, "503 is unhealthy");
    cr_expect_eq(http_check(404, "", req, sizeof req), 1);

    int port;
    int fd = listen_loopback(&port);
    close(fd); /* nothing listens there now */
    char listen[64];
    snprintf(listen, sizeof listen, "0.0.0.0:%d", port);
    cr_expect_eq(run_healthcheck(listen, "http"), 1, "no server is unhealthy");
    cr_expect_eq(run_healthcheck("", "http"), 1, "http_listen off is unhealthy");
    cr_expect_eq(run_healthcheck("0.0.0.0:0", "http"), 1, "port 0 cannot be asked");
    cr_expect_eq(run_healthcheck("x", "bogus"), 2, "usage");
}

Test(docker, healthcheck_connected)
{
    int port, other;
    int lfd = listen_loopback(&port);
    int ofd = listen_loopback(&other); /* listening, but nobody connected to it */
    char args[64];
    snprintf(args, sizeof args, "connected %d", port);
    cr_expect_eq(run_healthcheck("", args), 1, "no connection yet");

    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    cr_expect_eq(run_healthcheck("", args), 0, "an established connection to port %d", port);
    snprintf(args, sizeof args, "connected %d %d", port, other);
    cr_expect_eq(run_healthcheck("", args), 1, "every port must be connected");
    cr_expect_eq(run_healthcheck("", "connected"), 2, "usage");
    close(c);
    close(ofd);
    close(lfd);
}
