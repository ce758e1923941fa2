/* sp_dedup.c - the de-duplication store: the check and record Lua scripts and their
 * verdicts, over a common/redisconn.h connection, or on a Redis Cluster over a
 * common/rediscluster.h client that sends every script to the primary serving the slot
 * of the prefix's hash tag (see sp_dedup.h). */
#include "sp_dedup.h"

#include "rediscluster.h"
#include "redisconn.h"
#include "sp_log.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_REDIS_CONNECT_TIMEOUT_MS 2000 /* at most: less when the command timeout is less */
#define SP_MAX_SCRIPT_ARGS (8 + SAGA_PARTICIPANT_MAX_EFFECTS * (SAGA_PARTICIPANT_MAX_EFFECT_ARGS + 1))

/* KEYS[1] the command's record, KEYS[2] its action's record (the same for an action).
 * ARGV: kind, retention_s, lease_ms, noop body. Returns {verdict, data}.
 * Reads everything before the first write (a script error leaves nothing half-done). */
static const char SP_CHECK_LUA[] =
    "local key, akey = KEYS[1], KEYS[2]\n"
    "local kind, ret, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local function claim()\n"
    "  redis.call('HSET', key, 'state', 'pending', 'lease_until', now + lease, 'updated_at', now)\n"
    "  redis.call('HINCRBY', key, 'runs', 1)\n"
    "  redis.call('EXPIRE', key, ret)\n"
    "end\n"
    "local s = redis.call('HMGET', key, 'state', 'reply')\n"
    "if s[1] == 'ok' or s[1] == 'failed' then return {'resend', s[2]} end\n"
    "if kind == 'action' then\n"
    "  if s[1] == 'tombstone' then return {'refuse', ''} end\n"
    "  claim()\n"
    "  return {'run', ''}\n"
    "end\n"
    "local a = redis.call('HMGET', akey, 'state', 'reply', 'lease_until')\n"
    "if a[1] == 'ok' then claim() return {'run', a[2]} end\n"
    "if a[1] == 'pending' and tonumber(a[3] or '0') > now then return {'busy', ''} end\n"
    "local why\n"
    "if a[1] == 'failed' then\n"
    "  why = 'action failed: nothing to undo'\n"
    "else\n"
    "  if a[1] == 'retryable' then why = 'action failed retryably, never applied: nothing to undo'\n"
    "  elseif a[1] == 'tombstone' then why = 'action already tombstoned: nothing to undo'\n"
    "  else why = 'action never applied: nothing to undo, action tombstoned' end\n"
    "  redis.call('HSET', akey, 'state', 'tombstone', 'updated_at', now)\n"
    "  redis.call('HDEL', akey, 'lease_until', 'reply')\n"
    "  redis.call('EXPIRE', akey, ret)\n"
    "end\n"
    "redis.call('HSET', key, 'state', 'ok', 'reply', ARGV[4], 'updated_at', now, 'noop', why)\n"
    "redis.call('HDEL', key, 'lease_until')\n"
    "redis.call('EXPIRE', key, ret)\n"
    "return {'noop', why}\n";

/* KEYS[1] the record, KEYS[2] the action's record, KEYS[2+i] the key of effect i.
 * ARGV: kind, retention_s, state (ok|failed|retryable), reply body, effect count, then
 * per effect: its argument count after the key, the command, the arguments.
 * Re-checks the record (another run may have won, or a compensation may have tombstoned
 * the action meanwhile), checks every effect against the data before the first write,
 * then applies the effects and writes the record. Returns {verdict, body}. */
