/*
 * search.c - benchmark of the search index (src/search): index build time
 * and per-query latency, p50 and p99, of full queries and of
 * search-as-you-type prefix queries, on one core. Prints one JSON object.
 *
 * Usage: bench_search [SHARED_DATA_DIR] [--items N] [--queries N] [--seed S]
 *
 * Catalogs:
 *   synthetic       N items (default 100,000) with titles drawn from a
 *                   vocabulary (colour, material, style, product noun,
 *                   qualifier; Zipf-like choice), 40 categories, a
 *                   description of 6-12 words, log-normal prices;
 *   online_retail   the UCI Online Retail items (StockCode, description,
 *                   price) from $PVG_SHARED_DIR/data (skipped when absent).
 * Queries (default 2,000 per kind) are made from random items' titles:
 *   full    2-3 of the item's words, a fifth of them with one word
 *           misspelled (one letter dropped, doubled or two swapped), the
 *           rest as typed; every fifth with a price or category filter;
 *   prefix  the same word lists with the last word cut to 1..len-1 letters
 *           and no trailing space (what a search box sends per key press).
 * Latency is wall time per pvg_search_run (the query's whole cost: parse,
 * variants, scoring, top-k, facets), single thread; cpu_* is the thread's
 * CPU time for the same calls (less sensitive to other load on a shared
 * machine). Targets: p99 < 5 ms full, < 2 ms prefix.
 */
#include "search_data.h"

/* the Amazon catalog is for bench_search_relevance */
static int (*const unused_amazon)(const char *, sd_catalog *)
    __attribute__((unused)) = sd_load_amazon;

#include <math.h>
#include <time.h>

static double now_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static double rnd01(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}
/* Zipf-like pick of 0..n-1 (s ~ 1) */
static size_t zipf(size_t n)
{
    double u = rnd01();
    size_t i = (size_t)(exp(u * log((double)n + 1)) - 1);
    return i < n ? i : n - 1;
}

static const char *COLOURS[] = {
    "red",    "blue",   "green",  "white",  "black",  "pink", "ivory",   "cream", "grey",
    "silver", "gold",   "purple", "orange", "yellow", "teal", "navy",    "brown", "turquoise",
    "lilac",  "copper", "mint",   "coral",  "beige",  "rose", "charcoal"};
static const char *MATERIALS[] = {"wooden", "glass",  "ceramic", "metal",   "enamel", "cotton",
                                  "linen",  "wicker", "paper",   "felt",    "zinc",   "porcelain",
                                  "velvet", "bamboo", "leather", "acrylic", "tin",    "stoneware"};
static const char *STYLES[] = {
    "vintage",   "retro",   "hanging",   "heart",    "star",    "floral",  "spotty",   "striped",
    "regency",   "antique", "rustic",    "modern",   "jumbo",   "mini",    "small",    "large",
    "christmas", "easter",  "birthday",  "garden",   "kitchen", "paisley", "polkadot", "folk",
    "scandi",    "french",  "botanical", "woodland", "rainbow", "glitter"};
static const char *NOUNS[] = {
    "holder",        "candle",       "lantern",       "mug",          "cup",         "teapot",
    "bag",           "tin",          "box",           "frame",        "clock",       "sign",
    "cushion",       "blanket",      "doormat",       "bowl",         "plate",       "jar",
    "bottle",        "tray",         "basket",        "garland",      "bunting",     "ornament",
    "bauble",        "wreath",       "napkins",       "apron",        "tea towel",   "notebook",
    "pencil",        "purse",        "wallet",        "umbrella",     "mirror",      "hook",
    "hanger",        "vase",         "planter",       "lamp",         "coaster",     "placemat",
    "cake stand",    "egg cup",      "spoon",         "whisk",        "doorstop",    "magnet",
    "keyring",       "badge",        "stickers",      "wrap",         "card",        "envelope",
    "ribbon",        "gift bag",     "jewellery box", "trinket box",  "photo album", "pen",
    "ruler",         "rubber",       "lunch box",     "water bottle", "picnic set",  "parasol",
    "light chain",   "fairy lights", "night light",   "money box",    "storage jar", "cake tin",
    "biscuit tin",   "tissue box",   "door stop",     "toy",          "puzzle",      "kite",
    "skipping rope", "spinning top", "dolly",         "teddy",        "rag doll"};
