/*
 * serve_index.c - an inverted-file (IVF) index for serving factor models
 * over large catalogues: maximum inner product search over the item
 * factors, approximate in which items it looks at, exact in what it returns.
 *
 * Build: the item factors are augmented to equal norm (x' = [x, sqrt(M^2 -
 * |x|^2)] / M, M the largest item norm; the standard reduction of maximum
 * inner product to nearest neighbour on the sphere) and clustered by
 * k-means (Lloyd, on a sample of 64 points per list, then every item
 * assigned to its nearest centroid). The seeding is deterministic: a
 * splitmix64 sequence from the catalogue's shape picks the sample and the
 * first centroids, so a model always gets the same index (on one machine:
 * BLAS may round differently on another CPU) and there is no random source
 * or process-wide state. The items of each list are stored contiguously as
 * int8 factors (the exact scan's format, serve_batch.c), lists padded to
 * blocks of 16.
 *
 * Query: a shopper's factors u give each list the score u.c / |u| -
 * |c'|^2 / 2 (minus half the squared distance of u / |u| to the augmented
 * centroid, up to a constant); the lists scoring within the measured reach
 * of the shopper's best (calibrate; or the nprobe best when the caller
 * fixes a count) are scanned with the fused int8 scan (the shopper's best
 * list first; several shoppers at once when they probe the same list;
 * excluded items never kept as candidates), and the
 * candidates re-ranked with the float factors: every returned item has its
 * exact score, and an item the exact path would never return (excluded,
 * padding, NaN) is never returned here either.
 */
#include "model/model_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KM_ITERS 10      /* Lloyd iterations on the sample */
#define KM_PER_LIST 64   /* sample points per list */
#define ASSIGN_ROWS 1024 /* rows per sgemm block in the assignment */
#define MAX_GROUP 64     /* jobs per pass (one bit each in the list masks) */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

size_t pvg_ivf_default_nlist(size_t n)
{
    size_t l = (size_t)(2.0 * sqrt((double)n));
    if (l > n / 64) l = n / 64;
    return l ? l : 1;
}

size_t pvg_ivf_default_nprobe(const pvg_ivf *ix)
{
    return ix->nprobe ? ix->nprobe : 1;
}

void pvg_ivf_free(pvg_ivf *ix)
{
    if (!ix) return;
    free(ix->cent_t);
    free(ix->bias);
    free(ix->start);
    free(ix->count);
    free(ix->item);
    free(ix->pos);
    pvg_i8_items_free(&ix->q);
    memset(ix, 0, sizeof *ix);
}

size_t pvg_ivf_bytes(const pvg_ivf *ix)
{
    size_t b = ix->nlist * (ix->f + 1) * sizeof(float);
    b += (2 * ix->nlist + 3) * sizeof(uint64_t);
    b += ix->q.n * sizeof(uint32_t) + ix->n * sizeof(uint32_t);
    b += ix->q.n_pad * ix->q.f4 * 4 + ix->q.n_pad * (sizeof(float) + sizeof(int32_t));
    return b;
}

static int row_finite(const float *v, size_t f, double *norm2)
{
    double s = 0;
    for (size_t j = 0; j < f; j++) {
        if (!isfinite(v[j])) return 0;
        s += (double)v[j] * v[j];
    }
    *norm2 = s;
    return 1;
}

/* The augmented coordinate of a row of squared norm n2 (scaled by 1/M). */
static float aug_of(double n2, double invM2)
{
    double r = 1.0 - n2 * invM2;
    return r > 0 ? (float)sqrt(r) : 0.0f;
}

/* Nearest centroid of the b rows X (raw factors, augmented coordinates a):
 * argmin over l of |c'_l|^2 - 2 (X_r . C_l / M + a_r ca_l); the lowest l
 * wins a tie. G: b x nlist scratch. Rows with skip[r] are left alone. */
static void assign_rows(const float *X, const float *a, const unsigned char *skip, size_t b,
                        size_t f, float invM, const float *C, const float *ca, const float *cn,
                        size_t nlist, float *G, uint32_t *out)
{
    pvg_blas_shared_begin();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)nlist, (int)f, invM, X,
                (int)f, C, (int)f, 0.0f, G, (int)nlist);
    pvg_blas_shared_end();
    for (size_t r = 0; r < b; r++) {
        if (skip && skip[r]) continue;
        const float *g = G + r * nlist;
        float ar = a[r], best = INFINITY;
        uint32_t bl = 0;
        for (size_t l = 0; l < nlist; l++) {
            float d = cn[l] - 2.0f * (g[l] + ar * ca[l]);
            if (d < best) {
                best = d;
                bl = (uint32_t)l;
            }
        }
        out[r] = bl;
    }
}

