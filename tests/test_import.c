/*
 * test_import.c - every reader on good and malformed input: broken quoting,
 * missing and extra fields, wrong types, overlong lines, invalid UTF-8,
 * Latin-1, empty files, header only; the exact reason code and line number
 * of each reject; date and id normalisation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/import.h>
#include <privguide/store.h>

#include "store/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static char tmp_path[64];

static const char *write_tmp(const char *text, size_t len)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/pvg-test-import-XXXXXX");
    int fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return tmp_path;
}

typedef struct expect {
    long line;
    int kind;
    const char *reason; /* for rejects */
    const char *user;   /* for events */
} expect;

/* Reads `text` in `fmt` and checks each record against exp[0..n). */
static void check(pvg_format fmt, const char *text, const pvg_reader_options *o, const expect *exp,
                  size_t n)
{
    const char *p = write_tmp(text, strlen(text));
    pvg_reader *r = NULL;
    pvg_error err;
    pvg_status st = pvg_reader_open(p, fmt, o, &r, &err);
    if (st != PVG_OK) fail_msg("open: %s", err.text);
    pvg_record rec;
    size_t i = 0;
    int rc;
    while ((rc = pvg_reader_next(r, &rec, &err)) == 1) {
        if (i >= n)
            fail_msg("unexpected record at line %ld (reason %s)", rec.line,
                     rec.reason ? rec.reason : "-");
        if ((int)rec.kind != exp[i].kind || rec.line != exp[i].line)
            fail_msg("record %zu: kind %d line %ld, expected kind %d line %ld (%s: %s)", i,
                     rec.kind, rec.line, exp[i].kind, exp[i].line, rec.reason ? rec.reason : "-",
                     rec.detail ? rec.detail : "-");
        if (exp[i].reason) {
            assert_non_null(rec.reason);
            if (strcmp(rec.reason, exp[i].reason) != 0)
                fail_msg("line %ld: reason %s (%s), expected %s", rec.line, rec.reason, rec.detail,
                         exp[i].reason);
            assert_non_null(rec.detail);
            assert_true(strlen(rec.detail) > 5);
        }
        if (exp[i].user) assert_string_equal(rec.user, exp[i].user);
        i++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(i, n);
    pvg_reader_free(r);
    unlink(p);
}

static void open_fails(pvg_format fmt, const char *text, const char *what)
{
    const char *p = write_tmp(text, strlen(text));
    pvg_reader *r = NULL;
    pvg_error err;
    assert_int_equal(pvg_reader_open(p, fmt, NULL, &r, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, what));
    assert_int_equal(err.line, 1);
    unlink(p);
}

#define EV PVG_RECORD_EVENT
#define RJ PVG_RECORD_REJECT
#define AN PVG_RECORD_ANONYMOUS
#define IT PVG_RECORD_ITEM
#define HDR "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"

static void test_online_retail(void **state)
{
    (void)state;
    const char *text =
        HDR "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 "
            "08:26:00,2.55,17850.0,United Kingdom\n"
            "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom\n"
            "536366,22633,\"HAND WARMER, UNION JACK\",6,2010-12-01 08:28:00,1.85,,United Kingdom\n"
            "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n"
            "536370,22728,\"BROKEN \"QUOTE\",24,2010-12-01 08:45:00,3.75,12583.0,France\n"
            "536370,22727,ALARM CLOCK,24,2010-12-01 08:45:00,3.75\n"
            "536370,22727,ALARM CLOCK,24,2010-12-01 08:45:00,3.75,12583.0,France,extra\n"
            "536370,22727,ALARM CLOCK,two,2010-12-01 08:45:00,3.75,12583.0,France\n"
            "536370,22727,ALARM CLOCK,24,2010-13-01 08:45:00,3.75,12583.0,France\n"
            "536370,22727,ALARM CLOCK,24,2010-12-01 08:45:00,cheap,12583.0,France\n"
            "536370,22727,ALARM CLOCK,24,2010-12-01 08:45:00,3.75,12583.5,France\n"
            "536370,22727,ALARM CLOCK,-3,2010-12-01 08:45:00,3.75,,United Kingdom\n"
            "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,United Kingdom\n"
            "\n"
            "536370,\"22727\",\"ALARM \"\"BAKELIKE\"\" CLOCK\",24,2010-12-01 "
            "08:45:00,3.75,12583.0,France\n"
            "536371,22086,\"PAPER CHAIN KIT\n 50'S CHRISTMAS \",80,2010-12-01 "
            "09:00:00,2.55,13748.0,United Kingdom\n"
            "536372,22632,\"NEVER CLOSED,1,2010-12-01 09:01:00,1.85,17850.0,United Kingdom\n";
    const expect exp[] = {
        {2, EV, NULL, "17850"},
        {3, EV, NULL, "17850"},
        {4, AN, NULL, NULL},
        {5, EV, NULL, "14527"},
        {6, RJ, "bad_quoting", NULL},
        {7, RJ, "missing_fields", NULL},
        {8, RJ, "extra_fields", NULL},
        {9, RJ, "bad_quantity", NULL},
        {10, RJ, "bad_date", NULL},
        {11, RJ, "bad_price", NULL},
        {12, RJ, "bad_user_id", NULL},
        {13, RJ, "negative_quantity", NULL},
        {14, RJ, "adjustment_invoice", NULL},
        {15, RJ, "empty_line", NULL},
        {16, EV, NULL, "12583"},
        {17, EV, NULL, "13748"},
        {19, RJ, "bad_quoting", NULL},
    };
    check(PVG_FORMAT_ONLINE_RETAIL, text, NULL, exp, sizeof exp / sizeof *exp);

    /* event content of the first rows */
    const char *p = write_tmp(text, strlen(text));
    pvg_reader *r;
    pvg_error err;
    assert_int_equal(pvg_reader_open(p, PVG_FORMAT_ONLINE_RETAIL, NULL, &r, &err), PVG_OK);
    pvg_record rec;
    assert_int_equal(pvg_reader_next(r, &rec, &err), 1);
    assert_int_equal(rec.event.type, PVG_EVENT_PURCHASE);
    assert_int_equal(rec.event.ts, 1291191960); /* 2010-12-01 08:26:00 UTC */
    assert_string_equal(rec.event.item, "85123A");
    assert_true(rec.event.quantity == 6);
    assert_true(rec.event.amount == 15.3);
    assert_string_equal(rec.event.country, "United Kingdom");
    assert_string_equal(rec.item.title, "WHITE HANGING HEART T-LIGHT HOLDER");
    assert_string_equal(rec.item.category, "holder");
    assert_int_equal(pvg_reader_next(r, &rec, &err), 1);
    assert_int_equal(rec.event.ts, 1291191960); /* the US-style date is the same instant */
    assert_int_equal(pvg_reader_next(r, &rec, &err), 1);
    assert_string_equal(rec.item.title, "HAND WARMER, UNION JACK");
    assert_int_equal(pvg_reader_next(r, &rec, &err), 1);
    assert_int_equal(rec.event.type, PVG_EVENT_RETURN);
    assert_true(rec.event.amount == -27.5);
    pvg_reader_free(r);
    unlink(p);

    open_fails(PVG_FORMAT_ONLINE_RETAIL, "", "empty file");
    open_fails(PVG_FORMAT_ONLINE_RETAIL, "a,b,c\n1,2,3\n", "expected the header");
    check(PVG_FORMAT_ONLINE_RETAIL, HDR, NULL, NULL, 0); /* header only */
    check(PVG_FORMAT_ONLINE_RETAIL, "\xEF\xBB\xBF" HDR "\r\n", NULL,
          (const expect[]){{2, RJ, "empty_line", NULL}}, 1); /* BOM and CRLF */
}

static void test_encodings(void **state)
{
    (void)state;
    /* "£" in Latin-1 is the single byte 0xA3 */
    const char *text = HDR "536365,G1,GIFT VOUCHER \xA3"
                           "10,1,2010-12-01 08:26:00,10,17850.0,United Kingdom\n";
    pvg_reader_options o = {0};
    o.encoding = PVG_ENCODING_UTF8;
    check(PVG_FORMAT_ONLINE_RETAIL, text, &o, (const expect[]){{2, RJ, "invalid_utf8", NULL}}, 1);
    o.encoding = PVG_ENCODING_AUTO;
    const char *p = write_tmp(text, strlen(text));
    pvg_reader *r;
    pvg_error err;
    assert_int_equal(pvg_reader_open(p, PVG_FORMAT_ONLINE_RETAIL, &o, &r, &err), PVG_OK);
    pvg_record rec;
    assert_int_equal(pvg_reader_next(r, &rec, &err), 1);
    assert_string_equal(rec.item.title, "GIFT VOUCHER \xC2\xA3"
                                        "10");
    pvg_reader_free(r);
    unlink(p);
    assert_int_equal(pvg_utf8_invalid_at("ok\xC0\x80", 4), 2);   /* overlong */
    assert_int_equal(pvg_utf8_invalid_at("\xED\xA0\x80", 3), 0); /* surrogate */
    assert_int_equal(pvg_utf8_invalid_at("caf\xC3\xA9", 5), -1);
    assert_int_equal(pvg_utf8_invalid_at("\xF4\x90\x80\x80", 4), 0); /* > U+10FFFF */
}

static void test_overlong_lines(void **state)
{
    (void)state;
    size_t big = 5000;
    char *text = malloc(big + 400);
    strcpy(text, HDR);
    size_t n = strlen(text);
    memcpy(text + n, "536365,X,", 9);
    n += 9;
    memset(text + n, 'A', big);
    n += big;
    strcpy(text + n, ",1,2010-12-01 08:26:00,1,17850.0,UK\n"
                     "536365,Y,SHORT,1,2010-12-01 08:26:00,1,17850.0,UK\n");
    pvg_reader_options o = {0};
    o.max_line_bytes = 1024;
    const expect exp[] = {{2, RJ, "line_too_long", NULL}, {3, EV, NULL, "17850"}};
    check(PVG_FORMAT_ONLINE_RETAIL, text, &o, exp, 2);
    free(text);
}

static void test_movielens(void **state)
{
    (void)state;
    check(PVG_FORMAT_MOVIELENS,
          "196\t242\t3\t881250949\n186\t302\t3."
          "5\t891717742\n22\t377\n1\t2\t3\t4\t5\n1\t2\tx\t4\n1\t2\t3\t-4\n",
          NULL,
          (const expect[]){{1, EV, NULL, "196"},
                           {2, EV, NULL, "186"},
                           {3, RJ, "missing_fields", NULL},
                           {4, RJ, "extra_fields", NULL},
                           {5, RJ, "bad_rating", NULL},
                           {6, RJ, "bad_timestamp", NULL}},
          6);
    check(PVG_FORMAT_MOVIELENS, "1::1193::5::978300760\n1::661\n", NULL,
          (const expect[]){{1, EV, NULL, "1"}, {2, RJ, "missing_fields", NULL}}, 2);
    check(PVG_FORMAT_MOVIELENS, "", NULL, NULL, 0); /* empty file: no rows */
    check(
        PVG_FORMAT_MOVIELENS_ITEMS,
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
        "2::Jumanji (1995)::Adventure|Children's|Fantasy\n|x\n",
        NULL,
        (const expect[]){{1, IT, NULL, NULL}, {2, IT, NULL, NULL}, {3, RJ, "missing_fields", NULL}},
        3);
}

static void test_retailrocket(void **state)
{
    (void)state;
    check(PVG_FORMAT_RETAILROCKET,
          "timestamp,visitorid,event,itemid,transactionid\n"
          "1433221332117,257597,view,355908,\n"
          "1433224214164,992329,addtocart,248676,\n"
          "1433221999827,111016,transaction,187946,4000\n"
          "1433221999827,111016,wishlist,187946,\n"
          "x,111016,view,187946,\n"
          "1433221999827,111016,view\n",
          NULL,
          (const expect[]){{2, EV, NULL, "257597"},
                           {3, EV, NULL, "992329"},
                           {4, EV, NULL, "111016"},
                           {5, RJ, "unknown_event_type", NULL},
                           {6, RJ, "bad_timestamp", NULL},
                           {7, RJ, "missing_fields", NULL}},
          6);
}

static void test_amazon(void **state)
{
    (void)state;
    check(PVG_FORMAT_AMAZON_REVIEWS,
          "{\"reviewerID\": \"A2IBPI20UZIR0U\", \"asin\": \"1384719342\", \"overall\": 5.0, "
          "\"unixReviewTime\": 1393545600}\n"
          "{\"reviewerID\": \"A2\", \"asin\": \"1\", \"overall\": \"five\", \"unixReviewTime\": "
          "1393545600}\n"
          "{\"reviewerID\": \"A2\", \"asin\": \"1\", \"overall\": 4}\n"
          "{\"reviewerID\": \"A2\", \"asin\": \"1\", \"overall\": 4, \"unixReviewTime\": 1\n"
          "[1,2]\n"
          "{\"reviewerID\": \"A\xff\", \"asin\": \"1\", \"overall\": 4, \"unixReviewTime\": 1}\n"
          "{\"asin\": \"1\", \"overall\": 4, \"unixReviewTime\": 1}\n",
          NULL,
          (const expect[]){{1, EV, NULL, "A2IBPI20UZIR0U"},
                           {2, RJ, "bad_rating", NULL},
                           {3, RJ, "missing_fields", NULL},
                           {4, RJ, "bad_json", NULL},
                           {5, RJ, "not_an_object", NULL},
                           {6, RJ, "invalid_utf8", NULL},
                           {7, RJ, "missing_fields", NULL}},
          7);
}

static void test_jsonl(void **state)
{
    (void)state;
    check(
        PVG_FORMAT_JSONL,
        "{\"type\":\"view\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":1700000000}\n"
        "{\"type\":\"view\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":\"2023-11-14T22:13:20+01:00\"}\n"
        "{\"type\":\"teleport\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":1}\n"
        "{\"type\":\"view\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":\"yesterday\"}\n"
        "{\"type\":\"purchase\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":1,\"quantity\":\"2\"}\n"
        "{\"type\":\"search\",\"user\":\"u1\",\"ts\":1}\n"
        "{\"type\":\"view\",\"item\":\"i1\",\"ts\":1}\n"
        "{\"type\":\"item\",\"item\":\"i1\",\"title\":\"Mug\",\"price\":-1}\n"
        "{\"type\":\"item\",\"item\":\"i2\",\"title\":\"Cup\",\"attributes\":{\"colour\":\"red\"}}"
        "\n"
        "{\"type\":\"view\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":1,\"ts\":2}\n"
        "{\"type\":\"rating\",\"user\":42,\"item\":7,\"ts\":1,\"rating\":4}\n"
        "{\"type\":\"rating\",\"user\":\"42.0\",\"item\":\"7\",\"ts\":1,\"rating\":4}\n",
        NULL,
        (const expect[]){{1, EV, NULL, "u1"},
                         {2, EV, NULL, "u1"},
                         {3, RJ, "unknown_event_type", NULL},
                         {4, RJ, "bad_timestamp", NULL},
                         {5, RJ, "bad_type", NULL},
                         {6, RJ, "missing_fields", NULL},
                         {7, AN, NULL, NULL},
                         {8, RJ, "bad_price", NULL},
                         {9, IT, NULL, NULL},
                         {10, RJ, "bad_json", NULL},
                         /* ids are JSON strings, as in the API (one parser for both) */
                         {11, RJ, "bad_type", NULL},
                         {12, EV, NULL, "42"}},
        12);
}

