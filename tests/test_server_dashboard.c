/*
 * test_server_dashboard.c - the dashboard's server side: the latency
 * buckets and quantiles of the time series, the rings counting requests,
 * error classes and events, GET /v1/admin/timeseries on a live server (the
 * requests made, the events accepted, the budget spent per purpose from the
 * ledger, the model build with the quality of evaluation.json), and the
 * operator's key actions: GET /v1/admin/keys and POST
 * /v1/admin/credentials/{id}/revoke (roles, bad ids, the own key, the
 * revoked key refused at once, the audit entry), and POST
 * /v1/admin/keys/rotate (the master key rotated while the server runs:
 * every pooled connection, the audit writer's and the loader's go on
 * working with the new key). Every wait loop is bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/server_internal.h"
#include "store/store_priv.h"
#include "t_http.h"

#include <privguide/audit.h>
#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct env {
    char dir[256], dd[300];
    pvg_server *srv;
    int port;
    char *admin, *admin2, *analyst, *tok;
    char admin2_id[PVG_AUTH_ID_HEX + 1], admin_id[PVG_AUTH_ID_HEX + 1];
} env;

static env E;

static void short_wait(void)
{
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* ---- fixture ---- */

static int setup(void **state)
{
    (void)state;
    snprintf(E.dir, sizeof E.dir, "/tmp/pvg_test_ts_XXXXXX");
    if (!mkdtemp(E.dir)) return -1;
    snprintf(E.dd, sizeof E.dd, "%s/data", E.dir);
    pvg_error err;
    if (pvg_store_init(E.dd, NULL, &err) != PVG_OK) return -1;
    pvg_store *s = NULL;
    if (pvg_store_open(E.dd, &s, &err) != PVG_OK) return -1;
    static const char *items[] = {"A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4"};
    for (int i = 0; i < 8; i++) {
        pvg_item it = {0, items[i], "thing", NULL, 1.5 + i, NULL, 0, -1};
        if (pvg_store_item_put(s, &it, NULL, &err) != PVG_OK) return -1;
    }
    for (int u = 0; u < 24; u++) {
        char user[16];
        snprintf(user, sizeof user, "u%d", u);
        for (int j = 0; j < 3; j++) {
            pvg_event e;
            memset(&e, 0, sizeof e);
            e.type = PVG_EVENT_PURCHASE;
            e.item = items[(u % 2) * 4 + (u + j) % 4];
            e.ts = 1300000000 + j;
            int outcome = 0;
            if (pvg_store_event_put(s, user, &e, NULL, &outcome, &err) != PVG_OK) return -1;
        }
        pvg_consent c = {1, 1};
        if (pvg_store_consent_set(s, user, &c, &err) != PVG_OK) return -1;
    }
    if (pvg_ledger_set_budget(s, "default", 10.0, 1e-6, &err) != PVG_OK) return -1;
    pvg_dataset *ds = NULL;
    if (pvg_dataset_load_store(s, NULL, &ds, NULL, &err) != PVG_OK) return -1;
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 4;
    p.epochs = 2;
    p.seed = 3;
    pvg_model *m = NULL;
    char mp[340];
    snprintf(mp, sizeof mp, "%s/model.pvgm", E.dd);
    if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK || pvg_model_save(m, mp, &err) != PVG_OK)
        return -1;
    pvg_model_free(m);
    pvg_dataset_free(ds);
    /* the evaluation of this build, written after it (as `privguide eval --json` would) */
    char ev[340];
    snprintf(ev, sizeof ev, "%s/evaluation.json", E.dd);
    FILE *f = fopen(ev, "w");
    if (!f) return -1;
    fprintf(f, "{\"model\":\"ials\",\"recall@20\":0.61,\"ndcg@20\":0.44,\"recall@10\":0.5,"
               "\"ndcg@10\":0.375,\"precision@10\":0.1}\n");
    fclose(f);
    pvg_principal pr;
    if (pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "main", 0, &E.admin, &pr, &err) != PVG_OK)
        return -1;
    memcpy(E.admin_id, pr.key_id, sizeof E.admin_id);
    if (pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "spare", 0, &E.admin2, &pr, &err) != PVG_OK)
        return -1;
    memcpy(E.admin2_id, pr.key_id, sizeof E.admin2_id);
    if (pvg_auth_apikey_create(s, PVG_ROLE_ANALYST, "analyst", 0, &E.analyst, &pr, &err) != PVG_OK)
        return -1;
    if (pvg_auth_token_issue(s, "u1", 3600, 0, &E.tok, &pr, &err) != PVG_OK) return -1;
    pvg_store_free(s);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = E.dd;
    o.threads = 2;
    o.popular_k = 4;
    o.allow_insecure_rng = 1;
    o.insecure_seed = 1;
    o.auth_failure_rate = -1;
    /* the rotation under load exports one shopper thousands of times: access
     * monitoring would rightly suspend the key (export_burst) */
    o.monitor_off = 1;
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
    pvg_auth_credential_free(E.admin2);
    pvg_auth_credential_free(E.analyst);
    pvg_auth_credential_free(E.tok);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", E.dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the arithmetic ---- */

