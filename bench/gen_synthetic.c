/*
 * gen_synthetic.c - writes synthetic implicit-feedback data with power-law
 * user activity and item popularity as tsv (user<TAB>item<TAB>weight<TAB>ts)
 * for the scale benchmarks.
 *
 * Usage: bench_gen_synthetic OUT.tsv [users=1000000] [items=100000]
 *                            [interactions=20000000] [seed=1]
 * Items are drawn from a Zipf-like law (p_i ~ (i+10)^-0.9) mixed with a
 * per-user "taste" cluster (items near the user's home segment), so that
 * there is structure for the factor models to find; user activity is
 * proportional to (u+50)^-0.7. Deterministic under the seed. Prints a JSON
 * summary to stdout.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t s_state;
static uint64_t next_u64(void)
{
    uint64_t z = (s_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double next_double(void)
{
    return (next_u64() >> 11) * (1.0 / 9007199254740992.0);
}

/* inverse-CDF sampling over a cumulative table */
static size_t draw(const double *cdf, size_t n)
{
    double x = next_double() * cdf[n - 1];
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cdf[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUT.tsv [users] [items] [interactions] [seed]\n", argv[0]);
        return 2;
    }
    size_t nu = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    size_t ni = argc > 3 ? strtoull(argv[3], NULL, 10) : 100000;
    size_t nn = argc > 4 ? strtoull(argv[4], NULL, 10) : 20000000;
    s_state = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
    if (nu < 1 || ni < 10 || nn < 1) {
        fprintf(stderr, "gen_synthetic: users >= 1, items >= 10, interactions >= 1\n");
        return 2;
    }
    double *ucdf = malloc(nu * sizeof *ucdf), *icdf = malloc(ni * sizeof *icdf);
    uint32_t *iperm = malloc(ni * sizeof *iperm);
    if (!ucdf || !icdf || !iperm) return 1;
    double acc = 0;
    for (size_t u = 0; u < nu; u++)
        ucdf[u] = (acc += pow((double)u + 50, -0.7));
    acc = 0;
    for (size_t i = 0; i < ni; i++)
        icdf[i] = (acc += pow((double)i + 10, -0.9));
    /* popularity rank -> item id, shuffled so ids carry no rank */
    for (size_t i = 0; i < ni; i++)
        iperm[i] = (uint32_t)i;
    for (size_t i = ni - 1; i > 0; i--) {
        size_t j = next_u64() % (i + 1);
        uint32_t t = iperm[i];
        iperm[i] = iperm[j];
        iperm[j] = t;
    }
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    size_t segments = 200, seg_len = ni / segments ? ni / segments : 1;
    for (size_t n = 0; n < nn; n++) {
        size_t u = draw(ucdf, nu);
        size_t rank;
        if (next_double() < 0.5) {
            rank = draw(icdf, ni); /* global popularity */
        } else {
            /* the user's taste segment, hashed from the user id */
            uint64_t h = (u + 1) * 0x9e3779b97f4a7c15ULL;
            size_t seg = (size_t)((h >> 32) % segments);
            size_t off = draw(icdf, seg_len); /* popular within the segment */
            rank = (seg * seg_len + off) % ni;
        }
        int w = 1 + (next_double() < 0.2);
        long ts = 1500000000L + (long)(next_u64() % 31536000ULL);
        fprintf(f, "u%zu\ti%u\t%d\t%ld\n", u, iperm[rank], w, ts);
    }
    if (fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    printf("{\"out\": \"%s\", \"users\": %zu, \"items\": %zu, \"interactions\": %zu}\n", argv[1],
           nu, ni, nn);
    free(ucdf);
    free(icdf);
    free(iperm);
    return 0;
}
