/*
 * test_dp_train.c - DP training (src/model/dp_train.c): for each method the
 * neighbouring-dataset check of its sensitivity (one shopper with 10 m items
 * added: the statistic the noise is added to moves by exactly the
 * sensitivity the trainer calibrates to, which clipping to m makes finite),
 * the DP record of the model and of its file (old files read as not DP),
 * the public vocabulary, the refusal of the deterministic generator without
 * the opt-in, and the refusal of types without a DP trainer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/model_internal.h"
#include "privguide/dp.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_ITEMS 30
#define N_USERS 40
#define M 3

static const char *item_name(int i)
{
    static char names[N_ITEMS + 1][8];
    snprintf(names[i], sizeof names[i], "i%d", i);
    return names[i];
}

/* N_USERS shoppers with 2 to 11 items each (deterministic); heavy: one more
 * shopper holding all N_ITEMS = 10 m items, added last. */
static pvg_dataset *fixture_at(int heavy, int64_t heavy_ts);
static pvg_dataset *fixture(int heavy)
{
    return fixture_at(heavy, 2000);
}

/* fixture(heavy) with the heavy shopper's purchases at heavy_ts */
static pvg_dataset *fixture_at(int heavy, int64_t heavy_ts)
{
    pvg_dataset *ds;
    unsigned char salt[16] = {1};
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, salt, &ds, NULL), PVG_OK);
    uint64_t x = 99;
    for (int u = 0; u < N_USERS; u++) {
        char name[16];
        snprintf(name, sizeof name, "u%d", u);
        int k = 2 + u % 10;
        for (int a = 0; a < k; a++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            pvg_event e;
            memset(&e, 0, sizeof e);
            e.type = PVG_EVENT_PURCHASE;
            e.item = item_name((int)((x >> 33) % N_ITEMS));
            e.ts = 1000 + a;
            assert_int_equal(pvg_dataset_add_ext(ds, name, &e, NULL), PVG_OK);
        }
    }
    if (heavy)
        for (int i = 0; i < N_ITEMS; i++) {
            pvg_event e;
            memset(&e, 0, sizeof e);
            e.type = PVG_EVENT_PURCHASE;
            e.item = item_name(i);
            e.ts = heavy_ts;
            assert_int_equal(pvg_dataset_add_ext(ds, "heavy", &e, NULL), PVG_OK);
        }
    return ds;
}

static void params(pvg_model_type t, pvg_train_params *p, pvg_rng *rng)
{
    pvg_train_params_default(t, p);
    p->dp_epsilon = 2;
    p->dp_delta = 1e-6;
    p->dp_max_items = M;
    p->dp_rng = rng;
    p->dp_allow_insecure_rng = 1;
    p->ease_lambda = 5;
    p->neighbors = 10;
}

/* The trainer's context over ds and its matrix R with parameters p, noise
 * rng and bound m, as pvg_train_dp fills it (no vocabulary restriction). */
static void dp_ctx(pvg_dp_train *t, const pvg_dataset *ds, const pvg_csr *R,
                   const pvg_train_params *p, pvg_rng *rng, int m)
{
    memset(t, 0, sizeof *t);
    t->ds = ds;
    t->vds = *ds;
    t->R = R;
    t->p = p;
    t->rng = rng;
    t->epsilon = p->dp_epsilon;
    t->delta = p->dp_delta;
    t->max_items = m;
    t->threads = 1;
}

/* The statistic before noise of ds under a fresh generator of this seed. */
static double *statistic(const pvg_dataset *ds, pvg_model_type type, int m, size_t *len,
                         double *sens)
{
    pvg_csr R;
    assert_int_equal(pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item,
                                   ds->ev_w, NULL, &R),
                     PVG_OK);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    pvg_train_params p;
    params(type, &p, rng);
    pvg_dp_train t;
    dp_ctx(&t, ds, &R, &p, rng, m);
    double *v;
    pvg_error err;
    assert_int_equal(pvg_dp_statistic(&t, type, &v, len, sens, &err), PVG_OK);
    pvg_rng_free(rng);
    pvg_csr_free(&R);
    return v;
}

/* Neighbouring datasets: the heavy shopper's 30 items are clipped to m, so
 * the statistic moves by exactly the worst case the code calibrates to
 * (sqrt(m) for the item counts, sqrt(m(m+1)/2) for the Gram's upper
 * triangle); without the clipping it would move by sqrt(30) or sqrt(465). */
static void neighbours(pvg_model_type type, double want)
{
    pvg_dataset *a = fixture(0), *b = fixture(1);
    assert_int_equal(a->n_items, N_ITEMS);
    assert_int_equal(b->n_items, N_ITEMS);
    size_t la, lb;
    double sa, sb;
    double *va = statistic(a, type, M, &la, &sa), *vb = statistic(b, type, M, &lb, &sb);
    assert_int_equal(la, lb);
    assert_true(fabs(sa - want) < 1e-12 && fabs(sb - want) < 1e-12);
    /* the heavy shopper's weight in DP-EASE's Gram: all 30 items, scaled so
     * that the upper triangle moves by sqrt(m(m+1)/2) */
    double w = type == PVG_MODEL_EASE ? sqrt(M * (M + 1.0) / (30.0 * 31.0)) : 1.0;
    double d2 = 0, l1 = 0;
    size_t moved = 0;
    for (size_t i = 0; i < la; i++) {
        double d = vb[i] - va[i];
        assert_true(d == 0 || fabs(d - w) < 1e-12); /* one shopper adds, by w at most */
        d2 += d * d;
        l1 += fabs(d);
        moved += d != 0;
    }
    /* counts and co-occurrences: a random m-subset; EASE: every item */
    if (type == PVG_MODEL_EASE)
        assert_int_equal(moved, 30 * 31 / 2);
    else
        assert_true(moved == M || moved == M * (M + 1) / 2);
    assert_true(sqrt(d2) <= sa * (1 + 1e-12));
    assert_true(fabs(sqrt(d2) - sa) < 1e-9); /* the worst case is reached */
    /* the trainer calibrates to the same figure */
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    pvg_train_params p;
    params(type, &p, rng);
    const char *ids[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++)
        ids[i] = item_name(i);
    p.dp_items = ids;
    p.dp_n_items = N_ITEMS;
    pvg_model *m;
    pvg_error err;
    assert_int_equal(pvg_model_train(b, &p, &m, NULL, &err), PVG_OK);
    if (type == PVG_MODEL_EASE) /* inflated for the rounding to its grid, by under 2% */
        assert_true(m->dp.sensitivity >= sa && m->dp.sensitivity <= sa * 1.02);
    else
        assert_true(fabs(m->dp.sensitivity - sa) < 1e-12);
    assert_int_equal(m->dp.max_items, M);
    assert_true(m->dp.epsilon > 0 && m->dp.epsilon <= 2 + 1e-12);
    assert_true(fabs(m->dp.delta - 1e-6) < 1e-18);
    assert_true(m->dp.noise_multiplier > 0.5);
    pvg_model_free(m);
    pvg_rng_free(rng);
    free(va);
    free(vb);
    pvg_dataset_free(a);
    pvg_dataset_free(b);
}

static void test_popularity_sensitivity(void **s)
{
    (void)s;
    neighbours(PVG_MODEL_POPULARITY, sqrt(M));
}

static void test_itemknn_sensitivity(void **s)
{
    (void)s;
    neighbours(PVG_MODEL_ITEMKNN, sqrt(M * (M + 1) / 2.0));
}

static void test_ease_sensitivity(void **s)
{
    (void)s;
    neighbours(PVG_MODEL_EASE, sqrt(M * (M + 1) / 2.0));
}

/* Clipping draws a uniformly random m-subset: every item of the heavy
 * shopper is kept sometimes, never more than m at once. */
static void test_bounding_uniform(void **s)
{
    (void)s;
    pvg_dataset *b = fixture(1);
    int seen[N_ITEMS] = {0};
    for (int rep = 0; rep < 200; rep++) {
        pvg_csr R, X;
        assert_int_equal(pvg_csr_build(b->n_users, b->n_items, b->n_ev, b->ev_user, b->ev_item,
                                       b->ev_w, NULL, &R),
                         PVG_OK);
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(100 + (uint64_t)rep);
        pvg_dp_train t;
        memset(&t, 0, sizeof t);
        t.R = &R;
        t.rng = rng;
        t.max_items = M;
        pvg_error err;
        assert_int_equal(pvg_dp_bound_rows(&t, &X, &err), PVG_OK);
        for (size_t u = 0; u < X.n_rows; u++) {
            assert_true(X.indptr[u + 1] - X.indptr[u] <= M);
            for (uint64_t q = X.indptr[u]; q < X.indptr[u + 1]; q++)
                assert_true(X.data[q] == 1.0f);
        }
        size_t h = X.n_rows - 1;
        assert_int_equal(X.indptr[h + 1] - X.indptr[h], M);
        for (uint64_t q = X.indptr[h]; q < X.indptr[h + 1]; q++)
            seen[X.indices[q]]++;
        pvg_csr_free(&X);
        pvg_csr_free(&R);
        pvg_rng_free(rng);
    }
    for (int i = 0; i < N_ITEMS; i++)
        assert_true(seen[i] > 3 && seen[i] < 45); /* mean 20 */
    pvg_dataset_free(b);
}

static void test_rng_and_parameters(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(0);
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    pvg_train_params p;
    params(PVG_MODEL_POPULARITY, &p, det);
    const char *ids[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++)
        ids[i] = item_name(i);
    p.dp_items = ids;
    p.dp_n_items = N_ITEMS;
    pvg_model *m = NULL;
    pvg_error err;
    p.dp_allow_insecure_rng = 0; /* the deterministic generator without the opt-in */
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_POLICY);
    assert_null(m);
    p.dp_allow_insecure_rng = 1;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    pvg_model_free(m);
    p.dp_rng = NULL; /* a CSPRNG of its own */
    p.dp_allow_insecure_rng = 0;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    pvg_model_free(m);
    /* types without a DP trainer are refused by name */
    pvg_train_params q = p;
    q.type = PVG_MODEL_BPR;
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.text, "bpr"));
    /* parameters */
    q = p;
    q.type = PVG_MODEL_EASE;
    q.dp_delta = 0; /* Gaussian: delta in (0,1) */
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_ERR_INVALID);
    q = p;
    q.dp_delta = 1;
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_ERR_INVALID);
    q = p;
    q.dp_epsilon = 0;
    q.dp_noise_multiplier = 2; /* DP knobs without epsilon */
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_ERR_INVALID);
    q = p;
    q.dp_noise_multiplier = 0.01; /* gives far more epsilon than asked */
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_ERR_INVALID);
    q = p;
    q.dp_noise_multiplier = 20; /* less: the record says what it gives */
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_OK);
    assert_true(m->dp.epsilon < 2 && m->dp.epsilon > 0);
    assert_true(fabs(m->dp.noise_multiplier - 20) < 0.5);
    pvg_model_free(m);
    /* pure DP (delta 0): Laplace */
    q = p;
    q.dp_rng = det;
    q.dp_allow_insecure_rng = 1;
    q.dp_delta = 0;
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_OK);
    assert_non_null(strstr(m->dp.mechanism, "laplace"));
    assert_true(m->dp.delta == 0 && fabs(m->dp.sensitivity - M) < 1e-12);
    pvg_model_free(m);
    pvg_rng_free(det);
    pvg_dataset_free(ds);
}

