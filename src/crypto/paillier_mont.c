/*
 * paillier_mont.c - products modulo n^2 for the homomorphic addition:
 * per-key Montgomery contexts, two kernels and their naive reference,
 * accumulators that chain Montgomery products over many factors, and the
 * public sum.
 *
 * Kernels (chosen per key at creation; tests force either):
 *   MPN   64-bit limbs on GMP's mpn layer. A single product is
 *         mpn_mul_n + mpn_tdiv_qr; a chain (accumulator, sum) is Montgomery
 *         (mpn_mul_n, then REDC by one mpn_addmul_1 per limb), R = 2^(64 L).
 *
 * Chains: x = c_1, then x = x * c_i / R for each later factor (one
 * Montgomery product each; the factors are never converted), so after k
 * factors x = prod / R^(k-1); one product by R^k mod M (a short powm)
 * gives the result. A single product a*b is Barrett (IFMA: three plain
 * products, see barrett_mulmod) or a plain product and division (MPN).
 *   IFMA  AVX-512 IFMA almost-Montgomery multiplication (AMM) on 52-bit
 *         digits held in 64-bit lanes, D digits (a multiple of 8, with
 *         2^(52 D) > 4 n^2), R = 2^(52 D). Word-by-word: per digit a_i of
 *         a, X += a_i*b + q*M (low halves), q = X_0 * k0 mod 2^52, the
 *         vector is shifted down one digit and the high halves added.
 *         Lanes are normalised only at the end. Inputs below 2M give an
 *         output below 2M (since 4M < R), so chains never subtract;
 *         the last step reduces fully. A single product is Barrett
 *         reduction with mu = floor(2^(104 k) / M) per key (k digits of
 *         M), on plain products in blocks of 8 digits (mul_blocks).
 *         Selected when the CPU reports avx512ifma (and the OS saves zmm
 *         state) at run time.
 *   NAIVE mpz_mul + mpz_mod: the reference the tests compare both with.
 *
 * Ciphertexts are public: these kernels need not be constant-time (the
 * Montgomery final subtractions are branch-free all the same; Barrett's
 * take as many as needed, at most three). The decryption exponentiation,
 * whose exponents are secret, uses only the AMM with masked table reads.
 *
 * Shapes at a 2048-bit n: M = n^2 has 4096 bits, L = 64 limbs, D = 80
 * digits (10 zmm vectors); Barrett: k = 79 digits, vectors of bD = 80.
 */
#include "crypto/paillier_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HE_HAVE_IFMA_BUILD 1
#else
#define HE_HAVE_IFMA_BUILD 0
#endif

#define MASK52 ((UINT64_C(1) << 52) - 1)
/* Largest shapes: n^2 of 2 * PVG_PAILLIER_MAX_BITS bits. */
#define HE_MAX_L ((2 * PVG_PAILLIER_MAX_BITS) / 64 + 1)
#define HE_MAX_D ((((2 * PVG_PAILLIER_MAX_BITS + 2) + 51) / 52 + 7) / 8 * 8)
#define HE_MAX_V (HE_MAX_D / 8)

struct pvg_he_mont {
    pvg_he_kernel kernel; /* in use for this key */
    int ifma_ok;          /* the IFMA tables exist and the CPU runs them */
    size_t L;             /* limbs of M */
    mp_limb_t *M;         /* M = n^2, L limbs */
    mp_limb_t ninv;       /* -M^-1 mod 2^64 */
    mp_limb_t *r2;        /* (2^(64 L))^2 mod M, L limbs */
    size_t D;             /* 52-bit digits, multiple of 8 */
    uint64_t *Md;         /* M in digits */
    uint64_t *r2d;        /* (2^(52 D))^2 mod M in digits */
    uint64_t k0;          /* -M^-1 mod 2^52 */
    size_t bk;            /* Barrett: digits of M, 2^(52(bk-1)) <= M < 2^(52 bk) */
    size_t bD;            /* Barrett vectors' digits: bk + 1 rounded up to 8 */
    uint64_t *Mbdz;       /* M in bD digits, 8 zero digits either side */
    uint64_t *mudz;       /* mu = floor(2^(104 bk) / M), the same layout */
};

/* ---- conversions ---------------------------------------------------------------- */

/* 16 digits of 52 bits are exactly 13 limbs: conversions go block by
 * block with constant shifts (straight-line code after unrolling). */
#define BLK_D 16
#define BLK_L 13
#define HE_MAX_BLK ((HE_MAX_D + BLK_D - 1) / BLK_D + 1)

static inline void block_to_digits(uint64_t *d, const mp_limb_t *x)
{
#pragma GCC unroll 16
    for (unsigned j = 0; j < BLK_D; j++) {
        const unsigned bit = 52 * j, limb = bit / 64, off = bit % 64;
        uint64_t v = (uint64_t)x[limb] >> off;
        if (off > 12) v |= (uint64_t)x[limb + 1] << (64 - off);
        d[j] = v & MASK52;
    }
}

static inline void block_from_digits(mp_limb_t *x, const uint64_t *d)
{
#pragma GCC unroll 16
    for (unsigned k = 0; k < BLK_L; k++)
        x[k] = 0;
#pragma GCC unroll 16
    for (unsigned j = 0; j < BLK_D; j++) {
        const unsigned bit = 52 * j, limb = bit / 64, off = bit % 64;
        x[limb] |= (mp_limb_t)(d[j] << off);
        if (off > 12) x[limb + 1] |= (mp_limb_t)(d[j] >> (64 - off));
    }
}

/* x (L limbs; fewer than the digits hold: the rest is 0) -> D digits. */
static void to_digits(uint64_t *d, size_t D, const mp_limb_t *x, size_t L)
{
    size_t nb = (D + BLK_D - 1) / BLK_D, b = 0;
    /* whole blocks straight from x, the tail through a zero-padded copy */
    for (; b < nb && (b + 1) * BLK_L <= L && (b + 1) * BLK_D <= D; b++)
        block_to_digits(d + b * BLK_D, x + b * BLK_L);
    if (b == nb) return;
    mp_limb_t xb[HE_MAX_BLK * BLK_L];
    uint64_t db[HE_MAX_BLK * BLK_D];
    size_t from = b * BLK_L, nl = L > from ? L - from : 0, need = (nb - b) * BLK_L;
    if (nl > need) nl = need;
    if (nl) memcpy(xb, x + from, nl * sizeof *xb);
    memset(xb + nl, 0, (need - nl) * sizeof *xb);
    for (size_t k = 0; k < nb - b; k++)
        block_to_digits(db + k * BLK_D, xb + k * BLK_L);
    memcpy(d + b * BLK_D, db, (D - b * BLK_D) * sizeof *d);
}

