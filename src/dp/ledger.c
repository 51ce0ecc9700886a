/*
 * ledger.c - the privacy budget ledger, kept by the store's backend: one
 * total (epsilon, delta) per store, purposes as sub-accounts with optional
 * caps, and every release with its label, epsilon and delta.
 *
 * A charge is one backend unit (ledger_charge): under the write lock the
 * backend asks this file's decide(), which reads the whole ledger
 * (ledger_read) and says whether the release fits its purpose's cap and the
 * store's total; the backend then records it. Two processes therefore
 * serialise on the lock and the second sees the first's release before
 * deciding. Changes of the total or of a cap go the same way
 * (ledger_limit_set), after their audit entry.
 */
#include <privguide/audit.h>
#include <privguide/ledger.h>

#include "store/store_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define LEDGER_SLACK 1e-9

static const char *const PURPOSE_NAMES[PVG_LEDGER_N_PURPOSES] = {
    "queries",      "popular_list", "similar_items",
    "spend_totals", "model_builds", "federated_training",
};

const char *pvg_ledger_purpose_name(pvg_ledger_purpose p)
{
    return (int)p >= 0 && p < PVG_LEDGER_N_PURPOSES ? PURPOSE_NAMES[p] : "?";
}

int pvg_ledger_purpose_parse(const char *name, pvg_ledger_purpose *out)
{
    if (!name) return -1;
    for (int i = 0; i < PVG_LEDGER_N_PURPOSES; i++)
        if (strcmp(name, PURPOSE_NAMES[i]) == 0) {
            if (out) *out = (pvg_ledger_purpose)i;
            return 0;
        }
    return -1;
}

pvg_ledger_purpose pvg_ledger_purpose_of_label(const char *label)
{
    pvg_ledger_purpose p;
    return pvg_ledger_purpose_parse(label, &p) == 0 ? p : PVG_LEDGER_QUERIES;
}

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

/* 1 when spending `spent + add` stays within `limit` (with the slack). */
static int fits(double spent, double add, double limit)
{
    return spent + add <= limit * (1 + LEDGER_SLACK) + 1e-300;
}

/* ---- reading the state ---- */

static int state_row(void *ctx, const pvg_backend_ledger_row *r)
{
    pvg_ledger_state *st = ctx;
    pvg_ledger_purpose p;
    switch (r->kind) {
    case PVG_LEDGER_ROW_TOTAL:
        st->has_total = 1;
        st->migrated = r->migrated;
        st->total_epsilon = r->epsilon;
        st->total_delta = r->delta;
        break;
    case PVG_LEDGER_ROW_CAP:
        if (pvg_ledger_purpose_parse(r->name, &p) == 0) { /* a name from a later version: ignored */
            st->purposes[p].has_cap = 1;
            st->purposes[p].cap_epsilon = r->epsilon;
            st->purposes[p].cap_delta = r->delta;
        }
        break;
    case PVG_LEDGER_ROW_SPENT:
        p = pvg_ledger_purpose_of_label(r->name);
        st->purposes[p].spent_epsilon += r->epsilon;
        st->purposes[p].spent_delta += r->delta;
        st->purposes[p].releases += r->releases;
        st->spent_epsilon += r->epsilon;
        st->spent_delta += r->delta;
        st->releases += r->releases;
        break;
    }
    return 0;
}

static pvg_status read_state(pvg_backend *b, pvg_ledger_state *out, pvg_error *err)
{
    memset(out, 0, sizeof *out);
    return b->ops->ledger_read(b, state_row, out, err);
}

pvg_status pvg_ledger_state_get(pvg_store *s, pvg_ledger_state *out, pvg_error *err)
{
    if (!s || !out) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or output");
    return read_state(pvg_store_backend(s), out, err);
}

/* ---- charging ---- */

typedef struct charge_req {
    pvg_backend *b;
    const char *label;
    pvg_ledger_purpose purpose;
    double epsilon, delta;
} charge_req;

/* Decides, under the ledger's lock, whether the release fits its purpose's
   cap and the store's total. */
