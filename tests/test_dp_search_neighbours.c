/*
 * test_dp_search_neighbours.c - the neighbouring-dataset check of the DP
 * trainers' sensitivity when a shopper's items come from their searches
 * (docs/search.md, "Search events in training"): a search event without an
 * item becomes up to PVG_SEARCH_FEED_TOP cells over the store's catalog, so
 * one search can add several items. Two datasets read with the store's
 * catalog index differ by one shopper whose only events are searches that
 * reach far more than m items; the statistic each DP trainer adds its noise
 * to must move by exactly the sensitivity it calibrates to (sqrt(m) for the
 * popularity counts, sqrt(m(m+1)/2) for the item-kNN co-occurrences and
 * DP-EASE's weighted Gram). A search feed that added its cells after the
 * per-shopper bound, or weighed them above one, moves it further and fails.
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

#define M 3
#define N_BASE 40

/* Words of the sample catalog's titles: each query finds up to
 * PVG_SEARCH_FEED_TOP items. */
static const char *const QUERIES[] = {"heart",   "christmas", "bag",  "candle", "cake",
                                      "lantern", "mug",       "box",  "card",   "vintage",
                                      "glass",   "paper",     "star", "tea",    "wooden"};
#define N_QUERIES (sizeof QUERIES / sizeof *QUERIES)

typedef t_sample_store fx;

static int setup(void **state)
{
    fx *x = t_sample_store_new("pvg_test_dpsn");
    *state = x;
    return x ? 0 : -1;
}

static int teardown(void **state)
{
    return t_sample_store_free(*state);
}

static pvg_dataset *linked(pvg_store *s)
{
    pvg_event_weights w;
    pvg_event_weights_default(&w);
    assert_true(w.w[PVG_EVENT_SEARCH] > 0); /* the feed is on by default */
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_dataset_new_store_linked(s, &w, &ds, &err) != PVG_OK) fail_msg("%s", err.text);
    assert_non_null(ds->search_ix);
    return ds;
}

static void key_of(int u, unsigned char key[16])
{
    memset(key, 0, 16);
    key[0] = (unsigned char)(u + 1);
    key[15] = 0x5a;
}

static void add(pvg_dataset *ds, int u, pvg_event_type t, const char *item, const char *query)
{
    unsigned char key[16];
    key_of(u, key);
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = t;
    e.ts = 1000;
    e.item = item;
    if (query) {
        e.fields = PVG_FIELD_QUERY;
        e.query = query;
    }
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_dataset_add(ds, key, &e, &err) != PVG_OK) fail_msg("%s", err.text);
}

/* The heavy shopper: every query of QUERIES as a search without an item. */
static void add_heavy(pvg_dataset *ds)
{
    for (size_t q = 0; q < N_QUERIES; q++)
        add(ds, N_BASE, PVG_EVENT_SEARCH, NULL, QUERIES[q]);
}

/* N_BASE shoppers buying the items the heavy shopper's searches reach (so
 * both neighbours index the same items in the same order), 2 to 11 each;
 * heavy: the searching shopper added last. *h_out: the heavy shopper's
 * distinct items. */
static pvg_dataset *fixture(pvg_store *s, int heavy, size_t *h_out)
{
    pvg_dataset *probe = linked(s);
    add_heavy(probe);
    size_t h = probe->n_items;
    assert_true(h > 10 * M); /* the searches reach far more than m items */
    assert_int_equal(probe->search_events, (long long)N_QUERIES);
    pvg_dataset *ds = linked(s);
    uint64_t x = 7;
    for (int u = 0; u < N_BASE; u++)
        for (int a = 0; a < 2 + u % 10; a++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            add(ds, u, PVG_EVENT_PURCHASE, probe->item_ids[(x >> 33) % h], NULL);
        }
    for (size_t i = 0; i < h; i++) /* every reached item once, in the probe's order */
        add(ds, (int)(i % N_BASE), PVG_EVENT_PURCHASE, probe->item_ids[i], NULL);
    size_t before = ds->n_items;
    if (heavy) {
        add_heavy(ds);
        assert_int_equal(ds->search_events, (long long)N_QUERIES);
        assert_int_equal(ds->n_items, before); /* no item new to the neighbour */
    }
    pvg_dataset_free(probe);
    *h_out = h;
    return ds;
}

