/* system.c - a running system for integration tests (see system.h). */
#include "system.h"

#include "rkeys.h"
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The test system's coordinators run with the default key prefix. */
static const rkeys_t KEYS = {RKEYS_DEFAULT_PREFIX};

int system_start(test_system_t *s, const char *definitions, const char *extra_topics,
                 const char *redis_config)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/saga-system-XXXXXX");
    if (!mkdtemp(s->dir)) {
        s->dir[0] = '\0';
        return -1;
    }
    const char *src = getenv("SAGA_SOURCE_DIR");
    if (definitions)
        snprintf(s->definitions, sizeof s->definitions, "%s", definitions);
    else
        snprintf(s->definitions, sizeof s->definitions, "%s/tests/sagas", src ? src : ".");
    char topics[1024];
    snprintf(topics, sizeof topics, "%s%s%s", SYSTEM_TOPICS, extra_topics ? "," : "",
             extra_topics ? extra_topics : "");
    if (fixture_redis_start(&s->redis, redis_config) < 0 ||
        fixture_broker_start(&s->broker, 1, topics) < 0)
        return -1;
    s->rc = fixture_redis_connect(&s->redis);
    s->producer = fixture_producer_new(s->broker.bootstrap);
    return s->rc && s->producer ? 0 : -1;
}

pid_t system_spawn_coordinator(test_system_t *s, int idx, const char *log_name,
                               const char *const *args, const char *const *env)
{
    if (idx < 0 || idx >= SYSTEM_MAX_COORDINATORS)
        return -1;
    char bin[PATH_MAX], boot[512], port[64], defs[PATH_MAX + 16], log[PATH_MAX + 64];
    if (fixture_bin_path("saga-coordinator", bin, sizeof bin) < 0)
        return -1;
    snprintf(boot, sizeof boot, "--bootstrap_servers=%s", s->broker.bootstrap);
    snprintf(port, sizeof port, "--redis_port=%d", s->redis.port);
    snprintf(defs, sizeof defs, "--definitions=%s", s->definitions);
    snprintf(log, sizeof log, "%s/%s", s->dir, log_name);
    const char *argv[32] = {bin, boot, port, defs, "--log_level=debug", "--http_listen=",
                            "--dev_mode=1"};
    int n = 7;
    for (int i = 0; args && args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fixture_spawn(argv, log, env);
    if (pid < 0)
        return -1;
    s->coordinators[idx] = pid;
    if (s->coordinator_count <= idx)
        s->coordinator_count = idx + 1;
    return pid;
}

int system_add_coordinator(test_system_t *s, const char *const *args, const char *const *env)
{
    int idx = s->coordinator_count;
    char log_name[64];
    snprintf(log_name, sizeof log_name, "coordinator-%d.log", idx);
    return system_spawn_coordinator(s, idx, log_name, args, env) < 0 ? -1 : idx;
}

static bool all_owned(void *opaque)
{
    test_system_t *s = opaque;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[RKEYS_KEY_MAX];
        redisReply *r = redisCommand(s->rc, "EXISTS %s", rkeys_owner(&KEYS, key, p));
        bool ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (!ok)
            return false;
    }
    return true;
}

bool system_wait_owned(test_system_t *s, int timeout_ms)
{
    return fixture_wait_until(all_owned, s, timeout_ms);
}

void system_stop(test_system_t *s)
{
    for (int i = 0; i < s->coordinator_count; i++) {
        if (s->coordinators[i] > 0)
            fixture_stop_process(s->coordinators[i], FIXTURE_STOP_TIMEOUT_MS);
        s->coordinators[i] = 0;
    }
    if (s->producer) {
        rd_kafka_flush(s->producer, 2000);
        rd_kafka_destroy(s->producer);
        s->producer = NULL;
    }
    if (s->rc)
        redisFree(s->rc);
    s->rc = NULL;
    fixture_broker_stop(&s->broker);
    fixture_redis_stop(&s->redis);
    if (s->dir[0] && !getenv("SAGA_TEST_KEEP")) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        (void)!system(cmd);
    } else if (s->dir[0]) {
        fprintf(stderr, "system: logs kept in %s\n", s->dir);
    }
    s->dir[0] = '\0';
}

int system_produce_input(test_system_t *s, const char *key, const char *value)
{
    return fixture_produce(s->producer, "saga.input", -1, key, value);
}

int system_start_saga(test_system_t *s, const char *id, const char *name, const char *input)
{
    json_t *msg = json_pack("{s:s, s:s}", "type", "start", "saga", name);
    if (id)
        json_object_set_new(msg, "saga_id", json_string(id));
    if (input)
        json_object_set_new(msg, "input", json_loads(input, 0, NULL));
    char *text = json_dumps(msg, JSON_COMPACT);
    int rc = system_produce_input(s, id, text);
    free(text);
    json_decref(msg);
    return rc;
}

json_t *system_saga(test_system_t *s, const char *id, int *partition)
{
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[RKEYS_KEY_MAX];
        redisReply *r = redisCommand(s->rc, "HGETALL %s", rkeys_saga(&KEYS, key, p, id));
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
            json_t *o = json_object();
            for (size_t i = 0; i + 1 < r->elements; i += 2)
                json_object_set_new(o, r->element[i]->str,
                                    json_stringn(r->element[i + 1]->str, r->element[i + 1]->len));
            freeReplyObject(r);
            if (partition)
                *partition = p;
            return o;
        }
        freeReplyObject(r);
    }
    return NULL;
}

