/*
 * secagg_client.c - the client state machine of secure aggregation
 * (Bonawitz et al. 2017 with the SecAgg+ neighbourhood of Bell et al. 2020).
 * See privguide/secagg.h for the rounds and docs/secagg.md for the wire
 * format. Every secret (key pairs' secret halves, the self-mask seed, box
 * keys, held shares) lives in one sodium_malloc block wiped on free.
 */
#include "crypto/secagg_internal.h"

#include <privguide/shamir.h>

#include <sodium.h>
#include <stdlib.h>

enum { C_NEW, C_ADVERTISED, C_SHARED, C_MASKED, C_DONE, C_FAILED };

typedef struct {
    uint8_t c_sk[32], s_sk[32], b[32];
    uint64_t own_s[SA_SHARE_ELEMS], own_b[SA_SHARE_ELEMS]; /* own share (x = id + 1) */
} client_secrets;

typedef struct {           /* per neighbour, secret part */
    uint8_t box_key[32];   /* AEAD key of the share boxes with this neighbour */
    uint8_t mask_seed[32]; /* pairwise mask seed s_uv */
    uint64_t s_share[SA_SHARE_ELEMS], b_share[SA_SHARE_ELEMS];
} nb_secret;

struct pvg_secagg_client {
    pvg_secagg_params p;
    uint32_t id;
    int state;
    pvg_rng *rng;
    uint32_t *nb;    /* k neighbours, ascending */
    uint8_t *alive1; /* neighbour advertised (in KEYS) */
    uint8_t *alive2; /* neighbour's box received (in FORWARD) */
    uint8_t c_pk[32], s_pk_own[32];
    client_secrets *sec;
    nb_secret *nbs; /* k entries, sodium_malloc */
    /* pvg_secagg_client_premask: PRG(b) + sum over the neighbours in KEYS of
       sign(u, v) PRG(s_uv), d words of the lane (sodium_malloc, pre_bytes), or NULL */
    void *pre;
    size_t pre_bytes;
};

static void pre_free(pvg_secagg_client *c)
{
    if (c->pre) sodium_free(c->pre); /* sodium_free wipes */
    c->pre = NULL;
    c->pre_bytes = 0;
}

pvg_status pvg_secagg_client_new(const pvg_secagg_params *p, uint32_t id, pvg_rng *rng,
                                 pvg_secagg_client **out, pvg_error *err)
{
    return pvg_secagg_client_new_ex(p, id, rng, 0, out, err);
}

pvg_status pvg_secagg_client_new_ex(const pvg_secagg_params *p, uint32_t id, pvg_rng *rng,
                                    int allow_insecure_rng, pvg_secagg_client **out, pvg_error *err)
{
    if (!out) return pvg_error_set(err, PVG_ERR_INVALID, "secagg client: missing out");
    *out = NULL;
    if (pvg_init() != PVG_OK) return pvg_error_set(err, PVG_ERR_INTERNAL, "libsodium init failed");
    pvg_status st = pvg_secagg_params_check(p, err);
    if (st != PVG_OK) return st;
    if (id >= p->n || !rng)
        return pvg_error_set(err, PVG_ERR_INVALID, "secagg client: id %u not below n=%u", id, p->n);
    st = pvg_rng_require_secure(rng, allow_insecure_rng, "secagg keys and masks", err);
    if (st != PVG_OK) return st;
    pvg_secagg_client *c = calloc(1, sizeof *c);
    if (!c) return pvg_error_set(err, PVG_ERR_NOMEM, "secagg client: out of memory");
    c->p = *p;
    c->id = id;
    c->rng = rng;
    c->nb = malloc(sizeof(uint32_t) * (p->k + 2 * (size_t)p->n));
    c->alive1 = calloc(p->k, 1);
    c->alive2 = calloc(p->k, 1);
    c->sec = sodium_malloc(sizeof *c->sec);
    c->nbs = sodium_malloc(sizeof(nb_secret) * p->k);
    if (!c->nb || !c->alive1 || !c->alive2 || !c->sec || !c->nbs) {
        pvg_secagg_client_free(c);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg client: out of memory");
    }
    sodium_memzero(c->sec, sizeof *c->sec);
    sodium_memzero(c->nbs, sizeof(nb_secret) * p->k);
    uint32_t *perm = c->nb + p->k; /* scratch for the permutation */
    sa_graph_perm(p, perm, perm + p->n);
    sa_graph_neighbours(p, perm, perm + p->n, id, c->nb);
    uint32_t *shrunk = realloc(c->nb, sizeof(uint32_t) * p->k);
    if (shrunk) c->nb = shrunk;
    *out = c;
    return PVG_OK;
}

