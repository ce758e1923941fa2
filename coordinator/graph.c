/* graph.c - Mermaid, DOT and JSON pictures of a saga definition (see graph.h). */
#include "graph.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#define GRAPH_LABEL_MAX 1024        /* one node's label */
#define GRAPH_MS_PER_S 1000
#define GRAPH_MS_PER_MIN 60000
#define GRAPH_MS_PER_H 3600000
#define GRAPH_COMP_FILL "#f3efff"   /* compensations: the dashboard's "compensated" hue */
#define GRAPH_COMP_STROKE "#7a5cc9"

int graph_format_parse(const char *name, graph_format_t *out)
{
    if (name && strcmp(name, "mermaid") == 0)
        *out = GRAPH_MERMAID;
    else if (name && strcmp(name, "dot") == 0)
        *out = GRAPH_DOT;
    else
        return -1;
    return 0;
}

void graph_format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms > 0 && ms % GRAPH_MS_PER_H == 0)
        snprintf(buf, len, "%" PRId64 " h", ms / GRAPH_MS_PER_H);
    else if (ms > 0 && ms % GRAPH_MS_PER_MIN == 0)
        snprintf(buf, len, "%" PRId64 " min", ms / GRAPH_MS_PER_MIN);
    else if (ms > 0 && ms % GRAPH_MS_PER_S == 0)
        snprintf(buf, len, "%" PRId64 " s", ms / GRAPH_MS_PER_S);
    else
        snprintf(buf, len, "%" PRId64 " ms", ms);
}

/* Whether group g was written as {"parallel": [...]} (a group of one step may be). */
static bool group_is_parallel(const definition_t *d, int g)
{
    const json_t *el = json_array_get(json_object_get(d->json, "steps"), (size_t)g);
    return json_object_get(el, "parallel") != NULL;
}

static bool group_has_compensation(const definition_t *d, int g)
{
    for (size_t i = 0; i < d->step_count; i++)
        if (d->steps[i].group == g && d->steps[i].has_compensation)
            return true;
    return false;
}

/* The nearest group before g with a compensation, or -1. */
static int previous_compensated_group(const definition_t *d, int g)
{
    for (int k = g - 1; k >= 0; k--)
        if (group_has_compensation(d, k))
            return k;
    return -1;
}

/* The caption of group g: "NAME (parallel)" or "parallel". */
static void group_caption(const definition_t *d, int g, const char *prefix, char *buf,
                          size_t len)
{
    const char *name = d->group_names ? d->group_names[g] : NULL;
    snprintf(buf, len, "%s%s%sparallel%s", prefix, name ? name : "", name ? " (" : "",
             name ? ")" : "");
}

/* The lines of a command's label, joined by sep. */
static void command_label(const defn_step_t *st, const defn_command_t *c, bool compensation,
                          const char *sep, char *buf, size_t len)
{
    char timeout[32];
    graph_format_duration(c->timeout_ms, timeout, sizeof timeout);
    int n = snprintf(buf, len, "%s%s%s%s%stopic: %s%s%s, %d attempt%s", compensation ? "undo " : "",
                     st->name, sep, c->type, sep, c->topic, sep, timeout, c->retry.max_attempts,
                     c->retry.max_attempts == 1 ? "" : "s");
    size_t used = n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
    if (!compensation && !st->has_compensation)
        snprintf(buf + used, len - used, "%sno compensation", sep);
    else if (!compensation && !st->compensate_on_timeout)
        snprintf(buf + used, len - used, "%snot undone after a timeout", sep);
}

static void start_label(const definition_t *d, const char *sep, char *buf, size_t len)
{
    char deadline[32];
    graph_format_duration(d->deadline_ms, deadline, sizeof deadline);
    if (d->deadline_ms > 0)
        snprintf(buf, len, "%s v%d%sdeadline %s", d->name, d->version, sep, deadline);
    else
        snprintf(buf, len, "%s v%d", d->name, d->version);
}

/* ---------- Mermaid ---------- */

/* Edges from every step of group a to every step of group b: their actions, or with comp
 * their compensations. a = -1 stands for from_node, b = -1 for to_node. arrow is
 * Mermaid's. */
