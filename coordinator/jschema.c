/* jschema.c - the JSON Schema subset of definition inputs: checking a schema, validating a
 * value against it, and the JSON paths and type names their errors use (see jschema.h). */
#include "jschema.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suggest.h"

#define JSCHEMA_TEXT_MAX 512         /* one error text, before the receiver cuts it */
#define JSCHEMA_SUGGEST_DISTANCE 2   /* edits at most, for "did you mean" */
#define JSCHEMA_MAX_LENGTH INT32_MAX /* largest minLength or maxLength */

static const char *const SCHEMA_FIELDS[] = {"type", "properties", "required",
                                            "additionalProperties", "items", "enum",
                                            "minLength", "maxLength", "minimum", "maximum",
                                            "description", "title", NULL};
static const char *const SCHEMA_TYPES[] = {"object", "array", "string", "number", "integer",
                                           "boolean", "null", NULL};

/* ---------- JSON paths and type names ---------- */

/* Appends s to the path out of length *n. Paths longer than JSCHEMA_PATH_MAX are cut: the
 * start still says where to look. (By hand, not snprintf: GCC's truncation warning
 * cannot tell a deliberate cut from a bug.) */
static void path_append(char *out, size_t *n, const char *s)
{
    while (*s && *n < JSCHEMA_PATH_MAX - 1)
        out[(*n)++] = *s++;
    out[*n] = '\0';
}

void jschema_path_key(char *out, const char *base, const char *key)
{
    size_t n = 0;
    out[0] = '\0';
    path_append(out, &n, base);
    if (*base)
        path_append(out, &n, ".");
    path_append(out, &n, key);
}

void jschema_path_index(char *out, const char *base, size_t i)
{
    char num[32];
    size_t n = 0;
    snprintf(num, sizeof num, "[%zu]", i);
    out[0] = '\0';
    path_append(out, &n, base);
    path_append(out, &n, num);
}

const char *jschema_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static bool in_list(const char *word, const char *const *list)
{
    for (size_t i = 0; list[i]; i++) {
        if (strcmp(word, list[i]) == 0)
            return true;
    }
    return false;
}

/* ---------- checking a schema ---------- */

/* The state of one check: where problems go and how many were found. */
typedef struct checker {
    jschema_error_fn on_error;
    void *opaque;
    int max_depth;
    size_t problems;
} checker_t;

