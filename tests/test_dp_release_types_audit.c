/*
 * test_dp_release_types_audit.c - empirical privacy audit of every release
 * type of the query engine and of the DP spend totals, end to end: the
 * statistic is computed from shoppers' events, bounded, and noised by the
 * code that serves `privguide query` and `he spend-total`.
 *
 * Method. For each release type, datasets D and D' = D + one shopper with
 * the worst-case contribution of the sensitivity derivation (docs/dp.md,
 * src/dp/query.c):
 *   count        +m events (m = 10)                      L1 = m
 *   sum values   +m values at the clamp end far from 0    L1 = m max(|lo|,|hi|)
 *   sum events   one shopper in a clamp 100:200 range     L1 = clamp(1) = 100
 *   mean         +m values at hi: sum +m hi, count +m     eps/2 each
 *   histogram    +m events in each of G = 5 bins          L1 = m G
 *   top-items    +1 user on each of G = 5 items           L1 = G (selection noise)
 *   spend total  one shopper spending over the clamp      L1 = clamp
 * A release maps to a score (the released value, or for a release that
 * moves several coordinates the smallest of the moved coordinates, each
 * minus its value on D and divided by its shift: the event "every moved
 * coordinate is high" has likelihood ratio e^eps at the tails). A
 * calibration run (10^4 releases on each dataset, its own seeds) picks the
 * distinguishing event E = {score >= t} or {score < t} and its direction
 * that maximise the expected lower bound; then N = 10^5 fresh releases on
 * each dataset count E, and
 *   eps_lb = log((P_lo(E | one) - delta) / P_hi(E | other))
 * with exact Clopper-Pearson bounds at alpha = 1e-6 on each probability
 * (tests/t_audit_cp.c). The test fails if eps_lb exceeds the epsilon the
 * release charges (read from the release), and - so the audit is known to
 * have power - if it stays below half of it. Negative controls: the same
 * release run with too little noise (epsilon x2 "noise halved", or the
 * factor of a sensitivity that is too small, e.g. the old min(m, hi) = 10
 * for a clamp of 100:200) while still claiming epsilon, with 2 10^4 runs
 * (calibration 5000): each must be flagged (eps_lb > epsilon).
 *
 * Releases run in memory through query_run_mem and
 * pvg_he_spend_total_plain, the same functions as the store paths
 * (a store run commits a ledger charge, and the encrypted spend total costs
 * a Paillier encryption per shopper and a decryption: 10^5 of either is
 * far too slow for a test). That these are the same releases is checked
 * here too: for a few seeds of the deterministic generator the store path
 * (pvg_query_run over a store holding the same shoppers; the encrypted
 * pvg_paillier_spend_total, decrypted) gives bit-identical output.
 *
 * Seeds are fixed, so the outcome is reproducible. 2 threads (D and D').
 * PVG_SANITIZED=1 (ASan runs) uses 2 10^4 runs; PVG_AUDIT_RUNS=1000000 runs
 * the bigger audit (minutes), PVG_AUDIT_ONLY=<glob> selects tests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/paillier.h>
#include <privguide/query.h>
#include <privguide/store.h>

#include "crypto/paillier_internal.h"
#include "dp/query_internal.h"
#include "t_audit_cp.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALPHA 1e-6
#define EPS 1.0
#define MAXEV 2048
#define MAXU 160

/* ---- datasets ----------------------------------------------------------- */

typedef struct dset {
    pvg_event ev[MAXEV];
    size_t nev;
    query_mem_user users[MAXU];
    size_t nu;
    char names[MAXU][16];
} dset;

static void ds_user(dset *d)
{
    assert_true(d->nu < MAXU);
    d->users[d->nu].events = &d->ev[d->nev];
    d->users[d->nu].n = 0;
    snprintf(d->names[d->nu], sizeof d->names[0], "u%zu", d->nu);
    d->nu++;
}

