/*
 * neighbors.c - item-item models: cosine item-kNN with shrinkage (sparse
 * accumulation, top-N neighbours per item) and EASE (Steck 2019, closed
 * form through a Cholesky inverse), each with a naive dense reference.
 */
#include "model/model_internal.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- item-kNN ------------------------------------------------------------- */

typedef struct knn_ctx {
    const pvg_csr *R, *C;
    const float *norm;
    int nbrs;
    float shrink;
    float **acc;        /* per thread [n_items] */
    uint32_t **touched; /* per thread [n_items] */
    int64_t **tidx;     /* per thread [nbrs] */
    float **tsc;
    float **cand;      /* per thread [n_items] compacted candidate scores */
    uint32_t *cnt;     /* neighbours kept per item */
    uint32_t *idx_all; /* [n_items * nbrs] */
    float *sim_all;
} knn_ctx;

static void knn_range(void *vctx, int tid, size_t b, size_t e)
{
    knn_ctx *c = vctx;
    float *acc = c->acc[tid];
    uint32_t *touched = c->touched[tid];
    float *cand = c->cand[tid];
    for (size_t i = b; i < e; i++) {
        size_t nt = 0;
        /* shapes: C row i = users of item i; R row u = items of user u */
        for (uint64_t a = c->C->indptr[i]; a < c->C->indptr[i + 1]; a++) {
            uint32_t u = c->C->indices[a];
            for (uint64_t q = c->R->indptr[u]; q < c->R->indptr[u + 1]; q++) {
                uint32_t j = c->R->indices[q];
                if (j == i) continue;
                if (acc[j] == 0) touched[nt++] = j;
                acc[j] += 1.0f;
            }
        }
        for (size_t t = 0; t < nt; t++) {
            uint32_t j = touched[t];
            cand[t] = acc[j] / (c->norm[i] * c->norm[j] + c->shrink);
            acc[j] = 0;
        }
        size_t m = pvg_topk(cand, nt, (size_t)c->nbrs, c->tidx[tid], c->tsc[tid]);
        for (size_t t = 0; t < m; t++) {
            c->idx_all[i * (size_t)c->nbrs + t] = touched[c->tidx[tid][t]];
            c->sim_all[i * (size_t)c->nbrs + t] = c->tsc[tid][t];
        }
        c->cnt[i] = (uint32_t)m;
    }
}