void pvg_secagg_client_free(pvg_secagg_client *c)
{
    if (!c) return;
    pre_free(c);
    if (c->sec) sodium_free(c->sec); /* sodium_free wipes */
    if (c->nbs) sodium_free(c->nbs);
    free(c->nb);
    free(c->alive1);
    free(c->alive2);
    free(c);
}

pvg_status pvg_secagg_client_advertise(pvg_secagg_client *c, uint8_t **out, size_t *out_len,
                                       pvg_error *err)
{
    if (!c || !out || !out_len)
        return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing argument");
    if (c->state != C_NEW)
        return pvg_error_set(err, PVG_ERR_STATE, "secagg client %u: keys already advertised",
                             c->id);
    pvg_rng_bytes(c->rng, c->sec->c_sk, 32);
    pvg_rng_bytes(c->rng, c->sec->s_sk, 32);
    crypto_scalarmult_base(c->c_pk, c->sec->c_sk);
    crypto_scalarmult_base(c->s_pk_own, c->sec->s_sk);
    uint8_t *m = sa_msg_new(SA_ADVERTISE, &c->p, c->id, SA_SERVER_ID, 64);
    if (!m) return pvg_error_set(err, PVG_ERR_NOMEM, "secagg: out of memory");
    memcpy(m + SA_HDR, c->c_pk, 32);
    memcpy(m + SA_HDR + 32, c->s_pk_own, 32);
    *out = m;
    *out_len = SA_HDR + 64;
    c->state = C_ADVERTISED;
    return PVG_OK;
}