static void test_latency_buckets(void **state)
{
    (void)state;
    assert_int_equal(pvg_srv_ts_lat_bucket(0.0), 0);
    assert_int_equal(pvg_srv_ts_lat_bucket(-1.0), 0);
    assert_int_equal(pvg_srv_ts_lat_bucket(NAN), 0);
    assert_int_equal(pvg_srv_ts_lat_bucket(1e9), PVG_SRV_TS_LAT_BUCKETS - 1);
    assert_true(isinf(pvg_srv_ts_lat_bound(PVG_SRV_TS_LAT_BUCKETS - 1)));
    for (int b = 0; b < PVG_SRV_TS_LAT_BUCKETS - 1; b++) {
        double hi = pvg_srv_ts_lat_bound(b);
        assert_int_equal(pvg_srv_ts_lat_bucket(hi), b);              /* bounds are inclusive */
        assert_int_equal(pvg_srv_ts_lat_bucket(hi * 1.0001), b + 1); /* just above: the next */
        if (b) assert_true(fabs(hi / pvg_srv_ts_lat_bound(b - 1) - sqrt(2.0)) < 1e-12);
    }
    assert_true(fabs(pvg_srv_ts_lat_bound(0) - 5e-5) < 1e-15);
}

static void test_quantiles(void **state)
{
    (void)state;
    long long h[PVG_SRV_TS_LAT_BUCKETS] = {0};
    assert_true(pvg_srv_ts_quantile(h, 0.5) < 0); /* empty */
    /* every observation in one bucket: every quantile inside that bucket */
    h[10] = 100;
    for (double q = 0.01; q < 1; q += 0.07) {
        double v = pvg_srv_ts_quantile(h, q);
        assert_true(v > pvg_srv_ts_lat_bound(9) && v <= pvg_srv_ts_lat_bound(10));
    }
    /* 90 fast (bucket 4) and 10 slow (bucket 20): p50 fast, p95 and p99 slow */
    memset(h, 0, sizeof h);
    h[4] = 90;
    h[20] = 10;
    double p50 = pvg_srv_ts_quantile(h, 0.5), p95 = pvg_srv_ts_quantile(h, 0.95),
           p99 = pvg_srv_ts_quantile(h, 0.99);
    assert_true(p50 > pvg_srv_ts_lat_bound(3) && p50 <= pvg_srv_ts_lat_bound(4));
    assert_true(p95 > pvg_srv_ts_lat_bound(19) && p95 <= pvg_srv_ts_lat_bound(20));
    assert_true(p99 >= p95);
    /* beyond the last bound: the last finite bound */
    memset(h, 0, sizeof h);
    h[PVG_SRV_TS_LAT_BUCKETS - 1] = 3;
    assert_true(pvg_srv_ts_quantile(h, 0.5) == pvg_srv_ts_lat_bound(PVG_SRV_TS_LAT_BUCKETS - 2));
}

