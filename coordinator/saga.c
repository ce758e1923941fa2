/* saga.c - saga instances and their encoding as Redis hash fields (see saga.h). */
#include "saga.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const STATUS_NAMES[SAGA_STATUS_COUNT] = {
    "running", "compensating", "completed", "compensated", "stuck"};

static const char *const PHASE_NAMES[STEP_PHASE_COUNT] = {
    "pending",      "running",           "retry_wait",  "done",
    "failed",       "timed_out",         "comp_pending", "compensating", "comp_retry_wait",
    "compensated",  "comp_failed",       "skipped"};

const char *saga_status_name(saga_status_t st)
{
    return (unsigned)st < SAGA_STATUS_COUNT ? STATUS_NAMES[st] : "unknown";
}

int saga_status_parse(const char *name, saga_status_t *out)
{
    for (int i = 0; i < SAGA_STATUS_COUNT; i++) {
        if (name && strcmp(name, STATUS_NAMES[i]) == 0) {
            *out = (saga_status_t)i;
            return 0;
        }
    }
    return -1;
}

const char *step_phase_name(step_phase_t ph)
{
    return (unsigned)ph < STEP_PHASE_COUNT ? PHASE_NAMES[ph] : "unknown";
}

int step_phase_parse(const char *name, step_phase_t *out)
{
    for (int i = 0; i < STEP_PHASE_COUNT; i++) {
        if (name && strcmp(name, PHASE_NAMES[i]) == 0) {
            *out = (step_phase_t)i;
            return 0;
        }
    }
    return -1;
}

bool saga_status_is_terminal(saga_status_t st)
{
    return st == SAGA_COMPLETED || st == SAGA_COMPENSATED;
}

void saga_set_text(char **field, const char *text)
{
    char *copy = text ? strdup(text) : NULL;
    free(*field);
    *field = copy;
}

saga_t *saga_new(const char *id, const definition_t *def, int32_t partition, json_t *input,
                 int64_t now_ms)
{
    size_t id_len = strnlen(id, SAGA_ID_MAX_LEN);
    size_t steps = def->step_count ? def->step_count : 1;
    saga_t *s = calloc(1, sizeof *s + steps * sizeof *s->steps + id_len + 1);
    if (!s)
        return NULL;
    s->steps = (step_state_t *)(s + 1);
    char *own_id = (char *)(s->steps + steps);
    memcpy(own_id, id, id_len); /* calloc wrote the NUL */
    s->id = own_id;
    s->def = def;
    s->partition = partition;
    s->status = SAGA_RUNNING;
    s->input = input ? json_incref(input) : json_object();
    s->created_at = s->updated_at = now_ms;
    s->step_count = (int)def->step_count;
    s->timer_slot = SAGA_NO_TIMER_SLOT;
    return s;
}

void saga_free(saga_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->step_count; i++) {
        json_decref(s->steps[i].output);
        free(s->steps[i].error);
    }
    json_decref(s->input);
    free(s->error);
    free(s);
}

int saga_current_step(const saga_t *s)
{
    int best = -1;
    int64_t best_at = -1;
    for (int i = 0; i < s->step_count; i++) {
        const step_state_t *st = &s->steps[i];
        if (st->phase == STEP_COMPENSATING || st->phase == STEP_COMP_RETRY_WAIT ||
            st->phase == STEP_COMP_FAILED)
            return i;
        int64_t at = st->comp_started_at > st->started_at ? st->comp_started_at : st->started_at;
        if (st->phase != STEP_PENDING && at >= best_at) {
            best = i;
            best_at = at;
        }
    }
    return best;
}

/* Writes the steps array as json_dumps(saga_encode_steps(s), JSON_COMPACT) would, keys in
 * the same order, without building it: it is written on every transition. */
static void write_steps(const saga_t *s, jsonw_t *w)
{
    jsonw_raw(w, "[", 1);
    bool first = true;
    for (int i = 0; i < s->step_count; i++) {
        const step_state_t *st = &s->steps[i];
        if (!jsonw_utf8_valid(s->def->steps[i].name))
            continue; /* as json_pack refuses the step: no object for it */
        if (!first)
            jsonw_raw(w, ",", 1);
        first = false;
        jsonw_raw(w, "{", 1);
        jsonw_key(w, "name", true);
        (void)jsonw_string(w, s->def->steps[i].name);
        jsonw_key(w, "phase", false);
        (void)jsonw_string(w, step_phase_name(st->phase));
        jsonw_key(w, "attempt", false);
        jsonw_int(w, st->attempt);
        jsonw_key(w, "comp_attempt", false);
        jsonw_int(w, st->comp_attempt);
        const struct {
            const char *key;
            int64_t v;
        } opt[] = {{"comp_budget_from", st->comp_budget_from},
                   {"action_timed_out", st->action_timed_out},
                   {"started_at", st->started_at},
                   {"finished_at", st->finished_at},
                   {"comp_started_at", st->comp_started_at},
                   {"comp_finished_at", st->comp_finished_at},
                   {"timer_at", st->timer_at}};
        for (size_t k = 0; k < sizeof opt / sizeof *opt; k++) {
            if (!opt[k].v)
                continue;
            jsonw_key(w, opt[k].key, false);
            if (k == 1)
                jsonw_raw(w, "true", 4);
            else
                jsonw_int(w, opt[k].v);
        }
        if (st->output) {
            jsonw_key(w, "output", false);
            jsonw_value(w, st->output);
        }
        if (st->error && jsonw_utf8_valid(st->error)) {
            jsonw_key(w, "error", false);
            (void)jsonw_string(w, st->error);
        }
        jsonw_raw(w, "}", 1);
    }
    jsonw_raw(w, "]", 1);
}

