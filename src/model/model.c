/*
 * model.c - model construction (training dispatch), the common serving
 * parts (user keys, histories, item ids, popularity) and top-k serving:
 * recommend, batched recommend, fold-in of unseen histories, similar
 * items, popular items.
 */
#include "model/model_internal.h"

#include "store/store_internal.h"

#include <math.h>
#include <privguide/dp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {NULL, "popularity", "itemknn", "ials", "ease", "bpr"};

const char *pvg_model_type_name(pvg_model_type t)
{
    return (t >= PVG_MODEL_POPULARITY && t <= PVG_MODEL_BPR) ? type_names[t] : "?";
}

pvg_status pvg_model_type_parse(const char *name, pvg_model_type *out, pvg_error *err)
{
    for (int t = PVG_MODEL_POPULARITY; t <= PVG_MODEL_BPR; t++)
        if (name && strcmp(name, type_names[t]) == 0) {
            *out = (pvg_model_type)t;
            return PVG_OK;
        }
    return pvg_error_set(err, PVG_ERR_INVALID,
                         "unknown model '%s' (expected popularity, itemknn, ials, ease or bpr)",
                         name ? name : "");
}

void pvg_train_params_default(pvg_model_type type, pvg_train_params *p)
{
    memset(p, 0, sizeof *p);
    p->type = type;
    p->threads = 1;
    p->seed = 42;
    p->cg_steps = 3;
    p->confidence = 0;
    p->init_std = 0;
    switch (type) {
    case PVG_MODEL_IALS:
        p->factors = 64;
        p->epochs = 16;
        p->reg = -1;    /* derived from the data's degrees (pvg_ials_resolve_defaults) */
        p->alpha0 = -1; /* derived from alpha and the data's density */
        p->alpha = -1;  /* derived from the data's degrees */
        p->nu = 1.0;
        break;
    case PVG_MODEL_BPR:
        p->factors = 64;
        p->epochs = 200;
        p->lr = 0.05;
        p->reg = 0.03;
        break;
    case PVG_MODEL_EASE:
        p->ease_lambda = 500;
        break;
    case PVG_MODEL_ITEMKNN:
        p->neighbors = 400;
        p->shrink = 10;
        break;
    default:
        break;
    }
}

/* The recency terms of one model kind (docs/models.md "Recency"). */
typedef struct recency_terms {
    double halflife_days;
    int row_norm;
    double recent_days, recent_beta, recent_share;
    int recent_unit;
} recency_terms;

static void recency_set(pvg_train_params *p, const recency_terms *r, int64_t present)
{
    p->recency_halflife_days = r->halflife_days;
    p->recency_row_norm = r->row_norm;
    p->recent_pop_days = r->recent_days;
    p->recent_pop_beta = r->recent_beta;
    p->recent_pop_share = r->recent_share;
    p->recent_pop_unit = r->recent_unit;
    p->recency_now = present;
}

void pvg_train_params_recency_default(pvg_train_params *p, int64_t present)
{
    /* chosen on Online Retail's validation split (docs/models.md "Recency"):
     * EASE without DP; DP-EASE's projected release (eps >= 5); its
     * text-only model (eps < 5), whose prior's popularity is mostly the
     * last 60 days' buyers (90% of its rho, eight times the year's
     * total) */
    static const recency_terms ease = {240, 0, 7, 0.7, 0, 0};
    static const recency_terms dp_projected = {120, 1, 14, 1, 0.15, 1};
    static const recency_terms dp_text_only = {0, 0, 60, 8, 0.9, 1};
    if (p->type != PVG_MODEL_EASE) return;
    /* by the epsilon DP-EASE runs at: with a noise multiplier, what it
     * gives (as the trainer's method_epsilon; a Gaussian mechanism), which
     * below PVG_DP_EASE_TEXT_ONLY_EPS makes the text-only model */
    double eps = p->dp_epsilon;
    if (eps > 0 && p->dp_noise_multiplier > 0 && p->dp_delta > 0) {
        double s = p->dp_noise_multiplier,
               e = pvg_dp_zcdp_to_epsilon(1.0 / (2 * s * s), p->dp_delta);
        if (e < eps) eps = e;
    }
    recency_set(p,
                !(eps > 0)                        ? &ease
                : eps < PVG_DP_EASE_TEXT_ONLY_EPS ? &dp_text_only
                                                  : &dp_projected,
                present);
    p->recency_where_possible = 1;
}

/* Clears the recency terms of a model's record (they did not apply). */
void pvg_model_recency_clear(pvg_train_params *p)
{
    static const recency_terms none = {0, 0, 0, 0, 0, 0};
    recency_set(p, &none, 0);
}

pvg_status pvg_model_recency_get(const pvg_model *m, pvg_model_recency *out, pvg_error *err)
{
    if (!m || !out) return pvg_error_set(err, PVG_ERR_INVALID, "recency: NULL argument");
    memset(out, 0, sizeof *out);
    const pvg_train_params *p = &m->params;
    int hl = p->recency_halflife_days > 0, blend = p->recent_pop_days > 0 && p->recent_pop_beta > 0;
    if (m->type != PVG_MODEL_EASE || (!hl && !blend)) return PVG_OK;
    out->on = 1;
    out->present = p->recency_now;
    out->present_from_data = m->rec_present_data;
    out->halflife_days = p->recency_halflife_days;
    out->row_norm = p->recency_row_norm;
    out->recent_days = p->recent_pop_days;
    out->recent_beta = p->recent_pop_beta;
    out->recent_share = p->recent_pop_share;
    out->recent_unit = p->recent_pop_unit;
    return PVG_OK;
}

pvg_model_type pvg_model_type_of(const pvg_model *m)
{
    return m->type;
}
size_t pvg_model_n_items(const pvg_model *m)
{
    return (size_t)m->n_items;
}
size_t pvg_model_n_users(const pvg_model *m)
{
    return (size_t)m->n_users;
}
pvg_user_keying pvg_model_keying(const pvg_model *m)
{
    return m->keying;
}
const unsigned char *pvg_model_fingerprint(const pvg_model *m)
{
    return m->fingerprint;
}

void pvg_model_set_section(pvg_model *m, int sec, void *buf, uint64_t len)
{
    free(m->owned[sec]);
    m->owned[sec] = buf;
    m->sec[sec] = buf;
    m->sec_len[sec] = len;
}

