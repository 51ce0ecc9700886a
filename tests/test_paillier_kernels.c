/*
 * test_paillier_kernels.c - the products mod n^2 behind homomorphic
 * addition (MPN and, when this CPU has it, AVX-512 IFMA: Barrett for one
 * product, Montgomery for chains) against the naive mpz_mul + mpz_mod
 * reference on random and edge inputs (the Barrett extremes too), the Montgomery
 * accumulator and pvg_paillier_sum against chained naive products and
 * pvg_paillier_add, the IFMA constant-time exponentiation of decryption
 * against mpz_powm_sec, and batch decryption against one-at-a-time and
 * textbook decryption with either kernel.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <privguide/paillier.h>

#include "crypto/paillier_internal.h"

static pvg_paillier_pub *g_pub; /* a 2048-bit key */
static pvg_paillier_priv *g_priv;
static pvg_paillier_pub *g_pub2; /* another key */
static pvg_paillier_priv *g_priv2;

static int setup(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(16160016);
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

/* The kernels to run: MPN always, IFMA when the CPU has it. */
static int kernels(pvg_he_kernel *ks)
{
    int n = 0;
    ks[n++] = PVG_HE_KERNEL_MPN;
    if (pvg_he_cpu_has_ifma()) ks[n++] = PVG_HE_KERNEL_IFMA;
    return n;
}

/* Edge inputs for modulus M: 0, 1, 2, M-1, M-2, M/2, 2^k - 1 and 2^k for
 * the limb and digit boundaries below M, all-ones limbs, R mod M. */
static int edge_value(const mpz_t M, int i, mpz_t x)
{
    size_t bits = mpz_sizeinbase(M, 2);
    switch (i) {
    case 0:
        mpz_set_ui(x, 0);
        return 1;
    case 1:
        mpz_set_ui(x, 1);
        return 1;
    case 2:
        mpz_set_ui(x, 2);
        return 1;
    case 3:
        mpz_sub_ui(x, M, 1);
        return 1;
    case 4:
        mpz_sub_ui(x, M, 2);
        return 1;
    case 5:
        mpz_fdiv_q_2exp(x, M, 1);
        return 1;
    case 6: /* 2^(bits-1) - 1: every bit below the top */
        mpz_set_ui(x, 0);
        mpz_setbit(x, bits - 1);
        mpz_sub_ui(x, x, 1);
        return 1;
    case 7:
        mpz_set_ui(x, 0);
        mpz_setbit(x, bits - 1);
        mpz_mod(x, x, M);
        return 1;
    case 8:
        mpz_set_ui(x, 0);
        mpz_setbit(x, 52);
        mpz_sub_ui(x, x, 1);
        mpz_mod(x, x, M);
        return 1;
    case 9:
        mpz_set_ui(x, 0);
        mpz_setbit(x, 64);
        mpz_mod(x, x, M);
        return 1;
    case 10: /* R mod M for the limb radix */
        mpz_set_ui(x, 0);
        mpz_setbit(x, 64 * mpz_size(M));
        mpz_mod(x, x, M);
        return 1;
    case 11: /* R mod M for the digit radix */
        mpz_set_ui(x, 0);
        mpz_setbit(x, 52 * (((bits + 2 + 51) / 52 + 7) / 8 * 8));
        mpz_mod(x, x, M);
        return 1;
    case 12: /* M - 2^52: a low digit boundary just below M */
        mpz_set_ui(x, 0);
        mpz_setbit(x, 52);
        if (mpz_cmp(x, M) >= 0) return 0;
        mpz_sub(x, M, x);
        return 1;
    default:
        return 0;
    }
}

/* pub with modulus n (any odd n; products only). */
static pvg_paillier_pub *pub_of(const mpz_t n)
{
    pvg_paillier_pub *pub = NULL;
    assert_int_equal(pvg_he_pub_from_mpz(n, 0, &pub, NULL), PVG_OK);
    return pub;
}

/* pvg_he_mulmod and the accumulator with each kernel against the naive
 * product, for moduli n^2 of several sizes (the 80-digit specialised IFMA
 * paths at 2048 bits, the generic ones at the others; Barrett's digit
 * count k + 1 exactly a multiple of 8 at 2048 bits, 7 short of one at 1024
 * and 1040). */
static void check_modulus(pvg_paillier_pub *pub, gmp_randstate_t rs, int rounds)
{
    pvg_he_kernel ks[2];
    int nk = kernels(ks);
    const mpz_t *M = &pub->n2;
    mpz_t a, b, fast, ref, prod;
    mpz_inits(a, b, fast, ref, prod, NULL);
    for (int k = 0; k < nk; k++) {
        assert_true(pvg_he_mont_set_kernel(pub->mont, ks[k]));
        assert_int_equal(pvg_he_mont_kernel(pub->mont), ks[k]);
        /* edge x edge */
        for (int i = 0; edge_value(*M, i, a); i++)
            for (int j = 0; edge_value(*M, j, b); j++) {
                pvg_he_mulmod(pub, fast, a, b);
                pvg_he_mulmod_naive(pub, ref, a, b);
                if (mpz_cmp(fast, ref) != 0)
                    fail_msg("kernel %s, %zu-bit modulus: edge %d x edge %d differs",
                             pvg_he_kernel_name(ks[k]), mpz_sizeinbase(*M, 2), i, j);
            }
        /* random x random, random x edge, aliasing out = a */
        for (int r = 0; r < rounds; r++) {
            mpz_urandomm(a, rs, *M);
            mpz_urandomm(b, rs, *M);
            if (r % 4 == 1) edge_value(*M, r / 4 % 13, b);
            pvg_he_mulmod_naive(pub, ref, a, b);
            pvg_he_mulmod(pub, a, a, b);
            if (mpz_cmp(a, ref) != 0)
                fail_msg("kernel %s, %zu-bit modulus: random product %d differs",
                         pvg_he_kernel_name(ks[k]), mpz_sizeinbase(*M, 2), r);
        }
        /* the extremes of the single product's Barrett reduction (IFMA):
         * the largest remainder M-1 (a = -b^-1) with quotients of any
         * size, remainder 0 with a large quotient (multiples of n, their
         * product a multiple of n^2), and operands just below M (the
         * largest quotients, q1's top digits all ones) */
        for (int r = 0; r < rounds / 2 + 6; r++) {
            mpz_urandomm(b, rs, *M);
            if (r % 3 == 0) {
                if (!mpz_invert(a, b, *M)) continue;
                mpz_sub(a, *M, a);
            } else if (r % 3 == 1) {
                mpz_urandomm(a, rs, pub->n);
                mpz_mul(a, a, pub->n);
                mpz_urandomm(b, rs, pub->n);
                mpz_mul(b, b, pub->n);
            } else {
                mpz_fdiv_q_2exp(prod, *M, mpz_sizeinbase(*M, 2) / 2);
                mpz_urandomm(a, rs, prod);
                mpz_sub(a, *M, a);
                mpz_sub_ui(a, a, 1);
                mpz_urandomm(b, rs, prod);
                mpz_sub(b, *M, b);
                mpz_sub_ui(b, b, 1);
            }
            pvg_he_mulmod(pub, fast, a, b);
            pvg_he_mulmod_naive(pub, ref, a, b);
            if (mpz_cmp(fast, ref) != 0)
                fail_msg("kernel %s, %zu-bit modulus: Barrett extreme %d (case %d) differs",
                         pvg_he_kernel_name(ks[k]), mpz_sizeinbase(*M, 2), r, r % 3);
            mpz_add_ui(prod, ref, 1);
            if (r % 3 == 0) assert_true(mpz_cmp(prod, *M) == 0); /* remainder M-1 */
            if (r % 3 == 1) assert_true(mpz_sgn(ref) == 0);
        }
        /* a chain in Montgomery form: random factors with edges mixed in */
        pvg_he_acc *acc = pvg_he_acc_new(pub);
        assert_non_null(acc);
        pvg_he_acc_get(acc, fast);
        assert_true(mpz_cmp_ui(fast, 1) == 0); /* empty product */
        mpz_set_ui(prod, 1);
        for (int r = 0; r < rounds; r++) {
            if (r % 5 == 2 && edge_value(*M, (r / 5) % 13, a) && mpz_sgn(a) != 0) {
                /* (0 would zero the rest of the chain) */
            } else {
                mpz_urandomm(a, rs, *M);
            }
            pvg_he_acc_mul(acc, a);
            pvg_he_mulmod_naive(pub, prod, prod, a);
        }
        /* a factor outside [0, M) is reduced, as the naive path does */
        mpz_add(a, *M, b);
        pvg_he_acc_mul(acc, a);
        pvg_he_mulmod_naive(pub, prod, prod, a);
        pvg_he_acc_get(acc, fast);
        if (mpz_cmp(fast, prod) != 0)
            fail_msg("kernel %s, %zu-bit modulus: chained product differs",
                     pvg_he_kernel_name(ks[k]), mpz_sizeinbase(*M, 2));
        pvg_he_acc_free(acc);
        /* chains through the extreme factors M-1 (-1) and 1 */
        acc = pvg_he_acc_new(pub);
        assert_non_null(acc);
        mpz_sub_ui(a, *M, 1);
        for (int r = 0; r < 3; r++)
            pvg_he_acc_mul(acc, a);
        mpz_set_ui(b, 1);
        pvg_he_acc_mul(acc, b);
        pvg_he_acc_get(acc, fast);
        if (mpz_cmp(fast, a) != 0) /* (-1)^3 * 1 = -1 */
            fail_msg("kernel %s: (-1)^3 chain gives the wrong value", pvg_he_kernel_name(ks[k]));
        pvg_he_acc_free(acc);
        /* zero factor */
        acc = pvg_he_acc_new(pub);
        mpz_set_ui(a, 0);
        pvg_he_acc_mul(acc, a);
        mpz_urandomm(b, rs, *M);
        pvg_he_acc_mul(acc, b);
        pvg_he_acc_get(acc, fast);
        assert_true(mpz_sgn(fast) == 0);
        pvg_he_acc_free(acc);
    }
    /* back to what the CPU selects */
    pvg_he_mont_set_kernel(pub->mont,
                           pvg_he_cpu_has_ifma() ? PVG_HE_KERNEL_IFMA : PVG_HE_KERNEL_MPN);
    mpz_clears(a, b, fast, ref, prod, NULL);
}

static void test_kernels_match_naive(void **state)
{
    gmp_randstate_t rs;
    gmp_randinit_default(rs);
    gmp_randseed_ui(rs, 20261204);
    /* the real key (n^2 of 4096 bits: 64 limbs, 80 digits) */
    check_modulus(g_pub, rs, 400);
    /* odd moduli n of other sizes, including limb/digit boundaries, up to
     * the largest accepted (16384 bits: the kernels' largest buffers) */
    static const unsigned sizes[] = {5, 31, 64, 100, 1024, 1040, 1560, 2047, 3072, 4096, 16384};
    mpz_t n;
    mpz_init(n);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int top = 0; top < 2; top++) {
            mpz_urandomb(n, rs, sizes[i]);
            mpz_setbit(n, sizes[i] - 1);
            mpz_setbit(n, 0);
            if (top) { /* all-ones: the largest modulus of that size */
                mpz_set_ui(n, 0);
                mpz_setbit(n, sizes[i]);
                mpz_sub_ui(n, n, 1);
            }
            pvg_paillier_pub *pub = pub_of(n);
            check_modulus(pub, rs, sizes[i] > 4096 ? 8 : sizes[i] > 2048 ? 40 : 120);
            pvg_paillier_pub_free(pub);
        }
    }
    /* n^2 just below and just above a power of the digit radix b = 2^52
     * (n = 2^(26 j) -+ 1): where Barrett's quotient estimate is furthest
     * off (M near b^k, or near b^(k-1)), so its result needs more than one
     * final subtraction; j = 79 is the specialised 80-digit path */
    static const unsigned digits[] = {1, 2, 7, 8, 16, 40, 79};
    for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++) {
        for (int above = 0; above < 2; above++) {
            mpz_set_ui(n, 0);
            mpz_setbit(n, 26 * digits[i]);
            if (above)
                mpz_add_ui(n, n, 1);
            else
                mpz_sub_ui(n, n, 1);
            pvg_paillier_pub *pub = pub_of(n);
            check_modulus(pub, rs, 400);
            pvg_paillier_pub_free(pub);
        }
    }
    mpz_clear(n);
    gmp_randclear(rs);
}

