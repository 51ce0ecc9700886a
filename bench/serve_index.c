/*
 * serve_index.c - benchmark of the approximate index for serving factor
 * models (src/model/serve_index.c) against the exact int8 scan
 * (serve_batch.c) on synthetic factors: the index's build time and memory,
 * then for each nprobe the recall@10 against exact float scoring and the
 * time per shopper alone and in batches of 8 and 32, beside the exact
 * scan's. Every shopper has 20 seen items excluded. Timing is the
 * thread's CPU time (the machine may be shared; the JSON has the load).
 *
 * Usage: bench_serve_index [items=1000000] [factors=64] [users=256]
 *                          [kind=clustered|mixed|isotropic] [nlist=0 (default)]
 *                          [nprobe list, e.g. 8,16,32; 0 = the default]
 * The default (nprobe 0) probes each shopper's lists within the index's
 * measured reach (a number of lists that varies per shopper): its runs say
 * by_reach 1. Every run gives the mean lists probed and items scanned per
 * shopper. Prints one JSON object.
 */
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "bench_serve_index: " __VA_ARGS__);                                        \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double unif(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}
static float gauss(void)
{
    double a = unif() + 1e-12, b = unif();
    return (float)(sqrt(-2 * log(a)) * cos(6.283185307179586 * b));
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double loadavg(void)
{
    double l = -1;
    FILE *fp = fopen("/proc/loadavg", "r");
    if (fp) {
        if (fscanf(fp, "%lf", &l) != 1) l = -1;
        fclose(fp);
    }
    return l;
}

#define K 10
#define SEEN 20
#define NCAL 1024

typedef struct world {
    size_t n, f, nu;
    const float *V, *U;
    const uint32_t *seen; /* nu x SEEN */
    int64_t (*truth)[K];
} world;

typedef int (*score_fn)(const void *ix, const float *V, size_t nprobe,
                        const pvg_serve_job *const *jobs, size_t nj);

static int exact_fn(const void *ix, const float *V, size_t nprobe, const pvg_serve_job *const *jobs,
                    size_t nj)
{
    (void)nprobe;
    return pvg_serve_score(ix, V, jobs, nj);
}

static int index_fn(const void *ix, const float *V, size_t nprobe, const pvg_serve_job *const *jobs,
                    size_t nj)
{
    return pvg_ivf_score(ix, V, nprobe, jobs, nj);
}

static void job_of(const world *w, size_t u, pvg_serve_job *j, int64_t *idx, float *sc)
{
    memset(j, 0, sizeof *j);
    j->u = w->U + u * w->f;
    j->excl = w->seen + u * SEEN;
    j->n_excl = SEEN;
    j->k = K;
    j->idx = idx;
    j->sc = sc;
}

/* microseconds per shopper in batches of nb (thread CPU, >= 0.4 s) */
static double time_batches(const world *w, score_fn fn, const void *ix, size_t nprobe, size_t nb)
{
    pvg_serve_job jobs[32], *jp[32];
    int64_t idx[32][K];
    float sc[32][K];
    double t0 = thread_cpu();
    size_t done = 0;
    do {
        for (size_t a0 = 0; a0 + nb <= w->nu; a0 += nb) {
            for (size_t a = 0; a < nb; a++) {
                job_of(w, a0 + a, &jobs[a], idx[a], sc[a]);
                jp[a] = &jobs[a];
            }
            if (fn(ix, w->V, nprobe, (const pvg_serve_job *const *)jp, nb)) DIE("score");
            done += nb;
        }
    } while (thread_cpu() - t0 < 0.4);
    return (thread_cpu() - t0) / (double)done * 1e6;
}

static double recall(const world *w, score_fn fn, const void *ix, size_t nprobe)
{
    size_t hit = 0, total = 0;
    for (size_t u = 0; u < w->nu; u++) {
        pvg_serve_job j, *jp = &j;
        int64_t idx[K];
        float sc[K];
        job_of(w, u, &j, idx, sc);
        if (fn(ix, w->V, nprobe, (const pvg_serve_job *const *)&jp, 1)) DIE("score");
        for (size_t q = 0; q < j.n_out; q++)
            for (size_t r = 0; r < K; r++)
                hit += idx[q] == w->truth[u][r];
        total += K;
    }
    return (double)hit / (double)total;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 1000000;
    size_t f = argc > 2 ? (size_t)atol(argv[2]) : 64;
    size_t nu = argc > 3 ? (size_t)atol(argv[3]) : 256;
    const char *kind = argc > 4 ? argv[4] : "clustered";
    size_t nlist = argc > 5 ? (size_t)atol(argv[5]) : 0;
    const char *probes = argc > 6 ? argv[6] : "0";
    int iso = strcmp(kind, "isotropic") == 0, mixed = strcmp(kind, "mixed") == 0;
    if (n < 1000 || f < 1 || f > 1024 || nu < 32 || (!iso && !mixed && strcmp(kind, "clustered")))
        DIE("usage: bench_serve_index [items>=1000] [factors] [users>=32] "
            "[clustered|mixed|isotropic] [nlist] [nprobe,...]");
    /* U: nu evaluation shoppers, then NCAL others for the calibration */
    float *V = malloc(n * f * sizeof *V), *U = malloc((nu + NCAL) * f * sizeof *U);
    uint32_t *seen = malloc(nu * SEEN * sizeof *seen);
    int64_t(*truth)[K] = malloc(nu * sizeof *truth);
    float *scores = malloc(n * sizeof *scores);
    if (!V || !U || !seen || !truth || !scores) DIE("out of memory");
    /* clustered: bench_serve scoring's factors (64 taste clusters, item
     * norms 0.2..1.7, tight); mixed: the same centres, wide gaussian
     * spread; isotropic: N(0, 1/f) in every coordinate */
    size_t nc = 64;
    float *C = malloc(nc * f * sizeof *C);
    if (!C) DIE("out of memory");
    for (size_t i = 0; i < nc * f; i++)
        C[i] = (float)(unif() - 0.5);
    for (size_t i = 0; i < n + nu + NCAL; i++) {
        float *row = i < n ? V + i * f : U + (i - n) * f;
        if (iso) {
            for (size_t j = 0; j < f; j++)
                row[j] = gauss() / sqrtf((float)f);
            continue;
        }
        size_t c = (size_t)(rnd() % nc);
        if (mixed) {
            /* tests/test_serve_index.c's: gaussian spread about the
             * centre as wide as the centres' own, skewed norms */
            float nm = (float)(0.2 + 1.5 * unif() * unif());
            for (size_t j = 0; j < f; j++)
                row[j] = nm * (1.4f * C[c * f + j] + 0.5f * gauss()) / sqrtf((float)f);
            continue;
        }
        float norm = (float)(0.2 + 1.5 * unif());
        for (size_t j = 0; j < f; j++)
            row[j] = norm * (C[c * f + j] + 0.5f * (float)(unif() - 0.5));
    }
    free(C);
    for (size_t i = 0; i < nu * SEEN; i++)
        seen[i] = (uint32_t)(rnd() % n);
    /* exact top-10: float scores, the best 64 re-scored in double */
    double t_truth = thread_cpu();
    for (size_t u = 0; u < nu; u++) {
        pvg_matvec(V, n, f, U + u * f, scores);
        for (size_t q = 0; q < SEEN; q++)
            scores[seen[u * SEEN + q]] = -INFINITY;
        int64_t ci[64];
        float cs[64];
        size_t got = pvg_topk(scores, n, 64, ci, cs);
        for (size_t q = 0; q < got; q++) {
            double s = 0;
            for (size_t j = 0; j < f; j++)
                s += (double)V[(size_t)ci[q] * f + j] * U[u * f + j];
            cs[q] = (float)s;
        }
        /* the 64 re-scored against each other */
        float tmp[64];
        int64_t ti[64];
        size_t m = pvg_topk(cs, got, K, ti, tmp);
        for (size_t q = 0; q < K; q++)
            truth[u][q] = q < m ? ci[ti[q]] : -1;
    }
    t_truth = thread_cpu() - t_truth;
    world w = {n, f, nu, V, U, seen, truth};

    pvg_i8_items Q;
    if (pvg_i8_items_build(V, n, f, &Q)) DIE("out of memory");
    size_t q_bytes = Q.n_pad * Q.f4 * 4 + Q.n_pad * 8;
    double ex1 = time_batches(&w, exact_fn, &Q, 0, 1);
    double ex8 = time_batches(&w, exact_fn, &Q, 0, 8);
    double ex32 = time_batches(&w, exact_fn, &Q, 0, 32);
    double exr = recall(&w, exact_fn, &Q, 0);
    pvg_i8_items_free(&Q);

    pvg_ivf ix;
    if (pvg_ivf_build(V, n, f, nlist, U + nu * f, NCAL, NULL, NULL, &ix)) DIE("out of memory");
    printf(
        "{\"bench\":\"serve_index\",\"items\":%zu,\"factors\":%zu,\"kind\":\"%s\","
        "\"users\":%zu,\"k\":%d,\"seen_excluded\":%d,\"loadavg\":%.2f,\"nproc\":%ld,"
        "\"vnni\":%d,\"timing\":\"thread_cpu\",\"truth_seconds\":%.1f,"
        "\"exact_int8\":{\"recall_at_10\":%.4f,\"us_per_user\":{\"batch1\":%.1f,"
        "\"batch8\":%.1f,\"batch32\":%.1f},\"bytes\":%zu},"
        "\"index\":{\"nlist\":%zu,\"build_seconds\":%.2f,\"build_cpu_seconds\":%.2f,\"bytes\":%zu,"
        "\"default_nprobe\":%zu,\"reach\":%.4f,\"runs\":[",
        n, f, kind, nu, K, SEEN, loadavg(), sysconf(_SC_NPROCESSORS_ONLN),
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"), t_truth, exr,
        ex1, ex8, ex32, q_bytes, ix.nlist, ix.build_seconds, ix.build_cpu_seconds,
        pvg_ivf_bytes(&ix), pvg_ivf_default_nprobe(&ix), ix.reach);
    const char *p = probes;
    for (int first = 1; *p; first = 0) {
        char *end;
        size_t np = (size_t)strtoul(p, &end, 10);
        if (end == p) DIE("bad nprobe list: %s", probes);
        /* 0: the default probing (by the measured reach, lists varying
         * per shopper) */
        size_t eff = np < ix.nlist ? np : ix.nlist;
        double lists = 0, items = 0;
        for (size_t u = 0; u < nu; u++) {
            size_t it;
            lists += (double)pvg_ivf_probes(&ix, U + u * f, eff, &it);
            items += (double)it;
        }
        double r = recall(&w, index_fn, &ix, eff);
        double t1 = time_batches(&w, index_fn, &ix, eff, 1);
        double t8 = time_batches(&w, index_fn, &ix, eff, 8);
        double t32 = time_batches(&w, index_fn, &ix, eff, 32);
        printf("%s{\"nprobe\":%zu,\"by_reach\":%d,\"lists_probed\":%.1f,\"items_scanned\":%.0f,"
               "\"recall_at_10\":%.4f,\"us_per_user\":{\"batch1\":%.1f,"
               "\"batch8\":%.1f,\"batch32\":%.1f},\"speedup_vs_exact\":{\"batch1\":%.2f,"
               "\"batch32\":%.2f}}",
               first ? "" : ",", eff ? eff : pvg_ivf_default_nprobe(&ix), eff == 0,
               lists / (double)nu, items / (double)nu, r, t1, t8, t32, ex1 / t1, ex32 / t32);
        fflush(stdout);
        p = *end == ',' ? end + 1 : end;
    }
    printf("]}}\n");
    pvg_ivf_free(&ix);
    free(V);
    free(U);
    free(seen);
    free(truth);
    free(scores);
    return 0;
}
