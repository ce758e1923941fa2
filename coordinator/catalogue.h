/* catalogue.h - sets of loaded definitions (defn_set_t) and loading them from a folder.
 *
 * A set owns its definitions and looks them up by name and version; a name+version is
 * unique in a set, so two files defining the same one are an error naming both. Loading a
 * folder reads every *.json file in it (not hidden ones), in bytewise order, and is all or
 * nothing: one invalid file and nothing is loaded, every error of every file reported.
 * This is the file side only; which versions a running coordinator offers and keeps
 * pinned, and what it records in Redis, is registry.h's, built on these sets. */
#ifndef SAGA_CATALOGUE_H
#define SAGA_CATALOGUE_H

#include <stddef.h>
#include <stdio.h>

#include "definition.h"

/* A set of loaded definitions, looked up by name (and version). */
typedef struct defn_set defn_set_t;

/* An empty set (caller owns, free with defn_set_free), or NULL when out of memory. */
defn_set_t *defn_set_new(void);

/* Frees set and every definition in it. set may be NULL. */
void defn_set_free(defn_set_t *set);

/* Takes ownership of d (which may be NULL: then -1). Returns 0, or -1 on a duplicate
 * name+version (an error naming both files appended to errs, which may be NULL) or when
 * out of memory; on -1, d is freed. */
int defn_set_add(defn_set_t *set, definition_t *d, defn_errors_t *errs);

/* The definition of that name and version, or the highest version when version <= 0.
 * Borrowed: valid as long as the set. NULL when unknown (or set or name is NULL). */
const definition_t *defn_set_find(const defn_set_t *set, const char *name, int version);

/* How many definitions set holds (0 for NULL). */
size_t defn_set_count(const defn_set_t *set);

/* The i-th definition, in the order added (borrowed), or NULL when i is out of range. */
const definition_t *defn_set_at(const defn_set_t *set, size_t i);

/* Removes the i-th definition from the set and hands it to the caller (who then owns it);
 * the others keep their order. NULL when i is out of range. */
definition_t *defn_set_take(defn_set_t *set, size_t i);

/* Loads every *.json file of a folder, or one file. Returns a set (caller owns) when
 * every file is valid and saga names+versions are unique; NULL with all errors appended
 * to errs (may be NULL) otherwise (nothing half-loaded). */
defn_set_t *defn_set_load(const char *dir_or_file, defn_errors_t *errs);

/* Loads a folder or one file as defn_set_load does and prints to out every error, one
 * per line as defn_error_format writes it, then a summary line: "N definitions OK" or
 * "N errors in M files". Returns 0 when everything is valid, 1 otherwise (the exit
 * status of saga-coordinator --check). */
int definition_check_path(const char *path, FILE *out);

#endif
