/*
 * serve_batch.c - fast serving of factor models (iALS, BPR): item factors
 * in int8 (per-item scale), scored for several shoppers at once against the
 * same block of 16 items (AVX-512 VNNI when the CPU has it) and compared
 * with each shopper's top-C threshold in registers (only a block holding a
 * candidate reaches the heap; excluded items are looked up then), and an
 * exact float re-rank of the candidates, so the k items returned carry
 * exact scores. The items are stored in descending order of a bound on
 * their scores (scale * |q|, Cauchy-Schwarz): a shopper's scan stops once
 * its threshold is above the bound of every item left, which drops no
 * candidate.
 *
 * Concurrent single requests are combined into micro-batches (flat
 * combining): a request that finds a scoring slot free scores at once with
 * whatever else is queued (a lone request never waits); requests arriving
 * while every slot is busy queue, and the next free slot takes them all as
 * one batch. Every shopper's answer goes back to that shopper's request
 * only; nothing here decides who may be scored (the access gate has done
 * that, and written its audit entry, before the model is asked).
 */
#include "model/model_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PVG_X86 1
#endif

/* ---- int8 item factors ---------------------------------------------------- */

void pvg_i8_items_free(pvg_i8_items *Q)
{
    if (!Q) return;
    free(Q->q);
    free(Q->scale);
    free(Q->corr);
    free(Q->bound);
    free(Q->item);
    memset(Q, 0, sizeof *Q);
}

/* Item row v[f] in int8: r[f] and the scale (0 for a zero or non-finite
 * row, r all 0). */
static float quant_row(const float *v, size_t f, int8_t *r)
{
    float mx = 0;
    int finite = 1;
    memset(r, 0, f);
    for (size_t j = 0; j < f; j++) {
        finite &= isfinite(v[j]) != 0;
        if (fabsf(v[j]) > mx) mx = fabsf(v[j]);
    }
    /* zero or broken (NaN, inf) row: int8 scores 0; the exact re-rank
     * skips a NaN score */
    if (!(mx > 0) || !finite) return 0;
    float s = mx / 127.0f;
    for (size_t j = 0; j < f; j++) {
        long x = lrintf(v[j] / s);
        if (x > 127) x = 127;
        if (x < -127) x = -127;
        r[j] = (int8_t)x;
    }
    return s;
}

typedef struct {
    float b;
    uint32_t i;
} bound_ord;