static int calibrate(pvg_ivf *ix, const float *V, const float *Uq, size_t nq,
                     const uint64_t *ex_ptr, const uint32_t *ex_items);

int pvg_ivf_build(const float *V, size_t n, size_t f, size_t nlist, const float *Uq, size_t nq,
                  const uint64_t *ex_ptr, const uint32_t *ex_items, pvg_ivf *ix)
{
    memset(ix, 0, sizeof *ix);
    double t0 = pvg_now_seconds(), c0 = pvg_cpu_seconds();
    uint32_t *ok = malloc((n ? n : 1) * sizeof *ok), *assign = malloc((n ? n : 1) * sizeof *assign);
    float *aug = malloc((n ? n : 1) * sizeof *aug);
    unsigned char *bad = calloc(n ? n : 1, 1);
    float *Xs = NULL, *as = NULL, *C = NULL, *ca = NULL, *cn = NULL, *G = NULL;
    double *sum = NULL;
    uint64_t *cnt = NULL;
    uint32_t *lab = NULL;
    int rc = -1;
    if (!ok || !assign || !aug || !bad) goto done;
    size_t n_ok = 0;
    double max2 = 0;
    for (size_t i = 0; i < n; i++) {
        double n2;
        if (row_finite(V + i * f, f, &n2)) {
            ok[n_ok++] = (uint32_t)i;
            aug[i] = (float)n2; /* the squared norm, for now */
            if (n2 > max2) max2 = n2;
        } else {
            bad[i] = 1;
            aug[i] = 0;
        }
    }
    double invM2 = max2 > 0 ? 1.0 / max2 : 1.0;
    float invM = (float)sqrt(invM2);
    for (size_t i = 0; i < n; i++)
        aug[i] = bad[i] ? 0.0f : aug_of(aug[i], invM2);
    if (!nlist) nlist = pvg_ivf_default_nlist(n);
    if (nlist > n_ok) nlist = n_ok ? n_ok : 1;
    size_t d1 = f + 1;
    size_t S = nlist * KM_PER_LIST < n_ok ? nlist * KM_PER_LIST : n_ok;
    Xs = malloc((S ? S : 1) * f * sizeof *Xs);
    as = malloc((S ? S : 1) * sizeof *as);
    lab = malloc((S ? S : 1) * sizeof *lab);
    C = malloc(nlist * f * sizeof *C);
    ca = malloc(nlist * sizeof *ca);
    cn = malloc(nlist * sizeof *cn);
    G = malloc(ASSIGN_ROWS * nlist * sizeof *G);
    sum = malloc(nlist * d1 * sizeof *sum);
    cnt = malloc((nlist + 1) * sizeof *cnt);
    if (!Xs || !as || !lab || !C || !ca || !cn || !G || !sum || !cnt) goto done;
    /* the sample: a partial Fisher-Yates shuffle of the finite items, from a
     * sequence seeded by the catalogue's shape */
    uint64_t seed = 0x5EED1F00Dull ^ ((uint64_t)n << 20) ^ ((uint64_t)f << 52) ^ nlist;
    for (size_t s = 0; s < S; s++) {
        size_t r = s + (size_t)(splitmix64(&seed) % (uint64_t)(n_ok - s));
        uint32_t t = ok[s];
        ok[s] = ok[r];
        ok[r] = t;
        memcpy(Xs + s * f, V + (size_t)ok[s] * f, f * sizeof *Xs);
        as[s] = aug[ok[s]];
    }
    /* the first nlist sample points seed the centroids */
    for (size_t l = 0; l < nlist; l++) {
        if (l < S) {
            for (size_t j = 0; j < f; j++)
                C[l * f + j] = Xs[l * f + j] * invM;
            ca[l] = as[l];
        } else {
            memset(C + l * f, 0, f * sizeof *C);
            ca[l] = 1;
        }
    }
    for (int it = 0; it <= KM_ITERS; it++) {
        for (size_t l = 0; l < nlist; l++) {
            double s2 = (double)ca[l] * ca[l];
            for (size_t j = 0; j < f; j++)
                s2 += (double)C[l * f + j] * C[l * f + j];
            cn[l] = (float)s2;
        }
        if (it == KM_ITERS || !S) break;
        for (size_t r0 = 0; r0 < S; r0 += ASSIGN_ROWS) {
            size_t b = S - r0 < ASSIGN_ROWS ? S - r0 : ASSIGN_ROWS;
            assign_rows(Xs + r0 * f, as + r0, NULL, b, f, invM, C, ca, cn, nlist, G, lab + r0);
        }
        memset(sum, 0, nlist * d1 * sizeof *sum);
        memset(cnt, 0, nlist * sizeof *cnt);
        for (size_t s = 0; s < S; s++) {
            double *sl = sum + (size_t)lab[s] * d1;
            for (size_t j = 0; j < f; j++)
                sl[j] += (double)Xs[s * f + j] * invM;
            sl[f] += as[s];
            cnt[lab[s]]++;
        }
        for (size_t l = 0; l < nlist; l++) {
            if (!cnt[l]) continue;
            for (size_t j = 0; j < f; j++)
                C[l * f + j] = (float)(sum[l * d1 + j] / (double)cnt[l]);
            ca[l] = (float)(sum[l * d1 + f] / (double)cnt[l]);
        }
        /* an empty list takes half of the largest one: its centroid,
         * nudged apart in opposite directions */
        for (size_t l = 0; l < nlist; l++) {
            if (cnt[l]) continue;
            size_t big = 0;
            for (size_t m = 1; m < nlist; m++)
                if (cnt[m] > cnt[big]) big = m;
            if (cnt[big] < 2) break;
            for (size_t j = 0; j < f; j++) {
                float e = (j & 1) ? 1.0f / 1024 : -1.0f / 1024;
                C[l * f + j] = C[big * f + j] * (1 + e);
                C[big * f + j] *= 1 - e;
            }
            ca[l] = ca[big];
            cnt[l] = cnt[big] / 2;
            cnt[big] -= cnt[l];
        }
    }
    /* every item to its list (non-finite rows: the extra list nlist) */
    for (size_t r0 = 0; r0 < n; r0 += ASSIGN_ROWS) {
        size_t b = n - r0 < ASSIGN_ROWS ? n - r0 : ASSIGN_ROWS;
        assign_rows(V + r0 * f, aug + r0, bad + r0, b, f, invM, C, ca, cn, nlist, G, assign + r0);
        for (size_t r = r0; r < r0 + b; r++)
            if (bad[r]) assign[r] = (uint32_t)nlist;
    }
    ix->n = n;
    ix->f = f;
    ix->nlist = nlist;
    ix->cent_t = malloc(nlist * f * sizeof *ix->cent_t);
    ix->bias = malloc(nlist * sizeof *ix->bias);
    ix->start = calloc(nlist + 2, sizeof *ix->start);
    ix->count = calloc(nlist + 1, sizeof *ix->count);
    ix->pos = malloc((n ? n : 1) * sizeof *ix->pos);
    if (!ix->cent_t || !ix->bias || !ix->start || !ix->count || !ix->pos) goto done;
    for (size_t l = 0; l < nlist; l++) {
        for (size_t j = 0; j < f; j++)
            ix->cent_t[j * nlist + l] = C[l * f + j];
        ix->bias[l] = -0.5f * cn[l];
    }
    for (size_t i = 0; i < n; i++)
        ix->count[assign[i]]++;
    for (size_t l = 0; l <= nlist; l++)
        ix->start[l + 1] =
            ix->start[l] + (ix->count[l] + PVG_I8_BLOCK - 1) / PVG_I8_BLOCK * PVG_I8_BLOCK;
    size_t npos = ix->start[nlist + 1];
    if (npos >= UINT32_MAX) goto done; /* positions are uint32 */
    ix->item = malloc((npos ? npos : 1) * sizeof *ix->item);
    if (!ix->item) goto done;
    for (size_t p = 0; p < npos; p++)
        ix->item[p] = UINT32_MAX;
    memset(cnt, 0, (nlist + 1) * sizeof *cnt);
    for (size_t i = 0; i < n; i++) {
        uint32_t l = assign[i];
        uint64_t p = ix->start[l] + cnt[l]++;
        ix->item[p] = (uint32_t)i;
        ix->pos[i] = (uint32_t)p;
    }
    if (pvg_i8_items_build_rows(V, ix->item, npos, f, &ix->q)) goto done;
    if (calibrate(ix, V, Uq, nq, ex_ptr, ex_items)) goto done;
    ix->build_seconds = pvg_now_seconds() - t0;
    ix->build_cpu_seconds = pvg_cpu_seconds() - c0;
    rc = 0;
done:
    if (rc) pvg_ivf_free(ix);
    free(ok);
    free(assign);
    free(aug);
    free(bad);
    free(Xs);
    free(as);
    free(lab);
    free(C);
    free(ca);
    free(cn);
    free(G);
    free(sum);
    free(cnt);
    return rc;
}