/* The IFMA constant-time window exponentiation against mpz_powm_sec. */
static void check_powm(const mpz_t M, size_t ebits, gmp_randstate_t rs, int rounds)
{
    pvg_he_mont *m = pvg_he_mont_new(M);
    assert_non_null(m);
    mpz_t b, e, fast, ref;
    mpz_inits(b, e, fast, ref, NULL);
    if (!pvg_he_cpu_has_ifma()) {
        /* no IFMA: the caller must fall back to mpz_powm_sec */
        mpz_set_ui(b, 3);
        mpz_set_ui(e, 5);
        assert_int_equal(pvg_he_powm_sec(m, fast, b, e, ebits), 0);
        goto out;
    }
    for (int r = 0; r < rounds; r++) {
        mpz_urandomm(b, rs, M);
        mpz_urandomb(e, rs, ebits);
        switch (r) {
        case 0:
            mpz_set_ui(b, 0);
            break;
        case 1:
            mpz_set_ui(b, 1);
            break;
        case 2:
            mpz_sub_ui(b, M, 1);
            break;
        case 3:
            mpz_set_ui(e, 0);
            break;
        case 4:
            mpz_set_ui(e, 1);
            break;
        case 5: /* all ones: every window 31 */
            mpz_set_ui(e, 0);
            mpz_setbit(e, ebits);
            mpz_sub_ui(e, e, 1);
            break;
        case 6:
            mpz_set_ui(b, 0);
            mpz_set_ui(e, 0);
            break;
        case 7:
            mpz_sub_ui(b, M, 1);
            mpz_set_ui(e, 0);
            mpz_setbit(e, ebits - 1);
            break;
        default:
            break;
        }
        if (mpz_sgn(e) > 0 || mpz_sgn(b) > 0)
            mpz_powm_sec(ref, b, e, M); /* GMP wants e > 0 here */
        else
            mpz_set_ui(ref, 1);
        if (mpz_sgn(e) == 0) mpz_set_ui(ref, 1);
        assert_int_equal(pvg_he_powm_sec(m, fast, b, e, ebits), 1);
        if (mpz_cmp(fast, ref) != 0)
            fail_msg("powm, %zu-bit modulus, %zu-bit exponents: case %d differs",
                     mpz_sizeinbase(M, 2), ebits, r);
    }
    /* refused (caller falls back): exponent longer than ebits, base >= M,
     * or another kernel */
    mpz_set_ui(e, 0);
    mpz_setbit(e, ebits);
    mpz_set_ui(b, 2);
    assert_int_equal(pvg_he_powm_sec(m, fast, b, e, ebits), 0);
    mpz_set(b, M);
    mpz_set_ui(e, 3);
    assert_int_equal(pvg_he_powm_sec(m, fast, b, e, ebits), 0);
    assert_true(pvg_he_mont_set_kernel(m, PVG_HE_KERNEL_MPN));
    mpz_set_ui(b, 2);
    assert_int_equal(pvg_he_powm_sec(m, fast, b, e, ebits), 0);
out:
    mpz_clears(b, e, fast, ref, NULL);
    pvg_he_mont_free(m);
}

