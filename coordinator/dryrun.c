/* dryrun.c - a saga definition run through the state machine with invented replies (see
 * dryrun.h). */
#include "dryrun.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DRYRUN_RNG_SEED 0x5eed5eed5eedULL  /* backoff jitter: the same every run */
#define DRYRUN_FAIL_TEXT "simulated failure (--fail)"

/* The state of one run while it goes. */
typedef struct runner {
    dryrun_t *r;
    const dryrun_options_t *o;
    saga_t *sagap;                 /* the saga being run (owned) */
    int fail_step, timeout_step;   /* step indexes, or -1 */
    size_t answered;               /* commands [0, answered) have been answered */
} runner_t;

static int step_option(const definition_t *d, const char *name, const char *option, char *why,
                       size_t why_len, int *out)
{
    *out = -1;
    if (!name)
        return 0;
    *out = definition_step_index(d, name);
    if (*out >= 0)
        return 0;
    snprintf(why, why_len, "%s: saga \"%s\" has no step \"%s\"", option, d->name, name);
    return -1;
}

/* Records the commands of a transition. Returns 0, -1 when out of memory. */
static int record(runner_t *R, const machine_result_t *res, int64_t now_ms)
{
    dryrun_t *r = R->r;
    for (size_t i = 0; i < res->command_count; i++) {
        const machine_command_t *mc = &res->commands[i];
        if (r->command_count == r->command_cap) {
            size_t cap = r->command_cap ? 2 * r->command_cap : 16;
            dryrun_command_t *grown = realloc(r->commands, cap * sizeof *grown);
            if (!grown)
                return -1;
            r->commands = grown;
            r->command_cap = cap;
        }
        dryrun_command_t *c = &r->commands[r->command_count];
        memset(c, 0, sizeof *c);
        c->at_ms = now_ms - DRYRUN_START_MS;
        c->step = mc->step;
        c->kind = mc->kind;
        c->attempt = mc->attempt;
        c->topic = strdup(mc->topic);
        c->message = json_loads(mc->text, 0, NULL);
        if (!c->topic || !c->message) {
            free(c->topic);
            json_decref(c->message);
            return -1;
        }
        r->command_count++;
    }
    return 0;
}

/* The output a participant would reply to step's action with: a stand-in for everything
 * any payload of the saga references in it. New reference, or NULL. */