/* DP-EASE releases two Gaussian mechanisms (the popularity, then the
 * weighted Gram) composed in zCDP: the model records the composed epsilon,
 * which spends the budget (a record of only one of them would be below it)
 * and never exceeds it, on both sides of the small-epsilon switch of the
 * budget split. */
static void test_ease_composition(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    const char *ids[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++)
        ids[i] = item_name(i);
    const double eps[] = {0.5, 1, 2, 8};
    for (size_t k = 0; k < sizeof eps / sizeof *eps; k++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(21 + k);
        pvg_train_params p;
        params(PVG_MODEL_EASE, &p, det);
        p.dp_epsilon = eps[k];
        p.dp_items = ids;
        p.dp_n_items = N_ITEMS;
        pvg_model *m;
        pvg_error err;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        assert_true(m->dp.epsilon <= eps[k] * (1 + 1e-9));
        assert_true(m->dp.epsilon >= eps[k] * 0.995);
        assert_true(fabs(m->dp.delta - 1e-6) < 1e-18);
        assert_non_null(strstr(m->dp.mechanism, "dp-ease/"));
        pvg_model_free(m);
        pvg_rng_free(det);
    }
    pvg_dataset_free(ds);
}

/* ds's matrix into *R (new) and each cell's last purchase before now
 * (new, R->nnz), as the trainer computes them. */
static int64_t *cells_last(const pvg_dataset *ds, int64_t now, pvg_csr *R)
{
    assert_int_equal(pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item,
                                   ds->ev_w, NULL, R),
                     PVG_OK);
    int64_t *last = malloc((R->nnz ? R->nnz : 1) * sizeof *last);
    assert_non_null(last);
    pvg_error err;
    assert_int_equal(pvg_recency_last(ds, R, now, last, &err), PVG_OK);
    return last;
}

/* DP-EASE's recent buyers' counts (recency) before their noise, from ds
 * as the trainer computes them: the cells' last purchases before now, the
 * window of `days`, each shopper's m items at most (unit: all of them at
 * 1/sqrt(k), recent_pop_unit). */
static double *recent_statistic_u(const pvg_dataset *ds, int64_t now, double days, int unit,
                                  size_t *len, double *sens)
{
    pvg_csr R;
    int64_t *last = cells_last(ds, now, &R);
    pvg_error err;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    pvg_train_params p;
    params(PVG_MODEL_EASE, &p, rng);
    p.recent_pop_days = days;
    p.recent_pop_beta = 1;
    p.recent_pop_unit = unit;
    pvg_dp_train t;
    dp_ctx(&t, ds, &R, &p, rng, M);
    t.last = last;
    t.now = now;
    double *v;
    assert_int_equal(pvg_dp_ease_recent_statistic(&t, &v, len, sens, &err), PVG_OK);
    pvg_rng_free(rng);
    free(last);
    pvg_csr_free(&R);
    return v;
}

static double *recent_statistic(const pvg_dataset *ds, int64_t now, double days, size_t *len,
                                double *sens)
{
    return recent_statistic_u(ds, now, days, 0, len, sens);
}

/* Neighbouring datasets for the recent buyers' release: a shopper who
 * bought all 10 m items inside the window moves the counts by exactly
 * sqrt(m), the sensitivity the trainer calibrates to (m counts by 1); the
 * same shopper's purchases before the window, or at or after the present,
 * move nothing. Fails without the bound to m (sqrt(30)) or without the
 * window. */
static void test_ease_recent_sensitivity(void **s)
{
    (void)s;
    const int64_t now = 2001;
    pvg_dataset *a = fixture(0), *b = fixture_at(1, 2000), *old = fixture_at(1, 2000 - 30 * 86400),
                *later = fixture_at(1, now);
    size_t la, lb, lo, ll;
    double sa, sb, so, sl;
    double *va = recent_statistic(a, now, 7, &la, &sa), *vb = recent_statistic(b, now, 7, &lb, &sb),
           *vo = recent_statistic(old, now, 7, &lo, &so),
           *vl = recent_statistic(later, now, 7, &ll, &sl);
    assert_int_equal(la, N_ITEMS);
    assert_true(lb == la && lo == la && ll == la);
    assert_true(fabs(sa - sqrt(M)) < 1e-12 && sb == sa && so == sa && sl == sa);
    double d2 = 0;
    size_t moved = 0;
    for (size_t i = 0; i < la; i++) {
        double d = vb[i] - va[i];
        assert_true(d == 0 || d == 1);
        d2 += d * d;
        moved += d != 0;
        assert_true(vo[i] == va[i]);
        assert_true(vl[i] == va[i]);
    }
    assert_int_equal(moved, M);
    assert_true(fabs(sqrt(d2) - sa) < 1e-12);
    /* the same shopper buying every item three more times in the window
     * (and once after the present): each item still counts once */
    pvg_dataset *re = fixture_at(1, 2000);
    for (int i = 0; i < N_ITEMS; i++)
        for (int r = 0; r < 4; r++) {
            pvg_event e;
            memset(&e, 0, sizeof e);
            e.type = PVG_EVENT_PURCHASE;
            e.item = item_name(i);
            e.ts = r < 3 ? 1990 + r : now + 5;
            assert_int_equal(pvg_dataset_add_ext(re, "heavy", &e, NULL), PVG_OK);
        }
    size_t lr;
    double sr;
    double *vr = recent_statistic(re, now, 7, &lr, &sr);
    assert_int_equal(lr, la);
    for (size_t i = 0; i < la; i++)
        assert_true(vr[i] == vb[i]);
    free(vr);
    pvg_dataset_free(re);
    free(va), free(vb), free(vo), free(vl);
    pvg_dataset_free(a), pvg_dataset_free(b), pvg_dataset_free(old), pvg_dataset_free(later);
}

static void recency_text_params(pvg_train_params *p, pvg_rng *det, const char **ids,
                                const char **titles, char tb[][32]);

/* The text-only model's statistics on ds (recent buyers' window: days
 * before now; unit rows with unit; bound m, 0: the trainer's default). */
static double *text_only_statistic(const pvg_dataset *ds, int m, int64_t now, double days, int unit,
                                   size_t *len, double sens[2], int *bound)
{
    pvg_csr R;
    int64_t *last = cells_last(ds, now, &R);
    pvg_error err;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    pvg_train_params p;
    params(PVG_MODEL_EASE, &p, rng);
    p.dp_max_items = m;
    p.recent_pop_days = days;
    p.recent_pop_beta = days > 0 ? 1 : 0;
    p.recent_pop_unit = unit;
    pvg_dp_train t;
    dp_ctx(&t, ds, &R, &p, rng,
           m ? m : 16); /* as pvg_train_dp: the caller's, or DP-EASE's default */
    t.last = days > 0 ? last : NULL;
    t.now = now;
    double *v;
    assert_int_equal(pvg_dp_ease_text_only_statistic(&t, &v, len, sens, &err), PVG_OK);
    *bound = t.max_items;
    pvg_rng_free(rng);
    free(last);
    pvg_csr_free(&R);
    return v;
}

/* DP-EASE's text-only model trained on ds by the trainer's own code at
 * epsilon eps (noise multiplier nm, 0: none) with titles linking the items
 * and the recent buyers of the last days before now: share of rho, unit
 * rows or bounded counts, or (share < 0) the recency defaults. The noise
 * std of its two releases (pvg_dp_train.text_only_sigma) into sigma, the
 * bound it used into *m, the share and unit rows it ran with into
 * *share_out and *unit_out. */
static void text_only_trained(const pvg_dataset *ds, double eps, double nm, double share, int unit,
                              int64_t now, double sigma[2], int *m, double *share_out,
                              int *unit_out)
{
    static const char *const colour[] = {"red", "blue", "green", "pink", "white", "black"};
    pvg_csr R;
    int64_t *last = cells_last(ds, now, &R);
    pvg_error err;
    /* titles by the dataset's item order (the columns of R) */
    const char *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    assert_int_equal(ds->n_items, N_ITEMS);
    for (size_t i = 0; i < N_ITEMS; i++) {
        snprintf(tb[i], sizeof tb[i], "%s lantern", colour[atoi(ds->item_ids[i] + 1) % 6]);
        titles[i] = tb[i];
    }
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(45);
    pvg_train_params p;
    params(PVG_MODEL_EASE, &p, rng);
    p.dp_epsilon = eps;
    p.dp_noise_multiplier = nm;
    p.dp_max_items = 0;
    if (share < 0) {
        pvg_train_params_recency_default(&p, now);
    } else {
        p.recency_now = now;
        p.recent_pop_days = 60;
        p.recent_pop_beta = 8;
        p.recent_pop_share = share;
        p.recent_pop_unit = unit;
    }
    *share_out = p.recent_pop_share;
    *unit_out = p.recent_pop_unit;
    pvg_dp_train t;
    dp_ctx(&t, ds, &R, &p, rng, 16); /* as pvg_train_dp: DP-EASE's default m */
    t.titles = titles;
    t.last = last;
    t.now = now;
    pvg_model *md = NULL;
    assert_int_equal(pvg_train_dp_ease(&t, &md, &err), PVG_OK);
    assert_string_equal(t.rep.mechanism, "dp-ease/discrete-gaussian-pop+recent+text");
    sigma[0] = t.text_only_sigma[0];
    sigma[1] = t.text_only_sigma[1];
    *m = t.max_items;
    pvg_model_free(md);
    pvg_rng_free(rng);
    free(last);
    pvg_csr_free(&R);
}

/* Neighbouring datasets for DP-EASE's text-only model (epsilon < 5 with
 * text) and its recent buyers' release: the heavy shopper (all 30 items,
 * inside the window) moves the popularity block by sqrt(min(30, m)) and the
 * recent block by as much (bounded counts) or by exactly 1 (unit rows),
 * each within the sensitivity its noise is calibrated to; with m 3 both
 * bounds are met exactly (m counts by 1). The bound is DP popularity's 32
 * unless the caller set one, and the trained model records that bound and
 * sqrt(32): the statistic and the noise use one m. The same shopper's
 * purchases before the window move the popularity only. The trainer's
 * noise on each release, against those sensitivities: the two releases'
 * rho add up within the epsilon the method runs at, each at its share, at
 * the recency defaults (unit rows at 90% of rho) and at other shares,
 * with bounded counts and with a noise multiplier (fails when either
 * release is calibrated to a smaller sensitivity than it has). */