static void test_tsv(void **state)
{
    (void)state;
    check(PVG_FORMAT_TSV,
          "u1\ti1\t1.5\nu1\ti2\t2\t1700000000\nu1\ti2\nu1\ti2\theavy\nu1\ti2\t1\tnow\n\ti2\t1\n",
          NULL,
          (const expect[]){{1, EV, NULL, "u1"},
                           {2, EV, NULL, "u1"},
                           {3, RJ, "missing_fields", NULL},
                           {4, RJ, "bad_weight", NULL},
                           {5, RJ, "bad_timestamp", NULL},
                           {6, RJ, "bad_user_id", NULL}},
          6);
}

static void test_gzip_and_dates(void **state)
{
    (void)state;
    char path[] = "/tmp/pvg-test-import-gz-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    gzFile gz = gzdopen(fd, "wb");
    gzputs(gz, "7\t8\t4\t881250949\n");
    gzclose(gz);
    pvg_reader *r;
    pvg_error err;
    assert_int_equal(pvg_reader_open(path, PVG_FORMAT_MOVIELENS, NULL, &r, &err), PVG_OK);
    pvg_record rec;
    assert_int_equal(pvg_reader_next(r, &rec, &err), 1);
    assert_string_equal(rec.user, "7");
    assert_int_equal(pvg_reader_next(r, &rec, &err), 0);
    pvg_reader_free(r);
    unlink(path);
    assert_int_equal(pvg_reader_open("/nonexistent/file", PVG_FORMAT_TSV, NULL, &r, &err),
                     PVG_ERR_NOT_FOUND);

    int64_t t;
    assert_int_equal(pvg_parse_datetime("2011-12-09 12:50:00", &t), 0);
    assert_int_equal(t, 1323435000);
    assert_int_equal(pvg_parse_datetime("12/9/2011 12:50", &t), 0);
    assert_int_equal(t, 1323435000);
    assert_int_equal(pvg_parse_datetime("2011-12-09T13:50:00+01:00", &t), 0);
    assert_int_equal(t, 1323435000);
    assert_int_equal(pvg_parse_datetime("2012-02-29", &t), 0);
    assert_int_equal(pvg_parse_datetime("2011-02-29", &t), -1);
    assert_int_equal(pvg_parse_datetime("2011-12-09 25:00", &t), -1);
    assert_int_equal(pvg_parse_datetime("2011-12-09 12:50:00 junk", &t), -1);
    char buf[32];
    pvg_format_datetime(1323435000, buf, sizeof buf);
    assert_string_equal(buf, "2011-12-09T12:50:00Z");
}