/* The two-at-once form used by decryption (mod p^2 and q^2 interleaved). */
static void check_powm2(gmp_randstate_t rs)
{
    const pvg_he_mont *mp = g_priv->mp2, *mq = g_priv->mq2;
    size_t eb = mpz_sizeinbase(g_priv->q, 2);
    mpz_t b1, b2, e1, e2, o1, o2, r1, r2;
    mpz_inits(b1, b2, e1, e2, o1, o2, r1, r2, NULL);
    if (!pvg_he_cpu_has_ifma()) {
        mpz_set_ui(b1, 3);
        mpz_set_ui(b2, 3);
        mpz_set_ui(e1, 5);
        mpz_set_ui(e2, 5);
        assert_int_equal(pvg_he_powm2_sec(mp, mq, o1, o2, b1, b2, e1, e2, eb), 0);
        goto out;
    }
    for (int r = 0; r < 12; r++) {
        mpz_urandomm(b1, rs, g_priv->p2);
        mpz_urandomm(b2, rs, g_priv->q2);
        mpz_urandomb(e1, rs, eb);
        mpz_urandomb(e2, rs, eb);
        if (r == 0) mpz_set_ui(b1, 1);
        if (r == 1) mpz_sub_ui(b2, g_priv->q2, 1);
        if (r == 2) mpz_set(e1, g_priv->pm1);
        if (r == 3) mpz_set_ui(e2, 1);
        mpz_powm_sec(r1, b1, e1, g_priv->p2);
        mpz_powm_sec(r2, b2, e2, g_priv->q2);
        /* in place, as decryption calls it */
        mpz_set(o1, b1);
        mpz_set(o2, b2);
        assert_int_equal(pvg_he_powm2_sec(mp, mq, o1, o2, o1, o2, e1, e2, eb), 1);
        if (mpz_cmp(o1, r1) != 0 || mpz_cmp(o2, r2) != 0) fail_msg("powm2: case %d differs", r);
    }
    /* contexts of different sizes are refused (the caller goes one by one) */
    assert_int_equal(pvg_he_powm2_sec(mp, g_pub->mont, o1, o2, b1, b1, e1, e2, eb), 0);
out:
    mpz_clears(b1, b2, e1, e2, o1, o2, r1, r2, NULL);
}

