/*
 * user.c - reading users' events back (iteration for training and
 * analytics), and the user's rights: export, crypto-shredding deletion,
 * consent.
 */
#include "store/store_priv.h"
#include "store/text.h"

#include <privguide/model.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- decrypting one user's events ---- */

typedef struct ext_ids {
    char **ids; /* indexed by item row id */
    int64_t n;
} ext_ids;

static void ext_ids_free(ext_ids *x)
{
    for (int64_t i = 0; i < x->n; i++)
        free(x->ids[i]);
    free(x->ids);
    x->ids = NULL;
    x->n = 0;
}

typedef struct ext_ids_load_ctx {
    ext_ids *x;
    int nomem;
} ext_ids_load_ctx;

static int ext_id_take(void *vctx, const pvg_item *it)
{
    ext_ids_load_ctx *c = vctx;
    ext_ids *x = c->x;
    if (it->id < 0 || !it->ext_id) return 0;
    if (it->id >= x->n) {
        int64_t n = x->n ? x->n : 1024;
        while (n <= it->id)
            n *= 2;
        char **ni = realloc(x->ids, (size_t)n * sizeof *ni);
        if (!ni) {
            c->nomem = 1;
            return 1;
        }
        memset(ni + x->n, 0, (size_t)(n - x->n) * sizeof *ni);
        x->ids = ni;
        x->n = n;
    }
    free(x->ids[it->id]);
    x->ids[it->id] = strdup(it->ext_id);
    if (!x->ids[it->id]) {
        c->nomem = 1;
        return 1;
    }
    return 0;
}

static pvg_status ext_ids_load(pvg_store *s, ext_ids *x, pvg_error *err)
{
    memset(x, 0, sizeof *x);
    ext_ids_load_ctx c = {x, 0};
    pvg_status st = PVG_B(s, items_foreach, ext_id_take, &c, err);
    if (c.nomem) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    return st;
}

typedef struct user_batch {
    pvg_event *ev;
    size_t n, cap;
    char *arena;
    size_t used, arena_cap;
    size_t *qoff, *coff; /* string offsets into arena, (size_t)-1 = none */
    const ext_ids *items;
} user_batch;

static void user_batch_free(user_batch *b)
{
    if (b->arena) sodium_memzero(b->arena, b->arena_cap);
    if (b->ev) sodium_memzero(b->ev, b->cap * sizeof *b->ev);
    free(b->ev);
    free(b->arena);
    free(b->qoff);
    free(b->coff);
    memset(b, 0, sizeof *b);
}

