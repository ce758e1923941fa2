/* jsonw.c - the JSON text writer (see jsonw.h). */
#include "jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonw_init(jsonw_t *w)
{
    memset(w, 0, sizeof *w);
}

void jsonw_release(jsonw_t *w)
{
    if (!w)
        return;
    free(w->buf);
    memset(w, 0, sizeof *w);
}

void jsonw_reset(jsonw_t *w)
{
    w->len = 0;
    w->failed = false;
    if (w->buf)
        w->buf[0] = '\0';
}

/* Makes room for n more bytes and the NUL. */
static bool reserve(jsonw_t *w, size_t n)
{
    if (w->failed)
        return false;
    if (w->len + n + 1 <= w->cap)
        return true;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n + 1)
        cap *= 2;
    char *b = realloc(w->buf, cap);
    if (!b) {
        w->failed = true;
        return false;
    }
    w->buf = b;
    w->cap = cap;
    return true;
}

void jsonw_raw(jsonw_t *w, const char *s, size_t len)
{
    if (!reserve(w, len))
        return;
    memcpy(w->buf + w->len, s, len);
    w->len += len;
    w->buf[w->len] = '\0';
}

/* Length of the UTF-8 sequence at s (1-4), or 0 when it is not valid UTF-8 (overlong
 * forms, surrogates and code points past U+10FFFF included, as jansson's utf.c checks). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool jsonw_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; p[i];) {
        size_t n = utf8_len(p + i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

/* Appends len bytes of UTF-8 at s (NULs included) as a JSON string, escaped as jansson
 * escapes. Returns 0, or -1 (appending nothing) when they are not valid UTF-8. */
static int string_n(jsonw_t *w, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    for (size_t i = 0; i < len;) {
        size_t n = p[i] ? utf8_len(p + i) : 1;
        if (!n || i + n > len)
            return -1;
        i += n;
    }
    jsonw_raw(w, "\"", 1);
    const char *run = s; /* bytes not yet written that need no escape */
    for (; p < end; p++) {
        const char *esc = NULL;
        char seq[8];
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (*p < 0x20) {
                snprintf(seq, sizeof seq, "\\u%04X", (unsigned)*p);
                esc = seq;
            }
        }
        if (!esc)
            continue;
        jsonw_raw(w, run, (size_t)((const char *)p - run));
        jsonw_raw(w, esc, strlen(esc));
        run = (const char *)p + 1;
    }
    jsonw_raw(w, run, (size_t)((const char *)p - run));
    jsonw_raw(w, "\"", 1);
    return 0;
}

int jsonw_string(jsonw_t *w, const char *s)
{
    return string_n(w, s, strlen(s));
}

size_t jsonw_format_int(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        tmp[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

void jsonw_int(jsonw_t *w, int64_t v)
{
    char buf[JSONW_INT_MAX];
    jsonw_raw(w, buf, jsonw_format_int(buf, v));
}

void jsonw_key(jsonw_t *w, const char *key, bool first)
{
    if (!first)
        jsonw_raw(w, ",", 1);
    if (jsonw_string(w, key) < 0)
        w->failed = true;
    jsonw_raw(w, ":", 1);
}

static int append_cb(const char *buffer, size_t size, void *data)
{
    jsonw_t *w = data;
    jsonw_raw(w, buffer, size);
    return w->failed ? -1 : 0;
}

/* Written here rather than by json_dump_callback, which formats every integer with
 * snprintf and goes through a callback per token: commands, outputs and history entries
 * are dumped on every transition. Reals (rare) still go to jansson, for its exact format.
 * Object keys come in jansson's own order (insertion), as json_dumps writes them. */
void jsonw_value(jsonw_t *w, const json_t *v)
{
    if (!v) {
        w->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        bool first = true;
        jsonw_raw(w, "{", 1);
        json_object_foreach((json_t *)v, key, item)
        {
            jsonw_key(w, key, first);
            jsonw_value(w, item);
            first = false;
        }
        jsonw_raw(w, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        jsonw_raw(w, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i)
                jsonw_raw(w, ",", 1);
            jsonw_value(w, json_array_get(v, i));
        }
        jsonw_raw(w, "]", 1);
        break;
    }
    case JSON_STRING:
        if (string_n(w, json_string_value(v), json_string_length(v)) < 0)
            w->failed = true;
        break;
    case JSON_INTEGER: jsonw_int(w, (int64_t)json_integer_value(v)); break;
    case JSON_TRUE: jsonw_raw(w, "true", 4); break;
    case JSON_FALSE: jsonw_raw(w, "false", 5); break;
    case JSON_NULL: jsonw_raw(w, "null", 4); break;
    default: /* JSON_REAL */
        if (json_dump_callback(v, append_cb, w, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
            w->failed = true;
    }
}

char *jsonw_dump(jsonw_t *scratch, const json_t *v)
{
    jsonw_reset(scratch);
    jsonw_value(scratch, v);
    return scratch->failed ? NULL : strndup(scratch->buf ? scratch->buf : "", scratch->len);
}
