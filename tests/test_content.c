/*
 * test_content.c - the catalogue-text prior (src/model/content.c and its
 * use by DP-EASE): the similarity's values against a hand computation,
 * items without text, stemming and stop words; DP-EASE with titles below
 * and above its small-epsilon threshold (mechanism, accounting, B a
 * function of the released popularity and the text only); the smoothing
 * of the noisy Gram along the text; and titles read from the events' rows
 * never used as public text.
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

static void test_similarity_values(void **s)
{
    (void)s;
    /* terms: red (2 items), appl, pear (2), green; "the" is a stop word */
    const char *t[] = {"Red apple", "RED PEARS", "green pear", "the", NULL, "red apples"};
    size_t n = 6, nt;
    float *S = malloc(n * n * sizeof *S);
    assert_non_null(S);
    pvg_error err;
    assert_int_equal(pvg_content_similarity(t, n, S, &nt, &err), PVG_OK);
    assert_int_equal(nt, 4);
    /* idf over the 4 items with text: red 3 of 4 (items 0, 1, 5), appl 2,
     * pear 2, green 1 */
    double red = log(4.0 / 3), appl = log(2.0), pear = log(2.0), green = log(4.0);
    double n0 = sqrt(red * red + appl * appl), n1 = sqrt(red * red + pear * pear),
           n2 = sqrt(green * green + pear * pear);
    double c01 = red * red / (n0 * n1), c12 = pear * pear / (n1 * n2);
    assert_true(fabs(S[0 * n + 1] - c01 * c01) < 1e-6);
    assert_true(fabs(S[1 * n + 0] - c01 * c01) < 1e-6);
    assert_true(fabs(S[1 * n + 2] - c12 * c12) < 1e-6);
    assert_true(S[0 * n + 2] == 0);             /* no shared term */
    assert_true(fabs(S[0 * n + 5] - 1) < 1e-6); /* apple / apples: one stem */
    for (size_t i = 0; i < n; i++) {
        assert_true(S[i * n + i] == 0);
        for (size_t j = 0; j < n; j++) {
            assert_true(S[i * n + j] >= 0 && S[i * n + j] <= 1 + 1e-6);
            assert_true(fabs(S[i * n + j] - S[j * n + i]) < 1e-6);
            if (i == 3 || i == 4) assert_true(S[i * n + j] == 0); /* no text */
        }
    }
    /* no titles at all */
    assert_int_equal(pvg_content_similarity(NULL, n, S, &nt, &err), PVG_OK);
    assert_int_equal(nt, 0);
    for (size_t q = 0; q < n * n; q++)
        assert_true(S[q] == 0);
    free(S);
}

#define N_ITEMS 24
#define N_USERS 60

static char names[N_ITEMS][8];
static const char *ids[N_ITEMS], *titles[N_ITEMS];
/* four families of six items; the titles of a family share a word */
static const char *const family[] = {"lantern", "teacup", "doormat", "candle"};
static char title_buf[N_ITEMS][48];

static pvg_dataset *shop(void)
{
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(names[i], sizeof names[i], "i%d", i);
        ids[i] = names[i];
        snprintf(title_buf[i], sizeof title_buf[i], "%s model %c", family[i / 6], 'a' + i % 6);
        titles[i] = title_buf[i];
    }
    pvg_dataset *ds;
    unsigned char salt[16] = {3};
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, salt, &ds, NULL), PVG_OK);
    uint64_t x = 17;
    for (int u = 0; u < N_USERS; u++) {
        char name[16];
        snprintf(name, sizeof name, "u%d", u);
        int f = u % 4;
        for (int a = 0; a < 4; a++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            pvg_event e;
            memset(&e, 0, sizeof e);
            e.type = PVG_EVENT_PURCHASE;
            e.item = ids[f * 6 + (int)((x >> 33) % 6)];
            e.ts = 1000 + a;
            assert_int_equal(pvg_dataset_add_ext(ds, name, &e, NULL), PVG_OK);
        }
    }
    return ds;
}

