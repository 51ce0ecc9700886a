/*
 * kernels.c - the numeric kernels of the recommenders, each beside the
 * naive reference it is tested against: top-k selection, Gramian,
 * matrix-vector scoring, the iALS normal-equation operator and its block
 * conjugate-gradient / Cholesky solves, and a parallel-for helper.
 */
#include "model/model_internal.h"

#include <assert.h>
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

double pvg_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double pvg_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

long pvg_peak_rss_kb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return ru.ru_maxrss;
}

static pthread_rwlock_t blas_lock = PTHREAD_RWLOCK_INITIALIZER; /* guards OpenBLAS's global */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static _Thread_local int blas_shared_depth;

static void blas_single(void)
{
    openblas_set_num_threads(1);
}

void pvg_blas_threaded_begin(int n)
{
    assert(blas_shared_depth == 0);
    pthread_once(&blas_once, blas_single);
    pthread_rwlock_wrlock(&blas_lock);
    openblas_set_num_threads(n < 1 ? 1 : n);
}

void pvg_blas_threaded_end(void)
{
    openblas_set_num_threads(1);
    pthread_rwlock_unlock(&blas_lock);
}

void pvg_blas_shared_begin(void)
{
    pthread_once(&blas_once, blas_single);
    /* glibc's rwlock prefers readers, so a nested shared section (scoring
     * inside a parallel section) cannot deadlock behind a waiting writer. */
    pthread_rwlock_rdlock(&blas_lock);
    blas_shared_depth++;
}

void pvg_blas_shared_end(void)
{
    blas_shared_depth--;
    pthread_rwlock_unlock(&blas_lock);
}

/* ---- parallel for ------------------------------------------------------ */

typedef struct pf_shared {
    atomic_size_t next;
    size_t n, grain;
    pvg_range_fn fn;
    void *ctx;
} pf_shared;

typedef struct pf_arg {
    pf_shared *sh;
    int tid;
} pf_arg;

static void *pf_worker(void *vp)
{
    pf_arg *a = vp;
    pf_shared *sh = a->sh;
    for (;;) {
        size_t b = atomic_fetch_add(&sh->next, sh->grain);
        if (b >= sh->n) break;
        size_t e = b + sh->grain < sh->n ? b + sh->grain : sh->n;
        sh->fn(sh->ctx, a->tid, b, e);
    }
    return NULL;
}

