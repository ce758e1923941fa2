/* idmap.c - string-keyed hash map with linear probing and backward-shift deletion. */
#include "idmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IDMAP_MIN_CAPACITY 16

typedef struct slot {
    const char *key; /* borrowed; NULL = empty */
    uint64_t hash;
    void *value;
} slot_t;

struct idmap {
    slot_t *slots;
    size_t capacity; /* a power of two */
    size_t size;
};

/* FNV-1a, 64 bit: ids are short strings. */
static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

idmap_t *idmap_new(void)
{
    idmap_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->slots = calloc(IDMAP_MIN_CAPACITY, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    m->capacity = IDMAP_MIN_CAPACITY;
    return m;
}

void idmap_free(idmap_t *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m);
}

static size_t find_slot(const idmap_t *m, const char *id, uint64_t h)
{
    size_t mask = m->capacity - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const slot_t *s = &m->slots[i];
        if (!s->key || (s->hash == h && strcmp(s->key, id) == 0))
            return i;
    }
}

void *idmap_get(const idmap_t *m, const char *id)
{
    size_t i = find_slot(m, id, hash_id(id));
    return m->slots[i].key ? m->slots[i].value : NULL;
}

static int grow(idmap_t *m)
{
    size_t cap = m->capacity * 2;
    slot_t *n = calloc(cap, sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < m->capacity; i++) {
        slot_t *s = &m->slots[i];
        if (!s->key)
            continue;
        size_t j = s->hash & (cap - 1);
        while (n[j].key)
            j = (j + 1) & (cap - 1);
        n[j] = *s;
    }
    free(m->slots);
    m->slots = n;
    m->capacity = cap;
    return 0;
}

int idmap_put(idmap_t *m, const char *id, void *value)
{
    if ((m->size + 1) * 4 > m->capacity * 3 && grow(m) < 0)
        return -1;
    uint64_t h = hash_id(id);
    size_t i = find_slot(m, id, h);
    slot_t *s = &m->slots[i];
    if (!s->key) {
        s->hash = h;
        m->size++;
    }
    s->key = id; /* also on a replace: the old key may go with the old value */
    s->value = value;
    return 0;
}

void *idmap_remove(idmap_t *m, const char *id)
{
    size_t mask = m->capacity - 1;
    size_t i = find_slot(m, id, hash_id(id));
    if (!m->slots[i].key)
        return NULL;
    void *value = m->slots[i].value;
    m->slots[i].key = NULL;
    m->size--;
    /* Backward shift: move later entries of the cluster into the hole when their home
     * slot is at or before it, so lookups never stop early. */
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            m->slots[j].key = NULL;
            i = j;
        }
    }
    return value;
}

size_t idmap_size(const idmap_t *m)
{
    return m->size;
}

int idmap_next(const idmap_t *m, size_t *it, const char **key, void **value)
{
    for (; *it < m->capacity; (*it)++) {
        const slot_t *s = &m->slots[*it];
        if (s->key) {
            *key = s->key;
            *value = s->value;
            (*it)++;
            return 1;
        }
    }
    return 0;
}
