/* test_template.c - the payload template engine: rendering (typed substitution,
 * interpolation, paths, escapes, missing values) and compile-time checks. */
#include "template.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHY_LEN 256
#define MAX_COLLECTED 16

/* Step outputs for the tests: "reserve" has one, every other step none. */
static json_t *reserve_output;
static json_t *test_input;

static const json_t *outputs(const char *step_name, int step_index, void *opaque)
{
    (void)step_index;
    (void)opaque;
    return strcmp(step_name, "reserve") == 0 ? reserve_output : NULL;
}

static template_ctx_t test_ctx(void)
{
    template_ctx_t ctx = {.saga_id = "order-1001",
                          .saga_name = "order-placement",
                          .input = test_input,
                          .step_output = outputs};
    return ctx;
}

static void setup(void)
{
    json_error_t jerr;
    test_input = json_loads("{\"order_id\": \"1001\", \"qty\": 2, \"amount\": 25.5, \"gift\": true,"
                            " \"note\": null, \"customer\": {\"name\": \"Ada\", \"tags\": [\"vip\"]},"
                            " \"items\": [{\"sku\": \"A-1\"}, {\"sku\": \"B-2\", \"qty\": 3}]}",
                            0, &jerr);
    reserve_output = json_loads("{\"reservation_id\": \"r-77\", \"lines\": [1, 2]}", 0, &jerr);
    cr_assert(test_input && reserve_output);
}

static void teardown(void)
{
    json_decref(test_input);
    json_decref(reserve_output);
}

/* Renders the template written as JSON text and compares with the expected JSON text. */
static void assert_renders(const char *tmpl_text, const char *expected_text)
{
    json_error_t jerr;
    json_t *tmpl = json_loads(tmpl_text, JSON_DECODE_ANY, &jerr);
    json_t *expected = json_loads(expected_text, JSON_DECODE_ANY, &jerr);
    cr_assert(tmpl, "bad test template %s", tmpl_text);
    cr_assert(expected, "bad test expectation %s", expected_text);
    template_ctx_t ctx = test_ctx();
    char why[WHY_LEN] = "";
    json_t *got = template_render_json(tmpl, &ctx, why, sizeof why);
    cr_assert(got, "render of %s failed: %s", tmpl_text, why);
    char *got_text = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
    cr_expect(json_equal(got, expected), "render of %s: got %s, want %s", tmpl_text, got_text,
              expected_text);
    free(got_text);
    json_decref(got);
    json_decref(tmpl);
    json_decref(expected);
}

static void assert_render_fails(const char *tmpl_text, const char *expected_why)
{
    json_error_t jerr;
    json_t *tmpl = json_loads(tmpl_text, JSON_DECODE_ANY, &jerr);
    cr_assert(tmpl, "bad test template %s", tmpl_text);
    template_ctx_t ctx = test_ctx();
    char why[WHY_LEN] = "";
    json_t *got = template_render_json(tmpl, &ctx, why, sizeof why);
    cr_expect_null(got, "render of %s should fail", tmpl_text);
    cr_expect_str_eq(why, expected_why);
    json_decref(got);
    json_decref(tmpl);
}

TestSuite(template, .init = setup, .fini = teardown);

Test(template, typed_substitution_keeps_the_type)
{
    assert_renders("{\"q\": \"{{input.qty}}\"}", "{\"q\": 2}");
    assert_renders("{\"a\": \"{{input.amount}}\"}", "{\"a\": 25.5}");
    assert_renders("{\"g\": \"{{input.gift}}\"}", "{\"g\": true}");
    assert_renders("{\"n\": \"{{input.note}}\"}", "{\"n\": null}");
    assert_renders("{\"c\": \"{{input.customer}}\"}",
                   "{\"c\": {\"name\": \"Ada\", \"tags\": [\"vip\"]}}");
    assert_renders("{\"all\": \"{{input}}\"}", "{\"all\": " /* the whole input */
                   "{\"order_id\": \"1001\", \"qty\": 2, \"amount\": 25.5, \"gift\": true,"
                   " \"note\": null, \"customer\": {\"name\": \"Ada\", \"tags\": [\"vip\"]},"
                   " \"items\": [{\"sku\": \"A-1\"}, {\"sku\": \"B-2\", \"qty\": 3}]}}");
}

