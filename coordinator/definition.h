/* definition.h - the saga definition model, and its loader and validator.
 *
 * A definition is one JSON file in sagas/ (format: docs/definitions.md). Loading parses
 * and validates it completely; a definition that loads is safe to run: every template
 * reference is resolved against the steps before it, every limit is checked. Errors are
 * collected (not only the first) into a caller-owned defn_errors_t, each naming the file
 * and either line:column (JSON syntax) or the JSON path (meaning) and what was expected.
 * The "input" schema is written in the JSON Schema subset of jschema.h; sets of
 * definitions and loading a folder are catalogue.h's.
 *
 * Steps are stored flat, in order. Each step carries the index of its group: steps of one
 * group run at once (a parallel group); a plain sequential step is a group of one. The
 * groups are numbered 0..group_count-1 in order. */
#ifndef SAGA_DEFINITION_H
#define SAGA_DEFINITION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "template.h"

/* Limits on what a definition may contain. Each, when exceeded, is a definition error. */
#define DEFN_MAX_FILE_BYTES (1024 * 1024)   /* one definition file */
#define DEFN_MAX_STEPS 64                   /* steps in one saga, all groups counted */
#define DEFN_MAX_NAME_LEN 128               /* saga, step and command type names */
#define DEFN_MAX_TOPIC_LEN 249              /* Kafka's own limit on topic names */
#define DEFN_MAX_DEPTH 16                   /* nesting depth of a payload template */
#define DEFN_MAX_TEMPLATE_REFS 256          /* {{...}} references in one payload */
#define DEFN_MAX_ATTEMPTS 100               /* retry.max_attempts */
#define DEFN_MAX_TIMEOUT_MS (7LL * 24 * 3600 * 1000) /* a step timeout or deadline */
#define DEFN_MAX_ERRORS 100                 /* errors collected per load before giving up */

/* The top-level key naming the JSON Schema of the format (docs/schemas/definition.json) for
 * editors: accepted, and left out of the loaded definition (json, content_hash). */
#define DEFN_SCHEMA_KEY "$schema"

/* Built-in defaults, used when neither the command nor the saga's "defaults" say. */
#define DEFN_DEFAULT_TIMEOUT_MS 30000            /* action and compensation timeout_ms */
#define DEFN_DEFAULT_MAX_ATTEMPTS 3              /* action retry.max_attempts */
#define DEFN_DEFAULT_COMP_MAX_ATTEMPTS 5         /* compensation retry.max_attempts */
#define DEFN_DEFAULT_INITIAL_BACKOFF_MS 200      /* retry.initial_backoff_ms */
#define DEFN_DEFAULT_MAX_BACKOFF_MS 10000        /* retry.max_backoff_ms */
#define DEFN_DEFAULT_MULTIPLIER 2.0              /* retry.multiplier */
#define DEFN_DEFAULT_JITTER 0.2                  /* retry.jitter */

/* When a compensation exhausts its retries. */
typedef enum {
    DEFN_ON_COMP_FAILURE_STOP = 0,     /* stop compensating, saga stuck (default) */
    DEFN_ON_COMP_FAILURE_CONTINUE = 1  /* compensate the earlier steps, then stuck */
} defn_comp_failure_policy_t;

typedef struct defn_retry {
    int max_attempts;          /* total attempts including the first, >= 1 */
    int64_t initial_backoff_ms;
    int64_t max_backoff_ms;
    double multiplier;         /* >= 1.0 */
    double jitter;             /* 0..1: the delay is scaled by a random factor in [1-j, 1+j] */
} defn_retry_t;

/* One command the coordinator sends: the action or the compensation of a step. */
typedef struct defn_command {
    char *type;                /* command type the participant dispatches on */
    json_t *payload;           /* payload template (owned); strings may hold {{...}} */
    int64_t timeout_ms;        /* how long to wait for the reply to one attempt */
    defn_retry_t retry;
    char *topic;               /* where it is sent: the step's topic unless the command
                                * names its own (owned, never NULL in a loaded definition) */
    template_t *compiled;      /* payload compiled (owned): render it with template_render */
} defn_command_t;

typedef struct defn_step {
    char *name;
    char *topic;               /* the participant's command topic */
    int group;                 /* index of the step's group, see above */
    defn_command_t action;
    bool has_compensation;     /* false only when the file says "compensation": "none" */
    defn_command_t compensation; /* valid when has_compensation */
    bool compensate_on_timeout;  /* compensate a timed-out action (default true) */
    bool retry_on_timeout;       /* a timed-out action is sent again (same idempotency key)
                                  * while action.retry.max_attempts allows (default false) */
} defn_step_t;

typedef struct definition {
    char *name;
    int version;               /* >= 1 */
    char *description;         /* may be NULL */
    int64_t deadline_ms;       /* whole-saga deadline; 0 = none */
    json_t *input_schema;      /* the "input" object as written (owned), or NULL */
    defn_comp_failure_policy_t on_compensation_failure;
    size_t step_count;
    defn_step_t *steps;        /* step_count entries, in order */
    int group_count;
    char **group_names;        /* group_count entries: a parallel group's optional "name",
                                * else NULL (owned) */
    char *source;              /* the file it came from (owned) */
    char *content_hash;        /* hex SHA-256 of the canonical JSON (owned) */
    json_t *json;              /* the whole definition as written, less "$schema" (owned) */
} definition_t;

/* One error found in a definition. */
typedef struct defn_error {
    char source[256];          /* file path */
    int line, column;          /* > 0 for JSON syntax errors, else 0 */
    char path[256];            /* JSON path such as steps[2].compensation.topic, or "" */
    char text[256];            /* what is wrong and what was expected */
} defn_error_t;

/* Errors collected while loading; init with {0}, release with defn_errors_release(). */
typedef struct defn_errors {
    size_t count;
    size_t capacity;
    defn_error_t *items;
} defn_errors_t;

/* Loads and validates one definition file. Returns the definition (caller owns, free
 * with definition_free) or NULL, with every error found appended to errs (may be NULL). */
definition_t *definition_load_file(const char *path, defn_errors_t *errs);

/* The same from a string; source names it in errors. */
definition_t *definition_load_string(const char *text, size_t len, const char *source,
                                     defn_errors_t *errs);

/* Frees d and everything it owns. d may be NULL. */
void definition_free(definition_t *d);

/* Index of the step called name, or -1. */
int definition_step_index(const definition_t *d, const char *name);

/* Checks a saga input against the definition's input schema (jschema_validate). Returns 0
 * when it conforms (with no schema, or d NULL: when it is an object), -1 with a reason
 * naming the path (input.amount: expected a number, got a string) written to why (may be
 * NULL). */
int definition_check_input(const definition_t *d, const json_t *input, char *why,
                           size_t why_len);

/* Appends an error (printf-style text). path and source may be NULL. errs may be NULL
 * (the error is dropped). Past DEFN_MAX_ERRORS - 1 errors, one last error says that
 * more were dropped. */
void defn_errors_add(defn_errors_t *errs, const char *source, int line, int column,
                     const char *path, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Formats one error as "file:line:col: text" or "file: path: text" into buf (len bytes,
 * cut to fit). */
void defn_error_format(const defn_error_t *e, char *buf, size_t len);

/* Frees the errors' storage and empties errs, which may be NULL. */
void defn_errors_release(defn_errors_t *errs);

#endif
