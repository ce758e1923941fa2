/* jsonw.h - a JSON text writer: appends compact JSON to a growable buffer, without
 * building jansson values first.
 *
 * For the hot encodings (the saga's steps array, written on every transition): the text
 * is byte for byte what json_dumps(..., JSON_COMPACT) gives for the same values, strings
 * escaped as jansson escapes them. Values already held as json_t go through
 * jsonw_value. A failed write (out of memory, invalid UTF-8) sets failed; the writer keeps
 * accepting calls, so callers check once at the end. */
#ifndef SAGA_JSONW_H
#define SAGA_JSONW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jsonw {
    char *buf;      /* NUL-terminated text so far (owned), or NULL before the first write */
    size_t len, cap;
    bool failed;
} jsonw_t;

void jsonw_init(jsonw_t *w);
void jsonw_release(jsonw_t *w);
/* Empties the text, keeping the buffer. */
void jsonw_reset(jsonw_t *w);

/* Appends len bytes as they are (punctuation, or text that is already JSON). */
void jsonw_raw(jsonw_t *w, const char *s, size_t len);
/* Appends s (NUL-terminated UTF-8) as a JSON string. Returns 0, or -1 (and appends
 * nothing) when s is not valid UTF-8: jansson refuses such a string too. */
int jsonw_string(jsonw_t *w, const char *s);
/* Whether s is valid UTF-8, as json_string requires. */
bool jsonw_utf8_valid(const char *s);
void jsonw_int(jsonw_t *w, int64_t v);
/* Writes v in decimal (as printf's PRId64, without its cost) and a NUL at out, which has
 * room for JSONW_INT_MAX bytes. Returns the length. */
#define JSONW_INT_MAX 24
size_t jsonw_format_int(char *out, int64_t v);
/* Appends "key": (with the comma before it unless first). */
void jsonw_key(jsonw_t *w, const char *key, bool first);
/* Appends v as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it (tests/test_jsonw.c
 * checks the two agree byte for byte). */
void jsonw_value(jsonw_t *w, const json_t *v);
/* json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), written with scratch (reset first): a
 * malloc'd string the caller frees, or NULL (out of memory, invalid UTF-8). */
char *jsonw_dump(jsonw_t *scratch, const json_t *v);

#endif
