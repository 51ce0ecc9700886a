/*
 * dp_train.c - training with differential privacy at the shopper level
 * (one shopper added or removed with all their events): the framework
 * (validation, the noise source, the public item vocabulary, contribution
 * bounding, the DP record of the model) and three methods:
 *
 *   popularity  noisy bounded item counts;
 *   itemknn     noisy bounded item and pair counts (the co-occurrence
 *               release of src/dp/cooc.c), then the similarity on them;
 *   ease        noisy bounded item counts, and the weighted Gram
 *               sum_u w_u x_u x_u^T (each shopper's weight caps their
 *               term's norm at that of m items) with symmetric discrete
 *               Gaussian noise, composed in zCDP; then the EASE closed
 *               form on it.
 *
 * Every method first bounds each shopper's contribution to at most m items
 * of the vocabulary (a uniformly random subset drawn from the CSPRNG when
 * they have more), each kept item weighing 1 (weights binarised; DP-EASE's
 * Gram keeps every item at a weight instead), then adds
 * noise calibrated to the sensitivity of that bounded statistic; what comes
 * after the noise is post-processing. docs/models.md "DP training" derives
 * each sensitivity.
 */
#include "model/model_internal.h"

#include "dp/release_internal.h"

#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/release.h>
#include <privguide/store.h>

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Default contribution bounds m, chosen on the Online Retail temporal
 * validation split (docs/models.md "DP training"). */
#define DP_DEFAULT_M_POPULARITY 32
#define DP_DEFAULT_M_ITEMKNN 16
#define DP_DEFAULT_M_EASE 16
#define DP_MAX_M 1024
#define DP_SELECT_SHARE 0.1
#define DP_KNN_MAX_ITEMS 5000
/* DP-EASE: the noisy Gram's eigenvalues below DP_EASE_THETA sigma sqrt(n)
 * are dropped (the noise matrix's spectral norm is about 2 sigma sqrt(n)),
 * and every row of B gets a popularity prior of DP_EASE_POP_PRIOR times its
 * rms; both chosen on the validation split. */
#define DP_EASE_THETA 2.0
#define DP_EASE_POP_PRIOR 1.0
/* DP-EASE: the share of its zCDP budget (rho) spent on the popularity, and
 * the prior's weight; below epsilon DP_EASE_SMALL_EPS the noisy Gram keeps
 * two or three directions and the popularity gets most of the budget and
 * the larger weight (chosen on the validation split) */
#define DP_EASE_POP_SHARE 0.1
#define DP_EASE_POP_SHARE_SMALL 0.9
#define DP_EASE_POP_PRIOR_SMALL 10.0
#define DP_EASE_SMALL_EPS 2.0
/* DP-EASE solves over the items of largest noisy count (post-processing):
 * a smaller noise matrix to invert; chosen on the validation split */
#define DP_EASE_TOP_ITEMS 1000
/* DP-EASE with the catalogue's text (docs/models.md "A prior from the
 * catalogue's text"): the prior B0_ij = DP_EASE_TEXT_PRIOR * S_ij *
 * ((pop_j + 1) / (max pop + 1))^q, q = DP_EASE_TEXT_POP_POW, S the squared
 * cosine of the titles (content.c), pop the noisy popularity; below
 * DP_EASE_TEXT_ONLY_EPS the popularity gets the whole budget and B = B0
 * with q = DP_EASE_TEXT_ONLY_POP_POW (there B0 is the whole model: the
 * neighbours that sell weigh more);
 * from it on, the noisy Gram corrects B0 on its block. Chosen on the Online
 * Retail validation split. */
#define DP_EASE_TEXT_PRIOR 0.2
#define DP_EASE_TEXT_POP_POW 0.25
#define DP_EASE_TEXT_ONLY_POP_POW 0.5
#define DP_EASE_TEXT_ONLY_EPS PVG_DP_EASE_TEXT_ONLY_EPS
/* DP-EASE's mechanisms: the text-only model, the projected release, the
 * Gram without text */
#define DP_EASE_MECH_TEXT_ONLY "dp-ease/discrete-gaussian-popularity+text"
/* the text-only model with its recent buyers: two releases composed */
#define DP_EASE_MECH_TEXT_RECENT "dp-ease/discrete-gaussian-pop+recent+text"
#define DP_EASE_MECH_PROJECTED "dp-ease/discrete-gaussian-projected-gram+text"
#define DP_EASE_MECH_GRAM "dp-ease/discrete-gaussian-weighted-gram"
/* DP-EASE with the catalogue's text, from DP_EASE_TEXT_ONLY_EPS on: the
 * weighted Gram is released projected on a public basis V, the
 * DP_EASE_TEXT_RANK leading eigenvectors of K D K^T over the
 * DP_EASE_TEXT_TOP_ITEMS items of largest noisy count (K = I +
 * DP_EASE_TEXT_SMOOTH S~ the text's smoothing, D = diag((pop + 1)^
 * DP_EASE_TEXT_BASIS_POW), pvg_content_gram_basis), each shopper clipped
 * after the projection; the spectral cut at DP_EASE_TEXT_THETA sigma sqrt(k).
 * Chosen on the Online Retail validation split (docs/models.md). */
#define DP_EASE_TEXT_SMOOTH 0.5
#define DP_EASE_TEXT_RANK 300
#define DP_EASE_TEXT_TOP_ITEMS 2000
#define DP_EASE_TEXT_BASIS_POW 0.5
#define DP_EASE_TEXT_THETA 2.5
/* DP-EASE's recent buyers' release (recency, docs/models.md "Recency"):
 * its default share of the run's zCDP rho */
#define DP_EASE_RECENT_SHARE 0.05

const char *pvg_dp_vocabulary_name(pvg_dp_vocabulary v)
{
    switch (v) {
    case PVG_DP_VOCAB_CATALOG:
        return "catalog";
    case PVG_DP_VOCAB_LIST:
        return "list";
    case PVG_DP_VOCAB_SELECTED:
        return "selected";
    default:
        return "";
    }
}

pvg_status pvg_model_dp_info_get(const pvg_model *m, pvg_model_dp_info *out, pvg_error *err)
{
    if (!m || !out) return pvg_error_set(err, PVG_ERR_INVALID, "model dp info: NULL argument");
    memset(out, 0, sizeof *out);
    if (!(m->dp.epsilon > 0)) return PVG_OK;
    out->is_dp = 1;
    out->epsilon = m->dp.epsilon;
    out->delta = m->dp.delta;
    out->noise_multiplier = m->dp.noise_multiplier;
    out->sensitivity = m->dp.sensitivity;
    out->max_items = m->dp.max_items;
    out->clip = m->dp.clip;
    snprintf(out->mechanism, sizeof out->mechanism, "%s", m->dp.mechanism ? m->dp.mechanism : "");
    out->vocabulary = m->dp_vocab;
    return PVG_OK;
}

int pvg_dp_default_max_items(pvg_model_type t)
{
    switch (t) {
    case PVG_MODEL_POPULARITY:
        return DP_DEFAULT_M_POPULARITY;
    case PVG_MODEL_ITEMKNN:
        return DP_DEFAULT_M_ITEMKNN;
    case PVG_MODEL_EASE:
        return DP_DEFAULT_M_EASE;
    case PVG_MODEL_IALS:
        return PVG_DP_IALS_DEFAULT_M;
    default:
        return 0;
    }
}

/* ---- the vocabulary ------------------------------------------------------ */

typedef struct vocab {
    char **ids;
    char **titles; /* parallel to ids: public catalogue text or NULL */
    size_t n, cap;
    pvg_dp_vocabulary kind;
    double epsilon, delta; /* spent choosing it */
} vocab;

static void vocab_free(vocab *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->ids[i]);
        free(v->titles[i]);
    }
    free(v->ids);
    free(v->titles);
    memset(v, 0, sizeof *v);
}

/* Appends id with its catalogue text (NULL: none). -1 on NOMEM. */
static int vocab_push(vocab *v, const char *id, const char *title)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 1024;
        char **ni = realloc(v->ids, nc * sizeof *ni);
        if (!ni) return -1;
        v->ids = ni;
        char **nt = realloc(v->titles, nc * sizeof *nt);
        if (!nt) return -1;
        v->titles = nt;
        v->cap = nc;
    }
    v->titles[v->n] = NULL;
    if (!(v->ids[v->n] = strdup(id))) return -1;
    if (title && title[0] && !(v->titles[v->n] = strdup(title))) {
        free(v->ids[v->n]);
        return -1;
    }
    v->n++;
    return 0;
}

/* The store's declared catalogue (pvg_store_catalog_import): its ids and
 * their declared titles, set only by the operator's catalogue load, never
 * by a sale row, so neither the vocabulary nor the text prior depends on
 * any shopper. */
static int declared_cb(void *ctx, const pvg_catalog_entry *e)
{
    return vocab_push(ctx, e->ext_id, e->title) ? 1 : 0;
}

/* A store without a declared catalogue: its catalog items, without their
 * titles: a store's item title may have come from a sale row (an import of
 * transactions names each item with its row's description, docs/store.md),
 * and one shopper's row would then shape the text prior. */
static int catalog_cb(void *ctx, const pvg_item *it)
{
    if (!it->catalog || !it->ext_id) return 0;
    return vocab_push(ctx, it->ext_id, NULL) ? 1 : 0;
}

/* ids with their positions, sorted by id (binary search) */
typedef struct id_ref {
    const char *s;
    uint32_t i;
} id_ref;
static int cmp_ref(const void *a, const void *b)
{
    return strcmp(((const id_ref *)a)->s, ((const id_ref *)b)->s);
}

static id_ref *sorted_refs(char *const *ids, size_t n)
{
    id_ref *r = malloc((n ? n : 1) * sizeof *r);
    if (!r) return NULL;
    for (size_t i = 0; i < n; i++) {
        r[i].s = ids[i];
        r[i].i = (uint32_t)i;
    }
    qsort(r, n, sizeof *r, cmp_ref);
    return r;
}

static long find_ref(const id_ref *r, size_t n, const char *s)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r[mid].s, s);
        if (c == 0) return (long)r[mid].i;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* A uniformly random subset of min(m, n) of the n entries of a[] (partial
 * Fisher-Yates: the first k slots), then sorted ascending. Returns k. */
static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static size_t bound_subset(pvg_rng *rng, uint32_t *a, size_t n, size_t m)
{
    if (n <= m) return n;
    for (size_t j = 0; j < m; j++) {
        size_t r = j + (size_t)pvg_rng_uniform(rng, (uint64_t)(n - j));
        uint32_t t = a[j];
        a[j] = a[r];
        a[r] = t;
    }
    qsort(a, m, sizeof *a, cmp_u32);
    return m;
}

/* DP partition selection over the dataset's items: each shopper's distinct
 * items bounded to m, a distinct-shopper count per item, kept when its
 * Laplace-noised count clears the threshold (pvg_dp_partition_rule). */