pvg_status pvg_parallel_for(int n_threads, size_t n, size_t grain, pvg_range_fn fn, void *ctx)
{
    if (grain == 0) grain = 1;
    pvg_blas_shared_begin(); /* workers may call BLAS: keep its thread count at 1 */
    if (n_threads <= 1 || n <= grain) {
        for (size_t b = 0; b < n; b += grain)
            fn(ctx, 0, b, b + grain < n ? b + grain : n);
        pvg_blas_shared_end();
        return PVG_OK;
    }
    if (n_threads > 256) n_threads = 256;
    pf_shared sh;
    atomic_init(&sh.next, 0);
    sh.n = n;
    sh.grain = grain;
    sh.fn = fn;
    sh.ctx = ctx;
    pthread_t th[256];
    pf_arg args[256];
    int started = 0;
    for (int t = 1; t < n_threads; t++) {
        args[t].sh = &sh;
        args[t].tid = t;
        if (pthread_create(&th[t], NULL, pf_worker, &args[t]) != 0) break;
        started = t;
    }
    args[0].sh = &sh;
    args[0].tid = 0;
    pf_worker(&args[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(th[t], NULL);
    pvg_blas_shared_end();
    return PVG_OK;
}

/* ---- top-k ---------------------------------------------------------------- */

/* "a ranks before b": higher score, then lower index. */
static inline int before(float sa, int64_t ia, float sb, int64_t ib)
{
    return sa > sb || (sa == sb && ia < ib);
}

/* Min-heap (worst at the root) of at most k candidates. */
size_t pvg_topk(const float *scores, size_t n, size_t k, int64_t *idx, float *sc)
{
    if (k == 0) return 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        float s = scores[i];
        if (s == -INFINITY || s != s) continue;
        if (m < k) {
            /* sift up */
            size_t c = m++;
            while (c > 0) {
                size_t p = (c - 1) / 2;
                if (!before(sc[p], idx[p], s, (int64_t)i)) break;
                sc[c] = sc[p];
                idx[c] = idx[p];
                c = p;
            }
            sc[c] = s;
            idx[c] = (int64_t)i;
        } else if (before(s, (int64_t)i, sc[0], idx[0])) {
            /* replace root, sift down */
            size_t c = 0;
            for (;;) {
                size_t l = 2 * c + 1, r = l + 1, w = c;
                float ws = s;
                int64_t wi = (int64_t)i;
                if (l < m && before(ws, wi, sc[l], idx[l])) {
                    w = l;
                    ws = sc[l];
                    wi = idx[l];
                }
                if (r < m && before(ws, wi, sc[r], idx[r])) w = r;
                if (w == c) break;
                sc[c] = sc[w];
                idx[c] = idx[w];
                c = w;
            }
            sc[c] = s;
            idx[c] = (int64_t)i;
        }
    }
    /* heap sort: repeatedly move the worst to the end */
    for (size_t end = m; end > 1; end--) {
        float ts = sc[0];
        int64_t ti = idx[0];
        float s = sc[end - 1];
        int64_t si = idx[end - 1];
        size_t c = 0, lim = end - 1;
        for (;;) {
            size_t l = 2 * c + 1, r = l + 1, w = c;
            float ws = s;
            int64_t wi = si;
            if (l < lim && before(ws, wi, sc[l], idx[l])) {
                w = l;
                ws = sc[l];
                wi = idx[l];
            }
            if (r < lim && before(ws, wi, sc[r], idx[r])) w = r;
            if (w == c) break;
            sc[c] = sc[w];
            idx[c] = idx[w];
            c = w;
        }
        sc[c] = s;
        idx[c] = si;
        sc[end - 1] = ts;
        idx[end - 1] = ti;
    }
    return m;
}

typedef struct si_pair {
    float s;
    int64_t i;
} si_pair;

static int si_cmp(const void *a, const void *b)
{
    const si_pair *x = a, *y = b;
    if (before(x->s, x->i, y->s, y->i)) return -1;
    if (before(y->s, y->i, x->s, x->i)) return 1;
    return 0;
}

size_t pvg_topk_naive(const float *scores, size_t n, size_t k, int64_t *idx, float *sc)
{
    si_pair *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (scores[i] != -INFINITY && scores[i] == scores[i])
            p[m++] = (si_pair){scores[i], (int64_t)i};
    qsort(p, m, sizeof *p, si_cmp);
    if (m > k) m = k;
    for (size_t i = 0; i < m; i++) {
        idx[i] = p[i].i;
        sc[i] = p[i].s;
    }
    free(p);
    return m;
}

/* ---- Gramian and scoring ---------------------------------------------------- */

/* G[f x f] = V^T V, V[n x f] */
void pvg_gramian(const float *V, size_t n, size_t f, float *G)
{
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)f, (int)n, 1.0f, V, (int)f, 0.0f, G,
                (int)f);
    for (size_t i = 0; i < f; i++)
        for (size_t j = 0; j < i; j++)
            G[i * f + j] = G[j * f + i];
}

void pvg_gramian_naive(const float *V, size_t n, size_t f, float *G)
{
    for (size_t a = 0; a < f; a++)
        for (size_t b = 0; b < f; b++) {
            double s = 0;
            for (size_t r = 0; r < n; r++)
                s += (double)V[r * f + a] * V[r * f + b];
            G[a * f + b] = (float)s;
        }
}

/* scores[n] = V[n x f] u[f] */
void pvg_matvec(const float *V, size_t n, size_t f, const float *u, float *scores)
{
    pvg_blas_shared_begin();
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)f, 1.0f, V, (int)f, u, 1, 0.0f, scores,
                1);
    pvg_blas_shared_end();
}

