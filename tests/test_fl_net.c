/*
 * test_fl_net.c - federated training over HTTP: the server in-process on an
 * ephemeral port with the round coordinator behind /v1/fl/, clients in
 * threads over libcurl.
 *
 * - the aggregate equals the plain sum of the survivors' vectors, with a
 *   client dropping in every phase, in the 32-bit lane with ChaCha20 masks
 *   and in the 16-bit lane with ChaCha12 masks (where a client whose update
 *   does not fit the lane refuses and stays out of the sum);
 * - a server that lies about survivors gets nothing unmasked (the client
 *   refuses a non-majority threshold, an unmask request that contradicts the
 *   survivor list or names a client both ways);
 * - on the wire: a client's raw events, its user factor and its unmasked
 *   vector never appear in any byte it sends;
 * - STATE messages are parsed strictly (every truncation and byte flip of a
 *   valid one is refused or parsed without reading past the end).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>
#include <privguide/fl_net.h>
#include <privguide/secagg.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include "t_fl_server.h"
#include "t_http.h"

#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen);

#define N_CLIENTS 12
#define D 64 /* N_CLIENTS indicator words, then the payload */

static t_fl_env E;
static unsigned g_lane = 32; /* the round's SecAgg lane */
static int g_misfit = -1;    /* this client writes a word beyond a 16-bit lane */

static int setup(void **state)
{
    (void)state;
    return t_fl_env_setup(&E, "pvg_test_flnet", N_CLIENTS);
}

static int teardown(void **state)
{
    (void)state;
    return t_fl_env_teardown(&E);
}

/* ---- a client's data: its "raw events", its "user factor", its vector ---- */
typedef struct client_ctx {
    int index;
    int drop_phase;
    char events[256]; /* the shopper's events as the native JSONL would hold them */
    float factor[8];  /* a user factor derived from them (never sent) */
    uint32_t vec[D];  /* the vector it submits (masked) */
    /* everything the client put on the wire */
    uint8_t *sent;
    size_t sent_len, sent_cap;
    pthread_mutex_t mu;
    pvg_fl_client_stats stats;
    pvg_status status;
    char error[PVG_ERROR_TEXT_LEN];
} client_ctx;

static pvg_status update(void *ctx, uint64_t round, const uint8_t *bc, size_t len, uint32_t *vec,
                         size_t d, pvg_error *err)
{
    client_ctx *c = ctx;
    (void)round;
    if (d != D) return pvg_error_set(err, PVG_ERR_INVALID, "d %zu", d);
    if (len != 5 || memcmp(bc, "model", 5) != 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "unexpected broadcast");
    /* the vector is computed from the events and the factor: indicator of
     * this client, then payload words */
    for (size_t i = 0; i < d; i++)
        vec[i] = 0;
    vec[c->index] = 1;
    for (size_t i = N_CLIENTS; i < d; i++) {
        uint32_t h = 2166136261u ^ (uint32_t)i;
        for (const char *p = c->events; *p; p++)
            h = (h ^ (uint8_t)*p) * 16777619u;
        float f = c->factor[i % 8];
        uint32_t fb;
        memcpy(&fb, &f, 4);
        vec[i] = h ^ fb;
        if (g_lane == 16) vec[i] &= 0xFFFFu; /* an update encoded mod 2^16 */
    }
    if (c->index == g_misfit) vec[d - 1] = 0x10000u;
    memcpy(c->vec, vec, sizeof c->vec);
    return PVG_OK;
}

static void tap(void *ctx, int out, const uint8_t *data, size_t len)
{
    client_ctx *c = ctx;
    if (!out) return;
    pthread_mutex_lock(&c->mu);
    if (c->sent_len + len > c->sent_cap) {
        size_t cap = c->sent_cap ? c->sent_cap * 2 : 65536;
        while (cap < c->sent_len + len)
            cap *= 2;
        c->sent = realloc(c->sent, cap);
        c->sent_cap = cap;
    }
    memcpy(c->sent + c->sent_len, data, len);
    c->sent_len += len;
    pthread_mutex_unlock(&c->mu);
}

static const char *g_token[N_CLIENTS];

static void *client_thread(void *arg)
{
    client_ctx *c = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", E.port);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = url;
    o.token = g_token[c->index];
    o.rounds = 1;
    o.timeout_s = 120;
    o.drop_phase = c->drop_phase;
    o.update = update;
    o.ctx = c;
    o.rng = rng;
    o.wire_tap = tap;
    o.tap_ctx = c;
    /* half the clients add up their masks ahead (after their SHARES), the other
       half in the masked phase: the sum below is exact either way, also with the
       client that dropped after advertising (in KEYS, missing from FORWARD) */
    o.mask_ahead = c->index % 2;
    pvg_error err;
    c->status = pvg_fl_client_run(&o, &c->stats, &err);
    snprintf(c->error, sizeof c->error, "%s", err.text);
    pvg_rng_free(rng);
    return NULL;
}