static long long sum_of(json_t *series, const char *name)
{
    json_t *a = json_object_get(series, name);
    assert_true(json_is_array(a));
    long long n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) n += json_integer_value(v);
    return n;
}

/* The rings alone (no server): what is observed is what is read, in both
 * windows, and the percentiles come from the observed latencies. */
static void test_rings(void **state)
{
    (void)state;
    pvg_srv_timeseries ts;
    assert_int_equal(pvg_srv_ts_init(&ts), 0);
    for (int i = 0; i < 50; i++)
        pvg_srv_ts_observe(&ts, 200, 0.001);
    for (int i = 0; i < 7; i++)
        pvg_srv_ts_observe(&ts, 404, 0.002);
    for (int i = 0; i < 3; i++)
        pvg_srv_ts_observe(&ts, 503, 0.5);
    pvg_srv_ts_events(&ts, 42);
    pvg_srv_ts_events(&ts, 0);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    for (int day = 0; day < 2; day++) {
        json_t *o = pvg_srv_ts_json(&ts, s, day, 0);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "step_seconds")), day ? 60 : 10);
        json_t *se = json_object_get(o, "series");
        size_t n = json_array_size(json_object_get(se, "t"));
        assert_int_equal(n, day ? 1440 : 360);
        assert_int_equal(json_array_size(json_object_get(se, "latency_p99_ms")), n);
        assert_int_equal(sum_of(se, "requests"), 60);
        assert_int_equal(sum_of(se, "client_errors"), 7);
        assert_int_equal(sum_of(se, "server_errors"), 3);
        assert_int_equal(sum_of(se, "events_accepted"), 42);
        /* the points are consecutive steps ending now */
        json_t *t = json_object_get(se, "t");
        long long step = day ? 60 : 10;
        assert_int_equal(json_integer_value(json_array_get(t, 1)) -
                             json_integer_value(json_array_get(t, 0)),
                         step);
        long long now = json_integer_value(json_object_get(o, "now"));
        long long last = json_integer_value(json_array_get(t, n - 1));
        assert_true(last <= now && now < last + step);
        /* a p50 near 1 ms and a p99 near 500 ms where the requests fell */
        int seen = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *p50 = json_array_get(json_object_get(se, "latency_p50_ms"), i);
            json_t *req = json_array_get(json_object_get(se, "requests"), i);
            if (json_integer_value(req) == 0) {
                assert_true(json_is_null(p50));
                continue;
            }
            if (json_integer_value(req) != 60) continue; /* split over a step boundary */
            seen = 1;
            double v = json_number_value(p50);
            assert_true(v > 0.7 && v <= 1.42);
            double v99 =
                json_number_value(json_array_get(json_object_get(se, "latency_p99_ms"), i));
            assert_true(v99 > 353 && v99 <= 708);
        }
        (void)seen; /* a step boundary between the observations leaves no whole step */
        json_decref(o);
    }
    pvg_store_free(s);
    pvg_srv_ts_free(&ts);
}

/* ---- on a live server ---- */

