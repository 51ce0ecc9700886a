/*
 * model_holder.c - the model in service: loading, the catalog view (titles
 * and prices by model item index), the DP popular list released once per
 * model build, the recommendation cache, reference counting so requests in
 * flight keep the model they started with, and the reload thread that
 * watches the model file.
 */
#include "server/server_internal.h"

#include "store/store_internal.h"

#include <privguide/dp.h>
#include <privguide/ledger.h>
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
    for (int i = 0; i < CACHE_STRIPES; i++) pthread_mutex_init(&c->mu[i], NULL);
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
    for (int i = 0; i < CACHE_STRIPES; i++) pthread_mutex_destroy(&c->mu[i]);
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

void pvg_srv_cache_put(pvg_srv_cache *c, const unsigned char key[16], size_t k, const pvg_scored_item *in,
                   size_t n)
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

void pvg_srv_cache_put_body(pvg_srv_cache *c, const unsigned char key[16], size_t k, const char *body,
                            size_t len)
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

static void model_destroy(pvg_srv_model *m)
{
    if (!m) return;
    if (m->catalog) {
        size_t n = pvg_model_n_items(m->model);
        for (size_t i = 0; i < n; i++) free(m->catalog[i].title);
        free(m->catalog);
    }
    pvg_srv_popular *p = atomic_load(&m->popular);
    if (p) {
        free(p->item_index);
        free(p->noisy_count);
        free(p);
    }
    pthread_mutex_destroy(&m->popular_mu);
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

static void check_model_file(pvg_server *srv)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    long long last = atomic_load(&srv->model_checked_ns);
    if (now - last < MODEL_CHECK_NS) return;
    if (!atomic_compare_exchange_strong(&srv->model_checked_ns, &last, now)) return;
    struct stat sb;
    if (stat(srv->model_path, &sb) != 0) return;
    pthread_mutex_lock(&srv->model_mu);
    pvg_srv_model *m = srv->model;
    int changed = m && (m->dev != sb.st_dev || m->ino != sb.st_ino ||
                        m->mtime_ns != (int64_t)sb.st_mtim.tv_sec * 1000000000LL +
                                           sb.st_mtim.tv_nsec ||
                        m->size != sb.st_size);
    pthread_mutex_unlock(&srv->model_mu);
    if (!changed) return;
    pvg_error e;
    pvg_error_clear(&e);
    (void)pvg_server_reload_model(srv, &e); /* a failed load keeps the previous model */
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
    c->m->catalog[i].price = it->price;
    return 0;
}

/* ---- the DP popular list --------------------------------------------------- */

static const char MECHANISM[] = "exponential-mechanism-top-k";

static pvg_status popular_from_json(pvg_srv_model *m, pvg_srv_popular *p, const char *text,
                                    pvg_error *err)
{
    json_error_t je;
    json_t *a = json_loads(text, 0, &je);
    if (!a || !json_is_array(a)) {
        json_decref(a);
        return pvg_error_set(err, PVG_ERR_CORRUPT, "stored popular release is not a JSON array");
    }
    size_t n = json_array_size(a);
    p->item_index = calloc(n ? n : 1, sizeof(int64_t));
    if (!p->item_index) {
        json_decref(a);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    p->n = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = json_string_value(json_array_get(a, i));
        int64_t ix = id ? pvg_model_item_index(m->model, id) : -1;
        if (ix >= 0) p->item_index[p->n++] = ix;
    }
    json_decref(a);
    return PVG_OK;
}

/* Releases (or reuses) the popular list of this model build: top-k items
 * by distinct-user counts, chosen by k rounds of the exponential mechanism
 * (pvg_dp_top_k; a shopper changes every count by at most 1, so the
 * utility sensitivity is 1), charged once to the ledger. */
