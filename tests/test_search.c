/*
 * test_search.c - the search index on a hand-made catalog: tokeniser
 * (folding, hyphens, apostrophes, invalid UTF-8), stop words, stemming,
 * typo tolerance, prefix completion, synonyms (and their file errors),
 * filters, sorting, pages, facets, BM25F ordering and field weights, an
 * index built from a store, and hostile queries (long, invalid UTF-8,
 * empty, many words).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "search/search_internal.h"

#include <privguide/store.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the analyser ---------------------------------------------------------- */

typedef struct words {
    char w[32][64];
    unsigned fl[32];
    int n;
} words;

static int collect(void *ctx, const char *w, size_t len, unsigned flags)
{
    words *ws = ctx;
    if (ws->n < 32) {
        memcpy(ws->w[ws->n], w, len);
        ws->w[ws->n][len] = 0;
        ws->fl[ws->n] = flags;
        ws->n++;
    }
    return 0;
}

static words cut(const char *s)
{
    words ws;
    memset(&ws, 0, sizeof ws);
    pvg_search_words(s, strlen(s), collect, &ws);
    return ws;
}

static void test_tokeniser(void **state)
{
    (void)state;
    words w = cut("WHITE Hanging HEART");
    assert_int_equal(w.n, 3);
    assert_string_equal(w.w[0], "white");
    assert_string_equal(w.w[2], "heart");
    assert_true(w.fl[2] & PVG_SW_LAST);
    assert_false(w.fl[0] & PVG_SW_LAST);
    w = cut("heart ");
    assert_false(w.fl[0] & PVG_SW_LAST);
    /* accents folded: Crème Brûlée, Æsop, Straße, Łódź */
    w = cut("Cr\xc3\xa8me Br\xc3\xbbl\xc3\xa9"
            "e \xc3\x86sop Stra\xc3\x9f"
            "e \xc5\x81\xc3\xb3"
            "d\xc5\xba");
    assert_int_equal(w.n, 5);
    assert_string_equal(w.w[0], "creme");
    assert_string_equal(w.w[1], "brulee");
    assert_string_equal(w.w[2], "aesop");
    assert_string_equal(w.w[3], "strasse");
    assert_string_equal(w.w[4], "lodz");
    /* hyphen groups: parts, then the joined word */
    w = cut("T-LIGHT holder");
    assert_int_equal(w.n, 4);
    assert_string_equal(w.w[0], "t");
    assert_true(w.fl[0] & PVG_SW_PART);
    assert_string_equal(w.w[1], "light");
    assert_string_equal(w.w[2], "tlight");
    assert_true(w.fl[2] & PVG_SW_JOINED);
    assert_string_equal(w.w[3], "holder");
    /* apostrophes inside a word join it; punctuation separates */
    w = cut("men's,socks!!(2)");
    assert_int_equal(w.n, 3);
    assert_string_equal(w.w[0], "mens");
    assert_string_equal(w.w[1], "socks");
    assert_string_equal(w.w[2], "2");
    /* invalid UTF-8 bytes separate words; a cut sequence at the end too */
    w = cut("red\xff\xfe"
            "candle\xc3");
    assert_int_equal(w.n, 2);
    assert_string_equal(w.w[0], "red");
    assert_string_equal(w.w[1], "candle");
    /* overlong encoding of '/' is invalid: a separator */
    w = cut("a\xc0\xaf"
            "b");
    assert_int_equal(w.n, 2);
    /* Greek and Cyrillic capitals lower-cased, other scripts kept */
    w = cut("\xce\x91\xce\x92 \xd0\x9c\xd0\x98\xd0\xa0 \xe6\x97\xa5\xe6\x9c\xac");
    assert_int_equal(w.n, 3);
    assert_string_equal(w.w[0], "\xce\xb1\xce\xb2");
    assert_string_equal(w.w[1], "\xd0\xbc\xd0\xb8\xd1\x80");
    /* a very long word is cut at PVG_SEARCH_WORD_MAX bytes */
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    w = cut(big);
    assert_int_equal(w.n, 1);
    assert_int_equal(strlen(w.w[0]), PVG_SEARCH_WORD_MAX);
}

