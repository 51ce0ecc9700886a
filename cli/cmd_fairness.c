/*
 * cmd_fairness.c - `privguide audit fairness` (listed in the model table):
 * compares recommendation quality and exposure across groups of shoppers
 * (privguide/fairness.h), optionally with calibrated re-ranking and as a DP
 * release; prints the report, writes it (--out) or keeps it in the data dir
 * for GET /v1/admin/fairness (--save).
 */
#include "cli.h"

#include <privguide/fairness.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/store.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "[lo, hi]" or "-" */
static void print_ci(json_t *ci)
{
    if (json_is_array(ci) && json_array_size(ci) == 2)
        printf(" [%.4f, %.4f]", json_number_value(json_array_get(ci, 0)),
               json_number_value(json_array_get(ci, 1)));
    else
        printf(" [-]");
}

static void print_groups(json_t *groups)
{
    printf("  %-20s %7s  %-26s %-26s %8s %8s %7s\n", "group", "users", "recall [95% CI]",
           "ndcg [95% CI]", "pop.bias", "miscal", "cover");
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        printf("  %-20s %7lld  %.4f", json_string_value(json_object_get(g, "group")),
               (long long)json_integer_value(json_object_get(g, "users")),
               json_number_value(json_object_get(g, "recall")));
        print_ci(json_object_get(g, "recall_ci"));
        printf("  %.4f", json_number_value(json_object_get(g, "ndcg")));
        print_ci(json_object_get(g, "ndcg_ci"));
        json_t *mc = json_object_get(g, "miscalibration");
        printf("  %+.4f", json_number_value(json_object_get(g, "popularity_bias")));
        if (json_is_number(mc))
            printf(" %8.4f", json_number_value(mc));
        else
            printf(" %8s", "-");
        printf(" %7.4f\n", json_number_value(json_object_get(g, "coverage")));
    }
}

static void print_gaps(json_t *gaps)
{
    const char *key;
    json_t *v;
    json_object_foreach(gaps, key, v)
    {
        if (!json_is_object(v)) continue;
        printf("  %-16s max-min %+.4f", key,
               json_number_value(json_object_get(v, "max_minus_min")));
        print_ci(json_object_get(v, "ci"));
        printf("  (%s - %s)\n", json_string_value(json_object_get(v, "max_group")),
               json_string_value(json_object_get(v, "min_group")));
    }
}

static void print_report(json_t *r)
{
    printf("fairness audit by %s: %s, %s, k=%lld, intervals: %s\n",
           json_string_value(json_object_get(r, "group_by")),
           json_string_value(json_object_get(r, "model")),
           json_string_value(json_object_get(r, "protocol")),
           (long long)json_integer_value(json_object_get(r, "k")),
           json_string_value(json_object_get(json_object_get(r, "ci"), "method")));
    json_t *dp = json_object_get(r, "dp");
    if (json_is_object(dp))
        printf("DP release: epsilon %g (discrete Laplace on the group sums)\n",
               json_number_value(json_object_get(dp, "epsilon")));
    print_groups(json_object_get(r, "groups"));
    printf("gaps:\n");
    print_gaps(json_object_get(r, "gaps"));
    json_t *m = json_object_get(r, "mitigation");
    if (json_is_object(m)) {
        json_t *b = json_object_get(m, "overall_before"), *a = json_object_get(m, "overall_after");
        printf("after calibration (lambda %g): overall recall %.4f -> %.4f, ndcg %.4f -> %.4f, "
               "miscalibration %.4f -> %.4f\n",
               json_number_value(json_object_get(m, "lambda")),
               json_number_value(json_object_get(b, "recall")),
               json_number_value(json_object_get(a, "recall")),
               json_number_value(json_object_get(b, "ndcg")),
               json_number_value(json_object_get(a, "ndcg")),
               json_number_value(json_object_get(b, "miscalibration")),
               json_number_value(json_object_get(a, "miscalibration")));
        print_groups(json_object_get(m, "groups"));
        printf("gaps after calibration:\n");
        print_gaps(json_object_get(m, "gaps"));
    }
}

