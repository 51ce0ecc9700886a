/*
 * paillier_internal.h - the representation of Paillier keys, ciphertexts
 * and encoded numbers shared by the src/crypto/paillier*.c files and the
 * tests (known-answer vectors need raw access). Not installed.
 */
#ifndef PVG_PAILLIER_INTERNAL_H
#define PVG_PAILLIER_INTERNAL_H

#include <privguide/paillier.h>

#include <gmp.h>

/* Products mod n^2 (paillier_mont.c): which kernel a key uses. */
typedef enum pvg_he_kernel {
    PVG_HE_KERNEL_NAIVE = 0, /* mpz_mul + mpz_mod (the reference) */
    PVG_HE_KERNEL_MPN = 1,   /* GMP mpn: mul + division, Montgomery chains */
    PVG_HE_KERNEL_IFMA = 2   /* AVX-512 IFMA almost-Montgomery, 52-bit digits */
} pvg_he_kernel;
typedef struct pvg_he_mont pvg_he_mont;

struct pvg_paillier_pub {
    mpz_t n;         /* modulus, odd, exactly `bits` bits */
    mpz_t n2;        /* n^2 */
    mpz_t max_int;   /* n / 3 - 1 (floor), python-paillier's max_int */
    mpz_t neg_floor; /* n - max_int: encodings >= this are negative */
    unsigned bits;
    pvg_he_mont *mont; /* per-key precomputation for products mod n^2 (owned) */
};

struct pvg_paillier_priv {
    pvg_paillier_pub *pub;  /* owned copy */
    mpz_t p, q;             /* p < q */
    mpz_t p2, q2;           /* p^2, q^2 */
    mpz_t pm1, qm1;         /* p - 1, q - 1 */
    mpz_t hp, hq;           /* L_p(g^(p-1) mod p^2)^-1 mod p, same for q */
    mpz_t pinv;             /* p^-1 mod q */
    pvg_he_mont *mp2, *mq2; /* contexts mod p^2 and q^2 (owned; NULL: none) */
};

struct pvg_paillier_ct {
    const pvg_paillier_pub *pub; /* borrowed */
    mpz_t c;                     /* in Z*_{n^2} */
    int exponent;                /* value = decode(D(c)) * 16^exponent */
};

/* Exponent bounds accepted from outside (keeps 16^d computations small). */
#define PVG_HE_EXP_LIMIT 100000

/* Installs the wiping GMP memory functions once (pthread_once). */
void pvg_he_gmp_init(void);

/* Wipes an mpz's limbs (its whole allocation) and clears it. */
void pvg_he_mpz_wipe(mpz_t x);

/* pub from an mpz n (copied); validates size (>= min_bits; the public
 * entry points pass PVG_PAILLIER_MIN_BITS, known-answer tests 0) and
 * oddness. */
pvg_status pvg_he_pub_from_mpz(const mpz_t n, unsigned min_bits, pvg_paillier_pub **out,
                               pvg_error *err);
/* priv from mpz p, q for pub (copied). */
pvg_status pvg_he_priv_from_mpz(const pvg_paillier_pub *pub, const mpz_t p, const mpz_t q,
                                pvg_paillier_priv **out, pvg_error *err);

/* Raw Paillier: out = (1 + n*m) * obf mod n^2 for 0 <= m < n. obf NULL: 1. */
void pvg_he_raw_encrypt(const pvg_paillier_pub *pub, const mpz_t m, const mpz_t obf, mpz_t out);
/* Raw encryption with a given r (r^n computed here): the known-answer path. */
void pvg_he_raw_encrypt_r(const pvg_paillier_pub *pub, const mpz_t m, const mpz_t r, mpz_t out);
/* CRT decryption: m = D(c) in [0, n). c must be in [0, n^2). */
void pvg_he_raw_decrypt(const pvg_paillier_priv *priv, const mpz_t c, mpz_t m);
/* The pieces of pvg_he_raw_decrypt (batch decryption shares them out):
 * both CRT halves m_p = L_p(c^(p-1) mod p^2) * h_p mod p and m_q (on IFMA
 * the two exponentiations interleaved), one half (q = 0: p, 1: q), and the
 * recombination m = m_p + ((m_q - m_p) p^-1 mod q) p. */
void pvg_he_decrypt_halves(const pvg_paillier_priv *k, const mpz_t c, mpz_t mp, mpz_t mq);
void pvg_he_decrypt_half(const pvg_paillier_priv *k, const mpz_t c, int q, mpz_t out);
void pvg_he_decrypt_crt(const pvg_paillier_priv *k, const mpz_t mp, const mpz_t mq, mpz_t m);
/* Textbook decryption m = L(c^lambda mod n^2) * mu mod n: the naive
 * reference for the CRT kernel (tests only; slow). */
