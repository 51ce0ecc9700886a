/*
 * paillier.c - Paillier keys, key generation, raw encryption and CRT
 * decryption, ciphertext objects and the homomorphic operations.
 *
 * Shapes (bits = bits of n): n, p, q: bits, bits/2, bits/2; ciphertexts and
 * obfuscators live mod n^2 (2*bits); decryption works mod p^2 and q^2
 * (bits each) with exponents p-1, q-1 (bits/2).
 *
 * Secret-dependent exponentiations (decryption, Miller-Rabin on secret
 * candidates) use mpz_powm_sec. r^n mod n^2 uses mpz_powm: its memory access
 * pattern depends on the public exponent n only.
 */
#include "crypto/paillier_internal.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- wiping GMP memory ---------------------------------------------------- */

static void *he_gmp_alloc(size_t size)
{
    void *p = malloc(size);
    /* GMP cannot report allocation failure to its caller: its own default
     * handler aborts too. */
    if (!p) abort();
    return p;
}

static void *he_gmp_realloc(void *old, size_t old_size, size_t new_size)
{
    void *p = he_gmp_alloc(new_size);
    if (old) {
        memcpy(p, old, old_size < new_size ? old_size : new_size);
        sodium_memzero(old, old_size);
        free(old);
    }
    return p;
}

static void he_gmp_free(void *p, size_t size)
{
    if (!p) return;
    if (size) sodium_memzero(p, size);
    free(p);
}

static pthread_once_t he_gmp_once = PTHREAD_ONCE_INIT;

static void he_gmp_install(void)
{
    /* Process-wide (GMP keeps one set of memory functions). Blocks GMP
     * allocated earlier with its defaults are plain malloc blocks, so
     * freeing them through these functions is valid. */
    mp_set_memory_functions(he_gmp_alloc, he_gmp_realloc, he_gmp_free);
}

void pvg_he_gmp_init(void)
{
    pthread_once(&he_gmp_once, he_gmp_install);
}

void pvg_he_mpz_wipe(mpz_t x)
{
    if (x->_mp_alloc > 0 && x->_mp_d)
        sodium_memzero(x->_mp_d, (size_t)x->_mp_alloc * sizeof(mp_limb_t));
    mpz_clear(x);
}

/* ---- keys -------------------------------------------------------------------- */

static pvg_paillier_pub *pub_alloc(void)
{
    pvg_paillier_pub *pub = calloc(1, sizeof *pub);
    if (!pub) return NULL;
    mpz_inits(pub->n, pub->n2, pub->max_int, pub->neg_floor, NULL);
    return pub;
}

void pvg_paillier_pub_free(pvg_paillier_pub *pub)
{
    if (!pub) return;
    mpz_clears(pub->n, pub->n2, pub->max_int, pub->neg_floor, NULL);
    pvg_he_mont_free(pub->mont);
    free(pub);
}

pvg_status pvg_he_pub_from_mpz(const mpz_t n, unsigned min_bits, pvg_paillier_pub **out,
                               pvg_error *err)
{
    *out = NULL;
    if (pvg_init() != PVG_OK) return pvg_error_set(err, PVG_ERR_INTERNAL, "libsodium init failed");
    pvg_he_gmp_init();
    size_t bits = mpz_sizeinbase(n, 2);
    if (mpz_cmp_ui(n, 3) <= 0 || bits < min_bits)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "modulus n has %zu bits; at least %u are required",
                             mpz_sgn(n) <= 0 ? (size_t)0 : bits, min_bits);
    if (bits > PVG_PAILLIER_MAX_BITS)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "modulus n has %zu bits; at most %d are accepted", bits,
                             PVG_PAILLIER_MAX_BITS);
    if (mpz_even_p(n)) return pvg_error_set(err, PVG_ERR_INVALID, "modulus n is even");
    pvg_paillier_pub *pub = pub_alloc();
    if (!pub) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    mpz_set(pub->n, n);
    mpz_mul(pub->n2, n, n);
    mpz_fdiv_q_ui(pub->max_int, n, 3);
    mpz_sub_ui(pub->max_int, pub->max_int, 1);
    mpz_sub(pub->neg_floor, n, pub->max_int);
    pub->bits = (unsigned)bits;
    pub->mont = pvg_he_mont_new(pub->n2);
    if (!pub->mont) {
        pvg_paillier_pub_free(pub);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    *out = pub;
    return PVG_OK;
}

pvg_status pvg_paillier_pub_from_bytes(const unsigned char *nb, size_t len, pvg_paillier_pub **out,
                                       pvg_error *err)
{
    *out = NULL;
    if (!nb || len == 0) return pvg_error_set(err, PVG_ERR_INVALID, "modulus n is empty");
    if (len > PVG_PAILLIER_MAX_BITS / 8 + 1)
        return pvg_error_set(err, PVG_ERR_INVALID, "modulus n is %zu bytes; at most %d accepted",
                             len, PVG_PAILLIER_MAX_BITS / 8);
    pvg_he_gmp_init();
    mpz_t n;
    mpz_init(n);
    mpz_import(n, len, 1, 1, 1, 0, nb);
    pvg_status st = pvg_he_pub_from_mpz(n, PVG_PAILLIER_MIN_BITS, out, err);
    mpz_clear(n);
    return st;
}

