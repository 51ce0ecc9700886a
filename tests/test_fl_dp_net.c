/*
 * test_fl_dp_net.c - the survivor floor of distributed DP noise over HTTP:
 * the server in-process on an ephemeral port, four clients in threads over
 * libcurl, each adding its discrete Gaussian share split over the
 * broadcast's expected_cohort (4).
 *
 * - a lying server (no floor on the coordinator) that goes on to unmask a
 *   sum of 3 inputs, less noise than the 4 shares it announced, gets no
 *   unmask share from any client: the round aborts with nothing applied;
 * - the coordinator's own floor (min_survivors 4) aborts the same round
 *   before any unmask request;
 * - with all 4 clients the round is applied (the checks can pass).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>
#include <privguide/fl.h>
#include <privguide/fl_net.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include "t_fl_server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CLIENTS 4
#define N_ITEMS 12

static t_fl_env E;

static int setup(void **state)
{
    (void)state;
    return t_fl_env_setup(&E, "pvg_test_fldp", N_CLIENTS);
}

static int teardown(void **state)
{
    (void)state;
    return t_fl_env_teardown(&E);
}

typedef struct client_ctx {
    int index, drop_phase;
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
    uint32_t items[3] = {(uint32_t)c->index, (uint32_t)c->index + 4, 11};
    return pvg_fl_client_update(bc, len, items, NULL, 3, c->rng, vec, d, NULL, err);
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
    o.rounds = 1;
    o.timeout_s = 120;
    o.drop_phase = c->drop_phase;
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
    int applied;
} model_ctx;

static pvg_status bc_fn(void *ctx, uint64_t round, uint8_t **out, size_t *len, pvg_error *err)
{
    (void)round;
    return pvg_fl_model_broadcast(((model_ctx *)ctx)->m, out, len, err);
}

static pvg_status apply_fn(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                           uint32_t survivors, pvg_error *err)
{
    model_ctx *m = ctx;
    (void)round;
    m->applied++;
    return pvg_fl_model_apply(m->m, sum, d, survivors, m->rng, err);
}

/* One round with the coordinator's floor `floor`; client 0 drops before its
 * masked input when `drop`. Fills *rs, returns how often the sum was applied. */
static int run_round(uint32_t floor, int drop, pvg_fl_round_stats *rs, client_ctx *cl)
{
    pvg_fl_config cfg;
    pvg_fl_config_default(&cfg);
    cfg.factors = 2;
    cfg.clip = 1;
    cfg.dp = PVG_FL_DP_DISTRIBUTED;
    cfg.noise_multiplier = 1;
    cfg.expected_cohort = N_CLIENTS; /* the noise is split over 4 shares */
    model_ctx mc;
    memset(&mc, 0, sizeof mc);
    mc.rng = pvg_rng_new_secure();
    pvg_error err;
    assert_int_equal(pvg_fl_model_new(&cfg, N_ITEMS, mc.rng, &mc.m, &err), PVG_OK);
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = (uint32_t)pvg_fl_update_dim(&cfg, N_ITEMS);
    co.sample_rate = 1.0;
    co.min_clients = N_CLIENTS;
    co.max_rounds = 1;
    co.min_survivors = floor;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 3.0;
    co.broadcast = bc_fn;
    co.apply = apply_fn;
    co.ctx = &mc;
    co.rng = mc.rng;
    pvg_fl_coord *coord = NULL;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);
    pvg_server *srv = t_fl_server_start(&E, coord);
    pthread_t th[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].index = i;
        cl[i].drop_phase = drop && i == 0 ? PVG_FL_PHASE_MASKED : 0;
        assert_int_equal(pthread_create(&th[i], NULL, client_thread, &cl[i]), 0);
    }
    assert_int_equal(pvg_fl_coord_wait(coord, 1, 120, rs, &err), PVG_OK);
    for (int i = 0; i < N_CLIENTS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_CLIENTS; i++)
        if (cl[i].status != PVG_OK) fail_msg("client %d: %s", i, cl[i].error);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    int applied = mc.applied;
    pvg_fl_model_free(mc.m);
    pvg_rng_free(mc.rng);
    return applied;
}

static void test_lying_server_below_floor_gets_no_shares(void **state)
{
    (void)state;
    client_ctx cl[N_CLIENTS];
    pvg_fl_round_stats rs;
    /* no floor on the coordinator: it would unmask 3 inputs (t = 3 of k = 3) */
    assert_int_equal(run_round(0, 1, &rs, cl), 0);
    assert_int_equal(rs.phase, PVG_FL_PHASE_ABORTED);
    assert_int_equal(rs.arrived[2], N_CLIENTS - 1);
    assert_int_equal(rs.arrived[3], 0); /* no client sent its unmask shares */
    for (int i = 1; i < N_CLIENTS; i++) {
        assert_int_equal(cl[i].stats.refused, 1);
        assert_int_equal(cl[i].stats.rounds, 0);
    }
}

static void test_coordinator_floor_aborts_before_unmask(void **state)
{
    (void)state;
    client_ctx cl[N_CLIENTS];
    pvg_fl_round_stats rs;
    assert_int_equal(run_round(N_CLIENTS, 1, &rs, cl), 0);
    assert_int_equal(rs.phase, PVG_FL_PHASE_ABORTED);
    assert_int_equal(rs.arrived[2], N_CLIENTS - 1);
    assert_int_equal(rs.arrived[3], 0);
    assert_non_null(strstr(rs.error, "survivor floor 4"));
}

static void test_full_cohort_is_applied(void **state)
{
    (void)state;
    client_ctx cl[N_CLIENTS];
    pvg_fl_round_stats rs;
    assert_int_equal(run_round(N_CLIENTS, 0, &rs, cl), 1);
    if (rs.phase != PVG_FL_PHASE_DONE) fail_msg("round aborted: %s", rs.error);
    assert_int_equal(rs.survivors, N_CLIENTS);
    for (int i = 0; i < N_CLIENTS; i++) {
        assert_int_equal(cl[i].stats.rounds, 1);
        assert_int_equal(cl[i].stats.refused, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_cohort_is_applied),
        cmocka_unit_test(test_coordinator_floor_aborts_before_unmask),
        cmocka_unit_test(test_lying_server_below_floor_gets_no_shares),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
