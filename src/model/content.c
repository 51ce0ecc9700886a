/*
 * content.c - item-item similarity from public catalogue text: each item's
 * title cut into words as the search index cuts them (folded, stop words
 * dropped, Snowball stems), weighed by inverse document frequency, the
 * vectors normalised, and the squared cosine of every pair. DP models use
 * it as a prior (docs/models.md "A prior from the catalogue's text"): the
 * text is the operator's catalogue, not any shopper's data, so what is
 * derived from it costs no privacy budget. DP-EASE also smooths its noisy
 * Gram along the similarity (pvg_content_smooth_gram), post-processing.
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

pvg_status pvg_content_similarity(const char *const *titles, size_t n, float *S, size_t *n_linked,
                                  pvg_error *err)
{
    *n_linked = 0;
    size_t n_text = 0;
    if (n == 0) return PVG_OK;
    memset(S, 0, n * n * sizeof *S);
    if (!titles) return PVG_OK;
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
        !(tw = malloc((tn ? tn : 1) * sizeof *tw)) || !(idf = malloc((nt + 1) * sizeof *idf)))
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
        float *row = S + i * n;
        for (uint64_t q = tptr[i]; q < tptr[i + 1]; q++) {
            uint32_t t = tix[q];
            float wi = tw[q];
            if (wi == 0) continue;
            for (uint64_t p = pptr[t]; p < pptr[t + 1]; p++)
                row[posts[p].item] += wi * posts[p].w;
        }
        row[i] = 0;
        int linked = 0;
        for (size_t j = 0; j < n; j++) {
            row[j] = row[j] * row[j];
            linked |= row[j] > 0;
        }
        *n_linked += linked;
    }
    goto done;
nomem:
    st = pvg_error_set(err, PVG_ERR_NOMEM, "content similarity: out of memory (%zu items)", n);
done:
    pvg_search_stemmer_free(c.stemmer);
    pvg_smap_free(&terms);
    free(c.buf), free(tptr), free(tix), free(df), free(pptr), free(posts), free(norm), free(tw),
        free(idf);
    return st;
}

/* A fixed pseudo-random stream for the simulated noise of
 * pvg_content_smooth_gram (splitmix64): it reads no data and needs no
 * secrecy, only to be the same in every run. */
static uint64_t smooth_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double smooth_normal(uint64_t *x)
{
    double u1 = ((double)(smooth_next(x) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = ((double)(smooth_next(x) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* out = K A K^T, K = I + alpha S~ (n x n): T = K A, out = T K^T */
static void smooth_apply(const float *K, const float *A, float *T, float *out, size_t n,
                         int threads)
{
    pvg_blas_threaded_begin(threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, K, (int)n,
                A, (int)n, 0.0f, T, (int)n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0f, T, (int)n, K,
                (int)n, 0.0f, out, (int)n);
    pvg_blas_threaded_end();
}

pvg_status pvg_content_smooth_gram(float *G, const float *S, size_t n, double alpha, double sigma,
                                   int threads, double *edge, pvg_error *err)
{
    *edge = 0;
    if (n == 0) return PVG_OK;
    if (!(alpha >= 0) || !(sigma >= 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "text smoothing: alpha %g and sigma %g must be >= 0", alpha, sigma);
    float *K = calloc(n * n, sizeof *K), *T = malloc(n * n * sizeof *T);
    float *E = malloc(n * n * sizeof *E), *w = malloc(n * sizeof *w);
    if (!K || !T || !E || !w) {
        free(K), free(T), free(E), free(w);
        return pvg_error_set(err, PVG_ERR_NOMEM, "text smoothing: out of memory (%zu items)", n);
    }
    for (size_t i = 0; i < n; i++) {
        double rs = 0;
        for (size_t j = 0; j < n; j++)
            if (j != i) rs += S[i * n + j];
        double f = alpha / (rs > 1 ? rs : 1);
        for (size_t j = 0; j < n; j++)
            if (j != i) K[i * n + j] = (float)(f * S[i * n + j]);
        K[i * n + i] = 1;
    }
    smooth_apply(K, G, T, E, n, threads);
    memcpy(G, E, n * n * sizeof *G);
    /* the smoothed noise's edge: a symmetric E with N(0, sigma^2) entries
     * (diagonal included, as the release's), smoothed the same way */
    uint64_t x = 0x70726976677569ULL; /* fixed */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++)
            E[i * n + j] = E[j * n + i] = (float)(sigma * smooth_normal(&x));
    smooth_apply(K, E, T, E, n, threads);
    pvg_blas_threaded_begin(threads);
    lapack_int rc = LAPACKE_ssyev(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)n, E, (lapack_int)n, w);
    pvg_blas_threaded_end();
    double lo = w[0], hi = w[n - 1];
    free(K), free(T), free(E), free(w);
    if (rc != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL,
                             "text smoothing: the eigenvalues failed (LAPACK info %d)", (int)rc);
    *edge = fabs(lo) > hi ? fabs(lo) : hi;
    return PVG_OK;
}
