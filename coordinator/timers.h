/* timers.h - the timer heap: which saga needs the state machine's attention next.
 *
 * An indexed binary min-heap of sagas keyed by the time machine_next_timer() gives. Each
 * saga is in the heap at most once (its timer_slot says where), so re-arming after a
 * transition is a decrease/increase-key, and a saga that leaves is removed at once: no
 * stale entries pile up. */
#ifndef SAGA_TIMERS_H
#define SAGA_TIMERS_H

#include "saga.h"

#include <stddef.h>
#include <stdint.h>

typedef struct timer_heap {
    saga_t **items;
    size_t count, capacity;
} timer_heap_t;

void timers_init(timer_heap_t *h);
void timers_release(timer_heap_t *h);

/* Puts s in the heap at time at, moves it if it is there, removes it when at is 0.
 * Returns 0, or -1 when out of memory. */
int timers_set(timer_heap_t *h, saga_t *s, int64_t at);
void timers_remove(timer_heap_t *h, saga_t *s);

/* The saga due first, when its time is <= now; else NULL. Does not remove it. */
saga_t *timers_due(const timer_heap_t *h, int64_t now);
/* The earliest time in the heap, or 0 when empty. */
int64_t timers_next(const timer_heap_t *h);

#endif
