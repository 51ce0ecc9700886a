/*
 * dp_ials.c - iALS with shopper-level differential privacy (DP-iALS),
 * after Chien et al., "Private Alternating Least Squares: Practical Private
 * Matrix Completion with Tighter Rates" (ICML 2021). docs/models.md,
 * "DP-iALS", has the derivation; in short:
 *
 *   1. Contribution bound: each shopper keeps at most m of their items
 *      (chosen uniformly at random with the CSPRNG), each with preference 1
 *      and weight 1 (binary); their factor enters the item statistics
 *      projected onto the unit sphere (|u| = 1).
 *   2. Each iteration releases, with Gaussian noise on a power-of-two grid
 *      (exact discrete Gaussian samples), the item-side sufficient
 *      statistics of the clipped data:
 *        A_j = sum_{u in j} u u^T   (upper triangle; the noise is symmetric)
 *        b_j = sum_{u in j} u
 *        G   = sum_u u u^T          (the unobserved-pairs Gram term)
 *      One shopper moves the stacked A by at most sqrt(m) (Frobenius), b by
 *      sqrt(m), G by 1; the noise std of each is its noise multiplier times
 *      that sensitivity (inflated for the rounding to the grid).
 *   3. Item factors are solved from the noisy statistics:
 *        V_j = (A~_j + alpha0 G~ + (reg_j + shift) I)^-1 b~_j
 *      with a shift of the size of the noise's spectral norm that keeps the
 *      matrix positive definite (eigenvalues clipped when it is not).
 *   4. User factors are solved from each shopper's own (whole) history and
 *      the published item factors (joint DP: a shopper's factor is theirs).
 *   5. T iterations compose T Gaussian mechanisms: Renyi DP T a / (2 z^2)
 *      for the effective noise multiplier z (1/z^2 = sum over the three
 *      statistics of 1/z_k^2), converted to (epsilon, delta).
 *
 * Randomness: clipping and noise from the caller's rng (a CSPRNG in
 * production); one child generator per block of items, split off in order
 * before each parallel section, so a run is reproducible under the test
 * generator whatever the thread count. Initialisation is public (a seeded
 * statistical stream, as in factor.c).
 */
#include <privguide/dp.h>

#include "model/model_internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define DP_IALS_BLOCK 32       /* items per noise generator / work unit */
#define DP_IALS_USER_BLOCK 128 /* users per solve block */
#define DP_IALS_GRID_BITS 18   /* noise std between 2^18 and 2^19 grid steps */

void pvg_dp_ials_knobs_default(pvg_dp_ials_knobs *k)
{
    /* chosen on the validation splits (docs/models.md, "DP-iALS"): at the
     * noise these data sets need, the shift that keeps a noisy A_j
     * positive definite outweighs A_j itself, so its share goes to b */
    k->share_A = 0.0;
    k->share_b = 0.9;
    k->share_G = 0.1;
    k->shift = 1.0;
    k->js = 1.0;
}

double pvg_dp_ials_alpha0(const pvg_train_params *p, size_t n_items)
{
    if (p->alpha0 >= 0) return p->alpha0;
    int m = p->dp_max_items > 0 ? p->dp_max_items : PVG_DP_IALS_DEFAULT_M;
    double alpha = p->alpha < 0 ? PVG_IALS_DP_ALPHA : p->alpha; /* never data-derived */
    return n_items > 0 ? alpha * (double)m / (double)n_items : 0;
}

double pvg_dp_ials_epsilon(double z, int iterations, double delta)
{
    double orders[256], rdp[256];
    size_t n = pvg_dp_default_orders(orders, 256);
    for (size_t i = 0; i < n; i++)
        rdp[i] = (double)iterations * pvg_dp_rdp_gaussian(z, orders[i]);
    return pvg_dp_rdp_to_epsilon(orders, rdp, n, delta, PVG_DP_CONVERSION_IMPROVED, NULL);
}

