/* vec.c - growing a plain C array in place (see vec.h). */
#include "vec.h"

#include <stdlib.h>

#define VEC_FIRST_CAPACITY 16

int vec_grow(void **items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : VEC_FIRST_CAPACITY;
    while (n < need)
        n *= 2;
    void *p = realloc(*items, n * size);
    if (!p)
        return -1;
    *items = p;
    *cap = n;
    return 0;
}
