/* test_limits.c - every size, depth and count limit on what enters the coordinator from
 * outside (input messages, definition files, rendered payloads, recovered sagas): the
 * largest allowed value passes, one more is refused with an error that names the limit.
 * (issue #9 part 5; docs/fuzzing.md lists the limits.) */
#include "protocol.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <string.h>

#include "definition.h"
#include "saga.h"
#include "template.h"

#define WHY_LEN 512

/* ---------- helpers ---------- */

/* A string of n copies of ch (caller frees). */
static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    cr_assert(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* Dumps v compactly and decodes it as an input message; steals v. Returns the status,
 * the reason in why; the message is released. */
static int decode_value(json_t *v, char *why)
{
    char *text = json_dumps(v, JSON_COMPACT);
    cr_assert(text);
    json_decref(v);
    input_msg_t m;
    why[0] = '\0';
    int rc = protocol_decode_input(text, strlen(text), NULL, 0, PROTOCOL_MAX_MESSAGE_BYTES, &m,
                                   why, WHY_LEN);
    input_msg_release(&m);
    free(text);
    return rc;
}

static json_t *reply_msg(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:{}}", "type", "reply", "saga_id",
                     "s-1", "command_id", "s-1/reserve/action/1", "step", "reserve", "kind",
                     "action", "attempt", 1, "status", "ok", "output");
}

/* {"a": "xxx..."} of exactly bytes bytes as compact JSON (bytes >= 9). */
static json_t *object_of_bytes(size_t bytes)
{
    char *s = repeat('x', bytes - strlen("{\"a\":\"\"}"));
    json_t *o = json_pack("{s:s}", "a", s);
    free(s);
    cr_assert_eq(json_dumpb(o, NULL, 0, JSON_COMPACT), bytes);
    return o;
}

/* An object nested depth levels ({"a":{"a":...{}}} has depth = number of objects). */
static json_t *object_of_depth(int depth)
{
    json_t *v = json_object();
    for (int i = 1; i < depth; i++)
        v = json_pack("{s:o}", "a", v);
    return v;
}

static void expect_why(int rc, const char *why, const char *needle)
{
    cr_expect_eq(rc, -1, "accepted, want an error containing \"%s\"", needle);
    cr_expect(strstr(why, needle), "error \"%s\" does not say \"%s\"", why, needle);
}

/* ---------- input messages (protocol.c) ---------- */

Test(limits, message_bytes)
{
    char why[WHY_LEN] = "";
    input_msg_t m;
    const char *msg = "{\"type\":\"retry\",\"saga_id\":\"s-1\"}";
    size_t len = strlen(msg);
    cr_expect_eq(protocol_decode_input(msg, len, NULL, 0, len, &m, why, sizeof why), 0, "%s",
                 why);
    input_msg_release(&m);
    int rc = protocol_decode_input(msg, len, NULL, 0, len - 1, &m, why, sizeof why);
    expect_why(rc, why, "exceeds max_message_bytes");
}

Test(limits, saga_id_length)
{
    char why[WHY_LEN] = "";
    char *id = repeat('a', SAGA_ID_MAX_LEN);
    cr_expect_eq(decode_value(json_pack("{s:s, s:s}", "type", "retry", "saga_id", id), why), 0,
                 "%s", why);
    free(id);
    id = repeat('a', SAGA_ID_MAX_LEN + 1);
    expect_why(decode_value(json_pack("{s:s, s:s}", "type", "retry", "saga_id", id), why), why,
               "expected 1-128 characters");
    free(id);
}

