/*
 * store_copy.c - moving a store between backends (`privguide store copy`),
 * schema migration (`privguide migrate`) and the cleanup after erasure
 * (`user delete --vacuum-full`). Backend-neutral: everything goes through
 * the ops of src/store/backend.h, and no key is needed: sealed chunks,
 * wrapped keys, hashes and pseudonyms are copied as the opaque bytes they
 * are, so the copy is readable with the same key file (the store id goes
 * along). The copy is verified by counts and a digest per user computed on
 * both sides from what each backend returns.
 */
#include "store/datafile.h"
#include "store/postgres/pg_backend.h"
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pvg_status pvg_store_migrate(const char *dir, int *from, int *to, pvg_error *err)
{
    if (!pvg_backend_exists(dir))
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, dir, 0, 0, -1,
                                "no privguide store here (run `privguide init` first)");
    return pvg_backend_migrate(dir, from, to, err);
}

pvg_status pvg_store_vacuum(pvg_store *s, int full, pvg_error *err)
{
    pvg_backend *be = pvg_store_backend(s);
    return be->ops->vacuum(be, full, err);
}

/* ---- copying ---- */

static pvg_status copy_file(const char *from_dir, const char *to_dir, const char *name,
                            pvg_error *err)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", from_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", to_dir, name);
    FILE *in = NULL, *out = NULL;
    pvg_status st = pvg_datafile_fopen(src, "r", &in, err); /* never through a link */
    if (st != PVG_OK) return st;
    st = pvg_datafile_fopen(dst, "wx", &out, err); /* 0600 */
    if (st != PVG_OK) {
        fclose(in);
        return st;
    }
    char buf[8192];
    size_t n;
    int ok = 1;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) ok = 0;
    fclose(in);
    if (fclose(out) != 0) ok = 0;
    return ok ? PVG_OK : pvg_error_set_at(err, PVG_ERR_IO, dst, 0, 0, -1, "write failed");
}

typedef struct idmap {
    int64_t *from, *to;
    size_t n, cap;
} idmap;

static int idmap_add(idmap *m, int64_t from, int64_t to)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        int64_t *f = realloc(m->from, cap * sizeof *f);
        if (!f) return -1;
        m->from = f;
        int64_t *t = realloc(m->to, cap * sizeof *t);
        if (!t) return -1;
        m->to = t;
        m->cap = cap;
    }
    m->from[m->n] = from; /* users_foreach goes in id order: from is sorted */
    m->to[m->n++] = to;
    return 0;
}

static int64_t idmap_get(const idmap *m, int64_t from)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->from[mid] < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n && m->from[lo] == from ? m->to[lo] : 0;
}

/* Meta rows that belong to one backend's copy of a store, not to the store:
 * the schema version (each backend records its own), the duplicate index's
 * state (the target rebuilds the index on its first open) and the SQLite
 * layout's record that its audit log lives in audit.db (a SQLite target sets
 * its own when it is made; PostgreSQL keeps the log in a table). */
static int meta_is_local(const char *key)
{
    return strcmp(key, "schema_version") == 0 || strcmp(key, "dup_index") == 0 ||
           strcmp(key, "audit_file") == 0;
}

typedef struct copier {
    pvg_backend *a, *b;
    idmap users;
    pvg_store_copy_report *r;
    pvg_status st;
    pvg_error *err;
} copier;

#define CB_FAIL(c, expr)                                                                           \
    do {                                                                                           \
        if (((c)->st = (expr)) != PVG_OK) return 1;                                                \
    } while (0)

static int copy_user(void *ctx, const pvg_backend_user *u)
{
    copier *c = ctx;
    int64_t id = 0;
    CB_FAIL(c, c->b->ops->user_insert(c->b, u->pseudonym, u->created_at, u->consent_personalization,
                                      u->consent_analytics, &id, c->err));
    if (idmap_add(&c->users, u->id, id) != 0) {
        c->st = pvg_error_set(c->err, PVG_ERR_NOMEM, "out of memory");
        return 1;
    }
    pvg_backend_key k;
    pvg_status st = c->a->ops->key_get(c->a, u->pseudonym, &k, c->err);
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(c->err);
        return 0; /* an interrupted erasure: the store finishes it on next use */
    }
    CB_FAIL(c, st);
    st = c->b->ops->key_put(c->b, u->pseudonym, k.kid, k.wrapped, k.wrapped_len, c->err);
    sodium_memzero(&k, sizeof k);
    CB_FAIL(c, st);
    c->r->users++;
    return 0;
}

