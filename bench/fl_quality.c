/*
 * bench_fl_quality - quality of federated iALS (privguide/fl.h) against
 * centralised iALS with the same factors, on ML-100K (random-split 0.25,
 * split seed 42) and Online Retail (temporal, cut-off 2011-11-01, >= 5
 * training items): Recall@20 and NDCG@20 per round without DP (FedAvg and
 * FedAdam), and at the end of training with client-level DP (central and
 * distributed discrete Gaussian noise) at several epsilons, delta =
 * 1/n^1.1. Every shopper is one client; rounds run in process through
 * pvg_fl_client_update / pvg_fl_model_apply with the plain modular sum
 * standing in for secure aggregation (tests/test_fl.c checks that SecAgg's
 * sum equals it).
 *
 *   bench_fl_quality [SHARED_DATA_DIR] [--json FILE] [--svg FILE]
 *       [--datasets ml-100k,online-retail] [--rounds N] [--factors K]
 *       [--eps 1,2,4,8,16] [--dp-factors K] [--dp-rounds N] [--dp-q Q] [--clip C]
 *       [--adam-lr LR] [--server-lr LR] [--seed S] [--update stats|gradient]
 *       [--dp-update stats|gradient] [--max-cohort M] [--nodp-clip C]
 *       [--dp-ridge KAPPA] [--validation] [--ddg-eps E] [--no-ddg] [--no-fedadam]
 *       [--dp-average] [--dp-prior W[,W...]] [--dp-prior-count H] [--dp-prior-scale F]
 * [--dp-prior-pow P] [--dp-prior-top L] [--dp-prior-text] [--dp-prior-genre-text]
 *       [--dp-prior-categories] [--dp-prior-genre-form declared|words|joined|rare]
 *       [--dp-sweep kKrRnN[aAgG],...] [--sweep-only] [--dp-blend-sweep B[,B...]]
 *       [--from-json RUN.json]   (redraw the SVG / JSON of an earlier run)
 *
 * --dp-prior W: the DP runs use the public item prior at weight W
 * (pvg_fl_model_set_item_prior; a list: the sweep runs each, the DP table
 * the first), built from public catalogue data only (fl_quality_data.h
 * public_similarity: Online Retail's titles, ML-100K's genres), the
 * similarity taken as F S^P (--dp-prior-scale, --dp-prior-pow; 1 and 1),
 * each neighbour weighed by its noisy count n / (n + H) (--dp-prior-count H;
 * 0, the default: by the similarity alone), each item keeping its L most
 * similar others (--dp-prior-top L, default PVG_FL_PRIOR_NEIGHBOURS as
 * fl serve; 0: all); Online Retail's (scale and pow 1, L > 0) comes from
 * pvg_fl_item_prior_from_titles, the function fl serve calls.
 * ML-100K's, by default from the genre vectors, comes instead from the
 * declared text through the server's functions with --dp-prior-text (each
 * film's title and genre names, the titles' function), --dp-prior-genre-text
 * (the genre names alone as "Action|Sci-Fi", the description an operator
 * would declare, through the titles' function: `--item-prior descriptions`)
 * or --dp-prior-categories (the same description through
 * pvg_fl_item_prior_from_labels: `--item-prior categories`; stderr says
 * whether that prior is identical to the genre vectors' top L);
 * --dp-prior-genre-form words|joined|rare changes those genre names for an
 * experiment (ml100k_catalogue_text's form: names cut into words, made one
 * word, or the frequent ones left out).
 * --sweep-only skips the DP table after a --dp-sweep.
 *
 * Exit 77 (skipped) when the data sets are absent. JSON on stdout (or
 * --json), progress on stderr.
 */
#include "bench_svg.h"
#include "fl_quality_data.h"
#include "fl/fl_internal.h"
#include "model/model_internal.h"

#include <privguide/eval.h>
#include <privguide/fl.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ROUNDS 200
#define MAX_EPS 8

/* Recall@20 and NDCG@20 of the model's item factors: each evaluated user
 * solves its factor from its training items as a client does. */
/* --dp-blend-sweep (an experiment, stderr only): after each DP run, the
 * ranking is also evaluated with x.v_j + beta * mean_{i in history} S_ij,
 * S the public similarity (a text / genre item-kNN score each shopper could
 * compute on device from the public catalogue and their own history). */
static const float *g_blend_S;
static double g_blend, g_blends[8];
static int g_n_blends;

static void evaluate(const pvg_fl_model *m, const split *s, double *recall, double *ndcg)
{
    const float *V;
    uint32_t ni, k;
    if (pvg_fl_model_item_factors(m, &V, &ni, &k, NULL) != PVG_OK) return;
    float *x = malloc(k * sizeof *x), *sc = malloc(ni * sizeof *sc), *tsc = malloc(K_AT * 4);
    int64_t idx[K_AT];
    uint32_t *tg = malloc(ni * sizeof *tg);
    double sr = 0, sn = 0;
    for (size_t a = 0; a < s->n_eval; a++) {
        uint32_t u = s->users[a];
        const uint32_t *h = s->Rt.indices + s->Rt.indptr[u];
        size_t nh = (size_t)(s->Rt.indptr[u + 1] - s->Rt.indptr[u]);
        if (fl_model_user_factor(m, h, s->Rt.data + s->Rt.indptr[u], nh, x, NULL) != PVG_OK)
            continue;
        pvg_matvec(V, ni, k, x, sc);
        if (g_blend > 0 && g_blend_S && nh)
            for (size_t i = 0; i < nh; i++) {
                const float *row = g_blend_S + (size_t)h[i] * ni;
                for (size_t j = 0; j < ni; j++)
                    sc[j] += (float)(g_blend / (double)nh) * row[j];
            }
        for (size_t i = 0; i < nh; i++)
            sc[h[i]] = -INFINITY;
        size_t got = pvg_topk(sc, ni, K_AT, idx, tsc);
        size_t nt = 0;
        for (uint64_t j = s->T.indptr[u]; j < s->T.indptr[u + 1]; j++)
            if (!find_in(&s->Rt, u, s->T.indices[j])) tg[nt++] = s->T.indices[j];
        double r, nd, p, ap, hr;
        pvg_eval_user_metrics(idx, got, tg, nt, K_AT, &r, &nd, &p, &ap, &hr);
        sr += r;
        sn += nd;
    }
    *recall = sr / (double)s->n_eval;
    *ndcg = sn / (double)s->n_eval;
    free(x);
    free(sc);
    free(tsc);
    free(tg);
}

