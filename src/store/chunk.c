/*
 * chunk.c - batching a user's new events into sealed chunks.
 *
 * Sealing each event alone would cost one AEAD and one wide B-tree insert
 * per event; a write transaction instead collects each user's new records
 * per expiry day and seals them as one chunk (one backend chunk row). Each
 * record carries its record id inside the seal, for duplicate detection
 * (ingest.c). Retention deletes whole chunks: all records of a chunk share
 * the expiry day.
 */
#include "store/store_priv.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_hash(int64_t user_id, int64_t day, size_t cap)
{
    uint64_t h = (uint64_t)user_id * 0x9E3779B97F4A7C15ull ^ (uint64_t)day * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static int grow_slots(pvg_chunk_set *cs)
{
    size_t ncap = cs->slot_cap ? cs->slot_cap * 2 : 1024;
    size_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < cs->n; i++) {
        size_t j = slot_hash(cs->v[i].user_id, cs->v[i].expires_day, ncap);
        while (ns[j])
            j = (j + 1) & (ncap - 1);
        ns[j] = i + 1;
    }
    free(cs->slots);
    cs->slots = ns;
    cs->slot_cap = ncap;
    return 0;
}

static void clear(pvg_chunk_set *cs, int release)
{
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->v[i].buf) sodium_memzero(cs->v[i].buf, cs->v[i].cap);
        free(cs->v[i].buf);
    }
    cs->n = 0;
    if (cs->slots) memset(cs->slots, 0, cs->slot_cap * sizeof *cs->slots);
    if (release) {
        free(cs->v);
        free(cs->slots);
        memset(cs, 0, sizeof *cs);
    }
}

void pvg_chunks_free(pvg_chunk_set *cs)
{
    clear(cs, 1);
}

pvg_status pvg_chunks_add(pvg_chunk_set *cs, int64_t user_id, int64_t expires_day,
                          const unsigned char pseudonym[16], const unsigned char rid[PVG_RID_BYTES],
                          const unsigned char *record, size_t n)
{
    if ((cs->n + 1) * 2 > cs->slot_cap && grow_slots(cs) != 0) return PVG_ERR_NOMEM;
    size_t j = slot_hash(user_id, expires_day, cs->slot_cap);
    pvg_chunk_builder *b = NULL;
    while (cs->slots[j]) {
        pvg_chunk_builder *c = &cs->v[cs->slots[j] - 1];
        if (c->user_id == user_id && c->expires_day == expires_day) {
            b = c;
            break;
        }
        j = (j + 1) & (cs->slot_cap - 1);
    }
    if (!b) {
        if (cs->n == cs->cap) {
            size_t cap = cs->cap ? cs->cap * 2 : 256;
            pvg_chunk_builder *nv = realloc(cs->v, cap * sizeof *nv);
            if (!nv) return PVG_ERR_NOMEM;
            cs->v = nv;
            cs->cap = cap;
        }
        b = &cs->v[cs->n];
        memset(b, 0, sizeof *b);
        b->user_id = user_id;
        b->expires_day = expires_day;
        memcpy(b->pseudonym, pseudonym, 16);
        cs->slots[j] = ++cs->n;
    }
    size_t need = b->len + 1 + PVG_RID_BYTES + 10 + n;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap *= 2;
        unsigned char *nb = malloc(cap);
        if (!nb) return PVG_ERR_NOMEM;
        if (b->buf) {
            memcpy(nb, b->buf, b->len);
            sodium_memzero(b->buf, b->cap);
            free(b->buf);
        }
        b->buf = nb;
        b->cap = cap;
    }
    if (b->len == 0) b->buf[b->len++] = PVG_RECORD_VERSION;
    b->n++;
    memcpy(b->buf + b->len, rid, PVG_RID_BYTES);
    b->len += PVG_RID_BYTES;
    b->len += pvg_varint_put(b->buf + b->len, n);
    memcpy(b->buf + b->len, record, n);
    b->len += n;
    return PVG_OK;
}

/* Inside the write transaction, before sealing under a cached key: the
 * user's row must still be there with the same id, and its wrapped key too.
 * The cache rule (store.c) makes this hold; checking it costs two indexed
 * lookups per user and transaction, and keeps a stale entry from ever
 * writing records under a destroyed key. */
