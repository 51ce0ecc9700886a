/*
 * calib.c - calibration of noise scales (deterministic floating point, never
 * on a sampling path): the exact delta of the Gaussian mechanism and the
 * analytic Gaussian sigma (Balle & Wang 2018), the exact delta of the
 * discrete Gaussian (Canonne, Kamath & Steinke 2020, Thm 7), and the pmfs
 * of the discrete Laplace and discrete Gaussian used by tests and intervals.
 */
#include <privguide/dp.h>

#include "dp/dp_internal.h"

#include <math.h>

double pvg_dp_discrete_laplace_pmf(double b, int64_t x)
{
    double a = exp(-1 / b);
    return (-expm1(-1 / b)) / (1 + a) * exp(-fabs((double)x) / b);
}

double pvg_dp_discrete_laplace_tail(double b, int64_t k)
{
    /* P(|X| > k) = 2 a^(k+1) / (1 + a), a = exp(-1/b) */
    if (k < 0) return 1;
    double a = exp(-1 / b);
    return 2 * exp(-(double)(k + 1) / b) / (1 + a);
}

/* sum_{x in Z} exp(-x^2 / (2 s2)) */
static double dg_norm(double s2)
{
    double z = 1, s = sqrt(s2);
    long lim = (long)(40 * s) + 10;
    for (long x = 1; x <= lim; x++) {
        double t = exp(-(double)x * (double)x / (2 * s2));
        z += 2 * t;
        if (t < 1e-300) break;
    }
    return z;
}

double pvg_dp_discrete_gaussian_pmf(double sigma2, int64_t x)
{
    return exp(-(double)x * (double)x / (2 * sigma2)) / dg_norm(sigma2);
}

/* P(X > c) for the discrete Gaussian, c real. */
static double dg_sf(double s2, double z, double c)
{
    if (c < 0) {
        /* P(X > c) = 1 - P(X <= floor c) = 1 - P(X > -floor(c) - 1) */
        return 1 - dg_sf(s2, z, -floor(c) - 1);
    }
    double sum = 0;
    for (long x = (long)floor(c) + 1;; x++) {
        double t = exp(-(double)x * (double)x / (2 * s2));
        sum += t;
        if (t < sum * 1e-18 || t == 0) break;
    }
    return sum / z;
}

double pvg_dp_discrete_gaussian_delta(double sigma2, double epsilon, int64_t sens)
{
    double z = dg_norm(sigma2), d = (double)sens;
    double c = epsilon * sigma2 / d;
    double r = dg_sf(sigma2, z, c - d / 2) - exp(epsilon) * dg_sf(sigma2, z, c + d / 2);
    return r < 0 ? 0 : r;
}

double pvg_dp_gaussian_delta(double sigma, double epsilon, double sens)
{
    if (sigma <= 0) return 1;
    double a = sens / (2 * sigma), b = epsilon * sigma / sens;
    /* Phi(a - b) = erfc((b - a)/sqrt2)/2 ; e^eps Phi(-a - b) = e^eps erfc((a + b)/sqrt2)/2 */
    double t1 = 0.5 * erfc((b - a) / M_SQRT2);
    double t2 = exp(epsilon + log(0.5) + dp_log_erfc((a + b) / M_SQRT2));
    double d = t1 - t2;
    return d < 0 ? 0 : d;
}

pvg_status pvg_dp_gaussian_sigma(double epsilon, double delta, double sens, double *sigma,
                                 pvg_error *err)
{
    if (!(epsilon > 0) || isinf(epsilon))
        return pvg_error_set(err, PVG_ERR_INVALID, "epsilon must be > 0, got %g", epsilon);
    if (!(delta > 0 && delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "delta must be in (0, 1), got %g", delta);
    if (!(sens > 0) || isinf(sens))
        return pvg_error_set(err, PVG_ERR_INVALID, "sensitivity must be > 0, got %g", sens);
    double hi = sens, lo;
    while (pvg_dp_gaussian_delta(hi, epsilon, sens) > delta) hi *= 2;
    lo = hi;
    while (lo > 1e-300 && pvg_dp_gaussian_delta(lo, epsilon, sens) <= delta) lo /= 2;
    for (int i = 0; i < 300 && hi - lo > 1e-13 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (pvg_dp_gaussian_delta(mid, epsilon, sens) <= delta) hi = mid;
        else lo = mid;
    }
    *sigma = hi;
    return PVG_OK;
}

pvg_status dp_check_rng(pvg_rng *rng, int allow_insecure, pvg_error *err)
{
    if (!rng) return pvg_error_set(err, PVG_ERR_INVALID, "no random generator given");
    if (pvg_rng_is_deterministic(rng) && !allow_insecure)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "refusing the deterministic test generator for a privacy release");
    return PVG_OK;
}