/* ---- query ------------------------------------------------------------------ */

static int cpu_vec(void);

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The list scores of one shopper, lists [l0, l1): out[l] = bias_l + the
 * sum over factors j, in order, of (u_j * inv) * c_jl, each a product then
 * a sum (no fused multiply-add), so the vector and the portable loops give
 * the same floats. */
static void list_scores_portable(const pvg_ivf *ix, const float *u, float inv, size_t l0, size_t l1,
                                 float *out)
{
    size_t L = ix->nlist, f = ix->f;
    for (size_t l = l0; l < l1; l++)
        out[l] = ix->bias[l];
    for (size_t j = 0; j < f; j++) {
        float w = u[j] * inv;
        const float *c = ix->cent_t + j * L;
        for (size_t l = l0; l < l1; l++)
            out[l] += w * c[l];
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
/* The same, 128 lists at a time in registers (the centroids read once per
 * factor, the sums never stored until the last factor). */
__attribute__((target("avx512f"))) static size_t
list_scores_avx512(const pvg_ivf *ix, const float *u, float inv, float *out)
{
    size_t L = ix->nlist, f = ix->f, l = 0;
    for (; l + 128 <= L; l += 128) {
        __m512 a0 = _mm512_loadu_ps(ix->bias + l), a1 = _mm512_loadu_ps(ix->bias + l + 16),
               a2 = _mm512_loadu_ps(ix->bias + l + 32), a3 = _mm512_loadu_ps(ix->bias + l + 48),
               a4 = _mm512_loadu_ps(ix->bias + l + 64), a5 = _mm512_loadu_ps(ix->bias + l + 80),
               a6 = _mm512_loadu_ps(ix->bias + l + 96), a7 = _mm512_loadu_ps(ix->bias + l + 112);
        for (size_t j = 0; j < f; j++) {
            __m512 w = _mm512_set1_ps(u[j] * inv);
            const float *c = ix->cent_t + j * L + l;
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(w, _mm512_loadu_ps(c)));
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(w, _mm512_loadu_ps(c + 16)));
            a2 = _mm512_add_ps(a2, _mm512_mul_ps(w, _mm512_loadu_ps(c + 32)));
            a3 = _mm512_add_ps(a3, _mm512_mul_ps(w, _mm512_loadu_ps(c + 48)));
            a4 = _mm512_add_ps(a4, _mm512_mul_ps(w, _mm512_loadu_ps(c + 64)));
            a5 = _mm512_add_ps(a5, _mm512_mul_ps(w, _mm512_loadu_ps(c + 80)));
            a6 = _mm512_add_ps(a6, _mm512_mul_ps(w, _mm512_loadu_ps(c + 96)));
            a7 = _mm512_add_ps(a7, _mm512_mul_ps(w, _mm512_loadu_ps(c + 112)));
        }
        _mm512_storeu_ps(out + l, a0);
        _mm512_storeu_ps(out + l + 16, a1);
        _mm512_storeu_ps(out + l + 32, a2);
        _mm512_storeu_ps(out + l + 48, a3);
        _mm512_storeu_ps(out + l + 64, a4);
        _mm512_storeu_ps(out + l + 80, a5);
        _mm512_storeu_ps(out + l + 96, a6);
        _mm512_storeu_ps(out + l + 112, a7);
    }
    for (; l + 16 <= L; l += 16) {
        __m512 a = _mm512_loadu_ps(ix->bias + l);
        for (size_t j = 0; j < f; j++)
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(u[j] * inv),
                                               _mm512_loadu_ps(ix->cent_t + j * L + l)));
        _mm512_storeu_ps(out + l, a);
    }
    return l;
}
#endif