static void test_ease_text_only_sensitivity(void **s)
{
    (void)s;
    /* the other shoppers' purchases (at 1000..1011) fall before the window,
     * so the bound's random subsets of theirs (drawn before the heavy
     * shopper's) are the same on both datasets */
    const int64_t now = 1012 + 7 * 86400;
    for (int m = 0; m <= M; m += M)
        for (int unit = 0; unit < 2; unit++) {
            pvg_dataset *a = fixture(0), *b = fixture_at(1, now - 1),
                        *old = fixture_at(1, now - 30 * 86400);
            size_t la, lb, lo;
            double sa[2], sb[2], so[2];
            int ma, mb, mo;
            double *va = text_only_statistic(a, m, now, 7, unit, &la, sa, &ma),
                   *vb = text_only_statistic(b, m, now, 7, unit, &lb, sb, &mb),
                   *vo = text_only_statistic(old, m, now, 7, unit, &lo, so, &mo);
            int want_m = m ? m : 32;
            assert_true(ma == want_m && mb == want_m && mo == want_m);
            assert_true(la == 2 * N_ITEMS && lb == la && lo == la);
            assert_true(fabs(sa[0] - sqrt(want_m)) < 1e-12 && sb[0] == sa[0] && so[0] == sa[0]);
            assert_true(sa[1] == (unit ? 1.0 : sqrt(want_m)) && sb[1] == sa[1] && so[1] == sa[1]);
            int kept = want_m < N_ITEMS ? want_m : N_ITEMS;
            double d2[2] = {0, 0}, o2[2] = {0, 0};
            for (size_t i = 0; i < la; i++) {
                int blk = i >= N_ITEMS;
                double d = vb[i] - va[i], e = vo[i] - va[i];
                double step = blk && unit ? 1.0 / sqrt((double)N_ITEMS) : 1.0;
                assert_true(d == 0 || fabs(d - step) < 1e-12);
                d2[blk] += d * d;
                o2[blk] += e * e;
            }
            assert_true(fabs(sqrt(d2[0]) - sqrt(kept)) < 1e-12 && sqrt(d2[0]) <= sa[0] + 1e-12);
            assert_true(fabs(sqrt(d2[1]) - (unit ? 1.0 : sqrt(kept))) < 1e-12 &&
                        sqrt(d2[1]) <= sa[1] + 1e-12);
            if (m) assert_true(fabs(sqrt(d2[0]) - sa[0]) < 1e-12); /* the bound is met */
            /* before the window: the year's counts move, the recent ones not */
            assert_true(fabs(sqrt(o2[0]) - sqrt(kept)) < 1e-12 && o2[1] == 0);
            free(va), free(vb), free(vo);
            pvg_dataset_free(a), pvg_dataset_free(b), pvg_dataset_free(old);
        }
    /* the trained model's bound and sensitivity are the statistic's */
    pvg_dataset *ds = fixture(1);
    const char *ids[N_ITEMS], *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(44);
    pvg_train_params p;
    recency_text_params(&p, det, ids, titles, tb);
    p.dp_epsilon = 2;
    p.dp_max_items = 0;
    pvg_train_params_recency_default(&p, 2001);
    pvg_model *m;
    pvg_error err;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    /* with the recent buyers, the record states the two releases'
     * composition as one Gaussian of sensitivity 1 with the same rho: its
     * noise multiplier gives back the recorded epsilon */
    assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-pop+recent+text");
    assert_int_equal(m->dp.max_items, 32);
    assert_true(m->dp.sensitivity == 1 && m->dp.clip == 1);
    double nm1 = m->dp.noise_multiplier;
    assert_true(fabs(pvg_dp_zcdp_to_epsilon(1 / (2 * nm1 * nm1), m->dp.delta) - m->dp.epsilon) <
                1e-9 * m->dp.epsilon);
    pvg_model_free(m);
    pvg_rng_free(det);
    /* the noise of each release against the sensitivities measured above
     * (m 32: the buyer counts sqrt(32); the recent buyers' 1 with unit
     * rows, sqrt(32) with bounded counts); share -1: the defaults */
    const struct {
        double eps, nm, share;
        int unit;
    } run[] = {
        {2, 0, -1, 0},    {4.9, 0, -1, 0}, {0.2, 0, -1, 0}, {2, 0, 0.9, 0},   {2, 0, 0.3, 1},
        {2, 0, 0.999, 1}, {2, 0, 0.01, 1}, {8, 1.5, -1, 0}, {8, 1.5, 0.6, 0},
    };
    for (size_t r = 0; r < sizeof run / sizeof *run; r++) {
        double sig[2], share;
        int bound, unit;
        text_only_trained(ds, run[r].eps, run[r].nm, run[r].share, run[r].unit, 2001, sig, &bound,
                          &share, &unit);
        assert_int_equal(bound, 32);
        assert_true(sig[0] > 0 && sig[1] > 0);
        double s1 = unit ? 1.0 : sqrt(32.0);
        double rho0 = 32.0 / (2 * sig[0] * sig[0]), rho1 = s1 * s1 / (2 * sig[1] * sig[1]);
        double eps_m = run[r].nm > 0 ? pvg_dp_zcdp_to_epsilon(1 / (2 * run[r].nm * run[r].nm), 1e-6)
                                     : run[r].eps;
        double e = pvg_dp_zcdp_to_epsilon(rho0 + rho1, 1e-6);
        if (!(e <= eps_m * (1 + 1e-9) && e >= eps_m * 0.99 &&
              fabs(rho1 / (rho0 + rho1) - share) < 0.01 * share))
            fail_msg("eps %g nm %g share %g unit %d: the releases' rho %g + %g give epsilon %.9g "
                     "for %.9g (recent share %g)",
                     run[r].eps, run[r].nm, share, unit, rho0, rho1, e, eps_m,
                     rho1 / (rho0 + rho1));
    }
    pvg_dataset_free(ds);
}

/* Neighbouring datasets for the unit-norm recent buyers' release
 * (recent_pop_unit): the worst case, a shopper who bought all 10 m items
 * inside the window, moves the statistic by exactly 1 in L2 (each item by
 * 1/sqrt(10 m)), the sensitivity the trainer calibrates to; a shopper
 * with a single recent item moves that item by 1; purchases before the
 * window, at or after the present, or repeated, move nothing more. Fails
 * with the rows unscaled (sqrt(30)) or scaled by the history's size
 * instead of the window's. */
static void test_ease_recent_unit_sensitivity(void **s)
{
    (void)s;
    const int64_t now = 2001;
    pvg_dataset *a = fixture(0), *b = fixture_at(1, 2000), *old = fixture_at(1, 2000 - 30 * 86400),
                *later = fixture_at(1, now);
    size_t la, lb, lo, ll;
    double sa, sb, so, sl;
    double *va = recent_statistic_u(a, now, 7, 1, &la, &sa),
           *vb = recent_statistic_u(b, now, 7, 1, &lb, &sb),
           *vo = recent_statistic_u(old, now, 7, 1, &lo, &so),
           *vl = recent_statistic_u(later, now, 7, 1, &ll, &sl);
    assert_int_equal(la, N_ITEMS);
    assert_true(lb == la && lo == la && ll == la);
    assert_true(sa == 1.0 && sb == 1.0 && so == 1.0 && sl == 1.0);
    double d2 = 0;
    for (size_t i = 0; i < la; i++) {
        double d = vb[i] - va[i];
        assert_true(fabs(d - 1.0 / sqrt((double)N_ITEMS)) < 1e-12);
        d2 += d * d;
        assert_true(vo[i] == va[i]);
        assert_true(vl[i] == va[i]);
    }
    assert_true(fabs(sqrt(d2) - sb) < 1e-12);
    /* one recent item among many old ones (and re-buys of it): that item
     * moves by 1, the old ones by nothing */
    pvg_dataset *one = fixture_at(1, 2000 - 30 * 86400);
    for (int r = 0; r < 3; r++) {
        pvg_event e;
        memset(&e, 0, sizeof e);
        e.type = PVG_EVENT_PURCHASE;
        e.item = item_name(4);
        e.ts = 1995 + r;
        assert_int_equal(pvg_dataset_add_ext(one, "heavy", &e, NULL), PVG_OK);
    }
    size_t l1;
    double s1;
    double *v1 = recent_statistic_u(one, now, 7, 1, &l1, &s1);
    assert_int_equal(l1, la);
    size_t i4 = la;
    for (size_t i = 0; i < one->n_items; i++)
        if (strcmp(one->item_ids[i], item_name(4)) == 0) i4 = i;
    assert_true(i4 < la && strcmp(a->item_ids[i4], item_name(4)) == 0);
    for (size_t i = 0; i < la; i++)
        assert_true(fabs(v1[i] - va[i] - (i == i4 ? 1.0 : 0.0)) < 1e-12);
    free(v1);
    pvg_dataset_free(one);
    free(va), free(vb), free(vo), free(vl);
    pvg_dataset_free(a), pvg_dataset_free(b), pvg_dataset_free(old), pvg_dataset_free(later);
}

/* DP-EASE with recency (titles linking items, eps >= 5): the recent
 * buyers' release composes with the two others inside the requested
 * (epsilon, delta), the whole budget spent as without it; the Gram's
 * recency weights leave the sensitivity as it was; refused where there is
 * no projected release (below eps 5, no text) and for other methods. */