static pvg_status vocab_select(const pvg_dataset *ds, const pvg_csr *R, pvg_rng *rng, int m,
                               double eps, double delta, vocab *v, pvg_error *err)
{
    pvg_dp_partition_rule rule;
    pvg_status st = pvg_dp_partition_rule_make(eps, delta, m, &rule, err);
    if (st != PVG_OK) return st;
    int64_t *cnt = calloc(R->n_cols ? R->n_cols : 1, sizeof *cnt);
    uint32_t *buf = malloc((R->n_cols ? R->n_cols : 1) * sizeof *buf);
    if (!cnt || !buf) {
        free(cnt);
        free(buf);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    }
    for (size_t u = 0; u < R->n_rows; u++) {
        size_t n = (size_t)(R->indptr[u + 1] - R->indptr[u]);
        memcpy(buf, R->indices + R->indptr[u], n * sizeof *buf);
        size_t k = bound_subset(rng, buf, n, (size_t)m);
        for (size_t j = 0; j < k; j++)
            cnt[buf[j]]++;
    }
    free(buf);
    for (size_t i = 0; i < R->n_cols; i++)
        if (pvg_dp_partition_keep(rng, &rule, cnt[i], NULL) &&
            vocab_push(v, ds->item_ids[i], NULL)) {
            free(cnt);
            return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
        }
    free(cnt);
    v->kind = PVG_DP_VOCAB_SELECTED;
    v->epsilon = eps;
    v->delta = delta;
    if (v->n == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp: partition selection kept no item (epsilon %g, delta %g, m %d: "
                             "threshold %lld shoppers); name a public item list instead",
                             eps, delta, m, (long long)rule.threshold);
    return PVG_OK;
}

static pvg_status vocab_choose(const pvg_dataset *ds, const pvg_csr *R, const pvg_train_params *p,
                               pvg_rng *rng, int m, vocab *v, pvg_error *err)
{
    memset(v, 0, sizeof *v);
    pvg_status st = PVG_OK;
    if (ds->store) {
        v->kind = PVG_DP_VOCAB_CATALOG;
        st = pvg_store_catalog_foreach(ds->store, declared_cb, v, err);
        if (st == PVG_OK && v->n == 0) st = pvg_store_items_foreach(ds->store, catalog_cb, v, err);
        if (st == PVG_ERR_ABORTED) st = pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
        if (st == PVG_OK && v->n == 0)
            st = pvg_error_set(err, PVG_ERR_INVALID,
                               "dp: the store has no catalog items (the public vocabulary of a DP "
                               "model); import the catalog first");
    } else if (p->dp_items) {
        v->kind = PVG_DP_VOCAB_LIST;
        for (size_t i = 0; i < p->dp_n_items && st == PVG_OK; i++) {
            if (!p->dp_items[i] || !p->dp_items[i][0])
                st = pvg_error_set(err, PVG_ERR_INVALID, "dp: item list entry %zu is empty", i);
            else if (vocab_push(v, p->dp_items[i], p->dp_item_titles ? p->dp_item_titles[i] : NULL))
                st = pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
        }
        if (st == PVG_OK && v->n == 0)
            st = pvg_error_set(err, PVG_ERR_INVALID, "dp: the item list is empty");
    } else {
        double share = p->dp_select_share > 0 ? p->dp_select_share : DP_SELECT_SHARE;
        if (!(share < 1))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "dp: dp_select_share must be in (0, 1), got %g", share);
        if (!(p->dp_delta > 0))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "dp: without a public item list, the items are chosen by DP "
                                 "partition selection, which needs delta > 0");
        st = vocab_select(ds, R, rng, m, share * p->dp_epsilon, p->dp_delta / 2, v, err);
    }
    if (st == PVG_OK && v->kind != PVG_DP_VOCAB_SELECTED) {
        /* a public list: no duplicates */
        id_ref *r = sorted_refs(v->ids, v->n);
        if (!r) return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
        for (size_t i = 1; i < v->n && st == PVG_OK; i++)
            if (strcmp(r[i - 1].s, r[i].s) == 0)
                st = pvg_error_set(err, PVG_ERR_INVALID, "dp: item '%s' is listed twice", r[i].s);
        free(r);
    }
    if (st == PVG_OK && v->n >= 0x7fffffffu)
        st = pvg_error_set(err, PVG_ERR_INVALID, "dp: %zu items in the vocabulary", v->n);
    return st;
}

/* R restricted to the vocabulary: column of ds item i is col_of[i] (or
 * none); rows sorted by the new columns. */
typedef struct col_w {
    uint32_t c;
    float w;
    int64_t ts;
} col_w;
static int cmp_col_w(const void *a, const void *b)
{
    uint32_t x = ((const col_w *)a)->c, y = ((const col_w *)b)->c;
    return x < y ? -1 : x > y;
}

static pvg_status restrict_matrix(const pvg_csr *R, const vocab *v, char *const *ds_ids,
                                  const int64_t *last_in, int64_t **last_out, pvg_csr *out,
                                  pvg_error *err)
{
    memset(out, 0, sizeof *out);
    if (last_out) *last_out = NULL;
    size_t ni = R->n_cols;
    uint32_t *col_of = malloc((ni ? ni : 1) * sizeof *col_of);
    id_ref *vr = sorted_refs(v->ids, v->n);
    if (!col_of || !vr) {
        free(col_of);
        free(vr);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    }
    for (size_t i = 0; i < ni; i++) {
        long c = find_ref(vr, v->n, ds_ids[i]);
        col_of[i] = c < 0 ? UINT32_MAX : (uint32_t)c;
    }
    free(vr);
    size_t nnz = 0;
    for (size_t q = 0; q < R->nnz; q++)
        nnz += col_of[R->indices[q]] != UINT32_MAX;
    out->n_rows = R->n_rows;
    out->n_cols = v->n;
    out->nnz = nnz;
    out->indptr = malloc((R->n_rows + 1) * sizeof *out->indptr);
    out->indices = malloc((nnz ? nnz : 1) * sizeof *out->indices);
    out->data = malloc((nnz ? nnz : 1) * sizeof *out->data);
    col_w *row = malloc((ni ? ni : 1) * sizeof *row);
    int64_t *lo = last_in ? malloc((nnz ? nnz : 1) * sizeof *lo) : NULL;
    if (!out->indptr || !out->indices || !out->data || !row || (last_in && !lo)) {
        free(col_of);
        free(row);
        free(lo);
        pvg_csr_free(out);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    }
    size_t o = 0;
    out->indptr[0] = 0;
    for (size_t u = 0; u < R->n_rows; u++) {
        size_t k = 0;
        for (uint64_t q = R->indptr[u]; q < R->indptr[u + 1]; q++) {
            uint32_t c = col_of[R->indices[q]];
            if (c == UINT32_MAX) continue;
            row[k].c = c;
            row[k].w = R->data[q];
            row[k].ts = last_in ? last_in[q] : 0;
            k++;
        }
        qsort(row, k, sizeof *row, cmp_col_w);
        for (size_t j = 0; j < k; j++) {
            out->indices[o] = row[j].c;
            out->data[o] = row[j].w;
            if (lo) lo[o] = row[j].ts;
            o++;
        }
        out->indptr[u + 1] = o;
    }
    free(row);
    free(col_of);
    if (last_out) *last_out = lo;
    return PVG_OK;
}

/* ---- shared pieces --------------------------------------------------------- */

pvg_status pvg_dp_bound_rows(const pvg_dp_train *t, pvg_csr *X, pvg_error *err)
{
    memset(X, 0, sizeof *X);
    const pvg_csr *R = t->R;
    size_t m = (size_t)t->max_items, nnz = 0;
    for (size_t u = 0; u < R->n_rows; u++) {
        size_t n = (size_t)(R->indptr[u + 1] - R->indptr[u]);
        nnz += n < m ? n : m;
    }
    X->n_rows = R->n_rows;
    X->n_cols = R->n_cols;
    X->nnz = nnz;
    X->indptr = malloc((R->n_rows + 1) * sizeof *X->indptr);
    X->indices = malloc((nnz ? nnz : 1) * sizeof *X->indices);
    X->data = malloc((nnz ? nnz : 1) * sizeof *X->data);
    uint32_t *buf = malloc((R->n_cols ? R->n_cols : 1) * sizeof *buf);
    if (!X->indptr || !X->indices || !X->data || !buf) {
        free(buf);
        pvg_csr_free(X);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    }
    size_t o = 0;
    X->indptr[0] = 0;
    for (size_t u = 0; u < R->n_rows; u++) {
        size_t n = (size_t)(R->indptr[u + 1] - R->indptr[u]);
        memcpy(buf, R->indices + R->indptr[u], n * sizeof *buf);
        size_t k = bound_subset(t->rng, buf, n, m);
        for (size_t j = 0; j < k; j++) {
            X->indices[o] = buf[j];
            X->data[o] = 1.0f;
            o++;
        }
        X->indptr[u + 1] = o;
    }
    free(buf);
    return PVG_OK;
}

pvg_status pvg_dp_model_new(const pvg_dp_train *t, pvg_model **out, pvg_error *err)
{
    pvg_status st = pvg_model_new_common(&t->vds, t->R, t->p, out, err);
    if (st != PVG_OK) return st;
    (*out)->params.dp_items = NULL;
    (*out)->params.dp_n_items = 0;
    return PVG_OK;
}

/* The epsilon the method calibrates to: t->epsilon, or, with an expert
 * noise multiplier s (noise std = s x sensitivity), the epsilon that noise
 * gives at t->delta (Gaussian: the zCDP bound rho = 1/(2 s^2); Laplace:
 * 1/s), refused when above t->epsilon. */
static pvg_status method_epsilon(const pvg_dp_train *t, int gaussian, double *eps, pvg_error *err)
{
    *eps = t->epsilon;
    double s = t->p->dp_noise_multiplier;
    if (!(s > 0)) return PVG_OK;
    double e = gaussian ? pvg_dp_zcdp_to_epsilon(1.0 / (2 * s * s), t->delta) : 1.0 / s;
    if (!(e <= t->epsilon * (1 + 1e-9)))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp: noise multiplier %g gives epsilon %g at delta %g, above the "
                             "epsilon %g available to the method",
                             s, e, t->delta, t->epsilon);
    *eps = e < t->epsilon ? e : t->epsilon;
    return PVG_OK;
}

static void report_fill(pvg_dp_train *t, const rel_noise *nz, double sens, const char *mech)
{
    t->rep.epsilon = nz->epsilon;
    t->rep.delta = nz->delta;
    t->rep.sensitivity = sens;
    t->rep.noise_multiplier = nz->scale / sens;
    t->rep.max_items = t->max_items;
    t->rep.clip = 0;
    t->rep.mechanism = mech;
}

/* ---- DP popularity ------------------------------------------------------------ */

static pvg_status pop_counts(pvg_dp_train *t, double **cnt, pvg_error *err)
{
    pvg_csr X;
    pvg_status st = pvg_dp_bound_rows(t, &X, err);
    if (st != PVG_OK) return st;
    *cnt = calloc(X.n_cols ? X.n_cols : 1, sizeof **cnt);
    if (!*cnt) {
        pvg_csr_free(&X);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    }
    for (size_t q = 0; q < X.nnz; q++)
        (*cnt)[X.indices[q]] += 1.0;
    pvg_csr_free(&X);
    return PVG_OK;
}

pvg_status pvg_train_dp_popularity(pvg_dp_train *t, pvg_model **out, pvg_error *err)
{
    *out = NULL;
    int gaussian = t->delta > 0;
    double m = t->max_items, eps;
    pvg_status st = method_epsilon(t, gaussian, &eps, err);
    if (st != PVG_OK) return st;
    /* one shopper moves at most m counts, each by 1: L1 = m, L2^2 = m */
    rel_noise nz;
    st = rel_noise_make(gaussian, m, m, eps, gaussian ? t->delta : 0, &nz, err);
    if (st != PVG_OK) return st;
    double *cnt;
    if ((st = pop_counts(t, &cnt, err)) != PVG_OK) return st;
    size_t n = t->R->n_cols;
    float *pop = malloc((n ? n : 1) * sizeof *pop);
    if (!pop) {
        free(cnt);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        double v = cnt[i] + (double)rel_noise_draw(t->rng, &nz);
        pop[i] = v > 0 ? (float)v : 0.0f; /* post-processing */
    }
    free(cnt);
    pvg_model *md;
    if ((st = pvg_dp_model_new(t, &md, err)) != PVG_OK) {
        free(pop);
        return st;
    }
    pvg_model_set_section(md, PVG_SEC_POPULARITY, pop, 4 * n);
    report_fill(t, &nz, gaussian ? sqrt(m) : m,
                gaussian ? "dp-popularity/discrete-gaussian" : "dp-popularity/discrete-laplace");
    *out = md;
    return PVG_OK;
}

