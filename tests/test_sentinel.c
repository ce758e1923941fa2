/* test_sentinel.c - Redis Sentinel: how common/redisconn.c finds the primary, and a
 * failover under load with real processes.
 *
 * discovery: redisconn against a real primary and replica and scripted Sentinels (a
 * thread answering SENTINEL get-master-addr-by-name as the test says), so that each case
 * is exact: a Sentinel naming a replica is refused by the ROLE check and the next one is
 * asked; the one that answered is asked first next time; the Sentinels' own AUTH; a
 * READONLY reply (the primary demoted) closes the connection and the next command finds
 * the new primary; bad settings are refused with the reason.
 *
 * failover: one primary, two replicas and three Sentinels (redis-server --sentinel),
 * two coordinators and the three example services all configured through the Sentinels,
 * redis_sync_replicas=1 (the coordinators' rounds and the services' de-duplication
 * records), order-placement sagas produced at a steady rate. The primary is
 * killed (SIGKILL); the Sentinels promote a replica; the coordinators and the services
 * follow. No saga version read on the primary just before the kill is missing on the new
 * one, every saga active at the kill moves again (the time it took is printed), every
 * saga ends, and the ledgers check out (tests/support/ledger_check.h). On this busy
 * machine the Sentinels (down-after-milliseconds 1000) sometimes take the fresh primary
 * for dead too and fail over a second time: everything, the test's own connection
 * included, follows whatever primary they name. The long variants
 * (more sagas, several kills, redis_sync_replicas=0) are scripts/sentinel-soak.sh. */
#include "fixture.h"
#include "ledger_check.h"
#include "opstest.h"
#include "redisconn.h"
#include "services.h"
#include "system.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SENTINEL_MASTER "saga"

/* --- a scripted Sentinel ---------------------------------------------------------- */

/* Answers SENTINEL get-master-addr-by-name saga with 127.0.0.1:names_port (nil when 0),
 * AUTH with +OK (remembering it), PING with +PONG, anything else with an error. */
typedef struct fake_sentinel {
    int fd, port;
    atomic_int names_port;
    atomic_int asked;          /* get-master-addr-by-name calls answered */
    atomic_int stop;
    char auth[256];            /* the last AUTH's arguments, space separated */
    pthread_mutex_t lock;
    pthread_t thread;
} fake_sentinel_t;

static void fake_reply(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(fd, s + off, n - off);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static void fake_answer(fake_sentinel_t *f, int fd, const redisReply *cmd)
{
    if (cmd->type != REDIS_REPLY_ARRAY || cmd->elements == 0) {
        fake_reply(fd, "-ERR protocol\r\n");
        return;
    }
    const char *verb = cmd->element[0]->str;
    if (strcasecmp(verb, "AUTH") == 0) {
        pthread_mutex_lock(&f->lock);
        f->auth[0] = '\0';
        for (size_t i = 1; i < cmd->elements; i++)
            snprintf(f->auth + strlen(f->auth), sizeof f->auth - strlen(f->auth), "%s%s",
                     i > 1 ? " " : "", cmd->element[i]->str);
        pthread_mutex_unlock(&f->lock);
        fake_reply(fd, "+OK\r\n");
    } else if (strcasecmp(verb, "PING") == 0) {
        fake_reply(fd, "+PONG\r\n");
    } else if (strcasecmp(verb, "SENTINEL") == 0 && cmd->elements == 3 &&
               strcasecmp(cmd->element[1]->str, "get-master-addr-by-name") == 0) {
        atomic_fetch_add(&f->asked, 1);
        int port = atomic_load(&f->names_port);
        if (port <= 0 || strcmp(cmd->element[2]->str, SENTINEL_MASTER) != 0) {
            fake_reply(fd, "*-1\r\n");
            return;
        }
        char p[16], out[128];
        snprintf(p, sizeof p, "%d", port);
        snprintf(out, sizeof out, "*2\r\n$9\r\n127.0.0.1\r\n$%zu\r\n%s\r\n", strlen(p), p);
        fake_reply(fd, out);
    } else {
        fake_reply(fd, "-ERR unknown command\r\n");
    }
}

static void *fake_run(void *opaque)
{
    fake_sentinel_t *f = opaque;
    while (!atomic_load(&f->stop)) {
        struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            continue;
        redisReader *rd = redisReaderCreate();
        char buf[4096];
        /* One client at a time: redisconn closes a Sentinel's connection after asking. */
        for (;;) {
            struct pollfd cp = {.fd = c, .events = POLLIN};
            if (atomic_load(&f->stop) || poll(&cp, 1, 2000) <= 0)
                break;
            ssize_t n = read(c, buf, sizeof buf);
            if (n <= 0)
                break;
            redisReaderFeed(rd, buf, (size_t)n);
            void *cmd = NULL;
            while (redisReaderGetReply(rd, &cmd) == REDIS_OK && cmd) {
                fake_answer(f, c, cmd);
                freeReplyObject(cmd);
                cmd = NULL;
            }
        }
        redisReaderFree(rd);
        close(c);
    }
    return NULL;
}

static void fake_start(fake_sentinel_t *f, int names_port)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    atomic_init(&f->names_port, names_port);
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(f->fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(f->fd, 8), 0);
    cr_assert_eq(getsockname(f->fd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_run, f), 0);
}

