/*
 * test_server_releases.c - the server's DP releases (issue 11, findings 2,
 * 7, 8 and the popular list's training set): the popular list and similar
 * items come from release.h over the PUBLIC domain (catalog items, never
 * event stubs), read shoppers' purchases through the access gate with
 * analytics consent only, are cached and charged once per model build
 * ("popular_list", "similar_items"), and when no budget is left the last
 * release is served with its age.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_http.h"

#include <privguide/access.h>
#include <privguide/audit.h>
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
    char dir[256], dd[300], mp[340];
    pvg_server *srv;
    int port;
    char *admin, *tok_u0, *tok_solo;
} env;

static env E;

/* ---- fixture ---- */
/*
 * Catalog: P00..P29 (P_i bought by the 60 - 2i shoppers s0..s(59-2i)), Q1..Q6
 * (bought only by "solo": Q1 is the one-buyer item, its buyer's basket is
 * Q1..Q6), R1 (bought by 40 shoppers who opted out of analytics: counted,
 * it would be the 12th most popular item). ZZZ-secret is not in the
 * catalog: "solo" posts a purchase of it through the API (a stub item).
 */

#define N_P 30
#define N_OPTOUT 40

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

static void train_model(pvg_store *s, const char *path)
{
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_status st = pvg_dataset_load_store(s, NULL, &ds, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "dataset: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_ITEMKNN, &p);
    pvg_model *m = NULL;
    st = pvg_model_train(ds, &p, &m, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "train: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(pvg_model_save(m, tmp, &err), PVG_OK);
    assert_int_equal(rename(tmp, path), 0);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

static pvg_server *start(const char *dataset, int k, double eps, uint64_t seed)
{
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = E.dd;
    o.port = 0;
    o.threads = 2;
    o.reload_ms = 50; /* a missing release is retried every 0.5 s */
    o.dataset = dataset;
    o.popular_k = k;
    o.popular_epsilon = eps;
    o.allow_insecure_rng = 1;
    o.insecure_seed = seed;
    o.auth_failure_rate = -1;
    pvg_server *srv = NULL;
    pvg_error err;
    if (pvg_server_start(&o, &srv, &err) != PVG_OK) fprintf(stderr, "start: %s\n", err.text);
    return srv;
}

static int setup(void **state)
{
    (void)state;
    snprintf(E.dir, sizeof E.dir, "/tmp/pvg_test_srvrel_XXXXXX");
    if (!mkdtemp(E.dir)) return -1;
    snprintf(E.dd, sizeof E.dd, "%s/data", E.dir);
    snprintf(E.mp, sizeof E.mp, "%s/model.pvgm", E.dd);
    pvg_error err;
    if (pvg_store_init(E.dd, NULL, &err) != PVG_OK) return -1;
    pvg_store *s = NULL;
    if (pvg_store_open(E.dd, &s, &err) != PVG_OK) return -1;
    char id[16], user[16];
    for (int i = 0; i < N_P; i++) {
        snprintf(id, sizeof id, "P%02d", i);
        item_put(s, id, "Popular thing", 1.0 + i);
    }
    for (int i = 1; i <= 6; i++) {
        snprintf(id, sizeof id, "Q%d", i);
        item_put(s, id, "Quiet thing", 5.0);
    }
    item_put(s, "R1", "Opted-out favourite", 3.0);
    for (int u = 0; u < 60; u++) {
        snprintf(user, sizeof user, "s%d", u);
        for (int i = 0; i < N_P; i++) {
            snprintf(id, sizeof id, "P%02d", i);
            if (u < 60 - 2 * i) put_event(s, user, id);
        }
    }
    for (int i = 1; i <= 6; i++) {
        snprintf(id, sizeof id, "Q%d", i);
        put_event(s, "solo", id);
    }
    for (int u = 0; u < N_OPTOUT; u++) {
        snprintf(user, sizeof user, "o%d", u);
        put_event(s, user, "R1");
        put_event(s, user, "P29");
        pvg_consent c = {1, 0}; /* personalisation yes, analytics no */
        assert_int_equal(pvg_store_consent_set(s, user, &c, &err), PVG_OK);
    }
    assert_int_equal(pvg_ledger_total_set(s, "test", 1000.0, 1e-5, 0, &err), PVG_OK);
    pvg_principal p;
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "test", 0, &E.admin, &p, &err),
                     PVG_OK);
    assert_int_equal(pvg_auth_token_issue(s, "s0", 3600, 0, &E.tok_u0, &p, &err), PVG_OK);
    assert_int_equal(pvg_auth_token_issue(s, "solo", 3600, 0, &E.tok_solo, &p, &err), PVG_OK);
    pvg_store_free(s);

    /* no model yet: the server starts, "solo" posts ZZZ-secret, then the
     * model is trained on everything (ZZZ-secret included) */
    E.srv = start("default", 100, 1.0, 1);
    if (!E.srv) return -1;
    E.port = pvg_server_port(E.srv);
    t_http_connect_to(&E.port);
    json_t *j =
        expect("POST", "/v1/events", E.tok_solo,
               "{\"events\":[{\"user\":\"solo\",\"type\":\"purchase\",\"item\":\"ZZZ-secret\","
               "\"ts\":1700000000}]}",
               200);
    json_decref(j);
    if (pvg_store_open(E.dd, &s, &err) != PVG_OK) return -1;
    train_model(s, E.mp);
    pvg_store_free(s);
    for (int i = 0; i < 400 && pvg_server_model_generation(E.srv) == 0; i++) {
        struct timespec ts = {0, 25 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return pvg_server_model_generation(E.srv) > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pvg_server_free(E.srv);
    pvg_auth_credential_free(E.admin);
    pvg_auth_credential_free(E.tok_u0);
    pvg_auth_credential_free(E.tok_solo);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", E.dir);
    return system(cmd) == 0 ? 0 : -1;
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

/* The catalog flag: items from the operator's data are catalog items, an
 * event's item outside the catalog is a stub. */
static void test_catalog_flag(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    pvg_item *it = NULL;
    assert_int_equal(pvg_store_item_get(s, "ZZZ-secret", &it, NULL), PVG_OK);
    assert_int_equal(it->catalog, 0);
    pvg_item_free(it);
    assert_int_equal(pvg_store_item_get(s, "Q1", &it, NULL), PVG_OK);
    assert_int_equal(it->catalog, 1);
    pvg_item_free(it);
    /* a later catalog row makes the stub a catalog item, and it stays so */
    pvg_item c;
    memset(&c, 0, sizeof c);
    c.ext_id = "STUB-LATER";
    c.price = -1;
    int64_t id = 0;
    assert_int_equal(pvg_store_item_put(s, &c, &id, NULL), PVG_OK);
    assert_int_equal(pvg_store_item_get(s, "STUB-LATER", &it, NULL), PVG_OK);
    assert_int_equal(it->catalog, 0);
    pvg_item_free(it);
    c.title = "Now in the catalog";
    assert_int_equal(pvg_store_item_put(s, &c, NULL, NULL), PVG_OK);
    c.title = NULL;
    assert_int_equal(pvg_store_item_put(s, &c, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_store_item_get(s, "STUB-LATER", &it, NULL), PVG_OK);
    assert_int_equal(it->catalog, 1);
    pvg_item_free(it);
    pvg_store_free(s);
}

/* Finding 2: an item bought by one shopper and absent from the catalog is
 * never published, even with k >= the number of items. */
static void test_popular_public_domain(void **state)
{
    (void)state;
    json_t *j = expect("GET", "/v1/items/popular?k=100", E.tok_u0, NULL, 200);
    json_t *items = json_object_get(j, "items");
    assert_int_equal(json_array_size(items), N_P + 6 + 1); /* the whole catalog, noisily ranked */
    assert_false(has_item(items, "ZZZ-secret"));
    assert_true(json_integer_value(json_object_get(j, "released_at")) > 0);
    assert_true(json_is_integer(json_object_get(j, "age_s")));
    assert_false(json_is_true(json_object_get(json_object_get(j, "release"), "stale")));
    json_decref(j);
    /* nor as a neighbour, nor its own similar items */
    j = expect("GET", "/v1/items/ZZZ-secret/similar?k=20", E.tok_u0, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
    json_decref(j);
    for (int i = 1; i <= 6; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/items/Q%d/similar?k=50", i);
        j = expect("GET", path, E.tok_u0, NULL, 200);
        assert_false(has_item(json_object_get(j, "items"), "ZZZ-secret"));
        json_decref(j);
    }
}

/* Finding 7: an item with exactly one buyer; a shopper token asking for its
 * similar items got exactly that buyer's other five items from the non-DP
 * model. Now the answer comes from the DP co-occurrence release, whose
 * sensitivity covers one shopper's whole bounded basket. */
static void test_similar_one_buyer(void **state)
{
    (void)state;
    json_t *j = expect("GET", "/v1/items/Q1/similar?k=6", E.tok_u0, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "source")), "dp_release");
    json_t *rel = json_object_get(j, "release");
    assert_non_null(rel);
    long long m = json_integer_value(json_object_get(rel, "max_items_per_user"));
    assert_true(m >=
                6); /* the buyer's basket (6 items) is within the bound: all of it is covered */
    double l2 = json_real_value(json_object_get(rel, "l2_sensitivity"));
    assert_true(fabs(l2 * l2 - (double)(m * (m + 1) / 2)) < 1e-6);
    assert_true(json_real_value(json_object_get(rel, "epsilon")) <= 1.0 + 1e-9);
    int overlap = 0;
    json_t *items = json_object_get(j, "items");
    for (int i = 2; i <= 6; i++) {
        char id[8];
        snprintf(id, sizeof id, "Q%d", i);
        overlap += has_item(items, id);
    }
    /* chance level: 5 of the 36 other domain items are the basket; 6 picks
     * from noise hit about 0.8 of them */
    fprintf(stderr, "one-buyer item: %d of the buyer's 5 other items among %zu DP neighbours\n",
            overlap, json_array_size(items));
    assert_true(overlap <= 2);
    json_decref(j);
    /* the operator's own tool still has the non-DP model */
    j = expect("GET", "/v1/items/Q1/similar?k=6", E.admin, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(j, "source")), "model");
    json_decref(j);
}

/* The popular list's training set excludes shoppers who opted out of
 * analytics; at a large epsilon (near-exact ranking) the real top items
 * show. */
static void test_popular_optout_and_utility(void **state)
{
    (void)state;
    pvg_server *srv = start("exact", 10, 200.0, 3);
    assert_non_null(srv);
    int port = E.port;
    E.port = pvg_server_port(srv);
    json_t *j = expect("GET", "/v1/items/popular?k=10", E.tok_u0, NULL, 200);
    json_t *items = json_object_get(j, "items");
    /* counted, R1 (40 buyers) would be 11th-12th; P29 (2 + 40 buyers) 10th */
    assert_false(has_item(items, "R1"));
    assert_false(has_item(items, "P29"));
    int top = 0;
    for (int i = 0; i < 10; i++) {
        char id[8];
        snprintf(id, sizeof id, "P%02d", i);
        top += has_item(items, id);
    }
    fprintf(stderr, "epsilon 200: %d of the true top 10 in the DP top 10\n", top);
    assert_true(top >= 8);
    json_decref(j);
    E.port = port;
    pvg_server_free(srv);
}

static double spent(pvg_store *s, pvg_ledger_purpose p)
{
    pvg_ledger_state ls;
    assert_int_equal(pvg_ledger_state_get(s, &ls, NULL), PVG_OK);
    return ls.purposes[p].spent_epsilon;
}

/* Released once per model build and cached; when no budget is left the
 * last release is served with its age; with none ever released the answer
 * says so plainly; once budget is back a fresh release replaces it. */
static void test_popular_budget_exhausted(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    double before = spent(s, PVG_LEDGER_POPULAR_LIST);
    /* the same build and parameters: the cached release, no new charge */
    pvg_server *same = start("default", 100, 1.0, 9);
    assert_non_null(same);
    pvg_server_free(same);
    assert_true(fabs(spent(s, PVG_LEDGER_POPULAR_LIST) - before) < 1e-12);
    json_t *j = expect("GET", "/v1/items/popular?k=5", E.tok_u0, NULL, 200);
    json_int_t first_at = json_integer_value(json_object_get(j, "released_at"));
    json_decref(j);

    /* no budget left for the popular list: its purpose capped at what it spent */
    assert_int_equal(pvg_ledger_cap_set(s, "test", PVG_LEDGER_POPULAR_LIST, before, 1e-5, 1, NULL),
                     PVG_OK);
    pvg_server *srv = start("default", 7, 1.0, 5); /* other parameters: a new release is due */
    assert_non_null(srv);
    int port = E.port;
    E.port = pvg_server_port(srv);
    j = expect("GET", "/v1/items/popular?k=5", E.tok_u0, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 5);
    assert_true(json_is_true(json_object_get(json_object_get(j, "release"), "stale")));
    assert_int_equal(json_integer_value(json_object_get(j, "released_at")), first_at);
    assert_true(json_integer_value(json_object_get(j, "age_s")) >= 0);
    json_decref(j);
    /* the shopper's non-personalised recommendations use it too */
    pvg_server *never = start("never-released", 7, 1.0, 6);
    assert_non_null(never);
    E.port = pvg_server_port(never);
    j = expect("GET", "/v1/items/popular", E.tok_u0, NULL, 503);
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")),
                           "no public popular list exists yet"));
    json_decref(j);
    pvg_server_free(never);

    /* budget back: the server's retry makes a fresh release */
    E.port = pvg_server_port(srv);
    assert_int_equal(pvg_ledger_cap_clear(s, "test", PVG_LEDGER_POPULAR_LIST, 1, NULL), PVG_OK);
    int fresh = 0;
    for (int i = 0; i < 200 && !fresh; i++) {
        j = expect("GET", "/v1/items/popular?k=5", E.tok_u0, NULL, 200);
        fresh = !json_is_true(json_object_get(json_object_get(j, "release"), "stale"));
        json_decref(j);
        if (!fresh) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(fresh);
    assert_true(spent(s, PVG_LEDGER_POPULAR_LIST) > before);
    E.port = port;
    pvg_server_free(srv);
    pvg_store_free(s);
}

/* `query top-items` over the public catalog: a stub item that many
 * shoppers bought (events only, no catalog row) is never released. */
static void test_query_top_items_catalog_only(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    char user[16];
    for (int u = 0; u < 50; u++) {
        snprintf(user, sizeof user, "s%d", u);
        put_event(s, user, "STUB-HOT");
    }
    pvg_query_spec sp;
    pvg_query_spec_init(&sp);
    sp.kind = PVG_QUERY_TOP_ITEMS;
    sp.epsilon = 5;
    sp.top = 100;
    sp.allow_insecure_rng = 1;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(11);
    pvg_access g;
    pvg_access_init(&g, s, "test");
    pvg_query_result *r = NULL;
    pvg_error err;
    assert_int_equal(pvg_access_dp_query(&g, &sp, rng, &r, &err), PVG_OK);
    assert_int_equal(r->n_rows, N_P + 6 + 1 + 1); /* the catalog (with STUB-LATER, made catalog) */
    for (size_t i = 0; i < r->n_rows; i++) {
        assert_true(strcmp(r->rows[i].group, "STUB-HOT") != 0);
        assert_true(strcmp(r->rows[i].group, "ZZZ-secret") != 0);
    }
    assert_true(r->rows[0].group[0] ==
                'P'); /* the popular family (each shopper bounded to G = 5) */
    pvg_query_result_free(r);
    pvg_rng_free(rng);
    pvg_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catalog_flag),
        cmocka_unit_test(test_popular_public_domain),
        cmocka_unit_test(test_similar_one_buyer),
        cmocka_unit_test(test_popular_optout_and_utility),
        cmocka_unit_test(test_popular_budget_exhausted),
        cmocka_unit_test(test_query_top_items_catalog_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
