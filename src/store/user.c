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
    for (int64_t i = 0; i < x->n; i++) free(x->ids[i]);
    free(x->ids);
    x->ids = NULL;
    x->n = 0;
}

static pvg_status ext_ids_load(pvg_store *s, ext_ids *x, pvg_error *err)
{
    memset(x, 0, sizeof *x);
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT max(id) FROM items", -1, &q, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "items", err);
    int64_t maxid = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_finalize(q);
    x->ids = calloc((size_t)maxid + 1, sizeof *x->ids);
    if (!x->ids) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    x->n = maxid + 1;
    rc = sqlite3_prepare_v2(s->db, "SELECT id, ext_id FROM items", -1, &q, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "items", err);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(q, 0);
        if (id >= 0 && id < x->n) x->ids[id] = strdup((const char *)sqlite3_column_text(q, 1));
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? PVG_OK : pvg_store_sqlite_error(s, rc, "items", err);
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
    if (pvg_record_decode(rec, len, ev, &item_id, strbuf, sizeof strbuf) != PVG_OK) return PVG_ERR_CORRUPT;
    ev->item = item_id > 0 && item_id < b->items->n ? b->items->ids[item_id] : NULL;
    const char *strs[2] = {ev->query, ev->country};
    size_t *offs[2] = {&b->qoff[b->n], &b->coff[b->n]};
    for (int i = 0; i < 2; i++) {
        *offs[i] = (size_t)-1;
        if (!strs[i]) continue;
        size_t n = strlen(strs[i]) + 1;
        if (b->used + n > b->arena_cap) {
            size_t cap = b->arena_cap ? b->arena_cap * 2 : 4096;
            while (cap < b->used + n) cap *= 2;
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
    pvg_status st = pvg_store_user_chunks_foreach(s, uid, p, key, take_record, b, err);
    if (st != PVG_OK) return st;
    for (size_t i = 0; i < b->n; i++) {
        b->ev[i].query = b->qoff[i] == (size_t)-1 ? NULL : b->arena + b->qoff[i];
        b->ev[i].country = b->coff[i] == (size_t)-1 ? NULL : b->arena + b->coff[i];
    }
    if (sort && b->n > 1) qsort(b->ev, b->n, sizeof *b->ev, cmp_ts);
    return PVG_OK;
}

/* Unwraps a user's data key into key (sodium_malloc'd by the caller).
 * PVG_ERR_NOT_FOUND when the key is gone (a shredded user). */
static pvg_status user_key(pvg_store *s, const unsigned char p[16], unsigned char *key, pvg_error *err)
{
    sqlite3_stmt *k = s->st_key_get;
    sqlite3_reset(k);
    sqlite3_bind_blob(k, 1, p, 16, SQLITE_STATIC);
    int rc = sqlite3_step(k);
    pvg_status st;
    if (rc == SQLITE_ROW)
        st = sqlite3_column_bytes(k, 0) == PVG_KID_BYTES
                 ? pvg_keys_unwrap(&s->keys, sqlite3_column_blob(k, 0), p, sqlite3_column_blob(k, 1),
                                   (size_t)sqlite3_column_bytes(k, 1), key)
                 : PVG_ERR_CRYPTO;
    else
        st = rc == SQLITE_DONE ? PVG_ERR_NOT_FOUND : PVG_ERR_IO;
    sqlite3_reset(k);
    if (st == PVG_ERR_CRYPTO)
        pvg_error_set(err, st, "a data key cannot be unwrapped with the master key");
    else if (st == PVG_ERR_IO)
        pvg_error_set(err, st, "key store: %s", sqlite3_errmsg(s->ks));
    return st;
}

#define USER_COLS "SELECT id, pseudonym, consent_personalization, consent_analytics, created_at FROM users"

static pvg_status iterate(pvg_store *s, const char *where_sql, const unsigned char *only_p,
                          unsigned flags, pvg_user_events_fn fn, void *ctx, int *seen, pvg_error *err)
{
    ext_ids items;
    pvg_status st = ext_ids_load(s, &items, err);
    if (st != PVG_OK) {
        ext_ids_free(&items);
        return st;
    }
    sqlite3_stmt *uq = NULL;
    char sql[256];
    snprintf(sql, sizeof sql, USER_COLS "%s ORDER BY id", where_sql);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &uq, NULL);
    unsigned char *key = sodium_malloc(PVG_KEY_BYTES);
    user_batch b;
    memset(&b, 0, sizeof b);
    if (rc != SQLITE_OK)
        st = pvg_store_sqlite_error(s, rc, "users", err);
    else if (!key)
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (st == PVG_OK && only_p) sqlite3_bind_blob(uq, 1, only_p, 16, SQLITE_STATIC);
    while (st == PVG_OK && (rc = sqlite3_step(uq)) == SQLITE_ROW) {
        pvg_user_view v;
        v.user_id = sqlite3_column_int64(uq, 0);
        if (sqlite3_column_bytes(uq, 1) != PVG_PSEUDONYM_BYTES) continue;
        memcpy(v.pseudonym, sqlite3_column_blob(uq, 1), PVG_PSEUDONYM_BYTES);
        v.consent_personalization = sqlite3_column_int(uq, 2);
        v.consent_analytics = sqlite3_column_int(uq, 3);
        v.created_at = sqlite3_column_int64(uq, 4);
        if ((flags & PVG_FOREACH_REQUIRE_ANALYTICS) && !v.consent_analytics) continue;
        if ((flags & PVG_FOREACH_REQUIRE_PERSONALIZATION) && !v.consent_personalization) continue;
        st = user_key(s, v.pseudonym, key, err);
        if (st == PVG_ERR_NOT_FOUND) { /* shredded: its records are unreadable by design */
            pvg_error_clear(err);
            st = PVG_OK;
            continue;
        }
        if (st != PVG_OK) break;
        st = load_user_events(s, v.user_id, v.pseudonym, key, &items, &b, 1, err);
        if (st != PVG_OK) break;
        if (seen) (*seen)++;
        if (fn(ctx, &v, b.ev, b.n)) st = PVG_ERR_ABORTED;
    }
    if (st == PVG_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) st = pvg_store_sqlite_error(s, rc, "users", err);
    sqlite3_finalize(uq);
    if (key) sodium_free(key);
    user_batch_free(&b);
    ext_ids_free(&items);
    return st;
}

pvg_status pvg_store_foreach_user(pvg_store *s, unsigned flags, pvg_user_events_fn fn, void *ctx,
                                  pvg_error *err)
{
    return iterate(s, "", NULL, flags, fn, ctx, NULL, err);
}

pvg_status pvg_store_user_events(pvg_store *s, const char *ext_user, pvg_user_events_fn fn,
                                 void *ctx, pvg_error *err)
{
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    int seen = 0;
    pvg_status st = iterate(s, " WHERE pseudonym = ?1", p, 0, fn, ctx, &seen, err);
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
        if (ev[i].fields & PVG_FIELD_QUANTITY) json_object_set_new(e, "quantity", json_real(ev[i].quantity));
        if (ev[i].fields & PVG_FIELD_AMOUNT) json_object_set_new(e, "amount", json_real(ev[i].amount));
        if (ev[i].fields & PVG_FIELD_RATING) json_object_set_new(e, "rating", json_real(ev[i].rating));
        if (ev[i].query) json_object_set_new(e, "query", json_string(ev[i].query));
        if (ev[i].country) json_object_set_new(e, "country", json_string(ev[i].country));
        json_array_append_new(arr, e);
    }
    json_object_set_new(x->root, "event_count", json_integer((json_int_t)n));
    json_object_set_new(x->root, "events", arr);
    return 0;
}