/* ---- DP item-kNN --------------------------------------------------------------- */

/* The bounded item and pair counts (the co-occurrence release's counting:
 * each shopper's distinct items reduced to a uniformly random m). */
static pvg_status knn_counts(pvg_dp_train *t, pvg_dp_cooc_counts **cc, pvg_error *err)
{
    size_t n = t->R->n_cols;
    if (n < 2 || n > DP_KNN_MAX_ITEMS)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "dp itemknn: the vocabulary has %zu items; the noisy co-occurrences "
                             "cover 2 to %d (name a smaller item list)",
                             n, DP_KNN_MAX_ITEMS);
    int64_t *ids = malloc(n * sizeof *ids);
    if (!ids) return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = (int64_t)i;
    pvg_status st = pvg_dp_cooc_counts_new(ids, n, t->max_items, cc, err);
    for (size_t u = 0; st == PVG_OK && u < t->R->n_rows; u++) {
        uint64_t b = t->R->indptr[u], e = t->R->indptr[u + 1];
        for (uint64_t q = b; q < e; q++)
            ids[q - b] = t->R->indices[q];
        st = pvg_dp_cooc_counts_add_user(*cc, t->rng, ids, (size_t)(e - b), err);
    }
    free(ids);
    if (st != PVG_OK) {
        pvg_dp_cooc_counts_free(*cc);
        *cc = NULL;
    }
    return st;
}

pvg_status pvg_train_dp_itemknn(pvg_dp_train *t, pvg_model **out, pvg_error *err)
{
    *out = NULL;
    int gaussian = t->delta > 0;
    double eps, m = t->max_items;
    pvg_status st = method_epsilon(t, gaussian, &eps, err);
    if (st != PVG_OK) return st;
    pvg_dp_cooc_counts *cc;
    if ((st = knn_counts(t, &cc, err)) != PVG_OK) return st;
    size_t n = t->R->n_cols;
    pvg_dp_cooc_params cp;
    pvg_dp_cooc_params_init(&cp);
    cp.epsilon = eps;
    cp.delta = gaussian ? t->delta : 0;
    cp.mechanism = gaussian ? PVG_DP_RELEASE_GAUSSIAN : PVG_DP_RELEASE_LAPLACE;
    cp.k = (size_t)t->p->neighbors < n - 1 ? (size_t)t->p->neighbors : n - 1;
    cp.allow_insecure_rng = t->p->dp_allow_insecure_rng;
    pvg_dp_cooc *r;
    st = pvg_dp_cooc_release(cc, t->rng, &cp, &r, err);
    pvg_dp_cooc_counts_free(cc);
    if (st != PVG_OK) return st;
    /* rows of the release are the ids ascending: row i is vocabulary item i */
    size_t nnz = 0;
    for (size_t i = 0; i < n; i++)
        nnz += r->n_similar[i];
    uint64_t *ptr = malloc((n + 1) * sizeof *ptr);
    uint32_t *idx = malloc((nnz ? nnz : 1) * sizeof *idx);
    float *sim = malloc((nnz ? nnz : 1) * sizeof *sim);
    float *pop = malloc(n * sizeof *pop);
    pvg_model *md = NULL;
    if (!ptr || !idx || !sim || !pop) st = pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    if (st == PVG_OK) st = pvg_dp_model_new(t, &md, err);
    if (st != PVG_OK) {
        free(ptr), free(idx), free(sim), free(pop);
        pvg_dp_cooc_free(r);
        return st;
    }
    /* the non-private kNN's shrinkage on the noisy normalised counts:
     * score * s / (s + shrink) with s = sqrt of the floored noisy counts'
     * product, i.e. cooc / (sqrt(c_i c_j) + shrink) (post-processing) */
    double shrink = t->p->shrink, floor_ = 3 * r->info.noise_scale;
    if (floor_ < 1) floor_ = 1;
    size_t o = 0;
    ptr[0] = 0;
    for (size_t i = 0; i < n; i++) {
        double ci = (double)r->noisy_pop[i] > floor_ ? (double)r->noisy_pop[i] : floor_;
        pop[i] = r->noisy_pop[i] > 0 ? (float)r->noisy_pop[i] : 0.0f;
        for (size_t a = 0; a < r->n_similar[i]; a++) {
            const pvg_dp_similar *s = &r->similar[i * r->k + a];
            double cj =
                (double)r->noisy_pop[s->item] > floor_ ? (double)r->noisy_pop[s->item] : floor_;
            double d = sqrt(ci * cj);
            idx[o] = (uint32_t)s->item;
            sim[o] = (float)((double)s->noisy_cooc / (d + shrink));
            o++;
        }
        ptr[i + 1] = o;
    }
    md->knn_nnz = nnz;
    pvg_model_set_section(md, PVG_SEC_KNN_INDPTR, ptr, 8 * (n + 1));
    pvg_model_set_section(md, PVG_SEC_KNN_IDX, idx, 4 * nnz);
    pvg_model_set_section(md, PVG_SEC_KNN_SIM, sim, 4 * nnz);
    pvg_model_set_section(md, PVG_SEC_POPULARITY, pop, 4 * n);
    /* m item counts + m(m-1)/2 pair counts move by 1: L1 = L2^2 = m(m+1)/2 */
    double s2 = m * (m + 1) / 2;
    t->rep.epsilon = r->info.epsilon;
    t->rep.delta = r->info.delta;
    t->rep.sensitivity = gaussian ? sqrt(s2) : s2;
    t->rep.noise_multiplier = r->info.noise_scale / t->rep.sensitivity;
    t->rep.max_items = t->max_items;
    t->rep.clip = 0;
    t->rep.mechanism =
        gaussian ? "dp-itemknn/discrete-gaussian-cooc" : "dp-itemknn/discrete-laplace-cooc";
    pvg_dp_cooc_free(r);
    *out = md;
    return PVG_OK;
}

/* ---- DP-EASE --------------------------------------------------------------------- */

/* Each shopper's weight: a shopper with h items adds w x x^T to the Gram,
 * whose upper triangle (diagonal included) has norm w sqrt(h(h+1)/2); w =
 * min(1, sqrt(m(m+1) / (h(h+1)))) caps it at C = sqrt(m(m+1)/2), the norm of
 * m items at weight 1. Unlike a random m-subset, every item of a long
 * history is kept, at a lower weight. */
static double ease_weight(size_t h, double m)
{
    double hh = (double)h;
    return h <= (size_t)m ? 1.0 : sqrt(m * (m + 1) / (hh * (hh + 1)));
}

/* The weighted Gram's upper triangle (i <= j) over the items of col (col[i]
 * < ns: item i's position among the ns chosen; UINT32_MAX: not chosen),
 * in double, into G (ns x ns, zeroed by the caller). */
static void gram_upper_w(const pvg_csr *R, double m, const uint32_t *col, size_t ns, double *G,
                         uint32_t *buf)
{
    for (size_t u = 0; u < R->n_rows; u++) {
        uint64_t b = R->indptr[u], e = R->indptr[u + 1];
        double w = ease_weight((size_t)(e - b), m);
        size_t k = 0;
        for (uint64_t q = b; q < e; q++)
            if (col[R->indices[q]] != UINT32_MAX) buf[k++] = col[R->indices[q]];
        qsort(buf, k, sizeof *buf, cmp_u32);
        for (size_t a = 0; a < k; a++) {
            double *row = G + (size_t)buf[a] * ns;
            for (size_t c = a; c < k; c++)
                row[buf[c]] += w;
        }
    }
}

/* The noise of DP-EASE: the weighted Gram is real-valued, so each released
 * coordinate is rounded to a power-of-two grid g (2^20 to 2^21 steps per
 * noise std) and gets a discrete Gaussian on it; rounding moves a
 * coordinate a shopper touches by at most g more (the double sums' own
 * error, below 2^-40 of the shoppers' count, is inside another g), and one
 * touching none not at all, so the L2 sensitivity in grid steps is (C + 2 g
 * sqrt(coords)) / g, coords the number of released coordinates. */
typedef struct ease_noise {
    rel_noise nz; /* in grid steps */
    double g, sens, sigma;
} ease_noise;

#define DP_EASE_GRID_BITS 20

static pvg_status ease_noise_make(double C, double eps, double delta, double coords, ease_noise *en,
                                  pvg_error *err)
{
    rel_noise r;
    pvg_status st = rel_noise_make(1, C * C, C * C, eps, delta, &r, err);
    if (st != PVG_OK) return st;
    en->g = ldexp(1.0, (int)floor(log2(r.scale)) - DP_EASE_GRID_BITS);
    en->sens = C + 2.0 * en->g * sqrt(coords);
    double s = en->sens / en->g;
    if ((st = rel_noise_make(1, s * s, s * s, eps, delta, &en->nz, err)) != PVG_OK) return st;
    en->sigma = en->nz.scale * en->g;
    return PVG_OK;
}

static inline double ease_noisy(pvg_rng *rng, const ease_noise *en, double x)
{
    return (nearbyint(x / en->g) + (double)rel_noise_draw(rng, &en->nz)) * en->g;
}

/* items by noisy count, descending (ties: lower index first) */
typedef struct pop_idx {
    float pop;
    uint32_t i;
} pop_idx;
static int cmp_pop_desc(const void *a, const void *b)
{
    const pop_idx *x = a, *y = b;
    if (x->pop != y->pop) return x->pop > y->pop ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

typedef struct noise_ctx {
    double *G;
    size_t n, block;
    pvg_rng **rngs;
    const ease_noise *en;
} noise_ctx;

static void noise_range(void *vctx, int tid, size_t b, size_t e)
{
    (void)tid;
    noise_ctx *c = vctx;
    for (size_t blk = b; blk < e; blk++) {
        pvg_rng *rng = c->rngs[blk];
        size_t i1 = (blk + 1) * c->block < c->n ? (blk + 1) * c->block : c->n;
        for (size_t i = blk * c->block; i < i1; i++)
            for (size_t j = i + 1; j < c->n; j++) {
                double v = ease_noisy(rng, c->en, c->G[i * c->n + j]);
                c->G[i * c->n + j] = v;
                c->G[j * c->n + i] = v;
            }
    }
}

#define NOISE_BLOCK 32

/* Symmetric noise on G's strict upper triangle (mirrored; the diagonal has
 * its noise already), rows in blocks, each
 * block with its own child generator split from t->rng in block order (so
 * the draws do not depend on the threads). */
static pvg_status add_sym_noise(const pvg_dp_train *t, double *G, size_t n, const ease_noise *en,
                                pvg_error *err)
{
    size_t nb = (n + NOISE_BLOCK - 1) / NOISE_BLOCK;
    pvg_rng **rngs = calloc(nb ? nb : 1, sizeof *rngs);
    if (!rngs) return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    pvg_status st = PVG_OK;
    for (size_t b = 0; b < nb; b++)
        if (!(rngs[b] = pvg_rng_split(t->rng))) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
            break;
        }
    if (st == PVG_OK) {
        noise_ctx c = {G, n, NOISE_BLOCK, rngs, en};
        st = pvg_parallel_for(t->threads, nb, 1, noise_range, &c);
        if (st != PVG_OK) st = pvg_error_set(err, st, "dp: cannot start the noise threads");
    }
    for (size_t b = 0; b < nb; b++)
        pvg_rng_free(rngs[b]);
    free(rngs);
    return st;
}

