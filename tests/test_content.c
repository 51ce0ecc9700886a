/*
 * test_content.c - the catalogue-text prior (src/model/content.c and its
 * use by DP-EASE): the similarity's values against a hand computation,
 * items without text, stemming and stop words; DP-EASE with titles below
 * and above its small-epsilon threshold (mechanism, accounting, B a
 * function of the released popularity and the text only); the public
 * basis the Gram is projected on and the projected Gram's sensitivity on
 * neighbouring datasets; and titles read from the events' rows never used
 * as public text.
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

/* DP-EASE at eps over the shop, titles tt; recent: with the recency
 * defaults, the present just after the last purchase */
static pvg_model *train_recent(pvg_dataset *ds, double eps, const char *const *tt, uint64_t seed,
                               int recent)
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
    if (recent) pvg_train_params_recency_default(&p, 1004);
    pvg_model *m;
    pvg_error err;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    pvg_rng_free(rng);
    return m;
}

static pvg_model *train(pvg_dataset *ds, double eps, const char *const *tt, uint64_t seed)
{
    return train_recent(ds, eps, tt, seed, 0);
}

/* Below epsilon 5 with titles: the bounded popularity with the whole
 * budget, or with the recency defaults beside the recent buyers' release;
 * B is the text prior of the model's popularity (with the recent buyers,
 * the mix of the two releases, which the model keeps as its popularity),
 * i.e. a function of the releases and the public text alone. */
static void ease_small_eps(int recent)
{
    pvg_dataset *ds = shop();
    pvg_model *m = train_recent(ds, 1, titles, 5, recent);
    assert_string_equal(m->dp.mechanism, recent ? "dp-ease/discrete-gaussian-pop+recent+text"
                                                : "dp-ease/discrete-gaussian-popularity+text");
    assert_true(m->dp.epsilon <= 1 + 1e-9 && m->dp.epsilon >= 0.99);
    /* sqrt(m), m = 4; with the recent buyers the composition's 1 */
    assert_true(fabs(m->dp.sensitivity - (recent ? 1.0 : 2.0)) < 1e-12);
    size_t n = pvg_model_n_items(m);
    assert_int_equal(n, N_ITEMS);
    const float *B = m->ease_B, *pop = m->popularity;
    assert_non_null(B);
    assert_non_null(pop);
    float *S = malloc(n * n * sizeof *S);
    size_t nt;
    pvg_error err;
    pvg_model_recency r;
    assert_int_equal(pvg_model_recency_get(m, &r, &err), PVG_OK);
    assert_int_equal(r.on, recent);
    assert_int_equal(pvg_content_similarity(titles, n, S, &nt, &err), PVG_OK);
    double pmax = 0;
    for (size_t j = 0; j < n; j++)
        if (pop[j] > pmax) pmax = pop[j];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            /* the text-only model's popularity power, 0.5 (0.25 with the Gram) */
            double want = 0.2 * S[i * n + j] * pow((pop[j] + 1) / (pmax + 1), 0.5);
            assert_true(fabs(B[i * n + j] - want) < 1e-6);
            /* another family's items share only "model": weaker than the own family's */
            if (i != j && i / 6 == j / 6) assert_true(S[i * n + j] > 0.1);
        }
    free(S);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

static void test_ease_small_eps(void **s)
{
    (void)s;
    for (int recent = 0; recent < 2; recent++)
        ease_small_eps(recent);
}

/* DP-EASE's bound when the caller sets none: below epsilon 5 with titles
 * the model releases the buyer counts alone and bounds them as DP
 * popularity does (m 32); with the Gram, DP-EASE's own 16. The model
 * records the bound it used and its sensitivity sqrt(m) or C. */
