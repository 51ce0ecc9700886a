/*
 * fl_client.c - the client of federated training: the STATE message
 * parser, the transport-free peer (one round's SecAgg+ client with the
 * client's own rules on top) and the native transport: a libcurl loop that
 * joins a server, polls its state, fetches the broadcast and posts the
 * messages the client core (fl_client_core.c, which makes every decision)
 * asks for.
 *
 * The client's rules, checked before it answers: the threshold must be a
 * strict majority of every neighbourhood (t > (k + 1) / 2), so a server
 * that tells some holders a client survived and others that it dropped can
 * never collect t shares of both its secrets; and an unmask request must
 * agree with itself and with the survivor list of the same STATE. The
 * client's vector (its update) and whatever produced it (its events, its
 * user factor) never leave this file except masked.
 */
#include <privguide/fl.h>
#include <privguide/fl_net.h>
#include <privguide/store.h>

#include "fl/fl_client_core.h"
#include "crypto/secagg_internal.h"
#include "fl/fl_internal.h"

#ifndef PVG_FL_CLIENT_NO_HTTP /* the WebAssembly build: JavaScript does the requests */
#include <curl/curl.h>
#endif
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

#define BAD(off, ...) pvg_error_set_at(err, PVG_ERR_INVALID, "fl STATE", 0, 0, (off), __VA_ARGS__)

pvg_status pvg_fl_state_parse(const uint8_t *in, size_t len, pvg_fl_state *st, pvg_error *err)
{
    pvg_error_clear(err);
    memset(st, 0, sizeof *st);
    if (!in || len < PVG_FL_NET_STATE_MIN)
        return BAD((long long)len, "a STATE message of at least %d bytes was expected, got %zu",
                   PVG_FL_NET_STATE_MIN, len);
    if (memcmp(in, "PVFL", 4) != 0) return BAD(0, "magic: \"PVFL\" was expected");
    if (in[4] != PVG_FL_NET_VERSION)
        return pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, "fl STATE", 0, 0, 4,
                                "version %u; this client speaks version %d", in[4],
                                PVG_FL_NET_VERSION);
    if (in[5] != 1) return BAD(5, "type %u: 1 (STATE) was expected", in[5]);
    if (in[6] || in[7]) return BAD(6, "reserved bytes must be zero");
    st->round = get64(in + 8);
    st->phase = in[16];
    if (st->phase > PVG_FL_PHASE_FINISHED) return BAD(16, "phase %d: 0..7 was expected", st->phase);
    if (in[17] > 7) return BAD(17, "flags 0x%02x: only bits 0, 1 and 2 are defined", in[17]);
    st->submitted = in[17] & 1;
    st->applied = (in[17] >> 1) & 1;
    st->waited = (in[17] >> 2) & 1;
    if (st->applied && st->phase != PVG_FL_PHASE_DONE && st->phase != PVG_FL_PHASE_FINISHED)
        return BAD(17, "flag 'applied' outside the done and finished phases");
    st->id = get32(in + 20);
    int in_round = st->phase >= PVG_FL_PHASE_ADVERTISE && st->phase <= PVG_FL_PHASE_UNMASK;
    if (get32(in + 76)) return BAD(76, "reserved word must be zero");
    st->params.n = get32(in + 24);
    st->params.k = get32(in + 28);
    st->params.t = get32(in + 32);
    st->params.d = get32(in + 36);
    st->params.bits = in[18];
    st->params.mask_rounds = in[19];
    memcpy(st->params.session, in + 40, 16);
    if (in_round) {
        /* the SecAgg lane (byte 18) and mask PRG (byte 19, 0 = ChaCha20; a
           client before them refuses any but 32 and 0) */
        if (st->params.bits != 32 && st->params.bits != 16)
            return BAD(18, "bits %u: 16 or 32 was expected", in[18]);
        if (in[19] != 0 && in[19] != 8 && in[19] != 12 && in[19] != 20)
            return BAD(19, "mask PRG rounds %u: 0 (ChaCha20), 8, 12 or 20 was expected", in[19]);
        pvg_error e;
        if (pvg_secagg_params_check(&st->params, &e) != PVG_OK)
            return BAD(24, "session parameters: %s", e.text);
        if (st->id != PVG_FL_NET_NO_ID && st->id >= st->params.n)
            return BAD(20, "id %u: below n = %u or 0xFFFFFFFF was expected", st->id, st->params.n);
        if (st->round == 0) return BAD(8, "round 0 cannot be under way");
    } else {
        static const uint8_t zero[36];
        if (st->id != PVG_FL_NET_NO_ID) return BAD(20, "id outside a round: 0xFFFFFFFF expected");
        if (memcmp(in + 18, zero, 2) || memcmp(in + 24, zero, 36) || get32(in + 56) ||
            get32(in + 64))
            return BAD(18, "session fields outside a round must be zero");
    }
    st->deadline_ms = get32(in + 56);
    st->retry_ms = get32(in + 60);
    if (st->retry_ms > 60000)
        return BAD(60, "retry_ms %u: at most 60000 was expected", st->retry_ms);
    st->broadcast_len = get32(in + 64);
    st->n_survivors = get32(in + 68);
    uint32_t rl = get32(in + 72);
    if (st->n_survivors && (st->phase != PVG_FL_PHASE_UNMASK || st->n_survivors > st->params.n))
        return BAD(68, "%u survivors: only in the unmask phase and at most n", st->n_survivors);
    if (rl && (!in_round || st->phase == PVG_FL_PHASE_ADVERTISE || st->id == PVG_FL_NET_NO_ID))
        return BAD(72, "a reply of %u bytes where none is due", rl);
    size_t want = PVG_FL_NET_STATE_MIN + (size_t)st->n_survivors * 4 + rl;
    if (len != want)
        return BAD((long long)(len < want ? len : want),
                   "length %zu: %zu was expected (80 + 4 x survivors + reply)", len, want);
    st->survivors = st->n_survivors ? in + PVG_FL_NET_STATE_MIN : NULL;
    for (uint32_t i = 1; i < st->n_survivors; i++)
        if (get32(st->survivors + 4 * (size_t)i) <= get32(st->survivors + 4 * (size_t)(i - 1)))
            return BAD(PVG_FL_NET_STATE_MIN + 4 * (long long)i, "survivor ids must ascend");
    if (st->n_survivors && get32(st->survivors + 4 * (size_t)(st->n_survivors - 1)) >= st->params.n)
        return BAD(PVG_FL_NET_STATE_MIN, "survivor id beyond n");
    st->reply = rl ? in + want - rl : NULL;
    st->reply_len = rl;
    return PVG_OK;
}