static pvg_model *train(pvg_dataset *ds, double eps, const char *const *tt, uint64_t seed)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    p.dp_epsilon = eps;
    p.dp_delta = 1e-6;
    p.dp_max_items = 4;
    p.dp_rng = rng;
    p.dp_allow_insecure_rng = 1;
    p.ease_lambda = 5;
    p.dp_items = ids;
    p.dp_n_items = N_ITEMS;
    p.dp_item_titles = tt;
    pvg_model *m;
    pvg_error err;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    pvg_rng_free(rng);
    return m;
}

/* Below epsilon 3 with titles: one release, the bounded popularity with
 * the whole budget; B is the text prior of that noisy popularity, i.e. a
 * function of the release and the public text alone. */
static void test_ease_small_eps(void **s)
{
    (void)s;
    pvg_dataset *ds = shop();
    pvg_model *m = train(ds, 1, titles, 5);
    assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-popularity+text");
    assert_true(m->dp.epsilon <= 1 + 1e-9 && m->dp.epsilon >= 0.99);
    assert_true(fabs(m->dp.sensitivity - 2.0) < 1e-12); /* sqrt(m), m = 4 */
    size_t n = pvg_model_n_items(m);
    assert_int_equal(n, N_ITEMS);
    const float *B = m->ease_B, *pop = m->popularity;
    assert_non_null(B);
    assert_non_null(pop);
    float *S = malloc(n * n * sizeof *S);
    size_t nt;
    pvg_error err;
    assert_int_equal(pvg_content_similarity(titles, n, S, &nt, &err), PVG_OK);
    double pmax = 0;
    for (size_t j = 0; j < n; j++)
        if (pop[j] > pmax) pmax = pop[j];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double want = 0.2 * S[i * n + j] * pow((pop[j] + 1) / (pmax + 1), 0.25);
            assert_true(fabs(B[i * n + j] - want) < 1e-6);
            /* another family's items share only "model": weaker than the own family's */
            if (i != j && i / 6 == j / 6) assert_true(S[i * n + j] > 0.1);
        }
    free(S);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

/* At epsilon 8 the noisy Gram corrects the prior: the composition stays
 * within epsilon, and a similar-items row ranks the item's own family
 * first. */