typedef struct apply_ctx {
    pthread_mutex_t mu;
    int calls;
    uint32_t sum[D];
    uint32_t survivors;
} apply_ctx;

static pvg_status bc_fn(void *ctx, uint64_t round, uint8_t **out, size_t *len, pvg_error *err)
{
    (void)ctx;
    (void)round;
    (void)err;
    *out = malloc(5);
    memcpy(*out, "model", 5);
    *len = 5;
    return PVG_OK;
}

static pvg_status apply_fn(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                           uint32_t survivors, pvg_error *err)
{
    apply_ctx *a = ctx;
    (void)round;
    (void)err;
    pthread_mutex_lock(&a->mu);
    a->calls++;
    memcpy(a->sum, sum, d * sizeof *sum);
    a->survivors = survivors;
    pthread_mutex_unlock(&a->mu);
    return PVG_OK;
}

static void run_sum_of_survivors(unsigned lane, unsigned rounds, int misfit)
{
    g_lane = lane;
    g_misfit = misfit;
    apply_ctx a;
    memset(&a, 0, sizeof a);
    pthread_mutex_init(&a.mu, NULL);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = D;
    co.sample_rate = 1.0;
    co.min_clients = N_CLIENTS;
    co.max_rounds = 1;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 4.0; /* the phases with a dropout end at their deadline */
    co.broadcast = bc_fn;
    co.apply = apply_fn;
    co.ctx = &a;
    co.rng = rng;
    co.lane_bits = lane;
    co.mask_rounds = rounds;
    pvg_fl_coord *coord = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);
    pvg_server *srv = t_fl_server_start(&E, coord);

    static client_ctx cl[N_CLIENTS];
    pthread_t th[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        pthread_mutex_init(&cl[i].mu, NULL);
        cl[i].index = i;
        g_token[i] = E.tok[i];
        snprintf(cl[i].events, sizeof cl[i].events,
                 "{\"user\":\"shopper-%d\",\"item\":\"SECRET-ITEM-%d-85123A\",\"type\":"
                 "\"purchase\",\"ts\":\"2011-12-0%dT10:00:00Z\"}",
                 i, i, 1 + i % 9);
        for (int j = 0; j < 8; j++)
            cl[i].factor[j] = 0.123456f * (float)(i + 1) + 0.0421f * (float)j;
        /* one client drops before each phase (1..4); the one dropping
         * before unmasking is still in the sum */
        cl[i].drop_phase = i < 4 ? i + 1 : 0;
        assert_int_equal(pthread_create(&th[i], NULL, client_thread, &cl[i]), 0);
    }
    pvg_fl_round_stats rs;
    assert_int_equal(pvg_fl_coord_wait(coord, 1, 120, &rs, &err), PVG_OK);
    for (int i = 0; i < N_CLIENTS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_CLIENTS; i++)
        if (cl[i].status != PVG_OK) fail_msg("client %d: %s", i, cl[i].error);
    if (rs.phase != PVG_FL_PHASE_DONE) fail_msg("round aborted: %s", rs.error);
    assert_int_equal(rs.cohort, N_CLIENTS);
    /* the default k and t: the SecAgg+ plan for the cohort under the
     * coordinator's assumptions (docs/fl-protocol.md) */
    pvg_secagg_plan_options po = {N_CLIENTS, 0.30, 0.05, 40, 20, 0};
    pvg_secagg_plan plan;
    assert_int_equal(pvg_secagg_plan_params(&po, &plan, NULL), PVG_OK);
    assert_int_equal(rs.k, plan.k);
    assert_int_equal(rs.t, plan.t);
    assert_true(2 * rs.t > rs.k + 1);
    /* the session's mode: the lane asked for, ChaCha8 masks unless asked */
    assert_int_equal(rs.lane_bits, lane);
    assert_int_equal(rs.mask_rounds, rounds ? rounds : 8);
    assert_int_equal(a.calls, 1);
    /* exactly the clients that sent their masked input: all but the ones
     * that dropped before advertising, sharing or masking */
    uint32_t want[D];
    memset(want, 0, sizeof want);
    uint32_t n_in = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        int in = (cl[i].drop_phase == 0 || cl[i].drop_phase == PVG_FL_PHASE_UNMASK) && i != misfit;
        if (!in) continue;
        n_in++;
        for (int j = 0; j < D; j++)
            want[j] += cl[i].vec[j];
    }
    if (lane == 16)
        for (int j = 0; j < D; j++)
            want[j] &= 0xFFFFu;
    assert_int_equal(a.survivors, n_in);
    assert_int_equal(rs.survivors, n_in);
    assert_memory_equal(a.sum, want, sizeof want);
    for (int i = 0; i < N_CLIENTS; i++) {
        if (cl[i].drop_phase == 0 && i != misfit) assert_int_equal(cl[i].stats.rounds, 1);
        assert_int_equal(cl[i].stats.refused, i == misfit ? 1 : 0);
    }

    /* on the wire: nothing a client sent holds its events, its user factor
     * or its unmasked vector (any 16 consecutive bytes of it) */
    for (int i = 0; i < N_CLIENTS; i++) {
        client_ctx *c = &cl[i];
        assert_true(c->sent_len > 0);
        /* the upload the client reports is every byte it sent, each once
         * (a small POST body goes out in the headers' buffer, and libcurl
         * counts it in both its request size and its upload size) */
        assert_int_equal(c->stats.bytes_up, (unsigned long long)c->sent_len);
        char marker[32];
        snprintf(marker, sizeof marker, "SECRET-ITEM-%d-", i);
        assert_null(memmem(c->sent, c->sent_len, marker, strlen(marker)));
        assert_null(memmem(c->sent, c->sent_len, "85123A", 6));
        /* any two consecutive floats of the factor (8 bytes: a chance match
         * in the random masked bytes is ~2^-64 per position) */
        for (int j = 0; j + 1 < 8; j++)
            assert_null(memmem(c->sent, c->sent_len, &c->factor[j], 2 * sizeof(float)));
        if (cl[i].drop_phase == 0)
            for (int j = N_CLIENTS; j + 4 <= D; j++)
                assert_null(memmem(c->sent, c->sent_len, &c->vec[j], 16));
        /* and the token went only in the Authorization header of each request */
        assert_non_null(memmem(c->sent, c->sent_len, "Authorization: Bearer ", 22));
        free(c->sent);
        pthread_mutex_destroy(&c->mu);
    }
    /* the check can fail: the same search finds the vector when it is sent in clear */
    {
        uint8_t plain[D * 4];
        memcpy(plain, cl[5].vec, sizeof plain);
        assert_non_null(memmem(plain, sizeof plain, &cl[5].vec[N_CLIENTS], 16));
    }
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
    pthread_mutex_destroy(&a.mu);
    g_lane = 32;
    g_misfit = -1;
}

