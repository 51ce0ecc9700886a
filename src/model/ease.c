/*
 * ease.c - EASE (Steck 2019) in the primal or the dual form, over the items
 * with interactions only.
 *
 * Primal: P = (X^T X + lambda I_m)^-1 (m x m, items), B_ij = -P_ij / P_jj.
 * Dual (Woodbury, when the n users are fewer than the m items):
 *   (lambda I_m + X^T X)^-1 = (I_m - X^T (lambda I_n + X X^T)^-1 X) / lambda
 * so with Q = (X X^T + lambda I_n)^-1 (n x n) and M = X^T Q X,
 *   P = (I - M) / lambda,  B_ij = -P_ij / P_jj = M_ij / (1 - M_jj)  (i != j).
 * The cost is an n x n Cholesky inverse (n^3) and two sparse-dense
 * products, Z = Q X (n x nnz) and M = X^T Z (nnz x m, half of it by
 * symmetry), against m^3 for the primal. docs/models.md derives it.
 */
#include "model/model_internal.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TILE 512

/* The body twice: an AVX2 build and a portable one, chosen at run time
 * (the compiler vectorises both; no ifunc, which not every toolchain of
 * the project's builds provides). */
#define TILE_ADD_BODY                                                                              \
    {                                                                                              \
        size_t j = 0;                                                                              \
        /* 64 sums held in registers over all the rows */                                          \
        for (; j + 64 <= t; j += 64) {                                                             \
            float v[64];                                                                           \
            for (size_t q = 0; q < 64; q++)                                                        \
                v[q] = acc[j + q];                                                                 \
            for (size_t a = 0; a < n; a++) {                                                       \
                const float *restrict row = B + (size_t)rows[a] * ni + j0 + j;                     \
                for (size_t q = 0; q < 64; q++)                                                    \
                    v[q] += row[q];                                                                \
            }                                                                                      \
            for (size_t q = 0; q < 64; q++)                                                        \
                acc[j + q] = v[q];                                                                 \
        }                                                                                          \
        for (size_t a = 0; a < n && j < t; a++) {                                                  \
            const float *restrict row = B + (size_t)rows[a] * ni + j0;                             \
            for (size_t q = j; q < t; q++)                                                         \
                acc[q] += row[q];                                                                  \
        }                                                                                          \
    }

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) static void
tile_add_avx2(float *restrict acc, const float *restrict B, size_t ni, const uint32_t *rows,
              size_t n, size_t j0, size_t t) TILE_ADD_BODY
#endif

    static void tile_add_portable(float *restrict acc, const float *restrict B, size_t ni,
                                  const uint32_t *rows, size_t n, size_t j0, size_t t) TILE_ADD_BODY

    void pvg_ease_tile_add(float *restrict acc, const float *restrict B, size_t ni,
                           const uint32_t *rows, size_t n, size_t j0, size_t t)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx2")) {
        tile_add_avx2(acc, B, ni, rows, n, j0, t);
        return;
    }
#endif
    tile_add_portable(acc, B, ni, rows, n, j0, t);
}

void pvg_ease_plan_of(const pvg_csr *R, pvg_ease_form form, pvg_ease_plan *pl)
{
    size_t n = R->n_cols, users = 0, items = 0;
    unsigned char *seen = calloc(n ? n : 1, 1);
    for (size_t u = 0; u < R->n_rows; u++)
        users += R->indptr[u + 1] > R->indptr[u];
    for (size_t q = 0; seen && q < R->nnz; q++)
        if (!seen[R->indices[q]]) {
            seen[R->indices[q]] = 1;
            items++;
        }
    free(seen);
    pl->users = users;
    pl->items = items;
    pl->form = form != PVG_EASE_AUTO ? form : users < items ? PVG_EASE_DUAL : PVG_EASE_PRIMAL;
    double N = (double)n, m = (double)items, u = (double)users, nnz = (double)R->nnz;
    /* B (the model's n x n, the fit works inside it), the compact matrix
     * and its transpose, maps */
    double b = 4 * N * N + 2 * (16 * nnz + 8 * (u + m)) + 8 * (N + (double)R->n_rows);
    if (pl->form == PVG_EASE_DUAL)
        b += 4 * u * u + 8 * u * u + 4 * u * m; /* user Gram (float, double), Z = Q X */
    else
        b += 4 * m;
    pl->bytes = b;
}

/* ---- the dual form ---- */

