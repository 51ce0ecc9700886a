/*
 * privacy_utility.c - the privacy-utility frontier of the DP recommenders:
 * Recall@20 and NDCG@20 of each DP trainer against epsilon, beside the best
 * non-private model. Prints one JSON object on stdout and writes an SVG plot.
 *
 * Usage: bench_privacy_utility [SHARED_DATA_DIR] [--svg FILE] [--json FILE] [--table FILE]
 *          [--methods popularity,itemknn,ease,ials] [--datasets ml-100k,online-retail]
 *          [--seeds N] [--threads T] [--no-bpr] [--no-recency]
 *   SHARED_DATA_DIR holds ml-100k/u.data.gz and online-retail/online-retail.csv.gz;
 *   default $PVG_SHARED_DIR/data, then ../shared/data, ../../shared/data.
 *   Absent: says so on stderr and exits 77.
 *
 * Protocols (as docs/models.md's quality tables):
 *   ml-100k        random-split, test fraction 0.25, split seed 42
 *   online-retail  temporal, cut-off 2011-11-01, shoppers with >= 5 training items
 * The DP trainers' public item vocabulary is the file's whole item list,
 * standing for the operator's catalog (ML-100K's u.item lists the same
 * 1682 films; Online Retail's StockCodes are its catalog), as the store's
 * catalog is in serving (docs/models.md "DP training"); no budget goes to
 * partition selection. DP-iALS runs with its documented 16 factors and 2
 * iterations (docs/models.md "DP-iALS"), every other trainer with its
 * defaults; EASE and DP-EASE with the recency terms' defaults
 * (pvg_train_params_recency_default, the temporal split's cut-off as the
 * present; DP-EASE applies them where its projected release runs), as
 * `privguide train` and `eval` train them (--no-recency: without).
 * For each method whose trainer supports DP (a probe training on a tiny
 * dataset must record its (epsilon, delta) in the model; a method that does
 * not is reported as unavailable, never measured without DP), epsilon
 * sweeps {0.5, 1, 2, 4, 8, 16, inf} at delta 1e-6 (shopper-level), each
 * point trained with N training seeds (default 3: 1, 2, 3) and fresh noise
 * from the secure generator; inf is the same method trained without DP.
 * Each point reports mean, std (sample), min and max of Recall@20 and
 * NDCG@20 over the seeds, and the mean training time. The reference line
 * is the best non-private model of {popularity, itemknn, ials, ease, bpr}
 * (default hyperparameters; --no-bpr leaves BPR out, the slowest) by mean
 * Recall@20; --no-reference leaves out the models that are not among the
 * methods (a run to be joined with --combine to one that has them). --json
 * is rewritten after each method, so an interrupted run keeps its figures.
 *
 * --combine A.json [--combine B.json] reads runs this program wrote (e.g.
 * one per dataset, run side by side) and writes the outputs from them.
 *
 * --table writes the markdown tables of docs/models.md ("Privacy-utility
 * frontier"): each metric per method and epsilon with its share of the best
 * non-private model, the smallest epsilon reaching 80/90/95% of it, and
 * the training time at epsilon 8 beside the same method without DP.
 *
 * The SVG (one panel per dataset: Recall@20 against epsilon on a log axis,
 * one line per method with min-max bars, inf drawn apart at the right, the
 * best non-private model as a dashed horizontal line) is written by this
 * program (no plotting tool) to the file given with --svg; docs/models.md
 * shows it as docs/img/privacy-utility.svg.
 */
#include <privguide/eval.h>
#include <privguide/model.h>

#include "model/model_internal.h" /* the dataset's item ids: the catalog stand-in */

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_EPS 7
static const double EPS[N_EPS] = {0.5, 1, 2, 4, 8, 16, INFINITY};
#define DELTA 1e-6
#define K 20
#define MAX_SEEDS 10

typedef struct stat4 {
    double mean, std, min, max;
} stat4;

typedef struct point {
    int ok;
    stat4 recall, ndcg;
    double train_seconds;
    char error[PVG_ERROR_TEXT_LEN + 32];
} point;

typedef struct method_res {
    pvg_model_type type;
    int available;
    char why[PVG_ERROR_TEXT_LEN + 32];
    char mechanism[PVG_DP_MECHANISM_MAX];
    point pts[N_EPS];
} method_res;

typedef struct dataset_def {
    const char *name, *file, *protocol_text;
    pvg_format fmt;
    pvg_eval_protocol protocol;
} dataset_def;

