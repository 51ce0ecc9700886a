/*
 * privguide/ledger.h - the privacy budget ledger.
 *
 * One ledger per dataset name, kept in the store's database (privguide.db,
 * tables dp_budget and dp_release). The operator sets a total (epsilon,
 * delta) budget; every differentially private release is charged with its
 * (epsilon, delta) in the same SQLite IMMEDIATE transaction that records the
 * release, before any result leaves the library. A charge that would take
 * the spent total past the budget is refused, so several processes racing
 * on one data dir can never overspend (the write lock serialises them).
 *
 * Composition is basic (sums of epsilon and of delta): it is valid for any
 * sequence of releases, adaptive or not. Tighter accounting of a family of
 * releases (e.g. the steps of DP training, via RDP) is done by the caller,
 * who charges the composed (epsilon, delta) as one release.
 *
 * The ledger functions run their own transactions: do not call them between
 * pvg_store_begin and pvg_store_commit (the charge would fail with the
 * store's error for a nested transaction).
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

/* The dataset name used when the caller names none. */
#define PVG_LEDGER_DEFAULT_DATASET "default"

/* Charges (epsilon, delta) to the ledger of `dataset` and records the release
   in the same IMMEDIATE transaction; refuses with PVG_ERR_BUDGET (err says what
   remains) when it would overspend or when no budget is set for the dataset
   (say so). *release_id (may be NULL) gets the new release's id.
   Inputs: dataset, what (a human description of the release, e.g. "count
   purchases by category") and mechanism (e.g. "discrete-laplace") are
   borrowed NUL-terminated strings; epsilon >= 0, 0 <= delta < 1, finite.
   Errors: PVG_ERR_INVALID (bad argument), PVG_ERR_BUDGET, PVG_ERR_BUSY
   (database locked past the busy timeout), PVG_ERR_IO. Not thread-safe on
   one store; safe across processes. */
pvg_status pvg_ledger_charge(pvg_store *s, const char *dataset, const char *what,
                             const char *mechanism, double epsilon, double delta,
                             int64_t *release_id, pvg_error *err) PVG_WARN_UNUSED;

/* Sets (or replaces) the total budget of `dataset`. A new total below what
   is already spent is accepted (it freezes the dataset: every later charge
   is refused) and recorded. epsilon >= 0, 0 <= delta < 1, finite.
   Errors: PVG_ERR_INVALID, PVG_ERR_BUSY, PVG_ERR_IO. */
pvg_status pvg_ledger_set_budget(pvg_store *s, const char *dataset, double epsilon, double delta,
                                 pvg_error *err);

typedef struct pvg_ledger_summary {
    double total_epsilon, total_delta, spent_epsilon, spent_delta;
    long long releases;
} pvg_ledger_summary;

/* Fills *out with the budget and what was spent on `dataset`.
   Errors: PVG_ERR_NOT_FOUND when no budget is set for the dataset (out is
   then zeroed, except the spent figures and releases, which are still
   filled), PVG_ERR_IO. */
pvg_status pvg_ledger_summary_get(pvg_store *s, const char *dataset, pvg_ledger_summary *out,
                                  pvg_error *err);

/* One recorded release, as shown to the listing callback. Strings are
   borrowed for the duration of the call. */
typedef struct pvg_ledger_release {
    int64_t id;
    const char *dataset;
    const char *what;
    const char *mechanism;
    double epsilon, delta;
    int64_t created_at; /* seconds since the Unix epoch (pvg_store_now) */
} pvg_ledger_release;

/* Calls fn for every release of `dataset` (NULL: of every dataset) in id
   order. fn returns 0 to go on, non-zero to stop (returned as
   PVG_ERR_ABORTED). Errors: PVG_ERR_IO. */
pvg_status pvg_ledger_releases_foreach(pvg_store *s, const char *dataset,
                                       int (*fn)(void *ctx, const pvg_ledger_release *r),
                                       void *ctx, pvg_error *err);

/* Calls fn for every dataset that has a budget, in name order, with its
   summary. fn returns 0 to go on, non-zero to stop (PVG_ERR_ABORTED). */
pvg_status pvg_ledger_datasets_foreach(pvg_store *s,
                                       int (*fn)(void *ctx, const char *dataset,
                                                 const pvg_ledger_summary *sum),
                                       void *ctx, pvg_error *err);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