void pvg_matvec_naive(const float *V, size_t n, size_t f, const float *u, float *scores)
{
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < f; j++)
            s += (double)V[i * f + j] * u[j];
        scores[i] = (float)s;
    }
}

/* ---- half precision scoring -------------------------------------------- */

uint16_t pvg_f32_to_f16(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    uint32_t sign = (b >> 16) & 0x8000u, exp = (b >> 23) & 0xffu, man = b & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0)); /* inf / nan */
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u; /* subnormal half */
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent: ok */
    return (uint16_t)(sign | h);
}

float pvg_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, b;
    if (exp == 0) {
        if (man == 0) {
            b = sign;
        } else { /* subnormal */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            b = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        b = sign | 0x7f800000u | (man << 13);
    } else {
        b = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float x;
    memcpy(&x, &b, 4);
    return x;
}

void pvg_f16_pack(const float *V, size_t n, size_t f, uint16_t *out)
{
    size_t nb = (n + 7) / 8;
    for (size_t b = 0; b < nb; b++)
        for (size_t k = 0; k < f; k++)
            for (size_t j = 0; j < 8; j++) {
                size_t i = 8 * b + j;
                out[(b * f + k) * 8 + j] = i < n ? pvg_f32_to_f16(V[i * f + k]) : 0;
            }
}

void pvg_matvec_f16_naive(const uint16_t *Vp, size_t n, size_t f, const float *u, float *scores)
{
    for (size_t i = 0; i < n; i++) {
        size_t b = i / 8, j = i % 8;
        double s = 0;
        for (size_t k = 0; k < f; k++)
            s += (double)pvg_f16_to_f32(Vp[(b * f + k) * 8 + j]) * u[k];
        scores[i] = (float)s;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
static int cpu_has_f16c_avx2_fma(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & (1u << 29)) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

__attribute__((target("avx2,fma,f16c"))) static void
matvec_f16_avx2(const uint16_t *Vp, size_t n, size_t f, const float *u, float *scores)
{
    size_t nb = (n + 7) / 8;
    for (size_t b = 0; b < nb; b++) {
        const uint16_t *blk = Vp + b * f * 8;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        size_t k = 0;
        for (; k + 2 <= f; k += 2) {
            __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + k * 8)));
            __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + k * 8 + 8)));
            a0 = _mm256_fmadd_ps(v0, _mm256_set1_ps(u[k]), a0);
            a1 = _mm256_fmadd_ps(v1, _mm256_set1_ps(u[k + 1]), a1);
        }
        if (k < f)
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + k * 8))),
                                 _mm256_set1_ps(u[k]), a0);
        a0 = _mm256_add_ps(a0, a1);
        if (8 * b + 8 <= n) {
            _mm256_storeu_ps(scores + 8 * b, a0);
        } else {
            float tmp[8];
            _mm256_storeu_ps(tmp, a0);
            for (size_t j = 0; 8 * b + j < n; j++)
                scores[8 * b + j] = tmp[j];
        }
    }
}
#endif

void pvg_matvec_f16(const uint16_t *Vp, size_t n, size_t f, const float *u, float *scores)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_f16c_avx2_fma()) {
        matvec_f16_avx2(Vp, n, f, u, scores);
        return;
    }
#endif
    size_t nb = (n + 7) / 8;
    float acc[8];
    for (size_t b = 0; b < nb; b++) {
        const uint16_t *blk = Vp + b * f * 8;
        for (size_t j = 0; j < 8; j++)
            acc[j] = 0;
        for (size_t k = 0; k < f; k++)
            for (size_t j = 0; j < 8; j++)
                acc[j] += pvg_f16_to_f32(blk[k * 8 + j]) * u[k];
        for (size_t j = 0; j < 8 && 8 * b + j < n; j++)
            scores[8 * b + j] = acc[j];
    }
}

/* ---- iALS operator -------------------------------------------------------- */

