/*
 * ingest.c - from readers' records to sealed events: policy (allow-list,
 * field minimisation, retention), pseudonymisation, duplicate detection,
 * sealing, batched commits, and the retention sweep.
 *
 * Duplicate detection. An event's record id is
 *   rid = BLAKE2b-128(dedup_key, digest || occurrence)
 *   digest = BLAKE2b-128(dedup_key, pseudonym || event content || item ext id)
 * where occurrence counts earlier rows of the same run with the same digest.
 * Re-running an import (whole or after a crash) derives the same rids, while
 * a source that genuinely repeats a row (Online Retail holds 5,268 exact
 * repeats) keeps every repeat. Rids are sealed inside the user's chunks and
 * kept in the duplicate index (backend event_tags: user row, rid, expiry
 * day), so finding whether a user holds a record is one index look-up,
 * whatever the number of their events. A run looks up only users it did
 * not create itself (a run's own records differ by their occurrence
 * numbers); if another process writes meanwhile (the change counter
 * moved), every user is looked up again. dedup_key is derived from the
 * pepper, so a rid reveals nothing without the key file.
 *
 * Erasure sticks: rows of a shopper on the suppression list are skipped
 * and counted (stats->suppressed); the list is held in memory for the run
 * and reloaded when another process wrote.
 *
 * Posted events (pvg_store_events_put) are prepared outside the write
 * transaction (validation, pseudonyms, look-ups, sealing) and only
 * inserted inside it, after checking that the change counter did not move
 * since the preparation began (else it is redone).
 */
#include "store/store_priv.h"
#include "store/text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PLAIN_MAX 4096

/* ---- small hash maps ---- */

typedef struct item_ent {
    char *ext;
    int64_t id;
    double price;
    char *title;
    char *category;
    int dirty;
    int catalog; /* 1: a catalogue row of the file named it (flag it on flush) */
    /* prices seen in this run after the first, oldest first, at most the
     * last PVG_ITEM_PRICE_WINDOW (allocated on the first) */
    double *pend;
    unsigned npend;
} item_ent;

typedef struct item_map {
    item_ent *slots;
    size_t cap, n;
} item_map;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static void item_map_free(item_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].ext) {
            free(m->slots[i].ext);
            free(m->slots[i].title);
            free(m->slots[i].category);
            free(m->slots[i].pend);
        }
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static item_ent *item_map_get(item_map *m, const char *ext, int insert)
{
    if (insert && (m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 4096;
        item_ent *ns = calloc(ncap, sizeof *ns);
        if (!ns) return NULL;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].ext) {
                size_t j = str_hash(m->slots[i].ext) & (ncap - 1);
                while (ns[j].ext)
                    j = (j + 1) & (ncap - 1);
                ns[j] = m->slots[i];
            }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    if (!m->cap) return NULL;
    size_t j = str_hash(ext) & (m->cap - 1);
    while (m->slots[j].ext) {
        if (strcmp(m->slots[j].ext, ext) == 0) return &m->slots[j];
        j = (j + 1) & (m->cap - 1);
    }
    if (!insert) return NULL;
    m->slots[j].ext = strdup(ext);
    if (!m->slots[j].ext) return NULL;
    m->n++;
    return &m->slots[j];
}

/* Counts of 16-byte digests, keyed by their first 7 bytes (digests are
 * keyed BLAKE2b outputs: a clash of 56-bit heads among a run's rows has
 * probability ~ rows^2 / 2^57, 2e-6 for Online Retail). One 8-byte slot per
 * digest, head in the high 56 bits and the count in the low 8, keeps the
 * table half the size (it is touched at random once per row); from the
 * 256th occurrence of one digest on, counting goes on in a small overflow
 * list (exact repeats are rare). */
#define OCC_SAT 0xffu

typedef struct occ_over {
    uint64_t head;
    uint64_t count;
} occ_over;

typedef struct occ_map {
    uint64_t *slots; /* 0 = empty */
    size_t cap, n;
    occ_over *over;
    size_t n_over, cap_over;
} occ_map;

static uint64_t occ_head(const unsigned char d[16])
{
    uint64_t h = 0;
    memcpy(&h, d, 7);
    return h ? h : 1; /* 56 bits, never 0 */
}

/* A zeroed table of n slots. Tables of 2 MiB and more are aligned to and
 * advised onto huge pages: the table is probed at random once per row, and
 * with 4 KiB pages nearly every probe also misses the TLB. */
static uint64_t *occ_alloc(size_t n)
{
    size_t bytes = n * sizeof(uint64_t);
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge) return calloc(n, sizeof(uint64_t));
    uint64_t *p = aligned_alloc(huge, bytes); /* bytes is a power of two >= huge */
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: fine if refused */
#endif
    memset(p, 0, bytes);
    return p;
}

/* Returns how many times the digest was seen before (and counts this one),
 * or -1 when out of memory. */