void pvg_he_raw_decrypt_textbook(const pvg_paillier_priv *priv, const mpz_t c, mpz_t m);
/* 1 when 0 < c < n^2 and gcd(c, n) = 1. */
int pvg_he_in_group(const pvg_paillier_pub *pub, const mpz_t c);

/* c' = c^(16^d) mod n^2: the plaintext times 16^d (d >= 0; 16^d must not
 * exceed max_int: PVG_ERR_INVALID). */
pvg_status pvg_he_lower_exponent(const pvg_paillier_pub *pub, mpz_t c, long d, pvg_error *err);

/* ---- products mod n^2 (paillier_mont.c) ---- */

/* new: the context for modulus M (odd, at most 2 * PVG_PAILLIER_MAX_BITS
 * bits): limbs and 52-bit digits of M, -M^-1, R^2 mod M for both radices,
 * Barrett's mu in 52-bit digits;
 * the kernel is IFMA when the CPU has it, else MPN. NULL on out of memory
 * or a bad M. */
pvg_he_mont *pvg_he_mont_new(const mpz_t M);
void pvg_he_mont_free(pvg_he_mont *m); /* NULL ok */
pvg_he_kernel pvg_he_mont_kernel(const pvg_he_mont *m);
/* Forces a kernel (tests and benchmarks; not while other threads use the
 * key). Returns 0 (and changes nothing) for IFMA on a CPU without it. */
int pvg_he_mont_set_kernel(pvg_he_mont *m, pvg_he_kernel k);
int pvg_he_cpu_has_ifma(void);
const char *pvg_he_kernel_name(pvg_he_kernel k);

/* out = base^e mod M for the context's M, constant-time in e (fixed
 * 5-bit windows over ebits bits, a public bound on bits(e); table entries
 * read with masks) and in base; IFMA kernel only. Returns 0, doing
 * nothing, when the kernel is not IFMA, e has more than ebits bits, base is
 * outside [0, M) or memory runs out: callers then use mpz_powm_sec. */
int pvg_he_powm_sec(const pvg_he_mont *m, mpz_t out, const mpz_t base, const mpz_t e, size_t ebits);
/* Two such exponentiations (mod p^2 and mod q^2 in decryption), their
 * products interleaved in one loop; both contexts must have the same digit
 * count. out1/out2 must not be base or exponent of the other pair. Returns
 * 0, doing nothing, under the same conditions as pvg_he_powm_sec. */
int pvg_he_powm2_sec(const pvg_he_mont *m1, const pvg_he_mont *m2, mpz_t out1, mpz_t out2,
                     const mpz_t base1, const mpz_t base2, const mpz_t e1, const mpz_t e2,
                     size_t ebits);

/* out = a*b mod n^2 with the key's kernel (out may alias a or b): IFMA
 * Barrett, MPN mul + division; inputs outside [0, n^2) take the naive
 * path. Not constant-time (ciphertexts are public). */
void pvg_he_mulmod(const pvg_paillier_pub *pub, mpz_t out, const mpz_t a, const mpz_t b);
/* The naive reference: mpz_mul + mpz_mod. */
void pvg_he_mulmod_naive(const pvg_paillier_pub *pub, mpz_t out, const mpz_t a, const mpz_t b);

/* A running product mod n^2: one Montgomery product per factor, the
 * accumulated power of R removed once in pvg_he_acc_get. Uses the key's kernel as of creation.
 * One thread at a time. */
typedef struct pvg_he_acc pvg_he_acc;
pvg_he_acc *pvg_he_acc_new(const pvg_paillier_pub *pub); /* NULL: out of memory */
void pvg_he_acc_free(pvg_he_acc *a);                     /* NULL ok; wipes */
/* Starts a new product (keeps the buffers and the last R^k fix-up). */
void pvg_he_acc_reset(pvg_he_acc *a);
/* Multiplies c in (any c >= 0; outside [0, n^2) it is reduced first). */
void pvg_he_acc_mul(pvg_he_acc *a, const mpz_t c);
/* out = the product of the factors mod n^2 (1 when none). */
void pvg_he_acc_get(pvg_he_acc *a, mpz_t out);

/* ---- encoding (paillier_encode.c) ---- */

/* Encodes an integer with exponent `exponent` (the caller already scaled
 * it): checks |v| <= max_int, wraps negatives: out = v mod n. */
