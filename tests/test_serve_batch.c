/*
 * test_serve_batch.c - the fast serving path of factor models: the int8
 * scoring kernel (AVX-512 VNNI where the CPU has it) against its portable
 * and naive versions bit for bit, the threshold-filtered top-C against the
 * naive top-k, the batch answer (int8 candidates re-ranked exactly) against
 * exact float scoring (recall@10 >= 0.99, the returned scores exact), a
 * batch of many shoppers against one at a time, and many threads through
 * the combining queue each getting their own shopper's answer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/model_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t ts_state = 777;
static double ts_rand(void)
{
    ts_state = ts_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(ts_state >> 11) / 9007199254740992.0;
}
static float ts_gauss(void)
{
    double a = ts_rand() + 1e-12, b = ts_rand();
    return (float)(sqrt(-2 * log(a)) * cos(6.283185307179586 * b));
}

/* Factors with the structure of trained ones: a few taste clusters, item
 * norms that vary (popular items longer). */
static float *synth_factors(size_t n, size_t f, size_t clusters)
{
    float *C = malloc(clusters * f * sizeof *C), *V = malloc(n * f * sizeof *V);
    assert_non_null(C);
    assert_non_null(V);
    for (size_t i = 0; i < clusters * f; i++)
        C[i] = ts_gauss();
    for (size_t i = 0; i < n; i++) {
        size_t c = (size_t)(ts_rand() * (double)clusters) % clusters;
        float norm = (float)(0.2 + 1.5 * ts_rand() * ts_rand());
        for (size_t j = 0; j < f; j++)
            V[i * f + j] = norm * (0.7f * C[c * f + j] + 0.5f * ts_gauss()) / sqrtf((float)f);
    }
    free(C);
    return V;
}

static void test_i8_kernels(void **state)
{
    (void)state;
    size_t shapes[][2] = {{1005, 64}, {333, 13}, {64, 1}, {2000, 128}};
    for (size_t sh = 0; sh < 4; sh++) {
        size_t n = shapes[sh][0], f = shapes[sh][1];
        float *V = synth_factors(n, f, 7);
        for (size_t j = 0; j < f; j++) { /* a zero row and a row with one non-zero */
            V[3 * f + j] = 0;
            V[5 * f + j] = j == 0 ? -2.5f : 0;
        }
        pvg_i8_items Q; /* positions = items here (the sorted build: below) */
        assert_int_equal(pvg_i8_items_build_rows(V, NULL, n, f, &Q), 0);
        size_t nu = 11, us4 = Q.f4 * 4;
        uint8_t *uq = malloc(nu * us4);
        float us[11];
        for (size_t a = 0; a < nu; a++) {
            float u[128];
            for (size_t j = 0; j < f; j++)
                u[j] = ts_gauss();
            us[a] = pvg_i8_user(u, f, Q.f4, uq + a * us4);
            for (size_t j = f; j < us4; j++)
                assert_int_equal(uq[a * us4 + j], 128); /* padding is q = 0 */
        }
        size_t ld = Q.n_pad + 16;
        float *fast = malloc(nu * ld * sizeof *fast), *port = malloc(nu * ld * sizeof *port),
              *naive = malloc(nu * ld * sizeof *naive);
        /* whole range, and a middle window */
        size_t ranges[][2] = {{0, Q.n_pad}, {16, Q.n_pad > 48 ? 32 : 0}};
        for (int r = 0; r < 2; r++) {
            size_t j0 = ranges[r][0], t = ranges[r][1];
            if (!t) continue;
            memset(fast, 0, nu * ld * sizeof *fast);
            pvg_i8_scores(&Q, uq, us, nu, j0, t, fast, ld);
            pvg_i8_scores_portable(&Q, uq, us, nu, j0, t, port, ld);
            pvg_i8_scores_naive(&Q, uq, us, nu, j0, t, naive, ld);
            for (size_t a = 0; a < nu; a++)
                for (size_t j = 0; j < t; j++) {
                    assert_memory_equal(&fast[a * ld + j], &naive[a * ld + j], sizeof(float));
                    assert_memory_equal(&port[a * ld + j], &naive[a * ld + j], sizeof(float));
                }
        }
        /* the int8 score is close to the float one */
        float u[128];
        for (size_t j = 0; j < f; j++)
            u[j] = ts_gauss();
        float s1 = pvg_i8_user(u, f, Q.f4, uq);
        pvg_i8_scores_naive(&Q, uq, &s1, 1, 0, Q.n_pad, naive, ld);
        float *exact = malloc(n * sizeof *exact);
        pvg_matvec_naive(V, n, f, u, exact);
        double err = 0, mag = 0;
        for (size_t i = 0; i < n; i++) {
            err += fabs(naive[i] - exact[i]);
            mag += fabs(exact[i]);
        }
        assert_true(err <= 0.03 * mag);
        assert_true(naive[3] == 0.0f);
        /* one factor: only the shopper's rounding (half a step) is off */
        float umax = 0;
        for (size_t j = 0; j < f; j++)
            umax = fabsf(u[j]) > umax ? fabsf(u[j]) : umax;
        assert_true(fabsf(naive[5] - exact[5]) <= 2.5f * umax / 254.0f * 1.001f + 1e-6f);
        for (size_t i = n; i < Q.n_pad; i++)
            assert_true(naive[i] == 0.0f);
        free(exact);
        free(fast);
        free(port);
        free(naive);
        free(uq);
        pvg_i8_items_free(&Q);
        free(V);
    }
}

