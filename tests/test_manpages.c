/* test_manpages.c - the man pages (packaging/man/) against the programs they describe.
 *
 * The pages are written by hand in troff, so this is what keeps them from drifting:
 * every option and SAGA_* variable that `saga-coordinator --help` and `sagactl --help`
 * print is in the page, and every option the page names is one --help knows; every verb
 * of sagactl has its entry; every field of the definition tables in docs/definitions.md
 * is in saga-definition(5); and groff renders each page without a warning. */
#include "test_paths.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAN_MAX_BYTES (1024 * 1024)
#define MAN_TOKEN_MAX 128

/* The whole output of a shell command, or of a file with "cat". New string, never NULL. */
static char *capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    char *buf = malloc(MAN_MAX_BYTES);
    cr_assert_not_null(buf);
    size_t n = fread(buf, 1, MAN_MAX_BYTES - 1, p);
    buf[n] = '\0';
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    return buf;
}

static char *help_of(const char *program)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "\"%s/%s\" --help", getenv("SAGA_BIN_DIR"), program);
    return capture(cmd);
}

/* The page's text with the troff escapes that split words taken out: \- becomes -,
 * \fB \fI \fR \fP and double quotes disappear, \(dq becomes a quote. */
static char *page_text(const char *page)
{
    char *path = test_source_path(page), cmd[4096];
    snprintf(cmd, sizeof cmd, "cat \"%s\"", path);
    free(path);
    char *raw = capture(cmd), *out = malloc(strlen(raw) + 1);
    cr_assert_not_null(out);
    size_t j = 0;
    for (const char *s = raw; *s; s++) {
        if (s[0] == '\\' && s[1] == '-') {
            out[j++] = '-';
            s++;
        } else if (s[0] == '\\' && s[1] == 'f' && s[2]) {
            s += 2;
        } else if (strncmp(s, "\\(dq", 4) == 0) {
            out[j++] = '"';
            s += 3;
        } else if (*s != '"') {
            out[j++] = *s;
        }
    }
    out[j] = '\0';
    free(raw);
    return out;
}

/* Copies the token starting at s (chars of set) into tok; returns its length. */
static size_t token_at(const char *s, const char *set, char *tok)
{
    size_t n = 0;
    while (s[n] && n < MAN_TOKEN_MAX - 1 && (isalnum((unsigned char)s[n]) || strchr(set, s[n])))
        n++;
    memcpy(tok, s, n);
    tok[n] = '\0';
    return n;
}

/* Every "--option" of help is in page: cut at its first upper-case letter (--kafka.PROP
 * is --kafka. followed by a placeholder; --NAME=VALUE is only a placeholder). */
static void help_options_in_page(const char *help, const char *page, const char *what)
{
    int checked = 0;
    for (const char *s = help; (s = strstr(s, "--")); s += 2) {
        char tok[MAN_TOKEN_MAX];
        token_at(s + 2, "_.-", tok);
        size_t cut = 0;
        while (tok[cut] && !isupper((unsigned char)tok[cut]))
            cut++;
        tok[cut] = '\0';
        if (!*tok)
            continue;
        char opt[MAN_TOKEN_MAX + 2];
        snprintf(opt, sizeof opt, "--%s", tok);
        cr_expect_not_null(strstr(page, opt), "%s: --help lists %s, the man page does not", what, opt);
        checked++;
    }
    cr_assert_gt(checked, 5, "%s: --help lists options", what);
}

/* Every "--option" the page names is one help knows (a page cannot keep a removed one). */
static void page_options_in_help(const char *page, const char *help, const char *what)
{
    for (const char *s = page; (s = strstr(s, "--")); s += 2) {
        char tok[MAN_TOKEN_MAX];
        if (!token_at(s + 2, "_.-", tok) || !islower((unsigned char)tok[0]))
            continue;
        size_t n = strlen(tok);
        while (n && (tok[n - 1] == '.' || tok[n - 1] == '-') && strcmp(tok, "kafka.") &&
               strcmp(tok, "consumer.") && strcmp(tok, "producer."))
            tok[--n] = '\0';
        char opt[MAN_TOKEN_MAX + 2];
        snprintf(opt, sizeof opt, "--%s", tok);
        cr_expect_not_null(strstr(help, opt), "%s: the man page names %s, --help does not", what, opt);
    }
}

