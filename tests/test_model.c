/*
 * test_model.c - the recommendation engine: fast kernels against their
 * naive references, event weighting and CSR aggregation, every model on a
 * block-structured fixture whose right answers are obvious, the model file
 * round trip and its refusal of corrupted, truncated and wrong-version
 * files, and the absence of plaintext user ids from model files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t tm_state = 12345;
static double tm_rand(void)
{
    tm_state = tm_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(tm_state >> 11) / 9007199254740992.0;
}

static pvg_event tm_ev(pvg_event_type t, const char *item)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = t;
    e.item = item;
    e.ts = 1000;
    return e;
}

/* ---- CSR and weighting ---- */

static void test_weights_and_csr(void **state)
{
    (void)state;
    pvg_dataset *ds;
    pvg_event_weights w0;
    pvg_event_weights_default(&w0);
    assert_true(fabs(w0.w[PVG_EVENT_SEARCH] - PVG_SEARCH_WEIGHT_DEFAULT) < 1e-12);
    w0.w[PVG_EVENT_SEARCH] = 0; /* searches off */
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, &w0, NULL, &ds, NULL), PVG_OK);
    pvg_event e = tm_ev(PVG_EVENT_PURCHASE, "A");
    assert_int_equal(pvg_dataset_add_ext(ds, "u1", &e, NULL), PVG_OK);
    assert_int_equal(pvg_dataset_add_ext(ds, "u1", &e, NULL), PVG_OK); /* repeat: 8 */
    e = tm_ev(PVG_EVENT_VIEW, "B");
    assert_int_equal(pvg_dataset_add_ext(ds, "u1", &e, NULL), PVG_OK); /* 1 */
    e = tm_ev(PVG_EVENT_PURCHASE, "C");
    assert_int_equal(pvg_dataset_add_ext(ds, "u1", &e, NULL), PVG_OK);
    e.fields = PVG_FIELD_QUANTITY;
    e.quantity = -3; /* Online Retail style return */
    assert_int_equal(pvg_dataset_add_ext(ds, "u1", &e, NULL), PVG_OK); /* C: 0 -> dropped */
    e = tm_ev(PVG_EVENT_RETURN, "A");
    assert_int_equal(pvg_dataset_add_ext(ds, "u1", &e, NULL), PVG_OK); /* A: 4 */
    e = tm_ev(PVG_EVENT_SEARCH, "A");
    assert_int_equal(pvg_dataset_add_ext(ds, "u2", &e, NULL), PVG_OK); /* weight 0: ignored */
    e = tm_ev(PVG_EVENT_CART, "B");
    assert_int_equal(pvg_dataset_add_ext(ds, "u2", &e, NULL), PVG_OK);
    assert_int_equal(pvg_dataset_n_users(ds), 2);
    assert_int_equal(pvg_dataset_n_items(ds), 3);
    assert_int_equal(pvg_dataset_n_events(ds), 7);
    pvg_csr R;
    assert_int_equal(pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item,
                                   ds->ev_w, NULL, &R),
                     PVG_OK);
    assert_int_equal(R.nnz, 3);
    /* user 0: A=4, B=1 (C cancelled); user 1: B=2 */
    assert_int_equal(R.indptr[1], 2);
    assert_int_equal(R.indices[0], 0);
    assert_true(fabsf(R.data[0] - 4.0f) < 1e-6f);
    assert_int_equal(R.indices[1], 1);
    assert_true(fabsf(R.data[1] - 1.0f) < 1e-6f);
    assert_true(fabsf(R.data[2] - 2.0f) < 1e-6f);
    pvg_csr C;
    assert_int_equal(pvg_csr_transpose(&R, &C), PVG_OK);
    assert_int_equal(C.n_rows, 3);
    assert_int_equal(C.indptr[2] - C.indptr[1], 2); /* B: two users */
    assert_int_equal(C.indptr[3] - C.indptr[2], 0); /* C: none */
    pvg_csr_free(&R);
    pvg_csr_free(&C);

    pvg_event_weights w;
    pvg_event_weights_default(&w);
    assert_int_equal(pvg_event_weights_parse("view=0.5,purchase=10", &w, NULL), PVG_OK);
    assert_true(w.w[PVG_EVENT_VIEW] == 0.5 && w.w[PVG_EVENT_PURCHASE] == 10 &&
                w.w[PVG_EVENT_CART] == 2);
    pvg_error err;
    assert_int_equal(pvg_event_weights_parse("click=1", &w, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "click"));
    assert_int_equal(pvg_event_weights_parse("view", &w, &err), PVG_ERR_INVALID);
    pvg_dataset_free(ds);
}

