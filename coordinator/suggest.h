/* suggest.h - "did you mean" suggestions for names in definitions and templates.
 *
 * The closest candidate by optimal string alignment distance (Levenshtein plus adjacent
 * transpositions, the usual typo: "chrage"), when close enough to be a likely typo. */
#ifndef SAGA_SUGGEST_H
#define SAGA_SUGGEST_H

#include <stddef.h>

#define SUGGEST_UNTIL_NULL ((size_t)-1) /* names is NULL-terminated */

/* The candidate of names (n entries, or up to a NULL one with SUGGEST_UNTIL_NULL; NULL
 * entries are skipped when n is given) closest to word, when at most max_distance edits
 * away and no more than half the word is changed; else NULL. Borrowed from names. */
const char *suggest_closest(const char *word, const char *const *names, size_t n,
                            size_t max_distance);

#endif
