/*
 * query.c - running a query on a finished index: parsing the text into
 * words, the variants of each word (stem, synonyms, typo corrections,
 * completions of the last word), BM25F scoring over the posting lists,
 * filters, the result set (the items matching the most words), top-k
 * selection, facets.
 */
#include "search/search_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* variant weights (docs/search.md) */
#define W_EXACT 1.0
#define W_SYNONYM 0.8
#define W_PREFIX 0.8
#define W_TYPO1 0.6
#define W_TYPO2 0.4
#define TYPO_MAX 3 /* corrections kept per word */
#define SYN_MAX 8  /* synonyms kept per word */
#define VAR_MAX (1 + SYN_MAX + PVG_SEARCH_PREFIX_MAX + TYPO_MAX)
#define STOP_MAX 16
#define CAT_FACETS 50

static const double PRICE_EDGES[] = {0, 1, 2, 5, 10, 20, 50, 100, 200, 500};
#define N_BUCKETS (sizeof PRICE_EDGES / sizeof PRICE_EDGES[0])

/* ---- scratch: dense per-document arrays, zero between queries ---------------- */

struct pvg_search_scratch {
    pvg_search_scratch *next;
    float *acc;        /* score so far */
    float *cur;        /* best variant score of the current word */
    uint32_t *mask;    /* words matched */
    uint32_t *touched; /* docs with mask != 0 */
    uint32_t *tt;      /* docs touched by the current word */
    size_t n_touched;
};

static void scratch_free(pvg_search_scratch *s)
{
    if (!s) return;
    free(s->acc);
    free(s->cur);
    free(s->mask);
    free(s->touched);
    free(s->tt);
    free(s);
}

void pvg_search_scratch_free_all(pvg_search_index *ix)
{
    pvg_search_scratch *s = ix->scratch_free;
    while (s) {
        pvg_search_scratch *n = s->next;
        scratch_free(s);
        s = n;
    }
    ix->scratch_free = NULL;
}

static pvg_search_scratch *scratch_take(const pvg_search_index *cix)
{
    pvg_search_index *ix = (pvg_search_index *)cix; /* the pool is the one mutable part */
    pthread_mutex_lock(&ix->scratch_mu);
    pvg_search_scratch *s = ix->scratch_free;
    if (s) ix->scratch_free = s->next;
    pthread_mutex_unlock(&ix->scratch_mu);
    if (s) return s;
    size_t n = ix->n_docs + 1;
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->acc = calloc(n, sizeof *s->acc);
    s->cur = calloc(n, sizeof *s->cur);
    s->mask = calloc(n, sizeof *s->mask);
    s->touched = malloc(n * sizeof *s->touched);
    s->tt = malloc(n * sizeof *s->tt);
    if (!s->acc || !s->cur || !s->mask || !s->touched || !s->tt) {
        scratch_free(s);
        return NULL;
    }
    return s;
}

static void scratch_give(const pvg_search_index *cix, pvg_search_scratch *s)
{
    pvg_search_index *ix = (pvg_search_index *)cix;
    for (size_t i = 0; i < s->n_touched; i++) {
        uint32_t d = s->touched[i];
        s->acc[d] = 0;
        s->mask[d] = 0;
    }
    s->n_touched = 0;
    pthread_mutex_lock(&ix->scratch_mu);
    s->next = ix->scratch_free;
    ix->scratch_free = s;
    pthread_mutex_unlock(&ix->scratch_mu);
}

/* ---- the result -------------------------------------------------------------- */

typedef struct rterm {
    pvg_search_term pub;
    char word[PVG_SEARCH_WORD_MAX + 1];
    char stem[PVG_SEARCH_WORD_MAX + 1];
    pvg_search_variant var[VAR_MAX];
    uint32_t var_term[VAR_MAX];
} rterm;

struct pvg_search_result {
    size_t total;
    size_t n_hits;
    pvg_search_hit *hits;
    size_t n_terms;
    rterm *terms;
    pvg_search_term *term_views;
    size_t n_stop;
    char stop[STOP_MAX][16];
    const char *stop_ptr[STOP_MAX];
    size_t dropped;
    size_t min_matched;
    size_t n_cat_facets;
    pvg_search_facet cat_facets[CAT_FACETS];
    pvg_search_facet price_facets[N_BUCKETS];
    char price_labels[N_BUCKETS][32];
};

