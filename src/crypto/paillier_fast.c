/*
 * paillier_fast.c - encryptors: where the obfuscator r^n of each encryption
 * comes from, the encryption entry points, and packing of small values.
 *
 * FRESH: r uniform in [1, n), obfuscator r^n mod n^2 (one 2*bits-modulus
 *        exponentiation with a bits-long exponent per encryption).
 * DJN:   Damgard-Jurik-Nielsen short-exponent obfuscator. Once per
 *        encryptor: x uniform in Z*_n, h = -x^2 mod n, hs = h^n mod n^2.
 *        Per encryption: a uniform of 2*k bits (k = security level of the
 *        modulus: 112 bits for 2048, 128 for 3072, ...), obfuscator hs^a.
 *        Security argument (docs/paillier.md): hs^a = (h^a)^n is an n-th
 *        residue, so E(m) = g^m * hs^a stays a valid Paillier ciphertext
 *        decrypting to m. h generates (with overwhelming probability) the
 *        group of squares with Jacobi symbol 1 mod n, a cyclic subgroup
 *        of order about n/4. If a were uniform in [0, n) the obfuscator
 *        would be a uniform n-th residue of that subgroup and the scheme
 *        exactly as secure as Paillier under DCR (the subgroup of
 *        squares is indistinguishable from the full group under the
 *        quadratic residuosity assumption, implied by factoring-based
 *        hardness here). Taking a of 2k bits instead is the
 *        short-exponent assumption: h^a for a 2k-bit a is
 *        indistinguishable from h^a for a full-length a (Koshiba-Kurosawa:
 *        it follows from the hardness of the discrete log with short
 *        exponents, whose best attacks — Pollard lambda / baby-step
 *        giant-step — cost 2^(bits(a)/2) = 2^k). This is the encryption
 *        used by DJN's generalisation paper (PKC 2010, section 4.1) and
 *        by production libraries.
 *        Fixed-base comb: the exponent is cut into windows of W bits;
 *        table[i][j] = hs^(j * 2^(W*i)); hs^a = prod_i table[i][a_i],
 *        one Montgomery product per window (paillier_mont.c).
 *        Each lookup scans the whole row with masks (constant-time
 *        selection), so memory access does not depend on a.
 *        Shapes: windows = ceil(bits(a)/W), row = 2^W entries of
 *        limbs(n^2) limbs; at 2048 bits: 38 x 64 x 64 limbs (1.2 MiB).
 * POOL:  FRESH obfuscators computed ahead by background threads into a
 *        bounded ring; encryption takes one (waits when the ring is empty).
 */
#include "crypto/paillier_internal.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define DJN_W 6
#define DJN_ROW (1u << DJN_W)

struct pvg_paillier_enc {
    const pvg_paillier_pub *pub;
    pvg_paillier_obf mode;
    pvg_rng *rng; /* owned; used by the calling thread */
    /* DJN */
    unsigned abits, nwin;
    size_t limbs;     /* limbs of n^2 */
    mp_limb_t *table; /* nwin * DJN_ROW * limbs */
    mp_limb_t *sel;   /* limbs: the selected entry */
    mpz_t hs;         /* the fixed base (kept for the reference kernel) */
    pvg_he_acc *acc;  /* the comb's running product (paillier_mont.c) */
    int has_hs;
    /* POOL */
    unsigned nthreads;
    pthread_t *threads;
    pvg_rng **wrng;
    unsigned wrng_len;
    mpz_t *ring;
    size_t cap, head, count;
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    int stop, sync_ready;
};

unsigned pvg_paillier_djn_exponent_bits(unsigned modulus_bits)
{
    unsigned k;
    if (modulus_bits < 3072)
        k = 112;
    else if (modulus_bits < 7680)
        k = 128;
    else if (modulus_bits < 15360)
        k = 192;
    else
        k = 256;
    return 2 * k;
}

const pvg_paillier_pub *pvg_he_enc_pub(const pvg_paillier_enc *enc)
{
    return enc->pub;
}

