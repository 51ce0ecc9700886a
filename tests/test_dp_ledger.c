/*
 * test_dp_ledger.c - the budget ledger and the DP query engine on a real
 * store: refusals (no budget, overspend) with what remains, exact fractions,
 * listings, the 8-process race that must never overspend, and user-level
 * queries (contribution bounds, consent, partition selection, charging).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/query.h>
#include <privguide/store.h>

#include <math.h>
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

typedef struct ds_seen {
    int n;
    char names[4][16];
    pvg_ledger_summary sums[4];
} ds_seen;

static int ds_cb(void *ctx, const char *dataset, const pvg_ledger_summary *sum)
{
    ds_seen *d = ctx;
    if (d->n < 4) {
        snprintf(d->names[d->n], sizeof d->names[0], "%s", dataset);
        d->sums[d->n] = *sum;
    }
    d->n++;
    return 0;
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
        assert_int_equal(pvg_ledger_charge(s, "shop", "count", "discrete-laplace", 0.3, 2e-6, &id, &err), PVG_OK);
    assert_true(id == 3);
    /* overspend: refused, says what remains, records nothing */
    assert_int_equal(pvg_ledger_charge(s, "shop", "sum", "discrete-laplace", 0.3, 0, &id, &err), PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "remaining epsilon=0.1"));
    assert_int_equal(pvg_ledger_charge(s, "shop", "sum", "g", 0.05, 5e-6, &id, &err), PVG_ERR_BUDGET);
    assert_non_null(strstr(err.text, "delta"));
    pvg_ledger_summary sum;
    assert_int_equal(pvg_ledger_summary_get(s, "shop", &sum, &err), PVG_OK);
    assert_true(sum.releases == 3);
    assert_true(fabs(sum.spent_epsilon - 0.9) < 1e-12 && fabs(sum.spent_delta - 6e-6) < 1e-18);
    /* spending exactly to the total in fractions is allowed */
    assert_int_equal(pvg_ledger_set_budget(s, "tenths", 1.0, 0, &err), PVG_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pvg_ledger_charge(s, "tenths", "q", "m", 0.1, 0, NULL, &err), PVG_OK);
    assert_int_equal(pvg_ledger_charge(s, "tenths", "q", "m", 1e-6, 0, NULL, &err), PVG_ERR_BUDGET);
    /* bad arguments */
    assert_int_equal(pvg_ledger_charge(s, "shop", "q", "m", -1, 0, NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_charge(s, "shop", "q", "m", NAN, 0, NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_charge(s, "", "q", "m", 0.1, 0, NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_set_budget(s, "x", 1, 1.5, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_ledger_summary_get(s, "nothing", &sum, &err), PVG_ERR_NOT_FOUND);
    /* listings: datasets in name order with their sums; a callback may stop */
    assert_int_equal(pvg_ledger_set_budget(s, "x", 2, 0, &err), PVG_OK);
    ds_seen d;
    memset(&d, 0, sizeof d);
    assert_int_equal(pvg_ledger_datasets_foreach(s, ds_cb, &d, &err), PVG_OK);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.names[0], "shop");
    assert_string_equal(d.names[1], "tenths");
    assert_string_equal(d.names[2], "x");
    assert_true(d.sums[0].releases == 3 && fabs(d.sums[0].spent_epsilon - 0.9) < 1e-12);
    assert_true(d.sums[1].releases == 10 && d.sums[2].releases == 0);
    int seen = 0;
    assert_int_equal(pvg_ledger_releases_foreach(s, "shop", stop_cb, &seen, &err), PVG_ERR_ABORTED);
    assert_int_equal(seen, 1);
    pvg_store_close(s);
    /* persisted across connections */
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    assert_int_equal(pvg_ledger_summary_get(s, "shop", &sum, &err), PVG_OK);
    assert_true(sum.releases == 3);
    pvg_store_close(s);
    rm_store(dir);
}

/* 8 processes charge 0.01 as fast as they can against a budget of 1: exactly 100
 * succeed in total and the ledger never exceeds its budget. */
static void ledger_race(void **state)
{
    char *dir = make_store();
    pvg_store *s;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    assert_int_equal(pvg_ledger_set_budget(s, "race", 1.0, 1e-6, &err), PVG_OK);
    pvg_store_close(s);
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
                    st = pvg_ledger_charge(cs, "race", "race", "test", 0.01, 1e-8, NULL, &ce);
                } while (st == PVG_ERR_BUSY);
                if (st == PVG_OK) ok++;
                else if (st == PVG_ERR_BUDGET) refused++;
                else other++;
            }
            pvg_store_close(cs);
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
    print_message("race: %d charged, %d refused, %d other errors\n", total_ok, total_refused, total_other);
    assert_int_equal(total_other, 0);
    assert_int_equal(total_ok, 100);
    assert_int_equal(total_ok + total_refused, P * TRIES);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    pvg_ledger_summary sum;
    assert_int_equal(pvg_ledger_summary_get(s, "race", &sum, &err), PVG_OK);
    assert_true(sum.releases == 100);
    assert_true(sum.spent_epsilon <= 1.0 * (1 + 1e-9));
    assert_true(sum.spent_delta <= 1e-6 * (1 + 1e-9));
    pvg_store_close(s);
    rm_store(dir);
}

/* ---- queries ---- */

static void put(pvg_store *s, const char *user, const char *item, pvg_event_type t, int64_t ts, double qty,
                double amount, const char *country)
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
    it.ext_id = "A"; it.category = "books";
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    it.ext_id = "B"; it.category = "games";
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    it.ext_id = "C"; it.category = "rare";
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
    for (int j = 0; j < 100; j++) put(s, "heavy", "A", PVG_EVENT_PURCHASE, 1300001000 + j, 1, 10, "UK");
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
    assert_int_equal(pvg_ledger_set_budget(s, PVG_LEDGER_DEFAULT_DATASET, 10000, 0.1, &err), PVG_OK);
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
    assert_int_equal(pvg_query_run(s, &sp, rng, &r, &err), PVG_ERR_INVALID);
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
    print_message("books %g games %g (scale %g)\n", r->rows[0].value, r->rows[1].value, r->noise_scale);
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
    print_message("mean purchases per user %g (ci %g..%g)\n", r->rows[0].value, r->rows[0].ci_lo, r->rows[0].ci_hi);
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
    for (size_t i = 0; i < r->n_rows; i++) assert_true(strcmp(r->rows[i].group, "C") != 0);
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
    pvg_store_close(s);
    rm_store(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ledger_basics),
        cmocka_unit_test(ledger_race),
        cmocka_unit_test(queries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