static int cmp_ts(const void *a, const void *b)
{
    const pvg_event *x = a, *y = b;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

static int grow_batch(user_batch *b)
{
    size_t cap = b->cap ? b->cap * 2 : 64;
    pvg_event *ne = realloc(b->ev, cap * sizeof *ne);
    if (!ne) return -1;
    b->ev = ne;
    size_t *nq = realloc(b->qoff, cap * sizeof *nq);
    if (!nq) return -1;
    b->qoff = nq;
    size_t *nc = realloc(b->coff, cap * sizeof *nc);
    if (!nc) return -1;
    b->coff = nc;
    b->cap = cap;
    return 0;
}

/* Chunk entry callback: decodes one record into the batch. */
static pvg_status take_record(void *ctx, int64_t expires_day, const unsigned char *rid,
                              const unsigned char *rec, size_t len)
{
    (void)expires_day;
    (void)rid;
    user_batch *b = ctx;
    char strbuf[4096];
    if (b->n == b->cap && grow_batch(b) != 0) return PVG_ERR_NOMEM;
    pvg_event *ev = &b->ev[b->n];
    int64_t item_id;
    if (pvg_record_decode(rec, len, ev, &item_id, strbuf, sizeof strbuf) != PVG_OK)
        return PVG_ERR_CORRUPT;
    ev->item = item_id > 0 && item_id < b->items->n ? b->items->ids[item_id] : NULL;
    const char *strs[2] = {ev->query, ev->country};
    size_t *offs[2] = {&b->qoff[b->n], &b->coff[b->n]};
    for (int i = 0; i < 2; i++) {
        *offs[i] = (size_t)-1;
        if (!strs[i]) continue;
        size_t n = strlen(strs[i]) + 1;
        if (b->used + n > b->arena_cap) {
            size_t cap = b->arena_cap ? b->arena_cap * 2 : 4096;
            while (cap < b->used + n)
                cap *= 2;
            char *na = realloc(b->arena, cap);
            if (!na) return PVG_ERR_NOMEM;
            b->arena = na;
            b->arena_cap = cap;
        }
        memcpy(b->arena + b->used, strs[i], n);
        *offs[i] = b->used;
        b->used += n;
    }
    sodium_memzero(strbuf, sizeof strbuf);
    b->n++;
    return PVG_OK;
}

/* Decrypts every event of one user into b (replacing its content); events
 * sorted by time when `sort`. */
static pvg_status load_user_events(pvg_store *s, int64_t uid, const unsigned char p[16],
                                   const unsigned char *key, const ext_ids *items, user_batch *b,
                                   int sort, pvg_error *err)
{
    b->n = 0;
    b->used = 0;
    b->items = items;
    pvg_status st = pvg_store_user_chunks_foreach(s, uid, p, key, take_record, b, NULL, NULL, err);
    if (st != PVG_OK) return st;
    for (size_t i = 0; i < b->n; i++) {
        b->ev[i].query = b->qoff[i] == (size_t)-1 ? NULL : b->arena + b->qoff[i];
        b->ev[i].country = b->coff[i] == (size_t)-1 ? NULL : b->arena + b->coff[i];
    }
    if (sort && b->n > 1) qsort(b->ev, b->n, sizeof *b->ev, cmp_ts);
    return PVG_OK;
}

typedef struct iter_ctx {
    pvg_store *s;
    unsigned flags;
    pvg_user_events_fn fn;
    void *ctx;
    int *seen;
    unsigned char *key; /* sodium_malloc */
    const ext_ids *items;
    user_batch *b;
    pvg_status st;
    pvg_error *err;
} iter_ctx;

static int iterate_user(void *vctx, const pvg_backend_user *u)
{
    iter_ctx *c = vctx;
    pvg_user_view v;
    v.user_id = u->id;
    memcpy(v.pseudonym, u->pseudonym, PVG_PSEUDONYM_BYTES);
    v.consent_personalization = u->consent_personalization;
    v.consent_analytics = u->consent_analytics;
    v.created_at = u->created_at;
    if ((c->flags & PVG_FOREACH_REQUIRE_ANALYTICS) && !v.consent_analytics) return 0;
    if ((c->flags & PVG_FOREACH_REQUIRE_PERSONALIZATION) && !v.consent_personalization) return 0;
    pvg_status st = pvg_store_user_key(c->s, v.pseudonym, c->key, c->err);
    if (st == PVG_ERR_NOT_FOUND) { /* shredded: its records are unreadable by design */
        pvg_error_clear(c->err);
        return 0;
    }
    if (st == PVG_OK)
        st = load_user_events(c->s, v.user_id, v.pseudonym, c->key, c->items, c->b, 1, c->err);
    if (st != PVG_OK) {
        c->st = st;
        return 1;
    }
    if (c->seen) (*c->seen)++;
    if (c->fn(c->ctx, &v, c->b->ev, c->b->n)) {
        c->st = PVG_ERR_ABORTED;
        return 1;
    }
    return 0;
}

static pvg_status iterate(pvg_store *s, const unsigned char *only_p, unsigned flags,
                          pvg_user_events_fn fn, void *ctx, int *seen, pvg_error *err)
{
    ext_ids items;
    pvg_status st = ext_ids_load(s, &items, err);
    if (st != PVG_OK) {
        ext_ids_free(&items);
        return st;
    }
    user_batch b;
    memset(&b, 0, sizeof b);
    iter_ctx c = {s, flags, fn, ctx, seen, sodium_malloc(PVG_KEY_BYTES), &items, &b, PVG_OK, err};
    if (!c.key)
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    else {
        st = PVG_B(s, users_foreach, only_p, iterate_user, &c, err);
        if (st == PVG_ERR_ABORTED) st = c.st;
    }
    if (c.key) sodium_free(c.key);
    user_batch_free(&b);
    ext_ids_free(&items);
    return st;
}

pvg_status pvg_store_foreach_user(pvg_store *s, unsigned flags, pvg_user_events_fn fn, void *ctx,
                                  pvg_error *err)
{
    return iterate(s, NULL, flags, fn, ctx, NULL, err);
}

pvg_status pvg_store_user_events(pvg_store *s, const char *ext_user, pvg_user_events_fn fn,
                                 void *ctx, pvg_error *err)
{
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    int seen = 0;
    pvg_status st = iterate(s, p, 0, fn, ctx, &seen, err);
    if (st == PVG_OK && !seen) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user");
    return st;
}

/* ---- export ---- */

typedef struct export_ctx {
    json_t *root;
    pvg_store *s;
} export_ctx;

static json_t *iso_time(int64_t t)
{
    char buf[32];
    pvg_format_datetime(t, buf, sizeof buf);
    return json_string(buf);
}

static int export_cb(void *vctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    export_ctx *x = vctx;
    char hex[2 * PVG_PSEUDONYM_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, u->pseudonym, PVG_PSEUDONYM_BYTES);
    json_object_set_new(x->root, "pseudonym", json_string(hex));
    json_object_set_new(x->root, "created_at", iso_time(u->created_at));
    json_t *consent = json_object();
    json_object_set_new(consent, "personalization", json_boolean(u->consent_personalization));
    json_object_set_new(consent, "analytics", json_boolean(u->consent_analytics));
    json_object_set_new(x->root, "consent", consent);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "type", json_string(pvg_event_type_name(ev[i].type)));
        json_object_set_new(e, "ts", iso_time(ev[i].ts));
        if (ev[i].item) json_object_set_new(e, "item", json_string(ev[i].item));
        if (ev[i].fields & PVG_FIELD_QUANTITY)
            json_object_set_new(e, "quantity", json_real(ev[i].quantity));
        if (ev[i].fields & PVG_FIELD_AMOUNT)
            json_object_set_new(e, "amount", json_real(ev[i].amount));
        if (ev[i].fields & PVG_FIELD_RATING)
            json_object_set_new(e, "rating", json_real(ev[i].rating));
        if (ev[i].query) json_object_set_new(e, "query", json_string(ev[i].query));
        if (ev[i].country) json_object_set_new(e, "country", json_string(ev[i].country));
        json_array_append_new(arr, e);
    }
    json_object_set_new(x->root, "event_count", json_integer((json_int_t)n));
    json_object_set_new(x->root, "events", arr);
    return 0;
}

