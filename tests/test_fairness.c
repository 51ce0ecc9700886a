/*
 * test_fairness.c - the fairness audit: per-group metrics of a hand-computed
 * example, a planted biased model (gap interval excludes 0) against an
 * unbiased one (interval includes 0), the calibrated re-ranking moving the
 * lists' categories toward the history, the DP release's sensitivities on
 * neighbouring datasets (one shopper removed), and the ML-100K and Online
 * Retail runs (skipped when ../shared/data is absent).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/fairness_internal.h"
#include "model/model_internal.h"

#include <privguide/fairness.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void add(pvg_dataset *ds, const char *user, const char *item, int64_t ts)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.item = item;
    e.ts = ts;
    assert_int_equal(pvg_dataset_add_ext(ds, user, &e, NULL), PVG_OK);
}

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/pvg_fair_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static json_t *run_audit(const pvg_dataset *ds, pvg_model_type t, const pvg_eval_options *eo,
                         const pvg_fair_labels *groups, const pvg_fair_labels *cats,
                         const pvg_fair_options *fo)
{
    pvg_train_params tp;
    pvg_train_params_default(t, &tp);
    pvg_fair_report *rep = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_fair_audit(ds, &tp, eo, groups, cats, fo, &rep, &err);
    if (st != PVG_OK) fprintf(stderr, "audit: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    char *text = pvg_fair_report_json(rep);
    assert_non_null(text);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    free(text);
    pvg_fair_report_free(rep);
    return j;
}

static json_t *group_of(json_t *groups, const char *name)
{
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g) if (strcmp(json_string_value(json_object_get(g, "group")),
                                                name) == 0) return g;
    fail_msg("no group %s", name);
    return NULL;
}

static double num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

/* Four shoppers, items A..D, popularity model, temporal cut-off 1000, k=2.
 * Training: u1 {A}, u2 {A,B}, u3 {A,C}, u4 {B}: popularity A 3, B 2, C 1,
 * D 0 (percentiles 1, 2/3, 1/3, 0). Targets: u1 B, u2 C, u3 D, u4 {C,D}.
 * Lists (training items excluded): u1 [B,C] hit@1, u2 [C,D] hit@1,
 * u3 [B,D] hit@2, u4 [A,C] hit@2 of 2 targets. */
