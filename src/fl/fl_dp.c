/*
 * fl_dp.c - the encoding of a federated update for secure aggregation and
 * its client-level differential privacy (docs/federated.md):
 *
 *   clip to L2 <= C; randomised Walsh-Hadamard rotation in blocks (signs
 *   from the public seed and the round); scale by 1/gamma; conditional
 *   randomised rounding to integers of L2 norm <= B; noise; mod 2^bits.
 *
 * The noise is a discrete Gaussian of standard deviation sigma = z * B in
 * integer units on the sum: either one draw per coordinate by the server
 * after unmasking (central) or one share of variance sigma^2 / n_expected
 * per coordinate by each client (distributed discrete Gaussian, Kairouz,
 * Liu & Steinke, ICML 2021). The sampler is the exact one of src/dp
 * (integer arithmetic, CSPRNG). Accounting: RDP of the Poisson-subsampled
 * Gaussian mechanism with noise multiplier z over the rounds.
 */
#include "fl/fl_internal.h"

#include <privguide/dp.h>

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

pvg_status fl_config_check(const pvg_fl_config *c, pvg_error *err)
{
    const char *field = NULL;
    if (!c)
        field = "config";
    else if (c->factors < 1 || c->factors > PVG_FL_MAX_FACTORS)
        field = "factors (1..256)";
    else if (!(c->reg > 0) || !isfinite(c->reg))
        field = "reg (> 0)";
    else if (!(c->alpha >= 0) || !isfinite(c->alpha))
        field = "alpha (>= 0)";
    else if (!(c->alpha0 > 0) || !(c->alpha0 < 1e6))
        field = "alpha0 (> 0)";
    else if (!(c->clip > 0) || !(c->clip < 1e12))
        field = "clip (> 0)";
    else if (c->optimizer != PVG_FL_FEDAVG && c->optimizer != PVG_FL_FEDADAM)
        field = "optimizer (PVG_FL_FEDAVG or PVG_FL_FEDADAM)";
    else if (!(c->server_lr > 0) || !(c->server_lr <= 100))
        field = "server_lr (0 < lr <= 100)";
    else if (c->dp != PVG_FL_DP_NONE && c->dp != PVG_FL_DP_CENTRAL &&
             c->dp != PVG_FL_DP_DISTRIBUTED)
        field = "dp (PVG_FL_DP_NONE, _CENTRAL or _DISTRIBUTED)";
    else if (c->dp != PVG_FL_DP_NONE && !(c->noise_multiplier > 0 && c->noise_multiplier < 1e4))
        field = "noise_multiplier (0 < z < 10^4 with DP)";
    else if (!(c->expected_cohort >= 1) || !(c->expected_cohort < (double)(1u << 24)))
        field = "expected_cohort (1 .. 2^24)";
    else if (c->bits < 16 || c->bits > 32)
        field = "bits (16..32)";
    else if (!(c->granularity >= 0) || !isfinite(c->granularity))
        field = "granularity (>= 0)";
    else if (c->update != PVG_FL_UPDATE_GRADIENT && c->update != PVG_FL_UPDATE_STATS)
        field = "update (PVG_FL_UPDATE_GRADIENT or PVG_FL_UPDATE_STATS)";
    else if (!(c->noise_ridge >= 0) || !(c->noise_ridge <= 1e6))
        field = "noise_ridge (0..1e6)";
    else if (c->average_solves != 0 && c->average_solves != 1)
        field = "average_solves (0 or 1)";
    if (field) return pvg_error_set(err, PVG_ERR_INVALID, "fl config: bad %s", field);
    return PVG_OK;
}

size_t fl_dim_raw(uint32_t k, uint32_t n_items)
{
    uint64_t d = (uint64_t)n_items * (k + 1u) + (uint64_t)k * (k + 1u) / 2u + 1u;
    return d > (1u << 28) ? 0 : (size_t)d;
}

