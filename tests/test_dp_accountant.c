/*
 * test_dp_accountant.c - the privacy accountants against the values asserted
 * in the test suites of Opacus, TensorFlow Privacy and Google's
 * dp_accounting (each case cites its source file and test), against a
 * numerical integration of the subsampled-Gaussian moment, and against the
 * closed forms of the Gaussian mechanism.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/dp.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void near_abs(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol)) {
        print_error("%s: got %.12g want %.12g (abs tol %g)\n", what, got, want, tol);
        fail();
    }
}

static void near_rel(double got, double want, double rtol, const char *what)
{
    if (!(fabs(got - want) <= rtol * fabs(want))) {
        print_error("%s: got %.12g want %.12g (rel tol %g)\n", what, got, want, rtol);
        fail();
    }
}

/* ---- TensorFlow Privacy: tensorflow_privacy/privacy/analysis/rdp_accountant_test.py ---- */

static void tfp_compute_rdp(void **state)
{
    /* test_compute_rdp_no_data: compute_rdp(0, 10, 1, 20) == 0 */
    assert_true(pvg_dp_rdp_subsampled_gaussian(0, 10, 20) == 0);
    /* test_compute_rdp_no_sampling: compute_rdp(1, 10, 1, 20) == 0.1 */
    near_abs(pvg_dp_rdp_subsampled_gaussian(1, 10, 20), 0.1, 1e-15, "no sampling");
    /* test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) ~ 0.07737 (places=5) */
    near_abs(10 * pvg_dp_rdp_subsampled_gaussian(0.1, 2, 5), 0.07737, 5e-6, "rdp scalar");
    /* test_compute_rdp_sequence: compute_rdp(0.01, 2.5, 50, [1.5,2.5,5,50,100,inf]),
     * delta=1e-5 */
    const double orders[] = {1.5, 2.5, 5, 50, 100};
    const double want[] = {0.00065, 0.001085, 0.00218075, 0.023846, 167.416307};
    for (int i = 0; i < 5; i++)
        near_abs(50 * pvg_dp_rdp_subsampled_gaussian(0.01, 2.5, orders[i]), want[i], 1e-5,
                 "rdp sequence");
    assert_true(isinf(pvg_dp_rdp_subsampled_gaussian(0.01, 2.5, INFINITY)));
}

/* dp_accounting: python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant_test.py,
 * test_compute_rdp_poisson_sampled_gaussian (np.allclose rtol=1e-4).
 * Integer orders must agree. At fractional orders dp_accounting (since it moved to
 * _log_comb) sums the magnitudes of the binomial series, whose coefficients alternate
 * in sign beyond floor(alpha) + 1: an upper bound. We sum the signed terms, the exact
 * moment (checked against numerical integration below, and equal to Opacus' and the
 * earlier TF Privacy values above), so ours must be below theirs and close. */
static void dpa_poisson_sampled_gaussian(void **state)
{
    const double orders[] = {1.5, 2.5, 5, 50, 100};
    const double want[] = {6.70579741e-04, 1.08548710e-03, 2.18075656e-03, 2.38460375e-02,
                           1.67416308e02};
    for (int i = 0; i < 5; i++) {
        double got = 50 * pvg_dp_rdp_subsampled_gaussian(0.01, 2.5, orders[i]);
        if (orders[i] == floor(orders[i])) {
            near_rel(got, want[i], 1e-4, "poisson sampled gaussian");
        } else {
            assert_true(got <= want[i]);
            near_rel(got, want[i], 0.05, "poisson sampled gaussian (fractional)");
        }
    }
    /* test_compute_rdp_gaussian: alpha/(2 sigma^2) */
    near_rel(pvg_dp_rdp_gaussian(2.71828, 3.14159), 3.14159 / (2 * 2.71828 * 2.71828), 1e-15,
             "gaussian rdp");
}

/* TF Privacy test_get_privacy_spent_check_target_delta / _eps and dp_accounting
 * test_compute_epsilon_delta_pure_dp: orders 2..32, rdp 1.1 -> eps 1.32783806176 at
 * delta 1e-5, optimal order 32 (assertAlmostEqual: 7 places). */
