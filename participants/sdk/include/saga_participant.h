/* saga_participant.h - the participant SDK: the public API of libsagaparticipant.
 *
 * A participant is a service that consumes saga commands from one Kafka topic, runs a
 * handler per command type and replies to the coordinator (docs/protocol.md). The SDK
 * owns everything that is not the service's business logic:
 *
 *   - de-duplication: an effect is applied at most once per idempotency key
 *     (saga_id/step/kind); a repeated command is answered with the reply recorded the first
 *     time, without calling the handler. The record lives in Redis with a retention and is
 *     written atomically (one Lua script) with the reply decision and, optionally, with the
 *     handler's own Redis writes (saga_result_effect), so an effect kept in the same Redis
 *     is never applied twice even when the process dies at any instant;
 *   - the two edge cases of compensation: a compensation whose action was never applied is
 *     answered ok without calling the handler and leaves a tombstone; an action that
 *     arrives after its compensation is refused (failed, not retryable);
 *   - replies to exactly reply_to.topic / reply_to.partition, keyed by saga id, through an
 *     idempotent producer; a command's offset is committed only after its reply was
 *     delivered, so a crash re-delivers a command rather than losing it;
 *   - invalid commands are logged with the reason and skipped, never fatal;
 *   - graceful shutdown from a signal handler.
 *
 * Threading: one saga_participant_t is driven by one thread (the one in
 * saga_participant_run); handlers run on that thread, one command at a time. Only
 * saga_participant_stop may be called from another thread or a signal handler.
 *
 * Memory: every object is opaque. "borrowed" means valid until the handler returns and not
 * to be freed; "stolen" means the SDK takes the reference even when the call fails.
 *
 * Linking: pkg-config --cflags --libs saga-participant, or in CMake
 * find_package(saga-participant) and target_link_libraries(app saga::participant)
 * (docs/install.md). The shared library exports exactly the functions declared here. */
#ifndef SAGA_PARTICIPANT_H
#define SAGA_PARTICIPANT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "saga_participant_version.h" /* SAGA_PARTICIPANT_VERSION_MAJOR/MINOR/PATCH */

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the public API: the library is built with -fvisibility=hidden, so only what is
 * declared with it is exported from libsagaparticipant.so. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define SAGA_PARTICIPANT_API __attribute__((visibility("default")))
#else
#define SAGA_PARTICIPANT_API
#endif

/* Defaults applied by saga_participant_config_init. */
#define SAGA_PARTICIPANT_DEFAULT_REDIS_HOST "127.0.0.1"
#define SAGA_PARTICIPANT_DEFAULT_REDIS_PORT 6379
#define SAGA_PARTICIPANT_DEFAULT_RETENTION_S (7L * 24 * 3600)   /* 7 days */
#define SAGA_PARTICIPANT_DEFAULT_LEASE_MS 60000
#define SAGA_PARTICIPANT_DEFAULT_SESSION_TIMEOUT_MS 10000
#define SAGA_PARTICIPANT_DEFAULT_REDIS_TIMEOUT_MS 10000
/* Limits. */
#define SAGA_PARTICIPANT_MAX_EFFECTS 64        /* saga_result_effect calls per result */
#define SAGA_PARTICIPANT_MAX_EFFECT_ARGS 16    /* arguments of one effect, name included */
#define SAGA_PARTICIPANT_MAX_REPLY_BYTES (1024 * 1024)  /* protocol's max_message_bytes */

typedef struct saga_participant_s saga_participant_t; /* a running participant */
typedef struct saga_command_s saga_command_t;         /* read-only view of one command */
typedef struct saga_result_s saga_result_t;           /* what a handler decided */

/* Configuration. Initialise with saga_participant_config_init, then set fields. Strings
 * are borrowed for the duration of saga_participant_new only (it copies them). */
