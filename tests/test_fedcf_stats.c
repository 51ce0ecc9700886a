/*
 * test_fedcf_stats.c - the sufficient-statistics item update of federated
 * iALS (PVG_FL_UPDATE_STATS, docs/federated.md): what one client sends,
 * the neighbouring bound of one worst-case client, the server's item solve
 * against the closed form, the broadcast's update byte, the server-only
 * noise ridge, the running mean of the solves (average_solves), and the
 * public item prior (pvg_fl_model_set_item_prior).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fl/fl_internal.h"
#include "t_fl_decode.h"
#include "model/model_internal.h"

#include <privguide/fl.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NI 40
#define NU 30
#define K 4

static pvg_fl_config stats_cfg(void)
{
    pvg_fl_config c;
    pvg_fl_config_default(&c);
    c.factors = K;
    c.reg = 0.05;
    c.alpha0 = 0.1;
    c.clip = 10; /* above every toy client's norm (< 4): no clipping */
    c.expected_cohort = NU;
    c.seed = 11;
    c.allow_insecure_rng = 1;
    c.update = PVG_FL_UPDATE_STATS;
    return c;
}

/* NU users with 3..12 distinct ascending items each: CSR in indptr/items. */
static void toy(uint64_t *indptr, uint32_t *items)
{
    pvg_rng *r = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    size_t m = 0;
    indptr[0] = 0;
    for (size_t u = 0; u < NU; u++) {
        uint8_t seen[NI] = {0};
        size_t want = 3 + (size_t)pvg_rng_uniform(r, 10);
        uint32_t lo = (u % 2) ? NI / 2 : 0;
        for (size_t i = 0; i < want; i++)
            seen[lo + pvg_rng_uniform(r, NI / 2)] = 1;
        for (uint32_t j = 0; j < NI; j++)
            if (seen[j]) items[m++] = j;
        indptr[u + 1] = m;
    }
    pvg_rng_free(r);
}

/* The decoded sum of the given clients' vectors (no noise). users: NULL =
 * all; extra: one more client's items (may be NULL). */
static void decoded(const pvg_fl_model *m, const uint64_t *indptr, const uint32_t *items,
                    const uint32_t *extra, size_t n_extra, double *out, float *factors)
{
    t_fl_decoded_sum(m, NI, indptr, items, NU, NULL, extra, n_extra, out, factors, K, 9);
}

/* One client's vector: its rows are its unit factor direction (binary
 * confidence: norm 1), the counts and Gram are scaled as documented, every
 * other row is zero. */
static void test_client_sends_unit_rows(void **state)
{
    (void)state;
    pvg_fl_config c = stats_cfg();
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, NI, rng, &m, NULL), PVG_OK);
    fl_code code;
    assert_int_equal(fl_code_of(&c, NI, &code, NULL), PVG_OK);
    double *out = calloc(code.d, sizeof *out);
    uint32_t mine[] = {3, 7, 21};
    float x[NU * K];
    uint8_t *bc;
    size_t bl;
    assert_int_equal(pvg_fl_model_broadcast(m, &bc, &bl, NULL), PVG_OK);
    uint32_t *vec = calloc(code.d, sizeof *vec);
    assert_int_equal(pvg_fl_client_update_ex(bc, bl, mine, NULL, 3, rng, 1, vec, code.d, x, NULL),
                     PVG_OK);
    assert_int_equal(fl_decode(&c, &code, 0, vec, 0, NULL, out, NULL), PVG_OK);
    double nx = 0;
    for (size_t a = 0; a < K; a++)
        nx += (double)x[a] * x[a];
    nx = sqrt(nx);
    assert_true(nx > 0);
    double tol = 1e-5;
    for (uint32_t j = 0; j < NI; j++) {
        int own = j == 3 || j == 7 || j == 21;
        for (size_t a = 0; a < K; a++)
            assert_true(fabs(out[j * K + a] - (own ? x[a] / nx : 0.0)) < tol);
        assert_true(fabs(out[NI * K + j] - (own ? PVG_FL_SCALE_N : 0.0)) < tol);
    }
    const double *T = out + NI * K + NI;
    size_t t = 0;
    for (size_t a = 0; a < K; a++)
        for (size_t b = a; b < K; b++, t++)
            assert_true(fabs(T[t] - PVG_FL_SCALE_T * x[a] * x[b] / (nx * nx)) < tol);
    assert_true(fabs(T[t] - PVG_FL_SCALE_T) < tol);
    free(vec);
    free(bc);
    free(out);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
}

/* Neighbouring datasets: adding one client whose history is the whole
 * catalog (its unclipped vector has norm > sqrt(NI)) moves the decoded sum
 * by at most the clip bound (plus the others' rounding, which differs
 * between the two runs). */
