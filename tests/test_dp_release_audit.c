/*
 * test_dp_release_audit.c - the DP popular list (top-k) and DP item
 * co-occurrence of release.h: public domains, contribution bounding,
 * sensitivities, serialisation, and an empirical privacy audit.
 *
 * Audit. Neighbouring datasets D and D' = D + one shopper with the
 * worst-case contribution (m items, or the one item that maximises the
 * exponential mechanism's ratio). Each mechanism runs N = 10^5 times on each
 * (2 10^4 when PVG_SANITIZED=1), a distinguishing event E of the released
 * output is counted, and
 *   eps_lb = log((P_lo(E | D') - delta) / P_hi(E | D))
 * with exact Clopper-Pearson bounds at alpha = 1e-6 on each probability
 * (tests/t_audit_cp.c). The test fails if eps_lb exceeds the epsilon the
 * release charges. The events are chosen so the point estimate comes close
 * to the claim for the pure-DP mechanisms (asserted: the audit has power),
 * so a noise scale computed for sensitivity 1 instead of m (a likelihood
 * ratio of e^(m eps)) fails it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/dp.h>
#include <privguide/release.h>

#include "t_audit_cp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALPHA 1e-6

static long n_runs(void)
{
    return getenv("PVG_SANITIZED") ? 20000 : 100000;
}

static void cp_interval_is_exact(void **state)
{
    double lo, hi;
    /* reference values (R: binom.test(50, 100)$conf.int, binom.test(3, 10)) */
    t_clopper_pearson(50, 100, 0.05, &lo, &hi);
    assert_true(fabs(lo - 0.3983211) < 1e-6);
    assert_true(fabs(hi - 0.6016789) < 1e-6);
    t_clopper_pearson(3, 10, 0.05, &lo, &hi);
    assert_true(fabs(lo - 0.06673951) < 1e-7);
    assert_true(fabs(hi - 0.65245285) < 1e-7);
    t_clopper_pearson(0, 100, 0.05, &lo, &hi);
    assert_true(lo == 0 && fabs(hi - 0.03621669) < 1e-6);
    /* the bound: 2000/10^5 against 1000/10^5 is about log 2, the lower bound below */
    double hat, lb = t_eps_lower_bound(2000, 100000, 1000, 100000, 0, ALPHA, &hat);
    assert_true(fabs(hat - log(2)) < 1e-9);
    assert_true(lb < hat && lb > 0.4);
}

/* ---- public domain and bounding --------------------------------------------- */

static void popular_draws_only_from_the_public_domain(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(11);
    const int64_t cand[] = {10, 20, 30};
    pvg_dp_item_counts *c;
    assert_int_equal(pvg_dp_item_counts_new(cand, 3, 2, &c, NULL), PVG_OK);
    /* a shopper who bought only an item outside the catalog ("ZZZ-secret") */
    const int64_t secret[] = {999, 999, 999};
    for (int i = 0; i < 5; i++)
        assert_int_equal(pvg_dp_item_counts_add_user(c, rng, secret, 3, NULL), PVG_OK);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(pvg_dp_item_counts_exact(c, i), 0);
    const pvg_dp_release_mech mechs[] = {PVG_DP_RELEASE_DEFAULT, PVG_DP_RELEASE_GAUSSIAN,
                                         PVG_DP_RELEASE_LAPLACE,
                                         PVG_DP_RELEASE_EXPONENTIAL_PEELING};
    for (int mi = 0; mi < 4; mi++)
        for (int rep = 0; rep < 50; rep++) {
            pvg_dp_popular_params p;
            pvg_dp_popular_params_init(&p);
            p.k = 3;
            p.mechanism = mechs[mi];
            p.allow_insecure_rng = 1;
            pvg_dp_popular *r;
            assert_int_equal(pvg_dp_popular_release(c, rng, &p, &r, NULL), PVG_OK);
            assert_int_equal(r->n, 3);
            int seen = 0; /* every candidate, whatever the data: k = n */
            for (size_t i = 0; i < 3; i++) {
                assert_true(r->items[i].item == 10 || r->items[i].item == 20 ||
                            r->items[i].item == 30);
                seen |= 1 << (r->items[i].item / 10 - 1);
            }
            assert_int_equal(seen, 7);
            pvg_dp_popular_free(r);
        }
    /* the deterministic generator is refused unless allowed */
    pvg_dp_popular_params p;
    pvg_dp_popular_params_init(&p);
    p.k = 1;
    pvg_dp_popular *r = NULL;
    assert_int_equal(pvg_dp_popular_release(c, rng, &p, &r, NULL), PVG_ERR_POLICY);
    assert_null(r);
    pvg_dp_item_counts_free(c);
    /* duplicate candidates are refused */
    const int64_t dup[] = {1, 2, 1};
    pvg_error err;
    assert_int_equal(pvg_dp_item_counts_new(dup, 3, 2, &c, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "item id 1"));
    pvg_rng_free(rng);
}

