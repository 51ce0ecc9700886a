/*
 * bench/fl_prior_labels.c - the cost of the federated item prior from
 * category labels (pvg_fl_item_prior_from_labels) on synthetic catalogues
 * of N items, in two shapes:
 *   "flat": every item carries one label that covers the whole catalogue
 *           ("All") and one of its own ("u<i>"), the worst case of the
 *           algorithm (every pair of items shares a label);
 *   "tree": a shop's category lines, "Dept<d>|Cat<d>.<c>|Sub<d>.<c>.<s>"
 *           with 10 departments, 10 categories each and 10 subcategories
 *           each (a department label covers a tenth of the catalogue);
 *   "text": for comparison, the "descriptions" source's function
 *           (pvg_fl_item_prior_from_titles) on texts of 64 words, each
 *           word on a quarter of the items (the most its frequent-term cut
 *           keeps), 16 N^2 pair visits.
 * Prints JSON: items, shape, the sum over labels of (items carrying it)^2
 * (the pair visits the algorithm does), the build's wall seconds, the
 * linked items, and the machine's load average.
 *
 * usage: bench_fl_prior_labels [items (default 20000) [flat|tree|text]]
 */
#include <privguide/fl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    const char *shape = argc > 2 ? argv[2] : "flat";
    int flat = strcmp(shape, "flat") == 0, text = strcmp(shape, "text") == 0;
    if (n < 2 || n > 10000000 || (!flat && !text && strcmp(shape, "tree") != 0)) {
        fprintf(stderr, "usage: bench_fl_prior_labels [items >= 2 [flat|tree|text]]\n");
        return 2;
    }
    if (pvg_init() != PVG_OK) return 1;
    char **labels = malloc((size_t)n * sizeof *labels);
    if (!labels) return 1;
    for (long i = 0; i < n; i++) {
        char b[64 * 12];
        if (text) {
            size_t len = 0;
            for (int w = 0; w < 64; w++)
                len +=
                    (size_t)snprintf(b + len, sizeof b - len, "%sw%dq%ld", w ? " " : "", w, i % 4);
        } else if (flat)
            snprintf(b, sizeof b, "All|u%ld", i);
        else {
            long d = i % 10, c = (i / 10) % 10, s = (i / 100) % 10;
            snprintf(b, sizeof b, "Dept%ld|Cat%ld.%ld|Sub%ld.%ld.%ld", d, d, c, d, c, s);
        }
        if (!(labels[i] = strdup(b))) return 1;
    }
    /* the pair visits: flat, n^2 (All) + n (own labels); tree, per level */
    double pairs = text   ? 16.0 * (double)n * (double)n
                   : flat ? (double)n * (double)n + (double)n
                          : 10.0 * ((double)n / 10) * ((double)n / 10) +
                                100.0 * ((double)n / 100) * ((double)n / 100) +
                                1000.0 * ((double)n / 1000) * ((double)n / 1000);
    pvg_fl_item_prior P;
    size_t linked = 0;
    pvg_error err;
    pvg_error_clear(&err);
    double t0 = now_s();
    pvg_status st = text ? pvg_fl_item_prior_from_titles((const char *const *)labels, (uint32_t)n,
                                                         0, &P, &linked, &err)
                         : pvg_fl_item_prior_from_labels((const char *const *)labels, (uint32_t)n,
                                                         0, &P, &linked, &err);
    double secs = now_s() - t0;
    double la[3] = {-1, -1, -1};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = la[1] = la[2] = -1;
        fclose(f);
    }
    if (st != PVG_OK) {
        fprintf(stderr, "bench_fl_prior_labels: %s\n", err.text);
    }
    printf("{\"bench\":\"fl_prior_labels\",\"items\":%ld,\"shape\":\"%s\",\"pair_visits\":%.0f,"
           "\"status\":\"%s\",\"seconds\":%.3f,\"linked\":%zu,\"loadavg\":[%.2f,%.2f,%.2f]}\n",
           n, shape, pairs, st == PVG_OK ? "ok" : "refused", secs, linked, la[0], la[1], la[2]);
    pvg_fl_item_prior_free(&P);
    for (long i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
    return st == PVG_OK ? 0 : 1;
}
