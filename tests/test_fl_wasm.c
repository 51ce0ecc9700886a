/*
 * test_fl_wasm.c - the browser client of federated training passes the C
 * client's exactness test. One round of federated iALS (a real model and
 * broadcast, pvg_fl_client_update's vectors, distributed discrete Gaussian
 * noise that each client, the pages too, accepts by its own DP policy and
 * draws with the exact sampler) with 3 C clients (libcurl,
 * pvg_fl_client_run) and 2 browser clients (the WebAssembly client core
 * of wasm/ in headless Chromium, on the server's page /static/fl.html,
 * driven by tests/web/fl_wasm.test.js) in one SecAgg+ session:
 *
 * - the unmasked aggregate equals the plain sum mod 2^32 of the five
 *   clients' update vectors (the masks between a browser and a C client
 *   cancel only if both derive the same X25519 secrets, BLAKE2b keys and
 *   ChaCha20 masks, and the AEAD share boxes open only if they are the same
 *   algorithm: the sum is exact only if the wasm build's primitives are
 *   byte-identical to the native ones);
 * - each browser client's update decodes like a C client's: it is the
 *   update of its history (the same vector dimension, non-zero);
 * - the recommendations computed in the page equal the native
 *   pvg_fl_client_recommend of the same broadcast and history;
 * - nothing a page sent holds its items' ids or any 16 bytes of its
 *   unmasked update, and its token went only in the Authorization header.
 *
 * The browser test skips (cmocka skip, with the reason) when the WebAssembly
 * client was not built (emcc missing: the reason in <build>/wasm/UNAVAILABLE),
 * or chromium, node or npm is absent. test_core_rules runs the client core
 * natively (the same C): it advertises, fetches the broadcast and takes part
 * or refuses by its own DP policy, refuses a non-majority threshold and a
 * wrong-length broadcast, and rejects every truncation of a STATE.
 * test_core_callback runs the core as pvg_fl_client_run drives it (the
 * native client's vector from a callback): the callback's PVG_ERR_POLICY is
 * a refused round with its reason and nothing more sent, any other error
 * stops the client, and a simulated drop stops it at its phase.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>
#include <privguide/fl.h>
#include <privguide/fl_net.h>
#include <privguide/rng.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include "fl/fl_client_core.h"

#define _GNU_SOURCE 1
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen);

#define N_C 3 /* C clients */
#define N_B 2 /* browser clients */
#define N_ALL (N_C + N_B)
#define N_ITEMS 40
#define K 8
#define HIST 6

