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
    if (p->bits != 32 && p->bits != 64)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "bits", 0, 0, -1,
                                "modulus bits: expected 32 or 64, got %u", p->bits);
    return PVG_OK;
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

void pvg_secagg_kdf(const uint8_t shared[32], const uint8_t session[16], uint32_t a, uint32_t b,
                    uint64_t purpose, uint8_t out[32])
{
    uint8_t master[32], ids[8];
    uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
    sa_put32(ids, lo);
    sa_put32(ids + 4, hi);
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, shared, 32);
    crypto_generichash_update(&h, session, 16);
    crypto_generichash_update(&h, ids, 8);
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

/* Shapes: vec is uint32_t[len] (bits 32) or uint64_t[len] (bits 64); the
 * keystream word i (little-endian) is added (sign +1) or subtracted (-1)
 * to vec[i - offset] for i in [offset, offset + len). Keystream goes into
 * an 8 KiB stack block (L1-resident) and is added straight away. */
void pvg_secagg_mask_add(void *vec, size_t offset, size_t len, unsigned bits,
                         const uint8_t seed[32], int sign)
{
    uint64_t block[1024]; /* 8 KiB, a multiple of the 64-byte ChaCha block */
    size_t w = bits / 8, per = sizeof block / w, done = 0;
    uint64_t ic = (uint64_t)offset * w / 64;
    while (done < len) {
        size_t cnt = len - done < per ? len - done : per;
        size_t bytes = cnt * w;
        memset(block, 0, (bytes + 63) & ~(size_t)63);
        crypto_stream_chacha20_ietf_xor_ic((uint8_t *)block, (const uint8_t *)block,
                                           (bytes + 63) & ~(size_t)63, mask_nonce, (uint32_t)ic,
                                           seed);
        if (bits == 32) {
            uint32_t *v = (uint32_t *)vec + done;
            const uint32_t *k = (const uint32_t *)block;
            if (sign > 0)
                for (size_t i = 0; i < cnt; i++)
                    v[i] += k[i];
            else
                for (size_t i = 0; i < cnt; i++)
                    v[i] -= k[i];
        } else {
            uint64_t *v = (uint64_t *)vec + done;
            if (sign > 0)
                for (size_t i = 0; i < cnt; i++)
                    v[i] += block[i];
            else
                for (size_t i = 0; i < cnt; i++)
                    v[i] -= block[i];
        }
        done += cnt;
        ic += bytes / 64;
    }
    sodium_memzero(block, sizeof block);
}

void pvg_secagg_mask_set(void *vec, size_t len, unsigned bits, const uint8_t seed[32])
{
    crypto_stream_chacha20_ietf((uint8_t *)vec, len * (bits / 8), mask_nonce, seed);
}

void pvg_secagg_mask_add_ref(void *vec, size_t offset, size_t len, unsigned bits,
                             const uint8_t seed[32], int sign)
{
    size_t w = bits / 8, total = (offset + len) * w;
    uint8_t *ks = malloc(total ? total : 1);
    if (!ks) return;
    crypto_stream_chacha20_ietf(ks, total, mask_nonce, seed);
    for (size_t i = 0; i < len; i++) {
        const uint8_t *p = ks + (offset + i) * w;
        if (bits == 32) {
            uint32_t k = sa_get32(p), *v = (uint32_t *)vec + i;
            *v = sign > 0 ? *v + k : *v - k;
        } else {
            uint64_t k = sa_get64(p), *v = (uint64_t *)vec + i;
            *v = sign > 0 ? *v + k : *v - k;
        }
    }
    sodium_memzero(ks, total);
    free(ks);
}

/* ---- wire header ---- */

uint8_t *sa_msg_new(int type, const uint8_t session[16], uint32_t sender, uint32_t recipient,
                    size_t payload_len)
{
    if (payload_len > UINT32_MAX - SA_HDR) return NULL;
    uint8_t *m = calloc(1, SA_HDR + payload_len);
    if (!m) return NULL;
    memcpy(m, "PVSA", 4);
    m[4] = PVG_SECAGG_WIRE_VERSION;
    m[5] = (uint8_t)type;
    memcpy(m + 8, session, 16);
    sa_put32(m + 24, sender);
    sa_put32(m + 28, recipient);
    sa_put32(m + 32, (uint32_t)payload_len);
    return m;
}

static const char *type_name(int t)
{
    static const char *names[] = {"?",       "ADVERTISE", "KEYS",       "SHARES",
                                  "FORWARD", "MASKED",    "UNMASK_REQ", "UNMASK"};
    return t >= 1 && t <= 7 ? names[t] : "unknown";
}

pvg_status sa_msg_parse(const uint8_t *msg, size_t len, const uint8_t session[16], int want_type,
                        uint32_t want_recipient, const uint8_t **payload, size_t *plen,
                        uint32_t *sender, int *type, pvg_error *err)
{
    if (!msg || len < SA_HDR)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, (long long)len,
                                "truncated: %zu bytes, the header needs %d", len, SA_HDR);
    if (memcmp(msg, "PVSA", 4) != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, 0,
                                "bad magic, expected \"PVSA\"");
    if (msg[4] != PVG_SECAGG_WIRE_VERSION)
        return pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, "secagg message", 0, 0, 4,
                                "wire version %u, expected %d", msg[4], PVG_SECAGG_WIRE_VERSION);
    int t = msg[5];
    if (t < SA_ADVERTISE || t > SA_UNMASK)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, 5,
                                "unknown message type %d", t);
    if (msg[6] || msg[7])
        return pvg_error_set_at(err, PVG_ERR_INVALID, "secagg message", 0, 0, 6,
                                "reserved bytes must be zero");
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
    if (bits != 32 && bits != 64)
        return pvg_error_set(err, PVG_ERR_INVALID, "quantize: bits must be 32 or 64, got %u", bits);
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
        if (bits == 32)
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
    if (!sum || !out || (bits != 32 && bits != 64) || !(clip > 0) || !(scale > 0))
        return pvg_error_set(err, PVG_ERR_INVALID, "dequantize: bad arguments");
    for (size_t i = 0; i < d; i++) {
        double v =
            bits == 32 ? (double)((const uint32_t *)sum)[i] : (double)((const uint64_t *)sum)[i];
        out[i] = v / scale - (double)n_summed * clip;
    }
    return PVG_OK;
}
