/* test_participant_sdk.c - unit tests of the participant SDK's pieces that need no broker:
 * command decoding and validation (every invalid case and the reason it gives), replies
 * echoing their command, results and the effect rules, and configuration errors. */
#include "saga_participant.h"
#include "sp_command.h"
#include "sp_result.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOOD                                                                                          \
    "{\"type\":\"command\",\"command_id\":\"o-1/reserve/action/1\",\"idempotency_key\":\"o-1/reserve/action\"," \
    "\"saga_id\":\"o-1\",\"saga\":\"order-placement\",\"saga_version\":2,\"step\":\"reserve\",\"kind\":\"action\"," \
    "\"command\":\"inventory.reserve\",\"attempt\":1,\"payload\":{\"sku\":\"A-1\",\"qty\":2}," \
    "\"reply_to\":{\"topic\":\"saga.input\",\"partition\":3},\"sent_at\":1764085000123,\"deadline\":1764085010123}"

static sp_parse_status_t parse(const char *text, saga_command_t **cmd, char *why)
{
    return sp_command_parse(text, strlen(text), cmd, why, SP_MAX_ERROR_TEXT);
}

Test(participant_sdk, parses_the_protocol_example)
{
    saga_command_t *cmd;
    char why[SP_MAX_ERROR_TEXT] = "";
    cr_assert_eq(parse(GOOD, &cmd, why), SP_PARSE_OK, "%s", why);
    cr_assert_str_eq(saga_command_id(cmd), "o-1/reserve/action/1");
    cr_assert_str_eq(saga_command_idempotency_key(cmd), "o-1/reserve/action");
    cr_assert_str_eq(saga_command_saga_id(cmd), "o-1");
    cr_assert_str_eq(saga_command_saga_name(cmd), "order-placement");
    cr_assert_str_eq(saga_command_step(cmd), "reserve");
    cr_assert_eq(saga_command_kind(cmd), SAGA_KIND_ACTION);
    cr_assert_str_eq(saga_command_type(cmd), "inventory.reserve");
    cr_assert_eq(saga_command_attempt(cmd), 1);
    cr_assert_eq(saga_command_deadline(cmd), 1764085010123LL);
    cr_assert_eq(json_integer_value(json_object_get(saga_command_payload(cmd), "qty")), 2);
    cr_assert_null(saga_command_action_output(cmd));
    cr_assert_str_eq(cmd->action_key, "o-1/reserve/action");
    sp_command_free(cmd);
}

Test(participant_sdk, payload_defaults_to_empty_object)
{
    const char *t = "{\"type\":\"command\",\"command_id\":\"c\",\"saga_id\":\"s\",\"step\":\"x\",\"kind\":\"compensation\","
                    "\"command\":\"t\",\"attempt\":3,\"reply_to\":{\"topic\":\"r\",\"partition\":0}}";
    saga_command_t *cmd;
    char why[SP_MAX_ERROR_TEXT] = "";
    cr_assert_eq(parse(t, &cmd, why), SP_PARSE_OK, "%s", why);
    cr_assert(json_is_object(saga_command_payload(cmd)));
    cr_assert_eq(json_object_size(saga_command_payload(cmd)), 0);
    cr_assert_str_eq(saga_command_idempotency_key(cmd), "s/x/compensation");
    cr_assert_str_eq(cmd->action_key, "s/x/action");
    sp_command_free(cmd);
}

typedef struct {
    const char *text;
    sp_parse_status_t status;
    const char *why; /* substring of the reason */
} parse_case_t;

#define HEAD "{\"type\":\"command\",\"command_id\":\"c\",\"saga_id\":\"s\",\"reply_to\":{\"topic\":\"r\",\"partition\":1}"
static const parse_case_t BAD[] = {
    {"", SP_PARSE_INVALID, "not JSON"},
    {"{\"type\":", SP_PARSE_INVALID, "not JSON"},
    {"[1]", SP_PARSE_INVALID, "$: expected an object"},
    {"{\"type\":\"reply\"}", SP_PARSE_INVALID, "$.type"},
    {"{\"type\":\"command\",\"a\":1,\"a\":2}", SP_PARSE_INVALID, "duplicate"},
    {"{\"type\":\"command\",\"command_id\":\"c\",\"saga_id\":\"bad id\"}", SP_PARSE_INVALID, "$.saga_id"},
    {"{\"type\":\"command\",\"saga_id\":\"s\"}", SP_PARSE_INVALID, "$.command_id"},
    {"{\"type\":\"command\",\"saga_id\":\"s\",\"command_id\":\"c\"}", SP_PARSE_INVALID, "$.reply_to.topic"},
    {"{\"type\":\"command\",\"saga_id\":\"s\",\"command_id\":\"c\",\"reply_to\":{\"topic\":\"r\",\"partition\":-1}}",
     SP_PARSE_INVALID, "$.reply_to.partition"},
    {HEAD "}", SP_PARSE_REPLYABLE, "$.step"},
    {HEAD ",\"step\":\"x\",\"kind\":\"undo\"}", SP_PARSE_REPLYABLE, "$.kind"},
    {HEAD ",\"step\":\"x\",\"kind\":\"action\",\"attempt\":0}", SP_PARSE_REPLYABLE, "$.attempt"},
    {HEAD ",\"step\":\"x\",\"kind\":\"action\",\"attempt\":1}", SP_PARSE_REPLYABLE, "$.command"},
    {HEAD ",\"step\":\"x\",\"kind\":\"action\",\"attempt\":1,\"command\":\"t\",\"payload\":[1]}", SP_PARSE_REPLYABLE,
     "$.payload"},
    {HEAD ",\"step\":\"x\",\"kind\":\"action\",\"attempt\":1,\"command\":\"t\",\"deadline\":\"soon\"}",
     SP_PARSE_REPLYABLE, "$.deadline"},
    {HEAD ",\"step\":\"x\",\"kind\":\"action\",\"attempt\":1,\"command\":\"t\",\"idempotency_key\":\"s/y/action\"}",
     SP_PARSE_REPLYABLE, "$.idempotency_key: expected \"s/x/action\""},
};