Test(limits, names_and_keywords)
{
    char why[WHY_LEN] = "";
    char *name = repeat('n', DEFN_MAX_NAME_LEN);
    cr_expect_eq(decode_value(json_pack("{s:s, s:s}", "type", "start", "saga", name), why), 0,
                 "%s", why);
    free(name);
    name = repeat('n', DEFN_MAX_NAME_LEN + 1);
    expect_why(decode_value(json_pack("{s:s, s:s}", "type", "start", "saga", name), why), why,
               "$.saga: longer than 128 bytes");
    json_t *r = reply_msg();
    json_object_set_new(r, "step", json_string(name));
    expect_why(decode_value(r, why), why, "$.step: longer than 128 bytes");
    free(name);

    char *kw = repeat('k', PROTOCOL_MAX_KEYWORD_LEN + 1);
    expect_why(decode_value(json_pack("{s:s}", "type", kw), why), why, "$.type: longer than");
    r = reply_msg();
    json_object_set_new(r, "kind", json_string(kw));
    expect_why(decode_value(r, why), why, "$.kind: longer than");
    free(kw);
}

Test(limits, command_id_length)
{
    char why[WHY_LEN] = "";
    char *id = repeat('c', PROTOCOL_MAX_COMMAND_ID_LEN);
    json_t *r = reply_msg();
    json_object_set_new(r, "command_id", json_string(id));
    /* Within the length limit, it is judged as a command id (it is not one). */
    expect_why(decode_value(r, why), why, "$.command_id: expected \"saga_id/step/kind/attempt\"");
    free(id);
    id = repeat('c', PROTOCOL_MAX_COMMAND_ID_LEN + 1);
    r = reply_msg();
    json_object_set_new(r, "command_id", json_string(id));
    expect_why(decode_value(r, why), why, "$.command_id: longer than 299 bytes");
    free(id);
}

Test(limits, reason_and_error_length)
{
    char why[WHY_LEN] = "";
    char *text = repeat('e', PROTOCOL_MAX_REASON_LEN);
    cr_expect_eq(decode_value(json_pack("{s:s, s:s, s:s}", "type", "abort", "saga_id", "s-1",
                                        "reason", text), why), 0, "%s", why);
    free(text);
    text = repeat('e', PROTOCOL_MAX_REASON_LEN + 1);
    expect_why(decode_value(json_pack("{s:s, s:s, s:s}", "type", "skip", "saga_id", "s-1",
                                      "reason", text), why), why, "$.reason: longer than");
    json_t *r = reply_msg();
    json_object_set_new(r, "error", json_string(text));
    expect_why(decode_value(r, why), why, "$.error: longer than");
    free(text);
}

Test(limits, json_depth)
{
    char why[WHY_LEN] = "";
    cr_expect_eq(decode_value(json_pack("{s:s, s:s, s:o}", "type", "start", "saga", "x", "input",
                                        object_of_depth(PROTOCOL_MAX_DEPTH)), why), 0, "%s", why);
    expect_why(decode_value(json_pack("{s:s, s:s, s:o}", "type", "start", "saga", "x", "input",
                                      object_of_depth(PROTOCOL_MAX_DEPTH + 1)), why), why,
               "$.input: nested deeper than 32 levels");
    json_t *r = reply_msg();
    json_object_set_new(r, "output", object_of_depth(PROTOCOL_MAX_DEPTH));
    cr_expect_eq(decode_value(r, why), 0, "%s", why);
    r = reply_msg();
    json_object_set_new(r, "output", object_of_depth(PROTOCOL_MAX_DEPTH + 1));
    expect_why(decode_value(r, why), why, "$.output: nested deeper than 32 levels");
    r = reply_msg();
    json_object_set_new(r, "meta", object_of_depth(PROTOCOL_MAX_DEPTH + 1));
    expect_why(decode_value(r, why), why, "$.meta: expected an object of at most 32 levels");
}

Test(limits, start_input_bytes)
{
    char why[WHY_LEN] = "";
    cr_expect_eq(decode_value(json_pack("{s:s, s:s, s:o}", "type", "start", "saga", "x", "input",
                                        object_of_bytes(PROTOCOL_MAX_INPUT_BYTES)), why), 0,
                 "%s", why);
    expect_why(decode_value(json_pack("{s:s, s:s, s:o}", "type", "start", "saga", "x", "input",
                                      object_of_bytes(PROTOCOL_MAX_INPUT_BYTES + 1)), why), why,
               "$.input: 262145 bytes as compact JSON, more than 262144");
}

