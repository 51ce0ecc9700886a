/*
 * fedcf.c - federated iALS (docs/federated.md): the server's model and
 * step, the broadcast and its strict parser, the client's closed-form user
 * solve and item update, on-device recommendations, and the in-process
 * trainer of tests and benchmarks.
 *
 * Loss (as src/model/factor.c with nu = 1 and c_uj = 1 + alpha log1p(w)):
 *   sum_{(u,j) obs} c_uj (x_u.v_j - 1)^2 + alpha0 sum_{u,j} (x_u.v_j)^2
 *   + reg sum_u (|I_u| + alpha0 |I|) |x_u|^2 + reg sum_j (|U_j| + alpha0 |U|) |v_j|^2
 * Each round the clients solve x_u exactly; the server takes one
 * preconditioned (quasi-Newton) step on every v_j from the summed
 * sufficient statistics (fl_internal.h lists the update vector).
 */
#include "fl/fl_internal.h"
#include "model/model_internal.h"
#include "search/search_internal.h"

#include <lapacke.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define ADAM_B1 0.9
#define ADAM_B2 0.99
#define ADAM_TAU 1e-3

struct pvg_fl_model {
    pvg_fl_config cfg; /* granularity resolved */
    fl_code code;
    uint32_t n_items, k, round;
    uint32_t solves; /* sums applied (average_solves: the running mean's count) */
    float *V;        /* n_items x k */
    double *m1, *m2; /* FedAdam moments, n_items x k */
    /* the public item prior (pvg_fl_model_set_item_prior): S~ in CSR, each
       row of the caller's similarity divided by max(1, its sum), diagonal
       dropped; pr_ptr NULL: none */
    uint64_t *pr_ptr;
    uint32_t *pr_idx;
    float *pr_val;
    double pr_weight, pr_count_half;
};

void pvg_fl_config_default(pvg_fl_config *cfg)
{
    *cfg = (pvg_fl_config){.factors = 32,
                           .reg = 0.1,
                           .alpha = 0,
                           .alpha0 = 0.1,
                           .clip = 1e3,
                           .optimizer = PVG_FL_FEDAVG,
                           .server_lr = 1.0,
                           .dp = PVG_FL_DP_NONE,
                           .noise_multiplier = 0,
                           .expected_cohort = 100,
                           .bits = 32,
                           .update = PVG_FL_UPDATE_GRADIENT,
                           .noise_ridge = 0};
}

size_t pvg_fl_update_dim(const pvg_fl_config *cfg, uint32_t n_items)
{
    fl_code c;
    if (!cfg || fl_code_of(cfg, n_items, &c, NULL) != PVG_OK) return 0;
    return c.d;
}

pvg_status pvg_fl_model_new(const pvg_fl_config *cfg, uint32_t n_items, pvg_rng *rng,
                            pvg_fl_model **out, pvg_error *err)
{
    *out = NULL;
    if (!rng) return pvg_error_set(err, PVG_ERR_INVALID, "fl model: rng is NULL");
    fl_code code;
    pvg_status st = fl_code_of(cfg, n_items, &code, err);
    if (st != PVG_OK) return st;
    pvg_fl_model *m = calloc(1, sizeof *m);
    size_t nk = (size_t)n_items * cfg->factors;
    if (m) m->V = malloc(nk * sizeof *m->V);
    if (m && cfg->optimizer == PVG_FL_FEDADAM) {
        m->m1 = calloc(nk, sizeof *m->m1);
        m->m2 = calloc(nk, sizeof *m->m2);
    }
    if (!m || !m->V || (cfg->optimizer == PVG_FL_FEDADAM && (!m->m1 || !m->m2))) {
        pvg_fl_model_free(m);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl model: out of memory");
    }
    m->cfg = *cfg;
    m->cfg.granularity = code.gamma;
    m->code = code;
    m->n_items = n_items;
    m->k = cfg->factors;
    double sd = 0.1 / sqrt((double)cfg->factors);
    for (size_t i = 0; i < nk; i++)
        m->V[i] = (float)(sd * pvg_rng_normal(rng));
    *out = m;
    return PVG_OK;
}

void pvg_fl_model_free(pvg_fl_model *m)
{
    if (!m) return;
    free(m->V);
    free(m->m1);
    free(m->m2);
    free(m->pr_ptr);
    free(m->pr_idx);
    free(m->pr_val);
    free(m);
}

pvg_status pvg_fl_model_set_item_prior(pvg_fl_model *m, const pvg_fl_item_prior *S, double weight,
                                       double count_half, pvg_error *err)
{
    if (!m) return pvg_error_set(err, PVG_ERR_INVALID, "fl item prior: model is NULL");
    if (!S) {
        free(m->pr_ptr);
        free(m->pr_idx);
        free(m->pr_val);
        m->pr_ptr = NULL;
        m->pr_idx = NULL;
        m->pr_val = NULL;
        m->pr_weight = 0;
        m->pr_count_half = 0;
        return PVG_OK;
    }
    if (S->n_items != m->n_items)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "n_items", 0, 0, -1,
                                "fl item prior: a similarity over %u items, the model has %u",
                                S->n_items, m->n_items);
    if (!(weight >= 0) || !(weight <= 1))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "weight", 0, 0, -1,
                                "fl item prior: weight %g, expected 0..1", weight);
    if (!(count_half >= 0) || !(count_half <= 1e9))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "count_half", 0, 0, -1,
                                "fl item prior: count_half %g, expected 0..1e9", count_half);
    size_t n = S->n_items;
    if (!S->row_ptr || S->row_ptr[0] != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "row_ptr", 0, 0, 0,
                                "fl item prior: row_ptr missing or row_ptr[0] not 0");
    for (size_t i = 0; i < n; i++)
        if (S->row_ptr[i + 1] < S->row_ptr[i])
            return pvg_error_set_at(err, PVG_ERR_INVALID, "row_ptr", 0, 0, (long long)(i + 1),
                                    "fl item prior: row_ptr[%zu] = %llu below row_ptr[%zu] = %llu, "
                                    "expected non-decreasing",
                                    i + 1, (unsigned long long)S->row_ptr[i + 1], i,
                                    (unsigned long long)S->row_ptr[i]);
    size_t total = S->row_ptr[n];
    if (total && (!S->col || !S->val))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl item prior: %zu entries without col/val",
                             total);
    uint32_t *mark = malloc(n * sizeof *mark); /* mark[j] = i + 1: j seen in row i */
    if (!mark) return pvg_error_set(err, PVG_ERR_NOMEM, "fl item prior: out of memory");
    memset(mark, 0, n * sizeof *mark);
    size_t nnz = 0;
    for (size_t i = 0; i < n; i++)
        for (uint64_t q = S->row_ptr[i]; q < S->row_ptr[i + 1]; q++) {
            uint32_t j = S->col[q];
            float s = S->val[q];
            if (j >= n || mark[j] == i + 1) {
                free(mark);
                return pvg_error_set_at(
                    err, PVG_ERR_INVALID, "col", 0, 0, (long long)q,
                    j >= n ? "fl item prior: row %zu's column %u, expected below %zu"
                           : "fl item prior: row %zu has column %u twice, expected once",
                    i, j, n);
            }
            mark[j] = (uint32_t)(i + 1);
            if (!(s >= 0) || !isfinite(s)) {
                free(mark);
                return pvg_error_set_at(
                    err, PVG_ERR_INVALID, "val", 0, 0, (long long)q,
                    "fl item prior: similarity (%zu,%u) is %g, expected a finite value >= 0", i, j,
                    (double)s);
            }
            nnz += s > 0 && j != i;
        }
    free(mark);
    uint64_t *ptr = malloc((n + 1) * sizeof *ptr);
    uint32_t *idx = malloc((nnz ? nnz : 1) * sizeof *idx);
    float *val = malloc((nnz ? nnz : 1) * sizeof *val);
    if (!ptr || !idx || !val) {
        free(ptr);
        free(idx);
        free(val);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl item prior: out of memory (%zu pairs)", nnz);
    }
    size_t q = 0;
    ptr[0] = 0;
    for (size_t i = 0; i < n; i++) {
        double rs = 0;
        for (uint64_t p = S->row_ptr[i]; p < S->row_ptr[i + 1]; p++)
            if (S->col[p] != i) rs += S->val[p];
        double f = 1.0 / (rs > 1 ? rs : 1);
        for (uint64_t p = S->row_ptr[i]; p < S->row_ptr[i + 1]; p++)
            if (S->col[p] != i && S->val[p] > 0) {
                idx[q] = S->col[p];
                val[q++] = (float)(f * S->val[p]);
            }
        ptr[i + 1] = q;
    }
    free(m->pr_ptr);
    free(m->pr_idx);
    free(m->pr_val);
    m->pr_ptr = ptr;
    m->pr_idx = idx;
    m->pr_val = val;
    m->pr_weight = weight;
    m->pr_count_half = count_half;
    return PVG_OK;
}

