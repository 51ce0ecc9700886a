/*
 * test_server.c - the HTTP service against a live server on 127.0.0.1 with
 * an ephemeral port: every route for every role, allowed and refused;
 * consent off -> non-personalised; erasure -> 404 and an audit entry;
 * malformed JSON, deep JSON, huge bodies, wrong types, unknown routes and
 * methods -> 4xx with a message; rate limits; model reload; the OpenAPI
 * document against the routes table; the audit chain after all of it.
 * Every socket has a timeout, every wait loop a bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/server_internal.h"
#include "t_http.h"
#include "t_rawdb.h"

#include <privguide/audit.h>
#include <privguide/auth.h>
#include <privguide/import.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct env {
    char dir[256];
    pvg_server *srv;
    int port;
    char *admin, *analyst, *tok_u1, *tok_u2, *tok_slow;
} env;

static env E;

/* ---- fixture ---- */

static void put_event(pvg_store *s, const char *user, const char *item, pvg_event_type t)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = t;
    e.item = item;
    e.ts = 1300000000;
    int outcome = 0;
    pvg_error err;
    pvg_status st = pvg_store_event_put(s, user, &e, NULL, &outcome, &err);
    if (st != PVG_OK) fprintf(stderr, "event_put: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
}

static void train_model(pvg_store *s, const char *path, int factors)
{
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_status st = pvg_dataset_load_store(s, NULL, &ds, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "dataset: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = factors;
    p.epochs = 3;
    p.seed = 7;
    pvg_model *m = NULL;
    st = pvg_model_train(ds, &p, &m, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "train: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

static int setup(void **state)
{
    (void)state;
    snprintf(E.dir, sizeof E.dir, "/tmp/pvg_test_server_XXXXXX");
    if (!mkdtemp(E.dir)) return -1;
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    pvg_error err;
    if (pvg_store_init(dd, NULL, &err) != PVG_OK) {
        fprintf(stderr, "init: %s\n", err.text);
        return -1;
    }
    pvg_store *s = NULL;
    if (pvg_store_open(dd, &s, &err) != PVG_OK) return -1;
    /* a catalog and three taste groups of shoppers */
    static const char *items[] = {"A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4", "C1", "C2"};
    for (int i = 0; i < 10; i++) {
        pvg_item it = {0,    items[i], items[i][0] == 'A' ? "Apple thing" : "Other thing",
                       NULL, 1.5 + i,  NULL,
                       0,    -1};
        if (pvg_store_item_put(s, &it, NULL, &err) != PVG_OK) return -1;
        it.price = 20 + i; /* the last price; the typical stays 1.5 + i (lower median) */
        if (pvg_store_item_put(s, &it, NULL, &err) != PVG_OK) return -1;
    }
    for (int u = 0; u < 30; u++) {
        char user[16];
        snprintf(user, sizeof user, "u%d", u);
        int g = u % 2;
        for (int j = 0; j < 3; j++)
            put_event(s, user, items[g * 4 + (u + j) % 4], PVG_EVENT_PURCHASE);
        if (u % 5 == 0) put_event(s, user, "C1", PVG_EVENT_VIEW);
        pvg_consent c = {1, 1};
        assert_int_equal(pvg_store_consent_set(s, user, &c, &err), PVG_OK);
    }
    assert_int_equal(pvg_ledger_set_budget(s, "default", 10.0, 1e-6, &err), PVG_OK);
    char mp[340];
    snprintf(mp, sizeof mp, "%s/model.pvgm", dd);
    train_model(s, mp, 8);
    pvg_principal p;
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "test", 0, &E.admin, &p, &err),
                     PVG_OK);
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ANALYST, NULL, 0, &E.analyst, &p, &err),
                     PVG_OK);
    assert_int_equal(pvg_auth_token_issue(s, "u1", 3600, 0, &E.tok_u1, &p, &err), PVG_OK);
    assert_int_equal(pvg_auth_token_issue(s, "u2", 3600, 0, &E.tok_u2, &p, &err), PVG_OK);
    assert_int_equal(pvg_auth_token_issue(s, "u3", 3600, 1.0, &E.tok_slow, &p, &err), PVG_OK);
    pvg_store_free(s);

    char web[600], api[600];
    const char *src = getenv("PVG_SOURCE_DIR");
    snprintf(web, sizeof web, "%s/src/server/web", src ? src : ".");
    snprintf(api, sizeof api, "%s/docs/openapi.json", src ? src : ".");
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.port = 0;
    o.web_dir = web;
    o.openapi_path = api;
    o.threads = 2;
    o.max_body_bytes = 64 * 1024;
    o.reload_ms = 100;
    o.popular_k = 5;
    /* its traffic (hundreds of exports and reads from one admin key within seconds) is
     * what access monitoring suspends a key for; tests/test_monitor.c covers the monitor */
    o.monitor_off = 1;
    o.allow_insecure_rng = 1;
    o.insecure_seed = 1;
    o.auth_failure_rate = -1; /* these tests fail authentication on purpose, often */
    if (pvg_server_start(&o, &E.srv, &err) != PVG_OK) {
        fprintf(stderr, "start: %s\n", err.text);
        return -1;
    }
    E.port = pvg_server_port(E.srv);
    t_http_connect_to(&E.port);
    return E.port > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pvg_server_free(E.srv);
    pvg_auth_credential_free(E.admin);
    pvg_auth_credential_free(E.analyst);
    pvg_auth_credential_free(E.tok_u1);
    pvg_auth_credential_free(E.tok_u2);
    pvg_auth_credential_free(E.tok_slow);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", E.dir);
    if (system(cmd) != 0) return -1;
    return 0;
}

/* ---- tests ---- */

static void test_public_routes(void **state)
{
    (void)state;
    json_t *j = expect("GET", "/healthz", NULL, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "model")));
    json_decref(j);
    expect_free("GET", "/nope", NULL, NULL, 404);
    expect_free("GET", "/v1/users", E.admin, NULL, 404);
    expect_free("PATCH", "/healthz", NULL, NULL, 405);
    expect_free("POST", "/v1/users/u1/consent", E.admin, "{}", 405);
    expect_free("GET", "/static/..%2f..%2fetc%2fpasswd", NULL, NULL, 404);
    expect_free("GET", "/static/.hidden.js", NULL, NULL, 404);
}

static void test_auth_refusals(void **state)
{
    (void)state;
    const char *p = "/v1/users/u1/recommendations";
    expect_free("GET", p, NULL, NULL, 401);
    expect_free("GET", p, "garbage", NULL, 401);
    expect_free("GET", p, "pvgk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL,
                401);
    /* right id, wrong secret */
    char forged[128];
    snprintf(forged, sizeof forged, "%.22sAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", E.admin);
    expect_free("GET", p, forged, NULL, 401);
    expect_free("GET", p, E.analyst, NULL, 403); /* analysts see no personal data */
    expect_free("GET", p, E.tok_u2, NULL, 403);  /* another shopper's token */
    expect_free("GET", "/v1/users/u1/data", E.tok_u2, NULL, 403);
    expect_free("DELETE", "/v1/users/u1", E.tok_u2, NULL, 403);
    expect_free("PUT", "/v1/users/u1/consent", E.tok_u2,
                "{\"personalization\":false,\"analytics\":false}", 403);
    expect_free("GET", "/metrics", E.tok_u1, NULL, 403);
    expect_free("GET", "/v1/stats", E.tok_u1, NULL, 403);
    expect_free("GET", "/metrics", NULL, NULL, 401);
    expect_free("POST", "/v1/events", E.analyst, "{\"events\":[]}", 403);
    resp r;
    assert_int_equal(http("GET", p, NULL, NULL, &r), 0);
    assert_non_null(strstr(r.headers, "WWW-Authenticate: Bearer"));
    resp_free(&r);
}

static void test_role_matrix_allowed(void **state)
{
    (void)state;
    json_t *j = expect("GET", "/v1/whoami", E.analyst, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "role")), "analyst");
    json_decref(j);
    j = expect("GET", "/v1/whoami", E.tok_u1, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "role")), "user");
    json_decref(j);
    resp r;
    assert_int_equal(http("GET", "/metrics", E.analyst, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    /* analysts: DP or non-personal figures only (test_stats_exact_for_admins_only) */
    assert_null(strstr(r.body, "privguide_http_requests_total"));
    assert_non_null(strstr(r.body, "privguide_budget_epsilon_spent{purpose=\"queries\"}"));
    assert_null(strstr(r.body, "privguide_store_users")); /* exact volumes: admin only */
    resp_free(&r);
    assert_int_equal(http("GET", "/metrics", E.admin, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "privguide_store_users 30"));
    assert_non_null(strstr(r.body, "privguide_http_requests_total"));
    assert_non_null(strstr(r.body, "privguide_http_request_duration_seconds_bucket"));
    resp_free(&r);
    j = expect("GET", "/v1/stats", E.analyst, NULL, 200);
    assert_null(json_object_get(j, "store"));
    assert_null(json_object_get(j, "exact"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "catalog"), "items")),
                     10);
    json_decref(j);
    j = expect("GET", "/v1/stats", E.admin, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(j, "exact"), "store"), "users")),
                     30);
    json_t *b = json_object_get(json_object_get(j, "budget"), "spent");
    assert_non_null(b);
    assert_true(json_real_value(json_object_get(b, "epsilon")) > 0.99); /* the popular list */
    json_decref(j);
    for (int who = 0; who < 3; who++) {
        const char *c = who == 0 ? E.admin : who == 1 ? E.analyst : E.tok_u1;
        j = expect("GET", "/v1/items/popular?k=3", c, NULL, 200);
        assert_int_equal(json_array_size(json_object_get(j, "items")), 3);
        json_decref(j);
        /* shoppers and analysts get the DP release, the operator the model */
        j = expect("GET", "/v1/items/A1/similar?k=3", c, NULL, 200);
        assert_string_equal(json_string_value(json_object_get(j, "source")),
                            who == 0 ? "model" : "dp_release");
        if (who == 0) assert_true(json_array_size(json_object_get(j, "items")) >= 1);
        json_decref(j);
    }
    expect_free("GET", "/v1/items/NOPE/similar", E.admin, NULL, 404);
    expect_free("GET", "/v1/items/popular?k=0", E.admin, NULL, 400);
    expect_free("GET", "/v1/items/popular?k=abc", E.admin, NULL, 400);
    expect_free("GET", "/v1/items/popular?k=1000", E.admin, NULL, 400);
}

static int audit_count(const char *action, const char *user);