/* ---- the peer ---- */

struct pvg_fl_peer {
    uint64_t round;
    uint32_t id;
    pvg_secagg_params params;
    pvg_secagg_client *sa;
    uint32_t *vec; /* 32-bit lanes: the payload of msg; 16-bit: sodium_malloc */
    uint8_t *msg;  /* 32-bit lanes: the MASKED message, locked (sa_client_masked_msg) */
    size_t msg_len;
    size_t d;
    int step; /* 0 new, 1 advertised, 2 shared, 3 masked, 4 unmasked, -1 refused */
    int has_input;
};

pvg_status pvg_fl_peer_new(const pvg_fl_state *st, const uint32_t *vec, size_t d, pvg_rng *rng,
                           int allow_insecure_rng, pvg_fl_peer **out, pvg_error *err)
{
    pvg_error_clear(err);
    *out = NULL;
    if (st->phase < PVG_FL_PHASE_ADVERTISE || st->phase > PVG_FL_PHASE_UNMASK ||
        st->id == PVG_FL_NET_NO_ID)
        return pvg_error_set(err, PVG_ERR_STATE, "fl peer: this client is in no round");
    if (st->params.bits != 32 && st->params.bits != 16)
        return pvg_error_set(err, PVG_ERR_POLICY,
                             "fl peer: bits %u; this client sums mod 2^32 or 2^16",
                             st->params.bits);
    /* the client's own rule: a strict majority of the k + 1 holders */
    if (2ull * st->params.t <= (unsigned long long)st->params.k + 1)
        return pvg_error_set(err, PVG_ERR_POLICY,
                             "fl peer: threshold t = %u is not a strict majority of the %u "
                             "holders of each secret (t > (k + 1) / 2 is required): a server "
                             "could then collect both secrets of one client",
                             st->params.t, st->params.k + 1);
    if (d != st->params.d)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl peer: vector of %zu words, session d = %u",
                             d, st->params.d);
    pvg_fl_peer *p = calloc(1, sizeof *p);
    if (!p) return pvg_error_set(err, PVG_ERR_NOMEM, "fl peer");
    p->round = st->round;
    p->id = st->id;
    p->params = st->params;
    p->d = d;
    pvg_status s =
        pvg_secagg_client_new_ex(&p->params, p->id, rng, allow_insecure_rng, &p->sa, err);
    if (s != PVG_OK) {
        pvg_fl_peer_free(p);
        return s;
    }
    /* 32-bit lanes: the update is written into the payload of the masked
     * input's own message (locked, wiped), which is masked in place: no
     * second d-word buffer of fresh pages and no copy. 16-bit lanes pack the
     * words first, in a buffer of their own. */
    if (p->params.bits == 32) {
        p->msg = sa_client_masked_msg(p->sa, &p->msg_len);
        p->vec = p->msg ? (uint32_t *)(void *)(p->msg + SA_HDR) : NULL;
    } else {
        p->vec = sodium_malloc(sizeof *p->vec * d);
    }
    if (!p->vec) {
        pvg_fl_peer_free(p);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl peer: vector");
    }
    if (vec) {
        memcpy(p->vec, vec, sizeof *p->vec * d);
        p->has_input = 1;
    }
    *out = p;
    return PVG_OK;
}

