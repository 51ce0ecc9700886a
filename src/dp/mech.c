/*
 * mech.c - differentially private mechanisms built on the exact samplers:
 * integer and real-valued Laplace and Gaussian releases (power-of-two grid
 * with the sensitivity inflated for rounding), exponential mechanism,
 * permute-and-flip, report-noisy-max, top-k by peeling, partition selection
 * by Laplace thresholding, randomized response and optimized unary encoding.
 *
 * Calibration (choosing rational scales) uses floating point and always
 * rounds towards more noise or a smaller effective epsilon, so the stated
 * guarantee holds exactly for the integers that are sampled.
 */
#include <privguide/dp.h>

#include "dp/dp_internal.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LAP_DEN_BITS 20
#define Z95 1.959963984540054

/* Laplace scale b as num / 2^20, rounded up. */
static pvg_status lap_rational(double b, uint64_t *num, uint64_t *den, pvg_error *err)
{
    if (!(b > 0) || b > 1099511627776.0 /* 2^40 */)
        return pvg_error_set(err, PVG_ERR_INVALID, "Laplace scale %g out of range (0, 2^40]", b);
    *den = (uint64_t)1 << LAP_DEN_BITS;
    *num = (uint64_t)ceil(b * (double)*den) + 1;
    return PVG_OK;
}

/* Half-width k of the 95% interval of DLap(b): smallest k with P(|X| > k) <= 0.05. */
static double lap_ci95(double b)
{
    double a = exp(-1 / b);
    double k = ceil(b * log(2 / (0.05 * (1 + a)))) - 1;
    if (k < 0) k = 0;
    while (k > 0 && pvg_dp_discrete_laplace_tail(b, (int64_t)k - 1) <= 0.05)
        k--;
    while (pvg_dp_discrete_laplace_tail(b, (int64_t)k) > 0.05)
        k++;
    return k;
}

double lap_ci95_public(double b)
{
    return lap_ci95(b);
}

static pvg_status check_eps(double epsilon, pvg_error *err)
{
    if (!(epsilon > 0) || isinf(epsilon))
        return pvg_error_set(err, PVG_ERR_INVALID, "epsilon must be a finite number > 0, got %g",
                             epsilon);
    return PVG_OK;
}