/* D digits (each < 2^52) -> L limbs; digits beyond the limbs must be 0. */
static void from_digits(mp_limb_t *x, size_t L, const uint64_t *d, size_t D)
{
    size_t nb = (D + BLK_D - 1) / BLK_D;
    mp_limb_t xb[HE_MAX_BLK * BLK_L];
    uint64_t db[HE_MAX_BLK * BLK_D];
    memcpy(db, d, D * sizeof *d);
    memset(db + D, 0, (nb * BLK_D - D) * sizeof *db);
    for (size_t b = 0; b < nb; b++)
        block_from_digits(xb + b * BLK_L, db + b * BLK_D);
    if (L <= nb * BLK_L) {
        memcpy(x, xb, L * sizeof *x);
    } else {
        memcpy(x, xb, nb * BLK_L * sizeof *x);
        memset(x + nb * BLK_L, 0, (L - nb * BLK_L) * sizeof *x);
    }
}

/* x (the limbs of an mpz in [0, M)) -> L limbs, zero-padded. */
static void limbs_of(mp_limb_t *dst, size_t L, const mpz_t x)
{
    size_t n = mpz_size(x);
    if (n > L) n = L;
    if (n) memcpy(dst, mpz_limbs_read(x), n * sizeof *dst);
    if (n < L) memset(dst + n, 0, (L - n) * sizeof *dst);
}

static void mpz_of_limbs(mpz_t out, const mp_limb_t *x, size_t L)
{
    mp_limb_t *w = mpz_limbs_write(out, (mp_size_t)L);
    memcpy(w, x, L * sizeof *w);
    mpz_limbs_finish(out, (mp_size_t)L);
}

/* x (L limbs) with a carry-out bit `hi`: the value is below 2M; reduce to
 * [0, M) without branches. tmp: L limbs. */
static void final_sub(mp_limb_t *x, mp_limb_t hi, const mp_limb_t *M, size_t L, mp_limb_t *tmp)
{
    mp_limb_t borrow = mpn_sub_n(tmp, x, M, (mp_size_t)L);
    mp_limb_t use = hi | (borrow ^ 1);
    mpn_cnd_swap(use, x, tmp, (mp_size_t)L);
}

/* 1 when c is a reduced residue in limbs: 0 <= c < M. */
static int in_range(const pvg_he_mont *m, const mpz_t c)
{
    return mpz_sgn(c) >= 0 && mpz_size(c) <= m->L &&
           (mpz_size(c) < m->L || mpn_cmp(mpz_limbs_read(c), m->M, (mp_size_t)m->L) < 0);
}

/* ---- MPN kernel ----------------------------------------------------------------- */

/* r = a*b*2^(-64L) mod M for a, b < M; r < M. t: 2L limbs, c: L limbs;
 * r may alias a or b. */
static void mont_mul_mpn(const pvg_he_mont *m, mp_limb_t *r, const mp_limb_t *a, const mp_limb_t *b,
                         mp_limb_t *t, mp_limb_t *c)
{
    size_t L = m->L;
    mpn_mul_n(t, a, b, (mp_size_t)L);
    for (size_t i = 0; i < L; i++)
        c[i] = mpn_addmul_1(t + i, m->M, (mp_size_t)L, t[i] * m->ninv);
    mp_limb_t hi = mpn_add_n(r, t + L, c, (mp_size_t)L);
    final_sub(r, hi, m->M, L, c);
}

/* ---- IFMA kernel ---------------------------------------------------------------- */

#if HE_HAVE_IFMA_BUILD
#define HE_IFMA_TARGET __attribute__((target("avx512f,avx512ifma")))

/* The AMM loop for V vectors (V a constant at the hot call site so the
 * accumulators stay in registers). r = a*b*2^(-52 D) mod M, < 2M, digits
 * normalised; r may alias a or b. X holds the running sum, T the high
 * halves of this step's products (added after the shift). Digit 0 is
 * tracked in a scalar: x0 = lane 0 + the carry of the previous step + the
 * low half of a_i*b_0, so q is known without waiting for the vector
 * product; lane 0 itself is dropped by the shift, its carry kept in
 * `carry` and added to the next step's x0 (and once after the loop). */
static inline __attribute__((always_inline)) HE_IFMA_TARGET void
amm_loop(uint64_t *r, const uint64_t *a, const uint64_t *b, const uint64_t *mod, uint64_t k0,
         size_t V, __m512i *X, __m512i *T)
{
    const __m512i zero = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (size_t v = 0; v < V; v++)
        X[v] = zero;
    const uint64_t m0 = mod[0], b0 = b[0];
    uint64_t carry = 0;
    for (size_t i = 0; i < 8 * V; i++) {
        const uint64_t ai_s = a[i];
        const __m512i ai = _mm512_set1_epi64((long long)ai_s);
        const uint64_t x0 = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(X[0])) + carry +
                            ((ai_s * b0) & MASK52);
        const uint64_t q = (x0 * k0) & MASK52;
        carry = (x0 + ((q * m0) & MASK52)) >> 52;
        const __m512i qv = _mm512_set1_epi64((long long)q);
#pragma GCC unroll 16
        for (size_t v = 0; v < V; v++) {
            const __m512i bv = _mm512_loadu_si512(b + 8 * v), mv = _mm512_loadu_si512(mod + 8 * v);
            T[v] = _mm512_madd52hi_epu64(zero, ai, bv);
            X[v] = _mm512_madd52lo_epu64(X[v], ai, bv);
            X[v] = _mm512_madd52lo_epu64(X[v], qv, mv);
            T[v] = _mm512_madd52hi_epu64(T[v], qv, mv);
        }
#pragma GCC unroll 16
        for (size_t v = 0; v + 1 < V; v++)
            X[v] = _mm512_add_epi64(_mm512_alignr_epi64(X[v + 1], X[v], 1), T[v]);
        X[V - 1] = _mm512_add_epi64(_mm512_alignr_epi64(zero, X[V - 1], 1), T[V - 1]);
    }
    uint64_t out[HE_MAX_D];
#pragma GCC unroll 16
    for (size_t v = 0; v < V; v++)
        _mm512_storeu_si512(out + 8 * v, X[v]);
    uint64_t c = carry;
    for (size_t j = 0; j < 8 * V; j++) {
        uint64_t t = out[j] + c;
        r[j] = t & MASK52;
        c = t >> 52;
    }
}

