/*
 * fuzz_secagg.c - libFuzzer harness for the secure-aggregation wire
 * decoders (src/crypto/secagg_client.c, secagg_server.c, the header parser
 * in secagg_common.c): one session of 4 clients (complete graph, t = 2,
 * d = 4, 32 bits - or the mode fuzz_secagg_lanes.c picks -, fixed session
 * id and deterministic keys) driven by a
 * program read from the input, one op per byte:
 *   op = byte % 6, c = (byte / 6) % 4:
 *   0  client c takes its next honest step (advertise, or the server's
 *      reply into its next round) and its message goes to the server
 *   1  the server closes the round (advance)
 *   2  the server receives raw bytes: len u16 LE | bytes
 *   3  client c receives raw bytes as the server's reply of its round:
 *      len u16 LE | bytes (its answer, if any, goes to the server)
 *   4  a whole honest round: every live client steps, then advance
 *   5  client c steps honestly but its message is altered before the
 *      server sees it: at u16 LE (mod length) xor u8
 * When the program used no raw or altered message and the session
 * completed, the sum must equal the plain sum of the survivors' inputs.
 * Seeds: fuzz/corpus/secagg/ (honest sessions with and without dropouts,
 * altered messages of each round).
 */
#include "fuzz_common.h"

#include <privguide/rng.h>
#include <privguide/secagg.h>

#define N 4
#define D 4

typedef struct {
    pvg_secagg_client *c;
    pvg_rng *rng;
    int round; /* next round the client takes part in; -1 gone */
} fclient;

typedef struct {
    const uint8_t *p;
    size_t n;
} cursor;

static int take(cursor *c, size_t k, const uint8_t **out)
{
    if (c->n < k) return 0;
    *out = c->p;
    c->p += k;
    c->n -= k;
    return 1;
}

static int take_u16(cursor *c, unsigned *v)
{
    const uint8_t *b;
    if (!take(c, 2, &b)) return 0;
    *v = (unsigned)b[0] | (unsigned)b[1] << 8;
    return 1;
}

/* The session's mode: 32-bit words with ChaCha20 masks (wire version 3), or in
 * fuzz_secagg_lanes (FUZZ_SECAGG_LANES) the mode its first byte picks. */
static unsigned lane_bits = 32, lane_rounds = 0;

/* client id's input, words of lane_bits (16 or 32) */
static void input_of(uint32_t id, uint32_t *x)
{
    for (uint32_t j = 0; j < D; j++) {
        uint32_t v = 1000u * (id + 1) + j;
        if (lane_bits == 16)
            ((uint16_t *)(void *)x)[j] = (uint16_t)v;
        else
            x[j] = v;
    }
}

/* Client f consumes `in` (the server's reply) in its next round; *out is
 * its message (new) or NULL. */
static pvg_status client_step(fclient *f, uint32_t id, const uint8_t *in, size_t in_len,
                              uint8_t **out, size_t *out_len, pvg_error *err)
{
    uint32_t x[D];
    *out = NULL;
    switch (f->round) {
    case 0:
        return pvg_secagg_client_advertise(f->c, out, out_len, err);
    case 1:
        return pvg_secagg_client_share_keys(f->c, in, in_len, out, out_len, err);
    case 2:
        input_of(id, x);
        return pvg_secagg_client_masked_input(f->c, in, in_len, x, out, out_len, err);
    case 3:
        return pvg_secagg_client_unmask(f->c, in, in_len, out, out_len, err);
    default:
        return pvg_error_set(err, PVG_ERR_STATE, "client done");
    }
}

/* One step of client id; raw (not NULL): the reply it receives instead of
 * the server's; alter: change its message before delivery. */
static void step(pvg_secagg_server *s, fclient *cl, uint32_t id, const uint8_t *raw, size_t raw_len,
                 int alter, unsigned at, uint8_t xr)
{
    fclient *f = &cl[id];
    if (f->round < 0 || f->round > 3) return;
    pvg_error err;
    pvg_error_clear(&err);
    uint8_t *in = NULL, *out = NULL;
    size_t in_len = 0, out_len = 0;
    pvg_status st = PVG_OK;
    if (raw) {
        in = malloc(raw_len ? raw_len : 1);
        if (!in) abort();
        memcpy(in, raw, raw_len);
        in_len = raw_len;
    } else if (f->round > 0) {
        st = pvg_secagg_server_message_for(s, id, &in, &in_len, &err);
        fuzz_check_error(st, &err);
        if (st != PVG_OK) return;
    }
    st = client_step(f, id, in, in_len, &out, &out_len, &err);
    fuzz_check_error(st, &err);
    free(in);
    if (st != PVG_OK) {
        if (st == PVG_ERR_ABORTED) f->round = -1;
        free(out);
        return;
    }
    f->round++;
    if (alter && out_len) out[at % out_len] ^= xr;
    st = pvg_secagg_server_receive(s, out, out_len, &err);
    fuzz_check_error(st, &err);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (pvg_init() != PVG_OK) abort();
        ready = 1;
    }
