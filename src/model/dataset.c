/*
 * dataset.c - interaction datasets for the recommenders: id maps (users by
 * 16-byte key, items by external id), weighted events, loading from a file
 * reader or from the store, and the aggregation of events into sparse CSR
 * matrices.
 */
#include "model/model_internal.h"
#include "store/store_internal.h"

#include <privguide/rng.h>
#include <privguide/search.h>

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pvg_event_weights_default(pvg_event_weights *w)
{
    memset(w, 0, sizeof *w);
    w->w[PVG_EVENT_VIEW] = 1.0;
    w->w[PVG_EVENT_CART] = 2.0;
    w->w[PVG_EVENT_PURCHASE] = 4.0;
    w->w[PVG_EVENT_RETURN] = -4.0;
    w->w[PVG_EVENT_RATING] = 1.0;
    w->w[PVG_EVENT_SEARCH] = PVG_SEARCH_WEIGHT_DEFAULT;
}

pvg_status pvg_event_weights_parse(const char *spec, pvg_event_weights *w, pvg_error *err)
{
    const char *p = spec;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char buf[64];
        if (len == 0 || len >= sizeof buf)
            return pvg_error_set(err, PVG_ERR_INVALID, "event weights: bad entry at offset %ld",
                                 (long)(p - spec));
        memcpy(buf, p, len);
        buf[len] = 0;
        char *eq = strchr(buf, '=');
        if (!eq)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "event weights: '%s' is not TYPE=WEIGHT (e.g. purchase=4)", buf);
        *eq = 0;
        pvg_event_type t;
        if (pvg_event_type_parse(buf, &t) != PVG_OK)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "event weights: unknown event type '%s' (expected view, cart, "
                                 "purchase, return, rating or search)",
                                 buf);
        char *end;
        double v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || v != v)
            return pvg_error_set(err, PVG_ERR_INVALID, "event weights: '%s' for %s is not a number",
                                 eq + 1, buf);
        w->w[t] = v;
        p = comma ? comma + 1 : NULL;
    }
    return PVG_OK;
}

pvg_status pvg_dataset_new(pvg_user_keying keying, const pvg_event_weights *weights,
                           const unsigned char salt_or_null[16], pvg_dataset **out, pvg_error *err)
{
    *out = NULL;
    if (keying != PVG_KEY_SALTED_HASH && keying != PVG_KEY_STORE_PSEUDONYM)
        return pvg_error_set(err, PVG_ERR_INVALID, "dataset: unknown user keying %d", (int)keying);
    if (pvg_init() != PVG_OK) return pvg_error_set(err, PVG_ERR_INTERNAL, "library init failed");
    pvg_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return pvg_error_set(err, PVG_ERR_NOMEM, "dataset: out of memory");
    ds->keying = keying;
    if (weights)
        ds->w = *weights;
    else
        pvg_event_weights_default(&ds->w);
    if (salt_or_null)
        memcpy(ds->salt, salt_or_null, 16);
    else if (keying == PVG_KEY_SALTED_HASH)
        randombytes_buf(ds->salt, 16);
    *out = ds;
    return PVG_OK;
}

void pvg_dataset_free(pvg_dataset *ds)
{
    if (!ds) return;
    for (size_t i = 0; i < ds->n_items; i++)
        free(ds->item_ids[i]);
    free(ds->item_ids);
    if (ds->item_titles)
        for (size_t i = 0; i < ds->n_items && i < ds->cap_titles; i++)
            free(ds->item_titles[i]);
    free(ds->item_titles);
    free(ds->ihash);
    free(ds->user_keys);
    free(ds->uhash);
    free(ds->ev_user);
    free(ds->ev_item);
    free(ds->ev_w);
    free(ds->ev_ts);
    pvg_search_index_free(ds->search_ix);
    sodium_memzero(ds->salt, sizeof ds->salt);
    free(ds);
}