pvg_status pvg_store_user_export(pvg_store *s, const char *ext_user, char **json_out, pvg_error *err)
{
    *json_out = NULL;
    export_ctx x = {json_object(), s};
    if (!x.root) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    json_object_set_new(x.root, "user", json_string(ext_user));
    pvg_status st = pvg_store_user_events(s, ext_user, export_cb, &x, err);
    if (st == PVG_OK) {
        /* Purposes and the policy that governs this data. */
        json_t *pol = json_loads(s->policy.text, 0, NULL);
        json_t *consent = json_object_get(x.root, "consent");
        json_t *purposes = json_array();
        size_t i;
        json_t *pv;
        json_array_foreach(json_object_get(pol, "purposes"), i, pv) {
            json_t *p = json_deep_copy(pv);
            json_t *c = json_object_get(pv, "consent");
            int active = !json_is_string(c) || json_is_true(json_object_get(consent, json_string_value(c)));
            json_object_set_new(p, "active", json_boolean(active));
            json_array_append_new(purposes, p);
        }
        json_object_set_new(x.root, "purposes", purposes);
        json_t *ret = json_object();
        for (int t = 0; t < PVG_EVENT_TYPE_COUNT; t++)
            if (s->policy.allowed[t]) json_object_set_new(ret, pvg_event_type_name((pvg_event_type)t),
                                                          json_integer(s->policy.retention_days[t]));
        json_object_set_new(x.root, "retention_days", ret);
        json_object_set_new(x.root, "retention_basis",
                            json_string(s->policy.basis_collection ? "collection_time" : "event_time"));
        json_decref(pol);
        *json_out = json_dumps(x.root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
        if (!*json_out) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    json_decref(x.root);
    return st;
}

/* ---- deletion ---- */

/* Deletes rows of other modules' tables that carry a `user_pseudonym`
 * column (store_internal.h documents the convention). */
static pvg_status delete_linked_rows(pvg_store *s, const unsigned char p[16], pvg_error *err)
{
    sqlite3_stmt *t = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c"
                                " WHERE m.type = 'table' AND c.name = 'user_pseudonym'",
                                -1, &t, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "schema", err);
    pvg_status st = PVG_OK;
    while (st == PVG_OK && sqlite3_step(t) == SQLITE_ROW) {
        char sql[256];
        snprintf(sql, sizeof sql, "DELETE FROM \"%s\" WHERE user_pseudonym = ?1", (const char *)sqlite3_column_text(t, 0));
        sqlite3_stmt *d = NULL;
        if (sqlite3_prepare_v2(s->db, sql, -1, &d, NULL) != SQLITE_OK) {
            st = pvg_store_sqlite_error(s, SQLITE_ERROR, "delete", err);
            break;
        }
        sqlite3_bind_blob(d, 1, p, 16, SQLITE_STATIC);
        if (sqlite3_step(d) != SQLITE_DONE) st = pvg_store_sqlite_error(s, SQLITE_ERROR, "delete", err);
        sqlite3_finalize(d);
    }
    sqlite3_finalize(t);
    return st;
}

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

pvg_status pvg_store_user_delete(pvg_store *s, const char *ext_user, pvg_error *err)
{
    if (s->in_txn) return pvg_error_set(err, PVG_ERR_STATE, "cannot delete inside a transaction");
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    sqlite3_stmt *q = s->st_user_find;
    sqlite3_reset(q);
    sqlite3_bind_blob(q, 1, p, 16, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int64_t uid = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return pvg_store_sqlite_error(s, rc, "users", err);
    if (!uid) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user");
    /* 1. Destroy the key: from here on the records are unreadable. */
    pvg_keycache_remove(&s->cache, p);
    sqlite3_stmt *d = NULL;
    rc = sqlite3_prepare_v2(s->ks, "DELETE FROM data_keys WHERE pseudonym = ?1", -1, &d, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(d, 1, p, 16, SQLITE_STATIC);
        rc = sqlite3_step(d);
    }
    sqlite3_finalize(d);
    if (rc != SQLITE_DONE) return pvg_error_set(err, PVG_ERR_IO, "key store: %s", sqlite3_errmsg(s->ks));
    /* 2. Remove the records and everything else linked to the user. */
    pvg_status st = pvg_store_exec(s, "BEGIN IMMEDIATE", err);
    if (st != PVG_OK) return st;
    sqlite3_stmt *e = NULL;
    if (rc == SQLITE_DONE) {
        rc = sqlite3_prepare_v2(s->db, "DELETE FROM chunks WHERE user_id = ?1", -1, &e, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(e, 1, uid);
            rc = sqlite3_step(e);
        }
        sqlite3_finalize(e);
    }
    if (rc == SQLITE_DONE) {
        rc = sqlite3_prepare_v2(s->db, "DELETE FROM users WHERE id = ?1", -1, &e, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(e, 1, uid);
            rc = sqlite3_step(e);
        }
        sqlite3_finalize(e);
    }
    if (rc != SQLITE_DONE) st = pvg_store_sqlite_error(s, rc, "delete", err);
    if (st == PVG_OK) st = delete_linked_rows(s, p, err);
    if (st != PVG_OK) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st; /* the key is gone already: the records stay unreadable */
    }
    st = pvg_store_exec(s, "COMMIT", err);
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

/* ---- consent ---- */

pvg_status pvg_store_consent_get(pvg_store *s, const char *ext_user, pvg_consent *out, pvg_error *err)
{
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    sqlite3_stmt *q = s->st_consent_get; /* on the request path of the server: prepared once */
    sqlite3_reset(q);
    sqlite3_bind_blob(q, 1, p, 16, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    pvg_status st = PVG_OK;
    if (rc == SQLITE_ROW) {
        out->personalization = sqlite3_column_int(q, 0);
        out->analytics = sqlite3_column_int(q, 1);
    } else
        st = rc == SQLITE_DONE ? pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown user")
                               : pvg_store_sqlite_error(s, rc, "users", err);
    sqlite3_reset(q);
    return st;
}

pvg_status pvg_store_consent_set(pvg_store *s, const char *ext_user, const pvg_consent *c, pvg_error *err)
{
    if (!ext_user || !*ext_user) return pvg_error_set(err, PVG_ERR_INVALID, "user: required");
    int own = !s->in_txn;
    pvg_status st = own ? pvg_store_begin(s, err) : PVG_OK;
    if (st != PVG_OK) return st;
    unsigned char p[16];
    pvg_store_pseudonym(s, ext_user, p);
    pvg_keycache_entry *u;
    st = pvg_store_user_resolve(s, p, 1, &u, NULL, err);
    if (st == PVG_OK) {
        sqlite3_stmt *q = NULL;
        int rc = sqlite3_prepare_v2(s->db,
                                    "UPDATE users SET consent_personalization = ?1, consent_analytics = ?2,"
                                    " consent_updated_at = ?3 WHERE id = ?4",
                                    -1, &q, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int(q, 1, c->personalization ? 1 : 0);
            sqlite3_bind_int(q, 2, c->analytics ? 1 : 0);
            sqlite3_bind_int64(q, 3, pvg_store_now(s));
            sqlite3_bind_int64(q, 4, u->user_id);
            rc = sqlite3_step(q);
        }
        sqlite3_finalize(q);
        if (rc != SQLITE_DONE) st = pvg_store_sqlite_error(s, rc, "consent", err);
    }
    if (own) {
        if (st == PVG_OK)
            st = pvg_store_commit(s, err);
        else
            pvg_store_rollback(s);
    }
    return st;
}