static int ord_cmp(const void *a, const void *b)
{
    const bound_ord *x = a, *y = b;
    if (x->b != y->b) return x->b > y->b ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* scale * |r|, rounded up: no int8 score of the item exceeds this times
 * the shopper's bound (Cauchy-Schwarz on the integer vectors) */
static float row_bound(const int8_t *r, size_t f, float s)
{
    double n2 = 0;
    for (size_t j = 0; j < f; j++)
        n2 += (double)r[j] * r[j];
    return (float)((double)s * sqrt(n2) * (1 + 1e-6));
}

int pvg_i8_items_build(const float *V, size_t n, size_t f, pvg_i8_items *Q)
{
    memset(Q, 0, sizeof *Q);
    if (n >= UINT32_MAX) return -1;
    /* positions in descending order of the items' bounds (ties: lower
     * item first), so a scan can stop for a shopper once the bound of the
     * remaining items is below its threshold */
    bound_ord *o = malloc((n ? n : 1) * sizeof *o);
    int8_t *r = malloc(f ? f : 1);
    uint32_t *rows = malloc((n ? n : 1) * sizeof *rows);
    if (!o || !r || !rows) {
        free(o);
        free(r);
        free(rows);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        float s = quant_row(V + i * f, f, r);
        o[i].b = row_bound(r, f, s);
        o[i].i = (uint32_t)i;
    }
    qsort(o, n, sizeof *o, ord_cmp);
    for (size_t i = 0; i < n; i++)
        rows[i] = o[i].i;
    free(o);
    free(r);
    int rc = pvg_i8_items_build_rows(V, rows, n, f, Q);
    if (rc) {
        free(rows);
        return rc;
    }
    Q->item = rows;
    Q->sorted = 1;
    return 0;
}

int pvg_i8_items_build_rows(const float *V, const uint32_t *rows, size_t n, size_t f,
                            pvg_i8_items *Q)
{
    memset(Q, 0, sizeof *Q);
    Q->n = n;
    Q->f = f;
    Q->f4 = (f + 3) / 4;
    Q->n_pad = (n + PVG_I8_BLOCK - 1) / PVG_I8_BLOCK * PVG_I8_BLOCK;
    if (!Q->n_pad) Q->n_pad = PVG_I8_BLOCK;
    size_t bytes = Q->n_pad * Q->f4 * 4;
    Q->q = aligned_alloc(64, bytes);
    Q->scale = aligned_alloc(64, Q->n_pad * sizeof *Q->scale);
    Q->corr = aligned_alloc(64, Q->n_pad * sizeof *Q->corr);
    Q->bound = aligned_alloc(64, Q->n_pad * sizeof *Q->bound);
    int8_t *r = malloc(f ? f : 1);
    if (!Q->q || !Q->scale || !Q->corr || !Q->bound || !r) {
        free(r);
        pvg_i8_items_free(Q);
        return -1;
    }
    memset(Q->q, 0, bytes);
    for (size_t i = 0; i < Q->n_pad; i++) {
        Q->scale[i] = 0;
        Q->corr[i] = 0;
        Q->bound[i] = 0;
        if (i >= n || (rows && rows[i] == UINT32_MAX)) continue;
        float s = quant_row(V + (rows ? (size_t)rows[i] : i) * f, f, r);
        if (!(s > 0)) continue;
        int32_t sum = 0;
        int8_t *blk = Q->q + (i / PVG_I8_BLOCK) * Q->f4 * PVG_I8_BLOCK * 4;
        for (size_t j = 0; j < f; j++) {
            blk[(j / 4) * PVG_I8_BLOCK * 4 + (i % PVG_I8_BLOCK) * 4 + j % 4] = r[j];
            sum += (int32_t)r[j];
        }
        Q->scale[i] = s;
        Q->corr[i] = 128 * sum;
        Q->bound[i] = row_bound(r, f, s);
    }
    free(r);
    return 0;
}

float pvg_i8_user(const float *u, size_t f, size_t f4, uint8_t *uq)
{
    float mx = 0;
    for (size_t j = 0; j < f; j++)
        if (fabsf(u[j]) > mx) mx = fabsf(u[j]);
    memset(uq, 128, f4 * 4);
    if (!(mx > 0) || !isfinite(mx)) return 0;
    float s = mx / 127.0f;
    for (size_t j = 0; j < f; j++) {
        long r = lrintf(u[j] / s);
        if (r > 127) r = 127;
        if (r < -127) r = -127;
        uq[j] = (uint8_t)(r + 128);
    }
    return s;
}

void pvg_i8_scores_naive(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu,
                         size_t j0, size_t t, float *out, size_t ld)
{
    for (size_t a = 0; a < nu; a++)
        for (size_t j = j0; j < j0 + t; j++) {
            const int8_t *blk = Q->q + (j / PVG_I8_BLOCK) * Q->f4 * PVG_I8_BLOCK * 4;
            int32_t dot = 0;
            for (size_t c = 0; c < Q->f4 * 4; c++)
                dot += (int32_t)uq[a * Q->f4 * 4 + c] *
                       blk[(c / 4) * PVG_I8_BLOCK * 4 + (j % PVG_I8_BLOCK) * 4 + c % 4];
            out[a * ld + (j - j0)] = (float)(dot - Q->corr[j]) * (Q->scale[j] * us[a]);
        }
}

void pvg_i8_scores_portable(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu,
                            size_t j0, size_t t, float *out, size_t ld)
{
    size_t f4 = Q->f4;
    for (size_t j = j0; j < j0 + t; j += PVG_I8_BLOCK) {
        const int8_t *blk = Q->q + (j / PVG_I8_BLOCK) * f4 * PVG_I8_BLOCK * 4;
        for (size_t a = 0; a < nu; a++) {
            int32_t acc[PVG_I8_BLOCK] = {0};
            const uint8_t *ua = uq + a * f4 * 4;
            for (size_t c = 0; c < f4; c++) {
                const int8_t *w = blk + c * PVG_I8_BLOCK * 4;
                for (size_t l = 0; l < PVG_I8_BLOCK; l++)
                    acc[l] += ua[4 * c] * w[4 * l] + ua[4 * c + 1] * w[4 * l + 1] +
                              ua[4 * c + 2] * w[4 * l + 2] + ua[4 * c + 3] * w[4 * l + 3];
            }
            for (size_t l = 0; l < PVG_I8_BLOCK; l++)
                out[a * ld + (j - j0) + l] =
                    (float)(acc[l] - Q->corr[j + l]) * (Q->scale[j + l] * us[a]);
        }
    }
}

#ifdef PVG_X86
static int cpu_has_vnni512(void)
{
    static int v = -1;
    if (v < 0)
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vnni");
    return v;
}

/* G shoppers (a compile-time constant after inlining) against one block of
 * 16 items: the block's factors are loaded once and kept for all G. */
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) static inline void
vnni_block(const int8_t *blk, size_t f4, const uint8_t *uq, size_t ustride, const float *us,
           const int32_t *corr, const float *scale, float *out, size_t ld, const int G)
{
    __m512i acc[8];
#pragma GCC unroll 8
    for (int a = 0; a < G; a++)
        acc[a] = _mm512_setzero_si512();
    for (size_t c = 0; c < f4; c++) {
        __m512i w = _mm512_load_si512((const void *)(blk + c * 64));
#pragma GCC unroll 8
        for (int a = 0; a < G; a++) {
            int32_t word;
            memcpy(&word, uq + a * ustride + 4 * c, 4);
            acc[a] = _mm512_dpbusd_epi32(acc[a], _mm512_set1_epi32(word), w);
        }
    }
    __m512i cr = _mm512_load_si512((const void *)corr);
    __m512 sc = _mm512_load_ps(scale);
#pragma GCC unroll 8
    for (int a = 0; a < G; a++) {
        __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[a], cr));
        _mm512_storeu_ps(out + a * ld, _mm512_mul_ps(v, _mm512_mul_ps(sc, _mm512_set1_ps(us[a]))));
    }
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
i8_scores_vnni(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu, size_t j0,
               size_t t, float *out, size_t ld)
{
    size_t f4 = Q->f4, us4 = f4 * 4;
    for (size_t j = j0; j < j0 + t; j += PVG_I8_BLOCK) {
        const int8_t *blk = Q->q + (j / PVG_I8_BLOCK) * f4 * PVG_I8_BLOCK * 4;
        for (size_t a0 = 0; a0 < nu; a0 += 8) {
            size_t g = nu - a0 < 8 ? nu - a0 : 8;
            const uint8_t *ua = uq + a0 * us4;
            float *o = out + a0 * ld + (j - j0);
            switch (g) {
#define G_CASE(n)                                                                                  \
    case n:                                                                                        \
        vnni_block(blk, f4, ua, us4, us + a0, Q->corr + j, Q->scale + j, o, ld, n);                \
        break;
                G_CASE(1)
                G_CASE(2)
                G_CASE(3)
                G_CASE(4)
                G_CASE(5)
                G_CASE(6)
                G_CASE(7)
                G_CASE(8)
#undef G_CASE
            }
        }
    }
}
#endif

void pvg_i8_scores(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu, size_t j0,
                   size_t t, float *out, size_t ld)
{
#ifdef PVG_X86
    if (cpu_has_vnni512()) {
        i8_scores_vnni(Q, uq, us, nu, j0, t, out, ld);
        return;
    }
#endif
    pvg_i8_scores_portable(Q, uq, us, nu, j0, t, out, ld);
}

/* ---- threshold-filtered top-C ---------------------------------------------- */