void pvg_model_bind(pvg_model *m)
{
    m->user_keys = m->sec[PVG_SEC_USER_KEYS];
    m->user_order = m->sec[PVG_SEC_USER_ORDER];
    m->hist_indptr = m->sec[PVG_SEC_HIST_INDPTR];
    m->hist_items = m->sec[PVG_SEC_HIST_ITEMS];
    m->hist_w = m->sec[PVG_SEC_HIST_W];
    m->item_off = m->sec[PVG_SEC_ITEM_OFF];
    m->item_str = m->sec[PVG_SEC_ITEM_STR];
    m->item_order = m->sec[PVG_SEC_ITEM_ORDER];
    m->popularity = m->sec[PVG_SEC_POPULARITY];
    m->U = m->sec[PVG_SEC_USER_F];
    m->V = m->sec[PVG_SEC_ITEM_F];
    m->gram = m->sec[PVG_SEC_GRAM];
    m->ease_B = m->sec[PVG_SEC_EASE_B];
    m->knn_indptr = m->sec[PVG_SEC_KNN_INDPTR];
    m->knn_idx = m->sec[PVG_SEC_KNN_IDX];
    m->knn_sim = m->sec[PVG_SEC_KNN_SIM];
    m->V16 = m->sec[PVG_SEC_ITEM_F16];
}

void pvg_model_free(pvg_model *m)
{
    if (!m) return;
    for (int s = 0; s < PVG_SEC_COUNT; s++)
        free(m->owned[s]);
    if (m->map) {
        extern void pvg_model_unmap(void *p, size_t len);
        pvg_model_unmap(m->map, m->map_len);
    }
    pvg_serve_free(atomic_load(&m->serve));
    if (m->users_mem) sodium_free(m->users_mem); /* wipes the per-shopper sections */
    if (m->row_keys) sodium_free(m->row_keys);   /* wipes the row keys */
    if (m->dir_key) sodium_free(m->dir_key);
    free(m->row_ok);
    free(m->data_dir);
    free(m->path);
    sodium_memzero(m->salt, sizeof m->salt);
    free(m);
}

typedef struct key_idx {
    unsigned char key[16];
    uint32_t idx;
} key_idx;

static int key_idx_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

typedef struct str_idx {
    const char *s;
    uint32_t idx;
} str_idx;

static int str_idx_cmp(const void *a, const void *b)
{
    return strcmp(((const str_idx *)a)->s, ((const str_idx *)b)->s);
}

pvg_status pvg_model_new_common(const pvg_dataset *ds, const pvg_csr *R, const pvg_train_params *p,
                                pvg_model **out, pvg_error *err)
{
    *out = NULL;
    pvg_model *m = calloc(1, sizeof *m);
    if (!m) return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
    m->type = p->type;
    m->keying = ds->keying;
    memcpy(m->salt, ds->salt, 16);
    m->params = *p;
    m->params.progress = NULL;
    m->params.progress_ctx = NULL;
    m->params.dp_rng = NULL;
    m->params.dp_items = NULL; /* borrowed by the caller */
    m->params.dp_n_items = 0;
    if (ds->store) {
        /* trained from the store: each shopper's rows will be sealed under a
         * key derived from their data key (src/store/model_key.c) */
        size_t nu0 = R->n_rows;
        if (nu0 != ds->n_users) {
            free(m);
            return pvg_error_set(err, PVG_ERR_INTERNAL, "model: %zu matrix rows for %zu users", nu0,
                                 ds->n_users);
        }
        randombytes_buf(m->seal_id, sizeof m->seal_id);
        m->row_keys = sodium_malloc(32 * (nu0 ? nu0 : 1));
        m->row_ok = malloc(nu0 ? nu0 : 1);
        m->dir_key = sodium_malloc(32);
        const char *dd = pvg_store_dir(ds->store);
        m->data_dir = dd ? strdup(dd) : NULL;
        if (!m->row_keys || !m->row_ok || !m->dir_key || !m->data_dir) {
            pvg_model_free(m);
            return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
        }
        if (pvg_store_model_dir_key(ds->store, m->dir_key) != PVG_OK) {
            pvg_model_free(m);
            return pvg_error_set(err, PVG_ERR_STATE, "model: the store has no keys loaded");
        }
        pvg_status kst = pvg_store_model_row_keys(ds->store, m->seal_id, nu0, ds->user_keys, 16,
                                                  m->row_keys, m->row_ok, NULL, err);
        if (kst != PVG_OK) {
            pvg_model_free(m);
            return kst;
        }
    }
    size_t nu = R->n_rows, ni = R->n_cols, nnz = R->nnz;
    m->n_users = nu;
    m->n_items = ni;
    m->hist_nnz = nnz;
    /* users sorted by key */
    key_idx *ki = malloc((nu ? nu : 1) * sizeof *ki);
    unsigned char *keys = malloc((nu ? nu : 1) * 16);
    uint32_t *uorder = malloc((nu ? nu : 1) * sizeof *uorder);
    uint64_t *indptr = malloc((nu + 1) * sizeof *indptr);
    uint32_t *hitems = malloc((nnz ? nnz : 1) * sizeof *hitems);
    float *hw = malloc((nnz ? nnz : 1) * sizeof *hw);
    uint64_t *ioff = malloc((ni + 1) * sizeof *ioff);
    str_idx *si = malloc((ni ? ni : 1) * sizeof *si);
    uint32_t *iorder = malloc((ni ? ni : 1) * sizeof *iorder);
    float *pop = calloc(ni ? ni : 1, sizeof *pop);
    size_t slen = 0;
    for (size_t i = 0; i < ni; i++)
        slen += strlen(ds->item_ids[i]) + 1;
    char *str = malloc(slen ? slen : 1);
    if (!ki || !keys || !uorder || !indptr || !hitems || !hw || !ioff || !si || !iorder || !pop ||
        !str) {
        free(ki), free(keys), free(uorder), free(indptr), free(hitems), free(hw), free(ioff);
        free(si), free(iorder), free(pop), free(str);
        pvg_model_free(m);
        return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
    }
    for (size_t u = 0; u < nu; u++) {
        memcpy(ki[u].key, ds->user_keys + 16 * u, 16);
        ki[u].idx = (uint32_t)u;
    }
    qsort(ki, nu, sizeof *ki, key_idx_cmp);
    for (size_t u = 0; u < nu; u++) {
        memcpy(keys + 16 * u, ki[u].key, 16);
        uorder[u] = ki[u].idx;
    }
    free(ki);
    memcpy(indptr, R->indptr, (nu + 1) * sizeof *indptr);
    memcpy(hitems, R->indices, nnz * sizeof *hitems);
    memcpy(hw, R->data, nnz * sizeof *hw);
    for (size_t j = 0; j < nnz; j++)
        pop[R->indices[j]] += 1.0f;
    size_t o = 0;
    for (size_t i = 0; i < ni; i++) {
        size_t l = strlen(ds->item_ids[i]) + 1;
        ioff[i] = o;
        memcpy(str + o, ds->item_ids[i], l);
        si[i].s = str + o;
        si[i].idx = (uint32_t)i;
        o += l;
    }
    ioff[ni] = o;
    qsort(si, ni, sizeof *si, str_idx_cmp);
    for (size_t i = 0; i < ni; i++)
        iorder[i] = si[i].idx;
    free(si);
    m->item_str_len = slen;
    pvg_model_set_section(m, PVG_SEC_USER_KEYS, keys, 16 * nu);
    pvg_model_set_section(m, PVG_SEC_USER_ORDER, uorder, 4 * nu);
    pvg_model_set_section(m, PVG_SEC_HIST_INDPTR, indptr, 8 * (nu + 1));
    pvg_model_set_section(m, PVG_SEC_HIST_ITEMS, hitems, 4 * nnz);
    pvg_model_set_section(m, PVG_SEC_HIST_W, hw, 4 * nnz);
    pvg_model_set_section(m, PVG_SEC_ITEM_OFF, ioff, 8 * (ni + 1));
    pvg_model_set_section(m, PVG_SEC_ITEM_STR, str, slen);
    pvg_model_set_section(m, PVG_SEC_ITEM_ORDER, iorder, 4 * ni);
    pvg_model_set_section(m, PVG_SEC_POPULARITY, pop, 4 * ni);
    /* fingerprint of the training data: cells and item ids */
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    uint64_t shape[3] = {nu, ni, nnz};
    crypto_generichash_update(&hs, (const unsigned char *)shape, sizeof shape);
    crypto_generichash_update(&hs, (const unsigned char *)R->indptr, (nu + 1) * 8);
    crypto_generichash_update(&hs, (const unsigned char *)R->indices, nnz * 4);
    crypto_generichash_update(&hs, (const unsigned char *)R->data, nnz * 4);
    crypto_generichash_update(&hs, (const unsigned char *)str, slen);
    crypto_generichash_final(&hs, m->fingerprint, 32);
    pvg_model_bind(m);
    *out = m;
    return PVG_OK;
}

