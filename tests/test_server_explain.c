/*
 * test_server_explain.c - "why this?" on a running server: the
 * recommendations route with ?explain=1 gives each item a `why` array;
 * the shopper's own token with personalization consent gets the items of
 * their history that make each item score (the access gate's
 * pvg_access_explain, audited "explain" first), an operator key and a
 * shopper without consent never do (the public DP popular rank only); no
 * explain, no audit entry and the cached body; a bad value is a 400.
 * Search hits carry the query words they matched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include "t_http.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct env {
    char dir[256], dd[300];
    pvg_server *srv;
    int port;
    char *admin, *tok_fan, *tok_other; /* credentials (pvg_auth_credential_free) */
} env;

static env E;

static void item_put(pvg_store *s, const char *id, const char *title, double price)
{
    pvg_item it;
    memset(&it, 0, sizeof it);
    it.ext_id = id;
    it.title = title;
    it.price = price;
    assert_int_equal(pvg_store_item_put(s, &it, NULL, NULL), PVG_OK);
}

static int buy(pvg_store *s, const char *user, const char *item)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.item = item;
    e.ts = 1300000000;
    int outcome = 0;
    return pvg_store_event_put(s, user, &e, NULL, &outcome, NULL) == PVG_OK ? 0 : -1;
}

/* Two groups of shoppers: tea (T1 T2 T3 T4) and candles (C1 C2 C3 C4).
 * "fan" bought T1, T2 and C1; the EASE model then recommends T3, T4
 * because of T1 and T2, and C2.. because of C1. */
static int make_model(pvg_store *s)
{
    pvg_error err;
    static const char *tea[] = {"T1", "T2", "T3", "T4"}, *cdl[] = {"C1", "C2", "C3", "C4"};
    for (int u = 0; u < 16; u++) {
        char user[16];
        snprintf(user, sizeof user, "s%d", u);
        const char **its = u % 2 ? tea : cdl;
        for (int j = 0; j < 4; j++)
            if ((u + j) % 4 != 0 && buy(s, user, its[j])) return -1;
    }
    if (buy(s, "fan", "T1") || buy(s, "fan", "T2") || buy(s, "fan", "C1") || buy(s, "other", "C2"))
        return -1;
    pvg_consent c = {1, 1};
    if (pvg_store_consent_set(s, "fan", &c, &err) != PVG_OK ||
        pvg_store_consent_set(s, "other", &c, &err) != PVG_OK)
        return -1;
    for (int u = 0; u < 16; u++) {
        char user[16];
        snprintf(user, sizeof user, "s%d", u);
        if (pvg_store_consent_set(s, user, &c, &err) != PVG_OK) return -1;
    }
    pvg_dataset *ds = NULL;
    if (pvg_dataset_load_store(s, NULL, &ds, NULL, &err) != PVG_OK) return -1;
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    p.ease_lambda = 2;
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
    snprintf(E.dir, sizeof E.dir, "/tmp/pvg_test_srvexplain_XXXXXX");
    if (!mkdtemp(E.dir)) return -1;
    snprintf(E.dd, sizeof E.dd, "%s/data", E.dir);
    pvg_error err;
    if (pvg_store_init(E.dd, NULL, &err) != PVG_OK) return -1;
    pvg_store *s = NULL;
    if (pvg_store_open(E.dd, &s, &err) != PVG_OK) return -1;
    item_put(s, "T1", "GREEN TEA TIN", 3.5);
    item_put(s, "T2", "TEA INFUSER BALL", 2.0);
    item_put(s, "T3", "CERAMIC TEAPOT", 8.5);
    item_put(s, "T4", "TEA TOWEL RED SPOT", 2.5);
    item_put(s, "C1", "WHITE PILLAR CANDLE", 1.5);
    item_put(s, "C2", "GLASS CANDLE HOLDER", 3.0);
    item_put(s, "C3", "SCENTED CANDLE SET", 6.0);
    item_put(s, "C4", "RED CANDLE HOLDER", 2.5);
    pvg_principal p;
    if (pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "test", 0, &E.admin, &p, &err) != PVG_OK ||
        pvg_auth_token_issue(s, "fan", 3600, 0, &E.tok_fan, &p, &err) != PVG_OK ||
        pvg_auth_token_issue(s, "other", 3600, 0, &E.tok_other, &p, &err) != PVG_OK ||
        make_model(s) != 0 || pvg_ledger_set_budget(s, "default", 4.0, 1e-6, &err) != PVG_OK)
        return -1;
    pvg_store_free(s);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = E.dd;
    o.threads = 2;
    o.reload_ms = 50;
    o.auth_failure_rate = -1;
    o.synonyms_path = "";
    o.popular_k = 8;
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
    pvg_auth_credential_free(E.tok_fan);
    pvg_auth_credential_free(E.tok_other);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", E.dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* How many audit entries about fan have this action and outcome (as fan
 * sees them). */