unsigned pvg_paillier_pub_bits(const pvg_paillier_pub *pub)
{
    return pub->bits;
}

int pvg_paillier_pub_equal(const pvg_paillier_pub *a, const pvg_paillier_pub *b)
{
    if (a == b) return 1;
    if (!a || !b) return 0;
    return mpz_cmp(a->n, b->n) == 0;
}

char *pvg_paillier_pub_n_decimal(const pvg_paillier_pub *pub)
{
    char *s = malloc(mpz_sizeinbase(pub->n, 10) + 2);
    if (s) mpz_get_str(s, 10, pub->n);
    return s;
}

static pvg_paillier_priv *priv_alloc(void)
{
    pvg_paillier_priv *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    mpz_inits(k->p, k->q, k->p2, k->q2, k->pm1, k->qm1, k->hp, k->hq, k->pinv, NULL);
    return k;
}

void pvg_paillier_priv_free(pvg_paillier_priv *k)
{
    if (!k) return;
    pvg_he_mpz_wipe(k->p);
    pvg_he_mpz_wipe(k->q);
    pvg_he_mpz_wipe(k->p2);
    pvg_he_mpz_wipe(k->q2);
    pvg_he_mpz_wipe(k->pm1);
    pvg_he_mpz_wipe(k->qm1);
    pvg_he_mpz_wipe(k->hp);
    pvg_he_mpz_wipe(k->hq);
    pvg_he_mpz_wipe(k->pinv);
    pvg_he_mont_free(k->mp2);
    pvg_he_mont_free(k->mq2);
    pvg_paillier_pub_free(k->pub);
    sodium_memzero(k, sizeof *k);
    free(k);
}

const pvg_paillier_pub *pvg_paillier_priv_pub(const pvg_paillier_priv *priv)
{
    return priv->pub;
}

/* h = L_x(g^(x-1) mod x^2)^-1 mod x with g = n + 1. Returns 0 when not
 * invertible. */
static int h_function(const pvg_paillier_pub *pub, const mpz_t x, const mpz_t xm1, const mpz_t x2,
                      mpz_t h)
{
    mpz_t g, t;
    mpz_inits(g, t, NULL);
    mpz_add_ui(g, pub->n, 1);
    mpz_mod(g, g, x2);
    mpz_powm_sec(t, g, xm1, x2);
    mpz_sub_ui(t, t, 1);
    mpz_divexact(t, t, x);
    int ok = mpz_invert(h, t, x) != 0;
    pvg_he_mpz_wipe(g);
    pvg_he_mpz_wipe(t);
    return ok;
}

pvg_status pvg_he_priv_from_mpz(const pvg_paillier_pub *pub, const mpz_t p_in, const mpz_t q_in,
                                pvg_paillier_priv **out, pvg_error *err)
{
    *out = NULL;
    pvg_he_gmp_init();
    if (mpz_cmp_ui(p_in, 3) < 0 || mpz_cmp_ui(q_in, 3) < 0 || mpz_even_p(p_in) || mpz_even_p(q_in))
        return pvg_error_set(err, PVG_ERR_INVALID, "p and q must be odd numbers greater than 2");
    if (mpz_cmp(p_in, q_in) == 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "p and q must be different");
    pvg_paillier_priv *k = priv_alloc();
    if (!k) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    pvg_status st = PVG_OK;
    mpz_t prod;
    mpz_init(prod);
    mpz_mul(prod, p_in, q_in);
    if (mpz_cmp(prod, pub->n) != 0) {
        st = pvg_error_set(err, PVG_ERR_CRYPTO, "key does not match: p*q is not the public n");
        goto done;
    }
    st = pvg_he_pub_from_mpz(pub->n, 0, &k->pub, err);
    if (st != PVG_OK) goto done;
    if (mpz_cmp(p_in, q_in) < 0) {
        mpz_set(k->p, p_in);
        mpz_set(k->q, q_in);
    } else {
        mpz_set(k->p, q_in);
        mpz_set(k->q, p_in);
    }
    mpz_mul(k->p2, k->p, k->p);
    mpz_mul(k->q2, k->q, k->q);
    mpz_sub_ui(k->pm1, k->p, 1);
    mpz_sub_ui(k->qm1, k->q, 1);
    if (!mpz_invert(k->pinv, k->p, k->q) || !h_function(pub, k->p, k->pm1, k->p2, k->hp) ||
        !h_function(pub, k->q, k->qm1, k->q2, k->hq)) {
        st = pvg_error_set(err, PVG_ERR_INVALID, "p and q do not form a Paillier key");
        goto done;
    }
    k->mp2 = pvg_he_mont_new(k->p2);
    k->mq2 = pvg_he_mont_new(k->q2);
    if (!k->mp2 || !k->mq2) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
done:
    pvg_he_mpz_wipe(prod);
    if (st != PVG_OK) {
        pvg_paillier_priv_free(k);
        return st;
    }
    *out = k;
    return PVG_OK;
}