/* The list scores of one shopper: u.c_l / |u| + bias_l, summed in factor
 * order (the same floats whatever the batch, with or without AVX-512; vec:
 * 1 for the AVX-512 loop, 0 for the portable one). A shopper whose factors
 * have no direction (zero, or not finite) gets the bias alone. Returns 1,
 * or 0 for a shopper without direction. */
static int list_scores(const pvg_ivf *ix, const float *u, float *out, int vec)
{
    size_t L = ix->nlist, f = ix->f, l = 0;
    double n2 = 0;
    for (size_t j = 0; j < f; j++)
        n2 += (double)u[j] * u[j];
    if (!(n2 > 0) || !isfinite(n2)) {
        memcpy(out, ix->bias, L * sizeof *out);
        return 0;
    }
    float inv = (float)(1.0 / sqrt(n2));
#if defined(__x86_64__) || defined(__i386__)
    if (vec) l = list_scores_avx512(ix, u, inv, out);
#endif
    list_scores_portable(ix, u, inv, l, L, out);
    (void)vec;
    return 1;
}

/* How far list score s lies below a shopper's best list score s0, in units
 * of span (s0 less the mean of the shopper's list scores): the statistic
 * the default probing bounds (ix->reach). 0 for the best list; a list
 * below the best when span is not positive (every list scores the same or
 * worse): +inf. */
