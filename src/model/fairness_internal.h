/*
 * fairness_internal.h - the per-shopper results of a fairness audit and the
 * per-group statistics its DP release adds noise to (fairness.c). Tests
 * include it to check the aggregation and the sensitivities directly.
 */
#ifndef PVG_FAIRNESS_INTERNAL_H
#define PVG_FAIRNESS_INTERNAL_H

#include <privguide/fairness.h>

#include <stdint.h>

/* One evaluated shopper. [phase]: 0 the model's lists, 1 after mitigation.
 * Every value is in [0, 1] except miscal (a KL divergence, >= 0). */
typedef struct pvg_fair_user {
    int32_t group;
    float recall[2], ndcg[2];
    float pop_rec[2]; /* mean popularity percentile of the list */
    float pop_hist;   /* mean popularity percentile of the history */
    float miscal[2];  /* KL(history categories || smoothed list categories) */
} pvg_fair_user;

/* The per-shopper results of one audit run. */
typedef struct pvg_fair_eval {
    pvg_model_dp_info model_dp; /* the evaluated model's DP record (is_dp 0: not DP) */
    int no_popularity;          /* 1: popularity figures neither computed nor shown */
    size_t n;                   /* evaluated shoppers */
    int k;                      /* list length */
    int phases;                 /* 1, or 2 with mitigation */
    int n_groups;               /* group g's name: group_names[g] */
    char **group_names;
    int n_cats;
    char **cat_names;
    size_t n_items;      /* catalogue size */
    pvg_fair_user *u;    /* [n] */
    int64_t *lists;      /* [n][phases][k] item indices, -1 pads */
    uint16_t *cat_count; /* [n][phases][n_cats] list slots per category */
    float *hist_share;   /* [n][n_cats] history category distribution */
} pvg_fair_eval;

void pvg_fair_eval_free(pvg_fair_eval *e);

/* The DP release's per-group statistics: integer sums, in blocks; a
 * shopper's presence moves the coordinates of one block of their own group
 * by at most the block's L1 sensitivity (values in [0,1] are quantised per
 * shopper to multiples of 1/PVG_FAIR_Q before summing). Layout per group:
 *   0 count (sens 1), 1 sum pop_hist (Q), then per phase p, at
 *   2 + p * (6 + n_cats): recall, recall^2, ndcg, ndcg^2, pop_rec (each Q),
 *   distinct items recommended to the group (k), slots per category
 *   (n_cats coordinates, one block, L1 sens k). */
#define PVG_FAIR_Q 65536
size_t pvg_fair_stats_len(const pvg_fair_eval *e);
/* Number of blocks, block of each coordinate (block_of[len]) and each
 * block's L1 sensitivity (sens[n_blocks]); returns the number of blocks. */
int pvg_fair_stats_blocks(const pvg_fair_eval *e, int *block_of, int64_t *sens);
/* stats[n_groups * len]; 0 or -1 (out of memory). */
int pvg_fair_stats(const pvg_fair_eval *e, int64_t *stats);

/* The greedy calibrated re-ranking of one list (Steck 2018): from cand[n]
 * (item indices, best first) with scores sc[n] and categories cat_of[item],
 * picks k into out[k]; p[n_cats] is the target distribution. Returns the
 * number picked. scratch: n_cats doubles + n bytes. */
size_t pvg_fair_calibrate(const int64_t *cand, const float *sc, size_t n, const int *cat_of,
                          const double *p, int n_cats, double lambda, size_t k, int64_t *out,
                          double *qcount, unsigned char *used);
/* KL(p || (1 - 0.01) q + 0.01 p), q the category distribution of counts. */
double pvg_fair_kl(const double *p, const double *counts, int n_cats);

/* Aggregates e into a report (fairness.c); DP when fo->epsilon > 0. */
pvg_status pvg_fair_report_build(const pvg_fair_eval *e, const pvg_fair_options *fo,
                                 const char *model, const char *protocol, const char *cat_source,
                                 long unlabelled, pvg_fair_report **out, pvg_error *err);

#endif
