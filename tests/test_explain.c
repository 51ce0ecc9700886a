/*
 * test_explain.c - "why this?" in the library (pvg_model_explain): on a
 * two-block fixture (shoppers of block a buy a-items, of block b b-items)
 * plus one shopper who bought three a-items and one b-item, the evidence
 * for a b-item is that shopper's b-item and for an a-item their a-items;
 * the terms sum to the served score (EASE, itemknn exactly; iALS to the
 * closed-form fold-in's score), come best first, only positive, at most
 * k; popularity has none; bad arguments are refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 99;
static double rnd(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rs >> 11) / 9007199254740992.0;
}

static void add(pvg_dataset *ds, const char *user, const char *item)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.item = item;
    e.ts = 1000;
    assert_int_equal(pvg_dataset_add_ext(ds, user, &e, NULL), PVG_OK);
}

static pvg_dataset *fixture(void)
{
    pvg_dataset *ds;
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, NULL, &ds, NULL), PVG_OK);
    rs = 99; /* the same fixture for every test */
    char user[32], item[32];
    for (int u = 0; u < 80; u++) {
        int blk = u % 2;
        snprintf(user, sizeof user, "u%d", u);
        int seen[12] = {0}, n = 0;
        while (n < 6) {
            int j = (int)(rnd() * 12);
            if (!seen[j]) seen[j] = 1, n++;
        }
        for (int j = 0; j < 12; j++)
            if (seen[j]) {
                snprintf(item, sizeof item, "%c%d", blk ? 'b' : 'a', j);
                add(ds, user, item);
            }
    }
    /* the shopper to explain: three a-items and one b-item */
    add(ds, "mixed", "a0");
    add(ds, "mixed", "a1");
    add(ds, "mixed", "a2");
    add(ds, "mixed", "b0");
    return ds;
}

static pvg_model *train(pvg_dataset *ds, pvg_model_type t)
{
    pvg_train_params p;
    pvg_train_params_default(t, &p);
    p.threads = 1;
    if (t == PVG_MODEL_IALS) {
        p.factors = 2; /* two blocks: rank 2 */
        p.epochs = 12;
        p.cg_steps = 0;
        p.confidence = 1.0;
    }
    if (t == PVG_MODEL_BPR) {
        p.factors = 4;
        p.epochs = 100;
        p.reg = 0.05;
    }
    if (t == PVG_MODEL_EASE) p.ease_lambda = 5;
    pvg_model *m = NULL;
    pvg_error err;
    if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK) fail_msg("train: %s", err.text);
    return m;
}

/* The evidence for `item` for the mixed shopper, k at most 4. */
static size_t explain_one(const pvg_model *m, const char *item, pvg_explain_term out[4],
                          pvg_explain_info *info)
{
    unsigned char key[16];
    assert_int_equal(pvg_model_user_key(m, NULL, "mixed", key, NULL), PVG_OK);
    int64_t ix = pvg_model_item_index(m, item);
    assert_true(ix >= 0);
    size_t n = 99;
    pvg_error err;
    if (pvg_model_explain(m, key, &ix, 1, 4, out, &n, info, &err) != PVG_OK)
        fail_msg("explain %s: %s", item, err.text);
    assert_true(n <= 4);
    assert_true(n <= info->n_positive);
    assert_int_equal(info->n_history, 4);
    for (size_t q = 0; q < n; q++) {
        assert_true(out[q].contribution > 0);
        if (q) assert_true(out[q].contribution <= out[q - 1].contribution);
        assert_non_null(out[q].item);
        assert_string_equal(out[q].item, pvg_model_item_id(m, out[q].item_index));
        /* only the shopper's own history is evidence */
        assert_true(strcmp(out[q].item, "a0") == 0 || strcmp(out[q].item, "a1") == 0 ||
                    strcmp(out[q].item, "a2") == 0 || strcmp(out[q].item, "b0") == 0);
        assert_true(out[q].weight > 0);
    }
    return n;
}

