/* test_definition.c - the definition loader and validator: the data-driven invalid cases
 * in tests/definitions/invalid/, valid definitions checked field by field, sets, content
 * hashes, input checks and the example sagas.
 *
 * An invalid case is a folder holding input.json (or a folder input/ of files, loaded as a
 * set) and error: the exact output of definition_check_path, with the case folder's path
 * removed wherever it appears, so error lines read "input.json: steps[0]: ...". */
#include "definition.h"
#include "catalogue.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha256.h"
#include "template.h"
#include "test_paths.h"

#define WHY_LEN 256
#define CASE_NAME_MAX 256
#define MIN_INVALID_CASES 20

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(mem);
    fclose(f);
    return buf;
}

/* Replaces every occurrence of needle in s (a malloc'd string) with nothing. */
static void remove_all(char *s, const char *needle)
{
    size_t n = strlen(needle);
    char *p;
    while (n && (p = strstr(s, needle)) != NULL)
        memmove(p, p + n, strlen(p + n) + 1);
}

static bool path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs one invalid case; returns true when its output matches. */
static bool run_invalid_case(const char *root, const char *name)
{
    char dir[CASE_NAME_MAX * 2], input[CASE_NAME_MAX * 3], error[CASE_NAME_MAX * 3];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    snprintf(input, sizeof input, "%s/input", dir);
    if (!path_is_dir(input))
        snprintf(input, sizeof input, "%s/input.json", dir);
    snprintf(error, sizeof error, "%s/error", dir);

    char *expected = read_text(error);
    cr_assert(expected, "case %s has no error file", name);
    char *got = NULL;
    size_t got_len = 0;
    FILE *out = open_memstream(&got, &got_len);
    int rc = definition_check_path(input, out);
    fclose(out);
    char prefix[CASE_NAME_MAX * 2 + 1];
    snprintf(prefix, sizeof prefix, "%s/", dir);
    remove_all(got, prefix);

    bool ok = rc == 1 && strcmp(got, expected) == 0;
    cr_expect(rc == 1, "case %s: definition_check_path returned %d, want 1", name, rc);
    cr_expect(strcmp(got, expected) == 0, "case %s:\n--- got\n%s--- want\n%s", name, got,
              expected);
    free(got);
    free(expected);
    return ok;
}

Test(definition, invalid_cases)
{
    char *root = test_source_path("tests/definitions/invalid");
    DIR *dh = opendir(root);
    cr_assert(dh, "cannot open %s", root);
    char *names[512];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL && n < 512) {
        if (de->d_name[0] != '.')
            names[n++] = strdup(de->d_name);
    }
    closedir(dh);
    qsort(names, n, sizeof *names, compare_names);
    cr_expect_geq(n, MIN_INVALID_CASES, "only %zu invalid cases", n);
    size_t passed = 0;
    for (size_t i = 0; i < n; i++) {
        if (run_invalid_case(root, names[i]))
            passed++;
        free(names[i]);
    }
    cr_expect_eq(passed, n, "%zu of %zu invalid cases failed", n - passed, n);
    free(root);
}

static definition_t *load_valid(const char *file)
{
    char rel[CASE_NAME_MAX];
    snprintf(rel, sizeof rel, "tests/definitions/valid/%s", file);
    char *path = test_source_path(rel);
    defn_errors_t errs = {0};
    definition_t *d = definition_load_file(path, &errs);
    char line[1024] = "";
    if (errs.count)
        defn_error_format(&errs.items[0], line, sizeof line);
    cr_assert(d, "%s does not load: %s", file, line);
    cr_assert_eq(errs.count, 0);
    cr_expect_str_eq(d->source, path);
    free(path);
    defn_errors_release(&errs);
    return d;
}

static void expect_retry(const defn_retry_t *r, int attempts, int64_t initial, int64_t max,
                         double mult, double jitter)
{
    cr_expect_eq(r->max_attempts, attempts);
    cr_expect_eq(r->initial_backoff_ms, initial);
    cr_expect_eq(r->max_backoff_ms, max);
    cr_expect_float_eq(r->multiplier, mult, 1e-9);
    cr_expect_float_eq(r->jitter, jitter, 1e-9);
}