static pvg_status decide_charge(void *ctx, pvg_error *err)
{
    const charge_req *q = ctx;
    pvg_ledger_state sum;
    pvg_status st = read_state(q->b, &sum, err);
    if (st != PVG_OK) return st;
    if (!sum.has_total)
        return pvg_error_set(err, PVG_ERR_BUDGET,
                             "no privacy budget is set for this store (set its total with "
                             "`privguide budget set --epsilon E --delta D`)");
    if (!fits(sum.spent_epsilon, q->epsilon, sum.total_epsilon) ||
        !fits(sum.spent_delta, q->delta, sum.total_delta)) {
        double rem_e = sum.total_epsilon - sum.spent_epsilon;
        double rem_d = sum.total_delta - sum.spent_delta;
        return pvg_error_set(err, PVG_ERR_BUDGET,
                             "release (epsilon=%.6g, delta=%.6g) under '%s' (purpose %s) would "
                             "overspend the store's privacy budget (its total): remaining "
                             "epsilon=%.6g, delta=%.6g of "
                             "total (%.6g, %.6g)",
                             q->epsilon, q->delta, q->label, pvg_ledger_purpose_name(q->purpose),
                             rem_e > 0 ? rem_e : 0, rem_d > 0 ? rem_d : 0, sum.total_epsilon,
                             sum.total_delta);
    }
    const pvg_ledger_account *a = &sum.purposes[q->purpose];
    if (a->has_cap && (!fits(a->spent_epsilon, q->epsilon, a->cap_epsilon) ||
                       !fits(a->spent_delta, q->delta, a->cap_delta))) {
        double rem_e = a->cap_epsilon - a->spent_epsilon;
        double rem_d = a->cap_delta - a->spent_delta;
        return pvg_error_set(
            err, PVG_ERR_BUDGET,
            "release (epsilon=%.6g, delta=%.6g) under '%s' would overspend the "
            "privacy budget cap of purpose %s: remaining epsilon=%.6g, delta=%.6g of cap "
            "(%.6g, %.6g)",
            q->epsilon, q->delta, q->label, pvg_ledger_purpose_name(q->purpose),
            rem_e > 0 ? rem_e : 0, rem_d > 0 ? rem_d : 0, a->cap_epsilon, a->cap_delta);
    }
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
    if (!what || !*what)
        return pvg_error_set(err, PVG_ERR_INVALID, "ledger: release needs a description");
    if (!mechanism || !*mechanism)
        return pvg_error_set(err, PVG_ERR_INVALID, "ledger: release needs a mechanism name");
    pvg_backend *b = pvg_store_backend(s);
    charge_req q = {b, dataset, pvg_ledger_purpose_of_label(dataset), epsilon, delta};
    int64_t id = 0;
    st = b->ops->ledger_charge(b, dataset, what, mechanism, epsilon, delta, pvg_store_now(s),
                               decide_charge, &q, &id, err);
    if (st == PVG_OK && release_id) *release_id = id;
    return st;
}

/* ---- setting the total and the caps ---- */

typedef struct limit_req {
    pvg_backend *b;
    int purpose; /* -1: the store's total */
    int clear;
    double epsilon, delta;
    int force;
    /* filled by judge(): */
    const char *outcome;
    char previous[96];
    double spent_epsilon, spent_delta;
} limit_req;

