/* scripted.h - a scripted participant for integration tests.
 *
 * A background thread consumes the command topics it is given (every partition, from the
 * beginning, no group), records every command it receives, and answers each one as the
 * test's rules say: ok with an output, failed, failed-retryable, or no answer at all (to
 * make the step time out), to the command's reply_to topic and partition as
 * docs/protocol.md requires. Rules are matched in order; the first that matches decides.
 * Without a matching rule a command is answered ok with output {"<step>_id": "<saga>"}. */
#ifndef SAGA_TEST_SCRIPTED_H
#define SAGA_TEST_SCRIPTED_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    SCRIPT_OK = 0,
    SCRIPT_FAIL,            /* failed, retryable false */
    SCRIPT_FAIL_RETRYABLE,  /* failed, retryable true */
    SCRIPT_SILENT,          /* no reply: the step times out */
    SCRIPT_OK_TWICE,        /* ok, and the same reply sent again (a duplicate) */
    SCRIPT_OK_AFTER         /* ok, sent delay_ms after the command arrived (other commands
                             * are answered meanwhile) */
} script_answer_t;

/* Rules are written as positional initializers, {saga, step, kind, attempt_max, answer,
 * output}: fields appended later (delay_ms) default to zero, so suites that include this
 * header do not warn about leaving them out. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

typedef struct script_rule {
    const char *saga_id;    /* NULL = any saga */
    const char *step;       /* NULL = any step */
    const char *kind;       /* "action", "compensation" or NULL = any */
    int attempt_max;        /* applies while attempt <= attempt_max; 0 = any attempt */
    script_answer_t answer;
    const char *output;     /* JSON object text for SCRIPT_OK, or NULL for the default */
    int delay_ms;           /* SCRIPT_OK_AFTER: how long to wait before replying */
} script_rule_t;

typedef struct scripted scripted_t;

/* Starts the participant on topics (NULL-terminated). rules (count n) are copied.
 * Returns NULL on failure. */
scripted_t *scripted_start(const char *bootstrap, const char *const *topics,
                           const script_rule_t *rules, size_t n);

/* Stops the thread and frees everything. NULL is a no-op. */
void scripted_stop(scripted_t *p);

/* Number of commands received so far. */
size_t scripted_count(scripted_t *p);
/* Forgets the commands received so far (after a warm-up). */
void scripted_forget(scripted_t *p);

/* Waits up to timeout_ms until at least n commands were received. */
bool scripted_wait(scripted_t *p, size_t n, int timeout_ms);

/* A copy of every command received for saga_id (or all when NULL), in arrival order: a
 * JSON array of command messages (new reference). */
json_t *scripted_commands(scripted_t *p, const char *saga_id);

/* The commands of saga_id as "step/kind/attempt" strings joined with spaces, in arrival
 * order, written to buf: easy to compare with an expected trail. */
void scripted_trail(scripted_t *p, const char *saga_id, char *buf, size_t len);

#endif
