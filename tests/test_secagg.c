/*
 * test_secagg.c - secure aggregation: exact sums under dropouts in every
 * round (n from 3 to 1,000), abort below threshold, uniformity of a masked
 * input (chi-square), t-1 colluding share holders learn nothing, the KDF
 * known answers, the fast mask kernel against its reference, the graph,
 * quantisation, and refusal of malformed, replayed, out-of-round, unknown
 * and forged wire messages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/secagg.h>
#include <privguide/shamir.h>

#include "crypto/secagg_internal.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static int sanitized(void)
{
    const char *s = getenv("PVG_SANITIZED");
    return s && *s == '1';
}

static void hex(const char *h, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

/* ---- known answers ---- */

static void test_kdf_kat(void **state)
{
    (void)state;
    assert_int_equal(pvg_init(), PVG_OK);
    /* RFC 7748 section 6.1 */
    uint8_t a_sk[32], b_pk[32], want[32], shared[32];
    hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", a_sk, 32);
    hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", b_pk, 32);
    hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", want, 32);
    assert_int_equal(crypto_scalarmult(shared, a_sk, b_pk), 0);
    assert_memory_equal(shared, want, 32);
    /* pvg_secagg_kdf, computed independently with Python's hashlib.blake2b:
     * master = blake2b("PVSA-kdf-v3" || shared || session || lo || hi || mode, 32) with mode =
     * version u8 | bits u8 | rounds u8 | 0 u8 | n | k | t | d (LE32),
     * out = blake2b(key=master, salt=purpose LE64 || 0^8, person="PVGSECAG" || 0^8) */
    pvg_secagg_params p = {.n = 10, .k = 9, .t = 6, .d = 100, .bits = 32};
    uint8_t out[32];
    for (int i = 0; i < 16; i++)
        p.session[i] = (uint8_t)i;
    assert_int_equal(pvg_secagg_wire_version(&p), 3);
    pvg_secagg_kdf(&p, shared, 3, 7, 1, out);
    hex("7e58ba50ba9ed0888cc5e4ac3ecff1eefd8b1703eb989bfb8b092531a42ec6ff", want, 32);
    assert_memory_equal(out, want, 32);
    pvg_secagg_kdf(&p, shared, 7, 3, 2, out);
    hex("fa0b0ce5d4c44d76a7959b73b4036d035645a0fac2c85d527a51d67756353d72", want, 32);
    assert_memory_equal(out, want, 32);
    /* symmetric in the ids */
    uint8_t out2[32];
    pvg_secagg_kdf(&p, shared, 7, 3, 1, out2);
    pvg_secagg_kdf(&p, shared, 3, 7, 1, out);
    assert_memory_equal(out, out2, 32);
    /* the mode is bound: another lane, PRG or graph derives an unrelated key */
    pvg_secagg_params q = p;
    q.bits = 16;
    pvg_secagg_kdf(&q, shared, 3, 7, 1, out2);
    hex("cedd9d4f98c9782f101fa36cd95f157e612f2f227150909da8fa01b3af0df681", want, 32);
    assert_memory_equal(out2, want, 32);
    q = p;
    q.mask_rounds = 12;
    pvg_secagg_kdf(&q, shared, 3, 7, 1, out2);
    hex("6345395fc4f00442f406d8738dcbb15631c7b65868fc7a1be9a08dfe5c2338ca", want, 32);
    assert_memory_equal(out2, want, 32);
    q = p;
    q.mask_rounds = 20; /* 0 and 20 are the same PRG */
    pvg_secagg_kdf(&q, shared, 3, 7, 1, out2);
    assert_memory_equal(out, out2, 32);
    const unsigned tweak[][4] = {{11, 9, 6, 100}, {10, 8, 6, 100}, {10, 9, 5, 100}, {10, 9, 6, 99}};
    for (size_t i = 0; i < 4; i++) {
        q = p;
        q.n = tweak[i][0];
        q.k = tweak[i][1];
        q.t = tweak[i][2];
        q.d = tweak[i][3];
        pvg_secagg_kdf(&q, shared, 3, 7, 1, out2);
        assert_memory_not_equal(out, out2, 32);
    }
}

static void test_mask_kernel(void **state)
{
    (void)state;
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(i * 7 + 1);
    size_t lens[] = {1, 15, 16, 17, 1000, 2048, 2049, 5000};
    size_t offs[] = {0, 16, 1024, 4096};
    for (int b = 0; b < 2; b++) {
        unsigned bits = b ? 64 : 32;
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
            for (size_t oi = 0; oi < sizeof offs / sizeof *offs; oi++) {
                size_t len = lens[li], off = bits == 64 ? offs[oi] / 2 : offs[oi];
                uint64_t *a = malloc(len * 8), *r = malloc(len * 8);
                for (size_t i = 0; i < len * 2; i++)
                    ((uint32_t *)a)[i] = (uint32_t)(i * 2654435761u);
                memcpy(r, a, len * 8);
                int sign = (li & 1) ? -1 : 1;
                pvg_secagg_mask_add(a, off, len, bits, seed, sign);
                pvg_secagg_mask_add_ref(r, off, len, bits, seed, sign);
                assert_memory_equal(a, r, len * bits / 8);
                /* mask_set writes the same keystream (offset 0) */
                if (off == 0) {
                    uint64_t *z = calloc(len, 8), *zs = malloc(len * 8);
                    pvg_secagg_mask_add_ref(z, 0, len, bits, seed, 1);
                    pvg_secagg_mask_set(zs, len, bits, seed);
                    assert_memory_equal(z, zs, len * bits / 8);
                    free(z);
                    free(zs);
                }
                /* adding and removing cancels */
                pvg_secagg_mask_add(a, off, len, bits, seed, -sign);
                for (size_t i = 0; i < len * bits / 32; i++)
                    assert_int_equal(((uint32_t *)a)[i], (uint32_t)(i * 2654435761u));
                free(a);
                free(r);
            }
    }
    /* known answer: the first keystream words are those of libsodium's
     * ChaCha20-IETF with nonce "PVSA-mask\0\0\0" */
    uint8_t ks[64];
    static const uint8_t nonce[12] = {'P', 'V', 'S', 'A', '-', 'm', 'a', 's', 'k', 0, 0, 0};
    crypto_stream_chacha20_ietf(ks, 64, nonce, seed);
    uint32_t v[16] = {0};
    pvg_secagg_mask_add(v, 0, 16, 32, seed, 1);
    for (int i = 0; i < 16; i++)
        assert_int_equal(v[i], (uint32_t)ks[4 * i] | (uint32_t)ks[4 * i + 1] << 8 |
                                   (uint32_t)ks[4 * i + 2] << 16 | (uint32_t)ks[4 * i + 3] << 24);
}