Test(participant_sdk, invalid_commands_say_why)
{
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        saga_command_t *cmd = NULL;
        char why[SP_MAX_ERROR_TEXT] = "";
        sp_parse_status_t st = parse(BAD[i].text, &cmd, why);
        cr_assert_eq(st, BAD[i].status, "case %zu (%s): status %d", i, BAD[i].text, st);
        cr_assert(strstr(why, BAD[i].why), "case %zu: reason \"%s\" lacks \"%s\"", i, why, BAD[i].why);
        cr_assert_eq(cmd != NULL, st == SP_PARSE_REPLYABLE, "case %zu", i);
        sp_command_free(cmd);
    }
}

Test(participant_sdk, reply_echoes_the_command)
{
    saga_command_t *cmd;
    char why[SP_MAX_ERROR_TEXT] = "";
    cr_assert_eq(parse(GOOD, &cmd, why), SP_PARSE_OK);
    json_t *body = sp_body_failed_new("nope", 1);
    size_t len = 0;
    char *s = sp_command_reply_dumps(cmd, body, &len);
    cr_assert_not_null(s);
    cr_assert_eq(len, strlen(s));
    json_t *r = json_loads(s, 0, NULL);
    json_t *want = json_loads("{\"type\":\"reply\",\"command_id\":\"o-1/reserve/action/1\",\"saga_id\":\"o-1\","
                              "\"step\":\"reserve\",\"kind\":\"action\",\"attempt\":1,\"status\":\"failed\","
                              "\"error\":\"nope\",\"retryable\":true}",
                              0, NULL);
    cr_assert(json_equal(r, want), "%s", s);
    json_decref(r);
    json_decref(want);
    json_decref(body);
    free(s);
    sp_command_free(cmd);
}

Test(participant_sdk, result_bodies)
{
    saga_result_t res;
    sp_result_init(&res);
    json_t *b = sp_result_body_new(&res); /* nothing set: failed, retryable */
    cr_assert(json_is_true(json_object_get(b, "retryable")));
    cr_assert_str_eq(sp_result_state(&res, SAGA_KIND_ACTION), "retryable");
    json_decref(b);

    cr_assert_eq(saga_result_ok(&res, json_pack("{s:s}", "id", "x")), 0);
    b = sp_result_body_new(&res);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(b, "output"), "id")), "x");
    cr_assert_str_eq(sp_result_state(&res, SAGA_KIND_ACTION), "ok");
    json_decref(b);

    cr_assert_eq(saga_result_ok(&res, json_integer(3)), -1); /* not an object: failed */
    cr_assert_str_eq(sp_result_state(&res, SAGA_KIND_ACTION), "failed");
    cr_assert_str_eq(sp_result_state(&res, SAGA_KIND_COMPENSATION), "retryable", "never final");

    saga_result_fail(&res, NULL);
    b = sp_result_body_new(&res);
    cr_assert_str_eq(json_string_value(json_object_get(b, "error")), "failed");
    cr_assert(json_is_false(json_object_get(b, "retryable")));
    json_decref(b);

    saga_result_retry(&res, "later");
    cr_assert_str_eq(sp_result_state(&res, SAGA_KIND_ACTION), "retryable");
    sp_result_release(&res);
    sp_result_release(NULL);
}

