/* test_jschema.c - the JSON Schema subset of definition inputs on its own: a schema's
 * problems with their exact paths and texts (jschema_check), values validated against a
 * schema with the exact first violation (jschema_validate), and the JSON paths and type
 * names every definition error uses. The same texts through a definition file are in
 * tests/definitions/invalid/ and test_definition.c. */
#include "jschema.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define WHY_LEN 256
#define MAX_PROBLEMS 16
#define LINE_LEN (JSCHEMA_PATH_MAX + 512)

/* The problems one jschema_check reported, each as "path: text". */
typedef struct problems {
    size_t count;
    char lines[MAX_PROBLEMS][LINE_LEN];
} problems_t;

static void collect(const char *path, const char *text, void *opaque)
{
    problems_t *p = opaque;
    if (p->count < MAX_PROBLEMS)
        snprintf(p->lines[p->count], sizeof p->lines[0], "%s: %s", path, text);
    p->count++;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    cr_assert(v, "bad test JSON %s: %s", text, jerr.text);
    return v;
}

/* Checks schema_text at path "input" with depth limit 16 and expects exactly want (a
 * NULL-terminated list of "path: text" lines, in order). */
static void expect_problems(const char *schema_text, const char *const *want)
{
    json_t *schema = parse(schema_text);
    problems_t got = {0};
    size_t n = jschema_check(schema, "input", 16, collect, &got);
    size_t expected = 0;
    while (want[expected])
        expected++;
    cr_expect_eq(n, got.count, "the count returned is the count reported");
    cr_expect_eq(got.count, expected, "%s: %zu problems, want %zu (first: %s)", schema_text,
                 got.count, expected, got.count ? got.lines[0] : "none");
    for (size_t i = 0; i < expected && i < got.count && i < MAX_PROBLEMS; i++)
        cr_expect_str_eq(got.lines[i], want[i]);
    json_decref(schema);
}

Test(jschema, sound_schema_has_no_problems)
{
    static const char *const none[] = {NULL};
    expect_problems("{\"type\": \"object\", \"title\": \"t\", \"description\": \"d\","
                    " \"required\": [\"n\"], \"additionalProperties\": false,"
                    " \"properties\": {\"n\": {\"type\": \"integer\", \"minimum\": 0,"
                    " \"maximum\": 9}, \"s\": {\"type\": \"string\", \"minLength\": 1,"
                    " \"maxLength\": 4, \"enum\": [\"a\", \"b\"]},"
                    " \"l\": {\"type\": \"array\", \"items\": {\"type\": \"null\"}}}}",
                    none);
    expect_problems("{}", none);
    /* Without properties, or with additionalProperties true, required names anything. */
    expect_problems("{\"required\": [\"x\"], \"additionalProperties\": true,"
                    " \"properties\": {}}", none);
}

Test(jschema, problems_name_the_keyword_and_what_was_expected)
{
    static const char *const typo[] = {
        "input.properties.qty.typ: unknown schema keyword (did you mean \"type\"?)", NULL};
    expect_problems("{\"properties\": {\"qty\": {\"typ\": \"integer\"}}}", typo);

    static const char *const unknown[] = {
        "input.pattern: unknown schema keyword (this subset of JSON Schema has: type, "
        "properties, required, additionalProperties, items, enum, minLength, maxLength, "
        "minimum, maximum, description, title)",
        NULL};
    expect_problems("{\"pattern\": \"^a\"}", unknown);

    static const char *const types[] = {
        "input.properties.a.type: unknown type \"strng\" (did you mean \"string\"?)",
        "input.properties.b.type: unknown type \"date\" (expected object, array, string, "
        "number, integer, boolean or null)",
        "input.properties.c.type: expected a string, got an array", NULL};
    expect_problems("{\"properties\": {\"a\": {\"type\": \"strng\"}, \"b\": {\"type\": \"date\"},"
                    " \"c\": {\"type\": [\"string\"]}}}", types);

    static const char *const misfit[] = {
        "input.minLength: \"minLength\" does not apply to type \"number\"", NULL};
    expect_problems("{\"type\": \"number\", \"minLength\": 1, \"minimum\": 0}", misfit);

    static const char *const object_keywords[] = {
        "input.properties: expected an object, got an array",
        "input.additionalProperties: expected a boolean, got a string",
        "input.required[1]: expected a string, got a number",
        "input.required[2]: \"a\" is listed twice", NULL};
    expect_problems("{\"properties\": [], \"additionalProperties\": \"no\","
                    " \"required\": [\"a\", 1, \"a\"]}", object_keywords);

    static const char *const undeclared[] = {
        "input.required[0]: required property \"b\" is not declared in properties", NULL};
    expect_problems("{\"properties\": {\"a\": {}}, \"required\": [\"b\"]}", undeclared);

    static const char *const bounds[] = {
        "input.properties.s.enum: expected a non-empty array, got an empty array",
        "input.properties.s: minLength (5) is greater than maxLength (2)",
        "input.properties.n.minLength: must be at least 0, got -1",
        "input.properties.n: minimum (3) is greater than maximum (1.5)",
        "input.properties.t.maximum: expected a number, got a string",
        "input.properties.t.title: expected a string, got a boolean", NULL};
    expect_problems("{\"properties\": {\"s\": {\"enum\": [], \"minLength\": 5, \"maxLength\": 2},"
                    " \"n\": {\"minLength\": -1, \"minimum\": 3, \"maximum\": 1.5},"
                    " \"t\": {\"maximum\": \"9\", \"title\": true}}}", bounds);

    static const char *const not_schemas[] = {
        "input.items: expected an object (a schema), got a string", NULL};
    expect_problems("{\"type\": \"array\", \"items\": \"string\"}", not_schemas);
}