static void test_ease_large_eps(void **s)
{
    (void)s;
    pvg_dataset *ds = shop();
    pvg_model *m = train(ds, 8, titles, 9);
    assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-weighted-gram+text");
    assert_true(m->dp.epsilon <= 8 * (1 + 1e-9) && m->dp.epsilon >= 8 * 0.995);
    size_t n = pvg_model_n_items(m);
    const float *B = m->ease_B;
    int own = 0;
    for (size_t i = 0; i < n; i++) {
        size_t best = i == 0 ? 1 : 0;
        for (size_t j = 0; j < n; j++)
            if (j != i && B[i * n + j] > B[i * n + best]) best = j;
        own += best / 6 == i / 6;
        assert_true(B[i * n + i] == 0);
    }
    assert_true(own >= 22);
    pvg_model_free(m);
    /* without titles: the Gram alone, as before */
    m = train(ds, 8, NULL, 9);
    assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-weighted-gram");
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

/* Titles that came with the events' rows are the shoppers' data, not the
 * catalogue: an item only one shopper bought would have text only in a
 * dataset that holds that shopper. They are never the public text. */
static void test_row_titles_not_public(void **s)
{
    (void)s;
    pvg_dataset *ds = shop();
    for (size_t i = 0; i < ds->n_items; i++)
        assert_int_equal(pvg_dataset_set_item_title(ds, i, "lantern model"), 0);
    assert_string_equal(pvg_dataset_item_title(ds, 0), "lantern model");
    pvg_model *m = train(ds, 1, NULL, 11);
    assert_null(strstr(m->dp.mechanism, "+text"));
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

/* Titles that link no two items (every title its own words, or one word
 * shared by all, which weighs 0) give no prior: DP-EASE runs as without
 * text instead of releasing a zero B labelled "+text". */
static void test_unlinked_titles(void **s)
{
    (void)s;
    pvg_dataset *ds = shop();
    static char own[N_ITEMS][16];
    const char *distinct[N_ITEMS], *same[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(own[i], sizeof own[i], "word%c%c", 'a' + i % 26, 'a' + i / 26);
        distinct[i] = own[i];
        same[i] = "lantern";
    }
    pvg_model *m = train(ds, 1, distinct, 13);
    assert_null(strstr(m->dp.mechanism, "+text"));
    pvg_model_free(m);
    m = train(ds, 8, same, 13);
    assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-weighted-gram");
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

/* The smoothing of DP-EASE's noisy Gram along the text (post-processing):
 * K G K^T against a hand computation (K = I + alpha S, each row of S over
 * max(1, its sum)); with alpha 0 G is unchanged and the simulated noise's
 * edge is the Wigner edge 2 sigma sqrt(n); the edge is the same in every
 * run and proportional to sigma; bad arguments are refused. */
static void test_smooth_gram(void **s)
{
    (void)s;
    /* rows of S: item 0's sum 2 (divided by 2), item 1's 0.5 (kept), item 2
     * unlinked */
    const float S[9] = {0, 1.5f, 0.5f, 0.5f, 0, 0, 0, 0, 0};
    float G[9] = {4, 1, 2, 1, 3, 0, 2, 0, 5};
    const double alpha = 0.5;
    double K[9] = {1, 0.5 * 0.75, 0.5 * 0.25, 0.5 * 0.5, 1, 0, 0, 0, 1}, want[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double v = 0;
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++)
                    v += K[i * 3 + a] * G[a * 3 + b] * K[j * 3 + b];
            want[i * 3 + j] = v;
        }
    double edge;
    pvg_error err;
    assert_int_equal(pvg_content_smooth_gram(G, S, 3, alpha, 1, 1, &edge, &err), PVG_OK);
    for (int q = 0; q < 9; q++)
        assert_true(fabs(G[q] - want[q]) < 1e-5);
    assert_true(edge > 0);

    size_t n = 400;
    float *A = calloc(n * n, sizeof *A), *Z = calloc(n * n, sizeof *Z);
    assert_non_null(A);
    assert_non_null(Z);
    for (size_t i = 0; i < n; i++)
        A[i * n + i] = (float)i;
    double e0, e1, e2;
    assert_int_equal(pvg_content_smooth_gram(A, Z, n, 0, 3, 2, &e0, &err), PVG_OK);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            assert_true(A[i * n + j] == (i == j ? (float)i : 0.0f));
    double wigner = 2 * 3 * sqrt((double)n);
    assert_true(e0 > 0.9 * wigner && e0 < 1.1 * wigner);
    /* families of 8 alike items: the edge is fixed and scales with sigma */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            Z[i * n + j] = i != j && i / 8 == j / 8 ? 0.5f : 0.0f;
    assert_int_equal(pvg_content_smooth_gram(A, Z, n, 0.5, 3, 2, &e1, &err), PVG_OK);
    assert_int_equal(pvg_content_smooth_gram(A, Z, n, 0.5, 6, 2, &e2, &err), PVG_OK);
    assert_true(fabs(e2 - 2 * e1) < 1e-3 * e1);
    /* the same E as with alpha 0, and |K E K^T| <= |K|^2 |E|, |K| = 1.5
     * (each family's mean direction), so the edge is at most 2.25 e0 */
    assert_true(e1 <= 2.25 * e0 * (1 + 1e-4));
    assert_int_equal(pvg_content_smooth_gram(A, Z, n, -1, 3, 2, &e1, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_content_smooth_gram(A, Z, n, 0.5, NAN, 2, &e1, &err), PVG_ERR_INVALID);
    free(A), free(Z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_similarity_values), cmocka_unit_test(test_ease_small_eps),
        cmocka_unit_test(test_ease_large_eps),    cmocka_unit_test(test_row_titles_not_public),
        cmocka_unit_test(test_unlinked_titles),   cmocka_unit_test(test_smooth_gram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