Test(limits, reply_output_bytes)
{
    char why[WHY_LEN] = "";
    json_t *r = reply_msg();
    json_object_set_new(r, "output", object_of_bytes(PROTOCOL_MAX_OUTPUT_BYTES));
    cr_expect_eq(decode_value(r, why), 0, "%s", why);
    r = reply_msg();
    json_object_set_new(r, "output", object_of_bytes(PROTOCOL_MAX_OUTPUT_BYTES + 1));
    expect_why(decode_value(r, why), why, "$.output: 65537 bytes as compact JSON, more than 65536");
}

/* The payload is cut at 64 KiB on a character boundary, so valid text stays text. */
Test(limits, dead_letter_payload_and_key)
{
    size_t len = PROTOCOL_DEAD_LETTER_PAYLOAD_MAX + 100;
    char *payload = repeat('p', len);
    /* "é" (2 bytes) straddling the cut. */
    payload[PROTOCOL_DEAD_LETTER_PAYLOAD_MAX - 1] = (char)0xC3;
    payload[PROTOCOL_DEAD_LETTER_PAYLOAD_MAX] = (char)0xA9;
    char *key = repeat('k', PROTOCOL_DEAD_LETTER_KEY_MAX + 1);
    json_t *dl = protocol_dead_letter("too big", "saga.input", 0, 1, key, strlen(key), payload,
                                      len);
    cr_assert(dl);
    const char *kept = json_string_value(json_object_get(dl, "payload"));
    cr_expect_eq(strlen(kept), PROTOCOL_DEAD_LETTER_PAYLOAD_MAX - 1);
    cr_expect(json_is_true(json_object_get(dl, "truncated")));
    cr_expect_eq(strlen(json_string_value(json_object_get(dl, "key"))),
                 PROTOCOL_DEAD_LETTER_KEY_MAX);
    cr_expect(json_is_true(json_object_get(dl, "key_truncated")));
    json_decref(dl);

    /* Short enough: kept whole, no flags. */
    dl = protocol_dead_letter("bad", "saga.input", 0, 1, "k", 1, "{}", 2);
    cr_expect_str_eq(json_string_value(json_object_get(dl, "payload")), "{}");
    cr_expect_null(json_object_get(dl, "truncated"));
    cr_expect_null(json_object_get(dl, "key_truncated"));
    json_decref(dl);
    free(payload);
    free(key);
}

/* A reason quoting bytes of the message that are not UTF-8 (jansson's "near '...'")
 * still gives a dead letter, with those bytes as '?'. */
Test(limits, dead_letter_reason_not_utf8)
{
    const char msg[] = "{\"typ\\ud8\xc6\x9b\"}";
    char why[WHY_LEN] = "";
    input_msg_t m;
    cr_assert_eq(protocol_decode_input(msg, strlen(msg), NULL, 0, PROTOCOL_MAX_MESSAGE_BYTES,
                                       &m, why, sizeof why), -1);
    json_t *dl = protocol_dead_letter(why, "saga.input", 0, 1, NULL, 0, msg, strlen(msg));
    cr_assert(dl, "no dead letter for: %s", why);
    const char *reason = json_string_value(json_object_get(dl, "reason"));
    cr_expect(strstr(reason, "invalid JSON at line 1"), "%s", reason);
    cr_expect(strchr(reason, '?'), "%s", reason);
    json_decref(dl);
}

/* ---------- definitions (definition.c) ---------- */

/* Loads text; returns the definition or NULL with the first error formatted in first. */
static definition_t *load(const char *text, size_t *errors, char *first, size_t first_len)
{
    defn_errors_t errs = {0};
    definition_t *d = definition_load_string(text, strlen(text), "t.json", &errs);
    first[0] = '\0';
    if (errs.count)
        defn_error_format(&errs.items[0], first, first_len);
    *errors = errs.count;
    defn_errors_release(&errs);
    return d;
}