static void problem(checker_t *C, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(checker_t *C, const char *path, const char *fmt, ...)
{
    char text[JSCHEMA_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    C->problems++;
    if (C->on_error)
        C->on_error(path, text, C->opaque);
}

/* Which type a keyword belongs to, or NULL when it applies to any. */
static const char *keyword_type(const char *kw)
{
    if (!strcmp(kw, "properties") || !strcmp(kw, "required") ||
        !strcmp(kw, "additionalProperties"))
        return "object";
    if (!strcmp(kw, "items"))
        return "array";
    if (!strcmp(kw, "minLength") || !strcmp(kw, "maxLength"))
        return "string";
    if (!strcmp(kw, "minimum") || !strcmp(kw, "maximum"))
        return "number";
    return NULL;
}

/* minLength or maxLength of s: 1 when present and valid (out set), 0 when absent, -1 when
 * invalid (reported). */
static int length_keyword(checker_t *C, const json_t *s, const char *kw, const char *path,
                          int64_t *out)
{
    const json_t *v = json_object_get(s, kw);
    if (!v)
        return 0;
    char p[JSCHEMA_PATH_MAX];
    jschema_path_key(p, path, kw);
    if (!json_is_integer(v)) {
        problem(C, p, "expected an integer, got %s", jschema_type_name(v));
        return -1;
    }
    json_int_t n = json_integer_value(v);
    if (n < 0) {
        problem(C, p, "must be at least 0, got %" JSON_INTEGER_FORMAT, n);
        return -1;
    }
    if (n > JSCHEMA_MAX_LENGTH) {
        problem(C, p, "must be at most %" PRId64 ", got %" JSON_INTEGER_FORMAT,
                (int64_t)JSCHEMA_MAX_LENGTH, n);
        return -1;
    }
    *out = n;
    return 1;
}

/* minimum or maximum of s: 1 when present and a number (out set), 0 when absent, -1 when
 * not a number (reported). */
static int bound_keyword(checker_t *C, const json_t *s, const char *kw, const char *path,
                         double *out)
{
    const json_t *v = json_object_get(s, kw);
    if (!v)
        return 0;
    if (!json_is_number(v)) {
        char p[JSCHEMA_PATH_MAX];
        jschema_path_key(p, path, kw);
        problem(C, p, "expected a number, got %s", jschema_type_name(v));
        return -1;
    }
    *out = json_number_value(v);
    return 1;
}

/* description or title of s: a string for people, when present. */
static void text_keyword(checker_t *C, const json_t *s, const char *kw, const char *path)
{
    const json_t *v = json_object_get(s, kw);
    if (v && !json_is_string(v)) {
        char p[JSCHEMA_PATH_MAX];
        jschema_path_key(p, path, kw);
        problem(C, p, "expected a string, got %s", jschema_type_name(v));
    }
}

static void check_schema(checker_t *C, const json_t *s, const char *path, int depth);

/* properties, additionalProperties and required. */
static void check_object_keywords(checker_t *C, const json_t *s, const char *path, int depth)
{
    char p[JSCHEMA_PATH_MAX];
    const json_t *props = json_object_get(s, "properties");
    if (props) {
        jschema_path_key(p, path, "properties");
        if (!json_is_object(props)) {
            problem(C, p, "expected an object, got %s", jschema_type_name(props));
            props = NULL;
        } else {
            const char *key;
            const json_t *sub;
            json_object_foreach((json_t *)props, key, sub)
            {
                char sp[JSCHEMA_PATH_MAX];
                jschema_path_key(sp, p, key);
                check_schema(C, sub, sp, depth + 1);
            }
        }
    }
    const json_t *extra = json_object_get(s, "additionalProperties");
    if (extra && !json_is_boolean(extra)) {
        jschema_path_key(p, path, "additionalProperties");
        problem(C, p, "expected a boolean, got %s", jschema_type_name(extra));
    }
    const json_t *req = json_object_get(s, "required");
    if (req) {
        jschema_path_key(p, path, "required");
        if (!json_is_array(req)) {
            problem(C, p, "expected an array of property names, got %s",
                    jschema_type_name(req));
            return;
        }
        for (size_t i = 0; i < json_array_size(req); i++) {
            const json_t *name = json_array_get(req, i);
            char ip[JSCHEMA_PATH_MAX];
            jschema_path_index(ip, p, i);
            if (!json_is_string(name)) {
                problem(C, ip, "expected a string, got %s", jschema_type_name(name));
                continue;
            }
            for (size_t j = 0; j < i; j++) {
                if (json_equal(json_array_get(req, j), (json_t *)name)) {
                    problem(C, ip, "\"%s\" is listed twice", json_string_value(name));
                    break;
                }
            }
            /* A required property the schema does not declare would make every input
             * with a closed schema invalid: certainly a typo. */
            if (json_is_object(props) && !json_object_get(props, json_string_value(name)) &&
                !json_is_true(extra))
                problem(C, ip, "required property \"%s\" is not declared in properties",
                        json_string_value(name));
        }
    }
}

static void check_schema(checker_t *C, const json_t *s, const char *path, int depth)
{
    char p[JSCHEMA_PATH_MAX];
    if (!json_is_object(s)) {
        problem(C, path, "expected an object (a schema), got %s", jschema_type_name(s));
        return;
    }
    if (depth > C->max_depth) {
        problem(C, path, "schema nested deeper than %d levels", C->max_depth);
        return;
    }
    /* Unknown keywords are named by their own path, as JSON Schema tools do. */
    const char *kw;
    const json_t *kv;
    json_object_foreach((json_t *)s, kw, kv)
    {
        if (in_list(kw, SCHEMA_FIELDS))
            continue;
        const char *hint = suggest_closest(kw, SCHEMA_FIELDS, SUGGEST_UNTIL_NULL,
                                           JSCHEMA_SUGGEST_DISTANCE);
        jschema_path_key(p, path, kw);
        if (hint)
            problem(C, p, "unknown schema keyword (did you mean \"%s\"?)", hint);
        else
            problem(C, p, "unknown schema keyword (this subset of JSON Schema has: type, "
                    "properties, required, additionalProperties, items, enum, minLength, "
                    "maxLength, minimum, maximum, description, title)");
    }

    const char *type = NULL;
    const json_t *t = json_object_get(s, "type");
    if (t) {
        jschema_path_key(p, path, "type");
        if (!json_is_string(t)) {
            problem(C, p, "expected a string, got %s", jschema_type_name(t));
        } else if (!in_list(json_string_value(t), SCHEMA_TYPES)) {
            const char *hint = suggest_closest(json_string_value(t), SCHEMA_TYPES,
                                               SUGGEST_UNTIL_NULL, JSCHEMA_SUGGEST_DISTANCE);
            if (hint)
                problem(C, p, "unknown type \"%s\" (did you mean \"%s\"?)",
                        json_string_value(t), hint);
            else
                problem(C, p, "unknown type \"%s\" (expected object, array, string, number, "
                        "integer, boolean or null)", json_string_value(t));
        } else {
            type = json_string_value(t);
        }
    }
    if (type) {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)s, key, v)
        {
            const char *kt = keyword_type(key);
            bool fits = !kt || !strcmp(kt, type) ||
                        (!strcmp(kt, "number") && !strcmp(type, "integer"));
            if (!fits) {
                jschema_path_key(p, path, key);
                problem(C, p, "\"%s\" does not apply to type \"%s\"", key, type);
            }
        }
    }
    check_object_keywords(C, s, path, depth);

    const json_t *items = json_object_get(s, "items");
    if (items) {
        jschema_path_key(p, path, "items");
        check_schema(C, items, p, depth + 1);
    }
    const json_t *en = json_object_get(s, "enum");
    if (en && (!json_is_array(en) || json_array_size(en) == 0)) {
        jschema_path_key(p, path, "enum");
        problem(C, p, "expected a non-empty array, got %s",
                json_is_array(en) ? "an empty array" : jschema_type_name(en));
    }
    int64_t min_len = 0, max_len = INT64_MAX;
    int has_min = length_keyword(C, s, "minLength", path, &min_len);
    int has_max = length_keyword(C, s, "maxLength", path, &max_len);
    if (has_min == 1 && has_max == 1 && min_len > max_len)
        problem(C, path, "minLength (%" PRId64 ") is greater than maxLength (%" PRId64 ")",
                min_len, max_len);
    double min = 0, max = 0;
    has_min = bound_keyword(C, s, "minimum", path, &min);
    has_max = bound_keyword(C, s, "maximum", path, &max);
    if (has_min == 1 && has_max == 1 && min > max)
        problem(C, path, "minimum (%g) is greater than maximum (%g)", min, max);
    text_keyword(C, s, "description", path);
    text_keyword(C, s, "title", path);
}

