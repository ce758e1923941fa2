/* sp_command.c - decoding and validating commands, the command accessors of
 * saga_participant.h, and replies that echo their command (see sp_command.h). */
#include "sp_command.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sp_saga_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SP_MAX_SAGA_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

/* Returns the string at field name, or NULL when absent, not a string, empty or too long. */
static const char *sp_field_string(json_t *doc, const char *name, size_t max)
{
    json_t *v = json_object_get(doc, name);
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > max || strlen(s) != n)
        return NULL;
    return s;
}

static char *sp_key_join(const char *saga_id, const char *step, const char *kind)
{
    size_t n = strlen(saga_id) + strlen(step) + strlen(kind) + 3;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s/%s/%s", saga_id, step, kind);
    return k;
}

sp_parse_status_t sp_command_parse(const char *buf, size_t len, saga_command_t **out, char *why,
                                   size_t whylen)
{
    *out = NULL;
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        snprintf(why, whylen, "not JSON: %s at line %d column %d", jerr.text, jerr.line, jerr.column);
        return SP_PARSE_INVALID;
    }
    if (!json_is_object(doc)) {
        snprintf(why, whylen, "$: expected an object");
        json_decref(doc);
        return SP_PARSE_INVALID;
    }
    const char *type = sp_field_string(doc, "type", SP_MAX_NAME_LEN);
    if (!type || strcmp(type, "command") != 0) {
        snprintf(why, whylen, "$.type: expected \"command\"");
        json_decref(doc);
        return SP_PARSE_INVALID;
    }

    saga_command_t *cmd = calloc(1, sizeof *cmd);
    if (!cmd) {
        snprintf(why, whylen, "out of memory");
        json_decref(doc);
        return SP_PARSE_INVALID;
    }
    cmd->doc = doc;
    cmd->saga_name = "";
    cmd->step = "";
    cmd->type = "";

    /* First what a reply needs: without these the command cannot be answered. */
    cmd->saga_id = sp_field_string(doc, "saga_id", SP_MAX_SAGA_ID_LEN);
    if (!cmd->saga_id || !sp_saga_id_valid(cmd->saga_id)) {
        snprintf(why, whylen, "$.saga_id: expected 1-%d chars of [A-Za-z0-9._:-]", SP_MAX_SAGA_ID_LEN);
        goto invalid;
    }
    cmd->command_id = sp_field_string(doc, "command_id", SP_MAX_NAME_LEN * 2);
    if (!cmd->command_id) {
        snprintf(why, whylen, "$.command_id: expected a non-empty string");
        goto invalid;
    }
    json_t *rt = json_object_get(doc, "reply_to");
    cmd->reply_topic = json_is_object(rt) ? sp_field_string(rt, "topic", SP_MAX_NAME_LEN) : NULL;
    json_t *rp = json_object_get(rt, "partition");
    if (!cmd->reply_topic) {
        snprintf(why, whylen, "$.reply_to.topic: expected a non-empty string");
        goto invalid;
    }
    if (!json_is_integer(rp) || json_integer_value(rp) < 0 || json_integer_value(rp) > INT32_MAX) {
        snprintf(why, whylen, "$.reply_to.partition: expected an integer >= 0");
        goto invalid;
    }
    cmd->reply_partition = (int32_t)json_integer_value(rp);

    /* From here on an invalid command is answered "failed". Echo what is valid. */
    const char *step = sp_field_string(doc, "step", SP_MAX_NAME_LEN);
    const char *kind = sp_field_string(doc, "kind", SP_MAX_NAME_LEN);
    json_t *att = json_object_get(doc, "attempt");
    if (step)
        cmd->step = step;
    if (kind && strcmp(kind, "action") == 0) {
        cmd->kind = SAGA_KIND_ACTION;
        cmd->has_kind = 1;
    } else if (kind && strcmp(kind, "compensation") == 0) {
        cmd->kind = SAGA_KIND_COMPENSATION;
        cmd->has_kind = 1;
    }
    if (json_is_integer(att) && json_integer_value(att) >= 1 && json_integer_value(att) <= INT32_MAX)
        cmd->attempt = (int)json_integer_value(att);

    if (!step) {
        snprintf(why, whylen, "$.step: expected a non-empty string");
        goto replyable;
    }
    if (!cmd->has_kind) {
        snprintf(why, whylen, "$.kind: expected \"action\" or \"compensation\"");
        goto replyable;
    }
    if (!cmd->attempt) {
        snprintf(why, whylen, "$.attempt: expected an integer >= 1");
        goto replyable;
    }
    const char *ctype = sp_field_string(doc, "command", SP_MAX_NAME_LEN);
    if (!ctype) {
        snprintf(why, whylen, "$.command: expected a non-empty string");
        goto replyable;
    }
    cmd->type = ctype;
    json_t *payload = json_object_get(doc, "payload");
    if (payload && !json_is_object(payload) && !json_is_null(payload)) {
        snprintf(why, whylen, "$.payload: expected an object");
        goto replyable;
    }
    if (json_is_object(payload)) {
        cmd->payload = payload;
    } else {
        cmd->payload = json_object();
        cmd->own_payload = 1;
    }
    json_t *dl = json_object_get(doc, "deadline");
    if (dl && !json_is_null(dl)) {
        if (!json_is_integer(dl) || json_integer_value(dl) < 0) {
            snprintf(why, whylen, "$.deadline: expected epoch milliseconds");
            goto replyable;
        }
        cmd->deadline = (int64_t)json_integer_value(dl);
    }
    const char *sname = sp_field_string(doc, "saga", SP_MAX_NAME_LEN);
    if (sname)
        cmd->saga_name = sname;

    cmd->key = sp_key_join(cmd->saga_id, cmd->step, kind);
    cmd->action_key = sp_key_join(cmd->saga_id, cmd->step, "action");
    if (!cmd->key || !cmd->action_key || !cmd->payload) {
        snprintf(why, whylen, "out of memory");
        goto invalid;
    }
    /* The key is defined as saga_id/step/kind; a different one would break the link
     * between an action and its compensation, so it is refused rather than trusted. */
    json_t *ik = json_object_get(doc, "idempotency_key");
    if (ik && (!json_is_string(ik) || strcmp(json_string_value(ik), cmd->key) != 0)) {
        snprintf(why, whylen, "$.idempotency_key: expected \"%s\" (saga_id/step/kind)", cmd->key);
        goto replyable;
    }
    *out = cmd;
    return SP_PARSE_OK;