static void test_sum_of_survivors_with_dropouts(void **state)
{
    (void)state;
    run_sum_of_survivors(32, 0, -1);
}

/* the 16-bit lane with ChaCha12 masks: the sum mod 2^16 of the survivors;
 * client 7's update has a word beyond the lane, so it refuses (no wrong
 * sum) and the round goes on without it */
static void test_sum_of_survivors_lane16(void **state)
{
    (void)state;
    run_sum_of_survivors(16, 12, 7);
}

/* ---- a lying server (transport-free: the peers and a real SecAgg server) ---- */

static size_t build_state(uint8_t *b, const pvg_secagg_params *p, uint64_t round, int phase,
                          uint32_t id, const uint32_t *surv, uint32_t ns, const uint8_t *reply,
                          size_t rl)
{
    memset(b, 0, 80);
    memcpy(b, "PVFL", 4);
    b[4] = 1;
    b[5] = 1;
    for (int i = 0; i < 8; i++)
        b[8 + i] = (uint8_t)(round >> (8 * i));
    b[16] = (uint8_t)phase;
    b[18] = (uint8_t)p->bits;
    b[19] = (uint8_t)p->mask_rounds;
    uint32_t f[] = {id, p->n, p->k, p->t, p->d};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            b[20 + 4 * i + j] = (uint8_t)(f[i] >> (8 * j));
    memcpy(b + 40, p->session, 16);
    uint32_t g[] = {1000, 10, 0, ns, (uint32_t)rl};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            b[56 + 4 * i + j] = (uint8_t)(g[i] >> (8 * j));
    for (uint32_t i = 0; i < ns; i++)
        for (int j = 0; j < 4; j++)
            b[80 + 4 * i + j] = (uint8_t)(surv[i] >> (8 * j));
    if (rl) memcpy(b + 80 + 4 * ns, reply, rl);
    return 80 + 4 * (size_t)ns + rl;
}

