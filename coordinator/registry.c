/* registry.c - the definitions a coordinator knows (see registry.h). */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The short form of a content hash in messages. */
#define REGISTRY_HASH_SHOWN 12

struct registry {
    defn_set_t *base;              /* the folder as loaded at start (borrowed) */
    defn_set_t *own;               /* every version known since (owned, never shrinks) */
    const definition_t **view;     /* the folder view now: borrowed from base or own */
    size_t nview;
};

registry_t *registry_new(defn_set_t *initial)
{
    registry_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base = initial;
    r->own = defn_set_new();
    size_t n = defn_set_count(initial);
    r->view = calloc(n ? n : 1, sizeof *r->view);
    if (!r->own || !r->view) {
        registry_free(r);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        r->view[r->nview++] = defn_set_at(initial, i);
    return r;
}

void registry_free(registry_t *r)
{
    if (!r)
        return;
    defn_set_free(r->own);
    free(r->view);
    free(r);
}

/* That exact version among all known ones, or NULL. */
static const definition_t *find_known(const registry_t *r, const char *name, int version)
{
    const definition_t *d = defn_set_find(r->base, name, version);
    return d ? d : defn_set_find(r->own, name, version);
}

const definition_t *registry_find(const registry_t *r, const char *name, int version)
{
    if (!r || !name)
        return NULL;
    if (version > 0)
        return find_known(r, name, version);
    const definition_t *best = NULL;
    for (size_t i = 0; i < r->nview; i++)
        if (strcmp(r->view[i]->name, name) == 0 && (!best || r->view[i]->version > best->version))
            best = r->view[i];
    return best;
}

/* Records d in Redis; an error naming d's file when refused or not recorded. Returns 0,
 * -1 when refused, 1 when Redis could not be asked. */
static int publish_one(const definition_t *d, const store_port_t *st, defn_errors_t *errs)
{
    char existing[STORE_HASH_HEX_LEN + 1];
    int rc = st->put_definition(st->self, d, existing);
    if (rc > 0)
        defn_errors_add(errs, d->source, 0, 0, NULL,
                        "saga \"%s\" version %d is recorded in Redis with other content "
                        "(hash %.*s, this file %.*s): a version's content never changes, "
                        "give the changed definition a new version",
                        d->name, d->version, REGISTRY_HASH_SHOWN, existing, REGISTRY_HASH_SHOWN,
                        d->content_hash);
    else if (rc < 0)
        defn_errors_add(errs, d->source, 0, 0, NULL,
                        "cannot record saga \"%s\" version %d in Redis: %s", d->name, d->version,
                        st->last_error(st->self));
    return rc > 0 ? -1 : rc < 0 ? 1 : 0;
}

int registry_publish(registry_t *r, const store_port_t *st, defn_errors_t *errs)
{
    int rc = 0;
    for (size_t i = 0; i < r->nview; i++) {
        int one = publish_one(r->view[i], st, errs);
        if (one > 0)
            return rc < 0 ? -1 : 1; /* Redis does not answer: the rest would not be either */
        if (one < 0)
            rc = -1;
    }
    return rc;
}

const definition_t *registry_fetch(registry_t *r, const store_port_t *st, const char *name, int version,
                                   const char *expected_hash, int *status, char *why,
                                   size_t why_len)
{
    char scratch[8];
    if (!why) {
        why = scratch;
        why_len = sizeof scratch;
    }
    *status = 1;
    bool check = expected_hash && *expected_hash;
    const definition_t *known = find_known(r, name, version);
    if (known) {
        if (check && strcmp(known->content_hash, expected_hash) != 0) {
            snprintf(why, why_len, "%s v%d here has hash %.*s, not %.*s", name, version,
                     REGISTRY_HASH_SHOWN, known->content_hash, REGISTRY_HASH_SHOWN, expected_hash);
            return NULL;
        }
        *status = 0;
        return known;
    }
    char *json = NULL, recorded[STORE_HASH_HEX_LEN + 1];
    int rc = st->get_definition(st->self, name, version, &json, recorded);
    if (rc != 0) {
        *status = rc;
        snprintf(why, why_len, "%s v%d %s", name, version,
                 rc > 0 ? "is not recorded in Redis either" : st->last_error(st->self));
        return NULL;
    }
    char source[DEFN_MAX_NAME_LEN + 64];
    snprintf(source, sizeof source, "redis saga:definitions %s@%d", name, version);
    defn_errors_t errs = {0};
    definition_t *d = definition_load_string(json, strlen(json), source, &errs);
    free(json);
    if (!d) {
        char first[sizeof(defn_error_t) + 64] = "";
        if (errs.count)
            defn_error_format(&errs.items[0], first, sizeof first);
        snprintf(why, why_len, "the recorded definition does not load: %s", first);
    } else if (strcmp(d->name, name) != 0 || d->version != version) {
        snprintf(why, why_len, "%s holds %s v%d", source, d->name, d->version);
    } else if (recorded[0] && strcmp(recorded, d->content_hash) != 0) {
        snprintf(why, why_len, "%s has hash %.*s, but saga:definition-hashes records %.*s",
                 source, REGISTRY_HASH_SHOWN, d->content_hash, REGISTRY_HASH_SHOWN, recorded);
    } else if (check && strcmp(expected_hash, d->content_hash) != 0) {
        snprintf(why, why_len, "%s has hash %.*s, not %.*s", source, REGISTRY_HASH_SHOWN,
                 d->content_hash, REGISTRY_HASH_SHOWN, expected_hash);
    } else {
        defn_errors_release(&errs);
        const definition_t *added = d;
        if (defn_set_add(r->own, d, NULL) < 0) {
            snprintf(why, why_len, "out of memory");
            return NULL;
        }
        *status = 0;
        return added;
    }
    defn_errors_release(&errs);
    definition_free(d);
    return NULL;
}

static bool in_view(const definition_t *const *view, size_t n, const definition_t *d)
{
    for (size_t i = 0; i < n; i++)
        if (view[i] == d)
            return true;
    return false;
}

int registry_reload(registry_t *r, const char *dir, const store_port_t *st, defn_errors_t *errs,
                    registry_changes_t *changes)
{
    defn_errors_t local = {0};
    defn_errors_t *e = errs ? errs : &local;
    size_t before = e->count;
    defn_set_t *fresh = defn_set_load(dir, e);
    if (!fresh)
        goto refused;

    /* Check everything before changing anything. */
    size_t n = defn_set_count(fresh);
    for (size_t i = 0; i < n; i++) {
        const definition_t *d = defn_set_at(fresh, i);
        const definition_t *known = find_known(r, d->name, d->version);
        if (known && strcmp(known->content_hash, d->content_hash) != 0) {
            defn_errors_add(e, d->source, 0, 0, NULL,
                            "saga \"%s\" version %d changed content (hash %.*s, was %.*s from "
                            "%s) without a new version: a version's content never changes, "
                            "give the changed definition a new version",
                            d->name, d->version, REGISTRY_HASH_SHOWN, d->content_hash,
                            REGISTRY_HASH_SHOWN, known->content_hash, known->source);
            continue;
        }
        if (known)
            continue;
        char recorded[STORE_HASH_HEX_LEN + 1];
        int rc = st->get_definition_hash(st->self, d->name, d->version, recorded);
        if (rc < 0)
            defn_errors_add(e, d->source, 0, 0, NULL,
                            "cannot check saga \"%s\" version %d against Redis: %s", d->name,
                            d->version, st->last_error(st->self));
        else if (rc == 0 && strcmp(recorded, d->content_hash) != 0)
            defn_errors_add(e, d->source, 0, 0, NULL,
                            "saga \"%s\" version %d is recorded in Redis with other content "
                            "(hash %.*s, this file %.*s): a version's content never changes, "
                            "give the changed definition a new version",
                            d->name, d->version, REGISTRY_HASH_SHOWN, recorded,
                            REGISTRY_HASH_SHOWN, d->content_hash);
    }
    if (e->count > before)
        goto refused;
    for (size_t i = 0; i < n; i++) {
        const definition_t *d = defn_set_at(fresh, i);
        if (!find_known(r, d->name, d->version))
            (void)publish_one(d, st, e);
    }
    if (e->count > before)
        goto refused;

    /* Apply: known versions stay the same objects (sagas point at them). */
    const definition_t **view = calloc(n ? n : 1, sizeof *view);
    if (!view) {
        defn_errors_add(e, dir, 0, 0, NULL, "out of memory");
        goto refused;
    }
    size_t nview = 0;
    registry_changes_t ch = {.files = n};
    while (defn_set_count(fresh) > 0) {
        definition_t *d = defn_set_take(fresh, 0);
        const definition_t *known = find_known(r, d->name, d->version);
        if (known) {
            definition_free(d);
        } else {
            known = d;
            if (defn_set_add(r->own, d, e) < 0)
                continue; /* out of memory: the error is in e, d freed */
        }
        if (!in_view(r->view, r->nview, known))
            ch.added++;
        view[nview++] = known;
    }
    for (size_t i = 0; i < r->nview; i++)
        if (!in_view(view, nview, r->view[i]))
            ch.removed++;
    free(r->view);
    r->view = view;
    r->nview = nview;
    defn_set_free(fresh);
    if (changes)
        *changes = ch;
    defn_errors_release(&local);
    return 0;
refused:
    defn_set_free(fresh);
    defn_errors_release(&local);
    return -1;
}
