/*
 * rdp.c - Renyi DP of the (Poisson-subsampled) Gaussian mechanism,
 * RDP -> (epsilon, delta) conversions, composition theorems and zCDP.
 *
 * Moment of the subsampled Gaussian (Mironov, Talwar & Zhang 2019):
 *   A_a = E_{z ~ N(0, s^2)} [ (1 - q + q exp((2z - 1) / (2 s^2)))^a ],
 *   RDP(a) = log(A_a) / (a - 1).
 * Integer a: binomial expansion, all terms positive, summed in log space:
 *   A_a = sum_i C(a,i) q^i (1-q)^(a-i) exp((i^2 - i) / (2 s^2)).
 * Fractional a: the two convergent series of Sec. 3.3 over the halves
 * (-inf, z0] and [z0, inf), z0 = s^2 log(1/q - 1) + 1/2, summed until both
 * terms decrease and fall 30 nats below the total; when 1000 terms do not
 * suffice, by numerical integration (log_a_integrate) instead.
 */
#include <privguide/dp.h>

#include "dp/dp_internal.h"

#include <float.h>
#include <math.h>

static double log_add(double a, double b)
{
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    double hi = a > b ? a : b, lo = a > b ? b : a;
    return hi + log1p(exp(lo - hi));
}

static double log_comb(double n, double k)
{
    return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1);
}

double dp_log_erfc(double x)
{
    if (x < 25) return log(erfc(x));
    /* erfc(x) = exp(-x^2)/(x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) + ...) */
    double x2 = x * x;
    double s = 1 - 1 / (2 * x2) + 3 / (4 * x2 * x2) - 15 / (8 * x2 * x2 * x2);
    return -x2 - log(x) - 0.5 * log(M_PI) + log(s);
}

double dp_norm_sf(double x)
{
    return 0.5 * erfc(x / M_SQRT2);
}

static double log_a_int(double q, double sigma, long alpha)
{
    double log_a = -INFINITY;
    double lq = log(q), l1q = log1p(-q);
    for (long i = 0; i <= alpha; i++) {
        double c = log_comb((double)alpha, (double)i) + (double)i * lq + (double)(alpha - i) * l1q;
        double s = c + ((double)i * (double)i - (double)i) / (2 * sigma * sigma);
        log_a = log_add(log_a, s);
    }
    return log_a;
}

/* log(exp(a) - exp(b)) for a >= b */
static double log_sub(double a, double b)
{
    if (b == -INFINITY) return a;
    if (a <= b) return -INFINITY;
    return a + log1p(-exp(b - a));
}

/* A signed quantity kept in log space: value = exp(pos) - exp(neg). */
typedef struct {
    double pos, neg;
} lsum;

static void lsum_add(lsum *s, double log_mag, int negative)
{
    if (negative)
        s->neg = log_add(s->neg, log_mag);
    else
        s->pos = log_add(s->pos, log_mag);
}

/* log A by numerical integration: the trapezoid rule in log space on
 * [-(40 s + 1), alpha + 40 s + 1] (the mixture's two bumps sit near 0 and near
 * alpha; beyond 40 s their weight is below e^-800), step s/200, at most
 * 2^22 points. The integrand is smooth and decays like a Gaussian on both
 * sides, where the trapezoid rule converges spectrally: the result agrees
 * with the series (and with mpmath) to ~1e-12 relative. Used when the
 * alternating series has not converged after its term budget (large alpha /
 * small sigma, where its terms first grow for thousands of indices). */
static double log_a_integrate(double q, double sigma, double alpha)
{
    double s2 = sigma * sigma;
    double zlo = -(40 * sigma + 1), zhi = alpha + 40 * sigma + 1;
    double hstep = sigma / 200;
    double npts = ceil((zhi - zlo) / hstep);
    if (npts > 4194304.0) {
        npts = 4194304.0;
        hstep = (zhi - zlo) / npts;
    }
    long n = (long)npts;
    double lq = log(q), l1q = log1p(-q);
    double gmax = -INFINITY, acc = 0;
    for (long k = 0; k <= n; k++) {
        double z = zlo + (double)k * hstep;
        double e = (2 * z - 1) / (2 * s2);
        /* log(1 - q + q e^e) */
        double l = e > 0 ? e + lq + log1p(exp(l1q - lq - e)) : l1q + log1p(exp(lq - l1q + e));
        double g = -z * z / (2 * s2) + alpha * l;
        if (k == 0 || k == n) g += log(0.5);
        if (g > gmax) {
            acc = acc * exp(gmax - g) + 1;
            gmax = g;
        } else {
            acc += exp(g - gmax);
        }
    }
    return gmax + log(acc) + log(hstep) - log(sigma) - 0.5 * log(2 * M_PI);
}