static void test_powm_matches_gmp(void **state)
{
    gmp_randstate_t rs;
    gmp_randinit_default(rs);
    gmp_randseed_ui(rs, 4242);
    check_powm2(rs);
    /* the real key's p^2 (40 digits: the 5-vector path), exponents of p's size */
    check_powm(g_priv->p2, mpz_sizeinbase(g_priv->p, 2), rs, 24);
    check_powm(g_priv->q2, mpz_sizeinbase(g_priv->q, 2), rs, 12);
    /* other odd moduli: generic vector counts, exponent lengths that are
     * not multiples of the window */
    static const unsigned sizes[] = {61, 520, 1040, 3072};
    mpz_t M;
    mpz_init(M);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        mpz_urandomb(M, rs, sizes[i]);
        mpz_setbit(M, sizes[i] - 1);
        mpz_setbit(M, 0);
        check_powm(M, sizes[i] / 2 + 1, rs, 10);
        check_powm(M, 7, rs, 8);
    }
    mpz_clear(M);
    gmp_randclear(rs);
}

static void test_kernel_selection(void **state)
{
    const char *k = pvg_paillier_kernel(g_pub);
    if (pvg_he_cpu_has_ifma()) {
        assert_string_equal(k, "avx512ifma");
    } else {
        assert_string_equal(k, "mpn");
        /* IFMA cannot be forced on a CPU without it */
        assert_false(pvg_he_mont_set_kernel(g_pub->mont, PVG_HE_KERNEL_IFMA));
        print_message("this CPU has no AVX-512 IFMA: only the portable kernel ran\n");
    }
}

