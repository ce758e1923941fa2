/* dryrun.h - a dry run of a saga definition: the real state machine (machine.h) driven
 * with invented replies, no Kafka, no Redis (`sagactl simulate`).
 *
 * The saga starts with the given input; every command the machine decides is recorded
 * with its rendered payload, then answered at once, in the order it was sent: ok, with an
 * output that holds a stand-in for every value later payloads reference
 * (template_sample_output), unless the options make a step's action fail for good or
 * never reply. Time only moves to the machine's next timer when nothing is left to answer
 * (a timeout, a backoff), so retries and their delays show as the coordinator would run
 * them. The run ends when the saga completes, is compensated, or waits for an operator
 * (stuck). Nothing here re-implements a rule of the machine: it only feeds it events. */
#ifndef SAGA_DRYRUN_H
#define SAGA_DRYRUN_H

#include "definition.h"
#include "machine.h"
#include "saga.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#define DRYRUN_START_MS 1767225600000LL  /* 2026-01-01T00:00:00Z: runs are reproducible */
#define DRYRUN_MAX_EVENTS 100000         /* replies and timers before a run is cut */
#define DRYRUN_DEFAULT_ID "dry-run"
#define DRYRUN_REPLY_TOPIC "saga.input"

typedef struct dryrun_options {
    const char *saga_id;       /* NULL: DRYRUN_DEFAULT_ID */
    const char *fail_step;     /* NULL, or the step whose action fails (not retryable) */
    const char *timeout_step;  /* NULL, or the step whose action never replies */
    const char *reply_topic;   /* NULL: DRYRUN_REPLY_TOPIC (the commands' reply_to) */
} dryrun_options_t;

/* How the dry run answered a command. */
typedef enum {
    DRYRUN_REPLY_OK = 0,
    DRYRUN_REPLY_FAILED,       /* --fail: failed, not retryable */
    DRYRUN_REPLY_NONE          /* --timeout: no reply */
} dryrun_reply_t;

/* One command the machine sent. */
typedef struct dryrun_command {
    int64_t at_ms;             /* since the start */
    int step;
    command_kind_t kind;
    int attempt;
    char *topic;               /* owned */
    json_t *message;           /* the whole command message (owned) */
    dryrun_reply_t reply;
    json_t *output;            /* the invented output of an ok action (owned), or NULL */
} dryrun_command_t;

typedef struct dryrun {
    const definition_t *def;   /* borrowed */
    char *saga_id;
    json_t *input;
    dryrun_command_t *commands; /* in the order sent */
    size_t command_count, command_cap;
    saga_status_t status;      /* at the end */
    char *error;               /* the saga's error at the end, or NULL */
    json_t *steps;             /* every step's state at the end (saga_encode_steps) */
    int64_t ended_ms;          /* since the start */
    bool cut;                  /* DRYRUN_MAX_EVENTS reached before an end */
} dryrun_t;

/* Runs a saga of d on input (borrowed; checked against the definition's input schema
 * first). Returns the run (caller frees with dryrun_free), or NULL with the reason in why:
 * the input is rejected (the reason a start would be rejected with), a step option names
 * no step of d, or out of memory. */
dryrun_t *dryrun_run(const definition_t *d, const json_t *input, const dryrun_options_t *o,
                     char *why, size_t why_len);

void dryrun_free(dryrun_t *r);

/* Prints the run for people: the actions in the order sent, each with its rendered
 * payload and the invented reply, then the compensations, then the final status and
 * every step's phase. Returns 0, or -1 when writing failed. */
int dryrun_print(const dryrun_t *r, FILE *out);

/* The run as one JSON document (new reference): {"saga", "version", "saga_id", "input",
 * "commands": [{"at_ms", "topic", "reply", "output", "message"}], "status", "error",
 * "steps"}. */
json_t *dryrun_json(const dryrun_t *r);

#endif