typedef struct saga_participant_config_s {
    const char *bootstrap_servers; /* required: Kafka "host:port[,host:port]" */
    const char *group_id;          /* required: consumer group of this service */
    const char *command_topic;     /* required: the topic the service's commands come on */
    const char *client_id;         /* optional Kafka client.id; NULL: the group id */

    const char *redis_host;        /* default SAGA_PARTICIPANT_DEFAULT_REDIS_HOST */
    int redis_port;                /* default SAGA_PARTICIPANT_DEFAULT_REDIS_PORT */
    const char *redis_user;        /* optional ACL user (AUTH user password); NULL: none */
    const char *redis_password;    /* optional; NULL: no AUTH */
    int redis_db;                  /* SELECT'ed after connecting; default 0 */

    /* Prefix of the de-duplication keys: the record of idempotency key K is the hash
     * <dedup_prefix><K>. NULL: "saga:dedup:{<group_id>}:". On Redis Cluster every key a
     * result touches must share one hash tag: put the tag of your effects' keys here. */
    const char *dedup_prefix;
    long dedup_retention_s;        /* how long records and tombstones live; default 7 d */
    /* How long a compensation waits for an action that another process is still running
     * (it is answered "failed, retryable" meanwhile); after it, the action counts as
     * never applied. Must exceed the longest handler run. Default 60 s. */
    long inflight_lease_ms;

    /* Extra librdkafka properties, a NULL-terminated array of "key=value" strings, passed
     * through to both clients (SASL, SSL, ...). "consumer.key=value" and
     * "producer.key=value" go to one client only. They override the SDK's defaults
     * (session.timeout.ms=10000, enable.idempotence=true, ...) except
     * enable.auto.offset.store=false, which the SDK's delivery guarantee needs. */
    const char *const *kafka_properties;

    /* Redis Sentinel (docs/high-availability.md): "host:port[,host:port...]" of the
     * Sentinels to ask for the primary named redis_master_name; then redis_host and
     * redis_port are not used. The primary is found again after a failover (a lost
     * connection or a READONLY reply): the de-duplication step is retried meanwhile.
     * NULL: no Sentinel. The Sentinels' own AUTH: redis_sentinel_user (optional) and
     * redis_sentinel_password (NULL: none). */
    const char *redis_sentinels;
    const char *redis_master_name;
    const char *redis_sentinel_user;
    const char *redis_sentinel_password;
    /* Replicas (0..16) that must have each de-duplication decision (WAIT) before the
     * handler runs or the reply is sent, so that a failover cannot lose a record a reply
     * was based on; while fewer answer, the step is retried. Default 0: none. */
    int redis_sync_replicas;
    /* Redis Cluster (docs/participants.md, "Redis Cluster"): 1 = the de-duplication
     * records live on a cluster; every script goes to the primary serving the slot of
     * dedup_prefix's hash tag (MOVED and ASK are followed, the slot map read again after
     * a migration or a failover). dedup_prefix must then hold a {tag} (the default does),
     * and every effect's key the same tag: an effect on another slot is rejected,
     * nothing applied. redis_db must be 0 and redis_sentinels NULL. Default 0. Added in
     * ABI 2, at the end so that the fields above keep their offsets. */
    int redis_cluster;
    /* The cluster's seed nodes, "host:port[,host:port...]"; NULL or "": redis_host and
     * redis_port. Any node will do: the others are found from it. */
    const char *redis_cluster_nodes;
    /* How long one Redis command may take (100..600000 ms; default
     * SAGA_PARTICIPANT_DEFAULT_REDIS_TIMEOUT_MS). A primary that is frozen, not dead, holds
     * the de-duplication step this long before the SDK drops the connection and asks the
     * Sentinels (or the cluster) for the primary again; a WAIT for replicas waits half of
     * it. Keep it below the steps' timeouts. The connect timeout is the smaller of this
     * and 2 s. Added in ABI 2. */
    int redis_timeout_ms;
} saga_participant_config_t;

/* Fills cfg with the defaults above (strings NULL, numbers set). */
SAGA_PARTICIPANT_API void saga_participant_config_init(saga_participant_config_t *cfg);

/* Creates a participant: checks the configuration, connects to Redis (loading the
 * scripts) and creates the Kafka consumer and producer (which connect lazily). A Redis
 * that does not answer yet is not an error (logged; the first command waits for it, as
 * during any outage); one that refuses the settings (AUTH, SELECT, a bad Sentinel or
 * cluster node list) is. Returns the participant (free with saga_participant_free), or
 * NULL with a reason in errbuf (errbuf may be NULL; errlen its size). */
