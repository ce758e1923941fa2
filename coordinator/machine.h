/* machine.h - the saga state machine: events in, decisions out. No I/O.
 *
 * Each machine_on_* call takes a saga and one event, changes the saga in memory and fills
 * a machine_result_t with what must happen because of it: whether the saga changed (and
 * must be written), the history entries to append, the commands to send and the outcome
 * to publish. Timers are part of the saga state (step_state_t.timer_at, deadline_at):
 * machine_next_timer() says when the saga next needs machine_on_timer().
 *
 * Order of work: actions go forward group by group (a group is one step, or a parallel
 * group); on a failure, timeout, deadline or abort, compensation runs group by group in
 * reverse, a group only after every step of the later groups settled, never before an
 * in-flight step of that group replied or timed out. Time and randomness come from the
 * caller (machine_env_t), so a seeded simulation replays exactly. */
#ifndef SAGA_MACHINE_H
#define SAGA_MACHINE_H

#include "saga.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define MACHINE_COMMAND_ID_MAX 300
#define MACHINE_MAX_OUTPUTS_BYTES (1024 * 1024) /* all step outputs of a saga, compact JSON */
#define MACHINE_MAX_OUTCOME_OUTPUTS_BYTES (256 * 1024) /* outputs carried by an outcome */

typedef enum { CMD_ACTION = 0, CMD_COMPENSATION = 1 } command_kind_t;

typedef struct machine_env {
    int64_t now_ms;
    uint64_t *rng;            /* random state for backoff jitter (xorshift64*, nonzero) */
    const char *reply_topic;  /* where participants reply: the input topic */
} machine_env_t;

/* Why an event changed nothing. */
typedef enum {
    MACHINE_APPLIED = 0,
    MACHINE_DUPLICATE,        /* a reply to an attempt already answered */
    MACHINE_LATE,             /* a reply to an attempt that timed out or was superseded */
    MACHINE_UNEXPECTED,       /* a reply to a step or attempt never sent */
    MACHINE_NOT_APPLICABLE,   /* abort of a saga not running, retry of one not stuck, ... */
    MACHINE_NOTHING_DUE       /* a timer with nothing due (stale timer) */
} machine_verdict_t;

typedef struct machine_command {
    int step;
    command_kind_t kind;
    int attempt;
    char id[MACHINE_COMMAND_ID_MAX];  /* saga_id/step/kind/attempt */
    const char *topic;                /* borrowed from the definition */
    char *text;                       /* the whole command message, compact JSON (owned):
                                       * written as text, not built as a jansson tree, since
                                       * every transition sends one */
} machine_command_t;

typedef struct machine_result {
    machine_verdict_t verdict;
    bool changed;              /* the saga changed and must be written */
    saga_status_t old_status;
    json_t *history;           /* array of history entries (owned) */
    machine_command_t *commands;
    size_t command_count, command_cap;
    json_t *outcome;           /* outcome message (owned) when the saga reached an end */
} machine_result_t;

typedef struct machine_reply {
    int step;                  /* index in the definition */
    command_kind_t kind;
    int attempt;
    bool ok;
    bool retryable;
    json_t *output;            /* borrowed; NULL = {} */
    const char *error;         /* borrowed; may be NULL */
} machine_reply_t;

void machine_result_init(machine_result_t *r);
/* Frees what the result owns and empties it; it can be reused after. */
void machine_result_release(machine_result_t *r);

/* Starts a new saga (status RUNNING, nothing sent): sends the first group's actions and
 * sets the deadline. */
void machine_start(saga_t *s, const machine_env_t *env, machine_result_t *out);

/* A participant's reply. Replies that do not match what the saga waits for change
 * nothing (verdict says why). */
void machine_on_reply(saga_t *s, const machine_reply_t *reply, const machine_env_t *env,
                      machine_result_t *out);

/* Runs whatever is due at env->now_ms: step timeouts, backoffs, the saga deadline. */
void machine_on_timer(saga_t *s, const machine_env_t *env, machine_result_t *out);

/* Operator commands. abort: compensate a running saga. retry: give a stuck saga's failed
 * compensations a fresh retry budget. skip: mark them done by hand and go on. */
void machine_abort(saga_t *s, const char *reason, const machine_env_t *env,
                   machine_result_t *out);
void machine_retry(saga_t *s, const machine_env_t *env, machine_result_t *out);
void machine_skip(saga_t *s, const char *reason, const machine_env_t *env,
                  machine_result_t *out);

/* A recorded command was sent again (recovery re-sends the outbox): when the saga still
 * waits for exactly that attempt, its timeout restarts from now, so that the time the
 * coordinator was down does not count against the participant. Only the in-memory timer
 * moves (nothing to write): the stored, earlier one stays a safe bound for recovery.
 * Returns true when the timer moved. */
bool machine_command_resent(saga_t *s, int step, command_kind_t kind, int attempt,
                            int64_t now_ms);

/* The earliest time the saga needs machine_on_timer(), or 0 for none. */
int64_t machine_next_timer(const saga_t *s);

/* The latest due time, at or before now, of what machine_on_timer() would act on at now
 * (every step timer and the deadline due by then), or 0 for none: input appended before
 * it must be read first (the timer gate of coordinator.c). */
int64_t machine_last_due(const saga_t *s, int64_t now);

/* Builds the outcome message of a saga that was never created (unknown definition, bad
 * input). New reference. */
json_t *machine_rejected_outcome(const char *saga_id, const char *saga_name, int version,
                                 const char *reason, int64_t now_ms);

/* The backoff before attempt (attempt >= 2) under policy, with jitter from rng. */
int64_t machine_backoff_ms(const defn_retry_t *policy, int attempt, uint64_t *rng);

/* Formats a command id "saga_id/step/kind/attempt" into buf. */
void machine_command_id(char *buf, size_t len, const char *saga_id, const char *step,
                        command_kind_t kind, int attempt);

const char *command_kind_name(command_kind_t k);

#endif