static long occ_next(occ_map *m, const unsigned char d[16])
{
    if ((m->n + 1) * 4 > m->cap * 3) { /* load <= 3/4, doubling: a run's table stays small */
        size_t ncap = m->cap ? m->cap * 2 : 1u << 16;
        uint64_t *ns = occ_alloc(ncap);
        if (!ns) return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i]) {
                size_t j = (m->slots[i] >> 8) & (ncap - 1);
                while (ns[j])
                    j = (j + 1) & (ncap - 1);
                ns[j] = m->slots[i];
            }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    uint64_t h = occ_head(d);
    size_t j = h & (m->cap - 1);
    while (m->slots[j]) {
        if ((m->slots[j] >> 8) == h) {
            uint64_t c = m->slots[j] & OCC_SAT; /* seen so far: 1..255 (255: see the list) */
            if (c < OCC_SAT) {
                m->slots[j]++;
                return (long)c;
            }
            for (size_t k = 0; k < m->n_over; k++)
                if (m->over[k].head == h) return (long)m->over[k].count++;
            if (m->n_over == m->cap_over) {
                size_t nc = m->cap_over ? 2 * m->cap_over : 8;
                occ_over *no = realloc(m->over, nc * sizeof *no);
                if (!no) return -1;
                m->over = no;
                m->cap_over = nc;
            }
            m->over[m->n_over].head = h;
            m->over[m->n_over].count = OCC_SAT;
            return (long)m->over[m->n_over++].count++;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (h << 8) | 1u;
    m->n++;
    return 0;
}

/* ---- record ids ---- */

static void content_digest(const pvg_store *s, const unsigned char *prefix, size_t prefix_len,
                           const pvg_event *ev, unsigned char out[16])
{
    unsigned char plain[PLAIN_MAX];
    size_t n = pvg_record_encode(ev, 0, plain, sizeof plain);
    crypto_generichash_state st = *s->dedup_state; /* keyed once at open */
    crypto_generichash_update(&st, prefix, prefix_len);
    crypto_generichash_update(&st, plain, n);
    if (ev->item)
        crypto_generichash_update(&st, (const unsigned char *)ev->item, strlen(ev->item) + 1);
    crypto_generichash_final(&st, out, 16);
}

static void record_id(const pvg_store *s, const unsigned char digest[16], uint32_t occurrence,
                      unsigned char rid[PVG_RID_BYTES])
{
    unsigned char in[20];
    memcpy(in, digest, 16);
    for (int i = 0; i < 4; i++)
        in[16 + i] = (unsigned char)(occurrence >> (8 * i));
    crypto_generichash_state st = *s->dedup_state;
    crypto_generichash_update(&st, in, sizeof in);
    crypto_generichash_final(&st, rid, PVG_RID_BYTES);
    sodium_memzero(&st, sizeof st);
}

/* ---- storing one event ---- */

static int64_t expires_day(const pvg_store *s, const pvg_event *ev)
{
    int64_t basis =
        s->policy.basis_collection ? pvg_store_today(s) : (ev->ts >= 0 ? ev->ts / 86400 : 0);
    return basis + s->policy.retention_days[ev->type];
}

/* Encodes an event and queues it into its user's chunk. */
static pvg_status queue_event(pvg_chunk_set *cs, pvg_keycache_entry *u, const pvg_event *ev,
                              int64_t item_id, const unsigned char rid[PVG_RID_BYTES], int64_t exp,
                              pvg_error *err)
{
    unsigned char plain[PLAIN_MAX];
    size_t n = pvg_record_encode(ev, item_id, plain, sizeof plain);
    if (n == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "event too large (query or country over %d bytes)", PLAIN_MAX / 2);
    pvg_status st = pvg_chunks_add(cs, u->user_id, exp, u->pseudonym, rid, plain, n);
    sodium_memzero(plain, n);
    return st == PVG_OK ? PVG_OK : pvg_error_set(err, st, "out of memory");
}

static pvg_status validate_event(const pvg_event *ev, pvg_error *err)
{
    if ((unsigned)ev->type >= PVG_EVENT_TYPE_COUNT)
        return pvg_error_set(err, PVG_ERR_INVALID, "type: unknown event type %d", (int)ev->type);
    if (ev->type != PVG_EVENT_SEARCH && (!ev->item || !*ev->item))
        return pvg_error_set(err, PVG_ERR_INVALID, "item: required for a %s event",
                             pvg_event_type_name(ev->type));
    if (ev->ts < 0) return pvg_error_set(err, PVG_ERR_INVALID, "ts: must not be before 1970");
    const char *strs[2] = {ev->query, ev->country};
    const char *names[2] = {"query", "country"};
    for (int i = 0; i < 2; i++)
        if (strs[i]) {
            size_t n = strlen(strs[i]);
            if (n > 1024)
                return pvg_error_set(err, PVG_ERR_INVALID, "%s: longer than 1024 bytes", names[i]);
            long long bad = pvg_utf8_invalid_at(strs[i], n);
            if (bad >= 0)
                return pvg_error_set(err, PVG_ERR_INVALID, "%s: invalid UTF-8 at byte %lld",
                                     names[i], bad);
        }
    return PVG_OK;
}

/* A set of 16-byte pseudonyms (exact compare). */
typedef struct p16_set {
    unsigned char (*v)[16];
    unsigned char *used;
    size_t n, cap;
} p16_set;

static void p16_set_free(p16_set *m)
{
    free(m->v);
    free(m->used);
    memset(m, 0, sizeof *m);
}

static size_t p16_slot(const unsigned char p[16], size_t cap)
{
    uint64_t h;
    memcpy(&h, p, 8); /* keyed hashes: uniformly spread */
    return (size_t)h & (cap - 1);
}

/* 0 added or held, -1 out of memory. */
static int p16_set_add(p16_set *m, const unsigned char p[16])
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        unsigned char(*nv)[16] = malloc(ncap * 16);
        unsigned char *nu = calloc(ncap, 1);
        if (!nv || !nu) {
            free(nv);
            free(nu);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->used[i]) {
                size_t j = p16_slot(m->v[i], ncap);
                while (nu[j])
                    j = (j + 1) & (ncap - 1);
                memcpy(nv[j], m->v[i], 16);
                nu[j] = 1;
            }
        free(m->v);
        free(m->used);
        m->v = nv;
        m->used = nu;
        m->cap = ncap;
    }
    size_t j = p16_slot(p, m->cap);
    while (m->used[j]) {
        if (memcmp(m->v[j], p, 16) == 0) return 0;
        j = (j + 1) & (m->cap - 1);
    }
    memcpy(m->v[j], p, 16);
    m->used[j] = 1;
    m->n++;
    return 0;
}

static int p16_set_has(const p16_set *m, const unsigned char p[16])
{
    if (!m->n) return 0;
    size_t j = p16_slot(p, m->cap);
    while (m->used[j]) {
        if (memcmp(m->v[j], p, 16) == 0) return 1;
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

typedef struct p16_load {
    p16_set *set;
    int nomem;
} p16_load;

static int p16_take(void *ctx, const unsigned char p[16])
{
    p16_load *l = ctx;
    if (p16_set_add(l->set, p) != 0) {
        l->nomem = 1;
        return 1;
    }
    return 0;
}

static pvg_status suppressed_load(pvg_store *s, p16_set *set, pvg_error *err)
{
    p16_set_free(set);
    p16_load l = {set, 0};
    pvg_status st = PVG_B(s, suppress_foreach, p16_take, &l, err);
    if (l.nomem) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    return st;
}

static int cmp_tag(const void *a, const void *b)
{
    /* the order only matters for speed: the SQLite backend keeps one sorted
     * set of the tags' first 8 bytes per (user row, expiry day) */
    const pvg_backend_tag *x = a, *y = b;
    if (x->user_id != y->user_id) return x->user_id < y->user_id ? -1 : 1;
    if (x->expires_day != y->expires_day) return x->expires_day < y->expires_day ? -1 : 1;
    return memcmp(x->tag, y->tag, 8);
}

static pvg_status tags_flush(pvg_store *s, pvg_backend_tag *t, size_t *n, pvg_error *err)
{
    if (*n == 0) return PVG_OK;
    qsort(t, *n, sizeof *t, cmp_tag); /* B-tree inserts in key order */
    pvg_status st = PVG_B(s, tags_insert, t, *n, err);
    *n = 0;
    return st;
}

static int tag_push(pvg_backend_tag **t, size_t *n, size_t *cap, int64_t user_id, int64_t exp,
                    const unsigned char rid[PVG_RID_BYTES])
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        pvg_backend_tag *nt = realloc(*t, nc * sizeof *nt);
        if (!nt) return -1;
        *t = nt;
        *cap = nc;
    }
    pvg_backend_tag *e = &(*t)[(*n)++];
    e->user_id = user_id;
    e->expires_day = exp;
    memcpy(e->tag, rid, 16);
    return 0;
}

/* ---- the duplicate index of stores made before it ---- */

typedef struct tag_build {
    pvg_store *s;
    pvg_backend_tag *tags;
    size_t n, cap;
    int64_t user_id;
    unsigned char *key;
    pvg_status st;
    pvg_error *err;
} tag_build;

static pvg_status tag_build_rid(void *ctx, int64_t exp, const unsigned char *rid,
                                const unsigned char *rec, size_t len)
{
    (void)rec;
    (void)len;
    tag_build *t = ctx;
    return tag_push(&t->tags, &t->n, &t->cap, t->user_id, exp, rid) == 0 ? PVG_OK : PVG_ERR_NOMEM;
}

static int tag_build_user(void *ctx, const pvg_backend_user *u)
{
    tag_build *t = ctx;
    pvg_status st = pvg_store_user_key(t->s, u->pseudonym, t->key, t->err);
    if (st == PVG_ERR_NOT_FOUND) { /* shredded: nothing readable to index */
        pvg_error_clear(t->err);
        return 0;
    }
    t->user_id = u->id;
    if (st == PVG_OK)
        st = pvg_store_user_chunks_foreach(t->s, u->id, u->pseudonym, t->key, tag_build_rid, t,
                                           NULL, NULL, t->err);
    if (st == PVG_OK && t->n >= 65536) st = tags_flush(t->s, t->tags, &t->n, t->err);
    if (st != PVG_OK) {
        t->st = st;
        return 1;
    }
    return 0;
}