static void test_hand_example(void **state)
{
    (void)state;
    pvg_dataset *ds;
    unsigned char salt[16] = {1};
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, salt, &ds, NULL), PVG_OK);
    add(ds, "u1", "A", 10);
    add(ds, "u2", "A", 10);
    add(ds, "u2", "B", 11);
    add(ds, "u3", "A", 10);
    add(ds, "u3", "C", 11);
    add(ds, "u4", "B", 10);
    add(ds, "u1", "B", 2000);
    add(ds, "u2", "C", 2000);
    add(ds, "u3", "D", 2000);
    add(ds, "u4", "C", 2000);
    add(ds, "u4", "D", 2001);
    char *gf = write_tmp("user,group\nu1,g1\nu2,g1\nu3,g2\nu4,g2\n");
    pvg_fair_labels *L;
    assert_int_equal(pvg_fair_labels_new(&L, NULL), PVG_OK);
    long rows = 0;
    pvg_error err;
    assert_int_equal(pvg_fair_groups_read(gf, NULL, ds, NULL, L, &rows, &err), PVG_OK);
    assert_int_equal(rows, 4);
    unlink(gf);
    free(gf);
    pvg_eval_options eo;
    pvg_eval_options_default(PVG_EVAL_TEMPORAL, &eo);
    eo.cutoff = 1000;
    pvg_fair_options fo;
    pvg_fair_options_default(&fo);
    fo.k = 2;
    fo.min_group_users = 1;
    fo.bootstrap = 0;
    json_t *j = run_audit(ds, PVG_MODEL_POPULARITY, &eo, L, NULL, &fo);
    json_t *groups = json_object_get(j, "groups");
    assert_int_equal(json_array_size(groups), 2);
    json_t *g1 = group_of(groups, "g1"), *g2 = group_of(groups, "g2");
    double w = 1 / log2(3.0);
    assert_int_equal(json_integer_value(json_object_get(g1, "users")), 2);
    assert_true(fabs(num(g1, "recall") - 1.0) < 1e-6);
    assert_true(fabs(num(g1, "ndcg") - 1.0) < 1e-6);
    assert_true(fabs(num(g2, "recall") - 0.75) < 1e-6);
    assert_true(fabs(num(g2, "ndcg") - (w + w / (1 + w)) / 2) < 1e-6);
    /* popularity bias: u1 (2/3+1/3)/2 - 1, u2 (1/3+0)/2 - (1+2/3)/2 */
    assert_true(fabs(num(g1, "popularity_bias") - (-0.5 - 2.0 / 3) / 2) < 1e-6);
    /* u3 [B,D] - {A,C}: 1/3 - 2/3; u4 [A,C] - {B}: 2/3 - 2/3 */
    assert_true(fabs(num(g2, "popularity_bias") - (-1.0 / 3) / 2) < 1e-6);
    assert_true(fabs(num(g1, "coverage") - 0.75) < 1e-9); /* {B,C,D} */
    assert_true(fabs(num(g2, "coverage") - 1.0) < 1e-9);  /* {A,B,C,D} */
    json_t *gap = json_object_get(json_object_get(j, "gaps"), "recall");
    assert_true(fabs(num(gap, "max_minus_min") - 0.25) < 1e-6);
    assert_string_equal(json_string_value(json_object_get(gap, "max_group")), "g1");
    /* the normal interval of g2's recall: values {1, 0.5}, sd 0.25, se 0.25/sqrt 2;
     * its upper end is cut at 1, the metric's range (6 significant digits kept) */
    json_t *ci = json_object_get(g2, "recall_ci");
    assert_true(fabs(json_number_value(json_array_get(ci, 0)) - (0.75 - 1.96 * 0.25 / sqrt(2))) <
                1e-4);
    assert_true(json_number_value(json_array_get(ci, 1)) == 1.0);
    /* exposure by popularity tier: head = A (its 3 of 6 interactions: the
     * first 20%), mid B (3 before it), tail C and D (5 of 6 before C: past 80%):
     * g1 lists B,C,C,D */
    json_t *ex = json_object_get(g1, "exposure");
    assert_true(fabs(num(ex, "head") - 0) < 1e-9);
    assert_true(fabs(num(ex, "mid") - 0.25) < 1e-9);
    assert_true(fabs(num(ex, "tail") - 0.75) < 1e-9);
    assert_true(json_is_null(json_object_get(j, "dp")));
    assert_true(json_is_null(json_object_get(j, "mitigation")));
    json_decref(j);
    /* groups below the minimum size merge into "other" */
    fo.min_group_users = 3;
    j = run_audit(ds, PVG_MODEL_POPULARITY, &eo, L, NULL, &fo);
    groups = json_object_get(j, "groups");
    assert_int_equal(json_array_size(groups), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(groups, 0), "group")),
                        "other");
    json_decref(j);
    pvg_fair_labels_free(L);
    pvg_dataset_free(ds);
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* 200 items; "popular" shoppers pick among items 0..19, "niche" shoppers
 * among 100..199 (each niche item liked by few). biased: the label is the
 * kind; unbiased: the label is a coin flip, independent of the kind. */
static pvg_dataset *planted(int biased, pvg_fair_labels *L)
{
    pvg_dataset *ds;
    unsigned char salt[16] = {2};
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, salt, &ds, NULL), PVG_OK);
    uint64_t s = 7;
    for (int u = 0; u < 400; u++) {
        char user[32], item[32];
        snprintf(user, sizeof user, "s%d", u);
        int niche = (lcg(&s) % 100) < 40;
        for (int j = 0; j < 8; j++) {
            int it = niche ? 100 + (int)(lcg(&s) % 100) : (int)(lcg(&s) % 20);
            snprintf(item, sizeof item, "i%d", it);
            add(ds, user, item, 100 + j);
        }
        const char *label = biased ? (niche ? "niche" : "popular") : (lcg(&s) % 2 ? "a" : "b");
        unsigned char key[16];
        assert_int_equal(pvg_dataset_user_key(ds, user, key, NULL), PVG_OK);
        assert_int_equal(pvg_fair_labels_set(L, key, 16, label, NULL), PVG_OK);
    }
    return ds;
}