static void test_ease_recency_composition(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    static const char *const colour[] = {"red", "blue", "green", "pink", "white", "black"};
    const char *ids[N_ITEMS], *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    for (int i = 0; i < N_ITEMS; i++) {
        ids[i] = item_name(i);
        snprintf(tb[i], sizeof tb[i], "%s lantern", colour[i % 6]);
        titles[i] = tb[i];
    }
    double eps_plain = 0, sens_plain = 0;
    for (int rec = 0; rec < 3; rec++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(31);
        pvg_train_params p;
        params(PVG_MODEL_EASE, &p, det);
        p.dp_epsilon = 8;
        p.dp_items = ids;
        p.dp_item_titles = titles;
        p.dp_n_items = N_ITEMS;
        if (rec) {
            p.recency_now = 2001; /* public: not derived from the data */
            p.recency_halflife_days = 1e-3;
            p.recent_pop_days = 7;
            p.recent_pop_beta = 1;
            p.recent_pop_share = 0.1;
            p.recent_pop_unit = rec == 2; /* the unit-norm release: sensitivity 1 */
        }
        pvg_model *m;
        pvg_error err;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-projected-gram+text");
        assert_true(m->dp.epsilon <= 8 * (1 + 1e-9));
        assert_true(m->dp.epsilon >= 8 * 0.995);
        if (!rec) {
            eps_plain = m->dp.epsilon;
            sens_plain = m->dp.sensitivity;
        } else {
            assert_true(fabs(m->dp.epsilon - eps_plain) < 0.005 * 8);
            /* the Gram's bound is unchanged; its share of rho smaller */
            assert_true(fabs(m->dp.sensitivity - sens_plain) < 0.02 * sens_plain);
        }
        pvg_model_free(m);
        pvg_rng_free(det);
    }
    /* no projected release: refused, never silently ignored */
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(32);
    pvg_train_params p;
    params(PVG_MODEL_EASE, &p, det);
    p.dp_items = ids;
    p.dp_item_titles = titles;
    p.dp_n_items = N_ITEMS;
    p.recency_now = 2001;
    p.recency_halflife_days = 30;
    pvg_model *m = NULL;
    pvg_error err;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_UNSUPPORTED); /* eps 2 */
    assert_non_null(strstr(err.text, "recency"));
    /* the text-only model takes the recent buyers' release alone, within
     * the requested epsilon */
    p.recency_halflife_days = 0;
    p.recent_pop_days = 30;
    p.recent_pop_beta = 1;
    p.recent_pop_share = 0.3;
    for (int unit = 0; unit < 2; unit++) {
        p.recent_pop_unit = unit;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        assert_true(m->dp.epsilon <= 2 * (1 + 1e-9) && m->dp.epsilon >= 2 * 0.995);
        pvg_model_free(m);
        m = NULL;
    }
    p.recent_pop_days = p.recent_pop_beta = p.recent_pop_share = 0;
    p.recent_pop_unit = 0;
    p.recency_halflife_days = 30;
    p.dp_epsilon = 8;
    p.dp_item_titles = NULL;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_UNSUPPORTED);
    params(PVG_MODEL_POPULARITY, &p, det);
    p.dp_items = ids;
    p.dp_n_items = N_ITEMS;
    p.recent_pop_days = 7;
    p.recent_pop_beta = 1;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_UNSUPPORTED);
    assert_null(m);
    pvg_rng_free(det);
    pvg_dataset_free(ds);
}

/* The text-linked DP-EASE parameters with recency of test_ease_recency_composition */
static void recency_text_params(pvg_train_params *p, pvg_rng *det, const char **ids,
                                const char **titles, char tb[][32])
{
    static const char *const colour[] = {"red", "blue", "green", "pink", "white", "black"};
    for (int i = 0; i < N_ITEMS; i++) {
        ids[i] = item_name(i);
        snprintf(tb[i], 32, "%s lantern", colour[i % 6]);
        titles[i] = tb[i];
    }
    params(PVG_MODEL_EASE, p, det);
    p->dp_epsilon = 8;
    p->dp_items = ids;
    p->dp_item_titles = titles;
    p->dp_n_items = N_ITEMS;
}

/* The unit-norm rows at the window's edges: a shopper with one purchase
 * exactly at the window's start (included), one inside, one a second
 * before the start and one at the present (both excluded) moves the
 * statistic by 1/sqrt(2) on each of the two included items, exactly 1 in
 * L2. Fails if the count k and the rows' cells disagree on either edge
 * (a row of norm sqrt(2)). */
static void test_ease_recent_unit_window_edges(void **s)
{
    (void)s;
    const int64_t now = 2001, from = now - 7 * 86400;
    pvg_dataset *a = fixture(0), *b = fixture(0);
    const struct {
        int item;
        int64_t ts;
    } ev[] = {{3, from}, {5, now - 1}, {7, from - 1}, {9, now}};
    for (size_t r = 0; r < sizeof ev / sizeof ev[0]; r++) {
        pvg_event e;
        memset(&e, 0, sizeof e);
        e.type = PVG_EVENT_PURCHASE;
        e.item = item_name(ev[r].item);
        e.ts = ev[r].ts;
        assert_int_equal(pvg_dataset_add_ext(b, "edge", &e, NULL), PVG_OK);
    }
    size_t la, lb;
    double sa, sb;
    double *va = recent_statistic_u(a, now, 7, 1, &la, &sa),
           *vb = recent_statistic_u(b, now, 7, 1, &lb, &sb);
    assert_int_equal(la, lb);
    double d2 = 0;
    for (size_t i = 0; i < la; i++) {
        double d = vb[i] - va[i];
        int in =
            strcmp(b->item_ids[i], item_name(3)) == 0 || strcmp(b->item_ids[i], item_name(5)) == 0;
        assert_true(fabs(d - (in ? 1 / sqrt(2.0) : 0.0)) < 1e-12);
        d2 += d * d;
    }
    assert_true(fabs(sqrt(d2) - 1.0) < 1e-12);
    assert_true(sb == 1.0);
    free(va), free(vb);
    pvg_dataset_free(a), pvg_dataset_free(b);
}

/* A NaN epsilon is refused, naming the field, never trained without DP:
 * NaN is neither <= 0 nor > 0, so without its own check a library caller
 * asking for DP (here with the recency terms, recent_pop_unit out of
 * range) got non-private EASE, the recency parameters unchecked. */
static void test_dp_epsilon_nan_refused(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(58);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    p.dp_rng = det;
    p.dp_allow_insecure_rng = 1;
    p.dp_epsilon = NAN;
    p.recency_now = 2001;
    p.recent_pop_days = 7;
    p.recent_pop_beta = 1;
    p.recent_pop_unit = 5;
    pvg_model *m = NULL;
    pvg_error err;
    pvg_status st = pvg_model_train(ds, &p, &m, NULL, &err);
    int trained = m != NULL;
    pvg_model_free(m);
    assert_false(trained);
    assert_int_equal(st, PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "dp_epsilon"));
    pvg_rng_free(det);
    pvg_dataset_free(ds);
}

/* The unit-norm recent buyers' counts leave the trainer noised: with a
 * window holding only the heavy shopper's purchases, the exact counts are
 * 1/sqrt(30) on every item, so without noise the blend adds the same
 * amount to every off-diagonal cell of B. Two runs from one seed that
 * differ only in recent_pop_beta (1 and 2) share B before the blend, and
 * their difference is rms(B) r_j / max r per column j: it must vary
 * across columns (a discrete Gaussian of sigma ~2 on counts of 0.18).
 * Fails if the release skips its noise. */
static void test_ease_recent_unit_noised(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    const char *ids[N_ITEMS], *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    float *Bs[2] = {NULL, NULL};
    size_t n = 0;
    for (int b = 0; b < 2; b++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(57);
        pvg_train_params p;
        recency_text_params(&p, det, ids, titles, tb);
        p.recency_now = 2001;
        p.recent_pop_days = 0.005; /* [1569, 2001): the heavy shopper's purchases only */
        p.recent_pop_beta = 1 + b;
        p.recent_pop_share = 0.1;
        p.recent_pop_unit = 1;
        pvg_model *m = NULL;
        pvg_error err;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        assert_non_null(m->ease_B);
        n = m->n_items;
        assert_int_equal(n, N_ITEMS);
        Bs[b] = malloc(n * n * sizeof *Bs[b]);
        assert_non_null(Bs[b]);
        memcpy(Bs[b], m->ease_B, n * n * sizeof *Bs[b]);
        pvg_model_free(m);
        pvg_rng_free(det);
    }
    double lo = INFINITY, hi = -INFINITY;
    for (size_t j = 0; j < n; j++) {
        size_t i = j ? 0 : 1;
        double d = (double)Bs[1][i * n + j] - (double)Bs[0][i * n + j];
        /* the same column moves alike in every row */
        size_t i2 = j == n - 1 ? n - 2 : n - 1;
        double d2 = (double)Bs[1][i2 * n + j] - (double)Bs[0][i2 * n + j];
        assert_true(fabs(d - d2) <= 1e-5 * (fabs(d) + 1e-3));
        if (d < lo) lo = d;
        if (d > hi) hi = d;
    }
    assert_true(hi > 0);
    assert_true(hi - lo > 0.1 * hi); /* noiseless: all equal */
    free(Bs[0]), free(Bs[1]);
    pvg_dataset_free(ds);
}

/* Attack on the default present: left at 0, recency_now would be one
 * second after the latest event - one shopper's data. A shopper with a
 * single purchase far after everyone else's moves the window of every
 * other shopper (their recent counts all fall to 0) and every Gram weight,
 * so no per-shopper bound holds. DP-EASE with recency refuses to run
 * without a caller-given present; with one, that shopper's late purchase
 * moves nothing. */
static void test_ease_recency_now_is_public(void **s)
{
    (void)s;
    pvg_dataset *a = fixture(1), *b = fixture_at(1, 2000);
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.item = item_name(0);
    e.ts = 4102444800; /* 2100-01-01: a timestamp in the future */
    assert_int_equal(pvg_dataset_add_ext(b, "late", &e, NULL), PVG_OK);
    pvg_train_params p0;
    pvg_train_params_default(PVG_MODEL_EASE, &p0);
    p0.recent_pop_days = 7;
    p0.recent_pop_beta = 1;
    /* what the default would do: the neighbour's present is 2100's */
    int64_t na = pvg_recency_now(a, &p0), nb = pvg_recency_now(b, &p0);
    assert_int_equal(na, 2001);
    assert_int_equal(nb, e.ts + 1);
    size_t la, lb;
    double sa, sb;
    double *va = recent_statistic(a, na, 7, &la, &sa), *vb = recent_statistic(b, nb, 7, &lb, &sb);
    double d2 = 0;
    for (size_t i = 0; i < la; i++)
        d2 += (vb[i] - va[i]) * (vb[i] - va[i]);
    assert_true(sqrt(d2) > 2 * sa); /* far past the calibrated sqrt(m) */
    free(va), free(vb);
    /* so the trainer refuses the data-derived present */
    const char *ids[N_ITEMS], *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    for (int hl = 0; hl < 2; hl++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(41);
        pvg_train_params p;
        recency_text_params(&p, det, ids, titles, tb);
        if (hl)
            p.recency_halflife_days = 30;
        else {
            p.recent_pop_days = 7;
            p.recent_pop_beta = 1;
        }
        pvg_model *m = NULL;
        pvg_error err;
        assert_int_equal(pvg_model_train(b, &p, &m, NULL, &err), PVG_ERR_INVALID);
        assert_null(m);
        assert_non_null(strstr(err.text, "recency_now"));
        /* a public present: the late purchase is after it and moves nothing */
        p.recency_now = 2001;
        assert_int_equal(pvg_model_train(b, &p, &m, NULL, &err), PVG_OK);
        assert_true(m->dp.epsilon <= 8 * (1 + 1e-9));
        pvg_model_free(m);
        pvg_rng_free(det);
    }
    pvg_dataset_free(a), pvg_dataset_free(b);
}

