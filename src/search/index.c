/*
 * index.c - building the in-memory search index: documents, the term and
 * word vocabularies, posting lists with per-field term frequencies, field
 * length norms (BM25F), the sorted word list (prefixes), the deletion
 * neighbourhood of the vocabulary (typos) and the synonyms.
 */
#include "search/search_internal.h"

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* BM25F parameters (docs/search.md) */
static const double FIELD_B[PVG_F_COUNT] = {0.75, 0.3, 0.75};
static const double FIELD_W[PVG_F_COUNT] = {3.0, 2.0, 1.0}; /* title, category, attributes */

typedef struct pvg_build_row {
    uint32_t term, doc;
    uint8_t tf[PVG_F_COUNT];
} pvg_build_row;

typedef struct doc_tok {
    uint32_t term;
    uint8_t field;
} doc_tok;

/* ---- synonyms ------------------------------------------------------------------ */

typedef struct one_word {
    char w[PVG_SEARCH_WORD_MAX + 1];
    size_t len;
    int n; /* words seen (a hyphen group counts as one) */
    int in_group;
} one_word;

static int one_word_fn(void *ctx, const char *w, size_t len, unsigned flags)
{
    one_word *o = ctx;
    if (flags & PVG_SW_PART) {
        if (!o->in_group) o->n++;
        o->in_group = 1;
        if (o->n == 1 && !o->len) { /* keep the first part until the joined form comes */
            memcpy(o->w, w, len);
            o->len = len;
        }
        return 0;
    }
    if (flags & PVG_SW_JOINED) {
        o->in_group = 0;
        if (o->n == 1) {
            memcpy(o->w, w, len);
            o->len = len;
        }
        return 0;
    }
    o->in_group = 0;
    o->n++;
    if (o->n == 1) {
        memcpy(o->w, w, len);
        o->len = len;
    }
    return 0;
}

static int syn_add(pvg_search_index *ix, const char *key_stem, const char *word, const char *stem)
{
    if (ix->n_syn == ix->syn_cap) {
        size_t nc = ix->syn_cap ? ix->syn_cap * 2 : 64;
        pvg_syn_entry *e = realloc(ix->syn, nc * sizeof *e);
        if (!e) return -1;
        ix->syn = e;
        ix->syn_cap = nc;
    }
    pvg_syn_entry *e = &ix->syn[ix->n_syn];
    e->key_stem = strdup(key_stem);
    e->word = strdup(word);
    e->syn_stem = strdup(stem);
    e->syn_term = -1;
    if (!e->key_stem || !e->word || !e->syn_stem) {
        free(e->key_stem);
        free(e->word);
        free(e->syn_stem);
        return -1;
    }
    ix->n_syn++;
    return 0;
}

/* One word of a synonyms line into o; error text into why. */
static int syn_word(const char *s, size_t n, one_word *o)
{
    memset(o, 0, sizeof *o);
    pvg_search_words(s, n, one_word_fn, o);
    return o->n == 1 && o->len > 0 ? 0 : -1;
}

