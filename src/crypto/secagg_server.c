/*
 * secagg_server.c - the server state machine of secure aggregation
 * (Bonawitz et al. 2017, SecAgg+ neighbourhoods of Bell et al. 2020).
 *
 * The server keeps, per client: which rounds it sent (the sets U1..U4 of
 * the paper), its public keys, its self-mask commitment and its share
 * boxes (to forward), and sums masked inputs as they arrive, so memory is
 * O(n k + d), never O(n d). At the end it recovers, for every client that
 * sent a masked input, the self-mask seed, and for every client that
 * shared keys but dropped before its masked input, the mask key; never
 * both for the same client (a share's kind must match the client's
 * status, checked on receipt). Mask removal runs on worker threads, each
 * owning a contiguous range of coordinates (ChaCha20 seeks by block
 * counter, so every thread expands only its slice of each mask).
 */
#include "crypto/secagg_internal.h"

#include <privguide/shamir.h>

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>

enum { R_DONE = 4, R_ABORTED = -1 };

struct pvg_secagg_server {
    pvg_secagg_params p;
    int round;
    unsigned threads;
    uint32_t *perm, *pos;
    uint8_t *sent; /* bit r: client sent its round-r message */
    size_t n_sent[4];
    uint8_t (*c_pk)[32], (*s_pk)[32], (*commit)[32];
    uint8_t **boxes; /* per sender: nbox entries of (to u32, box) */
    uint32_t *nbox;
    void *acc;             /* d words of bits/8 bytes */
    uint32_t *sh_cnt;      /* per owner: shares received in round 3 */
    uint64_t *sh_x, *sh_v; /* per owner: (k+1) points and (k+1)*8 values */
    uint32_t *scratch;     /* k + 1 ids */
};

static const int round_type[4] = {SA_ADVERTISE, SA_SHARES, SA_MASKED, SA_UNMASK};

pvg_status pvg_secagg_server_new(const pvg_secagg_params *p, pvg_secagg_server **out,
                                 pvg_error *err)
{
    if (!out) return pvg_error_set(err, PVG_ERR_INVALID, "secagg server: missing out");
    *out = NULL;
    if (pvg_init() != PVG_OK) return pvg_error_set(err, PVG_ERR_INTERNAL, "libsodium init failed");
    pvg_status st = pvg_secagg_params_check(p, err);
    if (st != PVG_OK) return st;
    pvg_secagg_server *s = calloc(1, sizeof *s);
    if (!s) return pvg_error_set(err, PVG_ERR_NOMEM, "secagg server: out of memory");
    s->p = *p;
    s->threads = 1;
    size_t n = p->n, w = p->bits / 8;
    s->perm = malloc(sizeof(uint32_t) * n);
    s->pos = malloc(sizeof(uint32_t) * n);
    s->sent = calloc(n, 1);
    s->c_pk = calloc(n, 32);
    s->s_pk = calloc(n, 32);
    s->commit = calloc(n, 32);
    s->boxes = calloc(n, sizeof *s->boxes);
    s->nbox = calloc(n, sizeof *s->nbox);
    s->acc = aligned_alloc(64, ((size_t)p->d * w + 63) & ~(size_t)63);
    s->scratch = malloc(sizeof(uint32_t) * ((size_t)p->k + 1));
    if (!s->perm || !s->pos || !s->sent || !s->c_pk || !s->s_pk || !s->commit || !s->boxes ||
        !s->nbox || !s->acc || !s->scratch) {
        pvg_secagg_server_free(s);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg server: out of memory");
    }
    memset(s->acc, 0, (size_t)p->d * w);
    sa_graph_perm(p, s->perm, s->pos);
    *out = s;
    return PVG_OK;
}

static void free_shares(pvg_secagg_server *s)
{
    if (s->sh_v) sodium_free(s->sh_v);
    free(s->sh_x);
    free(s->sh_cnt);
    s->sh_v = NULL;
    s->sh_x = NULL;
    s->sh_cnt = NULL;
}

void pvg_secagg_server_free(pvg_secagg_server *s)
{
    if (!s) return;
    if (s->boxes)
        for (uint32_t i = 0; i < s->p.n; i++)
            free(s->boxes[i]);
    free(s->boxes);
    free(s->nbox);
    free(s->perm);
    free(s->pos);
    free(s->sent);
    free(s->c_pk);
    free(s->s_pk);
    free(s->commit);
    if (s->acc) sodium_memzero(s->acc, (size_t)s->p.d * (s->p.bits / 8));
    free(s->acc);
    free(s->scratch);
    free_shares(s);
    free(s);
}

