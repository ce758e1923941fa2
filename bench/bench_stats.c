/* bench_stats.c - latency samples and percentiles (see bench_stats.h). */
#include "bench_stats.h"

#include <stdlib.h>
#include <string.h>

void samples_init(samples_t *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
}

void samples_release(samples_t *s)
{
    if (!s)
        return;
    free(s->v);
    pthread_mutex_destroy(&s->lock);
}

void samples_add(samples_t *s, int64_t us)
{
    if (us < 0)
        us = 0;
    if (us > UINT32_MAX)
        us = UINT32_MAX;
    pthread_mutex_lock(&s->lock);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        uint32_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&s->lock);
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (uint32_t)us;
    pthread_mutex_unlock(&s->lock);
}

void samples_clear(samples_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->n = 0;
    pthread_mutex_unlock(&s->lock);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

size_t samples_percentiles(samples_t *const *sets, size_t nsets, const double *ps, size_t nps,
                           double *out)
{
    size_t total = 0;
    for (size_t i = 0; i < nsets; i++)
        total += sets[i]->n;
    for (size_t k = 0; k < nps; k++)
        out[k] = 0;
    if (!total)
        return 0;
    uint32_t *all = malloc(total * sizeof *all);
    if (!all)
        return 0;
    size_t at = 0;
    for (size_t i = 0; i < nsets; i++) {
        pthread_mutex_lock(&sets[i]->lock);
        memcpy(all + at, sets[i]->v, sets[i]->n * sizeof *all);
        at += sets[i]->n;
        pthread_mutex_unlock(&sets[i]->lock);
    }
    qsort(all, total, sizeof *all, cmp_u32);
    for (size_t k = 0; k < nps; k++) {
        size_t idx = (size_t)(ps[k] / 100.0 * (double)(total - 1) + 0.5);
        out[k] = all[idx < total ? idx : total - 1];
    }
    free(all);
    return total;
}