Test(definition, valid_full_every_field)
{
    definition_t *d = load_valid("full.json");
    cr_expect_str_eq(d->name, "full.example");
    cr_expect_eq(d->version, 7);
    cr_expect_str_eq(d->description, "Every field written out.");
    cr_expect_eq(d->deadline_ms, 90000);
    cr_expect_eq(d->on_compensation_failure, DEFN_ON_COMP_FAILURE_CONTINUE);
    cr_expect_str_eq(json_string_value(json_object_get(d->input_schema, "title")),
                     "Full input");
    cr_expect_eq(d->step_count, 2);
    cr_expect_eq(d->group_count, 2);
    cr_expect_null(d->group_names[0]);
    cr_expect_null(d->group_names[1]);
    cr_expect_eq(strlen(d->content_hash), SHA256_HEX_LEN);
    cr_expect(json_is_object(d->json));

    const defn_step_t *s = &d->steps[0];
    cr_expect_str_eq(s->name, "first");
    cr_expect_str_eq(s->topic, "one.commands");
    cr_expect_eq(s->group, 0);
    cr_expect_not(s->compensate_on_timeout);
    cr_expect_str_eq(s->action.type, "one.do");
    cr_expect_str_eq(s->action.topic, "one.commands");
    cr_expect_eq(s->action.timeout_ms, 111);
    expect_retry(&s->action.retry, 1, 10, 20, 1.0, 1.0);
    cr_expect_str_eq(json_string_value(json_object_get(s->action.payload, "id")),
                     "{{input.id}}", "the payload is kept as written");
    cr_expect(s->has_compensation);
    cr_expect_str_eq(s->compensation.type, "one.undo");
    cr_expect_str_eq(s->compensation.topic, "one.compensations");
    cr_expect_eq(s->compensation.timeout_ms, 222);
    /* Only max_attempts overridden: the rest from defaults.compensation.retry. */
    expect_retry(&s->compensation.retry, 2, 300, 9000, 3.0, 0.0);

    s = &d->steps[1];
    cr_expect_str_eq(s->name, "second");
    cr_expect_str_eq(s->topic, "two.commands");
    cr_expect_eq(s->group, 1);
    cr_expect(s->compensate_on_timeout);
    cr_expect_str_eq(s->action.topic, "two.commands");
    cr_expect_eq(s->action.timeout_ms, 1500);
    expect_retry(&s->action.retry, 4, 50, 800, 1.5, 0.1);
    cr_expect_not(s->has_compensation);
    cr_expect_null(s->compensation.compiled);

    cr_expect_eq(definition_step_index(d, "second"), 1);
    cr_expect_eq(definition_step_index(d, "third"), -1);

    /* The compiled payload renders against an input and step outputs. */
    json_t *input = json_pack("{s:s,s:[{s:s}]}", "id", "i-1", "items", "sku", "A-1");
    template_ctx_t ctx = {.saga_id = "s-1", .saga_name = d->name, .input = input};
    char why[WHY_LEN] = "";
    json_t *out = template_render(d->steps[0].action.compiled, &ctx, why, sizeof why);
    cr_assert(out, "%s", why);
    json_t *want = json_pack("{s:s,s:s,s:s,s:s,s:i}", "id", "i-1", "sku", "A-1", "saga", "s-1",
                             "text", "full.example: {{literal}}", "n", 1);
    cr_expect(json_equal(out, want));
    json_decref(out);
    json_decref(want);
    out = template_render(d->steps[0].compensation.compiled, &ctx, why, sizeof why);
    cr_expect_null(out);
    cr_expect_str_eq(why, "steps.first.output.ref: no such value (step \"first\" has no output)");
    cr_expect(template_references_step(d->steps[0].compensation.compiled, 0));
    json_decref(input);
    definition_free(d);
}