/* the bit of index i in pvg_topc's exf */
static inline unsigned ex_hash(int64_t i)
{
    return (uint32_t)((uint32_t)i * 0x9E3779B1u) >> 23;
}

static int is_excluded(const pvg_topc *h, int64_t i)
{
    unsigned b = ex_hash(i);
    if (!(h->exf[b >> 6] >> (b & 63) & 1)) return 0;
    size_t lo = 0, hi = h->n_ex;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((int64_t)h->ex[mid] < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < h->n_ex && (int64_t)h->ex[lo] == i;
}

/* While buffered, each candidate is one key in idx (read as uint64): the
 * score's bits made to sort as unsigned (-0 taken as +0) above the
 * complement of the index, so a larger key is pvg_topk's "before" (higher
 * score, then lower index) and a comparison is one integer compare. */
static inline uint64_t cand_key(float s, int64_t i)
{
    uint32_t b;
    s += 0.0f; /* -0 -> +0: equal scores tie on the index */
    memcpy(&b, &s, 4);
    b = (b & 0x80000000u) ? ~b : b | 0x80000000u;
    return (uint64_t)b << 32 | (uint32_t) ~(uint32_t)i;
}

static inline float key_score(uint64_t k)
{
    uint32_t b = (uint32_t)(k >> 32);
    b = (b & 0x80000000u) ? b & 0x7fffffffu : ~b;
    float s;
    memcpy(&s, &b, 4);
    return s;
}

static inline int64_t key_index(uint64_t k)
{
    return (int64_t)(uint32_t) ~(uint32_t)k;
}

/* Moves the k largest of keys K[0, n) (distinct) to [0, k): quickselect,
 * median-of-three pivots, each partition branch-free and out of place (the
 * larger keys packed forward in K, the smaller ones through T[n]). */
static void keys_select(uint64_t *K, uint64_t *T, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        uint64_t x = K[lo], y = K[lo + (hi - lo) / 2], z = K[hi - 1];
        if (x < y) {
            uint64_t t = x;
            x = y;
            y = t;
        } /* x >= y */
        uint64_t med = z > x ? x : z < y ? y : z;
        size_t nh = lo, nl = 0;
        for (size_t q = lo; q < hi; q++) {
            uint64_t kq = K[q];
            K[nh] = kq; /* nh <= q: K[q..] not yet read is untouched */
            T[nl] = kq;
            nh += kq > med;
            nl += kq < med;
        }
        K[nh] = med;
        memcpy(K + nh + 1, T, nl * sizeof *T);
        /* [lo, nh) above the pivot at nh, (nh, hi) below */
        if (nh == k || nh + 1 == k) return;
        if (nh > k)
            hi = nh;
        else
            lo = nh + 1;
    }
}

/* Drops the excluded entries appended since the last compaction, keeps the
 * best cap and sets thr to the worst of them once there are cap. */
static void topc_compact(pvg_topc *h)
{
    uint64_t *K = (uint64_t *)h->idx;
    size_t n = h->chk;
    for (size_t q = h->chk; q < h->n; q++)
        if (!h->n_ex || !is_excluded(h, key_index(K[q]))) K[n++] = K[q];
    if (n >= h->cap && h->cap) {
        keys_select(K, K + h->room, n, h->cap);
        n = h->cap;
        uint64_t w = K[0];
        for (size_t q = 1; q < n; q++)
            w = K[q] < w ? K[q] : w;
        h->thr = key_score(w);
    }
    h->n = h->chk = n;
}

/* Offers (s, i) (cap > 0, s >= thr, 0 <= i < 2^32): appended to the
 * buffer, which is compacted to the best cap when it fills. */
static inline void topc_offer(pvg_topc *h, float s, int64_t i)
{
    if (h->n == h->room) topc_compact(h);
    ((uint64_t *)h->idx)[h->n++] = cand_key(s, i);
}

/* the buffer, then as much scratch for the selection */
size_t pvg_topc_room(size_t cap)
{
    return 2 * (2 * cap + 16);
}

void pvg_topc_init(pvg_topc *h, size_t cap, int64_t *idx, float *sc)
{
    h->cap = cap;
    h->room = pvg_topc_room(cap) / 2;
    h->n = h->chk = 0;
    h->idx = idx;
    h->sc = sc;
    h->thr = cap ? -INFINITY : INFINITY;
    h->ex = NULL;
    h->n_ex = 0;
    memset(h->exf, 0, sizeof h->exf);
}

void pvg_topc_finish(pvg_topc *h)
{
    topc_compact(h);
    uint64_t *K = (uint64_t *)h->idx;
    for (size_t q = 0; q < h->n; q++) {
        uint64_t k = K[q];
        h->sc[q] = key_score(k);
        h->idx[q] = key_index(k);
    }
}

void pvg_topc_exclude(pvg_topc *h, const uint32_t *ex, size_t n_ex)
{
    h->ex = ex;
    h->n_ex = n_ex;
    memset(h->exf, 0, sizeof h->exf);
    for (size_t q = 0; q < n_ex; q++) {
        unsigned b = ex_hash(ex[q]);
        h->exf[b >> 6] |= (uint64_t)1 << (b & 63);
    }
}

void pvg_topc_scan_portable(pvg_topc *h, const float *s, size_t t, int64_t base)
{
    if (!h->cap) return;
    for (size_t i = 0; i < t; i++)
        if (s[i] >= h->thr && s[i] != -INFINITY && s[i] == s[i])
            topc_offer(h, s[i], base + (int64_t)i);
}

#ifdef PVG_X86
__attribute__((target("avx512f"))) static void topc_scan_avx512(pvg_topc *h, const float *s,
                                                                size_t t, int64_t base)
{
    size_t i = 0;
    for (; i + 16 <= t; i += 16) {
        /* >= keeps an equal score (a lower index may win the tie); -inf
         * and NaN never pass (ordered compare against a finite or -inf
         * threshold: -inf >= -inf passes and is dropped in the loop) */
        __mmask16 mk =
            _mm512_cmp_ps_mask(_mm512_loadu_ps(s + i), _mm512_set1_ps(h->thr), _CMP_GE_OQ);
        while (mk) {
            unsigned b = (unsigned)__builtin_ctz(mk);
            mk &= mk - 1;
            float v = s[i + b];
            if (v != -INFINITY) topc_offer(h, v, base + (int64_t)(i + b));
        }
    }
    if (i < t) pvg_topc_scan_portable(h, s + i, t - i, base + (int64_t)i);
}
#endif