static pvg_status check_delta(double delta, pvg_error *err)
{
    if (!(delta > 0 && delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "delta must be in (0, 1), got %g", delta);
    return PVG_OK;
}

/* sigma^2 for the discrete Gaussian meeting (eps, delta) when one user moves
 * up to `groups` coordinates by up to `sens` each (exact multivariate delta,
 * pvg_dp_discrete_gaussian_delta_multi), as num/den with num < 2^47. Starts
 * from the analytic Gaussian sigma for L2 sensitivity sens sqrt(groups) and
 * raises sigma^2 to the smallest value (1e-6 relative) that meets delta. */
static pvg_status dg_calibrate(double epsilon, double delta, int64_t sens, long groups,
                               uint64_t *num, uint64_t *den, double *sigma_out, pvg_error *err)
{
    double s;
    pvg_status st =
        pvg_dp_gaussian_sigma(epsilon, delta, (double)sens * sqrt((double)groups), &s, err);
    if (st != PVG_OK) return st;
    double s2 = s * s;
    if (pvg_dp_discrete_gaussian_delta_multi(s2, epsilon, sens, groups) > delta) {
        double lo = s2, hi = s2 * 1.01;
        int i = 0;
        while (pvg_dp_discrete_gaussian_delta_multi(hi, epsilon, sens, groups) > delta) {
            lo = hi;
            hi *= 1.1;
            if (++i > 400)
                return pvg_error_set(err, PVG_ERR_INVALID, "discrete Gaussian calibration failed");
        }
        while (hi - lo > 1e-6 * hi) {
            double mid = 0.5 * (lo + hi);
            if (pvg_dp_discrete_gaussian_delta_multi(mid, epsilon, sens, groups) > delta)
                lo = mid;
            else
                hi = mid;
        }
        s2 = hi;
    }
    if (s2 > 1e13)
        return pvg_error_set(err, PVG_ERR_INVALID, "Gaussian sigma %g too large", sqrt(s2));
    int k = 16;
    while (k > 0 && s2 * (double)((uint64_t)1 << k) >= 140737488355328.0 /* 2^47 */)
        k--;
    *den = (uint64_t)1 << k;
    *num = (uint64_t)ceil(s2 * (double)*den) + 1;
    *sigma_out = sqrt((double)*num / (double)*den);
    return PVG_OK;
}

static pvg_status grid_round(double value, double g, int64_t *vi, pvg_error *err)
{
    double r = nearbyint(value / g);
    if (!isfinite(value) || fabs(r) >= 4.6e18)
        return pvg_error_set(err, PVG_ERR_INVALID, "value %g too large for the noise grid %g",
                             value, g);
    *vi = (int64_t)r;
    return PVG_OK;
}

/* Calibration only (no sampling): the grid, the inflated sensitivity and the
 * integer sampler's rational parameter of one release. The released vector
 * moves in at most `groups` coordinates, each by at most `per_group`. */
pvg_status dp_plan_make(int gaussian, int integer, double per_group, long groups, double epsilon,
                        double delta, dp_plan *p, pvg_error *err)
{
    pvg_status st;
    memset(p, 0, sizeof *p);
    p->gaussian = gaussian;
    if ((st = check_eps(epsilon, err)) != PVG_OK) return st;
    if (gaussian && (st = check_delta(delta, err)) != PVG_OK) return st;
    if (!(per_group > 0) || isinf(per_group))
        return pvg_error_set(err, PVG_ERR_INVALID, "sensitivity must be > 0, got %g", per_group);
    if (groups < 1 || groups > 100000000)
        return pvg_error_set(err, PVG_ERR_INVALID, "groups per user must be in [1, 10^8], got %ld",
                             groups);
    double G = (double)groups;
    /* the norm the noise is calibrated to: L1 for Laplace, L2 for Gaussian */
    double sens = gaussian ? per_group * sqrt(G) : per_group * G;
    double g = 1, s_int;
    if (integer) {
        s_int = ceil(per_group); /* per coordinate */
    } else if (!gaussian) {
        int e2;
        frexp(sens / epsilon, &e2); /* b in [2^(e2-1), 2^e2): grid ~ 2^-20 b */
        g = ldexp(1.0, e2 - 1 - 20);
        s_int = floor(per_group / g) + 1; /* per coordinate: rounding moves each by <= g/2 */
    } else {
        double s0;
        if ((st = pvg_dp_gaussian_sigma(epsilon, delta, sens, &s0, err)) != PVG_OK) return st;
        /* The grid follows the sensitivity, not sigma: g <= per_group / 2^8, so
         * rounding inflates the sensitivity (and sigma) by at most 2^-8 = 0.4%.
         * (Tying g to sigma, 2^10..2^11 steps per sigma, inflated it by g /
         * per_group, 25-50% at small epsilon.) g is kept >= sigma / 2^16 so the
         * exact delta stays cheap to compute; that bound binds only when
         * sigma > 2^8 per_group (epsilon below ~0.01 at delta 1e-6), where
         * the inflation stays below sigma / (2^15 per_group). */
        int es, e2;
        frexp(per_group, &es); /* per_group in [2^(es-1), 2^es) */
        frexp(s0, &e2);        /* sigma in [2^(e2-1), 2^e2) */
        int eg = es - 1 - 8;
        if (eg < e2 - 16) eg = e2 - 16;
        g = ldexp(1.0, eg);
        s_int = floor(per_group / g) + 1;
    }
    /* s_int: the per-coordinate sensitivity on the grid; G coordinates move */
    if (s_int * G > 4e15)
        return pvg_error_set(err, PVG_ERR_INVALID, "sensitivity %g too large", sens);
    p->g = g;
    pvg_dp_noise_info *in = &p->info;
    in->granularity = g;
    in->sensitivity = (gaussian ? s_int * sqrt(G) : s_int * G) * g; /* L2 or L1, inflated */
    in->epsilon = epsilon;
    if (!gaussian) {
        if ((st = lap_rational(s_int * G / epsilon, &p->num, &p->den, err)) != PVG_OK) return st;
        double bi = (double)p->num / (double)p->den;
        in->mechanism = "discrete-laplace";
        in->scale = bi * g;
        in->ci95 = lap_ci95(bi) * g;
        in->delta = 0;
    } else {
        double sigma = 0;
        if ((st = dg_calibrate(epsilon, delta, (int64_t)s_int, groups, &p->num, &p->den, &sigma,
                               err)) != PVG_OK)
            return st;
        in->mechanism = "discrete-gaussian";
        in->scale = sigma * g;
        in->ci95 = integer ? ceil(Z95 * sigma) : Z95 * sigma * g;
        in->delta = delta;
    }
    in->noise_num = p->num;
    in->noise_den = p->den;
    return PVG_OK;
}

pvg_status dp_plan_apply(pvg_rng *rng, const dp_plan *p, double value, double *out, pvg_error *err)
{
    int64_t vi = 0;
    pvg_status st = grid_round(value, p->g, &vi, err);
    if (st != PVG_OK) return st;
    int64_t z = p->gaussian ? pvg_dp_discrete_gaussian(rng, p->num, p->den)
                            : pvg_dp_discrete_laplace(rng, p->num, p->den);
    *out = (double)(vi + z) * p->g;
    return PVG_OK;
}

static pvg_status release_int(pvg_rng *rng, int gaussian, int64_t value, int64_t sens,
                              double epsilon, double delta, int allow, int64_t *out,
                              pvg_dp_noise_info *info, pvg_error *err)
{
    pvg_status st;
    if ((st = dp_check_rng(rng, allow, err)) != PVG_OK) return st;
    if (sens < 1)
        return pvg_error_set(err, PVG_ERR_INVALID, "sensitivity must be >= 1, got %lld",
                             (long long)sens);
    dp_plan p;
    if ((st = dp_plan_make(gaussian, 1, (double)sens, 1, epsilon, delta, &p, err)) != PVG_OK)
        return st;
    int64_t z = gaussian ? pvg_dp_discrete_gaussian(rng, p.num, p.den)
                         : pvg_dp_discrete_laplace(rng, p.num, p.den);
    *out = value + z;
    if (info) *info = p.info;
    return PVG_OK;
}

pvg_status pvg_dp_laplace_int(pvg_rng *rng, int64_t value, int64_t sens, double epsilon,
                              int allow_insecure_rng, int64_t *out, pvg_dp_noise_info *info,
                              pvg_error *err)
{
    return release_int(rng, 0, value, sens, epsilon, 0, allow_insecure_rng, out, info, err);
}

pvg_status pvg_dp_gaussian_int(pvg_rng *rng, int64_t value, int64_t sens, double epsilon,
                               double delta, int allow_insecure_rng, int64_t *out,
                               pvg_dp_noise_info *info, pvg_error *err)
{
    return release_int(rng, 1, value, sens, epsilon, delta, allow_insecure_rng, out, info, err);
}

static pvg_status release_real(pvg_rng *rng, int gaussian, double value, double sens,
                               double epsilon, double delta, int allow, double *out,
                               pvg_dp_noise_info *info, pvg_error *err)
{
    pvg_status st;
    if ((st = dp_check_rng(rng, allow, err)) != PVG_OK) return st;
    dp_plan p;
    if ((st = dp_plan_make(gaussian, 0, sens, 1, epsilon, delta, &p, err)) != PVG_OK) return st;
    if ((st = dp_plan_apply(rng, &p, value, out, err)) != PVG_OK) return st;
    if (info) *info = p.info;
    return PVG_OK;
}

pvg_status pvg_dp_laplace_real(pvg_rng *rng, double value, double sens, double epsilon,
                               int allow_insecure_rng, double *out, pvg_dp_noise_info *info,
                               pvg_error *err)
{
    return release_real(rng, 0, value, sens, epsilon, 0, allow_insecure_rng, out, info, err);
}

pvg_status pvg_dp_gaussian_real(pvg_rng *rng, double value, double sens, double epsilon,
                                double delta, int allow_insecure_rng, double *out,
                                pvg_dp_noise_info *info, pvg_error *err)
{
    return release_real(rng, 1, value, sens, epsilon, delta, allow_insecure_rng, out, info, err);
}

/* ---- selection ---- */

static pvg_status sel_check(pvg_rng *rng, const int64_t *u, size_t n, int64_t sens, double epsilon,
                            int allow, int64_t *umax, pvg_error *err)
{
    pvg_status st;
    if ((st = dp_check_rng(rng, allow, err)) != PVG_OK) return st;
    if ((st = check_eps(epsilon, err)) != PVG_OK) return st;
    if (epsilon >= 2147483648.0) return pvg_error_set(err, PVG_ERR_INVALID, "epsilon too large");
    if (!u || n == 0) return pvg_error_set(err, PVG_ERR_INVALID, "no candidates");
    if (sens < 1 || sens > ((int64_t)1 << 40))
        return pvg_error_set(err, PVG_ERR_INVALID, "utility sensitivity must be in [1, 2^40]");
    int64_t mx = u[0], mn = u[0];
    for (size_t i = 1; i < n; i++) {
        if (u[i] > mx) mx = u[i];
        if (u[i] < mn) mn = u[i];
    }
    if ((uint64_t)(mx - mn) > ((uint64_t)1 << 40))
        return pvg_error_set(err, PVG_ERR_INVALID, "utilities spread beyond 2^40");
    *umax = mx;
    return PVG_OK;
}

/* Bernoulli(exp(-eps' (umax - u) / (2 sens))) with eps' = floor(eps 2^32)/2^32. */
static int sel_accept(pvg_rng *rng, uint64_t en, int64_t umax, int64_t u, int64_t sens)
{
    u128 num = (u128)en * (u128)(uint64_t)(umax - u);
    u128 den = ((u128)1 << 33) * (u128)(uint64_t)sens;
    return dp_bernoulli_exp128(rng, num, den);
}

pvg_status pvg_dp_exponential(pvg_rng *rng, const int64_t *u, size_t n, int64_t sens,
                              double epsilon, int allow_insecure_rng, size_t *index, pvg_error *err)
{
    int64_t umax;
    pvg_status st = sel_check(rng, u, n, sens, epsilon, allow_insecure_rng, &umax, err);
    if (st != PVG_OK) return st;
    uint64_t en = (uint64_t)floor(epsilon * 4294967296.0);
    /* Rejection: propose uniformly, accept with exp(eps'(u - umax)/(2 sens));
     * the accepted index has probability proportional to exp(eps' u/(2 sens)). */
    for (;;) {
        size_t i = (size_t)pvg_rng_uniform(rng, n);
        if (sel_accept(rng, en, umax, u[i], sens)) {
            *index = i;
            return PVG_OK;
        }
    }
}

pvg_status pvg_dp_permute_and_flip(pvg_rng *rng, const int64_t *u, size_t n, int64_t sens,
                                   double epsilon, int allow_insecure_rng, size_t *index,
                                   pvg_error *err)
{
    int64_t umax;
    pvg_status st = sel_check(rng, u, n, sens, epsilon, allow_insecure_rng, &umax, err);
    if (st != PVG_OK) return st;
    size_t *perm = malloc(n * sizeof *perm);
    if (!perm) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    uint64_t en = (uint64_t)floor(epsilon * 4294967296.0);
    for (size_t i = 0; i < n; i++) {
        size_t j = i + (size_t)pvg_rng_uniform(rng, n - i);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        if (sel_accept(rng, en, umax, u[perm[i]], sens)) {
            *index = perm[i];
            free(perm);
            return PVG_OK;
        }
    }
    free(perm);
    /* unreachable: the maximum is accepted with probability exp(0) = 1 */
    assert(!"permute-and-flip accepted nothing");
    return pvg_error_set(err, PVG_ERR_INTERNAL, "permute-and-flip accepted nothing");
}

pvg_status pvg_dp_report_noisy_max(pvg_rng *rng, const int64_t *u, size_t n, int64_t sens,
                                   double epsilon, int allow_insecure_rng, size_t *index,
                                   pvg_error *err)
{
    int64_t umax;
    pvg_status st = sel_check(rng, u, n, sens, epsilon, allow_insecure_rng, &umax, err);
    if (st != PVG_OK) return st;
    uint64_t num = 0, den = 1;
    /* Scale (2 sens + 1) / eps: with integer utilities and noise, i wins (or
     * ties) when Z_i >= t, t = max_{j != i}(u_j + Z_j) - u_i; a neighbour moves t
     * by at most 2 sens, and the tie rule is bracketed by P(Z > t) and
     * P(Z > t - 1), so the winning probability changes by at most
     * exp((2 sens + 1) / b) = exp(eps) (the discrete Laplace tail is
     * log-concave). */
    if ((st = lap_rational((2.0 * (double)sens + 1) / epsilon, &num, &den, err)) != PVG_OK)
        return st;
    int64_t best = 0;
    size_t bi = 0, ties = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t v = u[i] + pvg_dp_discrete_laplace(rng, num, den);
        if (ties == 0 || v > best) {
            best = v;
            bi = i;
            ties = 1;
        } else if (v == best) {
            ties++;
            if (pvg_rng_uniform(rng, ties) == 0) bi = i; /* uniform among ties */
        }
    }
    *index = bi;
    return PVG_OK;
}