static void mermaid_edges(FILE *out, const definition_t *d, int a, int b, bool comp,
                          const char *from_node, const char *to_node, const char *arrow)
{
    /* Callers pass NULL for an end they do not use (a or b >= 0); the compiler cannot see
     * that pairing when it inlines, so never hand printf a NULL. */
    from_node = from_node ? from_node : "";
    to_node = to_node ? to_node : "";
    const char *p = comp ? "c" : "a";
    for (size_t i = 0; i < d->step_count || (a < 0 && i == 0); i++) {
        if (a >= 0 && (d->steps[i].group != a || (comp && !d->steps[i].has_compensation)))
            continue;
        for (size_t j = 0; j < d->step_count || (b < 0 && j == 0); j++) {
            if (b >= 0 && (d->steps[j].group != b || (comp && !d->steps[j].has_compensation)))
                continue;
            if (a < 0)
                fprintf(out, "  %s %s ", from_node, arrow);
            else
                fprintf(out, "  %s%zu %s ", p, i, arrow);
            if (b < 0)
                fprintf(out, "%s\n", to_node);
            else
                fprintf(out, "%s%zu\n", p, j);
            if (b < 0)
                break;
        }
        if (a < 0)
            break;
    }
}

static void write_mermaid(const definition_t *d, FILE *out)
{
    char label[GRAPH_LABEL_MAX], caption[GRAPH_LABEL_MAX];
    fprintf(out, "flowchart LR\n");
    start_label(d, "<br/>", label, sizeof label);
    fprintf(out, "  start([\"%s\"])\n", label);
    for (int g = 0; g < d->group_count; g++) {
        bool par = group_is_parallel(d, g);
        if (par) {
            group_caption(d, g, "", caption, sizeof caption);
            fprintf(out, "  subgraph g%d [\"%s\"]\n", g, caption);
        }
        for (size_t i = 0; i < d->step_count; i++) {
            if (d->steps[i].group != g)
                continue;
            command_label(&d->steps[i], &d->steps[i].action, false, "<br/>", label,
                          sizeof label);
            fprintf(out, "%s  a%zu[\"%s\"]\n", par ? "  " : "", i, label);
        }
        if (par)
            fprintf(out, "  end\n");
    }
    fprintf(out, "  completed([\"completed\"])\n");
    for (int g = d->group_count - 1; g >= 0; g--) {
        bool par = group_is_parallel(d, g) && group_has_compensation(d, g);
        if (par) {
            group_caption(d, g, "undo ", caption, sizeof caption);
            fprintf(out, "  subgraph u%d [\"%s\"]\n", g, caption);
        }
        for (size_t i = 0; i < d->step_count; i++) {
            if (d->steps[i].group != g || !d->steps[i].has_compensation)
                continue;
            command_label(&d->steps[i], &d->steps[i].compensation, true, "<br/>", label,
                          sizeof label);
            fprintf(out, "%s  c%zu[\"%s\"]\n", par ? "  " : "", i, label);
        }
        if (par)
            fprintf(out, "  end\n");
    }
    fprintf(out, "  compensated([\"compensated\"])\n");

    /* Forward, then the compensation path in reverse, then the undo links. */
    mermaid_edges(out, d, -1, 0, false, "start", NULL, "-->");
    for (int g = 0; g + 1 < d->group_count; g++)
        mermaid_edges(out, d, g, g + 1, false, NULL, NULL, "-->");
    mermaid_edges(out, d, d->group_count - 1, -1, false, NULL, "completed", "-->");
    for (int g = d->group_count - 1; g >= 0; g--) {
        if (!group_has_compensation(d, g))
            continue;
        int prev = previous_compensated_group(d, g);
        if (prev >= 0)
            mermaid_edges(out, d, g, prev, true, NULL, NULL, "-.->");
        else
            mermaid_edges(out, d, g, -1, true, NULL, "compensated", "-.->");
    }
    bool any_comp = false, any_none = false;
    for (size_t i = 0; i < d->step_count; i++) {
        if (d->steps[i].has_compensation) {
            fprintf(out, "  a%zu -. undo .- c%zu\n", i, i);
            any_comp = true;
        } else {
            any_none = true;
        }
    }
    if (!any_comp)
        fprintf(out, "  start -.-> compensated\n");
    fprintf(out, "  classDef compensation fill:%s,stroke:%s\n", GRAPH_COMP_FILL,
            GRAPH_COMP_STROKE);
    fprintf(out, "  classDef nocompensation stroke-dasharray:5 3\n");
    const char *classes[2] = {"compensation", "nocompensation"};
    bool want[2] = {any_comp, any_none};
    for (int k = 0; k < 2; k++) {
        if (!want[k])
            continue;
        fprintf(out, "  class ");
        const char *sep = "";
        for (size_t i = 0; i < d->step_count; i++) {
            if (d->steps[i].has_compensation != (k == 0))
                continue;
            fprintf(out, "%s%c%zu", sep, k == 0 ? 'c' : 'a', i);
            sep = ",";
        }
        fprintf(out, " %s\n", classes[k]);
    }
}