static void test_topc_scan(void **state)
{
    (void)state;
    size_t n = 5000;
    float *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) {
        double x = ts_rand();
        s[i] = x < 0.05 ? -INFINITY : x < 0.06 ? NAN : (float)floor(ts_rand() * 300) / 7.0f;
    }
    size_t caps[] = {1, 10, 37, 64, 4990};
    for (size_t c = 0; c < 5; c++) {
        size_t cap = caps[c];
        int64_t *ri = malloc(cap * sizeof *ri);
        float *rs = malloc(cap * sizeof *rs);
        size_t want = pvg_topk_naive(s, n, cap, ri, rs);
        for (int v = 0; v < 2; v++) {
            int64_t *hi = malloc(pvg_topc_room(cap) * sizeof *hi);
            float *hs = malloc(pvg_topc_room(cap) * sizeof *hs);
            pvg_topc h;
            pvg_topc_init(&h, cap, hi, hs);
            /* offered in uneven pieces, as tiles */
            for (size_t b = 0; b < n;) {
                size_t t = 1 + (size_t)(ts_rand() * 700);
                if (t > n - b) t = n - b;
                if (v)
                    pvg_topc_scan(&h, s + b, t, (int64_t)b);
                else
                    pvg_topc_scan_portable(&h, s + b, t, (int64_t)b);
                b += t;
            }
            pvg_topc_finish(&h);
            assert_int_equal(h.n, want);
            int64_t *si = malloc(cap * sizeof *si);
            float *ss = malloc(cap * sizeof *ss);
            /* the heap's set, in order */
            float *tmp = malloc(n * sizeof *tmp);
            for (size_t i = 0; i < n; i++)
                tmp[i] = -INFINITY;
            for (size_t q = 0; q < h.n; q++)
                tmp[h.idx[q]] = h.sc[q];
            size_t got = pvg_topk_naive(tmp, n, cap, si, ss);
            assert_int_equal(got, want);
            for (size_t q = 0; q < got; q++) {
                assert_int_equal(si[q], ri[q]);
                assert_true(ss[q] == rs[q]);
            }
            free(tmp);
            free(si);
            free(ss);
            free(hi);
            free(hs);
        }
        free(ri);
        free(rs);
    }
    free(s);
}

/* exact answer: float scores of every item (pvg_matvec_naive), exclusions,
 * pvg_topk_naive */
static size_t exact_topk(const float *V, size_t n, size_t f, const float *u, const uint32_t *ex,
                         size_t nex, size_t k, int64_t *idx, float *sc)
{
    float *s = malloc(n * sizeof *s);
    pvg_matvec_naive(V, n, f, u, s);
    for (size_t q = 0; q < nex; q++)
        s[ex[q]] = -INFINITY;
    size_t got = pvg_topk_naive(s, n, k, idx, sc);
    free(s);
    return got;
}

static void test_serve_recall(void **state)
{
    (void)state;
    size_t n = 30000, f = 64, nu = 60, k = 10;
    float *V = synth_factors(n, f, 40);
    float *U = synth_factors(nu, f, 40);
    /* a broken item (a NaN factor, scale 0 in int8) is never returned, as
     * the exact path skips NaN scores */
    V[7 * f + 3] = NAN;
    pvg_i8_items Q;
    assert_int_equal(pvg_i8_items_build(V, n, f, &Q), 0);
    pvg_serve_job jobs[60], one[60];
    pvg_serve_job *jp[60];
    uint32_t ex[60][20];
    int64_t idx[60][10], idx1[60][10];
    float sc[60][10], sc1[60][10];
    for (size_t a = 0; a < nu; a++) {
        size_t nex = a % 20;
        /* exclude some of the shopper's best items (what iALS ranks first
         * are often the items already bought) */
        int64_t top[20];
        float tsc[20];
        exact_topk(V, n, f, U + a * f, NULL, 0, 20, top, tsc);
        for (size_t q = 0; q < nex; q++)
            ex[a][q] = q % 2 ? (uint32_t)top[q] : (uint32_t)(ts_rand() * (double)n);
        memset(&jobs[a], 0, sizeof jobs[a]);
        jobs[a].u = U + a * f;
        jobs[a].excl = ex[a];
        jobs[a].n_excl = nex;
        jobs[a].k = k;
        jobs[a].idx = idx[a];
        jobs[a].sc = sc[a];
        jp[a] = &jobs[a];
        one[a] = jobs[a];
        one[a].idx = idx1[a];
        one[a].sc = sc1[a];
    }
    assert_int_equal(pvg_serve_score(&Q, V, (const pvg_serve_job *const *)jp, nu), 0);
    size_t hit = 0, total = 0;
    for (size_t a = 0; a < nu; a++) {
        pvg_serve_job *p1 = &one[a];
        assert_int_equal(pvg_serve_score(&Q, V, (const pvg_serve_job *const *)&p1, 1), 0);
        /* alone or in a batch: the same answer */
        assert_int_equal(one[a].n_out, jobs[a].n_out);
        for (size_t q = 0; q < jobs[a].n_out; q++) {
            assert_int_equal(idx1[a][q], idx[a][q]);
            assert_true(sc1[a][q] == sc[a][q]);
        }
        int64_t ri[10];
        float rs[10];
        size_t want = exact_topk(V, n, f, U + a * f, ex[a], jobs[a].n_excl, k, ri, rs);
        assert_int_equal(jobs[a].n_out, want);
        for (size_t q = 0; q < jobs[a].n_out; q++) {
            assert_int_not_equal(idx[a][q], 7);
            for (size_t r = 0; r < jobs[a].n_excl; r++)
                assert_true((uint32_t)idx[a][q] != ex[a][r]);
            /* the score returned is the exact float score of that item */
            float e = 0;
            float *tmp = malloc(n * sizeof *tmp);
            pvg_matvec_naive(V, n, f, U + a * f, tmp);
            e = tmp[idx[a][q]];
            free(tmp);
            assert_true(sc[a][q] == e);
            if (q) assert_true(sc[a][q] <= sc[a][q - 1]);
            for (size_t r = 0; r < want; r++)
                if (ri[r] == idx[a][q]) hit++;
        }
        total += want;
    }
    double recall = (double)hit / (double)total;
    printf("# recall@10 of the int8 path against exact: %.4f (%zu/%zu)\n", recall, hit, total);
    assert_true(recall >= 0.99);
    pvg_i8_items_free(&Q);
    free(V);
    free(U);
}

