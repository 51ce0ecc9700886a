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
 * repeats) keeps every repeat. Rids are sealed inside the user's chunks; the
 * first time a run touches a user who has events already, it decrypts that
 * user's rids into memory and skips events whose rid is held. If another
 * process writes meanwhile (the change counter moved), the loaded sets are
 * dropped and reloaded. dedup_key is derived from the pepper, so a rid
 * reveals nothing without the key file.
 */
#include "store/store_priv.h"
#include "store/text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
} item_ent;

typedef struct item_map {
    item_ent *slots;
    size_t cap, n;
} item_map;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static void item_map_free(item_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].ext) {
            free(m->slots[i].ext);
            free(m->slots[i].title);
            free(m->slots[i].category);
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
                while (ns[j].ext) j = (j + 1) & (ncap - 1);
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

/* Counts of 16-byte digests, keyed by their first 8 bytes (digests are
 * keyed BLAKE2b outputs: a clash of 64-bit heads among a run's rows has
 * probability ~ rows^2 / 2^65). 16-byte slots keep the table cache-friendly. */
typedef struct occ_ent {
    uint64_t head; /* 0 = empty (a zero head is stored as 1) */
    uint64_t count;
} occ_ent;

typedef struct occ_map {
    occ_ent *slots;
    size_t cap, n;
} occ_map;

static uint64_t occ_head(const unsigned char d[16])
{
    uint64_t h;
    memcpy(&h, d, 8);
    return h ? h : 1;
}

/* Returns how many times the digest was seen before (and counts this one),
 * or -1 when out of memory. */
static long occ_next(occ_map *m, const unsigned char d[16])
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 4 : 1u << 16;
        occ_ent *ns = calloc(ncap, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].head) {
                size_t j = m->slots[i].head & (ncap - 1);
                while (ns[j].head) j = (j + 1) & (ncap - 1);
                ns[j] = m->slots[i];
            }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    uint64_t h = occ_head(d);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].head) {
        if (m->slots[j].head == h) return (long)m->slots[j].count++;
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j].head = h;
    m->slots[j].count = 1;
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
    if (ev->item) crypto_generichash_update(&st, (const unsigned char *)ev->item, strlen(ev->item) + 1);
    crypto_generichash_final(&st, out, 16);
}

static void record_id(const pvg_store *s, const unsigned char digest[16], uint32_t occurrence,
                      unsigned char rid[PVG_RID_BYTES])
{
    unsigned char in[20];
    memcpy(in, digest, 16);
    for (int i = 0; i < 4; i++) in[16 + i] = (unsigned char)(occurrence >> (8 * i));
    crypto_generichash_state st = *s->dedup_state;
    crypto_generichash_update(&st, in, sizeof in);
    crypto_generichash_final(&st, rid, PVG_RID_BYTES);
    sodium_memzero(&st, sizeof st);
}

/* ---- storing one event ---- */

static int64_t expires_day(const pvg_store *s, const pvg_event *ev)
{
    int64_t basis = s->policy.basis_collection ? pvg_store_today(s)
                                               : (ev->ts >= 0 ? ev->ts / 86400 : 0);
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
        return pvg_error_set(err, PVG_ERR_INVALID, "event too large (query or country over %d bytes)",
                             PLAIN_MAX / 2);
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
            if (n > 1024) return pvg_error_set(err, PVG_ERR_INVALID, "%s: longer than 1024 bytes", names[i]);
            long long bad = pvg_utf8_invalid_at(strs[i], n);
            if (bad >= 0)
                return pvg_error_set(err, PVG_ERR_INVALID, "%s: invalid UTF-8 at byte %lld", names[i], bad);
        }
    return PVG_OK;
}