/* The rules of pvg_ledger_total_set (ledger.h), applied to state `sum`. */
static pvg_status judge(limit_req *q, const pvg_ledger_state *sum, pvg_error *err)
{
    int is_total = q->purpose < 0;
    const pvg_ledger_account *a = is_total ? NULL : &sum->purposes[q->purpose];
    int has = is_total ? sum->has_total : a->has_cap;
    double cur_e = is_total ? sum->total_epsilon : a->cap_epsilon;
    double cur_d = is_total ? sum->total_delta : a->cap_delta;
    q->spent_epsilon = is_total ? sum->spent_epsilon : a->spent_epsilon;
    q->spent_delta = is_total ? sum->spent_delta : a->spent_delta;
    const char *name = is_total ? "the store's total" : "the cap of purpose";
    const char *pname = is_total ? "" : pvg_ledger_purpose_name((pvg_ledger_purpose)q->purpose);
    if (has)
        snprintf(q->previous, sizeof q->previous, "(%.9g,%.9g)%s", cur_e, cur_d,
                 is_total && sum->migrated ? "migrated" : "");
    else
        snprintf(q->previous, sizeof q->previous, "none");
    q->outcome = "allowed";
    if (q->clear) {
        if (has && !q->force) {
            q->outcome = "refused:needs_force";
            return pvg_error_set(err, PVG_ERR_STATE,
                                 "removing the cap (%.6g, %.6g) of purpose %s loosens it: pass "
                                 "--force to do so",
                                 cur_e, cur_d, pname);
        }
        if (has) q->outcome = "allowed:forced";
        return PVG_OK;
    }
    if (!fits(q->spent_epsilon, 0, q->epsilon) || !fits(q->spent_delta, 0, q->delta)) {
        q->outcome = "refused:below_spent";
        return pvg_error_set(err, PVG_ERR_BUDGET,
                             "%s%s%s cannot be set to (epsilon=%.6g, delta=%.6g): (%.6g, %.6g) "
                             "was spent already",
                             name, *pname ? " " : "", pname, q->epsilon, q->delta, q->spent_epsilon,
                             q->spent_delta);
    }
    int changes = has && (q->epsilon != cur_e || q->delta != cur_d);
    int above = !is_total && sum->has_total &&
                (q->epsilon > sum->total_epsilon || q->delta > sum->total_delta);
    if ((changes || above) && !q->force) {
        q->outcome = "refused:needs_force";
        if (changes)
            return pvg_error_set(
                err, PVG_ERR_STATE,
                "changing %s%s%s from (%.6g, %.6g) to (%.6g, %.6g) needs --force (raising it "
                "grants "
                "new budget over shoppers already answered for; lowering it refuses releases "
                "expected to fit)",
                name, *pname ? " " : "", pname, cur_e, cur_d, q->epsilon, q->delta);
        return pvg_error_set(err, PVG_ERR_STATE,
                             "a cap of (%.6g, %.6g) on purpose %s is above the store's total "
                             "(%.6g, %.6g) and would cap nothing: pass --force to set it anyway",
                             q->epsilon, q->delta, pname, sum->total_epsilon, sum->total_delta);
    }
    if (changes || above) q->outcome = "allowed:forced";
    return PVG_OK;
}

static pvg_status decide_limit(void *ctx, pvg_error *err)
{
    limit_req *q = ctx;
    pvg_ledger_state sum;
    pvg_status st = read_state(q->b, &sum, err);
    if (st != PVG_OK) return st;
    return judge(q, &sum, err);
}

/* Judges the request on the current state, writes the audit entry (the
   attempt and its outcome), then applies it under the lock (judged again). */
static pvg_status set_limit(pvg_store *s, const char *actor, limit_req *q, pvg_error *err)
{
    pvg_status st;
    if (!s) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store");
    if (!actor || !*actor)
        return pvg_error_set(err, PVG_ERR_INVALID, "ledger: budget change needs an actor");
    if (q->purpose >= PVG_LEDGER_N_PURPOSES)
        return pvg_error_set(err, PVG_ERR_INVALID, "ledger: purpose %d out of range", q->purpose);
    if (!q->clear && (st = check_pair(q->epsilon, q->delta, err)) != PVG_OK) return st;
    pvg_backend *b = pvg_store_backend(s);
    q->b = b;
    pvg_ledger_state sum;
    if ((st = read_state(b, &sum, err)) != PVG_OK) return st;
    pvg_error verdict;
    pvg_error_clear(&verdict);
    pvg_status judged = judge(q, &sum, &verdict);

    char target[64], detail[512];
    if (q->purpose < 0)
        snprintf(target, sizeof target, "total");
    else
        snprintf(target, sizeof target, "purpose:%s",
                 pvg_ledger_purpose_name((pvg_ledger_purpose)q->purpose));
    if (q->clear)
        snprintf(detail, sizeof detail,
                 "target=%s clear previous=%s spent=(%.9g,%.9g) force=%d outcome=%s", target,
                 q->previous, q->spent_epsilon, q->spent_delta, q->force, q->outcome);
    else
        snprintf(
            detail, sizeof detail,
            "target=%s epsilon=%.9g delta=%.9g previous=%s spent=(%.9g,%.9g) force=%d outcome=%s",
            target, q->epsilon, q->delta, q->previous, q->spent_epsilon, q->spent_delta, q->force,
            q->outcome);
    pvg_audit_record rec = {0, actor, "budget_set", "", detail};
    if ((st = pvg_audit_append(s, &rec, NULL, err)) != PVG_OK) return st;
    if (judged != PVG_OK) {
        if (err) *err = verdict;
        return judged;
    }
    return b->ops->ledger_limit_set(
        b, q->purpose < 0 ? NULL : pvg_ledger_purpose_name((pvg_ledger_purpose)q->purpose),
        q->epsilon, q->delta, q->clear, pvg_store_now(s), decide_limit, q, err);
}