static void test_stopwords_stemming(void **state)
{
    (void)state;
    assert_true(pvg_search_is_stopword("the", 3));
    assert_true(pvg_search_is_stopword("with", 4));
    assert_false(pvg_search_is_stopword("heart", 5));
    assert_false(pvg_search_is_stopword("", 0));
    struct sb_stemmer *st = pvg_search_stemmer_new();
    assert_non_null(st);
    char out[PVG_SEARCH_WORD_MAX + 1];
    pvg_search_stem(st, "candles", 7, out, sizeof out);
    assert_string_equal(out, "candl");
    char out2[PVG_SEARCH_WORD_MAX + 1];
    pvg_search_stem(st, "candle", 6, out2, sizeof out2);
    assert_string_equal(out, out2);
    pvg_search_stem(st, "hanging", 7, out, sizeof out);
    assert_string_equal(out, "hang");
    pvg_search_stem(st, "3d", 2, out, sizeof out); /* digits: kept */
    assert_string_equal(out, "3d");
    pvg_search_stemmer_free(st);
    assert_int_equal(pvg_search_osa("candle", 6, "candel", 6, 2), 1); /* transposition */
    assert_int_equal(pvg_search_osa("holder", 6, "holdr", 5, 2), 1);
    assert_int_equal(pvg_search_osa("christmas", 9, "chrismas", 8, 2), 1);
    assert_int_equal(pvg_search_osa("lantern", 7, "lamp", 4, 2), 3); /* over max */
}

/* ---- a hand-made catalog ------------------------------------------------------ */

typedef struct it {
    const char *id, *title, *cat;
    double price;
    const char *attrs;
} it;

static const it CATALOG[] = {
    {"A1", "WHITE HANGING HEART T-LIGHT HOLDER", "Home", 2.55, NULL},
    {"A2", "RED HANGING HEART T-LIGHT HOLDER", "Home", 2.95, NULL},
    {"A3", "CREAM CUPID HEARTS COAT HANGER", "Home", 4.15, NULL},
    {"A4", "SET OF 3 CAKE TINS PANTRY DESIGN", "Kitchen", 4.95, "{\"material\": \"tin\"}"},
    {"A5", "JUMBO BAG RED RETROSPOT", "Bags", 1.95, NULL},
    {"A6", "LUNCH BAG RED RETROSPOT", "Bags", 1.65, NULL},
    {"A7", "CHRISTMAS CANDLE HOLDER", "Christmas", 6.50, NULL},
    {"A8", "RED CHRISTMAS CANDLES SET OF 6", "Christmas", 3.25, NULL},
    {"A9", "Cr\xc3\xa8me teapot with infuser", "Kitchen", 12.0,
     "{\"description\": \"a teapot for loose leaf tea lovers\"}"},
    {"B1", "GLASS STAR FROSTED T-LIGHT HOLDER", "Home", 4.25, NULL},
    {"B2", "Vintage lantern", "Garden", 25.0, "{\"description\": \"holds a candle\"}"},
    {"B3", "Plain notebook", "Stationery", -1, "{\"colour\": \"red\", \"pages\": 80}"},
};
#define N_CATALOG (sizeof CATALOG / sizeof CATALOG[0])

static const char *SYNONYMS = "# test synonyms\n"
                              "tealight: t-light\n"
                              "mug: cup, beaker\n"
                              "\n"
                              "lamp: lantern   # a comment\n";

static pvg_search_index *build(int no_stemming, const char *synonyms)
{
    pvg_search_options o = {0};
    o.no_stemming = no_stemming;
    o.synonyms_text = synonyms;
    pvg_search_index *ix = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    assert_int_equal(pvg_search_index_new(&o, &ix, &e), PVG_OK);
    for (size_t i = 0; i < N_CATALOG; i++) {
        pvg_item item;
        memset(&item, 0, sizeof item);
        item.ext_id = CATALOG[i].id;
        item.title = CATALOG[i].title;
        item.category = CATALOG[i].cat;
        item.price = CATALOG[i].price;
        item.attrs_json = CATALOG[i].attrs;
        item.id = (int64_t)i + 1;
        assert_int_equal(pvg_search_index_add(ix, &item, &e), PVG_OK);
    }
    assert_int_equal(pvg_search_index_finish(ix, &e), PVG_OK);
    return ix;
}

