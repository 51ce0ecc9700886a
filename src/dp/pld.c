/*
 * pld.c - privacy loss distribution (PLD) accountant for the
 * Poisson-subsampled Gaussian mechanism (Koskela et al. 2020; Meiser &
 * Mohammadi 2018; the pessimistic estimate of Google's dp_accounting).
 *
 * One step, remove adjacency: P = (1-q) N(0,s^2) + q N(1,s^2) against
 * Q = N(0,s^2); the loss l(x) = log(1 - q + q exp((2x - 1)/(2 s^2))) is
 * increasing in x. Add adjacency: P = N(0,s^2) against the mixture, loss
 * -l(x). One step is discretised on the grid h Z by connect-the-dots
 * (Doroshenko et al. 2022; see pld_single), a pessimistic estimate. T steps are
 * composed by binary powering with FFT convolution; after each product the
 * top tail of mass < 1e-15 moves to the infinity atom and the bottom tail to
 * the lowest kept bucket, both pessimistic.
 *
 * delta(eps) = inf_mass + sum_k p_k (1 - exp(eps - l_k))_+ ; epsilon(delta)
 * by bisection. Shapes: a pmf is p[0..n) for losses (lo + i) h.
 */
#include <privguide/dp.h>

#include "dp/dp_internal.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct pld {
    double *p;
    long lo, n;
    double inf;
} pld;

static void pld_free(pld *a)
{
    free(a->p);
    a->p = NULL;
}

/* survival of the mixture and of N(0, s^2) */
static double mix_sf(double q, double s, double x)
{
    return (1 - q) * dp_norm_sf(x / s) + q * dp_norm_sf((x - 1) / s);
}

static double loss_remove(double q, double s, double x)
{
    double e = (2 * x - 1) / (2 * s * s);
    /* log(1 - q + q e^e) computed stably (q = 1: log1p(expm1(e)) would lose e < -37) */
    if (e > 0 || q == 1) return e + log(q + (1 - q) * exp(-e));
    return log1p(q * expm1(e));
}

/* x at which loss_remove = l (l > log(1-q)) */
static double x_remove(double q, double s, double l)
{
    double v = (exp(l) - (1 - q)) / q;
    if (v <= 0) return -INFINITY;
    return s * s * log(v) + 0.5;
}

/* Hockey-stick divergence of one step, delta(eps) = P(l > eps) - e^eps Q(l > eps).
 * remove: P = mixture, Q = N(0, s^2), l(x) = loss_remove(x) increasing, so
 *   l > eps <=> x > x* = x_remove(eps);
 * add: P = N(0, s^2), Q = mixture, loss -loss_remove(x) decreasing, so
 *   -l(x) > eps <=> x < x* = x_remove(-eps). */
static double delta_single(double q, double s, int add, double eps)
{
    double d;
    if (!add) {
        double xs = x_remove(q, s, eps);
        if (xs == -INFINITY) return -expm1(eps); /* every loss exceeds eps */
        d = mix_sf(q, s, xs) - exp(eps) * dp_norm_sf(xs / s);
    } else {
        double xs = x_remove(q, s, -eps);
        if (xs == -INFINITY) return 0;   /* eps >= -log(1 - q): no loss exceeds it */
        double pc = dp_norm_sf(-xs / s); /* P(X < x*) */
        double qc = (1 - q) * pc + q * dp_norm_sf((1 - xs) / s); /* mixture */
        d = pc - exp(eps) * qc;
    }
    return d < 0 ? 0 : d > 1 ? 1 : d;
}

/* One step's PLD by connect-the-dots (Doroshenko, Ghazi, Kamath, Kumar &
 * Manurangsi 2022, Algorithm 1, fixed gap h, as in dp_accounting's
 * create_pmf_pessimistic_connect_dots_fixed_gap): on the grid eps_i = i h,
 * klo <= i <= khi, with delta_i the exact hockey-stick divergence there,
 *   p_klo = 1 - delta_klo + (delta_klo+1 - delta_klo) / (e^h - 1)
 *   p_i   = ((delta_i+1 - delta_i) - e^h (delta_i - delta_i-1)) / (e^h - 1)
 *   p_khi = (delta_khi - delta_khi-1) / (e^-h - 1),   p_inf = delta_khi.
 * The discrete PLD's delta(eps) equals the true one at every grid point and
 * interpolates it linearly in e^eps between them; as delta is convex in e^eps
 * this dominates the true PLD (a pessimistic estimate), and it is far tighter
 * than rounding every loss up to the grid (the privacy-buckets method used
 * before, 1.7% high at 2,250 steps). The grid spans the losses of x in
 * [-(10 s + 1), 10 s + 1]; beyond, under P, the mass is below 1e-23 and is
 * accounted for by p_inf and p_klo. */
