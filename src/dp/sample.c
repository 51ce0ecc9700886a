/*
 * sample.c - exact samplers of Canonne, Kamath & Steinke (2020):
 * Bernoulli(p) for rational p, Bernoulli(exp(-gamma)) for rational gamma,
 * geometric, discrete Laplace and discrete Gaussian. Only integer
 * arithmetic (64 and 128 bits) and uniform integers from the pvg_rng are
 * used on the sampling path: no floating point, no transcendental.
 *
 * Shapes: every parameter is a rational num/den of unsigned integers; the
 * discrete Gaussian's acceptance exponent (|y| den t - num)^2 / (2 num den
 * t^2) is handled in 128-bit integers, and with GMP in the rare case where
 * the squared numerator exceeds 128 bits (far tails), so it stays exact.
 */
#include <privguide/dp.h>

#include "dp/dp_internal.h"

#include <gmp.h>
#include <stdint.h>

/* Uniform in [0, bound) for a 128-bit bound > 0 (rejection on masked bits). */
static u128 uniform128(pvg_rng *rng, u128 bound)
{
    if (bound >> 64 == 0) return pvg_rng_uniform(rng, (uint64_t)bound);
    int bits = 128;
    while (bits > 0 && !((bound - 1) >> (bits - 1) & 1))
        bits--;
    u128 mask = bits >= 128 ? ~(u128)0 : (((u128)1 << bits) - 1);
    for (;;) {
        u128 r = ((u128)pvg_rng_u64(rng) << 64) | pvg_rng_u64(rng);
        r &= mask;
        if (r < bound) return r;
    }
}

/* 1 with probability num/den (num <= den, den > 0). */
static int bern128(pvg_rng *rng, u128 num, u128 den)
{
    if (num >= den) return 1;
    if (num == 0) return 0;
    return uniform128(rng, den) < num;
}

int pvg_dp_bernoulli(pvg_rng *rng, uint64_t num, uint64_t den)
{
    if (den == 0) return 0;
    return bern128(rng, num, den);
}

/* Bernoulli(exp(-num/den)) for num <= den (CKS Algorithm 1, gamma in [0,1]):
 * K = 1; while Bernoulli(gamma / K): K++; return K odd. Bernoulli(gamma/K)
 * is drawn as Bernoulli(num/den) AND Bernoulli(1/K), which is exact. */
static int bern_exp_le1(pvg_rng *rng, u128 num, u128 den)
{
    uint64_t k = 1;
    for (;;) {
        if (!bern128(rng, num, den)) break;
        if (pvg_rng_uniform(rng, k) != 0) break; /* Bernoulli(1/k) failed */
        k++;
    }
    return (int)(k & 1);
}

int dp_bernoulli_exp128(pvg_rng *rng, u128 num, u128 den)
{
    /* exp(-g) = exp(-1)^floor(g) * exp(-(g - floor g)): independent trials. */
    while (num > den) {
        if (!bern_exp_le1(rng, 1, 1)) return 0;
        num -= den;
    }
    return bern_exp_le1(rng, num, den);
}

int pvg_dp_bernoulli_exp(pvg_rng *rng, uint64_t num, uint64_t den)
{
    if (den == 0) return 0;
    return dp_bernoulli_exp128(rng, num, den);
}

/* X >= 0 with P(X = x) proportional to exp(-x / t), t >= 1 integer
 * (CKS Alg. 2 inner part): U uniform in [0,t) accepted w.p. exp(-U/t), V the
 * number of exp(-1) successes before the first failure, X = U + t V, kept in
 * 128 bits (t < 2^63, V < 2^64). */
static u128 geometric_unit(pvg_rng *rng, uint64_t t)
{
    for (;;) {
        uint64_t u = pvg_rng_uniform(rng, t);
        if (!pvg_dp_bernoulli_exp(rng, u, t)) continue;
        uint64_t v = 0;
        while (bern_exp_le1(rng, 1, 1))
            v++;
        return (u128)u + (u128)t * v;
    }
}

/* floor(x / den) as a 64-bit value; saturates at 2^63 - 1, reached only when
 * V exceeds 2^63 den / t: for a scale t/den <= 2^40 (the bound of dp.h) that
 * is V > 2^23, probability exp(-2^23). */
static uint64_t div_sat(u128 x, uint64_t den)
{
    u128 y = x / den;
    return y > (u128)INT64_MAX ? (uint64_t)INT64_MAX : (uint64_t)y;
}