static int copy_chunk(void *ctx, const pvg_backend_chunk *ch)
{
    copier *c = ctx;
    int64_t uid = idmap_get(&c->users, ch->user_id);
    if (!uid) { /* a chunk whose user row is gone: unreadable, not copied */
        c->r->chunks_left++;
        return 0;
    }
    CB_FAIL(c, c->b->ops->chunk_insert(c->b, uid, ch->expires_day, ch->n_events, ch->cid,
                                       ch->cid_len, ch->sealed, ch->sealed_len, c->err));
    c->r->chunks++;
    return 0;
}

static int copy_item(void *ctx, const pvg_item *it)
{
    copier *c = ctx;
    pvg_item row = *it; /* the price column holds the last price; the window its own */
    row.price = it->last_price;
    CB_FAIL(c, c->b->ops->item_insert_at(c->b, it->id, &row, 0, c->err));
    char *window = NULL;
    CB_FAIL(c, c->a->ops->item_prices_get(c->a, it->id, &window, c->err));
    if (window) {
        c->st = c->b->ops->item_prices_set(c->b, it->id, window, it->price, c->err);
        free(window);
        if (c->st != PVG_OK) return 1;
    }
    return 0;
}

static int copy_catalog_text(void *ctx, const char *ext_id, const char *title,
                             const char *description, int64_t at)
{
    copier *c = ctx;
    CB_FAIL(c, c->b->ops->catalog_text_put(c->b, ext_id, title, description, at, c->err));
    return 0;
}

static int copy_anon(void *ctx, const unsigned char source[16], int64_t item_id, int type,
                     long long count, double qty)
{
    copier *c = ctx;
    /* per source, so a later import of the same rows replaces its counts
     * in the copy as it would have in the original */
    CB_FAIL(c, c->b->ops->anon_put(c->b, source, item_id, type, count, qty, c->err));
    return 0;
}

static int copy_meta(void *ctx, const char *key, const char *value)
{
    copier *c = ctx;
    if (meta_is_local(key)) return 0;
    CB_FAIL(c, c->b->ops->meta_set(c->b, key, value, c->err));
    c->r->meta_rows++;
    return 0;
}

static int copy_ingest_run(void *ctx, const pvg_backend_ingest_run *run)
{
    copier *c = ctx;
    CB_FAIL(c, c->b->ops->ingest_run_insert(c->b, run, c->err));
    c->r->ingest_runs++;
    return 0;
}

static int copy_quarantined(void *ctx, const pvg_backend_quarantined *qr)
{
    copier *c = ctx;
    pvg_backend_quarantined row = *qr;
    /* the user row id it had is a number of the source; the copy's user
     * row (when there is one) has another */
    row.user_id = idmap_get(&c->users, qr->user_id);
    CB_FAIL(c, c->b->ops->quarantine_insert(c->b, &row, c->err));
    c->r->quarantined++;
    return 0;
}

static int copy_cached(void *ctx, const pvg_backend_cached *rc)
{
    copier *c = ctx;
    CB_FAIL(c, c->b->ops->release_cache_put(c->b, rc->kind, rc->fingerprint, rc->fp_len,
                                            rc->dataset, rc->params, rc->mechanism, rc->release_id,
                                            rc->body, rc->created_at, c->err));
    c->r->cached_releases++;
    return 0;
}

static int copy_conv(void *ctx, const unsigned char pseudonym[16], const pvg_backend_conv *cv)
{
    copier *c = ctx;
    CB_FAIL(c, c->b->ops->conv_put(c->b, pseudonym, cv, c->err));
    c->r->conversations++;
    return 0;
}

static int copy_suppressed(void *ctx, const unsigned char p[16])
{
    copier *c = ctx;
    CB_FAIL(c, c->b->ops->suppress_add(c->b, p, c->err));
    return 0;
}

static int copy_cred(void *ctx, const pvg_backend_cred *cr)
{
    copier *c = ctx;
    CB_FAIL(c, c->b->ops->cred_insert(c->b, cr, c->err));
    if (cr->revoked) {
        long long n = 0;
        CB_FAIL(c, c->b->ops->cred_revoke(c->b, cr->key_id, &n, c->err));
    }
    return 0;
}

static pvg_status decide_yes(void *ctx, pvg_error *err)
{
    (void)ctx;
    (void)err;
    return PVG_OK;
}

static int copy_limit(void *ctx, const pvg_backend_ledger_row *row)
{
    copier *c = ctx;
    if (row->kind == PVG_LEDGER_ROW_TOTAL)
        CB_FAIL(c, c->b->ops->ledger_limit_set(c->b, NULL, row->epsilon, row->delta, 0, 0,
                                               decide_yes, NULL, c->err));
    else if (row->kind == PVG_LEDGER_ROW_CAP)
        CB_FAIL(c, c->b->ops->ledger_limit_set(c->b, row->name, row->epsilon, row->delta, 0, 0,
                                               decide_yes, NULL, c->err));
    return 0;
}