static void test_one_client_moves_sum_by_at_most_clip(void **state)
{
    (void)state;
    pvg_fl_config c = stats_cfg();
    c.clip = 0.5;
    uint64_t indptr[NU + 1];
    uint32_t items[NU * 16];
    toy(indptr, items);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(2);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, NI, rng, &m, NULL), PVG_OK);
    fl_clients cl = {NU, NI, indptr, items, NULL};
    for (int r = 0; r < 2; r++)
        assert_int_equal(fl_sim_round(m, &cl, 1.0, rng, NULL, NULL), PVG_OK);
    fl_code code;
    assert_int_equal(fl_code_of(&c, NI, &code, NULL), PVG_OK);
    uint32_t all[NI];
    for (uint32_t i = 0; i < NI; i++)
        all[i] = i;
    double *with = calloc(code.d, sizeof *with), *without = calloc(code.d, sizeof *without);
    decoded(m, indptr, items, all, NI, with, NULL);
    decoded(m, indptr, items, NULL, 0, without, NULL);
    double e = 0;
    for (size_t i = 0; i < code.d; i++)
        e += (with[i] - without[i]) * (with[i] - without[i]);
    double diff = sqrt(e);
    /* the client was clipped: its unclipped rows alone have norm sqrt(NI) */
    assert_true(diff > 0.9 * c.clip);
    assert_true(diff <= code.gamma * code.bound + 2.0 * NU * code.gamma * sqrt((double)code.d));
    assert_true(code.gamma * code.bound <= c.clip * 1.01);
    free(with);
    free(without);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
}

/* Without DP and with every client, one round sets every item to the
 * closed form (alpha0 T + reg (N_j + alpha0 W) I)^-1 b_j over the clients'
 * unit factors, whatever the item factors were before. */
static void test_server_solves_items_exactly(void **state)
{
    (void)state;
    pvg_fl_config c = stats_cfg();
    uint64_t indptr[NU + 1];
    uint32_t items[NU * 16];
    toy(indptr, items);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, NI, rng, &m, NULL), PVG_OK);
    fl_clients cl = {NU, NI, indptr, items, NULL};
    assert_int_equal(fl_sim_round(m, &cl, 1.0, rng, NULL, NULL), PVG_OK);
    /* the clients' factors against the round-1 broadcast */
    float x[NU * K];
    fl_code code;
    assert_int_equal(fl_code_of(&c, NI, &code, NULL), PVG_OK);
    double *scratch = calloc(code.d, sizeof *scratch);
    decoded(m, indptr, items, NULL, 0, scratch, x);
    free(scratch);
    double T[K * K] = {0}, W = NU;
    for (size_t u = 0; u < NU; u++) {
        double nx = 0;
        for (size_t a = 0; a < K; a++)
            nx += (double)x[u * K + a] * x[u * K + a];
        nx = sqrt(nx);
        for (size_t a = 0; a < K; a++)
            x[u * K + a] = (float)(x[u * K + a] / nx);
        for (size_t a = 0; a < K; a++)
            for (size_t b = 0; b < K; b++)
                T[a * K + b] += (double)x[u * K + a] * x[u * K + b];
    }
    assert_int_equal(fl_sim_round(m, &cl, 1.0, rng, NULL, NULL), PVG_OK);
    const float *V;
    uint32_t ni, k;
    assert_int_equal(pvg_fl_model_item_factors(m, &V, &ni, &k, NULL), PVG_OK);
    double worst = 0, scale = 0;
    for (uint32_t j = 0; j < NI; j++) {
        double A[K * K], b[K] = {0}, n = 0;
        for (size_t u = 0; u < NU; u++)
            for (uint64_t e = indptr[u]; e < indptr[u + 1]; e++)
                if (items[e] == j) {
                    n++;
                    for (size_t a = 0; a < K; a++)
                        b[a] += x[u * K + a];
                }
        double regj = c.reg * (n + c.alpha0 * W);
        for (size_t a = 0; a < K; a++)
            for (size_t bb = 0; bb < K; bb++)
                A[a * K + bb] = c.alpha0 * T[a * K + bb] + (a == bb ? regj : 0);
        assert_int_equal(pvg_cholesky_solve(A, K, b), 0);
        for (size_t a = 0; a < K; a++) {
            double d = fabs(V[j * K + a] - b[a]);
            if (d > worst) worst = d;
            if (fabs(b[a]) > scale) scale = fabs(b[a]);
        }
    }
    assert_true(scale > 0.1);
    assert_true(worst < 1e-3 * scale);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
}

/* The broadcast carries the update form in byte 7; other values are
 * refused with that offset; the config check refuses bad forms and a
 * negative noise ridge, which never reaches the broadcast. */
static void test_update_byte_and_config(void **state)
{
    (void)state;
    pvg_fl_config c = stats_cfg();
    c.noise_ridge = 2.5;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(4);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, NI, rng, &m, NULL), PVG_OK);
    uint8_t *bc;
    size_t bl;
    assert_int_equal(pvg_fl_model_broadcast(m, &bc, &bl, NULL), PVG_OK);
    assert_int_equal(bc[7], PVG_FL_UPDATE_STATS);
    pvg_fl_config got;
    uint32_t round, n;
    assert_int_equal(pvg_fl_broadcast_info(bc, bl, &got, &round, &n, NULL), PVG_OK);
    assert_int_equal(got.update, PVG_FL_UPDATE_STATS);
    assert_true(got.noise_ridge == 0); /* server-only: not sent */
    pvg_error err;
    bc[7] = 2;
    assert_int_equal(pvg_fl_broadcast_info(bc, bl, &got, &round, &n, &err), PVG_ERR_CORRUPT);
    assert_int_equal(err.offset, 7);
    free(bc);
    pvg_fl_model *bad = NULL;
    pvg_fl_config cb = stats_cfg();
    cb.update = 2;
    assert_int_equal(pvg_fl_model_new(&cb, NI, rng, &bad, NULL), PVG_ERR_INVALID);
    cb = stats_cfg();
    cb.noise_ridge = -1;
    assert_int_equal(pvg_fl_model_new(&cb, NI, rng, &bad, NULL), PVG_ERR_INVALID);
    cb.noise_ridge = NAN;
    assert_int_equal(pvg_fl_model_new(&cb, NI, rng, &bad, NULL), PVG_ERR_INVALID);
    assert_null(bad);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
}