static void pure_dp_conversion(void **state)
{
    double orders[31], rdp[31], ord;
    for (int i = 0; i < 31; i++) {
        orders[i] = 2 + i;
        rdp[i] = 1.1;
    }
    double eps = pvg_dp_rdp_to_epsilon(orders, rdp, 31, 1e-5, PVG_DP_CONVERSION_IMPROVED, &ord);
    near_abs(eps, 1.32783806176, 5e-8, "pure dp eps");
    assert_true(ord == 32);
    double delta = pvg_dp_rdp_to_delta(orders, rdp, 31, 1.32783806176, &ord);
    near_abs(delta, 1e-5, 5e-8, "pure dp delta");
    assert_true(ord == 32);
    /* classic conversion is never better */
    double eps_c = pvg_dp_rdp_to_epsilon(orders, rdp, 31, 1e-5, PVG_DP_CONVERSION_CLASSIC, NULL);
    near_abs(eps_c, 1.1 + log(1e5) / 31, 1e-12, "classic conversion");
    assert_true(eps_c >= eps);
}

/* TF Privacy test_get_privacy_spent_check_target_delta (second part) and dp_accounting
 * test_compute_epsilon_delta_gaussian: sigma 4.530877117 without sampling, orders
 * 0.001 i for i in [1000, 100000): eps ~ 1 at delta 1e-6 and delta ~ 1e-6 at eps 1. */
static void gaussian_fine_orders(void **state)
{
    size_t n = 99000;
    double *orders = malloc(n * sizeof *orders), *rdp = malloc(n * sizeof *rdp);
    assert_non_null(orders);
    assert_non_null(rdp);
    for (size_t i = 0; i < n; i++) {
        orders[i] = 0.001 * (double)(1000 + i);
        rdp[i] = pvg_dp_rdp_subsampled_gaussian(1, 4.530877117, orders[i]);
    }
    near_abs(pvg_dp_rdp_to_epsilon(orders, rdp, n, 1e-6, PVG_DP_CONVERSION_IMPROVED, NULL), 1, 5e-8,
             "gaussian eps");
    near_abs(pvg_dp_rdp_to_delta(orders, rdp, n, 1, NULL), 1e-6, 5e-8, "gaussian delta");
    free(orders);
    free(rdp);
}

/* TF Privacy compute_dp_sgd_privacy_test.py test_compute_dp_sgd_privacy (assertAlmostEqual,
 * order assertEqual); orders of compute_dp_sgd_privacy_lib.compute_dp_sgd_privacy:
 * [1.25,1.5,1.75,2,2.25,2.5,3,3.5,4,4.5] + 5..63 + [128,256,512]; steps = ceil(epochs n/b). */
static void tfp_dp_sgd_privacy(void **state)
{
    double orders[80];
    size_t n = 0;
    const double head[] = {1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5};
    for (int i = 0; i < 10; i++)
        orders[n++] = head[i];
    for (int a = 5; a < 64; a++)
        orders[n++] = a;
    orders[n++] = 128;
    orders[n++] = 256;
    orders[n++] = 512;
    struct {
        double n, b, sigma, epochs, delta, eps, order;
    } cases[] = {
        {60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19.0},      /* Test0 */
        {100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13.0},     /* Test1 */
        {100000000, 1024, 0.1, 10, 1e-7, 5907982.3113978775, 1.25}, /* Test2 */
    };
    for (int c = 0; c < 3; c++) {
        double q = cases[c].b / cases[c].n;
        long long steps = (long long)ceil(cases[c].epochs * cases[c].n / cases[c].b);
        double eps, ord;
        assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(
                             q, cases[c].sigma, steps, cases[c].delta, PVG_DP_ACCOUNTANT_RDP,
                             PVG_DP_CONVERSION_IMPROVED, orders, n, &eps, &ord, NULL),
                         PVG_OK);
        /* assertAlmostEqual = 7 places; for Test2 (eps ~ 5.9e6) that is 17 digits,
         * beyond double rounding of a sum of 97657 terms, so relative 1e-12 there. */
        if (cases[c].order != floor(cases[c].order)) {
            /* Test2's optimum is the fractional order 1.25: dp_accounting's magnitude
             * sum (see dpa_poisson_sampled_gaussian) is an upper bound of ours. */
            assert_true(eps <= cases[c].eps);
            near_rel(eps, cases[c].eps, 1e-9, "dp-sgd privacy");
        } else {
            near_abs(eps, cases[c].eps, 5e-8, "dp-sgd privacy");
        }
        assert_true(ord == cases[c].order);
    }
}