Test(definition, valid_minimal_gets_builtin_defaults)
{
    definition_t *d = load_valid("minimal.json");
    cr_expect_str_eq(d->name, "minimal");
    cr_expect_eq(d->version, 1);
    cr_expect_null(d->description);
    cr_expect_eq(d->deadline_ms, 0);
    cr_expect_null(d->input_schema);
    cr_expect_eq(d->on_compensation_failure, DEFN_ON_COMP_FAILURE_STOP);
    cr_assert_eq(d->step_count, 1);
    const defn_step_t *s = &d->steps[0];
    cr_expect(s->compensate_on_timeout);
    cr_expect_eq(s->action.timeout_ms, DEFN_DEFAULT_TIMEOUT_MS);
    expect_retry(&s->action.retry, DEFN_DEFAULT_MAX_ATTEMPTS, DEFN_DEFAULT_INITIAL_BACKOFF_MS,
                 DEFN_DEFAULT_MAX_BACKOFF_MS, DEFN_DEFAULT_MULTIPLIER, DEFN_DEFAULT_JITTER);
    cr_expect(s->has_compensation);
    cr_expect_str_eq(s->compensation.topic, "t");
    cr_expect_eq(s->compensation.timeout_ms, DEFN_DEFAULT_TIMEOUT_MS);
    expect_retry(&s->compensation.retry, DEFN_DEFAULT_COMP_MAX_ATTEMPTS,
                 DEFN_DEFAULT_INITIAL_BACKOFF_MS, DEFN_DEFAULT_MAX_BACKOFF_MS,
                 DEFN_DEFAULT_MULTIPLIER, DEFN_DEFAULT_JITTER);
    cr_expect(json_is_object(s->action.payload) && json_object_size(s->action.payload) == 0,
              "an absent payload is {}");
    json_t *out = template_render(s->action.compiled, NULL, NULL, 0);
    cr_expect(json_is_object(out) && json_object_size(out) == 0);
    json_decref(out);

    /* Check the published numbers too: docs/definitions.md quotes them. */
    cr_expect_eq(DEFN_DEFAULT_TIMEOUT_MS, 30000);
    cr_expect_eq(DEFN_DEFAULT_MAX_ATTEMPTS, 3);
    cr_expect_eq(DEFN_DEFAULT_COMP_MAX_ATTEMPTS, 5);
    cr_expect_eq(DEFN_DEFAULT_INITIAL_BACKOFF_MS, 200);
    cr_expect_eq(DEFN_DEFAULT_MAX_BACKOFF_MS, 10000);
    definition_free(d);
}

Test(definition, valid_parallel_groups)
{
    definition_t *d = load_valid("parallel.json");
    cr_assert_eq(d->step_count, 5);
    cr_expect_eq(d->group_count, 4);
    const char *names[] = {"start", "left", "right", "solo", "end"};
    const int groups[] = {0, 1, 1, 2, 3};
    for (size_t i = 0; i < 5; i++) {
        cr_expect_str_eq(d->steps[i].name, names[i]);
        cr_expect_eq(d->steps[i].group, groups[i], "%s", names[i]);
        cr_expect_eq(d->steps[i].action.retry.max_attempts, 6);
    }
    cr_expect_null(d->group_names[0]);
    cr_expect_str_eq(d->group_names[1], "both");
    cr_expect_null(d->group_names[2]);
    cr_expect_null(d->group_names[3]);
    cr_expect_eq(d->steps[1].compensation.retry.max_attempts, DEFN_DEFAULT_COMP_MAX_ATTEMPTS,
                 "defaults.retry is for actions only");
    definition_free(d);
}

Test(definition, example_sagas_load)
{
    char *dir = test_source_path("sagas");
    defn_errors_t errs = {0};
    defn_set_t *set = defn_set_load(dir, &errs);
    char line[1024] = "";
    if (errs.count)
        defn_error_format(&errs.items[0], line, sizeof line);
    cr_assert(set, "sagas/ does not load: %s", line);
    cr_expect_eq(defn_set_count(set), 3);
    cr_expect_str_eq(defn_set_at(set, 0)->name, "money-transfer", "sorted by file name");
    cr_expect_null(defn_set_at(set, 3));

    const definition_t *d = defn_set_find(set, "order-placement", 0);
    cr_assert(d);
    const char *topics[] = {"inventory.commands", "payment.commands", "shipping.commands"};
    const char *actions[] = {"inventory.reserve", "payment.charge", "shipping.schedule"};
    const char *comps[] = {"inventory.release", "payment.refund", "shipping.cancel"};
    cr_assert_eq(d->step_count, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_expect_str_eq(d->steps[i].topic, topics[i]);
        cr_expect_str_eq(d->steps[i].action.type, actions[i]);
        cr_expect_str_eq(d->steps[i].compensation.type, comps[i]);
    }
    cr_expect_eq(d->steps[0].action.timeout_ms, 5000);
    cr_expect_eq(d->steps[1].action.timeout_ms, 5000);

    /* The release finds the reservation through the step's own output. */
    json_t *input = json_pack("{s:s,s:s,s:i,s:f,s:s}", "order_id", "1001", "sku", "A-1", "qty", 2,
                              "amount", 25.5, "address", "1 Main St");
    char why[WHY_LEN] = "";
    cr_expect_eq(definition_check_input(d, input, why, sizeof why), 0, "%s", why);
    json_t *out = template_render(d->steps[0].compensation.compiled,
                                  &(template_ctx_t){.saga_id = "o-1", .input = input}, why,
                                  sizeof why);
    /* A timed-out reserve has no output: the optional reference renders as null and the
     * release still goes out, with the order id to find the reservation by. */
    cr_expect_not_null(out, "%s", why);
    cr_expect(json_is_null(json_object_get(out, "reservation_id")));
    cr_expect_str_eq(json_string_value(json_object_get(out, "order_id")), "1001");
    json_decref(out);
    json_decref(input);

    cr_expect(defn_set_find(set, "money-transfer", 1));
    const definition_t *trip = defn_set_find(set, "trip-booking", 1);
    cr_assert(trip);
    cr_expect_eq(trip->group_count, 3);
    cr_expect_eq(trip->steps[1].group, trip->steps[2].group);
    cr_expect_null(defn_set_find(set, "order-placement", 2));
    cr_expect_null(defn_set_find(set, "nope", 0));
    defn_set_free(set);
    defn_errors_release(&errs);
    free(dir);

    char *file = test_source_path("sagas/order-placement.json");
    FILE *out_file = fopen("/dev/null", "w");
    cr_expect_eq(definition_check_path(file, out_file), 0);
    fclose(out_file);
    free(file);
}