void pvg_search_result_free(pvg_search_result *r)
{
    if (!r) return;
    free(r->hits);
    free(r->terms);
    free(r->term_views);
    free(r);
}

size_t pvg_search_result_total(const pvg_search_result *r)
{
    return r ? r->total : 0;
}

size_t pvg_search_result_count(const pvg_search_result *r)
{
    return r ? r->n_hits : 0;
}

const pvg_search_hit *pvg_search_result_hit(const pvg_search_result *r, size_t i)
{
    return r && i < r->n_hits ? &r->hits[i] : NULL;
}

size_t pvg_search_result_terms(const pvg_search_result *r, const pvg_search_term **terms)
{
    if (terms) *terms = r ? r->term_views : NULL;
    return r ? r->n_terms : 0;
}

size_t pvg_search_result_stopwords(const pvg_search_result *r, const char *const **words)
{
    if (words) *words = r ? r->stop_ptr : NULL;
    return r ? r->n_stop : 0;
}

size_t pvg_search_result_dropped(const pvg_search_result *r)
{
    return r ? r->dropped : 0;
}

size_t pvg_search_result_min_matched(const pvg_search_result *r)
{
    return r ? r->min_matched : 0;
}

size_t pvg_search_result_categories(const pvg_search_result *r, const pvg_search_facet **out)
{
    if (out) *out = r ? r->cat_facets : NULL;
    return r ? r->n_cat_facets : 0;
}

size_t pvg_search_result_price_buckets(const pvg_search_result *r, const pvg_search_facet **out)
{
    if (out) *out = r ? r->price_facets : NULL;
    return r ? N_BUCKETS : 0;
}

const char *pvg_search_variant_kind_name(pvg_search_variant_kind k)
{
    switch (k) {
    case PVG_SEARCH_VARIANT_EXACT:
        return "exact";
    case PVG_SEARCH_VARIANT_SYNONYM:
        return "synonym";
    case PVG_SEARCH_VARIANT_TYPO:
        return "typo";
    case PVG_SEARCH_VARIANT_PREFIX:
        return "prefix";
    }
    return "?";
}

void pvg_search_query_init(pvg_search_query *q)
{
    memset(q, 0, sizeof *q);
    q->price_min = -1;
    q->price_max = -1;
    q->k = 10;
}

/* ---- parsing ------------------------------------------------------------------- */

#define QWORDS_MAX 64

typedef struct qword {
    char w[PVG_SEARCH_WORD_MAX + 1];
    size_t len;
    int last; /* at the very end of the text */
} qword;

typedef struct qparse {
    qword words[QWORDS_MAX];
    size_t n;
    size_t overflow;
    /* a pending hyphen group */
    qword parts[QWORDS_MAX];
    size_t n_parts;
    const pvg_search_index *ix;
} qparse;

static void qpush(qparse *p, const char *w, size_t len, int last)
{
    if (p->n == QWORDS_MAX) {
        p->overflow++;
        return;
    }
    qword *q = &p->words[p->n++];
    memcpy(q->w, w, len);
    q->w[len] = 0;
    q->len = len;
    q->last = last;
}

static void flush_parts(qparse *p)
{
    for (size_t i = 0; i < p->n_parts; i++)
        qpush(p, p->parts[i].w, p->parts[i].len, p->parts[i].last);
    p->n_parts = 0;
}

static int qword_fn(void *ctx, const char *w, size_t len, unsigned flags)
{
    qparse *p = ctx;
    if (flags & PVG_SW_PART) {
        if (p->n_parts < QWORDS_MAX) {
            qword *q = &p->parts[p->n_parts++];
            memcpy(q->w, w, len);
            q->w[len] = 0;
            q->len = len;
            q->last = (flags & PVG_SW_LAST) != 0;
        }
        return 0;
    }
    if (flags & PVG_SW_JOINED) {
        /* "t-light": the joined word when the catalog has it, else the parts */
        if (pvg_smap_find(&p->ix->words, w, len) >= 0) {
            p->n_parts = 0;
            qpush(p, w, len, (flags & PVG_SW_LAST) != 0);
        } else {
            flush_parts(p);
        }
        return 0;
    }
    flush_parts(p);
    qpush(p, w, len, (flags & PVG_SW_LAST) != 0);
    return 0;
}

static int has_digit(const char *w, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (w[i] >= '0' && w[i] <= '9') return 1;
    return 0;
}