static pvg_status check_user_live(pvg_store *s, pvg_keycache_entry *u, int64_t user_id,
                                  pvg_error *err)
{
    if (u->checked_txn == s->txn_seq && u->user_id == user_id) return PVG_OK;
    pvg_backend_user row;
    pvg_status st = PVG_B(s, user_get, u->pseudonym, &row, err);
    if (st == PVG_OK && row.id == user_id && row.id == u->user_id) {
        pvg_backend_key k;
        st = PVG_B(s, key_get, u->pseudonym, &k, err);
        sodium_memzero(&k, sizeof k);
        if (st == PVG_OK) {
            u->checked_txn = s->txn_seq;
            return PVG_OK;
        }
    }
    if (st != PVG_OK && st != PVG_ERR_NOT_FOUND) return st;
    return pvg_error_set(
        err, PVG_ERR_BUSY,
        "user row %lld was deleted or replaced by another writer during this write; "
        "nothing was stored (retry)",
        (long long)user_id);
}

pvg_status pvg_chunks_flush(pvg_store *s, pvg_chunk_set *cs, pvg_error *err)
{
    pvg_status st = PVG_OK;
    unsigned char *sealed = NULL;
    size_t sealed_cap = 0;
    for (size_t i = 0; i < cs->n && st == PVG_OK; i++) {
        pvg_chunk_builder *b = &cs->v[i];
        pvg_keycache_entry *u;
        st = pvg_store_user_resolve(s, b->pseudonym, 0, &u, NULL, err);
        if (st == PVG_OK && s->in_txn) st = check_user_live(s, u, b->user_id, err);
        if (st != PVG_OK) break;
        size_t sn = b->len + PVG_SEAL_OVERHEAD;
        if (sn > sealed_cap) {
            free(sealed);
            sealed_cap = sn * 2;
            sealed = malloc(sealed_cap);
            if (!sealed) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                break;
            }
        }
        unsigned char cid[PVG_CID_BYTES];
        pvg_rng_bytes(s->rng, cid, sizeof cid);
        if (s->plaintext_control) {
            memcpy(sealed, b->buf, b->len);
            sn = b->len;
        } else
            pvg_chunk_seal(s, u->key, b->pseudonym, cid, b->expires_day, (int64_t)b->n, b->buf,
                           b->len, sealed);
        st = PVG_B(s, chunk_insert, b->user_id, b->expires_day, (int64_t)b->n, cid, sizeof cid,
                   sealed, sn, err);
    }
    free(sealed);
    clear(cs, 0);
    return st;
}

/* ---- the set of chunk ids met by one reader call ---- */

static size_t cid_slot(const unsigned char cid[16], size_t cap)
{
    uint64_t h;
    memcpy(&h, cid, 8); /* chunk ids are random */
    return (size_t)(h & (cap - 1));
}

void pvg_cid_set_next(pvg_cid_set *c)
{
    c->n = 0;
    if (++c->cur == 0) { /* wrapped: stamps of old calls could match again */
        if (c->stamp) memset(c->stamp, 0, c->cap * sizeof *c->stamp);
        c->cur = 1;
    }
}

static int cid_set_grow(pvg_cid_set *c)
{
    size_t ncap = c->cap ? c->cap * 2 : 64;
    unsigned char(*ncid)[16] = malloc(ncap * sizeof *ncid);
    uint32_t *nst = calloc(ncap, sizeof *nst);
    if (!ncid || !nst) {
        free(ncid);
        free(nst);
        return -1;
    }
    for (size_t i = 0; i < c->cap; i++) {
        if (c->stamp[i] != c->cur) continue;
        size_t j = cid_slot(c->cid[i], ncap);
        while (nst[j] == c->cur)
            j = (j + 1) & (ncap - 1);
        memcpy(ncid[j], c->cid[i], 16);
        nst[j] = c->cur;
    }
    free(c->cid);
    free(c->stamp);
    c->cid = ncid;
    c->stamp = nst;
    c->cap = ncap;
    return 0;
}

int pvg_cid_set_seen(pvg_cid_set *c, const unsigned char cid[16])
{
    if (c->cur == 0) c->cur = 1;
    if ((c->n + 1) * 2 > c->cap && cid_set_grow(c) != 0) return -1;
    size_t j = cid_slot(cid, c->cap);
    while (c->stamp[j] == c->cur) {
        if (memcmp(c->cid[j], cid, 16) == 0) return 1;
        j = (j + 1) & (c->cap - 1);
    }
    memcpy(c->cid[j], cid, 16);
    c->stamp[j] = c->cur;
    c->n++;
    return 0;
}

