/*
 * cmd_dp.c - the differential privacy commands of the CLI (table
 * cli_cmds_dp): accountant calculators (dp rdp, dp epsilon, dp sigma,
 * dp delta, dp noise-multiplier), the budget ledger (budget set, budget
 * show) and DP statistics over the store (query).
 */
#include "cli.h"

#include <privguide/access.h>
#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/query.h>
#include <privguide/store.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A JSON number, or null for non-finite values. */
static void jnum(double x)
{
    if (!isfinite(x)) {
        printf("null");
        return;
    }
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) { /* shortest text that reads back exactly */
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    fputs(buf, stdout);
}

static int json_mode(cli_ctx *c)
{
    return cli_bool(c, "json");
}

static double req_range(cli_ctx *c, const char *flag, double lo, double hi, int lo_open,
                        int hi_open)
{
    double v = cli_double_req(c, flag);
    if (!isfinite(v) || (lo_open ? v <= lo : v < lo) || (hi_open ? v >= hi : v > hi))
        cli_usage_error(c, "--%s: expected a number in %c%g, %g%c, got %g", flag,
                        lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']', v);
    return v;
}

static long long req_steps(cli_ctx *c)
{
    if (!cli_has(c, "steps")) cli_usage_error(c, "missing required flag --steps");
    return cli_int_range(c, "steps", 0, 0, 1000000000000LL);
}

/* ---- dp rdp ---- */

static int run_rdp(cli_ctx *c)
{
    double s = req_range(c, "noise-multiplier", 0, INFINITY, 0, 1);
    double q = req_range(c, "sample-rate", 0, 1, 0, 0);
    long long t = req_steps(c);
    double a = cli_double_req(c, "order");
    if (!(a > 1)) cli_usage_error(c, "--order: expected a number > 1, got %g", a);
    double rdp = t == 0 ? 0 : (double)t * pvg_dp_rdp_subsampled_gaussian(q, s, a);
    if (json_mode(c)) {
        printf("{\"rdp\":");
        jnum(rdp);
        printf("}\n");
    } else {
        printf("RDP at order %g after %lld steps (q=%g, sigma=%g): %.10g\n", a, t, q, s, rdp);
    }
    return CLI_EXIT_OK;
}

/* ---- dp epsilon ---- */

static pvg_dp_accountant accountant_flag(cli_ctx *c)
{
    const char *a = cli_str(c, "accountant");
    if (!a || strcmp(a, "rdp") == 0) return PVG_DP_ACCOUNTANT_RDP;
    if (strcmp(a, "pld") == 0) return PVG_DP_ACCOUNTANT_PLD;
    cli_usage_error(c, "--accountant: expected rdp or pld, got '%s'", a);
}

static int run_epsilon(cli_ctx *c)
{
    double s = req_range(c, "noise-multiplier", 0, INFINITY, 0, 1);
    double q = req_range(c, "sample-rate", 0, 1, 0, 0);
    long long t = req_steps(c);
    double d = req_range(c, "delta", 0, 1, 1, 1);
    pvg_dp_accountant acc = accountant_flag(c);
    pvg_dp_conversion conv = PVG_DP_CONVERSION_IMPROVED;
    const char *cv = cli_str(c, "conversion");
    if (cv && strcmp(cv, "classic") == 0)
        conv = PVG_DP_CONVERSION_CLASSIC;
    else if (cv && strcmp(cv, "improved") != 0)
        cli_usage_error(c, "--conversion: expected improved or classic, got '%s'", cv);
    double orders[512];
    int n = 0;
    if (cli_has(c, "orders")) {
        n = cli_double_list(c, "orders", orders, 512);
        for (int i = 0; i < n; i++)
            if (!(orders[i] > 1))
                cli_usage_error(c, "--orders: every order must be > 1, got %g", orders[i]);
    }
    if (acc == PVG_DP_ACCOUNTANT_PLD && (cli_has(c, "orders") || cv))
        cli_usage_error(c, "--orders and --conversion apply to the rdp accountant only");
    double interval = cli_double(c, "pld-interval", 0);
    double eps = 0, ord = 0;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st;
    if (acc == PVG_DP_ACCOUNTANT_PLD)
        st = pvg_dp_pld_epsilon(q, s, t, d, interval, &eps, &err);
    else
        st = pvg_dp_epsilon_subsampled_gaussian(q, s, t, d, acc, conv, n ? orders : NULL, (size_t)n,
                                                &eps, &ord, &err);
    if (st != PVG_OK) return cli_fail("dp epsilon", st, &err);
    if (json_mode(c)) {
        printf("{\"epsilon\":");
        jnum(eps);
        if (acc == PVG_DP_ACCOUNTANT_RDP) {
            printf(",\"order\":%.10g", ord);
        }
        printf("}\n");
    } else if (acc == PVG_DP_ACCOUNTANT_RDP) {
        printf("epsilon %.10g at delta %g (rdp, %s conversion, optimal order %g)\n", eps, d,
               conv == PVG_DP_CONVERSION_CLASSIC ? "classic" : "improved", ord);
    } else {
        printf("epsilon %.10g at delta %g (pld)\n", eps, d);
    }
    return CLI_EXIT_OK;
}