static pvg_paillier_ct *enc_ct(pvg_paillier_enc *enc, const char *text, int max_exp)
{
    pvg_paillier_ct *ct = pvg_paillier_ct_new(g_pub);
    assert_non_null(ct);
    assert_int_equal(pvg_paillier_encrypt_text(enc, text, max_exp, ct, NULL), PVG_OK);
    return ct;
}

static void test_sum_matches_add(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(77);
    pvg_paillier_enc_options eo = {
        .mode = PVG_PAILLIER_OBF_DJN, .rng = rng, .allow_insecure_rng = 1};
    pvg_paillier_enc *enc;
    assert_int_equal(pvg_paillier_enc_new(g_pub, &eo, &enc, NULL), PVG_OK);
    enum { N = 40 };
    pvg_paillier_ct *cts[N];
    long long want = 0;
    for (int i = 0; i < N; i++) {
        char buf[32];
        long long v = (i * 7919LL) % 1000 - 500;
        want += v;
        snprintf(buf, sizeof buf, "%lld", v);
        cts[i] = enc_ct(enc, buf, 0);
    }
    pvg_he_kernel ks[2];
    int nk = kernels(ks);
    for (int k = 0; k < nk; k++) {
        assert_true(pvg_he_mont_set_kernel(g_pub->mont, ks[k]));
        pvg_paillier_ct *s = pvg_paillier_ct_new(g_pub), *ref = pvg_paillier_ct_new(g_pub);
        assert_int_equal(pvg_paillier_sum(s, cts, N, NULL), PVG_OK);
        for (int i = 0; i < N; i++)
            assert_int_equal(pvg_paillier_add(ref, ref, cts[i], NULL), PVG_OK);
        /* the same ciphertext, not only the same plaintext */
        assert_true(mpz_cmp(s->c, ref->c) == 0);
        char *txt;
        assert_int_equal(pvg_paillier_decrypt_text(g_priv, s, &txt, NULL), PVG_OK);
        char wbuf[32];
        snprintf(wbuf, sizeof wbuf, "%lld", want);
        assert_string_equal(txt, wbuf);
        free(txt);
        /* out may be one of the terms */
        pvg_paillier_ct *pair[2] = {cts[0], cts[1]};
        pvg_paillier_ct *c0 = pvg_paillier_ct_new(g_pub);
        assert_int_equal(pvg_paillier_ct_copy(c0, cts[0], NULL), PVG_OK);
        pair[0] = c0;
        assert_int_equal(pvg_paillier_sum(c0, pair, 2, NULL), PVG_OK);
        assert_int_equal(pvg_paillier_add(ref, cts[0], cts[1], NULL), PVG_OK);
        assert_true(mpz_cmp(c0->c, ref->c) == 0);
        pvg_paillier_ct_free(c0);
        /* empty sum: E(0), exponent 0 */
        assert_int_equal(pvg_paillier_sum(s, NULL, 0, NULL), PVG_OK);
        assert_true(mpz_cmp_ui(s->c, 1) == 0);
        assert_int_equal(pvg_paillier_ct_exponent(s), 0);
        pvg_paillier_ct_free(s);
        pvg_paillier_ct_free(ref);
    }
    pvg_he_mont_set_kernel(g_pub->mont,
                           pvg_he_cpu_has_ifma() ? PVG_HE_KERNEL_IFMA : PVG_HE_KERNEL_MPN);
    /* mixed exponents: aligned to the smallest, as chained adds do */
    pvg_paillier_ct *mix[3] = {enc_ct(enc, "1.5", INT_MAX), enc_ct(enc, "2", INT_MAX),
                               enc_ct(enc, "-0.25", INT_MAX)};
    pvg_paillier_ct *s = pvg_paillier_ct_new(g_pub), *ref = pvg_paillier_ct_new(g_pub);
    assert_int_equal(pvg_paillier_sum(s, mix, 3, NULL), PVG_OK);
    assert_int_equal(pvg_paillier_add(ref, mix[0], mix[1], NULL), PVG_OK);
    assert_int_equal(pvg_paillier_add(ref, ref, mix[2], NULL), PVG_OK);
    assert_int_equal(pvg_paillier_ct_exponent(s), pvg_paillier_ct_exponent(ref));
    assert_true(mpz_cmp(s->c, ref->c) == 0);
    double d;
    assert_int_equal(pvg_paillier_decrypt_double(g_priv, s, &d, NULL), PVG_OK);
    assert_true(d == 3.25);
    /* a term under another key: refused, naming it */
    pvg_paillier_ct *other = pvg_paillier_ct_new(g_pub2);
    pvg_paillier_ct *bad[3] = {mix[0], other, mix[1]};
    pvg_error err;
    assert_int_equal(pvg_paillier_sum(s, bad, 3, &err), PVG_ERR_CRYPTO);
    assert_non_null(strstr(err.text, "ciphertext 1"));
    pvg_paillier_ct_free(other);
    for (int i = 0; i < 3; i++)
        pvg_paillier_ct_free(mix[i]);
    pvg_paillier_ct_free(s);
    pvg_paillier_ct_free(ref);
    for (int i = 0; i < N; i++)
        pvg_paillier_ct_free(cts[i]);
    pvg_paillier_enc_free(enc);
    pvg_rng_free(rng);
}