void pvg_secagg_server_set_threads(pvg_secagg_server *s, unsigned threads)
{
    if (s) s->threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
}

int pvg_secagg_server_round(const pvg_secagg_server *s)
{
    return s ? s->round : R_ABORTED;
}

static int in_round(const pvg_secagg_server *s, uint32_t id, int r)
{
    return (s->sent[id] >> r) & 1;
}

/* The box u addressed to v, or NULL. */
static const uint8_t *box_to(const pvg_secagg_server *s, uint32_t u, uint32_t v)
{
    size_t lo = 0, hi = s->nbox[u];
    const uint8_t *b = s->boxes[u];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t to = sa_get32(b + mid * (4 + SA_BOX_LEN));
        if (to < v)
            lo = mid + 1;
        else if (to > v)
            hi = mid;
        else
            return b + mid * (4 + SA_BOX_LEN);
    }
    return NULL;
}

/* v holds a share of owner u's secrets */
static int holds_share(const pvg_secagg_server *s, uint32_t u, uint32_t v)
{
    return in_round(s, u, 1) && (u == v || box_to(s, u, v) != NULL);
}

static pvg_status abort_session(pvg_secagg_server *s)
{
    s->round = R_ABORTED;
    sodium_memzero(s->acc, (size_t)s->p.d * (s->p.bits / 8)); /* nothing to reveal */
    free_shares(s);
    return PVG_ERR_ABORTED;
}

static pvg_status recv_advertise(pvg_secagg_server *s, uint32_t u, const uint8_t *pl, size_t plen,
                                 pvg_error *err)
{
    if (plen != 64)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "ADVERTISE", 0, 0, 32,
                                "payload of %zu bytes, expected 64", plen);
    static const uint8_t probe[32] = {9,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                      11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                      22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
    uint8_t tmp[32];
    for (int i = 0; i < 2; i++)
        if (crypto_scalarmult(tmp, probe, pl + 32 * i) != 0)
            return pvg_error_set_at(err, PVG_ERR_CRYPTO, "ADVERTISE", 0, 0, SA_HDR + 32 * i,
                                    "client %u: low-order public key", u);
    memcpy(s->c_pk[u], pl, 32);
    memcpy(s->s_pk[u], pl + 32, 32);
    return PVG_OK;
}

static pvg_status recv_shares(pvg_secagg_server *s, uint32_t u, const uint8_t *pl, size_t plen,
                              pvg_error *err)
{
    if (plen < 36)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "SHARES", 0, 0, SA_HDR, "truncated");
    uint32_t cnt = sa_get32(pl + 32);
    if (cnt > s->p.k || plen != 36 + (size_t)cnt * (4 + SA_BOX_LEN))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "SHARES", 0, 0, SA_HDR + 32,
                                "%u boxes in a %zu-byte payload", cnt, plen);
    if (cnt + 1 < s->p.t)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "SHARES", 0, 0, SA_HDR + 32,
                                "%u boxes: fewer than threshold %u - 1", cnt, s->p.t);
    uint32_t k = sa_graph_neighbours(&s->p, s->perm, s->pos, u, s->scratch);
    long prev = -1;
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t v = sa_get32(pl + 36 + (size_t)i * (4 + SA_BOX_LEN));
        if ((long)v <= prev || sa_find(s->scratch, k, v) < 0 || !in_round(s, v, 0))
            return pvg_error_set_at(err, PVG_ERR_INVALID, "SHARES", 0, 0,
                                    SA_HDR + 36 + (long long)i * (4 + SA_BOX_LEN),
                                    "box %u: recipient %u is not a live neighbour of %u or out "
                                    "of order",
                                    i, v, u);
        prev = v;
    }
    uint8_t *copy = malloc(cnt ? (size_t)cnt * (4 + SA_BOX_LEN) : 1);
    if (!copy) return pvg_error_set(err, PVG_ERR_NOMEM, "secagg server: out of memory");
    memcpy(copy, pl + 36, (size_t)cnt * (4 + SA_BOX_LEN));
    memcpy(s->commit[u], pl, 32);
    s->boxes[u] = copy;
    s->nbox[u] = cnt;
    return PVG_OK;
}