Test(template, whitespace_inside_braces)
{
    assert_renders("{\"q\": \"{{ input.qty }}\"}", "{\"q\": 2}");
    assert_renders("{\"q\": \"{{\\tinput.qty  }}\"}", "{\"q\": 2}");
}

Test(template, interpolation_as_text)
{
    assert_renders("{\"s\": \"order {{input.order_id}} x{{input.qty}}\"}",
                   "{\"s\": \"order 1001 x2\"}");
    assert_renders("{\"s\": \"{{input.amount}} EUR\"}", "{\"s\": \"25.5 EUR\"}");
    assert_renders("{\"s\": \"gift={{input.gift}} note={{input.note}}\"}",
                   "{\"s\": \"gift=true note=null\"}");
    assert_renders("{\"s\": \"c={{input.customer}}\"}",
                   "{\"s\": \"c={\\\"name\\\":\\\"Ada\\\",\\\"tags\\\":[\\\"vip\\\"]}\"}");
    assert_renders("{\"s\": \"l={{steps.reserve.output.lines}}\"}", "{\"s\": \"l=[1,2]\"}");
    /* A blank around one reference makes it text, not a typed value. */
    assert_renders("{\"s\": \" {{input.qty}}\"}", "{\"s\": \" 2\"}");
}

Test(template, paths_and_indexes)
{
    assert_renders("{\"k\": \"{{input.items[1].sku}}\"}", "{\"k\": \"B-2\"}");
    assert_renders("{\"k\": \"{{input.items[1].qty}}\"}", "{\"k\": 3}");
    assert_renders("{\"k\": \"{{input.customer.tags[0]}}\"}", "{\"k\": \"vip\"}");
    assert_renders("{\"k\": \"{{steps.reserve.output.reservation_id}}\"}",
                   "{\"k\": \"r-77\"}");
    assert_renders("{\"k\": \"{{steps.reserve.output.lines[1]}}\"}", "{\"k\": 2}");
    assert_renders("{\"k\": \"{{steps.reserve.output}}\"}",
                   "{\"k\": {\"reservation_id\": \"r-77\", \"lines\": [1, 2]}}");
}

Test(template, nested_objects_and_arrays)
{
    assert_renders("{\"a\": [\"{{input.qty}}\", {\"b\": [\"x{{input.order_id}}\", 7]}], \"c\": 1}",
                   "{\"a\": [2, {\"b\": [\"x1001\", 7]}], \"c\": 1}");
    assert_renders("[\"{{saga.id}}\", \"{{saga.name}}\"]",
                   "[\"order-1001\", \"order-placement\"]");
    assert_renders("{\"id\": \"{{saga.id}}/{{input.order_id}}\"}",
                   "{\"id\": \"order-1001/1001\"}");
    assert_renders("{}", "{}");
    assert_renders("{\"const\": {\"deep\": [1, 2, {\"x\": null}]}}",
                   "{\"const\": {\"deep\": [1, 2, {\"x\": null}]}}");
}

Test(template, escapes)
{
    assert_renders("{\"s\": \"{{{{input.qty}}\"}", "{\"s\": \"{{input.qty}}\"}");
    assert_renders("{\"s\": \"a {{{{ b }} {{input.qty}}\"}", "{\"s\": \"a {{ b }} 2\"}");
    assert_renders("{\"s\": \"single { braces } and }} are text\"}",
                   "{\"s\": \"single { braces } and }} are text\"}");
}

