/*
 * test_fl_wasm.c - the browser client of federated training passes the C
 * client's exactness test. One round of federated iALS (a real model and
 * broadcast, pvg_fl_client_update's vectors, distributed discrete Gaussian
 * noise that each client, the pages too, accepts by its own DP policy and
 * draws with the exact sampler) with 3 C clients (libcurl,
 * pvg_fl_client_run) and 3 browser clients (the WebAssembly client core
 * of wasm/ in headless Chromium, on the server's page /static/fl.html,
 * driven by tests/web/fl_wasm.test.js) in one SecAgg+ session:
 *
 * - the unmasked aggregate equals the plain sum mod 2^32 of the six
 *   clients' update vectors (the masks between a browser and a C client
 *   cancel only if both derive the same X25519 secrets, BLAKE2b keys and
 *   masks (ChaCha8, the default; the reload test's session takes ChaCha20,
 *   the wasm build's libsodium path), and the AEAD share boxes open only if they are the same
 *   algorithm: the sum is exact only if the wasm build's primitives are
 *   byte-identical to the native ones);
 * - each browser client's update decodes like a C client's: it is the
 *   update of its history (the same vector dimension, non-zero);
 * - the recommendations computed in the page equal the native
 *   pvg_fl_client_recommend of the same broadcast and history;
 * - nothing a page sent holds its items' ids or any 16 bytes of its
 *   unmasked update, and its token went only in the Authorization header;
 * - the pages' polling: one long-polls (GET /v1/fl/state?wait=, through
 *   the core's pvg_fl_core_wait_query) and makes at least 3x fewer STATE
 *   requests than one that polls at retry_ms in the same round; one facing
 *   a server that does not long-poll (the script strips ?wait=) falls back
 *   to retry_ms, after honouring a 503's Retry-After.
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
#include <privguide/dp.h>
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
#include <time.h>
#include <unistd.h>

void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen);

#define N_C 3 /* C clients */
#define N_B 3 /* browser clients: one of each polling mode */
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
    uint8_t *bc; /* the last round's broadcast */
    size_t bc_len;
    uint32_t *sum;
    size_t d;
    uint32_t survivors;
    uint32_t survivors_of[4]; /* the survivors of each applied sum, in order */
    int applies;
    pvg_fl_model *model;
} rig;