static const dataset_def DATASETS[] = {
    {"ml-100k", "ml-100k/u.data.gz", "random-split 0.25, split seed 42", PVG_FORMAT_MOVIELENS,
     PVG_EVAL_RANDOM_SPLIT},
    {"online-retail", "online-retail/online-retail.csv.gz",
     "temporal, cut-off 2011-11-01, >= 5 training items", PVG_FORMAT_ONLINE_RETAIL,
     PVG_EVAL_TEMPORAL},
};
#define N_DATASETS 2

static stat4 stats_of(const double *x, int n)
{
    stat4 s = {0, 0, INFINITY, -INFINITY};
    for (int i = 0; i < n; i++) {
        s.mean += x[i];
        if (x[i] < s.min) s.min = x[i];
        if (x[i] > s.max) s.max = x[i];
    }
    s.mean /= n;
    double v = 0;
    for (int i = 0; i < n; i++)
        v += (x[i] - s.mean) * (x[i] - s.mean);
    s.std = n > 1 ? sqrt(v / (n - 1)) : 0;
    return s;
}

static void eval_options(const dataset_def *d, int threads, pvg_eval_options *o)
{
    pvg_eval_options_default(d->protocol, o);
    o->seed = 42;
    o->threads = threads;
    o->n_ks = 1;
    o->ks[0] = K;
    if (d->protocol == PVG_EVAL_RANDOM_SPLIT) o->test_fraction = 0.25;
    if (d->protocol == PVG_EVAL_TEMPORAL) {
        o->cutoff = 1320105600; /* 2011-11-01T00:00:00Z */
        o->min_user_items = 5;
    }
}

/* Trains `type` with DP on a tiny dataset: 1 when the model records its
 * (epsilon, delta), with the mechanism's name; else why not. */
static int dp_probe(pvg_model_type type, char *mechanism, char *why, size_t len)
{
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, NULL, &ds, &err) != PVG_OK) {
        snprintf(why, len, "%s", err.text);
        return 0;
    }
    char u[16], it[16];
    for (int i = 0; i < 40; i++) {
        snprintf(u, sizeof u, "u%d", i);
        for (int j = 0; j < 6; j++) {
            snprintf(it, sizeof it, "i%d", (i * 7 + j * 3) % 25);
            pvg_event e;
            memset(&e, 0, sizeof e);
            e.type = PVG_EVENT_PURCHASE;
            e.item = it;
            e.ts = 1000 + j;
            if (pvg_dataset_add_ext(ds, u, &e, &err) != PVG_OK) {
                snprintf(why, len, "%s", err.text);
                pvg_dataset_free(ds);
                return 0;
            }
        }
    }
    pvg_train_params p;
    pvg_train_params_default(type, &p);
    p.dp_epsilon = 1;
    p.dp_delta = DELTA;
    p.dp_items = (const char *const *)ds->item_ids; /* as in the runs: a public list */
    p.dp_n_items = ds->n_items;
    if (type == PVG_MODEL_IALS || type == PVG_MODEL_BPR) p.epochs = 2;
    pvg_model *m = NULL;
    pvg_status st = pvg_model_train(ds, &p, &m, NULL, &err);
    int ok = 0;
    if (st != PVG_OK) {
        snprintf(why, len, "DP training: %s", err.text[0] ? err.text : pvg_strerror(st));
    } else {
        pvg_model_dp_info di;
        if (pvg_model_dp_info_get(m, &di, NULL) != PVG_OK || !di.is_dp || !(di.epsilon > 0)) {
            snprintf(why, len, "the trainer ignores dp_epsilon (the model records no DP training)");
        } else {
            ok = 1;
            snprintf(mechanism, PVG_DP_MECHANISM_MAX, "%s", di.mechanism);
        }
    }
    pvg_model_free(m);
    pvg_dataset_free(ds);
    return ok;
}

/* One (method, epsilon) point over the seeds. eps inf: no DP. */
static void run_point(const pvg_dataset *ds, const dataset_def *d, pvg_model_type type, int recency,
                      double eps, int n_seeds, int threads, point *pt)