void pvg_topc_scan(pvg_topc *h, const float *s, size_t t, int64_t base)
{
    if (!h->cap) return;
#ifdef PVG_X86
    if (cpu_has_vnni512()) {
        topc_scan_avx512(h, s, t, base);
        return;
    }
#endif
    pvg_topc_scan_portable(h, s, t, base);
}

/* ---- the fused scan: int8 scores to candidates, no tile ------------------- */

static inline int64_t pos_id(const uint32_t *ids, size_t p)
{
    return ids ? (int64_t)ids[p] : (int64_t)p;
}

double pvg_i8_user_bound(const uint8_t *uq, size_t f4, float us)
{
    double n2 = 0;
    for (size_t c = 0; c < f4 * 4; c++) {
        double x = (double)uq[c] - 128;
        n2 += x * x;
    }
    return (double)us * sqrt(n2) * (1 + 1e-6);
}

void pvg_i8_scan_naive(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu,
                       size_t p0, size_t p1, const uint32_t *ids, pvg_topc *const *h)
{
    float s[PVG_I8_BLOCK];
    size_t us4 = Q->f4 * 4;
    for (size_t p = p0; p < p1; p += PVG_I8_BLOCK)
        for (size_t a = 0; a < nu; a++) {
            pvg_i8_scores_naive(Q, uq + a * us4, us + a, 1, p, PVG_I8_BLOCK, s, PVG_I8_BLOCK);
            for (size_t l = 0; l < PVG_I8_BLOCK && p + l < p1; l++)
                if (h[a]->cap && s[l] >= h[a]->thr && s[l] != -INFINITY && s[l] == s[l])
                    topc_offer(h[a], s[l], pos_id(ids, p + l));
        }
}

void pvg_i8_scan_portable(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu,
                          size_t p0, size_t p1, const uint32_t *ids, pvg_topc *const *h)
{
    size_t f4 = Q->f4;
    for (size_t p = p0; p < p1; p += PVG_I8_BLOCK) {
        const int8_t *blk = Q->q + (p / PVG_I8_BLOCK) * f4 * PVG_I8_BLOCK * 4;
        size_t live = p1 - p < PVG_I8_BLOCK ? p1 - p : PVG_I8_BLOCK;
        for (size_t a = 0; a < nu; a++) {
            int32_t acc[PVG_I8_BLOCK] = {0};
            const uint8_t *ua = uq + a * f4 * 4;
            for (size_t c = 0; c < f4; c++) {
                const int8_t *w = blk + c * PVG_I8_BLOCK * 4;
                for (size_t l = 0; l < PVG_I8_BLOCK; l++)
                    acc[l] += ua[4 * c] * w[4 * l] + ua[4 * c + 1] * w[4 * l + 1] +
                              ua[4 * c + 2] * w[4 * l + 2] + ua[4 * c + 3] * w[4 * l + 3];
            }
            pvg_topc *ha = h[a];
            if (!ha->cap) continue;
            for (size_t l = 0; l < live; l++) {
                float v = (float)(acc[l] - Q->corr[p + l]) * (Q->scale[p + l] * us[a]);
                if (v >= ha->thr && v != -INFINITY) topc_offer(ha, v, pos_id(ids, p + l));
            }
        }
    }
}

/* The groups nu shoppers are scanned in: ng groups of at most 16, sizes
 * within one of each other (the first ones gs, the last one the rest). */
static void scan_groups(size_t nu, size_t *ng, size_t *gs)
{
    *ng = (nu + 15) / 16;
    *gs = *ng ? (nu + *ng - 1) / *ng : 1;
}

/* Shoppers uq[nu][f4 * 4] for vnni_scan_group, by group: group x
 * (shoppers x*gs..) at uT + x * (f4 + 1) * 16, the bytes 4c..4c+3 of its
 * shopper a, made signed (uq - 128), at [c * 16 + a], then at [f4 * 16 + a]
 * 128 * the sum of those signed bytes (lanes past the group's shoppers
 * are left as they were: never read). uT: words_len(nu, f4) entries. */
static void users_words(const uint8_t *uq, size_t f4, size_t nu, int32_t *uT)
{
    size_t ng, gs;
    scan_groups(nu, &ng, &gs);
    for (size_t a = 0; a < nu; a++) {
        int32_t *g = uT + (a / gs) * (f4 + 1) * 16 + a % gs;
        uint32_t sum = 0; /* of the unsigned bytes */
        for (size_t c = 0; c < f4; c++) {
            uint32_t w;
            memcpy(&w, uq + a * f4 * 4 + 4 * c, 4);
            uint32_t x = (w & 0x00FF00FFu) + ((w >> 8) & 0x00FF00FFu);
            sum += (x & 0xFFFFu) + (x >> 16);
            w ^= 0x80808080u;
            memcpy(&g[c * 16], &w, 4);
        }
        g[f4 * 16] = 128 * ((int32_t)sum - (int32_t)(128 * 4 * f4));
    }
}

static size_t words_len(size_t nu, size_t f4)
{
    size_t ng, gs;
    scan_groups(nu, &ng, &gs);
    return ng * (f4 + 1) * 16;
}

#ifdef PVG_X86
/* The rare path: the scores v of the block at position p whose bits are
 * set in m (at or above h's threshold, finite) offered to h at once: their
 * keys (cand_key, made 16 at a time) packed onto the buffer, which is
 * compacted first when fewer than 16 entries are free (the best cap kept
 * does not depend on when compaction runs: the threshold is always the
 * cap-th best of items offered, at most the final one). */