static int run(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

/* client i's history: HIST items of a taste group */
static void history_of(int i, uint32_t *items)
{
    for (int j = 0; j < HIST; j++)
        items[j] = (uint32_t)((i % 2) * 20 + (j * 3 + i) % 20);
}

typedef struct rig {
    pthread_mutex_t mu;
    uint8_t *bc; /* round 1's broadcast */
    size_t bc_len;
    uint32_t *sum;
    size_t d;
    uint32_t survivors;
    int applies;
    pvg_fl_model *model;
} rig;

static pvg_status bc_fn(void *ctx, uint64_t round, uint8_t **out, size_t *len, pvg_error *err)
{
    rig *g = ctx;
    (void)round;
    pthread_mutex_lock(&g->mu);
    pvg_status s = pvg_fl_model_broadcast(g->model, out, len, err);
    if (s == PVG_OK && !g->bc) {
        g->bc = malloc(*len);
        memcpy(g->bc, *out, *len);
        g->bc_len = *len;
    }
    pthread_mutex_unlock(&g->mu);
    return s;
}

static pvg_status apply_fn(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                           uint32_t survivors, pvg_error *err)
{
    rig *g = ctx;
    (void)round;
    (void)err;
    pthread_mutex_lock(&g->mu);
    g->applies++;
    g->sum = malloc(d * sizeof *sum);
    memcpy(g->sum, sum, d * sizeof *sum);
    g->d = d;
    g->survivors = survivors;
    pthread_mutex_unlock(&g->mu);
    return PVG_OK;
}

typedef struct cclient {
    int index;
    const char *token;
    int port;
    uint32_t items[HIST];
    uint32_t *vec; /* its update, kept for the check */
    size_t d;
    pvg_fl_client_stats st;
    pvg_status status;
    char error[PVG_ERROR_TEXT_LEN];
} cclient;

static pvg_status c_update(void *ctx, uint64_t round, const uint8_t *bc, size_t len, uint32_t *vec,
                           size_t d, pvg_error *err)
{
    cclient *c = ctx;
    (void)round;
    pvg_rng *rng = pvg_rng_new_secure();
    float factor[K];
    pvg_status s = pvg_fl_client_update(bc, len, c->items, NULL, HIST, rng, vec, d, factor, err);
    pvg_rng_free(rng);
    if (s == PVG_OK) {
        c->vec = malloc(d * sizeof *vec);
        memcpy(c->vec, vec, d * sizeof *vec);
        c->d = d;
    }
    return s;
}

static void *c_thread(void *arg)
{
    cclient *c = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", c->port);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = url;
    o.token = c->token;
    o.rounds = 1;
    o.timeout_s = 180;
    o.update = c_update;
    o.ctx = c;
    o.rng = rng;
    pvg_error err;
    c->status = pvg_fl_client_run(&o, &c->st, &err);
    snprintf(c->error, sizeof c->error, "%s", err.text);
    pvg_rng_free(rng);
    return NULL;
}

static uint8_t *b64_decode(const char *s, size_t *n)
{
    size_t cap = strlen(s) / 4 * 3 + 3;
    uint8_t *out = malloc(cap + 1);
    if (sodium_base642bin(out, cap, s, strlen(s), NULL, n, NULL, sodium_base64_VARIANT_ORIGINAL) !=
        0) {
        free(out);
        return NULL;
    }
    return out;
}

static const char *g_wasm_dir;

static void test_browser_clients_exact_sum(void **state)
{
    (void)state;
    const char *src = getenv("PVG_SOURCE_DIR");
    assert_non_null(src);
    assert_int_equal(pvg_init(), PVG_OK);
    char webtests[PATH_MAX], cmd[4 * PATH_MAX];
    snprintf(webtests, sizeof webtests, "%s/tests/web", src);
    snprintf(cmd, sizeof cmd, "%s/node_modules/playwright-core/package.json", webtests);
    struct stat sb;
    if (stat(cmd, &sb) != 0) {
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && flock /tmp/privguide-npm-ci.lock sh -c 'test -f "
                 "node_modules/playwright-core/package.json "
                 "|| timeout 300 npm ci --no-audit --no-fund >/dev/null 2>&1'",
                 webtests);
        if (run(cmd) != 0) fail_msg("npm ci in %s failed", webtests);
    }

    char dir[] = "/tmp/pvg_test_flwasm_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char dd[128];
    snprintf(dd, sizeof dd, "%s/data", dir);
    pvg_error err;
    assert_int_equal(pvg_store_init(dd, NULL, &err), PVG_OK);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, &err), PVG_OK);
    char *tok[N_ALL];
    for (int i = 0; i < N_ALL; i++) {
        char user[32];
        snprintf(user, sizeof user, "shopper-%d", i);
        pvg_principal p;
        assert_int_equal(pvg_auth_token_issue(s, user, 3600, 0, &tok[i], &p, &err), PVG_OK);
    }
    pvg_store_free(s);

    /* the public item list; item ids the pages must never send */
    char items_path[200];
    snprintf(items_path, sizeof items_path, "%s/items.txt", dir);
    FILE *f = fopen(items_path, "w");
    assert_non_null(f);
    for (int j = 0; j < N_ITEMS; j++)
        fprintf(f, "ITEM-%02d-85123A\n", j);
    fclose(f);

    rig g;
    memset(&g, 0, sizeof g);
    pthread_mutex_init(&g.mu, NULL);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_config cfg;
    pvg_fl_config_default(&cfg);
    cfg.factors = K;
    /* distributed discrete Gaussian noise: every client (the pages too) adds
     * its share with the exact sampler, after checking the server's noise
     * against its own policy (epsilon <= 10 over the round) */
    cfg.dp = PVG_FL_DP_DISTRIBUTED;
    cfg.noise_multiplier = 1.0;
    cfg.expected_cohort = N_ALL;
    cfg.clip = 1.0;
    assert_int_equal(pvg_fl_model_new(&cfg, N_ITEMS, rng, &g.model, &err), PVG_OK);
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = (uint32_t)pvg_fl_update_dim(&cfg, N_ITEMS);
    co.sample_rate = 1.0;
    co.min_clients = N_ALL;
    co.max_rounds = 1;
    co.min_survivors = N_ALL;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 120; /* closes as soon as every message is in */
    co.broadcast = bc_fn;
    co.apply = apply_fn;
    co.ctx = &g;
    co.rng = rng;
    pvg_fl_coord *coord = NULL;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);

    char web[PATH_MAX];
    snprintf(web, sizeof web, "%s/src/server/web", src);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.web_dir = web;
    o.threads = 4;
    o.auth_failure_rate = -1;
    o.synonyms_path = "";
    o.monitor_off = 1;
    o.fl = coord;
    o.max_body_bytes = pvg_fl_coord_max_message(coord) + 1024;
    pvg_server *srv = NULL;
    if (pvg_server_start(&o, &srv, &err) != PVG_OK) fail_msg("server: %s", err.text);
    int port = pvg_server_port(srv);

    static cclient cc[N_C];
    pthread_t th[N_C];
    for (int i = 0; i < N_C; i++) {
        memset(&cc[i], 0, sizeof cc[i]);
        cc[i].index = i;
        cc[i].token = tok[i];
        cc[i].port = port;
        history_of(i, cc[i].items);
        assert_int_equal(pthread_create(&th[i], NULL, c_thread, &cc[i]), 0);
    }

    /* the browser clients: their tokens and events (native JSONL fields) */
    json_t *clients = json_array();
    for (int b = 0; b < N_B; b++) {
        uint32_t it[HIST];
        history_of(N_C + b, it);
        json_t *ev = json_array();
        for (int j = 0; j < HIST; j++) {
            char id[32];
            snprintf(id, sizeof id, "ITEM-%02u-85123A", it[j]);
            json_array_append_new(ev, json_pack("{s:s,s:s,s:s,s:i}", "type", "purchase", "user",
                                                "me", "item", id, "ts", 1000 + j));
        }
        json_array_append_new(clients, json_pack("{s:s,s:o}", "token", tok[N_C + b], "events", ev));
    }
    char *cj = json_dumps(clients, JSON_COMPACT);
    json_decref(clients);
    char clients_path[200], out_path[200];
    snprintf(clients_path, sizeof clients_path, "%s/clients.json", dir);
    snprintf(out_path, sizeof out_path, "%s/browser.json", dir);
    f = fopen(clients_path, "w");
    assert_non_null(f);
    fputs(cj, f);
    fclose(f);
    free(cj);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && PVG_BASE_URL=http://127.0.0.1:%d PVG_WASM_DIR='%s' PVG_FL_OUT='%s' "
             "PVG_FL_ITEMS='%s' PVG_FL_CLIENTS=\"$(cat '%s')\" ASAN_OPTIONS= LD_PRELOAD= "
             "timeout 240 node fl_wasm.test.js",
             webtests, port, g_wasm_dir, out_path, items_path, clients_path);
    int rc = run(cmd);

    pvg_fl_round_stats rs;
    pvg_status ws = pvg_fl_coord_wait(coord, 1, rc == 0 ? 180 : 5, &rs, &err);
    for (int i = 0; i < N_C; i++)
        pthread_join(th[i], NULL);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    assert_int_equal(rc, 0);
    assert_int_equal(ws, PVG_OK);
    for (int i = 0; i < N_C; i++)
        if (cc[i].status != PVG_OK) fail_msg("C client %d: %s", i, cc[i].error);
    if (rs.phase != PVG_FL_PHASE_DONE) fail_msg("round aborted: %s", rs.error);
    assert_int_equal(rs.cohort, N_ALL);
    assert_int_equal(rs.survivors, N_ALL);
    assert_int_equal(g.applies, 1);
    assert_int_equal(g.survivors, N_ALL);
    assert_int_equal(g.d, co.d);

    /* the browser clients' results */
    json_error_t je;
    json_t *res = json_load_file(out_path, 0, &je);
    if (!res) fail_msg("%s: %s", out_path, je.text);
    assert_int_equal(json_array_size(res), N_B);
    uint32_t *want = calloc(g.d, sizeof *want);
    for (int i = 0; i < N_C; i++) {
        assert_non_null(cc[i].vec);
        assert_int_equal(cc[i].d, g.d);
        for (size_t j = 0; j < g.d; j++)
            want[j] += cc[i].vec[j];
    }
    for (int b = 0; b < N_B; b++) {
        json_t *r = json_array_get(res, (size_t)b);
        assert_int_equal(json_integer_value(json_object_get(r, "rounds")), 1);
        assert_int_equal(json_integer_value(json_object_get(r, "refused")), 0);
        json_t *u = json_object_get(r, "update");
        assert_true(json_is_array(u));
        assert_int_equal(json_array_size(u), g.d);
        uint32_t *vec = malloc(g.d * sizeof *vec);
        size_t nonzero = 0;
        for (size_t j = 0; j < g.d; j++) {
            vec[j] = (uint32_t)json_integer_value(json_array_get(u, j));
            want[j] += vec[j];
            nonzero += vec[j] != 0;
        }
        assert_true(nonzero > g.d / 2); /* a rotated, quantised update, not zeros */

        /* recommendations in the page = the native ones for the same broadcast and history */
        uint32_t hist[HIST], top[10];
        float sc[10];
        size_t nt = 0;
        history_of(N_C + b, hist);
        assert_int_equal(
            pvg_fl_client_recommend(g.bc, g.bc_len, hist, NULL, HIST, 10, top, sc, &nt, &err),
            PVG_OK);
        json_t *recs = json_object_get(r, "recommendations");
        assert_int_equal(json_array_size(recs), nt);
        for (size_t j = 0; j < nt; j++) {
            json_t *e = json_array_get(recs, j);
            double ps = json_number_value(json_object_get(e, "score"));
            uint32_t pi = (uint32_t)json_integer_value(json_object_get(e, "index"));
            if (fabs(ps - sc[j]) > 1e-5 * (1 + fabs(sc[j])))
                fail_msg("browser %d rank %zu: score %g, native %g", b, j, ps, (double)sc[j]);
            /* the same item unless two scores tie within float rounding */
            int tie = (j > 0 && fabs(sc[j] - sc[j - 1]) < 1e-5) ||
                      (j + 1 < nt && fabs(sc[j] - sc[j + 1]) < 1e-5);
            if (!tie && pi != top[j])
                fail_msg("browser %d rank %zu: item %u, native %u", b, j, pi, top[j]);
        }

        /* the wire: no item id of its history, no 16 bytes of its update;
         * the token only in the Authorization header */
        json_t *sent = json_object_get(r, "sent");
        assert_true(json_array_size(sent) >= 6); /* join, state polls, broadcast, 4 messages */
        size_t posts = 0;
        for (size_t k = 0; k < json_array_size(sent); k++) {
            json_t *q = json_array_get(sent, k);
            const char *url = json_string_value(json_object_get(q, "url"));
            size_t bl = 0;
            uint8_t *body = b64_decode(json_string_value(json_object_get(q, "body")), &bl);
            assert_non_null(body);
            if (strstr(url, "/v1/fl/messages")) posts++;
            assert_null(strstr(url, "85123A"));
            assert_null(strstr(url, tok[N_C + b]));
            for (int j = 0; j < HIST; j++) {
                char id[32];
                snprintf(id, sizeof id, "ITEM-%02u", hist[j]);
                assert_null(memmem(body, bl, id, strlen(id)));
            }
            assert_null(memmem(body, bl, tok[N_C + b], strlen(tok[N_C + b])));
            for (size_t j = 0; j + 4 <= g.d && bl >= 16; j += 4)
                assert_null(memmem(body, bl, &vec[j], 16));
            json_t *h = json_object_get(json_object_get(q, "headers"), "authorization");
            if (strstr(url, "/v1/fl/")) {
                char want_h[600];
                snprintf(want_h, sizeof want_h, "Bearer %s", tok[N_C + b]);
                assert_string_equal(json_string_value(h), want_h);
            }
            free(body);
        }
        assert_int_equal(posts, 4); /* ADVERTISE, SHARES, MASKED, UNMASK */
        free(vec);
    }
    /* the aggregate is exact: the plain sum of all five clients' vectors */
    assert_memory_equal(g.sum, want, g.d * sizeof *want);
    /* and the check can fail: without one browser client's vector it differs */
    {
        json_t *u = json_object_get(json_array_get(res, 0), "update");
        size_t differ = 0;
        for (size_t j = 0; j < g.d; j++)
            differ += (uint32_t)(want[j] - (uint32_t)json_integer_value(json_array_get(u, j))) !=
                      g.sum[j];
        assert_true(differ > 0);
    }
    json_decref(res);
    free(want);
    for (int i = 0; i < N_C; i++)
        free(cc[i].vec);
    for (int i = 0; i < N_ALL; i++)
        pvg_auth_credential_free(tok[i]);
    free(g.sum);
    free(g.bc);
    pvg_fl_model_free(g.model);
    pvg_rng_free(rng);
    pthread_mutex_destroy(&g.mu);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void)run(cmd);
}

