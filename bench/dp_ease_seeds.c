/*
 * dp_ease_seeds.c - DP-EASE with catalogue text on Online Retail (temporal,
 * cut-off 2011-11-01, >= 5 training items) over a set of seeded noise
 * draws: the harness behind docs/models.md's choices of DP-EASE's
 * post-processing and constants. Every variant measured with the same
 * seeds sees the same noise, so two variants are compared draw by draw.
 * Prints one JSON object per (epsilon, seed) and one summary per epsilon
 * (mean, sample std, min, max of Recall@20; the share of the non-private
 * EASE on the same split, when baseline=1).
 *
 * Usage: bench_dp_ease_seeds DATA_FILE [key=value ...]
 *   eps=8  seeds=100-105  validation=1  baseline=0  threads=2  m=0
 *   lambda=500  delta=1e-6
 *   hl=0  hlnorm=0  rpdays=0  rpbeta=0  rpshare=0   recency (docs/models.md
 *   "Recency"): hl the Gram's half-life in days (hlnorm=1: each row's
 *   weights rescaled to the binary row's norm), rpdays / rpbeta the
 *   recent buyers' window (days) and blend weight, rpshare that release's
 *   share of rho (0: 0.05), rpunit=1 each shopper's window items at
 *   1/sqrt(k) (unit-norm rows, L2 sensitivity 1, no bound to m); applied
 *   to the baseline EASE too (exact counts), so share_of_ease is against
 *   EASE with the same recency terms
 *   defaults=1   instead of hl= ... rpunit=: the recency defaults of
 *   `privguide train` (pvg_train_params_recency_default), DP-EASE's for
 *   the DP runs and non-private EASE's for the baseline (the reference)
 *   DATA_FILE: online-retail.csv(.gz). validation=1 evaluates on the
 *   split carved from the training part (the test window is never read),
 *   validation=0 on the test split.
 * The noise comes from the deterministic test generator seeded with each
 * seed (dp_allow_insecure_rng): a measurement tool, never a way to train a
 * model anyone sees; the trainer, the mechanism and the accounting are the
 * production ones (pvg_model_train through pvg_eval_run). The vocabulary and
 * the titles are the file's item list and Descriptions, standing for the
 * operator's declared catalogue, as in bench_privacy_utility.
 */
#include <privguide/eval.h>
#include <privguide/model.h>
#include <privguide/rng.h>

