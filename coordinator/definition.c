/* definition.c - the saga definition model: loading and validating one definition from a
 * string or a file, its defaults, its payload templates (compiled by template.c), its
 * content hash, and the errors of a load (see definition.h; the format is in
 * docs/definitions.md). The "input" schema is checked, and inputs validated, by
 * jschema.c; sets of definitions and folders are catalogue.c's. */
#include "definition.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jschema.h"
#include "sha256.h"
#include "suggest.h"

#define DEFN_PATH_MAX JSCHEMA_PATH_MAX /* = sizeof defn_error_t.path */
#define DEFN_TEXT_MAX 512           /* one error text before it is cut into the struct */
#define DEFN_SUGGEST_DISTANCE 2     /* edits at most, for "did you mean" */

_Static_assert(sizeof ((defn_error_t *)0)->path == DEFN_PATH_MAX,
               "an error's path holds any JSON path the loader and jschema build");

/* The state of one load: where errors go and how many were found. errs may be NULL, so
 * the count is kept here. */
typedef struct loader {
    defn_errors_t *errs;
    const char *source;
    size_t errors;
} loader_t;

/* The timeout and retry a command gets when it says nothing itself. */
typedef struct cmd_defaults {
    int64_t timeout_ms;
    defn_retry_t retry;
} cmd_defaults_t;

static const char *const ROOT_FIELDS[] = {"name", "version", "description", "deadline_ms",
                                          "on_compensation_failure", "input", "defaults",
                                          "steps", NULL};
static const char *const DEFAULTS_FIELDS[] = {"timeout_ms", "retry", "compensation", NULL};
static const char *const COMP_DEFAULTS_FIELDS[] = {"timeout_ms", "retry", NULL};
static const char *const RETRY_FIELDS[] = {"max_attempts", "initial_backoff_ms",
                                           "max_backoff_ms", "multiplier", "jitter", NULL};
static const char *const STEP_FIELDS[] = {"name", "topic", "action", "compensation",
                                          "compensate_on_timeout", "retry_on_timeout", NULL};
static const char *const GROUP_FIELDS[] = {"parallel", "name", NULL};
static const char *const COMMAND_FIELDS[] = {"command", "payload", "timeout_ms", "retry",
                                             "topic", NULL};

/* ---------- errors ---------- */

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