static void test_graph(void **state)
{
    (void)state;
    pvg_secagg_params p = {.n = 101, .k = 10, .t = 6, .d = 4, .bits = 32};
    for (int i = 0; i < 16; i++)
        p.session[i] = (uint8_t)(i + 9);
    uint32_t nb[10], nb2[10];
    int deg[101] = {0};
    for (uint32_t u = 0; u < p.n; u++) {
        assert_int_equal(pvg_secagg_neighbours(&p, u, nb), 10);
        for (int i = 0; i < 10; i++) {
            assert_true(nb[i] != u && nb[i] < p.n);
            if (i) assert_true(nb[i] > nb[i - 1]);
            /* symmetric */
            assert_int_equal(pvg_secagg_neighbours(&p, nb[i], nb2), 10);
            int found = 0;
            for (int j = 0; j < 10; j++)
                found |= nb2[j] == u;
            assert_true(found);
            deg[nb[i]]++;
        }
    }
    for (uint32_t u = 0; u < p.n; u++)
        assert_int_equal(deg[u], 10);
    /* another session gives another graph */
    uint32_t a[10], b[10];
    assert_int_equal(pvg_secagg_neighbours(&p, 0, a), 10);
    p.session[0] ^= 1;
    assert_int_equal(pvg_secagg_neighbours(&p, 0, b), 10);
    assert_true(memcmp(a, b, sizeof a) != 0);
    /* the deterministic generator is refused for real clients */
    pvg_error err;
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(1), *sec = pvg_rng_new_secure();
    pvg_secagg_client *cl = NULL;
    assert_int_equal(pvg_secagg_client_new(&p, 0, det, &cl, &err), PVG_ERR_POLICY);
    assert_null(cl);
    assert_int_equal(pvg_secagg_client_new(&p, 0, sec, &cl, &err), PVG_OK);
    pvg_secagg_client_free(cl);
    pvg_rng_free(det);
    pvg_rng_free(sec);
    /* parameter checks */
    p.k = 11;
    assert_int_equal(pvg_secagg_params_check(&p, &err), PVG_ERR_INVALID);
    p.k = 10;
    p.t = 12;
    assert_int_equal(pvg_secagg_params_check(&p, &err), PVG_ERR_INVALID);
    p.t = 6;
    p.bits = 24;
    assert_int_equal(pvg_secagg_params_check(&p, &err), PVG_ERR_INVALID);
    p.bits = 16;
    assert_int_equal(pvg_secagg_params_check(&p, &err), PVG_OK);
    p.mask_rounds = 10;
    assert_int_equal(pvg_secagg_params_check(&p, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "rounds"));
    for (unsigned r = 0; r <= 20; r += 4) { /* 0 (= 20), 8, 12, 20 */
        p.mask_rounds = r;
        if (r == 4 || r == 16) continue;
        assert_int_equal(pvg_secagg_params_check(&p, &err), PVG_OK);
        p.bits = 32;
        assert_int_equal(pvg_secagg_wire_version(&p), r == 0 || r == 20
                                                          ? PVG_SECAGG_WIRE_VERSION
                                                          : PVG_SECAGG_WIRE_VERSION_LANES);
        p.bits = 16;
        assert_int_equal(pvg_secagg_wire_version(&p), PVG_SECAGG_WIRE_VERSION_LANES);
    }
}

/* ---- simulations: exact sums ---- */

static void run_sim_mode(uint32_t n, uint32_t k, uint32_t t, uint32_t d, unsigned bits,
                         unsigned rounds, double drop, uint64_t seed, int want_every_round)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
    pvg_secagg_sim_options o = {
        .params = {.n = n, .k = k, .t = t, .d = d, .bits = bits, .mask_rounds = rounds},
        .dropout = drop,
        .rng = rng,
        .server_threads = 2,
        .allow_insecure_rng = 1};
    pvg_secagg_sim_result r;
    pvg_error err;
    pvg_status st = pvg_secagg_simulate(&o, &r, &err);
    if (st != PVG_OK) fail_msg("n=%u k=%u t=%u drop=%.2f: %s", n, k, t, drop, err.text);
    assert_true(r.exact);
    size_t dropped = 0;
    for (int i = 0; i < 4; i++)
        dropped += r.dropped_in_round[i];
    /* planned dropouts, plus clients left with too few live neighbours */
    assert_true(dropped >= (size_t)(drop * n + 0.5));
    if (want_every_round)
        for (int i = 0; i < 4; i++)
            assert_true(r.dropped_in_round[i] > 0);
    /* survivors: everyone except those dropping before round 3 */
    assert_int_equal(r.n_survivors,
                     n - r.dropped_in_round[0] - r.dropped_in_round[1] - r.dropped_in_round[2]);
    pvg_secagg_sim_result_clear(&r);
    pvg_rng_free(rng);
}

static void run_sim(uint32_t n, uint32_t k, uint32_t t, uint32_t d, unsigned bits, double drop,
                    uint64_t seed, int want_every_round)
{
    run_sim_mode(n, k, t, d, bits, 0, drop, seed, want_every_round);
}

/* 16-bit lanes and reduced-round masks: exact sums (mod 2^bits) of the
 * survivors, with dropouts in every round, for every width and PRG */
static void test_exact_lanes_and_prgs(void **state)
{
    (void)state;
    static const unsigned rounds[] = {8, 12, 20};
    for (unsigned bits = 16; bits <= 64; bits *= 2)
        for (int r = 0; r < 3; r++) {
            uint64_t seed = 900 + bits + (uint64_t)r;
            run_sim_mode(3, 2, 2, 5, bits, rounds[r], 0.0, seed, 0);
            run_sim_mode(10, 9, 5, 33, bits, rounds[r], 0.3, seed + 1000, 0);
            run_sim_mode(60, 14, 8, 77, bits, rounds[r], 0.1, seed + 2000, 1);
        }
}

/* At the 16-bit lane's edge: every client sends 0xFFFF (and inputs above
 * 2^16 are taken mod 2^16), the sum wraps and is still exact mod 2^16. */
static void test_lane16_edge(void **state)
{
    (void)state;
    enum { N = 9, D = 70 };
    uint32_t in[N * D];
    for (size_t i = 0; i < N * D; i++)
        in[i] = i % 3 == 0 ? 0xFFFFu : i % 3 == 1 ? 0x1FFFFu : 0x8000u;
    for (unsigned r = 8; r <= 20; r += r == 8 ? 4 : 8) {
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(4242 + r);
        pvg_secagg_sim_options o = {
            .params = {.n = N, .k = N - 1, .t = 5, .d = D, .bits = 16, .mask_rounds = r},
            .dropout = 0.2,
            .inputs = in,
            .rng = rng,
            .server_threads = 2,
            .allow_insecure_rng = 1};
        pvg_secagg_sim_result res;
        pvg_error err;
        assert_int_equal(pvg_secagg_simulate(&o, &res, &err), PVG_OK);
        assert_true(res.exact);
        for (size_t j = 0; j < D; j++) {
            uint64_t want = 0;
            for (size_t s2 = 0; s2 < res.n_survivors; s2++)
                want += in[(size_t)res.survivors[s2] * D + j] & 0xFFFFu;
            assert_int_equal(res.sum[j], want & 0xFFFFu);
            assert_true(res.sum[j] <= 0xFFFFu);
        }
        pvg_secagg_sim_result_clear(&res);
        pvg_rng_free(rng);
    }
}

static void test_exact_small(void **state)
{
    (void)state;
    run_sim(3, 2, 2, 5, 32, 0.0, 1, 0);
    run_sim(3, 2, 2, 5, 64, 0.0, 2, 0);
    run_sim(3, 2, 2, 5, 32, 0.34, 3, 0); /* one client drops */
    run_sim(10, 9, 5, 33, 32, 0.0, 4, 0);
    run_sim(10, 9, 5, 33, 32, 0.1, 5, 0);
    run_sim(10, 9, 5, 33, 64, 0.3, 6, 0);
    run_sim(10, 4, 3, 17, 32, 0.3, 7, 0);
}

static void test_exact_dropouts_every_round(void **state)
{
    (void)state;
    uint32_t n = sanitized() ? 60 : 120, nc = sanitized() ? 40 : 60;
    for (int rep = 0; rep < 2; rep++) {
        run_sim(nc, nc - 1, nc / 2 + 1, 40, 32, 0.0, 10 + rep, 0); /* original protocol */
        run_sim(nc, nc - 1, nc / 2 + 1, 40, 32, 0.1, 20 + rep, 1);
        run_sim(nc, nc - 1, nc / 2 + 1, 40, 64, 0.3, 30 + rep, 1);
        run_sim(n, 14, 8, 40, 32, 0.0, 40 + rep, 0); /* SecAgg+ */
        run_sim(n, 14, 8, 40, 32, 0.1, 50 + rep, 1);
        run_sim(n, 14, 6, 40, 64, 0.3, 60 + rep, 1);
    }
}

static void test_exact_thousand(void **state)
{
    (void)state;
    /* n = 1,000, k = 12 (about log2 n), small d so it stays fast */
    uint32_t n = sanitized() ? 400 : 1000;
    run_sim(n, 12, 7, 8, 32, 0.0, 70, 0);
    run_sim(n, 12, 7, 8, 32, 0.1, 71, 1);
    run_sim(n, 12, 5, 8, 32, 0.3, 72, 1);
}