static void fresh_obfuscator(const pvg_paillier_pub *pub, pvg_rng *rng, mpz_t out)
{
    mpz_t r;
    mpz_init(r);
    pvg_he_random_below_n(rng, pub->n, r);
    mpz_powm(out, r, pub->n, pub->n2);
    pvg_he_mpz_wipe(r);
}

/* ---- DJN ---------------------------------------------------------------------- */

static void limbs_from_mpz(mp_limb_t *dst, size_t limbs, const mpz_t x)
{
    size_t n = mpz_size(x);
    for (size_t i = 0; i < limbs; i++)
        dst[i] = i < n ? mpz_getlimbn(x, (mp_size_t)i) : 0;
}

static pvg_status djn_setup(pvg_paillier_enc *enc, pvg_error *err)
{
    const pvg_paillier_pub *pub = enc->pub;
    enc->abits = pvg_paillier_djn_exponent_bits(pub->bits);
    enc->nwin = (enc->abits + DJN_W - 1) / DJN_W;
    enc->limbs = mpz_size(pub->n2);
    size_t entries = (size_t)enc->nwin * DJN_ROW;
    enc->table = malloc(entries * enc->limbs * sizeof(mp_limb_t));
    enc->sel = malloc(enc->limbs * sizeof(mp_limb_t));
    enc->acc = pvg_he_acc_new(pub);
    if (!enc->table || !enc->sel || !enc->acc)
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    mpz_t x, h, base, cur, g;
    mpz_inits(x, h, base, cur, g, NULL);
    do {
        pvg_he_random_below_n(enc->rng, pub->n, x);
        mpz_gcd(g, x, pub->n);
    } while (mpz_cmp_ui(g, 1) != 0);
    mpz_mul(h, x, x);
    mpz_mod(h, h, pub->n);
    mpz_sub(h, pub->n, h);              /* h = -x^2 mod n */
    mpz_powm(base, h, pub->n, pub->n2); /* hs = h^n mod n^2 */
    mpz_init_set(enc->hs, base);
    enc->has_hs = 1;
    for (unsigned i = 0; i < enc->nwin; i++) {
        mp_limb_t *row = enc->table + (size_t)i * DJN_ROW * enc->limbs;
        mpz_set_ui(cur, 1);
        for (unsigned j = 0; j < DJN_ROW; j++) {
            limbs_from_mpz(row + (size_t)j * enc->limbs, enc->limbs, cur);
            mpz_mul(cur, cur, base);
            mpz_mod(cur, cur, pub->n2);
        }
        mpz_swap(base, cur); /* base^(2^W) */
    }
    pvg_he_mpz_wipe(x);
    pvg_he_mpz_wipe(h);
    mpz_clears(base, cur, g, NULL);
    return PVG_OK;
}

/* Constant-time: sel = row[idx]. */
static void djn_select(const mp_limb_t *row, size_t limbs, unsigned idx, mp_limb_t *sel)
{
    memset(sel, 0, limbs * sizeof *sel);
    for (unsigned j = 0; j < DJN_ROW; j++) {
        uint64_t diff = (uint64_t)(j ^ idx);
        mp_limb_t mask = (mp_limb_t)0 - (mp_limb_t)((diff - 1) >> 63); /* all ones iff j == idx */
        const mp_limb_t *e = row + (size_t)j * limbs;
        for (size_t k = 0; k < limbs; k++)
            sel[k] |= e[k] & mask;
    }
}

/* hs^a for a little-endian exponent a of enc->abits bits: the fixed-base
 * comb, one constant-time row selection and one product per window. */