static void export_conversation(void *ctx, const pvg_conversation_view *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(c->id));
    json_object_set_new(o, "created_at", iso_time(c->created_at));
    json_object_set_new(o, "updated_at", iso_time(c->updated_at));
    json_object_set_new(o, "expires_at", iso_time(c->expires_at));
    json_t *state = json_loads(c->json, 0, NULL);
    json_object_set_new(o, "state", state ? state : json_string(c->json));
    json_array_append_new(ctx, o);
}

pvg_status pvg_store_user_export(pvg_store *s, const char *ext_user, char **json_out,
                                 pvg_error *err)
{
    *json_out = NULL;
    export_ctx x = {json_object(), s};
    if (!x.root) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    json_object_set_new(x.root, "user", json_string(ext_user));
    /* Chunks of this user that cannot be read are named in the export
     * (their events are not in it): the user learns that data is held
     * which could not be returned. */
    s->collect_damage = 1;
    s->n_damage = 0;
    pvg_status st = pvg_store_user_events(s, ext_user, export_cb, &x, err);
    s->collect_damage = 0;
    if (st == PVG_OK && s->n_damage > 0) {
        json_t *bad = json_array();
        for (size_t i = 0; i < s->n_damage; i++) {
            char hex[2 * PVG_CID_BYTES + 1];
            sodium_bin2hex(hex, sizeof hex, s->damage[i].cid, PVG_CID_BYTES);
            json_t *d = json_object();
            json_object_set_new(d, "chunk", json_string(hex));
            json_object_set_new(d, "reason", json_string(pvg_chunk_damage_name(s->damage[i].kind)));
            json_array_append_new(bad, d);
        }
        json_object_set_new(x.root, "unreadable_chunks", bad);
    }
    s->n_damage = 0;
    if (st == PVG_OK) {
        /* Purposes and the policy that governs this data. */
        json_t *pol = json_loads(s->policy.text, 0, NULL);
        json_t *consent = json_object_get(x.root, "consent");
        json_t *purposes = json_array();
        size_t i;
        json_t *pv;
        json_array_foreach(json_object_get(pol, "purposes"), i, pv)
        {
            json_t *p = json_deep_copy(pv);
            json_t *c = json_object_get(pv, "consent");
            int active =
                !json_is_string(c) || json_is_true(json_object_get(consent, json_string_value(c)));
            json_object_set_new(p, "active", json_boolean(active));
            json_array_append_new(purposes, p);
        }
        json_object_set_new(x.root, "purposes", purposes);
        json_t *ret = json_object();
        for (int t = 0; t < PVG_EVENT_TYPE_COUNT; t++)
            if (s->policy.allowed[t])
                json_object_set_new(ret, pvg_event_type_name((pvg_event_type)t),
                                    json_integer(s->policy.retention_days[t]));
        json_object_set_new(x.root, "retention_days", ret);
        json_object_set_new(
            x.root, "retention_basis",
            json_string(s->policy.basis_collection ? "collection_time" : "event_time"));
        json_object_set_new(x.root, "conversation_retention_days",
                            json_integer(pvg_store_conversation_retention_days(s)));
        /* the assistant's conversations (sealed under the same key) */
        json_t *convs = json_array();
        long long bad = 0;
        pvg_status cs =
            pvg_store_conversations_foreach(s, ext_user, export_conversation, convs, &bad, err);
        if (cs != PVG_OK && cs != PVG_ERR_NOT_FOUND) st = cs;
        if (cs == PVG_ERR_NOT_FOUND) pvg_error_clear(err);
        json_object_set_new(x.root, "conversations", convs);
        if (bad) json_object_set_new(x.root, "unreadable_conversations", json_integer(bad));
        json_decref(pol);
        if (st == PVG_OK) {
            *json_out =
                json_dumps(x.root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
            if (!*json_out) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        }
    }
    json_decref(x.root);
    return st;
}

/* ---- deletion ---- */

static pvg_status checkpoint_retry(pvg_store *s, pvg_error *err)
{
    pvg_status st = PVG_OK;
    for (int i = 0; i < 50; i++) {
        st = pvg_store_checkpoint(s, err);
        if (st == PVG_OK) return st;
        usleep(100000);
    }
    return st;
}

pvg_status pvg_store_user_suppressed(pvg_store *s, const char *ext_user, int *suppressed,
                                     pvg_error *err)
{
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    return PVG_B(s, suppress_has, p, suppressed, err);
}

pvg_status pvg_store_user_delete(pvg_store *s, const char *ext_user, pvg_error *err)
{
    return pvg_store_user_erase(s, ext_user, 0, err);
}

pvg_status pvg_store_user_erase(pvg_store *s, const char *ext_user, unsigned flags, pvg_error *err)
{
    if (s->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "cannot delete inside a transaction");
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    pvg_backend_user u;
    pvg_status st = PVG_B(s, user_get, p, &u, err);
    if (st != PVG_OK) return st;
    /* 0. The suppression list first (durable on return, and a change other
     *    processes see): an interrupted deletion then leaves a suppressed
     *    shopper whom a rerun finishes erasing, never an erased one whom
     *    an old file could bring back. */
    if (!(flags & PVG_ERASE_ALLOW_RETURN) && (st = PVG_B(s, suppress_add, p, err)) != PVG_OK)
        return st;
    /* 1. Destroy the key (durable at once): from here on the records are
     *    unreadable. */
    pvg_keycache_remove(&s->cache, p);
    st = PVG_B(s, key_delete, p, err);
    if (st != PVG_OK) return st;
    /* 2. Remove the records and everything else linked to the user, in one
     *    transaction (if it fails, the key is gone already: the records
     *    stay unreadable). */
    st = PVG_B(s, user_delete, u.id, p, err);
    if (st != PVG_OK) return st;
    /* 3. Push the zeroed pages out of the write-ahead logs into the
     *    databases and truncate the logs (secure_delete zeroed the freed
     *    cells), so no file keeps the key or a record. */
    st = checkpoint_retry(s, err);
    if (st != PVG_OK) return st;
    /* 4. Models trained from the store: the shopper's rows leave every model
     *    file of the data dir (src/model/model_file.c). */
    return pvg_model_dir_erase_user(s->dir, s, p, NULL, err);
}

/* ---- user rows without events (the gate's batch calls) ---- */

typedef struct list_ctx {
    int (*fn)(void *ctx, const pvg_user_view *u);
    void *ctx;
} list_ctx;

static int list_user(void *ctx, const pvg_backend_user *u)
{
    list_ctx *c = ctx;
    pvg_user_view v;
    v.user_id = u->id;
    memcpy(v.pseudonym, u->pseudonym, sizeof v.pseudonym);
    v.consent_personalization = u->consent_personalization;
    v.consent_analytics = u->consent_analytics;
    v.created_at = u->created_at;
    return c->fn(c->ctx, &v);
}

pvg_status pvg_store_users_list(pvg_store *s, int (*fn)(void *ctx, const pvg_user_view *u),
                                void *ctx, pvg_error *err)
{
    list_ctx c = {fn, ctx};
    return PVG_B(s, users_foreach, NULL, list_user, &c, err);
}

pvg_status pvg_store_consent_get_pseudonym(pvg_store *s, const unsigned char pseudonym[16],
                                           pvg_consent *out, pvg_error *err)
{
    pvg_backend_user u;
    pvg_status st = PVG_B(s, user_get, pseudonym, &u, err);
    if (st != PVG_OK) return st;
    out->personalization = u.consent_personalization;
    out->analytics = u.consent_analytics;
    return PVG_OK;
}

/* ---- consent ---- */

pvg_status pvg_store_consent_get(pvg_store *s, const char *ext_user, pvg_consent *out,
                                 pvg_error *err)
{
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    pvg_backend_user u;
    pvg_status st =
        PVG_B(s, user_get, p, &u, err); /* on the server's request path: a prepared lookup */
    if (st != PVG_OK) return st;
    out->personalization = u.consent_personalization;
    out->analytics = u.consent_analytics;
    return PVG_OK;
}

pvg_status pvg_store_consent_set(pvg_store *s, const char *ext_user, const pvg_consent *c,
                                 pvg_error *err)
{
    if (!ext_user || !*ext_user) return pvg_error_set(err, PVG_ERR_INVALID, "user: required");
    int own = !s->in_txn;
    pvg_status st = own ? pvg_store_begin(s, err) : PVG_OK;
    if (st != PVG_OK) return st;
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    int gone = 0; /* checked inside the transaction: a concurrent erasure counts */
    st = PVG_B(s, suppress_has, p, &gone, err);
    if (st == PVG_OK && gone)
        st = pvg_error_set(err, PVG_ERR_ERASED,
                           "consent: the user was erased (suppression list); nothing is recorded "
                           "about them");
    pvg_keycache_entry *u;
    if (st == PVG_OK) st = pvg_store_user_resolve(s, p, 1, &u, NULL, err);
    if (st == PVG_OK) {
        st = PVG_B(s, consent_set, u->user_id, c->personalization ? 1 : 0, c->analytics ? 1 : 0,
                   pvg_store_now(s), err);
    }
    if (own) {
        if (st == PVG_OK)
            st = pvg_store_commit(s, err);
        else
            pvg_store_rollback(s);
    }
    return st;
}