size_t pvg_dataset_n_users(const pvg_dataset *ds)
{
    return ds->n_users;
}
size_t pvg_dataset_n_items(const pvg_dataset *ds)
{
    return ds->n_items;
}
size_t pvg_dataset_n_events(const pvg_dataset *ds)
{
    return ds->n_ev;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    /* FNV-1a 64; the keys are already uniform (hashes) or short ids. */
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static int rehash(uint32_t **tab, size_t *cap, size_t n, const pvg_dataset *ds, int users)
{
    size_t nc = *cap ? *cap * 2 : 4096;
    uint32_t *t = calloc(nc, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = users ? hash_bytes(ds->user_keys + 16 * i, 16)
                           : hash_bytes(ds->item_ids[i], strlen(ds->item_ids[i]));
        size_t s = h & (nc - 1);
        while (t[s])
            s = (s + 1) & (nc - 1);
        t[s] = (uint32_t)(i + 1);
    }
    free(*tab);
    *tab = t;
    *cap = nc;
    return 0;
}

static long user_index(pvg_dataset *ds, const unsigned char key[16], int create)
{
    if (ds->uhash_cap) {
        size_t s = hash_bytes(key, 16) & (ds->uhash_cap - 1);
        while (ds->uhash[s]) {
            uint32_t u = ds->uhash[s] - 1;
            if (memcmp(ds->user_keys + 16 * (size_t)u, key, 16) == 0) return u;
            s = (s + 1) & (ds->uhash_cap - 1);
        }
    }
    if (!create) return -1;
    if (ds->n_users >= 0x7fffffffu) return -2;
    if ((ds->n_users + 1) * 2 > ds->uhash_cap &&
        rehash(&ds->uhash, &ds->uhash_cap, ds->n_users, ds, 1))
        return -3;
    if (grow((void **)&ds->user_keys, &ds->cap_users, ds->n_users + 1, 16)) return -3;
    memcpy(ds->user_keys + 16 * ds->n_users, key, 16);
    size_t s = hash_bytes(key, 16) & (ds->uhash_cap - 1);
    while (ds->uhash[s])
        s = (s + 1) & (ds->uhash_cap - 1);
    ds->uhash[s] = (uint32_t)(ds->n_users + 1);
    return (long)ds->n_users++;
}

static long item_index(pvg_dataset *ds, const char *id, int create)
{
    size_t len = strlen(id);
    uint64_t h = hash_bytes(id, len);
    if (ds->ihash_cap) {
        size_t s = h & (ds->ihash_cap - 1);
        while (ds->ihash[s]) {
            uint32_t i = ds->ihash[s] - 1;
            if (strcmp(ds->item_ids[i], id) == 0) return i;
            s = (s + 1) & (ds->ihash_cap - 1);
        }
    }
    if (!create) return -1;
    if (ds->n_items >= 0x7fffffffu) return -2;
    if ((ds->n_items + 1) * 2 > ds->ihash_cap &&
        rehash(&ds->ihash, &ds->ihash_cap, ds->n_items, ds, 0))
        return -3;
    size_t cap = ds->cap_items;
    if (grow((void **)&ds->item_ids, &cap, ds->n_items + 1, sizeof(char *))) return -3;
    ds->cap_items = cap;
    char *copy = malloc(len + 1);
    if (!copy) return -3;
    memcpy(copy, id, len + 1);
    ds->item_ids[ds->n_items] = copy;
    size_t s = h & (ds->ihash_cap - 1);
    while (ds->ihash[s])
        s = (s + 1) & (ds->ihash_cap - 1);
    ds->ihash[s] = (uint32_t)(ds->n_items + 1);
    return (long)ds->n_items++;
}

int pvg_dataset_set_item_title(pvg_dataset *ds, size_t i, const char *title)
{
    if (!title || !title[0] || i >= ds->n_items) return 0;
    if (i >= ds->cap_titles) {
        size_t nc = ds->cap_titles ? ds->cap_titles : 1024;
        while (nc <= i)
            nc *= 2;
        char **nt = realloc(ds->item_titles, nc * sizeof *nt);
        if (!nt) return -1;
        memset(nt + ds->cap_titles, 0, (nc - ds->cap_titles) * sizeof *nt);
        ds->item_titles = nt;
        ds->cap_titles = nc;
    }
    if (ds->item_titles[i]) return 0;
    return (ds->item_titles[i] = strdup(title)) ? 0 : -1;
}

const char *pvg_dataset_item_title(const pvg_dataset *ds, size_t i)
{
    return ds->item_titles && i < ds->cap_titles && i < ds->n_items ? ds->item_titles[i] : NULL;
}

long pvg_dataset_find_item(const pvg_dataset *ds, const char *id)
{
    return item_index((pvg_dataset *)ds, id, 0);
}

/* The weighted contribution of one event (0 = ignore). */
static double event_weight(const pvg_event_weights *w, const pvg_event *ev)
{
    if ((int)ev->type < 0 || ev->type >= PVG_EVENT_TYPE_COUNT) return 0;
    if (ev->type == PVG_EVENT_RETURN) return -fabs(w->w[PVG_EVENT_PURCHASE]);
    if (ev->type == PVG_EVENT_PURCHASE && (ev->fields & PVG_FIELD_QUANTITY) && ev->quantity < 0)
        return -fabs(w->w[PVG_EVENT_PURCHASE]);
    /* a rating weighs w_rating x its value (tsv weights arrive as ratings) */
    if (ev->type == PVG_EVENT_RATING && (ev->fields & PVG_FIELD_RATING))
        return w->w[PVG_EVENT_RATING] * ev->rating;
    return w->w[ev->type];
}

static pvg_status add_search(pvg_dataset *ds, const unsigned char user_key[16], const pvg_event *ev,
                             pvg_error *err);
static pvg_status add_cell(pvg_dataset *ds, const unsigned char user_key[16], const pvg_event *ev,
                           pvg_error *err);

pvg_status pvg_dataset_add(pvg_dataset *ds, const unsigned char user_key[16], const pvg_event *ev,
                           pvg_error *err)
{
    if (ev->type == PVG_EVENT_SEARCH && (!ev->item || !ev->item[0]))
        return add_search(ds, user_key, ev, err);
    size_t before = ds->n_ev;
    pvg_status st = add_cell(ds, user_key, ev, err);
    if (st == PVG_OK && ev->type == PVG_EVENT_SEARCH && ds->n_ev > before) ds->search_events++;
    return st;
}

static pvg_status add_cell(pvg_dataset *ds, const unsigned char user_key[16], const pvg_event *ev,
                           pvg_error *err)
{
    if (!ev->item || !ev->item[0]) return PVG_OK;
    double wt = event_weight(&ds->w, ev);
    if (wt == 0) return PVG_OK;
    long u = user_index(ds, user_key, 1);
    long i = u >= 0 ? item_index(ds, ev->item, 1) : u;
    if (u == -2 || i == -2)
        return pvg_error_set(err, PVG_ERR_INVALID, "dataset: more than 2^31 users or items");
    if (u < 0 || i < 0) return pvg_error_set(err, PVG_ERR_NOMEM, "dataset: out of memory");
    size_t need = ds->n_ev + 1;
    if (need > ds->cap_ev) {
        size_t nc = ds->cap_ev ? ds->cap_ev * 2 : 4096;
        uint32_t *a = realloc(ds->ev_user, nc * sizeof *a);
        if (a) ds->ev_user = a;
        uint32_t *b = a ? realloc(ds->ev_item, nc * sizeof *b) : NULL;
        if (b) ds->ev_item = b;
        float *c = b ? realloc(ds->ev_w, nc * sizeof *c) : NULL;
        if (c) ds->ev_w = c;
        int64_t *d = c ? realloc(ds->ev_ts, nc * sizeof *d) : NULL;
        if (d) ds->ev_ts = d;
        if (!d) return pvg_error_set(err, PVG_ERR_NOMEM, "dataset: out of memory");
        ds->cap_ev = nc;
    }
    ds->ev_user[ds->n_ev] = (uint32_t)u;
    ds->ev_item[ds->n_ev] = (uint32_t)i;
    ds->ev_w[ds->n_ev] = (float)wt;
    ds->ev_ts[ds->n_ev] = ev->ts;
    ds->n_ev++;
    return PVG_OK;
}

/* A search event without an item, in a dataset read from a store: each of
 * the top PVG_SEARCH_FEED_TOP results of its query over the store's catalog
 * (relevance order, no filters, whole words - no prefix completion - and
 * no synonyms; typos corrected; public and deterministic) gets the event as if it named that item,
 * weighing w[SEARCH]. A query with no word that matches, or none of the catalog's words, gives
 * nothing. */
static pvg_status add_search(pvg_dataset *ds, const unsigned char user_key[16], const pvg_event *ev,
                             pvg_error *err)
{
    if (!ds->search_ix || ds->w.w[PVG_EVENT_SEARCH] == 0 || !(ev->fields & PVG_FIELD_QUERY) ||
        !ev->query || !ev->query[0])
        return PVG_OK;
    pvg_search_query q;
    pvg_search_query_init(&q);
    q.text = ev->query;
    q.k = PVG_SEARCH_FEED_TOP;
    q.flags = PVG_SEARCH_NO_PREFIX; /* a recorded query is a finished one */
    pvg_search_result *r = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_search_run(ds->search_ix, &q, &r, &e);
    if (st == PVG_ERR_NOMEM) return pvg_error_set(err, st, "dataset: out of memory");
    if (st != PVG_OK) return PVG_OK; /* a query the search refuses (too long): no signal */
    const pvg_search_term *terms;
    size_t n = pvg_search_result_terms(r, &terms) ? pvg_search_result_count(r) : 0;
    size_t before = ds->n_ev;
    for (size_t i = 0; i < n && st == PVG_OK; i++) {
        const pvg_search_hit *h = pvg_search_result_hit(r, i);
        if (!h || !(h->score > 0)) continue;
        pvg_event one = *ev;
        one.item = h->ext_id;
        st = add_cell(ds, user_key, &one, err);
    }
    pvg_search_result_free(r);
    if (st == PVG_OK && ds->n_ev > before) ds->search_events++;
    return st;
}

pvg_status pvg_dataset_user_key(const pvg_dataset *ds, const char *ext_user, unsigned char key[16],
                                pvg_error *err)
{
    if (ds->keying != PVG_KEY_SALTED_HASH)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "dataset is keyed by store pseudonyms, not by external ids");
    crypto_generichash(key, 16, (const unsigned char *)ext_user, strlen(ext_user), ds->salt, 16);
    return PVG_OK;
}