/* Opacus opacus/tests/accountants_test.py test_rdp_accountant: sigma 1.5, q 0.04,
 * steps int(90/0.04) = 2250, delta 1e-5 -> 7.32911117143 (7 places), with Opacus'
 * DEFAULT_ALPHAS = [1 + x/10 for x in 1..99] + 12..63. */
static void opacus_rdp_accountant(void **state)
{
    double orders[160];
    size_t n = 0;
    for (int x = 1; x < 100; x++)
        orders[n++] = 1 + x / 10.0;
    for (int a = 12; a < 64; a++)
        orders[n++] = a;
    double eps;
    assert_int_equal(
        pvg_dp_epsilon_subsampled_gaussian(0.04, 1.5, 2250, 1e-5, PVG_DP_ACCOUNTANT_RDP,
                                           PVG_DP_CONVERSION_IMPROVED, orders, n, &eps, NULL, NULL),
        PVG_OK);
    near_abs(eps, 7.32911117143, 5e-8, "opacus rdp accountant");
}

/* Opacus test_get_noise_multiplier_rdp_epochs / _steps: eps 8, delta 1e-5, q 0.04,
 * 2250 steps -> 1.416; 2000 steps -> 1.3562 (places=4). Opacus bisects until its
 * epsilon is within 0.01 below the target and returns the upper end, so its sigma is
 * at most a hair above the smallest sigma; ours is that smallest sigma. */
static void opacus_noise_multiplier(void **state)
{
    struct {
        long long steps;
        double want;
    } c[] = {{2250, 1.416}, {2000, 1.3562}};
    for (int i = 0; i < 2; i++) {
        double s, eps;
        assert_int_equal(
            pvg_dp_noise_multiplier(8, 1e-5, 0.04, c[i].steps, PVG_DP_ACCOUNTANT_RDP, &s, NULL),
            PVG_OK);
        assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(
                             0.04, s, c[i].steps, 1e-5, PVG_DP_ACCOUNTANT_RDP,
                             PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps, NULL, NULL),
                         PVG_OK);
        assert_true(eps <= 8);
        assert_true(s <= c[i].want + 5e-5);
        assert_true(s > c[i].want - 0.005);
        /* smallest: a slightly smaller sigma exceeds the target */
        assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(
                             0.04, s * (1 - 1e-5), c[i].steps, 1e-5, PVG_DP_ACCOUNTANT_RDP,
                             PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps, NULL, NULL),
                         PVG_OK);
        assert_true(eps > 8);
    }
}

/* TF Privacy compute_dp_sgd_privacy_test.py test_compute_dp_sgd_example_privacy, which
 * runs dp_accounting's RdpAccountant (default orders = ours) and PLDAccountant on
 * noise 0.7 (halved with microbatching), 1.2 epochs, delta 1e-5; with q = 0.01 the
 * count is ceil(1.2/0.01) = 120, without sampling ceil(1.2) = 2. */