Test(template, missing_values)
{
    assert_render_fails("{\"x\": \"{{input.nope}}\"}", "input.nope: no such value");
    assert_render_fails("{\"x\": \"{{input.items[5].sku}}\"}", "input.items[5].sku: no such value");
    assert_render_fails("{\"x\": \"{{input.qty.deeper}}\"}", "input.qty.deeper: no such value");
    assert_render_fails("{\"x\": \"{{input.customer[0]}}\"}", "input.customer[0]: no such value");
    assert_render_fails("{\"x\": \"{{steps.reserve.output.reservation}}\"}",
                        "steps.reserve.output.reservation: no such value");
    assert_render_fails("{\"x\": [\"id {{steps.charge.output.payment_id}}\"]}",
                        "steps.charge.output.payment_id: no such value "
                        "(step \"charge\" has no output)");
}

Test(template, optional_references)
{
    assert_renders("{\"x\": \"{{input.nope?}}\", \"y\": \"{{ input.qty ? }}\"}",
                   "{\"x\": null, \"y\": 2}");
    assert_renders("{\"s\": \"a{{input.nope?}}b{{steps.charge.output.id?}}c\"}",
                   "{\"s\": \"abc\"}");
    assert_renders("{\"s\": \"{{steps.charge.output?}}\"}", "{\"s\": null}");
}

Test(template, missing_context_members)
{
    json_t *tmpl = json_pack("{s:s}", "id", "{{saga.id}}");
    template_ctx_t ctx = {0};
    char why[WHY_LEN] = "";
    cr_expect_null(template_render_json(tmpl, &ctx, why, sizeof why));
    cr_expect_str_eq(why, "saga.id: no such value");
    json_decref(tmpl);

    tmpl = json_pack("{s:s}", "q", "{{input.qty}}");
    cr_expect_null(template_render_json(tmpl, NULL, why, sizeof why));
    cr_expect_str_eq(why, "input.qty: no such value");
    json_decref(tmpl);
}

Test(template, result_is_independent_of_inputs)
{
    json_t *tmpl = json_pack("{s:s}", "c", "{{input.customer}}");
    template_ctx_t ctx = test_ctx();
    template_t *t = template_compile(tmpl, NULL, "payload", NULL, NULL);
    cr_assert(t);
    json_decref(tmpl); /* the template holds its own copy */
    json_t *out = template_render(t, &ctx, NULL, 0);
    cr_assert(out);
    json_object_set_new(json_object_get(out, "c"), "name", json_string("changed"));
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(test_input, "customer"),
                                                       "name")),
                     "Ada");
    json_decref(out);
    /* Rendering twice gives the same result: nothing is consumed. */
    out = template_render(t, &ctx, NULL, 0);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(out, "c"), "name")),
                     "Ada");
    json_decref(out);
    cr_expect_eq(template_ref_count(t), 1);
    template_free(t);
    template_free(NULL);
}

/* Compile errors, collected with their paths. */
typedef struct collected {
    size_t count;
    char lines[MAX_COLLECTED][WHY_LEN * 2];
} collected_t;

static void collect(const char *path, const char *text, void *opaque)
{
    collected_t *c = opaque;
    if (c->count < MAX_COLLECTED)
        snprintf(c->lines[c->count++], sizeof c->lines[0], "%s: %s", path, text);
}

static const char *const STEP_NAMES[] = {"reserve", "charge", "ship", "notify"};
static const int STEP_GROUPS[] = {0, 1, 2, 2};

static collected_t compile_errors(const char *tmpl_text, int step, bool own_output,
                                  const char *schema_text)
{
    json_error_t jerr;
    json_t *tmpl = json_loads(tmpl_text, JSON_DECODE_ANY, &jerr);
    json_t *schema = schema_text ? json_loads(schema_text, 0, &jerr) : NULL;
    cr_assert(tmpl, "bad test template %s", tmpl_text);
    template_scope_t scope = {.step_names = STEP_NAMES,
                              .step_groups = STEP_GROUPS,
                              .step_count = 4,
                              .step = step,
                              .own_output = own_output,
                              .input_schema = schema,
                              .max_refs = 4,
                              .max_depth = 3};
    collected_t c = {0};
    template_t *t = template_compile(tmpl, &scope, "payload", collect, &c);
    cr_expect_eq(t == NULL, c.count > 0, "a template compiles exactly when it has no errors");
    template_free(t);
    json_decref(tmpl);
    json_decref(schema);
    return c;
}