pvg_status pvg_knn_build(const pvg_csr *R, const pvg_csr *C, int nbrs, float shrink, int threads,
                         pvg_csr *S)
{
    memset(S, 0, sizeof *S);
    size_t n = C->n_rows;
    if (threads < 1) threads = 1;
    if (nbrs < 1) return PVG_ERR_INVALID;
    knn_ctx c = {R, C, NULL, nbrs, shrink, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    pvg_status st = PVG_ERR_NOMEM;
    float *norm = malloc((n ? n : 1) * sizeof *norm);
    c.acc = calloc((size_t)threads, sizeof *c.acc);
    c.touched = calloc((size_t)threads, sizeof *c.touched);
    c.tidx = calloc((size_t)threads, sizeof *c.tidx);
    c.tsc = calloc((size_t)threads, sizeof *c.tsc);
    c.cand = calloc((size_t)threads, sizeof *c.cand);
    c.cnt = calloc(n ? n : 1, sizeof *c.cnt);
    c.idx_all = malloc((n ? n : 1) * (size_t)nbrs * sizeof *c.idx_all);
    c.sim_all = malloc((n ? n : 1) * (size_t)nbrs * sizeof *c.sim_all);
    if (!norm || !c.acc || !c.touched || !c.tidx || !c.tsc || !c.cand || !c.cnt || !c.idx_all ||
        !c.sim_all)
        goto done;
    for (int t = 0; t < threads; t++) {
        c.acc[t] = calloc(n ? n : 1, sizeof(float));
        c.touched[t] = malloc((n ? n : 1) * sizeof(uint32_t));
        c.cand[t] = malloc((n ? n : 1) * sizeof(float));
        c.tidx[t] = malloc((size_t)nbrs * sizeof(int64_t));
        c.tsc[t] = malloc((size_t)nbrs * sizeof(float));
        if (!c.acc[t] || !c.touched[t] || !c.cand[t] || !c.tidx[t] || !c.tsc[t]) goto done;
    }
    /* binary vectors: |x_i| = sqrt(#users of i) */
    for (size_t i = 0; i < n; i++)
        norm[i] = sqrtf((float)(C->indptr[i + 1] - C->indptr[i]));
    c.norm = norm;
    pvg_parallel_for(threads, n, 64, knn_range, &c);
    S->indptr = calloc(n + 1, sizeof *S->indptr);
    if (!S->indptr) goto done;
    for (size_t i = 0; i < n; i++)
        S->indptr[i + 1] = S->indptr[i] + c.cnt[i];
    size_t nnz = S->indptr[n];
    S->indices = malloc((nnz ? nnz : 1) * sizeof *S->indices);
    S->data = malloc((nnz ? nnz : 1) * sizeof *S->data);
    if (!S->indices || !S->data) {
        pvg_csr_free(S);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(S->indices + S->indptr[i], c.idx_all + i * (size_t)nbrs,
               c.cnt[i] * sizeof(uint32_t));
        memcpy(S->data + S->indptr[i], c.sim_all + i * (size_t)nbrs, c.cnt[i] * sizeof(float));
    }
    S->n_rows = n;
    S->n_cols = n;
    S->nnz = nnz;
    st = PVG_OK;
done:
    for (int t = 0; t < threads; t++) {
        if (c.acc) free(c.acc[t]);
        if (c.touched) free(c.touched[t]);
        if (c.cand) free(c.cand[t]);
        if (c.tidx) free(c.tidx[t]);
        if (c.tsc) free(c.tsc[t]);
    }
    free(c.acc);
    free(c.touched);
    free(c.cand);
    free(c.tidx);
    free(c.tsc);
    free(c.cnt);
    free(c.idx_all);
    free(c.sim_all);
    free(norm);
    return st;
}

/* Sd[n x n] dense cosine with shrinkage, diagonal 0 (binary R). */
void pvg_knn_dense_naive(const pvg_csr *R, size_t n, float shrink, float *Sd)
{
    double *co = calloc(n * n, sizeof *co);
    if (!co) return;
    for (size_t u = 0; u < R->n_rows; u++)
        for (uint64_t a = R->indptr[u]; a < R->indptr[u + 1]; a++)
            for (uint64_t b = R->indptr[u]; b < R->indptr[u + 1]; b++)
                co[(size_t)R->indices[a] * n + R->indices[b]] += 1.0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            Sd[i * n + j] =
                i == j
                    ? 0.0f
                    : (float)(co[i * n + j] / (sqrt(co[i * n + i]) * sqrt(co[j * n + j]) + shrink));
    free(co);
}

/* ---- EASE ------------------------------------------------------------------- */

typedef struct gram_ctx {
    const pvg_csr *R, *C;
    size_t n;
    float *G;
} gram_ctx;

static void gram_range(void *vctx, int tid, size_t b, size_t e)
{
    gram_ctx *c = vctx;
    for (size_t i = b; i < e; i++) {
        float *row = c->G + i * c->n;
        for (uint64_t a = c->C->indptr[i]; a < c->C->indptr[i + 1]; a++) {
            uint32_t u = c->C->indices[a];
            for (uint64_t q = c->R->indptr[u]; q < c->R->indptr[u + 1]; q++)
                row[c->R->indices[q]] += 1.0f;
        }
    }
}

/* The primal form on a matrix whose items all have interactions
 * (src/model/ease.c chooses the form and compacts the items). */
pvg_status pvg_ease_primal(const pvg_csr *R, const pvg_csr *C, size_t n, float lambda, int threads,
                           float *B, pvg_error *err)
{
    memset(B, 0, n * n * sizeof *B);
    gram_ctx g = {R, C, n, B};
    pvg_parallel_for(threads, n, 16, gram_range, &g);
    for (size_t i = 0; i < n; i++)
        B[i * n + i] += lambda;
    pvg_blas_threaded_begin(threads);
    lapack_int rc = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, B, (lapack_int)n);
    if (rc == 0) rc = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, B, (lapack_int)n);
    pvg_blas_threaded_end();
    if (rc != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL,
                             "ease: Cholesky inversion failed (LAPACK info %d); raise --lambda",
                             (int)rc);
    /* P lower triangle -> full; B_ij = -P_ij / P_jj, diag 0 */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            B[i * n + j] = B[j * n + i];
    float *dinv = malloc((n ? n : 1) * sizeof *dinv);
    if (!dinv) return pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory");
    for (size_t j = 0; j < n; j++)
        dinv[j] = 1.0f / B[j * n + j];
    for (size_t i = 0; i < n; i++) {
        float *row = B + i * n;
        for (size_t j = 0; j < n; j++)
            row[j] = -row[j] * dinv[j];
        row[i] = 0;
    }
    free(dinv);
    return PVG_OK;
}

/* Gauss-Jordan inverse in double of X^T X + lambda Inv (tests: small n). */
void pvg_ease_fit_naive(const pvg_csr *R, size_t n, double lambda, float *B)
{
    double *A = calloc(n * n, sizeof *A), *Inv = calloc(n * n, sizeof *Inv);
    if (!A || !Inv) {
        free(A);
        free(Inv);
        return;
    }
    for (size_t u = 0; u < R->n_rows; u++)
        for (uint64_t a = R->indptr[u]; a < R->indptr[u + 1]; a++)
            for (uint64_t b = R->indptr[u]; b < R->indptr[u + 1]; b++)
                A[(size_t)R->indices[a] * n + R->indices[b]] += 1.0;
    for (size_t i = 0; i < n; i++) {
        A[i * n + i] += lambda;
        Inv[i * n + i] = 1.0;
    }
    for (size_t c = 0; c < n; c++) {
        double piv = A[c * n + c];
        for (size_t j = 0; j < n; j++) {
            A[c * n + j] /= piv;
            Inv[c * n + j] /= piv;
        }
        for (size_t r = 0; r < n; r++) {
            if (r == c) continue;
            double fct = A[r * n + c];
            for (size_t j = 0; j < n; j++) {
                A[r * n + j] -= fct * A[c * n + j];
                Inv[r * n + j] -= fct * Inv[c * n + j];
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            B[i * n + j] = i == j ? 0.0f : (float)(-Inv[i * n + j] / Inv[j * n + j]);
    free(A);
    free(Inv);
}
