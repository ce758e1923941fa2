/* sp_dedup.h - the de-duplication store in Redis: one hash per idempotency key, checked
 * and written by two Lua scripts so that each decision is atomic.
 *
 * Record <prefix><saga_id>/<step>/<kind>, a hash (docs/participants.md):
 *   state        pending | ok | failed | retryable | tombstone
 *   reply        the reply body recorded (JSON: status, output | error, retryable)
 *   runs         how many times a handler was started for this key
 *   lease_until  (pending) epoch ms until which the handler run counts as in flight
 *   updated_at   epoch ms of the last write
 *   noop         (compensation answered without its handler) why
 * Every write sets the key's TTL to the retention.
 *
 * check (before the handler) decides: resend a recorded reply, refuse a tombstoned action,
 * answer an empty compensation (writing the tombstone), wait for an action in flight, or
 * run the handler (marking the key pending). record (after the handler) re-checks and
 * writes the result together with the handler's effects. */
#ifndef SP_DEDUP_H
#define SP_DEDUP_H

#include "redisconn.h"
#include "sp_command.h"
#include "sp_result.h"

#include <jansson.h>
#include <stddef.h>

typedef struct sp_dedup sp_dedup_t;

typedef struct sp_dedup_config {
    redisconn_config_t redis; /* the server or the Sentinels, AUTH, db (timeouts: below) */
    const char *prefix;
    long retention_s;
    long lease_ms;
    int sync_replicas;       /* replicas every script's writes must reach (WAIT); 0: none */
    int timeout_ms;          /* a command's timeout (> 0); connecting: at most 2 s of it */
} sp_dedup_config_t;

typedef enum {
    SP_CHECK_RUN = 0,        /* call the handler; for a compensation, action_reply is set */
    SP_CHECK_RESEND,         /* body: the recorded reply */
    SP_CHECK_REFUSE,         /* an action after its compensation */
    SP_CHECK_BUSY,           /* a compensation whose action is in flight elsewhere */
    SP_CHECK_NOOP            /* compensation answered ok without the handler; why set */
} sp_check_verdict_t;

typedef struct sp_check {
    sp_check_verdict_t verdict;
    json_t *body;            /* RESEND: the recorded body; RUN (compensation): the action's
                                recorded body. New reference or NULL. */
    char why[160];
} sp_check_t;

typedef enum {
    SP_RECORD_RECORDED = 0,  /* body: what was recorded (may differ from the handler's when
                                an effect was rejected) */
    SP_RECORD_RESEND,        /* another run recorded first; body: its reply */
    SP_RECORD_REFUSE         /* the action was compensated meanwhile */
} sp_record_verdict_t;

typedef struct sp_record {
    sp_record_verdict_t verdict;
    json_t *body;            /* new reference or NULL */
} sp_record_t;

/* Connects (AUTH, SELECT; through the Sentinels when configured) and loads the scripts.
 * A Redis that does not answer yet is logged, not an error: every use connects again.
 * Returns NULL with a reason in err when out of memory or refused (redisconn_refused,
 * rcluster_refused). */
sp_dedup_t *sp_dedup_new(const sp_dedup_config_t *cfg, char *err, size_t errlen);
void sp_dedup_free(sp_dedup_t *d);

/* The noop reply body that check records for compensations it answers itself. */
#define SP_NOOP_BODY "{\"status\":\"ok\",\"output\":{}}"

/* Return 0 with *out filled; -1 when Redis is unreachable (the connection is dropped and
 * re-made on the next call: retry later); -2 when Redis answered with an error (logged;
 * retrying will not help). On 0 the caller releases out->body with json_decref. */
int sp_dedup_check(sp_dedup_t *d, const saga_command_t *cmd, sp_check_t *out);
int sp_dedup_record(sp_dedup_t *d, const saga_command_t *cmd, const saga_result_t *res,
                    const json_t *body, sp_record_t *out);

#endif