static void fake_stop(fake_sentinel_t *f)
{
    if (f->fd <= 0)
        return;
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->fd);
    pthread_mutex_destroy(&f->lock);
    f->fd = 0;
}

/* --- discovery -------------------------------------------------------------------- */

static redis_fixture_t primary, replica;
static redis_fixture_t real_sentinel; /* the +switch-master test's */
static fake_sentinel_t fakes[2];
static redisconn_t *conn;

static void discovery_setup(void)
{
    cr_assert_eq(fixture_redis_start(&primary, NULL), 0);
    char conf[64];
    snprintf(conf, sizeof conf, "replicaof 127.0.0.1 %d\n", primary.port);
    cr_assert_eq(fixture_redis_start(&replica, conf), 0);
}

static void discovery_teardown(void)
{
    redisconn_free(conn);
    conn = NULL;
    for (int i = 0; i < 2; i++)
        fake_stop(&fakes[i]);
    fixture_redis_stop(&real_sentinel);
    fixture_redis_stop(&replica);
    fixture_redis_stop(&primary);
}

TestSuite(sentinel_discovery, .init = discovery_setup, .fini = discovery_teardown,
          .timeout = 60);

/* A connection through the fake Sentinels (n of them), with Sentinel AUTH when given. */
static redisconn_t *through_fakes(int n, const char *user, const char *password)
{
    char list[128] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s127.0.0.1:%d",
                 i ? "," : "", fakes[i].port);
    redisconn_config_t cfg = {.sentinels = list,
                              .master_name = SENTINEL_MASTER,
                              .sentinel_user = user,
                              .sentinel_password = password,
                              .connect_timeout_ms = 1000,
                              .command_timeout_ms = 1000};
    redisconn_t *c = redisconn_new(&cfg);
    cr_assert_not_null(c);
    return c;
}

static void expect_port(redisconn_t *c, int port)
{
    redisReply *r = redisconn_command(c, "CONFIG GET port");
    cr_assert_not_null(r, "%s", redisconn_last_error(c));
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(atoi(r->element[1]->str), port);
    freeReplyObject(r);
}

Test(sentinel_discovery, a_sentinel_naming_a_replica_is_refused_and_the_next_is_asked)
{
    fake_start(&fakes[0], replica.port);
    fake_start(&fakes[1], primary.port);
    conn = through_fakes(2, NULL, NULL);
    cr_assert_eq(redisconn_connect(conn), 1, "%s", redisconn_last_error(conn));
    expect_port(conn, primary.port);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", primary.port);
    cr_assert_str_eq(redisconn_address(conn), want);
    cr_assert_eq(atomic_load(&fakes[0].asked), 1);
    cr_assert_eq(atomic_load(&fakes[1].asked), 1);

    /* The Sentinel that answered is asked first next time. */
    redisconn_drop(conn);
    cr_assert_eq(redisconn_connect(conn), 1, "%s", redisconn_last_error(conn));
    cr_assert_eq(atomic_load(&fakes[1].asked), 2);
    cr_assert_eq(atomic_load(&fakes[0].asked), 1);
}

