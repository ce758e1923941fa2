/* log.c - structured JSON-lines logging to stderr (see log.h). */
#include "log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char log_component[64] = "saga";
static log_level_t log_threshold = LOG_INFO;
static int log_threshold_set = 0;

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s, log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, LEVEL_NAMES[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void log_init(const char *component)
{
    snprintf(log_component, sizeof log_component, "%s", component ? component : "saga");
    log_level_t lv;
    if (!log_threshold_set && log_level_parse(getenv("SAGA_LOG_LEVEL"), &lv) == 0)
        log_threshold = lv;
}

void log_set_level(log_level_t level)
{
    log_threshold = level;
    log_threshold_set = 1;
}

int log_enabled(log_level_t level)
{
    return level >= log_threshold;
}

void log_msg(log_level_t level, const char *saga_id, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *line = json_pack("{s:I, s:s, s:s, s:s}", "ts",
                             (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, "level",
                             LEVEL_NAMES[level], "component", log_component, "msg", text);
    if (!line)
        return;
    if (saga_id)
        json_object_set_new(line, "saga_id", json_string(saga_id));
    char *s = json_dumps(line, JSON_COMPACT);
    if (s) {
        fprintf(stderr, "%s\n", s);
        free(s);
    }
    json_decref(line);
}