pvg_status pvg_dataset_add_ext(pvg_dataset *ds, const char *ext_user, const pvg_event *ev,
                               pvg_error *err)
{
    unsigned char key[16];
    pvg_status st = pvg_dataset_user_key(ds, ext_user, key, err);
    if (st != PVG_OK) return st;
    return pvg_dataset_add(ds, key, ev, err);
}

pvg_status pvg_dataset_load_file(const char *path, pvg_format fmt, const pvg_reader_options *ropts,
                                 const pvg_event_weights *weights, pvg_dataset **out,
                                 pvg_dataset_load_stats *stats, pvg_error *err)
{
    *out = NULL;
    pvg_dataset_load_stats s = {0};
    pvg_dataset *ds;
    pvg_status st = pvg_dataset_new(PVG_KEY_SALTED_HASH, weights, NULL, &ds, err);
    if (st != PVG_OK) return st;
    pvg_reader *r;
    st = pvg_reader_open(path, fmt, ropts, &r, err);
    if (st != PVG_OK) {
        pvg_dataset_free(ds);
        return st;
    }
    pvg_record rec;
    int rc;
    char first_reject[200] = "";
    long first_line = 0;
    while ((rc = pvg_reader_next(r, &rec, err)) == 1) {
        s.records++;
        if (rec.kind == PVG_RECORD_REJECT) {
            if (s.rejects++ == 0) {
                first_line = rec.line;
                snprintf(first_reject, sizeof first_reject, "%s: %s", rec.reason ? rec.reason : "?",
                         rec.detail ? rec.detail : "");
            }
            continue;
        }
        if (rec.kind == PVG_RECORD_ANONYMOUS) {
            s.anonymous++;
            continue;
        }
        if (rec.kind != PVG_RECORD_EVENT || !rec.user || !rec.event.item) {
            s.ignored++;
            continue;
        }
        size_t before = ds->n_ev;
        st = pvg_dataset_add_ext(ds, rec.user, &rec.event, err);
        if (st != PVG_OK) {
            pvg_reader_free(r);
            pvg_dataset_free(ds);
            if (stats) *stats = s;
            return st;
        }
        if (ds->n_ev > before && rec.has_item && rec.item.title &&
            pvg_dataset_set_item_title(ds, ds->ev_item[ds->n_ev - 1], rec.item.title)) {
            pvg_reader_free(r);
            pvg_dataset_free(ds);
            if (stats) *stats = s;
            return pvg_error_set(err, PVG_ERR_NOMEM, "dataset: out of memory");
        }
        if (ds->n_ev > before)
            s.events++;
        else
            s.ignored++;
    }
    pvg_reader_free(r);
    if (stats) *stats = s;
    if (rc < 0) {
        pvg_dataset_free(ds);
        return (pvg_status)rc;
    }
    if (ds->n_ev == 0) {
        pvg_dataset_free(ds);
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, first_line, 0, -1,
                                "no usable events for format %s (%lld records, %lld rejected%s%s)",
                                pvg_format_name(fmt), s.records, s.rejects,
                                s.rejects ? "; first: " : "", first_reject);
    }
    *out = ds;
    return PVG_OK;
}