void pvg_fl_peer_free(pvg_fl_peer *p)
{
    if (!p) return;
    pvg_secagg_client_free(p->sa);
    if (p->msg)
        sa_msg_free_locked(p->msg, p->msg_len); /* wiped: it may hold the update */
    else if (p->vec)
        sodium_free(p->vec); /* wipes it */
    free(p);
}

pvg_status pvg_fl_peer_set_input(pvg_fl_peer *p, const uint32_t *vec, size_t d, pvg_error *err)
{
    pvg_error_clear(err);
    if (p->step < 0 || p->step > 2)
        return pvg_error_set(err, PVG_ERR_STATE, "fl peer: the masked input was made already");
    if (d != p->d)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl peer: vector of %zu words, session d = %zu",
                             d, p->d);
    memcpy(p->vec, vec, sizeof *p->vec * d);
    p->has_input = 1;
    return PVG_OK;
}

uint32_t *fl_peer_input_buffer(pvg_fl_peer *p, size_t *d)
{
    *d = 0;
    if (p->step < 0 || p->step > 2) return NULL;
    memset(p->vec, 0, sizeof *p->vec * p->d);
    p->has_input = 0;
    *d = p->d;
    return p->vec;
}

void fl_peer_input_set(pvg_fl_peer *p)
{
    p->has_input = 1;
}

void fl_peer_input_wipe(pvg_fl_peer *p)
{
    if (p->vec) sodium_memzero(p->vec, sizeof *p->vec * p->d);
    p->has_input = 0;
}

int fl_peer_premask(pvg_fl_peer *p)
{
    if (!p || p->step != 2) return 0;
    pvg_error e;
    /* a failure (out of memory) leaves the masked input to make every mask */
    return pvg_secagg_client_premask(p->sa, &e) == PVG_OK;
}

int pvg_fl_peer_done(const pvg_fl_peer *p)
{
    return p && p->step == 4;
}

