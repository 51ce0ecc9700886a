/*
 * fl_quality_data.h - the data sets, splits and data-directory lookup shared
 * by the federated quality benchmarks (bench/fl_quality.c in process,
 * bench/fl_net_quality.c over HTTP): ML-100K (random-split 0.25, split seed
 * 42) and Online Retail (temporal, cut-off 2011-11-01, >= 5 training
 * items), as src/model/eval.c splits them. Header-only (each bench .c file
 * is its own executable).
 */
#ifndef PVG_BENCH_FL_QUALITY_DATA_H
#define PVG_BENCH_FL_QUALITY_DATA_H

#include "model/model_internal.h"

#include <privguide/eval.h>
#include <privguide/fl.h>

#include <math.h>
#include <zlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define K_AT 20

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

static void eval_options(const dataset_def *d, pvg_eval_options *o)
{
    pvg_eval_options_default(d->protocol, o);
    o->seed = 42;
    o->threads = 1;
    o->n_ks = 1;
    o->ks[0] = K_AT;
    if (d->protocol == PVG_EVAL_RANDOM_SPLIT) o->test_fraction = 0.25;
    if (d->protocol == PVG_EVAL_TEMPORAL) {
        o->cutoff = 1320105600; /* 2011-11-01T00:00:00Z */
        o->min_user_items = 5;
    }
}

/* The split as CSRs and the evaluated users, as src/model/eval.c does. */
typedef struct split {
    pvg_csr Rt, T;
    uint32_t *users;
    size_t n_eval;
} split;

static int find_in(const pvg_csr *M, uint32_t u, uint32_t it)
{
    for (uint64_t j = M->indptr[u]; j < M->indptr[u + 1]; j++)
        if (M->indices[j] == it) return 1;
    return 0;
}

static int make_split(const pvg_dataset *ds, const pvg_eval_options *o, split *s)
{
    memset(s, 0, sizeof *s);
    size_t n = ds->n_ev;
    uint8_t *role = malloc(n), *keep = malloc(n);
    pvg_error err;
    if (!role || !keep || pvg_eval_split(ds, o, role, &err) != PVG_OK) return -1;
    for (size_t e = 0; e < n; e++)
        keep[e] = role[e] == PVG_SPLIT_TRAIN;
    if (pvg_csr_build(ds->n_users, ds->n_items, n, ds->ev_user, ds->ev_item, ds->ev_w, keep,
                      &s->Rt) != PVG_OK)
        return -1;
    for (size_t e = 0; e < n; e++)
        keep[e] = role[e] == PVG_SPLIT_TEST;
    if (pvg_csr_build(ds->n_users, ds->n_items, n, ds->ev_user, ds->ev_item, ds->ev_w, keep,
                      &s->T) != PVG_OK)
        return -1;
    free(role);
    free(keep);
    long min_items = o->protocol == PVG_EVAL_TEMPORAL ? o->min_user_items : 1;
    s->users = malloc(ds->n_users * sizeof *s->users);
    for (size_t u = 0; u < ds->n_users; u++) {
        if ((long)(s->Rt.indptr[u + 1] - s->Rt.indptr[u]) < min_items) continue;
        size_t nt = 0;
        for (uint64_t j = s->T.indptr[u]; j < s->T.indptr[u + 1]; j++)
            nt += !find_in(&s->Rt, (uint32_t)u, s->T.indices[j]);
        if (nt) s->users[s->n_eval++] = (uint32_t)u;
    }
    return 0;
}

/* The shared data directory: dir when given, else $PVG_SHARED_DIR/data,
 * ../shared/data, ../../shared/data; the first holding one of the data
 * sets. NULL (and the reason on stderr, prefixed by prog) when none does. */
static const char *find_data_dir(const char *prog, const char *dir, char *buf, size_t cap)
{
    char path[4096];
    const char *cands[4];
    int nc = 0;
    if (dir) cands[nc++] = dir;
    const char *sh = getenv("PVG_SHARED_DIR");
    if (!dir && sh && *sh) {
        snprintf(buf, cap, "%s/data", sh);
        cands[nc++] = buf;
    }
    if (!dir) {
        cands[nc++] = "../shared/data";
        cands[nc++] = "../../shared/data";
    }
    for (int i = 0; i < nc; i++)
        for (int d = 0; d < N_DATASETS; d++) {
            snprintf(path, sizeof path, "%s/%s", cands[i], DATASETS[d].file);
            if (access(path, R_OK) == 0) return cands[i];
        }
    fprintf(stderr,
            "%s: skipped: no data set found (looked for %s and %s under the given dir, "
            "$PVG_SHARED_DIR/data, ../shared/data, ../../shared/data)\n",
            prog, DATASETS[0].file, DATASETS[1].file);
    return NULL;
}