static int copy_release(void *ctx, const pvg_ledger_release *rel)
{
    copier *c = ctx;
    int64_t id = 0;
    CB_FAIL(c,
            c->b->ops->ledger_charge(c->b, rel->dataset, rel->what, rel->mechanism, rel->epsilon,
                                     rel->delta, rel->created_at, decide_yes, NULL, &id, c->err));
    if (id != rel->id) {
        c->st =
            pvg_error_set(c->err, PVG_ERR_STATE,
                          "ledger: release %lld was copied as %lld (the target's ledger was not "
                          "empty?)",
                          (long long)rel->id, (long long)id);
        return 1;
    }
    c->r->releases++;
    return 0;
}

/* The audit chain is copied entry by entry with its stored hashes (the
 * chain callback hands back the source entry's MAC), so `audit verify`
 * checks the copy with the same key. */
typedef struct audit_cp {
    copier *c;
    const pvg_audit_entry *e;
} audit_cp;

static void chain_same(void *ctx, const unsigned char prev[32], int64_t ts,
                       const pvg_audit_record *rec, unsigned char out[32])
{
    (void)prev;
    (void)ts;
    (void)rec;
    memcpy(out, ((audit_cp *)ctx)->e->hash, 32);
}

static int copy_audit(void *ctx, const pvg_audit_entry *e)
{
    copier *c = ctx;
    pvg_audit_record rec = {0};
    rec.ts = e->ts;
    rec.actor = e->actor;
    rec.action = e->action;
    rec.subject = e->subject;
    rec.detail = e->detail;
    audit_cp ac = {c, e};
    int64_t seq = 0;
    CB_FAIL(c, c->b->ops->audit_append(c->b, &rec, 1, e->ts, chain_same, &ac, &seq, c->err));
    if (seq != e->seq) {
        c->st = pvg_error_set(c->err, PVG_ERR_STATE, "audit: entry %lld was copied as %lld",
                              (long long)e->seq, (long long)seq);
        return 1;
    }
    c->r->audit_entries++;
    return 0;
}

/* ---- digests ---- */

/* A row's hash: every field length-prefixed (a NULL string differs from an
 * empty one), so no two different rows hash alike by shifting bytes. */
typedef struct rowh {
    crypto_generichash_state h;
} rowh;

static void rh_init(rowh *r, const char *table)
{
    crypto_generichash_init(&r->h, NULL, 0, 32);
    crypto_generichash_update(&r->h, (const unsigned char *)table, strlen(table) + 1);
}

static void rh_i64(rowh *r, int64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    crypto_generichash_update(&r->h, b, 8);
}

static void rh_f64(rowh *r, double d)
{
    int64_t v;
    memcpy(&v, &d, 8);
    rh_i64(r, v);
}

static void rh_bytes(rowh *r, const void *p, size_t n)
{
    rh_i64(r, p ? (int64_t)n : -1);
    if (p && n) crypto_generichash_update(&r->h, p, n);
}

static void rh_str(rowh *r, const char *t)
{
    rh_bytes(r, t, t ? strlen(t) : 0);
}

/* A multiset of row hashes (order-independent: the backends may order text
 * differently), optionally tagged with a pseudonym (16 bytes) each. */
typedef struct rowset {
    unsigned char *e; /* entries of 16 + 32 bytes: pseudonym (or zeros), hash */
    size_t n, cap;
} rowset;

#define RS_ENTRY 48

static int rs_add(rowset *s, const unsigned char *pseudonym, rowh *r)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        unsigned char *p = realloc(s->e, cap * RS_ENTRY);
        if (!p) return -1;
        s->e = p;
        s->cap = cap;
    }
    unsigned char *o = s->e + s->n++ * RS_ENTRY;
    if (pseudonym)
        memcpy(o, pseudonym, 16);
    else
        memset(o, 0, 16);
    crypto_generichash_final(&r->h, o + 16, 32);
    return 0;
}

static int cmp_entry48(const void *a, const void *b)
{
    return memcmp(a, b, RS_ENTRY);
}

static void rs_sort(rowset *s)
{
    if (s->n) qsort(s->e, s->n, RS_ENTRY, cmp_entry48);
}

/* The digest of the whole set (sorted first). */
static void rs_digest(rowset *s, unsigned char out[32])
{
    rs_sort(s);
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    if (s->n) crypto_generichash_update(&h, s->e, s->n * RS_ENTRY);
    crypto_generichash_final(&h, out, 32);
}