/* The noise ridge is post-processing of a noisy sum: without DP it has no
 * effect; with central DP it shrinks the items (a larger ridge, smaller
 * factors on the same noisy sum). */
static double run_norm(double ridge, int dp)
{
    pvg_fl_config c = stats_cfg();
    c.noise_ridge = ridge;
    c.clip = 1;
    if (dp) {
        c.dp = PVG_FL_DP_CENTRAL;
        c.noise_multiplier = 0.5;
    }
    uint64_t indptr[NU + 1];
    uint32_t items[NU * 16];
    toy(indptr, items);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(6);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, NI, rng, &m, NULL), PVG_OK);
    fl_clients cl = {NU, NI, indptr, items, NULL};
    assert_int_equal(fl_sim_round(m, &cl, 1.0, rng, NULL, NULL), PVG_OK);
    const float *V;
    uint32_t ni, k;
    assert_int_equal(pvg_fl_model_item_factors(m, &V, &ni, &k, NULL), PVG_OK);
    double s = 0;
    for (size_t i = 0; i < (size_t)NI * K; i++)
        s += (double)V[i] * V[i];
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
    return sqrt(s);
}

static void test_noise_ridge_only_with_dp(void **state)
{
    (void)state;
    assert_true(run_norm(0, 0) == run_norm(5, 0));
    double plain = run_norm(0, 1), ridged = run_norm(5, 1);
    assert_true(ridged < 0.8 * plain);
}

/* average_solves: the statistics form's fresh solve does not depend on the
 * current factors, so a model without averaging applied the same sum holds
 * that round's solve v*; with averaging, round 1 is v*_1 and round 2 the
 * mean (v*_1 + v*_2) / 2. It is post-processing of the released sums: the
 * clients' vectors and the broadcast's bytes are the same. */
static void test_average_solves_is_the_mean_of_fresh_solves(void **state)
{
    (void)state;
    pvg_fl_config c = stats_cfg();
    c.clip = 1;
    c.dp = PVG_FL_DP_CENTRAL;
    c.noise_multiplier = 0.5;
    pvg_fl_config ca = c;
    ca.average_solves = 1;
    uint64_t indptr[NU + 1];
    uint32_t items[NU * 16];
    toy(indptr, items);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(8);
    pvg_fl_model *avg, *fresh;
    assert_int_equal(pvg_fl_model_new(&ca, NI, rng, &avg, NULL), PVG_OK);
    assert_int_equal(pvg_fl_model_new(&c, NI, rng, &fresh, NULL), PVG_OK);
    size_t d = pvg_fl_update_dim(&c, NI), nk = (size_t)NI * K;
    assert_int_equal(d, pvg_fl_update_dim(&ca, NI));
    uint32_t *sum = malloc(d * sizeof *sum), *vec = malloc(d * sizeof *vec);
    float prev[NI * K];
    for (int r = 0; r < 2; r++) {
        uint8_t *bc;
        size_t bl;
        assert_int_equal(pvg_fl_model_broadcast(avg, &bc, &bl, NULL), PVG_OK);
        assert_int_equal(bc[7], PVG_FL_UPDATE_STATS);
        memset(sum, 0, d * sizeof *sum);
        for (size_t u = 0; u < NU; u++) {
            assert_int_equal(pvg_fl_client_update_ex(bc, bl, items + indptr[u], NULL,
                                                     (size_t)(indptr[u + 1] - indptr[u]), rng, 1,
                                                     vec, d, NULL, NULL),
                             PVG_OK);
            for (size_t i = 0; i < d; i++)
                sum[i] += vec[i];
        }
        free(bc);
        /* the same sum, and the same central noise draw, for both models */
        pvg_rng *n1 = pvg_rng_new_INSECURE_deterministic_for_tests(100 + (uint64_t)r);
        pvg_rng *n2 = pvg_rng_new_INSECURE_deterministic_for_tests(100 + (uint64_t)r);
        assert_int_equal(pvg_fl_model_apply(avg, sum, d, NU, n1, NULL), PVG_OK);
        assert_int_equal(pvg_fl_model_apply(fresh, sum, d, NU, n2, NULL), PVG_OK);
        pvg_rng_free(n1);
        pvg_rng_free(n2);
        const float *Va, *Vf;
        uint32_t ni, k;
        assert_int_equal(pvg_fl_model_item_factors(avg, &Va, &ni, &k, NULL), PVG_OK);
        assert_int_equal(pvg_fl_model_item_factors(fresh, &Vf, &ni, &k, NULL), PVG_OK);
        double dmax = 0, vmax = 0, moved = 0;
        for (size_t i = 0; i < nk; i++) {
            double want = r == 0 ? Vf[i] : 0.5 * ((double)prev[i] + Vf[i]);
            dmax = fmax(dmax, fabs(Va[i] - want));
            vmax = fmax(vmax, fabs(want));
            moved = fmax(moved, fabs((double)Va[i] - Vf[i]));
        }
        assert_true(vmax > 0);
        if (!(dmax <= 1e-5 * vmax))
            fail_msg("round %d: averaged factors off the mean of the solves by %g (max %g)", r + 1,
                     dmax, vmax);
        if (r == 1) assert_true(moved > 1e-3 * vmax); /* the average is not the last solve */
        memcpy(prev, Va, nk * sizeof *prev);
    }
    free(sum);
    free(vec);
    pvg_fl_model_free(avg);
    pvg_fl_model_free(fresh);
    pvg_rng_free(rng);
    /* an out-of-range value is refused */
    pvg_fl_model *bad = NULL;
    ca.average_solves = 2;
    assert_int_equal(pvg_fl_model_new(&ca, NI,
                                      rng = pvg_rng_new_INSECURE_deterministic_for_tests(1), &bad,
                                      NULL),
                     PVG_ERR_INVALID);
    assert_null(bad);
    pvg_rng_free(rng);
}

