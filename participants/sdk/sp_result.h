/* sp_result.h - what a handler decided: status, output or error, and the Redis effects to
 * apply with the de-duplication record. The SDK-internal definition of the opaque
 * saga_result_t of saga_participant.h. */
#ifndef SP_RESULT_H
#define SP_RESULT_H

#include "saga_participant.h"

#include <jansson.h>

typedef enum {
    SP_RESULT_NONE = 0,   /* the handler set nothing */
    SP_RESULT_OK,
    SP_RESULT_FAILED,     /* final failure */
    SP_RESULT_RETRY       /* failure, trying again may help */
} sp_result_status_t;

typedef struct sp_effect {
    int argc;
    char *argv[SAGA_PARTICIPANT_MAX_EFFECT_ARGS];  /* argv[0] upper-cased command, argv[1] key */
} sp_effect_t;

struct saga_result_s {
    sp_result_status_t status;
    json_t *output;       /* owned; SP_RESULT_OK */
    char *error;          /* owned; failures */
    int neffects;
    sp_effect_t effects[SAGA_PARTICIPANT_MAX_EFFECTS];
};

/* Initialises an embedded result (nothing set) / releases what it owns. */
void sp_result_init(saga_result_t *res);
void sp_result_release(saga_result_t *res);

/* The reply body for res: {"status":"ok","output":{...}} or {"status":"failed",
 * "error":..., "retryable":...}. Returns a new reference, NULL when out of memory. */
json_t *sp_result_body_new(const saga_result_t *res);

/* The record state for res: "ok", "failed" or "retryable". A compensation's failure is
 * never final (a compensation must eventually succeed: an operator's `sagactl retry` sends
 * it again and it must run again), so it is recorded "retryable" whatever the reply says. */
const char *sp_result_state(const saga_result_t *res, saga_kind_t kind);

/* A failed reply body (new reference). */
json_t *sp_body_failed_new(const char *error, int retryable);

#endif
