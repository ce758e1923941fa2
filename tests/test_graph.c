/* test_graph.c - the pictures of a definition (graph.h): the exact Mermaid text of
 * order-placement, the exact DOT text of trip-booking (a parallel group, a step without a
 * compensation), the JSON shape the dashboard draws, durations, and that
 * docs/definitions.md shows every example saga as --graph draws it. */
#include "graph.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opstest.h"
#include "test_paths.h"

#define GEN_TIMEOUT_MS 60000

static const char ORDER_MERMAID[] =
    "flowchart LR\n"
    "  start([\"order-placement v1<br/>deadline 1 min\"])\n"
    "  a0[\"reserve<br/>inventory.reserve<br/>topic: inventory.commands<br/>5 s, 3 attempts\"]\n"
    "  a1[\"charge<br/>payment.charge<br/>topic: payment.commands<br/>5 s, 2 attempts\"]\n"
    "  a2[\"schedule<br/>shipping.schedule<br/>topic: shipping.commands<br/>5 s, 3 attempts\"]\n"
    "  completed([\"completed\"])\n"
    "  c2[\"undo schedule<br/>shipping.cancel<br/>topic: shipping.commands<br/>30 s, 5 attempts\"]\n"
    "  c1[\"undo charge<br/>payment.refund<br/>topic: payment.commands<br/>30 s, 5 attempts\"]\n"
    "  c0[\"undo reserve<br/>inventory.release<br/>topic: inventory.commands<br/>30 s, 5 attempts\"]\n"
    "  compensated([\"compensated\"])\n"
    "  start --> a0\n"
    "  a0 --> a1\n"
    "  a1 --> a2\n"
    "  a2 --> completed\n"
    "  c2 -.-> c1\n"
    "  c1 -.-> c0\n"
    "  c0 -.-> compensated\n"
    "  a0 -. undo .- c0\n"
    "  a1 -. undo .- c1\n"
    "  a2 -. undo .- c2\n"
    "  classDef compensation fill:#f3efff,stroke:#7a5cc9\n"
    "  classDef nocompensation stroke-dasharray:5 3\n"
    "  class c0,c1,c2 compensation\n";

static const char TRIP_DOT[] =
    "digraph \"trip-booking v1\" {\n"
    "  rankdir=LR;\n"
    "  node [shape=box, style=rounded, fontname=\"Helvetica\", fontsize=10];\n"
    "  edge [fontname=\"Helvetica\", fontsize=9];\n"
    "  start [label=\"trip-booking v1\\ndeadline 2 min\", shape=oval];\n"
    "  a0 [label=\"flight\\nflight.book\\ntopic: flights.commands\\n10 s, 3 attempts\"];\n"
    "  subgraph cluster_g1 {\n"
    "    label=\"stay-and-drive (parallel)\";\n"
    "    style=dashed;\n"
    "    a1 [label=\"hotel\\nhotel.book\\ntopic: hotels.commands\\n10 s, 3 attempts\"];\n"
    "    a2 [label=\"car\\ncar.rent\\ntopic: cars.commands\\n10 s, 3 attempts\"];\n"
    "  }\n"
    "  a3 [label=\"confirm\\ntrip.confirm\\ntopic: notifications.commands\\n10 s, 3 attempts\\nno compensation\", style=\"rounded,dashed\"];\n"
    "  completed [label=\"completed\", shape=oval];\n"
    "  subgraph cluster_u1 {\n"
    "    label=\"undo stay-and-drive (parallel)\";\n"
    "    style=dashed;\n"
    "    c1 [label=\"undo hotel\\nhotel.cancel\\ntopic: hotels.commands\\n30 s, 5 attempts\", style=\"rounded,filled\", fillcolor=\"#f3efff\", color=\"#7a5cc9\"];\n"
    "    c2 [label=\"undo car\\ncar.cancel\\ntopic: cars.commands\\n30 s, 5 attempts\", style=\"rounded,filled\", fillcolor=\"#f3efff\", color=\"#7a5cc9\"];\n"
    "  }\n"
    "  c0 [label=\"undo flight\\nflight.cancel\\ntopic: flights.commands\\n30 s, 5 attempts\", style=\"rounded,filled\", fillcolor=\"#f3efff\", color=\"#7a5cc9\"];\n"
    "  compensated [label=\"compensated\", shape=oval];\n"
    "  start -> a0;\n"
    "  a0 -> a1;\n"
    "  a0 -> a2;\n"
    "  a1 -> a3;\n"
    "  a2 -> a3;\n"
    "  a3 -> completed;\n"
    "  c1 -> c0 [style=dashed];\n"
    "  c2 -> c0 [style=dashed];\n"
    "  c0 -> compensated [style=dashed];\n"
    "  a0 -> c0 [style=dotted, arrowhead=none, label=\"undo\"];\n"
    "  a1 -> c1 [style=dotted, arrowhead=none, label=\"undo\"];\n"
    "  a2 -> c2 [style=dotted, arrowhead=none, label=\"undo\"];\n"
    "}\n";

static definition_t *load(const char *rel)
{
    char *path = test_source_path(rel);
    defn_errors_t errs = {0};
    definition_t *d = definition_load_file(path, &errs);
    cr_assert_not_null(d, "%s does not load", path);
    defn_errors_release(&errs);
    free(path);
    return d;
}

static char *draw(const definition_t *d, graph_format_t fmt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert_eq(graph_write(d, fmt, out), 0);
    fclose(out);
    return buf;
}

