/*
 * test_shamir.c - Shamir sharing over GF(2^61-1) and additive sharing:
 * field known answers, reconstruction from any t shares, t-1 shares reveal
 * nothing (uniformity), strict share serialization.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/shamir.h>

#include <stdlib.h>
#include <string.h>

#define P PVG_SHAMIR_PRIME

static int sanitized(void)
{
    const char *s = getenv("PVG_SANITIZED");
    return s && *s == '1';
}

static void test_field_kat(void **state)
{
    (void)state;
    /* 2^60 * 2^60 = 2^120 = 2^(61+59) = 2^59 mod 2^61-1 */
    assert_int_equal(pvg_shamir_mul(1ull << 60, 1ull << 60), 1ull << 59);
    assert_int_equal(pvg_shamir_inv(2), 1ull << 60);
    assert_int_equal(pvg_shamir_mul(P - 1, P - 1), 1);
    assert_int_equal(pvg_shamir_add(P - 1, 5), 4);
    assert_int_equal(pvg_shamir_sub(3, 5), P - 2);
    for (uint64_t a = 1; a < 2000; a += 37)
        assert_int_equal(pvg_shamir_mul(a, pvg_shamir_inv(a)), 1);
    assert_int_equal(pvg_shamir_mul(123456789012345ull, pvg_shamir_inv(123456789012345ull)), 1);
}

static void test_combine_kat(void **state)
{
    (void)state;
    /* f(x) = 1234 + 166 x + 94 x^2: f(1)=1494, f(2)=1942, f(3)=2578 */
    uint64_t xs[3] = {1, 2, 3}, ys[3] = {1494, 1942, 2578}, s = 0;
    assert_int_equal(pvg_shamir_combine(xs, ys, 3, 1, &s, NULL), PVG_OK);
    assert_int_equal(s, 1234);
    uint64_t xs2[3] = {3, 1, 2}, ys2[3] = {2578, 1494, 1942};
    assert_int_equal(pvg_shamir_combine(xs2, ys2, 3, 1, &s, NULL), PVG_OK);
    assert_int_equal(s, 1234);
    /* f(x) = (p-1) + (p-1) x: f(1) = p-2, f(2) = p-3 */
    uint64_t xs3[2] = {1, 2}, ys3[2] = {P - 2, P - 3};
    assert_int_equal(pvg_shamir_combine(xs3, ys3, 2, 1, &s, NULL), PVG_OK);
    assert_int_equal(s, P - 1);
    /* f(4) evaluated from the first polynomial: 1234 + 664 + 1504 = 3402 */
    uint64_t at4 = 0;
    assert_int_equal(pvg_shamir_interpolate_at(xs, ys, 3, 1, 4, &at4, NULL), PVG_OK);
    assert_int_equal(at4, 3402);
    /* bad points */
    uint64_t bad[2] = {1, 1};
    pvg_error err;
    assert_int_equal(pvg_shamir_combine(bad, ys, 2, 1, &s, &err), PVG_ERR_INVALID);
    uint64_t zero[2] = {0, 1};
    assert_int_equal(pvg_shamir_combine(zero, ys, 2, 1, &s, &err), PVG_ERR_INVALID);
}

static void test_split_any_t(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    enum { N = 7, T = 4, M = 3 };
    uint64_t secret[M] = {0, 42, P - 1}, xs[N], sh[N * M];
    for (int i = 0; i < N; i++)
        xs[i] = 100 + 3 * (uint64_t)i;
    assert_int_equal(pvg_shamir_split(secret, M, T, N, xs, rng, sh, NULL), PVG_OK);
    /* every 4-subset (and larger) recovers, checked over all subsets */
    for (unsigned mask = 0; mask < (1u << N); mask++) {
        if (__builtin_popcount(mask) < T) continue;
        uint64_t sx[N], sv[N * M], out[M];
        size_t c = 0;
        for (int i = 0; i < N; i++)
            if (mask >> i & 1) {
                sx[c] = xs[i];
                memcpy(sv + c * M, sh + i * M, sizeof(uint64_t) * M);
                c++;
            }
        assert_int_equal(pvg_shamir_combine(sx, sv, c, M, out, NULL), PVG_OK);
        assert_memory_equal(out, secret, sizeof secret);
    }
    /* keys */
    uint8_t key[32], back[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0xF0 + i);
    uint64_t ksh[N * 8];
    assert_int_equal(pvg_shamir_split_key(key, T, N, xs, rng, ksh, NULL), PVG_OK);
    assert_int_equal(pvg_shamir_combine_key(xs + 2, ksh + 2 * 8, T, back, NULL), PVG_OK);
    assert_memory_equal(key, back, 32);
    /* t-1 shares give a wrong key (and usually not even 32-bit words) */
    pvg_status st = pvg_shamir_combine_key(xs, ksh, T - 1, back, NULL);
    assert_true(st != PVG_OK || memcmp(key, back, 32) != 0);
    /* argument checks */
    assert_int_equal(pvg_shamir_split(secret, M, 0, N, xs, rng, sh, NULL), PVG_ERR_INVALID);
    assert_int_equal(pvg_shamir_split(secret, M, N + 1, N, xs, rng, sh, NULL), PVG_ERR_INVALID);
    uint64_t big = P;
    assert_int_equal(pvg_shamir_split(&big, 1, 2, N, xs, rng, sh, NULL), PVG_ERR_INVALID);
    pvg_rng_free(rng);
}