static void bounding_keeps_a_uniform_m_subset(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(12);
    int64_t cand[10];
    for (int i = 0; i < 10; i++)
        cand[i] = 100 + i;
    pvg_dp_item_counts *c;
    assert_int_equal(pvg_dp_item_counts_new(cand, 10, 4, &c, NULL), PVG_OK);
    /* every shopper bought all 10 items, several times, plus unknown ones */
    int64_t basket[25];
    for (int i = 0; i < 25; i++)
        basket[i] = i < 20 ? 100 + (i * 7) % 10 : 5000 + i;
    const int shoppers = 2000;
    for (int s = 0; s < shoppers; s++)
        assert_int_equal(pvg_dp_item_counts_add_user(c, rng, basket, 25, NULL), PVG_OK);
    int64_t total = 0;
    for (size_t i = 0; i < 10; i++) {
        int64_t v = pvg_dp_item_counts_exact(c, i);
        total += v;
        /* expectation 800, sd 22: +-110 is five sd */
        assert_true(v > 690 && v < 910);
    }
    assert_int_equal(total, 4 * shoppers); /* exactly m per shopper */
    pvg_dp_item_counts_free(c);
    /* fewer than m distinct: every one kept once */
    assert_int_equal(pvg_dp_item_counts_new(cand, 10, 4, &c, NULL), PVG_OK);
    const int64_t few[] = {101, 101, 105, 101};
    assert_int_equal(pvg_dp_item_counts_add_user(c, rng, few, 4, NULL), PVG_OK);
    assert_int_equal(pvg_dp_item_counts_exact(c, 1), 1);
    assert_int_equal(pvg_dp_item_counts_exact(c, 5), 1);
    assert_int_equal(pvg_dp_item_counts_exact(c, 0), 0);
    pvg_dp_item_counts_free(c);
    pvg_rng_free(rng);
}

/* ---- sensitivities ---------------------------------------------------------- */

