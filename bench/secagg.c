/*
 * bench/secagg.c - secure aggregation at scale: one full session with
 * n = 1,000 clients, d = 100,000, k = 2 ceil(log2 n) = 20 neighbours,
 * threshold 11, 10% dropout spread over every round, 2 server threads.
 * Prints JSON: server seconds, client seconds (median, max), the estimated
 * round time (server + slowest client: clients run in parallel in a real
 * deployment, here one after another), bytes up/down per client against
 * the plain quantised vector, mask-expansion throughput of the fast kernel
 * and of its reference, and the machine's load average (the machine is
 * shared, so timings carry contention). The session's word width (16, 32 or
 * 64 bits) and mask PRG (ChaCha with 20, 12 or 8 rounds) are the sixth and
 * seventh arguments. "mask_modes" times the client's whole masking step
 * (sa_mask_accumulate: the self mask and k pairwise masks in one pass over
 * a d-word vector) for every width and PRG: seconds per client and
 * keystream GB/s.
 *
 * usage: bench_secagg [n [d [k [t [dropout [bits [rounds]]]]]]]
 */
#include "crypto/secagg_internal.h"

#include <privguide/rng.h>
#include <privguide/secagg.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* bytes per second of vec += keystream, d words of 32 bits */
static double mask_rate(int ref, size_t d)
{
    uint32_t *v = calloc(d, sizeof *v);
    uint8_t seed[32] = {1, 2, 3};
    if (!v) return 0;
    int reps = ref ? 20 : 50;
    double t0 = now();
    for (int r = 0; r < reps; r++) {
        seed[0] = (uint8_t)r;
        if (ref)
            pvg_secagg_mask_add_ref(v, 0, d, 32, seed, 1);
        else
            pvg_secagg_mask_add(v, 0, d, 32, seed, 1);
    }
    double dt = now() - t0;
    volatile uint32_t sink = v[d / 2];
    (void)sink;
    free(v);
    return (double)reps * (double)d * 4 / dt;
}

/* seconds of one client's masking step: m seeds over d words of `bits` */
static double mask_step_seconds(size_t d, unsigned bits, unsigned rounds, size_t m)
{
    size_t w = bits / 8;
    uint8_t *v = calloc(d, w), *seeds = malloc(32 * m);
    signed char *signs = malloc(m);
    if (!v || !seeds || !signs) {
        free(v);
        free(seeds);
        free(signs);
        return -1;
    }
    for (size_t i = 0; i < 32 * m; i++)
        seeds[i] = (uint8_t)(i * 29 + 1);
    for (size_t i = 0; i < m; i++)
        signs[i] = i & 1 ? -1 : 1;
    double best = 1e30;
    for (int r = 0; r < 7; r++) {
        seeds[0] = (uint8_t)r;
        double t0 = now();
        sa_mask_accumulate(v, 0, d, bits, rounds, seeds, signs, m);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    volatile uint8_t sink = v[d / 2];
    (void)sink;
    free(v);
    free(seeds);
    free(signs);
    return best;
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 1000;
    uint32_t d = argc > 2 ? (uint32_t)atoi(argv[2]) : 100000;
    uint32_t k = argc > 3 ? (uint32_t)atoi(argv[3]) : 2 * (uint32_t)ceil(log2((double)n));
    uint32_t t = argc > 4 ? (uint32_t)atoi(argv[4]) : k / 2 + 1;
    double drop = argc > 5 ? atof(argv[5]) : 0.10;
    unsigned bits = argc > 6 ? (unsigned)atoi(argv[6]) : 32;
    unsigned rounds = argc > 7 ? (unsigned)atoi(argv[7]) : 20;
    if (k & 1) k++;
    if (k >= n - 1) k = n - 1;
    if (pvg_init() != PVG_OK) return 1;
    double fast = mask_rate(0, d), ref = mask_rate(1, d);
    /* reproducible benchmark: the deterministic TEST generator */
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(2020);
    pvg_secagg_sim_options o = {
        .params = {.n = n, .k = k, .t = t, .d = d, .bits = bits, .mask_rounds = rounds},
        .dropout = drop,
        .rng = rng,
        .server_threads = 2,
        .allow_insecure_rng = 1};
    pvg_secagg_sim_result r;
    pvg_error err;
    double t0 = now();
    pvg_status st = pvg_secagg_simulate(&o, &r, &err);
    double wall = now() - t0;
    pvg_rng_free(rng);
    if (st != PVG_OK) {
        fprintf(stderr, "bench_secagg: %s\n", err.text);
        return 1;
    }
    double load[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    /* the client's masking step at this d and k, every mode */
    char modes[1024];
    size_t at = 0;
    modes[0] = 0;
    for (unsigned b = 16; b <= 32; b *= 2)
        for (unsigned rr = 8; rr <= 20; rr += rr == 8 ? 4 : 8) {
            double sec = mask_step_seconds(d, b, rr, (size_t)k + 1);
            at += (size_t)snprintf(modes + at, sizeof modes - at,
                                   "%s{\"bits\":%u,\"rounds\":%u,\"seconds\":%.4f,"
                                   "\"keystream_gb_per_s\":%.3f}",
                                   at ? "," : "", b, rr, sec,
                                   sec > 0 ? (double)d * (b / 8) * (k + 1) / sec / 1e9 : 0);
        }
    printf("{\"bench\":\"secagg\",\"clients\":%u,\"dim\":%u,\"neighbours\":%u,\"threshold\":%u,"
           "\"dropout\":%.2f,\"bits\":%u,\"mask_rounds\":%u,\"server_threads\":2,\"exact\":%s,"
           "\"survivors\":%zu,"
           "\"dropped_in_round\":[%zu,%zu,%zu,%zu],"
           "\"server_seconds\":%.3f,\"client_seconds_p50\":%.4f,\"client_seconds_max\":%.4f,"
           "\"round_seconds_estimate\":%.3f,\"simulation_wall_seconds\":%.2f,"
           "\"bytes_up_per_client\":%.0f,\"bytes_down_per_client\":%.0f,"
           "\"plain_vector_bytes\":%.0f,\"upload_ratio\":%.4f,"
           "\"mask_expand_gb_per_s\":%.3f,\"mask_expand_ref_gb_per_s\":%.3f,"
           "\"mask_modes\":[%s],\"loadavg_1m\":%.2f}\n",
           n, d, k, t, drop, bits, rounds, r.exact ? "true" : "false", r.n_survivors,
           r.dropped_in_round[0], r.dropped_in_round[1], r.dropped_in_round[2],
           r.dropped_in_round[3], r.server_seconds, r.client_seconds_p50, r.client_seconds_max,
           r.server_seconds + r.client_seconds_max, wall, r.bytes_up_per_client,
           r.bytes_down_per_client, r.plain_vector_bytes,
           r.bytes_up_per_client / r.plain_vector_bytes, fast / 1e9, ref / 1e9, modes, load[0]);
    int ok = r.exact;
    pvg_secagg_sim_result_clear(&r);
    return ok ? 0 : 1;
}
