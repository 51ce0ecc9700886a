/*
 * test_store_copy.c - `store copy` leaves nothing behind: a store holding
 * the assistant's conversations, quarantined chunks (one of a shopper, one
 * whose user row was gone), an ingest log, anonymous counts of a source, a
 * cached DP release and access monitoring's stored alert is copied SQLite ->
 * PostgreSQL -> SQLite (SQLite -> SQLite -> SQLite without a cluster: run
 * through scripts/pg-test, PVG_TEST_DATABASE_URL) and everything arrives
 * identical and usable: conversations open with the same key file, the
 * quarantine keeps its pseudonyms so an erasure in the copy still removes
 * the shopper's quarantined rows and conversations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_files.h"

#include <privguide/monitor.h>
#include <privguide/store.h>

#include "store/backend.h"
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONV_A "0123456789abcdef0123456789abcdef"
#define CONV_B "fedcba9876543210fedcba9876543210"
#define STATE_A "{\"turns\":[{\"q\":\"a warm scarf\",\"a\":[\"21175\"]}]}"
#define STATE_B "{\"turns\":[{\"q\":\"mugs for tea\"}]}"
#define FP_BYTES 32

static char root[64];

static pvg_store *open_ok(const char *dir)
{
    pvg_store *s = NULL;
    pvg_error err;
    if (pvg_store_open(dir, &s, &err) != PVG_OK) fail_msg("open %s: %s", dir, err.text);
    return s;
}

/* A small Online Retail file: two shoppers and an anonymous row. */
static void write_sample(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
          "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,UK\n"
          "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,UK\n"
          "536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,13047,UK\n"
          "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,12/1/2010 8:34,1.69,13047,UK\n"
          "536368,22960,JAM MAKING SET WITH JARS,6,12/1/2010 8:34,4.25,,UK\n",
          f);
    assert_int_equal(fclose(f), 0);
}

typedef struct seen {
    int n;
    char json[4][256];
} seen;

static void on_conv(void *ctx, const pvg_conversation_view *c)
{
    seen *s = ctx;
    if (s->n < 4) snprintf(s->json[s->n], sizeof s->json[0], "%s", c->json);
    s->n++;
}

static int count_q(void *ctx, const pvg_backend_quarantined *qr)
{
    (void)qr;
    (*(int *)ctx)++;
    return 0;
}

static int count_runs(void *ctx, const pvg_backend_ingest_run *r)
{
    assert_string_equal(r->format, "online-retail");
    (*(int *)ctx)++;
    return 0;
}

static int count_alerts(void *ctx, const pvg_monitor_alert *a)
{
    assert_string_equal(a->summary, "copied alert");
    (*(int *)ctx)++;
    return 0;
}

static int first_chunk(void *ctx, const pvg_backend_chunk *c)
{
    *(int64_t *)ctx = c->row;
    return 1;
}

/* The source store: ingest, conversations, quarantine, cache, alert. */
static void fill(const char *dir)
{
    pvg_error err;
    pvg_store *s = open_ok(dir);
    char csv[128];
    snprintf(csv, sizeof csv, "%s/sample.csv", root);
    write_sample(csv);
    pvg_ingest_stats stats;
    memset(&stats, 0, sizeof stats);
    if (pvg_store_ingest_file(s, csv, PVG_FORMAT_ONLINE_RETAIL, NULL, &stats, &err) != PVG_OK)
        fail_msg("ingest: %s", err.text);
    assert_int_equal(pvg_store_conversation_put(s, "17850", CONV_A, 1700000000, STATE_A, &err),
                     PVG_OK);
    assert_int_equal(pvg_store_conversation_put(s, "13047", CONV_B, 1700000100, STATE_B, &err),
                     PVG_OK);
    pvg_backend *b = pvg_store_backend(s);
    /* quarantine one chunk of 13047 (with the pseudonym that makes erasure
     * find it) and move one of 17850 as if its user row were gone */
    const char *who[2] = {"13047", "17850"};
    for (int i = 0; i < 2; i++) {
        unsigned char p[16];
        pvg_store_pseudonym(s, who[i], p);
        pvg_backend_user u;
        assert_int_equal(b->ops->user_get(b, p, &u, &err), PVG_OK);
        int64_t row = 0;
        assert_int_equal(b->ops->chunks_foreach_user(b, u.id, first_chunk, &row, &err),
                         PVG_ERR_ABORTED);
        assert_true(row > 0);
        assert_int_equal(
            b->ops->chunk_quarantine(b, row, i == 0 ? p : NULL, "test", 1700000200, &err), PVG_OK);
    }
    unsigned char fp[FP_BYTES];
    memset(fp, 0xab, sizeof fp);
    assert_int_equal(b->ops->release_cache_put(b, "popular", fp, sizeof fp, "default", "k=10",
                                               "dp-topk", 7, "[\"85123A\",\"22633\"]", 1700000300,
                                               &err),
                     PVG_OK);
    pvg_monitor_alert a;
    memset(&a, 0, sizeof a);
    a.rule = (pvg_monitor_rule)0;
    snprintf(a.severity, sizeof a.severity, "warning");
    snprintf(a.credential, sizeof a.credential, "cli");
    snprintf(a.summary, sizeof a.summary, "copied alert");
    a.opened = 1700000400;
    if (pvg_monitor_alert_store(s, &a, NULL, &err) != PVG_OK) fail_msg("alert: %s", err.text);
    pvg_store_free(s);
}

