/*
 * test_blas_threads.c - OpenBLAS's process-wide thread count is never
 * changed under another thread's BLAS work: while one thread runs threaded
 * Gramians (as iALS and EASE do), parallel sections and scoring in other
 * threads always see it at 1. Before the shared/threaded sections, training
 * toggled it around each Gramian with no exclusion, so concurrent trainings
 * and scoring raced on it.
 */
#include "model/model_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

enum { ROWS = 4096, F = 32, ROUNDS = 150 };

static atomic_int violations, stop;

static void *trainer(void *arg)
{
    (void)arg;
    float *V = calloc((size_t)ROWS * F, sizeof *V), *G = malloc(F * F * sizeof *G);
    for (size_t i = 0; i < (size_t)ROWS * F; i++)
        V[i] = (float)(i % 7) * 0.25f;
    for (int r = 0; r < ROUNDS; r++) {
        pvg_blas_threaded_begin(2);
        pvg_gramian(V, ROWS, F, G);
        pvg_blas_threaded_end();
    }
    atomic_store(&stop, 1);
    free(V);
    free(G);
    return NULL;
}

static void body(void *ctx, int tid, size_t b, size_t e)
{
    (void)ctx;
    (void)tid;
    for (size_t i = b; i < e; i++)
        if (openblas_get_num_threads() != 1) atomic_fetch_add(&violations, 1);
}

static void test_no_toggle_under_parallel_sections(void **state)
{
    (void)state;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trainer, NULL), 0);
    float V[64 * F], u[F], s[64];
    for (int i = 0; i < 64 * F; i++)
        V[i] = 1.0f;
    for (int i = 0; i < F; i++)
        u[i] = 1.0f;
    long sections = 0;
    while (!atomic_load(&stop)) {
        assert_int_equal(pvg_parallel_for(2, 64, 8, body, NULL), PVG_OK);
        pvg_blas_shared_begin();
        if (openblas_get_num_threads() != 1) atomic_fetch_add(&violations, 1);
        pvg_blas_shared_end();
        pvg_matvec(V, 64, F, u, s);
        assert_true(s[0] == (float)F);
        sections++;
    }
    pthread_join(th, NULL);
    assert_true(sections > 0);
    assert_int_equal(atomic_load(&violations), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_no_toggle_under_parallel_sections)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
