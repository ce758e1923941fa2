/* catalogue.c - sets of loaded definitions and loading a folder of definition files (see
 * catalogue.h). */
#include "catalogue.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct defn_set {
    definition_t **items;
    size_t count;
    size_t capacity;
};

defn_set_t *defn_set_new(void)
{
    return calloc(1, sizeof(defn_set_t));
}

void defn_set_free(defn_set_t *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        definition_free(set->items[i]);
    free(set->items);
    free(set);
}

int defn_set_add(defn_set_t *set, definition_t *d, defn_errors_t *errs)
{
    if (!set || !d) {
        definition_free(d);
        return -1;
    }
    for (size_t i = 0; i < set->count; i++) {
        const definition_t *o = set->items[i];
        if (strcmp(o->name, d->name) == 0 && o->version == d->version) {
            defn_errors_add(errs, d->source, 0, 0, NULL,
                            "duplicate saga \"%s\" version %d (also defined in %s)", d->name,
                            d->version, o->source);
            definition_free(d);
            return -1;
        }
    }
    if (set->count == set->capacity) {
        size_t cap = set->capacity ? 2 * set->capacity : 8;
        definition_t **grown = realloc(set->items, cap * sizeof *grown);
        if (!grown) {
            defn_errors_add(errs, d->source, 0, 0, NULL, "out of memory");
            definition_free(d);
            return -1;
        }
        set->items = grown;
        set->capacity = cap;
    }
    set->items[set->count++] = d;
    return 0;
}

const definition_t *defn_set_find(const defn_set_t *set, const char *name, int version)
{
    const definition_t *best = NULL;
    for (size_t i = 0; set && name && i < set->count; i++) {
        const definition_t *d = set->items[i];
        if (strcmp(d->name, name) != 0)
            continue;
        if (version > 0 && d->version == version)
            return d;
        if (version <= 0 && (!best || d->version > best->version))
            best = d;
    }
    return best;
}

size_t defn_set_count(const defn_set_t *set)
{
    return set ? set->count : 0;
}

const definition_t *defn_set_at(const defn_set_t *set, size_t i)
{
    return set && i < set->count ? set->items[i] : NULL;
}

definition_t *defn_set_take(defn_set_t *set, size_t i)
{
    if (!set || i >= set->count)
        return NULL;
    definition_t *d = set->items[i];
    memmove(set->items + i, set->items + i + 1, (set->count - i - 1) * sizeof *set->items);
    set->count--;
    return d;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_json_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".json") == 0;
}

/* The *.json files of dir (not hidden ones, as a shell glob), sorted bytewise so that the
 * load order and the order of errors do not depend on the locale. Returns 0, or -1 with
 * an error appended. */
static int list_json_files(const char *dir, char ***out, size_t *count, defn_errors_t *errs)
{
    DIR *dh = opendir(dir);
    if (!dh) {
        defn_errors_add(errs, dir, 0, 0, NULL, "cannot open: %s", strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL) {
        if (de->d_name[0] == '.' || !has_json_suffix(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown)
                goto oom;
            names = grown;
        }
        if (!(names[n] = strdup(de->d_name)))
            goto oom;
        n++;
    }
    closedir(dh);
    if (n)
        qsort(names, n, sizeof *names, compare_names);
    *out = names;
    *count = n;
    return 0;
oom:
    closedir(dh);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    defn_errors_add(errs, dir, 0, 0, NULL, "out of memory");
    return -1;
}

defn_set_t *defn_set_load(const char *dir_or_file, defn_errors_t *errs)
{
    struct stat st;
    if (stat(dir_or_file, &st) < 0) {
        defn_errors_add(errs, dir_or_file, 0, 0, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    defn_set_t *set = defn_set_new();
    if (!set) {
        defn_errors_add(errs, dir_or_file, 0, 0, NULL, "out of memory");
        return NULL;
    }
    bool failed = false;
    if (!S_ISDIR(st.st_mode)) {
        definition_t *d = definition_load_file(dir_or_file, errs);
        failed = !d || defn_set_add(set, d, errs) < 0;
    } else {
        char **names = NULL;
        size_t n = 0;
        if (list_json_files(dir_or_file, &names, &n, errs) < 0) {
            failed = true;
        } else if (n == 0) {
            defn_errors_add(errs, dir_or_file, 0, 0, NULL, "no definition files (*.json)");
            failed = true;
        }
        size_t dlen = strlen(dir_or_file);
        while (dlen > 1 && dir_or_file[dlen - 1] == '/')
            dlen--;
        /* Every file is loaded even after a failure, so that one run reports all. */
        for (size_t i = 0; i < n; i++) {
            size_t len = dlen + 1 + strlen(names[i]) + 1;
            char *path = malloc(len);
            if (!path) {
                defn_errors_add(errs, dir_or_file, 0, 0, NULL, "out of memory");
                failed = true;
            } else {
                snprintf(path, len, "%.*s/%s", (int)dlen, dir_or_file, names[i]);
                definition_t *d = definition_load_file(path, errs);
                if (!d || defn_set_add(set, d, errs) < 0)
                    failed = true;
            }
            free(path);
            free(names[i]);
        }
        free(names);
    }
    if (failed) {
        defn_set_free(set);
        return NULL;
    }
    return set;
}

int definition_check_path(const char *path, FILE *out)
{
    defn_errors_t errs = {0};
    defn_set_t *set = defn_set_load(path, &errs);
    char line[sizeof(defn_error_t) + 64];
    size_t files = 0;
    for (size_t i = 0; i < errs.count; i++) {
        defn_error_format(&errs.items[i], line, sizeof line);
        fprintf(out, "%s\n", line);
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(errs.items[j].source, errs.items[i].source) == 0;
        if (!seen)
            files++;
    }
    int rc = 0;
    if (set) {
        size_t n = defn_set_count(set);
        fprintf(out, "%zu definition%s OK\n", n, n == 1 ? "" : "s");
    } else {
        fprintf(out, "%zu error%s in %zu file%s\n", errs.count, errs.count == 1 ? "" : "s",
                files, files == 1 ? "" : "s");
        rc = 1;
    }
    defn_set_free(set);
    defn_errors_release(&errs);
    return rc;
}