static double reach_of(double s0, double span, double s)
{
    if (!(s < s0)) return 0;
    return span > 0 ? (s0 - s) / span : INFINITY;
}

/* The best list score of ls[0..L) in *s0 and s0 less their mean in *span
 * (the mean of 16 running sums, list l into sum l % 16: the same floats
 * whether the compiler vectorizes the loop or not); 0 when a list score is
 * not finite (list_scores gives finite scores for every shopper). */
static int list_span(const float *ls, size_t L, double *s0, double *span)
{
    float best = -INFINITY, sum[16] = {0};
    size_t l = 0;
    for (; l + 16 <= L; l += 16)
        for (size_t r = 0; r < 16; r++) {
            sum[r] += ls[l + r];
            best = ls[l + r] > best ? ls[l + r] : best;
        }
    for (size_t r = 0; l + r < L; r++) {
        sum[r] += ls[l + r];
        best = ls[l + r] > best ? ls[l + r] : best;
    }
    double tot = 0;
    for (size_t r = 0; r < 16; r++)
        tot += sum[r];
    if (!L || !isfinite(tot) || !isfinite(best)) return 0;
    *s0 = best;
    *span = best - tot / (double)L;
    return 1;
}

/* The most lists one shopper probes by reach: 4 times the measured mean,
 * at most every list. */
static size_t reach_cap(const pvg_ivf *ix)
{
    size_t c = ix->nprobe > ix->nlist / 4 ? ix->nlist : 4 * ix->nprobe;
    return c ? c : 1;
}

/* The least list score the default probing takes for a shopper whose best
 * list scores s0 and whose scores spread span (list_span): the lists whose
 * reach_of is at most ix->reach, up to rounding (the floor is a float). */
static float reach_floor(const pvg_ivf *ix, double s0, double span)
{
    if (ix->reach == INFINITY) return -INFINITY;
    return (float)(span > 0 ? s0 - ix->reach * span : s0);
}

static size_t list_of(const pvg_ivf *ix, uint64_t p);

/* exl[l] = how many of the excluded items ex[0..n_ex) (ascending; items
 * past the catalogue ignored) list l holds, for l < nlist (set 1), or back
 * to 0 (set 0). */
static void excluded_per_list(const pvg_ivf *ix, const uint32_t *ex, size_t n_ex, uint32_t *exl,
                              int set)
{
    for (size_t e = 0; e < n_ex; e++) {
        if (ex[e] >= ix->n || (e && ex[e] == ex[e - 1])) continue;
        size_t l = list_of(ix, ix->pos[ex[e]]);
        if (l < ix->nlist) exl[l] = set ? exl[l] + 1 : 0;
    }
}

/* The lists a shopper with list scores ls probes, into pidx (psc: scratch
 * of nlist): nprobe > 0, the nprobe best (pvg_topk's order); nprobe 0,
 * every list scoring at least reach_floor (in list order), the reach_cap
 * best if more, and when those lists hold fewer than `need` items that are
 * not among the shopper's excluded ones ex[0..n_ex) (ascending), the best
 * lists in score order until they do (or every list): a shopper whose
 * reach holds few items, or whose history covers its best lists, is never
 * answered short (exl: zeroed scratch of nlist counts; NULL when n_ex is
 * 0). Returns how many;
 * pidx[0] is a best list. */
