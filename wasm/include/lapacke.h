/*
 * lapacke.h (WebAssembly build only) - the one LAPACK routine src/fl/fedcf.c
 * names. It is used by the server's step (pvg_fl_model_apply), which the
 * browser client never runs; wasm/support.c defines it to fail with an
 * error, so a call can never pass silently.
 */
#ifndef PVG_WASM_LAPACKE_H
#define PVG_WASM_LAPACKE_H

typedef int lapack_int;
#define LAPACK_ROW_MAJOR 101

lapack_int LAPACKE_dsyev(int layout, char jobz, char uplo, lapack_int n, double *a, lapack_int lda,
                         double *w);

#endif