static pvg_status popular_release(pvg_server *srv, pvg_store *s, pvg_srv_model *m,
                                  pvg_srv_popular *p, pvg_error *err)
{
    const unsigned char *fp = pvg_model_fingerprint(m->model);
    size_t n_items = pvg_model_n_items(m->model);
    size_t k = (size_t)srv->opt.popular_k;
    if (k > n_items) k = n_items;
    double eps = srv->opt.popular_epsilon;
    pvg_backend *b = pvg_store_backend(s);
    char *stored = NULL;
    int64_t stored_id = 0;
    pvg_status st = b->ops->release_get(b, fp, 32, srv->dataset, (int64_t)k, eps, &stored, &stored_id, err);
    if (st == PVG_OK) {
        st = popular_from_json(m, p, stored, err);
        free(stored);
        p->release_id = stored_id;
        p->epsilon = eps;
        snprintf(p->mechanism, sizeof p->mechanism, "%s", MECHANISM);
        return st;
    }
    if (st != PVG_ERR_NOT_FOUND) return st;
    pvg_error_clear(err);
    if (k == 0) return pvg_error_set(err, PVG_ERR_INVALID, "the model has no items");

    /* utilities: distinct-user counts of every item */
    pvg_scored_item *all = calloc(n_items, sizeof *all);
    int64_t *u = calloc(n_items, sizeof *u);
    size_t *pick = calloc(k, sizeof *pick);
    if (!all || !u || !pick) {
        free(all);
        free(u);
        free(pick);
        return pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
    }
    size_t got = 0;
    st = pvg_model_popular(m->model, n_items, all, &got, err);
    if (st == PVG_OK) {
        for (size_t i = 0; i < got; i++)
            if (all[i].item_index >= 0 && (size_t)all[i].item_index < n_items)
                u[all[i].item_index] = (int64_t)(all[i].score + 0.5f);
        pvg_rng *rng = srv->opt.allow_insecure_rng
                           ? pvg_rng_new_INSECURE_deterministic_for_tests(srv->opt.insecure_seed)
                           : pvg_rng_new_secure();
        if (!rng) st = pvg_error_set(err, PVG_ERR_NOMEM, "popular release: no random generator");
        else {
            st = pvg_dp_top_k(rng, u, n_items, k, 1, eps, srv->opt.allow_insecure_rng, pick, err);
        }
        pvg_rng_free(rng);
    }
    free(all);
    free(u);
    json_t *ids = st == PVG_OK ? json_array() : NULL;
    if (st == PVG_OK) {
        for (size_t i = 0; i < k; i++)
            json_array_append_new(ids, json_string(pvg_model_item_id(m->model, (int64_t)pick[i])));
    }
    free(pick);
    if (st != PVG_OK) return st;
    char *text = json_dumps(ids, JSON_COMPACT);
    json_decref(ids);
    if (!text) return pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");

    char what[160], fph[17];
    sodium_bin2hex(fph, sizeof fph, fp, 8);
    snprintf(what, sizeof what, "popular items top-%zu of model build %s", k, fph);
    int64_t release_id = 0;
    st = pvg_ledger_charge(s, srv->dataset, what, MECHANISM, eps, 0.0, &release_id, err);
    if (st == PVG_OK) {
        (void)b->ops->release_put(b, fp, 32, srv->dataset, (int64_t)k, eps, MECHANISM, release_id, text,
                                  pvg_store_now(s), NULL);
        /* the release is charged; failing to remember it costs budget later, not privacy */
        char detail[256];
        snprintf(detail, sizeof detail, "%s; dataset %s; epsilon %g; release %lld", what,
                 srv->dataset, eps, (long long)release_id);
        pvg_audit_record ar = {0, "server", "dp_release", "", detail};
        pvg_status ast = pvg_audit_append(s, &ar, NULL, NULL);
        if (ast == PVG_OK) atomic_fetch_add(&srv->metrics.audit_entries, 1);
        else atomic_fetch_add(&srv->metrics.audit_failures, 1);
        st = popular_from_json(m, p, text, err);
        p->release_id = release_id;
        p->epsilon = eps;
        snprintf(p->mechanism, sizeof p->mechanism, "%s", MECHANISM);
    }
    free(text);
    return st;
}

/* Tries to release the popular list of m and publishes it; records the
 * reason when it cannot (no budget, budget spent, ...). */
static void popular_try(pvg_server *srv, pvg_srv_model *m)
{
    pvg_error perr;
    pvg_error_clear(&perr);
    pvg_srv_popular *p = calloc(1, sizeof *p);
    pvg_status st = p ? popular_release(srv, srv->reload_store, m, p, &perr) : PVG_ERR_NOMEM;
    pthread_mutex_lock(&m->popular_mu);
    m->popular_tried = pvg_srv_now();
    if (st == PVG_OK) {
        atomic_store(&m->popular, p);
        m->popular_error[0] = 0;
    } else {
        snprintf(m->popular_error, sizeof m->popular_error, "%s",
                 perr.text[0] ? perr.text : pvg_strerror(st));
    }
    pthread_mutex_unlock(&m->popular_mu);
    if (st != PVG_OK && p) {
        free(p->item_index);
        free(p->noisy_count);
        free(p);
    }
}