static void djn_comb(pvg_paillier_enc *enc, const unsigned char *a, mpz_t out)
{
    mpz_t selz;
    /* one Montgomery product per window (the key's kernel), see
     * paillier_mont.c */
    pvg_he_acc_reset(enc->acc);
    for (unsigned i = 0; i < enc->nwin; i++) {
        unsigned idx = 0;
        for (unsigned b = 0; b < DJN_W; b++) {
            unsigned bit = i * DJN_W + b;
            if (bit < enc->abits) idx |= (unsigned)((a[bit / 8] >> (bit % 8)) & 1u) << b;
        }
        djn_select(enc->table + (size_t)i * DJN_ROW * enc->limbs, enc->limbs, idx, enc->sel);
        mpz_roinit_n(selz, enc->sel, (mp_size_t)enc->limbs);
        pvg_he_acc_mul(enc->acc, selz);
    }
    pvg_he_acc_get(enc->acc, out);
    sodium_memzero(enc->sel, enc->limbs * sizeof(mp_limb_t));
}

static void djn_obfuscator(pvg_paillier_enc *enc, mpz_t out)
{
    unsigned char a[64]; /* abits <= 512 */
    size_t abytes = (enc->abits + 7) / 8;
    memset(a, 0, sizeof a);
    pvg_rng_bytes(enc->rng, a, abytes);
    if (enc->abits % 8) a[abytes - 1] &= (unsigned char)((1u << (enc->abits % 8)) - 1);
    djn_comb(enc, a, out);
    sodium_memzero(a, sizeof a);
}

int pvg_he_djn_check(pvg_paillier_enc *enc, const unsigned char *a, size_t len, mpz_t fast,
                     mpz_t naive)
{
    if (enc->mode != PVG_PAILLIER_OBF_DJN || len * 8 < enc->abits) return 0;
    djn_comb(enc, a, fast);
    mpz_t e;
    mpz_init(e);
    mpz_import(e, (enc->abits + 7) / 8, -1, 1, 0, 0, a); /* little-endian bytes */
    mpz_fdiv_r_2exp(e, e, enc->abits);
    mpz_powm(naive, enc->hs, e, enc->pub->n2);
    mpz_clear(e);
    return 1;
}

/* ---- POOL ---------------------------------------------------------------------- */

typedef struct pool_arg {
    pvg_paillier_enc *enc;
    unsigned idx;
} pool_arg;

static void *pool_worker(void *p)
{
    pool_arg *arg = p;
    pvg_paillier_enc *enc = arg->enc;
    pvg_rng *rng = enc->wrng[arg->idx];
    free(arg);
    mpz_t obf;
    mpz_init(obf);
    for (;;) {
        pthread_mutex_lock(&enc->mu);
        while (enc->count == enc->cap && !enc->stop)
            pthread_cond_wait(&enc->not_full, &enc->mu);
        int stop = enc->stop;
        pthread_mutex_unlock(&enc->mu);
        if (stop) break;
        fresh_obfuscator(enc->pub, rng, obf);
        pthread_mutex_lock(&enc->mu);
        if (enc->count < enc->cap) {
            size_t slot = (enc->head + enc->count) % enc->cap;
            mpz_swap(enc->ring[slot], obf);
            enc->count++;
            pthread_cond_signal(&enc->not_empty);
        }
        pthread_mutex_unlock(&enc->mu);
    }
    pvg_he_mpz_wipe(obf);
    return NULL;
}

static void pool_take(pvg_paillier_enc *enc, mpz_t out)
{
    pthread_mutex_lock(&enc->mu);
    while (enc->count == 0)
        pthread_cond_wait(&enc->not_empty, &enc->mu);
    mpz_swap(out, enc->ring[enc->head]);
    enc->head = (enc->head + 1) % enc->cap;
    enc->count--;
    pthread_cond_signal(&enc->not_full);
    pthread_mutex_unlock(&enc->mu);
}