static void noise_is_calibrated_to_the_bound_m(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(13);
    int64_t cand[40];
    for (int i = 0; i < 40; i++)
        cand[i] = i;
    for (int64_t m = 1; m <= 32; m *= 2) {
        pvg_dp_item_counts *c;
        assert_int_equal(pvg_dp_item_counts_new(cand, 40, m, &c, NULL), PVG_OK);
        pvg_dp_popular_params p;
        pvg_dp_popular_params_init(&p);
        p.allow_insecure_rng = 1;
        p.k = 5;
        pvg_dp_popular *r;
        /* Laplace: L1 = m, scale >= m / eps */
        p.mechanism = PVG_DP_RELEASE_LAPLACE;
        p.epsilon = 0.5;
        assert_int_equal(pvg_dp_popular_release(c, rng, &p, &r, NULL), PVG_OK);
        assert_true(r->info.l1_sensitivity == (double)m);
        assert_true(r->info.noise_scale >= (double)m / 0.5);
        assert_true(r->info.noise_scale < (double)m / 0.5 * 1.0001);
        assert_true(r->info.epsilon == 0.5 && r->info.delta == 0);
        assert_int_equal(r->info.max_items_per_user, m);
        pvg_dp_popular_free(r);
        /* Gaussian: L2^2 = m; the vector is rho-zCDP with rho = m / (2 sigma^2),
         * which must convert to at most eps (and not far below: no waste) */
        p.mechanism = PVG_DP_RELEASE_GAUSSIAN;
        p.epsilon = 1;
        p.delta = 1e-7;
        assert_int_equal(pvg_dp_popular_release(c, rng, &p, &r, NULL), PVG_OK);
        double s = r->info.noise_scale;
        assert_true(fabs(r->info.l2_sensitivity - sqrt((double)m)) < 1e-12);
        assert_true(pvg_dp_zcdp_to_epsilon((double)m / (2 * s * s), 1e-7) <= 1.0);
        assert_true(pvg_dp_zcdp_to_epsilon((double)m / (2 * s * s), 1e-7) > 0.999);
        /* for m > 1 a sigma computed for sensitivity 1 would break the claim */
        if (m > 1) {
            double s1 = s / sqrt((double)m);
            assert_true(pvg_dp_zcdp_to_epsilon((double)m / (2 * s1 * s1), 1e-7) > 1.2);
        }
        assert_true(r->info.delta == 1e-7);
        pvg_dp_popular_free(r);
        /* additive noise refuses an unbounded m; the exponential mechanisms
         * need none */
        pvg_dp_item_counts_free(c);
    }
    pvg_dp_item_counts *c;
    assert_int_equal(pvg_dp_item_counts_new(cand, 40, PVG_DP_UNBOUNDED_ITEMS, &c, NULL), PVG_OK);
    pvg_dp_popular_params p;
    pvg_dp_popular_params_init(&p);
    p.allow_insecure_rng = 1;
    p.mechanism = PVG_DP_RELEASE_GAUSSIAN;
    pvg_dp_popular *r = NULL;
    assert_int_equal(pvg_dp_popular_release(c, rng, &p, &r, NULL), PVG_ERR_INVALID);
    p.mechanism = PVG_DP_RELEASE_DEFAULT;
    assert_int_equal(pvg_dp_popular_release(c, rng, &p, &r, NULL), PVG_OK);
    assert_string_equal(r->info.mechanism, "exponential-monotone-top-k");
    assert_true(r->info.epsilon <= 1.0 && r->info.delta <= 1e-7);
    pvg_dp_popular_free(r);
    pvg_dp_item_counts_free(c);

    /* co-occurrence: m items + m(m-1)/2 pairs */
    pvg_dp_cooc_counts *cc;
    assert_int_equal(pvg_dp_cooc_counts_new(cand, 40, 4, &cc, NULL), PVG_OK);
    pvg_dp_cooc_params cp;
    pvg_dp_cooc_params_init(&cp);
    cp.allow_insecure_rng = 1;
    cp.mechanism = PVG_DP_RELEASE_LAPLACE;
    pvg_dp_cooc *cr;
    assert_int_equal(pvg_dp_cooc_release(cc, rng, &cp, &cr, NULL), PVG_OK);
    assert_true(cr->info.l1_sensitivity == 10);
    assert_true(cr->info.noise_scale >= 10);
    pvg_dp_cooc_free(cr);
    cp.mechanism = PVG_DP_RELEASE_DEFAULT;
    assert_int_equal(pvg_dp_cooc_release(cc, rng, &cp, &cr, NULL), PVG_OK);
    double s = cr->info.noise_scale;
    assert_string_equal(cr->info.mechanism, "discrete-gaussian-cooc");
    assert_true(pvg_dp_zcdp_to_epsilon(10 / (2 * s * s), 1e-7) <= 1.0);
    pvg_dp_cooc_free(cr);
    pvg_dp_cooc_counts_free(cc);
    pvg_rng_free(rng);
}

/* ---- the audit: popular list ---------------------------------------------- */

typedef struct audit_out {
    double lb, hat;
} audit_out;

/* Builds counts over cand[0..n) from `shoppers` copies of basket, plus (when
 * extra) one more shopper with basket x. */
static pvg_dp_item_counts *counts_of(pvg_rng *rng, const int64_t *cand, size_t n, int64_t m,
                                     const int64_t *basket, size_t nb, int shoppers,
                                     const int64_t *x, size_t nx)
{
    pvg_dp_item_counts *c;
    assert_int_equal(pvg_dp_item_counts_new(cand, n, m, &c, NULL), PVG_OK);
    for (int s = 0; s < shoppers; s++)
        assert_int_equal(pvg_dp_item_counts_add_user(c, rng, basket, nb, NULL), PVG_OK);
    if (x) assert_int_equal(pvg_dp_item_counts_add_user(c, rng, x, nx, NULL), PVG_OK);
    return c;
}

/* event for the exponential mechanisms: item `target` is released */
static int ev_contains(const pvg_dp_popular *r, int64_t target, int64_t base)
{
    (void)base;
    for (size_t i = 0; i < r->n; i++)
        if (r->items[i].item == target) return 1;
    return 0;
}

typedef int (*pop_event)(const pvg_dp_popular *r, int64_t arg, int64_t base);