/* The threaded unmasking (slices aligned to ChaCha20 blocks, an odd length
 * so the last slice is short) gives the exact sum, for 1 to 5 threads. */
static void test_server_threads(void **state)
{
    (void)state;
    for (unsigned th = 1; th <= 5; th++)
        for (unsigned bits = 32; bits <= 64; bits += 32) {
            pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(300 + th + bits);
            pvg_secagg_sim_options o = {
                .params = {.n = 12, .k = 11, .t = 7, .d = 1037, .bits = bits},
                .dropout = 0.34,
                .rng = rng,
                .server_threads = th,
                .allow_insecure_rng = 1};
            pvg_secagg_sim_result r;
            pvg_error err;
            if (pvg_secagg_simulate(&o, &r, &err) != PVG_OK) fail_msg("%s", err.text);
            assert_true(r.exact);
            pvg_secagg_sim_result_clear(&r);
            pvg_rng_free(rng);
        }
}

static void test_given_inputs(void **state)
{
    (void)state;
    enum { N = 6, D = 3 };
    uint32_t in[N * D];
    for (int i = 0; i < N * D; i++)
        in[i] = (uint32_t)(i * 1000 + 1);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    pvg_secagg_sim_options o = {.params = {.n = N, .k = N - 1, .t = 3, .d = D, .bits = 32},
                                .inputs = in,
                                .rng = rng,
                                .server_threads = 1,
                                .allow_insecure_rng = 1};
    pvg_secagg_sim_result r;
    assert_int_equal(pvg_secagg_simulate(&o, &r, NULL), PVG_OK);
    assert_true(r.exact);
    assert_int_equal(r.n_survivors, N);
    for (int j = 0; j < D; j++) {
        uint64_t s = 0;
        for (int i = 0; i < N; i++)
            s += in[i * D + j];
        assert_int_equal(r.sum[j], s);
    }
    pvg_secagg_sim_result_clear(&r);
    pvg_rng_free(rng);
}

static void test_abort_below_threshold(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(99);
    pvg_secagg_sim_options o = {.params = {.n = 10, .k = 9, .t = 9, .d = 4, .bits = 32},
                                .dropout = 0.5,
                                .rng = rng,
                                .server_threads = 1,
                                .allow_insecure_rng = 1};
    pvg_secagg_sim_result r;
    pvg_error err;
    assert_int_equal(pvg_secagg_simulate(&o, &r, &err), PVG_ERR_ABORTED);
    assert_null(r.sum);
    assert_null(r.survivors);
    pvg_rng_free(rng);
}

/* ---- a hand-driven session, to reach into the wire ---- */

typedef struct {
    pvg_secagg_params p;
    pvg_rng *rng;
    pvg_secagg_server *s;
    pvg_secagg_client **c;
    uint8_t **msg; /* last client message per client */
    size_t *len;
    uint32_t *x; /* inputs n x d */
} session;

static void sess_open_mode(session *S, uint32_t n, uint32_t k, uint32_t t, uint32_t d,
                           unsigned bits, unsigned rounds, uint64_t seed)
{
    memset(S, 0, sizeof *S);
    S->p = (pvg_secagg_params){.n = n, .k = k, .t = t, .d = d, .bits = bits, .mask_rounds = rounds};
    S->rng = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
    pvg_rng_bytes(S->rng, S->p.session, 16);
    assert_int_equal(pvg_secagg_server_new(&S->p, &S->s, NULL), PVG_OK);
    S->c = calloc(n, sizeof *S->c);
    S->msg = calloc(n, sizeof *S->msg);
    S->len = calloc(n, sizeof *S->len);
    S->x = calloc((size_t)n * d, sizeof *S->x);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(pvg_secagg_client_new_ex(&S->p, i, S->rng, 1, &S->c[i], NULL), PVG_OK);
        for (uint32_t j = 0; j < d; j++)
            S->x[(size_t)i * d + j] = i * 100 + j;
    }
}

static void sess_open(session *S, uint32_t n, uint32_t k, uint32_t t, uint32_t d, uint64_t seed)
{
    sess_open_mode(S, n, k, t, d, 32, 0, seed);
}

static void sess_close(session *S)
{
    for (uint32_t i = 0; i < S->p.n; i++) {
        pvg_secagg_client_free(S->c[i]);
        free(S->msg[i]);
    }
    free(S->c);
    free(S->msg);
    free(S->len);
    free(S->x);
    pvg_secagg_server_free(S->s);
    pvg_rng_free(S->rng);
}

/* Runs round r for the clients with live[i] set: gets the server's reply
 * (r > 0), runs the client, keeps its message in S->msg[i]; delivers it
 * when deliver is set. */
static void sess_round(session *S, int r, const int *live, int deliver)
{
    for (uint32_t i = 0; i < S->p.n; i++) {
        if (!live[i]) continue;
        uint8_t *in = NULL;
        size_t in_len = 0;
        pvg_error err;
        if (r > 0)
            assert_int_equal(pvg_secagg_server_message_for(S->s, i, &in, &in_len, &err), PVG_OK);
        free(S->msg[i]);
        S->msg[i] = NULL;
        pvg_status st;
        switch (r) {
        case 0:
            st = pvg_secagg_client_advertise(S->c[i], &S->msg[i], &S->len[i], &err);
            break;
        case 1:
            st = pvg_secagg_client_share_keys(S->c[i], in, in_len, &S->msg[i], &S->len[i], &err);
            break;
        case 2:
            if (S->p.bits == 16) { /* the inputs mod 2^16 */
                uint16_t *x16 = malloc(sizeof *x16 * S->p.d);
                assert_non_null(x16);
                for (uint32_t j = 0; j < S->p.d; j++)
                    x16[j] = (uint16_t)S->x[(size_t)i * S->p.d + j];
                st = pvg_secagg_client_masked_input(S->c[i], in, in_len, x16, &S->msg[i],
                                                    &S->len[i], &err);
                free(x16);
            } else {
                st = pvg_secagg_client_masked_input(S->c[i], in, in_len, S->x + (size_t)i * S->p.d,
                                                    &S->msg[i], &S->len[i], &err);
            }
            break;
        default:
            st = pvg_secagg_client_unmask(S->c[i], in, in_len, &S->msg[i], &S->len[i], &err);
            break;
        }
        free(in);
        if (st != PVG_OK) fail_msg("client %u round %d: %s", i, r, err.text);
        if (deliver) {
            st = pvg_secagg_server_receive(S->s, S->msg[i], S->len[i], &err);
            if (st != PVG_OK) fail_msg("server, client %u round %d: %s", i, r, err.text);
        }
    }
}

/* The masked input made in place (sa_client_masked_msg, the input written
 * into its payload, sa_client_masked_inplace: the federated client's path)
 * is the same message, byte for byte, as pvg_secagg_client_masked_input's,
 * for 32- and 16-bit words, with a neighbour dropped after SHARES; a
 * FORWARD that fails its checks leaves the payload (the input) as it was. */