Test(sentinel_discovery, only_a_replica_named_fails_with_the_reason)
{
    fake_start(&fakes[0], replica.port);
    fake_start(&fakes[1], 0); /* does not know the primary */
    conn = through_fakes(2, NULL, NULL);
    cr_assert_eq(redisconn_connect(conn), -1);
    cr_assert_not(redisconn_connected(conn));
    cr_assert_null(redisconn_command(conn, "PING"));
    const char *e = redisconn_last_error(conn);
    cr_assert(strstr(e, "no Sentinel of 2 named a primary \"saga\""), "%s", e);
    cr_assert(strstr(e, "does not know a primary named \"saga\""), "%s", e);

    /* The one that knew only the replica: its answer is refused by ROLE. */
    redisconn_free(conn);
    conn = through_fakes(1, NULL, NULL);
    cr_assert_eq(redisconn_connect(conn), -1);
    e = redisconn_last_error(conn);
    cr_assert(strstr(e, "is not the primary (ROLE: slave)"), "%s", e);
}

Test(sentinel_discovery, sentinels_get_their_own_auth)
{
    fake_start(&fakes[0], primary.port);
    conn = through_fakes(1, "sentry", "s3cret");
    cr_assert_eq(redisconn_connect(conn), 1, "%s", redisconn_last_error(conn));
    pthread_mutex_lock(&fakes[0].lock);
    cr_assert_str_eq(fakes[0].auth, "sentry s3cret");
    pthread_mutex_unlock(&fakes[0].lock);
    expect_port(conn, primary.port); /* the primary has no password: none was sent */
}

/* A failover by hand: to is promoted, from follows it, and the scripted Sentinel names
 * to. */
static void fail_over_by_hand(redis_fixture_t *to, redis_fixture_t *from)
{
    redisContext *a = fixture_redis_connect(to);
    redisContext *b = fixture_redis_connect(from);
    cr_assert(a && b);
    freeReplyObject(redisCommand(a, "REPLICAOF NO ONE"));
    freeReplyObject(redisCommand(b, "REPLICAOF 127.0.0.1 %d", to->port));
    redisFree(a);
    redisFree(b);
    atomic_store(&fakes[0].names_port, to->port);
}

Test(sentinel_discovery, a_readonly_reply_drops_the_connection_and_the_new_primary_is_found)
{
    fake_start(&fakes[0], primary.port);
    conn = through_fakes(1, NULL, NULL);
    redisReply *r = redisconn_command(conn, "SET k before");
    cr_assert_not_null(r, "%s", redisconn_last_error(conn));
    freeReplyObject(r);

    fail_over_by_hand(&replica, &primary);

    r = redisconn_command(conn, "SET k after");
    cr_assert_null(r);
    cr_assert(strstr(redisconn_last_error(conn), "READONLY"), "%s", redisconn_last_error(conn));
    cr_assert_not(redisconn_connected(conn), "a READONLY reply closes the connection");
    r = redisconn_command(conn, "SET k after");
    cr_assert_not_null(r, "%s", redisconn_last_error(conn));
    freeReplyObject(r);
    expect_port(conn, replica.port);

    /* And back: the argv form (the SDK's de-duplication retries on its NULL) too. */
    fail_over_by_hand(&primary, &replica);
    const char *argv[] = {"SET", "k", "again"};
    cr_assert_null(redisconn_command_argv(conn, 3, argv, NULL));
    cr_assert_not(redisconn_connected(conn));
    r = redisconn_command_argv(conn, 3, argv, NULL);
    cr_assert_not_null(r, "%s", redisconn_last_error(conn));
    cr_assert_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    expect_port(conn, primary.port);
}

/* A real Sentinel knows the replica and names the primary (port). */
static bool sentinel_names(void *opaque)
{
    int port = *(int *)opaque;
    redisContext *c = fixture_redis_connect(&real_sentinel);
    redisReply *r = c ? redisCommand(c, "SENTINEL get-master-addr-by-name " SENTINEL_MASTER) : NULL;
    bool named = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 atoi(r->element[1]->str) == port;
    freeReplyObject(r);
    r = c && named ? redisCommand(c, "SENTINEL replicas " SENTINEL_MASTER) : NULL;
    bool knows = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1;
    freeReplyObject(r);
    redisFree(c);
    return named && knows;
}