/* ---- dp sigma / dp delta ---- */

static int run_sigma(cli_ctx *c)
{
    double e = req_range(c, "epsilon", 0, INFINITY, 1, 1);
    double d = req_range(c, "delta", 0, 1, 1, 1);
    double l2 = req_range(c, "sensitivity", 0, INFINITY, 1, 1);
    double s;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_dp_gaussian_sigma(e, d, l2, &s, &err);
    if (st != PVG_OK) return cli_fail("dp sigma", st, &err);
    if (json_mode(c)) {
        printf("{\"sigma\":");
        jnum(s);
        printf("}\n");
    } else {
        printf("sigma %.12g (analytic Gaussian: smallest sigma meeting epsilon=%g, delta=%g at L2 "
               "sensitivity %g)\n",
               s, e, d, l2);
    }
    return CLI_EXIT_OK;
}

static int run_delta(cli_ctx *c)
{
    double s = req_range(c, "sigma", 0, INFINITY, 1, 1);
    double e = req_range(c, "epsilon", 0, INFINITY, 0, 1);
    double l2 = req_range(c, "sensitivity", 0, INFINITY, 1, 1);
    double d = pvg_dp_gaussian_delta(s, e, l2);
    if (json_mode(c)) {
        printf("{\"delta\":");
        jnum(d);
        printf("}\n");
    } else {
        printf("delta %.12g (Gaussian sigma=%g at epsilon=%g, L2 sensitivity %g)\n", d, s, e, l2);
    }
    return CLI_EXIT_OK;
}

static int run_noise_multiplier(cli_ctx *c)
{
    double e = req_range(c, "epsilon", 0, INFINITY, 1, 1);
    double d = req_range(c, "delta", 0, 1, 1, 1);
    double q = req_range(c, "sample-rate", 0, 1, 1, 0);
    long long t = req_steps(c);
    if (t < 1) cli_usage_error(c, "--steps: expected at least 1");
    pvg_dp_accountant acc = accountant_flag(c);
    double s;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_dp_noise_multiplier(e, d, q, t, acc, &s, &err);
    if (st != PVG_OK) return cli_fail("dp noise-multiplier", st, &err);
    if (json_mode(c)) {
        printf("{\"noise_multiplier\":");
        jnum(s);
        printf("}\n");
    } else {
        printf("noise multiplier %.8g (smallest meeting epsilon=%g at delta=%g over %lld steps, "
               "q=%g)\n",
               s, e, d, t, q);
    }
    return CLI_EXIT_OK;
}

/* ---- budget ---- */

/* The label a query is charged under (the store has one budget; the label
   only files the release, see ledger.h). */
static const char *dataset_of(cli_ctx *c)
{
    const char *d = cli_str(c, "dataset");
    if (d && !*d) cli_usage_error(c, "--dataset: expected a non-empty name");
    return d ? d : PVG_LEDGER_DEFAULT_DATASET;
}

