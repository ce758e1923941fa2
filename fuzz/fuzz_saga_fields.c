/* fuzz_saga_fields.c - fuzz target for saga_decode_fields(): recovery rebuilding a saga
 * from its Redis hash. The input is the hash as HGETALL returns it, one "field=value"
 * per line (the value runs to the end of the line; "steps" and "input" are compact JSON,
 * so they fit on one). The definition is looked up by the "definition" and
 * "definition_version" fields as the coordinator does, in a set of two built-in
 * definitions (sequential and parallel).
 *
 * A saga that decodes must survive what recovery does next: it is encoded again (and
 * that encoding must decode to the same fields), its next timer is run, and the operator
 * commands and a reply are applied to it. */
#include "fuzz.h"

#include <string.h>

#include "catalogue.h"
#include "machine.h"
#include "saga.h"

#define FUZZ_SAGA_WHY_LEN 512
/* The clock during the events: after every time of the seeds. Times come from the
 * coordinator's clock, never from the hash, so a corrupt timer_at far in the future
 * simply never fires. */
#define FUZZ_SAGA_NOW (1764085000000LL + 3600 * 1000)

static const char SAGA_DEF_SEQUENTIAL[] =
    "{\"name\":\"order-placement\",\"version\":1,\"deadline_ms\":60000,"
    "\"input\":{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"string\"}}},"
    "\"defaults\":{\"timeout_ms\":5000,\"retry\":{\"max_attempts\":3}},"
    "\"steps\":["
    "{\"name\":\"reserve\",\"topic\":\"inventory\",\"action\":{\"command\":\"reserve\","
    "\"payload\":{\"o\":\"{{input.order_id}}\"}},\"compensation\":{\"command\":\"release\","
    "\"payload\":{\"r\":\"{{steps.reserve.output.reservation_id}}\"}}},"
    "{\"name\":\"charge\",\"topic\":\"payment\",\"action\":{\"command\":\"charge\","
    "\"payload\":{\"id\":\"{{saga.id}}\",\"r\":\"{{steps.reserve.output.reservation_id?}}\"}},"
    "\"compensation\":{\"command\":\"refund\"}},"
    "{\"name\":\"schedule\",\"topic\":\"shipping\",\"compensate_on_timeout\":false,"
    "\"action\":{\"command\":\"schedule\"},\"compensation\":\"none\"}]}";

static const char SAGA_DEF_PARALLEL[] =
    "{\"name\":\"fan-out\",\"version\":2,\"on_compensation_failure\":\"continue\","
    "\"defaults\":{\"retry\":{\"max_attempts\":6}},\"steps\":["
    "{\"name\":\"start\",\"topic\":\"t\",\"action\":{\"command\":\"start\"},"
    "\"compensation\":{\"command\":\"unstart\"}},"
    "{\"name\":\"both\",\"parallel\":["
    "{\"name\":\"left\",\"topic\":\"l\",\"action\":{\"command\":\"left.do\","
    "\"payload\":{\"s\":\"{{steps.start.output.id}}\"}},"
    "\"compensation\":{\"command\":\"left.undo\",\"payload\":{\"l\":\"{{steps.left.output.id}}\"}}},"
    "{\"name\":\"right\",\"topic\":\"r\",\"action\":{\"command\":\"right.do\"},"
    "\"compensation\":\"none\"}]},"
    "{\"name\":\"end\",\"topic\":\"t\",\"action\":{\"command\":\"end\"},"
    "\"compensation\":\"none\"}]}";

/* Built once and kept: the definitions a coordinator has loaded. */
static const defn_set_t *saga_definitions(void)
{
    static defn_set_t *set;
    if (!set) {
        defn_errors_t errs = {0};
        set = defn_set_new();
        const char *texts[] = {SAGA_DEF_SEQUENTIAL, SAGA_DEF_PARALLEL};
        for (size_t i = 0; set && i < sizeof texts / sizeof *texts; i++) {
            definition_t *d = definition_load_string(texts[i], strlen(texts[i]), "builtin",
                                                     &errs);
            if (!d || defn_set_add(set, d, &errs) < 0)
                fuzz_fail("built-in definition %zu does not load", i);
        }
        defn_errors_release(&errs);
        if (!set)
            fuzz_fail("out of memory");
    }
    return set;
}

/* The hash as the store hands it over: field -> string; a value that is not UTF-8 is
 * dropped, as json_stringn() refuses it in store.c. */
