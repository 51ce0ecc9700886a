/*
 * explain.c - "why this?" for a shopper's recommendations: which items of
 * the shopper's own history make an item score, and by how much
 * (pvg_model_explain, include/privguide/model.h; docs/models.md
 * "Explanations").
 *
 * The score of item j for a history H decomposes into one term per history
 * item i:
 *   EASE    score_j = sum_i B[i][j]                      term_i = B[i][j]
 *   itemknn score_j = sum_i S[i -> j] (i's kept neighbours) term_i = S[i -> j]
 *   iALS    u = A^-1 b, A = alpha0 G + reg I + sum_i c_i v_i v_i^T,
 *           b = sum_i c_i v_i, so v_j . u = sum_i c_i v_j^T A^-1 v_i
 *                                                          term_i = c_i v_j^T A^-1 v_i
 * EASE and itemknn are the served score exactly. For iALS the terms sum to
 * the score of the shopper's closed-form fold-in against the final item
 * factors (what pvg_model_recommend_history serves), not of the user
 * factors training stored (solved against the item factors of the epoch
 * before, and with conjugate-gradient steps); the two agree closely, and
 * the terms rank the history items by how much their confidence-weighted
 * contribution to the user factor aligns with the item. BPR has no closed
 * form: its terms are those of the same ridge solve over BPR's item factors
 * (bias dimension left out), a surrogate. A popularity model has no
 * history terms.
 */
#include "model/model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct term {
    uint32_t item;
    float w;
    double c;
} term;