static const char *const MINIMAL_FMT =
    "{\"name\": \"%s\", \"version\": %d, \"steps\": [{\"name\": \"a\", \"topic\": \"t\","
    " \"action\": {\"command\": \"a.do\"}, \"compensation\": \"none\"}]}";

static definition_t *load_minimal(const char *name, int version, const char *source)
{
    char text[512];
    snprintf(text, sizeof text, MINIMAL_FMT, name, version);
    definition_t *d = definition_load_string(text, strlen(text), source, NULL);
    cr_assert(d);
    return d;
}

Test(definition, set_add_find_and_duplicates)
{
    defn_set_t *set = defn_set_new();
    defn_errors_t errs = {0};
    cr_expect_eq(defn_set_add(set, load_minimal("s", 1, "one.json"), &errs), 0);
    cr_expect_eq(defn_set_add(set, load_minimal("s", 3, "three.json"), &errs), 0);
    cr_expect_eq(defn_set_add(set, load_minimal("s", 2, "two.json"), &errs), 0);
    cr_expect_eq(defn_set_add(set, load_minimal("s", 3, "again.json"), &errs), -1);
    cr_assert_eq(errs.count, 1);
    char line[1024];
    defn_error_format(&errs.items[0], line, sizeof line);
    cr_expect_str_eq(line, "again.json: duplicate saga \"s\" version 3 (also defined in "
                           "three.json)");
    cr_expect_eq(defn_set_count(set), 3);
    cr_expect_eq(defn_set_find(set, "s", 0)->version, 3, "the highest version");
    cr_expect_eq(defn_set_find(set, "s", -1)->version, 3);
    cr_expect_str_eq(defn_set_find(set, "s", 2)->source, "two.json");
    defn_set_free(set);
    defn_set_free(NULL);
    defn_errors_release(&errs);
    defn_errors_release(&errs); /* twice is harmless */
}

Test(definition, set_load_is_all_or_nothing)
{
    char *dir = test_source_path("tests/definitions/invalid/duplicate-across-files/input");
    defn_errors_t errs = {0};
    cr_expect_null(defn_set_load(dir, &errs), "valid files are not half-loaded");
    cr_expect_eq(errs.count, 4);
    defn_errors_release(&errs);
    free(dir);

    char tmpl[] = "/tmp/saga-defs-XXXXXX";
    cr_assert(mkdtemp(tmpl));
    cr_expect_null(defn_set_load(tmpl, &errs), "an empty folder is an error");
    cr_assert_eq(errs.count, 1);
    cr_expect_str_eq(errs.items[0].text, "no definition files (*.json)");
    defn_errors_release(&errs);
    rmdir(tmpl);

    cr_expect_null(defn_set_load("/nonexistent/sagas", &errs));
    cr_assert_eq(errs.count, 1);
    cr_expect_str_eq(errs.items[0].text, "cannot open: No such file or directory");
    defn_errors_release(&errs);
}

