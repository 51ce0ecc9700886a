/*
 * test_server_dpmodel.c - the DP-trained model in serving (issue 13): a
 * model at the DP model path (<data_dir>/model-dp.pvgm, serve --dp-model)
 * must record DP training in its header, else it is refused with a clear
 * error; once loaded, similar items (for shoppers and analysts), the popular
 * list and the non-personalised list come from it, /v1/stats reports its
 * (epsilon, delta) and mechanism and which model serves what; without it
 * the DP releases serve (the fallback); the non-DP model still serves a
 * consenting shopper's own list and the operator's similar items.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_http.h"

#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct env {
    char dir[256], dd[300], mp[340], dp[340];
    pvg_server *srv;
    int port;
    char *admin, *analyst, *tok_u0, *tok_nc;
} env;

static env E;

/* ---- fixture ---- */
/*
 * Catalog P00..P29 (P_i bought by the 60 - 2i shoppers s0..), ZZZ-stub (no
 * catalog row) bought by s0 only. "nc" bought P00..P04 and does not
 * consent to personalisation.
 */

#define N_P 30

static void put_event(pvg_store *s, const char *user, const char *item)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.item = item;
    e.ts = (int64_t)time(NULL) - 86400;
    int outcome = 0;
    pvg_error err;
    pvg_status st = pvg_store_event_put(s, user, &e, NULL, &outcome, &err);
    if (st != PVG_OK) fprintf(stderr, "event_put: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
}

static void item_put(pvg_store *s, const char *id, const char *title, double price)
{
    pvg_item it;
    memset(&it, 0, sizeof it);
    it.ext_id = id;
    it.title = title;
    it.price = price;
    assert_int_equal(pvg_store_item_put(s, &it, NULL, NULL), PVG_OK);
}

/* Trains `type` from the store (eps 0: without DP) and writes it to path
 * (a temp file renamed over it). */
static int g_no_charge; /* 1: write the DP model without charging the ledger */

static void train_to(pvg_model_type type, double eps, const char *path)
{
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_status st = pvg_dataset_load_store(s, NULL, &ds, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "dataset: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(type, &p);
    if (eps > 0) {
        p.dp_epsilon = eps;
        p.dp_delta = 1e-6;
    }
    pvg_model *m = NULL;
    st = pvg_model_train(ds, &p, &m, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "train: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    if (eps > 0 && !g_no_charge) { /* what train --epsilon does: charged before it leaves */
        st = pvg_model_dp_charge(s, m, NULL, &err);
        if (st != PVG_OK) fprintf(stderr, "charge: %s\n", err.text);
        assert_int_equal(st, PVG_OK);
    }
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    st = pvg_model_save(m, tmp, &err);
    if (st != PVG_OK) fprintf(stderr, "save: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    assert_int_equal(rename(tmp, path), 0);
    pvg_model_free(m);
    pvg_dataset_free(ds);
    pvg_store_free(s);
}

static pvg_server *start(pvg_error *err)
{
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = E.dd;
    o.port = 0;
    o.threads = 2;
    o.reload_ms = 50;
    o.popular_k = 20;
    o.popular_epsilon = 1.0;
    o.allow_insecure_rng = 1;
    o.insecure_seed = 7;
    o.auth_failure_rate = -1;
    pvg_server *srv = NULL;
    pvg_error_clear(err);
    if (pvg_server_start(&o, &srv, err) != PVG_OK) return NULL;
    return srv;
}

static int setup(void **state)
{
    (void)state;
    snprintf(E.dir, sizeof E.dir, "/tmp/pvg_test_srvdp_XXXXXX");
    if (!mkdtemp(E.dir)) return -1;
    snprintf(E.dd, sizeof E.dd, "%s/data", E.dir);
    snprintf(E.mp, sizeof E.mp, "%s/model.pvgm", E.dd);
    snprintf(E.dp, sizeof E.dp, "%s/model-dp.pvgm", E.dd);
    pvg_error err;
    if (pvg_store_init(E.dd, NULL, &err) != PVG_OK) return -1;
    pvg_store *s = NULL;
    if (pvg_store_open(E.dd, &s, &err) != PVG_OK) return -1;
    char id[16], user[16];
    for (int i = 0; i < N_P; i++) {
        snprintf(id, sizeof id, "P%02d", i);
        item_put(s, id, "Popular thing", 1.0 + i);
    }
    for (int u = 0; u < 60; u++) {
        snprintf(user, sizeof user, "s%d", u);
        for (int i = 0; i < N_P; i++) {
            snprintf(id, sizeof id, "P%02d", i);
            if (u < 60 - 2 * i) put_event(s, user, id);
        }
    }
    put_event(s, "s0", "ZZZ-stub");
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "P%02d", i);
        put_event(s, "nc", id);
    }
    pvg_consent c = {0, 1}; /* no personalisation */
    if (pvg_store_consent_set(s, "nc", &c, &err) != PVG_OK) return -1;
    if (pvg_ledger_total_set(s, "test", 1000.0, 1e-5, 0, &err) != PVG_OK) return -1;
    pvg_principal p;
    if (pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "test", 0, &E.admin, &p, &err) != PVG_OK ||
        pvg_auth_apikey_create(s, PVG_ROLE_ANALYST, "test", 0, &E.analyst, &p, &err) != PVG_OK ||
        pvg_auth_token_issue(s, "s0", 3600, 0, &E.tok_u0, &p, &err) != PVG_OK ||
        pvg_auth_token_issue(s, "nc", 3600, 0, &E.tok_nc, &p, &err) != PVG_OK)
        return -1;
    pvg_store_free(s);
    train_to(PVG_MODEL_ITEMKNN, 0, E.mp);
    E.srv = start(&err);
    if (!E.srv) {
        fprintf(stderr, "start: %s\n", err.text);
        return -1;
    }
    E.port = pvg_server_port(E.srv);
    t_http_connect_to(&E.port);
    return pvg_server_model_generation(E.srv) > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pvg_server_free(E.srv);
    pvg_auth_credential_free(E.admin);
    pvg_auth_credential_free(E.analyst);
    pvg_auth_credential_free(E.tok_u0);
    pvg_auth_credential_free(E.tok_nc);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", E.dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *src_of(json_t *j)
{
    const char *s = json_string_value(json_object_get(j, "source"));
    return s ? s : "(none)";
}

