/*
 * privguide/eval.h - the offline evaluation harness of the recommenders:
 * deterministic splits (random-split, holdout-users, temporal), training on
 * the training part, and ranking metrics at several cut-offs.
 *
 * Metrics per evaluated user u with targets T_u and top-k list R (seen
 * training items excluded), averaged over users:
 *   recall@k    = |R ∩ T| / min(k, |T|)
 *   precision@k = |R ∩ T| / k
 *   ndcg@k      = DCG(R) / IDCG, binary gains, log2(rank+1) discount
 *   map@k       = sum over hit ranks r of P@r, divided by min(k, |T|)
 *   hr@k        = 1 if R ∩ T is not empty
 *   coverage@k  = distinct items recommended to any user / catalog size
 */
#ifndef PRIVGUIDE_EVAL_H
#define PRIVGUIDE_EVAL_H

#include <privguide/model.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef enum pvg_eval_protocol {
    PVG_EVAL_RANDOM_SPLIT = 1,
    PVG_EVAL_HOLDOUT_USERS = 2,
    PVG_EVAL_TEMPORAL = 3
} pvg_eval_protocol;

const char *pvg_eval_protocol_name(pvg_eval_protocol p);
pvg_status pvg_eval_protocol_parse(const char *name, pvg_eval_protocol *out,
                                   pvg_error *err) PVG_WARN_UNUSED;

#define PVG_EVAL_MAX_K 8
typedef struct pvg_eval_options {
    pvg_eval_protocol protocol;
    double test_fraction; /* random-split: per user, default 0.25 */
    long heldout_users;   /* holdout-users: N validation + N test users */
    int64_t cutoff;       /* temporal: unix seconds; events before train */
    long min_user_items;  /* temporal: users need this many training items */
    uint64_t seed;
    int validation; /* 1: evaluate on a validation split carved from the
                       training part (the test part is never touched) */
    int n_ks;
    int ks[PVG_EVAL_MAX_K]; /* cut-offs, default 10,20,50,100 */
    int threads;            /* scoring threads */
} pvg_eval_options;

void pvg_eval_options_default(pvg_eval_protocol p, pvg_eval_options *o);

typedef struct pvg_eval_at_k {
    int k;
    double recall, ndcg, precision, map, hr, coverage;
} pvg_eval_at_k;

typedef struct pvg_eval_result {
    int n_ks;
    pvg_eval_at_k at[PVG_EVAL_MAX_K];
    long users_evaluated;
    size_t train_users, train_items, train_interactions, test_interactions;
    double train_seconds, eval_seconds;
    pvg_train_stats train;
    /* the trained model's DP record (is_dp 0 for a model trained without
     * DP): the bound, mechanism and sensitivity it actually used, which can
     * differ from the parameters' defaults (pvg_dp_default_max_items) */
    pvg_model_dp_info dp;
    /* the recency terms the trained model used (on 0: none; docs/models.md
     * "Recency") */
    pvg_model_recency recency;
} pvg_eval_result;

/* Splits ds by the protocol, trains tp on the training part, scores every
 * evaluated user and fills *res. Deterministic under o->seed (the training
 * seed is tp->seed). Errors: PVG_ERR_INVALID (bad option, nothing to
 * evaluate), those of pvg_model_train. */
pvg_status pvg_eval_run(const pvg_dataset *ds, const pvg_train_params *tp,
                        const pvg_eval_options *o, pvg_eval_result *res,
                        pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
