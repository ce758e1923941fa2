/* fuzz_protocol.c - fuzz target for protocol_decode_input(): every message of the input
 * topic (start, reply, abort, retry, skip) as raw Kafka bytes, decoded without a key and
 * with one, then copied into a dead letter as the coordinator does with a refusal. */
#include "fuzz.h"

#include <string.h>

#include "protocol.h"

#define FUZZ_PROTOCOL_KEY "order-1001"
#define FUZZ_PROTOCOL_WHY_LEN 512

/* Checks what a successful decode promises (protocol.h). */
static void protocol_check_decoded(const input_msg_t *m)
{
    if (!m->root)
        fuzz_fail("decoded message without a root");
    if (m->saga_id && !protocol_valid_saga_id(m->saga_id))
        fuzz_fail("invalid saga id accepted");
    switch (m->type) {
    case MSG_START:
        if (!m->saga_name || !json_is_object(m->input) || m->version < 0)
            fuzz_fail("start without a name or an object input");
        if (protocol_json_depth(m->input) > PROTOCOL_MAX_DEPTH)
            fuzz_fail("start input deeper than PROTOCOL_MAX_DEPTH");
        break;
    case MSG_REPLY:
        if (!m->saga_id || !m->step || m->attempt < 1)
            fuzz_fail("reply without saga id, step or attempt");
        if (m->output && (!json_is_object(m->output) ||
                          protocol_json_depth(m->output) > PROTOCOL_MAX_DEPTH))
            fuzz_fail("reply output not an object within the depth limit");
        if (m->error && strlen(m->error) > PROTOCOL_MAX_REASON_LEN)
            fuzz_fail("reply error longer than PROTOCOL_MAX_REASON_LEN");
        break;
    case MSG_ABORT:
    case MSG_SKIP:
        if (!m->saga_id)
            fuzz_fail("abort/skip without saga id");
        if (m->reason && strlen(m->reason) > PROTOCOL_MAX_REASON_LEN)
            fuzz_fail("reason longer than PROTOCOL_MAX_REASON_LEN");
        break;
    case MSG_RETRY:
        if (!m->saga_id)
            fuzz_fail("retry without saga id");
        break;
    default:
        fuzz_fail("unknown message type %d", (int)m->type);
    }
}

static void protocol_decode_once(const uint8_t *data, size_t size, const char *key,
                                 size_t key_len)
{
    input_msg_t m;
    char why[FUZZ_PROTOCOL_WHY_LEN] = "";
    if (protocol_decode_input((const char *)data, size, key, key_len,
                              PROTOCOL_MAX_MESSAGE_BYTES, &m, why, sizeof why) == 0) {
        protocol_check_decoded(&m);
        input_msg_release(&m);
        return;
    }
    if (m.root)
        fuzz_fail("refused message still holds its root");
    if (!why[0])
        fuzz_fail("refused message without a reason");
    /* A refusal goes to the dead-letter topic with the raw bytes. */
    json_t *dl = protocol_dead_letter(why, "saga.input", 0, 42, key, key_len,
                                      (const char *)data, size);
    if (!dl)
        fuzz_fail("no dead letter for a refused message");
    /* Valid UTF-8 (NUL bytes included) stays text: whole, or cut to at most 3 bytes less
     * than PROTOCOL_DEAD_LETTER_PAYLOAD_MAX (back to a character boundary). */
    json_t *as_text = json_stringn((const char *)data, size);
    const json_t *kept = json_object_get(dl, "payload");
    if (as_text && size <= PROTOCOL_DEAD_LETTER_PAYLOAD_MAX && !json_equal(kept, as_text))
        fuzz_fail("a UTF-8 payload was not copied whole into the dead letter");
    if (as_text && size > PROTOCOL_DEAD_LETTER_PAYLOAD_MAX &&
        json_string_length(kept) + 4 <= PROTOCOL_DEAD_LETTER_PAYLOAD_MAX)
        fuzz_fail("a UTF-8 payload was cut short in the dead letter");
    json_decref(as_text);
    char *text = json_dumps(dl, JSON_COMPACT);
    if (!text)
        fuzz_fail("dead letter cannot be serialised");
    free(text);
    json_decref(dl);
}

int fuzz_protocol_one(const uint8_t *data, size_t size)
{
    protocol_decode_once(data, size, NULL, 0);
    protocol_decode_once(data, size, FUZZ_PROTOCOL_KEY, strlen(FUZZ_PROTOCOL_KEY));
    return 0;
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_protocol_one(data, size);
}
#endif