static HE_IFMA_TARGET void amm_ifma_10(uint64_t *r, const uint64_t *a, const uint64_t *b,
                                       const uint64_t *mod, uint64_t k0)
{
    __m512i X[10], T[10];
    amm_loop(r, a, b, mod, k0, 10, X, T);
}

/* V = 5: products mod p^2 and q^2 in decryption at 2048-bit keys. */
static HE_IFMA_TARGET void amm_ifma_5(uint64_t *r, const uint64_t *a, const uint64_t *b,
                                      const uint64_t *mod, uint64_t k0)
{
    __m512i X[5], T[5];
    amm_loop(r, a, b, mod, k0, 5, X, T);
}

static HE_IFMA_TARGET void amm_ifma_any(uint64_t *r, const uint64_t *a, const uint64_t *b,
                                        const uint64_t *mod, uint64_t k0, size_t V)
{
    __m512i X[HE_MAX_V], T[HE_MAX_V];
    amm_loop(r, a, b, mod, k0, V, X, T);
}

/* Two independent AMMs in one loop (the p^2 and q^2 halves of a
 * decryption): the two dependency chains overlap. Same V for both. */
static inline __attribute__((always_inline)) HE_IFMA_TARGET void
amm2_loop(uint64_t *r1, const uint64_t *a1, const uint64_t *b1, const uint64_t *mod1, uint64_t k01,
          uint64_t *r2, const uint64_t *a2, const uint64_t *b2, const uint64_t *mod2, uint64_t k02,
          size_t V, __m512i *X1, __m512i *T1, __m512i *X2, __m512i *T2)
{
    const __m512i zero = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (size_t v = 0; v < V; v++)
        X1[v] = X2[v] = zero;
    const uint64_t m01 = mod1[0], b01 = b1[0], m02 = mod2[0], b02 = b2[0];
    uint64_t carry1 = 0, carry2 = 0;
    for (size_t i = 0; i < 8 * V; i++) {
        const uint64_t ai1_s = a1[i], ai2_s = a2[i];
        const __m512i ai1 = _mm512_set1_epi64((long long)ai1_s);
        const __m512i ai2 = _mm512_set1_epi64((long long)ai2_s);
        const uint64_t x01 = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(X1[0])) + carry1 +
                             ((ai1_s * b01) & MASK52);
        const uint64_t x02 = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(X2[0])) + carry2 +
                             ((ai2_s * b02) & MASK52);
        const uint64_t q1 = (x01 * k01) & MASK52, q2 = (x02 * k02) & MASK52;
        carry1 = (x01 + ((q1 * m01) & MASK52)) >> 52;
        carry2 = (x02 + ((q2 * m02) & MASK52)) >> 52;
        const __m512i qv1 = _mm512_set1_epi64((long long)q1);
        const __m512i qv2 = _mm512_set1_epi64((long long)q2);
#pragma GCC unroll 16
        for (size_t v = 0; v < V; v++) {
            const __m512i bv1 = _mm512_loadu_si512(b1 + 8 * v),
                          mv1 = _mm512_loadu_si512(mod1 + 8 * v);
            const __m512i bv2 = _mm512_loadu_si512(b2 + 8 * v),
                          mv2 = _mm512_loadu_si512(mod2 + 8 * v);
            T1[v] = _mm512_madd52hi_epu64(zero, ai1, bv1);
            T2[v] = _mm512_madd52hi_epu64(zero, ai2, bv2);
            X1[v] = _mm512_madd52lo_epu64(X1[v], ai1, bv1);
            X2[v] = _mm512_madd52lo_epu64(X2[v], ai2, bv2);
            X1[v] = _mm512_madd52lo_epu64(X1[v], qv1, mv1);
            X2[v] = _mm512_madd52lo_epu64(X2[v], qv2, mv2);
            T1[v] = _mm512_madd52hi_epu64(T1[v], qv1, mv1);
            T2[v] = _mm512_madd52hi_epu64(T2[v], qv2, mv2);
        }
#pragma GCC unroll 16
        for (size_t v = 0; v + 1 < V; v++) {
            X1[v] = _mm512_add_epi64(_mm512_alignr_epi64(X1[v + 1], X1[v], 1), T1[v]);
            X2[v] = _mm512_add_epi64(_mm512_alignr_epi64(X2[v + 1], X2[v], 1), T2[v]);
        }
        X1[V - 1] = _mm512_add_epi64(_mm512_alignr_epi64(zero, X1[V - 1], 1), T1[V - 1]);
        X2[V - 1] = _mm512_add_epi64(_mm512_alignr_epi64(zero, X2[V - 1], 1), T2[V - 1]);
    }
    uint64_t out1[HE_MAX_D], out2[HE_MAX_D];
#pragma GCC unroll 16
    for (size_t v = 0; v < V; v++) {
        _mm512_storeu_si512(out1 + 8 * v, X1[v]);
        _mm512_storeu_si512(out2 + 8 * v, X2[v]);
    }
    uint64_t c1 = carry1, c2 = carry2;
    for (size_t j = 0; j < 8 * V; j++) {
        uint64_t t1 = out1[j] + c1, t2 = out2[j] + c2;
        r1[j] = t1 & MASK52;
        r2[j] = t2 & MASK52;
        c1 = t1 >> 52;
        c2 = t2 >> 52;
    }
}

static HE_IFMA_TARGET void amm2_ifma_5(uint64_t *r1, const uint64_t *a1, const uint64_t *b1,
                                       const uint64_t *mod1, uint64_t k01, uint64_t *r2,
                                       const uint64_t *a2, const uint64_t *b2, const uint64_t *mod2,
                                       uint64_t k02)
{
    __m512i X1[5], T1[5], X2[5], T2[5];
    amm2_loop(r1, a1, b1, mod1, k01, r2, a2, b2, mod2, k02, 5, X1, T1, X2, T2);
}

static HE_IFMA_TARGET void amm2_ifma_any(uint64_t *r1, const uint64_t *a1, const uint64_t *b1,
                                         const uint64_t *mod1, uint64_t k01, uint64_t *r2,
                                         const uint64_t *a2, const uint64_t *b2,
                                         const uint64_t *mod2, uint64_t k02, size_t V)
{
    __m512i X1[HE_MAX_V], T1[HE_MAX_V], X2[HE_MAX_V], T2[HE_MAX_V];
    amm2_loop(r1, a1, b1, mod1, k01, r2, a2, b2, mod2, k02, V, X1, T1, X2, T2);
}