/* The statistic before noise (the same generator seed for both
 * neighbours: the heavy shopper's row comes last, so every other shopper's
 * bounded subset is drawn alike). */
static double *statistic(const pvg_dataset *ds, pvg_model_type type, size_t *len, double *sens)
{
    pvg_csr R;
    assert_int_equal(pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item,
                                   ds->ev_w, NULL, &R),
                     PVG_OK);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(11);
    pvg_train_params p;
    pvg_train_params_default(type, &p);
    p.dp_epsilon = 2;
    p.dp_delta = 1e-6;
    p.dp_max_items = M;
    p.dp_rng = rng;
    p.dp_allow_insecure_rng = 1;
    pvg_dp_train t;
    memset(&t, 0, sizeof t);
    t.ds = ds;
    t.vds = *ds;
    t.R = &R;
    t.p = &p;
    t.rng = rng;
    t.epsilon = p.dp_epsilon;
    t.delta = p.dp_delta;
    t.max_items = M;
    t.threads = 1;
    double *v;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_dp_statistic(&t, type, &v, len, sens, &err) != PVG_OK) fail_msg("%s", err.text);
    pvg_rng_free(rng);
    pvg_csr_free(&R);
    return v;
}

static void neighbours(pvg_store *s, pvg_model_type type, double want)
{
    size_t h, h2;
    pvg_dataset *a = fixture(s, 0, &h), *b = fixture(s, 1, &h2);
    assert_int_equal(h, h2);
    assert_int_equal(a->n_items, b->n_items);
    assert_int_equal(b->n_users, a->n_users + 1);
    size_t la, lb;
    double sa, sb;
    double *va = statistic(a, type, &la, &sa), *vb = statistic(b, type, &lb, &sb);
    assert_int_equal(la, lb);
    assert_true(fabs(sa - want) < 1e-12 && fabs(sb - want) < 1e-12);
    /* DP-EASE weighs the heavy shopper's whole history of h items so that
     * its upper triangle moves by sqrt(m(m+1)/2) */
    double w = type == PVG_MODEL_EASE ? sqrt(M * (M + 1.0) / ((double)h * (h + 1.0))) : 1.0;
    double d2 = 0;
    size_t moved = 0;
    for (size_t i = 0; i < la; i++) {
        double d = vb[i] - va[i];
        if (!(d == 0 || fabs(d - w) < 1e-12))
            fail_msg("entry %zu moved by %g (at most %g for one shopper)", i, d, w);
        d2 += d * d;
        moved += d != 0;
    }
    if (type == PVG_MODEL_EASE)
        assert_int_equal(moved, h * (h + 1) / 2);
    else
        assert_true(moved == M || moved == M * (M + 1) / 2);
    if (fabs(sqrt(d2) - sa) > 1e-9)
        fail_msg("the searching shopper moved the statistic by %g, the trainer calibrates to %g",
                 sqrt(d2), sa);
    free(va);
    free(vb);
    pvg_dataset_free(a);
    pvg_dataset_free(b);
}

static void test_popularity(void **state)
{
    neighbours(((fx *)*state)->s, PVG_MODEL_POPULARITY, sqrt(M));
}

static void test_itemknn(void **state)
{
    neighbours(((fx *)*state)->s, PVG_MODEL_ITEMKNN, sqrt(M * (M + 1) / 2.0));
}

static void test_ease(void **state)
{
    neighbours(((fx *)*state)->s, PVG_MODEL_EASE, sqrt(M * (M + 1) / 2.0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_popularity),
        cmocka_unit_test(test_itemknn),
        cmocka_unit_test(test_ease),
    };
    return cmocka_run_group_tests(tests, setup, teardown); /* one store, read only */
}
