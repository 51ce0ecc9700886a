/*
 * test_dp_sampler.c - the exact samplers against their exact distributions:
 * Pearson chi-square goodness of fit on 10^6 draws per sampler (10^5 when
 * PVG_SANITIZED=1), fixed seed, tail bins included. Bins whose expected
 * count is below 5 are merged into the two tail bins.
 *
 * False-alarm rate: each test rejects at significance 1e-6 (critical value
 * from the Wilson-Hilferty approximation of the chi-square quantile,
 * accurate to ~1% of the critical value for >= 3 degrees of freedom; one
 * degree of freedom uses the exact normal quantile), so the whole file
 * false-alarms with probability below 2e-5 for a fresh seed; with the fixed
 * seed it is deterministic.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/dp.h>

#include "dp/dp_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define Z_1E6 4.753424308822899 /* upper 1e-6 quantile of N(0,1) */

static long n_draws(void)
{
    return getenv("PVG_SANITIZED") ? 100000 : 1000000;
}

static double chi2_crit(int k)
{
    if (k == 1) return Z_1E6 * Z_1E6 * 1.1; /* two-sided ~ P(|Z| > 4.89) = 1e-6 */
    double h = 2.0 / (9.0 * k);
    double c = 1 - h + Z_1E6 * sqrt(h);
    return k * c * c * c;
}

/* Pearson test of observed counts obs[0..m) against probabilities p[0..m)
 * (summing to 1), after merging low-expectation bins at both ends. */
static void chi2_check(const char *what, const long *obs, const double *p, int m, long n)
{
    double stat = 0;
    int bins = 0;
    int lo = 0, hi = m - 1;
    double plo = 0, phi = 0;
    long olo = 0, ohi = 0;
    while (lo < hi && (plo + p[lo]) * (double)n < 5) {
        plo += p[lo];
        olo += obs[lo];
        lo++;
    }
    while (hi > lo && (phi + p[hi]) * (double)n < 5) {
        phi += p[hi];
        ohi += obs[hi];
        hi--;
    }
    if (plo > 0 || olo > 0) {
        plo += p[lo];
        olo += obs[lo];
        lo++;
        stat += ((double)olo - n * plo) * ((double)olo - n * plo) / (n * plo);
        bins++;
    }
    if (phi > 0 || ohi > 0) {
        phi += p[hi];
        ohi += obs[hi];
        hi--;
        stat += ((double)ohi - n * phi) * ((double)ohi - n * phi) / (n * phi);
        bins++;
    }
    for (int i = lo; i <= hi; i++) {
        double e = n * p[i];
        if (e <= 0) {
            if (obs[i] != 0) {
                print_error("%s: impossible value drawn (bin %d)\n", what, i);
                fail();
            }
            continue;
        }
        stat += ((double)obs[i] - e) * ((double)obs[i] - e) / e;
        bins++;
    }
    double crit = chi2_crit(bins - 1);
    print_message("%-40s chi2 %10.2f  dof %4d  crit(1e-6) %8.2f\n", what, stat, bins - 1, crit);
    if (!(stat < crit)) fail();
}

static void test_bernoulli(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    long n = n_draws();
    struct {
        uint64_t num, den;
    } c[] = {{1, 3}, {999, 1000}, {7, 1ull << 40}};
    for (int k = 0; k < 3; k++) {
        long ones = 0;
        for (long i = 0; i < n; i++)
            ones += pvg_dp_bernoulli(rng, c[k].num, c[k].den);
        double p = (double)c[k].num / (double)c[k].den;
        long obs[2] = {n - ones, ones};
        double pr[2] = {1 - p, p};
        if (p * n < 5) {
            assert_true(ones <= 3);
            continue;
        } /* 7/2^40: expect none */
        chi2_check("bernoulli(num/den)", obs, pr, 2, n);
    }
    pvg_rng_free(rng);
}

static void test_bernoulli_exp(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(2);
    long n = n_draws();
    struct {
        uint64_t num, den;
    } c[] = {{0, 1}, {3, 10}, {1, 1}, {27, 10}, {5, 1}, {1000001, 1000000}};
    for (int k = 0; k < 6; k++) {
        long ones = 0;
        for (long i = 0; i < n; i++)
            ones += pvg_dp_bernoulli_exp(rng, c[k].num, c[k].den);
        double p = exp(-(double)c[k].num / (double)c[k].den);
        if (p == 1) {
            assert_true(ones == n);
            continue;
        }
        long obs[2] = {n - ones, ones};
        double pr[2] = {1 - p, p};
        char what[64];
        snprintf(what, sizeof what, "bernoulli_exp(%llu/%llu)", (unsigned long long)c[k].num,
                 (unsigned long long)c[k].den);
        chi2_check(what, obs, pr, 2, n);
    }
    /* The 128-bit/GMP path of the discrete Gaussian's acceptance test:
     * exp(-diff^2/gden) with diff^2 beyond 128 bits. */
    struct {
        u128 diff, gden;
        double gamma;
    } b[] = {
        {(u128)1 << 64, (u128)1 << 126, 4.0},
        {(u128)1 << 64, (u128)3 << 125, 8.0 / 3.0},
    };
    for (int k = 0; k < 2; k++) {
        long ones = 0, m = n / 4;
        for (long i = 0; i < m; i++)
            ones += dp_bern_exp_big(rng, b[k].diff, b[k].gden);
        double p = exp(-b[k].gamma);
        long obs[2] = {m - ones, ones};
        double pr[2] = {1 - p, p};
        chi2_check("bernoulli_exp big (GMP path)", obs, pr, 2, m);
    }
    pvg_rng_free(rng);
}

