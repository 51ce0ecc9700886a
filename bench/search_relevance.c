/*
 * search_relevance.c - relevance of the search index on the judged query
 * set (data/search-judgements: queries.tsv, qrels.tsv from judgements.txt),
 * over the Online Retail catalog and the Amazon Musical Instruments one
 * (review summaries and texts as each asin's description). Prints one
 * JSON object: nDCG@10 and Recall@10 per configuration, overall, per
 * catalog and per query kind.
 *
 * Usage: bench_search_relevance [SHARED_DATA_DIR] [--judgements DIR] [--per-query]
 *
 * Configurations (each adds to the one before):
 *   bm25      whole words, no stemming, no typo tolerance, no synonyms, no
 *             prefix completion (BM25F with the field weights alone)
 *   stemming  + Snowball stemming
 *   typos     + edit-distance corrections of unknown words
 *   all       + synonyms (data/synonyms.txt) and completion of the last
 *             word of the "prefix" queries (search as you type)
 * Metrics: nDCG@10 with gain 2^grade - 1 and the ideal ranking of the
 * judged items present in the index; Recall@10 = judged items (grade >= 1)
 * in the top 10 / min(10, judged items). Means over the queries.
 */
#include "search_data.h"

#include <math.h>

#define MAXQ 256

typedef struct jq {
    char id[16], catalog[16], kind[16], text[256];
    double price_min, price_max;
    char **items;
    int *grades;
    size_t n, cap;
} jq;

static jq Q[MAXQ];
static size_t NQ;

static char *next_field(char **p)
{
    char *s = *p;
    if (!s) return "";
    char *t = strchr(s, '\t');
    if (t) {
        *t = 0;
        *p = t + 1;
    } else {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        *p = NULL;
    }
    return s;
}

static int load(const char *dir)
{
    char path[1200], line[2048];
    snprintf(path, sizeof path, "%s/queries.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    if (!fgets(line, sizeof line, f)) return -1; /* header */
    while (NQ < MAXQ && fgets(line, sizeof line, f)) {
        char *p = line;
        jq *q = &Q[NQ++];
        memset(q, 0, sizeof *q);
        snprintf(q->id, sizeof q->id, "%s", next_field(&p));
        snprintf(q->catalog, sizeof q->catalog, "%s", next_field(&p));
        snprintf(q->kind, sizeof q->kind, "%s", next_field(&p));
        snprintf(q->text, sizeof q->text, "%s", next_field(&p));
        const char *a = next_field(&p), *b = next_field(&p);
        q->price_min = *a ? atof(a) : -1;
        q->price_max = *b ? atof(b) : -1;
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/qrels.tsv", dir);
    f = fopen(path, "r");
    if (!f) return -1;
    if (!fgets(line, sizeof line, f)) return -1;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        const char *id = next_field(&p), *item = next_field(&p), *g = next_field(&p);
        for (size_t i = 0; i < NQ; i++) {
            if (strcmp(Q[i].id, id) != 0) continue;
            jq *q = &Q[i];
            if (q->n == q->cap) {
                q->cap = q->cap ? q->cap * 2 : 16;
                q->items = realloc(q->items, q->cap * sizeof *q->items);
                q->grades = realloc(q->grades, q->cap * sizeof *q->grades);
            }
            q->items[q->n] = strdup(item);
            q->grades[q->n] = atoi(g);
            q->n++;
        }
    }
    fclose(f);
    return 0;
}

static int grade(const jq *q, const char *item)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->items[i], item) == 0) return q->grades[i];
    return 0;
}

static int gcmp(const void *a, const void *b)
{
    return *(const int *)b - *(const int *)a;
}

typedef struct acc {
    double ndcg, recall;
    int n;
} acc;

enum { C_BM25, C_STEM, C_TYPO, C_ALL, N_CONF };
static const char *CONF[N_CONF] = {"bm25", "stemming", "typos", "all"};
static const char *KINDS[] = {"multi", "plural", "typo", "category", "price", "prefix", "synonym"};
#define N_KINDS 7

static acc A_all[N_CONF], A_cat[2][N_CONF], A_kind[N_KINDS][N_CONF];
static int per_query;

