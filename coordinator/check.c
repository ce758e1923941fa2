/* check.c - saga-coordinator --check: every definition error as text, JSON lines or
 * GitHub annotations, each pointing at the file, line and column (see check.h). */
#include "check.h"

#include "catalogue.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_LINE_MAX (sizeof(defn_error_t) + 64) /* one formatted error */
#define CHECK_DEPTH_MAX 512                        /* nesting the locator follows */
#define CHECK_GITHUB_TITLE "saga definition"
#define CHECK_UNKNOWN_FIELD "unknown field \""   /* the loader's text for a typo'd field */

int check_format_parse(const char *name, check_format_t *out)
{
    static const struct {
        const char *name;
        check_format_t fmt;
    } FORMATS[] = {{"text", CHECK_FORMAT_TEXT}, {"json", CHECK_FORMAT_JSON},
                   {"github", CHECK_FORMAT_GITHUB}};
    for (size_t i = 0; name && i < sizeof FORMATS / sizeof *FORMATS; i++) {
        if (strcmp(name, FORMATS[i].name) == 0) {
            *out = FORMATS[i].fmt;
            return 0;
        }
    }
    return -1;
}

void check_suggestion(const char *text, char *buf, size_t len)
{
    static const char OPEN[] = "(did you mean \"";
    static const char CLOSE[] = "\"?)";
    if (len)
        buf[0] = '\0';
    const char *p = text ? strstr(text, OPEN) : NULL;
    if (!p || !len)
        return;
    p += strlen(OPEN);
    const char *end = strstr(p, CLOSE);
    if (end)
        snprintf(buf, len, "%.*s", (int)(end - p), p);
}

/* ---------- locating a JSON path in a text ---------- */

/* A position in the text, with its line and column (1-based, columns in characters). */
typedef struct cursor {
    const char *s;
    size_t n, i;
    int line, column;
} cursor_t;

static int peek(const cursor_t *c)
{
    return c->i < c->n ? (unsigned char)c->s[c->i] : -1;
}

static void advance(cursor_t *c)
{
    if (c->i >= c->n)
        return;
    unsigned char ch = (unsigned char)c->s[c->i++];
    if (ch == '\n') {
        c->line++;
        c->column = 1;
    } else if ((ch & 0xC0) != 0x80) {
        c->column++;
    }
}