static pvg_status bc_fn(void *ctx, uint64_t round, uint8_t **out, size_t *len, pvg_error *err)
{
    rig *g = ctx;
    (void)round;
    pthread_mutex_lock(&g->mu);
    pvg_status s = pvg_fl_model_broadcast(g->model, out, len, err);
    if (s == PVG_OK) {
        free(g->bc);
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
    if (g->applies < 4) g->survivors_of[g->applies] = survivors;
    g->applies++;
    free(g->sum);
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
    uint32_t rounds; /* 0: 1 */
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
        free(c->vec);
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
    o.rounds = c->rounds ? c->rounds : 1;
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

/* the browser clients' polling (tests/web/fl_wasm.test.js): long polls, plain
 * polls at retry_ms, and long polls against a server that does not honour
 * them (the script strips ?wait=), whose first wait gets 503 Retry-After: 1 */
static const char *const b_mode[N_B] = {"long", "plain", "old"};

/* The coordinator's clock: it stands at 0 (no round starts: start_delay 1)
 * until tests/web/fl_wasm.test.js creates the release file, then runs from 1
 * in real time. The round waits until the script has seen the pages poll
 * (every page joined, the plain one made 60 STATE requests since), not for a
 * fixed time. */
static char g_release[220];
static pthread_mutex_t g_release_mu = PTHREAD_MUTEX_INITIALIZER;
static double g_release_at = -1;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double hold_clock(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&g_release_mu);
    if (g_release_at < 0 && access(g_release, F_OK) == 0) g_release_at = mono_now();
    double t = g_release_at < 0 ? 0 : 1.0 + (mono_now() - g_release_at);
    pthread_mutex_unlock(&g_release_mu);
    return t;
}

/* the STATE requests a page made, and the long polls among them */
static void state_requests(json_t *sent, size_t *states, size_t *waits)
{
    *states = *waits = 0;
    for (size_t k = 0; k < json_array_size(sent); k++) {
        const char *url = json_string_value(json_object_get(json_array_get(sent, k), "url"));
        if (!strstr(url, "/v1/fl/state")) continue;
        (*states)++;
        if (strstr(url, "/v1/fl/state?wait=1.")) (*waits)++;
    }
}

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
    /* the round starts once the script releases the clock (hold_clock): a client
       with nothing to do meanwhile either waits parked or polls every retry_ms */
    snprintf(g_release, sizeof g_release, "%s/release", dir);
    co.clock = hold_clock;
    co.start_delay = 1;
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
        json_array_append_new(clients, json_pack("{s:s,s:o,s:s}", "token", tok[N_C + b], "events",
                                                 ev, "mode", b_mode[b]));
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
             "PVG_FL_RELEASE='%s' "
             "PVG_FL_ITEMS='%s' PVG_FL_CLIENTS=\"$(cat '%s')\" ASAN_OPTIONS= LD_PRELOAD= "
             "timeout 240 node fl_wasm.test.js",
             webtests, port, g_wasm_dir, out_path, g_release, items_path, clients_path);
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
    /* the polling: the long-polling page asks far fewer STATEs than the plain
       one for the same round, the plain one never asks to wait, and the page
       facing a server without long polls honoured the 503's Retry-After (no
       wait asked for 1 s, plain polls meanwhile) and then, seeing an answer to
       its wait without the "waited" flag, polled at retry_ms from then on */
    {
        size_t states[N_B], waits[N_B];
        for (int b = 0; b < N_B; b++) {
            json_t *r = json_array_get(res, (size_t)b);
            state_requests(json_object_get(r, "sent"), &states[b], &waits[b]);
            json_t *st = json_object_get(r, "stats");
            assert_int_equal(json_integer_value(json_object_get(st, "stateRequests")), states[b]);
            assert_int_equal(json_integer_value(json_object_get(st, "longPolls")), waits[b]);
            printf("browser client %d (%s): %zu STATE requests, %zu long polls\n", b, b_mode[b],
                   states[b], waits[b]);
        }
        json_t *st0 = json_object_get(json_array_get(res, 0), "stats");
        assert_true(waits[0] >= 1);
        assert_true(json_is_false(json_object_get(st0, "fellBack")));
        assert_int_equal(json_integer_value(json_object_get(st0, "busy")), 0);
        assert_int_equal(waits[1], 0);
        if (states[0] * 3 > states[1])
            fail_msg("long polling made %zu STATE requests, plain polling %zu: not 3x fewer",
                     states[0], states[1]);
        /* while the round was held (every page joined, nothing changes), the plain page
           polled >= 60 times and the long-polling one stayed parked: at most the wait it
           was in and one more (a wait the server cut at its bound) */
        json_t *hold = json_object_get(json_array_get(res, 0), "hold");
        double h0 = json_number_value(json_object_get(hold, "allJoinedMs"));
        double h1 = json_number_value(json_object_get(hold, "releaseMs"));
        assert_true(h0 >= 0 && h1 > h0);
        size_t in_hold[2] = {0, 0};
        for (int b = 0; b < 2; b++) {
            json_t *sent = json_object_get(json_array_get(res, (size_t)b), "sent");
            for (size_t k = 0; k < json_array_size(sent); k++) {
                json_t *q = json_array_get(sent, k);
                double ms = json_number_value(json_object_get(q, "ms"));
                if (strstr(json_string_value(json_object_get(q, "url")), "/v1/fl/state") &&
                    ms >= h0 && ms <= h1)
                    in_hold[b]++;
            }
        }
        printf("while the round was held (%.0f ms): long polling %zu STATE requests, plain %zu\n",
               h1 - h0, in_hold[0], in_hold[1]);
        assert_true(in_hold[1] >= 60);
        assert_true(in_hold[0] <= 2);
        json_t *r2 = json_array_get(res, 2), *inj = json_object_get(r2, "injected");
        assert_int_equal(json_array_size(inj), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(inj, 0), "kind")),
                            "503");
        assert_string_equal(json_string_value(json_object_get(json_array_get(inj, 1), "kind")),
                            "stripped");
        assert_int_equal(waits[2], 2); /* the one refused, the one unanswered as a wait */
        json_t *st2 = json_object_get(r2, "stats");
        assert_true(json_is_true(json_object_get(st2, "fellBack")));
        assert_int_equal(json_integer_value(json_object_get(st2, "busy")), 1);
        /* between the 503 and the next wait: >= 1 s and plain polls */
        json_t *sent = json_object_get(r2, "sent");
        double t503 = -1, tnext = -1;
        size_t plain_between = 0;
        for (size_t k = 0; k < json_array_size(sent); k++) {
            json_t *q = json_array_get(sent, k);
            const char *url = json_string_value(json_object_get(q, "url"));
            double ms = json_number_value(json_object_get(q, "ms"));
            if (strstr(url, "/v1/fl/state?wait=")) {
                if (t503 < 0)
                    t503 = ms;
                else if (tnext < 0)
                    tnext = ms;
            } else if (strstr(url, "/v1/fl/state") && t503 >= 0 && tnext < 0) {
                plain_between++;
            }
        }
        assert_true(t503 >= 0 && tnext >= 0);
        if (tnext - t503 < 1000)
            fail_msg("the next wait came %.0f ms after a 503 with Retry-After: 1", tnext - t503);
        assert_true(plain_between >= 1);
    }
    /* the aggregate is exact: the plain sum of all six clients' vectors */
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