/* The public item-item similarity the federated DP runs may use as a prior
 * (pvg_fl_model_set_item_prior), from the catalogue alone, never from the
 * interactions: Online Retail's item titles (the Descriptions, standing for
 * the operator's catalogue) through pvg_content_similarity (the squared
 * cosine of their IDF-weighted terms, as DP-EASE's prior); ML-100K's 19
 * genre flags of u.item (data_dir/ml-100k/u.item.gz), the squared cosine of
 * the items' genre vectors. New n x n in *out (free); 0 ok, -1 with the
 * reason on stderr. */
static inline int public_similarity(const pvg_dataset *ds, const char *data_dir, const char *name,
                                    float **out)
{
    size_t n = ds->n_items;
    float *S = calloc(n ? n * n : 1, sizeof *S);
    *out = NULL;
    if (!S) return -1;
    if (!strcmp(name, "online-retail")) {
        const char **titles = calloc(n ? n : 1, sizeof *titles);
        if (!titles) {
            free(S);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            titles[i] = pvg_dataset_item_title(ds, i);
        size_t linked = 0;
        pvg_error err;
        pvg_error_clear(&err);
        pvg_status st = pvg_content_similarity(titles, n, S, &linked, &err);
        free(titles);
        if (st != PVG_OK) {
            fprintf(stderr, "public similarity: %s\n", err.text);
            free(S);
            return -1;
        }
        fprintf(stderr, "  public prior: titles link %zu of %zu items\n", linked, n);
        *out = S;
        return 0;
    }
    /* ML-100K: u.item is "id|title|date|video date|url|19 genre flags" */
    char path[4096], line[4096];
    snprintf(path, sizeof path, "%s/ml-100k/u.item.gz", data_dir);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "public similarity: cannot open %s\n", path);
        free(S);
        return -1;
    }
    enum { NG = 19 };
    float *gen = calloc(n ? n * NG : 1, sizeof *gen);
    long lineno = 0;
    while (gen && gzgets(f, line, sizeof line)) {
        lineno++;
        char *bar = strchr(line, '|');
        if (!bar) continue;
        *bar = 0;
        long ii = -1;
        for (size_t i = 0; i < n; i++)
            if (ds->item_ids[i] && !strcmp(ds->item_ids[i], line)) ii = (long)i;
        if (ii < 0) continue; /* an item nobody rated */
        char *p = bar + 1;
        for (int fld = 0; fld < 4 && p; fld++) {
            p = strchr(p, '|');
            if (p) p++;
        }
        for (int g = 0; g < NG && p && *p; g++) {
            gen[(size_t)ii * NG + g] = (float)(*p == '1');
            p = strchr(p, '|');
            if (p) p++;
        }
    }
    gzclose(f);
    if (!gen || lineno == 0) {
        fprintf(stderr, "public similarity: %s: no genres read\n", path);
        free(gen);
        free(S);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double d = 0, ni = 0, nj = 0;
            for (int g = 0; g < NG; g++) {
                d += gen[i * NG + g] * gen[j * NG + g];
                ni += gen[i * NG + g];
                nj += gen[j * NG + g];
            }
            S[i * n + j] = i != j && ni > 0 && nj > 0 ? (float)(d * d / (ni * nj)) : 0.0f;
        }
    free(gen);
    fprintf(stderr, "  public prior: genres of %s\n", path);
    *out = S;
    return 0;
}

/* ML-100K's catalogue text as an operator would declare it: each item's
 * title followed by the names of its genres (u.item's 19 flags, in
 * u.genre's order), so that the titles' prior (pvg_fl_item_prior_from_titles,
 * the function fl serve calls on the declared catalogue) links items by
 * their words, genres included (with_title 0: the genre names alone joined
 * by '|', "Action|Sci-Fi", the category line a shop would declare as each
 * item's description: the text of `--item-prior descriptions` and the
 * labels of `--item-prior categories`). form (experiments on why the text
 * and the genre vectors differ; 0: the names as declared): 1 each name cut
 * into its words ("Sci|Fi", "Film|Noir", "Children"), 2 each name as one
 * word ("SciFi", "FilmNoir", "Childrens"), 3 the names carried by more than
 * a quarter of the items left out (what the titles' function drops). New
 * *out[n] (each string and the array: free); items missing from u.item get
 * NULL. 0 ok, -1 with the reason on stderr. */
