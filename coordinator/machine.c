/* machine.c - the saga state machine (see machine.h). Pure: no I/O, no clock, no rand. */
#include "machine.h"

#include "template.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MACHINE_ERROR_MAX 512

const char *command_kind_name(command_kind_t k)
{
    return k == CMD_ACTION ? "action" : "compensation";
}

void machine_command_id(char *buf, size_t len, const char *saga_id, const char *step,
                        command_kind_t kind, int attempt)
{
    snprintf(buf, len, "%s/%s/%s/%d", saga_id, step, command_kind_name(kind), attempt);
}

void machine_result_init(machine_result_t *r)
{
    memset(r, 0, sizeof *r);
}

void machine_result_release(machine_result_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->command_count; i++)
        free(r->commands[i].text);
    free(r->commands);
    json_decref(r->history);
    json_decref(r->outcome);
    machine_result_init(r);
}

/* Uniform double in [0,1) from xorshift64*. */
static double rng_next(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

int64_t machine_backoff_ms(const defn_retry_t *policy, int attempt, uint64_t *rng)
{
    double base = (double)policy->initial_backoff_ms * pow(policy->multiplier, attempt - 2);
    if (base > (double)policy->max_backoff_ms)
        base = (double)policy->max_backoff_ms;
    double factor = 1.0;
    if (policy->jitter > 0 && rng)
        factor += policy->jitter * (2.0 * rng_next(rng) - 1.0);
    int64_t ms = (int64_t)(base * factor);
    return ms < 1 ? 1 : ms;
}

/* --- recording what happened ------------------------------------------------------ */

static void mark_changed(saga_t *s, const machine_env_t *env, machine_result_t *out)
{
    out->changed = true;
    out->verdict = MACHINE_APPLIED;
    s->updated_at = env->now_ms;
}

/* Appends a history entry {ts, event, step?, kind?, attempt?, error?}. */
static void history_add(machine_result_t *out, const machine_env_t *env, const char *event,
                        const saga_t *s, int step, command_kind_t kind, int attempt,
                        const char *error)
{
    if (!out->history)
        out->history = json_array();
    json_t *h = json_pack("{s:I, s:s}", "ts", (json_int_t)env->now_ms, "event", event);
    if (step >= 0) {
        json_object_set_new(h, "step", json_string(s->def->steps[step].name));
        json_object_set_new(h, "kind", json_string(command_kind_name(kind)));
        json_object_set_new(h, "attempt", json_integer(attempt));
    }
    if (error)
        json_object_set_new(h, "error", json_string(error));
    json_array_append_new(out->history, h);
}

static const json_t *output_of_step(const char *name, int index, void *opaque)
{
    const saga_t *s = opaque;
    int i = index >= 0 ? index : definition_step_index(s->def, name);
    return i >= 0 && i < s->step_count ? s->steps[i].output : NULL;
}

static void command_push(machine_result_t *out, const machine_command_t *c)
{
    if (out->command_count == out->command_cap) {
        size_t cap = out->command_cap ? out->command_cap * 2 : 4;
        machine_command_t *n = realloc(out->commands, cap * sizeof *n);
        if (!n) {
            free(c->text);
            return; /* out of memory: the timeout path re-sends it */
        }
        out->commands = n;
        out->command_cap = cap;
    }
    out->commands[out->command_count++] = *c;
}

/* Renders the payload and builds the command message. Returns 0, or -1 with why. */
static int command_build(saga_t *s, int i, command_kind_t kind, int attempt, int64_t deadline,
                         const machine_env_t *env, machine_result_t *out, char *why,
                         size_t why_len)
{
    const defn_step_t *d = &s->def->steps[i];
    const defn_command_t *dc = kind == CMD_ACTION ? &d->action : &d->compensation;
    template_ctx_t ctx = {.saga_id = s->id,
                          .saga_name = s->def->name,
                          .input = s->input,
                          .step_output = output_of_step,
                          .opaque = s};
    json_t *payload = template_render(dc->compiled, &ctx, why, why_len);
    if (!payload)
        return -1;
    machine_command_t c = {.step = i, .kind = kind, .attempt = attempt, .topic = dc->topic};
    machine_command_id(c.id, sizeof c.id, s->id, d->name, kind, attempt);
    char key[MACHINE_COMMAND_ID_MAX];
    snprintf(key, sizeof key, "%s/%s/%s", s->id, d->name, command_kind_name(kind));
    /* The fields in the order docs/protocol.md lists them. */
    jsonw_t w;
    jsonw_init(&w);
    const char *strings[][2] = {{"type", "command"},      {"command_id", c.id},
                                {"idempotency_key", key}, {"saga_id", s->id},
                                {"saga", s->def->name}};
    bool bad = false;
    jsonw_raw(&w, "{", 1);
    for (size_t k = 0; k < sizeof strings / sizeof *strings; k++) {
        jsonw_key(&w, strings[k][0], k == 0);
        bad |= jsonw_string(&w, strings[k][1]) < 0;
    }
    jsonw_key(&w, "saga_version", false);
    jsonw_int(&w, s->def->version);
    const char *more[][2] = {{"step", d->name}, {"kind", command_kind_name(kind)},
                             {"command", dc->type}};
    for (size_t k = 0; k < sizeof more / sizeof *more; k++) {
        jsonw_key(&w, more[k][0], false);
        bad |= jsonw_string(&w, more[k][1]) < 0;
    }
    jsonw_key(&w, "attempt", false);
    jsonw_int(&w, attempt);
    jsonw_key(&w, "payload", false);
    jsonw_value(&w, payload);
    json_decref(payload);
    jsonw_raw(&w, ",\"reply_to\":{", 13);
    jsonw_key(&w, "topic", true);
    bad |= jsonw_string(&w, env->reply_topic) < 0;
    jsonw_key(&w, "partition", false);
    jsonw_int(&w, s->partition);
    jsonw_raw(&w, "}", 1);
    jsonw_key(&w, "sent_at", false);
    jsonw_int(&w, env->now_ms);
    jsonw_key(&w, "deadline", false);
    jsonw_int(&w, deadline);
    jsonw_raw(&w, "}", 1);
    if (bad || w.failed) {
        jsonw_release(&w);
        snprintf(why, why_len, "cannot build the command (out of memory, or text that is "
                               "not UTF-8)");
        return -1;
    }
    c.text = w.buf; /* the writer's buffer is the message */
    command_push(out, &c);
    return 0;
}

/* --- forward ---------------------------------------------------------------------- */

static void begin_compensation(saga_t *s, const char *reason, const machine_env_t *env,
                               machine_result_t *out);
static void advance_compensation(saga_t *s, const machine_env_t *env, machine_result_t *out);

/* Sends the next attempt of step i's action. A payload that cannot be rendered fails the
 * step for good: retrying cannot make the data appear. */
static void send_action(saga_t *s, int i, const machine_env_t *env, machine_result_t *out)
{
    step_state_t *st = &s->steps[i];
    const defn_command_t *dc = &s->def->steps[i].action;
    int attempt = st->attempt + 1;
    int64_t deadline = env->now_ms + dc->timeout_ms;
    char why[MACHINE_ERROR_MAX];
    mark_changed(s, env, out);
    if (command_build(s, i, CMD_ACTION, attempt, deadline, env, out, why, sizeof why) < 0) {
        char err[MACHINE_ERROR_MAX + 64];
        snprintf(err, sizeof err, "cannot build the action payload: %s", why);
        st->phase = STEP_FAILED;
        st->timer_at = 0;
        st->finished_at = env->now_ms;
        saga_set_text(&st->error, err);
        history_add(out, env, "action_failed", s, i, CMD_ACTION, attempt, err);
        return;
    }
    st->attempt = attempt;
    st->phase = STEP_RUNNING;
    st->action_timed_out = false;
    st->timer_at = deadline;
    if (!st->started_at)
        st->started_at = env->now_ms;
    history_add(out, env, "action_sent", s, i, CMD_ACTION, attempt, NULL);
}

static json_t *outputs_object(const saga_t *s)
{
    json_t *o = json_object();
    for (int i = 0; i < s->step_count; i++)
        if (s->steps[i].output)
            json_object_set(o, s->def->steps[i].name, s->steps[i].output);
    return o;
}

/* The size of the outputs recorded so far, as compact JSON. */
static size_t outputs_bytes(const saga_t *s)
{
    size_t n = 0;
    for (int i = 0; i < s->step_count; i++)
        if (s->steps[i].output)
            n += json_dumpb(s->steps[i].output, NULL, 0, JSON_COMPACT);
    return n;
}

/* Marks the saga finished with status st and builds its outcome. */
static void finish(saga_t *s, saga_status_t st, const machine_env_t *env, machine_result_t *out)
{
    s->status = st;
    if (st != SAGA_STUCK)
        s->finished_at = env->now_ms;
    json_decref(out->outcome);
    /* Outputs too large for one Kafka message stay in Redis only: the outcome says so. */
    bool fits = outputs_bytes(s) <= MACHINE_MAX_OUTCOME_OUTPUTS_BYTES;
    out->outcome = json_pack("{s:s, s:s, s:s, s:i, s:s, s:I, s:o, s:o}", "type", "outcome",
                             "saga_id", s->id, "saga", s->def->name, "version", s->def->version,
                             "status", saga_status_name(st), "finished_at",
                             (json_int_t)env->now_ms, "error",
                             s->error ? json_string(s->error) : json_null(), "outputs",
                             fits ? outputs_object(s) : json_object());
    if (out->outcome && !fits)
        json_object_set_new(out->outcome, "outputs_truncated", json_true());
    history_add(out, env, saga_status_name(st), s, -1, CMD_ACTION, 0, s->error);
}

static bool group_is_done(const saga_t *s, int g)
{
    for (int i = 0; i < s->step_count; i++)
        if (s->def->steps[i].group == g && s->steps[i].phase != STEP_DONE)
            return false;
    return true;
}

/* Starts every pending step of group g. Returns false when one of them failed to build
 * (then the saga is compensating already). */
static void start_group(saga_t *s, int g, const machine_env_t *env, machine_result_t *out)
{
    s->group = g;
    bool failed = false;
    for (int i = 0; i < s->step_count; i++) {
        if (s->def->steps[i].group != g || s->steps[i].phase != STEP_PENDING)
            continue;
        send_action(s, i, env, out);
        if (s->steps[i].phase == STEP_FAILED)
            failed = true;
    }
    if (failed) {
        for (int i = 0; i < s->step_count; i++)
            if (s->def->steps[i].group == g && s->steps[i].phase == STEP_FAILED) {
                char reason[MACHINE_ERROR_MAX + 64];
                snprintf(reason, sizeof reason, "step %s failed: %s", s->def->steps[i].name,
                         s->steps[i].error ? s->steps[i].error : "");
                begin_compensation(s, reason, env, out);
                break;
            }
    }
}

/* After a step of the running group succeeded: next group, or the end. */
static void advance_forward(saga_t *s, const machine_env_t *env, machine_result_t *out)
{
    while (s->status == SAGA_RUNNING && group_is_done(s, s->group)) {
        if (s->group + 1 >= s->def->group_count) {
            finish(s, SAGA_COMPLETED, env, out);
            return;
        }
        start_group(s, s->group + 1, env, out);
    }
}

void machine_start(saga_t *s, const machine_env_t *env, machine_result_t *out)
{
    mark_changed(s, env, out);
    out->old_status = s->status;
    s->created_at = env->now_ms;
    if (s->def->deadline_ms > 0)
        s->deadline_at = env->now_ms + s->def->deadline_ms;
    history_add(out, env, "started", s, -1, CMD_ACTION, 0, NULL);
    start_group(s, 0, env, out);
    advance_forward(s, env, out); /* a definition whose group 0 is empty cannot exist */
}

/* --- compensation ----------------------------------------------------------------- */

static bool step_needs_compensation(const saga_t *s, int i)
{
    const defn_step_t *d = &s->def->steps[i];
    const step_state_t *st = &s->steps[i];
    if (!d->has_compensation)
        return false;
    return st->phase == STEP_DONE || st->phase == STEP_COMP_PENDING ||
           (st->phase == STEP_TIMED_OUT && d->compensate_on_timeout);
}

static void send_compensation(saga_t *s, int i, const machine_env_t *env,
                              machine_result_t *out)
{
    step_state_t *st = &s->steps[i];
    const defn_command_t *dc = &s->def->steps[i].compensation;
    int attempt = st->comp_attempt + 1;
    int64_t deadline = env->now_ms + dc->timeout_ms;
    char why[MACHINE_ERROR_MAX];
    mark_changed(s, env, out);
    if (command_build(s, i, CMD_COMPENSATION, attempt, deadline, env, out, why, sizeof why) <
        0) {
        char err[MACHINE_ERROR_MAX + 64];
        snprintf(err, sizeof err, "cannot build the compensation payload: %s", why);
        st->phase = STEP_COMP_FAILED;
        st->timer_at = 0;
        st->comp_finished_at = env->now_ms;
        saga_set_text(&st->error, err);
        history_add(out, env, "compensation_failed", s, i, CMD_COMPENSATION, attempt, err);
        return;
    }
    st->comp_attempt = attempt;
    st->phase = STEP_COMPENSATING;
    st->timer_at = deadline;
    if (!st->comp_started_at)
        st->comp_started_at = env->now_ms;
    history_add(out, env, "compensation_sent", s, i, CMD_COMPENSATION, attempt, NULL);
}

/* Moves compensation forward: in the latest group with unsettled steps, sends what needs
 * compensating and waits for anything in flight; goes to earlier groups only once it is
 * all settled. Ends the saga when every group settled. Safe to call at any time. */
static void advance_compensation(saga_t *s, const machine_env_t *env, machine_result_t *out)
{
    if (s->status != SAGA_COMPENSATING)
        return;
    bool any_failed = false;
    int failed_step = -1;
    for (int g = s->group; g >= 0; g--) {
        /* A group's compensations wait until none of its actions is in flight: a sibling
         * still running may yet succeed (and need undoing too) or time out. */
        for (int i = 0; i < s->step_count; i++)
            if (s->def->steps[i].group == g && s->steps[i].phase == STEP_RUNNING)
                return;
        bool busy = false;
        for (int i = s->step_count - 1; i >= 0; i--) {
            if (s->def->steps[i].group != g)
                continue;
            if (step_needs_compensation(s, i))
                send_compensation(s, i, env, out);
            switch (s->steps[i].phase) {
            case STEP_RUNNING:
            case STEP_COMPENSATING:
            case STEP_COMP_RETRY_WAIT:
                busy = true;
                break;
            case STEP_COMP_FAILED:
                any_failed = true;
                if (failed_step < 0)
                    failed_step = i;
                break;
            default:
                break;
            }
        }
        if (busy)
            return;
        if (any_failed && s->def->on_compensation_failure == DEFN_ON_COMP_FAILURE_STOP)
            break;
    }
    if (any_failed) {
        char reason[MACHINE_ERROR_MAX + 128];
        const step_state_t *st = &s->steps[failed_step];
        snprintf(reason, sizeof reason, "compensation of step %s failed after %d attempts: %s",
                 s->def->steps[failed_step].name, st->comp_attempt - st->comp_budget_from,
                 st->error ? st->error : "");
        saga_set_text(&s->error, reason);
        finish(s, SAGA_STUCK, env, out);
        return;
    }
    finish(s, SAGA_COMPENSATED, env, out);
}

static void begin_compensation(saga_t *s, const char *reason, const machine_env_t *env,
                               machine_result_t *out)
{
    if (s->status != SAGA_RUNNING)
        return;
    mark_changed(s, env, out);
    s->status = SAGA_COMPENSATING;
    saga_set_text(&s->error, reason);
    /* A retry not yet sent will never be: when its last attempt failed there is nothing
     * to undo; when it timed out (retry_on_timeout) its effect is unknown, as for any
     * timed-out action. */
    for (int i = 0; i < s->step_count; i++) {
        if (s->steps[i].phase == STEP_RETRY_WAIT) {
            s->steps[i].phase = s->steps[i].action_timed_out ? STEP_TIMED_OUT : STEP_FAILED;
            s->steps[i].timer_at = 0;
            s->steps[i].finished_at = env->now_ms;
        }
    }
    history_add(out, env, "compensation_started", s, -1, CMD_ACTION, 0, reason);
    advance_compensation(s, env, out);
}

/* --- events ----------------------------------------------------------------------- */

static void action_reply(saga_t *s, const machine_reply_t *r, const machine_env_t *env,
                         machine_result_t *out)
{
    step_state_t *st = &s->steps[r->step];
    const defn_step_t *d = &s->def->steps[r->step];
    if (st->phase != STEP_RUNNING || r->attempt != st->attempt) {
        if (r->attempt > st->attempt)
            out->verdict = MACHINE_UNEXPECTED;
        else if (st->action_timed_out || r->attempt < st->attempt)
            out->verdict = MACHINE_LATE;
        else
            out->verdict = MACHINE_DUPLICATE;
        return;
    }
    mark_changed(s, env, out);
    st->timer_at = 0;
    char too_big[160];
    if (r->ok && r->output &&
        outputs_bytes(s) + json_dumpb(r->output, NULL, 0, JSON_COMPACT) > MACHINE_MAX_OUTPUTS_BYTES) {
        /* The action was applied, but its output would make every later write of the saga
         * huge: keep the step as done without the output, and undo the saga. */
        snprintf(too_big, sizeof too_big,
                 "the output would take the saga's outputs past %d bytes; not kept",
                 MACHINE_MAX_OUTPUTS_BYTES);
        st->timer_at = 0;
        st->phase = STEP_DONE;
        st->finished_at = env->now_ms;
        json_decref(st->output);
        st->output = json_object();
        saga_set_text(&st->error, too_big);
        history_add(out, env, "action_ok", s, r->step, CMD_ACTION, r->attempt, too_big);
        if (s->status == SAGA_RUNNING) {
            char reason[MACHINE_ERROR_MAX + 128];
            snprintf(reason, sizeof reason, "step %s: %s", d->name, too_big);
            begin_compensation(s, reason, env, out);
        } else {
            advance_compensation(s, env, out);
        }
        return;
    }
    if (r->ok) {
        st->phase = STEP_DONE;
        st->finished_at = env->now_ms;
        json_decref(st->output);
        st->output = r->output ? json_incref(r->output) : json_object();
        history_add(out, env, "action_ok", s, r->step, CMD_ACTION, r->attempt, NULL);
        if (s->status == SAGA_RUNNING)
            advance_forward(s, env, out);
        else
            advance_compensation(s, env, out);
        return;
    }
    const char *error = r->error ? r->error : "failed";
    saga_set_text(&st->error, error);
    if (r->retryable && s->status == SAGA_RUNNING && st->attempt < d->action.retry.max_attempts) {
        st->phase = STEP_RETRY_WAIT;
        st->timer_at = env->now_ms + machine_backoff_ms(&d->action.retry, st->attempt + 1, env->rng);
        history_add(out, env, "action_retry_scheduled", s, r->step, CMD_ACTION, r->attempt, error);
        return;
    }
    st->phase = STEP_FAILED;
    st->finished_at = env->now_ms;
    history_add(out, env, "action_failed", s, r->step, CMD_ACTION, r->attempt, error);
    if (s->status == SAGA_RUNNING) {
        char reason[MACHINE_ERROR_MAX + 128];
        snprintf(reason, sizeof reason, "step %s failed%s: %s", d->name,
                 r->retryable ? " after all attempts" : "", error);
        begin_compensation(s, reason, env, out);
    } else {
        advance_compensation(s, env, out);
    }
}

/* A compensation attempt failed or timed out: retry within the budget, else give up. */
static void compensation_attempt_failed(saga_t *s, int i, const char *error, bool retryable,
                                        const machine_env_t *env, machine_result_t *out)
{
    step_state_t *st = &s->steps[i];
    const defn_retry_t *policy = &s->def->steps[i].compensation.retry;
    saga_set_text(&st->error, error);
    st->timer_at = 0;
    if (retryable && st->comp_attempt - st->comp_budget_from < policy->max_attempts) {
        st->phase = STEP_COMP_RETRY_WAIT;
        st->timer_at = env->now_ms +
                       machine_backoff_ms(policy, st->comp_attempt - st->comp_budget_from + 1,
                                          env->rng);
        history_add(out, env, "compensation_retry_scheduled", s, i, CMD_COMPENSATION,
                    st->comp_attempt, error);
        return;
    }
    st->phase = STEP_COMP_FAILED;
    st->comp_finished_at = env->now_ms;
    history_add(out, env, "compensation_failed", s, i, CMD_COMPENSATION, st->comp_attempt, error);
    advance_compensation(s, env, out);
}

static void compensation_reply(saga_t *s, const machine_reply_t *r, const machine_env_t *env,
                               machine_result_t *out)
{
    step_state_t *st = &s->steps[r->step];
    if (st->phase != STEP_COMPENSATING || r->attempt != st->comp_attempt) {
        if (r->attempt > st->comp_attempt)
            out->verdict = MACHINE_UNEXPECTED;
        else if (r->attempt < st->comp_attempt)
            out->verdict = MACHINE_LATE;
        else
            out->verdict = MACHINE_DUPLICATE;
        return;
    }
    mark_changed(s, env, out);
    if (r->ok) {
        st->phase = STEP_COMPENSATED;
        st->timer_at = 0;
        st->comp_finished_at = env->now_ms;
        history_add(out, env, "compensation_ok", s, r->step, CMD_COMPENSATION, r->attempt, NULL);
        advance_compensation(s, env, out);
        return;
    }
    compensation_attempt_failed(s, r->step, r->error ? r->error : "failed", r->retryable, env,
                                out);
}

void machine_on_reply(saga_t *s, const machine_reply_t *r, const machine_env_t *env,
                      machine_result_t *out)
{
    out->old_status = s->status;
    out->verdict = MACHINE_UNEXPECTED;
    if (r->step < 0 || r->step >= s->step_count || r->attempt < 1)
        return;
    if (r->kind == CMD_ACTION)
        action_reply(s, r, env, out);
    else
        compensation_reply(s, r, env, out);
}

void machine_on_timer(saga_t *s, const machine_env_t *env, machine_result_t *out)
{
    out->old_status = s->status;
    out->verdict = MACHINE_NOTHING_DUE;
    const int64_t now = env->now_ms;
    int timed_out = -1;
    for (int i = 0; i < s->step_count; i++) {
        step_state_t *st = &s->steps[i];
        if (!st->timer_at || st->timer_at > now)
            continue;
        const defn_step_t *d = &s->def->steps[i];
        char err[MACHINE_ERROR_MAX];
        switch (st->phase) {
        case STEP_RUNNING:
            mark_changed(s, env, out);
            snprintf(err, sizeof err, "no reply within %lld ms", (long long)d->action.timeout_ms);
            st->action_timed_out = true;
            saga_set_text(&st->error, err);
            history_add(out, env, "action_timed_out", s, i, CMD_ACTION, st->attempt, err);
            if (d->retry_on_timeout && s->status == SAGA_RUNNING &&
                st->attempt < d->action.retry.max_attempts &&
                (!s->deadline_at || now < s->deadline_at)) {
                /* Sent again under the same idempotency key: a participant that applied
                 * the timed-out attempt answers the retry from its record. */
                st->phase = STEP_RETRY_WAIT;
                st->timer_at = now + machine_backoff_ms(&d->action.retry, st->attempt + 1,
                                                        env->rng);
                history_add(out, env, "action_retry_scheduled", s, i, CMD_ACTION, st->attempt,
                            err);
                break;
            }
            st->phase = STEP_TIMED_OUT;
            st->timer_at = 0;
            st->finished_at = now;
            if (timed_out < 0)
                timed_out = i;
            break;
        case STEP_RETRY_WAIT:
            send_action(s, i, env, out);
            if (st->phase == STEP_FAILED && timed_out < 0)
                timed_out = i;
            break;
        case STEP_COMPENSATING:
            mark_changed(s, env, out);
            snprintf(err, sizeof err, "no compensation reply within %lld ms",
                     (long long)d->compensation.timeout_ms);
            history_add(out, env, "compensation_timed_out", s, i, CMD_COMPENSATION,
                        st->comp_attempt, err);
            compensation_attempt_failed(s, i, err, true, env, out);
            break;
        case STEP_COMP_RETRY_WAIT:
            send_compensation(s, i, env, out);
            break;
        default:
            st->timer_at = 0; /* a timer left on a settled step: drop it */
            mark_changed(s, env, out);
            break;
        }
    }
    if (timed_out >= 0 && s->status == SAGA_RUNNING) {
        char reason[MACHINE_ERROR_MAX + 128];
        snprintf(reason, sizeof reason, "step %s %s: %s", s->def->steps[timed_out].name,
                 s->steps[timed_out].phase == STEP_TIMED_OUT ? "timed out" : "failed",
                 s->steps[timed_out].error ? s->steps[timed_out].error : "");
        begin_compensation(s, reason, env, out);
    }
    if (s->status == SAGA_RUNNING && s->deadline_at && now >= s->deadline_at) {
        char reason[128];
        snprintf(reason, sizeof reason, "saga deadline of %lld ms exceeded",
                 (long long)s->def->deadline_ms);
        mark_changed(s, env, out);
        history_add(out, env, "deadline_exceeded", s, -1, CMD_ACTION, 0, reason);
        /* The deadline cuts the actions in flight: each is treated as timed out (its
         * effect is unknown), so compensation starts now, not when their timeouts end. */
        for (int i = 0; i < s->step_count; i++) {
            step_state_t *st = &s->steps[i];
            if (st->phase != STEP_RUNNING)
                continue;
            st->phase = STEP_TIMED_OUT;
            st->action_timed_out = true;
            st->timer_at = 0;
            st->finished_at = now;
            saga_set_text(&st->error, reason);
            history_add(out, env, "action_timed_out", s, i, CMD_ACTION, st->attempt, reason);
        }
        begin_compensation(s, reason, env, out);
    }
    if (out->changed)
        advance_compensation(s, env, out);
}

void machine_abort(saga_t *s, const char *reason, const machine_env_t *env,
                   machine_result_t *out)
{
    out->old_status = s->status;
    if (s->status != SAGA_RUNNING) {
        out->verdict = MACHINE_NOT_APPLICABLE;
        return;
    }
    char why[MACHINE_ERROR_MAX];
    snprintf(why, sizeof why, "aborted: %s", reason && *reason ? reason : "by operator");
    history_add(out, env, "aborted", s, -1, CMD_ACTION, 0, why);
    begin_compensation(s, why, env, out);
}

void machine_retry(saga_t *s, const machine_env_t *env, machine_result_t *out)
{
    out->old_status = s->status;
    if (s->status != SAGA_STUCK) {
        out->verdict = MACHINE_NOT_APPLICABLE;
        return;
    }
    mark_changed(s, env, out);
    for (int i = 0; i < s->step_count; i++) {
        step_state_t *st = &s->steps[i];
        if (st->phase == STEP_COMP_FAILED) {
            st->phase = STEP_COMP_PENDING;
            st->comp_budget_from = st->comp_attempt;
        }
    }
    s->status = SAGA_COMPENSATING;
    history_add(out, env, "retry_requested", s, -1, CMD_ACTION, 0, NULL);
    advance_compensation(s, env, out);
}

void machine_skip(saga_t *s, const char *reason, const machine_env_t *env,
                  machine_result_t *out)
{
    out->old_status = s->status;
    if (s->status != SAGA_STUCK) {
        out->verdict = MACHINE_NOT_APPLICABLE;
        return;
    }
    mark_changed(s, env, out);
    char why[MACHINE_ERROR_MAX];
    snprintf(why, sizeof why, "skipped by operator: %s", reason && *reason ? reason : "");
    for (int i = 0; i < s->step_count; i++) {
        step_state_t *st = &s->steps[i];
        if (st->phase == STEP_COMP_FAILED) {
            st->phase = STEP_SKIPPED;
            st->comp_finished_at = env->now_ms;
            saga_set_text(&st->error, why);
            history_add(out, env, "compensation_skipped", s, i, CMD_COMPENSATION,
                        st->comp_attempt, why);
        }
    }
    s->status = SAGA_COMPENSATING;
    advance_compensation(s, env, out);
}

bool machine_command_resent(saga_t *s, int step, command_kind_t kind, int attempt,
                            int64_t now_ms)
{
    if (step < 0 || step >= s->step_count)
        return false;
    step_state_t *st = &s->steps[step];
    const defn_step_t *d = &s->def->steps[step];
    int64_t timeout;
    if (kind == CMD_ACTION && st->phase == STEP_RUNNING && st->attempt == attempt)
        timeout = d->action.timeout_ms;
    else if (kind == CMD_COMPENSATION && st->phase == STEP_COMPENSATING &&
             st->comp_attempt == attempt)
        timeout = d->compensation.timeout_ms;
    else
        return false;
    if (st->timer_at >= now_ms + timeout)
        return false;
    st->timer_at = now_ms + timeout;
    return true;
}

int64_t machine_next_timer(const saga_t *s)
{
    int64_t next = 0;
    for (int i = 0; i < s->step_count; i++) {
        int64_t t = s->steps[i].timer_at;
        if (t && (!next || t < next))
            next = t;
    }
    if (s->status == SAGA_RUNNING && s->deadline_at && (!next || s->deadline_at < next))
        next = s->deadline_at;
    return next;
}

int64_t machine_last_due(const saga_t *s, int64_t now)
{
    int64_t last = 0;
    for (int i = 0; i < s->step_count; i++) {
        int64_t t = s->steps[i].timer_at;
        if (t && t <= now && t > last)
            last = t;
    }
    if (s->status == SAGA_RUNNING && s->deadline_at && s->deadline_at <= now &&
        s->deadline_at > last)
        last = s->deadline_at;
    return last;
}

json_t *machine_rejected_outcome(const char *saga_id, const char *saga_name, int version,
                                 const char *reason, int64_t now_ms)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "type", "outcome", "saga_id",
                          saga_id ? saga_id : "", "saga", saga_name ? saga_name : "",
                          "status", "rejected", "finished_at", (json_int_t)now_ms, "error",
                          reason);
    if (o && version > 0)
        json_object_set_new(o, "version", json_integer(version));
    return o;
}