static int in_list(const uint8_t *ids, uint32_t n, uint32_t id)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2, v = get32(ids + 4 * (size_t)mid);
        if (v == id) return 1;
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* The unmask request against the STATE's survivor list (docs/fl-protocol.md). */
static pvg_status check_unmask_req(const pvg_fl_peer *p, const pvg_fl_state *st, pvg_error *err)
{
    const uint8_t *m = st->reply;
    size_t len = st->reply_len;
#define REQ_BAD(off, ...)                                                                          \
    pvg_error_set_at(err, PVG_ERR_ABORTED, "fl UNMASK_REQ", 0, 0, (off), __VA_ARGS__)
    if (len < 36 + 12 || m[5] != 6)
        return REQ_BAD(5, "an UNMASK_REQ (type 6) of at least 48 bytes was expected");
    uint32_t total = get32(m + 36), ns = get32(m + 40);
    if ((size_t)ns > (len - 48) / 4) return REQ_BAD(40, "survivor count %u beyond the message", ns);
    uint32_t nd = get32(m + 44 + 4 * (size_t)ns);
    if (len != 48 + 4 * ((size_t)ns + nd)) return REQ_BAD(44 + 4 * (long long)ns, "length");
    if (total != st->n_survivors)
        return REQ_BAD(36, "the request claims %u survivors, the STATE lists %u", total,
                       st->n_survivors);
    if (total < p->params.t)
        return REQ_BAD(36, "%u survivors is below the threshold t = %u", total, p->params.t);
    if (!in_list(st->survivors, st->n_survivors, p->id))
        return REQ_BAD(68,
                       "this client (id %u) sent its masked input but is not listed as a "
                       "survivor",
                       p->id);
    const uint8_t *sv = m + 44, *dr = m + 48 + 4 * (size_t)ns;
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t id = get32(sv + 4 * (size_t)i);
        if (!in_list(st->survivors, st->n_survivors, id))
            return REQ_BAD(44 + 4 * (long long)i,
                           "the self-mask share of client %u is asked although the survivor list "
                           "says it dropped",
                           id);
        for (uint32_t j = 0; j < nd; j++)
            if (get32(dr + 4 * (size_t)j) == id)
                return REQ_BAD(48 + 4 * ((long long)ns + j),
                               "client %u is named both survived and dropped", id);
    }
    for (uint32_t j = 0; j < nd; j++) {
        uint32_t id = get32(dr + 4 * (size_t)j);
        if (in_list(st->survivors, st->n_survivors, id))
            return REQ_BAD(48 + 4 * ((long long)ns + j),
                           "the mask-key share of client %u is asked although the survivor list "
                           "says it survived",
                           id);
    }
#undef REQ_BAD
    return PVG_OK;
}

/* The masked input of the peer's vector. 16-bit lanes: every word must be
 * below 2^16 (an update encoded mod 2^16), else the client refuses (the
 * lane would cut it and the sum would be wrong); the words are then packed
 * in place into the first half of the peer's (locked) buffer, which is
 * wiped after the message is made. */
static pvg_status masked_input(pvg_fl_peer *p, const pvg_fl_state *st, uint8_t **out,
                               size_t *out_len, pvg_error *err)
{
    if (p->params.bits == 32) {
        /* masked in place: the message is the peer's buffer, handed out */
        pvg_status s = sa_client_masked_inplace(p->sa, st->reply, st->reply_len, p->msg, err);
        if (s != PVG_OK) return s;
        sa_msg_unlock(p->msg, p->msg_len); /* masked now: no secret left in it */
        *out = p->msg;
        *out_len = p->msg_len;
        p->msg = NULL;
        p->msg_len = 0;
        p->vec = NULL;
        return PVG_OK;
    }
    uint32_t over = 0;
    for (size_t i = 0; i < p->d; i++)
        over |= p->vec[i];
    if (over >> 16) {
        size_t at = 0;
        while (!(p->vec[at] >> 16))
            at++;
        /* the position only: the text reaches the shopper's page, a word of the
           private update must not */
        return pvg_error_set_at(err, PVG_ERR_POLICY, "fl update", 0, 0, (long long)at,
                                "word %zu is 2^16 or more, beyond the session's 16-bit lane: "
                                "the update was not encoded mod 2^16 (its bits must be 16)",
                                at);
    }
    /* word i moves to bytes 2i, 2i + 1 (little-endian), below byte 4i: no word still
       to be read is overwritten; the stores are bytes, which may alias the words */
    uint8_t *v16 = (uint8_t *)p->vec;
    for (size_t i = 0; i < p->d; i++) {
        uint32_t w = p->vec[i];
        v16[2 * i] = (uint8_t)w;
        v16[2 * i + 1] = (uint8_t)(w >> 8);
    }
    return pvg_secagg_client_masked_input(p->sa, st->reply, st->reply_len, v16, out, out_len, err);
}