static void test_recommendations_and_consent(void **state)
{
    (void)state;
    json_t *j = expect("GET", "/v1/users/u1/recommendations?k=3", E.tok_u1, NULL, 200);
    json_t *first = json_deep_copy(j);
    assert_true(json_is_true(json_object_get(j, "personalized")));
    json_t *items = json_object_get(j, "items");
    assert_true(json_array_size(items) >= 1 && json_array_size(items) <= 3);
    json_t *it = json_array_get(items, 0);
    assert_true(json_is_string(json_object_get(it, "item")));
    assert_true(json_is_string(json_object_get(it, "title")));
    assert_true(json_is_number(json_object_get(it, "score")));
    assert_true(json_is_number(json_object_get(it, "price")));
    /* the typical price, and the last one beside it */
    assert_true(json_is_number(json_object_get(it, "last_price")));
    assert_true(fabs(json_number_value(json_object_get(it, "last_price")) -
                     json_number_value(json_object_get(it, "price")) - 18.5) < 1e-9);
    /* u1 is in group B (odd): nothing of group A is recommended first */
    assert_int_not_equal(json_string_value(json_object_get(it, "item"))[0], 'A');
    json_decref(j);
    /* again: the cached answer (items, then the serialised body) is the
     * same, and every access is audited, cached or not */
    for (int round = 0; round < 3; round++) {
        int audited = audit_count("recommend", "u1");
        j = expect("GET", "/v1/users/u1/recommendations?k=3", round ? E.tok_u1 : E.admin, NULL,
                   200);
        assert_true(json_is_true(json_object_get(j, "personalized")));
        assert_true(json_equal(j, first));
        json_decref(j);
        assert_int_equal(audit_count("recommend", "u1"), audited + 1);
    }
    json_decref(first);

    /* consent off -> the DP popular list */
    j = expect("PUT", "/v1/users/u1/consent", E.tok_u1,
               "{\"personalization\":false,\"analytics\":true}", 200);
    json_decref(j);
    j = expect("GET", "/v1/users/u1/consent", E.tok_u1, NULL, 200);
    assert_true(json_is_false(json_object_get(j, "personalization")));
    assert_true(json_is_true(json_object_get(j, "analytics")));
    json_decref(j);
    j = expect("GET", "/v1/users/u1/recommendations?k=3", E.tok_u1, NULL, 200);
    assert_true(json_is_false(json_object_get(j, "personalized")));
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "no_consent");
    assert_int_equal(json_array_size(json_object_get(j, "items")), 3);
    json_decref(j);
    /* consent back on */
    json_decref(expect("PUT", "/v1/users/u1/consent", E.admin,
                       "{\"personalization\":true,\"analytics\":true}", 200));
    j = expect("GET", "/v1/users/u1/recommendations", E.tok_u1, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "personalized")));
    json_decref(j);
    /* unknown user -> popular */
    j = expect("GET", "/v1/users/nobody/recommendations", E.admin, NULL, 200);
    assert_true(json_is_false(json_object_get(j, "personalized")));
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "unknown_user");
    json_decref(j);
    expect_free("GET", "/v1/users/nobody/consent", E.admin, NULL, 404);
}

/* The personalised answer written directly (recs_json.c) is the same
 * bytes as the jansson one it replaced: strings with quotes, backslashes,
 * control characters and UTF-8, reals of every form; a title jansson would
 * refuse (not UTF-8) makes the direct writer decline. */
/* pvg_srv_real9 writes what jansson writes for a real at precision 9:
 * prices, float scores, exact ties (rounded to even, as printf), the
 * boundaries of the fixed and exponent forms, and values outside the exact
 * path (snprintf) alike. */
static void check_real9(double v)
{
    json_t *j = json_real(v);
    char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    char got[40];
    size_t n = pvg_srv_real9(v, got);
    if (strcmp(got, want) != 0) fprintf(stderr, "real9 %.17g: got %s, want %s\n", v, got, want);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
    free(want);
}

static void test_real9(void **state)
{
    (void)state;
    static const double fixed[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   0.5,
                                   12.5,
                                   123456789.5,
                                   123456788.5,
                                   999999999.5,
                                   99999999.95,
                                   1e-4,
                                   9.99999999e-5,
                                   0.000123456785,
                                   1e-5,
                                   1e9,
                                   1e-300,
                                   1e300,
                                   4.9e-324,
                                   2.5,
                                   3.5,
                                   0.1,
                                   0.2,
                                   0.3,
                                   1.0 / 3,
                                   2.0 / 3,
                                   100.0,
                                   1e8,
                                   123456789.0,
                                   5e-324,
                                   9007199254740993.0};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        check_real9(fixed[i]);
    /* not a JSON number: declined (jansson's json_real refuses it too), never
     * written as "nan.0" or "inf.0" */
    static const double nonfinite[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 4; i++) {
        char got[40] = "x";
        assert_int_equal(pvg_srv_real9(nonfinite[i], got), 0);
        assert_string_equal(got, "");
        assert_null(json_real(nonfinite[i]));
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v;
        switch (i % 4) {
        case 0: /* a price in cents */
            v = (double)(x % 10000000) / 100.0;
            break;
        case 1: { /* a float score */
            float f = (float)((double)(int64_t)(x % 2000001 - 1000000) / 37.0 / (1 + x % 997));
            v = f;
            break;
        }
        case 2: { /* any double of a moderate magnitude */
            uint64_t bits = (x & 0x800fffffffffffffULL) | ((uint64_t)(1023 - 40 + x % 80) << 52);
            memcpy(&v, &bits, sizeof v);
            break;
        }
        default: /* ties and near-ties at the ninth digit */
            v = (double)(x % 1000000000) + 0.5;
            if (x & 1) v /= 1024;
        }
        check_real9(v);
    }
}

static void test_recs_json_same_bytes(void **state)
{
    (void)state;
    pvg_srv_model *m = pvg_srv_model_acquire(E.srv);
    assert_non_null(m);
    size_t ni = pvg_model_n_items(m->model);
    assert_true(ni >= 8);
    static const char *titles[] = {"plain",
                                   "quote \" and \\ back",
                                   "tab\tnl\ncr\r\b\f",
                                   "ctl \x01\x1f end",
                                   "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8d\x8e /slash",
                                   NULL,
                                   "",
                                   "x"};
    static const double prices[] = {1.5, 3, 0, 123456789012.0, 1e-7, -1, 2.5e21, 0.1};
    static const float scores[] = {0.5f, 3.0f, -0.25f, 1e-8f, 12345678.0f, NAN, INFINITY, 0};
    char *save_t[8];
    double save_p[8], save_l[8];
    pvg_scored_item it[8];
    for (int i = 0; i < 8; i++) {
        pvg_srv_catalog_entry *c = &m->catalog[i];
        save_t[i] = c->title;
        save_p[i] = c->price;
        save_l[i] = c->last_price;
        c->title = (char *)titles[i];
        c->price = prices[i];
        c->last_price = prices[7 - i];
        it[i].item_index = i;
        it[i].item = NULL;
        it[i].score = scores[i];
    }
    const char *users[] = {"u1", "we\"ird\\user\u00e9"};
    for (int u = 0; u < 2; u++)
        for (size_t n = 0; n <= 8; n += 4) {
            json_t *o = json_object();
            json_object_set_new(o, "user", json_string(users[u]));
            json_object_set_new(o, "personalized", json_true());
            json_object_set_new(o, "source", json_string("model"));
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++) {
                const pvg_srv_catalog_entry *c = &m->catalog[i];
                const char *id = pvg_model_item_id(m->model, (int64_t)i);
                json_t *x = json_object();
                json_object_set_new(x, "item", json_string(id ? id : ""));
                json_object_set_new(x, "title", c->title ? json_string(c->title) : json_null());
                json_object_set_new(x, "price", c->price >= 0 ? json_real(c->price) : json_null());
                json_object_set_new(x, "last_price",
                                    c->last_price >= 0 ? json_real(c->last_price) : json_null());
                json_object_set_new(x, "score",
                                    json_real(isfinite(it[i].score) ? it[i].score : 0.0));
                json_array_append_new(arr, x);
            }
            json_object_set_new(o, "items", arr);
            json_object_set_new(o, "model_generation", json_integer(m->generation));
            char *want = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
            json_decref(o);
            size_t len = 0;
            char *got = pvg_srv_recs_json(m, users[u], it, n, &len);
            assert_non_null(got);
            assert_string_equal(got, want);
            assert_int_equal(len, strlen(want));
            free(got);
            free(want);
        }
    /* not UTF-8 (a lone continuation byte, an overlong form, a surrogate) */
    static const char *bad[] = {"a\x80"
                                "b",
                                "\xc0\xaf", "\xed\xa0\x80"};
    for (int b = 0; b < 3; b++) {
        m->catalog[1].title = (char *)bad[b];
        m->catalog[1].json_ok = 0; /* changed after the load's check: checked per answer */
        size_t len = 1;
        assert_null(pvg_srv_recs_json(m, "u1", it, 2, &len));
        assert_int_equal(len, 0);
        assert_null(json_string(bad[b])); /* jansson refuses it too */
    }
    m->catalog[1].title = (char *)bad[0];
    pvg_srv_catalog_json_mark(m); /* the load's check finds it */
    assert_int_equal(m->catalog[1].json_ok, 2);
    assert_int_equal(m->catalog[0].json_ok, 1);
    size_t len = 1;
    assert_null(pvg_srv_recs_json(m, "u1", it, 2, &len));
    m->catalog[1].title = (char *)titles[1];
    m->catalog[1].json_ok = 0;
    m->catalog[2].price = INFINITY;
    m->catalog[2].json_ok = 0;
    len = 0;
    assert_null(pvg_srv_recs_json(m, "u1", it, 3, &len));
    for (int i = 0; i < 8; i++) {
        m->catalog[i].title = save_t[i];
        m->catalog[i].price = save_p[i];
        m->catalog[i].last_price = save_l[i];
    }
    pvg_srv_model_release(m);
}

/* Moves the model file's mtime on by a second: the next reload loads it
 * again (with the catalogue as the store holds it then). */
static void model_touch(const char *dd)
{
    char mp[320];
    snprintf(mp, sizeof mp, "%s/model.pvgm", dd);
    struct stat sb;
    assert_int_equal(stat(mp, &sb), 0);
    struct timespec ts[2] = {sb.st_atim, sb.st_mtim};
    ts[1].tv_sec += 1;
    assert_int_equal(utimensat(AT_FDCWD, mp, ts, 0), 0);
}