static void tfp_example_privacy(void **state)
{
    struct {
        double sigma, q;
        long long steps;
        double rdp, pld;
    } c[] = {
        {0.7, 1.0, 2, 10.8602036, 10.1224946},     /* no_microbatching_no_subsampling */
        {0.35, 1.0, 2, 26.2880374, 24.7160779},    /* microbatching_no_subsampling */
        {0.7, 0.01, 120, 3.2392676, 2.4612381},    /* no_microbatching_with_subsampling */
        {0.35, 0.01, 120, 22.6248601, 18.6977407}, /* microbatching_with_subsampling */
    };
    for (int i = 0; i < 4; i++) {
        double eps;
        assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(
                             c[i].q, c[i].sigma, c[i].steps, 1e-5, PVG_DP_ACCOUNTANT_RDP,
                             PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps, NULL, NULL),
                         PVG_OK);
        /* reference = dp_accounting, whose optimum here is a fractional order where
         * it sums magnitudes (an upper bound, see dpa_poisson_sampled_gaussian): ours
         * is below or equal and within 0.2% (for sigma 0.35 ours is 22.5970 at order
         * 1.6, whose moment matches numerical integration to 1e-9, see
         * moment_vs_integration) */
        assert_true(eps <= c[i].rdp + 5e-7);
        near_rel(eps, c[i].rdp, 2e-3, "example privacy rdp");
        if (getenv("PVG_SANITIZED") && c[i].q < 1) continue; /* heavy FFTs under ASan */
        /* sigma 0.35 subsampled: the composed loss spans ~25 nats, 2^21-point FFTs,
         * about 15 s; its RDP figure is checked above, its PLD is left to the CLI. */
        if (c[i].sigma < 0.5 && c[i].q < 1) continue;
        assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(
                             c[i].q, c[i].sigma, c[i].steps, 1e-5, PVG_DP_ACCOUNTANT_PLD,
                             PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps, NULL, NULL),
                         PVG_OK);
        /* PLD: connect-the-dots on a 1e-4 grid, the reference's own method: the
         * same figure to the 7 printed decimals. */
        print_message("pld %g/%g/%lld: %.7f (reference %.7f)\n", c[i].sigma, c[i].q, c[i].steps,
                      eps, c[i].pld);
        near_abs(eps, c[i].pld, 1e-6, "example privacy pld");
    }
}

/* TF Privacy compute_dp_sgd_privacy_test.py test_dp_sgd_privacy_statement_*: 10000
 * examples, batch 64, 5 epochs, noise 2.0 halved (microbatching), delta 1e-6, Poisson:
 * q = 0.0064, count ceil(5/0.0064) = 782: RDP 1.616, PLD 1.199 (printed to 3 decimals). */
static void tfp_statement(void **state)
{
    double eps;
    assert_int_equal(
        pvg_dp_epsilon_subsampled_gaussian(0.0064, 1.0, 782, 1e-6, PVG_DP_ACCOUNTANT_RDP,
                                           PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps, NULL, NULL),
        PVG_OK);
    near_abs(eps, 1.616, 5e-4, "statement rdp");
    if (getenv("PVG_SANITIZED")) return;
    assert_int_equal(
        pvg_dp_epsilon_subsampled_gaussian(0.0064, 1.0, 782, 1e-6, PVG_DP_ACCOUNTANT_PLD,
                                           PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps, NULL, NULL),
        PVG_OK);
    /* Connect-the-dots (1.19865 at h = 1e-4) matches the reference's 1.199 to its
     * three printed decimals; the privacy-buckets rounding used before gave 1.2377.
     * A finer grid moves it by less than 1e-4. */
    print_message("pld statement: %.7f (reference 1.199)\n", eps);
    near_abs(eps, 1.199, 5e-4, "statement pld");
    double eps_fine;
    assert_int_equal(pvg_dp_pld_epsilon(0.0064, 1.0, 782, 1e-6, 3e-5, &eps_fine, NULL), PVG_OK);
    near_abs(eps_fine, eps, 1e-4, "statement pld, finer grid");
}

/* Fractional order where the alternating series needs more than 1000 terms
 * (q 0.2, sigma 0.6, alpha 1.5): it used to give up and return +inf (printed
 * as null). Reference: mpmath 0.21761; scipy.integrate.quad of the moment
 * (epsrel 1e-13) gives 0.217611526004205. */
