/*
 * test_catalog.c - the declared catalogue (src/store/catalog.c): what only
 * a catalogue load sets, apart from the titles sale rows give items. The
 * calls and their order; catalogue files (TSV and JSONL) with their errors
 * by file:line and field, what was accepted before a bad line kept; imports
 * of transactions, single events and item puts never changing the declared
 * text; a store-trained DP-EASE taking its vocabulary and text prior from
 * it, identical between neighbouring stores that differ by one shopper
 * whose rows carry odd descriptions; erasure leaving it; a store copy
 * carrying it. The public domain of DP releases (catalog items): sale rows
 * and events never add to it (a store with transactions alone has no
 * candidate: the top-items query and DP training refuse), catalogue loads
 * do. Runs on SQLite and (test_catalog_pg) on PostgreSQL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_files.h"

#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/query.h>
#include <privguide/rng.h>
#include <privguide/store.h>

#include "model/model_internal.h"
#include "t_rawdb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

/* A new store in base/name, open. */
static pvg_store *new_store(const char *base, const char *name, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/%s", base, name);
    pvg_error err;
    pvg_status st = pvg_store_init(dir, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "init: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    return s;
}

/* The declared catalogue as text, one "id\ttitle\tdescription\n" a line. */
typedef struct dump {
    char *buf;
    size_t len, cap;
    size_t n;
} dump;

static int dump_cb(void *ctx, const pvg_catalog_entry *e)
{
    dump *d = ctx;
    size_t need =
        strlen(e->ext_id) + strlen(e->title) + (e->description ? strlen(e->description) : 0) + 8;
    if (d->len + need + 1 > d->cap) {
        d->cap = (d->len + need + 1) * 2;
        d->buf = realloc(d->buf, d->cap);
        assert_non_null(d->buf);
    }
    d->len += (size_t)snprintf(d->buf + d->len, d->cap - d->len, "%s\t%s\t%s\n", e->ext_id,
                               e->title, e->description ? e->description : "-");
    d->n++;
    return 0;
}

static char *declared(pvg_store *s, size_t *n)
{
    dump d = {0};
    d.buf = calloc(1, 1);
    d.cap = 1;
    pvg_error err;
    assert_int_equal(pvg_store_catalog_foreach(s, dump_cb, &d, &err), PVG_OK);
    if (n) *n = d.n;
    return d.buf;
}

static char *item_title(pvg_store *s, const char *id)
{
    pvg_item *it = NULL;
    assert_int_equal(pvg_store_item_get(s, id, &it, NULL), PVG_OK);
    char *t = it->title ? strdup(it->title) : NULL;
    pvg_item_free(it);
    return t;
}

/* ---- the calls ---- */

static void test_declare_foreach_titles(void **state)
{
    (void)state;
    char *base = t_tmpdir("catalog"), dir[512];
    pvg_store *s = new_store(base, "d", dir, sizeof dir);
    pvg_catalog_entry e[] = {
        {"b2", "Blue mug", NULL},
        {"a1", "Red lantern", "A red metal lantern\twith a handle"},
        {"\xc3\xa9t\xc3\xa9", "Summer hat", NULL}, /* "été": after the ASCII ids in byte order */
        {"b2", "Blue mug, large", ""},             /* the last one wins; "" = no description */
    };
    pvg_error err;
    assert_int_equal(pvg_store_catalog_declare(s, e, 4, &err), PVG_OK);
    size_t n;
    char *t = declared(s, &n);
    assert_int_equal(n, 3);
    assert_string_equal(t, "a1\tRed lantern\tA red metal lantern\twith a handle\n"
                           "b2\tBlue mug, large\t-\n"
                           "\xc3\xa9t\xc3\xa9\tSummer hat\t-\n");
    free(t);
    /* the items exist as catalog items, their display title the declared one */
    pvg_item *it = NULL;
    assert_int_equal(pvg_store_item_get(s, "a1", &it, NULL), PVG_OK);
    assert_true(it->catalog);
    assert_string_equal(it->title, "Red lantern");
    pvg_item_free(it);
    /* titles over a list of ids: declared text or NULL */
    const char *ids[] = {"zz", "b2", "a1", "b2", "Red lantern"};
    char **titles = NULL;
    size_t found = 0;
    assert_int_equal(pvg_store_catalog_titles(s, ids, 5, &titles, &found, &err), PVG_OK);
    assert_int_equal(found, 3);
    assert_null(titles[0]);
    assert_string_equal(titles[1], "Blue mug, large");
    assert_string_equal(titles[2], "Red lantern");
    assert_string_equal(titles[3], "Blue mug, large");
    assert_null(titles[4]);
    pvg_catalog_titles_free(titles, 5);
    /* the descriptions of the same ids: a1's; b2's "" and the unknown ids none */
    assert_int_equal(
        pvg_store_catalog_texts(s, ids, 5, PVG_CATALOG_FIELD_DESCRIPTION, &titles, &found, &err),
        PVG_OK);
    assert_int_equal(found, 1);
    assert_null(titles[0]);
    assert_null(titles[1]);
    assert_string_equal(titles[2], "A red metal lantern\twith a handle");
    assert_null(titles[3]);
    assert_null(titles[4]);
    pvg_catalog_titles_free(titles, 5);
    assert_int_equal(
        pvg_store_catalog_texts(s, ids, 5, PVG_CATALOG_FIELD_TITLE, &titles, &found, &err), PVG_OK);
    assert_int_equal(found, 3);
    assert_string_equal(titles[2], "Red lantern");
    pvg_catalog_titles_free(titles, 5);
    assert_int_equal(
        pvg_store_catalog_texts(s, ids, 5, (pvg_catalog_field)7, &titles, &found, &err),
        PVG_ERR_INVALID);
    assert_null(titles);
    assert_non_null(strstr(err.text, "field 7"));
    /* an invalid entry declares nothing of the batch, and says which */
    pvg_catalog_entry bad[] = {{"c3", "Fine", NULL}, {"c4", "", NULL}};
    assert_int_equal(pvg_store_catalog_declare(s, bad, 2, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "entry 1: title"));
    pvg_catalog_entry ctl[] = {{"c\n5", "x", NULL}};
    assert_int_equal(pvg_store_catalog_declare(s, ctl, 1, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "entry 0: id"));
    pvg_catalog_entry utf[] = {{"c6", "caf\xe9", NULL}};
    assert_int_equal(pvg_store_catalog_declare(s, utf, 1, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "title: invalid UTF-8 at byte 3"));
    t = declared(s, &n);
    assert_int_equal(n, 3);
    free(t);
    /* not inside the caller's transaction */
    assert_int_equal(pvg_store_begin(s, &err), PVG_OK);
    assert_int_equal(pvg_store_catalog_declare(s, e, 1, &err), PVG_ERR_STATE);
    pvg_store_rollback(s);
    /* it stays across a reopen */
    pvg_store_free(s);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    t = declared(s, &n);
    assert_int_equal(n, 3);
    free(t);
    pvg_store_free(s);
    t_rm_rf(base);
    free(base);
}

/* ---- catalogue files ---- */

static void expect_import_error(pvg_store *s, const char *path, pvg_catalog_format fmt, long line,
                                const char *field, long long declared_before)
{
    pvg_catalog_import_stats st;
    pvg_error err;
    pvg_error_clear(&err);
    assert_int_equal(pvg_store_catalog_import(s, path, fmt, &st, &err), PVG_ERR_INVALID);
    char buf[600];
    pvg_error_format(&err, buf, sizeof buf);
    if (err.line != line || strstr(err.text, field) != err.text)
        fprintf(stderr, "unexpected error: %s (wanted line %ld, field %s)\n", buf, line, field);
    assert_int_equal(err.line, line);
    assert_string_equal(err.source, path);
    assert_ptr_equal(strstr(err.text, field), err.text); /* "field: expected ..." */
    assert_int_equal(st.declared, declared_before);
    assert_int_equal(st.lines, line);
}

static void test_import_files(void **state)
{
    (void)state;
    char *base = t_tmpdir("catalog"), dir[512], path[600];
    pvg_store *s = new_store(base, "d", dir, sizeof dir);
    pvg_catalog_import_stats st;
    pvg_error err;
    /* TSV: a byte order mark dropped, blank lines skipped, spaces trimmed, CRLF, an optional
     * description */
    snprintf(path, sizeof path, "%s/c.tsv", base);
    t_write_file(path, "\xef\xbb\xbf"
                       "85123A\t WHITE HANGING HEART T-LIGHT HOLDER \r\n"
                       "\n"
                       "71053\tWHITE METAL LANTERN\tlantern, metal\n"
                       "   \n"
                       "84406B\tCREAM CUPID HEARTS COAT HANGER");
    assert_int_equal(pvg_store_catalog_import(s, path, PVG_CATALOG_AUTO, &st, &err), PVG_OK);
    assert_int_equal(st.lines, 5);
    assert_int_equal(st.declared, 3);
    size_t n;
    char *t = declared(s, &n);
    assert_string_equal(t, "71053\tWHITE METAL LANTERN\tlantern, metal\n"
                           "84406B\tCREAM CUPID HEARTS COAT HANGER\t-\n"
                           "85123A\tWHITE HANGING HEART T-LIGHT HOLDER\t-\n");
    free(t);
    /* JSONL, detected */
    snprintf(path, sizeof path, "%s/c.jsonl", base);
    t_write_file(path, "\n{\"id\": \"22423\", \"title\": \"REGENCY CAKESTAND 3 TIER\"}\n"
                       "{\"id\": \"47566\", \"title\": \"PARTY BUNTING\", \"description\": null}\n"
                       "{\"title\": \"SET OF 3 CAKE TINS\", \"id\": \"22720\", \"description\": "
                       "\"tins\"}\n");
    assert_int_equal(pvg_store_catalog_import(s, path, PVG_CATALOG_AUTO, &st, &err), PVG_OK);
    assert_int_equal(st.declared, 3);
    t = declared(s, &n);
    assert_int_equal(n, 6);
    assert_non_null(strstr(t, "22720\tSET OF 3 CAKE TINS\ttins\n"));
    free(t);

    /* errors: path:line and the field; the lines before are declared */
    snprintf(path, sizeof path, "%s/bad1.tsv", base);
    t_write_file(path, "t1\tOne\n\nt2\tTwo\n\tno id here\nt3\tThree\n");
    expect_import_error(s, path, PVG_CATALOG_AUTO, 4, "id:", 2);
    t = declared(s, &n);
    assert_non_null(strstr(t, "t1\tOne\t-\nt2\tTwo\t-\n"));
    assert_null(strstr(t, "t3"));
    free(t);
    t_write_file(path, "u1\tOne\nu2 no tab\n");
    expect_import_error(s, path, PVG_CATALOG_TSV, 2, "line:", 1);
    t_write_file(path, "v1\t   \n");
    expect_import_error(s, path, PVG_CATALOG_TSV, 1, "title:", 0);
    t_write_file(path, "w1\tcaf\xe9 au lait\n"); /* Latin-1, not UTF-8: the column of the byte */
    expect_import_error(s, path, PVG_CATALOG_TSV, 1, "title:", 0);
    pvg_catalog_import_stats st2;
    assert_int_equal(pvg_store_catalog_import(s, path, PVG_CATALOG_TSV, &st2, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(err.column, 7);
    assert_null(strstr(err.text, "caf")); /* the line's text is not quoted */
    /* after a byte order mark the column is the file's: 3 bytes of mark, "w1\tcaf" */
    t_write_file(path, "\xef\xbb\xbfw1\tcaf\xe9 au lait\n");
    assert_int_equal(pvg_store_catalog_import(s, path, PVG_CATALOG_TSV, &st2, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(err.column, 10);
    /* C1 controls and bidirectional overrides / isolates are control characters; the
     * right-to-left mark is text */
    static const char *const refused[] = {"c1\tNEXT\xc2\x85LINE\n",
                                          "c2\tCSI\xc2\x9b\n",
                                          "c3\tRLO \xe2\x80\xae"
                                          "DLOH\n",
                                          "c4\tLRE \xe2\x80\xaa"
                                          "x\n",
                                          "c5\tRLI \xe2\x81\xa7"
                                          "x\n",
                                          "c6\tPDI \xe2\x81\xa9\n",
                                          "c\xe2\x80\xae"
                                          "7\tid with RLO\n"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        t_write_file(path, refused[i]);
        expect_import_error(s, path, PVG_CATALOG_TSV, 1,
                            i + 1 < sizeof refused / sizeof *refused ? "title:" : "id:", 0);
    }
    t_write_file(path, "c8\t\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xe2\x80\x8f"
                       "x \xc2\xa0 \xe2\x80\x94 y\n");
    assert_int_equal(pvg_store_catalog_import(s, path, PVG_CATALOG_TSV, &st2, &err), PVG_OK);
    assert_int_equal(st2.declared, 1);
    {
        /* an over-long title; then a line longer than the reader takes */
        size_t big = PVG_CATALOG_TITLE_MAX + 1;
        char *line = malloc(big + 16);
        memcpy(line, "x1\t", 3);
        memset(line + 3, 'a', big);
        strcpy(line + 3 + big, "\n");
        t_write_file(path, line);
        expect_import_error(s, path, PVG_CATALOG_TSV, 1, "title:", 0);
        free(line);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("x2\tfine\n", f);
        for (int i = 0; i < 200000; i++)
            fputc('b', f);
        fputs("\nx3\tnot read\n", f);
        fclose(f);
        expect_import_error(s, path, PVG_CATALOG_TSV, 2, "line:", 1);
    }
    snprintf(path, sizeof path, "%s/bad.jsonl", base);
    t_write_file(path, "{\"id\": \"j1\", \"title\": \"One\"}\n{\"id\": \"j2\", \"title\": 5}\n");
    expect_import_error(s, path, PVG_CATALOG_AUTO, 2, "title:", 1);
    t_write_file(path, "{\"id\": \"j3\", \"title\": \"x\", \"price\": 2}\n");
    expect_import_error(s, path, PVG_CATALOG_JSONL, 1, "line:", 0);
    t_write_file(path, "{\"id\": \"j4\", \"title\": \"x\"}\n\n{\"id\": \"j5\", \"title\": \"x\"\n");
    expect_import_error(s, path, PVG_CATALOG_JSONL, 3, "line:", 1);
    t_write_file(path, "{\"title\": \"no id\"}\n");
    expect_import_error(s, path, PVG_CATALOG_JSONL, 1, "id:", 0);
    t_write_file(path, "[\"j6\", \"x\"]\n");
    expect_import_error(s, path, PVG_CATALOG_JSONL, 1, "line:", 0);
    t_write_file(path, "{\"id\": \"j7\", \"title\": \"a\\u0000b\"}\n"); /* jansson refuses \u0000 */
    expect_import_error(s, path, PVG_CATALOG_JSONL, 1, "line:", 0);
    t_write_file(path, "{\"id\": \"j8\", \"title\": \"a\\nb\"}\n");
    expect_import_error(s, path, PVG_CATALOG_JSONL, 1, "title:", 0);
    t = declared(s, &n);
    assert_non_null(strstr(t, "j1\tOne"));
    assert_non_null(strstr(t, "j4\tx"));
    assert_null(strstr(t, "j5"));
    free(t);
    /* a missing file */
    snprintf(path, sizeof path, "%s/none.tsv", base);
    assert_int_equal(pvg_store_catalog_import(s, path, PVG_CATALOG_AUTO, &st, &err),
                     PVG_ERR_NOT_FOUND);
    /* an empty file declares nothing */
    t_write_file(path, "");
    assert_int_equal(pvg_store_catalog_import(s, path, PVG_CATALOG_AUTO, &st, &err), PVG_OK);
    assert_int_equal(st.declared, 0);
    pvg_store_free(s);
    t_rm_rf(base);
    free(base);
}

/* ---- nothing else writes the declared text ---- */

#define N_ITEMS 24
#define N_USERS 60
static const char *const family[] = {"lantern", "teacup", "doormat", "candle"};

static void shop_catalogue(char *out, size_t cap)
{
    size_t len = 0;
    for (int i = 0; i < N_ITEMS; i++)
        len += (size_t)snprintf(out + len, cap - len, "i%02d\t%s model %c\n", i, family[i / 6],
                                'a' + i % 6);
}

/* Online Retail rows: N_USERS shoppers, each buying 4 items of one family
 * (Descriptions the shop's own, upper case). */
static void shop_sales(char *out, size_t cap)
{
    size_t len = (size_t)snprintf(
        out, cap,
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,"
        "Country\n");
    uint64_t x = 17;
    for (int u = 0; u < N_USERS; u++) {
        int f = u % 4;
        for (int a = 0; a < 4; a++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            int item = f * 6 + (int)((x >> 33) % 6);
            len += (size_t)snprintf(out + len, cap - len,
                                    "5%05d,i%02d,%s MODEL %c,1,12/%d/2010 10:00,2.50,%d,United "
                                    "Kingdom\n",
                                    u, item, family[item / 6], 'A' + item % 6, 1 + a, 10000 + u);
        }
    }
}

/* One more shopper whose rows rename catalogue items with odd text (words
 * of other families, to move the titles' IDF and links) and name an item
 * the catalogue does not have. */
static const char ODD_SALES[] =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "599999,i00,TEACUP TEACUP DOORMAT,1,12/9/2010 11:00,2.50,99999,United Kingdom\n"
    "599999,i07,LANTERN CANDLE,1,12/9/2010 11:00,2.50,99999,United Kingdom\n"
    "599999,i13,ZEBRA,1,12/9/2010 11:00,2.50,99999,United Kingdom\n"
    "599999,NEW1,CANDLE LANTERN TEACUP DOORMAT MODEL,1,12/9/2010 11:00,9.99,99999,United "
    "Kingdom\n";

static void ingest(pvg_store *s, const char *base, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", base, name);
    t_write_file(path, text);
    pvg_ingest_options o;
    memset(&o, 0, sizeof o);
    pvg_ingest_stats st;
    pvg_error err;
    pvg_status rc = pvg_store_ingest_file(s, path, PVG_FORMAT_ONLINE_RETAIL, &o, &st, &err);
    if (rc != PVG_OK) fprintf(stderr, "ingest: %s\n", err.text);
    assert_int_equal(rc, PVG_OK);
    assert_int_equal(st.rejected, 0);
}

static void declare_file(pvg_store *s, const char *base, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/catalogue.tsv", base);
    t_write_file(path, text);
    pvg_catalog_import_stats st;
    pvg_error err;
    assert_int_equal(pvg_store_catalog_import(s, path, PVG_CATALOG_TSV, &st, &err), PVG_OK);
    assert_int_equal(st.declared, N_ITEMS);
}

static void test_sales_never_declare(void **state)
{
    (void)state;
    char *base = t_tmpdir("catalog"), dir[512];
    pvg_store *s = new_store(base, "d", dir, sizeof dir);
    static char cat[4096], sales[65536];
    shop_catalogue(cat, sizeof cat);
    shop_sales(sales, sizeof sales);
    declare_file(s, base, cat);
    char *before = declared(s, NULL);
    ingest(s, base, "sales.csv", sales);
    ingest(s, base, "odd.csv", ODD_SALES);
    /* a single event and an item put with a title */
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_VIEW;
    e.item = "i01";
    e.ts = 1291200000;
    int outcome;
    pvg_error err;
    assert_int_equal(pvg_store_event_put(s, "77777", &e, NULL, &outcome, &err), PVG_OK);
    pvg_item it;
    memset(&it, 0, sizeof it);
    it.ext_id = "i02";
    it.title = "RENAMED BY AN ITEM PUT";
    it.price = 1;
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    /* the display titles moved; the declared text did not */
    char *t = item_title(s, "i00");
    assert_string_equal(t, "TEACUP TEACUP DOORMAT");
    free(t);
    t = item_title(s, "i02");
    assert_string_equal(t, "RENAMED BY AN ITEM PUT");
    free(t);
    /* an item put with a category line and a "description" attribute: the
       categories prior (the declared descriptions) does not see them */
    memset(&it, 0, sizeof it);
    it.ext_id = "NEW2";
    it.category = "Evil|Labels";
    it.attrs_json = "{\"description\":\"Evil|Labels\"}";
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    it.ext_id = "i03";
    assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    char *after = declared(s, NULL);
    assert_string_equal(after, before);
    assert_null(strstr(after, "NEW1"));
    assert_null(strstr(after, "Evil"));
    free(after);
    const char *ids[] = {"i00", "i03", "i07", "NEW1", "NEW2"};
    char **texts = NULL;
    size_t found = 9;
    for (int f = 0; f < 2; f++) {
        assert_int_equal(
            pvg_store_catalog_texts(s, ids, 5, (pvg_catalog_field)f, &texts, &found, &err), PVG_OK);
        assert_int_equal(found, f ? 0 : 3); /* the shop's catalogue declares no descriptions */
        for (int i = 0; i < 5; i++)
            if (texts[i]) {
                assert_null(strstr(texts[i], "TEACUP TEACUP"));
                assert_null(strstr(texts[i], "LANTERN CANDLE"));
                assert_null(strstr(texts[i], "Evil"));
            }
        assert_null(texts[3]);
        assert_null(texts[4]);
        pvg_catalog_titles_free(texts, 5);
    }
    /* erasure leaves it (not personal) */
    assert_int_equal(pvg_store_user_delete(s, "99999", &err), PVG_OK);
    after = declared(s, NULL);
    assert_string_equal(after, before);
    free(after);
    free(before);
    pvg_store_free(s);
    t_rm_rf(base);
    free(base);
}

/* ---- store-trained DP-EASE ---- */

static pvg_model *train_store(pvg_store *s, double eps, uint64_t seed)
{
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_status st = pvg_dataset_load_store(s, NULL, &ds, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "dataset: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    p.dp_epsilon = eps;
    p.dp_delta = 1e-6;
    p.dp_max_items = 4;
    p.dp_rng = rng;
    p.dp_allow_insecure_rng = 1;
    p.ease_lambda = 5;
    pvg_model *m = NULL;
    st = pvg_model_train(ds, &p, &m, NULL, &err);
    if (st != PVG_OK) fprintf(stderr, "train: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    pvg_rng_free(rng);
    pvg_dataset_free(ds);
    return m;
}

/* The text part of a text-only DP-EASE (eps < 5): B_ij = 0.2 S_ij
 * ((pop_j + 1) / (max pop + 1))^0.5, so S_ij = B_ij / (0.2 (..)^0.5). */
static void text_prior_of(const pvg_model *m, float *S)
{
    size_t n = pvg_model_n_items(m);
    double pmax = 0;
    for (size_t j = 0; j < n; j++)
        if (m->popularity[j] > pmax) pmax = m->popularity[j];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            /* the text-only model's prior: c 0.2, popularity power 0.5 */
            S[i * n + j] = (float)(m->ease_B[i * n + j] /
                                   (0.2 * pow((m->popularity[j] + 1) / (pmax + 1), 0.5)));
}

/* Neighbouring stores: B holds A's shoppers and one more whose rows carry
 * odd descriptions (renaming catalogue items) and a new item. The DP
 * model's vocabulary and its text prior are the same in both: they come
 * from the declared catalogue alone. (Before the declared catalogue a
 * store-trained DP-EASE had no text at all, and its vocabulary, the items
 * flagged as catalog, took in the odd shopper's new item.) */
static void test_dp_prior_neighbours(void **state)
{
    (void)state;
    char *base = t_tmpdir("catalog"), da[512], db[512];
    static char cat[4096], sales[65536];
    shop_catalogue(cat, sizeof cat);
    shop_sales(sales, sizeof sales);
    pvg_store *a = new_store(base, "a", da, sizeof da);
    pvg_store *b = new_store(base, "b", db, sizeof db);
    declare_file(a, base, cat);
    declare_file(b, base, cat);
    ingest(a, base, "sales.csv", sales);
    ingest(b, base, "sales.csv", sales);
    ingest(b, base, "odd.csv", ODD_SALES);
    pvg_model *ma = train_store(a, 1, 21), *mb = train_store(b, 1, 21);
    assert_string_equal(ma->dp.mechanism, "dp-ease/discrete-gaussian-popularity+text");
    assert_string_equal(mb->dp.mechanism, "dp-ease/discrete-gaussian-popularity+text");
    size_t n = pvg_model_n_items(ma);
    assert_int_equal(n, N_ITEMS);
    assert_int_equal(pvg_model_n_items(mb), N_ITEMS);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(pvg_model_item_id(ma, (int64_t)i), pvg_model_item_id(mb, (int64_t)i));
    pvg_model_dp_info da_info, db_info;
    assert_int_equal(pvg_model_dp_info_get(ma, &da_info, NULL), PVG_OK);
    assert_int_equal(pvg_model_dp_info_get(mb, &db_info, NULL), PVG_OK);
    assert_int_equal(da_info.vocabulary, PVG_DP_VOCAB_CATALOG);
    float *Sa = malloc(n * n * sizeof *Sa), *Sb = malloc(n * n * sizeof *Sb);
    text_prior_of(ma, Sa);
    text_prior_of(mb, Sb);
    /* and it is the similarity of the declared titles */
    float *S = malloc(n * n * sizeof *S);
    const char *titles[N_ITEMS];
    char tb[N_ITEMS][48];
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(tb[i], sizeof tb[i], "%s model %c", family[i / 6], 'a' + i % 6);
        titles[i] = tb[i];
    }
    size_t linked;
    assert_int_equal(pvg_content_similarity(titles, n, S, &linked, NULL), PVG_OK);
    for (size_t q = 0; q < n * n; q++) {
        assert_true(fabsf(Sa[q] - Sb[q]) < 1e-5f);
        assert_true(fabsf(Sa[q] - S[q]) < 1e-5f);
    }
    free(S);
    free(Sa);
    free(Sb);
    pvg_model_free(ma);
    pvg_model_free(mb);
    /* at eps 8 the Gram corrects the prior: still "+text" */
    ma = train_store(a, 8, 22);
    assert_string_equal(ma->dp.mechanism, "dp-ease/discrete-gaussian-projected-gram+text");
    pvg_model_free(ma);
    pvg_store_free(a);
    pvg_store_free(b);
    t_rm_rf(base);
    free(base);
}

/* Without a declared catalogue a store-trained DP-EASE has no text, even
 * though its items have titles (from the sale rows); its vocabulary is the
 * items the operator put with catalogue data (here a price). */
static void test_dp_without_declared(void **state)
{
    (void)state;
    char *base = t_tmpdir("catalog"), dir[512];
    static char sales[65536];
    shop_sales(sales, sizeof sales);
    pvg_store *s = new_store(base, "d", dir, sizeof dir);
    ingest(s, base, "sales.csv", sales);
    for (int i = 0; i < N_ITEMS; i++) {
        char id[8];
        snprintf(id, sizeof id, "i%02d", i);
        pvg_item it;
        memset(&it, 0, sizeof it);
        it.ext_id = id;
        it.price = 2.5;
        assert_int_equal(pvg_store_item_put(s, &it, NULL, NULL), PVG_OK);
    }
    char *t = item_title(s, "i03");
    assert_string_equal(t, "lantern MODEL D");
    free(t);
    pvg_model *m = train_store(s, 1, 23);
    assert_null(strstr(m->dp.mechanism, "+text"));
    pvg_model_free(m);
    pvg_store_free(s);
    t_rm_rf(base);
    free(base);
}

/* ---- the public domain of DP releases: catalogue loads only ---- */

static int count_flagged_cb(void *ctx, const pvg_item *it)
{
    size_t *n = ctx;
    if (it->catalog) n[0]++;
    if (it->catalog && strcmp(it->ext_id, "NEW1") == 0) n[1]++;
    return 0;
}

/* n[0]: catalog items, n[1]: of them NEW1 (the odd shopper's own item) */
static void count_flagged(pvg_store *s, size_t n[2])
{
    n[0] = n[1] = 0;
    pvg_error err;
    assert_int_equal(pvg_store_items_foreach(s, count_flagged_cb, n, &err), PVG_OK);
}

static pvg_status top_items(pvg_store *s, pvg_query_result **r, pvg_error *err)
{
    pvg_query_spec sp;
    pvg_query_spec_init(&sp);
    sp.kind = PVG_QUERY_TOP_ITEMS;
    sp.top = 100; /* more than the candidates: every candidate is released */
    sp.epsilon = 1;
    sp.delta = 1e-6;
    sp.allow_insecure_rng = 1;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(31);
    *r = NULL;
    pvg_status st = pvg_query_run(s, &sp, rng, r, err);
    pvg_rng_free(rng);
    return st;
}

static pvg_status train_dp(pvg_store *s, pvg_model **m, pvg_error *err)
{
    pvg_dataset *ds = NULL;
    *m = NULL;
    pvg_status st = pvg_dataset_load_store(s, NULL, &ds, NULL, err);
    if (st != PVG_OK) return st;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(32);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_EASE, &p);
    p.dp_epsilon = 1;
    p.dp_delta = 1e-6;
    p.dp_max_items = 4;
    p.dp_rng = rng;
    p.dp_allow_insecure_rng = 1;
    p.ease_lambda = 5;
    st = pvg_model_train(ds, &p, m, NULL, err);
    pvg_rng_free(rng);
    pvg_dataset_free(ds);
    return st;
}

/* A store whose items come only from transactions (sale rows with a
 * Description and a price, one shopper buying an item nobody else has):
 * no item is a catalog item, so no DP release has a candidate at all - the
 * top-items query and DP training refuse, telling the operator to import
 * the catalogue - although every item keeps its display title and price.
 * (Before, a sale row's Description made its item a catalog item, and the
 * odd shopper's NEW1 was a candidate of every release: its presence told
 * that someone bought it.) Once the operator declares the catalogue, its
 * items alone are the candidates, NEW1 still not among them. */
static void test_sales_make_no_domain(void **state)
{
    (void)state;
    char *base = t_tmpdir("catalog"), dir[512];
    static char cat[4096], sales[65536];
    shop_catalogue(cat, sizeof cat);
    shop_sales(sales, sizeof sales);
    pvg_store *s = new_store(base, "d", dir, sizeof dir);
    ingest(s, base, "sales.csv", sales);
    ingest(s, base, "odd.csv", ODD_SALES);
    pvg_error err;
    assert_int_equal(pvg_ledger_total_set(s, "test", 10, 1e-5, 0, &err), PVG_OK);
    /* the events API's stub neither */
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.item = "EV1";
    e.ts = 1291200000;
    pvg_event_in in = {"88888", &e, NULL, 0};
    pvg_event_out out;
    assert_int_equal(pvg_store_events_put(s, &in, 1, &out, NULL, NULL, &err), PVG_OK);
    assert_int_equal(out.status, PVG_OK);
    pvg_query_result *r = NULL;
    assert_int_equal(top_items(s, &r, &err), PVG_ERR_INVALID);
    assert_null(r);
    assert_non_null(strstr(err.text, "import the catalog"));
    pvg_model *m = NULL;
    assert_int_not_equal(train_dp(s, &m, &err), PVG_OK);
    assert_null(m);
    assert_non_null(strstr(err.text, "import the catalog"));
    /* the root: no item is a catalog item, though each has its row's title and price */
    pvg_item *it = NULL;
    assert_int_equal(pvg_store_item_get(s, "NEW1", &it, &err), PVG_OK);
    assert_string_equal(it->title, "CANDLE LANTERN TEACUP DOORMAT MODEL");
    assert_true(fabs(it->price - 9.99) < 1e-9);
    assert_int_equal(it->catalog, 0);
    pvg_item_free(it);
    size_t n[2];
    count_flagged(s, n);
    assert_int_equal(n[0], 0);
    /* the operator declares the catalogue (without NEW1) */
    declare_file(s, base, cat);
    count_flagged(s, n);
    assert_int_equal(n[0], N_ITEMS);
    assert_int_equal(n[1], 0);
    /* a later sale row of NEW1 does not flag it either */
    ingest(s, base, "odd2.csv", ODD_SALES);
    count_flagged(s, n);
    assert_int_equal(n[0], N_ITEMS);
    pvg_status qs = top_items(s, &r, &err);
    if (qs != PVG_OK) fprintf(stderr, "top-items: %s\n", err.text);
    assert_int_equal(qs, PVG_OK);
    assert_int_equal(r->n_rows, N_ITEMS);
    for (size_t i = 0; i < r->n_rows; i++) {
        assert_string_not_equal(r->rows[i].group, "NEW1");
        assert_string_not_equal(r->rows[i].group, "EV1");
    }
    pvg_query_result_free(r);
    pvg_status st = train_dp(s, &m, &err);
    if (st != PVG_OK) fprintf(stderr, "train: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    assert_int_equal(pvg_model_n_items(m), N_ITEMS);
    assert_true(pvg_model_item_index(m, "NEW1") < 0);
    pvg_model_free(m);
    pvg_store_free(s);
    t_rm_rf(base);
    free(base);
}

/* The operator's catalogue loads flag their items: a MovieLens u.item, the
 * native JSONL's item records, pvg_store_item_put with catalogue data;
 * a bare put and the ratings that name an unknown movie do not. */
static void test_catalogue_loads_flag(void **state)
{
    (void)state;
    char *base = t_tmpdir("catalog"), dir[512], path[600];
    pvg_store *s = new_store(base, "d", dir, sizeof dir);
    pvg_ingest_options o;
    memset(&o, 0, sizeof o);
    pvg_ingest_stats st;
    pvg_error err;
    snprintf(path, sizeof path, "%s/u.item", base);
    t_write_file(
        path, "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
              "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n");
    assert_int_equal(pvg_store_ingest_file(s, path, PVG_FORMAT_MOVIELENS_ITEMS, &o, &st, &err),
                     PVG_OK);
    snprintf(path, sizeof path, "%s/u.data", base);
    t_write_file(path, "196\t1\t3\t881250949\n186\t3\t3\t891717742\n");
    assert_int_equal(pvg_store_ingest_file(s, path, PVG_FORMAT_MOVIELENS, &o, &st, &err), PVG_OK);
    snprintf(path, sizeof path, "%s/native.jsonl", base);
    t_write_file(path, "{\"type\":\"purchase\",\"user\":\"u1\",\"item\":\"j2\",\"ts\":1291200000}\n"
                       "{\"type\":\"item\",\"item\":\"j1\",\"title\":\"Jar\"}\n"
                       "{\"type\":\"item\",\"item\":\"j2\"}\n");
    pvg_status rc = pvg_store_ingest_file(s, path, PVG_FORMAT_JSONL, &o, &st, &err);
    if (rc != PVG_OK) fprintf(stderr, "ingest: %s\n", err.text);
    assert_int_equal(rc, PVG_OK);
    assert_int_equal(st.rejected, 0);
    pvg_item put;
    memset(&put, 0, sizeof put);
    put.ext_id = "p1";
    put.title = "Pot";
    put.price = -1;
    assert_int_equal(pvg_store_item_put(s, &put, NULL, &err), PVG_OK);
    put.ext_id = "p2";
    put.title = NULL;
    assert_int_equal(pvg_store_item_put(s, &put, NULL, &err), PVG_OK);
    static const struct {
        const char *id;
        int catalog;
    } want[] = {{"1", 1}, {"2", 1}, {"3", 0}, {"j1", 1}, {"j2", 1}, {"p1", 1}, {"p2", 0}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        pvg_item *it = NULL;
        assert_int_equal(pvg_store_item_get(s, want[i].id, &it, &err), PVG_OK);
        if (it->catalog != want[i].catalog) fprintf(stderr, "item %s\n", want[i].id);
        assert_int_equal(it->catalog, want[i].catalog);
        pvg_item_free(it);
    }
    pvg_store_free(s);
    t_rm_rf(base);
    free(base);
}

/* ---- a store copy carries it ---- */

static void test_copy(void **state)
{
    (void)state;
    char *base = t_tmpdir("catalog"), dir[512], to[600];
    pvg_store *s = new_store(base, "d", dir, sizeof dir);
    pvg_catalog_entry e[] = {{"k1", "Kettle", "steel"}, {"k2", "Kitchen scale", NULL}};
    pvg_error err;
    assert_int_equal(pvg_store_catalog_declare(s, e, 2, &err), PVG_OK);
    char *before = declared(s, NULL);
    pvg_store_free(s);
    snprintf(to, sizeof to, "%s/copy", base);
    pvg_store_copy_report r;
    pvg_status st = pvg_store_copy(dir, to, NULL, &r, &err); /* into SQLite */
    if (st != PVG_OK) fprintf(stderr, "copy: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    assert_int_equal(pvg_store_open(to, &s, &err), PVG_OK);
    char *after = declared(s, NULL);
    assert_string_equal(after, before);
    free(after);
    free(before);
    pvg_store_free(s);
    t_rm_rf(base);
    free(base);
}

/* ---- an older SQLite store gets the table on open ---- */

static void test_sqlite_older_store(void **state)
{
    (void)state;
    t_rawdb_require_sqlite_env();
    char *base = t_tmpdir("catalog"), dir[512];
    pvg_store *s = new_store(base, "d", dir, sizeof dir);
    pvg_store_free(s);
    assert_int_equal(t_rawdb_exec(dir, "privguide.db", "DROP TABLE catalog_text"), SQLITE_OK);
    pvg_error err;
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    size_t n = 9;
    char *t = declared(s, &n);
    assert_int_equal(n, 0);
    free(t);
    pvg_catalog_entry e[] = {{"m1", "Mat", NULL}};
    assert_int_equal(pvg_store_catalog_declare(s, e, 1, &err), PVG_OK);
    pvg_store_free(s);
    t_rm_rf(base);
    free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_declare_foreach_titles), cmocka_unit_test(test_import_files),
        cmocka_unit_test(test_sales_never_declare),    cmocka_unit_test(test_dp_prior_neighbours),
        cmocka_unit_test(test_dp_without_declared),    cmocka_unit_test(test_copy),
        cmocka_unit_test(test_sqlite_older_store),     cmocka_unit_test(test_sales_make_no_domain),
        cmocka_unit_test(test_catalogue_loads_flag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