pvg_status pvg_fl_peer_step(pvg_fl_peer *p, const pvg_fl_state *st, uint8_t **out, size_t *out_len,
                            pvg_error *err)
{
    pvg_error_clear(err);
    *out = NULL;
    *out_len = 0;
    if (p->step < 0) return pvg_error_set(err, PVG_ERR_ABORTED, "fl peer: refused this round");
    if (st->round != p->round || st->id != p->id ||
        memcmp(st->params.session, p->params.session, 16) != 0 || st->params.n != p->params.n ||
        st->params.k != p->params.k || st->params.t != p->params.t || st->params.d != p->params.d ||
        st->params.bits != p->params.bits || st->params.mask_rounds != p->params.mask_rounds)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "fl peer: a STATE of another round, session or parameters");
    if (st->submitted) return PVG_OK;
    pvg_status s = PVG_OK;
    if (st->phase == PVG_FL_PHASE_ADVERTISE && p->step == 0) {
        s = pvg_secagg_client_advertise(p->sa, out, out_len, err);
    } else if (st->phase == PVG_FL_PHASE_SHARE && p->step == 1 && st->reply) {
        s = pvg_secagg_client_share_keys(p->sa, st->reply, st->reply_len, out, out_len, err);
    } else if (st->phase == PVG_FL_PHASE_MASKED && p->step == 2 && st->reply) {
        if (!p->has_input)
            return pvg_error_set(err, PVG_ERR_STATE,
                                 "fl peer: no input set (pvg_fl_peer_set_input)");
        s = masked_input(p, st, out, out_len, err);
        /* 16-bit lanes: the packed update is wiped (32-bit: the buffer is the message) */
        if (s == PVG_OK && p->vec) sodium_memzero(p->vec, sizeof *p->vec * p->d);
    } else if (st->phase == PVG_FL_PHASE_UNMASK && p->step == 3 && st->reply) {
        s = check_unmask_req(p, st, err);
        if (s == PVG_OK)
            s = pvg_secagg_client_unmask(p->sa, st->reply, st->reply_len, out, out_len, err);
    } else {
        return PVG_OK; /* nothing due */
    }
    if (s != PVG_OK) {
        p->step = -1;
        return s;
    }
    p->step++;
    return PVG_OK;
}

/* ---- the HTTP loop ---- */
#ifndef PVG_FL_CLIENT_NO_HTTP

/* The largest answers a client reads (fl_net.h): any legal STATE (80 bytes,
 * a survivor list of n <= 65535 ids, a reply of at most a FORWARD of k + 1 <=
 * 65535 boxes of 180 bytes after its 40-byte head), an error body. */
#define STATE_MAX                                                                                  \
    ((size_t)PVG_FL_NET_STATE_MIN + 4 * (size_t)PVG_SECAGG_MAX_CLIENTS + 40 +                      \
     180 * (size_t)PVG_SECAGG_MAX_CLIENTS)
#define ERROR_MAX ((size_t)64 * 1024)