void pvg_fl_item_prior_free(pvg_fl_item_prior *p)
{
    if (!p) return;
    free(p->row_ptr);
    free(p->col);
    free(p->val);
    *p = (pvg_fl_item_prior){0};
}

/* pvg_fl_item_prior_from_titles's row sink: each row's top_l into the CSR */
typedef struct prior_build {
    pvg_fl_item_prior *p;
    uint32_t top_l;
    uint32_t *sel; /* scratch: the row's candidates */
    const float *row;
} prior_build;

static int prior_cmp_col(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* 1 when column a ranks before column b: larger value, then lower index */
static int prior_before(const float *row, uint32_t a, uint32_t b)
{
    return row[a] > row[b] || (row[a] == row[b] && a < b);
}

static pvg_status prior_row(void *ctx, size_t i, const float *row, const uint32_t *nz, size_t n_nz,
                            pvg_error *err)
{
    (void)err;
    prior_build *b = ctx;
    size_t L = b->top_l, k = 0;
    uint32_t *h = b->sel; /* a min-heap (by rank) of the best L so far */
    for (size_t q = 0; q < n_nz; q++) {
        uint32_t j = nz[q];
        size_t c;
        if (k < L) {
            c = k++;
            while (c > 0 && prior_before(row, h[(c - 1) / 2], j)) {
                h[c] = h[(c - 1) / 2];
                c = (c - 1) / 2;
            }
            h[c] = j;
        } else if (prior_before(row, j, h[0])) {
            c = 0; /* replace the worst and sift down */
            for (;;) {
                size_t l = 2 * c + 1, r = l + 1, w = c;
                uint32_t wv = j;
                if (l < k && prior_before(row, wv, h[l])) w = l, wv = h[l];
                if (r < k && prior_before(row, wv, h[r])) w = r, wv = h[r];
                if (w == c) break;
                h[c] = h[w];
                c = w;
            }
            h[c] = j;
        }
    }
    qsort(h, k, sizeof *h, prior_cmp_col);
    pvg_fl_item_prior *p = b->p;
    uint64_t at = p->row_ptr[i];
    for (size_t q = 0; q < k; q++) {
        p->col[at + q] = h[q];
        p->val[at + q] = row[h[q]];
    }
    p->row_ptr[i + 1] = at + k;
    return PVG_OK;
}

/* The checks and defaults both prior builders start with: *out zeroed,
 * *n_linked (may be NULL) 0, *top_l 0 made PVG_FL_PRIOR_NEIGHBOURS and at
 * most n_items - 1. */
static pvg_status prior_args(pvg_fl_item_prior *out, uint32_t n_items, uint32_t *top_l,
                             size_t *n_linked, pvg_error *err)
{
    if (!out) return pvg_error_set(err, PVG_ERR_INVALID, "fl item prior: out is NULL");
    *out = (pvg_fl_item_prior){0};
    if (n_linked) *n_linked = 0;
    if (n_items == 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "n_items", 0, 0, -1,
                                "fl item prior: 0 items, expected at least 1");
    if (*top_l == 0) *top_l = PVG_FL_PRIOR_NEIGHBOURS;
    if (*top_l > n_items - 1) *top_l = n_items - 1;
    return PVG_OK;
}

pvg_status pvg_fl_item_prior_from_titles(const char *const *titles, uint32_t n_items,
                                         uint32_t top_l, pvg_fl_item_prior *out, size_t *n_linked,
                                         pvg_error *err)
{
    pvg_status st0 = prior_args(out, n_items, &top_l, n_linked, err);
    if (st0 != PVG_OK) return st0;
    size_t n = n_items, cap = n * (size_t)top_l;
    out->n_items = n_items;
    out->row_ptr = calloc(n + 1, sizeof *out->row_ptr);
    out->col = malloc((cap ? cap : 1) * sizeof *out->col);
    out->val = malloc((cap ? cap : 1) * sizeof *out->val);
    prior_build b = {.p = out, .top_l = top_l, .sel = malloc((top_l ? top_l : 1) * sizeof *b.sel)};
    size_t linked = 0;
    pvg_status st;
    if (!out->row_ptr || !out->col || !out->val || !b.sel)
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fl item prior: out of memory (%zu items)", n);
    else
        st = pvg_content_similarity_rows(titles, n, prior_row, &b, &linked, err);
    free(b.sel);
    if (st != PVG_OK) {
        pvg_fl_item_prior_free(out);
        return st;
    }
    if (n_linked) *n_linked = linked;
    return PVG_OK;
}

/* one label of an item: where it starts in labels[i] and its length */
typedef struct label_span {
    size_t at, len;
} label_span;

/* Cuts s into its labels (separated by '|' or ','; each trimmed of spaces
 * and tabs) into sp[0..*n). Returns 0, or -1 with err set naming item i. */
static int split_labels(const char *s, uint32_t i, label_span *sp, size_t *n, pvg_error *err)
{
    *n = 0;
    size_t len = strlen(s), start = 0;
    for (size_t p = 0; p <= len; p++) {
        unsigned char ch = p < len ? (unsigned char)s[p] : 0;
        if (p < len && ch != '|' && ch != ',') {
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                pvg_error_set_at(err, PVG_ERR_INVALID, "labels", (long)i + 1, 0, (long long)p,
                                 "fl item prior: item %u: labels: control character 0x%02x at "
                                 "byte %zu, expected text or a '|' or ',' separator",
                                 i, ch, p);
                return -1;
            }
            continue;
        }
        size_t a = start, b = p;
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        if (a == b) {
            pvg_error_set_at(err, PVG_ERR_INVALID, "labels", (long)i + 1, 0, (long long)start,
                             "fl item prior: item %u: labels: empty label at byte %zu, expected "
                             "a label between separators ('|' or ',')",
                             i, start);
            return -1;
        }
        if (b - a > PVG_FL_LABEL_MAX) {
            pvg_error_set_at(err, PVG_ERR_INVALID, "labels", (long)i + 1, 0, (long long)a,
                             "fl item prior: item %u: labels: the label at byte %zu has %zu "
                             "bytes, expected at most %d",
                             i, a, b - a, PVG_FL_LABEL_MAX);
            return -1;
        }
        if (*n == PVG_FL_LABELS_MAX) {
            pvg_error_set_at(err, PVG_ERR_INVALID, "labels", (long)i + 1, 0, (long long)a,
                             "fl item prior: item %u: labels: more than %d labels (the next at "
                             "byte %zu), expected at most %d",
                             i, PVG_FL_LABELS_MAX, a, PVG_FL_LABELS_MAX);
            return -1;
        }
        sp[(*n)++] = (label_span){a, b - a};
        start = p + 1;
    }
    return 0;
}

