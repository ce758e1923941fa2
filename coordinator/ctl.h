/* ctl.h - the verbs of sagactl, the operator's command line: list, show, stats (read from
 * the documented Redis keys through query.h) and start, abort, retry, skip (requests
 * produced to the coordinators' input topic; sagactl never writes saga state itself).
 *
 * Each verb prints aligned text, or one JSON document with --json, to opts->out, explains
 * failures on opts->err, and returns one of the exit codes below (documented in
 * `sagactl --help` and docs/operations.md). */
#ifndef SAGA_CTL_H
#define SAGA_CTL_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    CTL_OK = 0,             /* done; start --wait: the saga completed */
    CTL_USAGE = 1,          /* bad verb, option or value */
    CTL_NOT_FOUND = 2,      /* no such saga */
    CTL_NOT_COMPLETED = 3,  /* start --wait: the saga compensated, got stuck or was rejected */
    CTL_UNREACHABLE = 4,    /* Redis or Kafka unreachable, or failing */
    CTL_TIMEOUT = 5,        /* start --wait: no outcome within the timeout */
    CTL_NOT_APPLICABLE = 6  /* the saga's state does not allow the verb */
} ctl_exit_t;

#define CTL_WAIT_TIMEOUT_DEFAULT_S 60
#define CTL_PRODUCE_TIMEOUT_MS 10000   /* delivery of a request before Kafka counts as down */
#define CTL_WAIT_POLL_MS 500           /* Redis polling period while waiting */
#define CTL_ERROR_COLUMN 60            /* errors are cut to this width in tables */

typedef struct ctl_options {
    const config_t *cfg;      /* connection settings, borrowed */
    bool json;
    FILE *out, *err;
    /* list */
    const char *status, *definition, *cursor;
    int64_t since_ms, until_ms;   /* 0 = no bound */
    int limit;                    /* 0 = default */
    /* start */
    const char *input_path;       /* file, "-" for stdin, NULL for {} */
    const char *id;               /* NULL: generated */
    int version;                  /* 0 = latest */
    bool wait;
    double timeout_s;             /* 0 = CTL_WAIT_TIMEOUT_DEFAULT_S */
    /* abort, skip */
    const char *reason;
    /* simulate (also input_path, id, version) */
    const char *fail_step;        /* NULL or the step whose action fails */
    const char *timeout_step;     /* NULL or the step whose action never replies */
} ctl_options_t;

int ctl_list(const ctl_options_t *o);
int ctl_show(const ctl_options_t *o, const char *id);
int ctl_stats(const ctl_options_t *o);
/* The cluster view (query_cluster): live instances, each partition's owner, epoch, age,
 * sagas active, input lag and outbox, and the newest stuck sagas. */
int ctl_cluster(const ctl_options_t *o);
int ctl_start(const ctl_options_t *o, const char *definition);
/* A dry run of definition (from cfg->definitions) through the state machine, no Kafka nor
 * Redis (dryrun.h): prints the commands with their payloads, the compensations and the
 * final status. CTL_OK when the saga would complete, CTL_NOT_COMPLETED when it would end
 * otherwise or its input is rejected, CTL_NOT_FOUND for an unknown definition, CTL_USAGE
 * for definitions that do not load, a bad input file or a step option naming no step. */
int ctl_simulate(const ctl_options_t *o, const char *definition);
/* verb: "abort", "retry" or "skip". */
int ctl_operator(const ctl_options_t *o, const char *verb, const char *id);

/* Parses a time for --since/--until: epoch milliseconds (digits), an ISO 8601 UTC time
 * ("2026-11-25T16:21:06Z", "2026-11-25 16:21:06", "2026-11-25"), or an age before now_ms
 * ("30s", "15m", "2h", "7d"). Returns 0 or -1. */
int ctl_parse_time(const char *s, int64_t now_ms, int64_t *out);

/* Formats epoch ms as "2026-11-25 16:21:06.123Z" (UTC); "-" for 0. */
void ctl_format_time(int64_t ms, char *buf, size_t len);

/* Formats a duration: "850 ms", "12.3 s", "4m05s", "3h02m". */
void ctl_format_duration(int64_t ms, char *buf, size_t len);

#endif
