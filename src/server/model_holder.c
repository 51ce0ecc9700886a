/*
 * model_holder.c - the model in service: loading, the catalog view (titles
 * and prices by model item index), the DP popular list released once per
 * model build, the recommendation cache, reference counting so requests in
 * flight keep the model they started with, and the reload thread that
 * watches the model file.
 */
#include "server/server_internal.h"

#include "model/model_internal.h"
#include "store/store_internal.h"

#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/release.h>
#include <privguide/rng.h>

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- recommendation cache ------------------------------------------------ */

#define CACHE_STRIPES 64
typedef struct cache_slot {
    unsigned char key[16];
    size_t k, n;
    int used;
    int64_t *idx;
    float *score;
    char *body; /* the serialised answer for (key, k), once built; NULL until then */
    size_t body_len;
} cache_slot;

struct pvg_srv_cache {
    size_t n;
    cache_slot *slots;
    pthread_mutex_t mu[CACHE_STRIPES];
};

pvg_srv_cache *pvg_srv_cache_new(size_t entries)
{
    if (!entries) return NULL;
    pvg_srv_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->slots = calloc(entries, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->n = entries;
    for (int i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    return c;
}

void pvg_srv_cache_free(pvg_srv_cache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->slots[i].idx);
        free(c->slots[i].score);
        free(c->slots[i].body);
    }
    for (int i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    free(c->slots);
    free(c);
}

static size_t cache_slot_of(const pvg_srv_cache *c, const unsigned char key[16], size_t k)
{
    uint64_t h;
    memcpy(&h, key, 8);
    h ^= (uint64_t)k * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return (size_t)(h % c->n);
}

int pvg_srv_cache_get(pvg_srv_cache *c, const unsigned char key[16], size_t k, pvg_scored_item *out,
                      size_t *n)
{
    if (!c) return 0;
    size_t i = cache_slot_of(c, key, k);
    pthread_mutex_t *mu = &c->mu[i % CACHE_STRIPES];
    int hit = 0;
    pthread_mutex_lock(mu);
    cache_slot *s = &c->slots[i];
    if (s->used && s->k == k && memcmp(s->key, key, 16) == 0) {
        for (size_t j = 0; j < s->n; j++) {
            out[j].item_index = s->idx[j];
            out[j].score = s->score[j];
            out[j].item = NULL;
        }
        *n = s->n;
        hit = 1;
    }
    pthread_mutex_unlock(mu);
    return hit;
}

void pvg_srv_cache_put(pvg_srv_cache *c, const unsigned char key[16], size_t k,
                       const pvg_scored_item *in, size_t n)
{
    if (!c || n > k) return;
    size_t i = cache_slot_of(c, key, k);
    int64_t *idx = malloc((n ? n : 1) * sizeof *idx);
    float *score = malloc((n ? n : 1) * sizeof *score);
    if (!idx || !score) {
        free(idx);
        free(score);
        return;
    }
    for (size_t j = 0; j < n; j++) {
        idx[j] = in[j].item_index;
        score[j] = in[j].score;
    }
    pthread_mutex_t *mu = &c->mu[i % CACHE_STRIPES];
    pthread_mutex_lock(mu);
    cache_slot *s = &c->slots[i];
    free(s->idx);
    free(s->score);
    free(s->body);
    s->body = NULL;
    s->body_len = 0;
    memcpy(s->key, key, 16);
    s->k = k;
    s->n = n;
    s->idx = idx;
    s->score = score;
    s->used = 1;
    pthread_mutex_unlock(mu);
}

int pvg_srv_cache_get_body(pvg_srv_cache *c, const unsigned char key[16], size_t k, char **body,
                           size_t *len)
{
    if (!c) return 0;
    size_t i = cache_slot_of(c, key, k);
    pthread_mutex_t *mu = &c->mu[i % CACHE_STRIPES];
    int hit = 0;
    pthread_mutex_lock(mu);
    cache_slot *s = &c->slots[i];
    if (s->used && s->body && s->k == k && memcmp(s->key, key, 16) == 0) {
        *body = malloc(s->body_len + 1);
        if (*body) {
            memcpy(*body, s->body, s->body_len + 1);
            *len = s->body_len;
            hit = 1;
        }
    }
    pthread_mutex_unlock(mu);
    return hit;
}

void pvg_srv_cache_put_body(pvg_srv_cache *c, const unsigned char key[16], size_t k,
                            const char *body, size_t len)
{
    if (!c || !body) return;
    size_t i = cache_slot_of(c, key, k);
    pthread_mutex_t *mu = &c->mu[i % CACHE_STRIPES];
    pthread_mutex_lock(mu);
    cache_slot *s = &c->slots[i];
    /* Only beside the items it was built from: the slot must hold this key. */
    if (s->used && s->k == k && memcmp(s->key, key, 16) == 0 && !s->body) {
        s->body = malloc(len + 1);
        if (s->body) {
            memcpy(s->body, body, len + 1);
            s->body_len = len;
        }
    }
    pthread_mutex_unlock(mu);
}

/* ---- model objects --------------------------------------------------------- */

static void popular_free(pvg_srv_popular *p);
static void similar_free(pvg_srv_similar *x);

static void model_destroy(pvg_srv_model *m)
{
    if (!m) return;
    if (m->catalog) {
        size_t n = pvg_model_n_items(m->model);
        for (size_t i = 0; i < n; i++)
            free(m->catalog[i].title);
        free(m->catalog);
    }
    for (pvg_srv_popular *p = atomic_load(&m->popular), *next; p; p = next) {
        next = p->retired;
        popular_free(p);
    }
    for (pvg_srv_similar *x = atomic_load(&m->similar), *next; x; x = next) {
        next = x->retired;
        similar_free(x);
    }
    pthread_mutex_destroy(&m->popular_mu);
    free(m->dp_popular);
    free(m->dp_popular_score);
    pvg_srv_cache_free(m->cache);
    pvg_model_free(m->model);
    free(m);
}

/* At most every MODEL_CHECK_NS, a request looks at the model file's
 * (device, inode, mtime, size) and reloads it at once when it changed, so
 * a rewrite by another process (an erasure through the CLI, a new
 * training) is in service within that period plus the load, whatever the
 * reload thread's period. One request per period wins the check (the
 * others go on with the model in service). */
#define MODEL_CHECK_NS 250000000LL

static int64_t stat_mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

/* 1 when the file of `slot` (srv->model or srv->dp_model) differs from the
 * one loaded, or none is loaded. */
static int file_changed(pvg_server *srv, pvg_srv_model *const *slot, const struct stat *st)
{
    pthread_mutex_lock(&srv->model_mu);
    pvg_srv_model *m = *slot;
    int changed = !m || m->dev != st->st_dev || m->ino != st->st_ino ||
                  m->mtime_ns != stat_mtime_ns(st) || m->size != st->st_size;
    pthread_mutex_unlock(&srv->model_mu);
    return changed;
}

static void check_model_file(pvg_server *srv)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    long long last = atomic_load(&srv->model_checked_ns);
    if (now - last < MODEL_CHECK_NS) return;
    if (!atomic_compare_exchange_strong(&srv->model_checked_ns, &last, now)) return;
    struct stat sb;
    int changed = 0;
    /* a loaded model whose file changed (a file that appears is the reload
     * thread's to load) */
    if (stat(srv->model_path, &sb) == 0) {
        pthread_mutex_lock(&srv->model_mu);
        int loaded = srv->model != NULL;
        pthread_mutex_unlock(&srv->model_mu);
        changed |= loaded && file_changed(srv, &srv->model, &sb);
    }
    if (stat(srv->dp_model_path, &sb) == 0) {
        pthread_mutex_lock(&srv->model_mu);
        int loaded = srv->dp_model != NULL;
        pthread_mutex_unlock(&srv->model_mu);
        changed |= loaded && file_changed(srv, &srv->dp_model, &sb);
    }
    if (!changed) return;
    pvg_error e;
    pvg_error_clear(&e);
    /* a failed load keeps the previous model; reload counts the failure in
     * the metrics and keeps its text in last_reload_error */
    pvg_status st = pvg_server_reload_model(srv, &e);
    (void)st;
}