pvg_status pvg_dataset_new_store_linked(pvg_store *store, const pvg_event_weights *weights,
                                        pvg_dataset **out, pvg_error *err)
{
    *out = NULL;
    pvg_dataset *ds;
    pvg_status st = pvg_dataset_new(PVG_KEY_STORE_PSEUDONYM, weights, NULL, &ds, err);
    if (st != PVG_OK) return st;
    /* the store link: models trained on this dataset seal each shopper's
     * rows under a key derived from that shopper's data key */
    ds->store = store;
    if (ds->w.w[PVG_EVENT_SEARCH] != 0) {
        /* the catalog index search events are run against, built before the
         * shoppers are read (no store call inside their iteration) */
        pvg_search_options o = {0};
        o.synonyms_text = ""; /* none: the ranking depends on the catalog only */
        st = pvg_search_index_build(store, &o, &ds->search_ix, err);
        if (st != PVG_OK) {
            pvg_dataset_free(ds);
            return st;
        }
    }
    *out = ds;
    return PVG_OK;
}

int pvg_dataset_store_user_cb(void *vctx, const pvg_user_view *user, const pvg_event *events,
                              size_t n_events)
{
    pvg_dataset_store_ctx *c = vctx;
    for (size_t i = 0; i < n_events; i++) {
        c->s->records++;
        size_t before = c->ds->n_ev;
        c->st = pvg_dataset_add(c->ds, user->pseudonym, &events[i], c->err);
        if (c->st != PVG_OK) return 1;
        if (c->ds->n_ev > before)
            c->s->events++;
        else
            c->s->ignored++;
    }
    return 0;
}

