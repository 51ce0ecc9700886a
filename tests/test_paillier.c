/*
 * test_paillier.c - Paillier: known-answer vectors (hand-worked small keys,
 * python-paillier's regression vectors), CRT against textbook decryption,
 * python-paillier's EncodedNumber vectors, homomorphic operations, the
 * three obfuscators, packing, the JSON formats and malformed input.
 */
#define _GNU_SOURCE 1 /* memmem, malloc_usable_size */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <privguide/paillier.h>
#include <sodium.h>

#include "crypto/paillier_internal.h"

static pvg_paillier_pub *g_pub; /* a 2048-bit key shared by the tests */
static pvg_paillier_priv *g_priv;
static pvg_paillier_pub *g_pub2; /* another key */
static pvg_paillier_priv *g_priv2;

static int setup(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(20261122);
    pvg_error err;
    if (pvg_paillier_keygen(2048, rng, 1, &g_pub, &g_priv, &err) != PVG_OK) return -1;
    if (pvg_paillier_keygen(2048, rng, 1, &g_pub2, &g_priv2, &err) != PVG_OK) return -1;
    pvg_rng_free(rng);
    return 0;
}

static int teardown(void **state)
{
    pvg_paillier_priv_free(g_priv);
    pvg_paillier_pub_free(g_pub);
    pvg_paillier_priv_free(g_priv2);
    pvg_paillier_pub_free(g_pub2);
    return 0;
}

static void small_key(unsigned long p, unsigned long q, pvg_paillier_pub **pub,
                      pvg_paillier_priv **priv)
{
    mpz_t n, mp, mq;
    mpz_inits(n, mp, mq, NULL);
    mpz_set_ui(mp, p);
    mpz_set_ui(mq, q);
    mpz_mul(n, mp, mq);
    assert_int_equal(pvg_he_pub_from_mpz(n, 0, pub, NULL), PVG_OK);
    assert_int_equal(pvg_he_priv_from_mpz(*pub, mp, mq, priv, NULL), PVG_OK);
    mpz_clears(n, mp, mq, NULL);
}

/* Raw E(m; r) and D(c) on small keys against values worked by hand. */
static void kat_case(unsigned long p, unsigned long q, unsigned long m, unsigned long r,
                     unsigned long c_expected)
{
    pvg_paillier_pub *pub;
    pvg_paillier_priv *priv;
    small_key(p, q, &pub, &priv);
    mpz_t mm, rr, c, d;
    mpz_inits(mm, rr, c, d, NULL);
    mpz_set_ui(mm, m);
    mpz_set_ui(rr, r);
    pvg_he_raw_encrypt_r(pub, mm, rr, c);
    assert_true(mpz_cmp_ui(c, c_expected) == 0);
    pvg_he_raw_decrypt(priv, c, d);
    assert_true(mpz_cmp_ui(d, m) == 0);
    pvg_he_raw_decrypt_textbook(priv, c, d);
    assert_true(mpz_cmp_ui(d, m) == 0);
    mpz_clears(mm, rr, c, d, NULL);
    pvg_paillier_priv_free(priv);
    pvg_paillier_pub_free(pub);
}

static void test_known_answers(void **state)
{
    /* n = 15, g = 16, m = 4, r = 2: g^m = 1 + 4*15 = 61; r^n = 2^15 mod 225
     * = 32768 - 145*225 = 143; c = 61 * 143 mod 225 = 8723 - 38*225 = 173. */
    kat_case(3, 5, 4, 2, 173);
    /* python-paillier testRawEncryptDecryptRegression0 / testEncryptRegression:
     * n = 126869 = 293 * 433, m = 10100, r = 74384 -> c = 935906717 */
    kat_case(293, 433, 10100, 74384, 935906717UL);
    /* testEncryptIsRandom: m = 1, r = 1 -> c = n + 1 = 126870 */
    kat_case(293, 433, 1, 1, 126870);
    /* n = 2537 = 43 * 59 (python-paillier's equality test key):
     * m = 1000, r = 3: (1 + 1000*2537) * 3^2537 mod 2537^2 = 1725530;
     * m = n - 7 (i.e. -7), r = 5: 776049 */
    kat_case(43, 59, 1000, 3, 1725530);
    kat_case(43, 59, 2537 - 7, 5, 776049);
}

static void test_keygen_3072(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3072);
    pvg_paillier_pub *pub = NULL;
    pvg_paillier_priv *priv = NULL;
    assert_int_equal(pvg_paillier_keygen(3072, rng, 1, &pub, &priv, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_pub_bits(pub), 3072);
    assert_int_equal(mpz_sizeinbase(priv->p, 2), 1536);
    assert_int_equal(mpz_sizeinbase(priv->q, 2), 1536);
    pvg_paillier_enc_options o = {
        .mode = PVG_PAILLIER_OBF_DJN, .rng = rng, .allow_insecure_rng = 1};
    pvg_paillier_enc *enc = NULL;
    assert_int_equal(pvg_paillier_enc_new(pub, &o, &enc, NULL), PVG_OK);
    pvg_paillier_ct *ct = pvg_paillier_ct_new(pub);
    assert_int_equal(pvg_paillier_encrypt_text(enc, "-1234.5", INT_MAX, ct, NULL), PVG_OK);
    char *s = NULL;
    assert_int_equal(pvg_paillier_decrypt_text(priv, ct, &s, NULL), PVG_OK);
    assert_string_equal(s, "-1234.5");
    free(s);
    pvg_paillier_ct_free(ct);
    pvg_paillier_enc_free(enc);
    pvg_paillier_priv_free(priv);
    pvg_paillier_pub_free(pub);
    pvg_rng_free(rng);
}

