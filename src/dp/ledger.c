/*
 * ledger.c - the privacy budget ledger in the store's SQLite database.
 *
 * Tables (created on first use):
 *   dp_budget(dataset PRIMARY KEY, total_epsilon, total_delta, updated_at)
 *   dp_release(id, dataset, what, mechanism, epsilon, delta, created_at)
 * A charge runs BEGIN IMMEDIATE (takes the database write lock at once),
 * reads the budget and the spent sums, refuses or inserts the release, and
 * commits. Two processes therefore serialise on the lock and the second
 * sees the first's release before deciding.
 */
#include <privguide/ledger.h>

#include "store/store_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define LEDGER_SLACK 1e-9

static const char *k_schema =
    "CREATE TABLE IF NOT EXISTS dp_budget("
    " dataset TEXT PRIMARY KEY NOT NULL,"
    " total_epsilon REAL NOT NULL, total_delta REAL NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dp_release("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " dataset TEXT NOT NULL, what TEXT NOT NULL, mechanism TEXT NOT NULL,"
    " epsilon REAL NOT NULL, delta REAL NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS dp_release_dataset ON dp_release(dataset, id);";

static pvg_status ledger_schema(pvg_store *s, pvg_error *err)
{
    return pvg_store_exec(s, k_schema, err);
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

/* Reads budget (found=0 when none) and spent sums of one dataset. */
static pvg_status read_state(pvg_store *s, const char *dataset, int *found,
                             pvg_ledger_summary *out, pvg_error *err)
{
    sqlite3 *db = pvg_store_sqlite(s);
    sqlite3_stmt *st = NULL;
    memset(out, 0, sizeof *out);
    *found = 0;
    int rc = sqlite3_prepare_v2(
        db, "SELECT total_epsilon, total_delta FROM dp_budget WHERE dataset = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "ledger: read budget", err);
    sqlite3_bind_text(st, 1, dataset, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *found = 1;
        out->total_epsilon = sqlite3_column_double(st, 0);
        out->total_delta = sqlite3_column_double(st, 1);
    } else if (rc != SQLITE_DONE) {
        sqlite3_finalize(st);
        return pvg_store_sqlite_error(s, rc, "ledger: read budget", err);
    }
    sqlite3_finalize(st);
    rc = sqlite3_prepare_v2(db,
                            "SELECT COUNT(*), TOTAL(epsilon), TOTAL(delta) FROM dp_release "
                            "WHERE dataset = ?1",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "ledger: read releases", err);
    sqlite3_bind_text(st, 1, dataset, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return pvg_store_sqlite_error(s, rc, "ledger: read releases", err);
    }
    out->releases = sqlite3_column_int64(st, 0);
    out->spent_epsilon = sqlite3_column_double(st, 1);
    out->spent_delta = sqlite3_column_double(st, 2);
    sqlite3_finalize(st);
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
    if ((st = ledger_schema(s, err)) != PVG_OK) return st;
    if ((st = pvg_store_exec(s, "BEGIN IMMEDIATE", err)) != PVG_OK) return st;

    pvg_ledger_summary sum;
    int found = 0;
    if ((st = read_state(s, dataset, &found, &sum, err)) != PVG_OK) goto fail;
    if (!found) {
        st = pvg_error_set(err, PVG_ERR_BUDGET,
                           "no privacy budget is set for dataset '%s' (set one with "
                           "`privguide budget set --dataset %s --epsilon E --delta D`)",
                           dataset, dataset);
        goto fail;
    }
    double rem_e = sum.total_epsilon - sum.spent_epsilon;
    double rem_d = sum.total_delta - sum.spent_delta;
    if (sum.spent_epsilon + epsilon > sum.total_epsilon * (1 + LEDGER_SLACK) + 1e-300 ||
        sum.spent_delta + delta > sum.total_delta * (1 + LEDGER_SLACK) + 1e-300) {
        st = pvg_error_set(err, PVG_ERR_BUDGET,
                           "release (epsilon=%.6g, delta=%.6g) would overspend dataset '%s': "
                           "remaining epsilon=%.6g, delta=%.6g of total (%.6g, %.6g)",
                           epsilon, delta, dataset, rem_e > 0 ? rem_e : 0, rem_d > 0 ? rem_d : 0,
                           sum.total_epsilon, sum.total_delta);
        goto fail;
    }
    sqlite3 *db = pvg_store_sqlite(s);
    sqlite3_stmt *ins = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO dp_release(dataset, what, mechanism, epsilon, delta, "
                                "created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                                -1, &ins, NULL);
    if (rc != SQLITE_OK) {
        st = pvg_store_sqlite_error(s, rc, "ledger: record release", err);
        goto fail;
    }
    sqlite3_bind_text(ins, 1, dataset, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, what, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, mechanism, -1, SQLITE_STATIC);
    sqlite3_bind_double(ins, 4, epsilon);
    sqlite3_bind_double(ins, 5, delta);
    sqlite3_bind_int64(ins, 6, pvg_store_now(s));
    rc = sqlite3_step(ins);
    sqlite3_finalize(ins);
    if (rc != SQLITE_DONE) {
        st = pvg_store_sqlite_error(s, rc, "ledger: record release", err);
        goto fail;
    }
    int64_t id = sqlite3_last_insert_rowid(db);
    if ((st = pvg_store_exec(s, "COMMIT", err)) != PVG_OK) goto fail;
    if (release_id) *release_id = id;
    return PVG_OK;
fail:
    pvg_store_exec(s, "ROLLBACK", NULL);
    return st;
}

pvg_status pvg_ledger_set_budget(pvg_store *s, const char *dataset, double epsilon, double delta,
                                 pvg_error *err)
{
    pvg_status st;
    if (!s) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store");
    if ((st = check_name(dataset, err)) != PVG_OK) return st;
    if ((st = check_pair(epsilon, delta, err)) != PVG_OK) return st;
    if ((st = ledger_schema(s, err)) != PVG_OK) return st;
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(pvg_store_sqlite(s),
                                "INSERT INTO dp_budget(dataset, total_epsilon, total_delta, "
                                "updated_at) VALUES(?1, ?2, ?3, ?4) ON CONFLICT(dataset) DO UPDATE "
                                "SET total_epsilon = ?2, total_delta = ?3, updated_at = ?4",
                                -1, &q, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "ledger: set budget", err);
    sqlite3_bind_text(q, 1, dataset, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 2, epsilon);
    sqlite3_bind_double(q, 3, delta);
    sqlite3_bind_int64(q, 4, pvg_store_now(s));
    rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return pvg_store_sqlite_error(s, rc, "ledger: set budget", err);
    return PVG_OK;
}

pvg_status pvg_ledger_summary_get(pvg_store *s, const char *dataset, pvg_ledger_summary *out,
                                  pvg_error *err)
{
    pvg_status st;
    if (!s || !out) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or output");
    if ((st = check_name(dataset, err)) != PVG_OK) return st;
    if ((st = ledger_schema(s, err)) != PVG_OK) return st;
    int found = 0;
    if ((st = read_state(s, dataset, &found, out, err)) != PVG_OK) return st;
    if (!found)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no privacy budget is set for dataset '%s'",
                             dataset);
    return PVG_OK;
}

pvg_status pvg_ledger_releases_foreach(pvg_store *s, const char *dataset,
                                       int (*fn)(void *ctx, const pvg_ledger_release *r),
                                       void *ctx, pvg_error *err)
{
    pvg_status st;
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or callback");
    if ((st = ledger_schema(s, err)) != PVG_OK) return st;
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(pvg_store_sqlite(s),
                                "SELECT id, dataset, what, mechanism, epsilon, delta, created_at "
                                "FROM dp_release WHERE ?1 IS NULL OR dataset = ?1 ORDER BY id",
                                -1, &q, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "ledger: list releases", err);
    if (dataset) sqlite3_bind_text(q, 1, dataset, -1, SQLITE_STATIC);
    st = PVG_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pvg_ledger_release r;
        r.id = sqlite3_column_int64(q, 0);
        r.dataset = (const char *)sqlite3_column_text(q, 1);
        r.what = (const char *)sqlite3_column_text(q, 2);
        r.mechanism = (const char *)sqlite3_column_text(q, 3);
        r.epsilon = sqlite3_column_double(q, 4);
        r.delta = sqlite3_column_double(q, 5);
        r.created_at = sqlite3_column_int64(q, 6);
        if (fn(ctx, &r)) {
            st = pvg_error_set(err, PVG_ERR_ABORTED, "ledger: listing stopped by the caller");
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = pvg_store_sqlite_error(s, rc, "ledger: list releases", err);
    sqlite3_finalize(q);
    return st;
}

pvg_status pvg_ledger_datasets_foreach(pvg_store *s,
                                       int (*fn)(void *ctx, const char *dataset,
                                                 const pvg_ledger_summary *sum),
                                       void *ctx, pvg_error *err)
{
    pvg_status st;
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "ledger: no store or callback");
    if ((st = ledger_schema(s, err)) != PVG_OK) return st;
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(
        pvg_store_sqlite(s),
        "SELECT b.dataset, b.total_epsilon, b.total_delta,"
        " (SELECT COUNT(*) FROM dp_release r WHERE r.dataset = b.dataset),"
        " (SELECT TOTAL(epsilon) FROM dp_release r WHERE r.dataset = b.dataset),"
        " (SELECT TOTAL(delta) FROM dp_release r WHERE r.dataset = b.dataset)"
        " FROM dp_budget b ORDER BY b.dataset",
        -1, &q, NULL);
    if (rc != SQLITE_OK) return pvg_store_sqlite_error(s, rc, "ledger: list datasets", err);
    st = PVG_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pvg_ledger_summary sum;
        sum.total_epsilon = sqlite3_column_double(q, 1);
        sum.total_delta = sqlite3_column_double(q, 2);
        sum.releases = sqlite3_column_int64(q, 3);
        sum.spent_epsilon = sqlite3_column_double(q, 4);
        sum.spent_delta = sqlite3_column_double(q, 5);
        if (fn(ctx, (const char *)sqlite3_column_text(q, 0), &sum)) {
            st = pvg_error_set(err, PVG_ERR_ABORTED, "ledger: listing stopped by the caller");
            break;
        }
    }
    if (st == PVG_OK && rc != SQLITE_DONE) st = pvg_store_sqlite_error(s, rc, "ledger: list datasets", err);
    sqlite3_finalize(q);
    return st;
}