pvg_status pvg_fl_item_prior_from_labels(const char *const *labels, uint32_t n_items,
                                         uint32_t top_l, pvg_fl_item_prior *out, size_t *n_linked,
                                         pvg_error *err)
{
    pvg_status st0 = prior_args(out, n_items, &top_l, n_linked, err);
    if (st0 != PVG_OK) return st0;
    size_t n = n_items, cap = n * (size_t)top_l, linked = 0;
    pvg_smap lab = {0};
    label_span sp[PVG_FL_LABELS_MAX];
    char key[PVG_FL_LABEL_MAX];
    uint64_t *lptr = calloc(n + 1, sizeof *lptr); /* item i's labels: lix[lptr[i]..lptr[i+1]) */
    uint32_t *lix = NULL, *df = NULL, *posts = NULL, *nz = NULL, *sel = NULL;
    uint64_t *pptr = NULL;
    float *row = NULL;
    size_t lcap = 0, ln = 0;
    pvg_status st = PVG_OK;
    if (!lptr) goto nomem;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        const char *t = labels ? labels[i] : NULL;
        if (t && t[strspn(t, " \t")] && split_labels(t, (uint32_t)i, sp, &k, err) != 0) {
            st = PVG_ERR_INVALID;
            goto done;
        }
        if (ln + k > lcap) {
            size_t nc = lcap ? 2 * lcap : 4096;
            while (nc < ln + k)
                nc *= 2;
            uint32_t *nl = realloc(lix, nc * sizeof *nl);
            if (!nl) goto nomem;
            lix = nl;
            lcap = nc;
        }
        size_t kept = 0;
        for (size_t q = 0; q < k; q++) {
            for (size_t c = 0; c < sp[q].len; c++) { /* ASCII case folded */
                char ch = labels[i][sp[q].at + c];
                key[c] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
            }
            int added;
            long id = pvg_smap_intern(&lab, key, sp[q].len, &added);
            if (id < 0) goto nomem;
            size_t r = 0; /* a label repeated in the item counts once */
            while (r < kept && lix[ln + r] != (uint32_t)id)
                r++;
            if (r == kept) lix[ln + kept++] = (uint32_t)id;
        }
        ln += kept;
        lptr[i + 1] = ln;
    }
    size_t nl = lab.n;
    if (!(df = calloc(nl + 1, sizeof *df)) || !(pptr = calloc(nl + 1, sizeof *pptr)) ||
        !(posts = malloc((ln ? ln : 1) * sizeof *posts)) || !(row = calloc(n, sizeof *row)) ||
        !(nz = malloc(n * sizeof *nz)) || !(sel = malloc((top_l ? top_l : 1) * sizeof *sel)))
        goto nomem;
    for (size_t q = 0; q < ln; q++)
        df[lix[q]]++;
    for (size_t t = 0; t < nl; t++)
        pptr[t + 1] = pptr[t] + df[t];
    memset(df, 0, nl * sizeof *df); /* reused as fill counters */
    for (size_t i = 0; i < n; i++)
        for (uint64_t q = lptr[i]; q < lptr[i + 1]; q++)
            posts[pptr[lix[q]] + df[lix[q]]++] = (uint32_t)i;
    out->n_items = n_items;
    out->row_ptr = calloc(n + 1, sizeof *out->row_ptr);
    out->col = malloc((cap ? cap : 1) * sizeof *out->col);
    out->val = malloc((cap ? cap : 1) * sizeof *out->val);
    if (!out->row_ptr || !out->col || !out->val) goto nomem;
    prior_build b = {.p = out, .top_l = top_l, .sel = sel};
    for (size_t i = 0; i < n; i++) {
        size_t n_nz = 0; /* row[j]: the labels i and j share */
        for (uint64_t q = lptr[i]; q < lptr[i + 1]; q++)
            for (uint64_t p = pptr[lix[q]]; p < pptr[lix[q] + 1]; p++) {
                uint32_t j = posts[p];
                if (j == i) continue;
                if (row[j] == 0) nz[n_nz++] = j;
                row[j] += 1;
            }
        double ni = (double)(lptr[i + 1] - lptr[i]);
        for (size_t q = 0; q < n_nz; q++) { /* the squared cosine of the binary vectors */
            uint32_t j = nz[q];
            double d = row[j];
            row[j] = (float)(d * d / (ni * (double)(lptr[j + 1] - lptr[j])));
        }
        linked += n_nz > 0;
        st = prior_row(&b, i, row, nz, n_nz, err);
        for (size_t q = 0; q < n_nz; q++)
            row[nz[q]] = 0;
        if (st != PVG_OK) goto done;
    }
    goto done;
nomem:
    st = pvg_error_set(err, PVG_ERR_NOMEM, "fl item prior: out of memory (%zu items)", n);
done:
    pvg_smap_free(&lab);
    free(lptr), free(lix), free(df), free(pptr), free(posts), free(row), free(nz), free(sel);
    if (st != PVG_OK) {
        pvg_fl_item_prior_free(out);
        return st;
    }
    if (n_linked) *n_linked = linked;
    return PVG_OK;
}

uint32_t pvg_fl_model_round(const pvg_fl_model *m)
{
    return m ? m->round : 0;
}
const pvg_fl_config *fl_model_config(const pvg_fl_model *m)
{
    return &m->cfg;
}

pvg_status pvg_fl_model_item_factors(const pvg_fl_model *m, const float **v, uint32_t *n_items,
                                     uint32_t *k, pvg_error *err)
{
    if (!m || !v || !n_items || !k)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl item factors: NULL argument");
    *v = m->V;
    *n_items = m->n_items;
    *k = m->k;
    return PVG_OK;
}