/* Spectral denoising (post-processing): G = Q diag(l) Q^T, the eigenvalues
 * below tau (the noise's spectral edge is about 2 sigma sqrt(n)) dropped, and
 * P = Q diag(1 / (l' + lambda)) Q^T, l' = l when l >= tau, else 0, written
 * over G. */
static pvg_status ease_inverse_spectral(float *G, size_t n, double lambda, double tau, int threads,
                                        size_t *kept, pvg_error *err)
{
    float *A = malloc((n ? n * n : 1) * sizeof *A), *w = malloc((n ? n : 1) * sizeof *w);
    float *Qs = malloc((n ? n * n : 1) * sizeof *Qs);
    if (!A || !w || !Qs) {
        free(A), free(w), free(Qs);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
    }
    memcpy(A, G, n * n * sizeof *A);
    pvg_blas_threaded_begin(threads);
    lapack_int rc = LAPACKE_ssyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, A, (lapack_int)n, w);
    if (rc == 0) {
        /* G <- Q diag(d) Q^T, d = 1/(l' + lambda): columns scaled by sqrt(d) */
        *kept = 0;
        for (size_t k = 0; k < n; k++)
            *kept += w[k] >= tau;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < n; k++) {
                double l = w[k] >= tau ? w[k] : 0;
                Qs[i * n + k] = (float)(A[i * n + k] / sqrt(l + lambda));
            }
        cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)n, (int)n, 1.0f, Qs, (int)n, 0.0f,
                    G, (int)n);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < i; j++)
                G[j * n + i] = G[i * n + j];
    }
    pvg_blas_threaded_end();
    free(A), free(w), free(Qs);
    if (rc != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL,
                             "dp ease: the eigen-decomposition failed (LAPACK info %d)", (int)rc);
    return PVG_OK;
}

/* The titles' similarity (public: computed before any noise), new in *S
 * (n x n), or *S = NULL when fewer than two items are similar to another
 * (no titles, or no shared term): then DP-EASE runs without the prior. */
static pvg_status text_similarity(const pvg_dp_train *t, float **S, pvg_error *err)
{
    *S = NULL;
    size_t n = t->R->n_cols, linked;
    if (!t->titles || n < 2) return PVG_OK;
    float *m = malloc(n * n * sizeof *m);
    if (!m) return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
    pvg_status st = pvg_content_similarity(t->titles, n, m, &linked, err);
    if (st != PVG_OK || linked < 2) {
        free(m);
        return st;
    }
    *S = m;
    return PVG_OK;
}

/* The text prior in place of S (n x n): B0_ij = c S_ij w_j, w_j =
 * ((pop_j + 1) / (max pop + 1))^q, pop the noisy popularity. */
static pvg_status text_prior(const pvg_dp_train *t, const float *pop, double q, float *G,
                             pvg_error *err)
{
    size_t n = t->R->n_cols;
    double pmax = 0;
    for (size_t j = 0; j < n; j++)
        if (pop[j] > pmax) pmax = pop[j];
    float *w = malloc((n ? n : 1) * sizeof *w);
    if (!w) return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
    for (size_t j = 0; j < n; j++)
        w[j] = (float)(DP_EASE_TEXT_PRIOR * pow(((double)pop[j] + 1) / (pmax + 1), q));
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            G[i * n + j] *= w[j];
    free(w);
    return PVG_OK;
}

/* The recent buyers' counts as DP-EASE releases them (recency): each
 * shopper's items whose last purchase is in [now - days, now), at most m
 * of them (a uniformly random subset from t->rng), counted 1 each, into
 * cnt (n): L2 sensitivity sqrt(m). With recent_pop_unit, all k of them
 * at 1/sqrt(k) each (pvg_recent_buyers): L2 sensitivity 1. */
static pvg_status recent_counts(const pvg_dp_train *t, double *cnt, pvg_error *err)
{
    const pvg_csr *R = t->R;
    if (t->p->recent_pop_unit)
        return pvg_recent_buyers(R, t->last, t->now, t->p->recent_pop_days, 1, cnt);
    int64_t from = t->now - (int64_t)(t->p->recent_pop_days * 86400.0);
    uint32_t *buf = malloc((R->n_cols ? R->n_cols : 1) * sizeof *buf);
    if (!buf) return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory");
    memset(cnt, 0, R->n_cols * sizeof *cnt);
    for (size_t u = 0; u < R->n_rows; u++) {
        size_t k = 0;
        for (uint64_t q = R->indptr[u]; q < R->indptr[u + 1]; q++)
            if (R->data[q] > 0 && t->last[q] != INT64_MIN && t->last[q] >= from &&
                t->last[q] < t->now)
                buf[k++] = R->indices[q];
        k = bound_subset(t->rng, buf, k, (size_t)t->max_items);
        for (size_t j = 0; j < k; j++)
            cnt[buf[j]] += 1.0;
    }
    free(buf);
    return PVG_OK;
}

/* The L2 sensitivity of recent_counts: the one figure the trainer's noise
 * and pvg_dp_ease_recent_statistic (the neighbouring-dataset test) use. */
static double recent_l2_sensitivity(const pvg_dp_train *t)
{
    return t->p->recent_pop_unit ? 1.0 : sqrt((double)t->max_items);
}

/* The recent buyers' release of DP-EASE: recent_counts with the discrete
 * Gaussian pr (with recent_pop_unit, the weighted counts on enr's grid with
 * its discrete Gaussian), clamped at 0, into *out (n floats, new). */
static pvg_status ease_recent_release(const pvg_dp_train *t, const rel_noise *pr,
                                      const ease_noise *enr, float **out, pvg_error *err)
{
    size_t n = t->R->n_cols;
    double *cnt = malloc((n ? n : 1) * sizeof *cnt);
    float *r = malloc((n ? n : 1) * sizeof *r);
    *out = NULL;
    if (!cnt || !r) {
        free(cnt), free(r);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory");
    }
    pvg_status st = recent_counts(t, cnt, err);
    if (st == PVG_OK) {
        for (size_t j = 0; j < n; j++) {
            double v = t->p->recent_pop_unit ? ease_noisy(t->rng, enr, cnt[j])
                                             : cnt[j] + (double)rel_noise_draw(t->rng, pr);
            r[j] = v > 0 ? (float)v : 0.0f;
        }
        *out = r;
        r = NULL;
    }
    free(cnt), free(r);
    return st;
}

/* The recency blend of the projected release: the recent buyers' release
 * blended into every row of B (n x n) (pvg_recency_blend; post-processing). */
static pvg_status ease_recent_blend(const pvg_dp_train *t, const rel_noise *pr,
                                    const ease_noise *enr, float *B, pvg_error *err)
{
    float *r;
    pvg_status st = ease_recent_release(t, pr, enr, &r, err);
    if (st == PVG_OK) pvg_recency_blend(B, t->R->n_cols, r, t->p->recent_pop_beta);
    free(r);
    return st;
}

/* The text-only model releases the buyer counts (and the recent buyers'):
 * unless the caller set m, its bound is DP popularity's (validation
 * Recall@20 at eps 1: 0.0882 at m 32 against 0.0866 at DP-EASE's 16). */
static void text_only_bound(pvg_dp_train *t)
{
    if (!t->p->dp_max_items) t->max_items = DP_DEFAULT_M_POPULARITY;
}

/* Whether the text-only model releases the recent buyers' counts. */
static int text_only_blend(const pvg_dp_train *t)
{
    return t->last && t->p->recent_pop_days > 0 && t->p->recent_pop_beta > 0;
}

/* DP-EASE below DP_EASE_TEXT_ONLY_EPS with catalogue text: the whole budget on
 * the bounded buyer counts (one Gaussian release, L2 sensitivity sqrt(m)),
 * B the text prior over that noisy popularity; no Gram is released. Steals
 * G, the titles' similarity (n x n), which becomes B. */
static pvg_status ease_text_only(pvg_dp_train *t, double eps, float *G, pvg_model **out,
                                 pvg_error *err)
{
    size_t n = t->R->n_cols;
    double m = t->max_items;
    int blend = text_only_blend(t);
    int unit = blend && t->p->recent_pop_unit;
    double share_r = !blend                       ? 0
                     : t->p->recent_pop_share > 0 ? t->p->recent_pop_share
                                                  : DP_EASE_RECENT_SHARE;
    double rho = rel_zcdp_rho_for(eps, t->delta);
    rel_noise pz, pr = {0};
    ease_noise enr = {0};
    pvg_status st =
        !(rho > 0) ? pvg_error_set(err, PVG_ERR_INVALID,
                                   "dp ease: epsilon %g too small for delta %g", eps, t->delta)
        : !blend   ? rel_noise_make(1, m, m, eps, t->delta, &pz, err)
                   : rel_noise_make(1, m, m, pvg_dp_zcdp_to_epsilon((1 - share_r) * rho, t->delta),
                                    t->delta, &pz, err);
    if (st == PVG_OK && blend && !unit)
        st = rel_noise_make(1, m, m, pvg_dp_zcdp_to_epsilon(share_r * rho, t->delta), t->delta, &pr,
                            err);
    if (st == PVG_OK && unit)
        st = ease_noise_make(recent_l2_sensitivity(t),
                             pvg_dp_zcdp_to_epsilon(share_r * rho, t->delta), t->delta, (double)n,
                             &enr, err);
    if (st != PVG_OK && st != PVG_ERR_NOMEM && blend && rho > 0) {
        /* a share near 0 or 1 leaves one release too little rho to
         * calibrate (its epsilon rounds to 0): name the split, not only
         * an epsilon the caller never gave */
        char why[PVG_ERROR_TEXT_LEN];
        snprintf(why, sizeof why, "%s", err ? err->text : "");
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "dp ease: recent_pop_share %.15g splits the zCDP rho %.3g into %.3g "
                           "for the buyer counts and %.3g for the recent buyers, and one of them "
                           "cannot be calibrated at delta %g: %s",
                           share_r, rho, (1 - share_r) * rho, share_r * rho, t->delta, why);
    }
    double rho_run = st == PVG_OK ? m / (2 * pz.scale * pz.scale) : 0;
    if (st == PVG_OK && blend && !unit) rho_run += m / (2 * pr.scale * pr.scale);
    if (st == PVG_OK && unit) {
        double sr = enr.sens / enr.g;
        rho_run += sr * sr / (2 * enr.nz.scale * enr.nz.scale);
    }
    double eps_run = st == PVG_OK ? pvg_dp_zcdp_to_epsilon(rho_run, t->delta) : 0;
    if (st == PVG_OK && !(eps_run <= eps * (1 + 1e-9)))
        st = pvg_error_set(err, PVG_ERR_INTERNAL,
                           "dp ease: the popularity's epsilon %.17g exceeds %.17g", eps_run, eps);
    if (st == PVG_OK) {
        t->text_only_sigma[0] = pz.scale;
        t->text_only_sigma[1] = unit ? enr.sigma : blend ? pr.scale : 0;
    }
    double *cnt = NULL;
    if (st == PVG_OK) st = pop_counts(t, &cnt, err);
    if (st != PVG_OK) {
        free(G);
        return st;
    }
    float *pop = malloc((n ? n : 1) * sizeof *pop), *rc = NULL;
    pvg_model *md = NULL;
    if (!pop) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        double v = cnt[i] + (double)rel_noise_draw(t->rng, &pz);
        pop[i] = v > 0 ? (float)v : 0.0f;
    }
    if (blend) {
        /* recency: the prior's popularity mixes the year's counts with the
         * recent buyers' release, scaled to the same total, at weight beta
         * (post-processing of the two releases) */
        if ((st = ease_recent_release(t, &pr, &enr, &rc, err)) != PVG_OK) goto done;
        double sp = 0, sr = 0;
        for (size_t j = 0; j < n; j++) {
            sp += pop[j];
            sr += rc[j];
        }
        double scale = sr > 0 ? t->p->recent_pop_beta * sp / sr : 0;
        for (size_t j = 0; j < n; j++)
            rc[j] = pop[j] + (float)(scale * rc[j]);
    }
    if ((st = text_prior(t, blend ? rc : pop, DP_EASE_TEXT_ONLY_POP_POW, G, err)) != PVG_OK)
        goto done;
    if ((st = pvg_dp_model_new(t, &md, err)) != PVG_OK) goto done;
    pvg_model_set_section(md, PVG_SEC_EASE_B, G, 4 * n * n);
    /* the model's popularity (an empty history's list) is its prior's */
    if (rc) {
        float *tmp = pop;
        pop = rc;
        rc = tmp;
    }
    pvg_model_set_section(md, PVG_SEC_POPULARITY, pop, 4 * n);
    G = NULL;
    pop = NULL;
    t->rep.epsilon = eps_run;
    t->rep.delta = t->delta;
    t->rep.max_items = t->max_items;
    if (blend) {
        /* two releases: the record states their composition as the one
         * Gaussian mechanism of sensitivity 1 with the same zCDP rho,
         * rho_run = 1 / (2 s^2); max_items bounds the year's counts, clip
         * (1 with unit rows) the recent buyers' rows; the recency record
         * holds the share */
        t->rep.sensitivity = 1;
        t->rep.noise_multiplier = 1 / sqrt(2 * rho_run);
        t->rep.clip = unit ? 1.0 : 0;
        t->rep.mechanism = DP_EASE_MECH_TEXT_RECENT;
    } else {
        t->rep.sensitivity = sqrt(m);
        t->rep.noise_multiplier = pz.scale / sqrt(m);
        t->rep.clip = 0;
        t->rep.mechanism = DP_EASE_MECH_TEXT_ONLY;
    }
    *out = md;
    md = NULL;