static int pld_single(double q, double s, double h, int add, pld *out, pvg_error *err)
{
    double xlo = -10 * s - 1, xhi = 10 * s + 1;
    double lmin, lmax;
    if (!add) {
        lmin = loss_remove(q, s, xlo);
        lmax = loss_remove(q, s, xhi);
    } else {
        lmin = -loss_remove(q, s, xhi);
        lmax = -loss_remove(q, s, xlo);
    }
    long klo = (long)floor(lmin / h), khi = (long)ceil(lmax / h);
    if (khi <= klo) khi = klo + 1;
    long n = khi - klo + 1;
    if (n > (1L << 24))
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED, "PLD: loss range too wide (%ld buckets)", n);
    double *dl = malloc((size_t)n * sizeof *dl);
    out->p = calloc((size_t)n, sizeof(double));
    if (!out->p || !dl) {
        free(dl);
        free(out->p);
        out->p = NULL;
        return pvg_error_set(err, PVG_ERR_NOMEM, "PLD: out of memory");
    }
    for (long i = 0; i < n; i++)
        dl[i] = delta_single(q, s, add, (double)(klo + i) * h);
    for (long i = 1; i < n; i++) /* non-increasing, as a hockey-stick curve is */
        if (dl[i] > dl[i - 1]) dl[i] = dl[i - 1];
    double em = expm1(h);
    out->p[0] = 1 - dl[0] + (dl[1] - dl[0]) / em;
    for (long i = 1; i < n - 1; i++)
        out->p[i] = ((dl[i + 1] - dl[i]) - exp(h) * (dl[i] - dl[i - 1])) / em;
    out->p[n - 1] = (dl[n - 1] - dl[n - 2]) / expm1(-h);
    for (long i = 0; i < n; i++)
        if (!(out->p[i] > 0)) out->p[i] = 0;
    out->lo = klo;
    out->n = n;
    out->inf = dl[n - 1];
    free(dl);
    return 0;
}

static void pld_truncate(pld *a);

/* the single-step pmf, with its negligible tails folded pessimistically */
static int pld_single_trunc(double q, double s, double h, int add, pld *out, pvg_error *err)
{
    int rc = pld_single(q, s, h, add, out, err);
    if (rc == 0) pld_truncate(out);
    return rc;
}

/* in-place radix-2 FFT of size n (power of two); inverse when inv. */
static void fft(double complex *a, size_t n, int inv, const double complex *w)
{
    for (size_t i = 1, j = 0; i < n; i++) {
        size_t bit = n >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            double complex t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
    }
    for (size_t len = 2; len <= n; len <<= 1) {
        size_t step = n / len;
        for (size_t i = 0; i < n; i += len)
            for (size_t k = 0; k < len / 2; k++) {
                double complex tw = inv ? conj(w[k * step]) : w[k * step];
                double complex u = a[i + k], v = a[i + k + len / 2] * tw;
                a[i + k] = u + v;
                a[i + k + len / 2] = u - v;
            }
    }
    if (inv)
        for (size_t i = 0; i < n; i++)
            a[i] /= (double)n;
}

#define PLD_TAIL 1e-15

static void pld_truncate(pld *a)
{
    long top = a->n - 1;
    double acc = 0;
    while (top > 0 && acc + a->p[top] < PLD_TAIL)
        acc += a->p[top--];
    a->inf += acc;
    long bot = 0;
    acc = 0;
    while (bot < top && acc + a->p[bot] < PLD_TAIL)
        acc += a->p[bot++];
    a->p[bot] += acc; /* lower losses rounded up: pessimistic */
    if (bot > 0) memmove(a->p, a->p + bot, (size_t)(top - bot + 1) * sizeof(double));
    a->lo += bot;
    a->n = top - bot + 1;
}

