/* template.c - compiles payload templates into a tree of constant and reference nodes,
 * and renders them (see template.h; the language is in docs/definitions.md). */
#include "template.h"

#include "suggest.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEMPLATE_PATH_MAX 256     /* JSON paths in errors are cut here */
#define TEMPLATE_TEXT_MAX 512     /* one error message */
#define TEMPLATE_INDEX_DIGITS 9   /* [N]: keeps N within an int without overflow checks */
#define TEMPLATE_SUGGEST_DISTANCE 2 /* edits at most, for "did you mean" */

typedef enum { REF_SAGA_ID, REF_SAGA_NAME, REF_INPUT, REF_STEP } ref_root_t;

/* One step of a path: a key, or an array index when key is NULL. */
typedef struct ref_seg {
    char *key;
    size_t index;
} ref_seg_t;

typedef struct ref {
    ref_root_t root;
    char *step;          /* REF_STEP: the step's name */
    int step_index;      /* REF_STEP: index in the scope, -1 without one */
    ref_seg_t *segs;     /* below input or steps.NAME.output */
    size_t seg_count;
    char *text;          /* the reference as written, braces, blanks and "?" trimmed */
    bool optional;       /* written with a trailing "?": a missing value renders as null
                          * (alone in a string) or as nothing (inside text) */
} ref_t;

/* A piece of an interpolated string: literal text, or a reference when ref is set. */
typedef struct part {
    char *lit;
    size_t lit_len;
    ref_t *ref;
} part_t;

typedef enum { NODE_CONST, NODE_REF, NODE_TEXT, NODE_OBJECT, NODE_ARRAY } node_kind_t;

/* A template is compiled into these: every subtree without references folds into one
 * NODE_CONST, so rendering a mostly constant payload is one deep copy. */
typedef struct node {
    node_kind_t kind;
    json_t *value;            /* NODE_CONST */
    ref_t *ref;               /* NODE_REF: the string was exactly one reference */
    part_t *parts;            /* NODE_TEXT */
    size_t part_count;
    char **keys;              /* NODE_OBJECT: child_count keys */
    struct node **children;   /* NODE_OBJECT, NODE_ARRAY */
    size_t child_count;
} node_t;

struct template {
    node_t *root;
    ref_t **refs;             /* every reference, borrowed from the nodes */
    size_t ref_count;
    size_t ref_capacity;
};

typedef struct compiler {
    const template_scope_t *scope;
    template_error_fn on_error;
    void *opaque;
    template_t *t;
    int errors;
    bool refs_reported;       /* each limit is reported once, not per value */
    bool depth_reported;
    char path[TEMPLATE_PATH_MAX];
    size_t path_len;
} compiler_t;

/* ---------- small helpers ---------- */