static audit_out audit_popular(pvg_dp_item_counts *d0, pvg_dp_item_counts *d1,
                               const pvg_dp_popular_params *p, pop_event ev, int64_t arg,
                               int64_t base, double delta)
{
    /* ev returns a bit mask of up to 4 events; the best of them is kept */
    long n = n_runs(), k0[4] = {0}, k1[4] = {0};
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(0xA0D19);
    for (long i = 0; i < n; i++) {
        pvg_dp_popular *r;
        assert_int_equal(pvg_dp_popular_release(d0, rng, p, &r, NULL), PVG_OK);
        int e = ev(r, arg, base);
        for (int b = 0; b < 4; b++)
            k0[b] += e >> b & 1;
        pvg_dp_popular_free(r);
        assert_int_equal(pvg_dp_popular_release(d1, rng, p, &r, NULL), PVG_OK);
        e = ev(r, arg, base);
        for (int b = 0; b < 4; b++)
            k1[b] += e >> b & 1;
        pvg_dp_popular_free(r);
    }
    pvg_rng_free(rng);
    audit_out o = {-INFINITY, -INFINITY};
    for (int b = 0; b < 4; b++) {
        if (k1[b] == 0) continue;
        double hat, lb = t_eps_lower_bound(k1[b], n, k0[b], n, delta, ALPHA, &hat);
        if (lb > o.lb) o.lb = lb;
        if (hat > o.hat) o.hat = hat;
    }
    return o;
}

static void audit_popular_exponential(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(14);
    /* candidates 0..4; D: 3 shoppers buying 1..4 (item 0 at count 0, the
     * others at 3); D' adds one shopper buying item 0 only: the largest
     * ratio for the event "item 0 is released". */
    const int64_t cand[] = {0, 1, 2, 3, 4}, basket[] = {1, 2, 3, 4}, x[] = {0};
    pvg_dp_item_counts *d0 = counts_of(rng, cand, 5, PVG_DP_UNBOUNDED_ITEMS, basket, 4, 3, NULL, 0);
    pvg_dp_item_counts *d1 = counts_of(rng, cand, 5, PVG_DP_UNBOUNDED_ITEMS, basket, 4, 3, x, 1);
    pvg_dp_popular_params p;
    pvg_dp_popular_params_init(&p);
    p.allow_insecure_rng = 1;
    p.k = 1;
    p.epsilon = 1;
    const pvg_dp_release_mech mechs[] = {PVG_DP_RELEASE_EXPONENTIAL_MONOTONE,
                                         PVG_DP_RELEASE_EXPONENTIAL_PEELING};
    for (int mi = 0; mi < 2; mi++) {
        p.mechanism = mechs[mi];
        audit_out o = audit_popular(d0, d1, &p, ev_contains, 0, 0, 0);
        print_message("%-34s k=1 claimed eps 1  estimate %.4f  lower bound %.4f\n",
                      pvg_dp_release_mech_name(mechs[mi], 0), o.hat, o.lb);
        assert_true(o.lb <= 1.0);
        /* power: monotone's ratio here is e * (1 + 4e^3) / (e + 4e^3) = e^0.975;
         * the old peeling (exp(eps u / 2)) sits near e^0.5 */
        if (mi == 0) assert_true(o.hat >= 0.85);
    }
    /* k = 3 of 6, the zCDP route (eps 1, delta 1e-3 makes eps0 exceed eps/k) */
    pvg_dp_item_counts_free(d0);
    pvg_dp_item_counts_free(d1);
    const int64_t cand6[] = {0, 1, 2, 3, 4, 5}, basket6[] = {1, 2, 3, 4, 5};
    d0 = counts_of(rng, cand6, 6, PVG_DP_UNBOUNDED_ITEMS, basket6, 5, 2, NULL, 0);
    d1 = counts_of(rng, cand6, 6, PVG_DP_UNBOUNDED_ITEMS, basket6, 5, 2, x, 1);
    p.mechanism = PVG_DP_RELEASE_EXPONENTIAL_MONOTONE;
    p.k = 3;
    p.delta = 1e-3;
    pvg_dp_popular *r;
    assert_int_equal(pvg_dp_popular_release(d0, rng, &p, &r, NULL), PVG_OK);
    assert_true(r->info.delta == 1e-3); /* the zCDP route was taken */
    pvg_dp_popular_free(r);
    audit_out o = audit_popular(d0, d1, &p, ev_contains, 0, 0, 1e-3);
    print_message("%-34s k=3 claimed eps 1 d=1e-3  estimate %.4f  lower bound %.4f\n",
                  "exponential-monotone-top-k", o.hat, o.lb);
    assert_true(o.lb <= 1.0);
    pvg_dp_item_counts_free(d0);
    pvg_dp_item_counts_free(d1);
    pvg_rng_free(rng);
}