__attribute__((target("avx512f"), noinline)) static void
offer_block(pvg_topc *h, __m512 v, unsigned m, size_t p, const uint32_t *ids)
{
    if (h->room - h->n < 16) topc_compact(h);
    __m512i b = _mm512_castps_si512(_mm512_add_ps(v, _mm512_setzero_ps())); /* -0 -> +0 */
    b = _mm512_xor_si512(
        b, _mm512_or_si512(_mm512_srai_epi32(b, 31), _mm512_set1_epi32((int)0x80000000u)));
    __m512i i = ids ? _mm512_maskz_loadu_epi32((__mmask16)m, ids + p)
                    : _mm512_add_epi32(
                          _mm512_set1_epi32((int)(uint32_t)p),
                          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    i = _mm512_xor_si512(i, _mm512_set1_epi32(-1)); /* ~index: the lower index first */
    uint64_t *K = (uint64_t *)h->idx;
    for (int half = 0; half < 2; half++) {
        __m256i bh = half ? _mm512_extracti64x4_epi64(b, 1) : _mm512_castsi512_si256(b);
        __m256i ih = half ? _mm512_extracti64x4_epi64(i, 1) : _mm512_castsi512_si256(i);
        __m512i k = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(bh), 32),
                                    _mm512_cvtepu32_epi64(ih));
        __mmask8 mh = (__mmask8)(m >> (8 * half));
        _mm512_storeu_si512((void *)(K + h->n), _mm512_maskz_compress_epi64(mh, k));
        h->n += (size_t)__builtin_popcount(mh);
    }
}

/* One VNNI step with the roles of the operands swapped: acc += the item
 * bytes of w taken as unsigned (q + 128: w XOR 0x80) times the 4 signed
 * shopper bytes at *u (uq - 128), broadcast to the 16 lanes from memory
 * within the instruction (the broadcast operand is VPDPBUSD's signed one;
 * a separate broadcast per step costs more than the step). The sum is
 * q.u + 128 * sum(u): the shopper's correction replaces the item's. */
#define DPBUSD_BCAST(acc, u, w)                                                                    \
    __asm__("vpdpbusd %1%{1to16%}, %2, %0" : "+v"(acc) : "m"(*(u)), "v"(w))

/* G shoppers (a compile-time constant after inlining) over the blocks of
 * [p0, p1): each block's factors loaded once for all G, the G rows of 16
 * scores made and compared with the thresholds in registers. The shoppers'
 * factor words come interleaved, uT[c * 16 + a] = bytes 4c..4c+3 of shopper
 * a, so every step addresses them at a constant offset. Few shoppers split
 * the factor sum over NA accumulators each (the VNNI latency). */
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) static inline void
vnni_scan_group(const pvg_i8_items *Q, const int32_t *uT, const float *us, size_t p0, size_t p1,
                const uint32_t *ids, pvg_topc *const *h, const int G)
{
    const int NA = G == 1 ? 4 : G < 4 ? 2 : 1;
    size_t f4 = Q->f4;
    const int32_t *ucorr = uT + f4 * 16;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    float thr[16];
    for (int a = 0; a < G; a++)
        thr[a] = h[a]->thr;
    for (size_t p = p0; p < p1; p += PVG_I8_BLOCK) {
        const int8_t *blk = Q->q + (p / PVG_I8_BLOCK) * f4 * 64;
        __m512i acc[16][4];
#pragma GCC unroll 16
        for (int a = 0; a < G; a++) {
            acc[a][0] = _mm512_set1_epi32(-ucorr[a]);
#pragma GCC unroll 4
            for (int k = 1; k < NA; k++)
                acc[a][k] = _mm512_setzero_si512();
        }
        size_t c = 0;
        for (; c + (size_t)NA <= f4; c += (size_t)NA) {
#pragma GCC unroll 4
            for (int k = 0; k < NA; k++) {
                __m512i w = _mm512_xor_si512(
                    _mm512_load_si512((const void *)(blk + (c + (size_t)k) * 64)), flip);
                const int32_t *u = uT + (c + (size_t)k) * 16;
#pragma GCC unroll 16
                for (int a = 0; a < G; a++)
                    DPBUSD_BCAST(acc[a][k], u + a, w);
            }
        }
        for (; c < f4; c++) {
            __m512i w = _mm512_xor_si512(_mm512_load_si512((const void *)(blk + c * 64)), flip);
            const int32_t *u = uT + c * 16;
#pragma GCC unroll 16
            for (int a = 0; a < G; a++)
                DPBUSD_BCAST(acc[a][0], u + a, w);
        }
        __m512 sc = _mm512_load_ps(Q->scale + p);
        __mmask16 live =
            p1 - p >= PVG_I8_BLOCK ? (__mmask16)0xFFFF : (__mmask16)((1u << (p1 - p)) - 1);
        __m512 v[16];
        __mmask16 m[16];
        unsigned any = 0;
#pragma GCC unroll 16
        for (int a = 0; a < G; a++) {
            __m512i t = acc[a][0];
#pragma GCC unroll 4
            for (int k = 1; k < NA; k++)
                t = _mm512_add_epi32(t, acc[a][k]);
            /* t = q.u exactly, as the unsigned-shopper sum minus corr */
            v[a] = _mm512_mul_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(sc, _mm512_set1_ps(us[a])));
            m[a] = _mm512_mask_cmp_ps_mask(live, v[a], _mm512_set1_ps(thr[a]), _CMP_GE_OQ);
            any |= m[a];
        }
        if (__builtin_expect(any != 0, 0)) {
#pragma GCC unroll 16
            for (int a = 0; a < G; a++)
                if (m[a]) {
                    offer_block(h[a], v[a], m[a], p, ids);
                    thr[a] = h[a]->thr;
                }
        }
    }
}

