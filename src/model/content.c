/*
 * content.c - item-item similarity from public catalogue text: each item's
 * title cut into words as the search index cuts them (folded, stop words
 * dropped, Snowball stems), weighed by inverse document frequency, the
 * vectors normalised, and the squared cosine of every pair. DP models use
 * it as a prior (docs/models.md "A prior from the catalogue's text"): the
 * text is the operator's catalogue, not any shopper's data, so what is
 * derived from it costs no privacy budget. DP-EASE also projects its Gram
 * on a basis derived from the similarity and its released popularity
 * (pvg_content_gram_basis) before the noise.
 */
#include "model/model_internal.h"
#include "search/search_internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on what one title contributes (a catalogue's titles are short;
 * these keep a crafted one from costing more than a normal one): its first
 * CONTENT_MAX_BYTES bytes, its first CONTENT_MAX_TERMS distinct terms. A
 * term in more than a quarter of the titled items is dropped: its weight
 * ln(T / df) is small, and the pairs it would link cost df^2. */
#define CONTENT_MAX_BYTES 4096
#define CONTENT_MAX_TERMS 64

typedef struct words_ctx {
    pvg_smap *terms;
    struct sb_stemmer *stemmer;
    uint32_t *buf; /* the item's term ids */
    size_t n, cap;
    int nomem;
} words_ctx;

static int add_word(void *vctx, const char *word, size_t len, unsigned flags)
{
    (void)flags;
    words_ctx *c = vctx;
    if (c->n >= CONTENT_MAX_TERMS || pvg_search_is_stopword(word, len)) return 0;
    char stem[PVG_SEARCH_WORD_MAX + 1];
    size_t sl = pvg_search_stem(c->stemmer, word, len, stem, sizeof stem);
    if (sl == 0) return 0;
    int added;
    long id = pvg_smap_intern(c->terms, stem, sl, &added);
    if (id < 0) return c->nomem = 1;
    for (size_t k = 0; k < c->n; k++)            /* at most CONTENT_MAX_TERMS */
        if (c->buf[k] == (uint32_t)id) return 0; /* binary term frequency */
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 16;
        uint32_t *nb = realloc(c->buf, nc * sizeof *nb);
        if (!nb) return c->nomem = 1;
        c->buf = nb;
        c->cap = nc;
    }
    c->buf[c->n++] = (uint32_t)id;
    return 0;
}

/* one (item, weight) entry of a term's posting list */
typedef struct post {
    uint32_t item;
    float w;
} post;

