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
 * centroid, up to a constant), the nprobe best lists are scanned with the
 * fused int8 scan (several shoppers at once when they probe the same list;
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

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* out[l] += w * c[l] for l < L: a product then a sum (no fused
 * multiply-add), so the vector and the portable loops give the same
 * floats. */
static void axpy_portable(float *out, const float *c, float w, size_t L)
{
    for (size_t l = 0; l < L; l++)
        out[l] += w * c[l];
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static void axpy_avx512(float *out, const float *c, float w,
                                                           size_t L)
{
    __m512 wv = _mm512_set1_ps(w);
    size_t l = 0;
    for (; l + 16 <= L; l += 16)
        _mm512_storeu_ps(out + l, _mm512_add_ps(_mm512_loadu_ps(out + l),
                                                _mm512_mul_ps(wv, _mm512_loadu_ps(c + l))));
    axpy_portable(out + l, c + l, w, L - l);
}
#endif

/* The list scores of one shopper: u.c_l / |u| + bias_l, summed in factor
 * order (the same floats whatever the batch, with or without AVX-512). */
static void list_scores(const pvg_ivf *ix, const float *u, float *out, int vec)
{
    size_t L = ix->nlist, f = ix->f;
    double n2 = 0;
    for (size_t j = 0; j < f; j++)
        n2 += (double)u[j] * u[j];
    memcpy(out, ix->bias, L * sizeof *out);
    if (!(n2 > 0) || !isfinite(n2)) return; /* no direction: the bias alone */
    float inv = (float)(1.0 / sqrt(n2));
    for (size_t j = 0; j < f; j++) {
        float w = u[j] * inv;
        const float *c = ix->cent_t + j * L;
#if defined(__x86_64__) || defined(__i386__)
        if (vec) {
            axpy_avx512(out, c, w, L);
            continue;
        }
#endif
        axpy_portable(out, c, w, L);
    }
    (void)vec;
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
    float *ls = malloc(L * sizeof *ls), *psc = malloc(nprobe * sizeof *psc);
    int64_t *pidx = malloc(nprobe * sizeof *pidx);
    uint64_t *mask = calloc(L + 1, sizeof *mask);
    size_t room = pvg_topc_room(cap);
    int64_t *hidx = malloc(nj * room * sizeof *hidx);
    float *hsc = malloc(nj * room * sizeof *hsc);
    pvg_topc *heaps = malloc(nj * sizeof *heaps);
    uint32_t **ex = calloc(nj, sizeof *ex);
    void *cbuf = malloc(pvg_serve_rerank_scratch(cap));
    int rc = -1, vec = 0;
#if defined(__x86_64__) || defined(__i386__)
    vec = __builtin_cpu_supports("avx512f");
#endif
    if (!uq || !uqg || !us || !usg || !hg || !ls || !psc || !pidx || !mask || !hidx || !hsc ||
        !heaps || !ex || !cbuf)
        goto done;
    for (size_t a = 0; a < nj; a++) {
        pvg_serve_job *j = jobs[a];
        us[a] = pvg_i8_user(j->u, ix->f, Q->f4, uq + a * us4);
        pvg_topc_init(&heaps[a], pvg_serve_job_cap(j->k, Q->n), hidx + a * room, hsc + a * room);
        list_scores(ix, j->u, ls, vec);
        size_t got = pvg_topk(ls, L, nprobe, pidx, psc);
        for (size_t q = 0; q < got; q++)
            mask[pidx[q]] |= 1ull << a;
        mask[L] |= 1ull << a; /* the non-finite items: always (scored 0 as in the scan) */
        if (j->n_excl) {
            /* excluded items, ascending: looked up only for a score that
             * would enter (the scan offers item ids, through ix->item) */
            if (!(ex[a] = malloc(j->n_excl * sizeof *ex[a]))) goto done;
            memcpy(ex[a], j->excl, j->n_excl * sizeof *ex[a]);
            qsort(ex[a], j->n_excl, sizeof *ex[a], u32_cmp);
            pvg_topc_exclude(&heaps[a], ex[a], j->n_excl);
        }
    }
    for (size_t l = 0; l <= L; l++) {
        if (!mask[l] || !ix->count[l]) continue;
        size_t g = 0;
        for (uint64_t m = mask[l]; m; m &= m - 1) {
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
    free(mask);
    free(hidx);
    free(hsc);
    free(heaps);
    free(cbuf);
    return rc;
}

/* ---- the default nprobe, measured ------------------------------------------ */

static int i64_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
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

/* Sets ix->nprobe to the fewest lists that hold PVG_IVF_CALIB_RECALL of the
 * true top-10 items of the calibration queries (up to PVG_IVF_CALIB_QUERIES
 * rows of Uq[nq x f], evenly spaced, each with its excluded items when
 * ex_ptr; Uq NULL: items of V): for each query, the
 * exact top 10 (every list probed: the exact scan's answer) and the rank of
 * each of their lists in the query's list order; nprobe is the quantile of
 * those ranks. */
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
    if (!nq || L <= 1) return 0;
    pvg_serve_job *jobs = calloc(nq, sizeof *jobs);
    pvg_serve_job **jp = malloc(nq * sizeof *jp);
    int64_t *idx = malloc(nq * 10 * sizeof *idx), *order = malloc(L * sizeof *order);
    float *sc = malloc(nq * 10 * sizeof *sc), *ls = malloc(L * sizeof *ls),
          *osc = malloc(L * sizeof *osc);
    int64_t *rank = malloc(L * sizeof *rank), *need = malloc(nq * 10 * sizeof *need);
    int rc = -1;
    if (!jobs || !jp || !idx || !order || !sc || !ls || !osc || !rank || !need) goto done;
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
    int vec = 0;
#if defined(__x86_64__) || defined(__i386__)
    vec = __builtin_cpu_supports("avx512f");
#endif
    size_t nn = 0;
    for (size_t q = 0; q < nq; q++) {
        list_scores(ix, jobs[q].u, ls, vec);
        size_t got = pvg_topk(ls, L, L, order, osc);
        for (size_t r = 0; r < L; r++)
            rank[r] = (int64_t)L; /* -inf or NaN list scores: last */
        for (size_t r = 0; r < got; r++)
            rank[order[r]] = (int64_t)r;
        for (size_t t = 0; t < jobs[q].n_out; t++) {
            size_t l = list_of(ix, ix->pos[idx[q * 10 + t]]);
            if (l < L) need[nn++] = rank[l]; /* the non-finite list is always probed */
        }
    }
    if (nn) {
        qsort(need, nn, sizeof *need, i64_cmp);
        size_t at = (size_t)ceil(PVG_IVF_CALIB_RECALL * (double)nn);
        at = at ? at - 1 : 0;
        size_t np = (size_t)need[at < nn ? at : nn - 1] + 1;
        ix->nprobe = np < L ? np : L;
    }
    rc = 0;
done:
    free(jobs);
    free(jp);
    free(idx);
    free(order);
    free(sc);
    free(ls);
    free(osc);
    free(rank);
    free(need);
    return rc;
}

int pvg_ivf_score(const pvg_ivf *ix, const float *V, size_t nprobe,
                  const pvg_serve_job *const *jobs_in, size_t nj)
{
    pvg_serve_job *const *jobs = (pvg_serve_job *const *)jobs_in;
    if (!nprobe) nprobe = pvg_ivf_default_nprobe(ix);
    if (nprobe > ix->nlist) nprobe = ix->nlist;
    for (size_t a0 = 0; a0 < nj; a0 += MAX_GROUP) {
        size_t g = nj - a0 < MAX_GROUP ? nj - a0 : MAX_GROUP;
        if (score_group(ix, V, nprobe, jobs + a0, g)) return -1;
    }
    return 0;
}