static void ds_event(dset *d, const char *item, double qty, double amount, const char *country)
{
    assert_true(d->nev < MAXEV && d->nu > 0);
    pvg_event *e = &d->ev[d->nev++];
    memset(e, 0, sizeof *e);
    e->type = PVG_EVENT_PURCHASE;
    e->ts = 1300000000 + (int64_t)d->nev;
    e->item = item;
    e->quantity = qty;
    e->amount = amount;
    e->country = country;
    e->fields = PVG_FIELD_QUANTITY | PVG_FIELD_AMOUNT | PVG_FIELD_COUNTRY;
    d->users[d->nu - 1].n++;
}

static void ds_copy(dset *dst, const dset *src)
{
    memcpy(dst, src, sizeof *dst);
    for (size_t u = 0; u < dst->nu; u++)
        dst->users[u].events = dst->ev + (src->users[u].events - src->ev);
}

/* ---- the releases ----------------------------------------------------------- */

typedef enum score_kind {
    SC_VALUE, /* rows[0].value */
    SC_MEAN,  /* min((sum - S0) / dS, (count - C0) / dC) */
    SC_BINS,  /* min over the first nmoved rows of (value - base) / shift */
    SC_ITEMS, /* min over the moved items of (noisy users - base) / shift; absent: -inf */
    SC_SPEND  /* the one group's noisy total in cents */
} score_kind;

#define MAXMOVED 8

typedef struct audit_case {
    const char *name;
    const char *worst; /* the added shopper */
    pvg_query_spec spec;
    pvg_spend_options sopt;
    int is_spend;
    score_kind sc;
    dset *d[2]; /* D, D' */
    int nmoved;
    const char *moved[MAXMOVED]; /* SC_ITEMS: group names */
    double base[MAXMOVED], shift[MAXMOVED];
    double ctrl_factor; /* negative control: epsilon multiplier actually run */
    const char *ctrl_label;
    uint64_t seed;
} audit_case;

/* One release on dataset `which` at `eps_factor` times the case's epsilon;
 * returns its score, and the (epsilon, delta) it charges in *ce, *cd. */
static double release_once(const audit_case *c, int which, double eps_factor, pvg_rng *rng,
                           double *ce, double *cd)
{
    pvg_error err;
    const dset *d = c->d[which];
    if (c->is_spend) {
        pvg_spend_options o = c->sopt;
        o.rng = rng;
        o.allow_insecure_rng = 1;
        o.epsilon *= eps_factor;
        pvg_he_spend_user su[MAXU];
        for (size_t u = 0; u < d->nu; u++)
            su[u] = (pvg_he_spend_user){d->users[u].events, d->users[u].n};
        pvg_he_spend_plain *p;
        pvg_status st = pvg_he_spend_total_plain(su, d->nu, &o, &p, &err);
        if (st != PVG_OK) fail_msg("spend plain: %s", err.text);
        assert_int_equal(p->n, 1);
        double v = (double)p->cents[0];
        pvg_he_spend_plain_free(p);
        if (ce) *ce = c->sopt.epsilon * eps_factor;
        if (cd) *cd = 0;
        return v;
    }
    pvg_query_spec sp = c->spec;
    sp.epsilon *= eps_factor;
    sp.allow_insecure_rng = 1;
    query_mem mem = {d->users, d->nu, NULL, 0};
    pvg_query_result *r;
    pvg_status st = query_run_mem(&mem, &sp, rng, &r, &err);
    if (st != PVG_OK) fail_msg("%s: %s", c->name, err.text);
    if (ce) *ce = r->epsilon;
    if (cd) *cd = r->delta;
    double s = INFINITY;
    switch (c->sc) {
    case SC_VALUE:
        s = r->rows[0].value;
        break;
    case SC_MEAN: {
        double nc = r->rows[0].count, ns = r->rows[0].value * (nc < 1 ? 1 : nc);
        s = fmin((ns - c->base[0]) / c->shift[0], (nc - c->base[1]) / c->shift[1]);
        break;
    }
    case SC_BINS:
        for (int b = 0; b < c->nmoved; b++)
            s = fmin(s, (r->rows[b].value - c->base[b]) / c->shift[b]);
        break;
    case SC_ITEMS:
        for (int k = 0; k < c->nmoved; k++) {
            double v = -INFINITY;
            for (size_t i = 0; i < r->n_rows; i++)
                if (strcmp(r->rows[i].group, c->moved[k]) == 0) v = r->rows[i].value;
            s = fmin(s, (v - c->base[k]) / c->shift[k]);
        }
        break;
    default:
        fail_msg("score kind");
    }
    pvg_query_result_free(r);
    return s;
}