Test(participant_sdk, effect_rules)
{
    saga_result_t res;
    sp_result_init(&res);
    cr_assert_eq(saga_result_effectl(&res, "hincrby", "k", "f", "1", NULL), 0);
    cr_assert_str_eq(res.effects[0].argv[0], "HINCRBY", "names are upper-cased");
    cr_assert_eq(saga_result_effectl(&res, "RPUSH", "l", "a", "b", NULL), 0);
    cr_assert_eq(saga_result_effectl(&res, "HSET", "h", "f", "v", "g", "w", NULL), 0);
    cr_assert_eq(saga_result_effectl(&res, "HSET", "h", "f", NULL), -1, "HSET needs field/value pairs");
    cr_assert_eq(saga_result_effectl(&res, "HSET", "h", "f", "v", "g", NULL), -1);
    cr_assert_eq(saga_result_effectl(&res, "HINCRBY", "k", "f", NULL), -1);
    cr_assert_eq(saga_result_effectl(&res, "SET", "k", "v", "EX", "10", NULL), -1, "no options");
    cr_assert_eq(saga_result_effectl(&res, "EVAL", "x", "y", NULL), -1, "not a listed write");
    cr_assert_eq(saga_result_effectl(&res, "FLUSHALL", NULL), -1);
    cr_assert_eq(saga_result_effectl(&res, "DEL", "", NULL), -1, "empty key");
    cr_assert_eq(res.neffects, 3);
    const char *argv[] = {"ZADD", "z", "1.5", "m"};
    cr_assert_eq(saga_result_effect(&res, 4, argv), 0);
    cr_assert_eq(saga_result_effect(&res, 1, argv), -1);
    while (res.neffects < SAGA_PARTICIPANT_MAX_EFFECTS)
        cr_assert_eq(saga_result_effectl(&res, "DEL", "k", NULL), 0);
    cr_assert_eq(saga_result_effectl(&res, "DEL", "k", NULL), -1, "limit");
    sp_result_release(&res);
}

Test(participant_sdk, config_errors)
{
    char err[256] = "";
    saga_participant_config_t cfg;
    saga_participant_config_init(&cfg);
    cr_assert_eq(cfg.redis_port, SAGA_PARTICIPANT_DEFAULT_REDIS_PORT);
    cr_assert_eq(cfg.dedup_retention_s, SAGA_PARTICIPANT_DEFAULT_RETENTION_S);
    cr_assert_null(saga_participant_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "required"), "%s", err);
    cr_assert_null(saga_participant_new(NULL, NULL, 0));
    cfg.bootstrap_servers = "127.0.0.1:1";
    cfg.group_id = "g";
    cfg.command_topic = "t";
    cfg.redis_port = 0;
    cr_assert_null(saga_participant_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "range"), "%s", err);
    cfg.redis_port = 1; /* nothing listens there */
    cfg.redis_sync_replicas = 17;
    cr_assert_null(saga_participant_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "range"), "%s", err);
    cfg.redis_sync_replicas = 1;
    cr_assert_eq(cfg.redis_timeout_ms, SAGA_PARTICIPANT_DEFAULT_REDIS_TIMEOUT_MS);
    cfg.redis_timeout_ms = 99;
    cr_assert_null(saga_participant_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "redis_timeout_ms"), "%s", err);
    cfg.redis_timeout_ms = 300;
    /* A Redis that does not answer yet is waited for by the commands, not refused. */
    saga_participant_t *waiting = saga_participant_new(&cfg, err, sizeof err);
    cr_assert_not_null(waiting, "%s", err);
    saga_participant_free(waiting);
    /* Sentinel settings reach the connection: a bad list is refused with the reason. */
    cfg.redis_sentinels = "127.0.0.1:notaport";
    cfg.redis_master_name = "saga";
    cr_assert_null(saga_participant_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "redis_sentinels: \"127.0.0.1:notaport\" is not HOST:PORT"), "%s", err);
    saga_participant_free(NULL);
    saga_participant_stop(NULL);
}

/* docs/schemas: every message of docs/protocol.md has a draft 2020-12 schema, and every
 * property at every depth is described. */
static void schema_props_described(json_t *node, const char *path)
{
    json_t *props = json_object_get(node, "properties");
    const char *name;
    json_t *sub;
    json_object_foreach(props, name, sub)
    {
        cr_assert(json_is_string(json_object_get(sub, "description")), "%s.%s has no description", path, name);
        char p[512];
        snprintf(p, sizeof p, "%s.%s", path, name);
        schema_props_described(sub, p);
    }
}

Test(participant_sdk, schemas_describe_every_field)
{
    static const char *const NAMES[] = {"start", "command", "reply", "abort", "retry", "skip", "outcome", "dead_letter"};
    const char *src = getenv("SAGA_SOURCE_DIR");
    cr_assert_not_null(src, "SAGA_SOURCE_DIR");
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/docs/schemas/%s.json", src, NAMES[i]);
        json_error_t e;
        json_t *s = json_load_file(path, 0, &e);
        cr_assert_not_null(s, "%s:%d:%d: %s", path, e.line, e.column, e.text);
        cr_assert_str_eq(json_string_value(json_object_get(s, "$schema")), "https://json-schema.org/draft/2020-12/schema");
        cr_assert(json_is_string(json_object_get(s, "description")), "%s", path);
        json_t *type = json_object_get(json_object_get(s, "properties"), "type");
        cr_assert_str_eq(json_string_value(json_object_get(type, "const")), NAMES[i], "%s", path);
        schema_props_described(s, NAMES[i]);
        json_decref(s);
    }
}