pvg_srv_model *pvg_srv_model_acquire(pvg_server *srv)
{
    check_model_file(srv);
    pthread_mutex_lock(&srv->model_mu);
    pvg_srv_model *m = srv->model;
    if (m) atomic_fetch_add(&m->refs, 1);
    pthread_mutex_unlock(&srv->model_mu);
    return m;
}

pvg_srv_model *pvg_srv_dp_model_acquire(pvg_server *srv)
{
    check_model_file(srv);
    pthread_mutex_lock(&srv->model_mu);
    pvg_srv_model *m = srv->dp_model;
    if (m) atomic_fetch_add(&m->refs, 1);
    pthread_mutex_unlock(&srv->model_mu);
    return m;
}

long pvg_server_dp_model_generation(const pvg_server *srv)
{
    pvg_server *s = (pvg_server *)srv;
    pthread_mutex_lock(&s->model_mu);
    long g = s->dp_model ? s->dp_model->generation : 0;
    pthread_mutex_unlock(&s->model_mu);
    return g;
}

int pvg_srv_model_dp_info(const pvg_srv_model *m, pvg_srv_dp_info *out)
{
    memset(out, 0, sizeof *out);
    pvg_model_dp_info d;
    if (pvg_model_dp_info_get(m->model, &d, NULL) != PVG_OK || !d.is_dp || !(d.epsilon > 0))
        return 0;
    out->epsilon = d.epsilon;
    out->delta = d.delta;
    out->noise_multiplier = d.noise_multiplier;
    out->max_items = d.max_items;
    snprintf(out->mechanism, sizeof out->mechanism, "%s", d.mechanism[0] ? d.mechanism : "?");
    out->vocabulary = pvg_dp_vocabulary_name(d.vocabulary);
    return 1;
}

void pvg_srv_model_release(pvg_srv_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) model_destroy(m);
}

long pvg_server_model_generation(const pvg_server *srv)
{
    pvg_server *s = (pvg_server *)srv;
    pthread_mutex_lock(&s->model_mu);
    long g = s->model ? s->model->generation : 0;
    pthread_mutex_unlock(&s->model_mu);
    return g;
}

typedef struct catalog_ctx {
    pvg_srv_model *m;
} catalog_ctx;

static int catalog_item(void *ctx, const pvg_item *it)
{
    catalog_ctx *c = ctx;
    int64_t i = pvg_model_item_index(c->m->model, it->ext_id);
    if (i < 0) return 0;
    free(c->m->catalog[i].title);
    c->m->catalog[i].title = it->title ? strdup(it->title) : NULL;
    c->m->catalog[i].in_catalog = it->catalog;
    c->m->catalog[i].price = it->price;
    c->m->catalog[i].last_price = it->last_price;
    return 0;
}

/* The operator's declared catalogue text (pvg_store_catalog_declare) is the
 * title every answer shows where it exists: an item's display title is
 * whatever the last sale row carried, which is data that depends on
 * shoppers, while the declared text is the operator's alone. Items without
 * declared text keep their display title. */
static pvg_status declared_titles(pvg_srv_model *m, pvg_store *store, pvg_error *err)
{
    size_t n = pvg_model_n_items(m->model), found = 0;
    if (!n) return PVG_OK;
    const char **ids = malloc(n * sizeof *ids);
    if (!ids) return pvg_error_set(err, PVG_ERR_NOMEM, "model catalog: out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = pvg_model_item_id(m->model, (int64_t)i);
    char **titles = NULL;
    pvg_status st = pvg_store_catalog_titles(store, ids, n, &titles, &found, err);
    free(ids);
    if (st != PVG_OK) return st;
    for (size_t i = 0; i < n && found; i++) {
        if (!titles[i]) continue;
        free(m->catalog[i].title);
        m->catalog[i].title = titles[i]; /* stolen */
        titles[i] = NULL;
    }
    pvg_catalog_titles_free(titles, n);
    return PVG_OK;
}

/* ---- the DP popular list and DP similar items ------------------------------ */
/*
 * Both are DP releases over a PUBLIC domain (release.h): the popular list
 * over the catalog as loaded by the operator (items with pvg_item.catalog,
 * never the stubs that events create), similar items over the popular
 * list's items. Shoppers' purchases are read once, through the access gate
 * (purpose DP_RELEASE: only shoppers who consent to analytics). Each is
 * released once per model build, cached in the store's release cache (a
 * restart or another server reuses it without a new charge) and charged
 * once: "popular_list" and "similar_items" on the ledger. When no budget
 * is left, the last earlier release is served (it is public already), with
 * its age.
 */

#define POPULAR_DELTA 1e-7
#define SIMILAR_DELTA 1e-7
#define SIMILAR_K 20 /* neighbours kept per item */
/* ledger labels: purposes of the store's one budget (ledger.h) */
#define LEDGER_POPULAR "popular_list"
#define LEDGER_SIMILAR "similar_items"

static void popular_items_free(pvg_srv_popular_item *it, size_t n)
{
    if (!it) return;
    for (size_t i = 0; i < n; i++) {
        free(it[i].ext_id);
        free(it[i].title);
    }
    free(it);
}

static void popular_free(pvg_srv_popular *p)
{
    if (!p) return;
    popular_items_free(p->items, p->n);
    free(p->item_index);
    free(p);
}

static void similar_free(pvg_srv_similar *x)
{
    if (!x) return;
    pvg_dp_cooc_free(x->rel);
    popular_items_free(x->items, x->n);
    free(x);
}

const pvg_srv_popular_item *pvg_srv_similar_item(const pvg_srv_similar *x, int64_t row_id)
{
    for (size_t i = 0; i < x->n; i++)
        if (x->items[i].row_id == row_id) return &x->items[i];
    return NULL;
}

/* [[ext_id, noisy_count, title|null, price|null, row_id], ...] */
static json_t *items_to_json(const pvg_srv_popular_item *it, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("[s, I, o, o, I]", it[i].ext_id,
                                           (json_int_t)it[i].noisy_count,
                                           it[i].title ? json_string(it[i].title) : json_null(),
                                           it[i].price >= 0 ? json_real(it[i].price) : json_null(),
                                           (json_int_t)it[i].row_id));
    return a;
}

