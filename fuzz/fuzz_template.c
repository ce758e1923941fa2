/* fuzz_template.c - fuzz target for the template engine: the input is a payload template
 * (JSON text). It is compiled without a scope and with a scope like the loader's (steps,
 * groups, an input schema, the DEFN_ limits), and each compiled template is rendered
 * against a context holding every JSON type. */
#include "fuzz.h"

#include <string.h>

#include "definition.h"
#include "template.h"

#define FUZZ_TEMPLATE_WHY_LEN 512

static const char *const TEMPLATE_STEP_NAMES[] = {"reserve", "charge", "left", "right",
                                                  "schedule"};
static const int TEMPLATE_STEP_GROUPS[] = {0, 1, 2, 2, 3};
#define TEMPLATE_STEP_COUNT (sizeof TEMPLATE_STEP_NAMES / sizeof *TEMPLATE_STEP_NAMES)

static const char TEMPLATE_SCHEMA[] =
    "{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"string\"},"
    "\"amount\":{\"type\":\"number\"},\"items\":{\"type\":\"array\",\"items\":{\"type\":"
    "\"object\",\"properties\":{\"sku\":{\"type\":\"string\"},\"qty\":{\"type\":"
    "\"integer\"}}}},\"meta\":{\"type\":\"object\",\"additionalProperties\":true}}}";

static const char TEMPLATE_INPUT[] =
    "{\"order_id\":\"1001\",\"amount\":25.5,\"items\":[{\"sku\":\"A-1\",\"qty\":2},"
    "{\"sku\":\"B-\\u00e9\",\"qty\":-1}],\"meta\":{\"t\":true,\"f\":false,\"n\":null,"
    "\"big\":9223372036854775807,\"neg\":-9223372036854775808,\"tiny\":1e-300,"
    "\"s\":\"{{input.order_id}}\",\"e\":\"\",\"a\":[],\"o\":{}}}";

static const char TEMPLATE_OUTPUT[] =
    "{\"reservation_id\":\"r-77\",\"id\":7,\"nested\":{\"list\":[1,2.5,\"x\",null,true]},"
    "\"empty\":{}}";

typedef struct template_fixture {
    json_t *schema, *input, *output;
} template_fixture_t;

/* Built once: the fuzz loop must not pay for parsing the context every run. */
static const template_fixture_t *template_fixture(void)
{
    static template_fixture_t fx;
    if (!fx.input) {
        fx.schema = json_loads(TEMPLATE_SCHEMA, 0, NULL);
        fx.input = json_loads(TEMPLATE_INPUT, 0, NULL);
        fx.output = json_loads(TEMPLATE_OUTPUT, 0, NULL);
        if (!fx.schema || !fx.input || !fx.output)
            fuzz_fail("template fixture does not parse");
    }
    return &fx;
}

/* Steps with an even index have an output; the others have not run. */
static const json_t *template_step_output(const char *step_name, int step_index, void *opaque)
{
    const template_fixture_t *fx = opaque;
    if (step_index < 0)
        return strcmp(step_name, "charge") == 0 ? NULL : fx->output;
    return step_index % 2 == 0 ? fx->output : NULL;
}

static void template_on_error(const char *path, const char *text, void *opaque)
{
    int *count = opaque;
    if (!path || !text || !text[0])
        fuzz_fail("compile error without a path or a text");
    (*count)++;
}

static void template_render_check(const template_t *t, const json_t *tmpl,
                                  const template_fixture_t *fx)
{
    template_ctx_t ctx = {"order-1001", "order-placement", fx->input, template_step_output,
                          (void *)fx};
    char why[FUZZ_TEMPLATE_WHY_LEN] = "";
    json_t *out = template_render(t, &ctx, why, sizeof why);
    if (!out && !why[0])
        fuzz_fail("render failed without a reason");
    /* Without references or escapes, rendering is a copy. */
    if (out && template_ref_count(t) == 0) {
        char *text = json_dumps(tmpl, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text && !strstr(text, "{{") && !json_equal(out, (json_t *)tmpl))
            fuzz_fail("a template without references rendered differently");
        free(text);
    }
    json_decref(out);
    /* An empty context: every reference is missing. */
    json_decref(template_render(t, NULL, why, sizeof why));
}

static void template_compile_check(const json_t *tmpl, const template_scope_t *scope,
                                   const template_fixture_t *fx)
{
    int errors = 0;
    template_t *t = template_compile(tmpl, scope, "steps[2].action.payload",
                                     template_on_error, &errors);
    if (!t && errors == 0)
        fuzz_fail("compile failed without an error");
    if (t && errors)
        fuzz_fail("compile reported %d errors and still returned a template", errors);
    if (t) {
        if (scope && scope->max_refs && template_ref_count(t) > scope->max_refs)
            fuzz_fail("more references than max_refs");
        for (size_t i = 0; i < TEMPLATE_STEP_COUNT; i++)
            (void)template_references_step(t, (int)i);
        template_render_check(t, tmpl, fx);
    }
    template_free(t);
}

int fuzz_template_one(const uint8_t *data, size_t size)
{
    const template_fixture_t *fx = template_fixture();
    json_t *tmpl = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!tmpl)
        return 0;
    template_compile_check(tmpl, NULL, fx);
    template_scope_t scope = {.step_names = TEMPLATE_STEP_NAMES,
                              .step_groups = TEMPLATE_STEP_GROUPS,
                              .step_count = TEMPLATE_STEP_COUNT,
                              .step = 2,
                              .own_output = false,
                              .input_schema = fx->schema,
                              .max_refs = DEFN_MAX_TEMPLATE_REFS,
                              .max_depth = DEFN_MAX_DEPTH};
    template_compile_check(tmpl, &scope, fx);
    scope.step = 4; /* a compensation of the last step */
    scope.own_output = true;
    template_compile_check(tmpl, &scope, fx);
    char why[FUZZ_TEMPLATE_WHY_LEN];
    template_ctx_t ctx = {"order-1001", NULL, fx->input, NULL, NULL};
    json_decref(template_render_json(tmpl, &ctx, why, sizeof why));
    json_decref(tmpl);
    return 0;
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_template_one(data, size);
}
#endif