static inline float dotf(const float *a, const float *b, size_t f)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t j = 0;
    for (; j + 8 <= f; j += 8) {
        s0 += a[j] * b[j];
        s1 += a[j + 1] * b[j + 1];
        s2 += a[j + 2] * b[j + 2];
        s3 += a[j + 3] * b[j + 3];
        s4 += a[j + 4] * b[j + 4];
        s5 += a[j + 5] * b[j + 5];
        s6 += a[j + 6] * b[j + 6];
        s7 += a[j + 7] * b[j + 7];
    }
    for (; j < f; j++)
        s0 += a[j] * b[j];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

static inline void axpyf(float a, const float *x, float *y, size_t f)
{
    for (size_t j = 0; j < f; j++)
        y[j] += a * x[j];
}

static inline float conf_of(float conf, float w)
{
    return conf > 0 ? 1.0f + conf * log1pf(w) : 1.0f;
}

/* The sparse part of the operator, Y[r] += reg_r X[r] + sum_j c_rj h_j (h_j . X[r]),
 * portable version. */
static void sparse_part_generic(const pvg_csr *M, size_t r0, size_t b, const float *H, size_t f,
                                const float *reg, float conf, float shift, const float *X, float *Y)
{
    for (size_t r = 0; r < b; r++) {
        const float *x = X + r * f;
        float *y = Y + r * f;
        axpyf(reg[r], x, y, f);
        for (uint64_t j = M->indptr[r0 + r]; j < M->indptr[r0 + r + 1]; j++) {
            const float *h = H + (size_t)M->indices[j] * f;
            float t = conf_of(conf, M->data[j]) * (dotf(h, x, f) - shift);
            axpyf(t, h, y, f);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PVG_HAVE_AVX2_PATH 1
/* Same as sparse_part_generic with AVX2/FMA (8 floats a lane); the tail
 * (f % 8) is scalar. Chosen at run time when the CPU has AVX2 and FMA. */
__attribute__((target("avx2,fma"))) static void
sparse_part_avx2(const pvg_csr *M, size_t r0, size_t b, const float *H, size_t f, const float *reg,
                 float conf, float shift, const float *X, float *Y)
{
    size_t f8 = f & ~(size_t)7;
    for (size_t r = 0; r < b; r++) {
        const float *x = X + r * f;
        float *y = Y + r * f;
        __m256 vr = _mm256_set1_ps(reg[r]);
        for (size_t q = 0; q < f8; q += 8)
            _mm256_storeu_ps(y + q,
                             _mm256_fmadd_ps(vr, _mm256_loadu_ps(x + q), _mm256_loadu_ps(y + q)));
        for (size_t q = f8; q < f; q++)
            y[q] += reg[r] * x[q];
        uint64_t jend = M->indptr[r0 + r + 1];
        for (uint64_t j = M->indptr[r0 + r]; j < jend; j++) {
            const float *h = H + (size_t)M->indices[j] * f;
            /* the factor rows are gathered at random: prefetch a few ahead */
            if (j + 6 < jend) {
                const char *pf = (const char *)(H + (size_t)M->indices[j + 6] * f);
                for (size_t q = 0; q < f * sizeof(float); q += 64)
                    _mm_prefetch(pf + q, _MM_HINT_T0);
            }
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            size_t q = 0;
            for (; q + 16 <= f8; q += 16) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(h + q), _mm256_loadu_ps(x + q), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(h + q + 8), _mm256_loadu_ps(x + q + 8), a1);
            }
            for (; q < f8; q += 8)
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(h + q), _mm256_loadu_ps(x + q), a0);
            a0 = _mm256_add_ps(a0, a1);
            __m128 lo = _mm256_castps256_ps128(a0), hi = _mm256_extractf128_ps(a0, 1);
            lo = _mm_add_ps(lo, hi);
            lo = _mm_hadd_ps(lo, lo);
            lo = _mm_hadd_ps(lo, lo);
            float d = _mm_cvtss_f32(lo);
            for (size_t t = f8; t < f; t++)
                d += h[t] * x[t];
            float t = conf_of(conf, M->data[j]) * (d - shift);
            __m256 vt = _mm256_set1_ps(t);
            for (q = 0; q < f8; q += 8)
                _mm256_storeu_ps(
                    y + q, _mm256_fmadd_ps(vt, _mm256_loadu_ps(h + q), _mm256_loadu_ps(y + q)));
            for (size_t u = f8; u < f; u++)
                y[u] += t * h[u];
        }
    }
}

