/*
 * test_store_retail.c - the store on the full UCI Online Retail file
 * (../shared/data/online-retail; skipped when absent): ingest counts add up,
 * users are the distinct CustomerIDs, the catalog holds every StockCode,
 * one customer's export matches that customer's rows as read by an
 * independent CSV parser, and after deleting that customer no file in the
 * data dir holds their key or records while other exports are unchanged.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/store.h>

#include "store/store_priv.h"
#include "t_rawdb.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char retail_path[1024];
static char root[64];
static char dir[128];

/* Minimal independent RFC 4180 splitter (fields into out[], 8 max). */
static int split_csv(char *line, char **out, int max)
{
    int n = 0;
    char *p = line, *w;
    while (n < max) {
        out[n++] = w = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else if (!*p)
                    break;
                else
                    *w++ = *p++;
            }
        } else
            while (*p && *p != ',')
                *w++ = *p++;
        if (*p == ',') {
            *w = '\0';
            p++;
            continue;
        }
        *w = '\0';
        break;
    }
    return n;
}

typedef struct customer_rows {
    long purchases, returns;
    double quantity, amount;
} customer_rows;

static void scan_customer(const char *id_with_dot, customer_rows *c, long *rows,
                          long *distinct_stock)
{
    memset(c, 0, sizeof *c);
    gzFile gz = gzopen(retail_path, "rb");
    assert_non_null(gz);
    char line[4096];
    char *f[8];
    long n = 0;
    /* distinct StockCodes through a small open-addressing set of strings */
    size_t cap = 1 << 14;
    char **set = calloc(cap, sizeof *set);
    long distinct = 0;
    assert_non_null(gzgets(gz, line, sizeof line)); /* header */
    while (gzgets(gz, line, sizeof line)) {
        line[strcspn(line, "\n")] = '\0';
        n++;
        if (split_csv(line, f, 8) != 8) continue;
        uint64_t h = 1469598103934665603ull;
        for (const char *s = f[1]; *s; s++)
            h = (h ^ (unsigned char)*s) * 1099511628211ull;
        size_t j = h & (cap - 1);
        while (set[j] && strcmp(set[j], f[1]) != 0)
            j = (j + 1) & (cap - 1);
        if (!set[j]) {
            set[j] = strdup(f[1]);
            distinct++;
        }
        if (strcmp(f[6], id_with_dot) != 0) continue;
        long q = atol(f[3]);
        double price = atof(f[5]);
        if (f[0][0] == 'C')
            c->returns++;
        else
            c->purchases++;
        c->quantity += (double)q;
        c->amount += round((double)q * price * 100.0) / 100.0;
    }
    gzclose(gz);
    for (size_t j = 0; j < cap; j++)
        free(set[j]);
    free(set);
    *rows = n;
    *distinct_stock = distinct;
}

static int setup(void **state)
{
    (void)state;
    const char *sh = getenv("PVG_SHARED_DIR");
    snprintf(retail_path, sizeof retail_path, "%s/data/online-retail/online-retail.csv.gz",
             sh ? sh : "../shared");
    if (access(retail_path, R_OK) != 0) {
        fprintf(stderr, "SKIP: %s not found (the shared datasets are not beside this clone)\n",
                retail_path);
        exit(77);
    }
    snprintf(root, sizeof root, "/tmp/pvg-test-retail-XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(dir, sizeof dir, "%s/data", root);
    pvg_error err;
    assert_int_equal(pvg_store_init(dir, NULL, &err), PVG_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd);
}

static int file_has(const char *path, const void *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static unsigned char buf[1 << 20];
    size_t keep = 0, got;
    int found = 0;
    while (!found && (got = fread(buf + keep, 1, sizeof buf - keep, f)) > 0) {
        size_t len = keep + got;
        for (size_t i = 0; i + n <= len && !found; i++)
            if (memcmp(buf + i, needle, n) == 0) found = 1;
        keep = len >= n ? n - 1 : len;
        memmove(buf, buf + len - keep, keep);
    }
    fclose(f);
    return found;
}

static int dir_has(const void *needle, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) found = file_has(p, needle, n);
    }
    closedir(d);
    return found;
}