/* The dense similarity S (n x n) as the sparse prior: every nonzero entry
 * (the diagonal too, which set_item_prior must ignore), into the caller's
 * arrays (n + 1, n * n, n * n). */
static pvg_fl_item_prior dense_prior(const float *S, uint32_t n, uint64_t *ptr, uint32_t *col,
                                     float *val)
{
    size_t q = 0;
    ptr[0] = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++)
            if (S[i * n + j] != 0) col[q] = (uint32_t)j, val[q++] = S[i * n + j];
        ptr[i + 1] = q;
    }
    return (pvg_fl_item_prior){n, ptr, col, val};
}

/* The public item prior: NU clients buy among items 0..29 only; items
 * 30..34 are never bought, and the public similarity links each to one
 * bought item (30 to 0, ..., 34 to 4); items 35..39 are neither bought nor
 * linked. One round under central DP from the same noise draws with and
 * without the prior. */
#define PR_LINKED 5
static void prior_run_ex(double weight, double h, int second, int dp, float *out)
{
    pvg_fl_config c = stats_cfg();
    c.clip = 1;
    c.noise_ridge = 3;
    if (dp) {
        c.dp = PVG_FL_DP_CENTRAL;
        c.noise_multiplier = 0.3;
    }
    uint64_t indptr[NU + 1];
    uint32_t items[NU * 16];
    size_t m = 0;
    indptr[0] = 0;
    for (size_t u = 0; u < NU; u++) { /* two taste groups over 0..14 and 15..29 */
        uint32_t lo = (u % 2) ? 15 : 0;
        for (uint32_t j = 0; j < 15; j++)
            if ((j + u) % 3 != 0) items[m++] = lo + j;
        indptr[u + 1] = m;
    }
    static float S[NI * NI];
    memset(S, 0, sizeof S);
    for (size_t i = 0; i < PR_LINKED; i++)
        S[(30 + i) * NI + i] = S[i * NI + 30 + i] = 1;
    if (second) /* item 30 also linked to item 36, which nobody bought */
        S[30 * NI + 36] = S[36 * NI + 30] = 1;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(21);
    pvg_fl_model *mo;
    assert_int_equal(pvg_fl_model_new(&c, NI, rng, &mo, NULL), PVG_OK);
    static uint64_t ptr[NI + 1];
    static uint32_t col[NI * NI];
    static float val[NI * NI];
    S[7 * NI + 7] = 5; /* the diagonal is ignored */
    pvg_fl_item_prior P = dense_prior(S, NI, ptr, col, val);
    if (weight > 0) assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, weight, h, NULL), PVG_OK);
    fl_clients cl = {NU, NI, indptr, items, NULL};
    assert_int_equal(fl_sim_round(mo, &cl, 1.0, rng, NULL, NULL), PVG_OK);
    const float *V;
    uint32_t ni, k;
    assert_int_equal(pvg_fl_model_item_factors(mo, &V, &ni, &k, NULL), PVG_OK);
    memcpy(out, V, (size_t)NI * K * sizeof *out);
    pvg_fl_model_free(mo);
    pvg_rng_free(rng);
}

static void prior_run(double weight, int dp, float *out)
{
    prior_run_ex(weight, 0, 0, dp, out);
}