/* The plain products for Barrett (no reduction, so no serial dependency
 * on a quotient digit: half the multiply-adds of an AMM). Blocks of 8
 * digits of a: within block s, accumulator v holds the fixed columns
 * 8(s + v) .. 8(s + v) + 7 (v = 0..V: the product reaches one vector past
 * b), so nothing shifts inside a block: a_(8s+t) * b_j lands in column
 * 8s + t + j, lane l of accumulator v for j = 8v + l - t, which is an
 * unaligned load of b at 8v - t (b has 8 zero digits on each side); the
 * high half lands one column up, at load 8v - t - 1, the same load as the
 * low half of the next digit. Low halves go to X, high halves to Y (two
 * independent chains). After the block, accumulator 0 is final: its 8
 * columns leave through a scalar carry chain and the accumulators are
 * renamed down by one. (Shifting the accumulators one lane per digit, as
 * the AMM does, puts a multiply-add, a lane shift and an add on the
 * critical path of every digit and runs at the same speed with two
 * vectors as with ten.) Column sums stay below 2 * 8 (V + 1) * 2^52 <
 * 2^64, so lanes never overflow.
 *
 * Windows leave out accumulators (absolute column blocks c = s + v) whose
 * columns are not wanted, with all their multiply-adds:
 *   HE_MUL_FULL  every column: r[0, 8 (nblk + V + 1)) (a's digits beyond
 *                8 nblk are zero, so nothing lies above).
 *   HE_MUL_HIGH  only blocks c >= w/8, so every column >= w: r[8 (w/8),
 *                8 (nblk + V + 1)); below that unspecified. Exactly the
 *                digit-product halves landing in a column below 8 (w/8)
 *                <= w are dropped.
 *   HE_MUL_LOW   only blocks c <= w/8 (nblk = w/8 + 1), so every column
 *                <= w: r[0, 8 nblk). */
enum { HE_MUL_FULL, HE_MUL_HIGH, HE_MUL_LOW };

static inline __attribute__((always_inline)) HE_IFMA_TARGET void
mul_blocks(uint64_t *r, const uint64_t *a, const uint64_t *bz, size_t V, size_t nblk, int mode,
           size_t w, __m512i *X, __m512i *Y)
{
    const __m512i zero = _mm512_setzero_si512();
    const uint64_t *b = bz + 8;
    const size_t cw = w / 8;
#pragma GCC unroll 17
    for (size_t v = 0; v <= V; v++)
        X[v] = Y[v] = zero;
    uint64_t carry = 0;
    for (size_t s = 0; s < nblk; s++) {
        /* accumulators vlo..vhi run in this block (constant within it) */
        const size_t vlo = mode == HE_MUL_HIGH && cw > s ? cw - s : 0;
        const size_t vhi = mode == HE_MUL_LOW ? cw - s : V;
        const uint64_t *as = a + 8 * s;
        const __m512i a0 = _mm512_set1_epi64((long long)as[0]);
#pragma GCC unroll 17
        for (size_t v = 0; v <= V; v++)
            if (v >= vlo && v <= vhi)
                X[v] = _mm512_madd52lo_epu64(X[v], a0, _mm512_loadu_si512(b + 8 * v));
#pragma GCC unroll 8
        for (size_t t = 1; t <= 8; t++) {
            const __m512i ap = _mm512_set1_epi64((long long)as[t - 1]);
            const __m512i ac = _mm512_set1_epi64((long long)(t < 8 ? as[t] : 0));
#pragma GCC unroll 17
            for (size_t v = 0; v <= V; v++) {
                if (v >= vlo && v <= vhi) {
                    __m512i l = _mm512_loadu_si512(b + 8 * v - t);
                    /* one (line-splitting) load for both products: keep
                     * the compiler from folding it into each */
                    __asm__("" : "+v"(l));
                    Y[v] = _mm512_madd52hi_epu64(Y[v], ap, l);
                    if (t < 8) X[v] = _mm512_madd52lo_epu64(X[v], ac, l);
                }
            }
        }
        if (vlo == 0) { /* block s ran: its columns are wanted and final */
            uint64_t o[8];
            _mm512_storeu_si512(o, _mm512_add_epi64(X[0], Y[0]));
            for (size_t l = 0; l < 8; l++) {
                const uint64_t t = o[l] + carry;
                r[8 * s + l] = t & MASK52;
                carry = t >> 52;
            }
        }
#pragma GCC unroll 17
        for (size_t v = 0; v < V; v++) {
            X[v] = X[v + 1];
            Y[v] = Y[v + 1];
        }
        X[V] = Y[V] = zero;
    }
    if (mode == HE_MUL_LOW) return;
    uint64_t out[HE_MAX_D + 8];
#pragma GCC unroll 17
    for (size_t v = 0; v <= V; v++)
        _mm512_storeu_si512(out + 8 * v, _mm512_add_epi64(X[v], Y[v]));
    for (size_t j = 0; j < 8 * (V + 1); j++) {
        const uint64_t t = out[j] + carry;
        r[8 * nblk + j] = t & MASK52;
        carry = t >> 52;
    }
}

/* The three products of a Barrett reduction (barrett_mulmod), V = 10
 * (2048-bit keys) with the accumulators in registers. */
static HE_IFMA_TARGET void mul_full_10(uint64_t *r, const uint64_t *a, const uint64_t *bz,
                                       size_t nblk)
{
    __m512i X[11], Y[11];
    mul_blocks(r, a, bz, 10, nblk, HE_MUL_FULL, 0, X, Y);
}

static HE_IFMA_TARGET void mul_high_10(uint64_t *r, const uint64_t *a, const uint64_t *bz,
                                       size_t nblk, size_t w)
{
    __m512i X[11], Y[11];
    mul_blocks(r, a, bz, 10, nblk, HE_MUL_HIGH, w, X, Y);
}

static HE_IFMA_TARGET void mul_low_10(uint64_t *r, const uint64_t *a, const uint64_t *bz,
                                      size_t nblk, size_t w)
{
    __m512i X[11], Y[11];
    mul_blocks(r, a, bz, 10, nblk, HE_MUL_LOW, w, X, Y);
}

static HE_IFMA_TARGET void mul_blocks_any(uint64_t *r, const uint64_t *a, const uint64_t *bz,
                                          size_t V, size_t nblk, int mode, size_t w)
{
    __m512i X[HE_MAX_V + 1], Y[HE_MAX_V + 1];
    mul_blocks(r, a, bz, V, nblk, mode, w, X, Y);
}

static int cpu_has_ifma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512ifma");
}
#else
static int cpu_has_ifma(void)
{
    return 0;
}
#endif

