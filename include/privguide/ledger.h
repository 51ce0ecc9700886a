/*
 * privguide/ledger.h - the privacy budget ledger.
 *
 * ONE budget per store. Every release is computed from the same shoppers,
 * whatever name it is filed under, so the store has one total (epsilon,
 * delta) and every differentially private release, of any kind, is charged
 * against it. Releases are filed under a purpose (a sub-account of the
 * total): queries, popular_list, similar_items, spend_totals, model_builds,
 * federated_training - a fixed list. The operator may cap a purpose; a
 * charge must then fit both its purpose's cap and the store's total. The
 * sum of what all purposes spent never exceeds the total.
 *
 * Callers charge under a label (historically "the dataset"): a label that is
 * a purpose's name ("popular_list", "similar_items", ...) files the release
 * under that purpose; any other label ("default", "other", a name given
 * with --dataset) files it under "queries". Labels are kept with each
 * release for the record; they never get a budget of their own.
 *
 * Stores made before the one-budget ledger kept a budget per label (table
 * dp_budget): until a store total is set, such a store's total reads as the
 * LARGEST of its old per-label totals (the old labels covered the same
 * shoppers, so their sum would count the same people again), and all its old
 * releases, of every label, count as spent against it. See docs/dp.md.
 *
 * Every charge is checked and recorded in one backend unit under the write
 * lock (the backend's ledger_charge with this file's decision callback), so
 * several processes racing on one data dir can never overspend.
 *
 * Composition is basic (sums of epsilon and of delta): it is valid for any
 * sequence of releases, adaptive or not. Tighter accounting of a family of
 * releases (e.g. the steps of DP training, via RDP) is done by the caller,
 * who charges the composed (epsilon, delta) as one release.
 *
 * The ledger functions run their own transactions: do not call them between
 * pvg_store_begin and pvg_store_commit.
 *
 * Comparisons use a relative slack of 1e-9 on the total so that a budget
 * spent in exact fractions (e.g. ten releases of 0.1 for a budget of 1)
 * is not refused by floating-point rounding of the sum.
 */
#ifndef PRIVGUIDE_LEDGER_H
#define PRIVGUIDE_LEDGER_H

#include <privguide/common.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* The label used when the caller names none (purpose "queries"). */
#define PVG_LEDGER_DEFAULT_DATASET "default"

/* The purposes: the fixed sub-accounts of the store's budget. */
typedef enum pvg_ledger_purpose {
    PVG_LEDGER_QUERIES = 0,        /* "queries": privguide query, any other label */
    PVG_LEDGER_POPULAR_LIST,       /* "popular_list": the DP popular list */
    PVG_LEDGER_SIMILAR_ITEMS,      /* "similar_items": DP similar items */
    PVG_LEDGER_SPEND_TOTALS,       /* "spend_totals": he spend-total with noise */
    PVG_LEDGER_MODEL_BUILDS,       /* "model_builds": DP model training */
    PVG_LEDGER_FEDERATED_TRAINING, /* "federated_training": federated DP training */
    PVG_LEDGER_N_PURPOSES
} pvg_ledger_purpose;

/* The purpose's name (static string; "?" out of range). */
const char *pvg_ledger_purpose_name(pvg_ledger_purpose p);

/* Parses a purpose name: 0 and *out set, or -1 when `name` is none of them. */
int pvg_ledger_purpose_parse(const char *name, pvg_ledger_purpose *out) PVG_WARN_UNUSED;

/* The purpose a charge under `label` is filed under: the purpose named
   `label`, or PVG_LEDGER_QUERIES for every other label (NULL included). */
pvg_ledger_purpose pvg_ledger_purpose_of_label(const char *label);

/* Charges (epsilon, delta) to the store's budget, filed under the purpose of
   the label `dataset` (pvg_ledger_purpose_of_label), and records the release
   (with its label) in the same unit under the write lock; refuses with
   PVG_ERR_BUDGET (err says what remains, and whether the purpose's cap or the
   store's total is what is short) when it would overspend either, or when no
   store total is set (say so). *release_id (may be NULL) gets the new
   release's id.
   Inputs: dataset (the label), what (a human description of the release,
   e.g. "count purchases by category") and mechanism (e.g.
   "discrete-laplace") are borrowed NUL-terminated strings; epsilon >= 0,
   0 <= delta < 1, finite.
   Errors: PVG_ERR_INVALID (bad argument), PVG_ERR_BUDGET, PVG_ERR_BUSY
   (database locked past the busy timeout), PVG_ERR_IO. Not thread-safe on
   one store; safe across processes. */
pvg_status pvg_ledger_charge(pvg_store *s, const char *dataset, const char *what,
                             const char *mechanism, double epsilon, double delta,
                             int64_t *release_id, pvg_error *err) PVG_WARN_UNUSED;