/* Adds a variant unless its term is there already (then keeps the larger
 * weight). */
static void var_add(rterm *t, uint32_t term, const char *word, pvg_search_variant_kind kind,
                    int dist, double weight)
{
    for (size_t i = 0; i < t->pub.n_variants; i++)
        if (t->var_term[i] == term) {
            if (weight > t->var[i].weight) {
                t->var[i].weight = weight;
                t->var[i].kind = kind;
                t->var[i].word = word;
                t->var[i].distance = dist;
            }
            return;
        }
    if (t->pub.n_variants == VAR_MAX) return;
    size_t i = t->pub.n_variants++;
    t->var_term[i] = term;
    t->var[i] = (pvg_search_variant){word, kind, dist, weight};
}

/* First index in words_sorted whose word is >= key (length klen). */
static size_t words_lower(const pvg_search_index *ix, const char *key, size_t klen)
{
    size_t lo = 0, hi = ix->words.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t w = ix->words_sorted[mid];
        const char *s = ix->words.keys[w];
        size_t sl = ix->words.lens[w];
        int c = memcmp(s, key, sl < klen ? sl : klen);
        if (c == 0) c = sl < klen ? -1 : sl > klen ? 1 : 0;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void add_prefix(const pvg_search_index *ix, rterm *t, uint32_t exact_term, int has_exact)
{
    size_t len = strlen(t->word);
    size_t i = words_lower(ix, t->word, len);
    /* the completions, most frequent first: a bounded selection */
    uint32_t best[PVG_SEARCH_PREFIX_MAX];
    size_t nb = 0;
    for (; i < ix->words.n; i++) {
        uint32_t w = ix->words_sorted[i];
        if (ix->words.lens[w] < len || memcmp(ix->words.keys[w], t->word, len) != 0) break;
        if (ix->words.lens[w] == len) continue; /* the word itself */
        if (has_exact && ix->word_term[w] == exact_term) continue;
        uint32_t df = ix->word_df[w];
        if (nb < PVG_SEARCH_PREFIX_MAX) {
            size_t j = nb++;
            while (j > 0 && ix->word_df[best[j - 1]] < df) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = w;
        } else if (df > ix->word_df[best[nb - 1]]) {
            size_t j = nb - 1;
            while (j > 0 && ix->word_df[best[j - 1]] < df) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = w;
        }
    }
    for (size_t j = 0; j < nb; j++)
        var_add(t, ix->word_term[best[j]], ix->words.keys[best[j]], PVG_SEARCH_VARIANT_PREFIX, 0,
                W_PREFIX);
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Corrections of a word: min_df 0 for an unknown word; for a rare known
 * word (a misspelling the catalog itself holds), only words at least
 * RARE_RATIO times as frequent. */
#define RARE_RATIO 20
static void add_typos(const pvg_search_index *ix, rterm *t, uint32_t min_df)
{
    size_t len = strlen(t->word);
    int maxd = len >= 8 ? 2 : len >= 4 ? 1 : 0;
    if (!maxd || has_digit(t->word, len)) return;
    /* the query word's deletions (up to maxd) looked up in the vocabulary's */
    uint32_t cand[256];
    size_t nc = 0;
    char buf[PVG_SEARCH_WORD_MAX + 1];
    const char *w = t->word;
    for (int pass = 0; pass < 1 + (int)len + (maxd == 2 ? (int)(len * (len - 1) / 2) : 0); pass++) {
        size_t bl;
        if (pass == 0) {
            memcpy(buf, w, len);
            bl = len;
        } else if (pass <= (int)len) {
            size_t i = (size_t)pass - 1;
            memcpy(buf, w, i);
            memcpy(buf + i, w + i + 1, len - i - 1);
            bl = len - 1;
        } else {
            /* pair (i, j), i < j, numbered in order */
            size_t k = (size_t)pass - 1 - len, i = 0;
            while (k >= len - 1 - i) {
                k -= len - 1 - i;
                i++;
            }
            size_t j = i + 1 + k;
            bl = 0;
            for (size_t x = 0; x < len; x++)
                if (x != i && x != j) buf[bl++] = w[x];
        }
        uint64_t h = pvg_search_hash(buf, bl);
        size_t lo = 0, hi = ix->n_del;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ix->del_hash[mid] < h)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < ix->n_del && ix->del_hash[lo] == h && nc < 256; lo++)
            cand[nc++] = ix->del_word[lo];
    }
    qsort(cand, nc, sizeof *cand, u32_cmp);
    uint32_t best[TYPO_MAX];
    int bestd = maxd + 1;
    size_t nb = 0;
    for (size_t i = 0; i < nc; i++) {
        if (i && cand[i] == cand[i - 1]) continue;
        uint32_t c = cand[i];
        int d = pvg_search_osa(w, len, ix->words.keys[c], ix->words.lens[c], maxd);
        if (d > maxd || d == 0 || ix->word_df[c] < min_df) continue;
        if (d < bestd) {
            bestd = d;
            nb = 0;
        }
        if (d > bestd) continue;
        /* keep the TYPO_MAX most frequent at the best distance */
        if (nb < TYPO_MAX) {
            best[nb++] = c;
        } else {
            size_t lo = 0;
            for (size_t j = 1; j < nb; j++)
                if (ix->word_df[best[j]] < ix->word_df[best[lo]]) lo = j;
            if (ix->word_df[c] > ix->word_df[best[lo]]) best[lo] = c;
        }
    }
    for (size_t j = 0; j < nb; j++)
        var_add(t, ix->word_term[best[j]], ix->words.keys[best[j]], PVG_SEARCH_VARIANT_TYPO, bestd,
                bestd == 1 ? W_TYPO1 : W_TYPO2);
}