static void assert_compile_error(const char *tmpl_text, int step, bool own_output,
                                 const char *expected)
{
    collected_t c = compile_errors(tmpl_text, step, own_output, NULL);
    cr_assert_eq(c.count, 1, "%s: expected one error, got %zu (%s)", tmpl_text, c.count,
                 c.count ? c.lines[0] : "");
    cr_expect_str_eq(c.lines[0], expected);
}

Test(template, check_syntax)
{
    assert_compile_error("{\"a\": \"{{input.qty\"}", 1, false,
                         "payload.a: unterminated \"{{\" (no matching \"}}\")");
    assert_compile_error("{\"a\": \"x {{ }}\"}", 1, false, "payload.a: empty reference \"{{}}\"");
    assert_compile_error("{\"a\": \"{{input..qty}}\"}", 1, false,
                         "payload.a: malformed reference {{input..qty}}: expected a key after \".\"");
    assert_compile_error("{\"a\": \"{{input.items[x]}}\"}", 1, false,
                         "payload.a: malformed reference {{input.items[x]}}: expected an index "
                         "after \"[\"");
    assert_compile_error("{\"a\": \"{{input.items[1}}\"}", 1, false,
                         "payload.a: malformed reference {{input.items[1}}: expected \"]\" after "
                         "the index");
    assert_compile_error("{\"a\": \"{{input qty}}\"}", 1, false,
                         "payload.a: malformed reference {{input qty}}: unexpected \" \" "
                         "(expected \".\" or \"[\")");
    assert_compile_error("{\"a\": \"{{steps.reserve.id}}\"}", 1, false,
                         "payload.a: malformed reference {{steps.reserve.id}}: expected "
                         "\".output\" after the step name");
    assert_compile_error("{\"a\": \"{{inputs.qty}}\"}", 1, false,
                         "payload.a: unknown root \"inputs\" in {{inputs.qty}} (expected saga, "
                         "input or steps)");
    assert_compile_error("{\"a\": \"{{saga.version}}\"}", 1, false,
                         "payload.a: unknown reference {{saga.version}} (expected saga.id or "
                         "saga.name)");
    assert_compile_error("{\"{{input.qty}}\": 1}", 1, false,
                         "payload.{{input.qty}}: templates are not allowed in object keys");
}

Test(template, check_step_order)
{
    assert_compile_error("{\"a\": [\"{{steps.chrage.output.id}}\"]}", 2, false,
                         "payload.a[0]: unknown step \"chrage\" in {{steps.chrage.output.id}} "
                         "(did you mean \"charge\"?)");
    assert_compile_error("{\"a\": \"{{steps.zzz.output.id}}\"}", 2, false,
                         "payload.a: unknown step \"zzz\" in {{steps.zzz.output.id}}");
    assert_compile_error("{\"a\": \"{{steps.ship.output.id}}\"}", 1, false,
                         "payload.a: later step \"ship\" in {{steps.ship.output.id}} (a payload "
                         "may only use steps that run before it)");
    assert_compile_error("{\"a\": \"{{steps.notify.output.id}}\"}", 2, false,
                         "payload.a: step \"notify\" of the same parallel group in "
                         "{{steps.notify.output.id}} (steps of one group run at once)");
    /* A compensation may not use a sibling of its group either. */
    assert_compile_error("{\"a\": \"{{steps.notify.output.id}}\"}", 2, true,
                         "payload.a: step \"notify\" of the same parallel group in "
                         "{{steps.notify.output.id}} (steps of one group run at once)");
    assert_compile_error("{\"a\": \"{{steps.charge.output.id}}\"}", 1, false,
                         "payload.a: the step's own output in its action in "
                         "{{steps.charge.output.id}} (only its compensation may use it)");

    collected_t ok = compile_errors("{\"a\": \"{{steps.charge.output.id}}\", "
                                    "\"b\": \"{{steps.reserve.output.x}}\"}", 1, true, NULL);
    cr_expect_eq(ok.count, 0, "a compensation uses its own and earlier outputs: %s",
                 ok.lines[0]);
    ok = compile_errors("{\"a\": \"{{steps.reserve.output.x}} {{steps.charge.output.y}}\"}", 3,
                        false, NULL);
    cr_expect_eq(ok.count, 0, "%s", ok.lines[0]);
}

