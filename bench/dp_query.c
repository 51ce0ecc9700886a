/*
 * dp_query.c - benchmark: user-level DP count and sum of purchases grouped
 * by category over Online Retail, against the plain (non-private) aggregate
 * of the same events in the same run. Prints one JSON object.
 *
 * Usage: bench_dp_query [SHARED_DATA_DIR]
 *   SHARED_DATA_DIR holds online-retail/online-retail.csv.gz; default
 *   $PVG_SHARED_DIR/data, then ../shared/data, ../../shared/data.
 * The file is ingested into a temporary store (removed at the end). Each
 * timing is the best of 3 passes. ratio = DP time / plain time of the same
 * statistic; target <= 1.5.
 */
#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/query.h>
#include <privguide/store.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the plain aggregate: per category count and sum of purchase amounts ---- */

typedef struct cat {
    int64_t item;
    int cat; /* index into names */
} cat;

typedef struct plain {
    int64_t *item_ids; /* sorted */
    int *item_cat;
    size_t n_items, cap_items;
    char **names;
    size_t n_names, cap_names;
    double *count, *sum;
    int want_sum;
} plain;

static int find_name(plain *p, const char *c)
{
    for (size_t i = 0; i < p->n_names; i++)
        if (strcmp(p->names[i], c) == 0) return (int)i;
    if (p->n_names == p->cap_names) {
        p->cap_names = p->cap_names ? 2 * p->cap_names : 256;
        p->names = realloc(p->names, p->cap_names * sizeof *p->names);
    }
    p->names[p->n_names] = strdup(c);
    return (int)p->n_names++;
}

static int item_cb(void *ctx, const pvg_item *it)
{
    plain *p = ctx;
    if (p->n_items == p->cap_items) {
        p->cap_items = p->cap_items ? 2 * p->cap_items : 4096;
        p->item_ids = realloc(p->item_ids, p->cap_items * sizeof *p->item_ids);
        p->item_cat = realloc(p->item_cat, p->cap_items * sizeof *p->item_cat);
    }
    p->item_ids[p->n_items] = it->id; /* row-id order: sorted */
    p->item_cat[p->n_items++] =
        find_name(p, it->category && *it->category ? it->category : "(none)");
    return 0;
}

static int cat_of(const plain *p, int64_t id)
{
    size_t lo = 0, hi = p->n_items;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->item_ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n_items && p->item_ids[lo] == id ? p->item_cat[lo] : -1;
}

static int plain_user(void *ctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    plain *p = ctx;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].type != PVG_EVENT_PURCHASE) continue;
        int c = cat_of(p, ev[i].item_id);
        if (c < 0) continue;
        if (p->want_sum) {
            if (ev[i].fields & PVG_FIELD_AMOUNT) p->sum[c] += ev[i].amount;
        } else {
            p->count[c] += 1;
        }
    }
    return 0;
}

static int die(const char *what, const pvg_error *err)
{
    fprintf(stderr, "bench_dp_query: %s: %s\n", what, err ? err->text : "");
    return 1;
}