void pvg_cid_set_free(pvg_cid_set *c)
{
    free(c->cid);
    free(c->stamp);
    memset(c, 0, sizeof *c);
}

/* ---- reading a user's chunks ---- */

typedef struct chunk_reader {
    pvg_store *s;
    int64_t user_id;
    const unsigned char *pseudonym, *key;
    pvg_chunk_entry_fn fn;
    void *ctx;
    unsigned char *plain;
    size_t cap;
    long long skipped, legacy;
    pvg_status st;
    pvg_error *err;
} chunk_reader;

static void skip(chunk_reader *r, const pvg_backend_chunk *c, int kind)
{
    r->skipped++;
    pvg_store_note_damage(r->s, r->user_id, c->row, c->cid, c->cid_len, kind);
}

/* 0 when the plain chunk's framing is whole (every entry in bounds). */
static int framing_ok(const unsigned char *pt, size_t pn)
{
    if (pn < 1 || pt[0] != PVG_RECORD_VERSION) return -1;
    size_t pos = 1;
    while (pos < pn) {
        uint64_t len;
        if (pn - pos < PVG_RID_BYTES) return -1;
        pos += PVG_RID_BYTES;
        if (pvg_varint_get(pt, pn, &pos, &len) || len > pn - pos) return -1;
        pos += (size_t)len;
    }
    return 0;
}

static int read_chunk(void *vctx, const pvg_backend_chunk *c)
{
    chunk_reader *r = vctx;
    pvg_store *s = r->s;
    long long uid = (long long)r->user_id;
    size_t sn = c->sealed_len;
    if (c->cid_len != PVG_CID_BYTES || (!s->plaintext_control && sn < PVG_SEAL_OVERHEAD)) {
        skip(r, c, PVG_CHUNK_MALFORMED);
        return 0;
    }
    const unsigned char *pt = c->sealed;
    size_t pn = sn;
    if (!s->plaintext_control) {
        pn = sn - PVG_SEAL_OVERHEAD;
        if (pn > r->cap) {
            if (r->plain) sodium_memzero(r->plain, r->cap);
            free(r->plain);
            r->cap = pn * 2;
            r->plain = malloc(r->cap);
            if (!r->plain) {
                r->cap = 0;
                r->st = pvg_error_set(r->err, PVG_ERR_NOMEM, "out of memory");
                return 1;
            }
        }
        int version = 0;
        if (pvg_chunk_open(r->key, r->pseudonym, c->cid, c->expires_day, c->n_events, c->sealed, sn,
                           r->plain, &version) != PVG_OK) {
            skip(r, c, PVG_CHUNK_UNREADABLE);
            return 0;
        }
        if (version < PVG_CHUNK_VERSION) {
            r->legacy++;
            s->read.chunks_legacy++;
        }
        pt = r->plain;
    }
    /* A second authentic row with a chunk id met already is a copy (a
     * replayed row): the index keeps the backend from holding one, this
     * catches it when the file was edited around the index. Only authentic
     * chunks claim an id, so a forged row cannot evict the real one. */
    int seen = pvg_cid_set_seen(&s->seen, c->cid);
    if (seen < 0) {
        r->st = pvg_error_set(r->err, PVG_ERR_NOMEM, "out of memory");
        return 1;
    }
    if (seen) {
        skip(r, c, PVG_CHUNK_DUPLICATE);
        return 0;
    }
    if (framing_ok(pt, pn) != 0) {
        skip(r, c, PVG_CHUNK_MALFORMED);
        return 0;
    }
    size_t pos = 1;
    while (pos < pn) {
        uint64_t len;
        const unsigned char *rid = pt + pos;
        pos += PVG_RID_BYTES;
        (void)pvg_varint_get(pt, pn, &pos, &len);
        pvg_status fs = r->fn(r->ctx, c->expires_day, rid, pt + pos, (size_t)len);
        if (fs != PVG_OK) {
            r->st = pvg_error_set(r->err, fs, "user row %lld: %s", uid,
                                  fs == PVG_ERR_NOMEM ? "out of memory" : "undecodable record");
            return 1;
        }
        pos += (size_t)len;
    }
    return 0;
}