static void rdp_fraction_never_gives_up(void **state)
{
    (void)state;
    double r = pvg_dp_rdp_subsampled_gaussian(0.2, 0.6, 1.5);
    print_message("rdp(q 0.2, sigma 0.6, alpha 1.5) = %.15g (mpmath 0.21761)\n", r);
    assert_true(isfinite(r));
    near_abs(r, 0.21761, 1e-4, "fractional rdp, long series");
    near_rel(r, 0.217611526004205, 1e-9, "fractional rdp vs quad");
    /* neighbouring orders stay finite and ordered (RDP is non-decreasing in alpha) */
    double lo = pvg_dp_rdp_subsampled_gaussian(0.2, 0.6, 1.4),
           hi = pvg_dp_rdp_subsampled_gaussian(0.2, 0.6, 1.6);
    assert_true(isfinite(lo) && isfinite(hi) && lo <= r && r <= hi);
}

/* dp_accounting's PLD accountant on the Opacus example (q 0.04, sigma 1.5,
 * 2,250 steps, delta 1e-5). Reference computed with google/differential-privacy
 * python/dp_accounting, VERSION 0.6.0, commit
 * b5b0286e313b64a692abfc8c528d54ef47d960a0, Debian's numpy 1.24.2 / scipy:
 *   acc = dp_accounting.pld.pld_privacy_accountant.PLDAccountant()
 *   acc.compose(dp_accounting.SelfComposedDpEvent(
 *       dp_accounting.PoissonSampledDpEvent(0.04, dp_accounting.GaussianDpEvent(1.5)), 2250))
 *   acc.get_epsilon(1e-5)  ->  6.768787376865218
 * The privacy-buckets discretisation used before read 6.8813 (1.7% high); the
 * target is 0.5%. The same figure must come out of the CLI (tests/cli/dp_cli.sh). */
static void pld_dp_accounting_opacus(void **state)
{
    (void)state;
    if (getenv("PVG_SANITIZED")) return; /* 2^17-point FFTs, slow under ASan */
    double eps;
    assert_int_equal(pvg_dp_pld_epsilon(0.04, 1.5, 2250, 1e-5, 0, &eps, NULL), PVG_OK);
    print_message("pld opacus example: %.9f (dp_accounting 6.768787377)\n", eps);
    near_rel(eps, 6.768787376865218, 5e-3, "pld vs dp_accounting");
    near_rel(eps, 6.768787376865218, 1e-6, "pld vs dp_accounting (same method)");
}

/* ---- numerical integration of the moment ---- */

/* log A = log int N(z; 0, s^2) (1 - q + q exp((2z-1)/(2 s^2)))^a dz, by the trapezoid
 * rule (spectrally accurate for this smooth, fast-decaying integrand) on a grid of
 * step s/400 over the range where the integrand is within e^-60 of its peak. */
static double log_integrand(double q, double s, double a, double z)
{
    double e = (2 * z - 1) / (2 * s * s);
    double lm = e > 0 ? e + log(q + (1 - q) * exp(-e)) : log1p(q * expm1(e));
    return -z * z / (2 * s * s) - log(s * sqrt(2 * M_PI)) + a * lm;
}

static double log_moment_numeric(double q, double s, double a)
{
    double lo = -40 * s - 2, hi = a + 40 * s + 2, h = s / (getenv("PVG_SANITIZED") ? 100 : 400);
    double m = -INFINITY;
    for (double z = lo; z <= hi; z += s / 10) {
        double v = log_integrand(q, s, a, z);
        if (v > m) m = v;
    }
    double sum = 0;
    long n = (long)((hi - lo) / h) + 1;
    for (long i = 0; i <= n; i++) {
        double v = log_integrand(q, s, a, lo + (double)i * h) - m;
        if (v > -60) sum += exp(v) * ((i == 0 || i == n) ? 0.5 : 1);
    }
    return m + log(sum * h);
}