/* One federated training run; curve_r/curve_n (may be NULL) get the
 * metrics after every round. Returns 0 ok. */
/* The dense public similarity S (n x n) as the sparse prior
 * pvg_fl_model_set_item_prior takes: each item's top L other items by
 * value (ties to the lower index, as pvg_fl_item_prior_from_titles keeps
 * them), all with L 0. Returns 0 ok, -1 out of memory (said on stderr). */
static int top_prior(const float *S, uint32_t n, long L, pvg_fl_item_prior *out)
{
    size_t cap = 0, keep = L <= 0 || (size_t)L >= n ? n : (size_t)L;
    for (size_t q = 0; q < (size_t)n * n; q++)
        cap += S[q] > 0;
    *out = (pvg_fl_item_prior){.n_items = n};
    out->row_ptr = calloc((size_t)n + 1, sizeof *out->row_ptr);
    out->col = malloc((cap ? cap : 1) * sizeof *out->col);
    out->val = malloc((cap ? cap : 1) * sizeof *out->val);
    uint32_t *cand = malloc((n ? n : 1) * sizeof *cand);
    if (!out->row_ptr || !out->col || !out->val || !cand) {
        fprintf(stderr, "bench_fl_quality: out of memory for the prior\n");
        free(cand);
        pvg_fl_item_prior_free(out);
        return -1;
    }
    size_t q = 0;
    for (size_t i = 0; i < n; i++) {
        const float *row = S + i * n;
        size_t c = 0;
        for (size_t j = 0; j < n; j++)
            if (j != i && row[j] > 0) cand[c++] = (uint32_t)j;
        /* selection by insertion: each kept entry beats every later one */
        size_t k = c < keep ? c : keep;
        for (size_t a = 0; a < k && k < c; a++) {
            size_t best = a;
            for (size_t b = a + 1; b < c; b++)
                if (row[cand[b]] > row[cand[best]] ||
                    (row[cand[b]] == row[cand[best]] && cand[b] < cand[best]))
                    best = b;
            uint32_t t = cand[a];
            cand[a] = cand[best];
            cand[best] = t;
        }
        for (size_t a = 1; a < k && k < c; a++) /* columns ascending */
            for (size_t b = a; b > 0 && cand[b - 1] > cand[b]; b--) {
                uint32_t t = cand[b];
                cand[b] = cand[b - 1];
                cand[b - 1] = t;
            }
        for (size_t a = 0; a < k; a++) {
            out->col[q] = cand[a];
            out->val[q++] = row[cand[a]];
        }
        out->row_ptr[i + 1] = q;
    }
    free(cand);
    return 0;
}

/* The public item prior of the DP runs (--dp-prior): S NULL or weight 0: none. */
typedef struct fl_prior {
    const pvg_fl_item_prior *S;
    double weight, count_half;
} fl_prior;
static fl_prior g_prior;

static int run_fl(const split *s, const pvg_fl_config *cfg, double q, int rounds, uint64_t seed,
                  double *curve_r, double *curve_n, double *recall, double *ndcg, double *secs)
{
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
    pvg_fl_model *m = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_fl_model_new(cfg, (uint32_t)s->Rt.n_cols, rng, &m, &err) != PVG_OK) {
        fprintf(stderr, "fl model: %s\n", err.text);
        pvg_rng_free(rng);
        return -1;
    }
    if (g_prior.S && g_prior.weight > 0 && cfg->dp != PVG_FL_DP_NONE &&
        pvg_fl_model_set_item_prior(m, g_prior.S, g_prior.weight, g_prior.count_half, &err) !=
            PVG_OK) {
        fprintf(stderr, "fl prior: %s\n", err.text);
        pvg_fl_model_free(m);
        pvg_rng_free(rng);
        return -1;
    }
    fl_clients cl = {s->Rt.n_rows, (uint32_t)s->Rt.n_cols, s->Rt.indptr, s->Rt.indices, s->Rt.data};
    double t0 = pvg_now_seconds();
    for (int r = 0; r < rounds; r++) {
        fl_round_stats st;
        if (fl_sim_round(m, &cl, q, rng, &st, &err) != PVG_OK) {
            fprintf(stderr, "fl round %d: %s\n", r, err.text);
            pvg_fl_model_free(m);
            pvg_rng_free(rng);
            return -1;
        }
        if (curve_r) {
            evaluate(m, s, &curve_r[r], &curve_n[r]);
            fprintf(stderr, "    round %2d cohort %u recall@20 %.4f ndcg@20 %.4f\n", r + 1,
                    st.cohort, curve_r[r], curve_n[r]);
        }
    }
    *secs = pvg_now_seconds() - t0;
    evaluate(m, s, recall, ndcg);
    for (int b = 0; cfg->dp != PVG_FL_DP_NONE && b < g_n_blends; b++) {
        double br, bn;
        g_blend = g_blends[b];
        evaluate(m, s, &br, &bn);
        g_blend = 0;
        fprintf(
            stderr,
            "    on-device blend with the public item-kNN, beta %g: recall@20 %.4f ndcg@20 %.4f\n",
            g_blends[b], br, bn);
    }
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
    return 0;
}