/* The catalogue checks done once at model load follow the store: items
 * whose title turned into bytes that are not UTF-8 and whose prices became
 * infinite (a hand edit of the store) are found by the next load, and the
 * personalised answer stays valid JSON with no such title or number in it
 * (the answer built with jansson then); restored, the next load answers
 * them again. */
static void test_recs_json_catalog_edited(void **state)
{
    t_rawdb_require_sqlite_env(); /* edits the SQLite file directly */
    (void)state;
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    assert_int_equal(t_rawdb_exec(dd, "privguide.db",
                                  "CREATE TABLE items_saved AS SELECT id, title, price, "
                                  "typical_price FROM items;"
                                  "UPDATE items SET title = CAST(X'41ff42' AS TEXT), price = "
                                  "9e999, typical_price = 9e999;"
                                  "DELETE FROM catalog_text;"),
                     SQLITE_OK);
    model_touch(dd);
    assert_int_equal(pvg_server_reload_model(E.srv, NULL), PVG_OK);
    t_http_resp resp = {0};
    assert_int_equal(t_http("GET", "/v1/users/u1/recommendations?k=3", E.tok_u1, NULL, &resp), 0);
    assert_int_equal(resp.status, 200);
    json_t *j = json_loads(resp.body, 0, NULL);
    assert_non_null(j);
    json_t *items = json_object_get(j, "items");
    assert_true(json_array_size(items) > 0);
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        assert_null(json_object_get(it, "title"));
        json_t *pr = json_object_get(it, "price");
        assert_true(!pr || json_is_null(pr) || isfinite(json_number_value(pr)));
    }
    assert_null(strstr(resp.body, "\xff"));
    assert_null(strstr(resp.body, "inf"));
    json_decref(j);
    t_http_resp_free(&resp);
    assert_int_equal(t_rawdb_exec(dd, "privguide.db",
                                  "UPDATE items SET title = (SELECT s.title FROM items_saved s "
                                  "WHERE s.id = items.id), price = (SELECT s.price FROM "
                                  "items_saved s WHERE s.id = items.id), typical_price = (SELECT "
                                  "s.typical_price FROM items_saved s WHERE s.id = items.id);"
                                  "DROP TABLE items_saved;"),
                     SQLITE_OK);
    model_touch(dd);
    assert_int_equal(pvg_server_reload_model(E.srv, NULL), PVG_OK);
    memset(&resp, 0, sizeof resp);
    assert_int_equal(t_http("GET", "/v1/users/u1/recommendations?k=3", E.tok_u1, NULL, &resp), 0);
    assert_int_equal(resp.status, 200);
    j = json_loads(resp.body, 0, NULL);
    assert_non_null(j);
    items = json_object_get(j, "items");
    assert_true(json_array_size(items) > 0);
    assert_non_null(json_object_get(json_array_get(items, 0), "title"));
    json_decref(j);
    t_http_resp_free(&resp);
}

/* Audit first under concurrency: with the audit writer stopped (every
 * append fails), concurrent recommendation requests for a consenting
 * shopper all get 503 audit_unavailable and none carries an item. */
typedef struct audit_off_arg {
    int ok, n;
} audit_off_arg;

static void *audit_off_client(void *p)
{
    audit_off_arg *a = p;
    for (int i = 0; i < 8; i++) {
        t_http_resp resp = {0};
        if (t_http("GET", "/v1/users/u1/recommendations?k=3", E.tok_u1, NULL, &resp) != 0) continue;
        a->n++;
        if (resp.status == 503 && resp.body && strstr(resp.body, "audit_unavailable") &&
            !strstr(resp.body, "\"items\""))
            a->ok++;
        t_http_resp_free(&resp);
    }
    return NULL;
}

static void test_audit_failure_concurrent_no_data(void **state)
{
    (void)state;
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.threads = 4;
    o.monitor_off = 1;
    o.auth_failure_rate = -1;
    pvg_server *srv = NULL;
    pvg_error err;
    assert_int_equal(pvg_server_start(&o, &srv, &err), PVG_OK);
    int main_port = E.port;
    /* the writer leaves its loop; every later append answers PVG_ERR_STATE */
    pthread_mutex_lock(&srv->audit.mu);
    srv->audit.stop = 1;
    pthread_cond_signal(&srv->audit.cv_work);
    pthread_mutex_unlock(&srv->audit.mu);
    E.port = pvg_server_port(srv);
    pthread_t th[4];
    audit_off_arg a[4];
    memset(a, 0, sizeof a);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, audit_off_client, &a[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    E.port = main_port;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a[i].n, 8);
        assert_int_equal(a[i].ok, 8);
    }
    assert_int_equal(atomic_load(&srv->metrics.recs_personal), 0);
    pvg_server_free(srv);
}

/* The bytes of the process's private writable anonymous mappings (the heap,
 * malloc's arenas and mmaps, thread stacks): what the kernel charges to the
 * commit limit (vm.overcommit_memory 2) and to RLIMIT_AS, touched or not. */
static size_t private_writable_bytes(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[512];
    size_t sum = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo = 0, hi = 0;
        char perms[8] = {0};
        unsigned long long off = 0, ino = 0;
        char dev[16] = {0};
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %7s %llx %15s %llu %n", &lo, &hi, perms, &off, dev, &ino,
                   &path_at) < 6)
            continue;
        const char *path = line + path_at;
        int anon = ino == 0 && (*path == '\n' || *path == 0 || strncmp(path, "[heap]", 6) == 0);
        if (anon && perms[1] == 'w' && perms[3] == 'p') sum += hi - lo;
    }
    fclose(f);
    return sum;
}

/* Whether the server (listening on port) has read every byte its n
 * connections sent: each of its established sockets on the port has an
 * empty receive queue (/proc/net/tcp), and each of the caller's sockets fds
 * an empty send queue. */
static int server_read_all(int port, const int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        int q = 0;
        if (ioctl(fds[i], SIOCOUTQ, &q) != 0 || q != 0) return 0;
    }
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f) return 0;
    char line[512];
    int seen = 0, busy = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned la = 0, lp = 0, ra = 0, rp = 0, st = 0;
        unsigned long tx = 0, rx = 0;
        if (sscanf(line, " %*d: %x:%x %x:%x %x %lx:%lx", &la, &lp, &ra, &rp, &st, &tx, &rx) != 7)
            continue;
        if ((int)lp != port || st != 1) continue; /* the server's end, established */
        seen++;
        if (rx) busy = 1;
    }
    fclose(f);
    return seen >= n && !busy;
}

/* A server on a fresh store of its own under E.dir/name (no model, so no
 * release lands in the main store's ledger), bodies up to max_body bytes;
 * *a its loopback address, *admin (new, free it) an admin key of it. */
static pvg_server *bare_server(const char *name, size_t max_body, struct sockaddr_in *a,
                               char **admin)
{
    char dd[300];
    snprintf(dd, sizeof dd, "%s/%s", E.dir, name);
    pvg_error err;
    assert_int_equal(pvg_store_init(dd, NULL, &err), PVG_OK);
    pvg_store *st = NULL;
    pvg_principal p;
    assert_int_equal(pvg_store_open(dd, &st, &err), PVG_OK);
    assert_int_equal(pvg_auth_apikey_create(st, PVG_ROLE_ADMIN, "big", 0, admin, &p, &err), PVG_OK);
    pvg_store_free(st);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.threads = 2;
    o.max_body_bytes = max_body;
    o.monitor_off = 1;
    o.auth_failure_rate = -1;
    pvg_server *srv = NULL;
    assert_int_equal(pvg_server_start(&o, &srv, &err), PVG_OK);
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)pvg_server_port(srv));
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return srv;
}

/* The same policy once a body is under way: a caller that declared a large
 * length and sent a little over 1 MiB of it (before any authentication) must
 * not make the server reserve the rest. 16 connections that declared 32 MiB
 * and sent 1 MiB + 64 KiB each made the server map 16 x 32 MiB = 512 MiB
 * (a buffer of the declared length at once, http.c): under
 * vm.overcommit_memory 2 or an RLIMIT_AS, that is memory the server and
 * every other process on the host can no longer have, and the callers need
 * send only 17 MiB for it. What the server maps for a body must stay within
 * a small multiple of the bytes that arrived (here at most 8 MiB a
 * connection: 128 MiB). */
