/* sp_result.c - the handler's result object and its effects (see sp_result.h and the
 * saga_result_* functions of saga_participant.h). */
#include "sp_result.h"

#include <strings.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SP_RESULT_DEFAULT_ERROR "failed"
#define SP_RESULT_NO_RESULT_ERROR "handler set no result"

/* The writes an effect may use: each has exactly one key, at argv[1]. min_argc counts the
 * command name; pairs says that the arguments after the key come in pairs; exact says
 * argc must equal min_argc. The Lua side checks key types and numbers (sp_dedup.c). */
typedef struct {
    const char *name;
    int min_argc;
    int exact;
    int pairs;
} sp_effect_rule_t;

static const sp_effect_rule_t SP_EFFECT_RULES[] = {
    {"SET", 3, 1, 0},     {"DEL", 2, 1, 0},     {"INCRBY", 3, 1, 0},  {"HSET", 4, 0, 1},
    {"HDEL", 3, 0, 0},    {"HINCRBY", 4, 1, 0}, {"RPUSH", 3, 0, 0},   {"LPUSH", 3, 0, 0},
    {"SADD", 3, 0, 0},    {"SREM", 3, 0, 0},    {"ZADD", 4, 0, 1},    {"ZINCRBY", 4, 1, 0},
    {"EXPIRE", 3, 1, 0},
};

void sp_result_init(saga_result_t *res)
{
    memset(res, 0, sizeof *res);
}

static void sp_result_effects_clear(saga_result_t *res)
{
    for (int i = 0; i < res->neffects; i++)
        for (int j = 0; j < res->effects[i].argc; j++)
            free(res->effects[i].argv[j]);
    res->neffects = 0;
}

void sp_result_release(saga_result_t *res)
{
    if (!res)
        return;
    json_decref(res->output);
    free(res->error);
    sp_result_effects_clear(res);
    memset(res, 0, sizeof *res);
}

static void sp_result_reset_outcome(saga_result_t *res)
{
    json_decref(res->output);
    res->output = NULL;
    free(res->error);
    res->error = NULL;
}

int saga_result_ok(saga_result_t *res, json_t *output)
{
    sp_result_reset_outcome(res);
    if (!output)
        output = json_object();
    if (!json_is_object(output)) {
        json_decref(output);
        res->status = SP_RESULT_FAILED;
        res->error = strdup("handler output is not a JSON object");
        return -1;
    }
    res->status = SP_RESULT_OK;
    res->output = output;
    return 0;
}

static void sp_result_set_failure(saga_result_t *res, sp_result_status_t st, const char *error)
{
    sp_result_reset_outcome(res);
    res->status = st;
    res->error = strdup(error ? error : SP_RESULT_DEFAULT_ERROR);
}

void saga_result_fail(saga_result_t *res, const char *error)
{
    sp_result_set_failure(res, SP_RESULT_FAILED, error);
}

void saga_result_retry(saga_result_t *res, const char *error)
{
    sp_result_set_failure(res, SP_RESULT_RETRY, error);
}

static const sp_effect_rule_t *sp_effect_rule_find(const char *name)
{
    for (size_t i = 0; i < sizeof SP_EFFECT_RULES / sizeof SP_EFFECT_RULES[0]; i++)
        if (strcasecmp(SP_EFFECT_RULES[i].name, name) == 0)
            return &SP_EFFECT_RULES[i];
    return NULL;
}

int saga_result_effect(saga_result_t *res, int argc, const char *const *argv)
{
    if (!res || !argv || argc < 2 || argc > SAGA_PARTICIPANT_MAX_EFFECT_ARGS ||
        res->neffects >= SAGA_PARTICIPANT_MAX_EFFECTS)
        return -1;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return -1;
    const sp_effect_rule_t *rule = sp_effect_rule_find(argv[0]);
    if (!rule || argc < rule->min_argc || (rule->exact && argc != rule->min_argc) ||
        (rule->pairs && (argc - 2) % 2 != 0) || argv[1][0] == '\0')
        return -1;
    sp_effect_t *e = &res->effects[res->neffects];
    e->argc = 0;
    e->argv[0] = strdup(rule->name);
    if (!e->argv[0])
        return -1;
    e->argc = 1;
    for (int i = 1; i < argc; i++) {
        e->argv[i] = strdup(argv[i]);
        if (!e->argv[i]) {
            for (int j = 0; j < i; j++)
                free(e->argv[j]);
            e->argc = 0;
            return -1;
        }
        e->argc = i + 1;
    }
    res->neffects++;
    return 0;
}

int saga_result_effectl(saga_result_t *res, const char *command, ...)
{
    const char *argv[SAGA_PARTICIPANT_MAX_EFFECT_ARGS];
    int argc = 0;
    argv[argc++] = command;
    va_list ap;
    va_start(ap, command);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        if (argc == SAGA_PARTICIPANT_MAX_EFFECT_ARGS) {
            va_end(ap);
            return -1;
        }
        argv[argc++] = s;
    }
    va_end(ap);
    return saga_result_effect(res, argc, argv);
}

json_t *sp_body_failed_new(const char *error, int retryable)
{
    return json_pack("{s:s, s:s, s:b}", "status", "failed", "error", error ? error : SP_RESULT_DEFAULT_ERROR,
                     "retryable", retryable);
}

json_t *sp_result_body_new(const saga_result_t *res)
{
    switch (res->status) {
    case SP_RESULT_OK:
        return json_pack("{s:s, s:O}", "status", "ok", "output", res->output);
    case SP_RESULT_FAILED:
        return sp_body_failed_new(res->error, 0);
    case SP_RESULT_RETRY:
        return sp_body_failed_new(res->error, 1);
    case SP_RESULT_NONE:
    default:
        return sp_body_failed_new(SP_RESULT_NO_RESULT_ERROR, 1);
    }
}

const char *sp_result_state(const saga_result_t *res, saga_kind_t kind)
{
    switch (res->status) {
    case SP_RESULT_OK:
        return "ok";
    case SP_RESULT_FAILED:
        return kind == SAGA_KIND_ACTION ? "failed" : "retryable";
    default:
        return "retryable";
    }
}