void pvg_srv_model_popular_error(pvg_srv_model *m, char *buf, size_t len)
{
    pthread_mutex_lock(&m->popular_mu);
    snprintf(buf, len, "%s", m->popular_error[0] ? m->popular_error : "not released yet");
    pthread_mutex_unlock(&m->popular_mu);
}

/* ---- loading and reloading ------------------------------------------------- */

static int64_t stat_mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

static int file_changed(pvg_server *srv, const struct stat *st)
{
    pthread_mutex_lock(&srv->model_mu);
    pvg_srv_model *m = srv->model;
    int changed = !m || m->dev != st->st_dev || m->ino != st->st_ino ||
                  m->mtime_ns != stat_mtime_ns(st) || m->size != st->st_size;
    pthread_mutex_unlock(&srv->model_mu);
    return changed;
}

pvg_status pvg_server_reload_model(pvg_server *srv, pvg_error *err)
{
    if (!srv) return pvg_error_set(err, PVG_ERR_INVALID, "reload: NULL server");
    pthread_mutex_lock(&srv->reload_mu);
    struct stat sb;
    pvg_status st = PVG_OK;
    if (stat(srv->model_path, &sb) != 0) {
        int e = errno;
        pthread_mutex_unlock(&srv->reload_mu);
        if (e == ENOENT) return PVG_OK; /* no model yet: nothing to serve personalised */
        return pvg_error_set(err, PVG_ERR_IO, "%s: %s", srv->model_path, strerror(e));
    }
    if (!file_changed(srv, &sb)) {
        pthread_mutex_unlock(&srv->reload_mu);
        return PVG_OK;
    }
    pvg_srv_model *m = calloc(1, sizeof *m);
    if (!m) {
        pthread_mutex_unlock(&srv->reload_mu);
        return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
    }
    atomic_init(&m->refs, 1);
    atomic_init(&m->popular, NULL);
    pthread_mutex_init(&m->popular_mu, NULL);
    m->dev = sb.st_dev;
    m->ino = sb.st_ino;
    m->mtime_ns = stat_mtime_ns(&sb);
    m->size = sb.st_size;
    /* a model trained from the store opens its sealed per-shopper section
     * with the store's model key (decrypted once, into locked memory) */
    st = pvg_model_load_store(srv->model_path, srv->reload_store, &m->model, err);
    if (st == PVG_OK) {
        size_t n = pvg_model_n_items(m->model);
        m->catalog = calloc(n ? n : 1, sizeof *m->catalog);
        if (!m->catalog) st = pvg_error_set(err, PVG_ERR_NOMEM, "model catalog: out of memory");
    }
    if (st == PVG_OK) {
        size_t n = pvg_model_n_items(m->model);
        for (size_t i = 0; i < n; i++) m->catalog[i].price = -1;
        catalog_ctx cc = {m};
        st = pvg_store_items_foreach(srv->reload_store, catalog_item, &cc, err);
    }
    if (st == PVG_OK && srv->opt.cache_entries > 0) {
        m->cache = pvg_srv_cache_new((size_t)srv->opt.cache_entries);
        if (!m->cache) st = pvg_error_set(err, PVG_ERR_NOMEM, "model cache: out of memory");
    }
    if (st == PVG_OK) popular_try(srv, m);
    if (st != PVG_OK) {
        atomic_fetch_add(&srv->metrics.model_reload_failures, 1);
        snprintf(srv->last_reload_error, sizeof srv->last_reload_error, "%s",
                 err && err->text[0] ? err->text : pvg_strerror(st));
        model_destroy(m);
        pthread_mutex_unlock(&srv->reload_mu);
        return st;
    }
    m->loaded_at = (int64_t)time(NULL);
    pthread_mutex_lock(&srv->model_mu);
    pvg_srv_model *old = srv->model;
    m->generation = ++srv->generation;
    srv->model = m;
    pthread_mutex_unlock(&srv->model_mu);
    pvg_srv_model_release(old);
    atomic_fetch_add(&srv->metrics.model_reloads, 1);
    srv->last_reload_error[0] = 0;
    pthread_mutex_unlock(&srv->reload_mu);
    return PVG_OK;
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
        (void)pvg_server_reload_model(srv, &e); /* a failed load keeps the previous model */
        /* a model without its popular list (e.g. no budget yet) retries every ten
         * reload periods (10 s by default) */
        pvg_srv_model *m = pvg_srv_model_acquire(srv);
        if (m && !atomic_load(&m->popular)) {
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
    pvg_srv_model *m = srv->model;
    srv->model = NULL;
    pthread_mutex_unlock(&srv->model_mu);
    pvg_srv_model_release(m);
}