/* The block structure shows in the evidence: a b-item is there because of
 * b0, an a-item because of the a-items (b0 is never its best reason). */
static void check_blocks(const pvg_model *m, const char *name)
{
    pvg_explain_term out[4];
    pvg_explain_info info;
    size_t n = explain_one(m, "b7", out, &info);
    if (n == 0 || strcmp(out[0].item, "b0") != 0)
        fail_msg("%s: b7's first reason is %s, want b0", name, n ? out[0].item : "(none)");
    n = explain_one(m, "a7", out, &info);
    if (n == 0 || out[0].item[0] != 'a')
        fail_msg("%s: a7's first reason is %s, want an a-item", name, n ? out[0].item : "(none)");
}

/* EASE and itemknn: the terms (all of them: k >= history) sum to the score
 * the model serves for the item. */
static void check_exact(const pvg_model *m)
{
    unsigned char key[16];
    assert_int_equal(pvg_model_user_key(m, NULL, "mixed", key, NULL), PVG_OK);
    size_t ni = pvg_model_n_items(m), got = 0;
    pvg_scored_item *all = calloc(ni, sizeof *all);
    assert_int_equal(pvg_model_recommend(m, key, ni, 1, all, &got, NULL), PVG_OK);
    assert_int_equal(got, ni);
    int64_t *ix = malloc(ni * sizeof *ix);
    for (size_t i = 0; i < ni; i++)
        ix[i] = all[i].item_index;
    pvg_explain_term *out = calloc(ni * 4, sizeof *out);
    size_t *n = calloc(ni, sizeof *n);
    pvg_explain_info *info = calloc(ni, sizeof *info);
    assert_int_equal(pvg_model_explain(m, key, ix, ni, 4, out, n, info, NULL), PVG_OK);
    for (size_t i = 0; i < ni; i++) {
        assert_int_equal(info[i].exact, 1);
        if (fabs(info[i].score - all[i].score) > 1e-4 * (1 + fabs(all[i].score)))
            fail_msg("%s: item %s: terms sum to %g, served score %g", info[i].method, all[i].item,
                     info[i].score, (double)all[i].score);
        double pos = 0;
        for (size_t q = 0; q < n[i]; q++)
            pos += out[i * 4 + q].contribution;
        /* the listed (positive) terms bound the score from above */
        assert_true(pos + 1e-6 >= info[i].score);
    }
    free(all), free(ix), free(out), free(n), free(info);
}

