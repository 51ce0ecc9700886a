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

#include "store/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
static void check(pvg_format fmt, const char *text, const pvg_reader_options *o, const expect *exp, size_t n)
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
        if (i >= n) fail_msg("unexpected record at line %ld (reason %s)", rec.line, rec.reason ? rec.reason : "-");
        if ((int)rec.kind != exp[i].kind || rec.line != exp[i].line)
            fail_msg("record %zu: kind %d line %ld, expected kind %d line %ld (%s: %s)", i, rec.kind, rec.line,
                     exp[i].kind, exp[i].line, rec.reason ? rec.reason : "-", rec.detail ? rec.detail : "-");
        if (exp[i].reason) {
            assert_non_null(rec.reason);
            if (strcmp(rec.reason, exp[i].reason) != 0)
                fail_msg("line %ld: reason %s (%s), expected %s", rec.line, rec.reason, rec.detail, exp[i].reason);
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
        HDR
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
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
        "536370,\"22727\",\"ALARM \"\"BAKELIKE\"\" CLOCK\",24,2010-12-01 08:45:00,3.75,12583.0,France\n"
        "536371,22086,\"PAPER CHAIN KIT\n 50'S CHRISTMAS \",80,2010-12-01 09:00:00,2.55,13748.0,United Kingdom\n"
        "536372,22632,\"NEVER CLOSED,1,2010-12-01 09:01:00,1.85,17850.0,United Kingdom\n";
    const expect exp[] = {
        {2, EV, NULL, "17850"}, {3, EV, NULL, "17850"}, {4, AN, NULL, NULL},
        {5, EV, NULL, "14527"}, {6, RJ, "bad_quoting", NULL}, {7, RJ, "missing_fields", NULL},
        {8, RJ, "extra_fields", NULL}, {9, RJ, "bad_quantity", NULL}, {10, RJ, "bad_date", NULL},
        {11, RJ, "bad_price", NULL}, {12, RJ, "bad_user_id", NULL}, {13, RJ, "negative_quantity", NULL},
        {14, RJ, "adjustment_invoice", NULL}, {15, RJ, "empty_line", NULL}, {16, EV, NULL, "12583"},
        {17, EV, NULL, "13748"}, {19, RJ, "bad_quoting", NULL},
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
    const char *text = HDR "536365,G1,GIFT VOUCHER \xA3""10,1,2010-12-01 08:26:00,10,17850.0,United Kingdom\n";
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
    assert_string_equal(rec.item.title, "GIFT VOUCHER \xC2\xA3" "10");
    pvg_reader_free(r);
    unlink(p);
    assert_int_equal(pvg_utf8_invalid_at("ok\xC0\x80", 4), 2);          /* overlong */
    assert_int_equal(pvg_utf8_invalid_at("\xED\xA0\x80", 3), 0);        /* surrogate */
    assert_int_equal(pvg_utf8_invalid_at("caf\xC3\xA9", 5), -1);
    assert_int_equal(pvg_utf8_invalid_at("\xF4\x90\x80\x80", 4), 0);    /* > U+10FFFF */
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
    check(PVG_FORMAT_MOVIELENS, "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n22\t377\n1\t2\t3\t4\t5\n1\t2\tx\t4\n1\t2\t3\t-4\n",
          NULL,
          (const expect[]){{1, EV, NULL, "196"}, {2, EV, NULL, "186"}, {3, RJ, "missing_fields", NULL},
                           {4, RJ, "extra_fields", NULL}, {5, RJ, "bad_rating", NULL},
                           {6, RJ, "bad_timestamp", NULL}},
          6);
    check(PVG_FORMAT_MOVIELENS, "1::1193::5::978300760\n1::661\n", NULL,
          (const expect[]){{1, EV, NULL, "1"}, {2, RJ, "missing_fields", NULL}}, 2);
    check(PVG_FORMAT_MOVIELENS, "", NULL, NULL, 0); /* empty file: no rows */
    check(PVG_FORMAT_MOVIELENS_ITEMS,
          "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
          "2::Jumanji (1995)::Adventure|Children's|Fantasy\n|x\n",
          NULL, (const expect[]){{1, IT, NULL, NULL}, {2, IT, NULL, NULL}, {3, RJ, "missing_fields", NULL}}, 3);
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
          (const expect[]){{2, EV, NULL, "257597"}, {3, EV, NULL, "992329"}, {4, EV, NULL, "111016"},
                           {5, RJ, "unknown_event_type", NULL}, {6, RJ, "bad_timestamp", NULL},
                           {7, RJ, "missing_fields", NULL}},
          6);
}