static void test_planted_bias(void **state)
{
    (void)state;
    pvg_eval_options eo;
    pvg_eval_options_default(PVG_EVAL_RANDOM_SPLIT, &eo);
    pvg_fair_options fo;
    pvg_fair_options_default(&fo);
    fo.k = 10;
    for (int biased = 1; biased >= 0; biased--) {
        pvg_fair_labels *L;
        assert_int_equal(pvg_fair_labels_new(&L, NULL), PVG_OK);
        pvg_dataset *ds = planted(biased, L);
        json_t *j = run_audit(ds, PVG_MODEL_POPULARITY, &eo, L, NULL, &fo);
        json_t *gap = json_object_get(json_object_get(j, "gaps"), "recall");
        json_t *ci = json_object_get(gap, "ci");
        double lo = json_number_value(json_array_get(ci, 0)),
               hi = json_number_value(json_array_get(ci, 1));
        double d = num(gap, "max_minus_min");
        fprintf(stderr, "%s: recall gap %.4f [%.4f, %.4f] (%s - %s)\n",
                biased ? "biased" : "unbiased", d, lo, hi,
                json_string_value(json_object_get(gap, "max_group")),
                json_string_value(json_object_get(gap, "min_group")));
        assert_true(lo <= d && d <= hi);
        if (biased) {
            assert_string_equal(json_string_value(json_object_get(gap, "max_group")), "popular");
            assert_true(lo > 0); /* excludes 0 */
            /* each group vs the rest agrees */
            json_t *vr = json_object_get(gap, "vs_rest");
            assert_int_equal(json_array_size(vr), 2);
        } else {
            assert_true(lo < 0 && hi > 0); /* includes 0 */
        }
        json_decref(j);
        pvg_fair_labels_free(L);
        pvg_dataset_free(ds);
    }
}

/* The re-ranking alone: the candidates' top half is category 0, the
 * history is half and half. lambda 0 keeps the score order; lambda 1 picks
 * half from each category. */