/* The sorted entries of one pseudonym. */
static const unsigned char *rs_range(const rowset *s, const unsigned char p[16], size_t *count)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (memcmp(s->e + mid * RS_ENTRY, p, 16) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < s->n && memcmp(s->e + end * RS_ENTRY, p, 16) == 0)
        end++;
    *count = end - lo;
    return s->e + lo * RS_ENTRY;
}

/* Everything of one backend that a digest covers. */
typedef struct digest_run {
    pvg_backend *be;
    unsigned char (*out)[16 + 32]; /* pseudonym, digest; sorted by pseudonym after */
    size_t n, cap;
    unsigned char *hashes; /* per-chunk hashes of the user being digested */
    size_t hn, hcap;
    rowset convs, quarantine; /* by pseudonym (quarantined rows without one: zeros) */
    rowset tables;            /* every other row of the store, tagged by nothing */
    long long n_convs, n_quarantine, n_meta, n_ingest, n_cached, n_anon, n_creds, n_ledger,
        n_releases, n_suppressed, n_items, n_catalog_text;
    pvg_status st;
    pvg_error *err;
} digest_run;

#define DR_ADD(d, set, p, rh)                                                                      \
    do {                                                                                           \
        if (rs_add(&(d)->set, (p), (rh)) != 0) {                                                   \
            (d)->st = pvg_error_set((d)->err, PVG_ERR_NOMEM, "out of memory");                     \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static int digest_chunk(void *ctx, const pvg_backend_chunk *ch)
{
    digest_run *d = ctx;
    if (d->hn == d->hcap) {
        size_t cap = d->hcap ? d->hcap * 2 : 64;
        unsigned char *p = realloc(d->hashes, cap * 32);
        if (!p) {
            d->st = pvg_error_set(d->err, PVG_ERR_NOMEM, "out of memory");
            return 1;
        }
        d->hashes = p;
        d->hcap = cap;
    }
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    unsigned char meta[16];
    for (int i = 0; i < 8; i++) {
        meta[i] = (unsigned char)((uint64_t)ch->expires_day >> (8 * i));
        meta[8 + i] = (unsigned char)((uint64_t)ch->n_events >> (8 * i));
    }
    crypto_generichash_update(&h, meta, sizeof meta);
    crypto_generichash_update(&h, ch->cid, ch->cid_len);
    crypto_generichash_update(&h, ch->sealed, ch->sealed_len);
    crypto_generichash_final(&h, d->hashes + 32 * d->hn++, 32);
    return 0;
}

static int cmp32(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int cmp_entry(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static int dg_conv(void *ctx, const unsigned char p[16], const pvg_backend_conv *cv)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "conversations");
    rh_bytes(&r, cv->cid, 16);
    rh_i64(&r, cv->created_at);
    rh_i64(&r, cv->updated_at);
    rh_i64(&r, cv->expires_day);
    rh_bytes(&r, cv->sealed, cv->sealed_len);
    DR_ADD(d, convs, p, &r);
    d->n_convs++;
    return 0;
}

/* Row ids and user row ids are the backend's own numbers: left out. */
static int dg_quarantined(void *ctx, const pvg_backend_quarantined *qr)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "chunk_quarantine");
    rh_bytes(&r, qr->pseudonym, qr->pseudonym ? 16 : 0);
    rh_i64(&r, qr->expires_day);
    rh_i64(&r, qr->n_events);
    rh_bytes(&r, qr->cid, qr->cid_len);
    rh_bytes(&r, qr->sealed, qr->sealed_len);
    rh_str(&r, qr->reason);
    rh_i64(&r, qr->quarantined_at);
    DR_ADD(d, quarantine, qr->pseudonym, &r);
    d->n_quarantine++;
    return 0;
}

static int dg_meta(void *ctx, const char *key, const char *value)
{
    digest_run *d = ctx;
    if (meta_is_local(key)) return 0;
    rowh r;
    rh_init(&r, "meta");
    rh_str(&r, key);
    rh_str(&r, value);
    DR_ADD(d, tables, NULL, &r);
    d->n_meta++;
    return 0;
}

static int dg_ingest(void *ctx, const pvg_backend_ingest_run *run)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "ingest_runs");
    rh_i64(&r, run->started_at);
    rh_i64(&r, run->finished_at);
    rh_str(&r, run->format);
    rh_str(&r, run->source);
    rh_i64(&r, run->read);
    rh_i64(&r, run->accepted);
    rh_i64(&r, run->rejected);
    rh_i64(&r, run->stored);
    rh_i64(&r, run->duplicates);
    rh_i64(&r, run->anonymous);
    DR_ADD(d, tables, NULL, &r);
    d->n_ingest++;
    return 0;
}