/* ---- kernels vs references ---- */

static void test_topk_vs_naive(void **state)
{
    (void)state;
    size_t n = 1000;
    float *s = malloc(n * sizeof *s);
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < n; i++) {
            s[i] = (float)floor(tm_rand() * 50); /* many ties */
            if (tm_rand() < 0.1) s[i] = -INFINITY;
        }
        size_t ks[] = {1, 5, 10, 100, 2000};
        for (size_t q = 0; q < 5; q++) {
            int64_t i1[2000], i2[2000];
            float s1[2000], s2[2000];
            size_t a = pvg_topk(s, n, ks[q], i1, s1), b = pvg_topk_naive(s, n, ks[q], i2, s2);
            assert_int_equal(a, b);
            for (size_t j = 0; j < a; j++) {
                assert_int_equal(i1[j], i2[j]);
                assert_true(s1[j] == s2[j]);
            }
        }
    }
    free(s);
}

static void rand_fill(float *a, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)((tm_rand() * 2 - 1) * scale);
}

static void test_gramian_matvec(void **state)
{
    (void)state;
    size_t n = 57, f = 13;
    float V[57 * 13], G1[169], G2[169], u[13], s1[57], s2[57];
    rand_fill(V, n * f, 1);
    rand_fill(u, f, 1);
    pvg_gramian(V, n, f, G1);
    pvg_gramian_naive(V, n, f, G2);
    for (size_t i = 0; i < f * f; i++)
        assert_true(fabsf(G1[i] - G2[i]) < 1e-4f);
    pvg_matvec(V, n, f, u, s1);
    pvg_matvec_naive(V, n, f, u, s2);
    for (size_t i = 0; i < n; i++)
        assert_true(fabsf(s1[i] - s2[i]) < 1e-4f);
}

static void test_f16(void **state)
{
    (void)state;
    /* exact values round-trip; rounding is to nearest even */
    float exact[] = {0.0f, 1.0f, -2.5f, 65504.0f, 0.000060975552f, 5.9604645e-08f, -0.099975586f};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        assert_true(pvg_f16_to_f32(pvg_f32_to_f16(exact[i])) == exact[i]);
    assert_int_equal(pvg_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(pvg_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie -> even */
    assert_int_equal(pvg_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); /* tie -> even */
    assert_int_equal(pvg_f32_to_f16(1e6f), 0x7c00);               /* overflow -> inf */
    for (int i = 0; i < 1000; i++) {
        float x = (float)((tm_rand() * 2 - 1) * 4);
        float y = pvg_f16_to_f32(pvg_f32_to_f16(x));
        assert_true(fabsf(x - y) <= fabsf(x) * (1.0f / 2048) + 1e-7f);
    }
    /* packed half-precision scoring: fast == naive, and close to float */
    size_t fs[] = {1, 7, 64}, ns[] = {1, 13, 64};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            size_t f = fs[a], n = ns[b];
            float *V = malloc(n * f * sizeof *V), *u = malloc(f * sizeof *u);
            float *s1 = malloc(n * sizeof *s1), *s2 = malloc(n * sizeof *s2),
                  *s3 = malloc(n * sizeof *s3);
            uint16_t *P = malloc((n + 7) / 8 * 8 * f * sizeof *P);
            rand_fill(V, n * f, 1);
            rand_fill(u, f, 1);
            pvg_f16_pack(V, n, f, P);
            pvg_matvec_f16(P, n, f, u, s1);
            pvg_matvec_f16_naive(P, n, f, u, s2);
            pvg_matvec_naive(V, n, f, u, s3);
            for (size_t i = 0; i < n; i++) {
                assert_true(fabsf(s1[i] - s2[i]) < 1e-4f * (float)f);
                assert_true(fabsf(s1[i] - s3[i]) < 2e-3f * (float)f);
            }
            free(V), free(u), free(s1), free(s2), free(s3), free(P);
        }
}

/* random sparse rows x cols matrix */
static void rand_csr(size_t rows, size_t cols, double density, pvg_csr *R)
{
    size_t cap = rows * cols, n = 0;
    uint32_t *r = malloc(cap * sizeof *r), *c = malloc(cap * sizeof *c);
    float *w = malloc(cap * sizeof *w);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++)
            if (tm_rand() < density) {
                r[n] = (uint32_t)i;
                c[n] = (uint32_t)j;
                w[n] = (float)(1 + floor(tm_rand() * 4));
                n++;
            }
    assert_int_equal(pvg_csr_build(rows, cols, n, r, c, w, NULL, R), PVG_OK);
    free(r), free(c), free(w);
}