static pvg_status pool_start(pvg_paillier_enc *enc, unsigned threads, size_t cap, pvg_error *err)
{
    enc->cap = cap ? cap : 256;
    enc->nthreads = 0;
    enc->ring = calloc(enc->cap, sizeof(mpz_t));
    enc->threads = calloc(threads, sizeof(pthread_t));
    enc->wrng = calloc(threads, sizeof(pvg_rng *));
    if (!enc->ring || !enc->threads || !enc->wrng)
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    enc->wrng_len = threads;
    for (size_t i = 0; i < enc->cap; i++)
        mpz_init(enc->ring[i]);
    pthread_mutex_init(&enc->mu, NULL);
    pthread_cond_init(&enc->not_empty, NULL);
    pthread_cond_init(&enc->not_full, NULL);
    enc->sync_ready = 1;
    for (unsigned t = 0; t < threads; t++) {
        enc->wrng[t] = pvg_rng_split(enc->rng);
        pool_arg *arg = malloc(sizeof *arg);
        if (!enc->wrng[t] || !arg) {
            free(arg);
            return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        }
        arg->enc = enc;
        arg->idx = t;
        if (pthread_create(&enc->threads[t], NULL, pool_worker, arg) != 0) {
            free(arg);
            return pvg_error_set(err, PVG_ERR_INTERNAL, "cannot start obfuscator thread %u", t);
        }
        enc->nthreads++;
    }
    return PVG_OK;
}

/* ---- encryptor ------------------------------------------------------------------- */

void pvg_paillier_enc_free(pvg_paillier_enc *enc)
{
    if (!enc) return;
    if (enc->sync_ready) {
        pthread_mutex_lock(&enc->mu);
        enc->stop = 1;
        pthread_cond_broadcast(&enc->not_full);
        pthread_cond_broadcast(&enc->not_empty);
        pthread_mutex_unlock(&enc->mu);
        for (unsigned t = 0; t < enc->nthreads; t++)
            pthread_join(enc->threads[t], NULL);
        pthread_mutex_destroy(&enc->mu);
        pthread_cond_destroy(&enc->not_empty);
        pthread_cond_destroy(&enc->not_full);
    }
    if (enc->ring) {
        for (size_t i = 0; i < enc->cap; i++)
            pvg_he_mpz_wipe(enc->ring[i]);
        free(enc->ring);
    }
    if (enc->wrng) {
        for (unsigned t = 0; t < enc->wrng_len; t++)
            pvg_rng_free(enc->wrng[t]);
        free(enc->wrng);
    }
    free(enc->threads);
    if (enc->table) {
        sodium_memzero(enc->table, (size_t)enc->nwin * DJN_ROW * enc->limbs * sizeof(mp_limb_t));
        free(enc->table);
    }
    if (enc->sel) free(enc->sel);
    pvg_he_acc_free(enc->acc);
    if (enc->has_hs) mpz_clear(enc->hs);
    pvg_rng_free(enc->rng);
    free(enc);
}

pvg_status pvg_paillier_enc_new(const pvg_paillier_pub *pub, const pvg_paillier_enc_options *opts,
                                pvg_paillier_enc **out, pvg_error *err)
{
    *out = NULL;
    if (!pub) return pvg_error_set(err, PVG_ERR_INVALID, "no public key");
    pvg_paillier_enc_options def = {0};
    if (!opts) opts = &def;
    if (opts->mode != PVG_PAILLIER_OBF_FRESH && opts->mode != PVG_PAILLIER_OBF_DJN &&
        opts->mode != PVG_PAILLIER_OBF_POOL)
        return pvg_error_set(err, PVG_ERR_INVALID, "unknown obfuscator mode %d", (int)opts->mode);
    pvg_status rs =
        pvg_rng_require_secure(opts->rng, opts->allow_insecure_rng, "an encryption", err);
    if (rs != PVG_OK) return rs;
    if (opts->mode == PVG_PAILLIER_OBF_POOL && opts->threads > 256)
        return pvg_error_set(err, PVG_ERR_INVALID, "at most 256 pool threads");
    pvg_he_gmp_init();
    pvg_paillier_enc *enc = calloc(1, sizeof *enc);
    if (!enc) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    enc->pub = pub;
    enc->mode = opts->mode;
    enc->rng = opts->rng ? pvg_rng_split(opts->rng) : pvg_rng_new_secure();
    if (!enc->rng) {
        free(enc);
        return pvg_error_set(err, PVG_ERR_NOMEM, "cannot create a random generator");
    }
    pvg_status st = PVG_OK;
    if (opts->mode == PVG_PAILLIER_OBF_DJN) st = djn_setup(enc, err);
    if (opts->mode == PVG_PAILLIER_OBF_POOL)
        st = pool_start(enc, opts->threads ? opts->threads : 1, opts->pool_size, err);
    if (st != PVG_OK) {
        pvg_paillier_enc_free(enc);
        return st;
    }
    *out = enc;
    return PVG_OK;
}

