/*
 * search_route.c - GET /v1/search and the search index in service.
 *
 * The index (src/search) is built from the store's public catalog when the
 * server starts, then kept current by a thread of its own: every reload
 * period it reads the store's change counter; when the counter moved it
 * fingerprints the catalog (every item's id, title, category, price and
 * attributes) and, when the fingerprint differs, builds a new index and
 * swaps it in. Requests hold a reference to the index they started with,
 * so a swap never waits for them and they never wait for a build. The
 * index holds only catalog data (not personal). An anonymous query is not
 * kept; a shopper's own search (their token and user=<their id>) is
 * recorded as a `search` event through the access gate (docs/search.md).
 */
#include "server/server_internal.h"
#include "store/store_internal.h"
#include "store/text.h"

#include <privguide/search.h>

#include <microhttpd.h>

#include <math.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct srv_search_ix {
    atomic_long refs;
    pvg_search_index *ix;
    uint64_t fingerprint;
    int64_t built_at; /* unix seconds */
    double build_s;
} srv_search_ix;

struct pvg_srv_search {
    pthread_mutex_t mu; /* guards cur, error */
    srv_search_ix *cur;
    char *synonyms;
    char error[PVG_ERROR_TEXT_LEN + 32];
    pvg_store *store;         /* the builder thread's own connection */
    pthread_mutex_t store_mu; /* held while the thread uses store (a key rotation reopens it) */
    int64_t changes;          /* the counter at the last fingerprint */
    pthread_t thread;
    int started;
    atomic_llong builds;
};

static void ix_release(srv_search_ix *x)
{
    if (x && atomic_fetch_sub(&x->refs, 1) == 1) {
        pvg_search_index_free(x->ix);
        free(x);
    }
}

static srv_search_ix *ix_acquire(pvg_srv_search *ss)
{
    pthread_mutex_lock(&ss->mu);
    srv_search_ix *x = ss->cur;
    if (x) atomic_fetch_add(&x->refs, 1);
    pthread_mutex_unlock(&ss->mu);
    return x;
}

/* ---- fingerprint of the catalog ------------------------------------------- */

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int fp_one(void *ctx, const pvg_item *it)
{
    uint64_t *h = ctx;
    const char *f[4] = {it->ext_id, it->title, it->category, it->attrs_json};
    for (int i = 0; i < 4; i++) {
        if (f[i])
            *h = mix(*h, f[i], strlen(f[i]) + 1);
        else
            *h = mix(*h, "\xff", 1);
    }
    *h = mix(*h, &it->price, sizeof it->price);
    *h = mix(*h, &it->id, sizeof it->id);
    return 0;
}

static pvg_status fingerprint(pvg_store *s, uint64_t *out, pvg_error *err)
{
    uint64_t h = 1469598103934665603ull;
    pvg_status st = pvg_store_items_foreach(s, fp_one, &h, err);
    *out = h;
    return st;
}

/* Builds the index from the builder's connection and swaps it in when the
 * catalog changed (force: whatever the fingerprint). */
static pvg_status rebuild(pvg_server *srv, int force, pvg_error *err)
{
    pvg_srv_search *ss = srv->search;
    int64_t changes = 0;
    pvg_status st = pvg_store_changes(ss->store, &changes, err);
    if (st != PVG_OK) return st;
    if (!force && ss->cur && changes == ss->changes) return PVG_OK;
    uint64_t fp = 0;
    st = fingerprint(ss->store, &fp, err);
    if (st != PVG_OK) return st;
    ss->changes = changes;
    if (!force && ss->cur && fp == ss->cur->fingerprint) return PVG_OK;
    pvg_search_options o = {0};
    o.synonyms_path = ss->synonyms;
    srv_search_ix *x = calloc(1, sizeof *x);
    if (!x) return pvg_error_set(err, PVG_ERR_NOMEM, "search: out of memory");
    double t0 = pvg_srv_now();
    st = pvg_search_index_build(ss->store, &o, &x->ix, err);
    if (st != PVG_OK) {
        free(x);
        return st;
    }
    atomic_store(&x->refs, 1);
    x->fingerprint = fp;
    x->built_at = (int64_t)time(NULL);
    x->build_s = pvg_srv_now() - t0;
    pthread_mutex_lock(&ss->mu);
    srv_search_ix *old = ss->cur;
    ss->cur = x;
    ss->error[0] = 0;
    pthread_mutex_unlock(&ss->mu);
    ix_release(old);
    atomic_fetch_add(&ss->builds, 1);
    return PVG_OK;
}