typedef struct buf {
    uint8_t *p;
    size_t n, cap, max, hw; /* hw: the most bytes it ever held (wiped at the end) */
    int over, checked;
    CURL *h;
} buf;

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    buf *b = ud;
    size_t n = size * nmemb;
    if (!b->checked) { /* an error's body is small, whatever the route */
        long code = 0;
        b->checked = 1;
        curl_easy_getinfo(b->h, CURLINFO_RESPONSE_CODE, &code);
        if (code != 200 && b->max > ERROR_MAX) b->max = ERROR_MAX;
        /* a declared length within the limit is reserved at once: a broadcast
           is copied once, not through a doubling buffer */
        curl_off_t cl = -1;
        if (curl_easy_getinfo(b->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
            cl > 0 && (uint64_t)cl <= b->max && (size_t)cl > b->cap) {
            /* a large one in huge pages (sa_big_alloc): a fresh 2.6 MB broadcast
               would otherwise take a page fault per 4 KiB */
            uint8_t *q = sa_big_alloc((size_t)cl);
            if (!q) return 0;
            if (b->p) {
                memcpy(q, b->p, b->n);
                sodium_memzero(b->p, b->hw);
                free(b->p);
            }
            b->hw = b->n;
            b->p = q;
            b->cap = (size_t)cl;
        }
    }
    if (n > b->max - b->n) {
        b->over = 1;
        return 0;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    if (b->n > b->hw) b->hw = b->n;
    return n;
}

typedef struct conn {
    CURL *h;
    struct curl_slist *hdr;
    const pvg_fl_client_options *o;
    pvg_fl_client_stats *st;
    buf resp;
    long code;
} conn;

/* Every byte of HTTP the client sends or receives passes here once, headers
 * and bodies apart: the byte counts are taken here (libcurl's own request
 * size also holds a small POST body sent in the headers' buffer, which its
 * upload size counts again), and the tests' wire tap sees the same bytes. */
static int on_debug(CURL *h, curl_infotype type, char *data, size_t size, void *ud)
{
    (void)h;
    conn *c = ud;
    int out = type == CURLINFO_HEADER_OUT || type == CURLINFO_DATA_OUT;
    int in = type == CURLINFO_HEADER_IN || type == CURLINFO_DATA_IN;
    if (!out && !in) return 0;
    if (out)
        c->st->bytes_up += size;
    else
        c->st->bytes_down += size;
    if (c->o->wire_tap) c->o->wire_tap(c->o->tap_ctx, out, (const uint8_t *)data, size);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void nap(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* One request; the body of the answer (at most max bytes) in c->resp, status
 * in c->code. An answer longer than max is an error naming the byte offset
 * where it went past, with nothing more read. */
static pvg_status request(conn *c, const char *method, const char *path, const uint8_t *body,
                          size_t len, size_t max, pvg_error *err)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", c->o->server, path);
    c->resp.n = 0;
    c->resp.over = 0;
    c->resp.h = c->h;
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c->h, CURLOPT_POST, 1L);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body ? (const char *)body : "");
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
    }
    CURLcode rc = CURLE_OK;
    /* a connection refused, reset or closed without an answer (a server
     * under a burst of connections) is tried again, 5 times at most; a POST
     * that did reach the server is then refused as a replay, which is
     * harmless: the next STATE says whether it was accepted */
    for (int attempt = 0;; attempt++) {
        c->resp.n = 0;
        c->resp.over = 0;
        c->resp.checked = 0;
        c->resp.max = max;
        rc = curl_easy_perform(c->h);
        c->st->requests++;
        if (attempt >= 5 || (rc != CURLE_GOT_NOTHING && rc != CURLE_COULDNT_CONNECT &&
                             rc != CURLE_RECV_ERROR && rc != CURLE_SEND_ERROR))
            break;
        nap(50u << attempt);
    }
    curl_off_t up = 0, down = 0;
    curl_easy_getinfo(c->h, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(c->h, CURLINFO_SIZE_DOWNLOAD_T, &down);
    c->st->body_up += (unsigned long long)up;
    c->st->body_down += (unsigned long long)down;
    if (c->resp.over) /* the server sent more than any legal answer: read no further */
        return pvg_error_set_at(err, PVG_ERR_INVALID, url, 0, 0, (long long)c->resp.max,
                                "%s %s: the answer goes past byte offset %zu; at most %zu bytes "
                                "were expected",
                                method, path, c->resp.max, c->resp.max);
    if (rc != CURLE_OK)
        return pvg_error_set(err, PVG_ERR_IO, "%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->code);
    return PVG_OK;
}

static pvg_status http_error(conn *c, const char *what, pvg_error *err)
{
    int n = (int)(c->resp.n > 200 ? 200 : c->resp.n);
    pvg_status s = c->code == 401 || c->code == 403 ? PVG_ERR_PERMISSION : PVG_ERR_IO;
    return pvg_error_set(err, s, "%s: HTTP %ld: %.*s", what, c->code, n,
                         c->resp.p ? (const char *)c->resp.p : "");
}

pvg_status pvg_fl_client_run_core(const pvg_fl_client_options *o, pvg_fl_core *core,
                                  pvg_fl_client_stats *st, pvg_error *err)
{
    pvg_error_clear(err);
    pvg_fl_client_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    if (!o || !o->server || !o->token || !core)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl client: server, token and core are required");
    if (strncmp(o->server, "http://", 7) != 0 && strncmp(o->server, "https://", 8) != 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl client: server %s: want http(s)://host:port",
                             o->server);
    if (strlen(o->token) > 512 || strpbrk(o->token, "\r\n"))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl client: malformed token");
    double t_start = now_s(), timeout = o->timeout_s > 0 ? o->timeout_s : 600;
    conn c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.st = st;
    c.h = curl_easy_init();
    if (!c.h) return pvg_error_set(err, PVG_ERR_INTERNAL, "fl client: curl_easy_init");
    char *auth = malloc(strlen(o->token) + 32);
    if (!auth) {
        curl_easy_cleanup(c.h);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl client");
    }
    sprintf(auth, "Authorization: Bearer %s", o->token);
    c.hdr = curl_slist_append(NULL, auth);
    sodium_memzero(auth, strlen(auth));
    free(auth);
    c.hdr = curl_slist_append(c.hdr, "Content-Type: application/octet-stream");
    c.hdr = curl_slist_append(c.hdr, "Expect:");
    curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.hdr);
    curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &c.resp);
    curl_easy_setopt(c.h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c.h, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a connection idle for more than 5 s is not reused: the server closes idle
       connections (pvg_server_options timeout_seconds, 15 s by default), and a
       client that computed its masks for about that long would otherwise start
       its multi-megabyte POST on a connection the server is closing, have it
       reset and send it again (bench_fl at 20,000 items: 1.42x the plain update
       uploaded instead of 1.02x) */
    curl_easy_setopt(c.h, CURLOPT_MAXAGE_CONN, 5L);
    /* the byte counts (and the tests' wire tap) come from the debug hook */
    curl_easy_setopt(c.h, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(c.h, CURLOPT_DEBUGDATA, &c);
    curl_easy_setopt(c.h, CURLOPT_VERBOSE, 1L);

    /* the transport only: every decision (take part, refuse, what to send, when to stop)
       is the core's; this loop makes the request it asks for and hands it the answer */
    pvg_status s = request(&c, "POST", "/v1/fl/join", NULL, 0, STATE_MAX, err);
    if (s == PVG_OK && c.code != 200) s = http_error(&c, "POST /v1/fl/join", err);
    int have = s == PVG_OK; /* c.resp holds a STATE not yet fed to the core */
    int rejoined = 0;       /* joins again once when the server forgot this client (expired) */
    int long_poll = !o->plain_poll; /* 0 once a server answered a wait without honouring it */
    int waiting = 0;                /* the next STATE request is a long poll */
    int asked_wait = 0;             /* the STATE in c.resp answers a long poll */
    double no_wait_until = 0;       /* a full wait cap: plain polls until then */
    while (s == PVG_OK) {
        if (!have) {
            if (now_s() - t_start > timeout) {
                s = pvg_error_set(err, PVG_ERR_BUSY, "fl client: timed out after %g s", timeout);
                break;
            }
            char path[96] = "/v1/fl/state";
            int asked = 0;
            if (waiting) {
                char q[64];
                if (pvg_fl_core_wait_query(core, PVG_FL_NET_MAX_WAIT_MS, q, sizeof q)) {
                    snprintf(path, sizeof path, "/v1/fl/state?%s", q);
                    asked = 1;
                }
            }
            waiting = 0;
            asked_wait = 0;
            s = request(&c, "GET", path, NULL, 0, STATE_MAX, err);
            if (s != PVG_OK) break;
            if (c.code == 429 || c.code == 503) {
                /* busy, or every long-poll slot is taken: no wait is asked again for the
                   server's Retry-After (1..60 s), and meanwhile the client polls at the
                   STATE's retry_ms like a client without long polling */
                if (asked) {
                    curl_off_t ra = 0;
                    if (curl_easy_getinfo(c.h, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra < 1)
                        ra = 1;
                    no_wait_until = now_s() + (ra < 60 ? (double)ra : 60.0);
                }
                nap(200);
                continue;
            }
            if (c.code == 404 && !rejoined) {
                rejoined = 1;
                s = request(&c, "POST", "/v1/fl/join", NULL, 0, STATE_MAX, err);
                if (s == PVG_OK && c.code != 200)
                    s = http_error(&c, "POST /v1/fl/join (again)", err);
                have = s == PVG_OK;
                continue;
            }
            if (c.code != 200) {
                s = http_error(&c, "GET /v1/fl/state", err);
                break;
            }
            rejoined = 0;
            asked_wait = asked;
        }
        have = 0;
        int answered_wait = asked_wait;
        asked_wait = 0;
        int action = PVG_FL_CORE_WAIT;
        uint32_t wait_ms = 0;
        uint64_t round = 0;
        const uint8_t *msg = NULL;
        size_t msg_len = 0;
        double t0 = now_s();
        s = pvg_fl_core_state(core, c.resp.p, c.resp.n, &action, &wait_ms, &round, &msg, &msg_len,
                              err);
        st->compute_seconds += now_s() - t0;
        if (s != PVG_OK || action == PVG_FL_CORE_FINISHED) break;
        if (action == PVG_FL_CORE_SEND) {
            /* refused (late, a replay of a retried POST): the next STATE's submitted flag
             * says whether the server holds it; the core sends nothing twice */
            s = request(&c, "POST", "/v1/fl/messages", msg, msg_len, STATE_MAX, err);
            continue; /* ask for the next state at once */
        }
        if (action == PVG_FL_CORE_BROADCAST) {
            char path[96];
            snprintf(path, sizeof path, "/v1/fl/broadcast?round=%llu", (unsigned long long)round);
            s = request(&c, "GET", path, NULL, 0, pvg_fl_core_broadcast_len(core), err);
            if (s != PVG_OK) break;
            if (c.code != 200 && c.code != 404) {
                s = http_error(&c, "GET /v1/fl/broadcast", err);
                break;
            }
            t0 = now_s();
            /* 404: the round moved on meanwhile (NULL); an empty body is not NULL */
            const uint8_t *bc = c.code == 200 ? (c.resp.p ? c.resp.p : (const uint8_t *)"") : NULL;
            s = pvg_fl_core_broadcast(core, round, bc, c.code == 200 ? c.resp.n : 0, err);
            st->compute_seconds += now_s() - t0;
            continue;
        }
        /* waiting (mask_ahead): the work that does not need the next STATE first (the
           masks, between SHARES and FORWARD), so the next phase finds them made */
        t0 = now_s();
        if (o->mask_ahead && pvg_fl_core_idle(core)) st->compute_seconds += now_s() - t0;
        if (long_poll) {
            int waited = 0;
            (void)pvg_fl_core_seen(core, NULL, NULL, &waited);
            /* an answer to a wait without the "waited" flag: the server does not
               long-poll (an older one); poll at its retry_ms from now on */
            if (answered_wait && !waited) long_poll = 0;
        }
        if (long_poll && now_s() >= no_wait_until) {
            waiting = 1; /* the next request waits at the server for the change */
            continue;
        }
        nap(wait_ms);
    }
    pvg_fl_core_stats(core, &st->rounds, &st->refused, NULL);
    curl_slist_free_all(c.hdr);
    curl_easy_cleanup(c.h);
    if (c.resp.p) sodium_memzero(c.resp.p, c.resp.hw); /* beyond hw: never written */
    free(c.resp.p);
    st->seconds = now_s() - t_start;
    return s;
}

pvg_status pvg_fl_client_run(const pvg_fl_client_options *o, pvg_fl_client_stats *st,
                             pvg_error *err)
{
    pvg_error_clear(err);
    if (st) memset(st, 0, sizeof *st);
    if (!o || !o->server || !o->token || !o->update || !o->rng)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl client: server, token, update and rng are required");
    pvg_fl_core *core = NULL;
    pvg_status s = pvg_fl_core_new_fn(o->update, o->ctx, o->rounds, o->max_d, o->max_broadcast,
                                      o->rng, o->allow_insecure_rng, &core, err);
    if (s != PVG_OK) return s;
    pvg_fl_core_set_drop_phase(core, o->drop_phase);
    s = pvg_fl_client_run_core(o, core, st, err);
    pvg_fl_core_free(core);
    return s;
}
#endif /* PVG_FL_CLIENT_NO_HTTP */
