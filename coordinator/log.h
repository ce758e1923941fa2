/* log.h - the coordinator's logger: one JSON object per line on stderr (the line format of
 * common/jsonlog.h, which writes it; this is the coordinator's own settings and names).
 *
 * Every line has ts (epoch ms), level, component and msg, and saga_id when log_msg is
 * given one. The level threshold comes from log_set_level() or the SAGA_LOG_LEVEL
 * environment variable (debug, info, warn, error) read by log_init. */
#ifndef SAGA_LOG_H
#define SAGA_LOG_H

#include <stdarg.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level_t;

/* Sets the component name printed on every line (e.g. "coordinator"; copied; NULL:
 * "saga", the name before any call). */
void log_init(const char *component);
void log_set_level(log_level_t level);
/* Parses "debug", "info", "warn" or "error"; returns -1 on anything else. */
int log_level_parse(const char *s, log_level_t *out);
int log_enabled(log_level_t level);

/* Logs msg (printf-style). saga_id may be NULL. */
void log_msg(log_level_t level, const char *saga_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_msg(LOG_DEBUG, NULL, __VA_ARGS__) : (void)0)
#define log_info(...) log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, NULL, __VA_ARGS__)

#endif