static void test_timeseries_route(void **state)
{
    (void)state;
    /* what this test does on top of what others did: count everything */
    json_t *o = expect("GET", "/v1/admin/timeseries?window=1h", E.admin, NULL, 200);
    long long before = sum_of(json_object_get(o, "series"), "requests");
    long long ev_before = sum_of(json_object_get(o, "series"), "events_accepted");
    json_decref(o);
    expect_free("GET", "/healthz", NULL, NULL, 200);
    expect_free("GET", "/v1/nothing-here", E.admin, NULL, 404);
    expect_free("GET", "/v1/stats", NULL, NULL, 401);
    expect_free("GET", "/v1/admin/timeseries", E.analyst, NULL, 403);
    expect_free("GET", "/v1/admin/timeseries", E.tok, NULL, 403);
    expect_free("GET", "/v1/admin/timeseries?window=7d", E.admin, NULL, 400);
    expect_free("POST", "/v1/events", E.admin,
                "{\"events\":[{\"user\":\"u2\",\"type\":\"view\",\"item\":\"A1\"},"
                "{\"user\":\"u3\",\"type\":\"view\",\"item\":\"A2\"},"
                "{\"user\":\"u4\",\"type\":\"nonsense\",\"item\":\"A2\"}]}",
                200);
    /* made: 1 (the first read) + 8; answers are counted when their connection
     * completes, which may follow the client's read by a moment */
    long long want = before + 9, got = 0, c4 = 0, ev = 0;
    for (int tries = 0; tries < 300; tries++) {
        o = expect("GET", "/v1/admin/timeseries", E.admin, NULL, 200);
        json_t *se = json_object_get(o, "series");
        got = sum_of(se, "requests");
        c4 = sum_of(se, "client_errors");
        ev = sum_of(se, "events_accepted");
        if (got >= want + tries) { /* each read adds one to the next */
            json_decref(o);
            break;
        }
        json_decref(o);
        short_wait();
    }
    assert_true(got >= want);
    assert_true(c4 >= 5); /* 404, 401, 403, 403, 400 */
    assert_int_equal(ev - ev_before, 2);

    o = expect("GET", "/v1/admin/timeseries?window=24h", E.admin, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(o, "window")), "24h");
    assert_true(sum_of(json_object_get(o, "series"), "requests") >= want);
    /* the budget per purpose: the popular list released when the model was
     * loaded, as the ledger says */
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    pvg_ledger_state ls;
    assert_int_equal(pvg_ledger_state_get(s, &ls, NULL), PVG_OK);
    pvg_store_free(s);
    json_t *b = json_object_get(o, "budget");
    assert_true(json_is_object(b));
    assert_true(fabs(json_number_value(json_object_get(b, "total_epsilon")) - 10.0) < 1e-9);
    json_t *eps = json_object_get(b, "epsilon_spent");
    assert_true(ls.purposes[PVG_LEDGER_POPULAR_LIST].spent_epsilon > 0);
    for (int p = 0; p < PVG_LEDGER_N_PURPOSES; p++) {
        json_t *a = json_object_get(eps, pvg_ledger_purpose_name((pvg_ledger_purpose)p));
        assert_int_equal(json_array_size(a), 1440);
        double last = json_number_value(json_array_get(a, 1439));
        assert_true(fabs(last - ls.purposes[p].spent_epsilon) < 1e-9);
        /* cumulative: never decreasing */
        for (size_t i = 1; i < 1440; i++)
            assert_true(json_number_value(json_array_get(a, i)) >=
                        json_number_value(json_array_get(a, i - 1)));
    }
    /* the model build, with the quality of evaluation.json (smallest k) */
    json_t *models = json_object_get(o, "models");
    assert_int_equal(json_array_size(models), 1);
    json_t *m = json_array_get(models, 0);
    assert_int_equal(json_integer_value(json_object_get(m, "generation")), 1);
    assert_string_equal(json_string_value(json_object_get(m, "type")), "ials");
    json_t *q = json_object_get(m, "quality");
    assert_int_equal(json_integer_value(json_object_get(q, "k")), 10);
    assert_true(fabs(json_number_value(json_object_get(q, "recall")) - 0.5) < 1e-12);
    assert_true(fabs(json_number_value(json_object_get(q, "ndcg")) - 0.375) < 1e-12);
    json_decref(o);
}

typedef struct audit_find {
    const char *action;
    int n;
} audit_find;