static size_t probe_lists(const pvg_ivf *ix, const float *ls, size_t nprobe, size_t need,
                          const uint32_t *ex, size_t n_ex, uint32_t *exl, int64_t *pidx, float *psc)
{
    size_t L = ix->nlist, got = 0, cap = reach_cap(ix), best = 0;
    if (nprobe) return pvg_topk(ls, L, nprobe, pidx, psc);
    double s0, span;
    if (!list_span(ls, L, &s0, &span)) {
        got = pvg_topk(ls, L, cap, pidx, psc);
    } else {
        float t = reach_floor(ix, s0, span);
        for (size_t l = 0; l < L; l++) {
            if (ls[l] >= t) {
                if (!got || ls[l] > ls[pidx[best]]) best = got;
                pidx[got++] = (int64_t)l;
            }
        }
        if (got > cap) {
            got = pvg_topk(ls, L, cap, pidx, psc);
        } else {
            int64_t b = pidx[best];
            pidx[best] = pidx[0];
            pidx[0] = b;
        }
    }
    size_t have = 0;
    for (size_t q = 0; q < got; q++)
        have += ix->count[pidx[q]];
    if (have >= need + n_ex) return got; /* enough whatever the history */
    excluded_per_list(ix, ex, n_ex, exl, 1);
    for (size_t q = 0; n_ex && q < got; q++)
        have -= exl[pidx[q]];
    if (have < need) {
        /* too few: the best lists in score order (those taken so far are
         * the first of them) until they hold enough, or every list */
        size_t all = pvg_topk(ls, L, L, pidx, psc);
        for (have = 0, got = 0; got < all && have < need; got++)
            have += ix->count[pidx[got]] - (n_ex ? exl[pidx[got]] : 0);
    }
    excluded_per_list(ix, ex, n_ex, exl, 0);
    return got;
}

static int score_group(const pvg_ivf *ix, const float *V, size_t nprobe, pvg_serve_job *const *jobs,
                       size_t nj)
{
    const pvg_i8_items *Q = &ix->q;
    size_t L = ix->nlist, us4 = Q->f4 * 4, cap = 0;
    for (size_t a = 0; a < nj; a++) {
        size_t c = pvg_serve_job_cap(jobs[a]->k, Q->n);
        if (c > cap) cap = c;
    }
    uint8_t *uq = malloc(nj * us4), *uqg = malloc(nj * us4);
    float *us = malloc(nj * sizeof *us), *usg = malloc(nj * sizeof *usg);
    pvg_topc **hg = malloc(nj * sizeof *hg);
    float *ls = malloc(L * sizeof *ls), *psc = malloc(L * sizeof *psc);
    int64_t *pidx = malloc(L * sizeof *pidx);
    uint32_t *exl = calloc(L, sizeof *exl);
    uint64_t *mask = calloc(2 * (L + 1), sizeof *mask); /* [phase][list] */
    size_t room = pvg_topc_room(cap);
    int64_t *hidx = malloc(nj * room * sizeof *hidx);
    float *hsc = malloc(nj * room * sizeof *hsc);
    pvg_topc *heaps = malloc(nj * sizeof *heaps);
    uint32_t **ex = calloc(nj, sizeof *ex);
    void *cbuf = malloc(pvg_serve_rerank_scratch(cap));
    int rc = -1, vec = cpu_vec();
    if (!uq || !uqg || !us || !usg || !hg || !ls || !psc || !pidx || !exl || !mask || !hidx ||
        !hsc || !heaps || !ex || !cbuf)
        goto done;
    for (size_t a = 0; a < nj; a++) {
        pvg_serve_job *j = jobs[a];
        us[a] = pvg_i8_user(j->u, ix->f, Q->f4, uq + a * us4);
        pvg_topc_init(&heaps[a], pvg_serve_job_cap(j->k, Q->n), hidx + a * room, hsc + a * room);
        if (j->n_excl) {
            /* excluded items, ascending: looked up only for a score that
             * would enter (the scan offers item ids, through ix->item) */
            if (!(ex[a] = malloc(j->n_excl * sizeof *ex[a]))) goto done;
            memcpy(ex[a], j->excl, j->n_excl * sizeof *ex[a]);
            qsort(ex[a], j->n_excl, sizeof *ex[a], u32_cmp);
            pvg_topc_exclude(&heaps[a], ex[a], j->n_excl);
        }
        /* a shopper without direction: every list (its list scores rank
         * the lists by their bias alone; the exact scan's answer) */
        size_t np = list_scores(ix, j->u, ls, vec) || nprobe ? nprobe : L;
        size_t got = probe_lists(ix, ls, np, pvg_serve_job_cap(j->k, Q->n), ex[a],
                                 ex[a] ? j->n_excl : 0, exl, pidx, psc);
        /* a best list first, alone: the heap's threshold then starts near
         * the final one and the other lists offer it few items */
        for (size_t q = 0; q < got; q++)
            mask[(q ? L + 1 : 0) + (size_t)pidx[q]] |= 1ull << a;
        mask[2 * L + 1] |= 1ull << a; /* the non-finite items: always (scored 0 as in the scan) */
    }
    for (size_t ml = 0; ml < 2 * (L + 1); ml++) {
        size_t l = ml % (L + 1);
        if (!mask[ml] || !ix->count[l]) continue;
        size_t g = 0;
        for (uint64_t m = mask[ml]; m; m &= m - 1) {
            size_t a = (size_t)__builtin_ctzll(m);
            memcpy(uqg + g * us4, uq + a * us4, us4);
            usg[g] = us[a];
            hg[g] = &heaps[a];
            g++;
        }
        /* the fused scan: scores compared with each shopper's threshold in
         * registers, offered as item ids (padding past count never) */
        pvg_i8_scan(Q, uqg, usg, g, (size_t)ix->start[l], (size_t)(ix->start[l] + ix->count[l]),
                    ix->item, hg);
    }
    for (size_t a = 0; a < nj; a++) {
        pvg_topc_finish(&heaps[a]);
        pvg_serve_rerank(V, ix->f, &heaps[a], jobs[a], cbuf);
    }
    rc = 0;
done:
    for (size_t a = 0; ex && a < nj; a++)
        free(ex[a]);
    free(ex);
    free(uq);
    free(uqg);
    free(us);
    free(usg);
    free(hg);
    free(ls);
    free(psc);
    free(pidx);
    free(exl);
    free(mask);
    free(hidx);
    free(hsc);
    free(heaps);
    free(cbuf);
    return rc;
}