static pvg_search_result *run(const pvg_search_index *ix, const char *text, unsigned flags)
{
    pvg_search_query q;
    pvg_search_query_init(&q);
    q.text = text;
    q.flags = flags;
    q.k = 20;
    pvg_search_result *r = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    return r;
}

/* The ids of the hits, space-separated. */
static const char *ids(const pvg_search_result *r, char *buf, size_t cap)
{
    buf[0] = 0;
    for (size_t i = 0; i < pvg_search_result_count(r); i++) {
        const pvg_search_hit *h = pvg_search_result_hit(r, i);
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%s", i ? " " : "", h->ext_id);
    }
    return buf;
}

static int has(const pvg_search_result *r, const char *id)
{
    for (size_t i = 0; i < pvg_search_result_count(r); i++)
        if (strcmp(pvg_search_result_hit(r, i)->ext_id, id) == 0) return 1;
    return 0;
}

static void test_bm25_ordering(void **state)
{
    (void)state;
    pvg_search_index *ix = build(0, NULL);
    char buf[256];
    /* all words must match when some item matches them all */
    pvg_search_result *r = run(ix, "red heart holder", PVG_SEARCH_NO_PREFIX);
    assert_string_equal(ids(r, buf, sizeof buf), "A2");
    assert_int_equal(pvg_search_result_total(r), 1);
    assert_int_equal(pvg_search_result_min_matched(r), 3);
    pvg_search_result_free(r);
    /* "holder": title matches outrank the description match; the shorter
     * title (the rarer matching field length) first */
    r = run(ix, "holder", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_total(r), 4);
    assert_string_equal(pvg_search_result_hit(r, 0)->ext_id, "A7");
    for (size_t i = 1; i < pvg_search_result_count(r); i++)
        assert_true(pvg_search_result_hit(r, i)->score <= pvg_search_result_hit(r, i - 1)->score);
    pvg_search_result_free(r);
    /* a title match outranks an attribute match of the same word */
    r = run(ix, "red", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_total(r), 5);
    assert_string_equal(pvg_search_result_hit(r, 4)->ext_id, "B3");
    pvg_search_result_free(r);
    /* a rare word weighs more than a common one: "retrospot" items first */
    r = run(ix, "red retrospot", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_total(r), 2);
    assert_true(has(r, "A5") && has(r, "A6"));
    pvg_search_result_free(r);
    /* no item has both words: the items matching one of them */
    r = run(ix, "teapot lantern", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_min_matched(r), 1);
    assert_int_equal(pvg_search_result_total(r), 2);
    pvg_search_result_free(r);
    /* a category word */
    r = run(ix, "stationery", PVG_SEARCH_NO_PREFIX);
    assert_string_equal(ids(r, buf, sizeof buf), "B3");
    pvg_search_result_free(r);
    pvg_search_index_free(ix);
}