/* ---- the browser's discrete Gaussian sampler, statistically ---- */

/* The exact discrete Gaussian of variance parameter sigma2 over [-L, L],
 * L = ceil(12 sigma) + 2 (the mass beyond is below e^-72): pmf, variance,
 * fourth moment, P(|X| > c sigma) for c = 2, 3. */
typedef struct dg_exact {
    double sigma2, var, m4, tail[2];
    int64_t L;
    double *p; /* p[x + L] */
} dg_exact;

static void dg_exact_of(double sigma2, dg_exact *e)
{
    memset(e, 0, sizeof *e);
    e->sigma2 = sigma2;
    double sigma = sqrt(sigma2);
    e->L = (int64_t)ceil(12 * sigma) + 2;
    e->p = malloc((size_t)(2 * e->L + 1) * sizeof *e->p);
    assert_non_null(e->p);
    double z = 0;
    for (int64_t x = -e->L; x <= e->L; x++)
        z += e->p[x + e->L] = exp(-(double)x * (double)x / (2 * sigma2));
    for (int64_t x = -e->L; x <= e->L; x++) {
        double p = e->p[x + e->L] /= z, xx = (double)x * (double)x;
        e->var += xx * p;
        e->m4 += xx * xx * p;
        for (int c = 0; c < 2; c++)
            if (fabs((double)x) > (c + 2) * sigma) e->tail[c] += p;
    }
    /* the same distribution as the library's own pmf */
    double lib = pvg_dp_discrete_gaussian_pmf(sigma2, 0);
    assert_true(fabs(e->p[e->L] - lib) <= 1e-9 * lib);
}

/* The upper 1e-6 quantile of chi-square with df degrees of freedom
 * (Wilson-Hilferty; z = 4.7534 is the normal's upper 1e-6 quantile). */
static double chi2_crit_1e6(int df)
{
    double a = 2.0 / (9.0 * df), t = 1 - a + 4.753424 * sqrt(a);
    return df * t * t * t;
}

#define DG_Z 5.33 /* two-sided normal bound: false alarm below 1e-7 */

/* Whether n draws x agree with the exact distribution: chi-square over
 * bins of about 1/50 of the mass each (the tails merged) at significance
 * 1e-6, and the mean, second moment and the mass beyond 2 and 3 sigma
 * each within DG_Z standard errors. why gets the first failure. */
static int dg_agrees(const int32_t *x, size_t n, const dg_exact *e, char *why, size_t wl)
{
    int64_t L = e->L, span = 2 * L + 1;
    int *bin = malloc((size_t)span * sizeof *bin);
    double *mass = calloc((size_t)span, sizeof *mass);
    size_t *cnt = calloc((size_t)span, sizeof *cnt);
    assert_true(bin && mass && cnt);
    int nb = 0;
    double acc = 0;
    for (int64_t i = 0; i < span; i++) {
        bin[i] = nb;
        acc += e->p[i];
        if (acc >= 1.0 / 50) {
            mass[nb++] = acc;
            acc = 0;
        }
    }
    if (acc > 0) { /* the right tail: into the last bin */
        if (nb == 0) nb = 1;
        for (int64_t i = span - 1; i >= 0 && bin[i] == nb; i--)
            bin[i] = nb - 1;
        mass[nb - 1] += acc;
    }
    double sum = 0, sum2 = 0, sigma = sqrt(e->sigma2);
    size_t tails[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        int64_t v = x[i];
        int64_t at = v < -L ? 0 : v > L ? span - 1 : v + L;
        cnt[bin[at]]++;
        sum += (double)v;
        sum2 += (double)v * (double)v;
        for (int c = 0; c < 2; c++)
            if (fabs((double)v) > (c + 2) * sigma) tails[c]++;
    }
    double chi2 = 0;
    for (int b = 0; b < nb; b++) {
        double want = mass[b] * (double)n;
        chi2 += ((double)cnt[b] - want) * ((double)cnt[b] - want) / want;
    }
    free(bin);
    free(mass);
    free(cnt);
    double dn = (double)n;
    double mean_z = (sum / dn) / sqrt(e->var / dn);
    double var_z = (sum2 / dn - e->var) / sqrt((e->m4 - e->var * e->var) / dn);
    double tail_z[2];
    for (int c = 0; c < 2; c++)
        tail_z[c] = ((double)tails[c] / dn - e->tail[c]) /
                    sqrt(e->tail[c] * (1 - e->tail[c]) / dn + 1e-300);
    double crit = nb > 1 ? chi2_crit_1e6(nb - 1) : INFINITY;
    if (nb < 2 || chi2 > crit)
        snprintf(why, wl, "chi-square %.1f over %d bins, the 1e-6 critical value is %.1f", chi2, nb,
                 crit);
    else if (fabs(mean_z) > DG_Z)
        snprintf(why, wl, "mean %g: %.1f standard errors from 0", sum / dn, mean_z);
    else if (fabs(var_z) > DG_Z)
        snprintf(why, wl, "second moment %g, exact %g: %.1f standard errors", sum2 / dn, e->var,
                 var_z);
    else if (fabs(tail_z[0]) > DG_Z || fabs(tail_z[1]) > DG_Z)
        snprintf(why, wl, "mass beyond 2 and 3 sigma %.1f and %.1f standard errors off", tail_z[0],
                 tail_z[1]);
    else {
        snprintf(why, wl,
                 "chi-square %.1f (%d bins, critical %.1f), mean %.2f, second moment %.2f, "
                 "tails %.2f %.2f standard errors",
                 chi2, nb, crit, mean_z, var_z, tail_z[0], tail_z[1]);
        return 1;
    }
    return 0;
}