/* r = a*b*2^(-52 D) mod M (almost: < 2M) for digit vectors a, b < 2M. */
static void amm(const pvg_he_mont *m, uint64_t *r, const uint64_t *a, const uint64_t *b)
{
#if HE_HAVE_IFMA_BUILD
    size_t V = m->D / 8;
    if (V == 10)
        amm_ifma_10(r, a, b, m->Md, m->k0);
    else if (V == 5)
        amm_ifma_5(r, a, b, m->Md, m->k0);
    else
        amm_ifma_any(r, a, b, m->Md, m->k0, V);
#else
    (void)m, (void)r, (void)a, (void)b;
#endif
}

/* Two AMMs, for contexts of the same digit count (interleaved on IFMA). */
static void amm_pair(const pvg_he_mont *m1, uint64_t *r1, const uint64_t *a1, const uint64_t *b1,
                     const pvg_he_mont *m2, uint64_t *r2, const uint64_t *a2, const uint64_t *b2)
{
#if HE_HAVE_IFMA_BUILD
    size_t V = m1->D / 8;
    if (V == 5)
        amm2_ifma_5(r1, a1, b1, m1->Md, m1->k0, r2, a2, b2, m2->Md, m2->k0);
    else
        amm2_ifma_any(r1, a1, b1, m1->Md, m1->k0, r2, a2, b2, m2->Md, m2->k0, V);
#else
    amm(m1, r1, a1, b1);
    amm(m2, r2, a2, b2);
#endif
}

/* Digits of a value below 2M -> the reduced limbs in [0, M). */
static void digits_out(const pvg_he_mont *m, mp_limb_t *x, const uint64_t *d, mp_limb_t *tmp)
{
    /* the value may need one bit past L limbs */
    mp_limb_t wide[HE_MAX_L + 1];
    from_digits(wide, m->L + 1, d, m->D);
    memcpy(x, wide, m->L * sizeof *x);
    final_sub(x, wide[m->L], m->M, m->L, tmp);
}

/* out = a*b mod M (L limbs, reduced) for digit vectors a, b < M of bD
 * digits: Barrett reduction (HAC 14.42) in base b = 2^52 with k = bk,
 * mu = floor(b^(2k) / M) precomputed per key:
 *   x  = a*b < M^2 < b^(2k)                       (full product)
 *   q1 = floor(x / b^(k-1)) < b^(k+1)
 *   q3 = floor(q1*mu / b^(k+1))                   (high part only)
 *   r  = x - q3*M, computed mod b^(k+1)           (low part only)
 * The exact q3 satisfies q - 2 <= q3 <= q for q = floor(x / M) (HAC
 * 14.43). The high part leaves out what lands in a column below
 * 8 floor((k-1)/8) <= k - 1 (mul_blocks, HE_MUL_HIGH): halves of digit
 * products, each below 2^52, so below b^(k-1) in value; q1 and mu have at
 * most k + 1 digits each, so there are fewer than 2 (k+1)^2 < 2^20 such
 * halves (k <= 632) and their sum is below 2^20 b^(k-1) < b^k < b^(k+1):
 * q3 drops by at most 1 more, q - 3 <= q3 <= q. Hence
 * 0 <= r = x - q3 M < 4M < 4 b^k <= b^(k+1), exact mod b^(k+1), and at
 * most three subtractions of M reduce it (ciphertexts are public: the
 * number taken may show). About the multiply-adds of one AMM, against two
 * AMMs for a*b/R then *R^2. */
static void barrett_mulmod(const pvg_he_mont *m, mp_limb_t *out, const uint64_t *ad,
                           const uint64_t *bdz)
{
#if HE_HAVE_IFMA_BUILD
    const size_t k = m->bk, D = m->bD, V = D / 8, L = m->L;
    uint64_t x[2 * HE_MAX_D + 8], q2[2 * HE_MAX_D + 8], p[HE_MAX_D + 8], rd[HE_MAX_D];
    /* a < M < b^k: k digits (blocks of 8); q1 and q3 have at most k + 1
     * digits (q3 <= q < b^k in fact); x and q2 are written up to
     * 8 (blocks + V + 1) >= 2k + 10, past every digit read from them */
    const size_t nk = (k + 7) / 8, nk1 = (k + 1 + 7) / 8;
    if (V == 10) {
        mul_full_10(x, ad, bdz, nk);
        mul_high_10(q2, x + k - 1, m->mudz, nk1, k - 1);
        mul_low_10(p, q2 + k + 1, m->Mbdz, k / 8 + 1, k);
    } else {
        mul_blocks_any(x, ad, bdz, V, nk, HE_MUL_FULL, 0);
        mul_blocks_any(q2, x + k - 1, m->mudz, V, nk1, HE_MUL_HIGH, k - 1);
        mul_blocks_any(p, q2 + k + 1, m->Mbdz, V, k / 8 + 1, HE_MUL_LOW, k);
    }
    uint64_t borrow = 0;
    for (size_t j = 0; j <= k; j++) {
        const uint64_t t = x[j] - p[j] - borrow; /* in (-2^53, 2^52) */
        rd[j] = t & MASK52;
        borrow = t >> 63;
    }
    memset(rd + k + 1, 0, (D - k - 1) * sizeof *rd);
    mp_limb_t w[HE_MAX_L + 1];
    from_digits(w, L + 1, rd, D); /* r < 4M: fits L limbs and 2 bits */
    for (int s = 0; s < 3 && (w[L] || mpn_cmp(w, m->M, (mp_size_t)L) >= 0); s++)
        w[L] -= mpn_sub_n(w, w, m->M, (mp_size_t)L);
    memcpy(out, w, L * sizeof *out);
#else
    (void)m, (void)out, (void)ad, (void)bdz;
#endif
}

/* ---- context ------------------------------------------------------------------- */

static mp_limb_t limb_inverse(mp_limb_t a0)
{
    mp_limb_t x = a0; /* a0 * a0 == 1 mod 8 for odd a0: 3 correct bits */
    for (int i = 0; i < 6; i++)
        x *= 2 - a0 * x;
    return x;
}

void pvg_he_mont_free(pvg_he_mont *m)
{
    if (!m) return;
    /* contexts mod p^2 and q^2 hold secrets */
    if (m->M) sodium_memzero(m->M, m->L * sizeof *m->M);
    if (m->r2) sodium_memzero(m->r2, m->L * sizeof *m->r2);
    if (m->Md) sodium_memzero(m->Md, m->D * sizeof *m->Md);
    if (m->r2d) sodium_memzero(m->r2d, m->D * sizeof *m->r2d);
    if (m->Mbdz) sodium_memzero(m->Mbdz, (m->bD + 16) * sizeof *m->Mbdz);
    if (m->mudz) sodium_memzero(m->mudz, (m->bD + 16) * sizeof *m->mudz);
    m->ninv = 0;
    m->k0 = 0;
    free(m->M);
    free(m->r2);
    free(m->Md);
    free(m->r2d);
    free(m->Mbdz);
    free(m->mudz);
    free(m);
}