static void test_masked_inplace_same_bytes(void **state)
{
    (void)state;
    for (unsigned bits = 16; bits <= 32; bits += 16) {
        session A, B;
        sess_open_mode(&A, 8, 6, 4, 1000, bits, 8, 77);
        sess_open_mode(&B, 8, 6, 4, 1000, bits, 8, 77);
        int live[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        sess_round(&A, 0, live, 1);
        sess_round(&B, 0, live, 1);
        assert_int_equal(pvg_secagg_server_advance(A.s, NULL), PVG_OK);
        assert_int_equal(pvg_secagg_server_advance(B.s, NULL), PVG_OK);
        sess_round(&A, 1, live, 1);
        sess_round(&B, 1, live, 1);
        live[3] = 0; /* shared its keys, sends no masked input */
        assert_int_equal(pvg_secagg_server_advance(A.s, NULL), PVG_OK);
        assert_int_equal(pvg_secagg_server_advance(B.s, NULL), PVG_OK);
        sess_round(&A, 2, live, 0);
        size_t w = bits / 8;
        for (uint32_t i = 0; i < 8; i++) {
            if (!live[i]) continue;
            uint8_t *in = NULL;
            size_t in_len = 0, mlen = 0;
            pvg_error err;
            assert_int_equal(pvg_secagg_server_message_for(B.s, i, &in, &in_len, &err), PVG_OK);
            /* odd clients with their masks made ahead (the federated client's premask,
               which then takes out the masks of neighbours missing from FORWARD, as
               client 3): the same bytes still */
            if (i % 2) assert_int_equal(pvg_secagg_client_premask(B.c[i], &err), PVG_OK);
            uint8_t *m = sa_client_masked_msg(B.c[i], &mlen);
            assert_non_null(m);
            assert_int_equal(mlen, SA_HDR + (size_t)B.p.d * w);
            for (uint32_t j = 0; j < B.p.d; j++) {
                uint32_t v = B.x[(size_t)i * B.p.d + j];
                if (bits == 16)
                    memcpy(m + SA_HDR + 2 * (size_t)j, &(uint16_t){(uint16_t)v}, 2);
                else
                    memcpy(m + SA_HDR + 4 * (size_t)j, &v, 4);
            }
            if (i == 0) { /* a FORWARD with a flipped byte: refused, the input untouched */
                uint8_t *bad = malloc(in_len);
                assert_non_null(bad);
                memcpy(bad, in, in_len);
                bad[in_len - 1] ^= 1;
                uint8_t *copy = malloc(mlen);
                assert_non_null(copy);
                memcpy(copy, m, mlen);
                assert_int_not_equal(sa_client_masked_inplace(B.c[i], bad, in_len, m, &err),
                                     PVG_OK);
                assert_memory_equal(m, copy, mlen);
                free(copy);
                free(bad);
            }
            pvg_status st = sa_client_masked_inplace(B.c[i], in, in_len, m, &err);
            if (st != PVG_OK) fail_msg("client %u: %s", i, err.text);
            free(in);
            assert_int_equal(A.len[i], mlen);
            assert_memory_equal(A.msg[i], m, mlen);
            sa_msg_free_locked(m, mlen);
        }
        sess_close(&A);
        sess_close(&B);
    }
}

/* The server's view of one client's masked input is uniform: over many
 * sessions with the same fixed input, the top 4 bits of each masked word
 * are chi-square-tested against uniform (15 dof, 37.70 at p = 0.001). A
 * control shows the test has power: the unmasked input fails it. */
static void test_masked_input_uniform(void **state)
{
    (void)state;
    int runs = sanitized() ? 300 : 800;
    enum { D = 16 };
    long bins[16] = {0};
    for (int r = 0; r < runs; r++) {
        session S;
        sess_open(&S, 3, 2, 2, D, 1000 + (uint64_t)r);
        int live[3] = {1, 1, 1};
        for (int rd = 0; rd < 3; rd++) {
            sess_round(&S, rd, live, 1);
            if (rd < 2) assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
        }
        /* client 0's masked words, as the server sees them */
        const uint8_t *pl = S.msg[0] + 36;
        for (int j = 0; j < D; j++) {
            uint32_t v = (uint32_t)pl[4 * j] | (uint32_t)pl[4 * j + 1] << 8 |
                         (uint32_t)pl[4 * j + 2] << 16 | (uint32_t)pl[4 * j + 3] << 24;
            bins[v >> 28]++;
        }
        sess_close(&S);
    }
    double e = runs * D / 16.0, chi = 0;
    for (int b = 0; b < 16; b++)
        chi += (bins[b] - e) * (bins[b] - e) / e;
    assert_true(chi < 37.70);
    /* control: the plain inputs (0..7) all fall in bin 0 */
    double chi_plain = (runs * D - e) * (runs * D - e) / e + 15 * e;
    assert_true(chi_plain > 37.70);
}

/* t-1 colluding neighbours pool their shares of a survivor's self-mask
 * seed and of its mask key: the result is not the secret (checked against
 * the commitment / public key it must match), while t shares recover it. */
static void test_t_minus_1_colluders(void **state)
{
    (void)state;
    session S;
    sess_open(&S, 8, 7, 4, 4, 77);
    int live[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    sess_round(&S, 0, live, 1);
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    sess_round(&S, 1, live, 1);
    /* client 0's boxes to clients 1..7 are encrypted: the server holds
     * ciphertexts only. Colluders 1..3 (t-1 = 3) decrypt their own boxes
     * by running their round-2 logic; we read the shares they hold through
     * the UNMASK messages they would send if client 0 had dropped. */
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    live[0] = 0; /* client 0 drops before its masked input */
    sess_round(&S, 2, live, 1);
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    sess_round(&S, 3, live, 0);
    /* collect the mask-key shares of client 0 from holders 1..7 */
    uint64_t xs[7], vals[7 * 8];
    for (uint32_t h = 1; h < 8; h++) {
        const uint8_t *pl = S.msg[h] + 36;
        uint32_t cnt = (uint32_t)pl[0] | (uint32_t)pl[1] << 8;
        int found = 0;
        for (uint32_t e = 0; e < cnt; e++) {
            const uint8_t *en = pl + 4 + e * 69;
            uint32_t owner = (uint32_t)en[0] | (uint32_t)en[1] << 8;
            if (owner != 0) continue;
            assert_int_equal(en[4], 1); /* mask-key share, never the self-mask share */
            xs[h - 1] = h + 1;
            for (int j = 0; j < 8; j++) {
                uint64_t v = 0;
                for (int b = 7; b >= 0; b--)
                    v = v << 8 | en[5 + 8 * j + b];
                vals[(h - 1) * 8 + j] = v;
            }
            found = 1;
        }
        assert_true(found);
    }
    /* client 0's true mask public key is in its ADVERTISE message (kept by
     * nobody now); recompute it via the full t shares */
    uint8_t key_t[32], key_t1[32], pk_t[32], pk_t1[32];
    assert_int_equal(pvg_shamir_combine_key(xs, vals, 4, key_t, NULL), PVG_OK);
    crypto_scalarmult_base(pk_t, key_t);
    /* any t shares agree */
    uint8_t key_other[32];
    assert_int_equal(pvg_shamir_combine_key(xs + 3, vals + 3 * 8, 4, key_other, NULL), PVG_OK);
    assert_memory_equal(key_t, key_other, 32);
    /* t-1 shares (every window of 3) do not give the key */
    for (int start = 0; start + 3 <= 7; start++) {
        pvg_status st = pvg_shamir_combine_key(xs + start, vals + start * 8, 3, key_t1, NULL);
        if (st == PVG_OK) {
            crypto_scalarmult_base(pk_t1, key_t1);
            assert_true(memcmp(pk_t, pk_t1, 32) != 0);
        }
    }
    /* and the server finishes the round exactly with all of them */
    for (uint32_t h = 1; h < 8; h++)
        assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[h], S.len[h], NULL), PVG_OK);
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    uint32_t sum[4];
    assert_int_equal(pvg_secagg_server_result(S.s, sum, NULL), PVG_OK);
    for (int j = 0; j < 4; j++) {
        uint32_t want = 0;
        for (uint32_t i = 1; i < 8; i++)
            want += S.x[i * 4 + j];
        assert_int_equal(sum[j], want);
    }
    sess_close(&S);
}

/* A hand-driven session of 16-bit words with ChaCha8 masks: client 0
 * drops before its masked input (the server rebuilds its mask key from the
 * holders' shares and removes its pairwise masks), client 5 after it; the
 * sum is exactly the survivors' sum mod 2^16 at the lane's edge (inputs
 * near 2^16). Then parties of another mode (a 32-bit or ChaCha20 client, a
 * ChaCha12 one with the same session id) are refused with
 * PVG_ERR_UNSUPPORTED, before anything is added: an old client (version
 * 1) never gets into a version 2 sum. */