/* ---- runs over threads -------------------------------------------------------- */

typedef struct run_job {
    const audit_case *c;
    int which;
    double eps_factor;
    uint64_t seed;
    long n;
    double *scores; /* calibration: all scores; else NULL */
    int ge;         /* event: score >= t (1) or score < t (0) */
    double t;
    long hits;
    double ce, cd;
    pthread_t tid;
} run_job;

static void *run_worker(void *arg)
{
    run_job *j = arg;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(j->seed);
    j->hits = 0;
    for (long i = 0; i < j->n; i++) {
        double s = release_once(j->c, j->which, j->eps_factor, rng, i == 0 ? &j->ce : NULL,
                                i == 0 ? &j->cd : NULL);
        if (j->scores)
            j->scores[i] = s;
        else if (j->ge ? s >= j->t : s < j->t)
            j->hits++;
    }
    pvg_rng_free(rng);
    return NULL;
}

/* runs jobs[0] and jobs[1] (D and D') in parallel */
static void run_pair(run_job *jobs)
{
    assert_int_equal(pthread_create(&jobs[1].tid, NULL, run_worker, &jobs[1]), 0);
    run_worker(&jobs[0]);
    pthread_join(jobs[1].tid, NULL);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* #{s >= t} in sorted s[0..n) */
static long count_ge(const double *s, long n, double t)
{
    long lo = 0, hi = n;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (s[mid] >= t)
            hi = mid;
        else
            lo = mid + 1;
    }
    return n - lo;
}

/* the normal-approximation lower bound used only to choose the event */
static double approx_lb(double p1, double p0, double n, double delta, double z)
{
    double l1 = p1 - z * sqrt(p1 * (1 - p1) / n) - 1 / n,
           h0 = p0 + z * sqrt(p0 * (1 - p0) / n) + 1 / n;
    if (l1 - delta <= 0 || h0 <= 0) return -INFINITY;
    return log((l1 - delta) / h0);
}

typedef struct audit_out {
    double lb, ub, hat;
    double eps, delta; /* charged */
    long k_num, k_den, n;
    int ge, num; /* event direction; numerator dataset (1: D') */
    double t;
    double seconds;
} audit_out;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void audit(const audit_case *c, double eps_factor, long n, long n_cal, uint64_t seed,
                  audit_out *o)
{
    double t0 = now_s();
    /* calibration */
    double *sc[2];
    run_job cj[2];
    for (int w = 0; w < 2; w++) {
        sc[w] = malloc((size_t)n_cal * sizeof(double));
        assert_non_null(sc[w]);
        cj[w] = (run_job){.c = c,
                          .which = w,
                          .eps_factor = eps_factor,
                          .seed = seed + 1000 + w,
                          .n = n_cal,
                          .scores = sc[w]};
    }
    run_pair(cj);
    for (int w = 0; w < 2; w++)
        qsort(sc[w], (size_t)n_cal, sizeof(double), cmp_d);
    double delta = cj[0].cd;
    o->eps = cj[0].ce / eps_factor; /* what the release claims when run as specified */
    o->delta = delta;
    assert_true(cj[0].ce == cj[1].ce && cj[0].cd == cj[1].cd);
    double best = -INFINITY;
    o->t = 0;
    o->ge = 1;
    o->num = 1;
    const int NT = 600;
    for (int w = 0; w < 2; w++)
        for (int q = 0; q < NT; q++) {
            double t = sc[w][(long)((double)q / NT * (double)n_cal)];
            double pge[2], plt[2];
            for (int v = 0; v < 2; v++) {
                pge[v] = (double)count_ge(sc[v], n_cal, t) / (double)n_cal;
                plt[v] = 1 - pge[v];
            }
            for (int ge = 0; ge < 2; ge++)
                for (int num = 0; num < 2; num++) {
                    const double *p = ge ? pge : plt;
                    /* judged at the calibration size with z = 3: a tail
                     * event seen a few times cannot look good by chance */
                    double lb = approx_lb(p[num], p[1 - num], (double)n_cal, delta, 3);
                    if (lb > best) {
                        best = lb;
                        o->t = t;
                        o->ge = ge;
                        o->num = num;
                    }
                }
        }
    free(sc[0]);
    free(sc[1]);
    /* the audit proper, on fresh seeds */
    run_job mj[2];
    for (int w = 0; w < 2; w++)
        mj[w] = (run_job){.c = c,
                          .which = w,
                          .eps_factor = eps_factor,
                          .seed = seed + 2000 + w,
                          .n = n,
                          .ge = o->ge,
                          .t = o->t};
    run_pair(mj);
    o->n = n;
    o->k_num = mj[o->num].hits;
    o->k_den = mj[1 - o->num].hits;
    o->lb = t_eps_lower_bound(o->k_num, n, o->k_den, n, delta, ALPHA, &o->hat);
    o->ub = t_eps_upper_bound(o->k_num, n, o->k_den, n, delta, ALPHA);
    o->seconds = now_s() - t0;
}