static pvg_status items_from_json(json_t *a, pvg_srv_popular_item **out, size_t *n_out,
                                  pvg_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (!json_is_array(a))
        return pvg_error_set(err, PVG_ERR_CORRUPT, "cached release: \"items\" is not an array");
    size_t n = json_array_size(a);
    pvg_srv_popular_item *it = calloc(n ? n : 1, sizeof *it);
    if (!it) return pvg_error_set(err, PVG_ERR_NOMEM, "cached release: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i);
        const char *id = json_string_value(json_array_get(e, 0));
        json_t *t = json_array_get(e, 2), *pr = json_array_get(e, 3);
        if (!id || !json_is_integer(json_array_get(e, 1)) ||
            !json_is_integer(json_array_get(e, 4))) {
            popular_items_free(it, i);
            return pvg_error_set(err, PVG_ERR_CORRUPT, "cached release: items[%zu] is malformed",
                                 i);
        }
        it[i].ext_id = strdup(id);
        it[i].title = json_is_string(t) ? strdup(json_string_value(t)) : NULL;
        it[i].price = json_is_number(pr) ? json_number_value(pr) : -1;
        it[i].noisy_count = json_integer_value(json_array_get(e, 1));
        it[i].row_id = json_integer_value(json_array_get(e, 4));
        if (!it[i].ext_id) {
            popular_items_free(it, i + 1);
            return pvg_error_set(err, PVG_ERR_NOMEM, "cached release: out of memory");
        }
    }
    *out = it;
    *n_out = n;
    return PVG_OK;
}

/* The cached form of a popular list: {"format": "privguide-server-popular/1",
 * "mechanism", "epsilon", "delta", "items": [...]} (all DP or catalog data). */
static char *popular_to_body(const pvg_srv_popular *p)
{
    json_t *o = json_pack("{s:s, s:s, s:f, s:f, s:o}", "format", "privguide-server-popular/1",
                          "mechanism", p->mechanism, "epsilon", p->epsilon, "delta", p->delta,
                          "items", items_to_json(p->items, p->n));
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

/* Parses a cached popular list and maps it onto model m (the fallback of
 * non-personalised recommendations). */
static pvg_status popular_from_body(pvg_srv_model *m, const char *body, pvg_srv_popular **out,
                                    pvg_error *err)
{
    *out = NULL;
    json_t *o = json_loads(body, 0, NULL);
    const char *mech = json_string_value(json_object_get(o, "mechanism"));
    if (!json_is_object(o) || !mech || !json_is_number(json_object_get(o, "epsilon"))) {
        json_decref(o);
        return pvg_error_set(err, PVG_ERR_CORRUPT, "cached popular release is malformed");
    }
    pvg_srv_popular *p = calloc(1, sizeof *p);
    if (!p) {
        json_decref(o);
        return pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
    }
    snprintf(p->mechanism, sizeof p->mechanism, "%s", mech);
    p->epsilon = json_number_value(json_object_get(o, "epsilon"));
    p->delta = json_number_value(json_object_get(o, "delta"));
    pvg_status st = items_from_json(json_object_get(o, "items"), &p->items, &p->n, err);
    json_decref(o);
    if (st == PVG_OK) {
        p->item_index = calloc(p->n ? p->n : 1, sizeof *p->item_index);
        if (!p->item_index) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    if (st != PVG_OK) {
        popular_free(p);
        return st;
    }
    for (size_t i = 0; i < p->n; i++) {
        int64_t ix = pvg_model_item_index(m->model, p->items[i].ext_id);
        if (ix >= 0) p->item_index[p->n_fallback++] = ix;
    }
    *out = p;
    return PVG_OK;
}

/* Cached form of similar items: {"format": "privguide-server-similar/1",
 * "cooc": <pvg_dp_cooc_to_json>, "items": [...] (the domain's catalog data)}. */
static pvg_status similar_to_body(const pvg_srv_similar *x, char **out, pvg_error *err)
{
    *out = NULL;
    char *cj = NULL;
    pvg_status st = pvg_dp_cooc_to_json(x->rel, &cj, err);
    if (st != PVG_OK) return st;
    json_t *c = json_loads(cj, 0, NULL);
    free(cj);
    json_t *o = c ? json_pack("{s:s, s:o, s:o}", "format", "privguide-server-similar/1", "cooc", c,
                              "items", items_to_json(x->items, x->n))
                  : NULL;
    *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return *out ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "similar release: out of memory");
}

static pvg_status similar_from_body(const char *body, pvg_srv_similar **out, pvg_error *err)
{
    *out = NULL;
    json_t *o = json_loads(body, 0, NULL);
    json_t *c = json_object_get(o, "cooc");
    char *cj = json_is_object(c) ? json_dumps(c, JSON_COMPACT) : NULL;
    if (!cj) {
        json_decref(o);
        return pvg_error_set(err, PVG_ERR_CORRUPT, "cached similar release is malformed");
    }
    pvg_srv_similar *x = calloc(1, sizeof *x);
    pvg_status st = x ? pvg_dp_cooc_from_json(cj, &x->rel, err)
                      : pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    free(cj);
    if (st == PVG_OK) st = items_from_json(json_object_get(o, "items"), &x->items, &x->n, err);
    json_decref(o);
    if (st != PVG_OK) {
        similar_free(x);
        return st;
    }
    *out = x;
    return PVG_OK;
}

/* ---- the public domain and the gated read ---- */

typedef struct domain {
    size_t n;
    pvg_srv_popular_item *items; /* catalog items in row-id order (strings borrowed from here) */
} domain;

static int domain_item(void *ctx, const pvg_item *it)
{
    domain *d = ctx;
    if (!it->catalog) return 0;     /* an event's stub: not public */
    if ((d->n & (d->n - 1)) == 0) { /* grow at powers of two */
        pvg_srv_popular_item *ni = realloc(d->items, (d->n ? 2 * d->n : 1) * sizeof *ni);
        if (!ni) return 1;
        d->items = ni;
    }
    pvg_srv_popular_item *e = &d->items[d->n];
    memset(e, 0, sizeof *e);
    e->ext_id = strdup(it->ext_id);
    e->title = it->title ? strdup(it->title) : NULL;
    e->price = it->price;
    e->row_id = it->id;
    e->noisy_count = -1;
    d->n++;
    return !e->ext_id || (it->title && !e->title);
}

static long domain_find(const domain *d, int64_t row_id)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->items[mid].row_id < row_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->n && d->items[lo].row_id == row_id ? (long)lo : -1;
}