/* ---- ids: normalised once, never truncated ---- */

static void test_user_id_normalize(void **state)
{
    (void)state;
    static const char *const cases[][2] = {{"17850", "17850"},
                                           {"17850.0", "17850"},
                                           {"17850.00", "17850"},
                                           {" 17850 ", "17850"},
                                           {"\t17850.0\t", "17850"},
                                           {"017850", "017850"},
                                           {"17850.5", "17850.5"},
                                           {"17850.", "17850."},
                                           {"c-17850.0", "c-17850.0"},
                                           {"1.0.0", "1.0.0"},
                                           {"u1", "u1"},
                                           {"A2IBPI20UZIR0U", "A2IBPI20UZIR0U"}};
    char out[PVG_ID_MAX + 1];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = "x";
        assert_int_equal(pvg_user_id_normalize(cases[i][0], out, sizeof out, &why, NULL), PVG_OK);
        assert_null(why);
        assert_string_equal(out, cases[i][1]);
    }
    /* in place */
    char buf[32] = "17850.0";
    assert_int_equal(pvg_user_id_normalize(buf, buf, sizeof buf, NULL, NULL), PVG_OK);
    assert_string_equal(buf, "17850");
    /* refusals: reason code, and the error text never quotes the id */
    char longid[PVG_ID_MAX + 2];
    memset(longid, 'A', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    const char *bad[] = {"", "  ",
                         "a\x01"
                         "b",
                         "tab\tinside\n", longid};
    const char *want[] = {"bad_user_id", "bad_user_id", "bad_user_id", "bad_user_id",
                          "id_too_long"};
    for (size_t i = 0; i < 5; i++) {
        const char *why = NULL;
        pvg_error err;
        pvg_error_clear(&err);
        assert_int_equal(pvg_user_id_normalize(bad[i], out, sizeof out, &why, &err),
                         PVG_ERR_INVALID);
        assert_non_null(why);
        assert_string_equal(why, want[i]);
        assert_null(strstr(err.text, "AAAA"));
    }
    /* exactly PVG_ID_MAX bytes is fine; the buffer limit counts too */
    longid[PVG_ID_MAX] = '\0';
    assert_int_equal(pvg_user_id_normalize(longid, out, sizeof out, NULL, NULL), PVG_OK);
    assert_int_equal(strlen(out), PVG_ID_MAX);
    const char *why = NULL;
    assert_int_equal(pvg_user_id_normalize("123456", buf, 4, &why, NULL), PVG_ERR_INVALID);
    assert_string_equal(why, "id_too_long");
    assert_null(pvg_item_id_check("85123A"));
    assert_string_equal(pvg_item_id_check(""), "missing_item");
    assert_string_equal(pvg_item_id_check("a\x7f"), "bad_item_id");
    longid[PVG_ID_MAX] = 'A';
    assert_string_equal(pvg_item_id_check(longid), "id_too_long");
}