static void test_stemming_plurals(void **state)
{
    (void)state;
    pvg_search_index *ix = build(0, NULL);
    pvg_search_index *raw = build(1, NULL);
    /* "candles" finds "CANDLE" and "CANDLES" with stemming, one without */
    pvg_search_result *r = run(ix, "candles", PVG_SEARCH_NO_PREFIX | PVG_SEARCH_NO_TYPO);
    assert_int_equal(pvg_search_result_total(r), 3); /* A7, A8, B2 (description) */
    pvg_search_result_free(r);
    r = run(raw, "candles", PVG_SEARCH_NO_PREFIX | PVG_SEARCH_NO_TYPO);
    assert_int_equal(pvg_search_result_total(r), 1);
    assert_true(has(r, "A8"));
    pvg_search_result_free(r);
    /* "hearts" <-> "heart" */
    r = run(ix, "hearts", PVG_SEARCH_NO_PREFIX | PVG_SEARCH_NO_TYPO);
    assert_int_equal(pvg_search_result_total(r), 3);
    pvg_search_result_free(r);
    /* accents: "creme" finds "Crème" */
    r = run(ix, "CREME", PVG_SEARCH_NO_PREFIX);
    assert_true(has(r, "A9"));
    pvg_search_result_free(r);
    /* stop words are dropped and reported */
    r = run(ix, "the teapot with the infuser", PVG_SEARCH_NO_PREFIX);
    const pvg_search_term *terms;
    assert_int_equal(pvg_search_result_terms(r, &terms), 2);
    assert_string_equal(terms[0].word, "teapot");
    const char *const *stop;
    assert_int_equal(pvg_search_result_stopwords(r, &stop), 3);
    assert_string_equal(stop[0], "the");
    assert_true(has(r, "A9"));
    pvg_search_result_free(r);
    pvg_search_index_free(raw);
    pvg_search_index_free(ix);
}

static void test_typos(void **state)
{
    (void)state;
    pvg_search_index *ix = build(0, NULL);
    /* distance 1 for a 6-letter word */
    pvg_search_result *r = run(ix, "candel", PVG_SEARCH_NO_PREFIX);
    assert_true(has(r, "A7"));
    const pvg_search_term *t;
    assert_int_equal(pvg_search_result_terms(r, &t), 1);
    assert_false(t[0].known);
    assert_int_equal(t[0].variants[0].kind, PVG_SEARCH_VARIANT_TYPO);
    assert_int_equal(t[0].variants[0].distance, 1);
    pvg_search_result_free(r);
    /* off: nothing */
    r = run(ix, "candel", PVG_SEARCH_NO_PREFIX | PVG_SEARCH_NO_TYPO);
    assert_int_equal(pvg_search_result_total(r), 0);
    pvg_search_result_free(r);
    /* distance 2 for a word of 8 or more letters */
    r = run(ix, "chrstmass", PVG_SEARCH_NO_PREFIX);
    assert_true(has(r, "A7") && has(r, "A8"));
    pvg_search_result_free(r);
    /* distance 2 is not allowed for a 6-letter word */
    r = run(ix, "cndl", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_total(r), 0);
    pvg_search_result_free(r);
    /* words under 4 letters are never corrected */
    r = run(ix, "rad", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_total(r), 0);
    pvg_search_result_free(r);
    /* a known word is not corrected */
    r = run(ix, "tins", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_terms(r, &t), 1);
    assert_true(t[0].known);
    for (size_t i = 0; i < t[0].n_variants; i++)
        assert_int_not_equal(t[0].variants[i].kind, PVG_SEARCH_VARIANT_TYPO);
    pvg_search_result_free(r);
    pvg_search_index_free(ix);
}

static void test_prefix(void **state)
{
    (void)state;
    pvg_search_index *ix = build(0, NULL);
    /* "christmas can" typed: the last word completes to candle(s) */
    pvg_search_result *r = run(ix, "christmas can", 0);
    assert_true(has(r, "A7") && has(r, "A8"));
    assert_int_equal(pvg_search_result_total(r), 2);
    const pvg_search_term *t;
    assert_int_equal(pvg_search_result_terms(r, &t), 2);
    assert_true(t[1].is_prefix);
    assert_false(t[0].is_prefix);
    int saw = 0;
    for (size_t i = 0; i < t[1].n_variants; i++)
        if (t[1].variants[i].kind == PVG_SEARCH_VARIANT_PREFIX) saw = 1;
    assert_true(saw);
    pvg_search_result_free(r);
    /* with a space after it the word is whole */
    r = run(ix, "christmas can ", 0);
    assert_int_equal(pvg_search_result_min_matched(r), 1);
    pvg_search_result_free(r);
    /* or with the flag off */
    r = run(ix, "christmas can", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_min_matched(r), 1);
    pvg_search_result_free(r);
    /* a stop word typed last may be the start of a word: "the" -> nothing
     * here, but "wi" is no stop word and completes nothing either */
    r = run(ix, "teapot wit", 0);
    assert_true(has(r, "A9"));
    pvg_search_result_free(r);
    /* one letter */
    r = run(ix, "h", 0);
    assert_true(pvg_search_result_total(r) >= 5); /* hanging, heart, holder, home, ... */
    pvg_search_result_free(r);
    pvg_search_index_free(ix);
}