/* Every consenting shopper's distinct purchased catalog items (row ids), in
 * one flat array with offsets. */
typedef struct baskets {
    const domain *d;
    int64_t *ids;
    size_t n_ids, cap;
    size_t *off; /* shopper u: ids[off[u] .. off[u+1]) */
    size_t n_users, off_cap;
    long long *stamp; /* per domain item: the last shopper that bought it */
    int oom;
} baskets;

static int basket_user(void *ctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    (void)u;
    baskets *b = ctx;
    if (b->n_users + 2 > b->off_cap) {
        size_t nc = b->off_cap ? 2 * b->off_cap : 1024;
        size_t *no = realloc(b->off, nc * sizeof *no);
        if (!no) return b->oom = 1;
        b->off = no;
        b->off_cap = nc;
    }
    if (b->n_users == 0) b->off[0] = 0;
    long long me = (long long)b->n_users + 1;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].type != PVG_EVENT_PURCHASE || ev[i].item_id <= 0) continue;
        long j = domain_find(b->d, ev[i].item_id);
        if (j < 0 || b->stamp[j] == me) continue;
        b->stamp[j] = me;
        if (b->n_ids == b->cap) {
            size_t nc = b->cap ? 2 * b->cap : 4096;
            int64_t *ni = realloc(b->ids, nc * sizeof *ni);
            if (!ni) return b->oom = 1;
            b->ids = ni;
            b->cap = nc;
        }
        b->ids[b->n_ids++] = ev[i].item_id;
    }
    b->off[++b->n_users] = b->n_ids;
    return 0;
}

static void baskets_free(baskets *b)
{
    free(b->ids);
    free(b->off);
    free(b->stamp);
}

/* The store's budget may take (eps, delta) under purpose `pp`: 1 yes, 0 no
 * (reason in err). Checked before any data is read; the charge itself
 * decides again under the ledger's lock. */
static int budget_allows(pvg_store *s, pvg_ledger_purpose pp, double eps, double delta,
                         pvg_error *err)
{
    pvg_ledger_state ls;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_ledger_state_get(s, &ls, &e);
    if (st != PVG_OK) {
        pvg_error_set(err, st, "ledger: %s", e.text);
        return 0;
    }
    const char *name = pvg_ledger_purpose_name(pp);
    if (!ls.has_total) {
        pvg_error_set(err, PVG_ERR_BUDGET,
                      "no privacy budget is set for the store (privguide budget set)");
        return 0;
    }
    const double slack = 1 + 1e-9;
    const pvg_ledger_account *a = &ls.purposes[pp];
    if (ls.spent_epsilon + eps > ls.total_epsilon * slack ||
        ls.spent_delta + delta > ls.total_delta * slack ||
        (a->has_cap && (a->spent_epsilon + eps > a->cap_epsilon * slack ||
                        a->spent_delta + delta > a->cap_delta * slack))) {
        pvg_error_set(err, PVG_ERR_BUDGET,
                      "the privacy budget is spent for %s (store: epsilon %g of %g used; "
                      "%s: %g used%s; %g needed)",
                      name, ls.spent_epsilon, ls.total_epsilon, name, a->spent_epsilon,
                      a->has_cap ? " of its cap" : "", eps);
        return 0;
    }
    return 1;
}

static void audit_release(pvg_server *srv, pvg_store *s, const char *what, const char *label,
                          double eps, double delta, int64_t release_id)
{
    char detail[320];
    snprintf(detail, sizeof detail, "%s; purpose %s; epsilon %g; delta %g; release %lld", what,
             label, eps, delta, (long long)release_id);
    pvg_audit_record ar = {0, "server", "dp_release", "", detail};
    /* the request threads' audit writer appends on another connection: a
     * contended append is tried again */
    pvg_status ast = PVG_ERR_BUSY;
    for (int tries = 0; ast != PVG_OK && tries < 5; tries++)
        ast = pvg_audit_append(s, &ar, NULL, NULL);
    if (ast == PVG_OK)
        atomic_fetch_add(&srv->metrics.audit_entries, 1);
    else
        atomic_fetch_add(&srv->metrics.audit_failures, 1);
}

typedef struct release_job {
    pvg_server *srv;
    pvg_store *s;
    pvg_srv_model *m;
    const unsigned char *fp;
    char fph[17];
    pvg_rng *rng;
    domain d;
    baskets b;
    int read; /* the gated read is done */
} release_job;

static pvg_status job_read(release_job *j, pvg_error *err)
{
    if (j->read) return PVG_OK;
    pvg_status st = pvg_store_items_foreach(j->s, domain_item, &j->d, err);
    if (st == PVG_ERR_ABORTED) st = pvg_error_set(err, PVG_ERR_NOMEM, "catalog: out of memory");
    if (st != PVG_OK) return st;
    if (j->d.n == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "the store has no catalog items (import the catalog first): no "
                             "public domain to release a popular list over");
    j->b.d = &j->d;
    j->b.stamp = calloc(j->d.n, sizeof *j->b.stamp);
    if (!j->b.stamp) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    pvg_access g;
    pvg_access_init(&g, j->s, "server");
    st = pvg_access_foreach_user(&g, PVG_PURPOSE_DP_RELEASE, basket_user, &j->b, err);
    if (j->b.oom) st = pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
    if (st == PVG_OK) j->read = 1;
    return st;
}