static void *search_main(void *arg)
{
    pvg_server *srv = arg;
    pvg_srv_search *ss = srv->search;
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
        /* a failed build keeps the index in service; its reason is kept */
        pthread_mutex_lock(&ss->store_mu);
        pvg_status st = rebuild(srv, 0, &e);
        pthread_mutex_unlock(&ss->store_mu);
        if (st != PVG_OK) {
            pthread_mutex_lock(&ss->mu);
            snprintf(ss->error, sizeof ss->error, "%s", e.text);
            pthread_mutex_unlock(&ss->mu);
        }
        pthread_mutex_lock(&srv->stop_mu);
    }
    pthread_mutex_unlock(&srv->stop_mu);
    return NULL;
}

pvg_status pvg_srv_search_init(pvg_server *srv, pvg_error *err)
{
    pvg_srv_search *ss = calloc(1, sizeof *ss);
    if (!ss) return pvg_error_set(err, PVG_ERR_NOMEM, "search: out of memory");
    pthread_mutex_init(&ss->mu, NULL);
    pthread_mutex_init(&ss->store_mu, NULL);
    srv->search = ss;
    const char *syn = srv->opt.synonyms_path;
    char buf[4096];
    if (!syn && srv->opt.web_dir) {
        /* installed layout (share/privguide/synonyms.txt), then the source tree's */
        snprintf(buf, sizeof buf, "%s/../synonyms.txt", srv->opt.web_dir);
        if (access(buf, R_OK) != 0)
            snprintf(buf, sizeof buf, "%s/../../../data/synonyms.txt", srv->opt.web_dir);
        if (access(buf, R_OK) == 0) syn = buf;
    }
    if (syn && *syn && !(ss->synonyms = strdup(syn)))
        return pvg_error_set(err, PVG_ERR_NOMEM, "search: out of memory");
    pvg_status st = pvg_store_open(srv->data_dir, &ss->store, err);
    if (st == PVG_OK) pvg_srv_store_prepare(ss->store); /* as after a key rotation's reopen */
    if (st == PVG_OK) st = rebuild(srv, 1, err);
    if (st != PVG_OK) return st;
    if (pthread_create(&ss->thread, NULL, search_main, srv) != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL, "cannot start the search index thread");
    ss->started = 1;
    return PVG_OK;
}

void pvg_srv_search_shutdown(pvg_server *srv)
{
    pvg_srv_search *ss = srv->search;
    if (!ss) return;
    if (ss->started) {
        pthread_mutex_lock(&srv->stop_mu);
        srv->stopping = 1;
        pthread_cond_broadcast(&srv->stop_cv);
        pthread_mutex_unlock(&srv->stop_mu);
        pthread_join(ss->thread, NULL);
        ss->started = 0;
    }
}

void pvg_srv_search_free(pvg_server *srv)
{
    pvg_srv_search *ss = srv->search;
    if (!ss) return;
    pvg_srv_search_shutdown(srv);
    ix_release(ss->cur);
    pvg_store_free(ss->store);
    free(ss->synonyms);
    pthread_mutex_destroy(&ss->mu);
    pthread_mutex_destroy(&ss->store_mu);
    free(ss);
    srv->search = NULL;
}

pvg_store **pvg_srv_search_hold(pvg_server *srv)
{
    pvg_srv_search *ss = srv->search;
    if (!ss || !ss->store) return NULL;
    pthread_mutex_lock(&ss->store_mu);
    return &ss->store;
}

void pvg_srv_search_release(pvg_server *srv)
{
    pthread_mutex_unlock(&srv->search->store_mu);
}

long long pvg_srv_search_builds(const pvg_server *srv)
{
    return srv->search ? atomic_load(&srv->search->builds) : 0;
}