static pvg_status syn_parse(pvg_search_index *ix, const char *text, const char *source,
                            pvg_error *err)
{
    long line = 0;
    const char *p = text;
    while (*p) {
        line++;
        size_t len = strcspn(p, "\n");
        const char *end = p + len;
        const char *hash = memchr(p, '#', len);
        if (hash) end = hash;
        const char *q = p;
        while (q < end && isspace((unsigned char)*q))
            q++;
        if (q < end) {
            const char *colon = memchr(q, ':', (size_t)(end - q));
            if (!colon)
                return pvg_error_set_at(err, PVG_ERR_INVALID, source, line, 1,
                                        (long long)(p - text),
                                        "want \"word: synonym, synonym\" (no ':' on the line)");
            one_word key;
            if (syn_word(q, (size_t)(colon - q), &key))
                return pvg_error_set_at(err, PVG_ERR_INVALID, source, line, 1,
                                        (long long)(p - text),
                                        "before ':': want one word (a hyphenated word counts "
                                        "as one)");
            char key_stem[PVG_SEARCH_WORD_MAX + 1];
            pvg_search_stem(ix->stemming ? ix->stemmer : NULL, key.w, key.len, key_stem,
                            sizeof key_stem);
            const char *s = colon + 1;
            int n_syn = 0;
            while (s < end) {
                size_t l = strcspn(s, ",");
                if (s + l > end) l = (size_t)(end - s);
                const char *a = s, *b = s + l;
                while (a < b && isspace((unsigned char)*a))
                    a++;
                while (b > a && isspace((unsigned char)b[-1]))
                    b--;
                if (a < b) {
                    one_word syn;
                    if (syn_word(a, (size_t)(b - a), &syn))
                        return pvg_error_set_at(err, PVG_ERR_INVALID, source, line,
                                                (long)(a - p) + 1, (long long)(a - text),
                                                "want one word per synonym (a hyphenated word "
                                                "counts as one), separated by ','");
                    char stem[PVG_SEARCH_WORD_MAX + 1];
                    pvg_search_stem(ix->stemming ? ix->stemmer : NULL, syn.w, syn.len, stem,
                                    sizeof stem);
                    char word[PVG_SEARCH_WORD_MAX + 1];
                    memcpy(word, syn.w, syn.len);
                    word[syn.len] = 0;
                    if (strcmp(stem, key_stem) != 0 && syn_add(ix, key_stem, word, stem))
                        return pvg_error_set(err, PVG_ERR_NOMEM, "synonyms: out of memory");
                    n_syn++;
                }
                s += l + 1;
            }
            if (!n_syn)
                return pvg_error_set_at(err, PVG_ERR_INVALID, source, line, (long)(colon - p) + 2,
                                        (long long)(colon + 1 - text),
                                        "after ':': want at least one synonym");
        }
        p += len;
        if (*p == '\n') p++;
    }
    return PVG_OK;
}

static pvg_status syn_load(pvg_search_index *ix, const pvg_search_options *o, pvg_error *err)
{
    if (o->synonyms_path) {
        FILE *f = fopen(o->synonyms_path, "rb");
        if (!f)
            return pvg_error_set(err, PVG_ERR_IO, "synonyms file %s: %s", o->synonyms_path,
                                 strerror(errno));
        size_t cap = 1 << 16, n = 0;
        char *buf = malloc(cap);
        while (buf) {
            if (n + 1 >= cap) {
                if (cap >= (size_t)64 << 20) {
                    free(buf);
                    fclose(f);
                    return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                                         "synonyms file %s: larger than 64 MiB", o->synonyms_path);
                }
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    free(buf);
                    buf = NULL;
                    break;
                }
                buf = nb;
                cap *= 2;
            }
            size_t r = fread(buf + n, 1, cap - n - 1, f);
            n += r;
            if (r == 0) break;
        }
        int ferr = ferror(f);
        fclose(f);
        if (!buf) return pvg_error_set(err, PVG_ERR_NOMEM, "synonyms: out of memory");
        if (ferr) {
            free(buf);
            return pvg_error_set(err, PVG_ERR_IO, "synonyms file %s: read error", o->synonyms_path);
        }
        buf[n] = 0;
        if (memchr(buf, 0, n)) {
            free(buf);
            return pvg_error_set(err, PVG_ERR_INVALID, "synonyms file %s: holds a NUL byte",
                                 o->synonyms_path);
        }
        pvg_status st = syn_parse(ix, buf, o->synonyms_path, err);
        free(buf);
        return st;
    }
    if (o->synonyms_text) return syn_parse(ix, o->synonyms_text, "synonyms", err);
    return PVG_OK;
}

static int syn_cmp(const void *a, const void *b)
{
    const pvg_syn_entry *x = a, *y = b;
    int c = strcmp(x->key_stem, y->key_stem);
    return c ? c : strcmp(x->word, y->word);
}

/* ---- lifecycle -------------------------------------------------------------- */

pvg_status pvg_search_index_new(const pvg_search_options *opts, pvg_search_index **out,
                                pvg_error *err)
{
    static const pvg_search_options none = {0};
    if (!out) return pvg_error_set(err, PVG_ERR_INVALID, "search index: out is NULL");
    *out = NULL;
    if (!opts) opts = &none;
    pvg_search_index *ix = calloc(1, sizeof *ix);
    if (!ix) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    pthread_mutex_init(&ix->scratch_mu, NULL);
    ix->stemming = !opts->no_stemming;
    ix->stemmer = pvg_search_stemmer_new();
    if (!ix->stemmer) {
        pvg_search_index_free(ix);
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "search index: libstemmer has no English stemmer");
    }
    pvg_status st = syn_load(ix, opts, err);
    if (st != PVG_OK) {
        pvg_search_index_free(ix);
        return st;
    }
    *out = ix;
    return PVG_OK;
}

