/*
 * privguide/shamir.h - secret sharing: Shamir t-of-n sharing over the prime
 * field GF(p), p = 2^61 - 1, and additive n-of-n sharing over Z_2^bits,
 * both with a strict, versioned binary serialization of one share.
 *
 * Shamir: a secret is a vector of m field elements; each element gets its
 * own random polynomial of degree t - 1 and every share carries one value
 * per element, all at the same evaluation point x (1 <= x < p, distinct per
 * holder). Any t shares recover the secret; any t - 1 shares are uniformly
 * distributed whatever the secret (information-theoretic hiding).
 * 32-byte secrets (keys, seeds) are carried as 8 elements of 32 bits each
 * (pvg_shamir_split_key / pvg_shamir_combine_key).
 *
 * Additive: n shares in Z_2^bits (1 <= bits <= 64) that sum to the secret;
 * any n - 1 of them are uniform.
 *
 * Randomness comes from a borrowed pvg_rng (production: the secure one).
 * All functions are thread-safe on distinct arguments.
 */
#ifndef PRIVGUIDE_SHAMIR_H
#define PRIVGUIDE_SHAMIR_H

#include <privguide/common.h>
#include <privguide/rng.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* The field modulus, the Mersenne prime 2^61 - 1. */
#define PVG_SHAMIR_PRIME 0x1FFFFFFFFFFFFFFFULL
/* Field elements per 32-byte key share. */
#define PVG_SHAMIR_KEY_ELEMS 8
/* Largest threshold / number of holders accepted. */
#define PVG_SHAMIR_MAX_HOLDERS 65535

/* Field arithmetic helpers (inputs < p; results < p). Exposed for the
 * protocols built on top and for tests. */
uint64_t pvg_shamir_add(uint64_t a, uint64_t b);
uint64_t pvg_shamir_sub(uint64_t a, uint64_t b);
uint64_t pvg_shamir_mul(uint64_t a, uint64_t b);
/* Inverse of a != 0 (Fermat). Returns 0 for a == 0. */
uint64_t pvg_shamir_inv(uint64_t a);

/* Splits secret[0..m) (each element < p) into n shares at the distinct,
 * nonzero points xs[0..n) with threshold t (1 <= t <= n).
 * Output: shares[i * m + j] is holder i's value for element j (caller
 * provides n * m words). Errors: PVG_ERR_INVALID for out-of-range
 * arguments, repeated or zero points, elements >= p. The polynomial
 * coefficients live in sodium_malloc memory and are wiped. */
pvg_status pvg_shamir_split(const uint64_t *secret, size_t m, unsigned t, unsigned n,
                            const uint64_t *xs, pvg_rng *rng, uint64_t *shares,
                            pvg_error *err) PVG_WARN_UNUSED;

/* Recovers secret[0..m) from `count` shares: xs[i] is the point of share i,
 * shares[i * m + j] its value for element j. Uses all `count` shares (count
 * must be >= the threshold used at split time; the result is meaningless
 * otherwise - this cannot be detected without a commitment). Errors:
 * PVG_ERR_INVALID for zero or repeated points or values >= p. */
pvg_status pvg_shamir_combine(const uint64_t *xs, const uint64_t *shares, size_t count, size_t m,
                              uint64_t *secret, pvg_error *err) PVG_WARN_UNUSED;

/* Evaluates, at point x, the polynomial of degree count - 1 through the
 * given shares (Lagrange). Used to check that extra shares are consistent.
 * Same errors as combine. */
pvg_status pvg_shamir_interpolate_at(const uint64_t *xs, const uint64_t *shares, size_t count,
                                     size_t m, uint64_t x, uint64_t *out,
                                     pvg_error *err) PVG_WARN_UNUSED;

/* Splits a 32-byte key into n shares of PVG_SHAMIR_KEY_ELEMS elements each
 * (the key's 8 little-endian 32-bit words). shares: n * 8 words. */