/* A catalogue smaller than the candidate count: every item is re-ranked,
 * and an item whose factors hold a NaN is skipped as the exact path does. */
static void test_serve_nan_item(void **state)
{
    (void)state;
    size_t n = 40, f = 8;
    float *V = synth_factors(n, f, 3), u[8];
    for (size_t j = 0; j < f; j++)
        u[j] = ts_gauss();
    V[7 * f + 3] = NAN;
    pvg_i8_items Q;
    assert_int_equal(pvg_i8_items_build(V, n, f, &Q), 0);
    int64_t idx[10];
    float sc[10];
    pvg_serve_job j;
    memset(&j, 0, sizeof j);
    j.u = u;
    j.k = 10;
    j.idx = idx;
    j.sc = sc;
    pvg_serve_job *jp = &j;
    assert_int_equal(pvg_serve_score(&Q, V, (const pvg_serve_job *const *)&jp, 1), 0);
    int64_t ri[10];
    float rs[10];
    size_t want = exact_topk(V, n, f, u, NULL, 0, 10, ri, rs);
    assert_int_equal(j.n_out, want);
    for (size_t q = 0; q < want; q++) {
        assert_int_equal(idx[q], ri[q]);
        assert_true(sc[q] == rs[q]);
    }
    pvg_i8_items_free(&Q);
    free(V);
}

/* The sorted build: positions hold the items in descending order of their
 * bound, Q.item maps back, each position scores as the item does in the
 * plain layout, and no score exceeds bound * the shopper's bound. */
static void test_i8_sorted_build(void **state)
{
    (void)state;
    size_t n = 1003, f = 24;
    float *V = synth_factors(n, f, 5);
    V[10 * f + 2] = NAN;
    V[11 * f + 0] = INFINITY;
    for (size_t j = 0; j < f; j++)
        V[12 * f + j] = 0;
    pvg_i8_items P, S;
    assert_int_equal(pvg_i8_items_build_rows(V, NULL, n, f, &P), 0);
    assert_int_equal(pvg_i8_items_build(V, n, f, &S), 0);
    assert_null(P.item);
    assert_int_equal(P.sorted, 0);
    assert_non_null(S.item);
    assert_int_equal(S.sorted, 1);
    char *seen = calloc(n, 1);
    for (size_t p = 0; p < n; p++) {
        assert_true(S.item[p] < n);
        assert_int_equal(seen[S.item[p]], 0);
        seen[S.item[p]] = 1;
        if (p) assert_true(S.bound[p] <= S.bound[p - 1]);
        assert_true(S.bound[p] == P.bound[S.item[p]]);
    }
    /* broken and zero rows: bound 0, at the end */
    for (size_t p = n - 3; p < n; p++)
        assert_true(S.bound[p] == 0.0f);
    size_t us4 = S.f4 * 4, ld = S.n_pad;
    uint8_t *uq = malloc(us4);
    float *sp = malloc(P.n_pad * sizeof *sp), *ss = malloc(S.n_pad * sizeof *ss), u[24];
    for (int rep = 0; rep < 20; rep++) {
        for (size_t j = 0; j < f; j++)
            u[j] = rep == 0 ? 0 : ts_gauss() * (float)(rep % 5);
        float us = pvg_i8_user(u, f, S.f4, uq);
        double ub = pvg_i8_user_bound(uq, S.f4, us);
        pvg_i8_scores(&P, uq, &us, 1, 0, P.n_pad, sp, ld);
        pvg_i8_scores(&S, uq, &us, 1, 0, S.n_pad, ss, ld);
        for (size_t p = 0; p < n; p++) {
            assert_memory_equal(&ss[p], &sp[S.item[p]], sizeof(float));
            assert_true(fabs((double)ss[p]) <= ub * (double)S.bound[p]);
        }
    }
    free(seen);
    free(uq);
    free(sp);
    free(ss);
    pvg_i8_items_free(&P);
    pvg_i8_items_free(&S);
    free(V);
}