size_t jschema_check(const json_t *schema, const char *path, int max_depth,
                     jschema_error_fn on_error, void *opaque)
{
    checker_t C = {on_error, opaque, max_depth, 0};
    check_schema(&C, schema, path, 1);
    return C.problems;
}

/* ---------- validating a value ---------- */

static const char *expected_name(const char *type)
{
    if (!strcmp(type, "object")) return "an object";
    if (!strcmp(type, "array")) return "an array";
    if (!strcmp(type, "string")) return "a string";
    if (!strcmp(type, "number")) return "a number";
    if (!strcmp(type, "integer")) return "an integer";
    if (!strcmp(type, "boolean")) return "a boolean";
    return "null";
}

static bool type_matches(const char *type, const json_t *v)
{
    if (!strcmp(type, "object")) return json_is_object(v);
    if (!strcmp(type, "array")) return json_is_array(v);
    if (!strcmp(type, "string")) return json_is_string(v);
    if (!strcmp(type, "number")) return json_is_number(v);
    if (!strcmp(type, "integer"))
        /* JSON Schema counts 2.0 as an integer; so do we. */
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (!strcmp(type, "boolean")) return json_is_boolean(v);
    return json_is_null(v);
}

/* Length in code points, as JSON Schema counts minLength. */
static size_t utf8_length(const char *s, size_t bytes)
{
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    }
    return n;
}