/* conn's server is the replica's port (a read: CONFIG GET port). */
static bool on_replica_port(void *opaque)
{
    (void)opaque;
    redisReply *r = redisconn_command(conn, "CONFIG GET port");
    bool on = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              atoi(r->element[1]->str) == replica.port;
    freeReplyObject(r);
    return on;
}

/* +switch-master: a failover the Sentinel runs while the old primary lives on (demoted to
 * a replica: it still answers reads) moves the connection before any write fails. */
Test(sentinel_discovery, a_switch_master_announcement_moves_the_connection)
{
    char conf[256];
    snprintf(conf, sizeof conf,
             "sentinel monitor " SENTINEL_MASTER " 127.0.0.1 %d 1\n"
             "sentinel down-after-milliseconds " SENTINEL_MASTER " 1000\n"
             "sentinel failover-timeout " SENTINEL_MASTER " 5000\n", primary.port);
    cr_assert_eq(fixture_sentinel_start(&real_sentinel, conf), 0);
    cr_assert(fixture_wait_until(sentinel_names, &primary.port, 30000),
              "the Sentinel names the primary and knows the replica");
    char list[64];
    snprintf(list, sizeof list, "127.0.0.1:%d", real_sentinel.port);
    redisconn_config_t cfg = {.sentinels = list, .master_name = SENTINEL_MASTER};
    conn = redisconn_new(&cfg);
    cr_assert_eq(redisconn_connect(conn), 1, "%s", redisconn_last_error(conn));
    expect_port(conn, primary.port);

    /* Until the Sentinel has heard from the replica (INFO every second or ten) it has
     * NOGOODSLAVE: asked again. */
    redisContext *s = fixture_redis_connect(&real_sentinel);
    redisReply *r = NULL;
    for (int64_t until = fixture_now_ms() + 30000; fixture_now_ms() < until; usleep(200000)) {
        freeReplyObject(r);
        r = redisCommand(s, "SENTINEL FAILOVER " SENTINEL_MASTER);
        if (!r || r->type == REDIS_REPLY_STATUS)
            break;
    }
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "SENTINEL FAILOVER: %s",
              r && r->str ? r->str : "no reply");
    freeReplyObject(r);
    redisFree(s);
    /* Reads only: the demoted primary would answer them all, so without the watch the
     * connection would stay on it. The Sentinel announces the switch when the failover
     * ends (the replicas reconfigured), a moment after it names the new primary. */
    cr_assert(fixture_wait_until(on_replica_port, NULL, 30000),
              "the connection moved to the promoted replica (%s)", redisconn_last_error(conn));
    r = redisconn_command(conn, "ROLE");
    cr_assert_not_null(r, "%s", redisconn_last_error(conn));
    cr_assert_str_eq(r->element[0]->str, "master", "ROLE on the server used now");
    freeReplyObject(r);
    expect_port(conn, replica.port);
    cr_assert_eq(redisconn_switches(conn), 1);
}

/* The settings reach the connection the same way in every program of the coordinator's
 * (config.c's config_redis): sagactl, here, by flag and by environment. */
Test(sentinel_discovery, sagactl_finds_the_primary_through_the_sentinels)
{
    fake_start(&fakes[0], primary.port);
    char bin[PATH_MAX], flag[64], env[64];
    cr_assert_eq(fixture_bin_path("sagactl", bin, sizeof bin), 0);
    snprintf(flag, sizeof flag, "--redis_sentinels=127.0.0.1:%d", fakes[0].port);
    snprintf(env, sizeof env, "SAGA_REDIS_SENTINELS=127.0.0.1:%d", fakes[0].port);
    ops_run_t r;
    /* redis_port=1: nothing listens there; only the Sentinel knows the way. */
    cr_assert_eq(ops_run(&r, (const char *const[]){bin, "cluster", flag,
                                                   "--redis_master_name=" SENTINEL_MASTER,
                                                   "--redis_port=1", NULL},
                         NULL, NULL, 10000), 0, "%s", r.err);
    ops_run_release(&r);
    cr_assert_eq(ops_run(&r, (const char *const[]){bin, "cluster", "--redis_port=1", NULL},
                         (const char *const[]){env, "SAGA_REDIS_MASTER_NAME=" SENTINEL_MASTER,
                                               NULL}, NULL, 10000), 0, "%s", r.err);
    ops_run_release(&r);
    cr_assert_eq(ops_run(&r, (const char *const[]){bin, "cluster", flag,
                                                   "--redis_master_name=other", NULL},
                         NULL, NULL, 10000), 4);
    cr_assert(strstr(r.err, "does not know a primary named \"other\""), "%s", r.err);
    ops_run_release(&r);
}