int main(int argc, char **argv)
{
    char path[1024];
    const char *cands[4];
    char envp[900];
    int nc = 0;
    if (argc > 1) cands[nc++] = argv[1];
    const char *sh = getenv("PVG_SHARED_DIR");
    if (sh) {
        snprintf(envp, sizeof envp, "%s/data", sh);
        cands[nc++] = envp;
    }
    cands[nc++] = "../shared/data";
    cands[nc++] = "../../shared/data";
    int found = 0;
    for (int i = 0; i < nc && !found; i++) {
        snprintf(path, sizeof path, "%s/online-retail/online-retail.csv.gz", cands[i]);
        found = access(path, R_OK) == 0;
    }
    if (!found) {
        fprintf(stderr, "bench_dp_query: online-retail/online-retail.csv.gz not found (give the "
                        "shared data dir)\n");
        return 77;
    }
    char tmpl[] = "/tmp/pvg-bench-dp-XXXXXX";
    if (!mkdtemp(tmpl)) return die("mkdtemp", NULL);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/data", tmpl);
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_store_init(dir, NULL, &err) != PVG_OK) return die("init", &err);
    pvg_store *s;
    if (pvg_store_open(dir, &s, &err) != PVG_OK) return die("open", &err);
    pvg_ingest_stats ist;
    double t0 = now_s();
    if (pvg_store_ingest_file(s, path, PVG_FORMAT_ONLINE_RETAIL, NULL, &ist, &err) != PVG_OK)
        return die("ingest", &err);
    double t_ingest = now_s() - t0;
    if (pvg_ledger_set_budget(s, "bench", 1e6, 0.5, &err) != PVG_OK) return die("budget", &err);

    plain p;
    memset(&p, 0, sizeof p);
    if (pvg_store_items_foreach(s, item_cb, &p, &err) != PVG_OK) return die("items", &err);
    p.count = calloc(p.n_names, sizeof *p.count);
    p.sum = calloc(p.n_names, sizeof *p.sum);
    double best_pc = INFINITY, best_ps = INFINITY, best_dc = INFINITY, best_ds = INFINITY;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_query_result *rc = NULL, *rs = NULL;
    /* contribution bounds: env PVG_BENCH_MAX_GROUPS / PVG_BENCH_MAX_CONTRIB override */
    long max_groups = getenv("PVG_BENCH_MAX_GROUPS") ? atol(getenv("PVG_BENCH_MAX_GROUPS")) : 20;
    long max_contrib = getenv("PVG_BENCH_MAX_CONTRIB") ? atol(getenv("PVG_BENCH_MAX_CONTRIB")) : 20;
    for (int rep = 0; rep < 3; rep++) {
        /* plain count and plain sum, one pass each, like the DP queries */
        memset(p.count, 0, p.n_names * sizeof *p.count);
        memset(p.sum, 0, p.n_names * sizeof *p.sum);
        p.want_sum = 0;
        t0 = now_s();
        if (pvg_store_foreach_user(s, PVG_FOREACH_REQUIRE_ANALYTICS, plain_user, &p, &err) !=
            PVG_OK)
            return die("plain count", &err);
        double d = now_s() - t0;
        if (d < best_pc) best_pc = d;
        p.want_sum = 1;
        t0 = now_s();
        if (pvg_store_foreach_user(s, PVG_FOREACH_REQUIRE_ANALYTICS, plain_user, &p, &err) !=
            PVG_OK)
            return die("plain sum", &err);
        d = now_s() - t0;
        if (d < best_ps) best_ps = d;

        pvg_query_spec sp;
        pvg_query_spec_init(&sp);
        sp.group_by = PVG_QUERY_GROUP_CATEGORY;
        sp.epsilon = 1;
        sp.delta = 1e-6;
        sp.dataset = "bench";
        sp.max_groups = max_groups;
        sp.max_contributions = max_contrib;
        pvg_query_result_free(rc);
        t0 = now_s();
        if (pvg_query_run(s, &sp, rng, &rc, &err) != PVG_OK) return die("dp count", &err);
        d = now_s() - t0;
        if (d < best_dc) best_dc = d;
        sp.kind = PVG_QUERY_SUM;
        sp.value = PVG_QUERY_VALUE_AMOUNT;
        sp.has_clamp = 1;
        sp.clamp_lo = 0;
        sp.clamp_hi = 100;
        pvg_query_result_free(rs);
        t0 = now_s();
        if (pvg_query_run(s, &sp, rng, &rs, &err) != PVG_OK) return die("dp sum", &err);
        d = now_s() - t0;
        if (d < best_ds) best_ds = d;
    }
    /* accuracy of the released groups against the plain totals (median relative
     * error; the DP figures are bounded per user and clamped, so they differ from
     * the plain ones by bias as well as noise) */
    double *relc = calloc(rc->n_rows + 1, sizeof *relc);
    size_t nrc = 0;
    for (size_t i = 0; i < rc->n_rows; i++) {
        int c = -1;
        for (size_t k = 0; k < p.n_names; k++)
            if (strcmp(p.names[k], rc->rows[i].group) == 0) c = (int)k;
        if (c >= 0 && p.count[c] > 0)
            relc[nrc++] = fabs(rc->rows[i].value - p.count[c]) / p.count[c];
    }
    for (size_t i = 1; i < nrc; i++)
        for (size_t j = i; j > 0 && relc[j - 1] > relc[j]; j--) {
            double t = relc[j];
            relc[j] = relc[j - 1];
            relc[j - 1] = t;
        }
    double med = nrc ? relc[nrc / 2] : NAN;
    long long plain_groups = 0;
    for (size_t k = 0; k < p.n_names; k++)
        plain_groups += p.count[k] > 0;
    double ratio_c = best_dc / best_pc, ratio_s = best_ds / best_ps;
    printf("{\"bench\":\"dp_query\",\"dataset\":\"online-retail\",\"rows\":%lld,\"users\":%lld,"
           "\"events\":%lld,"
           "\"ingest_s\":%.3f,\"categories_plain\":%lld,"
           "\"plain_count_s\":%.4f,\"dp_count_s\":%.4f,\"ratio_count\":%.3f,"
           "\"plain_sum_s\":%.4f,\"dp_sum_s\":%.4f,\"ratio_sum\":%.3f,\"ratio\":%.3f,\"target_"
           "ratio\":1.5,"
           "\"dp_count_groups_released\":%zu,\"dp_sum_groups_released\":%zu,\"selection_"
           "threshold\":%ld,"
           "\"count_noise_scale\":%.4g,\"sum_noise_scale\":%.4g,\"count_median_rel_error\":%.4f,"
           "\"max_groups\":%ld,\"max_contributions\":%ld,\"epsilon_per_query\":1,\"delta_per_"
           "query\":1e-6}\n",
           ist.read, rc->users, ist.events, t_ingest, plain_groups, best_pc, best_dc, ratio_c,
           best_ps, best_ds, ratio_s, (best_dc + best_ds) / (best_pc + best_ps), rc->n_rows,
           rs->n_rows, rc->selection_threshold, rc->noise_scale, rs->noise_scale, med, max_groups,
           max_contrib);
    free(relc);
    pvg_query_result_free(rc);
    pvg_query_result_free(rs);
    pvg_rng_free(rng);
    for (size_t k = 0; k < p.n_names; k++)
        free(p.names[k]);
    free(p.names);
    free(p.item_ids);
    free(p.item_cat);
    free(p.count);
    free(p.sum);
    pvg_store_free(s);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd) != 0) fprintf(stderr, "bench_dp_query: could not remove %s\n", tmpl);
    return 0;
}