static const char SP_RECORD_LUA[] =
    "local key, kind, ret, state, reply = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local s = redis.call('HMGET', key, 'state', 'reply')\n"
    "if s[1] == 'ok' or s[1] == 'failed' then return {'resend', s[2]} end\n"
    "if kind == 'action' and s[1] == 'tombstone' then return {'refuse', ''} end\n"
    "local function put(st, body)\n"
    "  redis.call('HSET', key, 'state', st, 'reply', body, 'updated_at', now)\n"
    "  redis.call('HDEL', key, 'lease_until')\n"
    "  redis.call('EXPIRE', key, ret)\n"
    "  return {'recorded', body}\n"
    "end\n"
    "if state ~= 'ok' then return put(state, reply) end\n"
    "local effects, i = {}, 6\n"
    "for e = 1, tonumber(ARGV[5]) do\n"
    "  local n = tonumber(ARGV[i])\n"
    "  local args = {}\n"
    "  for j = 1, n do args[j] = ARGV[i + 1 + j] end\n"
    "  effects[e] = {cmd = ARGV[i + 1], key = KEYS[2 + e], args = args}\n"
    "  i = i + 2 + n\n"
    "end\n"
    "local want = {SET='*', DEL='*', EXPIRE='*', INCRBY='string', HSET='hash', HDEL='hash',\n"
    "  HINCRBY='hash', RPUSH='list', LPUSH='list', SADD='set', SREM='set', ZADD='zset', ZINCRBY='zset'}\n"
    "local makes = {SET='string', DEL='none', INCRBY='string', HSET='hash', HINCRBY='hash',\n"
    "  RPUSH='list', LPUSH='list', SADD='set', ZADD='zset', ZINCRBY='zset'}\n"
    "local function isint(v) return v ~= nil and string.len(v) <= 18 and string.match(v, '^%-?%d+$') ~= nil end\n"
    "local function isnum(v) return v ~= nil and tonumber(v) ~= nil end\n"
    "local types, bad = {}, nil\n"
    "for e, ef in ipairs(effects) do\n"
    "  local ty = types[ef.key]\n"
    "  if ty == nil then ty = redis.call('TYPE', ef.key).ok end\n"
    "  local w, a = want[ef.cmd], ef.args\n"
    "  if w == nil then bad = 'command ' .. tostring(ef.cmd) .. ' not allowed'\n"
    "  elseif w ~= '*' and ty ~= 'none' and ty ~= w then bad = ef.key .. ' holds a ' .. ty .. ', ' .. ef.cmd .. ' needs a ' .. w\n"
    "  elseif ef.cmd == 'INCRBY' and (not isint(a[1]) or (ty == 'string' and not isint(redis.call('GET', ef.key)))) then bad = ef.key .. ': INCRBY needs integers'\n"
    "  elseif ef.cmd == 'HINCRBY' and not isint(a[2]) then bad = ef.key .. ': HINCRBY needs an integer increment'\n"
    "  elseif ef.cmd == 'HINCRBY' and ty == 'hash' then\n"
    "    local v = redis.call('HGET', ef.key, a[1])\n"
    "    if v and not isint(v) then bad = ef.key .. ' ' .. a[1] .. ': not an integer' end\n"
    "  elseif ef.cmd == 'EXPIRE' and not isint(a[1]) then bad = ef.key .. ': EXPIRE needs integer seconds'\n"
    "  elseif ef.cmd == 'ZINCRBY' and not isnum(a[1]) then bad = ef.key .. ': ZINCRBY needs a number'\n"
    "  elseif ef.cmd == 'ZADD' then\n"
    "    for j = 1, #a, 2 do if not isnum(a[j]) then bad = ef.key .. ': ZADD needs numeric scores' end end\n"
    "  end\n"
    "  if bad then break end\n"
    "  types[ef.key] = makes[ef.cmd] or ty\n"
    "end\n"
    "if bad then\n"
    "  return put('retryable', cjson.encode({status='failed', retryable=true, error='effect rejected, nothing applied: ' .. bad}))\n"
    "end\n"
    "for e, ef in ipairs(effects) do\n"
    "  local r = redis.pcall(ef.cmd, ef.key, unpack(ef.args))\n"
    "  if type(r) == 'table' and r.err then\n"
    "    if e == 1 then\n"
    "      return put('retryable', cjson.encode({status='failed', retryable=true, error='effect failed, nothing applied: ' .. r.err}))\n"
    "    end\n"
    "    return put('failed', cjson.encode({status='failed', retryable=false, error='effect ' .. e .. ' failed after ' .. (e - 1) .. ' applied (needs an operator): ' .. r.err}))\n"
    "  end\n"
    "end\n"
    "return put('ok', reply)\n";

struct sp_dedup {
    redisconn_t *conn;       /* one Redis (or the primary the Sentinels name), or NULL */
    rcluster_t *cluster;     /* a Redis Cluster, or NULL */
    int slot;                /* on a cluster: the slot of the prefix's hash tag */
    char error[REDISCONN_ERROR_MAX]; /* the last failure */
    char *prefix;
    long retention_s;
    long lease_ms;
    int sync_replicas;
    int timeout_ms;          /* a command's (the WAIT for replicas: half of it) */
    char check_sha[41];
    char record_sha[41];
};

