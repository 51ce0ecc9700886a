/*
 * test_search_feed.c - search events feed the recommenders (docs/search.md,
 * "Search events in training"): a dataset read from the store gives a
 * search event's top PVG_SEARCH_FEED_TOP results over the catalog (or its
 * clicked item) the search weight; the shopper's recommendations change
 * with their searches; after the shopper is erased the dataset read from
 * the store is exactly the one without any search signal (the effect is
 * gone); --search-weight 0 turns the feed off.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/model.h>
#include <privguide/search.h>
#include <privguide/store.h>

#include "model/model_internal.h"
#include "t_sample_store.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef t_sample_store fx;

static int setup(void **state)
{
    fx *x = t_sample_store_new("pvg_test_feed");
    *state = x;
    return x ? 0 : -1;
}

static int teardown(void **state)
{
    return t_sample_store_free(*state);
}

static void put(pvg_store *s, const char *user, pvg_event_type t, const char *item,
                const char *query, int64_t ts)
{
    pvg_event ev = {0};
    ev.type = t;
    ev.ts = ts;
    ev.item = item;
    if (query) {
        ev.fields = PVG_FIELD_QUERY;
        ev.query = query;
    }
    int outcome = 0;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_store_event_put(s, user, &ev, NULL, &outcome, &err) != PVG_OK)
        fail_msg("event_put: %s", err.text);
}

static pvg_dataset *load(pvg_store *s, double search_weight)
{
    pvg_event_weights w;
    pvg_event_weights_default(&w);
    if (search_weight >= 0) w.w[PVG_EVENT_SEARCH] = search_weight;
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_dataset_load_store(s, &w, &ds, NULL, &err) != PVG_OK) fail_msg("load: %s", err.text);
    return ds;
}

/* The aggregated weight of (user, item) in ds (0 when absent). */
static double cell(const pvg_dataset *ds, const unsigned char key[16], const char *item)
{
    double sum = 0;
    for (size_t e = 0; e < ds->n_ev; e++)
        if (memcmp(ds->user_keys + 16 * (size_t)ds->ev_user[e], key, 16) == 0 &&
            strcmp(ds->item_ids[ds->ev_item[e]], item) == 0)
            sum += ds->ev_w[e];
    return sum;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dataset as a sorted list of "user item weight" lines (item ids,
 * not indices: the same content compares equal whatever the order). */
static char *dump(const pvg_dataset *ds)
{
    pvg_csr R;
    assert_int_equal(pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item,
                                   ds->ev_w, NULL, &R),
                     PVG_OK);
    char **lines = calloc(R.nnz ? R.nnz : 1, sizeof *lines);
    size_t n = 0, total = 1;
    for (size_t u = 0; u < R.n_rows; u++) {
        char hex[33];
        sodium_bin2hex(hex, sizeof hex, ds->user_keys + 16 * u, 16);
        for (uint64_t j = R.indptr[u]; j < R.indptr[u + 1]; j++) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s %s %.4f\n", hex, ds->item_ids[R.indices[j]], R.data[j]);
            lines[n] = strdup(buf);
            total += strlen(buf);
            n++;
        }
    }
    qsort(lines, n, sizeof *lines, cmp_str);
    char *out = malloc(total);
    out[0] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(lines[i]);
        memcpy(out + o, lines[i], l + 1);
        o += l;
        free(lines[i]);
    }
    free(lines);
    pvg_csr_free(&R);
    return out;
}

/* The top 10 of an item-kNN model (deterministic) for key, as one string. */
static char *recs(const pvg_dataset *ds, const unsigned char key[16])
{
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_ITEMKNN, &p);
    pvg_model *m = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK) fail_msg("train: %s", err.text);
    pvg_scored_item out[10];
    size_t n = 0;
    if (pvg_model_recommend(m, key, 10, 0, out, &n, &err) != PVG_OK)
        fail_msg("recommend: %s", err.text);
    char *s = calloc(1, 1024);
    for (size_t i = 0; i < n; i++) {
        strcat(s, out[i].item);
        strcat(s, " ");
    }
    pvg_model_free(m);
    return s;
}

