/* graph.h - a picture of a saga definition: Mermaid or Graphviz DOT text for people and
 * docs (saga-coordinator --graph), and the same shape as JSON for the dashboard, which
 * draws it as SVG coloured by a run's phases.
 *
 * The picture: a start node, the steps in order (a parallel group as a box around its
 * steps), each with its command, topic, timeout and attempts, then "completed"; below,
 * the compensations in reverse order joined by dashed edges down to "compensated", each
 * tied to its step by a dotted "undo" link. A step without a compensation is drawn with a
 * dashed border and says "no compensation". Output depends only on the definition, so it
 * can be checked into docs and compared (scripts/gen-diagrams.sh). */
#ifndef SAGA_GRAPH_H
#define SAGA_GRAPH_H

#include "definition.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    GRAPH_MERMAID = 0,   /* a Mermaid flowchart (GitHub renders ```mermaid blocks) */
    GRAPH_DOT            /* Graphviz DOT: dot -Tsvg */
} graph_format_t;

/* Parses "mermaid" or "dot". Returns 0, or -1 for another name. */
int graph_format_parse(const char *name, graph_format_t *out);

/* Writes the picture of d to out. Returns 0, or -1 when writing failed. */
int graph_write(const definition_t *d, graph_format_t fmt, FILE *out);

/* The shape of d (new reference), what the dashboard draws:
 * {"name", "version", "deadline_ms" (0 = none), "on_compensation_failure",
 *  "groups": [{"name" (or null), "parallel", "steps": [{"name", "topic", "command",
 *  "timeout_ms", "max_attempts", "compensate_on_timeout", "compensation": null or
 *  {"command", "topic", "timeout_ms", "max_attempts"}}]}]}. NULL when out of memory. */
json_t *graph_json(const definition_t *d);

/* A duration as the pictures write it: "500 ms", "5 s", "2 min", "1 h"; whole units only,
 * else the smaller unit ("1500 ms"). */
void graph_format_duration(int64_t ms, char *buf, size_t len);

#endif
