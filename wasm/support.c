/*
 * support.c (WebAssembly build only) - the few functions of src/model/kernels.c
 * that src/fl/fedcf.c uses, without BLAS, threads or x86 intrinsics: the
 * clock, scoring (V u, accumulated in double as pvg_matvec_naive) and top-k
 * (pvg_topk's order: higher score first, ties to the lower index; NaN and
 * -inf skipped). And LAPACKE_dsyev, which only the server's step calls: it
 * fails (the browser client never applies a sum). And pvg_free (src/store/store.c).
 */
#include "model/model_internal.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

double pvg_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void pvg_matvec(const float *V, size_t n, size_t f, const float *u, float *scores)
{
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < f; j++)
            s += (double)V[i * f + j] * u[j];
        scores[i] = (float)s;
    }
}

typedef struct si {
    float s;
    int64_t i;
} si;

static int si_cmp(const void *a, const void *b)
{
    const si *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

size_t pvg_topk(const float *scores, size_t n, size_t k, int64_t *idx, float *sc)
{
    if (k == 0) return 0;
    si *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (scores[i] != -INFINITY && scores[i] == scores[i]) p[m++] = (si){scores[i], (int64_t)i};
    qsort(p, m, sizeof *p, si_cmp);
    if (m > k) m = k;
    for (size_t i = 0; i < m; i++) {
        idx[i] = p[i].i;
        sc[i] = p[i].s;
    }
    free(p);
    return m;
}

lapack_int LAPACKE_dsyev(int layout, char jobz, char uplo, lapack_int n, double *a, lapack_int lda,
                         double *w)
{
    (void)layout, (void)jobz, (void)uplo, (void)n, (void)a, (void)lda, (void)w;
    return -1; /* the browser client has no server step */
}

/* src/store/store.c's: frees what the library returns (the SecAgg messages) */
void pvg_free(void *p)
{
    free(p);
}
