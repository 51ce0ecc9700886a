/*
 * audit.c - the MAC-chained audit log (include/privguide/audit.h): kept by
 * the store's backend (audit_append is atomic under the write lock; this
 * file computes the chain under the key from the key file), and the
 * verifier that names edited, removed, reordered, unkeyed and truncated
 * entries.
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

/* key NULL: hash = BLAKE2b-256("pvg-audit-v1" || prev || ts LE || fields)
 * (logs of old versions); else mac = BLAKE2b-256 keyed with key over
 * "pvg-audit-v2" || prev || ts LE || fields. See audit.h. */
static void entry_mac(const unsigned char *key, const unsigned char prev[PVG_AUDIT_HASH_BYTES],
                      int64_t ts, const char *actor, const char *action, const char *subject,
                      const char *detail, unsigned char out[PVG_AUDIT_HASH_BYTES])
{
    const char *domain = key ? "pvg-audit-v2" : "pvg-audit-v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, key ? 32 : 0, PVG_AUDIT_HASH_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)domain, strlen(domain));
    crypto_generichash_update(&st, prev, PVG_AUDIT_HASH_BYTES);
    unsigned char tsb[8];
    uint64_t u = (uint64_t)ts;
    for (int i = 0; i < 8; i++)
        tsb[i] = (unsigned char)(u >> (8 * i));
    crypto_generichash_update(&st, tsb, 8);
    put_field(&st, actor);
    put_field(&st, action);
    put_field(&st, subject);
    put_field(&st, detail);
    crypto_generichash_final(&st, out, PVG_AUDIT_HASH_BYTES);
    sodium_memzero(&st, sizeof st);
}

static pvg_status check_record(const pvg_audit_record *r, size_t i, pvg_error *err)
{
    if (!r->actor || !r->actor[0] || !r->action || !r->action[0])
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "audit record %zu: actor and action are required", i);
    const char *f[4] = {r->actor, r->action, r->subject, r->detail};
    static const char *names[4] = {"actor", "action", "subject", "detail"};
    for (int k = 0; k < 4; k++)
        if (f[k] && strlen(f[k]) > PVG_AUDIT_FIELD_MAX)
            return pvg_error_set(err, PVG_ERR_INVALID, "audit record %zu: %s longer than %d bytes",
                                 i, names[k], PVG_AUDIT_FIELD_MAX);
    return PVG_OK;
}

static void chain_one(void *ctx, const unsigned char prev[PVG_BACKEND_HASH_BYTES], int64_t ts,
                      const pvg_audit_record *r, unsigned char out[PVG_BACKEND_HASH_BYTES])
{
    entry_mac(ctx, prev, ts, r->actor, r->action, r->subject ? r->subject : "",
              r->detail ? r->detail : "", out);
}