{
    double rec[MAX_SEEDS], nd[MAX_SEEDS], secs = 0;
    int n = 0;
    /* the catalogue's text beside its ids: Online Retail's Descriptions
     * (ML-100K's u.data has none) */
    const char **titles = calloc(ds->n_items ? ds->n_items : 1, sizeof *titles);
    if (!titles) {
        fprintf(stderr, "bench_privacy_utility: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < ds->n_items; i++)
        titles[i] = pvg_dataset_item_title(ds, i);
    for (int s = 0; s < n_seeds; s++) {
        pvg_train_params p;
        pvg_train_params_default(type, &p);
        p.threads = threads;
        p.seed = (uint64_t)(s + 1);
        if (isfinite(eps)) {
            p.dp_epsilon = eps;
            p.dp_delta = DELTA;
            /* the public vocabulary: the file's item list stands for the
             * operator's catalog (as the store's catalog does in serving) */
            p.dp_items = (const char *const *)ds->item_ids;
            p.dp_n_items = ds->n_items;
            p.dp_item_titles = titles;
            /* DP-iALS's documented settings (docs/models.md "DP-iALS"): few,
             * small iterations, the noise growing with sqrt(iterations) */
            if (type == PVG_MODEL_IALS) {
                p.factors = 16;
                p.epochs = 2;
            }
        }
        /* EASE's recency terms as `privguide train` and `eval` set them;
         * the present is the split's (pvg_eval_run: the temporal cut-off) */
        if (recency) pvg_train_params_recency_default(&p, 0);
        pvg_eval_options o;
        eval_options(d, threads, &o);
        pvg_eval_result r;
        pvg_error err;
        pvg_error_clear(&err);
        pvg_status st = pvg_eval_run(ds, &p, &o, &r, &err);
        if (st != PVG_OK) {
            snprintf(pt->error, sizeof pt->error, "%s", err.text[0] ? err.text : pvg_strerror(st));
            fprintf(stderr, "  %s %s eps %g seed %d: %s\n", d->name, pvg_model_type_name(type), eps,
                    s + 1, pt->error);
            free(titles);
            return;
        }
        rec[n] = r.at[0].recall;
        nd[n] = r.at[0].ndcg;
        secs += r.train_seconds;
        n++;
    }
    free(titles);
    pt->ok = 1;
    pt->recall = stats_of(rec, n);
    pt->ndcg = stats_of(nd, n);
    pt->train_seconds = secs / n;
    fprintf(stderr, "  %s %-10s eps %-4g recall@20 %.4f [%.4f, %.4f] ndcg@20 %.4f (%.2f s)\n",
            d->name, pvg_model_type_name(type), eps, pt->recall.mean, pt->recall.min,
            pt->recall.max, pt->ndcg.mean, pt->train_seconds);
}

/* ---- output ---------------------------------------------------------------- */

typedef struct ds_res {
    const dataset_def *def;
    int loaded;
    size_t users, items, events;
    method_res methods[4];
    int n_methods;
    /* the non-private models (inf points reused; bpr run here) */
    double np_recall[6], np_ndcg[6], np_seconds[6]; /* by pvg_model_type; < 0: not run */
    pvg_model_type best;
} ds_res;

/* s as a JSON string's contents (quotes and control characters escaped). */
static void json_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

/* A negative std, min or max is unknown (a figure recovered from a run's
 * log line): null. */
static void json_num(FILE *f, const char *name, double v)
{
    if (v < 0)
        fprintf(f, "\"%s\": null", name);
    else
        fprintf(f, "\"%s\": %.5f", name, v);
}

static void json_stat(FILE *f, const char *name, const stat4 *s)
{
    fprintf(f, "\"%s\": {\"mean\": %.5f, ", name, s->mean);
    json_num(f, "std", s->std);
    fprintf(f, ", ");
    json_num(f, "min", s->min);
    fprintf(f, ", ");
    json_num(f, "max", s->max);
    fprintf(f, "}");
}

static void write_json(FILE *f, const ds_res *res, int n_ds, int n_seeds)
{
    fprintf(f, "{\"bench\": \"privacy_utility\", \"k\": %d, \"delta\": %g, \"seeds\": %d, ", K,
            DELTA, n_seeds);
    fprintf(f, "\"epsilons\": [0.5, 1, 2, 4, 8, 16, \"inf\"], \"datasets\": [");
    for (int d = 0; d < n_ds; d++) {
        const ds_res *r = &res[d];
        fprintf(f, "%s{\"dataset\": \"%s\", \"protocol\": \"%s\", \"users\": %zu, \"items\": %zu, ",
                d ? ", " : "", r->def->name, r->def->protocol_text, r->users, r->items);
        fprintf(f, "\"non_private\": {");
        int first = 1;
        for (int t = 1; t <= 5; t++) {
            if (r->np_recall[t] < 0) continue;
            fprintf(f,
                    "%s\"%s\": {\"recall@20\": %.5f, \"ndcg@20\": %.5f, \"train_seconds\": %.3f}",
                    first ? "" : ", ", pvg_model_type_name((pvg_model_type)t), r->np_recall[t],
                    r->np_ndcg[t], r->np_seconds[t]);
            first = 0;
        }
        fprintf(f,
                "}, \"best_non_private\": {\"model\": \"%s\", \"recall@20\": %.5f, \"ndcg@20\": "
                "%.5f}, ",
                pvg_model_type_name(r->best), r->np_recall[r->best], r->np_ndcg[r->best]);
        fprintf(f, "\"methods\": [");
        for (int m = 0; m < r->n_methods; m++) {
            const method_res *mr = &r->methods[m];
            fprintf(f, "%s{\"method\": \"%s\", \"available\": %s", m ? ", " : "",
                    pvg_model_type_name(mr->type), mr->available ? "true" : "false");
            if (!mr->available) {
                fprintf(f, ", \"why\": \"");
                json_text(f, mr->why);
                fprintf(f, "\"}");
                continue;
            }
            fprintf(f, ", \"mechanism\": \"%s\", \"points\": [", mr->mechanism);
            for (int e = 0; e < N_EPS; e++) {
                const point *pt = &mr->pts[e];
                if (isfinite(EPS[e]))
                    fprintf(f, "%s{\"epsilon\": %g, ", e ? ", " : "", EPS[e]);
                else
                    fprintf(f, "%s{\"epsilon\": \"inf\", ", e ? ", " : "");
                if (!pt->ok) {
                    fprintf(f, "\"error\": \"");
                    json_text(f, pt->error);
                    fprintf(f, "\"}");
                    continue;
                }
                json_stat(f, "recall@20", &pt->recall);
                fprintf(f, ", ");
                json_stat(f, "ndcg@20", &pt->ndcg);
                fprintf(f, ", \"recall_vs_best\": %.4f, \"train_seconds\": %.3f}",
                        r->np_recall[r->best] > 0 ? pt->recall.mean / r->np_recall[r->best] : 0,
                        pt->train_seconds);
            }
            fprintf(f, "]}");
        }
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
}

/* ---- the markdown table (docs/models.md) --------------------------------- */

static void table_metric(FILE *f, const ds_res *r, int ndcg)
{
    double best = ndcg ? r->np_ndcg[r->best] : r->np_recall[r->best];
    fprintf(f,
            "\n%s, %s: %s (mean [min, max] over the seeds; %% of the best non-private, %s "
            "%.4f)\n\n",
            r->def->name, r->def->protocol_text, ndcg ? "NDCG@20" : "Recall@20",
            pvg_model_type_name(r->best), best);
    fprintf(f, "| DP method | ε = 0.5 | 1 | 2 | 4 | 8 | 16 | ∞ (no DP) |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < r->n_methods; m++) {
        const method_res *mr = &r->methods[m];
        if (!mr->available) continue;
        fprintf(f, "| %s |", pvg_model_type_name(mr->type));
        for (int e = 0; e < N_EPS; e++) {
            const point *pt = &mr->pts[e];
            if (!pt->ok) {
                fprintf(f, " %s |", strncmp(pt->error, "not run", 7) == 0 ? "not run" : "failed");
                continue;
            }
            const stat4 *s = ndcg ? &pt->ndcg : &pt->recall;
            fprintf(f, " %.4f", s->mean);
            if (s->min >= 0 && s->max >= 0) fprintf(f, " [%.4f, %.4f]", s->min, s->max);
            fprintf(f, " (%.0f%%) |", best > 0 ? 100 * s->mean / best : 0);
        }
        fprintf(f, "\n");
    }
}

static void write_table(FILE *f, const ds_res *res, int n_ds)
{
    for (int d = 0; d < n_ds; d++) {
        const ds_res *r = &res[d];
        table_metric(f, r, 0);
        table_metric(f, r, 1);
        double best = r->np_recall[r->best];
        fprintf(f,
                "\n%s: smallest ε of the sweep reaching 80%% / 90%% / 95%% of the best "
                "non-private Recall@20, and training time (s, mean) at ε = 8 beside the "
                "same method without DP:\n\n",
                r->def->name);
        fprintf(f, "| DP method | mechanism | 80%% | 90%% | 95%% | train s, DP (ε = 8) | train s, "
                   "no DP |\n|---|---|---|---|---|---|---|\n");
        for (int m = 0; m < r->n_methods; m++) {
            const method_res *mr = &r->methods[m];
            if (!mr->available) continue;
            fprintf(f, "| %s | %s |", pvg_model_type_name(mr->type), mr->mechanism);
            const double frac[3] = {0.8, 0.9, 0.95};
            for (int q = 0; q < 3; q++) {
                int hit = -1;
                for (int e = 0; e < N_EPS - 1 && hit < 0; e++)
                    if (mr->pts[e].ok && mr->pts[e].recall.mean >= frac[q] * best) hit = e;
                if (hit >= 0)
                    fprintf(f, " %g |", EPS[hit]);
                else
                    fprintf(f, " > 16 |");
            }
            for (int e = 4; e < N_EPS; e += N_EPS - 1 - 4)
                if (mr->pts[e].ok)
                    fprintf(f, " %.2f |", mr->pts[e].train_seconds);
                else
                    fprintf(f, " — |");
            fprintf(f, "\n");
        }
    }
}

/* ---- the SVG ---------------------------------------------------------------- */

static const char *COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"};

static void write_svg(FILE *f, const ds_res *res, int n_ds)
{
    const double pw = 430, ph = 300, ml = 60, mr = 20, mt = 40, mb = 130;
    const double W = n_ds * (ml + pw + mr), H = mt + ph + mb;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    /* x: log2(eps) from log2(0.5) = -1 to log2(16) = 4, then a gap and inf */
    const double xmin = -1.5, xmax = 6.0, x_inf = 5.5;
    for (int d = 0; d < n_ds; d++) {
        const ds_res *r = &res[d];
        double ox = d * (ml + pw + mr) + ml, oy = mt;
        double ymax = r->np_recall[r->best];
        for (int m = 0; m < r->n_methods; m++)
            for (int e = 0; m < r->n_methods && e < N_EPS; e++)
                if (r->methods[m].available && r->methods[m].pts[e].ok &&
                    r->methods[m].pts[e].recall.max > ymax)
                    ymax = r->methods[m].pts[e].recall.max;
        ymax = ymax > 0 ? ymax * 1.12 : 1;
#define PX(lx) (ox + ((lx)-xmin) / (xmax - xmin) * pw)
#define PY(v) (oy + ph - (v) / ymax * ph)
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" "
                "font-weight=\"bold\">%s (%s)</text>\n",
                ox + pw / 2, oy - 18, r->def->name, r->def->protocol_text);
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                "stroke=\"#444\"/>\n",
                ox, oy, pw, ph);
        /* y grid and ticks: 5 steps */
        for (int i = 0; i <= 5; i++) {
            double v = ymax / 1.12 * i / 5;
            double y = PY(v);
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n",
                    ox, y, ox + pw, y, ox - 5, y + 4, v);
        }
        for (int e = 0; e < N_EPS; e++) {
            double lx = isfinite(EPS[e]) ? log2(EPS[e]) : x_inf;
            double x = PX(lx);
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
                    x, oy, x, oy + ph, x, oy + ph + 16);
            if (isfinite(EPS[e]))
                fprintf(f, "%g</text>\n", EPS[e]);
            else
                fprintf(f, "&#8734;</text>\n");
        }
        /* the axis break before inf */
        double xb = PX((log2(16) + x_inf) / 2);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\" "
                "stroke-dasharray=\"2,3\"/>\n",
                xb, oy, xb, oy + ph);
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">&#949; (shopper-level, "
                "&#948; = 1e-6; log scale)</text>\n",
                ox + pw / 2, oy + ph + 34);
        fprintf(f,
                "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" "
                "text-anchor=\"middle\">Recall@20</text>\n",
                ox - 45, oy + ph / 2);
        /* reference: the best non-private model */
        double yr = PY(r->np_recall[r->best]);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" "
                "stroke-dasharray=\"6,4\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">best non-private (%s) %.4f</text>\n",
                ox, yr, ox + pw, yr, ox + 6, yr - 5, pvg_model_type_name(r->best),
                r->np_recall[r->best]);
        int li = 0;
        for (int m = 0; m < r->n_methods; m++) {
            const method_res *mr = &r->methods[m];
            if (!mr->available) continue;
            const char *c = COLORS[m % 5];
            /* the line over the finite epsilons, then a dotted segment to inf */
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
            for (int e = 0; e < N_EPS - 1; e++)
                if (mr->pts[e].ok)
                    fprintf(f, "%.1f,%.1f ", PX(log2(EPS[e])), PY(mr->pts[e].recall.mean));
            fprintf(f, "\"/>\n");
            if (mr->pts[N_EPS - 1].ok && mr->pts[N_EPS - 2].ok)
                fprintf(f,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                        "stroke-width=\"1.5\" stroke-dasharray=\"2,3\"/>\n",
                        PX(log2(EPS[N_EPS - 2])), PY(mr->pts[N_EPS - 2].recall.mean), PX(x_inf),
                        PY(mr->pts[N_EPS - 1].recall.mean), c);
            for (int e = 0; e < N_EPS; e++) {
                const point *pt = &mr->pts[e];
                if (!pt->ok) continue;
                double x = PX(isfinite(EPS[e]) ? log2(EPS[e]) : x_inf);
                fprintf(f,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
                        "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s "
                        "&#949;=%g: Recall@20 %.4f (min %.4f, max %.4f), NDCG@20 "
                        "%.4f</title></circle>\n",
                        x, PY(pt->recall.min), x, PY(pt->recall.max), c, x, PY(pt->recall.mean), c,
                        pvg_model_type_name(mr->type), EPS[e], pt->recall.mean, pt->recall.min,
                        pt->recall.max, pt->ndcg.mean);
            }
            /* legend below the panel */
            double lx = ox, ly = oy + ph + 56 + li * 17;
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                    "stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.1f\">DP %s (%s)</text>\n",
                    lx, ly - 4, lx + 20, ly - 4, c, lx + 26, ly, pvg_model_type_name(mr->type),
                    mr->mechanism);
            li++;
        }