done:
    pvg_model_free(md);
    free(cnt), free(pop), free(rc), free(G);
    return st;
}

/* Each shopper's weight in the projected Gram: a = V^T x adds w a a^T,
 * whose upper triangle (diagonal included) has norm s = sqrt((|a|^4 +
 * sum a_i^4) / 2); w = min(1, C / s) caps it at C; 0 (the row left out)
 * when s is not finite. */
static double proj_weight(const double *a, size_t k, double C)
{
    double n2 = 0, n4 = 0;
    for (size_t z = 0; z < k; z++) {
        double q = a[z] * a[z];
        n2 += q;
        n4 += q * q;
    }
    double sn = sqrt((n2 * n2 + n4) / 2);
    if (!isfinite(sn)) return 0; /* never a NaN or infinite term in the Gram */
    return sn > C ? C / sn : 1.0;
}

static pvg_status projected_gram_w(const pvg_csr *R, const float *rw, const uint32_t *col,
                                   const float *V, size_t k, double C, double g, double *Y,
                                   pvg_error *err);

pvg_status pvg_dp_ease_projected_gram(const pvg_csr *R, const uint32_t *col, const float *V,
                                      size_t k, double C, double g, double *Y, pvg_error *err)
{
    return projected_gram_w(R, NULL, col, V, k, C, g, Y, err);
}

/* pvg_dp_ease_projected_gram with each cell q of R weighing rw[q] >= 0 in
 * x (NULL: 1; recency: [0, 1], or up to sqrt(h) with the row norm): a =
 * V^T (r . x), clipped the same way, so the bound C holds whatever the
 * weights (a row with a non-finite a is left out). */
static pvg_status projected_gram_w(const pvg_csr *R, const float *rw, const uint32_t *col,
                                   const float *V, size_t k, double C, double g, double *Y,
                                   pvg_error *err)
{
    /* on a grid, each term is at most sqrt(2) C (s >= |a|^2 / sqrt(2)) plus
     * half a step: the sums of whole steps stay exact below 2^53 */
    if (g > 0 && !((double)R->n_rows * (M_SQRT2 * C / g + 1) < 9007199254740992.0))
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "dp ease: %zu shoppers at a bound of %g overflow the grid %g",
                             R->n_rows, C, g);
    double *a = malloc((k ? k : 1) * sizeof *a);
    if (!a) return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (rank %zu)", k);
    for (size_t u = 0; u < R->n_rows; u++) {
        memset(a, 0, k * sizeof *a);
        int any = 0;
        for (uint64_t q = R->indptr[u]; q < R->indptr[u + 1]; q++) {
            uint32_t c = col[R->indices[q]];
            if (c == UINT32_MAX || !(R->data[q] > 0)) continue;
            double r = rw ? rw[q] : 1.0;
            if (!(r > 0)) continue;
            any = 1;
            const float *v = V + (size_t)c * k;
            for (size_t z = 0; z < k; z++)
                a[z] += r * v[z];
        }
        if (!any) continue;
        double w = proj_weight(a, k, C);
        if (!(w > 0)) continue; /* a non-finite row adds nothing */
        for (size_t i = 0; i < k; i++) {
            double wi = w * a[i];
            double *row = Y + i * k;
            if (g > 0)
                for (size_t j = i; j < k; j++)
                    row[j] += nearbyint(wi * a[j] / g) * g;
            else
                for (size_t j = i; j < k; j++)
                    row[j] += wi * a[j];
        }
    }
    free(a);
    return PVG_OK;
}

/* The denoised inverse from the projected release (post-processing): Y (k x
 * k, symmetric, noisy) = Q diag(l) Q^T, the eigenvalues below tau dropped,
 * U = V Q_kept (ns x r, orthonormal columns), and P = (V Y' V^T + lambda
 * I)^-1 = (I - U diag(l / (l + lambda)) U^T) / lambda written to P (ns x
 * ns); *kept gets r. */
static pvg_status ease_inverse_projected(const float *V, size_t ns, size_t k, float *Y,
                                         double lambda, double tau, int threads, float *P,
                                         size_t *kept, pvg_error *err)
{
    float *w = malloc(k * sizeof *w), *U = malloc(ns * k * sizeof *U);
    if (!w || !U) {
        free(w), free(U);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", ns);
    }
    pvg_blas_threaded_begin(threads);
    lapack_int rc = LAPACKE_ssyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)k, Y, (lapack_int)k, w);
    if (rc == 0) {
        /* Y's kept eigenvectors scaled by sqrt(l / (l + lambda)), r columns */
        size_t r = 0;
        for (size_t c = 0; c < k; c++)
            if (w[c] >= tau && w[c] > 0) {
                float f = (float)sqrt(w[c] / (w[c] + lambda));
                for (size_t i = 0; i < k; i++)
                    Y[i * k + r] = Y[i * k + c] * f;
                r++;
            }
        *kept = r;
        /* U = V Y[:, 0..r), P = (I - U U^T) / lambda */
        if (r > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ns, (int)r, (int)k, 1.0f, V,
                        (int)k, Y, (int)k, 0.0f, U, (int)r);
            cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)ns, (int)r,
                        (float)(-1.0 / lambda), U, (int)r, 0.0f, P, (int)ns);
        } else
            memset(P, 0, ns * ns * sizeof *P);
        for (size_t i = 0; i < ns; i++) {
            P[i * ns + i] += (float)(1.0 / lambda);
            for (size_t j = 0; j < i; j++)
                P[j * ns + i] = P[i * ns + j];
        }
    }
    pvg_blas_threaded_end();
    free(w), free(U);
    if (rc != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL,
                             "dp ease: the eigen-decomposition failed (LAPACK info %d)", (int)rc);
    return PVG_OK;
}

/* The block EASE is solved on with catalogue text: its noise covers k(k+1)/2
 * coordinates whatever the block, so it may be larger than without. */
static size_t ease_text_block(size_t n)
{
    return n < DP_EASE_TEXT_TOP_ITEMS ? n : DP_EASE_TEXT_TOP_ITEMS;
}

/* The ns items of largest noisy count pop (n), ascending in sel[0..ns)
 * (sel: n), col[i] their positions (UINT32_MAX: not chosen); pi: n. */
static void ease_choose_block(const float *pop, size_t n, size_t ns, pop_idx *pi, uint32_t *sel,
                              uint32_t *col)
{
    for (size_t i = 0; i < n; i++) {
        pi[i].pop = pop[i];
        pi[i].i = (uint32_t)i;
    }
    qsort(pi, n, sizeof *pi, cmp_pop_desc);
    for (size_t i = 0; i < n; i++)
        sel[i] = pi[i].i;
    qsort(sel, ns, sizeof *sel, cmp_u32);
    for (size_t i = 0; i < n; i++)
        col[i] = UINT32_MAX;
    for (size_t a = 0; a < ns; a++)
        col[sel[a]] = (uint32_t)a;
}

/* DP-EASE's release with catalogue text before its noise, as the trainer
 * and pvg_dp_ease_text_statistic compute it: the basis V (ns x k) of the
 * text S (n x n) and the released popularity pop (n) over the block sel
 * (col its positions), and Y (k x k, zeroed) the projected Gram, each
 * shopper clipped to C = sqrt(m(m+1)/2), m = t->max_items, and rounded to
 * the noise's grid g (0: not rounded; pvg_dp_ease_projected_gram). */
static pvg_status ease_text_gram(const pvg_dp_train *t, const float *S, const float *pop,
                                 const uint32_t *sel, const uint32_t *col, size_t ns, size_t k,
                                 double g, float *V, double *Y, pvg_error *err)
{
    size_t n = t->R->n_cols;
    double m = t->max_items;
    float *Sb = malloc(ns * ns * sizeof *Sb), *popb = malloc(ns * sizeof *popb);
    if (!Sb || !popb) {
        free(Sb), free(popb);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
    }
    for (size_t a = 0; a < ns; a++) {
        popb[a] = pop[sel[a]];
        for (size_t b = 0; b < ns; b++)
            Sb[a * ns + b] = S[(size_t)sel[a] * n + sel[b]];
    }
    pvg_status st = pvg_content_gram_basis(Sb, popb, ns, k, DP_EASE_TEXT_SMOOTH,
                                           DP_EASE_TEXT_BASIS_POW, t->threads, V, err);
    free(Sb), free(popb);
    float *rw = NULL;
    if (st == PVG_OK && t->last && t->p->recency_halflife_days > 0) {
        /* recency weights inside each row, before the clip */
        if (!(rw = malloc((t->R->nnz ? t->R->nnz : 1) * sizeof *rw)))
            return pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory");
        pvg_recency_row_weights(t->R, t->last, t->now, t->p->recency_halflife_days,
                                t->p->recency_row_norm, rw);
    }
    if (st == PVG_OK) st = projected_gram_w(t->R, rw, col, V, k, sqrt(m * (m + 1) / 2), g, Y, err);
    free(rw);
    return st;
}