/* The smallest z (to 1e-9 relative, rounded up) whose epsilon is <= eps. */
static double calibrate_z(double eps, int iterations, double delta)
{
    double lo = 1e-3, hi = 1e-3;
    while (pvg_dp_ials_epsilon(hi, iterations, delta) > eps && hi < 1e7)
        hi *= 2;
    if (hi >= 1e7) return hi;
    while (hi / lo > 1 + 1e-9) {
        double mid = sqrt(lo * hi);
        if (pvg_dp_ials_epsilon(mid, iterations, delta) > eps)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

pvg_status pvg_dp_ials_clip(const pvg_csr *R, int m, pvg_rng *rng, pvg_csr *out)
{
    memset(out, 0, sizeof *out);
    size_t nu = R->n_rows, nnz = 0, maxrow = 0;
    for (size_t u = 0; u < nu; u++) {
        size_t n = (size_t)(R->indptr[u + 1] - R->indptr[u]);
        nnz += n < (size_t)m ? n : (size_t)m;
        if (n > maxrow) maxrow = n;
    }
    out->n_rows = nu;
    out->n_cols = R->n_cols;
    out->nnz = nnz;
    out->indptr = malloc((nu + 1) * sizeof *out->indptr);
    out->indices = malloc((nnz ? nnz : 1) * sizeof *out->indices);
    out->data = malloc((nnz ? nnz : 1) * sizeof *out->data);
    uint32_t *tmp = malloc((maxrow ? maxrow : 1) * sizeof *tmp);
    if (!out->indptr || !out->indices || !out->data || !tmp) {
        free(tmp);
        pvg_csr_free(out);
        return PVG_ERR_NOMEM;
    }
    size_t o = 0;
    out->indptr[0] = 0;
    for (size_t u = 0; u < nu; u++) {
        uint64_t j0 = R->indptr[u];
        size_t n = (size_t)(R->indptr[u + 1] - j0);
        if (n <= (size_t)m) {
            memcpy(out->indices + o, R->indices + j0, n * sizeof *tmp);
            o += n;
        } else {
            /* a uniformly random m-subset: partial Fisher-Yates, then the
             * kept columns in their (sorted) order */
            memcpy(tmp, R->indices + j0, n * sizeof *tmp);
            for (size_t k = 0; k < (size_t)m; k++) {
                size_t r = k + (size_t)pvg_rng_uniform(rng, n - k);
                uint32_t t = tmp[k];
                tmp[k] = tmp[r];
                tmp[r] = t;
            }
            uint32_t *dst = out->indices + o;
            memcpy(dst, tmp, (size_t)m * sizeof *tmp);
            for (size_t a = 1; a < (size_t)m; a++) { /* insertion sort (m is small) */
                uint32_t x = dst[a];
                size_t b = a;
                while (b > 0 && dst[b - 1] > x) {
                    dst[b] = dst[b - 1];
                    b--;
                }
                dst[b] = x;
            }
            o += (size_t)m;
        }
        out->indptr[u + 1] = o;
    }
    for (size_t k = 0; k < nnz; k++)
        out->data[k] = 1.0f;
    free(tmp);
    return PVG_OK;
}

void pvg_dp_ials_unit_rows(const float *U, size_t n, size_t f, double *Ub)
{
    for (size_t u = 0; u < n; u++) {
        double s = 0;
        for (size_t k = 0; k < f; k++)
            s += (double)U[u * f + k] * U[u * f + k];
        double sc = s > 0 ? 1.0 / sqrt(s) : 0.0;
        for (size_t k = 0; k < f; k++)
            Ub[u * f + k] = sc * U[u * f + k];
    }
}

void pvg_dp_ials_item_stats(const pvg_csr *Cc, size_t j, const double *Ub, size_t f, double *gather,
                            double *A, double *b)
{
    uint64_t k0 = Cc->indptr[j];
    size_t n = (size_t)(Cc->indptr[j + 1] - k0);
    memset(b, 0, f * sizeof *b);
    for (size_t q = 0; q < n; q++) {
        const double *u = Ub + (size_t)Cc->indices[k0 + q] * f;
        memcpy(gather + q * f, u, f * sizeof *u);
        for (size_t k = 0; k < f; k++)
            b[k] += u[k];
    }
    memset(A, 0, f * f * sizeof *A);
    if (n)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)f, (int)n, 1.0, gather, (int)f, 0.0,
                    A, (int)f);
}

/* A grid step of about sigma / 2^18: the largest power of two <= that. */
static double grid_of(double sigma)
{
    return ldexp(1.0, (int)floor(log2(sigma)) - DP_IALS_GRID_BITS);
}

