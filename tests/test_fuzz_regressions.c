/* test_fuzz_regressions.c - replays the fuzzing inputs in the normal build: every file of
 * tests/fuzz-regressions/<target>/ (inputs that once crashed, hung or broke an invariant)
 * and of the seed corpora tests/fuzz-corpus/<target>/, through the very entry points the
 * libFuzzer binaries use (fuzz/fuzz_<target>.c, included here without their libFuzzer
 * entry). A crash, sanitizer report or broken invariant aborts: Criterion reports the
 * test as crashed, and the last "replay:" line on stderr names the input. */
#define FUZZ_NO_ENTRY
#include "../fuzz/fuzz_definition.c"
#include "../fuzz/fuzz_protocol.c"
#include "../fuzz/fuzz_saga_fields.c"
#include "../fuzz/fuzz_template.c"

#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/stat.h>

#include "test_paths.h"

#define REPLAY_PATH_MAX 1024
#define REPLAY_MAX_FILES 4096

typedef int (*fuzz_entry_fn)(const uint8_t *data, size_t size);

typedef struct fuzz_target {
    const char *name;     /* the folder under tests/fuzz-corpus and -regressions */
    fuzz_entry_fn entry;
} fuzz_target_t;

static const fuzz_target_t TARGETS[] = {
    {"definition", fuzz_definition_one},
    {"template", fuzz_template_one},
    {"protocol", fuzz_protocol_one},
    {"saga_fields", fuzz_saga_fields_one},
};
#define TARGET_COUNT (sizeof TARGETS / sizeof *TARGETS)

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a whole file; returns a malloc'd buffer (not NUL-terminated data may follow). */
static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    uint8_t *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = realloc(buf, cap);
            cr_assert(buf, "out of memory");
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
    }
    cr_assert(!ferror(f), "cannot read %s", path);
    fclose(f);
    return buf;
}

/* Feeds every regular file of <kind>/<target> to the target's entry, in name order.
 * Returns how many there were. */
static size_t replay_dir(const char *kind, const fuzz_target_t *t)
{
    char rel[REPLAY_PATH_MAX];
    snprintf(rel, sizeof rel, "tests/%s/%s", kind, t->name);
    char *dir = test_source_path(rel);
    DIR *dh = opendir(dir);
    cr_assert(dh, "cannot open %s", dir);
    char **names = calloc(REPLAY_MAX_FILES, sizeof *names);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        cr_assert_lt(n, REPLAY_MAX_FILES, "more than %d files in %s", REPLAY_MAX_FILES, dir);
        names[n++] = strdup(de->d_name);
    }
    closedir(dh);
    qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 0; i < n; i++) {
        char path[REPLAY_PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        cr_assert(stat(path, &st) == 0 && S_ISREG(st.st_mode), "%s: not a file", path);
        size_t len;
        uint8_t *data = read_all(path, &len);
        fprintf(stderr, "replay: %s/%s/%s\n", kind, t->name, names[i]);
        cr_expect_eq(t->entry(data, len), 0, "%s", path);
        free(data);
        free(names[i]);
    }
    free(names);
    free(dir);
    return n;
}

static void replay_all(const char *kind, size_t min_per_target)
{
    for (size_t i = 0; i < TARGET_COUNT; i++) {
        size_t n = replay_dir(kind, &TARGETS[i]);
        cr_expect_geq(n, min_per_target, "tests/%s/%s: only %zu inputs", kind, TARGETS[i].name,
                      n);
    }
}

Test(fuzz_regressions, every_regression_input_passes)
{
    replay_all("fuzz-regressions", 0);
}

Test(fuzz_regressions, every_seed_passes)
{
    replay_all("fuzz-corpus", 5);
}

/* A folder named after no target would be skipped silently: refuse it. */
Test(fuzz_regressions, folders_name_targets)
{
    const char *kinds[] = {"tests/fuzz-regressions", "tests/fuzz-corpus"};
    for (size_t k = 0; k < 2; k++) {
        char *root = test_source_path(kinds[k]);
        DIR *dh = opendir(root);
        cr_assert(dh, "cannot open %s", root);
        struct dirent *de;
        while ((de = readdir(dh)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            bool known = false;
            for (size_t i = 0; i < TARGET_COUNT; i++)
                known = known || strcmp(de->d_name, TARGETS[i].name) == 0;
            cr_expect(known, "%s/%s: no fuzz target of that name", root, de->d_name);
        }
        closedir(dh);
        free(root);
    }
}