static void test_retail(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    pvg_ingest_stats st;
    pvg_ingest_options o = {0};
    if (pvg_store_ingest_file(s, retail_path, PVG_FORMAT_ONLINE_RETAIL, &o, &st, &err) != PVG_OK)
        fail_msg("ingest: %s", err.text);
    customer_rows c;
    long rows, distinct_stock;
    scan_customer("12347.0", &c, &rows, &distinct_stock);
    assert_int_equal(st.read, 541909);
    assert_int_equal(st.read, rows);
    assert_int_equal(st.read, st.accepted + st.rejected);
    long long by_reason = 0;
    for (int i = 0; i < st.n_reasons; i++)
        by_reason += st.reasons[i].count;
    assert_int_equal(by_reason, st.rejected);
    assert_int_equal(st.accepted, st.stored + st.duplicates + st.anonymous);
    assert_int_equal(st.users, 4372); /* distinct non-empty CustomerIDs */
    assert_int_equal(st.items, 4070); /* distinct StockCodes */
    assert_int_equal(st.items, distinct_stock);
    assert_int_equal(st.events, st.stored);

    char *txt = NULL;
    assert_int_equal(pvg_store_user_export(s, "12347", &txt, &err), PVG_OK);
    json_t *j = json_loads(txt, 0, NULL);
    pvg_free(txt);
    json_t *ev = json_object_get(j, "events");
    long purchases = 0, returns = 0;
    double qty = 0, amount = 0;
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        if (strcmp(t, "purchase") == 0) purchases++;
        if (strcmp(t, "return") == 0) returns++;
        qty += json_number_value(json_object_get(e, "quantity"));
        amount += json_number_value(json_object_get(e, "amount"));
        assert_string_equal(json_string_value(json_object_get(e, "country")), "Iceland");
    }
    json_decref(j);
    assert_true(c.purchases > 100);
    assert_int_equal(purchases, c.purchases);
    assert_int_equal(returns, c.returns);
    assert_true(fabs(qty - c.quantity) < 1e-6);
    assert_true(fabs(amount - c.amount) < 0.005);

    /* crypto-shred 12347 */
    char *other_before = NULL, *other_after = NULL;
    assert_int_equal(pvg_store_user_export(s, "17850", &other_before, &err), PVG_OK);
    unsigned char p[16], key[PVG_KEY_BYTES], wrapped[PVG_WRAPPED_BYTES], sealed[64];
    pvg_store_pseudonym(s, "12347", p);
    pvg_keycache_entry *u;
    assert_int_equal(pvg_store_user_resolve(s, p, 0, &u, NULL, &err), PVG_OK);
    memcpy(key, u->key, sizeof key);
    sqlite3 *ks = t_rawdb_open(dir, "keystore.db"), *db = t_rawdb_open(dir, "privguide.db");
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(ks, "SELECT wrapped FROM data_keys WHERE pseudonym = ?1", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(q, 1, p, 16, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    memcpy(wrapped, sqlite3_column_blob(q, 0), sizeof wrapped);
    sqlite3_finalize(q);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT sealed FROM chunks WHERE user_id = ?1", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_int64(q, 1, u->user_id);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    memcpy(sealed, (const unsigned char *)sqlite3_column_blob(q, 0) + 24, sizeof sealed);
    sqlite3_finalize(q);
    sqlite3_close(ks);
    sqlite3_close(db);
    pvg_store_free(s);
    assert_true(dir_has(wrapped, sizeof wrapped));
    assert_true(dir_has(sealed, sizeof sealed));

    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    assert_int_equal(pvg_store_user_delete(s, "12347", &err), PVG_OK);
    assert_int_equal(pvg_store_user_export(s, "12347", &txt, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_store_user_export(s, "17850", &other_after, &err), PVG_OK);
    assert_string_equal(other_before, other_after);
    pvg_store_free(s);
    assert_false(dir_has(key, sizeof key));
    assert_false(dir_has(wrapped, sizeof wrapped));
    assert_false(dir_has(sealed, sizeof sealed));
    pvg_free(other_before);
    pvg_free(other_after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_retail)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
