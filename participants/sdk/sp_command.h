/* sp_command.h - one decoded saga command: parsing, validation, accessors' storage, and
 * building the reply that echoes it (docs/protocol.md, "command" and "reply").
 *
 * The SDK-internal definition of the opaque saga_command_t of saga_participant.h. */
#ifndef SP_COMMAND_H
#define SP_COMMAND_H

#include "saga_participant.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SP_MAX_SAGA_ID_LEN 128   /* protocol: 1-128 chars of [A-Za-z0-9._:-] */
#define SP_MAX_NAME_LEN 256      /* step names, command types, topics (generous) */
#define SP_MAX_ERROR_TEXT 256

struct saga_command_s {
    json_t *doc;                 /* the whole message (owned); strings below point into it */
    const char *command_id;
    const char *saga_id;
    const char *saga_name;       /* "" when absent */
    const char *step;            /* "" when invalid */
    const char *type;            /* "" when invalid */
    saga_kind_t kind;
    int has_kind;                /* 0 when invalid: the reply then omits kind */
    int attempt;                 /* 0 when invalid: the reply then omits attempt */
    int64_t deadline;
    json_t *payload;             /* borrowed from doc, or owned empty object (own_payload) */
    int own_payload;
    json_t *action_output;       /* owned reference, set for a compensation that runs */
    const char *reply_topic;
    int32_t reply_partition;
    char *key;                   /* saga_id/step/kind (owned) */
    char *action_key;            /* saga_id/step/action (owned) */
};

typedef enum {
    SP_PARSE_OK = 0,             /* a valid command */
    SP_PARSE_REPLYABLE = 1,      /* invalid, but it says where and how to reply */
    SP_PARSE_INVALID = -1        /* invalid and not answerable: log and skip */
} sp_parse_status_t;

/* Decodes buf (len bytes, not NUL-terminated). SP_PARSE_OK and SP_PARSE_REPLYABLE set
 * *out (free with sp_command_free); SP_PARSE_REPLYABLE and SP_PARSE_INVALID explain in
 * why (size whylen). */
sp_parse_status_t sp_command_parse(const char *buf, size_t len, saga_command_t **out, char *why,
                                   size_t whylen);

void sp_command_free(saga_command_t *cmd);

/* Builds the reply message for cmd: body is an object with status and output or
 * error/retryable (borrowed); the echo fields come from cmd. Returns a malloc'ed compact
 * JSON string (*len set), or NULL when out of memory. */
char *sp_command_reply_dumps(const saga_command_t *cmd, const json_t *body, size_t *len);

#endif