static int i64_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The heap's (index, score) pairs, ordered by index. */
static void heap_pairs(const pvg_topc *h, int64_t *idx, float *sc)
{
    int64_t *tmp = malloc((h->n ? h->n : 1) * 2 * sizeof *tmp);
    for (size_t q = 0; q < h->n; q++)
        tmp[q] = h->idx[q];
    qsort(tmp, h->n, sizeof *tmp, i64_cmp);
    for (size_t q = 0; q < h->n; q++) {
        idx[q] = tmp[q];
        for (size_t r = 0; r < h->n; r++)
            if (h->idx[r] == tmp[q]) sc[q] = h->sc[r];
    }
    free(tmp);
}

/* The fused scan (VNNI and portable) against the naive one (scores into a
 * tile, then offered) and against an independent top-C (every score,
 * excluded ones -inf, pvg_topk_naive): for 1..33 shoppers, ranges ending
 * inside a block, the range offered in uneven block-aligned pieces (the
 * threshold carried from piece to piece), exclusions at block edges, NaN
 * and inf item factors, many exact ties (repeated rows), a capacity above
 * the item count, and index maps. A threshold raised past the worst kept
 * candidate, or one not carried between pieces, fails here. */
static void test_scan_fused(void **state)
{
    (void)state;
    size_t shapes[][2] = {{517, 64}, {203, 13}, {96, 4}};
    for (size_t sh = 0; sh < 3; sh++) {
        size_t n = shapes[sh][0], f = shapes[sh][1];
        float *V = synth_factors(n, f, 4);
        V[16 * f + 1] = NAN;
        V[31 * f + 0] = -INFINITY;
        /* ties: rows repeated across block edges */
        for (size_t r = 40; r < 90; r += 7)
            memcpy(V + r * f, V + 33 * f, f * sizeof *V);
        pvg_i8_items Q[2];
        assert_int_equal(pvg_i8_items_build_rows(V, NULL, n, f, &Q[0]), 0);
        assert_int_equal(pvg_i8_items_build(V, n, f, &Q[1]), 0);
        size_t maxu = 33, us4 = Q[0].f4 * 4;
        uint8_t *uq = malloc(maxu * us4);
        float us[33];
        for (size_t a = 0; a < maxu; a++) {
            float u[64];
            for (size_t j = 0; j < f; j++)
                u[j] = ts_gauss();
            if (a == 5) /* the repeated row's direction: the tie at the top */
                for (size_t j = 0; j < f; j++)
                    u[j] = V[33 * f + j];
            us[a] = pvg_i8_user(u, f, Q[0].f4, uq + a * us4);
        }
        /* exclusions (item ids): block edges, the tied rows, random */
        uint32_t ex[33][12];
        size_t nex[33];
        for (size_t a = 0; a < maxu; a++) {
            uint32_t edge[] = {0, 15, 16, 31, 32, 47, (uint32_t)n - 1, 33, 40, 47};
            nex[a] = a % 4 == 3 ? 0 : 10 + a % 3;
            for (size_t q = 0; q < nex[a]; q++)
                ex[a][q] = q < 10 ? edge[(q + a) % 10] : (uint32_t)(ts_rand() * (double)n);
            qsort(ex[a], nex[a], sizeof ex[a][0], u32_cmp);
            size_t w = 0; /* ascending without repeats */
            for (size_t q = 0; q < nex[a]; q++)
                if (!w || ex[a][w - 1] != ex[a][q]) ex[a][w++] = ex[a][q];
            nex[a] = w;
        }
        uint32_t *rev = malloc(n * sizeof *rev);
        for (size_t p = 0; p < n; p++)
            rev[p] = (uint32_t)(n - 1 - p);
        size_t caps[] = {1, 7, 40, 3 * n};
        float *tile = malloc(Q[0].n_pad * sizeof *tile);
        for (size_t ci = 0; ci < 4; ci++)
            for (size_t nu = 1; nu <= maxu; nu += (nu < 18 ? 1 : 5)) {
                size_t cap = caps[ci];
                for (int lay = 0; lay < 3; lay++) {
                    /* plain, sorted, and plain with the ids reversed (a
                     * tie met after the worst kept, with a lower id) */
                    const pvg_i8_items *Qa = &Q[lay == 1];
                    const uint32_t *ids = lay == 2 ? rev : Qa->item;
                    size_t p0 = lay == 1 ? 16 : 0, p1 = n - (nu % 3) * 5;
                    int64_t *hi[3];
                    float *hs[3];
                    pvg_topc h[3][33], *hp[3][33];
                    for (int v = 0; v < 3; v++) {
                        size_t room = pvg_topc_room(cap);
                        hi[v] = malloc(maxu * room * sizeof *hi[v]);
                        hs[v] = malloc(maxu * room * sizeof *hs[v]);
                        for (size_t a = 0; a < nu; a++) {
                            pvg_topc_init(&h[v][a], cap, hi[v] + a * room, hs[v] + a * room);
                            pvg_topc_exclude(&h[v][a], ex[a], nex[a]);
                            hp[v][a] = &h[v][a];
                        }
                    }
                    for (size_t b = p0; b < p1;) {
                        size_t t = 16 * (1 + (size_t)(ts_rand() * 9));
                        size_t e = p1 - b < t ? p1 : b + t;
                        pvg_i8_scan_naive(Qa, uq, us, nu, b, e, ids, hp[0]);
                        pvg_i8_scan(Qa, uq, us, nu, b, e, ids, hp[1]);
                        pvg_i8_scan_portable(Qa, uq, us, nu, b, e, ids, hp[2]);
                        b = e;
                    }
                    for (int v = 0; v < 3; v++)
                        for (size_t a = 0; a < nu; a++)
                            pvg_topc_finish(&h[v][a]);
                    for (size_t a = 0; a < nu; a++) {
                        /* independent: every score of [p0, p1), by id */
                        float *all = malloc(n * sizeof *all);
                        for (size_t i = 0; i < n; i++)
                            all[i] = -INFINITY;
                        pvg_i8_scores_naive(Qa, uq + a * us4, &us[a], 1, 0, Qa->n_pad, tile,
                                            Qa->n_pad);
                        for (size_t p = p0; p < p1; p++)
                            all[ids ? ids[p] : p] = tile[p];
                        for (size_t q = 0; q < nex[a]; q++)
                            all[ex[a][q]] = -INFINITY;
                        int64_t *wi = malloc(cap * sizeof *wi);
                        float *ws = malloc(cap * sizeof *ws);
                        size_t want = pvg_topk_naive(all, n, cap, wi, ws);
                        qsort(wi, want, sizeof *wi, i64_cmp);
                        for (int v = 0; v < 3; v++) {
                            assert_int_equal(h[v][a].n, want);
                            int64_t *gi = malloc((want ? want : 1) * sizeof *gi);
                            float *gs = malloc((want ? want : 1) * sizeof *gs);
                            heap_pairs(&h[v][a], gi, gs);
                            for (size_t q = 0; q < want; q++) {
                                assert_int_equal(gi[q], wi[q]);
                                assert_true(gs[q] == all[gi[q]]);
                            }
                            if (want == cap) assert_true(h[v][a].thr == h[0][a].thr);
                            free(gi);
                            free(gs);
                        }
                        free(all);
                        free(wi);
                        free(ws);
                    }
                    for (int v = 0; v < 3; v++) {
                        free(hi[v]);
                        free(hs[v]);
                    }
                }
            }
        free(tile);
        free(rev);
        free(uq);
        pvg_i8_items_free(&Q[0]);
        pvg_i8_items_free(&Q[1]);
        free(V);
    }
}