/* A definition with n steps named s0..s(n-1), each with payload (may be NULL). */
static char *steps_definition(size_t n, const char *payload, const char *saga_name)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "{\"name\":\"%s\",\"version\":1,\"steps\":[", saga_name);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s{\"name\":\"s%zu\",\"topic\":\"t\",\"action\":{\"command\":\"c\"%s%s},"
                "\"compensation\":\"none\"}", i ? "," : "", i, payload ? ",\"payload\":" : "",
                payload ? payload : "");
    fprintf(f, "]}");
    fclose(f);
    return buf;
}

Test(limits, definition_file_bytes)
{
    char *text = repeat(' ', DEFN_MAX_FILE_BYTES + 1);
    char first[1024];
    size_t errors;
    cr_expect_null(load(text, &errors, first, sizeof first));
    cr_expect_str_eq(first, "t.json: file is larger than 1048576 bytes");
    free(text);
}

Test(limits, definition_step_count)
{
    char first[1024];
    size_t errors;
    char *text = steps_definition(DEFN_MAX_STEPS, NULL, "long");
    definition_t *d = load(text, &errors, first, sizeof first);
    cr_expect(d, "%s", first);
    definition_free(d);
    free(text);
    text = steps_definition(DEFN_MAX_STEPS + 1, NULL, "long");
    cr_expect_null(load(text, &errors, first, sizeof first));
    cr_expect_str_eq(first, "t.json: steps: too many steps: 65 (at most 64)");
    free(text);
}

/* A 1 MiB file of ~60000 tiny steps: refused on the count alone, not after checking every
 * name against every other (seconds of work, and 100 errors about the steps). */
Test(limits, definition_many_steps_refused_early)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "{\"name\":\"big\",\"version\":1,\"steps\":[");
    for (size_t i = 0; ftell(f) < DEFN_MAX_FILE_BYTES - 64; i++)
        fprintf(f, "%s{\"name\":\"s%zu\"}", i ? "," : "", i);
    fprintf(f, "]}");
    fclose(f);
    char first[1024];
    size_t errors;
    cr_expect_null(load(buf, &errors, first, sizeof first));
    cr_expect_eq(errors, 1, "%zu errors, first: %s", errors, first);
    cr_expect(strstr(first, "too many steps"), "%s", first);
    free(buf);
}

Test(limits, definition_name_and_topic_length)
{
    char first[1024];
    size_t errors;
    char *name = repeat('n', DEFN_MAX_NAME_LEN);
    char *text = steps_definition(1, NULL, name);
    definition_t *d = load(text, &errors, first, sizeof first);
    cr_expect(d, "%s", first);
    definition_free(d);
    free(text);
    free(name);
    name = repeat('n', DEFN_MAX_NAME_LEN + 1);
    text = steps_definition(1, NULL, name);
    cr_expect_null(load(text, &errors, first, sizeof first));
    cr_expect(strstr(first, "use 1 to 128 of the characters"), "%s", first);
    free(text);
    free(name);

    char *topic = repeat('t', DEFN_MAX_TOPIC_LEN + 1);
    char doc[1024];
    snprintf(doc, sizeof doc, "{\"name\":\"x\",\"version\":1,\"steps\":[{\"name\":\"a\","
             "\"topic\":\"%s\",\"action\":{\"command\":\"c\"},\"compensation\":\"none\"}]}",
             topic);
    cr_expect_null(load(doc, &errors, first, sizeof first));
    cr_expect(strstr(first, "steps[0].topic: invalid topic"), "%s", first);
    free(topic);
}

/* Payload nesting: the payload object is level 1. */
static char *nested_payload(int depth)
{
    size_t cap = (size_t)depth * 8 + 16;
    char *p = malloc(cap);
    size_t n = 0;
    for (int i = 1; i < depth; i++)
        n += (size_t)snprintf(p + n, cap - n, "{\"a\":");
    n += (size_t)snprintf(p + n, cap - n, "{}");
    for (int i = 1; i < depth; i++)
        p[n++] = '}';
    p[n] = '\0';
    return p;
}