static pvg_status recv_masked(pvg_secagg_server *s, uint32_t u, const uint8_t *pl, size_t plen,
                              pvg_error *err)
{
    size_t w = s->p.bits / 8;
    if (plen != (size_t)s->p.d * w)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "MASKED", 0, 0, 32,
                                "payload of %zu bytes, expected d x %zu = %zu", plen, w,
                                (size_t)s->p.d * w);
    if (s->p.bits == 16) {
        uint16_t *a = s->acc; /* little-endian words (the host is, secagg_common.c checks) */
        for (size_t i = 0; i < s->p.d; i++) {
            uint16_t w;
            memcpy(&w, pl + 2 * i, 2);
            a[i] = (uint16_t)(a[i] + w);
        }
    } else if (s->p.bits == 32) {
        uint32_t *a = s->acc;
        for (size_t i = 0; i < s->p.d; i++)
            a[i] += sa_get32(pl + 4 * i);
    } else {
        uint64_t *a = s->acc;
        for (size_t i = 0; i < s->p.d; i++)
            a[i] += sa_get64(pl + 8 * i);
    }
    return PVG_OK;
}

static pvg_status recv_unmask(pvg_secagg_server *s, uint32_t v, const uint8_t *pl, size_t plen,
                              pvg_error *err)
{
    if (plen < 4)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK", 0, 0, SA_HDR, "truncated");
    uint32_t cnt = sa_get32(pl);
    if (cnt > s->p.k + 1 || plen != 4 + (size_t)cnt * SA_UNMASK_ENTRY)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK", 0, 0, SA_HDR,
                                "%u entries in a %zu-byte payload", cnt, plen);
    long prev = -1;
    for (uint32_t i = 0; i < cnt; i++) {
        const uint8_t *e = pl + 4 + (size_t)i * SA_UNMASK_ENTRY;
        long long off = SA_HDR + 4 + (long long)i * SA_UNMASK_ENTRY;
        uint32_t o = sa_get32(e);
        if ((long)o <= prev || o >= s->p.n || !holds_share(s, o, v))
            return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK", 0, 0, off,
                                    "entry %u: client %u holds no share of %u, or out of order", i,
                                    v, o);
        prev = o;
        int want = in_round(s, o, 2) ? SA_KIND_SELF : SA_KIND_PAIR;
        if (e[4] != want)
            return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK", 0, 0, off + 4,
                                    "entry %u: share kind %u for client %u, expected %d (the "
                                    "server never takes both secrets of a client)",
                                    i, e[4], o, want);
        for (int j = 0; j < SA_SHARE_ELEMS; j++)
            if (sa_get64(e + 5 + 8 * j) >= PVG_SHAMIR_PRIME)
                return pvg_error_set_at(err, PVG_ERR_INVALID, "UNMASK", 0, 0, off + 5 + 8 * j,
                                        "entry %u: share value outside the field", i);
    }
    for (uint32_t i = 0; i < cnt; i++) {
        const uint8_t *e = pl + 4 + (size_t)i * SA_UNMASK_ENTRY;
        uint32_t o = sa_get32(e), c = s->sh_cnt[o]++;
        size_t slot = (size_t)o * (s->p.k + 1) + c;
        s->sh_x[slot] = (uint64_t)v + 1;
        for (int j = 0; j < SA_SHARE_ELEMS; j++)
            s->sh_v[slot * SA_SHARE_ELEMS + j] = sa_get64(e + 5 + 8 * j);
    }
    return PVG_OK;
}

pvg_status pvg_secagg_server_receive(pvg_secagg_server *s, const uint8_t *msg, size_t len,
                                     pvg_error *err)
{
    if (!s) return pvg_error_set(err, PVG_ERR_INVALID, "secagg server: missing server");
    if (s->round < 0 || s->round > 3)
        return pvg_error_set(err, PVG_ERR_STATE, "secagg server: session %s",
                             s->round < 0 ? "aborted" : "finished");
    int r = s->round, type;
    const uint8_t *pl;
    size_t plen;
    uint32_t u;
    pvg_status st =
        sa_msg_parse(msg, len, &s->p, round_type[r], SA_SERVER_ID, &pl, &plen, &u, &type, err);
    if (st != PVG_OK) return st;
    if (u >= s->p.n)
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, "secagg message", 0, 0, 24,
                                "unknown client %u (n = %u)", u, s->p.n);
    if (r > 0 && !in_round(s, u, r - 1))
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, "secagg message", 0, 0, 24,
                                "client %u did not take part in the previous round", u);
    if (in_round(s, u, r))
        return pvg_error_set_at(err, PVG_ERR_EXISTS, "secagg message", 0, 0, 24,
                                "client %u already sent this round (replay)", u);
    switch (r) {
    case 0:
        st = recv_advertise(s, u, pl, plen, err);
        break;
    case 1:
        st = recv_shares(s, u, pl, plen, err);
        break;
    case 2:
        st = recv_masked(s, u, pl, plen, err);
        break;
    default:
        st = recv_unmask(s, u, pl, plen, err);
        break;
    }
    if (st == PVG_OK) {
        s->sent[u] |= (uint8_t)(1u << r);
        s->n_sent[r]++;
    }
    return st;
}