static void test_decrypt_batch(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(78);
    pvg_paillier_enc_options eo = {
        .mode = PVG_PAILLIER_OBF_DJN, .rng = rng, .allow_insecure_rng = 1};
    pvg_paillier_enc *enc;
    assert_int_equal(pvg_paillier_enc_new(g_pub, &eo, &enc, NULL), PVG_OK);
    static const char *vals[] = {
        "0", "1", "-1", "12.35", "-1e-3", "123456789012345678901234567890", "3.0", "-42"};
    enum { N = sizeof vals / sizeof vals[0] };
    pvg_paillier_ct *cts[N];
    for (int i = 0; i < N; i++)
        cts[i] = enc_ct(enc, vals[i], INT_MAX);
    /* n^2 - 1 is in the group (gcd(n^2 - 1, n) = 1): decrypts like one at a time */
    mpz_sub_ui(cts[N - 1]->c, g_pub->n2, 1);
    static const unsigned threads[] = {1, 2, 3, 0, 64};
    /* with the key's kernel for p^2 and q^2 (IFMA where present), then MPN
     * (GMP's mpz_powm_sec) */
    for (size_t t = 0; t < 2 * sizeof threads / sizeof threads[0]; t++) {
        if (t == sizeof threads / sizeof threads[0]) {
            assert_true(pvg_he_mont_set_kernel(g_priv->mp2, PVG_HE_KERNEL_MPN));
            assert_true(pvg_he_mont_set_kernel(g_priv->mq2, PVG_HE_KERNEL_MPN));
        }
        char *txt[N];
        double dbl[N];
        unsigned th = threads[t % (sizeof threads / sizeof threads[0])];
        assert_int_equal(pvg_paillier_decrypt_batch_text(g_priv, cts, N, th, txt, NULL), PVG_OK);
        assert_int_equal(pvg_paillier_decrypt_batch_double(g_priv, cts, N, th, dbl, NULL), PVG_OK);
        for (int i = 0; i < N; i++) {
            char *one;
            double d1;
            pvg_status st1 = pvg_paillier_decrypt_text(g_priv, cts[i], &one, NULL);
            assert_int_equal(st1, PVG_OK);
            assert_string_equal(txt[i], one);
            assert_int_equal(pvg_paillier_decrypt_double(g_priv, cts[i], &d1, NULL), PVG_OK);
            assert_true(dbl[i] == d1);
            /* and the textbook decryption, for the raw plaintext */
            mpz_t m1, m2;
            mpz_inits(m1, m2, NULL);
            pvg_he_raw_decrypt(g_priv, cts[i]->c, m1);
            pvg_he_raw_decrypt_textbook(g_priv, cts[i]->c, m2);
            assert_true(mpz_cmp(m1, m2) == 0);
            mpz_clears(m1, m2, NULL);
            free(one);
            free(txt[i]);
        }
    }
    if (pvg_he_cpu_has_ifma()) {
        assert_true(pvg_he_mont_set_kernel(g_priv->mp2, PVG_HE_KERNEL_IFMA));
        assert_true(pvg_he_mont_set_kernel(g_priv->mq2, PVG_HE_KERNEL_IFMA));
    }
    /* one ciphertext alone (its two halves on two threads) */
    double d;
    assert_int_equal(pvg_paillier_decrypt_batch_double(g_priv, &cts[3], 1, 2, &d, NULL), PVG_OK);
    assert_true(d == 12.35);
    /* nothing to do */
    assert_int_equal(pvg_paillier_decrypt_batch_double(g_priv, NULL, 0, 2, NULL, NULL), PVG_OK);
    /* a ciphertext under another key: the index is named, nothing returned */
    pvg_paillier_ct *other = pvg_paillier_ct_new(g_pub2);
    pvg_paillier_ct *bad[3] = {cts[0], cts[1], other};
    char *txt[3] = {(char *)1, (char *)1, (char *)1};
    pvg_error err;
    assert_int_equal(pvg_paillier_decrypt_batch_text(g_priv, bad, 3, 2, txt, &err), PVG_ERR_CRYPTO);
    assert_non_null(strstr(err.text, "ciphertext 2"));
    for (int i = 0; i < 3; i++)
        assert_null(txt[i]);
    /* the overflow band is reported with its index */
    pvg_paillier_ct *band = pvg_paillier_ct_new(g_pub);
    mpz_t m;
    mpz_init(m);
    mpz_fdiv_q_ui(m, g_pub->n, 2); /* inside (max_int, n - max_int) */
    pvg_he_raw_encrypt(g_pub, m, NULL, band->c);
    pvg_paillier_ct *bandv[2] = {cts[0], band};
    double dd[2] = {7, 7};
    assert_int_equal(pvg_paillier_decrypt_batch_double(g_priv, bandv, 2, 2, dd, &err),
                     PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "ciphertext 1"));
    assert_true(dd[0] == 0 && dd[1] == 0);
    mpz_clear(m);
    pvg_paillier_ct_free(band);
    pvg_paillier_ct_free(other);
    for (int i = 0; i < N; i++)
        pvg_paillier_ct_free(cts[i]);
    pvg_paillier_enc_free(enc);
    pvg_rng_free(rng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_selection), cmocka_unit_test(test_kernels_match_naive),
        cmocka_unit_test(test_sum_matches_add),  cmocka_unit_test(test_powm_matches_gmp),
        cmocka_unit_test(test_decrypt_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