static int has_item(json_t *items, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(items, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "item")), id) == 0) return 1;
    }
    return 0;
}

/* ---- tests ---- */

/* Without a DP model the DP releases serve, and /v1/stats says so. */
static void test_fallback_releases(void **state)
{
    (void)state;
    assert_int_equal(pvg_server_dp_model_generation(E.srv), 0);
    json_t *j = expect("GET", "/v1/items/popular?k=5", E.tok_u0, NULL, 200);
    assert_string_equal(src_of(j), "dp_release");
    json_decref(j);
    j = expect("GET", "/v1/items/P01/similar?k=5", E.tok_u0, NULL, 200);
    assert_string_equal(src_of(j), "dp_release");
    json_decref(j);
    j = expect("GET", "/v1/stats", E.analyst, NULL, 200);
    assert_true(json_is_null(json_object_get(j, "dp_model")));
    json_t *sv = json_object_get(j, "serving");
    assert_string_equal(src_of(json_object_get(sv, "popular")), "dp_release");
    assert_string_equal(src_of(json_object_get(sv, "similar")), "dp_release");
    assert_string_equal(src_of(json_object_get(sv, "own_list")), "model");
    json_decref(j);
}

/* A model trained without DP at the DP path: refused at start (the server
 * does not start, the error names the path and why), and on a reload (the
 * releases keep serving; /v1/stats shows the error). */
static void test_nondp_model_refused(void **state)
{
    (void)state;
    train_to(PVG_MODEL_ITEMKNN, 0, E.dp);
    pvg_error err;
    pvg_server *srv = start(&err);
    assert_null(srv);
    fprintf(stderr, "start with a non-DP model at the DP path: %s\n", err.text);
    assert_int_equal(err.code, PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, E.dp));
    assert_non_null(strstr(err.text, "records no DP training"));

    /* the running server: the reload refuses it */
    pvg_error_clear(&err);
    assert_int_equal(pvg_server_reload_model(E.srv, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "records no DP training"));
    assert_int_equal(pvg_server_dp_model_generation(E.srv), 0);
    json_t *j = expect("GET", "/v1/items/P01/similar?k=5", E.tok_u0, NULL, 200);
    assert_string_equal(src_of(j), "dp_release");
    json_decref(j);
    j = expect("GET", "/v1/stats", E.analyst, NULL, 200);
    assert_true(json_is_null(json_object_get(j, "dp_model")));
    const char *why = json_string_value(json_object_get(j, "dp_model_error"));
    assert_non_null(why);
    assert_non_null(strstr(why, "records no DP training"));
    json_decref(j);
    assert_int_equal(unlink(E.dp), 0);
}

/* A DP model whose (epsilon, delta) no model_builds release of this store
 * names (trained elsewhere, or with a huge epsilon never charged) is refused
 * at the DP path: what others see must be in the ledger. */