static void test_synonyms(void **state)
{
    (void)state;
    pvg_search_index *ix = build(0, SYNONYMS);
    pvg_search_index_stats stats;
    pvg_search_index_stats_get(ix, &stats);
    assert_int_equal(stats.items, N_CATALOG);
    assert_int_equal(stats.synonyms, 2); /* tealight->tlight, lamp->lantern; cup/beaker absent */
    pvg_search_result *r = run(ix, "lamp", PVG_SEARCH_NO_PREFIX);
    assert_true(has(r, "B2"));
    const pvg_search_term *t;
    assert_int_equal(pvg_search_result_terms(r, &t), 1);
    assert_int_equal(t[0].variants[0].kind, PVG_SEARCH_VARIANT_SYNONYM);
    assert_string_equal(t[0].variants[0].word, "lantern");
    pvg_search_result_free(r);
    r = run(ix, "tealights", PVG_SEARCH_NO_PREFIX); /* stemmed key */
    assert_int_equal(pvg_search_result_total(r), 3);
    pvg_search_result_free(r);
    r = run(ix, "lamp", PVG_SEARCH_NO_PREFIX | PVG_SEARCH_NO_SYNONYMS);
    assert_int_equal(pvg_search_result_total(r), 0);
    pvg_search_result_free(r);
    /* "t-light" typed: the joined word the catalog has */
    r = run(ix, "t-light", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_total(r), 3);
    pvg_search_result_terms(r, &t);
    assert_string_equal(t[0].word, "tlight");
    pvg_search_result_free(r);
    pvg_search_index_free(ix);

    /* malformed files name the line and column */
    static const char *bad[] = {"ok: fine\nno colon here\n", "two words: x\n", "mug:\n",
                                "mug: big cup\n"};
    static const long line[] = {2, 1, 1, 1};
    for (size_t i = 0; i < 4; i++) {
        pvg_search_options o = {0};
        o.synonyms_text = bad[i];
        pvg_error e;
        pvg_error_clear(&e);
        pvg_search_index *x = NULL;
        assert_int_equal(pvg_search_index_new(&o, &x, &e), PVG_ERR_INVALID);
        assert_null(x);
        assert_int_equal(e.line, line[i]);
    }
    pvg_search_options o = {0};
    o.synonyms_path = "/nonexistent/synonyms.txt";
    pvg_error e;
    pvg_search_index *x = NULL;
    assert_int_equal(pvg_search_index_new(&o, &x, &e), PVG_ERR_IO);
}