static void add_synonyms(const pvg_search_index *ix, rterm *t)
{
    size_t lo = 0, hi = ix->n_syn;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ix->syn[mid].key_stem, t->stem) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    int n = 0;
    for (; lo < ix->n_syn && n < SYN_MAX && strcmp(ix->syn[lo].key_stem, t->stem) == 0; lo++) {
        if (ix->syn[lo].syn_term < 0) continue;
        var_add(t, (uint32_t)ix->syn[lo].syn_term, ix->syn[lo].word, PVG_SEARCH_VARIANT_SYNONYM, 0,
                W_SYNONYM);
        n++;
    }
}

/* ---- selection ------------------------------------------------------------------ */

typedef struct cand {
    uint32_t doc;
    float score;
    uint32_t mask;
} cand;

/* 1 when a ranks before b. */
static int before(const pvg_search_index *ix, pvg_search_sort sort, const cand *a, const cand *b)
{
    if (sort != PVG_SEARCH_SORT_RELEVANCE) {
        double pa = ix->docs[a->doc].price, pb = ix->docs[b->doc].price;
        if ((pa < 0) != (pb < 0)) return pb < 0; /* unknown prices last */
        if (pa != pb) return sort == PVG_SEARCH_SORT_PRICE_ASC ? pa < pb : pa > pb;
    }
    if (a->score != b->score) return a->score > b->score;
    return a->doc < b->doc;
}

/* A heap of the best `cap` candidates; its root is the worst kept. */
typedef struct topk {
    cand *h;
    size_t n, cap;
    const pvg_search_index *ix;
    pvg_search_sort sort;
} topk;

static void topk_push(topk *t, cand c)
{
    if (!t->cap) return;
    if (t->n < t->cap) {
        size_t i = t->n++;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!before(t->ix, t->sort, &t->h[p], &c)) break; /* parent ranks after: stop */
            t->h[i] = t->h[p];
            i = p;
        }
        t->h[i] = c;
        return;
    }
    if (!before(t->ix, t->sort, &c, &t->h[0])) return;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *worst = &c;
        if (l < t->n && before(t->ix, t->sort, worst, &t->h[l])) m = l, worst = &t->h[l];
        if (r < t->n && before(t->ix, t->sort, worst, &t->h[r])) m = r, worst = &t->h[r];
        if (m == i) break;
        t->h[i] = t->h[m];
        i = m;
    }
    t->h[i] = c;
}

/* ---- the query ------------------------------------------------------------------- */

static int passes(const pvg_search_index *ix, const pvg_search_query *q, long cat, uint32_t d)
{
    if (cat != -2 && ix->dcat[d] != cat) return 0;
    double price = ix->dprice[d];
    if (q->price_min >= 0 && !(price >= 0 && price >= q->price_min)) return 0;
    if (q->price_max >= 0 && !(price >= 0 && price <= q->price_max)) return 0;
    return 1;
}

