/* test_paths.h - where the tests find the repository's data files (sagas/, tests/...).
 *
 * ctest sets SAGA_SOURCE_DIR to the repository root; run by hand from the root, the
 * current folder stands in for it. */
#ifndef SAGA_TEST_PATHS_H
#define SAGA_TEST_PATHS_H

/* The repository root: $SAGA_SOURCE_DIR, or "." when unset or empty. Borrowed. */
const char *test_source_dir(void);

/* The root joined with rel ("tests/definitions"). Returns a new string (free() it), or
 * NULL when out of memory. */
char *test_source_path(const char *rel);

#endif