void pvg_search_scratch_free_all(pvg_search_index *ix); /* query.c */

void pvg_search_index_free(pvg_search_index *ix)
{
    if (!ix) return;
    pvg_search_scratch_free_all(ix);
    pthread_mutex_destroy(&ix->scratch_mu);
    pvg_search_stemmer_free(ix->stemmer);
    for (size_t i = 0; i < ix->n_docs; i++) {
        free(ix->docs[i].ext_id);
        free(ix->docs[i].title);
    }
    free(ix->docs);
    free(ix->dprice);
    free(ix->dcat);
    free(ix->flen);
    pvg_smap_free(&ix->terms);
    pvg_smap_free(&ix->words);
    for (size_t i = 0; i < ix->cats.n; i++)
        free(ix->cat_label[i]);
    free(ix->cat_label);
    pvg_smap_free(&ix->cats);
    free(ix->rows);
    free(ix->word_last_doc);
    free(ix->word_term);
    free(ix->word_df);
    free(ix->term_df);
    free(ix->post_off);
    free(ix->post);
    free(ix->term_idf);
    free(ix->words_sorted);
    free(ix->del_hash);
    free(ix->del_word);
    for (size_t i = 0; i < ix->n_syn; i++) {
        free(ix->syn[i].key_stem);
        free(ix->syn[i].word);
        free(ix->syn[i].syn_stem);
    }
    free(ix->syn);
    free(ix);
}

/* ---- adding documents --------------------------------------------------------- */

typedef struct add_ctx {
    pvg_search_index *ix;
    uint32_t doc;
    int field;
    doc_tok *toks;
    size_t n, cap;
    int nomem;
} add_ctx;

static int grow_words(pvg_search_index *ix, size_t need)
{
    if (need <= ix->word_cap) return 0;
    size_t nc = ix->word_cap ? ix->word_cap * 2 : 4096;
    while (nc < need)
        nc *= 2;
    uint32_t *a = realloc(ix->word_last_doc, nc * sizeof *a);
    if (!a) return -1;
    ix->word_last_doc = a;
    uint32_t *b = realloc(ix->word_term, nc * sizeof *b);
    if (!b) return -1;
    ix->word_term = b;
    uint32_t *c = realloc(ix->word_df, nc * sizeof *c);
    if (!c) return -1;
    ix->word_df = c;
    ix->word_cap = nc;
    return 0;
}

static int add_word(void *vctx, const char *w, size_t len, unsigned flags)
{
    add_ctx *c = vctx;
    pvg_search_index *ix = c->ix;
    if (pvg_search_is_stopword(w, len)) return 0;
    int added = 0;
    long wid = pvg_smap_intern(&ix->words, w, len, &added);
    if (wid < 0 || grow_words(ix, (size_t)wid + 1)) {
        c->nomem = 1;
        return 1;
    }
    if (added) {
        char stem[PVG_SEARCH_WORD_MAX + 1];
        size_t sl = pvg_search_stem(ix->stemming ? ix->stemmer : NULL, w, len, stem, sizeof stem);
        long tid = pvg_smap_intern(&ix->terms, stem, sl, NULL);
        if (tid < 0) {
            c->nomem = 1;
            return 1;
        }
        ix->word_term[wid] = (uint32_t)tid;
        ix->word_df[wid] = 0;
        ix->word_last_doc[wid] = UINT32_MAX;
    }
    if (ix->word_last_doc[wid] != c->doc) {
        ix->word_last_doc[wid] = c->doc;
        ix->word_df[wid]++;
    }
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        doc_tok *t = realloc(c->toks, nc * sizeof *t);
        if (!t) {
            c->nomem = 1;
            return 1;
        }
        c->toks = t;
        c->cap = nc;
    }
    c->toks[c->n].term = ix->word_term[wid];
    c->toks[c->n].field = (uint8_t)c->field;
    c->n++;
    uint16_t *fl = &ix->flen[c->doc][c->field];
    if (*fl < UINT16_MAX) (*fl)++;
    (void)flags;
    return 0;
}