static void test_declared_length_not_reserved_midway(void **state)
{
    (void)state;
    struct sockaddr_in a;
    char *admin = NULL;
    pvg_server *srv = bare_server("data-declared-mid", (size_t)32 << 20, &a, &admin);
    int port = ntohs(a.sin_port);
    enum { NCONN = 16 };
    const size_t sent = ((size_t)1 << 20) + 64 * 1024;
    char *chunk = malloc(sent);
    assert_non_null(chunk);
    memset(chunk, ' ', sent);
    int fd[NCONN];
    size_t v0 = private_writable_bytes();
    const char *head = "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Type: application/json\r\nContent-Length: 33554432\r\n\r\n";
    for (int i = 0; i < NCONN; i++) {
        fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd[i] >= 0);
        assert_int_equal(connect(fd[i], (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(send(fd[i], head, strlen(head), 0), (ssize_t)strlen(head));
        size_t off = 0;
        while (off < sent) {
            ssize_t w = send(fd[i], chunk + off, sent - off, 0);
            assert_true(w > 0);
            off += (size_t)w;
        }
    }
    /* until the server has read every byte sent (bounded: 10 s) */
    struct timespec t0, now, nap = {0, 2000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int done = 0;
    do {
        nanosleep(&nap, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        done = atomic_load(&srv->inflight) == NCONN && server_read_all(port, fd, NCONN);
    } while (!done && now.tv_sec - t0.tv_sec < 10);
    assert_true(done);
    size_t v1 = private_writable_bytes();
    size_t grew = v1 > v0 ? v1 - v0 : 0;
    for (int i = 0; i < NCONN; i++)
        close(fd[i]);
    free(chunk);
    /* a body that grows past 2 MiB (its buffer moved, not copied) is still read
       whole: the JSON error is at its last byte */
    size_t blen = ((size_t)5 << 20) + 12345;
    char *body = malloc(blen + 1);
    assert_non_null(body);
    memset(body, ' ', blen - 1);
    body[0] = '[';
    body[blen - 2] = ']';
    body[blen - 1] = '}';
    body[blen] = 0;
    int main_port = E.port;
    E.port = port;
    json_t *j = expect("POST", "/v1/events", admin, body, 400);
    assert_int_equal(json_integer_value(json_object_get(j, "position")), (json_int_t)blen);
    json_decref(j);
    E.port = main_port;
    free(body);
    pvg_auth_credential_free(admin);
    pvg_server_free(srv);
    print_message("%d connections, %zu bytes sent each of a declared 32 MiB: %zu bytes mapped\n",
                  NCONN, sent, grew);
    if (grew >= (size_t)128 << 20)
        fail_msg("%d connections that sent %zu bytes of a declared 32 MiB each made the server "
                 "map %zu bytes more",
                 NCONN, sent, grew);
}

/* Callers that declare a large Content-Length and then send nothing (before any
 * authentication) must not make the server reserve the declared bytes: 16
 * connections declaring 8 MiB each held 128 MiB of the server's heap while
 * they sent not one byte of body. What the server holds for a body grows
 * with the bytes that arrived. */
static void test_declared_length_not_reserved(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* the sanitizer's allocator does not show in mallinfo2 */
#else
    /* a store of its own: no model, so no release lands in the main one's ledger */
    struct sockaddr_in a;
    char *admin = NULL;
    pvg_server *srv = bare_server("data-declared", (size_t)8 << 20, &a, &admin);
    enum { NCONN = 16 };
    int fd[NCONN];
    struct mallinfo2 m0 = mallinfo2();
    const char *head = "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Type: application/json\r\nContent-Length: 8388608\r\n\r\n";
    for (int i = 0; i < NCONN; i++) {
        fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd[i] >= 0);
        assert_int_equal(connect(fd[i], (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(send(fd[i], head, strlen(head), 0), (ssize_t)strlen(head));
    }
    /* until the server has read every header block (bounded: 10 s) */
    struct timespec t0, now, nap = {0, 2000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        nanosleep(&nap, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (atomic_load(&srv->inflight) < NCONN && now.tv_sec - t0.tv_sec < 10);
    assert_int_equal(atomic_load(&srv->inflight), NCONN);
    struct mallinfo2 m1 = mallinfo2();
    size_t before = m0.uordblks + m0.hblkhd, after = m1.uordblks + m1.hblkhd;
    size_t grew = after > before ? after - before : 0;
    for (int i = 0; i < NCONN; i++)
        close(fd[i]);
    /* a body that arrives in many pieces is still read whole, up to its declared
       length: the JSON error is at its last byte */
    size_t blen = 300001;
    char *body = malloc(blen + 1);
    assert_non_null(body);
    memset(body, ' ', blen - 1);
    body[blen - 1] = '}';
    body[blen] = 0;
    int main_port = E.port;
    E.port = pvg_server_port(srv);
    json_t *j = expect("POST", "/v1/events", admin, body, 400);
    assert_int_equal(json_integer_value(json_object_get(j, "position")), (json_int_t)blen);
    json_decref(j);
    /* the next large bodies go into the buffer the first one left (body_pool.c,
       wiped when kept): each is still read whole, its first pieces copied over */
    static const size_t lens[] = {250001, 100001};
    for (size_t k = 0; k < 2; k++) {
        size_t len = lens[k];
        memset(body, ' ', len - 1);
        body[0] = '[';
        body[len - 2] = ']';
        body[len - 1] = '}';
        body[len] = 0;
        j = expect("POST", "/v1/events", admin, body, 400);
        assert_int_equal(json_integer_value(json_object_get(j, "position")), (json_int_t)len);
        json_decref(j);
    }
    E.port = main_port;
    free(body);
    pvg_auth_credential_free(admin);
    pvg_server_free(srv);
    if (grew >= (size_t)16 << 20)
        fail_msg("%d connections that sent only headers made the heap grow by %zu bytes", NCONN,
                 grew);
#endif
}

static void test_bad_input(void **state)
{
    (void)state;
    const char *p = "/v1/users/u1/consent";
    json_t *j = expect("PUT", p, E.admin, "{\"personalization\": tru", 400);
    assert_true(json_integer_value(json_object_get(j, "position")) > 0);
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "byte"));
    json_decref(j);
    expect_free("PUT", p, E.admin, "", 400);
    expect_free("PUT", p, E.admin, "[1,2]", 400);
    expect_free("PUT", p, E.admin, "{\"personalization\":1,\"analytics\":true}", 400);
    expect_free("PUT", p, E.admin, "{\"personalization\":true,\"analytics\":true,\"x\":1}", 400);
    expect_free("PUT", p, E.admin, "{\"a\":1,\"a\":2}", 400);
    /* deep nesting */
    char deep[4096];
    size_t n = 0;
    for (int i = 0; i < 1000; i++)
        deep[n++] = '[';
    deep[n] = 0;
    j = expect("POST", "/v1/events", E.admin, deep, 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "nesting"));
    json_decref(j);
    /* a body over the cap (64 KiB in this test) */
    size_t big = 200 * 1024;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = 0;
    expect_free("POST", "/v1/events", E.admin, huge, 413);
    free(huge);
    /* binary garbage */
    char bin[256];
    for (int i = 0; i < 255; i++)
        bin[i] = (char)(i + 1);
    bin[255] = 0;
    expect_free("POST", "/v1/events", E.admin, bin, 400);
    /* events: wrong types, one by one */
    j = expect("POST", "/v1/events", E.admin,
               "{\"events\":[{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100},"
               "{\"user\":5,\"type\":\"view\",\"item\":\"A1\"},"
               "{\"user\":\"u5\",\"type\":\"teleport\",\"item\":\"A1\"},"
               "{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"quantity\":\"2\"},"
               "{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"colour\":\"red\"},"
               "{\"user\":\"u5\",\"type\":\"view\"}, 7]}",
               200);
    assert_int_equal(json_integer_value(json_object_get(j, "accepted")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "rejected")), 6);
    json_t *errs = json_object_get(j, "errors");
    assert_int_equal(json_array_size(errs), 6);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(errs, 0), "index")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errs, 0), "field")),
                        "user");
    json_decref(j);
    expect_free("POST", "/v1/events", E.admin, "{\"events\":{}}", 400);
    expect_free("POST", "/v1/events", E.admin, "{\"events\":[{\"user\":\"u5\"}]}", 422);
    /* a shopper may record only their own events */
    j = expect("POST", "/v1/events", E.tok_u1,
               "[{\"user\":\"u1\",\"type\":\"view\",\"item\":\"A2\"},"
               "{\"user\":\"u2\",\"type\":\"view\",\"item\":\"A2\"}]",
               200);
    assert_int_equal(json_integer_value(json_object_get(j, "accepted")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "rejected")), 1);
    json_decref(j);
    /* raw protocol garbage gets an HTTP error or a closed connection, never a crash */
    resp r;
    if (http_raw("BLAH\r\n\r\n", 8, &r) == 0) {
        assert_true(r.status >= 400);
        resp_free(&r);
    }
    expect_free("GET", "/healthz", NULL, NULL, 200);
}

/* The JSONL reader's verdict on one object (line 1 of a one-line file):
 * NULL when accepted, else the reason code (static). */
static const char *jsonl_reason(const char *obj)
{
    char path[] = "/tmp/pvg-test-parity-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, obj, strlen(obj)), (ssize_t)strlen(obj));
    close(fd);
    pvg_reader *rd = NULL;
    pvg_error err;
    assert_int_equal(pvg_reader_open(path, PVG_FORMAT_JSONL, NULL, &rd, &err), PVG_OK);
    pvg_record rec;
    assert_int_equal(pvg_reader_next(rd, &rec, &err), 1);
    const char *why = rec.kind == PVG_RECORD_REJECT ? rec.reason : NULL;
    pvg_reader_free(rd);
    unlink(path);
    return why;
}

/* Posted events and imported JSONL lines are validated by the same code:
 * each bad object gets the same reason code on both paths. */
static void test_events_same_rules_as_jsonl(void **state)
{
    (void)state;
    char big[400];
    const char *const bad[] = {
        "{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100,\"colour\":\"red\"}",
        "{\"user\":5,\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100}",
        "{\"user\":\"u5\",\"type\":\"teleport\",\"item\":\"A1\",\"ts\":1300000100}",
        "{\"user\":\"u5\",\"type\":7,\"item\":\"A1\",\"ts\":1300000100}",
        "{\"user\":\"u5\",\"type\":\"view\",\"ts\":1300000100}",
        "{\"user\":\"u5\",\"type\":\"view\",\"item\":9,\"ts\":1300000100}",
        "{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"ts\":\"yesterday\"}",
        "{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"ts\":-5}",
        "{\"user\":\"u5\",\"type\":\"purchase\",\"item\":\"A1\",\"ts\":1300000100,\"quantity\":"
        "\"2\"}",
        "{\"user\":\"u5\",\"type\":\"search\",\"ts\":1300000100}",
        "{\"user\":\"u5\",\"type\":\"rating\",\"item\":\"A1\",\"ts\":1300000100}",
        "{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100,\"country\":\"\"}",
        "{\"user\":\"\",\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100}",
        "{\"user\":\"u\\u0001\",\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100}",
        big, /* a user id of 257 bytes */
        "[1,2]",
    };
    memset(big, 0, sizeof big);
    snprintf(big, sizeof big,
             "{\"user\":\"%0257d\",\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100}", 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *want = jsonl_reason(bad[i]);
        if (!want) fail_msg("the JSONL reader accepted bad object %zu: %s", i, bad[i]);
        char body[600];
        snprintf(body, sizeof body, "{\"events\":[%s]}", bad[i]);
        json_t *j = expect("POST", "/v1/events", E.admin, body, 422);
        json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
        const char *got = json_string_value(json_object_get(e0, "reason"));
        if (!got || strcmp(got, want) != 0)
            fail_msg("object %zu: API reason %s, JSONL reason %s", i, got ? got : "(none)", want);
        json_decref(j);
    }
    /* and a good object passes both (the API fills a missing ts with now) */
    assert_null(
        jsonl_reason("{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100}"));
    json_t *j =
        expect("POST", "/v1/events", E.admin,
               "[{\"user\":\"u5\",\"type\":\"view\",\"item\":\"A1\",\"ts\":1300000100}]", 200);
    assert_int_equal(json_integer_value(json_object_get(j, "accepted")), 1);
    json_decref(j);
}

/* An empty batch accepts nothing: 422, as docs/api.md says. */
static void test_events_empty_batch(void **state)
{
    (void)state;
    expect_free("POST", "/v1/events", E.admin, "[]", 422);
    expect_free("POST", "/v1/events", E.admin, "{\"events\":[]}", 422);
}

