/*
 * secagg_common.c - pieces of secure aggregation shared by client and
 * server: parameter checks, the neighbourhood graph, the key derivation,
 * the ChaCha20 mask kernels (fast and reference), the wire header and the
 * quantisation helpers.
 */
#include "crypto/secagg_internal.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/mman.h>

/* The mask kernels read the keystream as native words; the wire and the
 * reference kernel define them as little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "secagg mask kernels assume a little-endian host; add byte swaps first"
#endif

pvg_status pvg_secagg_params_check(const pvg_secagg_params *p, pvg_error *err)
{
    if (!p) return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing parameters");
    if (p->n < 2 || p->n > PVG_SECAGG_MAX_CLIENTS)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "n", 0, 0, -1,
                                "clients: expected 2..%d, got %u", PVG_SECAGG_MAX_CLIENTS, p->n);
    if (p->k != p->n - 1 && (p->k < 2 || p->k >= p->n - 1 || (p->k & 1)))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "k", 0, 0, -1,
                                "neighbours: expected n-1 (=%u) or an even number in [2, n-1), "
                                "got %u",
                                p->n - 1, p->k);
    if (p->t < 2 || p->t > p->k + 1)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "t", 0, 0, -1,
                                "threshold: expected 2..k+1 (=%u), got %u", p->k + 1, p->t);
    if (p->d < 1 || p->d > PVG_SECAGG_MAX_DIM)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "d", 0, 0, -1,
                                "dimension: expected 1..%u, got %u", PVG_SECAGG_MAX_DIM, p->d);
    if (p->bits != 16 && p->bits != 32 && p->bits != 64)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "bits", 0, 0, -1,
                                "modulus bits: expected 16, 32 or 64, got %u", p->bits);
    if (p->mask_rounds != 0 && p->mask_rounds != 8 && p->mask_rounds != 12 && p->mask_rounds != 20)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "mask_rounds", 0, 0, -1,
                                "mask PRG rounds: expected 0 (= 20), 8, 12 or 20, got %u",
                                p->mask_rounds);
    return PVG_OK;
}

unsigned pvg_secagg_wire_version(const pvg_secagg_params *p)
{
    int v1 = (p->bits == 32 || p->bits == 64) && (p->mask_rounds == 0 || p->mask_rounds == 20);
    return v1 ? PVG_SECAGG_WIRE_VERSION : PVG_SECAGG_WIRE_VERSION_LANES;
}

/* ---- graph ---- */

typedef struct {
    uint8_t key[32];
    uint8_t buf[64 * 8];
    size_t used;
    uint32_t ic;
} graph_stream;

static uint64_t gs_u64(graph_stream *g)
{
    if (g->used + 8 > sizeof g->buf) {
        static const uint8_t nonce[12] = {'P', 'V', 'S', 'A', '-', 'g', 'r', 'a', 'p', 'h', 0, 0};
        memset(g->buf, 0, sizeof g->buf);
        crypto_stream_chacha20_ietf_xor_ic(g->buf, g->buf, sizeof g->buf, nonce, g->ic, g->key);
        g->ic += sizeof g->buf / 64;
        g->used = 0;
    }
    uint64_t v = sa_get64(g->buf + g->used);
    g->used += 8;
    return v;
}

void sa_graph_perm(const pvg_secagg_params *p, uint32_t *perm, uint32_t *pos)
{
    graph_stream g;
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)"PVSA-graph", 10);
    crypto_generichash_update(&h, p->session, 16);
    crypto_generichash_final(&h, g.key, 32);
    g.used = sizeof g.buf;
    g.ic = 0;
    for (uint32_t i = 0; i < p->n; i++)
        perm[i] = i;
    /* Fisher-Yates with unbiased draws (rejection) */
    for (uint32_t i = p->n - 1; i > 0; i--) {
        uint64_t bound = (uint64_t)i + 1, lim = UINT64_MAX - (UINT64_MAX % bound + 1) % bound, r;
        do
            r = gs_u64(&g);
        while (r > lim);
        uint32_t j = (uint32_t)(r % bound);
        uint32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    for (uint32_t i = 0; i < p->n; i++)
        pos[perm[i]] = i;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

uint32_t sa_graph_neighbours(const pvg_secagg_params *p, const uint32_t *perm, const uint32_t *pos,
                             uint32_t id, uint32_t *out)
{
    uint32_t c = 0;
    if (p->k == p->n - 1) {
        for (uint32_t v = 0; v < p->n; v++)
            if (v != id) out[c++] = v;
        return c;
    }
    uint32_t at = pos[id];
    for (uint32_t j = 1; j <= p->k / 2; j++) {
        out[c++] = perm[(at + j) % p->n];
        out[c++] = perm[(at + p->n - j) % p->n];
    }
    qsort(out, c, sizeof *out, cmp_u32);
    return c;
}

int pvg_secagg_neighbours(const pvg_secagg_params *p, uint32_t id, uint32_t *out)
{
    if (pvg_secagg_params_check(p, NULL) != PVG_OK || id >= p->n || !out) return PVG_ERR_INVALID;
    uint32_t *perm = malloc(sizeof(uint32_t) * 2 * p->n);
    if (!perm) return PVG_ERR_NOMEM;
    sa_graph_perm(p, perm, perm + p->n);
    int c = (int)sa_graph_neighbours(p, perm, perm + p->n, id, out);
    free(perm);
    return c;
}

long sa_find(const uint32_t *a, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else if (a[mid] > x)
            hi = mid;
        else
            return (long)mid;
    }
    return -1;
}

