/*
 * cholesky.c - the dense Cholesky factorisation and solve shared by the
 * exact iALS row solve (kernels.c), the closed-form fold-in behind "why
 * this?" (explain.c: one factor, many right-hand sides) and the federated
 * client's user solve (src/fl/fedcf.c). It has no dependency beyond libm, so
 * the WebAssembly client (wasm/build.sh) compiles the same file.
 */
#include "model/model_internal.h"

#include <math.h>

int pvg_cholesky_factor(double *A, size_t f)
{
    for (size_t j = 0; j < f; j++) {
        double d = A[j * f + j];
        for (size_t k = 0; k < j; k++)
            d -= A[j * f + k] * A[j * f + k];
        if (!(d > 0)) return -1;
        d = sqrt(d);
        A[j * f + j] = d;
        for (size_t i = j + 1; i < f; i++) {
            double s = A[i * f + j];
            for (size_t k = 0; k < j; k++)
                s -= A[i * f + k] * A[j * f + k];
            A[i * f + j] = s / d;
        }
    }
    return 0;
}

void pvg_cholesky_solve_factored(const double *L, size_t f, double *x)
{
    for (size_t i = 0; i < f; i++) {
        double s = x[i];
        for (size_t k = 0; k < i; k++)
            s -= L[i * f + k] * x[k];
        x[i] = s / L[i * f + i];
    }
    for (size_t i = f; i-- > 0;) {
        double s = x[i];
        for (size_t k = i + 1; k < f; k++)
            s -= L[k * f + i] * x[k];
        x[i] = s / L[i * f + i];
    }
}

int pvg_cholesky_solve(double *A, size_t f, double *x)
{
    if (pvg_cholesky_factor(A, f) != 0) return -1;
    pvg_cholesky_solve_factored(A, f, x);
    return 0;
}