pvg_status pvg_secagg_client_share_keys(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                                        uint8_t **out, size_t *out_len, pvg_error *err)
{
    if (!c || !out || !out_len)
        return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing argument");
    if (c->state != C_ADVERTISED)
        return pvg_error_set(err, PVG_ERR_STATE, "secagg client %u: not expecting KEYS now", c->id);
    const uint8_t *pl;
    size_t plen;
    uint32_t sender;
    int type;
    pvg_status st =
        sa_msg_parse(in, in_len, &c->p, SA_KEYS, c->id, &pl, &plen, &sender, &type, err);
    if (st != PVG_OK) return st;
    if (sender != SA_SERVER_ID)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "KEYS", 0, 0, 24, "sender is not the server");
    if (plen < 4) return pvg_error_set_at(err, PVG_ERR_INVALID, "KEYS", 0, 0, SA_HDR, "truncated");
    uint32_t cnt = sa_get32(pl);
    if (cnt > c->p.k || plen != 4 + (size_t)cnt * 68)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "KEYS", 0, 0, SA_HDR,
                                "%u entries in %zu bytes (at most k=%u entries of 68 bytes)", cnt,
                                plen, c->p.k);
    /* validate everything before touching state; the key agreements of
     * the validation give the box keys and mask seeds (kept in scratch) */
    long prev = -1;
    nb_secret *kx = sodium_malloc(sizeof(nb_secret) * (cnt ? cnt : 1));
    uint8_t shared[64]; /* wiped below */
    if (!kx) return pvg_error_set(err, PVG_ERR_NOMEM, "secagg: out of memory");
    for (uint32_t i = 0; i < cnt && st == PVG_OK; i++) {
        const uint8_t *e = pl + 4 + 68 * (size_t)i;
        uint32_t v = sa_get32(e);
        long at = sa_find(c->nb, c->p.k, v);
        if (at < 0 || (long)v <= prev) {
            st =
                pvg_error_set_at(err, PVG_ERR_INVALID, "KEYS", 0, 0, SA_HDR + 4 + 68 * (long long)i,
                                 "entry %u: client %u is not a neighbour or out of order", i, v);
            break;
        }
        prev = v;
        if (crypto_scalarmult(shared, c->sec->c_sk, e + 4) != 0 ||
            crypto_scalarmult(shared + 32, c->sec->s_sk, e + 36) != 0) {
            st = pvg_error_set_at(err, PVG_ERR_CRYPTO, "KEYS", 0, 0, SA_HDR + 8 + 68 * (long long)i,
                                  "client %u advertised a low-order public key", v);
            break;
        }
        pvg_secagg_kdf(&c->p, shared, c->id, v, 2, kx[i].box_key);
        pvg_secagg_kdf(&c->p, shared + 32, c->id, v, 1, kx[i].mask_seed);
    }
    sodium_memzero(shared, sizeof shared);
    if (st != PVG_OK) {
        sodium_free(kx);
        return st;
    }
    uint32_t holders = cnt + 1;
    if (holders < c->p.t) {
        sodium_free(kx);
        c->state = C_FAILED;
        return pvg_error_set(err, PVG_ERR_ABORTED,
                             "secagg client %u: only %u of its neighbours are alive, threshold %u "
                             "needs %u share holders",
                             c->id, cnt, c->p.t, c->p.t);
    }
    /* keys, self-mask seed, shares */
    pvg_rng_bytes(c->rng, c->sec->b, 32);
    uint64_t *xs = malloc(sizeof(uint64_t) * holders);
    uint64_t *sh = sodium_malloc(sizeof(uint64_t) * SA_SHARE_ELEMS * 2 * holders);
    uint8_t *m =
        sa_msg_new(SA_SHARES, &c->p, c->id, SA_SERVER_ID, 36 + (size_t)cnt * (4 + SA_BOX_LEN));
    uint8_t plain[SA_BOX_PLAIN]; /* wiped below */
    if (!xs || !sh || !m) {
        sodium_free(kx);
        free(xs);
        free(m);
        if (sh) sodium_free(sh);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg: out of memory");
    }
    xs[0] = (uint64_t)c->id + 1;
    for (uint32_t i = 0; i < cnt; i++)
        xs[i + 1] = (uint64_t)sa_get32(pl + 4 + 68 * (size_t)i) + 1;
    uint64_t *s_sh = sh, *b_sh = sh + SA_SHARE_ELEMS * holders;
    st = pvg_shamir_split_key(c->sec->s_sk, c->p.t, holders, xs, c->rng, s_sh, err);
    if (st == PVG_OK) st = pvg_shamir_split_key(c->sec->b, c->p.t, holders, xs, c->rng, b_sh, err);
    if (st == PVG_OK) {
        memcpy(c->sec->own_s, s_sh, SA_SHARE_BYTES);
        memcpy(c->sec->own_b, b_sh, SA_SHARE_BYTES);
        uint8_t *q = m + SA_HDR;
        sa_commit(c->p.session, c->id, c->sec->b, q);
        sa_put32(q + 32, cnt);
        q += 36;
        for (uint32_t i = 0; i < cnt; i++) {
            const uint8_t *e = pl + 4 + 68 * (size_t)i;
            uint32_t v = sa_get32(e);
            long at = sa_find(c->nb, c->p.k, v);
            c->alive1[at] = 1;
            uint8_t ad[24];
            memcpy(c->nbs[at].box_key, kx[i].box_key, 32);
            memcpy(c->nbs[at].mask_seed, kx[i].mask_seed, 32);
            sa_put32(plain, c->id);
            sa_put32(plain + 4, v);
            for (int j = 0; j < SA_SHARE_ELEMS; j++) {
                sa_put64(plain + 8 + 8 * j, s_sh[(size_t)(i + 1) * SA_SHARE_ELEMS + j]);
                sa_put64(plain + 8 + SA_SHARE_BYTES + 8 * j,
                         b_sh[(size_t)(i + 1) * SA_SHARE_ELEMS + j]);
            }
            sa_put32(q, v);
            pvg_rng_bytes(c->rng, q + 4, 24);
            sa_box_ad(c->p.session, c->id, v, ad);
            crypto_aead_xchacha20poly1305_ietf_encrypt(q + 28, NULL, plain, SA_BOX_PLAIN, ad, 24,
                                                       NULL, q + 4, c->nbs[at].box_key);
            q += 4 + SA_BOX_LEN;
        }
    }
    sodium_memzero(plain, sizeof plain);
    sodium_free(sh);
    sodium_free(kx);
    free(xs);
    if (st != PVG_OK) {
        free(m);
        c->state = C_FAILED;
        return st;
    }
    *out = m;
    *out_len = SA_HDR + 36 + (size_t)cnt * (4 + SA_BOX_LEN);
    c->state = C_SHARED;
    return PVG_OK;
}

