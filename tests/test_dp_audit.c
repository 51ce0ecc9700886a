/*
 * test_dp_audit.c - empirical privacy audit of the count mechanisms.
 *
 * Neighbouring datasets: counts c and c + 1 (one shopper more, sensitivity
 * 1). The mechanism runs N = 10^6 times on each (10^5 when PVG_SANITIZED=1).
 * For every threshold event S_t = {output >= t} we estimate
 *   eps_hat(t) = log((P(S_t | D') - delta) / P(S_t | D))
 * and a one-sided lower confidence bound on it from Wilson score intervals
 * (z = 5 on each probability, so each bound fails with probability below
 * 3e-7; over the ~60 thresholds the audit false-alarms below 2e-5). A
 * mechanism that broke its claim would show a lower bound above the claimed
 * epsilon. The point estimate must also come close to the claim (the audit
 * has power: the Laplace mechanism's likelihood ratio is exactly e^eps on one
 * side), so a test that could not fail would be caught. The real-valued
 * grid releases (sum and mean noise) are audited the same way on values
 * 10.3 and 11.3 with sensitivity 1.
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

#define Z 5.0

static void wilson(long k, long n, double *lo, double *hi)
{
    double p = (double)k / (double)n, z2 = Z * Z, d = 1 + z2 / n;
    double c = (p + z2 / (2.0 * n)) / d;
    double h = Z * sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / d;
    *lo = c - h > 0 ? c - h : 0;
    *hi = c + h < 1 ? c + h : 1;
}

typedef int64_t (*mech_fn)(pvg_rng *rng, int64_t value, const pvg_dp_noise_info *info);

static int64_t run_laplace(pvg_rng *rng, int64_t v, const pvg_dp_noise_info *info)
{
    return v + pvg_dp_discrete_laplace(rng, info->noise_num, info->noise_den);
}

static int64_t run_gauss(pvg_rng *rng, int64_t v, const pvg_dp_noise_info *info)
{
    return v + pvg_dp_discrete_gaussian(rng, info->noise_num, info->noise_den);
}

#define RANGE 400

static void audit(const char *what, mech_fn fn, const pvg_dp_noise_info *info, double eps,
                  double delta, double min_power)
{
    long n = getenv("PVG_SANITIZED") ? 100000 : 1000000;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(0xA0D17);
    const int64_t c = 50;
    long *h0 = calloc(2 * RANGE + 1, sizeof *h0), *h1 = calloc(2 * RANGE + 1, sizeof *h1);
    assert_non_null(h0);
    assert_non_null(h1);
    for (long i = 0; i < n; i++) {
        int64_t a = fn(rng, c, info) - c, b = fn(rng, c + 1, info) - c;
        h0[a < -RANGE ? 0 : a > RANGE ? 2 * RANGE : a + RANGE]++;
        h1[b < -RANGE ? 0 : b > RANGE ? 2 * RANGE : b + RANGE]++;
    }
    /* survival counts for S_t = {x >= t}, both directions (D vs D' and D' vs D
     * using the complementary events {x < t}) */
    double best_lb = -INFINITY, best_hat = -INFINITY;
    long s0 = 0, s1 = 0;
    for (int t = 2 * RANGE; t >= 0; t--) {
        s0 += h0[t];
        s1 += h1[t];
        for (int dir = 0; dir < 2; dir++) {
            long kp = dir ? n - s0 : s1, kq = dir ? n - s1 : s0; /* P-side and Q-side counts */
            if (kp < 50 || kq < 50) continue;                    /* too few to say anything */
            double plo, phi, qlo, qhi;
            wilson(kp, n, &plo, &phi);
            wilson(kq, n, &qlo, &qhi);
            double hat = log(((double)kp / n - delta) / ((double)kq / n));
            double lb = plo - delta > 0 ? log((plo - delta) / qhi) : -INFINITY;
            if (hat > best_hat) best_hat = hat;
            if (lb > best_lb) best_lb = lb;
        }
    }
    print_message("%-28s claimed eps %.4f  max estimate %.4f  max lower bound %.4f\n", what, eps,
                  best_hat, best_lb);
    assert_true(best_lb <= eps);
    assert_true(best_hat >= min_power * eps);
    free(h0);
    free(h1);
    pvg_rng_free(rng);
}

static void audit_laplace(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    pvg_dp_noise_info info;
    int64_t out;
    for (int k = 0; k < 2; k++) {
        double eps = k ? 0.25 : 1.0;
        assert_int_equal(pvg_dp_laplace_int(rng, 0, 1, eps, 1, &out, &info, NULL), PVG_OK);
        audit(k ? "laplace count eps=0.25" : "laplace count eps=1", run_laplace, &info, eps, 0,
              0.9);
    }
    pvg_rng_free(rng);
}