static pvg_status popular_make(release_job *j, size_t k, double eps, pvg_srv_popular **out,
                               pvg_error *err)
{
    *out = NULL;
    pvg_server *srv = j->srv;
    if (!budget_allows(j->s, PVG_LEDGER_POPULAR_LIST, eps, POPULAR_DELTA, err))
        return PVG_ERR_BUDGET;
    pvg_status st = job_read(j, err);
    if (st != PVG_OK) return st;
    int64_t *ids = malloc(j->d.n * sizeof *ids);
    if (!ids) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < j->d.n; i++)
        ids[i] = j->d.items[i].row_id;
    pvg_dp_item_counts *c = NULL;
    st = pvg_dp_item_counts_new(ids, j->d.n, pvg_dp_popular_default_m(PVG_DP_RELEASE_DEFAULT), &c,
                                err);
    free(ids);
    for (size_t u = 0; st == PVG_OK && u < j->b.n_users; u++)
        st = pvg_dp_item_counts_add_user(c, j->rng, j->b.ids + j->b.off[u],
                                         j->b.off[u + 1] - j->b.off[u], err);
    pvg_dp_popular_params pp;
    pvg_dp_popular_params_init(&pp);
    pp.epsilon = eps;
    pp.delta = POPULAR_DELTA;
    pp.k = k < j->d.n ? k : j->d.n;
    pp.allow_insecure_rng = srv->opt.allow_insecure_rng;
    pvg_dp_popular *rel = NULL;
    if (st == PVG_OK) st = pvg_dp_popular_release(c, j->rng, &pp, &rel, err);
    pvg_dp_item_counts_free(c);
    if (st != PVG_OK) return st;
    /* charged before anything is kept or shown */
    char what[160];
    snprintf(what, sizeof what, "popular list top-%zu of model build %s", pp.k, j->fph);
    int64_t release_id = 0;
    st = pvg_ledger_charge(j->s, LEDGER_POPULAR, what, rel->info.mechanism, rel->info.epsilon,
                           rel->info.delta, &release_id, err);
    pvg_srv_popular *p = st == PVG_OK ? calloc(1, sizeof *p) : NULL;
    if (st == PVG_OK && (!p || !(p->items = calloc(rel->n ? rel->n : 1, sizeof *p->items)) ||
                         !(p->item_index = calloc(rel->n ? rel->n : 1, sizeof *p->item_index))))
        st = pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
    if (st == PVG_OK) {
        audit_release(srv, j->s, what, LEDGER_POPULAR, rel->info.epsilon, rel->info.delta,
                      release_id);
        snprintf(p->mechanism, sizeof p->mechanism, "%s", rel->info.mechanism);
        p->epsilon = rel->info.epsilon;
        p->delta = rel->info.delta;
        p->release_id = release_id;
        p->released_at = pvg_store_now(j->s);
        for (size_t i = 0; i < rel->n; i++) {
            const pvg_srv_popular_item *src = &j->d.items[domain_find(&j->d, rel->items[i].item)];
            pvg_srv_popular_item *e = &p->items[p->n++];
            e->ext_id = strdup(src->ext_id);
            e->title = src->title ? strdup(src->title) : NULL;
            e->price = src->price;
            e->row_id = src->row_id;
            e->noisy_count = rel->items[i].noisy_count;
            if (!e->ext_id || (src->title && !e->title)) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
                break;
            }
            int64_t ix = pvg_model_item_index(j->m->model, e->ext_id);
            if (ix >= 0) p->item_index[p->n_fallback++] = ix;
        }
    }
    pvg_dp_popular_free(rel);
    if (st != PVG_OK) {
        popular_free(p);
        return st;
    }
    *out = p;
    return PVG_OK;
}

static pvg_status similar_make(release_job *j, const pvg_srv_popular *pop, double eps,
                               pvg_srv_similar **out, pvg_error *err)
{
    *out = NULL;
    if (pop->n < 2)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "the popular list has fewer than two items: no domain for similar "
                             "items");
    if (!budget_allows(j->s, PVG_LEDGER_SIMILAR_ITEMS, eps, SIMILAR_DELTA, err))
        return PVG_ERR_BUDGET;
    pvg_status st = job_read(j, err);
    if (st != PVG_OK) return st;
    pvg_srv_similar *x = calloc(1, sizeof *x);
    int64_t *ids = calloc(pop->n, sizeof *ids);
    if (!x || !ids || !(x->items = calloc(pop->n, sizeof *x->items))) {
        free(ids);
        similar_free(x);
        return pvg_error_set(err, PVG_ERR_NOMEM, "similar release: out of memory");
    }
    for (size_t i = 0; i < pop->n; i++) {
        ids[i] = pop->items[i].row_id;
        pvg_srv_popular_item *e = &x->items[x->n++];
        *e = pop->items[i];
        e->ext_id = strdup(pop->items[i].ext_id);
        e->title = pop->items[i].title ? strdup(pop->items[i].title) : NULL;
        if (!e->ext_id || (pop->items[i].title && !e->title))
            st = pvg_error_set(err, PVG_ERR_NOMEM, "similar release: out of memory");
    }
    pvg_dp_cooc_counts *c = NULL;
    if (st == PVG_OK) st = pvg_dp_cooc_counts_new(ids, pop->n, PVG_DP_COOC_DEFAULT_M, &c, err);
    free(ids);
    for (size_t u = 0; st == PVG_OK && u < j->b.n_users; u++)
        st = pvg_dp_cooc_counts_add_user(c, j->rng, j->b.ids + j->b.off[u],
                                         j->b.off[u + 1] - j->b.off[u], err);
    pvg_dp_cooc_params cp;
    pvg_dp_cooc_params_init(&cp);
    cp.epsilon = eps;
    cp.delta = SIMILAR_DELTA;
    cp.k = pop->n - 1 < SIMILAR_K ? pop->n - 1 : SIMILAR_K;
    cp.allow_insecure_rng = j->srv->opt.allow_insecure_rng;
    if (st == PVG_OK) st = pvg_dp_cooc_release(c, j->rng, &cp, &x->rel, err);
    pvg_dp_cooc_counts_free(c);
    char what[160];
    snprintf(what, sizeof what, "similar items over the popular top-%zu of model build %s", pop->n,
             j->fph);
    if (st == PVG_OK)
        st = pvg_ledger_charge(j->s, LEDGER_SIMILAR, what, x->rel->info.mechanism,
                               x->rel->info.epsilon, x->rel->info.delta, &x->release_id, err);
    if (st != PVG_OK) {
        similar_free(x);
        return st;
    }
    audit_release(j->srv, j->s, what, LEDGER_SIMILAR, x->rel->info.epsilon, x->rel->info.delta,
                  x->release_id);
    x->released_at = pvg_store_now(j->s);
    *out = x;
    return PVG_OK;
}