static size_t next_pow2(size_t x)
{
    size_t p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

/* B of the conditional rounding (KLS 2021, Thm 4 with beta = e^-1/2):
 * sqrt(c^2 + d/4 + sqrt(2 log(1/beta)) (c + sqrt(d)/2)). */
static double round_bound(double cint, size_t d)
{
    double sd = sqrt((double)d);
    return sqrt(cint * cint + (double)d / 4.0 + (cint + sd / 2.0));
}

/* The room a sum of n encoded updates needs in half the modulus: 8
 * sub-Gaussian scales of the rounded updates after rotation (n B /
 * sqrt(block)), 8 noise stds (z_sum B on the sum) and n (rounding). */
static double wrap_need(double n, double b, size_t blk, double z_sum)
{
    return 8.0 * (n * b / sqrt((double)blk) + z_sum * b) + n;
}

/* The automatic clip bound in steps for a sum of n clients whose noise is z_sum B on the sum
 * (z: the config's multiplier, whose std z B must stay in the sampler's range): the largest
 * (within 10%) that wrap_need fits in half the 2^bits modulus, at most a quarter of it. */
static double auto_step(double n, double z, double z_sum, size_t blk, size_t d, unsigned bits)
{
    double half = ldexp(1.0, (int)bits - 1);
    double cint = (half - n) / (8.0 * (n / sqrt((double)blk) + z_sum * 1.05));
    if (cint > half / 4) cint = half / 4;
    if (z > 0 && cint * z > ldexp(1.0, 23) / 1.05) cint = ldexp(1.0, 23) / 1.05 / z;
    for (int it = 0; it < 60; it++) {
        if (wrap_need(n, round_bound(cint, d), blk, z_sum) <= half) break;
        cint *= 0.9;
    }
    return cint;
}

pvg_status fl_code_of(const pvg_fl_config *cfg, uint32_t n_items, fl_code *out, pvg_error *err)
{
    pvg_status st = fl_config_check(cfg, err);
    if (st != PVG_OK) return st;
    memset(out, 0, sizeof *out);
    size_t dr = fl_dim_raw(cfg->factors, n_items);
    if (n_items == 0 || dr == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl: %u items at %u factors: update dimension outside 1..2^28",
                             n_items, cfg->factors);
    size_t blk = next_pow2(dr);
    if (blk > PVG_FL_BLOCK_MAX) blk = PVG_FL_BLOCK_MAX;
    size_t d = (dr + blk - 1) / blk * blk;
    double z = cfg->dp == PVG_FL_DP_NONE ? 0 : cfg->noise_multiplier;
    double n = floor(cfg->expected_cohort);
    double half = ldexp(1.0, (int)cfg->bits - 1);
    double cint;
    if (cfg->granularity > 0) {
        cint = cfg->clip / cfg->granularity;
    } else {
        /* no wrap-around with overwhelming probability: after rotation a
         * coordinate of the sum is sub-Gaussian with scale <= n C / sqrt(block)
         * (rounding adds <= n); 8 of those plus 8 noise stds fit in half the
         * modulus. The integer noise std stays <= 2^23 (the sampler's range). */
        cint = auto_step(n, z, z, blk, d, cfg->bits);
    }
    if (!(cint <= half / 4))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl: granularity %.3g puts the clip bound at %.3g steps, beyond a "
                             "quarter of the %u-bit modulus",
                             cfg->granularity, cint, cfg->bits);
    if (!(cint >= 8))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl: %u modulus bits leave %.3g quantisation steps for the clip "
                             "bound at an expected cohort of %.0f (need >= 8): use more bits or "
                             "a coarser granularity",
                             cfg->bits, cint, n);
    out->d_raw = dr;
    out->d = d;
    out->block = blk;
    out->gamma = cfg->clip / cint;
    out->bound = round_bound(cint, d);
    out->sigma = z * out->bound;
    if (z > 0) {
        double var = ceil(out->sigma * out->sigma);
        if (!(var < ldexp(1.0, 47)))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "fl: noise variance %.3g quantisation steps^2 is beyond the "
                                 "sampler's range (2^47): use a coarser granularity",
                                 var);
        out->noise_num = (uint64_t)var;
        out->noise_den = cfg->dp == PVG_FL_DP_DISTRIBUTED ? (uint64_t)n : 1;
        /* each share must stay a wide discrete Gaussian (the sum is then
         * within tau ~ 1e-60 of one, KLS Prop. 14) */
        if (cfg->dp == PVG_FL_DP_DISTRIBUTED &&
            (double)out->noise_num / (double)out->noise_den < 16)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "fl: each client's noise share has variance < 16 steps^2: use a "
                                 "finer granularity");
    }
    return PVG_OK;
}