pvg_status pvg_dataset_load_store(pvg_store *store, const pvg_event_weights *weights,
                                  pvg_dataset **out, pvg_dataset_load_stats *stats, pvg_error *err)
{
    *out = NULL;
    pvg_dataset_load_stats s = {0};
    pvg_dataset *ds;
    pvg_status st = pvg_dataset_new_store_linked(store, weights, &ds, err);
    if (st != PVG_OK) return st;
    pvg_dataset_store_ctx c = {ds, &s, err, PVG_OK};
    st = pvg_store_foreach_user(store, PVG_FOREACH_REQUIRE_PERSONALIZATION,
                                pvg_dataset_store_user_cb, &c, err);
    if (stats) *stats = s;
    if (c.st != PVG_OK) st = c.st;
    if (st != PVG_OK) {
        pvg_dataset_free(ds);
        return st;
    }
    if (ds->n_ev == 0) {
        pvg_dataset_free(ds);
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "the store holds no usable events of users who consent to "
                             "personalisation");
    }
    *out = ds;
    return PVG_OK;
}

/* ---- CSR -------------------------------------------------------------- */

void pvg_csr_free(pvg_csr *a)
{
    if (!a) return;
    free(a->indptr);
    free(a->indices);
    free(a->data);
    memset(a, 0, sizeof *a);
}

typedef struct cell {
    uint32_t col;
    float w;
} cell;