/* event for the additive mechanisms (k = n, so every noisy count is
 * released): all of the worst-case shopper's m items (ids 0..m-1) have a
 * noisy count >= base + 1. For the discrete Laplace its likelihood ratio is
 * exactly e^(m / b) = e^eps. */
static int ev_all_above(const pvg_dp_popular *r, int64_t m, int64_t base)
{
    int hit = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->items[i].item < m && r->items[i].noisy_count >= base + 1) hit++;
    return hit == m;
}

/* ... and for the Gaussian: the sum of those m noisy counts is >= t, for t
 * at 0, 1, 2 and 3 sd of the sum (bits 0..3) */
static double g_sd;
static int ev_sum_above(const pvg_dp_popular *r, int64_t m, int64_t base)
{
    int64_t sum = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->items[i].item < m) sum += r->items[i].noisy_count - base;
    int e = 0;
    for (int z = 0; z <= 3; z++)
        e |= (sum >= (int64_t)ceil(z * g_sd)) << z;
    return e;
}

static void audit_popular_additive(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(15);
    /* m = 4; candidates 0..7; D: 50 shoppers buying 0..7 bounded to 4 would
     * randomise, so D is 50 shoppers buying {0,1,2,3} and 50 buying {4..7};
     * D' adds one shopper buying {0,1,2,3} (m items: the worst case). */
    const int64_t cand[] = {0, 1, 2, 3, 4, 5, 6, 7}, a[] = {0, 1, 2, 3}, b[] = {4, 5, 6, 7};
    pvg_dp_item_counts *d0 = counts_of(rng, cand, 8, 4, a, 4, 50, NULL, 0);
    pvg_dp_item_counts *d1 = counts_of(rng, cand, 8, 4, a, 4, 50, a, 4);
    for (int s = 0; s < 50; s++) {
        assert_int_equal(pvg_dp_item_counts_add_user(d0, rng, b, 4, NULL), PVG_OK);
        assert_int_equal(pvg_dp_item_counts_add_user(d1, rng, b, 4, NULL), PVG_OK);
    }
    assert_int_equal(pvg_dp_item_counts_exact(d1, 0), 51);
    pvg_dp_popular_params p;
    pvg_dp_popular_params_init(&p);
    p.allow_insecure_rng = 1;
    p.k = 8;
    p.epsilon = 1;
    p.mechanism = PVG_DP_RELEASE_LAPLACE;
    audit_out o = audit_popular(d0, d1, &p, ev_all_above, 4, 50, 0);
    print_message("%-34s m=4 claimed eps 1  estimate %.4f  lower bound %.4f\n",
                  "discrete-laplace-top-k", o.hat, o.lb);
    assert_true(o.lb <= 1.0);
    assert_true(o.hat >= 0.85); /* power: a scale for sensitivity 1 would show ~4 */

    p.mechanism = PVG_DP_RELEASE_GAUSSIAN;
    p.delta = 1e-3; /* measurable with 10^5 runs */
    pvg_dp_popular *r;
    assert_int_equal(pvg_dp_popular_release(d0, rng, &p, &r, NULL), PVG_OK);
    double sigma = r->info.noise_scale;
    pvg_dp_popular_free(r);
    g_sd = 2 * sigma; /* sd of the sum of 4 */
    o = audit_popular(d0, d1, &p, ev_sum_above, 4, 50, 1e-3);
    print_message("%-34s m=4 claimed eps 1 d=1e-3  estimate %.4f  lower bound %.4f\n",
                  "discrete-gaussian-top-k", o.hat, o.lb);
    assert_true(o.lb <= 1.0);
    assert_true(o.hat > 0.1);
    pvg_dp_item_counts_free(d0);
    pvg_dp_item_counts_free(d1);
    pvg_rng_free(rng);
}

/* ---- the audit: co-occurrence ---------------------------------------------- */