/* The noise multiplier on a sum of m clients' inputs, in units of the encoding's bound B:
 * central: z (one draw after unmasking); distributed: m shares of variance (z B)^2 / n,
 * n = floor(expected_cohort); none: 0. */
static double sum_noise(const pvg_fl_config *cfg, double m)
{
    if (cfg->dp == PVG_FL_DP_NONE) return 0;
    if (cfg->dp == PVG_FL_DP_CENTRAL) return cfg->noise_multiplier;
    return cfg->noise_multiplier * sqrt(m / floor(cfg->expected_cohort));
}

pvg_status pvg_fl_config_check_cohort(const pvg_fl_config *cfg, uint32_t n_items,
                                      uint32_t max_cohort, uint32_t min_survivors, pvg_error *err)
{
    fl_code code;
    pvg_status st = fl_code_of(cfg, n_items, &code, err);
    if (st != PVG_OK) return st;
    if (max_cohort < 1 || max_cohort > PVG_FL_MAX_COHORT)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "max_cohort", 0, 0, -1,
                                "fl config: max_cohort %u, want 1..%u", max_cohort,
                                PVG_FL_MAX_COHORT);
    if (cfg->dp == PVG_FL_DP_DISTRIBUTED && (double)min_survivors < floor(cfg->expected_cohort))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "min_survivors", 0, 0, -1,
                                "fl config: survivor floor %u below the expected cohort %.0f the "
                                "distributed noise is split over: a revealed sum could carry "
                                "less noise than announced",
                                min_survivors, floor(cfg->expected_cohort));
    if (cfg->dp == PVG_FL_DP_DISTRIBUTED && (double)max_cohort < floor(cfg->expected_cohort))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "max_cohort", 0, 0, -1,
                                "fl config: max_cohort %u below the expected cohort %.0f the "
                                "distributed noise is split over",
                                max_cohort, floor(cfg->expected_cohort));
    double half = ldexp(1.0, (int)cfg->bits - 1);
    double need = wrap_need(max_cohort, code.bound, code.block, sum_noise(cfg, max_cohort));
    if (!(need <= half))
        return pvg_error_set_at(
            err, PVG_ERR_INVALID, "max_cohort", 0, 0, -1,
            "fl config: a %u-bit lane cannot hold the sum of max_cohort = %u clients' clipped%s "
            "updates at granularity %.3g (the sum needs %.3g of the %.3g the lane holds each "
            "way): lower max_cohort, use 32 bits or a coarser granularity",
            cfg->bits, max_cohort, cfg->dp == PVG_FL_DP_NONE ? "" : ", noised", code.gamma, need,
            half);
    return PVG_OK;
}

