/* log.c - the coordinator's logger over common/jsonlog.c (see log.h). */
#include "log.h"

#include "jsonlog.h"

_Static_assert((int)LOG_DEBUG == (int)JSONLOG_DEBUG && (int)LOG_INFO == (int)JSONLOG_INFO &&
                   (int)LOG_WARN == (int)JSONLOG_WARN && (int)LOG_ERROR == (int)JSONLOG_ERROR,
               "log_level_t and jsonlog_level_t share their values");

static jsonlog_t coordinator_log = JSONLOG_INITIALIZER("saga");

void log_init(const char *component)
{
    jsonlog_init(&coordinator_log, component);
}

void log_set_level(log_level_t level)
{
    jsonlog_set_level(&coordinator_log, (jsonlog_level_t)level);
}

int log_level_parse(const char *s, log_level_t *out)
{
    jsonlog_level_t lv;
    if (jsonlog_level_parse(s, &lv) < 0)
        return -1;
    *out = (log_level_t)lv;
    return 0;
}

int log_enabled(log_level_t level)
{
    return jsonlog_enabled(&coordinator_log, (jsonlog_level_t)level);
}

void log_msg(log_level_t level, const char *saga_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jsonlog_vwrite(&coordinator_log, (jsonlog_level_t)level, saga_id, fmt, ap);
    va_end(ap);
}