static char *dup_n(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

static void set_why(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t why_len, const char *fmt, ...)
{
    if (!why || why_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

/* The candidate closest to word, when close enough to be a likely typo, else NULL. */
static const char *closest_name(const char *word, const char *const *names, size_t n)
{
    return suggest_closest(word, names, n, TEMPLATE_SUGGEST_DISTANCE);
}

static void compile_error(compiler_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void compile_error(compiler_t *c, const char *fmt, ...)
{
    char text[TEMPLATE_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    c->errors++;
    if (c->on_error)
        c->on_error(c->path, text, c->opaque);
}

/* Appends ".key" (or "key" at the start) or "[i]" to the path; returns the old length
 * for path_pop. */
static size_t path_push_key(compiler_t *c, const char *key)
{
    size_t old = c->path_len;
    int n = snprintf(c->path + old, sizeof c->path - old, "%s%s", old ? "." : "", key);
    c->path_len = (n < 0 || old + (size_t)n >= sizeof c->path) ? sizeof c->path - 1
                                                                : old + (size_t)n;
    return old;
}

static size_t path_push_index(compiler_t *c, size_t i)
{
    size_t old = c->path_len;
    int n = snprintf(c->path + old, sizeof c->path - old, "[%zu]", i);
    c->path_len = (n < 0 || old + (size_t)n >= sizeof c->path) ? sizeof c->path - 1
                                                                : old + (size_t)n;
    return old;
}

static void path_pop(compiler_t *c, size_t old)
{
    c->path_len = old;
    c->path[old] = '\0';
}

/* ---------- freeing ---------- */

static void ref_free(ref_t *r)
{
    if (!r)
        return;
    free(r->step);
    for (size_t i = 0; i < r->seg_count; i++)
        free(r->segs[i].key);
    free(r->segs);
    free(r->text);
    free(r);
}

static void node_free(node_t *n)
{
    if (!n)
        return;
    json_decref(n->value);
    ref_free(n->ref);
    for (size_t i = 0; i < n->part_count; i++) {
        free(n->parts[i].lit);
        ref_free(n->parts[i].ref);
    }
    free(n->parts);
    for (size_t i = 0; i < n->child_count; i++) {
        if (n->keys)
            free(n->keys[i]);
        node_free(n->children[i]);
    }
    free(n->keys);
    free(n->children);
    free(n);
}

void template_free(template_t *t)
{
    if (!t)
        return;
    node_free(t->root);
    free(t->refs);
    free(t);
}

/* ---------- parsing one reference ---------- */

static bool is_name_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_' || ch == '-';
}

static size_t scan_name(const char *s, size_t pos, size_t len)
{
    size_t end = pos;
    while (end < len && is_name_char(s[end]))
        end++;
    return end - pos;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Parses the path after input or steps.NAME.output into r->segs. Returns 0, or -1 with
 * the detail of what is malformed in detail. */
static int parse_path(const char *s, size_t pos, size_t len, ref_t *r, char *detail,
                      size_t detail_len)
{
    while (pos < len) {
        ref_seg_t seg = {NULL, 0};
        if (s[pos] == '.') {
            size_t n = scan_name(s, pos + 1, len);
            if (n == 0) {
                set_why(detail, detail_len, "expected a key after \".\"");
                return -1;
            }
            seg.key = dup_n(s + pos + 1, n);
            if (!seg.key) {
                set_why(detail, detail_len, "out of memory");
                return -1;
            }
            pos += 1 + n;
        } else if (s[pos] == '[') {
            size_t digits = 0;
            size_t value = 0;
            pos++;
            while (pos < len && isdigit((unsigned char)s[pos]) &&
                   digits < TEMPLATE_INDEX_DIGITS) {
                value = value * 10 + (size_t)(s[pos] - '0');
                pos++;
                digits++;
            }
            if (digits == 0) {
                set_why(detail, detail_len, "expected an index after \"[\"");
                return -1;
            }
            if (pos >= len || s[pos] != ']') {
                set_why(detail, detail_len, "expected \"]\" after the index");
                return -1;
            }
            pos++;
            seg.index = value;
        } else {
            set_why(detail, detail_len, "unexpected \"%c\" (expected \".\" or \"[\")", s[pos]);
            return -1;
        }
        ref_seg_t *grown = realloc(r->segs, (r->seg_count + 1) * sizeof *grown);
        if (!grown) {
            free(seg.key);
            set_why(detail, detail_len, "out of memory");
            return -1;
        }
        r->segs = grown;
        r->segs[r->seg_count++] = seg;
    }
    return 0;
}

/* Checks an input reference against the input schema: while the schema declares the
 * properties of an object, a key must be one of them, unless additionalProperties is
 * true. Returns 0 or -1 (error reported). */
static int check_input_ref(compiler_t *c, const ref_t *r, const json_t *schema)
{
    for (size_t i = 0; i < r->seg_count && json_is_object(schema); i++) {
        const ref_seg_t *seg = &r->segs[i];
        const char *type = json_string_value(json_object_get(schema, "type"));
        if (seg->key) {
            if (type && strcmp(type, "object") != 0) {
                compile_error(c, "a key of a value declared as %s in {{%s}}", type, r->text);
                return -1;
            }
            const json_t *props = json_object_get(schema, "properties");
            if (!json_is_object(props) || json_object_size(props) == 0)
                return 0;
            const json_t *sub = json_object_get(props, seg->key);
            if (!sub) {
                if (json_is_true(json_object_get(schema, "additionalProperties")))
                    return 0;
                const char *names[TEMPLATE_PATH_MAX];
                size_t n = 0;
                const char *k;
                const json_t *v;
                json_object_foreach((json_t *)props, k, v)
                {
                    if (n < TEMPLATE_PATH_MAX)
                        names[n++] = k;
                }
                const char *hint = closest_name(seg->key, names, n);
                if (hint)
                    compile_error(c, "unknown input property \"%s\" in {{%s}} (did you mean "
                                  "\"%s\"?)", seg->key, r->text, hint);
                else
                    compile_error(c, "unknown input property \"%s\" in {{%s}} (the input "
                                  "schema does not declare it)", seg->key, r->text);
                return -1;
            }
            schema = sub;
        } else {
            if (type && strcmp(type, "array") != 0) {
                compile_error(c, "an index into a value declared as %s in {{%s}}", type,
                              r->text);
                return -1;
            }
            schema = json_object_get(schema, "items");
        }
    }
    return 0;
}

/* Resolves a step reference against the scope: it must name a step that has finished
 * when the payload is rendered. Returns 0 or -1 (error reported). */
static int check_step_ref(compiler_t *c, ref_t *r)
{
    const template_scope_t *sc = c->scope;
    if (!sc) {
        r->step_index = -1;
        return 0;
    }
    for (size_t i = 0; i < sc->step_count; i++) {
        if (!sc->step_names[i] || strcmp(sc->step_names[i], r->step) != 0)
            continue;
        int s = (int)i;
        r->step_index = s;
        if (s == sc->step) {
            if (sc->own_output)
                return 0;
            compile_error(c, "the step's own output in its action in {{%s}} (only its "
                          "compensation may use it)", r->text);
            return -1;
        }
        if (sc->step >= 0 && (size_t)sc->step < sc->step_count) {
            int own_group = sc->step_groups[sc->step];
            if (sc->step_groups[s] == own_group) {
                compile_error(c, "step \"%s\" of the same parallel group in {{%s}} (steps "
                              "of one group run at once)", r->step, r->text);
                return -1;
            }
            if (sc->step_groups[s] > own_group) {
                compile_error(c, "later step \"%s\" in {{%s}} (a payload may only use steps "
                              "that run before it)", r->step, r->text);
                return -1;
            }
        }
        return 0;
    }
    const char *hint = closest_name(r->step, sc->step_names, sc->step_count);
    if (hint)
        compile_error(c, "unknown step \"%s\" in {{%s}} (did you mean \"%s\"?)", r->step,
                      r->text, hint);
    else
        compile_error(c, "unknown step \"%s\" in {{%s}}", r->step, r->text);
    return -1;
}

/* Parses the text between "{{" and "}}". Returns the reference, or NULL (error
 * reported). */
static ref_t *parse_ref(compiler_t *c, const char *body, size_t len)
{
    while (len > 0 && is_blank(*body)) {
        body++;
        len--;
    }
    while (len > 0 && is_blank(body[len - 1]))
        len--;
    bool optional = false;
    if (len > 0 && body[len - 1] == '?') {
        optional = true;
        len--;
        while (len > 0 && is_blank(body[len - 1]))
            len--;
    }
    if (len == 0) {
        compile_error(c, "empty reference \"{{}}\"");
        return NULL;
    }
    ref_t *r = calloc(1, sizeof *r);
    if (!r || !(r->text = dup_n(body, len))) {
        free(r);
        compile_error(c, "out of memory");
        return NULL;
    }
    r->optional = optional;
    const char *s = r->text;
    char detail[TEMPLATE_TEXT_MAX] = "";
    size_t root_len = scan_name(s, 0, len);
    size_t pos = root_len;
    if (root_len == 0) {
        set_why(detail, sizeof detail, "expected saga, input or steps");
        goto malformed;
    }
    if (root_len == 4 && memcmp(s, "saga", 4) == 0) {
        if (strcmp(s, "saga.id") == 0) {
            r->root = REF_SAGA_ID;
        } else if (strcmp(s, "saga.name") == 0) {
            r->root = REF_SAGA_NAME;
        } else {
            compile_error(c, "unknown reference {{%s}} (expected saga.id or saga.name)", s);
            goto err;
        }
        return r;
    }
    if (root_len == 5 && memcmp(s, "input", 5) == 0) {
        r->root = REF_INPUT;
        if (parse_path(s, pos, len, r, detail, sizeof detail) < 0)
            goto malformed;
        if (c->scope && c->scope->input_schema &&
            check_input_ref(c, r, c->scope->input_schema) < 0)
            goto err;
        return r;
    }
    if (root_len == 5 && memcmp(s, "steps", 5) == 0) {
        r->root = REF_STEP;
        size_t n = (pos < len && s[pos] == '.') ? scan_name(s, pos + 1, len) : 0;
        if (n == 0) {
            set_why(detail, sizeof detail, "expected steps.NAME.output");
            goto malformed;
        }
        r->step = dup_n(s + pos + 1, n);
        if (!r->step) {
            compile_error(c, "out of memory");
            goto err;
        }
        pos += 1 + n;
        if (len - pos < 7 || memcmp(s + pos, ".output", 7) != 0 ||
            (pos + 7 < len && is_name_char(s[pos + 7]))) {
            set_why(detail, sizeof detail, "expected \".output\" after the step name");
            goto malformed;
        }
        pos += 7;
        if (parse_path(s, pos, len, r, detail, sizeof detail) < 0)
            goto malformed;
        if (check_step_ref(c, r) < 0)
            goto err;
        return r;
    }
    compile_error(c, "unknown root \"%.*s\" in {{%s}} (expected saga, input or steps)",
                  (int)root_len, s, s);
    goto err;

malformed:
    compile_error(c, "malformed reference {{%s}}: %s", s, detail);
err:
    ref_free(r);
    return NULL;
}

/* ---------- compiling ---------- */

static int remember_ref(compiler_t *c, ref_t *r)
{
    template_t *t = c->t;
    if (c->scope && c->scope->max_refs && t->ref_count >= c->scope->max_refs) {
        if (!c->refs_reported)
            compile_error(c, "more than %zu template references in one payload",
                          c->scope->max_refs);
        c->refs_reported = true;
        return -1;
    }
    if (t->ref_count == t->ref_capacity) {
        size_t cap = t->ref_capacity ? 2 * t->ref_capacity : 8;
        ref_t **grown = realloc(t->refs, cap * sizeof *grown);
        if (!grown) {
            compile_error(c, "out of memory");
            return -1;
        }
        t->refs = grown;
        t->ref_capacity = cap;
    }
    t->refs[t->ref_count++] = r;
    return 0;
}

/* Appends a literal piece to parts (merging with a preceding literal). */
static int parts_add_lit(part_t **parts, size_t *n, const char *s, size_t len)
{
    if (len == 0)
        return 0;
    if (*n > 0 && !(*parts)[*n - 1].ref) {
        part_t *last = &(*parts)[*n - 1];
        char *grown = realloc(last->lit, last->lit_len + len + 1);
        if (!grown)
            return -1;
        memcpy(grown + last->lit_len, s, len);
        last->lit_len += len;
        grown[last->lit_len] = '\0';
        last->lit = grown;
        return 0;
    }
    part_t *grown = realloc(*parts, (*n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    *parts = grown;
    grown[*n] = (part_t){dup_n(s, len), len, NULL};
    if (!grown[*n].lit)
        return -1;
    (*n)++;
    return 0;
}

static int parts_add_ref(part_t **parts, size_t *n, ref_t *r)
{
    part_t *grown = realloc(*parts, (*n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    *parts = grown;
    grown[(*n)++] = (part_t){NULL, 0, r};
    return 0;
}

static void parts_free(part_t *parts, size_t count)
{
    for (size_t k = 0; k < count; k++) {
        free(parts[k].lit);
        ref_free(parts[k].ref);
    }
    free(parts);
}

static node_t *node_new(node_kind_t kind)
{
    node_t *n = calloc(1, sizeof *n);
    if (n)
        n->kind = kind;
    return n;
}

static node_t *compile_string(compiler_t *c, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (!memchr(s, '{', len) || !strstr(s, "{{")) {
        node_t *n = node_new(NODE_CONST);
        if (n && !(n->value = json_deep_copy(v))) {
            free(n);
            n = NULL;
        }
        if (!n)
            compile_error(c, "out of memory");
        return n;
    }
    part_t *parts = NULL;
    size_t count = 0;
    size_t i = 0, lit_start = 0;
    bool failed = false;
    while (i < len) {
        if (!(s[i] == '{' && i + 1 < len && s[i + 1] == '{')) {
            i++;
            continue;
        }
        if (parts_add_lit(&parts, &count, s + lit_start, i - lit_start) < 0)
            goto oom;
        if (i + 3 < len && s[i + 2] == '{' && s[i + 3] == '{') {
            /* "{{{{" is the escape for a literal "{{". */
            if (parts_add_lit(&parts, &count, "{{", 2) < 0)
                goto oom;
            i += 4;
            lit_start = i;
            continue;
        }
        const char *close = NULL;
        for (size_t j = i + 2; j + 1 < len; j++) {
            if (s[j] == '}' && s[j + 1] == '}') {
                close = s + j;
                break;
            }
        }
        if (!close) {
            compile_error(c, "unterminated \"{{\" (no matching \"}}\")");
            failed = true;
            break;
        }
        ref_t *r = parse_ref(c, s + i + 2, (size_t)(close - (s + i + 2)));
        if (!r || remember_ref(c, r) < 0) {
            ref_free(r);
            failed = true;
        } else if (parts_add_ref(&parts, &count, r) < 0) {
            c->t->ref_count--; /* forget it again: it is freed below */
            ref_free(r);
            goto oom;
        }
        i = (size_t)(close - s) + 2;
        lit_start = i;
    }
    if (failed) {
        parts_free(parts, count);
        return NULL;
    }
    if (parts_add_lit(&parts, &count, s + lit_start, len - lit_start) < 0)
        goto oom;

    node_t *n = node_new(NODE_TEXT);
    if (!n)
        goto oom;
    if (count == 1 && parts[0].ref) {
        n->kind = NODE_REF;
        n->ref = parts[0].ref;
        free(parts);
        return n;
    }
    if (count == 1) {
        /* Only escapes and text: a constant after all. */
        n->kind = NODE_CONST;
        n->value = json_stringn(parts[0].lit, parts[0].lit_len);
        parts_free(parts, count);
        if (!n->value) {
            free(n);
            compile_error(c, "out of memory");
            return NULL;
        }
        return n;
    }
    n->parts = parts;
    n->part_count = count;
    return n;

oom:
    /* The refs in parts are also listed in c->t->refs; the compile fails as a whole, so
     * that list is freed without being read again. */
    compile_error(c, "out of memory");
    parts_free(parts, count);
    return NULL;
}

static node_t *compile_value(compiler_t *c, const json_t *v, int depth);

/* Folds a container whose children are all constant into one constant. */
static void fold_constant(node_t *n, json_t *container)
{
    for (size_t i = 0; i < n->child_count; i++) {
        if (n->children[i]->kind != NODE_CONST) {
            json_decref(container);
            return;
        }
    }
    if (!container)
        return;
    for (size_t i = 0; i < n->child_count; i++) {
        int rc = n->kind == NODE_OBJECT
                     ? json_object_set(container, n->keys[i], n->children[i]->value)
                     : json_array_append(container, n->children[i]->value);
        if (rc < 0) {
            json_decref(container);
            return; /* stays a container node: correct, only slower */
        }
    }
    for (size_t i = 0; i < n->child_count; i++) {
        if (n->keys)
            free(n->keys[i]);
        node_free(n->children[i]);
    }
    free(n->keys);
    free(n->children);
    n->keys = NULL;
    n->children = NULL;
    n->child_count = 0;
    n->kind = NODE_CONST;
    n->value = container;
}

static node_t *compile_container(compiler_t *c, const json_t *v, int depth)
{
    bool is_object = json_is_object(v);
    size_t size = is_object ? json_object_size(v) : json_array_size(v);
    node_t *n = node_new(is_object ? NODE_OBJECT : NODE_ARRAY);
    if (!n)
        goto oom;
    if (size) {
        n->children = calloc(size, sizeof *n->children);
        if (!n->children || (is_object && !(n->keys = calloc(size, sizeof *n->keys))))
            goto oom;
    }
    bool failed = false;
    if (is_object) {
        const char *key;
        const json_t *child;
        json_object_foreach((json_t *)v, key, child)
        {
            size_t old = path_push_key(c, key);
            if (strstr(key, "{{")) {
                compile_error(c, "templates are not allowed in object keys");
                failed = true;
            }
            node_t *cn = compile_value(c, child, depth + 1);
            path_pop(c, old);
            char *kcopy = strdup(key);
            if (!cn || !kcopy) {
                if (cn && !kcopy)
                    compile_error(c, "out of memory");
                node_free(cn);
                free(kcopy);
                failed = true;
                continue;
            }
            n->keys[n->child_count] = kcopy;
            n->children[n->child_count++] = cn;
        }
    } else {
        for (size_t i = 0; i < size; i++) {
            size_t old = path_push_index(c, i);
            node_t *cn = compile_value(c, json_array_get(v, i), depth + 1);
            path_pop(c, old);
            if (!cn) {
                failed = true;
                continue;
            }
            n->children[n->child_count++] = cn;
        }
    }
    if (failed) {
        node_free(n);
        return NULL;
    }
    fold_constant(n, is_object ? json_object() : json_array());
    return n;

oom:
    node_free(n);
    compile_error(c, "out of memory");
    return NULL;
}

static node_t *compile_value(compiler_t *c, const json_t *v, int depth)
{
    if (json_is_string(v))
        return compile_string(c, v);
    if (json_is_object(v) || json_is_array(v)) {
        if (c->scope && c->scope->max_depth && depth > c->scope->max_depth) {
            if (!c->depth_reported)
                compile_error(c, "nested deeper than %d levels", c->scope->max_depth);
            c->depth_reported = true;
            return NULL;
        }
        return compile_container(c, v, depth);
    }
    node_t *n = node_new(NODE_CONST);
    if (n && !(n->value = json_deep_copy(v))) {
        free(n);
        n = NULL;
    }
    if (!n)
        compile_error(c, "out of memory");
    return n;
}

template_t *template_compile(const json_t *tmpl, const template_scope_t *scope,
                             const char *path, template_error_fn on_error, void *opaque)
{
    compiler_t c = {.scope = scope, .on_error = on_error, .opaque = opaque};
    snprintf(c.path, sizeof c.path, "%s", path ? path : "");
    c.path_len = strlen(c.path);
    c.t = calloc(1, sizeof *c.t);
    if (!c.t) {
        compile_error(&c, "out of memory");
        return NULL;
    }
    if (!tmpl) {
        compile_error(&c, "no template");
        template_free(c.t);
        return NULL;
    }
    c.t->root = compile_value(&c, tmpl, 1);
    if (!c.t->root || c.errors) {
        template_free(c.t);
        return NULL;
    }
    return c.t;
}

size_t template_ref_count(const template_t *t)
{
    return t ? t->ref_count : 0;
}

bool template_references_step(const template_t *t, int step_index)
{
    for (size_t i = 0; t && i < t->ref_count; i++) {
        if (t->refs[i]->root == REF_STEP && t->refs[i]->step_index == step_index)
            return true;
    }
    return false;
}

/* The value at seg in cur (an object or array, per seg), made when missing: the next
 * container, or at the end the stand-in text. NULL on a type clash or out of memory. */
static json_t *sample_at(json_t *cur, const ref_seg_t *seg, const ref_seg_t *next,
                         const char *stand_in)
{
    json_t *have = seg->key ? json_object_get(cur, seg->key)
                            : json_array_get(cur, seg->index);
    if (have && !json_is_null(have))
        return have;
    json_t *made = !next ? json_string(stand_in) : next->key ? json_object() : json_array();
    if (!made)
        return NULL;
    if (seg->key) {
        if (!json_is_object(cur) || json_object_set_new(cur, seg->key, made) < 0)
            return NULL;
        return made;
    }
    if (!json_is_array(cur)) {
        json_decref(made);
        return NULL;
    }
    while (json_array_size(cur) <= seg->index)
        if (json_array_append_new(cur, json_null()) < 0) {
            json_decref(made);
            return NULL;
        }
    return json_array_set_new(cur, seg->index, made) < 0 ? NULL : made;
}

int template_sample_output(const template_t *t, int step_index, json_t *out)
{
    for (size_t i = 0; t && i < t->ref_count; i++) {
        const ref_t *r = t->refs[i];
        if (r->root != REF_STEP || r->step_index != step_index)
            continue;
        char stand_in[TEMPLATE_TEXT_MAX];
        snprintf(stand_in, sizeof stand_in, "<%s>", r->text);
        json_t *cur = out;
        for (size_t k = 0; k < r->seg_count && cur; k++)
            cur = sample_at(cur, &r->segs[k], k + 1 < r->seg_count ? &r->segs[k + 1] : NULL,
                            stand_in);
        if (!cur)
            return -1;
    }
    return 0;
}

/* ---------- rendering ---------- */

/* Resolves a reference. Returns the value, borrowed from ctx, or NULL with why set. For
 * saga.* the value is made in *made (a new reference the caller releases). */
static const json_t *ref_resolve(const ref_t *r, const template_ctx_t *ctx, json_t **made,
                                 char *why, size_t why_len)
{
    *made = NULL;
    const json_t *v = NULL;
    switch (r->root) {
    case REF_SAGA_ID:
    case REF_SAGA_NAME: {
        const char *s = r->root == REF_SAGA_ID ? ctx->saga_id : ctx->saga_name;
        if (!s) {
            set_why(why, why_len, "%s: no such value", r->text);
            return NULL;
        }
        *made = json_string(s);
        if (!*made)
            set_why(why, why_len, "%s: out of memory", r->text);
        return *made;
    }
    case REF_INPUT:
        v = ctx->input;
        break;
    case REF_STEP:
        v = ctx->step_output ? ctx->step_output(r->step, r->step_index, ctx->opaque) : NULL;
        if (!v) {
            set_why(why, why_len, "%s: no such value (step \"%s\" has no output)", r->text,
                    r->step);
            return NULL;
        }
        break;
    }
    for (size_t i = 0; v && i < r->seg_count; i++) {
        const ref_seg_t *seg = &r->segs[i];
        v = seg->key ? json_object_get(v, seg->key) : json_array_get(v, seg->index);
    }
    if (!v)
        set_why(why, why_len, "%s: no such value", r->text);
    return v;
}

typedef struct strbuf {
    char *data;
    size_t len, cap;
} strbuf_t;

/* Returns 0, -1 on out of memory, -2 past TEMPLATE_MAX_RENDER_BYTES (checked as the text
 * grows: the final check in template_render would come after the memory was spent). */
static int strbuf_add(strbuf_t *b, const char *s, size_t len)
{
    if (len > TEMPLATE_MAX_RENDER_BYTES - b->len)
        return -2;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

/* Appends a value as text: strings raw, everything else as compact JSON. */
static int strbuf_add_value(strbuf_t *b, const json_t *v)
{
    if (json_is_string(v))
        return strbuf_add(b, json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) {
        char num[32];
        int n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strbuf_add(b, num, (size_t)n);
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return -1;
    int rc = strbuf_add(b, text, strlen(text));
    free(text);
    return rc;
}

static json_t *render_node(const node_t *n, const template_ctx_t *ctx, char *why,
                           size_t why_len)
{
    json_t *out = NULL;
    switch (n->kind) {
    case NODE_CONST:
        out = json_deep_copy(n->value);
        break;
    case NODE_REF: {
        json_t *made;
        const json_t *v = ref_resolve(n->ref, ctx, &made, why, why_len);
        if (!v && n->ref->optional)
            return json_null();
        if (!v)
            return NULL;
        if (made)
            return made;
        out = json_deep_copy(v);
        break;
    }
    case NODE_TEXT: {
        strbuf_t b = {NULL, 0, 0};
        for (size_t i = 0; i < n->part_count; i++) {
            const part_t *p = &n->parts[i];
            int rc;
            if (p->ref) {
                json_t *made;
                const json_t *v = ref_resolve(p->ref, ctx, &made, why, why_len);
                if (!v && p->ref->optional)
                    continue;
                if (!v) {
                    free(b.data);
                    return NULL;
                }
                rc = strbuf_add_value(&b, v);
                json_decref(made);
            } else {
                rc = strbuf_add(&b, p->lit, p->lit_len);
            }
            if (rc < 0) {
                free(b.data);
                if (rc == -2)
                    set_why(why, why_len, "a text longer than %d bytes",
                            TEMPLATE_MAX_RENDER_BYTES);
                else
                    set_why(why, why_len, "out of memory");
                return NULL;
            }
        }
        out = b.data ? json_stringn(b.data, b.len) : json_string("");
        free(b.data);
        break;
    }
    case NODE_OBJECT:
    case NODE_ARRAY:
        out = n->kind == NODE_OBJECT ? json_object() : json_array();
        for (size_t i = 0; out && i < n->child_count; i++) {
            json_t *child = render_node(n->children[i], ctx, why, why_len);
            if (!child) {
                json_decref(out);
                return NULL;
            }
            int rc = n->kind == NODE_OBJECT ? json_object_set_new(out, n->keys[i], child)
                                            : json_array_append_new(out, child);
            if (rc < 0) {
                json_decref(out);
                out = NULL;
            }
        }
        break;
    }
    if (!out)
        set_why(why, why_len, "out of memory");
    return out;
}

json_t *template_render(const template_t *t, const template_ctx_t *ctx, char *why,
                        size_t why_len)
{
    static const template_ctx_t empty_ctx;
    if (!t) {
        set_why(why, why_len, "no template");
        return NULL;
    }
    json_t *out = render_node(t->root, ctx ? ctx : &empty_ctx, why, why_len);
    /* json_dumpb() without a buffer only counts the bytes. */
    size_t bytes = out ? json_dumpb(out, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) : 0;
    if (bytes > TEMPLATE_MAX_RENDER_BYTES) {
        json_decref(out);
        set_why(why, why_len, "the rendered payload is %zu bytes, more than %d", bytes,
                TEMPLATE_MAX_RENDER_BYTES);
        return NULL;
    }
    return out;
}

typedef struct first_error {
    char *why;
    size_t why_len;
    bool seen;
} first_error_t;

static void keep_first_error(const char *path, const char *text, void *opaque)
{
    first_error_t *fe = opaque;
    if (fe->seen)
        return;
    fe->seen = true;
    if (path && *path)
        set_why(fe->why, fe->why_len, "%s: %s", path, text);
    else
        set_why(fe->why, fe->why_len, "%s", text);
}

json_t *template_render_json(const json_t *tmpl, const template_ctx_t *ctx, char *why,
                             size_t why_len)
{
    first_error_t fe = {why, why_len, false};
    template_t *t = template_compile(tmpl, NULL, NULL, keep_first_error, &fe);
    if (!t)
        return NULL;
    json_t *out = template_render(t, ctx, why, why_len);
    template_free(t);
    return out;
}