/* runs per dataset: 10^5; PVG_AUDIT_RUNS overrides (e.g. 1000000 for the
 * bigger audit), PVG_SANITIZED=1 (ASan runs) lowers it to 2 10^4 */
static long n_runs(void)
{
    const char *e = getenv("PVG_AUDIT_RUNS");
    if (e && atol(e) >= 1000) return atol(e);
    return getenv("PVG_SANITIZED") ? 20000 : 100000;
}

static void report(const audit_case *c, const char *label, const audit_out *o)
{
    print_message("%-12s %-26s eps %.3g delta %.0e  E = {%s %s %.4g}: %ld/%ld vs %ld/%ld  "
                  "eps_hat %.3f  CI [%.3f, %.3f]  (%.1f s)\n",
                  c->name, label, o->eps, o->delta, o->num ? "D'" : "D ", o->ge ? ">=" : "<", o->t,
                  o->k_num, o->n, o->k_den, o->n, o->hat, o->lb, o->ub, o->seconds);
}

/* The audit of a correct release and its negative control. */
static void audit_case_run(const audit_case *c)
{
    uint64_t seed = c->seed;
    audit_out o;
    long n = n_runs();
    audit(c, 1.0, n, n / 10 > 10000 ? n / 10 : 10000, seed, &o);
    report(c, "as released", &o);
    assert_true(fabs(o.eps - EPS) < 1e-12);
    /* never above the claim: at alpha = 1e-6 per interval, a correct
     * release passes with probability >= 1 - 2e-6 */
    assert_true(o.lb <= o.eps);
    /* the audit has power: the event found comes near the claim (with the
     * 2 10^4 runs of sanitizer builds, at least above 0) */
    assert_true(o.lb > (n >= 100000 ? 0.5 * o.eps : 0));

    /* negative control: too little noise, the same claim; 2 10^4 runs */
    audit_out m;
    long nc = 20000;
    audit(c, c->ctrl_factor, nc, 5000, seed + 77, &m);
    report(c, c->ctrl_label, &m);
    assert_true(m.lb > m.eps); /* caught */
}

/* ---- the cases ------------------------------------------------------------------ */

static dset g_base, g_nb;

static void base_small(dset *d)
{
    memset(d, 0, sizeof *d);
    /* three shoppers, two purchases each */
    static const double q[3][2] = {{1, 2}, {3, 1}, {2, 2}};
    for (int u = 0; u < 3; u++) {
        ds_user(d);
        for (int k = 0; k < 2; k++)
            ds_event(d, k ? "I1" : "I0", q[u][k], 10 * q[u][k] + 5, "UK");
    }
}

static void count_case(audit_case *cp)
{
    base_small(&g_base);
    ds_copy(&g_nb, &g_base);
    ds_user(&g_nb);
    for (int k = 0; k < 12; k++)
        ds_event(&g_nb, "I0", 1, 10, "UK"); /* m = 10 kept */
    audit_case c = {.name = "count",
                    .sc = SC_VALUE,
                    .d = {&g_base, &g_nb},
                    .ctrl_factor = 10,
                    .ctrl_label = "sensitivity 1, not m"};
    pvg_query_spec_init(&c.spec);
    c.spec.kind = PVG_QUERY_COUNT;
    c.spec.epsilon = EPS;
    *cp = c;
    cp->seed = 100;
}