/* Reads a file of `fmt` and returns its records' users ("" for a reject,
 * followed by the reason) joined by '|', into out. */
static void users_of(pvg_format fmt, const char *text, char *out, size_t cap)
{
    const char *p = write_tmp(text, strlen(text));
    pvg_reader *r = NULL;
    pvg_error err;
    if (pvg_reader_open(p, fmt, NULL, &r, &err) != PVG_OK) fail_msg("open: %s", err.text);
    pvg_record rec;
    out[0] = '\0';
    while (pvg_reader_next(r, &rec, &err) == 1) {
        size_t n = strlen(out);
        if (rec.kind == PVG_RECORD_REJECT)
            snprintf(out + n, cap - n, "!%s|", rec.reason);
        else
            snprintf(out + n, cap - n, "%s|", rec.user ? rec.user : "-");
    }
    pvg_reader_free(r);
    unlink(p);
}

/* Two reviewers A*127+"X" and A*127+"Y" stay two shoppers in every reader
 * (they were cut at 127 bytes and merged); beyond PVG_ID_MAX bytes a user
 * or item id is refused with id_too_long, never truncated. */
static void test_long_ids_never_truncated(void **state)
{
    (void)state;
    char a127[128], x[300], y[300], huge[PVG_ID_MAX + 2];
    memset(a127, 'A', 127);
    a127[127] = '\0';
    snprintf(x, sizeof x, "%sX", a127);
    snprintf(y, sizeof y, "%sY", a127);
    memset(huge, 'B', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0'; /* PVG_ID_MAX + 1 bytes */
    char want[1200], got[2000], text[4000];
    snprintf(want, sizeof want, "%s|%s|!id_too_long|!id_too_long|", x, y);

    snprintf(text, sizeof text, "%s\t1\t5\t1\n%s\t1\t5\t1\n%s\t1\t5\t1\nu\t%s\t5\t1\n", x, y, huge,
             huge);
    users_of(PVG_FORMAT_MOVIELENS, text, got, sizeof got);
    assert_string_equal(got, want);

    snprintf(text, sizeof text,
             "timestamp,visitorid,event,itemid,transactionid\n1000,%s,view,1,\n1000,%s,view,1,\n"
             "1000,%s,view,1,\n1000,u,view,%s,\n",
             x, y, huge, huge);
    users_of(PVG_FORMAT_RETAILROCKET, text, got, sizeof got);
    assert_string_equal(got, want);

    snprintf(text, sizeof text,
             "{\"reviewerID\":\"%s\",\"asin\":\"1\",\"overall\":5,\"unixReviewTime\":1}\n"
             "{\"reviewerID\":\"%s\",\"asin\":\"1\",\"overall\":5,\"unixReviewTime\":1}\n"
             "{\"reviewerID\":\"%s\",\"asin\":\"1\",\"overall\":5,\"unixReviewTime\":1}\n"
             "{\"reviewerID\":\"u\",\"asin\":\"%s\",\"overall\":5,\"unixReviewTime\":1}\n",
             x, y, huge, huge);
    users_of(PVG_FORMAT_AMAZON_REVIEWS, text, got, sizeof got);
    assert_string_equal(got, want);

    snprintf(text, sizeof text,
             "{\"type\":\"view\",\"user\":\"%s\",\"item\":\"1\",\"ts\":1}\n"
             "{\"type\":\"view\",\"user\":\"%s\",\"item\":\"1\",\"ts\":1}\n"
             "{\"type\":\"view\",\"user\":\"%s\",\"item\":\"1\",\"ts\":1}\n"
             "{\"type\":\"view\",\"user\":\"u\",\"item\":\"%s\",\"ts\":1}\n",
             x, y, huge, huge);
    users_of(PVG_FORMAT_JSONL, text, got, sizeof got);
    assert_string_equal(got, want);

    snprintf(text, sizeof text, "%s\t1\t1\n%s\t1\t1\n%s\t1\t1\nu\t%s\t1\n", x, y, huge, huge);
    users_of(PVG_FORMAT_TSV, text, got, sizeof got);
    assert_string_equal(got, want);

    /* online-retail: customer ids are digits; 257 digits are too long, not cut */
    char digits[PVG_ID_MAX + 2];
    memset(digits, '7', sizeof digits - 1);
    digits[sizeof digits - 1] = '\0';
    snprintf(text, sizeof text,
             HDR "536365,85123A,MUG,6,12/1/2010 8:26,2.55,%s,United Kingdom\n"
                 "536365,%s,MUG,6,12/1/2010 8:26,2.55,17850.0,United Kingdom\n",
             digits, huge);
    users_of(PVG_FORMAT_ONLINE_RETAIL, text, got, sizeof got);
    assert_string_equal(got, "!id_too_long|!id_too_long|");

    /* movielens items too */
    snprintf(text, sizeof text,
             "%s|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
             huge);
    users_of(PVG_FORMAT_MOVIELENS_ITEMS, text, got, sizeof got);
    assert_string_equal(got, "!id_too_long|");
}

/* A reject never carries a value of the row: not in the detail, not through
 * the JSON parser's error text (which quotes the input). */
static void test_rejects_hold_no_values(void **state)
{
    (void)state;
    static const struct {
        pvg_format fmt;
        const char *text;
        const char *reason, *field;
    } cases[] = {
        {PVG_FORMAT_ONLINE_RETAIL,
         HDR "536365,85123A,MUG,alice.smith@example.com,12/1/2010 8:26,2.55,17850,UK\n",
         "bad_quantity", "Quantity"},
        {PVG_FORMAT_ONLINE_RETAIL,
         HDR "536365,85123A,MUG,6,alice.smith@example.com,2.55,17850,UK\n", "bad_date",
         "InvoiceDate"},
        {PVG_FORMAT_ONLINE_RETAIL,
         HDR "536365,85123A,MUG,6,12/1/2010 8:26,alice.smith@example.com,17850,UK\n", "bad_price",
         "UnitPrice"},
        {PVG_FORMAT_ONLINE_RETAIL,
         HDR "536365,85123A,MUG,6,12/1/2010 8:26,2.55,alice.smith@example.com,UK\n", "bad_user_id",
         "CustomerID"},
        {PVG_FORMAT_ONLINE_RETAIL,
         HDR "A563185,B,Adjust bad debt,1,8/12/2011 14:50,-11062.06,alice.smith@example.com,UK\n",
         "adjustment_invoice", "InvoiceNo"},
        {PVG_FORMAT_ONLINE_RETAIL,
         HDR "C536379,D,Discount,-1,12/1/2010 9:41,-27.50,alice.smith@example.com,UK\n",
         "bad_price", "UnitPrice"},
        {PVG_FORMAT_JSONL, "{\"type\":\"view\",\"user\":alice.smith@example.com}\n", "bad_json",
         NULL},
        {PVG_FORMAT_JSONL,
         "{\"type\":\"view\",\"user\":\"alice.smith@example.com\",\"user\":\"x\"}\n", "bad_json",
         NULL},
        {PVG_FORMAT_JSONL,
         "{\"type\":\"alice.smith@example.com\",\"user\":\"u\",\"item\":\"i\",\"ts\":1}\n",
         "unknown_event_type", "type"},
        {PVG_FORMAT_JSONL,
         "{\"type\":\"view\",\"user\":\"u\",\"item\":\"i\",\"ts\":\"alice.smith@example.com\"}\n",
         "bad_timestamp", "ts"},
        {PVG_FORMAT_JSONL,
         "{\"type\":\"view\",\"user\":\"u\",\"item\":\"i\",\"ts\":1,\"alice.smith@example.com\":1}"
         "\n",
         "unknown_field", NULL},
        {PVG_FORMAT_MOVIELENS, "1\t2\talice.smith@example.com\t3\n", "bad_rating", "rating"},
        {PVG_FORMAT_RETAILROCKET,
         "timestamp,visitorid,event,itemid,transactionid\n1000,1,alice.smith@example.com,1,\n",
         "unknown_event_type", "event"},
        {PVG_FORMAT_TSV, "u\ti\talice.smith@example.com\n", "bad_weight", "weight"},
        {PVG_FORMAT_TSV, "u\ti\t1\talice.smith@example.com\n", "bad_timestamp", "unix_ts"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = write_tmp(cases[i].text, strlen(cases[i].text));
        pvg_reader *r = NULL;
        pvg_error err;
        assert_int_equal(pvg_reader_open(p, cases[i].fmt, NULL, &r, &err), PVG_OK);
        pvg_record rec;
        assert_int_equal(pvg_reader_next(r, &rec, &err), 1);
        if (rec.kind != PVG_RECORD_REJECT || strcmp(rec.reason, cases[i].reason) != 0)
            fail_msg("case %zu: kind %d reason %s, want %s", i, rec.kind,
                     rec.reason ? rec.reason : "-", cases[i].reason);
        if (cases[i].field)
            assert_string_equal(rec.field, cases[i].field);
        else
            assert_null(rec.field);
        if (strstr(rec.detail, "alice") || strstr(rec.detail, "example") || strstr(rec.detail, "@"))
            fail_msg("case %zu: the detail quotes the row: %s", i, rec.detail);
        pvg_reader_free(r);
        unlink(p);
    }
    /* A header mismatch does not echo the first line either. */
    const char *p = write_tmp("alice.smith@example.com,1,2\n", 28);
    pvg_reader *r = NULL;
    pvg_error err;
    assert_int_equal(pvg_reader_open(p, PVG_FORMAT_ONLINE_RETAIL, NULL, &r, &err), PVG_ERR_INVALID);
    assert_null(strstr(err.text, "alice"));
    unlink(p);
}

/* ---- reject files and the CLI's ingest ---- */

static char *tmpdir_new(void)
{
    char *d = strdup("/tmp/pvg-test-import-dir-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static const char REJECTY_CSV[] =
    HDR "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United "
        "Kingdom\n"
        "536366,22633,HAND WARMER UNION JACK,alice.smith@example.com,12/1/2010 "
        "8:28,1.85,17850,United Kingdom\n"
        "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,12/1/2010 "
        "8:34,1.69,alice.smith@example.com,United Kingdom\n";

/* Reject files are created 0600, carry line, offset, reason and field but no
 * value, and a later run never overwrites them. */
static void test_reject_file(void **state)
{
    (void)state;
    char *root = tmpdir_new();
    char dir[300], csv[300], rej[300];
    snprintf(dir, sizeof dir, "%s/data", root);
    snprintf(csv, sizeof csv, "%s/retail.csv", root);
    snprintf(rej, sizeof rej, "%s/rejects.tsv", root);
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fputs(REJECTY_CSV, f);
    fclose(f);
    pvg_error err;
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_init(dir, NULL, &err), PVG_OK);
    assert_int_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    pvg_ingest_options o = {0};
    o.reject_path = rej;
    pvg_ingest_stats st;
    mode_t old = umask(0); /* the file's mode must not depend on the umask */
    pvg_status rc = pvg_store_ingest_file(s, csv, PVG_FORMAT_ONLINE_RETAIL, &o, &st, &err);
    umask(old);
    if (rc != PVG_OK) fail_msg("ingest: %s", err.text);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.rejected, 2);
    struct stat sb;
    assert_int_equal(stat(rej, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char *text = slurp(rej);
    assert_non_null(text);
    assert_null(strstr(text, "alice"));
    assert_null(strstr(text, "17850"));
    assert_non_null(strstr(text, "\n3\t"));
    assert_non_null(strstr(text, "\tbad_quantity\tQuantity\t"));
    assert_non_null(strstr(text, "\n4\t"));
    assert_non_null(strstr(text, "\tbad_user_id\tCustomerID\t"));
    /* a second run refuses the existing file and leaves it as it was */
    rc = pvg_store_ingest_file(s, csv, PVG_FORMAT_ONLINE_RETAIL, &o, &st, &err);
    assert_int_equal(rc, PVG_ERR_IO);
    assert_non_null(strstr(err.text, "exists already"));
    char *again = slurp(rej);
    assert_string_equal(again, text);
    free(again);
    free(text);
    pvg_store_free(s);
    rm_tree(root);
    free(root);
}

/* Runs the CLI with `args` (a shell fragment); returns its exit status. */
static int cli(const char *data, const char *args, const char *out_path)
{
    char cmd[4096];
    int len = snprintf(cmd, sizeof cmd, "'%s' %s --data-dir '%s' >'%s' 2>&1", getenv("PVG_CLI"),
                       args, data, out_path);
    assert_true(len > 0 && (size_t)len < sizeof cmd);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* privguide ingest: exit 1 when nothing was accepted; one new reject file
 * per run, 0600; and the CLI names a shopper "17850.0" as ingest does. */
static void test_cli_ingest(void **state)
{
    (void)state;
    if (!getenv("PVG_CLI")) skip();
    char *root = tmpdir_new();
    char dir[300], csv[300], garbage[300], out[300], args[900], rejdir[320];
    snprintf(dir, sizeof dir, "%s/data", root);
    snprintf(csv, sizeof csv, "%s/retail.csv", root);
    snprintf(garbage, sizeof garbage, "%s/garbage.txt", root);
    snprintf(out, sizeof out, "%s/out.txt", root);
    snprintf(rejdir, sizeof rejdir, "%s/rejects", dir);
    FILE *f = fopen(csv, "w");
    fputs(REJECTY_CSV, f);
    fclose(f);
    f = fopen(garbage, "w");
    fputs("this is not\ta ratings file\nat all\n", f);
    fclose(f);
    assert_int_equal(cli(dir, "init", out), 0);
    /* the wrong format: every row rejected -> exit 1 with a message */
    snprintf(args, sizeof args, "ingest --format movielens '%s'", garbage);
    assert_int_equal(cli(dir, args, out), 1);
    char *text = slurp(out);
    assert_non_null(strstr(text, "none of the 2 rows"));
    free(text);
    /* two runs with rejects: two files, both kept, both 0600 */
    snprintf(args, sizeof args, "ingest --format online-retail '%s'", csv);
    assert_int_equal(cli(dir, args, out), 0);
    assert_int_equal(cli(dir, args, out), 0); /* duplicates are accepted rows */
    DIR *d = opendir(rejdir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, "retail.csv.") && !strstr(de->d_name, "garbage.txt.")) continue;
        char p[700];
        snprintf(p, sizeof p, "%s/%s", rejdir, de->d_name);
        struct stat sb;
        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
        n++;
    }
    closedir(d);
    assert_int_equal(n, 3); /* the movielens run's rejects, and one per retail run */
    /* an explicit --rejects path is never overwritten */
    snprintf(args, sizeof args, "ingest --format online-retail --rejects '%s/r.tsv' '%s'", root,
             csv);
    assert_int_equal(cli(dir, args, out), 0);
    assert_int_equal(cli(dir, args, out), 1);
    /* "17850.0" names the shopper ingest stored as 17850 */
    assert_int_equal(cli(dir, "user export 17850.0", out), 0);
    text = slurp(out);
    assert_non_null(strstr(text, "\"17850\""));
    free(text);
    rm_tree(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_online_retail),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_overlong_lines),
        cmocka_unit_test(test_movielens),
        cmocka_unit_test(test_retailrocket),
        cmocka_unit_test(test_amazon),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_tsv),
        cmocka_unit_test(test_gzip_and_dates),
        cmocka_unit_test(test_user_id_normalize),
        cmocka_unit_test(test_long_ids_never_truncated),
        cmocka_unit_test(test_rejects_hold_no_values),
        cmocka_unit_test(test_reject_file),
        cmocka_unit_test(test_cli_ingest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