static int audit_count(const char *action, const char *outcome)
{
    json_t *au = expect("GET", "/v1/users/fan/audit?limit=1000", E.tok_fan, NULL, 200);
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(au, "entries"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "action")), action) == 0 &&
            strcmp(json_string_value(json_object_get(e, "outcome")), outcome) == 0)
            n++;
    }
    json_decref(au);
    return n;
}

static int is_fans(const char *id)
{
    return strcmp(id, "T1") == 0 || strcmp(id, "T2") == 0 || strcmp(id, "C1") == 0;
}

/* The number of history entries in the items' why arrays; fails on any
 * history item that is not fan's. */
static size_t history_entries(json_t *j)
{
    size_t n = 0, i, q;
    json_t *it, *w;
    json_array_foreach(json_object_get(j, "items"), i, it)
    {
        json_t *why = json_object_get(it, "why");
        assert_true(json_is_array(why));
        json_array_foreach(why, q, w)
        {
            const char *kind = json_string_value(json_object_get(w, "kind"));
            assert_non_null(kind);
            if (strcmp(kind, "history") == 0) {
                const char *h = json_string_value(json_object_get(w, "item"));
                assert_non_null(h);
                if (!is_fans(h)) fail_msg("why names %s, not in fan's history", h);
                assert_true(json_real_value(json_object_get(w, "contribution")) > 0);
                n++;
            } else {
                assert_string_equal(kind, "popular");
                assert_true(json_integer_value(json_object_get(w, "rank")) >= 1);
            }
        }
    }
    return n;
}

static void test_own_token_gets_history(void **state)
{
    (void)state;
    int before = audit_count("explain", "allowed");
    json_t *j = expect("GET", "/v1/users/fan/recommendations?k=4&explain=1", E.tok_fan, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "personalized")));
    json_t *ex = json_object_get(j, "explain");
    assert_true(json_is_true(json_object_get(ex, "history")));
    assert_string_equal(json_string_value(json_object_get(ex, "method")), "ease-weights");
    assert_true(history_entries(j) >= 1);
    /* T3 and T4 rank because of fan's tea (T1, T2), never because of C1 */
    size_t i;
    json_t *it;
    int seen_tea = 0;
    json_array_foreach(json_object_get(j, "items"), i, it)
    {
        const char *id = json_string_value(json_object_get(it, "item"));
        if (id[0] != 'T') continue;
        json_t *first = json_array_get(json_object_get(it, "why"), 0);
        assert_string_equal(json_string_value(json_object_get(first, "kind")), "history");
        const char *h = json_string_value(json_object_get(first, "item"));
        if (h[0] != 'T') fail_msg("%s: first reason %s, want fan's tea", id, h);
        assert_non_null(json_string_value(json_object_get(first, "title")));
        seen_tea++;
    }
    assert_true(seen_tea >= 1);
    json_decref(j);
    /* audited first, once per request */
    assert_int_equal(audit_count("explain", "allowed"), before + 1);
    /* without explain: no why, no explain entry */
    j = expect("GET", "/v1/users/fan/recommendations?k=4", E.tok_fan, NULL, 200);
    assert_null(json_object_get(json_array_get(json_object_get(j, "items"), 0), "why"));
    assert_null(json_object_get(j, "explain"));
    json_decref(j);
    /* the cached body of the plain answer is not served for explain=1 */
    j = expect("GET", "/v1/users/fan/recommendations?k=4&explain=1", E.tok_fan, NULL, 200);
    assert_true(history_entries(j) >= 1);
    json_decref(j);
    j = expect("GET", "/v1/users/fan/recommendations?k=4&explain=0", E.tok_fan, NULL, 200);
    assert_null(json_object_get(j, "explain"));
    json_decref(j);
    assert_int_equal(audit_count("explain", "allowed"), before + 2);
}

