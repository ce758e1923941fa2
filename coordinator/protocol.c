/* protocol.c - input-topic message decoding and checking (see protocol.h). */
#include "protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool protocol_valid_saga_id(const char *id)
{
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return n >= 1 && n <= SAGA_ID_MAX_LEN;
}

int protocol_json_depth(const json_t *v)
{
    int max = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c)
        {
            int d = protocol_json_depth(c) + 1;
            if (d > max)
                max = d;
            if (max > PROTOCOL_MAX_DEPTH)
                return max; /* deep enough to refuse: stop before the stack grows */
        }
        return max ? max : 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            int d = protocol_json_depth(c) + 1;
            if (d > max)
                max = d;
            if (max > PROTOCOL_MAX_DEPTH)
                return max;
        }
        return max ? max : 1;
    }
    return 0;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* The fields each message type allows (besides "type" and "meta"). */
static const char *const START_FIELDS[] = {"saga_id", "saga", "version", "input", NULL};
static const char *const REPLY_FIELDS[] = {"command_id", "saga_id", "step", "kind", "attempt",
                                           "status", "output", "error", "retryable", NULL};
static const char *const ABORT_FIELDS[] = {"saga_id", "reason", "expected_version", NULL};
static const char *const RETRY_FIELDS[] = {"saga_id", "expected_version", NULL};

/* The optional expected_version of an operator command. */
static int get_expected_version(const json_t *root, input_msg_t *m, char *why, size_t n)
{
    const json_t *v = json_object_get(root, "expected_version");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        snprintf(why, n, "$.expected_version: expected an integer >= 1, got %s",
                 json_type_name(v));
        return -1;
    }
    m->expected_version = json_integer_value(v);
    return 0;
}

static int check_fields(const json_t *root, const char *const *allowed, char *why, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)root, k, v)
    {
        if (strcmp(k, "type") == 0 || strcmp(k, "meta") == 0)
            continue;
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, k) == 0)
                ok = true;
        if (!ok) {
            snprintf(why, n, "$.%s: unknown field for a %s message", k,
                     json_string_value(json_object_get(root, "type")));
            return -1;
        }
    }
    return 0;
}

/* Reads an optional (or required) string field with a length limit. */
static int get_string(const json_t *root, const char *name, bool required, size_t max_len,
                      const char **out, char *why, size_t n)
{
    const json_t *v = json_object_get(root, name);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required) {
            snprintf(why, n, "$.%s: missing, expected a string", name);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        snprintf(why, n, "$.%s: expected a string, got %s", name, json_type_name(v));
        return -1;
    }
    if (json_string_length(v) > max_len) {
        snprintf(why, n, "$.%s: longer than %zu bytes", name, max_len);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int get_saga_id(const json_t *root, bool required, input_msg_t *m, char *why, size_t n)
{
    if (get_string(root, "saga_id", required, SAGA_ID_MAX_LEN * 4, &m->saga_id, why, n) < 0)
        return -1;
    if (m->saga_id && !protocol_valid_saga_id(m->saga_id)) {
        snprintf(why, n, "$.saga_id: expected 1-%d characters of [A-Za-z0-9._:-]",
                 SAGA_ID_MAX_LEN);
        return -1;
    }
    return 0;
}

/* Reads an optional object field, at most PROTOCOL_MAX_DEPTH deep and max_bytes long as
 * compact JSON. */
static int get_object(const json_t *root, const char *name, size_t max_bytes, json_t **out,
                      char *why, size_t n)
{
    json_t *v = json_object_get(root, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v)) {
        snprintf(why, n, "$.%s: expected an object, got %s", name, json_type_name(v));
        return -1;
    }
    if (protocol_json_depth(v) > PROTOCOL_MAX_DEPTH) {
        snprintf(why, n, "$.%s: nested deeper than %d levels", name, PROTOCOL_MAX_DEPTH);
        return -1;
    }
    /* json_dumpb() without a buffer only counts: the size Redis will store. */
    size_t bytes = json_dumpb(v, NULL, 0, JSON_COMPACT);
    if (bytes > max_bytes) {
        snprintf(why, n, "$.%s: %zu bytes as compact JSON, more than %zu", name, bytes,
                 max_bytes);
        return -1;
    }
    *out = v;
    return 0;
}