/* ---- KDF, commitments, box AD ---- */

static unsigned rounds_of(unsigned rounds);

void pvg_secagg_kdf(const pvg_secagg_params *p, const uint8_t shared[32], uint32_t a, uint32_t b,
                    uint64_t purpose, uint8_t out[32])
{
    uint8_t master[32], ids[8], mode[20];
    uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
    sa_put32(ids, lo);
    sa_put32(ids + 4, hi);
    /* the session's mode: wire version, lane bits, mask rounds, graph and dimension. Parties
     * of different modes derive unrelated keys: their masks never cancel and their boxes never
     * open, so a server cannot move one client to another mode unnoticed */
    mode[0] = (uint8_t)pvg_secagg_wire_version(p);
    mode[1] = (uint8_t)p->bits;
    mode[2] = (uint8_t)rounds_of(p->mask_rounds);
    mode[3] = 0;
    sa_put32(mode + 4, p->n);
    sa_put32(mode + 8, p->k);
    sa_put32(mode + 12, p->t);
    sa_put32(mode + 16, p->d);
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)"PVSA-kdf-v3", 11);
    crypto_generichash_update(&h, shared, 32);
    crypto_generichash_update(&h, p->session, 16);
    crypto_generichash_update(&h, ids, 8);
    crypto_generichash_update(&h, mode, sizeof mode);
    crypto_generichash_final(&h, master, 32);
    crypto_kdf_derive_from_key(out, 32, purpose, "PVGSECAG", master);
    sodium_memzero(master, sizeof master);
    sodium_memzero(&h, sizeof h);
}

void sa_commit(const uint8_t session[16], uint32_t id, const uint8_t b[32], uint8_t out[32])
{
    uint8_t idb[4];
    sa_put32(idb, id);
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)"PVSA-commit", 11);
    crypto_generichash_update(&h, session, 16);
    crypto_generichash_update(&h, idb, 4);
    crypto_generichash_update(&h, b, 32);
    crypto_generichash_final(&h, out, 32);
    sodium_memzero(&h, sizeof h);
}

void sa_box_ad(const uint8_t session[16], uint32_t from, uint32_t to, uint8_t ad[24])
{
    memcpy(ad, session, 16);
    sa_put32(ad + 16, from);
    sa_put32(ad + 20, to);
}

/* ---- masks ---- */

static const uint8_t mask_nonce[12] = {'P', 'V', 'S', 'A', '-', 'm', 'a', 's', 'k', 0, 0, 0};

static unsigned rounds_of(unsigned rounds)
{
    return rounds ? rounds : 20;
}

/* The kernels add the keystream of many seeds into one vector. The vector is
 * walked in chunks that stay in L1, and every seed's keystream for a chunk is
 * generated and added before the next chunk: the vector crosses the memory
 * hierarchy once, not once per seed. On x86-64 with AVX-512 (F and BW) the
 * keystream is computed 16 ChaCha blocks at a time in registers and added
 * straight into the vector (no keystream buffer); elsewhere (and in
 * WebAssembly) it is expanded into an L1-resident block (by libsodium for
 * ChaCha20, by the portable block function below for 8 and 12 rounds) and
 * then added. Every path gives the bytes of ChaCha with the session's
 * rounds, key = seed, the RFC 8439 layout (32-bit block counter, 96-bit
 * nonce "PVSA-mask"): the tests compare each with the naive reference. */

#define SA_CHUNK 8192 /* bytes of the vector per pass over the seeds (a multiple of 1 KiB) */

