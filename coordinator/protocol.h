/* protocol.h - decoding and checking the messages of the input topic (docs/protocol.md).
 *
 * protocol_decode_input() turns one Kafka message into a typed input_msg_t or says
 * exactly what is wrong with it ("$.attempt: expected an integer >= 1, got a string"),
 * which becomes the dead-letter reason. Unknown fields are refused (a typo must not pass
 * silently); a "meta" object is allowed anywhere for callers' own data. */
#ifndef SAGA_PROTOCOL_H
#define SAGA_PROTOCOL_H

#include "machine.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define PROTOCOL_MAX_MESSAGE_BYTES (1024 * 1024) /* default of max_message_bytes */
#define PROTOCOL_MAX_DEPTH 32                     /* nesting of input and output JSON */
#define PROTOCOL_MAX_REASON_LEN 1024              /* error and reason strings */
#define PROTOCOL_DEAD_LETTER_PAYLOAD_MAX (64 * 1024)
#define PROTOCOL_DEAD_LETTER_KEY_MAX 1024        /* the Kafka key copied into a dead letter */
/* A start's input and a reply's output, as compact JSON. Both are kept in the saga's
 * Redis hash and rewritten with it on every transition, rendered into later commands and
 * (outputs) copied into the outcome: the message limit alone would let 64 steps store
 * 64 MiB. */
#define PROTOCOL_MAX_INPUT_BYTES (256 * 1024)
#define PROTOCOL_MAX_OUTPUT_BYTES (64 * 1024)
#define PROTOCOL_MAX_COMMAND_ID_LEN (MACHINE_COMMAND_ID_MAX - 1) /* longer: not one we sent */
#define PROTOCOL_MAX_KEYWORD_LEN 32              /* "type", "kind", "status" values */

typedef enum { MSG_START, MSG_REPLY, MSG_ABORT, MSG_RETRY, MSG_SKIP } input_msg_type_t;

typedef struct input_msg {
    input_msg_type_t type;
    json_t *root;              /* owned; the strings below are borrowed from it */
    const char *saga_id;       /* NULL only for a start without one */
    /* start */
    const char *saga_name;
    int version;               /* 0 = latest */
    json_t *input;             /* borrowed; never NULL for a start */
    /* reply */
    const char *command_id;
    const char *step;
    command_kind_t kind;
    int attempt;
    bool ok;
    bool retryable;
    json_t *output;            /* borrowed; NULL when absent */
    const char *error;
    /* abort, skip */
    const char *reason;
    /* abort, retry, skip: the saga version the operator saw, 0 = any */
    int64_t expected_version;
    /* Set when decoding failed and the message was a start: its caller gets a rejected
     * outcome (docs/protocol.md), under the id it gave when that is usable. */
    bool refused_start;
    bool refused_id_unusable;                  /* a saga_id was given but is not valid */
    char refused_id[SAGA_ID_MAX_LEN + 1];      /* "" when none was given */
    char refused_saga[DEFN_MAX_NAME_LEN + 1];  /* the definition named, "" when none */
    int refused_version;                       /* the version asked for, 0 when none */
} input_msg_t;

/* Decodes one message. key (may be NULL) is the Kafka key: when present it must equal the
 * saga id. Returns 0, or -1 with the reason in why (out is then released, except for the
 * refused_* fields). */
int protocol_decode_input(const char *buf, size_t len, const char *key, size_t key_len,
                          size_t max_bytes, input_msg_t *out, char *why, size_t why_len);
void input_msg_release(input_msg_t *m);

/* Parses a command id "saga_id/step/kind/attempt" (docs/protocol.md; no part holds a
 * '/'), as machine_command_id() formats it. Returns 0, or -1 when id is not one (an
 * outcome's outbox id, or a participant's mistake). */
int protocol_parse_command_id(const char *id, char *saga, size_t saga_len, char *step,
                              size_t step_len, command_kind_t *kind, int *attempt);

/* True when id is a valid saga id: 1..SAGA_ID_MAX_LEN characters of [A-Za-z0-9._:-]. */
bool protocol_valid_saga_id(const char *id);

/* The nesting depth of a JSON value (a scalar is 0). */
int protocol_json_depth(const json_t *v);

/* Builds a dead-letter message (new reference). */
json_t *protocol_dead_letter(const char *reason, const char *topic, int32_t partition,
                             int64_t offset, const char *key, size_t key_len,
                             const char *payload, size_t len);

#endif