/* ---- wire ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_f64(uint8_t *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}
static void put_f32(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p)
{
    return get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}
static double get_f64(const uint8_t *p)
{
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}
static float get_f32(const uint8_t *p)
{
    uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* G = V^T V in double (k x k). */
static void gram_of(const float *V, size_t n, size_t k, double *G)
{
    memset(G, 0, k * k * sizeof *G);
    for (size_t i = 0; i < n; i++) {
        const float *v = V + i * k;
        for (size_t a = 0; a < k; a++)
            for (size_t b = 0; b <= a; b++)
                G[a * k + b] += (double)v[a] * v[b];
    }
    for (size_t a = 0; a < k; a++)
        for (size_t b = a + 1; b < k; b++)
            G[a * k + b] = G[b * k + a];
}

pvg_status pvg_fl_model_broadcast(const pvg_fl_model *m, uint8_t **out, size_t *out_len,
                                  pvg_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (!m) return pvg_error_set(err, PVG_ERR_INVALID, "fl broadcast: model is NULL");
    size_t k = m->k, nk = (size_t)m->n_items * k;
    size_t len = PVG_FL_HEADER + 4 * (nk + k * k);
    uint8_t *b = malloc(len);
    double *G = malloc(k * k * sizeof *G);
    if (!b || !G) {
        free(b);
        free(G);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl broadcast: out of memory");
    }
    const pvg_fl_config *c = &m->cfg;
    memcpy(b, PVG_FL_MAGIC, 4);
    b[4] = PVG_FL_WIRE_VERSION;
    b[5] = (uint8_t)c->dp;
    b[6] = (uint8_t)c->optimizer;
    b[7] = (uint8_t)c->update;
    put_u32(b + 8, c->factors);
    put_u32(b + 12, m->n_items);
    put_u32(b + 16, m->round);
    put_u32(b + 20, c->bits);
    put_u64(b + 24, c->seed);
    put_f64(b + 32, c->reg);
    put_f64(b + 40, c->alpha);
    put_f64(b + 48, c->alpha0);
    put_f64(b + 56, c->clip);
    put_f64(b + 64, c->noise_multiplier);
    put_f64(b + 72, c->expected_cohort);
    put_f64(b + 80, c->granularity);
    uint8_t *p = b + PVG_FL_HEADER;
    for (size_t i = 0; i < nk; i++, p += 4)
        put_f32(p, m->V[i]);
    gram_of(m->V, m->n_items, k, G);
    for (size_t i = 0; i < k * k; i++, p += 4)
        put_f32(p, (float)G[i]);
    free(G);
    *out = b;
    *out_len = len;
    return PVG_OK;
}

/* A parsed broadcast. */
typedef struct fl_bc {
    pvg_fl_config cfg;
    fl_code code;
    uint32_t n_items, k, round;
    float *V; /* n_items x k */
    double *G;
} fl_bc;

static void bc_free(fl_bc *b)
{
    free(b->V);
    free(b->G);
    b->V = NULL;
    b->G = NULL;
}

#define BAD(code, off, ...)                                                                        \
    pvg_error_set_at(err, code, "fl broadcast", 0, 0, (long long)(off), __VA_ARGS__)

/* What bc_parse_ex reads: the header's checks and the exact length only; or
 * every check, the item factors left in the message (out->V NULL: a client
 * reads the rows of its own items with bc_row) and the Gramian read; or
 * every check with the factors copied to out->V. */
enum { BC_HEADER = 1, BC_IN_PLACE = 2, BC_COPY = 0 };

static pvg_status bc_parse_ex(const uint8_t *b, size_t len, fl_bc *out, int header_only,
                              pvg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!b) return BAD(PVG_ERR_INVALID, 0, "fl broadcast: NULL");
    if (len < 8)
        return BAD(PVG_ERR_CORRUPT, len,
                   "fl broadcast: truncated at byte %zu of the 88-byte header", len);
    if (memcmp(b, PVG_FL_MAGIC, 4) != 0)
        return BAD(PVG_ERR_CORRUPT, 0, "fl broadcast: bad magic (expected \"PGFL\")");
    if (b[4] != PVG_FL_WIRE_VERSION)
        return BAD(PVG_ERR_UNSUPPORTED, 4, "fl broadcast: version %u (expected %u)", b[4],
                   PVG_FL_WIRE_VERSION);
    if (len < PVG_FL_HEADER)
        return BAD(PVG_ERR_CORRUPT, len,
                   "fl broadcast: truncated at byte %zu of the 88-byte header", len);
    if (b[5] > PVG_FL_DP_DISTRIBUTED)
        return BAD(PVG_ERR_CORRUPT, 5, "fl broadcast: dp mode %u (expected 0..2)", b[5]);
    if (b[6] > PVG_FL_FEDADAM)
        return BAD(PVG_ERR_CORRUPT, 6, "fl broadcast: optimizer %u (expected 0..1)", b[6]);
    if (b[7] > PVG_FL_UPDATE_STATS)
        return BAD(PVG_ERR_CORRUPT, 7, "fl broadcast: update form %u (expected 0..1)", b[7]);
    pvg_fl_config *c = &out->cfg;
    pvg_fl_config_default(c);
    c->dp = b[5];
    c->optimizer = b[6];
    c->update = b[7];
    c->factors = get_u32(b + 8);
    out->n_items = get_u32(b + 12);
    out->round = get_u32(b + 16);
    c->bits = get_u32(b + 20);
    c->seed = get_u64(b + 24);
    c->reg = get_f64(b + 32);
    c->alpha = get_f64(b + 40);
    c->alpha0 = get_f64(b + 48);
    c->clip = get_f64(b + 56);
    c->noise_multiplier = get_f64(b + 64);
    c->expected_cohort = get_f64(b + 72);
    c->granularity = get_f64(b + 80);
    c->allow_insecure_rng = 0;
    if (c->factors < 1 || c->factors > PVG_FL_MAX_FACTORS)
        return BAD(PVG_ERR_CORRUPT, 8, "fl broadcast: factors %u (expected 1..256)", c->factors);
    if (out->n_items < 1) return BAD(PVG_ERR_CORRUPT, 12, "fl broadcast: 0 items");
    if (!(c->granularity > 0)) return BAD(PVG_ERR_CORRUPT, 80, "fl broadcast: granularity not > 0");
    pvg_error e2;
    pvg_error_clear(&e2);
    if (fl_code_of(c, out->n_items, &out->code, &e2) != PVG_OK)
        return BAD(PVG_ERR_CORRUPT, 8, "fl broadcast: header fields (bytes 8..87) rejected: %s",
                   e2.text);
    out->k = c->factors;
    size_t nk = (size_t)out->n_items * out->k, kk = (size_t)out->k * out->k;
    size_t want = PVG_FL_HEADER + 4 * (nk + kk);
    if (len < want)
        return BAD(PVG_ERR_CORRUPT, len,
                   "fl broadcast: truncated: %zu bytes, %zu expected for %u items x %u factors",
                   len, want, out->n_items, out->k);
    if (len > want)
        return BAD(PVG_ERR_CORRUPT, want, "fl broadcast: %zu trailing bytes after byte %zu",
                   len - want, want);
    if (header_only == BC_HEADER) return PVG_OK;
    out->V = header_only == BC_IN_PLACE ? NULL : malloc(nk * sizeof *out->V);
    out->G = malloc(kk * sizeof *out->G);
    if ((header_only != BC_IN_PLACE && !out->V) || !out->G) {
        bc_free(out);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl broadcast: out of memory");
    }
    const uint8_t *p = b + PVG_FL_HEADER;
    if (!out->V) { /* in place: one branch-free pass, the slow loop names a bad value */
        int bad = 0;
        for (size_t i = 0; i < nk; i++)
            bad |= !(fabsf(get_f32(p + 4 * i)) <= 1e6f);
        if (!bad) p += 4 * nk;
    }
    for (size_t i = (size_t)(p - b - PVG_FL_HEADER) / 4; i < nk; i++, p += 4) {
        float f = get_f32(p);
        if (!isfinite(f) || fabsf(f) > 1e6f) {
            bc_free(out);
            return BAD(PVG_ERR_CORRUPT, p - b,
                       "fl broadcast: item factor %zu is not a finite value of magnitude <= 1e6",
                       i);
        }
        if (out->V) out->V[i] = f;
    }
    for (size_t i = 0; i < kk; i++, p += 4) {
        float f = get_f32(p);
        if (!isfinite(f)) {
            bc_free(out);
            return BAD(PVG_ERR_CORRUPT, p - b, "fl broadcast: Gramian entry %zu is not finite", i);
        }
        out->G[i] = f;
    }
    for (size_t a = 0; a < out->k; a++)
        for (size_t bb = 0; bb < a; bb++)
            if (out->G[a * out->k + bb] != out->G[bb * out->k + a]) {
                long long off = PVG_FL_HEADER + 4 * (long long)(nk + a * out->k + bb);
                bc_free(out);
                return BAD(PVG_ERR_CORRUPT, off, "fl broadcast: Gramian not symmetric at (%zu,%zu)",
                           a, bb);
            }
    return PVG_OK;
}

