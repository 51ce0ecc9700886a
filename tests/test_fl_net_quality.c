/*
 * test_fl_net_quality.c - federated iALS trained over HTTP reaches the
 * quality of the same run in process (docs/federated.md "Quality over the
 * network"): 16 shoppers in two taste groups, each a client in a thread over
 * libcurl with SecAgg+, train 3 rounds without DP (FedAvg, the gradient form,
 * server_lr 0.5, as `fl serve` without --epsilon) from the same initial item
 * factors as the in-process trainer (the plain sum in place of SecAgg).
 *
 * - the published item factors of every round equal the in-process ones up
 *   to the encoding's rounding (relative 1e-4);
 * - each shopper's on-device top 5 (pvg_fl_client_recommend, own items
 *   excluded) from the networked model hits its held-out items as often as
 *   the in-process model's (Recall@5 equal within 0.05), and the training
 *   learned (Recall@5 at least 0.3 above the initial factors').
 *
 * With DP and the public item prior (docs/federated.md "A prior from public
 * item data"; what `fl serve --item-prior titles` sets up): the same
 * shoppers with 4 more items nobody buys, each titled like a bought one in
 * the store's declared catalogue; the prior built from those titles
 * (pvg_store_catalog_titles, pvg_fl_item_prior_from_titles) on the served
 * model, distributed discrete Gaussian noise from the clients.
 *
 * - the published factors equal those of an in-process model with the same
 *   start and prior applying the same released sums, and so does every
 *   shopper's on-device top 5;
 * - the prior shows: the same sums without it give other factors, and the
 *   unbought items lie along their titled twins with it (cosine >= 0.8),
 *   on average 0.3 nearer than without (the clients draw their rounding and
 *   noise from fixed seeds, test-only, so the sums are the same every run).
 *
 * The bench of the real data sets is bench/fl_net_quality.c (ML-100K, 943
 * client processes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fl/fl_internal.h"
#include "t_fl_server.h"

#include <privguide/fl.h>
#include <privguide/fl_net.h>
#include <privguide/rng.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CLIENTS T_FL_MAX_CLIENTS
#define N_ITEMS 30
#define N_TRAIN 8 /* training items per shopper, from its group's half */
#define N_TEST 3  /* held-out items per shopper, from the same half */
#define ROUNDS 3
#define TOP 5

static t_fl_env E;

static int setup(void **state)
{
    (void)state;
    return t_fl_env_setup(&E, "pvg_test_flnq", N_CLIENTS);
}

static int teardown(void **state)
{
    (void)state;
    return t_fl_env_teardown(&E);
}

/* Shopper u (group u % 2) has N_TRAIN + N_TEST distinct items of its
 * group's half of the catalogue; the last N_TEST are held out. */
static uint64_t indptr[N_CLIENTS + 1];
static uint32_t train[N_CLIENTS * N_TRAIN], test[N_CLIENTS][N_TEST];

static void make_data(void)
{
    pvg_rng *r = pvg_rng_new_INSECURE_deterministic_for_tests(17);
    for (int u = 0; u < N_CLIENTS; u++) {
        uint8_t seen[N_ITEMS / 2] = {0};
        uint32_t lo = (u % 2) ? N_ITEMS / 2 : 0, got[N_TRAIN + N_TEST];
        for (int i = 0; i < N_TRAIN + N_TEST;) {
            uint32_t j = (uint32_t)pvg_rng_uniform(r, N_ITEMS / 2);
            if (seen[j]) continue;
            seen[j] = 1;
            got[i++] = lo + j;
        }
        for (int i = 0; i < N_TRAIN; i++)
            train[u * N_TRAIN + i] = got[i];
        for (int i = 0; i < N_TEST; i++)
            test[u][i] = got[N_TRAIN + i];
        indptr[u + 1] = (uint64_t)(u + 1) * N_TRAIN;
    }
    pvg_rng_free(r);
}