pvg_status pvg_he_enc_obfuscator(pvg_paillier_enc *enc, mpz_t out, pvg_error *err)
{
    switch (enc->mode) {
    case PVG_PAILLIER_OBF_FRESH:
        fresh_obfuscator(enc->pub, enc->rng, out);
        return PVG_OK;
    case PVG_PAILLIER_OBF_DJN:
        djn_obfuscator(enc, out);
        return PVG_OK;
    case PVG_PAILLIER_OBF_POOL:
        pool_take(enc, out);
        return PVG_OK;
    }
    assert(!"pvg_paillier_enc_new admits only the three modes");
    return pvg_error_set(err, PVG_ERR_INTERNAL, "bad obfuscator mode");
}

/* ---- encryption entry points ------------------------------------------------------ */

static pvg_status encrypt_encoded(pvg_paillier_enc *enc, const mpz_t m, long exponent,
                                  pvg_paillier_ct *out, pvg_error *err)
{
    if (!pvg_paillier_pub_equal(out->pub, enc->pub))
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "key does not match: the output ciphertext is under another key");
    mpz_t obf;
    mpz_init(obf);
    pvg_status st = pvg_he_enc_obfuscator(enc, obf, err);
    if (st == PVG_OK) {
        pvg_he_raw_encrypt(enc->pub, m, obf, out->c);
        out->exponent = (int)exponent;
    }
    pvg_he_mpz_wipe(obf);
    return st;
}

pvg_status pvg_paillier_encrypt_text(pvg_paillier_enc *enc, const char *text, int max_exponent,
                                     pvg_paillier_ct *out, pvg_error *err)
{
    mpz_t m;
    mpz_init(m);
    long exp = 0;
    pvg_status st =
        pvg_he_encode_text(enc->pub, text, max_exponent != INT_MAX, max_exponent, m, &exp, err);
    if (st == PVG_OK) st = encrypt_encoded(enc, m, exp, out, err);
    pvg_he_mpz_wipe(m);
    return st;
}

pvg_status pvg_paillier_encrypt_double(pvg_paillier_enc *enc, double x, double precision,
                                       int max_exponent, pvg_paillier_ct *out, pvg_error *err)
{
    mpz_t m;
    mpz_init(m);
    long exp = 0;
    pvg_status st = pvg_he_encode_double(enc->pub, x, precision, max_exponent != INT_MAX,
                                         max_exponent, m, &exp, err);
    if (st == PVG_OK) st = encrypt_encoded(enc, m, exp, out, err);
    pvg_he_mpz_wipe(m);
    return st;
}

pvg_status pvg_paillier_encrypt_int64(pvg_paillier_enc *enc, int64_t x, pvg_paillier_ct *out,
                                      pvg_error *err)
{
    mpz_t v, m;
    mpz_inits(v, m, NULL);
    mpz_set_si(v, (long)x);
    pvg_status st = pvg_he_encode_mpz(enc->pub, v, m, err);
    if (st == PVG_OK) st = encrypt_encoded(enc, m, 0, out, err);
    pvg_he_mpz_wipe(v);
    pvg_he_mpz_wipe(m);
    return st;
}

pvg_status pvg_paillier_rerandomize(pvg_paillier_enc *enc, pvg_paillier_ct *ct, pvg_error *err)
{
    if (!pvg_paillier_pub_equal(ct->pub, enc->pub))
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "key does not match: the ciphertext is under another key");
    mpz_t obf;
    mpz_init(obf);
    pvg_status st = pvg_he_enc_obfuscator(enc, obf, err);
    if (st == PVG_OK) {
        mpz_mul(ct->c, ct->c, obf);
        mpz_mod(ct->c, ct->c, enc->pub->n2);
    }
    pvg_he_mpz_wipe(obf);
    return st;
}