static void test_rate_limit(void **state)
{
    (void)state;
    /* rate 1/s, burst 2: the third quick request is refused */
    int refused = 0;
    for (int i = 0; i < 4; i++) {
        resp r;
        assert_int_equal(http("GET", "/v1/users/u3/consent", E.tok_slow, NULL, &r), 0);
        if (r.status == 429) {
            refused++;
            assert_non_null(strstr(r.headers, "Retry-After"));
        } else {
            assert_int_equal(r.status, 200);
        }
        resp_free(&r);
    }
    assert_true(refused >= 1);
}

typedef struct audit_find {
    const char *action;
    char subject[40];
    int found;
} audit_find;

static int find_entry(void *ctx, const pvg_audit_entry *e)
{
    audit_find *f = ctx;
    if ((!f->action || strcmp(e->action, f->action) == 0) && strcmp(e->subject, f->subject) == 0)
        f->found++;
    return 0;
}

static int audit_count(const char *action, const char *user)
{
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, NULL), PVG_OK);
    audit_find f = {action, "", 0};
    if (user) pvg_audit_subject_of_user(s, user, f.subject);
    assert_int_equal(pvg_audit_foreach(s, 0, 0, find_entry, &f, NULL), PVG_OK);
    pvg_store_free(s);
    return f.found;
}

static void test_export_delete_and_audit(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(http("GET", "/v1/users/u2/data", E.tok_u2, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_true(json_array_size(json_object_get(j, "events")) >= 3);
    json_decref(j);
    resp_free(&r);
    assert_true(audit_count("export", "u2") >= 1);
    assert_true(audit_count("recommend", "u1") >= 1);
    assert_true(audit_count("consent_change", "u1") >= 1);
    /* once per model build: the popular list and similar items */
    assert_int_equal(audit_count("dp_release", NULL), 2);

    j = expect("DELETE", "/v1/users/u2", E.tok_u2, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "deleted")));
    assert_int_equal(json_integer_value(json_object_get(j, "tokens_revoked")), 1);
    json_decref(j);
    expect_free("GET", "/v1/users/u2/data", E.admin, NULL, 404);
    expect_free("DELETE", "/v1/users/u2", E.admin, NULL, 404);
    expect_free("GET", "/v1/users/u2/data", E.tok_u2, NULL, 401); /* revoked */
    j = expect("GET", "/v1/users/u2/recommendations", E.admin, NULL, 200);
    assert_true(json_is_false(json_object_get(j, "personalized")));
    json_decref(j);
    /* the gate records every attempt: the erasure and the second DELETE (outcome=not_found) */
    assert_int_equal(audit_count("delete", "u2"), 2);
}

/* ---- issue 18: consent as a partial update, purposes from one table,
 * collection gated by consent, the shopper's view of the audit log ---- */

/* A new token for user (freed by the caller). */
static char *token_for(const char *user)
{
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, NULL), PVG_OK);
    char *tok = NULL;
    assert_int_equal(pvg_auth_token_issue(s, user, 3600, 0, &tok, NULL, NULL), PVG_OK);
    pvg_store_free(s);
    return tok;
}

/* A 400 whose "field" and message name the field that is wrong. */
static void expect_field_error(const char *method, const char *body, const char *field,
                               const char *says)
{
    json_t *j = expect(method, "/v1/users/u4/consent", E.admin, body, 400);
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (!strstr(msg, says)) fail_msg("%s %s: message \"%s\" lacks \"%s\"", method, body, msg, says);
    if (field)
        assert_string_equal(json_string_value(json_object_get(j, "field")), field);
    else
        assert_null(json_object_get(j, "field"));
    assert_true(json_is_string(json_object_get(j, "expected")));
    json_decref(j);
}

static void check_consent(const char *user, int pers, int anal)
{
    char path[100];
    snprintf(path, sizeof path, "/v1/users/%s/consent", user);
    json_t *j = expect("GET", path, E.admin, NULL, 200);
    assert_int_equal(json_is_true(json_object_get(j, "personalization")), pers);
    assert_int_equal(json_is_true(json_object_get(j, "analytics")), anal);
    json_decref(j);
}

static void test_consent_partial_update(void **state)
{
    (void)state;
    const char *p = "/v1/users/u4/consent";
    check_consent("u4", 1, 1);
    /* only the fields present change, with PUT and with PATCH */
    json_t *j = expect("PUT", p, E.admin, "{\"analytics\":false}", 200);
    assert_true(json_is_true(json_object_get(j, "personalization")));
    assert_true(json_is_false(json_object_get(j, "analytics")));
    json_decref(j);
    check_consent("u4", 1, 0);
    json_decref(expect("PATCH", p, E.admin, "{\"personalization\":false}", 200));
    check_consent("u4", 0, 0);
    json_decref(expect("PATCH", p, E.admin, "{\"personalization\":true,\"analytics\":true}", 200));
    check_consent("u4", 1, 1);
    /* errors name the field that is wrong and what it holds */
    expect_field_error("PUT", "{\"analytics\":\"yes\"}", "analytics",
                       "field \"analytics\": expected true or false, got a string");
    expect_field_error("PATCH", "{\"personalization\":true,\"analytics\":1}", "analytics",
                       "field \"analytics\": expected true or false, got a number");
    expect_field_error("PUT", "{\"personalization\":null}", "personalization",
                       "field \"personalization\": expected true or false, got null");
    expect_field_error(
        "PUT", "{\"recommend\":true}", "recommend",
        "field \"recommend\": unknown; expected \"personalization\" or \"analytics\"");
    expect_field_error("PATCH", "{}", NULL, "at least one of the fields");
    expect_field_error("PUT", "[true]", NULL, "expected an object");
    check_consent("u4", 1, 1); /* nothing changed by a refused request */
    /* the table's methods are what 405 offers */
    resp r;
    assert_int_equal(http("POST", p, E.admin, "{}", &r), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers, "Allow: GET, PUT, PATCH"));
    resp_free(&r);
}

/* The consent answer's purposes are the policy's, word for word the
 * export's; the pages hold none of those texts. */
static void test_purposes_one_source(void **state)
{
    (void)state;
    json_t *c = expect("GET", "/v1/users/u4/consent", E.admin, NULL, 200);
    json_t *x = expect("GET", "/v1/users/u4/data", E.admin, NULL, 200);
    json_t *cp = json_object_get(c, "purposes"), *xp = json_object_get(x, "purposes");
    assert_true(json_array_size(cp) >= 3);
    assert_int_equal(json_array_size(cp), json_array_size(xp));
    const char *src = getenv("PVG_SOURCE_DIR");
    static const char *pages[] = {"portal.html", "portal.js",  "shop.html",      "shop.js",
                                  "common.js",   "index.html", "dashboard.html", "dashboard.js"};
    for (size_t i = 0; i < json_array_size(cp); i++) {
        json_t *a = json_array_get(cp, i), *b = json_array_get(xp, i);
        assert_string_equal(json_string_value(json_object_get(a, "name")),
                            json_string_value(json_object_get(b, "name")));
        const char *desc = json_string_value(json_object_get(a, "description"));
        assert_non_null(desc);
        assert_string_equal(desc, json_string_value(json_object_get(b, "description")));
        assert_true(
            json_equal(json_object_get(a, "event_types"), json_object_get(b, "event_types")));
        assert_int_equal(json_is_true(json_object_get(a, "granted")),
                         json_is_true(json_object_get(b, "active")));
        for (size_t k = 0; src && k < sizeof pages / sizeof pages[0]; k++) {
            char path[600];
            snprintf(path, sizeof path, "%s/src/server/web/%s", src, pages[k]);
            FILE *f = fopen(path, "rb");
            assert_non_null(f);
            char *text = calloc(1, 1 << 20);
            size_t n = fread(text, 1, (1 << 20) - 1, f);
            fclose(f);
            text[n] = 0;
            if (strstr(text, desc)) fail_msg("%s repeats the purpose text \"%s\"", pages[k], desc);
            free(text);
        }
    }
    json_decref(c);
    json_decref(x);
}

/* Events are recorded only for a purpose the shopper consents to: views
 * (personalisation or analytics) are refused with both switches off,
 * purchases (kept for the shop's records, no switch) are not. */
static void test_events_consent_gated(void **state)
{
    (void)state;
    char *tok = token_for("u6");
    const char *view = "[{\"user\":\"u6\",\"type\":\"view\",\"item\":\"B2\",\"ts\":1300000500}]";
    const char *cart =
        "[{\"user\":\"u6\",\"type\":\"cart\",\"item\":\"B3\",\"quantity\":1,\"ts\":1300000600}]";
    json_t *j = expect("POST", "/v1/events", tok, view, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "stored")), 1);
    json_decref(j);
    json_decref(expect("PATCH", "/v1/users/u6/consent", tok,
                       "{\"personalization\":false,\"analytics\":false}", 200));
    j = expect("POST", "/v1/events", tok, cart, 422);
    json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
    assert_string_equal(json_string_value(json_object_get(e0, "reason")), "no_consent");
    assert_non_null(strstr(json_string_value(json_object_get(e0, "message")), "cart"));
    json_decref(j);
    /* the operator's key is held to the same rule */
    j = expect("POST", "/v1/events", E.admin,
               "[{\"user\":\"u6\",\"type\":\"view\",\"item\":\"B1\",\"ts\":1300000700},"
               "{\"user\":\"u6\",\"type\":\"purchase\",\"item\":\"B1\",\"ts\":1300000700,"
               "\"quantity\":1,\"amount\":2.5}]",
               200);
    assert_int_equal(json_integer_value(json_object_get(j, "stored")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "rejected")), 1);
    e0 = json_array_get(json_object_get(j, "errors"), 0);
    assert_int_equal(json_integer_value(json_object_get(e0, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(e0, "reason")), "no_consent");
    json_decref(j);
    /* analytics alone is a purpose that uses carts */
    json_decref(expect("PATCH", "/v1/users/u6/consent", tok, "{\"analytics\":true}", 200));
    j = expect("POST", "/v1/events", tok, cart, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "stored")), 1);
    json_decref(j);
    json_decref(expect("PATCH", "/v1/users/u6/consent", tok, "{\"personalization\":true}", 200));
    /* the export holds exactly the recorded ones */
    j = expect("GET", "/v1/users/u6/data", tok, NULL, 200);
    int views = 0, carts = 0, b1 = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(j, "events"), i, ev)
    {
        const char *t = json_string_value(json_object_get(ev, "type"));
        const char *item = json_string_value(json_object_get(ev, "item"));
        if (strcmp(t, "view") == 0 && strcmp(item, "B2") == 0) views++;
        if (strcmp(t, "cart") == 0) carts++;
        if (strcmp(item, "B1") == 0 && strcmp(t, "view") == 0) b1++;
    }
    assert_int_equal(views, 1);
    assert_int_equal(carts, 1);
    assert_int_equal(b1, 0);
    json_decref(j);
    pvg_auth_credential_free(tok);
}