/* ---- unmasking ---- */

typedef struct {
    const pvg_secagg_server *s;
    const uint8_t *seeds; /* n_items x 32 */
    const signed char *signs;
    size_t n_items, lo, hi;
} mask_job;

static void *mask_worker(void *arg)
{
    mask_job *j = arg;
    size_t w = j->s->p.bits / 8;
    uint8_t *base = (uint8_t *)j->s->acc + j->lo * w;
    /* every mask's slice in one pass over the accumulator's slice */
    sa_mask_accumulate(base, j->lo, j->hi - j->lo, j->s->p.bits, j->s->p.mask_rounds, j->seeds,
                       j->signs, j->n_items);
    return NULL;
}

/* Recovers owner o's 32-byte secret from its shares, trying windows of t
 * consecutive shares until one verifies (robust to a few forged shares when
 * more than t arrived). */
static pvg_status recover(pvg_secagg_server *s, uint32_t o, int self, uint8_t out[32],
                          pvg_error *err)
{
    uint32_t cnt = s->sh_cnt[o], t = s->p.t;
    size_t base = (size_t)o * (s->p.k + 1);
    if (cnt < t)
        return pvg_error_set(err, PVG_ERR_ABORTED,
                             "secagg server: only %u shares of client %u's %s, threshold %u", cnt,
                             o, self ? "self-mask seed" : "mask key", t);
    uint64_t *wx = malloc(sizeof(uint64_t) * t);
    uint64_t *wv = sodium_malloc(sizeof(uint64_t) * SA_SHARE_ELEMS * t);
    if (!wx || !wv) {
        free(wx);
        if (wv) sodium_free(wv);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg server: out of memory");
    }
    pvg_status st = PVG_ERR_CRYPTO;
    for (uint32_t start = 0; start < cnt && st != PVG_OK; start++) {
        for (uint32_t i = 0; i < t; i++) {
            size_t slot = base + (start + i) % cnt;
            wx[i] = s->sh_x[slot];
            memcpy(wv + (size_t)i * SA_SHARE_ELEMS, s->sh_v + slot * SA_SHARE_ELEMS,
                   SA_SHARE_BYTES);
        }
        if (pvg_shamir_combine_key(wx, wv, t, out, NULL) != PVG_OK) continue;
        uint8_t check[32];
        if (self)
            sa_commit(s->p.session, o, out, check);
        else
            crypto_scalarmult_base(check, out);
        if (sodium_memcmp(check, self ? s->commit[o] : s->s_pk[o], 32) == 0) st = PVG_OK;
        if (cnt == t) break; /* only one window exists */
    }
    free(wx);
    sodium_free(wv);
    if (st != PVG_OK) {
        sodium_memzero(out, 32);
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "secagg server: the shares of client %u's %s do not verify "
                             "(forged shares)",
                             o, self ? "self-mask seed" : "mask key");
    }
    return PVG_OK;
}

