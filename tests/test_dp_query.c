/*
 * test_dp_query.c - neighbouring-dataset tests of the query engine's
 * sensitivities: for every statistic (count, sum of values, sum of events,
 * mean, histogram, grouped count/sum, top-items) a store D is built, the
 * statistic released with negligible noise, one shopper with the worst-case
 * contribution added (D'), the statistic released again, and the move
 * |f(D') - f(D)| (L1 over groups for Laplace, L2 for Gaussian) compared with
 * the sensitivity the noise was calibrated to: it must not exceed it, and it
 * must come within 1% of it (so a sensitivity that is too small fails, and
 * one that is far too large is noticed).
 *
 * The sensitivity "used" is read back from the noise itself where it can be:
 * for Laplace noise, noise_scale * epsilon_of_the_values, from a separate
 * run at a moderate epsilon (the scale does not depend on the data), so the
 * check does not trust the reported figure alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/query.h>
#include <privguide/store.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *make_store(void)
{
    char tmpl[] = "/tmp/pvg_dp_query_XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *dir = malloc(strlen(d) + 8);
    sprintf(dir, "%s/data", d);
    pvg_error err;
    pvg_status st = pvg_store_init(dir, NULL, &err);
    if (st != PVG_OK) print_error("init: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    return dir;
}

static void rm_store(char *dir)
{
    char cmd[600];
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
    free(dir);
}

static int seq = 0;

static void put(pvg_store *s, const char *user, const char *item, double qty, double amount)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.ts = 1300000000 + seq;
    e.item = item;
    e.quantity = qty;
    e.amount = amount;
    e.country = "UK";
    e.fields = PVG_FIELD_QUANTITY | PVG_FIELD_AMOUNT | PVG_FIELD_COUNTRY;
    int outcome;
    pvg_error err;
    char key[64];
    snprintf(key, sizeof key, "k%d", seq++);
    pvg_status st = pvg_store_event_put(s, user, &e, key, &outcome, &err);
    if (st != PVG_OK) print_error("event_put: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
}

#define NCAT 5
#define NBASE 51

/* D: five items I0..I4 in categories c0..c4; 51 shoppers each buy every item
 * once (quantity 1, amount 10). */
static pvg_store *make_base(char **dirp)
{
    char *dir = make_store();
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    for (int c = 0; c < NCAT; c++) {
        pvg_item it;
        memset(&it, 0, sizeof it);
        char id[16], cat[16];
        snprintf(id, sizeof id, "I%d", c);
        snprintf(cat, sizeof cat, "c%d", c);
        it.price = -1;
        it.ext_id = id;
        it.category = cat;
        assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    }
    assert_int_equal(pvg_store_begin(s, &err), PVG_OK);
    for (int u = 0; u < NBASE; u++) {
        char name[32];
        snprintf(name, sizeof name, "base%d", u);
        for (int c = 0; c < NCAT; c++) {
            char id[16];
            snprintf(id, sizeof id, "I%d", c);
            put(s, name, id, 1, 10);
        }
    }
    assert_int_equal(pvg_store_commit(s, &err), PVG_OK);
    assert_int_equal(pvg_ledger_set_budget(s, PVG_LEDGER_DEFAULT_DATASET, 1e12, 0.5, &err), PVG_OK);
    *dirp = dir;
    return s;
}

/* The worst-case shopper: `per_item` purchases of each of the first `items`
 * items, quantity qty[i % nq], amount amt. */
static void add_shopper(pvg_store *s, int items, int per_item, const double *qty, int nq,
                        double amt)
{
    pvg_error err;
    assert_int_equal(pvg_store_begin(s, &err), PVG_OK);
    for (int c = 0; c < items; c++) {
        char id[16];
        snprintf(id, sizeof id, "I%d", c);
        for (int k = 0; k < per_item; k++)
            put(s, "worst", id, qty[c % nq], amt);
    }
    assert_int_equal(pvg_store_commit(s, &err), PVG_OK);
}

