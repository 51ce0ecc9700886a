/*
 * t_audit_cp.c - Clopper-Pearson intervals for the empirical privacy
 * audits (see t_audit_cp.h). The incomplete beta is the continued fraction
 * of Numerical Recipes (modified Lentz), accurate to ~1e-14 relative.
 */
#include "t_audit_cp.h"

#include <math.h>

static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15) break;
    }
    return h;
}

double t_ibeta(double a, double b, double x)
{
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2)) return exp(lbt) * betacf(a, b, x) / a;
    return 1 - exp(lbt) * betacf(b, a, 1 - x) / b;
}

/* x with I_x(a, b) = q, by bisection (I is increasing in x) */
static double ibeta_inv(double a, double b, double q)
{
    double lo = 0, hi = 1;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (t_ibeta(a, b, mid) < q)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

void t_clopper_pearson(long k, long n, double alpha, double *lo, double *hi)
{
    *lo = k <= 0 ? 0 : ibeta_inv((double)k, (double)(n - k + 1), alpha / 2);
    *hi = k >= n ? 1 : ibeta_inv((double)(k + 1), (double)(n - k), 1 - alpha / 2);
}

double t_eps_lower_bound(long k1, long n1, long k0, long n0, double delta, double alpha,
                         double *hat)
{
    double l1, h1, l0, h0;
    t_clopper_pearson(k1, n1, alpha, &l1, &h1);
    t_clopper_pearson(k0, n0, alpha, &l0, &h0);
    if (hat) {
        double p1 = (double)k1 / (double)n1 - delta, p0 = (double)k0 / (double)n0;
        *hat = p1 > 0 && p0 > 0 ? log(p1 / p0) : (p1 > 0 ? INFINITY : -INFINITY);
    }
    if (l1 - delta <= 0) return -INFINITY;
    return log((l1 - delta) / h0);
}

double t_eps_upper_bound(long k1, long n1, long k0, long n0, double delta, double alpha)
{
    double l1, h1, l0, h0;
    t_clopper_pearson(k1, n1, alpha, &l1, &h1);
    t_clopper_pearson(k0, n0, alpha, &l0, &h0);
    if (h1 - delta <= 0) return -INFINITY;
    if (l0 <= 0) return INFINITY;
    return log((h1 - delta) / l0);
}