static void moment_vs_integration(void **state)
{
    /* The parameter sets of TF Privacy rdp_accountant_test.py / dp_accounting
     * rdp_privacy_accountant_test.py test_compute_log_a_equals_mp (rtol 1e-4). */
    struct {
        double q, s, a;
    } p[] = {
        {1e-7, .1, 1.01}, {1e-6, .1, 256}, {1e-5, .1, 256.1}, {1e-6, 1, 27},  {1e-4, 1., 1.5},
        {1e-3, 1., 2},    {.01, 10, 20},   {.1, 100, 20.5},   {.99, .1, 256}, {.999, 100, 256.1},
    };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        double got = pvg_dp_log_moment_subsampled_gaussian(p[i].q, p[i].s, p[i].a);
        double num = log_moment_numeric(p[i].q, p[i].s, p[i].a);
        if (!(fabs(got - num) <= 1e-4 * fabs(num) + 1e-8)) {
            print_error("log A(q=%g, s=%g, a=%g): series %.12g, integral %.12g\n", p[i].q, p[i].s,
                        p[i].a, got, num);
            fail();
        }
    }
    /* And pseudo-random (q, sigma, alpha): q log-uniform in [1e-4, 0.9], sigma in
     * [0.5, 20], alpha integer or fractional in (1, 100]; RDP to 1e-4 relative. */
    unsigned long long x = 88172645463325252ull;
    for (int i = 0; i < 40; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u1 = (double)(x % 1000003) / 1000003.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u2 = (double)(x % 1000003) / 1000003.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u3 = (double)(x % 1000003) / 1000003.0;
        double q = exp(log(1e-4) + u1 * (log(0.9) - log(1e-4)));
        double s = 0.5 + 19.5 * u2;
        double a = 1.05 + 98.95 * u3;
        if (i % 2) a = floor(a) + 1;
        double got = pvg_dp_rdp_subsampled_gaussian(q, s, a);
        double num = log_moment_numeric(q, s, a) / (a - 1);
        if (!(fabs(got - num) <= 1e-4 * fabs(num) + 1e-12)) {
            print_error("rdp(q=%g, s=%g, a=%g): series %.12g, integral %.12g\n", q, s, a, got, num);
            fail();
        }
    }
}

/* ---- Gaussian mechanism ---- */

static void analytic_gaussian(void **state)
{
    /* TF Privacy test_get_privacy_spent_gaussian: the optimal delta of the Gaussian
     * with sigma 1 (Balle & Wang 2018 Thm 8) as a closed form in erfc. */
    for (int k = 0; k < 60; k++) {
        double eps = 0.1 * k;
        double d0 = erfc((eps - .5) / sqrt(2)) / 2 - exp(eps) * erfc((eps + .5) / sqrt(2)) / 2;
        near_abs(pvg_dp_gaussian_delta(1, eps, 1), d0, 1e-15 + 1e-9 * d0, "gaussian delta");
    }
    /* sigma for (eps, delta): meets delta, and 1e-9 less does not */
    double eps_v[] = {0.1, 0.5, 1, 2, 5, 10}, del_v[] = {1e-3, 1e-5, 1e-9};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 3; j++) {
            double s;
            assert_int_equal(pvg_dp_gaussian_sigma(eps_v[i], del_v[j], 1, &s, NULL), PVG_OK);
            assert_true(pvg_dp_gaussian_delta(s, eps_v[i], 1) <= del_v[j]);
            assert_true(pvg_dp_gaussian_delta(s * (1 - 1e-9), eps_v[i], 1) > del_v[j]);
            /* scales with the sensitivity */
            double s3;
            assert_int_equal(pvg_dp_gaussian_sigma(eps_v[i], del_v[j], 3, &s3, NULL), PVG_OK);
            near_rel(s3, 3 * s, 1e-9, "sigma scales with sensitivity");
            /* the classic sigma = sqrt(2 ln(1.25/delta))/eps is larger for eps < 1 */
            if (eps_v[i] < 1) assert_true(s < sqrt(2 * log(1.25 / del_v[j])) / eps_v[i]);
        }
    /* The RDP bound is an upper bound of the exact delta (TF Privacy
     * test_get_privacy_spent_gaussian), sigma 1, orders 1..50.4 by 0.1. */
    double orders[495], rdp[495];
    for (int i = 0; i < 495; i++) {
        orders[i] = 0.1 * (10 + i);
        rdp[i] = pvg_dp_rdp_gaussian(1, orders[i]);
    }
    for (int k = 0; k < 50; k++) {
        double eps = 0.1 * k;
        double d = pvg_dp_rdp_to_delta(orders, rdp, 495, eps, NULL);
        assert_true(pvg_dp_gaussian_delta(1, eps, 1) <= d + 1e-300);
        double d1 = eps >= 0.5 ? exp(-0.5 * (eps - 0.5) * (eps - 0.5)) : 1;
        assert_true(d <= d1 + 1e-300);
    }
    /* discrete Gaussian delta is close to the continuous one for large sigma */
    double dd = pvg_dp_discrete_gaussian_delta(100.0 * 100.0, 0.05, 1);
    near_rel(dd, pvg_dp_gaussian_delta(100, 0.05, 1), 1e-3, "discrete vs continuous");
}