static void test_ials_kernels(void **state)
{
    (void)state;
    size_t fs[] = {8, 21, 40}; /* lane multiple, scalar tail, unrolled loop + tail */
    for (size_t fi = 0; fi < 3; fi++) {
        size_t nu = 30, ni = 25, f = fs[fi];
        pvg_csr R;
        rand_csr(nu, ni, 0.3, &R);
        float *H = malloc(ni * f * sizeof *H), *G = malloc(f * f * sizeof *G);
        rand_fill(H, ni * f, 0.5);
        pvg_gramian(H, ni, f, G);
        float reg[30];
        float *X = malloc(nu * f * sizeof *X), *Y1 = malloc(nu * f * sizeof *Y1),
              *Y2 = malloc(nu * f * sizeof *Y2);
        for (size_t i = 0; i < nu; i++)
            reg[i] = 0.1f + 0.01f * (float)i;
        rand_fill(X, nu * f, 1);
        for (int conf = 0; conf < 2; conf++) {
            pvg_ials_apply(&R, 0, nu, H, G, f, 0.3f, reg, conf ? 2.0f : 0.0f, X, Y1);
            pvg_ials_apply_naive(&R, 0, nu, H, G, f, 0.3f, reg, conf ? 2.0f : 0.0f, X, Y2);
            for (size_t i = 0; i < nu * f; i++)
                assert_true(fabsf(Y1[i] - Y2[i]) < 1e-3f);
            pvg_ials_apply_portable(&R, 0, nu, H, G, f, 0.3f, reg, conf ? 2.0f : 0.0f, X, Y1);
            for (size_t i = 0; i < nu * f; i++)
                assert_true(fabsf(Y1[i] - Y2[i]) < 1e-3f);
        }
        /* CG with f + 4 steps from zero reaches the exact solution */
        float *W = calloc(nu * f, sizeof *W),
              *scratch = malloc((5 * nu * f + f * f + 16) * sizeof(float));
        pvg_ials_solve_block(&R, 0, nu, H, G, f, 0.3f, reg, 1.0f, (int)f + 4, W, scratch);
        float *ex = malloc(f * sizeof *ex);
        for (size_t r = 0; r < nu; r++) {
            assert_int_equal(pvg_ials_solve_row_exact(&R, r, H, G, f, 0.3f, reg[r], 1.0f, ex), 0);
            for (size_t q = 0; q < f; q++)
                assert_true(fabsf(W[r * f + q] - ex[q]) < 2e-3f);
        }
        /* the exact path of solve_block (cg_steps 0) agrees too */
        float *W2 = calloc(nu * f, sizeof *W2);
        pvg_ials_solve_block(&R, 0, nu, H, G, f, 0.3f, reg, 1.0f, 0, W2, scratch);
        for (size_t i = 0; i < nu * f; i++)
            assert_true(fabsf(W[i] - W2[i]) < 2e-3f);
        free(W), free(W2), free(scratch), free(H), free(G), free(X), free(Y1), free(Y2), free(ex);
        pvg_csr_free(&R);
    }
}

/* The naive reference of the Cholesky solve: Gaussian elimination with
 * partial pivoting on the full matrix, in long double. */
