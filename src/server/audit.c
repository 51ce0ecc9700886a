/*
 * audit.c - the hash-chained audit log (include/privguide/audit.h): kept by
 * the store's backend (audit_append is atomic under the write lock; this
 * file computes the chain), and the verifier that names edited, removed and
 * reordered entries.
 */
#include <privguide/audit.h>

#include "store/store_internal.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_field(crypto_generichash_state *st, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    unsigned char len[4] = {(unsigned char)(n & 0xff), (unsigned char)((n >> 8) & 0xff),
                            (unsigned char)((n >> 16) & 0xff), (unsigned char)((n >> 24) & 0xff)};
    crypto_generichash_update(st, len, 4);
    if (n) crypto_generichash_update(st, (const unsigned char *)v, n);
}

/* hash = BLAKE2b-256(domain || prev || ts LE || fields); see audit.h. */
static void entry_hash(const unsigned char prev[PVG_AUDIT_HASH_BYTES], int64_t ts, const char *actor,
                       const char *action, const char *subject, const char *detail,
                       unsigned char out[PVG_AUDIT_HASH_BYTES])
{
    static const char domain[] = "pvg-audit-v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, PVG_AUDIT_HASH_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)domain, sizeof domain - 1);
    crypto_generichash_update(&st, prev, PVG_AUDIT_HASH_BYTES);
    unsigned char tsb[8];
    uint64_t u = (uint64_t)ts;
    for (int i = 0; i < 8; i++) tsb[i] = (unsigned char)(u >> (8 * i));
    crypto_generichash_update(&st, tsb, 8);
    put_field(&st, actor);
    put_field(&st, action);
    put_field(&st, subject);
    put_field(&st, detail);
    crypto_generichash_final(&st, out, PVG_AUDIT_HASH_BYTES);
}

static pvg_status check_record(const pvg_audit_record *r, size_t i, pvg_error *err)
{
    if (!r->actor || !r->actor[0] || !r->action || !r->action[0])
        return pvg_error_set(err, PVG_ERR_INVALID, "audit record %zu: actor and action are required",
                             i);
    const char *f[4] = {r->actor, r->action, r->subject, r->detail};
    static const char *names[4] = {"actor", "action", "subject", "detail"};
    for (int k = 0; k < 4; k++)
        if (f[k] && strlen(f[k]) > PVG_AUDIT_FIELD_MAX)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "audit record %zu: %s longer than %d bytes", i, names[k],
                                 PVG_AUDIT_FIELD_MAX);
    return PVG_OK;
}

static void chain_one(void *ctx, const unsigned char prev[PVG_BACKEND_HASH_BYTES], int64_t ts,
                      const pvg_audit_record *r, unsigned char out[PVG_BACKEND_HASH_BYTES])
{
    (void)ctx;
    entry_hash(prev, ts, r->actor, r->action, r->subject ? r->subject : "", r->detail ? r->detail : "",
               out);
}

static pvg_status append(pvg_store *s, const pvg_audit_record *recs, size_t n, int64_t *last_seq,
                         pvg_error *err)
{
    if (!s || (!recs && n)) return pvg_error_set(err, PVG_ERR_INVALID, "audit append: NULL argument");
    for (size_t i = 0; i < n; i++) {
        pvg_status st = check_record(&recs[i], i, err);
        if (st != PVG_OK) return st;
    }
    if (n == 0) return PVG_OK;
    pvg_backend *b = pvg_store_backend(s);
    return b->ops->audit_append(b, recs, n, pvg_store_now(s), chain_one, NULL, last_seq, err);
}

pvg_status pvg_audit_append_many(pvg_store *s, const pvg_audit_record *recs, size_t n,
                                 pvg_error *err)
{
    return append(s, recs, n, NULL, err);
}

pvg_status pvg_audit_append(pvg_store *s, const pvg_audit_record *rec, int64_t *seq_out,
                            pvg_error *err)
{
    if (s && !rec) return pvg_error_set(err, PVG_ERR_INVALID, "audit append: NULL record");
    return append(s, rec, rec ? 1 : 0, seq_out, err);
}