/* Builds the model from an already aggregated training matrix R (users x
 * items). Shared by pvg_model_train and the evaluation harness. */
pvg_status pvg_model_train_matrix(const pvg_dataset *ds, const pvg_csr *R,
                                  const pvg_train_params *p, pvg_model **out,
                                  pvg_train_stats *stats, pvg_error *err);
double pvg_ials_alpha0_of(const pvg_train_params *p, size_t n_users, size_t n_items, size_t nnz)
{
    if (p->alpha0 >= 0) return p->alpha0;
    /* alpha0 |U| |I| = alpha nnz: the unobserved pairs weigh alpha times the
     * observed ones in total, per average user and per average item alike,
     * whatever the catalogue's size (docs/models.md) */
    double cells = (double)n_users * (double)n_items;
    return cells > 0 ? p->alpha * (double)nnz / cells : 0;
}

pvg_status pvg_model_train_matrix(const pvg_dataset *ds, const pvg_csr *R,
                                  const pvg_train_params *p_in, pvg_model **out,
                                  pvg_train_stats *stats, pvg_error *err)
{
    *out = NULL;
    /* NaN is neither <= 0 nor > 0: without this it would train without DP
     * and skip the recency checks below */
    if (isnan(p_in->dp_epsilon))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp_epsilon must be 0 (no DP) or a finite number > 0, got NaN");
    if (p_in->dp_epsilon <= 0) {
        /* recency's parameters (docs/models.md "Recency"; DP: pvg_train_dp) */
        pvg_status sr = pvg_recency_check(p_in, err);
        if (sr != PVG_OK) return sr;
    }
    /* differential privacy: the DP trainer of the type (dp_train.c); the
     * data-derived iALS defaults would read the private degrees, so a DP
     * run takes fixed ones */
    if (p_in->dp_epsilon > 0) {
        pvg_train_params pd = *p_in;
        if (pd.type == PVG_MODEL_IALS) {
            if (pd.reg < 0) pd.reg = PVG_IALS_DP_REG;
            if (pd.alpha < 0) pd.alpha = PVG_IALS_DP_ALPHA;
        }
        return pvg_train_dp(ds, R, &pd, out, stats, err);
    }
    if (p_in->dp_epsilon < 0 || p_in->dp_noise_multiplier != 0 || p_in->dp_max_items != 0 ||
        p_in->dp_items)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp: a noise multiplier, contribution bound or item list needs "
                             "dp_epsilon > 0 (got %g)",
                             p_in->dp_epsilon);
    pvg_train_params pe = *p_in;
    const pvg_train_params *p = &pe;
    if (pe.type == PVG_MODEL_IALS) {
        if (pe.alpha0 < 0 && !(pe.alpha > 0) && !(pe.alpha < 0))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "ials: give alpha0 >= 0, or alpha > 0 (alpha0 derived from it)");
        if (!isnan(pe.reg)) pvg_ials_resolve_defaults(&pe, R);
        pe.alpha0 = pvg_ials_alpha0_of(&pe, R->n_rows, R->n_cols, R->nnz);
    }
    if (stats) memset(stats, 0, sizeof *stats);
    int threads = p->threads < 1 ? 1 : p->threads;
    if (R->nnz == 0) return pvg_error_set(err, PVG_ERR_INVALID, "no interactions to train on");
    switch (p->type) {
    case PVG_MODEL_IALS:
    case PVG_MODEL_BPR:
        if (p->factors < 1 || p->factors > 4096)
            return pvg_error_set(err, PVG_ERR_INVALID, "factors must be in 1..4096 (got %d)",
                                 p->factors);
        if (p->epochs < 1 || p->epochs > PVG_TRAIN_MAX_EPOCHS)
            return pvg_error_set(err, PVG_ERR_INVALID, "epochs must be in 1..%d (got %d)",
                                 PVG_TRAIN_MAX_EPOCHS, p->epochs);
        if (!(p->reg >= 0))
            return pvg_error_set(err, PVG_ERR_INVALID, "reg must be >= 0 (got %g)", p->reg);
        if (p->type == PVG_MODEL_IALS &&
            (!(p->alpha0 >= 0) || !(p->nu >= 0) || p->cg_steps < 0 || !(p->confidence >= 0)))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "ials: alpha0, nu, confidence and cg-steps must be >= 0");
        if (p->type == PVG_MODEL_BPR && !(p->lr > 0))
            return pvg_error_set(err, PVG_ERR_INVALID, "bpr: lr must be > 0 (got %g)", p->lr);
        break;
    case PVG_MODEL_ITEMKNN:
        if (p->neighbors < 1 || !(p->shrink >= 0))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "itemknn: neighbors must be >= 1 and shrink >= 0");
        break;
    case PVG_MODEL_EASE:
    case PVG_MODEL_POPULARITY:
        break;
    default:
        return pvg_error_set(err, PVG_ERR_INVALID, "unknown model type %d", (int)p->type);
    }
    double t0 = pvg_now_seconds();
    pvg_model *m;
    pvg_status st = pvg_model_new_common(ds, R, p, &m, err);
    if (st != PVG_OK) return st;
    pvg_csr C = {0};
    if (p->type != PVG_MODEL_POPULARITY && p->type != PVG_MODEL_BPR) {
        if (pvg_csr_transpose(R, &C) != PVG_OK) {
            pvg_model_free(m);
            return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
        }
    }
    size_t ni = R->n_cols, nu = R->n_rows;
    switch (p->type) {
    case PVG_MODEL_IALS:
    case PVG_MODEL_BPR: {
        float *U, *V;
        st = p->type == PVG_MODEL_IALS ? pvg_train_ials(R, &C, p, &U, &V, stats, err)
                                       : pvg_train_bpr(R, p, &U, &V, stats, err);
        if (st != PVG_OK) break;
        size_t F = (size_t)p->factors + (p->type == PVG_MODEL_BPR ? 1 : 0);
        m->factors = F;
        pvg_model_set_section(m, PVG_SEC_USER_F, U, 4 * nu * F);
        pvg_model_set_section(m, PVG_SEC_ITEM_F, V, 4 * ni * F);
        float *G = malloc(F * F * sizeof *G);
        if (!G) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
            break;
        }
        pvg_gramian(V, ni, F, G);
        pvg_model_set_section(m, PVG_SEC_GRAM, G, 4 * F * F);
        size_t n16 = (ni + 7) / 8 * 8 * F;
        uint16_t *V16 = malloc(n16 * sizeof *V16);
        if (!V16) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
            break;
        }
        pvg_f16_pack(V, ni, F, V16);
        pvg_model_set_section(m, PVG_SEC_ITEM_F16, V16, 2 * n16);
        break;
    }
    case PVG_MODEL_EASE: {
        pvg_ease_plan pl;
        pvg_ease_plan_of(R, PVG_EASE_AUTO, &pl);
        if (p->max_memory_mb > 0 && pl.bytes > p->max_memory_mb * 1048576.0) {
            st = pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                               "ease: the %s form over %zu users x %zu items needs about %.0f "
                               "MiB, above the limit of %.0f MiB (--max-memory)",
                               pl.form == PVG_EASE_DUAL ? "dual" : "primal", pl.users, pl.items,
                               pl.bytes / 1048576.0, p->max_memory_mb);
            break;
        }
        if (ni > PVG_EASE_MAX_ITEMS) {
            st = pvg_ease_fit(R, &C, ni, (float)p->ease_lambda, threads, NULL, err);
            break;
        }
        float *B = malloc(ni * ni * sizeof *B);
        if (!B) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory (%zu items)", ni);
            break;
        }
        int hl = p->recency_halflife_days > 0;
        int blend = p->recent_pop_days > 0 && p->recent_pop_beta > 0;
        if (hl && p->recency_where_possible && pl.form == PVG_EASE_DUAL) {
            /* the weighted Gram has the primal form only: where the plan
             * is the dual one (fewer shoppers than items, a large
             * catalogue), the default terms keep the blend alone */
            hl = 0;
            m->params.recency_halflife_days = 0;
            m->params.recency_row_norm = 0;
            if (!blend) pvg_model_recency_clear(&m->params);
        }
        int64_t *last = NULL;
        int64_t now = 0;
        if (hl || blend) {
            /* recency (docs/models.md "Recency"); the model records the
             * present it used */
            now = pvg_recency_now(ds, p);
            if (now < -PVG_RECENCY_MAX_NOW || now > PVG_RECENCY_MAX_NOW) {
                /* a present from the data is held to a given one's range:
                 * beyond it (an event dated far ahead) every other purchase
                 * would weigh 0 */
                free(B);
                st = pvg_error_set(
                    err, PVG_ERR_INVALID,
                    "ease: recency: the present, one second after the latest "
                    "event, must be Unix seconds within +-%lld like a given one: "
                    "give a present (recency_now, --present) or no recency terms (--no-recency)",
                    (long long)PVG_RECENCY_MAX_NOW);
                break;
            }
            /* a present read from the data (one second after the latest
             * event: one shopper's purchase time) is used, never recorded:
             * the header is plain text and outlives that shopper's
             * erasure; a present the caller gave is recorded */
            m->rec_present_data = p->recency_now == 0;
            m->params.recency_now = m->rec_present_data ? 0 : now;
            if (!(last = malloc((R->nnz ? R->nnz : 1) * sizeof *last))) {
                free(B);
                st = pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory");
                break;
            }
            st = pvg_recency_last(ds, R, now, last, err);
        }
        if (st == PVG_OK && hl) {
            float *rw = malloc((R->nnz ? R->nnz : 1) * sizeof *rw);
            if (!rw)
                st = pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory");
            else {
                pvg_recency_row_weights(R, last, now, p->recency_halflife_days, p->recency_row_norm,
                                        rw);
                st = pvg_ease_fit_weighted(R, rw, ni, (float)p->ease_lambda, threads, B, err);
                free(rw);
            }
        } else if (st == PVG_OK)
            st = pvg_ease_fit(R, &C, ni, (float)p->ease_lambda, threads, B, err);
        if (st == PVG_OK && blend) {
            double *cnt = malloc((ni ? ni : 1) * sizeof *cnt);
            float *r = malloc((ni ? ni : 1) * sizeof *r);
            if (!cnt || !r)
                st = pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory");
            else {
                pvg_recent_buyers(R, last, now, p->recent_pop_days, p->recent_pop_unit, cnt);
                for (size_t j = 0; j < ni; j++)
                    r[j] = (float)cnt[j];
                pvg_recency_blend(B, ni, r, p->recent_pop_beta);
            }
            free(cnt), free(r);
        }
        free(last);
        if (st != PVG_OK) {
            free(B);
            break;
        }
        pvg_model_set_section(m, PVG_SEC_EASE_B, B, 4 * ni * ni);
        break;
    }
    case PVG_MODEL_ITEMKNN: {
        pvg_csr S;
        st = pvg_knn_build(R, &C, p->neighbors, (float)p->shrink, threads, &S);
        if (st != PVG_OK) {
            pvg_error_set(err, st, "itemknn: out of memory");
            break;
        }
        m->knn_nnz = S.nnz;
        pvg_model_set_section(m, PVG_SEC_KNN_INDPTR, S.indptr, 8 * (ni + 1));
        pvg_model_set_section(m, PVG_SEC_KNN_IDX, S.indices, 4 * S.nnz);
        pvg_model_set_section(m, PVG_SEC_KNN_SIM, S.data, 4 * S.nnz);
        break;
    }
    default:
        break;
    }
    pvg_csr_free(&C);
    if (st != PVG_OK) {
        pvg_model_free(m);
        return st;
    }
    pvg_model_bind(m);
    if (stats) stats->train_seconds = pvg_now_seconds() - t0;
    *out = m;
    return PVG_OK;
}