static int dg_cached(void *ctx, const pvg_backend_cached *rc)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "dp_release_cache");
    rh_str(&r, rc->kind);
    rh_bytes(&r, rc->fingerprint, rc->fp_len);
    rh_str(&r, rc->dataset);
    rh_str(&r, rc->params);
    rh_str(&r, rc->mechanism);
    rh_i64(&r, rc->release_id);
    rh_str(&r, rc->body);
    rh_i64(&r, rc->created_at);
    DR_ADD(d, tables, NULL, &r);
    d->n_cached++;
    return 0;
}

static int dg_anon(void *ctx, const unsigned char source[16], int64_t item_id, int type,
                   long long count, double qty)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "anon_counts");
    rh_bytes(&r, source, 16);
    rh_i64(&r, item_id);
    rh_i64(&r, type);
    rh_i64(&r, count);
    rh_f64(&r, qty);
    DR_ADD(d, tables, NULL, &r);
    d->n_anon++;
    return 0;
}

static int dg_cred(void *ctx, const pvg_backend_cred *cr)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "auth_keys");
    rh_str(&r, cr->key_id);
    rh_str(&r, cr->kind);
    rh_str(&r, cr->role);
    rh_str(&r, cr->label ? cr->label : "");
    rh_bytes(&r, cr->has_pseudonym ? cr->pseudonym : NULL, cr->has_pseudonym ? 16 : 0);
    rh_bytes(&r, cr->secret_hash, cr->secret_hash_len);
    rh_f64(&r, cr->rate_per_s);
    rh_i64(&r, cr->created_at);
    rh_i64(&r, cr->expires_at);
    rh_i64(&r, cr->revoked);
    DR_ADD(d, tables, NULL, &r);
    d->n_creds++;
    return 0;
}

static int dg_ledger(void *ctx, const pvg_backend_ledger_row *row)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "ledger");
    rh_i64(&r, row->kind);
    rh_str(&r, row->name);
    rh_f64(&r, row->epsilon);
    rh_f64(&r, row->delta);
    rh_i64(&r, row->releases);
    DR_ADD(d, tables, NULL, &r);
    d->n_ledger++;
    return 0;
}

static int dg_release(void *ctx, const pvg_ledger_release *rel)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "dp_release");
    rh_i64(&r, rel->id);
    rh_str(&r, rel->dataset);
    rh_str(&r, rel->what);
    rh_str(&r, rel->mechanism);
    rh_f64(&r, rel->epsilon);
    rh_f64(&r, rel->delta);
    rh_i64(&r, rel->created_at);
    DR_ADD(d, tables, NULL, &r);
    d->n_releases++;
    return 0;
}

static int dg_suppressed(void *ctx, const unsigned char p[16])
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "suppressed");
    rh_bytes(&r, p, 16);
    DR_ADD(d, tables, NULL, &r);
    d->n_suppressed++;
    return 0;
}

static int dg_item(void *ctx, const pvg_item *it)
{
    digest_run *d = ctx;
    char *window = NULL;
    pvg_status st = d->be->ops->item_prices_get(d->be, it->id, &window, d->err);
    if (st != PVG_OK) {
        d->st = st;
        return 1;
    }
    rowh r;
    rh_init(&r, "items");
    rh_i64(&r, it->id);
    rh_str(&r, it->ext_id);
    rh_str(&r, it->title);
    rh_str(&r, it->category);
    rh_f64(&r, it->price);
    rh_f64(&r, it->last_price);
    rh_str(&r, it->attrs_json);
    rh_i64(&r, it->catalog);
    rh_str(&r, window);
    free(window);
    DR_ADD(d, tables, NULL, &r);
    d->n_items++;
    return 0;
}

static int dg_catalog_text(void *ctx, const char *ext_id, const char *title,
                           const char *description, int64_t at)
{
    digest_run *d = ctx;
    rowh r;
    rh_init(&r, "catalog_text");
    rh_str(&r, ext_id);
    rh_str(&r, title);
    rh_str(&r, description);
    rh_i64(&r, at);
    DR_ADD(d, tables, NULL, &r);
    d->n_catalog_text++;
    return 0;
}

/* A user's digest: BLAKE2b over consent, creation time, the wrapped key,
 * the sorted hashes of their chunks, their conversations and their
 * quarantined rows (row ids and user row ids excluded: they differ between
 * backends). */
