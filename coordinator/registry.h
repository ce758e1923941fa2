/* registry.h - the definitions a coordinator knows: the versions of its own folder, and
 * every version any saga it ran or took over started with, pinned for its lifetime.
 *
 * A saga runs to its end on the exact definition it started with (name, version and
 * content hash). So a definition, once known, is never freed nor replaced while the
 * registry lives: a reload adds versions and changes which ones the folder offers, and
 * a saga taken over from another coordinator whose version is not in the folder gets it
 * from Redis (saga:definitions, checked against saga:definition-hashes). Content never
 * changes under a NAME@VERSION: a file that tries is refused, naming the file and the
 * version (docs/definitions.md, "Versions").
 *
 * The folder itself is read by catalogue.h (defn_set_load, all or nothing), which knows
 * nothing of Redis; this module adds what a running coordinator needs on top of it. */
#ifndef SAGA_REGISTRY_H
#define SAGA_REGISTRY_H

#include "catalogue.h"
#include "storeport.h"

typedef struct registry registry_t;

/* A registry whose folder view is initial (borrowed: it must outlive the registry).
 * Returns NULL when out of memory. */
registry_t *registry_new(defn_set_t *initial);
void registry_free(registry_t *r);

/* version > 0: that exact version among every version known (folder, pinned, fetched).
 * version <= 0: the highest version of name in the folder view (what a start without a
 * version gets). Borrowed: valid as long as the registry. NULL when unknown here (a
 * version may still be in Redis: registry_fetch). */
const definition_t *registry_find(const registry_t *r, const char *name, int version);

/* Records every definition of the folder view in Redis (store_put_definition). Returns 0;
 * -1 with an error per refused definition appended to errs (a version recorded in Redis
 * with another content is refused: the file changed without a new version); or 1 when
 * Redis could not be asked (the error appended names the definition and why; the ones
 * after it were not tried). */
int registry_publish(registry_t *r, const store_port_t *st, defn_errors_t *errs);

/* Loads NAME@VERSION from Redis, checks it (it loads, it is that name and version, its
 * content hash is the recorded one, and expected_hash when not NULL or empty) and adds it
 * to the known versions (not to the folder view). Returns it (borrowed), or NULL with
 * *status 1 when Redis does not have it or it fails a check (why says which), -1 on a
 * Redis error (retry later). why may be NULL. */
const definition_t *registry_fetch(registry_t *r, const store_port_t *st, const char *name, int version,
                                   const char *expected_hash, int *status, char *why,
                                   size_t why_len);

/* What a reload changed, for the log. */
typedef struct registry_changes {
    size_t files;      /* definitions in the folder now */
    size_t added;      /* versions new to the folder view */
    size_t removed;    /* versions no longer in the folder (still known: pinned) */
} registry_changes_t;

/* Re-reads the folder dir: loads and validates every file, checks that no NAME@VERSION
 * changed content (against the versions known here and those recorded in Redis), records
 * the new versions in Redis, then makes the folder view the new one. All or nothing:
 * returns 0 when applied (changes filled, may be NULL), -1 when refused, with every reason
 * in errs and the view unchanged. */
int registry_reload(registry_t *r, const char *dir, const store_port_t *st, defn_errors_t *errs,
                    registry_changes_t *changes);

#endif