/* ---------- DOT ---------- */

static void dot_edges(FILE *out, const definition_t *d, int a, int b, bool comp,
                      const char *from_node, const char *to_node, const char *attrs)
{
    /* Callers pass NULL for an end they do not use (a or b >= 0); the compiler cannot see
     * that pairing when it inlines, so never hand printf a NULL. */
    from_node = from_node ? from_node : "";
    to_node = to_node ? to_node : "";
    const char *p = comp ? "c" : "a";
    for (size_t i = 0; i < d->step_count || (a < 0 && i == 0); i++) {
        if (a >= 0 && (d->steps[i].group != a || (comp && !d->steps[i].has_compensation)))
            continue;
        for (size_t j = 0; j < d->step_count || (b < 0 && j == 0); j++) {
            if (b >= 0 && (d->steps[j].group != b || (comp && !d->steps[j].has_compensation)))
                continue;
            if (a < 0)
                fprintf(out, "  %s -> ", from_node);
            else
                fprintf(out, "  %s%zu -> ", p, i);
            if (b < 0)
                fprintf(out, "%s", to_node);
            else
                fprintf(out, "%s%zu", p, j);
            fprintf(out, "%s;\n", attrs);
            if (b < 0)
                break;
        }
        if (a < 0)
            break;
    }
}