pvg_status pvg_model_train(const pvg_dataset *ds, const pvg_train_params *p, pvg_model **out,
                           pvg_train_stats *stats, pvg_error *err)
{
    *out = NULL;
    pvg_csr R;
    if (pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item, ds->ev_w, NULL,
                      &R) != PVG_OK)
        return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
    pvg_status st = pvg_model_train_matrix(ds, &R, p, out, stats, err);
    pvg_csr_free(&R);
    return st;
}

pvg_status pvg_model_memory_estimate(const pvg_dataset *ds, const pvg_train_params *p,
                                     pvg_train_estimate *out, pvg_error *err)
{
    memset(out, 0, sizeof *out);
    if (p->type != PVG_MODEL_EASE)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "memory estimate: only for ease (its dense item-item matrix)");
    pvg_csr R;
    if (pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item, ds->ev_w, NULL,
                      &R) != PVG_OK)
        return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory");
    pvg_ease_plan pl;
    pvg_ease_plan_of(&R, PVG_EASE_AUTO, &pl);
    pvg_csr_free(&R);
    out->bytes = pl.bytes;
    out->form = pl.form == PVG_EASE_DUAL ? "dual" : "primal";
    out->users = pl.users;
    out->items = pl.items;
    return PVG_OK;
}

/* ---- serving ------------------------------------------------------------- */