Test(jschema, nesting_is_limited)
{
    /* Level 1 is the top; items at levels 2 and 3. */
    json_t *schema = parse("{\"items\": {\"items\": {\"items\": {}}}}");
    problems_t got = {0};
    cr_expect_eq(jschema_check(schema, "input", 3, collect, &got), 1);
    cr_expect_str_eq(got.lines[0], "input.items.items.items: schema nested deeper than 3 levels");
    cr_expect_eq(jschema_check(schema, "input", 4, NULL, NULL), 0, "on_error may be NULL");
    cr_expect_eq(jschema_check(schema, "input", 3, NULL, NULL), 1);
    json_decref(schema);
}

/* Validates value_text against schema_text at path "input"; want NULL: it conforms. */
static void expect_value(const char *schema_text, const char *value_text, const char *want)
{
    json_t *schema = parse(schema_text);
    json_t *value = parse(value_text);
    char why[WHY_LEN] = "";
    int rc = jschema_validate(schema, value, "input", why, sizeof why);
    if (want) {
        cr_expect_eq(rc, -1, "%s should be rejected", value_text);
        cr_expect_str_eq(why, want);
    } else {
        cr_expect_eq(rc, 0, "%s should conform: %s", value_text, why);
    }
    json_decref(value);
    json_decref(schema);
}

Test(jschema, values_conform_or_name_the_first_violation)
{
    static const char SCHEMA[] =
        "{\"type\": \"object\", \"required\": [\"sku\"], \"additionalProperties\": false,"
        " \"properties\": {\"sku\": {\"type\": \"string\", \"maxLength\": 3},"
        " \"qty\": {\"type\": \"integer\", \"minimum\": 1},"
        " \"tags\": {\"type\": \"array\", \"items\": {\"enum\": [\"x\", \"y\"]}}}}";
    expect_value(SCHEMA, "{\"sku\": \"abc\", \"qty\": 2.0, \"tags\": [\"y\"]}", NULL);
    expect_value(SCHEMA, "{\"sku\": \"\u00e9\u00e9\u00e9\"}", NULL); /* 3 characters */
    expect_value(SCHEMA, "{}", "input: missing required property \"sku\"");
    expect_value(SCHEMA, "{\"sku\": 1}", "input.sku: expected a string, got a number");
    expect_value(SCHEMA, "{\"sku\": \"abcd\"}", "input.sku: expected at most 3 characters, got 4");
    expect_value(SCHEMA, "{\"sku\": \"a\", \"qty\": 1.5}",
                 "input.qty: expected an integer, got a number");
    expect_value(SCHEMA, "{\"sku\": \"a\", \"qty\": 0}", "input.qty: expected at least 1, got 0");
    expect_value(SCHEMA, "{\"sku\": \"a\", \"tags\": [\"x\", \"z\"]}",
                 "input.tags[1]: expected one of [\"x\",\"y\"]");
    expect_value(SCHEMA, "{\"sku\": \"a\", \"colour\": \"red\"}",
                 "input.colour: unknown property (the input schema does not declare it)");
    expect_value(SCHEMA, "[]", "input: expected an object, got an array");
    expect_value("{}", "null", NULL);

    json_t *schema = parse(SCHEMA);
    json_t *value = parse("{}");
    cr_expect_eq(jschema_validate(schema, value, "input", NULL, 0), -1, "why may be NULL");
    json_decref(value);
    json_decref(schema);
}

Test(jschema, paths_and_type_names)
{
    char out[JSCHEMA_PATH_MAX];
    jschema_path_key(out, "", "input");
    cr_expect_str_eq(out, "input");
    jschema_path_key(out, "steps[2]", "compensation");
    cr_expect_str_eq(out, "steps[2].compensation");
    jschema_path_index(out, "input.items", 10);
    cr_expect_str_eq(out, "input.items[10]");

    char base[2 * JSCHEMA_PATH_MAX];
    memset(base, 'a', sizeof base - 1);
    base[sizeof base - 1] = '\0';
    jschema_path_key(out, base, "b");
    cr_expect_eq(strlen(out), JSCHEMA_PATH_MAX - 1, "a long path is cut, not overrun");

    json_t *values[] = {json_object(), json_array(), json_string("s"), json_integer(1),
                        json_real(1.5), json_true(), json_null()};
    const char *names[] = {"an object", "an array", "a string", "a number", "a number",
                           "a boolean", "null"};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        cr_expect_str_eq(jschema_type_name(values[i]), names[i]);
        json_decref(values[i]);
    }
}