static void sp_dedup_set_error(sp_dedup_t *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sp_dedup_set_error(sp_dedup_t *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
}

/* Keeps the reason of the connection's or the cluster client's last failure. */
static void sp_dedup_keep_error(sp_dedup_t *d)
{
    sp_dedup_set_error(d, "%s", d->cluster ? rcluster_last_error(d->cluster)
                                           : redisconn_last_error(d->conn));
}

/* Runs one command: on the connection, or on a cluster at the primary of the prefix's
 * slot (MOVED and ASK followed). Returns any reply, error replies included (caller
 * frees), or NULL when Redis cannot be reached (the reason in d->error). */
static redisReply *sp_dedup_command_argv(sp_dedup_t *d, int argc, const char **argv,
                                         const size_t *lens)
{
    redisReply *r = d->cluster ? rcluster_command_argv(d->cluster, d->prefix, argc, argv, lens)
                               : redisconn_command_argv(d->conn, argc, argv, lens);
    if (!r)
        sp_dedup_keep_error(d);
    return r;
}

static int sp_dedup_load_script(sp_dedup_t *d, const char *src, char sha[41])
{
    const char *argv[] = {"SCRIPT", "LOAD", src};
    redisReply *r = sp_dedup_command_argv(d, 3, argv, NULL);
    if (!r)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy(sha, r->str, 41);
        rc = 0;
    } else {
        sp_dedup_set_error(d, "redis SCRIPT LOAD: %s",
                           r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    return rc;
}

/* Connects when not connected (common/redisconn.h: AUTH, SELECT) and loads the scripts
 * on a new connection. On a cluster: loads them once on the primary of the prefix's
 * slot (another primary that gets the slot later answers NOSCRIPT, and sp_dedup_eval
 * sends the script itself). Returns 0, or -1 (the reason in d->error). */
static int sp_dedup_connect(sp_dedup_t *d)
{
    if (d->cluster) {
        if (d->check_sha[0] && d->record_sha[0])
            return 0;
        return sp_dedup_load_script(d, SP_CHECK_LUA, d->check_sha) != 0 ||
                       sp_dedup_load_script(d, SP_RECORD_LUA, d->record_sha) != 0
                   ? -1
                   : 0;
    }
    int rc = redisconn_connect(d->conn);
    if (rc < 0)
        sp_dedup_keep_error(d);
    if (rc <= 0)
        return rc;
    if (sp_dedup_load_script(d, SP_CHECK_LUA, d->check_sha) != 0 ||
        sp_dedup_load_script(d, SP_RECORD_LUA, d->record_sha) != 0) {
        redisconn_drop(d->conn);
        return -1;
    }
    return 0;
}

/* True when prefix holds a hash tag: a '{' with a later '}' and something between, so
 * that every key made from it hashes to the tag's slot. */
static bool sp_prefix_has_tag(const char *prefix)
{
    const char *open = strchr(prefix, '{');
    const char *close = open ? strchr(open + 1, '}') : NULL;
    return close && close > open + 1;
}

sp_dedup_t *sp_dedup_new(const sp_dedup_config_t *cfg, char *err, size_t errlen)
{
    sp_dedup_t *d = calloc(1, sizeof *d);
    if (!d)
        goto oom;
    redisconn_config_t rc = cfg->redis;
    rc.command_timeout_ms = cfg->timeout_ms;
    rc.connect_timeout_ms = cfg->timeout_ms < SP_REDIS_CONNECT_TIMEOUT_MS
                                ? cfg->timeout_ms
                                : SP_REDIS_CONNECT_TIMEOUT_MS;
    if (rc.cluster) {
        if (!cfg->prefix || !sp_prefix_has_tag(cfg->prefix)) {
            snprintf(err, errlen,
                     "dedup_prefix \"%s\" has no hash tag: on a Redis Cluster (redis_cluster=1) "
                     "the de-duplication records and the effects' keys must share one slot, so "
                     "the prefix needs a {tag} that the effects' keys use too, as in the "
                     "default \"saga:dedup:{GROUP}:\" (docs/participants.md)",
                     cfg->prefix ? cfg->prefix : "");
            goto err;
        }
        if (rc.db != 0) {
            snprintf(err, errlen, "redis_db=%d with redis_cluster=1: a Redis Cluster has only "
                                  "database 0", rc.db);
            goto err;
        }
        if (rc.sentinels && *rc.sentinels) {
            snprintf(err, errlen, "redis_sentinels with redis_cluster=1: a Redis Cluster fails "
                                  "over by itself, without Sentinels (set one of the two)");
            goto err;
        }
        d->cluster = rcluster_new(&rc);
        d->slot = rcluster_key_slot(cfg->prefix, strlen(cfg->prefix));
    } else {
        d->conn = redisconn_new(&rc);
    }
    d->prefix = strdup(cfg->prefix);
    d->retention_s = cfg->retention_s;
    d->lease_ms = cfg->lease_ms;
    d->sync_replicas = cfg->sync_replicas;
    d->timeout_ms = cfg->timeout_ms;
    if ((!d->conn && !d->cluster) || !d->prefix)
        goto oom;
    /* Redis need not answer yet (started with it, or during its failover): the first
     * command waits for it, as every command does during an outage. A Redis that refuses
     * the settings will not change its mind: that fails here. */
    if (sp_dedup_connect(d) != 0) {
        bool refused = d->cluster ? rcluster_refused(d->cluster) : redisconn_refused(d->conn);
        if (refused) {
            snprintf(err, errlen, "%s", d->error);
            goto err;
        }
        sp_log(SP_LOG_WARN, NULL, "redis does not answer yet (%s): commands wait for it",
               d->error);
    }
    return d;
oom:
    snprintf(err, errlen, "out of memory");
err:
    sp_dedup_free(d);
    return NULL;
}

void sp_dedup_free(sp_dedup_t *d)
{
    if (!d)
        return;
    redisconn_free(d->conn);
    rcluster_free(d->cluster);
    free(d->prefix);
    free(d);
}

static char *sp_dedup_key(const sp_dedup_t *d, const char *k)
{
    size_t n = strlen(d->prefix) + strlen(k) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", d->prefix, k);
    return s;
}

/* WAIT sync_replicas: the script's writes must reach that many replicas before the
 * decision counts (a failover must not lose a record the reply relies on). Returns 0, or
 * -1 (logged; the caller retries: the scripts answer the same again, from the record). */
static int sp_dedup_wait(sp_dedup_t *d)
{
    char n[16], timeout[16];
    snprintf(n, sizeof n, "%d", d->sync_replicas);
    snprintf(timeout, sizeof timeout, "%d", d->timeout_ms / 2);
    const char *argv[] = {"WAIT", n, timeout};
    redisReply *w = sp_dedup_command_argv(d, 3, argv, NULL);
    long long acked = w && w->type == REDIS_REPLY_INTEGER ? w->integer : -1;
    if (w && w->type == REDIS_REPLY_ERROR)
        sp_dedup_set_error(d, "redis WAIT: %s", w->str);
    freeReplyObject(w);
    if (acked >= d->sync_replicas)
        return 0;
    if (acked < 0)
        sp_log(SP_LOG_WARN, NULL, "%s", d->error);
    else
        sp_log(SP_LOG_WARN, NULL, "redis: a de-duplication record reached %lld of %d replicas "
               "in %d ms (redis_sync_replicas); retrying", acked, d->sync_replicas,
               d->timeout_ms / 2);
    return -1;
}

/* EVALSHA with the given arguments (argv[0..1] are filled here), re-loading the scripts
 * once on NOSCRIPT (a Redis restart or SCRIPT FLUSH; on a cluster, a primary that got
 * the slot since: there the script itself is sent, EVAL, which also caches it). Returns
 * the reply, or NULL with *rc = -1 (unreachable) or -2 (error reply, logged). */
static redisReply *sp_dedup_eval(sp_dedup_t *d, int which_record, int argc, const char **argv,
                                 size_t *lens, int *rc)
{
    bool send_script = false;
    for (int tries = 0; tries < 2; tries++) {
        if (sp_dedup_connect(d) != 0) {
            sp_log(SP_LOG_WARN, NULL, "%s", d->error);
            *rc = -1;
            return NULL;
        }
        const char *src = which_record ? SP_RECORD_LUA : SP_CHECK_LUA;
        argv[0] = send_script ? "EVAL" : "EVALSHA";
        argv[1] = send_script ? src : which_record ? d->record_sha : d->check_sha;
        lens[0] = strlen(argv[0]);
        lens[1] = send_script ? strlen(src) : 40;
        redisReply *r = sp_dedup_command_argv(d, argc, argv, lens);
        if (!r) {
            sp_log(SP_LOG_WARN, NULL, "%s", d->error);
            *rc = -1;
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r);
            if (d->cluster)
                send_script = true;
            else
                redisconn_drop(d->conn); /* reconnecting loads the scripts again */
            continue;
        }
        if (d->cluster && rcluster_reply_is_redirect(r)) {
            /* More redirections than rcluster follows (a cluster in turmoil): retry later. */
            sp_log(SP_LOG_WARN, NULL, "redis cluster: %s", r->str);
            freeReplyObject(r);
            *rc = -1;
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            sp_log(SP_LOG_ERROR, NULL, "redis %s script: %s", which_record ? "record" : "check", r->str);
            freeReplyObject(r);
            *rc = -2;
            return NULL;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING) {
            sp_log(SP_LOG_ERROR, NULL, "redis %s script: unexpected reply shape", which_record ? "record" : "check");
            freeReplyObject(r);
            *rc = -2;
            return NULL;
        }
        if (d->sync_replicas > 0 && sp_dedup_wait(d) != 0) {
            freeReplyObject(r);
            *rc = -1;
            return NULL;
        }
        *rc = 0;
        return r;
    }
    sp_log(SP_LOG_ERROR, NULL, "redis: NOSCRIPT after reloading the scripts");
    *rc = -2;
    return NULL;
}

/* Decodes a recorded body; NULL (logged) when it is not a JSON object. */
static json_t *sp_body_decode(const redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING || r->len == 0)
        return NULL;
    json_t *b = json_loadb(r->str, r->len, 0, NULL);
    if (!json_is_object(b)) {
        json_decref(b);
        sp_log(SP_LOG_ERROR, NULL, "redis: a recorded reply is not a JSON object");
        return NULL;
    }
    return b;
}