static pvg_status bc_parse(const uint8_t *b, size_t len, fl_bc *out, pvg_error *err)
{
    return bc_parse_ex(b, len, out, BC_COPY, err);
}

/* Row j of the item factors of a broadcast that bc_parse_ex checked. */
static void bc_row(const uint8_t *b, uint32_t k, uint32_t j, float *row)
{
    const uint8_t *p = b + PVG_FL_HEADER + 4 * (size_t)j * k;
    for (uint32_t a = 0; a < k; a++)
        row[a] = get_f32(p + 4 * (size_t)a);
}

pvg_status fl_broadcast_header(const uint8_t *broadcast, size_t len, pvg_fl_config *cfg,
                               uint32_t *round, pvg_error *err)
{
    fl_bc bc;
    pvg_status st = bc_parse_ex(broadcast, len, &bc, BC_HEADER, err);
    if (st == PVG_OK) {
        *cfg = bc.cfg;
        *round = bc.round;
    }
    return st;
}

pvg_status pvg_fl_broadcast_info(const uint8_t *broadcast, size_t len, pvg_fl_config *cfg,
                                 uint32_t *round, uint32_t *n_items, pvg_error *err)
{
    if (!cfg || !round || !n_items)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl broadcast info: NULL output");
    fl_bc bc;
    pvg_status st = bc_parse(broadcast, len, &bc, err);
    if (st != PVG_OK) return st;
    *cfg = bc.cfg;
    *round = bc.round;
    *n_items = bc.n_items;
    bc_free(&bc);
    return PVG_OK;
}

/* ---- client ---- */

typedef struct fl_hist {
    uint32_t item;
    float w;
} fl_hist;

static int hist_cmp(const void *a, const void *b)
{
    uint32_t x = ((const fl_hist *)a)->item, y = ((const fl_hist *)b)->item;
    return x < y ? -1 : x > y;
}

/* Copies, validates, sorts and merges the shopper's items. *out new (free). */
static pvg_status hist_of(const uint32_t *items, const float *weights, size_t n, uint32_t n_items,
                          fl_hist **out, size_t *n_out, pvg_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (n && !items) return pvg_error_set(err, PVG_ERR_INVALID, "fl client: items is NULL");
    fl_hist *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) return pvg_error_set(err, PVG_ERR_NOMEM, "fl client: out of memory");
    for (size_t i = 0; i < n; i++) {
        float w = weights ? weights[i] : 1.0f;
        if (items[i] >= n_items) {
            free(h);
            return pvg_error_set_at(
                err, PVG_ERR_INVALID, "items", 0, 0, (long long)i,
                "fl client: item %u at index %zu is outside the catalog of %u items", items[i], i,
                n_items);
        }
        if (!(w >= 0) || !isfinite(w) || w > 1e9f) {
            free(h);
            return pvg_error_set_at(err, PVG_ERR_INVALID, "weights", 0, 0, (long long)i,
                                    "fl client: weight at index %zu is not in [0, 1e9]", i);
        }
        h[i] = (fl_hist){items[i], w};
    }
    qsort(h, n, sizeof *h, hist_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && h[m - 1].item == h[i].item)
            h[m - 1].w += h[i].w;
        else
            h[m++] = h[i];
    }
    *out = h;
    *n_out = m;
    return PVG_OK;
}

static double conf_of(const pvg_fl_config *c, float w)
{
    return 1.0 + c->alpha * log1p((double)w);
}

/* The user's closed-form iALS solve:
 * (alpha0 G + reg (|I_u| + alpha0 |I|) I + sum c v v^T) x = sum c v. */
static pvg_status solve_user(const pvg_fl_config *c, const float *V, const double *G,
                             uint32_t n_items, const fl_hist *h, size_t n, double *x,
                             pvg_error *err)
{
    size_t k = c->factors;
    double *A = malloc(k * k * sizeof *A);
    if (!A) return pvg_error_set(err, PVG_ERR_NOMEM, "fl client: out of memory");
    double reg = c->reg * ((double)n + c->alpha0 * (double)n_items);
    for (size_t a = 0; a < k; a++) {
        x[a] = 0;
        for (size_t b = 0; b < k; b++)
            A[a * k + b] = c->alpha0 * G[a * k + b] + (a == b ? reg : 0.0);
    }
    for (size_t i = 0; i < n; i++) {
        const float *v = V + (size_t)h[i].item * k;
        double cw = conf_of(c, h[i].w);
        for (size_t a = 0; a < k; a++) {
            x[a] += cw * v[a];
            for (size_t b = 0; b <= a; b++)
                A[a * k + b] += cw * (double)v[a] * v[b];
        }
    }
    int rc = pvg_cholesky_solve(A, k, x); /* reads the lower triangle */
    sodium_memzero(A, k * k * sizeof *A);
    free(A);
    if (rc != 0) {
        sodium_memzero(x, k * sizeof *x);
        return pvg_error_set(
            err, PVG_ERR_CORRUPT,
            "fl client: the broadcast's Gramian is not positive semi-definite (user solve failed)");
    }
    return PVG_OK;
}