#define LN 6
static void lying_server(unsigned bits, unsigned rounds)
{
    pvg_secagg_params p;
    memset(&p, 0, sizeof p);
    p.n = LN;
    p.k = LN - 1;
    p.t = 4; /* > (k + 1) / 2 = 3 */
    p.d = 8;
    p.bits = bits;
    p.mask_rounds = rounds;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_rng_bytes(rng, p.session, 16);
    static uint8_t sb[1 << 16];
    pvg_fl_state st;
    pvg_error err;
    uint32_t vec[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    /* 1. a threshold that is no strict majority: refused before anything is sent */
    {
        pvg_secagg_params q = p;
        q.t = 3; /* 2t = 6 = k + 1 */
        size_t n = build_state(sb, &q, 1, PVG_FL_PHASE_ADVERTISE, 0, NULL, 0, NULL, 0);
        assert_int_equal(pvg_fl_state_parse(sb, n, &st, &err), PVG_OK);
        pvg_fl_peer *peer = NULL;
        assert_int_equal(pvg_fl_peer_new(&st, vec, 8, rng, 0, &peer, &err), PVG_ERR_POLICY);
        assert_null(peer);
        assert_non_null(strstr(err.text, "majority"));
    }

    /* 2. a session run to the unmask request, then the server lies */
    pvg_secagg_server *srv = NULL;
    assert_int_equal(pvg_secagg_server_new(&p, &srv, &err), PVG_OK);
    pvg_fl_peer *peer[LN];
    for (uint32_t i = 0; i < LN; i++) {
        size_t n = build_state(sb, &p, 1, PVG_FL_PHASE_ADVERTISE, i, NULL, 0, NULL, 0);
        assert_int_equal(pvg_fl_state_parse(sb, n, &st, &err), PVG_OK);
        assert_int_equal(pvg_fl_peer_new(&st, vec, 8, rng, 0, &peer[i], &err), PVG_OK);
    }
    const uint32_t drop_at_masked = 5; /* client 5 drops before its masked input */
    for (int ph = PVG_FL_PHASE_ADVERTISE; ph <= PVG_FL_PHASE_MASKED; ph++) {
        for (uint32_t i = 0; i < LN; i++) {
            if (ph == PVG_FL_PHASE_MASKED && i == drop_at_masked) continue;
            uint8_t *reply = NULL, *msg = NULL;
            size_t rl = 0, ml = 0;
            if (ph > PVG_FL_PHASE_ADVERTISE)
                assert_int_equal(pvg_secagg_server_message_for(srv, i, &reply, &rl, &err), PVG_OK);
            size_t n = build_state(sb, &p, 1, ph, i, NULL, 0, reply, rl);
            pvg_free(reply);
            assert_int_equal(pvg_fl_state_parse(sb, n, &st, &err), PVG_OK);
            assert_int_equal(pvg_fl_peer_step(peer[i], &st, &msg, &ml, &err), PVG_OK);
            assert_non_null(msg);
            assert_int_equal(pvg_secagg_server_receive(srv, msg, ml, &err), PVG_OK);
            pvg_free(msg);
        }
        assert_int_equal(pvg_secagg_server_advance(srv, &err), PVG_OK);
    }
    uint32_t u3[LN];
    size_t n3 = pvg_secagg_server_survivors(srv, u3);
    assert_int_equal(n3, LN - 1);
    uint32_t answered = 0;
    for (uint32_t i = 0; i < LN; i++) {
        if (i == drop_at_masked) continue;
        uint8_t *req = NULL, *msg = NULL;
        size_t rl = 0, ml = 0;
        assert_int_equal(pvg_secagg_server_message_for(srv, i, &req, &rl, &err), PVG_OK);
        /* the lie: to each client, one survivor (the next one round the
         * ring) is reported dropped in the survivor list while the request
         * still asks for its self-mask share, or the request is rewritten to
         * ask the pairwise key of a survivor, or both kinds of one client */
        uint32_t lie_surv[LN],
            nl = 0, victim = (i + 1) % LN == drop_at_masked ? (i + 2) % LN : (i + 1) % LN;
        for (size_t j = 0; j < n3; j++)
            if (u3[j] != victim) lie_surv[nl++] = u3[j];
        size_t n;
        if (i % 3 == 0) {
            n = build_state(sb, &p, 1, PVG_FL_PHASE_UNMASK, i, lie_surv, nl, req, rl);
        } else {
            /* move the victim from the request's survivor list to its dropped
             * list (self-mask and mask key of one client, both asked from
             * different holders) and keep the honest survivor list */
            uint8_t fake[4096];
            uint32_t ns = req[40] | req[41] << 8 | req[42] << 16 | (uint32_t)req[43] << 24;
            uint32_t ids[LN], nsv = 0, drops[LN], nd = 0;
            for (uint32_t j = 0; j < ns; j++) {
                const uint8_t *q = req + 44 + 4 * j;
                uint32_t id = q[0] | q[1] << 8 | q[2] << 16 | (uint32_t)q[3] << 24;
                if (id == victim && i % 3 == 1)
                    drops[nd++] = id;
                else
                    ids[nsv++] = id;
                if (id == victim && i % 3 == 2) drops[nd++] = id; /* both lists */
            }
            const uint8_t *q = req + 44 + 4 * ns;
            uint32_t ond = q[0] | q[1] << 8 | q[2] << 16 | (uint32_t)q[3] << 24;
            for (uint32_t j = 0; j < ond; j++) {
                const uint8_t *r = q + 4 + 4 * j;
                drops[nd++] = r[0] | r[1] << 8 | r[2] << 16 | (uint32_t)r[3] << 24;
            }
            memcpy(fake, req, 40);
            size_t off = 40;
#define PUT(v)                                                                                     \
    do {                                                                                           \
        uint32_t v_ = (v);                                                                         \
        for (int b_ = 0; b_ < 4; b_++)                                                             \
            fake[off++] = (uint8_t)(v_ >> (8 * b_));                                               \
    } while (0)
            PUT(nsv);
            for (uint32_t j = 0; j < nsv; j++)
                PUT(ids[j]);
            PUT(nd);
            for (uint32_t j = 0; j < nd; j++)
                PUT(drops[j]);
#undef PUT
            uint32_t pl = (uint32_t)(off - 36);
            for (int b = 0; b < 4; b++)
                fake[32 + b] = (uint8_t)(pl >> (8 * b));
            n = build_state(sb, &p, 1, PVG_FL_PHASE_UNMASK, i, u3, (uint32_t)n3, fake, off);
        }
        pvg_free(req);
        assert_int_equal(pvg_fl_state_parse(sb, n, &st, &err), PVG_OK);
        pvg_status s = pvg_fl_peer_step(peer[i], &st, &msg, &ml, &err);
        assert_int_equal(s, PVG_ERR_ABORTED);
        assert_null(msg);
        /* and it answers nothing more in this round, not even an honest request */
        uint8_t *req2 = NULL;
        size_t rl2 = 0;
        assert_int_equal(pvg_secagg_server_message_for(srv, i, &req2, &rl2, &err), PVG_OK);
        n = build_state(sb, &p, 1, PVG_FL_PHASE_UNMASK, i, u3, (uint32_t)n3, req2, rl2);
        pvg_free(req2);
        assert_int_equal(pvg_fl_state_parse(sb, n, &st, &err), PVG_OK);
        assert_int_not_equal(pvg_fl_peer_step(peer[i], &st, &msg, &ml, &err), PVG_OK);
        assert_null(msg);
        if (msg) answered++;
    }
    assert_int_equal(answered, 0);
    /* the server got no unmask message at all: nothing is revealed */
    assert_int_equal(pvg_secagg_server_advance(srv, &err), PVG_ERR_ABORTED);
    uint32_t sum[8];
    assert_int_not_equal(pvg_secagg_server_result(srv, sum, &err), PVG_OK);
    for (uint32_t i = 0; i < LN; i++)
        pvg_fl_peer_free(peer[i]);
    pvg_secagg_server_free(srv);
    pvg_rng_free(rng);
}

static void test_lying_server_gets_nothing(void **state)
{
    (void)state;
    lying_server(32, 0);
    lying_server(16, 8); /* the 16-bit lane with ChaCha8 masks */
}

/* A 16-bit lane: a peer whose update has a word beyond the lane refuses its
 * masked input (PVG_ERR_POLICY, nothing sent), and the refusal names the
 * word's position only: the text reaches the shopper's page
 * (pvg_fl_core_stats, lastRefusal), so it must not carry a word of the
 * private update. */
static void test_lane16_misfit_refusal_names_no_value(void **state)
{
    (void)state;
    pvg_secagg_params p;
    memset(&p, 0, sizeof p);
    p.n = 3;
    p.k = 2;
    p.t = 2;
    p.d = 8;
    p.bits = 16;
    p.mask_rounds = 12;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_rng_bytes(rng, p.session, 16);
    static uint8_t sb[1 << 16];
    pvg_fl_state st;
    pvg_error err;
    uint32_t vec[8] = {1, 2, 3, 4, 5, 6, 7, 8}, bad[8] = {1, 2, 3, 0x1234ABCDu, 5, 6, 7, 8};
    pvg_secagg_server *srv = NULL;
    assert_int_equal(pvg_secagg_server_new(&p, &srv, &err), PVG_OK);
    pvg_fl_peer *peer[3];
    for (uint32_t i = 0; i < 3; i++) {
        size_t n = build_state(sb, &p, 1, PVG_FL_PHASE_ADVERTISE, i, NULL, 0, NULL, 0);
        assert_int_equal(pvg_fl_state_parse(sb, n, &st, &err), PVG_OK);
        assert_int_equal(pvg_fl_peer_new(&st, i == 0 ? bad : vec, 8, rng, 0, &peer[i], &err),
                         PVG_OK);
    }
    for (int ph = PVG_FL_PHASE_ADVERTISE; ph <= PVG_FL_PHASE_MASKED; ph++) {
        for (uint32_t i = 0; i < 3; i++) {
            uint8_t *reply = NULL, *msg = NULL;
            size_t rl = 0, ml = 0;
            if (ph > PVG_FL_PHASE_ADVERTISE)
                assert_int_equal(pvg_secagg_server_message_for(srv, i, &reply, &rl, &err), PVG_OK);
            size_t n = build_state(sb, &p, 1, ph, i, NULL, 0, reply, rl);
            pvg_free(reply);
            assert_int_equal(pvg_fl_state_parse(sb, n, &st, &err), PVG_OK);
            pvg_status s = pvg_fl_peer_step(peer[i], &st, &msg, &ml, &err);
            if (ph == PVG_FL_PHASE_MASKED && i == 0) {
                assert_int_equal(s, PVG_ERR_POLICY);
                assert_null(msg);
                assert_non_null(strstr(err.text, "word 3"));
                /* the value in any usual spelling */
                assert_null(strstr(err.text, "1234abcd"));
                assert_null(strstr(err.text, "1234ABCD"));
                assert_null(strstr(err.text, "305441741"));
                assert_null(strstr(err.text, "abcd"));
                continue;
            }
            assert_int_equal(s, PVG_OK);
            assert_non_null(msg);
            assert_int_equal(pvg_secagg_server_receive(srv, msg, ml, &err), PVG_OK);
            pvg_free(msg);
        }
        assert_int_equal(pvg_secagg_server_advance(srv, &err), PVG_OK);
    }
    for (uint32_t i = 0; i < 3; i++)
        pvg_fl_peer_free(peer[i]);
    pvg_secagg_server_free(srv);
    pvg_rng_free(rng);
}

/* ---- strict STATE parsing ---- */
static void test_state_parse_strict(void **state)
{
    (void)state;
    pvg_secagg_params p;
    memset(&p, 0, sizeof p);
    p.n = 5;
    p.k = 4;
    p.t = 3;
    p.d = 10;
    p.bits = 32;
    memset(p.session, 7, 16);
    static uint8_t b[256], c[256];
    uint32_t surv[] = {0, 2, 3};
    uint8_t reply[20];
    memset(reply, 0xAB, sizeof reply);
    size_t n = build_state(b, &p, 3, PVG_FL_PHASE_UNMASK, 2, surv, 3, reply, sizeof reply);
    pvg_fl_state st;
    pvg_error err;
    assert_int_equal(pvg_fl_state_parse(b, n, &st, &err), PVG_OK);
    assert_int_equal(st.round, 3);
    assert_int_equal(st.n_survivors, 3);
    assert_int_equal(st.reply_len, sizeof reply);
    /* every truncation is refused with an offset */
    for (size_t len = 0; len < n; len++) {
        assert_int_equal(pvg_fl_state_parse(b, len, &st, &err), PVG_ERR_INVALID);
        assert_true(err.offset >= 0);
    }
    /* one byte more is refused */
    memcpy(c, b, n);
    c[n] = 0;
    assert_int_equal(pvg_fl_state_parse(c, n + 1, &st, &err), PVG_ERR_INVALID);
    /* every single-byte change of the header either parses or is refused
     * naming an offset inside the message; never a read past the end
     * (checked under ASan) */
    int refused = 0;
    for (size_t i = 0; i < 80; i++) {
        for (int v = 0; v < 256; v += 51) {
            memcpy(c, b, n);
            c[i] ^= (uint8_t)(v | 1);
            uint8_t *copy = malloc(n);
            memcpy(copy, c, n);
            pvg_status s = pvg_fl_state_parse(copy, n, &st, &err);
            if (s != PVG_OK) {
                refused++;
                assert_true(err.offset >= 0 && err.offset <= (long long)n);
            }
            free(copy);
        }
    }
    assert_true(refused > 100);
    /* version and reserved bytes */
    memcpy(c, b, n);
    c[4] = 2;
    assert_int_equal(pvg_fl_state_parse(c, n, &st, &err), PVG_ERR_UNSUPPORTED);
    memcpy(c, b, n);
    c[6] = 1;
    assert_int_equal(pvg_fl_state_parse(c, n, &st, &err), PVG_ERR_INVALID);
    assert_int_equal(err.offset, 6);
    /* the lane (byte 18: 16 or 32) and the mask PRG (byte 19: 0, 8, 12, 20) */
    for (int v = 0; v < 256; v++) {
        memcpy(c, b, n);
        c[18] = (uint8_t)v;
        pvg_status s = pvg_fl_state_parse(c, n, &st, &err);
        assert_int_equal(s, v == 16 || v == 32 ? PVG_OK : PVG_ERR_INVALID);
        if (s == PVG_OK) assert_int_equal(st.params.bits, (unsigned)v);
        if (s != PVG_OK) assert_int_equal(err.offset, 18);
        memcpy(c, b, n);
        c[19] = (uint8_t)v;
        s = pvg_fl_state_parse(c, n, &st, &err);
        assert_int_equal(s, v == 0 || v == 8 || v == 12 || v == 20 ? PVG_OK : PVG_ERR_INVALID);
        if (s == PVG_OK) assert_int_equal(st.params.mask_rounds, (unsigned)v);
        if (s != PVG_OK) assert_int_equal(err.offset, 19);
    }
    /* outside a round both are zero */
    n = build_state(c, &p, 3, PVG_FL_PHASE_DONE, 0xFFFFFFFFu, NULL, 0, NULL, 0);
    memset(c + 18, 0, 2);
    memset(c + 24, 0, 36);
    memset(c + 56, 0, 4);
    memset(c + 64, 0, 4);
    assert_int_equal(pvg_fl_state_parse(c, n, &st, &err), PVG_OK);
    c[19] = 12;
    assert_int_equal(pvg_fl_state_parse(c, n, &st, &err), PVG_ERR_INVALID);
    assert_int_equal(err.offset, 18);
    /* survivors must ascend */
    uint32_t bad[] = {3, 2, 0};
    n = build_state(c, &p, 3, PVG_FL_PHASE_UNMASK, 2, bad, 3, NULL, 0);
    assert_int_equal(pvg_fl_state_parse(c, n, &st, &err), PVG_ERR_INVALID);
    assert_int_equal(err.offset, 84);
}

/* ---- the routes refuse what they must ---- */
static void test_routes_refuse(void **state)
{
    (void)state;
    /* the coordinator's own checks, without HTTP */
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = 4;
    co.sample_rate = 1.0;
    co.min_clients = 1000; /* no round starts */
    co.rng = rng;
    pvg_fl_coord *coord = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);
    uint8_t k1[32] = {1}, k2[32] = {2};
    uint8_t *b = NULL;
    size_t n = 0;
    assert_int_equal(pvg_fl_coord_state(coord, k1, &b, &n, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_fl_coord_join(coord, k1, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_join(coord, k1, &err), PVG_OK); /* idempotent */
    assert_int_equal(pvg_fl_coord_registered(coord), 1);
    assert_int_equal(pvg_fl_coord_state(coord, k1, &b, &n, &err), PVG_OK);
    pvg_fl_state st;
    assert_int_equal(pvg_fl_state_parse(b, n, &st, &err), PVG_OK);
    assert_int_equal(st.phase, PVG_FL_PHASE_IDLE);
    assert_int_equal(st.id, PVG_FL_NET_NO_ID);
    free(b);
    uint8_t msg[36] = "PVSA";
    assert_int_equal(pvg_fl_coord_submit(coord, k1, msg, 35, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_fl_coord_submit(coord, k1, msg, 36, &err), PVG_ERR_STATE);
    assert_int_equal(pvg_fl_coord_submit(coord, k2, msg, 36, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_fl_coord_broadcast(coord, 1, &b, &n, &err), PVG_ERR_NOT_FOUND);
    pvg_fl_coord_free(coord);
    /* a deterministic generator is refused */
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    co.rng = det;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_ERR_POLICY);
    pvg_rng_free(det);
    pvg_rng_free(rng);
}

/* ---- the broadcast goes only to the round's cohort ---- */
static void test_broadcast_only_to_cohort(void **state)
{
    (void)state;
    apply_ctx a;
    memset(&a, 0, sizeof a);
    pthread_mutex_init(&a.mu, NULL);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = 4;
    co.sample_rate = 1.0;
    co.min_clients = 3;
    co.max_rounds = 1;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 600; /* round 1 stays in its advertise phase */
    co.broadcast = bc_fn;
    co.apply = apply_fn;
    co.ctx = &a;
    co.rng = rng;
    pvg_fl_coord *coord = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);
    pvg_server *srv = t_fl_server_start(&E, coord);
    t_http_connect_to(&E.port);
    t_http_resp r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t_http("POST", "/v1/fl/join", E.tok[i], NULL, &r), 0);
        assert_int_equal(r.status, 200);
        t_http_resp_free(&r);
    }
    /* a member of the cohort gets it once round 1 is under way */
    struct timespec t0, now, nap = {0, 10 * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        assert_int_equal(t_http("GET", "/v1/fl/broadcast?round=1", E.tok[0], NULL, &r), 0);
        int status = r.status;
        if (status == 200) assert_memory_equal(r.body, "model", 5);
        t_http_resp_free(&r);
        if (status == 200) break;
        assert_int_equal(status, 404);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 20) fail_msg("round 1 did not start");
        nanosleep(&nap, NULL);
    }
    /* a shopper who never joined, and one who joined after the sampling */
    assert_int_equal(t_http("GET", "/v1/fl/broadcast?round=1", E.tok[3], NULL, &r), 0);
    assert_int_equal(r.status, 404);
    t_http_resp_free(&r);
    assert_int_equal(t_http("POST", "/v1/fl/join", E.tok[4], NULL, &r), 0);
    assert_int_equal(r.status, 200);
    t_http_resp_free(&r);
    assert_int_equal(t_http("GET", "/v1/fl/broadcast?round=1", E.tok[4], NULL, &r), 0);
    assert_int_equal(r.status, 404);
    t_http_resp_free(&r);
    /* the member, still */
    assert_int_equal(t_http("GET", "/v1/fl/broadcast?round=1", E.tok[1], NULL, &r), 0);
    assert_int_equal(r.status, 200);
    t_http_resp_free(&r);
    /* a reference taken in the round outlives the server and the coordinator
       (a response still sending it at shutdown); the sanitizer build checks */
    pvg_fl_broadcast_ref *ref = NULL, *ref2 = NULL;
    const uint8_t *data = NULL, *data2 = NULL;
    size_t len = 0, len2 = 0;
    assert_int_equal(pvg_fl_coord_broadcast_ref(coord, 1, &ref, &data, &len, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_broadcast_ref(coord, 1, &ref2, &data2, &len2, &err), PVG_OK);
    assert_ptr_equal(ref, ref2);
    assert_ptr_equal(data, data2);
    pvg_fl_broadcast_ref_free(ref2); /* one of two: the bytes stay */
    assert_memory_equal(data, "model", 5);
    assert_int_equal(pvg_fl_coord_broadcast_ref(coord, 2, &ref2, &data2, &len2, &err),
                     PVG_ERR_NOT_FOUND);
    assert_null(ref2);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    assert_true(len >= 5);
    assert_memory_equal(data, "model", 5);
    pvg_fl_broadcast_ref_free(ref);
    pvg_fl_broadcast_ref_free(NULL);
    pvg_rng_free(rng);
    pthread_mutex_destroy(&a.mu);
}