void pvg_audit_subject_of_user(const pvg_store *s, const char *ext_user,
                               char out[2 * PVG_PSEUDONYM_BYTES + 1])
{
    unsigned char p[PVG_PSEUDONYM_BYTES];
    pvg_store_pseudonym(s, ext_user, p);
    sodium_bin2hex(out, 2 * PVG_PSEUDONYM_BYTES + 1, p, sizeof p);
}

pvg_status pvg_audit_foreach(pvg_store *s, int64_t from_seq, long long limit,
                             int (*fn)(void *ctx, const pvg_audit_entry *e), void *ctx,
                             pvg_error *err)
{
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "audit foreach: NULL argument");
    pvg_backend *b = pvg_store_backend(s);
    return b->ops->audit_foreach(b, from_seq, limit, fn, ctx, err);
}

/* ---- verification --------------------------------------------------- */

typedef struct vrow {
    int64_t seq;
    unsigned char prev[PVG_AUDIT_HASH_BYTES];
    unsigned char hash[PVG_AUDIT_HASH_BYTES];
    int content_ok;
} vrow;

typedef struct vidx {
    unsigned char hash[PVG_AUDIT_HASH_BYTES];
    size_t row;
} vidx;

typedef struct vload {
    vrow *rows;
    size_t n, cap;
    int nomem;
} vload;

static int load_row(void *ctx, const pvg_audit_entry *e)
{
    vload *L = ctx;
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 1024;
        vrow *r = realloc(L->rows, cap * sizeof *r);
        if (!r) {
            L->nomem = 1;
            return 1;
        }
        L->rows = r;
        L->cap = cap;
    }
    vrow *r = &L->rows[L->n++];
    r->seq = e->seq;
    memcpy(r->prev, e->prev_hash, PVG_AUDIT_HASH_BYTES);
    memcpy(r->hash, e->hash, PVG_AUDIT_HASH_BYTES);
    unsigned char h[PVG_AUDIT_HASH_BYTES];
    entry_hash(e->prev_hash, e->ts, e->actor, e->action, e->subject, e->detail, h);
    r->content_ok = sodium_memcmp(h, e->hash, PVG_AUDIT_HASH_BYTES) == 0;
    return 0;
}

static int vidx_cmp(const void *a, const void *b)
{
    return memcmp(((const vidx *)a)->hash, ((const vidx *)b)->hash, PVG_AUDIT_HASH_BYTES);
}

static const vidx *find_hash(const vidx *ix, size_t n, const unsigned char *h)
{
    vidx key;
    memcpy(key.hash, h, PVG_AUDIT_HASH_BYTES);
    return bsearch(&key, ix, n, sizeof *ix, vidx_cmp);
}

static void add_problem(pvg_audit_report *rep, pvg_audit_problem_kind kind, int64_t seq,
                        int64_t other, const char *fmt, ...) PVG_PRINTF(5, 6);

static void add_problem(pvg_audit_report *rep, pvg_audit_problem_kind kind, int64_t seq,
                        int64_t other, const char *fmt, ...)
{
    rep->problems_total++;
    if (rep->n_problems >= PVG_AUDIT_MAX_PROBLEMS) return;
    pvg_audit_problem *p = &rep->problems[rep->n_problems++];
    p->kind = kind;
    p->seq = seq;
    p->other_seq = other;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->text, sizeof p->text, fmt, ap);
    va_end(ap);
}