SAGA_PARTICIPANT_API saga_participant_t *
saga_participant_new(const saga_participant_config_t *cfg, char *errbuf, size_t errlen);

/* Frees p; accepts NULL. Must not be called while saga_participant_run runs. */
SAGA_PARTICIPANT_API void saga_participant_free(saga_participant_t *p);

/* The kind of a command. */
typedef enum { SAGA_KIND_ACTION = 0, SAGA_KIND_COMPENSATION = 1 } saga_kind_t;

/* A handler: decides one command. It must call exactly one of saga_result_ok,
 * saga_result_fail or saga_result_retry on res (a handler that calls none is taken as
 * saga_result_retry "handler set no result"; later calls replace earlier ones). cmd and
 * res are borrowed: valid only during the call. opaque is the pointer given to
 * saga_participant_on.
 *
 * When it is called: once a result is recorded as final for an idempotency key (ok, or an
 * action's failure), the handler is never called again for that key. It may be called
 * again for a key when the process died before recording its result, after a retryable
 * result, or after a compensation's failure. Effects declared with saga_result_effect are therefore
 * exactly-once; effects the handler makes elsewhere (another database, an HTTP call)
 * must be idempotent by saga_command_idempotency_key.
 *
 * A compensation handler is called only when its action was recorded ok: the SDK
 * answers the others itself (see docs/participants.md). */
typedef void (*saga_handler_fn)(const saga_command_t *cmd, saga_result_t *res, void *opaque);

/* Registers fn for command type command_type (copied). Registering a type twice replaces
 * the handler. Returns 0, or -1 when an argument is NULL/empty or memory runs out. */
SAGA_PARTICIPANT_API int saga_participant_on(saga_participant_t *p, const char *command_type,
                                             saga_handler_fn fn, void *opaque);

/* Consumes and handles commands until saga_participant_stop is called, then shuts down
 * gracefully: the command in flight is finished, replies are flushed, the offsets of
 * replied commands are committed and the consumer leaves its group.
 * Returns 0 after a stop, -1 on a fatal error (idempotent producer fenced, consumer
 * error that cannot be recovered); errors are logged. Call at most once per participant. */
SAGA_PARTICIPANT_API int saga_participant_run(saga_participant_t *p);

/* Asks saga_participant_run to return. Async-signal-safe and thread-safe: may be called
 * from a signal handler. Accepts NULL. */
SAGA_PARTICIPANT_API void saga_participant_stop(saga_participant_t *p);

/* --- The command view (all strings borrowed, never NULL unless said so). --- */
SAGA_PARTICIPANT_API const char *saga_command_id(const saga_command_t *cmd); /* command_id */
/* saga_id/step/kind */
SAGA_PARTICIPANT_API const char *saga_command_idempotency_key(const saga_command_t *cmd);
SAGA_PARTICIPANT_API const char *saga_command_saga_id(const saga_command_t *cmd);
/* The definition's name; may be "". */
SAGA_PARTICIPANT_API const char *saga_command_saga_name(const saga_command_t *cmd);
SAGA_PARTICIPANT_API const char *saga_command_step(const saga_command_t *cmd);
SAGA_PARTICIPANT_API saga_kind_t saga_command_kind(const saga_command_t *cmd);
/* The command type, e.g. "inventory.reserve". */
SAGA_PARTICIPANT_API const char *saga_command_type(const saga_command_t *cmd);
SAGA_PARTICIPANT_API int saga_command_attempt(const saga_command_t *cmd); /* >= 1 */
/* Epoch ms after which the coordinator stops waiting for this attempt; 0 when absent. */
SAGA_PARTICIPANT_API int64_t saga_command_deadline(const saga_command_t *cmd);
/* The payload object (borrowed; never NULL: {} when the command had none). */
SAGA_PARTICIPANT_API json_t *saga_command_payload(const saga_command_t *cmd);
/* For a compensation: the output the action replied with (borrowed object), recorded by
 * the SDK when the action ran, so the handler knows exactly what to undo. NULL for an
 * action. */
SAGA_PARTICIPANT_API json_t *saga_command_action_output(const saga_command_t *cmd);