/* ---- a live round's messages: another's sender, replays, wrong types ---- */
static void test_submit_refusals_in_round(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = 4;
    co.sample_rate = 1.0;
    co.min_clients = 3;
    co.max_rounds = 1;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 600;
    co.rng = rng;
    pvg_fl_coord *coord = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);
    uint8_t key[4][32];
    for (int i = 0; i < 4; i++) {
        memset(key[i], 0, sizeof key[i]);
        key[i][0] = (uint8_t)(i + 1);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(pvg_fl_coord_join(coord, key[i], &err), PVG_OK);
    pvg_fl_state st[3];
    uint8_t *sb[3] = {NULL, NULL, NULL};
    struct timespec t0, now, nap = {0, 5 * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 3; i++) {
        for (;;) {
            size_t n = 0;
            free(sb[i]);
            assert_int_equal(pvg_fl_coord_state(coord, key[i], &sb[i], &n, &err), PVG_OK);
            assert_int_equal(pvg_fl_state_parse(sb[i], n, &st[i], &err), PVG_OK);
            if (st[i].phase == PVG_FL_PHASE_ADVERTISE) break;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - t0.tv_sec > 20) fail_msg("round 1 did not start");
            nanosleep(&nap, NULL);
        }
        assert_true(st[i].id < 3);
    }
    pvg_fl_peer *p[2];
    uint8_t *m[2];
    size_t ml[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pvg_fl_peer_new(&st[i], NULL, 4, rng, 0, &p[i], &err), PVG_OK);
        assert_int_equal(pvg_fl_peer_step(p[i], &st[i], &m[i], &ml[i], &err), PVG_OK);
        assert_non_null(m[i]);
    }
    /* client 0 speaks for client 1: refused at the sender field */
    assert_int_equal(pvg_fl_coord_submit(coord, key[0], m[1], ml[1], &err), PVG_ERR_PERMISSION);
    assert_int_equal(err.offset, 24);
    /* a client that never joined */
    assert_int_equal(pvg_fl_coord_submit(coord, key[3], m[0], ml[0], &err), PVG_ERR_NOT_FOUND);
    /* the type of another phase */
    m[0][5] = 5;
    assert_int_equal(pvg_fl_coord_submit(coord, key[0], m[0], ml[0], &err), PVG_ERR_STATE);
    m[0][5] = 1;
    /* truncated, then with a trailing byte */
    assert_int_equal(pvg_fl_coord_submit(coord, key[0], m[0], ml[0] - 1, &err), PVG_ERR_INVALID);
    uint8_t *longer = malloc(ml[0] + 1);
    assert_non_null(longer);
    memcpy(longer, m[0], ml[0]);
    longer[ml[0]] = 0;
    assert_int_equal(pvg_fl_coord_submit(coord, key[0], longer, ml[0] + 1, &err), PVG_ERR_INVALID);
    free(longer);
    /* accepted once; the replay is refused and the flag says it is held */
    assert_int_equal(pvg_fl_coord_submit(coord, key[0], m[0], ml[0], &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_submit(coord, key[0], m[0], ml[0], &err), PVG_ERR_EXISTS);
    /* and client 1's own message still goes through */
    assert_int_equal(pvg_fl_coord_submit(coord, key[1], m[1], ml[1], &err), PVG_OK);
    for (int i = 0; i < 2; i++) {
        pvg_free(m[i]);
        pvg_fl_peer_free(p[i]);
    }
    for (int i = 0; i < 3; i++)
        free(sb[i]);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_parse_strict),
        cmocka_unit_test(test_lying_server_gets_nothing),
        cmocka_unit_test(test_lane16_misfit_refusal_names_no_value),
        cmocka_unit_test(test_routes_refuse),
        cmocka_unit_test(test_broadcast_only_to_cohort),
        cmocka_unit_test(test_submit_refusals_in_round),
        cmocka_unit_test(test_sum_of_survivors_with_dropouts),
        cmocka_unit_test(test_sum_of_survivors_lane16),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
