/* ledger_check.c - checking sagas against the example services' ledgers (see
 * ledger_check.h). Reads documented keys only: saga:{pN}:saga:ID (status, error; named
 * by rkeys.h),
 * ledger:{S}:entries and :by_saga, and the SDK's dedup records dedup:{S}:KEY (state). */
#include "ledger_check.h"

#include "rkeys.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct checker {
    FILE *out;
    long max_report;
    ledger_report_t *r;
} checker_t;

static void violation(checker_t *c, const char *fmt, ...)
{
    c->r->violations++;
    if (!c->out || c->r->violations > c->max_report)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(c->out, "ledger_check: violation: ");
    vfprintf(c->out, fmt, ap);
    fprintf(c->out, "\n");
    va_end(ap);
}

/* applied[saga]["step/kind"] = how many ledger entries. */
static int read_entries(redisContext *rc, const char *service, json_t *applied, checker_t *c)
{
    redisReply *r = redisCommand(rc, "LRANGE ledger:{%s}:entries 0 -1", service);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        json_t *e = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        const char *saga = json_string_value(json_object_get(e, "saga_id"));
        const char *step = json_string_value(json_object_get(e, "step"));
        const char *kind = json_string_value(json_object_get(e, "kind"));
        c->r->entries++;
        if (!saga || !step || !kind) {
            violation(c, "ledger:{%s}:entries[%zu] is not a ledger entry: %.*s", service, i,
                      (int)r->element[i]->len, r->element[i]->str);
            json_decref(e);
            continue;
        }
        json_t *per = json_object_get(applied, saga);
        if (!per) {
            per = json_object();
            json_object_set_new(applied, saga, per);
        }
        char key[256];
        snprintf(key, sizeof key, "%s/%s", step, kind);
        json_int_t n = json_integer_value(json_object_get(per, key));
        json_object_set_new(per, key, json_integer(n + 1));
        json_decref(e);
    }
    freeReplyObject(r);
    return 0;
}

/* by_saga of one service as an object saga -> net delta. */
static json_t *read_by_saga(redisContext *rc, const char *service)
{
    redisReply *r = redisCommand(rc, "HGETALL ledger:{%s}:by_saga", service);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return NULL;
    }
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        json_object_set_new(o, r->element[i]->str, json_integer(atoll(r->element[i + 1]->str)));
    freeReplyObject(r);
    return o;
}

/* status[i] and error[i] of ids[i], from whichever partition holds the saga (NULL when
 * none). Pipelined: partitions HMGETs per saga. Returns 0 or -1. */
static int read_statuses(redisContext *rc, int partitions, const char *const *ids, size_t n,
                         char **status, char **error)
{
    static const rkeys_t keys = {RKEYS_DEFAULT_PREFIX}; /* the example system's */
    char key[RKEYS_KEY_MAX];
    for (size_t i = 0; i < n; i++)
        for (int p = 0; p < partitions; p++)
            if (redisAppendCommand(rc, "HMGET %s " RKEYS_F_STATUS " " RKEYS_F_ERROR,
                                   rkeys_saga(&keys, key, p, ids[i])) != REDIS_OK)
                return -1;
    int rc_ = 0;
    for (size_t i = 0; i < n; i++) {
        for (int p = 0; p < partitions; p++) {
            redisReply *r = NULL;
            if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r) {
                rc_ = -1;
                continue; /* the connection is broken: every later read fails too */
            }
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING && !status[i]) {
                status[i] = strdup(r->element[0]->str);
                error[i] = strdup(r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str
                                                                            : "");
            }
            freeReplyObject(r);
        }
    }
    return rc_;
}

/* The dedup state of every applied action, which must be "ok": an action applied after
 * its tombstone (its compensation came first) would show as a ledger entry whose record
 * is a tombstone. */
static int check_dedup_states(redisContext *rc, json_t *applied, const ledger_step_t *steps,
                              size_t nsteps, checker_t *c)
{
    const char *saga;
    json_t *per;
    size_t queued = 0;
    json_object_foreach(applied, saga, per)
    {
        for (size_t k = 0; k < nsteps; k++) {
            char key[256];
            snprintf(key, sizeof key, "%s/action", steps[k].step);
            if (!json_object_get(per, key))
                continue;
            if (redisAppendCommand(rc, "HGET dedup:{%s}:%s/%s/action state", steps[k].service,
                                   saga, steps[k].step) != REDIS_OK)
                return -1;
            queued++;
        }
    }
    json_object_foreach(applied, saga, per)
    {
        for (size_t k = 0; k < nsteps; k++) {
            char key[256];
            snprintf(key, sizeof key, "%s/action", steps[k].step);
            if (!json_object_get(per, key))
                continue;
            redisReply *r = NULL;
            if (redisGetReply(rc, (void **)&r) != REDIS_OK || !r)
                return -1;
            queued--;
            const char *state = r->type == REDIS_REPLY_STRING ? r->str : "(none)";
            if (strcmp(state, "ok") != 0)
                violation(c, "%s: %s action is in the %s ledger but its dedup record is %s",
                          saga, steps[k].step, steps[k].service, state);
            freeReplyObject(r);
        }
    }
    return queued == 0 ? 0 : -1;
}

