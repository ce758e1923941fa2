/* guards.c - production guards for Redis and Kafka settings (see guards.h). */
#include "guards.h"

#include "log.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds "name:value" in an INFO reply and copies value (up to the line end). */
static int info_field(const char *info, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    for (const char *p = info; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            size_t l = strcspn(v, "\r\n");
            snprintf(out, len, "%.*s", (int)l, v);
            return 0;
        }
    }
    return -1;
}

int guards_read_redis(redisContext *rc, guards_redis_report_t *out, char *err, size_t len)
{
    memset(out, 0, sizeof *out);
    out->rdb_save_points = -1;
    if (rc->tcp.host)
        snprintf(out->address, sizeof out->address, "%.255s:%d", rc->tcp.host, rc->tcp.port);
    redisReply *r = redisCommand(rc, "INFO");
    if (!r || r->type != REDIS_REPLY_STRING) {
        snprintf(err, len, "redis INFO failed: %s",
                 r && r->type == REDIS_REPLY_ERROR ? r->str : rc->errstr);
        freeReplyObject(r);
        return -1;
    }
    char v[64];
    if (info_field(r->str, "maxmemory_policy", out->maxmemory_policy,
                   sizeof out->maxmemory_policy) < 0)
        snprintf(out->maxmemory_policy, sizeof out->maxmemory_policy, "unknown");
    if (info_field(r->str, "aof_enabled", v, sizeof v) == 0)
        out->aof_enabled = atoi(v);
    if (info_field(r->str, "connected_slaves", v, sizeof v) == 0)
        out->replicas = atoi(v);
    freeReplyObject(r);
    /* CONFIG may be renamed or denied by an ACL: then the save rules stay unknown. */
    r = redisCommand(rc, "CONFIG GET save");
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        int words = 0;
        for (const char *p = r->element[1]->str; *p;) {
            p += strspn(p, " ");
            if (*p) {
                words++;
                p += strcspn(p, " ");
            }
        }
        out->rdb_save_points = words / 2;
    }
    freeReplyObject(r);
    return 0;
}

int guards_check_redis(const guards_redis_report_t *r, const config_t *cfg, char *err,
                       size_t len)
{
    char where[sizeof r->address];
    if (r->address[0])
        snprintf(where, sizeof where, "%s", r->address);
    else
        snprintf(where, sizeof where, "%.255s:%d", cfg->redis_host, cfg->redis_port);
    if (strcmp(r->maxmemory_policy, "noeviction") != 0) {
        snprintf(err, len,
                 "Redis %s has maxmemory-policy %s: under memory pressure it would evict "
                 "saga keys and lose sagas. Set maxmemory-policy noeviction.",
                 where, r->maxmemory_policy);
        return -1;
    }
    bool persistent = r->aof_enabled || r->rdb_save_points != 0;
    if (!persistent && !cfg->dev_mode) {
        snprintf(err, len,
                 "Redis %s keeps nothing across a restart (appendonly no, no save rules): "
                 "a restart would lose every saga. Set appendonly yes (see "
                 "docs/reliability.md), or dev_mode=1 for a development instance.",
                 where);
        return -1;
    }
    if (!persistent)
        log_warn("dev_mode: Redis %s has no persistence; sagas do not survive its restart",
                 where);
    else if (!r->aof_enabled)
        log_warn("Redis %s persists with RDB snapshots only: a crash loses the writes "
                 "since the last snapshot; appendonly yes is safer (docs/reliability.md)",
                 where);
    if (r->replicas > 0 && cfg->redis_wait_replicas == 0)
        log_warn("Redis has %d replica(s) but redis_wait_replicas=0: a failover can lose a "
                 "fencing-epoch bump", r->replicas);
    if (cfg->redis_sentinels[0] && cfg->redis_sync_replicas == 0)
        log_warn("Redis through Sentinel with redis_sync_replicas=0: a failover can lose "
                 "rounds the coordinator already acted on (docs/reliability.md)");
    if (cfg->redis_sync_replicas > r->replicas)
        log_warn("redis_sync_replicas=%d but Redis %s has %d replica(s) now: no round is "
                 "confirmed until enough replicas are connected", cfg->redis_sync_replicas,
                 where, r->replicas);
    return 0;
}

void guards_check_input_topic(const char *topic, int partitions, int replicas)
{
    if (partitions < 2)
        log_warn("input topic %s has %d partition: one coordinator runs every saga and "
                 "instances cannot share the work; create it with more partitions",
                 topic, partitions);
    if (replicas < 2)
        log_warn("input topic %s has replication factor %d: losing a broker loses saga input; "
                 "use 3 in production", topic, replicas);
}