pvg_status pvg_fl_client_update(const uint8_t *broadcast, size_t len, const uint32_t *items,
                                const float *weights, size_t n, pvg_rng *rng, uint32_t *vec,
                                size_t d, float *user_factor, pvg_error *err)
{
    return pvg_fl_client_update_ex(broadcast, len, items, weights, n, rng, 0, vec, d, user_factor,
                                   err);
}

pvg_status pvg_fl_client_update_ex(const uint8_t *broadcast, size_t len, const uint32_t *items,
                                   const float *weights, size_t n, pvg_rng *rng,
                                   int allow_insecure_rng, uint32_t *vec, size_t d,
                                   float *user_factor, pvg_error *err)
{
    if (!rng || !vec) return pvg_error_set(err, PVG_ERR_INVALID, "fl client: rng or vec is NULL");
    /* the item factors stay in the message: the client reads the rows of its
       own items, and its update is encoded from its nonzero entries (the rows of
       its items, their counts and the statistics T), never as a dense vector */
    fl_bc bc;
    pvg_status st = bc_parse_ex(broadcast, len, &bc, BC_IN_PLACE, err);
    if (st != PVG_OK) return st;
    /* the client's own opt-in decides, never the broadcast */
    bc.cfg.allow_insecure_rng = allow_insecure_rng;
    fl_hist *h = NULL, *hl = NULL;
    size_t nh = 0, nnz = 0;
    double *x = NULL, *val = NULL;
    float *rows = NULL;
    uint32_t *idx = NULL;
    const pvg_fl_config *c = &bc.cfg;
    size_t k = bc.k, ni = bc.n_items, kt = k * (k + 1) / 2 + 1;
    if (d != bc.code.d) {
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "fl client: vector of %zu words, the round needs %zu", d, bc.code.d);
        goto out;
    }
    st = hist_of(items, weights, n, bc.n_items, &h, &nh, err);
    if (st != PVG_OK) goto out;
    x = malloc(k * sizeof *x);
    rows = malloc((nh ? nh : 1) * k * sizeof *rows);
    hl = malloc((nh ? nh : 1) * sizeof *hl);
    idx = malloc((nh * (k + 1) + kt) * sizeof *idx);
    val = malloc((nh * (k + 1) + kt) * sizeof *val);
    if (!x || !rows || !hl || !idx || !val) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fl client: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nh; i++) { /* row i of rows is item h[i].item's */
        bc_row(broadcast, bc.k, h[i].item, rows + i * k);
        hl[i] = (fl_hist){(uint32_t)i, h[i].w};
    }
    st = solve_user(c, rows, bc.G, bc.n_items, hl, nh, x, err);
    if (st != PVG_OK) goto out;
    if (user_factor)
        for (size_t a = 0; a < k; a++)
            user_factor[a] = (float)x[a];
    /* the update's layout: R (ni x k) at 0, N (ni) at ni k, T at ni k + ni.
     * The sufficient-statistics form (DP-iALS) sends the unit direction
     * x/|x|: every row has norm c_uj, and the statistics T are those of
     * unit vectors (a zero factor stays zero) */
    if (c->update == PVG_FL_UPDATE_STATS) {
        double nx = 0;
        for (size_t a = 0; a < k; a++)
            nx += x[a] * x[a];
        nx = sqrt(nx);
        for (size_t a = 0; a < k; a++)
            x[a] = nx > 0 ? x[a] / nx : 0;
    }
    for (size_t i = 0; i < nh; i++) { /* R: items ascending */
        size_t j = h[i].item;
        const float *v = rows + i * k;
        double cw = conf_of(c, h[i].w), xv = 0;
        for (size_t a = 0; a < k; a++)
            xv += x[a] * v[a];
        double s = c->update == PVG_FL_UPDATE_STATS ? cw : (cw - c->alpha0) * xv - cw;
        for (size_t a = 0; a < k; a++)
            if (s * x[a] != 0) {
                idx[nnz] = (uint32_t)(j * k + a);
                val[nnz++] = s * x[a];
            }
    }
    for (size_t i = 0; i < nh; i++) { /* N */
        idx[nnz] = (uint32_t)(ni * k + h[i].item);
        val[nnz++] = PVG_FL_SCALE_N;
    }
    size_t t = 0;
    for (size_t a = 0; a < k; a++)
        for (size_t b = a; b < k; b++, t++)
            if (PVG_FL_SCALE_T * x[a] * x[b] != 0) {
                idx[nnz] = (uint32_t)(ni * k + ni + t);
                val[nnz++] = PVG_FL_SCALE_T * x[a] * x[b];
            }
    idx[nnz] = (uint32_t)(ni * k + ni + t); /* W: this client */
    val[nnz++] = PVG_FL_SCALE_T;
    st = fl_encode_sparse(c, &bc.code, bc.round, idx, val, nnz, rng, vec, err);
out:
    if (h) sodium_memzero(h, (nh ? nh : 1) * sizeof *h);
    if (hl) sodium_memzero(hl, (nh ? nh : 1) * sizeof *hl);
    if (x) sodium_memzero(x, k * sizeof *x);
    if (rows) sodium_memzero(rows, (nh ? nh : 1) * k * sizeof *rows);
    if (idx) sodium_memzero(idx, (nh * (k + 1) + kt) * sizeof *idx);
    if (val) sodium_memzero(val, (nh * (k + 1) + kt) * sizeof *val);
    free(h);
    free(hl);
    free(x);
    free(rows);
    free(idx);
    free(val);
    bc_free(&bc);
    return st;
}

/* ---- server step ---- */

/* Jacobi sweeps of the prior's joint item solve (pvg_fl_model_set_item_prior) */
#define FL_PRIOR_SWEEPS 8

/* Item j's ridge: reg (N_j + alpha0 W) from the decoded count N_j (block
 * scale divided out, clamped at 0), plus the noise ridge. */
static double item_reg(const pvg_fl_config *c, double Nj, double W, double ridge)
{
    double nj = Nj > 0 ? (1.0 / PVG_FL_SCALE_N) * Nj : 0;
    return c->reg * (nj + c->alpha0 * W) + ridge + 1e-9;
}