int cli_run_audit_fairness(cli_ctx *c)
{
    pvg_error err;
    pvg_error_clear(&err);
    const char *groups_file = cli_str(c, "groups"), *group_by = cli_str(c, "group-by");
    if (!groups_file && !group_by)
        cli_usage_error(c, "say whose groups: --groups FILE [--group-by COLUMN] or --group-by "
                           "country (the events file's own column)");
    if (!groups_file && !cli_has(c, "input"))
        cli_usage_error(c, "--group-by without --groups reads the attribute from --input's "
                           "events; from the store, give --groups FILE");
    pvg_model_type t;
    pvg_eval_protocol proto;
    pvg_train_params p;
    pvg_eval_options o;
    cli_eval_setup(c, "audit fairness", 0, &t, &proto, &p, &o);
    pvg_fair_options fo;
    pvg_fair_options_default(&fo);
    fo.k = (int)cli_int_range(c, "k", 20, 1, 1000);
    fo.bootstrap = (int)cli_int_range(c, "bootstrap", 1000, 0, 100000);
    fo.seed = o.seed;
    fo.min_group_users = (long)cli_int_range(c, "min-group-users", 20, 1, 1000000000);
    fo.max_groups = (int)cli_int_range(c, "max-groups", 0, 0, 10000);
    fo.group_by = group_by ? group_by : "group";
    const char *mit = cli_str(c, "mitigate");
    if (mit) {
        if (strcmp(mit, "calibration") != 0)
            cli_usage_error(c, "--mitigate: 'calibration' is the one mitigation, got '%s'", mit);
        if (t == PVG_MODEL_EASE && cli_has(c, "lambda"))
            cli_usage_error(c, "--lambda is the calibration trade-off here; give EASE's L2 with "
                               "--params FILE");
        fo.mitigate = PVG_FAIR_MITIGATE_CALIBRATION;
        fo.lambda = cli_double(c, "lambda", 0.5);
        if (!(fo.lambda >= 0 && fo.lambda <= 1)) cli_usage_error(c, "--lambda must be in [0, 1]");
        fo.candidates = (int)cli_int_range(c, "candidates", 100, fo.k, 10000);
    } else if (cli_has(c, "candidates") || (cli_has(c, "lambda") && t != PVG_MODEL_EASE)) {
        cli_usage_error(c, "--lambda and --candidates go with --mitigate calibration");
    }
    fo.epsilon = cli_double(c, "epsilon", 0);
    if (!(fo.epsilon >= 0) || !isfinite(fo.epsilon))
        cli_usage_error(c, "--epsilon must be a finite number > 0 (0: no DP release)");
    if (cli_has(c, "model-epsilon")) {
        p.dp_epsilon = cli_double(c, "model-epsilon", 0);
        if (!(p.dp_epsilon > 0) || !isfinite(p.dp_epsilon))
            cli_usage_error(c, "--model-epsilon must be a finite number > 0");
        p.dp_delta = cli_double(c, "model-delta", 1e-6);
        if (!(p.dp_delta >= 0 && p.dp_delta < 1))
            cli_usage_error(c, "--model-delta must be in [0, 1)");
    } else if (cli_has(c, "model-delta")) {
        cli_usage_error(c, "--model-delta goes with --model-epsilon");
    }
    const char *items = cli_str(c, "dp-items");
    if (items && !(cli_has(c, "model-epsilon") && cli_has(c, "input")))
        cli_usage_error(c, "--dp-items goes with --model-epsilon on --input (from the store, the "
                           "declared catalogue is the list: privguide catalog import FILE)");
    char **dp_ids = NULL, *dp_buf = NULL;
    if (items) cli_dp_items_load(c, items, &p, &dp_ids, &dp_buf);
    cli_recency_setup(c, &p, 0);
    if (fo.epsilon > 0 && cli_has(c, "bootstrap"))
        cli_usage_error(c, "--bootstrap resamples shoppers: not with --epsilon (the DP report's "
                           "intervals use the normal approximation)");
    int json = cli_bool(c, "json");
    const char *outp = cli_str(c, "out");
    int save = cli_bool(c, "save");
    char report_path[4096];
    if (save) {
        snprintf(report_path, sizeof report_path, "%s/%s", cli_data_dir(c), PVG_FAIR_REPORT_FILE);
        if (!pvg_model_path_in_data_dir(report_path))
            cli_usage_error(c, "--save: %s holds no store (privguide init)", cli_data_dir(c));
    }
    pvg_dataset *ds;
    pvg_store *store = NULL;
    int rc = cli_load_dataset(c, &ds, cli_str(c, "input") ? NULL : &store, json);
    if (rc) {
        free(dp_ids);
        free(dp_buf);
        return rc;
    }
    pvg_fair_labels *groups = NULL, *cats = NULL;
    pvg_fair_report *rep = NULL;
    char *text = NULL;
    pvg_status st = pvg_fair_labels_new(&groups, &err);
    if (st != PVG_OK) goto fail;
    if (groups_file) {
        long rows;
        st = pvg_fair_groups_read(groups_file, group_by, ds, store, groups, &rows, &err);
    } else {
        pvg_format fmt;
        if (pvg_format_parse(cli_str(c, "format"), &fmt) != PVG_OK) {
            st = pvg_error_set(&err, PVG_ERR_INVALID, "unknown format");
            goto fail;
        }
        st = pvg_fair_groups_from_events(cli_str(c, "input"), fmt, group_by, ds, groups, &err);
    }
    if (st != PVG_OK) goto fail;
    if (pvg_fair_labels_conflicts(groups) && !json)
        cli_warn("%zu shoppers appear with two labels: their first is used",
                 pvg_fair_labels_conflicts(groups));
    if (cli_str(c, "item-categories")) {
        st = pvg_fair_labels_new(&cats, &err);
        if (st == PVG_OK) st = pvg_fair_categories_read(cli_str(c, "item-categories"), cats, &err);
        if (st != PVG_OK) goto fail;
    }
    if (fo.epsilon > 0) {
        fo.ledger = store; /* NULL for a file: nothing of the store is released */
        if (!store && !json)
            cli_warn("--epsilon on a file (--input): the release is DP but no store ledger is "
                     "charged");
    }
    st = pvg_fair_audit(ds, &p, &o, groups, cats, &fo, &rep, &err);
    if (st != PVG_OK) goto fail;
    text = pvg_fair_report_json(rep);
    if (!text) {
        st = pvg_error_set(&err, PVG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (outp) {
        FILE *f = fopen(outp, "w");
        if (!f || fputs(text, f) < 0 || fputc('\n', f) == EOF || fclose(f) != 0) {
            st = pvg_error_set(&err, PVG_ERR_IO, "%s: cannot write", outp);
            goto fail;
        }
    }
    if (save) {
        st = pvg_fair_report_save(cli_data_dir(c), text, &err);
        if (st != PVG_OK) goto fail;
    }
    if (json) {
        puts(text);
    } else {
        json_error_t je;
        json_t *r = json_loads(text, 0, &je);
        if (r) print_report(r);
        json_decref(r);
        if (save) printf("saved: %s\n", report_path);
    }
    free(text);
    pvg_fair_report_free(rep);
    pvg_fair_labels_free(groups);
    pvg_fair_labels_free(cats);
    pvg_dataset_free(ds);
    pvg_store_free(store);
    free(dp_ids);
    free(dp_buf);
    return 0;
fail:
    free(dp_ids);
    free(dp_buf);
    free(text);
    pvg_fair_report_free(rep);
    pvg_fair_labels_free(groups);
    pvg_fair_labels_free(cats);
    pvg_dataset_free(ds);
    pvg_store_free(store);
    return cli_fail("audit fairness", st, &err);
}

const cli_flag cli_fairness_flags[] = {
    {"groups", CLI_STR, "FILE",
     "shopper attributes: user,group (CSV/TSV), a file with a header (with --group-by COLUMN), "
     "or ML-100K u.user[.gz] (--group-by gender|age-band|age|occupation)"},
    {"group-by", CLI_STR, "ATTRIBUTE",
     "the attribute: a column of --groups, or without --groups 'country' of --input's events"},
    {"model", CLI_STR, "M", "popularity, itemknn, ials, ease or bpr"},
    {"protocol", CLI_STR, "P", "random-split, holdout-users or temporal"},
    {"test-fraction", CLI_DOUBLE, "X", "random-split: per-user held-out fraction (default 0.25)"},
    {"heldout-users", CLI_INT, "N", "holdout-users: N validation and N test users (default 100)"},
    {"cutoff", CLI_STR, "YYYY-MM-DD", "temporal: events before this day (UTC) train"},
    {"min-user-items", CLI_INT, "N", "temporal: users need N training items (default 1)"},
    {"k", CLI_INT, "N", "list length (default 20)"},
    {"item-categories", CLI_STR, "FILE",
     "item,category file or ML-100K u.item[.gz] (default: popularity tiers head/mid/tail)"},
    {"bootstrap", CLI_INT, "B", "bootstrap resamples for the intervals (default 1000; 0: normal)"},
    {"min-group-users", CLI_INT, "N", "smaller groups are merged into \"other\" (default 20)"},
    {"max-groups", CLI_INT, "N", "keep the N largest groups, the rest \"other\" (default all)"},
    {"mitigate", CLI_STR, "METHOD", "calibration: re-rank (Steck 2018) and report the effect"},
    {"lambda", CLI_DOUBLE, "L", "calibration trade-off in [0, 1] (default 0.5)"},
    {"candidates", CLI_INT, "N", "calibration: candidates re-ranked (default 100)"},
    {"epsilon", CLI_DOUBLE, "E",
     "release the group statistics with epsilon-DP (charged to the store's ledger)"},
    {"model-epsilon", CLI_DOUBLE, "E",
     "train the audited model with shopper-level (E, --model-delta)-DP (docs/models.md \"DP "
     "training\"); required with --epsilon on the store, where it is charged too"},
    {"model-delta", CLI_DOUBLE, "D", "delta of the model's DP training (default 1e-6)"},
    {"dp-items", CLI_STR, "FILE",
     "with --model-epsilon on --input: the model's public item vocabulary, one id a line, "
     "optionally a TAB and the item's catalogue title (as train's; default: DP partition "
     "selection over the file's items); from the store the declared catalogue is the list"},
    {"out", CLI_STR, "FILE", "also write the report (JSON) to FILE"},
    {"save", CLI_BOOL, NULL, "keep the report in the data dir (GET /v1/admin/fairness)"},
    {"json", CLI_BOOL, NULL, "print the report as JSON"},
    CLI_HYPER_FLAGS,
    {0},
};

const char cli_fairness_help[] =
    "Splits the events (--input FILE --format F, or the store's consenting shoppers) by "
    "--protocol, trains --model on the training part and, per group: Recall@k and NDCG@k with "
    "95% intervals (bootstrap over shoppers), exposure per item category, popularity bias, "
    "coverage, miscalibration; the gaps between groups (max - min and each group vs the rest). "
    "--mitigate calibration re-ranks the top --candidates (Steck 2018) and reports both. "
    "--epsilon E releases only noisy group sums (discrete Laplace), charged to the store's "
    "ledger under \"fairness_audit\" (purpose queries). Here --lambda is the calibration "
    "trade-off (EASE's L2 goes in --params). docs/fairness.md has the method.";