pvg_status pvg_content_similarity_rows(const char *const *titles, size_t n,
                                       pvg_content_row_fn row_fn, void *ctx, size_t *n_linked,
                                       pvg_error *err)
{
    *n_linked = 0;
    size_t n_text = 0;
    if (n == 0 || !titles) return PVG_OK;
    pvg_smap terms = {0};
    words_ctx c = {.terms = &terms, .stemmer = pvg_search_stemmer_new()};
    /* item i's terms: tix[tptr[i] .. tptr[i+1]) */
    uint64_t *tptr = calloc(n + 1, sizeof *tptr);
    uint32_t *tix = NULL;
    size_t tcap = 0, tn = 0;
    uint32_t *df = NULL;
    uint64_t *pptr = NULL;
    post *posts = NULL;
    float *norm = NULL, *tw = NULL, *idf = NULL;
    float *row = NULL;    /* one row of S, zero outside its touched columns */
    uint32_t *nz = NULL;  /* the row's touched columns */
    uint8_t *seen = NULL; /* 1 for the touched columns */
    pvg_status st = PVG_OK;
    if (!tptr || !c.stemmer) goto nomem;
    for (size_t i = 0; i < n; i++) {
        c.n = 0;
        if (titles[i] && titles[i][0])
            pvg_search_words(titles[i], strnlen(titles[i], CONTENT_MAX_BYTES), add_word, &c);
        if (c.nomem) goto nomem;
        if (tn + c.n > tcap) {
            size_t nc = tcap ? 2 * tcap : 4096;
            while (nc < tn + c.n)
                nc *= 2;
            uint32_t *nt = realloc(tix, nc * sizeof *nt);
            if (!nt) goto nomem;
            tix = nt;
            tcap = nc;
        }
        if (c.n) memcpy(tix + tn, c.buf, c.n * sizeof *tix);
        tn += c.n;
        tptr[i + 1] = tn;
        n_text += c.n > 0;
    }
    size_t nt = terms.n;
    if (!(df = calloc(nt + 1, sizeof *df)) || !(pptr = calloc(nt + 1, sizeof *pptr)) ||
        !(posts = malloc((tn ? tn : 1) * sizeof *posts)) || !(norm = calloc(n, sizeof *norm)) ||
        !(tw = malloc((tn ? tn : 1) * sizeof *tw)) || !(idf = malloc((nt + 1) * sizeof *idf)) ||
        !(row = calloc(n, sizeof *row)) || !(nz = malloc(n * sizeof *nz)) || !(seen = calloc(n, 1)))
        goto nomem;
    for (size_t q = 0; q < tn; q++)
        df[tix[q]]++;
    /* each term's weight: its inverse document frequency over the items
     * that have text (0 for a term in every such item, and for a dropped
     * one); df becomes the posting count (0 for a weightless term) */
    size_t df_max = n_text / 4 > 64 ? n_text / 4 : 64;
    for (size_t t = 0; t < nt; t++) {
        double w = df[t] <= df_max ? log((double)n_text / (double)df[t]) : 0;
        idf[t] = (float)w;
        if (!(w > 0)) df[t] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (uint64_t q = tptr[i]; q < tptr[i + 1]; q++)
            ss += (double)idf[tix[q]] * idf[tix[q]];
        norm[i] = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    }
    for (size_t t = 0; t < nt; t++)
        pptr[t + 1] = pptr[t] + df[t];
    memset(df, 0, nt * sizeof *df); /* reused as fill counters */
    for (size_t i = 0; i < n; i++)
        for (uint64_t q = tptr[i]; q < tptr[i + 1]; q++) {
            uint32_t t = tix[q];
            tw[q] = idf[t] * norm[i];
            if (tw[q] > 0) posts[pptr[t] + df[t]++] = (post){(uint32_t)i, tw[q]};
        }
    /* S[i][j] = sum over shared terms of w_it w_jt: the cosine */
    for (size_t i = 0; i < n; i++) {
        size_t n_nz = 0;
        for (uint64_t q = tptr[i]; q < tptr[i + 1]; q++) {
            uint32_t t = tix[q];
            float wi = tw[q];
            if (wi == 0) continue;
            for (uint64_t p = pptr[t]; p < pptr[t + 1]; p++) {
                uint32_t j = posts[p].item;
                if (j == i) continue;
                if (!seen[j]) seen[j] = 1, nz[n_nz++] = j;
                row[j] += wi * posts[p].w;
            }
        }
        size_t k = 0; /* squared; a cosine that underflowed to 0 is no link */
        for (size_t q = 0; q < n_nz; q++) {
            uint32_t j = nz[q];
            float v = row[j] * row[j];
            row[j] = v;
            seen[j] = 0;
            if (v > 0) nz[k++] = j;
        }
        *n_linked += k > 0;
        st = row_fn(ctx, i, row, nz, k, err);
        for (size_t q = 0; q < k; q++) /* the dropped ones are 0 already */
            row[nz[q]] = 0;
        if (st != PVG_OK) goto done;
    }
    goto done;
nomem:
    st = pvg_error_set(err, PVG_ERR_NOMEM, "content similarity: out of memory (%zu items)", n);
done:
    pvg_search_stemmer_free(c.stemmer);
    pvg_smap_free(&terms);
    free(c.buf), free(tptr), free(tix), free(df), free(pptr), free(posts), free(norm), free(tw),
        free(idf), free(row), free(nz), free(seen);
    return st;
}