pvg_status pvg_paillier_priv_from_pq(const pvg_paillier_pub *pub, const unsigned char *p,
                                     size_t p_len, const unsigned char *q, size_t q_len,
                                     pvg_paillier_priv **out, pvg_error *err)
{
    *out = NULL;
    if (!p || !q || p_len == 0 || q_len == 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "p and q must not be empty");
    if (p_len > PVG_PAILLIER_MAX_BITS / 8 || q_len > PVG_PAILLIER_MAX_BITS / 8)
        return pvg_error_set(err, PVG_ERR_INVALID, "p or q is too long");
    pvg_he_gmp_init();
    mpz_t mp, mq;
    mpz_inits(mp, mq, NULL);
    mpz_import(mp, p_len, 1, 1, 1, 0, p);
    mpz_import(mq, q_len, 1, 1, 1, 0, q);
    pvg_status st = pvg_he_priv_from_mpz(pub, mp, mq, out, err);
    pvg_he_mpz_wipe(mp);
    pvg_he_mpz_wipe(mq);
    return st;
}

/* ---- key generation -------------------------------------------------------- */

/* Miller-Rabin rounds with random bases for a prime of `bits` bits, from
 * FIPS 186-5 Table B.1 (M-R followed by a Lucas test). */
static int mr_rounds(unsigned bits)
{
    if (bits >= 1536) return 4;
    return 5;
}

static const unsigned small_primes[] = {
    3,   5,   7,   11,  13,  17,  19,  23,  29,  31,  37,  41,  43,  47,  53,  59,  61,  67,
    71,  73,  79,  83,  89,  97,  101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157,
    163, 167, 173, 179, 181, 191, 193, 197, 199, 211, 223, 227, 229, 233, 239, 241, 251, 257,
    263, 269, 271, 277, 281, 283, 293, 307, 311, 313, 317, 331, 337, 347, 349, 353, 359, 367,
    373, 379, 383, 389, 397, 401, 409, 419, 421, 431, 433, 439, 443, 449, 457, 461, 463, 467,
    479, 487, 491, 499, 503, 509, 521, 523, 541, 547, 557, 563, 569, 571, 577, 587, 593, 599};

/* Miller-Rabin with `rounds` uniform bases in [2, w-2] from rng, then the
 * strong Lucas test of Baillie-PSW (GMP's mpz_probab_prime_p with one
 * round runs base-2 Miller-Rabin and a strong Lucas test). */
static int is_probable_prime(const mpz_t w, int rounds, pvg_rng *rng)
{
    for (size_t i = 0; i < sizeof small_primes / sizeof small_primes[0]; i++)
        if (mpz_divisible_ui_p(w, small_primes[i])) return 0;
    mpz_t wm1, d, b, x, range;
    mpz_inits(wm1, d, b, x, range, NULL);
    mpz_sub_ui(wm1, w, 1);
    mp_bitcnt_t s = mpz_scan1(wm1, 0);
    mpz_tdiv_q_2exp(d, wm1, s);
    mpz_sub_ui(range, w, 3); /* bases 2 .. w-2 */
    int prime = 1;
    for (int r = 0; r < rounds && prime; r++) {
        pvg_he_random_below_n(rng, range, b); /* [1, w-3) */
        mpz_add_ui(b, b, 1);                  /* [2, w-2) */
        mpz_powm_sec(x, b, d, w);
        if (mpz_cmp_ui(x, 1) == 0 || mpz_cmp(x, wm1) == 0) continue;
        int found = 0;
        for (mp_bitcnt_t j = 1; j < s; j++) {
            mpz_powm_ui(x, x, 2, w);
            if (mpz_cmp(x, wm1) == 0) {
                found = 1;
                break;
            }
            if (mpz_cmp_ui(x, 1) == 0) break;
        }
        if (!found) prime = 0;
    }
    if (prime) prime = mpz_probab_prime_p(w, 1) > 0;
    pvg_he_mpz_wipe(wm1);
    pvg_he_mpz_wipe(d);
    pvg_he_mpz_wipe(b);
    pvg_he_mpz_wipe(x);
    mpz_clear(range);
    return prime;
}

/* A random prime of exactly `bits` bits with its two top bits set.
 * Returns 0 when out of memory. */