static void test_ease_default_bound(void **s)
{
    (void)s;
    pvg_dataset *ds = shop();
    for (int big = 0; big < 2; big++) {
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(7);
        pvg_train_params p;
        pvg_train_params_default(PVG_MODEL_EASE, &p);
        p.dp_epsilon = big ? 8 : 1;
        p.dp_delta = 1e-6;
        p.dp_rng = rng;
        p.dp_allow_insecure_rng = 1;
        p.ease_lambda = 5;
        p.dp_items = ids;
        p.dp_n_items = N_ITEMS;
        p.dp_item_titles = titles;
        pvg_model *m;
        pvg_error err;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        pvg_model_dp_info di;
        assert_int_equal(pvg_model_dp_info_get(m, &di, &err), PVG_OK);
        if (big) {
            assert_int_equal(di.max_items, 16);
            assert_string_equal(di.mechanism, "dp-ease/discrete-gaussian-projected-gram+text");
        } else {
            assert_int_equal(di.max_items, 32);
            assert_true(fabs(di.sensitivity - sqrt(32.0)) < 1e-12);
            assert_string_equal(di.mechanism, "dp-ease/discrete-gaussian-popularity+text");
        }
        pvg_model_free(m);
        pvg_rng_free(rng);
    }
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
    assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-projected-gram+text");
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

/* The public basis DP-EASE projects its Gram on: with alpha 0, K D K^T is
 * D, so the basis is the unit vectors of the k most popular items, most
 * popular first; with text, its columns are orthonormal, the same in every
 * run, and a family of alike items shares its directions; bad arguments
 * are refused by name. */
static void test_gram_basis(void **s)
{
    (void)s;
    size_t n = 40, k = 5;
    float *S = calloc(n * n, sizeof *S), *pop = malloc(n * sizeof *pop);
    float *V = malloc(n * k * sizeof *V), *V2 = malloc(n * k * sizeof *V2);
    assert_non_null(S);
    assert_non_null(pop);
    assert_non_null(V);
    assert_non_null(V2);
    for (size_t i = 0; i < n; i++)
        pop[i] = (float)((i * 7) % n); /* distinct, item 17 the most popular (39) */
    pvg_error err;
    assert_int_equal(pvg_content_gram_basis(S, pop, n, k, 0, 1, 1, V, &err), PVG_OK);
    for (size_t c = 0; c < k; c++) {
        size_t top = 0; /* the item of popularity n - 1 - c */
        for (size_t i = 0; i < n; i++)
            if (pop[i] == (float)(n - 1 - c)) top = i;
        for (size_t i = 0; i < n; i++)
            assert_true(fabsf(V[i * k + c] - (i == top ? 1.0f : 0.0f)) < 1e-5f);
    }
    /* families of 8 alike items (the last family unlinked) */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            S[i * n + j] = i != j && i / 8 == j / 8 && i < 32 ? 0.4f : 0.0f;
    assert_int_equal(pvg_content_gram_basis(S, pop, n, k, 0.5, 0.5, 2, V, &err), PVG_OK);
    assert_int_equal(pvg_content_gram_basis(S, pop, n, k, 0.5, 0.5, 2, V2, &err), PVG_OK);
    assert_memory_equal(V, V2, n * k * sizeof *V);
    for (size_t a = 0; a < k; a++)
        for (size_t b = 0; b < k; b++) {
            double d = 0;
            for (size_t i = 0; i < n; i++)
                d += (double)V[i * k + a] * V[i * k + b];
            assert_true(fabs(d - (a == b ? 1.0 : 0.0)) < 1e-4);
        }
    /* K spreads each linked item over its family: the leading direction
     * puts weight on every item of a family, not on one item alone */
    size_t arg = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(V[i * k]) > fabsf(V[arg * k])) arg = i;
    assert_true(V[arg * k] > 0);
    if (arg < 32)
        for (size_t i = arg / 8 * 8; i < arg / 8 * 8 + 8; i++)
            assert_true(fabsf(V[i * k]) > 0.05f);
    assert_int_equal(pvg_content_gram_basis(S, pop, n, 0, 0.5, 0.5, 1, V, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_content_gram_basis(S, pop, n, n + 1, 0.5, 0.5, 1, V, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_content_gram_basis(S, pop, n, k, -1, 0.5, 1, V, &err), PVG_ERR_INVALID);
    pop[3] = -1;
    assert_int_equal(pvg_content_gram_basis(S, pop, n, k, 0.5, 0.5, 1, V, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "item 3"));
    free(S), free(pop), free(V), free(V2);
}

/* The upper triangle (diagonal included) of a k x k matrix, as a vector's
 * L2 distance to another's. */
static double upper_dist(const double *A, const double *B, size_t k)
{
    double d = 0;
    for (size_t i = 0; i < k; i++)
        for (size_t j = i; j < k; j++)
            d += (A[i * k + j] - B[i * k + j]) * (A[i * k + j] - B[i * k + j]);
    return sqrt(d);
}

/* DP-EASE's projected Gram (its release with text) on neighbouring
 * datasets: adding one shopper moves its upper triangle by at most C, by
 * exactly C for a heavy shopper (clipped), and by exactly w a a^T, w = 1,
 * for a light one; items outside the block and zero-weight cells add
 * nothing; a hand computation of one shopper's term. */
static void test_projected_gram_neighbours(void **s)
{
    (void)s;
    enum { NI = 30, NB = 24, K = 6, NU = 12 };
    /* the block: items 0..23 (col), 24..29 outside it */
    uint32_t col[NI];
    for (uint32_t i = 0; i < NI; i++)
        col[i] = i < NB ? i : UINT32_MAX;
    float S[NB * NB] = {0}, pop[NB], V[NB * K];
    for (size_t i = 0; i < NB; i++) {
        pop[i] = (float)(NB - i);
        for (size_t j = 0; j < NB; j++)
            S[i * NB + j] = i != j && i / 4 == j / 4 ? 0.5f : 0.0f;
    }
    pvg_error err;
    assert_int_equal(pvg_content_gram_basis(S, pop, NB, K, 0.5, 0.5, 1, V, &err), PVG_OK);
    /* shoppers 0..NU-1 with 5 items each; D adds a heavy shopper (every item,
     * outside the block too), L a light one (2 block items, one zero-weight
     * cell) */
    uint32_t ev_u[NU * 5 + NI + 3], ev_i[NU * 5 + NI + 3];
    float ev_w[NU * 5 + NI + 3];
    size_t ne = 0;
    for (uint32_t u = 0; u < NU; u++)
        for (uint32_t q = 0; q < 5; q++) {
            ev_u[ne] = u;
            ev_i[ne] = (u * 3 + q * 5) % NI;
            ev_w[ne++] = 1;
        }
    size_t base = ne;
    pvg_csr R0, RD, RL;
    assert_int_equal(pvg_csr_build(NU, NI, base, ev_u, ev_i, ev_w, NULL, &R0), PVG_OK);
    for (uint32_t i = 0; i < NI; i++) {
        ev_u[ne] = NU;
        ev_i[ne] = i;
        ev_w[ne++] = 1;
    }
    assert_int_equal(pvg_csr_build(NU + 1, NI, ne, ev_u, ev_i, ev_w, NULL, &RD), PVG_OK);
    ne = base;
    const uint32_t light[3] = {1, 9, 26}; /* 26: outside the block */
    for (int q = 0; q < 3; q++) {
        ev_u[ne] = NU;
        ev_i[ne] = light[q];
        ev_w[ne++] = 1;
    }
    ev_u[ne] = NU; /* a cell of weight 0 (no purchase): not an item of the row */
    ev_i[ne] = 5;
    ev_w[ne++] = 0;
    assert_int_equal(pvg_csr_build(NU + 1, NI, ne, ev_u, ev_i, ev_w, NULL, &RL), PVG_OK);
    const double C = sqrt(4 * 5 / 2.0); /* m = 4 */
    double Y0[K * K] = {0}, YD[K * K] = {0}, YL[K * K] = {0};
    assert_int_equal(pvg_dp_ease_projected_gram(&R0, col, V, K, C, 0, Y0, &err), PVG_OK);
    assert_int_equal(pvg_dp_ease_projected_gram(&RD, col, V, K, C, 0, YD, &err), PVG_OK);
    assert_int_equal(pvg_dp_ease_projected_gram(&RL, col, V, K, C, 0, YL, &err), PVG_OK);
    /* the heavy shopper: a = V^T 1 over 24 block items, clipped to C */
    double dD = upper_dist(YD, Y0, K);
    assert_true(dD <= C * (1 + 1e-9));
    assert_true(dD >= C * (1 - 1e-6));
    /* the light one: a = V[1] + V[9], unclipped (|a|^2 <= 2), by hand */
    double a[K], want[K * K] = {0};
    for (size_t z = 0; z < K; z++)
        a[z] = (double)V[1 * K + z] + V[9 * K + z];
    for (size_t i = 0; i < K; i++)
        for (size_t j = i; j < K; j++)
            want[i * K + j] = Y0[i * K + j] + a[i] * a[j];
    assert_true(upper_dist(YL, want, K) < 1e-9);
    assert_true(upper_dist(YL, Y0, K) <= C);
    /* a whole dataset's Y is the sum of its shoppers' terms, each <= C */
    double Y1[K * K] = {0};
    pvg_csr R1;
    assert_int_equal(pvg_csr_build(1, NI, 5, ev_u, ev_i, ev_w, NULL, &R1), PVG_OK);
    assert_int_equal(pvg_dp_ease_projected_gram(&R1, col, V, K, C, 0, Y1, &err), PVG_OK);
    double zero[K * K] = {0};
    assert_true(upper_dist(Y1, zero, K) <= C * (1 + 1e-9));
    /* on a grid g, each shopper's term is rounded before it is added, so the
     * sums are exact: the heavy shopper moves every coordinate by exactly
     * its own rounded term, whatever the others (the double sums' rounding
     * is no part of the sensitivity), and by at most C + g/2 sqrt(k(k+1)/2) */
    const double g = ldexp(1.0, -20);
    double G0[K * K] = {0}, GD[K * K] = {0}, GH[K * K] = {0};
    assert_int_equal(pvg_dp_ease_projected_gram(&R0, col, V, K, C, g, G0, &err), PVG_OK);
    assert_int_equal(pvg_dp_ease_projected_gram(&RD, col, V, K, C, g, GD, &err), PVG_OK);
    pvg_csr RH; /* the heavy shopper alone */
    uint32_t hu[NI] = {0}, hi[NI];
    float hw[NI];
    for (uint32_t i = 0; i < NI; i++) {
        hi[i] = i;
        hw[i] = 1;
    }
    assert_int_equal(pvg_csr_build(1, NI, NI, hu, hi, hw, NULL, &RH), PVG_OK);
    assert_int_equal(pvg_dp_ease_projected_gram(&RH, col, V, K, C, g, GH, &err), PVG_OK);
    /* the heavy shopper first, the others after: the same dataset */
    uint32_t fu[NU * 5 + NI], fi[NU * 5 + NI];
    float fw[NU * 5 + NI];
    for (size_t q = 0; q < NI; q++) {
        fu[q] = 0;
        fi[q] = hi[q];
        fw[q] = 1;
    }
    for (size_t q = 0; q < base; q++) {
        fu[NI + q] = ev_u[q] + 1;
        fi[NI + q] = ev_i[q];
        fw[NI + q] = ev_w[q];
    }
    pvg_csr RF;
    assert_int_equal(pvg_csr_build(NU + 1, NI, NI + base, fu, fi, fw, NULL, &RF), PVG_OK);
    double GF[K * K] = {0};
    assert_int_equal(pvg_dp_ease_projected_gram(&RF, col, V, K, C, g, GF, &err), PVG_OK);
    for (size_t i = 0; i < K; i++)
        for (size_t j = i; j < K; j++) {
            assert_true(GD[i * K + j] - G0[i * K + j] == GH[i * K + j]);
            assert_true(GF[i * K + j] - G0[i * K + j] == GH[i * K + j]);
            assert_true(GH[i * K + j] == nearbyint(GH[i * K + j] / g) * g);
        }
    pvg_csr_free(&RF);
    assert_true(upper_dist(GH, zero, K) <= C + g / 2 * sqrt(K * (K + 1) / 2.0));
    assert_true(upper_dist(GD, YD, K) <= g / 2 * 13 * sqrt(K * (K + 1) / 2.0));
    pvg_csr_free(&RH);
    pvg_csr_free(&R0), pvg_csr_free(&RD), pvg_csr_free(&RL), pvg_csr_free(&R1);
}

/* The statistic of ds the trainer adds its noise to with titles, given the
 * released popularity pop, with m items per shopper. */
static double *text_statistic(const pvg_dataset *ds, const float *pop, int m, size_t *len,
                              double *sens)
{
    pvg_csr R;
    assert_int_equal(pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item,
                                   ds->ev_w, NULL, &R),
                     PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    pvg_dp_train t;
    memset(&t, 0, sizeof t);
    t.ds = ds;
    t.vds = *ds;
    t.R = &R;
    t.p = &p;
    t.titles = titles;
    t.epsilon = 8;
    t.delta = 1e-6;
    t.max_items = m;
    t.threads = 1;
    double *v;
    pvg_error err;
    if (pvg_dp_ease_text_statistic(&t, pop, &v, len, sens, &err) != PVG_OK)
        fail_msg("%s", err.text);
    pvg_csr_free(&R);
    return v;
}

/* DP-EASE's release with titles, through the trainer's own code, on
 * neighbouring datasets: a shopper who bought every item (clipped) moves
 * it by exactly the sensitivity the trainer calibrates to, never more;
 * one who bought one item by at most that; and the trained model reports
 * that sensitivity (inflated for its grid by under 2%). */
static void test_text_release_neighbours(void **s)
{
    (void)s;
    pvg_dataset *a = shop(), *b = shop(), *c = shop();
    for (int i = 0; i < N_ITEMS; i++) {
        pvg_event e;
        memset(&e, 0, sizeof e);
        e.type = PVG_EVENT_PURCHASE;
        e.item = ids[i];
        e.ts = 2000 + i;
        assert_int_equal(pvg_dataset_add_ext(b, "heavy", &e, NULL), PVG_OK);
        if (i == 7) assert_int_equal(pvg_dataset_add_ext(c, "single", &e, NULL), PVG_OK);
    }
    assert_int_equal(a->n_items, N_ITEMS);
    float pop[N_ITEMS]; /* a released popularity: any public vector, the same on both sides */
    for (int i = 0; i < N_ITEMS; i++)
        pop[i] = (float)((i * 5) % 11);
    size_t la, lb, lc;
    double sa, sb, sc;
    double *va = text_statistic(a, pop, 4, &la, &sa), *vb = text_statistic(b, pop, 4, &lb, &sb);
    double *vc = text_statistic(c, pop, 4, &lc, &sc);
    assert_int_equal(la, (size_t)N_ITEMS * (N_ITEMS + 1) / 2); /* k = 24 <= 300 */
    assert_int_equal(lb, la);
    assert_int_equal(lc, la);
    const double C = sqrt(4 * 5 / 2.0);
    assert_true(fabs(sa - C) < 1e-12 && sb == sa && sc == sa);
    double d2 = 0, e2 = 0;
    for (size_t q = 0; q < la; q++) {
        d2 += (vb[q] - va[q]) * (vb[q] - va[q]);
        e2 += (vc[q] - va[q]) * (vc[q] - va[q]);
    }
    assert_true(sqrt(d2) <= sa * (1 + 1e-9));
    assert_true(sqrt(d2) >= sa * (1 - 1e-6)); /* clipped: the worst case is reached */
    /* one item: a = the item's row of V, |a| <= 1, unclipped */
    assert_true(sqrt(e2) > 0 && sqrt(e2) <= 1 + 1e-9);
    pvg_model *m = train(b, 8, titles, 9);
    assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-projected-gram+text");
    assert_true(m->dp.sensitivity >= sa && m->dp.sensitivity <= sa * 1.02);
    pvg_model_free(m);
    pvg_error err;
    double *v;
    size_t l;
    double sens;
    pop[5] = NAN;
    pvg_csr R;
    assert_int_equal(
        pvg_csr_build(a->n_users, a->n_items, a->n_ev, a->ev_user, a->ev_item, a->ev_w, NULL, &R),
        PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    pvg_dp_train t;
    memset(&t, 0, sizeof t);
    t.R = &R;
    t.p = &p;
    t.titles = titles;
    t.max_items = 4;
    t.threads = 1;
    assert_int_equal(pvg_dp_ease_text_statistic(&t, pop, &v, &l, &sens, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "item 5"));
    pop[5] = 1;
    t.titles = NULL; /* no text: not this release */
    assert_int_equal(pvg_dp_ease_text_statistic(&t, pop, &v, &l, &sens, &err), PVG_ERR_INVALID);
    pvg_csr_free(&R);
    free(va), free(vb), free(vc);
    pvg_dataset_free(a), pvg_dataset_free(b), pvg_dataset_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_similarity_values),
        cmocka_unit_test(test_ease_small_eps),
        cmocka_unit_test(test_ease_default_bound),
        cmocka_unit_test(test_ease_large_eps),
        cmocka_unit_test(test_row_titles_not_public),
        cmocka_unit_test(test_unlinked_titles),
        cmocka_unit_test(test_gram_basis),
        cmocka_unit_test(test_projected_gram_neighbours),
        cmocka_unit_test(test_text_release_neighbours),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