static void audit_gaussian(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(2);
    pvg_dp_noise_info info;
    int64_t out;
    /* delta = 1e-3 keeps the delta-corrected estimate measurable with 10^6 runs */
    assert_int_equal(pvg_dp_gaussian_int(rng, 0, 1, 1.0, 1e-3, 1, &out, &info, NULL), PVG_OK);
    audit("gaussian count eps=1 d=1e-3", run_gauss, &info, 1.0, 1e-3, 0.5);
    pvg_rng_free(rng);
}

/* Real-valued releases on the grid: value 10.3 against 11.3 (sensitivity 1),
 * outputs bucketed on a fixed lattice of width scale/8 (threshold events
 * {out >= t} stay valid events of the output). */
typedef struct real_case {
    int gaussian;
    double eps, delta;
} real_case;

static void audit_real(const char *what, real_case rc, double min_power)
{
    long n = getenv("PVG_SANITIZED") ? 100000 : 1000000;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(0xA0D18);
    /* the exact plan pvg_dp_*_real calibrate and apply, calibrated once */
    dp_plan plan;
    assert_int_equal(dp_plan_make(rc.gaussian, 0, 1.0, 1, rc.eps, rc.delta, &plan, NULL), PVG_OK);
    double w = plan.info.scale / 8;
    long *h0 = calloc(2 * RANGE + 1, sizeof *h0), *h1 = calloc(2 * RANGE + 1, sizeof *h1);
    assert_non_null(h0);
    assert_non_null(h1);
    for (long i = 0; i < n; i++) {
        double a, b;
        assert_int_equal(dp_plan_apply(rng, &plan, 10.3, &a, NULL), PVG_OK);
        assert_int_equal(dp_plan_apply(rng, &plan, 11.3, &b, NULL), PVG_OK);
        long ia = (long)floor((a - 10.3) / w), ib = (long)floor((b - 10.3) / w);
        h0[ia < -RANGE ? 0 : ia > RANGE ? 2 * RANGE : ia + RANGE]++;
        h1[ib < -RANGE ? 0 : ib > RANGE ? 2 * RANGE : ib + RANGE]++;
    }
    double best_lb = -INFINITY, best_hat = -INFINITY;
    long s0 = 0, s1 = 0;
    for (int t = 2 * RANGE; t >= 0; t--) {
        s0 += h0[t];
        s1 += h1[t];
        for (int dir = 0; dir < 2; dir++) {
            long kp = dir ? n - s0 : s1, kq = dir ? n - s1 : s0;
            if (kp < 50 || kq < 50) continue;
            double plo, phi, qlo, qhi;
            wilson(kp, n, &plo, &phi);
            wilson(kq, n, &qlo, &qhi);
            double hat = log(((double)kp / n - rc.delta) / ((double)kq / n));
            double lb = plo - rc.delta > 0 ? log((plo - rc.delta) / qhi) : -INFINITY;
            if (hat > best_hat) best_hat = hat;
            if (lb > best_lb) best_lb = lb;
        }
    }
    print_message("%-28s claimed eps %.4f  max estimate %.4f  max lower bound %.4f\n", what, rc.eps,
                  best_hat, best_lb);
    assert_true(best_lb <= rc.eps);
    assert_true(best_hat >= min_power * rc.eps);
    free(h0);
    free(h1);
    pvg_rng_free(rng);
}

static void audit_real_releases(void **state)
{
    /* the plan is what the public real-valued releases use */
    pvg_rng *r = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    dp_plan p;
    pvg_dp_noise_info info;
    double out;
    assert_int_equal(dp_plan_make(1, 0, 1.0, 1, 1.0, 1e-3, &p, NULL), PVG_OK);
    assert_int_equal(pvg_dp_gaussian_real(r, 10.3, 1.0, 1.0, 1e-3, 1, &out, &info, NULL), PVG_OK);
    assert_true(info.noise_num == p.num && info.noise_den == p.den && info.granularity == p.g);
    pvg_rng_free(r);
    audit_real("laplace real eps=1", (real_case){0, 1.0, 0}, 0.8);
    audit_real("gaussian real eps=1 d=1e-3", (real_case){1, 1.0, 1e-3}, 0.4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_laplace),
        cmocka_unit_test(audit_gaussian),
        cmocka_unit_test(audit_real_releases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