pvg_status pvg_store_dup_index_ensure(pvg_store *s, pvg_error *err)
{
    char *v = NULL;
    pvg_status st = PVG_B(s, meta_get, "dup_index", &v, err);
    int done = st == PVG_OK && strcmp(v, "1") == 0;
    free(v);
    if (done) return PVG_OK;
    if (st != PVG_OK && st != PVG_ERR_NOT_FOUND) return st;
    pvg_error_clear(err);
    /* A store made before the index: index every readable record once. */
    if ((st = pvg_store_begin(s, err)) != PVG_OK) return st;
    v = NULL;
    if (PVG_B(s, meta_get, "dup_index", &v, NULL) == PVG_OK && strcmp(v, "1") == 0) {
        free(v); /* another process did it meanwhile */
        pvg_store_rollback(s);
        return PVG_OK;
    }
    free(v);
    tag_build t = {s, NULL, 0, 0, 0, sodium_malloc(PVG_KEY_BYTES), PVG_OK, err};
    if (!t.key) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (st == PVG_OK) {
        st = PVG_B(s, users_foreach, NULL, tag_build_user, &t, err);
        if (st == PVG_ERR_ABORTED) st = t.st;
    }
    if (st == PVG_OK) st = tags_flush(s, t.tags, &t.n, err);
    if (st == PVG_OK) st = PVG_B(s, meta_set, "dup_index", "1", err);
    if (t.key) sodium_free(t.key);
    free(t.tags);
    if (st == PVG_OK) return pvg_store_commit(s, err);
    pvg_store_rollback(s);
    return st;
}

/* ---- posted events: prepare outside the write transaction, then commit ---- */

/* One user's keys of the duplicate index, read once (tags_of_user) into
 * an open-addressing set, and tested many times. */
typedef struct tag_keys {
    int64_t user_id; /* 0: none loaded */
    uint64_t *slot;  /* 0: empty (a key of 0 sets has_zero instead) */
    size_t cap;      /* a power of two, at least twice the keys */
    int has_zero;
} tag_keys;

static void tag_keys_clear(tag_keys *t)
{
    free(t->slot);
    memset(t, 0, sizeof *t);
}

static uint64_t tag_key_of(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v); /* the keyed record id: uniform bits already */
    return v;
}

/* Makes t hold user_id's keys (reading them unless it does already). */
static pvg_status tag_keys_load(pvg_store *s, tag_keys *t, int64_t user_id, pvg_error *err)
{
    if (t->user_id == user_id) return PVG_OK;
    tag_keys_clear(t);
    unsigned char *v = NULL;
    size_t n = 0;
    pvg_status st = PVG_B(s, tags_of_user, user_id, &v, &n, err);
    if (st != PVG_OK) return st;
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    t->slot = calloc(cap, sizeof *t->slot);
    if (!t->slot) {
        free(v);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    t->cap = cap;
    for (size_t i = 0; i < n; i++) {
        uint64_t k = tag_key_of(v + i * PVG_BACKEND_TAG_KEY);
        if (k == 0) {
            t->has_zero = 1;
            continue;
        }
        size_t j = (size_t)(k >> 7) & (cap - 1);
        while (t->slot[j] && t->slot[j] != k)
            j = (j + 1) & (cap - 1);
        t->slot[j] = k;
    }
    free(v);
    t->user_id = user_id;
    return PVG_OK;
}

static int tag_keys_has(const tag_keys *t, const unsigned char rid[PVG_RID_BYTES])
{
    uint64_t k = tag_key_of(rid);
    if (k == 0) return t->has_zero;
    for (size_t j = (size_t)(k >> 7) & (t->cap - 1); t->slot[j]; j = (j + 1) & (t->cap - 1))
        if (t->slot[j] == k) return 1;
    return 0;
}

typedef struct put_user {
    unsigned char p[16];
    int64_t user_id;  /* 0: new, created at the commit */
    int64_t stale_id; /* a row whose key is gone (an interrupted deletion): removed at the commit */
    int suppressed;
    int pers, anal;                           /* consent switches (row, or the defaults) */
    int count;                                /* events of the request naming the user */
    unsigned char *key;                       /* sodium_malloc'd, PVG_KEY_BYTES */
    unsigned char wrapped[PVG_WRAPPED_BYTES]; /* new users: their key, wrapped */
    unsigned char kid[PVG_KID_BYTES];
    tag_keys held; /* their keys of the duplicate index (read when first needed) */
} put_user;

typedef struct put_ev {
    size_t user;  /* index into the users */
    int ok;       /* passed validation and policy */
    pvg_event ev; /* minimised (strings borrowed from the input) */
    int64_t item_id, exp;
    unsigned char rid[PVG_RID_BYTES];
} put_ev;

typedef struct put_chunk {
    size_t user;
    int64_t exp, n;
    unsigned char cid[PVG_CID_BYTES];
    unsigned char *sealed;
    size_t len;
} put_chunk;

typedef struct put_batch {
    pvg_store *s;
    const pvg_event_in *in;
    pvg_event_out *out;
    size_t n;
    put_ev *ev;
    put_user *users;
    size_t n_users;
    size_t *slots; /* pseudonym -> user index + 1 */
    size_t slot_cap;
    /* the prepared writes */
    pvg_chunk_set cs;
    put_chunk *chunks;
    size_t n_chunks;
    pvg_backend_tag *tags;
    size_t n_tags, cap_tags;
    long long stored, dups;
} put_batch;

static void refuse(pvg_event_out *o, pvg_status st, const char *fmt, ...) PVG_PRINTF(3, 4);
#include <stdarg.h>
static void refuse(pvg_event_out *o, pvg_status st, const char *fmt, ...)
{
    o->status = st;
    o->stored = 0;
    o->reason = st == PVG_ERR_POLICY ? "policy" : st == PVG_ERR_ERASED ? "erased" : "invalid";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->message, sizeof o->message, fmt, ap);
    va_end(ap);
}

/* Drops what a preparation computed (users' look-ups, chunks, tags). */
static void put_reset(put_batch *b)
{
    for (size_t i = 0; i < b->n_chunks; i++) {
        if (b->chunks[i].sealed) sodium_memzero(b->chunks[i].sealed, b->chunks[i].len);
        free(b->chunks[i].sealed);
    }
    free(b->chunks);
    b->chunks = NULL;
    b->n_chunks = 0;
    pvg_chunks_free(&b->cs);
    memset(&b->cs, 0, sizeof b->cs);
    b->n_tags = 0;
    for (size_t i = 0; i < b->n_users; i++)
        tag_keys_clear(&b->users[i].held);
}

static void put_free(put_batch *b)
{
    put_reset(b);
    for (size_t i = 0; i < b->n_users; i++)
        if (b->users[i].key) sodium_free(b->users[i].key);
    free(b->users);
    free(b->slots);
    free(b->tags);
    if (b->ev) sodium_memzero(b->ev, b->n * sizeof *b->ev);
    free(b->ev);
}

/* The index of the user with pseudonym p (added when new); (size_t)-1 when
 * out of memory. */
static size_t put_user_of(put_batch *b, const unsigned char p[16])
{
    size_t j = p16_slot(p, b->slot_cap);
    while (b->slots[j]) {
        if (memcmp(b->users[b->slots[j] - 1].p, p, 16) == 0) return b->slots[j] - 1;
        j = (j + 1) & (b->slot_cap - 1);
    }
    put_user *u = &b->users[b->n_users];
    memset(u, 0, sizeof *u);
    memcpy(u->p, p, 16);
    u->key = sodium_malloc(PVG_KEY_BYTES);
    if (!u->key) return (size_t)-1;
    b->slots[j] = ++b->n_users;
    return b->n_users - 1;
}

/* Steps that need no store: validation, policy, pseudonyms, record ids, the
 * per-user cap. PVG_OK, or the batch's refusal. */