Test(graph, order_placement_as_mermaid)
{
    definition_t *d = load("sagas/order-placement.json");
    char *got = draw(d, GRAPH_MERMAID);
    cr_expect_str_eq(got, ORDER_MERMAID);
    free(got);
    definition_free(d);
}

Test(graph, trip_booking_as_dot)
{
    definition_t *d = load("sagas/trip-booking.json");
    char *got = draw(d, GRAPH_DOT);
    cr_expect_str_eq(got, TRIP_DOT);
    free(got);
    definition_free(d);
}

Test(graph, json_shape_for_the_dashboard)
{
    definition_t *d = load("sagas/trip-booking.json");
    json_t *j = graph_json(d);
    cr_assert_not_null(j);
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_expect_str_eq(
        text,
        "{\"name\":\"trip-booking\",\"version\":1,\"deadline_ms\":120000,"
        "\"on_compensation_failure\":\"continue\",\"groups\":["
        "{\"name\":null,\"parallel\":false,\"steps\":[{\"name\":\"flight\",\"topic\":"
        "\"flights.commands\",\"command\":\"flight.book\",\"timeout_ms\":10000,"
        "\"max_attempts\":3,\"compensate_on_timeout\":true,\"compensation\":{\"command\":"
        "\"flight.cancel\",\"topic\":\"flights.commands\",\"timeout_ms\":30000,"
        "\"max_attempts\":5}}]},"
        "{\"name\":\"stay-and-drive\",\"parallel\":true,\"steps\":[{\"name\":\"hotel\","
        "\"topic\":\"hotels.commands\",\"command\":\"hotel.book\",\"timeout_ms\":10000,"
        "\"max_attempts\":3,\"compensate_on_timeout\":true,\"compensation\":{\"command\":"
        "\"hotel.cancel\",\"topic\":\"hotels.commands\",\"timeout_ms\":30000,"
        "\"max_attempts\":5}},{\"name\":\"car\",\"topic\":\"cars.commands\",\"command\":"
        "\"car.rent\",\"timeout_ms\":10000,\"max_attempts\":3,\"compensate_on_timeout\":true,"
        "\"compensation\":{\"command\":\"car.cancel\",\"topic\":\"cars.commands\","
        "\"timeout_ms\":30000,\"max_attempts\":5}}]},"
        "{\"name\":null,\"parallel\":false,\"steps\":[{\"name\":\"confirm\",\"topic\":"
        "\"notifications.commands\",\"command\":\"trip.confirm\",\"timeout_ms\":10000,"
        "\"max_attempts\":3,\"compensate_on_timeout\":true,\"compensation\":null}]}]}");
    free(text);
    json_decref(j);
    definition_free(d);
}

Test(graph, a_saga_without_compensations_and_formats)
{
    const char *text = "{\"name\": \"ro\", \"version\": 2, \"steps\": [{\"name\": \"look\", "
                       "\"topic\": \"t\", \"action\": {\"command\": \"x.look\", \"timeout_ms\": "
                       "7200000}, \"compensation\": \"none\"}]}";
    definition_t *d = definition_load_string(text, strlen(text), "ro.json", NULL);
    cr_assert_not_null(d);
    char *got = draw(d, GRAPH_MERMAID);
    cr_expect_str_eq(got, "flowchart LR\n"
                          "  start([\"ro v2\"])\n"
                          "  a0[\"look<br/>x.look<br/>topic: t<br/>2 h, 3 attempts<br/>no compensation\"]\n"
                          "  completed([\"completed\"])\n"
                          "  compensated([\"compensated\"])\n"
                          "  start --> a0\n"
                          "  a0 --> completed\n"
                          "  start -.-> compensated\n"
                          "  classDef compensation fill:#f3efff,stroke:#7a5cc9\n"
                          "  classDef nocompensation stroke-dasharray:5 3\n"
                          "  class a0 nocompensation\n");
    free(got);
    definition_free(d);

    graph_format_t f;
    cr_expect(graph_format_parse("dot", &f) == 0 && f == GRAPH_DOT);
    cr_expect(graph_format_parse("mermaid", &f) == 0 && f == GRAPH_MERMAID);
    cr_expect_eq(graph_format_parse("svg", &f), -1);
    char buf[32];
    const struct { int64_t ms; const char *want; } D[] = {
        {500, "500 ms"}, {1500, "1500 ms"}, {5000, "5 s"}, {120000, "2 min"}, {90000, "90 s"},
        {3600000, "1 h"}, {0, "0 ms"}};
    for (size_t i = 0; i < sizeof D / sizeof *D; i++) {
        graph_format_duration(D[i].ms, buf, sizeof buf);
        cr_expect_str_eq(buf, D[i].want);
    }
}

/* The diagrams of docs/definitions.md are generated: the doc must hold what
 * scripts/gen-diagrams.sh writes now (run it after changing a saga or the drawing). */
Test(graph, docs_show_every_example_saga_as_generated)
{
    char *script = test_source_path("scripts/gen-diagrams.sh");
    ops_run_t r;
    int rc = ops_run(&r, (const char *const[]){"/bin/bash", script, "--check", NULL}, NULL, NULL,
                     GEN_TIMEOUT_MS);
    cr_expect_eq(rc, 0, "docs/definitions.md is out of date:\n%s%s", r.out, r.err);
    ops_run_release(&r);
    free(script);
}