static void add_words(uint8_t *v, const uint8_t *ks, size_t bytes, unsigned bits, int sign)
{
    if (bits == 16) {
        uint16_t *a = (uint16_t *)(void *)v;
        const uint16_t *k = (const uint16_t *)(const void *)ks;
        size_t n = bytes / 2;
        if (sign > 0)
            for (size_t i = 0; i < n; i++)
                a[i] = (uint16_t)(a[i] + k[i]);
        else
            for (size_t i = 0; i < n; i++)
                a[i] = (uint16_t)(a[i] - k[i]);
    } else if (bits == 32) {
        uint32_t *a = (uint32_t *)(void *)v;
        const uint32_t *k = (const uint32_t *)(const void *)ks;
        size_t n = bytes / 4;
        if (sign > 0)
            for (size_t i = 0; i < n; i++)
                a[i] += k[i];
        else
            for (size_t i = 0; i < n; i++)
                a[i] -= k[i];
    } else {
        uint64_t *a = (uint64_t *)(void *)v;
        const uint64_t *k = (const uint64_t *)(const void *)ks;
        size_t n = bytes / 8;
        if (sign > 0)
            for (size_t i = 0; i < n; i++)
                a[i] += k[i];
        else
            for (size_t i = 0; i < n; i++)
                a[i] -= k[i];
    }
}

#define ROTL32(x, n) ((uint32_t)((x) << (n)) | (uint32_t)((x) >> (32 - (n))))

/* The portable block function of the generic kernel: `blocks` consecutive
 * keystream blocks of ChaCha with `rounds` rounds (even) from counter ic,
 * written to out (64 bytes each, little-endian words). */
static void chacha_blocks(const uint32_t key[8], uint32_t ic, unsigned rounds, uint8_t *out,
                          size_t blocks)
{
    const uint32_t n0 = sa_get32(mask_nonce), n1 = sa_get32(mask_nonce + 4),
                   n2 = sa_get32(mask_nonce + 8);
    for (size_t b = 0; b < blocks; b++, ic++, out += 64) {
        uint32_t x0 = 0x61707865, x1 = 0x3320646e, x2 = 0x79622d32, x3 = 0x6b206574;
        uint32_t x4 = key[0], x5 = key[1], x6 = key[2], x7 = key[3];
        uint32_t x8 = key[4], x9 = key[5], x10 = key[6], x11 = key[7];
        uint32_t x12 = ic, x13 = n0, x14 = n1, x15 = n2;
#define GQR(a, b, c, d)                                                                            \
    do {                                                                                           \
        a += b;                                                                                    \
        d = ROTL32(d ^ a, 16);                                                                     \
        c += d;                                                                                    \
        b = ROTL32(b ^ c, 12);                                                                     \
        a += b;                                                                                    \
        d = ROTL32(d ^ a, 8);                                                                      \
        c += d;                                                                                    \
        b = ROTL32(b ^ c, 7);                                                                      \
    } while (0)
        for (unsigned r = 0; r < rounds; r += 2) {
            GQR(x0, x4, x8, x12);
            GQR(x1, x5, x9, x13);
            GQR(x2, x6, x10, x14);
            GQR(x3, x7, x11, x15);
            GQR(x0, x5, x10, x15);
            GQR(x1, x6, x11, x12);
            GQR(x2, x7, x8, x13);
            GQR(x3, x4, x9, x14);
        }
#undef GQR
        sa_put32(out + 0, x0 + 0x61707865);
        sa_put32(out + 4, x1 + 0x3320646e);
        sa_put32(out + 8, x2 + 0x79622d32);
        sa_put32(out + 12, x3 + 0x6b206574);
        sa_put32(out + 16, x4 + key[0]);
        sa_put32(out + 20, x5 + key[1]);
        sa_put32(out + 24, x6 + key[2]);
        sa_put32(out + 28, x7 + key[3]);
        sa_put32(out + 32, x8 + key[4]);
        sa_put32(out + 36, x9 + key[5]);
        sa_put32(out + 40, x10 + key[6]);
        sa_put32(out + 44, x11 + key[7]);
        sa_put32(out + 48, x12 + ic);
        sa_put32(out + 52, x13 + n0);
        sa_put32(out + 56, x14 + n1);
        sa_put32(out + 60, x15 + n2);
    }
}

/* generic: the keystream into a stack block (libsodium's ChaCha20, or the
 * portable block function for 8 and 12 rounds), then the add */