pvg_status pvg_secagg_client_premask(pvg_secagg_client *c, pvg_error *err)
{
    if (!c) return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing argument");
    if (c->state != C_SHARED)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "secagg client %u: the masks are made between SHARES and FORWARD",
                             c->id);
    if (c->pre) return PVG_OK;
    size_t w = c->p.bits / 8, bytes = ((size_t)c->p.d * w + 63) & ~(size_t)63;
    size_t ms = 1;
    for (uint32_t a = 0; a < c->p.k; a++)
        ms += c->alive1[a] != 0;
    void *pre = sodium_malloc(bytes);
    uint8_t *seeds = pre ? sodium_malloc(32 * ms) : NULL;
    signed char *signs = seeds ? malloc(ms) : NULL;
    if (!signs) {
        if (seeds) sodium_free(seeds);
        if (pre) sodium_free(pre);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg: out of memory");
    }
    size_t at = 0;
    memcpy(seeds, c->sec->b, 32);
    signs[at++] = 1;
    for (uint32_t a = 0; a < c->p.k; a++)
        if (c->alive1[a]) {
            memcpy(seeds + 32 * at, c->nbs[a].mask_seed, 32);
            signs[at++] = c->id < c->nb[a] ? 1 : -1;
        }
    memset(pre, 0, bytes);
    sa_mask_accumulate(pre, 0, c->p.d, c->p.bits, c->p.mask_rounds, seeds, signs, ms);
    sodium_free(seeds);
    free(signs);
    c->pre = pre;
    c->pre_bytes = bytes;
    return PVG_OK;
}

/* y[0..d) += pre[0..d) mod 2^bits (little-endian words, as the host's). */
static void add_words(void *y, const void *pre, size_t d, unsigned bits)
{
    if (bits == 16) {
        uint16_t *a = y;
        const uint16_t *b = pre;
        for (size_t i = 0; i < d; i++)
            a[i] = (uint16_t)(a[i] + b[i]);
    } else if (bits == 32) {
        uint32_t *a = y;
        const uint32_t *b = pre;
        for (size_t i = 0; i < d; i++)
            a[i] += b[i];
    } else {
        uint64_t *a = y;
        const uint64_t *b = pre;
        for (size_t i = 0; i < d; i++)
            a[i] += b[i];
    }
}

/* The masked input: with given NULL into a new message (the input copied
 * into it), else in place in given (sa_client_masked_msg: the input is its
 * payload already; 16- or 32-bit words). */
