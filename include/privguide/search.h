/*
 * privguide/search.h - product search over the public catalog.
 *
 * An in-memory inverted index over the catalog items' title, category and
 * free attributes (every string value of attrs_json, e.g. a description or
 * review text), ranked with BM25F (per-field weights and length
 * normalisation). Words are cut at anything that is not a letter or digit
 * (UTF-8 aware), lower-cased, folded to ASCII where a letter has a common
 * accent ("Crème" -> "creme"), English stop words dropped and reduced to
 * their Snowball stem (libstemmer, English). A hyphenated word is indexed as
 * its parts and joined ("T-LIGHT" -> "t", "light", "tlight").
 *
 * A query word matches, each with a weight (docs/search.md):
 *   - its stem (1.0);
 *   - synonyms from the synonyms file (`word: syn1, syn2`, one direction);
 *   - when the word is not in the catalog's vocabulary: the words within
 *     edit distance 1 (words of 4-7 letters) or 2 (8 or more), found
 *     through a deletion neighbourhood of the vocabulary (the 3 most
 *     frequent at the smallest distance); when it is, but rarely (a
 *     misspelling the catalog itself holds, e.g. in review text): those
 *     of them at least 20 times as frequent as the word;
 *   - for the last word of a query that does not end in a space (search as
 *     you type): every vocabulary word it is a prefix of (the most frequent
 *     PVG_SEARCH_PREFIX_MAX).
 * The result set is the items that match the most query words (all of them
 * when any item does), after the filters; facets count over that set.
 *
 * The catalog is not personal data (docs/privacy.md): the index holds only
 * item ids, titles, categories, prices and attribute words, never anything
 * about a shopper. Queries are not kept by this module.
 *
 * An index is built once (new, add..., finish, or pvg_search_index_build
 * from a store) and then read-only: any number of threads may run queries
 * on one index at once. A result borrows the index's strings: free the
 * result before the index.
 */
#ifndef PRIVGUIDE_SEARCH_H
#define PRIVGUIDE_SEARCH_H

#include <privguide/common.h>
#include <privguide/event.h>
#include <privguide/store.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef struct pvg_search_index pvg_search_index;
typedef struct pvg_search_result pvg_search_result;

#define PVG_SEARCH_QUERY_MAX_BYTES 1024 /* longer query text: PVG_ERR_INVALID */
#define PVG_SEARCH_TERMS_MAX 16         /* query words beyond this are ignored */
#define PVG_SEARCH_K_MAX 1000           /* most hits on one page */
#define PVG_SEARCH_PREFIX_MAX 50        /* most completions of the last word */
#define PVG_SEARCH_WORD_MAX 48          /* longer words are cut to this many bytes */

/* A shopper's query kept as a `search` event is cut to this many bytes
 * (at a UTF-8 character boundary). */
#define PVG_SEARCH_EVENT_QUERY_MAX 256

typedef struct pvg_search_options {
    int no_stemming;           /* 1: index and match whole words (evaluation baselines) */
    const char *synonyms_path; /* synonyms file to load; NULL: none */
    const char *synonyms_text; /* or its text (used when synonyms_path is NULL) */
} pvg_search_options;

/* Creates an empty index to fill with pvg_search_index_add and seal with
 * pvg_search_index_finish. opts may be NULL (stemming on, no synonyms). On
 * success *out is new (pvg_search_index_free). Errors: PVG_ERR_NOMEM,
 * PVG_ERR_IO (synonyms file unreadable), PVG_ERR_INVALID (a malformed
 * synonyms line: err has file:line and what was expected),
 * PVG_ERR_UNSUPPORTED (no English stemmer in libstemmer). */
pvg_status pvg_search_index_new(const pvg_search_options *opts, pvg_search_index **out,
                                pvg_error *err) PVG_WARN_UNUSED;

/* Adds one catalog item (copied; item is borrowed for the call). Items
 * without an ext_id are refused (PVG_ERR_INVALID); attrs_json that is not
 * a JSON object is indexed as plain text. Errors: PVG_ERR_STATE (after
 * finish), PVG_ERR_INVALID, PVG_ERR_NOMEM. */
pvg_status pvg_search_index_add(pvg_search_index *ix, const pvg_item *item,
                                pvg_error *err) PVG_WARN_UNUSED;

/* Seals the index: builds the posting lists, field statistics, vocabulary,
 * typo and prefix structures and resolves the synonyms. Queries are valid
 * only after it. Errors: PVG_ERR_STATE (twice), PVG_ERR_NOMEM. */
pvg_status pvg_search_index_finish(pvg_search_index *ix, pvg_error *err) PVG_WARN_UNUSED;

/* new + add every catalog item of the store (pvg_store_items_foreach) +
 * finish. On success *out is new (pvg_search_index_free). Errors: those of
 * the three calls and of the store. */
pvg_status pvg_search_index_build(pvg_store *s, const pvg_search_options *opts,
                                  pvg_search_index **out, pvg_error *err) PVG_WARN_UNUSED;

void pvg_search_index_free(pvg_search_index *ix); /* NULL ok */

typedef struct pvg_search_index_stats {
    size_t items;      /* documents */
    size_t terms;      /* distinct index terms (stems) */
    size_t words;      /* distinct surface words (typo and prefix vocabulary) */
    size_t postings;   /* (term, item) pairs */
    size_t categories; /* distinct categories */
    size_t bytes;      /* memory held by the index, approximately */
    size_t synonyms;   /* synonym pairs resolved against the vocabulary */
} pvg_search_index_stats;

/* Figures of a finished index (zeros before finish). */
void pvg_search_index_stats_get(const pvg_search_index *ix, pvg_search_index_stats *out);