static int digest_user(void *ctx, const pvg_backend_user *u)
{
    digest_run *d = ctx;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        void *p = realloc(d->out, cap * sizeof *d->out);
        if (!p) {
            d->st = pvg_error_set(d->err, PVG_ERR_NOMEM, "out of memory");
            return 1;
        }
        d->out = p;
        d->cap = cap;
    }
    d->hn = 0;
    pvg_status st = d->be->ops->chunks_foreach_user(d->be, u->id, digest_chunk, d, d->err);
    if (st == PVG_ERR_ABORTED) st = d->st;
    if ((d->st = st) != PVG_OK) return 1;
    if (d->hn) qsort(d->hashes, d->hn, 32, cmp32);
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    unsigned char head[24] = {0};
    head[0] = (unsigned char)u->consent_personalization;
    head[1] = (unsigned char)u->consent_analytics;
    for (int i = 0; i < 8; i++)
        head[8 + i] = (unsigned char)((uint64_t)u->created_at >> (8 * i));
    crypto_generichash_update(&h, head, sizeof head);
    pvg_backend_key k;
    st = d->be->ops->key_get(d->be, u->pseudonym, &k, d->err);
    if (st == PVG_OK) {
        crypto_generichash_update(&h, k.kid, k.kid_len);
        crypto_generichash_update(&h, k.wrapped, k.wrapped_len);
        sodium_memzero(&k, sizeof k);
    } else if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(d->err);
    } else {
        d->st = st;
        return 1;
    }
    if (d->hn) crypto_generichash_update(&h, d->hashes, 32 * d->hn);
    size_t nc = 0, nq = 0;
    const unsigned char *conv = rs_range(&d->convs, u->pseudonym, &nc);
    const unsigned char *quar = rs_range(&d->quarantine, u->pseudonym, &nq);
    unsigned char counts[16];
    for (int i = 0; i < 8; i++) {
        counts[i] = (unsigned char)((uint64_t)nc >> (8 * i));
        counts[8 + i] = (unsigned char)((uint64_t)nq >> (8 * i));
    }
    crypto_generichash_update(&h, counts, sizeof counts);
    if (nc) crypto_generichash_update(&h, conv, nc * RS_ENTRY);
    if (nq) crypto_generichash_update(&h, quar, nq * RS_ENTRY);
    memcpy(d->out[d->n], u->pseudonym, 16);
    crypto_generichash_final(&h, d->out[d->n] + 16, 32);
    d->n++;
    return 0;
}

static void digests_free(digest_run *d)
{
    free(d->out);
    free(d->hashes);
    free(d->convs.e);
    free(d->quarantine.e);
    free(d->tables.e);
    memset(d, 0, sizeof *d);
}

static pvg_status digests(pvg_backend *be, digest_run *d, pvg_error *err)
{
    memset(d, 0, sizeof *d);
    d->be = be;
    d->err = err;
    pvg_status st = PVG_OK;
#define DSTEP(call)                                                                                \
    do {                                                                                           \
        if (st == PVG_OK) {                                                                        \
            st = (call);                                                                           \
            if (st == PVG_ERR_ABORTED) st = d->st;                                                 \
        }                                                                                          \
    } while (0)
    DSTEP(be->ops->convs_scan(be, dg_conv, d, err));
    DSTEP(be->ops->quarantine_foreach(be, dg_quarantined, d, err));
    if (st == PVG_OK) {
        rs_sort(&d->convs);
        rs_sort(&d->quarantine);
    }
    DSTEP(be->ops->users_foreach(be, NULL, digest_user, d, err));
    DSTEP(be->ops->meta_foreach(be, dg_meta, d, err));
    DSTEP(be->ops->ingest_runs_foreach(be, dg_ingest, d, err));
    DSTEP(be->ops->release_cache_foreach(be, dg_cached, d, err));
    DSTEP(be->ops->anon_foreach_source(be, dg_anon, d, err));
    DSTEP(be->ops->creds_foreach(be, dg_cred, d, err));
    DSTEP(be->ops->ledger_read(be, dg_ledger, d, err));
    DSTEP(be->ops->releases_foreach(be, NULL, dg_release, d, err));
    DSTEP(be->ops->suppress_foreach(be, dg_suppressed, d, err));
    DSTEP(be->ops->items_foreach(be, dg_item, d, err));
    DSTEP(be->ops->catalog_text_foreach(be, dg_catalog_text, d, err));
#undef DSTEP
    free(d->hashes);
    d->hashes = NULL;
    if (st == PVG_OK && d->n) qsort(d->out, d->n, sizeof *d->out, cmp_entry);
    return st;
}