static pvg_status masked_input(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                               const void *input, uint8_t *given, uint8_t **out, size_t *out_len,
                               pvg_error *err)
{
    if (c->state != C_SHARED)
        return pvg_error_set(err, PVG_ERR_STATE, "secagg client %u: not expecting FORWARD now",
                             c->id);
    const uint8_t *pl;
    size_t plen;
    uint32_t sender;
    int type;
    pvg_status st =
        sa_msg_parse(in, in_len, &c->p, SA_FORWARD, c->id, &pl, &plen, &sender, &type, err);
    if (st != PVG_OK) return st;
    if (sender != SA_SERVER_ID)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "FORWARD", 0, 0, 24,
                                "sender is not the server");
    if (plen < 4)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "FORWARD", 0, 0, SA_HDR, "truncated");
    uint32_t cnt = sa_get32(pl);
    if (cnt > c->p.k || plen != 4 + (size_t)cnt * (4 + SA_BOX_LEN))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "FORWARD", 0, 0, SA_HDR,
                                "%u boxes in %zu bytes", cnt, plen);
    if (cnt + 1 < c->p.t) {
        c->state = C_FAILED;
        return pvg_error_set(err, PVG_ERR_ABORTED,
                             "secagg client %u: only %u neighbours shared keys, below threshold %u",
                             c->id, cnt + 1, c->p.t);
    }
    /* decrypt into a scratch array first; commit only when all are valid */
    nb_secret *tmp = sodium_malloc(sizeof(nb_secret) * (cnt ? cnt : 1));
    uint8_t plain[SA_BOX_PLAIN]; /* wiped below */
    long *idx = malloc(sizeof(long) * (cnt ? cnt : 1));
    if (!tmp || !idx) {
        if (tmp) sodium_free(tmp);
        free(idx);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg: out of memory");
    }
    long prev = -1;
    for (uint32_t i = 0; i < cnt && st == PVG_OK; i++) {
        const uint8_t *e = pl + 4 + (size_t)i * (4 + SA_BOX_LEN);
        uint32_t u = sa_get32(e);
        long at = sa_find(c->nb, c->p.k, u);
        long long off = SA_HDR + 4 + (long long)i * (4 + SA_BOX_LEN);
        if (at < 0 || !c->alive1[at] || (long)u <= prev) {
            st =
                pvg_error_set_at(err, PVG_ERR_INVALID, "FORWARD", 0, 0, off,
                                 "box %u: sender %u is not a live neighbour or out of order", i, u);
            break;
        }
        prev = u;
        uint8_t ad[24];
        sa_box_ad(c->p.session, u, c->id, ad);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, e + 28, SA_BOX_PLAIN + 16,
                                                       ad, 24, e + 4, c->nbs[at].box_key) != 0) {
            st = pvg_error_set_at(err, PVG_ERR_CRYPTO, "FORWARD", 0, 0, off,
                                  "box from client %u failed authentication (forged or corrupted)",
                                  u);
            break;
        }
        if (sa_get32(plain) != u || sa_get32(plain + 4) != c->id) {
            st = pvg_error_set_at(err, PVG_ERR_CRYPTO, "FORWARD", 0, 0, off,
                                  "box from client %u names other parties", u);
            break;
        }
        for (int j = 0; j < SA_SHARE_ELEMS && st == PVG_OK; j++) {
            tmp[i].s_share[j] = sa_get64(plain + 8 + 8 * j);
            tmp[i].b_share[j] = sa_get64(plain + 8 + SA_SHARE_BYTES + 8 * j);
            if (tmp[i].s_share[j] >= PVG_SHAMIR_PRIME || tmp[i].b_share[j] >= PVG_SHAMIR_PRIME)
                st = pvg_error_set_at(err, PVG_ERR_CRYPTO, "FORWARD", 0, 0, off,
                                      "box from client %u holds a value outside the field", u);
        }
        idx[i] = at;
    }
    sodium_memzero(plain, sizeof plain);
    if (st != PVG_OK) {
        sodium_free(tmp);
        free(idx);
        return st;
    }
    size_t w = c->p.bits / 8;
    uint8_t *m =
        given ? given : sa_msg_new(SA_MASKED, &c->p, c->id, SA_SERVER_ID, (size_t)c->p.d * w);
    /* 16- and 32-bit words are masked in place in the message (its payload
     * is 4-byte aligned: 36-byte header); 64-bit ones in an aligned buffer */
    int inplace = c->p.bits <= 32;
    void *y = NULL;
    uint8_t *seeds = NULL;
    signed char *signs = NULL;
    if (m)
        y = inplace ? (void *)(m + SA_HDR)
                    : aligned_alloc(64, ((size_t)c->p.d * w + 63) & ~(size_t)63);
    /* the self mask and the neighbours in FORWARD, or (premask) those missing from it */
    if (y) seeds = sodium_malloc(32 * ((size_t)c->p.k + 1));
    if (seeds) signs = malloc((size_t)c->p.k + 1);
    if (!m || !y || !seeds || !signs) {
        sodium_free(tmp);
        free(idx);
        if (!inplace) free(y);
        if (!given) free(m);
        if (seeds) sodium_free(seeds);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg: out of memory");
    }
    for (uint32_t i = 0; i < cnt; i++) {
        memcpy(c->nbs[idx[i]].s_share, tmp[i].s_share, SA_SHARE_BYTES);
        memcpy(c->nbs[idx[i]].b_share, tmp[i].b_share, SA_SHARE_BYTES);
        c->alive2[idx[i]] = 1;
    }
    sodium_free(tmp);
    free(idx);
    /* y = x + PRG(b) + sum_v sign(u, v) PRG(s_uv) over the neighbours v in
     * FORWARD: the input is copied once, then every mask is added in one pass
     * over y (the kernel walks y in L1-sized chunks and adds all the masks of
     * a chunk before the next). With the premask (the same sum over the
     * neighbours in KEYS, made while the client waited) y = x + premask minus
     * the masks of the neighbours in KEYS missing from FORWARD: the same
     * words */
    size_t ms = 0;
    if (!given) memcpy(y, input, (size_t)c->p.d * w);
    if (c->pre) {
        add_words(y, c->pre, c->p.d, c->p.bits);
        pre_free(c);
        for (uint32_t a = 0; a < c->p.k; a++)
            if (c->alive1[a] && !c->alive2[a]) {
                memcpy(seeds + 32 * ms, c->nbs[a].mask_seed, 32);
                signs[ms++] = c->id < c->nb[a] ? -1 : 1;
            }
    } else {
        memcpy(seeds, c->sec->b, 32);
        signs[ms++] = 1;
        for (uint32_t a = 0; a < c->p.k; a++)
            if (c->alive2[a]) {
                memcpy(seeds + 32 * ms, c->nbs[a].mask_seed, 32);
                signs[ms++] = c->id < c->nb[a] ? 1 : -1;
            }
    }
    if (ms) sa_mask_accumulate(y, 0, c->p.d, c->p.bits, c->p.mask_rounds, seeds, signs, ms);
    sodium_free(seeds);
    free(signs);
    /* little-endian words on the wire (the host is little-endian,
     * secagg_common.c checks) */
    if (!inplace) {
        memcpy(m + SA_HDR, y, (size_t)c->p.d * w);
        free(y);
    }
    *out = m;
    *out_len = SA_HDR + (size_t)c->p.d * w;
    c->state = C_MASKED;
    return PVG_OK;
}