Test(sentinel_discovery, bad_settings_are_refused_with_the_reason)
{
    static const struct {
        const char *sentinels, *master, *error;
    } CASES[] = {
        {"127.0.0.1:26379", NULL, "redis_master_name is required with redis_sentinels"},
        {"127.0.0.1:notaport", "saga", "redis_sentinels: \"127.0.0.1:notaport\" is not HOST:PORT"},
        {"127.0.0.1:1,,127.0.0.1:2", "saga", "redis_sentinels: an empty or too long entry"},
        {"[::1", "saga", "redis_sentinels: \"[::1\" is not HOST:PORT"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        redisconn_config_t cfg = {.sentinels = CASES[i].sentinels,
                                  .master_name = CASES[i].master};
        redisconn_t *c = redisconn_new(&cfg);
        cr_assert_not_null(c);
        cr_assert_eq(redisconn_connect(c), -1);
        cr_assert(strstr(redisconn_last_error(c), CASES[i].error), "%s: %s",
                  CASES[i].sentinels, redisconn_last_error(c));
        redisconn_free(c);
    }
}

/* --- failover under load ---------------------------------------------------------- */

#define FO_REPLICAS 2
#define FO_SENTINELS 3
#define FO_DEFAULT_SAGAS 300
#define FO_MAX_SAGAS 5000
#define FO_PRODUCE_PER_S 100
#define FO_WAIT_MS 90000
#define FO_FAILOVER_MS 30000   /* the Sentinels name a new primary within this */

static test_system_t sys;
static services_t services;
static redis_fixture_t replicas[FO_REPLICAS], sentinels[FO_SENTINELS];
static redis_fixture_t *current;   /* the primary now: &sys.redis or a replica */
static long fo_sagas = FO_DEFAULT_SAGAS;

static void failover_stop(void)
{
    services_stop(&services);
    system_stop(&sys);
    for (int i = 0; i < FO_SENTINELS; i++)
        fixture_redis_stop(&sentinels[i]);
    for (int i = 0; i < FO_REPLICAS; i++)
        fixture_redis_stop(&replicas[i]);
}

TestSuite(sentinel_failover, .fini = failover_stop, .timeout = 240);

/* A field of INFO section of r ("" when absent), into out. */

static bool replicas_in_sync(void *opaque)
{
    (void)opaque;
    char v[64];
    for (int i = 0; i < FO_REPLICAS; i++)
        if (strcmp(fixture_redis_info(&replicas[i], "replication", "master_link_status", v,
                                      sizeof v),
                   "up") != 0)
            return false;
    return true;
}

/* Sentinel i's answer to cmd (caller frees), or NULL. */
static redisReply *ask_sentinel(int i, const char *cmd)
{
    redisContext *c = fixture_redis_connect(&sentinels[i]);
    redisReply *r = c ? redisCommand(c, cmd) : NULL;
    redisFree(c);
    return r;
}

/* The port of the primary Sentinel i names (0 when it names none). */
static int named_primary(int i)
{
    redisReply *r = ask_sentinel(i, "SENTINEL get-master-addr-by-name " SENTINEL_MASTER);
    int port = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2
                   ? atoi(r->element[1]->str) : 0;
    freeReplyObject(r);
    return port;
}

/* Every Sentinel knows the others and both replicas: a failover can be agreed on. */
static bool sentinels_ready(void *opaque)
{
    (void)opaque;
    for (int i = 0; i < FO_SENTINELS; i++) {
        redisReply *r = ask_sentinel(i, "SENTINEL master " SENTINEL_MASTER);
        int others = -1, slaves = -1;
        for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2) {
            if (strcmp(r->element[k]->str, "num-other-sentinels") == 0)
                others = atoi(r->element[k + 1]->str);
            if (strcmp(r->element[k]->str, "num-slaves") == 0)
                slaves = atoi(r->element[k + 1]->str);
        }
        freeReplyObject(r);
        if (others != FO_SENTINELS - 1 || slaves != FO_REPLICAS)
            return false;
    }
    return true;
}

