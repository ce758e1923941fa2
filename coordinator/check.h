/* check.h - `saga-coordinator --check`: validates definition files and reports every error
 * for people (text), editors and tools (JSON lines) or GitHub Actions (annotations).
 *
 * The errors are the loader's (definition.h: defn_error_t); this module only formats them.
 * The text format is definition_check_path's, byte for byte. The other formats add what a
 * tool needs to point at the error: the line and column of the value a JSON path names,
 * found in the file's text (check_locate), and the suggestion of a "did you mean". The
 * formats and exit statuses are documented in docs/definitions.md ("Checking
 * definitions"). */
#ifndef SAGA_CHECK_H
#define SAGA_CHECK_H

#include "definition.h"

#include <jansson.h>
#include <stdio.h>

/* Exit statuses of saga-coordinator --check (and --graph): stable, documented. */
#define CHECK_EXIT_OK 0        /* every definition is valid */
#define CHECK_EXIT_INVALID 1   /* at least one error in a definition (or a file unreadable) */
#define CHECK_EXIT_USAGE 2     /* bad arguments: unknown format, missing path */

typedef enum {
    CHECK_FORMAT_TEXT = 0,   /* "file: path: text" lines, then a summary line */
    CHECK_FORMAT_JSON,       /* JSON Lines: one object per error, nothing else */
    CHECK_FORMAT_GITHUB      /* "::error file=...,line=...,col=...::..." lines, then the
                              * summary line */
} check_format_t;

/* Parses "text", "json" or "github". Returns 0, or -1 for another name. */
int check_format_parse(const char *name, check_format_t *out);

/* Loads the folder or file at path (defn_set_load) and prints every error to out in fmt.
 * Returns CHECK_EXIT_OK or CHECK_EXIT_INVALID. */
int check_path(const char *path, check_format_t fmt, FILE *out);

/* One error as a JSON object (new reference): {"file", "line", "column", "path",
 * "message", "suggestion", "text"}. line and column come from the error (JSON syntax)
 * or, when file_text (len bytes, may be NULL) is the file's content, from the place the
 * path names; null when unknown. path and suggestion are null when the error has none;
 * text is the line of the text format. */
json_t *check_error_json(const defn_error_t *e, const char *file_text, size_t len);

/* Finds the value a JSON path as the loader writes it ("steps[2].action.timeout_ms", ""
 * for the whole document) names in a JSON text. A path whose last key is missing names
 * the object that lacks it. Returns 0 with the 1-based line and column (in characters)
 * of the value's first character, or -1 when the text does not hold that path. */
int check_locate(const char *text, size_t len, const char *path, int *line, int *column);

/* The suggestion of an error text: X of "(did you mean "X"?)", copied into buf; "" when
 * the text has none. */
void check_suggestion(const char *text, char *buf, size_t len);

#endif
