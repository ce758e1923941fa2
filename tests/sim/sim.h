/* sim.h - the deterministic simulation of the saga coordinator (docs/simulation.md).
 *
 * One run drives the real engine (engine.c, with the real state machine and saga encoding
 * under it) and, on half the seeds, the real membership (membership.c, membership=redis:
 * leases in the store model on the virtual clock) through an in-memory world: the store as a model of the Redis store behind
 * the store port (simstore.h), the bus over in-memory input logs behind the bus port
 * (simbus.h), command topics that duplicate, delay and reorder, participants that keep a
 * ledger and follow docs/protocol.md, a client and an operator. Engine instances are
 * killed at the engine's crash points, frozen, replaced while frozen (zombies), lose their
 * Redis connection, find Redis down, and lose deliveries. Time is virtual and every random choice comes
 * from one 64-bit seed, so a seed replays exactly. After the run, faults stop, the world
 * runs to quiescence and the invariants are checked. */
#ifndef SAGA_SIM_H
#define SAGA_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SIM_MAX_SAGAS 1000
#define SIM_MAX_VIOLATIONS 16   /* violations kept (with text) per run; more are counted */
#define SIM_VIOLATION_LEN 256

/* Deliberate defects of the world's participants, to prove that the checker catches what
 * it claims to catch (defects of the engine are planted by scripts/mutants.sh). */
typedef enum {
    SIM_PLANT_NONE = 0,
    SIM_PLANT_DOUBLE_APPLY,     /* a participant applies a redelivered action again */
    SIM_PLANT_FAKE_COMPENSATION,/* a participant answers ok to a compensation, undoes nothing */
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
    uint64_t turns, transitions, commands, crashes, outbox_resent;
    uint64_t pauses;            /* times an instance was frozen while time went on */
    uint64_t zombies;           /* ... and its partitions taken meanwhile */
    uint64_t fenced;            /* times an instance found itself fenced (a zombie's writes) */
    uint64_t timers_held;       /* due timers held back by the gate (input before them unread) */
    uint64_t redis_errors;      /* rounds whose outcome the engine did not learn */
    uint64_t redis_outages;     /* times the Redis server was down for a while */
    uint64_t delivery_failures; /* produced messages whose delivery failed */
    uint64_t input_redelivered; /* input messages read again after a crash */
    uint64_t aborts, retries, skips;
    bool leased;                /* membership=redis (the real membership.c), else the world's */
    uint64_t leases_lost;       /* membership=redis: partitions given up with the lease lost */
    uint64_t hand_overs;        /* ... handed over cleanly (a rebalance) */
    uint64_t joins, leaves;     /* ... instances joining, leaving on SIGTERM */
    uint64_t lease_resets;      /* ... times Redis lost every lease (a restart) */
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