static const char *QUALIFIERS[] = {"set of 3",  "set of 6", "set of 12", "pack of 4", "design",
                                   "assorted",  "large",    "small",     "with lid",  "in box",
                                   "2 colours", "for kids", "gift set",  "of 2",      "large size"};
static const char *CATS[] = {
    "Home",     "Kitchen",  "Garden",    "Christmas",   "Stationery", "Toys",     "Bags",
    "Lighting", "Gifts",    "Party",     "Bathroom",    "Storage",    "Textiles", "Jewellery",
    "Easter",   "Baking",   "Tableware", "Decorations", "Wall art",   "Clocks",   "Candles",
    "Kids",     "Outdoor",  "Travel",    "Office",      "Crafts",     "Wrapping", "Accessories",
    "Pets",     "Seasonal", "Vintage",   "Bedroom",     "Dining",     "Cards",    "Beauty",
    "Tea",      "Picnic",   "Souvenirs", "Novelty",     "Clearance"};
static const char *DESC[] = {
    "perfect",    "gift",  "for",    "the",      "home",     "with",     "a",         "lovely",
    "finish",     "hand",  "made",   "painted",  "durable",  "easy",     "to",        "clean",
    "dishwasher", "safe",  "holds",  "tea",      "lights",   "ideal",    "party",     "kitchen",
    "storage",    "decor", "sturdy", "charming", "classic",  "design",   "colourful", "print",
    "matching",   "range", "boxed",  "eco",      "friendly", "recycled", "natural",   "sweet",
    "treats",     "keeps", "food",   "fresh",    "cosy",     "nights",   "festive",   "season"};
#define NA(a) (sizeof a / sizeof a[0])

static void synth(sd_catalog *c, size_t n)
{
    char title[256], id[32], desc[512];
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "S%06zu", i);
        long k = sd_item_of(c, id);
        if (k < 0) return;
        size_t len = 0;
        title[0] = 0;
        if (rnd01() < 0.7)
            len += (size_t)snprintf(title + len, sizeof title - len, "%s ",
                                    COLOURS[zipf(NA(COLOURS))]);
        if (rnd01() < 0.5)
            len += (size_t)snprintf(title + len, sizeof title - len, "%s ",
                                    MATERIALS[zipf(NA(MATERIALS))]);
        len += (size_t)snprintf(title + len, sizeof title - len, "%s ", STYLES[zipf(NA(STYLES))]);
        if (rnd01() < 0.3)
            len += (size_t)snprintf(title + len, sizeof title - len, "%s ",
                                    STYLES[rnd() % NA(STYLES)]);
        len += (size_t)snprintf(title + len, sizeof title - len, "%s", NOUNS[zipf(NA(NOUNS))]);
        if (rnd01() < 0.4)
            snprintf(title + len, sizeof title - len, " %s", QUALIFIERS[rnd() % NA(QUALIFIERS)]);
        for (char *p = title; *p; p++)
            if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 32); /* as the shop writes them */
        size_t dl = 0;
        int words = 6 + (int)(rnd() % 7);
        for (int w = 0; w < words; w++)
            dl += (size_t)snprintf(desc + dl, sizeof desc - dl, "%s%s", w ? " " : "",
                                   DESC[rnd() % NA(DESC)]);
        json_t *a = json_pack("{s:s}", "description", desc);
        sd_item *it = &c->items[k];
        it->category = strdup(CATS[zipf(NA(CATS))]);
        it->title = strdup(title);
        it->attrs = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        it->price = round(exp(1.2 + 0.9 * (rnd01() + rnd01() + rnd01() - 1.5)) * 100) / 100;
    }
}

/* ---- queries ----------------------------------------------------------------- */

typedef struct bq {
    char text[160];
    const char *category;
    double price_min, price_max;
} bq;

static void misspell(char *w)
{
    size_t n = strlen(w);
    if (n < 4) return;
    size_t i = 1 + rnd() % (n - 2);
    switch (rnd() % 3) {
    case 0: /* drop */
        memmove(w + i, w + i + 1, n - i);
        break;
    case 1: /* double */
        memmove(w + i + 1, w + i, n - i + 1);
        break;
    default: /* swap */
    {
        char t = w[i];
        w[i] = w[i + 1 < n ? i + 1 : i - 1];
        w[i + 1 < n ? i + 1 : i - 1] = t;
    }
    }
}