json_t *saga_encode_steps(const saga_t *s)
{
    jsonw_t w;
    jsonw_init(&w);
    write_steps(s, &w);
    json_t *arr = w.failed ? NULL : json_loadb(w.buf, w.len, 0, NULL);
    jsonw_release(&w);
    return arr;
}

/* Field visitors: a text field is left out when it is not valid UTF-8, as json_string
 * refused it when the fields were a JSON object. */
static int visit_text(saga_field_fn fn, void *opaque, const char *name, const char *value)
{
    return jsonw_utf8_valid(value) ? fn(name, value, strlen(value), opaque) : 0;
}

static int visit_int(saga_field_fn fn, void *opaque, const char *name, int64_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%" PRId64, v);
    return fn(name, buf, (size_t)n, opaque);
}

int saga_visit_fields(const saga_t *s, bool all, jsonw_t *scratch, saga_field_fn fn,
                      void *opaque)
{
    int rc = 0;
    if (all) {
        rc |= visit_text(fn, opaque, "id", s->id);
        rc |= visit_text(fn, opaque, "definition", s->def->name);
        rc |= visit_int(fn, opaque, "definition_version", s->def->version);
        if (s->def->content_hash)
            rc |= visit_text(fn, opaque, "definition_hash", s->def->content_hash);
        rc |= visit_int(fn, opaque, "partition", s->partition);
        rc |= visit_int(fn, opaque, "created_at", s->created_at);
        rc |= visit_int(fn, opaque, "deadline_at", s->deadline_at);
        jsonw_reset(scratch);
        if (s->input)
            jsonw_value(scratch, s->input);
        if (s->input && !scratch->failed)
            rc |= fn("input", scratch->buf, scratch->len, opaque);
        else
            rc |= fn("input", "{}", 2, opaque);
    }
    rc |= visit_text(fn, opaque, "status", saga_status_name(s->status));
    int cur = saga_current_step(s);
    rc |= visit_text(fn, opaque, "step", cur >= 0 ? s->def->steps[cur].name : "");
    rc |= visit_int(fn, opaque, "step_index", cur);
    const step_state_t *cst = cur >= 0 ? &s->steps[cur] : NULL;
    bool comp = cst && cst->comp_attempt > 0;
    rc |= visit_int(fn, opaque, "attempt", cst ? (comp ? cst->comp_attempt : cst->attempt) : 0);
    rc |= visit_int(fn, opaque, "version", s->version);
    rc |= visit_int(fn, opaque, "updated_at", s->updated_at);
    rc |= visit_int(fn, opaque, "finished_at", s->finished_at);
    rc |= visit_int(fn, opaque, "group", s->group);
    rc |= visit_text(fn, opaque, "error", s->error ? s->error : "");
    jsonw_reset(scratch);
    write_steps(s, scratch);
    if (scratch->failed)
        return -1;
    rc |= fn("steps", scratch->buf, scratch->len, opaque);
    return rc ? -1 : 0;
}

static int set_field(const char *name, const char *value, size_t len, void *opaque)
{
    return json_object_set_new(opaque, name, json_stringn(value, len));
}

/* The fields as a JSON object of strings (new reference), or NULL. */
static json_t *encode(const saga_t *s, bool all)
{
    json_t *f = json_object();
    jsonw_t w;
    jsonw_init(&w);
    if (f && saga_visit_fields(s, all, &w, set_field, f) < 0) {
        json_decref(f);
        f = NULL;
    }
    jsonw_release(&w);
    return f;
}

json_t *saga_encode_fields(const saga_t *s)
{
    return encode(s, true);
}


/* Reads an integer field written by set_int. Missing fields read as 0. */
static int get_int(const json_t *fields, const char *key, int64_t *out)
{
    const char *v = json_string_value(json_object_get(fields, key));
    if (!v) {
        *out = 0;
        return 0;
    }
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0')
        return -1;
    *out = x;
    return 0;
}

/* Reads an integer member of a step object: absent reads as 0, else it must be an integer
 * in 0..max. The machine indexes and adds with these, so a hand-edited or corrupt hash
 * must not hand it a negative or overflowing value. */