pvg_status pvg_audit_verify(pvg_store *s, const char *expected_head_hex, pvg_audit_report *rep,
                            pvg_error *err)
{
    if (!s || !rep) return pvg_error_set(err, PVG_ERR_INVALID, "audit verify: NULL argument");
    memset(rep, 0, sizeof *rep);
    unsigned char expected[PVG_AUDIT_HASH_BYTES];
    if (expected_head_hex) {
        size_t bin_len = 0;
        if (strlen(expected_head_hex) != 2 * PVG_AUDIT_HASH_BYTES ||
            sodium_hex2bin(expected, sizeof expected, expected_head_hex,
                           strlen(expected_head_hex), NULL, &bin_len, NULL) != 0 ||
            bin_len != PVG_AUDIT_HASH_BYTES)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "expected head: want %d hex digits, got \"%.80s\"",
                                 2 * PVG_AUDIT_HASH_BYTES, expected_head_hex);
    }
    vload L = {0};
    pvg_status st = pvg_audit_foreach(s, 0, 0, load_row, &L, err);
    if (L.nomem) {
        free(L.rows);
        return pvg_error_set(err, PVG_ERR_NOMEM, "audit verify: out of memory");
    }
    if (st != PVG_OK) {
        free(L.rows);
        return st;
    }
    vidx *ix = NULL;
    if (L.n) {
        ix = malloc(L.n * sizeof *ix);
        if (!ix) {
            free(L.rows);
            return pvg_error_set(err, PVG_ERR_NOMEM, "audit verify: out of memory");
        }
    }
    for (size_t i = 0; i < L.n; i++) {
        memcpy(ix[i].hash, L.rows[i].hash, PVG_AUDIT_HASH_BYTES);
        ix[i].row = i;
    }
    if (L.n) qsort(ix, L.n, sizeof *ix, vidx_cmp);

    static const unsigned char zero[PVG_AUDIT_HASH_BYTES] = {0};
    rep->entries = (long long)L.n;
    for (size_t i = 0; i < L.n; i++) {
        const vrow *r = &L.rows[i];
        if (!r->content_ok)
            add_problem(rep, PVG_AUDIT_EDITED, r->seq, 0,
                        "entry %lld was edited: its content does not match its hash",
                        (long long)r->seq);
        const unsigned char *want = i == 0 ? zero : L.rows[i - 1].hash;
        if (memcmp(r->prev, want, PVG_AUDIT_HASH_BYTES) == 0) continue;
        int64_t before = i ? L.rows[i - 1].seq : 0;
        if (memcmp(r->prev, zero, PVG_AUDIT_HASH_BYTES) == 0) {
            add_problem(rep, PVG_AUDIT_REORDERED, r->seq, before,
                        "entry %lld is the first entry of the chain but comes after entry %lld: "
                        "entries were reordered",
                        (long long)r->seq, (long long)before);
            continue;
        }
        const vidx *f = find_hash(ix, L.n, r->prev);
        if (f) {
            add_problem(rep, PVG_AUDIT_REORDERED, r->seq, L.rows[f->row].seq,
                        "entry %lld was reordered: it should follow entry %lld, not %s%lld",
                        (long long)r->seq, (long long)L.rows[f->row].seq,
                        i ? "entry " : "the start of the log", i ? (long long)before : 0LL);
        } else if (i == 0) {
            add_problem(rep, PVG_AUDIT_REMOVED, r->seq, 0,
                        "entries before entry %lld were removed (its predecessor is missing)",
                        (long long)r->seq);
        } else if (r->seq != before + 1) {
            add_problem(rep, PVG_AUDIT_REMOVED, r->seq, before,
                        "entries %lld..%lld were removed (between entry %lld and entry %lld)",
                        (long long)before + 1, (long long)r->seq - 1, (long long)before,
                        (long long)r->seq);
        } else {
            add_problem(rep, PVG_AUDIT_EDITED, before, r->seq,
                        "entry %lld was edited and rehashed, or entries were removed after it: "
                        "entry %lld links to a predecessor that is not in the log",
                        (long long)before, (long long)r->seq);
        }
    }
    if (L.n) {
        rep->first_seq = L.rows[0].seq;
        rep->last_seq = L.rows[L.n - 1].seq;
        sodium_bin2hex(rep->head_hex, sizeof rep->head_hex, L.rows[L.n - 1].hash,
                       PVG_AUDIT_HASH_BYTES);
    }
    if (expected_head_hex) {
        const vidx *f = L.n ? find_hash(ix, L.n, expected) : NULL;
        if (!f)
            add_problem(rep, PVG_AUDIT_HEAD_MISMATCH, rep->last_seq, 0,
                        "the expected head %.16s... is not in the log: entries after it were "
                        "removed or it was edited",
                        expected_head_hex);
    }
    free(ix);
    free(L.rows);
    if (rep->problems_total)
        return pvg_error_set(err, PVG_ERR_CORRUPT, "audit log: %lld problem(s), first: %s",
                             rep->problems_total, rep->problems[0].text);
    return PVG_OK;
}