/* pvg_content_similarity's row sink: the row into S (n x n) */
typedef struct dense_ctx {
    float *S;
    size_t n;
} dense_ctx;
static pvg_status dense_row(void *vctx, size_t i, const float *row, const uint32_t *nz, size_t n_nz,
                            pvg_error *err)
{
    (void)err;
    dense_ctx *c = vctx;
    float *out = c->S + i * c->n;
    for (size_t q = 0; q < n_nz; q++)
        out[nz[q]] = row[nz[q]];
    return PVG_OK;
}

pvg_status pvg_content_similarity(const char *const *titles, size_t n, float *S, size_t *n_linked,
                                  pvg_error *err)
{
    *n_linked = 0;
    if (n == 0) return PVG_OK;
    memset(S, 0, n * n * sizeof *S);
    dense_ctx c = {S, n};
    return pvg_content_similarity_rows(titles, n, dense_row, &c, n_linked, err);
}

pvg_status pvg_content_gram_basis(const float *S, const float *pop, size_t n, size_t k,
                                  double alpha, double pop_pow, int threads, float *V,
                                  pvg_error *err)
{
    if (k == 0 || k > n)
        return pvg_error_set(err, PVG_ERR_INVALID, "text basis: rank %zu must be in 1..%zu", k, n);
    if (!(alpha >= 0) || !(pop_pow >= 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "text basis: alpha %g and the popularity's power %g must be >= 0",
                             alpha, pop_pow);
    for (size_t i = 0; i < n; i++)
        if (!(pop[i] >= 0))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "text basis: popularity of item %zu is %g, expected >= 0", i,
                                 (double)pop[i]);
    float *K = calloc(n * n, sizeof *K), *T = malloc(n * n * sizeof *T);
    float *W = malloc(n * n * sizeof *W), *w = malloc(n * sizeof *w);
    if (!K || !T || !W || !w) {
        free(K), free(T), free(W), free(w);
        return pvg_error_set(err, PVG_ERR_NOMEM, "text basis: out of memory (%zu items)", n);
    }
    /* K = I + alpha S~, S~ = S with each row divided by max(1, its sum) */
    for (size_t i = 0; i < n; i++) {
        double rs = 0;
        for (size_t j = 0; j < n; j++)
            if (j != i) rs += S[i * n + j];
        double f = alpha / (rs > 1 ? rs : 1);
        for (size_t j = 0; j < n; j++)
            if (j != i) K[i * n + j] = (float)(f * S[i * n + j]);
        K[i * n + i] = 1;
    }
    /* W = K D K^T, D = diag((pop + 1)^pop_pow): T = K D, W = T K^T */
    for (size_t j = 0; j < n; j++)
        w[j] = (float)pow((double)pop[j] + 1, pop_pow);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            T[i * n + j] = K[i * n + j] * w[j];
    pvg_blas_threaded_begin(threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0f, T, (int)n, K,
                (int)n, 0.0f, W, (int)n);
    lapack_int rc = LAPACKE_ssyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, W, (lapack_int)n, w);
    pvg_blas_threaded_end();
    if (rc == 0)
        /* eigenvalues ascend: the last k columns, largest first; each
         * column's sign fixed (its largest entry positive) so the basis does
         * not depend on LAPACK's choice */
        for (size_t c = 0; c < k; c++) {
            size_t src = n - 1 - c, arg = 0;
            for (size_t i = 1; i < n; i++)
                if (fabsf(W[i * n + src]) > fabsf(W[arg * n + src])) arg = i;
            float sg = W[arg * n + src] < 0 ? -1.0f : 1.0f;
            for (size_t i = 0; i < n; i++)
                V[i * k + c] = sg * W[i * n + src];
        }
    free(K), free(T), free(W), free(w);
    if (rc != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL,
                             "text basis: the eigen-decomposition failed (LAPACK info %d)",
                             (int)rc);
    return PVG_OK;
}
