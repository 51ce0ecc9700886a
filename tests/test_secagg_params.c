/*
 * test_secagg_params.c - pvg_secagg_plan_params, the choice of the SecAgg+
 * neighbourhood degree k and threshold t (docs/secagg.md, "Choosing k and
 * t"):
 *   - the (k, t) it returns meet the security and correctness bounds, which
 *     the test computes on its own (hypergeometric tails summed in long
 *     double, not the library's log-space recurrence);
 *   - k is the smallest even degree for which some t meets them all, and t
 *     the smallest threshold for that k;
 *   - the clients' rule t > (k + 1) / 2 always holds;
 *   - k grows like log n at fixed fractions;
 *   - on the library's real graph (pvg_secagg_neighbours), random dropouts
 *     leave some client without t live holders no more often than the
 *     correctness bound allows (and a k well below the plan's fails often);
 *   - refusals name the field, and the best effort when no k works.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/secagg.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* P[X >= x], X ~ Hypergeometric(N, K, k), summed term by term */
static long double tail(unsigned N, unsigned K, unsigned k, unsigned x)
{
    long double s = 0;
    for (unsigned j = x; j <= k && j <= K; j++) {
        if (k - j > N - K) continue;
        long double l = lgammal(K + 1.0L) - lgammal(j + 1.0L) - lgammal(K - j + 1.0L) +
                        lgammal(N - K + 1.0L) - lgammal(k - j + 1.0L) -
                        lgammal(N - K - (k - j) + 1.0L) -
                        (lgammal(N + 1.0L) - lgammal(k + 1.0L) - lgammal(N - k + 1.0L));
        s += expl(l);
    }
    return s;
}

typedef struct {
    unsigned n, D, C, sigma, eta;
    int active;
} model;

static model model_of(const pvg_secagg_plan_options *o)
{
    model m;
    m.n = o->n;
    m.D = (unsigned)ceil(o->dropout * o->n - 1e-9);
    m.C = (unsigned)ceil(o->corrupt * o->n - 1e-9);
    m.sigma = o->sigma ? o->sigma : 40;
    m.eta = o->eta ? o->eta : 20;
    m.active = o->active;
    return m;
}

static int meets(const model *m, unsigned k, unsigned t);

/* the security side only (majority, corrupt holders); cheap enough to scan t */
static int meets_security(const model *m, unsigned k, unsigned t)
{
    long double sec = ldexpl(1.0L, -(int)m->sigma - 1);
    if (2 * t <= k + 1 || t > k + 1) return 0;
    unsigned lim = m->active ? 2 * t - k - 1 : t;
    return (long double)m->n * tail(m->n - 1, m->C, k, lim) <= sec;
}

/* every bound, computed here: 1 when (k, t) meets them all */
static int meets(const model *m, unsigned k, unsigned t)
{
    unsigned n = m->n;
    if (!(k == n - 1 || (k % 2 == 0 && k >= 2 && k < n - 1))) return 0;
    if (2 * t <= k + 1 || t > k + 1) return 0;
    long double sec = ldexpl(1.0L, -(int)m->sigma - 1), cor = ldexpl(1.0L, -(int)m->eta);
    /* connectivity of the honest senders: two removed runs of k/2 */
    if (k < n - 1) {
        long double p = (long double)n * n / 2;
        for (unsigned i = 0; i < k; i++)
            p *= i < m->C + m->D ? (long double)(m->C + m->D - i) / (n - i) : 0.0L;
        if (p > sec) return 0;
    }
    /* the corrupt holders that expose a client */
    unsigned lim = m->active ? 2 * t - k - 1 : t;
    if ((long double)n * tail(n - 1, m->C, k, lim) > sec) return 0;
    /* t must also exceed the corrupt neighbours tolerated with 2^-(sigma+1) */
    unsigned cmax = 0;
    while (cmax < k && (long double)n * tail(n - 1, m->C, k, cmax + 1) > sec)
        cmax++;
    if (m->active ? 2 * t - k - 1 <= cmax : t <= cmax) return 0;
    /* correctness: fewer than t live neighbours */
    if ((long double)n * tail(n - 1, m->D, k, k - t + 1) > cor) return 0;
    return 1;
}