/* ---- GET /v1/search --------------------------------------------------------- */

static int param_double(pvg_srv_req *r, const char *name, double *out)
{
    const char *v = pvg_srv_req_query(r, name);
    *out = -1;
    if (!v) return 0;
    char *end = NULL;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x) || x < 0 || x > 1e12) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter %s: want a number >= 0, got \"%.40s\"", name, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int param_size(pvg_srv_req *r, const char *name, size_t def, size_t lo, size_t hi,
                      size_t *out)
{
    const char *v = pvg_srv_req_query(r, name);
    *out = def;
    if (!v) return 0;
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < (long long)lo || x > (long long)hi) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter %s: want an integer %zu..%zu, got \"%.40s\"", name, lo,
                            hi, v);
        return -1;
    }
    *out = (size_t)x;
    return 0;
}

/* A JSON string of s; invalid UTF-8 (a query from the URL may hold any
 * bytes) has each bad byte replaced by U+FFFD. NULL gives null. */
static json_t *str_or_null(const char *s)
{
    if (!s) return json_null();
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *buf = malloc(3 * n + 1);
    if (!buf) return json_null();
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        long long bad = pvg_utf8_invalid_at(s + i, n - i);
        size_t good = bad < 0 ? n - i : (size_t)bad;
        memcpy(buf + k, s + i, good);
        k += good;
        i += good;
        if (bad >= 0) {
            memcpy(buf + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        }
    }
    buf[k] = 0;
    j = json_string(buf);
    free(buf);
    return j ? j : json_null();
}

static json_t *query_json(const pvg_search_result *res, const char *text)
{
    const pvg_search_term *terms;
    size_t nt = pvg_search_result_terms(res, &terms);
    json_t *jt = json_array(), *corr = json_array(), *exp = json_null();
    for (size_t i = 0; i < nt; i++) {
        const pvg_search_term *t = &terms[i];
        json_t *vars = json_array(), *to = json_array(), *comp = json_array();
        int dist = 0;
        for (size_t v = 0; v < t->n_variants; v++) {
            const pvg_search_variant *x = &t->variants[v];
            json_t *jv = json_pack("{s:s, s:s, s:f}", "word", x->word, "kind",
                                   pvg_search_variant_kind_name(x->kind), "weight", x->weight);
            if (x->kind == PVG_SEARCH_VARIANT_TYPO) {
                json_object_set_new(jv, "distance", json_integer(x->distance));
                json_array_append_new(to, json_string(x->word));
                dist = x->distance;
            }
            if (x->kind == PVG_SEARCH_VARIANT_PREFIX)
                json_array_append_new(comp, json_string(x->word));
            json_array_append_new(vars, jv);
        }
        json_array_append_new(jt, json_pack("{s:s, s:s, s:b, s:b, s:o}", "word", t->word, "stem",
                                            t->stem, "known", t->known, "prefix", t->is_prefix,
                                            "variants", vars));
        if (json_array_size(to))
            json_array_append_new(
                corr, json_pack("{s:s, s:o, s:i}", "word", t->word, "to", to, "distance", dist));
        else
            json_decref(to);
        if (t->is_prefix) {
            json_decref(exp);
            exp = json_pack("{s:s, s:o}", "word", t->word, "completions", comp);
        } else {
            json_decref(comp);
        }
    }
    const char *const *stop;
    size_t ns = pvg_search_result_stopwords(res, &stop);
    json_t *js = json_array();
    for (size_t i = 0; i < ns; i++)
        json_array_append_new(js, json_string(stop[i]));
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:I, s:I}", "text", str_or_null(text), "terms", jt,
                     "corrections", corr, "prefix_expansion", exp, "stopwords", js, "dropped",
                     (json_int_t)pvg_search_result_dropped(res), "matched_terms",
                     (json_int_t)pvg_search_result_min_matched(res));
}

/* ---- the shopper behind a search ------------------------------------------ */

/* The route is public: a credential is read only when one is presented.
 * A shopper token with user=<its own user> makes the search theirs
 * (*user set); no credential, an operator key, or a token without user=
 * leaves *user NULL. Returns -1 after replying (bad credential, another
 * shopper's id, user= without a shopper token). */