/* The last cached release of `kind` (of any model build), or NULL. */
static char *cache_latest(pvg_server *srv, pvg_backend *b, const char *kind, int64_t *release_id,
                          int64_t *created_at)
{
    char *body = NULL;
    if (b->ops->release_cache_latest(b, kind, srv->dataset, &body, release_id, created_at, NULL) !=
        PVG_OK)
        return NULL;
    return body;
}

/* Publishes the popular list and similar items of m: this build's cached
 * releases, else new ones (charged), else the last earlier ones (stale);
 * records why when there is no fresh one. */
static void popular_try(pvg_server *srv, pvg_srv_model *m)
{
    pvg_store *s = srv->reload_store;
    /* the release cache (DP releases only, public once released) */
    pvg_backend *b = pvg_store_backend(s);
    release_job j;
    memset(&j, 0, sizeof j);
    j.srv = srv;
    j.s = s;
    j.m = m;
    j.fp = pvg_model_fingerprint(m->model);
    sodium_bin2hex(j.fph, sizeof j.fph, j.fp, 8);
    double eps = srv->opt.popular_epsilon;
    size_t k = (size_t)srv->opt.popular_k;
    char pparams[128], sparams[128];
    snprintf(pparams, sizeof pparams, "k=%zu eps=%.17g delta=%.17g mech=default", k, eps,
             POPULAR_DELTA);
    pvg_error perr, serr;
    pvg_error_clear(&perr);
    pvg_error_clear(&serr);
    pvg_srv_popular *pop = atomic_load(&m->popular);
    pvg_srv_similar *sim = atomic_load(&m->similar);
    pvg_srv_popular *newpop = NULL;
    pvg_srv_similar *newsim = NULL;
    pvg_status pst = PVG_OK, sst = PVG_OK;

    if (!pop || pop->stale) {
        char *body = NULL;
        int64_t rid = 0, at = 0;
        pst = b->ops->release_cache_get(b, "popular", j.fp, 32, srv->dataset, pparams, &body, &rid,
                                        &at, &perr);
        if (pst == PVG_OK) {
            pst = popular_from_body(m, body, &newpop, &perr);
            if (newpop) {
                newpop->release_id = rid;
                newpop->released_at = at;
            }
        } else if (pst == PVG_ERR_NOT_FOUND) {
            pvg_error_clear(&perr);
            j.rng = srv->opt.allow_insecure_rng
                        ? pvg_rng_new_INSECURE_deterministic_for_tests(srv->opt.insecure_seed)
                        : pvg_rng_new_secure();
            pst = j.rng ? popular_make(&j, k, eps, &newpop, &perr)
                        : pvg_error_set(&perr, PVG_ERR_NOMEM, "no random generator");
            if (pst == PVG_OK) {
                char *text = popular_to_body(newpop);
                /* charged already; failing to remember it costs budget later, not privacy */
                if (text)
                    (void)b->ops->release_cache_put(b, "popular", j.fp, 32, srv->dataset, pparams,
                                                    newpop->mechanism, newpop->release_id, text,
                                                    newpop->released_at, NULL);
                free(text);
            }
        }
        free(body);
    }
    const pvg_srv_popular *dom = newpop ? newpop : (pop && !pop->stale ? pop : NULL);
    if (dom && (!sim || sim->stale)) {
        snprintf(sparams, sizeof sparams, "popular=%lld eps=%.17g delta=%.17g k=%d m=%d",
                 (long long)dom->release_id, eps, SIMILAR_DELTA, SIMILAR_K,
                 (int)PVG_DP_COOC_DEFAULT_M);
        char *body = NULL;
        int64_t rid = 0, at = 0;
        sst = b->ops->release_cache_get(b, "similar", j.fp, 32, srv->dataset, sparams, &body, &rid,
                                        &at, &serr);
        if (sst == PVG_OK) {
            sst = similar_from_body(body, &newsim, &serr);
            if (newsim) {
                newsim->release_id = rid;
                newsim->released_at = at;
            }
        } else if (sst == PVG_ERR_NOT_FOUND) {
            pvg_error_clear(&serr);
            if (!j.rng)
                j.rng = srv->opt.allow_insecure_rng
                            ? pvg_rng_new_INSECURE_deterministic_for_tests(srv->opt.insecure_seed)
                            : pvg_rng_new_secure();
            sst = j.rng ? similar_make(&j, dom, eps, &newsim, &serr)
                        : pvg_error_set(&serr, PVG_ERR_NOMEM, "no random generator");
            if (sst == PVG_OK) {
                char *text = NULL;
                if (similar_to_body(newsim, &text, NULL) == PVG_OK)
                    (void)b->ops->release_cache_put(b, "similar", j.fp, 32, srv->dataset, sparams,
                                                    newsim->rel->info.mechanism, newsim->release_id,
                                                    text, newsim->released_at, NULL);
                free(text);
            }
        }
        free(body);
    } else if (!dom && (!sim || sim->stale)) {
        sst = PVG_ERR_STATE;
        pvg_error_set(&serr, PVG_ERR_STATE, "no fresh popular list to take the domain from (%s)",
                      perr.text[0] ? perr.text : "not released yet");
    }
    pvg_rng_free(j.rng);
    baskets_free(&j.b);
    popular_items_free(j.d.items, j.d.n);

    /* nothing fresh: the last earlier release, public already */
    if (!newpop && !pop) {
        int64_t rid = 0, at = 0;
        char *body = cache_latest(srv, b, "popular", &rid, &at);
        if (body && popular_from_body(m, body, &newpop, NULL) == PVG_OK) {
            newpop->release_id = rid;
            newpop->released_at = at;
            newpop->stale = 1;
        }
        free(body);
    }
    if (!newsim && !sim) {
        int64_t rid = 0, at = 0;
        char *body = cache_latest(srv, b, "similar", &rid, &at);
        if (body && similar_from_body(body, &newsim, NULL) == PVG_OK) {
            newsim->release_id = rid;
            newsim->released_at = at;
            newsim->stale = 1;
        }
        free(body);
    }

    pthread_mutex_lock(&m->popular_mu);
    m->popular_tried = pvg_srv_now();
    if (newpop) {
        /* the one it replaces (stale) may be in use by a request: kept until the model goes */
        pvg_srv_popular *old = atomic_exchange(&m->popular, newpop);
        if (old) newpop->retired = old; /* freed with the model */
    }
    if (newsim) {
        pvg_srv_similar *old = atomic_exchange(&m->similar, newsim);
        if (old) newsim->retired = old;
    }
    if (pst != PVG_OK)
        snprintf(m->popular_error, sizeof m->popular_error, "%s",
                 perr.text[0] ? perr.text : pvg_strerror(pst));
    else if (newpop && !newpop->stale)
        m->popular_error[0] = 0;
    if (sst != PVG_OK)
        snprintf(m->similar_error, sizeof m->similar_error, "%s",
                 serr.text[0] ? serr.text : pvg_strerror(sst));
    else if (newsim && !newsim->stale)
        m->similar_error[0] = 0;
    pthread_mutex_unlock(&m->popular_mu);
}