void defn_errors_add(defn_errors_t *errs, const char *source, int line, int column,
                     const char *path, const char *fmt, ...)
{
    if (!errs || errs->count >= DEFN_MAX_ERRORS)
        return;
    if (errs->count == errs->capacity) {
        size_t cap = errs->capacity ? 2 * errs->capacity : 8;
        defn_error_t *grown = realloc(errs->items, cap * sizeof *grown);
        if (!grown)
            return; /* the caller still fails the load: it counts errors itself */
        errs->items = grown;
        errs->capacity = cap;
    }
    defn_error_t *e = &errs->items[errs->count++];
    memset(e, 0, sizeof *e);
    copy_field(e->source, sizeof e->source, source);
    if (errs->count == DEFN_MAX_ERRORS) {
        /* The last slot says that the list is cut, so nobody fixes 99 errors and then
         * wonders where the next batch came from. */
        snprintf(e->text, sizeof e->text, "too many errors; only the first %d are shown",
                 DEFN_MAX_ERRORS - 1);
        return;
    }
    e->line = line;
    e->column = column;
    copy_field(e->path, sizeof e->path, path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
}

void defn_error_format(const defn_error_t *e, char *buf, size_t len)
{
    char where[sizeof e->source + 32] = "";
    if (e->source[0] && e->line > 0 && e->column > 0)
        snprintf(where, sizeof where, "%s:%d:%d: ", e->source, e->line, e->column);
    else if (e->source[0] && e->line > 0)
        snprintf(where, sizeof where, "%s:%d: ", e->source, e->line);
    else if (e->source[0])
        snprintf(where, sizeof where, "%s: ", e->source);
    if (e->path[0])
        snprintf(buf, len, "%s%s: %s", where, e->path, e->text);
    else
        snprintf(buf, len, "%s%s", where, e->text);
}

void defn_errors_release(defn_errors_t *errs)
{
    if (!errs)
        return;
    free(errs->items);
    errs->items = NULL;
    errs->count = 0;
    errs->capacity = 0;
}

static void lerr(loader_t *L, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void lerr(loader_t *L, const char *path, const char *fmt, ...)
{
    char text[DEFN_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    L->errors++;
    defn_errors_add(L->errs, L->source, 0, 0, path, "%s", text);
}

/* Receives the errors of the template compiler and of the schema checker (a loader_t as
 * opaque). */
static void on_nested_error(const char *path, const char *text, void *opaque)
{
    lerr(opaque, path, "%s", text);
}

/* ---------- helpers ---------- */

/* The known word closest to word when it is close enough to be a typo, else NULL. */
static const char *closest_name(const char *word, const char *const *known)
{
    return suggest_closest(word, known, SUGGEST_UNTIL_NULL, DEFN_SUGGEST_DISTANCE);
}

static bool in_list(const char *word, const char *const *list)
{
    for (size_t i = 0; list[i]; i++) {
        if (strcmp(word, list[i]) == 0)
            return true;
    }
    return false;
}

/* Reports every member of obj not in known: catches typos that would otherwise silently
 * fall back to a default. */
static void check_fields(loader_t *L, const json_t *obj, const char *path,
                         const char *const *known)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (in_list(key, known))
            continue;
        const char *hint = closest_name(key, known);
        static const char *const COMMAND_ONLY[] = {"timeout_ms", "retry", "command", "payload",
                                                   NULL};
        const char *cmd_hint = closest_name(key, COMMAND_ONLY);
        if (in_list("compensate_on_timeout", known) && (in_list(key, COMMAND_ONLY) || cmd_hint))
            lerr(L, path,
                 "unknown field \"%s\" (\"%s\" belongs inside \"action\" or \"compensation\", "
                 "or in the saga's \"defaults\")",
                 key, in_list(key, COMMAND_ONLY) ? key : cmd_hint);
        else if (hint)
            lerr(L, path, "unknown field \"%s\" (did you mean \"%s\"?)", key, hint);
        else
            lerr(L, path, "unknown field \"%s\"", key);
    }
}

/* The member key of obj; NULL when absent, reported when required. */
static const json_t *member(loader_t *L, const json_t *obj, const char *key, const char *path,
                            bool required)
{
    const json_t *v = json_object_get(obj, key);
    if (!v && required)
        lerr(L, path, "missing required field \"%s\"", key);
    return v;
}

/* Each getter returns 1 when the member is present and valid (out set), 0 when absent,
 * -1 when invalid (reported). */
static int get_string(loader_t *L, const json_t *obj, const char *key, const char *path,
                      bool required, const char **out)
{
    const json_t *v = member(L, obj, key, path, required);
    if (!v)
        return required ? -1 : 0;
    char p[DEFN_PATH_MAX];
    jschema_path_key(p, path, key);
    if (!json_is_string(v)) {
        lerr(L, p, "expected a string, got %s", jschema_type_name(v));
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

static int get_int(loader_t *L, const json_t *obj, const char *key, const char *path,
                   bool required, int64_t min, int64_t max, int64_t *out)
{
    const json_t *v = member(L, obj, key, path, required);
    if (!v)
        return required ? -1 : 0;
    char p[DEFN_PATH_MAX];
    jschema_path_key(p, path, key);
    if (!json_is_integer(v)) {
        lerr(L, p, "expected an integer, got %s", jschema_type_name(v));
        return -1;
    }
    json_int_t n = json_integer_value(v);
    if (n < min) {
        lerr(L, p, "must be at least %" PRId64 ", got %" JSON_INTEGER_FORMAT, min, n);
        return -1;
    }
    if (n > max) {
        lerr(L, p, "must be at most %" PRId64 ", got %" JSON_INTEGER_FORMAT, max, n);
        return -1;
    }
    *out = n;
    return 1;
}

static int get_number(loader_t *L, const json_t *obj, const char *key, const char *path,
                      double min, double max, double *out)
{
    const json_t *v = member(L, obj, key, path, false);
    if (!v)
        return 0;
    char p[DEFN_PATH_MAX];
    jschema_path_key(p, path, key);
    if (!json_is_number(v)) {
        lerr(L, p, "expected a number, got %s", jschema_type_name(v));
        return -1;
    }
    double n = json_number_value(v);
    if (n < min || n > max) {
        if (isinf(max))
            lerr(L, p, "must be at least %g, got %g", min, n);
        else
            lerr(L, p, "must be between %g and %g, got %g", min, max, n);
        return -1;
    }
    *out = n;
    return 1;
}

static int get_bool(loader_t *L, const json_t *obj, const char *key, const char *path,
                    bool *out)
{
    const json_t *v = member(L, obj, key, path, false);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        char p[DEFN_PATH_MAX];
        jschema_path_key(p, path, key);
        lerr(L, p, "expected a boolean, got %s", jschema_type_name(v));
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

/* Names (sagas, commands): 1..DEFN_MAX_NAME_LEN of [A-Za-z0-9._-]; step and group names
 * the same without ".", which separates the parts of a template reference. */
static bool name_ok(const char *s, bool allow_dot, size_t max_len)
{
    size_t n = strlen(s);
    if (n == 0 || n > max_len)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || (allow_dot && ch == '.');
        if (!ok)
            return false;
    }
    return true;
}

static void check_name(loader_t *L, const char *path, const char *what, const char *s)
{
    if (!name_ok(s, true, DEFN_MAX_NAME_LEN))
        lerr(L, path, "invalid %s \"%s\": use 1 to %d of the characters A-Z a-z 0-9 . _ -",
             what, s, DEFN_MAX_NAME_LEN);
}

static void check_step_name(loader_t *L, const char *path, const char *what, const char *s)
{
    if (!name_ok(s, false, DEFN_MAX_NAME_LEN))
        lerr(L, path, "invalid %s \"%s\": use 1 to %d of the characters A-Z a-z 0-9 _ - "
             "(not \".\", which templates use as a separator)", what, s, DEFN_MAX_NAME_LEN);
}

/* Kafka's own rule for topic names. */
static void check_topic(loader_t *L, const char *path, const char *s)
{
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        lerr(L, path, "invalid topic \"%s\": Kafka does not allow \".\" or \"..\"", s);
    else if (!name_ok(s, true, DEFN_MAX_TOPIC_LEN))
        lerr(L, path, "invalid topic \"%s\": use 1 to %d of the characters A-Z a-z 0-9 . _ -",
             s, DEFN_MAX_TOPIC_LEN);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---------- commands and steps ---------- */

static void parse_retry(loader_t *L, const json_t *v, const char *path, defn_retry_t *r)
{
    if (!json_is_object(v)) {
        lerr(L, path, "expected an object, got %s", jschema_type_name(v));
        return;
    }
    check_fields(L, v, path, RETRY_FIELDS);
    int64_t n;
    if (get_int(L, v, "max_attempts", path, false, 1, DEFN_MAX_ATTEMPTS, &n) == 1)
        r->max_attempts = (int)n;
    (void)get_int(L, v, "initial_backoff_ms", path, false, 0, DEFN_MAX_TIMEOUT_MS,
                  &r->initial_backoff_ms);
    (void)get_int(L, v, "max_backoff_ms", path, false, 0, DEFN_MAX_TIMEOUT_MS,
                  &r->max_backoff_ms);
    (void)get_number(L, v, "multiplier", path, 1.0, INFINITY, &r->multiplier);
    (void)get_number(L, v, "jitter", path, 0.0, 1.0, &r->jitter);
    /* Checked on the values in force, so an override of one bound against an inherited
     * other bound is caught too. */
    if (r->max_backoff_ms < r->initial_backoff_ms)
        lerr(L, path, "max_backoff_ms (%" PRId64 ") is less than initial_backoff_ms (%" PRId64
             ")", r->max_backoff_ms, r->initial_backoff_ms);
}

/* Reads timeout_ms and retry of obj (a command or a defaults object) over base. */
static void parse_timing(loader_t *L, const json_t *obj, const char *path, cmd_defaults_t *t)
{
    (void)get_int(L, obj, "timeout_ms", path, false, 1, DEFN_MAX_TIMEOUT_MS, &t->timeout_ms);
    const json_t *retry = json_object_get(obj, "retry");
    if (retry) {
        char p[DEFN_PATH_MAX];
        jschema_path_key(p, path, "retry");
        parse_retry(L, retry, p, &t->retry);
    }
}

static void parse_command(loader_t *L, const json_t *v, const char *path,
                          const cmd_defaults_t *base, const char *step_topic,
                          const template_scope_t *scope, defn_command_t *out)
{
    check_fields(L, v, path, COMMAND_FIELDS);
    const char *s;
    if (get_string(L, v, "command", path, true, &s) == 1) {
        char p[DEFN_PATH_MAX];
        jschema_path_key(p, path, "command");
        check_name(L, p, "command", s);
        out->type = strdup(s);
    }
    const char *topic = step_topic;
    if (get_string(L, v, "topic", path, false, &s) == 1) {
        char p[DEFN_PATH_MAX];
        jschema_path_key(p, path, "topic");
        check_topic(L, p, s);
        topic = s;
    }
    out->topic = dup_or_null(topic);

    cmd_defaults_t t = *base;
    parse_timing(L, v, path, &t);
    out->timeout_ms = t.timeout_ms;
    out->retry = t.retry;

    char p[DEFN_PATH_MAX];
    jschema_path_key(p, path, "payload");
    const json_t *payload = json_object_get(v, "payload");
    if (payload && !json_is_object(payload)) {
        lerr(L, p, "expected an object, got %s", jschema_type_name(payload));
        return;
    }
    out->payload = payload ? json_incref((json_t *)payload) : json_object();
    if (!out->payload) {
        lerr(L, p, "out of memory");
        return;
    }
    out->compiled = template_compile(out->payload, scope, p, on_nested_error, L);
}

/* One element of the flattened step list, before it is parsed. */
typedef struct flat_step {
    const json_t *json;
    char path[DEFN_PATH_MAX];
    int group;
} flat_step_t;

/* Flattens "steps" (plain steps and {"parallel": [...]} groups) into flat, in order, and
 * sets d->group_count and d->group_names. Returns the number of steps, or 0 on error. */
static size_t flatten_steps(loader_t *L, const json_t *steps, definition_t *d,
                            flat_step_t **flat_out)
{
    size_t total = 0;
    for (size_t i = 0; i < json_array_size(steps); i++) {
        const json_t *el = json_array_get(steps, i);
        const json_t *par = json_object_get(el, "parallel");
        total += json_is_array(par) ? json_array_size(par) : 1;
    }
    size_t groups = json_array_size(steps);
    flat_step_t *flat = calloc(total ? total : 1, sizeof *flat);
    d->group_names = calloc(groups ? groups : 1, sizeof *d->group_names);
    if (!flat || !d->group_names) {
        free(flat);
        lerr(L, "steps", "out of memory");
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < groups; i++) {
        const json_t *el = json_array_get(steps, i);
        char p[DEFN_PATH_MAX];
        jschema_path_index(p, "steps", i);
        if (!json_is_object(el)) {
            lerr(L, p, "expected an object (a step or {\"parallel\": [...]}), got %s",
                 jschema_type_name(el));
            continue;
        }
        const json_t *par = json_object_get(el, "parallel");
        if (!par) {
            flat[n].json = el;
            snprintf(flat[n].path, sizeof flat[n].path, "%s", p);
            flat[n++].group = d->group_count;
            d->group_count++;
            continue;
        }
        check_fields(L, el, p, GROUP_FIELDS);
        const char *name;
        if (get_string(L, el, "name", p, false, &name) == 1) {
            char np[DEFN_PATH_MAX];
            jschema_path_key(np, p, "name");
            check_step_name(L, np, "group name", name);
            d->group_names[d->group_count] = strdup(name);
        }
        char pp[DEFN_PATH_MAX];
        jschema_path_key(pp, p, "parallel");
        if (!json_is_array(par) || json_array_size(par) == 0) {
            lerr(L, pp, "expected a non-empty array of steps, got %s",
                 json_is_array(par) ? "an empty array" : jschema_type_name(par));
            d->group_count++;
            continue;
        }
        for (size_t j = 0; j < json_array_size(par); j++) {
            const json_t *st = json_array_get(par, j);
            char sp[DEFN_PATH_MAX];
            jschema_path_index(sp, pp, j);
            if (!json_is_object(st)) {
                lerr(L, sp, "expected an object (a step), got %s", jschema_type_name(st));
                continue;
            }
            if (json_object_get(st, "parallel")) {
                lerr(L, sp, "parallel groups cannot be nested");
                continue;
            }
            flat[n].json = st;
            snprintf(flat[n].path, sizeof flat[n].path, "%s", sp);
            flat[n++].group = d->group_count;
        }
        d->group_count++;
    }
    *flat_out = flat;
    return n;
}

static void parse_steps(loader_t *L, const json_t *root, definition_t *d,
                        const cmd_defaults_t *action_base, const cmd_defaults_t *comp_base)
{
    const json_t *steps = member(L, root, "steps", "", true);
    if (!steps)
        return;
    if (!json_is_array(steps)) {
        lerr(L, "steps", "expected an array, got %s", jschema_type_name(steps));
        return;
    }
    if (json_array_size(steps) == 0) {
        lerr(L, "steps", "expected at least one step");
        return;
    }
    flat_step_t *flat = NULL;
    size_t n = flatten_steps(L, steps, d, &flat);
    if (!flat)
        return;
    if (n > DEFN_MAX_STEPS) {
        /* Stop here: checking each of them (names pairwise, every template) is quadratic,
         * and a 1 MiB file holds ~60000 tiny steps, seconds of work for one load. */
        lerr(L, "steps", "too many steps: %zu (at most %d)", n, DEFN_MAX_STEPS);
        free(flat);
        return;
    }
    d->steps = calloc(n ? n : 1, sizeof *d->steps);
    const char **names = calloc(n ? n : 1, sizeof *names);
    int *groups = calloc(n ? n : 1, sizeof *groups);
    if (!d->steps || !names || !groups) {
        lerr(L, "steps", "out of memory");
        goto done;
    }
    d->step_count = n;

    /* First the names, so that templates of any step can be checked against all. */
    for (size_t i = 0; i < n; i++) {
        defn_step_t *st = &d->steps[i];
        const json_t *sj = flat[i].json;
        const char *path = flat[i].path;
        st->group = flat[i].group;
        groups[i] = st->group;
        check_fields(L, sj, path, STEP_FIELDS);
        const char *s;
        char p[DEFN_PATH_MAX];
        if (get_string(L, sj, "name", path, true, &s) == 1) {
            jschema_path_key(p, path, "name");
            check_step_name(L, p, "step name", s);
            for (size_t j = 0; j < i; j++) {
                if (names[j] && strcmp(names[j], s) == 0) {
                    lerr(L, p, "duplicate step name \"%s\" (also %s.name)", s, flat[j].path);
                    break;
                }
            }
            st->name = strdup(s);
            names[i] = st->name;
        }
        if (get_string(L, sj, "topic", path, true, &s) == 1) {
            jschema_path_key(p, path, "topic");
            check_topic(L, p, s);
            st->topic = strdup(s);
        }
        st->compensate_on_timeout = true;
        (void)get_bool(L, sj, "compensate_on_timeout", path, &st->compensate_on_timeout);
        (void)get_bool(L, sj, "retry_on_timeout", path, &st->retry_on_timeout);
    }

    for (size_t i = 0; i < n; i++) {
        defn_step_t *st = &d->steps[i];
        const json_t *sj = flat[i].json;
        const char *path = flat[i].path;
        char p[DEFN_PATH_MAX];
        template_scope_t scope = {.step_names = names,
                                  .step_groups = groups,
                                  .step_count = n,
                                  .step = (int)i,
                                  .own_output = false,
                                  .input_schema = d->input_schema,
                                  .max_refs = DEFN_MAX_TEMPLATE_REFS,
                                  .max_depth = DEFN_MAX_DEPTH};
        const json_t *action = member(L, sj, "action", path, true);
        jschema_path_key(p, path, "action");
        if (action && !json_is_object(action))
            lerr(L, p, "expected an object, got %s", jschema_type_name(action));
        else if (action)
            parse_command(L, action, p, action_base, st->topic, &scope, &st->action);

        const json_t *comp = json_object_get(sj, "compensation");
        jschema_path_key(p, path, "compensation");
        if (!comp) {
            lerr(L, path, "missing required field \"compensation\" (expected an object or "
                 "\"none\")");
        } else if (json_is_string(comp) && strcmp(json_string_value(comp), "none") == 0) {
            st->has_compensation = false;
        } else if (json_is_string(comp)) {
            lerr(L, p, "expected an object or \"none\", got \"%s\"", json_string_value(comp));
        } else if (!json_is_object(comp)) {
            lerr(L, p, "expected an object or \"none\", got %s", jschema_type_name(comp));
        } else {
            st->has_compensation = true;
            scope.own_output = true;
            parse_command(L, comp, p, comp_base, st->topic, &scope, &st->compensation);
        }
    }
done:
    free(names);
    free(groups);
    free(flat);
}

/* ---------- a whole definition ---------- */

static void parse_defaults(loader_t *L, const json_t *root, cmd_defaults_t *action,
                           cmd_defaults_t *comp)
{
    const json_t *def = json_object_get(root, "defaults");
    if (!def)
        return;
    if (!json_is_object(def)) {
        lerr(L, "defaults", "expected an object, got %s", jschema_type_name(def));
        return;
    }
    check_fields(L, def, "defaults", DEFAULTS_FIELDS);
    parse_timing(L, def, "defaults", action);
    const json_t *cd = json_object_get(def, "compensation");
    if (!cd)
        return;
    if (!json_is_object(cd)) {
        lerr(L, "defaults.compensation", "expected an object, got %s", jschema_type_name(cd));
        return;
    }
    check_fields(L, cd, "defaults.compensation", COMP_DEFAULTS_FIELDS);
    parse_timing(L, cd, "defaults.compensation", comp);
}

static void parse_root(loader_t *L, const json_t *root, definition_t *d)
{
    check_fields(L, root, "", ROOT_FIELDS);
    const char *s;
    if (get_string(L, root, "name", "", true, &s) == 1) {
        check_name(L, "name", "name", s);
        d->name = strdup(s);
    }
    int64_t n;
    if (get_int(L, root, "version", "", true, 1, INT_MAX, &n) == 1)
        d->version = (int)n;
    if (get_string(L, root, "description", "", false, &s) == 1)
        d->description = strdup(s);
    (void)get_int(L, root, "deadline_ms", "", false, 1, DEFN_MAX_TIMEOUT_MS, &d->deadline_ms);
    if (get_string(L, root, "on_compensation_failure", "", false, &s) == 1) {
        if (strcmp(s, "stop") == 0)
            d->on_compensation_failure = DEFN_ON_COMP_FAILURE_STOP;
        else if (strcmp(s, "continue") == 0)
            d->on_compensation_failure = DEFN_ON_COMP_FAILURE_CONTINUE;
        else
            lerr(L, "on_compensation_failure", "expected \"stop\" or \"continue\", got \"%s\"",
                 s);
    }

    const json_t *input = json_object_get(root, "input");
    if (input) {
        size_t before = L->errors;
        (void)jschema_check(input, "input", DEFN_MAX_DEPTH, on_nested_error, L);
        const char *type = json_string_value(json_object_get(input, "type"));
        if (type && strcmp(type, "object") != 0)
            lerr(L, "input.type", "the input is always an object: expected \"object\", got "
                 "\"%s\"", type);
        /* Templates are checked against the schema only when it is sound. */
        if (L->errors == before)
            d->input_schema = json_incref((json_t *)input);
    }

    cmd_defaults_t action = {DEFN_DEFAULT_TIMEOUT_MS,
                             {DEFN_DEFAULT_MAX_ATTEMPTS, DEFN_DEFAULT_INITIAL_BACKOFF_MS,
                              DEFN_DEFAULT_MAX_BACKOFF_MS, DEFN_DEFAULT_MULTIPLIER,
                              DEFN_DEFAULT_JITTER}};
    cmd_defaults_t comp = action;
    comp.retry.max_attempts = DEFN_DEFAULT_COMP_MAX_ATTEMPTS;
    parse_defaults(L, root, &action, &comp);
    parse_steps(L, root, d, &action, &comp);
}

static int set_content_hash(definition_t *d)
{
    /* Compact and key-sorted, so re-indenting or reordering a file keeps its hash. */
    char *canon = json_dumps(d->json, JSON_COMPACT | JSON_SORT_KEYS);
    d->content_hash = malloc(SHA256_HEX_LEN + 1);
    if (!canon || !d->content_hash) {
        free(canon);
        return -1;
    }
    sha256_hex(canon, strlen(canon), d->content_hash);
    free(canon);
    return 0;
}

definition_t *definition_load_string(const char *text, size_t len, const char *source,
                                     defn_errors_t *errs)
{
    loader_t L = {errs, source ? source : "", 0};
    if (len > DEFN_MAX_FILE_BYTES) {
        lerr(&L, NULL, "file is larger than %d bytes", DEFN_MAX_FILE_BYTES);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        defn_errors_add(errs, L.source, jerr.line, jerr.column, NULL, "invalid JSON: %s",
                        jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        lerr(&L, NULL, "expected an object at the top, got %s", jschema_type_name(root));
        json_decref(root);
        return NULL;
    }
    /* "$schema" names the JSON Schema an editor checks the file with: accepted (a
     * string) and dropped, so that it is not part of the definition's content: adding it
     * to a file leaves the content hash, and the version, unchanged. */
    const json_t *schema_uri = json_object_get(root, DEFN_SCHEMA_KEY);
    if (schema_uri && !json_is_string(schema_uri))
        lerr(&L, DEFN_SCHEMA_KEY, "expected a string (the URI of the definition schema), got %s",
             jschema_type_name(schema_uri));
    (void)json_object_del(root, DEFN_SCHEMA_KEY);
    definition_t *d = calloc(1, sizeof *d);
    if (!d) {
        lerr(&L, NULL, "out of memory");
        json_decref(root);
        return NULL;
    }
    d->json = root;
    d->source = strdup(L.source);
    parse_root(&L, root, d);
    if (L.errors == 0 && (!d->source || set_content_hash(d) < 0))
        lerr(&L, NULL, "out of memory");
    if (L.errors) {
        definition_free(d);
        return NULL;
    }
    return d;
}

definition_t *definition_load_file(const char *path, defn_errors_t *errs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        defn_errors_add(errs, path, 0, 0, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        defn_errors_add(errs, path, 0, 0, NULL, "not a regular file");
        fclose(f);
        return NULL;
    }
    if (st.st_size > DEFN_MAX_FILE_BYTES) {
        defn_errors_add(errs, path, 0, 0, NULL, "file is larger than %d bytes",
                        DEFN_MAX_FILE_BYTES);
        fclose(f);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    size_t got = buf ? fread(buf, 1, size, f) : 0;
    int failed = !buf || ferror(f);
    fclose(f);
    if (failed) {
        defn_errors_add(errs, path, 0, 0, NULL, "cannot read: %s",
                        buf ? strerror(errno) : "out of memory");
        free(buf);
        return NULL;
    }
    definition_t *d = definition_load_string(buf, got, path, errs);
    free(buf);
    return d;
}

static void command_release(defn_command_t *c)
{
    free(c->type);
    json_decref(c->payload);
    free(c->topic);
    template_free(c->compiled);
}

void definition_free(definition_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->step_count; i++) {
        defn_step_t *st = &d->steps[i];
        free(st->name);
        free(st->topic);
        command_release(&st->action);
        command_release(&st->compensation);
    }
    free(d->steps);
    if (d->group_names) {
        for (int i = 0; i < d->group_count; i++)
            free(d->group_names[i]);
        free(d->group_names);
    }
    free(d->name);
    free(d->description);
    json_decref(d->input_schema);
    free(d->source);
    free(d->content_hash);
    json_decref(d->json);
    free(d);
}

int definition_step_index(const definition_t *d, const char *name)
{
    for (size_t i = 0; d && name && i < d->step_count; i++) {
        if (strcmp(d->steps[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

/* ---------- checking an input at run time ---------- */

int definition_check_input(const definition_t *d, const json_t *input, char *why,
                           size_t why_len)
{
    if (!input || !json_is_object(input)) {
        if (why && why_len && !input)
            snprintf(why, why_len, "input: missing");
        else if (why && why_len)
            snprintf(why, why_len, "input: expected an object, got %s",
                     jschema_type_name(input));
        return -1;
    }
    if (!d || !d->input_schema)
        return 0;
    return jschema_validate(d->input_schema, input, "input", why, why_len);
}