static void test_lane16_session_and_modes(void **state)
{
    (void)state;
    session S;
    sess_open_mode(&S, 8, 6, 4, 37, 16, 8, 515);
    for (size_t i = 0; i < (size_t)8 * 37; i++)
        S.x[i] = 0xFFF0u + (uint32_t)(i % 16); /* 0xFFF0..0xFFFF */
    int live[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    pvg_error err;
    sess_round(&S, 0, live, 1);
    /* other modes, same session id and shape: refused, the server unchanged */
    static const unsigned modes[][2] = {{32, 0}, {32, 8}, {16, 12}, {16, 20}, {64, 8}};
    for (size_t mi = 0; mi < sizeof modes / sizeof *modes; mi++) {
        pvg_secagg_params q = S.p;
        q.bits = modes[mi][0];
        q.mask_rounds = modes[mi][1];
        pvg_secagg_client *o = NULL;
        assert_int_equal(pvg_secagg_client_new_ex(&q, 7, S.rng, 1, &o, NULL), PVG_OK);
        uint8_t *am = NULL;
        size_t al = 0;
        assert_int_equal(pvg_secagg_client_advertise(o, &am, &al, NULL), PVG_OK);
        assert_int_equal(pvg_secagg_server_receive(S.s, am, al, &err), PVG_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.text, q.bits == 32 && !q.mask_rounds ? "version" : "ChaCha"));
        free(am);
        pvg_secagg_client_free(o);
    }
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    sess_round(&S, 1, live, 1);
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    live[0] = 0;
    sess_round(&S, 2, live, 1);
    assert_int_equal(S.len[1], 36 + 37 * 2); /* two bytes a word on the wire */
    assert_int_equal(S.msg[1][4], PVG_SECAGG_WIRE_VERSION_LANES);
    assert_int_equal(S.msg[1][6], 16);
    assert_int_equal(S.msg[1][7], 8);
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    live[5] = 0; /* after its masked input: still in the sum */
    sess_round(&S, 3, live, 1);
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    uint16_t sum[37];
    assert_int_equal(pvg_secagg_server_result(S.s, sum, NULL), PVG_OK);
    for (int j = 0; j < 37; j++) {
        uint32_t want = 0;
        for (uint32_t i = 1; i < 8; i++)
            want += S.x[i * 37 + (uint32_t)j];
        assert_int_equal(sum[j], want & 0xFFFFu);
    }
    sess_close(&S);
}

/* The session's mode is bound into the pairwise keys: a server that tells
 * one client another threshold (which no message header carries) cannot
 * run it in the session unnoticed. Before the binding every box opened and
 * the client took part under a threshold its neighbours did not share;
 * now no box between it and a neighbour opens, on either side. */
static void test_mode_bound_into_keys(void **state)
{
    (void)state;
    session S;
    sess_open(&S, 5, 4, 3, 6, 77);
    pvg_secagg_params q = S.p;
    q.t = 4;
    pvg_secagg_client_free(S.c[2]);
    assert_int_equal(pvg_secagg_client_new_ex(&q, 2, S.rng, 1, &S.c[2], NULL), PVG_OK);
    int live[5] = {1, 1, 1, 1, 1};
    sess_round(&S, 0, live, 1);
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    sess_round(&S, 1, live, 1);
    assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    for (uint32_t i = 0; i < 5; i++) {
        uint8_t *in = NULL, *out = NULL;
        size_t in_len = 0, out_len = 0;
        pvg_error err;
        assert_int_equal(pvg_secagg_server_message_for(S.s, i, &in, &in_len, &err), PVG_OK);
        pvg_status st = pvg_secagg_client_masked_input(S.c[i], in, in_len, S.x + (size_t)i * 6,
                                                       &out, &out_len, &err);
        if (st != PVG_ERR_CRYPTO) fail_msg("client %u: status %d, %s", i, st, err.text);
        assert_string_equal(err.source, "FORWARD");
        free(in);
        free(out);
    }
    sess_close(&S);
}

/* The premask (pvg_secagg_client_premask, made between SHARES and FORWARD)
 * gives the same MASKED bytes as the masks made at once, in every lane and
 * PRG, also for a client whose neighbour advertised (its mask is in the
 * premask) but sent no shares (it is taken off again); the sum comes out
 * exact. Out of its place the premask is refused. */