static bool new_primary_named(void *opaque)
{
    int old = *(int *)opaque;
    int port = named_primary(0);
    return port > 0 && port != old;
}

static void produce_order(long i)
{
    cr_assert_eq(services_produce_order(&sys, "sn", i), 0);
}

/* Produces at FO_PRODUCE_PER_S from *produced up to until, counting from start_ms. */
static void produce_until(long *produced, long until, int64_t start_ms, long start_count)
{
    while (*produced < until) {
        long target = start_count + (long)((fixture_now_ms() - start_ms) * FO_PRODUCE_PER_S / 1000);
        while (*produced < target && *produced < until)
            produce_order((*produced)++);
        usleep(10000);
    }
}

/* Every saga's version and status on the primary now (versions[i] 0: not there). */
typedef struct snapshot {
    long long versions[FO_MAX_SAGAS];
    bool active[FO_MAX_SAGAS];
    long sagas, nactive;
} snapshot_t;

/* Reads every saga's version and status on sys.rc. Returns false when the connection
 * failed (a further failover: follow_primary). */
static bool read_snapshot(snapshot_t *s)
{
    memset(s, 0, sizeof *s);
    for (long i = 0; i < fo_sagas; i++)
        for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++)
            if (redisAppendCommand(sys.rc, "HMGET saga:{p%d}:saga:sn-%ld version status", p,
                                   i) != REDIS_OK)
                return false;
    for (long i = 0; i < fo_sagas; i++)
        for (int p = 0; p < SYSTEM_INPUT_PARTITIONS; p++) {
            redisReply *r = NULL;
            if (redisGetReply(sys.rc, (void **)&r) != REDIS_OK || !r)
                return false;
            if (r->type == REDIS_REPLY_ARRAY && r->element[0]->type == REDIS_REPLY_STRING) {
                s->versions[i] = atoll(r->element[0]->str);
                s->sagas++;
                const char *st = r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "";
                if (strcmp(st, "running") == 0 || strcmp(st, "compensating") == 0)
                    s->active[i] = true, s->nactive++;
            }
            freeReplyObject(r);
        }
    return true;
}

/* Points sys.rc (the test's own connection) at the primary the Sentinels name now. They
 * may fail over more than once: with down-after-milliseconds 1000 on a busy machine, a
 * fresh primary can be taken for dead and replaced in turn, and the clients of a
 * reconfigured server are disconnected. Returns whether sys.rc is on a primary. */
static bool follow_primary(void)
{
    redisReply *r = sys.rc ? redisCommand(sys.rc, "ROLE") : NULL;
    bool is_primary = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                      r->element[0]->type == REDIS_REPLY_STRING &&
                      strcmp(r->element[0]->str, "master") == 0;
    freeReplyObject(r);
    if (is_primary)
        return true;
    redisFree(sys.rc);
    sys.rc = NULL;
    for (int k = 0; k < FO_SENTINELS && !sys.rc; k++) {
        int port = named_primary(k);
        for (int i = 0; i < FO_REPLICAS && !sys.rc; i++)
            if (replicas[i].port == port && (sys.rc = fixture_redis_connect(&replicas[i])))
                current = &replicas[i];
    }
    return sys.rc != NULL;
}

typedef struct moved_ctx {
    const snapshot_t *before;
    snapshot_t *now;
    int64_t first_ms;          /* when a saga was first seen written after the kill */
} moved_ctx_t;

/* Every saga active before has a later version now, or has ended (with
 * redis_sync_replicas=0 a saga that lost transitions can end at a lower version). Notes
 * when any saga was first written after the kill (a later version, or a new saga). */