static int32_t *read_draws(const char *dir, int i, size_t n)
{
    char p[300];
    snprintf(p, sizeof p, "%s/dg_%d.bin", dir, i);
    FILE *f = fopen(p, "rb");
    if (!f) fail_msg("%s: not written", p);
    int32_t *x = malloc(n * sizeof *x);
    assert_non_null(x);
    size_t got = fread(x, sizeof *x, n, f);
    fclose(f);
    if (got != n) fail_msg("%s: %zu draws, %zu expected", p, got, n);
    return x;
}

/* The discrete Gaussian sampler of the WebAssembly build (the one every
 * browser client draws its distributed-noise share with), in headless
 * Chromium: 200,000 draws at each of sigma = 0.5, 3, 40 and ~18,919 (a
 * share's scale at a fine granularity) agree with the exact distribution
 * (dg_agrees: chi-square, mean, second moment, tails, each at a false-alarm
 * level of 1e-6 or below; the draws come from the deterministic test
 * generator with fixed seeds, so the verdict is reproducible and cannot
 * flake), and are the very draws of the native build for the same seeds
 * (the same integers: mini-gmp and GMP, wasm32 and x86-64). And the check
 * can fail: the browser's draws at sigma = 3.1, and the sigma = 3 draws
 * with one in ten moved up by 1 (a biased sampler), are rejected as
 * sigma = 3. */
static void test_browser_sampler_exact(void)
{
    static const struct {
        uint64_t num, den, seed;
        double sigma2; /* what the draws are checked against */
    } cf[] = {{1, 4, 11, 0.25},
              {9, 1, 12, 9},
              {1600, 1, 13, 1600},
              {357913941, 1, 14, 357913941},
              {961, 100, 15, 9}}; /* sigma 3.1 drawn, checked as 3: must fail */
    enum { NCF = sizeof cf / sizeof cf[0] };
    const size_t n = 200000;
    const char *src = getenv("PVG_SOURCE_DIR");
    assert_non_null(src);
    assert_int_equal(pvg_init(), PVG_OK);
    char dir[] = "/tmp/pvg_test_flsampler_XXXXXX";
    assert_non_null(mkdtemp(dir));
    json_t *cj = json_array();
    for (int i = 0; i < NCF; i++)
        json_array_append_new(cj, json_pack("{s:I,s:I,s:I,s:I}", "num", (json_int_t)cf[i].num,
                                            "den", (json_int_t)cf[i].den, "seed",
                                            (json_int_t)cf[i].seed, "n", (json_int_t)n));
    char *cs = json_dumps(cj, JSON_COMPACT);
    json_decref(cj);
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "cd '%s/tests/web' && PVG_WASM_DIR='%s' PVG_DG_OUT='%s' PVG_DG_CONFIGS='%s' "
             "ASAN_OPTIONS= LD_PRELOAD= timeout 150 node fl_sampler.test.js",
             src, g_wasm_dir, dir, cs);
    free(cs);
    assert_int_equal(run(cmd), 0);
    char why[300];
    for (int i = 0; i < NCF; i++) {
        int32_t *x = read_draws(dir, i, n);
        /* the native build's draws for the same seed: the same integers */
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(cf[i].seed);
        for (size_t j = 0; j < n; j++) {
            int64_t v = pvg_dp_discrete_gaussian(rng, cf[i].num, cf[i].den);
            if (v != x[j])
                fail_msg("sigma^2 %llu/%llu draw %zu: browser %d, native %lld",
                         (unsigned long long)cf[i].num, (unsigned long long)cf[i].den, j, x[j],
                         (long long)v);
        }
        pvg_rng_free(rng);
        dg_exact e;
        dg_exact_of(cf[i].sigma2, &e);
        int ok = dg_agrees(x, n, &e, why, sizeof why);
        printf("sigma^2 = %llu/%llu checked as %g: %s (%s)\n", (unsigned long long)cf[i].num,
               (unsigned long long)cf[i].den, cf[i].sigma2, ok ? "agrees" : "rejected", why);
        if (cf[i].num * 100 == cf[i].den * 961) {
            assert_false(ok); /* the wrong sigma is caught */
        } else {
            if (!ok) fail_msg("sigma^2 = %g: %s", cf[i].sigma2, why);
            if (cf[i].sigma2 == 9) { /* a biased sampler is caught */
                for (size_t j = 0; j < n; j += 10)
                    x[j] += 1;
                ok = dg_agrees(x, n, &e, why, sizeof why);
                printf("the same draws, one in ten moved up by 1: %s (%s)\n",
                       ok ? "agrees" : "rejected", why);
                assert_false(ok);
            }
        }
        free(e.p);
        free(x);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void)run(cmd);
}