/* What a copy must hold, read through the store and the backend. */
static void check(const char *dir, const char *backend)
{
    pvg_error err;
    pvg_store *s = open_ok(dir);
    pvg_backend *b = pvg_store_backend(s);
    assert_string_equal(b->ops->name, backend);
    seen v = {0};
    if (pvg_store_conversation_get(s, "17850", CONV_A, on_conv, &v, &err) != PVG_OK)
        fail_msg("conversation of 17850 in %s: %s", dir, err.text);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.json[0], STATE_A);
    memset(&v, 0, sizeof v);
    long long unreadable = 0;
    assert_int_equal(pvg_store_conversations_foreach(s, "13047", on_conv, &v, &unreadable, &err),
                     PVG_OK);
    assert_int_equal(v.n, 1);
    assert_int_equal(unreadable, 0);
    assert_string_equal(v.json[0], STATE_B);
    long long q = 0;
    assert_int_equal(b->ops->quarantine_count(b, &q, &err), PVG_OK);
    assert_int_equal(q, 2);
    int runs = 0;
    assert_int_equal(b->ops->ingest_runs_foreach(b, count_runs, &runs, &err), PVG_OK);
    assert_int_equal(runs, 1);
    unsigned char fp[FP_BYTES];
    memset(fp, 0xab, sizeof fp);
    char *body = NULL;
    int64_t rid = 0, at = 0;
    assert_int_equal(b->ops->release_cache_get(b, "popular", fp, sizeof fp, "default", "k=10",
                                               &body, &rid, &at, &err),
                     PVG_OK);
    assert_string_equal(body, "[\"85123A\",\"22633\"]");
    assert_int_equal(rid, 7);
    assert_int_equal(at, 1700000300);
    free(body);
    int alerts = 0;
    assert_int_equal(pvg_monitor_alerts_foreach(s, 1, count_alerts, &alerts, &err), PVG_OK);
    assert_int_equal(alerts, 1);
    pvg_store_counts c;
    assert_int_equal(pvg_store_counts_get(s, &c, &err), PVG_OK);
    assert_int_equal(c.users, 2);
    assert_true(c.anonymous_rows > 0);
    pvg_store_free(s);
}

static void copy_ok(const char *from, const char *to, const char *url, const char *backend)
{
    pvg_store_copy_report r;
    pvg_error err;
    if (pvg_store_copy(from, to, url, &r, &err) != PVG_OK)
        fail_msg("copy %s -> %s: %s", from, to, err.text);
    assert_string_equal(r.to_backend, backend);
    assert_int_equal(r.users, 2);
    assert_int_equal(r.digests, 2);
    assert_int_equal(r.conversations, 2);
    assert_int_equal(r.quarantined, 2);
    assert_int_equal(r.ingest_runs, 1);
    assert_int_equal(r.cached_releases, 1);
    assert_true(r.meta_rows >= 1); /* the alerts document */
}