static pvg_secagg_plan plan_of(unsigned n, double dropout, double corrupt, unsigned sigma,
                               unsigned eta, int active)
{
    pvg_secagg_plan_options o = {n, dropout, corrupt, sigma, eta, active};
    pvg_secagg_plan p;
    pvg_error err;
    if (pvg_secagg_plan_params(&o, &p, &err) != PVG_OK) fail_msg("plan n=%u: %s", n, err.text);
    return p;
}

static void test_plan_meets_bounds_and_is_minimal(void **state)
{
    (void)state;
    static const struct {
        unsigned n;
        double dropout, corrupt;
        unsigned sigma, eta;
        int active;
    } cases[] = {
        {1000, 0.30, 0.00, 40, 20, 0}, {1000, 0.30, 0.05, 40, 20, 0}, {1000, 0.30, 0.05, 40, 30, 0},
        {1000, 0.10, 0.05, 40, 20, 1}, {1000, 0.05, 0.05, 40, 30, 1}, {300, 0.20, 0.10, 40, 20, 0},
        {5000, 0.10, 0.10, 40, 20, 1}, {100, 0.30, 0.05, 40, 20, 0},  {40, 0.10, 0.00, 40, 20, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pvg_secagg_plan_options o = {cases[i].n,     cases[i].dropout, cases[i].corrupt,
                                     cases[i].sigma, cases[i].eta,     cases[i].active};
        model m = model_of(&o);
        pvg_secagg_plan p = plan_of(o.n, o.dropout, o.corrupt, o.sigma, o.eta, o.active);
        if (!p.met) fail_msg("case %zu: no plan met", i);
        if (!meets(&m, p.k, p.t))
            fail_msg("case %zu (n=%u): k=%u t=%u does not meet the bounds", i, o.n, p.k, p.t);
        assert_true(2 * p.t > p.k + 1);
        /* t is the smallest for this k */
        if (p.t > 2 && meets(&m, p.k, p.t - 1)) fail_msg("case %zu: t=%u - 1 also meets", i, p.t);
        /* no smaller even k meets the bounds with any t: security only gets
         * easier and correctness only harder as t grows, so the smallest t
         * that passes the security side decides */
        for (unsigned k = 2; k < p.k && k < o.n - 1; k += 2) {
            unsigned t = (k + 1) / 2 + 1;
            while (t <= k + 1 && !meets_security(&m, k, t))
                t++;
            if (t <= k + 1 && meets(&m, k, t))
                fail_msg("case %zu: k=%u t=%u meets, below the plan's k=%u", i, k, t, p.k);
        }
        /* the reported bounds agree with the ones computed here */
        assert_true(p.log2_abort <= -(double)m.eta);
        assert_true(p.log2_disconnect <= -(double)m.sigma - 1);
        assert_true(p.log2_corrupt <= -(double)m.sigma - 1);
        long double pa = (long double)o.n * tail(o.n - 1, m.D, p.k, p.k - p.t + 1);
        if (pa > 0) assert_true(fabs((double)log2l(pa) - p.log2_abort) < 1e-6);
    }
}

/* defaults: sigma 0 = 40, eta 0 = 20 */
static void test_plan_defaults(void **state)
{
    (void)state;
    pvg_secagg_plan a = plan_of(1000, 0.3, 0.05, 0, 0, 0), b = plan_of(1000, 0.3, 0.05, 40, 20, 0);
    assert_int_equal(a.k, b.k);
    assert_int_equal(a.t, b.t);
    /* a larger eta (rarer aborts) or more dropouts need more neighbours */
    assert_true(plan_of(1000, 0.3, 0.05, 40, 30, 0).k > b.k);
    assert_true(plan_of(1000, 0.1, 0.05, 40, 20, 0).k < b.k);
    /* against a server that lies about dropouts with corrupt clients, t rises */
    pvg_secagg_plan act = plan_of(1000, 0.1, 0.05, 40, 20, 1);
    pvg_secagg_plan semi = plan_of(1000, 0.1, 0.05, 40, 20, 0);
    assert_true(act.t - act.k / 2 > semi.t - semi.k / 2);
    assert_true(2 * act.t - act.k - 1 > act.corrupt_max);
}

/* k = Theta(log n): increments per factor 4 in n shrink towards
 * 2 ln 2 / KL(1/2 || delta) (the union bound's log n over the divergence of
 * the dropped-neighbour tail at the majority threshold), and k / log2 n stays
 * in a band */
static void test_plan_grows_like_log_n(void **state)
{
    (void)state;
    double delta = 0.3;
    double kl = 0.5 * log(0.5 / delta) + 0.5 * log(0.5 / (1 - delta));
    double slope = 2 * log(2.0) / kl; /* per factor 4 */
    unsigned ns[] = {1000, 4000, 16000, 64000};
    unsigned ks[4];
    for (int i = 0; i < 4; i++) {
        pvg_secagg_plan p = plan_of(ns[i], delta, 0.05, 40, 20, 0);
        assert_true(p.met);
        ks[i] = p.k;
        double r = p.k / log2((double)ns[i]);
        if (r < 0.5 * slope || r > 2.5 * slope)
            fail_msg("n=%u: k=%u, k/log2 n = %.1f outside the band", ns[i], p.k, r);
        assert_true(p.k < ns[i] / 3);
    }
    for (int i = 1; i < 4; i++) {
        assert_true(ks[i] > ks[i - 1]);
        double inc = ks[i] - (double)ks[i - 1];
        /* at n = 1,000 the draws without replacement (k / n near 1/6) keep k
         * lower, so the first step is the steepest; the last is near the
         * asymptotic slope */
        double lo = i == 3 ? 0.75 : 0.5, hi = i == 3 ? 1.5 : 3.0;
        if (inc < lo * slope || inc > hi * slope)
            fail_msg("k(%u) - k(%u) = %.0f, expected about %.1f", ns[i], ns[i - 1], inc, slope);
        if (i > 1) assert_true(inc <= ks[i - 1] - (double)ks[i - 2]);
    }
}

/* xorshift for reproducible dropout sets */
static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* fraction of sessions (random dropout sets of exactly D clients) in which
 * some client has fewer than t live neighbours, on the library's graph */
static double abort_rate(unsigned n, unsigned k, unsigned t, unsigned D, int trials, uint64_t seed)
{
    pvg_secagg_params p;
    memset(&p, 0, sizeof p);
    p.n = n;
    p.k = k;
    p.t = t;
    p.d = 1;
    p.bits = 32;
    for (int i = 0; i < 16; i++)
        p.session[i] = (uint8_t)(seed >> (i % 8));
    uint32_t *nb = malloc(sizeof(uint32_t) * n * k);
    unsigned *perm = malloc(sizeof(unsigned) * n);
    unsigned char *dropped = malloc(n);
    assert_non_null(nb);
    assert_non_null(perm);
    assert_non_null(dropped);
    for (unsigned u = 0; u < n; u++)
        assert_int_equal(pvg_secagg_neighbours(&p, u, nb + (size_t)u * k), (int)k);
    int aborts = 0;
    uint64_t s = seed | 1;
    for (int tr = 0; tr < trials; tr++) {
        for (unsigned i = 0; i < n; i++)
            perm[i] = i;
        memset(dropped, 0, n);
        for (unsigned i = 0; i < D; i++) { /* partial Fisher-Yates */
            unsigned j = i + (unsigned)(xs(&s) % (n - i));
            unsigned tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
            dropped[perm[i]] = 1;
        }
        int bad = 0;
        for (unsigned u = 0; u < n && !bad; u++) {
            unsigned live = 0;
            for (unsigned j = 0; j < k; j++)
                live += !dropped[nb[(size_t)u * k + j]];
            if (live < t) bad = 1;
        }
        aborts += bad;
    }
    free(nb);
    free(perm);
    free(dropped);
    return (double)aborts / trials;
}

static void test_plan_on_real_graph(void **state)
{
    (void)state;
    /* eta = 4: the plan allows a session in 16 to lose a client's shares */
    unsigned n = 300;
    pvg_secagg_plan p = plan_of(n, 0.3, 0.0, 40, 4, 0);
    assert_true(p.met);
    unsigned D = 90;
    int trials = 400;
    double r = abort_rate(n, p.k, p.t, D, trials, 0x9e3779b97f4a7c15ull);
    /* bound 1/16 = 25 of 400; three standard deviations above it */
    if (r > 0.0625 + 3 * sqrt(0.0625 * 0.9375 / trials))
        fail_msg("k=%u t=%u: %.3f of sessions lost a client's shares, bound 2^-4", p.k, p.t, r);
    /* a degree well below the plan's, with its majority threshold, fails often:
     * the check above can fail */
    unsigned k2 = (p.k / 3) & ~1u;
    double r2 = abort_rate(n, k2, (k2 + 1) / 2 + 1, D, 100, 12345);
    if (r2 < 0.3) fail_msg("k=%u: only %.2f of sessions aborted", k2, r2);
}

static void test_plan_refusals_and_best_effort(void **state)
{
    (void)state;
    pvg_secagg_plan p;
    pvg_error err;
    pvg_secagg_plan_options o = {1, 0.3, 0.05, 40, 20, 0};
    assert_int_equal(pvg_secagg_plan_params(&o, &p, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "n");
    o.n = 1000;
    o.dropout = 1.0;
    assert_int_equal(pvg_secagg_plan_params(&o, &p, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "dropout");
    o.dropout = NAN;
    assert_int_equal(pvg_secagg_plan_params(&o, &p, &err), PVG_ERR_INVALID);
    o.dropout = 0.3;
    o.corrupt = -0.1;
    assert_int_equal(pvg_secagg_plan_params(&o, &p, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "corrupt");
    o.corrupt = 0.7; /* 300 + 700 leave nobody */
    assert_int_equal(pvg_secagg_plan_params(&o, &p, &err), PVG_ERR_INVALID);
    o.corrupt = 0.05;
    o.sigma = 129;
    assert_int_equal(pvg_secagg_plan_params(&o, &p, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "sigma");
    o.sigma = 40;
    o.eta = 65;
    assert_int_equal(pvg_secagg_plan_params(&o, &p, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "eta");
    assert_int_equal(pvg_secagg_plan_params(NULL, &p, &err), PVG_ERR_INVALID);
    /* too few clients for 30% dropouts: the complete graph, majority t, not met */
    p = plan_of(5, 0.3, 0.0, 40, 20, 0);
    assert_int_equal(p.met, 0);
    assert_int_equal(p.k, 4);
    assert_int_equal(p.t, 3);
    assert_true(p.log2_abort > -20);
    /* more than half dropping: no k works at n = 1000 */
    p = plan_of(1000, 0.6, 0.0, 40, 20, 0);
    assert_int_equal(p.met, 0);
    assert_int_equal(p.k, 999);
    /* whatever comes back is valid session parameters */
    pvg_secagg_params sp;
    memset(&sp, 0, sizeof sp);
    sp.n = 1000;
    sp.k = p.k;
    sp.t = p.t;
    sp.d = 1;
    sp.bits = 32;
    assert_int_equal(pvg_secagg_params_check(&sp, NULL), PVG_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_meets_bounds_and_is_minimal),
        cmocka_unit_test(test_plan_defaults),
        cmocka_unit_test(test_plan_grows_like_log_n),
        cmocka_unit_test(test_plan_on_real_graph),
        cmocka_unit_test(test_plan_refusals_and_best_effort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