static int fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int jschema_validate(const json_t *s, const json_t *v, const char *path, char *why,
                     size_t why_len)
{
    const char *type = json_string_value(json_object_get(s, "type"));
    if (type && !type_matches(type, v))
        return fail(why, why_len, "%s: expected %s, got %s", path, expected_name(type),
                    jschema_type_name(v));
    const json_t *en = json_object_get(s, "enum");
    if (json_is_array(en)) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(en) && !found; i++)
            found = json_equal(json_array_get(en, i), (json_t *)v);
        if (!found) {
            char *text = json_dumps(en, JSON_COMPACT);
            int rc = fail(why, why_len, "%s: expected one of %.*s", path, JSCHEMA_ENUM_SHOWN,
                          text ? text : "the enum");
            free(text);
            return rc;
        }
    }
    if (json_is_string(v)) {
        size_t n = utf8_length(json_string_value(v), json_string_length(v));
        const json_t *lim = json_object_get(s, "minLength");
        if (json_is_integer(lim) && (json_int_t)n < json_integer_value(lim))
            return fail(why, why_len, "%s: expected at least %" JSON_INTEGER_FORMAT
                        " characters, got %zu", path, json_integer_value(lim), n);
        lim = json_object_get(s, "maxLength");
        if (json_is_integer(lim) && (json_int_t)n > json_integer_value(lim))
            return fail(why, why_len, "%s: expected at most %" JSON_INTEGER_FORMAT
                        " characters, got %zu", path, json_integer_value(lim), n);
    }
    if (json_is_number(v)) {
        double x = json_number_value(v);
        const json_t *lim = json_object_get(s, "minimum");
        if (json_is_number(lim) && x < json_number_value(lim))
            return fail(why, why_len, "%s: expected at least %g, got %g", path,
                        json_number_value(lim), x);
        lim = json_object_get(s, "maximum");
        if (json_is_number(lim) && x > json_number_value(lim))
            return fail(why, why_len, "%s: expected at most %g, got %g", path,
                        json_number_value(lim), x);
    }
    char p[JSCHEMA_PATH_MAX];
    if (json_is_object(v)) {
        const json_t *req = json_object_get(s, "required");
        for (size_t i = 0; i < json_array_size(req); i++) {
            const char *name = json_string_value(json_array_get(req, i));
            if (name && !json_object_get(v, name))
                return fail(why, why_len, "%s: missing required property \"%s\"", path, name);
        }
        const json_t *props = json_object_get(s, "properties");
        bool closed = json_is_false(json_object_get(s, "additionalProperties"));
        const char *key;
        const json_t *child;
        json_object_foreach((json_t *)v, key, child)
        {
            const json_t *sub = json_object_get(props, key);
            jschema_path_key(p, path, key);
            if (!sub && closed)
                return fail(why, why_len, "%s: unknown property (the input schema does not "
                            "declare it)", p);
            if (sub && jschema_validate(sub, child, p, why, why_len) < 0)
                return -1;
        }
    }
    const json_t *items = json_object_get(s, "items");
    if (json_is_array(v) && items) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            jschema_path_index(p, path, i);
            if (jschema_validate(items, json_array_get(v, i), p, why, why_len) < 0)
                return -1;
        }
    }
    return 0;
}