static void sum_values_case(audit_case *cp)
{
    base_small(&g_base);
    ds_copy(&g_nb, &g_base);
    ds_user(&g_nb);
    for (int k = 0; k < 12; k++)
        ds_event(&g_nb, "I0", 7, 10, "UK"); /* 10 x clamp 5 */
    audit_case c = {.name = "sum",
                    .sc = SC_VALUE,
                    .d = {&g_base, &g_nb},
                    .ctrl_factor = 2,
                    .ctrl_label = "noise halved"};
    pvg_query_spec_init(&c.spec);
    c.spec.kind = PVG_QUERY_SUM;
    c.spec.value = PVG_QUERY_VALUE_QUANTITY;
    c.spec.has_clamp = 1;
    c.spec.clamp_lo = 0;
    c.spec.clamp_hi = 5;
    c.spec.epsilon = EPS;
    *cp = c;
    cp->seed = 200;
}

static void sum_events_case(audit_case *cp)
{
    base_small(&g_base);
    ds_copy(&g_nb, &g_base);
    ds_user(&g_nb);
    ds_event(&g_nb, "I0", 1, 10, "UK"); /* clamp(1, 100, 200) = 100 */
    audit_case c = {.name = "sum events",
                    .sc = SC_VALUE,
                    .d = {&g_base, &g_nb},
                    .ctrl_factor = 10,
                    .ctrl_label = "old bound min(m, hi) = 10"};
    pvg_query_spec_init(&c.spec);
    c.spec.kind = PVG_QUERY_SUM;
    c.spec.value = PVG_QUERY_VALUE_EVENTS;
    c.spec.has_clamp = 1;
    c.spec.clamp_lo = 100;
    c.spec.clamp_hi = 200;
    c.spec.epsilon = EPS;
    *cp = c;
    cp->seed = 300;
}

static void mean_case(audit_case *cp)
{
    base_small(&g_base);
    ds_copy(&g_nb, &g_base);
    ds_user(&g_nb);
    for (int k = 0; k < 12; k++)
        ds_event(&g_nb, "I0", 7, 10, "UK"); /* sum +50, count +10 */
    audit_case c = {.name = "mean",
                    .sc = SC_MEAN,
                    .d = {&g_base, &g_nb},
                    .ctrl_factor = 2,
                    .ctrl_label = "noise halved"};
    pvg_query_spec_init(&c.spec);
    c.spec.kind = PVG_QUERY_MEAN;
    c.spec.value = PVG_QUERY_VALUE_QUANTITY;
    c.spec.has_clamp = 1;
    c.spec.clamp_lo = 0;
    c.spec.clamp_hi = 5;
    c.spec.epsilon = EPS;
    c.base[0] = 11; /* D: quantities 1+2+3+1+2+2 */
    c.base[1] = 6;
    c.shift[0] = 50;
    c.shift[1] = 10;
    *cp = c;
    cp->seed = 400;
}

static void histogram_case(audit_case *cp)
{
    base_small(&g_base); /* quantities 1, 2, 3: bins 1, 2, 3 of [0, 10) */
    ds_copy(&g_nb, &g_base);
    ds_user(&g_nb);
    for (int b = 0; b < 6; b++) /* 11 events in bins 0..4 and one in bin 5: m = 10 in G = 5 kept */
        for (int k = 0; k < (b < 5 ? 11 : 1); k++)
            ds_event(&g_nb, "I0", b + 0.5, 10, "UK");
    audit_case c = {.name = "histogram",
                    .sc = SC_BINS,
                    .d = {&g_base, &g_nb},
                    .nmoved = 5,
                    .ctrl_factor = 2,
                    .ctrl_label = "noise halved"};
    pvg_query_spec_init(&c.spec);
    c.spec.kind = PVG_QUERY_HISTOGRAM;
    c.spec.value = PVG_QUERY_VALUE_QUANTITY;
    c.spec.has_clamp = 1;
    c.spec.clamp_lo = 0;
    c.spec.clamp_hi = 10;
    c.spec.bins = 10;
    c.spec.epsilon = EPS;
    static const double base[5] = {0, 2, 3, 1, 0};
    for (int b = 0; b < 5; b++) {
        c.base[b] = base[b];
        c.shift[b] = 10;
    }
    *cp = c;
    cp->seed = 500;
}

