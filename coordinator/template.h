/* template.h - the payload template engine: {{...}} references in command payloads.
 *
 * A payload template is any JSON value whose strings may hold references (the language
 * is documented in docs/definitions.md):
 *   {{saga.id}}  {{saga.name}}  {{input.PATH}}  {{steps.NAME.output.PATH}}
 * where PATH is dot-separated keys with optional [N] array indexes (input.items[0].sku).
 * A string that is exactly one reference becomes the referenced JSON value, type and all;
 * a reference inside longer text is interpolated as text. A trailing "?" ({{input.note?}})
 * makes a reference optional: missing, it renders as null, or as nothing inside text.
 * "{{{{" is a literal "{{".
 *
 * Templates are compiled once, when a definition loads: compiling checks the syntax,
 * that every referenced step exists and runs before the payload's step, and that input
 * references name properties the input schema declares. Rendering a compiled template
 * (per command sent) only walks values; it never parses. */
#ifndef SAGA_TEMPLATE_H
#define SAGA_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The largest rendered payload, as compact JSON: a command must fit a Kafka message
 * (1 MiB by default) with its envelope. A few references to a large input or output,
 * interpolated into text, would otherwise build one of many megabytes. */
#define TEMPLATE_MAX_RENDER_BYTES (512 * 1024)

/* A compiled template. Immutable once compiled: one may be rendered by several threads. */
typedef struct template template_t;

/* What a payload may reference, checked by template_compile. Every pointer is borrowed
 * for the duration of the call only. */
typedef struct template_scope {
    const char *const *step_names; /* every step of the saga, in order (NULL entries skipped) */
    const int *step_groups;        /* the group of each step (see definition.h) */
    size_t step_count;
    int step;                      /* index of the step that owns the payload */
    bool own_output;               /* a compensation: may reference its own step's output */
    const json_t *input_schema;    /* the definition's "input" schema, or NULL */
    size_t max_refs;               /* most references in the whole template; 0 = no limit */
    int max_depth;                 /* deepest nesting of arrays/objects; 0 = no limit */
} template_scope_t;

/* Receives one compile error: path is the JSON path of the offending value (the prefix
 * passed to template_compile plus keys and [i] below it), text says what is wrong. Both
 * live only during the call. */
typedef void (*template_error_fn)(const char *path, const char *text, void *opaque);

/* The output of a step at render time, or NULL when the step has none (it has not run,
 * failed, or timed out). step_index is the step's index in the definition, or -1 when
 * the template was compiled without a scope. The returned value is borrowed and must stay
 * valid until template_render returns. */
typedef const json_t *(*template_step_output_fn)(const char *step_name, int step_index,
                                                 void *opaque);

/* What a template is rendered against; every pointer is borrowed. Any member may be NULL:
 * a reference to it then renders as a missing value. */
typedef struct template_ctx {
    const char *saga_id;
    const char *saga_name;
    const json_t *input;
    template_step_output_fn step_output;
    void *opaque;                  /* passed to step_output */
} template_ctx_t;

/* Compiles tmpl (not modified, not kept: the template holds its own copy). path is the
 * JSON path prefix used in errors (e.g. "steps[1].action.payload"; may be NULL or "").
 * scope NULL skips the step and schema checks (any step name resolves, with index -1).
 * Returns the template (caller frees with template_free), or NULL after reporting every
 * error found to on_error (which may be NULL). */
template_t *template_compile(const json_t *tmpl, const template_scope_t *scope,
                             const char *path, template_error_fn on_error, void *opaque);

void template_free(template_t *t);

/* Renders t. Returns a new reference (caller owns; it shares nothing with the template,
 * the input or the step outputs), or NULL with the reason in why (may be NULL), such as
 * "steps.reserve.output.reservation_id: no such value", or when the result is larger
 * than TEMPLATE_MAX_RENDER_BYTES. NULL also on out of memory. */
json_t *template_render(const template_t *t, const template_ctx_t *ctx, char *why,
                        size_t why_len);

/* Compiles tmpl without a scope and renders it: for one-off payloads and tests. A
 * compile error is returned like a missing value: NULL with the reason in why. */
json_t *template_render_json(const json_t *tmpl, const template_ctx_t *ctx, char *why,
                             size_t why_len);

/* How many {{...}} references t holds. */
size_t template_ref_count(const template_t *t);

/* Whether t references the output of the step with that index (a scope's index), e.g. to
 * tell in advance that a compensation needs its action's output. */
bool template_references_step(const template_t *t, int step_index);

/* Adds to out (an object) a stand-in for every value below the output of the step with
 * index step_index that t references and out lacks: the string "<steps.NAME.output.PATH>"
 * (the reference as written) at PATH, with the objects and arrays on the way. A dry run
 * (dryrun.h) invents participants' replies with it, so that later payloads render and show
 * where each value comes from. Returns 0, or -1 when out of memory or out already holds a
 * value of another type on the way. */
int template_sample_output(const template_t *t, int step_index, json_t *out);

#endif
