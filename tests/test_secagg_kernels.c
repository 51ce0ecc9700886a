/*
 * test_secagg_kernels.c - the multi-seed mask kernels of secure aggregation
 * (sa_mask_accumulate: the generic one over libsodium or the portable block
 * function and, on x86-64 with AVX-512, the one that computes 16 ChaCha
 * blocks in registers) against the naive reference
 * pvg_secagg_mask_add_ref_rounds, seed by seed, for 16-, 32- and 64-bit
 * words, ChaCha with 8, 12 and 20 rounds, block-aligned offsets, lengths
 * that end inside a block (and inside a 32-bit word), a 1 KiB group and an
 * 8 KiB chunk, and both signs; plus known answers of the keystream (RFC
 * 8439's ChaCha20 vectors, and the reference against libsodium's ChaCha20)
 * so that every kernel is tied to the cipher itself, not only to the
 * reference.
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
static void check_case(int kernel, unsigned bits, unsigned rounds, size_t off, size_t len, size_t m)
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
    sa_mask_accumulate_with(kernel, got, off, len, bits, rounds, seeds, signs, m);
    for (size_t i = 0; i < m; i++)
        pvg_secagg_mask_add_ref_rounds(want, off, len, bits, rounds, seeds + 32 * i, signs[i]);
    if (memcmp(got, want, len * w) != 0)
        fail_msg("kernel %d bits %u rounds %u offset %zu len %zu seeds %zu differs from the "
                 "reference",
                 kernel, bits, rounds, off, len, m);
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
        static const unsigned rounds[] = {8, 12, 20};
        for (unsigned bits = 16; bits <= 64; bits *= 2)
            for (size_t ri = 0; ri < 3; ri++) {
                size_t step = 64 / (bits / 8);
                for (size_t o = 0; o < 4; o++)
                    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
                        for (size_t si = 0; si < sizeof seeds / sizeof *seeds; si++)
                            check_case(kernels[kk], bits, rounds[ri], o * step * 5, lens[li],
                                       seeds[si]);
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
    sa_mask_accumulate(v, 0, d, 32, 0, seeds, signs, 5);
    for (int i = 0; i < 5; i++)
        pvg_secagg_mask_add(one, 0, d, 32, seeds + 32 * i, signs[i]);
    assert_memory_equal(v, one, d * 4);
    assert_memory_not_equal(v, orig, d * 4);
    signed char neg[5];
    for (int i = 0; i < 5; i++)
        neg[i] = (signed char)-signs[i];
    sa_mask_accumulate(v, 0, d, 32, 0, seeds, neg, 5);
    assert_memory_equal(v, orig, d * 4);
    /* 16-bit words (2d of them in the same bytes) with ChaCha8 and ChaCha12 */
    memcpy(one, orig, d * 4);
    for (unsigned r = 8; r <= 12; r += 4) {
        sa_mask_accumulate(v, 0, 2 * d, 16, r, seeds, signs, 5);
        for (int i = 0; i < 5; i++)
            pvg_secagg_mask_add_rounds(one, 0, 2 * d, 16, r, seeds + 32 * i, signs[i]);
        assert_memory_equal(v, one, d * 4);
        assert_memory_not_equal(v, orig, d * 4);
        sa_mask_accumulate(v, 0, 2 * d, 16, r, seeds, neg, 5);
        assert_memory_equal(v, orig, d * 4);
        memcpy(one, orig, d * 4);
    }
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
        sa_mask_accumulate_with(kernels[kk], z, 0, d, 32, 20, key, &plus, 1);
        assert_memory_equal(z, ref, d * 4);
    }
    free(z);
    free(ref);
}

/* The naive reference block function at 20 rounds is ChaCha20: RFC 8439
 * section 2.3.2's block, and libsodium's IETF ChaCha20 for many keys,
 * counters and nonces. Its 8 and 12 rounds are the same double round fewer
 * times: the all-zero key and nonce at counter 0 give the first keystream
 * blocks of the original ChaCha8 and ChaCha12 (whose 64-bit counter and
 * nonce lay out as the IETF ones when both are zero), as published with
 * Bernstein's reference code and in draft-strombergson-chacha-test-vectors. */
static void test_reference_is_chacha(void **state)
{
    (void)state;
    assert_int_equal(pvg_init(), PVG_OK);
    uint8_t key[32], nonce[12] = {0, 0, 0, 0x09, 0, 0, 0, 0x4a, 0, 0, 0, 0}, out[64], want[64];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    pvg_secagg_chacha_block_ref(key, 1, nonce, 20, out);
    static const uint8_t rfc[16] = {0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15,
                                    0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20, 0x71, 0xc4};
    assert_memory_equal(out, rfc, 16);
    for (uint32_t t = 0; t < 200; t++) {
        for (int i = 0; i < 32; i++)
            key[i] = (uint8_t)(t * 37 + (uint32_t)i * 11);
        for (int i = 0; i < 12; i++)
            nonce[i] = (uint8_t)(t * 13 + (uint32_t)i);
        uint32_t ic = t < 100 ? t : 0xFFFFFF00u + t;
        memset(want, 0, 64);
        crypto_stream_chacha20_ietf_xor_ic(want, want, 64, nonce, ic, key);
        pvg_secagg_chacha_block_ref(key, ic, nonce, 20, out);
        assert_memory_equal(out, want, 64);
    }
    memset(key, 0, sizeof key);
    memset(nonce, 0, sizeof nonce);
    static const uint8_t c8[16] = {0x3e, 0x00, 0xef, 0x2f, 0x89, 0x5f, 0x40, 0xd6,
                                   0x7f, 0x5b, 0xb8, 0xe8, 0x1f, 0x09, 0xa5, 0xa1};
    static const uint8_t c12[16] = {0x9b, 0xf4, 0x9a, 0x6a, 0x07, 0x55, 0xf9, 0x53,
                                    0x81, 0x1f, 0xce, 0x12, 0x5f, 0x26, 0x83, 0xd5};
    static const uint8_t c20[16] = {0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90,
                                    0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86, 0xbd, 0x28};
    pvg_secagg_chacha_block_ref(key, 0, nonce, 8, out);
    assert_memory_equal(out, c8, 16);
    pvg_secagg_chacha_block_ref(key, 0, nonce, 12, out);
    assert_memory_equal(out, c12, 16);
    pvg_secagg_chacha_block_ref(key, 0, nonce, 20, out);
    assert_memory_equal(out, c20, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_match_reference),
        cmocka_unit_test(test_accumulate_cancels),
        cmocka_unit_test(test_keystream_is_chacha20),
        cmocka_unit_test(test_reference_is_chacha),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