static int audit_action(void *ctx, const pvg_audit_entry *e)
{
    audit_find *f = ctx;
    if (strcmp(e->action, f->action) == 0) f->n++;
    return 0;
}

static int audit_count(const char *action)
{
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    audit_find f = {action, 0};
    assert_int_equal(pvg_audit_foreach(s, 0, 0, audit_action, &f, NULL), PVG_OK);
    pvg_store_free(s);
    return f.n;
}

static const char *state_of(json_t *list, const char *id)
{
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(list, "keys"), i,
                       k) if (strcmp(json_string_value(json_object_get(k, "id")), id) ==
                              0) return json_string_value(json_object_get(k, "state"));
    return NULL;
}

static void test_keys_and_revoke(void **state)
{
    (void)state;
    json_t *l = expect("GET", "/v1/admin/keys", E.admin, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(l, "you")), E.admin_id);
    assert_int_equal(json_array_size(json_object_get(l, "keys")), 3); /* tokens are not listed */
    assert_string_equal(state_of(l, E.admin2_id), "active");
    char *text = json_dumps(l, 0);
    assert_null(strstr(text, "pvgk_")); /* never a secret */
    free(text);
    json_decref(l);
    expect_free("GET", "/v1/admin/keys", E.analyst, NULL, 403);
    char path[128];
    snprintf(path, sizeof path, "/v1/admin/credentials/%s/revoke", E.admin2_id);
    expect_free("POST", path, E.analyst, NULL, 403);
    expect_free("POST", path, E.tok, NULL, 403);
    expect_free("POST", "/v1/admin/credentials/xyz/revoke", E.admin, NULL, 400);
    expect_free("POST", "/v1/admin/credentials/0123456789abcdef0/revoke", E.admin, NULL, 400);
    expect_free("POST", "/v1/admin/credentials/0000000000000000/revoke", E.admin, NULL, 404);
    char own[128];
    snprintf(own, sizeof own, "/v1/admin/credentials/%s/revoke", E.admin_id);
    expect_free("POST", own, E.admin, NULL, 409);
    /* the spare key works, is revoked, and is refused at once */
    expect_free("GET", "/v1/stats", E.admin2, NULL, 200);
    json_t *j = expect("POST", path, E.admin, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "revoked")));
    json_decref(j);
    expect_free("GET", "/v1/stats", E.admin2, NULL, 401);
    l = expect("GET", "/v1/admin/keys", E.admin, NULL, 200);
    assert_string_equal(state_of(l, E.admin2_id), "revoked");
    json_decref(l);
    /* and the audit log says so (written before the answer left) */
    assert_int_equal(audit_count("credential_revoke"), 1);
}

/* Reads each shopper's export (their records open with data keys under the
 * master key; each read is audited through the writer's connection) over
 * both pooled connections, and records an event for a new shopper (a new
 * data key, wrapped under the current master key). */
static void personal_data_works(const char *newbie)
{
    for (int u = 0; u < 8; u++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/users/u%d/data", u);
        json_t *j = expect("GET", path, E.admin, NULL, 200);
        assert_true(json_array_size(json_object_get(j, "events")) >= 3);
        json_decref(j);
    }
    char body[200];
    snprintf(body, sizeof body,
             "{\"events\":[{\"user\":\"%s\",\"type\":\"view\",\"item\":\"A1\"}]}", newbie);
    json_t *j = expect("POST", "/v1/events", E.admin, body, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "accepted")), 1);
    json_decref(j);
}

typedef struct hammer {
    atomic_int stop, ok, bad, last_bad;
} hammer;

/* Reads a shopper's export until told to stop, counting the answers. */
static void *hammer_main(void *arg)
{
    hammer *h = arg;
    for (int i = 0; i < 2000 && !atomic_load(&h->stop); i++) {
        resp r;
        if (http("GET", "/v1/users/u5/data", E.admin, NULL, &r) != 0) {
            atomic_fetch_add(&h->bad, 1);
            continue;
        }
        if (r.status == 200) {
            atomic_fetch_add(&h->ok, 1);
        } else {
            atomic_fetch_add(&h->bad, 1);
            atomic_store(&h->last_bad, r.status);
        }
        free(r.body);
    }
    return NULL;
}