/* ---- composition, zCDP, consistency ---- */

static void composition(void **state)
{
    double e[] = {0.1, 0.2, 0.3}, d[] = {1e-6, 0, 2e-6}, eo, dout;
    pvg_dp_compose_basic(e, d, 3, &eo, &dout);
    near_abs(eo, 0.6, 1e-15, "basic eps");
    near_abs(dout, 3e-6, 1e-20, "basic delta");
    assert_int_equal(pvg_dp_compose_advanced(0.01, 0, 1000, 1e-6, &eo, &dout, NULL), PVG_OK);
    near_rel(eo, 0.01 * sqrt(2000 * log(1e6)) + 1000 * 0.01 * expm1(0.01), 1e-12, "advanced");
    assert_true(eo < 10); /* better than basic (10) */
    assert_int_equal(pvg_dp_compose_advanced(-1, 0, 10, 1e-6, &eo, &dout, NULL), PVG_ERR_INVALID);
    /* zCDP: Gaussian rho; conversion never worse than rho + 2 sqrt(rho log 1/delta) and
     * agrees with the improved RDP conversion over a fine order grid */
    double rho = pvg_dp_zcdp_gaussian(2, 1);
    near_abs(rho, 0.125, 1e-15, "rho");
    double ez = pvg_dp_zcdp_to_epsilon(rho, 1e-6);
    assert_true(ez <= rho + 2 * sqrt(rho * log(1e6)));
    double orders[20000], rdp[20000];
    for (int i = 0; i < 20000; i++) {
        orders[i] = 1.02 + 0.01 * i;
        rdp[i] = rho * orders[i];
    }
    double er = pvg_dp_rdp_to_epsilon(orders, rdp, 20000, 1e-6, PVG_DP_CONVERSION_IMPROVED, NULL);
    near_rel(ez, er, 1e-5, "zcdp conversion");
    near_abs(pvg_dp_zcdp_from_pure(0.5), 0.125, 1e-15, "pure to zcdp");
    /* dp_accounting test_epsilon_delta_consistency: delta(eps(delta)) == delta */
    double ords[48];
    for (int i = 0; i < 48; i++)
        ords[i] = 2 + i;
    double qs[] = {0.01, 0.1, 0.8, 1}, ss[] = {0.1, 1, 10, 100};
    double ds[] = {.1, .01, 1e-3, 1e-5, 1e-9};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            double r[48];
            for (int i = 0; i < 48; i++)
                r[i] = pvg_dp_rdp_subsampled_gaussian(qs[a], ss[b], ords[i]);
            for (int c = 0; c < 5; c++) {
                double eps =
                    pvg_dp_rdp_to_epsilon(ords, r, 48, ds[c], PVG_DP_CONVERSION_IMPROVED, NULL);
                double d2 = pvg_dp_rdp_to_delta(ords, r, 48, eps, NULL);
                if (isinf(eps)) continue;
                if (eps == 0)
                    assert_true(d2 <= ds[c]);
                else
                    near_rel(d2, ds[c], 1e-6, "eps/delta consistency");
            }
        }
}