static pvg_status finish(pvg_secagg_server *s, pvg_error *err)
{
    size_t n_items = 0;
    for (uint32_t o = 0; o < s->p.n; o++) {
        if (in_round(s, o, 2))
            n_items++;
        else if (in_round(s, o, 1))
            n_items += s->nbox[o];
    }
    uint8_t *seeds = sodium_malloc(32 * (n_items ? n_items : 1));
    signed char *signs = malloc(n_items ? n_items : 1);
    uint8_t *key = sodium_malloc(32);
    if (!seeds || !signs || !key) {
        if (seeds) sodium_free(seeds);
        if (key) sodium_free(key);
        free(signs);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg server: out of memory");
    }
    pvg_status st = PVG_OK;
    size_t it = 0;
    for (uint32_t o = 0; o < s->p.n && st == PVG_OK; o++) {
        if (in_round(s, o, 2)) {
            st = recover(s, o, 1, key, err);
            if (st != PVG_OK) break;
            memcpy(seeds + 32 * it, key, 32);
            signs[it++] = -1;
        } else if (in_round(s, o, 1)) {
            st = recover(s, o, 0, key, err);
            if (st != PVG_OK) break;
            for (uint32_t b = 0; b < s->nbox[o]; b++) {
                uint32_t v = sa_get32(s->boxes[o] + (size_t)b * (4 + SA_BOX_LEN));
                if (!in_round(s, v, 2)) continue;
                uint8_t shared[32];
                if (crypto_scalarmult(shared, key, s->s_pk[v]) != 0) {
                    st = pvg_error_set(err, PVG_ERR_CRYPTO, "secagg server: key agreement failed");
                    break;
                }
                pvg_secagg_kdf(&s->p, shared, o, v, 1, seeds + 32 * it);
                sodium_memzero(shared, 32);
                /* v added +PRG when v < o; remove it */
                signs[it++] = v < o ? -1 : +1;
            }
        }
    }
    sodium_free(key);
    if (st == PVG_OK) {
        unsigned T = s->threads;
        size_t align = 64 / (s->p.bits / 8), d = s->p.d; /* words per ChaCha block */
        if ((size_t)T * align * 4 > d) T = 1;
        mask_job jobs[64];
        pthread_t tids[64];
        int joined[64] = {0};
        size_t chunk = ((d + T - 1) / T + align - 1) / align * align; /* block-aligned slices */
        unsigned nj = 0;
        for (unsigned i = 0; i < T && (size_t)i * chunk < d; i++, nj++) {
            size_t lo = (size_t)i * chunk, hi = lo + chunk < d ? lo + chunk : d;
            jobs[i] = (mask_job){s, seeds, signs, it, lo, hi};
        }
        /* slices 1.. on worker threads (inline if a thread cannot start),
         * slice 0 on this thread */
        for (unsigned i = 1; i < nj; i++) {
            if (pthread_create(&tids[i], NULL, mask_worker, &jobs[i]) == 0)
                joined[i] = 1;
            else
                mask_worker(&jobs[i]);
        }
        mask_worker(&jobs[0]);
        for (unsigned i = 1; i < nj; i++)
            if (joined[i]) pthread_join(tids[i], NULL);
    }
    sodium_free(seeds);
    free(signs);
    return st;
}

pvg_status pvg_secagg_server_advance(pvg_secagg_server *s, pvg_error *err)
{
    if (!s) return pvg_error_set(err, PVG_ERR_INVALID, "secagg server: missing server");
    if (s->round < 0 || s->round > 3)
        return pvg_error_set(err, PVG_ERR_STATE, "secagg server: session %s",
                             s->round < 0 ? "aborted" : "finished");
    int r = s->round;
    if (s->n_sent[r] < s->p.t) {
        pvg_error_set(err, PVG_ERR_ABORTED,
                      "secagg server: %zu clients completed round %d, threshold %u; aborting "
                      "without revealing anything",
                      s->n_sent[r], r, s->p.t);
        return abort_session(s);
    }
    if (r == 2) {
        size_t slots = (size_t)s->p.n * (s->p.k + 1);
        s->sh_cnt = calloc(s->p.n, sizeof *s->sh_cnt);
        s->sh_x = calloc(slots, sizeof *s->sh_x);
        s->sh_v = sodium_malloc(slots * SA_SHARE_BYTES);
        if (!s->sh_cnt || !s->sh_x || !s->sh_v) {
            free_shares(s);
            return pvg_error_set(err, PVG_ERR_NOMEM, "secagg server: out of memory");
        }
    }
    if (r == 3) {
        pvg_status st = finish(s, err);
        free_shares(s);
        if (st != PVG_OK) {
            abort_session(s);
            return st;
        }
        s->round = R_DONE;
        return PVG_OK;
    }
    s->round = r + 1;
    return PVG_OK;
}