static void acc_generic(uint8_t *v, uint64_t ic0, size_t bytes, unsigned bits, unsigned rounds,
                        const uint8_t *seeds, const signed char *signs, size_t m)
{
    uint64_t block[SA_CHUNK / 8];
    uint32_t key[8];
    for (size_t off = 0; off < bytes; off += SA_CHUNK) {
        size_t cnt = bytes - off < SA_CHUNK ? bytes - off : SA_CHUNK;
        size_t padded = (cnt + 63) & ~(size_t)63;
        uint32_t ic = (uint32_t)(ic0 + off / 64);
        for (size_t s = 0; s < m; s++) {
            if (rounds == 20) {
                memset(block, 0, padded);
                crypto_stream_chacha20_ietf_xor_ic((uint8_t *)block, (const uint8_t *)block, padded,
                                                   mask_nonce, ic, seeds + 32 * s);
            } else {
                for (int i = 0; i < 8; i++)
                    key[i] = sa_get32(seeds + 32 * s + 4 * i);
                chacha_blocks(key, ic, rounds, (uint8_t *)block, padded / 64);
            }
            add_words(v + off, (const uint8_t *)block, cnt, bits, signs[s]);
        }
    }
    sodium_memzero(block, sizeof block);
    sodium_memzero(key, sizeof key);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__EMSCRIPTEN__)
#define SA_HAVE_AVX512 1
#include <immintrin.h>

#define SA_AVX512 __attribute__((target("avx512f,avx512bw")))

#define QR(a, b, c, d)                                                                             \
    do {                                                                                           \
        a = _mm512_add_epi32(a, b);                                                                \
        d = _mm512_rol_epi32(_mm512_xor_si512(d, a), 16);                                          \
        c = _mm512_add_epi32(c, d);                                                                \
        b = _mm512_rol_epi32(_mm512_xor_si512(b, c), 12);                                          \
        a = _mm512_add_epi32(a, b);                                                                \
        d = _mm512_rol_epi32(_mm512_xor_si512(d, a), 8);                                           \
        c = _mm512_add_epi32(c, d);                                                                \
        b = _mm512_rol_epi32(_mm512_xor_si512(b, c), 7);                                           \
    } while (0)

/* Adds (sign > 0) or subtracts the 16 keystream blocks at counters ic..ic+15
 * of key (8 little-endian words), ChaCha with `rounds` rounds, to
 * v[0..bytes), bytes <= 1024 and a multiple of the word size. Lane j of
 * register x[i] is word i of block j; a 16x16 transpose turns the registers
 * into blocks, each added to the vector as one 512-bit word (the same 64
 * bytes are 32 words of 16 bits, 16 of 32 bits or 8 of 64 bits, as the
 * vector's width says). */
SA_AVX512 static void acc16_avx512(uint8_t *v, size_t bytes, const uint32_t key[8], uint32_t ic,
                                   unsigned rounds, int sign, unsigned bits)
{
    const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i s[16], x[16];
    s[0] = _mm512_set1_epi32(0x61707865);
    s[1] = _mm512_set1_epi32(0x3320646e);
    s[2] = _mm512_set1_epi32(0x79622d32);
    s[3] = _mm512_set1_epi32(0x6b206574);
    for (int i = 0; i < 8; i++)
        s[4 + i] = _mm512_set1_epi32((int)key[i]);
    s[12] = _mm512_add_epi32(_mm512_set1_epi32((int)ic), lanes);
    s[13] = _mm512_set1_epi32((int)sa_get32(mask_nonce));
    s[14] = _mm512_set1_epi32((int)sa_get32(mask_nonce + 4));
    s[15] = _mm512_set1_epi32((int)sa_get32(mask_nonce + 8));
    for (int i = 0; i < 16; i++)
        x[i] = s[i];
    for (unsigned r = 0; r < rounds; r += 2) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++)
        x[i] = _mm512_add_epi32(x[i], s[i]);
    /* 4x4 transposes inside every 128-bit lane: u[a][r] holds, in lane q,
     * words 4a..4a+3 of block 4q + r */
    __m512i u[4][4];
    for (int a = 0; a < 4; a++) {
        __m512i t0 = _mm512_unpacklo_epi32(x[4 * a], x[4 * a + 1]);
        __m512i t1 = _mm512_unpackhi_epi32(x[4 * a], x[4 * a + 1]);
        __m512i t2 = _mm512_unpacklo_epi32(x[4 * a + 2], x[4 * a + 3]);
        __m512i t3 = _mm512_unpackhi_epi32(x[4 * a + 2], x[4 * a + 3]);
        u[a][0] = _mm512_unpacklo_epi64(t0, t2);
        u[a][1] = _mm512_unpackhi_epi64(t0, t2);
        u[a][2] = _mm512_unpacklo_epi64(t1, t3);
        u[a][3] = _mm512_unpackhi_epi64(t1, t3);
    }
    /* then a 4x4 transpose of the 128-bit lanes: block 4q + r */
    for (int r = 0; r < 4; r++) {
        __m512i p0 = _mm512_shuffle_i32x4(u[0][r], u[1][r], 0x88);
        __m512i p1 = _mm512_shuffle_i32x4(u[0][r], u[1][r], 0xdd);
        __m512i p2 = _mm512_shuffle_i32x4(u[2][r], u[3][r], 0x88);
        __m512i p3 = _mm512_shuffle_i32x4(u[2][r], u[3][r], 0xdd);
        __m512i o[4];
        o[0] = _mm512_shuffle_i32x4(p0, p2, 0x88);
        o[1] = _mm512_shuffle_i32x4(p1, p3, 0x88);
        o[2] = _mm512_shuffle_i32x4(p0, p2, 0xdd);
        o[3] = _mm512_shuffle_i32x4(p1, p3, 0xdd);
        for (int q = 0; q < 4; q++) {
            size_t at = (size_t)(4 * q + r) * 64;
            if (at >= bytes) continue;
            size_t left = bytes - at;
            /* a mask of 16-bit elements covers every word width (bytes is a
             * multiple of the word size, so of 2) */
            __mmask32 mk =
                left >= 64 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (left / 2)) - 1);
            __m512i a = _mm512_maskz_loadu_epi16(mk, v + at);
            if (bits == 64)
                a = sign > 0 ? _mm512_add_epi64(a, o[q]) : _mm512_sub_epi64(a, o[q]);
            else if (bits == 32)
                a = sign > 0 ? _mm512_add_epi32(a, o[q]) : _mm512_sub_epi32(a, o[q]);
            else
                a = sign > 0 ? _mm512_add_epi16(a, o[q]) : _mm512_sub_epi16(a, o[q]);
            _mm512_mask_storeu_epi16(v + at, mk, a);
        }
    }
}