Test(limits, definition_payload_depth)
{
    char first[1024];
    size_t errors;
    char *payload = nested_payload(DEFN_MAX_DEPTH);
    char *text = steps_definition(1, payload, "x");
    definition_t *d = load(text, &errors, first, sizeof first);
    cr_expect(d, "%s", first);
    definition_free(d);
    free(text);
    free(payload);
    payload = nested_payload(DEFN_MAX_DEPTH + 1);
    text = steps_definition(1, payload, "x");
    cr_expect_null(load(text, &errors, first, sizeof first));
    cr_expect(strstr(first, "nested deeper than 16 levels"), "%s", first);
    free(text);
    free(payload);
}

static char *refs_payload(size_t refs)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "{\"a\":\"");
    for (size_t i = 0; i < refs; i++)
        fprintf(f, "{{saga.id}}");
    fprintf(f, "\"}");
    fclose(f);
    return buf;
}

Test(limits, definition_template_refs)
{
    char first[1024];
    size_t errors;
    char *payload = refs_payload(DEFN_MAX_TEMPLATE_REFS);
    char *text = steps_definition(1, payload, "x");
    definition_t *d = load(text, &errors, first, sizeof first);
    cr_expect(d, "%s", first);
    definition_free(d);
    free(text);
    free(payload);
    payload = refs_payload(DEFN_MAX_TEMPLATE_REFS + 1);
    text = steps_definition(1, payload, "x");
    cr_expect_null(load(text, &errors, first, sizeof first));
    cr_expect(strstr(first, "more than 256 template references"), "%s", first);
    free(text);
    free(payload);
}

/* ---------- rendered payloads (template.c) ---------- */

/* Renders tmpl (JSON text) against input; returns the result or NULL with why. */
static json_t *render(const char *tmpl, const json_t *input, char *why)
{
    json_t *t = json_loads(tmpl, JSON_DECODE_ANY, NULL);
    cr_assert(t, "bad template %s", tmpl);
    template_ctx_t ctx = {"s-1", "x", input, NULL, NULL};
    why[0] = '\0';
    json_t *out = template_render_json(t, &ctx, why, WHY_LEN);
    json_decref(t);
    return out;
}

Test(limits, rendered_text_bytes)
{
    char why[WHY_LEN] = "";
    /* Half the limit, interpolated twice: exactly the limit. */
    char *half = repeat('h', TEMPLATE_MAX_RENDER_BYTES / 2 - 1);
    json_t *input = json_pack("{s:s}", "h", half);
    json_t *out = render("\"{{input.h}}{{input.h}}\"", input, why);
    cr_expect(out, "%s", why);
    cr_expect_eq(json_string_length(out), TEMPLATE_MAX_RENDER_BYTES - 2);
    json_decref(out);
    /* Three times: past the limit while the text grows. */
    out = render("\"{{input.h}}{{input.h}}{{input.h}}\"", input, why);
    cr_expect_null(out);
    cr_expect(strstr(why, "a text longer than 524288 bytes"), "%s", why);
    json_decref(input);
    free(half);
}

Test(limits, rendered_payload_bytes)
{
    char why[WHY_LEN] = "";
    /* {"a":"<n x>"} where the whole payload is exactly the limit, then one more. */
    size_t n = TEMPLATE_MAX_RENDER_BYTES - strlen("{\"a\":\"\"}");
    char *s = repeat('v', n);
    json_t *input = json_pack("{s:s}", "v", s);
    json_t *out = render("{\"a\":\"{{input.v}}\"}", input, why);
    cr_expect(out, "%s", why);
    json_decref(out);
    out = render("{\"a\":\"{{input.v}}\",\"b\":1}", input, why);
    cr_expect_null(out);
    cr_expect(strstr(why, "more than 524288"), "%s", why);
    json_decref(input);
    free(s);
}