static void gauss_solve_naive(const double *A, size_t f, const double *b, double *x)
{
    long double *M = malloc(f * (f + 1) * sizeof *M);
    for (size_t i = 0; i < f; i++) {
        for (size_t j = 0; j < f; j++)
            M[i * (f + 1) + j] = A[i * f + j];
        M[i * (f + 1) + f] = b[i];
    }
    for (size_t c = 0; c < f; c++) {
        size_t p = c;
        for (size_t i = c + 1; i < f; i++)
            if (fabsl(M[i * (f + 1) + c]) > fabsl(M[p * (f + 1) + c])) p = i;
        for (size_t j = 0; j <= f; j++) {
            long double t = M[c * (f + 1) + j];
            M[c * (f + 1) + j] = M[p * (f + 1) + j];
            M[p * (f + 1) + j] = t;
        }
        for (size_t i = c + 1; i < f; i++) {
            long double m = M[i * (f + 1) + c] / M[c * (f + 1) + c];
            for (size_t j = c; j <= f; j++)
                M[i * (f + 1) + j] -= m * M[c * (f + 1) + j];
        }
    }
    for (size_t i = f; i-- > 0;) {
        long double s = M[i * (f + 1) + f];
        for (size_t j = i + 1; j < f; j++)
            s -= M[i * (f + 1) + j] * x[j];
        x[i] = (double)(s / M[i * (f + 1) + i]);
    }
    free(M);
}

static double chol_rand(uint64_t *st)
{
    *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*st >> 11) / 9007199254740992.0;
}

static void test_cholesky_solve(void **state)
{
    (void)state;
    uint64_t rs = 99; /* its own stream: the other tests' draws stay as they were */
    size_t fs[] = {1, 2, 7, 21, 40};
    for (size_t fi = 0; fi < sizeof fs / sizeof *fs; fi++) {
        size_t f = fs[fi], n = f + 3;
        /* A = B^T B + 0.1 I, B[n x f] random: symmetric positive definite */
        double *B = malloc(n * f * sizeof *B), *A = malloc(f * f * sizeof *A),
               *L = malloc(f * f * sizeof *L), *b = malloc(f * sizeof *b),
               *x = malloc(f * sizeof *x), *ref = malloc(f * sizeof *ref);
        for (size_t i = 0; i < n * f; i++)
            B[i] = chol_rand(&rs) - 0.5;
        for (size_t i = 0; i < f; i++) {
            b[i] = 2 * chol_rand(&rs) - 1;
            for (size_t j = 0; j < f; j++) {
                double s = i == j ? 0.1 : 0;
                for (size_t r = 0; r < n; r++)
                    s += B[r * f + i] * B[r * f + j];
                A[i * f + j] = s;
            }
        }
        gauss_solve_naive(A, f, b, ref);
        /* only the lower triangle is read: poison the upper one */
        for (size_t i = 0; i < f; i++)
            for (size_t j = 0; j < f; j++)
                L[i * f + j] = j > i ? NAN : A[i * f + j];
        memcpy(x, b, f * sizeof *x);
        assert_int_equal(pvg_cholesky_solve(L, f, x), 0);
        double scale = 0;
        for (size_t i = 0; i < f; i++)
            scale = fmax(scale, fabs(ref[i]));
        for (size_t i = 0; i < f; i++)
            assert_true(fabs(x[i] - ref[i]) <= 1e-9 * (1 + scale));
        /* L L^T reproduces A */
        for (size_t i = 0; i < f; i++)
            for (size_t j = 0; j <= i; j++) {
                double s = 0;
                for (size_t q = 0; q <= j; q++)
                    s += L[i * f + q] * L[j * f + q];
                assert_true(fabs(s - A[i * f + j]) <= 1e-9 * (1 + fabs(A[i * f + j])));
            }
        /* not positive definite: -1 and x as on entry */
        for (int bad = 0; bad < 3; bad++) {
            memcpy(L, A, f * f * sizeof *L);
            size_t p = f / 2;
            if (bad == 0) { /* indefinite: a negative direction */
                for (size_t j = 0; j < f; j++)
                    L[p * f + j] = L[j * f + p] = 0;
                L[p * f + p] = -1;
            } else if (bad == 1) { /* singular: a zero row and column */
                for (size_t j = 0; j < f; j++)
                    L[p * f + j] = L[j * f + p] = 0;
            } else { /* NaN in the lower triangle */
                L[(f - 1) * f] = NAN;
            }
            memcpy(x, b, f * sizeof *x);
            assert_int_equal(pvg_cholesky_solve(L, f, x), -1);
            assert_memory_equal(x, b, f * sizeof *x);
        }
        free(B), free(A), free(L), free(b), free(x), free(ref);
    }
}

