/* test_check.c - saga-coordinator --check's formats (check.h): the text format is the
 * loader's byte for byte, JSON lines and GitHub annotations carry the line and column
 * the JSON path names, the suggestion of a "did you mean", and the exit statuses. */
#include "check.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char BAD[] =
    "{\n"
    "  \"name\": \"x\", \"version\": 1,\n"
    "  \"steps\": [\n"
    "    {\"name\": \"a\", \"topic\": \"t\", \"action\": {\"command\": \"a.do\", \"timout_ms\": 5},\n"
    "     \"compensation\": \"none\"},\n"
    "    {\"name\": \"b\", \"topic\": \"t,x\", \"action\": {\"command\": \"b.do\"}}\n"
    "  ]\n"
    "}\n";

static char dir[64];
static char file[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/saga-check-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/bad.json", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs(BAD, f);
    fclose(f);
}

static void teardown(void)
{
    unlink(file);
    rmdir(dir);
}

/* Runs check_path on path in fmt; returns its output with dir/ removed (free it). */
static char *run(const char *path, check_format_t fmt, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    *rc = check_path(path, fmt, out);
    fclose(out);
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%s/", dir);
    for (char *p; (p = strstr(buf, prefix)) != NULL;)
        memmove(p, p + strlen(prefix), strlen(p + strlen(prefix)) + 1);
    return buf;
}

TestSuite(check, .init = setup, .fini = teardown);

Test(check, text_is_the_loaders_format)
{
    int rc;
    char *got = run(file, CHECK_FORMAT_TEXT, &rc);
    cr_expect_eq(rc, CHECK_EXIT_INVALID);
    cr_expect_str_eq(got,
                     "bad.json: steps[1].topic: invalid topic \"t,x\": use 1 to 249 of the "
                     "characters A-Z a-z 0-9 . _ -\n"
                     "bad.json: steps[0].action: unknown field \"timout_ms\" (did you mean "
                     "\"timeout_ms\"?)\n"
                     "bad.json: steps[1]: missing required field \"compensation\" (expected an "
                     "object or \"none\")\n"
                     "3 errors in 1 file\n");
    free(got);
}

Test(check, json_lines_point_at_the_value)
{
    int rc;
    char *got = run(file, CHECK_FORMAT_JSON, &rc);
    cr_expect_eq(rc, CHECK_EXIT_INVALID);
    cr_expect_str_eq(
        got,
        "{\"file\":\"bad.json\",\"line\":6,\"column\":28,\"path\":\"steps[1].topic\","
        "\"message\":\"invalid topic \\\"t,x\\\": use 1 to 249 of the characters A-Z a-z 0-9 . _ "
        "-\",\"suggestion\":null,\"text\":\"bad.json: steps[1].topic: invalid topic \\\"t,x\\\": "
        "use 1 to 249 of the characters A-Z a-z 0-9 . _ -\"}\n"
        "{\"file\":\"bad.json\",\"line\":4,\"column\":76,\"path\":\"steps[0].action\","
        "\"message\":\"unknown field \\\"timout_ms\\\" (did you mean \\\"timeout_ms\\\"?)\","
        "\"suggestion\":\"timeout_ms\",\"text\":\"bad.json: steps[0].action: unknown field "
        "\\\"timout_ms\\\" (did you mean \\\"timeout_ms\\\"?)\"}\n"
        "{\"file\":\"bad.json\",\"line\":6,\"column\":5,\"path\":\"steps[1]\",\"message\":"
        "\"missing required field \\\"compensation\\\" (expected an object or \\\"none\\\")\","
        "\"suggestion\":null,\"text\":\"bad.json: steps[1]: missing required field "
        "\\\"compensation\\\" (expected an object or \\\"none\\\")\"}\n");
    free(got);
}