/* ---------- recovered sagas (saga.c) ---------- */

static const char SAGA_DEF[] =
    "{\"name\":\"two\",\"version\":1,\"steps\":["
    "{\"name\":\"a\",\"topic\":\"t\",\"action\":{\"command\":\"c\"},\"compensation\":"
    "{\"command\":\"u\"}},"
    "{\"name\":\"b\",\"topic\":\"t\",\"action\":{\"command\":\"c\"},\"compensation\":\"none\"}]}";

/* Encodes a fresh saga, applies one field change (value NULL: keep), decodes it. */
static saga_t *decode_with(const definition_t *d, const char *field, const char *value,
                           char *why)
{
    json_t *input = json_object();
    saga_t *s = saga_new("s-1", d, 0, input, 1000);
    json_decref(input);
    json_t *f = saga_encode_fields(s);
    saga_free(s);
    if (field)
        json_object_set_new(f, field, json_string(value));
    why[0] = '\0';
    saga_t *out = saga_decode_fields(f, d, why, WHY_LEN);
    json_decref(f);
    return out;
}

static char *steps_field(const char *first_step_extra)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "[{\"name\":\"a\",\"phase\":\"comp_retry_wait\",\"attempt\":1%s},"
            "{\"name\":\"b\",\"phase\":\"pending\",\"attempt\":0,\"comp_attempt\":0}]",
            first_step_extra);
    fclose(f);
    return buf;
}

Test(limits, recovered_saga_fields)
{
    defn_errors_t errs = {0};
    definition_t *d = definition_load_string(SAGA_DEF, strlen(SAGA_DEF), "two", &errs);
    cr_assert(d);
    char why[WHY_LEN] = "";
    saga_t *s = decode_with(d, NULL, NULL, why);
    cr_expect(s, "%s", why);
    saga_free(s);

    char *id = repeat('i', SAGA_ID_MAX_LEN);
    s = decode_with(d, "id", id, why);
    cr_expect(s, "%s", why);
    saga_free(s);
    free(id);
    id = repeat('i', SAGA_ID_MAX_LEN + 1);
    cr_expect_null(decode_with(d, "id", id, why));
    cr_expect_str_eq(why, "saga id of 129 bytes (expected 1 to 128)");
    free(id);

    cr_expect_null(decode_with(d, "group", "2", why));
    cr_expect(strstr(why, "group 2 is not one of the 2 groups of two"), "%s", why);
    cr_expect_null(decode_with(d, "group", "-1", why));
    cr_expect_null(decode_with(d, "group", "4294967296", why)); /* 0 once cut to an int */
    cr_expect_null(decode_with(d, "partition", "2147483648", why));
    cr_expect_null(decode_with(d, "input", "[]", why));
    cr_expect(strstr(why, "not a JSON object or array"), "%s", why);

    char max[64];
    snprintf(max, sizeof max, ",\"comp_attempt\":%d", SAGA_MAX_ATTEMPT);
    char *steps = steps_field(max);
    s = decode_with(d, "steps", steps, why);
    cr_expect(s, "%s", why);
    saga_free(s);
    free(steps);
    snprintf(max, sizeof max, ",\"comp_attempt\":%d", SAGA_MAX_ATTEMPT + 1);
    const char *bad[] = {max, ",\"comp_attempt\":-1", ",\"comp_attempt\":\"3\"",
                         ",\"comp_attempt\":2,\"comp_budget_from\":3", ",\"timer_at\":-5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        steps = steps_field(bad[i]);
        cr_expect_null(decode_with(d, "steps", steps, why), "accepted %s", bad[i]);
        cr_expect(strstr(why, "steps[0]: a counter or time is not an integer in range"),
                  "%s: %s", bad[i], why);
        free(steps);
    }
    definition_free(d);
    defn_errors_release(&errs);
}