pvg_status pvg_store_event_put(pvg_store *s, const char *ext_user, const pvg_event *in,
                               const char *dedup_key, int *outcome, pvg_error *err)
{
    if (outcome) *outcome = 0;
    if (!ext_user || !*ext_user) return pvg_error_set(err, PVG_ERR_INVALID, "user: required");
    if (strlen(ext_user) > 256) return pvg_error_set(err, PVG_ERR_INVALID, "user: longer than 256 bytes");
    pvg_status st = validate_event(in, err);
    if (st != PVG_OK) return st;
    if (!s->policy.allowed[in->type])
        return pvg_error_set(err, PVG_ERR_POLICY, "type: %s events are not kept under the data policy",
                             pvg_event_type_name(in->type));
    pvg_event ev = *in;
    ev.fields &= s->policy.fields[ev.type];
    int64_t exp = expires_day(s, &ev);
    if (exp <= pvg_store_today(s))
        return pvg_error_set(err, PVG_ERR_POLICY, "ts: the event is past its retention period already");
    int own = !s->in_txn;
    if (own && (st = pvg_store_begin(s, err)) != PVG_OK) return st;
    unsigned char p[16], digest[16], rid[PVG_RID_BYTES];
    pvg_store_pseudonym(s, ext_user, p);
    pvg_keycache_entry *u;
    int64_t item_id = 0;
    if (ev.item && (st = pvg_store_item_id_for(s, ev.item, 1, &item_id, err)) != PVG_OK) goto out;
    if ((st = pvg_store_user_resolve(s, p, 1, &u, NULL, err)) != PVG_OK) goto out;
    if (dedup_key) {
        crypto_generichash_state h;
        crypto_generichash_init(&h, s->keys.dedup, PVG_KEY_BYTES, 16);
        crypto_generichash_update(&h, p, 16);
        crypto_generichash_update(&h, (const unsigned char *)"client-key", 10);
        crypto_generichash_update(&h, (const unsigned char *)dedup_key, strlen(dedup_key));
        crypto_generichash_final(&h, digest, 16);
    } else
        content_digest(s, p, 16, in, digest);
    record_id(s, digest, 0, rid);
    unsigned char (*held)[PVG_RID_BYTES] = NULL;
    size_t n_held = 0;
    st = pvg_store_user_rids(s, u->user_id, u->pseudonym, u->key, &held, &n_held, err);
    int dup = 0;
    for (size_t i = 0; st == PVG_OK && i < n_held && !dup; i++) dup = memcmp(held[i], rid, PVG_RID_BYTES) == 0;
    free(held);
    if (st == PVG_OK && !dup) {
        pvg_chunk_set cs;
        memset(&cs, 0, sizeof cs);
        st = queue_event(&cs, u, &ev, item_id, rid, exp, err);
        if (st == PVG_OK) st = pvg_chunks_flush(s, &cs, err);
        pvg_chunks_free(&cs);
        /* Events written one at a time each make a chunk: merge them now
         * and then, so that reading a user stays a few decryptions. */
        if (st == PVG_OK) st = pvg_store_user_compact(s, u->user_id, u->pseudonym, u->key, 32, err);
        if (outcome) *outcome = st == PVG_OK;
    }
out:
    if (own) {
        if (st == PVG_OK)
            st = pvg_store_commit(s, err);
        else
            pvg_store_rollback(s);
    }
    return st;
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

typedef struct ingest_run {
    pvg_store *s;
    pvg_chunk_set chunks;
    occ_map occ;          /* content digest -> occurrences in this run */
    occ_map held;         /* record ids of events held for the loaded users */
    id_set loaded;        /* users whose record ids are in `held` */
    id_set history;       /* loaded users that had events before this run */
    long long foreign_seen;
    anon_ent *anon;       /* open addressing over (item_id, type); count 0 = empty */
    size_t anon_n, anon_cap;
    crypto_generichash_state anon_fp; /* fingerprint of the run's anonymous rows */
    item_map items;
    FILE *rejects;
    char last_user[128];
    unsigned char last_p[16];
    int have_last;
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
                while (nv[j]) j = (j + 1) & (ncap - 1);
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

/* Finds or creates the catalog row of an item; records newer catalog data
 * (title, category, price) to be written at the end of the import (a new
 * item is written at once). */
static pvg_status item_seen(ingest_run *run, const char *ext, const pvg_item *data, int64_t *id,
                            pvg_error *err)
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
        pvg_status st = pvg_store_item_put(run->s, &it, &rid, err);
        if (st != PVG_OK) return st;
        e = item_map_get(&run->items, ext, 1);
        if (!e) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        e->id = rid;
        e->price = it.price;
        e->title = it.title ? strdup(it.title) : NULL;
        e->category = it.category ? strdup(it.category) : NULL;
        *id = rid;
        return PVG_OK;
    }
    if (data) {
        if (data->title && replace_str(&e->title, data->title)) e->dirty = 1;
        if (data->category && replace_str(&e->category, data->category)) e->dirty = 1;
        if (data->price >= 0 && data->price != e->price) {
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
        pvg_status st = pvg_store_item_put(run->s, &it, NULL, err);
        if (st != PVG_OK) return st;
        e->dirty = 0;
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
                size_t j = ((uint64_t)a->item_id * 8 + (uint64_t)a->type) * 0x9E3779B97F4A7C15ull >> 20 & (ncap - 1);
                while (na[j].count) j = (j + 1) & (ncap - 1);
                na[j] = *a;
            }
        free(run->anon);
        run->anon = na;
        run->anon_cap = ncap;
    }
    size_t j = ((uint64_t)item_id * 8 + (uint64_t)type) * 0x9E3779B97F4A7C15ull >> 20 & (run->anon_cap - 1);
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
                st = item_seen(run, rec->item.ext_id, &rec->item, &id, err);
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
        if ((st = item_seen(run, rec->item.ext_id, &rec->item, &id, err)) != PVG_OK) return st;
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
    if (ev.item && (st = item_seen(run, ev.item, rec->has_item ? &rec->item : NULL, &item_id, err)) != PVG_OK)
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
    }
    pvg_keycache_entry *u;
    int created;
    if ((st = pvg_store_user_resolve(s, run->last_p, 1, &u, &created, err)) != PVG_OK) return st;
    if (s->foreign_writes != run->foreign_seen) { /* another writer: reload what is held */
        occ_clear(&run->held);
        free(run->loaded.v);
        memset(&run->loaded, 0, sizeof run->loaded);
        free(run->history.v);
        memset(&run->history, 0, sizeof run->history);
        run->foreign_seen = s->foreign_writes;
    }
    int was_loaded = id_set_add(&run->loaded, u->user_id);
    if (was_loaded < 0) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (!was_loaded && !created) {
        unsigned char (*rids)[PVG_RID_BYTES] = NULL;
        size_t n = 0;
        st = pvg_store_user_rids(s, u->user_id, u->pseudonym, u->key, &rids, &n, err);
        for (size_t i = 0; st == PVG_OK && i < n; i++)
            if (occ_next(&run->held, rids[i]) < 0) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        free(rids);
        if (st == PVG_OK && n > 0 && id_set_add(&run->history, u->user_id) < 0)
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        if (st != PVG_OK) return st;
    }
    content_digest(s, run->last_p, 16, &ev, digest);
    long occ = occ_next(&run->occ, digest);
    if (occ < 0) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    record_id(s, digest, (uint32_t)occ, rid);
    /* Only users who had events before this run can hold this record: a
     * run's own records differ by their occurrence numbers. */
    long held = 0;
    if (run->history.n && id_set_has(&run->history, u->user_id)) {
        held = occ_next(&run->held, rid);
        if (held < 0) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    stats->accepted++;
    if (held > 0) {
        stats->duplicates++;
        return PVG_OK;
    }
    ev.fields &= s->policy.fields[ev.type];
    if ((st = queue_event(&run->chunks, u, &ev, item_id, rid, exp, err)) != PVG_OK) return st;
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
    if (o.reject_path) {
        /* Owner-only, and never over an earlier run's rejects. */
        int fd = open(o.reject_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 && !(run.rejects = fdopen(fd, "w"))) close(fd);
        if (!run.rejects) {
            int e = errno;
            pvg_reader_free(r);
            if (e == EEXIST)
                return pvg_error_set_at(err, PVG_ERR_IO, o.reject_path, 0, 0, -1,
                                        "the reject file exists already (an earlier run's rejects are "
                                        "never overwritten): move it or name another file");
            return pvg_error_set_at(err, PVG_ERR_IO, o.reject_path, 0, 0, -1, "cannot create the reject file: %s",
                                    strerror(e));
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
            if ((st = pvg_chunks_flush(s, &run.chunks, err)) != PVG_OK ||
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
        pvg_backend_ingest_run ir = {pvg_store_now(s) - (int64_t)(now_seconds() - t0), pvg_store_now(s),
                                     pvg_format_name(fmt), base ? base + 1 : path, stats->read,
                                     stats->accepted, stats->rejected, stats->stored, stats->duplicates,
                                     stats->anonymous};
        (void)PVG_B(s, ingest_run_insert, &ir, NULL); /* the log is informative: a failure loses no data */
    }
done:
    if (run.rejects && fclose(run.rejects) != 0 && st == PVG_OK)
        st = pvg_error_set_at(err, PVG_ERR_IO, o.reject_path, 0, 0, -1, "write failed: %s", strerror(errno));
    pvg_reader_free(r);
    item_map_free(&run.items);
    pvg_chunks_free(&run.chunks);
    occ_clear(&run.occ);
    occ_clear(&run.held);
    free(run.loaded.v);
    free(run.history.v);
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
    /* Users left with no events keep their row and key (consent; they may
     * come back). Expired records leave the write-ahead log too (best
     * effort: a busy reader only delays it). */
    if (n > 0) (void)PVG_B(s, checkpoint, NULL);
    return PVG_OK;
}