/* ---- packing ------------------------------------------------------------------------ */

size_t pvg_paillier_packed_capacity(const pvg_paillier_pub *pub, unsigned slot_bits,
                                    unsigned headroom_bits)
{
    unsigned B = slot_bits + headroom_bits;
    if (slot_bits == 0 || B == 0 || B > 64 || pub->bits < 4) return 0;
    /* The packed value stays below 2^(bits-3) <= n/4 < max_int: always a
     * positive encoding. */
    return (size_t)(pub->bits - 3) / B;
}

pvg_status pvg_paillier_encrypt_packed(pvg_paillier_enc *enc, const uint64_t *values, size_t count,
                                       unsigned slot_bits, unsigned headroom_bits,
                                       pvg_paillier_ct *out, pvg_error *err)
{
    size_t cap = pvg_paillier_packed_capacity(enc->pub, slot_bits, headroom_bits);
    if (cap == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "slot of %u + %u bits: expected 1..64 bits in all, slot_bits >= 1",
                             slot_bits, headroom_bits);
    if (count > cap)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "%zu values do not fit: at most %zu slots of %u bits in this key",
                             count, cap, slot_bits + headroom_bits);
    unsigned B = slot_bits + headroom_bits;
    mpz_t m, v;
    mpz_inits(m, v, NULL);
    pvg_status st = PVG_OK;
    for (size_t i = count; i-- > 0;) {
        if (slot_bits < 64 && values[i] >> slot_bits) {
            st = pvg_error_set(err, PVG_ERR_INVALID, "value %zu (%llu) does not fit in %u bits", i,
                               (unsigned long long)values[i], slot_bits);
            break;
        }
        mpz_mul_2exp(m, m, B);
        mpz_set_ui(v, (unsigned long)values[i]);
        mpz_add(m, m, v);
    }
    if (st == PVG_OK) st = encrypt_encoded(enc, m, 0, out, err);
    pvg_he_mpz_wipe(m);
    pvg_he_mpz_wipe(v);
    return st;
}

pvg_status pvg_paillier_decrypt_packed(const pvg_paillier_priv *priv, const pvg_paillier_ct *ct,
                                       size_t count, unsigned slot_bits, unsigned headroom_bits,
                                       uint64_t *out, pvg_error *err)
{
    size_t cap = pvg_paillier_packed_capacity(priv->pub, slot_bits, headroom_bits);
    if (cap == 0 || count > cap)
        return pvg_error_set(err, PVG_ERR_INVALID, "%zu slots of %u bits do not fit in this key",
                             count, slot_bits + headroom_bits);
    if (!pvg_paillier_pub_equal(priv->pub, ct->pub))
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "key does not match: the ciphertext is under another key");
    if (!pvg_he_in_group(priv->pub, ct->c))
        return pvg_error_set(err, PVG_ERR_INVALID, "ciphertext is not in Z*_{n^2}");
    if (ct->exponent != 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "packed ciphertexts have exponent 0, not %d",
                             ct->exponent);
    unsigned B = slot_bits + headroom_bits;
    mpz_t m, s;
    mpz_inits(m, s, NULL);
    pvg_he_raw_decrypt(priv, ct->c, m);
    pvg_status st = PVG_OK;
    if (mpz_sizeinbase(m, 2) > (size_t)cap * B && mpz_sgn(m) != 0)
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "packed sum overflowed its slots (more additions than the headroom)");
    for (size_t i = 0; i < count && st == PVG_OK; i++) {
        mpz_fdiv_r_2exp(s, m, B);
        out[i] = (uint64_t)mpz_get_ui(s);
        mpz_fdiv_q_2exp(m, m, B);
    }
    pvg_he_mpz_wipe(m);
    pvg_he_mpz_wipe(s);
    return st;
}
