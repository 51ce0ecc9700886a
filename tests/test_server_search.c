/*
 * test_server_search.c - GET /v1/search on a running server: public (no
 * credential), ranked items with the parsed query (terms, corrections,
 * prefix completions, stop words), filters, sorting, facets, parameter
 * errors naming the parameter, hostile query text (invalid UTF-8, over
 * the size limit), and the index following the catalog: an item added to
 * the store is found without a restart.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_http.h"

#include <privguide/auth.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct env {
    char dir[256], dd[300];
    pvg_server *srv;
    int port;
    char *admin, *tok_a, *tok_b, *tok_fan; /* credentials (pvg_auth_credential_free) */
} env;

static env E;

static void item_put(pvg_store *s, const char *id, const char *title, const char *cat, double price)
{
    pvg_item it;
    memset(&it, 0, sizeof it);
    it.ext_id = id;
    it.title = title;
    it.category = cat;
    it.price = price;
    assert_int_equal(pvg_store_item_put(s, &it, NULL, NULL), PVG_OK);
}

/* Shoppers whose purchases make a model: "fan" and the group buy the white
 * heart holder and the bird ornament; the others the popcorn holder and the
 * tea set. The model goes where the server loads it (data dir). */
static int make_model(pvg_store *s)
{
    pvg_error err;
    static const char *a[] = {"85123A", "84879"}, *b[] = {"22197", "21216"};
    for (int u = 0; u < 12; u++) {
        char user[16];
        if (u == 0)
            snprintf(user, sizeof user, "fan");
        else
            snprintf(user, sizeof user, "s%d", u);
        const char **its = u % 2 == 0 ? a : b;
        for (int j = 0; j < 2; j++) {
            pvg_event e;
            memset(&e, 0, sizeof e);
            e.type = PVG_EVENT_PURCHASE;
            e.item = its[j];
            e.ts = 1300000000;
            int outcome = 0;
            if (pvg_store_event_put(s, user, &e, NULL, &outcome, &err) != PVG_OK) return -1;
        }
    }
    pvg_dataset *ds = NULL;
    if (pvg_dataset_load_store(s, NULL, &ds, NULL, &err) != PVG_OK) return -1;
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 4;
    p.epochs = 5;
    p.seed = 7;
    pvg_model *m = NULL;
    pvg_status st = pvg_model_train(ds, &p, &m, NULL, &err);
    pvg_dataset_free(ds);
    if (st != PVG_OK) return -1;
    char mp[340];
    snprintf(mp, sizeof mp, "%s/model.pvgm", E.dd);
    st = pvg_model_save(m, mp, &err);
    pvg_model_free(m);
    return st == PVG_OK ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    snprintf(E.dir, sizeof E.dir, "/tmp/pvg_test_srvsearch_XXXXXX");
    if (!mkdtemp(E.dir)) return -1;
    snprintf(E.dd, sizeof E.dd, "%s/data", E.dir);
    pvg_error err;
    if (pvg_store_init(E.dd, NULL, &err) != PVG_OK) return -1;
    pvg_store *s = NULL;
    if (pvg_store_open(E.dd, &s, &err) != PVG_OK) return -1;
    item_put(s, "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "Home", 2.55);
    item_put(s, "21733", "RED HANGING HEART T-LIGHT HOLDER", "Home", 2.95);
    item_put(s, "22086", "PAPER CHAIN KIT 50'S CHRISTMAS", "Christmas", 2.95);
    item_put(s, "22910", "PAPER CHAIN KIT VINTAGE CHRISTMAS", "Christmas", 2.95);
    item_put(s, "21216", "SET 3 RETROSPOT TEA/COFFEE/SUGAR", "Kitchen", 4.95);
    item_put(s, "22197", "SMALL POPCORN HOLDER", "Kitchen", 0.85);
    item_put(s, "84879", "ASSORTED COLOUR BIRD ORNAMENT", "Home", 1.69);
    pvg_principal p;
    if (pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "test", 0, &E.admin, &p, &err) != PVG_OK ||
        pvg_auth_token_issue(s, "shopper-a", 3600, 0, &E.tok_a, &p, &err) != PVG_OK ||
        pvg_auth_token_issue(s, "shopper-b", 3600, 0, &E.tok_b, &p, &err) != PVG_OK ||
        pvg_auth_token_issue(s, "fan", 3600, 0, &E.tok_fan, &p, &err) != PVG_OK ||
        make_model(s) != 0)
        return -1;
    pvg_store_free(s);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = E.dd;
    o.threads = 2;
    o.reload_ms = 50;
    o.auth_failure_rate = -1;
    o.synonyms_path = "";
    if (pvg_server_start(&o, &E.srv, &err) != PVG_OK) {
        fprintf(stderr, "start: %s\n", err.text);
        return -1;
    }
    E.port = pvg_server_port(E.srv);
    t_http_connect_to(&E.port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pvg_server_free(E.srv);
    pvg_auth_credential_free(E.admin);
    pvg_auth_credential_free(E.tok_a);
    pvg_auth_credential_free(E.tok_b);
    pvg_auth_credential_free(E.tok_fan);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", E.dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *id_at(json_t *j, size_t i)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(j, "items"), i), "id"));
}

static void test_search_public(void **state)
{
    (void)state;
    /* no credential needed; a misspelt word is corrected and reported */
    json_t *j = expect("GET", "/v1/search?q=red+hart+holder", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 1);
    assert_string_equal(id_at(j, 0), "21733");
    json_t *it = json_array_get(json_object_get(j, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(it, "title")),
                        "RED HANGING HEART T-LIGHT HOLDER");
    assert_string_equal(json_string_value(json_object_get(it, "category")), "Home");
    assert_true(json_real_value(json_object_get(it, "score")) > 0);
    json_t *q = json_object_get(j, "query");
    json_t *corr = json_array_get(json_object_get(q, "corrections"), 0);
    assert_string_equal(json_string_value(json_object_get(corr, "word")), "hart");
    assert_string_equal(json_string_value(json_array_get(json_object_get(corr, "to"), 0)), "heart");
    assert_int_equal(json_array_size(json_object_get(q, "terms")), 3);
    json_decref(j);
    /* search as you type: the last word completes */
    j = expect("GET", "/v1/search?q=paper+chain+chri", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 2);
    json_t *pe = json_object_get(json_object_get(j, "query"), "prefix_expansion");
    assert_string_equal(json_string_value(json_object_get(pe, "word")), "chri");
    assert_string_equal(json_string_value(json_array_get(json_object_get(pe, "completions"), 0)),
                        "christmas");
    json_decref(j);
    /* filters, sort by price, facets */
    j = expect("GET", "/v1/search?q=holder&sort=price&price_max=2.9", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 2);
    assert_string_equal(id_at(j, 0), "22197");
    assert_string_equal(id_at(j, 1), "85123A");
    json_t *cats = json_object_get(json_object_get(j, "facets"), "categories");
    assert_int_equal(json_array_size(cats), 2);
    json_t *price = json_object_get(json_object_get(j, "facets"), "price");
    assert_true(json_array_size(price) > 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(price, 0), "count")), 1);
    json_decref(j);
    j = expect("GET", "/v1/search?q=holder&category=kitchen", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 1);
    json_decref(j);
    /* pages */
    j = expect("GET", "/v1/search?k=2&offset=6", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 7);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    json_decref(j);
}