SA_AVX512 static void acc_avx512(uint8_t *v, uint64_t ic0, size_t bytes, unsigned bits,
                                 unsigned rounds, const uint8_t *seeds, const signed char *signs,
                                 size_t m)
{
    uint32_t key[8];
    for (size_t off = 0; off < bytes; off += SA_CHUNK) {
        size_t cnt = bytes - off < SA_CHUNK ? bytes - off : SA_CHUNK;
        for (size_t s = 0; s < m; s++) {
            for (int i = 0; i < 8; i++)
                key[i] = sa_get32(seeds + 32 * s + 4 * i);
            for (size_t g = 0; g < cnt; g += 1024) {
                size_t b = cnt - g < 1024 ? cnt - g : 1024;
                acc16_avx512(v + off + g, b, key, (uint32_t)(ic0 + (off + g) / 64), rounds,
                             signs[s], bits);
            }
        }
    }
    sodium_memzero(key, sizeof key);
    _mm256_zeroupper();
}
#undef QR
#endif

int sa_mask_kernel_available(int kernel)
{
    if (kernel == SA_KERNEL_GENERIC) return 1;
#ifdef SA_HAVE_AVX512
    if (kernel == SA_KERNEL_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? 1 : 0;
#endif
    return 0;
}

void sa_mask_accumulate_with(int kernel, void *vec, size_t offset, size_t len, unsigned bits,
                             unsigned rounds, const uint8_t *seeds, const signed char *signs,
                             size_t m)
{
    size_t w = bits / 8;
    uint64_t ic0 = (uint64_t)offset * w / 64;
    rounds = rounds_of(rounds);
    if (!len || !m) return;
#ifdef SA_HAVE_AVX512
    if (kernel == SA_KERNEL_AVX512) {
        acc_avx512(vec, ic0, len * w, bits, rounds, seeds, signs, m);
        return;
    }
#endif
    (void)kernel;
    acc_generic(vec, ic0, len * w, bits, rounds, seeds, signs, m);
}

void sa_mask_accumulate(void *vec, size_t offset, size_t len, unsigned bits, unsigned rounds,
                        const uint8_t *seeds, const signed char *signs, size_t m)
{
    int kernel = sa_mask_kernel_available(SA_KERNEL_AVX512) ? SA_KERNEL_AVX512 : SA_KERNEL_GENERIC;
    sa_mask_accumulate_with(kernel, vec, offset, len, bits, rounds, seeds, signs, m);
}

/* Shapes: vec is uint16_t[len], uint32_t[len] or uint64_t[len] per bits; the
 * keystream word i (little-endian) is added (sign +1) or subtracted (-1)
 * to vec[i - offset] for i in [offset, offset + len). */
void pvg_secagg_mask_add(void *vec, size_t offset, size_t len, unsigned bits,
                         const uint8_t seed[32], int sign)
{
    pvg_secagg_mask_add_rounds(vec, offset, len, bits, 20, seed, sign);
}

void pvg_secagg_mask_add_rounds(void *vec, size_t offset, size_t len, unsigned bits,
                                unsigned rounds, const uint8_t seed[32], int sign)
{
    signed char sg = sign > 0 ? 1 : -1;
    sa_mask_accumulate(vec, offset, len, bits, rounds, seed, &sg, 1);
}

void pvg_secagg_mask_set(void *vec, size_t len, unsigned bits, const uint8_t seed[32])
{
    crypto_stream_chacha20_ietf((uint8_t *)vec, len * (bits / 8), mask_nonce, seed);
}

/* The naive reference of the cipher, written from RFC 8439 section 2.3 with
 * the round count as a parameter (the original ChaCha's 8 and 12 rounds are
 * the same double round, repeated fewer times): the state as an array of 16
 * words, the quarter round on indices. Slow on purpose; independent of the
 * kernels' code. */
static void ref_quarter(uint32_t *x, int a, int b, int c, int d)
{
    x[a] += x[b];
    x[d] ^= x[a];
    x[d] = ROTL32(x[d], 16);
    x[c] += x[d];
    x[b] ^= x[c];
    x[b] = ROTL32(x[b], 12);
    x[a] += x[b];
    x[d] ^= x[a];
    x[d] = ROTL32(x[d], 8);
    x[c] += x[d];
    x[b] ^= x[c];
    x[b] = ROTL32(x[b], 7);
}

void pvg_secagg_chacha_block_ref(const uint8_t key[32], uint32_t counter, const uint8_t nonce[12],
                                 unsigned rounds, uint8_t out[64])
{
    uint32_t st[16], x[16];
    st[0] = 0x61707865;
    st[1] = 0x3320646e;
    st[2] = 0x79622d32;
    st[3] = 0x6b206574;
    for (int i = 0; i < 8; i++)
        st[4 + i] = sa_get32(key + 4 * i);
    st[12] = counter;
    for (int i = 0; i < 3; i++)
        st[13 + i] = sa_get32(nonce + 4 * i);
    memcpy(x, st, sizeof x);
    for (unsigned r = 0; r < rounds / 2; r++) {
        ref_quarter(x, 0, 4, 8, 12); /* column round */
        ref_quarter(x, 1, 5, 9, 13);
        ref_quarter(x, 2, 6, 10, 14);
        ref_quarter(x, 3, 7, 11, 15);
        ref_quarter(x, 0, 5, 10, 15); /* diagonal round */
        ref_quarter(x, 1, 6, 11, 12);
        ref_quarter(x, 2, 7, 8, 13);
        ref_quarter(x, 3, 4, 9, 14);
    }
    for (int i = 0; i < 16; i++)
        sa_put32(out + 4 * i, x[i] + st[i]);
    sodium_memzero(st, sizeof st);
    sodium_memzero(x, sizeof x);
}

void pvg_secagg_mask_add_ref(void *vec, size_t offset, size_t len, unsigned bits,
                             const uint8_t seed[32], int sign)
{
    pvg_secagg_mask_add_ref_rounds(vec, offset, len, bits, 20, seed, sign);
}

void pvg_secagg_mask_add_ref_rounds(void *vec, size_t offset, size_t len, unsigned bits,
                                    unsigned rounds, const uint8_t seed[32], int sign)
{
    size_t w = bits / 8, total = (offset + len) * w, nb = (total + 63) / 64;
    uint8_t *ks = malloc(nb ? nb * 64 : 1);
    if (!ks) return;
    /* the whole stream from block 0, one block at a time */
    for (size_t b = 0; b < nb; b++)
        pvg_secagg_chacha_block_ref(seed, (uint32_t)b, mask_nonce, rounds_of(rounds), ks + 64 * b);
    for (size_t i = 0; i < len; i++) {
        const uint8_t *p = ks + (offset + i) * w;
        if (bits == 16) {
            uint16_t k = (uint16_t)(p[0] | p[1] << 8), *v = (uint16_t *)vec + i;
            *v = (uint16_t)(sign > 0 ? *v + k : *v - k);
        } else if (bits == 32) {
            uint32_t k = sa_get32(p), *v = (uint32_t *)vec + i;
            *v = sign > 0 ? *v + k : *v - k;
        } else {
            uint64_t k = sa_get64(p), *v = (uint64_t *)vec + i;
            *v = sign > 0 ? *v + k : *v - k;
        }
    }
    sodium_memzero(ks, nb ? nb * 64 : 1);
    free(ks);
}

/* ---- wire header ---- */

void *sa_big_alloc(size_t n)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const size_t huge = (size_t)2 << 20;
    if (n >= huge / 2) {
        void *p = NULL;
        if (posix_memalign(&p, huge, n) != 0) return NULL;
        (void)madvise(p, n, MADV_HUGEPAGE); /* advice: 4 KiB pages where it is not taken */
        return p;
    }
#endif
    return malloc(n ? n : 1);
}