static void test_amazon(void **state)
{
    (void)state;
    check(PVG_FORMAT_AMAZON_REVIEWS,
          "{\"reviewerID\": \"A2IBPI20UZIR0U\", \"asin\": \"1384719342\", \"overall\": 5.0, \"unixReviewTime\": 1393545600}\n"
          "{\"reviewerID\": \"A2\", \"asin\": \"1\", \"overall\": \"five\", \"unixReviewTime\": 1393545600}\n"
          "{\"reviewerID\": \"A2\", \"asin\": \"1\", \"overall\": 4}\n"
          "{\"reviewerID\": \"A2\", \"asin\": \"1\", \"overall\": 4, \"unixReviewTime\": 1\n"
          "[1,2]\n"
          "{\"reviewerID\": \"A\xff\", \"asin\": \"1\", \"overall\": 4, \"unixReviewTime\": 1}\n"
          "{\"asin\": \"1\", \"overall\": 4, \"unixReviewTime\": 1}\n",
          NULL,
          (const expect[]){{1, EV, NULL, "A2IBPI20UZIR0U"}, {2, RJ, "bad_rating", NULL},
                           {3, RJ, "missing_fields", NULL}, {4, RJ, "bad_json", NULL},
                           {5, RJ, "not_an_object", NULL}, {6, RJ, "invalid_utf8", NULL},
                           {7, RJ, "missing_fields", NULL}},
          7);
}

static void test_jsonl(void **state)
{
    (void)state;
    check(PVG_FORMAT_JSONL,
          "{\"type\":\"view\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":1700000000}\n"
          "{\"type\":\"view\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":\"2023-11-14T22:13:20+01:00\"}\n"
          "{\"type\":\"teleport\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":1}\n"
          "{\"type\":\"view\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":\"yesterday\"}\n"
          "{\"type\":\"purchase\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":1,\"quantity\":\"2\"}\n"
          "{\"type\":\"search\",\"user\":\"u1\",\"ts\":1}\n"
          "{\"type\":\"view\",\"item\":\"i1\",\"ts\":1}\n"
          "{\"type\":\"item\",\"item\":\"i1\",\"title\":\"Mug\",\"price\":-1}\n"
          "{\"type\":\"item\",\"item\":\"i2\",\"title\":\"Cup\",\"attributes\":{\"colour\":\"red\"}}\n"
          "{\"type\":\"view\",\"user\":\"u1\",\"item\":\"i1\",\"ts\":1,\"ts\":2}\n"
          "{\"type\":\"rating\",\"user\":42,\"item\":7,\"ts\":1,\"rating\":4}\n"
          "{\"type\":\"rating\",\"user\":\"42.0\",\"item\":\"7\",\"ts\":1,\"rating\":4}\n",
          NULL,
          (const expect[]){{1, EV, NULL, "u1"}, {2, EV, NULL, "u1"}, {3, RJ, "unknown_event_type", NULL},
                           {4, RJ, "bad_timestamp", NULL}, {5, RJ, "bad_type", NULL},
                           {6, RJ, "missing_fields", NULL}, {7, AN, NULL, NULL}, {8, RJ, "bad_price", NULL},
                           {9, IT, NULL, NULL}, {10, RJ, "bad_json", NULL},
                           /* ids are JSON strings, as in the API (one parser for both) */
                           {11, RJ, "bad_type", NULL}, {12, EV, NULL, "42"}},
          12);
}

static void test_tsv(void **state)
{
    (void)state;
    check(PVG_FORMAT_TSV, "u1\ti1\t1.5\nu1\ti2\t2\t1700000000\nu1\ti2\nu1\ti2\theavy\nu1\ti2\t1\tnow\n\ti2\t1\n",
          NULL,
          (const expect[]){{1, EV, NULL, "u1"}, {2, EV, NULL, "u1"}, {3, RJ, "missing_fields", NULL},
                           {4, RJ, "bad_weight", NULL}, {5, RJ, "bad_timestamp", NULL},
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
    assert_int_equal(pvg_reader_open("/nonexistent/file", PVG_FORMAT_TSV, NULL, &r, &err), PVG_ERR_NOT_FOUND);

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_online_retail), cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_overlong_lines), cmocka_unit_test(test_movielens),
        cmocka_unit_test(test_retailrocket),   cmocka_unit_test(test_amazon),
        cmocka_unit_test(test_jsonl),          cmocka_unit_test(test_tsv),
        cmocka_unit_test(test_gzip_and_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