#undef PX
#undef PY
    }
    fprintf(f, "</svg>\n");
}

/* ---- --combine: the outputs from earlier runs' JSON ------------------------- */

static double num_or_unknown(json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : -1;
}

static void stat_from(json_t *o, stat4 *s)
{
    s->mean = json_number_value(json_object_get(o, "mean"));
    s->std = num_or_unknown(json_object_get(o, "std"));
    s->min = num_or_unknown(json_object_get(o, "min"));
    s->max = num_or_unknown(json_object_get(o, "max"));
}

/* Reads the datasets of a JSON this program wrote into res[*n_ds...]. */
static int combine_file(const char *path, ds_res *res, int *n_ds, int *n_seeds)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text);
        return -1;
    }
    *n_seeds = (int)json_integer_value(json_object_get(root, "seeds"));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(root, "datasets"), i, d)
    {
        const char *name = json_string_value(json_object_get(d, "dataset"));
        const dataset_def *def = NULL;
        for (int k = 0; k < N_DATASETS; k++)
            if (name && strcmp(name, DATASETS[k].name) == 0) def = &DATASETS[k];
        if (!def) {
            fprintf(stderr, "%s: dataset %s: unknown\n", path, name ? name : "?");
            json_decref(root);
            return -1;
        }
        /* a dataset seen in an earlier file (another run's methods): merged */
        ds_res *r = NULL;
        for (int k = 0; k < *n_ds; k++)
            if (res[k].def == def) r = &res[k];
        if (!r) {
            r = &res[(*n_ds)++];
            memset(r, 0, sizeof *r);
            r->def = def;
            r->users = (size_t)json_integer_value(json_object_get(d, "users"));
            r->items = (size_t)json_integer_value(json_object_get(d, "items"));
            for (int t = 0; t < 6; t++)
                r->np_recall[t] = r->np_ndcg[t] = r->np_seconds[t] = -1;
        }
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(d, "non_private"), key, v)
        {
            pvg_model_type t;
            if (pvg_model_type_parse(key, &t, NULL) != PVG_OK || r->np_recall[t] >= 0) continue;
            r->np_recall[t] = json_number_value(json_object_get(v, "recall@20"));
            r->np_ndcg[t] = json_number_value(json_object_get(v, "ndcg@20"));
            r->np_seconds[t] = json_number_value(json_object_get(v, "train_seconds"));
        }
        r->best = PVG_MODEL_POPULARITY;
        for (int t = 1; t <= 5; t++)
            if (r->np_recall[t] > r->np_recall[r->best]) r->best = (pvg_model_type)t;
        size_t j;
        json_t *m;
        json_array_foreach(json_object_get(d, "methods"), j, m)
        {
            pvg_model_type mt;
            if (pvg_model_type_parse(json_string_value(json_object_get(m, "method")), &mt, NULL) !=
                PVG_OK)
                continue;
            /* a method measured in an earlier file keeps that file's figures */
            int seen = 0;
            for (int k = 0; k < r->n_methods; k++)
                seen |= r->methods[k].type == mt && r->methods[k].available;
            if (seen || r->n_methods == 4) continue;
            method_res *mr = &r->methods[r->n_methods++];
            memset(mr, 0, sizeof *mr);
            mr->type = mt;
            mr->available = json_is_true(json_object_get(m, "available"));
            snprintf(mr->why, sizeof mr->why, "%s",
                     json_string_value(json_object_get(m, "why"))
                         ? json_string_value(json_object_get(m, "why"))
                         : "");
            snprintf(mr->mechanism, sizeof mr->mechanism, "%s",
                     json_string_value(json_object_get(m, "mechanism"))
                         ? json_string_value(json_object_get(m, "mechanism"))
                         : "");
            size_t e;
            json_t *pt;
            json_array_foreach(json_object_get(m, "points"), e, pt)
            {
                if (e >= N_EPS) break;
                point *q = &mr->pts[e];
                if (json_object_get(pt, "error")) {
                    snprintf(q->error, sizeof q->error, "%s",
                             json_string_value(json_object_get(pt, "error")));
                    continue;
                }
                q->ok = 1;
                stat_from(json_object_get(pt, "recall@20"), &q->recall);
                stat_from(json_object_get(pt, "ndcg@20"), &q->ndcg);
                q->train_seconds = json_number_value(json_object_get(pt, "train_seconds"));
            }
        }
    }
    json_decref(root);
    return 0;
}