static void test_search_bad_input(void **state)
{
    (void)state;
    static const char *bad[][2] = {
        {"/v1/search?q=x&k=0", "k"},
        {"/v1/search?q=x&k=abc", "k"},
        {"/v1/search?q=x&offset=-1", "offset"},
        {"/v1/search?q=x&price_min=cheap", "price_min"},
        {"/v1/search?q=x&price_min=5&price_max=1", "price_min"},
        {"/v1/search?q=x&price_max=nan", "price_max"},
        {"/v1/search?q=x&sort=popular", "sort"},
        {"/v1/search?q=x&prefix=2", "prefix"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = expect("GET", bad[i][0], NULL, NULL, 400);
        assert_non_null(strstr(json_string_value(json_object_get(j, "message")), bad[i][1]));
        json_decref(j);
    }
    /* invalid UTF-8 in q: an answer, valid JSON */
    json_t *j = expect("GET", "/v1/search?q=%ff%fe%80heart", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 2);
    json_decref(j);
    /* too long */
    char path[1400];
    int n = snprintf(path, sizeof path, "/v1/search?q=");
    memset(path + n, 'a', 1100);
    path[n + 1100] = 0;
    j = expect("GET", path, NULL, NULL, 400);
    json_decref(j);
    /* other methods */
    resp r;
    assert_int_equal(http("POST", "/v1/search?q=x", NULL, "{}", &r), 0);
    assert_int_equal(r.status, 405);
    resp_free(&r);
}

/* An item put into the store is found without a restart. */
static void test_search_follows_catalog(void **state)
{
    (void)state;
    json_t *j = expect("GET", "/v1/search?q=lantern", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 0);
    json_decref(j);
    pvg_store *s = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    item_put(s, "71053", "WHITE METAL LANTERN", "Home", 3.39);
    pvg_store_free(s);
    long long total = 0;
    for (int i = 0; i < 400 && total == 0; i++) {
        j = expect("GET", "/v1/search?q=lantern", NULL, NULL, 200);
        total = json_integer_value(json_object_get(j, "total"));
        json_decref(j);
        if (!total) {
            struct timespec ts = {0, 25 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(total, 1);
}

/* The search events in the shopper's export, in order: their query texts
 * joined by '|' into buf ("" when none); -1 when the export is refused. */
static int export_searches(const char *user, const char *cred, char *buf, size_t cap)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/users/%s/data", user);
    resp r;
    assert_int_equal(http("GET", path, cred, NULL, &r), 0);
    buf[0] = 0;
    if (r.status != 200) {
        int st = r.status;
        resp_free(&r);
        return -st;
    }
    json_t *j = json_loads(r.body, 0, NULL);
    resp_free(&r);
    assert_non_null(j);
    json_t *evs = json_object_get(j, "events");
    assert_true(json_is_array(evs));
    int n = 0;
    for (size_t i = 0; i < json_array_size(evs); i++) {
        json_t *ev = json_array_get(evs, i);
        if (strcmp(json_string_value(json_object_get(ev, "type")), "search") != 0) continue;
        const char *q = json_string_value(json_object_get(ev, "query"));
        assert_non_null(q);
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%s", n ? "|" : "", q);
        n++;
    }
    json_decref(j);
    return n;
}

/* A shopper's own search (token + user=) is kept as a `search` event: in
 * their export, with the query cut to PVG_SEARCH_EVENT_QUERY_MAX bytes;
 * anonymous searches and other pages of a search are not; a shopper
 * without consent gets the anonymous answer and nothing is kept; erasure
 * removes the events. */
static void test_search_events(void **state)
{
    (void)state;
    char buf[4096];
    json_t *j = expect("GET", "/v1/search?q=heart+holder", NULL, NULL, 200);
    json_decref(j);
    /* who may search as whom */
    json_decref(expect("GET", "/v1/search?q=heart&user=shopper-a", NULL, NULL, 401));
    json_decref(expect("GET", "/v1/search?q=heart&user=shopper-a", E.tok_b, NULL, 403));
    json_decref(expect("GET", "/v1/search?q=heart&user=shopper-a", "nonsense", NULL, 401));
    /* an operator key searches without anything being kept */
    json_decref(expect("GET", "/v1/search?q=admin+words&user=shopper-a", E.admin, NULL, 200));

    j = expect("GET", "/v1/search?q=red+heart+holder&user=shopper-a", E.tok_a, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")) > 0, 1);
    json_decref(j);
    /* the second page of the same search is not a second search */
    json_decref(
        expect("GET", "/v1/search?q=red+heart+holder&user=shopper-a&offset=1", E.tok_a, NULL, 200));
    /* a long query is kept cut to 256 bytes */
    char path[1400], longq[600];
    memset(longq, 'z', 300);
    longq[300] = 0;
    snprintf(path, sizeof path, "/v1/search?q=%s&user=shopper-a", longq);
    json_decref(expect("GET", path, E.tok_a, NULL, 200));
    assert_int_equal(export_searches("shopper-a", E.tok_a, buf, sizeof buf), 2);
    longq[256] = 0;
    char want[700];
    snprintf(want, sizeof want, "red heart holder|%s", longq);
    assert_string_equal(buf, want);

    /* shopper-b withdraws personalization consent: nothing kept, and the
     * answer's items are the anonymous caller's */
    json_decref(
        expect("PUT", "/v1/users/shopper-b/consent", E.tok_b, "{\"personalization\": false}", 200));
    resp ra, rb;
    assert_int_equal(http("GET", "/v1/search?q=holder+christmas", NULL, NULL, &ra), 0);
    assert_int_equal(
        http("GET", "/v1/search?q=holder+christmas&user=shopper-b", E.tok_b, NULL, &rb), 0);
    assert_int_equal(ra.status, 200);
    assert_int_equal(rb.status, 200);
    json_t *ja = json_loads(ra.body, 0, NULL), *jb = json_loads(rb.body, 0, NULL);
    char *ia = json_dumps(json_object_get(ja, "items"), JSON_COMPACT);
    char *ib = json_dumps(json_object_get(jb, "items"), JSON_COMPACT);
    assert_string_equal(ia, ib);
    assert_true(json_equal(json_object_get(ja, "facets"), json_object_get(jb, "facets")));
    assert_false(json_is_true(json_object_get(jb, "personalized")));
    assert_string_equal(json_string_value(json_object_get(jb, "reason")), "no_consent");
    free(ia);
    free(ib);
    json_decref(ja);
    json_decref(jb);
    resp_free(&ra);
    resp_free(&rb);
    assert_int_equal(export_searches("shopper-b", E.tok_b, buf, sizeof buf), 0);

    /* the counter in /metrics */
    resp m;
    assert_int_equal(http("GET", "/metrics", E.admin, NULL, &m), 0);
    assert_non_null(strstr(m.body, "privguide_search_events_total 2\n"));
    assert_non_null(strstr(m.body, "privguide_search_event_failures_total 0\n"));
    resp_free(&m);

    /* erasure takes the searches with the shopper */
    json_decref(expect("DELETE", "/v1/users/shopper-a", E.admin, NULL, 200));
    assert_int_equal(export_searches("shopper-a", E.admin, buf, sizeof buf), -404);
}

/* A consenting shopper with a model gets the candidates re-ranked by the
 * documented blend, audited (search_rerank, purpose recommend) first. */
static void test_search_personal(void **state)
{
    (void)state;
    json_t *ja = expect("GET", "/v1/search?q=holder", NULL, NULL, 200);
    assert_false(json_is_true(json_object_get(ja, "personalized")));
    assert_string_equal(json_string_value(json_object_get(ja, "reason")), "anonymous");
    json_t *jf = expect("GET", "/v1/search?q=holder&user=fan", E.tok_fan, NULL, 200);
    if (!json_is_true(json_object_get(jf, "personalized")))
        fprintf(stderr, "not personal: %s\n", json_string_value(json_object_get(jf, "reason")));
    assert_true(json_is_true(json_object_get(jf, "personalized")));
    json_t *ia = json_object_get(ja, "items"), *ifan = json_object_get(jf, "items");
    assert_int_equal(json_array_size(ia), json_array_size(ifan));
    /* the popcorn holder (shortest title) leads by BM25; fan's model puts
     * the white heart holder, which fan bought, first */
    assert_string_equal(id_at(ja, 0), "22197");
    assert_string_equal(id_at(jf, 0), "85123A");
    /* the blend: BM25 / max BM25 + 0.5 x the normalised model score, best 1.5 */
    double top = json_real_value(json_object_get(json_array_get(ifan, 0), "score"));
    assert_true(top > 1.0 && top <= 1.5 + 1e-9);
    json_decref(ja);
    json_decref(jf);
    /* the audit entry, as shown to fan */
    json_t *au = expect("GET", "/v1/users/fan/audit", E.tok_fan, NULL, 200);
    json_t *es = json_object_get(au, "entries");
    int found = 0;
    for (size_t i = 0; i < json_array_size(es); i++) {
        json_t *e = json_array_get(es, i);
        const char *act = json_string_value(json_object_get(e, "action"));
        if (act && strcmp(act, "search_rerank") == 0) {
            assert_string_equal(json_string_value(json_object_get(e, "purpose")), "recommend");
            assert_string_equal(json_string_value(json_object_get(e, "outcome")), "allowed");
            found++;
        }
    }
    if (!found) fprintf(stderr, "audit: %s\n", json_dumps(au, 0));
    assert_int_equal(found, 1);
    json_decref(au);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_public),          cmocka_unit_test(test_search_bad_input),
        cmocka_unit_test(test_search_follows_catalog), cmocka_unit_test(test_search_events),
        cmocka_unit_test(test_search_personal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
