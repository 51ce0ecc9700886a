/*
 * test_dp_ials.c - DP-iALS (src/model/dp_ials.c): the contribution bound,
 * the sensitivity of the released statistics under one added worst-case
 * shopper, the accountant against the report, reproducibility under the
 * test generator, the refusal of that generator without the opt-in, the
 * dispatch from pvg_model_train, and quality at large and tiny epsilon.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <privguide/dp.h>
#include <privguide/eval.h>
#include <privguide/model.h>

#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t st;
static double urand(void)
{
    uint64_t z = (st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}

/* A users x items matrix, row u with lens[u] distinct random items. */
static void make_csr(size_t nu, size_t ni, const size_t *lens, pvg_csr *R)
{
    size_t n = 0;
    for (size_t u = 0; u < nu; u++)
        n += lens[u];
    uint32_t *rows = malloc(n * sizeof *rows), *cols = malloc(n * sizeof *cols);
    float *w = malloc(n * sizeof *w);
    uint8_t *used = calloc(ni, 1);
    assert_non_null(rows);
    assert_non_null(cols);
    assert_non_null(w);
    assert_non_null(used);
    size_t o = 0;
    for (size_t u = 0; u < nu; u++) {
        memset(used, 0, ni);
        assert_true(lens[u] <= ni);
        for (size_t k = 0; k < lens[u]; k++) {
            size_t j;
            do
                j = (size_t)(urand() * (double)ni);
            while (used[j]);
            used[j] = 1;
            rows[o] = (uint32_t)u;
            cols[o] = (uint32_t)j;
            w[o++] = 1.0f + (float)(urand() * 3);
        }
    }
    assert_int_equal(pvg_csr_build(nu, ni, n, rows, cols, w, NULL, R), PVG_OK);
    free(rows);
    free(cols);
    free(w);
    free(used);
}

static int row_has(const pvg_csr *R, size_t u, uint32_t j)
{
    for (uint64_t k = R->indptr[u]; k < R->indptr[u + 1]; k++)
        if (R->indices[k] == j) return 1;
    return 0;
}

/* A shopper with 10 m items keeps exactly m of them (distinct, sorted, all
 * theirs, weight 1); shorter rows keep everything. */
static void test_clip(void **state)
{
    (void)state;
    const int m = 12;
    size_t lens[5] = {3, 12, 13, 10 * 12, 1};
    pvg_csr R, Rc;
    st = 5;
    make_csr(5, 400, lens, &R);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    assert_non_null(rng);
    assert_int_equal(pvg_dp_ials_clip(&R, m, rng, &Rc), PVG_OK);
    for (size_t u = 0; u < 5; u++) {
        size_t n = (size_t)(Rc.indptr[u + 1] - Rc.indptr[u]);
        assert_int_equal(n, lens[u] < (size_t)m ? lens[u] : (size_t)m);
        for (uint64_t k = Rc.indptr[u]; k < Rc.indptr[u + 1]; k++) {
            assert_true(row_has(&R, u, Rc.indices[k]));
            assert_true(Rc.data[k] == 1.0f);
            if (k > Rc.indptr[u]) assert_true(Rc.indices[k - 1] < Rc.indices[k]);
        }
    }
    /* the heavy shopper's subset depends on the generator (not the first m) */
    pvg_csr Rc2;
    pvg_rng *rng2 = pvg_rng_new_INSECURE_deterministic_for_tests(4);
    assert_int_equal(pvg_dp_ials_clip(&R, m, rng2, &Rc2), PVG_OK);
    assert_memory_not_equal(Rc.indices + Rc.indptr[3], Rc2.indices + Rc2.indptr[3],
                            (size_t)m * sizeof(uint32_t));
    pvg_csr_free(&Rc2);
    pvg_rng_free(rng2);
    pvg_csr_free(&Rc);
    pvg_csr_free(&R);
    pvg_rng_free(rng);
}