static void test_crt_matches_textbook(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    mpz_t m, r, c, d1, d2;
    mpz_inits(m, r, c, d1, d2, NULL);
    int rounds = getenv("PVG_SANITIZED") ? 4 : 12;
    for (int i = 0; i < rounds; i++) {
        pvg_he_random_below_n(rng, g_pub->n, m);
        if (i == 0) mpz_set_ui(m, 0);
        if (i == 1) mpz_sub_ui(m, g_pub->n, 1);
        pvg_he_random_below_n(rng, g_pub->n, r);
        pvg_he_raw_encrypt_r(g_pub, m, r, c);
        pvg_he_raw_decrypt(g_priv, c, d1);
        pvg_he_raw_decrypt_textbook(g_priv, c, d2);
        assert_true(mpz_cmp(d1, d2) == 0);
        assert_true(mpz_cmp(d1, m) == 0);
    }
    mpz_clears(m, r, c, d1, d2, NULL);
    pvg_rng_free(rng);
}

static void test_keygen_shape(void **state)
{
    assert_int_equal(pvg_paillier_pub_bits(g_pub), 2048);
    assert_int_equal(mpz_sizeinbase(g_priv->p, 2), 1024);
    assert_int_equal(mpz_sizeinbase(g_priv->q, 2), 1024);
    assert_true(mpz_probab_prime_p(g_priv->p, 30) > 0);
    assert_true(mpz_probab_prime_p(g_priv->q, 30) > 0);
    assert_false(pvg_paillier_pub_equal(g_pub, g_pub2));
    /* sizes and the deterministic generator are checked */
    pvg_paillier_pub *pub;
    pvg_paillier_priv *priv;
    pvg_error err;
    assert_int_equal(pvg_paillier_keygen(1024, NULL, 0, &pub, &priv, &err), PVG_ERR_INVALID);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    assert_int_equal(pvg_paillier_keygen(2048, rng, 0, &pub, &priv, &err), PVG_ERR_POLICY);
    pvg_rng_free(rng);
}

/* EncodedNumber vectors: phe's algorithm followed step by step with exact
 * rationals (frexp exponent, floor((e2 - 53) / 4), round half even). */
static void check_encode(double x, double prec, int has_max, long max_e, const char *mant, long exp)
{
    mpz_t out, want;
    mpz_inits(out, want, NULL);
    long e = 0;
    assert_int_equal(pvg_he_encode_double(g_pub, x, prec, has_max, max_e, out, &e, NULL), PVG_OK);
    assert_int_equal(e, exp);
    mpz_set_str(want, mant, 10);
    mpz_mod(want, want, g_pub->n); /* negatives wrap by adding n */
    assert_true(mpz_cmp(out, want) == 0);
    mpz_clears(out, want, NULL);
}

