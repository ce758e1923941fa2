/* fuzz_definition.c - fuzz target for definition_load_string(): the input is one
 * definition file. A definition that loads must be safe to run, so every compiled payload
 * of it is rendered, and a saga input is checked against its schema; a refusal must come
 * with errors that format. */
#include "fuzz.h"

#include <string.h>

#include "definition.h"

#define FUZZ_DEFINITION_WHY_LEN 512
#define FUZZ_DEFINITION_LINE_LEN (sizeof(defn_error_t) + 64)

static const char DEFINITION_INPUT[] =
    "{\"order_id\":\"1001\",\"sku\":\"A-1\",\"qty\":2,\"amount\":25.5,"
    "\"items\":[{\"sku\":\"A-1\",\"qty\":2}],\"address\":\"x\"}";
static const char DEFINITION_OUTPUT[] =
    "{\"id\":\"o-1\",\"reservation_id\":\"r-77\",\"payment_id\":\"p-1\",\"n\":[1,{\"a\":null}]}";

typedef struct definition_fixture {
    json_t *input, *output;
} definition_fixture_t;

static const definition_fixture_t *definition_fixture(void)
{
    static definition_fixture_t fx;
    if (!fx.input) {
        fx.input = json_loads(DEFINITION_INPUT, 0, NULL);
        fx.output = json_loads(DEFINITION_OUTPUT, 0, NULL);
        if (!fx.input || !fx.output)
            fuzz_fail("definition fixture does not parse");
    }
    return &fx;
}

static const json_t *definition_step_output(const char *step_name, int step_index,
                                            void *opaque)
{
    (void)step_name;
    return step_index % 2 == 0 ? opaque : NULL;
}

static void definition_render(const definition_t *d, const defn_command_t *c,
                              const json_t *input, const json_t *output)
{
    if (!c->type || !c->topic || !c->payload || !c->compiled)
        fuzz_fail("loaded command without type, topic or compiled payload");
    if (c->timeout_ms < 1 || c->timeout_ms > DEFN_MAX_TIMEOUT_MS ||
        c->retry.max_attempts < 1 || c->retry.max_attempts > DEFN_MAX_ATTEMPTS)
        fuzz_fail("command timing out of its limits");
    template_ctx_t ctx = {"order-1001", d->name, input, definition_step_output,
                          (void *)output};
    char why[FUZZ_DEFINITION_WHY_LEN] = "";
    json_t *out = template_render(c->compiled, &ctx, why, sizeof why);
    if (!out && !why[0])
        fuzz_fail("render failed without a reason");
    json_decref(out);
}

static void definition_check_loaded(const definition_t *d, const definition_fixture_t *fx)
{
    if (!d->name || d->version < 1 || d->step_count < 1 || d->step_count > DEFN_MAX_STEPS ||
        d->group_count < 1 || !d->content_hash || strlen(d->content_hash) != 64)
        fuzz_fail("loaded definition breaks its invariants");
    int last_group = -1;
    for (size_t i = 0; i < d->step_count; i++) {
        const defn_step_t *st = &d->steps[i];
        if (!st->name || !st->topic || st->group < 0 || st->group >= d->group_count ||
            st->group < last_group || st->group > last_group + 1)
            fuzz_fail("step %zu breaks the step invariants", i);
        last_group = st->group;
        if (definition_step_index(d, st->name) != (int)i)
            fuzz_fail("step %zu not found by its name", i);
        definition_render(d, &st->action, fx->input, fx->output);
        if (st->has_compensation)
            definition_render(d, &st->compensation, fx->input, fx->output);
    }
    char why[FUZZ_DEFINITION_WHY_LEN];
    (void)definition_check_input(d, fx->input, why, sizeof why);
    /* The definition's own example-ish input: its schema checked against itself. */
    if (d->input_schema)
        (void)definition_check_input(d, d->input_schema, why, sizeof why);
}

int fuzz_definition_one(const uint8_t *data, size_t size)
{
    const definition_fixture_t *fx = definition_fixture();
    defn_errors_t errs = {0};
    definition_t *d = definition_load_string((const char *)data, size, "fuzz.json", &errs);
    if (d) {
        if (errs.count)
            fuzz_fail("loaded with %zu errors", errs.count);
        definition_check_loaded(d, fx);
    } else {
        if (errs.count == 0)
            fuzz_fail("refused without an error");
        char line[FUZZ_DEFINITION_LINE_LEN];
        for (size_t i = 0; i < errs.count; i++)
            defn_error_format(&errs.items[i], line, sizeof line);
    }
    definition_free(d);
    defn_errors_release(&errs);
    return 0;
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_definition_one(data, size);
}
#endif