/* Statistics of the clipped data for all items, and the Gram of all rows. */
static void all_stats(const pvg_csr *R, int m, uint64_t seed, const float *U, size_t f, double *A,
                      double *b, double *G)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
    pvg_csr Rc, Cc;
    assert_int_equal(pvg_dp_ials_clip(R, m, rng, &Rc), PVG_OK);
    assert_int_equal(pvg_csr_transpose(&Rc, &Cc), PVG_OK);
    double *Ub = malloc(R->n_rows * f * sizeof *Ub), *gather = malloc(R->n_rows * f * sizeof *Ub);
    assert_non_null(Ub);
    assert_non_null(gather);
    pvg_dp_ials_unit_rows(U, R->n_rows, f, Ub);
    for (size_t j = 0; j < R->n_cols; j++)
        pvg_dp_ials_item_stats(&Cc, j, Ub, f, gather, A + j * f * f, b + j * f);
    for (size_t a = 0; a < f; a++)
        for (size_t c = a; c < f; c++) {
            double s = 0;
            for (size_t u = 0; u < R->n_rows; u++)
                s += Ub[u * f + a] * Ub[u * f + c];
            G[a * f + c] = s;
        }
    free(Ub);
    free(gather);
    pvg_csr_free(&Rc);
    pvg_csr_free(&Cc);
    pvg_rng_free(rng);
}

/* Neighbouring datasets: D and D plus one shopper with 10 m items and a
 * user factor of any norm. Over the upper triangles the stacked A moves by
 * at most sqrt(m) (Frobenius), b by sqrt(m), G by 1 - the sensitivities the
 * noise is calibrated to (rep.sensitivity >= sqrt(m)) - and the bound is
 * reached: it is tight, not loose. */
static void test_sensitivity(void **state)
{
    (void)state;
    const int m = 8;
    const size_t f = 6, nu = 40, ni = 120;
    size_t lens[41];
    st = 11;
    for (size_t u = 0; u < nu; u++)
        lens[u] = 1 + (size_t)(urand() * 30);
    lens[nu] = 10 * (size_t)m;
    pvg_csr R0, R1;
    make_csr(nu + 1, ni, lens, &R1);
    /* D: the same rows without the last shopper */
    R0 = R1;
    R0.n_rows = nu;
    R0.nnz = R1.indptr[nu];
    float *U = malloc((nu + 1) * f * sizeof *U);
    assert_non_null(U);
    for (size_t k = 0; k < (nu + 1) * f; k++)
        U[k] = (float)(urand() * 2 - 1);
    for (size_t k = 0; k < f; k++)
        U[nu * f + k] *= 50; /* a large factor: projected to norm 1 */
    double *A0 = calloc(ni * f * f, sizeof *A0), *A1 = calloc(ni * f * f, sizeof *A1);
    double *b0 = calloc(ni * f, sizeof *b0), *b1 = calloc(ni * f, sizeof *b1);
    double *G0 = calloc(f * f, sizeof *G0), *G1 = calloc(f * f, sizeof *G1);
    assert_true(A0 && A1 && b0 && b1 && G0 && G1);
    all_stats(&R0, m, 9, U, f, A0, b0, G0);
    all_stats(&R1, m, 9, U, f, A1, b1, G1);
    double dA = 0, db = 0, dG = 0;
    size_t items_moved = 0;
    for (size_t j = 0; j < ni; j++) {
        int moved = 0;
        for (size_t a = 0; a < f; a++) {
            for (size_t c = a; c < f; c++) {
                double d = A1[j * f * f + a * f + c] - A0[j * f * f + a * f + c];
                dA += d * d;
            }
            double d = b1[j * f + a] - b0[j * f + a];
            db += d * d;
            if (d != 0) moved = 1;
        }
        items_moved += (size_t)moved;
    }
    for (size_t a = 0; a < f; a++)
        for (size_t c = a; c < f; c++)
            dG += (G1[a * f + c] - G0[a * f + c]) * (G1[a * f + c] - G0[a * f + c]);
    assert_int_equal(items_moved, (size_t)m); /* 10 m items clipped to m */
    assert_true(sqrt(db) <= sqrt((double)m) + 1e-9);
    assert_true(sqrt(db) >= sqrt((double)m) - 1e-9); /* the worst case is reached */
    assert_true(sqrt(dA) <= sqrt((double)m) + 1e-9);
    assert_true(sqrt(dG) <= 1 + 1e-9);
    /* and a training run calibrates to at least that */
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = (int)f;
    p.epochs = 2;
    p.alpha0 = 0.01;
    p.dp_epsilon = 4;
    p.dp_delta = 1e-6;
    p.dp_max_items = m;
    p.dp_allow_insecure_rng = 1;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    float *U1, *V1;
    pvg_dp_report rep;
    assert_int_equal(pvg_train_dp_ials(&R1, NULL, &p, rng, &U1, &V1, &rep, NULL, NULL), PVG_OK);
    assert_true(rep.sensitivity >= sqrt((double)m));
    assert_true(rep.sensitivity <= 1.05 * sqrt((double)m)); /* the grid costs a little */
    assert_int_equal(rep.max_items, m);
    assert_true(rep.clip == 1.0);
    free(U1);
    free(V1);
    pvg_rng_free(rng);
    free(U);
    free(A0), free(A1), free(b0), free(b1), free(G0), free(G1);
    pvg_csr_free(&R1);
}