/* Attack on the row norm (recency_row_norm): a row whose purchases are
 * all 128 to 149 half-lives old has float weights below 2^-128, so the
 * factor sqrt(h / ss) that restores the binary row's norm overflows a
 * float to inf; inf weights turn the clipped row into NaN and poison the
 * whole released Gram (one shopper's presence visible). The weights stay
 * finite, at most sqrt(h) each with the row's L2 norm sqrt(h), and
 * DP-EASE on such rows gives a finite B. */
static void test_ease_recency_row_norm_bounded(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    pvg_csr R;
    assert_int_equal(pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item,
                                   ds->ev_w, NULL, &R),
                     PVG_OK);
    const int64_t now = 1000000;
    const double hl = (double)(now - 1000) / 140 / 86400; /* ages of ~140 half-lives */
    int64_t *last = malloc(R.nnz * sizeof *last);
    float *rw = malloc(R.nnz * sizeof *rw);
    assert_true(last && rw);
    pvg_error err;
    assert_int_equal(pvg_recency_last(ds, &R, now, last, &err), PVG_OK);
    pvg_recency_row_weights(&R, last, now, hl, 1, rw);
    for (size_t u = 0; u < R.n_rows; u++) {
        double ss = 0;
        size_t h = 0;
        for (uint64_t q = R.indptr[u]; q < R.indptr[u + 1]; q++) {
            assert_true(isfinite(rw[q]));
            assert_true(rw[q] >= 0);
            ss += (double)rw[q] * rw[q];
            h += last[q] != INT64_MIN;
        }
        for (uint64_t q = R.indptr[u]; q < R.indptr[u + 1]; q++)
            assert_true(rw[q] <= sqrt((double)h) * (1 + 1e-6));
        if (h) assert_true(fabs(sqrt(ss) - sqrt((double)h)) < 1e-4 * sqrt((double)h));
    }
    /* without the norm: 2^-age, in [0, 1] */
    pvg_recency_row_weights(&R, last, now, hl, 0, rw);
    for (size_t q = 0; q < R.nnz; q++)
        assert_true(rw[q] >= 0 && rw[q] <= 1);
    free(last), free(rw);
    pvg_csr_free(&R);
    /* DP-EASE on those rows */
    const char *ids[N_ITEMS], *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(43);
    pvg_train_params p;
    recency_text_params(&p, det, ids, titles, tb);
    p.recency_now = now;
    p.recency_halflife_days = hl;
    p.recency_row_norm = 1;
    pvg_model *m = NULL;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    assert_non_null(m->ease_B);
    for (size_t q = 0; q < m->n_items * m->n_items; q++)
        assert_true(isfinite(m->ease_B[q]));
    pvg_model_free(m);
    pvg_rng_free(det);
    pvg_dataset_free(ds);
}

/* Bad recency parameters from a caller are refused, naming the field,
 * never silently ignored (NaN or infinite half-lives and windows, windows
 * whose start overflows, a window without its weight or the reverse, the
 * row norm or share without their term, another method), non-private EASE
 * and DP-EASE alike. */
static void test_ease_recency_params_refused(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    const char *ids[N_ITEMS], *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    static const struct {
        double hl, days, beta, share;
        int norm;
        int64_t now;
        const char *field;
    } bad[] = {
        {NAN, 0, 0, 0, 0, 2001, "recency_halflife_days"},
        {-1, 0, 0, 0, 0, 2001, "recency_halflife_days"},
        {INFINITY, 0, 0, 0, 0, 2001, "recency_halflife_days"},
        {0, NAN, 1, 0, 0, 2001, "recent_pop_days"},
        {0, INFINITY, 1, 0, 0, 2001, "recent_pop_days"},
        {0, 1e300, 1, 0, 0, 2001, "recent_pop_days"},
        {0, -7, 1, 0, 0, 2001, "recent_pop_days"},
        {0, 7, NAN, 0, 0, 2001, "recent_pop_beta"},
        {0, 7, -1, 0, 0, 2001, "recent_pop_beta"},
        {0, 7, 0, 0, 0, 2001, "recent_pop_beta"},
        {0, 0, 1, 0, 0, 2001, "recent_pop_days"},
        {0, 7, 1, NAN, 0, 2001, "recent_pop_share"},
        {0, 7, 1, 1, 0, 2001, "recent_pop_share"},
        {30, 0, 0, 0.1, 0, 2001, "recent_pop_share"},
        {0, 0, 0, 0, 1, 2001, "recency_row_norm"},
        {30, 0, 0, 0, 2, 2001, "recency_row_norm"},
        {0, 0, 0, 0, 0, 2001, "recency_now"},
        {30, 0, 0, 0, 0, INT64_MIN + 1, "recency_now"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        for (int dp = 0; dp < 2; dp++) {
            pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(47);
            pvg_train_params p;
            if (dp)
                recency_text_params(&p, det, ids, titles, tb);
            else
                pvg_train_params_default(PVG_MODEL_EASE, &p);
            p.recency_halflife_days = bad[k].hl;
            p.recent_pop_days = bad[k].days;
            p.recent_pop_beta = bad[k].beta;
            p.recent_pop_share = bad[k].share;
            p.recency_row_norm = bad[k].norm;
            p.recency_now = bad[k].now;
            pvg_model *m = NULL;
            pvg_error err;
            pvg_status st = pvg_model_train(ds, &p, &m, NULL, &err);
            if (st != PVG_ERR_INVALID) print_error("case %zu dp %d: status %d\n", k, dp, (int)st);
            assert_int_equal(st, PVG_ERR_INVALID);
            assert_null(m);
            assert_non_null(strstr(err.text, bad[k].field));
            pvg_rng_free(det);
        }
    /* the unit-norm rows: 0 or 1, and only with the window */
    for (int k = 0; k < 2; k++)
        for (int dp = 0; dp < 2; dp++) {
            pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(48);
            pvg_train_params p;
            if (dp)
                recency_text_params(&p, det, ids, titles, tb);
            else
                pvg_train_params_default(PVG_MODEL_EASE, &p);
            p.recency_now = 2001;
            p.recency_halflife_days = 30;
            p.recent_pop_days = k ? 7 : 0;
            p.recent_pop_beta = k ? 1 : 0;
            p.recent_pop_unit = k ? 2 : 1;
            pvg_model *m = NULL;
            pvg_error err;
            assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_INVALID);
            assert_null(m);
            assert_non_null(strstr(err.text, "recent_pop_unit"));
            pvg_rng_free(det);
        }
    /* a share of 0.5 or more: the text-only model's (below epsilon 5),
     * refused beside the Gram, whose own releases need the rest */
    for (int k = 0; k < 2; k++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(49);
        pvg_train_params p;
        recency_text_params(&p, det, ids, titles, tb);
        p.dp_epsilon = k ? 8 : 2;
        p.recency_now = 2001;
        p.recent_pop_days = 7;
        p.recent_pop_beta = 1;
        p.recent_pop_share = k ? 0.5 : 0.95;
        pvg_model *m = NULL;
        pvg_error err;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), k ? PVG_ERR_UNSUPPORTED : PVG_OK);
        if (k) {
            assert_null(m);
            assert_non_null(strstr(err.text, "recent_pop_share"));
        } else {
            assert_true(m->dp.epsilon <= 2 * (1 + 1e-9) && m->dp.epsilon >= 2 * 0.995);
        }
        pvg_model_free(m);
        pvg_rng_free(det);
    }
    /* a share so close to 1 (or 0) that one of the text-only model's two
     * releases gets too little rho to calibrate: refused naming the share
     * (not "epsilon ... got 0", a figure the caller never gave), with
     * bounded counts and unit rows */
    const double extreme[] = {1 - 1e-12, 1e-12};
    for (int k = 0; k < 4; k++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(50);
        pvg_train_params p;
        recency_text_params(&p, det, ids, titles, tb);
        p.dp_epsilon = 1;
        p.recency_now = 2001;
        p.recent_pop_days = 7;
        p.recent_pop_beta = 1;
        p.recent_pop_share = extreme[k % 2];
        p.recent_pop_unit = k / 2;
        pvg_model *m = NULL;
        pvg_error err;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_INVALID);
        assert_null(m);
        if (!strstr(err.text, "recent_pop_share"))
            fail_msg("share %g: %s", extreme[k % 2], err.text);
        pvg_rng_free(det);
    }
    /* another method, non-private */
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_POPULARITY, &p);
    p.recency_halflife_days = 30;
    pvg_model *m = NULL;
    pvg_error err;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_UNSUPPORTED);
    assert_null(m);
    assert_non_null(strstr(err.text, "recency"));
    pvg_dataset_free(ds);
}

/* Non-private EASE with recency: weights of 1 give EASE's B; the weight of
 * a purchase halves every half-life; the blend adds beta rms(B) r_j / max r. */
static void test_ease_recency_nonprivate(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    pvg_csr R, C;
    assert_int_equal(pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item,
                                   ds->ev_w, NULL, &R),
                     PVG_OK);
    assert_int_equal(pvg_csr_transpose(&R, &C), PVG_OK);
    size_t n = ds->n_items;
    float *B0 = malloc(n * n * sizeof *B0), *B1 = malloc(n * n * sizeof *B1);
    float *rw = malloc(R.nnz * sizeof *rw);
    assert_true(B0 && B1 && rw);
    for (size_t q = 0; q < R.nnz; q++) {
        R.data[q] = 1;
        rw[q] = 1;
    }
    pvg_error err;
    assert_int_equal(pvg_ease_fit(&R, &C, n, 5, 1, B0, &err), PVG_OK);
    assert_int_equal(pvg_ease_fit_weighted(&R, rw, n, 5, 1, B1, &err), PVG_OK);
    for (size_t q = 0; q < n * n; q++)
        assert_true(fabs(B0[q] - B1[q]) < 1e-4);
    assert_true(fabs(pvg_recency_weight(86400 * 10, 0, 10) - 0.5) < 1e-6);
    assert_true(pvg_recency_weight(100, 100, 10) == 1.0f);
    assert_true(pvg_recency_weight(100, INT64_MIN, 10) == 0.0f);
    float r[N_ITEMS] = {0};
    r[3] = 4;
    r[5] = 2;
    double ss = 0;
    size_t nz = 0;
    for (size_t q = 0; q < n * n; q++)
        if (B1[q] != 0) ss += (double)B1[q] * B1[q], nz++;
    double rms = sqrt(ss / nz);
    pvg_recency_blend(B1, n, r, 0.5);
    assert_true(fabs(B1[0 * n + 3] - (B0[0 * n + 3] + 0.5 * rms)) < 1e-5);
    assert_true(fabs(B1[0 * n + 5] - (B0[0 * n + 5] + 0.25 * rms)) < 1e-5);
    assert_true(B1[3 * n + 3] == B0[3 * n + 3]);
    assert_true(fabs(B1[0 * n + 7] - B0[0 * n + 7]) < 1e-7);
    free(B0), free(B1), free(rw);
    pvg_csr_free(&R), pvg_csr_free(&C);
    pvg_dataset_free(ds);
}