static json_t *saga_parse_hash(const uint8_t *data, size_t size)
{
    json_t *fields = json_object();
    const char *p = (const char *)data, *end = p + size;
    while (fields && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        const char *eq = memchr(p, '=', (size_t)(line_end - p));
        if (eq) {
            char *key = strndup(p, (size_t)(eq - p));
            if (key)
                (void)json_object_set_new(fields, key,
                                          json_stringn(eq + 1, (size_t)(line_end - eq - 1)));
            free(key);
        }
        p = line_end + 1;
    }
    return fields;
}

static const definition_t *saga_find_definition(const json_t *fields)
{
    const char *name = json_string_value(json_object_get(fields, "definition"));
    const char *ver = json_string_value(json_object_get(fields, "definition_version"));
    return name && ver ? defn_set_find(saga_definitions(), name, atoi(ver)) : NULL;
}

static void saga_check_roundtrip(const saga_t *s)
{
    json_t *f1 = saga_encode_fields(s);
    char why[FUZZ_SAGA_WHY_LEN] = "";
    saga_t *again = saga_decode_fields(f1, s->def, why, sizeof why);
    if (!again)
        fuzz_fail("a recovered saga does not decode after encoding: %s", why);
    json_t *f2 = saga_encode_fields(again);
    if (!json_equal(f1, f2))
        fuzz_fail("encode(decode(encode(s))) differs from encode(s)");
    json_decref(f1);
    json_decref(f2);
    saga_free(again);
}

/* One machine call on the recovered saga; its result is thrown away. */
typedef enum { SAGA_EV_TIMER, SAGA_EV_ABORT, SAGA_EV_RETRY, SAGA_EV_SKIP, SAGA_EV_REPLY }
    saga_event_t;

static void saga_apply(saga_t *s, saga_event_t ev, int64_t now)
{
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    machine_env_t env = {now, &rng, "saga.input"};
    machine_result_t res;
    machine_result_init(&res);
    switch (ev) {
    case SAGA_EV_TIMER: machine_on_timer(s, &env, &res); break;
    case SAGA_EV_ABORT: machine_abort(s, "fuzz", &env, &res); break;
    case SAGA_EV_RETRY: machine_retry(s, &env, &res); break;
    case SAGA_EV_SKIP: machine_skip(s, "fuzz", &env, &res); break;
    case SAGA_EV_REPLY: {
        int cur = saga_current_step(s);
        if (cur < 0)
            break;
        const step_state_t *st = &s->steps[cur];
        bool comp = st->phase == STEP_COMPENSATING || st->phase == STEP_COMP_RETRY_WAIT;
        machine_reply_t r = {cur, comp ? CMD_COMPENSATION : CMD_ACTION,
                             comp ? st->comp_attempt : st->attempt, true, false, NULL, NULL};
        machine_on_reply(s, &r, &env, &res);
        break;
    }
    }
    machine_result_release(&res);
}

int fuzz_saga_fields_one(const uint8_t *data, size_t size)
{
    json_t *fields = saga_parse_hash(data, size);
    const definition_t *def = saga_find_definition(fields);
    if (!def) {
        json_decref(fields);
        return 0;
    }
    char why[FUZZ_SAGA_WHY_LEN] = "";
    saga_t *s = saga_decode_fields(fields, def, why, sizeof why);
    if (!s) {
        if (!why[0])
            fuzz_fail("refused without a reason");
        json_decref(fields);
        return 0;
    }
    const char *id = json_string_value(json_object_get(fields, "id"));
    if (strcmp(s->id, id) != 0)
        fuzz_fail("saga id \"%s\" recovered as \"%s\"", id, s->id);
    saga_check_roundtrip(s);
    int64_t next = machine_next_timer(s);
    if (next > 0 && next < FUZZ_SAGA_NOW)
        saga_apply(s, SAGA_EV_TIMER, next);
    saga_apply(s, SAGA_EV_REPLY, FUZZ_SAGA_NOW);
    saga_apply(s, SAGA_EV_ABORT, FUZZ_SAGA_NOW);
    saga_apply(s, SAGA_EV_TIMER, FUZZ_SAGA_NOW);
    saga_apply(s, SAGA_EV_SKIP, FUZZ_SAGA_NOW);
    saga_apply(s, SAGA_EV_RETRY, FUZZ_SAGA_NOW);
    saga_check_roundtrip(s);
    saga_free(s);
    json_decref(fields);
    return 0;
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_saga_fields_one(data, size);
}
#endif