pvg_status pvg_fl_model_apply(pvg_fl_model *m, const uint32_t *sum, size_t d, uint32_t survivors,
                              pvg_rng *rng, pvg_error *err)
{
    if (!m || !sum) return pvg_error_set(err, PVG_ERR_INVALID, "fl apply: NULL argument");
    if (d != m->code.d)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl apply: sum of %zu words, the round needs %zu", d, m->code.d);
    if (survivors < 1) return pvg_error_set(err, PVG_ERR_INVALID, "fl apply: no survivors");
    const pvg_fl_config *c = &m->cfg;
    size_t k = m->k, ni = m->n_items;
    double *S = malloc(d * sizeof *S);
    double *G = malloc(k * k * sizeof *G), *lam = malloc(k * sizeof *lam);
    double *g = malloc(k * sizeof *g), *t = malloc(k * sizeof *t);
    double *Vs = NULL, *Ub = NULL, *Mu = NULL; /* statistics form: fresh solves, U^T b, prior */
    double *rel = NULL, *rsc = NULL; /* the prior's neighbour reliabilities and row scales */
    pvg_status st = PVG_OK;
    if (!S || !G || !lam || !g || !t) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fl apply: out of memory");
        goto out;
    }
    st = fl_decode(c, &m->code, m->round, sum, c->dp == PVG_FL_DP_CENTRAL, rng, S, err);
    if (st != PVG_OK) goto out;
    const double *R = S, *N = S + ni * k, *T = N + ni;
    const double is = 1.0 / PVG_FL_SCALE_T, isn = 1.0 / PVG_FL_SCALE_N;
    size_t i = 0;
    for (size_t a = 0; a < k; a++)
        for (size_t b = a; b < k; b++, i++)
            G[a * k + b] = G[b * k + a] = is * T[i];
    /* the clients' total weight: clipping scales a client's whole vector by
     * w_u = min(1, C/|u|), so every statistic is a w-weighted sum and the
     * server minimises the w-weighted loss consistently */
    double W = is * T[i];
    if (!(W > 0)) W = 0;
    /* G = U diag(lam) U^T; the noisy sum may be indefinite: clamp at 0 */
    if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)k, G, (lapack_int)k, lam) != 0) {
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "fl apply: the summed Gramian has no eigen-decomposition");
        goto out;
    }
    for (size_t a = 0; a < k; a++)
        if (!(lam[a] > 0)) lam[a] = 0;
    /* per item: g = alpha0 Gx v + reg_j v + R_j (the gradient of the loss
     * over the cohort, halved); P = (alpha0 + (1 - alpha0) N_j / W) Gx +
     * reg_j I approximates its Hessian, the observed part by the item's
     * count times the cohort's mean x x^T (exact in expectation for binary
     * confidence); step = P^-1 g in the eigenbasis */
    double obs = c->alpha0 < 1 ? 1 - c->alpha0 : 0;
    /* noise_ridge: kappa times the noise std of a coordinate of the sum */
    double ridge = c->dp != PVG_FL_DP_NONE ? c->noise_ridge * m->code.sigma * m->code.gamma : 0;
    int stats = c->update == PVG_FL_UPDATE_STATS;
    /* average_solves (statistics form, FedAvg): v <- v - (v - v*)/n after the n-th sum, so v is
       the mean of the n fresh solves v*; the server_lr step otherwise */
    double lr = stats && c->average_solves ? 1.0 / (double)(m->solves + 1) : c->server_lr;
    if (stats) {
        Vs = malloc(ni * k * sizeof *Vs);
        Ub = malloc(ni * k * sizeof *Ub);
        if (!Vs || !Ub) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "fl apply: out of memory");
            goto out;
        }
        /* the fresh solves v*_j = U diag(1 / (alpha0 lam + reg_j)) U^T b_j */
        for (size_t j = 0; j < ni; j++) {
            double regj = item_reg(c, N[j], W, ridge);
            for (size_t a = 0; a < k; a++) {
                double sr = 0;
                for (size_t b = 0; b < k; b++)
                    sr += G[b * k + a] * R[j * k + b];
                Ub[j * k + a] = sr;
                t[a] = sr / (c->alpha0 * lam[a] + regj);
            }
            for (size_t b = 0; b < k; b++) {
                double sb = 0;
                for (size_t a = 0; a < k; a++)
                    sb += G[b * k + a] * t[a];
                Vs[j * k + b] = sb;
            }
        }
        /* the public item prior: the noise ridge pulls each item toward
         * mu_j = weight sum_i S~_ji v*_i (its public neighbours' solves)
         * instead of toward 0: v*_j = (alpha0 T + reg_j I)^-1 (b_j + ridge
         * mu_j), solved jointly by Jacobi sweeps (a contraction: ridge
         * weight / reg_j < 1, |S~|_inf <= 1). With count_half h > 0 a
         * neighbour i weighs S~_ji r_i, r_i = n_i / (n_i + h) from its noisy
         * count, the row rescaled to S~'s row total: the reliable neighbours
         * lead, the pull's strength is the same. Post-processing of the
         * released sum and public data */
        if (m->pr_ptr && ridge > 0 && m->pr_weight > 0) {
            Mu = malloc(ni * k * sizeof *Mu);
            rel = malloc(ni * sizeof *rel);
            rsc = malloc(ni * sizeof *rsc);
            if (!Mu || !rel || !rsc) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "fl apply: out of memory");
                goto out;
            }
            double h = m->pr_count_half;
            for (size_t i = 0; i < ni; i++) {
                double n_i = N[i] > 0 ? N[i] / PVG_FL_SCALE_N : 0;
                rel[i] = h > 0 ? n_i / (n_i + h) : 1;
            }
            for (size_t j = 0; j < ni; j++) {
                double tw = 0, trw = 0;
                for (uint64_t q = m->pr_ptr[j]; q < m->pr_ptr[j + 1]; q++) {
                    tw += m->pr_val[q];
                    trw += m->pr_val[q] * rel[m->pr_idx[q]];
                }
                rsc[j] = trw > 0 ? m->pr_weight * tw / trw : 0;
            }
            for (int it = 0; it < FL_PRIOR_SWEEPS; it++) {
                for (size_t j = 0; j < ni; j++) {
                    double *mu = Mu + j * k;
                    memset(mu, 0, k * sizeof *mu);
                    for (uint64_t q = m->pr_ptr[j]; q < m->pr_ptr[j + 1]; q++) {
                        const double *vi = Vs + (size_t)m->pr_idx[q] * k;
                        double w = rsc[j] * m->pr_val[q] * rel[m->pr_idx[q]];
                        for (size_t b = 0; b < k; b++)
                            mu[b] += w * vi[b];
                    }
                }
                for (size_t j = 0; j < ni; j++) {
                    double regj = item_reg(c, N[j], W, ridge);
                    const double *mu = Mu + j * k;
                    for (size_t a = 0; a < k; a++) {
                        double sm = 0;
                        for (size_t b = 0; b < k; b++)
                            sm += G[b * k + a] * mu[b];
                        t[a] = (Ub[j * k + a] + ridge * sm) / (c->alpha0 * lam[a] + regj);
                    }
                    for (size_t b = 0; b < k; b++) {
                        double sb = 0;
                        for (size_t a = 0; a < k; a++)
                            sb += G[b * k + a] * t[a];
                        Vs[j * k + b] = sb;
                    }
                }
            }
        }
    }
    for (size_t j = 0; j < ni; j++) {
        float *v = m->V + j * k;
        double nj = N[j] > 0 ? isn * N[j] : 0;
        double regj = item_reg(c, N[j], W, ridge);
        double c1 = c->alpha0 + (W > 0 ? obs * nj / W : 0);
        if (stats) { /* the direction is v - v* */
            for (size_t b = 0; b < k; b++)
                g[b] = v[b] - Vs[j * k + b];
        } else {
            /* gradient form: t = U^T v, g in the eigenbasis: (alpha0 lam +
             * reg) t + U^T R_j, preconditioned by (c1 lam + reg) */
            for (size_t a = 0; a < k; a++) {
                double sv = 0, sr = 0;
                for (size_t b = 0; b < k; b++) {
                    sv += G[b * k + a] * v[b];
                    sr += G[b * k + a] * R[j * k + b];
                }
                double ga = (c->alpha0 * lam[a] + regj) * sv + sr;
                t[a] = ga / (c1 * lam[a] + regj);
            }
            for (size_t b = 0; b < k; b++) {
                double s = 0;
                for (size_t a = 0; a < k; a++)
                    s += G[b * k + a] * t[a];
                g[b] = s;
            }
        }
        if (c->optimizer == PVG_FL_FEDAVG) {
            for (size_t b = 0; b < k; b++)
                v[b] = (float)(v[b] - lr * g[b]);
        } else {
            double *m1 = m->m1 + j * k, *m2 = m->m2 + j * k;
            for (size_t b = 0; b < k; b++) {
                m1[b] = ADAM_B1 * m1[b] + (1 - ADAM_B1) * g[b];
                m2[b] = ADAM_B2 * m2[b] + (1 - ADAM_B2) * g[b] * g[b];
                v[b] = (float)(v[b] - c->server_lr * m1[b] / (sqrt(m2[b]) + ADAM_TAU));
            }
        }
        for (size_t b = 0; b < k; b++)
            if (!isfinite(v[b]) || fabsf(v[b]) > 1e6f)
                v[b] = v[b] > 0 ? 1e6f : v[b] < 0 ? -1e6f : 0;
    }
    m->round++;
    m->solves++;