static void test_knn_ease_kernels(void **state)
{
    (void)state;
    size_t nu = 40, ni = 15;
    pvg_csr R, C, S;
    rand_csr(nu, ni, 0.3, &R);
    assert_int_equal(pvg_csr_transpose(&R, &C), PVG_OK);
    /* keep all neighbours: the sparse result equals the dense reference */
    assert_int_equal(pvg_knn_build(&R, &C, (int)ni, 3.0f, 2, &S), PVG_OK);
    float *Sd = malloc(ni * ni * sizeof *Sd);
    pvg_knn_dense_naive(&R, ni, 3.0f, Sd);
    for (size_t i = 0; i < ni; i++) {
        size_t nz = 0;
        for (size_t j = 0; j < ni; j++)
            nz += Sd[i * ni + j] > 0;
        assert_int_equal(S.indptr[i + 1] - S.indptr[i], nz);
        for (uint64_t q = S.indptr[i]; q < S.indptr[i + 1]; q++)
            assert_true(fabsf(S.data[q] - Sd[i * ni + S.indices[q]]) < 1e-5f);
        /* sorted best first */
        for (uint64_t q = S.indptr[i] + 1; q < S.indptr[i + 1]; q++)
            assert_true(S.data[q] <= S.data[q - 1]);
    }
    pvg_csr_free(&S);
    /* top-3 keeps the 3 best */
    assert_int_equal(pvg_knn_build(&R, &C, 3, 3.0f, 1, &S), PVG_OK);
    for (size_t i = 0; i < ni; i++)
        assert_true(S.indptr[i + 1] - S.indptr[i] <= 3);
    pvg_csr_free(&S);
    float *B1 = malloc(ni * ni * sizeof *B1), *B2 = malloc(ni * ni * sizeof *B2);
    assert_int_equal(pvg_ease_fit(&R, &C, ni, 5.0f, 2, B1, NULL), PVG_OK);
    pvg_ease_fit_naive(&R, ni, 5.0, B2);
    for (size_t i = 0; i < ni * ni; i++)
        assert_true(fabsf(B1[i] - B2[i]) < 1e-4f);
    for (size_t i = 0; i < ni; i++)
        assert_true(B1[i * ni + i] == 0);
    pvg_error err;
    assert_int_equal(pvg_ease_fit(&R, &C, PVG_EASE_MAX_ITEMS + 1, 5.0f, 1, B1, &err),
                     PVG_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.text, "limited"));
    free(B1), free(B2), free(Sd);
    pvg_csr_free(&R);
    pvg_csr_free(&C);
}

/* ---- models on a block-structured fixture ---- */

/* 60 users, 24 items. Users 0..29 interact only with items 0..11 ("a*"),
 * users 30..59 only with items 12..23 ("b*"); each user sees 7 of the 12.
 * Item a0 and b0 are seen by every user of their block. */
static pvg_dataset *block_dataset(void)
{
    pvg_dataset *ds;
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, NULL, &ds, NULL), PVG_OK);
    char user[32], item[32];
    for (int u = 0; u < 60; u++) {
        int blk = u / 30;
        snprintf(user, sizeof user, "user-%d", u);
        int seen[12] = {0};
        seen[0] = 1;
        int n = 1;
        while (n < 7) {
            int j = 1 + (int)(tm_rand() * 11);
            if (!seen[j]) {
                seen[j] = 1;
                n++;
            }
        }
        /* keep user 0's history fixed: a0..a5 (so a6..a11 are unseen) */
        if (u == 0)
            for (int j = 0; j < 12; j++)
                seen[j] = j < 6;
        for (int j = 0; j < 12; j++)
            if (seen[j]) {
                snprintf(item, sizeof item, "%c%d", blk ? 'b' : 'a', j);
                pvg_event e = tm_ev(PVG_EVENT_PURCHASE, item);
                assert_int_equal(pvg_dataset_add_ext(ds, user, &e, NULL), PVG_OK);
            }
    }
    return ds;
}