/* 1 when m lacks a fresh popular list or similar items (a retry is due). */
static int releases_missing(pvg_srv_model *m)
{
    pvg_srv_popular *p = atomic_load(&m->popular);
    pvg_srv_similar *x = atomic_load(&m->similar);
    return !p || p->stale || !x || x->stale;
}

void pvg_srv_model_popular_error(pvg_srv_model *m, char *buf, size_t len)
{
    pthread_mutex_lock(&m->popular_mu);
    snprintf(buf, len, "%s", m->popular_error[0] ? m->popular_error : "not released yet");
    pthread_mutex_unlock(&m->popular_mu);
}

void pvg_srv_model_similar_error(pvg_srv_model *m, char *buf, size_t len)
{
    pthread_mutex_lock(&m->popular_mu);
    snprintf(buf, len, "%s", m->similar_error[0] ? m->similar_error : "not released yet");
    pthread_mutex_unlock(&m->popular_mu);
}

/* ---- loading and reloading ------------------------------------------------- */

/* The DP model's popular items among the operator's catalog (public items
 * only: an item outside the catalog is never shown to others, whatever the
 * trainer's vocabulary), best first. */
static pvg_status dp_popular_make(pvg_srv_model *m, pvg_error *err)
{
    size_t n = pvg_model_n_items(m->model);
    pvg_scored_item *all = malloc((n ? n : 1) * sizeof *all);
    m->dp_popular = malloc((n ? n : 1) * sizeof *m->dp_popular);
    m->dp_popular_score = malloc((n ? n : 1) * sizeof *m->dp_popular_score);
    if (!all || !m->dp_popular || !m->dp_popular_score) {
        free(all);
        return pvg_error_set(err, PVG_ERR_NOMEM, "DP model: out of memory");
    }
    size_t got = 0;
    pvg_status st = n ? pvg_model_popular(m->model, n, all, &got, err) : PVG_OK;
    for (size_t i = 0; st == PVG_OK && i < got && m->n_dp_popular < PVG_SRV_DP_POPULAR; i++) {
        if (!m->catalog[all[i].item_index].in_catalog) continue;
        m->dp_popular[m->n_dp_popular] = all[i].item_index;
        m->dp_popular_score[m->n_dp_popular++] = all[i].score;
    }
    free(all);
    return st;
}

/* Loads the file of the main model (dp 0: srv->model_path, opened with the
 * store) or of the DP model (dp 1: srv->dp_model_path, its item side only:
 * the server never opens a shopper's rows of the DP model) when it changed,
 * and swaps it in. */