/* The vocabulary is the public list, never the data's item set; without a
 * list, DP partition selection (its share accounted) - on 40 shoppers it
 * keeps nothing, and says so instead of falling back to the raw items. */
static void test_vocabulary(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(0);
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    pvg_train_params p;
    params(PVG_MODEL_EASE, &p, det);
    const char *ids[] = {"i0", "i1", "i2", "i3", "public-only"};
    p.dp_items = ids;
    p.dp_n_items = 5;
    pvg_model *m;
    pvg_error err;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_n_items(m), 5);
    assert_true(pvg_model_item_index(m, "public-only") >= 0);
    assert_true(pvg_model_item_index(m, "i7") < 0);
    pvg_model_dp_info d;
    assert_int_equal(pvg_model_dp_info_get(m, &d, &err), PVG_OK);
    assert_int_equal(d.vocabulary, PVG_DP_VOCAB_LIST);
    pvg_model_free(m);
    const char *dup[] = {"i0", "i0"};
    p.dp_items = dup;
    p.dp_n_items = 2;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_INVALID);
    p.dp_items = NULL;
    p.dp_n_items = 0;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "partition selection"));
    pvg_rng_free(det);
    pvg_dataset_free(ds);
}

/* The recency defaults follow the epsilon the method runs at: with a noise
 * multiplier that gives less than 5 (here 1.56 at s = 3, under a requested
 * 8), DP-EASE trains the text-only model, so the defaults are the text-only
 * model's (the last 60 days at 90% of rho), not the projected release's
 * (14 days at 15%, whose half-life the text-only model has no Gram for). */
static void test_ease_recency_defaults_noise_multiplier(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    const char *ids[N_ITEMS], *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    for (int nm = 0; nm < 2; nm++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(45);
        pvg_train_params p;
        recency_text_params(&p, det, ids, titles, tb);
        p.dp_epsilon = 8;
        p.dp_noise_multiplier = nm ? 3 : 0;
        pvg_train_params_recency_default(&p, 2001);
        assert_true(nm ? p.recent_pop_days == 60 && p.recent_pop_share == 0.9 &&
                             p.recency_halflife_days == 0
                       : p.recent_pop_days == 14 && p.recency_halflife_days == 120);
        pvg_model *m;
        pvg_error err;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        assert_string_equal(m->dp.mechanism, nm ? "dp-ease/discrete-gaussian-pop+recent+text"
                                                : "dp-ease/discrete-gaussian-projected-gram+text");
        pvg_model_recency r;
        assert_int_equal(pvg_model_recency_get(m, &r, &err), PVG_OK);
        assert_true(r.on && r.recent_days == (nm ? 60 : 14));
        pvg_model_free(m);
        pvg_rng_free(det);
    }
    /* at the threshold, requested or given by a noise multiplier (s with
     * epsilon 5 at delta 1e-6 found by bisection, then just above and just
     * below it): the defaults and the path agree, so the text-only
     * defaults' share of 0.9 never lands beside the Gram (an error the
     * operator could not fix) */
    double lo = 0.5, hi = 2; /* epsilon(s) decreases in s */
    for (int it = 0; it < 200; it++) {
        double mid = (lo + hi) / 2;
        if (pvg_dp_zcdp_to_epsilon(1 / (2 * mid * mid), 1e-6) > 5)
            lo = mid;
        else
            hi = mid;
    }
    const struct {
        double eps, nm;
    } edge[] = {{5, 0}, {nextafter(5, 0), 0}, {8, hi * (1 + 1e-12)}, {8, lo * (1 - 1e-12)}};
    int n_text_only = 0;
    for (size_t e = 0; e < sizeof edge / sizeof *edge; e++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(46);
        pvg_train_params p;
        recency_text_params(&p, det, ids, titles, tb);
        p.dp_epsilon = edge[e].eps;
        p.dp_noise_multiplier = edge[e].nm;
        pvg_train_params_recency_default(&p, 2001);
        pvg_model *m = NULL;
        pvg_error err;
        if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK)
            fail_msg("eps %.17g nm %.17g: %s", edge[e].eps, edge[e].nm, err.text);
        int text_only = strcmp(m->dp.mechanism, "dp-ease/discrete-gaussian-pop+recent+text") == 0;
        assert_true(p.recent_pop_share == (text_only ? 0.9 : 0.15));
        n_text_only += text_only;
        pvg_model_free(m);
        pvg_rng_free(det);
    }
    assert_int_equal(n_text_only, 2); /* both sides of the threshold reached */
    pvg_dataset_free(ds);
}

/* Writes buf (len bytes) to path with the header's checksum recomputed. */
static void write_with_checksum(const char *path, unsigned char *buf, size_t len)
{
    unsigned char sum[32];
    memset(buf + 240, 0, 32);
    crypto_generichash(sum, 32, buf, (unsigned long long)len, NULL, 0);
    memcpy(buf + 240, sum, 32);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* The recency defaults (pvg_train_params_recency_default, what `privguide
 * train` uses): their values with and without DP, nothing for other types;
 * DP-EASE applies them where its projected release runs and elsewhere
 * trains without them, exactly the model it trains without them (same
 * noise, same fingerprint), recorded off, where an explicit request is
 * refused; the model file keeps the record, its fingerprint covers it, and
 * a record out of range is refused at its offset. */
static void test_ease_recency_defaults(void **s)
{
    (void)s;
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_POPULARITY, &p);
    pvg_train_params_recency_default(&p, 5000);
    assert_true(p.recency_now == 0 && p.recency_halflife_days == 0 && p.recent_pop_days == 0 &&
                p.recency_where_possible == 0);
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    pvg_train_params_recency_default(&p, 0);
    assert_true(p.recency_halflife_days == 240 && !p.recency_row_norm && p.recent_pop_days == 7 &&
                p.recent_pop_beta == 0.7 && p.recent_pop_share == 0 && !p.recent_pop_unit &&
                p.recency_where_possible == 1 && p.recency_now == 0);
    /* without DP: the present one second after the latest event, used and
     * not recorded (test_recency_present_from_data) */
    pvg_dataset *ds = fixture(1); /* events at 1000.. and the heavy shopper's at 2000 */
    pvg_model *m, *l;
    pvg_error err;
    pvg_model_recency r;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_recency_get(m, &r, &err), PVG_OK);
    assert_true(r.on && r.present == 0 && r.present_from_data && r.halflife_days == 240 &&
                r.recent_days == 7);
    pvg_model_free(m);

    /* DP, the projected release: applied, with the given present */
    const char *ids[N_ITEMS], *titles[N_ITEMS];
    char tb[N_ITEMS][32];
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(41);
    recency_text_params(&p, det, ids, titles, tb);
    pvg_train_params_recency_default(&p, 2001);
    assert_true(p.recency_halflife_days == 120 && p.recency_row_norm == 1 &&
                p.recent_pop_days == 14 && p.recent_pop_beta == 1 && p.recent_pop_share == 0.15 &&
                p.recent_pop_unit == 1 && p.recency_now == 2001);
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_recency_get(m, &r, &err), PVG_OK);
    assert_true(r.on && r.present == 2001 && r.halflife_days == 120 && r.row_norm &&
                r.recent_days == 14 && r.recent_share == 0.15 && r.recent_unit);
    char path[] = "/tmp/pvg_dp_recency_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_OK);
    pvg_model_recency rl;
    assert_int_equal(pvg_model_recency_get(l, &rl, &err), PVG_OK);
    assert_memory_equal(&r, &rl, sizeof r);
    pvg_model_free(l);
    pvg_model_free(m);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *orig = malloc(len), *buf = malloc(len);
    assert_int_equal(fread(orig, 1, len, f), len);
    fclose(f);
    const size_t rec_off = 424; /* version 4: the recency record after the mechanism */
    double v;
    memcpy(&v, orig + rec_off + 8, 8);
    assert_true(v == 120); /* the half-life where docs/models.md puts it */
    /* a half-life out of range: refused at the record's offset */
    memcpy(buf, orig, len);
    v = -1;
    memcpy(buf + rec_off + 8, &v, 8);
    write_with_checksum(path, buf, len);
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_ERR_CORRUPT);
    assert_non_null(strstr(err.text, "recency"));
    assert_int_equal(err.offset, (long long)rec_off);
    /* a well-formed but edited record (another window): the fingerprint
     * covers it, so the DP model is refused */
    memcpy(buf, orig, len);
    v = 28;
    memcpy(buf + rec_off + 16, &v, 8);
    write_with_checksum(path, buf, len);
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_ERR_CORRUPT);
    free(orig);
    free(buf);
    unlink(path);
    pvg_rng_free(det);

    /* epsilon 2, the text-only model: its own defaults (the last 60
     * days' buyers mixed into the prior's popularity, no half-life),
     * applied, within the requested epsilon; the projected release's
     * defaults there keep the window and drop the half-life (no Gram) */
    for (int own = 1; own >= 0; own--) {
        det = pvg_rng_new_INSECURE_deterministic_for_tests(43);
        recency_text_params(&p, det, ids, titles, tb);
        p.dp_epsilon = own ? 2 : 8;
        pvg_train_params_recency_default(&p, 2001);
        p.dp_epsilon = 2;
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        assert_string_equal(m->dp.mechanism, "dp-ease/discrete-gaussian-pop+recent+text");
        assert_true(m->dp.epsilon <= 2 * (1 + 1e-9) && m->dp.epsilon >= 2 * 0.995);
        assert_int_equal(pvg_model_recency_get(m, &r, &err), PVG_OK);
        assert_true(r.on && r.present == 2001 && r.halflife_days == 0 && !r.row_norm);
        assert_true(own ? r.recent_days == 60 && r.recent_beta == 8 && r.recent_share == 0.9
                        : r.recent_days == 14);
        pvg_model_free(m);
        pvg_rng_free(det);
    }
    /* without text (epsilon 8): the defaults train the model trained
     * without them (same noise, same fingerprint), recorded off; asked for
     * explicitly, refused, never silently dropped */
    unsigned char fp[2][32];
    for (int with = 0; with < 2; with++) {
        det = pvg_rng_new_INSECURE_deterministic_for_tests(42);
        recency_text_params(&p, det, ids, titles, tb);
        p.dp_item_titles = NULL;
        if (with) pvg_train_params_recency_default(&p, 2001);
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        assert_int_equal(pvg_model_recency_get(m, &r, &err), PVG_OK);
        assert_int_equal(r.on, 0);
        memcpy(fp[with], pvg_model_fingerprint(m), 32);
        pvg_model_free(m);
        pvg_rng_free(det);
        if (with) {
            p.recency_where_possible = 0;
            det = pvg_rng_new_INSECURE_deterministic_for_tests(42);
            p.dp_rng = det;
            m = NULL;
            assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_ERR_UNSUPPORTED);
            assert_null(m);
            pvg_rng_free(det);
        }
    }
    assert_memory_equal(fp[0], fp[1], 32);
    pvg_dataset_free(ds);
}