/* ---- the client core without a transport (native build of the same C) ---- */

static size_t state_of(uint8_t *b, const pvg_secagg_params *p, int phase, int submitted,
                       uint32_t bc_len)
{
    memset(b, 0, 80);
    memcpy(b, "PVFL", 4);
    b[4] = 1;
    b[5] = 1;
    b[8] = 1; /* round 1 */
    b[16] = (uint8_t)phase;
    b[17] = (uint8_t)(submitted ? 1 : 0);
    b[18] = 32;
    uint32_t f[] = {0, p->n, p->k, p->t, p->d, 0, 0, 0, 0, 1000, 10, bc_len, 0, 0};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            b[20 + 4 * i + j] = (uint8_t)(f[i] >> (8 * j));
    memcpy(b + 40, p->session, 16);
    for (int i = 9; i < 12; i++)
        for (int j = 0; j < 4; j++)
            b[56 + 4 * (i - 9) + j] = (uint8_t)(f[i] >> (8 * j));
    return 80;
}

/* Advertises, asks for the broadcast, and then takes part or refuses by its
 * own DP policy; a wrong-length broadcast, a non-majority threshold and every
 * truncation of a STATE are refused without reading past the end. */
static void test_core_rules(void **state)
{
    (void)state;
    assert_int_equal(pvg_init(), PVG_OK);
    pvg_error err;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_config cfg;
    pvg_fl_config_default(&cfg);
    cfg.factors = K;
    pvg_fl_model *m = NULL;
    assert_int_equal(pvg_fl_model_new(&cfg, N_ITEMS, rng, &m, &err), PVG_OK);
    uint8_t *bc = NULL;
    size_t bl = 0;
    assert_int_equal(pvg_fl_model_broadcast(m, &bc, &bl, &err), PVG_OK);
    pvg_secagg_params p = {5, 4, 3, (uint32_t)pvg_fl_update_dim(&cfg, N_ITEMS), 32, {0}, 0};
    randombytes_buf(p.session, sizeof p.session);
    uint32_t hist[HIST];
    history_of(0, hist);
    uint8_t st[80];
    for (int allow = 0; allow <= 1; allow++) {
        pvg_fl_core_policy pol = {allow, 10, 1e-5, 1, 0, 0};
        pvg_fl_core *c = NULL;
        assert_int_equal(pvg_fl_core_new(hist, NULL, HIST, &pol, 1, rng, 0, 1, &c, &err), PVG_OK);
        int action;
        uint32_t wait;
        uint64_t round;
        const uint8_t *msg;
        size_t ml;
        size_t n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 0, (uint32_t)bl);
        assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                         PVG_OK);
        assert_int_equal(action, PVG_FL_CORE_SEND);
        assert_true(ml > 4 && memcmp(msg, "PVSA", 4) == 0);
        n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 1, (uint32_t)bl);
        assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                         PVG_OK);
        assert_int_equal(action, PVG_FL_CORE_BROADCAST);
        assert_int_equal(round, 1);
        /* a broadcast of another length than the STATE announced */
        if (allow) {
            assert_int_equal(pvg_fl_core_broadcast(c, 1, bc, bl - 1, &err), PVG_ERR_INVALID);
            pvg_fl_core_free(c);
            assert_int_equal(pvg_fl_core_new(hist, NULL, HIST, &pol, 1, rng, 0, 1, &c, &err),
                             PVG_OK);
            n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 0, (uint32_t)bl);
            assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                             PVG_OK);
            n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 1, (uint32_t)bl);
            assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                             PVG_OK);
            assert_int_equal(action, PVG_FL_CORE_BROADCAST);
        }
        assert_int_equal(pvg_fl_core_broadcast(c, 1, bc, bl, &err), PVG_OK);
        uint32_t rounds, refused;
        const char *why;
        pvg_fl_core_stats(c, &rounds, &refused, &why);
        size_t d = 0;
        const uint32_t *u = pvg_fl_core_last_update(c, &d);
        if (allow) {
            assert_int_equal(refused, 0);
            assert_non_null(u);
            assert_int_equal(d, p.d);
        } else { /* the server asked for no noise: no update is made */
            assert_int_equal(refused, 1);
            assert_non_null(strstr(why, "no DP noise"));
            assert_null(u);
            /* and nothing more is sent in that round */
            n = state_of(st, &p, PVG_FL_PHASE_SHARE, 0, (uint32_t)bl);
            assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                             PVG_OK);
            assert_int_equal(action, PVG_FL_CORE_WAIT);
        }
        /* recommendations on device from the broadcast it received */
        uint32_t top[5];
        float sc[5];
        size_t nt = 0;
        pvg_status rs = pvg_fl_core_recommend(c, 5, top, sc, &nt, &err);
        assert_int_equal(rs, allow ? PVG_OK : PVG_ERR_STATE);
        if (allow) assert_int_equal(nt, 5);
        pvg_fl_core_free(c);
    }
    /* a threshold that is not a strict majority: refused before advertising */
    {
        pvg_fl_core_policy pol = {1, 10, 1e-5, 1, 0, 0};
        pvg_fl_core *c = NULL;
        assert_int_equal(pvg_fl_core_new(hist, NULL, HIST, &pol, 1, rng, 0, 0, &c, &err), PVG_OK);
        pvg_secagg_params q = p;
        q.t = 2;
        int action;
        uint32_t wait, refused;
        uint64_t round;
        const uint8_t *msg;
        size_t ml, n = state_of(st, &q, PVG_FL_PHASE_ADVERTISE, 0, (uint32_t)bl);
        assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                         PVG_OK);
        assert_int_equal(action, PVG_FL_CORE_WAIT);
        assert_null(msg);
        pvg_fl_core_stats(c, NULL, &refused, NULL);
        assert_int_equal(refused, 1);
        /* every truncation of a STATE is an error, read within its length */
        for (size_t len = 0; len < 80; len++) {
            uint8_t *t = malloc(len ? len : 1);
            memcpy(t, st, len);
            assert_int_equal(pvg_fl_core_state(c, t, len, &action, &wait, &round, &msg, &ml, &err),
                             PVG_ERR_INVALID);
            free(t);
        }
        pvg_fl_core_free(c);
    }
    /* a client that knows its catalogue (N_ITEMS) refuses a session longer than that
       catalogue can need before allocating it, and any client refuses a broadcast
       announced beyond the largest legal one for the session, before fetching it */
    {
        pvg_fl_core_policy pol = {1, 10, 1e-5, 1, 0, N_ITEMS};
        pvg_fl_core *c = NULL;
        assert_int_equal(pvg_fl_core_new(hist, NULL, HIST, &pol, 1, rng, 0, 0, &c, &err), PVG_OK);
        pvg_secagg_params q = p;
        q.d = 1u << 28;
        int action;
        uint32_t wait, refused;
        uint64_t round;
        const uint8_t *msg;
        size_t ml, n = state_of(st, &q, PVG_FL_PHASE_ADVERTISE, 0, 0xffffffffu);
        assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                         PVG_OK);
        assert_int_equal(action, PVG_FL_CORE_WAIT);
        assert_null(msg);
        const char *why;
        pvg_fl_core_stats(c, NULL, &refused, &why);
        assert_int_equal(refused, 1);
        assert_non_null(strstr(why, "catalogue can need"));
        pvg_fl_core_free(c);
        /* the session's own d, a broadcast announced far beyond its largest */
        for (int know = 0; know <= 1; know++) {
            pol.catalogue_items = know ? N_ITEMS : 0;
            assert_int_equal(pvg_fl_core_new(hist, NULL, HIST, &pol, 1, rng, 0, 0, &c, &err),
                             PVG_OK);
            n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 0, 0xffffffffu);
            assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                             PVG_OK);
            assert_int_equal(action, PVG_FL_CORE_SEND);
            n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 1, 0xffffffffu);
            assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err),
                             PVG_ERR_INVALID);
            assert_non_null(strstr(err.text, "broadcast_len"));
            pvg_fl_core_free(c);
        }
    }
    pvg_free(bc);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
}