/* ---- main ----------------------------------------------------------------- */

static int in_list(const char *list, const char *name)
{
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *svg = NULL, *json = NULL, *table = NULL, *methods = NULL,
               *datasets = NULL;
    int n_seeds = 3, threads = 2, bpr = 1, reference = 1, recency = 1;
    const char *combine[8];
    int n_combine = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--svg") == 0 && i + 1 < argc)
            svg = argv[++i];
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--table") == 0 && i + 1 < argc)
            table = argv[++i];
        else if (strcmp(argv[i], "--methods") == 0 && i + 1 < argc)
            methods = argv[++i];
        else if (strcmp(argv[i], "--datasets") == 0 && i + 1 < argc)
            datasets = argv[++i];
        else if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc)
            n_seeds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-bpr") == 0)
            bpr = 0;
        else if (strcmp(argv[i], "--no-reference") == 0)
            reference = 0;
        else if (strcmp(argv[i], "--no-recency") == 0)
            recency = 0;
        else if (strcmp(argv[i], "--combine") == 0 && i + 1 < argc && n_combine < 8)
            combine[n_combine++] = argv[++i];
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr,
                    "usage: bench_privacy_utility [SHARED_DATA_DIR] [--svg FILE] [--json FILE] "
                    "[--table FILE] "
                    "[--methods popularity,itemknn,ease,ials] [--datasets ml-100k,online-retail] "
                    "[--seeds N] [--threads T] [--no-bpr] [--no-reference] [--no-recency] "
                    "[--combine RUN.json "
                    "...]\n");
            return 2;
        }
    }
    if (n_seeds < 1 || n_seeds > MAX_SEEDS || threads < 1) {
        fprintf(stderr, "bench_privacy_utility: --seeds 1..%d, --threads >= 1\n", MAX_SEEDS);
        return 2;
    }
    if (pvg_init() != PVG_OK) return 1;
    ds_res res[N_DATASETS];
    memset(res, 0, sizeof res);
    int n_ds = 0;
    if (n_combine) /* the outputs from earlier runs (e.g. one per dataset) */
        for (int i = 0; i < n_combine; i++)
            if (combine_file(combine[i], res, &n_ds, &n_seeds)) return 1;
    if (n_combine) goto outputs;
    /* the data dir */
    char path[4096];
    const char *cands[4];
    int nc = 0;
    if (dir) cands[nc++] = dir;
    char envd[4096];
    const char *sh = getenv("PVG_SHARED_DIR");
    if (!dir && sh && *sh) {
        snprintf(envd, sizeof envd, "%s/data", sh);
        cands[nc++] = envd;
    }
    if (!dir) {
        cands[nc++] = "../shared/data";
        cands[nc++] = "../../shared/data";
    }
    const char *data = NULL;
    for (int i = 0; i < nc && !data; i++) {
        snprintf(path, sizeof path, "%s/%s", cands[i], DATASETS[0].file);
        if (access(path, R_OK) == 0) data = cands[i];
        snprintf(path, sizeof path, "%s/%s", cands[i], DATASETS[1].file);
        if (access(path, R_OK) == 0) data = cands[i];
    }
    if (!data) {
        fprintf(stderr,
                "bench_privacy_utility: skipped: no data set found (looked for %s and %s under "
                "the given dir, $PVG_SHARED_DIR/data, ../shared/data, ../../shared/data)\n",
                DATASETS[0].file, DATASETS[1].file);
        return 77;
    }
    static const pvg_model_type DP_TYPES[4] = {PVG_MODEL_POPULARITY, PVG_MODEL_ITEMKNN,
                                               PVG_MODEL_EASE, PVG_MODEL_IALS};
    method_res probe[4];
    memset(probe, 0, sizeof probe);
    int n_methods = 0;
    for (int m = 0; m < 4; m++) {
        if (!in_list(methods, pvg_model_type_name(DP_TYPES[m]))) continue;
        method_res *mr = &probe[n_methods++];
        mr->type = DP_TYPES[m];
        mr->available = dp_probe(mr->type, mr->mechanism, mr->why, sizeof mr->why);
        if (!mr->available)
            fprintf(stderr, "bench_privacy_utility: DP %s unavailable: %s\n",
                    pvg_model_type_name(mr->type), mr->why);
    }
    for (int d = 0; d < N_DATASETS; d++) {
        const dataset_def *def = &DATASETS[d];
        if (!in_list(datasets, def->name)) continue;
        snprintf(path, sizeof path, "%s/%s", data, def->file);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "bench_privacy_utility: %s skipped: %s is absent\n", def->name, path);
            continue;
        }
        ds_res *r = &res[n_ds++];
        r->def = def;
        for (int t = 0; t < 6; t++)
            r->np_recall[t] = r->np_ndcg[t] = r->np_seconds[t] = -1;
        pvg_dataset *ds = NULL;
        pvg_error err;
        pvg_error_clear(&err);
        if (pvg_dataset_load_file(path, def->fmt, NULL, NULL, &ds, NULL, &err) != PVG_OK) {
            fprintf(stderr, "bench_privacy_utility: %s: %s\n", path, err.text);
            return 1;
        }
        r->users = pvg_dataset_n_users(ds);
        r->items = pvg_dataset_n_items(ds);
        r->events = pvg_dataset_n_events(ds);
        fprintf(stderr, "%s: %zu users, %zu items\n", def->name, r->users, r->items);
        memcpy(r->methods, probe, sizeof probe);
        r->n_methods = n_methods;
        for (int m = 0; m < n_methods; m++) {
            method_res *mr = &r->methods[m];
            for (int e = N_EPS - 1; e >= 0; e--) {
                if (!mr->available && isfinite(EPS[e])) continue;
                point pt;
                memset(&pt, 0, sizeof pt);
                run_point(ds, def, mr->type, recency, EPS[e], n_seeds, threads, &pt);
                if (!isfinite(EPS[e]) && pt.ok) {
                    r->np_recall[mr->type] = pt.recall.mean;
                    r->np_ndcg[mr->type] = pt.ndcg.mean;
                    r->np_seconds[mr->type] = pt.train_seconds;
                }
                if (mr->available) mr->pts[e] = pt;
            }
            /* the figures so far, so that an interrupted run keeps them */
            r->best = PVG_MODEL_POPULARITY;
            for (int t = 1; t <= 5; t++)
                if (r->np_recall[t] > r->np_recall[r->best]) r->best = (pvg_model_type)t;
            int saved = r->n_methods;
            r->n_methods = m + 1;
            FILE *f = json ? fopen(json, "w") : NULL;
            if (f) {
                write_json(f, res, n_ds, n_seeds);
                fclose(f);
            }
            r->n_methods = saved;
        }
        /* the other non-private models of the reference */
        for (int t = 1; t <= 5; t++) {
            if (!reference || r->np_recall[t] >= 0 || (t == PVG_MODEL_BPR && !bpr)) continue;
            point pt;
            memset(&pt, 0, sizeof pt);
            run_point(ds, def, (pvg_model_type)t, recency, INFINITY, n_seeds, threads, &pt);
            if (pt.ok) {
                r->np_recall[t] = pt.recall.mean;
                r->np_ndcg[t] = pt.ndcg.mean;
                r->np_seconds[t] = pt.train_seconds;
            }
        }
        r->best = PVG_MODEL_POPULARITY;
        for (int t = 1; t <= 5; t++)
            if (r->np_recall[t] > r->np_recall[r->best]) r->best = (pvg_model_type)t;
        pvg_dataset_free(ds);
    }
outputs:
    write_json(stdout, res, n_ds, n_seeds);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        write_json(f, res, n_ds, n_seeds);
        if (fclose(f) != 0) return 1;
    }
    if (table) {
        FILE *f = fopen(table, "w");
        if (!f) {
            perror(table);
            return 1;
        }
        write_table(f, res, n_ds);
        if (fclose(f) != 0) return 1;
    }
    if (svg) {
        FILE *f = fopen(svg, "w");
        if (!f) {
            perror(svg);
            return 1;
        }
        write_svg(f, res, n_ds);
        if (fclose(f) != 0) return 1;
    }
    return 0;
}