/* The model's bytes at path (len in *len; free it). */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* One edit of a saved model: n bytes of v at off. */
typedef struct file_edit {
    size_t off;
    const void *v;
    size_t n;
} file_edit;

/* orig with the k edits, its checksum recomputed, loaded from path: the
 * status; *off_out the error's offset, text (sizeof pvg_error.text) its
 * text. */
static pvg_status load_edited(const char *path, const unsigned char *orig, size_t len,
                              const file_edit *e, size_t k, long long *off_out, char *text)
{
    unsigned char *b = malloc(len);
    assert_non_null(b);
    memcpy(b, orig, len);
    for (size_t i = 0; i < k; i++)
        memcpy(b + e[i].off, e[i].v, e[i].n);
    write_with_checksum(path, b, len);
    free(b);
    pvg_model *l = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_model_load(path, &l, &err);
    pvg_model_free(l);
    *off_out = err.offset;
    snprintf(text, sizeof err.text, "%s", err.text);
    return st;
}

/* load_edited with one edit, n bytes of v at off. */
static pvg_status load_patched(const char *path, const unsigned char *orig, size_t len, size_t off,
                               const void *v, size_t n, long long *off_out, char *text)
{
    const file_edit e = {off, v, n};
    return load_edited(path, orig, len, &e, 1, off_out, text);
}

/* orig with the k edits is refused as corrupt at the recency record (byte
 * 424); the error's text in text. */
static void record_refused(const char *path, const unsigned char *orig, size_t len,
                           const file_edit *e, size_t k, char *text)
{
    long long off;
    assert_int_equal(load_edited(path, orig, len, e, k, &off, text), PVG_ERR_CORRUPT);
    assert_int_equal(off, 424);
}
#define RECORD_REFUSED(...)                                                                        \
    record_refused(path, orig, len, (const file_edit[]){__VA_ARGS__},                              \
                   sizeof((const file_edit[]){__VA_ARGS__}) / sizeof(file_edit), text)

/* A present read from the data (non-private EASE given none: one second
 * after the latest event, one shopper's purchase time) trains the model as
 * that present given explicitly does, but is never recorded: the record
 * says present_from_data with present 0, the saved file holds neither that
 * time nor the latest event's, and a reload keeps the flag; a present the
 * caller gives is recorded. */
static void test_recency_present_from_data(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    int64_t latest = INT64_MIN;
    for (size_t e = 0; e < ds->n_ev; e++)
        if (ds->ev_ts[e] > latest) latest = ds->ev_ts[e];
    assert_true(latest > 0);
    pvg_model *m[2];
    pvg_error err;
    for (int given = 0; given < 2; given++) {
        pvg_train_params p;
        pvg_train_params_default(PVG_MODEL_EASE, &p);
        pvg_train_params_recency_default(&p, given ? latest + 1 : 0);
        assert_int_equal(pvg_model_train(ds, &p, &m[given], NULL, &err), PVG_OK);
        pvg_model_recency r;
        assert_int_equal(pvg_model_recency_get(m[given], &r, &err), PVG_OK);
        assert_true(r.on && r.recent_days > 0);
        assert_int_equal(r.present_from_data, !given);
        assert_true(r.present == (given ? latest + 1 : 0));
    }
    size_t n = pvg_model_n_items(m[0]);
    assert_memory_equal(m[0]->ease_B, m[1]->ease_B, n * n * sizeof(float));
    char path[] = "/tmp/pvg_dp_recdata_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pvg_model_save(m[0], path, &err), PVG_OK);
    size_t len;
    unsigned char *b = slurp(path, &len);
    for (int64_t t = latest; t <= latest + 1; t++)
        for (size_t i = 0; i + 8 <= len; i++)
            assert_true(memcmp(b + i, &t, 8) != 0);
    free(b);
    pvg_model *l;
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_OK);
    pvg_model_recency r;
    assert_int_equal(pvg_model_recency_get(l, &r, &err), PVG_OK);
    assert_true(r.on && r.present == 0 && r.present_from_data);
    pvg_model_free(l);
    unlink(path);
    pvg_model_free(m[0]);
    pvg_model_free(m[1]);
    pvg_dataset_free(ds);
}

/* Crafted recency records (format 4, bytes 424..471: present int64, then
 * half-life, window, beta, share as doubles, flags and a reserved word):
 * every record the trainer could not have written is refused at the
 * record's offset, on a non-private EASE model, a popularity model (no
 * terms at all), DP-EASE's projected release and its text-only model:
 * beside the Gram a share of 0.5 or more, in the text-only model a
 * half-life, without text any term, each named by the refusal whatever the
 * fingerprint; a DP model's well-formed but edited record (present,
 * window, beta, share, either flag) or a record added to a DP model
 * trained without one fails its fingerprint. */
static void test_recency_record_crafted(void **s)
{
    (void)s;
    enum { PRESENT = 424, HL = 432, DAYS = 440, BETA = 448, SHARE = 456, FLAGS = 464, RSV = 468 };
    pvg_dataset *ds = fixture(1);
    char path[] = "/tmp/pvg_dp_reccraft_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    pvg_error err;
    pvg_model *m;
    const double nan = NAN, inf = INFINITY, neg = -1, big = 2e6, zero = 0, one = 1;
    const int64_t far = (int64_t)1e12 + 1, nfar = -(int64_t)1e12 - 1;
    const uint32_t bit3 = 8, rsv = 1, rownorm = 1, unit = 2, from_data = 4;
    struct {
        size_t off;
        const void *v;
        size_t n;
    } bad[] = {
        {HL, &nan, 8},    {HL, &inf, 8},      {HL, &neg, 8},       {HL, &big, 8},
        {DAYS, &nan, 8},  {DAYS, &neg, 8},    {BETA, &nan, 8},     {BETA, &zero, 8},
        {SHARE, &nan, 8}, {SHARE, &one, 8},   {SHARE, &neg, 8},    {FLAGS, &bit3, 4},
        {RSV, &rsv, 4},   {PRESENT, &far, 8}, {PRESENT, &nfar, 8},
    };
    char text[sizeof((pvg_error *)0)->text];
    long long off;
    /* 0: non-private EASE with the defaults; 1: DP-EASE (projected release)
     * with them; 2: popularity, no terms; 3: DP-EASE's text-only model with
     * its defaults */
    for (int kind = 0; kind < 4; kind++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(50 + kind);
        pvg_train_params p;
        const char *ids[N_ITEMS], *titles[N_ITEMS];
        char tb[N_ITEMS][32];
        if (kind == 0) {
            pvg_train_params_default(PVG_MODEL_EASE, &p);
            pvg_train_params_recency_default(&p, 0);
        } else if (kind == 1 || kind == 3) {
            recency_text_params(&p, det, ids, titles, tb);
            if (kind == 3) p.dp_epsilon = 2;
            pvg_train_params_recency_default(&p, 2001);
        } else {
            pvg_train_params_default(PVG_MODEL_POPULARITY, &p);
        }
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
        pvg_model_free(m);
        size_t len;
        unsigned char *orig = slurp(path, &len);
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            if (kind == 2 && bad[i].v == &zero) continue; /* all zero there: no record */
            pvg_status st =
                load_patched(path, orig, len, bad[i].off, bad[i].v, bad[i].n, &off, text);
            /* the refusal names the field and what it expected (on a
             * popularity model: that the terms are EASE's) */
            const char *field = bad[i].off >= FLAGS ? "flags"
                                : kind == 2         ? "EASE only"
                                : kind == 0 && bad[i].off == PRESENT
                                    ? "present from the data" /* its flag: no present */
                                : bad[i].off == HL    ? "recency_halflife_days must be"
                                : bad[i].off == DAYS  ? "recent_pop_days must be"
                                : bad[i].off == BETA  ? "recent_pop_beta"
                                : bad[i].off == SHARE ? "recent_pop_share must be"
                                                      : "recency_now must be";
            if (st != PVG_ERR_CORRUPT || off != PRESENT || !strstr(text, "recency") ||
                !strstr(text, field))
                fail_msg("kind %d, byte %zu: status %d at %lld: %s", kind, bad[i].off, (int)st, off,
                         text);
        }
        if (kind == 0) {
            /* the row-norm flag needs a half-life, the unit flag a window */
            RECORD_REFUSED({HL, &zero, 8}, {FLAGS, &rownorm, 4});
            RECORD_REFUSED({DAYS, &zero, 8}, {BETA, &zero, 8}, {FLAGS, &unit, 4});
            /* both terms off (with the flag of a present from the data): refused */
            RECORD_REFUSED({HL, &zero, 8}, {DAYS, &zero, 8}, {BETA, &zero, 8});
            /* the present from the data is flagged, never recorded: a
             * present beside the flag is refused */
            const int64_t given = 2001;
            uint32_t fl0;
            memcpy(&fl0, orig + FLAGS, 4);
            assert_true(fl0 & from_data);
            RECORD_REFUSED({PRESENT, &given, 8});
            /* a well-formed edit of a non-private model is its operator's
             * business (no DP claim to protect): it loads */
            assert_int_equal(load_patched(path, orig, len, BETA, &one, 8, &off, text), PVG_OK);
        } else if (kind == 1) {
            /* a share of 0.5 or more beside the Gram: a record the trainer
             * refuses to write (it would starve the Gram) */
            const double sh7 = 0.7, sh5 = 0.5;
            assert_int_equal(load_patched(path, orig, len, SHARE, &sh7, 8, &off, text),
                             PVG_ERR_CORRUPT);
            assert_int_equal(off, PRESENT);
            assert_non_null(strstr(text, "recent_pop_share"));
            assert_int_equal(load_patched(path, orig, len, SHARE, &sh5, 8, &off, text),
                             PVG_ERR_CORRUPT);
            assert_int_equal(off, PRESENT);
            assert_non_null(strstr(text, "recent_pop_share"));
            /* well-formed edits of the DP record: the fingerprint */
            const int64_t other = 5000;
            const double w = 28, sh = 0.2, b2 = 2;
            const uint32_t fl[] = {unit, rownorm};
            /* a DP model's present is public and recorded: the flag of a
             * present from the data is refused there */
            uint32_t fl1;
            memcpy(&fl1, orig + FLAGS, 4);
            fl1 |= from_data;
            assert_int_equal(load_patched(path, orig, len, FLAGS, &fl1, 4, &off, text),
                             PVG_ERR_CORRUPT);
            assert_int_equal(off, PRESENT);
            assert_int_equal(load_patched(path, orig, len, PRESENT, &other, 8, &off, text),
                             PVG_ERR_CORRUPT);
            assert_non_null(strstr(text, "fingerprint"));
            assert_int_equal(off, 96); /* the fingerprint's field */
            assert_int_equal(load_patched(path, orig, len, DAYS, &w, 8, &off, text),
                             PVG_ERR_CORRUPT);
            assert_int_equal(load_patched(path, orig, len, BETA, &b2, 8, &off, text),
                             PVG_ERR_CORRUPT);
            assert_int_equal(load_patched(path, orig, len, SHARE, &sh, 8, &off, text),
                             PVG_ERR_CORRUPT);
            for (int f = 0; f < 2; f++) {
                assert_int_equal(load_patched(path, orig, len, FLAGS, &fl[f], 4, &off, text),
                                 PVG_ERR_CORRUPT);
                assert_non_null(strstr(text, "fingerprint"));
            }
        } else if (kind == 3) {
            /* the text-only model: a half-life (no Gram to weigh) refused
             * for itself; a share it could have run at, by the fingerprint */
            const double h = 120, sh = 0.7;
            assert_int_equal(load_patched(path, orig, len, HL, &h, 8, &off, text), PVG_ERR_CORRUPT);
            assert_int_equal(off, PRESENT);
            assert_non_null(strstr(text, "half-life"));
            assert_int_equal(load_patched(path, orig, len, SHARE, &sh, 8, &off, text),
                             PVG_ERR_CORRUPT);
            assert_int_equal(off, 96);
            assert_non_null(strstr(text, "fingerprint"));
            /* its mechanism names the recent buyers: a record without them
             * (all zero, as a model trained without the terms) is refused
             * for itself */
            static const unsigned char none[RSV + 4 - PRESENT];
            RECORD_REFUSED({PRESENT, none, sizeof none});
            assert_non_null(strstr(text, "recent buyers"));
        } else {
            /* popularity: a well-formed EASE record is refused (EASE only) */
            const int64_t pr = 2001;
            const double h = 120;
            RECORD_REFUSED({PRESENT, &pr, 8}, {HL, &h, 8});
            assert_non_null(strstr(text, "recency"));
        }
        free(orig);
        pvg_rng_free(det);
    }
    /* DP-EASE trained without the terms given a well-formed record: without
     * text (the defaults drop the terms) no record fits, refused for
     * itself; the text-only model trained without them (the record it
     * could have had): its fingerprint */
    for (int text_only = 0; text_only < 2; text_only++) {
        pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(60);
        pvg_train_params p;
        const char *ids[N_ITEMS], *titles[N_ITEMS];
        char tb[N_ITEMS][32];
        recency_text_params(&p, det, ids, titles, tb);
        if (text_only)
            p.dp_epsilon = 2;
        else
            p.dp_item_titles = NULL;
        pvg_train_params_recency_default(&p, 2001);
        if (text_only) pvg_model_recency_clear(&p);
        assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
        pvg_model_recency r;
        assert_int_equal(pvg_model_recency_get(m, &r, &err), PVG_OK);
        assert_int_equal(r.on, 0);
        assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
        pvg_model_free(m);
        size_t len;
        unsigned char *orig = slurp(path, &len), *b = malloc(len);
        const int64_t pr = 2001;
        const double d = 60, beta = 8;
        memcpy(b, orig, len);
        memcpy(b + PRESENT, &pr, 8);
        memcpy(b + DAYS, &d, 8);
        memcpy(b + BETA, &beta, 8);
        assert_int_equal(load_patched(path, b, len, 0, b, 0, &off, text), PVG_ERR_CORRUPT);
        if (text_only) {
            assert_non_null(strstr(text, "fingerprint"));
        } else {
            assert_int_equal(off, PRESENT);
            assert_non_null(strstr(text, "without catalogue text"));
        }
        free(b);
        free(orig);
        pvg_rng_free(det);
    }
    unlink(path);
    pvg_dataset_free(ds);
}