typedef struct dual_ctx {
    const pvg_csr *R, *C; /* compact: u x m and m x u */
    size_t u, m;
    float *K;       /* u x u */
    const float *Q; /* u x u */
    float *Z;       /* u x m */
    float *M;       /* m x m */
    size_t j0, t;
} dual_ctx;

static void user_gram_range(void *vctx, int tid, size_t b, size_t e)
{
    dual_ctx *c = vctx;
    for (size_t a = b; a < e; a++) {
        float *row = c->K + a * c->u;
        for (uint64_t q = c->R->indptr[a]; q < c->R->indptr[a + 1]; q++) {
            uint32_t i = c->R->indices[q];
            for (uint64_t r = c->C->indptr[i]; r < c->C->indptr[i + 1]; r++)
                row[c->C->indices[r]] += 1.0f;
        }
    }
}

/* Z[a, :] = sum_b Q[a, b] X[b, :] */
static void z_range(void *vctx, int tid, size_t b0, size_t e)
{
    dual_ctx *c = vctx;
    for (size_t a = b0; a < e; a++) {
        float *z = c->Z + a * c->m;
        const float *q = c->Q + a * c->u;
        for (size_t b = 0; b < c->u; b++) {
            float w = q[b];
            for (uint64_t r = c->R->indptr[b]; r < c->R->indptr[b + 1]; r++)
                z[c->R->indices[r]] += w;
        }
    }
}

/* M[i, j0:j0+t] = sum over the users a of item i of Z[a, j0:j0+t] */
static void m_range(void *vctx, int tid, size_t b, size_t e)
{
    dual_ctx *c = vctx;
    for (size_t i = b; i < e; i++)
        pvg_ease_tile_add(c->M + i * c->m + c->j0, c->Z, c->m, c->C->indices + c->C->indptr[i],
                          (size_t)(c->C->indptr[i + 1] - c->C->indptr[i]), c->j0, c->t);
}

static pvg_status ease_dual(const pvg_csr *R, const pvg_csr *C, size_t u, size_t m, float lambda,
                            int threads, float *M, pvg_error *err)
{
    float *K = calloc(u ? u * u : 1, sizeof *K);
    double *Kd = malloc((u ? u * u : 1) * sizeof *Kd);
    if (!K || !Kd) {
        free(K);
        free(Kd);
        return pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory (user Gram %zu x %zu)", u, u);
    }
    dual_ctx c = {R, C, u, m, K, NULL, NULL, M, 0, 0};
    pvg_parallel_for(threads, u, 16, user_gram_range, &c);
    for (size_t i = 0; i < u * u; i++)
        Kd[i] = K[i];
    for (size_t a = 0; a < u; a++)
        Kd[a * u + a] += lambda;
    pvg_blas_threaded_begin(threads);
    lapack_int rc = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)u, Kd, (lapack_int)u);
    if (rc == 0) rc = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)u, Kd, (lapack_int)u);
    pvg_blas_threaded_end();
    if (rc != 0) {
        free(K);
        free(Kd);
        return pvg_error_set(err, PVG_ERR_INTERNAL,
                             "ease: Cholesky inversion of the user Gram failed (LAPACK info %d); "
                             "raise --lambda",
                             (int)rc);
    }
    /* Q (lower triangle) -> full, in float */
    for (size_t a = 0; a < u; a++)
        for (size_t b = 0; b <= a; b++)
            K[a * u + b] = K[b * u + a] = (float)Kd[a * u + b];
    free(Kd);
    float *Z = calloc(u && m ? u * m : 1, sizeof *Z);
    if (!Z) {
        free(K);
        return pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory (Z %zu x %zu)", u, m);
    }
    c.Q = K;
    c.Z = Z;
    pvg_parallel_for(threads, u, 4, z_range, &c);
    free(K);
    /* M = X^T Z, the upper triangle by column tiles (then mirrored) */
    memset(M, 0, m * m * sizeof *M);
    for (size_t j0 = 0; j0 < m; j0 += TILE) {
        c.j0 = j0;
        c.t = m - j0 < TILE ? m - j0 : TILE;
        pvg_parallel_for(threads, j0 + c.t, 16, m_range, &c);
    }
    free(Z);
    for (size_t i = 0; i < m; i++)
        for (size_t j = i + 1; j < m; j++)
            M[j * m + i] = M[i * m + j];
    /* B_ij = M_ij / (1 - M_jj), diagonal 0 */
    float *d = malloc((m ? m : 1) * sizeof *d);
    if (!d) return pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory");
    for (size_t j = 0; j < m; j++)
        d[j] = 1.0f / (1.0f - M[j * m + j]);
    for (size_t i = 0; i < m; i++) {
        float *row = M + i * m;
        for (size_t j = 0; j < m; j++)
            row[j] *= d[j];
        row[i] = 0;
    }
    free(d);
    return PVG_OK;
}