int64_t pvg_model_item_index(const pvg_model *m, const char *ext_item)
{
    size_t lo = 0, hi = m->n_items;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t i = m->item_order[mid];
        int c = strcmp(m->item_str + m->item_off[i], ext_item);
        if (c == 0) return i;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const char *pvg_model_item_id(const pvg_model *m, int64_t i)
{
    if (i < 0 || (uint64_t)i >= m->n_items) return NULL;
    return m->item_str + m->item_off[i];
}

static int64_t find_user(const pvg_model *m, const unsigned char key[16])
{
    size_t lo = 0, hi = m->n_users;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(m->user_keys + 16 * mid, key, 16);
        if (c == 0) return m->user_order[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int64_t pvg_model_find_user(const pvg_model *m, const unsigned char key[16])
{
    return m->users_locked ? -1 : find_user(m, key);
}

pvg_status pvg_model_user_key(const pvg_model *m, pvg_store *store_or_null, const char *ext_user,
                              unsigned char key[16], pvg_error *err)
{
    if (!ext_user) return pvg_error_set(err, PVG_ERR_INVALID, "no user id given");
    if (m->keying == PVG_KEY_STORE_PSEUDONYM) {
        if (!store_or_null)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "this model was trained from the store: the store is needed to "
                                 "compute the user's pseudonym");
        pvg_store_pseudonym(store_or_null, ext_user, key);
        return PVG_OK;
    }
    crypto_generichash(key, 16, (const unsigned char *)ext_user, strlen(ext_user), m->salt, 16);
    return PVG_OK;
}

/* BPR fold-in: SGD on the new user's factors only (items fixed), the
 * same objective as training, deterministic (seeded by the history). */
static void bpr_fold_in(const pvg_model *m, const uint32_t *items, size_t n, float *u)
{
    size_t F = m->factors, f = F - 1, ni = m->n_items;
    memset(u, 0, F * sizeof *u);
    u[f] = 1.0f;
    if (n == 0 || n >= ni) return;
    unsigned char *in = calloc((ni + 7) / 8, 1);
    if (!in) return;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t a = 0; a < n; a++) {
        in[items[a] / 8] |= (unsigned char)(1u << (items[a] % 8));
        x = (x ^ items[a]) * 0x100000001b3ULL;
    }
    float lr = (float)m->params.lr, reg = (float)m->params.reg;
    size_t steps = 200 * n < 50000 ? 200 * n : 50000;
    for (size_t s = 0; s < steps; s++) {
        uint32_t i = items[s % n], j;
        int tries = 0;
        do {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            j = (uint32_t)(x % ni);
        } while ((in[j / 8] >> (j % 8) & 1) && ++tries < 32);
        if (tries >= 32) continue;
        const float *hi = m->V + (size_t)i * F, *hj = m->V + (size_t)j * F;
        float d = 0;
        for (size_t k = 0; k < F; k++)
            d += u[k] * (hi[k] - hj[k]);
        float sg = 1.0f / (1.0f + expf(d));
        for (size_t k = 0; k < f; k++)
            u[k] += lr * (sg * (hi[k] - hj[k]) - reg * u[k]);
    }
    free(in);
}

void pvg_model_fold_in(const pvg_model *m, const uint32_t *items, const float *w, size_t n,
                       float *u, float *scratch)
{
    if (m->type == PVG_MODEL_BPR) {
        bpr_fold_in(m, items, n, u);
        return;
    }
    size_t F = m->factors;
    float *ones = NULL;
    if (!w) {
        ones = malloc((n ? n : 1) * sizeof *ones);
        if (!ones) {
            memset(u, 0, F * sizeof *u);
            return;
        }
        for (size_t i = 0; i < n; i++)
            ones[i] = 1.0f;
    }
    uint64_t ptr[2] = {0, n};
    pvg_csr h = {1, m->n_items, n, ptr, (uint32_t *)items, (float *)(w ? w : ones)};
    double alpha0 = m->type == PVG_MODEL_IALS ? m->params.alpha0 : 0.1;
    double lambda = m->type == PVG_MODEL_IALS ? m->params.reg : 0.01;
    double nu = m->type == PVG_MODEL_IALS ? m->params.nu : 1.0;
    float conf = m->type == PVG_MODEL_IALS ? (float)m->params.confidence : 0.0f;
    float reg = (float)(lambda * pow((double)n + alpha0 * (double)m->n_items, nu));
    if (pvg_ials_solve_row_exact(&h, 0, m->V, m->gram, F, (float)alpha0, reg, conf, u))
        memset(u, 0, F * sizeof *u);
    if (m->type == PVG_MODEL_BPR) u[F - 1] = 1.0f;
    free(ones);
    (void)scratch;
}

void pvg_model_score(const pvg_model *m, const float *u, const uint32_t *items, const float *w,
                     size_t n, float *scores, float *scratch)
{
    size_t ni = m->n_items;
    switch (m->type) {
    case PVG_MODEL_IALS:
    case PVG_MODEL_BPR:
        if (!u) {
            pvg_model_fold_in(m, items, w, n, scratch, NULL);
            u = scratch;
        }
        /* serving scores come from the half-precision copy (half the memory
         * traffic); fold-in and similar() use the float factors */
        if (m->V16)
            pvg_matvec_f16(m->V16, ni, m->factors, u, scores);
        else
            pvg_matvec(m->V, ni, m->factors, u, scores);
        break;
    case PVG_MODEL_EASE:
        memset(scores, 0, ni * sizeof *scores);
        for (size_t a = 0; a < n; a++) {
            const float *row = m->ease_B + (size_t)items[a] * ni;
            for (size_t j = 0; j < ni; j++)
                scores[j] += row[j];
        }
        break;
    case PVG_MODEL_ITEMKNN:
        memset(scores, 0, ni * sizeof *scores);
        for (size_t a = 0; a < n; a++)
            for (uint64_t q = m->knn_indptr[items[a]]; q < m->knn_indptr[items[a] + 1]; q++)
                scores[m->knn_idx[q]] += m->knn_sim[q];
        break;
    default:
        memcpy(scores, m->popularity, ni * sizeof *scores);
        break;
    }
}

static void fill_out(const pvg_model *m, const int64_t *idx, const float *sc, size_t n,
                     pvg_scored_item *out)
{
    for (size_t i = 0; i < n; i++) {
        out[i].item_index = idx[i];
        out[i].item = pvg_model_item_id(m, idx[i]);
        out[i].score = sc[i];
    }
}

/* scores -> exclusion -> top-k -> out; buffers from the caller */
static size_t select_top(const pvg_model *m, float *scores, const uint32_t *excl, size_t n_excl,
                         size_t k, int64_t *idx, float *sc, pvg_scored_item *out)
{
    for (size_t a = 0; a < n_excl; a++)
        scores[excl[a]] = -INFINITY;
    size_t got = pvg_topk(scores, m->n_items, k, idx, sc);
    fill_out(m, idx, sc, got, out);
    return got;
}

static pvg_status recommend_one(const pvg_model *m, int64_t u, size_t k, int include_seen,
                                pvg_scored_item *out, size_t *n_out, float *scores, int64_t *idx,
                                float *sc, float *scratch)
{
    const uint32_t *items = m->hist_items + m->hist_indptr[u];
    size_t n = (size_t)(m->hist_indptr[u + 1] - m->hist_indptr[u]);
    const float *w = m->hist_w + m->hist_indptr[u];
    pvg_serve *fast = n && m->U && !m->no_fast_serve ? pvg_model_serve(m) : NULL;
    if (fast) {
        /* factor models: int8 scores of every item, the best candidates
         * re-ranked with the float factors (serve_batch.c), combined with
         * other threads' requests of the same moment */
        pvg_serve_job j;
        memset(&j, 0, sizeof j);
        j.u = m->U + (size_t)u * m->factors;
        j.excl = include_seen ? NULL : items;
        j.n_excl = include_seen ? 0 : n;
        j.k = k;
        j.idx = idx;
        j.sc = sc;
        if (pvg_serve_run(fast, &j) == 0) {
            fill_out(m, idx, sc, j.n_out, out);
            *n_out = j.n_out;
            return PVG_OK;
        }
    }
    if (n == 0 || m->type == PVG_MODEL_POPULARITY) {
        memcpy(scores, m->popularity, m->n_items * sizeof *scores);
    } else {
        const float *uf = m->U ? m->U + (size_t)u * m->factors : NULL;
        pvg_model_score(m, uf, items, w, n, scores, scratch);
    }
    *n_out = select_top(m, scores, items, include_seen ? 0 : n, k, idx, sc, out);
    return PVG_OK;
}

static pvg_status users_locked_error(pvg_error *err)
{
    return pvg_error_set(err, PVG_ERR_STATE,
                         "the per-shopper sections of this model are sealed: open the model "
                         "with its store (pvg_model_load_store or pvg_model_unseal)");
}

typedef struct serve_buf {
    float *scores, *sc, *scratch;
    int64_t *idx;
} serve_buf;

static int serve_buf_init(serve_buf *b, const pvg_model *m, size_t k)
{
    size_t F = m->factors ? m->factors : 1;
    b->scores = malloc((m->n_items ? m->n_items : 1) * sizeof(float));
    b->sc = malloc((k ? k : 1) * sizeof(float));
    b->idx = malloc((k ? k : 1) * sizeof(int64_t));
    b->scratch = malloc((F * F + 2 * F) * sizeof(float));
    if (b->scores && b->sc && b->idx && b->scratch) return 0;
    free(b->scores), free(b->sc), free(b->idx), free(b->scratch);
    return -1;
}

static void serve_buf_free(serve_buf *b)
{
    free(b->scores), free(b->sc), free(b->idx), free(b->scratch);
}

pvg_status pvg_model_recommend(const pvg_model *m, const unsigned char user_key[16], size_t k,
                               int include_seen, pvg_scored_item *out, size_t *n_out,
                               pvg_error *err)
{
    *n_out = 0;
    if (m->users_locked) return users_locked_error(err);
    int64_t u = find_user(m, user_key);
    if (u < 0) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "the model does not know this user");
    if (k == 0) return PVG_OK;
    serve_buf b;
    if (serve_buf_init(&b, m, k)) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    pvg_status st =
        recommend_one(m, u, k, include_seen, out, n_out, b.scores, b.idx, b.sc, b.scratch);
    serve_buf_free(&b);
    return st;
}