/* --- The result --- */

/* Success. output (stolen; NULL means {}) must be an object; it becomes the reply's
 * output. Returns 0, or -1 when output is not an object (the result is then a
 * non-retryable failure saying so). */
SAGA_PARTICIPANT_API int saga_result_ok(saga_result_t *res, json_t *output);

/* Failure that trying again will not fix (validation, business rule): the reply is
 * failed, retryable=false. For an action it is recorded as final (a repeat gets the same
 * reply, the handler is not called again). A compensation's failure is never final: the
 * coordinator stops retrying (the saga is stuck), but an operator's retry runs the
 * handler again. error is copied; NULL: "failed". */
SAGA_PARTICIPANT_API void saga_result_fail(saga_result_t *res, const char *error);

/* Failure that trying again may fix (a dependency is down): the reply is failed,
 * retryable=true; nothing is recorded as final, so a later attempt runs the handler
 * again. error is copied; NULL: "failed". */
SAGA_PARTICIPANT_API void saga_result_retry(saga_result_t *res, const char *error);

/* Adds a Redis write that is applied in the same atomic step as the result's record, and
 * only if the result is ok and is the first result recorded for its key (a duplicate or a
 * refused action applies nothing). Effects run in the order added.
 *
 * argv[0] is the command and argv[1] its one key; the allowed commands are the
 * single-key writes whose failure can be checked before anything is written:
 * SET, DEL, INCRBY, HSET, HDEL, HINCRBY, RPUSH, LPUSH, SADD, SREM, ZADD, ZINCRBY, EXPIRE.
 * The SDK checks key types and integer arguments before the first write; if a check
 * fails, nothing is applied and the reply is failed, retryable (an operator can fix the
 * data). Strings are copied. On Redis Cluster the key must share the dedup prefix's hash
 * tag. Returns 0, or -1 (nothing added) for an unknown command, a wrong argument count,
 * more than SAGA_PARTICIPANT_MAX_EFFECTS effects, or no memory. */
SAGA_PARTICIPANT_API int saga_result_effect(saga_result_t *res, int argc, const char *const *argv);

/* Convenience: saga_result_effect with a NULL-terminated list of strings, e.g.
 * saga_result_effectl(res, "HINCRBY", "ledger:{inv}:balance", sku, "2", NULL). */
SAGA_PARTICIPANT_API int saga_result_effectl(saga_result_t *res, const char *command, ...)
    __attribute__((sentinel));

/* --- Version --- */

/* The library's version as "MAJOR.MINOR.PATCH" (static string): the one it was built as,
 * which may be newer than the SAGA_PARTICIPANT_VERSION_* macros a program was compiled
 * with. */
SAGA_PARTICIPANT_API const char *saga_participant_version(void);

/* --- Logging --- */

/* The SDK logs one JSON object per line on stderr (ts, level, component, msg, and saga_id
 * when there is one: the coordinator's format, so one tool reads both). A service may
 * log through it too. The threshold starts at the SAGA_LOG_LEVEL environment variable
 * (debug, info, warn, error), else info. Not thread-safe against concurrent
 * saga_participant_log_init/_level_set calls: configure before saga_participant_run. */
typedef enum {
    SAGA_LOG_DEBUG = 0,
    SAGA_LOG_INFO = 1,
    SAGA_LOG_WARN = 2,
    SAGA_LOG_ERROR = 3
} saga_log_level_t;

/* Names the component printed on every line (copied; truncated to 63 bytes; NULL:
 * "participant"), and reads SAGA_LOG_LEVEL unless a level was set already. Without this
 * call the SDK names itself after the group id. */
SAGA_PARTICIPANT_API void saga_participant_log_init(const char *component);

/* Sets the threshold by name: "debug", "info", "warn" or "error". Returns 0, or -1 (the
 * threshold unchanged) for anything else, NULL included. */
SAGA_PARTICIPANT_API int saga_participant_log_level_set(const char *name);

/* Logs one line at level (below the threshold: nothing). saga_id may be NULL. */
SAGA_PARTICIPANT_API void saga_participant_log(saga_log_level_t level, const char *saga_id,
                                               const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
