/*
 * test_secagg_kernels.c - the multi-seed mask kernels of secure aggregation
 * (sa_mask_accumulate: the generic one over libsodium and, on x86-64 with
 * AVX-512, the one that computes 16 ChaCha20 blocks in registers) against
 * the naive reference pvg_secagg_mask_add_ref, seed by seed, for 32- and
 * 64-bit words, block-aligned offsets, lengths that end inside a block, a
 * 1 KiB group and an 8 KiB chunk, and both signs; plus a known answer of
 * the keystream (RFC 8439's ChaCha20 test vector) so that every kernel is
 * tied to the cipher itself, not only to the reference.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "crypto/secagg_internal.h"

#include <privguide/secagg.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static const int kernels[] = {SA_KERNEL_GENERIC, SA_KERNEL_AVX512};

/* vec = pattern; then every kernel and the reference must agree */
static void check_case(int kernel, unsigned bits, size_t off, size_t len, size_t m)
{
    size_t w = bits / 8;
    uint8_t *seeds = malloc(32 * m + 1);
    signed char *signs = malloc(m + 1);
    uint8_t *got = malloc(len * w + 1), *want = malloc(len * w + 1);
    assert_non_null(seeds);
    assert_non_null(signs);
    assert_non_null(got);
    assert_non_null(want);
    for (size_t i = 0; i < 32 * m; i++)
        seeds[i] = (uint8_t)(i * 131 + off + len);
    for (size_t i = 0; i < m; i++)
        signs[i] = (i % 3 == 1) ? -1 : 1;
    for (size_t i = 0; i < len * w; i++)
        got[i] = want[i] = (uint8_t)(i * 7 + 3);
    sa_mask_accumulate_with(kernel, got, off, len, bits, seeds, signs, m);
    for (size_t i = 0; i < m; i++)
        pvg_secagg_mask_add_ref(want, off, len, bits, seeds + 32 * i, signs[i]);
    if (memcmp(got, want, len * w) != 0)
        fail_msg("kernel %d bits %u offset %zu len %zu seeds %zu differs from the reference",
                 kernel, bits, off, len, m);
    free(seeds);
    free(signs);
    free(got);
    free(want);
}

static void test_kernels_match_reference(void **state)
{
    (void)state;
    assert_int_equal(pvg_init(), PVG_OK);
    static const size_t lens[] = {1,   2,   3,    15,   16,   17,   127, 255,
                                  256, 257, 1000, 2047, 2048, 2049, 5000};
    static const size_t seeds[] = {1, 2, 7};
    int ran = 0;
    for (size_t kk = 0; kk < sizeof kernels / sizeof *kernels; kk++) {
        if (!sa_mask_kernel_available(kernels[kk])) continue;
        ran++;
        for (unsigned bits = 32; bits <= 64; bits += 32) {
            size_t step = bits == 32 ? 16 : 8;
            for (size_t o = 0; o < 4; o++)
                for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
                    for (size_t si = 0; si < sizeof seeds / sizeof *seeds; si++)
                        check_case(kernels[kk], bits, o * step * 5, lens[li], seeds[si]);
        }
    }
    assert_true(ran >= 1);
}

/* the default dispatch agrees with m single-seed adds, and +s then -s
 * restores the vector */
static void test_accumulate_cancels(void **state)
{
    (void)state;
    assert_int_equal(pvg_init(), PVG_OK);
    size_t d = 70000;
    uint32_t *v = malloc(d * 4), *orig = malloc(d * 4), *one = malloc(d * 4);
    assert_non_null(v);
    assert_non_null(orig);
    assert_non_null(one);
    uint8_t seeds[5 * 32];
    signed char signs[5] = {1, -1, 1, 1, -1};
    for (size_t i = 0; i < sizeof seeds; i++)
        seeds[i] = (uint8_t)(255 - i);
    for (size_t i = 0; i < d; i++)
        v[i] = orig[i] = one[i] = (uint32_t)(i * 2654435761u);
    sa_mask_accumulate(v, 0, d, 32, seeds, signs, 5);
    for (int i = 0; i < 5; i++)
        pvg_secagg_mask_add(one, 0, d, 32, seeds + 32 * i, signs[i]);
    assert_memory_equal(v, one, d * 4);
    assert_memory_not_equal(v, orig, d * 4);
    signed char neg[5];
    for (int i = 0; i < 5; i++)
        neg[i] = (signed char)-signs[i];
    sa_mask_accumulate(v, 0, d, 32, seeds, neg, 5);
    assert_memory_equal(v, orig, d * 4);
    free(v);
    free(orig);
    free(one);
}

/* RFC 8439 section 2.4.2 uses nonce 000000000000004a00000000 and counter 1;
 * our nonce is fixed ("PVSA-mask"), so the tie to the cipher is through
 * libsodium's own IETF ChaCha20: the keystream of every kernel equals
 * crypto_stream_chacha20_ietf_xor_ic of zeros, which the RFC vector checks. */
static void test_keystream_is_chacha20(void **state)
{
    (void)state;
    assert_int_equal(pvg_init(), PVG_OK);
    /* RFC 8439 2.4.2: key 00..1f, nonce 00 00 00 00 00 00 00 4a 00 00 00 00,
     * counter 1: first keystream bytes (plaintext XOR ciphertext) */
    uint8_t key[32], nonce[12] = {0, 0, 0, 0, 0, 0, 0, 0x4a, 0, 0, 0, 0}, ks[64];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    memset(ks, 0, sizeof ks);
    crypto_stream_chacha20_ietf_xor_ic(ks, ks, 64, nonce, 1, key);
    static const uint8_t want[16] = {0x22, 0x4f, 0x51, 0xf3, 0x40, 0x1b, 0xd9, 0xe1,
                                     0x2f, 0xde, 0x27, 0x6f, 0xb8, 0x63, 0x1d, 0xed};
    assert_memory_equal(ks, want, 16);
    /* each kernel: zeros + keystream = the libsodium keystream with our nonce */
    static const uint8_t mask_nonce[12] = {'P', 'V', 'S', 'A', '-', 'm', 'a', 's', 'k', 0, 0, 0};
    size_t d = 4096 + 48;
    uint8_t *z = calloc(d, 4), *ref = calloc(d, 4);
    assert_non_null(z);
    assert_non_null(ref);
    crypto_stream_chacha20_ietf(ref, d * 4, mask_nonce, key);
    for (size_t kk = 0; kk < sizeof kernels / sizeof *kernels; kk++) {
        if (!sa_mask_kernel_available(kernels[kk])) continue;
        signed char plus = 1;
        memset(z, 0, d * 4);
        sa_mask_accumulate_with(kernels[kk], z, 0, d, 32, key, &plus, 1);
        assert_memory_equal(z, ref, d * 4);
    }
    free(z);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_match_reference),
        cmocka_unit_test(test_accumulate_cancels),
        cmocka_unit_test(test_keystream_is_chacha20),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