static double log_a_frac(double q, double sigma, double alpha)
{
    /* The binomial coefficients C(alpha, i) of a fractional alpha change sign
     * for i > floor(alpha) + 1: (-1)^(i - floor(alpha) - 1). Positive and
     * negative terms are summed apart, so the result is the exact moment
     * (as in Mironov et al. and Opacus), not the upper bound that summing
     * magnitudes would give. */
    lsum a0 = {-INFINITY, -INFINITY}, a1 = {-INFINITY, -INFINITY};
    double z0 = sigma * sigma * log(1 / q - 1) + 0.5;
    double lq = log(q), l1q = log1p(-q);
    double fl = floor(alpha);
    double last0 = -INFINITY, last1 = -INFINITY;
    for (int i = 0; i < 1000; i++) {
        double coef = log_comb(alpha, i);
        int negative = (double)i > fl + 1 && ((long)((double)i - fl - 1) & 1);
        double j = alpha - i;
        double t0 = coef + i * lq + j * l1q;
        double t1 = coef + j * lq + i * l1q;
        double e0 = log(0.5) + dp_log_erfc((i - z0) / (M_SQRT2 * sigma));
        double e1 = log(0.5) + dp_log_erfc((z0 - j) / (M_SQRT2 * sigma));
        double s0 = t0 + ((double)i * i - i) / (2 * sigma * sigma) + e0;
        double s1 = t1 + (j * j - j) / (2 * sigma * sigma) + e1;
        lsum_add(&a0, s0, negative);
        lsum_add(&a1, s1, negative);
        double total = log_add(a0.pos, a1.pos);
        if (s0 < last0 && s1 < last1 && (s0 > s1 ? s0 : s1) < total - 30) {
            return log_sub(total, log_add(a0.neg, a1.neg));
        }
        last0 = s0;
        last1 = s1;
    }
    /* not converged within the term budget: never give up, integrate */
    return log_a_integrate(q, sigma, alpha);
}

double pvg_dp_log_moment_subsampled_gaussian(double q, double sigma, double order)
{
    if (q <= 0) return 0;
    if (sigma <= 0 || isinf(order)) return INFINITY;
    if (q >= 1) return order * (order - 1) / (2 * sigma * sigma);
    if (order == floor(order) && order < 1e7) return log_a_int(q, sigma, (long)order);
    return log_a_frac(q, sigma, order);
}

double pvg_dp_rdp_gaussian(double sigma, double order)
{
    if (sigma <= 0 || isinf(order)) return INFINITY;
    return order / (2 * sigma * sigma);
}

double pvg_dp_rdp_subsampled_gaussian(double q, double sigma, double order)
{
    if (q <= 0) return 0;
    if (sigma <= 0 || isinf(order)) return INFINITY;
    if (q >= 1) return order / (2 * sigma * sigma);
    double la = pvg_dp_log_moment_subsampled_gaussian(q, sigma, order);
    return la / (order - 1);
}

double pvg_dp_rdp_to_epsilon(const double *orders, const double *rdp, size_t n, double delta,
                             pvg_dp_conversion conv, double *order_out)
{
    double best = INFINITY, best_order = n ? orders[0] : 0;
    int all_zero = 1;
    for (size_t i = 0; i < n; i++)
        if (rdp[i] != 0) all_zero = 0;
    if (delta <= 0) {
        if (order_out) *order_out = 0;
        return all_zero ? 0 : INFINITY;
    }
    for (size_t i = 0; i < n; i++) {
        double a = orders[i], r = rdp[i], e;
        if (a <= 1 || isnan(r)) continue;
        if (conv == PVG_DP_CONVERSION_CLASSIC) {
            e = r < 0 ? 0 : r - log(delta) / (a - 1);
        } else if (r < 0) {
            e = 0;
        } else if (delta * delta + expm1(-r) > 0) {
            e = 0; /* KL bound: delta <= sqrt(1 - exp(-KL)) */
        } else if (a > 1.01) {
            e = r + log1p(-1 / a) - log(delta * a) / (a - 1);
        } else {
            e = INFINITY;
        }
        if (e < best) {
            best = e;
            best_order = a;
        }
    }
    if (order_out) *order_out = best_order;
    return best < 0 ? 0 : best;
}