static pvg_status verify(copier *c, pvg_error *err)
{
    pvg_store_counts ca, cb;
    pvg_status st = c->a->ops->counts(c->a, &ca, err);
    if (st == PVG_OK) st = c->b->ops->counts(c->b, &cb, err);
    if (st != PVG_OK) return st;
    if (c->r->chunks_left == 0 &&
        (ca.users != cb.users || ca.items != cb.items || ca.events != cb.events ||
         ca.wrapped_keys != cb.wrapped_keys || ca.anonymous_rows != cb.anonymous_rows))
        return pvg_error_set(err, PVG_ERR_CORRUPT,
                             "copy verification: counts differ (users %lld/%lld, items %lld/%lld, "
                             "events %lld/%lld, keys %lld/%lld, anonymous %lld/%lld)",
                             ca.users, cb.users, ca.items, cb.items, ca.events, cb.events,
                             ca.wrapped_keys, cb.wrapped_keys, ca.anonymous_rows,
                             cb.anonymous_rows);
    long long qa = 0, qb = 0;
    st = c->a->ops->quarantine_count(c->a, &qa, err);
    if (st == PVG_OK) st = c->b->ops->quarantine_count(c->b, &qb, err);
    if (st == PVG_OK && qa != qb)
        st = pvg_error_set(err, PVG_ERR_CORRUPT,
                           "copy verification: %lld quarantined rows, %lld copied", qa, qb);
    if (st != PVG_OK) return st;
    c->r->events = cb.events;
    digest_run da, db;
    st = digests(c->a, &da, err);
    memset(&db, 0, sizeof db);
    if (st == PVG_OK) st = digests(c->b, &db, err);
    if (st == PVG_OK) {
        if (da.n != db.n)
            st = pvg_error_set(err, PVG_ERR_CORRUPT, "copy verification: %zu users, %zu copied",
                               da.n, db.n);
        for (size_t i = 0; st == PVG_OK && i < da.n; i++)
            if (memcmp(da.out[i], db.out[i], sizeof da.out[i]) != 0)
                st = pvg_error_set(err, PVG_ERR_CORRUPT,
                                   "copy verification: user %zu of %zu (by pseudonym) differs",
                                   i + 1, da.n);
        if (st == PVG_OK) c->r->digests = (long long)da.n;
    }
    /* every other table, counted and digested by table */
    static const char *names[] = {"conversations",    "quarantine",    "meta",
                                  "ingest log",       "release cache", "anonymous counts",
                                  "credentials",      "ledger",        "ledger releases",
                                  "suppression list", "catalog",       "declared catalogue"};
    long long *na[] = {&da.n_convs,    &da.n_quarantine, &da.n_meta,  &da.n_ingest,
                       &da.n_cached,   &da.n_anon,       &da.n_creds, &da.n_ledger,
                       &da.n_releases, &da.n_suppressed, &da.n_items, &da.n_catalog_text};
    long long *nb[] = {&db.n_convs,    &db.n_quarantine, &db.n_meta,  &db.n_ingest,
                       &db.n_cached,   &db.n_anon,       &db.n_creds, &db.n_ledger,
                       &db.n_releases, &db.n_suppressed, &db.n_items, &db.n_catalog_text};
    for (size_t i = 0; st == PVG_OK && i < sizeof names / sizeof *names; i++)
        if (*na[i] != *nb[i])
            st =
                pvg_error_set(err, PVG_ERR_CORRUPT, "copy verification: %s: %lld rows, %lld copied",
                              names[i], *na[i], *nb[i]);
    if (st == PVG_OK) {
        unsigned char ha[32], hb[32];
        rowset *sa[] = {&da.convs, &da.quarantine, &da.tables};
        rowset *sb[] = {&db.convs, &db.quarantine, &db.tables};
#define OTHER_TABLES "the catalog, counts, credentials, ledger, meta, ingest log or release cache"
        static const char *what[] = {"conversations", "quarantine", OTHER_TABLES};
#undef OTHER_TABLES
        for (int i = 0; st == PVG_OK && i < 3; i++) {
            rs_digest(sa[i], ha);
            rs_digest(sb[i], hb);
            if (memcmp(ha, hb, 32) != 0)
                st = pvg_error_set(err, PVG_ERR_CORRUPT, "copy verification: %s differ", what[i]);
        }
    }
    digests_free(&da);
    digests_free(&db);
    /* the audit heads, too */
    int64_t sa = 0, sb = 0;
    unsigned char ha[32], hb[32];
    int fa = 0, fb = 0;
    if (st == PVG_OK) st = c->a->ops->audit_head(c->a, &sa, ha, &fa, err);
    if (st == PVG_OK) st = c->b->ops->audit_head(c->b, &sb, hb, &fb, err);
    if (st == PVG_OK && (fa != fb || sa != sb || memcmp(ha, hb, 32) != 0))
        st = pvg_error_set(err, PVG_ERR_CORRUPT, "copy verification: the audit heads differ");
    return st;
}