#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *arg(int argc, char **argv, const char *key, const char *def)
{
    size_t n = strlen(key);
    for (int i = 2; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
    return def;
}

static int eval_one(const pvg_dataset *ds, const pvg_train_params *tp, const pvg_eval_options *o,
                    double *recall, double *ndcg, double *secs)
{
    pvg_eval_result res;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_eval_run(ds, tp, o, &res, &err) != PVG_OK) {
        fprintf(stderr, "bench_dp_ease_seeds: eval failed: %s\n", err.text);
        return 1;
    }
    *recall = res.at[0].recall;
    *ndcg = res.at[0].ndcg;
    *secs = res.train_seconds;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s DATA_FILE [eps=8] [seeds=100-105] [validation=1] "
                "[baseline=0] [threads=2] [m=0] [lambda=500] [delta=1e-6] [hl=0] [rpdays=0] "
                "[rpbeta=0] [rpshare=0] [hlnorm=0] [rpunit=0] [defaults=0]\n",
                argv[0]);
        return 2;
    }
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_dataset_load_file(argv[1], PVG_FORMAT_ONLINE_RETAIL, NULL, NULL, &ds, NULL, &err) !=
        PVG_OK) {
        fprintf(stderr, "bench_dp_ease_seeds: %s: %s\n", argv[1], err.text);
        return 1;
    }
    int s0 = 100, s1 = 105;
    if (sscanf(arg(argc, argv, "seeds", "100-105"), "%d-%d", &s0, &s1) < 1) {
        fprintf(stderr, "bench_dp_ease_seeds: seeds=A-B expected\n");
        return 2;
    }
    if (s1 < s0) s1 = s0;
    pvg_eval_options o;
    pvg_eval_options_default(PVG_EVAL_TEMPORAL, &o);
    o.seed = 42;
    o.cutoff = 1320105600; /* 2011-11-01T00:00:00Z */
    o.min_user_items = 5;
    o.n_ks = 1;
    o.ks[0] = 20;
    int threads = atoi(arg(argc, argv, "threads", "2"));
    o.threads = threads;
    o.validation = atoi(arg(argc, argv, "validation", "1"));
    double lambda = atof(arg(argc, argv, "lambda", "500"));
    double delta = atof(arg(argc, argv, "delta", "1e-6"));
    const char **titles = calloc(ds->n_items ? ds->n_items : 1, sizeof *titles);
    if (!titles) return 1;
    for (size_t i = 0; i < ds->n_items; i++)
        titles[i] = pvg_dataset_item_title(ds, i);
    const char *split = o.validation ? "validation" : "test";
    double hl = atof(arg(argc, argv, "hl", "0")), rpdays = atof(arg(argc, argv, "rpdays", "0"));
    double rpbeta = atof(arg(argc, argv, "rpbeta", "0"));
    double rpshare = atof(arg(argc, argv, "rpshare", "0"));
    int hlnorm = atoi(arg(argc, argv, "hlnorm", "0"));
    int rpunit = atoi(arg(argc, argv, "rpunit", "0"));
    /* defaults=1: the recency terms of pvg_train_params_recency_default
     * (what `privguide train` uses) instead of hl= ... rpunit= */
    int defaults = atoi(arg(argc, argv, "defaults", "0"));
    double base = 0;
    int rc = 0;
    if (atoi(arg(argc, argv, "baseline", "0"))) {
        pvg_train_params tp;
        pvg_train_params_default(PVG_MODEL_EASE, &tp);
        tp.threads = threads;
        tp.ease_lambda = 500;
        tp.recency_halflife_days = hl;
        tp.recency_row_norm = hlnorm;
        tp.recent_pop_days = rpdays;
        tp.recent_pop_beta = rpbeta;
        tp.recent_pop_unit = rpunit;
        if (defaults) pvg_train_params_recency_default(&tp, 0);
        double nd, secs;
        if (eval_one(ds, &tp, &o, &base, &nd, &secs)) return 1;
        printf("{\"split\": \"%s\", \"model\": \"ease\", \"epsilon\": \"inf\", \"hl\": %g, "
               "\"hlnorm\": %d, \"rpdays\": %g, \"rpbeta\": %g, \"recall@20\": %.4f, "
               "\"ndcg@20\": %.4f}\n",
               split, hl, hlnorm, rpdays, rpbeta, base, nd);
        fflush(stdout);
    }
    char eps_list[256];
    snprintf(eps_list, sizeof eps_list, "%s", arg(argc, argv, "eps", "8"));
    for (char *tok = strtok(eps_list, ","); tok && !rc; tok = strtok(NULL, ",")) {
        double eps = atof(tok), sum = 0, ss = 0, mn = INFINITY, mx = -INFINITY;
        int n = 0;
        for (int s = s0; s <= s1; s++) {
            pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests((uint64_t)s);
            if (!rng) return 1;
            pvg_train_params tp;
            pvg_train_params_default(PVG_MODEL_EASE, &tp);
            tp.threads = threads;
            tp.seed = 1;
            tp.ease_lambda = lambda;
            tp.dp_epsilon = eps;
            tp.dp_delta = delta;
            tp.dp_max_items = atoi(arg(argc, argv, "m", "0"));
            tp.dp_items = (const char *const *)ds->item_ids;
            tp.dp_n_items = ds->n_items;
            tp.dp_item_titles = titles;
            tp.dp_rng = rng;
            tp.dp_allow_insecure_rng = 1;
            tp.recency_halflife_days = hl;
            tp.recency_row_norm = hlnorm;
            tp.recent_pop_days = rpdays;
            tp.recent_pop_beta = rpbeta;
            tp.recent_pop_share = rpshare;
            tp.recent_pop_unit = rpunit;
            if (defaults) pvg_train_params_recency_default(&tp, 0);
            double r, nd, secs;
            rc = eval_one(ds, &tp, &o, &r, &nd, &secs);
            pvg_rng_free(rng);
            if (rc) break;
            printf("{\"split\": \"%s\", \"model\": \"dp-ease\", \"defaults\": %d, \"epsilon\": %g, "
                   "\"seed\": %d, "
                   "\"hl\": %g, \"hlnorm\": %d, \"rpdays\": %g, \"rpbeta\": %g, "
                   "\"rpunit\": %d, \"recall@20\": %.4f, \"ndcg@20\": %.4f, "
                   "\"train_seconds\": %.2f}\n",
                   split, defaults, eps, s, hl, hlnorm, rpdays, rpbeta, rpunit, r, nd, secs);
            fflush(stdout);
            sum += r;
            ss += r * r;
            if (r < mn) mn = r;
            if (r > mx) mx = r;
            n++;
        }
        if (!n) break;
        double mean = sum / n, var = n > 1 ? (ss - n * mean * mean) / (n - 1) : 0;
        printf("{\"split\": \"%s\", \"summary\": true, \"epsilon\": %g, \"seeds\": \"%d-%d\", "
               "\"n\": %d, \"recall@20\": {\"mean\": %.4f, \"std\": %.4f, \"min\": %.4f, \"max\": "
               "%.4f}",
               split, eps, s0, s1, n, mean, var > 0 ? sqrt(var) : 0, mn, mx);
        if (base > 0) printf(", \"share_of_ease\": %.4f", mean / base);
        printf("}\n");
        fflush(stdout);
    }
    free(titles);
    pvg_dataset_free(ds);
    return rc;
}
