/*
 * test_dp_ledger.c - the budget ledger and the DP query engine on a real
 * store: refusals (no budget, overspend) with what remains, exact fractions,
 * listings, one budget per store whatever the label (finding 6 of issue
 * 11), purpose caps, the rules and audit of budget changes, the migration
 * of pre-purpose stores, the 8-process races (one label, mixed purposes)
 * that must never overspend, and user-level queries (contribution bounds,
 * consent, partition selection, charging).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/audit.h>
#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/query.h>
#include <privguide/store.h>

#include <math.h>
#include <sqlite3.h>

#include "t_rawdb.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *make_store(void)
{
    char tmpl[] = "/tmp/pvg_dp_ledger_XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *dir = malloc(strlen(d) + 8);
    sprintf(dir, "%s/data", d);
    pvg_error err;
    pvg_status st = pvg_store_init(dir, NULL, &err);
    if (st != PVG_OK) print_error("init: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    return dir;
}

static void rm_store(char *dir)
{
    char cmd[600];
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
    free(dir);
}

static int stop_cb(void *ctx, const pvg_ledger_release *r)
{
    (*(int *)ctx)++;
    return 1;
}

static void ledger_basics(void **state)
{
    char *dir = make_store();
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    int64_t id = 0;
    /* no budget: refused, and says so */
    assert_int_equal(pvg_ledger_charge(s, "shop", "q", "m", 0.1, 0, &id, &err), PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "no privacy budget"));
    assert_int_equal(pvg_ledger_set_budget(s, "shop", 1.0, 1e-5, &err), PVG_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            pvg_ledger_charge(s, "shop", "count", "discrete-laplace", 0.3, 2e-6, &id, &err),
            PVG_OK);
    assert_true(id == 3);
    /* overspend: refused, says what remains, records nothing */
    assert_int_equal(pvg_ledger_charge(s, "shop", "sum", "discrete-laplace", 0.3, 0, &id, &err),
                     PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "remaining epsilon=0.1"));
    assert_int_equal(pvg_ledger_charge(s, "shop", "sum", "g", 0.05, 5e-6, &id, &err),
                     PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "delta"));
    pvg_ledger_summary sum;
    assert_int_equal(pvg_ledger_summary_get(s, "shop", &sum, &err), PVG_OK);
    assert_true(sum.releases == 3);
    assert_true(fabs(sum.spent_epsilon - 0.9) < 1e-12 && fabs(sum.spent_delta - 6e-6) < 1e-18);
    /* bad arguments */
    assert_int_equal(pvg_ledger_charge(s, "shop", "q", "m", -1, 0, NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_charge(s, "shop", "q", "m", NAN, 0, NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_charge(s, "", "q", "m", 0.1, 0, NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_set_budget(s, "x", 1, 1.5, &err), PVG_ERR_INVALID);
    /* every label reads the one store budget */
    assert_int_equal(pvg_ledger_summary_get(s, "nothing", &sum, &err), PVG_OK);
    assert_true(sum.releases == 3 && sum.total_epsilon == 1.0);
    /* a total below what was spent is refused, even by the compatibility call */
    assert_int_equal(pvg_ledger_set_budget(s, "shop", 0.5, 1e-5, &err), PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "spent"));
    int seen = 0;
    assert_int_equal(pvg_ledger_releases_foreach(s, "shop", stop_cb, &seen, &err), PVG_ERR_ABORTED);
    assert_int_equal(seen, 1);
    pvg_store_free(s);
    /* persisted across connections */
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    assert_int_equal(pvg_ledger_summary_get(s, "shop", &sum, &err), PVG_OK);
    assert_true(sum.releases == 3);
    pvg_store_free(s);
    rm_store(dir);
    /* spending exactly to the total in fractions is allowed */
    dir = make_store();
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    assert_int_equal(pvg_ledger_total_set(s, "test", 1.0, 0, 0, &err), PVG_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pvg_ledger_charge(s, "tenths", "q", "m", 0.1, 0, NULL, &err), PVG_OK);
    assert_int_equal(pvg_ledger_charge(s, "tenths", "q", "m", 1e-6, 0, NULL, &err), PVG_ERR_BUDGET);
    pvg_store_free(s);
    rm_store(dir);
}

/* Finding 6 of issue 11: after `default` was spent, another label (and the
 * popular list, similar items and spend totals, which charged labels of their
 * own) must not get a fresh budget over the same shoppers. On the per-label
 * ledger, set_budget("other") gave "other" its own total and the charge went
 * through. */
static void ledger_one_budget_per_store(void **state)
{
    char *dir = make_store();
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    assert_int_equal(pvg_ledger_set_budget(s, "default", 1.0, 1e-6, &err), PVG_OK);
    assert_int_equal(
        pvg_ledger_charge(s, "default", "count", "discrete-laplace", 1.0, 0, NULL, &err), PVG_OK);
    /* the operator "sets a budget" for another label: it is the same store total */
    assert_int_equal(pvg_ledger_set_budget(s, "other", 1.0, 1e-6, &err), PVG_OK);
    static const char *labels[] = {"other",        "popular_list", "similar_items",
                                   "spend_totals", "model_builds", "federated_training",
                                   "he-test"};
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        assert_int_equal(pvg_ledger_charge(s, labels[i], "q", "m", 0.1, 0, NULL, &err),
                         PVG_ERR_BUDGET);
        assert_non_null(strstr(err.text, "store's privacy budget"));
    }
    pvg_ledger_state st;
    assert_int_equal(pvg_ledger_state_get(s, &st, &err), PVG_OK);
    assert_true(st.has_total && !st.migrated && st.total_epsilon == 1.0 && st.releases == 1);
    assert_true(st.purposes[PVG_LEDGER_QUERIES].releases == 1);
    /* labels map to purposes: the fixed list, any other label is "queries" */
    assert_int_equal(pvg_ledger_purpose_of_label("popular_list"), PVG_LEDGER_POPULAR_LIST);
    assert_int_equal(pvg_ledger_purpose_of_label("similar_items"), PVG_LEDGER_SIMILAR_ITEMS);
    assert_int_equal(pvg_ledger_purpose_of_label("spend_totals"), PVG_LEDGER_SPEND_TOTALS);
    assert_int_equal(pvg_ledger_purpose_of_label("model_builds"), PVG_LEDGER_MODEL_BUILDS);
    assert_int_equal(pvg_ledger_purpose_of_label("federated_training"),
                     PVG_LEDGER_FEDERATED_TRAINING);
    assert_int_equal(pvg_ledger_purpose_of_label("default"), PVG_LEDGER_QUERIES);
    assert_int_equal(pvg_ledger_purpose_of_label(NULL), PVG_LEDGER_QUERIES);
    assert_string_equal(pvg_ledger_purpose_name(PVG_LEDGER_SPEND_TOTALS), "spend_totals");
    pvg_store_free(s);
    rm_store(dir);
}