static void small_params(pvg_train_params *p, double eps)
{
    pvg_train_params_default(PVG_MODEL_IALS, p);
    p->factors = 8;
    p->epochs = 3;
    p->alpha0 = 0.01;
    p->threads = 2;
    p->dp_epsilon = eps;
    p->dp_delta = 1e-6;
    p->dp_max_items = 10;
    p->dp_allow_insecure_rng = 1;
}

/* The report's epsilon is the accountant's for the run, at most the target
 * and tight; it agrees with the library's subsampled-Gaussian accountant
 * at sampling rate 1; a given noise multiplier is used and its epsilon
 * reported. */
static void test_accountant(void **state)
{
    (void)state;
    size_t lens[60];
    st = 21;
    for (size_t u = 0; u < 60; u++)
        lens[u] = 2 + (size_t)(urand() * 20);
    pvg_csr R;
    make_csr(60, 90, lens, &R);
    const double targets[3] = {0.5, 2, 8};
    for (int t = 0; t < 3; t++) {
        pvg_train_params p;
        small_params(&p, targets[t]);
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(2);
        float *U, *V;
        pvg_dp_report rep;
        assert_int_equal(pvg_train_dp_ials(&R, NULL, &p, rng, &U, &V, &rep, NULL, NULL), PVG_OK);
        assert_true(rep.epsilon <= targets[t]);
        assert_true(rep.epsilon >= targets[t] * 0.999);
        assert_true(rep.delta == 1e-6);
        assert_true(rep.epsilon == pvg_dp_ials_epsilon(rep.noise_multiplier, p.epochs, 1e-6));
        double eps2;
        assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(
                             1.0, rep.noise_multiplier, p.epochs, 1e-6, PVG_DP_ACCOUNTANT_RDP,
                             PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps2, NULL, NULL),
                         PVG_OK);
        assert_true(fabs(eps2 - rep.epsilon) <= 1e-6 * rep.epsilon);
        assert_non_null(rep.mechanism);
        assert_int_equal(strncmp(rep.mechanism, "dp-ials/", 8), 0);
        free(U);
        free(V);
        pvg_rng_free(rng);
    }
    /* more iterations at the same epsilon need more noise */
    assert_true(pvg_dp_ials_epsilon(3.0, 8, 1e-6) > pvg_dp_ials_epsilon(3.0, 4, 1e-6));
    /* an expert's noise multiplier */
    pvg_train_params p;
    small_params(&p, 1);
    p.dp_noise_multiplier = 2.5;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(2);
    float *U, *V;
    pvg_dp_report rep;
    assert_int_equal(pvg_train_dp_ials(&R, NULL, &p, rng, &U, &V, &rep, NULL, NULL), PVG_OK);
    assert_true(rep.noise_multiplier == 2.5);
    assert_true(rep.epsilon == pvg_dp_ials_epsilon(2.5, p.epochs, 1e-6));
    free(U);
    free(V);
    pvg_rng_free(rng);
    pvg_csr_free(&R);
}

/* Same test generator and seed: the same factors, whatever the threads;
 * another seed: other factors. The test generator is refused without the
 * opt-in; bad parameters are refused. */
