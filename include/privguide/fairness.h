/*
 * privguide/fairness.h - the fairness audit of a recommender: does it serve
 * some groups of shoppers worse than others, and does it show them a
 * different slice of the catalogue?
 *
 * The audit splits a dataset with an evaluation protocol (privguide/eval.h:
 * random-split, holdout-users, temporal cut-off), trains the model on the
 * training part and scores every evaluated shopper (training items
 * excluded), exactly as pvg_eval_run. Each shopper carries a group label
 * supplied by the operator (pvg_fair_labels: an attribute file, or a column
 * of the events file such as Online Retail's Country). Per group it reports:
 *   - users, Recall@k and NDCG@k (eval.h definitions) with 95% confidence
 *     intervals: a percentile bootstrap over the shoppers, resampled within
 *     each group (default), or the normal approximation;
 *   - exposure of the top-k lists shown to the group: the share of list
 *     slots per item category (from an item-category file, or by default the
 *     popularity tiers head / mid / tail: head the most popular items that
 *     account for 20% of training interactions, tail the least popular that
 *     account for the last 20%); popularity bias: the mean popularity
 *     percentile (1 = most popular item, 0 = least) of the recommended items
 *     minus that of the shopper's own training history, averaged over the
 *     group's shoppers; catalogue coverage: distinct items recommended to
 *     the group / catalogue size (it grows with the group's size);
 *     miscalibration: mean KL(history categories || list categories), with
 *     the list smoothed as in Steck 2018 (alpha 0.01);
 * and the gaps between groups: max - min of the group values and each group
 * minus the rest of the shoppers, with the same kind of interval.
 *
 * Mitigation (optional): calibrated recommendations (Steck 2018, "Calibrated
 * Recommendations"): the top-N candidates by score are re-ranked greedily,
 * each step adding the item maximising (1 - lambda) * s_i - lambda *
 * KL(p || q~(list + i)), s the candidate scores scaled to [0, 1] over the
 * candidates, p the shopper's history category distribution, q~ the list's
 * smoothed one. The report then holds every figure again after re-ranking.
 *
 * Differentially private variant (epsilon > 0): nothing per shopper leaves.
 * For each group the sums count, sum and sum of squares of recall and ndcg,
 * sums of the recommended and history popularity percentiles, the category
 * shares of the lists and the distinct items recommended (before and after
 * mitigation) get discrete Laplace noise (dp.h). Sensitivities, with each
 * shopper in exactly one group and every per-shopper value in [0, 1]:
 * 1 for each sum (L1 over the category-share vector), k for the distinct
 * items. epsilon is split evenly over those blocks (basic composition);
 * groups are disjoint (parallel composition). Means and intervals are
 * post-processing (normal approximation with the noise variance added).
 * Scope: the noise covers each shopper's own contribution to the evaluation
 * given the trained model. The model is trained on the same shoppers; a
 * shopper's training data moves the model and so other shoppers' metrics,
 * which only a DP-trained model (its own epsilon added by composition)
 * bounds. So with a store (fo->ledger), tp->dp_epsilon must be > 0
 * (PVG_ERR_POLICY otherwise): the model's recorded (epsilon, delta) and the
 * sums' epsilon are charged to its ledger in one transaction (label
 * PVG_FAIR_LEDGER_LABEL, purpose "queries") before the report is returned;
 * an overspend refuses both. Such a release also needs categories_or_null
 * (the popularity tiers use exact counts; PVG_ERR_POLICY), shows no
 * popularity-bias figures, and keeps every label of the attribute file as a
 * group (no merging by exact size). docs/fairness.md says this.
 *
 * Group labels: shoppers without a label are not evaluated (counted);
 * groups with fewer than min_group_users shoppers, and all but the
 * max_groups largest, are merged into "other", so no small group's figures
 * single out a few shoppers.
 *
 * Thread-safety: the objects are not shared between threads while being
 * built; pvg_fair_audit uses eval threads internally.
 */
#ifndef PRIVGUIDE_FAIRNESS_H
#define PRIVGUIDE_FAIRNESS_H

#include <privguide/eval.h>
#include <privguide/import.h>
#include <privguide/model.h>
#include <privguide/rng.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* The ledger label of a DP fairness release (files under purpose "queries"). */
#define PVG_FAIR_LEDGER_LABEL "fairness_audit"
/* The saved report in a data dir (pvg_fair_report_save). */
#define PVG_FAIR_REPORT_FILE "fairness-report.json"

/* ---- labels: a key (user key or item id) -> a label ---------------------- */

typedef struct pvg_fair_labels pvg_fair_labels;

/* *out is new (pvg_fair_labels_free). Errors: PVG_ERR_NOMEM. */
pvg_status pvg_fair_labels_new(pvg_fair_labels **out, pvg_error *err) PVG_WARN_UNUSED;
void pvg_fair_labels_free(pvg_fair_labels *l);

/* Sets key (key_len bytes, copied) -> label (copied; 1..128 bytes, no
 * control characters); a key set again keeps its first label and counts
 * the conflict when the labels differ. Errors: PVG_ERR_INVALID (bad label),
 * PVG_ERR_NOMEM. */
pvg_status pvg_fair_labels_set(pvg_fair_labels *l, const void *key, size_t key_len,
                               const char *label, pvg_error *err) PVG_WARN_UNUSED;
/* Keys set, and keys set again with another label (first kept). */
size_t pvg_fair_labels_count(const pvg_fair_labels *l);
size_t pvg_fair_labels_conflicts(const pvg_fair_labels *l);
/* The label of key (borrowed), or NULL. */
const char *pvg_fair_labels_get(const pvg_fair_labels *l, const void *key, size_t key_len);