pvg_status pvg_dp_top_k(pvg_rng *rng, const int64_t *u, size_t n, size_t k, int64_t sens,
                        double epsilon, int allow_insecure_rng, size_t *out, pvg_error *err)
{
    int64_t umax;
    pvg_status st = sel_check(rng, u, n, sens, epsilon, allow_insecure_rng, &umax, err);
    if (st != PVG_OK) return st;
    if (k == 0 || k > n)
        return pvg_error_set(err, PVG_ERR_INVALID, "k must be in [1, %zu], got %zu", n, k);
    size_t *idx = malloc(n * sizeof *idx);
    int64_t *uu = malloc(n * sizeof *uu);
    if (!idx || !uu) {
        free(idx);
        free(uu);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        idx[i] = i;
        uu[i] = u[i];
    }
    size_t m = n;
    for (size_t r = 0; r < k; r++) {
        size_t pick;
        st = pvg_dp_exponential(rng, uu, m, sens, epsilon / (double)k, allow_insecure_rng, &pick,
                                err);
        if (st != PVG_OK) break;
        out[r] = idx[pick];
        idx[pick] = idx[m - 1];
        uu[pick] = uu[m - 1];
        m--;
    }
    free(idx);
    free(uu);
    return st;
}

pvg_status pvg_dp_partition_rule_make(double epsilon, double delta, int64_t max_partitions,
                                      pvg_dp_partition_rule *rule, pvg_error *err)
{
    pvg_status st;
    if ((st = check_eps(epsilon, err)) != PVG_OK) return st;
    if ((st = check_delta(delta, err)) != PVG_OK) return st;
    if (max_partitions < 1)
        return pvg_error_set(err, PVG_ERR_INVALID, "max partitions per user must be >= 1");
    uint64_t num = 0, den = 1;
    if ((st = lap_rational((double)max_partitions / epsilon, &num, &den, err)) != PVG_OK) return st;
    double b = (double)num / (double)den;
    double a = exp(-1 / b);
    /* P(Z >= k) = a^k / (1 + a) <= delta / m  <=>  k >= b log(m / (delta (1 + a))) */
    double k0 = ceil(b * log((double)max_partitions / (delta * (1 + a))));
    if (k0 < 1) k0 = 1;
    while (exp(-k0 / b) / (1 + a) > delta / (double)max_partitions)
        k0 += 1;
    rule->epsilon = epsilon;
    rule->delta = delta;
    rule->max_partitions = max_partitions;
    rule->scale = b;
    rule->threshold = 1 + (int64_t)k0;
    return PVG_OK;
}