static int decode_start(json_t *root, input_msg_t *m, char *why, size_t n)
{
    if (check_fields(root, START_FIELDS, why, n) < 0 || get_saga_id(root, false, m, why, n) < 0 ||
        get_string(root, "saga", true, DEFN_MAX_NAME_LEN, &m->saga_name, why, n) < 0 ||
        get_object(root, "input", PROTOCOL_MAX_INPUT_BYTES, &m->input, why, n) < 0)
        return -1;
    const json_t *v = json_object_get(root, "version");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX) {
            snprintf(why, n, "$.version: expected an integer >= 1, got %s", json_type_name(v));
            return -1;
        }
        m->version = (int)json_integer_value(v);
    }
    if (!m->input) {
        json_object_set_new(root, "input", json_object());
        m->input = json_object_get(root, "input");
    }
    return 0;
}

int protocol_parse_command_id(const char *id, char *saga, size_t saga_len, char *step,
                              size_t step_len, command_kind_t *kind, int *attempt)
{
    const char *a = strchr(id, '/');
    const char *b = a ? strchr(a + 1, '/') : NULL;
    const char *k = b ? strchr(b + 1, '/') : NULL;
    if (!k || strchr(k + 1, '/') || a == id || b == a + 1 || (size_t)(a - id) >= saga_len ||
        (size_t)(b - a - 1) >= step_len)
        return -1;
    if ((size_t)(k - b - 1) == 6 && strncmp(b + 1, "action", 6) == 0)
        *kind = CMD_ACTION;
    else if ((size_t)(k - b - 1) == 12 && strncmp(b + 1, "compensation", 12) == 0)
        *kind = CMD_COMPENSATION;
    else
        return -1;
    /* The attempt: a decimal number >= 1 with nothing around it. */
    long n = 0;
    const char *d = k + 1;
    if (*d < '1' || *d > '9')
        return -1;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || n > INT32_MAX / 10)
            return -1;
        n = n * 10 + (*d - '0');
    }
    if (n > INT32_MAX)
        return -1;
    snprintf(saga, saga_len, "%.*s", (int)(a - id), id);
    snprintf(step, step_len, "%.*s", (int)(b - a - 1), a + 1);
    *attempt = (int)n;
    return 0;
}

/* The reply's command_id is what ties it to one command: it must be well formed, name the
 * reply's saga, and agree with step, kind and attempt where the reply gives them (where it
 * does not, they are taken from it). */
static int reply_match_command_id(json_t *root, input_msg_t *m, const char *kind, char *why,
                                  size_t n)
{
    char saga[SAGA_ID_MAX_LEN + 1], step[DEFN_MAX_NAME_LEN + 1];
    command_kind_t id_kind;
    int id_attempt;
    if (protocol_parse_command_id(m->command_id, saga, sizeof saga, step, sizeof step, &id_kind,
                                  &id_attempt) < 0) {
        snprintf(why, n, "$.command_id: expected \"saga_id/step/kind/attempt\" as the command "
                 "gave it, got \"%.80s\"", m->command_id);
        return -1;
    }
    if (strcmp(saga, m->saga_id) != 0) {
        snprintf(why, n, "$.command_id: names saga \"%.80s\", not the reply's saga_id \"%s\"",
                 saga, m->saga_id);
        return -1;
    }
    if (m->step && strcmp(step, m->step) != 0) {
        snprintf(why, n, "$.step: \"%s\" is not the step of command_id \"%s\"", m->step,
                 m->command_id);
        return -1;
    }
    if (kind) {
        if (strcmp(kind, "action") == 0)
            m->kind = CMD_ACTION;
        else if (strcmp(kind, "compensation") == 0)
            m->kind = CMD_COMPENSATION;
        else {
            snprintf(why, n, "$.kind: expected \"action\" or \"compensation\", got \"%.40s\"",
                     kind);
            return -1;
        }
        if (m->kind != id_kind) {
            snprintf(why, n, "$.kind: \"%s\" is not the kind of command_id \"%s\"", kind,
                     m->command_id);
            return -1;
        }
    }
    const json_t *a = json_object_get(root, "attempt");
    if (a && !json_is_null(a)) {
        if (!json_is_integer(a) || json_integer_value(a) < 1 ||
            json_integer_value(a) > INT32_MAX) {
            snprintf(why, n, "$.attempt: expected an integer >= 1, got %s", json_type_name(a));
            return -1;
        }
        if (json_integer_value(a) != id_attempt) {
            snprintf(why, n, "$.attempt: %lld is not the attempt of command_id \"%s\"",
                     (long long)json_integer_value(a), m->command_id);
            return -1;
        }
    }
    m->kind = id_kind;
    m->attempt = id_attempt;
    if (!m->step) {
        /* Borrowed from the message like every other string: kept in its tree. */
        json_t *s = json_string(step);
        if (!s || json_object_set_new(root, "step", s) < 0) {
            snprintf(why, n, "out of memory");
            return -1;
        }
        m->step = json_string_value(json_object_get(root, "step"));
    }
    return 0;
}