/* pvg_fl_client_run's vectors: a callback (ctx: what it answers) */
static pvg_status cb_update(void *ctx, uint64_t round, const uint8_t *bc, size_t len, uint32_t *vec,
                            size_t d, pvg_error *err)
{
    (void)round;
    (void)bc;
    (void)len;
    pvg_status want = *(const pvg_status *)ctx;
    if (want != PVG_OK) return pvg_error_set(err, want, "the callback says no (%d)", (int)want);
    for (size_t i = 0; i < d; i++)
        vec[i] = (uint32_t)i;
    return PVG_OK;
}

/* Advertise, then the broadcast of round 1 (bl bytes) is due. */
static void core_to_broadcast(pvg_fl_core *c, const pvg_secagg_params *p, uint32_t bl)
{
    uint8_t st[80];
    int action;
    uint32_t wait;
    uint64_t round;
    const uint8_t *msg;
    size_t ml;
    pvg_error err;
    size_t n = state_of(st, p, PVG_FL_PHASE_ADVERTISE, 0, bl);
    assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err), PVG_OK);
    assert_int_equal(action, PVG_FL_CORE_SEND);
    assert_int_equal(pvg_fl_core_broadcast_len(c), 0); /* none due yet */
    n = state_of(st, p, PVG_FL_PHASE_ADVERTISE, 1, bl);
    assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err), PVG_OK);
    assert_int_equal(action, PVG_FL_CORE_BROADCAST);
    assert_int_equal(round, 1);
    assert_int_equal(pvg_fl_core_broadcast_len(c), bl);
}