static pvg_status load_one(pvg_server *srv, int dp, pvg_error *err)
{
    const char *path = dp ? srv->dp_model_path : srv->model_path;
    pvg_srv_model **slot = dp ? &srv->dp_model : &srv->model;
    struct stat sb;
    pvg_status st = PVG_OK;
    if (stat(path, &sb) != 0) {
        int e = errno;
        if (e == ENOENT) return PVG_OK; /* no model yet: nothing to serve from it */
        return pvg_error_set(err, PVG_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!file_changed(srv, slot, &sb)) return PVG_OK;
    if (dp && srv->dp_refused && srv->dp_refused_dev == sb.st_dev &&
        srv->dp_refused_ino == sb.st_ino && srv->dp_refused_mtime_ns == stat_mtime_ns(&sb) &&
        srv->dp_refused_size == sb.st_size) {
        /* the file refused already: not loaded again until it changes */
        pthread_mutex_lock(&srv->model_mu);
        pvg_status rst =
            pvg_error_set(err, srv->dp_refused_status, "%s", srv->last_dp_reload_error);
        pthread_mutex_unlock(&srv->model_mu);
        return rst;
    }
    pvg_srv_model *m = calloc(1, sizeof *m);
    if (!m) return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
    atomic_init(&m->refs, 1);
    atomic_init(&m->popular, NULL);
    atomic_init(&m->similar, NULL);
    pthread_mutex_init(&m->popular_mu, NULL);
    m->dev = sb.st_dev;
    m->ino = sb.st_ino;
    m->mtime_ns = stat_mtime_ns(&sb);
    m->size = sb.st_size;
    if (dp) {
        st = pvg_model_load(path, &m->model, err);
        pvg_srv_dp_info info;
        if (st == PVG_OK && !pvg_srv_model_dp_info(m, &info))
            st = pvg_error_set(err, PVG_ERR_INVALID,
                               "%s: the DP model path takes only a model trained with differential "
                               "privacy (privguide train --epsilon E --delta D), and this %s "
                               "model's header records no DP training; it would show other "
                               "shoppers' baskets: refused (the DP releases serve instead)",
                               path, pvg_model_type_name(pvg_model_type_of(m->model)));
        int charged = 0;
        if (st == PVG_OK) st = pvg_model_dp_charged(srv->reload_store, m->model, &charged, err);
        if (st == PVG_OK && !charged)
            st = pvg_error_set(err, PVG_ERR_INVALID,
                               "%s: this DP model's (epsilon, delta) was never charged to this "
                               "store's budget (no model_builds release names its fingerprint): "
                               "train it with privguide train --epsilon from the store; refused "
                               "(the DP releases serve instead)",
                               path);
    } else {
        /* a model trained from the store opens its sealed per-shopper section
         * with the store's model key (decrypted once, into locked memory) */
        st = pvg_model_load_store(path, srv->reload_store, &m->model, err);
    }
    if (st == PVG_OK) {
        size_t n = pvg_model_n_items(m->model);
        m->catalog = calloc(n ? n : 1, sizeof *m->catalog);
        if (!m->catalog) st = pvg_error_set(err, PVG_ERR_NOMEM, "model catalog: out of memory");
    }
    if (st == PVG_OK) {
        size_t n = pvg_model_n_items(m->model);
        for (size_t i = 0; i < n; i++)
            m->catalog[i].price = m->catalog[i].last_price = -1;
        catalog_ctx cc = {m};
        st = pvg_store_items_foreach(srv->reload_store, catalog_item, &cc, err);
        if (st == PVG_OK) st = declared_titles(m, srv->reload_store, err);
        if (st == PVG_OK) pvg_srv_catalog_json_mark(m); /* once, not per answer */
    }
    if (st == PVG_OK && dp) st = dp_popular_make(m, err);
    if (st == PVG_OK && !dp && srv->opt.cache_entries > 0) {
        m->cache = pvg_srv_cache_new((size_t)srv->opt.cache_entries);
        if (!m->cache) st = pvg_error_set(err, PVG_ERR_NOMEM, "model cache: out of memory");
    }
    if (st == PVG_OK && !dp) popular_try(srv, m);
    /* the fast serving state (int8 item factors) is built before the model
     * is in service, so no request pays for it (NULL: the plain path) */
    if (st == PVG_OK && !dp) (void)pvg_model_serve(m->model);
    if (st != PVG_OK) {
        atomic_fetch_add(&srv->metrics.model_reload_failures, 1);
        pthread_mutex_lock(&srv->model_mu);
        if (dp) {
            snprintf(srv->last_dp_reload_error, sizeof srv->last_dp_reload_error, "%s",
                     err && err->text[0] ? err->text : pvg_strerror(st));
            /* what the file holds (not a passing failure) is not retried */
            srv->dp_refused =
                st == PVG_ERR_INVALID || st == PVG_ERR_CORRUPT || st == PVG_ERR_UNSUPPORTED;
            srv->dp_refused_status = st;
            srv->dp_refused_dev = sb.st_dev;
            srv->dp_refused_ino = sb.st_ino;
            srv->dp_refused_mtime_ns = stat_mtime_ns(&sb);
            srv->dp_refused_size = sb.st_size;
        } else
            snprintf(srv->last_reload_error, sizeof srv->last_reload_error, "%s",
                     err && err->text[0] ? err->text : pvg_strerror(st));
        pthread_mutex_unlock(&srv->model_mu);
        model_destroy(m);
        return st;
    }
    m->loaded_at = (int64_t)time(NULL);
    pthread_mutex_lock(&srv->model_mu);
    pvg_srv_model *old = *slot;
    m->generation = dp ? ++srv->dp_generation : ++srv->generation;
    *slot = m;
    if (dp) {
        srv->last_dp_reload_error[0] = 0;
        srv->dp_refused = 0;
    } else
        srv->last_reload_error[0] = 0;
    pthread_mutex_unlock(&srv->model_mu);
    pvg_srv_model_release(old);
    atomic_fetch_add(&srv->metrics.model_reloads, 1);
    if (!dp) pvg_srv_ts_model_loaded(&srv->ts, m, srv->data_dir);
    return PVG_OK;
}

pvg_status pvg_server_reload_model(pvg_server *srv, pvg_error *err)
{
    if (!srv) return pvg_error_set(err, PVG_ERR_INVALID, "reload: NULL server");
    pthread_mutex_lock(&srv->reload_mu);
    pvg_status st = load_one(srv, 0, err);
    pvg_error dperr;
    pvg_error_clear(&dperr);
    pvg_status dst = load_one(srv, 1, &dperr);
    pthread_mutex_unlock(&srv->reload_mu);
    if (st != PVG_OK) return st;
    if (dst != PVG_OK && err) *err = dperr;
    return dst;
}

static void *reload_main(void *arg)
{
    pvg_server *srv = arg;
    pthread_mutex_lock(&srv->stop_mu);
    while (!srv->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long long ns = ts.tv_nsec + (long long)srv->opt.reload_ms * 1000000LL;
        ts.tv_sec += (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&srv->stop_cv, &srv->stop_mu, &ts);
        if (srv->stopping) break;
        pthread_mutex_unlock(&srv->stop_mu);
        pvg_error e;
        pvg_error_clear(&e);
        /* a failed load keeps the previous model; reload counts the failure in
         * the metrics and keeps its text in last_reload_error */
        pvg_status st = pvg_server_reload_model(srv, &e);
        (void)st;
        /* a model without its popular list (e.g. no budget yet) retries every ten
         * reload periods (10 s by default) */
        pvg_srv_model *m = pvg_srv_model_acquire(srv);
        if (m && releases_missing(m)) {
            pthread_mutex_lock(&m->popular_mu);
            int due = pvg_srv_now() - m->popular_tried >= srv->opt.reload_ms * 10 / 1000.0;
            pthread_mutex_unlock(&m->popular_mu);
            if (due) {
                pthread_mutex_lock(&srv->reload_mu);
                popular_try(srv, m);
                pthread_mutex_unlock(&srv->reload_mu);
            }
        }
        pvg_srv_model_release(m);
        pthread_mutex_lock(&srv->stop_mu);
    }
    pthread_mutex_unlock(&srv->stop_mu);
    return NULL;
}

pvg_status pvg_srv_model_init(pvg_server *srv, pvg_error *err)
{
    pvg_status st = pvg_server_reload_model(srv, err);
    if (st != PVG_OK) return st;
    if (pthread_create(&srv->reload_thread, NULL, reload_main, srv) != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL, "cannot start the model reload thread");
    srv->reload_started = 1;
    return PVG_OK;
}

void pvg_srv_model_shutdown(pvg_server *srv)
{
    if (srv->reload_started) {
        pthread_mutex_lock(&srv->stop_mu);
        srv->stopping = 1;
        pthread_cond_broadcast(&srv->stop_cv);
        pthread_mutex_unlock(&srv->stop_mu);
        pthread_join(srv->reload_thread, NULL);
        srv->reload_started = 0;
    }
    pthread_mutex_lock(&srv->model_mu);
    pvg_srv_model *m = srv->model, *dm = srv->dp_model;
    srv->model = NULL;
    srv->dp_model = NULL;
    pthread_mutex_unlock(&srv->model_mu);
    pvg_srv_model_release(m);
    pvg_srv_model_release(dm);
}