static int decode_reply(json_t *root, input_msg_t *m, char *why, size_t n)
{
    const char *kind, *status;
    if (check_fields(root, REPLY_FIELDS, why, n) < 0 || get_saga_id(root, true, m, why, n) < 0 ||
        get_string(root, "command_id", true, PROTOCOL_MAX_COMMAND_ID_LEN, &m->command_id, why,
                   n) < 0 ||
        get_string(root, "step", false, DEFN_MAX_NAME_LEN, &m->step, why, n) < 0 ||
        get_string(root, "kind", false, PROTOCOL_MAX_KEYWORD_LEN, &kind, why, n) < 0 ||
        get_string(root, "status", true, PROTOCOL_MAX_KEYWORD_LEN, &status, why, n) < 0 ||
        get_string(root, "error", false, PROTOCOL_MAX_REASON_LEN, &m->error, why, n) < 0 ||
        get_object(root, "output", PROTOCOL_MAX_OUTPUT_BYTES, &m->output, why, n) < 0 ||
        reply_match_command_id(root, m, kind, why, n) < 0)
        return -1;
    if (strcmp(status, "ok") == 0)
        m->ok = true;
    else if (strcmp(status, "failed") == 0)
        m->ok = false;
    else {
        snprintf(why, n, "$.status: expected \"ok\" or \"failed\", got \"%.40s\"", status);
        return -1;
    }
    /* What reply.json requires of each status. */
    if (m->ok && !json_object_get(root, "output")) {
        snprintf(why, n, "$.output: missing, an ok reply carries an object (may be {})");
        return -1;
    }
    if (!m->ok && !m->error) {
        snprintf(why, n, "$.error: missing, a failed reply says why as a string");
        return -1;
    }
    if (!m->ok && m->output) {
        snprintf(why, n, "$.output: only an ok reply carries an output");
        return -1;
    }
    const json_t *r = json_object_get(root, "retryable");
    if (r && !json_is_null(r)) {
        if (!json_is_boolean(r)) {
            snprintf(why, n, "$.retryable: expected a boolean, got %s", json_type_name(r));
            return -1;
        }
        m->retryable = json_is_true(r);
    }
    return 0;
}