static int random_prime(unsigned bits, pvg_rng *rng, mpz_t out)
{
    size_t nbytes = (bits + 7) / 8;
    unsigned char *buf = sodium_malloc(nbytes);
    if (!buf) return 0;
    int rounds = mr_rounds(bits);
    for (;;) {
        pvg_rng_bytes(rng, buf, nbytes);
        mpz_import(out, nbytes, 1, 1, 1, 0, buf);
        mpz_fdiv_r_2exp(out, out, bits);
        mpz_setbit(out, bits - 1);
        mpz_setbit(out, bits - 2);
        mpz_setbit(out, 0);
        if (is_probable_prime(out, rounds, rng)) break;
    }
    sodium_free(buf);
    return 1;
}

pvg_status pvg_paillier_keygen(unsigned bits, pvg_rng *rng, int allow_insecure_rng,
                               pvg_paillier_pub **pub_out, pvg_paillier_priv **priv_out,
                               pvg_error *err)
{
    *pub_out = NULL;
    *priv_out = NULL;
    if (pvg_init() != PVG_OK) return pvg_error_set(err, PVG_ERR_INTERNAL, "libsodium init failed");
    if (bits < PVG_PAILLIER_MIN_BITS || bits > PVG_PAILLIER_MAX_BITS || bits % 2)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "key size %u bits: expected an even number from %d to %d", bits,
                             PVG_PAILLIER_MIN_BITS, PVG_PAILLIER_MAX_BITS);
    pvg_status rs = pvg_rng_require_secure(rng, allow_insecure_rng, "a key", err);
    if (rs != PVG_OK) return rs;
    pvg_he_gmp_init();
    pvg_rng *own = NULL;
    if (!rng) {
        own = pvg_rng_new_secure();
        if (!own) return pvg_error_set(err, PVG_ERR_NOMEM, "cannot create a random generator");
        rng = own;
    }
    mpz_t p, q, n, diff, tmp;
    mpz_inits(p, q, n, diff, tmp, NULL);
    unsigned half = bits / 2;
    int oom = 0;
    for (;;) {
        if (!random_prime(half, rng, p) || !random_prime(half, rng, q)) {
            oom = 1;
            break;
        }
        mpz_mul(n, p, q);
        /* p and q have their two top bits set, so n has exactly `bits` bits */
        assert(mpz_sizeinbase(n, 2) == bits);
        if (mpz_sizeinbase(n, 2) != bits) continue;
        mpz_sub(diff, p, q);
        mpz_abs(diff, diff);
        if (mpz_sizeinbase(diff, 2) <= half - 100) continue; /* FIPS 186-5 |p-q| bound */
        /* gcd(n, (p-1)(q-1)) = 1 holds for equal-length primes; check anyway. */
        mpz_sub_ui(diff, p, 1);
        mpz_sub_ui(tmp, q, 1);
        mpz_mul(tmp, tmp, diff);
        mpz_gcd(tmp, tmp, n);
        if (mpz_cmp_ui(tmp, 1) != 0) continue;
        break;
    }
    pvg_paillier_pub *pub = NULL;
    pvg_paillier_priv *priv = NULL;
    pvg_status st = oom ? pvg_error_set(err, PVG_ERR_NOMEM, "out of memory")
                        : pvg_he_pub_from_mpz(n, PVG_PAILLIER_MIN_BITS, &pub, err);
    if (st == PVG_OK) st = pvg_he_priv_from_mpz(pub, p, q, &priv, err);
    pvg_he_mpz_wipe(p);
    pvg_he_mpz_wipe(q);
    pvg_he_mpz_wipe(diff);
    pvg_he_mpz_wipe(tmp);
    mpz_clear(n);
    pvg_rng_free(own);
    if (st != PVG_OK) {
        pvg_paillier_pub_free(pub);
        return st;
    }
    *pub_out = pub;
    *priv_out = priv;
    return PVG_OK;
}

/* ---- raw operations --------------------------------------------------------- */

void pvg_he_random_below_n(pvg_rng *rng, const mpz_t n, mpz_t r)
{
    /* Uniform in [1, n): 64 extra random bits make the modulo bias < 2^-64. */
    size_t nbytes = (mpz_sizeinbase(n, 2) + 7) / 8 + 8;
    unsigned char stackbuf[PVG_PAILLIER_MAX_BITS / 4 + 16];
    unsigned char *buf = stackbuf;
    if (nbytes > sizeof stackbuf) nbytes = sizeof stackbuf;
    pvg_rng_bytes(rng, buf, nbytes);
    mpz_import(r, nbytes, 1, 1, 1, 0, buf);
    sodium_memzero(buf, nbytes);
    mpz_t nm1;
    mpz_init(nm1);
    mpz_sub_ui(nm1, n, 1);
    mpz_mod(r, r, nm1);
    mpz_add_ui(r, r, 1);
    mpz_clear(nm1);
}