static int popcount32(uint32_t x)
{
    int n = 0;
    while (x) {
        x &= x - 1;
        n++;
    }
    return n;
}

static size_t bucket_of(double price)
{
    size_t b = N_BUCKETS - 1;
    while (b > 0 && price < PRICE_EDGES[b])
        b--;
    return b;
}

/* Postings a word's variants hold together. */
static size_t term_cost(const pvg_search_index *ix, const rterm *t)
{
    size_t c = 0;
    for (size_t v = 0; v < t->pub.n_variants; v++)
        c += ix->term_df[t->var_term[v]];
    return c;
}

static void scratch_reset(pvg_search_scratch *s)
{
    for (size_t i = 0; i < s->n_touched; i++) {
        uint32_t d = s->touched[i];
        s->acc[d] = 0;
        s->mask[d] = 0;
    }
    s->n_touched = 0;
}

/* Adds the per-document best variant scores of the current word (listed
 * in s->tt[0..ntt)) as word `bit`. */
static void score_commit(pvg_search_scratch *s, size_t ntt, size_t bit)
{
    for (size_t j = 0; j < ntt; j++) {
        uint32_t d = s->tt[j];
        if (!s->mask[d]) s->touched[s->n_touched++] = d;
        s->mask[d] |= 1u << bit;
        s->acc[d] += s->cur[d];
        s->cur[d] = 0;
    }
}

/* Word `bit` over its whole posting lists; only_known: only documents
 * already touched (mask != 0). */
static void score_scan(const pvg_search_index *ix, const rterm *t, size_t bit,
                       pvg_search_scratch *s, int only_known)
{
    size_t ntt = 0;
    for (size_t v = 0; v < t->pub.n_variants; v++) {
        uint32_t term = t->var_term[v];
        float fw = (float)(ix->term_idf[term] * t->var[v].weight);
        const pvg_posting *pp = ix->post + ix->post_off[term];
        const pvg_posting *pe = ix->post + ix->post_off[term + 1];
        for (; pp < pe; pp++) {
            uint32_t d = pp->doc;
            if (only_known && !s->mask[d]) continue;
            float sc = fw * pp->sat;
            if (s->cur[d] == 0) s->tt[ntt++] = d;
            if (sc > s->cur[d]) s->cur[d] = sc;
        }
    }
    score_commit(s, ntt, bit);
}

/* Word `bit` looked up for the touched documents only (s->touched sorted):
 * a galloping search through each variant's posting list. */
static void score_gallop(const pvg_search_index *ix, const rterm *t, size_t bit,
                         pvg_search_scratch *s)
{
    size_t ntt = 0;
    for (size_t v = 0; v < t->pub.n_variants; v++) {
        uint32_t term = t->var_term[v];
        float fw = (float)(ix->term_idf[term] * t->var[v].weight);
        const pvg_posting *p = ix->post + ix->post_off[term];
        size_t n = ix->post_off[term + 1] - ix->post_off[term], pos = 0;
        for (size_t j = 0; j < s->n_touched && pos < n; j++) {
            uint32_t d = s->touched[j];
            if (p[pos].doc < d) {
                size_t step = 1, lo = pos, hi = pos + 1;
                while (hi < n && p[hi].doc < d) {
                    lo = hi;
                    step *= 2;
                    hi = pos + step;
                }
                if (hi > n) hi = n;
                while (lo < hi) { /* first index in [lo, hi) with doc >= d */
                    size_t mid = lo + (hi - lo) / 2;
                    if (p[mid].doc < d)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                pos = lo;
            }
            if (pos < n && p[pos].doc == d) {
                float sc = fw * p[pos].sat;
                if (s->cur[d] == 0) s->tt[ntt++] = d;
                if (sc > s->cur[d]) s->cur[d] = sc;
            }
        }
    }
    score_commit(s, ntt, bit);
}

/* Keeps the touched documents that have word `bit` (the others are reset). */
static void keep_with(pvg_search_scratch *s, size_t bit)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n_touched; i++) {
        uint32_t d = s->touched[i];
        if (s->mask[d] & (1u << bit))
            s->touched[k++] = d;
        else
            s->acc[d] = 0, s->mask[d] = 0;
    }
    s->n_touched = k;
}

/* The documents with every word: 1 when one of them passes the filters
 * (the scratch then holds exactly those documents with all words), 0 when
 * none does. */