static void test_ease(void **state)
{
    (void)state;
    pvg_dataset *ds = fixture();
    pvg_model *m = train(ds, PVG_MODEL_EASE);
    check_blocks(m, "ease");
    check_exact(m);
    pvg_explain_term out[4];
    pvg_explain_info info;
    explain_one(m, "a7", out, &info);
    assert_string_equal(info.method, "ease-weights");
    /* the term is the EASE weight itself */
    int64_t a7 = pvg_model_item_index(m, "a7");
    assert_true(fabs(out[0].contribution -
                     m->ease_B[(size_t)out[0].item_index * m->n_items + (size_t)a7]) < 1e-7);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

static void test_itemknn(void **state)
{
    (void)state;
    pvg_dataset *ds = fixture();
    pvg_model *m = train(ds, PVG_MODEL_ITEMKNN);
    check_blocks(m, "itemknn");
    check_exact(m);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

/* iALS: the terms sum to v_j . u with u the closed-form fold-in of the
 * shopper's history (float factors), and the fold-in's ranking is close to
 * the trained factors' one. */
static void test_ials(void **state)
{
    (void)state;
    pvg_dataset *ds = fixture();
    pvg_model *m = train(ds, PVG_MODEL_IALS);
    check_blocks(m, "ials");
    unsigned char key[16];
    assert_int_equal(pvg_model_user_key(m, NULL, "mixed", key, NULL), PVG_OK);
    int64_t u = pvg_model_find_user(m, key);
    assert_true(u >= 0);
    const uint32_t *h = m->hist_items + m->hist_indptr[u];
    const float *hw = m->hist_w + m->hist_indptr[u];
    size_t nh = (size_t)(m->hist_indptr[u + 1] - m->hist_indptr[u]), F = m->factors;
    float *uf = calloc(F, sizeof *uf), *scratch = calloc(F * F + 2 * F, sizeof *scratch);
    pvg_model_fold_in(m, h, hw, nh, uf, scratch);
    for (size_t j = 0; j < m->n_items; j++) {
        int64_t ix = (int64_t)j;
        pvg_explain_term out[4];
        size_t n;
        pvg_explain_info info;
        assert_int_equal(pvg_model_explain(m, key, &ix, 1, 4, out, &n, &info, NULL), PVG_OK);
        assert_int_equal(info.exact, 0);
        assert_string_equal(info.method, "ials-fold-in");
        double d = 0;
        for (size_t a = 0; a < F; a++)
            d += (double)m->V[j * F + a] * uf[a];
        if (fabs(d - info.score) > 1e-3 * (1 + fabs(d)))
            fail_msg("ials item %zu: terms sum to %g, fold-in score %g", j, info.score, d);
    }
    free(uf), free(scratch);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

static void test_bpr_and_popularity(void **state)
{
    (void)state;
    pvg_dataset *ds = fixture();
    pvg_model *m = train(ds, PVG_MODEL_BPR);
    pvg_explain_term out[4];
    pvg_explain_info info;
    explain_one(m, "b7", out, &info);
    assert_string_equal(info.method, "bpr-ridge-surrogate");
    assert_int_equal(info.exact, 0);
    pvg_model_free(m);
    m = train(ds, PVG_MODEL_POPULARITY);
    size_t n = explain_one(m, "a7", out, &info);
    assert_int_equal(n, 0);
    assert_string_equal(info.method, "popularity");
    assert_true(info.score > 0); /* the count of distinct buyers */
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

static void test_k_and_errors(void **state)
{
    (void)state;
    pvg_dataset *ds = fixture();
    pvg_model *m = train(ds, PVG_MODEL_EASE);
    unsigned char key[16];
    assert_int_equal(pvg_model_user_key(m, NULL, "mixed", key, NULL), PVG_OK);
    int64_t ix[2] = {pvg_model_item_index(m, "a7"), pvg_model_item_index(m, "b7")};
    pvg_explain_term out[2];
    size_t n[2];
    pvg_explain_info info[2];
    assert_int_equal(pvg_model_explain(m, key, ix, 2, 1, out, n, info, NULL), PVG_OK);
    assert_int_equal(n[0], 1);
    assert_int_equal(n[1], 1);
    assert_int_equal(out[0].item[0], 'a');
    assert_string_equal(out[1].item, "b0");
    /* k 0: totals only */
    assert_int_equal(pvg_model_explain(m, key, ix, 2, 0, NULL, n, info, NULL), PVG_OK);
    assert_int_equal(n[0], 0);
    assert_true(info[0].n_positive >= 1);
    pvg_error err;
    /* an unknown user */
    unsigned char other[16];
    memset(other, 0x5a, sizeof other);
    assert_int_equal(pvg_model_explain(m, other, ix, 1, 1, out, n, NULL, &err), PVG_ERR_NOT_FOUND);
    /* an index out of range, and a negative one */
    int64_t bad[2] = {ix[0], (int64_t)pvg_model_n_items(m)};
    assert_int_equal(pvg_model_explain(m, key, bad, 2, 1, out, n, NULL, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "items[1]"));
    bad[1] = -1;
    assert_int_equal(pvg_model_explain(m, key, bad, 2, 1, out, n, NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_model_explain(m, key, NULL, 2, 1, out, n, NULL, &err), PVG_ERR_INVALID);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ease),         cmocka_unit_test(test_itemknn),
        cmocka_unit_test(test_ials),         cmocka_unit_test(test_bpr_and_popularity),
        cmocka_unit_test(test_k_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