pvg_he_mont *pvg_he_mont_new(const mpz_t M)
{
    if (mpz_sgn(M) <= 0 || mpz_even_p(M) || mpz_size(M) > HE_MAX_L) return NULL;
    pvg_he_mont *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->L = mpz_size(M);
    size_t bits = mpz_sizeinbase(M, 2);
    m->D = ((bits + 2 + 51) / 52 + 7) / 8 * 8;
    m->M = malloc(m->L * sizeof *m->M);
    m->r2 = malloc(m->L * sizeof *m->r2);
    m->Md = malloc(m->D * sizeof *m->Md);
    m->r2d = malloc(m->D * sizeof *m->r2d);
    m->bk = (bits + 51) / 52;
    m->bD = (m->bk + 1 + 7) / 8 * 8;
    m->Mbdz = calloc(m->bD + 16, sizeof *m->Mbdz);
    m->mudz = calloc(m->bD + 16, sizeof *m->mudz);
    mpz_t t;
    mpz_init(t);
    if (!m->M || !m->r2 || !m->Md || !m->r2d || !m->Mbdz || !m->mudz || m->D > HE_MAX_D ||
        m->bD > HE_MAX_D) {
        mpz_clear(t);
        pvg_he_mont_free(m);
        return NULL;
    }
    limbs_of(m->M, m->L, M);
    m->ninv = (mp_limb_t)0 - limb_inverse(m->M[0]);
    mpz_setbit(t, 2 * 64 * m->L);
    mpz_mod(t, t, M);
    limbs_of(m->r2, m->L, t);
    to_digits(m->Md, m->D, m->M, m->L);
    mpz_set_ui(t, 0);
    mpz_setbit(t, 2 * 52 * m->D);
    mpz_mod(t, t, M);
    mp_limb_t tl[HE_MAX_L];
    limbs_of(tl, m->L, t);
    to_digits(m->r2d, m->D, tl, m->L);
    m->k0 = (uint64_t)m->ninv & MASK52;
    to_digits(m->Mbdz + 8, m->bD, m->M, m->L);
    mpz_set_ui(t, 0);
    mpz_setbit(t, 2 * 52 * m->bk);
    mpz_fdiv_q(t, t, M); /* mu < 2^(52 (bk + 1)): bD digits */
    to_digits(m->mudz + 8, m->bD, mpz_limbs_read(t), mpz_size(t));
    mpz_clear(t);
    m->ifma_ok = cpu_has_ifma();
    m->kernel = m->ifma_ok ? PVG_HE_KERNEL_IFMA : PVG_HE_KERNEL_MPN;
    return m;
}

pvg_he_kernel pvg_he_mont_kernel(const pvg_he_mont *m)
{
    return m->kernel;
}

int pvg_he_mont_set_kernel(pvg_he_mont *m, pvg_he_kernel k)
{
    if (k == PVG_HE_KERNEL_IFMA && !m->ifma_ok) return 0;
    m->kernel = k;
    return 1;
}

int pvg_he_cpu_has_ifma(void)
{
    return cpu_has_ifma();
}

const char *pvg_he_kernel_name(pvg_he_kernel k)
{
    switch (k) {
    case PVG_HE_KERNEL_IFMA:
        return "avx512ifma";
    case PVG_HE_KERNEL_MPN:
        return "mpn";
    default:
        return "naive";
    }
}

/* ---- one product ---------------------------------------------------------------- */

void pvg_he_mulmod_naive(const pvg_paillier_pub *pub, mpz_t out, const mpz_t a, const mpz_t b)
{
    mpz_t t;
    mpz_init(t);
    mpz_mul(t, a, b);
    mpz_mod(out, t, pub->n2);
    mpz_clear(t);
}

void pvg_he_mulmod(const pvg_paillier_pub *pub, mpz_t out, const mpz_t a, const mpz_t b)
{
    const pvg_he_mont *m = pub->mont;
    if (!m || m->kernel == PVG_HE_KERNEL_NAIVE || !in_range(m, a) || !in_range(m, b)) {
        pvg_he_mulmod_naive(pub, out, a, b);
        return;
    }
    size_t L = m->L;
    mp_limb_t al[HE_MAX_L], bl[HE_MAX_L], t[2 * HE_MAX_L], q[HE_MAX_L + 1];
    if (m->kernel == PVG_HE_KERNEL_IFMA) {
        uint64_t ad[HE_MAX_D], bdz[HE_MAX_D + 16];
        to_digits(ad, m->bD, mpz_limbs_read(a), mpz_size(a));
        memset(bdz, 0, 8 * sizeof *bdz); /* b with 8 zero digits either side */
        to_digits(bdz + 8, m->bD, mpz_limbs_read(b), mpz_size(b));
        memset(bdz + 8 + m->bD, 0, 8 * sizeof *bdz);
        mp_limb_t *w = mpz_limbs_write(out, (mp_size_t)L);
        barrett_mulmod(m, w, ad, bdz);
        mpz_limbs_finish(out, (mp_size_t)L);
        return;
    } else {
        limbs_of(al, L, a);
        limbs_of(bl, L, b);
        mpn_mul_n(t, al, bl, (mp_size_t)L);
        mpn_tdiv_qr(q, al, 0, t, (mp_size_t)(2 * L), m->M, (mp_size_t)L);
    }
    mpz_of_limbs(out, al, L);
}

/* ---- constant-time exponentiation (decryption) ------------------------------------ */

#define POW_W 5
#define POW_T (1u << POW_W)

/* sel = tab[idx] reading every entry (masks, no secret-dependent address). */
static void ct_select(uint64_t *sel, const uint64_t *tab, size_t D, unsigned idx)
{
    memset(sel, 0, D * sizeof *sel);
    for (unsigned j = 0; j < POW_T; j++) {
        uint64_t diff = (uint64_t)(j ^ idx);
        uint64_t mask = (uint64_t)0 - ((diff - 1) >> 63); /* all ones iff j == idx */
        const uint64_t *e = tab + (size_t)j * D;
        for (size_t k = 0; k < D; k++)
            sel[k] |= e[k] & mask;
    }
}

/* Bit i of e (0 past its end). */
static unsigned exp_bit(const mpz_t e, size_t i)
{
    size_t limb = i / 64;
    if (limb >= mpz_size(e)) return 0;
    return (unsigned)((mpz_getlimbn(e, (mp_size_t)limb) >> (i % 64)) & 1);
}