static void test_copy_round_trip(void **state)
{
    (void)state;
    const char *url = getenv("PVG_TEST_DATABASE_URL");
    if (url && !*url) url = NULL;
    const char *mid = url ? "postgresql" : "sqlite";
    unsetenv("PRIVGUIDE_DATABASE_URL"); /* the source and the copy back are SQLite */
    snprintf(root, sizeof root, "/tmp/pvg-test-copy-XXXXXX");
    assert_non_null(mkdtemp(root));
    char a[128], b[128], c[128];
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    snprintf(c, sizeof c, "%s/c", root);
    pvg_error err;
    if (pvg_store_init(a, NULL, &err) != PVG_OK) fail_msg("init: %s", err.text);
    fill(a);
    check(a, "sqlite");
    copy_ok(a, b, url, mid);
    check(b, mid);
    copy_ok(b, c, NULL, "sqlite");
    check(c, "sqlite");

    /* erasure in the copy reaches the copied conversation and quarantined
     * row of the shopper (the quarantine kept the pseudonym) */
    pvg_store *s = open_ok(c);
    assert_int_equal(pvg_store_user_delete(s, "13047", &err), PVG_OK);
    pvg_backend *be = pvg_store_backend(s);
    int left = 0;
    assert_int_equal(be->ops->quarantine_foreach(be, count_q, &left, &err), PVG_OK);
    assert_int_equal(left, 1); /* the row without a pseudonym stays */
    seen v = {0};
    assert_int_equal(pvg_store_conversation_get(s, "13047", CONV_B, on_conv, &v, &err),
                     PVG_ERR_NOT_FOUND);
    pvg_store_free(s);

    /* a key file per store id: the three dirs share one; remove it */
    char kf[4096];
    if (pvg_store_key_file(a, NULL, kf, sizeof kf, &err) == PVG_OK) unlink(kf);
    t_rm_rf(root);
}

/* ---- the iteration ops read every row across their pages ---- */

typedef struct pager {
    int n, stop_at; /* calls so far; return 1 at call stop_at (0: never) */
    int64_t last_row;
    unsigned char last_key[32];
    int ordered;
} pager;

static int page_q(void *ctx, const pvg_backend_quarantined *qr)
{
    pager *pg = ctx;
    if (qr->row <= pg->last_row || qr->n_events != pg->n || qr->sealed_len != 3 ||
        memcmp(qr->sealed, "abc", 3) != 0 || strcmp(qr->reason, "paged") != 0)
        pg->ordered = 0;
    /* odd rows carry a pseudonym starting with n % 7, even ones none */
    if (qr->pseudonym ? pg->n % 2 == 0 || qr->pseudonym[0] != (unsigned char)(pg->n % 7)
                      : pg->n % 2 == 1)
        pg->ordered = 0;
    pg->last_row = qr->row;
    return ++pg->n == pg->stop_at;
}

static int page_conv(void *ctx, const unsigned char pseudonym[16], const pvg_backend_conv *c)
{
    pager *pg = ctx;
    unsigned char key[32];
    memcpy(key, pseudonym, 16);
    memcpy(key + 16, c->cid, 16);
    if (pg->n > 0 && memcmp(key, pg->last_key, sizeof key) <= 0) pg->ordered = 0;
    if (c->sealed_len != 5 || memcmp(c->sealed, "state", 5) != 0 || c->created_at != c->cid[15])
        pg->ordered = 0;
    memcpy(pg->last_key, key, sizeof key);
    return ++pg->n == pg->stop_at;
}

static int page_kv(void *ctx, const char *key, const char *value)
{
    (void)key;
    (void)value;
    pager *pg = ctx;
    return ++pg->n == pg->stop_at;
}

static void add_quarantined(pvg_backend *b, int from, int to)
{
    pvg_error err;
    int64_t changes = 0;
    assert_int_equal(b->ops->txn_begin(b, &changes, &err), PVG_OK);
    for (int i = from; i < to; i++) {
        unsigned char p[16] = {(unsigned char)(i % 7)};
        pvg_backend_quarantined qr = {.user_id = 1000 + i,
                                      .pseudonym = i % 2 ? p : NULL,
                                      .expires_day = 20000,
                                      .n_events = i,
                                      .cid = (const unsigned char *)"cid",
                                      .cid_len = 3,
                                      .sealed = (const unsigned char *)"abc",
                                      .sealed_len = 3,
                                      .reason = "paged",
                                      .quarantined_at = 1700000000 + i};
        if (b->ops->quarantine_insert(b, &qr, &err) != PVG_OK)
            fail_msg("quarantine insert: %s", err.text);
    }
    assert_int_equal(b->ops->txn_commit(b, &changes, &err), PVG_OK);
}