/* The header of a message (its SA_HDR bytes; the payload is not touched). */
static void msg_head(uint8_t *m, int type, const pvg_secagg_params *p, uint32_t sender,
                     uint32_t recipient, size_t payload_len)
{
    const uint8_t *session = p->session;
    memset(m, 0, SA_HDR);
    memcpy(m, "PVSA", 4);
    m[4] = (uint8_t)pvg_secagg_wire_version(p);
    if (m[4] == PVG_SECAGG_WIRE_VERSION_LANES) { /* the lanes version names its mode */
        m[6] = (uint8_t)p->bits;
        m[7] = (uint8_t)rounds_of(p->mask_rounds);
    }
    m[5] = (uint8_t)type;
    memcpy(m + 8, session, 16);
    sa_put32(m + 24, sender);
    sa_put32(m + 28, recipient);
    sa_put32(m + 32, (uint32_t)payload_len);
}

uint8_t *sa_msg_new(int type, const pvg_secagg_params *p, uint32_t sender, uint32_t recipient,
                    size_t payload_len)
{
    if (payload_len > UINT32_MAX - SA_HDR) return NULL;
    uint8_t *m = sa_big_alloc(SA_HDR + payload_len);
    if (!m) return NULL;
    memset(m + SA_HDR, 0, payload_len);
    msg_head(m, type, p, sender, recipient, payload_len);
    return m;
}