static void test_operator_and_others_get_no_history(void **state)
{
    (void)state;
    int denied = audit_count("explain", "denied:not_own_token");
    /* an operator key: the personal list, no history evidence */
    json_t *j = expect("GET", "/v1/users/fan/recommendations?k=4&explain=1", E.admin, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "personalized")));
    json_t *ex = json_object_get(j, "explain");
    assert_true(json_is_false(json_object_get(ex, "history")));
    assert_string_equal(json_string_value(json_object_get(ex, "reason")), "not_own_token");
    assert_int_equal(history_entries(j), 0);
    json_decref(j);
    assert_int_equal(audit_count("explain", "denied:not_own_token"), denied + 1);
    /* another shopper's token: refused */
    j = expect("GET", "/v1/users/fan/recommendations?explain=1", E.tok_other, NULL, 403);
    json_decref(j);
    /* no credential */
    j = expect("GET", "/v1/users/fan/recommendations?explain=1", NULL, NULL, 401);
    json_decref(j);
    /* a bad value */
    j = expect("GET", "/v1/users/fan/recommendations?explain=yes", E.tok_fan, NULL, 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "explain"));
    json_decref(j);
}

/* other withdraws personalization consent: the popular list, each item's
 * why its public rank, no history, no explain entry. */
static void test_no_consent(void **state)
{
    (void)state;
    json_decref(expect("PATCH", "/v1/users/other/consent", E.tok_other,
                       "{\"personalization\": false}", 200));
    json_t *j =
        expect("GET", "/v1/users/other/recommendations?k=4&explain=1", E.tok_other, NULL, 200);
    assert_true(json_is_false(json_object_get(j, "personalized")));
    json_t *ex = json_object_get(j, "explain");
    assert_true(json_is_false(json_object_get(ex, "history")));
    assert_string_equal(json_string_value(json_object_get(ex, "reason")), "not_personalized");
    assert_string_equal(json_string_value(json_object_get(ex, "popular_source")), "dp_release");
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(j, "items"), i, it)
    {
        json_t *w = json_array_get(json_object_get(it, "why"), 0);
        assert_string_equal(json_string_value(json_object_get(w, "kind")), "popular");
        assert_int_equal(json_integer_value(json_object_get(w, "rank")), (json_int_t)i + 1);
        assert_int_equal(json_array_size(json_object_get(it, "why")), 1);
    }
    assert_true(json_array_size(json_object_get(j, "items")) >= 1);
    json_decref(j);
}

/* Search hits carry the query words they matched (a corrected word counts
 * under the word typed). */
static void test_search_why(void **state)
{
    (void)state;
    json_t *j = expect("GET", "/v1/search?q=red+candel+holder&prefix=0", NULL, NULL, 200);
    json_t *it = json_array_get(json_object_get(j, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(it, "id")), "C4");
    json_t *mw = json_object_get(json_object_get(it, "why"), "matched_words");
    assert_int_equal(json_array_size(mw), 3);
    assert_string_equal(json_string_value(json_array_get(mw, 0)), "red");
    assert_string_equal(json_string_value(json_array_get(mw, 1)), "candel");
    assert_string_equal(json_string_value(json_array_get(mw, 2)), "holder");
    json_decref(j);
    /* no item has every word: each hit names the ones it has */
    j = expect("GET", "/v1/search?q=teapot+towel&prefix=0", NULL, NULL, 200);
    size_t i;
    json_array_foreach(json_object_get(j, "items"), i, it)
    {
        mw = json_object_get(json_object_get(it, "why"), "matched_words");
        assert_int_equal(json_array_size(mw), 1);
        const char *id = json_string_value(json_object_get(it, "id"));
        assert_string_equal(json_string_value(json_array_get(mw, 0)),
                            strcmp(id, "T3") == 0 ? "teapot" : "towel");
    }
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_token_gets_history),
        cmocka_unit_test(test_operator_and_others_get_no_history),
        cmocka_unit_test(test_no_consent),
        cmocka_unit_test(test_search_why),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