static void check_block_recs(const pvg_model *m, const pvg_dataset *ds, pvg_model_type t)
{
    unsigned char key[16];
    assert_int_equal(pvg_model_user_key(m, NULL, "user-0", key, NULL), PVG_OK);
    unsigned char key2[16];
    assert_int_equal(pvg_dataset_user_key(ds, "user-0", key2, NULL), PVG_OK);
    assert_memory_equal(key, key2, 16);
    pvg_scored_item out[24];
    size_t n;
    assert_int_equal(pvg_model_recommend(m, key, 5, 0, out, &n, NULL), PVG_OK);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        /* never a seen item */
        int j = atoi(out[i].item + 1);
        assert_false(out[i].item[0] == 'a' && j < 6);
        if (t != PVG_MODEL_POPULARITY && out[i].item[0] != 'a')
            fail_msg("%s: user-0 got %s (rank %zu, score %g)", pvg_model_type_name(t), out[i].item,
                     i, out[i].score); /* own block */
        if (i) assert_true(out[i].score <= out[i - 1].score);
    }
    /* include_seen: a0 (seen by the whole block) is among the first */
    assert_int_equal(pvg_model_recommend(m, key, 12, 1, out, &n, NULL), PVG_OK);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(out[i].item, "a0") == 0;
    assert_true(found);
    /* unknown user */
    unsigned char zero[16] = {0};
    pvg_error err;
    assert_int_equal(pvg_model_recommend(m, zero, 5, 0, out, &n, &err), PVG_ERR_NOT_FOUND);
    /* popular: a0 and b0 (30 users each) first */
    assert_int_equal(pvg_model_popular(m, 2, out, &n, NULL), PVG_OK);
    assert_int_equal(n, 2);
    assert_true(out[0].item[1] == '0' && out[1].item[1] == '0');
    assert_true(out[0].score == 30.0f);
    /* similar items stay in the block */
    pvg_status st = pvg_model_similar(m, "b3", 4, out, &n, &err);
    if (t == PVG_MODEL_POPULARITY) {
        assert_int_equal(st, PVG_ERR_UNSUPPORTED);
    } else {
        assert_int_equal(st, PVG_OK);
        assert_true(n >= 1);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(out[i].item[0], 'b');
            assert_string_not_equal(out[i].item, "b3");
        }
    }
    assert_int_equal(pvg_model_similar(m, "nope", 4, out, &n, &err), PVG_ERR_NOT_FOUND);
    /* fold-in of an unseen history from block b */
    int64_t hist[3] = {pvg_model_item_index(m, "b1"), pvg_model_item_index(m, "b2"),
                       pvg_model_item_index(m, "b3")};
    assert_true(hist[0] >= 0 && hist[1] >= 0 && hist[2] >= 0);
    assert_int_equal(pvg_model_recommend_history(m, hist, NULL, 3, 4, out, &n, NULL), PVG_OK);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        if (t != PVG_MODEL_POPULARITY && out[i].item[0] != 'b')
            fail_msg("%s fold-in: %s at %zu (%g)", pvg_model_type_name(t), out[i].item, i,
                     out[i].score);
        assert_true(out[i].item_index != hist[0] && out[i].item_index != hist[1] &&
                    out[i].item_index != hist[2]);
    }
    /* batch equals single calls */
    unsigned char keys[3 * 16];
    assert_int_equal(pvg_model_user_key(m, NULL, "user-0", keys, NULL), PVG_OK);
    memset(keys + 16, 7, 16);
    assert_int_equal(pvg_model_user_key(m, NULL, "user-45", keys + 32, NULL), PVG_OK);
    pvg_scored_item bo[3 * 5];
    size_t bn[3];
    assert_int_equal(pvg_model_recommend_batch(m, keys, 3, 5, 0, 2, bo, bn, NULL), PVG_OK);
    assert_int_equal(bn[1], 0);
    for (int q = 0; q < 3; q += 2) {
        assert_int_equal(pvg_model_recommend(m, keys + 16 * q, 5, 0, out, &n, NULL), PVG_OK);
        assert_int_equal(bn[q], n);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(bo[q * 5 + i].item_index, out[i].item_index);
    }
}