typedef struct batch_ctx {
    const pvg_model *m;
    const unsigned char *keys;
    size_t k;
    int include_seen;
    pvg_scored_item *out;
    size_t *n_out;
    serve_buf *bufs;
    float **group_scores; /* EASE: EASE_GROUP x n_items per thread */
} batch_ctx;

static void batch_range(void *vctx, int tid, size_t b, size_t e)
{
    batch_ctx *c = vctx;
    serve_buf *sb = &c->bufs[tid];
    for (size_t i = b; i < e; i++) {
        c->n_out[i] = 0;
        int64_t u = find_user(c->m, c->keys + 16 * i);
        if (u < 0) continue;
        recommend_one(c->m, u, c->k, c->include_seen, c->out + i * c->k, &c->n_out[i], sb->scores,
                      sb->idx, sb->sc, sb->scratch);
    }
}

/* EASE over many users: the scores of a group of EASE_GROUP users are
 * accumulated one column tile of B at a time, so the rows of B a group
 * touches stay in cache across its users (one user at a time streams whole
 * rows of B from memory: 165 rows x 14.8 KB per user on a 3,700-item
 * catalogue). Rows are added in history order, as pvg_model_score does, so
 * the scores are the same bit for bit. */
#define EASE_GROUP 32
#define EASE_TILE 512