static void test_encoding_vectors(void **state)
{
    check_encode(15.1, 0, 0, 0, "68004354373294488", -13);
    check_encode(12.35, 0, 0, 0, "55619455398025624", -13);
    check_encode(-3.14, 0, 0, 0, "-14141302829943358", -13);
    check_encode(0.0, 0, 0, 0, "0", -14);
    check_encode(1e-5, 0, 0, 0, "47223664828696456", -18);
    check_encode(pow(2.1, 20), 0, 0, 0, "11949390556191412", -8);
    check_encode(3.171234e-7, 0, 0, 0, "23961166641498620", -19);
    check_encode(3.171234e-7, 1e-8, 0, 0, "85", -7); /* precision given */
    check_encode(12.35, 0, 1, -32, "4202487231473589902880094440319419940864", -32);
    /* integers: exponent min(0, max) */
    mpz_t out;
    mpz_init(out);
    long e = 99;
    assert_int_equal(pvg_he_encode_text(g_pub, "7", 1, -2, out, &e, NULL), PVG_OK);
    assert_int_equal(e, -2);
    assert_true(mpz_cmp_ui(out, 1792) == 0);
    assert_int_equal(pvg_he_encode_text(g_pub, "-15", 0, 0, out, &e, NULL), PVG_OK);
    assert_int_equal(e, 0);
    mpz_t w;
    mpz_init(w);
    mpz_sub_ui(w, g_pub->n, 15);
    assert_true(mpz_cmp(out, w) == 0);
    /* max_int bounds (python: n // 3 - 1) */
    mpz_fdiv_q_ui(w, g_pub->n, 3);
    mpz_sub_ui(w, w, 1);
    assert_true(mpz_cmp(w, g_pub->max_int) == 0);
    assert_int_equal(pvg_he_encode_mpz(g_pub, w, out, NULL), PVG_ERR_INVALID);
    /* the encodable range: mantissas of at most bits/2 - 32 bits, so that a
     * sum of up to 2^32 of them still decrypts (decryption refuses more than
     * bits/2 bits) */
    mpz_set_ui(w, 0);
    mpz_setbit(w, 2048 / 2 - PVG_HE_SUM_HEADROOM_BITS);
    mpz_sub_ui(w, w, 1);
    assert_int_equal(pvg_he_encode_mpz(g_pub, w, out, NULL), PVG_OK);
    mpz_neg(w, w);
    assert_int_equal(pvg_he_encode_mpz(g_pub, w, out, NULL), PVG_OK);
    mpz_sub_ui(w, w, 1);
    assert_int_equal(pvg_he_encode_mpz(g_pub, w, out, NULL), PVG_ERR_INVALID);
    mpz_neg(w, w);
    assert_int_equal(pvg_he_encode_mpz(g_pub, w, out, NULL), PVG_ERR_INVALID);
    /* decoding: overflow band and corrupt encodings */
    mpz_t mant;
    mpz_init(mant);
    mpz_add_ui(w, g_pub->max_int, 10);
    assert_int_equal(pvg_he_decode_mantissa(g_pub, w, mant, NULL), PVG_ERR_INVALID);
    mpz_add_ui(w, g_pub->n, 10);
    assert_int_equal(pvg_he_decode_mantissa(g_pub, w, mant, NULL), PVG_ERR_INVALID);
    mpz_clears(out, w, mant, NULL);
    /* bad text */
    pvg_error err;
    assert_int_equal(pvg_he_encode_text(g_pub, "12,5", 0, 0, out, &e, &err), PVG_ERR_INVALID);
    assert_int_equal(err.offset, 2);
    assert_int_equal(pvg_he_encode_text(g_pub, "nan", 0, 0, out, &e, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_he_encode_text(g_pub, "1e999", 0, 0, out, &e, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_he_encode_text(g_pub, "", 0, 0, out, &e, &err), PVG_ERR_INVALID);
}

static void test_repr(void **state)
{
    char b[64];
    struct {
        double x;
        const char *s;
    } v[] = {{12.35, "12.35"},
             {1e16, "1e+16"},
             {1e15, "1000000000000000.0"},
             {1e-5, "1e-05"},
             {0.0001, "0.0001"},
             {-0.5, "-0.5"},
             {3.0, "3.0"},
             {0.1 + 0.2, "0.30000000000000004"},
             {123456789.125, "123456789.125"},
             {-1.5e-7, "-1.5e-07"},
             {2.5e22, "2.5e+22"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        pvg_he_double_repr(v[i].x, b, sizeof b);
        assert_string_equal(b, v[i].s);
    }
    /* decoding a mantissa: correct rounding of mantissa / 16^k */
    mpz_t m;
    mpz_init_set_str(m, "55619455398025624", 10);
    double d;
    assert_int_equal(pvg_he_mantissa_to_double(m, -13, &d, NULL), PVG_OK);
    assert_true(d == 12.35);
    char *s;
    assert_int_equal(pvg_he_mantissa_to_exact(m, -13, &s, NULL), PVG_OK);
    assert_string_equal(s, "12.3499999999999996447286321199499070644378662109375");
    free(s);
    mpz_set_si(m, -42);
    assert_int_equal(pvg_he_mantissa_to_text(m, 1, &s, NULL), PVG_OK);
    assert_string_equal(s, "-672");
    free(s);
    /* 2^60 + 1 is not a double: rounds half-even to 2^60 */
    mpz_set_ui(m, 1);
    mpz_mul_2exp(m, m, 60);
    mpz_add_ui(m, m, 1);
    assert_int_equal(pvg_he_mantissa_to_double(m, -1, &d, NULL), PVG_OK);
    assert_true(d == ldexp(1.0, 56));
    mpz_clear(m);
}

static pvg_paillier_enc *enc_of(pvg_paillier_obf mode, const pvg_paillier_pub *pub)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(99 + mode);
    pvg_paillier_enc_options o = {
        .mode = mode, .threads = 2, .pool_size = 8, .rng = rng, .allow_insecure_rng = 1};
    pvg_paillier_enc *enc = NULL;
    assert_int_equal(pvg_paillier_enc_new(pub, &o, &enc, NULL), PVG_OK);
    pvg_rng_free(rng);
    return enc;
}

static void expect_text(const pvg_paillier_ct *ct, const char *want)
{
    char *s = NULL;
    pvg_error err;
    pvg_status st = pvg_paillier_decrypt_text(g_priv, ct, &s, &err);
    if (st != PVG_OK) fail_msg("decrypt: %s", err.text);
    assert_string_equal(s, want);
    free(s);
}

static void test_encrypt_modes(void **state)
{
    pvg_paillier_obf modes[] = {PVG_PAILLIER_OBF_FRESH, PVG_PAILLIER_OBF_DJN,
                                PVG_PAILLIER_OBF_POOL};
    for (size_t k = 0; k < 3; k++) {
        pvg_paillier_enc *enc = enc_of(modes[k], g_pub);
        pvg_paillier_ct *a = pvg_paillier_ct_new(g_pub), *b = pvg_paillier_ct_new(g_pub);
        assert_int_equal(pvg_paillier_encrypt_text(enc, "12.35", INT_MAX, a, NULL), PVG_OK);
        assert_int_equal(pvg_paillier_ct_exponent(a), -13);
        expect_text(a, "12.35");
        assert_int_equal(pvg_paillier_encrypt_text(enc, "12.35", INT_MAX, b, NULL), PVG_OK);
        assert_true(mpz_cmp(a->c, b->c) != 0); /* randomised */
        assert_true(pvg_he_in_group(g_pub, a->c));
        assert_int_equal(pvg_paillier_encrypt_int64(enc, -42, b, NULL), PVG_OK);
        expect_text(b, "-42");
        /* 12.35 + (-42): exponents aligned to -13 */
        assert_int_equal(pvg_paillier_add(b, a, b, NULL), PVG_OK);
        assert_int_equal(pvg_paillier_ct_exponent(b), -13);
        expect_text(b, "-29.65");
        mpz_t before;
        mpz_init_set(before, b->c);
        assert_int_equal(pvg_paillier_rerandomize(enc, b, NULL), PVG_OK);
        assert_true(mpz_cmp(before, b->c) != 0);
        expect_text(b, "-29.65");
        mpz_clear(before);
        pvg_paillier_ct_free(a);
        pvg_paillier_ct_free(b);
        pvg_paillier_enc_free(enc);
    }
    assert_int_equal(pvg_paillier_djn_exponent_bits(2048), 224);
    assert_int_equal(pvg_paillier_djn_exponent_bits(3072), 256);
}

/* The DJN obfuscator is an n-th residue: it decrypts to 0 and its n-th
 * residuosity matches (obf^(lambda) = 1 mod n^2 for n-th residues). */
static void test_djn_obfuscator_is_nth_residue(void **state)
{
    pvg_paillier_enc *enc = enc_of(PVG_PAILLIER_OBF_DJN, g_pub);
    mpz_t o, d, lambda;
    mpz_inits(o, d, lambda, NULL);
    mpz_lcm(lambda, g_priv->pm1, g_priv->qm1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pvg_he_enc_obfuscator(enc, o, NULL), PVG_OK);
        pvg_he_raw_decrypt(g_priv, o, d);
        assert_true(mpz_sgn(d) == 0);
        mpz_powm(d, o, lambda, g_pub->n2);
        assert_true(mpz_cmp_ui(d, 1) == 0);
    }
    /* the fixed-base comb equals plain exponentiation hs^a */
    mpz_t fast, naive;
    mpz_inits(fast, naive, NULL);
    unsigned char a[64];
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    for (int i = 0; i < 6; i++) {
        pvg_rng_bytes(rng, a, sizeof a);
        if (i == 0) memset(a, 0, sizeof a);    /* a = 0: obfuscator 1 */
        if (i == 1) memset(a, 0xff, sizeof a); /* all windows at their last entry */
        assert_int_equal(pvg_he_djn_check(enc, a, sizeof a, fast, naive), 1);
        assert_true(mpz_cmp(fast, naive) == 0);
        if (i == 0) assert_true(mpz_cmp_ui(fast, 1) == 0);
    }
    pvg_rng_free(rng);
    mpz_clears(fast, naive, NULL);
    mpz_clears(o, d, lambda, NULL);
    pvg_paillier_enc_free(enc);
}

/* decode(encode(x)) == x for doubles across the exponent range, and the
 * text form reads back as the same double */
static void test_encode_roundtrip(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(4);
    mpz_t enc, mant;
    mpz_inits(enc, mant, NULL);
    for (int i = 0; i < 2000; i++) {
        double x = ldexp(pvg_rng_double(rng) - 0.5, (int)pvg_rng_uniform(rng, 400) - 200);
        long e = 0;
        assert_int_equal(pvg_he_encode_double(g_pub, x, 0, 0, 0, enc, &e, NULL), PVG_OK);
        assert_int_equal(pvg_he_decode_mantissa(g_pub, enc, mant, NULL), PVG_OK);
        double back;
        assert_int_equal(pvg_he_mantissa_to_double(mant, e, &back, NULL), PVG_OK);
        assert_true(back == x);
        char buf[64];
        pvg_he_double_repr(x, buf, sizeof buf);
        assert_true(strtod(buf, NULL) == x);
    }
    mpz_clears(enc, mant, NULL);
    pvg_rng_free(rng);
}

static void test_homomorphic_ops(void **state)
{
    pvg_paillier_enc *enc = enc_of(PVG_PAILLIER_OBF_DJN, g_pub);
    pvg_paillier_ct *a = pvg_paillier_ct_new(g_pub), *b = pvg_paillier_ct_new(g_pub);
    pvg_paillier_ct *c = pvg_paillier_ct_new(g_pub);
    assert_int_equal(pvg_paillier_encrypt_text(enc, "100", INT_MAX, a, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_add_text(c, a, "-12.35", NULL), PVG_OK); /* a return */
    expect_text(c, "87.65");
    assert_int_equal(pvg_paillier_mul_text(c, a, "-2.5", NULL), PVG_OK);
    expect_text(c, "-250.0");
    assert_int_equal(pvg_paillier_mul_int64(c, a, 3, NULL), PVG_OK);
    expect_text(c, "300");
    assert_int_equal(pvg_paillier_mul_int64(c, a, -3, NULL), PVG_OK);
    expect_text(c, "-300");
    assert_int_equal(pvg_paillier_negate(c, a, NULL), PVG_OK);
    expect_text(c, "-100");
    /* lowering the exponent keeps the value; raising it is refused */
    assert_int_equal(pvg_paillier_ct_copy(b, a, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_decrease_exponent(b, -32, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_ct_exponent(b), -32);
    expect_text(b, "100.0");
    assert_int_equal(pvg_paillier_decrease_exponent(b, -8, NULL), PVG_ERR_INVALID);
    /* amounts of different exponents: 0.5 (e=-14), 1e-5 (e=-18), 3 (e=0) */
    assert_int_equal(pvg_paillier_encrypt_text(enc, "0.5", INT_MAX, b, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_encrypt_text(enc, "1e-5", INT_MAX, c, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_add(b, b, c, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_ct_exponent(b), -18);
    assert_int_equal(pvg_paillier_add_text(b, b, "3", NULL), PVG_OK);
    expect_text(b, "3.50001");
    /* the largest encodable number decrypts, and so does a sum of 2^32 of
     * them; growing past the decryptable range is refused at decryption,
     * and past max_int is detected as overflow, never wrapped silently */
    mpz_t big;
    mpz_init(big);
    mpz_setbit(big, 2048 / 2 - PVG_HE_SUM_HEADROOM_BITS);
    mpz_sub_ui(big, big, 1);
    char *s = malloc(mpz_sizeinbase(big, 10) + 2);
    mpz_get_str(s, 10, big);
    assert_int_equal(pvg_paillier_encrypt_text(enc, s, INT_MAX, b, NULL), PVG_OK);
    char *t = NULL;
    pvg_error err;
    assert_int_equal(pvg_paillier_decrypt_text(g_priv, b, &t, &err), PVG_OK);
    assert_string_equal(t, s);
    free(t);
    for (int i = 0; i < PVG_HE_SUM_HEADROOM_BITS; i++)
        assert_int_equal(pvg_paillier_add(b, b, b, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_decrypt_text(g_priv, b, &t, &err), PVG_OK);
    free(t);
    assert_int_equal(pvg_paillier_add(b, b, b, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_decrypt_text(g_priv, b, &t, &err), PVG_ERR_CRYPTO);
    for (int i = 0; i < 2048; i++)
        assert_int_equal(pvg_paillier_add(b, b, b, NULL), PVG_OK);
    /* wrapped mod n: either the overflow band or out of the decryptable range */
    assert_int_not_equal(pvg_paillier_decrypt_text(g_priv, b, &t, &err), PVG_OK);
    free(s);
    mpz_clear(big);
    pvg_paillier_ct_free(a);
    pvg_paillier_ct_free(b);
    pvg_paillier_ct_free(c);
    pvg_paillier_enc_free(enc);
}

static void test_packing(void **state)
{
    pvg_paillier_enc *enc = enc_of(PVG_PAILLIER_OBF_DJN, g_pub);
    size_t cap = pvg_paillier_packed_capacity(g_pub, 32, 16);
    assert_int_equal(cap, (2048 - 3) / 48);
    uint64_t v1[40], v2[40], out[40];
    for (int i = 0; i < 40; i++) {
        v1[i] = (uint64_t)i * 1000003u;
        v2[i] = 0xffffffffu - (uint64_t)i;
    }
    pvg_paillier_ct *a = pvg_paillier_ct_new(g_pub), *b = pvg_paillier_ct_new(g_pub);
    assert_int_equal(pvg_paillier_encrypt_packed(enc, v1, 40, 32, 16, a, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_encrypt_packed(enc, v2, 40, 32, 16, b, NULL), PVG_OK);
    for (int k = 0; k < 3; k++)
        assert_int_equal(pvg_paillier_add(a, a, b, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_decrypt_packed(g_priv, a, 40, 32, 16, out, NULL), PVG_OK);
    for (int i = 0; i < 40; i++)
        assert_true(out[i] == v1[i] + 3 * v2[i]);
    /* too many slots, value too wide */
    pvg_error err;
    uint64_t many[64] = {0};
    assert_int_equal(pvg_paillier_encrypt_packed(enc, many, 64, 32, 16, a, &err), PVG_ERR_INVALID);
    v1[3] = (uint64_t)1 << 32;
    assert_int_equal(pvg_paillier_encrypt_packed(enc, v1, 40, 32, 16, a, &err), PVG_ERR_INVALID);
    pvg_paillier_ct_free(a);
    pvg_paillier_ct_free(b);
    pvg_paillier_enc_free(enc);
}

static void test_json_formats(void **state)
{
    pvg_error err;
    char *pubj = NULL, *privj = NULL;
    assert_int_equal(pvg_paillier_pub_to_jwk(g_pub, NULL, &pubj, &err), PVG_OK);
    assert_int_equal(pvg_paillier_priv_to_jwk(g_priv, "test key", &privj, &err), PVG_OK);
    assert_non_null(strstr(
        pubj, "\"kty\": \"DAJ\", \"alg\": \"PAI-GN1\", \"key_ops\": [\"encrypt\"], \"n\": \""));
    assert_non_null(strstr(privj, "\"kty\": \"DAJ\", \"key_ops\": [\"decrypt\"], \"p\": \""));
    assert_null(strchr(pubj, '=')); /* base64url without padding */
    pvg_paillier_pub *pub = NULL;
    pvg_paillier_priv *priv = NULL;
    assert_int_equal(pvg_paillier_pub_from_jwk(pubj, "public.json", &pub, &err), PVG_OK);
    assert_true(pvg_paillier_pub_equal(pub, g_pub));
    pvg_paillier_pub_free(pub);
    assert_int_equal(pvg_paillier_pub_from_jwk(privj, "private.json", &pub, &err), PVG_OK);
    assert_true(pvg_paillier_pub_equal(pub, g_pub));
    assert_int_equal(pvg_paillier_priv_from_jwk(privj, "private.json", &priv, &err), PVG_OK);
    assert_true(mpz_cmp(priv->p, g_priv->p) == 0 && mpz_cmp(priv->q, g_priv->q) == 0);

    /* an encrypted number round trip, in pheutil's {"v","e"} form */
    pvg_paillier_enc *enc = enc_of(PVG_PAILLIER_OBF_DJN, g_pub);
    pvg_paillier_ct *a = pvg_paillier_ct_new(g_pub), *b = pvg_paillier_ct_new(pub);
    assert_int_equal(
        pvg_paillier_encrypt_text(enc, "-7.25", PVG_PAILLIER_PHEUTIL_EXPONENT, a, NULL), PVG_OK);
    char *cj = NULL;
    assert_int_equal(pvg_paillier_ct_to_json(a, &cj, &err), PVG_OK);
    assert_true(strncmp(cj, "{\"v\": \"", 7) == 0);
    assert_non_null(strstr(cj, "\", \"e\": -32}"));
    assert_int_equal(pvg_paillier_ct_from_json(b, cj, "stdin", 1, &err), PVG_OK);
    assert_true(mpz_cmp(a->c, b->c) == 0);
    char *t = NULL;
    assert_int_equal(pvg_paillier_decrypt_text(priv, b, &t, &err), PVG_OK);
    assert_string_equal(t, "-7.25");
    free(t);
    /* "v" as a bare JSON integer (thousands of digits) is accepted too */
    char *dec = pvg_paillier_ct_decimal(a);
    char *bare = malloc(strlen(dec) + 32);
    sprintf(bare, "{\"e\": -32, \"v\": %s}", dec);
    assert_int_equal(pvg_paillier_ct_from_json(b, bare, "stdin", 1, &err), PVG_OK);
    assert_true(mpz_cmp(a->c, b->c) == 0);
    free(bare);
    free(dec);

    /* the plain list form of python-paillier's docs */
    pvg_paillier_ct *list[2] = {a, b};
    char *lj = NULL;
    assert_int_equal(pvg_paillier_list_to_json(g_pub, list, 2, &lj, &err), PVG_OK);
    assert_true(strncmp(lj, "{\"public_key\": {\"g\": ", 21) == 0);
    pvg_paillier_pub *lpub = NULL;
    pvg_paillier_ct **cts = NULL;
    size_t n = 0;
    assert_int_equal(pvg_paillier_list_from_json(lj, "list.json", g_pub, 0, &lpub, &cts, &n, &err),
                     PVG_OK);
    assert_int_equal(n, 2);
    assert_true(mpz_cmp(cts[1]->c, b->c) == 0 && cts[1]->exponent == -32);
    pvg_paillier_ct_array_free(cts, n);
    pvg_paillier_pub_free(lpub);
    assert_int_equal(pvg_paillier_list_from_json(lj, "list.json", g_pub2, 0, &lpub, &cts, &n, &err),
                     PVG_ERR_CRYPTO);
    free(lj);

    /* malformed input: errors, never crashes */
    assert_int_equal(pvg_paillier_ct_from_json(b, "{\"v\": \"12\", \"e\": }", "in", 5, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(err.line, 5);
    assert_int_equal(pvg_paillier_ct_from_json(b, "{\"v\": \"0\", \"e\": 0}", "in", 1, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_paillier_ct_from_json(b, "{\"v\": \"12a\", \"e\": 0}", "in", 1, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_paillier_ct_from_json(b, "{\"v\": \"5\"}", "in", 1, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_paillier_ct_from_json(b, "[1,2]", "in", 1, &err), PVG_ERR_INVALID);
    /* c = n^2 (too large), c = p (shares a factor with n), oversized */
    char *n2s = malloc(mpz_sizeinbase(g_pub->n2, 10) + 2);
    mpz_get_str(n2s, 10, g_pub->n2);
    assert_int_equal(pvg_paillier_ct_set_decimal(b, n2s, 0, &err), PVG_ERR_INVALID);
    mpz_get_str(n2s, 10, g_priv->p);
    assert_int_equal(pvg_paillier_ct_set_decimal(b, n2s, 0, &err), PVG_ERR_INVALID);
    free(n2s);
    char *huge = malloc(3000);
    memset(huge, '7', 2999);
    huge[2999] = '\0';
    assert_int_equal(pvg_paillier_ct_set_decimal(b, huge, 0, &err), PVG_ERR_INVALID);
    free(huge);
    /* keys: wrong kty/alg, bad base64, short n, p*q != n */
    pvg_paillier_pub *nopub = NULL;
    assert_int_equal(pvg_paillier_pub_from_jwk("{\"kty\": \"RSA\"}", "k", &nopub, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(
        pvg_paillier_pub_from_jwk("{\"kty\": \"DAJ\", \"alg\": \"PAI-GN1\", \"n\": \"@@\"}", "k",
                                  &nopub, &err),
        PVG_ERR_INVALID);
    assert_int_equal(
        pvg_paillier_pub_from_jwk("{\"kty\": \"DAJ\", \"alg\": \"PAI-GN1\", \"n\": \"AesN\"}", "k",
                                  &nopub, &err),
        PVG_ERR_INVALID); /* 126869: far below 2048 bits */
    assert_int_equal(pvg_paillier_pub_from_jwk("{\"kty\": ", "k", &nopub, &err), PVG_ERR_INVALID);
    assert_int_equal(err.line, 1);
    /* a private key whose factors belong to another key */
    char *other = NULL;
    assert_int_equal(pvg_paillier_priv_to_jwk(g_priv2, NULL, &other, &err), PVG_OK);
    char *pub1 = strstr(pubj, "\"n\": \"");
    char *pub2 = strstr(other, "\"n\": \"");
    assert_non_null(pub1);
    assert_non_null(pub2);
    memcpy(pub2, pub1, strchr(pub1 + 6, '"') - pub1); /* graft key 1's n into key 2's file */
    pvg_paillier_priv *bad = NULL;
    assert_int_equal(pvg_paillier_priv_from_jwk(other, "other.json", &bad, &err), PVG_ERR_CRYPTO);
    free(other);
    /* decrypting under another key is refused */
    pvg_paillier_ct *x = pvg_paillier_ct_new(g_pub2);
    assert_int_equal(pvg_paillier_decrypt_text(g_priv, x, &t, &err), PVG_ERR_CRYPTO);
    assert_int_equal(pvg_paillier_add(x, x, a, &err), PVG_ERR_CRYPTO);
    pvg_paillier_ct_free(x);

    free(cj);
    pvg_paillier_ct_free(a);
    pvg_paillier_ct_free(b);
    pvg_paillier_enc_free(enc);
    pvg_paillier_priv_free(priv);
    pvg_paillier_pub_free(pub);
    free(pubj);
    free(privj);
}

/* Mutated documents never crash a reader: each returns OK or an error. */
static void test_mutated_input(void **state)
{
    pvg_paillier_enc *enc = enc_of(PVG_PAILLIER_OBF_DJN, g_pub);
    pvg_paillier_ct *a = pvg_paillier_ct_new(g_pub), *b = pvg_paillier_ct_new(g_pub);
    assert_int_equal(pvg_paillier_encrypt_text(enc, "3.25", INT_MAX, a, NULL), PVG_OK);
    pvg_paillier_ct *list[2] = {a, a};
    char *docs[3] = {NULL, NULL, NULL};
    assert_int_equal(pvg_paillier_list_to_json(g_pub, list, 2, &docs[0], NULL), PVG_OK);
    assert_int_equal(pvg_paillier_ct_to_json(a, &docs[1], NULL), PVG_OK);
    assert_int_equal(pvg_paillier_priv_to_jwk(g_priv, NULL, &docs[2], NULL), PVG_OK);
    static const char alphabet[] = "{}[]\",:-0123456789eE.\\ nul";
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(17);
    int rounds = getenv("PVG_SANITIZED") ? 150 : 600;
    int ok = 0;
    for (int i = 0; i < rounds; i++) {
        int which = i % 3;
        char *m = strdup(docs[which]);
        size_t len = strlen(m);
        int edits = 1 + (int)pvg_rng_uniform(rng, 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)pvg_rng_uniform(rng, len);
            if (pvg_rng_uniform(rng, 4) == 0)
                m[at] = '\0'; /* truncation */
            else
                m[at] = alphabet[pvg_rng_uniform(rng, sizeof alphabet - 1)];
        }
        pvg_error err;
        pvg_status st;
        if (which == 0) {
            pvg_paillier_pub *lp = NULL;
            pvg_paillier_ct **cts = NULL;
            size_t n = 0;
            st = pvg_paillier_list_from_json(m, "fuzz", NULL, 0, &lp, &cts, &n, &err);
            if (st == PVG_OK) {
                pvg_paillier_ct_array_free(cts, n);
                pvg_paillier_pub_free(lp);
            }
        } else if (which == 1) {
            st = pvg_paillier_ct_from_json(b, m, "fuzz", 1, &err);
            if (st == PVG_OK) { /* whatever decrypts must decode, report overflow or a
                                 * plaintext out of the key's range */
                char *t = NULL;
                pvg_status d = pvg_paillier_decrypt_text(g_priv, b, &t, &err);
                assert_true(d == PVG_OK || d == PVG_ERR_INVALID || d == PVG_ERR_CRYPTO);
                free(t);
            }
        } else {
            pvg_paillier_priv *k = NULL;
            st = pvg_paillier_priv_from_jwk(m, "fuzz", &k, &err);
            pvg_paillier_priv_free(k);
        }
        if (st != PVG_OK) assert_true(err.text[0] != '\0'); /* errors say why */
        ok += st == PVG_OK;
        free(m);
    }
    assert_true(ok < rounds); /* the mutations did break documents */
    pvg_rng_free(rng);
    for (int i = 0; i < 3; i++)
        free(docs[i]);
    pvg_paillier_ct_free(a);
    pvg_paillier_ct_free(b);
    pvg_paillier_enc_free(enc);
    /* an oversized number text */
    char *big = malloc(200001);
    memset(big, '9', 200000);
    big[200000] = '\0';
    mpz_t out;
    mpz_init(out);
    long e;
    assert_int_equal(pvg_he_encode_text(g_pub, big, 0, 0, out, &e, NULL), PVG_ERR_INVALID);
    mpz_clear(out);
    free(big);
}

/* A private key file written by python-paillier's JWK export (published in
 * a public repository): p and q decode from base64url to 1024-bit primes,
 * and our reader builds the key from them. */
static void test_phe_generated_key(void **state)
{
    const char *p64 =
        "yjs7b-IvT_"
        "5aeM1P0cQfrPMQ4ZY7NOUhLjOTQU6SuJbEbkbSH8XoxqgDfcfa0YCn9qGOexvCuB1Xc2bYwsxh6FzaQvIOLsohMUP7"
        "Xf-2zPlaH5v7aVrmjNCcm6xehoe1WypGPay_ML_89ip1RbLCO39dXTN9AuCHwbVuPZiOqNc";
    const char *q64 = "0H1G7Ts4tdU8GXyFIxgjy5epddQ_"
                      "8lxJNx2C5nG2ANmeA8CJUUpE5Y17NMSY4wCwmDem2yKaFf8ZSKatIbXTd7NZbFieFP85V-"
                      "8xM6CX-SHkzgquBgDX7vkLPUy_VfymJjnVDrAyNhe1ncI9-l1HqRTpgi4GRLz7CnV30y3i2Os";
    /* n = p*q, written as phe's int_to_base64 would */
    unsigned char pb[256], qb[256];
    size_t pl = 0, ql = 0;
    assert_int_equal(sodium_base642bin(pb, sizeof pb, p64, strlen(p64), NULL, &pl, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_int_equal(sodium_base642bin(qb, sizeof qb, q64, strlen(q64), NULL, &ql, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    mpz_t p, q, n;
    mpz_inits(p, q, n, NULL);
    mpz_import(p, pl, 1, 1, 1, 0, pb);
    mpz_import(q, ql, 1, 1, 1, 0, qb);
    assert_true(mpz_probab_prime_p(p, 30) && mpz_probab_prime_p(q, 30));
    mpz_mul(n, p, q);
    size_t nl = 0;
    unsigned char nb[512];
    mpz_export(nb, &nl, 1, 1, 1, 0, n);
    char n64[800];
    sodium_bin2base64(n64, sizeof n64, nb, nl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char json[2400];
    snprintf(json, sizeof json,
             "{\"kty\": \"DAJ\", \"key_ops\": [\"decrypt\"], \"p\": \"%s\", \"q\": \"%s\", "
             "\"pub\": {\"kty\": \"DAJ\", \"alg\": \"PAI-GN1\", \"key_ops\": [\"encrypt\"], "
             "\"n\": \"%s\", \"kid\": \"x\"}, \"kid\": \"Paillier private key generated by phe\"}",
             p64, q64, n64);
    pvg_paillier_priv *priv = NULL;
    pvg_error err;
    assert_int_equal(pvg_paillier_priv_from_jwk(json, "phe.json", &priv, &err), PVG_OK);
    assert_int_equal(pvg_paillier_pub_bits(pvg_paillier_priv_pub(priv)), 2048);
    /* the older pheutil form: lambda = (p-1)(q-1), factors recovered */
    mpz_t phi;
    mpz_init(phi);
    mpz_sub_ui(p, p, 1);
    mpz_sub_ui(q, q, 1);
    mpz_mul(phi, p, q);
    mpz_export(nb, &nl, 1, 1, 1, 0, phi);
    char l64[800];
    sodium_bin2base64(l64, sizeof l64, nb, nl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(json, sizeof json,
             "{\"kty\": \"DAJ\", \"key_ops\": [\"decrypt\"], \"lambda\": \"%s\", \"mu\": \"AQ\", "
             "\"pub\": {\"kty\": \"DAJ\", \"alg\": \"PAI-GN1\", \"n\": \"%s\"}}",
             l64, n64);
    pvg_paillier_priv *priv2 = NULL;
    assert_int_equal(pvg_paillier_priv_from_jwk(json, "old.json", &priv2, &err), PVG_OK);
    assert_true(mpz_cmp(priv2->p, priv->p) == 0);
    pvg_paillier_priv_free(priv2);
    mpz_clears(p, q, n, phi, NULL);
    pvg_paillier_priv_free(priv);
}

/* Ciphertexts made under key 2 and read as key 1's (the line form names no
 * key, so `he decrypt` attaches its private key's): every decryption with
 * key 1 fails, none prints a number. 40 values: the plaintexts are uniform
 * in [0, n1), so a check that missed even 2^-10 of them would be seen. */
static void test_wrong_key_decrypt(void **state)
{
    (void)state;
    pvg_paillier_enc *enc = enc_of(PVG_PAILLIER_OBF_DJN, g_pub2);
    pvg_paillier_ct *a = pvg_paillier_ct_new(g_pub2), *b = pvg_paillier_ct_new(g_pub);
    static const char *vals[] = {"0", "1", "12.35", "-4.99", "100", "1e-5", "-42", "7.5"};
    int refused = 0, range = 0, tries = 0;
    for (int i = 0; i < 40; i++) {
        assert_int_equal(pvg_paillier_encrypt_text(enc, vals[i % 8], i % 2 ? 0 : INT_MAX, a, NULL),
                         PVG_OK);
        char *j = NULL;
        assert_int_equal(pvg_paillier_ct_to_json(a, &j, NULL), PVG_OK);
        pvg_error err;
        pvg_error_clear(&err);
        pvg_status st = pvg_paillier_ct_from_json(b, j, "stdin", 1, &err);
        free(j);
        if (st != PVG_OK) { /* c >= n1^2: refused when read, naming the cause */
            assert_non_null(strstr(err.text, "another key"));
            refused++;
            continue;
        }
        tries++;
        char *t = NULL;
        double d = 0;
        st = pvg_paillier_decrypt_text(g_priv, b, &t, &err);
        assert_true(st == PVG_ERR_CRYPTO || st == PVG_ERR_INVALID);
        assert_null(t);
        assert_non_null(strstr(err.text, "another"));
        range += st == PVG_ERR_CRYPTO;
        assert_int_not_equal(pvg_paillier_decrypt_double(g_priv, b, &d, &err), PVG_OK);
        assert_int_not_equal(pvg_paillier_decrypt_exact(g_priv, b, &t, &err), PVG_OK);
        assert_null(t);
    }
    assert_int_equal(refused + tries, 40);
    /* the out-of-range check does the work the overflow band cannot (about
     * 2 of 3 decryptions that reach it) */
    if (tries >= 10) assert_true(range > 0);
    /* key 1's own ciphertexts of large but real values still decrypt */
    pvg_paillier_enc *enc1 = enc_of(PVG_PAILLIER_OBF_DJN, g_pub);
    assert_int_equal(pvg_paillier_encrypt_text(enc1, "-1e300", INT_MAX, b, NULL), PVG_OK);
    double big = 0;
    assert_int_equal(pvg_paillier_decrypt_double(g_priv, b, &big, NULL), PVG_OK);
    assert_true(big == -1e300);
    pvg_paillier_enc_free(enc1);
    pvg_paillier_ct_free(a);
    pvg_paillier_ct_free(b);
    pvg_paillier_enc_free(enc);
}

/* jansson's allocations in this test: a freed block that still holds a
 * piece of the private key's p is counted (jansson frees without wiping). */
static const char *g_needle;
static int g_hits;

static void *t_malloc(size_t n)
{
    return malloc(n);
}

static void t_free(void *p)
{
    if (p && g_needle && memmem(p, malloc_usable_size(p), g_needle, strlen(g_needle))) g_hits++;
    free(p);
}

/* Reading and writing a private key leave no copy of its factors in memory
 * jansson freed: the secret members are taken out before jansson parses the
 * text, and the key file is written into one buffer of the exact size. */
static void test_key_text_not_left_behind(void **state)
{
    (void)state;
    char *privj = NULL;
    assert_int_equal(pvg_paillier_priv_to_jwk(g_priv, NULL, &privj, NULL), PVG_OK);
    const char *at = strstr(privj, "\"p\": \"");
    assert_non_null(at);
    char needle[25];
    memcpy(needle, at + 6, 24);
    needle[24] = 0;
    json_set_alloc_funcs(t_malloc, t_free);
    g_needle = needle;
    g_hits = 0;
    pvg_paillier_priv *k = NULL;
    pvg_error err;
    assert_int_equal(pvg_paillier_priv_from_jwk(privj, "k.json", &k, &err), PVG_OK);
    assert_int_equal(g_hits, 0);
    char *again = NULL;
    assert_int_equal(pvg_paillier_priv_to_jwk(k, NULL, &again, NULL), PVG_OK);
    assert_int_equal(g_hits, 0);
    assert_string_equal(again, privj);
    g_needle = NULL;
    json_set_alloc_funcs(malloc, free);
    sodium_memzero(again, strlen(again));
    free(again);
    sodium_memzero(privj, strlen(privj));
    free(privj);
    pvg_paillier_priv_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_keygen_shape),
        cmocka_unit_test(test_keygen_3072),
        cmocka_unit_test(test_crt_matches_textbook),
        cmocka_unit_test(test_encoding_vectors),
        cmocka_unit_test(test_repr),
        cmocka_unit_test(test_encrypt_modes),
        cmocka_unit_test(test_djn_obfuscator_is_nth_residue),
        cmocka_unit_test(test_homomorphic_ops),
        cmocka_unit_test(test_packing),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_json_formats),
        cmocka_unit_test(test_mutated_input),
        cmocka_unit_test(test_phe_generated_key),
        cmocka_unit_test(test_wrong_key_decrypt),
        cmocka_unit_test(test_key_text_not_left_behind),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
