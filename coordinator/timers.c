/* timers.c - indexed binary min-heap of sagas by their next timer (see timers.h). */
#include "timers.h"

#include <stdlib.h>

void timers_init(timer_heap_t *h)
{
    h->items = NULL;
    h->count = h->capacity = 0;
}

void timers_release(timer_heap_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->count; i++)
        h->items[i]->timer_slot = SAGA_NO_TIMER_SLOT;
    free(h->items);
    timers_init(h);
}

static void place(timer_heap_t *h, size_t i, saga_t *s)
{
    h->items[i] = s;
    s->timer_slot = i;
}

static void sift_up(timer_heap_t *h, size_t i)
{
    saga_t *s = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->timer_due <= s->timer_due)
            break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, s);
}

static void sift_down(timer_heap_t *h, size_t i)
{
    saga_t *s = h->items[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t best = s->timer_due;
        if (l < h->count && h->items[l]->timer_due < best)
            m = l, best = h->items[l]->timer_due;
        if (r < h->count && h->items[r]->timer_due < best)
            m = r;
        if (m == i)
            break;
        place(h, i, h->items[m]);
        i = m;
    }
    place(h, i, s);
}

void timers_remove(timer_heap_t *h, saga_t *s)
{
    size_t i = s->timer_slot;
    if (i == SAGA_NO_TIMER_SLOT || i >= h->count || h->items[i] != s)
        return;
    s->timer_slot = SAGA_NO_TIMER_SLOT;
    saga_t *last = h->items[--h->count];
    if (i == h->count)
        return;
    place(h, i, last);
    sift_down(h, i);
    sift_up(h, last->timer_slot);
}

int timers_set(timer_heap_t *h, saga_t *s, int64_t at)
{
    if (at == 0) {
        timers_remove(h, s);
        return 0;
    }
    size_t i = s->timer_slot;
    if (i != SAGA_NO_TIMER_SLOT && i < h->count && h->items[i] == s) {
        int64_t old = s->timer_due;
        s->timer_due = at;
        if (at < old)
            sift_up(h, i);
        else
            sift_down(h, i);
        return 0;
    }
    if (h->count == h->capacity) {
        size_t cap = h->capacity ? h->capacity * 2 : 64;
        saga_t **n = realloc(h->items, cap * sizeof *n);
        if (!n)
            return -1;
        h->items = n;
        h->capacity = cap;
    }
    s->timer_due = at;
    place(h, h->count, s);
    h->count++;
    sift_up(h, s->timer_slot);
    return 0;
}

saga_t *timers_due(const timer_heap_t *h, int64_t now)
{
    return h->count && h->items[0]->timer_due <= now ? h->items[0] : NULL;
}

int64_t timers_next(const timer_heap_t *h)
{
    return h->count ? h->items[0]->timer_due : 0;
}