static int search_shopper(pvg_srv_req *r, const char **user)
{
    *user = NULL;
    const char *want = pvg_srv_req_query(r, "user");
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!h || !*h) {
        if (want) {
            pvg_srv_reply_error(r, 401, "unauthorized",
                                "query parameter user: needs that shopper's token "
                                "(\"Authorization: Bearer <token>\")");
            return -1;
        }
        return 0;
    }
    /* a presented credential is checked as on every other route (failures
     * counted and limited per address, access monitoring, the key's rate) */
    if (pvg_srv_authenticate(r) != 0) return -1;
    if (!want || !*want || r->who.role != PVG_ROLE_USER) return 0; /* operators: nothing kept */
    if (!pvg_auth_may_access_user(pvg_srv_req_store(r), &r->who, want)) {
        pvg_srv_reply_error(r, 403, "forbidden",
                            "query parameter user: this token may search "
                            "only as its own user");
        return -1;
    }
    *user = want;
    return 0;
}

/* Records the shopper's query as one `search` event (the query text cut
 * to PVG_SEARCH_EVENT_QUERY_MAX bytes at a character boundary) through
 * the gate, which applies the policy and the consent rule for collection.
 * Never fails the search: a refused event is dropped silently; a store
 * error is counted (privguide_search_event_failures_total). */
static void search_record(pvg_srv_req *r, const char *user, const char *text)
{
    if (!text || !*text) return; /* browsing without words is not a search */
    char q[PVG_SEARCH_EVENT_QUERY_MAX + 1];
    size_t n = strlen(text);
    if (n > PVG_SEARCH_EVENT_QUERY_MAX) {
        n = PVG_SEARCH_EVENT_QUERY_MAX;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
    }
    memcpy(q, text, n);
    q[n] = 0;
    pvg_store *s = pvg_srv_req_store(r);
    pvg_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = PVG_EVENT_SEARCH;
    ev.fields = PVG_FIELD_QUERY;
    ev.ts = pvg_store_now(s);
    ev.query = q;
    pvg_event_in in = {user, &ev, NULL, 0};
    pvg_event_out out;
    memset(&out, 0, sizeof out);
    long long stored = 0, dup = 0;
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_access_events_record(&g, &in, 1, &out, &stored, &dup, &e);
    if (st != PVG_OK)
        atomic_fetch_add(&r->srv->metrics.search_event_failures, 1);
    else if (stored + dup > 0)
        atomic_fetch_add(&r->srv->metrics.search_events, 1);
}

/* A hit with its evidence ("why this?"): the query words it matched. */
static json_t *hit_json(const pvg_search_result *res, const pvg_search_hit *h, double score)
{
    const pvg_search_term *terms;
    size_t nt = pvg_search_result_terms(res, &terms);
    json_t *words = json_array();
    for (size_t i = 0; i < nt && i < 8 * sizeof h->matched; i++)
        if (h->matched >> i & 1u) json_array_append_new(words, json_string(terms[i].word));
    return json_pack("{s:o, s:o, s:o, s:o, s:f, s:{s:o}}", "id", str_or_null(h->ext_id), "title",
                     str_or_null(h->title), "category", str_or_null(h->category), "price",
                     h->price >= 0 ? json_real(h->price) : json_null(), "score",
                     isfinite(score) ? score : 0.0, "why", "matched_words", words);
}

typedef struct blended {
    size_t hit;   /* index in the candidate result */
    double score; /* the blend */
} blended;

static int blended_cmp(const void *a, const void *b)
{
    const blended *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->hit < y->hit ? -1 : x->hit > y->hit;
}

/* The shopper's re-ranked page, or NULL (with *why) for the non-personal
 * answer. The first SEARCH_RERANK_CANDIDATES hits by BM25 are re-scored
 * through the gate (pvg_access_search_rerank: consent, audit entry, then
 * the model) as
 *     score = bm25 / max bm25 + SEARCH_RERANK_BETA * norm(model score),
 * norm = (s - min) / (max - min) over the candidates the model knows (0 for
 * the others, and for all when every known score is equal). Only relevance
 * order within the candidate window is re-ranked; a page beyond it, or a
 * price sort, is the non-personal answer. */