/* pvg_serve_score (sorted items, fused scan, early stop per shopper) for
 * every batch size 1..33 against a reference built from the plain layout:
 * the naive scan over every item, then the exact re-rank. The answers are
 * the same lists with the same scores; ties (repeated rows) included, the
 * shoppers' best items excluded (a stop that skipped a needed item, or an
 * excluded item returned, fails). */
static void test_serve_batches(void **state)
{
    (void)state;
    size_t n = 3000, f = 32, k = 10;
    float *V = synth_factors(n, f, 12);
    float *U = synth_factors(40, f, 12);
    for (size_t r = 100; r < 160; r += 6)
        memcpy(V + r * f, V + 99 * f, f * sizeof *V);
    memcpy(U + 3 * f, V + 99 * f, f * sizeof *V);
    V[50 * f] = NAN;
    pvg_i8_items P, S;
    assert_int_equal(pvg_i8_items_build_rows(V, NULL, n, f, &P), 0);
    assert_int_equal(pvg_i8_items_build(V, n, f, &S), 0);
    uint32_t ex[33][8];
    size_t nex[33];
    int64_t want[33][10];
    float wsc[33][10];
    size_t nwant[33];
    size_t us4 = P.f4 * 4, cap = pvg_serve_candidates(k);
    uint8_t *uq = malloc(us4);
    int64_t *hi = malloc(pvg_topc_room(cap) * sizeof *hi);
    float *hs = malloc(pvg_topc_room(cap) * sizeof *hs);
    void *scr = malloc(pvg_serve_rerank_scratch(cap));
    for (size_t a = 0; a < 33; a++) {
        int64_t top[8];
        float tsc[8];
        exact_topk(V, n, f, U + a * f, NULL, 0, 8, top, tsc);
        nex[a] = a % 3 ? a % 8 : 0;
        for (size_t q = 0; q < nex[a]; q++)
            ex[a][q] = q % 3 ? (uint32_t)top[q] : (uint32_t)(ts_rand() * (double)n);
        /* reference: plain layout, naive scan of every item */
        uint32_t sorted_ex[8];
        memcpy(sorted_ex, ex[a], sizeof sorted_ex);
        qsort(sorted_ex, nex[a], sizeof sorted_ex[0], u32_cmp);
        float us = pvg_i8_user(U + a * f, f, P.f4, uq);
        pvg_topc h, *hp = &h;
        pvg_topc_init(&h, cap, hi, hs);
        pvg_topc_exclude(&h, sorted_ex, nex[a]);
        pvg_i8_scan_naive(&P, uq, &us, 1, 0, n, NULL, &hp);
        pvg_topc_finish(&h);
        pvg_serve_job j;
        memset(&j, 0, sizeof j);
        j.u = U + a * f;
        j.k = k;
        j.idx = want[a];
        j.sc = wsc[a];
        pvg_serve_rerank(V, f, &h, &j, scr);
        nwant[a] = j.n_out;
        assert_int_equal(nwant[a], k);
    }
    for (size_t nb = 1; nb <= 33; nb++) {
        pvg_serve_job jobs[33];
        pvg_serve_job *jp[33];
        int64_t idx[33][10];
        float sc[33][10];
        for (size_t a = 0; a < nb; a++) {
            memset(&jobs[a], 0, sizeof jobs[a]);
            jobs[a].u = U + a * f;
            jobs[a].excl = ex[a];
            jobs[a].n_excl = nex[a];
            jobs[a].k = k;
            jobs[a].idx = idx[a];
            jobs[a].sc = sc[a];
            jp[a] = &jobs[a];
        }
        for (int lay = 0; lay < 2; lay++) {
            assert_int_equal(
                pvg_serve_score(lay ? &S : &P, V, (const pvg_serve_job *const *)jp, nb), 0);
            for (size_t a = 0; a < nb; a++) {
                assert_int_equal(jobs[a].n_out, nwant[a]);
                for (size_t q = 0; q < nwant[a]; q++) {
                    assert_int_equal(idx[a][q], want[a][q]);
                    assert_memory_equal(&sc[a][q], &wsc[a][q], sizeof(float));
                }
            }
        }
    }
    /* k above the catalogue: every finite unexcluded item, exactly */
    size_t nsmall = 37;
    pvg_i8_items T;
    assert_int_equal(pvg_i8_items_build(V, nsmall, f, &T), 0);
    int64_t bi[100], ri[100];
    float bs[100], rs[100];
    pvg_serve_job j;
    memset(&j, 0, sizeof j);
    j.u = U;
    j.k = 100;
    j.idx = bi;
    j.sc = bs;
    uint32_t ex2[] = {36, 0, 16};
    j.excl = ex2;
    j.n_excl = 3;
    pvg_serve_job *jp1 = &j;
    assert_int_equal(pvg_serve_score(&T, V, (const pvg_serve_job *const *)&jp1, 1), 0);
    size_t got = exact_topk(V, nsmall, f, U, ex2, 3, 100, ri, rs);
    assert_int_equal(got, nsmall - 3);
    assert_int_equal(j.n_out, got);
    for (size_t q = 0; q < got; q++) {
        assert_int_equal(bi[q], ri[q]);
        assert_true(bs[q] == rs[q]);
    }
    /* k near SIZE_MAX (a caller's k unchecked): the candidates are capped
     * at the catalogue, no size overflows, the same full list */
    int64_t hi2[37];
    float hs2[37];
    j.k = SIZE_MAX / 4;
    j.idx = hi2;
    j.sc = hs2;
    assert_int_equal(pvg_serve_score(&T, V, (const pvg_serve_job *const *)&jp1, 1), 0);
    assert_int_equal(j.n_out, got);
    for (size_t q = 0; q < got; q++) {
        assert_int_equal(hi2[q], ri[q]);
        assert_true(hs2[q] == rs[q]);
    }
    pvg_i8_items_free(&T);
    free(uq);
    free(hi);
    free(hs);
    free(scr);
    pvg_i8_items_free(&P);
    pvg_i8_items_free(&S);
    free(V);
    free(U);
}

