/*
 * shamir.c - Shamir t-of-n secret sharing over GF(2^61 - 1) and the binary
 * serialization of one share (see privguide/shamir.h).
 *
 * Arithmetic: elements are uint64_t < p; products go through 128-bit
 * integers and the Mersenne reduction (x mod p = (x & p) + (x >> 61)).
 */
#include <privguide/shamir.h>

#include <sodium.h>
#include <string.h>

#define P PVG_SHAMIR_PRIME

uint64_t pvg_shamir_add(uint64_t a, uint64_t b)
{
    uint64_t s = a + b; /* < 2^62, no overflow */
    return s >= P ? s - P : s;
}

uint64_t pvg_shamir_sub(uint64_t a, uint64_t b)
{
    return a >= b ? a - b : a + P - b;
}

uint64_t pvg_shamir_mul(uint64_t a, uint64_t b)
{
    __uint128_t z = (__uint128_t)a * b; /* < 2^122 */
    uint64_t lo = (uint64_t)(z & P);
    uint64_t hi = (uint64_t)(z >> 61); /* < 2^61 */
    uint64_t s = lo + hi;
    s = (s & P) + (s >> 61);
    return s >= P ? s - P : s;
}

uint64_t pvg_shamir_inv(uint64_t a)
{
    if (a == 0) return 0;
    uint64_t r = 1, b = a, e = P - 2;
    while (e) {
        if (e & 1) r = pvg_shamir_mul(r, b);
        b = pvg_shamir_mul(b, b);
        e >>= 1;
    }
    return r;
}

static pvg_status check_points(const uint64_t *xs, size_t n, pvg_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (xs[i] == 0 || xs[i] >= P)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "share point %zu: expected 1 <= x < 2^61-1, got %llu", i,
                                 (unsigned long long)xs[i]);
        for (size_t j = 0; j < i; j++)
            if (xs[j] == xs[i])
                return pvg_error_set(err, PVG_ERR_INVALID, "share points %zu and %zu repeat x=%llu",
                                     j, i, (unsigned long long)xs[i]);
    }
    return PVG_OK;
}

pvg_status pvg_shamir_split(const uint64_t *secret, size_t m, unsigned t, unsigned n,
                            const uint64_t *xs, pvg_rng *rng, uint64_t *shares, pvg_error *err)
{
    if (!secret || !xs || !rng || !shares || m == 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "shamir split: missing argument");
    if (t < 1 || t > n || n > PVG_SHAMIR_MAX_HOLDERS)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "shamir split: expected 1 <= t <= n <= %d, got t=%u n=%u",
                             PVG_SHAMIR_MAX_HOLDERS, t, n);
    pvg_status st = check_points(xs, n, err);
    if (st != PVG_OK) return st;
    for (size_t j = 0; j < m; j++)
        if (secret[j] >= P)
            return pvg_error_set(err, PVG_ERR_INVALID, "shamir split: element %zu is >= p", j);
    /* coefficients: on the stack for usual thresholds, else guarded heap;
     * wiped either way */
    uint64_t small[64];
    uint64_t *coef = t <= 64 ? small : sodium_malloc(sizeof(uint64_t) * t);
    if (!coef) return pvg_error_set(err, PVG_ERR_NOMEM, "shamir split: out of memory");
    for (size_t j = 0; j < m; j++) {
        coef[0] = secret[j];
        for (unsigned c = 1; c < t; c++)
            coef[c] = pvg_rng_uniform(rng, P);
        for (unsigned i = 0; i < n; i++) {
            /* Horner: f(x) = coef[0] + x (coef[1] + x (...)) */
            uint64_t y = coef[t - 1];
            for (unsigned c = t - 1; c-- > 0;)
                y = pvg_shamir_add(pvg_shamir_mul(y, xs[i]), coef[c]);
            shares[(size_t)i * m + j] = y;
        }
    }
    sodium_memzero(coef, sizeof(uint64_t) * t);
    if (coef != small) sodium_free(coef);
    return PVG_OK;
}

pvg_status pvg_shamir_interpolate_at(const uint64_t *xs, const uint64_t *shares, size_t count,
                                     size_t m, uint64_t x, uint64_t *out, pvg_error *err)
{
    if (!xs || !shares || !out || count == 0 || m == 0 || count > PVG_SHAMIR_MAX_HOLDERS)
        return pvg_error_set(err, PVG_ERR_INVALID, "shamir combine: missing shares");
    if (x >= P) return pvg_error_set(err, PVG_ERR_INVALID, "shamir combine: point >= p");
    pvg_status st = check_points(xs, count, err);
    if (st != PVG_OK) return st;
    for (size_t i = 0; i < count * m; i++)
        if (shares[i] >= P)
            return pvg_error_set(err, PVG_ERR_INVALID, "shamir combine: share %zu value >= p",
                                 i / m);
    for (size_t j = 0; j < m; j++)
        out[j] = 0;
    for (size_t i = 0; i < count; i++) {
        /* Lagrange basis l_i(x) = prod_{k != i} (x - x_k) / (x_i - x_k) */
        uint64_t num = 1, den = 1;
        for (size_t k = 0; k < count; k++) {
            if (k == i) continue;
            num = pvg_shamir_mul(num, pvg_shamir_sub(x, xs[k]));
            den = pvg_shamir_mul(den, pvg_shamir_sub(xs[i], xs[k]));
        }
        uint64_t li = pvg_shamir_mul(num, pvg_shamir_inv(den));
        for (size_t j = 0; j < m; j++)
            out[j] = pvg_shamir_add(out[j], pvg_shamir_mul(li, shares[i * m + j]));
    }
    return PVG_OK;
}