static char g_skip[600];

static void test_browser_sampler(void **state)
{
    (void)state;
    if (g_skip[0]) {
        printf("SKIP: %s\n", g_skip);
        skip();
    }
    test_browser_sampler_exact();
}

static void test_browser_clients(void **state)
{
    if (g_skip[0]) {
        printf("SKIP: %s\n", g_skip);
        skip();
    }
    test_browser_clients_exact_sum(state);
}

/* ---- the shop page's on-device training, end to end ---- */

static void *b64_json(json_t *o, const char *field, size_t *n)
{
    const char *v = json_string_value(json_object_get(o, field));
    if (!v) fail_msg("no %s in the script's output", field);
    void *b = b64_decode(v, n);
    assert_non_null(b);
    return b;
}

/* The shop page (/shop, tests/web/fl_shop.test.js) signed in with a
 * shopper's token, in one round with 3 C clients: opting in, it reads the
 * item list (GET /v1/fl/items) and the shopper's export, takes part through
 * SecAgg+ and lists "Recommended on this device" in the order of the native
 * pvg_fl_client_recommend for the round's broadcast and the shopper's
 * history (scores within float ties); none of its requests carries the
 * shopper's item ids or the token outside the Authorization header; in
 * IndexedDB the factor is only in an AES-GCM ciphertext (the key not
 * extractable); a reload shows the same list at once and joins again; opting
 * out erases the state and the key and a reload joins nothing; the portal's
 * account deletion erases them too. */