static void test_uncharged_dp_model_refused(void **state)
{
    (void)state;
    g_no_charge = 1;
    train_to(PVG_MODEL_POPULARITY, 1e6, E.dp);
    g_no_charge = 0;
    pvg_error err;
    pvg_error_clear(&err);
    assert_int_equal(pvg_server_reload_model(E.srv, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "never charged"));
    assert_int_equal(pvg_server_dp_model_generation(E.srv), 0);
    json_t *j = expect("GET", "/v1/items/P01/similar?k=5", E.tok_u0, NULL, 200);
    assert_string_equal(src_of(j), "dp_release");
    json_decref(j);
    assert_int_equal(unlink(E.dp), 0);
}

/* A DP-trained model at the DP path serves similar items, popular and the
 * non-personalised list; /v1/stats reports its (epsilon, delta) and
 * mechanism. The non-DP model keeps the consenting shopper's own list and
 * the operator's similar items. */
static void test_dp_model_serves(void **state)
{
    (void)state;
    train_to(PVG_MODEL_ITEMKNN, 2.0, E.dp);
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_server_reload_model(E.srv, &err);
    if (st != PVG_OK) fprintf(stderr, "reload: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    assert_true(pvg_server_dp_model_generation(E.srv) > 0);

    json_t *j = expect("GET", "/v1/stats", E.analyst, NULL, 200);
    json_t *dm = json_object_get(j, "dp_model");
    assert_true(json_is_object(dm));
    assert_string_equal(json_string_value(json_object_get(dm, "type")), "itemknn");
    double eps = json_number_value(json_object_get(dm, "epsilon"));
    double delta = json_number_value(json_object_get(dm, "delta"));
    fprintf(stderr, "DP model: epsilon %g delta %g mechanism %s\n", eps, delta,
            json_string_value(json_object_get(dm, "mechanism")));
    assert_true(eps > 0 && eps <= 2.0 + 1e-9);
    assert_true(delta > 0 && delta <= 1e-6 * (1 + 1e-9));
    assert_true(strlen(json_string_value(json_object_get(dm, "mechanism"))) > 0);
    assert_null(json_object_get(j, "dp_model_error")); /* cleared by the good load */
    json_t *sv = json_object_get(j, "serving");
    const char *kinds[] = {"similar", "popular", "non_personal_list"};
    for (int i = 0; i < 3; i++) {
        json_t *k = json_object_get(sv, kinds[i]);
        assert_string_equal(src_of(k), "dp_model");
        assert_true(fabs(json_number_value(json_object_get(k, "epsilon")) - eps) < 1e-12);
        assert_true(fabs(json_number_value(json_object_get(k, "delta")) - delta) < 1e-18);
        assert_string_equal(json_string_value(json_object_get(k, "mechanism")),
                            json_string_value(json_object_get(dm, "mechanism")));
    }
    assert_string_equal(src_of(json_object_get(sv, "own_list")), "model");
    assert_string_equal(src_of(json_object_get(sv, "similar_for_operator")), "model");
    json_decref(j);

    /* similar items for a shopper and an analyst: the DP model */
    const char *creds[] = {E.tok_u0, E.analyst};
    for (int i = 0; i < 2; i++) {
        j = expect("GET", "/v1/items/P01/similar?k=5", creds[i], NULL, 200);
        assert_string_equal(src_of(j), "dp_model");
        json_t *mo = json_object_get(j, "model");
        assert_true(fabs(json_number_value(json_object_get(mo, "epsilon")) - eps) < 1e-12);
        assert_false(has_item(json_object_get(j, "items"), "ZZZ-stub"));
        json_decref(j);
    }
    /* an item outside the catalog has no public neighbours */
    j = expect("GET", "/v1/items/ZZZ-stub/similar?k=5", E.tok_u0, NULL, 200);
    assert_string_equal(src_of(j), "dp_model");
    assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
    json_decref(j);
    /* the operator's tool: the non-DP model */
    j = expect("GET", "/v1/items/P01/similar?k=5", E.admin, NULL, 200);
    assert_string_equal(src_of(j), "model");
    json_decref(j);

    /* popular: the DP model's, catalog items only */
    j = expect("GET", "/v1/items/popular?k=100", E.tok_u0, NULL, 200);
    assert_string_equal(src_of(j), "dp_model");
    json_t *items = json_object_get(j, "items");
    assert_true(json_array_size(items) > 0 && json_array_size(items) <= N_P);
    assert_false(has_item(items, "ZZZ-stub"));
    json_decref(j);

    /* a shopper without personalisation consent: the DP model's list */
    j = expect("GET", "/v1/users/nc/recommendations?k=5", E.tok_nc, NULL, 200);
    assert_false(json_is_true(json_object_get(j, "personalized")));
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "no_consent");
    assert_string_equal(src_of(j), "dp_model");
    assert_true(json_array_size(json_object_get(j, "items")) > 0);
    json_decref(j);
    /* a consenting shopper: their own list from the non-DP model */
    j = expect("GET", "/v1/users/s0/recommendations?k=5", E.tok_u0, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "personalized")));
    json_decref(j);
}