Test(definition, content_hash_ignores_formatting)
{
    const char *a = "{\"name\": \"h\", \"version\": 1, \"steps\": [{\"name\": \"a\", \"topic\": "
                    "\"t\", \"action\": {\"command\": \"a.do\"}, \"compensation\": \"none\"}]}";
    const char *b = "{\n  \"version\": 1,\n  \"steps\": [{\"topic\": \"t\", \"name\": \"a\",\n"
                    "    \"compensation\": \"none\", \"action\": {\"command\": \"a.do\"}}],\n"
                    "  \"name\": \"h\"\n}\n";
    const char *c = "{\"name\": \"h\", \"version\": 1, \"steps\": [{\"name\": \"a\", \"topic\": "
                    "\"t\", \"action\": {\"command\": \"a.undo\"}, \"compensation\": \"none\"}]}";
    definition_t *da = definition_load_string(a, strlen(a), "a", NULL);
    definition_t *db = definition_load_string(b, strlen(b), "b", NULL);
    definition_t *dc = definition_load_string(c, strlen(c), "c", NULL);
    cr_assert(da && db && dc);
    cr_expect_str_eq(da->content_hash, db->content_hash);
    cr_expect_str_neq(da->content_hash, dc->content_hash);
    char *canon = json_dumps(da->json, JSON_COMPACT | JSON_SORT_KEYS);
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(canon, strlen(canon), hex);
    cr_expect_str_eq(da->content_hash, hex);
    free(canon);
    definition_free(da);
    definition_free(db);
    definition_free(dc);
    definition_free(NULL);
}

Test(definition, sha256_known_vectors)
{
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex("abc", 3, hex);
    cr_expect_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_hex("", 0, hex);
    cr_expect_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two_blocks, strlen(two_blocks), hex);
    cr_expect_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void expect_input(const definition_t *d, const char *input_text, const char *want)
{
    json_error_t jerr;
    json_t *input = json_loads(input_text, JSON_DECODE_ANY, &jerr);
    cr_assert(input, "bad test input %s", input_text);
    char why[WHY_LEN] = "";
    int rc = definition_check_input(d, input, why, sizeof why);
    if (want) {
        cr_expect_eq(rc, -1, "%s should be rejected", input_text);
        cr_expect_str_eq(why, want);
    } else {
        cr_expect_eq(rc, 0, "%s should pass: %s", input_text, why);
    }
    json_decref(input);
}

Test(definition, check_input_against_schema)
{
    definition_t *d = load_valid("full.json");
    expect_input(d, "{\"id\": \"x\", \"items\": []}", NULL);
    expect_input(d, "{\"id\": \"x\", \"items\": [{\"sku\": \"a\", \"qty\": 2.0}], \"kind\": 3,"
                    " \"price\": 100, \"flag\": false, \"nothing\": null, \"meta\": {\"any\": 1}}",
                 NULL);
    expect_input(d, "[]", "input: expected an object, got an array");
    expect_input(d, "{\"items\": []}", "input: missing required property \"id\"");
    expect_input(d, "{\"id\": 5, \"items\": []}", "input.id: expected a string, got a number");
    expect_input(d, "{\"id\": \"\", \"items\": []}",
                 "input.id: expected at least 1 characters, got 0");
    expect_input(d, "{\"id\": \"123456789\", \"items\": []}",
                 "input.id: expected at most 8 characters, got 9");
    expect_input(d, "{\"id\": \"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\", \"items\": []}",
                 NULL); /* 8 characters, 16 bytes */
    expect_input(d, "{\"id\": \"x\", \"items\": [{\"sku\": \"a\"}, {\"qty\": 1}]}",
                 "input.items[1]: missing required property \"sku\"");
    expect_input(d, "{\"id\": \"x\", \"items\": [{\"sku\": \"a\", \"qty\": 1.5}]}",
                 "input.items[0].qty: expected an integer, got a number");
    expect_input(d, "{\"id\": \"x\", \"items\": [{\"sku\": \"a\", \"qty\": 0}]}",
                 "input.items[0].qty: expected at least 1, got 0");
    expect_input(d, "{\"id\": \"x\", \"items\": [], \"price\": 100.5}",
                 "input.price: expected at most 100, got 100.5");
    expect_input(d, "{\"id\": \"x\", \"items\": [], \"price\": \"1\"}",
                 "input.price: expected a number, got a string");
    expect_input(d, "{\"id\": \"x\", \"items\": [], \"kind\": \"c\"}",
                 "input.kind: expected one of [\"a\",\"b\",3]");
    expect_input(d, "{\"id\": \"x\", \"items\": [], \"flag\": 1}",
                 "input.flag: expected a boolean, got a number");
    expect_input(d, "{\"id\": \"x\", \"items\": [], \"nothing\": 0}",
                 "input.nothing: expected null, got a number");
    expect_input(d, "{\"id\": \"x\", \"items\": [], \"extra\": 0}",
                 "input.extra: unknown property (the input schema does not declare it)");
    definition_free(d);

    /* No schema: any object. */
    d = load_minimal("m", 1, "m.json");
    expect_input(d, "{\"anything\": [1]}", NULL);
    expect_input(d, "\"text\"", "input: expected an object, got a string");
    char why[WHY_LEN] = "";
    cr_expect_eq(definition_check_input(d, NULL, why, sizeof why), -1);
    definition_free(d);
}

