/* ledger_check.h - checks a run of sagas against the example services' ledgers and the
 * documented Redis keys only (docs/redis.md, docs/participants.md): every saga terminal,
 * every effect applied at most once per idempotency key, no compensation without its
 * action, no action applied after its tombstone, compensated sagas netting to zero and
 * completed sagas with every action applied once and none undone.
 *
 * The services are named by ledger (e.g. "inventory" for ledger:{inventory}:...), each
 * with the step of the saga it serves, in step order (the order-placement saga: reserve,
 * charge, schedule). */
#ifndef SAGA_TEST_LEDGER_CHECK_H
#define SAGA_TEST_LEDGER_CHECK_H

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stddef.h>

#define LEDGER_CHECK_MAX_STEPS 8

typedef struct ledger_step {
    const char *step;     /* step name in the definition, e.g. "reserve" */
    const char *service;  /* ledger name, e.g. "inventory" */
} ledger_step_t;

typedef struct ledger_report {
    long sagas;          /* ids checked */
    long completed, compensated, stuck;
    long missing;        /* no saga hash in any partition */
    long active;         /* still running or compensating */
    long entries;        /* ledger entries read */
    long actions_applied, actions_undone;
    long violations;     /* every broken invariant, counted once per finding */
} ledger_report_t;

/* Checks the sagas ids[0..n) (partitions: the input topic's partition count) against the
 * ledgers of steps[0..nsteps). Each violation is described on out (may be NULL), the first
 * max_report of them only. Returns 0 when the ledgers and sagas could be read (then
 * *report holds the figures, violations included), -1 on a Redis error. */
int ledger_check(redisContext *rc, int partitions, const char *const *ids, size_t n,
                 const ledger_step_t *steps, size_t nsteps, FILE *out, long max_report,
                 ledger_report_t *report);

/* The order-placement saga's steps and the example services that serve them (reserve:
 * inventory, charge: payment, schedule: shipping), LEDGER_ORDER_STEP_COUNT of them. */
#define LEDGER_ORDER_STEP_COUNT 3
extern const ledger_step_t LEDGER_ORDER_STEPS[LEDGER_ORDER_STEP_COUNT];

/* ledger_check of the order-placement sagas PREFIX-0 .. PREFIX-(n-1), as the suites that
 * run the example services produce them (services_produce_order). */
int ledger_check_orders(redisContext *rc, int partitions, const char *prefix, long n, FILE *out,
                        long max_report, ledger_report_t *report);

#endif