static int obj_int(const json_t *o, const char *key, int64_t max, int64_t *out)
{
    const json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* Reads the counters and times of one step (see obj_int). */
static int decode_step_ints(const json_t *o, step_state_t *st)
{
    int64_t attempt, comp_attempt, budget_from;
    if (obj_int(o, "attempt", SAGA_MAX_ATTEMPT, &attempt) < 0 ||
        obj_int(o, "comp_attempt", SAGA_MAX_ATTEMPT, &comp_attempt) < 0 ||
        obj_int(o, "comp_budget_from", comp_attempt, &budget_from) < 0 ||
        obj_int(o, "started_at", INT64_MAX, &st->started_at) < 0 ||
        obj_int(o, "finished_at", INT64_MAX, &st->finished_at) < 0 ||
        obj_int(o, "comp_started_at", INT64_MAX, &st->comp_started_at) < 0 ||
        obj_int(o, "comp_finished_at", INT64_MAX, &st->comp_finished_at) < 0 ||
        obj_int(o, "timer_at", INT64_MAX, &st->timer_at) < 0)
        return -1;
    st->attempt = (int)attempt;
    st->comp_attempt = (int)comp_attempt;
    st->comp_budget_from = (int)budget_from;
    return 0;
}

saga_t *saga_decode_fields(const json_t *fields, const definition_t *def, char *why,
                           size_t why_len)
{
    const char *id = json_string_value(json_object_get(fields, "id"));
    const char *status = json_string_value(json_object_get(fields, "status"));
    const char *input = json_string_value(json_object_get(fields, "input"));
    const char *steps = json_string_value(json_object_get(fields, "steps"));
    if (!id || !status || !input || !steps) {
        snprintf(why, why_len, "missing one of the fields id, status, input, steps");
        return NULL;
    }
    /* saga_t keeps the id in a fixed buffer: a longer one would be cut silently and the
     * saga then written back under another key. */
    size_t id_len = strlen(id);
    if (id_len == 0 || id_len > SAGA_ID_MAX_LEN) {
        snprintf(why, why_len, "saga id of %zu bytes (expected 1 to %d)", id_len,
                 SAGA_ID_MAX_LEN);
        return NULL;
    }
    json_error_t jerr;
    json_t *in = json_loads(input, JSON_DECODE_ANY, &jerr);
    json_t *arr = json_loads(steps, 0, &jerr);
    saga_t *s = NULL;
    if (!json_is_object(in) || !json_is_array(arr)) {
        snprintf(why, why_len, "saga %s: field input or steps is not a JSON object or array",
                 id);
        goto err;
    }
    if (json_array_size(arr) != def->step_count) {
        snprintf(why, why_len, "saga %s: %zu steps recorded, definition %s v%d has %zu", id,
                 json_array_size(arr), def->name, def->version, def->step_count);
        goto err;
    }
    s = saga_new(id, def, 0, in, 0);
    if (!s)
        goto err;
    int64_t v;
    if (saga_status_parse(status, &s->status) < 0) {
        snprintf(why, why_len, "saga %s: unknown status \"%s\"", id, status);
        goto err;
    }
    if (get_int(fields, "partition", &v) < 0 || v < 0 || v > INT32_MAX)
        goto bad_int;
    s->partition = (int32_t)v;
    if (get_int(fields, "version", &s->version) < 0 ||
        get_int(fields, "created_at", &s->created_at) < 0 ||
        get_int(fields, "updated_at", &s->updated_at) < 0 ||
        get_int(fields, "finished_at", &s->finished_at) < 0 ||
        get_int(fields, "deadline_at", &s->deadline_at) < 0 || get_int(fields, "group", &v) < 0)
        goto bad_int;
    /* The machine walks groups from this one down to 0 and ends the saga past the last:
     * out of range it would loop ~2^31 times or complete the saga unrun. */
    if (v < 0 || v >= def->group_count) {
        snprintf(why, why_len, "saga %s: group %" PRId64 " is not one of the %d groups of %s",
                 id, v, def->group_count, def->name);
        goto err;
    }
    s->group = (int)v;
    const char *error = json_string_value(json_object_get(fields, "error"));
    if (error && *error)
        s->error = strdup(error);
    for (size_t i = 0; i < def->step_count; i++) {
        const json_t *o = json_array_get(arr, i);
        step_state_t *st = &s->steps[i];
        const char *name = json_string_value(json_object_get(o, "name"));
        step_phase_t phase;
        if (!name || strcmp(name, def->steps[i].name) != 0 ||
            step_phase_parse(json_string_value(json_object_get(o, "phase")), &phase) < 0) {
            snprintf(why, why_len, "saga %s: steps[%zu] does not match the definition", id, i);
            goto err;
        }
        st->phase = (uint8_t)phase;
        if (decode_step_ints(o, st) < 0) {
            snprintf(why, why_len, "saga %s: steps[%zu]: a counter or time is not an integer "
                     "in range", id, i);
            goto err;
        }
        st->action_timed_out = json_is_true(json_object_get(o, "action_timed_out"));
        json_t *out = json_object_get(o, "output");
        if (out)
            st->output = json_incref(out);
        const char *e = json_string_value(json_object_get(o, "error"));
        if (e)
            st->error = strdup(e);
    }
    json_decref(in);
    json_decref(arr);
    return s;
bad_int:
    snprintf(why, why_len, "saga %s: an integer field is not a number", id);
err:
    saga_free(s);
    json_decref(in);
    json_decref(arr);
    return NULL;
}
