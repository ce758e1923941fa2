/* storeport.c - what the store port's implementations share: releasing an outbox entry
 * (storeport.h; store.c is the Redis implementation). */
#include "storeport.h"

#include <stdlib.h>
#include <string.h>

void outbox_entry_release(outbox_entry_t *e)
{
    if (!e)
        return;
    free(e->id);
    free(e->topic);
    free(e->key);
    free(e->value);
    memset(e, 0, sizeof *e);
}