pvg_status pvg_train_dp_ease(pvg_dp_train *t, pvg_model **out, pvg_error *err)
{
    *out = NULL;
    size_t n = t->R->n_cols;
    if (!(t->delta > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp ease: the Gaussian mechanism needs delta in (0, 1)");
    if (n > PVG_EASE_MAX_ITEMS)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "dp ease: the vocabulary has %zu items; EASE keeps a dense item-item "
                             "matrix of at most %d",
                             n, PVG_EASE_MAX_ITEMS);
    /* the block EASE is solved on: without text DP_EASE_TOP_ITEMS, with
     * text (the Gram projected on a rank-k basis, its noise on k(k+1)/2
     * coordinates whatever the block) DP_EASE_TEXT_TOP_ITEMS */
    size_t ns = n < DP_EASE_TOP_ITEMS ? n : DP_EASE_TOP_ITEMS;
    if (t->titles && n > DP_EASE_TOP_ITEMS) ns = ease_text_block(n);
    /* B; the solved block (double, then float), its eigenvectors and their
     * scaled copy; with text, the basis's four float blocks beside the
     * float block (20 ns^2 at most) */
    double bytes = 4.0 * (double)n * (double)n + 20.0 * (double)ns * (double)ns;
    if (t->p->max_memory_mb > 0 && bytes > t->p->max_memory_mb * 1048576.0)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "dp ease: %zu items need about %.0f MiB, above the limit of %.0f MiB "
                             "(--max-memory)",
                             n, bytes / 1048576.0, t->p->max_memory_mb);
    if (n == 0) return pvg_error_set(err, PVG_ERR_INVALID, "dp ease: the vocabulary is empty");
    double eps, m = t->max_items;
    pvg_status st = method_epsilon(t, 1, &eps, err);
    if (st != PVG_OK) return st;
    /* one shopper adds w x x^T: its upper triangle, diagonal included, has
     * norm at most C = sqrt(m(m+1)/2) (ease_weight); the released
     * coordinates are the diagonal and the chosen block's upper triangle.
     * With text, w a a^T, a = V^T x, clipped to the same C
     * (pvg_dp_ease_projected_gram), on k(k+1)/2 coordinates. */
    double C = sqrt(m * (m + 1) / 2);
    double coords = (double)n + (double)ns * (double)(ns - 1) / 2;
    /* two Gaussian mechanisms composed in zCDP: a share of rho for the
     * popularity (bounded buyer counts, L2 sensitivity sqrt(m)), the rest
     * for the Gram */
    int small = eps < DP_EASE_SMALL_EPS;
    float *S = NULL; /* the titles' similarity, then the prior, then B */
    if ((st = text_similarity(t, &S, err)) != PVG_OK) return st;
    if (t->last && (!S || eps < DP_EASE_TEXT_ONLY_EPS)) {
        /* no projected release: the text-only model keeps the recent
         * buyers' release (mixed into its prior's popularity), whose
         * half-life has no Gram to weigh; without text nothing applies.
         * The defaults (recency_where_possible) drop what does not apply,
         * decided by epsilon and the public text alone; an explicit
         * request is refused */
        int keep_blend = S && t->p->recent_pop_days > 0 && t->p->recent_pop_beta > 0;
        int drop_hl = t->p->recency_halflife_days > 0;
        if (t->p->recency_where_possible) {
            if (!keep_blend) {
                t->last = NULL;
                t->recency_skipped = 1;
            } else if (drop_hl) {
                t->recency_no_halflife = 1;
            }
        } else if (!keep_blend || drop_hl) {
            free(S);
            return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                                 "dp ease: %s needs the projected release (catalogue text "
                                 "linking items, epsilon >= %g; got %g%s)",
                                 keep_blend ? "the recency half-life" : "recency terms",
                                 DP_EASE_TEXT_ONLY_EPS, eps, S ? "" : ", no linked text");
        }
    }
    if (S && eps < DP_EASE_TEXT_ONLY_EPS) {
        text_only_bound(t);
        return ease_text_only(t, eps, S, out, err);
    }
    if (!S && ns > DP_EASE_TOP_ITEMS) {
        /* titles that link nothing: the Gram alone, on its own block */
        ns = DP_EASE_TOP_ITEMS;
        coords = (double)n + (double)ns * (double)(ns - 1) / 2;
    }
    size_t rank = ns < DP_EASE_TEXT_RANK ? ns : DP_EASE_TEXT_RANK;
    if (S) coords = (double)rank * (double)(rank + 1) / 2;
    int blend = t->last && t->p->recent_pop_days > 0 && t->p->recent_pop_beta > 0;
    /* the recent buyers' release: its own share of rho (recency) */
    double share_r = !blend                       ? 0
                     : t->p->recent_pop_share > 0 ? t->p->recent_pop_share
                                                  : DP_EASE_RECENT_SHARE;
    double share = small ? DP_EASE_POP_SHARE_SMALL : DP_EASE_POP_SHARE;
    double beta = small ? DP_EASE_POP_PRIOR_SMALL : DP_EASE_POP_PRIOR;
    if (!(share_r < 0.5)) {
        free(S);
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "dp ease: recent_pop_share %g: beside the Gram the recent buyers' "
                             "release takes a share below 0.5 (from 0.5 on only the text-only "
                             "model, below epsilon %g with catalogue text)",
                             share_r, DP_EASE_TEXT_ONLY_EPS);
    }
    double rho = rel_zcdp_rho_for(eps, t->delta);
    if (!(rho > 0)) {
        free(S);
        return pvg_error_set(err, PVG_ERR_INVALID, "dp ease: epsilon %g too small for delta %g",
                             eps, t->delta);
    }
    rel_noise pz, pr = {0};
    ease_noise en, enr = {0};
    /* the recent counts' release: bounded counts at sensitivity sqrt(m), or
     * unit-norm rows (recent_pop_unit) on a grid at sensitivity 1 */
    int unit = blend && t->p->recent_pop_unit;
    if ((st = rel_noise_make(1, m, m, pvg_dp_zcdp_to_epsilon(share * rho, t->delta), t->delta, &pz,
                             err)) != PVG_OK ||
        (st = ease_noise_make(C, pvg_dp_zcdp_to_epsilon((1 - share - share_r) * rho, t->delta),
                              t->delta, coords, &en, err)) != PVG_OK ||
        (blend && !unit &&
         (st = rel_noise_make(1, m, m, pvg_dp_zcdp_to_epsilon(share_r * rho, t->delta), t->delta,
                              &pr, err)) != PVG_OK) ||
        (unit && (st = ease_noise_make(recent_l2_sensitivity(t),
                                       pvg_dp_zcdp_to_epsilon(share_r * rho, t->delta), t->delta,
                                       (double)n, &enr, err)) != PVG_OK)) {
        free(S);
        return st;
    }
    double sg = en.sens / en.g;
    double rho_run = m / (2 * pz.scale * pz.scale) + sg * sg / (2 * en.nz.scale * en.nz.scale);
    if (blend && !unit) rho_run += m / (2 * pr.scale * pr.scale);
    if (unit) {
        double sr = enr.sens / enr.g;
        rho_run += sr * sr / (2 * enr.nz.scale * enr.nz.scale);
    }
    double eps_run = pvg_dp_zcdp_to_epsilon(rho_run, t->delta);
    if (!(eps_run <= eps * (1 + 1e-9))) {
        free(S);
        return pvg_error_set(err, PVG_ERR_INTERNAL,
                             "dp ease: the composed epsilon %.17g exceeds %.17g", eps_run, eps);
    }
    double *cnt = NULL;
    if ((st = pop_counts(t, &cnt, err)) != PVG_OK) {
        free(S);
        return st;
    }
    const pvg_csr *R = t->R;
    double *d = calloc(n, sizeof *d), *Gd = S ? NULL : calloc(ns * ns, sizeof *Gd);
    float *pop = malloc(n * sizeof *pop), *Gs = malloc(ns * ns * sizeof *Gs);
    uint32_t *sel = malloc(n * sizeof *sel), *col = malloc(n * sizeof *col);
    uint32_t *buf = malloc(n * sizeof *buf);
    pop_idx *pi = malloc(n * sizeof *pi);
    float *G = S; /* B */
    pvg_model *md = NULL;
    if (!d || (!S && !Gd) || !pop || !Gs || !sel || !col || !buf || !pi) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
        goto done;
    }
    /* the noisy popularity, then the diagonal (the weighted buyer counts)
     * with its noise */
    for (size_t u = 0; u < R->n_rows && !S; u++) {
        double w = ease_weight((size_t)(R->indptr[u + 1] - R->indptr[u]), m);
        for (uint64_t q = R->indptr[u]; q < R->indptr[u + 1]; q++)
            d[R->indices[q]] += w;
    }
    for (size_t i = 0; i < n; i++) {
        double v = cnt[i] + (double)rel_noise_draw(t->rng, &pz);
        pop[i] = v > 0 ? (float)v : 0.0f;
    }
    for (size_t i = 0; i < n && !S; i++)
        d[i] = ease_noisy(t->rng, &en, d[i]);
    /* Post-processing of the noisy popularity: EASE over the ns items of
     * largest noisy count (the others' rows and columns of B stay 0), a
     * smaller noise matrix to invert. Noise is drawn for the coordinates
     * the output uses, the upper triangle of that block: drawing every
     * other coordinate too and discarding it would give the same output
     * distribution. */
    ease_choose_block(pop, n, ns, pi, sel, col);
    size_t kept = 0;
    int text = G != NULL;
    /* the noise matrix's spectral edge, about 2 sigma sqrt(ns) */
    double tau = DP_EASE_THETA * en.sigma * sqrt((double)ns);
    if (text) {
        /* with the public text: the Gram projected on the basis V (rank k)
         * of the text and the released popularity over the block, each
         * shopper clipped after the projection (pvg_dp_ease_projected_gram:
         * a shopper's a = V^T x is shorter than x when their items spread
         * over the basis, so fewer are clipped, and the noise covers
         * k(k+1)/2 coordinates instead of the block's); then EASE on V Y V^T
         * with Y's eigenvalues below the noise's edge 2 sigma sqrt(k)
         * dropped. */
        size_t k = rank;
        float *V = malloc(ns * k * sizeof *V), *Yf = malloc(k * k * sizeof *Yf);
        double *Y = calloc(k * k, sizeof *Y);
        if (!V || !Yf || !Y) {
            free(V), free(Yf), free(Y);
            st = pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
            goto done;
        }
        st = ease_text_gram(t, G, pop, sel, col, ns, k, en.g, V, Y, err);
        if (st == PVG_OK) {
            for (size_t a = 0; a < k; a++)
                Y[a * k + a] = ease_noisy(t->rng, &en, Y[a * k + a]);
            st = add_sym_noise(t, Y, k, &en, err);
        }
        if (st == PVG_OK) {
            for (size_t q = 0; q < k * k; q++)
                Yf[q] = (float)Y[q];
            tau = DP_EASE_TEXT_THETA * en.sigma * sqrt((double)k);
            st = ease_inverse_projected(V, ns, k, Yf, t->p->ease_lambda, tau, t->threads, Gs, &kept,
                                        err);
        }
        free(V), free(Yf), free(Y);
        if (st != PVG_OK) goto done;
    } else {
        gram_upper_w(R, m, col, ns, Gd, buf);
        for (size_t a = 0; a < ns; a++)
            Gd[a * ns + a] = d[sel[a]];
        if ((st = add_sym_noise(t, Gd, ns, &en, err)) != PVG_OK) goto done;
        for (size_t q = 0; q < ns * ns; q++)
            Gs[q] = (float)Gd[q];
        free(Gd);
        Gd = NULL;
        st = ease_inverse_spectral(Gs, ns, t->p->ease_lambda, tau, t->threads, &kept, err);
        if (st != PVG_OK) goto done;
    }
    if (!text && !(G = calloc(n * n, sizeof *G))) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
        goto done;
    }
    if ((st = pvg_dp_model_new(t, &md, err)) != PVG_OK) goto done;
    if (text) {
        /* EASE around the prior, on the block: B = argmin |X - XB|^2 +
         * lambda |B - B0|^2 with diag(B) = 0, whose solution is
         * B = U - P diag(U_jj / P_jj), U = I - lambda P (I - B0) = B0 +
         * M (I - B0), M = I - lambda P the denoised ridge regression of each
         * item on the others; B0 = 0 gives EASE's -P_ij / P_jj. */
        if ((st = text_prior(t, pop, DP_EASE_TEXT_POP_POW, G, err)) != PVG_OK) goto done;
        float *W = malloc(ns * ns * sizeof *W), *D = malloc(ns * ns * sizeof *D);
        if (!W || !D) {
            free(W), free(D);
            st = pvg_error_set(err, PVG_ERR_NOMEM, "dp ease: out of memory (%zu items)", n);
            goto done;
        }
        float lam = (float)t->p->ease_lambda;
        for (size_t a = 0; a < ns; a++)
            for (size_t b = 0; b < ns; b++)
                W[a * ns + b] = (a == b ? 1.0f : 0.0f) - G[(size_t)sel[a] * n + sel[b]];
        /* D = -lambda P (I - B0); U = I + D on the block */
        pvg_blas_threaded_begin(t->threads);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ns, (int)ns, (int)ns, -lam, Gs,
                    (int)ns, W, (int)ns, 0.0f, D, (int)ns);
        pvg_blas_threaded_end();
        for (size_t b = 0; b < ns; b++) {
            double ubb = 1.0 + (double)D[b * ns + b], pbb = Gs[b * ns + b];
            W[b] = pbb > 0 ? (float)(ubb / pbb) : 0.0f; /* mu_b, reusing W's first row */
        }
        for (size_t a = 0; a < ns; a++)
            for (size_t b = 0; b < ns; b++)
                if (a != b) G[(size_t)sel[a] * n + sel[b]] = D[a * ns + b] - Gs[a * ns + b] * W[b];
        for (size_t i = 0; i < n; i++)
            G[i * n + i] = 0;
        free(W), free(D);
        beta = 0;
        if (blend && (st = ease_recent_blend(t, &pr, &enr, G, err)) != PVG_OK) goto done;
    }
    /* B_ij = -P_ij / P_jj, diag 0 */
    for (size_t a = 0; a < ns && !text; a++)
        for (size_t b = 0; b < ns; b++)
            if (b != a) G[(size_t)sel[a] * n + sel[b]] = -Gs[a * ns + b] / Gs[b * ns + b];
    /* a popularity prior (post-processing): every row of B gets
     * beta * rms(B) * pop_j / max(pop), so a history of h items adds h times
     * that to item j's score: where the noisy Gram says little, the noisy
     * popularity ranks */
    if (beta > 0) {
        double ss = 0, pmax = 0;
        size_t nz_b = 0;
        for (size_t q = 0; q < n * n; q++)
            if (G[q] != 0) {
                ss += (double)G[q] * G[q];
                nz_b++;
            }
        for (size_t j = 0; j < n; j++)
            if (pop[j] > pmax) pmax = pop[j];
        double rms = nz_b ? sqrt(ss / (double)nz_b) : 0;
        if (pmax > 0 && rms > 0)
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++)
                    if (j != i) G[i * n + j] += (float)(beta * rms * pop[j] / pmax);
    }
    pvg_model_set_section(md, PVG_SEC_EASE_B, G, 4 * n * n);
    pvg_model_set_section(md, PVG_SEC_POPULARITY, pop, 4 * n);
    G = NULL;
    pop = NULL;
    t->rep.epsilon = eps_run;
    t->rep.delta = t->delta;
    t->rep.sensitivity = en.sens;
    t->rep.noise_multiplier = en.sigma / en.sens;
    t->rep.max_items = t->max_items;
    t->rep.clip = 0;
    t->rep.mechanism = text ? DP_EASE_MECH_PROJECTED : DP_EASE_MECH_GRAM;
    *out = md;
    md = NULL;