static void test_filters_sort_facets(void **state)
{
    (void)state;
    pvg_search_index *ix = build(0, NULL);
    pvg_search_query q;
    pvg_search_query_init(&q);
    q.text = "holder";
    q.flags = PVG_SEARCH_NO_PREFIX;
    q.category = "home"; /* case-insensitive */
    pvg_search_result *r = NULL;
    pvg_error e;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    assert_int_equal(pvg_search_result_total(r), 3);
    for (size_t i = 0; i < pvg_search_result_count(r); i++)
        assert_string_equal(pvg_search_result_hit(r, i)->category, "Home");
    pvg_search_result_free(r);
    /* price range, sorted by price */
    q.category = NULL;
    q.price_min = 2.60;
    q.price_max = 10;
    q.sort = PVG_SEARCH_SORT_PRICE_ASC;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    char buf[128];
    assert_string_equal(ids(r, buf, sizeof buf), "A2 B1 A7");
    pvg_search_result_free(r);
    q.sort = PVG_SEARCH_SORT_PRICE_DESC;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    assert_string_equal(ids(r, buf, sizeof buf), "A7 B1 A2");
    pvg_search_result_free(r);
    /* an unknown category matches nothing */
    q.category = "nope";
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    assert_int_equal(pvg_search_result_total(r), 0);
    pvg_search_result_free(r);
    /* browsing (no words), pages of 5, facets over the whole (filtered) set */
    pvg_search_query_init(&q);
    q.k = 5;
    q.offset = 10;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    assert_int_equal(pvg_search_result_total(r), N_CATALOG);
    assert_int_equal(pvg_search_result_count(r), 2);
    const pvg_search_facet *f;
    size_t nf = pvg_search_result_categories(r, &f);
    assert_int_equal(nf, 6);
    assert_string_equal(f[0].label, "Home");
    assert_int_equal(f[0].count, 4);
    size_t nb = pvg_search_result_price_buckets(r, &f);
    size_t sum = 0;
    for (size_t i = 0; i < nb; i++)
        sum += f[i].count;
    assert_int_equal(sum, N_CATALOG - 1); /* the notebook has no price */
    assert_string_equal(f[1].label, "1-2");
    assert_int_equal(f[1].count, 2); /* 1.95, 1.65 */
    assert_string_equal(f[nb - 1].label, "500+");
    pvg_search_result_free(r);
    /* a price bound leaves out unknown prices; facets follow the filter */
    pvg_search_query_init(&q);
    q.text = "red";
    q.price_max = 2;
    q.flags = PVG_SEARCH_NO_PREFIX;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    assert_int_equal(pvg_search_result_total(r), 2);
    nf = pvg_search_result_categories(r, &f);
    assert_int_equal(nf, 1);
    assert_string_equal(f[0].label, "Bags");
    pvg_search_result_free(r);
    /* bad arguments name the field */
    pvg_search_query_init(&q);
    q.price_min = 5;
    q.price_max = 1;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_ERR_INVALID);
    assert_non_null(strstr(e.text, "price_min"));
    q.price_min = NAN;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_ERR_INVALID);
    pvg_search_query_init(&q);
    q.k = PVG_SEARCH_K_MAX + 1;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_ERR_INVALID);
    assert_non_null(strstr(e.text, "k:"));
    pvg_search_sort s;
    assert_int_equal(pvg_search_sort_parse("price", &s), PVG_OK);
    assert_int_equal(s, PVG_SEARCH_SORT_PRICE_ASC);
    assert_int_equal(pvg_search_sort_parse("cheapest", &s), PVG_ERR_INVALID);
    pvg_search_index_free(ix);
}