void pvg_he_raw_encrypt(const pvg_paillier_pub *pub, const mpz_t m, const mpz_t obf, mpz_t out)
{
    /* (n+1)^m = 1 + n*m mod n^2 */
    mpz_t t;
    mpz_init(t);
    mpz_mul(t, pub->n, m);
    mpz_add_ui(t, t, 1);
    mpz_mod(t, t, pub->n2);
    if (obf) {
        mpz_mul(t, t, obf);
        mpz_mod(t, t, pub->n2);
    }
    mpz_swap(out, t);
    pvg_he_mpz_wipe(t);
}

void pvg_he_raw_encrypt_r(const pvg_paillier_pub *pub, const mpz_t m, const mpz_t r, mpz_t out)
{
    mpz_t obf;
    mpz_init(obf);
    mpz_powm(obf, r, pub->n, pub->n2);
    pvg_he_raw_encrypt(pub, m, obf, out);
    pvg_he_mpz_wipe(obf);
}

/* t = c mod x^2 (1 for 0: not in the group; callers check, this keeps the
 * exponentiation defined) */
static void half_reduce(const mpz_t c, const mpz_t x2, mpz_t t)
{
    mpz_mod(t, c, x2);
    if (mpz_sgn(t) == 0) mpz_set_ui(t, 1);
}

/* t = t^(x-1) mod x^2, constant-time either way: the IFMA window
 * exponentiation, else GMP's */
static void half_powm(mpz_t t, const mpz_t x, const mpz_t xm1, const mpz_t x2,
                      const pvg_he_mont *mx2)
{
    if (!mx2 || !pvg_he_powm_sec(mx2, t, t, xm1, mpz_sizeinbase(x, 2))) mpz_powm_sec(t, t, xm1, x2);
}

/* out = L_x(t) * h_x mod x */
static void half_finish(mpz_t t, const mpz_t x, const mpz_t h, mpz_t out)
{
    mpz_sub_ui(t, t, 1);
    mpz_divexact(t, t, x);
    mpz_mul(t, t, h);
    mpz_mod(out, t, x);
}

void pvg_he_decrypt_halves(const pvg_paillier_priv *k, const mpz_t c, mpz_t mp, mpz_t mq)
{
    mpz_t tp, tq;
    mpz_inits(tp, tq, NULL);
    half_reduce(c, k->p2, tp);
    half_reduce(c, k->q2, tq);
    size_t eb = mpz_sizeinbase(k->q, 2); /* q > p */
    /* both halves interleaved on IFMA; else one after the other */
    if (!k->mp2 || !k->mq2 ||
        !pvg_he_powm2_sec(k->mp2, k->mq2, tp, tq, tp, tq, k->pm1, k->qm1, eb)) {
        half_powm(tp, k->p, k->pm1, k->p2, k->mp2);
        half_powm(tq, k->q, k->qm1, k->q2, k->mq2);
    }
    half_finish(tp, k->p, k->hp, mp);
    half_finish(tq, k->q, k->hq, mq);
    pvg_he_mpz_wipe(tp);
    pvg_he_mpz_wipe(tq);
}

void pvg_he_decrypt_half(const pvg_paillier_priv *k, const mpz_t c, int q, mpz_t out)
{
    mpz_t t;
    mpz_init(t);
    half_reduce(c, q ? k->q2 : k->p2, t);
    if (q)
        half_powm(t, k->q, k->qm1, k->q2, k->mq2);
    else
        half_powm(t, k->p, k->pm1, k->p2, k->mp2);
    half_finish(t, q ? k->q : k->p, q ? k->hq : k->hp, out);
    pvg_he_mpz_wipe(t);
}

void pvg_he_decrypt_crt(const pvg_paillier_priv *k, const mpz_t mp, const mpz_t mq, mpz_t m)
{
    /* m = mp + ((mq - mp) * p^-1 mod q) * p */
    mpz_t u;
    mpz_init(u);
    mpz_sub(u, mq, mp);
    mpz_mul(u, u, k->pinv);
    mpz_mod(u, u, k->q);
    mpz_mul(u, u, k->p);
    mpz_add(m, mp, u);
    pvg_he_mpz_wipe(u);
}

void pvg_he_raw_decrypt(const pvg_paillier_priv *k, const mpz_t c, mpz_t m)
{
    mpz_t mp, mq;
    mpz_inits(mp, mq, NULL);
    pvg_he_decrypt_halves(k, c, mp, mq);
    pvg_he_decrypt_crt(k, mp, mq, m);
    pvg_he_mpz_wipe(mp);
    pvg_he_mpz_wipe(mq);
}