/* ---- the default probing, measured ------------------------------------------ */

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The list holding position p. */
static size_t list_of(const pvg_ivf *ix, uint64_t p)
{
    size_t lo = 0, hi = ix->nlist + 1; /* start[lo] <= p < start[hi] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ix->start[mid] <= p)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Sets ix->reach to the least reach (reach_of) that holds
 * PVG_IVF_CALIB_RECALL of the true top-10 items of the calibration
 * queries (up to PVG_IVF_CALIB_QUERIES rows of Uq[nq x f], evenly spaced,
 * each with its excluded items when ex_ptr; Uq NULL: items of V), and
 * ix->nprobe to the mean number of lists that reach probes on them
 * (rounded up): for each query, the exact top 10 (every list probed: the
 * exact scan's answer) and the reach of each of their lists; the reach is
 * the quantile of those. A shopper's lists are those scoring near its best
 * relative to how its list scores spread, so a shopper with one clear taste
 * probes few lists and one with diffuse tastes many. */
static int calibrate(pvg_ivf *ix, const float *V, const float *Uq, size_t nq,
                     const uint64_t *ex_ptr, const uint32_t *ex_items)
{
    size_t L = ix->nlist, f = ix->f, step = 1;
    if (!Uq) {
        Uq = V;
        nq = ix->n;
        ex_ptr = NULL;
    }
    if (nq > PVG_IVF_CALIB_QUERIES) {
        step = nq / PVG_IVF_CALIB_QUERIES;
        nq = PVG_IVF_CALIB_QUERIES;
    }
    ix->nprobe = L;
    ix->reach = INFINITY;
    if (!nq || L <= 1) return 0;
    pvg_serve_job *jobs = calloc(nq, sizeof *jobs);
    pvg_serve_job **jp = malloc(nq * sizeof *jp);
    int64_t *idx = malloc(nq * 10 * sizeof *idx);
    float *sc = malloc(nq * 10 * sizeof *sc), *ls = malloc(nq * L * sizeof *ls);
    double *need = malloc(nq * 10 * sizeof *need), *s0 = malloc(nq * sizeof *s0),
           *span = malloc(nq * sizeof *span);
    int rc = -1;
    if (!jobs || !jp || !idx || !sc || !ls || !need || !s0 || !span) goto done;
    for (size_t q = 0; q < nq; q++) {
        jobs[q].u = Uq + q * step * f;
        if (ex_ptr) {
            jobs[q].excl = ex_items + ex_ptr[q * step];
            jobs[q].n_excl = (size_t)(ex_ptr[q * step + 1] - ex_ptr[q * step]);
        }
        jobs[q].k = 10;
        jobs[q].idx = idx + q * 10;
        jobs[q].sc = sc + q * 10;
        jp[q] = &jobs[q];
    }
    if (pvg_ivf_score(ix, V, L, (const pvg_serve_job *const *)jp, nq)) goto done;
    int vec = cpu_vec();
    size_t nn = 0;
    for (size_t q = 0; q < nq; q++) {
        float *lq = ls + q * L;
        s0[q] = -INFINITY;
        span[q] = 0;
        if (!list_scores(ix, jobs[q].u, lq, vec)) {
            s0[q] = NAN; /* no direction: served by every list, exactly */
            continue;
        }
        if (!list_span(lq, L, &s0[q], &span[q])) continue;
        for (size_t t = 0; t < jobs[q].n_out; t++) {
            size_t l = list_of(ix, ix->pos[idx[q * 10 + t]]);
            /* the non-finite list is always probed; a list whose score is
             * not finite never is (no reach holds it) */
            if (l < L && isfinite(lq[l])) need[nn++] = reach_of(s0[q], span[q], lq[l]);
        }
    }
    if (nn) {
        qsort(need, nn, sizeof *need, dbl_cmp);
        size_t at = (size_t)ceil(PVG_IVF_CALIB_RECALL * (double)nn);
        at = at ? at - 1 : 0;
        ix->reach = need[at < nn ? at : nn - 1];
        size_t probed = 0;
        for (size_t q = 0; q < nq; q++) {
            const float *lq = ls + q * L;
            if (isnan(s0[q])) probed += L;
            if (!isfinite(s0[q])) continue;
            float t = reach_floor(ix, s0[q], span[q]);
            for (size_t l = 0; l < L; l++)
                probed += lq[l] >= t;
        }
        size_t np = (probed + nq - 1) / nq;
        ix->nprobe = np < 1 ? 1 : np < L ? np : L;
    }
    rc = 0;
done:
    free(jobs);
    free(jp);
    free(idx);
    free(sc);
    free(ls);
    free(need);
    free(s0);
    free(span);
    return rc;
}

int pvg_ivf_score(const pvg_ivf *ix, const float *V, size_t nprobe,
                  const pvg_serve_job *const *jobs_in, size_t nj)
{
    pvg_serve_job *const *jobs = (pvg_serve_job *const *)jobs_in;
    if (nprobe > ix->nlist) nprobe = ix->nlist; /* 0: by reach */
    for (size_t a0 = 0; a0 < nj; a0 += MAX_GROUP) {
        size_t g = nj - a0 < MAX_GROUP ? nj - a0 : MAX_GROUP;
        if (score_group(ix, V, nprobe, jobs + a0, g)) return -1;
    }
    return 0;
}

static int cpu_vec(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

void pvg_ivf_list_scores(const pvg_ivf *ix, const float *u, float *out, int vec)
{
    list_scores(ix, u, out, vec && cpu_vec());
}

size_t pvg_ivf_probes(const pvg_ivf *ix, const float *u, size_t nprobe, size_t *items)
{
    size_t L = ix->nlist, got = 0;
    if (items) *items = 0;
    if (nprobe > L) nprobe = L;
    float *ls = malloc(L * sizeof *ls), *psc = malloc(L * sizeof *psc);
    int64_t *pidx = malloc(L * sizeof *pidx);
    if (ls && psc && pidx) {
        if (!list_scores(ix, u, ls, cpu_vec()) && !nprobe) nprobe = L;
        got = probe_lists(ix, ls, nprobe, pvg_serve_job_cap(10, ix->q.n), NULL, 0, NULL, pidx, psc);
        for (size_t q = 0; items && q < got; q++)
            *items += ix->count[pidx[q]];
    }
    free(ls);
    free(psc);
    free(pidx);
    return got;
}