static pvg_query_result *run(pvg_store *s, pvg_query_spec sp, double eps, pvg_rng *rng)
{
    pvg_error err;
    pvg_query_result *r = NULL;
    sp.epsilon = eps;
    sp.allow_insecure_rng = 1;
    pvg_status st = pvg_query_run(s, &sp, rng, &r, &err);
    if (st != PVG_OK) print_error("query: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    return r;
}

/* the statistic whose noise the check reads: the sum for sum/mean, else the row value */
static double stat_of(const pvg_query_spec *sp, const pvg_query_row *row)
{
    if (sp->kind == PVG_QUERY_MEAN) return row->value * (row->count < 1 ? 1 : row->count);
    return row->value;
}

/* move of the statistic between two results, matched by group; norm 1 or 2.
 * *cnt_move: the same for the mean's denominator. */
static double move(const pvg_query_spec *sp, const pvg_query_result *a, const pvg_query_result *b,
                   int norm, double *cnt_move)
{
    double acc = 0, cacc = 0;
    assert_int_equal(a->n_rows, b->n_rows);
    for (size_t i = 0; i < a->n_rows; i++) {
        if (a->rows[i].group) assert_string_equal(a->rows[i].group, b->rows[i].group);
        double d = fabs(stat_of(sp, &b->rows[i]) - stat_of(sp, &a->rows[i]));
        double dc = fabs(b->rows[i].count - a->rows[i].count);
        acc += norm == 1 ? d : d * d;
        cacc += norm == 1 ? dc : dc * dc;
    }
    if (cnt_move) *cnt_move = norm == 1 ? cacc : sqrt(cacc);
    return norm == 1 ? acc : sqrt(acc);
}

typedef struct nb_case {
    const char *name;
    pvg_query_spec sp;
    int items, per_item; /* the worst-case shopper */
    double qty[NCAT];
    int nq;
    double amt;
    double expect;       /* the sensitivity derived by hand for this case */
    double expect_count; /* mean: the denominator's */
} nb_case;

/* eps_values: the share of epsilon the noise of the statistic gets */
static double value_share(const pvg_query_spec *sp)
{
    int grouped = sp->kind == PVG_QUERY_TOP_ITEMS ||
                  (sp->group_by != PVG_QUERY_GROUP_NONE && sp->kind != PVG_QUERY_HISTOGRAM);
    double f = sp->kind == PVG_QUERY_TOP_ITEMS ? 1 : grouped ? 0.5 : 1;
    if (sp->kind == PVG_QUERY_MEAN) f /= 2;
    return f;
}

static void check_case(const nb_case *c)
{
    char *dir;
    pvg_store *s = make_base(&dir);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(77);
    int gauss = c->sp.noise == PVG_QUERY_NOISE_GAUSSIAN;
    int norm = gauss ? 2 : 1;
    /* the sensitivity the noise is calibrated to, read from the noise */
    pvg_query_result *cal = run(s, c->sp, 1.0, rng);
    double used = cal->sensitivity;
    if (!gauss) {
        double from_noise = cal->noise_scale * 1.0 * value_share(&c->sp);
        assert_true(fabs(from_noise - used) <= 1e-4 * used + 1e-5);
    }
    double used_count = cal->count_sensitivity;
    pvg_query_result_free(cal);
    /* the move itself: negligible Laplace noise; for Gaussian noise (no such
     * regime at a sane epsilon) the same seed for both runs, so each group
     * gets the same noise draw (groups appear in the same order and the
     * samplers' use of randomness does not depend on the value) and only the
     * grid rounding (< scale / 2^9 per group) remains */
    double eps = gauss ? 10 : 1e7;
    pvg_rng *ra = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    pvg_query_result *a = run(s, c->sp, eps, ra);
    add_shopper(s, c->items, c->per_item, c->qty, c->nq, c->amt);
    pvg_rng *rb = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    pvg_query_result *b = run(s, c->sp, eps, rb);
    pvg_rng_free(ra);
    pvg_rng_free(rb);
    double cnt_move = 0;
    double mv = move(&c->sp, a, b, norm, &cnt_move);
    double k = (double)a->n_rows;
    double tol = gauss ? sqrt(k) * a->noise_scale / 1024 + 1e-9 * used
                       : 2 * 40 * k * a->noise_scale + 1e-9 * used;
    print_message("%-34s move %-10g sensitivity used %-10g (derived %g) tol %g\n", c->name, mv,
                  used, c->expect, tol);
    assert_true(tol < 0.01 * used);
    assert_true(fabs(used - c->expect) <= 1e-9 * c->expect);
    assert_true(mv <= used + tol);        /* the bound holds */
    assert_true(mv >= 0.99 * used - tol); /* and is attained */
    if (c->sp.kind == PVG_QUERY_MEAN) {
        print_message("%-34s denominator move %g, sensitivity %g\n", "", cnt_move, used_count);
        assert_true(fabs(used_count - c->expect_count) <= 1e-9 * c->expect_count);
        assert_true(cnt_move <= used_count + 0.01);
        assert_true(cnt_move >= 0.99 * used_count - 0.01);
    }
    pvg_query_result_free(a);
    pvg_query_result_free(b);
    pvg_rng_free(rng);
    pvg_store_free(s);
    rm_store(dir);
}

static pvg_query_spec spec(pvg_query_kind kind, pvg_query_value value, pvg_query_group g)
{
    pvg_query_spec sp;
    pvg_query_spec_init(&sp);
    sp.kind = kind;
    sp.value = value;
    sp.group_by = g;
    if (g != PVG_QUERY_GROUP_NONE || kind == PVG_QUERY_TOP_ITEMS) sp.delta = 1e-6;
    return sp;
}

static void nb_count(void **state)
{
    (void)state;
    nb_case c = {"count", spec(PVG_QUERY_COUNT, PVG_QUERY_VALUE_QUANTITY, PVG_QUERY_GROUP_NONE),
                 1,       15,
                 {1},     1,
                 10,      10,
                 0};
    check_case(&c); /* 15 purchases, at most m = 10 kept */
}

static void nb_count_grouped(void **state)
{
    (void)state;
    nb_case c = {"count by category",
                 spec(PVG_QUERY_COUNT, PVG_QUERY_VALUE_QUANTITY, PVG_QUERY_GROUP_CATEGORY),
                 NCAT,
                 12,
                 {1},
                 1,
                 10,
                 10 * NCAT,
                 0};
    check_case(&c); /* G = 5 groups x m = 10 */
}

static void nb_sum_values(void **state)
{
    (void)state;
    nb_case c = {"sum amount clamp 0:100 by category",
                 spec(PVG_QUERY_SUM, PVG_QUERY_VALUE_AMOUNT, PVG_QUERY_GROUP_CATEGORY),
                 NCAT,
                 10,
                 {1},
                 1,
                 500,
                 10 * 100 * NCAT,
                 0};
    c.sp.has_clamp = 1;
    c.sp.clamp_lo = 0;
    c.sp.clamp_hi = 100;
    check_case(&c);
}

static void nb_sum_values_negative(void **state)
{
    (void)state;
    /* clamp -300:100: the farther end is -300 */
    nb_case c = {"sum amount clamp -300:100",
                 spec(PVG_QUERY_SUM, PVG_QUERY_VALUE_AMOUNT, PVG_QUERY_GROUP_NONE),
                 1,
                 10,
                 {1},
                 1,
                 -1000,
                 10 * 300,
                 0};
    c.sp.has_clamp = 1;
    c.sp.clamp_lo = -300;
    c.sp.clamp_hi = 100;
    check_case(&c);
}

static void nb_sum_events(void **state)
{
    (void)state;
    /* Finding 1: with --clamp 100:200 every shopper adds clamp(c, 100, 200) >= 100;
     * the old sensitivity min(m, hi) = 10 was 10x too small. */
    nb_case c = {"sum events clamp 100:200 m 10",
                 spec(PVG_QUERY_SUM, PVG_QUERY_VALUE_EVENTS, PVG_QUERY_GROUP_NONE),
                 1,
                 1,
                 {1},
                 1,
                 10,
                 100,
                 0};
    c.sp.has_clamp = 1;
    c.sp.clamp_lo = 100;
    c.sp.clamp_hi = 200;
    check_case(&c);
    /* m = 250: a shopper with 250 events adds clamp(250) = 200 */
    nb_case d = {"sum events clamp 100:200 m 250",
                 spec(PVG_QUERY_SUM, PVG_QUERY_VALUE_EVENTS, PVG_QUERY_GROUP_NONE),
                 1,
                 250,
                 {1},
                 1,
                 10,
                 200,
                 0};
    d.sp.has_clamp = 1;
    d.sp.clamp_lo = 100;
    d.sp.clamp_hi = 200;
    d.sp.max_contributions = 250;
    check_case(&d);
    /* default clamp 0:m with m = 10 */
    nb_case e = {"sum events default clamp",
                 spec(PVG_QUERY_SUM, PVG_QUERY_VALUE_EVENTS, PVG_QUERY_GROUP_CATEGORY),
                 NCAT,
                 30,
                 {1},
                 1,
                 10,
                 10 * NCAT,
                 0};
    check_case(&e);
}

static void nb_mean(void **state)
{
    (void)state;
    /* mean of events per user: sum moves by clamp(c), the user count by 1 */
    nb_case c = {"mean events clamp 100:200",
                 spec(PVG_QUERY_MEAN, PVG_QUERY_VALUE_EVENTS, PVG_QUERY_GROUP_NONE),
                 1,
                 3,
                 {1},
                 1,
                 10,
                 100,
                 1};
    c.sp.has_clamp = 1;
    c.sp.clamp_lo = 100;
    c.sp.clamp_hi = 200;
    check_case(&c);
    /* mean quantity: sum by m hi, event count by m */
    nb_case d = {"mean quantity clamp 0:7",
                 spec(PVG_QUERY_MEAN, PVG_QUERY_VALUE_QUANTITY, PVG_QUERY_GROUP_NONE),
                 1,
                 10,
                 {9},
                 1,
                 10,
                 10 * 7,
                 10};
    d.sp.has_clamp = 1;
    d.sp.clamp_lo = 0;
    d.sp.clamp_hi = 7;
    check_case(&d);
}

static void nb_histogram(void **state)
{
    (void)state;
    /* bins [0,1), [1,2), ...: the shopper fills 5 bins with 10 events each */
    nb_case c = {"histogram quantity 0:10",
                 spec(PVG_QUERY_HISTOGRAM, PVG_QUERY_VALUE_QUANTITY, PVG_QUERY_GROUP_NONE),
                 NCAT,
                 10,
                 {0.5, 2.5, 4.5, 6.5, 8.5},
                 NCAT,
                 10,
                 10 * NCAT,
                 0};
    c.sp.has_clamp = 1;
    c.sp.clamp_lo = 0;
    c.sp.clamp_hi = 10;
    check_case(&c);
}

static void nb_top_items(void **state)
{
    (void)state;
    nb_case c = {"top-items",
                 spec(PVG_QUERY_TOP_ITEMS, PVG_QUERY_VALUE_QUANTITY, PVG_QUERY_GROUP_NONE),
                 NCAT,
                 3,
                 {1},
                 1,
                 10,
                 NCAT,
                 0};
    check_case(&c); /* user counts: +1 in each of G = 5 items */
}

static void nb_gaussian(void **state)
{
    (void)state;
    nb_case c = {"gaussian sum amount by category",
                 spec(PVG_QUERY_SUM, PVG_QUERY_VALUE_AMOUNT, PVG_QUERY_GROUP_CATEGORY),
                 NCAT,
                 10,
                 {1},
                 1,
                 500,
                 10 * 100 * sqrt(NCAT),
                 0};
    c.sp.has_clamp = 1;
    c.sp.clamp_lo = 0;
    c.sp.clamp_hi = 100;
    c.sp.noise = PVG_QUERY_NOISE_GAUSSIAN;
    check_case(&c);
    nb_case d = {"gaussian count by category",
                 spec(PVG_QUERY_COUNT, PVG_QUERY_VALUE_QUANTITY, PVG_QUERY_GROUP_CATEGORY),
                 NCAT,
                 10,
                 {1},
                 1,
                 10,
                 10 * sqrt(NCAT),
                 0};
    d.sp.noise = PVG_QUERY_NOISE_GAUSSIAN;
    check_case(&d);
}

/* the sensitivity functions themselves, against hand derivations */
static void sens_functions(void **state)
{
    (void)state;
    pvg_query_sensitivity s = pvg_query_sensitivity_sum_events(10, 1, 100, 200);
    assert_true(s.per_group == 100 && s.l1 == 100);
    s = pvg_query_sensitivity_sum_events(250, 4, 100, 200);
    assert_true(s.per_group == 200 && s.l1 == 800 && fabs(s.l2 - 400) < 1e-12);
    s = pvg_query_sensitivity_sum_events(10, 1, 0, 10);
    assert_true(s.per_group == 10);
    s = pvg_query_sensitivity_sum_events(10, 1, -50, -20); /* clamp(c) = -20 */
    assert_true(s.per_group == 20);
    s = pvg_query_sensitivity_sum_values(5, 3, -7, 2);
    assert_true(s.per_group == 35 && s.l1 == 105);
    s = pvg_query_sensitivity_count(10, 9);
    assert_true(s.l1 == 90 && fabs(s.l2 - 30) < 1e-12);
    s = pvg_query_sensitivity_users(4);
    assert_true(s.l1 == 4 && s.l2 == 2);
}

/* --quantile 0 (or 1) is refused and nothing is charged; it used to become
 * the median silently. */
static void quantile_bounds_refused(void **state)
{
    (void)state;
    char *dir;
    pvg_store *s = make_base(&dir);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    pvg_query_spec sp = spec(PVG_QUERY_QUANTILE, PVG_QUERY_VALUE_QUANTITY, PVG_QUERY_GROUP_NONE);
    sp.has_clamp = 1;
    sp.clamp_lo = 0;
    sp.clamp_hi = 10;
    sp.epsilon = 1;
    sp.allow_insecure_rng = 1;
    pvg_error err;
    pvg_query_result *r = NULL;
    const double bad[] = {0, 1, -0.1};
    for (int i = 0; i < 3; i++) {
        sp.quantile = bad[i];
        assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_ERR_INVALID);
        assert_null(r);
        assert_non_null(strstr(err.text, "quantile"));
    }
    pvg_ledger_summary sum;
    assert_int_equal(pvg_ledger_summary_get(s, PVG_LEDGER_DEFAULT_DATASET, &sum, &err), PVG_OK);
    assert_int_equal(sum.releases, 0);
    sp.quantile = 0.5; /* the default from pvg_query_spec_init still works */
    pvg_query_spec d;
    pvg_query_spec_init(&d);
    assert_true(d.quantile == 0.5);
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_OK);
    pvg_query_result_free(r);
    pvg_rng_free(rng);
    pvg_store_free(s);
    rm_store(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sens_functions),
        cmocka_unit_test(nb_count),
        cmocka_unit_test(nb_count_grouped),
        cmocka_unit_test(nb_sum_values),
        cmocka_unit_test(nb_sum_values_negative),
        cmocka_unit_test(nb_sum_events),
        cmocka_unit_test(nb_mean),
        cmocka_unit_test(nb_histogram),
        cmocka_unit_test(nb_top_items),
        cmocka_unit_test(nb_gaussian),
        cmocka_unit_test(quantile_bounds_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