static inline int ml100k_catalogue_text(const pvg_dataset *ds, const char *data_dir, int with_title,
                                        int form, char ***out)
{
    enum { NG = 19 };
    static const char *const GENRES[4][NG] = {
        {"unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
         "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
         "Sci-Fi", "Thriller", "War", "Western"},
        {"unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
         "Documentary", "Drama", "Fantasy", "Film|Noir", "Horror", "Musical", "Mystery", "Romance",
         "Sci|Fi", "Thriller", "War", "Western"},
        {"unknown", "Action", "Adventure", "Animation", "Childrens", "Comedy", "Crime",
         "Documentary", "Drama", "Fantasy", "FilmNoir", "Horror", "Musical", "Mystery", "Romance",
         "SciFi", "Thriller", "War", "Western"},
    };
    size_t n = ds->n_items;
    char **txt = calloc(n ? n : 1, sizeof *txt), **titles = calloc(n ? n : 1, sizeof *titles);
    unsigned char *gen = calloc(n ? n * NG : 1, 1);
    *out = NULL;
    if (!txt || !titles || !gen) {
        free(txt), free(titles), free(gen);
        return -1;
    }
    char path[4096], line[4096];
    snprintf(path, sizeof path, "%s/ml-100k/u.item.gz", data_dir);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "catalogue text: cannot open %s\n", path);
        free(txt), free(titles), free(gen);
        return -1;
    }
    size_t got = 0, df[NG] = {0};
    while (gzgets(f, line, sizeof line)) {
        char *bar = strchr(line, '|');
        if (!bar) continue;
        *bar = 0;
        long ii = -1;
        for (size_t i = 0; i < n; i++)
            if (ds->item_ids[i] && !strcmp(ds->item_ids[i], line)) ii = (long)i;
        if (ii < 0 || titles[ii]) continue; /* an item nobody rated, or listed twice */
        char *title = bar + 1, *p = strchr(title, '|');
        if (!p) continue;
        *p++ = 0;
        for (int fld = 0; fld < 3 && p; fld++) {
            p = strchr(p, '|');
            if (p) p++;
        }
        if (!(titles[ii] = strdup(title))) break;
        got++;
        for (int g = 0; g < NG && p && *p; g++) {
            gen[(size_t)ii * NG + g] = *p == '1';
            df[g] += *p == '1';
            p = strchr(p, '|');
            if (p) p++;
        }
    }
    gzclose(f);
    for (size_t i = 0; i < n; i++) {
        if (!titles[i]) continue;
        char buf[1024];
        size_t len = with_title ? (size_t)snprintf(buf, sizeof buf, "%s", titles[i]) : 0;
        buf[len] = 0;
        for (int g = 0; g < NG; g++) {
            if (!gen[i * NG + g] || len >= sizeof buf || (form == 3 && df[g] * 4 > got)) continue;
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s",
                                    !len         ? ""
                                    : with_title ? " "
                                                 : "|",
                                    GENRES[form == 1 || form == 2 ? form : 0][g]);
        }
        txt[i] = strdup(buf);
        free(titles[i]);
    }
    free(titles);
    free(gen);
    if (got == 0) {
        fprintf(stderr, "catalogue text: %s: no item read\n", path);
        free(txt);
        return -1;
    }
    *out = txt;
    return 0;
}

/* The smallest noise multiplier z (to 0.1%) with epsilon(z) <= eps. */
static double z_for(const pvg_fl_config *base, double q, int rounds, double delta, double eps)
{
    pvg_fl_config c = *base;
    double lo = 0.05, hi = 200;
    for (int it = 0; it < 60 && hi / lo > 1.001; it++) {
        c.noise_multiplier = sqrt(lo * hi);
        double e = INFINITY;
        if (pvg_fl_epsilon(&c, q, (uint32_t)rounds, delta, &e, NULL) == PVG_OK && e <= eps)
            hi = c.noise_multiplier;
        else
            lo = c.noise_multiplier;
    }
    return hi;
}

#endif