#define SCAN_CHUNK 256 /* positions per group pass: 16 KB at f = 64, in L1 for the next group */

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
i8_scan_vnni(const pvg_i8_items *Q, const int32_t *uT, const float *us, size_t nu, size_t p0,
             size_t p1, const uint32_t *ids, pvg_topc *const *h)
{
    size_t ng, gs;
    scan_groups(nu, &ng, &gs);
    for (size_t c0 = p0; c0 < p1; c0 += SCAN_CHUNK) {
        size_t c1 = p1 - c0 < SCAN_CHUNK ? p1 : c0 + SCAN_CHUNK;
        for (size_t x = 0, a0 = 0; a0 < nu; x++, a0 += gs) {
            size_t g = nu - a0 < gs ? nu - a0 : gs;
            const int32_t *ut = uT + x * (Q->f4 + 1) * 16;
            switch (g) {
#define G_CASE(n)                                                                                  \
    case n:                                                                                        \
        vnni_scan_group(Q, ut, us + a0, c0, c1, ids, h + a0, n);                                   \
        break;
                G_CASE(1)
                G_CASE(2)
                G_CASE(3)
                G_CASE(4)
                G_CASE(5)
                G_CASE(6)
                G_CASE(7)
                G_CASE(8)
                G_CASE(9)
                G_CASE(10)
                G_CASE(11)
                G_CASE(12)
                G_CASE(13)
                G_CASE(14)
                G_CASE(15)
                G_CASE(16)
#undef G_CASE
            }
        }
    }
}
#endif

/* pvg_i8_scan with the shoppers' words already interleaved (uT from
 * users_words(uq, ...); unused without VNNI). */
static void i8_scan_words(const pvg_i8_items *Q, const uint8_t *uq, const int32_t *uT,
                          const float *us, size_t nu, size_t p0, size_t p1, const uint32_t *ids,
                          pvg_topc *const *h)
{
    if (p1 <= p0 || !nu) return;
#ifdef PVG_X86
    if (cpu_has_vnni512() && uT) {
        i8_scan_vnni(Q, uT, us, nu, p0, p1, ids, h);
        return;
    }
#endif
    pvg_i8_scan_portable(Q, uq, us, nu, p0, p1, ids, h);
}

void pvg_i8_scan(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu, size_t p0,
                 size_t p1, const uint32_t *ids, pvg_topc *const *h)
{
    if (p1 <= p0 || !nu) return;
#ifdef PVG_X86
    if (cpu_has_vnni512()) {
        /* at most 32 shoppers at a time (each shopper's offers do not
         * depend on the others scanned with it) */
        int32_t uT[2 * 16 * 65];
        int32_t *w = Q->f4 <= 64 ? uT : malloc(2 * 16 * (Q->f4 + 1) * sizeof *w);
        for (size_t a0 = 0; w && a0 < nu; a0 += 32) {
            size_t m = nu - a0 < 32 ? nu - a0 : 32;
            users_words(uq + a0 * Q->f4 * 4, Q->f4, m, w);
            i8_scan_vnni(Q, w, us + a0, m, p0, p1, ids, h + a0);
        }
        if (w) {
            if (w != uT) free(w);
            return;
        }
    }
#endif
    pvg_i8_scan_portable(Q, uq, us, nu, p0, p1, ids, h);
}

/* ---- one batch: int8 scores, candidates, exact re-rank --------------------- */

size_t pvg_serve_candidates(size_t k)
{
    return k > (SIZE_MAX - 32) / 2 ? SIZE_MAX : 2 * k + 32;
}

/* Candidates kept for a job of k over n items: never more than the items
 * (the same answer; the buffers stay within the catalogue's size). */
size_t pvg_serve_job_cap(size_t k, size_t n)
{
    size_t c = pvg_serve_candidates(k);
    return c < n ? c : n;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact scores of items i[0..m) (m <= 8) for u: the float factors,
 * each summed in double in index order (pvg_matvec_naive's sum, bit for
 * bit: a product of two floats is exact in double), the m sums interleaved
 * so they do not wait on each other. */
static void exact_scores8(const float *V, size_t f, const int64_t *i, size_t m, const float *u,
                          float *out)
{
    const float *v[8];
    double s[8] = {0};
    for (size_t l = 0; l < 8; l++)
        v[l] = V + (size_t)i[l < m ? l : 0] * f;
    for (size_t j = 0; j < f; j++) {
        double uj = u[j];
#pragma GCC unroll 8
        for (size_t l = 0; l < 8; l++)
            s[l] += (double)v[l][j] * uj;
    }
    for (size_t l = 0; l < m; l++)
        out[l] = (float)s[l];
}

size_t pvg_serve_rerank_scratch(size_t n)
{
    return 2 * n * sizeof(uint64_t);
}

static int key_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x > y ? -1 : x < y;
}

/* Exact re-rank of the candidates h (item indices) of job j into the job's
 * answer (scratch: pvg_serve_rerank_scratch(h->n) bytes): each exact score
 * and index made one key (cand_key: a larger key is pvg_topk's "before";
 * an exact score is never -0, its sum starting at +0), the best k selected
 * and sorted as integers. */
void pvg_serve_rerank(const float *V, size_t f, const pvg_topc *h, pvg_serve_job *j, void *scratch)
{
    uint64_t *K = scratch, *T = K + h->n;
    size_t n = 0;
    for (size_t q0 = 0; q0 < h->n; q0 += 8) {
        size_t m = h->n - q0 < 8 ? h->n - q0 : 8;
        float e[8];
        exact_scores8(V, f, h->idx + q0, m, j->u, e);
        for (size_t q = 0; q < m; q++)
            if (e[q] == e[q] && e[q] != -INFINITY) /* as pvg_topk: skipped */
                K[n++] = cand_key(e[q], h->idx[q0 + q]);
    }
    if (n > j->k) {
        keys_select(K, T, n, j->k);
        n = j->k;
    }
    if (n <= 64) {
        for (size_t q = 1; q < n; q++) {
            uint64_t x = K[q];
            size_t r = q;
            for (; r && K[r - 1] < x; r--)
                K[r] = K[r - 1];
            K[r] = x;
        }
    } else {
        qsort(K, n, sizeof *K, key_desc);
    }
    for (size_t q = 0; q < n; q++) {
        j->idx[q] = key_index(K[q]);
        j->sc[q] = key_score(K[q]);
    }
    j->n_out = n;
}