pvg_status pvg_secagg_client_masked_input(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                                          const void *input, uint8_t **out, size_t *out_len,
                                          pvg_error *err)
{
    if (!c || !out || !out_len || !input)
        return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing argument");
    return masked_input(c, in, in_len, input, NULL, out, out_len, err);
}

uint8_t *sa_client_masked_msg(const pvg_secagg_client *c, size_t *len)
{
    *len = 0;
    if (!c || c->p.bits > 32) return NULL;
    size_t pl = (size_t)c->p.d * (c->p.bits / 8);
    uint8_t *m = sa_msg_new_locked(SA_MASKED, &c->p, c->id, SA_SERVER_ID, pl);
    if (m) *len = SA_HDR + pl;
    return m;
}

pvg_status sa_client_masked_inplace(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                                    uint8_t *m, pvg_error *err)
{
    if (!c || !m) return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing argument");
    if (c->p.bits > 32)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "secagg: in-place masking takes 16- or 32-bit words, not %u",
                             c->p.bits);
    uint8_t *out = NULL;
    size_t out_len = 0;
    return masked_input(c, in, in_len, m + SA_HDR, m, &out, &out_len, err);
}

pvg_status pvg_secagg_client_unmask(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                                    uint8_t **out, size_t *out_len, pvg_error *err)
{
    if (!c || !out || !out_len)
        return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing argument");
    if (c->state != C_MASKED)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "secagg client %u: not expecting UNMASK_REQ now (answered already?)",
                             c->id);
    const uint8_t *pl;
    size_t plen;
    uint32_t sender;
    int type;
    pvg_status st =
        sa_msg_parse(in, in_len, &c->p, SA_UNMASK_REQ, c->id, &pl, &plen, &sender, &type, err);
    if (st != PVG_OK) return st;
    /* From here on, any refusal finishes the client: it answers at most one
     * unmasking request, so it can never reveal both shares of a client. */
    c->state = C_FAILED;
    if (sender != SA_SERVER_ID)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK_REQ", 0, 0, 24,
                                "sender is not the server");
    if (plen < 12)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK_REQ", 0, 0, SA_HDR, "truncated");
    uint32_t total = sa_get32(pl), ns = sa_get32(pl + 4);
    if (ns > c->p.k + 1 || plen < 12 + 4 * (size_t)ns)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK_REQ", 0, 0, SA_HDR + 4,
                                "survivor count %u does not fit", ns);
    uint32_t nd = sa_get32(pl + 8 + 4 * (size_t)ns);
    if (nd > c->p.k || plen != 12 + 4 * ((size_t)ns + nd))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK_REQ", 0, 0,
                                SA_HDR + 8 + 4 * (long long)ns,
                                "dropped count %u does not fit the %zu-byte payload", nd, plen);
    if (total < c->p.t || total > c->p.n || total < ns)
        return pvg_error_set(err, PVG_ERR_ABORTED,
                             "secagg client %u: server reports %u survivors, threshold is %u; "
                             "refusing to unmask",
                             c->id, total, c->p.t);
    /* mark: 1 survivor, 2 dropped; per neighbour index, self separately */
    uint8_t *mark = calloc(c->p.k, 1);
    if (!mark) return pvg_error_set(err, PVG_ERR_NOMEM, "secagg: out of memory");
    int self_listed = 0;
    for (uint32_t i = 0; i < ns + nd && st == PVG_OK; i++) {
        int dropped = i >= ns;
        size_t off = dropped ? 12 + 4 * (size_t)i : 8 + 4 * (size_t)i;
        uint32_t v = sa_get32(pl + off);
        if (v == c->id) {
            if (dropped || self_listed)
                st = pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK_REQ", 0, 0,
                                      SA_HDR + (long long)off,
                                      "request lists this client as dropped or twice");
            self_listed = 1;
            continue;
        }
        long at = sa_find(c->nb, c->p.k, v);
        if (at < 0 || !c->alive2[at])
            st = pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK_REQ", 0, 0, SA_HDR + (long long)off,
                                  "client %u: this client holds no share of it", v);
        else if (mark[at])
            st = pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK_REQ", 0, 0, SA_HDR + (long long)off,
                                  "client %u listed twice (both survived and dropped?); refusing",
                                  v);
        else
            mark[at] = dropped ? 2 : 1;
    }
    if (st != PVG_OK) {
        free(mark);
        return st;
    }
    size_t cnt = ns + nd;
    uint8_t *m = sa_msg_new(SA_UNMASK, &c->p, c->id, SA_SERVER_ID, 4 + cnt * SA_UNMASK_ENTRY);
    if (!m) {
        free(mark);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg: out of memory");
    }
    /* entries in ascending owner order: self merges into the neighbour order */
    uint8_t *q = m + SA_HDR;
    sa_put32(q, (uint32_t)cnt);
    q += 4;
    int self_done = !self_listed;
    for (uint32_t a = 0; a <= c->p.k; a++) {
        if (!self_done && (a == c->p.k || c->nb[a] > c->id)) {
            sa_put32(q, c->id);
            q[4] = SA_KIND_SELF;
            for (int j = 0; j < SA_SHARE_ELEMS; j++)
                sa_put64(q + 5 + 8 * j, c->sec->own_b[j]);
            q += SA_UNMASK_ENTRY;
            self_done = 1;
        }
        if (a == c->p.k) break;
        if (!mark[a]) continue;
        sa_put32(q, c->nb[a]);
        q[4] = mark[a] == 1 ? SA_KIND_SELF : SA_KIND_PAIR;
        const uint64_t *sh = mark[a] == 1 ? c->nbs[a].b_share : c->nbs[a].s_share;
        for (int j = 0; j < SA_SHARE_ELEMS; j++)
            sa_put64(q + 5 + 8 * j, sh[j]);
        q += SA_UNMASK_ENTRY;
    }
    free(mark);
    *out = m;
    *out_len = SA_HDR + 4 + cnt * SA_UNMASK_ENTRY;
    c->state = C_DONE;
    return PVG_OK;
}