/* The early stop where the bound is tight: a shopper equal to an item A
 * (Cauchy-Schwarz holds with equality for it) and 600 items 2% longer that
 * all score 92-94% of A, placed before A in the sorted order. The
 * threshold passes 0.9 of A's bound long before the scan gets to A, so a
 * stop test 10% too eager loses the best item. */
static void test_serve_stop_tight(void **state)
{
    (void)state;
    size_t n = 1000, f = 32, A = 717;
    float *V = synth_factors(n, f, 3), d[32], r[32];
    double nd = 0;
    for (size_t j = 0; j < f; j++) {
        d[j] = ts_gauss();
        nd += (double)d[j] * d[j];
    }
    for (size_t j = 0; j < f; j++)
        d[j] = (float)(d[j] / sqrt(nd));
    for (size_t i = 0; i < 600; i++) {
        double dot = 0, nr = 0;
        for (size_t j = 0; j < f; j++) {
            r[j] = ts_gauss();
            dot += (double)r[j] * d[j];
        }
        for (size_t j = 0; j < f; j++) {
            r[j] -= (float)dot * d[j];
            nr += (double)r[j] * r[j];
        }
        float c = 0.9f + 0.02f * (float)ts_rand(); /* 1.02 * c: 0.918 .. 0.938 of A */
        for (size_t j = 0; j < f; j++)
            V[i * f + j] = 1.02f * (c * d[j] + sqrtf(1 - c * c) * (float)(r[j] / sqrt(nr)));
    }
    for (size_t j = 0; j < f; j++)
        V[A * f + j] = d[j];
    pvg_i8_items S;
    assert_int_equal(pvg_i8_items_build(V, n, f, &S), 0);
    int64_t idx[10], ri[10];
    float sc[10], rs[10];
    pvg_serve_job j;
    memset(&j, 0, sizeof j);
    j.u = d;
    j.k = 10;
    j.idx = idx;
    j.sc = sc;
    pvg_serve_job *jp = &j;
    assert_int_equal(pvg_serve_score(&S, V, (const pvg_serve_job *const *)&jp, 1), 0);
    size_t want = exact_topk(V, n, f, d, NULL, 0, 10, ri, rs);
    assert_int_equal(ri[0], (int64_t)A);
    assert_int_equal(j.n_out, want);
    for (size_t q = 0; q < want; q++) {
        assert_int_equal(idx[q], ri[q]);
        assert_true(sc[q] == rs[q]);
    }
    pvg_i8_items_free(&S);
    free(V);
}