json_t *system_history(test_system_t *s, const char *id)
{
    int p;
    json_t *saga = system_saga(s, id, &p);
    json_t *out = json_array();
    if (!saga)
        return out;
    json_decref(saga);
    char key[RKEYS_KEY_MAX];
    redisReply *r = redisCommand(s->rc, "LRANGE %s 0 -1", rkeys_history(&KEYS, key, p, id));
    for (size_t i = 0; r && i < r->elements; i++)
        json_array_append_new(out, json_loads(r->element[i]->str, 0, NULL));
    freeReplyObject(r);
    return out;
}

const char *system_field(test_system_t *s, const char *id, const char *field, char *buf,
                         size_t len)
{
    json_t *saga = system_saga(s, id, NULL);
    const char *v = saga ? json_string_value(json_object_get(saga, field)) : NULL;
    snprintf(buf, len, "%s", v ? v : "");
    json_decref(saga);
    return buf;
}

typedef struct status_wait {
    test_system_t *s;
    const char *id, *status;
} status_wait_t;

static bool has_status(void *opaque)
{
    status_wait_t *w = opaque;
    char buf[64];
    return strcmp(system_field(w->s, w->id, RKEYS_F_STATUS, buf, sizeof buf), w->status) == 0;
}

bool system_wait_status(test_system_t *s, const char *id, const char *status, int timeout_ms)
{
    status_wait_t w = {s, id, status};
    return fixture_wait_until(has_status, &w, timeout_ms);
}

/* When a saga did not get where it should, what the coordinators said about it and its
 * home partition (rebalances, loads, Redis trouble): so that a rare failure explains
 * itself in the test's output (issue #14, item 9). */
void system_explain(test_system_t *s, const char *id)
{
    int32_t home = route_home(id, SYSTEM_INPUT_PARTITIONS, SYSTEM_INPUT_PARTITIONS);
    char key[RKEYS_KEY_MAX];
    redisReply *r = redisCommand(s->rc, "HGETALL %s", rkeys_owner(&KEYS, key, home));
    fprintf(stderr, "explain %s: home partition %d, owner record:", id, (int)home);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        fprintf(stderr, " %s", r->element[i]->str);
    fprintf(stderr, "\n");
    freeReplyObject(r);
    char needle[32];
    snprintf(needle, sizeof needle, "partition %d", (int)home);
    const char *also[] = {needle, "rebalance", "assign", "SESSTMOUT", "Redis", "released",
                          "fenced", "error", "warn"};
    for (int k = 0; k < s->coordinator_count; k++) {
        char path[PATH_MAX + 64], line[2048];
        snprintf(path, sizeof path, "%s/coordinator-%d.log", s->dir, k);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int shown = 0;
        while (fgets(line, sizeof line, f) && shown < 200) {
            bool hit = strstr(line, id) != NULL; /* any level */
            for (size_t a = 0; !hit && a < sizeof also / sizeof *also; a++)
                hit = strstr(line, also[a]) && !strstr(line, "\"debug\"");
            if (hit) {
                fprintf(stderr, "explain coordinator-%d: %s", k, line);
                shown++;
            }
        }
        fclose(f);
    }
}

bool system_expect_status(test_system_t *s, const char *id, const char *status,
                          int timeout_ms, char *why, size_t len)
{
    if (system_wait_status(s, id, status, timeout_ms))
        return true;
    char buf[64];
    json_t *h = system_history(s, id);
    char *text = json_dumps(h, JSON_COMPACT);
    snprintf(why, len, "%s: status %s, expected %s; history: %s", id,
             system_field(s, id, "status", buf, sizeof buf), status, text ? text : "[]");
    free(text);
    json_decref(h);
    system_explain(s, id);
    return false;
}

json_t *system_step(test_system_t *s, const char *id, const char *step)
{
    json_t *saga = system_saga(s, id, NULL);
    if (!saga)
        return NULL;
    json_t *steps = json_loads(json_string_value(json_object_get(saga, RKEYS_F_STEPS)), 0, NULL);
    json_decref(saga);
    size_t i;
    json_t *st, *found = NULL;
    json_array_foreach(steps, i, st)
    {
        if (strcmp(json_string_value(json_object_get(st, "name")), step) == 0)
            found = json_incref(st);
    }
    json_decref(steps);
    return found;
}

long long system_counter(test_system_t *s, const char *field)
{
    long long sum = 0;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
        char key[RKEYS_KEY_MAX];
        redisReply *r = redisCommand(s->rc, "HGET %s %s", rkeys_counters(&KEYS, key, p), field);
        if (r && r->type == REDIS_REPLY_STRING)
            sum += atoll(r->str);
        freeReplyObject(r);
    }
    return sum;
}

long long system_active(test_system_t *s)
{
    static const rkeys_index_t ACTIVE[] = {RKEYS_INDEX_RUNNING, RKEYS_INDEX_COMPENSATING};
    long long active = 0;
    for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++)
        for (size_t k = 0; k < sizeof ACTIVE / sizeof *ACTIVE; k++) {
            char key[RKEYS_KEY_MAX];
            redisReply *r = redisCommand(s->rc, "ZCARD %s", rkeys_index(&KEYS, key, p, ACTIVE[k]));
            active += r && r->type == REDIS_REPLY_INTEGER ? r->integer : 1;
            freeReplyObject(r);
        }
    return active;
}