pvg_status pvg_shamir_combine(const uint64_t *xs, const uint64_t *shares, size_t count, size_t m,
                              uint64_t *secret, pvg_error *err)
{
    return pvg_shamir_interpolate_at(xs, shares, count, m, 0, secret, err);
}

pvg_status pvg_shamir_split_key(const uint8_t key[32], unsigned t, unsigned n, const uint64_t *xs,
                                pvg_rng *rng, uint64_t *shares, pvg_error *err)
{
    if (!key) return pvg_error_set(err, PVG_ERR_INVALID, "shamir split: missing key");
    uint64_t elems[PVG_SHAMIR_KEY_ELEMS]; /* wiped below */
    for (int j = 0; j < PVG_SHAMIR_KEY_ELEMS; j++)
        elems[j] = (uint64_t)key[4 * j] | (uint64_t)key[4 * j + 1] << 8 |
                   (uint64_t)key[4 * j + 2] << 16 | (uint64_t)key[4 * j + 3] << 24;
    pvg_status st = pvg_shamir_split(elems, PVG_SHAMIR_KEY_ELEMS, t, n, xs, rng, shares, err);
    sodium_memzero(elems, sizeof elems);
    return st;
}

pvg_status pvg_shamir_combine_key(const uint64_t *xs, const uint64_t *shares, size_t count,
                                  uint8_t key[32], pvg_error *err)
{
    uint64_t elems[PVG_SHAMIR_KEY_ELEMS]; /* wiped below */
    pvg_status st = pvg_shamir_combine(xs, shares, count, PVG_SHAMIR_KEY_ELEMS, elems, err);
    if (st == PVG_OK) {
        for (int j = 0; j < PVG_SHAMIR_KEY_ELEMS && st == PVG_OK; j++) {
            if (elems[j] >> 32) {
                st = pvg_error_set(err, PVG_ERR_CRYPTO,
                                   "shamir combine: recovered key word %d is not 32-bit "
                                   "(forged or mismatched shares)",
                                   j);
                break;
            }
            for (int b = 0; b < 4; b++)
                key[4 * j + b] = (uint8_t)(elems[j] >> (8 * b));
        }
        if (st != PVG_OK) sodium_memzero(key, 32);
    }
    sodium_memzero(elems, sizeof elems);
    return st;
}

/* ---- serialization ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

size_t pvg_shamir_share_size(size_t m)
{
    return PVG_SHAMIR_SHARE_HEADER + 8 * m;
}

size_t pvg_shamir_share_encode(uint64_t x, const uint64_t *values, size_t m, uint8_t *buf,
                               size_t buf_len)
{
    if (!buf || !values || m == 0 || m > UINT32_MAX || buf_len < pvg_shamir_share_size(m) ||
        x == 0 || x >= P)
        return 0;
    for (size_t j = 0; j < m; j++)
        if (values[j] >= P) return 0;
    memcpy(buf, "PVSS", 4);
    buf[4] = 1; /* version */
    buf[5] = 1; /* kind: Shamir */
    buf[6] = buf[7] = 0;
    put64(buf + 8, x);
    put32(buf + 16, (uint32_t)m);
    for (size_t j = 0; j < m; j++)
        put64(buf + 20 + 8 * j, values[j]);
    return pvg_shamir_share_size(m);
}

static pvg_status header_check(const uint8_t *buf, size_t len, size_t hdr, int kind, pvg_error *err)
{
    if (!buf || len < hdr)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, (long long)len,
                                "truncated share: %zu bytes, header needs %zu", len, hdr);
    if (memcmp(buf, "PVSS", 4) != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 0,
                                "bad magic: expected \"PVSS\"");
    if (buf[4] != 1)
        return pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, "share", 0, 0, 4,
                                "share version %u, expected 1", buf[4]);
    if (buf[5] != kind)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 5,
                                "share kind %u, expected %d", buf[5], kind);
    return PVG_OK;
}

pvg_status pvg_shamir_share_decode(const uint8_t *buf, size_t len, uint64_t *x, uint64_t *values,
                                   size_t max_m, size_t *m, pvg_error *err)
{
    pvg_status st = header_check(buf, len, PVG_SHAMIR_SHARE_HEADER, 1, err);
    if (st != PVG_OK) return st;
    if (buf[6] || buf[7])
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 6,
                                "reserved bytes must be zero");
    uint64_t xv = get64(buf + 8);
    if (xv == 0 || xv >= P)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 8,
                                "share point must be in [1, 2^61-1)");
    uint32_t mv = get32(buf + 16);
    if (mv == 0 || mv > max_m)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 16,
                                "share has %u values, expected 1..%zu", mv, max_m);
    if (len != pvg_shamir_share_size(mv))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, (long long)len,
                                "share length %zu, expected %zu for %u values", len,
                                pvg_shamir_share_size(mv), mv);
    for (uint32_t j = 0; j < mv; j++) {
        uint64_t v = get64(buf + 20 + 8 * (size_t)j);
        if (v >= P)
            return pvg_error_set_at(err, PVG_ERR_INVALID, "share", 0, 0, 20 + 8 * (long long)j,
                                    "share value %u is not a field element", j);
        values[j] = v;
    }
    *x = xv;
    *m = mv;
    return PVG_OK;
}
