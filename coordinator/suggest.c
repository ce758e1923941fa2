/* suggest.c - "did you mean" suggestions (see suggest.h). */
#include "suggest.h"

#include <stdint.h>
#include <string.h>

#define SUGGEST_MAX_WORD 64 /* longer words are not worth comparing */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= SUGGEST_MAX_WORD || lb >= SUGGEST_MAX_WORD)
        return SIZE_MAX;
    size_t d[SUGGEST_MAX_WORD][SUGGEST_MAX_WORD];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *suggest_closest(const char *word, const char *const *names, size_t n,
                            size_t max_distance)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; n == SUGGEST_UNTIL_NULL ? names[i] != NULL : i < n; i++) {
        if (!names[i])
            continue;
        size_t dist = edit_distance(word, names[i]);
        if (dist < best_d) {
            best_d = dist;
            best = names[i];
        }
    }
    if (best && best_d <= max_distance && 2 * best_d <= strlen(word))
        return best;
    return NULL;
}