/* A DP popularity model keeps no similarities: similar items fall back to
 * the DP release, popular comes from the model. Then the DP model file is
 * replaced by a non-DP one: the reload refuses it and the DP model in
 * service stays. */
static void test_dp_popularity_and_bad_replacement(void **state)
{
    (void)state;
    long g0 = pvg_server_dp_model_generation(E.srv);
    train_to(PVG_MODEL_POPULARITY, 1.0, E.dp);
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_server_reload_model(E.srv, &err);
    if (st != PVG_OK) fprintf(stderr, "reload: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    long g1 = pvg_server_dp_model_generation(E.srv);
    assert_true(g1 > g0);
    json_t *j = expect("GET", "/v1/items/popular?k=5", E.tok_u0, NULL, 200);
    assert_string_equal(src_of(j), "dp_model");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "model"), "type")),
                        "popularity");
    json_decref(j);
    j = expect("GET", "/v1/items/P01/similar?k=5", E.tok_u0, NULL, 200);
    assert_string_equal(src_of(j), "dp_release");
    json_decref(j);
    j = expect("GET", "/v1/stats", E.analyst, NULL, 200);
    json_t *sv = json_object_get(j, "serving");
    assert_string_equal(src_of(json_object_get(sv, "popular")), "dp_model");
    assert_string_equal(src_of(json_object_get(sv, "similar")), "dp_release");
    json_decref(j);

    train_to(PVG_MODEL_EASE, 0, E.dp);
    pvg_error_clear(&err);
    assert_int_equal(pvg_server_reload_model(E.srv, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_server_dp_model_generation(E.srv), g1);
    j = expect("GET", "/v1/stats", E.analyst, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "dp_model"), "type")),
                        "popularity");
    assert_non_null(
        strstr(json_string_value(json_object_get(j, "dp_model_error")), "records no DP training"));
    json_decref(j);
}

static const char *title_of(json_t *items, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(items, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "item")), id) == 0)
            return json_string_value(json_object_get(e, "title"));
    }
    return NULL;
}

/* Answers show the operator's declared title, not the display title the
 * last sale row wrote (data that depends on shoppers). */
static void test_declared_title_shown(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    /* every item but P02 declared (the DP model's vocabulary), P01 under a
     * title of its own */
    pvg_catalog_entry e[N_P];
    char ids[N_P][8];
    size_t ne = 0;
    for (int i = 0; i < N_P; i++) {
        if (i == 2) continue;
        snprintf(ids[i], sizeof ids[i], "P%02d", i);
        e[ne].ext_id = ids[i];
        e[ne].title = i == 1 ? "Declared lantern" : "Popular thing";
        e[ne++].description = NULL;
    }
    pvg_error err;
    assert_int_equal(pvg_store_catalog_declare(s, e, ne, &err), PVG_OK);
    item_put(s, "P01", "FOR JANE DOE 12 ELM ST", 2.0); /* a later row renames the item */
    pvg_store_free(s);
    /* epsilon 50: noise small enough that P01 is always among P00's neighbours
       in the DP model's list (at 2 it fell out of the top 20 about once in 12) */
    train_to(PVG_MODEL_ITEMKNN, 50.0, E.dp);
    train_to(PVG_MODEL_ITEMKNN, 0, E.mp);
    pvg_error_clear(&err);
    pvg_status st = pvg_server_reload_model(E.srv, &err);
    if (st != PVG_OK) fprintf(stderr, "reload: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    const char *creds[] = {E.tok_u0, E.admin}; /* the DP model's list, the model's list */
    for (int i = 0; i < 2; i++) {
        json_t *j = expect("GET", "/v1/items/P00/similar?k=20", creds[i], NULL, 200);
        const char *t = title_of(json_object_get(j, "items"), "P01");
        assert_non_null(t);
        assert_string_equal(t, "Declared lantern");
        json_decref(j);
    }
    /* an item without declared text keeps its display title */
    json_t *j = expect("GET", "/v1/items/P00/similar?k=20", E.admin, NULL, 200);
    const char *t = title_of(json_object_get(j, "items"), "P02");
    assert_non_null(t);
    assert_string_equal(t, "Popular thing");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fallback_releases),
        cmocka_unit_test(test_nondp_model_refused),
        cmocka_unit_test(test_uncharged_dp_model_refused),
        cmocka_unit_test(test_dp_model_serves),
        cmocka_unit_test(test_dp_popularity_and_bad_replacement),
        cmocka_unit_test(test_declared_title_shown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