/* Asks for the float rows of h's candidates ahead of their re-rank (rows
 * scattered over V: fetched together rather than one miss at a time). */
static void prefetch_rows(const float *V, size_t f, const pvg_topc *h)
{
    for (size_t q = 0; q < h->n; q++) {
        const char *r = (const char *)(V + (size_t)h->idx[q] * f);
        for (size_t b = 0; b < f * sizeof *V; b += 64)
            __builtin_prefetch(r + b);
    }
}

#define STOP_STEP 256 /* positions between the early-stop checks of a sorted scan */

int pvg_serve_score(const pvg_i8_items *Q, const float *V, const pvg_serve_job *const *jobs_in,
                    size_t nj)
{
    pvg_serve_job *const *jobs = (pvg_serve_job *const *)jobs_in;
    if (!nj) return 0;
    size_t f = Q->f, us4 = Q->f4 * 4, cap = 0;
    for (size_t a = 0; a < nj; a++) {
        size_t c = pvg_serve_job_cap(jobs[a]->k, Q->n);
        if (c > cap) cap = c;
    }
    uint8_t *uq = malloc(nj * us4), *uqg = malloc(nj * us4);
    float *us = malloc(nj * sizeof *us), *usg = malloc(nj * sizeof *usg);
    double *ub = malloc(nj * sizeof *ub);
    size_t *act = malloc(nj * sizeof *act);
    size_t room = pvg_topc_room(cap);
    int64_t *hidx = malloc(nj * room * sizeof *hidx);
    float *hsc = malloc(nj * room * sizeof *hsc);
    pvg_topc *heaps = malloc(nj * sizeof *heaps);
    pvg_topc **hp = malloc(nj * sizeof *hp);
    uint32_t **ex = calloc(nj, sizeof *ex);
    void *cbuf = malloc(pvg_serve_rerank_scratch(cap));
    int32_t *uT = malloc(words_len(nj, Q->f4) * sizeof *uT);
    int rc = -1;
    if (!uq || !uqg || !us || !usg || !ub || !act || !hidx || !hsc || !heaps || !hp || !ex ||
        !cbuf || !uT)
        goto done;
    for (size_t a = 0; a < nj; a++) {
        pvg_serve_job *j = jobs[a];
        us[a] = pvg_i8_user(j->u, f, Q->f4, uq + a * us4);
        ub[a] = pvg_i8_user_bound(uq + a * us4, Q->f4, us[a]);
        pvg_topc_init(&heaps[a], pvg_serve_job_cap(j->k, Q->n), hidx + a * room, hsc + a * room);
        if (j->n_excl) {
            /* excluded items, looked up only for a score that would enter */
            if (!(ex[a] = malloc(j->n_excl * sizeof *ex[a]))) goto done;
            memcpy(ex[a], j->excl, j->n_excl * sizeof *ex[a]);
            qsort(ex[a], j->n_excl, sizeof *ex[a], u32_cmp);
            pvg_topc_exclude(&heaps[a], ex[a], j->n_excl);
        }
        act[a] = a;
        memcpy(uqg + a * us4, uq + a * us4, us4);
        usg[a] = us[a];
        hp[a] = &heaps[a];
    }
    size_t g = nj;
    users_words(uqg, Q->f4, g, uT);
    for (size_t p = 0; p < Q->n; p += STOP_STEP) {
        if (Q->sorted) {
            /* a shopper whose threshold is above the bound of every item
             * left (bound[p] is their largest) has its candidates: no later
             * score can enter its heap */
            double b = (double)Q->bound[p] * (1 + 1e-5);
            size_t w = 0;
            for (size_t x = 0; x < g; x++) {
                size_t a = act[x];
                if (ub[a] * b < (double)heaps[a].thr) continue; /* -inf until cap are kept */
                act[w++] = a;
            }
            if (w < g) {
                g = w;
                for (size_t x = 0; x < g; x++) {
                    memcpy(uqg + x * us4, uq + act[x] * us4, us4);
                    usg[x] = us[act[x]];
                    hp[x] = &heaps[act[x]];
                }
                users_words(uqg, Q->f4, g, uT);
            }
            if (!g) break;
        }
        size_t e = Q->n - p < STOP_STEP ? Q->n : p + STOP_STEP;
        i8_scan_words(Q, uqg, uT, usg, g, p, e, Q->item, hp);
    }
    for (size_t a = 0; a < nj; a++) {
        pvg_topc_finish(&heaps[a]);
        prefetch_rows(V, f, &heaps[a]);
    }
    for (size_t a = 0; a < nj; a++)
        pvg_serve_rerank(V, f, &heaps[a], jobs[a], cbuf);
    rc = 0;
done:
    for (size_t a = 0; ex && a < nj; a++)
        free(ex[a]);
    free(ex);
    free(uq);
    free(uqg);
    free(us);
    free(usg);
    free(ub);
    free(act);
    free(hidx);
    free(hsc);
    free(heaps);
    free(hp);
    free(cbuf);
    free(uT);
    return rc;
}

/* ---- the serving state of one model and its combining queue ---------------- */

struct pvg_serve {
    pvg_i8_items q; /* the exact scan's int8 items (empty when the index serves) */
    pvg_ivf ix;     /* the approximate index (serve_index.c), when use_ix */
    int use_ix;
    _Atomic size_t nprobe; /* 0: the index's default */
    const float *V;        /* borrowed from the model */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pvg_serve_job *head, *tail;
    int busy, slots;
    _Atomic long long batches, jobs, max_batch;
};

#define MAX_BATCH 32