static pvg_fl_config net_cfg(void)
{
    pvg_fl_config c;
    pvg_fl_config_default(&c);
    c.factors = 4;
    c.reg = 0.02;
    c.alpha0 = 0.2;
    c.clip = 100; /* above every client's norm: no clipping */
    c.server_lr = 0.5;
    c.expected_cohort = N_CLIENTS;
    c.seed = 3;
    return c;
}

/* Recall@TOP over the shoppers, each ranking on device from broadcast bc. */
static double recall_of(const uint8_t *bc, size_t bl)
{
    double tot = 0;
    for (int u = 0; u < N_CLIENTS; u++) {
        uint32_t out[TOP];
        float sc[TOP];
        size_t n = 0;
        assert_int_equal(pvg_fl_client_recommend(bc, bl, train + u * N_TRAIN, NULL, N_TRAIN, TOP,
                                                 out, sc, &n, NULL),
                         PVG_OK);
        int hits = 0;
        for (size_t i = 0; i < n; i++)
            for (int t = 0; t < N_TEST; t++)
                hits += out[i] == test[u][t];
        tot += (double)hits / N_TEST;
    }
    return tot / N_CLIENTS;
}

typedef struct client_ctx {
    int index;
    pvg_rng *rng;
    pvg_fl_client_stats stats;
    pvg_status status;
    char error[PVG_ERROR_TEXT_LEN];
} client_ctx;

static pvg_status update(void *ctx, uint64_t round, const uint8_t *bc, size_t len, uint32_t *vec,
                         size_t d, pvg_error *err)
{
    client_ctx *c = ctx;
    (void)round;
    return pvg_fl_client_update(bc, len, train + c->index * N_TRAIN, NULL, N_TRAIN, c->rng, vec, d,
                                NULL, err);
}

static void *client_thread(void *arg)
{
    client_ctx *c = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", E.port);
    c->rng = pvg_rng_new_secure();
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = url;
    o.token = E.tok[c->index];
    o.rounds = ROUNDS;
    o.timeout_s = 120;
    o.update = update;
    o.ctx = c;
    o.rng = c->rng;
    pvg_error err;
    pvg_error_clear(&err);
    c->status = pvg_fl_client_run(&o, &c->stats, &err);
    snprintf(c->error, sizeof c->error, "%s", err.text);
    pvg_rng_free(c->rng);
    return NULL;
}

typedef struct model_ctx {
    pvg_fl_model *m;
    pvg_rng *rng;
    float *V[ROUNDS + 1]; /* the item factors published after each round */
} model_ctx;

static pvg_status bc_fn(void *ctx, uint64_t round, uint8_t **out, size_t *len, pvg_error *err)
{
    (void)round;
    return pvg_fl_model_broadcast(((model_ctx *)ctx)->m, out, len, err);
}

static pvg_status apply_fn(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                           uint32_t survivors, pvg_error *err)
{
    model_ctx *mc = ctx;
    pvg_status st = pvg_fl_model_apply(mc->m, sum, d, survivors, mc->rng, err);
    if (st == PVG_OK && round >= 1 && round <= ROUNDS) {
        const float *V;
        uint32_t ni, k;
        st = pvg_fl_model_item_factors(mc->m, &V, &ni, &k, err);
        mc->V[round] = malloc((size_t)ni * k * sizeof *V);
        if (st == PVG_OK && mc->V[round]) memcpy(mc->V[round], V, (size_t)ni * k * sizeof *V);
    }
    return st;
}