static pvg_status put_validate(put_batch *b, pvg_error *err)
{
    pvg_store *s = b->s;
    for (size_t i = 0; i < b->n; i++) {
        const pvg_event_in *in = &b->in[i];
        pvg_event_out *o = &b->out[i];
        put_ev *pe = &b->ev[i];
        memset(o, 0, sizeof *o);
        pe->ok = 0;
        if (!in->user || !*in->user) {
            refuse(o, PVG_ERR_INVALID, "user: required");
            continue;
        }
        if (strlen(in->user) > 256) {
            refuse(o, PVG_ERR_INVALID, "user: longer than 256 bytes");
            continue;
        }
        unsigned char p[16];
        pvg_store_pseudonym(s, in->user, p);
        size_t ui = put_user_of(b, p);
        if (ui == (size_t)-1) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        pe->user = ui;
        if (++b->users[ui].count > PVG_EVENTS_PER_USER_MAX)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "events[%ld]: more than %d events for one user in one request "
                                 "(send the rest in another request)",
                                 in->index, PVG_EVENTS_PER_USER_MAX);
        if (!in->event) {
            refuse(o, PVG_ERR_INVALID, "event: required");
            continue;
        }
        pvg_error e;
        pvg_error_clear(&e);
        if (validate_event(in->event, &e) != PVG_OK) {
            refuse(o, PVG_ERR_INVALID, "%s", e.text);
            continue;
        }
        if (!s->policy.allowed[in->event->type]) {
            refuse(o, PVG_ERR_POLICY, "type: %s events are not kept under the data policy",
                   pvg_event_type_name(in->event->type));
            continue;
        }
        pe->ev = *in->event;
        pe->ev.fields &= s->policy.fields[pe->ev.type];
        pe->exp = expires_day(s, &pe->ev);
        if (pe->exp <= pvg_store_today(s)) {
            refuse(o, PVG_ERR_POLICY, "ts: the event is past its retention period already");
            continue;
        }
        unsigned char probe[PLAIN_MAX];
        size_t pn = pvg_record_encode(&pe->ev, 0, probe, sizeof probe);
        sodium_memzero(probe, pn);
        if (pn == 0) {
            refuse(o, PVG_ERR_INVALID, "event too large (query or country over %d bytes)",
                   PLAIN_MAX / 2);
            continue;
        }
        unsigned char digest[16];
        if (in->dedup_key) {
            crypto_generichash_state h;
            crypto_generichash_init(&h, s->keys.dedup, PVG_KEY_BYTES, 16);
            crypto_generichash_update(&h, p, 16);
            crypto_generichash_update(&h, (const unsigned char *)"client-key", 10);
            crypto_generichash_update(&h, (const unsigned char *)in->dedup_key,
                                      strlen(in->dedup_key));
            crypto_generichash_final(&h, digest, 16);
        } else
            content_digest(s, p, 16, in->event, digest);
        record_id(s, digest, 0, pe->rid);
        pe->ok = 1;
    }
    return PVG_OK;
}

/* Catalog rows of the batch's items (an unknown item is added: the catalog
 * is not personal, and a short transaction of its own does it when none is
 * open). */
static pvg_status put_items(put_batch *b, pvg_error *err)
{
    pvg_store *s = b->s;
    int opened = 0;
    pvg_status st = PVG_OK;
    for (size_t i = 0; i < b->n && st == PVG_OK; i++) {
        put_ev *pe = &b->ev[i];
        pe->item_id = 0;
        if (!pe->ok || !pe->ev.item) continue;
        st = PVG_B(s, item_find, pe->ev.item, &pe->item_id, err);
        if (st != PVG_ERR_NOT_FOUND) continue;
        pvg_error_clear(err);
        if (!s->in_txn) {
            if ((st = pvg_store_begin(s, err)) != PVG_OK) break;
            opened = 1;
        }
        st = pvg_store_item_id_for(s, pe->ev.item, 1, &pe->item_id, err);
    }
    if (opened) {
        if (st == PVG_OK)
            st = pvg_store_commit(s, err);
        else
            pvg_store_rollback(s);
    }
    return st;
}

static int cmp_rid_ev(const void *a, const void *b)
{
    const put_ev *const *x = a, *const *y = b;
    return memcmp((*x)->rid, (*y)->rid, PVG_RID_BYTES);
}

/* Reads (suppression, users, keys, the duplicate index) and seals: no
 * write. Inside or outside a transaction. */
static pvg_status put_prepare(put_batch *b, pvg_error *err)
{
    pvg_store *s = b->s;
    pvg_status st = PVG_OK;
    for (size_t i = 0; i < b->n_users && st == PVG_OK; i++) {
        put_user *u = &b->users[i];
        u->user_id = u->stale_id = 0;
        if ((st = PVG_B(s, suppress_has, u->p, &u->suppressed, err)) != PVG_OK) break;
        if (u->suppressed) continue;
        pvg_backend_user row;
        u->pers = s->policy.default_personalization;
        u->anal = s->policy.default_analytics;
        st = PVG_B(s, user_get, u->p, &row, err);
        if (st == PVG_ERR_NOT_FOUND) {
            pvg_error_clear(err);
            st = PVG_OK;
        } else if (st == PVG_OK) {
            u->pers = row.consent_personalization;
            u->anal = row.consent_analytics;
            st = pvg_store_user_key(s, u->p, u->key, err);
            if (st == PVG_OK)
                u->user_id = row.id;
            else if (st == PVG_ERR_NOT_FOUND) { /* key destroyed: the row goes, a new user comes */
                pvg_error_clear(err);
                u->stale_id = row.id;
                st = PVG_OK;
            }
        }
        if (st != PVG_OK || u->user_id) continue;
        pvg_rng_bytes(s->rng, u->key, PVG_KEY_BYTES);
        const unsigned char *mk = s->keys.has_next ? s->keys.next : s->keys.master;
        memcpy(u->kid, s->keys.has_next ? s->keys.next_kid : s->keys.kid, PVG_KID_BYTES);
        pvg_keys_wrap(s, mk, u->p, u->key, u->wrapped);
    }
    if (st != PVG_OK) return st;
    /* Duplicates: within the request (equal record ids; the first one
     * counts), then against the index for users who exist. */
    put_ev **order = malloc((b->n ? b->n : 1) * sizeof *order);
    if (!order) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->ev[i].ok && !b->users[b->ev[i].user].suppressed) order[m++] = &b->ev[i];
    qsort(order, m, sizeof *order, cmp_rid_ev);
    unsigned char *dup = calloc(b->n ? b->n : 1, 1);
    if (!dup) {
        free(order);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 1; k < m; k++)
        if (memcmp(order[k]->rid, order[k - 1]->rid, PVG_RID_BYTES) == 0) {
            /* the later one in the request is the duplicate */
            put_ev *later = order[k] > order[k - 1] ? order[k] : order[k - 1];
            put_ev *earlier = later == order[k] ? order[k - 1] : order[k];
            dup[later - b->ev] = 1;
            order[k] = earlier;
        }
    free(order);
    unsigned char plain[PLAIN_MAX];
    for (size_t i = 0; i < b->n && st == PVG_OK; i++) {
        put_ev *pe = &b->ev[i];
        pvg_event_out *o = &b->out[i];
        if (!pe->ok) continue;
        put_user *u = &b->users[pe->user];
        if (u->suppressed) {
            refuse(o, PVG_ERR_ERASED,
                   "user: erased at their request (suppression list); their events are not "
                   "recorded");
            continue;
        }
        if (!pvg_policy_collect_allowed(&s->policy, pe->ev.type, u->pers, u->anal)) {
            o->status = PVG_ERR_POLICY;
            o->stored = 0;
            o->reason = "no_consent";
            pvg_policy_collect_refusal(&s->policy, pe->ev.type, o->message, sizeof o->message);
            continue;
        }
        int held = dup[i];
        if (!held && u->user_id) {
            if ((st = tag_keys_load(s, &u->held, u->user_id, err)) != PVG_OK) break;
            held = tag_keys_has(&u->held, pe->rid);
        }
        if (held) {
            o->stored = 0;
            b->dups++;
            continue;
        }
        size_t n = pvg_record_encode(&pe->ev, pe->item_id, plain, sizeof plain);
        /* the chunk set keys on a user number: the batch's user index + 1 */
        pvg_status cs =
            pvg_chunks_add(&b->cs, (int64_t)pe->user + 1, pe->exp, u->p, pe->rid, plain, n);
        sodium_memzero(plain, n);
        if (cs != PVG_OK || tag_push(&b->tags, &b->n_tags, &b->cap_tags, (int64_t)pe->user + 1,
                                     pe->exp, pe->rid) != 0) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            break;
        }
        o->stored = 1;
        b->stored++;
    }
    free(dup);
    if (st != PVG_OK) return st;
    /* Seal every chunk now, outside the lock. */
    if (b->cs.n) {
        b->chunks = calloc(b->cs.n, sizeof *b->chunks);
        if (!b->chunks) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < b->cs.n; i++) {
        pvg_chunk_builder *cb = &b->cs.v[i];
        put_chunk *c = &b->chunks[b->n_chunks++];
        c->user = (size_t)(cb->user_id - 1);
        c->exp = cb->expires_day;
        c->n = (int64_t)cb->n;
        c->len = s->plaintext_control ? cb->len : cb->len + PVG_SEAL_OVERHEAD;
        c->sealed = malloc(c->len);
        if (!c->sealed) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        pvg_rng_bytes(s->rng, c->cid, sizeof c->cid);
        if (s->plaintext_control)
            memcpy(c->sealed, cb->buf, cb->len);
        else
            pvg_chunk_seal(s, b->users[c->user].key, cb->pseudonym, c->cid, c->exp, c->n, cb->buf,
                           cb->len, c->sealed);
    }
    pvg_chunks_free(&b->cs);
    memset(&b->cs, 0, sizeof b->cs);
    return PVG_OK;
}