/* domain {0,1,2}, m = 3; D: 60 shoppers buying all three, D' one more */
static pvg_dp_cooc_counts *cooc_of(pvg_rng *rng, int shoppers)
{
    const int64_t dom[] = {0, 1, 2};
    pvg_dp_cooc_counts *c;
    assert_int_equal(pvg_dp_cooc_counts_new(dom, 3, 3, &c, NULL), PVG_OK);
    for (int s = 0; s < shoppers; s++)
        assert_int_equal(pvg_dp_cooc_counts_add_user(c, rng, dom, 3, NULL), PVG_OK);
    return c;
}

/* the six released coordinates minus the base, -10^9 for a pair not listed */
static void cooc_coords(const pvg_dp_cooc *r, int64_t base, int64_t v[6])
{
    for (int i = 0; i < 3; i++)
        v[i] = r->noisy_pop[i] - base;
    for (int q = 0; q < 3; q++)
        v[3 + q] = -1000000000;
    for (int i = 0; i < 3; i++) {
        const pvg_dp_similar *s;
        size_t n;
        assert_int_equal(pvg_dp_cooc_similar(r, i, &s, &n, NULL), PVG_OK);
        for (size_t j = 0; j < n; j++) {
            int64_t a = i, b = s[j].item;
            int q = (a + b == 1) ? 0 : (a + b == 2) ? 1 : 2; /* pairs 01, 02, 12 */
            v[3 + q] = s[j].noisy_cooc - base;
        }
    }
}

static void audit_cooc(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(16);
    pvg_dp_cooc_counts *d0 = cooc_of(rng, 60), *d1 = cooc_of(rng, 61);
    assert_int_equal(pvg_dp_cooc_counts_exact(d1, 0, 2), 61);
    assert_int_equal(pvg_dp_cooc_counts_exact(d1, 1, 1), 61);
    for (int g = 0; g < 2; g++) {
        pvg_dp_cooc_params p;
        pvg_dp_cooc_params_init(&p);
        p.allow_insecure_rng = 1;
        p.k = 2;
        p.epsilon = 1;
        p.delta = g ? 1e-3 : 0;
        p.mechanism = g ? PVG_DP_RELEASE_GAUSSIAN : PVG_DP_RELEASE_LAPLACE;
        long n = n_runs();
        /* Laplace: E = all six coordinates >= base + 1 (ratio e^(L1/b) = e^eps);
         * Gaussian: the sum of the six >= t for t at 0..3 sd of the sum */
        long k0[5] = {0}, k1[5] = {0};
        double sd = 0;
        pvg_rng *arng = pvg_rng_new_INSECURE_deterministic_for_tests(0xA0D1A);
        for (long i = 0; i < n; i++) {
            for (int side = 0; side < 2; side++) {
                pvg_dp_cooc *r;
                assert_int_equal(pvg_dp_cooc_release(side ? d1 : d0, arng, &p, &r, NULL), PVG_OK);
                sd = r->info.noise_scale * sqrt(6.0);
                int64_t v[6], sum = 0;
                cooc_coords(r, 60, v);
                int all = 1;
                for (int c = 0; c < 6; c++) {
                    all &= v[c] >= 1;
                    sum += v[c];
                }
                long *k = side ? k1 : k0;
                if (!g)
                    k[0] += all;
                else
                    for (int z = 0; z <= 3; z++)
                        k[z] += sum >= (int64_t)ceil(z * sd);
                pvg_dp_cooc_free(r);
            }
        }
        pvg_rng_free(arng);
        double best_lb = -INFINITY, best_hat = -INFINITY;
        for (int z = 0; z <= (g ? 3 : 0); z++) {
            double hat, lb = t_eps_lower_bound(k1[z], n, k0[z], n, p.delta, ALPHA, &hat);
            if (lb > best_lb) best_lb = lb;
            if (hat > best_hat) best_hat = hat;
        }
        print_message("%-34s m=3 claimed eps 1%s  estimate %.4f  lower bound %.4f\n",
                      g ? "discrete-gaussian-cooc" : "discrete-laplace-cooc", g ? " d=1e-3" : "",
                      best_hat, best_lb);
        assert_true(best_lb <= 1.0);
        assert_true(best_hat >= (g ? 0.1 : 0.85));
    }
    pvg_dp_cooc_counts_free(d0);
    pvg_dp_cooc_counts_free(d1);
    pvg_rng_free(rng);
}

/* ---- co-occurrence: serving structure and serialisation -------------------- */