Test(template, check_input_schema)
{
    const char *schema =
        "{\"type\": \"object\", \"properties\": {\"qty\": {\"type\": \"integer\"},"
        " \"customer\": {\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}}},"
        " \"items\": {\"type\": \"array\", \"items\": {\"type\": \"object\","
        " \"properties\": {\"sku\": {\"type\": \"string\"}}}},"
        " \"extra\": {\"type\": \"object\", \"additionalProperties\": true,"
        " \"properties\": {\"a\": {}}},"
        " \"free\": {\"type\": \"object\"}}}";
    collected_t c = compile_errors("{\"a\": \"{{input.qtty}}\", \"b\": \"{{input.customer.nme}}\","
                                   " \"c\": \"{{input.items[0].skus}}\", \"d\": \"{{input.qty.x}}\","
                                   " \"e\": \"{{input.zzzzzz}}\"}",
                                   1, false, schema);
    cr_assert_eq(c.count, 5);
    cr_expect_str_eq(c.lines[0], "payload.a: unknown input property \"qtty\" in {{input.qtty}} "
                                 "(did you mean \"qty\"?)");
    cr_expect_str_eq(c.lines[1], "payload.b: unknown input property \"nme\" in "
                                 "{{input.customer.nme}} (did you mean \"name\"?)");
    cr_expect_str_eq(c.lines[2], "payload.c: unknown input property \"skus\" in "
                                 "{{input.items[0].skus}} (did you mean \"sku\"?)");
    cr_expect_str_eq(c.lines[3], "payload.d: a key of a value declared as integer in "
                                 "{{input.qty.x}}");
    cr_expect_str_eq(c.lines[4], "payload.e: unknown input property \"zzzzzz\" in "
                                 "{{input.zzzzzz}} (the input schema does not declare it)");

    c = compile_errors("{\"a\": \"{{input.extra.b}}\", \"b\": \"{{input.free.x.y}}\","
                       " \"c\": \"{{input.items[3]}}\"}", 1, false, schema);
    cr_expect_eq(c.count, 0, "open objects accept any key: %s", c.lines[0]);
}

Test(template, check_limits_and_all_errors)
{
    collected_t c = compile_errors("{\"a\": \"{{input.a}}{{input.b}}{{input.c}}\","
                                   " \"b\": [\"{{input.d}}\", \"{{input.e}}\", \"{{input.f}}\"]}",
                                   1, false, NULL);
    cr_assert_eq(c.count, 1);
    cr_expect_str_eq(c.lines[0], "payload.b[1]: more than 4 template references in one payload");

    c = compile_errors("{\"a\": {\"b\": {\"c\": {}}}, \"z\": [[[1]]]}", 1, false, NULL);
    cr_assert_eq(c.count, 1);
    cr_expect_str_eq(c.lines[0], "payload.a.b.c: nested deeper than 3 levels");

    /* Every bad string is reported, not only the first. */
    c = compile_errors("{\"a\": \"{{x}}\", \"b\": \"{{steps.nope.output}}\", \"c\": \"{{\"}", 1,
                       false, NULL);
    cr_expect_eq(c.count, 3);
}

Test(template, references_step)
{
    json_t *tmpl = json_pack("{s:s,s:s}", "a", "{{steps.reserve.output.x}}", "b", "{{input.q}}");
    template_scope_t scope = {.step_names = STEP_NAMES, .step_groups = STEP_GROUPS,
                              .step_count = 4, .step = 1};
    template_t *t = template_compile(tmpl, &scope, "payload", NULL, NULL);
    cr_assert(t);
    cr_expect(template_references_step(t, 0));
    cr_expect_not(template_references_step(t, 1));
    cr_expect_eq(template_ref_count(t), 2);
    template_free(t);
    json_decref(tmpl);
}