done:
    pvg_model_free(md);
    free(cnt), free(d), free(Gd), free(pop), free(Gs), free(sel), free(col), free(buf), free(pi),
        free(G);
    return st;
}

const char *pvg_dp_ease_recency_record_check(const pvg_model *m)
{
    const pvg_train_params *p = &m->params;
    const char *mech = m->dp.mechanism;
    int hl = p->recency_halflife_days > 0, blend = p->recent_pop_days > 0 && p->recent_pop_beta > 0;
    if (m->type == PVG_MODEL_EASE && mech && strcmp(mech, DP_EASE_MECH_TEXT_RECENT) == 0 && !blend)
        return "recency record: DP-EASE's text-only model with its recent buyers without their "
               "window (expected recent_pop_days and recent_pop_beta > 0)";
    if (m->type != PVG_MODEL_EASE || !(m->dp.epsilon > 0) || (!hl && !blend)) return NULL;
    if (mech &&
        (strcmp(mech, DP_EASE_MECH_TEXT_ONLY) == 0 || strcmp(mech, DP_EASE_MECH_TEXT_RECENT) == 0))
        return hl ? "recency record: a half-life in DP-EASE's text-only model (no Gram to weigh; "
                    "expected 0)"
                  : NULL;
    if (mech && strcmp(mech, DP_EASE_MECH_PROJECTED) == 0)
        return p->recent_pop_share >= 0.5 ? "recency record: recent_pop_share of 0.5 or more "
                                            "beside DP-EASE's Gram (expected below 0.5)"
                                          : NULL;
    return "recency record: terms on a DP-EASE model without catalogue text (expected none)";
}

/* ---- the statistic before its noise (tests) -------------------------------------- */

pvg_status pvg_dp_ease_recent_statistic(pvg_dp_train *t, double **vec, size_t *len, double *sens,
                                        pvg_error *err)
{
    *vec = NULL;
    *len = 0;
    if (!t->last || !(t->p->recent_pop_days > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp ease: the recent buyers' statistic needs the cells' purchase "
                             "times and recent_pop_days > 0");
    size_t n = t->R->n_cols;
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    pvg_status st = recent_counts(t, v, err);
    if (st != PVG_OK) {
        free(v);
        return st;
    }
    *vec = v;
    *len = n;
    *sens = recent_l2_sensitivity(t);
    return PVG_OK;
}

pvg_status pvg_dp_ease_text_only_statistic(pvg_dp_train *t, double **vec, size_t *len,
                                           double sens[2], pvg_error *err)
{
    *vec = NULL;
    *len = 0;
    text_only_bound(t);
    size_t n = t->R->n_cols;
    int blend = text_only_blend(t);
    double *cnt = NULL, *v = malloc((n ? 2 * n : 1) * sizeof *v);
    if (!v) return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    pvg_status st = pop_counts(t, &cnt, err);
    if (st == PVG_OK) {
        memcpy(v, cnt, n * sizeof *v);
        if (blend) st = recent_counts(t, v + n, err);
    }
    free(cnt);
    if (st != PVG_OK) {
        free(v);
        return st;
    }
    *vec = v;
    *len = blend ? 2 * n : n;
    sens[0] = sqrt((double)t->max_items);
    sens[1] = blend ? recent_l2_sensitivity(t) : 0;
    return PVG_OK;
}

pvg_status pvg_dp_statistic(pvg_dp_train *t, pvg_model_type type, double **vec, size_t *len,
                            double *sens, pvg_error *err)
{
    *vec = NULL;
    *len = 0;
    double m = t->max_items;
    size_t n = t->R->n_cols;
    pvg_status st;
    if (type == PVG_MODEL_POPULARITY) {
        if ((st = pop_counts(t, vec, err)) != PVG_OK) return st;
        *len = n;
        *sens = sqrt(m);
        return PVG_OK;
    }
    if (type != PVG_MODEL_ITEMKNN && type != PVG_MODEL_EASE)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED, "dp statistic of %s",
                             pvg_model_type_name(type));
    double *v = malloc((n ? n * (n + 1) / 2 : 1) * sizeof *v);
    if (!v) return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
    size_t o = 0;
    if (type == PVG_MODEL_ITEMKNN) {
        pvg_dp_cooc_counts *cc;
        if ((st = knn_counts(t, &cc, err)) != PVG_OK) {
            free(v);
            return st;
        }
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < n; j++)
                v[o++] = (double)pvg_dp_cooc_counts_exact(cc, i, j);
        pvg_dp_cooc_counts_free(cc);
    } else {
        double *G = calloc(n ? n * n : 1, sizeof *G);
        uint32_t *col = calloc(n ? n : 1, sizeof *col), *buf = calloc(n ? n : 1, sizeof *buf);
        if (!G || !col || !buf) {
            free(G), free(col), free(buf), free(v);
            return pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
        }
        for (size_t i = 0; i < n; i++)
            col[i] = (uint32_t)i;
        gram_upper_w(t->R, m, col, n, G, buf);
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < n; j++)
                v[o++] = G[i * n + j];
        free(G), free(col), free(buf);
    }
    *vec = v;
    *len = o;
    *sens = sqrt(m * (m + 1) / 2);
    return PVG_OK;
}

pvg_status pvg_dp_ease_text_statistic(pvg_dp_train *t, const float *pop, double **vec, size_t *len,
                                      double *sens, pvg_error *err)
{
    *vec = NULL;
    *len = 0;
    size_t n = t->R->n_cols;
    double m = t->max_items;
    for (size_t i = 0; i < n; i++)
        if (!(pop[i] >= 0))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "dp ease statistic: popularity of item %zu is %g, expected >= 0",
                                 i, (double)pop[i]);
    float *S = NULL;
    pvg_status st = text_similarity(t, &S, err);
    if (st != PVG_OK) return st;
    if (!S)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp ease statistic: no titles that link two items (the release "
                             "without text is pvg_dp_statistic's)");
    size_t ns = n > DP_EASE_TOP_ITEMS ? ease_text_block(n) : n;
    size_t k = ns < DP_EASE_TEXT_RANK ? ns : DP_EASE_TEXT_RANK;
    pop_idx *pi = malloc(n * sizeof *pi);
    uint32_t *sel = malloc(n * sizeof *sel), *col = malloc(n * sizeof *col);
    float *V = malloc(ns * k * sizeof *V);
    double *Y = calloc(k * k, sizeof *Y), *v = malloc(k * (k + 1) / 2 * sizeof *v);
    if (!pi || !sel || !col || !V || !Y || !v)
        st = pvg_error_set(err, PVG_ERR_NOMEM, "dp ease statistic: out of memory (%zu items)", n);
    if (st == PVG_OK) {
        ease_choose_block(pop, n, ns, pi, sel, col);
        st = ease_text_gram(t, S, pop, sel, col, ns, k, 0, V, Y, err);
    }
    if (st == PVG_OK) {
        size_t o = 0;
        for (size_t i = 0; i < k; i++)
            for (size_t j = i; j < k; j++)
                v[o++] = Y[i * k + j];
        *vec = v;
        *len = o;
        *sens = sqrt(m * (m + 1) / 2);
        v = NULL;
    }
    free(S), free(pi), free(sel), free(col), free(V), free(Y), free(v);
    return st;
}

/* ---- the framework ------------------------------------------------------------------ */

