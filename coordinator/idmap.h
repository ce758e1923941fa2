/* idmap.h - a hash map from string ids to pointers (open addressing, linear probing).
 *
 * Keys and values are borrowed: a key must stay valid while its entry is in the map (the
 * sagas of a partition are stored under their own id, which they own). Lookups by saga id
 * on every reply must be O(1). */
#ifndef SAGA_IDMAP_H
#define SAGA_IDMAP_H

#include <stddef.h>

typedef struct idmap idmap_t;

idmap_t *idmap_new(void);
void idmap_free(idmap_t *m);

/* The value stored under id, or NULL. */
void *idmap_get(const idmap_t *m, const char *id);
/* Stores value under id (replacing any; id is borrowed until the entry is removed or
 * replaced). Returns 0, or -1 when out of memory. */
int idmap_put(idmap_t *m, const char *id, void *value);
/* Removes id; returns its value or NULL. */
void *idmap_remove(idmap_t *m, const char *id);
size_t idmap_size(const idmap_t *m);

/* Iteration: for (size_t it = 0; idmap_next(m, &it, &key, &value);) ... Do not change the
 * map while iterating. */
int idmap_next(const idmap_t *m, size_t *it, const char **key, void **value);

#endif