typedef struct dp_point {
    int ok;
    double eps, z, recall, ndcg;
} dp_point;

typedef struct ds_res {
    const dataset_def *def;
    size_t users, items, train, n_eval;
    double alpha0, delta;
    double c_recall, c_ndcg, c_secs; /* centralised iALS */
    int rounds;
    double avg_r[MAX_ROUNDS], avg_n[MAX_ROUNDS], adam_r[MAX_ROUNDS], adam_n[MAX_ROUNDS];
    double avg_secs, adam_secs;
    int n_eps;
    dp_point dp_avg[MAX_EPS], dp_adam[MAX_EPS];
    dp_point ddg;             /* distributed discrete Gaussian, FedAvg */
    dp_point dpials[MAX_EPS]; /* centralised DP-iALS (src/model/dp_ials.c) at the same
                                 epsilon, delta, factors and iterations */
} ds_res;

static int in_list(const char *list, const char *name)
{
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

static void json_curve(FILE *f, const char *name, const double *v, int n)
{
    fprintf(f, "\"%s\": [", name);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.5f", i ? ", " : "", v[i]);
    fprintf(f, "]");
}

static void json_dp(FILE *f, const dp_point *p, int n)
{
    fprintf(f, "[");
    for (int i = 0; i < n; i++)
        fprintf(f,
                "%s{\"epsilon\": %g, \"noise_multiplier\": %.4f, \"ok\": %d, \"recall\": %.5f, "
                "\"ndcg\": %.5f}",
                i ? ", " : "", p[i].eps, p[i].z, p[i].ok, p[i].recall, p[i].ndcg);
    fprintf(f, "]");
}

static double jnum(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static void dp_from(json_t *a, dp_point *p, int *n)
{
    *n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        if (*n >= MAX_EPS) break;
        dp_point *q = &p[(*n)++];
        q->eps = jnum(e, "epsilon");
        q->z = jnum(e, "noise_multiplier");
        q->ok = (int)jnum(e, "ok");
        q->recall = jnum(e, "recall");
        q->ndcg = jnum(e, "ndcg");
    }
}

/* --from-json: the results of an earlier run (this program's JSON), for
 * redrawing the SVG. Returns the number of data sets, -1 on error. */
static int load_results(const char *path, ds_res *res, int *ddg)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        fprintf(stderr, "bench_fl_quality: %s:%d: %s\n", path, je.line, je.text);
        return -1;
    }
    json_t *a = json_object_get(root, "datasets"), *d;
    size_t i;
    int n = 0;
    *ddg = 0;
    json_array_foreach(a, i, d)
    {
        if (n >= N_DATASETS) break;
        ds_res *r = &res[n];
        memset(r, 0, sizeof *r);
        const char *name = json_string_value(json_object_get(d, "name"));
        for (int k = 0; k < N_DATASETS; k++)
            if (name && !strcmp(name, DATASETS[k].name)) r->def = &DATASETS[k];
        if (!r->def) continue;
        json_t *c = json_object_get(d, "centralised_ials");
        r->c_recall = jnum(c, "recall");
        r->c_ndcg = jnum(c, "ndcg");
        json_t *ar = json_object_get(d, "fedavg_recall"),
               *ad = json_object_get(d, "fedadam_recall");
        size_t j;
        json_t *v;
        json_array_foreach(ar, j, v) if (j < MAX_ROUNDS) r->avg_r[j] = json_number_value(v);
        json_array_foreach(ad, j, v) if (j < MAX_ROUNDS) r->adam_r[j] = json_number_value(v);
        r->rounds = (int)json_array_size(ar);
        int m;
        dp_from(json_object_get(d, "dp_central_fedavg"), r->dp_avg, &r->n_eps);
        dp_from(json_object_get(d, "dp_central_fedadam"), r->dp_adam, &m);
        dp_from(json_object_get(d, "dp_ials_centralised"), r->dpials, &m);
        dp_from(json_object_get(d, "dp_distributed_fedavg"), &r->ddg, &m);
        if (m) *ddg = 1;
        n++;
    }
    json_decref(root);
    return n;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *json = NULL, *svg = NULL, *datasets = NULL, *eps_list = "1,2,4,8,16",
               *from = NULL;
    int rounds = 20, factors = 32, dp_rounds = 2, ddg = 1, dp_factors = 16, adam = 1;
    int dp_update = PVG_FL_UPDATE_STATS, update = PVG_FL_UPDATE_GRADIENT;
    double dp_q = 1, clip = 0, ddg_eps = 8, adam_lr = 0.02, server_lr = 0.5, dp_ridge = 3;
    int validation = 0, nodp = 1, dpials = 1, dp_average = 0, sweep_only = 0;
    long max_cohort = 0; /* the no-DP runs' step for this many clients (0: the data set's users) */
    double nodp_clip = 1e4;                   /* the no-DP runs' clip (no clipping) */
    double prior_scale = 1, prior_pow = 1;    /* the public similarity S becomes scale S^pow */
    long prior_top = PVG_FL_PRIOR_NEIGHBOURS; /* neighbours an item keeps (0: all) */
    int prior_text = 0; /* ML-100K: the prior from title + genre names, as fl serve builds it */
    int genre_form = 0; /* ML-100K's genre names as declared, or an experiment's form */
    const char *sweep = NULL, *prior_list = NULL;
    unsigned long long seed_off = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--svg") && i + 1 < argc)
            svg = argv[++i];
        else if (!strcmp(argv[i], "--datasets") && i + 1 < argc)
            datasets = argv[++i];
        else if (!strcmp(argv[i], "--eps") && i + 1 < argc)
            eps_list = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--factors") && i + 1 < argc)
            factors = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dp-factors") && i + 1 < argc)
            dp_factors = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dp-rounds") && i + 1 < argc)
            dp_rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dp-q") && i + 1 < argc)
            dp_q = atof(argv[++i]);
        else if (!strcmp(argv[i], "--clip") && i + 1 < argc)
            clip = atof(argv[++i]);
        else if (!strcmp(argv[i], "--adam-lr") && i + 1 < argc)
            adam_lr = atof(argv[++i]);
        else if (!strcmp(argv[i], "--server-lr") && i + 1 < argc)
            server_lr = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dp-update") && i + 1 < argc) {
            i++;
            dp_update = !strcmp(argv[i], "gradient") ? PVG_FL_UPDATE_GRADIENT : PVG_FL_UPDATE_STATS;
        } else if (!strcmp(argv[i], "--update") && i + 1 < argc) {
            i++;
            update = !strcmp(argv[i], "stats") ? PVG_FL_UPDATE_STATS : PVG_FL_UPDATE_GRADIENT;
        } else if (!strcmp(argv[i], "--dp-ridge") && i + 1 < argc)
            dp_ridge = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed_off = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--validation"))
            validation = 1;
        else if (!strcmp(argv[i], "--dp-sweep") && i + 1 < argc)
            sweep = argv[++i];
        else if (!strcmp(argv[i], "--dp-prior") && i + 1 < argc)
            prior_list = argv[++i];
        else if (!strcmp(argv[i], "--dp-prior-count") && i + 1 < argc)
            g_prior.count_half = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dp-prior-text"))
            prior_text = 1;
        else if (!strcmp(argv[i], "--dp-prior-genre-text"))
            prior_text = 2;
        else if (!strcmp(argv[i], "--dp-prior-categories"))
            prior_text = 3;
        else if (!strcmp(argv[i], "--dp-prior-genre-form") && i + 1 < argc) {
            i++;
            genre_form = !strcmp(argv[i], "words")      ? 1
                         : !strcmp(argv[i], "joined")   ? 2
                         : !strcmp(argv[i], "rare")     ? 3
                         : !strcmp(argv[i], "declared") ? 0
                                                        : -1;
            if (genre_form < 0) {
                fprintf(stderr, "bench_fl_quality: --dp-prior-genre-form wants declared, words, "
                                "joined or rare\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--dp-prior-top") && i + 1 < argc)
            prior_top = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dp-prior-scale") && i + 1 < argc)
            prior_scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dp-prior-pow") && i + 1 < argc)
            prior_pow = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dp-blend-sweep") && i + 1 < argc) {
            for (const char *p = argv[++i]; *p && g_n_blends < 8;) {
                g_blends[g_n_blends++] = strtod(p, (char **)&p);
                if (*p == ',')
                    p++;
                else if (*p)
                    break;
            }
        } else if (!strcmp(argv[i], "--sweep-only"))
            sweep_only = 1;
        else if (!strcmp(argv[i], "--dp-average"))
            dp_average = 1;
        else if (!strcmp(argv[i], "--no-nodp"))
            nodp = 0;
        else if (!strcmp(argv[i], "--no-dp-ials"))
            dpials = 0;
        else if (!strcmp(argv[i], "--ddg-eps") && i + 1 < argc)
            ddg_eps = atof(argv[++i]);
        else if (!strcmp(argv[i], "--from-json") && i + 1 < argc)
            from = argv[++i];
        else if (!strcmp(argv[i], "--nodp-clip") && i + 1 < argc)
            nodp_clip = atof(argv[++i]);
        else if (!strcmp(argv[i], "--max-cohort") && i + 1 < argc)
            max_cohort = atol(argv[++i]);
        else if (!strcmp(argv[i], "--no-fedadam"))
            adam = 0;
        else if (!strcmp(argv[i], "--no-ddg"))
            ddg = 0;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr,
                    "usage: bench_fl_quality [SHARED_DATA_DIR] [--json FILE] [--svg FILE] "
                    "[--datasets ml-100k,online-retail] [--rounds N] [--factors K] [--eps LIST] "
                    "[--dp-factors K] [--dp-rounds N] [--dp-q Q] [--clip C] [--adam-lr LR] "
                    "[--server-lr LR] [--seed S] [--update stats|gradient] [--dp-update "
                    "stats|gradient] [--dp-ridge KAPPA] [--validation] "
                    "[--ddg-eps E] [--dp-average] [--dp-prior W[,W...]] [--dp-prior-count H] "
                    "[--dp-prior-top L] [--dp-prior-text] [--dp-prior-genre-text] "
                    "[--dp-prior-categories] "
                    "[--dp-prior-genre-form declared|words|joined|rare] "
                    "[--dp-prior-scale F] "
                    "[--dp-prior-pow P] [--dp-sweep "
                    "kKrRnN[aAgG],...] [--sweep-only] [--no-nodp] "
                    "[--no-dp-ials] "
                    "[--no-ddg] [--no-fedadam] [--from-json RUN.json]\n");
            return 2;
        }
    }
    if (dp_factors < 1 || dp_factors > 256 || rounds < 1 || rounds > MAX_ROUNDS || dp_rounds < 1 ||
        factors < 1 || factors > 256 || !(dp_q > 0 && dp_q <= 1)) {
        fprintf(stderr, "bench_fl_quality: --rounds 1..%d, --factors 1..256, --dp-q (0,1]\n",
                MAX_ROUNDS);
        return 2;
    }
    double eps[MAX_EPS];
    int n_eps = 0;
    for (const char *p = eps_list; *p && n_eps < MAX_EPS;) {
        eps[n_eps++] = strtod(p, (char **)&p);
        if (*p == ',')
            p++;
        else if (*p)
            break;
    }
    double pw[MAX_EPS] = {0}; /* --dp-prior: the prior's weights (the first for the DP table) */
    int n_pw = 1;
    if (prior_list) {
        n_pw = 0;
        for (const char *p = prior_list; *p && n_pw < MAX_EPS;) {
            pw[n_pw] = strtod(p, (char **)&p);
            if (!(pw[n_pw] >= 0 && pw[n_pw] <= 1)) {
                fprintf(stderr, "bench_fl_quality: --dp-prior weights in 0..1\n");
                return 2;
            }
            n_pw++;
            if (*p == ',')
                p++;
            else if (*p)
                break;
        }
        if (n_pw == 0) n_pw = 1;
    }
    double max_pw = 0;
    for (int i = 0; i < n_pw; i++)
        max_pw = pw[i] > max_pw ? pw[i] : max_pw;
    if (pvg_init() != PVG_OK) return 1;
    static ds_res res[N_DATASETS];
    int n_ds = 0;
    if (from) { /* redraw from an earlier run's results */
        n_ds = load_results(from, res, &ddg);
        if (n_ds < 0) return 1;
        goto outputs;
    }
    char path[4096], envd[4096];
    const char *data = find_data_dir("bench_fl_quality", dir, envd, sizeof envd);
    if (!data) return 77;
    for (int d = 0; d < N_DATASETS; d++) {
        const dataset_def *def = &DATASETS[d];
        if (!in_list(datasets, def->name)) continue;
        snprintf(path, sizeof path, "%s/%s", data, def->file);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "bench_fl_quality: %s skipped: %s is absent\n", def->name, path);
            continue;
        }
        pvg_dataset *ds = NULL;
        pvg_error err;
        pvg_error_clear(&err);
        if (pvg_dataset_load_file(path, def->fmt, NULL, NULL, &ds, NULL, &err) != PVG_OK) {
            fprintf(stderr, "bench_fl_quality: %s: %s\n", path, err.text);
            return 1;
        }
        ds_res *r = &res[n_ds++];
        memset(r, 0, sizeof *r);
        r->def = def;
        pvg_eval_options o;
        eval_options(def, &o);
        o.validation = validation; /* choices on the validation split, never the test part */
        split s;
        if (make_split(ds, &o, &s) != 0) {
            fprintf(stderr, "bench_fl_quality: %s: split failed\n", def->name);
            return 1;
        }
        float *prior_S = NULL; /* public item similarity (catalogue data only) */
        if (max_pw > 0 && public_similarity(ds, data, def->name, &prior_S) != 0) return 1;
        if (prior_S && (prior_scale != 1 || prior_pow != 1))
            for (size_t q = 0; q < ds->n_items * ds->n_items; q++)
                prior_S[q] = prior_S[q] > 0
                                 ? (float)(prior_scale * pow((double)prior_S[q], prior_pow))
                                 : 0.0f;
        pvg_fl_item_prior prior_sp = {0}; /* its top prior_top neighbours an item */
        int ml_text = prior_text && !strcmp(def->name, "ml-100k");
        if (prior_S && (!strcmp(def->name, "online-retail") || ml_text) && prior_scale == 1 &&
            prior_pow == 1 && prior_top > 0) {
            /* the titles' prior as fl serve builds it (pvg_fl_item_prior_from_titles):
               Online Retail's descriptions; ML-100K's titles with their genre names */
            char **ml = NULL;
            if (ml_text && ml100k_catalogue_text(ds, data, prior_text == 1, genre_form, &ml) != 0)
                return 1;
            const char **titles = calloc(ds->n_items ? ds->n_items : 1, sizeof *titles);
            if (!titles) return 1;
            for (size_t i = 0; i < ds->n_items; i++)
                titles[i] = ml ? ml[i] : pvg_dataset_item_title(ds, i);
            pvg_error perr;
            pvg_error_clear(&perr);
            size_t linked = 0;
            pvg_status pst =
                prior_text == 3 && ml_text
                    ? pvg_fl_item_prior_from_labels(titles, (uint32_t)ds->n_items,
                                                    (uint32_t)prior_top, &prior_sp, &linked, &perr)
                    : pvg_fl_item_prior_from_titles(titles, (uint32_t)ds->n_items,
                                                    (uint32_t)prior_top, &prior_sp, &linked, &perr);
            free(titles);
            if (ml) {
                for (size_t i = 0; i < ds->n_items; i++)
                    free(ml[i]);
                free(ml);
            }
            if (pst != PVG_OK) {
                fprintf(stderr, "bench_fl_quality: item prior: %s\n", perr.text);
                return 1;
            }
            fprintf(stderr, "  public prior: pvg_fl_item_prior_from_%s, top %ld, %zu linked\n",
                    prior_text == 3 && ml_text ? "labels" : "titles", prior_top, linked);
            if (prior_text == 3 && ml_text) { /* the same prior as the genre vectors' top L? */
                pvg_fl_item_prior dense = {0};
                if (top_prior(prior_S, (uint32_t)ds->n_items, prior_top, &dense) != 0) return 1;
                uint64_t nnz = dense.row_ptr[ds->n_items];
                int same = prior_sp.row_ptr[ds->n_items] == nnz &&
                           !memcmp(dense.row_ptr, prior_sp.row_ptr,
                                   (ds->n_items + 1) * sizeof *dense.row_ptr) &&
                           !memcmp(dense.col, prior_sp.col, nnz * sizeof *dense.col) &&
                           !memcmp(dense.val, prior_sp.val, nnz * sizeof *dense.val);
                fprintf(stderr, "  public prior: the labels' prior %s the genre vectors' top %ld\n",
                        same ? "is identical to" : "DIFFERS from", prior_top);
                pvg_fl_item_prior_free(&dense);
            }
        } else if (prior_S && top_prior(prior_S, (uint32_t)ds->n_items, prior_top, &prior_sp) != 0)
            return 1;
        g_prior.S = prior_S ? &prior_sp : NULL;
        g_prior.weight = pw[0];
        g_blend_S = prior_S;
        r->users = s.Rt.n_rows;
        r->items = s.Rt.n_cols;
        r->train = s.Rt.nnz;
        r->n_eval = s.n_eval;
        r->delta = 1.0 / pow((double)r->users, 1.1);
        /* centralised iALS, the repository's defaults at the same factors */
        pvg_train_params tp;
        pvg_train_params_default(PVG_MODEL_IALS, &tp);
        tp.factors = factors;
        pvg_ials_resolve_defaults(&tp, &s.Rt); /* reg and alpha from the degrees, as training */
        r->alpha0 = pvg_ials_alpha0_of(&tp, s.Rt.n_rows, s.Rt.n_cols, s.Rt.nnz);
        pvg_eval_result er;
        if (pvg_eval_run(ds, &tp, &o, &er, &err) != PVG_OK) {
            fprintf(stderr, "bench_fl_quality: centralised iALS: %s\n", err.text);
            return 1;
        }
        r->c_recall = er.at[0].recall;
        r->c_ndcg = er.at[0].ndcg;
        r->c_secs = er.train_seconds;
        fprintf(stderr,
                "%s: %zu users, %zu items, %zu training interactions, %zu evaluated; "
                "centralised iALS k=%d recall@20 %.4f ndcg@20 %.4f\n",
                def->name, r->users, r->items, r->train, r->n_eval, factors, r->c_recall,
                r->c_ndcg);
        pvg_fl_config cfg;
        pvg_fl_config_default(&cfg);
        cfg.factors = (uint32_t)factors;
        cfg.reg = tp.reg;
        cfg.alpha = 0; /* binary, as the centralised default (confidence 0) */
        cfg.alpha0 = r->alpha0;
        cfg.clip = nodp_clip; /* no clipping without DP (1e4; fl serve's default is 1e3) */
        cfg.server_lr = server_lr;
        cfg.update = update; /* the no-DP runs' form (--update) */
        cfg.expected_cohort = (double)r->users;
        cfg.seed = 42;
        cfg.allow_insecure_rng = 1;
        if (max_cohort > 0) { /* the step fl serve chooses for that cohort bound */
            pvg_error ce;
            if (pvg_fl_config_for_cohort(&cfg, (uint32_t)r->items, 32, (uint32_t)max_cohort, 3,
                                         &ce) != PVG_OK) {
                fprintf(stderr, "bench_fl_quality: --max-cohort %ld: %s\n", max_cohort, ce.text);
                return 2;
            }
            fprintf(stderr, "  no-DP step for a cohort bound of %ld: gamma = clip / %.3g\n",
                    max_cohort, cfg.clip / cfg.granularity);
        }
        r->rounds = nodp ? rounds : 0;
        double rr, nn;
        fprintf(stderr, "  FedAvg (lr %g), all clients every round, no DP\n", server_lr);
        if (nodp &&
            run_fl(&s, &cfg, 1.0, rounds, 1 + seed_off, r->avg_r, r->avg_n, &rr, &nn, &r->avg_secs))
            return 1;
        pvg_fl_config ca = cfg;
        ca.optimizer = PVG_FL_FEDADAM;
        ca.server_lr = adam_lr;
        fprintf(stderr, "  FedAdam (lr %g), all clients every round, no DP\n", adam_lr);
        if (nodp && adam &&
            run_fl(&s, &ca, 1.0, rounds, 1 + seed_off, r->adam_r, r->adam_n, &rr, &nn,
                   &r->adam_secs))
            return 1;
        /* client-level DP: Poisson sampling at rate dp_q, dp_rounds rounds */
        r->n_eps = n_eps;
        for (int e = 0; dpials && e < n_eps; e++) { /* the centralised DP baseline */
            pvg_train_params dt;
            pvg_train_params_default(PVG_MODEL_IALS, &dt);
            dt.factors = dp_factors;
            dt.epochs = dp_rounds;
            dt.seed = 42 + seed_off;
            dt.dp_epsilon = eps[e];
            dt.dp_delta = r->delta;
            dt.dp_items = (const char *const *)ds->item_ids; /* the catalogue is public */
            dt.dp_n_items = pvg_dataset_n_items(ds);
            dp_point *p = &r->dpials[e];
            p->eps = eps[e];
            pvg_eval_result de;
            p->ok = pvg_eval_run(ds, &dt, &o, &de, &err) == PVG_OK;
            if (p->ok) {
                p->recall = de.at[0].recall;
                p->ndcg = de.at[0].ndcg;
            }
            fprintf(stderr,
                    "  centralised DP-iALS eps %g (k %d, %d iterations): recall@20 %.4f%s\n",
                    eps[e], dp_factors, dp_rounds, p->recall, p->ok ? "" : " (failed)");
        }
        double C = clip > 0 ? clip : 1.0;
        /* --dp-sweep kKrRnN[aAgG],...: central-noise FedAvg runs at every epsilon with k
           factors, noise ridge R, N rounds, alpha0 and reg times A and G (stderr
           only; for choosing on the validation split) */
        for (const char *sp = sweep; sp && *sp;) {
            int sk = dp_factors, sn = dp_rounds, used = 0;
            double srd = dp_ridge, sa = 1, sg = 1;
            int got = sscanf(sp, "k%dr%lfn%da%lfg%lf%n", &sk, &srd, &sn, &sa, &sg, &used);
            if (got == 3) sscanf(sp, "k%dr%lfn%d%n", &sk, &srd, &sn, &used);
            if ((got != 3 && got != 5) || sk < 1 || sk > 256 || sn < 1 || !(sa > 0) || !(sg > 0)) {
                fprintf(stderr, "bench_fl_quality: --dp-sweep wants kKrRnN[aAgG][,...] at '%s'\n",
                        sp);
                return 2;
            }
            sp += used;
            if (*sp == ',') sp++;
            for (int e = 0; e < n_eps * n_pw; e++) {
                g_prior.weight = pw[e % n_pw];
                pvg_fl_config c = cfg;
                c.factors = (uint32_t)sk;
                c.update = dp_update;
                c.noise_ridge = srd;
                c.average_solves = dp_average;
                c.alpha0 *= sa;
                c.reg *= sg;
                if (dp_update == PVG_FL_UPDATE_STATS) c.server_lr = 1;
                c.dp = PVG_FL_DP_CENTRAL;
                c.clip = C;
                c.expected_cohort = dp_q * (double)r->users;
                c.noise_multiplier = z_for(&c, dp_q, sn, r->delta, eps[e / n_pw]);
                double rr2, nn2, secs;
                if (run_fl(&s, &c, dp_q, sn, 7 + seed_off, NULL, NULL, &rr2, &nn2, &secs)) return 1;
                fprintf(stderr,
                        "  sweep eps %g k %d ridge %g rounds %d alpha0 x%g reg x%g prior %g "
                        "(z %.3f): recall@20 %.4f "
                        "(%.1f%% of centralised) ndcg@20 %.4f\n",
                        eps[e / n_pw], sk, srd, sn, sa, sg, g_prior.weight, c.noise_multiplier, rr2,
                        100 * rr2 / r->c_recall, nn2);
            }
        }
        g_prior.weight = pw[0];
        for (int e = 0; e < (sweep_only ? 0 : n_eps); e++) {
            /* FedAdam's first-order step on a fresh item solve (the
             * statistics form) has no meaning: FedAvg only there */
            int dp_adam = adam && dp_update == PVG_FL_UPDATE_GRADIENT;
            for (int opt = 0; opt < 1 + dp_adam; opt++) {
                dp_point *p = opt ? &r->dp_adam[e] : &r->dp_avg[e];
                pvg_fl_config c = opt ? ca : cfg;
                c.factors = (uint32_t)dp_factors;
                c.update = dp_update;
                c.noise_ridge = dp_ridge;
                c.average_solves = dp_average;
                if (!opt && dp_update == PVG_FL_UPDATE_STATS) c.server_lr = 1; /* a fresh solve */
                c.dp = PVG_FL_DP_CENTRAL;
                c.clip = C;
                c.expected_cohort = dp_q * (double)r->users;
                p->eps = eps[e];
                p->z = z_for(&c, dp_q, dp_rounds, r->delta, eps[e]);
                c.noise_multiplier = p->z;
                double secs;
                p->ok = run_fl(&s, &c, dp_q, dp_rounds, 7 + seed_off, NULL, NULL, &p->recall,
                               &p->ndcg, &secs) == 0;
                fprintf(stderr,
                        "  %s central DP eps %g (z %.3f, C %g, q %g, %d rounds): "
                        "recall@20 %.4f ndcg@20 %.4f (%.1f s)\n",
                        opt ? "FedAdam" : "FedAvg", eps[e], p->z, C, dp_q, dp_rounds, p->recall,
                        p->ndcg, secs);
            }
        }
        if (ddg) {
            pvg_fl_config c = cfg;
            c.factors = (uint32_t)dp_factors;
            c.update = dp_update;
            c.noise_ridge = dp_ridge;
            c.average_solves = dp_average;
            if (dp_update == PVG_FL_UPDATE_STATS) c.server_lr = 1;
            c.dp = PVG_FL_DP_DISTRIBUTED;
            c.clip = C;
            c.expected_cohort = dp_q * (double)r->users;
            r->ddg.eps = ddg_eps;
            r->ddg.z = z_for(&c, dp_q, dp_rounds, r->delta, ddg_eps);
            c.noise_multiplier = r->ddg.z;
            double secs;
            r->ddg.ok = run_fl(&s, &c, dp_q, dp_rounds, 7 + seed_off, NULL, NULL, &r->ddg.recall,
                               &r->ddg.ndcg, &secs) == 0;
            fprintf(stderr,
                    "  FedAvg distributed DDG eps %g (z %.3f): recall@20 %.4f ndcg@20 "
                    "%.4f (%.1f s)\n",
                    ddg_eps, r->ddg.z, r->ddg.recall, r->ddg.ndcg, secs);
        }
        g_prior.S = NULL;
        g_blend_S = NULL;
        free(prior_S);
        pvg_fl_item_prior_free(&prior_sp);
        pvg_csr_free(&s.Rt);
        pvg_csr_free(&s.T);
        free(s.users);
        pvg_dataset_free(ds);
    }
