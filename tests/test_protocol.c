/* test_protocol.c - decoding of input-topic messages: every message type, and for bad
 * input the exact reason that becomes the dead-letter reason. */
#include "protocol.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

static int decode(const char *text, const char *key, input_msg_t *m, char *why)
{
    return protocol_decode_input(text, strlen(text), key, key ? strlen(key) : 0,
                                 PROTOCOL_MAX_MESSAGE_BYTES, m, why, 512);
}

Test(protocol, start_with_and_without_id)
{
    input_msg_t m;
    char why[512] = "";
    cr_assert_eq(decode("{\"type\":\"start\",\"saga_id\":\"o-1\",\"saga\":\"order\",\"version\":2,"
                        "\"input\":{\"a\":1},\"meta\":{\"trace\":\"x\"}}", "o-1", &m, why), 0, "%s", why);
    cr_assert_eq(m.type, MSG_START);
    cr_assert_str_eq(m.saga_id, "o-1");
    cr_assert_str_eq(m.saga_name, "order");
    cr_assert_eq(m.version, 2);
    cr_assert_eq(json_integer_value(json_object_get(m.input, "a")), 1);
    input_msg_release(&m);
    cr_assert_eq(decode("{\"type\":\"start\",\"saga\":\"order\"}", NULL, &m, why), 0, "%s", why);
    cr_assert_null(m.saga_id);
    cr_assert(json_is_object(m.input), "input defaults to {}");
    input_msg_release(&m);
}

Test(protocol, reply_and_operator_commands)
{
    input_msg_t m;
    char why[512] = "";
    cr_assert_eq(decode("{\"type\":\"reply\",\"command_id\":\"o/s/compensation/2\",\"saga_id\":\"o\","
                        "\"step\":\"s\",\"kind\":\"compensation\",\"attempt\":2,\"status\":\"failed\","
                        "\"retryable\":true,\"error\":\"busy\"}", "o", &m, why), 0, "%s", why);
    cr_assert_eq(m.type, MSG_REPLY);
    cr_assert_eq(m.kind, CMD_COMPENSATION);
    cr_assert_eq(m.attempt, 2);
    cr_assert_not(m.ok);
    cr_assert(m.retryable);
    cr_assert_str_eq(m.error, "busy");
    input_msg_release(&m);
    cr_assert_eq(decode("{\"type\":\"skip\",\"saga_id\":\"o\",\"reason\":\"by hand\","
                        "\"expected_version\":7}", NULL, &m, why), 0, "%s", why);
    cr_assert_eq(m.type, MSG_SKIP);
    cr_assert_eq(m.expected_version, 7);
    cr_assert_str_eq(m.reason, "by hand");
    input_msg_release(&m);
    cr_assert_eq(decode("{\"type\":\"retry\",\"saga_id\":\"o\"}", NULL, &m, why), 0, "%s", why);
    cr_assert_eq(m.expected_version, 0, "absent: any version");
    input_msg_release(&m);
}

Test(protocol, a_reply_may_give_only_its_command_id)
{
    input_msg_t m;
    char why[512] = "";
    cr_assert_eq(decode("{\"type\":\"reply\",\"command_id\":\"o-1/charge/compensation/3\","
                        "\"saga_id\":\"o-1\",\"status\":\"ok\",\"output\":{}}", "o-1", &m, why),
                 0, "%s", why);
    cr_assert_str_eq(m.step, "charge");
    cr_assert_eq(m.kind, CMD_COMPENSATION);
    cr_assert_eq(m.attempt, 3);
    input_msg_release(&m);
}

typedef struct bad_case {
    char text[400];
    char key[16];
    char reason[120];
} bad_case_t;