static void skip_blank(cursor_t *c)
{
    int ch;
    while ((ch = peek(c)) == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
        advance(c);
}

/* Skips a string at the cursor (on its opening quote); its raw content (escapes as
 * written) is [*start, *end). Returns 0, -1 when unterminated. */
static int skip_string(cursor_t *c, size_t *start, size_t *end)
{
    advance(c);
    *start = c->i;
    for (int ch; (ch = peek(c)) != -1; advance(c)) {
        if (ch == '\\') {
            advance(c);
        } else if (ch == '"') {
            *end = c->i;
            advance(c);
            return 0;
        }
    }
    return -1;
}

/* Skips any value at the cursor. Returns 0, -1 on malformed text. */
static int skip_value(cursor_t *c, int depth)
{
    size_t a, b;
    skip_blank(c);
    int ch = peek(c);
    if (ch == '"')
        return skip_string(c, &a, &b);
    if (ch != '{' && ch != '[') {
        while ((ch = peek(c)) != -1 && ch != ',' && ch != '}' && ch != ']' && ch != ' ' &&
               ch != '\n' && ch != '\r' && ch != '\t')
            advance(c);
        return 0;
    }
    if (depth > CHECK_DEPTH_MAX)
        return -1;
    int close = ch == '{' ? '}' : ']';
    advance(c);
    for (;;) {
        skip_blank(c);
        ch = peek(c);
        if (ch == close) {
            advance(c);
            return 0;
        }
        if (ch == ',') {
            advance(c);
            continue;
        }
        if (ch == -1)
            return -1;
        if (close == '}') {
            if (ch != '"' || skip_string(c, &a, &b) < 0)
                return -1;
            skip_blank(c);
            if (peek(c) != ':')
                return -1;
            advance(c);
        }
        if (skip_value(c, depth + 1) < 0)
            return -1;
    }
}

/* Whether the raw key [a, b) of the text equals the first klen bytes of key, reading the
 * escapes \" \\ \/ (other escapes never match: such keys cannot be named by a path). */
static bool key_equals(const char *s, size_t a, size_t b, const char *key, size_t klen)
{
    size_t k = 0;
    for (size_t i = a; i < b; i++, k++) {
        char ch = s[i];
        if (ch == '\\') {
            if (++i >= b || (s[i] != '"' && s[i] != '\\' && s[i] != '/'))
                return false;
            ch = s[i];
        }
        if (k >= klen || key[k] != ch)
            return false;
    }
    return k == klen;
}

/* Moves the cursor to the value at path below the value at the cursor. Returns 0, or -1
 * when the path is not there (the cursor then stays on the deepest value found). */
static int locate(cursor_t *c, const char *path, int depth)
{
    skip_blank(c);
    if (*path == '.')
        path++;
    if (*path == '\0')
        return 0;
    if (depth > CHECK_DEPTH_MAX)
        return -1;
    int ch = peek(c);
    if (*path == '[') {
        char *end;
        unsigned long want = strtoul(path + 1, &end, 10);
        if (ch != '[' || *end != ']')
            return -1;
        cursor_t at = *c;
        advance(c);
        for (unsigned long i = 0;; i++) {
            skip_blank(c);
            if (peek(c) == ']' || peek(c) == -1)
                break;
            if (i == want)
                return locate(c, end + 1, depth + 1);
            if (skip_value(c, depth + 1) < 0)
                break;
            skip_blank(c);
            if (peek(c) == ',')
                advance(c);
        }
        *c = at;
        return -1;
    }
    if (ch != '{')
        return -1;
    /* Keys may hold "." or "[": the longest key that is a prefix of the path followed by
     * its end, "." or "[" is the one meant. */
    cursor_t at = *c, best = *c;
    size_t best_len = 0;
    advance(c);
    for (;;) {
        skip_blank(c);
        if (peek(c) != '"')
            break;
        size_t a, b;
        if (skip_string(c, &a, &b) < 0)
            break;
        skip_blank(c);
        if (peek(c) != ':')
            break;
        advance(c);
        skip_blank(c);
        for (size_t klen = strlen(path); klen > best_len; klen--) {
            char after = path[klen];
            if ((after == '\0' || after == '.' || after == '[') &&
                key_equals(c->s, a, b, path, klen)) {
                best = *c;
                best_len = klen;
                break;
            }
        }
        if (skip_value(c, depth + 1) < 0)
            break;
        skip_blank(c);
        if (peek(c) != ',')
            break;
        advance(c);
    }
    if (!best_len) {
        *c = at;
        return -1;
    }
    *c = best;
    return locate(c, path + best_len, depth + 1);
}

int check_locate(const char *text, size_t len, const char *path, int *line, int *column)
{
    if (!text)
        return -1;
    if (!path)
        path = "";
    cursor_t c = {text, len, 0, 1, 1};
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        c.i = 3; /* a byte order mark is not a character of the document */
    cursor_t start = c;
    int rc = locate(&c, path, 0);
    if (rc < 0) {
        /* A path whose last key is missing names the object that lacks it. */
        const char *cut = NULL;
        for (const char *p = path; *p; p++)
            if (*p == '.' || *p == '[')
                cut = p;
        char parent[sizeof ((defn_error_t *)0)->path];
        size_t plen = cut ? (size_t)(cut - path) : 0;
        if (*path && plen < sizeof parent) {
            snprintf(parent, sizeof parent, "%.*s", (int)plen, path);
            c = start;
            rc = locate(&c, parent, 0);
        }
    }
    if (rc < 0)
        return -1;
    *line = c.line;
    *column = c.column;
    return 0;
}

/* ---------- formats ---------- */

json_t *check_error_json(const defn_error_t *e, const char *file_text, size_t len)
{
    char text[CHECK_LINE_MAX], suggestion[sizeof e->text];
    defn_error_format(e, text, sizeof text);
    check_suggestion(e->text, suggestion, sizeof suggestion);
    int line = e->line, column = e->column;
    if (line <= 0) {
        /* An unknown field is reported at its object: point at the field itself. */
        char at[sizeof e->path + sizeof e->text];
        const char *unknown = strncmp(e->text, CHECK_UNKNOWN_FIELD, strlen(CHECK_UNKNOWN_FIELD))
                                  ? NULL
                                  : e->text + strlen(CHECK_UNKNOWN_FIELD);
        const char *end = unknown ? strchr(unknown, '"') : NULL;
        if (end)
            snprintf(at, sizeof at, "%s%s%.*s", e->path, e->path[0] ? "." : "",
                     (int)(end - unknown), unknown);
        if (!(end && check_locate(file_text, len, at, &line, &column) == 0) &&
            !(check_locate(file_text, len, e->path, &line, &column) == 0))
            line = column = 0;
    }
    return json_pack("{s:s, s:o, s:o, s:o, s:s, s:o, s:s}", "file", e->source, "line",
                     line > 0 ? json_integer(line) : json_null(), "column",
                     column > 0 ? json_integer(column) : json_null(), "path",
                     e->path[0] ? json_string(e->path) : json_null(), "message", e->text,
                     "suggestion", suggestion[0] ? json_string(suggestion) : json_null(),
                     "text", text);
}

/* The content of a file (malloc'd, *len bytes), or NULL when it cannot be read or is
 * larger than any definition may be. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(DEFN_MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, DEFN_MAX_FILE_BYTES + 1, f) : 0;
    bool bad = !buf || ferror(f) || n > DEFN_MAX_FILE_BYTES;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Writes s escaped as a GitHub workflow command's data or (property) property value. */
static void github_escape(FILE *out, const char *s, bool property)
{
    for (; *s; s++) {
        switch (*s) {
        case '%': fputs("%25", out); break;
        case '\r': fputs("%0D", out); break;
        case '\n': fputs("%0A", out); break;
        case ':': property ? fputs("%3A", out) : fputc(':', out); break;
        case ',': property ? fputs("%2C", out) : fputc(',', out); break;
        default: fputc(*s, out);
        }
    }
}

static void write_github(FILE *out, const json_t *j)
{
    fputs("::error file=", out);
    github_escape(out, json_string_value(json_object_get(j, "file")), true);
    json_int_t line = json_integer_value(json_object_get(j, "line"));
    json_int_t col = json_integer_value(json_object_get(j, "column"));
    if (line > 0)
        fprintf(out, ",line=%" JSON_INTEGER_FORMAT, line);
    if (col > 0)
        fprintf(out, ",col=%" JSON_INTEGER_FORMAT, col);
    fputs(",title=", out);
    github_escape(out, CHECK_GITHUB_TITLE, true);
    fputs("::", out);
    const char *path = json_string_value(json_object_get(j, "path"));
    if (path) {
        github_escape(out, path, false);
        fputs(": ", out);
    }
    github_escape(out, json_string_value(json_object_get(j, "message")), false);
    fputc('\n', out);
}

/* The summary line of the text format (definition_check_path's). */
static void write_summary(FILE *out, const defn_set_t *set, const defn_errors_t *errs)
{
    if (set) {
        size_t n = defn_set_count(set);
        fprintf(out, "%zu definition%s OK\n", n, n == 1 ? "" : "s");
        return;
    }
    size_t files = 0;
    for (size_t i = 0; i < errs->count; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(errs->items[j].source, errs->items[i].source) == 0;
        files += !seen;
    }
    fprintf(out, "%zu error%s in %zu file%s\n", errs->count, errs->count == 1 ? "" : "s", files,
            files == 1 ? "" : "s");
}

int check_path(const char *path, check_format_t fmt, FILE *out)
{
    if (fmt == CHECK_FORMAT_TEXT)
        return definition_check_path(path, out) == 0 ? CHECK_EXIT_OK : CHECK_EXIT_INVALID;
    defn_errors_t errs = {0};
    defn_set_t *set = defn_set_load(path, &errs);
    /* Errors come grouped by file: each file is read once, for the locator. */
    char *text = NULL;
    size_t len = 0;
    const char *text_of = NULL;
    for (size_t i = 0; i < errs.count; i++) {
        const defn_error_t *e = &errs.items[i];
        if (!text_of || strcmp(text_of, e->source) != 0) {
            free(text);
            text = read_file(e->source, &len);
            text_of = e->source;
        }
        json_t *j = check_error_json(e, text, len);
        if (!j)
            continue;
        if (fmt == CHECK_FORMAT_JSON) {
            char *line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (line)
                fprintf(out, "%s\n", line);
            free(line);
        } else {
            write_github(out, j);
        }
        json_decref(j);
    }
    free(text);
    if (fmt == CHECK_FORMAT_GITHUB)
        write_summary(out, set, &errs);
    int rc = set ? CHECK_EXIT_OK : CHECK_EXIT_INVALID;
    defn_set_free(set);
    defn_errors_release(&errs);
    return rc;
}