/* A server that advertises a small update and then, within the round,
 * announces a larger one (to make the client allocate past its catalogue's
 * bound before the broadcast is read) gets the round refused, not a
 * broadcast request. */
static void test_core_d_fixed_in_round(void **state)
{
    (void)state;
    assert_int_equal(pvg_init(), PVG_OK);
    pvg_error err;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_secagg_params p = {5, 4, 3, 16, 32, {0}, 0};
    randombytes_buf(p.session, sizeof p.session);
    pvg_status answer = PVG_OK;
    pvg_fl_core *c = NULL;
    assert_int_equal(pvg_fl_core_new_fn(cb_update, &answer, 1, 0, 0, rng, 0, &c, &err), PVG_OK);
    uint8_t st[80];
    int action;
    uint32_t wait, rounds, refused;
    uint64_t round;
    const uint8_t *msg;
    size_t ml;
    const char *why;
    size_t n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 0, 40);
    assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err), PVG_OK);
    assert_int_equal(action, PVG_FL_CORE_SEND);
    pvg_secagg_params big = p;
    big.d = 1u << 28;
    n = state_of(st, &big, PVG_FL_PHASE_ADVERTISE, 1, 88);
    assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err), PVG_OK);
    assert_int_not_equal(action, PVG_FL_CORE_BROADCAST);
    assert_int_equal(pvg_fl_core_broadcast_len(c), 0);
    pvg_fl_core_stats(c, &rounds, &refused, &why);
    assert_int_equal(refused, 1);
    assert_non_null(strstr(why, "changed the update"));
    pvg_fl_core_free(c);
    pvg_rng_free(rng);
}