void pvg_he_raw_decrypt_textbook(const pvg_paillier_priv *k, const mpz_t c, mpz_t m)
{
    const pvg_paillier_pub *pub = k->pub;
    mpz_t lambda, mu, g, t;
    mpz_inits(lambda, mu, g, t, NULL);
    mpz_lcm(lambda, k->pm1, k->qm1);
    mpz_add_ui(g, pub->n, 1);
    mpz_powm_sec(t, g, lambda, pub->n2);
    mpz_sub_ui(t, t, 1);
    mpz_divexact(t, t, pub->n);
    mpz_invert(mu, t, pub->n);
    mpz_powm_sec(t, c, lambda, pub->n2);
    mpz_sub_ui(t, t, 1);
    mpz_divexact(t, t, pub->n);
    mpz_mul(t, t, mu);
    mpz_mod(m, t, pub->n);
    pvg_he_mpz_wipe(lambda);
    pvg_he_mpz_wipe(mu);
    pvg_he_mpz_wipe(t);
    mpz_clear(g);
}

int pvg_he_in_group(const pvg_paillier_pub *pub, const mpz_t c)
{
    if (mpz_sgn(c) <= 0 || mpz_cmp(c, pub->n2) >= 0) return 0;
    mpz_t g;
    mpz_init(g);
    mpz_gcd(g, c, pub->n);
    int ok = mpz_cmp_ui(g, 1) == 0;
    mpz_clear(g);
    return ok;
}

/* ---- ciphertext objects -------------------------------------------------------- */

pvg_paillier_ct *pvg_paillier_ct_new(const pvg_paillier_pub *pub)
{
    if (!pub) return NULL;
    pvg_paillier_ct *ct = calloc(1, sizeof *ct);
    if (!ct) return NULL;
    ct->pub = pub;
    mpz_init_set_ui(ct->c, 1);
    ct->exponent = 0;
    return ct;
}

void pvg_paillier_ct_free(pvg_paillier_ct *ct)
{
    if (!ct) return;
    mpz_clear(ct->c);
    free(ct);
}

void pvg_paillier_ct_array_free(pvg_paillier_ct **cts, size_t count)
{
    if (!cts) return;
    for (size_t i = 0; i < count; i++)
        pvg_paillier_ct_free(cts[i]);
    free(cts);
}

static pvg_status same_key(const pvg_paillier_pub *a, const pvg_paillier_pub *b, pvg_error *err)
{
    if (!pvg_paillier_pub_equal(a, b))
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "key does not match: the ciphertexts are under different public keys");
    return PVG_OK;
}

pvg_status pvg_paillier_ct_copy(pvg_paillier_ct *dst, const pvg_paillier_ct *src, pvg_error *err)
{
    pvg_status st = same_key(dst->pub, src->pub, err);
    if (st != PVG_OK) return st;
    mpz_set(dst->c, src->c);
    dst->exponent = src->exponent;
    return PVG_OK;
}

int pvg_paillier_ct_exponent(const pvg_paillier_ct *ct)
{
    return ct->exponent;
}

const pvg_paillier_pub *pvg_paillier_ct_pub(const pvg_paillier_ct *ct)
{
    return ct->pub;
}

pvg_status pvg_paillier_ct_set_decimal(pvg_paillier_ct *ct, const char *v, long exponent,
                                       pvg_error *err)
{
    if (!v || !*v) return pvg_error_set(err, PVG_ERR_INVALID, "ciphertext is empty");
    size_t len = strlen(v);
    size_t max_digits = mpz_sizeinbase(ct->pub->n2, 10) + 1;
    if (len > max_digits)
        return pvg_error_set(
            err, PVG_ERR_INVALID,
            "ciphertext has %zu digits; a ciphertext under this key has at most %zu", len,
            max_digits - 1);
    for (size_t i = 0; i < len; i++)
        if (v[i] < '0' || v[i] > '9')
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "ciphertext: expected decimal digits, found '%c' at offset %zu",
                                 v[i], i);
    if (exponent < -PVG_HE_EXP_LIMIT || exponent > PVG_HE_EXP_LIMIT)
        return pvg_error_set(err, PVG_ERR_INVALID, "exponent %ld is outside [-%d, %d]", exponent,
                             PVG_HE_EXP_LIMIT, PVG_HE_EXP_LIMIT);
    mpz_t c;
    mpz_init(c);
    mpz_set_str(c, v, 10);
    if (!pvg_he_in_group(ct->pub, c)) {
        mpz_clear(c);
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ciphertext is not in Z*_{n^2} of this key (zero, too large or "
                             "sharing a factor with n): made under another key, or corrupt");
    }
    mpz_swap(ct->c, c);
    mpz_clear(c);
    ct->exponent = (int)exponent;
    return PVG_OK;
}

char *pvg_paillier_ct_decimal(const pvg_paillier_ct *ct)
{
    char *s = malloc(mpz_sizeinbase(ct->c, 10) + 2);
    if (s) mpz_get_str(s, 10, ct->c);
    return s;
}

/* ---- homomorphic operations ------------------------------------------------------ */

/* c' = c^(16^d) mod n^2: the plaintext times 16^d, exponent lowered by d.
 * As in python-paillier (which encodes 16^d as an integer scalar), 16^d
 * must not exceed max_int. */
