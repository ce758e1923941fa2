/* vec.h - growing a plain C array (items, capacity) in place, doubling. */
#ifndef SAGA_VEC_H
#define SAGA_VEC_H

#include <stddef.h>

/* Makes *items (with *cap entries of size bytes) hold at least need entries, doubling
 * from 16. Returns 0, or -1 when out of memory (then *items and *cap are unchanged). */
int vec_grow(void **items, size_t *cap, size_t need, size_t size);

#endif