static int term_cmp(const void *a, const void *b)
{
    const term *x = a, *y = b;
    if (x->c != y->c) return x->c > y->c ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

/* The factor models' shared system: the Cholesky factor of A over the
 * history, the per-item confidences, and which dimensions count.
 * factor_sys_build: 0 ok, -1 A not positive definite, -2 out of memory. */
typedef struct factor_sys {
    size_t F, f;  /* stored width, dimensions used (BPR: without the bias) */
    double *L;    /* f x f */
    double *conf; /* per history item */
} factor_sys;

static int factor_sys_build(const pvg_model *m, const uint32_t *hist, const float *hw, size_t n,
                            factor_sys *s)
{
    int ials = m->type == PVG_MODEL_IALS;
    s->F = m->factors;
    s->f = ials ? s->F : s->F - 1;
    size_t f = s->f, F = s->F;
    s->L = malloc((f ? f * f : 1) * sizeof *s->L);
    s->conf = malloc((n ? n : 1) * sizeof *s->conf);
    if (!s->L || !s->conf) return -2;
    /* the fold-in's constants (pvg_model_fold_in): iALS its training
     * parameters, BPR the generic ridge */
    double alpha0 = ials ? m->params.alpha0 : 0.1;
    double lambda = ials ? m->params.reg : 0.01;
    double nu = ials ? m->params.nu : 1.0;
    double conf = ials ? m->params.confidence : 0.0;
    double reg = lambda * pow((double)n + alpha0 * (double)m->n_items, nu);
    for (size_t a = 0; a < f; a++)
        for (size_t c = 0; c < f; c++) {
            /* the Gramian of BPR's item factors over the used dimensions */
            double g = m->gram ? (double)m->gram[a * F + c] : 0.0;
            s->L[a * f + c] = alpha0 * g + (a == c ? reg : 0.0);
        }
    for (size_t q = 0; q < n; q++) {
        const float *h = m->V + (size_t)hist[q] * F;
        double cw = conf > 0 ? 1.0 + conf * log1p((double)hw[q]) : 1.0;
        s->conf[q] = cw;
        for (size_t a = 0; a < f; a++)
            for (size_t c = 0; c <= a; c++)
                s->L[a * f + c] += cw * h[a] * h[c];
    }
    return pvg_cholesky_factor(s->L, f);
}

static void factor_sys_free(factor_sys *s)
{
    free(s->L);
    free(s->conf);
}

static const char *method_of(pvg_model_type t, int *exact)
{
    *exact = t == PVG_MODEL_EASE || t == PVG_MODEL_ITEMKNN || t == PVG_MODEL_POPULARITY;
    switch (t) {
    case PVG_MODEL_EASE:
        return "ease-weights";
    case PVG_MODEL_ITEMKNN:
        return "itemknn-similarities";
    case PVG_MODEL_IALS:
        return "ials-fold-in";
    case PVG_MODEL_BPR:
        return "bpr-ridge-surrogate";
    default:
        return "popularity";
    }
}

pvg_status pvg_model_explain(const pvg_model *m, const unsigned char user_key[16],
                             const int64_t *items, size_t n_items, size_t k, pvg_explain_term *out,
                             size_t *n_out, pvg_explain_info *info, pvg_error *err)
{
    if (!m || !user_key || (n_items && (!items || !n_out || (k && !out))))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "explain: model, user key, items and the output arrays are required");
    for (size_t t = 0; t < n_items; t++) {
        n_out[t] = 0;
        if (info) memset(&info[t], 0, sizeof info[t]);
    }
    if (m->users_locked)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "explain: the per-shopper sections of this model are sealed: open "
                             "the model with its store (pvg_model_load_store or pvg_model_unseal)");
    for (size_t t = 0; t < n_items; t++)
        if (items[t] < 0 || (uint64_t)items[t] >= m->n_items)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "explain: items[%zu]: index %lld out of range 0..%llu", t,
                                 (long long)items[t], (unsigned long long)m->n_items);
    int64_t u = pvg_model_find_user(m, user_key);
    if (u < 0)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "explain: the model does not know this user");
    const uint32_t *hist = m->hist_items + m->hist_indptr[u];
    const float *hw = m->hist_w + m->hist_indptr[u];
    size_t n = (size_t)(m->hist_indptr[u + 1] - m->hist_indptr[u]);
    int exact;
    const char *method = method_of(m->type, &exact);
    int factor = (m->type == PVG_MODEL_IALS || m->type == PVG_MODEL_BPR) && m->V && n > 0;
    if (factor && m->factors < (m->type == PVG_MODEL_BPR ? 2u : 1u)) factor = 0;
    term *terms = malloc((n ? n : 1) * sizeof *terms);
    double *x = malloc((m->factors ? m->factors : 1) * sizeof *x);
    factor_sys fs = {0};
    if (!terms || !x) {
        free(terms);
        free(x);
        return pvg_error_set(err, PVG_ERR_NOMEM, "explain: out of memory");
    }
    if (factor) {
        int rc = factor_sys_build(m, hist, hw, n, &fs);
        if (rc != 0) {
            factor_sys_free(&fs);
            free(terms);
            free(x);
            if (rc == -1)
                return pvg_error_set(err, PVG_ERR_INTERNAL,
                                     "explain: the fold-in system of this history is not "
                                     "positive definite");
            return pvg_error_set(err, PVG_ERR_NOMEM, "explain: out of memory");
        }
    }
    for (size_t t = 0; t < n_items; t++) {
        uint32_t j = (uint32_t)items[t];
        double total = 0;
        size_t nt = 0;
        if (m->type == PVG_MODEL_POPULARITY || n == 0) {
            total = m->popularity ? m->popularity[j] : 0;
        } else if (m->type == PVG_MODEL_EASE && m->ease_B) {
            for (size_t q = 0; q < n; q++) {
                double c = m->ease_B[(size_t)hist[q] * m->n_items + j];
                total += c;
                terms[nt++] = (term){hist[q], hw[q], c};
            }
        } else if (m->type == PVG_MODEL_ITEMKNN && m->knn_indptr) {
            for (size_t q = 0; q < n; q++) {
                double c = 0;
                for (uint64_t p = m->knn_indptr[hist[q]]; p < m->knn_indptr[hist[q] + 1]; p++)
                    if (m->knn_idx[p] == j) c += m->knn_sim[p];
                total += c;
                terms[nt++] = (term){hist[q], hw[q], c};
            }
        } else if (factor) {
            const float *vj = m->V + (size_t)j * fs.F;
            for (size_t a = 0; a < fs.f; a++)
                x[a] = vj[a];
            pvg_cholesky_solve_factored(fs.L, fs.f, x); /* x = A^-1 v_j */
            for (size_t q = 0; q < n; q++) {
                const float *vi = m->V + (size_t)hist[q] * fs.F;
                double d = 0;
                for (size_t a = 0; a < fs.f; a++)
                    d += x[a] * vi[a];
                double c = fs.conf[q] * d;
                total += c;
                terms[nt++] = (term){hist[q], hw[q], c};
            }
            if (m->type == PVG_MODEL_BPR) total += vj[fs.F - 1]; /* the item's bias */
        }
        size_t pos = 0;
        for (size_t q = 0; q < nt; q++)
            if (terms[q].c > 0) terms[pos++] = terms[q];
        qsort(terms, pos, sizeof *terms, term_cmp);
        size_t kk = pos < k ? pos : k;
        for (size_t q = 0; q < kk; q++) {
            pvg_explain_term *o = &out[t * k + q];
            o->item_index = terms[q].item;
            o->item = pvg_model_item_id(m, terms[q].item);
            o->weight = terms[q].w;
            o->contribution = terms[q].c;
        }
        n_out[t] = kk;
        if (info) {
            info[t].score = total;
            info[t].n_history = n;
            info[t].n_positive = pos;
            info[t].exact = exact;
            info[t].method = method;
        }
    }
    factor_sys_free(&fs);
    free(terms);
    free(x);
    return PVG_OK;
}
