/*
 * factor.c - the matrix-factorisation trainers.
 *
 * iALS (Hu, Koren & Volinsky 2008) with the recipe of Rendle et al. 2021:
 * minimise over user factors W[n_users x f] and item factors H[n_items x f]
 *   sum_{(u,i) observed} c_ui (w_u.h_i - 1)^2 + alpha0 sum_{u,i} (w_u.h_i)^2
 *   + lambda sum_u (|I_u| + alpha0 |I|)^nu |w_u|^2
 *   + lambda sum_i (|U_i| + alpha0 |U|)^nu |h_i|^2
 * by alternating solves; the all-pairs term uses the Gramian trick
 * (sum_i (w.h_i)^2 = w^T (H^T H) w), each row is solved by block conjugate
 * gradients (or exactly by Cholesky), rows are spread over threads.
 *
 * BPR (Rendle et al. 2009): SGD on -log sigmoid(x_ui - x_uj) over sampled
 * (user, positive, negative) triples, lock-free across threads (Hogwild).
 * An item bias is kept as the last factor column (users hold a constant 1
 * there), so serving stays one matrix-vector product.
 *
 * Randomness here (initialisation, sampling) is statistical, not secret: a
 * seeded xoshiro256** stream per thread.
 */
#include "model/model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct xrng {
    uint64_t s[4];
} xrng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void xrng_seed(xrng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t xrng_next(xrng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

static inline double xrng_double(xrng *r)
{
    return (xrng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* bound < 2^32: Lemire's multiply-shift (bias < 2^-32, fine for sampling) */
static inline uint32_t xrng_below(xrng *r, uint32_t bound)
{
    return (uint32_t)(((xrng_next(r) >> 32) * (uint64_t)bound) >> 32);
}

static double xrng_normal(xrng *r)
{
    double u1 = xrng_double(r), u2 = xrng_double(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static float *init_factors(size_t n, size_t f, double std, uint64_t seed)
{
    float *W = malloc((n ? n : 1) * f * sizeof *W);
    if (!W) return NULL;
    xrng r;
    xrng_seed(&r, seed);
    for (size_t i = 0; i < n * f; i++)
        W[i] = (float)(std * xrng_normal(&r));
    return W;
}

/* ---- iALS -------------------------------------------------------------- */

#define IALS_BLOCK 128

typedef struct ials_ctx {
    const pvg_csr *M;
    const float *H, *G;
    float *W;
    size_t f;
    float alpha0, conf;
    int cg_steps;
    const float *reg; /* per row */
    float **scratch;  /* per thread */
} ials_ctx;

static void ials_range(void *vctx, int tid, size_t b, size_t e)
{
    ials_ctx *c = vctx;
    pvg_ials_solve_block(c->M, b, e - b, c->H, c->G, c->f, c->alpha0, c->reg + b, c->conf,
                         c->cg_steps, c->W, c->scratch[tid]);
}

typedef struct loss_ctx {
    const pvg_csr *M;
    const float *W, *H;
    size_t f;
    float conf;
    double *part; /* per thread */
} loss_ctx;

static void loss_range(void *vctx, int tid, size_t b, size_t e)
{
    loss_ctx *c = vctx;
    double s = 0;
    for (size_t r = b; r < e; r++)
        for (uint64_t j = c->M->indptr[r]; j < c->M->indptr[r + 1]; j++) {
            const float *w = c->W + r * c->f, *h = c->H + (size_t)c->M->indices[j] * c->f;
            double y = 0;
            for (size_t q = 0; q < c->f; q++)
                y += (double)w[q] * h[q];
            double cw = c->conf > 0 ? 1.0 + c->conf * log1p(c->M->data[j]) : 1.0;
            s += cw * (y - 1) * (y - 1);
        }
    c->part[tid] += s;
}

static float *row_regs(const pvg_csr *M, double lambda, double alpha0, double n_other, double nu)
{
    float *reg = malloc((M->n_rows ? M->n_rows : 1) * sizeof *reg);
    if (!reg) return NULL;
    for (size_t r = 0; r < M->n_rows; r++)
        reg[r] =
            (float)(lambda * pow((double)(M->indptr[r + 1] - M->indptr[r]) + alpha0 * n_other, nu));
    return reg;
}

/* The data-derived defaults (docs/models.md "Defaults that travel"). With
 * the frequency-scaled regularisation (nu = 1) the alternating solves are,
 * to first order, power iterations on the degree-normalised matrix
 * D_u^-1/2 Y D_i^-1/2 (top singular value 1) that soft-threshold its
 * singular values by lambda; the noise of a sparse matrix reaches singular
 * values of the order of 1 / sqrt(mean user degree x mean item degree), so
 * lambda = 1 / g with g that geometric mean of the degrees (over the users
 * and items with training interactions) puts the threshold at the noise
 * whatever the catalogue's size or density. The unobserved pairs' relative
 * weight alpha is 1 for sparse data (g <= 15: most absent items are unseen,
 * not rejected) rising to 3 for dense data (g >= 45). */
void pvg_ials_resolve_defaults(pvg_train_params *p, const pvg_csr *R)
{
    double g = pvg_ials_effective_degree(R);
    if (p->reg < 0) p->reg = g > 0 ? PVG_IALS_REG_SCALE / g : PVG_IALS_DP_REG;
    if (p->alpha0 < 0 && p->alpha < 0) {
        double a = g / PVG_IALS_ALPHA_DEGREE;
        p->alpha = a < 1 ? 1 : a > 3 ? 3 : a;
    }
}

double pvg_ials_effective_degree(const pvg_csr *R)
{
    if (!R->nnz) return 0;
    size_t au = 0, ai = 0;
    for (size_t u = 0; u < R->n_rows; u++)
        au += R->indptr[u + 1] > R->indptr[u];
    unsigned char *seen = calloc(R->n_cols ? R->n_cols : 1, 1);
    if (seen) {
        for (size_t j = 0; j < R->nnz; j++)
            seen[R->indices[j]] = 1;
        for (size_t i = 0; i < R->n_cols; i++)
            ai += seen[i];
        free(seen);
    } else {
        ai = R->n_cols; /* out of memory: the catalogue bounds the active items */
    }
    /* sqrt((nnz / au) (nnz / ai)) */
    return (double)R->nnz / sqrt((double)au * (double)ai);
}

pvg_status pvg_train_ials(const pvg_csr *R, const pvg_csr *C, const pvg_train_params *p,
                          float **U_out, float **V_out, pvg_train_stats *st, pvg_error *err)
{
    size_t f = (size_t)p->factors, nu_ = R->n_rows, ni = R->n_cols;
    int threads = p->threads < 1 ? 1 : p->threads;
    double std = p->init_std > 0 ? p->init_std : 0.1 / sqrt((double)f);
    float *U = init_factors(nu_, f, std, p->seed ^ 0x55aa55aaULL);
    float *V = init_factors(ni, f, std, p->seed ^ 0xa5a5a5a5ULL);
    float *G = malloc(f * f * sizeof *G), *G2 = malloc(f * f * sizeof *G2);
    float *reg_u = row_regs(R, p->reg, p->alpha0, (double)ni, p->nu);
    float *reg_i = row_regs(C, p->reg, p->alpha0, (double)nu_, p->nu);
    float **scratch = calloc((size_t)threads, sizeof *scratch);
    double *part = calloc((size_t)threads, sizeof *part);
    pvg_status status = PVG_OK;
    if (!U || !V || !G || !G2 || !reg_u || !reg_i || !scratch || !part) {
        status = pvg_error_set(err, PVG_ERR_NOMEM, "ials: out of memory");
        goto done;
    }
    for (int t = 0; t < threads; t++) {
        scratch[t] = malloc((5 * IALS_BLOCK * f + f * f + 16) * sizeof(float));
        if (!scratch[t]) {
            status = pvg_error_set(err, PVG_ERR_NOMEM, "ials: out of memory");
            goto done;
        }
    }
    double t0 = pvg_now_seconds();
    for (int ep = 0; ep < p->epochs; ep++) {
        double te = pvg_now_seconds(), ce = pvg_cpu_seconds();
        /* users given items */
        pvg_blas_threaded_begin(threads);
        pvg_gramian(V, ni, f, G);
        pvg_blas_threaded_end();
        ials_ctx cu = {R,           V,     G,      U, f, (float)p->alpha0, (float)p->confidence,
                       p->cg_steps, reg_u, scratch};
        pvg_parallel_for(threads, nu_, IALS_BLOCK, ials_range, &cu);
        /* items given users */
        pvg_blas_threaded_begin(threads);
        pvg_gramian(U, nu_, f, G2);
        pvg_blas_threaded_end();
        ials_ctx ci = {C,           U,     G2,     V, f, (float)p->alpha0, (float)p->confidence,
                       p->cg_steps, reg_i, scratch};
        pvg_parallel_for(threads, ni, IALS_BLOCK, ials_range, &ci);
        double secs = pvg_now_seconds() - te, cpu = pvg_cpu_seconds() - ce;
        /* objective (not timed as part of the epoch) */
        double loss = NAN;
        if (p->progress || ep + 1 == p->epochs) {
            memset(part, 0, (size_t)threads * sizeof *part);
            loss_ctx lc = {R, U, V, f, (float)p->confidence, part};
            pvg_parallel_for(threads, nu_, 256, loss_range, &lc);
            double obs = 0;
            for (int t = 0; t < threads; t++)
                obs += part[t];
            pvg_blas_threaded_begin(threads);
            pvg_gramian(V, ni, f, G);
            pvg_blas_threaded_end();
            double all = 0; /* trace(Gu Gv) = sum_{u,i} (w_u.h_i)^2 */
            for (size_t q = 0; q < f * f; q++)
                all += (double)G[q] * G2[q];
            double rg = 0;
            for (size_t u = 0; u < nu_; u++) {
                double s = 0;
                for (size_t q = 0; q < f; q++)
                    s += (double)U[u * f + q] * U[u * f + q];
                rg += reg_u[u] * s;
            }
            for (size_t i = 0; i < ni; i++) {
                double s = 0;
                for (size_t q = 0; q < f; q++)
                    s += (double)V[i * f + q] * V[i * f + q];
                rg += reg_i[i] * s;
            }
            loss = obs + p->alpha0 * all + rg;
        }
        if (st) {
            if (st->n_epochs < PVG_TRAIN_MAX_EPOCHS) {
                st->epoch_cpu_seconds[st->n_epochs] = cpu;
                st->epoch_seconds[st->n_epochs++] = secs;
            }
            st->final_loss = loss;
        }
        if (p->progress) {
            pvg_train_progress pr = {ep + 1, p->epochs, loss, secs, pvg_now_seconds() - t0};
            p->progress(p->progress_ctx, &pr);
        }
    }
done:
    if (scratch)
        for (int t = 0; t < threads; t++)
            free(scratch[t]);
    free(scratch);
    free(part);
    free(G);
    free(G2);
    free(reg_u);
    free(reg_i);
    if (status != PVG_OK) {
        free(U);
        free(V);
        return status;
    }
    *U_out = U;
    *V_out = V;
    return PVG_OK;
}

/* ---- BPR ----------------------------------------------------------------- */

typedef struct bpr_ctx {
    const pvg_csr *R;
    uint32_t *row_of; /* row of each nnz */
    float *U, *V;     /* [n x (f+1)] */
    size_t f, F;      /* F = f + 1 */
    float lr, reg;
    uint64_t seed;
    int epoch;
    double *loss; /* per thread */
} bpr_ctx;

static int row_has(const pvg_csr *R, uint32_t u, uint32_t j)
{
    uint64_t lo = R->indptr[u], hi = R->indptr[u + 1];
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (R->indices[mid] < j)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < R->indptr[u + 1] && R->indices[lo] == j;
}

static void bpr_range(void *vctx, int tid, size_t b, size_t e)
{
    bpr_ctx *c = vctx;
    xrng r;
    xrng_seed(&r, c->seed * 1000003ULL + (uint64_t)c->epoch * 7919ULL + b);
    size_t F = c->F, f = c->f;
    uint32_t ni = (uint32_t)c->R->n_cols;
    double loss = 0;
    for (size_t s = b; s < e; s++) {
        uint64_t q = ((xrng_next(&r) >> 11) % c->R->nnz);
        uint32_t u = c->row_of[q], i = c->R->indices[q], j = 0;
        int tries = 0;
        do
            j = xrng_below(&r, ni);
        while (row_has(c->R, u, j) && ++tries < 32);
        if (tries >= 32) continue;
        float *wu = c->U + (size_t)u * F, *hi = c->V + (size_t)i * F, *hj = c->V + (size_t)j * F;
        float x = 0;
        for (size_t k = 0; k < F; k++)
            x += wu[k] * (hi[k] - hj[k]);
        float sg = 1.0f / (1.0f + expf(x)); /* sigmoid(-x) */
        loss += x > 0 ? log1p(exp(-(double)x)) : -(double)x + log1p(exp((double)x));
        for (size_t k = 0; k < f; k++) {
            float wk = wu[k], d = hi[k] - hj[k];
            wu[k] += c->lr * (sg * d - c->reg * wk);
            hi[k] += c->lr * (sg * wk - c->reg * hi[k]);
            hj[k] += c->lr * (-sg * wk - c->reg * hj[k]);
        }
        hi[f] += c->lr * (sg - c->reg * hi[f]);
        hj[f] += c->lr * (-sg - c->reg * hj[f]);
    }
    c->loss[tid] += loss;
}

pvg_status pvg_train_bpr(const pvg_csr *R, const pvg_train_params *p, float **U_out, float **V_out,
                         pvg_train_stats *st, pvg_error *err)
{
    size_t f = (size_t)p->factors, F = f + 1, nu_ = R->n_rows, ni = R->n_cols;
    int threads = p->threads < 1 ? 1 : p->threads;
    double std = p->init_std > 0 ? p->init_std : 0.1 / sqrt((double)f);
    float *U = init_factors(nu_, F, std, p->seed ^ 0x1234ULL);
    float *V = init_factors(ni, F, std, p->seed ^ 0x4321ULL);
    uint32_t *row_of = malloc((R->nnz ? R->nnz : 1) * sizeof *row_of);
    double *lossv = calloc((size_t)threads, sizeof *lossv);
    if (!U || !V || !row_of || !lossv) {
        free(U);
        free(V);
        free(row_of);
        free(lossv);
        return pvg_error_set(err, PVG_ERR_NOMEM, "bpr: out of memory");
    }
    for (size_t u = 0; u < nu_; u++) {
        U[u * F + f] = 1.0f;
        for (uint64_t j = R->indptr[u]; j < R->indptr[u + 1]; j++)
            row_of[j] = (uint32_t)u;
    }
    for (size_t i = 0; i < ni; i++)
        V[i * F + f] = 0.0f;
    double t0 = pvg_now_seconds();
    for (int ep = 0; ep < p->epochs; ep++) {
        double te = pvg_now_seconds(), ce = pvg_cpu_seconds();
        memset(lossv, 0, (size_t)threads * sizeof *lossv);
        bpr_ctx c = {R, row_of, U, V, f, F, (float)p->lr, (float)p->reg, p->seed, ep, lossv};
        pvg_parallel_for(threads, R->nnz, 4096, bpr_range, &c);
        double secs = pvg_now_seconds() - te, cpu = pvg_cpu_seconds() - ce, loss = 0;
        for (int t = 0; t < threads; t++)
            loss += lossv[t];
        loss /= (double)(R->nnz ? R->nnz : 1);
        if (st) {
            if (st->n_epochs < PVG_TRAIN_MAX_EPOCHS) {
                st->epoch_cpu_seconds[st->n_epochs] = cpu;
                st->epoch_seconds[st->n_epochs++] = secs;
            }
            st->final_loss = loss;
        }
        if (p->progress) {
            pvg_train_progress pr = {ep + 1, p->epochs, loss, secs, pvg_now_seconds() - t0};
            p->progress(p->progress_ctx, &pr);
        }
    }
    free(row_of);
    free(lossv);
    *U_out = U;
    *V_out = V;
    return PVG_OK;
}