replyable:
    *out = cmd;
    return SP_PARSE_REPLYABLE;
invalid:
    sp_command_free(cmd);
    return SP_PARSE_INVALID;
}

void sp_command_free(saga_command_t *cmd)
{
    if (!cmd)
        return;
    if (cmd->own_payload)
        json_decref(cmd->payload);
    json_decref(cmd->action_output);
    free(cmd->key);
    free(cmd->action_key);
    json_decref(cmd->doc);
    free(cmd);
}

char *sp_command_reply_dumps(const saga_command_t *cmd, const json_t *body, size_t *len)
{
    json_t *r = json_object();
    if (!r)
        return NULL;
    int rc = json_object_set_new(r, "type", json_string("reply"));
    rc |= json_object_set_new(r, "command_id", json_string(cmd->command_id));
    rc |= json_object_set_new(r, "saga_id", json_string(cmd->saga_id));
    if (cmd->step[0])
        rc |= json_object_set_new(r, "step", json_string(cmd->step));
    if (cmd->has_kind)
        rc |= json_object_set_new(r, "kind", json_string(cmd->kind == SAGA_KIND_ACTION ? "action" : "compensation"));
    if (cmd->attempt)
        rc |= json_object_set_new(r, "attempt", json_integer(cmd->attempt));
    rc |= json_object_update(r, (json_t *)body);
    char *s = rc == 0 ? json_dumps(r, JSON_COMPACT) : NULL;
    json_decref(r);
    if (s)
        *len = strlen(s);
    return s;
}

/* --- public accessors --- */
const char *saga_command_id(const saga_command_t *cmd) { return cmd->command_id; }
const char *saga_command_idempotency_key(const saga_command_t *cmd) { return cmd->key; }
const char *saga_command_saga_id(const saga_command_t *cmd) { return cmd->saga_id; }
const char *saga_command_saga_name(const saga_command_t *cmd) { return cmd->saga_name; }
const char *saga_command_step(const saga_command_t *cmd) { return cmd->step; }
saga_kind_t saga_command_kind(const saga_command_t *cmd) { return cmd->kind; }
const char *saga_command_type(const saga_command_t *cmd) { return cmd->type; }
int saga_command_attempt(const saga_command_t *cmd) { return cmd->attempt; }
int64_t saga_command_deadline(const saga_command_t *cmd) { return cmd->deadline; }
json_t *saga_command_payload(const saga_command_t *cmd) { return cmd->payload; }
json_t *saga_command_action_output(const saga_command_t *cmd) { return cmd->action_output; }
