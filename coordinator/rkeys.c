/* rkeys.c - the Redis key layout of docs/redis.md: key names, indexes, fields (see
 * rkeys.h). */
#include "rkeys.h"

#include <stdio.h>
#include <string.h>

static const char *const INDEX_NAMES[RKEYS_INDEX_COUNT] = {"running", "compensating", "stuck",
                                                           "finished"};

void rkeys_init(rkeys_t *k, const char *prefix)
{
    snprintf(k->prefix, sizeof k->prefix, "%s", prefix ? prefix : RKEYS_DEFAULT_PREFIX);
}

/* PREFIX:{pN}:what[:id] */
static char *partition_key(const rkeys_t *k, char *buf, int32_t partition, const char *what,
                           const char *id)
{
    snprintf(buf, RKEYS_KEY_MAX, "%s:{p%d}:%s%s%s", k->prefix, (int)partition, what,
             id ? ":" : "", id ? id : "");
    return buf;
}

/* PREFIX:what */
static char *global_key(const rkeys_t *k, char *buf, const char *what)
{
    snprintf(buf, RKEYS_KEY_MAX, "%s:%s", k->prefix, what);
    return buf;
}

char *rkeys_saga(const rkeys_t *k, char *buf, int32_t partition, const char *saga_id)
{
    return partition_key(k, buf, partition, "saga", saga_id);
}

char *rkeys_history(const rkeys_t *k, char *buf, int32_t partition, const char *saga_id)
{
    return partition_key(k, buf, partition, "history", saga_id);
}

char *rkeys_counters(const rkeys_t *k, char *buf, int32_t partition)
{
    return partition_key(k, buf, partition, "counters", NULL);
}

char *rkeys_epoch(const rkeys_t *k, char *buf, int32_t partition)
{
    return partition_key(k, buf, partition, "epoch", NULL);
}

char *rkeys_owner(const rkeys_t *k, char *buf, int32_t partition)
{
    return partition_key(k, buf, partition, "owner", NULL);
}

char *rkeys_lease(const rkeys_t *k, char *buf, int32_t partition)
{
    return partition_key(k, buf, partition, "lease", NULL);
}

char *rkeys_position(const rkeys_t *k, char *buf, int32_t partition)
{
    return partition_key(k, buf, partition, "position", NULL);
}

char *rkeys_alive(const rkeys_t *k, char *buf)
{
    return global_key(k, buf, "alive");
}

char *rkeys_outbox(const rkeys_t *k, char *buf, int32_t partition)
{
    return partition_key(k, buf, partition, "outbox", NULL);
}

char *rkeys_index(const rkeys_t *k, char *buf, int32_t partition, rkeys_index_t index)
{
    return partition_key(k, buf, partition, "index", rkeys_index_name(index));
}

char *rkeys_meta(const rkeys_t *k, char *buf)
{
    return global_key(k, buf, "meta");
}

char *rkeys_member(const rkeys_t *k, char *buf, const char *instance)
{
    snprintf(buf, RKEYS_KEY_MAX, "%s:member:%s", k->prefix, instance);
    return buf;
}

char *rkeys_members(const rkeys_t *k, char *buf)
{
    return global_key(k, buf, "members");
}

char *rkeys_definitions(const rkeys_t *k, char *buf)
{
    return global_key(k, buf, "definitions");
}

char *rkeys_definition_hashes(const rkeys_t *k, char *buf)
{
    return global_key(k, buf, "definition-hashes");
}

char *rkeys_definition_field(char *buf, size_t len, const char *name, int version)
{
    snprintf(buf, len, "%s@%d", name, version);
    return buf;
}

const char *rkeys_index_name(rkeys_index_t index)
{
    return (unsigned)index < RKEYS_INDEX_COUNT ? INDEX_NAMES[index] : "unknown";
}

int rkeys_index_parse(const char *name)
{
    for (int i = 0; i < RKEYS_INDEX_COUNT; i++)
        if (name && strcmp(name, INDEX_NAMES[i]) == 0)
            return i;
    return -1;
}

rkeys_index_t rkeys_index_of(saga_status_t status)
{
    switch (status) {
    case SAGA_RUNNING: return RKEYS_INDEX_RUNNING;
    case SAGA_COMPENSATING: return RKEYS_INDEX_COMPENSATING;
    case SAGA_STUCK: return RKEYS_INDEX_STUCK;
    default: return RKEYS_INDEX_FINISHED;
    }
}