double pvg_dp_rdp_to_delta(const double *orders, const double *rdp, size_t n, double epsilon,
                           double *order_out)
{
    double best = INFINITY, best_order = n ? orders[0] : 0;
    for (size_t i = 0; i < n; i++) {
        double a = orders[i], r = rdp[i], ld;
        if (a <= 1 || isnan(r)) continue;
        if (r < 0 || r == 0)
            ld = -INFINITY;
        else
            ld = 0.5 * log1p(-exp(-r));
        if (a > 1.01) {
            double b = (a - 1) * (r - epsilon + log1p(-1 / a)) - log(a);
            if (b < ld) ld = b;
        }
        if (ld < best) {
            best = ld;
            best_order = a;
        }
    }
    if (order_out) *order_out = best_order;
    double d = exp(best);
    return d > 1 ? 1 : d;
}

size_t pvg_dp_default_orders(double *out, size_t max)
{
    size_t n = 0;
    for (int i = 11; i <= 109; i++)
        if (n < max)
            out[n++] = i / 10.0;
        else
            n++;
    for (int a = 11; a <= 63; a++)
        if (n < max)
            out[n++] = a;
        else
            n++;
    static const double big[] = {128, 256, 512, 1024};
    for (int i = 0; i < 4; i++)
        if (n < max)
            out[n++] = big[i];
        else
            n++;
    return n;
}

#define DP_MAX_ORDERS 512

