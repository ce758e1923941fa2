/* sp_log.c - the participant SDK's logger over common/jsonlog.c, and its public face
 * (see sp_log.h). */
#include "sp_log.h"

#include "jsonlog.h"
#include "saga_participant.h"

#include <stdarg.h>

_Static_assert((int)SP_LOG_DEBUG == (int)JSONLOG_DEBUG && (int)SP_LOG_INFO == (int)JSONLOG_INFO &&
                   (int)SP_LOG_WARN == (int)JSONLOG_WARN && (int)SP_LOG_ERROR == (int)JSONLOG_ERROR,
               "sp_log_level_t and jsonlog_level_t share their values");
_Static_assert((int)SAGA_LOG_DEBUG == (int)SP_LOG_DEBUG && (int)SAGA_LOG_ERROR == (int)SP_LOG_ERROR,
               "saga_log_level_t and sp_log_level_t share their values");

static jsonlog_t sp_logger = JSONLOG_INITIALIZER("participant");

int sp_log_level_parse(const char *s, sp_log_level_t *out)
{
    jsonlog_level_t lv;
    if (jsonlog_level_parse(s, &lv) < 0)
        return -1;
    *out = (sp_log_level_t)lv;
    return 0;
}

void sp_log_init(const char *component)
{
    jsonlog_init(&sp_logger, component);
}

void sp_log_init_once(const char *component)
{
    jsonlog_init_once(&sp_logger, component);
}

void sp_log_set_level(sp_log_level_t level)
{
    jsonlog_set_level(&sp_logger, (jsonlog_level_t)level);
}

int sp_log_enabled(sp_log_level_t level)
{
    return jsonlog_enabled(&sp_logger, (jsonlog_level_t)level);
}

void sp_log(sp_log_level_t level, const char *saga_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jsonlog_vwrite(&sp_logger, (jsonlog_level_t)level, saga_id, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------- the public face (saga_participant.h) */

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
    va_list ap;
    va_start(ap, fmt);
    jsonlog_vwrite(&sp_logger, (jsonlog_level_t)level, saga_id, fmt, ap);
    va_end(ap);
}