pvg_status pvg_fl_config_for_cohort(pvg_fl_config *cfg, uint32_t n_items, unsigned lane_bits,
                                    uint32_t max_cohort, uint32_t min_survivors, pvg_error *err)
{
    if (!cfg) return pvg_error_set(err, PVG_ERR_INVALID, "fl config: NULL");
    if (lane_bits != 16 && lane_bits != 32)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "lane_bits", 0, 0, -1,
                                "fl config: lane_bits %u, want 16 or 32", lane_bits);
    if (max_cohort < 1 || max_cohort > PVG_FL_MAX_COHORT)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "max_cohort", 0, 0, -1,
                                "fl config: max_cohort %u, want 1..%u", max_cohort,
                                PVG_FL_MAX_COHORT);
    pvg_fl_config c = *cfg;
    c.bits = lane_bits;
    if (c.dp == PVG_FL_DP_DISTRIBUTED) {
        /* each client adds sigma^2 / n_min and no sum of fewer than n_min is unmasked */
        if (min_survivors < 1 || min_survivors > max_cohort)
            return pvg_error_set_at(err, PVG_ERR_INVALID, "min_survivors", 0, 0, -1,
                                    "fl config: survivor floor %u, want 1..max_cohort (%u): the "
                                    "distributed noise is split over it",
                                    min_survivors, max_cohort);
        c.expected_cohort = min_survivors;
    } else {
        c.expected_cohort = max_cohort;
    }
    pvg_status st = fl_config_check(&c, err);
    if (st != PVG_OK) return st;
    if (c.granularity == 0) {
        size_t dr = fl_dim_raw(c.factors, n_items);
        if (n_items == 0 || dr == 0)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "fl: %u items at %u factors: update dimension outside 1..2^28",
                                 n_items, c.factors);
        size_t blk = next_pow2(dr);
        if (blk > PVG_FL_BLOCK_MAX) blk = PVG_FL_BLOCK_MAX;
        size_t d = (dr + blk - 1) / blk * blk;
        double z = c.dp == PVG_FL_DP_NONE ? 0 : c.noise_multiplier;
        double cint = auto_step(max_cohort, z, sum_noise(&c, max_cohort), blk, d, lane_bits);
        if (!(cint >= 8))
            return pvg_error_set_at(err, PVG_ERR_INVALID, "max_cohort", 0, 0, -1,
                                    "fl config: a %u-bit lane leaves %.3g quantisation steps for "
                                    "the clip bound when max_cohort = %u clients' clipped%s "
                                    "updates are summed (need >= 8): lower max_cohort or use 32 "
                                    "bits",
                                    lane_bits, cint, max_cohort,
                                    c.dp == PVG_FL_DP_NONE ? "" : ", noised");
        /* the step is sent as clip / cint: shave the division's rounding off the bound */
        c.granularity = c.clip / (cint * (1 - 1e-9));
    }
    st = pvg_fl_config_check_cohort(&c, n_items, max_cohort, min_survivors, err);
    if (st != PVG_OK) return st;
    *cfg = c;
    return PVG_OK;
}

/* The rotation's signs for one round: one bit per coordinate from a
 * ChaCha20 stream keyed by BLAKE2b(context, seed, round). Public. */
static uint8_t *rotation_signs(uint64_t seed, uint32_t round, size_t d)
{
    uint8_t key[randombytes_SEEDBYTES], in[12];
    static const char ctx[] = "privguide-fl-rotation-v1";
    for (int i = 0; i < 8; i++)
        in[i] = (uint8_t)(seed >> (8 * i));
    for (int i = 0; i < 4; i++)
        in[8 + i] = (uint8_t)(round >> (8 * i));
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, sizeof key);
    crypto_generichash_update(&h, (const unsigned char *)ctx, sizeof ctx - 1);
    crypto_generichash_update(&h, in, sizeof in);
    crypto_generichash_final(&h, key, sizeof key);
    uint8_t *bits = malloc((d + 7) / 8);
    if (bits) randombytes_buf_deterministic(bits, (d + 7) / 8, key);
    return bits;
}

