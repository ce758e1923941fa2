/* jschema.h - the subset of JSON Schema a definition's "input" is written in: checking a
 * schema when a definition loads, and validating a value (a saga's input) against it.
 *
 * The keywords are type, properties, required, additionalProperties, items, enum,
 * minLength, maxLength, minimum, maximum, description and title (docs/definitions.md,
 * "The input schema"); any other is an error. Both directions speak in JSON paths
 * (input.properties.qty.typ, input.items[1].qty): errors in a schema name the offending
 * keyword or value, a failed validation names the offending value. The same JSON paths and
 * type names ("an object", "a number") are used by the definition loader (definition.c), so
 * that every error about a definition file reads alike.
 *
 * No state, no allocation that outlives a call: every json_t is borrowed. */
#ifndef SAGA_JSCHEMA_H
#define SAGA_JSCHEMA_H

#include <jansson.h>
#include <stddef.h>

/* The longest JSON path in an error, with its NUL; longer ones are cut at the end (the
 * start still says where to look). */
#define JSCHEMA_PATH_MAX 256

/* Characters of an enum quoted in a validation error ("expected one of [...]"). */
#define JSCHEMA_ENUM_SHOWN 120

/* Receives one problem of a schema: path is the JSON path of the offending keyword or
 * value, text says what is wrong and what was expected. Both live only during the call. */
typedef void (*jschema_error_fn)(const char *path, const char *text, void *opaque);

/* Checks that schema (the value at JSON path path, e.g. "input"; may be "" but not NULL) is
 * a schema of the subset: known keywords only, each of the right type and applying to the
 * declared type, sound bounds, "required" names declared in "properties", and schemas
 * nested at most max_depth levels (the top one is level 1). Reports every problem, in
 * document order, to on_error (may be NULL). Returns the number of problems: 0 when the
 * schema is sound, which jschema_validate requires. */
size_t jschema_check(const json_t *schema, const char *path, int max_depth,
                     jschema_error_fn on_error, void *opaque);

/* Validates value against schema (one jschema_check found sound). path is value's JSON path
 * in messages (e.g. "input"). Returns 0 when it conforms, -1 when not, with the first
 * violation written to why (may be NULL) as "PATH: what", e.g.
 * "input.amount: expected a number, got a string" or
 * "input: missing required property \"sku\"". */
int jschema_validate(const json_t *schema, const json_t *value, const char *path, char *why,
                     size_t why_len);

/* The JSON type of v as an error names it: "an object", "an array", "a string", "a number"
 * (integers and reals alike: the writer of a file thinks in JSON, not jansson),
 * "a boolean" or "null". A static string. */
const char *jschema_type_name(const json_t *v);

/* out = base.key, or key alone when base is "". out (JSCHEMA_PATH_MAX bytes) must not
 * alias base. */
void jschema_path_key(char *out, const char *base, const char *key);

/* out = base[i]. out (JSCHEMA_PATH_MAX bytes) must not alias base. */
void jschema_path_index(char *out, const char *base, size_t i);

#endif