pvg_status pvg_secagg_server_message_for(pvg_secagg_server *s, uint32_t id, uint8_t **out,
                                         size_t *out_len, pvg_error *err)
{
    if (!s || !out || !out_len)
        return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing argument");
    if (s->round < 1 || s->round > 3)
        return pvg_error_set(err, PVG_ERR_STATE, "secagg server: no reply due in this state");
    int closed = s->round - 1;
    if (id >= s->p.n || !in_round(s, id, closed))
        return pvg_error_set(err, PVG_ERR_NOT_FOUND,
                             "secagg server: client %u did not send in round %d", id, closed);
    uint32_t k = sa_graph_neighbours(&s->p, s->perm, s->pos, id, s->scratch);
    uint8_t *m = NULL;
    size_t len = 0;
    if (closed == 0) { /* KEYS: live neighbours' public keys */
        uint32_t cnt = 0;
        for (uint32_t i = 0; i < k; i++)
            cnt += in_round(s, s->scratch[i], 0);
        len = 4 + (size_t)cnt * 68;
        m = sa_msg_new(SA_KEYS, &s->p, SA_SERVER_ID, id, len);
        if (m) {
            uint8_t *q = m + SA_HDR;
            sa_put32(q, cnt);
            q += 4;
            for (uint32_t i = 0; i < k; i++) {
                uint32_t v = s->scratch[i];
                if (!in_round(s, v, 0)) continue;
                sa_put32(q, v);
                memcpy(q + 4, s->c_pk[v], 32);
                memcpy(q + 36, s->s_pk[v], 32);
                q += 68;
            }
        }
    } else if (closed == 1) { /* FORWARD: boxes addressed to id */
        uint32_t cnt = 0;
        for (uint32_t i = 0; i < k; i++)
            cnt += in_round(s, s->scratch[i], 1) && box_to(s, s->scratch[i], id);
        len = 4 + (size_t)cnt * (4 + SA_BOX_LEN);
        m = sa_msg_new(SA_FORWARD, &s->p, SA_SERVER_ID, id, len);
        if (m) {
            uint8_t *q = m + SA_HDR;
            sa_put32(q, cnt);
            q += 4;
            for (uint32_t i = 0; i < k; i++) {
                uint32_t u = s->scratch[i];
                const uint8_t *b = in_round(s, u, 1) ? box_to(s, u, id) : NULL;
                if (!b) continue;
                sa_put32(q, u);
                memcpy(q + 4, b + 4, SA_BOX_LEN);
                q += 4 + SA_BOX_LEN;
            }
        }
    } else { /* UNMASK_REQ: survivors and dropped among the owners id holds shares of */
        uint32_t ns = 0, nd = 0;
        for (uint32_t i = 0; i <= k; i++) {
            uint32_t u = i == k ? id : s->scratch[i];
            if (!holds_share(s, u, id)) continue;
            if (in_round(s, u, 2))
                ns++;
            else
                nd++;
        }
        len = 12 + 4 * ((size_t)ns + nd);
        m = sa_msg_new(SA_UNMASK_REQ, &s->p, SA_SERVER_ID, id, len);
        if (m) {
            uint8_t *q = m + SA_HDR;
            sa_put32(q, (uint32_t)s->n_sent[2]);
            sa_put32(q + 4, ns);
            uint8_t *qs = q + 8, *qd = q + 12 + 4 * (size_t)ns;
            sa_put32(q + 8 + 4 * (size_t)ns, nd);
            for (uint32_t i = 0; i <= k; i++) {
                uint32_t u = i == k ? id : s->scratch[i];
                if (!holds_share(s, u, id)) continue;
                if (in_round(s, u, 2)) {
                    sa_put32(qs, u);
                    qs += 4;
                } else {
                    sa_put32(qd, u);
                    qd += 4;
                }
            }
        }
    }
    if (!m) return pvg_error_set(err, PVG_ERR_NOMEM, "secagg server: out of memory");
    *out = m;
    *out_len = SA_HDR + len;
    return PVG_OK;
}

pvg_status pvg_secagg_server_result(const pvg_secagg_server *s, void *sum, pvg_error *err)
{
    if (!s || !sum) return pvg_error_set(err, PVG_ERR_INVALID, "secagg: missing argument");
    if (s->round != R_DONE)
        return pvg_error_set(err, PVG_ERR_STATE, "secagg server: no result (%s)",
                             s->round < 0 ? "session aborted" : "rounds not finished");
    memcpy(sum, s->acc, (size_t)s->p.d * (s->p.bits / 8));
    return PVG_OK;
}

size_t pvg_secagg_server_survivors(const pvg_secagg_server *s, uint32_t *ids)
{
    if (!s || s->round < 3) return 0;
    size_t c = 0;
    for (uint32_t u = 0; u < s->p.n; u++)
        if (in_round(s, u, 2)) {
            if (ids) ids[c] = u;
            c++;
        }
    return c;
}