/* The writes, inside the transaction: new users and their keys, the index
 * rows, the chunks. */
static pvg_status put_apply(put_batch *b, pvg_error *err)
{
    pvg_store *s = b->s;
    pvg_status st = PVG_OK;
    if (b->stored == 0) return PVG_OK;
    for (size_t i = 0; i < b->n_users && st == PVG_OK; i++) {
        put_user *u = &b->users[i];
        if (u->suppressed || u->user_id) continue;
        int used = 0;
        for (size_t k = 0; k < b->n_chunks && !used; k++)
            used = b->chunks[k].user == i;
        if (!used) continue; /* only duplicates or refusals: no user is created */
        if (u->stale_id) {
            pvg_keycache_remove(&s->cache, u->p);
            st = PVG_B(s, user_delete, u->stale_id, u->p, err);
            if (st != PVG_OK) break;
        }
        st = PVG_B(s, user_insert, u->p, pvg_store_now(s), s->policy.default_personalization,
                   s->policy.default_analytics, &u->user_id, err);
        if (st == PVG_OK) st = PVG_B(s, key_put, u->p, u->kid, u->wrapped, sizeof u->wrapped, err);
    }
    if (st != PVG_OK) return st;
    for (size_t i = 0; i < b->n_tags; i++)
        b->tags[i].user_id = b->users[b->tags[i].user_id - 1].user_id;
    if ((st = tags_flush(s, b->tags, &b->n_tags, err)) != PVG_OK) return st;
    for (size_t i = 0; i < b->n_chunks && st == PVG_OK; i++) {
        put_chunk *c = &b->chunks[i];
        st = PVG_B(s, chunk_insert, b->users[c->user].user_id, c->exp, c->n, c->cid, sizeof c->cid,
                   c->sealed, c->len, err);
    }
    return st;
}

/* Events written a few at a time each make a small chunk: when a user has
 * 32 chunks of fewer than 16 events, at least twice as many as their
 * expiry days, merge the user's chunks (in a transaction of its own when
 * none is open; a failure leaves the events as they are). Large batches
 * never trigger it, so a heavy shopper posting 1,000 events at a time is
 * not rewritten. */
static void put_compact(put_batch *b)
{
    pvg_store *s = b->s;
    for (size_t i = 0; i < b->n_users; i++) {
        put_user *u = &b->users[i];
        if (u->suppressed || !u->user_id) continue;
        long long chunks = 0, days = 0;
        if (PVG_B(s, chunks_stats_user, u->user_id, 16, &chunks, &days, NULL) != PVG_OK) continue;
        if (chunks < 32 || chunks < 2 * days) continue;
        int own = !s->in_txn;
        if (own && pvg_store_begin(s, NULL) != PVG_OK) continue;
        pvg_status st = pvg_store_user_compact(s, u->user_id, u->p, u->key, 0, NULL);
        if (!own) continue;
        if (st == PVG_OK) {
            /* best effort: a failed commit rolls back and leaves the events as they are */
            st = pvg_store_commit(s, NULL);
            (void)st;
        } else {
            pvg_store_rollback(s);
        }
    }
}

static pvg_status put_run(pvg_store *s, const pvg_event_in *in, size_t n, pvg_event_out *out,
                          long long *stored, long long *dups, pvg_error *err)
{
    if (stored) *stored = 0;
    if (dups) *dups = 0;
    put_batch b;
    memset(&b, 0, sizeof b);
    b.s = s;
    b.in = in;
    b.out = out;
    b.n = n;
    b.ev = calloc(n ? n : 1, sizeof *b.ev);
    b.users = calloc(n ? n : 1, sizeof *b.users);
    b.slot_cap = 16;
    while (b.slot_cap < 2 * n)
        b.slot_cap *= 2;
    b.slots = calloc(b.slot_cap, sizeof *b.slots);
    pvg_status st = PVG_OK;
    if (!b.ev || !b.users || !b.slots) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (st == PVG_OK) st = put_validate(&b, err);
    if (st == PVG_OK) st = put_items(&b, err);
    if (st == PVG_OK && s->in_txn) { /* the caller's transaction: everything inside it */
        st = put_prepare(&b, err);
        if (st == PVG_OK) st = put_apply(&b, err);
    } else if (st == PVG_OK) {
        /* Optimistic: prepare with no lock, then commit if nothing changed
         * meanwhile; after a few lost races, prepare under the lock. */
        for (int attempt = 0;; attempt++) {
            int locked_prepare = attempt >= 3;
            int64_t gen0 = 0, gen1 = 0;
            put_reset(&b);
            b.stored = b.dups = 0;
            for (size_t i = 0; i < n; i++)
                if (b.ev[i].ok) out[i].status = PVG_OK, out[i].reason = NULL, out[i].message[0] = 0;
            if (locked_prepare) {
                if ((st = pvg_store_begin(s, err)) != PVG_OK) break;
                st = put_prepare(&b, err);
            } else {
                st = PVG_B(s, changes_get, &gen0, err);
                if (st == PVG_OK) st = put_prepare(&b, err);
                if (st == PVG_OK && b.stored == 0) break; /* nothing to write */
                if (st == PVG_OK) st = pvg_store_begin(s, err);
                if (st != PVG_OK) break;
                st = PVG_B(s, changes_get, &gen1, err);
                if (st == PVG_OK && gen1 != gen0) {
                    pvg_store_rollback(s);
                    continue; /* another writer: the preparation may be stale */
                }
            }
            if (st == PVG_OK) st = put_apply(&b, err);
            if (st == PVG_OK)
                st = pvg_store_commit(s, err);
            else
                pvg_store_rollback(s);
            break;
        }
    }
    if (st == PVG_OK && b.stored) put_compact(&b);
    if (st == PVG_OK) {
        if (stored) *stored = b.stored;
        if (dups) *dups = b.dups;
    }
    put_free(&b);
    return st;
}