static void test_rotate_master_key(void **state)
{
    (void)state;
    personal_data_works("n1");
    expect_free("POST", "/v1/admin/keys/rotate", E.analyst, NULL, 403);
    expect_free("POST", "/v1/admin/keys/rotate", E.tok, NULL, 403);
    json_t *j = expect("POST", "/v1/admin/keys/rotate", E.admin, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "rotated")));
    assert_true(json_integer_value(json_object_get(j, "rewrapped")) >= 25); /* 24 + n1 */
    json_decref(j);
    personal_data_works("n2");
    /* again, under load: the reopened connections rotate and follow as
     * well, and no request in flight meanwhile fails */
    hammer h;
    atomic_init(&h.stop, 0);
    atomic_init(&h.ok, 0);
    atomic_init(&h.bad, 0);
    atomic_init(&h.last_bad, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h), 0);
    for (int i = 0; i < 50 && atomic_load(&h.ok) < 10; i++)
        short_wait();
    json_decref(expect("POST", "/v1/admin/keys/rotate", E.admin, NULL, 200));
    int seen = atomic_load(&h.ok);
    for (int i = 0; i < 100 && atomic_load(&h.ok) < seen + 10; i++)
        short_wait();
    atomic_store(&h.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    if (h.bad)
        fprintf(stderr, "%d of %d reads failed (last %d)\n", h.bad, h.ok + h.bad, h.last_bad);
    assert_int_equal(h.bad, 0);
    assert_true(h.ok >= 10);
    personal_data_works("n3");
    assert_int_equal(audit_count("master_key_rotate"), 2);
    /* another process opening the store now reads the shoppers' records */
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    char *exp = NULL;
    assert_int_equal(pvg_store_user_export(s, "n2", &exp, NULL), PVG_OK);
    assert_non_null(strstr(exp, "\"A1\""));
    pvg_free(exp);
    pvg_store_free(s);
}

/* A rotation reopens the connections of the server's own threads too (the
 * access monitor's, the search index builder's): none of them keeps the
 * retired master key in memory. A second server with monitoring on, on the
 * same data dir (last: the first server's connections keep the old key). */
static void test_rotate_reopens_thread_connections(void **state)
{
    (void)state;
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = E.dd;
    o.threads = 2;
    o.allow_insecure_rng = 1;
    o.insecure_seed = 1;
    o.auth_failure_rate = -1;
    pvg_server *srv = NULL;
    pvg_error err;
    assert_int_equal(pvg_server_start(&o, &srv, &err), PVG_OK);
    int port = E.port;
    E.port = pvg_server_port(srv);
    json_decref(expect("POST", "/v1/admin/keys/rotate", E.admin, NULL, 200));
    E.port = port;
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    pvg_store **ms = pvg_srv_monitor_hold(srv);
    assert_non_null(ms);
    int same = memcmp((*ms)->keys.kid, s->keys.kid, PVG_KID_BYTES) == 0;
    pvg_srv_monitor_release(srv);
    assert_true(same);
    pvg_store **ss = pvg_srv_search_hold(srv);
    assert_non_null(ss);
    same = memcmp((*ss)->keys.kid, s->keys.kid, PVG_KID_BYTES) == 0;
    pvg_srv_search_release(srv);
    assert_true(same);
    pvg_store_free(s);
    pvg_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency_buckets),
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_rings),
        cmocka_unit_test(test_timeseries_route),
        cmocka_unit_test(test_keys_and_revoke),
        cmocka_unit_test(test_rotate_master_key),
        cmocka_unit_test(test_rotate_reopens_thread_connections),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