static void top_items_case(audit_case *cp)
{
    /* D: items T0..T4 bought by 40 shoppers each (well above the selection
     * threshold), T5 by 10; D': one more shopper buys T0..T4 and T5 (G = 5
     * kept: T0..T4, where the shopper has the most events) */
    pvg_dp_partition_rule rule;
    assert_int_equal(pvg_dp_partition_rule_make(EPS, 1e-5, 5, &rule, NULL), PVG_OK);
    print_message("top-items selection threshold %lld (scale %.2f)\n", (long long)rule.threshold,
                  rule.scale);
    static const char *items[6] = {"T0", "T1", "T2", "T3", "T4", "T5"};
    memset(&g_base, 0, sizeof g_base);
    int users = (int)rule.threshold + 20;
    assert_true(users < MAXU - 1);
    for (int u = 0; u < users; u++) {
        ds_user(&g_base);
        for (int k = 0; k < 5; k++)
            ds_event(&g_base, items[k], 1, 10, "UK");
        if (u < 10) ds_event(&g_base, items[5], 1, 10, "UK");
    }
    ds_copy(&g_nb, &g_base);
    ds_user(&g_nb);
    for (int k = 0; k < 6; k++)
        for (int r = 0; r < (k < 5 ? 2 : 1); r++)
            ds_event(&g_nb, items[k], 1, 10, "UK");
    audit_case c = {.name = "top-items",
                    .sc = SC_ITEMS,
                    .d = {&g_base, &g_nb},
                    .nmoved = 5,
                    /* catalog candidates with independent noise each: the
                     * min-of-5 event needs a 4x control to have power */
                    .ctrl_factor = 4,
                    .ctrl_label = "noise quartered"};
    for (int k = 0; k < 5; k++) {
        c.moved[k] = items[k];
        c.base[k] = users;
        c.shift[k] = 1;
    }
    pvg_query_spec_init(&c.spec);
    c.spec.kind = PVG_QUERY_TOP_ITEMS;
    c.spec.epsilon = EPS;
    c.spec.delta = 1e-5;
    *cp = c;
    cp->seed = 600;
}

static void spend_total_case(audit_case *cp)
{
    memset(&g_base, 0, sizeof g_base);
    static const double spent[3] = {20, 30, 70}; /* 70 is clamped to 50 */
    for (int u = 0; u < 3; u++) {
        ds_user(&g_base);
        ds_event(&g_base, "I0", 1, spent[u], "UK");
    }
    ds_copy(&g_nb, &g_base);
    ds_user(&g_nb);
    ds_event(&g_nb, "I0", 1, 40, "UK"); /* 80 in all: clamped to 50 */
    ds_event(&g_nb, "I1", 1, 40, "UK");
    audit_case c = {.name = "spend total",
                    .is_spend = 1,
                    .sc = SC_SPEND,
                    .d = {&g_base, &g_nb},
                    .ctrl_factor = 2,
                    .ctrl_label = "noise halved"};
    c.sopt.group_by = PVG_SPEND_BY_NONE;
    c.sopt.dp = 1;
    c.sopt.epsilon = EPS;
    c.sopt.clamp = 50;
    c.sopt.max_groups = 1;
    *cp = c;
    cp->seed = 700;
}

typedef void (*case_builder)(audit_case *c);
static const case_builder builders[] = {count_case,     sum_values_case, sum_events_case, mean_case,
                                        histogram_case, top_items_case,  spend_total_case};
enum { NCASES = sizeof builders / sizeof builders[0] };

static void run_built(case_builder b)
{
    audit_case c;
    memset(&c, 0, sizeof c);
    b(&c);
    audit_case_run(&c);
}