static void test_premask_same_bytes(void **state)
{
    (void)state;
    static const unsigned modes[][2] = {{32, 0}, {32, 8}, {16, 8}, {16, 12}};
    for (size_t mi = 0; mi < sizeof modes / sizeof *modes; mi++) {
        const uint32_t n = 9, d = 301; /* not a multiple of any block */
        session A, B;
        sess_open_mode(&A, n, 6, 4, d, modes[mi][0], modes[mi][1], 808 + mi);
        sess_open_mode(&B, n, 6, 4, d, modes[mi][0], modes[mi][1], 808 + mi);
        int live[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        pvg_error err;
        assert_int_equal(pvg_secagg_client_premask(B.c[0], &err), PVG_ERR_STATE); /* too early */
        for (int r = 0; r < 2; r++) {
            sess_round(&A, r, live, 1);
            sess_round(&B, r, live, 1);
            assert_int_equal(pvg_secagg_server_advance(A.s, NULL), PVG_OK);
            assert_int_equal(pvg_secagg_server_advance(B.s, NULL), PVG_OK);
            if (r == 0) live[2] = 0; /* advertised, sends no shares: in KEYS, not in FORWARD */
        }
        /* B's clients (all but one) made their masks ahead; the dropped one cannot */
        for (uint32_t i = 0; i < n; i++)
            if (live[i] && i != 4) {
                assert_int_equal(pvg_secagg_client_premask(B.c[i], &err), PVG_OK);
                assert_int_equal(pvg_secagg_client_premask(B.c[i], &err), PVG_OK); /* again */
            }
        sess_round(&A, 2, live, 1);
        sess_round(&B, 2, live, 1);
        for (uint32_t i = 0; i < n; i++) {
            if (!live[i]) continue;
            assert_int_equal(A.len[i], B.len[i]);
            assert_memory_equal(A.msg[i], B.msg[i], A.len[i]);
        }
        /* the masked input used the premask up: no second one after it */
        assert_int_equal(pvg_secagg_client_premask(B.c[1], &err), PVG_ERR_STATE);
        assert_int_equal(pvg_secagg_server_advance(B.s, NULL), PVG_OK);
        sess_round(&B, 3, live, 1);
        assert_int_equal(pvg_secagg_server_advance(B.s, NULL), PVG_OK);
        uint64_t *sum = calloc(d, sizeof *sum);
        uint8_t *raw = calloc(d, 8);
        assert_int_equal(pvg_secagg_server_result(B.s, raw, NULL), PVG_OK);
        unsigned bits = modes[mi][0];
        for (uint32_t j = 0; j < d; j++) {
            uint64_t want = 0, got = 0;
            for (uint32_t i = 0; i < n; i++)
                if (live[i]) want += B.x[(size_t)i * d + j];
            memcpy(&got, raw + (size_t)j * (bits / 8), bits / 8);
            if (bits < 64) want &= (1ull << bits) - 1;
            assert_true(got == want);
        }
        free(sum);
        free(raw);
        sess_close(&A);
        sess_close(&B);
    }
}

/* ---- wire robustness ---- */

static void test_wire_refusals(void **state)
{
    (void)state;
    session S;
    sess_open(&S, 5, 4, 3, 6, 123);
    int live[5] = {1, 1, 1, 1, 1};
    pvg_error err;
    sess_round(&S, 0, live, 0);
    uint8_t *m = S.msg[0];
    size_t len = S.len[0];
    uint8_t bad[2048];
    /* every truncation, and one byte too many */
    for (size_t l = 0; l < len; l++)
        assert_int_not_equal(pvg_secagg_server_receive(S.s, m, l, &err), PVG_OK);
    memcpy(bad, m, len);
    bad[len] = 0;
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len + 1, &err), PVG_ERR_INVALID);
    /* bad magic, version, reserved, unknown type, other session */
    memcpy(bad, m, len);
    bad[0] ^= 1;
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len, &err), PVG_ERR_INVALID);
    memcpy(bad, m, len);
    bad[4] = 9;
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len, &err), PVG_ERR_UNSUPPORTED);
    memcpy(bad, m, len);
    bad[6] = 1;
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len, &err), PVG_ERR_INVALID);
    memcpy(bad, m, len);
    bad[5] = 42;
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len, &err), PVG_ERR_INVALID);
    memcpy(bad, m, len);
    bad[8] ^= 0x80;
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len, &err), PVG_ERR_STATE);
    /* wrong round (a MASKED type now) */
    memcpy(bad, m, len);
    bad[5] = 5;
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len, &err), PVG_ERR_STATE);
    /* unknown client */
    memcpy(bad, m, len);
    bad[24] = 200;
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len, &err), PVG_ERR_NOT_FOUND);
    /* low-order public key */
    memcpy(bad, m, len);
    memset(bad + 36, 0, 32);
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, len, &err), PVG_ERR_CRYPTO);
    /* accepted once, then a replay */
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[i], S.len[i], &err), PVG_OK);
    assert_int_equal(pvg_secagg_server_receive(S.s, m, len, &err), PVG_ERR_EXISTS);
    assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_OK);
    /* an old-round message after the round closed */
    assert_int_equal(pvg_secagg_server_receive(S.s, m, len, &err), PVG_ERR_STATE);

    /* client side: a KEYS message addressed to someone else, or tampered */
    uint8_t *keys = NULL;
    size_t klen = 0;
    assert_int_equal(pvg_secagg_server_message_for(S.s, 1, &keys, &klen, &err), PVG_OK);
    assert_int_equal(pvg_secagg_client_share_keys(S.c[0], keys, klen, &S.msg[0], &S.len[0], &err),
                     PVG_ERR_INVALID);
    free(keys);
    sess_round(&S, 1, live, 1);
    assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[2], S.len[2], &err), PVG_ERR_EXISTS);
    assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_OK);

    /* forged box in FORWARD: refused with PVG_ERR_CRYPTO, client unchanged */
    uint8_t *fw = NULL;
    size_t flen = 0;
    assert_int_equal(pvg_secagg_server_message_for(S.s, 0, &fw, &flen, &err), PVG_OK);
    uint8_t *out = NULL;
    size_t olen = 0;
    fw[flen - 20] ^= 1;
    assert_int_equal(pvg_secagg_client_masked_input(S.c[0], fw, flen, S.x, &out, &olen, &err),
                     PVG_ERR_CRYPTO);
    fw[flen - 20] ^= 1;
    /* a box moved to another sender slot fails too (AD binds sender) */
    uint32_t from = (uint32_t)fw[36 + 4];
    fw[36 + 4] = (uint8_t)(from == 4 ? 3 : from + 1);
    assert_int_not_equal(pvg_secagg_client_masked_input(S.c[0], fw, flen, S.x, &out, &olen, &err),
                         PVG_OK);
    free(fw);
    sess_round(&S, 2, live, 1);
    /* wrong MASKED length */
    assert_int_not_equal(pvg_secagg_server_receive(S.s, S.msg[1], S.len[1] - 4, &err), PVG_OK);
    assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_OK);

    /* UNMASK_REQ naming one client both survived and dropped: refused, and
     * the client never answers again */
    uint8_t *rq = NULL;
    size_t rlen = 0;
    assert_int_equal(pvg_secagg_server_message_for(S.s, 0, &rq, &rlen, &err), PVG_OK);
    /* layout: total | ns | ids | nd | ids ; rewrite as ns-1 survivors + 1 dropped that is also a
     * survivor */
    uint8_t *evil = malloc(rlen + 4);
    memcpy(evil, rq, rlen);
    uint32_t ns = evil[36 + 4];
    uint32_t victim = evil[36 + 8 + 4 * (ns - 1)];
    evil[36 + 8 + 4 * ns] = 1; /* nd = 1 */
    memset(evil + 36 + 12 + 4 * ns, 0, 4);
    evil[36 + 12 + 4 * ns] = (uint8_t)victim;
    evil[32] = (uint8_t)(rlen - 36 + 4);
    assert_int_equal(pvg_secagg_client_unmask(S.c[0], evil, rlen + 4, &out, &olen, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_secagg_client_unmask(S.c[0], rq, rlen, &out, &olen, &err), PVG_ERR_STATE);
    free(evil);
    free(rq);
    /* the others answer; a share of the wrong kind is refused by the server */
    int live2[5] = {0, 1, 1, 1, 1};
    sess_round(&S, 3, live2, 0);
    memcpy(bad, S.msg[1], S.len[1]);
    bad[36 + 4 + 4] ^= 1; /* kind of the first entry */
    assert_int_equal(pvg_secagg_server_receive(S.s, bad, S.len[1], &err), PVG_ERR_INVALID);
    for (uint32_t i = 1; i < 5; i++)
        assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[i], S.len[i], &err), PVG_OK);
    assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_OK);
    uint32_t sum[6];
    assert_int_equal(pvg_secagg_server_result(S.s, sum, &err), PVG_OK);
    for (int j = 0; j < 6; j++) {
        uint32_t want = 0;
        for (uint32_t i = 0; i < 5; i++)
            want += S.x[i * 6 + j];
        assert_int_equal(sum[j], want);
    }
    assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[1], S.len[1], &err), PVG_ERR_STATE);
    sess_close(&S);
}

/* A client that dropped before its masked input is never unmasked twice:
 * its late MASKED message is refused once the round closed; and a forged
 * share is outvoted when more than t arrived, or aborts the session. */
static void test_late_and_forged_shares(void **state)
{
    (void)state;
    for (int forge_all = 0; forge_all < 2; forge_all++) {
        session S;
        sess_open(&S, 6, 5, 3, 5, 500 + (uint64_t)forge_all);
        int live[6] = {1, 1, 1, 1, 1, 1};
        pvg_error err;
        sess_round(&S, 0, live, 1);
        assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_OK);
        sess_round(&S, 1, live, 1);
        assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_OK);
        sess_round(&S, 2, live, 0);
        for (uint32_t i = 1; i < 6; i++)
            assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[i], S.len[i], &err), PVG_OK);
        assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_OK);
        /* client 0's masked input arrives late: refused */
        assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[0], S.len[0], &err), PVG_ERR_STATE);
        int live3[6] = {0, 1, 1, 1, 1, forge_all ? 0 : 1};
        sess_round(&S, 3, live3, 0);
        /* holder 1 forges its share of client 2's self-mask seed */
        uint8_t *m1 = S.msg[1];
        const uint8_t *pl = m1 + 36;
        uint32_t cnt = pl[0];
        for (uint32_t e = 0; e < cnt; e++)
            if (pl[4 + e * 69] == 2) m1[36 + 4 + e * 69 + 5] ^= 1;
        pvg_status st = PVG_OK;
        uint32_t senders = forge_all ? 3 : 5; /* 3 = exactly t: no redundancy */
        for (uint32_t i = 1; i <= senders; i++)
            assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[i], S.len[i], &err), PVG_OK);
        st = pvg_secagg_server_advance(S.s, &err);
        if (!forge_all) {
            assert_int_equal(st, PVG_OK);
            uint32_t sum[5];
            assert_int_equal(pvg_secagg_server_result(S.s, sum, &err), PVG_OK);
            for (int j = 0; j < 5; j++) {
                uint32_t want = 0;
                for (uint32_t i = 1; i < 6; i++)
                    want += S.x[i * 5 + j];
                assert_int_equal(sum[j], want);
            }
        } else {
            assert_int_equal(st, PVG_ERR_CRYPTO);
            assert_int_equal(pvg_secagg_server_round(S.s), -1);
            uint32_t sum[5];
            assert_int_equal(pvg_secagg_server_result(S.s, sum, &err), PVG_ERR_STATE);
        }
        sess_close(&S);
    }
}