outputs:;
    FILE *f = json ? fopen(json, "w") : stdout;
    if (!f) return 1;
    fprintf(
        f,
        "{\"bench\": \"fl_quality\", \"factors\": %d, \"dp_factors\": %d, \"dp_q\": %g, "
        "\"dp_rounds\": %d, \"clip\": %g, \"adam_lr\": %g, \"server_lr\": %g, \"split\": \"%s\", "
        "\"update\": \"%s\", \"dp_update\": \"%s\", \"dp_ridge\": %g, "
        "\"dp_average\": %d, \"dp_prior\": %g, \"dp_prior_count\": %g, \"seed\": %llu, "
        "\"datasets\": [",
        factors, dp_factors, dp_q, dp_rounds, clip > 0 ? clip : 1.0, adam_lr, server_lr,
        validation ? "validation" : "test", update == PVG_FL_UPDATE_STATS ? "stats" : "gradient",
        dp_update == PVG_FL_UPDATE_STATS ? "stats" : "gradient", dp_ridge, dp_average, pw[0],
        g_prior.count_half, seed_off);
    for (int d = 0; d < n_ds; d++) {
        ds_res *r = &res[d];
        fprintf(f,
                "%s\n {\"name\": \"%s\", \"protocol\": \"%s\", \"users\": %zu, \"items\": %zu, "
                "\"train_interactions\": %zu, \"users_evaluated\": %zu, \"alpha0\": %.6g, "
                "\"delta\": %.3g,\n  \"centralised_ials\": {\"recall\": %.5f, \"ndcg\": %.5f, "
                "\"seconds\": %.2f},\n  \"rounds\": %d, \"fedavg_seconds\": %.2f, "
                "\"fedadam_seconds\": %.2f,\n  ",
                d ? "," : "", r->def->name, r->def->protocol_text, r->users, r->items, r->train,
                r->n_eval, r->alpha0, r->delta, r->c_recall, r->c_ndcg, r->c_secs, r->rounds,
                r->avg_secs, r->adam_secs);
        json_curve(f, "fedavg_recall", r->avg_r, r->rounds);
        fprintf(f, ",\n  ");
        json_curve(f, "fedavg_ndcg", r->avg_n, r->rounds);
        fprintf(f, ",\n  ");
        json_curve(f, "fedadam_recall", r->adam_r, r->rounds);
        fprintf(f, ",\n  ");
        json_curve(f, "fedadam_ndcg", r->adam_n, r->rounds);
        fprintf(f, ",\n  \"dp_central_fedavg\": ");
        json_dp(f, r->dp_avg, r->n_eps);
        fprintf(f, ",\n  \"dp_central_fedadam\": ");
        json_dp(f, r->dp_adam, r->n_eps);
        fprintf(f, ",\n  \"dp_ials_centralised\": ");
        json_dp(f, r->dpials, r->n_eps);
        fprintf(f, ",\n  \"dp_distributed_fedavg\": ");
        json_dp(f, &r->ddg, ddg ? 1 : 0);
        fprintf(f, "}");
    }
    fprintf(f, "]}\n");
    if (json) fclose(f);
    if (svg) {
        FILE *g = fopen(svg, "w");
        if (!g) return 1;
        static svg_panel pan[2 * N_DATASETS];
        int np = 0;
        static char titles[2 * N_DATASETS][128], refl[2 * N_DATASETS][2][96];
        for (int d = 0; d < n_ds; d++) {
            ds_res *r = &res[d];
            svg_panel *p = &pan[np];
            memset(p, 0, sizeof *p);
            snprintf(titles[np], 128, "%s: no DP, per round", r->def->name);
            p->title = titles[np];
            p->xlabel = "round (all clients)";
            p->ylabel = "Recall@20";
            p->n_series = 2;
            p->s[0].label = "FedAvg";
            p->s[1].label = "FedAdam";
            for (int i = 0; i < r->rounds && i < SVG_MAX_POINTS; i++) {
                p->s[0].x[i] = p->s[1].x[i] = i + 1;
                p->s[0].y[i] = r->avg_r[i];
                p->s[1].y[i] = r->adam_r[i];
                p->s[0].n = p->s[1].n = i + 1;
            }
            int any_adam = 0; /* FedAdam not run (--no-fedadam): no series */
            for (int i = 0; i < r->rounds; i++)
                any_adam |= r->adam_r[i] != 0;
            if (!any_adam) p->n_series = 1;
            p->n_refs = 2;
            p->ref_y[0] = r->c_recall;
            snprintf(refl[np][0], 96, "centralised iALS %.4f", r->c_recall);
            p->ref_label[0] = refl[np][0];
            p->ref_y[1] = 0.95 * r->c_recall;
            snprintf(refl[np][1], 96, "95%%");
            p->ref_label[1] = refl[np][1];
            np++;
            if (r->n_eps == 0 && !r->ddg.ok) continue; /* no DP points: no panel */
            p = &pan[np];
            memset(p, 0, sizeof *p);
            snprintf(titles[np], 128, "%s: client-level DP", r->def->name);
            p->title = titles[np];
            p->xlabel = "epsilon (delta = 1/n^1.1; log scale)";
            p->ylabel = "Recall@20";
            p->log2x = 1;
            /* one series per kind that has points */
            const dp_point *kinds[4] = {r->dp_avg, r->dp_adam, &r->ddg, r->dpials};
            const int counts[4] = {r->n_eps, r->n_eps, ddg ? 1 : 0, r->n_eps};
            static const char *const names[4] = {
                "central Gaussian, FedAvg", "central Gaussian, FedAdam",
                "distributed discrete Gaussian, FedAvg", "centralised DP-iALS"};
            p->n_series = 0;
            for (int kd = 0; kd < 4; kd++) {
                svg_series *se = &p->s[p->n_series];
                se->label = names[kd];
                se->n = 0;
                for (int e = 0; e < counts[kd]; e++)
                    if (kinds[kd][e].ok) {
                        se->x[se->n] = kinds[kd][e].eps;
                        se->y[se->n++] = kinds[kd][e].recall;
                    }
                if (se->n) p->n_series++;
            }
            p->n_refs = 2;
            p->ref_y[0] = r->c_recall;
            snprintf(refl[np][0], 96, "centralised iALS, no DP %.4f", r->c_recall);
            p->ref_label[0] = refl[np][0];
            p->ref_y[1] = 0.85 * r->c_recall;
            snprintf(refl[np][1], 96, "85%%");
            p->ref_label[1] = refl[np][1];
            np++;
        }
        svg_write(g, pan, np);
        fclose(g);
    }
    return 0;
}
