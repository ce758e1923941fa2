/* bench_stats.h - latency samples for the benchmark: a thread-safe growable array of
 * microsecond values and its percentiles. */
#ifndef SAGA_BENCH_STATS_H
#define SAGA_BENCH_STATS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct samples {
    pthread_mutex_t lock;
    uint32_t *v;               /* microseconds */
    size_t n, cap;
} samples_t;

void samples_init(samples_t *s);
void samples_release(samples_t *s);
void samples_add(samples_t *s, int64_t us);
void samples_clear(samples_t *s);

/* Percentiles (0..100) of the union of sets[0..nsets), in microseconds, written to out in
 * the order of ps; 0 when there are no samples. Returns the sample count. */
size_t samples_percentiles(samples_t *const *sets, size_t nsets, const double *ps, size_t nps,
                           double *out);

#endif
