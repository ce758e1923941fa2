/* test_paths.c - resolves repository-relative paths for the tests (see test_paths.h). */
#include "test_paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *test_source_dir(void)
{
    const char *dir = getenv("SAGA_SOURCE_DIR");
    return (dir && *dir) ? dir : ".";
}

char *test_source_path(const char *rel)
{
    const char *dir = test_source_dir();
    size_t dlen = strlen(dir);
    /* A trailing slash on the root would double up; keep joined paths tidy because
     * tests compare error messages that contain them. */
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    size_t len = dlen + 1 + strlen(rel) + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    snprintf(out, len, "%.*s/%s", (int)dlen, dir, rel);
    return out;
}
