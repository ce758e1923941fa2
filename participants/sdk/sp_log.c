/* sp_log.c - JSON-lines logging for the participant SDK (see sp_log.h). */
#include "sp_log.h"

#include "saga_participant.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SP_LOG_MAX_TEXT 2048

static char sp_log_component[64] = "participant";
static sp_log_level_t sp_log_threshold = SP_LOG_INFO;
static int sp_log_threshold_set = 0;
static int sp_log_component_set = 0;
static const char *const SP_LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

int sp_log_level_parse(const char *s, sp_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, SP_LEVEL_NAMES[i]) == 0) {
            *out = (sp_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void sp_log_init(const char *component)
{
    snprintf(sp_log_component, sizeof sp_log_component, "%s", component ? component : "participant");
    sp_log_component_set = 1;
    sp_log_level_t lv;
    if (!sp_log_threshold_set && sp_log_level_parse(getenv("SAGA_LOG_LEVEL"), &lv) == 0)
        sp_log_threshold = lv;
}

void sp_log_init_once(const char *component)
{
    if (!sp_log_component_set)
        sp_log_init(component);
}

void sp_log_set_level(sp_log_level_t level)
{
    sp_log_threshold = level;
    sp_log_threshold_set = 1;
}

int sp_log_enabled(sp_log_level_t level)
{
    return level >= sp_log_threshold;
}

void sp_log(sp_log_level_t level, const char *saga_id, const char *fmt, ...)
{
    if (!sp_log_enabled(level))
        return;
    char text[SP_LOG_MAX_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *line = json_pack("{s:I, s:s, s:s, s:s}", "ts",
                             (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, "level",
                             SP_LEVEL_NAMES[level], "component", sp_log_component, "msg", text);
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

/* ---------------------------------------------------- the public face (saga_participant.h) */

_Static_assert((int)SAGA_LOG_DEBUG == (int)SP_LOG_DEBUG && (int)SAGA_LOG_ERROR == (int)SP_LOG_ERROR,
               "saga_log_level_t and sp_log_level_t share their values");

void saga_participant_log_init(const char *component)
{
    sp_log_init(component);
}

int saga_participant_log_level_set(const char *name)
{
    sp_log_level_t lv;
    if (sp_log_level_parse(name, &lv) != 0)
        return -1;
    sp_log_set_level(lv);
    return 0;
}

void saga_participant_log(saga_log_level_t level, const char *saga_id, const char *fmt, ...)
{
    if (!sp_log_enabled((sp_log_level_t)level))
        return;
    char text[SP_LOG_MAX_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    sp_log((sp_log_level_t)level, saga_id, "%s", text);
}