/* Reads a shopper attribute file (plain or gzip) into user-keyed labels for
 * the shoppers of ds: each external id is normalised (pvg_user_id_normalize)
 * and keyed as ds keys it (its salted hash for a file dataset; the store's
 * pseudonym for a store dataset, store required). Layouts:
 *   - ML-100K u.user ("id|age|gender|occupation|zip", no header): column
 *     "gender", "age", "age-band" (<25, 25-34, 35-44, 45+), "occupation"
 *     or "zip";
 *   - column NULL: two columns "user,group" (comma, tab or semicolon; a
 *     first line "user,..." is a header);
 *   - column given: a header line naming the columns; the user id is the
 *     first column; "age-band" derives bands from a column "age".
 * *rows (may be NULL) gets the data lines read. Errors: PVG_ERR_IO,
 * PVG_ERR_INVALID (file:line, what was expected), PVG_ERR_NOMEM. */
pvg_status pvg_fair_groups_read(const char *path, const char *column, const pvg_dataset *ds,
                                pvg_store *store_or_null, pvg_fair_labels *out, long *rows,
                                pvg_error *err) PVG_WARN_UNUSED;

/* Reads the events file path in format fmt and labels each shopper of ds
 * with the value of the event field `field` (only "country" today) of their
 * first event carrying it; nothing else of the file is kept. Errors: those
 * of the reader, PVG_ERR_INVALID (unknown field, no event carries it). */
pvg_status pvg_fair_groups_from_events(const char *path, pvg_format fmt, const char *field,
                                       const pvg_dataset *ds, pvg_fair_labels *out,
                                       pvg_error *err) PVG_WARN_UNUSED;

/* Reads item categories (plain or gzip), keyed by external item id: two
 * columns "item,category" (comma, tab or semicolon; header "item,..."
 * skipped), or ML-100K u.item (the item's first flagged genre). */
pvg_status pvg_fair_categories_read(const char *path, pvg_fair_labels *out,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* ---- the audit ------------------------------------------------------------ */

typedef enum pvg_fair_mitigation {
    PVG_FAIR_MITIGATE_NONE = 0,
    PVG_FAIR_MITIGATE_CALIBRATION = 1 /* Steck 2018 greedy calibrated re-ranking */
} pvg_fair_mitigation;

typedef struct pvg_fair_options {
    int k;                /* cut-off of the lists (default 20) */
    int bootstrap;        /* resamples for the intervals (default 1000); 0: normal approx */
    uint64_t seed;        /* of the bootstrap (default 42) */
    long min_group_users; /* smaller groups go to "other" (default 20) */
    int max_groups;       /* keep the largest N groups, the rest "other" (0: all) */
    const char *group_by; /* borrowed: the attribute's name, for the report */
    pvg_fair_mitigation mitigate;
    double lambda;  /* calibration trade-off in [0, 1] (default 0.5) */
    int candidates; /* re-ranked candidates N >= k (default 100) */
    /* DP release: epsilon > 0 */
    double epsilon;
    pvg_rng *rng;           /* borrowed noise source; NULL: a new CSPRNG */
    int allow_insecure_rng; /* tests only */
    pvg_store *ledger;      /* borrowed; not NULL: charge the DP release to its ledger */
} pvg_fair_options;

void pvg_fair_options_default(pvg_fair_options *o);

typedef struct pvg_fair_report pvg_fair_report;

/* Runs the audit: splits ds by eo (eo->ks are ignored: fo->k is the
 * cut-off), trains tp on the training part, scores the evaluated shoppers
 * labelled in groups, optionally re-ranks, aggregates by group, and (DP)
 * adds noise and charges the ledger. categories_or_null: item categories
 * (NULL: popularity tiers). *out is new (pvg_fair_report_free).
 * Deterministic under eo->seed, tp->seed and fo->seed, except the DP noise.
 * Errors: PVG_ERR_INVALID (bad option; no labelled shopper to evaluate),
 * those of pvg_eval_run, of the DP mechanisms (PVG_ERR_POLICY for a
 * deterministic rng without allow_insecure_rng) and of pvg_ledger_charge
 * (PVG_ERR_BUDGET). */
pvg_status pvg_fair_audit(const pvg_dataset *ds, const pvg_train_params *tp,
                          const pvg_eval_options *eo, const pvg_fair_labels *groups,
                          const pvg_fair_labels *categories_or_null, const pvg_fair_options *fo,
                          pvg_fair_report **out, pvg_error *err) PVG_WARN_UNUSED;
void pvg_fair_report_free(pvg_fair_report *r);

/* The report as JSON (docs/api.md, GET /v1/admin/fairness): new string
 * (free), NULL when out of memory. Aggregates only: no shopper row. */
char *pvg_fair_report_json(const pvg_fair_report *r);

/* Writes json (a report from pvg_fair_report_json) to data_dir/
 * PVG_FAIR_REPORT_FILE atomically (temp file 0600, fsync, rename).
 * Errors: PVG_ERR_INVALID (not a JSON object with "groups"), PVG_ERR_IO. */
pvg_status pvg_fair_report_save(const char *data_dir, const char *json,
                                pvg_error *err) PVG_WARN_UNUSED;
/* Reads the saved report: *json new (free). Errors: PVG_ERR_NOT_FOUND (none
 * saved), PVG_ERR_IO, PVG_ERR_CORRUPT (not a report). */
pvg_status pvg_fair_report_load(const char *data_dir, char **json, pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