int protocol_decode_input(const char *buf, size_t len, const char *key, size_t key_len,
                          size_t max_bytes, input_msg_t *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    if (!buf) {
        snprintf(why, why_len, "the message has no value (a null payload)");
        return -1;
    }
    if (len > max_bytes) {
        snprintf(why, why_len, "message of %zu bytes exceeds max_message_bytes (%zu)", len,
                 max_bytes);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(why, why_len, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return -1;
    }
    out->root = root;
    if (!json_is_object(root)) {
        snprintf(why, why_len, "$: expected an object, got %s", json_type_name(root));
        goto err;
    }
    const char *type;
    if (get_string(root, "type", true, PROTOCOL_MAX_KEYWORD_LEN, &type, why, why_len) < 0)
        goto err;
    int rc;
    if (strcmp(type, "start") == 0) {
        out->type = MSG_START;
        rc = decode_start(root, out, why, why_len);
    } else if (strcmp(type, "reply") == 0) {
        out->type = MSG_REPLY;
        rc = decode_reply(root, out, why, why_len);
    } else if (strcmp(type, "abort") == 0 || strcmp(type, "skip") == 0) {
        out->type = type[0] == 'a' ? MSG_ABORT : MSG_SKIP;
        rc = (check_fields(root, ABORT_FIELDS, why, why_len) < 0 ||
              get_saga_id(root, true, out, why, why_len) < 0 ||
              get_expected_version(root, out, why, why_len) < 0 ||
              get_string(root, "reason", false, PROTOCOL_MAX_REASON_LEN, &out->reason, why,
                         why_len) < 0)
                 ? -1
                 : 0;
    } else if (strcmp(type, "retry") == 0) {
        out->type = MSG_RETRY;
        rc = (check_fields(root, RETRY_FIELDS, why, why_len) < 0 ||
              get_saga_id(root, true, out, why, why_len) < 0 ||
              get_expected_version(root, out, why, why_len) < 0)
                 ? -1
                 : 0;
    } else {
        snprintf(why, why_len,
                 "$.type: expected one of start, reply, abort, retry, skip; got \"%.40s\"", type);
        goto err;
    }
    if (rc < 0)
        goto err;
    const json_t *meta = json_object_get(root, "meta");
    if (meta && (!json_is_object(meta) || protocol_json_depth(meta) > PROTOCOL_MAX_DEPTH)) {
        snprintf(why, why_len, "$.meta: expected an object of at most %d levels",
                 PROTOCOL_MAX_DEPTH);
        goto err;
    }
    if (key && key_len && out->saga_id &&
        (strlen(out->saga_id) != key_len || memcmp(out->saga_id, key, key_len) != 0)) {
        snprintf(why, why_len, "the message key \"%.*s\" is not the saga id \"%s\"",
                 (int)(key_len > 64 ? 64 : key_len), key, out->saga_id);
        goto err;
    }
    return 0;
err:;
    /* What a rejected outcome needs from a refused start, copied before the tree goes. */
    input_msg_t refused = {0};
    const json_t *t = json_object_get(root, "type");
    if (json_is_string(t) && strcmp(json_string_value(t), "start") == 0) {
        refused.refused_start = true;
        const json_t *id = json_object_get(root, "saga_id");
        if (json_is_string(id) && protocol_valid_saga_id(json_string_value(id)))
            snprintf(refused.refused_id, sizeof refused.refused_id, "%s", json_string_value(id));
        else if (id && !json_is_null(id))
            refused.refused_id_unusable = true;
        const json_t *name = json_object_get(root, "saga");
        if (json_is_string(name) && json_string_length(name) <= DEFN_MAX_NAME_LEN)
            snprintf(refused.refused_saga, sizeof refused.refused_saga, "%s",
                     json_string_value(name));
        const json_t *v = json_object_get(root, "version");
        if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= INT32_MAX)
            refused.refused_version = (int)json_integer_value(v);
    }
    input_msg_release(out);
    *out = refused;
    return -1;
}

void input_msg_release(input_msg_t *m)
{
    if (!m)
        return;
    json_decref(m->root);
    memset(m, 0, sizeof *m);
}

/* How many of the len bytes of s to keep within max: cut before a UTF-8 continuation
 * byte, so that a cut valid text stays valid (else the whole payload would be lost as
 * "(not UTF-8)"). */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (!s || len <= max)
        return s ? len : 0;
    size_t keep = max;
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
        keep--;
    return keep;
}

/* The reason as a JSON string (new reference). It may quote the message's own bytes
 * (jansson's "near '...'", a value cut by "%.40s"), which need not be UTF-8: then each
 * non-ASCII byte becomes '?', rather than losing the whole dead letter. */
static json_t *reason_string(const char *reason)
{
    json_t *s = json_string(reason);
    char *copy = s ? NULL : strdup(reason);
    if (!copy)
        return s;
    for (char *p = copy; *p; p++) {
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    }
    s = json_string(copy);
    free(copy);
    return s;
}

json_t *protocol_dead_letter(const char *reason, const char *topic, int32_t partition,
                             int64_t offset, const char *key, size_t key_len,
                             const char *payload, size_t len)
{
    size_t keep = utf8_cut(payload, len, PROTOCOL_DEAD_LETTER_PAYLOAD_MAX);
    size_t key_keep = key ? utf8_cut(key, key_len, PROTOCOL_DEAD_LETTER_KEY_MAX) : 0;
    json_t *o = json_pack("{s:s, s:o, s:{s:s, s:i, s:I}}", "type", "dead_letter", "reason",
                          reason_string(reason), "source", "topic", topic, "partition",
                          (int)partition, "offset", (json_int_t)offset);
    if (!o)
        return NULL;
    /* The payload may be any bytes: kept as a string only when it is valid UTF-8; a
     * message without one (a null value) has null. */
    json_t *p = payload ? json_stringn(payload, keep) : json_null();
    json_object_set_new(o, "payload", p ? p : json_string("(not UTF-8)"));
    if (!p)
        json_object_set_new(o, "payload_not_utf8", json_true());
    if (keep < len)
        json_object_set_new(o, "truncated", json_true());
    if (key) {
        json_t *k = json_stringn(key, key_keep);
        json_object_set_new(o, "key", k ? k : json_string("(not UTF-8)"));
        if (key_keep < key_len)
            json_object_set_new(o, "key_truncated", json_true());
    }
    return o;
}