static double cosine(const float *a, const float *b)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < K; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static void test_item_prior_pulls_unbought_items_toward_public_neighbours(void **state)
{
    (void)state;
    static float plain[NI * K], prior[NI * K], half[NI * K], nodp[NI * K], nodp_prior[NI * K];
    prior_run(0, 1, plain);
    prior_run(1, 1, prior);
    prior_run(0.5, 1, half);
    /* an unbought item's factor is noise without the prior and its linked
     * neighbour's direction with it */
    double cp = 0, cq = 0;
    for (size_t i = 0; i < PR_LINKED; i++) {
        cp += cosine(plain + (30 + i) * K, plain + i * K) / PR_LINKED;
        cq += cosine(prior + (30 + i) * K, prior + i * K) / PR_LINKED;
    }
    if (!(cq > 0.9) || !(cp < 0.6))
        fail_msg("mean cosine of an unbought item with its public neighbour: %.3f with the prior, "
                 "%.3f without",
                 cq, cp);
    /* half the weight: less of the pull (an unbought item's factor is
     * about ridge mu / (ridge + reg_j + alpha0 lam) plus the same noise
     * solve; its neighbour is pulled toward it in turn, so not exactly half) */
    for (size_t i = 0; i < PR_LINKED; i++) {
        const float *v = half + (30 + i) * K;
        double n_half = 0, n_full = 0;
        for (size_t a = 0; a < K; a++) {
            n_half += ((double)v[a] - plain[(30 + i) * K + a]) * (v[a] - plain[(30 + i) * K + a]);
            n_full += ((double)prior[(30 + i) * K + a] - plain[(30 + i) * K + a]) *
                      (prior[(30 + i) * K + a] - plain[(30 + i) * K + a]);
        }
        if (!(n_half > 0.04 * n_full && n_half < 0.64 * n_full))
            fail_msg("item %zu: moved %g by half the weight, %g by the whole", 30 + i, sqrt(n_half),
                     sqrt(n_full));
    }
    /* items without public neighbours are solved exactly as without the
     * prior (the same noise draws) */
    for (size_t j = 35; j < NI; j++)
        for (size_t a = 0; a < K; a++)
            assert_true(prior[j * K + a] == plain[j * K + a]);
    /* without DP there is no noise ridge: the prior changes nothing */
    prior_run(0, 0, nodp);
    prior_run(1, 0, nodp_prior);
    assert_memory_equal(nodp, nodp_prior, sizeof nodp);
}

/* count_half: item 30 is linked to item 0 (bought by half the clients) and
 * to item 36 (bought by nobody, its solve noise). Weighing the neighbours
 * by their released counts lets item 0 lead: item 30 moves toward item 0's
 * factor (its mean with noise otherwise), with the same total pull. */
static void test_item_prior_count_half_weighs_reliable_neighbours(void **state)
{
    (void)state;
    static float by_s[NI * K], by_count[NI * K];
    prior_run_ex(1, 0, 1, 1, by_s);
    prior_run_ex(1, 5, 1, 1, by_count);
    double d_s = 0, d_c = 0;
    for (size_t a = 0; a < K; a++) {
        d_s += ((double)by_s[30 * K + a] - by_s[a]) * (by_s[30 * K + a] - by_s[a]);
        d_c += ((double)by_count[30 * K + a] - by_count[a]) * (by_count[30 * K + a] - by_count[a]);
    }
    if (!(d_c < 0.5 * d_s))
        fail_msg("item 30's distance to item 0: %g weighing by counts, %g by the similarity alone",
                 sqrt(d_c), sqrt(d_s));
    /* items without public neighbours: unchanged */
    for (size_t j = 37; j < NI; j++)
        for (size_t a = 0; a < K; a++)
            assert_true(by_count[j * K + a] == by_s[j * K + a]);
}

static void test_item_prior_refuses_bad_input(void **state)
{
    (void)state;
    pvg_fl_config c = stats_cfg();
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    pvg_fl_model *mo;
    assert_int_equal(pvg_fl_model_new(&c, NI, rng, &mo, NULL), PVG_OK);
    /* row 3: columns 7, 9; row 5: column 1 */
    uint64_t ptr[NI + 1] = {0};
    for (size_t i = 0; i < NI; i++)
        ptr[i + 1] = i < 3 ? 0 : i < 5 ? 2 : 3;
    uint32_t col[3] = {7, 9, 1};
    float val[3] = {0.5f, 0.25f, 1};
    pvg_fl_item_prior P = {NI, ptr, col, val};
    pvg_error e;
    pvg_error_clear(&e);
    P.n_items = NI - 1;
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, 0, &e), PVG_ERR_INVALID);
    assert_non_null(strstr(e.text, "39 items"));
    P.n_items = NI;
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1.5, 0, &e), PVG_ERR_INVALID);
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, NAN, 0, &e), PVG_ERR_INVALID);
    val[1] = -0.5f;
    pvg_error_clear(&e);
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, 0, &e), PVG_ERR_INVALID);
    assert_int_equal(e.offset, 1);
    assert_non_null(strstr(e.text, "(3,9)"));
    val[1] = INFINITY;
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, 0, &e), PVG_ERR_INVALID);
    val[1] = 0.25f;
    col[1] = 7; /* column 7 twice in row 3 */
    pvg_error_clear(&e);
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, 0, &e), PVG_ERR_INVALID);
    assert_int_equal(e.offset, 1);
    assert_non_null(strstr(e.text, "twice"));
    col[1] = NI; /* out of range */
    pvg_error_clear(&e);
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, 0, &e), PVG_ERR_INVALID);
    assert_int_equal(e.offset, 1);
    col[1] = 9;
    ptr[4] = 1; /* row_ptr decreasing at row 4 -> 5 */
    ptr[5] = 0;
    pvg_error_clear(&e);
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, 0, &e), PVG_ERR_INVALID);
    assert_int_equal(e.offset, 5);
    ptr[4] = 2;
    ptr[5] = 3;
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, 0, &e), PVG_OK);
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, -1, &e), PVG_ERR_INVALID);
    assert_int_equal(pvg_fl_model_set_item_prior(mo, &P, 1, NAN, &e), PVG_ERR_INVALID);
    assert_int_equal(pvg_fl_model_set_item_prior(mo, NULL, 0, 0, &e), PVG_OK); /* removed */
    assert_int_equal(pvg_fl_model_set_item_prior(NULL, &P, 1, 0, &e), PVG_ERR_INVALID);
    pvg_fl_model_free(mo);
    pvg_rng_free(rng);
}