pvg_status pvg_store_events_put(pvg_store *s, const pvg_event_in *in, size_t n, pvg_event_out *out,
                                long long *stored, long long *duplicates, pvg_error *err)
{
    if (s->in_txn)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "events put: not inside a transaction (it holds the write lock only "
                             "for its own commit)");
    return put_run(s, in, n, out, stored, duplicates, err);
}

pvg_status pvg_store_event_put(pvg_store *s, const char *ext_user, const pvg_event *in,
                               const char *dedup_key, int *outcome, pvg_error *err)
{
    if (outcome) *outcome = 0;
    pvg_event_in one = {ext_user, in, dedup_key, 0};
    pvg_event_out o;
    long long stored = 0;
    pvg_status st = put_run(s, &one, 1, &o, &stored, NULL, err);
    if (st != PVG_OK) return st;
    if (o.status != PVG_OK) return pvg_error_set(err, o.status, "%s", o.message);
    if (outcome) *outcome = stored > 0;
    return PVG_OK;
}

/* ---- file ingest ---- */

static void count_reason(pvg_ingest_stats *st, const char *reason)
{
    for (int i = 0; i < st->n_reasons; i++)
        if (strcmp(st->reasons[i].reason, reason) == 0) {
            st->reasons[i].count++;
            return;
        }
    if (st->n_reasons == PVG_REASON_MAX) { /* table full: the last slot counts the rest */
        snprintf(st->reasons[PVG_REASON_MAX - 1].reason, sizeof st->reasons[0].reason, "other");
        st->reasons[PVG_REASON_MAX - 1].count++;
        return;
    }
    pvg_reason_count *rc = &st->reasons[st->n_reasons++];
    snprintf(rc->reason, sizeof rc->reason, "%s", reason);
    rc->count = 1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct anon_ent {
    int64_t item_id;
    int type;
    long long count;
    double quantity;
} anon_ent;

typedef struct id_set { /* open addressing set of int64 > 0 */
    int64_t *v;
    size_t n, cap;
} id_set;

/* Users whose duplicate-index keys a bulk run keeps at once. */
enum { RUN_HELD_SLOTS = 64 };

typedef struct ingest_run {
    pvg_store *s;
    pvg_chunk_set chunks;
    occ_map occ;  /* content digest -> occurrences in this run */
    id_set fresh; /* users this run created: no record of theirs is held yet */
    /* keys of the duplicate index of users who had events before the run,
     * by user row modulo the slot count (a re-import meets a user again
     * per invoice); a run's own records never match them (occurrences) */
    tag_keys held[RUN_HELD_SLOTS];
    p16_set suppressed;    /* the suppression list */
    pvg_backend_tag *tags; /* this batch's new rows of the duplicate index */
    size_t n_tags, cap_tags;
    long long foreign_seen;
    anon_ent *anon; /* open addressing over (item_id, type); count 0 = empty */
    size_t anon_n, anon_cap;
    crypto_generichash_state anon_fp; /* fingerprint of the run's anonymous rows */
    item_map items;
    FILE *rejects;
    char last_user[128];
    unsigned char last_p[16];
    int have_last;
    int consent_known, consent_pers, consent_anal; /* last_p's switches, once looked up */
} ingest_run;

/* Returns 1 if id was in the set, 0 if added, -1 on out of memory. */
static int id_set_add(id_set *m, int64_t id)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 4096;
        int64_t *nv = calloc(ncap, sizeof *nv);
        if (!nv) return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->v[i]) {
                size_t j = (size_t)((uint64_t)m->v[i] * 0x9E3779B97F4A7C15ull >> 17) & (ncap - 1);
                while (nv[j])
                    j = (j + 1) & (ncap - 1);
                nv[j] = m->v[i];
            }
        free(m->v);
        m->v = nv;
        m->cap = ncap;
    }
    size_t j = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 17) & (m->cap - 1);
    while (m->v[j]) {
        if (m->v[j] == id) return 1;
        j = (j + 1) & (m->cap - 1);
    }
    m->v[j] = id;
    m->n++;
    return 0;
}