static void test_models_block(void **state)
{
    (void)state;
    pvg_dataset *ds = block_dataset();
    pvg_model_type types[] = {PVG_MODEL_POPULARITY, PVG_MODEL_ITEMKNN, PVG_MODEL_IALS,
                              PVG_MODEL_EASE, PVG_MODEL_BPR};
    for (int t = 0; t < 5; t++) {
        pvg_train_params p;
        pvg_train_params_default(types[t], &p);
        p.threads = 2;
        if (types[t] == PVG_MODEL_IALS) p.factors = 2; /* two blocks: rank 2 */
        if (types[t] == PVG_MODEL_BPR) {
            p.factors = 4;
            p.threads = 1;
            p.epochs = 100;
            p.reg = 0.05;
        }
        if (types[t] == PVG_MODEL_EASE) p.ease_lambda = 5;
        pvg_model *m;
        pvg_train_stats st;
        pvg_error err;
        pvg_status s = pvg_model_train(ds, &p, &m, &st, &err);
        if (s != PVG_OK) fail_msg("%s: %s", pvg_model_type_name(types[t]), err.text);
        assert_int_equal(pvg_model_type_of(m), types[t]);
        assert_int_equal(pvg_model_n_items(m), 24);
        assert_int_equal(pvg_model_n_users(m), 60);
        check_block_recs(m, ds, types[t]);
        pvg_model_free(m);
    }
    /* bad hyperparameters are refused */
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 0;
    pvg_model *m;
    pvg_error err;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "factors"));
    pvg_dataset_free(ds);
}

static void test_ials_loss_decreases(void **state)
{
    (void)state;
    pvg_dataset *ds = block_dataset();
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 6;
    p.epochs = 6;
    pvg_train_stats st;
    double losses[6];
    int n = 0;
    for (int e = 1; e <= 6; e++) {
        p.epochs = e;
        pvg_model *m;
        assert_int_equal(pvg_model_train(ds, &p, &m, &st, NULL), PVG_OK);
        losses[n++] = st.final_loss;
        assert_int_equal(st.n_epochs, e);
        pvg_model_free(m);
    }
    for (int i = 1; i < n; i++)
        assert_true(losses[i] <= losses[i - 1] * (1 + 1e-4));
    pvg_dataset_free(ds);
}

/* ---- model files ---- */

static char tm_path[256];

static const void *tm_find(const unsigned char *buf, size_t n, const char *needle)
{
    size_t l = strlen(needle);
    for (size_t i = 0; i + l <= n; i++)
        if (memcmp(buf + i, needle, l) == 0) return buf + i;
    return NULL;
}