static int score_all(const pvg_search_index *ix, const pvg_search_result *r, const size_t *order,
                     pvg_search_scratch *s, const pvg_search_query *q, long cat)
{
    int sorted = 0;
    for (size_t o = 0; o < r->n_terms; o++) {
        size_t i = order[o];
        const rterm *t = &r->terms[i];
        if (o == 0) {
            score_scan(ix, t, i, s, 0);
        } else {
            size_t cost = term_cost(ix, t);
            if ((double)s->n_touched * (double)t->pub.n_variants * 8.0 < (double)cost) {
                if (!sorted) qsort(s->touched, s->n_touched, sizeof *s->touched, u32_cmp);
                sorted = 1;
                score_gallop(ix, t, i, s);
            } else {
                score_scan(ix, t, i, s, 1);
            }
        }
        keep_with(s, i); /* stays sorted: a filter of a sorted list */
        if (!s->n_touched) return 0;
    }
    for (size_t j = 0; j < s->n_touched; j++)
        if (passes(ix, q, cat, s->touched[j])) return 1;
    return 0;
}

static pvg_status validate(const pvg_search_index *ix, const pvg_search_query *q, pvg_error *err)
{
    if (!ix || !q) return pvg_error_set(err, PVG_ERR_INVALID, "search: NULL argument");
    if (!ix->finished)
        return pvg_error_set(err, PVG_ERR_STATE, "search: the index is not finished");
    if (q->text && strlen(q->text) > PVG_SEARCH_QUERY_MAX_BYTES)
        return pvg_error_set(err, PVG_ERR_INVALID, "q: want at most %d bytes, got %zu",
                             PVG_SEARCH_QUERY_MAX_BYTES, strlen(q->text));
    if (q->k > PVG_SEARCH_K_MAX)
        return pvg_error_set(err, PVG_ERR_INVALID, "k: want 1..%d, got %zu", PVG_SEARCH_K_MAX,
                             q->k);
    if (q->offset > 100000)
        return pvg_error_set(err, PVG_ERR_INVALID, "offset: want 0..100000, got %zu", q->offset);
    if (isnan(q->price_min) || isnan(q->price_max) || isinf(q->price_min) || isinf(q->price_max))
        return pvg_error_set(err, PVG_ERR_INVALID, "price_min/price_max: want finite numbers");
    if (q->price_min >= 0 && q->price_max >= 0 && q->price_min > q->price_max)
        return pvg_error_set(err, PVG_ERR_INVALID, "price_min: want at most price_max (%g), got %g",
                             q->price_max, q->price_min);
    if ((unsigned)q->sort > PVG_SEARCH_SORT_PRICE_DESC)
        return pvg_error_set(err, PVG_ERR_INVALID, "sort: want relevance, price_asc or price_desc");
    return PVG_OK;
}