/* The noise of one statistic on its grid g: sigma = z * sens (sens
 * inflated for the rounding), sigma^2 / g^2 = num grid steps^2 (rounded
 * up, so never less noise than the accounting assumes). */
typedef struct dp_noise {
    double sigma, g, sens;
    uint64_t num;
} dp_noise;

static void noise_make(dp_noise *nz, double z, double sens0, double coords)
{
    double g = grid_of(z * sens0);
    /* |round(x) - round(x')| <= |x - x'| + g per coordinate (the double
     * sums' own error, below 2^-40 of n, is far inside another g) */
    nz->sens = sens0 + 2.0 * g * sqrt(coords);
    nz->sigma = z * nz->sens;
    nz->g = grid_of(nz->sigma);
    /* the inflation used the first grid; the second is never coarser than
     * twice it only if sigma grew less than 2x, which 2 g sqrt(coords) <<
     * sens0 ensures; recompute the inflation with the final grid anyway */
    nz->sens = sens0 + 2.0 * nz->g * sqrt(coords);
    nz->sigma = z * nz->sens;
    double r = nz->sigma / nz->g;
    nz->num = (uint64_t)ceil(r * r);
}

static inline double noisy(pvg_rng *rng, const dp_noise *nz, double x)
{
    return (nearbyint(x / nz->g) + (double)pvg_dp_discrete_gaussian(rng, nz->num, 1)) * nz->g;
}

/* A symmetric noisy f x f matrix: the upper triangle noised, mirrored. */
static void noisy_sym(pvg_rng *rng, const dp_noise *nz, double *A, size_t f)
{
    for (size_t a = 0; a < f; a++)
        for (size_t c = a; c < f; c++) {
            double v = noisy(rng, nz, A[a * f + c]);
            A[a * f + c] = v;
            A[c * f + a] = v;
        }
}

/* ---- the training loop ---------------------------------------------------- */

typedef struct item_ctx {
    const pvg_csr *Cc;
    const double *Ub; /* unit user factors */
    const double *G;  /* noisy Gram (alpha0 applied below) */
    size_t f;
    double alpha0, reg, nu, n_users_noisy, shift, js;
    int use_A;
    dp_noise nA, nb;
    pvg_rng **blk_rng;
    double **scratch; /* per thread */
    float *V;
    long *fallbacks; /* per thread: eigenvalue clips */
} item_ctx;

static void item_range(void *vctx, int tid, size_t b0, size_t e0)
{
    item_ctx *c = vctx;
    size_t f = c->f;
    double *A = c->scratch[tid], *bv = A + f * f, *M = bv + f, *w = M + f * f, *Q = w + f,
           *tmp = Q + f * f, *gather = tmp + f;
    for (size_t blk = b0 / DP_IALS_BLOCK; blk * DP_IALS_BLOCK < e0; blk++) {
        pvg_rng *rng = c->blk_rng[blk];
        size_t jb = blk * DP_IALS_BLOCK, je = jb + DP_IALS_BLOCK;
        if (je > c->Cc->n_rows) je = c->Cc->n_rows;
        for (size_t j = jb; j < je; j++) {
            pvg_dp_ials_item_stats(c->Cc, j, c->Ub, f, gather, A, bv);
            double cnt = 0;
            if (c->use_A) {
                noisy_sym(rng, &c->nA, A, f);
                for (size_t k = 0; k < f; k++)
                    cnt += A[k * f + k]; /* trace: the noisy count (unit rows) */
                if (cnt < 0) cnt = 0;
            } else {
                memset(A, 0, f * f * sizeof *A);
            }
            for (size_t k = 0; k < f; k++)
                bv[k] = noisy(rng, &c->nb, bv[k]);
            double reg = c->reg * pow(cnt + c->alpha0 * c->n_users_noisy, c->nu) + c->shift;
            for (size_t k = 0; k < f * f; k++)
                M[k] = A[k] + c->alpha0 * c->G[k];
            for (size_t k = 0; k < f; k++)
                M[k * f + k] += reg;
            memcpy(Q, M, f * f * sizeof *Q);
            memcpy(w, bv, f * sizeof *w);
            if (LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (lapack_int)f, 1, Q, (lapack_int)f, w, 1) !=
                0) {
                /* not positive definite: clip the eigenvalues at reg */
                c->fallbacks[tid]++;
                memcpy(Q, M, f * f * sizeof *Q);
                if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)f, Q, (lapack_int)f, w) !=
                    0) {
                    memset(w, 0, f * sizeof *w);
                } else {
                    double floor_ = reg > 1e-6 ? reg : 1e-6;
                    for (size_t k = 0; k < f; k++) { /* tmp = Q^T b / max(w, floor) */
                        double s = 0;
                        for (size_t a = 0; a < f; a++)
                            s += Q[a * f + k] * bv[a];
                        tmp[k] = s / (w[k] > floor_ ? w[k] : floor_);
                    }
                    for (size_t a = 0; a < f; a++) {
                        double s = 0;
                        for (size_t k = 0; k < f; k++)
                            s += Q[a * f + k] * tmp[k];
                        w[a] = s;
                    }
                }
            }
            /* post-processing: positive-part James-Stein shrinkage of the
             * item by the share of its noisy b that is not noise (E |b~|^2
             * = |b|^2 + f sigma_b^2): an item whose few buyers drown in the
             * noise goes to 0 instead of a random direction */
            double bb = 0;
            for (size_t k = 0; k < f; k++)
                bb += bv[k] * bv[k];
            double keep = bb > 0 ? 1.0 - c->js * (double)f * c->nb.sigma * c->nb.sigma / bb : 0;
            if (keep < 0) keep = 0;
            for (size_t k = 0; k < f; k++)
                c->V[j * f + k] = (float)(keep * w[k]);
        }
    }
}