/* Opens a session and runs rounds 0..r-1 completely. */
static void sess_to_round(session *S, uint32_t n, uint32_t k, uint32_t t, uint32_t d, uint64_t seed,
                          int r)
{
    sess_open(S, n, k, t, d, seed);
    int live[16];
    for (int i = 0; i < 16; i++)
        live[i] = 1;
    for (int rd = 0; rd < r; rd++) {
        sess_round(S, rd, live, 1);
        assert_int_equal(pvg_secagg_server_advance(S->s, NULL), PVG_OK);
    }
}

static void corrupt(pvg_rng *fz, uint8_t *b, size_t len, size_t *l2, size_t min_pos)
{
    *l2 = len;
    switch (pvg_rng_uniform(fz, 3)) {
    case 0:
        b[min_pos + pvg_rng_uniform(fz, len - min_pos)] ^= (uint8_t)(1 + pvg_rng_uniform(fz, 255));
        break;
    case 1:
        *l2 = (size_t)pvg_rng_uniform(fz, len);
        break;
    default:
        *l2 = len + 1 + (size_t)pvg_rng_uniform(fz, 7);
        memset(b + len, 0xAB, 8);
        break;
    }
}

/* Random corruption (flips, truncations, extensions) of client messages of
 * every round: the server never crashes (ASan/UBSan check memory safety),
 * answers with a defined status, and refuses every change of length. A
 * corruption it cannot detect (a flipped masked word or public key - the
 * semi-honest protocol has no signatures) is accepted; the session is then
 * rebuilt for the next trial. */
static void test_fuzz_server(void **state)
{
    (void)state;
    int iters = sanitized() ? 25 : 80, refused = 0;
    pvg_rng *fz = pvg_rng_new_INSECURE_deterministic_for_tests(17);
    for (int r = 0; r < 4; r++) {
        session S;
        sess_to_round(&S, 6, 4, 3, 7, 4242 + (uint64_t)r, r);
        int live[6] = {1, 1, 1, 1, 1, 1};
        sess_round(&S, r, live, 0);
        for (int it = 0; it < iters; it++) {
            uint32_t i = (uint32_t)pvg_rng_uniform(fz, 6);
            size_t len = S.len[i], l2;
            uint8_t *b = malloc(len + 8);
            memcpy(b, S.msg[i], len);
            corrupt(fz, b, len, &l2, 0);
            pvg_status st = pvg_secagg_server_receive(S.s, b, l2, NULL);
            free(b);
            assert_true(st <= 0 && st >= PVG_ERR_INTERNAL && st != PVG_ERR_INTERNAL);
            if (l2 != len) assert_int_not_equal(st, PVG_OK);
            if (st != PVG_OK) {
                refused++;
                continue;
            }
            sess_close(&S); /* accepted: rebuild */
            sess_to_round(&S, 6, 4, 3, 7, 4242 + (uint64_t)r, r);
            sess_round(&S, r, live, 0);
        }
        /* the genuine messages still complete the session exactly */
        for (int rd = r; rd < 4; rd++) {
            if (rd > r) sess_round(&S, rd, live, 0);
            for (uint32_t i = 0; i < 6; i++)
                assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[i], S.len[i], NULL), PVG_OK);
            assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
        }
        uint32_t sum[7];
        assert_int_equal(pvg_secagg_server_result(S.s, sum, NULL), PVG_OK);
        for (int j = 0; j < 7; j++) {
            uint32_t want = 0;
            for (uint32_t i = 0; i < 6; i++)
                want += S.x[i * 7 + j];
            assert_int_equal(sum[j], want);
        }
        sess_close(&S);
    }
    assert_true(refused > iters * 2);
    pvg_rng_free(fz);
}

/* Corrupted server replies fed to the client that holds the secrets: no
 * crash, a defined status, every length change refused, every flip inside
 * a share box refused as forged (PVG_ERR_CRYPTO); a refused reply leaves
 * the client able to take the genuine one. */
static void test_fuzz_client(void **state)
{
    (void)state;
    int iters = sanitized() ? 25 : 80;
    pvg_rng *fz = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    for (int r = 1; r < 4; r++) {
        session S;
        sess_to_round(&S, 5, 4, 3, 4, 31337 + (uint64_t)r, r);
        for (int it = 0; it < iters; it++) {
            uint32_t i = (uint32_t)pvg_rng_uniform(fz, 5);
            uint8_t *in = NULL, *out = NULL;
            size_t in_len = 0, ol = 0, l2;
            assert_int_equal(pvg_secagg_server_message_for(S.s, i, &in, &in_len, NULL), PVG_OK);
            uint8_t *b = malloc(in_len + 8);
            memcpy(b, in, in_len);
            free(in);
            corrupt(fz, b, in_len, &l2, 0);
            pvg_status st;
            if (r == 1)
                st = pvg_secagg_client_share_keys(S.c[i], b, l2, &out, &ol, NULL);
            else if (r == 2)
                st = pvg_secagg_client_masked_input(S.c[i], b, l2, S.x + i * 4, &out, &ol, NULL);
            else
                st = pvg_secagg_client_unmask(S.c[i], b, l2, &out, &ol, NULL);
            free(b);
            free(out);
            assert_true(st <= 0 && st > PVG_ERR_INTERNAL);
            if (l2 != in_len) assert_int_not_equal(st, PVG_OK);
            if (st == PVG_OK || r == 3) { /* accepted, or a finished client: rebuild */
                sess_close(&S);
                sess_to_round(&S, 5, 4, 3, 4, 31337 + (uint64_t)r, r);
            }
        }
        /* flips inside the boxes of FORWARD are always caught as forgeries */
        if (r == 2)
            for (int it = 0; it < iters; it++) {
                uint32_t i = (uint32_t)pvg_rng_uniform(fz, 5);
                uint8_t *in = NULL, *out = NULL;
                size_t in_len = 0, ol = 0;
                assert_int_equal(pvg_secagg_server_message_for(S.s, i, &in, &in_len, NULL), PVG_OK);
                size_t nbox = (in_len - 40) / (4 + 176);
                size_t bx = pvg_rng_uniform(fz, nbox);
                in[40 + bx * 180 + 4 + pvg_rng_uniform(fz, 176)] ^=
                    (uint8_t)(1 + pvg_rng_uniform(fz, 255));
                assert_int_equal(pvg_secagg_client_masked_input(S.c[i], in, in_len, S.x + i * 4,
                                                                &out, &ol, NULL),
                                 PVG_ERR_CRYPTO);
                free(in);
            }
        int live[5] = {1, 1, 1, 1, 1};
        for (int rd = r; rd < 4; rd++) {
            sess_round(&S, rd, live, 1);
            assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
        }
        uint32_t sum[4];
        assert_int_equal(pvg_secagg_server_result(S.s, sum, NULL), PVG_OK);
        for (int j = 0; j < 4; j++) {
            uint32_t want = 0;
            for (uint32_t i = 0; i < 5; i++)
                want += S.x[i * 4 + j];
            assert_int_equal(sum[j], want);
        }
        sess_close(&S);
    }
    pvg_rng_free(fz);
}

/* In every round, fewer than t messages abort the session for good:
 * advance returns PVG_ERR_ABORTED, nothing can be received or read
 * afterwards. A client told that fewer than t clients survived refuses to
 * unmask. */