static void write_bytes(const char *path, const unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void test_model_file(void **state)
{
    (void)state;
    snprintf(tm_path, sizeof tm_path, "/tmp/pvg_test_model_%d.bin", (int)getpid());
    pvg_dataset *ds = block_dataset();
    pvg_model_type types[] = {PVG_MODEL_POPULARITY, PVG_MODEL_ITEMKNN, PVG_MODEL_IALS,
                              PVG_MODEL_EASE, PVG_MODEL_BPR};
    for (int t = 0; t < 5; t++) {
        pvg_train_params p;
        pvg_train_params_default(types[t], &p);
        p.factors = 8;
        p.epochs = 5;
        pvg_model *m, *l;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, NULL), PVG_OK);
        pvg_error err;
        if (pvg_model_save(m, tm_path, &err) != PVG_OK) fail_msg("%s", err.text);
        if (pvg_model_load(tm_path, &l, &err) != PVG_OK) fail_msg("%s", err.text);
        assert_int_equal(pvg_model_type_of(l), types[t]);
        assert_memory_equal(pvg_model_fingerprint(l), pvg_model_fingerprint(m), 32);
        for (int u = 0; u < 60; u += 7) {
            char user[32];
            snprintf(user, sizeof user, "user-%d", u);
            unsigned char k1[16], k2[16];
            assert_int_equal(pvg_model_user_key(m, NULL, user, k1, NULL), PVG_OK);
            assert_int_equal(pvg_model_user_key(l, NULL, user, k2, NULL), PVG_OK);
            assert_memory_equal(k1, k2, 16);
            pvg_scored_item a[6], b[6];
            size_t na, nb;
            assert_int_equal(pvg_model_recommend(m, k1, 6, 0, a, &na, NULL), PVG_OK);
            assert_int_equal(pvg_model_recommend(l, k2, 6, 0, b, &nb, NULL), PVG_OK);
            assert_int_equal(na, nb);
            for (size_t i = 0; i < na; i++) {
                assert_string_equal(a[i].item, b[i].item);
                assert_true(a[i].score == b[i].score);
            }
        }
        pvg_model_free(l);
        /* no plaintext user id in the file */
        size_t n;
        unsigned char *buf = read_bytes(tm_path, &n);
        assert_null(tm_find(buf, n, "user-1"));
        assert_non_null(tm_find(buf, n, "a11")); /* item ids are plain catalog data */
        /* a flipped byte anywhere is caught */
        size_t positions[] = {700, n / 2, n - 1};
        for (int q = 0; q < 3; q++) {
            buf[positions[q]] ^= 0x40;
            write_bytes(tm_path, buf, n);
            assert_int_equal(pvg_model_load(tm_path, &l, &err), PVG_ERR_CORRUPT);
            assert_non_null(strstr(err.text, "checksum"));
            buf[positions[q]] ^= 0x40;
        }
        /* truncated */
        write_bytes(tm_path, buf, n - 10);
        assert_int_equal(pvg_model_load(tm_path, &l, &err), PVG_ERR_CORRUPT);
        assert_non_null(strstr(err.text, "truncated"));
        write_bytes(tm_path, buf, 100);
        assert_int_equal(pvg_model_load(tm_path, &l, &err), PVG_ERR_CORRUPT);
        assert_non_null(strstr(err.text, "truncated"));
        /* wrong version */
        buf[8] = 99;
        write_bytes(tm_path, buf, n);
        assert_int_equal(pvg_model_load(tm_path, &l, &err), PVG_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.text, "version 99"));
        buf[8] = 2;
        /* not a model */
        memcpy(buf, "GARBAGE!", 8);
        write_bytes(tm_path, buf, n);
        assert_int_equal(pvg_model_load(tm_path, &l, &err), PVG_ERR_CORRUPT);
        assert_non_null(strstr(err.text, "magic"));
        free(buf);
        assert_null(l); /* failed loads leave *out NULL */
        pvg_model_free(m);
    }
    pvg_model *l;
    pvg_error err;
    assert_int_equal(pvg_model_load("/nonexistent/dir/model.bin", &l, &err), PVG_ERR_IO);
    unlink(tm_path);
    pvg_dataset_free(ds);
}

static void test_store_keyed_model(void **state)
{
    (void)state;
    /* a pseudonym-keyed dataset: the key is taken as given, ext ids refused */
    pvg_dataset *ds;
    assert_int_equal(pvg_dataset_new(PVG_KEY_STORE_PSEUDONYM, NULL, NULL, &ds, NULL), PVG_OK);
    unsigned char k[16];
    memset(k, 0xab, 16);
    pvg_event e = tm_ev(PVG_EVENT_VIEW, "x");
    assert_int_equal(pvg_dataset_add(ds, k, &e, NULL), PVG_OK);
    e.item = "y";
    k[0] = 1;
    assert_int_equal(pvg_dataset_add(ds, k, &e, NULL), PVG_OK);
    pvg_error err;
    assert_int_equal(pvg_dataset_add_ext(ds, "bob", &e, &err), PVG_ERR_STATE);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_POPULARITY, &p);
    pvg_model *m;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_model_keying(m), PVG_KEY_STORE_PSEUDONYM);
    unsigned char out[16];
    assert_int_equal(pvg_model_user_key(m, NULL, "bob", out, &err), PVG_ERR_INVALID);
    pvg_scored_item items[2];
    size_t n;
    assert_int_equal(pvg_model_recommend(m, k, 2, 1, items, &n, NULL), PVG_OK);
    assert_int_equal(n, 2);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_and_csr),     cmocka_unit_test(test_topk_vs_naive),
        cmocka_unit_test(test_gramian_matvec),      cmocka_unit_test(test_ials_kernels),
        cmocka_unit_test(test_cholesky_solve),      cmocka_unit_test(test_f16),
        cmocka_unit_test(test_knn_ease_kernels),    cmocka_unit_test(test_models_block),
        cmocka_unit_test(test_ials_loss_decreases), cmocka_unit_test(test_model_file),
        cmocka_unit_test(test_store_keyed_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