out:
    if (S) sodium_memzero(S, d * sizeof *S);
    free(S);
    free(G);
    free(lam);
    free(g);
    free(t);
    free(Vs);
    free(Ub);
    free(Mu);
    free(rel);
    free(rsc);
    return st;
}

/* ---- on-device recommendations ---- */

pvg_status pvg_fl_client_recommend(const uint8_t *broadcast, size_t len, const uint32_t *items,
                                   const float *weights, size_t n, size_t k, uint32_t *out_items,
                                   float *out_scores, size_t *n_out, pvg_error *err)
{
    if (n_out) *n_out = 0;
    if (!n_out || (k && (!out_items || !out_scores)))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl recommend: NULL output");
    fl_bc bc;
    pvg_status st = bc_parse(broadcast, len, &bc, err);
    if (st != PVG_OK) return st;
    fl_hist *h = NULL;
    size_t nh = 0, f = bc.k, ni = bc.n_items;
    double *x = malloc(f * sizeof *x);
    float *sc = malloc(ni * sizeof *sc), *xs = malloc(f * sizeof *xs), *top_s = NULL;
    int64_t *top_i = NULL;
    if (!x || !sc || !xs) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fl recommend: out of memory");
        goto out;
    }
    st = hist_of(items, weights, n, bc.n_items, &h, &nh, err);
    if (st != PVG_OK) goto out;
    st = solve_user(&bc.cfg, bc.V, bc.G, bc.n_items, h, nh, x, err);
    if (st != PVG_OK) goto out;
    for (size_t a = 0; a < f; a++)
        xs[a] = (float)x[a];
    pvg_matvec(bc.V, ni, f, xs, sc);
    for (size_t i = 0; i < nh; i++)
        sc[h[i].item] = -INFINITY;
    size_t want = k < ni - nh ? k : ni - nh;
    top_i = malloc((want ? want : 1) * sizeof *top_i);
    top_s = malloc((want ? want : 1) * sizeof *top_s);
    if (!top_i || !top_s) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fl recommend: out of memory");
        goto out;
    }
    size_t got = want ? pvg_topk(sc, ni, want, top_i, top_s) : 0;
    for (size_t i = 0; i < got; i++) {
        out_items[i] = (uint32_t)top_i[i];
        out_scores[i] = top_s[i];
    }
    *n_out = got;
out:
    if (h) sodium_memzero(h, (nh ? nh : 1) * sizeof *h);
    if (x) sodium_memzero(x, f * sizeof *x);
    if (xs) sodium_memzero(xs, f * sizeof *xs);
    if (sc) sodium_memzero(sc, ni * sizeof *sc);
    free(h);
    free(x);
    free(xs);
    free(sc);
    free(top_i);
    free(top_s);
    bc_free(&bc);
    return st;
}

/* ---- in-process trainer ---- */

pvg_status fl_model_user_factor(const pvg_fl_model *m, const uint32_t *items, const float *weights,
                                size_t n, float *x, pvg_error *err)
{
    size_t k = m->k;
    double *G = malloc(k * k * sizeof *G), *xd = malloc(k * sizeof *xd);
    fl_hist *h = NULL;
    size_t nh = 0;
    pvg_status st = PVG_OK;
    if (!G || !xd) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fl: out of memory");
        goto out;
    }
    gram_of(m->V, m->n_items, k, G);
    st = hist_of(items, weights, n, m->n_items, &h, &nh, err);
    if (st == PVG_OK) st = solve_user(&m->cfg, m->V, G, m->n_items, h, nh, xd, err);
    if (st == PVG_OK)
        for (size_t a = 0; a < k; a++)
            x[a] = (float)xd[a];
out:
    free(G);
    free(xd);
    free(h);
    return st;
}

pvg_status fl_sim_round(pvg_fl_model *m, const fl_clients *cl, double q, pvg_rng *rng,
                        fl_round_stats *rs, pvg_error *err)
{
    if (cl->n_items != m->n_items)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl sim: clients over %u items, model %u",
                             cl->n_items, m->n_items);
    uint8_t *bc = NULL;
    size_t bl = 0, d = m->code.d;
    pvg_status st = pvg_fl_model_broadcast(m, &bc, &bl, err);
    if (st != PVG_OK) return st;
    uint32_t *sum = calloc(d, sizeof *sum), *vec = malloc(d * sizeof *vec);
    if (!sum || !vec) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fl sim: out of memory");
        goto out;
    }
    uint32_t cohort = 0;
    double t0 = pvg_now_seconds();
    for (size_t u = 0; u < cl->n_users; u++) {
        if (q < 1 && !(pvg_rng_double(rng) < q)) continue;
        uint64_t b = cl->indptr[u], e = cl->indptr[u + 1];
        st = pvg_fl_client_update_ex(bc, bl, cl->items + b, cl->weights ? cl->weights + b : NULL,
                                     (size_t)(e - b), rng, m->cfg.allow_insecure_rng, vec, d, NULL,
                                     err);
        if (st != PVG_OK) goto out;
        for (size_t i = 0; i < d; i++)
            sum[i] += vec[i];
        cohort++;
    }
    double t1 = pvg_now_seconds();
    if (m->cfg.bits < 32)
        for (size_t i = 0; i < d; i++)
            sum[i] &= (1u << m->cfg.bits) - 1u;
    if (cohort == 0) { /* an empty cohort: nothing to apply, the round still passes */
        m->round++;
    } else {
        st = pvg_fl_model_apply(m, sum, d, cohort, rng, err);
        if (st != PVG_OK) goto out;
    }
    if (rs) {
        rs->cohort = cohort;
        rs->client_seconds = t1 - t0;
        rs->server_seconds = pvg_now_seconds() - t1;
    }
out:
    free(bc);
    free(sum);
    free(vec);
    return st;
}