static int id_set_has(const id_set *m, int64_t id)
{
    if (!m->cap) return 0;
    size_t j = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 17) & (m->cap - 1);
    while (m->v[j]) {
        if (m->v[j] == id) return 1;
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

static void occ_clear(occ_map *m)
{
    free(m->slots);
    free(m->over);
    memset(m, 0, sizeof *m);
}

static int same_str(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static int replace_str(char **dst, const char *src)
{
    if (same_str(*dst, src)) return 0;
    free(*dst);
    *dst = src ? strdup(src) : NULL;
    return 1;
}

/* Finds or creates the row of an item; records newer item data (title,
 * category, price) to be written at the end of the import (a new item is
 * written at once). catalog 1: data is a catalogue row of the file (a
 * PVG_RECORD_ITEM: the operator's catalogue, no shopper in it), which
 * makes the item a catalog item; 0: the data came with an event or a
 * rejected row (a sale row's Description and price), which never does: a
 * shopper's row must not put an item into the public domain of DP
 * releases (docs/store.md "Catalog items and the DP domain"). */
static pvg_status item_seen(ingest_run *run, const char *ext, const pvg_item *data, int catalog,
                            int64_t *id, pvg_error *err)
{
    item_ent *e = item_map_get(&run->items, ext, 0);
    if (!e) {
        pvg_item it = {0};
        if (data)
            it = *data;
        else
            it.price = -1;
        it.ext_id = ext;
        int64_t rid;
        pvg_status st = pvg_store_item_put_ex(run->s, &it, 1, catalog, &rid, err);
        if (st != PVG_OK) return st;
        e = item_map_get(&run->items, ext, 1);
        if (!e) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        e->id = rid;
        e->catalog = catalog;
        e->price = it.price;
        e->title = it.title ? strdup(it.title) : NULL;
        e->category = it.category ? strdup(it.category) : NULL;
        *id = rid;
        return PVG_OK;
    }
    if (data) {
        if (catalog && !e->catalog) e->catalog = e->dirty = 1;
        if (data->title && replace_str(&e->title, data->title)) e->dirty = 1;
        if (data->category && replace_str(&e->category, data->category)) e->dirty = 1;
        if (data->price >= 0) { /* every price joins the typical price's window */
            if (!e->pend && !(e->pend = malloc(PVG_ITEM_PRICE_WINDOW * sizeof *e->pend)))
                return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            if (e->npend == PVG_ITEM_PRICE_WINDOW)
                memmove(e->pend, e->pend + 1, --e->npend * sizeof *e->pend);
            e->pend[e->npend++] = data->price;
            e->price = data->price;
            e->dirty = 1;
        }
    }
    *id = e->id;
    return PVG_OK;
}

static pvg_status flush_items(ingest_run *run, pvg_error *err)
{
    for (size_t i = 0; i < run->items.cap; i++) {
        item_ent *e = &run->items.slots[i];
        if (!e->ext || !e->dirty) continue;
        pvg_item it = {0};
        it.ext_id = e->ext;
        it.title = e->title;
        it.category = e->category;
        it.price = e->price;
        pvg_status st = pvg_store_item_put_ex(run->s, &it, 0, e->catalog, NULL, err);
        if (st == PVG_OK) st = pvg_store_item_prices_add(run->s, e->id, e->pend, e->npend, err);
        if (st != PVG_OK) return st;
        e->dirty = 0;
        e->npend = 0;
    }
    return PVG_OK;
}

static void write_reject(ingest_run *run, const pvg_record *rec)
{
    if (!run->rejects) return;
    /* The row's text is not copied: it may hold personal data, and no
     * reader's detail quotes it (import.h). The line number and byte offset
     * find the row in the source. */
    fprintf(run->rejects, "%ld\t%lld\t%s\t%s\t", rec->line, rec->offset, rec->reason,
            rec->field ? rec->field : "-");
    for (const char *p = rec->detail ? rec->detail : ""; *p; p++)
        fputc(*p == '\t' || *p == '\n' ? ' ' : *p, run->rejects);
    fputc('\n', run->rejects);
}

static void reject_row(ingest_run *run, pvg_ingest_stats *st, pvg_record *rec, const char *reason,
                       const char *detail)
{
    rec->kind = PVG_RECORD_REJECT;
    rec->reason = reason;
    rec->detail = detail;
    st->rejected++;
    count_reason(st, reason);
    write_reject(run, rec);
}

static int anon_add(ingest_run *run, int64_t item_id, int type, double quantity)
{
    if ((run->anon_n + 1) * 2 > run->anon_cap) {
        size_t ncap = run->anon_cap ? run->anon_cap * 2 : 4096;
        anon_ent *na = calloc(ncap, sizeof *na);
        if (!na) return -1;
        for (size_t i = 0; i < run->anon_cap; i++)
            if (run->anon[i].count) {
                anon_ent *a = &run->anon[i];
                size_t j =
                    ((uint64_t)a->item_id * 8 + (uint64_t)a->type) * 0x9E3779B97F4A7C15ull >> 20 &
                    (ncap - 1);
                while (na[j].count)
                    j = (j + 1) & (ncap - 1);
                na[j] = *a;
            }
        free(run->anon);
        run->anon = na;
        run->anon_cap = ncap;
    }
    size_t j = ((uint64_t)item_id * 8 + (uint64_t)type) * 0x9E3779B97F4A7C15ull >> 20 &
               (run->anon_cap - 1);
    while (run->anon[j].count && (run->anon[j].item_id != item_id || run->anon[j].type != type))
        j = (j + 1) & (run->anon_cap - 1);
    anon_ent *a = &run->anon[j];
    if (!a->count) {
        a->item_id = item_id;
        a->type = type;
        run->anon_n++;
    }
    a->count++;
    a->quantity += quantity;
    return 0;
}

static pvg_status ingest_record(ingest_run *run, pvg_record *rec, pvg_ingest_stats *stats,
                                pvg_error *err)
{
    pvg_store *s = run->s;
    pvg_status st;
    char detail[160];
    if (rec->kind == PVG_RECORD_REJECT) {
        /* A rejected row may still name a catalog item: add it when new,
         * without letting the row's data overwrite what is known. */
        int64_t id = 0;
        if (rec->has_item && rec->item.ext_id && !item_map_get(&run->items, rec->item.ext_id, 0)) {
            st = pvg_store_item_id_for(s, rec->item.ext_id, 0, &id, err);
            if (st == PVG_ERR_NOT_FOUND) {
                pvg_error_clear(err);
                st = item_seen(run, rec->item.ext_id, &rec->item, 0, &id, err);
            }
            if (st != PVG_OK) return st;
        }
        stats->rejected++;
        count_reason(stats, rec->reason);
        write_reject(run, rec);
        return PVG_OK;
    }
    if (rec->kind == PVG_RECORD_ITEM) {
        int64_t id;
        if ((st = item_seen(run, rec->item.ext_id, &rec->item, 1, &id, err)) != PVG_OK) return st;
        stats->accepted++;
        stats->items_upserted++;
        return PVG_OK;
    }
    pvg_event ev = rec->event;
    if (!s->policy.allowed[ev.type]) {
        snprintf(detail, sizeof detail, "%s events are not kept under the data policy",
                 pvg_event_type_name(ev.type));
        reject_row(run, stats, rec, "policy_type_not_allowed", detail);
        return PVG_OK;
    }
    int64_t item_id = 0;
    if (ev.item && (st = item_seen(run, ev.item, rec->has_item ? &rec->item : NULL, 0, &item_id,
                                   err)) != PVG_OK)
        return st;
    unsigned dropped = ev.fields & ~s->policy.fields[ev.type];
    int64_t exp = expires_day(s, &ev);
    if (exp <= pvg_store_today(s)) {
        reject_row(run, stats, rec, "retention_expired",
                   "the event is older than its retention period under the data policy");
        return PVG_OK;
    }
    for (int b = 0; b < PVG_FIELD_COUNT; b++)
        if (dropped & (1u << b)) stats->dropped_fields[b]++;
    unsigned char digest[16], rid[PVG_RID_BYTES];
    if (rec->kind == PVG_RECORD_ANONYMOUS) {
        content_digest(s, (const unsigned char *)"anonymous", 9, &ev, digest);
        long occ = occ_next(&run->occ, digest);
        if (occ < 0) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        record_id(s, digest, (uint32_t)occ, rid);
        crypto_generichash_update(&run->anon_fp, rid, PVG_RID_BYTES);
        if (item_id && anon_add(run, item_id, (int)ev.type,
                                (ev.fields & PVG_FIELD_QUANTITY) ? ev.quantity : 1.0) != 0)
            return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        stats->accepted++;
        stats->anonymous++;
        return PVG_OK;
    }
    if (!run->have_last || strcmp(run->last_user, rec->user) != 0) {
        pvg_store_pseudonym(s, rec->user, run->last_p);
        snprintf(run->last_user, sizeof run->last_user, "%s", rec->user);
        run->have_last = 1;
        run->consent_known = 0;
    }
    if (s->foreign_writes != run->foreign_seen) { /* another writer: trust nothing cached */
        run->consent_known = 0;
        free(run->fresh.v);
        memset(&run->fresh, 0, sizeof run->fresh);
        for (size_t i = 0; i < RUN_HELD_SLOTS; i++)
            tag_keys_clear(&run->held[i]);
        if ((st = suppressed_load(s, &run->suppressed, err)) != PVG_OK) return st;
        run->foreign_seen = s->foreign_writes;
    }
    content_digest(s, run->last_p, 16, &ev, digest);
    long occ = occ_next(&run->occ, digest);
    if (occ < 0) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    stats->accepted++;
    if (p16_set_has(&run->suppressed, run->last_p)) { /* erased: never brought back */
        stats->suppressed++;
        return PVG_OK;
    }
    if (pvg_policy_collect_gated(&s->policy, ev.type)) {
        if (!run->consent_known) {
            pvg_backend_user row;
            run->consent_pers = s->policy.default_personalization;
            run->consent_anal = s->policy.default_analytics;
            st = PVG_B(s, user_get, run->last_p, &row, err);
            if (st == PVG_OK) {
                run->consent_pers = row.consent_personalization;
                run->consent_anal = row.consent_analytics;
            } else if (st == PVG_ERR_NOT_FOUND)
                pvg_error_clear(err);
            else
                return st;
            run->consent_known = 1;
        }
        if (!pvg_policy_collect_allowed(&s->policy, ev.type, run->consent_pers,
                                        run->consent_anal)) {
            stats->no_consent++;
            return PVG_OK;
        }
    }
    pvg_keycache_entry *u;
    int created;
    if ((st = pvg_store_user_resolve(s, run->last_p, 1, &u, &created, err)) != PVG_OK) return st;
    if (created && id_set_add(&run->fresh, u->user_id) < 0)
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    record_id(s, digest, (uint32_t)occ, rid);
    /* Only users who had events before this run can hold this record: a
     * run's own records differ by their occurrence numbers. */
    int held = 0;
    if (!created && !id_set_has(&run->fresh, u->user_id)) {
        tag_keys *t = &run->held[(uint64_t)u->user_id % RUN_HELD_SLOTS];
        if ((st = tag_keys_load(s, t, u->user_id, err)) != PVG_OK) return st;
        held = tag_keys_has(t, rid);
    }
    if (held) {
        stats->duplicates++;
        return PVG_OK;
    }
    ev.fields &= s->policy.fields[ev.type];
    if ((st = queue_event(&run->chunks, u, &ev, item_id, rid, exp, err)) != PVG_OK) return st;
    if (tag_push(&run->tags, &run->n_tags, &run->cap_tags, u->user_id, exp, rid) != 0)
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    stats->stored++;
    return PVG_OK;
}

/* Writes the run's anonymous counts under the fingerprint of its anonymous
 * rows (replacing the counts of an earlier import of the same rows). */
static pvg_status flush_anon(ingest_run *run, pvg_error *err)
{
    pvg_store *s = run->s;
    unsigned char fp[16];
    crypto_generichash_final(&run->anon_fp, fp, sizeof fp);
    pvg_status st = PVG_OK;
    for (size_t i = 0; i < run->anon_cap && st == PVG_OK; i++) {
        anon_ent *a = &run->anon[i];
        if (!a->count) continue;
        st = PVG_B(s, anon_put, fp, a->item_id, a->type, a->count, a->quantity, err);
    }
    return st;
}

static void fill_totals(pvg_store *s, pvg_ingest_stats *stats)
{
    pvg_store_counts c;
    if (pvg_store_counts_get(s, &c, NULL) == PVG_OK) {
        stats->users = c.users;
        stats->items = c.items;
        stats->events = c.events;
    }
}

pvg_status pvg_store_ingest_file(pvg_store *s, const char *path, pvg_format fmt,
                                 const pvg_ingest_options *opts, pvg_ingest_stats *stats,
                                 pvg_error *err)
{
    memset(stats, 0, sizeof *stats);
    double t0 = now_seconds();
    pvg_ingest_options o = {0};
    if (opts) o = *opts;
    long batch_rows = o.batch_rows > 0 ? o.batch_rows : 50000;
    pvg_reader *r = NULL;
    pvg_status st = pvg_reader_open(path, fmt, &o.reader, &r, err);
    if (st != PVG_OK) return st;
    ingest_run run;
    memset(&run, 0, sizeof run);
    run.s = s;
    run.foreign_seen = s->foreign_writes;
    crypto_generichash_init(&run.anon_fp, s->keys.dedup, PVG_KEY_BYTES, 16);
    if ((st = suppressed_load(s, &run.suppressed, err)) != PVG_OK) {
        pvg_reader_free(r);
        return st;
    }
    if (o.reject_path) {
        /* Owner-only, and never over an earlier run's rejects. */
        int fd = open(o.reject_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 && !(run.rejects = fdopen(fd, "w"))) close(fd);
        if (!run.rejects) {
            int e = errno;
            pvg_reader_free(r);
            if (e == EEXIST)
                return pvg_error_set_at(
                    err, PVG_ERR_IO, o.reject_path, 0, 0, -1,
                    "the reject file exists already (an earlier run's rejects are "
                    "never overwritten): move it or name another file");
            return pvg_error_set_at(err, PVG_ERR_IO, o.reject_path, 0, 0, -1,
                                    "cannot create the reject file: %s", strerror(e));
        }
        const char *base = strrchr(path, '/');
        fprintf(run.rejects, "# line\toffset\treason\tfield\tdetail  (rejects of %s, format %s)\n",
                base ? base + 1 : path, pvg_format_name(fmt));
    }
    if ((st = pvg_store_begin(s, err)) != PVG_OK) goto done;
    long in_batch = 0;
    pvg_record rec;
    for (;;) {
        int rc = pvg_reader_next(r, &rec, err);
        if (rc < 0) {
            st = (pvg_status)rc;
            break;
        }
        if (rc == 0) break;
        stats->read++;
        if ((st = ingest_record(&run, &rec, stats, err)) != PVG_OK) {
            if (err && err->line == 0) {
                char text[PVG_ERROR_TEXT_LEN];
                snprintf(text, sizeof text, "%s", err->text);
                pvg_error_set_at(err, st, path, rec.line, 0, rec.offset, "%s", text);
            }
            break;
        }
        if (++in_batch >= batch_rows) {
            if ((st = tags_flush(s, run.tags, &run.n_tags, err)) != PVG_OK ||
                (st = pvg_chunks_flush(s, &run.chunks, err)) != PVG_OK ||
                (st = pvg_store_commit(s, err)) != PVG_OK)
                break;
            stats->batches_committed++;
            if (run.rejects) fflush(run.rejects);
            in_batch = 0;
            if (o.on_batch) {
                stats->seconds = now_seconds() - t0;
                o.on_batch(o.ctx, stats);
            }
            if ((st = pvg_store_begin(s, err)) != PVG_OK) break;
        }
    }
    if (st == PVG_OK) st = flush_items(&run, err);
    if (st == PVG_OK) st = tags_flush(s, run.tags, &run.n_tags, err);
    if (st == PVG_OK) st = pvg_chunks_flush(s, &run.chunks, err);
    if (st == PVG_OK && run.anon_n) st = flush_anon(&run, err);
    if (st == PVG_OK) {
        st = pvg_store_commit(s, err);
        if (st == PVG_OK) stats->batches_committed++;
    } else if (s->in_txn)
        pvg_store_rollback(s);
    if (st == PVG_OK && !o.no_sweep) st = pvg_store_retention_sweep(s, &stats->expired_swept, err);
    if (st == PVG_OK) {
        const char *base = strrchr(path, '/');
        pvg_backend_ingest_run ir = {pvg_store_now(s) - (int64_t)(now_seconds() - t0),
                                     pvg_store_now(s),
                                     pvg_format_name(fmt),
                                     base ? base + 1 : path,
                                     stats->read,
                                     stats->accepted,
                                     stats->rejected,
                                     stats->stored,
                                     stats->duplicates,
                                     stats->anonymous};
        (void)PVG_B(s, ingest_run_insert, &ir,
                    NULL); /* the log is informative: a failure loses no data */
    }
done:
    if (run.rejects && fclose(run.rejects) != 0 && st == PVG_OK)
        st = pvg_error_set_at(err, PVG_ERR_IO, o.reject_path, 0, 0, -1, "write failed: %s",
                              strerror(errno));
    pvg_reader_free(r);
    item_map_free(&run.items);
    pvg_chunks_free(&run.chunks);
    occ_clear(&run.occ);
    free(run.fresh.v);
    for (size_t i = 0; i < RUN_HELD_SLOTS; i++)
        tag_keys_clear(&run.held[i]);
    p16_set_free(&run.suppressed);
    free(run.tags);
    free(run.anon);
    fill_totals(s, stats);
    stats->seconds = now_seconds() - t0;
    return st;
}

pvg_status pvg_store_retention_sweep(pvg_store *s, long long *deleted, pvg_error *err)
{
    if (deleted) *deleted = 0;
    int64_t today = pvg_store_today(s);
    long long n = 0;
    pvg_status st = PVG_B(s, chunks_sweep, today, &n, err);
    if (st != PVG_OK) return st;
    if (deleted) *deleted = n;
    /* the assistant's conversations past their retention (conversation.c) */
    long long nc = 0;
    st = PVG_B(s, convs_sweep, today, &nc, err);
    if (st != PVG_OK) return st;
    n += nc;
    /* Users left with no events keep their row and key (consent; they may
     * come back). Expired records leave the write-ahead log too (best
     * effort: a busy reader only delays it). */
    if (n > 0) (void)PVG_B(s, checkpoint, NULL);
    return PVG_OK;
}