pvg_status pvg_he_lower_exponent(const pvg_paillier_pub *pub, mpz_t c, long d, pvg_error *err)
{
    if (d <= 0) return PVG_OK;
    if ((size_t)d * 4 + 1 > pub->bits)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "cannot lower the exponent by %ld: 16^%ld exceeds the key's max_int",
                             d, d);
    mpz_t f;
    mpz_init(f);
    mpz_ui_pow_ui(f, 16, (unsigned long)d);
    pvg_status st = PVG_OK;
    if (mpz_cmp(f, pub->max_int) > 0)
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "cannot lower the exponent by %ld: 16^%ld exceeds the key's max_int", d,
                           d);
    else
        mpz_powm(c, c, f, pub->n2);
    mpz_clear(f);
    return st;
}

pvg_status pvg_paillier_decrease_exponent(pvg_paillier_ct *ct, int new_exp, pvg_error *err)
{
    if (new_exp > ct->exponent)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "new exponent %d is larger than the current exponent %d", new_exp,
                             ct->exponent);
    if (new_exp < -PVG_HE_EXP_LIMIT)
        return pvg_error_set(err, PVG_ERR_INVALID, "exponent %d is below -%d", new_exp,
                             PVG_HE_EXP_LIMIT);
    pvg_status st = pvg_he_lower_exponent(ct->pub, ct->c, (long)ct->exponent - new_exp, err);
    if (st == PVG_OK) ct->exponent = new_exp;
    return st;
}

pvg_status pvg_paillier_add(pvg_paillier_ct *out, const pvg_paillier_ct *a,
                            const pvg_paillier_ct *b, pvg_error *err)
{
    pvg_status st = same_key(a->pub, b->pub, err);
    if (st == PVG_OK) st = same_key(out->pub, a->pub, err);
    if (st != PVG_OK) return st;
    const pvg_paillier_pub *pub = a->pub;
    if (a->exponent == b->exponent) {
        pvg_he_mulmod(pub, out->c, a->c, b->c);
        out->exponent = a->exponent;
        return PVG_OK;
    }
    /* Align to the smaller exponent (python-paillier's _add_encrypted). */
    const pvg_paillier_ct *hi = a->exponent > b->exponent ? a : b;
    const pvg_paillier_ct *lo = hi == a ? b : a;
    mpz_t t;
    mpz_init_set(t, hi->c);
    st = pvg_he_lower_exponent(pub, t, (long)hi->exponent - lo->exponent, err);
    if (st == PVG_OK) {
        pvg_he_mulmod(pub, out->c, t, lo->c);
        out->exponent = lo->exponent;
    }
    mpz_clear(t);
    return st;
}

pvg_status pvg_paillier_add_text(pvg_paillier_ct *out, const pvg_paillier_ct *a, const char *x,
                                 pvg_error *err)
{
    pvg_status st = same_key(out->pub, a->pub, err);
    if (st != PVG_OK) return st;
    const pvg_paillier_pub *pub = a->pub;
    mpz_t enc, t;
    mpz_inits(enc, t, NULL);
    long exp = 0;
    st = pvg_he_encode_text(pub, x, 1, a->exponent, enc, &exp, err);
    if (st == PVG_OK) {
        int new_exp = (int)exp; /* <= a->exponent */
        mpz_set(t, a->c);
        st = pvg_he_lower_exponent(pub, t, (long)a->exponent - new_exp, err);
    }
    if (st == PVG_OK) {
        int new_exp = (int)exp;
        mpz_t e;
        mpz_init(e);
        pvg_he_raw_encrypt(pub, enc, NULL, e);
        mpz_mul(out->c, t, e);
        mpz_mod(out->c, out->c, pub->n2);
        out->exponent = new_exp;
        mpz_clear(e);
    }
    mpz_clears(enc, t, NULL);
    return st;
}

/* out = a^enc with python-paillier's negative shortcut. */
static pvg_status raw_mul(pvg_paillier_ct *out, const pvg_paillier_ct *a, const mpz_t enc, long exp,
                          pvg_error *err)
{
    const pvg_paillier_pub *pub = a->pub;
    long new_exp = (long)a->exponent + exp;
    if (new_exp < -PVG_HE_EXP_LIMIT || new_exp > PVG_HE_EXP_LIMIT)
        return pvg_error_set(err, PVG_ERR_INVALID, "product exponent %ld is outside [-%d, %d]",
                             new_exp, PVG_HE_EXP_LIMIT, PVG_HE_EXP_LIMIT);
    if (mpz_cmp(enc, pub->neg_floor) >= 0) {
        mpz_t inv, k;
        mpz_inits(inv, k, NULL);
        if (!mpz_invert(inv, a->c, pub->n2)) {
            mpz_clears(inv, k, NULL);
            return pvg_error_set(err, PVG_ERR_INVALID, "ciphertext is not invertible mod n^2");
        }
        mpz_sub(k, pub->n, enc);
        mpz_powm(out->c, inv, k, pub->n2);
        mpz_clears(inv, k, NULL);
    } else {
        mpz_powm(out->c, a->c, enc, pub->n2);
    }
    out->exponent = (int)new_exp;
    return PVG_OK;
}