/* The sparse prior from titles keeps each item's top_l neighbours of the
 * dense content similarity, with its values, ties to the lower index; an
 * item without a title gets none; all neighbours when top_l >= n - 1. */
static void test_item_prior_from_titles_is_top_l_of_content_similarity(void **state)
{
    (void)state;
    enum { N = 12 };
    const char *titles[N] = {"red wooden toy train",
                             "blue wooden toy train",
                             "red toy car",
                             "wooden spoon",
                             NULL,
                             "red tea cup",
                             "blue tea cup",
                             "tea pot",
                             "",
                             "wooden toy boat",
                             "red wooden boat",
                             "glass tea cup"};
    static float S[N * N];
    size_t linked_dense = 0, linked = 0;
    assert_int_equal(pvg_content_similarity(titles, N, S, &linked_dense, NULL), PVG_OK);
    for (uint32_t L = 1; L <= N; L++) {
        pvg_fl_item_prior P;
        assert_int_equal(pvg_fl_item_prior_from_titles(titles, N, L, &P, &linked, NULL), PVG_OK);
        assert_int_equal(P.n_items, N);
        assert_int_equal(linked, linked_dense);
        for (size_t i = 0; i < N; i++) {
            size_t nnz = 0;
            for (size_t j = 0; j < N; j++)
                nnz += S[i * N + j] > 0;
            size_t want = nnz < L ? nnz : L;
            assert_int_equal(P.row_ptr[i + 1] - P.row_ptr[i], want);
            if (i == 4 || i == 8) assert_int_equal(want, 0);
            float kth = 0; /* the smallest kept value */
            for (uint64_t q = P.row_ptr[i]; q < P.row_ptr[i + 1]; q++) {
                uint32_t j = P.col[q];
                assert_true(j != i);
                if (q > P.row_ptr[i]) assert_true(j > P.col[q - 1]);
                assert_true(P.val[q] == S[i * N + j]);
                if (q == P.row_ptr[i] || P.val[q] < kth) kth = P.val[q];
            }
            /* every dropped neighbour ranks below every kept one */
            for (size_t j = 0; j < N; j++) {
                if (!(S[i * N + j] > 0)) continue;
                int kept = 0;
                for (uint64_t q = P.row_ptr[i]; q < P.row_ptr[i + 1]; q++)
                    kept |= P.col[q] == j;
                if (!kept) assert_true(S[i * N + j] <= kth);
            }
        }
        pvg_fl_item_prior_free(&P);
        assert_null(P.row_ptr);
    }
    pvg_fl_item_prior P;
    assert_int_equal(pvg_fl_item_prior_from_titles(NULL, N, 4, &P, &linked, NULL), PVG_OK);
    assert_int_equal(P.row_ptr[N], 0);
    assert_int_equal(linked, 0);
    pvg_fl_item_prior_free(&P);
    pvg_error e;
    pvg_error_clear(&e);
    assert_int_equal(pvg_fl_item_prior_from_titles(titles, 0, 4, &P, &linked, &e), PVG_ERR_INVALID);
    assert_null(P.row_ptr);
}

/* one row of a prior as (column, value) pairs, checked exactly */
static void assert_row(const pvg_fl_item_prior *P, uint32_t i, const uint32_t *col,
                       const float *val, size_t n)
{
    assert_int_equal(P->row_ptr[i + 1] - P->row_ptr[i], n);
    for (size_t q = 0; q < n; q++) {
        assert_int_equal(P->col[P->row_ptr[i] + q], col[q]);
        assert_true(P->val[P->row_ptr[i] + q] == val[q]);
    }
}

/* The labels' prior: whole labels ('|' or ','), trimmed, ASCII case
 * folded, each counted once per item; the squared cosine of the binary
 * label vectors; top_l with ties to the lower index. "Sci-Fi" is one label,
 * not the words "sci" and "fi" the titles' function would cut it into. */