static void test_shop_exact(void)
{
    const char *src = getenv("PVG_SOURCE_DIR");
    assert_non_null(src);
    assert_int_equal(pvg_init(), PVG_OK);
    char webtests[PATH_MAX], cmd[4 * PATH_MAX];
    snprintf(webtests, sizeof webtests, "%s/tests/web", src);
    char dir[] = "/tmp/pvg_test_flshop_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char dd[128];
    snprintf(dd, sizeof dd, "%s/data", dir);
    pvg_error err;
    assert_int_equal(pvg_store_init(dd, NULL, &err), PVG_OK);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, &err), PVG_OK);
    enum { NS = N_C + 1 };
    const char *page_user = "shopper-page";
    char *tok[NS];
    for (int i = 0; i < NS; i++) {
        char user[32];
        snprintf(user, sizeof user, "shopper-%d", i);
        pvg_principal p;
        assert_int_equal(
            pvg_auth_token_issue(s, i == N_C ? page_user : user, 3600, 0, &tok[i], &p, &err),
            PVG_OK);
    }
    /* the page's shopper's history: purchases in the store (their export) */
    static char ids[N_ITEMS][24];
    const char *item_ids[N_ITEMS];
    for (int j = 0; j < N_ITEMS; j++) {
        snprintf(ids[j], sizeof ids[j], "ITEM-%02d-85123A", j);
        item_ids[j] = ids[j];
    }
    uint32_t hist[HIST];
    history_of(N_C, hist);
    pvg_event ev[HIST];
    pvg_event_in in[HIST];
    pvg_event_out eo[HIST];
    memset(ev, 0, sizeof ev);
    for (int j = 0; j < HIST; j++) {
        ev[j].type = PVG_EVENT_PURCHASE;
        ev[j].ts = 1700000000 + j;
        ev[j].item = item_ids[hist[j]];
        in[j] = (pvg_event_in){page_user, &ev[j], NULL, j};
    }
    long long stored = 0;
    assert_int_equal(pvg_store_events_put(s, in, HIST, eo, &stored, NULL, &err), PVG_OK);
    for (int j = 0; j < HIST; j++)
        if (eo[j].status != PVG_OK) fail_msg("event %d: %s", j, eo[j].message);
    assert_int_equal(stored, HIST);
    pvg_store_free(s);

    rig g;
    memset(&g, 0, sizeof g);
    pthread_mutex_init(&g.mu, NULL);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_config cfg;
    pvg_fl_config_default(&cfg);
    cfg.factors = K;
    cfg.dp = PVG_FL_DP_DISTRIBUTED;
    cfg.noise_multiplier = 1.0;
    cfg.expected_cohort = NS;
    cfg.clip = 1.0;
    assert_int_equal(pvg_fl_model_new(&cfg, N_ITEMS, rng, &g.model, &err), PVG_OK);
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = (uint32_t)pvg_fl_update_dim(&cfg, N_ITEMS);
    co.sample_rate = 1.0;
    co.min_clients = NS;
    co.max_rounds = 2; /* round 2: the page is reloaded in the middle of it */
    co.min_survivors = NS;
    co.mask_rounds = 20; /* libsodium's ChaCha20 in the wasm build (the default is ChaCha8) */
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 120;
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
    o.fl_items = item_ids;
    o.fl_n_items = N_ITEMS;
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
        cc[i].rounds = 2;
        history_of(i, cc[i].items);
        assert_int_equal(pthread_create(&th[i], NULL, c_thread, &cc[i]), 0);
    }
    char out_path[200];
    snprintf(out_path, sizeof out_path, "%s/shop.json", dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && PVG_BASE_URL=http://127.0.0.1:%d PVG_WASM_DIR='%s' PVG_FL_OUT='%s' "
             "PVG_USER_TOKEN='%s' PVG_USER_ID='%s' ASAN_OPTIONS= LD_PRELOAD= "
             "timeout 240 node fl_shop.test.js",
             webtests, port, g_wasm_dir, out_path, tok[N_C], page_user);
    int rc = run(cmd);
    pvg_fl_round_stats rs;
    pvg_status ws = pvg_fl_coord_wait(coord, 2, rc == 0 ? 60 : 5, &rs, &err);
    for (int i = 0; i < N_C; i++)
        pthread_join(th[i], NULL);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    assert_int_equal(rc, 0);
    /* both rounds complete with the page's update in the sum: round 2's from
       the page that was reloaded after its SHARES and resumed the round */
    assert_int_equal(ws, PVG_OK);
    if (rs.phase != PVG_FL_PHASE_DONE) fail_msg("round 2 aborted: %s", rs.error);
    assert_int_equal(g.applies, 2);
    for (int r = 0; r < 2; r++)
        assert_int_equal(g.survivors_of[r], NS);
    for (int i = 0; i < N_C; i++)
        if (cc[i].status != PVG_OK) fail_msg("C client %d: %s", i, cc[i].error);

    json_error_t je;
    json_t *res = json_load_file(out_path, 0, &je);
    if (!res) fail_msg("%s: %s", out_path, je.text);
    assert_true(json_is_true(json_object_get(res, "visible")));
    assert_int_equal(json_integer_value(json_object_get(res, "joinsBeforeOptIn")), 0);

    /* the list: the native ranking of the same broadcast and history */
    json_t *after = json_object_get(res, "afterRound");
    json_t *list = json_object_get(after, "list");
    printf("status after the round: %s\n", json_string_value(json_object_get(after, "status")));
    assert_non_null(strstr(json_string_value(json_object_get(after, "status")), "finished"));
    assert_int_equal(json_array_size(list), 8);
    uint32_t all[N_ITEMS];
    float all_sc[N_ITEMS];
    size_t n_all = 0;
    assert_non_null(g.bc);
    assert_int_equal(pvg_fl_client_recommend(g.bc, g.bc_len, hist, NULL, HIST, N_ITEMS, all, all_sc,
                                             &n_all, &err),
                     PVG_OK);
    for (size_t j = 0; j < 8; j++) {
        const char *id = json_string_value(json_array_get(list, j));
        int idx = -1;
        for (int i = 0; i < N_ITEMS; i++)
            if (strcmp(id, item_ids[i]) == 0) idx = i;
        assert_true(idx >= 0);
        float mine = NAN;
        for (size_t i = 0; i < n_all; i++)
            if (all[i] == (uint32_t)idx) mine = all_sc[i];
        if (!(fabsf(mine - all_sc[j]) <= 1e-5f * (1 + fabsf(all_sc[j]))))
            fail_msg("rank %zu: the page lists %s (native score %g), native rank %zu is %s (%g)", j,
                     id, (double)mine, j, item_ids[all[j]], (double)all_sc[j]);
    }

    /* IndexedDB after the round: the key not extractable, the factor sealed */
    json_t *kept = json_object_get(after, "kept");
    assert_true(json_is_true(json_object_get(kept, "state")));
    assert_true(json_is_true(json_object_get(kept, "key")));
    assert_true(json_is_false(json_object_get(kept, "keyExtractable")));
    assert_true(json_is_false(json_object_get(kept, "exported")));
    assert_string_equal(json_string_value(json_object_get(kept, "keyAlgorithm")), "AES-GCM-256");
    assert_int_equal(json_integer_value(json_object_get(kept, "lastRound")), 2);
    assert_true(json_is_false(json_object_get(kept, "round"))); /* the round ended: dropped */
    assert_int_equal(json_integer_value(json_object_get(kept, "ivLength")), 12);
    size_t fl_ = 0, ctl_ = 0, vl = 0;
    uint8_t *factor = b64_json(kept, "factor", &fl_);
    uint8_t *ct = b64_json(kept, "ct", &ctl_);
    uint8_t *V = b64_json(kept, "V", &vl);
    assert_int_equal(fl_, 4 * K);
    assert_int_equal(ctl_, 8 + 4 * K + 4 * HIST + 16); /* k, n, factor, own items, GCM tag */
    assert_int_equal(vl, 4 * N_ITEMS * K);
    for (size_t j = 0; j + 8 <= fl_; j += 4) {
        assert_null(memmem(ct, ctl_, factor + j, 8));
        assert_null(memmem(V, vl, factor + j, 8));
    }
    /* the item factors kept are the broadcast's (public), bit for bit */
    assert_memory_equal(V, g.bc + 88, vl);
    json_t *own = json_object_get(kept, "own");
    assert_int_equal(json_array_size(own), HIST);
    for (int j = 0; j < HIST; j++)
        assert_int_equal(json_integer_value(json_array_get(own, (size_t)j)), hist[j]);
    const char *fields[] = {"lastRound", "optedIn", "pub", "sealed", "user"};
    json_t *fj = json_object_get(kept, "fields");
    assert_int_equal(json_array_size(fj), 5);
    for (size_t j = 0; j < 5; j++)
        assert_string_equal(json_string_value(json_array_get(fj, j)), fields[j]);
    free(factor);
    free(ct);
    free(V);

    /* the reload: the same list at once, training resumed (a join) */
    json_t *rl = json_object_get(res, "afterReload");
    assert_true(json_equal(json_object_get(rl, "list"), list));
    assert_true(json_integer_value(json_object_get(rl, "joins")) >= 1);
    /* opting out: erased; after a reload no list and no join */
    json_t *oo = json_object_get(res, "afterOptOut");
    assert_true(json_is_false(json_object_get(json_object_get(oo, "kept"), "state")));
    assert_true(json_is_false(json_object_get(json_object_get(oo, "kept"), "key")));
    assert_int_equal(json_array_size(json_object_get(oo, "list")), 0);
    json_t *oor = json_object_get(res, "afterOptOutReload");
    assert_int_equal(json_array_size(json_object_get(oor, "list")), 0);
    assert_int_equal(json_integer_value(json_object_get(oor, "joins")), 0);
    assert_true(json_is_false(json_object_get(json_object_get(oor, "kept"), "state")));
    /* the portal's deletion */
    assert_true(json_is_true(json_object_get(json_object_get(res, "beforeDelete"), "state")));
    assert_true(json_is_false(json_object_get(json_object_get(res, "afterDelete"), "state")));
    assert_true(json_is_false(json_object_get(json_object_get(res, "afterDelete"), "key")));

    /* the wire: no request carries the shopper's item ids (in its URL or
       body) and the token goes only in the Authorization header */
    json_t *sent = json_object_get(res, "sent");
    size_t posts = 0;
    for (size_t k = 0; k < json_array_size(sent); k++) {
        json_t *q = json_array_get(sent, k);
        const char *url = json_string_value(json_object_get(q, "url"));
        size_t bl = 0;
        uint8_t *body = b64_decode(json_string_value(json_object_get(q, "body")), &bl);
        assert_non_null(body);
        if (strstr(url, "/v1/fl/messages")) posts++;
        assert_null(strstr(url, "85123A"));
        assert_null(strstr(url, tok[N_C]));
        for (int j = 0; j < HIST; j++)
            assert_null(memmem(body, bl, item_ids[hist[j]], strlen(item_ids[hist[j]])));
        assert_null(memmem(body, bl, tok[N_C], strlen(tok[N_C])));
        free(body);
    }
    /* 4 messages a round: the resumed page made none again (it may post the one
       it had handed out when the round was kept again, the same bytes) */
    {
        uint8_t *bodies[16];
        size_t lens[16], distinct = 0;
        for (size_t k = 0; k < json_array_size(sent); k++) {
            json_t *q = json_array_get(sent, k);
            if (!strstr(json_string_value(json_object_get(q, "url")), "/v1/fl/messages")) continue;
            size_t bl = 0;
            uint8_t *b = b64_decode(json_string_value(json_object_get(q, "body")), &bl);
            int seen = 0;
            for (size_t j = 0; j < distinct; j++)
                seen |= lens[j] == bl && memcmp(bodies[j], b, bl) == 0;
            if (!seen && distinct < 16) {
                bodies[distinct] = b;
                lens[distinct++] = bl;
            } else {
                free(b);
            }
        }
        assert_int_equal(distinct, 8);
        assert_true(posts <= 9);
        for (size_t j = 0; j < distinct; j++)
            free(bodies[j]);
    }
    /* mid-round 2 (after SHARES): the round kept, sealed (no plaintext field) */
    json_t *mid = json_object_get(res, "midRound");
    assert_true(json_is_true(json_object_get(mid, "round")));
    assert_int_equal(json_integer_value(json_object_get(mid, "roundOf")), 2);
    const char *rfields[] = {"broadcast", "broadcastRound", "build", "ct",  "handle",
                             "iv",        "pending",        "stack", "user"};
    json_t *rf = json_object_get(mid, "roundFields");
    assert_int_equal(json_array_size(rf), 9);
    for (size_t j = 0; j < 9; j++)
        assert_string_equal(json_string_value(json_array_get(rf, j)), rfields[j]);
    assert_true(json_integer_value(json_object_get(mid, "roundCt")) > 4096);
    /* the reloaded page went on with the round: no join until the round was
       over, MASKED and UNMASK posted (and perhaps SHARES again, the same bytes) */
    json_t *resumed = json_object_get(res, "resumed");
    size_t after_posts = 0, join_at = SIZE_MAX;
    for (size_t j = 0; j < json_array_size(resumed); j++) {
        const char *q = json_string_value(json_array_get(resumed, j));
        if (strcmp(q, "POST messages") == 0) {
            after_posts++;
            assert_true(j < join_at);
        }
        if (strcmp(q, "POST join") == 0 && join_at == SIZE_MAX) join_at = j;
    }
    assert_true(after_posts >= 2 && after_posts <= 3);
    json_decref(res);
    for (int i = 0; i < N_C; i++)
        free(cc[i].vec);
    for (int i = 0; i < NS; i++)
        pvg_auth_credential_free(tok[i]);
    free(g.sum);
    free(g.bc);
    pvg_fl_model_free(g.model);
    pvg_rng_free(rng);
    pthread_mutex_destroy(&g.mu);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void)run(cmd);
}