static void add_json_strings(add_ctx *c, json_t *v, int depth)
{
    if (c->nomem || depth > 16) return;
    if (json_is_string(v)) {
        pvg_search_words(json_string_value(v), json_string_length(v), add_word, c);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) add_json_strings(c, x, depth + 1);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) add_json_strings(c, x, depth + 1);
    }
}

static int tok_cmp(const void *a, const void *b)
{
    const doc_tok *x = a, *y = b;
    return x->term < y->term ? -1 : x->term > y->term;
}

static void lower_ascii(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z') s[i] = (char)(s[i] + 32);
}

pvg_status pvg_search_index_add(pvg_search_index *ix, const pvg_item *item, pvg_error *err)
{
    if (!ix || !item) return pvg_error_set(err, PVG_ERR_INVALID, "search index: NULL argument");
    if (ix->finished) return pvg_error_set(err, PVG_ERR_STATE, "search index: add after finish");
    if (!item->ext_id || !*item->ext_id)
        return pvg_error_set(err, PVG_ERR_INVALID, "search index: item without ext_id");
    if (ix->n_docs >= UINT32_MAX - 1)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED, "search index: too many items");
    if (ix->n_docs == ix->docs_cap) {
        size_t nc = ix->docs_cap ? ix->docs_cap * 2 : 1024;
        pvg_search_doc *d = realloc(ix->docs, nc * sizeof *d);
        if (!d) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
        ix->docs = d;
        uint16_t(*fl)[PVG_F_COUNT] = realloc(ix->flen, nc * sizeof *fl);
        if (!fl) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
        ix->flen = fl;
        ix->docs_cap = nc;
    }
    uint32_t doc = (uint32_t)ix->n_docs;
    pvg_search_doc *d = &ix->docs[doc];
    memset(d, 0, sizeof *d);
    memset(ix->flen[doc], 0, sizeof ix->flen[doc]);
    d->ext_id = strdup(item->ext_id);
    d->title = item->title ? strdup(item->title) : NULL;
    d->item_id = item->id;
    d->price = item->price >= 0 && isfinite(item->price) ? item->price : -1;
    d->cat = -1;
    if (!d->ext_id || (item->title && !d->title)) {
        free(d->ext_id);
        free(d->title);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    }
    ix->n_docs++; /* from here the doc is owned by the index */
    if (item->category && *item->category) {
        size_t cl = strlen(item->category);
        char *low = malloc(cl + 1);
        if (!low) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
        memcpy(low, item->category, cl + 1);
        lower_ascii(low, cl);
        int added = 0;
        long cid = pvg_smap_intern(&ix->cats, low, cl, &added);
        free(low);
        if (cid < 0) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
        if (added) {
            if ((size_t)cid >= ix->cat_label_cap) {
                size_t nc = ix->cat_label_cap ? ix->cat_label_cap * 2 : 64;
                char **l = realloc(ix->cat_label, nc * sizeof *l);
                if (!l) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
                ix->cat_label = l;
                ix->cat_label_cap = nc;
            }
            ix->cat_label[cid] = strdup(item->category);
            if (!ix->cat_label[cid])
                return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
        }
        d->cat = (int32_t)cid;
        d->category = ix->cat_label[cid];
    }

    add_ctx c = {.ix = ix, .doc = doc};
    if (item->title) {
        c.field = PVG_F_TITLE;
        pvg_search_words(item->title, strlen(item->title), add_word, &c);
    }
    if (item->category && !c.nomem) {
        c.field = PVG_F_CATEGORY;
        pvg_search_words(item->category, strlen(item->category), add_word, &c);
    }
    if (item->attrs_json && !c.nomem) {
        c.field = PVG_F_ATTRS;
        json_error_t je;
        json_t *j = json_loads(item->attrs_json, JSON_DISABLE_EOF_CHECK, &je);
        if (j && json_is_object(j))
            add_json_strings(&c, j, 0);
        else
            pvg_search_words(item->attrs_json, strlen(item->attrs_json), add_word, &c);
        json_decref(j);
    }
    if (c.nomem) {
        free(c.toks);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    }
    qsort(c.toks, c.n, sizeof *c.toks, tok_cmp);
    for (size_t i = 0; i < c.n;) {
        size_t j = i;
        pvg_build_row row = {.term = c.toks[i].term, .doc = doc};
        while (j < c.n && c.toks[j].term == c.toks[i].term) {
            uint8_t *tf = &row.tf[c.toks[j].field];
            if (*tf < UINT8_MAX) (*tf)++;
            j++;
        }
        if (ix->n_rows == ix->rows_cap) {
            size_t nc = ix->rows_cap ? ix->rows_cap * 2 : 1 << 14;
            pvg_build_row *r = realloc(ix->rows, nc * sizeof *r);
            if (!r) {
                free(c.toks);
                return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
            }
            ix->rows = r;
            ix->rows_cap = nc;
        }
        ix->rows[ix->n_rows++] = row;
        i = j;
    }
    free(c.toks);
    return PVG_OK;
}