/* Word lists from random titles: 2-3 consecutive words (lower case). */
static size_t make_queries(const sd_catalog *c, bq *full, bq *prefix, size_t n, int cats)
{
    size_t made = 0;
    for (size_t tries = 0; made < n && tries < n * 20; tries++) {
        const sd_item *it = &c->items[rnd() % c->n];
        if (!it->title) continue;
        char words[16][40];
        int nw = 0;
        const char *p = it->title;
        while (*p && nw < 16) {
            while (*p && !((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                p++;
            size_t l = 0;
            while (p[l] && ((p[l] >= 'A' && p[l] <= 'Z') || (p[l] >= 'a' && p[l] <= 'z')))
                l++;
            if (l >= 3 && l < 30) {
                for (size_t i = 0; i < l; i++)
                    words[nw][i] = (char)(p[i] | 0x20);
                words[nw][l] = 0;
                nw++;
            }
            p += l;
        }
        if (nw < 2) continue;
        int take = 2 + (int)(rnd() % 2);
        if (take > nw) take = nw;
        int start = (int)(rnd() % (unsigned)(nw - take + 1));
        bq *f = &full[made], *q = &prefix[made];
        memset(f, 0, sizeof *f);
        f->price_min = f->price_max = -1;
        int typo = rnd() % 5 == 0;
        size_t len = 0;
        for (int w = 0; w < take; w++) {
            char tmp[48];
            snprintf(tmp, sizeof tmp, "%s", words[start + w]);
            if (typo && w == take - 1) misspell(tmp);
            len += (size_t)snprintf(f->text + len, sizeof f->text - len, "%s%s", w ? " " : "", tmp);
        }
        if (made % 5 == 4) {
            if (cats && rnd() % 2)
                f->category = CATS[zipf(NA(CATS))];
            else
                f->price_max = 5 + (double)(rnd() % 20);
        }
        *q = *f;
        /* the last word cut */
        char *last = strrchr(q->text, ' ');
        last = last ? last + 1 : q->text;
        size_t ll = strlen(last);
        if (ll > 1) last[1 + rnd() % (ll - 1)] = 0;
        q->category = NULL;
        q->price_min = q->price_max = -1;
        made++;
    }
    return made;
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct lat {
    double p50, p99, max, mean, cpu_p50, cpu_p99;
    double hits_mean;
} lat;

static int run_queries(const pvg_search_index *ix, const bq *qs, size_t n, unsigned flags, lat *out)
{
    double *w = malloc(n * sizeof *w), *cpu = malloc(n * sizeof *cpu);
    if (!w || !cpu) return -1;
    double sum = 0, hits = 0;
    for (int pass = 0; pass < 2; pass++) { /* the first pass warms caches and the scratch pool */
        for (size_t i = 0; i < n; i++) {
            pvg_search_query q;
            pvg_search_query_init(&q);
            q.text = qs[i].text;
            q.category = qs[i].category;
            q.price_min = qs[i].price_min;
            q.price_max = qs[i].price_max;
            q.flags = flags;
            pvg_search_result *r = NULL;
            pvg_error e;
            double c0 = now_s(CLOCK_THREAD_CPUTIME_ID), t0 = now_s(CLOCK_MONOTONIC);
            pvg_status st = pvg_search_run(ix, &q, &r, &e);
            double t1 = now_s(CLOCK_MONOTONIC), c1 = now_s(CLOCK_THREAD_CPUTIME_ID);
            if (st != PVG_OK) {
                fprintf(stderr, "query \"%s\": %s\n", qs[i].text, e.text);
                free(w);
                free(cpu);
                return -1;
            }
            if (pass) {
                w[i] = t1 - t0;
                cpu[i] = c1 - c0;
                sum += w[i];
                hits += (double)pvg_search_result_total(r);
            }
            pvg_search_result_free(r);
        }
    }
    qsort(w, n, sizeof *w, dcmp);
    qsort(cpu, n, sizeof *cpu, dcmp);
    out->p50 = w[n / 2] * 1e3;
    out->p99 = w[(size_t)((double)n * 0.99)] * 1e3;
    out->max = w[n - 1] * 1e3;
    out->mean = sum / (double)n * 1e3;
    out->cpu_p50 = cpu[n / 2] * 1e3;
    out->cpu_p99 = cpu[(size_t)((double)n * 0.99)] * 1e3;
    out->hits_mean = hits / (double)n;
    free(w);
    free(cpu);
    return 0;
}

static void print_lat(const char *name, const lat *l, int comma)
{
    printf("\"%s\": {\"p50_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f, \"mean_ms\": %.4f, "
           "\"cpu_p50_ms\": %.4f, \"cpu_p99_ms\": %.4f, \"mean_matches\": %.1f}%s",
           name, l->p50, l->p99, l->max, l->mean, l->cpu_p50, l->cpu_p99, l->hits_mean,
           comma ? ", " : "");
}

static int bench_catalog(const char *name, const sd_catalog *c, size_t nq, const char *syn,
                         int cats, int comma)
{
    pvg_search_options o = {0};
    o.synonyms_path = syn;
    double c0 = now_s(CLOCK_THREAD_CPUTIME_ID), t0 = now_s(CLOCK_MONOTONIC);
    pvg_search_index *ix = sd_index(c, &o);
    double t1 = now_s(CLOCK_MONOTONIC), c1 = now_s(CLOCK_THREAD_CPUTIME_ID);
    if (!ix) return -1;
    pvg_search_index_stats st;
    pvg_search_index_stats_get(ix, &st);
    bq *full = calloc(nq, sizeof *full), *prefix = calloc(nq, sizeof *prefix);
    if (!full || !prefix) return -1;
    size_t n = make_queries(c, full, prefix, nq, cats);
    lat lf, lp;
    if (n < 10 || run_queries(ix, full, n, PVG_SEARCH_NO_PREFIX, &lf) ||
        run_queries(ix, prefix, n, 0, &lp)) {
        pvg_search_index_free(ix);
        return -1;
    }
    printf("\"%s\": {\"items\": %zu, \"terms\": %zu, \"words\": %zu, \"postings\": %zu, "
           "\"index_mb\": %.1f, \"build_s\": %.3f, \"build_cpu_s\": %.3f, \"queries\": %zu, ",
           name, st.items, st.terms, st.words, st.postings, (double)st.bytes / 1048576.0, t1 - t0,
           c1 - c0, n);
    print_lat("full", &lf, 1);
    print_lat("prefix", &lp, 0);
    printf(", \"example_full\": \"%s\", \"example_prefix\": \"%s\"}%s", full[0].text,
           prefix[0].text, comma ? ", " : "");
    free(full);
    free(prefix);
    pvg_search_index_free(ix);
    return 0;
}

int main(int argc, char **argv)
{
    size_t items = 100000, nq = 2000;
    const char *dir = NULL;
    rng_state = 0x9E3779B97F4A7C15ull;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--items") == 0 && i + 1 < argc)
            items = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--queries") == 0 && i + 1 < argc)
            nq = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            rng_state = strtoull(argv[++i], NULL, 10) | 1;
        else if (argv[i][0] != '-')
            dir = argv[i];
        else {
            fprintf(stderr, "usage: bench_search [SHARED_DATA_DIR] [--items N] [--queries N] "
                            "[--seed S]\n");
            return 2;
        }
    }
    if (items < 10 || nq < 10) return 2;
    /* the committed synonyms file, when run from the source or build tree */
    const char *syn = NULL;
    static const char *syn_cands[] = {"data/synonyms.txt", "../data/synonyms.txt",
                                      "../../data/synonyms.txt"};
    char synp[1024];
    const char *src = getenv("PVG_SOURCE_DIR");
    if (src) {
        snprintf(synp, sizeof synp, "%s/data/synonyms.txt", src);
        if (access(synp, R_OK) == 0) syn = synp;
    }
    for (size_t i = 0; !syn && i < 3; i++)
        if (access(syn_cands[i], R_OK) == 0) syn = syn_cands[i];

    printf("{\"bench\": \"search\", \"synonyms\": %s, ", syn ? "true" : "false");
    sd_catalog synth_c = {0};
    synth(&synth_c, items);
    int rc = bench_catalog("synthetic", &synth_c, nq, syn, 1, 1);
    sd_free(&synth_c);
    if (rc) return 1;
    char path[1024];
    if (sd_find(dir, "online-retail/online-retail.csv.gz", path, sizeof path) == 0) {
        sd_catalog rc_c = {0};
        if (sd_load_retail(path, &rc_c) == 0)
            rc = bench_catalog("online_retail", &rc_c, nq, syn, 0, 0);
        sd_free(&rc_c);
    } else {
        printf("\"online_retail\": null");
    }
    printf(", \"targets_ms\": {\"full_p99\": 5, \"prefix_p99\": 2}}\n");
    return rc ? 1 : 0;
}