static void test_networked_run_matches_in_process(void **state)
{
    (void)state;
    make_data();
    pvg_fl_config cfg = net_cfg();
    pvg_error err;
    /* the networked run: the model's initial factors from a fixed seed */
    model_ctx mc;
    memset(&mc, 0, sizeof mc);
    mc.rng = pvg_rng_new_secure();
    pvg_rng *init = pvg_rng_new_INSECURE_deterministic_for_tests(9);
    assert_int_equal(pvg_fl_model_new(&cfg, N_ITEMS, init, &mc.m, &err), PVG_OK);
    pvg_rng_free(init);
    uint8_t *bc0;
    size_t bl0;
    assert_int_equal(pvg_fl_model_broadcast(mc.m, &bc0, &bl0, NULL), PVG_OK);
    double r_init = recall_of(bc0, bl0);
    free(bc0);
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = (uint32_t)pvg_fl_update_dim(&cfg, N_ITEMS);
    co.sample_rate = 1.0;
    co.min_clients = N_CLIENTS;
    co.min_survivors = N_CLIENTS;
    co.max_rounds = ROUNDS;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 60;
    co.broadcast = bc_fn;
    co.apply = apply_fn;
    co.ctx = &mc;
    co.rng = mc.rng;
    pvg_fl_coord *coord = NULL;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);
    pvg_server *srv = t_fl_server_start(&E, coord);
    client_ctx cl[N_CLIENTS];
    pthread_t th[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].index = i;
        assert_int_equal(pthread_create(&th[i], NULL, client_thread, &cl[i]), 0);
    }
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        pvg_fl_round_stats rs;
        assert_int_equal(pvg_fl_coord_wait(coord, r, 120, &rs, &err), PVG_OK);
        if (rs.phase != PVG_FL_PHASE_DONE) fail_msg("round %d aborted: %s", (int)r, rs.error);
        assert_int_equal(rs.survivors, N_CLIENTS);
    }
    for (int i = 0; i < N_CLIENTS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_CLIENTS; i++)
        if (cl[i].status != PVG_OK) fail_msg("client %d: %s", i, cl[i].error);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    uint8_t *bcn;
    size_t bln;
    assert_int_equal(pvg_fl_model_broadcast(mc.m, &bcn, &bln, NULL), PVG_OK);
    double r_net = recall_of(bcn, bln);

    /* the same configuration and start in process */
    pvg_fl_config c2 = cfg;
    c2.allow_insecure_rng = 1;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(9);
    pvg_fl_model *m = NULL;
    assert_int_equal(pvg_fl_model_new(&c2, N_ITEMS, rng, &m, &err), PVG_OK);
    fl_clients fc = {N_CLIENTS, N_ITEMS, indptr, train, NULL};
    for (int r = 1; r <= ROUNDS; r++) {
        assert_int_equal(fl_sim_round(m, &fc, 1.0, rng, NULL, &err), PVG_OK);
        const float *V;
        uint32_t ni, k;
        assert_int_equal(pvg_fl_model_item_factors(m, &V, &ni, &k, NULL), PVG_OK);
        assert_non_null(mc.V[r]);
        double dmax = 0, vmax = 0;
        for (size_t i = 0; i < (size_t)ni * k; i++) {
            double dv = fabs((double)V[i] - mc.V[r][i]);
            if (dv > dmax) dmax = dv;
            if (fabs(V[i]) > vmax) vmax = fabs(V[i]);
        }
        if (!(dmax <= 1e-4 * vmax))
            fail_msg("round %d: networked item factors differ from in-process by %g (max %g)", r,
                     dmax, vmax);
    }
    uint8_t *bci;
    size_t bli;
    assert_int_equal(pvg_fl_model_broadcast(m, &bci, &bli, NULL), PVG_OK);
    double r_in = recall_of(bci, bli);
    print_message("recall@%d: initial %.3f, networked %.3f, in process %.3f\n", TOP, r_init, r_net,
                  r_in);
    assert_true(fabs(r_net - r_in) <= 0.05);
    assert_true(r_net >= r_init + 0.3);
    free(bcn);
    free(bci);
    for (int r = 0; r <= ROUNDS; r++)
        free(mc.V[r]);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
    pvg_fl_model_free(mc.m);
    pvg_rng_free(mc.rng);
}

/* ---- with DP and the public item prior ---- */
#define N_ITEMS_P (N_ITEMS + 4) /* items 30..33: nobody buys them */
#define MAX_SUM 4096

static const char *p_titles[N_ITEMS_P];
static char p_ids[N_ITEMS_P][16];

