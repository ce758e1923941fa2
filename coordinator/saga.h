/* saga.h - one saga instance: its state in memory and its encoding as Redis hash fields.
 *
 * A saga_t is what the state machine (machine.h) reads and changes, what the store writes
 * to the saga's hash and what recovery rebuilds from it. It holds no I/O. The encoding
 * (saga_encode_fields / saga_decode_fields) is the documented Redis contract of
 * docs/redis.md: flat fields for dashboards plus a "steps" JSON array with every step. */
#ifndef SAGA_SAGA_H
#define SAGA_SAGA_H

#include "definition.h"
#include "jsonw.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SAGA_ID_MAX_LEN 128
/* The largest attempt counter a saga may hold: the machine computes attempt + 1. */
#define SAGA_MAX_ATTEMPT (INT32_MAX - 1)
#define SAGA_NO_TIMER_SLOT ((size_t)-1)

typedef enum {
    SAGA_RUNNING = 0,     /* actions going forward */
    SAGA_COMPENSATING,    /* undoing completed steps in reverse order */
    SAGA_COMPLETED,       /* every action succeeded (terminal) */
    SAGA_COMPENSATED,     /* every needed compensation succeeded (terminal) */
    SAGA_STUCK,           /* a compensation exhausted its retries: needs an operator */
    SAGA_STATUS_COUNT
} saga_status_t;

typedef enum {
    STEP_PENDING = 0,       /* action not sent yet */
    STEP_RUNNING,           /* action sent, waiting for the reply (timer: timeout) */
    STEP_RETRY_WAIT,        /* action failed retryably, waiting to resend (timer: backoff) */
    STEP_DONE,              /* action succeeded; output kept */
    STEP_FAILED,            /* action failed for good: no effect to undo */
    STEP_TIMED_OUT,         /* no reply in time: effect unknown */
    STEP_COMP_PENDING,      /* compensation needed, waits for its turn (reverse order) */
    STEP_COMPENSATING,      /* compensation sent, waiting (timer: timeout) */
    STEP_COMP_RETRY_WAIT,   /* compensation failed or timed out, waiting to resend */
    STEP_COMPENSATED,       /* compensation succeeded */
    STEP_COMP_FAILED,       /* compensation exhausted its retries */
    STEP_SKIPPED,           /* an operator marked the compensation as done by hand */
    STEP_PHASE_COUNT
} step_phase_t;

/* Field order packs it into 72 bytes: a saga in flight holds one per step. */
typedef struct step_state {
    int attempt;            /* action attempts sent so far */
    int comp_attempt;       /* compensation attempts sent so far */
    int comp_budget_from;   /* comp_attempt when the current retry budget began */
    uint8_t phase;          /* a step_phase_t */
    bool action_timed_out;  /* the last action attempt got no reply in time */
    int64_t started_at;     /* first action sent, epoch ms; 0 = never */
    int64_t finished_at;    /* action settled, epoch ms */
    int64_t comp_started_at, comp_finished_at;
    int64_t timer_at;       /* when the step's timeout or backoff fires; 0 = none */
    json_t *output;         /* action output (owned), or NULL */
    char *error;            /* last error of this step (owned), or NULL */
} step_state_t;

/* One allocation holds the saga, its steps and its id (saga_new). */
typedef struct saga {
    const char *id;            /* at most SAGA_ID_MAX_LEN bytes, NUL-terminated */
    const definition_t *def;   /* borrowed from the definition set */
    int32_t partition;
    saga_status_t status;
    int64_t version;           /* store version, +1 per written transition */
    json_t *input;             /* owned */
    int64_t created_at, updated_at, finished_at;
    int64_t deadline_at;       /* 0 = none */
    int group;                 /* the group actions are running in (forward) */
    char *error;               /* why it is compensating or stuck (owned), or NULL */
    int step_count;
    step_state_t *steps;       /* step_count entries, parallel to def->steps */
    /* Runtime bookkeeping of the coordinator, never stored: */
    int64_t timer_due;         /* the time it is filed under in the timer heap */
    size_t timer_slot;         /* its place in the timer heap, or SAGA_NO_TIMER_SLOT */
    bool creating;             /* its start is being written, not yet confirmed */
    int pending_writes;        /* its transitions queued or in flight, not yet confirmed */
} saga_t;

/* A new running-to-be saga (status RUNNING, nothing sent). input is borrowed and copied
 * by reference (json_incref). Returns NULL on allocation failure. */
saga_t *saga_new(const char *id, const definition_t *def, int32_t partition, json_t *input,
                 int64_t now_ms);
void saga_free(saga_t *s);

/* Replaces a string field (owned char *) with a copy of text (NULL clears it). */
void saga_set_text(char **field, const char *text);

const char *saga_status_name(saga_status_t st);
int saga_status_parse(const char *name, saga_status_t *out);
const char *step_phase_name(step_phase_t ph);
int step_phase_parse(const char *name, step_phase_t *out);

bool saga_status_is_terminal(saga_status_t st);

/* The step that best describes where the saga is (for the hash's "step" field): the
 * compensating one, else the running one, else the last touched; -1 before any. */
int saga_current_step(const saga_t *s);

/* Encodes the saga as hash fields: a JSON object of string values (new reference). */
json_t *saga_encode_fields(const saga_t *s);

/* Called for each hash field: its name and value (len bytes, NUL-terminated), both
 * borrowed for the call. Returns 0, or -1 to report a failure (the walk goes on). */
typedef int (*saga_field_fn)(const char *name, const char *value, size_t len, void *opaque);

/* Calls fn for every hash field (all, as saga_encode_fields) or only for those a
 * transition can change (saga_encode_fields without the ones fixed when the saga is
 * created: id, definition, definition_version, definition_hash, partition, created_at,
 * deadline_at, input), the same names and values in
 * the same order, without building JSON values (the store writes these on every
 * transition). scratch is the caller's writer, reused between calls. Returns 0, or -1
 * when out of memory or fn failed. */
int saga_visit_fields(const saga_t *s, bool all, jsonw_t *scratch, saga_field_fn fn,
                      void *opaque);

/* The "steps" field alone (new reference): a JSON array, one object per step. */
json_t *saga_encode_steps(const saga_t *s);

/* Rebuilds a saga from its hash fields (field name -> string value). def must be the
 * definition the saga started with (name and version from the "definition" and
 * "definition_version" fields). Returns NULL with a reason in why on any inconsistency. */
saga_t *saga_decode_fields(const json_t *fields, const definition_t *def, char *why,
                           size_t why_len);

#endif
