/*
 * timeseries.c - benchmark of what the dashboard's time series add to the
 * request path: CPU time per pvg_srv_ts_observe (both rings: a coarse clock
 * read, a slot check, four relaxed atomic increments each), beside the
 * existing per-route pvg_srv_metrics_observe, from one thread and from two
 * threads at once (the same slot: the contended case). CPU time, not wall
 * time, so a loaded shared machine distorts it less. Prints one JSON object.
 *
 * Usage: bench_timeseries [calls_per_thread=5000000]
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct job {
    pvg_srv_timeseries *ts;
    pvg_srv_metrics *m;
    long n;
} job;

static void *run_ts(void *arg)
{
    job *j = arg;
    for (long i = 0; i < j->n; i++)
        pvg_srv_ts_observe(j->ts, i % 50 ? 200 : 404, 1e-4 * (double)(i % 97));
    return NULL;
}

static void *run_metrics(void *arg)
{
    job *j = arg;
    for (long i = 0; i < j->n; i++)
        pvg_srv_metrics_observe(j->m, 3, i % 50 ? 200 : 404, 1e-4 * (double)(i % 97));
    return NULL;
}

/* CPU ns per call with `threads` threads running fn. */
static double per_call(void *(*fn)(void *), job *j, int threads)
{
    pthread_t t[2];
    double t0 = cpu_s();
    for (int k = 0; k < threads; k++)
        if (pthread_create(&t[k], NULL, fn, j) != 0) return -1;
    for (int k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    return (cpu_s() - t0) / ((double)j->n * threads) * 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    if (n <= 0) n = 5000000;
    pvg_srv_timeseries ts;
    pvg_srv_metrics m;
    if (pvg_srv_ts_init(&ts) || pvg_srv_metrics_init(&m, 10)) {
        fprintf(stderr, "bench_timeseries: out of memory\n");
        return 1;
    }
    job j = {&ts, &m, n};
    double ts1 = per_call(run_ts, &j, 1), m1 = per_call(run_metrics, &j, 1);
    double ts2 = per_call(run_ts, &j, 2), m2 = per_call(run_metrics, &j, 2);
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = -1;
        fclose(f);
    }
    printf("{\"bench\":\"timeseries\",\"calls_per_thread\":%ld,\"loadavg\":%.2f,"
           "\"cpu_ns_per_request\":{\"timeseries_1_thread\":%.1f,\"metrics_1_thread\":%.1f,"
           "\"timeseries_2_threads\":%.1f,\"metrics_2_threads\":%.1f}}\n",
           n, load, ts1, m1, ts2, m2);
    pvg_srv_ts_free(&ts);
    pvg_srv_metrics_free(&m);
    return 0;
}