pvg_status pvg_ease_fit(const pvg_csr *R, const pvg_csr *C, size_t n, float lambda, int threads,
                        float *B, pvg_error *err)
{
    return pvg_ease_fit_form(R, C, n, lambda, threads, PVG_EASE_AUTO, B, err);
}

pvg_status pvg_ease_fit_form(const pvg_csr *R, const pvg_csr *C, size_t n, float lambda,
                             int threads, pvg_ease_form form, float *B, pvg_error *err)
{
    (void)C;
    if (!(lambda > 0))
        return pvg_error_set(err, PVG_ERR_INVALID, "ease: lambda must be > 0 (got %g)", lambda);
    if (n > PVG_EASE_MAX_ITEMS)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "ease: the catalog has %zu items; EASE keeps a dense item-item "
                             "matrix and is limited to %d items (use ials or itemknn)",
                             n, PVG_EASE_MAX_ITEMS);
    pvg_ease_plan pl;
    pvg_ease_plan_of(R, form, &pl);
    size_t m = pl.items, u = pl.users;
    if (m > PVG_EASE_MAX_ITEMS)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "ease: %zu items have interactions; EASE keeps a dense item-item "
                             "matrix and is limited to %d items (use ials or itemknn)",
                             m, PVG_EASE_MAX_ITEMS);
    if (!B) return PVG_OK; /* the check alone */
    /* the compact matrix: users and items with interactions, in order */
    uint32_t *imap = malloc((n ? n : 1) * sizeof *imap),
             *iback = malloc((m ? m : 1) * sizeof *iback);
    pvg_csr Rc = {0}, Cc = {0};
    Rc.indptr = malloc((u + 1) * sizeof *Rc.indptr);
    Rc.indices = malloc((R->nnz ? R->nnz : 1) * sizeof *Rc.indices);
    if (!imap || !iback || !Rc.indptr || !Rc.indices) {
        free(imap);
        free(iback);
        pvg_csr_free(&Rc);
        return pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        imap[i] = UINT32_MAX;
    for (size_t q = 0; q < R->nnz; q++)
        imap[R->indices[q]] = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (imap[i] == 0) {
            iback[k] = (uint32_t)i;
            imap[i] = (uint32_t)k++;
        }
    Rc.n_rows = u;
    Rc.n_cols = m;
    Rc.nnz = R->nnz;
    Rc.data = R->data; /* borrowed: the same positions */
    size_t a = 0;
    Rc.indptr[0] = 0;
    for (size_t r = 0; r < R->n_rows; r++) {
        if (R->indptr[r + 1] == R->indptr[r]) continue;
        for (uint64_t q = R->indptr[r]; q < R->indptr[r + 1]; q++)
            Rc.indices[q] = imap[R->indices[q]];
        Rc.indptr[++a] = R->indptr[r + 1];
    }
    pvg_status st = pvg_csr_transpose(&Rc, &Cc) == PVG_OK
                        ? PVG_OK
                        : pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory");
    if (st == PVG_OK)
        st = pl.form == PVG_EASE_DUAL ? ease_dual(&Rc, &Cc, u, m, lambda, threads, B, err)
                                      : pvg_ease_primal(&Rc, &Cc, m, lambda, threads, B, err);
    Rc.data = NULL;
    pvg_csr_free(&Rc);
    pvg_csr_free(&Cc);
    if (st == PVG_OK && m < n) {
        /* B holds the m x m matrix at its start: spread it to the n x n
         * places from the end (each entry moves to a place at or after its
         * own, so none is overwritten before it is read), then zero the
         * rows and columns of the items without interactions */
        for (size_t i = m; i-- > 0;)
            for (size_t j = m; j-- > 0;)
                B[(size_t)iback[i] * n + iback[j]] = B[i * m + j];
        for (size_t i = 0; i < n; i++) {
            if (imap[i] == UINT32_MAX) {
                memset(B + i * n, 0, n * sizeof *B);
                continue;
            }
            for (size_t j = 0; j < n; j++)
                if (imap[j] == UINT32_MAX) B[i * n + j] = 0;
        }
    }
    free(imap);
    free(iback);
    return st;
}
