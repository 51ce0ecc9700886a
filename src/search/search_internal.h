/*
 * search_internal.h - the parts of src/search shared between the analyser
 * (analyze.c), the index (index.c) and the query runner (query.c).
 * Internal (not installed).
 */
#ifndef PVG_SEARCH_INTERNAL_H
#define PVG_SEARCH_INTERNAL_H

#include <privguide/search.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct sb_stemmer;

/* ---- analyser (analyze.c) ---------------------------------------------- */

enum {
    PVG_SW_PART = 1u << 0,   /* a part of a hyphenated group ("t" of "t-light") */
    PVG_SW_JOINED = 1u << 1, /* the group joined ("tlight"), after its parts */
    PVG_SW_LAST = 1u << 2    /* the last word of the text, not followed by a separator */
};

/* Called for each word of a text: word[0..len) lower-cased and folded (not
 * NUL-terminated), flags PVG_SW_*. Returns 0 to go on. */
typedef int (*pvg_sw_fn)(void *ctx, const char *word, size_t len, unsigned flags);

/* Cuts s[0..n) into words (letters and digits; invalid UTF-8 separates
 * words; an apostrophe inside a word is dropped; a hyphen between two
 * words makes a group). Returns what fn returned when it stopped, else 0. */
int pvg_search_words(const char *s, size_t n, pvg_sw_fn fn, void *ctx);

/* 1 when word[0..len) is an English stop word. */
int pvg_search_is_stopword(const char *word, size_t len);

/* The index term of a word: its Snowball stem (stemmer non-NULL and the
 * word has no digit) or the word itself, into out (cap >= PVG_SEARCH_WORD_MAX
 * + 1, NUL-terminated). Returns the length. */
size_t pvg_search_stem(struct sb_stemmer *stemmer, const char *word, size_t len, char *out,
                       size_t cap);

/* A new English stemmer, or NULL. */
struct sb_stemmer *pvg_search_stemmer_new(void);
void pvg_search_stemmer_free(struct sb_stemmer *st);

/* Restricted Damerau-Levenshtein (optimal string alignment) distance of
 * two byte strings, or max+1 when it is larger than max. */
int pvg_search_osa(const char *a, size_t la, const char *b, size_t lb, int max);

uint64_t pvg_search_hash(const char *s, size_t n);

/* ---- string map: a string -> dense id (0, 1, 2, ...) ---------------------- */
typedef struct pvg_smap {
    uint32_t *slots; /* id + 1, 0 empty */
    size_t cap;      /* power of two */
    size_t n;
    char **keys; /* by id, NUL-terminated */
    uint32_t *lens;
    size_t keys_cap;
} pvg_smap;

/* Id of key, or -1. */
long pvg_smap_find(const pvg_smap *m, const char *key, size_t len);
/* Id of key, adding it when absent (*added = 1). -1 on NOMEM. */
long pvg_smap_intern(pvg_smap *m, const char *key, size_t len, int *added);
void pvg_smap_free(pvg_smap *m);
size_t pvg_smap_bytes(const pvg_smap *m);

/* ---- the index ------------------------------------------------------------ */

enum { PVG_F_TITLE = 0, PVG_F_CATEGORY = 1, PVG_F_ATTRS = 2, PVG_F_COUNT = 3 };

/* One (term, doc) pair: the BM25F term-frequency part, which does not
 * depend on the query: tf' (k1 + 1) / (k1 + tf') with tf' the field-weighted,
 * length-normalised frequency. A query multiplies it by idf and the
 * variant's weight. */
typedef struct pvg_posting {
    uint32_t doc;
    float sat;
} pvg_posting;

/* BM25F parameters (docs/search.md) */
#define PVG_BM25_K1 1.2

typedef struct pvg_search_doc {
    char *ext_id, *title, *category;
    int64_t item_id;
    double price;
    int32_t cat; /* category id, -1 none */
} pvg_search_doc;

typedef struct pvg_syn_entry {
    char *key_stem; /* the index term of the key */
    char *word;     /* the synonym as written */
    char *syn_stem; /* its index term */
    long syn_term;  /* resolved at finish: term id, -1 absent */
} pvg_syn_entry;

typedef struct pvg_search_scratch pvg_search_scratch;

struct pvg_search_index {
    int finished;
    int stemming;
    struct sb_stemmer *stemmer; /* build only (not thread-safe) */

    size_t n_docs, docs_cap;
    pvg_search_doc *docs;
    double *dprice; /* after finish: docs[].price and docs[].cat, compact for filters */
    int32_t *dcat;
    uint16_t (*flen)[PVG_F_COUNT]; /* field lengths per doc */

    pvg_smap terms;   /* stems */
    pvg_smap words;   /* surface words */
    pvg_smap cats;    /* lower-cased categories */
    char **cat_label; /* by category id: as first written */
    size_t cat_label_cap;

    /* during build: one row per (term, doc) */
    struct pvg_build_row *rows;
    size_t n_rows, rows_cap;
    uint32_t *word_last_doc; /* word df counting */
    size_t word_cap;

    /* after finish */
    uint32_t *word_term; /* by word id: its term id */
    uint32_t *word_df;
    uint32_t *term_df;
    size_t *post_off; /* n_terms + 1 */
    pvg_posting *post;
    float *term_idf;
    uint32_t *words_sorted; /* word ids in byte order (prefix ranges) */
    uint64_t *del_hash;     /* deletion neighbourhood, sorted by hash */
    uint32_t *del_word;
    size_t n_del;

    /* synonyms */
    pvg_syn_entry *syn;
    size_t n_syn, syn_cap;
    size_t syn_resolved;

    /* query scratch (dense per-doc arrays), reused under the lock */
    pthread_mutex_t scratch_mu;
    pvg_search_scratch *scratch_free;
};

#endif