static void test_item_prior_from_labels_is_squared_cosine_of_whole_labels(void **state)
{
    (void)state;
    enum { N = 9 };
    const char *labels[N] = {"Kitchen|Knives",        /* {kitchen, knives} */
                             " kitchen , Gifts ",     /* {kitchen, gifts} */
                             NULL,                    /* none */
                             "Garden",                /* {garden}: shares nothing */
                             "Knives|KITCHEN|knives", /* {knives, kitchen} */
                             " \t ",                  /* blank: none */
                             "Gifts",                 /* {gifts} */
                             "Sci-Fi",                /* {sci-fi} */
                             "Sci, Fi"};              /* {sci, fi}: not linked to 7 */
    pvg_fl_item_prior P;
    size_t linked = 0;
    assert_int_equal(pvg_fl_item_prior_from_labels(labels, N, 0, &P, &linked, NULL), PVG_OK);
    assert_int_equal(P.n_items, N);
    assert_int_equal(linked, 4);
    assert_row(&P, 0, (const uint32_t[]){1, 4}, (const float[]){0.25f, 1.0f}, 2);
    assert_row(&P, 1, (const uint32_t[]){0, 4, 6}, (const float[]){0.25f, 0.25f, 0.5f}, 3);
    assert_row(&P, 4, (const uint32_t[]){0, 1}, (const float[]){1.0f, 0.25f}, 2);
    assert_row(&P, 6, (const uint32_t[]){1}, (const float[]){0.5f}, 1);
    for (uint32_t i = 2; i < N; i++)
        if (i != 4 && i != 6) assert_row(&P, i, NULL, NULL, 0);
    pvg_fl_item_prior_free(&P);
    /* top 2: item 1 keeps 6 (0.5) and 0 of the tied 0 and 4 (0.25), columns ascending */
    assert_int_equal(pvg_fl_item_prior_from_labels(labels, N, 2, &P, &linked, NULL), PVG_OK);
    assert_row(&P, 1, (const uint32_t[]){0, 6}, (const float[]){0.25f, 0.5f}, 2);
    pvg_fl_item_prior_free(&P);
    assert_int_equal(pvg_fl_item_prior_from_labels(labels, N, 1, &P, &linked, NULL), PVG_OK);
    assert_row(&P, 1, (const uint32_t[]){6}, (const float[]){0.5f}, 1);
    assert_row(&P, 0, (const uint32_t[]){4}, (const float[]){1.0f}, 1);
    pvg_fl_item_prior_free(&P);
    /* a label every item carries still links them (the titles' function weighs it 0) */
    const char *all[3] = {"All", "all", "ALL|Red"};
    assert_int_equal(pvg_fl_item_prior_from_labels(all, 3, 0, &P, &linked, NULL), PVG_OK);
    assert_int_equal(linked, 3);
    assert_row(&P, 0, (const uint32_t[]){1, 2}, (const float[]){1.0f, 0.5f}, 2);
    pvg_fl_item_prior_free(&P);
    assert_int_equal(pvg_fl_item_prior_from_titles(all, 3, 0, &P, &linked, NULL), PVG_OK);
    assert_int_equal(linked, 0);
    pvg_fl_item_prior_free(&P);
    assert_int_equal(pvg_fl_item_prior_from_labels(NULL, 3, 0, &P, &linked, NULL), PVG_OK);
    assert_int_equal(P.row_ptr[3], 0);
    assert_int_equal(linked, 0);
    pvg_fl_item_prior_free(&P);
}

/* A bad list is refused naming the item (err.line = index + 1), the byte
 * offset and what was expected; nothing is returned. */