/* Many threads through pvg_model_recommend at once (the combining queue):
 * each gets its own shopper's list, the one it gets alone. */
typedef struct th_arg {
    const pvg_model *m;
    const unsigned char *keys;
    size_t n_users, k;
    int64_t *want; /* n_users x k, -1 padded */
    int bad;
} th_arg;

static void *th_main(void *p)
{
    th_arg *a = p;
    for (int rep = 0; rep < 3; rep++)
        for (size_t u = 0; u < a->n_users; u++) {
            pvg_scored_item out[10];
            size_t n = 0;
            if (pvg_model_recommend(a->m, a->keys + 16 * u, a->k, 0, out, &n, NULL) != PVG_OK) {
                a->bad++;
                continue;
            }
            for (size_t q = 0; q < a->k; q++)
                if ((q < n ? out[q].item_index : -1) != a->want[u * a->k + q]) a->bad++;
        }
    return NULL;
}

static void test_serve_threads(void **state)
{
    (void)state;
    pvg_dataset *ds = NULL;
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, NULL, &ds, NULL), PVG_OK);
    size_t n_users = 300, n_items = 2000;
    char uid[32], iid[32];
    for (size_t u = 0; u < n_users; u++)
        for (int e = 0; e < 12; e++) {
            size_t it = (size_t)(ts_rand() * ts_rand() * (double)n_items);
            if (e < 6) it = (u * 7 + (size_t)e) % n_items;
            snprintf(uid, sizeof uid, "u%zu", u);
            snprintf(iid, sizeof iid, "i%zu", it);
            pvg_event ev;
            memset(&ev, 0, sizeof ev);
            ev.type = PVG_EVENT_PURCHASE;
            ev.item = iid;
            ev.ts = 1000;
            assert_int_equal(pvg_dataset_add_ext(ds, uid, &ev, NULL), PVG_OK);
        }
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 32;
    p.epochs = 3;
    p.threads = 1;
    pvg_model *m = NULL;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, NULL), PVG_OK);
    size_t nu = pvg_model_n_users(m), k = 10;
    unsigned char *keys = malloc(16 * nu);
    for (size_t u = 0; u < nu; u++) {
        snprintf(uid, sizeof uid, "u%zu", u);
        assert_int_equal(pvg_model_user_key(m, NULL, uid, keys + 16 * u, NULL), PVG_OK);
    }
    int64_t *want = malloc(nu * k * sizeof *want);
    size_t hit = 0, total = 0;
    for (size_t u = 0; u < nu; u++) {
        pvg_scored_item out[10], ref[10];
        size_t n = 0, nr = 0;
        assert_int_equal(pvg_model_recommend(m, keys + 16 * u, k, 0, out, &n, NULL), PVG_OK);
        for (size_t q = 0; q < k; q++)
            want[u * k + q] = q < n ? out[q].item_index : -1;
        /* the reference path (every item scored, f16 or float) agrees */
        m->no_fast_serve = 1;
        assert_int_equal(pvg_model_recommend(m, keys + 16 * u, k, 0, ref, &nr, NULL), PVG_OK);
        m->no_fast_serve = 0;
        assert_int_equal(n, nr);
        for (size_t q = 0; q < n; q++)
            for (size_t r = 0; r < nr; r++)
                hit += out[q].item_index == ref[r].item_index;
        total += nr;
    }
    assert_true((double)hit >= 0.99 * (double)total);
    pthread_t th[8];
    th_arg args[8];
    for (int t = 0; t < 8; t++) {
        args[t] = (th_arg){m, keys, nu, k, want, 0};
        assert_int_equal(pthread_create(&th[t], NULL, th_main, &args[t]), 0);
    }
    for (int t = 0; t < 8; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].bad, 0);
    }
    long long batches, jobs, maxb;
    pvg_serve_stats(m, &batches, &jobs, &maxb);
    assert_true(jobs >= (long long)(nu * 25));
    assert_true(maxb >= 1);
    free(want);
    free(keys);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

/* Exclusion lists long enough that the index filter is nearly all set
 * (most kept indices share a bit with an excluded one) and short ones:
 * the kept set is the naive top-cap of the indices not excluded, through
 * the AVX-512 and portable scans. */