/* The pages of a locked message: from its start (page-aligned) to the end of
 * its last page. */
static size_t locked_span(size_t len)
{
    return (len + 4095) & ~(size_t)4095;
}

uint8_t *sa_msg_new_locked(int type, const pvg_secagg_params *p, uint32_t sender,
                           uint32_t recipient, size_t payload_len)
{
    if (payload_len > UINT32_MAX - SA_HDR) return NULL;
    size_t span = locked_span(SA_HDR + payload_len);
    uint8_t *m = NULL;
    if (span >= ((size_t)1 << 20)) {
        m = sa_big_alloc(span); /* 2 MiB-aligned, huge pages */
    } else {
        void *q = NULL;
        if (posix_memalign(&q, 4096, span) == 0) m = q;
    }
    if (!m) return NULL;
    /* as sodium_malloc's: kept out of swap and core dumps (best effort: a
       failed mlock leaves the buffer usable, as libsodium does) */
    (void)sodium_mlock(m, span);
#if defined(__linux__) && defined(MADV_DONTDUMP)
    (void)madvise(m, span, MADV_DONTDUMP);
#endif
    msg_head(m, type, p, sender, recipient, payload_len);
    return m;
}

void sa_msg_unlock(uint8_t *m, size_t len)
{
    if (!m) return;
    size_t span = locked_span(len);
    /* munlock only: the bytes stay (sodium_munlock would wipe them) */
    (void)munlock(m, span);
}

void sa_msg_free_locked(uint8_t *m, size_t len)
{
    if (!m) return;
    sodium_memzero(m, len);
    sa_msg_unlock(m, len);
    free(m);
}

static const char *type_name(int t)
{
    static const char *names[] = {"?",       "ADVERTISE", "KEYS",       "SHARES",
                                  "FORWARD", "MASKED",    "UNMASK_REQ", "UNMASK"};
    return t >= 1 && t <= 7 ? names[t] : "unknown";
}