static void test_abort_each_round(void **state)
{
    (void)state;
    for (int r = 0; r < 4; r++) {
        session S;
        sess_to_round(&S, 6, 5, 4, 3, 900 + (uint64_t)r, r);
        int live[6] = {1, 1, 1, 0, 0, 0}; /* t - 1 = 3 send */
        sess_round(&S, r, live, 1);
        pvg_error err;
        assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_ERR_ABORTED);
        assert_int_equal(pvg_secagg_server_round(S.s), -1);
        assert_non_null(strstr(err.text, "threshold"));
        uint32_t sum[3];
        assert_int_equal(pvg_secagg_server_result(S.s, sum, &err), PVG_ERR_STATE);
        assert_int_equal(pvg_secagg_server_receive(S.s, S.msg[0], S.len[0], &err), PVG_ERR_STATE);
        assert_int_equal(pvg_secagg_server_advance(S.s, &err), PVG_ERR_STATE);
        uint8_t *m = NULL;
        size_t ml = 0;
        assert_int_equal(pvg_secagg_server_message_for(S.s, 0, &m, &ml, &err), PVG_ERR_STATE);
        assert_int_equal(pvg_secagg_server_survivors(S.s, NULL), 0);
        sess_close(&S);
    }
    /* the client-side check */
    session S;
    sess_to_round(&S, 6, 5, 4, 3, 950, 3);
    uint8_t *rq = NULL, *out = NULL;
    size_t rl = 0, ol = 0;
    assert_int_equal(pvg_secagg_server_message_for(S.s, 2, &rq, &rl, NULL), PVG_OK);
    rq[36] = 3;
    rq[37] = rq[38] = rq[39] = 0; /* total survivors 3 < t = 4 */
    pvg_error err;
    assert_int_equal(pvg_secagg_client_unmask(S.c[2], rq, rl, &out, &ol, &err), PVG_ERR_ABORTED);
    assert_null(out);
    free(rq);
    sess_close(&S);
}

/* The federated path end to end: clients clip and quantise float vectors,
 * the session sums them with a dropout, the server dequantises; the result
 * matches the float sum of the survivors' clipped vectors within the
 * rounding error (n / scale per coordinate). */
static void test_quantized_sum(void **state)
{
    (void)state;
    enum { N = 8, D = 50 };
    const double clip = 1.0, scale = 65536.0;
    session S;
    sess_open(&S, N, N - 1, 5, D, 2024);
    pvg_rng *q = pvg_rng_new_INSECURE_deterministic_for_tests(9);
    float x[N][D];
    size_t clipped_total = 0;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++)
            x[i][j] = (float)(4.0 * pvg_rng_double(q) - 2.0);
        size_t clipped = 0;
        assert_int_equal(
            pvg_secagg_quantize(x[i], D, clip, scale, 32, N, q, S.x + i * D, &clipped, NULL),
            PVG_OK);
        clipped_total += clipped;
    }
    assert_true(clipped_total > 0); /* inputs in [-2, 2], clip 1: about half */
    int live[N] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int r = 0; r < 4; r++) {
        if (r == 2) live[3] = 0; /* client 3 drops before its masked input */
        sess_round(&S, r, live, 1);
        assert_int_equal(pvg_secagg_server_advance(S.s, NULL), PVG_OK);
    }
    uint32_t sum[D];
    double back[D];
    assert_int_equal(pvg_secagg_server_result(S.s, sum, NULL), PVG_OK);
    size_t ns = pvg_secagg_server_survivors(S.s, NULL);
    assert_int_equal(ns, N - 1);
    assert_int_equal(pvg_secagg_dequantize(sum, D, 32, clip, scale, (uint32_t)ns, back, NULL),
                     PVG_OK);
    for (int j = 0; j < D; j++) {
        double want = 0;
        for (int i = 0; i < N; i++) {
            if (i == 3) continue;
            double v = x[i][j] > clip ? clip : x[i][j] < -clip ? -clip : x[i][j];
            want += v;
        }
        assert_true(fabs(back[j] - want) <= (double)N / scale);
    }
    pvg_rng_free(q);
    sess_close(&S);
}

static void test_quantize(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(8);
    float x[6] = {0.0f, 0.5f, -0.5f, 3.0f, -7.0f, 0.123f};
    uint32_t q[6];
    size_t clipped = 99;
    pvg_error err;
    assert_int_equal(pvg_secagg_quantize(x, 6, 1.0, 1000.0, 32, 100, rng, q, &clipped, &err),
                     PVG_OK);
    assert_int_equal(clipped, 2);
    assert_int_equal(q[0], 1000);
    assert_int_equal(q[1], 1500);
    assert_int_equal(q[2], 500);
    assert_int_equal(q[3], 2000);
    assert_int_equal(q[4], 0);
    assert_true(q[5] == 1123 || q[5] == 1124);
    /* n x range must fit the modulus */
    assert_int_equal(pvg_secagg_quantize(x, 6, 1.0, 1e6, 32, 3000, rng, q, &clipped, &err),
                     PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "modulus"));
    uint64_t q64[6];
    assert_int_equal(pvg_secagg_quantize(x, 6, 1.0, 1e6, 64, 3000, rng, q64, &clipped, &err),
                     PVG_OK);
    float nan_in[1] = {0.0f / 0.0f};
    assert_int_equal(pvg_secagg_quantize(nan_in, 1, 1.0, 10, 32, 1, rng, q, NULL, &err),
                     PVG_ERR_INVALID);
    /* stochastic rounding is unbiased: mean of many roundings of 0.1234 */
    int reps = sanitized() ? 4000 : 20000;
    double acc = 0;
    float v[1] = {0.1234f};
    for (int i = 0; i < reps; i++) {
        uint32_t o;
        assert_int_equal(pvg_secagg_quantize(v, 1, 1.0, 100.0, 32, 1, rng, &o, NULL, NULL), PVG_OK);
        acc += o;
    }
    double mean = acc / reps, want = (0.1234f + 1.0) * 100.0;
    assert_true(mean > want - 0.02 && mean < want + 0.02);
    /* 16 bits: n x (range + 1) must stay below 2^16. Two clients at range
     * 32766 fit (2 x 32767 = 65534), at 32767 they do not (65536) */
    uint16_t q16[6];
    assert_int_equal(pvg_secagg_quantize(x, 6, 1.0, 16383.0, 16, 2, rng, q16, &clipped, &err),
                     PVG_OK);
    assert_int_equal(q16[3], 32766); /* clipped to +clip: the range's top */
    assert_int_equal(q16[4], 0);
    assert_int_equal(pvg_secagg_quantize(x, 6, 1.0, 16383.5, 16, 2, rng, q16, &clipped, &err),
                     PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "2^16"));
    /* the largest sum of two at the edge dequantizes exactly: 2 x clip */
    uint16_t top[1] = {(uint16_t)(2 * 32766)};
    double o16[1];
    assert_int_equal(pvg_secagg_dequantize(top, 1, 16, 1.0, 16383.0, 2, o16, NULL), PVG_OK);
    assert_true(o16[0] > 2.0 - 1e-9 && o16[0] < 2.0 + 1e-9);
    /* dequantize a sum of 2 */
    uint32_t s[2] = {1500 + 500, 2000 + 1000};
    double out[2];
    assert_int_equal(pvg_secagg_dequantize(s, 2, 32, 1.0, 1000.0, 2, out, NULL), PVG_OK);
    assert_true(out[0] > -1e-9 && out[0] < 1e-9);
    assert_true(out[1] > 1.0 - 1e-9 && out[1] < 1.0 + 1e-9);
    pvg_rng_free(rng);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* run one test by name */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kdf_kat),
        cmocka_unit_test(test_mask_kernel),
        cmocka_unit_test(test_graph),
        cmocka_unit_test(test_exact_small),
        cmocka_unit_test(test_exact_dropouts_every_round),
        cmocka_unit_test(test_exact_thousand),
        cmocka_unit_test(test_exact_lanes_and_prgs),
        cmocka_unit_test(test_lane16_edge),
        cmocka_unit_test(test_lane16_session_and_modes),
        cmocka_unit_test(test_premask_same_bytes),
        cmocka_unit_test(test_server_threads),
        cmocka_unit_test(test_given_inputs),
        cmocka_unit_test(test_abort_below_threshold),
        cmocka_unit_test(test_masked_input_uniform),
        cmocka_unit_test(test_t_minus_1_colluders),
        cmocka_unit_test(test_mode_bound_into_keys),
        cmocka_unit_test(test_wire_refusals),
        cmocka_unit_test(test_late_and_forged_shares),
        cmocka_unit_test(test_fuzz_server),
        cmocka_unit_test(test_fuzz_client),
        cmocka_unit_test(test_abort_each_round),
        cmocka_unit_test(test_masked_inplace_same_bytes),
        cmocka_unit_test(test_quantize),
        cmocka_unit_test(test_quantized_sum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