/* One (epsilon, delta) pair as JSON, or null. */
static void jpair(int has, double e, double d)
{
    if (!has) {
        printf("null");
        return;
    }
    printf("{\"epsilon\":");
    jnum(e);
    printf(",\"delta\":");
    jnum(d);
    printf("}");
}

/* What purpose p may still spend: its cap's remainder, bounded by the
   store's (the store's when uncapped); *has = 0 when no total is set. */
static void purpose_remaining(const pvg_ledger_state *st, int p, int *has, double *e, double *d)
{
    *has = st->has_total;
    *e = fmax(0, st->total_epsilon - st->spent_epsilon);
    *d = fmax(0, st->total_delta - st->spent_delta);
    const pvg_ledger_account *a = &st->purposes[p];
    if (a->has_cap) {
        *e = fmin(*e, fmax(0, a->cap_epsilon - a->spent_epsilon));
        *d = fmin(*d, fmax(0, a->cap_delta - a->spent_delta));
    }
}

static void print_state(const pvg_ledger_state *st, int json)
{
    if (json) {
        printf("\"total\":");
        jpair(st->has_total, st->total_epsilon, st->total_delta);
        printf(",\"migrated\":%s,\"spent\":", st->migrated ? "true" : "false");
        jpair(1, st->spent_epsilon, st->spent_delta);
        printf(",\"remaining\":");
        jpair(st->has_total, fmax(0, st->total_epsilon - st->spent_epsilon),
              fmax(0, st->total_delta - st->spent_delta));
        printf(",\"releases_count\":%lld,\"purposes\":[", st->releases);
        for (int p = 0; p < PVG_LEDGER_N_PURPOSES; p++) {
            const pvg_ledger_account *a = &st->purposes[p];
            int has;
            double re, rd;
            purpose_remaining(st, p, &has, &re, &rd);
            printf("%s{\"purpose\":\"%s\",\"cap\":", p ? "," : "", pvg_ledger_purpose_name(p));
            jpair(a->has_cap, a->cap_epsilon, a->cap_delta);
            printf(",\"spent\":");
            jpair(1, a->spent_epsilon, a->spent_delta);
            printf(",\"remaining\":");
            jpair(has, re, rd);
            printf(",\"releases\":%lld}", a->releases);
        }
        printf("]");
        return;
    }
    if (st->has_total)
        printf("store budget: total epsilon %g delta %g%s; spent epsilon %g delta %g; remaining "
               "epsilon %g "
               "delta %g; %lld releases\n",
               st->total_epsilon, st->total_delta,
               st->migrated ? " (migrated: the largest of the old per-label budgets)" : "",
               st->spent_epsilon, st->spent_delta, fmax(0, st->total_epsilon - st->spent_epsilon),
               fmax(0, st->total_delta - st->spent_delta), st->releases);
    else
        printf("store budget: no total set (privguide budget set --epsilon E --delta D); spent "
               "epsilon %g delta "
               "%g; %lld releases\n",
               st->spent_epsilon, st->spent_delta, st->releases);
    printf("  %-20s %-24s %-24s %-24s %s\n", "purpose", "cap (eps, delta)", "spent (eps, delta)",
           "remaining (eps, delta)", "releases");
    for (int p = 0; p < PVG_LEDGER_N_PURPOSES; p++) {
        const pvg_ledger_account *a = &st->purposes[p];
        char cap[40], spent[40], rem[40];
        int has;
        double re, rd;
        purpose_remaining(st, p, &has, &re, &rd);
        if (a->has_cap)
            snprintf(cap, sizeof cap, "%g, %g", a->cap_epsilon, a->cap_delta);
        else
            snprintf(cap, sizeof cap, "-");
        snprintf(spent, sizeof spent, "%g, %g", a->spent_epsilon, a->spent_delta);
        if (has)
            snprintf(rem, sizeof rem, "%g, %g", re, rd);
        else
            snprintf(rem, sizeof rem, "-");
        printf("  %-20s %-24s %-24s %-24s %lld\n", pvg_ledger_purpose_name(p), cap, spent, rem,
               a->releases);
    }
}