/* Conversations [from, to): pseudonym k % 3, cid ending in k. */
static void add_convs(pvg_backend *b, int from, int to)
{
    pvg_error err;
    for (int k = from; k < to; k++) {
        unsigned char p[16] = {0x70, (unsigned char)(k % 3)};
        pvg_backend_conv c = {.created_at = (unsigned char)k,
                              .updated_at = 1,
                              .expires_day = 30000,
                              .sealed = (const unsigned char *)"state",
                              .sealed_len = 5};
        memset(c.cid, 0x11, sizeof c.cid);
        c.cid[14] = (unsigned char)(k >> 8);
        c.cid[15] = (unsigned char)k;
        if (b->ops->conv_put(b, p, &c, &err) != PVG_OK) fail_msg("conv put: %s", err.text);
    }
}

static pager scan(pvg_backend *b, int convs, int stop_at, pvg_status want)
{
    pvg_error err;
    pager pg = {.stop_at = stop_at, .last_row = 0, .ordered = 1};
    pvg_status st = convs ? b->ops->convs_scan(b, page_conv, &pg, &err)
                          : b->ops->quarantine_foreach(b, page_q, &pg, &err);
    if (st != want)
        fail_msg("%s: status %d, %d expected", convs ? "convs" : "quarantine", st, want);
    assert_true(pg.ordered);
    return pg;
}

static void test_paged_reads(void **state)
{
    (void)state;
    const char *url = getenv("PVG_TEST_DATABASE_URL");
    if (url && !*url) url = NULL;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/pvg-test-pages-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char sd[128];
    snprintf(sd, sizeof sd, "%s/s", dir);
    pvg_store_init_options o = {.database_url = url};
    pvg_error err;
    if (pvg_store_init(sd, &o, &err) != PVG_OK) fail_msg("init: %s", err.text);
    pvg_store *s = open_ok(sd);
    pvg_backend *b = pvg_store_backend(s);

    /* the quarantine (pages of 500 in PostgreSQL): exactly two full pages,
     * then one row more; a stop on the second page */
    add_quarantined(b, 0, 1000);
    assert_int_equal(scan(b, 0, 0, PVG_OK).n, 1000);
    add_quarantined(b, 1000, 1001);
    assert_int_equal(scan(b, 0, 0, PVG_OK).n, 1001);
    assert_int_equal(scan(b, 0, 501, PVG_ERR_ABORTED).n, 501);
    assert_int_equal(scan(b, 0, 1001, PVG_ERR_ABORTED).n, 1001);

    /* every conversation (pages of 100) in (pseudonym, cid) order */
    add_convs(b, 0, 200);
    assert_int_equal(scan(b, 1, 0, PVG_OK).n, 200);
    add_convs(b, 200, 201);
    assert_int_equal(scan(b, 1, 0, PVG_OK).n, 201);
    assert_int_equal(scan(b, 1, 150, PVG_ERR_ABORTED).n, 150);

    /* a one-query read stops when its callback says so */
    assert_int_equal(b->ops->meta_set(b, "paged.a", "1", &err), PVG_OK);
    assert_int_equal(b->ops->meta_set(b, "paged.b", "2", &err), PVG_OK);
    pager kv = {.stop_at = 0};
    assert_int_equal(b->ops->meta_foreach(b, page_kv, &kv, &err), PVG_OK);
    assert_true(kv.n >= 2);
    kv = (pager){.stop_at = 2};
    assert_int_equal(b->ops->meta_foreach(b, page_kv, &kv, &err), PVG_ERR_ABORTED);
    assert_int_equal(kv.n, 2);
    pvg_store_free(s);

    char kf[4096];
    if (pvg_store_key_file(sd, NULL, kf, sizeof kf, &err) == PVG_OK) unlink(kf);
    t_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_round_trip),
        cmocka_unit_test(test_paged_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