static bool all_moved(void *opaque)
{
    moved_ctx_t *m = opaque;
    if (!follow_primary() || !read_snapshot(m->now))
        return false;
    bool all = true;
    for (long i = 0; i < fo_sagas; i++) {
        if (!m->first_ms && m->now->versions[i] > m->before->versions[i])
            m->first_ms = fixture_now_ms();
        if (m->before->active[i] && m->now->versions[i] <= m->before->versions[i] &&
            (m->now->versions[i] == 0 || m->now->active[i]))
            all = false;
    }
    return all && m->first_ms;
}

static bool all_terminal(void *opaque)
{
    (void)opaque;
    return follow_primary() && system_active(&sys) == 0 &&
           system_counter(&sys, "order-placement:started") == fo_sagas;
}

/* Prints the state of the first few sagas still active and what the coordinators logged
 * about them (system_expect_status explains), for a failed wait. */
static void explain_active(void)
{
    static snapshot_t now;
    if (!follow_primary() || !read_snapshot(&now))
        return;
    int shown = 0;
    for (long i = 0; i < fo_sagas && shown < 3; i++) {
        if (!now.active[i] && now.versions[i] > 0)
            continue;
        char id[64], why[4096];
        snprintf(id, sizeof id, "sn-%ld", i);
        (void)system_expect_status(&sys, id, "completed", 1, why, sizeof why);
        fprintf(stderr, "sentinel: %s is not finished: %s\n", id, why);
        shown++;
    }
}

/* Starts the replicas and the Sentinels around sys.redis, the primary. */
static void start_sentinel_setup(char *list, size_t len)
{
    char conf[512];
    snprintf(conf, sizeof conf, "replicaof 127.0.0.1 %d\n", sys.redis.port);
    for (int i = 0; i < FO_REPLICAS; i++)
        cr_assert_eq(fixture_redis_start(&replicas[i], conf), 0);
    cr_assert(fixture_wait_until(replicas_in_sync, NULL, 20000), "the replicas are in sync");
    snprintf(conf, sizeof conf,
             "sentinel monitor " SENTINEL_MASTER " 127.0.0.1 %d 2\n"
             "sentinel down-after-milliseconds " SENTINEL_MASTER " 1000\n"
             "sentinel failover-timeout " SENTINEL_MASTER " 5000\n", sys.redis.port);
    list[0] = '\0';
    for (int i = 0; i < FO_SENTINELS; i++) {
        cr_assert_eq(fixture_sentinel_start(&sentinels[i], conf), 0);
        snprintf(list + strlen(list), len - strlen(list), "%s127.0.0.1:%d", i ? "," : "",
                 sentinels[i].port);
    }
    cr_assert(fixture_wait_until(sentinels_ready, NULL, 30000),
              "the Sentinels know each other and the replicas");
    current = &sys.redis;
}