static int run_budget_set(cli_ctx *c)
{
    if (cli_has(c, "dataset"))
        cli_usage_error(
            c, "--dataset: a store has one privacy budget, whatever label releases are charged "
               "under; set the store's total without --dataset, or cap a purpose with --purpose");
    pvg_ledger_purpose purpose = PVG_LEDGER_QUERIES;
    const char *pname = cli_str(c, "purpose");
    if (pname && pvg_ledger_purpose_parse(pname, &purpose) != 0)
        cli_usage_error(
            c,
            "--purpose: expected one of queries, popular_list, similar_items, spend_totals, "
            "model_builds, federated_training; got '%s'",
            pname);
    int clear = cli_bool(c, "clear");
    if (clear && !pname) cli_usage_error(c, "--clear removes a purpose's cap: it needs --purpose");
    if (clear && (cli_has(c, "epsilon") || cli_has(c, "delta")))
        cli_usage_error(c, "--clear excludes --epsilon and --delta");
    double e = 0, d = 0;
    if (!clear) {
        e = req_range(c, "epsilon", 0, INFINITY, 0, 1);
        d = cli_has(c, "delta") ? req_range(c, "delta", 0, 1, 0, 1) : 0;
    }
    int force = cli_bool(c, "force");
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st;
    if (!pname)
        st = pvg_ledger_total_set(s, "cli", e, d, force, &err);
    else if (clear)
        st = pvg_ledger_cap_clear(s, "cli", purpose, force, &err);
    else
        st = pvg_ledger_cap_set(s, "cli", purpose, e, d, force, &err);
    if (st != PVG_OK) {
        pvg_store_free(s);
        return cli_fail("budget set", st, &err);
    }
    pvg_ledger_state sum;
    st = pvg_ledger_state_get(s, &sum, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("budget set", st, &err);
    if (json_mode(c)) {
        printf("{");
        print_state(&sum, 1);
        printf("}\n");
    } else {
        print_state(&sum, 0);
    }
    return CLI_EXIT_OK;
}

typedef struct show_ctx {
    int json, first;
} show_ctx;

static int show_release(void *ctx, const pvg_ledger_release *r)
{
    show_ctx *sc = ctx;
    char when[32];
    time_t t = (time_t)r->created_at;
    struct tm tmv;
    gmtime_r(&t, &tmv);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    if (sc->json) {
        printf("%s{\"id\":%lld,\"label\":", sc->first ? "" : ",", (long long)r->id);
        cli_json_string(stdout, r->dataset);
        printf(",\"purpose\":\"%s\",\"what\":", pvg_ledger_purpose_name(r->purpose));
        cli_json_string(stdout, r->what);
        printf(",\"when\":\"%s\",\"epsilon\":", when);
        jnum(r->epsilon);
        printf(",\"delta\":");
        jnum(r->delta);
        printf(",\"mechanism\":");
        cli_json_string(stdout, r->mechanism);
        printf("}");
    } else {
        printf("  #%-5lld %s  eps %-10.6g delta %-10.3g %-18s %-24s %s\n", (long long)r->id, when,
               r->epsilon, r->delta, pvg_ledger_purpose_name(r->purpose), r->mechanism, r->what);
    }
    sc->first = 0;
    return 0;
}

static int run_budget_show(cli_ctx *c)
{
    const char *label = cli_str(c, "dataset");
    if (label && !*label) cli_usage_error(c, "--dataset: expected a non-empty label");
    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_ledger_state sum;
    pvg_status st = pvg_ledger_state_get(s, &sum, &err);
    if (st != PVG_OK) {
        pvg_store_free(s);
        return cli_fail("budget show", st, &err);
    }
    show_ctx sc = {json_mode(c), 1};
    if (sc.json) {
        printf("{");
        print_state(&sum, 1);
        printf(",\"releases\":[");
    } else {
        print_state(&sum, 0);
        if (sum.releases) printf("releases%s%s:\n", label ? " under " : "", label ? label : "");
    }
    st = pvg_ledger_releases_foreach(s, label, show_release, &sc, &err);
    pvg_store_free(s);
    if (sc.json) printf("]}\n");
    if (st != PVG_OK) return cli_fail("budget show", st, &err);
    return CLI_EXIT_OK;
}

/* ---- query ---- */

static int run_query(cli_ctx *c)
{
    pvg_query_spec sp;
    pvg_query_spec_init(&sp);
    if (pvg_query_kind_parse(cli_pos(c, 0), &sp.kind) != PVG_OK)
        cli_usage_error(
            c, "unknown query '%s': expected count, sum, mean, quantile, histogram or top-items",
            cli_pos(c, 0));
    const char *ev = cli_str(c, "event");
    if (ev) {
        if (strcmp(ev, "all") == 0)
            sp.event_type = -1;
        else {
            pvg_event_type t;
            if (pvg_event_type_parse(ev, &t) != PVG_OK)
                cli_usage_error(c,
                                "--event: expected view, cart, purchase, return, rating, search or "
                                "all, got '%s'",
                                ev);
            sp.event_type = (int)t;
        }
    }
    const char *val = cli_str(c, "value");
    if (val) {
        if (strcmp(val, "quantity") == 0)
            sp.value = PVG_QUERY_VALUE_QUANTITY;
        else if (strcmp(val, "amount") == 0)
            sp.value = PVG_QUERY_VALUE_AMOUNT;
        else if (strcmp(val, "events") == 0)
            sp.value = PVG_QUERY_VALUE_EVENTS;
        else
            cli_usage_error(c, "--value: expected quantity, amount or events, got '%s'", val);
    }
    const char *gb = cli_str(c, "group-by");
    if (gb && pvg_query_group_parse(gb, &sp.group_by) != PVG_OK)
        cli_usage_error(c, "--group-by: expected category, item, country or day, got '%s'", gb);
    const char *cl = cli_str(c, "clamp");
    if (cl) {
        char *end;
        sp.clamp_lo = strtod(cl, &end);
        if (end == cl || *end != ':') cli_usage_error(c, "--clamp: expected LO:HI, got '%s'", cl);
        const char *h = end + 1;
        sp.clamp_hi = strtod(h, &end);
        if (end == h || *end) cli_usage_error(c, "--clamp: expected LO:HI, got '%s'", cl);
        if (!(sp.clamp_lo < sp.clamp_hi) || !isfinite(sp.clamp_lo) || !isfinite(sp.clamp_hi))
            cli_usage_error(c, "--clamp: expected finite LO < HI, got '%s'", cl);
        sp.has_clamp = 1;
    }
    if (cli_has(c, "max-contributions"))
        sp.max_contributions = (long)cli_int_range(c, "max-contributions", 10, 1, 1000000);
    if (cli_has(c, "max-groups"))
        sp.max_groups = (long)cli_int_range(c, "max-groups", 5, 1, 100000);
    sp.quantile = cli_double(c, "quantile", 0.5);
    /* 0 and 1 are refused, not turned into the median (the minimum and maximum
     * of private data are not estimable with bounded rank error) */
    if (!(sp.quantile > 0 && sp.quantile < 1))
        cli_usage_error(c, "--quantile: expected a number in (0, 1), got %g", sp.quantile);
    sp.bins = (int)cli_int_range(c, "bins", 10, 1, 10000);
    sp.top = (int)cli_int_range(c, "top", 10, 1, 100000);
    sp.epsilon = req_range(c, "epsilon", 0, INFINITY, 1, 1);
    sp.delta = cli_has(c, "delta") ? req_range(c, "delta", 0, 1, 0, 1) : 0;
    const char *nz = cli_str(c, "noise");
    if (nz && strcmp(nz, "gaussian") == 0)
        sp.noise = PVG_QUERY_NOISE_GAUSSIAN;
    else if (nz && strcmp(nz, "laplace") != 0)
        cli_usage_error(c, "--noise: expected laplace or gaussian, got '%s'", nz);
    sp.dataset = dataset_of(c);

    int rc = 0;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_rng *rng = pvg_rng_new_secure();
    if (!rng) {
        pvg_store_free(s);
        return cli_fail("query", PVG_ERR_INTERNAL, NULL);
    }
    pvg_error err;
    pvg_error_clear(&err);
    pvg_query_result *r = NULL;
    pvg_access g;
    pvg_access_init(&g, s, "cli");
    pvg_status st = pvg_access_dp_query(&g, &sp, rng, &r, &err);
    pvg_rng_free(rng);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("query", st, &err);
    if (json_mode(c)) {
        printf("{\"query\":\"%s\",\"what\":", pvg_query_kind_name(sp.kind));
        cli_json_string(stdout, r->what);
        printf(",\"mechanism\":");
        cli_json_string(stdout, r->mechanism);
        printf(",\"noise_scale\":");
        jnum(r->noise_scale);
        printf(",\"epsilon\":");
        jnum(r->epsilon);
        printf(",\"delta\":");
        jnum(r->delta);
        printf(",\"release_id\":%lld,\"max_contributions\":%ld,\"max_groups\":%ld",
               (long long)r->release_id, r->max_contributions, r->max_groups);
        if (r->selection_threshold) printf(",\"selection_threshold\":%ld", r->selection_threshold);
        printf(",\"rows\":[");
        for (size_t i = 0; i < r->n_rows; i++) {
            const pvg_query_row *w = &r->rows[i];
            printf("%s{", i ? "," : "");
            if (w->group) {
                printf("\"group\":");
                cli_json_string(stdout, w->group);
                printf(",");
            }
            printf("\"value\":");
            jnum(w->value);
            printf(",\"ci95\":[");
            jnum(w->ci_lo);
            printf(",");
            jnum(w->ci_hi);
            printf("]");
            if (sp.kind == PVG_QUERY_MEAN) {
                printf(",\"noisy_count\":");
                jnum(w->count);
            }
            if (sp.kind == PVG_QUERY_QUANTILE) {
                printf(",\"rank_error95\":");
                jnum(w->count);
            }
            printf("}");
        }
        printf("]}\n");
    } else {
        printf("%s  (mechanism %s, noise scale %.6g, charged epsilon %g delta %g, release #%lld)\n",
               r->what, r->mechanism, r->noise_scale, r->epsilon, r->delta,
               (long long)r->release_id);
        /* the contribution bound explains why a DP count can sit well
         * below the plain one: what a shopper gives above it is cut */
        if (r->max_groups > 1)
            printf("each shopper's contribution capped at %ld event%s per group in at most %ld "
                   "groups (--max-contributions, --max-groups): what a shopper gives above the "
                   "cap is not counted\n",
                   r->max_contributions, r->max_contributions == 1 ? "" : "s", r->max_groups);
        else
            printf("each shopper's contribution capped at %ld event%s (--max-contributions): what "
                   "a shopper gives above the cap is not counted\n",
                   r->max_contributions, r->max_contributions == 1 ? "" : "s");
        if (r->selection_threshold)
            printf(
                "groups shown only when their noisy user count reaches %ld (partition selection)\n",
                r->selection_threshold);
        for (size_t i = 0; i < r->n_rows; i++) {
            const pvg_query_row *w = &r->rows[i];
            if (sp.kind == PVG_QUERY_QUANTILE)
                printf("  q%g = %.6g   (rank error <= %.0f events with 95%% probability)\n",
                       sp.quantile, w->value, w->count);
            else
                printf("  %-32s %14.4f   95%% CI [%.4f, %.4f]\n", w->group ? w->group : "(all)",
                       w->value, w->ci_lo, w->ci_hi);
        }
    }
    pvg_query_result_free(r);
    return CLI_EXIT_OK;
}

/* ---- the table ---- */

static const cli_flag rdp_flags[] = {
    {"noise-multiplier", CLI_DOUBLE, "S", "noise standard deviation / L2 sensitivity"},
    {"sample-rate", CLI_DOUBLE, "Q", "Poisson sampling probability in [0, 1]"},
    {"steps", CLI_INT, "T", "number of steps"},
    {"order", CLI_DOUBLE, "A", "Renyi order (> 1, integer or fractional)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag eps_flags[] = {
    {"noise-multiplier", CLI_DOUBLE, "S", "noise standard deviation / L2 sensitivity"},
    {"sample-rate", CLI_DOUBLE, "Q", "Poisson sampling probability in [0, 1]"},
    {"steps", CLI_INT, "T", "number of steps"},
    {"delta", CLI_DOUBLE, "D", "target delta in (0, 1)"},
    {"accountant", CLI_STR, "rdp|pld", "accountant (default rdp)"},
    {"conversion", CLI_STR, "improved|classic",
     "RDP to (eps, delta) conversion (default improved)"},
    {"orders", CLI_LIST, "LIST",
     "RDP orders (default 1.1..10.9 by 0.1, 11..63, 128, 256, 512, 1024)"},
    {"pld-interval", CLI_DOUBLE, "H",
     "PLD loss grid (default 1e-4; smaller is tighter and slower)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag sigma_flags[] = {
    {"epsilon", CLI_DOUBLE, "E", "target epsilon > 0"},
    {"delta", CLI_DOUBLE, "D", "target delta in (0, 1)"},
    {"sensitivity", CLI_DOUBLE, "L2", "L2 sensitivity > 0"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag delta_flags[] = {
    {"sigma", CLI_DOUBLE, "S", "Gaussian standard deviation > 0"},
    {"epsilon", CLI_DOUBLE, "E", "epsilon >= 0"},
    {"sensitivity", CLI_DOUBLE, "L2", "L2 sensitivity > 0"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag nm_flags[] = {
    {"epsilon", CLI_DOUBLE, "E", "target epsilon > 0"},
    {"delta", CLI_DOUBLE, "D", "target delta in (0, 1)"},
    {"sample-rate", CLI_DOUBLE, "Q", "Poisson sampling probability in (0, 1]"},
    {"steps", CLI_INT, "T", "number of steps"},
    {"accountant", CLI_STR, "rdp|pld", "accountant (default rdp)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag budget_set_flags[] = {
    {"epsilon", CLI_DOUBLE, "E", "the store's total epsilon (with --purpose: that purpose's cap)"},
    {"delta", CLI_DOUBLE, "D", "the store's total delta (with --purpose: the cap's; default 0)"},
    {"purpose", CLI_STR, "P",
     "cap a purpose: queries, popular_list, similar_items, spend_totals, "
     "model_builds, federated_training"},
    {"clear", CLI_BOOL, NULL, "with --purpose: remove that purpose's cap (needs --force)"},
    {"force", CLI_BOOL, NULL,
     "allow changing a total or cap already set, removing a cap, or a cap above "
     "the total"},
    {"dataset", CLI_STR, "NAME", "refused: there is one budget per store"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag budget_show_flags[] = {
    {"dataset", CLI_STR, "LABEL", "list only the releases charged under this label"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

static const cli_flag query_flags[] = {
    {"event", CLI_STR, "TYPE",
     "event type (view, cart, purchase, return, rating, search, all; default purchase)"},
    {"value", CLI_STR, "quantity|amount|events",
     "value summed (events: each user's number of events)"},
    {"group-by", CLI_STR, "category|item|country|day",
     "group the statistic (DP partition selection)"},
    {"clamp", CLI_STR, "LO:HI",
     "clamp each value (required for sums, means, quantiles, histograms)"},
    {"max-contributions", CLI_INT, "N", "events per user per group (default 10)"},
    {"max-groups", CLI_INT, "N", "groups per user (default 5 when grouped)"},
    {"quantile", CLI_DOUBLE, "Q",
     "quantile in (0,1), bounds excluded, for `quantile` (default 0.5)"},
    {"bins", CLI_INT, "N", "histogram bins over the clamp range (default 10)"},
    {"top", CLI_INT, "N", "top-items: how many (default 10)"},
    {"noise", CLI_STR, "laplace|gaussian", "value noise (default laplace; gaussian needs --delta)"},
    {"epsilon", CLI_DOUBLE, "E", "epsilon charged for the whole query"},
    {"delta", CLI_DOUBLE, "D", "delta charged (grouped queries need > 0)"},
    {"dataset", CLI_STR, "NAME",
     "label the release is filed under (default \"default\"; one budget per store)"},
    {"json", CLI_BOOL, NULL, "print JSON"},
    {0},
};

const cli_command cli_cmds_dp[] = {
    {"dp rdp", NULL, 0, 0, "Renyi DP of the Poisson-subsampled Gaussian mechanism over T steps",
     "Prints {\"rdp\":x}: T times the RDP of one step at the given order (Mironov, Talwar & Zhang "
     "2019).",
     rdp_flags, run_rdp},
    {"dp epsilon", NULL, 0, 0,
     "epsilon of T steps of the Poisson-subsampled Gaussian at a target delta",
     "Prints {\"epsilon\":x,\"order\":a} (order only for rdp). The rdp accountant minimises over "
     "the orders\n"
     "with the improved conversion of Balle et al. 2020 by default; pld composes a pessimistic "
     "privacy-loss\n"
     "distribution and is tighter.",
     eps_flags, run_epsilon},
    {"dp sigma", NULL, 0, 0, "analytic Gaussian: the smallest sigma meeting (epsilon, delta)",
     "Prints {\"sigma\":x} (Balle & Wang 2018), to 1e-12 relative; the value returned always meets "
     "delta.",
     sigma_flags, run_sigma},
    {"dp delta", NULL, 0, 0, "exact delta of the Gaussian mechanism at epsilon",
     "Prints {\"delta\":x}.", delta_flags, run_delta},
    {"dp noise-multiplier", NULL, 0, 0, "smallest noise multiplier meeting a target epsilon",
     "Prints {\"noise_multiplier\":x}: the smallest sigma (to 1e-7 relative with rdp, 1e-5 with "
     "pld, rounded\n"
     "up) whose epsilon does not exceed the target.",
     nm_flags, run_noise_multiplier},
    {"budget set", NULL, 0, 0,
     "set the store's total (epsilon, delta) privacy budget, or a purpose's cap",
     "A store has one budget: every DP release, whatever label it is charged under, is charged "
     "against\n"
     "the total and its purpose's cap (if any) before it leaves; releases that would overspend "
     "either are\n"
     "refused. A total or cap below what was spent is always refused. --force is needed to change "
     "a total\n"
     "or cap already set (raising or lowering), to remove a cap, or to set a cap above the total. "
     "Every\n"
     "attempt is written to the audit log (action budget_set).",
     budget_set_flags, run_budget_set},
    {"budget show", NULL, 0, 0,
     "show the store's budget, each purpose's cap and spending, and every release", NULL,
     budget_show_flags, run_budget_show},
    {"query", "KIND", 1, 1,
     "user-level DP statistic: count, sum, mean, quantile, histogram, top-items",
     "Each user's contribution is bounded before noise (--max-groups, --max-contributions, "
     "--clamp);\n"
     "grouped results go through DP partition selection. The query's (epsilon, delta) is charged "
     "to the\n"
     "ledger before the result is printed. Examples:\n"
     "  privguide query mean --value events --clamp 0:50 --max-contributions 50 --epsilon 0.5\n"
     "      (purchases per user and their average)\n"
     "  privguide query sum --value amount --clamp 0:100 --max-contributions 5 --max-groups 3 "
     "--group-by category --epsilon 1 --delta 1e-6\n"
     "  privguide query top-items --top 10 --epsilon 1 --delta 1e-6",
     query_flags, run_query},
    {0},
};