/* The entries of the raw log about user (the test's own reading). */
static int raw_entries_about(const char *user)
{
    return audit_count(NULL, user);
}

static void test_own_audit_entries(void **state)
{
    (void)state;
    char *ta = token_for("u7"), *tb = token_for("u8");
    /* some accesses about each */
    json_decref(expect("GET", "/v1/users/u7/data", E.admin, NULL, 200));
    json_decref(expect("GET", "/v1/users/u7/recommendations", ta, NULL, 200));
    json_decref(expect("GET", "/v1/users/u8/data", tb, NULL, 200));
    json_t *j = expect("GET", "/v1/users/u7/audit", ta, NULL, 200);
    long long total = json_integer_value(json_object_get(j, "total"));
    assert_int_equal(total, raw_entries_about("u7"));
    json_t *entries = json_object_get(j, "entries");
    assert_int_equal(json_array_size(entries), (size_t)total);
    /* newest first: this very read, by the shopper */
    json_t *e0 = json_array_get(entries, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "action")), "audit_read");
    assert_string_equal(json_string_value(json_object_get(e0, "actor")), "you");
    int saw_operator_export = 0, saw_own_recommend = 0;
    size_t i;
    json_t *e;
    long long prev = LLONG_MAX;
    json_array_foreach(entries, i, e)
    {
        const char *t = json_string_value(json_object_get(e, "time"));
        int y, mo, d, h, mi, s;
        char z = 0;
        assert_int_equal(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &z), 7);
        assert_int_equal(z, 'Z');
        assert_true(json_integer_value(json_object_get(e, "seq")) < prev);
        prev = json_integer_value(json_object_get(e, "seq"));
        const char *actor = json_string_value(json_object_get(e, "actor"));
        const char *action = json_string_value(json_object_get(e, "action"));
        assert_true(strcmp(actor, "you") == 0 || strcmp(actor, "operator") == 0 ||
                    strcmp(actor, "service") == 0);
        assert_true(strlen(json_string_value(json_object_get(e, "purpose"))) > 0);
        assert_true(strlen(json_string_value(json_object_get(e, "outcome"))) > 0);
        if (strcmp(action, "export") == 0 && strcmp(actor, "operator") == 0)
            saw_operator_export = 1;
        if (strcmp(action, "recommend") == 0 && strcmp(actor, "you") == 0) saw_own_recommend = 1;
    }
    assert_true(saw_operator_export && saw_own_recommend);
    json_decref(j);
    /* the answer names no credential, no detail and nobody else */
    resp r;
    assert_int_equal(http("GET", "/v1/users/u7/audit", ta, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "key:"));
    assert_null(strstr(r.body, "token:"));
    assert_null(strstr(r.body, "k=10"));
    assert_null(strstr(r.body, "\"u8\""));
    char dd[300], sub_b[40];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    pvg_store *st = NULL;
    assert_int_equal(pvg_store_open(dd, &st, NULL), PVG_OK);
    pvg_audit_subject_of_user(st, "u8", sub_b);
    pvg_store_free(st);
    assert_null(strstr(r.body, sub_b));
    resp_free(&r);
    /* B's accesses never show in A's list: only A's own two reads since do */
    json_decref(expect("GET", "/v1/users/u8/consent", tb, NULL, 200));
    json_decref(expect("GET", "/v1/users/u8/data", E.admin, NULL, 200));
    j = expect("GET", "/v1/users/u7/audit?limit=2", ta, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), total + 2);
    assert_int_equal(json_integer_value(json_object_get(j, "shown")), 2);
    json_decref(j);
    j = expect("GET", "/v1/users/u8/audit", tb, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), raw_entries_about("u8"));
    json_decref(j);
    /* A cannot read B's entries; the route is the shopper's own */
    expect_free("GET", "/v1/users/u8/audit", ta, NULL, 403);
    expect_free("GET", "/v1/users/u7/audit", E.admin, NULL, 403);
    expect_free("GET", "/v1/users/u7/audit", E.analyst, NULL, 403);
    expect_free("GET", "/v1/users/u7/audit", NULL, NULL, 401);
    expect_free("GET", "/v1/users/u7/audit?limit=0", ta, NULL, 400);
    pvg_auth_credential_free(ta);
    pvg_auth_credential_free(tb);
}

/* The gate's collection rule follows the policy: a type some purpose uses
 * needs one of those purposes active (a shopper not yet known starts from
 * consent_defaults), a type no purpose names is governed by the allow-list
 * alone, and a policy without purposes gates nothing. */
static void record_one(pvg_store *s, const char *user, pvg_event_type type, const char *want)
{
    pvg_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.item = "A1";
    ev.ts = (int64_t)time(NULL) - 60 + (int64_t)type; /* within the 10 days kept */
    pvg_event_in in = {user, &ev, NULL, 0};
    pvg_event_out out;
    long long stored = -1;
    pvg_access g;
    pvg_access_init(&g, s, "test");
    pvg_error err;
    assert_int_equal(pvg_access_events_record(&g, &in, 1, &out, &stored, NULL, &err), PVG_OK);
    if (!want) {
        if (out.status != PVG_OK) fprintf(stderr, "refused: %s\n", out.message);
        assert_int_equal(out.status, PVG_OK);
        assert_int_equal(stored, 1);
    } else {
        assert_int_equal(out.status, PVG_ERR_POLICY);
        assert_string_equal(out.reason, want);
        assert_non_null(strstr(out.message, pvg_event_type_name(type)));
        assert_int_equal(stored, 0);
    }
}

static void test_collection_rules_of_the_policy(void **state)
{
    (void)state;
    static const char *const policies[2] = {
        "{\"version\": 1, \"events\": {\"view\": {\"retention_days\": 10, \"fields\": []},"
        " \"cart\": {\"retention_days\": 10, \"fields\": []},"
        " \"purchase\": {\"retention_days\": 10, \"fields\": []}},"
        " \"consent_defaults\": {\"personalization\": false, \"analytics\": false},"
        " \"purposes\": [{\"name\": \"personalization\", \"consent\": \"personalization\","
        " \"description\": \"d1\", \"event_types\": [\"view\"]},"
        " {\"name\": \"orders\", \"consent\": null, \"description\": \"d2\","
        " \"event_types\": [\"purchase\"]}]}",
        "{\"version\": 1, \"events\": {\"view\": {\"retention_days\": 10, \"fields\": []}},"
        " \"consent_defaults\": {\"personalization\": false, \"analytics\": false}}",
    };
    for (int k = 0; k < 2; k++) {
        char dir[] = "/tmp/pvg_test_collect_XXXXXX";
        assert_non_null(mkdtemp(dir));
        char dd[100];
        snprintf(dd, sizeof dd, "%s/data", dir);
        pvg_store_init_options o;
        memset(&o, 0, sizeof o);
        o.policy_json = policies[k];
        pvg_error err;
        assert_int_equal(pvg_store_init(dd, &o, &err), PVG_OK);
        pvg_store *s = NULL;
        assert_int_equal(pvg_store_open(dd, &s, &err), PVG_OK);
        if (k == 0) {
            record_one(s, "new", PVG_EVENT_VIEW, "no_consent"); /* defaults: off */
            record_one(s, "new", PVG_EVENT_CART, NULL);         /* no purpose names carts */
            record_one(s, "new", PVG_EVENT_PURCHASE, NULL);     /* orders: no switch */
            pvg_access g;
            pvg_access_init(&g, s, "test");
            pvg_consent c;
            assert_int_equal(pvg_access_consent_change(&g, "new", 1, -1, &c, &err), PVG_OK);
            record_one(s, "new", PVG_EVENT_VIEW, NULL);
        } else {
            record_one(s, "new", PVG_EVENT_VIEW, NULL); /* no purposes: the allow-list alone */
        }
        pvg_store_free(s);
        char kf[600], cmd[800];
        if (pvg_store_key_file(dd, NULL, kf, sizeof kf, &err) == PVG_OK) unlink(kf);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
    }
}

static void test_openapi_matches_routes(void **state)
{
    (void)state;
    json_t *doc = expect("GET", "/v1/openapi.json", NULL, NULL, 200);
    assert_non_null(doc);
    assert_non_null(strstr(json_string_value(json_object_get(doc, "openapi")), "3."));
    json_t *paths = json_object_get(doc, "paths");
    assert_true(json_is_object(paths));
    size_t api_routes = 0;
    for (size_t i = 0; i < pvg_srv_routes_count(); i++) {
        const pvg_srv_route *rt = &pvg_srv_routes()[i];
        int api = strncmp(rt->pattern, "/v1/", 4) == 0 || strcmp(rt->pattern, "/healthz") == 0 ||
                  strcmp(rt->pattern, "/metrics") == 0;
        if (!api) continue;
        api_routes++;
        char m[16];
        size_t k = 0;
        for (; rt->method[k] && k < sizeof m - 1; k++)
            m[k] = (char)(rt->method[k] + 32);
        m[k] = 0;
        json_t *op = json_object_get(json_object_get(paths, rt->pattern), m);
        if (!op) fprintf(stderr, "openapi lacks %s %s\n", rt->method, rt->pattern);
        assert_non_null(op);
        assert_non_null(json_object_get(op, "responses"));
        int public = (rt->access & PVG_SRV_PUBLIC) != 0;
        json_t *sec = json_object_get(op, "security");
        /* public operations say security: []; the others inherit the global bearer scheme */
        if (public)
            assert_true(json_is_array(sec) && json_array_size(sec) == 0);
        else
            assert_true(sec == NULL || json_array_size(sec) > 0);
    }
    /* and nothing documented that the server does not route */
    size_t documented = 0;
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        const char *meth;
        json_t *op;
        json_object_foreach(item, meth, op)
        {
            if (strcmp(meth, "parameters") == 0) continue;
            documented++;
            char upper[16];
            size_t k = 0;
            for (; meth[k] && k < sizeof upper - 1; k++)
                upper[k] = (char)(meth[k] - 32);
            upper[k] = 0;
            int found = 0;
            for (size_t i = 0; i < pvg_srv_routes_count(); i++)
                if (strcmp(pvg_srv_routes()[i].pattern, path) == 0 &&
                    strcmp(pvg_srv_routes()[i].method, upper) == 0)
                    found = 1;
            if (!found) fprintf(stderr, "openapi documents unrouted %s %s\n", upper, path);
            assert_true(found);
        }
    }
    assert_int_equal(documented, api_routes);
    json_decref(doc);
}