/* ---- finish ------------------------------------------------------------------------ */

static int word_cmp(const void *a, const void *b, void *vix)
{
    const pvg_search_index *ix = vix;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return strcmp(ix->words.keys[x], ix->words.keys[y]);
}

typedef struct del_pair {
    uint64_t h;
    uint32_t w;
} del_pair;

static int del_cmp(const void *a, const void *b)
{
    const del_pair *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return x->w < y->w ? -1 : x->w > y->w;
}

/* Deletions of a vocabulary word kept: words of 3+ bytes up to 1, of 6+ up
 * to 2 (so that a query word of 8+ letters finds them at distance 2). */
static int del_dist(size_t len)
{
    return len >= 6 ? 2 : len >= 3 ? 1 : 0;
}

static size_t del_count(size_t len)
{
    int d = del_dist(len);
    if (!d) return 0;
    size_t n = 1 + len;
    if (d == 2) n += len * (len - 1) / 2;
    return n;
}

static void del_emit(const char *w, size_t len, uint32_t wid, del_pair *out, size_t *n)
{
    int d = del_dist(len);
    char buf[PVG_SEARCH_WORD_MAX + 1];
    out[(*n)++] = (del_pair){pvg_search_hash(w, len), wid};
    for (size_t i = 0; i < len; i++) {
        memcpy(buf, w, i);
        memcpy(buf + i, w + i + 1, len - i - 1);
        out[(*n)++] = (del_pair){pvg_search_hash(buf, len - 1), wid};
        if (d < 2) continue;
        for (size_t j = i + 1; j < len; j++) {
            char b2[PVG_SEARCH_WORD_MAX + 1];
            /* delete i and j from w */
            size_t k = 0;
            for (size_t x = 0; x < len; x++)
                if (x != i && x != j) b2[k++] = w[x];
            out[(*n)++] = (del_pair){pvg_search_hash(b2, k), wid};
        }
    }
}