static void test_geometric(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    long n = n_draws();
    /* scale 3/2: P(X = x) = (1 - a) a^x, a = exp(-2/3) */
    enum { M = 80 };
    long obs[M] = {0};
    double p[M];
    double a = exp(-2.0 / 3.0);
    for (long i = 0; i < n; i++) {
        uint64_t x = pvg_dp_geometric(rng, 3, 2);
        obs[x < M - 1 ? x : M - 1]++;
    }
    for (int x = 0; x < M - 1; x++)
        p[x] = (1 - a) * pow(a, x);
    p[M - 1] = pow(a, M - 1); /* tail P(X >= M-1) */
    chi2_check("geometric(scale 3/2)", obs, p, M, n);
    pvg_rng_free(rng);
}

static void dlap_case(pvg_rng *rng, uint64_t num, uint64_t den, long n)
{
    double b = (double)num / (double)den;
    int K = (int)ceil(b * 30) + 2; /* bins -K..K plus two tails */
    int m = 2 * K + 3;
    long *obs = calloc((size_t)m, sizeof *obs);
    double *p = calloc((size_t)m, sizeof *p);
    assert_non_null(obs);
    assert_non_null(p);
    for (long i = 0; i < n; i++) {
        int64_t x = pvg_dp_discrete_laplace(rng, num, den);
        int idx = x < -K ? 0 : x > K ? m - 1 : (int)(x + K + 1);
        obs[idx]++;
    }
    double tail = pvg_dp_discrete_laplace_tail(b, K) / 2;
    p[0] = tail;
    p[m - 1] = tail;
    for (int x = -K; x <= K; x++)
        p[x + K + 1] = pvg_dp_discrete_laplace_pmf(b, x);
    char what[64];
    snprintf(what, sizeof what, "discrete_laplace(%llu/%llu)", (unsigned long long)num,
             (unsigned long long)den);
    chi2_check(what, obs, p, m, n);
    free(obs);
    free(p);
}

static void test_discrete_laplace(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(4);
    long n = n_draws();
    dlap_case(rng, 1, 1, n);
    dlap_case(rng, 7, 2, n);
    dlap_case(rng, 1, 3, n); /* scale 1/3: mass concentrated at 0 */
    dlap_case(rng, 100, 3, n);
    pvg_rng_free(rng);
}

static void dg_case(pvg_rng *rng, uint64_t num, uint64_t den, long n)
{
    double s2 = (double)num / (double)den, s = sqrt(s2);
    int K = (int)ceil(s * 7) + 2;
    int m = 2 * K + 3;
    long *obs = calloc((size_t)m, sizeof *obs);
    double *p = calloc((size_t)m, sizeof *p);
    assert_non_null(obs);
    assert_non_null(p);
    long double sum2 = 0;
    for (long i = 0; i < n; i++) {
        int64_t x = pvg_dp_discrete_gaussian(rng, num, den);
        sum2 += (long double)x * x;
        int idx = x < -K ? 0 : x > K ? m - 1 : (int)(x + K + 1);
        obs[idx]++;
    }
    double mass = 0, p0 = pvg_dp_discrete_gaussian_pmf(s2, 0);
    assert_true(fabs(pvg_dp_discrete_gaussian_pmf(s2, 3) - p0 * exp(-9 / (2 * s2))) < 1e-15);
    for (int x = -K; x <= K; x++) {
        p[x + K + 1] = p0 * exp(-(double)x * x / (2 * s2));
        mass += p[x + K + 1];
    }
    p[0] = p[m - 1] = (1 - mass) / 2 > 0 ? (1 - mass) / 2 : 0;
    char what[64];
    snprintf(what, sizeof what, "discrete_gaussian(%llu/%llu)", (unsigned long long)num,
             (unsigned long long)den);
    chi2_check(what, obs, p, m, n);
    /* variance: slightly below sigma^2 for small sigma, ~sigma^2 for large */
    double var = (double)(sum2 / n);
    if (s2 >= 4) assert_true(fabs(var - s2) < 8 * s2 * sqrt(2.0 / n) + 0.01 * s2);
    free(obs);
    free(p);
}

static void test_discrete_gaussian(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    long n = n_draws();
    dg_case(rng, 1, 1, n);
    dg_case(rng, 10, 3, n);
    dg_case(rng, 1, 5, n);             /* sigma^2 = 0.2 */
    dg_case(rng, 2500, 1, n);          /* sigma = 50 */
    dg_case(rng, 40000001, 16, n / 4); /* sigma ~ 1581, rational with large numerator */
    pvg_rng_free(rng);
}

/* The samplers never touch floating point: a draw sequence is a pure
 * function of the generator's bytes (same seed, same draws). */
static void test_determinism(void **state)
{
    pvg_rng *a = pvg_rng_new_INSECURE_deterministic_for_tests(77);
    pvg_rng *b = pvg_rng_new_INSECURE_deterministic_for_tests(77);
    for (int i = 0; i < 1000; i++) {
        assert_true(pvg_dp_discrete_gaussian(a, 17, 3) == pvg_dp_discrete_gaussian(b, 17, 3));
        assert_true(pvg_dp_discrete_laplace(a, 5, 2) == pvg_dp_discrete_laplace(b, 5, 2));
    }
    pvg_rng_free(a);
    pvg_rng_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bernoulli),         cmocka_unit_test(test_bernoulli_exp),
        cmocka_unit_test(test_geometric),         cmocka_unit_test(test_discrete_laplace),
        cmocka_unit_test(test_discrete_gaussian), cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