/* What the operator may set, and when --force (force = 1) is needed:
   - a total or a cap below what was already spent (by the store, by the
     purpose): always refused (PVG_ERR_BUDGET);
   - setting the store's first total, or a purpose's first cap at most the
     total, or re-setting the same values: allowed;
   - changing an existing total or cap (raising it hands out budget over
     shoppers already answered for; lowering it refuses releases that were
     expected to fit), removing a cap, or a cap above the store's total (it
     would cap nothing): refused with PVG_ERR_STATE unless force.
   Every attempt, allowed or not, is first written to the audit log (action
   "budget_set", subject "", detail "target=total|purpose:P epsilon=E
   delta=D previous=... spent=... force=F outcome=O") through the store's
   audit log; when that append fails nothing changes. The rules are checked
   again under the write lock when the change is applied: a charge that
   raced in between may still make it refused (the audit entry then records
   the attempt, the error the refusal).
   actor: who asks ("cli", "key:<id>"), borrowed. epsilon >= 0,
   0 <= delta < 1, finite.
   Errors: PVG_ERR_INVALID, PVG_ERR_BUDGET, PVG_ERR_STATE, PVG_ERR_BUSY,
   PVG_ERR_IO. */
pvg_status pvg_ledger_total_set(pvg_store *s, const char *actor, double epsilon, double delta,
                                int force, pvg_error *err) PVG_WARN_UNUSED;

/* Sets the cap of `purpose` (same rules and audit as pvg_ledger_total_set). */
pvg_status pvg_ledger_cap_set(pvg_store *s, const char *actor, pvg_ledger_purpose purpose,
                              double epsilon, double delta, int force,
                              pvg_error *err) PVG_WARN_UNUSED;

/* Removes the cap of `purpose` (it may then spend up to the store's total).
   Needs force when a cap is set (a removal loosens it); audited. */
pvg_status pvg_ledger_cap_clear(pvg_store *s, const char *actor, pvg_ledger_purpose purpose,
                                int force, pvg_error *err) PVG_WARN_UNUSED;

/* Source compatibility: sets the store's total as pvg_ledger_total_set with
   actor "library" and force; `dataset` only has to be a valid label (there
   is one budget per store). A total below what was spent is refused. */
pvg_status pvg_ledger_set_budget(pvg_store *s, const char *dataset, double epsilon, double delta,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* One purpose's account. */
typedef struct pvg_ledger_account {
    int has_cap;
    double cap_epsilon, cap_delta; /* valid when has_cap */
    double spent_epsilon, spent_delta;
    long long releases;
} pvg_ledger_account;

/* The store's budget: the total, what all releases spent, and each purpose. */
typedef struct pvg_ledger_state {
    int has_total; /* 0: no total set (every charge is refused) */
    int migrated;  /* 1: the total is read from a pre-purpose store's per-label budgets */
    double total_epsilon, total_delta; /* valid when has_total */
    double spent_epsilon, spent_delta;
    long long releases;
    pvg_ledger_account purposes[PVG_LEDGER_N_PURPOSES];
} pvg_ledger_state;

/* Fills *out with the store's budget state. Errors: PVG_ERR_IO. */
pvg_status pvg_ledger_state_get(pvg_store *s, pvg_ledger_state *out,
                                pvg_error *err) PVG_WARN_UNUSED;

typedef struct pvg_ledger_summary {
    double total_epsilon, total_delta, spent_epsilon, spent_delta;
    long long releases;
} pvg_ledger_summary;

/* Source compatibility: the store's total and what the whole store spent
   (`dataset` only has to be a valid label). Errors: PVG_ERR_NOT_FOUND when
   no total is set (out is then zeroed, except the spent figures and
   releases, which are still filled), PVG_ERR_IO. */
pvg_status pvg_ledger_summary_get(pvg_store *s, const char *dataset, pvg_ledger_summary *out,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* One recorded release, as shown to the listing callback. Strings are
   borrowed for the duration of the call. */
typedef struct pvg_ledger_release {
    int64_t id;
    const char *dataset; /* the label it was charged under */
    pvg_ledger_purpose purpose;
    const char *what;
    const char *mechanism;
    double epsilon, delta;
    int64_t created_at; /* seconds since the Unix epoch (pvg_store_now) */
} pvg_ledger_release;

/* Calls fn for every release under the label `dataset` (NULL: of every label) in id
   order. fn returns 0 to go on, non-zero to stop (returned as
   PVG_ERR_ABORTED). Errors: PVG_ERR_IO. */
pvg_status pvg_ledger_releases_foreach(pvg_store *s, const char *dataset,
                                       int (*fn)(void *ctx, const pvg_ledger_release *r), void *ctx,
                                       pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