void pvg_dp_public_fingerprint(const pvg_model *m, unsigned char out[32])
{
    static const int secs[] = {PVG_SEC_ITEM_STR, PVG_SEC_POPULARITY, PVG_SEC_ITEM_F,
                               PVG_SEC_EASE_B,   PVG_SEC_KNN_INDPTR, PVG_SEC_KNN_IDX,
                               PVG_SEC_KNN_SIM};
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, (const unsigned char *)"pvg-dp-model", 12, 32);
    /* the DP record and the type: editing the claim changes the fingerprint */
    double rec[5] = {m->dp.epsilon, m->dp.delta, m->dp.noise_multiplier, m->dp.sensitivity,
                     m->dp.clip};
    int32_t ints[3] = {(int32_t)m->type, m->dp.max_items, (int32_t)m->dp_vocab};
    char mech[PVG_DP_MECHANISM_MAX];
    memset(mech, 0, sizeof mech);
    snprintf(mech, sizeof mech, "%s", m->dp.mechanism ? m->dp.mechanism : "");
    crypto_generichash_update(&hs, (const unsigned char *)rec, sizeof rec);
    crypto_generichash_update(&hs, (const unsigned char *)ints, sizeof ints);
    crypto_generichash_update(&hs, (const unsigned char *)mech, sizeof mech);
    /* the recency record when the terms were used (a model without them
     * hashes as before it existed) */
    const pvg_train_params *q = &m->params;
    if (q->recency_halflife_days > 0 || q->recent_pop_days > 0) {
        double rr[6] = {(double)q->recency_now, q->recency_halflife_days,
                        q->recent_pop_days,     q->recent_pop_beta,
                        q->recent_pop_share,    (double)q->recency_row_norm};
        int32_t ru = q->recent_pop_unit;
        crypto_generichash_update(&hs, (const unsigned char *)"recency", 7);
        crypto_generichash_update(&hs, (const unsigned char *)rr, sizeof rr);
        crypto_generichash_update(&hs, (const unsigned char *)&ru, sizeof ru);
    }
    for (size_t i = 0; i < sizeof secs / sizeof *secs; i++) {
        uint64_t len = m->sec[secs[i]] ? m->sec_len[secs[i]] : 0;
        crypto_generichash_update(&hs, (const unsigned char *)&len, sizeof len);
        if (len) crypto_generichash_update(&hs, m->sec[secs[i]], len);
    }
    crypto_generichash_final(&hs, out, 32);
}

pvg_status pvg_train_dp(const pvg_dataset *ds, const pvg_csr *R, const pvg_train_params *p,
                        pvg_model **out, pvg_train_stats *stats, pvg_error *err)
{
    *out = NULL;
    if (stats) memset(stats, 0, sizeof *stats);
    double t0 = pvg_now_seconds();
    switch (p->type) {
    case PVG_MODEL_POPULARITY:
    case PVG_MODEL_ITEMKNN:
    case PVG_MODEL_EASE:
    case PVG_MODEL_IALS: /* DP-iALS (Chien et al. 2021), dp_ials.c */
        break;
    default:
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "dp training of %s is not available (DP trainers: popularity, "
                             "itemknn, ease, ials)",
                             pvg_model_type_name(p->type));
    }
    if (!(p->dp_epsilon > 0) || isinf(p->dp_epsilon))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp: epsilon must be a finite number > 0, got %g", p->dp_epsilon);
    if (!(p->dp_delta >= 0 && p->dp_delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "dp: delta must be in [0, 1), got %g",
                             p->dp_delta);
    if (p->type == PVG_MODEL_EASE && !(p->dp_delta > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp ease: the Gaussian mechanism needs delta in (0, 1), got %g",
                             p->dp_delta);
    if (!(p->dp_noise_multiplier >= 0) || isinf(p->dp_noise_multiplier))
        return pvg_error_set(err, PVG_ERR_INVALID, "dp: noise multiplier must be >= 0, got %g",
                             p->dp_noise_multiplier);
    int m = p->dp_max_items ? p->dp_max_items : pvg_dp_default_max_items(p->type);
    int m_lo = p->type == PVG_MODEL_ITEMKNN ? 2 : 1;
    if (m < m_lo || m > DP_MAX_M)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp: max items per shopper must be in %d..%d, got %d", m_lo, DP_MAX_M,
                             m);
    if (p->type == PVG_MODEL_ITEMKNN && (p->neighbors < 1 || !(p->shrink >= 0)))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "itemknn: neighbors must be >= 1 and shrink >= 0");
    if (p->type == PVG_MODEL_EASE && !(p->ease_lambda >= 0))
        return pvg_error_set(err, PVG_ERR_INVALID, "ease: lambda must be >= 0");
    if (R->nnz == 0) return pvg_error_set(err, PVG_ERR_INVALID, "no interactions to train on");
    pvg_rng *rng = p->dp_rng, *own = NULL;
    if (rng) {
        pvg_status st = pvg_rng_require_secure(rng, p->dp_allow_insecure_rng, "DP training", err);
        if (st != PVG_OK) return st;
    } else if (!(rng = own = pvg_rng_new_secure())) {
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp: cannot create the noise generator");
    }
    /* recency (docs/models.md "Recency"): DP-EASE's projected release only */
    int recency =
        p->recency_halflife_days > 0 || (p->recent_pop_days > 0 && p->recent_pop_beta > 0);
    if (recency && p->type != PVG_MODEL_EASE) {
        pvg_rng_free(own);
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "dp %s: recency terms are available to DP-EASE only",
                             pvg_model_type_name(p->type));
    }
    pvg_status sc = pvg_recency_check(p, err);
    if (sc == PVG_OK && recency && !p->recency_now)
        /* the default present, one second after the latest event, is one
         * shopper's data: a single late (or future-dated) purchase would
         * move every other shopper's window and weights */
        sc = pvg_error_set(err, PVG_ERR_INVALID,
                           "dp ease: recency terms need recency_now, a public present set by "
                           "the caller (the default, one second after the latest event, is "
                           "one shopper's data)");
    if (sc != PVG_OK) {
        pvg_rng_free(own);
        return sc;
    }
    int64_t now = recency ? pvg_recency_now(ds, p) : 0, *last = NULL, *last_v = NULL;
    vocab v;
    pvg_status st = vocab_choose(ds, R, p, rng, m, &v, err);
    pvg_csr Rv = {0};
    if (st == PVG_OK && recency) {
        if (!(last = malloc((R->nnz ? R->nnz : 1) * sizeof *last)))
            st = pvg_error_set(err, PVG_ERR_NOMEM, "dp: out of memory");
        else
            st = pvg_recency_last(ds, R, now, last, err);
    }
    if (st == PVG_OK)
        st = restrict_matrix(R, &v, ds->item_ids, last, recency ? &last_v : NULL, &Rv, err);
    free(last);
    pvg_model *md = NULL;
    if (st == PVG_OK) {
        pvg_dp_train t;
        memset(&t, 0, sizeof t);
        t.ds = ds;
        t.vds = *ds;
        t.vds.item_ids = v.ids;
        t.vds.n_items = v.n;
        t.vds.item_titles = NULL; /* indexed by the dataset's items, not the vocabulary's */
        t.vds.cap_titles = 0;
        t.titles = (const char *const *)v.titles;
        t.R = &Rv;
        t.p = p;
        t.rng = rng;
        t.epsilon = p->dp_epsilon - v.epsilon;
        t.delta = p->dp_delta - v.delta;
        t.max_items = m;
        t.threads = p->threads < 1 ? 1 : p->threads;
        t.last = last_v;
        t.now = now;
        switch (p->type) {
        case PVG_MODEL_POPULARITY:
            st = pvg_train_dp_popularity(&t, &md, err);
            break;
        case PVG_MODEL_ITEMKNN:
            st = pvg_train_dp_itemknn(&t, &md, err);
            break;
        case PVG_MODEL_IALS:
            st = pvg_train_dp_ials_method(&t, &md, stats, err);
            break;
        default:
            st = pvg_train_dp_ease(&t, &md, err);
            break;
        }
        if (st == PVG_OK) {
            pvg_model_bind(md);
            md->dp = t.rep;
            /* the whole run: the vocabulary's selection and the method
             * compose (basic composition) */
            md->dp.epsilon = t.rep.epsilon + v.epsilon;
            md->dp.delta = t.rep.delta + v.delta;
            md->dp_vocab = v.kind;
            if (t.recency_skipped || !recency) {
                pvg_model_recency_clear(&md->params);
            } else {
                md->params.recency_now = now;
                if (t.recency_no_halflife) {
                    md->params.recency_halflife_days = 0;
                    md->params.recency_row_norm = 0;
                }
            }
            pvg_dp_public_fingerprint(md, md->fingerprint);
        }
    }
    pvg_csr_free(&Rv);
    free(last_v);
    vocab_free(&v);
    pvg_rng_free(own);
    if (st != PVG_OK) return st;
    if (stats) stats->train_seconds = pvg_now_seconds() - t0;
    *out = md;
    return PVG_OK;
}

/* ---- the ledger: a DP model is charged, and served only when charged ---- */

static void fingerprint_hex(const pvg_model *m, char hex[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", pvg_model_fingerprint(m)[i]);
}

pvg_status pvg_model_dp_charge(pvg_store *s, const pvg_model *m, int64_t *release_id,
                               pvg_error *err)
{
    pvg_model_dp_info d;
    pvg_status st = pvg_model_dp_info_get(m, &d, err);
    if (st != PVG_OK) return st;
    if (!d.is_dp) return pvg_error_set(err, PVG_ERR_INVALID, "charge: the model is not DP-trained");
    char what[300], fph[65];
    fingerprint_hex(m, fph);
    snprintf(what, sizeof what, "train %s model (m=%d, %s vocabulary, fingerprint %s)",
             pvg_model_type_name(pvg_model_type_of(m)), d.max_items,
             pvg_dp_vocabulary_name(d.vocabulary), fph);
    return pvg_ledger_charge(s, pvg_ledger_purpose_name(PVG_LEDGER_MODEL_BUILDS), what,
                             d.mechanism[0] ? d.mechanism : "?", d.epsilon, d.delta, release_id,
                             err);
}

typedef struct charged_ctx {
    char needle[80];
    double epsilon, delta;
    int found;
} charged_ctx;

static int charged_take(void *ctx, const pvg_ledger_release *r)
{
    charged_ctx *c = ctx;
    if (r->purpose == PVG_LEDGER_MODEL_BUILDS && r->what && strstr(r->what, c->needle) &&
        r->epsilon >= c->epsilon * (1 - 1e-9) && r->delta >= c->delta * (1 - 1e-9)) {
        c->found = 1;
        return 1;
    }
    return 0;
}

pvg_status pvg_model_dp_charged(pvg_store *s, const pvg_model *m, int *charged, pvg_error *err)
{
    *charged = 0;
    pvg_model_dp_info d;
    pvg_status st = pvg_model_dp_info_get(m, &d, err);
    if (st != PVG_OK || !d.is_dp) return st;
    charged_ctx c;
    memset(&c, 0, sizeof c);
    char fph[65];
    fingerprint_hex(m, fph);
    snprintf(c.needle, sizeof c.needle, "fingerprint %s", fph);
    c.epsilon = d.epsilon;
    c.delta = d.delta;
    st = pvg_ledger_releases_foreach(s, NULL, charged_take, &c, err);
    if (st == PVG_ERR_ABORTED) {
        pvg_error_clear(err);
        st = PVG_OK;
    }
    if (st == PVG_OK) *charged = c.found;
    return st;
}