static pvg_status append(pvg_store *s, const pvg_audit_record *recs, size_t n, int64_t *last_seq,
                         pvg_error *err)
{
    if (!s || (!recs && n))
        return pvg_error_set(err, PVG_ERR_INVALID, "audit append: NULL argument");
    for (size_t i = 0; i < n; i++) {
        pvg_status st = check_record(&recs[i], i, err);
        if (st != PVG_OK) return st;
    }
    if (n == 0) return PVG_OK;
    pvg_backend *b = pvg_store_backend(s);
    return b->ops->audit_append(b, recs, n, pvg_store_now(s), chain_one,
                                (void *)pvg_store_audit_key(s), last_seq, err);
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

pvg_status pvg_audit_foreach_subject(pvg_store *s, const char *subject,
                                     int (*fn)(void *ctx, const pvg_audit_entry *e), void *ctx,
                                     pvg_error *err)
{
    if (!s || !subject || !fn)
        return pvg_error_set(err, PVG_ERR_INVALID, "audit foreach subject: NULL argument");
    pvg_backend *b = pvg_store_backend(s);
    return b->ops->audit_of_subject(b, subject, fn, ctx, err);
}

/* ---- verification --------------------------------------------------- */

typedef struct vrow {
    int64_t seq, ts;
    unsigned char prev[PVG_AUDIT_HASH_BYTES];
    unsigned char hash[PVG_AUDIT_HASH_BYTES];
    int keyed_ok;   /* the MAC verifies under the store's key */
    int unkeyed_ok; /* the unkeyed hash of old versions matches */
} vrow;

typedef struct vidx {
    unsigned char hash[PVG_AUDIT_HASH_BYTES];
    size_t row;
} vidx;

typedef struct vload {
    vrow *rows;
    size_t n, cap;
    int nomem;
    const unsigned char *key;
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
    r->ts = e->ts;
    memcpy(r->prev, e->prev_hash, PVG_AUDIT_HASH_BYTES);
    memcpy(r->hash, e->hash, PVG_AUDIT_HASH_BYTES);
    unsigned char h[PVG_AUDIT_HASH_BYTES];
    entry_mac(L->key, e->prev_hash, e->ts, e->actor, e->action, e->subject, e->detail, h);
    r->keyed_ok = sodium_memcmp(h, e->hash, PVG_AUDIT_HASH_BYTES) == 0;
    r->unkeyed_ok = 0;
    if (!r->keyed_ok) {
        entry_mac(NULL, e->prev_hash, e->ts, e->actor, e->action, e->subject, e->detail, h);
        r->unkeyed_ok = sodium_memcmp(h, e->hash, PVG_AUDIT_HASH_BYTES) == 0;
    }
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

/* Parses an anchor "SEQ:HEX" or "HEX"; *seq 0 when absent. */
static pvg_status parse_anchor(const char *a, int64_t *seq, unsigned char mac[PVG_AUDIT_HASH_BYTES],
                               pvg_error *err)
{
    *seq = 0;
    const char *hex = a, *colon = strchr(a, ':');
    if (colon) {
        char *end = NULL;
        long long v = strtoll(a, &end, 10);
        if (end != colon || v <= 0)
            return pvg_error_set(
                err, PVG_ERR_INVALID,
                "anchor: want SEQ:MAC (as `audit head` prints) or the MAC, got \"%.80s\"", a);
        *seq = v;
        hex = colon + 1;
    }
    size_t bin_len = 0;
    if (strlen(hex) != 2 * PVG_AUDIT_HASH_BYTES ||
        sodium_hex2bin(mac, PVG_AUDIT_HASH_BYTES, hex, strlen(hex), NULL, &bin_len, NULL) != 0 ||
        bin_len != PVG_AUDIT_HASH_BYTES)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "anchor: want %d hex digits for the MAC, got \"%.80s\"",
                             2 * PVG_AUDIT_HASH_BYTES, a);
    return PVG_OK;
}

static const vrow *row_of_seq(const vload *L, int64_t seq)
{
    size_t lo = 0, hi = L->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (L->rows[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < L->n && L->rows[lo].seq == seq ? &L->rows[lo] : NULL;
}

pvg_status pvg_audit_verify(pvg_store *s, const char *expected_head_hex, pvg_audit_report *rep,
                            pvg_error *err)
{
    if (!s || !rep) return pvg_error_set(err, PVG_ERR_INVALID, "audit verify: NULL argument");
    memset(rep, 0, sizeof *rep);
    unsigned char expected[PVG_AUDIT_HASH_BYTES];
    int64_t anchor_seq = 0;
    if (expected_head_hex) {
        pvg_status pst = parse_anchor(expected_head_hex, &anchor_seq, expected, err);
        if (pst != PVG_OK) return pst;
    }
    unsigned char unkeyed_hash[PVG_AUDIT_HASH_BYTES];
    int64_t unkeyed_upto = pvg_store_audit_unkeyed(s, unkeyed_hash);
    rep->unkeyed_upto = unkeyed_upto;
    vload L = {0};
    L.key = pvg_store_audit_key(s);
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
        if (r->seq <= unkeyed_upto && r->unkeyed_ok)
            rep->unkeyed++;
        else if (r->unkeyed_ok)
            add_problem(rep, PVG_AUDIT_UNKEYED, r->seq, 0,
                        "entry %lld has no valid MAC, only an unkeyed hash: it was written or "
                        "re-chained without the key",
                        (long long)r->seq);
        else if (!r->keyed_ok)
            add_problem(rep, PVG_AUDIT_EDITED, r->seq, 0,
                        "entry %lld was edited (or re-chained without the key): its content does "
                        "not match its MAC",
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
    if (unkeyed_upto > 0) {
        /* The unkeyed part ends where the key file says; its last hash is
         * recorded there, so that part cannot be rewritten either. */
        const vrow *r = row_of_seq(&L, unkeyed_upto);
        if (!r)
            add_problem(rep, PVG_AUDIT_REMOVED, unkeyed_upto, 0,
                        "entry %lld, the last unkeyed entry recorded in the key file, is missing",
                        (long long)unkeyed_upto);
        else if (sodium_memcmp(r->hash, unkeyed_hash, PVG_AUDIT_HASH_BYTES) != 0)
            add_problem(rep, PVG_AUDIT_EDITED, unkeyed_upto, 0,
                        "entry %lld differs from the unkeyed head recorded in the key file: the "
                        "older part of the log was rewritten",
                        (long long)unkeyed_upto);
    }
    if (expected_head_hex) {
        const vidx *f = L.n ? find_hash(ix, L.n, expected) : NULL;
        if (anchor_seq > 0 && anchor_seq > rep->last_seq)
            add_problem(rep, PVG_AUDIT_HEAD_MISMATCH, rep->last_seq, anchor_seq,
                        "the log ends at entry %lld but the anchor is entry %lld: entries were "
                        "removed from the end",
                        (long long)rep->last_seq, (long long)anchor_seq);
        else if (!f || (anchor_seq > 0 && L.rows[f->row].seq != anchor_seq))
            add_problem(rep, PVG_AUDIT_HEAD_MISMATCH, anchor_seq ? anchor_seq : rep->last_seq, 0,
                        "the anchored head %.24s... is not in the log%s: entries after it were "
                        "removed, or it was edited",
                        expected_head_hex, anchor_seq ? " at its sequence number" : "");
    }
    free(ix);
    free(L.rows);
    if (rep->problems_total)
        return pvg_error_set(err, PVG_ERR_CORRUPT, "audit log: %lld problem(s), first: %s",
                             rep->problems_total, rep->problems[0].text);
    return PVG_OK;
}

pvg_status pvg_audit_head(pvg_store *s, pvg_audit_head_info *out, pvg_error *err)
{
    if (!s || !out) return pvg_error_set(err, PVG_ERR_INVALID, "audit head: NULL argument");
    memset(out, 0, sizeof *out);
    pvg_backend *b = pvg_store_backend(s);
    unsigned char mac[PVG_AUDIT_HASH_BYTES];
    int found = 0;
    int64_t seq = 0;
    pvg_status st = b->ops->audit_head(b, &seq, mac, &found, err);
    if (st != PVG_OK || !found) return st;
    vload L = {0};
    L.key = pvg_store_audit_key(s);
    st = b->ops->audit_foreach(b, seq, 1, load_row, &L, err);
    if (st == PVG_OK && L.nomem)
        st = pvg_error_set(err, PVG_ERR_NOMEM, "audit head: out of memory");
    if (st == PVG_OK && (L.n != 1 || L.rows[0].seq != seq))
        st = pvg_error_set(err, PVG_ERR_IO, "audit head: entry %lld vanished while reading it",
                           (long long)seq);
    if (st == PVG_OK) {
        out->seq = seq;
        out->ts = L.rows[0].ts;
        out->keyed = L.rows[0].keyed_ok;
        sodium_bin2hex(out->mac_hex, sizeof out->mac_hex, mac, sizeof mac);
        snprintf(out->anchor, sizeof out->anchor, "%lld:%s", (long long)seq, out->mac_hex);
    }
    free(L.rows);
    return st;
}
