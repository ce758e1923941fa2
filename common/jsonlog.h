/* jsonlog.h - JSON-lines logging: one JSON object per line on stderr, the one line format
 * of every program of the project (the coordinator, sagactl, the participant SDK and the
 * services built on it), so that one tool reads them all.
 *
 * A line: {"ts":EPOCH_MS,"level":"info","component":"...","msg":"..."} plus "saga_id"
 * when the caller names a saga, written compactly in that key order. A jsonlog_t is one
 * logger's settings (component and threshold): the coordinator (log.h) and the SDK
 * (sp_log.h) each keep their own, so a process holding both does not mix them. The
 * threshold comes from jsonlog_set_level, else from the SAGA_LOG_LEVEL environment
 * variable read at jsonlog_init (debug, info, warn, error; default info).
 *
 * Compiled into both the coordinator library and the participant SDK (common/: neither
 * links the other); in the SDK's shared library its symbols are hidden. */
#ifndef SAGA_JSONLOG_H
#define SAGA_JSONLOG_H

#include <stdarg.h>
#include <stdbool.h>

#define JSONLOG_COMPONENT_MAX 64  /* component names are truncated to 63 bytes */
#define JSONLOG_TEXT_MAX 2048     /* a message is truncated to 2047 bytes */

typedef enum {
    JSONLOG_DEBUG = 0,
    JSONLOG_INFO = 1,
    JSONLOG_WARN = 2,
    JSONLOG_ERROR = 3
} jsonlog_level_t;

/* One logger's settings. Define it with JSONLOG_INITIALIZER(default_component); it needs
 * no release. */
typedef struct jsonlog {
    char component[JSONLOG_COMPONENT_MAX];
    const char *default_component;  /* what jsonlog_init(NULL) sets: a literal */
    jsonlog_level_t threshold;
    bool threshold_set;             /* by jsonlog_set_level: the environment is not read */
    bool component_set;             /* by jsonlog_init */
} jsonlog_t;

#define JSONLOG_INITIALIZER(default_component) \
    {default_component, default_component, JSONLOG_INFO, false, false}

/* Sets the component printed on every line (copied; NULL: the logger's default) and,
 * unless jsonlog_set_level was called, the threshold from SAGA_LOG_LEVEL when it names a
 * level. */
void jsonlog_init(jsonlog_t *log, const char *component);
/* jsonlog_init, only when no component was set yet. */
void jsonlog_init_once(jsonlog_t *log, const char *component);
/* Parses "debug", "info", "warn" or "error" into *out. Returns 0, or -1 on anything else
 * (NULL included; *out unchanged). */
int jsonlog_level_parse(const char *s, jsonlog_level_t *out);
void jsonlog_set_level(jsonlog_t *log, jsonlog_level_t level);
/* True when lines of level are written. */
bool jsonlog_enabled(const jsonlog_t *log, jsonlog_level_t level);

/* Writes one line when level is enabled: the message (printf format) and saga_id (may be
 * NULL: no "saga_id" key). */
void jsonlog_write(const jsonlog_t *log, jsonlog_level_t level, const char *saga_id,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void jsonlog_vwrite(const jsonlog_t *log, jsonlog_level_t level, const char *saga_id,
                    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

#endif