static void write_dot(const definition_t *d, FILE *out)
{
    char label[GRAPH_LABEL_MAX], caption[GRAPH_LABEL_MAX];
    fprintf(out, "digraph \"%s v%d\" {\n", d->name, d->version);
    fprintf(out, "  rankdir=LR;\n");
    fprintf(out, "  node [shape=box, style=rounded, fontname=\"Helvetica\", fontsize=10];\n");
    fprintf(out, "  edge [fontname=\"Helvetica\", fontsize=9];\n");
    start_label(d, "\\n", label, sizeof label);
    fprintf(out, "  start [label=\"%s\", shape=oval];\n", label);
    for (int g = 0; g < d->group_count; g++) {
        bool par = group_is_parallel(d, g);
        if (par) {
            group_caption(d, g, "", caption, sizeof caption);
            fprintf(out, "  subgraph cluster_g%d {\n    label=\"%s\";\n    style=dashed;\n", g,
                    caption);
        }
        for (size_t i = 0; i < d->step_count; i++) {
            const defn_step_t *st = &d->steps[i];
            if (st->group != g)
                continue;
            command_label(st, &st->action, false, "\\n", label, sizeof label);
            fprintf(out, "%s  a%zu [label=\"%s\"%s];\n", par ? "  " : "", i, label,
                    st->has_compensation ? "" : ", style=\"rounded,dashed\"");
        }
        if (par)
            fprintf(out, "  }\n");
    }
    fprintf(out, "  completed [label=\"completed\", shape=oval];\n");
    for (int g = d->group_count - 1; g >= 0; g--) {
        bool par = group_is_parallel(d, g) && group_has_compensation(d, g);
        if (par) {
            group_caption(d, g, "undo ", caption, sizeof caption);
            fprintf(out, "  subgraph cluster_u%d {\n    label=\"%s\";\n    style=dashed;\n", g,
                    caption);
        }
        for (size_t i = 0; i < d->step_count; i++) {
            const defn_step_t *st = &d->steps[i];
            if (st->group != g || !st->has_compensation)
                continue;
            command_label(st, &st->compensation, true, "\\n", label, sizeof label);
            fprintf(out,
                    "%s  c%zu [label=\"%s\", style=\"rounded,filled\", fillcolor=\"%s\", "
                    "color=\"%s\"];\n",
                    par ? "  " : "", i, label, GRAPH_COMP_FILL, GRAPH_COMP_STROKE);
        }
        if (par)
            fprintf(out, "  }\n");
    }
    fprintf(out, "  compensated [label=\"compensated\", shape=oval];\n");

    dot_edges(out, d, -1, 0, false, "start", NULL, "");
    for (int g = 0; g + 1 < d->group_count; g++)
        dot_edges(out, d, g, g + 1, false, NULL, NULL, "");
    dot_edges(out, d, d->group_count - 1, -1, false, NULL, "completed", "");
    bool any_comp = false;
    for (int g = d->group_count - 1; g >= 0; g--) {
        if (!group_has_compensation(d, g))
            continue;
        any_comp = true;
        int prev = previous_compensated_group(d, g);
        if (prev >= 0)
            dot_edges(out, d, g, prev, true, NULL, NULL, " [style=dashed]");
        else
            dot_edges(out, d, g, -1, true, NULL, "compensated", " [style=dashed]");
    }
    for (size_t i = 0; i < d->step_count; i++)
        if (d->steps[i].has_compensation)
            fprintf(out, "  a%zu -> c%zu [style=dotted, arrowhead=none, label=\"undo\"];\n", i,
                    i);
    if (!any_comp)
        fprintf(out, "  start -> compensated [style=dashed];\n");
    fprintf(out, "}\n");
}

int graph_write(const definition_t *d, graph_format_t fmt, FILE *out)
{
    if (fmt == GRAPH_DOT)
        write_dot(d, out);
    else
        write_mermaid(d, out);
    return ferror(out) ? -1 : 0;
}

/* ---------- JSON ---------- */

static json_t *command_json(const defn_command_t *c)
{
    return json_pack("{s:s, s:s, s:I, s:i}", "command", c->type, "topic", c->topic,
                     "timeout_ms", (json_int_t)c->timeout_ms, "max_attempts",
                     c->retry.max_attempts);
}

json_t *graph_json(const definition_t *d)
{
    json_t *groups = json_array();
    for (int g = 0; groups && g < d->group_count; g++) {
        json_t *steps = json_array();
        for (size_t i = 0; steps && i < d->step_count; i++) {
            const defn_step_t *st = &d->steps[i];
            if (st->group != g)
                continue;
            json_t *s = json_pack("{s:s, s:s, s:s, s:I, s:i, s:b, s:o}", "name", st->name,
                                  "topic", st->topic, "command", st->action.type, "timeout_ms",
                                  (json_int_t)st->action.timeout_ms, "max_attempts",
                                  st->action.retry.max_attempts, "compensate_on_timeout",
                                  st->compensate_on_timeout, "compensation",
                                  st->has_compensation ? command_json(&st->compensation)
                                                       : json_null());
            if (json_array_append_new(steps, s) < 0) {
                json_decref(steps);
                steps = NULL;
            }
        }
        const char *name = d->group_names ? d->group_names[g] : NULL;
        json_t *o = json_pack("{s:o, s:b, s:o}", "name", name ? json_string(name) : json_null(),
                              "parallel", group_is_parallel(d, g), "steps", steps);
        if (json_array_append_new(groups, o) < 0) {
            json_decref(groups);
            groups = NULL;
        }
    }
    return json_pack("{s:s, s:i, s:I, s:s, s:o}", "name", d->name, "version", d->version,
                     "deadline_ms", (json_int_t)d->deadline_ms, "on_compensation_failure",
                     d->on_compensation_failure == DEFN_ON_COMP_FAILURE_CONTINUE ? "continue"
                                                                                  : "stop",
                     "groups", groups);
}