/* t-1 colluding holders learn nothing: the joint distribution of their
 * shares does not depend on the secret. For two very different secrets we
 * draw many sharings and chi-square-test the low 4 bits of each of the t-1
 * shares against uniform (15 dof, critical value 37.70 at p = 0.001), and
 * check that any candidate secret is consistent with the t-1 shares. */
static void test_t_minus_1_learn_nothing(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(11);
    enum { N = 5, T = 3 };
    int runs = sanitized() ? 2000 : 8000;
    uint64_t xs[N] = {1, 2, 3, 4, 5};
    uint64_t secrets[2] = {0, P - 1};
    for (int s = 0; s < 2; s++) {
        long bins[T - 1][16];
        memset(bins, 0, sizeof bins);
        for (int r = 0; r < runs; r++) {
            uint64_t sh[N];
            assert_int_equal(pvg_shamir_split(&secrets[s], 1, T, N, xs, rng, sh, NULL), PVG_OK);
            for (int h = 0; h < T - 1; h++)
                bins[h][sh[h] & 15]++;
            if (r < 50) {
                /* any candidate secret c is consistent with the t-1 shares:
                 * the degree-2 polynomial through (0, c), (x0, s0), (x1, s1)
                 * gives a third share that, with the observed two,
                 * reconstructs c */
                uint64_t c = pvg_rng_uniform(rng, P), x2 = xs[2];
                uint64_t px[3] = {0, xs[0], xs[1]}, py[3] = {c, sh[0], sh[1]}, y2 = 0, back;
                for (int i = 0; i < 3; i++) {
                    uint64_t num = 1, den = 1;
                    for (int k = 0; k < 3; k++) {
                        if (k == i) continue;
                        num = pvg_shamir_mul(num, pvg_shamir_sub(x2, px[k]));
                        den = pvg_shamir_mul(den, pvg_shamir_sub(px[i], px[k]));
                    }
                    y2 = pvg_shamir_add(
                        y2, pvg_shamir_mul(py[i], pvg_shamir_mul(num, pvg_shamir_inv(den))));
                }
                uint64_t qx[3] = {xs[0], xs[1], x2}, qy[3] = {sh[0], sh[1], y2};
                assert_int_equal(pvg_shamir_combine(qx, qy, 3, 1, &back, NULL), PVG_OK);
                assert_int_equal(back, c);
            }
        }
        for (int h = 0; h < T - 1; h++) {
            double e = runs / 16.0, chi = 0;
            for (int b = 0; b < 16; b++)
                chi += (bins[h][b] - e) * (bins[h][b] - e) / e;
            assert_true(chi < 37.70);
        }
    }
    pvg_rng_free(rng);
}