static void test_searches_feed_and_erasure_removes(void **state)
{
    fx *x = *state;
    /* the baseline: the store before anyone searched, and without search signal */
    pvg_dataset *before = load(x->s, -1);
    char *before_dump = dump(before);
    pvg_dataset_free(before);
    pvg_dataset *off0 = load(x->s, 0);
    char *off0_dump = dump(off0);
    pvg_dataset_free(off0);
    assert_string_equal(before_dump, off0_dump); /* nobody searched yet */

    /* a shopper buys two items and searches */
    put(x->s, "feed-shopper", PVG_EVENT_PURCHASE, "22960", NULL, 1290000000);
    put(x->s, "feed-shopper", PVG_EVENT_PURCHASE, "21137", NULL, 1290000001);
    put(x->s, "feed-shopper", PVG_EVENT_SEARCH, NULL, "metal lantern", 1290000002);
    put(x->s, "feed-shopper", PVG_EVENT_SEARCH, NULL, "metal lantern", 1290000003);
    put(x->s, "feed-shopper", PVG_EVENT_SEARCH, "85123A", "heart holder", 1290000004);
    put(x->s, "feed-shopper", PVG_EVENT_SEARCH, NULL, "the of", 1290000005); /* no words */
    unsigned char key[16];
    pvg_store_pseudonym(x->s, "feed-shopper", key);

    /* what the query leads to: the anonymous search's top results */
    pvg_search_options so = {0};
    so.synonyms_text = "";
    pvg_search_index *ix = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    assert_int_equal(pvg_search_index_build(x->s, &so, &ix, &err), PVG_OK);
    pvg_search_query q;
    pvg_search_query_init(&q);
    q.text = "metal lantern";
    q.k = PVG_SEARCH_FEED_TOP;
    q.flags = PVG_SEARCH_NO_PREFIX;
    pvg_search_result *r = NULL;
    assert_int_equal(pvg_search_run(ix, &q, &r, &err), PVG_OK);
    assert_int_equal(pvg_search_result_count(r), PVG_SEARCH_FEED_TOP);
    char top[PVG_SEARCH_FEED_TOP][32];
    for (size_t i = 0; i < PVG_SEARCH_FEED_TOP; i++)
        snprintf(top[i], sizeof top[i], "%s", pvg_search_result_hit(r, i)->ext_id);
    pvg_search_result_free(r);
    pvg_search_index_free(ix);

    pvg_dataset *on = load(x->s, -1);
    pvg_dataset *off = load(x->s, 0);
    /* each top result: two searches x the default weight; the clicked
     * item: one search; the purchases as before */
    for (size_t i = 0; i < PVG_SEARCH_FEED_TOP; i++) {
        assert_true(fabs(cell(on, key, top[i]) - 2 * PVG_SEARCH_WEIGHT_DEFAULT) < 1e-6);
        assert_true(cell(off, key, top[i]) == 0);
    }
    assert_true(fabs(cell(on, key, "85123A") - PVG_SEARCH_WEIGHT_DEFAULT) < 1e-6);
    assert_true(cell(off, key, "85123A") == 0);
    assert_true(fabs(cell(on, key, "22960") - 4) < 1e-6);
    assert_int_equal(on->search_events, 3); /* the stop-word query gives nothing */
    if (on->n_ev - off->n_ev != 2 * PVG_SEARCH_FEED_TOP + 1) {
        for (size_t e = 0; e < on->n_ev; e++)
            if (memcmp(on->user_keys + 16 * (size_t)on->ev_user[e], key, 16) == 0)
                fprintf(stderr, "%s %g\n", on->item_ids[on->ev_item[e]], on->ev_w[e]);
        fail_msg("%zu events more with searches", on->n_ev - off->n_ev);
    }

    /* the searches change the shopper's recommendations */
    char *with = recs(on, key), *without = recs(off, key);
    if (strcmp(with, without) == 0) fail_msg("searches changed nothing: %s", with);
    free(with);
    free(without);
    pvg_dataset_free(on);
    pvg_dataset_free(off);

    /* a heavier weight is honoured */
    pvg_dataset *heavy = load(x->s, 2.0);
    assert_true(fabs(cell(heavy, key, top[0]) - 4.0) < 1e-6);
    pvg_dataset_free(heavy);

    /* erased: the store's dataset is exactly the one before the shopper
     * existed - no trace of their searches in training */
    assert_int_equal(pvg_store_user_delete(x->s, "feed-shopper", &err), PVG_OK);
    pvg_dataset *after = load(x->s, -1);
    char *after_dump = dump(after);
    assert_string_equal(after_dump, before_dump);
    assert_int_equal(after->search_events, 0);
    pvg_dataset_free(after);
    free(after_dump);
    free(before_dump);
    free(off0_dump);
}

/* A dataset read from a file has no catalog index: a search without an
 * item gives nothing, one with a clicked item weighs the search weight. */
static void test_file_dataset(void **state)
{
    (void)state;
    pvg_dataset *ds = NULL;
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, NULL, &ds, NULL), PVG_OK);
    pvg_event e = {0};
    e.type = PVG_EVENT_SEARCH;
    e.fields = PVG_FIELD_QUERY;
    e.query = "lantern";
    assert_int_equal(pvg_dataset_add_ext(ds, "u", &e, NULL), PVG_OK);
    assert_int_equal(pvg_dataset_n_events(ds), 0);
    e.item = "A";
    assert_int_equal(pvg_dataset_add_ext(ds, "u", &e, NULL), PVG_OK);
    assert_int_equal(pvg_dataset_n_events(ds), 1);
    assert_true(fabsf(ds->ev_w[0] - (float)PVG_SEARCH_WEIGHT_DEFAULT) < 1e-6f);
    pvg_dataset_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_searches_feed_and_erasure_removes, setup, teardown),
        cmocka_unit_test(test_file_dataset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