/* base[i]^e[i] mod M_i for n = 1 or 2 contexts of the same digit count,
 * the two interleaved. See pvg_he_powm_sec. */
static int powm_multi(const pvg_he_mont *const *ms, mpz_ptr *outs, mpz_srcptr *bases,
                      mpz_srcptr *es, int n, size_t ebits)
{
    for (int i = 0; i < n; i++)
        if (ms[i]->kernel != PVG_HE_KERNEL_IFMA || ms[i]->D != ms[0]->D || mpz_sgn(es[i]) < 0 ||
            mpz_sizeinbase(es[i], 2) > ebits || !in_range(ms[i], bases[i]))
            return 0;
    size_t D = ms[0]->D, L = ms[0]->L > ms[n - 1]->L ? ms[0]->L : ms[n - 1]->L;
    /* per lane: table (32 entries), acc, sel, base, scratch; wiped before freeing */
    size_t per = (POW_T + 4) * D, words = (size_t)n * per, lwords = 2 * L + 1;
    uint64_t *buf = malloc(words * sizeof *buf);
    mp_limb_t *lb = malloc(lwords * sizeof *lb);
    if (!buf || !lb) {
        free(buf);
        free(lb);
        return 0;
    }
    uint64_t *tab[2] = {0}, *acc[2] = {0}, *sel[2] = {0}, *bm[2] = {0}, *tmp[2] = {0};
    for (int i = 0; i < n; i++) {
        tab[i] = buf + (size_t)i * per;
        acc[i] = tab[i] + POW_T * D;
        sel[i] = acc[i] + D;
        bm[i] = sel[i] + D;
        tmp[i] = bm[i] + D;
    }
#define STEP(r, a, b)                                                                              \
    do {                                                                                           \
        if (n == 2)                                                                                \
            amm_pair(ms[0], r[0], a[0], b[0], ms[1], r[1], a[1], b[1]);                            \
        else                                                                                       \
            amm(ms[0], r[0], a[0], b[0]);                                                          \
    } while (0)
    const uint64_t *r2d[2] = {0}, *cr[2] = {0}, *cacc[2] = {0}, *csel[2] = {0}, *cbm[2] = {0};
    uint64_t *tj[2] = {0};
    for (int i = 0; i < n; i++) {
        r2d[i] = ms[i]->r2d;
        memset(tmp[i], 0, D * sizeof *tmp[i]);
        tmp[i][0] = 1;
        cr[i] = tmp[i];
    }
    /* tab[0] = R mod M (one in Montgomery form), tab[j] = base^j * R */
    STEP(tab, cr, r2d);
    for (int i = 0; i < n; i++)
        to_digits(tmp[i], D, mpz_limbs_read(bases[i]), mpz_size(bases[i]));
    STEP(bm, cr, r2d);
    for (int i = 0; i < n; i++)
        cbm[i] = bm[i];
    for (unsigned j = 1; j < POW_T; j++) {
        const uint64_t *prev[2] = {0};
        for (int i = 0; i < n; i++) {
            tj[i] = tab[i] + (size_t)j * D;
            prev[i] = tab[i] + (size_t)(j - 1) * D;
        }
        STEP(tj, prev, cbm);
    }
    /* fixed windows from the top over ebits (public) bits: the same
     * squarings and products whatever the exponents */
    size_t nwin = (ebits + POW_W - 1) / POW_W;
    for (int i = 0; i < n; i++) {
        memcpy(acc[i], tab[i], D * sizeof *acc[i]);
        cacc[i] = acc[i];
        csel[i] = sel[i];
    }
    for (size_t w = nwin; w-- > 0;) {
        if (w != nwin - 1)
            for (int s = 0; s < POW_W; s++)
                STEP(acc, cacc, cacc);
        for (int i = 0; i < n; i++) {
            unsigned idx = 0;
            for (unsigned b = 0; b < POW_W; b++)
                idx |= exp_bit(es[i], w * POW_W + b) << b;
            ct_select(sel[i], tab[i], D, idx);
        }
        STEP(acc, cacc, csel);
    }
    /* out of Montgomery form, reduced */
    for (int i = 0; i < n; i++) {
        memset(tmp[i], 0, D * sizeof *tmp[i]);
        tmp[i][0] = 1;
    }
    STEP(sel, cacc, cr);
#undef STEP
    for (int i = 0; i < n; i++) {
        digits_out(ms[i], lb, sel[i], lb + ms[i]->L);
        mpz_of_limbs(outs[i], lb, ms[i]->L);
    }
    sodium_memzero(buf, words * sizeof *buf);
    sodium_memzero(lb, lwords * sizeof *lb);
    free(buf);
    free(lb);
    return 1;
}

int pvg_he_powm_sec(const pvg_he_mont *m, mpz_t out, const mpz_t base, const mpz_t e, size_t ebits)
{
    const pvg_he_mont *ms[1] = {m};
    mpz_ptr outs[1] = {out};
    mpz_srcptr bases[1] = {base}, es[1] = {e};
    return powm_multi(ms, outs, bases, es, 1, ebits);
}

int pvg_he_powm2_sec(const pvg_he_mont *m1, const pvg_he_mont *m2, mpz_t out1, mpz_t out2,
                     const mpz_t base1, const mpz_t base2, const mpz_t e1, const mpz_t e2,
                     size_t ebits)
{
    const pvg_he_mont *ms[2] = {m1, m2};
    mpz_ptr outs[2] = {out1, out2};
    mpz_srcptr bases[2] = {base1, base2}, es[2] = {e1, e2};
    return powm_multi(ms, outs, bases, es, 2, ebits);
}

/* ---- accumulators ----------------------------------------------------------------- */

struct pvg_he_acc {
    const pvg_paillier_pub *pub;
    pvg_he_kernel kernel;
    size_t count;     /* factors multiplied in */
    mp_limb_t *x;     /* MPN: running product / R^(count-1) mod M (L limbs) */
    uint64_t *xd;     /* IFMA: the same, < 2M (D digits) */
    uint64_t *cd;     /* IFMA: the factor being multiplied in */
    mp_limb_t *scr;   /* 4L limbs of scratch */
    mpz_t naive;      /* NAIVE / out-of-range factors: plain product */
    size_t fix_count; /* R^fix_count mod M is in fix (0: none yet) */
    mp_limb_t *fix;   /* L limbs */
};

