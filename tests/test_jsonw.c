/* test_jsonw.c - the JSON text writer against jansson: jsonw_value must write exactly what
 * json_dumps(..., JSON_COMPACT | JSON_ENCODE_ANY) writes, since the coordinator encodes
 * commands, outcomes and history entries with it and readers compare them as text
 * (participants de-duplicate re-sent commands, tests read the outbox). */
#include "jsonw.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RANDOM_VALUES 5000
#define RANDOM_DEPTH 4

static void expect_same(const json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    jsonw_t w;
    jsonw_init(&w);
    char *got = jsonw_dump(&w, v);
    cr_assert_not_null(want);
    cr_assert_not_null(got, "jsonw failed where jansson wrote %s", want);
    cr_assert_str_eq(got, want);
    free(want);
    free(got);
    jsonw_release(&w);
}

Test(jsonw, scalars_as_jansson_writes_them)
{
    json_t *vals[] = {json_integer(0),          json_integer(-1),
                      json_integer(INT64_MAX),  json_integer(INT64_MIN),
                      json_integer(1796153223343LL), json_true(),
                      json_false(),             json_null(),
                      json_real(12.5),          json_real(0.1),
                      json_real(-3e300),        json_real(1.0),
                      json_string(""),          json_string("plain"),
                      json_string("quote \" backslash \\ slash /"),
                      json_string("\b\f\n\r\t \x01\x1f \x7f"),
                      json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
                      json_stringn("nul\0inside", 10)};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        expect_same(vals[i]);
        json_decref(vals[i]);
    }
}

Test(jsonw, containers_keep_jansson_key_order)
{
    json_t *v = json_pack("{s:s, s:i, s:[i, s, {}, []], s:{s:n, s:b}, s:f}", "zeta", "z", "alpha",
                          1, "list", 2, "x", "obj", "inner", "t", 1, "real", 2.25);
    json_object_set_new(v, "added-later", json_string("last"));
    json_object_del(v, "alpha");
    json_object_set_new(v, "alpha", json_integer(9)); /* re-added: goes last */
    expect_same(v);
    json_decref(v);
    json_t *empty[] = {json_object(), json_array()};
    for (size_t i = 0; i < 2; i++) {
        expect_same(empty[i]);
        json_decref(empty[i]);
    }
}

/* --- random values, seeded ---------------------------------------------------------- */

static uint64_t rng = 0x5eed;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static json_t *random_string(void)
{
    static const char *const pieces[] = {"a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\x01",
                                         "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80", "{}", "0"};
    char buf[128];
    size_t len = 0, n = next() % 12;
    for (size_t i = 0; i < n; i++) {
        const char *p = pieces[next() % (sizeof pieces / sizeof *pieces)];
        size_t pl = strlen(p);
        memcpy(buf + len, p, pl);
        len += pl;
    }
    if (next() % 8 == 0)
        buf[len++] = '\0'; /* an embedded NUL */
    return json_stringn(buf, len);
}

static json_t *random_value(int depth)
{
    switch (next() % (depth > 0 ? 8 : 5)) {
    case 0: return json_integer((json_int_t)next() >> (next() % 64));
    case 1: return random_string();
    case 2: return next() % 2 ? json_true() : json_false();
    case 3: return next() % 4 ? json_null() : json_real((double)(int64_t)next() / 1e6);
    case 4: return json_integer(-(json_int_t)(next() % 100000));
    case 5:
    case 6: {
        json_t *o = json_object();
        for (size_t i = 0, n = next() % 6; i < n; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%u", (unsigned)(next() % 20));
            json_object_set_new(o, key, random_value(depth - 1));
        }
        return o;
    }
    default: {
        json_t *a = json_array();
        for (size_t i = 0, n = next() % 6; i < n; i++)
            json_array_append_new(a, random_value(depth - 1));
        return a;
    }
    }
}

Test(jsonw, random_values_match_json_dumps)
{
    for (int i = 0; i < RANDOM_VALUES; i++) {
        json_t *v = random_value(RANDOM_DEPTH);
        expect_same(v);
        json_decref(v);
    }
}