pvg_status pvg_search_run(const pvg_search_index *ix, const pvg_search_query *q,
                          pvg_search_result **out, pvg_error *err)
{
    if (!out) return pvg_error_set(err, PVG_ERR_INVALID, "search: out is NULL");
    *out = NULL;
    pvg_status st = validate(ix, q, err);
    if (st != PVG_OK) return st;
    size_t k = q->k ? q->k : 10;
    pvg_search_result *r = calloc(1, sizeof *r);
    qparse *p = calloc(1, sizeof *p);
    if (!r || !p) {
        free(r);
        free(p);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search: out of memory");
    }
    p->ix = ix;
    const char *text = q->text ? q->text : "";
    size_t tlen = strlen(text);
    pvg_search_words(text, tlen, qword_fn, p);
    flush_parts(p);
    int prefix_on = !(q->flags & PVG_SEARCH_NO_PREFIX);
    int ends_open = tlen > 0 && p->n > 0 && p->words[p->n - 1].last;
    r->terms = calloc(PVG_SEARCH_TERMS_MAX, sizeof *r->terms);
    r->term_views = calloc(PVG_SEARCH_TERMS_MAX, sizeof *r->term_views);
    if (!r->terms || !r->term_views) {
        free(p);
        pvg_search_result_free(r);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search: out of memory");
    }
    struct sb_stemmer *stemmer = ix->stemming ? pvg_search_stemmer_new() : NULL;
    if (ix->stemming && !stemmer) {
        free(p);
        pvg_search_result_free(r);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search: cannot create a stemmer");
    }
    for (size_t i = 0; i < p->n; i++) {
        qword *w = &p->words[i];
        int is_last = i + 1 == p->n;
        int as_prefix = prefix_on && is_last && (ends_open || (q->flags & PVG_SEARCH_PREFIX_ALL));
        int stop = pvg_search_is_stopword(w->w, w->len);
        if (stop && !as_prefix) {
            if (r->n_stop < STOP_MAX && w->len < sizeof r->stop[0]) {
                memcpy(r->stop[r->n_stop], w->w, w->len + 1);
                r->stop_ptr[r->n_stop] = r->stop[r->n_stop];
                r->n_stop++;
            }
            continue;
        }
        if (r->n_terms == PVG_SEARCH_TERMS_MAX) {
            r->dropped++;
            continue;
        }
        rterm *t = &r->terms[r->n_terms];
        memcpy(t->word, w->w, w->len + 1);
        pvg_search_stem(stemmer, w->w, w->len, t->stem, sizeof t->stem);
        t->pub.is_prefix = as_prefix;
        long term = stop ? -1 : pvg_smap_find(&ix->terms, t->stem, strlen(t->stem));
        t->pub.known = !stop && (term >= 0 || pvg_smap_find(&ix->words, w->w, w->len) >= 0);
        if (term >= 0) var_add(t, (uint32_t)term, t->word, PVG_SEARCH_VARIANT_EXACT, 0, W_EXACT);
        if (!stop && !(q->flags & PVG_SEARCH_NO_SYNONYMS)) add_synonyms(ix, t);
        size_t before_prefix = t->pub.n_variants;
        if (as_prefix) add_prefix(ix, t, term >= 0 ? (uint32_t)term : 0, term >= 0);
        int completed = t->pub.n_variants > before_prefix;
        if (!stop && !completed && !(q->flags & PVG_SEARCH_NO_TYPO)) {
            long wid = pvg_smap_find(&ix->words, w->w, w->len);
            if (!t->pub.known)
                add_typos(ix, t, 0);
            else if (wid >= 0)
                add_typos(ix, t, ix->word_df[wid] * RARE_RATIO + 1);
        }
        if (stop && !t->pub.n_variants) { /* a stop word typed last that completes to nothing */
            if (r->n_stop < STOP_MAX && w->len < sizeof r->stop[0]) {
                memcpy(r->stop[r->n_stop], w->w, w->len + 1);
                r->stop_ptr[r->n_stop] = r->stop[r->n_stop];
                r->n_stop++;
            }
            continue;
        }
        r->n_terms++;
    }
    r->dropped += p->overflow;
    free(p);
    pvg_search_stemmer_free(stemmer);
    for (size_t i = 0; i < r->n_terms; i++) {
        r->terms[i].pub.word = r->terms[i].word;
        r->terms[i].pub.stem = r->terms[i].stem;
        r->terms[i].pub.variants = r->terms[i].var;
        r->term_views[i] = r->terms[i].pub;
    }

    long cat = -2; /* -2: any category */
    if (q->category) {
        size_t cl = strlen(q->category);
        char low[256];
        if (cl >= sizeof low) {
            cat = -3; /* matches nothing */
        } else {
            for (size_t i = 0; i <= cl; i++)
                low[i] = (char)(q->category[i] >= 'A' && q->category[i] <= 'Z' ? q->category[i] + 32
                                                                               : q->category[i]);
            cat = pvg_smap_find(&ix->cats, low, cl);
            if (cat < 0) cat = -3;
        }
    }

    pvg_search_scratch *s = scratch_take(ix);
    cand *heap = malloc((k + q->offset + 1) * sizeof *heap);
    size_t *cat_count = calloc(ix->cats.n + 1, sizeof *cat_count);
    if (!s || !heap || !cat_count) {
        if (s) scratch_give(ix, s);
        free(heap);
        free(cat_count);
        pvg_search_result_free(r);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search: out of memory");
    }
    topk tk = {heap, 0, k + q->offset, ix, q->sort};
    size_t counts[N_BUCKETS] = {0};
    if (r->n_terms) {
        /* all words first (cheapest word first, the others only over its
         * documents); when no document passing the filters has them all,
         * every word over every document and the most words matched win */
        size_t order[PVG_SEARCH_TERMS_MAX];
        for (size_t i = 0; i < r->n_terms; i++)
            order[i] = i;
        for (size_t i = 1; i < r->n_terms; i++) {
            size_t x = order[i], j = i;
            while (j > 0 && term_cost(ix, &r->terms[order[j - 1]]) > term_cost(ix, &r->terms[x])) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = x;
        }
        int found = score_all(ix, r, order, s, q, cat);
        if (!found) {
            scratch_reset(s);
            for (size_t i = 0; i < r->n_terms; i++)
                score_scan(ix, &r->terms[i], i, s, 0);
        }
        int need = 0;
        for (size_t j = 0; j < s->n_touched; j++) {
            uint32_t d = s->touched[j];
            if (!passes(ix, q, cat, d)) continue;
            int c = popcount32(s->mask[d]);
            if (c > need) need = c;
        }
        r->min_matched = (size_t)need;
        for (size_t j = 0; j < s->n_touched; j++) {
            uint32_t d = s->touched[j];
            if (popcount32(s->mask[d]) < need || !passes(ix, q, cat, d)) continue;
            r->total++;
            topk_push(&tk, (cand){d, s->acc[d], s->mask[d]});
            if (ix->dcat[d] >= 0) cat_count[ix->dcat[d]]++;
            if (ix->dprice[d] >= 0) counts[bucket_of(ix->dprice[d])]++;
        }
    } else {
        for (uint32_t d = 0; d < ix->n_docs; d++) {
            if (!passes(ix, q, cat, d)) continue;
            r->total++;
            topk_push(&tk, (cand){d, 0, 0});
            if (ix->dcat[d] >= 0) cat_count[ix->dcat[d]]++;
            if (ix->dprice[d] >= 0) counts[bucket_of(ix->dprice[d])]++;
        }
    }
    scratch_give(ix, s);
    /* the page: sort the kept candidates best first (insertion sort: at most k + offset) */
    for (size_t i = 1; i < tk.n; i++) {
        cand c = tk.h[i];
        size_t j = i;
        while (j > 0 && before(ix, q->sort, &c, &tk.h[j - 1])) {
            tk.h[j] = tk.h[j - 1];
            j--;
        }
        tk.h[j] = c;
    }
    size_t first = q->offset < tk.n ? q->offset : tk.n;
    r->n_hits = tk.n - first;
    r->hits = calloc(r->n_hits + 1, sizeof *r->hits);
    if (!r->hits) {
        free(heap);
        free(cat_count);
        pvg_search_result_free(r);
        return pvg_error_set(err, PVG_ERR_NOMEM, "search: out of memory");
    }
    for (size_t i = 0; i < r->n_hits; i++) {
        const cand *c = &tk.h[first + i];
        const pvg_search_doc *doc = &ix->docs[c->doc];
        r->hits[i] = (pvg_search_hit){.doc = c->doc,
                                      .item_id = doc->item_id,
                                      .ext_id = doc->ext_id,
                                      .title = doc->title,
                                      .category = doc->category,
                                      .price = doc->price,
                                      .score = c->score,
                                      .matched = c->mask};
    }
    free(heap);
    /* facets */
    for (size_t c = 0; c < ix->cats.n; c++) {
        if (!cat_count[c]) continue;
        pvg_search_facet f = {ix->cat_label[c], cat_count[c], 0, 0};
        size_t j = r->n_cat_facets;
        if (j < CAT_FACETS)
            r->n_cat_facets++;
        else if (cat_count[c] <= r->cat_facets[CAT_FACETS - 1].count)
            continue;
        else
            j = CAT_FACETS - 1;
        while (j > 0 && r->cat_facets[j - 1].count < f.count) {
            r->cat_facets[j] = r->cat_facets[j - 1];
            j--;
        }
        r->cat_facets[j] = f;
    }
    free(cat_count);
    for (size_t b = 0; b < N_BUCKETS; b++) {
        double lo = PRICE_EDGES[b], hi = b + 1 < N_BUCKETS ? PRICE_EDGES[b + 1] : -1;
        if (hi < 0)
            snprintf(r->price_labels[b], sizeof r->price_labels[b], "%g+", lo);
        else
            snprintf(r->price_labels[b], sizeof r->price_labels[b], "%g-%g", lo, hi);
        r->price_facets[b] = (pvg_search_facet){r->price_labels[b], counts[b], lo, hi};
    }
    *out = r;
    return PVG_OK;
}