static pvg_serve *serve_new(const pvg_model *m)
{
    pvg_serve *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    /* large catalogues: the approximate index, built here from the model's
     * factors (derived data, rebuilt with every model and never stored),
     * its default nprobe measured on the model's own shoppers (their item
     * factors while the shoppers' rows are sealed). When the lists it must
     * probe hold more than PVG_IVF_MAX_SHARE of the items (factors without
     * cluster structure) the exact scan is as fast: it serves instead. */
    s->use_ix = m->serve_index == 2 || (m->serve_index == 0 && m->n_items >= PVG_IVF_MIN_ITEMS);
    if (s->use_ix) {
        /* a DP model's shopper factors and histories are each shopper's
         * own (joint DP): what one shopper is served may depend on the
         * released item factors only, so its nprobe is measured on those */
        int users = m->U && m->n_users && !m->users_locked && !(m->dp.epsilon > 0);
        if (pvg_ivf_build(m->V, m->n_items, m->factors, 0, users ? m->U : NULL,
                          users ? m->n_users : 0, users ? m->hist_indptr : NULL, m->hist_items,
                          &s->ix)) {
            free(s);
            return NULL;
        }
        if (m->serve_index == 0 &&
            (double)pvg_ivf_default_nprobe(&s->ix) > PVG_IVF_MAX_SHARE * (double)s->ix.nlist) {
            pvg_ivf_free(&s->ix);
            s->use_ix = 0;
        }
    }
    if (!s->use_ix && pvg_i8_items_build(m->V, m->n_items, m->factors, &s->q)) {
        free(s);
        return NULL;
    }
    atomic_store(&s->nprobe, m->serve_nprobe);
    s->V = m->V;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    s->slots = nc < 1 ? 1 : nc > 64 ? 64 : (int)nc;
    return s;
}

void pvg_serve_free(pvg_serve *s)
{
    if (!s) return;
    pvg_i8_items_free(&s->q);
    pvg_ivf_free(&s->ix);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

pvg_serve *pvg_model_serve(const pvg_model *m)
{
    if ((m->type != PVG_MODEL_IALS && m->type != PVG_MODEL_BPR) || !m->V || !m->factors ||
        !m->n_items)
        return NULL;
    pvg_model *mm = (pvg_model *)m; /* the serving state is a cache beside the model */
    pvg_serve *s = atomic_load(&mm->serve);
    if (s) return s;
    pvg_serve *fresh = serve_new(m);
    if (!fresh) return NULL;
    pvg_serve *expect = NULL;
    if (!atomic_compare_exchange_strong(&mm->serve, &expect, fresh)) {
        pvg_serve_free(fresh);
        return expect;
    }
    return fresh;
}

/* 1 when every job of jobs[0..n) is done (under s->mu). */
static int all_done(pvg_serve_job *const *jobs, size_t n)
{
    for (size_t a = 0; a < n; a++)
        if (!jobs[a]->done) return 0;
    return 1;
}

int pvg_serve_run_many(pvg_serve *s, pvg_serve_job *const *jobs, size_t n)
{
    if (!n) return 0;
    for (size_t a = 0; a < n; a++) {
        jobs[a]->done = 0;
        jobs[a]->failed = 0;
        jobs[a]->next = a + 1 < n ? jobs[a + 1] : NULL;
    }
    pthread_mutex_lock(&s->mu);
    /* all of them at once: they are taken together (MAX_BATCH at a time),
     * with whatever other threads queued meanwhile */
    if (s->tail)
        s->tail->next = jobs[0];
    else
        s->head = jobs[0];
    s->tail = jobs[n - 1];
    while (!all_done(jobs, n)) {
        if (s->busy < s->slots && s->head) {
            /* a free slot: take every queued request (ours among them unless
             * more than MAX_BATCH wait) and score them as one batch */
            pvg_serve_job *batch[MAX_BATCH];
            size_t nb = 0;
            while (s->head && nb < MAX_BATCH) {
                batch[nb++] = s->head;
                s->head = s->head->next;
            }
            if (!s->head) s->tail = NULL;
            s->busy++;
            pthread_mutex_unlock(&s->mu);
            int r = s->use_ix
                        ? pvg_ivf_score(&s->ix, s->V, atomic_load(&s->nprobe),
                                        (const pvg_serve_job *const *)batch, nb)
                        : pvg_serve_score(&s->q, s->V, (const pvg_serve_job *const *)batch, nb);
            atomic_fetch_add(&s->batches, 1);
            atomic_fetch_add(&s->jobs, (long long)nb);
            long long mb = atomic_load(&s->max_batch);
            while ((long long)nb > mb && !atomic_compare_exchange_weak(&s->max_batch, &mb, nb))
                ;
            pthread_mutex_lock(&s->mu);
            for (size_t a = 0; a < nb; a++) {
                batch[a]->failed = r != 0;
                batch[a]->done = 1;
            }
            s->busy--;
            pthread_cond_broadcast(&s->cv);
        } else {
            pthread_cond_wait(&s->cv, &s->mu);
        }
    }
    int rc = 0;
    for (size_t a = 0; a < n; a++)
        if (jobs[a]->failed) rc = -1;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int pvg_serve_run(pvg_serve *s, pvg_serve_job *job)
{
    return pvg_serve_run_many(s, &job, 1);
}

void pvg_serve_stats(const pvg_model *m, long long *batches, long long *jobs, long long *max_batch)
{
    pvg_serve *s = atomic_load(&((pvg_model *)m)->serve);
    *batches = s ? atomic_load(&s->batches) : 0;
    *jobs = s ? atomic_load(&s->jobs) : 0;
    *max_batch = s ? atomic_load(&s->max_batch) : 0;
}

int pvg_serve_uses_index(const pvg_serve *s)
{
    return s->use_ix;
}

size_t pvg_serve_nprobe(const pvg_serve *s)
{
    if (!s->use_ix) return 0;
    size_t np = atomic_load(&((pvg_serve *)s)->nprobe);
    if (!np) np = pvg_ivf_default_nprobe(&s->ix);
    return np < s->ix.nlist ? np : s->ix.nlist;
}

void pvg_serve_set_nprobe(pvg_serve *s, size_t nprobe)
{
    atomic_store(&s->nprobe, nprobe);
}