static int cpu_has_avx2_fma(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* Y = A X - shift * B: the operator, or (shift 1) the negated residual,
 * in one pass over the rows' nonzeros. */
static void ials_apply_shift(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G,
                             size_t f, float alpha0, const float *reg, float conf, float shift,
                             const float *X, float *Y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)f, (int)f, alpha0, X,
                (int)f, G, (int)f, 0.0f, Y, (int)f);
#ifdef PVG_HAVE_AVX2_PATH
    if (cpu_has_avx2_fma()) {
        sparse_part_avx2(M, r0, b, H, f, reg, conf, shift, X, Y);
        return;
    }
#endif
    sparse_part_generic(M, r0, b, H, f, reg, conf, shift, X, Y);
}

/* The portable path of pvg_ials_apply regardless of the CPU (tests). */
void pvg_ials_apply_portable(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G,
                             size_t f, float alpha0, const float *reg, float conf, const float *X,
                             float *Y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)f, (int)f, alpha0, X,
                (int)f, G, (int)f, 0.0f, Y, (int)f);
    sparse_part_generic(M, r0, b, H, f, reg, conf, 0.0f, X, Y);
}

/* Y[b x f] = alpha0 X G + diag(reg) X + per-row sum c h h^T x */
void pvg_ials_apply(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G, size_t f,
                    float alpha0, const float *reg, float conf, const float *X, float *Y)
{
    ials_apply_shift(M, r0, b, H, G, f, alpha0, reg, conf, 0.0f, X, Y);
}

void pvg_ials_apply_naive(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G,
                          size_t f, float alpha0, const float *reg, float conf, const float *X,
                          float *Y)
{
    double *A = malloc(f * f * sizeof *A);
    if (!A) return;
    for (size_t r = 0; r < b; r++) {
        for (size_t a = 0; a < f; a++)
            for (size_t c = 0; c < f; c++)
                A[a * f + c] = (double)alpha0 * G[a * f + c] + (a == c ? reg[r] : 0.0);
        for (uint64_t j = M->indptr[r0 + r]; j < M->indptr[r0 + r + 1]; j++) {
            const float *h = H + (size_t)M->indices[j] * f;
            double cw = conf_of(conf, M->data[j]);
            for (size_t a = 0; a < f; a++)
                for (size_t c = 0; c < f; c++)
                    A[a * f + c] += cw * h[a] * h[c];
        }
        for (size_t a = 0; a < f; a++) {
            double s = 0;
            for (size_t c = 0; c < f; c++)
                s += A[a * f + c] * X[r * f + c];
            Y[r * f + a] = (float)s;
        }
    }
    free(A);
}

int pvg_ials_solve_row_exact(const pvg_csr *M, size_t r, const float *H, const float *G, size_t f,
                             float alpha0, float reg, float conf, float *w_out)
{
    double *A = malloc(f * f * sizeof *A);
    double *x = malloc(f * sizeof *x);
    if (!A || !x) {
        free(A);
        free(x);
        return -1;
    }
    for (size_t a = 0; a < f; a++) {
        x[a] = 0;
        for (size_t c = 0; c < f; c++)
            A[a * f + c] = (double)alpha0 * G[a * f + c] + (a == c ? reg : 0.0);
    }
    for (uint64_t j = M->indptr[r]; j < M->indptr[r + 1]; j++) {
        const float *h = H + (size_t)M->indices[j] * f;
        double cw = conf_of(conf, M->data[j]);
        for (size_t a = 0; a < f; a++) {
            x[a] += cw * h[a];
            for (size_t c = 0; c <= a; c++)
                A[a * f + c] += cw * h[a] * h[c];
        }
    }
    int rc = pvg_cholesky_solve(A, f, x);
    if (rc == 0)
        for (size_t a = 0; a < f; a++)
            w_out[a] = (float)x[a];
    free(A);
    free(x);
    return rc;
}