ParameterizedTestParameters(protocol, bad_input_says_where_and_what)
{
    static bad_case_t cases[] = {
        {"{\"type\":\"start\"", "", "invalid JSON at line 1"},
        {"[1,2]", "", "$: expected an object, got an array"},
        {"{\"saga\":\"x\"}", "", "$.type: missing, expected a string"},
        {"{\"type\":\"begin\"}", "", "$.type: expected one of start, reply, abort, retry, skip"},
        {"{\"type\":\"start\",\"saga\":\"x\",\"inptu\":{}}", "", "$.inptu: unknown field for a start message"},
        {"{\"type\":\"start\",\"saga\":5}", "", "$.saga: expected a string, got an integer"},
        {"{\"type\":\"start\",\"saga\":\"x\",\"input\":[1]}", "", "$.input: expected an object, got an array"},
        {"{\"type\":\"start\",\"saga\":\"x\",\"version\":0}", "", "$.version: expected an integer >= 1"},
        {"{\"type\":\"start\",\"saga\":\"x\",\"saga_id\":\"a b\"}", "", "$.saga_id: expected 1-128 characters"},
        {"{\"type\":\"start\",\"saga\":\"x\",\"saga_id\":\"a\",\"saga\":\"y\"}", "", "invalid JSON"},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1\",\"step\":\"s\",\"kind\":\"undo\",\"attempt\":1,\"status\":\"ok\",\"output\":{}}", "", "$.kind: expected \"action\" or \"compensation\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1\",\"step\":\"s\",\"kind\":\"action\",\"attempt\":1,\"status\":\"done\"}", "", "$.status: expected \"ok\" or \"failed\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1\",\"step\":\"s\",\"kind\":\"action\",\"attempt\":\"1\",\"status\":\"ok\",\"output\":{}}", "", "$.attempt: expected an integer >= 1, got a string"},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1\",\"status\":\"ok\",\"output\":3}", "", "$.output: expected an object, got an integer"},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1\",\"status\":\"failed\",\"error\":\"e\",\"retryable\":\"yes\"}", "", "$.retryable: expected a boolean"},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"step\":\"s\",\"kind\":\"action\",\"attempt\":1,\"status\":\"ok\",\"output\":{}}", "", "$.command_id: missing, expected a string"},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action\",\"status\":\"ok\",\"output\":{}}", "", "$.command_id: expected \"saga_id/step/kind/attempt\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/undo/1\",\"status\":\"ok\",\"output\":{}}", "", "$.command_id: expected \"saga_id/step/kind/attempt\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/01\",\"status\":\"ok\",\"output\":{}}", "", "$.command_id: expected \"saga_id/step/kind/attempt\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1x\",\"status\":\"ok\",\"output\":{}}", "", "$.command_id: expected \"saga_id/step/kind/attempt\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"other/s/action/1\",\"step\":\"s\",\"kind\":\"action\",\"attempt\":1,\"status\":\"ok\",\"output\":{}}", "", "$.command_id: names saga \"other\", not the reply's saga_id \"o\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/t/action/1\",\"step\":\"s\",\"kind\":\"action\",\"attempt\":1,\"status\":\"ok\",\"output\":{}}", "", "$.step: \"s\" is not the step of command_id \"o/t/action/1\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/compensation/1\",\"step\":\"s\",\"kind\":\"action\",\"attempt\":1,\"status\":\"ok\",\"output\":{}}", "", "$.kind: \"action\" is not the kind of command_id"},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/2\",\"step\":\"s\",\"kind\":\"action\",\"attempt\":1,\"status\":\"ok\",\"output\":{}}", "", "$.attempt: 1 is not the attempt of command_id \"o/s/action/2\""},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1\",\"status\":\"ok\"}", "", "$.output: missing, an ok reply carries an object"},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1\",\"status\":\"failed\"}", "", "$.error: missing, a failed reply says why"},
        {"{\"type\":\"reply\",\"saga_id\":\"o\",\"command_id\":\"o/s/action/1\",\"status\":\"failed\",\"error\":\"e\",\"output\":{}}", "", "$.output: only an ok reply carries an output"},
        {"{\"type\":\"abort\",\"saga_id\":\"o\"}", "other", "the message key \"other\" is not the saga id \"o\""},
        {"{\"type\":\"skip\",\"saga_id\":\"o\",\"expected_version\":-1}", "", "$.expected_version: expected an integer >= 1"},
        {"{\"type\":\"retry\"}", "", "$.saga_id: missing, expected a string"},
        {"{\"type\":\"retry\",\"saga_id\":\"o\",\"meta\":[]}", "", "$.meta: expected an object"},
    };
    return cr_make_param_array(bad_case_t, cases, sizeof cases / sizeof *cases);
}

ParameterizedTest(bad_case_t *c, protocol, bad_input_says_where_and_what)
{
    input_msg_t m;
    char why[512] = "";
    cr_assert_eq(decode(c->text, c->key[0] ? c->key : NULL, &m, why), -1, "accepted: %s", c->text);
    cr_assert(strstr(why, c->reason), "for %s\n  got:      %s\n  expected: %s", c->text, why,
              c->reason);
    cr_assert_null(m.root, "nothing is kept of a refused message");
}

Test(protocol, size_and_depth_limits)
{
    input_msg_t m;
    char why[512] = "";
    char big[2048];
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"type\":\"retry\",\"saga_id\":\"o\"}", 30);
    cr_assert_eq(protocol_decode_input(big, sizeof big, NULL, 0, 1024, &m, why, sizeof why), -1);
    cr_assert(strstr(why, "message of 2048 bytes exceeds max_message_bytes (1024)"), "%s", why);

    char deep[4096] = "{\"type\":\"start\",\"saga\":\"x\",\"input\":";
    size_t n = strlen(deep);
    for (int i = 0; i < PROTOCOL_MAX_DEPTH + 2; i++)
        deep[n++] = '[';
    for (int i = 0; i < PROTOCOL_MAX_DEPTH + 2; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    cr_assert_eq(decode(deep, NULL, &m, why), -1);
    cr_assert(strstr(why, "$.input: expected an object") || strstr(why, "nested deeper"), "%s", why);
}

Test(protocol, dead_letter_keeps_the_payload_and_says_why)
{
    json_t *dl = protocol_dead_letter("bad", "saga.input", 3, 42, "k", 1, "{x", 2);
    cr_assert_str_eq(json_string_value(json_object_get(dl, "reason")), "bad");
    cr_assert_str_eq(json_string_value(json_object_get(dl, "payload")), "{x");
    json_t *src = json_object_get(dl, "source");
    cr_assert_eq(json_integer_value(json_object_get(src, "offset")), 42);
    cr_assert_eq(json_integer_value(json_object_get(src, "partition")), 3);
    json_decref(dl);
    dl = protocol_dead_letter("bad", "t", 0, 0, NULL, 0, "\xff\xfe", 2);
    cr_assert_str_eq(json_string_value(json_object_get(dl, "payload")), "(not UTF-8)");
    cr_assert(json_is_true(json_object_get(dl, "payload_not_utf8")));
    json_decref(dl);
    dl = protocol_dead_letter("bad", "t", 0, 0, NULL, 0, NULL, 0);
    cr_assert(json_is_null(json_object_get(dl, "payload")), "no value: null, as the schema says");
    json_decref(dl);
}

Test(protocol, a_message_without_a_value_says_so)
{
    input_msg_t m;
    char why[512] = "";
    cr_assert_eq(protocol_decode_input(NULL, 0, "k", 1, PROTOCOL_MAX_MESSAGE_BYTES, &m, why,
                                       sizeof why), -1);
    cr_assert_str_eq(why, "the message has no value (a null payload)");
}
