/*
 * dp_ials.c - DP-iALS against non-private iALS through the evaluation
 * harness (privguide/eval.h): Recall@20, NDCG@20 and train time per
 * epsilon. One JSON object per line.
 *
 * Usage: bench_dp_ials ml100k|retail DATA_FILE [key=value ...]
 *   eps=1,4,8,16  delta=1e-6  factors=F  epochs=T  m=M  reg=R  alpha=A
 *   nu=N  cg=S  threads=2  seeds=1  validation=0  baseline=1
 *   (factors, epochs, reg, alpha, nu, cg apply to the DP runs; the
 *   baseline is iALS with its defaults, or base_reg=R for its reg)
 * ml100k: random-split 0.25, seed 42; retail: temporal 2011-11-01, >= 5
 * training items. DP noise comes from a CSPRNG: runs differ by seed.
 */
#include <privguide/eval.h>
#include <privguide/model.h>

#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *arg(int argc, char **argv, const char *key, const char *def)
{
    size_t n = strlen(key);
    for (int i = 3; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
    return def;
}

static int run(const pvg_dataset *ds, const pvg_train_params *tp, const pvg_eval_options *o,
               const char *name, const char *label, double eps)
{
    pvg_eval_result res;
    pvg_error err = {0};
    if (pvg_eval_run(ds, tp, o, &res, &err) != PVG_OK) {
        fprintf(stderr, "eval failed: %s\n", err.text);
        return 1;
    }
    const pvg_eval_at_k *a = NULL;
    for (int i = 0; i < res.n_ks; i++)
        if (res.at[i].k == 20) a = &res.at[i];
    if (!a) return 1;
    printf("{\"dataset\": \"%s\", \"model\": \"%s\", \"epsilon\": %g, \"delta\": %g, "
           "\"factors\": %d, \"epochs\": %d, \"m\": %d, \"reg\": %g, \"alpha\": %g, "
           "\"validation\": %d, \"users_evaluated\": %ld, \"recall@20\": %.4f, "
           "\"ndcg@20\": %.4f, \"coverage@20\": %.3f, \"train_seconds\": %.3f}\n",
           name, label, eps, tp->dp_delta, tp->factors, tp->epochs, tp->dp_max_items, tp->reg,
           tp->alpha, o->validation, res.users_evaluated, a->recall, a->ndcg, a->coverage,
           res.train_seconds);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ml100k|retail DATA_FILE [key=value ...]\n", argv[0]);
        return 2;
    }
    int retail = strcmp(argv[1], "retail") == 0;
    pvg_dataset *ds;
    pvg_error err = {0};
    if (pvg_dataset_load_file(argv[2], retail ? PVG_FORMAT_ONLINE_RETAIL : PVG_FORMAT_MOVIELENS,
                              NULL, NULL, &ds, NULL, &err) != PVG_OK) {
        fprintf(stderr, "load: %s\n", err.text);
        return 1;
    }
    pvg_eval_options o;
    pvg_eval_options_default(retail ? PVG_EVAL_TEMPORAL : PVG_EVAL_RANDOM_SPLIT, &o);
    o.seed = 42;
    o.test_fraction = 0.25;
    if (retail) {
        o.cutoff = 1320105600; /* 2011-11-01 00:00 UTC */
        o.min_user_items = 5;
    }
    o.n_ks = 1;
    o.ks[0] = 20;
    int threads = atoi(arg(argc, argv, "threads", "2"));
    o.threads = threads;
    o.validation = atoi(arg(argc, argv, "validation", "0"));
    const char *name = retail ? "online-retail" : "ml-100k";
    int rc = 0;
    if (atoi(arg(argc, argv, "baseline", "1"))) {
        pvg_train_params tp;
        pvg_train_params_default(PVG_MODEL_IALS, &tp);
        tp.threads = threads;
        tp.reg = atof(arg(argc, argv, "base_reg", "0.03"));
        rc |= run(ds, &tp, &o, name, "ials", 0);
    }
    int seeds = atoi(arg(argc, argv, "seeds", "1"));
    char eps_list[256];
    snprintf(eps_list, sizeof eps_list, "%s", arg(argc, argv, "eps", "1,4,8,16"));
    for (char *tok = strtok(eps_list, ","); tok; tok = strtok(NULL, ",")) {
        for (int s = 0; s < seeds; s++) {
            pvg_train_params tp;
            pvg_train_params_default(PVG_MODEL_IALS, &tp);
            tp.threads = threads;
            tp.seed = 42 + (uint64_t)s;
            tp.factors = atoi(arg(argc, argv, "factors", "64"));
            tp.epochs = atoi(arg(argc, argv, "epochs", "16"));
            tp.reg = atof(arg(argc, argv, "reg", "0.03"));
            tp.alpha = atof(arg(argc, argv, "alpha", "3"));
            tp.nu = atof(arg(argc, argv, "nu", "1"));
            tp.cg_steps = atoi(arg(argc, argv, "cg", "3"));
            tp.dp_epsilon = atof(tok);
            tp.dp_delta = atof(arg(argc, argv, "delta", "1e-6"));
            tp.dp_max_items = atoi(arg(argc, argv, "m", "0"));
            /* the catalogue is public: every item is in the vocabulary */
            tp.dp_items = (const char *const *)ds->item_ids;
            tp.dp_n_items = pvg_dataset_n_items(ds);
            rc |= run(ds, &tp, &o, name, "dp-ials", tp.dp_epsilon);
        }
    }
    pvg_dataset_free(ds);
    return rc;
}