int pvg_dp_partition_keep(pvg_rng *rng, const pvg_dp_partition_rule *rule, int64_t users,
                          int64_t *noisy_users)
{
    uint64_t den = (uint64_t)1 << LAP_DEN_BITS;
    uint64_t num = (uint64_t)ceil(rule->scale * (double)den); /* = the rounded scale */
    int64_t v = users + pvg_dp_discrete_laplace(rng, num, den);
    if (noisy_users) *noisy_users = v;
    return users > 0 && v >= rule->threshold;
}

/* ---- local DP ---- */

#define P53 9007199254740992.0 /* 2^53 */

pvg_status pvg_dp_rr_report(pvg_rng *rng, uint32_t value, uint32_t k, double epsilon, uint32_t *out,
                            pvg_error *err)
{
    pvg_status st;
    if ((st = check_eps(epsilon, err)) != PVG_OK) return st;
    if (k < 2 || value >= k)
        return pvg_error_set(err, PVG_ERR_INVALID, "need k >= 2 and value < k");
    double p = 1 / (1 + (double)(k - 1) * exp(-epsilon));
    uint64_t pn = (uint64_t)floor(p * P53);
    if (pvg_dp_bernoulli(rng, pn, (uint64_t)P53)) {
        *out = value;
    } else {
        uint32_t r = (uint32_t)pvg_rng_uniform(rng, k - 1);
        *out = r >= value ? r + 1 : r;
    }
    return PVG_OK;
}

