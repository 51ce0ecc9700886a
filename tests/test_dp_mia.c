/*
 * test_dp_mia.c - an empirical membership-inference audit of the DP
 * trainers (Jagielski, Ullman and Oprea, "Auditing Differentially Private
 * Machine Learning: How Private is Private SGD?", NeurIPS 2020).
 *
 * Two neighbouring datasets: D0, a small synthetic shop, and D1 = D0 plus
 * one heavy shopper who bought every item of a set H. Each is trained many
 * times with fresh noise (a seeded generator per run, so the test is
 * deterministic); a fixed statistic of the model (the popularity scores of
 * H, or the similarities among H's items) is computed per run. A threshold,
 * chosen on a first half of the runs, turns the statistic into a guess
 * "the heavy shopper was in"; on the second half its false-positive rate
 * (guessing in on D0) and false-negative rate (guessing out on D1) are
 * bounded above by Clopper-Pearson at 97.5% each (95% jointly), and
 *   eps_lb = max(log((1 - delta - FNR_ub) / FPR_ub), log((1 - delta - FPR_ub) / FNR_ub))
 * is a lower bound on the epsilon of the training (with 95% confidence).
 * It must stay under the epsilon the model claims. The same audit of a
 * model trained WITHOUT DP must give a bound above that epsilon: the audit
 * can fail.
 *
 * H's items are bought by some shoppers of D0 too, so both datasets have
 * the same items: the audit measures the noise calibration, not the item
 * vocabulary.
 *
 * DP-EASE is audited twice: without catalogue text (its weighted Gram) and
 * with titles at an epsilon where it releases the Gram projected on the
 * text's basis (the model's mechanism is checked, so the audit covers that
 * release).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/model.h>
#include <privguide/rng.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_BASE 60
#define N_ITEMS 24
#define N_H 8
#define CLAIMED_EPS 2.0
#define DELTA 1e-6
#define TRIALS 500 /* per dataset: half to choose the threshold, half to measure */

/* ---- Clopper-Pearson ---------------------------------------------------- */

static double binom_cdf(int k, int n, double p)
{
    if (p <= 0) return 1;
    if (p >= 1) return k >= n ? 1 : 0;
    double s = 0;
    for (int i = 0; i <= k; i++)
        s += exp(lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) + i * log(p) +
                 (n - i) * log1p(-p));
    return s > 1 ? 1 : s;
}

/* The one-sided (1 - alpha) Clopper-Pearson upper bound of a rate with k
 * events in n trials: the p at which P(Bin(n, p) <= k) = alpha. */