/* Spectrum X[0..m/2] of a real sequence x[0..nx) zero-padded to m (a power
 * of two >= 4), through one complex FFT of size m/2 on z[k] = x[2k] + i x[2k+1]:
 *   X[k] = (Z[k] + conj Z[-k])/2 + W^k (Z[k] - conj Z[-k])/(2i),  W = e^(-2 pi i/m).
 * wf[k] = W^k (k < m/2), wh[j] = e^(-2 pi i j/(m/2)) (j < m/4). */
static void rfft(const double *x, long nx, size_t m, const double complex *wf,
                 const double complex *wh, double complex *z, double complex *X)
{
    size_t h = m / 2;
    for (size_t k = 0; k < h; k++) {
        double re = (long)(2 * k) < nx ? x[2 * k] : 0,
               im = (long)(2 * k + 1) < nx ? x[2 * k + 1] : 0;
        z[k] = re + I * im;
    }
    fft(z, h, 0, wh);
    for (size_t k = 0; k <= h; k++) {
        double complex zk = z[k % h], zc = conj(z[(h - k) % h]);
        double complex wk = k < h ? wf[k] : -1.0; /* W^(m/2) = -1 */
        X[k] = 0.5 * (zk + zc) + wk * (zk - zc) / (2.0 * I);
    }
}

/* Inverse of rfft for a Hermitian spectrum Y[0..m/2]: y[0..m) real. */
static void irfft(const double complex *Y, size_t m, const double complex *wf,
                  const double complex *wh, double complex *z, double *y)
{
    size_t h = m / 2;
    for (size_t k = 0; k < h; k++) {
        double complex yk = Y[k], yc = conj(Y[h - k]);
        double complex e = 0.5 * (yk + yc);
        double complex o = 0.5 * (yk - yc) * conj(wf[k]);
        z[k] = e + I * o;
    }
    fft(z, h, 1, wh);
    for (size_t k = 0; k < h; k++) {
        y[2 * k] = creal(z[k]);
        y[2 * k + 1] = cimag(z[k]);
    }
}

/* out = a * b (convolution); out may alias neither. Shapes: a->n + b->n - 1
 * outputs from real FFTs of size m >= that (half-size complex transforms). */
static int pld_conv(const pld *a, const pld *b, pld *out, pvg_error *err)
{
    long n = a->n + b->n - 1;
    size_t m = 4;
    while ((long)m < n)
        m <<= 1;
    size_t h = m / 2;
    double complex *wf = malloc(h * sizeof *wf), *wh = malloc((h / 2 + 1) * sizeof *wh);
    double complex *z = malloc(h * sizeof *z), *xa = malloc((h + 1) * sizeof *xa), *xb = NULL;
    int self = a == b;
    if (!self) xb = malloc((h + 1) * sizeof *xb);
    double *res = malloc(m * sizeof(double));
    if (!wf || !wh || !z || !xa || !res || (!self && !xb)) {
        free(wf);
        free(wh);
        free(z);
        free(xa);
        free(xb);
        free(res);
        return pvg_error_set(err, PVG_ERR_NOMEM, "PLD: out of memory");
    }
    for (size_t k = 0; k < h; k++)
        wf[k] = cexp(-2.0 * M_PI * I * (double)k / (double)m);
    for (size_t j = 0; j < h / 2; j++)
        wh[j] = wf[2 * j];
    rfft(a->p, a->n, m, wf, wh, z, xa);
    if (self) {
        for (size_t k = 0; k <= h; k++)
            xa[k] *= xa[k];
    } else {
        rfft(b->p, b->n, m, wf, wh, z, xb);
        for (size_t k = 0; k <= h; k++)
            xa[k] *= xb[k];
    }
    irfft(xa, m, wf, wh, z, res);
    free(wf);
    free(wh);
    free(z);
    free(xa);
    free(xb);
    for (long i = 0; i < n; i++)
        if (!(res[i] > 0)) res[i] = 0;
    out->p = res;
    out->n = n;
    out->lo = a->lo + b->lo;
    out->inf = 1 - (1 - a->inf) * (1 - b->inf);
    pld_truncate(out);
    return 0;
}