pvg_he_acc *pvg_he_acc_new(const pvg_paillier_pub *pub)
{
    pvg_he_acc *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->pub = pub;
    const pvg_he_mont *m = pub->mont;
    a->kernel = m ? m->kernel : PVG_HE_KERNEL_NAIVE;
    mpz_init_set_ui(a->naive, 1);
    if (m) {
        a->x = malloc(m->L * sizeof *a->x);
        a->scr = malloc(4 * m->L * sizeof *a->scr);
        a->xd = malloc(m->D * sizeof *a->xd);
        a->cd = malloc(m->D * sizeof *a->cd);
        a->fix = malloc(m->L * sizeof *a->fix);
        if (!a->x || !a->scr || !a->xd || !a->cd || !a->fix) {
            pvg_he_acc_free(a);
            return NULL;
        }
    }
    return a;
}

void pvg_he_acc_reset(pvg_he_acc *a)
{
    a->count = 0;
    mpz_set_ui(a->naive, 1);
}

void pvg_he_acc_free(pvg_he_acc *a)
{
    if (!a) return;
    /* the DJN encryptor's products are secret */
    const pvg_he_mont *m = a->pub->mont;
    if (m) {
        if (a->x) sodium_memzero(a->x, m->L * sizeof *a->x);
        if (a->xd) sodium_memzero(a->xd, m->D * sizeof *a->xd);
        if (a->cd) sodium_memzero(a->cd, m->D * sizeof *a->cd);
        if (a->scr) sodium_memzero(a->scr, 4 * m->L * sizeof *a->scr);
    }
    free(a->fix);
    free(a->x);
    free(a->xd);
    free(a->cd);
    free(a->scr);
    mpz_clear(a->naive);
    free(a);
}

void pvg_he_acc_mul(pvg_he_acc *a, const mpz_t c)
{
    const pvg_he_mont *m = a->pub->mont;
    if (a->kernel == PVG_HE_KERNEL_NAIVE || !in_range(m, c)) {
        /* kept apart and folded in at the end */
        pvg_he_mulmod_naive(a->pub, a->naive, a->naive, c);
        return;
    }
    size_t L = m->L;
    mp_limb_t *cl = a->scr; /* L limbs; then t (2L) and c (L) of the product */
    /* The first factor is taken as it is; every later one costs one
     * Montgomery product, x = x*c/R: after k factors x = prod / R^(k-1),
     * which pvg_he_acc_get undoes with one product by R^k mod M. */
    if (a->kernel == PVG_HE_KERNEL_IFMA) {
        const mp_limb_t *cp = mpz_limbs_read(c);
        if (a->count) {
            to_digits(a->cd, m->D, cp, mpz_size(c));
            amm(m, a->xd, a->xd, a->cd);
        } else {
            to_digits(a->xd, m->D, cp, mpz_size(c));
        }
    } else {
        limbs_of(cl, L, c);
        if (a->count)
            mont_mul_mpn(m, a->x, a->x, cl, a->scr + L, a->scr + 3 * L);
        else
            memcpy(a->x, cl, L * sizeof *cl);
    }
    a->count++;
}

void pvg_he_acc_get(pvg_he_acc *a, mpz_t out)
{
    const pvg_he_mont *m = a->pub->mont;
    if (a->kernel == PVG_HE_KERNEL_NAIVE || a->count == 0) {
        mpz_set(out, a->naive);
        return;
    }
    size_t L = m->L;
    mp_limb_t *r = a->scr, *fix = a->fix;
    /* fix = R^count mod M, R the kernel's radix (kept for the next chain of
     * the same length) */
    if (a->fix_count != a->count) {
        mpz_t f, e;
        mpz_inits(f, e, NULL);
        mpz_setbit(f, a->kernel == PVG_HE_KERNEL_IFMA ? 52 * m->D : 64 * L);
        mpz_set_ui(e, (unsigned long)a->count);
        mpz_powm(f, f, e, a->pub->n2);
        limbs_of(fix, L, f);
        mpz_clears(f, e, NULL);
        a->fix_count = a->count;
    }
    if (a->kernel == PVG_HE_KERNEL_IFMA) {
        uint64_t fd[HE_MAX_D], rd[HE_MAX_D];
        to_digits(fd, m->D, fix, L);
        amm(m, rd, a->xd, fd);
        digits_out(m, r, rd, a->scr + 2 * L);
    } else {
        mp_limb_t t[2 * HE_MAX_L];
        mont_mul_mpn(m, r, a->x, fix, t, a->scr + 2 * L);
    }
    mpz_of_limbs(out, r, L);
    if (mpz_cmp_ui(a->naive, 1) != 0) pvg_he_mulmod_naive(a->pub, out, out, a->naive);
}

/* ---- the public sum ------------------------------------------------------------------ */

pvg_status pvg_paillier_sum(pvg_paillier_ct *out, pvg_paillier_ct *const *cts, size_t count,
                            pvg_error *err)
{
    if (!out || (count && !cts))
        return pvg_error_set(err, PVG_ERR_INVALID, "sum: NULL ciphertext array");
    const pvg_paillier_pub *pub = out->pub;
    int emin = 0;
    for (size_t i = 0; i < count; i++) {
        if (!cts[i]) return pvg_error_set(err, PVG_ERR_INVALID, "sum: ciphertext %zu is NULL", i);
        if (!pvg_paillier_pub_equal(pub, cts[i]->pub))
            return pvg_error_set(err, PVG_ERR_CRYPTO,
                                 "key does not match: ciphertext %zu is under another public key",
                                 i);
        if (i == 0 || cts[i]->exponent < emin) emin = cts[i]->exponent;
    }
    pvg_he_acc *acc = pvg_he_acc_new(pub);
    if (!acc) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    pvg_status st = PVG_OK;
    mpz_t t;
    mpz_init(t);
    for (size_t i = 0; i < count && st == PVG_OK; i++) {
        if (cts[i]->exponent == emin) {
            pvg_he_acc_mul(acc, cts[i]->c);
            continue;
        }
        /* python-paillier aligns each term to the smaller exponent */
        mpz_set(t, cts[i]->c);
        st = pvg_he_lower_exponent(pub, t, (long)cts[i]->exponent - emin, err);
        if (st == PVG_OK) pvg_he_acc_mul(acc, t);
    }
    if (st == PVG_OK) {
        pvg_he_acc_get(acc, out->c);
        out->exponent = emin;
    }
    mpz_clear(t);
    pvg_he_acc_free(acc);
    return st;
}

const char *pvg_paillier_kernel(const pvg_paillier_pub *pub)
{
    return pvg_he_kernel_name(pub->mont ? pub->mont->kernel : PVG_HE_KERNEL_NAIVE);
}