static void eval_catalog(int ci, const char *cname, const sd_catalog *c, const char *syn)
{
    pvg_search_options o_raw = {0}, o_stem = {0}, o_all = {0};
    o_raw.no_stemming = 1;
    o_all.synonyms_path = syn;
    pvg_search_index *raw = sd_index(c, &o_raw), *stem = sd_index(c, &o_stem),
                     *full = sd_index(c, &o_all);
    if (!raw || !stem || !full) exit(1);
    for (size_t qi = 0; qi < NQ; qi++) {
        jq *q = &Q[qi];
        if (strcmp(q->catalog, cname) != 0) continue;
        /* the judged items the index holds, graded */
        int *ideal = calloc(q->n + 1, sizeof *ideal);
        size_t ni = 0;
        for (size_t i = 0; i < q->n; i++)
            if (pvg_smap_find(&c->ids, q->items[i], strlen(q->items[i])) >= 0)
                ideal[ni++] = q->grades[i];
        qsort(ideal, ni, sizeof *ideal, gcmp);
        double idcg = 0;
        for (size_t i = 0; i < ni && i < 10; i++)
            idcg += (pow(2, ideal[i]) - 1) / log2((double)i + 2);
        free(ideal);
        int prefix_kind = strcmp(q->kind, "prefix") == 0;
        if (per_query) printf("%s\"%s\": {", qi ? ", " : "\"queries\": {", q->id);
        for (int cf = 0; cf < N_CONF; cf++) {
            pvg_search_query sq;
            pvg_search_query_init(&sq);
            char text[300];
            /* a whole query ends in a space (no completion); a "prefix" one
             * does not, and is completed in the last configuration only */
            snprintf(text, sizeof text, "%s%s", q->text, prefix_kind && cf == C_ALL ? "" : " ");
            sq.text = text;
            sq.price_min = q->price_min;
            sq.price_max = q->price_max;
            sq.k = 10;
            if (cf < C_ALL) sq.flags |= PVG_SEARCH_NO_SYNONYMS | PVG_SEARCH_NO_PREFIX;
            if (cf < C_TYPO) sq.flags |= PVG_SEARCH_NO_TYPO;
            const pvg_search_index *ix = cf == C_BM25 ? raw : cf == C_ALL ? full : stem;
            pvg_search_result *r = NULL;
            pvg_error e;
            if (pvg_search_run(ix, &sq, &r, &e) != PVG_OK) {
                fprintf(stderr, "%s: %s\n", q->id, e.text);
                exit(1);
            }
            double dcg = 0;
            int found = 0;
            for (size_t i = 0; i < pvg_search_result_count(r); i++) {
                int g = grade(q, pvg_search_result_hit(r, i)->ext_id);
                dcg += (pow(2, g) - 1) / log2((double)i + 2);
                if (g > 0) found++;
            }
            pvg_search_result_free(r);
            double nd = idcg > 0 ? dcg / idcg : 0;
            double rec = ni ? (double)found / (double)(ni < 10 ? ni : 10) : 0;
            acc *as[3] = {&A_all[cf], &A_cat[ci][cf], NULL};
            for (int k = 0; k < N_KINDS; k++)
                if (strcmp(q->kind, KINDS[k]) == 0) as[2] = &A_kind[k][cf];
            for (int k = 0; k < 3; k++)
                if (as[k]) as[k]->ndcg += nd, as[k]->recall += rec, as[k]->n++;
            if (per_query) printf("%s\"%s\": [%.3f, %.3f]", cf ? ", " : "", CONF[cf], nd, rec);
        }
        if (per_query) printf("}");
    }
    pvg_search_index_free(raw);
    pvg_search_index_free(stem);
    pvg_search_index_free(full);
}

static void print_acc(const char *name, acc *a, int comma)
{
    printf("\"%s\": {\"queries\": %d", name, a[0].n);
    for (int cf = 0; cf < N_CONF; cf++)
        printf(", \"%s\": {\"ndcg10\": %.3f, \"recall10\": %.3f}", CONF[cf],
               a[cf].n ? a[cf].ndcg / a[cf].n : 0, a[cf].n ? a[cf].recall / a[cf].n : 0);
    printf("}%s", comma ? ", " : "");
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *jdir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--judgements") == 0 && i + 1 < argc)
            jdir = argv[++i];
        else if (strcmp(argv[i], "--per-query") == 0)
            per_query = 1;
        else if (argv[i][0] != '-')
            dir = argv[i];
        else {
            fprintf(stderr, "usage: bench_search_relevance [SHARED_DATA_DIR] [--judgements DIR] "
                            "[--per-query]\n");
            return 2;
        }
    }
    char jbuf[1024], syn[1100];
    if (!jdir) {
        const char *src = getenv("PVG_SOURCE_DIR");
        static const char *c[] = {"data/search-judgements", "../data/search-judgements",
                                  "../../data/search-judgements"};
        if (src) {
            snprintf(jbuf, sizeof jbuf, "%s/data/search-judgements", src);
            jdir = jbuf;
        } else {
            for (int i = 0; i < 3 && !jdir; i++)
                if (access(c[i], R_OK) == 0) jdir = c[i];
        }
    }
    if (!jdir || load(jdir) != 0) {
        fprintf(stderr, "bench_search_relevance: no judgements (give --judgements DIR)\n");
        return 2;
    }
    snprintf(syn, sizeof syn, "%s/../synonyms.txt", jdir);
    char rpath[1024], apath[1024];
    if (sd_find(dir, "online-retail/online-retail.csv.gz", rpath, sizeof rpath) ||
        sd_find(dir, "amazon-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz",
                apath, sizeof apath)) {
        fprintf(stderr, "bench_search_relevance: the shared data is absent\n");
        return 77;
    }
    printf("{\"bench\": \"search_relevance\", ");
    sd_catalog rc = {0}, ac = {0};
    if (sd_load_retail(rpath, &rc) || sd_load_amazon(apath, &ac)) return 1;
    eval_catalog(0, "retail", &rc, syn);
    eval_catalog(1, "amazon", &ac, syn);
    if (per_query) printf("}, ");
    print_acc("overall", A_all, 1);
    print_acc("online_retail", A_cat[0], 1);
    print_acc("amazon", A_cat[1], 1);
    printf("\"by_kind\": {");
    for (int k = 0; k < N_KINDS; k++)
        print_acc(KINDS[k], A_kind[k], k + 1 < N_KINDS);
    printf("}}\n");
    sd_free(&rc);
    sd_free(&ac);
    return 0;
}