static void default_orders_and_errors(void **state)
{
    double o[200];
    size_t n = pvg_dp_default_orders(o, 200);
    assert_int_equal(n, 99 + 53 + 4);
    near_abs(o[0], 1.1, 1e-15, "first order");
    near_abs(o[98], 10.9, 1e-12, "order 10.9");
    assert_true(o[99] == 11 && o[151] == 63 && o[152] == 128 && o[155] == 1024);
    double eps;
    pvg_error err;
    assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(1.5, 1, 10, 1e-5, PVG_DP_ACCOUNTANT_RDP,
                                                        PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps,
                                                        NULL, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(0.1, 1, 10, 0, PVG_DP_ACCOUNTANT_RDP,
                                                        PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps,
                                                        NULL, &err),
                     PVG_ERR_INVALID);
    double bad[] = {0.5};
    assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(0.1, 1, 10, 1e-5, PVG_DP_ACCOUNTANT_RDP,
                                                        PVG_DP_CONVERSION_IMPROVED, bad, 1, &eps,
                                                        NULL, &err),
                     PVG_ERR_INVALID);
    /* zero steps or zero sampling: no privacy loss */
    assert_int_equal(pvg_dp_epsilon_subsampled_gaussian(0, 1, 10, 1e-5, PVG_DP_ACCOUNTANT_RDP,
                                                        PVG_DP_CONVERSION_IMPROVED, NULL, 0, &eps,
                                                        NULL, NULL),
                     PVG_OK);
    assert_true(eps == 0);
}

/* PLD is an upper bound of the exact Gaussian delta and tighter than RDP. */
static void pld_consistency(void **state)
{
    double d;
    /* one Gaussian step, q = 1: exact delta known in closed form */
    assert_int_equal(pvg_dp_pld_delta(1, 2, 1, 0.5, 1e-4, &d, NULL), PVG_OK);
    double exact = pvg_dp_gaussian_delta(2, 0.5, 1);
    assert_true(d >= exact * (1 - 1e-9));
    near_rel(d, exact, 2e-3, "pld single gaussian");
    /* 16 Gaussian steps of sigma 4 = one Gaussian of sigma 1 */
    assert_int_equal(pvg_dp_pld_delta(1, 4, 16, 1, 1e-4, &d, NULL), PVG_OK);
    exact = pvg_dp_gaussian_delta(1, 1, 1);
    assert_true(d >= exact * (1 - 1e-9));
    near_rel(d, exact, 5e-3, "pld composed gaussian");
    /* the PLD noise multiplier of one unsampled step is the analytic Gaussian sigma
     * (a hair above it: the PLD is pessimistic) */
    double s_pld, s_an;
    assert_int_equal(
        pvg_dp_noise_multiplier(1.0, 1e-5, 1.0, 1, PVG_DP_ACCOUNTANT_PLD, &s_pld, NULL), PVG_OK);
    assert_int_equal(pvg_dp_gaussian_sigma(1.0, 1e-5, 1.0, &s_an, NULL), PVG_OK);
    print_message("noise multiplier: pld %.6f, analytic %.6f\n", s_pld, s_an);
    assert_true(s_pld >= s_an * (1 - 1e-5));
    near_rel(s_pld, s_an, 1e-3, "pld noise multiplier");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tfp_compute_rdp),
        cmocka_unit_test(dpa_poisson_sampled_gaussian),
        cmocka_unit_test(pure_dp_conversion),
        cmocka_unit_test(gaussian_fine_orders),
        cmocka_unit_test(tfp_dp_sgd_privacy),
        cmocka_unit_test(opacus_rdp_accountant),
        cmocka_unit_test(opacus_noise_multiplier),
        cmocka_unit_test(tfp_example_privacy),
        cmocka_unit_test(tfp_statement),
        cmocka_unit_test(moment_vs_integration),
        cmocka_unit_test(analytic_gaussian),
        cmocka_unit_test(composition),
        cmocka_unit_test(default_orders_and_errors),
        cmocka_unit_test(pld_consistency),
        cmocka_unit_test(pld_dp_accounting_opacus),
        cmocka_unit_test(rdp_fraction_never_gives_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