/* items 0..14: "red ... N", 15..29: "blue ... N"; the unbought 30..33 are
 * titled as 0, 1, 15 and 16 (their twins) */
static const uint32_t twin[4] = {0, 1, 15, 16};
static const char *const words[15] = {"lamp",  "chair", "table", "sofa",    "mirror",
                                      "shelf", "rug",   "vase",  "clock",   "bench",
                                      "stool", "desk",  "bed",   "cabinet", "frame"};

typedef struct dp_ctx {
    pvg_fl_model *m;
    pvg_rng *rng;
    uint32_t *sum[ROUNDS + 1]; /* the released sums, for the replay */
    size_t d;
    uint32_t survivors[ROUNDS + 1];
} dp_ctx;

static pvg_status dp_bc_fn(void *ctx, uint64_t round, uint8_t **out, size_t *len, pvg_error *err)
{
    (void)round;
    return pvg_fl_model_broadcast(((dp_ctx *)ctx)->m, out, len, err);
}

static pvg_status dp_apply_fn(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                              uint32_t survivors, pvg_error *err)
{
    dp_ctx *c = ctx;
    if (round >= 1 && round <= ROUNDS && (c->sum[round] = malloc(d * sizeof *sum))) {
        memcpy(c->sum[round], sum, d * sizeof *sum);
        c->d = d;
        c->survivors[round] = survivors;
    }
    return pvg_fl_model_apply(c->m, sum, d, survivors, c->rng, err);
}

/* the update's rounding and noise share from a generator fixed per client
 * (test-only opt-in), so that the released sums, and the checks on them, are
 * the same on every run; SecAgg's masks still come from c->rng */
static pvg_rng *dp_urng[N_CLIENTS];

static pvg_status dp_update(void *ctx, uint64_t round, const uint8_t *bc, size_t len, uint32_t *vec,
                            size_t d, pvg_error *err)
{
    client_ctx *c = ctx;
    (void)round;
    return pvg_fl_client_update_ex(bc, len, train + c->index * N_TRAIN, NULL, N_TRAIN,
                                   dp_urng[c->index], 1, vec, d, NULL, err);
}

static void *dp_client_thread(void *arg)
{
    client_ctx *c = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", E.port);
    c->rng = pvg_rng_new_secure();
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = url;
    o.token = E.tok[c->index];
    o.rounds = ROUNDS;
    o.timeout_s = 120;
    o.update = dp_update;
    o.ctx = c;
    o.rng = c->rng;
    pvg_error err;
    pvg_error_clear(&err);
    c->status = pvg_fl_client_run(&o, &c->stats, &err);
    snprintf(c->error, sizeof c->error, "%s", err.text);
    pvg_rng_free(c->rng);
    return NULL;
}

static pvg_fl_config dp_cfg(void)
{
    pvg_fl_config c = net_cfg();
    c.update = PVG_FL_UPDATE_STATS;
    c.clip = 1;
    c.dp = PVG_FL_DP_DISTRIBUTED;
    c.noise_multiplier = 0.5;
    c.noise_ridge = 3;
    assert_int_equal(pvg_fl_config_for_cohort(&c, N_ITEMS_P, 32, N_CLIENTS, N_CLIENTS, NULL),
                     PVG_OK);
    return c;
}

/* a model of cfg from the fixed start, with the prior P (NULL: none) */
static pvg_fl_model *dp_model(const pvg_fl_config *cfg, const pvg_fl_item_prior *P)
{
    pvg_rng *init = pvg_rng_new_INSECURE_deterministic_for_tests(9);
    pvg_fl_model *m = NULL;
    assert_int_equal(pvg_fl_model_new(cfg, N_ITEMS_P, init, &m, NULL), PVG_OK);
    pvg_rng_free(init);
    if (P) assert_int_equal(pvg_fl_model_set_item_prior(m, P, 1, 20, NULL), PVG_OK);
    return m;
}

