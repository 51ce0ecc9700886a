/*
 * dp_popular.c - utility of the DP popular list (pvg_dp_popular_release)
 * and of DP similar items (pvg_dp_cooc_release) on the full UCI Online
 * Retail. Prints one JSON object.
 *
 * Usage: bench_dp_popular [SHARED_DATA_DIR] [--runs N] [--sweep] [--cooc]
 *   SHARED_DATA_DIR holds online-retail/online-retail.csv.gz; default
 *   $PVG_SHARED_DIR/data, then ../shared/data, ../../shared/data.
 *
 * Data: read with the library's reader (pvg_reader_open). A shopper is a
 * CustomerID; a purchase is a non-cancelled invoice line. The public
 * candidate domain is the catalog: every StockCode that comes with a
 * description, in order of first appearance.
 *
 * Popular list: the true top 20 items by number of distinct buyers
 * (unbounded, exact) against the DP top 20 (default mechanism and m,
 * delta 1e-7; m is "none" for the exponential mechanisms), for epsilon in {0.1, 0.5, 1, 2}, N runs
 * each (default 20): median, min and max overlap. --sweep adds the comparison that chose the
 * default: Gaussian, Laplace and the exponential-mechanism peeling baseline
 * for m in {1, 2, 4, ..., 256}. Every run uses a fresh random subset
 * (contribution bounding) and fresh noise from the secure generator.
 *
 * Similar items (--cooc): the non-DP reference is item-kNN cosine on the
 * exact buyer sets (cooc / sqrt(pop_i pop_j)) over the whole catalog; the
 * DP release works on the top-N items of a DP popular release (Gaussian,
 * m = 64: one noisy vector suits a top-N in the hundreds better than N
 * rounds of peeling; epsilon split: 1/4 to the domain, 3/4 to the pairs,
 * delta 1e-7 halved; the total is reported). Metric: overlap@10 of each domain item's DP neighbours
 * with its true 10 nearest neighbours, averaged over the 200 most popular items, median over the
 * runs.
 */
#include <privguide/import.h>
#include <privguide/release.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- a string -> index map ------------------------------------------------ */