static double cp_upper(int k, int n, double alpha)
{
    if (k >= n) return 1;
    double lo = (double)k / n, hi = 1;
    for (int it = 0; it < 100; it++) {
        double mid = (lo + hi) / 2;
        if (binom_cdf(k, n, mid) > alpha)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* The epsilon lower bound from fp of n0 runs on D0 and fn of n1 on D1. */
static double eps_lower_bound(int fp, int n0, int fn, int n1, double delta)
{
    double fpr = cp_upper(fp, n0, 0.025), fnr = cp_upper(fn, n1, 0.025);
    double a = (1 - delta - fnr) > 0 ? log((1 - delta - fnr) / fpr) : 0;
    double b = (1 - delta - fpr) > 0 ? log((1 - delta - fpr) / fnr) : 0;
    double e = a > b ? a : b;
    return e > 0 ? e : 0;
}

/* Guess "in" when stat > thr: the bound over s0 (D0 runs) and s1 (D1 runs). */
static double bound_at(const double *s0, const double *s1, int n, double thr)
{
    int fp = 0, fn = 0;
    for (int i = 0; i < n; i++) {
        fp += s0[i] > thr;
        fn += !(s1[i] > thr);
    }
    return eps_lower_bound(fp, n, fn, n, DELTA);
}

/* Chooses the direction and the threshold on the first halves and returns
 * the bound on the second halves. */
static double audit(double *s0, double *s1, int trials)
{
    int h = trials / 2;
    double best = -1, thr = 0;
    int sign = 1;
    for (int dir = 0; dir < 2; dir++) {
        if (dir) /* the other direction: guess "in" when the statistic is low */
            for (int i = 0; i < trials; i++) {
                s0[i] = -s0[i];
                s1[i] = -s1[i];
            }
        for (int i = 0; i < 2 * h; i++) {
            double t = i < h ? s0[i] : s1[i - h];
            double b = bound_at(s0, s1, h, t);
            if (b > best) {
                best = b;
                thr = t;
                sign = dir ? -1 : 1;
            }
        }
    }
    if (sign == 1) /* back to the first direction */
        for (int i = 0; i < trials; i++) {
            s0[i] = -s0[i];
            s1[i] = -s1[i];
        }
    return bound_at(s0 + h, s1 + h, trials - h, thr);
}

/* Known values: the two-sided 95% interval of 5 in 100 is [0.0164, 0.1128]
 * (R's binom.test); 0 in 10 has the 97.5% upper bound 1 - 0.025^(1/10). */
static void test_clopper_pearson(void **state)
{
    (void)state;
    assert_true(fabs(cp_upper(5, 100, 0.025) - 0.11284) < 1e-4);
    assert_true(fabs(cp_upper(0, 10, 0.025) - (1 - pow(0.025, 0.1))) < 1e-9);
    assert_true(cp_upper(10, 10, 0.025) == 1);
    /* a perfect distinguisher over 500 + 500 runs proves about 4.9 */
    double e = eps_lower_bound(0, 500, 0, 500, DELTA);
    assert_true(e > 4.8 && e < 5.0);
    /* no distinguisher proves nothing */
    assert_true(eps_lower_bound(250, 500, 250, 500, DELTA) == 0);
}

/* ---- the datasets and the statistic -------------------------------------- */

static char item_name[N_ITEMS][8];

static void add(pvg_dataset *ds, const char *user, int item)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.item = item_name[item];
    e.ts = 1000;
    assert_int_equal(pvg_dataset_add_ext(ds, user, &e, NULL), PVG_OK);
}

static const unsigned char SALT[16] = "mia-audit-salt!";

/* D0: N_BASE shoppers with 4 items each (a fixed pseudo-random pattern);
 * H = items 0..N_H-1 are each bought by one or two of them. D1 adds the
 * heavy shopper, who bought all of H. */
static pvg_dataset *make_dataset(int with_heavy)
{
    for (int i = 0; i < N_ITEMS; i++)
        snprintf(item_name[i], sizeof item_name[i], "it%02d", i);
    pvg_dataset *ds = NULL;
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, SALT, &ds, NULL), PVG_OK);
    char user[16];
    uint64_t x = 12345;
    for (int u = 0; u < N_BASE; u++) {
        snprintf(user, sizeof user, "u%d", u);
        if (u < N_H) add(ds, user, u); /* every item of H is bought in D0 */
        for (int j = 0; j < 4; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            add(ds, user, N_H + (int)((x >> 33) % (N_ITEMS - N_H)));
        }
    }
    if (with_heavy)
        for (int i = 0; i < N_H; i++)
            add(ds, "heavy", i);
    return ds;
}

/* The statistic: popularity scores of H (popularity), else the sum of the
 * similarities among H's items. */
static double statistic(const pvg_model *m)
{
    double s = 0;
    pvg_scored_item out[N_ITEMS];
    size_t n = 0;
    if (pvg_model_type_of(m) == PVG_MODEL_POPULARITY) {
        assert_int_equal(pvg_model_popular(m, N_ITEMS, out, &n, NULL), PVG_OK);
        for (size_t j = 0; j < n; j++)
            if (strncmp(out[j].item, "it0", 3) == 0 && atoi(out[j].item + 2) < N_H)
                s += out[j].score;
        return s;
    }
    for (int i = 0; i < N_H; i++) {
        pvg_status st = pvg_model_similar(m, item_name[i], N_ITEMS, out, &n, NULL);
        assert_int_equal(st, PVG_OK);
        for (size_t j = 0; j < n; j++)
            if (atoi(out[j].item + 2) < N_H && strncmp(out[j].item, "it", 2) == 0)
                s += out[j].score;
    }
    return s;
}