static void count_audit(void **state)
{
    (void)state;
    run_built(count_case);
}
static void sum_values_audit(void **state)
{
    (void)state;
    run_built(sum_values_case);
}
static void sum_events_audit(void **state)
{
    (void)state;
    run_built(sum_events_case);
}
static void mean_audit(void **state)
{
    (void)state;
    run_built(mean_case);
}
static void histogram_audit(void **state)
{
    (void)state;
    run_built(histogram_case);
}
static void top_items_audit(void **state)
{
    (void)state;
    run_built(top_items_case);
}
static void spend_total_audit(void **state)
{
    (void)state;
    run_built(spend_total_case);
}

/* ---- the in-memory releases are the store releases ------------------------------- */

static char *make_store(void)
{
    char tmpl[] = "/tmp/pvg_dp_rta_XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *dir = malloc(strlen(d) + 8);
    assert_non_null(dir);
    sprintf(dir, "%s/data", d);
    pvg_error err;
    pvg_status st = pvg_store_init(dir, NULL, &err);
    if (st != PVG_OK) fail_msg("init: %s", err.text);
    return dir;
}

static void rm_store(char *dir)
{
    char cmd[600];
    *strrchr(dir, '/') = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
    free(dir);
}

/* a store holding the shoppers of d, in the same order */
static pvg_store *store_of(const dset *d, char **dirp)
{
    char *dir = make_store();
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    /* the catalog (the public domain of top-items): every item the data
     * names, in name order, as the in-memory path takes them */
    const char *names[256];
    size_t nn = 0;
    for (size_t u = 0; u < d->nu; u++)
        for (size_t i = 0; i < d->users[u].n; i++) {
            const char *it = d->users[u].events[i].item;
            size_t j = 0;
            while (it && j < nn && strcmp(names[j], it) != 0)
                j++;
            if (it && j == nn && nn < 256) names[nn++] = it;
        }
    for (size_t i = 1; i < nn; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *x = names[j];
            names[j] = names[j - 1];
            names[j - 1] = x;
        }
    for (size_t i = 0; i < nn; i++) {
        pvg_item ci = {0};
        ci.ext_id = names[i];
        ci.price = 1;
        assert_int_equal(pvg_store_item_put(s, &ci, NULL, &err), PVG_OK);
    }
    assert_int_equal(pvg_store_begin(s, &err), PVG_OK);
    int seq = 0;
    for (size_t u = 0; u < d->nu; u++)
        for (size_t i = 0; i < d->users[u].n; i++) {
            char key[32];
            int outcome;
            snprintf(key, sizeof key, "k%d", seq++);
            pvg_status st =
                pvg_store_event_put(s, d->names[u], &d->users[u].events[i], key, &outcome, &err);
            if (st != PVG_OK) fail_msg("event_put: %s", err.text);
        }
    assert_int_equal(pvg_store_commit(s, &err), PVG_OK);
    assert_int_equal(pvg_ledger_set_budget(s, PVG_LEDGER_DEFAULT_DATASET, 1e12, 0.5, &err), PVG_OK);
    *dirp = dir;
    return s;
}

/* A 1024-bit Paillier key from fixed primes (known-answer style, fast). */
static void test_key(pvg_paillier_pub **pub, pvg_paillier_priv **priv)
{
    mpz_t p, q, n;
    mpz_inits(p, q, n, NULL);
    mpz_ui_pow_ui(p, 2, 511);
    mpz_add_ui(p, p, 12345);
    mpz_nextprime(p, p);
    mpz_ui_pow_ui(q, 2, 511);
    mpz_add_ui(q, q, 987654321);
    mpz_nextprime(q, q);
    mpz_mul(n, p, q);
    assert_int_equal(pvg_he_pub_from_mpz(n, 0, pub, NULL), PVG_OK);
    assert_int_equal(pvg_he_priv_from_mpz(*pub, p, q, priv, NULL), PVG_OK);
    mpz_clears(p, q, n, NULL);
}