pvg_status pvg_store_user_chunks_foreach(pvg_store *s, int64_t user_id,
                                         const unsigned char pseudonym[16],
                                         const unsigned char key[PVG_KEY_BYTES],
                                         pvg_chunk_entry_fn fn, void *ctx, long long *skipped,
                                         long long *legacy, pvg_error *err)
{
    chunk_reader r = {s, user_id, pseudonym, key, fn, ctx, NULL, 0, 0, 0, PVG_OK, err};
    pvg_cid_set_next(&s->seen);
    pvg_status st = PVG_B(s, chunks_foreach_user, user_id, read_chunk, &r, err);
    if (st == PVG_ERR_ABORTED) st = r.st;
    if (r.plain) {
        sodium_memzero(r.plain, r.cap);
        free(r.plain);
    }
    if (skipped) *skipped = r.skipped;
    if (legacy) *legacy = r.legacy;
    return st;
}

typedef struct rid_sink {
    unsigned char (*v)[PVG_RID_BYTES];
    size_t n, cap;
} rid_sink;

static pvg_status take_rid(void *ctx, int64_t expires_day, const unsigned char *rid,
                           const unsigned char *rec, size_t len)
{
    rid_sink *k = ctx;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        void *nv = realloc(k->v, cap * PVG_RID_BYTES);
        if (!nv) return PVG_ERR_NOMEM;
        k->v = nv;
        k->cap = cap;
    }
    memcpy(k->v[k->n++], rid, PVG_RID_BYTES);
    return PVG_OK;
}

pvg_status pvg_store_user_rids(pvg_store *s, int64_t user_id, const unsigned char pseudonym[16],
                               const unsigned char key[PVG_KEY_BYTES],
                               unsigned char (**rids)[PVG_RID_BYTES], size_t *n, pvg_error *err)
{
    rid_sink k = {*rids, *n, *n};
    pvg_status st =
        pvg_store_user_chunks_foreach(s, user_id, pseudonym, key, take_rid, &k, NULL, NULL, err);
    *rids = k.v;
    *n = k.n;
    return st;
}

/* ---- compaction ---- */

typedef struct regroup {
    pvg_chunk_set *cs;
    int64_t user_id;
    const unsigned char *pseudonym;
} regroup;

static pvg_status add_entry(void *ctx, int64_t expires_day, const unsigned char *rid,
                            const unsigned char *rec, size_t len)
{
    regroup *g = ctx;
    return pvg_chunks_add(g->cs, g->user_id, expires_day, g->pseudonym, rid, rec, len);
}

pvg_status pvg_store_user_rewrite(pvg_store *s, int64_t user_id, const unsigned char pseudonym[16],
                                  const unsigned char key[PVG_KEY_BYTES], size_t min_chunks,
                                  long long *rewritten, pvg_error *err)
{
    if (rewritten) *rewritten = 0;
    long long n = 0;
    pvg_status cst = PVG_B(s, chunks_count_user, user_id, &n, err);
    if (cst != PVG_OK) return cst;
    if (n == 0 || n < (long long)min_chunks) return PVG_OK;
    pvg_chunk_set cs;
    memset(&cs, 0, sizeof cs);
    regroup g = {&cs, user_id, pseudonym};
    long long skipped = 0, legacy = 0;
    pvg_status st = pvg_store_user_chunks_foreach(s, user_id, pseudonym, key, add_entry, &g,
                                                  &skipped, &legacy, err);
    /* min_chunks 0: an upgrade, worth it only for format-1 chunks. A user
     * with a damaged chunk is left alone: replacing their chunks would
     * delete it before anyone looked (`store check --quarantine` first). */
    int go = min_chunks > 0 || legacy > 0;
    if (st == PVG_OK && go && skipped == 0) {
        /* Replace the user's chunks by one per expiry day, in the caller's
         * transaction (secure_delete zeroes the old cells). */
        st = PVG_B(s, chunks_delete_user, user_id, err);
        if (st == PVG_OK) st = pvg_chunks_flush(s, &cs, err);
        if (st == PVG_OK && rewritten) *rewritten = n;
    }
    pvg_chunks_free(&cs);
    return st;
}

pvg_status pvg_store_user_compact(pvg_store *s, int64_t user_id, const unsigned char pseudonym[16],
                                  const unsigned char key[PVG_KEY_BYTES], size_t min_chunks,
                                  pvg_error *err)
{
    return pvg_store_user_rewrite(s, user_id, pseudonym, key, min_chunks ? min_chunks : 1, NULL,
                                  err);
}
