/* minimal-participant.c - the smallest complete participant, as shown in
 * docs/participants.md: a "greeter" whose greet.hello action counts greetings in Redis and
 * whose greet.undo compensation takes one back, both applied exactly once per saga step.
 *
 * Usage: minimal-participant BOOTSTRAP [REDIS_PORT]   (Ctrl-C stops it gracefully)
 *        minimal-participant --version
 * Build it alone: cc minimal-participant.c $(pkg-config --cflags --libs saga-participant) */
#include <saga_participant.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static saga_participant_t *participant;

static void on_signal(int sig)
{
    (void)sig;
    saga_participant_stop(participant); /* async-signal-safe */
}

/* greet.hello {name} -> {greeting, name}; the counter moves in the same atomic step as the
 * SDK's record of this command, so a duplicate can never count twice. */
static void greet_hello(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    (void)opaque;
    const char *name = json_string_value(json_object_get(saga_command_payload(cmd), "name"));
    if (!name) {
        saga_result_fail(res, "payload.name: expected a string"); /* final: not retried */
        return;
    }
    if (saga_result_effectl(res, "HINCRBY", "greeter:{greeter}:count", name, "1", NULL) != 0) {
        saga_result_retry(res, "cannot add the effect");
        return;
    }
    saga_result_ok(res, json_pack("{s:s+, s:s}", "greeting", "hello, ", name, "name", name)); /* stolen */
}

/* greet.undo: called only when greet.hello was applied; its output says for whom. */
static void greet_undo(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    (void)opaque;
    const char *name = json_string_value(json_object_get(saga_command_action_output(cmd), "name"));
    if (!name) {
        saga_result_fail(res, "the greeting's recorded output lacks name");
        return;
    }
    if (saga_result_effectl(res, "HINCRBY", "greeter:{greeter}:count", name, "-1", NULL) != 0) {
        saga_result_retry(res, "cannot add the effect");
        return;
    }
    saga_result_ok(res, NULL);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("minimal-participant (libsagaparticipant %s)\n", saga_participant_version());
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s BOOTSTRAP [REDIS_PORT]\n", argv[0]);
        return 2;
    }
    saga_participant_config_t cfg;
    saga_participant_config_init(&cfg);
    cfg.bootstrap_servers = argv[1];
    cfg.group_id = "greeter";
    cfg.command_topic = "greeter.commands";
    cfg.dedup_prefix = "dedup:{greeter}:"; /* same hash tag as the effects' keys */
    if (argc > 2)
        cfg.redis_port = atoi(argv[2]);

    char err[512];
    participant = saga_participant_new(&cfg, err, sizeof err);
    if (!participant) {
        fprintf(stderr, "cannot start: %s\n", err);
        return 1;
    }
    if (saga_participant_on(participant, "greet.hello", greet_hello, NULL) != 0 ||
        saga_participant_on(participant, "greet.undo", greet_undo, NULL) != 0) {
        saga_participant_free(participant);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int rc = saga_participant_run(participant); /* until a signal: then graceful stop */
    saga_participant_free(participant);
    return rc == 0 ? 0 : 1;
}