/* GET /v1/fl/items: a shopper's route (no credential 401, an analyst 403);
 * on a server without federated training, 404 in the API's error shape and
 * nothing else (no item id, no list). */
static void test_fl_items_without_fl(void **state)
{
    (void)state;
    expect_free("GET", "/v1/fl/items", NULL, NULL, 401);
    expect_free("GET", "/v1/fl/items", E.analyst, NULL, 403);
    resp r;
    assert_int_equal(http("GET", "/v1/fl/items", E.tok_u1, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "not_found");
    assert_non_null(json_string_value(json_object_get(j, "message")));
    assert_null(json_object_get(j, "items"));
    json_decref(j);
    resp_free(&r);
}

static void test_pages(void **state)
{
    (void)state;
    static const char *pages[] = {"/", "/portal", "/dashboard", "/static/shop.html"};
    for (int i = 0; i < 4; i++) {
        resp r;
        assert_int_equal(http("GET", pages[i], NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.headers, "text/html"));
        assert_non_null(strstr(r.headers, "Content-Security-Policy"));
        assert_null(strstr(r.headers, "wasm-unsafe-eval")); /* only the federated page */
        assert_non_null(strstr(r.body, "<html"));
        resp_free(&r);
    }
    /* the browser federated client's pages (the shop trains on the device):
       WebAssembly may compile there */
    static const char *wasm_pages[] = {"/static/fl.html", "/shop", "/shop?x=1"};
    for (int i = 0; i < 3; i++) {
        resp fl;
        assert_int_equal(http("GET", wasm_pages[i], NULL, NULL, &fl), 0);
        assert_int_equal(fl.status, 200);
        assert_non_null(strstr(fl.headers, "'wasm-unsafe-eval'"));
        resp_free(&fl);
    }
    expect_free("GET", "/static/nothing.js", NULL, NULL, 404);
    expect_free("GET", "/static/app.css", NULL, NULL, 200);
}

typedef struct hammer {
    pthread_t t;
    atomic_int *stop;
    int ok, bad;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    while (!atomic_load(h->stop) && h->ok + h->bad < 5000) {
        resp r;
        if (http("GET", "/v1/users/u1/recommendations?k=5", E.tok_u1, NULL, &r) == 0 &&
            r.status == 200)
            h->ok++;
        else
            h->bad++;
        resp_free(&r);
    }
    return NULL;
}

static void test_model_reload(void **state)
{
    (void)state;
    /* clients keep asking during the reload: none of them sees a failure */
    atomic_int stop;
    atomic_init(&stop, 0);
    hammer hs[4];
    for (int i = 0; i < 4; i++) {
        hs[i].stop = &stop;
        hs[i].ok = hs[i].bad = 0;
        assert_int_equal(pthread_create(&hs[i].t, NULL, hammer_main, &hs[i]), 0);
    }
    /* a reload still due from an earlier test (an erasure rewrites the
     * model file) happens now, not during this one */
    assert_int_equal(pvg_server_reload_model(E.srv, NULL), PVG_OK);
    long g0 = pvg_server_model_generation(E.srv);
    char dd[300], mp[320];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    snprintf(mp, sizeof mp, "%s/model.pvgm", dd);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, NULL), PVG_OK);
    put_event(s, "u7", "C2", PVG_EVENT_PURCHASE);
    /* written aside and renamed in: the server never sees a half-written
     * file (which could make it load twice) */
    char tmp[340];
    snprintf(tmp, sizeof tmp, "%s.new", mp);
    train_model(s, tmp, 6);
    assert_int_equal(rename(tmp, mp), 0);
    pvg_store_free(s);
    /* requests keep being served while the reload happens */
    long g = g0;
    for (int i = 0; i < 200 && g == g0; i++) {
        json_t *j = expect("GET", "/v1/users/u1/recommendations", E.tok_u1, NULL, 200);
        json_decref(j);
        struct timespec ts = {0, 25 * 1000 * 1000};
        nanosleep(&ts, NULL);
        g = pvg_server_model_generation(E.srv);
    }
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    int ok = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(hs[i].t, NULL);
        ok += hs[i].ok;
        bad += hs[i].bad;
    }
    assert_true(g > g0);
    assert_true(ok > 0);
    assert_int_equal(bad, 0);
    json_t *j = expect("GET", "/healthz", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), g);
    json_decref(j);
    assert_int_equal(audit_count("dp_release", NULL), 4); /* a new build, new releases */
}

static void test_audit_chain_and_tamper(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    (void)state;
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, NULL), PVG_OK);
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(s, NULL, &rep, NULL), PVG_OK);
    assert_true(rep.entries >= 6);
    assert_int_equal(
        t_rawdb_exec(dd, "audit.db", "UPDATE audit_log SET detail='nothing happened' WHERE seq=3"),
        SQLITE_OK);
    assert_int_equal(pvg_audit_verify(s, NULL, &rep, NULL), PVG_ERR_CORRUPT);
    assert_int_equal(rep.problems[0].kind, PVG_AUDIT_EDITED);
    assert_int_equal(rep.problems[0].seq, 3);
    pvg_store_free(s);
}

/* Random requests (deterministic seed): methods, paths, credentials, bodies
 * of random bytes and mutated JSON. Every answer is an HTTP status (or the
 * server closes the connection); the server stays up. */
static uint64_t fz_state = 0x243F6A8885A308D3ull;
static uint64_t fz(void)
{
    fz_state ^= fz_state << 13;
    fz_state ^= fz_state >> 7;
    fz_state ^= fz_state << 17;
    return fz_state;
}

static void test_fuzz(void **state)
{
    (void)state;
    static const char *methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};
    static const char *segs[] = {
        "v1",   "users",   "items",           "u1",      "u3",      "popular", "similar",
        "data", "consent", "recommendations", "events",  "%00",     "..",      "%2e%2e",
        "A1",   "",        "x%ffy",           "metrics", "healthz", "static",  "shop.html"};
    static const char *bodies[] = {
        "{\"personalization\":true,\"analytics\":false}",
        "{\"events\":[{\"user\":\"u9\",\"type\":\"view\",\"item\":\"A1\"}]}",
        "[{\"user\":\"u9\",\"type\":\"search\",\"query\":\"x\"}]",
        "null",
        "{\"events\":[[[[]]]]}",
        "\"\\ud800\"",
        "1e999"};
    int n = getenv("PVG_SANITIZED") ? 150 : 400;
    for (int i = 0; i < n; i++) {
        char path[600] = "";
        int nseg = (int)(fz() % 5);
        for (int k = 0; k < nseg; k++) {
            strcat(path, "/");
            strcat(path, segs[fz() % (sizeof segs / sizeof segs[0])]);
        }
        if (!path[0]) strcpy(path, "/");
        if (fz() % 4 == 0) strcat(path, fz() % 2 ? "?k=5" : "?k=-1&k=abc");
        const char *cred = NULL;
        switch (fz() % 4) {
        case 0:
            cred = E.admin;
            break;
        case 1:
            cred = E.tok_u1;
            break;
        case 2:
            cred = "pvgk_zz";
            break;
        default:
            break;
        }
        char body[1200];
        size_t bl = 0;
        if (fz() % 2) {
            const char *b = bodies[fz() % (sizeof bodies / sizeof bodies[0])];
            bl = strlen(b);
            memcpy(body, b, bl);
            int flips = (int)(fz() % 4);
            for (int k = 0; k < flips && bl; k++)
                body[fz() % bl] = (char)(fz() % 255 + 1);
        } else {
            bl = fz() % 1000;
            for (size_t k = 0; k < bl; k++)
                body[k] = (char)(fz() % 255 + 1);
        }
        body[bl] = 0;
        resp r;
        if (http(methods[fz() % (sizeof methods / sizeof methods[0])], path, cred, body, &r) == 0) {
            assert_true(r.status >= 200 && r.status <= 599);
            resp_free(&r);
        }
    }
    expect_free("GET", "/healthz", NULL, NULL, 200);
}

/* Every API route of the table for every kind of caller: no credential,
 * admin, analyst, a user token on its own id and on another user's id.
 * Refusals are exactly 401/403 as the table's access bits say; allowed
 * calls are never 401/403. Erasure runs last (it revokes the token). */
static void test_route_role_matrix(void **state)
{
    (void)state;
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, NULL), PVG_OK);
    char *tok_mx = NULL;
    assert_int_equal(pvg_auth_token_issue(s, "mx", 3600, 0, &tok_mx, NULL, NULL), PVG_OK);
    pvg_store_free(s);
    enum { NONE, ADMIN, ANALYST, OWN_USER, OTHER_USER, N_CALLERS };
    static const char *names[] = {"none", "admin", "analyst", "own user", "other user"};
    int checked = 0;
    for (int pass = 0; pass < 2; pass++) { /* pass 1: DELETE only */
        for (size_t i = 0; i < pvg_srv_routes_count(); i++) {
            const pvg_srv_route *rt = &pvg_srv_routes()[i];
            if (strncmp(rt->pattern, "/v1/", 4) != 0 && strcmp(rt->pattern, "/metrics") != 0 &&
                strcmp(rt->pattern, "/healthz") != 0)
                continue;
            if ((strcmp(rt->method, "DELETE") == 0) != (pass == 1)) continue;
            int user_route = strstr(rt->pattern, "/users/") != NULL;
            static const int order[N_CALLERS] = {NONE, ADMIN, ANALYST, OTHER_USER, OWN_USER};
            for (int ci = 0; ci < N_CALLERS; ci++) {
                int c = order[ci];
                const char *cred = c == ADMIN                           ? E.admin
                                   : c == ANALYST                       ? E.analyst
                                   : (c == OWN_USER || c == OTHER_USER) ? tok_mx
                                                                        : NULL;
                const char *id = !user_route                 ? "A1"
                                 : c == OTHER_USER           ? "u1"
                                 : (c == ADMIN && pass == 1) ? "ghost"
                                                             : "mx";
                char path[300];
                const char *brace = strchr(rt->pattern, '{');
                if (brace) {
                    const char *close = strchr(brace, '}');
                    snprintf(path, sizeof path, "%.*s%s%s", (int)(brace - rt->pattern), rt->pattern,
                             id, close + 1);
                } else {
                    snprintf(path, sizeof path, "%s", rt->pattern);
                }
                const char *body = strcmp(rt->method, "POST") == 0 ? "{\"events\":[]}"
                                   : strcmp(rt->method, "PUT") == 0
                                       ? "{\"personalization\":true,\"analytics\":true}"
                                       : NULL;
                unsigned bit = c == ADMIN     ? PVG_SRV_ADMIN
                               : c == ANALYST ? PVG_SRV_ANALYST
                               : c == NONE    ? 0
                                              : PVG_SRV_USER;
                int want;
                if (rt->access & PVG_SRV_PUBLIC)
                    want = 0;
                else if (c == NONE)
                    want = 401;
                else if (!(rt->access & bit))
                    want = 403;
                else if ((rt->access & PVG_SRV_OWN) && c == OTHER_USER)
                    want = 403;
                else
                    want = 0;
                resp r;
                assert_int_equal(http(rt->method, path, cred, body, &r), 0);
                int refused = r.status == 401 || r.status == 403;
                if ((want && r.status != want) || (!want && refused))
                    fprintf(stderr, "%s %s as %s: got %d, want %s: %s\n", rt->method, path,
                            names[c], r.status,
                            want == 401   ? "401"
                            : want == 403 ? "403"
                                          : "allowed",
                            r.body);
                if (want)
                    assert_int_equal(r.status, want);
                else
                    assert_false(refused);
                resp_free(&r);
                checked++;
            }
        }
    }
    assert_true(checked >= 12 * N_CALLERS);
    pvg_auth_credential_free(tok_mx);
}