/* Every SAGA_* variable of help is in page (SAGA_KAFKA_<PROP>: SAGA_KAFKA_). */
static void help_variables_in_page(const char *help, const char *page, const char *what)
{
    for (const char *s = help; (s = strstr(s, "SAGA_")); s += 5) {
        char tok[MAN_TOKEN_MAX];
        token_at(s, "_", tok);
        if (strcmp(tok, "SAGA_NAME") == 0)
            continue; /* the placeholder of "environment: SAGA_NAME" */
        cr_expect_not_null(strstr(page, tok), "%s: --help names %s, the man page does not", what, tok);
    }
}

static void renders_cleanly(const char *page)
{
    if (system("command -v groff >/dev/null 2>&1") != 0)
        return; /* groff-base is in every Debian with man-db; lintian checks it too */
    char *path = test_source_path(page), cmd[4096];
    snprintf(cmd, sizeof cmd, "LC_ALL=C.UTF-8 groff -t -man -Tutf8 -ww -z \"%s\" 2>&1", path);
    free(path);
    char *warnings = capture(cmd);
    cr_expect_str_empty(warnings, "%s: groff warns: %s", page, warnings);
    free(warnings);
}

Test(manpages, coordinator_matches_help)
{
    char *help = help_of("saga-coordinator");
    char *page = page_text("packaging/man/saga-coordinator.8.in");
    help_options_in_page(help, page, "saga-coordinator(8)");
    page_options_in_help(page, help, "saga-coordinator(8)");
    help_variables_in_page(help, page, "saga-coordinator(8)");
    renders_cleanly("packaging/man/saga-coordinator.8.in");
    free(help);
    free(page);
}

Test(manpages, sagactl_matches_help)
{
    char *help = help_of("sagactl");
    char *page = page_text("packaging/man/sagactl.1.in");
    help_options_in_page(help, page, "sagactl(1)");
    page_options_in_help(page, help, "sagactl(1)");
    help_variables_in_page(help, page, "sagactl(1)");
    /* The verbs: the lines of "Verbs:" (up to its blank line) that start with two blanks
     * and a word. */
    const char *v = strstr(help, "Verbs:\n");
    cr_assert_not_null(v);
    int verbs = 0;
    for (const char *line = strchr(v, '\n') + 1; strncmp(line, "  ", 2) == 0;
         line = strchr(line, '\n') + 1) {
        char verb[MAN_TOKEN_MAX], entry[MAN_TOKEN_MAX + 16], entry_bi[MAN_TOKEN_MAX + 16];
        if (line[2] == ' ' || !islower((unsigned char)line[2]) || !token_at(line + 2, "", verb))
            continue;
        snprintf(entry, sizeof entry, ".TP\n.B %s", verb);
        snprintf(entry_bi, sizeof entry_bi, ".TP\n.BI %s", verb);
        cr_expect(strstr(page, entry) || strstr(page, entry_bi), "sagactl(1): no entry for the verb %s", verb);
        verbs++;
    }
    cr_assert_eq(verbs, 9, "list, show, stats, cluster, start, abort, retry, skip, simulate");
    renders_cleanly("packaging/man/sagactl.1.in");
    free(help);
    free(page);
}

Test(manpages, definition_names_every_field)
{
    char *doc_path = test_source_path("docs/definitions.md"), cmd[4096];
    snprintf(cmd, sizeof cmd, "cat \"%s\"", doc_path);
    free(doc_path);
    char *doc = capture(cmd);
    char *page = page_text("packaging/man/saga-definition.5.in");
    const char *from = strstr(doc, "## The fields"), *to = strstr(doc, "### Parallel groups");
    cr_assert(from && to && from < to, "docs/definitions.md has its field tables");
    int fields = 0;
    for (const char *s = from; (s = strstr(s, "\n| `")) && s < to; s++) {
        char field[MAN_TOKEN_MAX];
        token_at(s + 4, "_", field);
        cr_expect_not_null(strstr(page, field), "saga-definition(5) does not describe %s", field);
        fields++;
    }
    cr_assert_gt(fields, 20);
    renders_cleanly("packaging/man/saga-definition.5.in");
    free(doc);
    free(page);
}