uint64_t pvg_dp_geometric(pvg_rng *rng, uint64_t num, uint64_t den)
{
    /* P(X=x) ∝ exp(-x/num) for X; floor(X/den) then ∝ exp(-y den/num). */
    if (num == 0 || den == 0) return 0;
    return div_sat(geometric_unit(rng, num), den);
}

int64_t pvg_dp_discrete_laplace(pvg_rng *rng, uint64_t num, uint64_t den)
{
    if (num == 0 || den == 0) return 0;
    for (;;) {
        uint64_t y = div_sat(geometric_unit(rng, num), den);
        int neg = (int)(pvg_rng_u64(rng) & 1);
        if (neg && y == 0) continue; /* -0 would double the mass at zero */
        return neg ? -(int64_t)y : (int64_t)y;
    }
}

/* floor(sqrt(num/den)) exactly: the largest s with s^2 den <= num. */
static uint64_t isqrt_ratio(uint64_t num, uint64_t den)
{
    uint64_t lo = 0, hi = 1u << 25; /* num < 2^48 => sqrt < 2^24 */
    while (lo < hi) {
        uint64_t mid = (lo + hi + 1) / 2;
        if ((u128)mid * mid * den <= num)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

int64_t pvg_dp_discrete_gaussian(pvg_rng *rng, uint64_t num, uint64_t den)
{
    if (num == 0 || den == 0) return 0;
    /* CKS Alg. 3: t = floor(sigma) + 1; Y ~ DLap(t); accept with
     * Bernoulli(exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))). With
     * sigma^2 = num/den the exponent is (|Y| den t - num)^2 / (2 num den t^2). */
    uint64_t t = isqrt_ratio(num, den) + 1;
    u128 gden = (u128)2 * num * den * t * t; /* < 2^1+48+24+50 = 2^123 */
    for (;;) {
        int64_t y = pvg_dp_discrete_laplace(rng, t, 1);
        uint64_t ay = (uint64_t)(y < 0 ? -y : y);
        u128 a = (u128)ay * den * t; /* < 2^63 * 2^24 * 2^25: see below */
        if (ay >> 62) continue;      /* unreachable: P(|Y| >= 2^62) = 0 in 64-bit */
        u128 diff = a >= num ? a - num : num - a;
        int ok;
        if (diff >> 64 == 0) {
            ok = dp_bernoulli_exp128(rng, diff * diff, gden);
        } else {
            /* Rare (|Y| > 2^15 sigma-ish): diff^2 exceeds 128 bits. Split
             * gamma = Q + R/gden with GMP, then exp(-Q) as Q independent
             * exp(-1) trials (stopping at the first failure) and exp(-R/gden)
             * with R < gden < 2^123. */
            ok = dp_bern_exp_big(rng, diff, gden);
        }
        if (ok) return y;
    }
}

/* In 32-bit pieces: unsigned long is 32 bits on some targets (wasm32). */
static void mpz_set_u128(mpz_t z, u128 v)
{
    mpz_set_ui(z, 0);
    for (int s = 96; s >= 0; s -= 32) {
        mpz_mul_2exp(z, z, 32);
        mpz_add_ui(z, z, (unsigned long)(uint32_t)(v >> s));
    }
}

static u128 mpz_get_u128(const mpz_t z)
{
    mpz_t t;
    mpz_init(t);
    u128 v = 0;
    for (int s = 96; s >= 0; s -= 32) {
        mpz_tdiv_q_2exp(t, z, (unsigned long)s);
        mpz_tdiv_r_2exp(t, t, 32);
        v |= (u128)(uint32_t)mpz_get_ui(t) << s;
    }
    mpz_clear(t);
    return v;
}

int dp_bern_exp_big(pvg_rng *rng, u128 diff, u128 gden)
{
    mpz_t d, g, q, r;
    mpz_inits(d, g, q, r, NULL);
    mpz_set_u128(d, diff);
    mpz_set_u128(g, gden);
    mpz_mul(d, d, d);
    mpz_tdiv_qr(q, r, d, g);
    int ok = 1;
    /* exp(-Q): Q trials of exp(-1); the loop ends at the first failure,
     * after 1.58 trials on average. */
    while (ok && mpz_sgn(q) > 0) {
        ok = bern_exp_le1(rng, 1, 1);
        mpz_sub_ui(q, q, 1);
    }
    u128 rr = mpz_get_u128(r);
    mpz_clears(d, g, q, r, NULL);
    if (!ok) return 0;
    return bern_exp_le1(rng, rr, gden);
}