static int pld_power(pld *base, long long t, pld *out, pvg_error *err)
{
    pld acc = {0};
    int have = 0;
    while (t > 0) {
        if (t & 1) {
            if (!have) {
                acc.p = malloc((size_t)base->n * sizeof(double));
                if (!acc.p) return pvg_error_set(err, PVG_ERR_NOMEM, "PLD: out of memory");
                memcpy(acc.p, base->p, (size_t)base->n * sizeof(double));
                acc.lo = base->lo;
                acc.n = base->n;
                acc.inf = base->inf;
                have = 1;
            } else {
                pld r;
                if (pld_conv(&acc, base, &r, err)) {
                    pld_free(&acc);
                    return -1;
                }
                pld_free(&acc);
                acc = r;
            }
        }
        t >>= 1;
        if (t > 0) {
            pld sq;
            if (pld_conv(base, base, &sq, err)) {
                pld_free(&acc);
                return -1;
            }
            pld_free(base);
            *base = sq;
        }
    }
    *out = acc;
    return 0;
}

static double pld_delta_at(const pld *a, double h, double eps)
{
    double d = a->inf;
    for (long i = a->n - 1; i >= 0; i--) {
        double l = (double)(a->lo + i) * h;
        if (l <= eps) break;
        d += a->p[i] * -expm1(eps - l);
    }
    return d > 1 ? 1 : d;
}

static pvg_status check_args(double q, double sigma, long long steps, double *h, pvg_error *err)
{
    if (!(q >= 0 && q <= 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "sample rate must be in [0, 1], got %g", q);
    if (!(sigma > 0) || isinf(sigma))
        return pvg_error_set(err, PVG_ERR_INVALID, "PLD needs a noise multiplier > 0, got %g",
                             sigma);
    if (steps < 0) return pvg_error_set(err, PVG_ERR_INVALID, "steps must be >= 0");
    if (*h == 0) *h = 1e-4;
    if (!(*h > 0 && *h < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "PLD interval must be in (0,1)");
    return PVG_OK;
}

/* Composes both adjacencies; out[0] remove, out[1] add. */
static pvg_status pld_build(double q, double sigma, long long steps, double h, pld out[2],
                            pvg_error *err)
{
    for (int add = 0; add < 2; add++) {
        pld one = {0};
        if (pld_single_trunc(q, sigma, h, add, &one, err)) {
            if (add) pld_free(&out[0]);
            return err ? err->code : PVG_ERR_NOMEM;
        }
        if (pld_power(&one, steps, &out[add], err)) {
            pld_free(&one);
            if (add) pld_free(&out[0]);
            return err ? err->code : PVG_ERR_NOMEM;
        }
        pld_free(&one);
    }
    return PVG_OK;
}

pvg_status pvg_dp_pld_delta(double q, double sigma, long long steps, double epsilon,
                            double interval, double *delta_out, pvg_error *err)
{
    pvg_status st = check_args(q, sigma, steps, &interval, err);
    if (st != PVG_OK) return st;
    if (steps == 0 || q == 0) {
        *delta_out = 0;
        return PVG_OK;
    }
    pld c[2];
    if ((st = pld_build(q, sigma, steps, interval, c, err)) != PVG_OK) return st;
    double d0 = pld_delta_at(&c[0], interval, epsilon), d1 = pld_delta_at(&c[1], interval, epsilon);
    *delta_out = d0 > d1 ? d0 : d1;
    pld_free(&c[0]);
    pld_free(&c[1]);
    return PVG_OK;
}

pvg_status pvg_dp_pld_epsilon(double q, double sigma, long long steps, double delta,
                              double interval, double *eps_out, pvg_error *err)
{
    pvg_status st = check_args(q, sigma, steps, &interval, err);
    if (st != PVG_OK) return st;
    if (!(delta > 0 && delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "delta must be in (0, 1), got %g", delta);
    if (steps == 0 || q == 0) {
        *eps_out = 0;
        return PVG_OK;
    }
    pld c[2];
    if ((st = pld_build(q, sigma, steps, interval, c, err)) != PVG_OK) return st;
    double best = 0;
    for (int k = 0; k < 2; k++) {
        if (c[k].inf > delta) {
            best = INFINITY;
            break;
        }
        double lo = 0, hi = (double)(c[k].lo + c[k].n) * interval;
        if (hi < 0) hi = 0;
        if (pld_delta_at(&c[k], interval, 0) <= delta) continue;
        for (int it = 0; it < 200 && hi - lo > 1e-12 * (1 + hi); it++) {
            double mid = 0.5 * (lo + hi);
            if (pld_delta_at(&c[k], interval, mid) <= delta)
                hi = mid;
            else
                lo = mid;
        }
        if (hi > best) best = hi;
    }
    pld_free(&c[0]);
    pld_free(&c[1]);
    *eps_out = best;
    return PVG_OK;
}