static void test_core_callback(void **state)
{
    (void)state;
    assert_int_equal(pvg_init(), PVG_OK);
    pvg_error err;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_secagg_params p = {5, 4, 3, 16, 32, {0}, 0};
    randombytes_buf(p.session, sizeof p.session);
    const uint8_t bc[40] = {1, 2, 3}; /* any bytes: the callback's business */
    uint8_t st[80];
    int action;
    uint32_t wait, rounds, refused;
    uint64_t round;
    const uint8_t *msg;
    size_t ml, n;
    const char *why;
    pvg_status answer = PVG_ERR_POLICY;
    pvg_fl_core *c = NULL;
    assert_int_equal(pvg_fl_core_new_fn(NULL, NULL, 1, 0, 0, rng, 0, &c, &err), PVG_ERR_INVALID);
    /* the callback refuses: a refused round with its reason, nothing more sent */
    assert_int_equal(pvg_fl_core_new_fn(cb_update, &answer, 1, 0, 0, rng, 0, &c, &err), PVG_OK);
    core_to_broadcast(c, &p, sizeof bc);
    assert_int_equal(pvg_fl_core_broadcast(c, 1, bc, sizeof bc, &err), PVG_OK);
    pvg_fl_core_stats(c, &rounds, &refused, &why);
    assert_int_equal(rounds, 0);
    assert_int_equal(refused, 1);
    assert_non_null(strstr(why, "round 1: the callback says no"));
    n = state_of(st, &p, PVG_FL_PHASE_SHARE, 0, sizeof bc);
    assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err), PVG_OK);
    assert_int_equal(action, PVG_FL_CORE_WAIT);
    assert_null(msg);
    pvg_fl_core_free(c);
    /* any other error of the callback stops the client */
    answer = PVG_ERR_INTERNAL;
    assert_int_equal(pvg_fl_core_new_fn(cb_update, &answer, 1, 0, 0, rng, 0, &c, &err), PVG_OK);
    core_to_broadcast(c, &p, sizeof bc);
    assert_int_equal(pvg_fl_core_broadcast(c, 1, bc, sizeof bc, &err), PVG_ERR_INTERNAL);
    assert_non_null(strstr(err.text, "the callback says no"));
    pvg_fl_core_free(c);
    /* simulated drops: before advertising, and at the share phase after the update */
    answer = PVG_OK;
    assert_int_equal(pvg_fl_core_new_fn(cb_update, &answer, 1, 0, 0, rng, 0, &c, &err), PVG_OK);
    pvg_fl_core_set_drop_phase(c, PVG_FL_PHASE_ADVERTISE);
    n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 0, sizeof bc);
    assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err), PVG_OK);
    assert_int_equal(action, PVG_FL_CORE_FINISHED);
    assert_null(msg);
    pvg_fl_core_free(c);
    assert_int_equal(pvg_fl_core_new_fn(cb_update, &answer, 1, 0, 0, rng, 0, &c, &err), PVG_OK);
    pvg_fl_core_set_drop_phase(c, PVG_FL_PHASE_SHARE);
    core_to_broadcast(c, &p, sizeof bc);
    assert_int_equal(pvg_fl_core_broadcast(c, 1, bc, sizeof bc, &err), PVG_OK);
    n = state_of(st, &p, PVG_FL_PHASE_SHARE, 0, sizeof bc);
    assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err), PVG_OK);
    assert_int_equal(action, PVG_FL_CORE_FINISHED);
    pvg_fl_core_stats(c, &rounds, &refused, NULL);
    assert_int_equal(refused, 0);
    pvg_fl_core_free(c);
    /* a session longer than the caller's max_d: refused before anything is allocated */
    assert_int_equal(pvg_fl_core_new_fn(cb_update, &answer, 1, 8, 0, rng, 0, &c, &err), PVG_OK);
    n = state_of(st, &p, PVG_FL_PHASE_ADVERTISE, 0, sizeof bc);
    assert_int_equal(pvg_fl_core_state(c, st, n, &action, &wait, &round, &msg, &ml, &err), PVG_OK);
    assert_int_equal(action, PVG_FL_CORE_WAIT);
    pvg_fl_core_stats(c, NULL, &refused, &why);
    assert_int_equal(refused, 1);
    assert_non_null(strstr(why, "d = 16"));
    pvg_fl_core_free(c);
    pvg_rng_free(rng);
}