typedef struct user_ctx {
    const pvg_csr *R;
    const float *V, *G;
    float *U;
    size_t f;
    float alpha0, conf;
    int cg_steps;
    const float *reg;
    float **scratch;
} user_ctx;

static void user_range(void *vctx, int tid, size_t b, size_t e)
{
    user_ctx *c = vctx;
    pvg_ials_solve_block(c->R, b, e - b, c->V, c->G, c->f, c->alpha0, c->reg + b, c->conf,
                         c->cg_steps, c->U, c->scratch[tid]);
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* public initialisation: N(0, std^2) from a seeded statistical stream */
static float *init_factors(size_t n, size_t f, double std, uint64_t seed)
{
    float *W = malloc((n ? n : 1) * f * sizeof *W);
    if (!W) return NULL;
    uint64_t s = seed;
    for (size_t i = 0; i < n * f; i++) {
        double u1 = ((splitmix(&s) >> 11) + 1) * (1.0 / 9007199254740993.0);
        double u2 = (splitmix(&s) >> 11) * (1.0 / 9007199254740992.0);
        W[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    return W;
}

pvg_status pvg_train_dp_ials(const pvg_csr *R, const pvg_csr *C, const pvg_train_params *p,
                             pvg_rng *rng, float **U, float **V, pvg_dp_report *rep,
                             pvg_train_stats *stats, pvg_error *err)
{
    return pvg_train_dp_ials_knobs(R, C, p, NULL, rng, U, V, rep, stats, err);
}

pvg_status pvg_train_dp_ials_knobs(const pvg_csr *R, const pvg_csr *C, const pvg_train_params *p,
                                   const pvg_dp_ials_knobs *k, pvg_rng *rng_in, float **U_out,
                                   float **V_out, pvg_dp_report *rep, pvg_train_stats *stats,
                                   pvg_error *err)
{
    (void)C; /* the item side runs over the clipped matrix only */
    *U_out = NULL;
    *V_out = NULL;
    memset(rep, 0, sizeof *rep);
    /* iALS's data-derived defaults read the private degrees: fixed ones here */
    pvg_train_params pfix = *p;
    if (pfix.reg < 0) pfix.reg = PVG_IALS_DP_REG;
    if (pfix.alpha < 0) pfix.alpha = PVG_IALS_DP_ALPHA;
    p = &pfix;
    size_t f = (size_t)p->factors, nu = R->n_rows, ni = R->n_cols;
    int T = p->epochs, threads = p->threads < 1 ? 1 : p->threads;
    int m = p->dp_max_items > 0 ? p->dp_max_items : PVG_DP_IALS_DEFAULT_M;
    if (!(p->dp_delta > 0 && p->dp_delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "dp-ials: delta must be in (0, 1) (got %g)",
                             p->dp_delta);
    if (!(p->dp_epsilon > 0) && !(p->dp_noise_multiplier > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp-ials: give epsilon > 0 or a noise multiplier > 0");
    if (p->dp_max_items < 0 || m > 1000000)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp-ials: max items per shopper must be in 1..1000000 (got %d)",
                             p->dp_max_items);
    if (f < 1 || f > 1024 || T < 1 || T > PVG_TRAIN_MAX_EPOCHS || !(p->alpha0 >= 0) ||
        !(p->reg >= 0) || !(p->nu >= 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp-ials: factors 1..1024, epochs 1..%d, alpha0, reg, nu >= 0",
                             PVG_TRAIN_MAX_EPOCHS);
    pvg_dp_ials_knobs kd;
    if (!k) {
        pvg_dp_ials_knobs_default(&kd);
        k = &kd;
    }
    /* the shares split one Gaussian's 1/z^2: they must not exceed it */
    if (!(k->share_A >= 0 && k->share_b > 0 && k->share_G > 0 &&
          k->share_A + k->share_b + k->share_G <= 1 + 1e-12 && k->shift >= 0 && k->js >= 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp-ials: noise shares must be A >= 0, b > 0, G > 0 with sum <= 1 "
                             "(got %g, %g, %g), shift and shrinkage >= 0",
                             k->share_A, k->share_b, k->share_G);
    pvg_rng *own = NULL, *rng = rng_in;
    if (!rng) {
        own = rng = pvg_rng_new_secure();
        if (!rng) return pvg_error_set(err, PVG_ERR_CRYPTO, "dp-ials: no secure generator");
    }
    pvg_status status =
        pvg_rng_require_secure(rng, p->dp_allow_insecure_rng, "DP-iALS training noise", err);
    if (status != PVG_OK) {
        pvg_rng_free(own);
        return status;
    }
    /* calibration */
    double z = p->dp_noise_multiplier > 0 ? p->dp_noise_multiplier
                                          : calibrate_z(p->dp_epsilon, T, p->dp_delta);
    double eps = pvg_dp_ials_epsilon(z, T, p->dp_delta);
    if (p->dp_noise_multiplier <= 0 && !(eps <= p->dp_epsilon)) {
        pvg_rng_free(own);
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp-ials: no noise multiplier reaches epsilon %g at delta %g",
                             p->dp_epsilon, p->dp_delta);
    }
    double fA = (double)f * (double)(f + 1) / 2;
    int use_A = k->share_A > 0;
    dp_noise nA = {0}, nb, nG;
    if (use_A) noise_make(&nA, z / sqrt(k->share_A), sqrt((double)m), (double)m * fA);
    noise_make(&nb, z / sqrt(k->share_b), sqrt((double)m), (double)m * (double)f);
    noise_make(&nG, z / sqrt(k->share_G), 1.0, fA);

    size_t nblk = (ni + DP_IALS_BLOCK - 1) / DP_IALS_BLOCK;
    pvg_csr Rc = {0}, Cc = {0};
    float *U = NULL, *V = NULL, *Gf = malloc(f * f * sizeof *Gf);
    double *Ub = malloc((nu ? nu : 1) * f * sizeof *Ub), *G = malloc(f * f * sizeof *G);
    float *reg_u = malloc((nu ? nu : 1) * sizeof *reg_u);
    float **uscr = calloc((size_t)threads, sizeof *uscr);
    double **iscr = calloc((size_t)threads, sizeof *iscr);
    long *fallbacks = calloc((size_t)threads, sizeof *fallbacks);
    pvg_rng **blk_rng = calloc(nblk ? nblk : 1, sizeof *blk_rng);
    double std = p->init_std > 0 ? p->init_std : 0.1 / sqrt((double)f);
    U = init_factors(nu, f, std, p->seed ^ 0x55aa55aaULL);
    V = init_factors(ni, f, std, p->seed ^ 0xa5a5a5a5ULL);
    if (!Gf || !Ub || !G || !reg_u || !uscr || !iscr || !fallbacks || !blk_rng || !U || !V) {
        status = pvg_error_set(err, PVG_ERR_NOMEM, "dp-ials: out of memory");
        goto done;
    }
    /* 1. the contribution bound */
    if (pvg_dp_ials_clip(R, m, rng, &Rc) != PVG_OK || pvg_csr_transpose(&Rc, &Cc) != PVG_OK) {
        status = pvg_error_set(err, PVG_ERR_NOMEM, "dp-ials: out of memory");
        goto done;
    }
    size_t maxcol = 0;
    for (size_t j = 0; j < ni; j++) {
        size_t n = (size_t)(Cc.indptr[j + 1] - Cc.indptr[j]);
        if (n > maxcol) maxcol = n;
    }
    for (int t = 0; t < threads; t++) {
        uscr[t] = malloc((5 * DP_IALS_USER_BLOCK * f + f * f + 16) * sizeof(float));
        iscr[t] = malloc((4 * f * f + 4 * f + (maxcol ? maxcol : 1) * f) * sizeof(double));
        if (!uscr[t] || !iscr[t]) {
            status = pvg_error_set(err, PVG_ERR_NOMEM, "dp-ials: out of memory");
            goto done;
        }
    }
    /* users: the non-DP regularisation, own history and public sizes only */
    for (size_t u = 0; u < nu; u++)
        reg_u[u] =
            (float)(p->reg *
                    pow((double)(R->indptr[u + 1] - R->indptr[u]) + p->alpha0 * (double)ni, p->nu));
    double shift =
        k->shift * 2.0 * sqrt((double)f) *
        sqrt((use_A ? nA.sigma * nA.sigma : 0) + p->alpha0 * p->alpha0 * nG.sigma * nG.sigma);
    double t0 = pvg_now_seconds();
    for (int ep = 0; ep <= T; ep++) {
        double te = pvg_now_seconds(), ce = pvg_cpu_seconds();
        /* users given the (published) item factors */
        pvg_blas_threaded_begin(threads);
        pvg_gramian(V, ni, f, Gf);
        pvg_blas_threaded_end();
        user_ctx cu = {R,           V,     Gf,  U, f, (float)p->alpha0, (float)p->confidence,
                       p->cg_steps, reg_u, uscr};
        pvg_parallel_for(threads, nu, DP_IALS_USER_BLOCK, user_range, &cu);
        if (ep == T) break; /* the last user solve: U matches the final V */
        /* items from the noisy statistics of the clipped, unit user rows */
        pvg_dp_ials_unit_rows(U, nu, f, Ub);
        memset(G, 0, f * f * sizeof *G);
        pvg_blas_threaded_begin(threads);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)f, (int)nu, 1.0, Ub, (int)f, 0.0, G,
                    (int)f);
        pvg_blas_threaded_end();
        noisy_sym(rng, &nG, G, f);
        double n_noisy = 0;
        for (size_t k = 0; k < f; k++)
            n_noisy += G[k * f + k];
        if (n_noisy < 1) n_noisy = 1;
        for (size_t b = 0; b < nblk; b++) {
            pvg_rng_free(blk_rng[b]);
            blk_rng[b] = pvg_rng_split(rng);
            if (!blk_rng[b]) {
                status = pvg_error_set(err, PVG_ERR_NOMEM, "dp-ials: out of memory");
                goto done;
            }
        }
        item_ctx ci = {&Cc,   Ub,    G,  f,  p->alpha0, p->reg, p->nu, n_noisy,  shift,
                       k->js, use_A, nA, nb, blk_rng,   iscr,   V,     fallbacks};
        pvg_parallel_for(threads, ni, DP_IALS_BLOCK, item_range, &ci);
        double secs = pvg_now_seconds() - te, cpu = pvg_cpu_seconds() - ce;
        if (stats) {
            if (stats->n_epochs < PVG_TRAIN_MAX_EPOCHS) {
                stats->epoch_cpu_seconds[stats->n_epochs] = cpu;
                stats->epoch_seconds[stats->n_epochs++] = secs;
            }
            stats->final_loss = NAN;
        }
        if (p->progress) {
            pvg_train_progress pr = {ep + 1, T, NAN, secs, pvg_now_seconds() - t0};
            p->progress(p->progress_ctx, &pr);
        }
    }
    rep->epsilon = eps;
    rep->delta = p->dp_delta;
    rep->noise_multiplier = z;
    rep->sensitivity = nb.sens;
    rep->max_items = m;
    rep->clip = 1.0;
    rep->mechanism = "dp-ials/gaussian-sufficient-statistics";
done:
    if (uscr)
        for (int t = 0; t < threads; t++)
            free(uscr[t]);
    if (iscr)
        for (int t = 0; t < threads; t++)
            free(iscr[t]);
    if (blk_rng)
        for (size_t b = 0; b < nblk; b++)
            pvg_rng_free(blk_rng[b]);
    free(blk_rng);
    free(uscr);
    free(iscr);
    free(fallbacks);
    free(Gf);
    free(G);
    if (Ub) sodium_memzero(Ub, (nu ? nu : 1) * f * sizeof *Ub);
    free(Ub);
    free(reg_u);
    pvg_csr_free(&Rc);
    pvg_csr_free(&Cc);
    pvg_rng_free(own);
    if (status != PVG_OK) {
        free(U);
        free(V);
        memset(rep, 0, sizeof *rep);
        return status;
    }
    *U_out = U;
    *V_out = V;
    return PVG_OK;
}

/* ---- the DP training framework's method (dp_train.c) ----------------------- */

pvg_status pvg_train_dp_ials_method(pvg_dp_train *t, pvg_model **out, pvg_train_stats *stats,
                                    pvg_error *err)
{
    *out = NULL;
    const pvg_csr *R = t->R;
    size_t ni = R->n_cols, nu = R->n_rows;
    pvg_train_params pp = *t->p;
    pp.dp_epsilon = t->epsilon;
    pp.dp_delta = t->delta;
    pp.dp_max_items = t->max_items;
    pp.threads = t->threads;
    if (pp.alpha0 < 0 && !(pp.alpha > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ials: give alpha0 >= 0, or alpha > 0 (alpha0 derived from it)");
    pp.alpha0 = pvg_dp_ials_alpha0(&pp, ni);
    if (pp.dp_noise_multiplier > 0 &&
        !(pvg_dp_ials_epsilon(pp.dp_noise_multiplier, pp.epochs, pp.dp_delta) <=
          t->epsilon * (1 + 1e-9)))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "dp-ials: noise multiplier %g over %d iterations gives epsilon %g at "
                             "delta %g, above the epsilon %g available to the method",
                             pp.dp_noise_multiplier, pp.epochs,
                             pvg_dp_ials_epsilon(pp.dp_noise_multiplier, pp.epochs, pp.dp_delta),
                             pp.dp_delta, t->epsilon);
    float *U, *V;
    pvg_status st = pvg_train_dp_ials(R, NULL, &pp, t->rng, &U, &V, &t->rep, stats, err);
    if (st != PVG_OK) return st;
    pvg_model *m;
    st = pvg_dp_model_new(t, &m, err);
    if (st != PVG_OK) {
        free(U);
        free(V);
        return st;
    }
    size_t f = (size_t)pp.factors, n16 = (ni + 7) / 8 * 8 * f;
    m->params.alpha0 = pp.alpha0; /* the fold-in solves with the weight training used */
    m->factors = f;
    pvg_model_set_section(m, PVG_SEC_USER_F, U, 4 * nu * f);
    pvg_model_set_section(m, PVG_SEC_ITEM_F, V, 4 * ni * f);
    float *G = malloc(f * f * sizeof *G);
    uint16_t *V16 = malloc(n16 * sizeof *V16);
    float *pop = malloc((ni ? ni : 1) * sizeof *pop);
    if (!G || !V16 || !pop) {
        free(G);
        free(V16);
        free(pop);
        pvg_model_free(m);
        return pvg_error_set(err, PVG_ERR_NOMEM, "dp-ials: out of memory");
    }
    /* the popularity section (the DP model's public popular list and cold
     * start) replaces the exact buyer counts pvg_model_new_common put there:
     * |V_j|, post-processing of the DP item factors (the James-Stein
     * shrinkage sends an item whose few buyers drown in the noise to 0) */
    for (size_t j = 0; j < ni; j++) {
        double s = 0;
        for (size_t k = 0; k < f; k++)
            s += (double)V[j * f + k] * V[j * f + k];
        pop[j] = (float)sqrt(s);
    }
    pvg_model_set_section(m, PVG_SEC_POPULARITY, pop, 4 * ni);
    pvg_gramian(V, ni, f, G);
    pvg_model_set_section(m, PVG_SEC_GRAM, G, 4 * f * f);
    pvg_f16_pack(V, ni, f, V16);
    pvg_model_set_section(m, PVG_SEC_ITEM_F16, V16, 2 * n16);
    *out = m;
    return PVG_OK;
}