/* qsort_r is a GNU extension; a small merge sort keeps to C11 + POSIX. */
static void msort_words(uint32_t *a, uint32_t *tmp, size_t n, const pvg_search_index *ix)
{
    if (n < 2) return;
    size_t h = n / 2;
    msort_words(a, tmp, h, ix);
    msort_words(a + h, tmp, n - h, ix);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = word_cmp(&a[j], &a[i], (void *)ix) < 0 ? a[j++] : a[i++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

pvg_status pvg_search_index_finish(pvg_search_index *ix, pvg_error *err)
{
    if (!ix) return pvg_error_set(err, PVG_ERR_INVALID, "search index: NULL");
    if (ix->finished) return pvg_error_set(err, PVG_ERR_STATE, "search index: finished already");
    size_t nt = ix->terms.n, nd = ix->n_docs, nw = ix->words.n;
    ix->term_df = calloc(nt + 1, sizeof *ix->term_df);
    ix->post_off = calloc(nt + 1, sizeof *ix->post_off);
    ix->post = malloc((ix->n_rows + 1) * sizeof *ix->post);
    ix->term_idf = malloc((nt + 1) * sizeof *ix->term_idf);
    ix->words_sorted = malloc((nw + 1) * sizeof *ix->words_sorted);
    if (!ix->term_df || !ix->post_off || !ix->post || !ix->term_idf || !ix->words_sorted)
        return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    /* field norms: 1 / (1 - b + b len / avg) per doc and field */
    float(*fnorm)[PVG_F_COUNT] = malloc((nd + 1) * sizeof *fnorm);
    if (!fnorm) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    double avg[PVG_F_COUNT] = {0};
    for (size_t d = 0; d < nd; d++)
        for (int f = 0; f < PVG_F_COUNT; f++)
            avg[f] += ix->flen[d][f];
    for (int f = 0; f < PVG_F_COUNT; f++)
        avg[f] = nd ? avg[f] / (double)nd : 0;
    for (size_t d = 0; d < nd; d++)
        for (int f = 0; f < PVG_F_COUNT; f++) {
            double norm = avg[f] > 0 ? 1.0 - FIELD_B[f] + FIELD_B[f] * ix->flen[d][f] / avg[f] : 1;
            fnorm[d][f] = (float)(1.0 / norm);
        }
    free(ix->flen);
    ix->flen = NULL;
    /* postings: counting sort of the rows by term (rows are in doc order) */
    for (size_t i = 0; i < ix->n_rows; i++)
        ix->term_df[ix->rows[i].term]++;
    size_t acc = 0;
    for (size_t t = 0; t < nt; t++) {
        ix->post_off[t] = acc;
        acc += ix->term_df[t];
    }
    ix->post_off[nt] = acc;
    size_t *fill = malloc((nt + 1) * sizeof *fill);
    if (!fill) {
        free(fnorm);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    }
    memcpy(fill, ix->post_off, (nt + 1) * sizeof *fill);
    for (size_t i = 0; i < ix->n_rows; i++) {
        const pvg_build_row *r = &ix->rows[i];
        pvg_posting *p = &ix->post[fill[r->term]++];
        p->doc = r->doc;
        double tf = 0;
        for (int f = 0; f < PVG_F_COUNT; f++)
            tf += FIELD_W[f] * r->tf[f] * fnorm[r->doc][f];
        p->sat = (float)(tf * (PVG_BM25_K1 + 1) / (PVG_BM25_K1 + tf));
    }
    free(fill);
    free(fnorm);
    free(ix->rows);
    ix->rows = NULL;
    ix->rows_cap = 0;
    free(ix->word_last_doc);
    ix->word_last_doc = NULL;
    for (size_t t = 0; t < nt; t++) {
        double df = ix->term_df[t];
        ix->term_idf[t] = (float)log(1.0 + ((double)nd - df + 0.5) / (df + 0.5));
    }
    /* sorted words (prefix ranges) */
    uint32_t *tmp = malloc((nw + 1) * sizeof *tmp);
    if (!tmp) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    for (size_t w = 0; w < nw; w++)
        ix->words_sorted[w] = (uint32_t)w;
    msort_words(ix->words_sorted, tmp, nw, ix);
    free(tmp);
    /* deletion neighbourhood of the vocabulary */
    size_t nd_pairs = 0;
    for (size_t w = 0; w < nw; w++)
        nd_pairs += del_count(ix->words.lens[w]);
    del_pair *pairs = malloc((nd_pairs + 1) * sizeof *pairs);
    if (!pairs) return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    size_t np = 0;
    for (size_t w = 0; w < nw; w++)
        if (del_dist(ix->words.lens[w]))
            del_emit(ix->words.keys[w], ix->words.lens[w], (uint32_t)w, pairs, &np);
    qsort(pairs, np, sizeof *pairs, del_cmp);
    size_t u = 0;
    for (size_t i = 0; i < np; i++)
        if (!u || pairs[i].h != pairs[u - 1].h || pairs[i].w != pairs[u - 1].w)
            pairs[u++] = pairs[i];
    ix->del_hash = malloc((u + 1) * sizeof *ix->del_hash);
    ix->del_word = malloc((u + 1) * sizeof *ix->del_word);
    if (!ix->del_hash || !ix->del_word) {
        free(pairs);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    }
    for (size_t i = 0; i < u; i++) {
        ix->del_hash[i] = pairs[i].h;
        ix->del_word[i] = pairs[i].w;
    }
    ix->n_del = u;
    free(pairs);
    /* synonyms: sorted by key, resolved against the terms */
    if (ix->n_syn) qsort(ix->syn, ix->n_syn, sizeof *ix->syn, syn_cmp);
    ix->syn_resolved = 0;
    for (size_t i = 0; i < ix->n_syn; i++) {
        ix->syn[i].syn_term =
            pvg_smap_find(&ix->terms, ix->syn[i].syn_stem, strlen(ix->syn[i].syn_stem));
        if (ix->syn[i].syn_term >= 0) ix->syn_resolved++;
    }
    ix->dprice = malloc((nd + 1) * sizeof *ix->dprice);
    ix->dcat = malloc((nd + 1) * sizeof *ix->dcat);
    if (!ix->dprice || !ix->dcat)
        return pvg_error_set(err, PVG_ERR_NOMEM, "search index: out of memory");
    for (size_t d = 0; d < nd; d++) {
        ix->dprice[d] = ix->docs[d].price;
        ix->dcat[d] = ix->docs[d].cat;
    }
    /* the build stemmer is not thread-safe: queries make their own */
    pvg_search_stemmer_free(ix->stemmer);
    ix->stemmer = NULL;
    ix->finished = 1;
    return PVG_OK;
}

/* ---- from a store ------------------------------------------------------------------ */

typedef struct build_ctx {
    pvg_search_index *ix;
    pvg_error *err;
    pvg_status st;
} build_ctx;

static int build_one(void *vctx, const pvg_item *item)
{
    build_ctx *c = vctx;
    c->st = pvg_search_index_add(c->ix, item, c->err);
    return c->st != PVG_OK;
}

pvg_status pvg_search_index_build(pvg_store *s, const pvg_search_options *opts,
                                  pvg_search_index **out, pvg_error *err)
{
    if (!s || !out) return pvg_error_set(err, PVG_ERR_INVALID, "search index: NULL argument");
    *out = NULL;
    pvg_search_index *ix;
    pvg_status st = pvg_search_index_new(opts, &ix, err);
    if (st != PVG_OK) return st;
    build_ctx c = {ix, err, PVG_OK};
    st = pvg_store_items_foreach(s, build_one, &c, err);
    if (st == PVG_ERR_ABORTED && c.st != PVG_OK) st = c.st;
    if (st == PVG_OK) st = pvg_search_index_finish(ix, err);
    if (st != PVG_OK) {
        pvg_search_index_free(ix);
        return st;
    }
    *out = ix;
    return PVG_OK;
}

void pvg_search_index_stats_get(const pvg_search_index *ix, pvg_search_index_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!ix || !ix->finished) return;
    out->items = ix->n_docs;
    out->terms = ix->terms.n;
    out->words = ix->words.n;
    out->postings = ix->post_off[ix->terms.n];
    out->categories = ix->cats.n;
    out->synonyms = ix->syn_resolved;
    size_t b = sizeof *ix + ix->docs_cap * sizeof *ix->docs;
    for (size_t i = 0; i < ix->n_docs; i++)
        b += strlen(ix->docs[i].ext_id) + 1 +
             (ix->docs[i].title ? strlen(ix->docs[i].title) + 1 : 0);
    b += pvg_smap_bytes(&ix->terms) + pvg_smap_bytes(&ix->words) + pvg_smap_bytes(&ix->cats);
    b += ix->word_cap * 2 * sizeof(uint32_t) +
         ix->terms.n * (sizeof(uint32_t) + sizeof(size_t) + sizeof(float));
    b += out->postings * sizeof(pvg_posting) + ix->words.n * sizeof(uint32_t);
    b += ix->n_del * (sizeof(uint64_t) + sizeof(uint32_t));
    out->bytes = b;
}

pvg_status pvg_search_sort_parse(const char *name, pvg_search_sort *out)
{
    if (!name || !out) return PVG_ERR_INVALID;
    if (strcmp(name, "relevance") == 0)
        *out = PVG_SEARCH_SORT_RELEVANCE;
    else if (strcmp(name, "price") == 0 || strcmp(name, "price_asc") == 0)
        *out = PVG_SEARCH_SORT_PRICE_ASC;
    else if (strcmp(name, "price_desc") == 0)
        *out = PVG_SEARCH_SORT_PRICE_DESC;
    else
        return PVG_ERR_INVALID;
    return PVG_OK;
}