#ifdef FUZZ_SECAGG_LANES
    static const unsigned modes[4][2] = {{16, 0}, {16, 8}, {16, 12}, {32, 8}};
    if (size < 1) return 0;
    lane_bits = modes[data[0] % 4][0];
    lane_rounds = modes[data[0] % 4][1];
    data++;
    size--;
#endif
    pvg_secagg_params p = {
        .n = N, .k = N - 1, .t = 2, .d = D, .bits = lane_bits, .mask_rounds = lane_rounds};
    memcpy(p.session, "fuzz-session-id!", 16);
    pvg_error err;
    pvg_secagg_server *s = NULL;
    if (pvg_secagg_server_new(&p, &s, &err) != PVG_OK) abort();
    fclient cl[N];
    memset(cl, 0, sizeof cl);
    for (uint32_t i = 0; i < N; i++) {
        cl[i].rng = pvg_rng_new_INSECURE_deterministic_for_tests(100 + i);
        if (!cl[i].rng || pvg_secagg_client_new_ex(&p, i, cl[i].rng, 1, &cl[i].c, &err) != PVG_OK)
            abort();
    }
    cursor cur = {data, size};
    int tampered = 0, ops = 0;
    const uint8_t *b;
    while (take(&cur, 1, &b) && ops++ < 64) {
        unsigned op = b[0] % 6, id = (b[0] / 6) % N, len = 0, at = 0;
        const uint8_t *raw = NULL, *xr = NULL;
        pvg_status st;
        switch (op) {
        case 0:
            step(s, cl, id, NULL, 0, 0, 0, 0);
            break;
        case 1:
            st = pvg_secagg_server_advance(s, &err);
            fuzz_check_error(st, &err);
            break;
        case 2:
            if (!take_u16(&cur, &len) || !take(&cur, len, &raw)) goto end;
            tampered = 1;
            st = pvg_secagg_server_receive(s, raw, len, &err);
            fuzz_check_error(st, &err);
            break;
        case 3:
            if (!take_u16(&cur, &len) || !take(&cur, len, &raw)) goto end;
            tampered = 1;
            step(s, cl, id, raw, len, 0, 0, 0);
            break;
        case 4:
            for (uint32_t i = 0; i < N; i++)
                step(s, cl, i, NULL, 0, 0, 0, 0);
            st = pvg_secagg_server_advance(s, &err);
            fuzz_check_error(st, &err);
            break;
        default:
            if (!take_u16(&cur, &at) || !take(&cur, 1, &xr)) goto end;
            tampered = 1;
            step(s, cl, id, NULL, 0, 1, at, xr[0]);
            break;
        }
    }
end:
    if (pvg_secagg_server_round(s) == 4) {
        uint32_t sum[D], ids[N], x[D], want[D] = {0};
        if (pvg_secagg_server_result(s, sum, &err) != PVG_OK) abort();
        size_t ns = pvg_secagg_server_survivors(s, ids);
        if (ns > N) abort();
        for (size_t i = 0; i < ns; i++) {
            input_of(ids[i], x);
            for (int j = 0; j < D; j++)
                want[j] += lane_bits == 16 ? ((const uint16_t *)(const void *)x)[j] : x[j];
        }
        int wrong = 0;
        for (int j = 0; j < D; j++)
            wrong |= lane_bits == 16 ? ((const uint16_t *)(const void *)sum)[j] != (uint16_t)want[j]
                                     : sum[j] != want[j];
        if (!tampered && wrong) {
            fprintf(stderr, "honest session: wrong sum\n");
            abort();
        }
    }
    for (uint32_t i = 0; i < N; i++) {
        pvg_secagg_client_free(cl[i].c);
        pvg_rng_free(cl[i].rng);
    }
    pvg_secagg_server_free(s);
    return 0;
}
