/*
 * ledger.c - the privacy budget ledger, kept by the store's backend
 * (budgets per dataset, and every release with its epsilon and delta).
 *
 * A charge is one backend unit (ledger_charge): under the write lock it
 * reads the budget and the spent sums, asks this file whether the release
 * fits, and records it. Two processes therefore serialise on the lock and
 * the second sees the first's release before deciding.
 */
#include <privguide/ledger.h>

#include "store/store_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define LEDGER_SLACK 1e-9

static pvg_status check_pair(double epsilon, double delta, pvg_error *err)
{
    if (!isfinite(epsilon) || epsilon < 0)
        return pvg_error_set(err, PVG_ERR_INVALID, "epsilon must be a finite number >= 0, got %g",
                             epsilon);
    if (!isfinite(delta) || delta < 0 || delta >= 1)
        return pvg_error_set(err, PVG_ERR_INVALID, "delta must be in [0, 1), got %g", delta);
    return PVG_OK;
}

static pvg_status check_name(const char *dataset, pvg_error *err)
{
    if (!dataset || !*dataset)
        return pvg_error_set(err, PVG_ERR_INVALID, "dataset name must not be empty");
    if (strlen(dataset) > 200)
        return pvg_error_set(err, PVG_ERR_INVALID, "dataset name longer than 200 bytes");
    return PVG_OK;
}

typedef struct charge_req {
    const char *dataset;
    double epsilon, delta;
} charge_req;

/* Decides, under the ledger's lock, whether the release fits the budget. */
static pvg_status decide(void *ctx, int found, const pvg_ledger_summary *sum, pvg_error *err)
{
    const charge_req *q = ctx;
    if (!found)
        return pvg_error_set(err, PVG_ERR_BUDGET,
                             "no privacy budget is set for dataset '%s' (set one with "
                             "`privguide budget set --dataset %s --epsilon E --delta D`)",
                             q->dataset, q->dataset);
    double rem_e = sum->total_epsilon - sum->spent_epsilon;
    double rem_d = sum->total_delta - sum->spent_delta;
    if (sum->spent_epsilon + q->epsilon > sum->total_epsilon * (1 + LEDGER_SLACK) + 1e-300 ||
        sum->spent_delta + q->delta > sum->total_delta * (1 + LEDGER_SLACK) + 1e-300)
        return pvg_error_set(err, PVG_ERR_BUDGET,
                             "release (epsilon=%.6g, delta=%.6g) would overspend dataset '%s': "
                             "remaining epsilon=%.6g, delta=%.6g of total (%.6g, %.6g)",
                             q->epsilon, q->delta, q->dataset, rem_e > 0 ? rem_e : 0,
                             rem_d > 0 ? rem_d : 0, sum->total_epsilon, sum->total_delta);
    return PVG_OK;
}

pvg_status pvg_ledger_charge(pvg_store *s, const char *dataset, const char *what,
                             const char *mechanism, double epsilon, double delta,
                             int64_t *release_id, pvg_error *err)
{
    pvg_status st;
    if (!s) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store");
    if ((st = check_name(dataset, err)) != PVG_OK) return st;
    if ((st = check_pair(epsilon, delta, err)) != PVG_OK) return st;
    if (!what || !*what) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: release needs a description");
    if (!mechanism || !*mechanism)
        return pvg_error_set(err, PVG_ERR_INVALID, "ledger: release needs a mechanism name");
    pvg_backend *b = pvg_store_backend(s);
    charge_req q = {dataset, epsilon, delta};
    int64_t id = 0;
    st = b->ops->ledger_charge(b, dataset, what, mechanism, epsilon, delta, pvg_store_now(s), decide, &q,
                               &id, err);
    if (st == PVG_OK && release_id) *release_id = id;
    return st;
}

pvg_status pvg_ledger_set_budget(pvg_store *s, const char *dataset, double epsilon, double delta,
                                 pvg_error *err)
{
    pvg_status st;
    if (!s) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store");
    if ((st = check_name(dataset, err)) != PVG_OK) return st;
    if ((st = check_pair(epsilon, delta, err)) != PVG_OK) return st;
    pvg_backend *b = pvg_store_backend(s);
    return b->ops->budget_set(b, dataset, epsilon, delta, pvg_store_now(s), err);
}

pvg_status pvg_ledger_summary_get(pvg_store *s, const char *dataset, pvg_ledger_summary *out,
                                  pvg_error *err)
{
    pvg_status st;
    if (!s || !out) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or output");
    if ((st = check_name(dataset, err)) != PVG_OK) return st;
    int found = 0;
    pvg_backend *b = pvg_store_backend(s);
    if ((st = b->ops->budget_get(b, dataset, &found, out, err)) != PVG_OK) return st;
    if (!found)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no privacy budget is set for dataset '%s'",
                             dataset);
    return PVG_OK;
}

pvg_status pvg_ledger_releases_foreach(pvg_store *s, const char *dataset,
                                       int (*fn)(void *ctx, const pvg_ledger_release *r),
                                       void *ctx, pvg_error *err)
{
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or callback");
    pvg_backend *b = pvg_store_backend(s);
    pvg_status st = b->ops->releases_foreach(b, dataset, fn, ctx, err);
    if (st == PVG_ERR_ABORTED) st = pvg_error_set(err, PVG_ERR_ABORTED, "ledger: listing stopped by the caller");
    return st;
}

pvg_status pvg_ledger_datasets_foreach(pvg_store *s,
                                       int (*fn)(void *ctx, const char *dataset,
                                                 const pvg_ledger_summary *sum),
                                       void *ctx, pvg_error *err)
{
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or callback");
    pvg_backend *b = pvg_store_backend(s);
    pvg_status st = b->ops->datasets_foreach(b, fn, ctx, err);
    if (st == PVG_ERR_ABORTED) st = pvg_error_set(err, PVG_ERR_ABORTED, "ledger: listing stopped by the caller");
    return st;
}