static int cell_cmp(const void *a, const void *b)
{
    uint32_t x = ((const cell *)a)->col, y = ((const cell *)b)->col;
    return (x > y) - (x < y);
}

pvg_status pvg_csr_build(size_t n_rows, size_t n_cols, size_t n, const uint32_t *rows,
                         const uint32_t *cols, const float *w, const uint8_t *keep, pvg_csr *out)
{
    memset(out, 0, sizeof *out);
    uint64_t *ptr = calloc(n_rows + 1, sizeof *ptr);
    if (!ptr) return PVG_ERR_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!keep || keep[i]) {
            ptr[rows[i] + 1]++;
            m++;
        }
    for (size_t r = 0; r < n_rows; r++)
        ptr[r + 1] += ptr[r];
    cell *cells = malloc((m ? m : 1) * sizeof *cells);
    uint64_t *fill = malloc((n_rows + 1) * sizeof *fill);
    if (!cells || !fill) {
        free(ptr);
        free(cells);
        free(fill);
        return PVG_ERR_NOMEM;
    }
    memcpy(fill, ptr, (n_rows + 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++)
        if (!keep || keep[i]) {
            cell *c = &cells[fill[rows[i]]++];
            c->col = cols[i];
            c->w = w[i];
        }
    free(fill);
    /* sort each row, merge duplicates, drop non-positive sums, compact */
    size_t o = 0;
    uint64_t start = 0;
    for (size_t r = 0; r < n_rows; r++) {
        uint64_t end = ptr[r + 1];
        if (end - start > 1) qsort(cells + start, end - start, sizeof *cells, cell_cmp);
        uint64_t row_begin = o;
        for (uint64_t j = start; j < end;) {
            uint32_t c = cells[j].col;
            double sum = 0;
            while (j < end && cells[j].col == c)
                sum += cells[j++].w;
            if (sum > 0) {
                cells[o].col = c;
                cells[o].w = (float)sum;
                o++;
            }
        }
        ptr[r] = row_begin;
        start = end;
    }
    ptr[n_rows] = o;
    out->indices = malloc((o ? o : 1) * sizeof *out->indices);
    out->data = malloc((o ? o : 1) * sizeof *out->data);
    if (!out->indices || !out->data) {
        free(cells);
        free(ptr);
        pvg_csr_free(out);
        return PVG_ERR_NOMEM;
    }
    for (size_t j = 0; j < o; j++) {
        out->indices[j] = cells[j].col;
        out->data[j] = cells[j].w;
    }
    free(cells);
    out->indptr = ptr;
    out->n_rows = n_rows;
    out->n_cols = n_cols;
    out->nnz = o;
    return PVG_OK;
}

pvg_status pvg_csr_transpose(const pvg_csr *a, pvg_csr *out)
{
    memset(out, 0, sizeof *out);
    out->indptr = calloc(a->n_cols + 1, sizeof *out->indptr);
    out->indices = malloc((a->nnz ? a->nnz : 1) * sizeof *out->indices);
    out->data = malloc((a->nnz ? a->nnz : 1) * sizeof *out->data);
    uint64_t *fill = malloc((a->n_cols + 1) * sizeof *fill);
    if (!out->indptr || !out->indices || !out->data || !fill) {
        free(fill);
        pvg_csr_free(out);
        return PVG_ERR_NOMEM;
    }
    for (size_t j = 0; j < a->nnz; j++)
        out->indptr[a->indices[j] + 1]++;
    for (size_t c = 0; c < a->n_cols; c++)
        out->indptr[c + 1] += out->indptr[c];
    memcpy(fill, out->indptr, (a->n_cols + 1) * sizeof *fill);
    for (size_t r = 0; r < a->n_rows; r++)
        for (uint64_t j = a->indptr[r]; j < a->indptr[r + 1]; j++) {
            uint64_t d = fill[a->indices[j]]++;
            out->indices[d] = (uint32_t)r;
            out->data[d] = a->data[j];
        }
    free(fill);
    out->n_rows = a->n_cols;
    out->n_cols = a->n_rows;
    out->nnz = a->nnz;
    return PVG_OK;
}