static void batch_range_ease(void *vctx, int tid, size_t b, size_t e)
{
    batch_ctx *c = vctx;
    const pvg_model *m = c->m;
    size_t ni = m->n_items;
    serve_buf *sb = &c->bufs[tid];
    float *acc = c->group_scores[tid];
    for (size_t g0 = b; g0 < e; g0 += EASE_GROUP) {
        size_t ng = e - g0 < EASE_GROUP ? e - g0 : EASE_GROUP;
        int64_t us[EASE_GROUP];
        for (size_t q = 0; q < ng; q++) {
            c->n_out[g0 + q] = 0;
            us[q] = find_user(m, c->keys + 16 * (g0 + q));
            if (us[q] >= 0) memset(acc + q * ni, 0, ni * sizeof *acc);
        }
        for (size_t j0 = 0; j0 < ni; j0 += EASE_TILE) {
            size_t t = ni - j0 < EASE_TILE ? ni - j0 : EASE_TILE;
            for (size_t q = 0; q < ng; q++) {
                if (us[q] < 0) continue;
                uint64_t h0 = m->hist_indptr[us[q]], h1 = m->hist_indptr[us[q] + 1];
                pvg_ease_tile_add(acc + q * ni + j0, m->ease_B, ni, m->hist_items + h0,
                                  (size_t)(h1 - h0), j0, t);
            }
        }
        for (size_t q = 0; q < ng; q++) {
            if (us[q] < 0) continue;
            const uint32_t *items = m->hist_items + m->hist_indptr[us[q]];
            size_t n = (size_t)(m->hist_indptr[us[q] + 1] - m->hist_indptr[us[q]]);
            float *scores = acc + q * ni;
            if (n == 0) memcpy(scores, m->popularity, ni * sizeof *scores);
            c->n_out[g0 + q] = select_top(m, scores, items, c->include_seen ? 0 : n, c->k, sb->idx,
                                          sb->sc, c->out + (g0 + q) * c->k);
        }
    }
}

pvg_status pvg_model_recommend_batch(const pvg_model *m, const unsigned char *user_keys, size_t n,
                                     size_t k, int include_seen, int threads, pvg_scored_item *out,
                                     size_t *n_out, pvg_error *err)
{
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (m->users_locked) {
        for (size_t i = 0; i < n; i++)
            n_out[i] = 0;
        return users_locked_error(err);
    }
    if (k == 0) {
        for (size_t i = 0; i < n; i++)
            n_out[i] = 0;
        return PVG_OK;
    }
    serve_buf bufs[64];
    for (int t = 0; t < threads; t++)
        if (serve_buf_init(&bufs[t], m, k)) {
            for (int q = 0; q < t; q++)
                serve_buf_free(&bufs[q]);
            return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        }
    float *group[64] = {0};
    int ease = m->type == PVG_MODEL_EASE && n > 1;
    for (int t = 0; ease && t < threads; t++)
        if (!(group[t] = malloc(EASE_GROUP * m->n_items * sizeof(float)))) {
            for (int q = 0; q < threads; q++) {
                free(group[q]);
                serve_buf_free(&bufs[q]);
            }
            return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        }
    batch_ctx c = {m, user_keys, k, include_seen, out, n_out, bufs, group};
    if (ease)
        pvg_parallel_for(threads, n, EASE_GROUP, batch_range_ease, &c);
    else
        pvg_parallel_for(threads, n, 16, batch_range, &c);
    for (int t = 0; t < threads; t++) {
        free(group[t]);
        serve_buf_free(&bufs[t]);
    }
    return PVG_OK;
}