static void test_serialization(void **state)
{
    (void)state;
    uint64_t vals[3] = {1, P - 1, 99}, back[3], x;
    size_t m;
    uint8_t buf[128];
    size_t len = pvg_shamir_share_encode(77, vals, 3, buf, sizeof buf);
    assert_int_equal(len, pvg_shamir_share_size(3));
    assert_int_equal(pvg_shamir_share_decode(buf, len, &x, back, 3, &m, NULL), PVG_OK);
    assert_int_equal(x, 77);
    assert_int_equal(m, 3);
    assert_memory_equal(vals, back, sizeof vals);
    pvg_error err;
    /* every truncation is refused */
    for (size_t l = 0; l < len; l++)
        assert_int_equal(pvg_shamir_share_decode(buf, l, &x, back, 3, &m, &err), PVG_ERR_INVALID);
    uint8_t bad[128];
    memcpy(bad, buf, len);
    bad[0] = 'X';
    assert_int_equal(pvg_shamir_share_decode(bad, len, &x, back, 3, &m, &err), PVG_ERR_INVALID);
    memcpy(bad, buf, len);
    bad[4] = 2;
    assert_int_equal(pvg_shamir_share_decode(bad, len, &x, back, 3, &m, &err), PVG_ERR_UNSUPPORTED);
    memcpy(bad, buf, len);
    bad[20 + 8 + 7] = 0xFF; /* value 1 becomes >= p */
    assert_int_equal(pvg_shamir_share_decode(bad, len, &x, back, 3, &m, &err), PVG_ERR_INVALID);
    assert_int_equal(err.offset, 28);
    memcpy(bad, buf, len);
    memset(bad + 8, 0, 8); /* x = 0 */
    assert_int_equal(pvg_shamir_share_decode(bad, len, &x, back, 3, &m, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_shamir_share_decode(buf, len, &x, back, 2, &m, &err), PVG_ERR_INVALID);
    uint8_t longer[129];
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(pvg_shamir_share_decode(longer, len + 1, &x, back, 3, &m, &err),
                     PVG_ERR_INVALID);
}

static void test_additive(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    uint64_t secret[4] = {0, 1, 0xFFFFFFFF, 12345}, sh[5 * 4], back[4];
    assert_int_equal(pvg_additive_split(secret, 4, 5, 32, rng, sh, NULL), PVG_OK);
    assert_int_equal(pvg_additive_combine(sh, 5, 4, 32, back, NULL), PVG_OK);
    assert_memory_equal(secret, back, sizeof secret);
    uint64_t s64[2] = {UINT64_MAX, 7}, sh64[3 * 2];
    assert_int_equal(pvg_additive_split(s64, 2, 3, 64, rng, sh64, NULL), PVG_OK);
    assert_int_equal(pvg_additive_combine(sh64, 3, 2, 64, back, NULL), PVG_OK);
    assert_memory_equal(s64, back, sizeof s64);
    /* n-1 shares miss the secret: known answer from a fixed sharing */
    uint64_t fixed[3] = {10, 20, 0xFFFFFFF0}; /* 10 + 20 - 16 = 14 mod 2^32 */
    assert_int_equal(pvg_additive_combine(fixed, 3, 1, 32, back, NULL), PVG_OK);
    assert_int_equal(back[0], 14);
    assert_int_equal(pvg_additive_split(secret, 4, 1, 32, rng, sh, NULL), PVG_ERR_INVALID);
    uint64_t big = 1ull << 32;
    assert_int_equal(pvg_additive_split(&big, 1, 3, 32, rng, sh, NULL), PVG_ERR_INVALID);
    /* serialization */
    uint8_t buf[64];
    size_t len = pvg_additive_share_encode(9, 32, sh, 4, buf, sizeof buf);
    assert_int_equal(len, pvg_additive_share_size(4));
    uint32_t idx;
    unsigned bits;
    size_t m;
    assert_int_equal(pvg_additive_share_decode(buf, len, &idx, &bits, back, 4, &m, NULL), PVG_OK);
    assert_int_equal(idx, 9);
    assert_int_equal(bits, 32);
    assert_memory_equal(back, sh, 4 * sizeof(uint64_t));
    for (size_t l = 0; l < len; l++)
        assert_int_not_equal(pvg_additive_share_decode(buf, l, &idx, &bits, back, 4, &m, NULL),
                             PVG_OK);
    buf[16 + 4] = 1; /* high word of a 32-bit share */
    assert_int_equal(pvg_additive_share_decode(buf, len, &idx, &bits, back, 4, &m, NULL),
                     PVG_ERR_INVALID);
    pvg_rng_free(rng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_kat),     cmocka_unit_test(test_combine_kat),
        cmocka_unit_test(test_split_any_t),   cmocka_unit_test(test_t_minus_1_learn_nothing),
        cmocka_unit_test(test_serialization), cmocka_unit_test(test_additive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
