/* services.c - the example participant services and coordinator slots for tests (see
 * services.h). */
#include "services.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

const char *const SERVICES_NAMES[SERVICES_COUNT] = {"inventory", "payment", "shipping"};

int services_start(services_t *sv, test_system_t *s, const char *const *const flags[SERVICES_COUNT])
{
    memset(sv, 0, sizeof *sv);
    char port[16];
    snprintf(port, sizeof port, "%d", s->redis.port);
    for (int i = 0; i < SERVICES_COUNT; i++) {
        char bin[PATH_MAX], name[64];
        snprintf(name, sizeof name, "%s-service", SERVICES_NAMES[i]);
        if (fixture_bin_path(name, bin, sizeof bin) < 0) {
            fprintf(stderr, "services: %s not found in $SAGA_BIN_DIR\n", name);
            goto err;
        }
        const char *argv[SERVICES_MAX_FLAGS + 8] = {bin, "--bootstrap", s->broker.bootstrap,
                                                    "--redis-port", port};
        int n = 5;
        for (int k = 0; flags && flags[i] && flags[i][k]; k++) {
            if (n == SERVICES_MAX_FLAGS + 6) {
                fprintf(stderr, "services: too many flags for %s\n", name);
                goto err;
            }
            argv[n++] = flags[i][k];
        }
        argv[n] = NULL;
        snprintf(sv->logs[i], sizeof sv->logs[i], "%.*s/%s.log", (int)(PATH_MAX - 80), s->dir,
                 name);
        const char *env[] = {"SAGA_LOG_LEVEL=info", NULL};
        sv->pids[i] = fixture_spawn(argv, sv->logs[i], env);
        if (sv->pids[i] < 0) {
            sv->pids[i] = 0;
            fprintf(stderr, "services: cannot start %s\n", name);
            goto err;
        }
    }
    return 0;
err:
    services_stop(sv);
    return -1;
}

int services_produce_order(test_system_t *s, const char *prefix, long i)
{
    char id[64], text[512];
    snprintf(id, sizeof id, "%s-%ld", prefix, i);
    snprintf(text, sizeof text,
             "{\"type\":\"start\",\"saga\":\"order-placement\",\"saga_id\":\"%s\",\"input\":"
             "{\"order_id\":\"%ld\",\"sku\":\"SKU-%ld\",\"qty\":%ld,\"amount\":%ld,"
             "\"address\":\"street %ld\"}}", id, i, i % 20, 1 + i % 3, 10 + i % 40, i);
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(s->producer, RD_KAFKA_V_TOPIC("saga.input"),
                                    RD_KAFKA_V_KEY(id, strlen(id)),
                                    RD_KAFKA_V_VALUE(text, strlen(text)),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(s->producer, 10);
    rd_kafka_poll(s->producer, 0);
    if (err) {
        fprintf(stderr, "services: produce %s: %s\n", id, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

void services_stop(services_t *sv)
{
    for (int i = 0; i < SERVICES_COUNT; i++) {
        if (sv->pids[i] > 0)
            (void)fixture_stop_process(sv->pids[i], FIXTURE_STOP_TIMEOUT_MS);
        sv->pids[i] = 0;
    }
}

static bool file_contains(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

typedef struct log_wait {
    const services_t *sv;
    const char *text;
} log_wait_t;

static bool all_logs_contain(void *opaque)
{
    const log_wait_t *w = opaque;
    for (int i = 0; i < SERVICES_COUNT; i++)
        if (!file_contains(w->sv->logs[i], w->text))
            return false;
    return true;
}

bool services_wait_log(const services_t *sv, const char *text, int timeout_ms)
{
    log_wait_t w = {sv, text};
    return fixture_wait_until(all_logs_contain, &w, timeout_ms);
}

pid_t services_spawn_coordinator(test_system_t *s, int idx, int gen, const char *const *args,
                                 const char *const *env)
{
    char log_name[64];
    snprintf(log_name, sizeof log_name, "coordinator-%d-%d.log", idx, gen);
    pid_t pid = system_spawn_coordinator(s, idx, log_name, args, env);
    if (pid < 0)
        fprintf(stderr, "services: cannot start coordinator %d\n", idx);
    return pid;
}