#define SEARCH_RERANK_CANDIDATES 100
#define SEARCH_RERANK_BETA 0.5
static json_t *personal_items(pvg_srv_req *r, srv_search_ix *x, const pvg_search_query *q0,
                              const char *user, const char **why)
{
    if (q0->sort != PVG_SEARCH_SORT_RELEVANCE || !q0->text || !*q0->text) {
        *why = "not_relevance_order";
        return NULL;
    }
    if (q0->offset + q0->k > SEARCH_RERANK_CANDIDATES) {
        *why = "beyond_rerank_window";
        return NULL;
    }
    pvg_search_query q = *q0;
    q.k = SEARCH_RERANK_CANDIDATES;
    q.offset = 0;
    pvg_search_result *res = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    if (pvg_search_run(x->ix, &q, &res, &e) != PVG_OK) {
        *why = "error";
        return NULL;
    }
    size_t n = pvg_search_result_count(res);
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    double *ms = calloc(n ? n : 1, sizeof *ms);
    blended *b = calloc(n ? n : 1, sizeof *b);
    json_t *items = NULL;
    if (!ids || !ms || !b) {
        *why = "error";
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = pvg_search_result_hit(res, i)->ext_id;
    pvg_srv_model *m = pvg_srv_model_acquire(r->srv);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    int personal = 0;
    pvg_status st =
        pvg_access_search_rerank(&g, m ? m->model : NULL, user, ids, n, ms, &personal, why, &e);
    pvg_srv_model_release(m);
    if (st != PVG_OK || !personal) {
        if (st != PVG_OK) *why = "error"; /* e.g. the audit log: never personal unaudited */
        goto done;
    }
    double bmax = 0, mmin = INFINITY, mmax = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double s = pvg_search_result_hit(res, i)->score;
        if (isfinite(s) && s > bmax) bmax = s;
        if (isfinite(ms[i])) {
            if (ms[i] < mmin) mmin = ms[i];
            if (ms[i] > mmax) mmax = ms[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        double s = pvg_search_result_hit(res, i)->score;
        double bn = bmax > 0 && isfinite(s) ? s / bmax : 0;
        double mn = isfinite(ms[i]) && mmax > mmin ? (ms[i] - mmin) / (mmax - mmin) : 0;
        b[i] = (blended){i, bn + SEARCH_RERANK_BETA * mn};
    }
    qsort(b, n, sizeof *b, blended_cmp);
    items = json_array();
    for (size_t i = q0->offset; i < n && i < q0->offset + q0->k; i++)
        json_array_append_new(items,
                              hit_json(res, pvg_search_result_hit(res, b[i].hit), b[i].score));
    *why = NULL;
done:
    free(ids);
    free(ms);
    free(b);
    pvg_search_result_free(res);
    return items;
}

void pvg_srv_h_search(pvg_srv_req *r)
{
    pvg_search_query q;
    pvg_search_query_init(&q);
    q.text = pvg_srv_req_query(r, "q");
    q.category = pvg_srv_req_query(r, "category");
    if (q.category && !*q.category) q.category = NULL;
    if (q.text && strlen(q.text) > PVG_SEARCH_QUERY_MAX_BYTES) {
        pvg_srv_reply_error(r, 400, "invalid", "query parameter q: want at most %d bytes, got %zu",
                            PVG_SEARCH_QUERY_MAX_BYTES, strlen(q.text));
        return;
    }
    if (param_double(r, "price_min", &q.price_min) || param_double(r, "price_max", &q.price_max))
        return;
    if (q.price_min >= 0 && q.price_max >= 0 && q.price_min > q.price_max) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter price_min: want at most price_max (%g), got %g",
                            q.price_max, q.price_min);
        return;
    }
    if (param_size(r, "k", 10, 1, 100, &q.k) || param_size(r, "offset", 0, 0, 10000, &q.offset))
        return;
    const char *sort = pvg_srv_req_query(r, "sort");
    if (sort && pvg_search_sort_parse(sort, &q.sort) != PVG_OK) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter sort: want relevance, price, price_asc or price_desc, "
                            "got \"%.40s\"",
                            sort);
        return;
    }
    const char *prefix = pvg_srv_req_query(r, "prefix");
    if (prefix && strcmp(prefix, "0") == 0)
        q.flags |= PVG_SEARCH_NO_PREFIX;
    else if (prefix && strcmp(prefix, "1") == 0)
        q.flags |= PVG_SEARCH_PREFIX_ALL;
    else if (prefix) {
        pvg_srv_reply_error(r, 400, "invalid", "query parameter prefix: want 0 or 1, got \"%.40s\"",
                            prefix);
        return;
    }
    const char *user = NULL;
    if (search_shopper(r, &user)) return;
    srv_search_ix *x = r->srv->search ? ix_acquire(r->srv->search) : NULL;
    if (!x) {
        pvg_srv_reply_error(r, 503, "no_index", "the search index is not built yet");
        return;
    }
    pvg_search_result *res = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_search_run(x->ix, &q, &res, &e);
    if (st != PVG_OK) {
        ix_release(x);
        if (st == PVG_ERR_INVALID)
            pvg_srv_reply_error(r, 400, "invalid", "%s", e.text);
        else
            pvg_srv_reply_status(r, "search", st, &e);
        return;
    }
    const char *why = user ? NULL : "anonymous";
    json_t *items = user ? personal_items(r, x, &q, user, &why) : NULL;
    if (!items) {
        items = json_array();
        for (size_t i = 0; i < pvg_search_result_count(res); i++) {
            const pvg_search_hit *h = pvg_search_result_hit(res, i);
            json_array_append_new(items, hit_json(res, h, h->score));
        }
    }
    const pvg_search_facet *f;
    size_t nf = pvg_search_result_categories(res, &f);
    json_t *cats = json_array();
    for (size_t i = 0; i < nf; i++)
        json_array_append_new(cats, json_pack("{s:o, s:I}", "category", str_or_null(f[i].label),
                                              "count", (json_int_t)f[i].count));
    nf = pvg_search_result_price_buckets(res, &f);
    json_t *prices = json_array();
    for (size_t i = 0; i < nf; i++)
        json_array_append_new(prices,
                              json_pack("{s:s, s:f, s:o, s:I}", "range", f[i].label, "min", f[i].lo,
                                        "max", f[i].hi >= 0 ? json_real(f[i].hi) : json_null(),
                                        "count", (json_int_t)f[i].count));
    const char *sort_name = q.sort == PVG_SEARCH_SORT_RELEVANCE   ? "relevance"
                            : q.sort == PVG_SEARCH_SORT_PRICE_ASC ? "price_asc"
                                                                  : "price_desc";
    pvg_search_index_stats stats;
    pvg_search_index_stats_get(x->ix, &stats);
    json_t *o = json_pack(
        "{s:o, s:{s:o, s:o, s:o}, s:s, s:I, s:I, s:I, s:o, s:{s:o, s:o}, s:{s:I, s:I}}", "query",
        query_json(res, q.text ? q.text : ""), "filters", "category", str_or_null(q.category),
        "price_min", q.price_min >= 0 ? json_real(q.price_min) : json_null(), "price_max",
        q.price_max >= 0 ? json_real(q.price_max) : json_null(), "sort", sort_name, "k",
        (json_int_t)q.k, "offset", (json_int_t)q.offset, "total",
        (json_int_t)pvg_search_result_total(res), "items", items, "facets", "categories", cats,
        "price", prices, "index", "items", (json_int_t)stats.items, "built_at",
        (json_int_t)x->built_at);
    if (o) {
        json_object_set_new(o, "personalized", json_boolean(!why));
        if (why) json_object_set_new(o, "reason", json_string(why));
    }
    pvg_search_result_free(res);
    ix_release(x);
    if (user && q.offset == 0) search_record(r, user, q.text); /* page 2+ is the same search */
    if (!o) {
        pvg_srv_reply_error(r, 500, "internal", "cannot encode the answer");
        return;
    }
    pvg_srv_reply_json(r, 200, o);
}