static void store_paths_match_memory_paths(void **state)
{
    (void)state;
    pvg_paillier_pub *pub;
    pvg_paillier_priv *priv;
    test_key(&pub, &priv);
    for (size_t b = 0; b < NCASES; b++) {
        audit_case c;
        memset(&c, 0, sizeof c);
        builders[b](&c);
        for (int w = 0; w < 2; w++) {
            char *dir;
            pvg_store *s = store_of(c.d[w], &dir);
            for (uint64_t seed = 1; seed <= 3; seed++) {
                pvg_error err;
                if (c.is_spend) {
                    pvg_spend_options o = c.sopt;
                    pvg_rng *ra = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
                    o.rng = ra;
                    o.allow_insecure_rng = 1;
                    pvg_spend_result *res;
                    pvg_status st = pvg_paillier_spend_total(s, pub, &o, &res, &err);
                    if (st != PVG_OK) fail_msg("spend_total: %s", err.text);
                    assert_int_equal(res->n, 1);
                    char *txt;
                    assert_int_equal(
                        pvg_paillier_decrypt_exact(priv, res->groups[0].total, &txt, &err), PVG_OK);
                    pvg_rng *rb = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
                    pvg_rng *rs = pvg_rng_split(rb);
                    o.rng = rs;
                    pvg_he_spend_user su[MAXU];
                    for (size_t u = 0; u < c.d[w]->nu; u++)
                        su[u] = (pvg_he_spend_user){c.d[w]->users[u].events, c.d[w]->users[u].n};
                    pvg_he_spend_plain *p;
                    assert_int_equal(pvg_he_spend_total_plain(su, c.d[w]->nu, &o, &p, NULL),
                                     PVG_OK);
                    assert_int_equal(p->n, 1);
                    assert_string_equal(p->names[0], res->groups[0].name);
                    assert_int_equal(strtoll(txt, NULL, 10), p->cents[0]);
                    assert_true(p->noise_scale == res->noise_scale);
                    free(txt);
                    pvg_he_spend_plain_free(p);
                    pvg_spend_result_free(res);
                    pvg_rng_free(rs);
                    pvg_rng_free(rb);
                    pvg_rng_free(ra);
                    continue;
                }
                pvg_query_spec sp = c.spec;
                sp.allow_insecure_rng = 1;
                pvg_rng *ra = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
                pvg_rng *rb = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
                pvg_query_result *x, *y;
                pvg_status st = pvg_query_run(s, &sp, ra, &x, &err);
                if (st != PVG_OK) fail_msg("%s: %s", c.name, err.text);
                query_mem mem = {c.d[w]->users, c.d[w]->nu, NULL, 0};
                assert_int_equal(query_run_mem(&mem, &sp, rb, &y, NULL), PVG_OK);
                assert_int_equal(x->n_rows, y->n_rows);
                assert_true(x->n_rows > 0);
                for (size_t i = 0; i < x->n_rows; i++) {
                    assert_true((x->rows[i].group == NULL) == (y->rows[i].group == NULL));
                    if (x->rows[i].group) assert_string_equal(x->rows[i].group, y->rows[i].group);
                    assert_true(x->rows[i].value == y->rows[i].value);
                    assert_true(x->rows[i].count == y->rows[i].count);
                }
                assert_true(x->epsilon == y->epsilon && x->delta == y->delta);
                assert_true(x->noise_scale == y->noise_scale);
                assert_true(x->users == y->users && x->users == (long long)c.d[w]->nu);
                assert_true(x->release_id > 0 && y->release_id == 0);
                pvg_query_result_free(x);
                pvg_query_result_free(y);
                pvg_rng_free(ra);
                pvg_rng_free(rb);
            }
            pvg_store_free(s);
            rm_store(dir);
        }
    }
    pvg_paillier_priv_free(priv);
    pvg_paillier_pub_free(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(store_paths_match_memory_paths),
        cmocka_unit_test(count_audit),
        cmocka_unit_test(sum_values_audit),
        cmocka_unit_test(sum_events_audit),
        cmocka_unit_test(mean_audit),
        cmocka_unit_test(histogram_audit),
        cmocka_unit_test(top_items_audit),
        cmocka_unit_test(spend_total_audit),
    };
    if (getenv("PVG_AUDIT_ONLY")) cmocka_set_test_filter(getenv("PVG_AUDIT_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