Test(definition, error_format_and_limits)
{
    defn_error_t e = {.source = "sagas/order.json", .line = 12, .column = 7,
                      .text = "invalid JSON: unexpected token"};
    char line[1024];
    defn_error_format(&e, line, sizeof line);
    cr_expect_str_eq(line, "sagas/order.json:12:7: invalid JSON: unexpected token");
    defn_error_t p = {.source = "sagas/order.json", .path = "steps[2].compensation.topic",
                      .text = "expected a string, got a number"};
    defn_error_format(&p, line, sizeof line);
    cr_expect_str_eq(line, "sagas/order.json: steps[2].compensation.topic: expected a string, "
                           "got a number");

    /* Errors stop at DEFN_MAX_ERRORS, the last one saying so. */
    defn_errors_t errs = {0};
    for (int i = 0; i < DEFN_MAX_ERRORS + 10; i++)
        defn_errors_add(&errs, "f.json", 0, 0, "x", "error %d", i);
    cr_expect_eq(errs.count, DEFN_MAX_ERRORS);
    cr_expect_str_eq(errs.items[DEFN_MAX_ERRORS - 1].text,
                     "too many errors; only the first 99 are shown");
    defn_errors_release(&errs);
    defn_errors_add(NULL, "f.json", 0, 0, NULL, "dropped");

    /* The file size limit, also for strings. */
    size_t big = DEFN_MAX_FILE_BYTES + 1;
    char *text = malloc(big);
    memset(text, ' ', big);
    cr_expect_null(definition_load_string(text, big, "big.json", &errs));
    cr_assert_eq(errs.count, 1);
    cr_expect_str_eq(errs.items[0].text, "file is larger than 1048576 bytes");
    free(text);
    defn_errors_release(&errs);

    cr_expect_null(definition_load_file("/nonexistent.json", &errs));
    cr_expect_str_eq(errs.items[0].text, "cannot open: No such file or directory");
    defn_errors_release(&errs);
}

Test(definition, check_path_summaries)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    char *dir = test_source_path("sagas");
    cr_expect_eq(definition_check_path(dir, out), 0);
    fflush(out);
    cr_expect_str_eq(buf, "3 definitions OK\n");
    fclose(out);
    free(buf);
    free(dir);
}

Test(definition, schema_key_is_accepted_and_not_content)
{
    const char *a = "{\"name\": \"h\", \"version\": 1, \"steps\": [{\"name\": \"a\", \"topic\": "
                    "\"t\", \"action\": {\"command\": \"a.do\"}, \"compensation\": \"none\"}]}";
    const char *b = "{\"$schema\": \"../docs/schemas/definition.json\", \"name\": \"h\", "
                    "\"version\": 1, \"steps\": [{\"name\": \"a\", \"topic\": \"t\", \"action\": "
                    "{\"command\": \"a.do\"}, \"compensation\": \"none\"}]}";
    definition_t *da = definition_load_string(a, strlen(a), "a", NULL);
    definition_t *db = definition_load_string(b, strlen(b), "b", NULL);
    cr_assert(da && db);
    /* Adding "$schema" to a file for an editor leaves its version's content unchanged. */
    cr_expect_str_eq(da->content_hash, db->content_hash);
    cr_expect_null(json_object_get(db->json, "$schema"));
    definition_free(da);
    definition_free(db);
}