void pvg_ials_solve_block(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G,
                          size_t f, float alpha0, const float *reg, float conf, int cg_steps,
                          float *W, float *scratch)
{
    float *Wb = W + r0 * f;
    if (cg_steps <= 0) {
        /* exact: A = alpha0 G + reg I + Hc^T Hc with Hc the row's gathered
         * factor rows scaled by sqrt(c) (ssyrk), b = H^T c, Cholesky solve
         * (sposv); the double-precision reference is solve_row_exact. */
        float *A = scratch, *rhs = scratch + f * f;
        float *Hc = NULL;
        size_t cap = 0;
        for (size_t r = 0; r < b; r++) {
            uint64_t j0 = M->indptr[r0 + r], nz = M->indptr[r0 + r + 1] - j0;
            if (nz > cap) {
                float *nh = realloc(Hc, nz * f * sizeof *nh);
                if (!nh) { /* fall back to the reference solve */
                    if (pvg_ials_solve_row_exact(M, r0 + r, H, G, f, alpha0, reg[r], conf,
                                                 Wb + r * f))
                        memset(Wb + r * f, 0, f * sizeof(float));
                    continue;
                }
                Hc = nh;
                cap = nz;
            }
            memset(rhs, 0, f * sizeof *rhs);
            for (uint64_t q = 0; q < nz; q++) {
                const float *h = H + (size_t)M->indices[j0 + q] * f;
                float c = conf_of(conf, M->data[j0 + q]), sc = sqrtf(c);
                for (size_t k = 0; k < f; k++) {
                    Hc[q * f + k] = sc * h[k];
                    rhs[k] += c * h[k];
                }
            }
            for (size_t k = 0; k < f * f; k++)
                A[k] = alpha0 * G[k];
            for (size_t k = 0; k < f; k++)
                A[k * f + k] += reg[r];
            if (nz)
                cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, (int)f, (int)nz, 1.0f, Hc,
                            (int)f, 1.0f, A, (int)f);
            if (LAPACKE_sposv(LAPACK_ROW_MAJOR, 'L', (lapack_int)f, 1, A, (lapack_int)f, rhs, 1) ==
                0)
                memcpy(Wb + r * f, rhs, f * sizeof(float));
            else if (pvg_ials_solve_row_exact(M, r0 + r, H, G, f, alpha0, reg[r], conf, Wb + r * f))
                memset(Wb + r * f, 0, f * sizeof(float));
        }
        free(Hc);
        return;
    }
    float *R = scratch, *P = R + b * f, *AP = P + b * f, *rs = AP + b * f;
    /* residual R = b - A W, in one pass: AP = A W - b */
    ials_apply_shift(M, r0, b, H, G, f, alpha0, reg, conf, 1.0f, Wb, AP);
    for (size_t r = 0; r < b; r++) {
        for (size_t j = 0; j < f; j++)
            R[r * f + j] = -AP[r * f + j];
        memcpy(P + r * f, R + r * f, f * sizeof(float));
        rs[r] = dotf(R + r * f, R + r * f, f);
    }
    for (int s = 0; s < cg_steps; s++) {
        pvg_ials_apply(M, r0, b, H, G, f, alpha0, reg, conf, P, AP);
        for (size_t r = 0; r < b; r++) {
            if (rs[r] <= 1e-20f) continue;
            float *p = P + r * f, *ap = AP + r * f, *rr = R + r * f, *w = Wb + r * f;
            float pap = dotf(p, ap, f);
            if (!(pap > 0)) {
                rs[r] = 0;
                continue;
            }
            float a = rs[r] / pap;
            axpyf(a, p, w, f);
            axpyf(-a, ap, rr, f);
            float rn = dotf(rr, rr, f);
            float beta = rn / rs[r];
            for (size_t j = 0; j < f; j++)
                p[j] = rr[j] + beta * p[j];
            rs[r] = rn;
        }
    }
}