typedef enum pvg_search_sort {
    PVG_SEARCH_SORT_RELEVANCE = 0, /* score, then catalog order */
    PVG_SEARCH_SORT_PRICE_ASC = 1, /* price low to high; unknown prices last */
    PVG_SEARCH_SORT_PRICE_DESC = 2
} pvg_search_sort;

/* Parses "relevance", "price" (= "price_asc"), "price_asc", "price_desc".
 * PVG_ERR_INVALID otherwise. */
pvg_status pvg_search_sort_parse(const char *name, pvg_search_sort *out) PVG_WARN_UNUSED;

enum {
    PVG_SEARCH_NO_TYPO = 1u << 0,     /* no edit-distance corrections */
    PVG_SEARCH_NO_PREFIX = 1u << 1,   /* the last word is a whole word */
    PVG_SEARCH_NO_SYNONYMS = 1u << 2, /* ignore the synonyms file */
    PVG_SEARCH_PREFIX_ALL = 1u << 3   /* treat the last word as a prefix even after a space */
};

typedef struct pvg_search_query {
    const char *text;     /* UTF-8 (invalid bytes separate words); NULL or "" browses */
    const char *category; /* exact category (case-insensitive); NULL: any */
    double price_min;     /* inclusive; < 0: no bound */
    double price_max;     /* inclusive; < 0: no bound (a bound excludes unknown prices) */
    pvg_search_sort sort;
    size_t k;      /* hits wanted, 1..PVG_SEARCH_K_MAX (0: 10) */
    size_t offset; /* hits skipped (pages) */
    unsigned flags;
} pvg_search_query;

/* Sets q to the defaults: no text, no filters, relevance, k 10. */
void pvg_search_query_init(pvg_search_query *q);

/* Runs a query on a finished index. On success *out is new
 * (pvg_search_result_free). Errors: PVG_ERR_STATE (index not finished),
 * PVG_ERR_INVALID (text over PVG_SEARCH_QUERY_MAX_BYTES, k out of range,
 * price_min > price_max, a NaN bound: err names the field),
 * PVG_ERR_NOMEM. */
pvg_status pvg_search_run(const pvg_search_index *ix, const pvg_search_query *q,
                          pvg_search_result **out, pvg_error *err) PVG_WARN_UNUSED;

void pvg_search_result_free(pvg_search_result *r); /* NULL ok */

/* One hit; strings borrowed from the index. */
typedef struct pvg_search_hit {
    size_t doc;         /* position of the item in the index (add order) */
    int64_t item_id;    /* the store's row id (pvg_item.id; 0 when not from a store) */
    const char *ext_id; /* the shop's item id */
    const char *title;  /* may be NULL */
    const char *category;
    double price;     /* < 0: unknown */
    double score;     /* BM25F sum over the matched query words; 0 when browsing */
    unsigned matched; /* bit i: query word i matched */
} pvg_search_hit;

/* Items that match (after the filters), of which count are on this page. */
size_t pvg_search_result_total(const pvg_search_result *r);
size_t pvg_search_result_count(const pvg_search_result *r);
/* Hit i of this page (0 <= i < count), best first; NULL out of range. */
const pvg_search_hit *pvg_search_result_hit(const pvg_search_result *r, size_t i);

typedef enum pvg_search_variant_kind {
    PVG_SEARCH_VARIANT_EXACT = 0,   /* the word itself (its stem) */
    PVG_SEARCH_VARIANT_SYNONYM = 1, /* from the synonyms file */
    PVG_SEARCH_VARIANT_TYPO = 2,    /* a correction within the edit distance */
    PVG_SEARCH_VARIANT_PREFIX = 3   /* a completion of the last word */
} pvg_search_variant_kind;

/* "exact", "synonym", "typo", "prefix". Static string. */
const char *pvg_search_variant_kind_name(pvg_search_variant_kind k);

typedef struct pvg_search_variant {
    const char *word; /* the vocabulary word (synonyms: the synonym as written) */
    pvg_search_variant_kind kind;
    int distance; /* typo: the edit distance; else 0 */
    double weight;
} pvg_search_variant;

/* One query word as understood: the normalised word, and what it matched. */
typedef struct pvg_search_term {
    const char *word; /* lower-cased, folded */
    const char *stem; /* the index term it is looked up as */
    int is_prefix;    /* the last word, matched as a prefix too */
    int known;        /* the word itself is in the vocabulary */
    size_t n_variants;
    const pvg_search_variant *variants;
} pvg_search_term;

/* The parsed query: its words (stop words left out), in order. *terms is
 * borrowed from the result. */
size_t pvg_search_result_terms(const pvg_search_result *r, const pvg_search_term **terms);
/* Stop words the query had (borrowed), how many query words were dropped
 * over PVG_SEARCH_TERMS_MAX, and how many query words each hit matched at
 * least (= the term count unless no item matches all of them). */
size_t pvg_search_result_stopwords(const pvg_search_result *r, const char *const **words);
size_t pvg_search_result_dropped(const pvg_search_result *r);
size_t pvg_search_result_min_matched(const pvg_search_result *r);

typedef struct pvg_search_facet {
    const char *label; /* a category, or a price range "5-10", "100+" */
    size_t count;
    double lo, hi; /* price buckets: [lo, hi); hi < 0 for the open last one */
} pvg_search_facet;

/* Category counts over the result set, largest first (at most 50), and
 * price buckets over it (fixed bounds, in order, empty ones included).
 * *out borrowed from the result. */
size_t pvg_search_result_categories(const pvg_search_result *r, const pvg_search_facet **out);
size_t pvg_search_result_price_buckets(const pvg_search_result *r, const pvg_search_facet **out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
