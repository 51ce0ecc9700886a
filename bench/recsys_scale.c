/*
 * recsys_scale.c - scale benchmark of the recommender: loads a tsv (from
 * bench_gen_synthetic), trains iALS at the given factor counts and reports
 * seconds per epoch, peak memory, model file size and load time, and
 * top-10 serving latency per user (p50, p99) as JSON.
 *
 * Usage: bench_recsys_scale DATA.tsv [threads=2] [epochs=3] [factors=64,256]
 *                           [latency_users=20000]
 * Latency is measured at the first factor count, single-threaded, over
 * random known users, after saving and re-loading the model file (mmap).
 * The machine may be shared: the JSON records the load average.
 */
#include "model/model_internal.h"

#include <privguide/model.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA.tsv [threads] [epochs] [factors,...] [latency_users]\n",
                argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    int epochs = argc > 3 ? atoi(argv[3]) : 3;
    const char *fl = argc > 4 ? argv[4] : "64,256";
    int lat_users = argc > 5 ? atoi(argv[5]) : 20000;
    int factors[8], nf = 0;
    for (const char *p = fl; *p && nf < 8;) {
        factors[nf++] = atoi(p);
        const char *c = strchr(p, ',');
        if (!c) break;
        p = c + 1;
    }
    pvg_error err;
    pvg_dataset *ds;
    double t0 = pvg_now_seconds();
    pvg_status st = pvg_dataset_load_file(argv[1], PVG_FORMAT_TSV, NULL, NULL, &ds, NULL, &err);
    if (st != PVG_OK) {
        fprintf(stderr, "load: %s\n", err.text);
        return 1;
    }
    double load_s = pvg_now_seconds() - t0;
    t0 = pvg_now_seconds();
    pvg_csr R;
    if (pvg_csr_build(ds->n_users, ds->n_items, ds->n_ev, ds->ev_user, ds->ev_item, ds->ev_w, NULL,
                      &R) != PVG_OK)
        return 1;
    double csr_s = pvg_now_seconds() - t0;
    printf("{\n  \"data\": \"%s\", \"users\": %zu, \"items\": %zu, \"events\": %zu, "
           "\"interactions\": %zu,\n  \"threads\": %d, \"epochs\": %d, \"load_seconds\": %.2f, "
           "\"aggregate_seconds\": %.2f, \"loadavg_start\": %.2f,\n  \"ials\": [",
           argv[1], ds->n_users, ds->n_items, ds->n_ev, R.nnz, threads, epochs, load_s, csr_s,
           loadavg());
    fflush(stdout);
    char path[256];
    snprintf(path, sizeof path, "/tmp/pvg_bench_scale_%d.model", (int)getpid());
    for (int q = 0; q < nf; q++) {
        pvg_train_params p;
        pvg_train_params_default(PVG_MODEL_IALS, &p);
        p.factors = factors[q];
        p.epochs = epochs;
        p.threads = threads;
        pvg_train_stats ts;
        pvg_model *m;
        extern pvg_status pvg_model_train_matrix(const pvg_dataset *, const pvg_csr *,
                                                 const pvg_train_params *, pvg_model **,
                                                 pvg_train_stats *, pvg_error *);
        st = pvg_model_train_matrix(ds, &R, &p, &m, &ts, &err);
        if (st != PVG_OK) {
            fprintf(stderr, "train: %s\n", err.text);
            return 1;
        }
        double best = 1e30, sum = 0;
        printf("%s\n    {\"factors\": %d, \"epoch_seconds\": [", q ? "," : "", factors[q]);
        for (int e = 0; e < ts.n_epochs; e++) {
            printf("%s%.3f", e ? ", " : "", ts.epoch_seconds[e]);
            sum += ts.epoch_seconds[e];
            if (ts.epoch_seconds[e] < best) best = ts.epoch_seconds[e];
        }
        printf("], \"epoch_cpu_seconds\": [");
        double csum = 0;
        for (int e = 0; e < ts.n_epochs; e++) {
            printf("%s%.3f", e ? ", " : "", ts.epoch_cpu_seconds[e]);
            csum += ts.epoch_cpu_seconds[e];
        }
        printf("], \"mean_epoch_cpu_seconds\": %.3f, \"uncontended_epoch_estimate_seconds\": %.3f",
               csum / ts.n_epochs, csum / ts.n_epochs / threads);
        printf(", \"mean_epoch_seconds\": %.3f, \"best_epoch_seconds\": %.3f, "
               "\"train_seconds\": %.2f, \"final_loss\": %.6g, \"peak_rss_mb\": %.0f, "
               "\"loadavg\": %.2f",
               sum / ts.n_epochs, best, ts.train_seconds, ts.final_loss, pvg_peak_rss_kb() / 1024.0,
               loadavg());
        if (q == 0) {
            t0 = pvg_now_seconds();
            if (pvg_model_save(m, path, &err) != PVG_OK) {
                fprintf(stderr, "save: %s\n", err.text);
                return 1;
            }
            double save_s = pvg_now_seconds() - t0;
            pvg_model_free(m);
            t0 = pvg_now_seconds();
            if (pvg_model_load(path, &m, &err) != PVG_OK) {
                fprintf(stderr, "load: %s\n", err.text);
                return 1;
            }
            double mload_s = pvg_now_seconds() - t0;
            long long fsize = (long long)m->map_len;
            /* latency of pvg_model_recommend, k = 10 */
            double *lat = malloc((size_t)lat_users * sizeof *lat);
            double *clat = malloc((size_t)lat_users * sizeof *clat);
            pvg_scored_item out[10];
            uint64_t x = 12345;
            for (int i = 0; i < lat_users + 200; i++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t u = (size_t)((x >> 20) % ds->n_users);
                size_t n;
                double a = pvg_now_seconds(), ca = thread_cpu();
                st = pvg_model_recommend(m, ds->user_keys + 16 * u, 10, 0, out, &n, &err);
                double b = pvg_now_seconds(), cb = thread_cpu();
                if (st != PVG_OK || n != 10) {
                    fprintf(stderr, "recommend: %s\n", err.text);
                    return 1;
                }
                if (i >= 200) { /* after warm-up */
                    lat[i - 200] = (b - a) * 1e3;
                    clat[i - 200] = (cb - ca) * 1e3;
                }
            }
            qsort(lat, (size_t)lat_users, sizeof *lat, cmp_double);
            qsort(clat, (size_t)lat_users, sizeof *clat, cmp_double);
            printf(", \"model_file_mb\": %.1f, \"save_seconds\": %.2f, \"load_seconds\": %.2f, "
                   "\"top10_latency_ms\": {\"users\": %d, \"p50\": %.3f, \"p90\": %.3f, "
                   "\"p99\": %.3f, \"max\": %.3f}",
                   fsize / 1048576.0, save_s, mload_s, lat_users, lat[lat_users / 2],
                   lat[(size_t)(lat_users * 0.9)], lat[(size_t)(lat_users * 0.99)],
                   lat[lat_users - 1]);
            printf(", \"top10_cpu_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f}",
                   clat[lat_users / 2], clat[(size_t)(lat_users * 0.9)],
                   clat[(size_t)(lat_users * 0.99)]);
            free(lat);
            free(clat);
            unlink(path);
        }
        printf("}");
        fflush(stdout);
        pvg_model_free(m);
    }
    printf("\n  ],\n  \"peak_rss_mb\": %.0f, \"loadavg_end\": %.2f\n}\n",
           pvg_peak_rss_kb() / 1024.0, loadavg());
    pvg_csr_free(&R);
    pvg_dataset_free(ds);
    return 0;
}