static void test_determinism(void **state)
{
    (void)state;
    size_t lens[200];
    st = 31;
    for (size_t u = 0; u < 200; u++)
        lens[u] = 2 + (size_t)(urand() * 40);
    pvg_csr R;
    make_csr(200, 150, lens, &R);
    float *U[3], *V[3];
    pvg_dp_report rep[3];
    const uint64_t seeds[3] = {5, 5, 6};
    const int threads[3] = {2, 1, 2};
    for (int r = 0; r < 3; r++) {
        pvg_train_params p;
        small_params(&p, 2);
        p.threads = threads[r];
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(seeds[r]);
        assert_int_equal(pvg_train_dp_ials(&R, NULL, &p, rng, &U[r], &V[r], &rep[r], NULL, NULL),
                         PVG_OK);
        pvg_rng_free(rng);
    }
    assert_memory_equal(V[0], V[1], 150 * 8 * sizeof(float));
    /* with the noisy A_j released too (share_A > 0) */
    pvg_dp_ials_knobs k;
    pvg_dp_ials_knobs_default(&k);
    k.share_A = 0.3;
    k.share_b = 0.6;
    float *UA[2], *VA[2];
    for (int r = 0; r < 2; r++) {
        pvg_train_params p;
        small_params(&p, 2);
        p.threads = 2 - r;
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(5);
        assert_int_equal(
            pvg_train_dp_ials_knobs(&R, NULL, &p, &k, rng, &UA[r], &VA[r], &rep[r], NULL, NULL),
            PVG_OK);
        pvg_rng_free(rng);
        for (size_t q = 0; q < 150 * 8; q++)
            assert_true(isfinite(VA[r][q]));
    }
    assert_memory_equal(VA[0], VA[1], 150 * 8 * sizeof(float));
    assert_memory_not_equal(VA[0], V[0], 150 * 8 * sizeof(float));
    for (int r = 0; r < 2; r++) {
        free(UA[r]);
        free(VA[r]);
    }
    k.share_A = 0.5; /* shares above 1: refused */
    {
        pvg_train_params p;
        small_params(&p, 2);
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(5);
        float *Ux = NULL, *Vx = NULL;
        pvg_dp_report rx;
        assert_int_equal(pvg_train_dp_ials_knobs(&R, NULL, &p, &k, rng, &Ux, &Vx, &rx, NULL, NULL),
                         PVG_ERR_INVALID);
        pvg_rng_free(rng);
    }
    assert_memory_equal(U[0], U[1], 200 * 8 * sizeof(float));
    assert_memory_not_equal(V[0], V[2], 150 * 8 * sizeof(float));
    for (int r = 0; r < 3; r++) {
        free(U[r]);
        free(V[r]);
    }
    pvg_train_params p;
    small_params(&p, 2);
    p.dp_allow_insecure_rng = 0;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    float *Ux = NULL, *Vx = NULL;
    pvg_dp_report rx;
    pvg_error err;
    assert_int_equal(pvg_train_dp_ials(&R, NULL, &p, rng, &Ux, &Vx, &rx, NULL, &err),
                     PVG_ERR_POLICY);
    assert_null(Vx);
    small_params(&p, 2);
    p.dp_delta = 0;
    assert_int_equal(pvg_train_dp_ials(&R, NULL, &p, rng, &Ux, &Vx, &rx, NULL, &err),
                     PVG_ERR_INVALID);
    pvg_rng_free(rng);
    pvg_csr_free(&R);
}

/* users in 10 taste clusters, each owning a segment of the catalogue */
static pvg_dataset *clustered(size_t n_users, size_t n_items)
{
    pvg_dataset *ds;
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, NULL, &ds, NULL), PVG_OK);
    size_t segs = 10, seg = n_items / segs;
    st = 77;
    char user[32], item[32];
    for (size_t u = 0; u < n_users; u++) {
        snprintf(user, sizeof user, "u%zu", u);
        size_t home = u % segs;
        for (int k = 0; k < 20; k++) {
            double x = urand();
            size_t i = urand() < 0.85 ? home * seg + (size_t)(x * x * (double)seg)
                                      : (size_t)(x * x * (double)n_items);
            snprintf(item, sizeof item, "i%zu", i);
            pvg_event e;
            memset(&e, 0, sizeof e);
            e.type = PVG_EVENT_PURCHASE;
            e.item = item;
            e.quantity = 1;
            assert_int_equal(pvg_dataset_add_ext(ds, user, &e, NULL), PVG_OK);
        }
    }
    return ds;
}