/* A second server with the default limit on failed authentications: a
 * client guessing credentials is slowed to 429; valid credentials pass. */
static void test_auth_failure_limit(void **state)
{
    (void)state;
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", E.dir);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.port = 0;
    o.auth_failure_rate = 1; /* burst 2 */
    o.popular_k = 5; /* same build, same list: the DP release is reused, not charged again */
    o.allow_insecure_rng = 1;
    pvg_server *srv2 = NULL;
    pvg_error err;
    assert_int_equal(pvg_server_start(&o, &srv2, &err), PVG_OK);
    int port1 = E.port;
    E.port = pvg_server_port(srv2);
    int limited = 0;
    for (int i = 0; i < 4; i++) {
        resp r;
        assert_int_equal(http("GET", "/v1/whoami", "pvgk_guess", NULL, &r), 0);
        assert_true(r.status == 401 || r.status == 429);
        if (r.status == 429) limited++;
        resp_free(&r);
    }
    assert_true(limited >= 1);
    expect_free("GET", "/v1/whoami", E.admin, NULL, 200);
    E.port = port1;
    pvg_server_free(srv2);
}

/* Finding 5 of issue 11: what an analyst key sees of /v1/stats and /metrics
 * is DP or not personal, and does not move when one shopper (who bought an
 * item missing from the catalog, so ingest adds a stub row) is added; an
 * admin key sees the exact figures. */
static json_t *analyst_view(void)
{
    json_t *j = expect("GET", "/v1/stats", E.analyst, NULL, 200);
    /* what may move without any shopper: time and the budget's spending */
    json_object_del(j, "uptime_seconds");
    json_object_del(j, "now");
    json_object_del(j, "budget");
    json_t *m = json_object_get(j, "model");
    if (json_is_object(m)) {
        json_object_del(m, "popular_release");
        json_object_del(m, "popular_error");
    }
    return j;
}

/* The analyst's /metrics lines whose value may be personal: all but uptime
 * and the budget gauges (new string). */
static char *analyst_metrics(void)
{
    resp r;
    assert_int_equal(http("GET", "/metrics", E.analyst, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    char *out = calloc(1, strlen(r.body) + 1);
    char *save = NULL;
    for (char *line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || strncmp(line, "privguide_uptime_seconds", 24) == 0 ||
            strncmp(line, "privguide_budget_", 17) == 0)
            continue;
        strcat(out, line);
        strcat(out, "\n");
    }
    resp_free(&r);
    return out;
}

static long long admin_exact(const char *section, const char *field)
{
    json_t *j = expect("GET", "/v1/stats", E.admin, NULL, 200);
    json_t *v = json_object_get(json_object_get(json_object_get(j, "exact"), section), field);
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(j);
    return n;
}

static void test_stats_exact_for_admins_only(void **state)
{
    (void)state;
    char ev[400];
    snprintf(ev, sizeof ev, "%s/data/evaluation.json", E.dir);
    FILE *f = fopen(ev, "w");
    assert_non_null(f);
    fputs("{\"model\":\"ials\",\"users\":30,\"interactions\":90,\"metrics\":{\"ndcg@10\":0.25}}\n",
          f);
    fclose(f);
    json_t *before = analyst_view();
    char *mbefore = analyst_metrics();
    /* none of the exact figures */
    assert_null(json_object_get(before, "exact"));
    assert_null(json_object_get(before, "store"));
    assert_null(json_object_get(before, "evaluation"));
    assert_null(json_object_get(before, "requests"));
    json_t *m = json_object_get(before, "model");
    assert_true(json_is_object(m));
    assert_null(json_object_get(m, "items"));
    assert_null(json_object_get(m, "users"));
    assert_non_null(json_object_get(m, "built_at"));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(before, "catalog"), "items")), 10);
    assert_null(strstr(mbefore, "privguide_store_"));
    assert_null(strstr(mbefore, "privguide_http_"));
    assert_null(strstr(mbefore, "privguide_recommendations_"));
    assert_null(strstr(mbefore, "privguide_events_"));
    assert_non_null(strstr(mbefore, "privguide_catalog_items 10\n"));
    json_t *full = expect("GET", "/v1/stats", E.analyst, NULL, 200);
    assert_true(json_is_object(json_object_get(full, "budget")));
    assert_true(json_object_get(full, "uptime_seconds") != NULL);
    json_decref(full);
    long long users = admin_exact("store", "users"), items = admin_exact("store", "items");
    assert_true(users > 0 && items >= 10); /* earlier tests erase and add shoppers */
    /* one more shopper, who bought an item the catalog does not have */
    expect_free("POST", "/v1/events", E.admin,
                "{\"events\":[{\"user\":\"newcomer\",\"type\":\"purchase\",\"item\":\"ZZZ-secret\","
                "\"ts\":1300000200}]}",
                200);
    assert_int_equal(admin_exact("store", "users"), users + 1);
    assert_int_equal(admin_exact("store", "items"), items + 1);
    json_t *after = analyst_view();
    char *mafter = analyst_metrics();
    assert_true(json_equal(before, after));
    assert_string_equal(mbefore, mafter);
    /* the admin sees the exact figures, the evaluation among them */
    json_t *j = expect("GET", "/v1/stats", E.admin, NULL, 200);
    json_t *x = json_object_get(j, "exact");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(x, "evaluation"), "users")),
                     30);
    assert_true(json_integer_value(json_object_get(json_object_get(x, "model"), "users")) > 0);
    assert_true(json_integer_value(json_object_get(json_object_get(x, "requests"), "total")) > 0);
    json_decref(j);
    resp r;
    assert_int_equal(http("GET", "/metrics", E.admin, NULL, &r), 0);
    char want[64];
    snprintf(want, sizeof want, "privguide_store_users %lld\n", users + 1);
    assert_non_null(strstr(r.body, want));
    resp_free(&r);
    unlink(ev);
    json_decref(before);
    json_decref(after);
    free(mbefore);
    free(mafter);
}

/* Concurrent requests that each need the store (metrics, stats, consent,
 * export) on a server with two worker connections: no deadlock, no error. */
typedef struct mixer {
    pthread_t t;
    int id, ok, bad;
} mixer;

static void *mixer_main(void *arg)
{
    mixer *mx = arg;
    static const char *paths[] = {"/metrics", "/v1/stats", "/v1/users/u4/consent",
                                  "/v1/users/u4/data", "/v1/users/u4/recommendations"};
    for (int i = 0; i < 40; i++) {
        resp r;
        if (http("GET", paths[(i + mx->id) % 5], E.admin, NULL, &r) == 0 && r.status == 200)
            mx->ok++;
        else
            mx->bad++;
        resp_free(&r);
    }
    return NULL;
}

static void test_concurrent_store_use(void **state)
{
    (void)state;
    mixer ms[6];
    for (int i = 0; i < 6; i++) {
        ms[i].id = i;
        ms[i].ok = ms[i].bad = 0;
        assert_int_equal(pthread_create(&ms[i].t, NULL, mixer_main, &ms[i]), 0);
    }
    int ok = 0, bad = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(ms[i].t, NULL);
        ok += ms[i].ok;
        bad += ms[i].bad;
    }
    assert_int_equal(bad, 0);
    assert_int_equal(ok, 240);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_routes), cmocka_unit_test(test_auth_refusals),
        cmocka_unit_test(test_role_matrix_allowed), cmocka_unit_test(test_route_role_matrix),
        cmocka_unit_test(test_recommendations_and_consent),
        cmocka_unit_test(test_recs_json_same_bytes), cmocka_unit_test(test_real9),
        cmocka_unit_test(test_bad_input), cmocka_unit_test(test_declared_length_not_reserved),
        cmocka_unit_test(test_declared_length_not_reserved_midway),
        cmocka_unit_test(test_events_same_rules_as_jsonl),
        cmocka_unit_test(test_events_empty_batch), cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_concurrent_store_use), cmocka_unit_test(test_auth_failure_limit),
        cmocka_unit_test(test_export_delete_and_audit),
        cmocka_unit_test(test_openapi_matches_routes),
        cmocka_unit_test(test_consent_partial_update), cmocka_unit_test(test_purposes_one_source),
        cmocka_unit_test(test_events_consent_gated), cmocka_unit_test(test_own_audit_entries),
        cmocka_unit_test(test_collection_rules_of_the_policy), cmocka_unit_test(test_pages),
        cmocka_unit_test(test_fl_items_without_fl), cmocka_unit_test(test_recs_json_catalog_edited),
        cmocka_unit_test(test_model_reload), cmocka_unit_test(test_stats_exact_for_admins_only),
        cmocka_unit_test(test_audit_chain_and_tamper),
        /* late: its second server on the same store releases its own popular list */
        cmocka_unit_test(test_audit_failure_concurrent_no_data),
        cmocka_unit_test(test_fuzz), /* last: it may erase users */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