int sp_dedup_check(sp_dedup_t *d, const saga_command_t *cmd, sp_check_t *out)
{
    memset(out, 0, sizeof *out);
    char *key = sp_dedup_key(d, cmd->key);
    char *akey = sp_dedup_key(d, cmd->action_key);
    char ret[32], lease[32];
    snprintf(ret, sizeof ret, "%ld", d->retention_s);
    snprintf(lease, sizeof lease, "%ld", d->lease_ms);
    int rc = -2;
    if (!key || !akey) {
        sp_log(SP_LOG_ERROR, cmd->saga_id, "out of memory");
        goto done;
    }
    const char *argv[] = {NULL, NULL, "2", key, akey,
                          cmd->kind == SAGA_KIND_ACTION ? "action" : "compensation", ret, lease, SP_NOOP_BODY};
    size_t lens[9];
    for (int i = 2; i < 9; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = sp_dedup_eval(d, 0, 9, argv, lens, &rc);
    if (!r)
        goto done;
    const char *v = r->element[0]->str;
    if (strcmp(v, "resend") == 0) {
        out->verdict = SP_CHECK_RESEND;
        out->body = sp_body_decode(r->element[1]);
        if (!out->body)
            rc = -2;
    } else if (strcmp(v, "refuse") == 0) {
        out->verdict = SP_CHECK_REFUSE;
    } else if (strcmp(v, "busy") == 0) {
        out->verdict = SP_CHECK_BUSY;
    } else if (strcmp(v, "noop") == 0) {
        out->verdict = SP_CHECK_NOOP;
        if (r->element[1]->type == REDIS_REPLY_STRING)
            snprintf(out->why, sizeof out->why, "%s", r->element[1]->str);
    } else if (strcmp(v, "run") == 0) {
        out->verdict = SP_CHECK_RUN;
        if (cmd->kind == SAGA_KIND_COMPENSATION) {
            out->body = sp_body_decode(r->element[1]);
            if (!out->body)
                rc = -2;
        }
    } else {
        sp_log(SP_LOG_ERROR, cmd->saga_id, "redis check script: unknown verdict %s", v);
        rc = -2;
    }
    freeReplyObject(r);
done:
    free(key);
    free(akey);
    if (rc != 0) {
        json_decref(out->body);
        out->body = NULL;
    }
    return rc;
}

int sp_dedup_record(sp_dedup_t *d, const saga_command_t *cmd, const saga_result_t *res,
                    const json_t *body, sp_record_t *out)
{
    memset(out, 0, sizeof *out);
    int rc = -2;
    const char *argv[SP_MAX_SCRIPT_ARGS];
    size_t lens[SP_MAX_SCRIPT_ARGS];
    char nargs[SAGA_PARTICIPANT_MAX_EFFECTS][16];
    char ret[32], neff[16];
    char *key = sp_dedup_key(d, cmd->key);
    char *akey = sp_dedup_key(d, cmd->action_key);
    char *bodys = json_dumps(body, JSON_COMPACT);
    if (!key || !akey || !bodys) {
        sp_log(SP_LOG_ERROR, cmd->saga_id, "out of memory");
        goto done;
    }
    int neffects = res->status == SP_RESULT_OK ? res->neffects : 0;
    const char *state = sp_result_state(res, cmd->kind);
    /* On a cluster one script can touch one slot only: an effect on a key of another slot
     * is rejected as the script rejects a bad effect, before anything is applied. */
    for (int i = 0; d->cluster && i < neffects; i++) {
        const char *ek = res->effects[i].argv[1];
        if (rcluster_key_slot(ek, strlen(ek)) == d->slot)
            continue;
        char why[600];
        snprintf(why, sizeof why, "effect rejected, nothing applied: %.200s is not in the slot "
                 "of the dedup prefix's hash tag (%.200s): on a Redis Cluster the effects' keys "
                 "must use that tag", ek, d->prefix);
        sp_log(SP_LOG_ERROR, cmd->saga_id, "%s", why);
        json_t *rejected = json_pack("{s:s, s:b, s:s}", "status", "failed", "retryable", 1,
                                     "error", why);
        free(bodys);
        bodys = rejected ? json_dumps(rejected, JSON_COMPACT) : NULL;
        json_decref(rejected);
        neffects = 0;
        state = "retryable";
        break;
    }
    if (!bodys) {
        sp_log(SP_LOG_ERROR, cmd->saga_id, "out of memory");
        goto done;
    }
    snprintf(ret, sizeof ret, "%ld", d->retention_s);
    snprintf(neff, sizeof neff, "%d", neffects);
    char nkeys[16];
    snprintf(nkeys, sizeof nkeys, "%d", 2 + neffects);
    int argc = 0;
    argv[argc++] = NULL;
    argv[argc++] = NULL;
    argv[argc++] = nkeys;
    argv[argc++] = key;
    argv[argc++] = akey;
    for (int i = 0; i < neffects; i++)
        argv[argc++] = res->effects[i].argv[1];
    argv[argc++] = cmd->kind == SAGA_KIND_ACTION ? "action" : "compensation";
    argv[argc++] = ret;
    argv[argc++] = state;
    argv[argc++] = bodys;
    argv[argc++] = neff;
    for (int i = 0; i < neffects; i++) {
        const sp_effect_t *e = &res->effects[i];
        snprintf(nargs[i], sizeof nargs[i], "%d", e->argc - 2);
        argv[argc++] = nargs[i];
        argv[argc++] = e->argv[0];
        for (int j = 2; j < e->argc; j++)
            argv[argc++] = e->argv[j];
    }
    for (int i = 2; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = sp_dedup_eval(d, 1, argc, argv, lens, &rc);
    if (!r)
        goto done;
    const char *v = r->element[0]->str;
    if (strcmp(v, "recorded") == 0 || strcmp(v, "resend") == 0) {
        out->verdict = strcmp(v, "resend") == 0 ? SP_RECORD_RESEND : SP_RECORD_RECORDED;
        out->body = sp_body_decode(r->element[1]);
        if (!out->body)
            rc = -2;
    } else if (strcmp(v, "refuse") == 0) {
        out->verdict = SP_RECORD_REFUSE;
    } else {
        sp_log(SP_LOG_ERROR, cmd->saga_id, "redis record script: unknown verdict %s", v);
        rc = -2;
    }
    freeReplyObject(r);
done:
    free(key);
    free(akey);
    free(bodys);
    return rc;
}