static void cooc_release_serves_and_round_trips(void **state)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(17);
    int64_t dom[30];
    for (int i = 0; i < 30; i++)
        dom[i] = 1000 - 7 * i; /* any order */
    pvg_dp_cooc_counts *c;
    assert_int_equal(pvg_dp_cooc_counts_new(dom, 30, 8, &c, NULL), PVG_OK);
    /* two clusters of co-bought items: 0..9 and 10..19; 20..29 rarely */
    for (int s = 0; s < 400; s++) {
        int64_t basket[6];
        int base = s % 2 ? 10 : 0;
        for (int j = 0; j < 5; j++)
            basket[j] = dom[base + (s * 3 + j * 7) % 10];
        basket[5] = 424242; /* outside the domain */
        assert_int_equal(pvg_dp_cooc_counts_add_user(c, rng, basket, 6, NULL), PVG_OK);
    }
    pvg_dp_cooc_params p;
    pvg_dp_cooc_params_init(&p);
    p.allow_insecure_rng = 1;
    p.k = 5;
    p.epsilon = 4;
    pvg_dp_cooc *r;
    assert_int_equal(pvg_dp_cooc_release(c, rng, &p, &r, NULL), PVG_OK);
    const pvg_dp_similar *s;
    size_t n;
    assert_int_equal(pvg_dp_cooc_similar(r, dom[3], &s, &n, NULL), PVG_OK);
    assert_int_equal(n, 5);
    for (size_t j = 0; j < n; j++) { /* neighbours of a cluster-A item are cluster-A items */
        int in_a = 0;
        for (int q = 0; q < 10; q++)
            in_a |= s[j].item == dom[q];
        assert_true(in_a);
        assert_true(s[j].item != dom[3]);
        if (j) assert_true(s[j].score <= s[j - 1].score);
    }
    pvg_error err;
    assert_int_equal(pvg_dp_cooc_similar(r, 424242, &s, &n, &err), PVG_ERR_NOT_FOUND);
    char *json;
    assert_int_equal(pvg_dp_cooc_to_json(r, &json, NULL), PVG_OK);
    pvg_dp_cooc *back;
    assert_int_equal(pvg_dp_cooc_from_json(json, &back, NULL), PVG_OK);
    assert_int_equal(back->n_items, r->n_items);
    assert_string_equal(back->info.mechanism, r->info.mechanism);
    assert_true(back->info.epsilon == r->info.epsilon && back->info.delta == r->info.delta);
    assert_true(back->info.noise_scale == r->info.noise_scale);
    for (size_t i = 0; i < r->n_items; i++) {
        assert_true(back->items[i] == r->items[i]);
        assert_true(back->noisy_pop[i] == r->noisy_pop[i]);
        assert_int_equal(back->n_similar[i], r->n_similar[i]);
        for (size_t j = 0; j < r->n_similar[i]; j++) {
            assert_true(back->similar[i * r->k + j].item == r->similar[i * r->k + j].item);
            assert_true(back->similar[i * r->k + j].score == r->similar[i * r->k + j].score);
        }
    }
    pvg_dp_cooc_free(back);
    /* malformed input names the field */
    char *bad = strdup(json);
    char *f = strstr(bad, "\"k\":");
    assert_non_null(f);
    f[1] = 'q';
    assert_int_equal(pvg_dp_cooc_from_json(bad, &back, &err), PVG_ERR_CORRUPT);
    assert_non_null(strstr(err.text, "field k"));
    assert_int_equal(pvg_dp_cooc_from_json("{\"format\": 1}", &back, &err), PVG_ERR_CORRUPT);
    assert_int_equal(pvg_dp_cooc_from_json("not json", &back, &err), PVG_ERR_CORRUPT);
    free(bad);
    free(json);
    pvg_dp_cooc_free(r);
    pvg_dp_cooc_counts_free(c);
    pvg_rng_free(rng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cp_interval_is_exact),
        cmocka_unit_test(popular_draws_only_from_the_public_domain),
        cmocka_unit_test(bounding_keeps_a_uniform_m_subset),
        cmocka_unit_test(noise_is_calibrated_to_the_bound_m),
        cmocka_unit_test(audit_popular_exponential),
        cmocka_unit_test(audit_popular_additive),
        cmocka_unit_test(audit_cooc),
        cmocka_unit_test(cooc_release_serves_and_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