/* Headroom kept below the decryptable range (bits/2) for sums. */
#define PVG_HE_SUM_HEADROOM_BITS 32
pvg_status pvg_he_encode_mpz(const pvg_paillier_pub *pub, const mpz_t v, mpz_t out, pvg_error *err);
/* python-paillier's EncodedNumber.encode for a float. precision <= 0: none.
 * has_max: apply max_exponent. */
pvg_status pvg_he_encode_double(const pvg_paillier_pub *pub, double x, double precision,
                                int has_max, long max_exponent, mpz_t out, long *exponent,
                                pvg_error *err);
/* Text: integer literal -> exponent 0 (then max_exponent applies as for
 * ints in python: min(max_exponent, 0)); decimal -> float encoding. */
pvg_status pvg_he_encode_text(const pvg_paillier_pub *pub, const char *text, int has_max,
                              long max_exponent, mpz_t out, long *exponent, pvg_error *err);
/* Decodes an encoding in [0, n) into a signed mantissa; PVG_ERR_INVALID in
 * the overflow band. */
pvg_status pvg_he_decode_mantissa(const pvg_paillier_pub *pub, const mpz_t enc, mpz_t mant,
                                  pvg_error *err);
/* mantissa * 16^exponent as the nearest double; PVG_ERR_INVALID on
 * overflow to infinity. */
pvg_status pvg_he_mantissa_to_double(const mpz_t mant, long exponent, double *out, pvg_error *err);
/* Python's text of the decoded value (int for exponent >= 0, else float
 * repr). new string (malloc). */
pvg_status pvg_he_mantissa_to_text(const mpz_t mant, long exponent, char **out, pvg_error *err);
/* Exact decimal text of mantissa * 16^exponent. new string (malloc). */
pvg_status pvg_he_mantissa_to_exact(const mpz_t mant, long exponent, char **out, pvg_error *err);
/* Python repr() of a finite double into buf (>= 32 bytes). */
void pvg_he_double_repr(double x, char *buf, size_t len);

/* ---- obfuscators (paillier_fast.c) ---- */

/* out = a fresh obfuscator from the encryptor. */
pvg_status pvg_he_enc_obfuscator(pvg_paillier_enc *enc, mpz_t out, pvg_error *err);
/* The encryptor's key. */
const pvg_paillier_pub *pvg_he_enc_pub(const pvg_paillier_enc *enc);

/* The DJN reference check: `fast` = the comb result for exponent a
 * (little-endian bytes, truncated to the encryptor's exponent bits) and
 * `naive` = hs^a by plain exponentiation. Returns 0 when enc is not DJN or a
 * is too short. Tests only. */
int pvg_he_djn_check(pvg_paillier_enc *enc, const unsigned char *a, size_t len, mpz_t fast,
                     mpz_t naive);

/* Uniform r in [1, n) from rng (64 extra bits, bias < 2^-64). */
void pvg_he_random_below_n(pvg_rng *rng, const mpz_t n, mpz_t r);

/* ---- spend totals in the clear (paillier_spend.c) ---- */

/* One shopper's events in timestamp order, as pvg_store_foreach_user hands
 * them (analytics consent assumed). Borrowed. */
typedef struct pvg_he_spend_user {
    const pvg_event *events;
    size_t n;
} pvg_he_spend_user;

/* The plaintext of a DP spend release: what the key holder decrypts. */
typedef struct pvg_he_spend_plain {
    size_t n;
    char **names;   /* sorted, owned */
    int64_t *cents; /* clamped sum + noise, per group */
    double noise_scale;
} pvg_he_spend_plain;

/* pvg_paillier_spend_total with opts->dp = 1 over users in memory, without
 * encryption and without a ledger charge: the same grouping, contribution
 * bounds, clamping, private selection and noise functions. The draws come
 * from opts->rng itself; pvg_paillier_spend_total draws them from the first
 * pvg_rng_split of its opts->rng, so with rng = that split of a copy of a
 * deterministic generator the result equals the decryption of
 * pvg_paillier_spend_total's over a store holding the same users. For the
 * empirical privacy audit, which needs 10^5 releases. group_by NONE or
 * COUNTRY (categories need the store's catalog). *out is new
 * (pvg_he_spend_plain_free). Errors as pvg_paillier_spend_total. */
pvg_status pvg_he_spend_total_plain(const pvg_he_spend_user *users, size_t n_users,
                                    const pvg_spend_options *opts, pvg_he_spend_plain **out,
                                    pvg_error *err) PVG_WARN_UNUSED;
void pvg_he_spend_plain_free(pvg_he_spend_plain *p); /* NULL ok */

#endif
