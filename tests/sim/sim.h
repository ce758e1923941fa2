/* sim.h - a deterministic simulation of the saga coordinator's logic (docs/simulation.md).
 *
 * One run drives the real state machine (machine.c) and the real saga encoding (saga.c)
 * through an in-memory world: a Redis-like store with version and epoch checks and an
 * outbox, an input topic with committed offsets, command topics that duplicate, delay and
 * reorder, participants that keep a ledger and follow docs/protocol.md, operators, and a
 * coordinator engine that mirrors coordinator.c turn by turn and crashes at any of its
 * crash points, then recovers as coordinator.c does. Time is virtual and every random
 * choice comes from one 64-bit seed, so a seed replays exactly. After the run, faults stop,
 * the world runs to quiescence and the invariants are checked. */
#ifndef SAGA_SIM_H
#define SAGA_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SIM_MAX_SAGAS 1000
#define SIM_MAX_VIOLATIONS 16   /* violations kept (with text) per run; more are counted */
#define SIM_VIOLATION_LEN 256

/* Deliberate defects, to prove that the checker catches what it claims to catch. */
typedef enum {
    SIM_PLANT_NONE = 0,
    SIM_PLANT_DOUBLE_APPLY,     /* a participant applies a redelivered action again */
    SIM_PLANT_FAKE_COMPENSATION,/* a participant answers ok to a compensation, undoes nothing */
    SIM_PLANT_NO_TIMER_REARM,   /* recovery does not re-arm the timers of reloaded sagas */
    SIM_PLANT_START_RACE,       /* coordinator.c as of db9e7ac: a reply read in the turn of a
                                 * duplicate start reaches the phantom saga (docs/simulation.md) */
    SIM_PLANT_SKIP_REDELIVERY,  /* coordinator.c as of db9e7ac: a retry/skip read again after a
                                 * crash applies to whatever failed since (docs/simulation.md) */
    SIM_PLANT_KEEP_OPEN_ROUND,  /* a round whose outcome is unknown (Redis connection lost)
                                 * does not discard the open round built on it: that round is
                                 * written after the reload anyway */
    SIM_PLANT_NO_TIMER_GATE,    /* coordinator.c before the timer gate: a due timer fires
                                 * though input appended before its due time is unread (a
                                 * reply that came in time loses to the timeout after a pause) */
    SIM_PLANT_COUNT
} sim_plant_t;

typedef struct sim_config {
    int sagas;                  /* sagas started per run; 0 = chosen by the seed (5..15) */
    sim_plant_t plant;
    FILE *trace;                /* when not NULL, every event is printed here */
} sim_config_t;

typedef struct sim_result {
    uint64_t seed;
    uint64_t trace_hash;        /* FNV-1a over every trace line: equal runs, equal hashes */
    uint64_t events;            /* events processed */
    uint64_t turns, transitions, commands, replies, crashes, outbox_resent;
    uint64_t pauses;            /* times the engine was frozen while time went on */
    uint64_t timers_held;       /* due timers held back by the gate (input before them unread) */
    uint64_t redis_errors;      /* rounds whose outcome the engine did not learn */
    uint64_t input_redelivered; /* input messages read again after a crash */
    uint64_t aborts, retries, skips;
    int sagas;
    int completed, compensated, stuck; /* end states */
    int64_t end_ms;             /* virtual time at quiescence */
    int violations;             /* all violations found */
    char violation[SIM_MAX_VIOLATIONS][SIM_VIOLATION_LEN];
} sim_result_t;

/* Runs one seed. Returns 0 when every invariant held, 1 when some did not (the result
 * lists them), -1 when the simulation itself could not run (definitions did not load). */
int sim_run(uint64_t seed, const sim_config_t *cfg, sim_result_t *out);

const char *sim_plant_name(sim_plant_t p);

#endif
