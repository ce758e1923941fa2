/* sp_log.h - the participant SDK's logger: one JSON object per line on stderr.
 *
 * The line format is the coordinator's (common/jsonlog.h writes both: ts, level,
 * component, msg, and optional saga_id), so one tool reads both; this is the SDK's own
 * settings (component, default "participant", and threshold). The threshold comes from
 * the SAGA_LOG_LEVEL environment variable (debug, info, warn, error; default info).
 * Internal to the SDK; services log through its public face, saga_participant_log
 * (saga_participant.h). */
#ifndef SP_LOG_H
#define SP_LOG_H

typedef enum { SP_LOG_DEBUG = 0, SP_LOG_INFO = 1, SP_LOG_WARN = 2, SP_LOG_ERROR = 3 } sp_log_level_t;

/* Sets the component name printed on every line (copied; truncated to 63 bytes). */
void sp_log_init(const char *component);
/* Like sp_log_init, but only when no component was set yet (the SDK's default). */
void sp_log_init_once(const char *component);
/* Parses "debug", "info", "warn" or "error"; returns 0, or -1 on anything else. */
int sp_log_level_parse(const char *s, sp_log_level_t *out);
void sp_log_set_level(sp_log_level_t level);
int sp_log_enabled(sp_log_level_t level);

/* Logs one line. saga_id may be NULL. */
void sp_log(sp_log_level_t level, const char *saga_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