pvg_status pvg_shamir_split_key(const uint8_t key[32], unsigned t, unsigned n, const uint64_t *xs,
                                pvg_rng *rng, uint64_t *shares, pvg_error *err) PVG_WARN_UNUSED;

/* Recovers a 32-byte key from `count` shares of 8 elements. Errors as
 * combine, plus PVG_ERR_CRYPTO when a recovered element is >= 2^32 (a sign
 * of forged or mismatched shares). */
pvg_status pvg_shamir_combine_key(const uint64_t *xs, const uint64_t *shares, size_t count,
                                  uint8_t key[32], pvg_error *err) PVG_WARN_UNUSED;

/* Serialized share: "PVSS" | version 1 | kind 1 (Shamir) | reserved 0,0 |
 * x u64 LE | m u32 LE | m values u64 LE. Size: 20 + 8m bytes. */
#define PVG_SHAMIR_SHARE_HEADER 20
/* Bytes of a serialized Shamir share of m values. */
size_t pvg_shamir_share_size(size_t m);
/* Writes one share into buf (buf_len >= pvg_shamir_share_size(m)).
 * Returns the bytes written or 0 when buf is too small or values are >= p. */
size_t pvg_shamir_share_encode(uint64_t x, const uint64_t *values, size_t m, uint8_t *buf,
                               size_t buf_len) PVG_WARN_UNUSED;
/* Parses one share of exactly len bytes: x and up to max_m values.
 * Errors (PVG_ERR_INVALID with the byte offset in err): bad magic, kind,
 * reserved bytes, x == 0 or x >= p, value >= p, length mismatch;
 * PVG_ERR_UNSUPPORTED for another version. */
pvg_status pvg_shamir_share_decode(const uint8_t *buf, size_t len, uint64_t *x, uint64_t *values,
                                   size_t max_m, size_t *m, pvg_error *err) PVG_WARN_UNUSED;

/* Additive sharing of secret[0..m) mod 2^bits into n >= 2 shares:
 * shares[i * m + j]. Errors: PVG_ERR_INVALID for bits outside 1..64, n < 2,
 * secret values >= 2^bits. */
pvg_status pvg_additive_split(const uint64_t *secret, size_t m, unsigned n, unsigned bits,
                              pvg_rng *rng, uint64_t *shares, pvg_error *err) PVG_WARN_UNUSED;

/* Sums `count` shares of m values mod 2^bits into secret (which may alias
 * nothing). Errors: PVG_ERR_INVALID for bad bits or a value >= 2^bits. */
pvg_status pvg_additive_combine(const uint64_t *shares, size_t count, size_t m, unsigned bits,
                                uint64_t *secret, pvg_error *err) PVG_WARN_UNUSED;

/* Serialized additive share: "PVSS" | version 1 | kind 2 (additive) |
 * bits | reserved 0 | index u32 LE | m u32 LE | m values u64 LE.
 * Size: 16 + 8m. */
#define PVG_ADDITIVE_SHARE_HEADER 16
/* Bytes of a serialized additive share of m values. */
size_t pvg_additive_share_size(size_t m);
/* Writes share number `index` (values < 2^bits) into buf (buf_len >=
 * pvg_additive_share_size(m)). Returns the bytes written, or 0 when buf is
 * too small, bits is outside 1..64 or a value does not fit. */
size_t pvg_additive_share_encode(uint32_t index, unsigned bits, const uint64_t *values, size_t m,
                                 uint8_t *buf, size_t buf_len) PVG_WARN_UNUSED;
/* Parses one additive share of exactly len bytes (up to max_m values).
 * Errors: PVG_ERR_INVALID with the byte offset (truncated, bad magic, kind,
 * bits, reserved byte, count, length, a value >= 2^bits),
 * PVG_ERR_UNSUPPORTED for another version. On error, values may be partly
 * written and the other outputs are untouched. */
pvg_status pvg_additive_share_decode(const uint8_t *buf, size_t len, uint32_t *index,
                                     unsigned *bits, uint64_t *values, size_t max_m, size_t *m,
                                     pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