static double ndcg_of(const pvg_dataset *ds, const pvg_train_params *p)
{
    pvg_eval_options o;
    pvg_eval_options_default(PVG_EVAL_RANDOM_SPLIT, &o);
    o.seed = 42;
    o.n_ks = 1;
    o.ks[0] = 20;
    o.threads = 2;
    pvg_eval_result res;
    pvg_error err;
    assert_int_equal(pvg_eval_run(ds, p, &o, &res, &err), PVG_OK);
    return res.at[0].ndcg;
}

/* Through pvg_model_train (the dispatch on dp_epsilon > 0): the model
 * carries the report. Quality: at a very large epsilon DP-iALS comes close
 * to iALS, at a tiny one it is clearly worse. */
static void test_dispatch_and_quality(void **state)
{
    (void)state;
    pvg_dataset *ds = clustered(2000, 400);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 16;
    p.epochs = 4;
    p.threads = 2;
    double base = ndcg_of(ds, &p);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(8);
    p.dp_delta = 1e-6;
    p.dp_rng = rng;
    p.dp_allow_insecure_rng = 1;
    p.dp_epsilon = 4;
    /* the catalogue is public: the vocabulary is every item (no selection) */
    p.dp_items = (const char *const *)ds->item_ids;
    p.dp_n_items = pvg_dataset_n_items(ds);
    pvg_model *m;
    pvg_error err;
    pvg_status tst = pvg_model_train(ds, &p, &m, NULL, &err);
    if (tst != PVG_OK) fprintf(stderr, "train: %s\n", err.text);
    assert_int_equal(tst, PVG_OK);
    assert_true(m->dp.epsilon > 3.99 && m->dp.epsilon <= 4);
    assert_true(m->dp.delta == 1e-6);
    assert_int_equal(m->n_items, pvg_dataset_n_items(ds));
    assert_int_equal(m->dp.max_items, PVG_DP_IALS_DEFAULT_M);
    assert_int_equal(strncmp(m->dp.mechanism, "dp-ials/", 8), 0);
    assert_true(m->params.alpha0 == 3.0 * PVG_DP_IALS_DEFAULT_M / (double)m->n_items);
    /* the popularity section (the DP model's public popular list) is
     * post-processing of the DP item factors, |V_j|, never the exact buyer
     * counts pvg_model_new_common puts there */
    {
        int differs_from_exact = 0;
        for (size_t j = 0; j < m->n_items; j++) {
            double s = 0;
            for (size_t k = 0; k < 16; k++)
                s += (double)m->V[j * 16 + k] * m->V[j * 16 + k];
            assert_float_equal(m->popularity[j], (float)sqrt(s), 1e-6);
            size_t buyers = 0;
            for (size_t u = 0; u < m->n_users; u++)
                for (uint64_t q = m->hist_indptr[u]; q < m->hist_indptr[u + 1]; q++)
                    buyers += m->hist_items[q] == j;
            differs_from_exact |= m->popularity[j] != (float)buyers;
        }
        assert_true(differs_from_exact);
    }
    /* the file keeps the record and the factors */
    char path[] = "/tmp/pvg-dp-ials-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
    pvg_model *l;
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_OK);
    unlink(path);
    assert_true(l->dp.epsilon == m->dp.epsilon && l->dp.delta == m->dp.delta);
    assert_int_equal(l->dp.max_items, m->dp.max_items);
    assert_string_equal(l->dp.mechanism, m->dp.mechanism);
    assert_int_equal(l->factors, 16);
    assert_memory_equal(l->V, m->V, m->n_items * 16 * sizeof(float));
    assert_memory_equal(l->popularity, m->popularity, m->n_items * sizeof(float));
    pvg_model_free(l);
    pvg_model_free(m);
    p.dp_epsilon = 1e6;
    double large = ndcg_of(ds, &p);
    p.dp_epsilon = 0.01;
    double tiny = ndcg_of(ds, &p);
    fprintf(stderr, "ndcg@20: ials %.4f, dp eps 1e6 %.4f, dp eps 0.01 %.4f\n", base, large, tiny);
    assert_true(large >= 0.8 * base);
    assert_true(tiny <= 0.7 * large);
    pvg_rng_free(rng);
    pvg_dataset_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_sensitivity),
        cmocka_unit_test(test_accountant),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_dispatch_and_quality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
