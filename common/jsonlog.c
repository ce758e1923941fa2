/* jsonlog.c - JSON-lines logging to stderr (see jsonlog.h). */
#include "jsonlog.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};
#define LEVEL_COUNT (sizeof LEVEL_NAMES / sizeof *LEVEL_NAMES)

int jsonlog_level_parse(const char *s, jsonlog_level_t *out)
{
    for (size_t i = 0; i < LEVEL_COUNT; i++) {
        if (s && strcmp(s, LEVEL_NAMES[i]) == 0) {
            *out = (jsonlog_level_t)i;
            return 0;
        }
    }
    return -1;
}

void jsonlog_init(jsonlog_t *log, const char *component)
{
    snprintf(log->component, sizeof log->component, "%s",
             component ? component : log->default_component);
    log->component_set = true;
    jsonlog_level_t lv;
    if (!log->threshold_set && jsonlog_level_parse(getenv("SAGA_LOG_LEVEL"), &lv) == 0)
        log->threshold = lv;
}

void jsonlog_init_once(jsonlog_t *log, const char *component)
{
    if (!log->component_set)
        jsonlog_init(log, component);
}

void jsonlog_set_level(jsonlog_t *log, jsonlog_level_t level)
{
    log->threshold = level;
    log->threshold_set = true;
}

bool jsonlog_enabled(const jsonlog_t *log, jsonlog_level_t level)
{
    return level >= log->threshold;
}

void jsonlog_vwrite(const jsonlog_t *log, jsonlog_level_t level, const char *saga_id,
                    const char *fmt, va_list ap)
{
    if (!jsonlog_enabled(log, level) || (unsigned)level >= LEVEL_COUNT)
        return;
    char text[JSONLOG_TEXT_MAX];
    vsnprintf(text, sizeof text, fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *line = json_pack("{s:I, s:s, s:s, s:s}", "ts",
                             (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, "level",
                             LEVEL_NAMES[level], "component", log->component, "msg", text);
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

void jsonlog_write(const jsonlog_t *log, jsonlog_level_t level, const char *saga_id,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jsonlog_vwrite(log, level, saga_id, fmt, ap);
    va_end(ap);
}
