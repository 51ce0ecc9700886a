/*
 * test_ease_dual.c - EASE in the dual form (Woodbury, n x n user Gram)
 * gives the primal's B; both run over the items with interactions only
 * (the others' rows and columns are 0); the plan picks the dual form when
 * users < items and its memory estimate grows with the right shapes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "model/model_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 12345;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* rows x cols, density d; columns in `empty_cols` (every 7th) and the last
 * row get no interaction */
static void make_csr(size_t rows, size_t cols, double d, pvg_csr *R)
{
    size_t cap = rows * cols, n = 0;
    uint32_t *r = malloc(cap * sizeof *r), *c = malloc(cap * sizeof *c);
    float *w = malloc(cap * sizeof *w);
    for (size_t i = 0; i + 1 < rows; i++)
        for (size_t j = 0; j < cols; j++)
            if (j % 7 != 3 && urand() < d) {
                r[n] = (uint32_t)i;
                c[n] = (uint32_t)j;
                w[n] = 1;
                n++;
            }
    assert_int_equal(pvg_csr_build(rows, cols, n, r, c, w, NULL, R), PVG_OK);
    free(r), free(c), free(w);
}

static void check_shape(size_t nu, size_t ni, double d, float lambda)
{
    pvg_csr R, C;
    make_csr(nu, ni, d, &R);
    assert_int_equal(pvg_csr_transpose(&R, &C), PVG_OK);
    float *Bp = malloc(ni * ni * sizeof *Bp), *Bd = malloc(ni * ni * sizeof *Bd),
          *Bn = malloc(ni * ni * sizeof *Bn);
    pvg_error err;
    assert_int_equal(pvg_ease_fit_form(&R, &C, ni, lambda, 2, PVG_EASE_PRIMAL, Bp, &err), PVG_OK);
    assert_int_equal(pvg_ease_fit_form(&R, &C, ni, lambda, 2, PVG_EASE_DUAL, Bd, &err), PVG_OK);
    pvg_ease_fit_naive(&R, ni, lambda, Bn);
    double maxd = 0, maxb = 0;
    for (size_t i = 0; i < ni; i++)
        for (size_t j = 0; j < ni; j++) {
            size_t q = i * ni + j;
            double e = fabs((double)Bp[q] - Bd[q]);
            if (e > maxd) maxd = e;
            if (fabs(Bn[q]) > maxb) maxb = fabs(Bn[q]);
            assert_true(fabs((double)Bp[q] - Bn[q]) < 2e-4);
            if (i == j || i % 7 == 3 || j % 7 == 3) {
                /* the diagonal and the items without interactions: 0 */
                assert_true(Bp[q] == 0);
                assert_true(Bd[q] == 0);
            }
        }
    assert_true(maxb > 1e-3); /* not a trivially zero B */
    assert_true(maxd < 2e-4);
    free(Bp), free(Bd), free(Bn);
    pvg_csr_free(&R);
    pvg_csr_free(&C);
}

static void test_dual_equals_primal(void **state)
{
    (void)state;
    check_shape(20, 90, 0.15, 5.0f);  /* users < items: the dual's case */
    check_shape(60, 30, 0.3, 2.0f);   /* users > items: still the same B */
    check_shape(13, 200, 0.05, 0.5f); /* small lambda, sparse */
}

static void test_plan(void **state)
{
    (void)state;
    pvg_csr R;
    make_csr(20, 90, 0.15, &R);
    pvg_ease_plan p, q;
    pvg_ease_plan_of(&R, PVG_EASE_AUTO, &p);
    assert_int_equal(p.form, PVG_EASE_DUAL);
    assert_int_equal(p.users, 19); /* the last row is empty */
    size_t active = 0;
    pvg_csr C;
    assert_int_equal(pvg_csr_transpose(&R, &C), PVG_OK);
    for (size_t j = 0; j < 90; j++)
        active += C.indptr[j + 1] > C.indptr[j];
    pvg_csr_free(&C);
    assert_true(active <= 90 - 13); /* every 7th column from 3 is empty */
    assert_int_equal(p.items, active);
    assert_true(p.bytes >= 4.0 * 90 * 90);
    pvg_ease_plan_of(&R, PVG_EASE_PRIMAL, &q);
    assert_int_equal(q.form, PVG_EASE_PRIMAL);
    pvg_csr_free(&R);
    make_csr(60, 30, 0.3, &R);
    pvg_ease_plan_of(&R, PVG_EASE_AUTO, &p);
    assert_int_equal(p.form, PVG_EASE_PRIMAL);
    pvg_csr_free(&R);
    /* lambda must be positive; the catalogue limit holds */
    make_csr(5, 10, 0.5, &R);
    float B[100];
    pvg_error err;
    assert_int_equal(pvg_ease_fit_form(&R, NULL, 10, 0.0f, 1, PVG_EASE_DUAL, B, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(
        pvg_ease_fit_form(&R, NULL, PVG_EASE_MAX_ITEMS + 1, 1.0f, 1, PVG_EASE_DUAL, B, &err),
        PVG_ERR_UNSUPPORTED);
    pvg_csr_free(&R);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dual_equals_primal),
        cmocka_unit_test(test_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