static void check_saga(checker_t *c, const char *id, const char *status, const char *error,
                       json_t *per, json_t *const *by_saga, const ledger_step_t *steps,
                       size_t nsteps)
{
    ledger_report_t *r = c->r;
    if (!status) {
        r->missing++;
        violation(c, "%s: no saga hash in any partition", id);
        return;
    }
    bool completed = strcmp(status, "completed") == 0;
    bool compensated = strcmp(status, "compensated") == 0;
    if (completed)
        r->completed++;
    else if (compensated)
        r->compensated++;
    else if (strcmp(status, "stuck") == 0) {
        r->stuck++;
        if (!error || !*error)
            violation(c, "%s: stuck without a reason", id);
    } else {
        r->active++;
        violation(c, "%s: not terminal (%s)", id, status);
    }
    for (size_t k = 0; k < nsteps; k++) {
        char akey[256], ckey[256];
        snprintf(akey, sizeof akey, "%s/action", steps[k].step);
        snprintf(ckey, sizeof ckey, "%s/compensation", steps[k].step);
        json_int_t actions = per ? json_integer_value(json_object_get(per, akey)) : 0;
        json_int_t comps = per ? json_integer_value(json_object_get(per, ckey)) : 0;
        r->actions_applied += actions;
        r->actions_undone += comps;
        if (actions > 1)
            violation(c, "%s: %s action applied %lld times", id, steps[k].step,
                      (long long)actions);
        if (comps > 1)
            violation(c, "%s: %s compensation applied %lld times", id, steps[k].step,
                      (long long)comps);
        if (comps > 0 && actions == 0)
            violation(c, "%s: %s compensated without its action applied", id, steps[k].step);
        if (completed && (actions != 1 || comps != 0))
            violation(c, "%s: completed but %s has %lld action(s), %lld compensation(s)", id,
                      steps[k].step, (long long)actions, (long long)comps);
        if (compensated && actions != comps)
            violation(c, "%s: compensated but %s has %lld action(s), %lld compensation(s)", id,
                      steps[k].step, (long long)actions, (long long)comps);
        json_int_t net = json_integer_value(json_object_get(by_saga[k], id));
        if (compensated && net != 0)
            violation(c, "%s: compensated but ledger:{%s}:by_saga is %lld", id,
                      steps[k].service, (long long)net);
    }
}

int ledger_check(redisContext *rc, int partitions, const char *const *ids, size_t n,
                 const ledger_step_t *steps, size_t nsteps, FILE *out, long max_report,
                 ledger_report_t *report)
{
    memset(report, 0, sizeof *report);
    if (nsteps > LEDGER_CHECK_MAX_STEPS)
        return -1;
    checker_t c = {out, max_report, report};
    json_t *applied = json_object(), *known = json_object();
    json_t *by_saga[LEDGER_CHECK_MAX_STEPS] = {0};
    char **status = calloc(n ? n : 1, sizeof *status), **error = calloc(n ? n : 1, sizeof *error);
    int rc_ = -1;
    if (!status || !error)
        goto done;
    for (size_t k = 0; k < nsteps; k++) {
        bool seen = false; /* one service may serve several steps: read its ledger once */
        for (size_t j = 0; j < k; j++)
            seen = seen || strcmp(steps[j].service, steps[k].service) == 0;
        if (!seen && read_entries(rc, steps[k].service, applied, &c) < 0)
            goto done;
        if (!(by_saga[k] = read_by_saga(rc, steps[k].service)))
            goto done;
    }
    if (read_statuses(rc, partitions, ids, n, status, error) < 0)
        goto done;
    report->sagas = (long)n;
    for (size_t i = 0; i < n; i++) {
        json_object_set_new(known, ids[i], json_true());
        check_saga(&c, ids[i], status[i], error[i], json_object_get(applied, ids[i]), by_saga,
                   steps, nsteps);
    }
    const char *saga;
    json_t *per;
    json_object_foreach(applied, saga, per)
        if (!json_object_get(known, saga))
            violation(&c, "%s: ledger entries for a saga that was never started", saga);
    if (check_dedup_states(rc, applied, steps, nsteps, &c) < 0)
        goto done;
    rc_ = 0;
done:
    for (size_t i = 0; status && error && i < n; i++) {
        free(status[i]);
        free(error[i]);
    }
    free(status);
    free(error);
    for (size_t k = 0; k < nsteps; k++)
        json_decref(by_saga[k]);
    json_decref(applied);
    json_decref(known);
    return rc_;
}

const ledger_step_t LEDGER_ORDER_STEPS[LEDGER_ORDER_STEP_COUNT] = {
    {"reserve", "inventory"}, {"charge", "payment"}, {"schedule", "shipping"}};

int ledger_check_orders(redisContext *rc, int partitions, const char *prefix, long n, FILE *out,
                        long max_report, ledger_report_t *report)
{
    char **ids = calloc(n > 0 ? (size_t)n : 1, sizeof *ids);
    int rc_ = ids ? 0 : -1;
    for (long i = 0; rc_ == 0 && i < n; i++) {
        char id[128];
        snprintf(id, sizeof id, "%s-%ld", prefix, i);
        if (!(ids[i] = strdup(id)))
            rc_ = -1;
    }
    if (rc_ == 0)
        rc_ = ledger_check(rc, partitions, (const char *const *)ids, (size_t)n,
                           LEDGER_ORDER_STEPS, LEDGER_ORDER_STEP_COUNT, out, max_report, report);
    for (long i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
    return rc_;
}