/* The record survives the file; files of format 3 read as not DP. */
static void test_file_record(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(0);
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(9);
    pvg_train_params p;
    params(PVG_MODEL_ITEMKNN, &p, det);
    const char *ids[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++)
        ids[i] = item_name(i);
    p.dp_items = ids;
    p.dp_n_items = N_ITEMS;
    pvg_model *m, *l;
    pvg_error err;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    char path[] = "/tmp/pvg_dp_train_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_OK);
    pvg_model_dp_info a, b;
    assert_int_equal(pvg_model_dp_info_get(m, &a, &err), PVG_OK);
    assert_int_equal(pvg_model_dp_info_get(l, &b, &err), PVG_OK);
    assert_int_equal(b.is_dp, 1);
    assert_true(a.epsilon == b.epsilon && a.delta == b.delta && a.sensitivity == b.sensitivity &&
                a.noise_multiplier == b.noise_multiplier && a.max_items == b.max_items);
    assert_string_equal(a.mechanism, b.mechanism);
    assert_string_equal(b.mechanism, "dp-itemknn/discrete-gaussian-cooc");
    assert_int_equal(b.vocabulary, PVG_DP_VOCAB_LIST);
    pvg_model_free(l);
    pvg_model_free(m);
    /* a non-DP model written as format 3 (no DP record): loads, not DP */
    pvg_train_params q;
    pvg_train_params_default(PVG_MODEL_POPULARITY, &q);
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
    pvg_model_free(m);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    unsigned char *buf = malloc((size_t)len);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    uint32_t v3 = 3;
    memcpy(buf + 8, &v3, 4);
    memset(buf + 240, 0, 32); /* the checksum field */
    unsigned char sum[32];
    crypto_generichash(sum, 32, buf, (unsigned long long)len, NULL, 0);
    memcpy(buf + 240, sum, 32);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fwrite(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_OK);
    assert_int_equal(pvg_model_dp_info_get(l, &b, &err), PVG_OK);
    assert_int_equal(b.is_dp, 0);
    pvg_model_free(l);
    /* a DP record with a bad value is refused */
    params(PVG_MODEL_POPULARITY, &p, det);
    p.dp_items = ids;
    p.dp_n_items = N_ITEMS;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
    pvg_model_free(m);
    f = fopen(path, "r+b");
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    size_t dp_off = 328; /* version 4: the DP record after the sealed region's place */
    double bad = -1;
    memcpy(buf + dp_off + 8, &bad, 8); /* delta */
    memset(buf + 240, 0, 32);
    crypto_generichash(sum, 32, buf, (unsigned long long)len, NULL, 0);
    memcpy(buf + 240, sum, 32);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fwrite(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_ERR_CORRUPT);
    assert_non_null(strstr(err.text, "DP"));
    /* a well-formed but edited DP record (epsilon understated), checksum
     * recomputed: the fingerprint covers the record, so it is refused */
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
    pvg_model_free(m);
    f = fopen(path, "r+b");
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    double eps_lie = 0.01;
    memcpy(buf + dp_off, &eps_lie, 8);
    memset(buf + 240, 0, 32);
    crypto_generichash(sum, 32, buf, (unsigned long long)len, NULL, 0);
    memcpy(buf + 240, sum, 32);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fwrite(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_ERR_CORRUPT);
    assert_non_null(strstr(err.text, "fingerprint"));
    /* a non-DP model given a DP record (to be served at the DP path) */
    assert_int_equal(pvg_model_train(ds, &q, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
    pvg_model_free(m);
    f = fopen(path, "r+b");
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    double rec[5] = {1.0, 1e-6, 1.0, 5.0, 0};
    int32_t mi = 32;
    uint32_t voc = PVG_DP_VOCAB_LIST;
    memcpy(buf + dp_off, rec, sizeof rec);
    memcpy(buf + dp_off + 40, &mi, 4);
    memcpy(buf + dp_off + 44, &voc, 4);
    memcpy(buf + dp_off + 48, "dp-popularity/discrete-gaussian", 32);
    memset(buf + 240, 0, 32);
    crypto_generichash(sum, 32, buf, (unsigned long long)len, NULL, 0);
    memcpy(buf + 240, sum, 32);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fwrite(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    assert_int_equal(pvg_model_load(path, &l, &err), PVG_ERR_CORRUPT);
    assert_non_null(strstr(err.text, "fingerprint"));
    free(buf);
    unlink(path);
    pvg_rng_free(det);
    pvg_dataset_free(ds);
}

/* eval on a DP model over a public vocabulary: runs, scores in the
 * dataset's item space */
static void test_eval_dp(void **s)
{
    (void)s;
    pvg_dataset *ds = fixture(1);
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(11);
    pvg_train_params p;
    params(PVG_MODEL_EASE, &p, det);
    const char *ids[N_ITEMS - 5];
    for (int i = 0; i < N_ITEMS - 5; i++)
        ids[i] = item_name(i + 5);
    p.dp_items = ids;
    p.dp_n_items = N_ITEMS - 5;
    pvg_eval_options o;
    pvg_eval_options_default(PVG_EVAL_RANDOM_SPLIT, &o);
    pvg_eval_result r;
    pvg_error err;
    assert_int_equal(pvg_eval_run(ds, &p, &o, &r, &err), PVG_OK);
    assert_true(r.users_evaluated > 0);
    assert_true(r.at[0].recall >= 0 && r.at[0].recall <= 1);
    pvg_rng_free(det);
    pvg_dataset_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_popularity_sensitivity),
        cmocka_unit_test(test_itemknn_sensitivity),
        cmocka_unit_test(test_ease_sensitivity),
        cmocka_unit_test(test_ease_composition),
        cmocka_unit_test(test_ease_recent_sensitivity),
        cmocka_unit_test(test_ease_recent_unit_sensitivity),
        cmocka_unit_test(test_ease_text_only_sensitivity),
        cmocka_unit_test(test_ease_recent_unit_window_edges),
        cmocka_unit_test(test_ease_recent_unit_noised),
        cmocka_unit_test(test_dp_epsilon_nan_refused),
        cmocka_unit_test(test_ease_recency_composition),
        cmocka_unit_test(test_ease_recency_now_is_public),
        cmocka_unit_test(test_ease_recency_row_norm_bounded),
        cmocka_unit_test(test_ease_recency_params_refused),
        cmocka_unit_test(test_ease_recency_nonprivate),
        cmocka_unit_test(test_ease_recency_defaults),
        cmocka_unit_test(test_ease_recency_defaults_noise_multiplier),
        cmocka_unit_test(test_recency_present_from_data),
        cmocka_unit_test(test_recency_record_crafted),
        cmocka_unit_test(test_bounding_uniform),
        cmocka_unit_test(test_rng_and_parameters),
        cmocka_unit_test(test_vocabulary),
        cmocka_unit_test(test_file_record),
        cmocka_unit_test(test_eval_dp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
