/*
 * fuzz_search_query.c - libFuzzer harness for the search query parser and
 * runner (pvg_search_run, src/search/query.c) and the synonyms parser
 * (src/search/index.c). The first byte chooses: even, the rest is a query
 * (bytes 1-2 pick the flags, sort, k and filters) run on a small fixed
 * catalog, and every hit, term and facet is read back; odd, the rest is a
 * synonyms file, and an index built with it answers one query.
 * Seeds: fuzz/corpus/search_query/.
 */
#include "fuzz_common.h"

#include <privguide/search.h>

static const char *const TITLES[] = {"WHITE HANGING HEART T-LIGHT HOLDER",
                                     "RED RETROSPOT LUNCH BAG",
                                     "Cr\xc3\xa8me teapot",
                                     "SET OF 3 CAKE TINS PANTRY DESIGN",
                                     "PAPER CHAIN KIT 50'S CHRISTMAS",
                                     "\xce\x91\xce\x92 lamp",
                                     "hot water bottle",
                                     "alarm clock bakelike red"};

static pvg_search_index *make_index(const char *synonyms, pvg_error *err)
{
    pvg_search_options o = {0};
    o.synonyms_text = synonyms;
    pvg_search_index *ix = NULL;
    pvg_status st = pvg_search_index_new(&o, &ix, err);
    fuzz_check_error(st, err);
    if (st != PVG_OK) return NULL;
    for (size_t i = 0; i < sizeof TITLES / sizeof TITLES[0]; i++) {
        char id[8];
        snprintf(id, sizeof id, "I%zu", i);
        pvg_item it = {0};
        it.ext_id = id;
        it.title = TITLES[i];
        it.category = i % 2 ? "Home" : "Kitchen";
        it.price = (double)i * 1.5;
        it.attrs_json = i % 3 ? NULL : "{\"description\": \"a lovely gift for a tea lover\"}";
        if (pvg_search_index_add(ix, &it, err) != PVG_OK) abort();
    }
    if (pvg_search_index_finish(ix, err) != PVG_OK) abort();
    return ix;
}

static void run_one(const pvg_search_index *ix, const char *text, uint8_t a, uint8_t b)
{
    pvg_search_query q;
    pvg_search_query_init(&q);
    q.text = text;
    q.flags = a & 0x0f;
    q.sort = (pvg_search_sort)((a >> 4) % 3);
    q.k = 1 + (b & 0x0f);
    q.offset = (b >> 4) & 3;
    if (b & 0x40) q.price_max = 4;
    if (b & 0x80) q.category = "home";
    pvg_search_result *r = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_search_run(ix, &q, &r, &err);
    fuzz_check_error(st, &err);
    if (st != PVG_OK) return;
    size_t total = pvg_search_result_total(r), n = pvg_search_result_count(r);
    if (n > q.k || n > total) abort();
    for (size_t i = 0; i < n; i++) {
        const pvg_search_hit *h = pvg_search_result_hit(r, i);
        if (!h || !h->ext_id || !(h->score >= 0)) abort();
        if (i && q.sort == PVG_SEARCH_SORT_RELEVANCE &&
            h->score > pvg_search_result_hit(r, i - 1)->score)
            abort();
    }
    const pvg_search_term *t;
    size_t nt = pvg_search_result_terms(r, &t);
    if (nt > PVG_SEARCH_TERMS_MAX) abort();
    for (size_t i = 0; i < nt; i++)
        for (size_t v = 0; v < t[i].n_variants; v++)
            if (strlen(t[i].variants[v].word) > PVG_SEARCH_WORD_MAX + 8) abort();
    const pvg_search_facet *f;
    size_t sum = 0, nf = pvg_search_result_categories(r, &f);
    for (size_t i = 0; i < nf; i++)
        sum += f[i].count;
    if (sum > total) abort();
    pvg_search_result_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pvg_search_index *fixed;
    pvg_error err;
    pvg_error_clear(&err);
    if (!fixed && !(fixed = make_index(NULL, &err))) abort();
    if (size < 3) return 0;
    char *text = fuzz_text(data + 3, size - 3);
    if (data[0] % 2 == 0) {
        run_one(fixed, text, data[1], data[2]);
    } else {
        pvg_search_index *ix = make_index(text, &err);
        if (ix) {
            run_one(ix, "lamp tealight christmas", data[1], data[2]);
            pvg_search_index_free(ix);
        }
    }
    free(text);
    return 0;
}