pvg_status pvg_store_copy(const char *from_dir, const char *to_dir, const char *to_url,
                          pvg_store_copy_report *r, pvg_error *err)
{
    memset(r, 0, sizeof *r);
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "the system random generator is unavailable");
    if (!pvg_backend_exists(from_dir))
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, from_dir, 0, 0, -1,
                                "no privguide store here");
    if (pvg_backend_exists(to_dir))
        return pvg_error_set_at(err, PVG_ERR_EXISTS, to_dir, 0, 0, -1,
                                "a store exists here already");
    char sid[128] = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/store.id", from_dir);
    FILE *f = NULL;
    st = pvg_datafile_fopen(path, "r", &f, err);
    if (st != PVG_OK && st != PVG_ERR_NOT_FOUND) return st;
    if (!f || !fgets(sid, sizeof sid, f)) {
        if (f) fclose(f);
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, path, 0, 0, -1,
                                "no store id (an old data dir: open it once with privguide first)");
    }
    fclose(f);
    sid[strcspn(sid, "\r\n")] = '\0';
    st = pvg_datadir_make(to_dir, 1, NULL, err); /* 0700 */
    if (st != PVG_OK) return st;
    copier c = {0};
    c.r = r;
    c.err = err;
    st = copy_file(from_dir, to_dir, "store.id", err);
    if (st == PVG_OK) st = copy_file(from_dir, to_dir, "policy.json", err);
    if (st == PVG_OK) st = pvg_backend_create(to_dir, to_url, sid, err);
    if (st == PVG_OK) st = pvg_backend_open(from_dir, &c.a, err);
    if (st == PVG_OK) st = pvg_backend_open(to_dir, &c.b, err);
    if (st != PVG_OK) goto done;
    r->to_backend = c.b->ops->name;
    unsigned char kid[8];
    int found = 0;
    st = c.a->ops->wrap_kid_get(c.a, kid, &found, err);
    if (st == PVG_OK && found) st = c.b->ops->wrap_kid_set(c.b, kid, err);
    /* the data, in one transaction of the target */
    int64_t gen;
    if (st == PVG_OK) st = c.b->ops->txn_begin(c.b, &gen, err);
    if (st != PVG_OK) goto done;
#define STEP(call)                                                                                 \
    do {                                                                                           \
        if (st == PVG_OK) {                                                                        \
            st = (call);                                                                           \
            if (st == PVG_ERR_ABORTED) st = c.st;                                                  \
        }                                                                                          \
    } while (0)
    STEP(c.a->ops->items_foreach(c.a, copy_item, &c, err));
    STEP(c.a->ops->catalog_text_foreach(c.a, copy_catalog_text, &c, err));
    STEP(c.a->ops->users_foreach(c.a, NULL, copy_user, &c, err));
    STEP(c.a->ops->chunks_scan(c.a, copy_chunk, &c, err));
    STEP(c.a->ops->anon_foreach_source(c.a, copy_anon, &c, err));
    STEP(c.a->ops->suppress_foreach(c.a, copy_suppressed, &c, err));
    STEP(c.a->ops->quarantine_foreach(c.a, copy_quarantined, &c, err));
    STEP(c.a->ops->convs_scan(c.a, copy_conv, &c, err));
    STEP(c.a->ops->ingest_runs_foreach(c.a, copy_ingest_run, &c, err));
    STEP(c.a->ops->release_cache_foreach(c.a, copy_cached, &c, err));
    STEP(c.a->ops->meta_foreach(c.a, copy_meta, &c, err));
    /* the target rebuilds its duplicate index (from the copied chunks) on
     * its first open with the keys */
    STEP(c.b->ops->meta_set(c.b, "dup_index", "0", err));
    if (st == PVG_OK)
        st = c.b->ops->txn_commit(c.b, &gen, err);
    else
        c.b->ops->txn_rollback(c.b);
    STEP(c.a->ops->creds_foreach(c.a, copy_cred, &c, err));
    STEP(c.a->ops->ledger_read(c.a, copy_limit, &c, err));
    STEP(c.a->ops->releases_foreach(c.a, NULL, copy_release, &c, err));
    STEP(c.a->ops->audit_foreach(c.a, 0, -1, copy_audit, &c, err));
#undef STEP
    if (st == PVG_OK) st = verify(&c, err);
done:
    if (c.a) c.a->ops->close(c.a);
    if (c.b) c.b->ops->close(c.b);
    free(c.users.from);
    free(c.users.to);
    return st;
}