static void test_shop_page(void **state)
{
    (void)state;
    if (g_skip[0]) {
        printf("SKIP: %s\n", g_skip);
        skip();
    }
    test_shop_exact();
}

/* The shop page's on-device training against misuse (tests/web/fl_guard.test.js,
 * no privguide server: the page and a fake /v1 API served by the browser's
 * router): another shopper's token, two tabs of one shopper, a write after an
 * opt-out elsewhere, a kept round's metadata changed, a 503 with a long
 * Retry-After, a server that never answers. */
static void test_shop_guards(void **state)
{
    (void)state;
    if (g_skip[0]) {
        printf("SKIP: %s\n", g_skip);
        skip();
    }
    const char *src = getenv("PVG_SOURCE_DIR");
    assert_non_null(src);
    char cmd[4 * PATH_MAX];
    struct stat sb;
    snprintf(cmd, sizeof cmd, "%s/tests/web/node_modules/playwright-core/package.json", src);
    if (stat(cmd, &sb) != 0) {
        snprintf(cmd, sizeof cmd,
                 "cd '%s/tests/web' && flock /tmp/privguide-npm-ci.lock sh -c 'test -f "
                 "node_modules/playwright-core/package.json "
                 "|| timeout 300 npm ci --no-audit --no-fund >/dev/null 2>&1'",
                 src);
        if (run(cmd) != 0) fail_msg("npm ci in %s/tests/web failed", src);
    }
    snprintf(cmd, sizeof cmd,
             "cd '%s/tests/web' && PVG_WASM_DIR='%s' PVG_WEB_DIR='%s/src/server/web' "
             "ASAN_OPTIONS= LD_PRELOAD= timeout 180 node fl_guard.test.js",
             src, g_wasm_dir, src);
    assert_int_equal(run(cmd), 0);
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
        cmocka_unit_test(test_browser_sampler),
        cmocka_unit_test(test_shop_page),
        cmocka_unit_test(test_shop_guards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