pvg_status pvg_model_recommend_many(const pvg_model *m, const unsigned char *user_keys, size_t n,
                                    size_t k, int include_seen, pvg_scored_item *out, size_t *n_out,
                                    pvg_status *sts, pvg_error *err)
{
    for (size_t i = 0; i < n; i++) {
        n_out[i] = 0;
        sts[i] = PVG_ERR_NOT_FOUND;
    }
    if (m->users_locked) {
        for (size_t i = 0; i < n; i++)
            sts[i] = PVG_ERR_STATE;
        return users_locked_error(err);
    }
    if (n == 0) return PVG_OK;
    if (k == 0) {
        for (size_t i = 0; i < n; i++)
            sts[i] = find_user(m, user_keys + 16 * i) < 0 ? PVG_ERR_NOT_FOUND : PVG_OK;
        return PVG_OK;
    }
    pvg_serve *fast = m->U && !m->no_fast_serve ? pvg_model_serve(m) : NULL;
    pvg_serve_job *jobs = calloc(n, sizeof *jobs);
    pvg_serve_job **jp = malloc(n * sizeof *jp);
    int64_t *idx = malloc(n * k * sizeof *idx), *us = malloc(n * sizeof *us);
    float *sc = malloc(n * k * sizeof *sc);
    serve_buf b;
    int have_b = 0;
    pvg_status st = PVG_OK;
    if (!jobs || !jp || !idx || !us || !sc) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory for %zu shoppers", n);
        for (size_t i = 0; i < n; i++)
            sts[i] = PVG_ERR_NOMEM;
        goto done;
    }
    /* the fast path's jobs, submitted together: one batch (or a few) */
    size_t nj = 0;
    for (size_t i = 0; i < n; i++) {
        us[i] = find_user(m, user_keys + 16 * i);
        if (us[i] < 0) continue;
        sts[i] = PVG_OK;
        size_t nh = (size_t)(m->hist_indptr[us[i] + 1] - m->hist_indptr[us[i]]);
        if (!fast || !nh) continue; /* the plain way, below */
        pvg_serve_job *j = &jobs[i];
        j->u = m->U + (size_t)us[i] * m->factors;
        j->excl = include_seen ? NULL : m->hist_items + m->hist_indptr[us[i]];
        j->n_excl = include_seen ? 0 : nh;
        j->k = k;
        j->idx = idx + i * k;
        j->sc = sc + i * k;
        jp[nj++] = j;
    }
    if (nj) (void)pvg_serve_run_many(fast, jp, nj);
    for (size_t i = 0; i < n; i++) {
        if (us[i] < 0) continue;
        pvg_serve_job *j = &jobs[i];
        if (j->u && j->done && !j->failed) {
            fill_out(m, j->idx, j->sc, j->n_out, out + i * k);
            n_out[i] = j->n_out;
            continue;
        }
        /* no fast path for this shopper (or its batch failed): alone */
        if (!have_b) {
            if (serve_buf_init(&b, m, k)) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                for (size_t q = i; q < n; q++)
                    if (us[q] >= 0 && !(jobs[q].u && jobs[q].done && !jobs[q].failed))
                        sts[q] = PVG_ERR_NOMEM;
                goto done;
            }
            have_b = 1;
        }
        sts[i] = recommend_one(m, us[i], k, include_seen, out + i * k, &n_out[i], b.scores, b.idx,
                               b.sc, b.scratch);
    }
done:
    if (have_b) serve_buf_free(&b);
    free(jobs);
    free(jp);
    free(idx);
    free(us);
    free(sc);
    return st;
}

pvg_status pvg_model_recommend_history(const pvg_model *m, const int64_t *items,
                                       const float *weights, size_t n, size_t k,
                                       pvg_scored_item *out, size_t *n_out, pvg_error *err)
{
    *n_out = 0;
    uint32_t *it = malloc((n ? n : 1) * sizeof *it);
    if (!it) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    for (size_t a = 0; a < n; a++) {
        if (items[a] < 0 || (uint64_t)items[a] >= m->n_items) {
            free(it);
            return pvg_error_set(err, PVG_ERR_INVALID, "history item %zu: index %lld out of range",
                                 a, (long long)items[a]);
        }
        it[a] = (uint32_t)items[a];
    }
    serve_buf b;
    if (serve_buf_init(&b, m, k)) {
        free(it);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    if (n == 0)
        memcpy(b.scores, m->popularity, m->n_items * sizeof(float));
    else
        pvg_model_score(m, NULL, it, weights, n, b.scores, b.scratch);
    *n_out = select_top(m, b.scores, it, n, k, b.idx, b.sc, out);
    serve_buf_free(&b);
    free(it);
    return PVG_OK;
}

pvg_status pvg_model_similar(const pvg_model *m, const char *ext_item, size_t k,
                             pvg_scored_item *out, size_t *n_out, pvg_error *err)
{
    *n_out = 0;
    int64_t i = pvg_model_item_index(m, ext_item);
    if (i < 0) return pvg_error_set(err, PVG_ERR_NOT_FOUND, "unknown item '%s'", ext_item);
    if (m->type == PVG_MODEL_POPULARITY)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "a popularity model keeps no item-item similarity");
    serve_buf b;
    if (serve_buf_init(&b, m, k)) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    size_t ni = m->n_items;
    if (m->type == PVG_MODEL_IALS || m->type == PVG_MODEL_BPR) {
        size_t F = m->factors, Fd = m->type == PVG_MODEL_BPR ? F - 1 : F;
        const float *vi = m->V + (size_t)i * F;
        double ni2 = 0;
        for (size_t q = 0; q < Fd; q++)
            ni2 += (double)vi[q] * vi[q];
        for (size_t j = 0; j < ni; j++) {
            const float *vj = m->V + j * F;
            double d = 0, nj2 = 0;
            for (size_t q = 0; q < Fd; q++) {
                d += (double)vi[q] * vj[q];
                nj2 += (double)vj[q] * vj[q];
            }
            b.scores[j] = (ni2 > 0 && nj2 > 0) ? (float)(d / sqrt(ni2 * nj2)) : 0.0f;
        }
    } else if (m->type == PVG_MODEL_EASE) {
        for (size_t j = 0; j < ni; j++)
            b.scores[j] = m->ease_B[(size_t)i * ni + j];
    } else {
        for (size_t j = 0; j < ni; j++)
            b.scores[j] = -INFINITY;
        for (uint64_t q = m->knn_indptr[i]; q < m->knn_indptr[i + 1]; q++)
            b.scores[m->knn_idx[q]] = m->knn_sim[q];
    }
    uint32_t self = (uint32_t)i;
    *n_out = select_top(m, b.scores, &self, 1, k, b.idx, b.sc, out);
    serve_buf_free(&b);
    return PVG_OK;
}

pvg_status pvg_model_popular(const pvg_model *m, size_t k, pvg_scored_item *out, size_t *n_out,
                             pvg_error *err)
{
    *n_out = 0;
    serve_buf b;
    if (serve_buf_init(&b, m, k)) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    memcpy(b.scores, m->popularity, m->n_items * sizeof(float));
    *n_out = select_top(m, b.scores, NULL, 0, k, b.idx, b.sc, out);
    serve_buf_free(&b);
    return PVG_OK;
}