static void test_calibrate_unit(void **state)
{
    (void)state;
    int64_t cand[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float sc[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    int cat_of[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    double p[2] = {0.5, 0.5}, qc[2];
    unsigned char used[8];
    int64_t out[4];
    assert_int_equal(pvg_fair_calibrate(cand, sc, 8, cat_of, p, 2, 0.0, 4, out, qc, used), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(out[i], i);
    assert_int_equal(pvg_fair_calibrate(cand, sc, 8, cat_of, p, 2, 1.0, 4, out, qc, used), 4);
    int c1 = 0;
    for (int i = 0; i < 4; i++)
        c1 += cat_of[out[i]];
    assert_int_equal(c1, 2);
    /* KL of a matching list is 0; of a one-sided list, > 0 */
    double even[2] = {2, 2}, one[2] = {4, 0};
    assert_true(fabs(pvg_fair_kl(p, even, 2)) < 1e-12);
    assert_true(pvg_fair_kl(p, one, 2) > 1);
}

/* Shoppers whose histories are mostly category "x" (unpopular items), the
 * popular items all "y": the popularity lists are all "y"; calibration
 * moves the lists' share of "x" toward the history's. */
static void test_calibration_moves_toward_history(void **state)
{
    (void)state;
    pvg_dataset *ds;
    unsigned char salt[16] = {3};
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, salt, &ds, NULL), PVG_OK);
    pvg_fair_labels *L, *C;
    assert_int_equal(pvg_fair_labels_new(&L, NULL), PVG_OK);
    assert_int_equal(pvg_fair_labels_new(&C, NULL), PVG_OK);
    uint64_t s = 11;
    for (int i = 0; i < 110; i++) {
        char item[16];
        snprintf(item, sizeof item, "i%d", i);
        assert_int_equal(pvg_fair_labels_set(C, item, strlen(item), i < 10 ? "y" : "x", NULL),
                         PVG_OK);
    }
    for (int u = 0; u < 120; u++) {
        char user[16], item[16];
        snprintf(user, sizeof user, "c%d", u);
        for (int j = 0; j < 10; j++) {
            /* 4 of the 10 popular "y" items, 6 from the long tail of "x" */
            int it = j < 4 ? (int)(lcg(&s) % 10) : 10 + (int)(lcg(&s) % 100);
            snprintf(item, sizeof item, "i%d", it);
            add(ds, user, item, 100 + j);
        }
        unsigned char key[16];
        assert_int_equal(pvg_dataset_user_key(ds, user, key, NULL), PVG_OK);
        assert_int_equal(pvg_fair_labels_set(L, key, 16, u % 2 ? "odd" : "even", NULL), PVG_OK);
    }
    pvg_eval_options eo;
    pvg_eval_options_default(PVG_EVAL_RANDOM_SPLIT, &eo);
    pvg_fair_options fo;
    pvg_fair_options_default(&fo);
    fo.k = 5;
    fo.bootstrap = 200;
    fo.mitigate = PVG_FAIR_MITIGATE_CALIBRATION;
    fo.lambda = 0.9;
    fo.candidates = 50;
    json_t *j = run_audit(ds, PVG_MODEL_POPULARITY, &eo, L, C, &fo);
    json_t *m = json_object_get(j, "mitigation");
    assert_true(json_is_object(m));
    double before = num(json_object_get(m, "overall_before"), "miscalibration");
    double after = num(json_object_get(m, "overall_after"), "miscalibration");
    fprintf(stderr, "miscalibration %.4f -> %.4f\n", before, after);
    assert_true(after < 0.5 * before);
    json_t *gb = group_of(json_object_get(j, "groups"), "odd");
    json_t *ga = group_of(json_object_get(m, "groups"), "odd");
    double hx = num(json_object_get(gb, "history"), "x");
    double xb = num(json_object_get(gb, "exposure"), "x");
    double xa = num(json_object_get(ga, "exposure"), "x");
    fprintf(stderr, "share of x: history %.3f, lists %.3f -> %.3f\n", hx, xb, xa);
    assert_true(xb < 0.1);                            /* popularity shows "y" only */
    assert_true(fabs(xa - hx) < 0.5 * fabs(xb - hx)); /* moved most of the way */
    json_decref(j);
    pvg_fair_labels_free(L);
    pvg_fair_labels_free(C);
    pvg_dataset_free(ds);
}

/* A random per-shopper evaluation (groups, metrics, lists, categories). */
static void random_eval(pvg_fair_eval *e, size_t n, int groups, int phases, uint64_t seed)
{
    memset(e, 0, sizeof *e);
    e->n = n;
    e->k = 5;
    e->phases = phases;
    e->n_groups = groups;
    e->n_cats = 3;
    e->n_items = 400;
    e->u = calloc(n, sizeof *e->u);
    e->lists = malloc(n * (size_t)phases * 5 * sizeof *e->lists);
    e->cat_count = calloc(n * (size_t)phases * 3, sizeof *e->cat_count);
    e->hist_share = calloc(n * 3, sizeof *e->hist_share);
    e->group_names = calloc((size_t)groups, sizeof *e->group_names);
    e->cat_names = calloc(3, sizeof *e->cat_names);
    for (int g = 0; g < groups; g++) {
        char b[16];
        snprintf(b, sizeof b, "g%d", g);
        e->group_names[g] = strdup(b);
    }
    for (int c = 0; c < 3; c++)
        e->cat_names[c] = strdup(c == 0 ? "head" : c == 1 ? "mid" : "tail");
    uint64_t s = seed;
    for (size_t a = 0; a < n; a++) {
        pvg_fair_user *u = &e->u[a];
        u->group = (int32_t)(lcg(&s) % (uint64_t)groups);
        u->pop_hist = (float)(lcg(&s) % 1000) / 999.0f;
        for (int p = 0; p < phases; p++) {
            u->recall[p] = (float)(lcg(&s) % 1001) / 1000.0f;
            u->ndcg[p] = (float)(lcg(&s) % 1001) / 1000.0f;
            u->pop_rec[p] = (float)(lcg(&s) % 1001) / 1000.0f;
            for (int j = 0; j < 5; j++) {
                /* shopper 0 alone gets items 300..304: its removal moves
                 * the distinct count of its group by exactly k */
                int64_t it = a == 0 ? 300 + j : (int64_t)(lcg(&s) % 300);
                if (j > 0 && a != 0 && lcg(&s) % 7 == 0) it = -1; /* short lists */
                e->lists[(a * (size_t)phases + (size_t)p) * 5 + (size_t)j] = it;
                if (it >= 0) e->cat_count[(a * (size_t)phases + (size_t)p) * 3 + it % 3]++;
            }
        }
    }
}

/* Removes shopper x (a neighbouring dataset). */
static void remove_one(const pvg_fair_eval *e, size_t x, pvg_fair_eval *o)
{
    *o = *e;
    o->n = e->n - 1;
    o->u = malloc(o->n * sizeof *o->u);
    o->lists = malloc(o->n * (size_t)e->phases * (size_t)e->k * sizeof *o->lists);
    o->cat_count = malloc(o->n * (size_t)e->phases * (size_t)e->n_cats * sizeof *o->cat_count);
    size_t b = 0;
    for (size_t a = 0; a < e->n; a++) {
        if (a == x) continue;
        o->u[b] = e->u[a];
        memcpy(o->lists + b * (size_t)e->phases * (size_t)e->k,
               e->lists + a * (size_t)e->phases * (size_t)e->k,
               (size_t)e->phases * (size_t)e->k * sizeof *o->lists);
        memcpy(o->cat_count + b * (size_t)e->phases * (size_t)e->n_cats,
               e->cat_count + a * (size_t)e->phases * (size_t)e->n_cats,
               (size_t)e->phases * (size_t)e->n_cats * sizeof *o->cat_count);
        b++;
    }
}

/* Every shopper's removal moves each block of the statistics by at most the
 * sensitivity the noise is calibrated to; and the bound is reached (so a
 * smaller sensitivity would fail here). */
static void test_dp_neighbouring(void **state)
{
    (void)state;
    for (int phases = 1; phases <= 2; phases++) {
        pvg_fair_eval e;
        random_eval(&e, 300, 4, phases, 99 + (uint64_t)phases);
        size_t len = pvg_fair_stats_len(&e);
        int *block_of = malloc(len * sizeof *block_of);
        int64_t *sens = malloc(len * sizeof *sens);
        int nb = pvg_fair_stats_blocks(&e, block_of, sens);
        assert_int_equal(nb, 2 + 7 * phases);
        int64_t *s0 = malloc(4 * len * sizeof *s0), *s1 = malloc(4 * len * sizeof *s1);
        assert_int_equal(pvg_fair_stats(&e, s0), 0);
        int64_t *worst = calloc((size_t)nb, sizeof *worst);
        for (size_t x = 0; x < e.n; x++) {
            pvg_fair_eval o;
            remove_one(&e, x, &o);
            assert_int_equal(pvg_fair_stats(&o, s1), 0);
            int64_t *moved = calloc((size_t)nb, sizeof *moved);
            for (int g = 0; g < 4; g++)
                for (size_t j = 0; j < len; j++) {
                    int64_t d = s0[(size_t)g * len + j] - s1[(size_t)g * len + j];
                    if (d && g != e.u[x].group) fail_msg("another group's statistic moved");
                    moved[block_of[j]] += d < 0 ? -d : d;
                }
            for (int b = 0; b < nb; b++) {
                assert_true(moved[b] <= sens[b]);
                if (moved[b] > worst[b]) worst[b] = moved[b];
            }
            free(moved);
            free(o.u);
            free(o.lists);
            free(o.cat_count);
        }
        /* the count, the distinct items (shopper 0) and the category slots
         * (a full list) reach their bounds */
        assert_int_equal(worst[0], 1);
        assert_int_equal(worst[2 + 5], e.k);
        assert_int_equal(worst[2 + 6], e.k);
        assert_true(worst[2] > PVG_FAIR_Q * 99 / 100); /* recall near 1 */
        free(worst);
        free(s0);
        free(s1);
        free(block_of);
        free(sens);
        pvg_fair_eval_free(&e);
    }
}

/* The DP report: built from noisy sums only (a deterministic generator with
 * the test switch), says so, omits what is not released; refused without
 * the switch. */
static void test_dp_report(void **state)
{
    (void)state;
    pvg_fair_eval e;
    random_eval(&e, 2000, 2, 2, 5);
    pvg_fair_options fo;
    pvg_fair_options_default(&fo);
    fo.epsilon = 1.0;
    fo.mitigate = PVG_FAIR_MITIGATE_CALIBRATION;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    fo.rng = rng;
    pvg_fair_report *rep = NULL;
    pvg_error err;
    assert_int_equal(
        pvg_fair_report_build(&e, &fo, "popularity", "random-split", "tiers", 0, &rep, &err),
        PVG_ERR_POLICY);
    fo.allow_insecure_rng = 1;
    assert_int_equal(
        pvg_fair_report_build(&e, &fo, "popularity", "random-split", "tiers", 0, &rep, &err),
        PVG_OK);
    char *text = pvg_fair_report_json(rep);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    json_t *dp = json_object_get(j, "dp");
    assert_true(json_is_object(dp));
    assert_true(fabs(num(dp, "epsilon") - 1.0) < 1e-12);
    assert_null(json_object_get(j, "users_evaluated"));
    json_t *g = json_array_get(json_object_get(j, "groups"), 0);
    assert_null(json_object_get(g, "history"));
    assert_null(json_object_get(g, "miscalibration"));
    /* noisy, but about right: 2000 shoppers in 2 groups, recall ~0.5 */
    double users = num(g, "users"), rec = num(g, "recall");
    assert_true(users > 800 && users < 1200);
    assert_true(rec > 0.4 && rec < 0.6);
    json_t *ci = json_object_get(g, "recall_ci");
    assert_true(json_number_value(json_array_get(ci, 0)) < rec &&
                rec < json_number_value(json_array_get(ci, 1)));
    json_decref(j);
    free(text);
    pvg_fair_report_free(rep);
    /* the intervals account for the noise: over repeated releases, group
     * 0's interval holds its exact mean recall about 95% of the time */
    double exact = 0, cnt = 0;
    for (size_t a = 0; a < e.n; a++)
        if (e.u[a].group == 0) {
            exact += e.u[a].recall[0];
            cnt += 1;
        }
    exact /= cnt;
    fo.epsilon = 0.5;
    int covered = 0, runs = 200;
    for (int r = 0; r < runs; r++) {
        assert_int_equal(
            pvg_fair_report_build(&e, &fo, "popularity", "random-split", "tiers", 0, &rep, &err),
            PVG_OK);
        text = pvg_fair_report_json(rep);
        j = json_loads(text, 0, NULL);
        ci = json_object_get(group_of(json_object_get(j, "groups"), "g0"), "recall_ci");
        covered += json_number_value(json_array_get(ci, 0)) <= exact &&
                   exact <= json_number_value(json_array_get(ci, 1));
        json_decref(j);
        free(text);
        pvg_fair_report_free(rep);
    }
    fprintf(stderr, "DP recall interval covered the exact mean in %d of %d releases\n", covered,
            runs);
    assert_true(covered >= runs * 88 / 100 && covered <= runs * 99 / 100);
    pvg_rng_free(rng);
    pvg_fair_eval_free(&e);
}

static void test_save_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/pvg_fair_dir_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *text = NULL;
    pvg_error err;
    assert_int_equal(pvg_fair_report_load(dir, &text, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_fair_report_save(dir, "{\"x\":1}", &err), PVG_ERR_INVALID);
    const char *rep = "{\"group_by\":\"g\",\"groups\":[]}";
    assert_int_equal(pvg_fair_report_save(dir, rep, &err), PVG_OK);
    assert_int_equal(pvg_fair_report_load(dir, &text, &err), PVG_OK);
    assert_string_equal(text, rep);
    free(text);
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, PVG_FAIR_REPORT_FILE);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    unlink(path);
    rmdir(dir);
}

/* The save's temp file has a name anyone can predict (report.tmp.<pid>): a symbolic link
 * planted there is not written through, the report lands as a 0600 regular file, and a link
 * in the report's own place is not read through. */
static void test_save_refuses_links(void **state)
{
    (void)state;
    char dir[] = "/tmp/pvg_fair_link_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char tmp[600], target[512], path[512];
    snprintf(path, sizeof path, "%s/%s", dir, PVG_FAIR_REPORT_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    snprintf(target, sizeof target, "%s/planted", dir);
    assert_int_equal(symlink(target, tmp), 0);
    const char *rep = "{\"group_by\":\"g\",\"groups\":[]}";
    pvg_error err;
    assert_int_equal(pvg_fair_report_save(dir, rep, &err), PVG_OK);
    struct stat sb;
    if (lstat(target, &sb) == 0) fail_msg("the report was written through the planted link");
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_not_equal(lstat(tmp, &sb), 0);
    /* a link in the report's place: not followed */
    char other[512];
    snprintf(other, sizeof other, "%s/other.json", dir);
    assert_int_equal(rename(path, other), 0);
    assert_int_equal(symlink(other, path), 0);
    char *text = NULL;
    assert_int_not_equal(pvg_fair_report_load(dir, &text, &err), PVG_OK);
    assert_null(text);
    unlink(path);
    unlink(other);
    rmdir(dir);
}

/* ---- the datasets (skipped when absent) ---- */

static const char *shared_data(void)
{
    static char buf[1024];
    const char *env = getenv("PVG_SHARED_DIR");
    const char *cands[3] = {env, "../shared", "../../shared"};
    for (int i = 0; i < 3; i++) {
        if (!cands[i]) continue;
        snprintf(buf, sizeof buf, "%s/data", cands[i]);
        char probe[1100];
        snprintf(probe, sizeof probe, "%s/ml-100k/u.data.gz", buf);
        if (access(probe, R_OK) == 0) return buf;
        snprintf(probe, sizeof probe, "%s/online-retail/online-retail.csv.gz", buf);
        if (access(probe, R_OK) == 0) return buf;
    }
    return NULL;
}

static void test_ml100k(void **state)
{
    (void)state;
    const char *d = shared_data();
    char data[1200], users[1200], items[1200];
    if (d) {
        snprintf(data, sizeof data, "%s/ml-100k/u.data.gz", d);
        snprintf(users, sizeof users, "%s/ml-100k/u.user.gz", d);
        snprintf(items, sizeof items, "%s/ml-100k/u.item.gz", d);
    }
    if (!d || access(data, R_OK) != 0 || access(users, R_OK) != 0) {
        fprintf(stderr, "SKIP: ML-100K not found (../shared/data/ml-100k)\n");
        skip();
    }
    pvg_dataset *ds;
    pvg_error err;
    assert_int_equal(pvg_dataset_load_file(data, PVG_FORMAT_MOVIELENS, NULL, NULL, &ds, NULL, &err),
                     PVG_OK);
    pvg_fair_labels *C;
    assert_int_equal(pvg_fair_labels_new(&C, NULL), PVG_OK);
    assert_int_equal(pvg_fair_categories_read(items, C, &err), PVG_OK);
    assert_int_equal(pvg_fair_labels_count(C), 1682);
    const char *attrs[2] = {"gender", "age-band"};
    for (int a = 0; a < 2; a++) {
        pvg_fair_labels *L;
        assert_int_equal(pvg_fair_labels_new(&L, NULL), PVG_OK);
        long rows;
        assert_int_equal(pvg_fair_groups_read(users, attrs[a], ds, NULL, L, &rows, &err), PVG_OK);
        assert_int_equal(rows, 943);
        pvg_eval_options eo;
        pvg_eval_options_default(PVG_EVAL_RANDOM_SPLIT, &eo);
        eo.threads = 2;
        pvg_fair_options fo;
        pvg_fair_options_default(&fo);
        fo.group_by = attrs[a];
        fo.mitigate = PVG_FAIR_MITIGATE_CALIBRATION;
        json_t *j = run_audit(ds, PVG_MODEL_ITEMKNN, &eo, L, C, &fo);
        json_t *groups = json_object_get(j, "groups");
        assert_int_equal(json_array_size(groups), a == 0 ? 2 : 4);
        long total = 0;
        size_t i;
        json_t *g;
        json_array_foreach(groups, i, g)
        {
            total += (long)json_integer_value(json_object_get(g, "users"));
            double r = num(g, "recall");
            json_t *ci = json_object_get(g, "recall_ci");
            assert_true(r > 0.1 && r < 0.9);
            assert_true(json_number_value(json_array_get(ci, 0)) <= r &&
                        r <= json_number_value(json_array_get(ci, 1)));
        }
        assert_int_equal(total, num(j, "users_evaluated"));
        assert_true(total > 900);
        json_t *m = json_object_get(j, "mitigation");
        assert_true(num(json_object_get(m, "overall_after"), "miscalibration") <
                    num(json_object_get(m, "overall_before"), "miscalibration"));
        json_decref(j);
        pvg_fair_labels_free(L);
    }
    pvg_fair_labels_free(C);
    pvg_dataset_free(ds);
}

static void test_online_retail(void **state)
{
    (void)state;
    const char *d = shared_data();
    char data[1200];
    if (d) snprintf(data, sizeof data, "%s/online-retail/online-retail.csv.gz", d);
    if (!d || access(data, R_OK) != 0) {
        fprintf(stderr, "SKIP: Online Retail not found (../shared/data/online-retail)\n");
        skip();
    }
    pvg_dataset *ds;
    pvg_error err;
    assert_int_equal(
        pvg_dataset_load_file(data, PVG_FORMAT_ONLINE_RETAIL, NULL, NULL, &ds, NULL, &err), PVG_OK);
    pvg_fair_labels *L;
    assert_int_equal(pvg_fair_labels_new(&L, NULL), PVG_OK);
    assert_int_equal(
        pvg_fair_groups_from_events(data, PVG_FORMAT_ONLINE_RETAIL, "country", ds, L, &err),
        PVG_OK);
    assert_true(pvg_fair_labels_count(L) > 4000);
    pvg_eval_options eo;
    pvg_eval_options_default(PVG_EVAL_RANDOM_SPLIT, &eo);
    eo.threads = 2;
    pvg_fair_options fo;
    pvg_fair_options_default(&fo);
    fo.group_by = "country";
    fo.max_groups = 4;
    fo.bootstrap = 300;
    json_t *j = run_audit(ds, PVG_MODEL_POPULARITY, &eo, L, NULL, &fo);
    json_t *groups = json_object_get(j, "groups");
    assert_int_equal(json_array_size(groups), 5); /* 4 countries + other */
    assert_string_equal(json_string_value(json_object_get(json_array_get(groups, 0), "group")),
                        "United Kingdom");
    assert_non_null(group_of(groups, "other"));
    json_decref(j);
    pvg_fair_labels_free(L);
    pvg_dataset_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_example),
        cmocka_unit_test(test_planted_bias),
        cmocka_unit_test(test_calibrate_unit),
        cmocka_unit_test(test_calibration_moves_toward_history),
        cmocka_unit_test(test_dp_neighbouring),
        cmocka_unit_test(test_dp_report),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_save_refuses_links),
        cmocka_unit_test(test_ml100k),
        cmocka_unit_test(test_online_retail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