void pvg_dp_rr_estimate(const long long *counts, uint32_t k, double epsilon, double *est)
{
    double p = floor(P53 / (1 + (double)(k - 1) * exp(-epsilon))) / P53;
    double q = (1 - p) / (double)(k - 1);
    double n = 0;
    for (uint32_t v = 0; v < k; v++)
        n += (double)counts[v];
    for (uint32_t v = 0; v < k; v++)
        est[v] = ((double)counts[v] - n * q) / (p - q);
}

pvg_status pvg_dp_oue_report(pvg_rng *rng, uint32_t value, uint32_t k, double epsilon,
                             unsigned char *bits, pvg_error *err)
{
    pvg_status st;
    if ((st = check_eps(epsilon, err)) != PVG_OK) return st;
    if (k < 1 || value >= k) return pvg_error_set(err, PVG_ERR_INVALID, "need value < k");
    uint64_t qn = (uint64_t)ceil(P53 / (exp(epsilon) + 1));
    for (uint32_t v = 0; v < k; v++)
        bits[v] = (unsigned char)(v == value ? pvg_dp_bernoulli(rng, 1, 2)
                                             : pvg_dp_bernoulli(rng, qn, (uint64_t)P53));
    return PVG_OK;
}

void pvg_dp_oue_estimate(const long long *bit_counts, uint32_t k, long long n, double epsilon,
                         double *est)
{
    double q = ceil(P53 / (exp(epsilon) + 1)) / P53;
    for (uint32_t v = 0; v < k; v++)
        est[v] = ((double)bit_counts[v] - (double)n * q) / (0.5 - q);
}