Test(check, github_annotations)
{
    int rc;
    char *got = run(file, CHECK_FORMAT_GITHUB, &rc);
    cr_expect_eq(rc, CHECK_EXIT_INVALID);
    /* ":" and "," in properties are escaped (%3A, %2C), "%" everywhere (%25). */
    cr_expect_str_eq(got,
                     "::error file=bad.json,line=6,col=28,title=saga definition::steps[1].topic: "
                     "invalid topic \"t,x\": use 1 to 249 of the characters A-Z a-z 0-9 . _ -\n"
                     "::error file=bad.json,line=4,col=76,title=saga definition::steps[0].action: "
                     "unknown field \"timout_ms\" (did you mean \"timeout_ms\"?)\n"
                     "::error file=bad.json,line=6,col=5,title=saga definition::steps[1]: missing "
                     "required field \"compensation\" (expected an object or \"none\")\n"
                     "3 errors in 1 file\n");
    free(got);
}

Test(check, valid_definitions_print_nothing_in_json)
{
    char *sagas = NULL;
    const char *src = getenv("SAGA_SOURCE_DIR");
    cr_assert(asprintf(&sagas, "%s/sagas", src && *src ? src : ".") > 0);
    int rc;
    char *got = run(sagas, CHECK_FORMAT_JSON, &rc);
    cr_expect_eq(rc, CHECK_EXIT_OK);
    cr_expect_str_eq(got, "");
    free(got);
    got = run(sagas, CHECK_FORMAT_GITHUB, &rc);
    cr_expect_eq(rc, CHECK_EXIT_OK);
    cr_expect_str_eq(got, "3 definitions OK\n");
    free(got);
    free(sagas);
}

Test(check, syntax_errors_keep_their_position_and_missing_files_have_none)
{
    FILE *f = fopen(file, "w");
    fputs("{\n  \"name\": \"x\",,\n}\n", f);
    fclose(f);
    int rc;
    char *got = run(file, CHECK_FORMAT_JSON, &rc);
    cr_expect_eq(rc, CHECK_EXIT_INVALID);
    cr_expect(strstr(got, "\"line\":2,\"column\":15,\"path\":null,\"message\":\"invalid JSON: "),
              "%s", got);
    free(got);
    got = run("/nonexistent/x.json", CHECK_FORMAT_JSON, &rc);
    cr_expect_eq(rc, CHECK_EXIT_INVALID);
    cr_expect(strstr(got, "\"line\":null,\"column\":null,\"path\":null,\"message\":\"cannot open"),
              "%s", got);
    free(got);
}

Test(check, locate_follows_keys_indexes_and_missing_keys)
{
    const char *t = "{\"a\": {\"b.c\": [10, {\"d\": \"\xc3\xa9\", \"e\": 1}]},\n \"f\": null}";
    int line = 0, col = 0;
    cr_expect_eq(check_locate(t, strlen(t), "", &line, &col), 0);
    cr_expect(line == 1 && col == 1);
    cr_expect_eq(check_locate(t, strlen(t), "a.b.c[1].e", &line, &col), 0);
    cr_expect(line == 1 && col == 36, "%d:%d", line, col); /* é is one column */
    cr_expect_eq(check_locate(t, strlen(t), "f", &line, &col), 0);
    cr_expect(line == 2 && col == 7, "%d:%d", line, col);
    /* A missing last key names the object that lacks it. */
    cr_expect_eq(check_locate(t, strlen(t), "a.zzz", &line, &col), 0);
    cr_expect(line == 1 && col == 7, "%d:%d", line, col);
    cr_expect_eq(check_locate(t, strlen(t), "a.b.c[7].x", &line, &col), -1);
    cr_expect_eq(check_locate(NULL, 0, "a", &line, &col), -1);
}

Test(check, formats_and_suggestions)
{
    check_format_t f;
    cr_expect(check_format_parse("json", &f) == 0 && f == CHECK_FORMAT_JSON);
    cr_expect(check_format_parse("github", &f) == 0 && f == CHECK_FORMAT_GITHUB);
    cr_expect(check_format_parse("text", &f) == 0 && f == CHECK_FORMAT_TEXT);
    cr_expect_eq(check_format_parse("xml", &f), -1);
    char s[64];
    check_suggestion("unknown field \"x\" (did you mean \"y\"?)", s, sizeof s);
    cr_expect_str_eq(s, "y");
    check_suggestion("unknown field \"x\"", s, sizeof s);
    cr_expect_str_eq(s, "");
}