pvg_status pvg_dp_epsilon_subsampled_gaussian(double q, double sigma, long long steps, double delta,
                                              pvg_dp_accountant acc, pvg_dp_conversion conv,
                                              const double *orders, size_t n_orders,
                                              double *eps_out, double *order_out, pvg_error *err)
{
    if (!(q >= 0 && q <= 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "sample rate must be in [0, 1], got %g", q);
    if (!(sigma >= 0) || isinf(sigma))
        return pvg_error_set(err, PVG_ERR_INVALID, "noise multiplier must be >= 0, got %g", sigma);
    if (steps < 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "steps must be >= 0, got %lld", steps);
    if (!(delta > 0 && delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "delta must be in (0, 1), got %g", delta);
    if (order_out) *order_out = 0;
    if (acc == PVG_DP_ACCOUNTANT_PLD)
        return pvg_dp_pld_epsilon(q, sigma, steps, delta, 0, eps_out, err);
    double def[DP_MAX_ORDERS], rdp[DP_MAX_ORDERS];
    if (!orders || n_orders == 0) {
        n_orders = pvg_dp_default_orders(def, DP_MAX_ORDERS);
        orders = def;
    }
    if (n_orders > DP_MAX_ORDERS)
        return pvg_error_set(err, PVG_ERR_INVALID, "at most %d orders", DP_MAX_ORDERS);
    for (size_t i = 0; i < n_orders; i++) {
        if (!(orders[i] > 1))
            return pvg_error_set(err, PVG_ERR_INVALID, "RDP orders must be > 1, got %g", orders[i]);
        rdp[i] =
            steps == 0 ? 0 : (double)steps * pvg_dp_rdp_subsampled_gaussian(q, sigma, orders[i]);
    }
    *eps_out = pvg_dp_rdp_to_epsilon(orders, rdp, n_orders, delta, conv, order_out);
    return PVG_OK;
}

pvg_status pvg_dp_noise_multiplier(double target_eps, double delta, double q, long long steps,
                                   pvg_dp_accountant acc, double *sigma_out, pvg_error *err)
{
    if (!(target_eps > 0) || isinf(target_eps))
        return pvg_error_set(err, PVG_ERR_INVALID, "target epsilon must be > 0, got %g",
                             target_eps);
    if (!(q > 0 && q <= 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "sample rate must be in (0, 1], got %g", q);
    if (steps < 1)
        return pvg_error_set(err, PVG_ERR_INVALID, "steps must be >= 1, got %lld", steps);
    pvg_status st;
    double lo = 0, hi = 1, e;
    /* find hi with eps(hi) <= target */
    for (;;) {
        st = pvg_dp_epsilon_subsampled_gaussian(q, hi, steps, delta, acc,
                                                PVG_DP_CONVERSION_IMPROVED, NULL, 0, &e, NULL, err);
        if (st != PVG_OK) return st;
        if (e <= target_eps) break;
        lo = hi;
        hi *= 2;
        if (hi > 1e6)
            return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                                 "no noise multiplier up to 1e6 reaches epsilon %g", target_eps);
    }
    /* PLD evaluations cost a composition each: stop at 1e-5 relative there */
    double tol = acc == PVG_DP_ACCOUNTANT_PLD ? 1e-5 : 1e-7;
    while (hi - lo > tol * hi) {
        double mid = 0.5 * (lo + hi);
        st = pvg_dp_epsilon_subsampled_gaussian(q, mid, steps, delta, acc,
                                                PVG_DP_CONVERSION_IMPROVED, NULL, 0, &e, NULL, err);
        if (st != PVG_OK) return st;
        if (e <= target_eps)
            hi = mid;
        else
            lo = mid;
    }
    *sigma_out = hi;
    return PVG_OK;
}

/* ---- composition and zCDP ---- */

void pvg_dp_compose_basic(const double *eps, const double *delta, size_t n, double *eps_out,
                          double *delta_out)
{
    double e = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        e += eps[i];
        d += delta ? delta[i] : 0;
    }
    if (eps_out) *eps_out = e;
    if (delta_out) *delta_out = d;
}

pvg_status pvg_dp_compose_advanced(double eps, double delta, long long k, double delta_slack,
                                   double *eps_out, double *delta_out, pvg_error *err)
{
    if (!(eps >= 0) || !(delta >= 0 && delta < 1) || k < 0 || !(delta_slack > 0 && delta_slack < 1))
        return pvg_error_set(
            err, PVG_ERR_INVALID,
            "advanced composition needs eps >= 0, delta in [0,1), k >= 0, slack in (0,1)");
    double kk = (double)k;
    *eps_out = eps * sqrt(2 * kk * log(1 / delta_slack)) + kk * eps * expm1(eps);
    *delta_out = kk * delta + delta_slack;
    return PVG_OK;
}

double pvg_dp_zcdp_gaussian(double sigma, double sens)
{
    if (sigma <= 0) return INFINITY;
    return sens * sens / (2 * sigma * sigma);
}

double pvg_dp_zcdp_from_pure(double eps)
{
    return eps * eps / 2;
}

static double zcdp_eps_at(double rho, double delta, double a)
{
    return rho * a + (log(1 / delta) + (a - 1) * log1p(-1 / a) - log(a)) / (a - 1);
}

double pvg_dp_zcdp_to_epsilon(double rho, double delta)
{
    if (rho <= 0) return 0;
    if (isinf(rho) || !(delta > 0)) return INFINITY;
    /* The bound is convex in a on (1, inf): golden-section search in log(a-1). */
    double lo = log(1e-6), hi = log(1e8);
    const double gr = 0.6180339887498949;
    double x1 = hi - gr * (hi - lo), x2 = lo + gr * (hi - lo);
    double f1 = zcdp_eps_at(rho, delta, 1 + exp(x1)), f2 = zcdp_eps_at(rho, delta, 1 + exp(x2));
    for (int it = 0; it < 200; it++) {
        if (f1 < f2) {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - gr * (hi - lo);
            f1 = zcdp_eps_at(rho, delta, 1 + exp(x1));
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + gr * (hi - lo);
            f2 = zcdp_eps_at(rho, delta, 1 + exp(x2));
        }
    }
    double e = f1 < f2 ? f1 : f2;
    double simple = rho + 2 * sqrt(rho * log(1 / delta));
    if (simple < e) e = simple;
    return e < 0 ? 0 : e;
}
