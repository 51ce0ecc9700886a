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
#include <stdlib.h>
#include <string.h>

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
    /* Poisson summation: sum_x exp(-x^2/(2 s2)) = sqrt(2 pi s2) sum_k exp(-2 pi^2 s2 k^2);
     * for s2 >= 16 the k != 0 terms are below 1e-137 relative: exact in double */
    if (s2 >= 16) return sqrt(2 * M_PI * s2);
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

/* pmf of the sum of k iid N_Z(0, s2), on [-half, half], by repeated doubling
 * with direct convolution; each stage truncated at 14 standard deviations
 * (the mass dropped, < 1e-43 per stage, is returned in *dropped). NULL when
 * the work would exceed ~10^9 operations or on out of memory. */
static double *dg_sum_pmf(double s2, long k, long *half_out, double *dropped)
{
    double sd = sqrt(s2);
    long h1 = (long)ceil(14 * sd) + 2;
    long hk = (long)ceil(14 * sd * sqrt((double)k)) + 2;
    if ((double)(2 * hk + 1) * (double)(2 * hk + 1) * 2 > 2e9) return NULL;
    double z = dg_norm(s2);
    double *base = calloc((size_t)(2 * h1 + 1), sizeof *base);
    if (!base) return NULL;
    for (long x = -h1; x <= h1; x++)
        base[x + h1] = exp(-(double)x * (double)x / (2 * s2)) / z;
    *dropped = 0;
    double *acc = NULL;
    long ha = 0, hb = h1, nacc = 0, nb = 1;
    /* binary powering: acc = base^(k's bits), base squared each round */
    while (k > 0) {
        if (k & 1) {
            if (!acc) {
                acc = malloc((size_t)(2 * hb + 1) * sizeof *acc);
                if (!acc) {
                    free(base);
                    return NULL;
                }
                memcpy(acc, base, (size_t)(2 * hb + 1) * sizeof *acc);
                ha = hb;
                nacc = nb;
            } else {
                nacc += nb;
                long hn = ha + hb, lim = (long)ceil(14 * sd * sqrt((double)nacc)) + 2;
                long ht = hn < lim ? hn : lim;
                double *r = calloc((size_t)(2 * ht + 1), sizeof *r);
                if (!r) {
                    free(acc);
                    free(base);
                    return NULL;
                }
                for (long i = -ha; i <= ha; i++) {
                    double a = acc[i + ha];
                    if (a == 0) continue;
                    for (long j = -hb; j <= hb; j++) {
                        long t = i + j;
                        double v = a * base[j + hb];
                        if (t < -ht || t > ht)
                            *dropped += v;
                        else
                            r[t + ht] += v;
                    }
                }
                free(acc);
                acc = r;
                ha = ht;
            }
        }
        k >>= 1;
        if (k > 0) {
            nb *= 2;
            long hn = 2 * hb, lim = (long)ceil(14 * sd * sqrt((double)nb)) + 2;
            long ht = hn < lim ? hn : lim;
            double *r = calloc((size_t)(2 * ht + 1), sizeof *r);
            if (!r) {
                free(acc);
                free(base);
                return NULL;
            }
            for (long i = -hb; i <= hb; i++) {
                double a = base[i + hb];
                if (a == 0) continue;
                for (long j = -hb; j <= hb; j++) {
                    long t = i + j;
                    double v = a * base[j + hb];
                    if (t < -ht || t > ht)
                        *dropped += v;
                    else
                        r[t + ht] += v;
                }
            }
            free(base);
            base = r;
            hb = ht;
        }
    }
    free(base);
    *half_out = ha;
    return acc;
}

double pvg_dp_discrete_gaussian_delta_multi(double sigma2, double epsilon, int64_t sens,
                                            long groups)
{
    if (groups <= 1) return pvg_dp_discrete_gaussian_delta(sigma2, epsilon, sens);
    double G = (double)groups, s = (double)sens;
    if (sigma2 >= 16) {
        /* Poisson summation: on t in [-1/2, 1/2] the characteristic function of
         * N_Z(0, s2) is the periodised Gaussian, within 2 exp(-pi^2 s2 / 2)
         * (relative, for s2 >= 16) of exp(-2 pi^2 s2 t^2); the G-fold product
         * differs from N_Z(0, G s2)'s by at most 4 G exp(-pi^2 s2 / 2) in sup
         * norm, so each pmf value by as much. The delta sums the pmf (times a
         * factor <= 1) over at most 2 (40 sqrt(G s2) + G s) + 1 points that
         * matter, the rest being below e^-800. */
        double npts = 2 * (40 * sqrt(G * sigma2) + G * s) + 1;
        double err = 4 * G * exp(-M_PI * M_PI * sigma2 / 2) * npts;
        double d = pvg_dp_discrete_gaussian_delta(G * sigma2, epsilon, (int64_t)(G * s)) + err;
        return d > 1 ? 1 : d;
    }
    long half = 0;
    double dropped = 0;
    double *p = dg_sum_pmf(sigma2, groups, &half, &dropped);
    if (!p) return 1;
    /* loss at sum n (P: no shift, Q: every coordinate + sens):
     * L(n) = (G s^2 - 2 s n) / (2 sigma2); delta = sum_n P(n) (1 - e^(eps - L(n)))_+ */
    double d = dropped;
    for (long n = -half; n <= half; n++) {
        double L = (G * s * s - 2 * s * (double)n) / (2 * sigma2);
        if (L > epsilon) d += p[n + half] * -expm1(epsilon - L);
    }
    free(p);
    return d > 1 ? 1 : d < 0 ? 0 : d;
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
    while (pvg_dp_gaussian_delta(hi, epsilon, sens) > delta)
        hi *= 2;
    lo = hi;
    while (lo > 1e-300 && pvg_dp_gaussian_delta(lo, epsilon, sens) <= delta)
        lo /= 2;
    for (int i = 0; i < 300 && hi - lo > 1e-13 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (pvg_dp_gaussian_delta(mid, epsilon, sens) <= delta)
            hi = mid;
        else
            lo = mid;
    }
    *sigma = hi;
    return PVG_OK;
}

pvg_status dp_check_rng(pvg_rng *rng, int allow_insecure_rng, pvg_error *err)
{
    if (!rng) return pvg_error_set(err, PVG_ERR_INVALID, "no random generator given");
    return pvg_rng_require_secure(rng, allow_insecure_rng, "a privacy release", err);
}