static void test_item_prior_from_labels_refuses_bad_lists(void **state)
{
    (void)state;
    static char long_label[PVG_FL_LABEL_MAX + 2], many[2 * (PVG_FL_LABELS_MAX + 1) + 1];
    memset(long_label, 'x', PVG_FL_LABEL_MAX + 1);
    for (int q = 0; q <= PVG_FL_LABELS_MAX; q++)
        memcpy(many + 2 * q, "a|", 2);
    many[2 * PVG_FL_LABELS_MAX + 1] = 0; /* 65 labels "a|a|...|a" */
    struct {
        const char *text;
        long long offset;
        const char *what;
    } bad[] = {
        {"Kitchen||Knives", 8, "empty label at byte 8"},
        {"Kitchen, Knives,", 16, "empty label at byte 16"},
        {" | Knives", 0, "empty label at byte 0"},
        {"Kitchen|Kni\x01ves", 11, "control character 0x01 at byte 11"},
        {long_label, 0, "expected at most 256"},
        {many, 2 * PVG_FL_LABELS_MAX, "more than 64 labels"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        const char *labels[3] = {"Kitchen", bad[b].text, "Knives"};
        pvg_fl_item_prior P;
        pvg_error e;
        pvg_error_clear(&e);
        size_t linked = 7;
        assert_int_equal(pvg_fl_item_prior_from_labels(labels, 3, 0, &P, &linked, &e),
                         PVG_ERR_INVALID);
        assert_null(P.row_ptr);
        assert_int_equal(linked, 0);
        assert_int_equal(e.line, 2);
        assert_int_equal(e.offset, bad[b].offset);
        assert_non_null(strstr(e.text, "item 1: labels: "));
        assert_non_null(strstr(e.text, bad[b].what));
    }
    /* exactly the bounds are fine */
    long_label[PVG_FL_LABEL_MAX] = 0;
    many[2 * PVG_FL_LABELS_MAX - 1] = 0; /* 64 labels */
    const char *ok[2] = {long_label, many};
    pvg_fl_item_prior P;
    assert_int_equal(pvg_fl_item_prior_from_labels(ok, 2, 0, &P, NULL, NULL), PVG_OK);
    pvg_fl_item_prior_free(&P);
    pvg_error e;
    pvg_error_clear(&e);
    assert_int_equal(pvg_fl_item_prior_from_labels(ok, 0, 0, &P, NULL, &e), PVG_ERR_INVALID);
}

/* Hostile lists, as an attacker would write a catalogue's descriptions:
 * separators only, control characters (DEL, ESC, CR, LF), a description at
 * the catalogue's limit (PVG_CATALOG_DESCRIPTION_MAX) as one label or as
 * thousands; each refused naming the item and the byte, and never quoting
 * the text. UTF-8 passes through as bytes (only ASCII folded), a tab inside
 * a label is kept, and a label every item carries links each item to its
 * top_l lowest-indexed others. */
static void test_item_prior_from_labels_hostile_lists(void **state)
{
    (void)state;
    static char one_long[16385], many[16385];
    memset(one_long, 'x', 16384);
    for (size_t q = 0; q + 1 < 16384; q += 2)
        memcpy(many + q, "a|", 2);
    many[16383] = 'a';
    struct {
        const char *text;
        long long offset;
        const char *what;
    } bad[] = {
        {"|", 0, "empty label at byte 0"},
        {",,,", 0, "empty label at byte 0"},
        {" | ", 0, "empty label at byte 0"},
        {"SECRET|,b", 7, "empty label at byte 7"},
        {"SECRET\x7f", 6, "control character 0x7f at byte 6"},
        {"\x1b[31mSECRET", 0, "control character 0x1b at byte 0"},
        {"SECRET\r\nx", 6, "control character 0x0d at byte 6"},
        {"SECRET|x\n", 8, "control character 0x0a at byte 8"},
        {one_long, 0, "has 16384 bytes, expected at most 256"},
        {many, 128, "more than 64 labels (the next at byte 128)"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        const char *labels[2] = {bad[b].text, "x"};
        pvg_fl_item_prior P;
        pvg_error e;
        pvg_error_clear(&e);
        assert_int_equal(pvg_fl_item_prior_from_labels(labels, 2, 0, &P, NULL, &e),
                         PVG_ERR_INVALID);
        assert_null(P.row_ptr);
        assert_int_equal(e.line, 1);
        assert_int_equal(e.offset, bad[b].offset);
        assert_non_null(strstr(e.text, "item 0: labels: "));
        assert_non_null(strstr(e.text, bad[b].what));
        assert_null(strstr(e.text, "SECRET")); /* the catalogue's text is not quoted */
    }
    /* UTF-8 labels are compared as bytes, ASCII folded: "Épée" and "épée"
       differ, "KITCHEN" and "kitchen" do not; invalid UTF-8 is no crash */
    const char *utf[4] = {"\xc3\x89p\xc3\xa9\x65|KITCHEN", "\xc3\xa9p\xc3\xa9\x65|kitchen",
                          "\xff\xfe|Kitchen\tTools", "\xff\xfe"};
    pvg_fl_item_prior P;
    size_t linked = 0;
    assert_int_equal(pvg_fl_item_prior_from_labels(utf, 4, 0, &P, &linked, NULL), PVG_OK);
    assert_int_equal(linked, 4);
    assert_row(&P, 0, (const uint32_t[]){1}, (const float[]){0.25f}, 1);
    assert_row(&P, 2, (const uint32_t[]){3}, (const float[]){0.5f}, 1);
    pvg_fl_item_prior_free(&P);
    /* one label on every item: each keeps its top_l lowest-indexed others */
    enum { N = 3000 };
    const char **all = malloc(N * sizeof *all);
    assert_non_null(all);
    for (size_t i = 0; i < N; i++)
        all[i] = i % 2 ? "Everything" : " everything ";
    assert_int_equal(pvg_fl_item_prior_from_labels(all, N, 0, &P, &linked, NULL), PVG_OK);
    assert_int_equal(linked, N);
    assert_int_equal(P.row_ptr[N], (uint64_t)N * PVG_FL_PRIOR_NEIGHBOURS);
    for (size_t i = 0; i < N; i += 997)
        for (uint32_t q = 0; q < PVG_FL_PRIOR_NEIGHBOURS; q++) {
            uint32_t want = q < i ? q : q + 1;
            assert_int_equal(P.col[P.row_ptr[i] + q], want);
            assert_true(P.val[P.row_ptr[i] + q] == 1.0f);
        }
    pvg_fl_item_prior_free(&P);
    free(all);
}

int main(void)
{
    if (pvg_init() != PVG_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_sends_unit_rows),
        cmocka_unit_test(test_one_client_moves_sum_by_at_most_clip),
        cmocka_unit_test(test_server_solves_items_exactly),
        cmocka_unit_test(test_update_byte_and_config),
        cmocka_unit_test(test_noise_ridge_only_with_dp),
        cmocka_unit_test(test_average_solves_is_the_mean_of_fresh_solves),
        cmocka_unit_test(test_item_prior_pulls_unbought_items_toward_public_neighbours),
        cmocka_unit_test(test_item_prior_count_half_weighs_reliable_neighbours),
        cmocka_unit_test(test_item_prior_refuses_bad_input),
        cmocka_unit_test(test_item_prior_from_titles_is_top_l_of_content_similarity),
        cmocka_unit_test(test_item_prior_from_labels_is_squared_cosine_of_whole_labels),
        cmocka_unit_test(test_item_prior_from_labels_refuses_bad_lists),
        cmocka_unit_test(test_item_prior_from_labels_hostile_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