pvg_status pvg_paillier_mul_text(pvg_paillier_ct *out, const pvg_paillier_ct *a, const char *k,
                                 pvg_error *err)
{
    pvg_status st = same_key(out->pub, a->pub, err);
    if (st != PVG_OK) return st;
    mpz_t enc;
    mpz_init(enc);
    long exp = 0;
    st = pvg_he_encode_text(a->pub, k, 0, 0, enc, &exp, err);
    if (st == PVG_OK) st = raw_mul(out, a, enc, exp, err);
    mpz_clear(enc);
    return st;
}

pvg_status pvg_paillier_mul_int64(pvg_paillier_ct *out, const pvg_paillier_ct *a, int64_t k,
                                  pvg_error *err)
{
    pvg_status st = same_key(out->pub, a->pub, err);
    if (st != PVG_OK) return st;
    mpz_t v, enc;
    mpz_inits(v, enc, NULL);
    mpz_set_si(v, (long)k);
    st = pvg_he_encode_mpz(a->pub, v, enc, err);
    if (st == PVG_OK) st = raw_mul(out, a, enc, 0, err);
    mpz_clears(v, enc, NULL);
    return st;
}

pvg_status pvg_paillier_negate(pvg_paillier_ct *out, const pvg_paillier_ct *a, pvg_error *err)
{
    pvg_status st = same_key(out->pub, a->pub, err);
    if (st != PVG_OK) return st;
    if (!mpz_invert(out->c, a->c, a->pub->n2))
        return pvg_error_set(err, PVG_ERR_INVALID, "ciphertext is not invertible mod n^2");
    out->exponent = a->exponent;
    return PVG_OK;
}

/* ---- decryption ------------------------------------------------------------------ */

static pvg_status decrypt_mantissa(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                   mpz_t mant, pvg_error *err)
{
    pvg_status st = same_key(priv->pub, ct->pub, err);
    if (st != PVG_OK) return st;
    if (!pvg_he_in_group(priv->pub, ct->c))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ciphertext is not in Z*_{n^2} of this key: made under another key, "
                             "or corrupt");
    mpz_t m;
    mpz_init(m);
    pvg_he_raw_decrypt(priv, ct->c, m);
    st = pvg_he_decode_mantissa(priv->pub, m, mant, err);
    pvg_he_mpz_wipe(m);
    /* A ciphertext made under another key (or corrupted) is still an element
     * of Z*_{n^2}, and decrypts to a number spread uniformly over [0, n):
     * the overflow band above catches a third of them; the rest would come
     * out as numbers of ~bits(n) bits. No encoding of a real number comes
     * near: refuse a mantissa of half the key's bits or more (2^1024 for a
     * 2048-bit key: beyond every double), which a uniform plaintext escapes
     * with probability about 2^-(bits(n)/2). */
    if (st == PVG_OK && mpz_sizeinbase(mant, 2) > priv->pub->bits / 2) {
        size_t got = mpz_sizeinbase(mant, 2);
        mpz_set_ui(mant, 0);
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "the decrypted number (%zu bits) is outside the range of values "
                             "this %u-bit key encodes (below 2^%u): the ciphertext was made "
                             "under another key, or it is corrupt",
                             got, priv->pub->bits, priv->pub->bits / 2);
    }
    return st;
}

pvg_status pvg_paillier_decrypt_double(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                       double *out, pvg_error *err)
{
    *out = 0;
    mpz_t mant;
    mpz_init(mant);
    pvg_status st = decrypt_mantissa(priv, ct, mant, err);
    if (st == PVG_OK) st = pvg_he_mantissa_to_double(mant, ct->exponent, out, err);
    pvg_he_mpz_wipe(mant);
    return st;
}

pvg_status pvg_paillier_decrypt_text(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                     char **out, pvg_error *err)
{
    *out = NULL;
    mpz_t mant;
    mpz_init(mant);
    pvg_status st = decrypt_mantissa(priv, ct, mant, err);
    if (st == PVG_OK) st = pvg_he_mantissa_to_text(mant, ct->exponent, out, err);
    pvg_he_mpz_wipe(mant);
    return st;
}

pvg_status pvg_paillier_decrypt_exact(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                      char **out, pvg_error *err)
{
    *out = NULL;
    mpz_t mant;
    mpz_init(mant);
    pvg_status st = decrypt_mantissa(priv, ct, mant, err);
    if (st == PVG_OK) st = pvg_he_mantissa_to_exact(mant, ct->exponent, out, err);
    pvg_he_mpz_wipe(mant);
    return st;
}