pvg_status sa_msg_parse(const uint8_t *msg, size_t len, const pvg_secagg_params *p, int want_type,
                        uint32_t want_recipient, const uint8_t **payload, size_t *plen,
                        uint32_t *sender, int *type, pvg_error *err)
{
    const uint8_t *session = p->session;
    unsigned ver = pvg_secagg_wire_version(p);
    if (!msg || len < SA_HDR)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, (long long)len,
                                "truncated: %zu bytes, the header needs %d", len, SA_HDR);
    if (memcmp(msg, "PVSA", 4) != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, 0,
                                "bad magic, expected \"PVSA\"");
    if (msg[4] != ver)
        return pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, "secagg message", 0, 0, 4,
                                "wire version %u, expected %u (this session: %u-bit words, "
                                "ChaCha%u masks)",
                                msg[4], ver, p->bits, rounds_of(p->mask_rounds));
    int t = msg[5];
    if (t < SA_ADVERTISE || t > SA_UNMASK)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, 5,
                                "unknown message type %d", t);
    if (ver == PVG_SECAGG_WIRE_VERSION && (msg[6] || msg[7]))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, 6,
                                "reserved bytes must be zero");
    if (ver == PVG_SECAGG_WIRE_VERSION_LANES &&
        (msg[6] != p->bits || msg[7] != rounds_of(p->mask_rounds)))
        return pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, "secagg message", 0, 0, 6,
                                "mode of %u-bit words with ChaCha%u masks, this session's is "
                                "%u-bit words with ChaCha%u",
                                msg[6], msg[7], p->bits, rounds_of(p->mask_rounds));
    if (sodium_memcmp(msg + 8, session, 16) != 0)
        return pvg_error_set_at(err, PVG_ERR_STATE, "secagg message", 0, 0, 8,
                                "message of another session (replay?)");
    uint32_t pl = sa_get32(msg + 32);
    if ((size_t)pl != len - SA_HDR)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, 32,
                                "payload length field says %u bytes, message carries %zu", pl,
                                len - SA_HDR);
    if (want_type && t != want_type)
        return pvg_error_set_at(err, PVG_ERR_STATE, "secagg message", 0, 0, 5,
                                "got %s, expected %s in this round", type_name(t),
                                type_name(want_type));
    uint32_t rcpt = sa_get32(msg + 28);
    if (rcpt != want_recipient)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, 28,
                                "message addressed to %u, this party is %u", rcpt, want_recipient);
    *payload = msg + SA_HDR;
    *plen = pl;
    *sender = sa_get32(msg + 24);
    *type = t;
    return PVG_OK;
}

/* ---- quantisation ---- */

pvg_status pvg_secagg_quantize(const float *x, size_t d, double clip, double scale, unsigned bits,
                               uint32_t n_clients, pvg_rng *rng, void *out, size_t *n_clipped,
                               pvg_error *err)
{
    if (!x || !rng || !out || d == 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "quantize: missing argument");
    if (bits != 16 && bits != 32 && bits != 64)
        return pvg_error_set(err, PVG_ERR_INVALID, "quantize: bits must be 16, 32 or 64, got %u",
                             bits);
    if (!(clip > 0) || !(scale > 0) || !isfinite(clip) || !isfinite(scale) || n_clients == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "quantize: clip and scale must be positive and finite, n >= 1");
    double range = ceil(2.0 * clip * scale); /* largest quantised value */
    if ((double)n_clients * (range + 1.0) >= ldexp(1.0, (int)bits))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "quantize: %u clients x range %.0f does not fit modulus 2^%u "
                             "(the sum would wrap); lower clip or scale",
                             n_clients, range, bits);
    size_t clipped = 0;
    for (size_t i = 0; i < d; i++) {
        double v = x[i];
        if (!isfinite(v))
            return pvg_error_set_at(err, PVG_ERR_INVALID, "vector", 0, 0, (long long)i,
                                    "coordinate %zu is not finite", i);
        if (v > clip) {
            v = clip;
            clipped++;
        } else if (v < -clip) {
            v = -clip;
            clipped++;
        }
        double s = (v + clip) * scale, f = floor(s);
        uint64_t q = (uint64_t)f + (pvg_rng_double(rng) < s - f ? 1 : 0);
        if ((double)q > range) q = (uint64_t)range;
        if (bits == 16)
            ((uint16_t *)out)[i] = (uint16_t)q;
        else if (bits == 32)
            ((uint32_t *)out)[i] = (uint32_t)q;
        else
            ((uint64_t *)out)[i] = q;
    }
    if (n_clipped) *n_clipped = clipped;
    return PVG_OK;
}

pvg_status pvg_secagg_dequantize(const void *sum, size_t d, unsigned bits, double clip,
                                 double scale, uint32_t n_summed, double *out, pvg_error *err)
{
    if (!sum || !out || (bits != 16 && bits != 32 && bits != 64) || !(clip > 0) || !(scale > 0))
        return pvg_error_set(err, PVG_ERR_INVALID, "dequantize: bad arguments");
    for (size_t i = 0; i < d; i++) {
        double v = bits == 16   ? (double)((const uint16_t *)sum)[i]
                   : bits == 32 ? (double)((const uint32_t *)sum)[i]
                                : (double)((const uint64_t *)sum)[i];
        out[i] = v / scale - (double)n_summed * clip;
    }
    return PVG_OK;
}