static void test_topc_exclude_many(void **state)
{
    (void)state;
    size_t n = 6000;
    float *s = malloc(n * sizeof *s), *m = malloc(n * sizeof *m);
    uint32_t *ex = malloc(n * sizeof *ex);
    assert_non_null(s);
    assert_non_null(m);
    assert_non_null(ex);
    for (size_t i = 0; i < n; i++)
        s[i] = (float)floor(ts_rand() * 500) / 3.0f;
    size_t lens[] = {0, 1, 3, 40, 900, 5990};
    size_t caps[] = {1, 10, 52, 300};
    for (size_t li = 0; li < 6; li++) {
        /* ascending, every other one from the top scores' range first */
        size_t nex = 0;
        for (size_t i = 0; i < n && nex < lens[li]; i++)
            if (ts_rand() < (double)lens[li] / (double)n * 1.5 || n - i <= lens[li] - nex)
                ex[nex++] = (uint32_t)i;
        memcpy(m, s, n * sizeof *m);
        for (size_t q = 0; q < nex; q++)
            m[ex[q]] = -INFINITY;
        for (size_t ci = 0; ci < 4; ci++) {
            size_t cap = caps[ci];
            int64_t *ri = malloc(cap * sizeof *ri);
            float *rs = malloc(cap * sizeof *rs);
            size_t want = pvg_topk_naive(m, n, cap, ri, rs);
            for (int v = 0; v < 2; v++) {
                int64_t *hi = malloc(pvg_topc_room(cap) * sizeof *hi);
                float *hs = malloc(pvg_topc_room(cap) * sizeof *hs);
                pvg_topc h;
                pvg_topc_init(&h, cap, hi, hs);
                pvg_topc_exclude(&h, ex, nex);
                for (size_t b = 0; b < n; b += 256) {
                    size_t t = n - b < 256 ? n - b : 256;
                    if (v)
                        pvg_topc_scan(&h, s + b, t, (int64_t)b);
                    else
                        pvg_topc_scan_portable(&h, s + b, t, (int64_t)b);
                }
                pvg_topc_finish(&h);
                assert_int_equal(h.n, want);
                float *tmp = malloc(n * sizeof *tmp);
                for (size_t i = 0; i < n; i++)
                    tmp[i] = -INFINITY;
                for (size_t q = 0; q < h.n; q++) {
                    assert_true(m[h.idx[q]] != -INFINITY); /* never an excluded one */
                    tmp[h.idx[q]] = h.sc[q];
                }
                int64_t *si = malloc(cap * sizeof *si);
                float *ss = malloc(cap * sizeof *ss);
                size_t got = pvg_topk_naive(tmp, n, cap, si, ss);
                assert_int_equal(got, want);
                for (size_t q = 0; q < got; q++) {
                    assert_int_equal(si[q], ri[q]);
                    assert_true(ss[q] == rs[q]);
                }
                free(si);
                free(ss);
                free(tmp);
                free(hi);
                free(hs);
            }
            free(ri);
            free(rs);
        }
    }
    free(s);
    free(m);
    free(ex);
}

/* The exact re-rank of a candidate list against pvg_topk_naive over the
 * candidates' exact scores (pvg_matvec_naive): repeated rows (equal exact
 * scores: the lower index first), a NaN row and a -inf score skipped, k
 * below, at and above the candidates (the insertion sort and the qsort of
 * more than 64). */
static void test_rerank_order(void **state)
{
    (void)state;
    size_t n = 400, f = 24;
    float *V = synth_factors(n, f, 5);
    for (size_t r = 30; r < 200; r += 9)
        memcpy(V + r * f, V + 21 * f, f * sizeof *V);
    V[51 * f + 3] = NAN;
    V[53 * f] = -INFINITY;
    float u[24];
    for (size_t j = 0; j < f; j++)
        u[j] = V[21 * f + j];
    float *ex = malloc(n * sizeof *ex), *m = malloc(n * sizeof *m);
    pvg_matvec_naive(V, n, f, u, ex);
    size_t ncand = 150;
    int64_t *cidx = malloc(pvg_topc_room(ncand) * sizeof *cidx);
    float *csc = malloc(pvg_topc_room(ncand) * sizeof *csc);
    /* candidates: every odd index below 300 (the ties among them) */
    for (size_t q = 0; q < ncand; q++)
        cidx[q] = (int64_t)(2 * (ncand - 1 - q) + 1);
    for (size_t i = 0; i < n; i++)
        m[i] = -INFINITY;
    for (size_t q = 0; q < ncand; q++)
        m[cidx[q]] = ex[cidx[q]];
    size_t ks[] = {1, 10, 64, 65, 149, 150, 400};
    for (size_t ki = 0; ki < 7; ki++) {
        size_t k = ks[ki];
        pvg_topc h;
        pvg_topc_init(&h, ncand, cidx, csc);
        h.n = ncand;
        int64_t *ri = malloc(k * sizeof *ri), *gi = malloc(k * sizeof *gi);
        float *rs = malloc(k * sizeof *rs), *gs = malloc(k * sizeof *gs);
        size_t want = pvg_topk_naive(m, n, k, ri, rs);
        pvg_serve_job j = {0};
        j.u = u;
        j.k = k;
        j.idx = gi;
        j.sc = gs;
        void *scr = malloc(pvg_serve_rerank_scratch(ncand));
        pvg_serve_rerank(V, f, &h, &j, scr);
        assert_int_equal(j.n_out, want);
        for (size_t q = 0; q < want; q++) {
            assert_int_equal(gi[q], ri[q]);
            assert_memory_equal(&gs[q], &rs[q], sizeof(float));
        }
        free(scr);
        free(ri);
        free(gi);
        free(rs);
        free(gs);
    }
    free(cidx);
    free(csc);
    free(ex);
    free(m);
    free(V);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_i8_kernels),       cmocka_unit_test(test_topc_scan),
        cmocka_unit_test(test_serve_recall),     cmocka_unit_test(test_serve_nan_item),
        cmocka_unit_test(test_serve_threads),    cmocka_unit_test(test_i8_sorted_build),
        cmocka_unit_test(test_scan_fused),       cmocka_unit_test(test_serve_batches),
        cmocka_unit_test(test_serve_stop_tight), cmocka_unit_test(test_topc_exclude_many),
        cmocka_unit_test(test_rerank_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