pvg_status pvg_ledger_total_set(pvg_store *s, const char *actor, double epsilon, double delta,
                                int force, pvg_error *err)
{
    limit_req q = {.purpose = -1, .epsilon = epsilon, .delta = delta, .force = force != 0};
    return set_limit(s, actor, &q, err);
}

pvg_status pvg_ledger_cap_set(pvg_store *s, const char *actor, pvg_ledger_purpose purpose,
                              double epsilon, double delta, int force, pvg_error *err)
{
    if ((int)purpose < 0 || purpose >= PVG_LEDGER_N_PURPOSES)
        return pvg_error_set(err, PVG_ERR_INVALID, "ledger: purpose %d out of range", (int)purpose);
    limit_req q = {
        .purpose = (int)purpose, .epsilon = epsilon, .delta = delta, .force = force != 0};
    return set_limit(s, actor, &q, err);
}

pvg_status pvg_ledger_cap_clear(pvg_store *s, const char *actor, pvg_ledger_purpose purpose,
                                int force, pvg_error *err)
{
    if ((int)purpose < 0 || purpose >= PVG_LEDGER_N_PURPOSES)
        return pvg_error_set(err, PVG_ERR_INVALID, "ledger: purpose %d out of range", (int)purpose);
    limit_req q = {.purpose = (int)purpose, .clear = 1, .force = force != 0};
    return set_limit(s, actor, &q, err);
}

pvg_status pvg_ledger_set_budget(pvg_store *s, const char *dataset, double epsilon, double delta,
                                 pvg_error *err)
{
    pvg_status st = check_name(dataset, err);
    if (st != PVG_OK) return st;
    return pvg_ledger_total_set(s, "library", epsilon, delta, 1, err);
}

pvg_status pvg_ledger_summary_get(pvg_store *s, const char *dataset, pvg_ledger_summary *out,
                                  pvg_error *err)
{
    pvg_status st;
    if (!s || !out) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or output");
    if ((st = check_name(dataset, err)) != PVG_OK) return st;
    pvg_ledger_state sum;
    memset(out, 0, sizeof *out);
    if ((st = read_state(pvg_store_backend(s), &sum, err)) != PVG_OK) return st;
    out->spent_epsilon = sum.spent_epsilon;
    out->spent_delta = sum.spent_delta;
    out->releases = sum.releases;
    if (!sum.has_total)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no privacy budget is set for this store");
    out->total_epsilon = sum.total_epsilon;
    out->total_delta = sum.total_delta;
    return PVG_OK;
}

/* ---- listing ---- */

typedef struct release_tramp {
    int (*fn)(void *ctx, const pvg_ledger_release *r);
    void *ctx;
} release_tramp;

static int with_purpose(void *ctx, const pvg_ledger_release *r)
{
    const release_tramp *t = ctx;
    pvg_ledger_release c = *r;
    c.purpose = pvg_ledger_purpose_of_label(r->dataset);
    return t->fn(t->ctx, &c);
}

pvg_status pvg_ledger_releases_foreach(pvg_store *s, const char *dataset,
                                       int (*fn)(void *ctx, const pvg_ledger_release *r), void *ctx,
                                       pvg_error *err)
{
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or callback");
    pvg_backend *b = pvg_store_backend(s);
    release_tramp t = {fn, ctx};
    pvg_status st = b->ops->releases_foreach(b, dataset, with_purpose, &t, err);
    if (st == PVG_ERR_ABORTED)
        st = pvg_error_set(err, PVG_ERR_ABORTED, "ledger: listing stopped by the caller");
    return st;
}