static char g_skip[600];

static void test_browser_clients(void **state)
{
    if (g_skip[0]) {
        printf("SKIP: %s\n", g_skip);
        skip();
    }
    test_browser_clients_exact_sum(state);
}

static void why_skip(void)
{
    char p[PATH_MAX];
    g_wasm_dir = getenv("PVG_WASM_DIR");
    if (!g_wasm_dir) {
        snprintf(g_skip, sizeof g_skip, "PVG_WASM_DIR is not set (run through ctest)");
        return;
    }
    snprintf(p, sizeof p, "%s/pvg_fl_client.wasm", g_wasm_dir);
    if (access(p, R_OK) != 0) {
        snprintf(g_skip, sizeof g_skip,
                 "the WebAssembly client was not built (cmake found no emcc: apt-get install "
                 "emscripten, then reconfigure)");
        snprintf(p, sizeof p, "%s/UNAVAILABLE", g_wasm_dir);
        FILE *f = fopen(p, "r");
        if (f) {
            if (!fgets(g_skip, sizeof g_skip, f)) g_skip[0] = 0;
            fclose(f);
            g_skip[strcspn(g_skip, "\n")] = 0;
            if (!g_skip[0]) snprintf(g_skip, sizeof g_skip, "the WebAssembly client is not built");
        }
        return;
    }
    if (access("/usr/bin/chromium", X_OK) != 0)
        snprintf(g_skip, sizeof g_skip,
                 "/usr/bin/chromium is not installed (apt-get install chromium)");
    else if (run("command -v node >/dev/null && command -v npm >/dev/null") != 0)
        snprintf(g_skip, sizeof g_skip, "node and npm are needed for the browser tests");
    else if (run("node -e 'process.exit(parseInt(process.versions.node) >= 20 ? 0 : 1)'") != 0)
        snprintf(g_skip, sizeof g_skip, "the browser tests need Node.js >= 20 (playwright-core)");
}

int main(void)
{
    why_skip();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core_rules),
        cmocka_unit_test(test_core_callback),
        cmocka_unit_test(test_core_d_fixed_in_round),
        cmocka_unit_test(test_browser_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