typedef struct audit_seen {
    int n;
    char last[600];
} audit_seen;

static int audit_cb(void *ctx, const pvg_audit_entry *e)
{
    audit_seen *a = ctx;
    if (strcmp(e->action, "budget_set") != 0) return 0;
    a->n++;
    snprintf(a->last, sizeof a->last, "%s|%s", e->actor, e->detail);
    return 0;
}

static audit_seen audits(pvg_store *s)
{
    audit_seen a;
    memset(&a, 0, sizeof a);
    pvg_error err;
    assert_int_equal(pvg_audit_foreach(s, 1, 0, audit_cb, &a, &err), PVG_OK);
    return a;
}

/* Caps per purpose, the rules of budget changes (refused below spent, --force
 * for the surprising ones) and their audit entries. */
static void ledger_caps_and_changes(void **state)
{
    char *dir = make_store();
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    /* no total: refused, says so */
    assert_int_equal(pvg_ledger_charge(s, "popular_list", "q", "m", 0.1, 0, NULL, &err),
                     PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "no privacy budget"));
    assert_int_equal(pvg_ledger_total_set(s, "cli", 2.0, 1e-6, 0, &err), PVG_OK);
    assert_int_equal(audits(s).n, 1);
    assert_non_null(strstr(audits(s).last, "cli|target=total epsilon=2 delta=1e-06 previous=none"));
    assert_non_null(strstr(audits(s).last, "outcome=allowed"));
    /* the same values again: not a change */
    assert_int_equal(pvg_ledger_total_set(s, "cli", 2.0, 1e-6, 0, &err), PVG_OK);
    /* a first cap, at most the total */
    assert_int_equal(pvg_ledger_cap_set(s, "cli", PVG_LEDGER_POPULAR_LIST, 0.5, 0, 0, &err),
                     PVG_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pvg_ledger_charge(s, "popular_list", "top-k", "m", 0.1, 0, NULL, &err),
                         PVG_OK);
    assert_int_equal(pvg_ledger_charge(s, "popular_list", "top-k", "m", 0.1, 0, NULL, &err),
                     PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "budget cap of purpose popular_list"));
    /* other purposes still have the rest of the total */
    assert_int_equal(pvg_ledger_charge(s, "default", "count", "m", 1.5, 0, NULL, &err), PVG_OK);
    assert_int_equal(pvg_ledger_charge(s, "spend_totals", "sum", "m", 0.01, 0, NULL, &err),
                     PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "store's privacy budget"));
    pvg_ledger_state st;
    assert_int_equal(pvg_ledger_state_get(s, &st, &err), PVG_OK);
    assert_true(fabs(st.spent_epsilon - 2.0) < 1e-12 && st.releases == 6);
    assert_true(st.purposes[PVG_LEDGER_POPULAR_LIST].has_cap &&
                st.purposes[PVG_LEDGER_POPULAR_LIST].releases == 5);
    assert_true(!st.purposes[PVG_LEDGER_QUERIES].has_cap);
    int before = audits(s).n;
    /* below spent: refused even with force, and audited */
    assert_int_equal(pvg_ledger_total_set(s, "cli", 1.0, 1e-6, 1, &err), PVG_ERR_BUDGET);
    assert_int_equal(audits(s).n, before + 1);
    assert_non_null(strstr(audits(s).last, "outcome=refused:below_spent"));
    assert_int_equal(pvg_ledger_cap_set(s, "cli", PVG_LEDGER_POPULAR_LIST, 0.3, 0, 1, &err),
                     PVG_ERR_BUDGET);
    /* raising the total once spent: needs force */
    assert_int_equal(pvg_ledger_total_set(s, "cli", 3.0, 1e-6, 0, &err), PVG_ERR_STATE);
    assert_non_null(strstr(err.text, "--force"));
    assert_non_null(strstr(audits(s).last, "outcome=refused:needs_force"));
    assert_int_equal(pvg_ledger_state_get(s, &st, &err), PVG_OK);
    assert_true(st.total_epsilon == 2.0);
    assert_int_equal(pvg_ledger_total_set(s, "key:abc", 3.0, 1e-6, 1, &err), PVG_OK);
    assert_non_null(strstr(audits(s).last, "key:abc|target=total epsilon=3"));
    assert_non_null(strstr(audits(s).last, "outcome=allowed:forced"));
    /* changing a cap, a cap above the total, removing a cap: force */
    assert_int_equal(pvg_ledger_cap_set(s, "cli", PVG_LEDGER_POPULAR_LIST, 0.8, 0, 0, &err),
                     PVG_ERR_STATE);
    assert_int_equal(pvg_ledger_cap_set(s, "cli", PVG_LEDGER_SIMILAR_ITEMS, 4.0, 0, 0, &err),
                     PVG_ERR_STATE);
    assert_non_null(strstr(err.text, "above the store's total"));
    assert_int_equal(pvg_ledger_cap_set(s, "cli", PVG_LEDGER_SIMILAR_ITEMS, 0.4, 0, 0, &err),
                     PVG_OK);
    assert_int_equal(pvg_ledger_cap_clear(s, "cli", PVG_LEDGER_POPULAR_LIST, 0, &err),
                     PVG_ERR_STATE);
    assert_int_equal(pvg_ledger_cap_clear(s, "cli", PVG_LEDGER_POPULAR_LIST, 1, &err), PVG_OK);
    assert_non_null(strstr(audits(s).last, "target=purpose:popular_list clear"));
    assert_int_equal(pvg_ledger_charge(s, "popular_list", "top-k", "m", 0.5, 0, NULL, &err),
                     PVG_OK);
    assert_int_equal(pvg_ledger_state_get(s, &st, &err), PVG_OK);
    assert_true(!st.purposes[PVG_LEDGER_POPULAR_LIST].has_cap &&
                st.purposes[PVG_LEDGER_SIMILAR_ITEMS].has_cap);
    assert_true(fabs(st.purposes[PVG_LEDGER_POPULAR_LIST].spent_epsilon - 1.0) < 1e-12);
    /* bad arguments */
    assert_int_equal(pvg_ledger_cap_set(s, "cli", PVG_LEDGER_N_PURPOSES, 1, 0, 1, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_total_set(s, "", 1, 0, 1, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_total_set(s, "cli", INFINITY, 0, 1, &err), PVG_ERR_INVALID);
    pvg_ledger_purpose p;
    assert_int_equal(pvg_ledger_purpose_parse("queries", &p), 0);
    assert_int_equal(pvg_ledger_purpose_parse("default", &p), -1);
    /* the audit chain still verifies */
    pvg_store_free(s);
    rm_store(dir);
}

static void exec_sql(const char *dir, const char *sql)
{
    t_rawdb_require_sqlite(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/privguide.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) print_error("sql: %s\n", msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

/* A store from before the one-budget ledger: budgets per label in dp_budget,
 * releases under several labels. Its total reads as the largest old total,
 * and every old release counts against it. */
static void ledger_migration(void **state)
{
    t_rawdb_require_sqlite_env(); /* tampers with the SQLite files */
    char *dir = make_store();
    exec_sql(dir,
             "INSERT INTO dp_budget VALUES('default', 1.0, 1e-6, 1), ('other', 2.0, 0, 1),"
             " ('he', 0.5, 1e-5, 1);"
             "INSERT INTO dp_release(dataset, what, mechanism, epsilon, delta, created_at) VALUES"
             " ('default', 'q', 'm', 1.0, 0, 1), ('other', 'q', 'm', 0.5, 0, 1),"
             " ('he', 's', 'm', 0.25, 1e-6, 1), ('popular_list', 'p', 'm', 0.1, 0, 1);");
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    pvg_ledger_state st;
    assert_int_equal(pvg_ledger_state_get(s, &st, &err), PVG_OK);
    assert_true(st.has_total && st.migrated);
    assert_true(st.total_epsilon == 2.0 && st.total_delta == 1e-5);
    assert_true(fabs(st.spent_epsilon - 1.85) < 1e-12 && st.releases == 4);
    assert_true(fabs(st.purposes[PVG_LEDGER_QUERIES].spent_epsilon - 1.75) < 1e-12);
    assert_true(st.purposes[PVG_LEDGER_POPULAR_LIST].releases == 1);
    /* the old 'other' had 1.5 left; the store has only 0.15 */
    assert_int_equal(pvg_ledger_charge(s, "other", "q", "m", 0.2, 0, NULL, &err), PVG_ERR_BUDGET);
    assert_int_equal(pvg_ledger_charge(s, "other", "q", "m", 0.15, 0, NULL, &err), PVG_OK);
    /* the migrated total is a total already set: changing it needs force */
    assert_int_equal(pvg_ledger_total_set(s, "cli", 3.0, 1e-5, 0, &err), PVG_ERR_STATE);
    assert_int_equal(pvg_ledger_total_set(s, "cli", 2.0, 1e-5, 0, &err), PVG_OK);
    assert_int_equal(pvg_ledger_state_get(s, &st, &err), PVG_OK);
    assert_true(st.has_total && !st.migrated && st.total_epsilon == 2.0);
    pvg_store_free(s);
    rm_store(dir);
}

/* 8 processes charge 0.01 as fast as they can against a budget of 1: exactly 100
 * succeed in total and the ledger never exceeds its budget. With mixed = 1,
 * each process cycles through four labels of different purposes, one of
 * them capped at 0.2: still exactly 100 in total, at most 20 under the cap. */
static void race(int mixed)
{
    char *dir = make_store();
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    assert_int_equal(pvg_ledger_set_budget(s, "race", 1.0, 1e-6, &err), PVG_OK);
    if (mixed)
        assert_int_equal(pvg_ledger_cap_set(s, "test", PVG_LEDGER_POPULAR_LIST, 0.2, 1e-6, 0, &err),
                         PVG_OK);
    pvg_store_free(s);
    static const char *labels[4] = {"race", "popular_list", "spend_totals", "similar_items"};
    enum { P = 8, TRIES = 40 };
    int pipes[P][2];
    pid_t pids[P];
    for (int p = 0; p < P; p++) {
        assert_int_equal(pipe(pipes[p]), 0);
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(pipes[p][0]);
            pvg_store *cs;
            pvg_error ce;
            int ok = 0, refused = 0, other = 0;
            if (pvg_store_open(dir, &cs, &ce) != PVG_OK) _exit(3);
            for (int t = 0; t < TRIES; t++) {
                pvg_status st;
                do {
                    st = pvg_ledger_charge(cs, mixed ? labels[(t + p) % 4] : "race", "race", "test",
                                           0.01, 1e-8, NULL, &ce);
                } while (st == PVG_ERR_BUSY);
                if (st == PVG_OK)
                    ok++;
                else if (st == PVG_ERR_BUDGET)
                    refused++;
                else
                    other++;
            }
            pvg_store_free(cs);
            int msg[3] = {ok, refused, other};
            if (write(pipes[p][1], msg, sizeof msg) != (ssize_t)sizeof msg) _exit(4);
            _exit(0);
        }
        close(pipes[p][1]);
    }
    int total_ok = 0, total_refused = 0, total_other = 0;
    for (int p = 0; p < P; p++) {
        int msg[3] = {0, 0, 0}, stt;
        assert_int_equal(read(pipes[p][0], msg, sizeof msg), (ssize_t)sizeof msg);
        close(pipes[p][0]);
        assert_int_equal(waitpid(pids[p], &stt, 0), pids[p]);
        assert_true(WIFEXITED(stt) && WEXITSTATUS(stt) == 0);
        total_ok += msg[0];
        total_refused += msg[1];
        total_other += msg[2];
    }
    print_message("race: %d charged, %d refused, %d other errors\n", total_ok, total_refused,
                  total_other);
    assert_int_equal(total_other, 0);
    assert_int_equal(total_ok, 100);
    assert_int_equal(total_ok + total_refused, P * TRIES);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    pvg_ledger_summary sum;
    assert_int_equal(pvg_ledger_summary_get(s, "race", &sum, &err), PVG_OK);
    assert_true(sum.releases == 100);
    assert_true(sum.spent_epsilon <= 1.0 * (1 + 1e-9));
    assert_true(sum.spent_delta <= 1e-6 * (1 + 1e-9));
    if (mixed) {
        pvg_ledger_state st;
        assert_int_equal(pvg_ledger_state_get(s, &st, &err), PVG_OK);
        long long n = 0;
        for (int q = 0; q < PVG_LEDGER_N_PURPOSES; q++)
            n += st.purposes[q].releases;
        assert_true(n == 100);
        print_message("race (mixed): popular_list %lld, queries %lld, spend_totals %lld, "
                      "similar_items %lld\n",
                      st.purposes[PVG_LEDGER_POPULAR_LIST].releases,
                      st.purposes[PVG_LEDGER_QUERIES].releases,
                      st.purposes[PVG_LEDGER_SPEND_TOTALS].releases,
                      st.purposes[PVG_LEDGER_SIMILAR_ITEMS].releases);
        assert_true(st.purposes[PVG_LEDGER_POPULAR_LIST].releases <= 20);
        assert_true(st.purposes[PVG_LEDGER_POPULAR_LIST].spent_epsilon <= 0.2 * (1 + 1e-9));
    }
    pvg_store_free(s);
    rm_store(dir);
}

static void ledger_race(void **state)
{
    race(0);
}

static void ledger_race_mixed(void **state)
{
    race(1);
}

/* ---- queries ---- */

static void put(pvg_store *s, const char *user, const char *item, pvg_event_type t, int64_t ts,
                double qty, double amount, const char *country)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = t;
    e.ts = ts;
    e.item = item;
    e.quantity = qty;
    e.amount = amount;
    e.country = country;
    e.fields = PVG_FIELD_QUANTITY | PVG_FIELD_AMOUNT | (country ? PVG_FIELD_COUNTRY : 0);
    int outcome;
    pvg_error err;
    char key[64];
    static int seq = 0;
    snprintf(key, sizeof key, "k%d", seq++);
    pvg_status st = pvg_store_event_put(s, user, &e, key, &outcome, &err);
    if (st != PVG_OK) print_error("event_put: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
}

static int sum_users(void *ctx, const pvg_ledger_release *r)
{
    (*(int *)ctx)++;
    return 0;
}

static void queries(void **state)
{
    char *dir = make_store();
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    pvg_item it;
    memset(&it, 0, sizeof it);
    it.price = -1;
    it.ext_id = "A";
    it.category = "books";
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    it.ext_id = "B";
    it.category = "games";
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    it.ext_id = "C";
    it.category = "rare";
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    assert_int_equal(pvg_store_begin(s, &err), PVG_OK);
    /* 200 users buy 2 books and 1 game each; one heavy user buys 100 books; one user
     * (alone) buys the rare item; 20 users without analytics consent buy games. */
    char u[32];
    for (int i = 0; i < 200; i++) {
        snprintf(u, sizeof u, "user%d", i);
        put(s, u, "A", PVG_EVENT_PURCHASE, 1300000000 + i, 1, 10, "UK");
        put(s, u, "A", PVG_EVENT_PURCHASE, 1300000100 + i, 2, 20, "UK");
        put(s, u, "B", PVG_EVENT_PURCHASE, 1300000200 + i, 1, 30, "FR");
    }
    for (int j = 0; j < 100; j++)
        put(s, "heavy", "A", PVG_EVENT_PURCHASE, 1300001000 + j, 1, 10, "UK");
    put(s, "loner", "C", PVG_EVENT_PURCHASE, 1300002000, 1, 5, "UK");
    for (int i = 0; i < 20; i++) {
        snprintf(u, sizeof u, "private%d", i);
        put(s, u, "B", PVG_EVENT_PURCHASE, 1300003000 + i, 1, 30, "DE");
    }
    assert_int_equal(pvg_store_commit(s, &err), PVG_OK);
    pvg_consent off = {1, 0};
    for (int i = 0; i < 20; i++) {
        snprintf(u, sizeof u, "private%d", i);
        assert_int_equal(pvg_store_consent_set(s, u, &off, &err), PVG_OK);
    }
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(9);
    pvg_query_spec sp;
    pvg_query_spec_init(&sp);
    sp.epsilon = 1000; /* tiny noise: checks the bounded aggregates themselves */
    sp.allow_insecure_rng = 1;
    pvg_query_result *r = NULL;
    /* no budget: refused, no result */
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_ERR_BUDGET);
    assert_null(r);
    assert_int_equal(pvg_ledger_set_budget(s, PVG_LEDGER_DEFAULT_DATASET, 10000, 0.1, &err),
                     PVG_OK);
    /* count: 200*3 + min(100, 10) + 1 = 611 (heavy user bounded to 10; no private users) */
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_OK);
    assert_int_equal(r->n_rows, 1);
    print_message("count %g ci [%g, %g]\n", r->rows[0].value, r->rows[0].ci_lo, r->rows[0].ci_hi);
    assert_true(fabs(r->rows[0].value - 611) <= 1);
    assert_true(r->rows[0].ci_lo <= r->rows[0].value && r->rows[0].ci_hi >= r->rows[0].value);
    assert_true(r->users == 202);
    pvg_query_result_free(r);
    /* the secure generator is required unless allowed */
    sp.allow_insecure_rng = 0;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_ERR_POLICY);
    sp.allow_insecure_rng = 1;
    /* sum of amount by category: books = 200*30 + 10 (clamped 0:10 per event ->
     * 200*(10+10) + 10*10); partition selection drops 'rare' (one user) */
    sp.kind = PVG_QUERY_SUM;
    sp.value = PVG_QUERY_VALUE_AMOUNT;
    sp.group_by = PVG_QUERY_GROUP_CATEGORY;
    sp.has_clamp = 1;
    sp.clamp_lo = 0;
    sp.clamp_hi = 10;
    sp.delta = 1e-6;
    sp.epsilon = 40;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_OK);
    assert_int_equal(r->n_rows, 2);
    assert_string_equal(r->rows[0].group, "books");
    assert_string_equal(r->rows[1].group, "games");
    print_message("books %g games %g (scale %g)\n", r->rows[0].value, r->rows[1].value,
                  r->noise_scale);
    assert_true(fabs(r->rows[0].value - 4100) < 30 * r->noise_scale);
    assert_true(fabs(r->rows[1].value - 2000) < 30 * r->noise_scale);
    assert_true(r->selection_threshold > 1);
    pvg_query_result_free(r);
    /* mean purchases per user (events per user, clamp 0:5): (200*3 + 5 + 1)/202 */
    pvg_query_spec_init(&sp);
    sp.kind = PVG_QUERY_MEAN;
    sp.value = PVG_QUERY_VALUE_EVENTS;
    sp.has_clamp = 1;
    sp.clamp_lo = 0;
    sp.clamp_hi = 5;
    sp.epsilon = 1000;
    sp.allow_insecure_rng = 1;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_OK);
    print_message("mean purchases per user %g (ci %g..%g)\n", r->rows[0].value, r->rows[0].ci_lo,
                  r->rows[0].ci_hi);
    assert_true(fabs(r->rows[0].value - 606.0 / 202.0) < 0.05);
    pvg_query_result_free(r);
    /* top items over the public catalog: the top 2 are A and B, not the
     * one-user item C (a catalog item: it gets noise like every candidate) */
    pvg_query_spec_init(&sp);
    sp.kind = PVG_QUERY_TOP_ITEMS;
    sp.epsilon = 5;
    sp.top = 2;
    sp.allow_insecure_rng = 1;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_OK);
    assert_int_equal(r->n_rows, 2);
    for (size_t i = 0; i < r->n_rows; i++)
        assert_true(strcmp(r->rows[i].group, "C") != 0);
    pvg_query_result_free(r);
    /* quantile and histogram of quantity */
    pvg_query_spec_init(&sp);
    sp.kind = PVG_QUERY_QUANTILE;
    sp.has_clamp = 1;
    sp.clamp_lo = 0;
    sp.clamp_hi = 10;
    sp.quantile = 0.9;
    sp.epsilon = 50;
    sp.allow_insecure_rng = 1;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_OK);
    print_message("q0.9 of quantity %g\n", r->rows[0].value);
    assert_true(r->rows[0].value >= 1.9 && r->rows[0].value <= 2.1);
    pvg_query_result_free(r);
    sp.kind = PVG_QUERY_HISTOGRAM;
    sp.bins = 5;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_OK);
    assert_int_equal(r->n_rows, 5);
    assert_string_equal(r->rows[0].group, "[0,2)");
    pvg_query_result_free(r);
    /* bad specs say what is wrong */
    pvg_query_spec_init(&sp);
    sp.kind = PVG_QUERY_SUM;
    sp.epsilon = 1;
    sp.allow_insecure_rng = 1;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "--clamp"));
    sp.kind = PVG_QUERY_COUNT;
    sp.group_by = PVG_QUERY_GROUP_COUNTRY;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "--delta"));
    /* every successful query was charged */
    int n = 0;
    assert_int_equal(pvg_ledger_releases_foreach(s, NULL, sum_users, &n, &err), PVG_OK);
    assert_int_equal(n, 6);
    /* overspending queries are refused with what remains */
    pvg_query_spec_init(&sp);
    sp.epsilon = 9000;
    sp.allow_insecure_rng = 1;
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "remaining"));
    pvg_rng_free(rng);
    pvg_store_free(s);
    rm_store(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ledger_basics),
        cmocka_unit_test(ledger_one_budget_per_store),
        cmocka_unit_test(ledger_caps_and_changes),
        cmocka_unit_test(ledger_migration),
        cmocka_unit_test(ledger_race),
        cmocka_unit_test(ledger_race_mixed),
        cmocka_unit_test(queries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