typedef struct strmap {
    char **keys;
    int *vals;
    size_t cap, n;
} strmap;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int map_get(strmap *m, const char *k, int add)
{
    if (add && 2 * (m->n + 1) > m->cap) {
        strmap g = {0};
        g.cap = m->cap ? 2 * m->cap : 1024;
        g.keys = calloc(g.cap, sizeof *g.keys);
        g.vals = calloc(g.cap, sizeof *g.vals);
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = fnv(m->keys[i]) & (g.cap - 1);
                while (g.keys[j])
                    j = (j + 1) & (g.cap - 1);
                g.keys[j] = m->keys[i];
                g.vals[j] = m->vals[i];
            }
        g.n = m->n;
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    if (!m->cap) return -1;
    size_t j = fnv(k) & (m->cap - 1);
    while (m->keys[j]) {
        if (strcmp(m->keys[j], k) == 0) return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    if (!add) return -1;
    m->keys[j] = strdup(k);
    m->vals[j] = (int)m->n++;
    return m->vals[j];
}

/* ---- the data ------------------------------------------------------------- */

typedef struct data {
    strmap items, users;
    char *has_desc; /* per item index: seen with a description */
    size_t has_cap;
    int *pu, *pi; /* purchase (user, item) pairs */
    size_t np, pcap;
    /* CSR of distinct purchased items per user */
    size_t n_users;
    size_t *off;
    int64_t *it;
    /* the catalog = candidates: item indices with a description */
    int64_t *cand;
    size_t n_cand;
    long long *buyers; /* exact distinct buyers per item index */
} data;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int load(const char *path, data *d)
{
    pvg_reader *r;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_reader_open(path, PVG_FORMAT_ONLINE_RETAIL, NULL, &r, &err) != PVG_OK) {
        fprintf(stderr, "bench_dp_popular: %s\n", err.text);
        return -1;
    }
    pvg_record rec;
    int rc;
    while ((rc = pvg_reader_next(r, &rec, &err)) == 1) {
        if (!rec.has_item || !rec.item.ext_id) continue;
        int ii = map_get(&d->items, rec.item.ext_id, 1);
        if ((size_t)ii >= d->has_cap) {
            size_t nc = d->has_cap ? 2 * d->has_cap : 4096;
            d->has_desc = realloc(d->has_desc, nc);
            memset(d->has_desc + d->has_cap, 0, nc - d->has_cap);
            d->has_cap = nc;
        }
        if (rec.item.title && *rec.item.title) d->has_desc[ii] = 1;
        if (rec.kind != PVG_RECORD_EVENT || rec.event.type != PVG_EVENT_PURCHASE) continue;
        int u = map_get(&d->users, rec.user, 1);
        if (d->np == d->pcap) {
            d->pcap = d->pcap ? 2 * d->pcap : 1 << 16;
            d->pu = realloc(d->pu, d->pcap * sizeof *d->pu);
            d->pi = realloc(d->pi, d->pcap * sizeof *d->pi);
        }
        d->pu[d->np] = u;
        d->pi[d->np++] = ii;
    }
    pvg_reader_free(r);
    if (rc < 0) {
        fprintf(stderr, "bench_dp_popular: %s\n", err.text);
        return -1;
    }
    d->n_users = d->users.n;
    d->off = calloc(d->n_users + 1, sizeof *d->off);
    for (size_t i = 0; i < d->np; i++)
        d->off[d->pu[i] + 1]++;
    for (size_t u = 0; u < d->n_users; u++)
        d->off[u + 1] += d->off[u];
    size_t *fill = calloc(d->n_users, sizeof *fill);
    int64_t *tmp = malloc(d->np * sizeof *tmp);
    for (size_t i = 0; i < d->np; i++)
        tmp[d->off[d->pu[i]] + fill[d->pu[i]]++] = d->pi[i];
    /* distinct per user, compacted */
    d->it = malloc(d->np * sizeof *d->it);
    size_t w = 0;
    for (size_t u = 0; u < d->n_users; u++) {
        int64_t *a = tmp + d->off[u];
        size_t n = d->off[u + 1] - d->off[u];
        qsort(a, n, sizeof *a, cmp_i64);
        size_t start = w;
        for (size_t j = 0; j < n; j++)
            if (j == 0 || a[j] != a[j - 1]) d->it[w++] = a[j];
        d->off[u] = start;
    }
    d->off[d->n_users] = w;
    free(fill);
    free(tmp);
    d->buyers = calloc(d->items.n, sizeof *d->buyers);
    for (size_t i = 0; i < w; i++)
        d->buyers[d->it[i]]++;
    d->cand = malloc(d->items.n * sizeof *d->cand);
    for (size_t i = 0; i < d->items.n; i++)
        if (d->has_desc[i]) d->cand[d->n_cand++] = (int64_t)i;
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

static const long long *g_score;
static int cmp_by_score(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    if (g_score[x] != g_score[y]) return g_score[x] > g_score[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* the true top k candidates by exact distinct buyers */
static void true_top(const data *d, size_t k, int64_t *out)
{
    int64_t *c = malloc(d->n_cand * sizeof *c);
    memcpy(c, d->cand, d->n_cand * sizeof *c);
    g_score = d->buyers;
    qsort(c, d->n_cand, sizeof *c, cmp_by_score);
    memcpy(out, c, k * sizeof *out);
    free(c);
}

static pvg_status build_counts(const data *d, pvg_rng *rng, int64_t m, pvg_dp_item_counts **out,
                               pvg_error *err)
{
    pvg_status st = pvg_dp_item_counts_new(d->cand, d->n_cand, m, out, err);
    for (size_t u = 0; st == PVG_OK && u < d->n_users; u++)
        st = pvg_dp_item_counts_add_user(*out, rng, d->it + d->off[u], d->off[u + 1] - d->off[u],
                                         err);
    return st;
}

static int overlap(const int64_t *a, size_t na, const int64_t *b, size_t nb)
{
    int o = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (a[i] == b[j]) {
                o++;
                break;
            }
    return o;
}

typedef struct stats {
    int med, min, max;
    double mean;
} stats;

static stats summarise(int *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_int);
    stats s = {0};
    s.min = v[0];
    s.max = v[n - 1];
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2; /* lower-rounded median */
    for (int i = 0; i < n; i++)
        s.mean += v[i];
    s.mean /= n;
    return s;
}

#define K 20

/* runs of one configuration: overlaps with the true top 20 */
static int popular_runs(const data *d, pvg_rng *rng, pvg_dp_release_mech mech, int64_t m,
                        double eps, int runs, const int64_t *truth, stats *s, double *scale)
{
    int *ov = malloc((size_t)runs * sizeof *ov);
    pvg_error err;
    pvg_error_clear(&err);
    for (int r = 0; r < runs; r++) {
        pvg_dp_item_counts *c = NULL;
        pvg_dp_popular *rel = NULL;
        pvg_dp_popular_params p;
        pvg_dp_popular_params_init(&p);
        p.epsilon = eps;
        p.delta = 1e-7;
        p.k = K;
        p.mechanism = mech;
        if (build_counts(d, rng, m, &c, &err) != PVG_OK ||
            pvg_dp_popular_release(c, rng, &p, &rel, &err) != PVG_OK) {
            fprintf(stderr, "bench_dp_popular: %s\n", err.text);
            free(ov);
            pvg_dp_item_counts_free(c);
            return -1;
        }
        int64_t got[K];
        for (int i = 0; i < K; i++)
            got[i] = rel->items[i].item;
        ov[r] = overlap(truth, K, got, K);
        *scale = rel->info.noise_scale;
        pvg_dp_popular_free(rel);
        pvg_dp_item_counts_free(c);
    }
    *s = summarise(ov, runs);
    free(ov);
    return 0;
}

/* ---- similar items ---------------------------------------------------------- */

#define EVAL_ITEMS 200
#define NN 10

typedef struct cooc_ref {
    int64_t eval[EVAL_ITEMS];      /* the most popular candidates */
    int64_t truth[EVAL_ITEMS][NN]; /* their exact cosine neighbours, whole catalog */
    size_t n_truth[EVAL_ITEMS];
    uint32_t *co; /* items.n^2 exact co-buyer counts */
} cooc_ref;

static void topn_cos(const data *d, const cooc_ref *ref, int64_t i, const int64_t *among,
                     size_t n_among, int64_t *out, size_t *n_out)
{
    size_t ni = d->items.n, len = 0;
    double sc[NN];
    for (size_t a = 0; a < n_among; a++) {
        int64_t j = among[a];
        uint32_t c = ref->co[(size_t)i * ni + (size_t)j];
        if (j == i || c == 0) continue;
        double s = c / sqrt((double)d->buyers[i] * (double)d->buyers[j]);
        if (len == NN && s <= sc[NN - 1]) continue;
        size_t at = len < NN ? len++ : NN - 1;
        while (at > 0 && sc[at - 1] < s) {
            sc[at] = sc[at - 1];
            out[at] = out[at - 1];
            at--;
        }
        sc[at] = s;
        out[at] = j;
    }
    *n_out = len;
}

static int cooc_reference(const data *d, cooc_ref *ref)
{
    size_t ni = d->items.n;
    ref->co = calloc(ni * ni, sizeof *ref->co);
    if (!ref->co) return -1;
    for (size_t u = 0; u < d->n_users; u++)
        for (size_t a = d->off[u]; a < d->off[u + 1]; a++)
            for (size_t b = d->off[u]; b < d->off[u + 1]; b++)
                ref->co[(size_t)d->it[a] * ni + (size_t)d->it[b]]++;
    true_top(d, EVAL_ITEMS, ref->eval);
    for (int e = 0; e < EVAL_ITEMS; e++)
        topn_cos(d, ref, ref->eval[e], d->cand, d->n_cand, ref->truth[e], &ref->n_truth[e]);
    return 0;
}

/* mean overlap@10 over the evaluation items; an item outside the domain
 * scores 0 */
static double mean_overlap(const cooc_ref *ref, const pvg_dp_cooc *rel)
{
    double sum = 0;
    for (int e = 0; e < EVAL_ITEMS; e++) {
        const pvg_dp_similar *s;
        size_t n;
        if (pvg_dp_cooc_similar(rel, ref->eval[e], &s, &n, NULL) != PVG_OK) continue;
        int64_t got[NN];
        size_t g = 0;
        for (size_t j = 0; j < n && g < NN; j++)
            got[g++] = s[j].item;
        sum += overlap(ref->truth[e], ref->n_truth[e], got, g);
    }
    return sum / EVAL_ITEMS;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* one configuration: total (eps, 1e-7), 1/4 and delta/2 to the domain (a
 * popular release of the top N), 3/4 and delta/2 to the pairs */
static int cooc_runs(const data *d, const cooc_ref *ref, pvg_rng *rng, double eps, size_t N,
                     int64_t m, int runs, double *med, double *ceiling, double *sigma)
{
    double *v = malloc((size_t)runs * sizeof *v), ceil_sum = 0;
    pvg_error err;
    pvg_error_clear(&err);
    for (int r = 0; r < runs; r++) {
        pvg_dp_item_counts *ic = NULL;
        pvg_dp_popular *pop = NULL;
        pvg_dp_cooc_counts *cc = NULL;
        pvg_dp_cooc *rel = NULL;
        pvg_dp_popular_params pp;
        pvg_dp_popular_params_init(&pp);
        pp.epsilon = eps / 4;
        pp.delta = 0.5e-7;
        pp.k = N;
        /* a top-N with N in the hundreds: one Gaussian vector beats N rounds
         * of peeling */
        pp.mechanism = PVG_DP_RELEASE_GAUSSIAN;
        pvg_dp_cooc_params cp;
        pvg_dp_cooc_params_init(&cp);
        cp.epsilon = 3 * eps / 4;
        cp.delta = 0.5e-7;
        cp.k = NN;
        int64_t *dom = malloc(N * sizeof *dom);
        pvg_status st =
            build_counts(d, rng, pvg_dp_popular_default_m(PVG_DP_RELEASE_GAUSSIAN), &ic, &err);
        if (st == PVG_OK) st = pvg_dp_popular_release(ic, rng, &pp, &pop, &err);
        if (st == PVG_OK) {
            for (size_t i = 0; i < N; i++)
                dom[i] = pop->items[i].item;
            st = pvg_dp_cooc_counts_new(dom, N, m, &cc, &err);
        }
        for (size_t u = 0; st == PVG_OK && u < d->n_users; u++)
            st = pvg_dp_cooc_counts_add_user(cc, rng, d->it + d->off[u], d->off[u + 1] - d->off[u],
                                             &err);
        if (st == PVG_OK) st = pvg_dp_cooc_release(cc, rng, &cp, &rel, &err);
        if (st != PVG_OK) {
            fprintf(stderr, "bench_dp_popular: %s\n", err.text);
            return -1;
        }
        v[r] = mean_overlap(ref, rel);
        *sigma = rel->info.noise_scale;
        /* the ceiling: exact (unbounded, noiseless) cosine within this domain */
        double cs = 0;
        for (int e = 0; e < EVAL_ITEMS; e++) {
            int in = 0;
            for (size_t i = 0; i < N && !in; i++)
                in = dom[i] == ref->eval[e];
            if (!in) continue;
            int64_t got[NN];
            size_t g;
            topn_cos(d, ref, ref->eval[e], dom, N, got, &g);
            cs += overlap(ref->truth[e], ref->n_truth[e], got, g);
        }
        ceil_sum += cs / EVAL_ITEMS;
        free(dom);
        pvg_dp_cooc_free(rel);
        pvg_dp_cooc_counts_free(cc);
        pvg_dp_popular_free(pop);
        pvg_dp_item_counts_free(ic);
    }
    qsort(v, (size_t)runs, sizeof *v, cmp_dbl);
    *med = runs % 2 ? v[runs / 2] : (v[runs / 2 - 1] + v[runs / 2]) / 2;
    *ceiling = ceil_sum / runs;
    free(v);
    return 0;
}

static int run_cooc(const data *d, pvg_rng *rng, int runs)
{
    cooc_ref ref;
    memset(&ref, 0, sizeof ref);
    if (cooc_reference(d, &ref) != 0) return -1;
    printf(",\n  \"similar\": {\"reference\": \"exact item-kNN cosine over the catalog\", "
           "\"metric\": \"mean overlap@10 over the %d most popular items\", \"delta\": 1e-7, "
           "\"runs\": %d, \"results\": [\n",
           EVAL_ITEMS, runs);
    const double eps_list[] = {1, 2, 4, 8};
    const size_t n_list[] = {200, 500};
    const int64_t m_list[] = {4, 8, 16};
    int first = 1;
    for (int ni = 0; ni < 2; ni++)
        for (int mi = 0; mi < 3; mi++)
            for (int e = 0; e < 4; e++) {
                double med, ceiling, sigma = 0;
                if (cooc_runs(d, &ref, rng, eps_list[e], n_list[ni], m_list[mi], runs, &med,
                              &ceiling, &sigma) != 0)
                    return -1;
                printf("%s    {\"epsilon_total\": %g, \"domain_top_n\": %zu, \"m\": %lld, "
                       "\"sigma\": %.1f, \"overlap_at_10\": %.2f, \"noiseless_same_domain\": %.2f}",
                       first ? "" : ",\n", eps_list[e], n_list[ni], (long long)m_list[mi], sigma,
                       med, ceiling);
                first = 0;
                fflush(stdout);
            }
    printf("\n  ]}");
    free(ref.co);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int runs = 20, sweep = 0, cooc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--sweep") == 0)
            sweep = 1;
        else if (strcmp(argv[i], "--cooc") == 0)
            cooc = 1;
        else
            dir = argv[i];
    }
    if (runs < 1) runs = 1;
    char path[1024], envp[900];
    const char *cands[4];
    int nc = 0, found = 0;
    if (dir) cands[nc++] = dir;
    const char *sh = getenv("PVG_SHARED_DIR");
    if (sh) {
        snprintf(envp, sizeof envp, "%s/data", sh);
        cands[nc++] = envp;
    }
    cands[nc++] = "../shared/data";
    cands[nc++] = "../../shared/data";
    for (int i = 0; i < nc && !found; i++) {
        snprintf(path, sizeof path, "%s/online-retail/online-retail.csv.gz", cands[i]);
        found = access(path, R_OK) == 0;
    }
    if (!found) {
        fprintf(stderr, "bench_dp_popular: online-retail/online-retail.csv.gz not found\n");
        return 77;
    }
    data d;
    memset(&d, 0, sizeof d);
    if (load(path, &d) != 0) return 1;
    int64_t truth[K];
    true_top(&d, K, truth);
    pvg_rng *rng = pvg_rng_new_secure();
    if (!rng) return 1;

    printf("{\n  \"dataset\": \"online-retail\", \"shoppers\": %zu, \"candidates\": %zu,"
           " \"purchases_distinct\": %zu,\n",
           d.n_users, d.n_cand, d.off[d.n_users]);
    printf("  \"true_top20_buyers\": [");
    for (int i = 0; i < K; i++)
        printf("%s%lld", i ? ", " : "", d.buyers[truth[i]]);
    printf("], \"buyers_rank21\": ");
    {
        int64_t t21[K + 1];
        true_top(&d, K + 1, t21);
        printf("%lld,\n", d.buyers[t21[K]]);
    }
    const double eps_list[] = {0.1, 0.5, 1, 2};
    printf("  \"popular\": {\"k\": 20, \"delta\": 1e-7, \"runs\": %d, \"mechanism\": \"%s\","
           " \"max_items_per_user\": %lld, \"by_epsilon\": [\n",
           runs, pvg_dp_release_mech_name(PVG_DP_RELEASE_DEFAULT, 0),
           pvg_dp_popular_default_m(PVG_DP_RELEASE_DEFAULT) == PVG_DP_UNBOUNDED_ITEMS
               ? -1LL /* none */
               : (long long)pvg_dp_popular_default_m(PVG_DP_RELEASE_DEFAULT));
    for (int e = 0; e < 4; e++) {
        stats s;
        double scale = 0;
        if (popular_runs(&d, rng, PVG_DP_RELEASE_DEFAULT,
                         pvg_dp_popular_default_m(PVG_DP_RELEASE_DEFAULT), eps_list[e], runs, truth,
                         &s, &scale) != 0)
            return 1;
        printf("    {\"epsilon\": %g, \"median_overlap\": %d, \"min\": %d, \"max\": %d, "
               "\"mean\": %.2f}%s\n",
               eps_list[e], s.med, s.min, s.max, s.mean, e < 3 ? "," : "");
        fflush(stdout);
    }
    printf("  ]}");
    if (sweep) {
        printf(",\n  \"sweep\": [\n");
        const pvg_dp_release_mech mechs[] = {PVG_DP_RELEASE_EXPONENTIAL_MONOTONE,
                                             PVG_DP_RELEASE_EXPONENTIAL_PEELING,
                                             PVG_DP_RELEASE_GAUSSIAN, PVG_DP_RELEASE_LAPLACE};
        int first = 1;
        for (int mi = 0; mi < 4; mi++)
            for (int64_t m = 1; m <= 256; m *= 2) {
                /* the exponential mechanisms' utility sensitivity is 1 whatever
                 * m: no bound (m beyond any shopper) */
                int expo = mechs[mi] == PVG_DP_RELEASE_EXPONENTIAL_PEELING ||
                           mechs[mi] == PVG_DP_RELEASE_EXPONENTIAL_MONOTONE;
                if (expo && m < 256) continue;
                for (int e = 0; e < 4; e++) {
                    stats s;
                    double scale = 0;
                    int64_t mm = expo ? PVG_DP_UNBOUNDED_ITEMS : m;
                    if (popular_runs(&d, rng, mechs[mi], mm, eps_list[e], runs, truth, &s,
                                     &scale) != 0)
                        return 1;
                    printf("%s    {\"mechanism\": \"%s\", \"m\": %lld, \"epsilon\": %g, "
                           "\"median_overlap\": %d, \"min\": %d, \"max\": %d, \"mean\": %.2f}",
                           first ? "" : ",\n", pvg_dp_release_mech_name(mechs[mi], 0),
                           expo ? -1LL : (long long)mm, eps_list[e], s.med, s.min, s.max, s.mean);
                    first = 0;
                    fflush(stdout);
                }
            }
        printf("\n  ]");
    }
    if (cooc && run_cooc(&d, rng, runs) != 0) return 1;
    printf("\n}\n");
    pvg_rng_free(rng);
    return 0;
}