/* In-place normalised Walsh-Hadamard transform of x[0..n), n a power of 2. */
static void fwht(double *x, size_t n)
{
    for (size_t h = 1; h < n; h <<= 1)
        for (size_t i = 0; i < n; i += 2 * h)
            for (size_t j = i; j < i + h; j++) {
                double a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    double s = 1.0 / sqrt((double)n);
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

static void apply_signs(double *x, size_t d, const uint8_t *bits)
{
    for (size_t i = 0; i < d; i++)
        if (bits[i >> 3] >> (i & 7) & 1) x[i] = -x[i];
}

/* The rounding's uniform draws for one block: the bytes of pvg_rng_double,
 * drawn in one call (the same stream, 8 little-endian bytes a draw). */
static double draw_of(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return (double)(v >> 11) * 0x1.0p-53;
}

pvg_status fl_encode_sparse(const pvg_fl_config *cfg, const fl_code *code, uint32_t round,
                            const uint32_t *idx, const double *val, size_t nnz, pvg_rng *rng,
                            uint32_t *vec, pvg_error *err)
{
    if (cfg->dp == PVG_FL_DP_DISTRIBUTED) {
        pvg_status st = pvg_rng_require_secure(rng, cfg->allow_insecure_rng,
                                               "a federated client's noise share", err);
        if (st != PVG_OK) return st;
    }
    size_t d = code->d, B = code->block;
    for (size_t j = 0; j < nnz; j++)
        if (idx[j] >= code->d_raw || (j && idx[j] <= idx[j - 1]))
            return pvg_error_set(err, PVG_ERR_INTERNAL,
                                 "fl: update entry %zu (index %u) is not ascending below %zu", j,
                                 idx[j], code->d_raw);
    double nrm = 0;
    for (size_t j = 0; j < nnz; j++)
        nrm += val[j] * val[j];
    nrm = sqrt(nrm);
    if (!isfinite(nrm)) return pvg_error_set(err, PVG_ERR_INVALID, "fl: update is not finite");
    double s = nrm > cfg->clip ? cfg->clip / nrm : 1.0;
    s /= code->gamma;
    uint8_t *signs = rotation_signs(cfg->seed, round, d);
    double *u = malloc(B * sizeof *u);
    uint8_t *draws = malloc(8 * B);
    if (!signs || !u || !draws) {
        free(signs);
        free(u);
        free(draws);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl: out of memory");
    }
    /* one rotation block at a time: the clipped, scaled, signed entries of the
     * block, its transform, then conditional randomised rounding (unbiased per
     * coordinate; the whole vector is retried until its norm is <= bound, which
     * fails with probability <= e^-1/2 per try). A block with no entry is zero
     * after the transform, and rounds to zero whatever the draw: it takes none. */
    double b2 = code->bound * code->bound;
    int ok = 0;
    for (int tries = 0; tries < 200 && !ok; tries++) {
        double n2 = 0;
        size_t j = 0;
        for (size_t b = 0; b < d; b += B) {
            if (j == nnz || idx[j] >= b + B) {
                memset(vec + b, 0, B * sizeof *vec);
                continue;
            }
            memset(u, 0, B * sizeof *u);
            for (; j < nnz && idx[j] < b + B; j++) {
                size_t i = idx[j];
                double x = val[j] * s;
                u[i - b] = signs[i >> 3] >> (i & 7) & 1 ? -x : x;
            }
            fwht(u, B);
            pvg_rng_bytes(rng, draws, 8 * B);
            for (size_t q = 0; q < B; q++) {
                double f = floor(u[q]);
                double r = f + (draw_of(draws + 8 * q) < u[q] - f ? 1.0 : 0.0);
                n2 += r * r;
                vec[b + q] = (uint32_t)(int64_t)r; /* two's complement: mod 2^32 */
            }
        }
        ok = n2 <= b2;
    }
    sodium_memzero(u, B * sizeof *u);
    sodium_memzero(draws, 8 * B);
    free(u);
    free(draws);
    free(signs);
    if (!ok) {
        sodium_memzero(vec, d * sizeof *vec);
        return pvg_error_set(err, PVG_ERR_INTERNAL, "fl: conditional rounding did not succeed");
    }
    if (cfg->dp == PVG_FL_DP_DISTRIBUTED)
        for (size_t i = 0; i < d; i++)
            vec[i] += (uint32_t)pvg_dp_discrete_gaussian(rng, code->noise_num, code->noise_den);
    if (cfg->bits < 32) {
        uint32_t mask = (1u << cfg->bits) - 1u;
        for (size_t i = 0; i < d; i++)
            vec[i] &= mask;
    }
    return PVG_OK;
}

pvg_status fl_encode(const pvg_fl_config *cfg, const fl_code *code, uint32_t round, double *u,
                     pvg_rng *rng, uint32_t *vec, pvg_error *err)
{
    size_t nnz = 0;
    for (size_t i = 0; i < code->d_raw; i++)
        nnz += u[i] != 0;
    uint32_t *idx = malloc((nnz ? nnz : 1) * sizeof *idx);
    double *val = malloc((nnz ? nnz : 1) * sizeof *val);
    if (!idx || !val) {
        free(idx);
        free(val);
        sodium_memzero(u, code->d * sizeof *u);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl: out of memory");
    }
    /* a NaN compares unequal to 0 and is kept: the norm check refuses it */
    size_t j = 0;
    for (size_t i = 0; i < code->d_raw; i++)
        if (u[i] != 0) {
            idx[j] = (uint32_t)i;
            val[j++] = u[i];
        }
    pvg_status st = fl_encode_sparse(cfg, code, round, idx, val, nnz, rng, vec, err);
    sodium_memzero(u, code->d * sizeof *u);
    sodium_memzero(idx, (nnz ? nnz : 1) * sizeof *idx); /* where the update is nonzero */
    sodium_memzero(val, (nnz ? nnz : 1) * sizeof *val);
    free(idx);
    free(val);
    return st;
}

pvg_status fl_decode(const pvg_fl_config *cfg, const fl_code *code, uint32_t round,
                     const uint32_t *sum, int add_central_noise, pvg_rng *rng, double *out,
                     pvg_error *err)
{
    if (add_central_noise) {
        if (!rng) return pvg_error_set(err, PVG_ERR_INVALID, "fl: central noise needs an rng");
        pvg_status st = pvg_rng_require_secure(rng, cfg->allow_insecure_rng,
                                               "federated training's central noise", err);
        if (st != PVG_OK) return st;
    }
    size_t d = code->d;
    uint64_t mod = (uint64_t)1 << cfg->bits, half = mod >> 1;
    for (size_t i = 0; i < d; i++) {
        uint64_t v = sum[i] & (mod - 1);
        if (add_central_noise)
            v = (v + (uint64_t)pvg_dp_discrete_gaussian(rng, code->noise_num, code->noise_den)) &
                (mod - 1);
        int64_t c = v >= half ? (int64_t)v - (int64_t)mod : (int64_t)v;
        out[i] = (double)c * code->gamma;
    }
    uint8_t *signs = rotation_signs(cfg->seed, round, d);
    if (!signs) return pvg_error_set(err, PVG_ERR_NOMEM, "fl: out of memory");
    for (size_t b = 0; b < d; b += code->block)
        fwht(out + b, code->block);
    apply_signs(out, d, signs);
    free(signs);
    return PVG_OK;
}

pvg_status pvg_fl_epsilon(const pvg_fl_config *cfg, double q, uint32_t rounds, double delta,
                          double *epsilon, pvg_error *err)
{
    *epsilon = INFINITY;
    pvg_status st = fl_config_check(cfg, err);
    if (st != PVG_OK) return st;
    if (!(q >= 0 && q <= 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl epsilon: sampling rate q=%g outside [0,1]",
                             q);
    if (!(delta > 0 && delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl epsilon: delta=%g outside (0,1)", delta);
    if (rounds == 0 || q == 0) {
        *epsilon = 0;
        return PVG_OK;
    }
    if (cfg->dp == PVG_FL_DP_NONE) return PVG_OK;
    double orders[80], rdp[80];
    size_t n = 0;
    for (double a = 1.25; a < 2; a += 0.25)
        orders[n++] = a;
    for (int a = 2; a <= 64; a++)
        orders[n++] = a;
    orders[n++] = 96;
    orders[n++] = 128;
    orders[n++] = 256;
    /* the distributed sum of n discrete Gaussian shares of variance
     * >= 16 each is within tau of one discrete Gaussian (KLS Prop. 14):
     * tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k/(k+1)) <= 10 n exp(-pi^2 16);
     * charged per coordinate (d <= 2^28) per round */
    double tau = 0;
    if (cfg->dp == PVG_FL_DP_DISTRIBUTED)
        tau = 10.0 * cfg->expected_cohort * exp(-M_PI * M_PI * 16.0) * ldexp(1.0, 28);
    for (size_t i = 0; i < n; i++) {
        double r = pvg_dp_rdp_subsampled_gaussian(q, cfg->noise_multiplier, orders[i]);
        rdp[i] = (double)rounds * (r + tau);
    }
    *epsilon = pvg_dp_rdp_to_epsilon(orders, rdp, n, delta, PVG_DP_CONVERSION_IMPROVED, NULL);
    if (!isfinite(*epsilon))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl epsilon: unbounded at q=%g, z=%g, %u rounds",
                             q, cfg->noise_multiplier, rounds);
    return PVG_OK;
}
