/* gen_saga_corpus.c - writes the seed corpus of fuzz_saga_fields: real encodings of
 * sagas in many states, made by driving the state machine on the built-in definitions
 * with seeded random events (replies ok, failed, retryable; timers; aborts; operator
 * retry and skip) and encoding the saga after each event.
 * Usage: gen_saga_corpus OUT_DIR   (writes OUT_DIR/<definition>-<n>, "field=value" lines) */
#define FUZZ_NO_ENTRY
#include "fuzz_saga_fields.c"

#include <errno.h>

#define GEN_WALKS 12          /* random walks per definition */
#define GEN_EVENTS 12         /* events per walk */
#define GEN_MAX_FILES 64      /* per definition */

static uint64_t gen_next(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ULL;
}

static int gen_write(const char *dir, const char *name, int n, const saga_t *s)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%02d", dir, name, n);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    json_t *fields = saga_encode_fields(s);
    const char *k;
    json_t *v;
    json_object_foreach(fields, k, v)
        fprintf(f, "%s=%s\n", k, json_string_value(v));
    json_decref(fields);
    return fclose(f) == 0 ? 0 : -1;
}

/* Replies to one in-flight command of s, if any. */
static void gen_reply(saga_t *s, uint64_t *rng, const machine_env_t *env,
                      machine_result_t *res)
{
    for (int i = 0; i < s->step_count; i++) {
        const step_state_t *st = &s->steps[i];
        bool comp = st->phase == STEP_COMPENSATING;
        if (st->phase != STEP_RUNNING && !comp)
            continue;
        uint64_t r = gen_next(rng) % 4;
        json_t *out = json_pack("{s:s, s:i}", "reservation_id", "r-77", "id", i);
        machine_reply_t rep = {i, comp ? CMD_COMPENSATION : CMD_ACTION,
                               comp ? st->comp_attempt : st->attempt, r < 2, r == 2, out,
                               r < 2 ? NULL : "declined"};
        machine_on_reply(s, &rep, env, res);
        json_decref(out);
        return;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    const defn_set_t *set = saga_definitions();
    json_t *input = json_pack("{s:s}", "order_id", "1001");
    for (size_t d = 0; d < defn_set_count(set); d++) {
        const definition_t *def = defn_set_at(set, d);
        json_t *seen = json_object();
        int files = 0;
        for (int w = 0; w < GEN_WALKS && files < GEN_MAX_FILES; w++) {
            uint64_t rng = 0x2545F4914F6CDD1DULL + (uint64_t)w * 7919;
            int64_t now = 1764085000000LL;
            char id[64];
            snprintf(id, sizeof id, "order-%d", 1000 + w);
            saga_t *s = saga_new(id, def, 3, input, now);
            machine_env_t env = {now, &rng, "saga.input"};
            machine_result_t res;
            machine_result_init(&res);
            machine_start(s, &env, &res);
            machine_result_release(&res);
            for (int e = 0; e < GEN_EVENTS && files < GEN_MAX_FILES; e++) {
                uint64_t pick = gen_next(&rng) % 10;
                int64_t next = machine_next_timer(s);
                env.now_ms = now += 10;
                if (pick < 6) {
                    gen_reply(s, &rng, &env, &res);
                } else if (pick < 8 && next > 0) {
                    env.now_ms = now = next;
                    machine_on_timer(s, &env, &res);
                } else if (pick == 8) {
                    machine_abort(s, "customer cancelled", &env, &res);
                } else if (s->status == SAGA_STUCK) {
                    if (gen_next(&rng) % 2)
                        machine_retry(s, &env, &res);
                    else
                        machine_skip(s, "refunded by hand", &env, &res);
                }
                machine_result_release(&res);
                /* One file per distinct encoding (timestamps aside: the steps field). */
                json_t *f = saga_encode_fields(s);
                char *key = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS);
                json_decref(f);
                if (key && !json_object_get(seen, key)) {
                    json_object_set_new(seen, key, json_true());
                    if (gen_write(argv[1], def->name, files++, s) < 0)
                        return 1;
                }
                free(key);
            }
            saga_free(s);
        }
        json_decref(seen);
        printf("%s: %d files\n", def->name, files);
    }
    json_decref(input);
    return 0;
}