static json_t *invent_output(const definition_t *d, int step)
{
    json_t *out = json_object();
    for (size_t i = 0; out && i < d->step_count; i++) {
        const defn_step_t *st = &d->steps[i];
        if (template_sample_output(st->action.compiled, step, out) < 0 ||
            (st->has_compensation &&
             template_sample_output(st->compensation.compiled, step, out) < 0)) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* Answers command i as the options say. Returns 0, -1 when out of memory. */
static int answer(runner_t *R, size_t i, machine_env_t *env, machine_result_t *res)
{
    dryrun_command_t *c = &R->r->commands[i];
    bool action = c->kind == CMD_ACTION;
    if (action && c->step == R->timeout_step) {
        c->reply = DRYRUN_REPLY_NONE;
        return 0;
    }
    machine_reply_t reply = {.step = c->step, .kind = c->kind, .attempt = c->attempt,
                             .ok = true};
    if (action && c->step == R->fail_step) {
        c->reply = DRYRUN_REPLY_FAILED;
        reply.ok = false;
        reply.retryable = false;
        reply.error = DRYRUN_FAIL_TEXT;
    } else if (action) {
        c->output = invent_output(R->r->def, c->step);
        if (!c->output)
            return -1;
        reply.output = c->output;
    }
    machine_on_reply(R->sagap, &reply, env, res);
    return record(R, res, env->now_ms);
}

/* Drives the saga to an end: answers every command in the order sent, and when none is
 * left to answer, runs the next timer. */
static int drive(runner_t *R, machine_env_t *env, machine_result_t *res)
{
    saga_t *s = R->sagap;
    for (int events = 0; events < DRYRUN_MAX_EVENTS; events++) {
        if (saga_status_is_terminal(s->status))
            return 0;
        machine_result_release(res);
        if (R->answered < R->r->command_count) {
            if (answer(R, R->answered++, env, res) < 0)
                return -1;
            continue;
        }
        int64_t due = machine_next_timer(s);
        if (due <= 0)
            return 0; /* stuck: waits for an operator */
        if (due > env->now_ms)
            env->now_ms = due;
        machine_on_timer(s, env, res);
        if (record(R, res, env->now_ms) < 0)
            return -1;
    }
    R->r->cut = true;
    return 0;
}

dryrun_t *dryrun_run(const definition_t *d, const json_t *input, const dryrun_options_t *o,
                     char *why, size_t why_len)
{
    static const dryrun_options_t none = {0};
    if (!o)
        o = &none;
    runner_t R = {.o = o};
    if (step_option(d, o->fail_step, "--fail", why, why_len, &R.fail_step) < 0 ||
        step_option(d, o->timeout_step, "--timeout", why, why_len, &R.timeout_step) < 0)
        return NULL;
    if (definition_check_input(d, input, why, why_len) < 0)
        return NULL;
    dryrun_t *r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    R.r = r;
    r->def = d;
    r->saga_id = strdup(o->saga_id ? o->saga_id : DRYRUN_DEFAULT_ID);
    r->input = json_deep_copy(input);
    if (!r->saga_id || !r->input)
        goto oom;
    R.sagap = saga_new(r->saga_id, d, 0, (json_t *)input, DRYRUN_START_MS);
    if (!R.sagap)
        goto oom;
    uint64_t rng = DRYRUN_RNG_SEED;
    machine_env_t env = {.now_ms = DRYRUN_START_MS, .rng = &rng,
                         .reply_topic = o->reply_topic ? o->reply_topic : DRYRUN_REPLY_TOPIC};
    machine_result_t res;
    machine_result_init(&res);
    machine_start(R.sagap, &env, &res);
    int rc = record(&R, &res, env.now_ms);
    if (rc == 0)
        rc = drive(&R, &env, &res);
    machine_result_release(&res);
    if (rc < 0)
        goto oom;
    r->status = R.sagap->status;
    r->error = R.sagap->error ? strdup(R.sagap->error) : NULL;
    r->steps = saga_encode_steps(R.sagap);
    r->ended_ms = env.now_ms - DRYRUN_START_MS;
    saga_free(R.sagap);
    R.sagap = NULL;
    if (!r->steps)
        goto oom;
    return r;
oom:
    saga_free(R.sagap);
    dryrun_free(r);
    snprintf(why, why_len, "out of memory");
    return NULL;
}

void dryrun_free(dryrun_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->command_count; i++) {
        free(r->commands[i].topic);
        json_decref(r->commands[i].message);
        json_decref(r->commands[i].output);
    }
    free(r->commands);
    free(r->saga_id);
    json_decref(r->input);
    free(r->error);
    json_decref(r->steps);
    free(r);
}

static const char *reply_name(dryrun_reply_t reply)
{
    return reply == DRYRUN_REPLY_OK ? "ok" : reply == DRYRUN_REPLY_FAILED ? "failed" : "none";
}

/* Prints the commands of one kind, numbered by their place among all commands. */
static void print_commands(const dryrun_t *r, command_kind_t kind, FILE *out)
{
    for (size_t i = 0; i < r->command_count; i++) {
        const dryrun_command_t *c = &r->commands[i];
        if (c->kind != kind)
            continue;
        const json_t *m = c->message;
        char *payload = json_dumps(json_object_get(m, "payload"), JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(out, "  %2zu. +%" PRId64 " ms  %s %s, attempt %d -> %s\n", i + 1, c->at_ms,
                r->def->steps[c->step].name, command_kind_name(c->kind), c->attempt, c->topic);
        fprintf(out, "      %s %s\n", json_string_value(json_object_get(m, "command")),
                payload ? payload : "{}");
        free(payload);
        if (c->reply == DRYRUN_REPLY_OK && c->output) {
            char *o = json_dumps(c->output, JSON_COMPACT);
            fprintf(out, "      reply: ok, output %s\n", o ? o : "{}");
            free(o);
        } else if (c->reply == DRYRUN_REPLY_OK) {
            fprintf(out, "      reply: ok\n");
        } else if (c->reply == DRYRUN_REPLY_FAILED) {
            fprintf(out, "      reply: failed, not retryable (--fail %s)\n",
                    r->def->steps[c->step].name);
        } else {
            fprintf(out, "      reply: none (--timeout %s)\n", r->def->steps[c->step].name);
        }
    }
}

int dryrun_print(const dryrun_t *r, FILE *out)
{
    char *input = json_dumps(r->input, JSON_COMPACT);
    fprintf(out, "Dry run of %s v%d, saga %s, input %s\n", r->def->name, r->def->version,
            r->saga_id, input ? input : "{}");
    free(input);
    size_t comps = 0;
    for (size_t i = 0; i < r->command_count; i++)
        comps += r->commands[i].kind == CMD_COMPENSATION;
    fprintf(out, "\nActions, in the order they are sent:\n");
    print_commands(r, CMD_ACTION, out);
    fprintf(out, "\nCompensations, in the order they are sent:\n");
    if (comps)
        print_commands(r, CMD_COMPENSATION, out);
    else
        fprintf(out, "  none\n");
    fprintf(out, "\nStatus: %s after %" PRId64 " ms%s%s%s\n", saga_status_name(r->status),
            r->ended_ms, r->error ? " (" : "", r->error ? r->error : "", r->error ? ")" : "");
    if (r->cut)
        fprintf(out, "(cut after %d events)\n", DRYRUN_MAX_EVENTS);
    fprintf(out, "Steps:");
    for (size_t i = 0; i < json_array_size(r->steps); i++) {
        const json_t *st = json_array_get(r->steps, i);
        fprintf(out, "%s %s %s", i ? "," : "", json_string_value(json_object_get(st, "name")),
                json_string_value(json_object_get(st, "phase")));
    }
    fprintf(out, "\n");
    return ferror(out) ? -1 : 0;
}

json_t *dryrun_json(const dryrun_t *r)
{
    json_t *cmds = json_array();
    for (size_t i = 0; cmds && i < r->command_count; i++) {
        const dryrun_command_t *c = &r->commands[i];
        json_array_append_new(
            cmds, json_pack("{s:I, s:s, s:s, s:O?, s:O}", "at_ms", (json_int_t)c->at_ms,
                            "topic", c->topic, "reply", reply_name(c->reply), "output",
                            c->output, "message", c->message));
    }
    return json_pack("{s:s, s:i, s:s, s:O, s:o, s:s, s:s?, s:O, s:b}", "saga", r->def->name,
                     "version", r->def->version, "saga_id", r->saga_id, "input", r->input,
                     "commands", cmds, "status", saga_status_name(r->status), "error",
                     r->error, "steps", r->steps, "cut", r->cut);
}