static void test_hostile_queries(void **state)
{
    (void)state;
    pvg_search_index *ix = build(0, SYNONYMS);
    pvg_search_query q;
    pvg_search_query_init(&q);
    pvg_search_result *r = NULL;
    pvg_error e;
    /* too long */
    char *big = malloc(PVG_SEARCH_QUERY_MAX_BYTES + 2);
    memset(big, 'a', PVG_SEARCH_QUERY_MAX_BYTES + 1);
    big[PVG_SEARCH_QUERY_MAX_BYTES + 1] = 0;
    q.text = big;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_ERR_INVALID);
    assert_null(r);
    /* at the limit: one long word, cut; many words: capped */
    big[PVG_SEARCH_QUERY_MAX_BYTES] = 0;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    pvg_search_result_free(r);
    for (size_t i = 0; i < PVG_SEARCH_QUERY_MAX_BYTES; i += 2)
        big[i] = (char)('a' + i % 26), big[i + 1] = ' ';
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    const pvg_search_term *t;
    assert_int_equal(pvg_search_result_terms(r, &t), PVG_SEARCH_TERMS_MAX);
    assert_true(pvg_search_result_dropped(r) > 0);
    pvg_search_result_free(r);
    /* invalid UTF-8 everywhere, control bytes, lone continuation bytes */
    static const char *odd[] = {"\xff\xfe\xfd",
                                "\x80\x80\x80 red",
                                "\xed\xa0\x80",
                                "\x01\x02\x7f",
                                "----",
                                "'''",
                                "\xe2\x80\x99s",
                                "-t-light-",
                                "",
                                "   ",
                                "the of and",
                                "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x-y-z"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        q.text = odd[i];
        r = NULL;
        assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
        assert_non_null(r);
        pvg_search_result_free(r);
    }
    /* empty and stop-word-only queries browse */
    q.text = "the";
    q.flags = PVG_SEARCH_NO_PREFIX;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    assert_int_equal(pvg_search_result_total(r), N_CATALOG);
    pvg_search_result_free(r);
    q.text = NULL;
    assert_int_equal(pvg_search_run(ix, &q, &r, &e), PVG_OK);
    assert_int_equal(pvg_search_result_total(r), N_CATALOG);
    pvg_search_result_free(r);
    free(big);
    /* an unfinished index refuses queries; a finished one refuses items */
    pvg_search_index *u = NULL;
    assert_int_equal(pvg_search_index_new(NULL, &u, &e), PVG_OK);
    assert_int_equal(pvg_search_run(u, &q, &r, &e), PVG_ERR_STATE);
    pvg_item item;
    memset(&item, 0, sizeof item);
    assert_int_equal(pvg_search_index_add(u, &item, &e), PVG_ERR_INVALID); /* no ext_id */
    item.ext_id = "x";
    assert_int_equal(pvg_search_index_finish(u, &e), PVG_OK);
    assert_int_equal(pvg_search_index_add(u, &item, &e), PVG_ERR_STATE);
    assert_int_equal(pvg_search_index_finish(u, &e), PVG_ERR_STATE);
    /* an empty index answers */
    q.text = "anything";
    assert_int_equal(pvg_search_run(u, &q, &r, &e), PVG_OK);
    assert_int_equal(pvg_search_result_total(r), 0);
    pvg_search_result_free(r);
    pvg_search_index_free(u);
    pvg_search_index_free(ix);
}

/* The index built from a store's catalog. */
static void test_from_store(void **state)
{
    (void)state;
    char dir[] = "/tmp/pvg-search-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char data[600];
    snprintf(data, sizeof data, "%s/data", dir);
    char keyf[600];
    snprintf(keyf, sizeof keyf, "%s/keys", dir);
    pvg_store_init_options io = {0};
    io.key_file = keyf;
    pvg_error e;
    pvg_error_clear(&e);
    assert_int_equal(pvg_store_init(data, &io, &e), PVG_OK);
    pvg_store_open_options oo = {keyf};
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open_with(data, &oo, &s, &e), PVG_OK);
    for (size_t i = 0; i < N_CATALOG; i++) {
        pvg_item item;
        memset(&item, 0, sizeof item);
        item.ext_id = CATALOG[i].id;
        item.title = CATALOG[i].title;
        item.category = CATALOG[i].cat;
        item.price = CATALOG[i].price;
        item.attrs_json = CATALOG[i].attrs;
        assert_int_equal(pvg_store_item_put(s, &item, NULL, &e), PVG_OK);
    }
    pvg_search_index *ix = NULL;
    assert_int_equal(pvg_search_index_build(s, NULL, &ix, &e), PVG_OK);
    pvg_search_result *r = run(ix, "christmas candle", PVG_SEARCH_NO_PREFIX);
    assert_int_equal(pvg_search_result_total(r), 2);
    assert_true(pvg_search_result_hit(r, 0)->item_id > 0);
    pvg_search_result_free(r);
    pvg_search_index_free(ix);
    pvg_store_free(s);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokeniser),       cmocka_unit_test(test_stopwords_stemming),
        cmocka_unit_test(test_bm25_ordering),   cmocka_unit_test(test_stemming_plurals),
        cmocka_unit_test(test_typos),           cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_synonyms),        cmocka_unit_test(test_filters_sort_facets),
        cmocka_unit_test(test_hostile_queries), cmocka_unit_test(test_from_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
