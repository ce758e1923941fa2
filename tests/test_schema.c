/* test_schema.c - docs/schemas/definition.json, the editor schema of the definition
 * format, judges every example and every case of tests/definitions/ as the loader does:
 * runs tests/definitions/schema_check.py (python3-jsonschema, from Debian) against
 * saga-coordinator --check --format json. The rules only the loader can enforce are listed
 * per case in tests/definitions/schema-gaps.json; the script prints them. */
#include "opstest.h"
#include "test_paths.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"   /* Debian's: python3-jsonschema installs for it */
#define SCHEMA_CHECK_TIMEOUT_MS 300000

Test(schema, agrees_with_the_loader_on_every_case)
{
    cr_assert_eq(access(PYTHON, X_OK), 0, "needs " PYTHON " (scripts/deps.sh --test)");
    ops_run_t probe;
    int rc = ops_run(&probe, (const char *const[]){PYTHON, "-c", "import jsonschema", NULL},
                     NULL, NULL, SCHEMA_CHECK_TIMEOUT_MS);
    ops_run_release(&probe);
    cr_assert_eq(rc, 0, "needs python3-jsonschema (scripts/deps.sh --test installs it)");

    const char *bin = getenv("SAGA_BIN_DIR");
    char coordinator[PATH_MAX];
    snprintf(coordinator, sizeof coordinator, "%s/saga-coordinator", bin && *bin ? bin : "bin");
    char *script = test_source_path("tests/definitions/schema_check.py");
    ops_run_t r;
    rc = ops_run(&r, (const char *const[]){PYTHON, script, coordinator, test_source_dir(), NULL},
                 NULL, NULL, SCHEMA_CHECK_TIMEOUT_MS);
    cr_log_info("%s%s", r.out, r.err);
    cr_expect_eq(rc, 0, "the schema and the loader disagree:\n%s%s", r.out, r.err);
    ops_run_release(&r);
    free(script);
}