/* the cosine of items a and b's factors */
static double item_cos(const pvg_fl_model *m, uint32_t a, uint32_t b)
{
    const float *V;
    uint32_t ni, k;
    assert_int_equal(pvg_fl_model_item_factors(m, &V, &ni, &k, NULL), PVG_OK);
    double ab = 0, aa = 0, bb = 0;
    for (uint32_t f = 0; f < k; f++) {
        ab += (double)V[a * k + f] * V[b * k + f];
        aa += (double)V[a * k + f] * V[a * k + f];
        bb += (double)V[b * k + f] * V[b * k + f];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static void test_networked_dp_run_with_prior_matches_in_process(void **state)
{
    (void)state;
    make_data();
    /* the operator declares the catalogue; the served list is p_ids */
    char tb[N_ITEMS_P][64];
    pvg_catalog_entry ent[N_ITEMS_P];
    for (uint32_t i = 0; i < N_ITEMS_P; i++) {
        uint32_t t = i < N_ITEMS ? i : twin[i - N_ITEMS];
        snprintf(p_ids[i], sizeof p_ids[i], "item-%u", i);
        snprintf(tb[i], sizeof tb[i], "%s %s %u", t < 15 ? "red" : "blue", words[t % 15], t);
        ent[i] = (pvg_catalog_entry){p_ids[i], tb[i], NULL};
        p_titles[i] = p_ids[i];
    }
    pvg_error err;
    pvg_error_clear(&err);
    pvg_store *store = NULL;
    assert_int_equal(pvg_store_open(E.dd, &store, &err), PVG_OK);
    assert_int_equal(pvg_store_catalog_declare(store, ent, N_ITEMS_P, &err), PVG_OK);
    char **titles = NULL;
    size_t found = 0, linked = 0;
    assert_int_equal(pvg_store_catalog_titles(store, p_titles, N_ITEMS_P, &titles, &found, &err),
                     PVG_OK);
    pvg_store_free(store);
    assert_int_equal(found, N_ITEMS_P);
    pvg_fl_item_prior P;
    assert_int_equal(
        pvg_fl_item_prior_from_titles((const char *const *)titles, N_ITEMS_P, 0, &P, &linked, &err),
        PVG_OK);
    pvg_catalog_titles_free(titles, N_ITEMS_P);
    assert_true(linked >= 8); /* at least the four twins and their pairs */

    pvg_fl_config cfg = dp_cfg();
    dp_ctx mc;
    memset(&mc, 0, sizeof mc);
    mc.rng = pvg_rng_new_secure();
    mc.m = dp_model(&cfg, &P);
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = (uint32_t)pvg_fl_update_dim(&cfg, N_ITEMS_P);
    co.sample_rate = 1.0;
    co.min_clients = N_CLIENTS;
    co.min_survivors = N_CLIENTS;
    co.max_rounds = ROUNDS;
    co.max_cohort = N_CLIENTS;
    co.fl_config = &cfg;
    co.fl_items = N_ITEMS_P;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 60;
    co.broadcast = dp_bc_fn;
    co.apply = dp_apply_fn;
    co.ctx = &mc;
    co.rng = mc.rng;
    pvg_fl_coord *coord = NULL;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);
    pvg_server *srv = t_fl_server_start(&E, coord);
    client_ctx cl[N_CLIENTS];
    pthread_t th[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].index = i;
        dp_urng[i] = pvg_rng_new_INSECURE_deterministic_for_tests(100 + (uint64_t)i);
        assert_int_equal(pthread_create(&th[i], NULL, dp_client_thread, &cl[i]), 0);
    }
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        pvg_fl_round_stats rs;
        assert_int_equal(pvg_fl_coord_wait(coord, r, 120, &rs, &err), PVG_OK);
        if (rs.phase != PVG_FL_PHASE_DONE) fail_msg("round %d aborted: %s", (int)r, rs.error);
        assert_int_equal(rs.survivors, N_CLIENTS);
    }
    for (int i = 0; i < N_CLIENTS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_CLIENTS; i++) {
        pvg_rng_free(dp_urng[i]);
        if (cl[i].status != PVG_OK) fail_msg("client %d: %s", i, cl[i].error);
    }
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);

    /* the replay in process: the same start, the same sums, with and without the prior */
    pvg_fl_model *with = dp_model(&cfg, &P), *without = dp_model(&cfg, NULL);
    pvg_rng *rng = pvg_rng_new_secure(); /* distributed noise: the server draws none */
    for (int r = 1; r <= ROUNDS; r++) {
        assert_non_null(mc.sum[r]);
        assert_int_equal(pvg_fl_model_apply(with, mc.sum[r], mc.d, mc.survivors[r], rng, &err),
                         PVG_OK);
        assert_int_equal(pvg_fl_model_apply(without, mc.sum[r], mc.d, mc.survivors[r], rng, &err),
                         PVG_OK);
    }
    const float *Vn, *Vw, *Vo;
    uint32_t ni, k;
    assert_int_equal(pvg_fl_model_item_factors(mc.m, &Vn, &ni, &k, NULL), PVG_OK);
    assert_int_equal(pvg_fl_model_item_factors(with, &Vw, &ni, &k, NULL), PVG_OK);
    assert_int_equal(pvg_fl_model_item_factors(without, &Vo, &ni, &k, NULL), PVG_OK);
    double d_with = 0, d_without = 0;
    for (size_t i = 0; i < (size_t)ni * k; i++) {
        d_with = fmax(d_with, fabs((double)Vn[i] - Vw[i]));
        d_without = fmax(d_without, fabs((double)Vn[i] - Vo[i]));
    }
    print_message("DP with the prior: networked vs in-process %g, vs without the prior %g\n",
                  d_with, d_without);
    assert_true(d_with == 0);
    assert_true(d_without > 1e-3);
    /* every shopper's on-device top 5 from the two broadcasts */
    uint8_t *bn, *bw;
    size_t ln, lw;
    assert_int_equal(pvg_fl_model_broadcast(mc.m, &bn, &ln, NULL), PVG_OK);
    assert_int_equal(pvg_fl_model_broadcast(with, &bw, &lw, NULL), PVG_OK);
    for (int u = 0; u < N_CLIENTS; u++) {
        uint32_t on[TOP], ow[TOP];
        float sn[TOP], sw[TOP];
        size_t nn = 0, nw = 0;
        assert_int_equal(pvg_fl_client_recommend(bn, ln, train + u * N_TRAIN, NULL, N_TRAIN, TOP,
                                                 on, sn, &nn, NULL),
                         PVG_OK);
        assert_int_equal(pvg_fl_client_recommend(bw, lw, train + u * N_TRAIN, NULL, N_TRAIN, TOP,
                                                 ow, sw, &nw, NULL),
                         PVG_OK);
        assert_int_equal(nn, nw);
        for (size_t i = 0; i < nn; i++)
            assert_int_equal(on[i], ow[i]);
    }
    /* the unbought items: along their titled twins with the prior, and on
       average much nearer them than without it (where they are noise) */
    double m_with = 0, m_without = 0;
    for (int t = 0; t < 4; t++) {
        double cw = item_cos(mc.m, N_ITEMS + t, twin[t]);
        double cn = item_cos(without, N_ITEMS + t, twin[t]);
        print_message("item %d ~ twin %u: cosine %.3f with the prior, %.3f without\n", N_ITEMS + t,
                      twin[t], cw, cn);
        assert_true(cw >= 0.8);
        m_with += cw / 4;
        m_without += cn / 4;
    }
    assert_true(m_with >= m_without + 0.3);
    free(bn);
    free(bw);
    for (int r = 0; r <= ROUNDS; r++)
        free(mc.sum[r]);
    pvg_rng_free(rng);
    pvg_fl_model_free(with);
    pvg_fl_model_free(without);
    pvg_fl_model_free(mc.m);
    pvg_rng_free(mc.rng);
    pvg_fl_item_prior_free(&P);
}

int main(void)
{
    if (pvg_init() != PVG_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_networked_run_matches_in_process),
        cmocka_unit_test(test_networked_dp_run_with_prior_matches_in_process),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