/* The public catalogue text of the DP runs (NULL: none), parallel to
 * item_name, and the mechanism the DP model must report ("": any). */
static const char *const *g_titles;
static const char *g_mechanism = "";

/* Titles in four families of alike items (a shared noun), each item with
 * a word of its own: H's items spread over the families. */
static const char *const *catalog_titles(void)
{
    static char buf[N_ITEMS][40];
    static const char *t[N_ITEMS];
    static const char *fam[4] = {"ceramic mug", "garden spade", "wool scarf", "desk lamp"};
    static const char *own[6] = {"red", "blue", "green", "large", "small", "striped"};
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(buf[i], sizeof buf[i], "%s %s", own[i / 4], fam[i % 4]);
        t[i] = buf[i];
    }
    return t;
}

/* Trains type on ds with (eps, DELTA)-DP (eps 0: without DP), noise from
 * a generator seeded with seed; the statistic, and the epsilon the model
 * claims in *claimed. Returns 0 when the type has no DP trainer. */
static int run_once(const pvg_dataset *ds, pvg_model_type type, double eps, uint64_t seed,
                    double *stat, double *claimed)
{
    pvg_train_params p;
    pvg_train_params_default(type, &p);
    p.seed = seed;
    if (type == PVG_MODEL_IALS) {
        p.factors = 8;
        p.epochs = 4;
    }
    pvg_rng *rng = NULL;
    if (eps > 0) {
        rng = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
        assert_non_null(rng);
        p.dp_epsilon = eps;
        p.dp_delta = DELTA;
        p.dp_max_items = N_H; /* the heavy shopper's whole basket counts: the strongest audit */
        p.dp_rng = rng;
        p.dp_allow_insecure_rng = 1;
        /* the public vocabulary (the shop's catalog): the same in both worlds */
        static const char *catalog[N_ITEMS];
        for (int i = 0; i < N_ITEMS; i++)
            catalog[i] = item_name[i];
        p.dp_items = catalog;
        p.dp_n_items = N_ITEMS;
        p.dp_item_titles = g_titles;
    }
    pvg_model *m = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_model_train(ds, &p, &m, NULL, &err);
    pvg_rng_free(rng);
    pvg_model_dp_info di;
    memset(&di, 0, sizeof di);
    if (st == PVG_OK) assert_int_equal(pvg_model_dp_info_get(m, &di, NULL), PVG_OK);
    if (st == PVG_ERR_UNSUPPORTED || (st == PVG_OK && eps > 0 && !di.is_dp)) {
        pvg_model_free(m);
        return 0;
    }
    if (st != PVG_OK) fprintf(stderr, "train %s: %s\n", pvg_model_type_name(type), err.text);
    assert_int_equal(st, PVG_OK);
    if (eps > 0 && g_mechanism[0]) assert_string_equal(di.mechanism, g_mechanism);
    *claimed = di.is_dp ? di.epsilon : 0;
    *stat = statistic(m);
    pvg_model_free(m);
    return 1;
}

/* The audit of type at eps (0: no DP): the epsilon lower bound, or -1
 * when the type has no DP trainer. */
static double audit_type(pvg_model_type type, double eps, int trials, double *claimed)
{
    pvg_dataset *d0 = make_dataset(0), *d1 = make_dataset(1);
    double *s0 = calloc((size_t)trials, sizeof *s0), *s1 = calloc((size_t)trials, sizeof *s1);
    assert_non_null(s0);
    assert_non_null(s1);
    double e = -1;
    *claimed = 0;
    int ok = 1;
    for (int t = 0; t < trials && ok; t++) {
        double c0 = 0, c1 = 0;
        /* distinct seeds on each side: the runs are independent */
        ok = run_once(d0, type, eps, 1000003ull * (uint64_t)t + 1, &s0[t], &c0) &&
             run_once(d1, type, eps, 1000003ull * (uint64_t)t + 2, &s1[t], &c1);
        if (ok) *claimed = c0 > c1 ? c0 : c1;
    }
    if (ok) e = audit(s0, s1, trials);
    free(s0);
    free(s1);
    pvg_dataset_free(d0);
    pvg_dataset_free(d1);
    return e;
}