Test(sentinel_failover, sigkill_of_the_primary_under_load)
{
    const char *env = getenv("SAGA_SENTINEL_SAGAS");
    if (env && atol(env) > 0)
        fo_sagas = atol(env) < FO_MAX_SAGAS ? atol(env) : FO_MAX_SAGAS;
    const char *sync = getenv("SAGA_SENTINEL_SYNC_REPLICAS");
    int sync_replicas = sync ? atoi(sync) : 1;
    long kill_at = fo_sagas / 2;

    char defs[PATH_MAX];
    const char *src = getenv("SAGA_SOURCE_DIR");
    snprintf(defs, sizeof defs, "%s/sagas", src ? src : ".");
    cr_assert_eq(system_start(&sys, defs, NULL, NULL), 0);
    char list[256], sflag[300], syncflag[64];
    start_sentinel_setup(list, sizeof list);

    char svc_sync[16];
    snprintf(svc_sync, sizeof svc_sync, "%d", sync_replicas);
    const char *svc_flags[] = {"--fail-rate", "0.05", "--redis-sentinels", list,
                               "--redis-master-name", SENTINEL_MASTER,
                               "--redis-sync-replicas", svc_sync, NULL};
    const char *const *const all[SERVICES_COUNT] = {svc_flags, svc_flags, svc_flags};
    cr_assert_eq(services_start(&services, &sys, all), 0);
    snprintf(sflag, sizeof sflag, "--redis_sentinels=%s", list);
    snprintf(syncflag, sizeof syncflag, "--redis_sync_replicas=%d", sync_replicas);
    const char *coord[] = {sflag, "--redis_master_name=" SENTINEL_MASTER, syncflag,
                           "--redis_timeout_ms=2000", "--log_level=info", NULL};
    for (int i = 0; i < 2; i++)
        cr_assert_geq(system_add_coordinator(&sys, coord, NULL), 0);
    cr_assert(system_wait_owned(&sys, 60000));
    cr_assert(services_wait_log(&services, "assigned", 60000));

    int64_t start = fixture_now_ms();
    long produced = 0;
    produce_until(&produced, kill_at, start, 0);
    cr_assert_eq(rd_kafka_flush(sys.producer, 10000), 0);

    static snapshot_t before, after;
    cr_assert(read_snapshot(&before));
    cr_assert_gt(before.sagas, 0, "sagas were in flight");
    int old_port = sys.redis.port;
    cr_assert_eq(fixture_redis_kill(&sys.redis), 0);
    int64_t killed = fixture_now_ms();
    redisFree(sys.rc);
    sys.rc = NULL;

    /* Starts keep coming while the Sentinels fail over. */
    int64_t resume = fixture_now_ms();
    bool named = false;
    while (!named && fixture_now_ms() - killed < FO_FAILOVER_MS) {
        produce_until(&produced, produced + FO_PRODUCE_PER_S / 10 < fo_sagas
                                     ? produced + FO_PRODUCE_PER_S / 10 : fo_sagas,
                      resume, produced);
        resume = fixture_now_ms();
        named = new_primary_named(&old_port);
    }
    cr_assert(named || fixture_wait_until(new_primary_named, &old_port, 1000),
              "the Sentinels named a new primary");
    int64_t promoted = fixture_now_ms();
    int64_t deadline = promoted + FO_FAILOVER_MS;
    bool have_after = false;
    while (!(have_after = follow_primary() && read_snapshot(&after)) &&
           fixture_now_ms() < deadline)
        usleep(50000);
    cr_assert(have_after, "the new primary answers");
    cr_assert_neq(current, &sys.redis, "the new primary is one of the replicas");
    long lost = 0;
    for (long i = 0; i < fo_sagas; i++)
        if (after.versions[i] < before.versions[i] && lost++ < 10)
            fprintf(stderr, "sentinel: sn-%ld was at version %lld before the kill, %lld "
                    "after\n", i, before.versions[i], after.versions[i]);
    if (sync_replicas > 0)
        cr_assert_eq(lost, 0, "%ld sagas lost transitions read before the kill", lost);

    static snapshot_t now;
    moved_ctx_t m = {&before, &now, 0};
    cr_assert(fixture_wait_until(all_moved, &m, FO_WAIT_MS),
              "every saga active at the kill moved again");
    int64_t moved = fixture_now_ms();

    resume = fixture_now_ms();
    produce_until(&produced, fo_sagas, resume, produced);
    cr_assert_eq(rd_kafka_flush(sys.producer, 30000), 0);
    bool finished_all = fixture_wait_until(all_terminal, NULL, FO_WAIT_MS);
    if (!finished_all)
        explain_active();
    cr_assert(finished_all, "every saga finished (%lld still active)", system_active(&sys));
    int64_t finished = fixture_now_ms();
    cr_assert(follow_primary());

    ledger_report_t r;
    int rc = ledger_check_orders(sys.rc, SYSTEM_INPUT_PARTITIONS, "sn", fo_sagas, stderr, 20, &r);
    fprintf(stderr,
            "sentinel (redis_sync_replicas=%d): killed the primary with %ld sagas in Redis "
            "(%ld active); new primary named after %lld ms; first saga written again after "
            "%lld ms; every active saga moved again %lld ms after the kill; %ld lost a "
            "transition; all %ld finished %lld ms after the kill: completed %ld, compensated "
            "%ld, stuck %ld; violations %ld\n",
            sync_replicas, before.sagas, before.nactive, (long long)(promoted - killed),
            (long long)(m.first_ms - killed), (long long)(moved - killed), lost, r.sagas,
            (long long)(finished - killed),
            r.completed, r.compensated, r.stuck, r.violations);
    cr_assert_eq(rc, 0);
    cr_assert_eq(r.violations, 0);
    cr_assert_eq(r.stuck, 0);
}