static int n_audited;

static void dp_audit_at(pvg_model_type type, double eps, int trials)
{
    double claimed = 0;
    double e = audit_type(type, eps, trials, &claimed);
    if (e < 0) {
        fprintf(stderr, "%s: no DP trainer (not audited)\n", pvg_model_type_name(type));
        return;
    }
    n_audited++;
    fprintf(stderr,
            "DP %s%s, claimed epsilon %.3g: empirical lower bound %.3f (%d runs each side)\n",
            pvg_model_type_name(type), g_titles ? " with titles" : "", claimed, e, trials);
    assert_true(claimed > 0 && claimed <= eps + 1e-9);
    assert_true(e <= claimed);
}

static void dp_audit(pvg_model_type type, int trials)
{
    dp_audit_at(type, CLAIMED_EPS, trials);
}

static void test_mia_dp_popularity(void **state)
{
    (void)state;
    dp_audit(PVG_MODEL_POPULARITY, TRIALS);
}

static void test_mia_dp_itemknn(void **state)
{
    (void)state;
    dp_audit(PVG_MODEL_ITEMKNN, TRIALS);
}

static void test_mia_dp_ease(void **state)
{
    (void)state;
    dp_audit(PVG_MODEL_EASE, TRIALS);
}

/* DP-EASE with catalogue text at epsilon 6 (above the threshold below
 * which only the popularity is released): the Gram projected on the
 * text's basis, clipped after the projection, the mechanism checked on
 * every run. A perfect distinguisher over 500 + 500 runs would prove about
 * 4.9. On this small shop the spectral cut (2.5 sigma sqrt(k)) keeps
 * little of the noisy Gram, so the audit is weak: it also passed with the
 * clipping removed. It checks the path end to end, not the sensitivity
 * (test_content's neighbouring test does that). */
static void test_mia_dp_ease_titles(void **state)
{
    (void)state;
    g_titles = catalog_titles();
    g_mechanism = "dp-ease/discrete-gaussian-projected-gram+text";
    dp_audit_at(PVG_MODEL_EASE, 6.0, TRIALS);
    g_titles = NULL;
    g_mechanism = "";
}

static void test_mia_dp_ials(void **state)
{
    (void)state;
    dp_audit(PVG_MODEL_IALS, 400);
}

/* At least one DP trainer was audited (the test is not vacuous). */
static void test_mia_some_audited(void **state)
{
    (void)state;
    assert_true(n_audited >= 1);
}

/* The companion: the same audit of models trained without DP finds the
 * heavy shopper, with a bound above the epsilon the DP models claim. */
static void test_mia_nonprivate_fails(void **state)
{
    (void)state;
    const pvg_model_type types[] = {PVG_MODEL_POPULARITY, PVG_MODEL_ITEMKNN, PVG_MODEL_EASE};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        double claimed = 0;
        double e = audit_type(types[i], 0, TRIALS, &claimed);
        fprintf(stderr, "non-private %s: empirical lower bound %.3f\n",
                pvg_model_type_name(types[i]), e);
        assert_true(claimed == 0);
        assert_true(e > CLAIMED_EPS);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clopper_pearson),    cmocka_unit_test(test_mia_dp_popularity),
        cmocka_unit_test(test_mia_dp_itemknn),     cmocka_unit_test(test_mia_dp_ease),
        cmocka_unit_test(test_mia_dp_ease_titles), cmocka_unit_test(test_mia_dp_ials),
        cmocka_unit_test(test_mia_some_audited),   cmocka_unit_test(test_mia_nonprivate_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
