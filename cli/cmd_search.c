/*
 * cmd_search.c - `privguide search QUERY`: builds the search index from the
 * store's catalog (src/search) and prints the ranked items, what the query
 * was understood as (corrections, completions, stop words) and the facets.
 */
#include "cli.h"

#include <privguide/search.h>
#include <privguide/store.h>

#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The synonyms file: --synonyms (empty: none), else the installed one
 * (<exe>/../share/privguide/synonyms.txt), else the source tree's (a build
 * dir inside it: <exe>/../data/synonyms.txt). */
static const char *find_synonyms(cli_ctx *c, char *buf, size_t len)
{
    if (cli_has(c, "synonyms")) {
        const char *s = cli_str(c, "synonyms");
        return s && *s ? s : NULL;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    const char *dir = dirname(exe);
    static const char *rel[] = {"../share/privguide/synonyms.txt", "../data/synonyms.txt"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(buf, len, "%s/%s", dir, rel[i]);
        if (access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}

static json_t *jstr(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;
    return j ? j : json_null();
}

static void print_json(const pvg_search_result *r, const char *text)
{
    json_t *terms = json_array();
    const pvg_search_term *t;
    size_t nt = pvg_search_result_terms(r, &t);
    for (size_t i = 0; i < nt; i++) {
        json_t *vars = json_array();
        for (size_t v = 0; v < t[i].n_variants; v++) {
            const pvg_search_variant *x = &t[i].variants[v];
            json_t *jv = json_pack("{s:o, s:s, s:f}", "word", jstr(x->word), "kind",
                                   pvg_search_variant_kind_name(x->kind), "weight", x->weight);
            if (x->kind == PVG_SEARCH_VARIANT_TYPO)
                json_object_set_new(jv, "distance", json_integer(x->distance));
            json_array_append_new(vars, jv);
        }
        json_array_append_new(terms, json_pack("{s:o, s:o, s:b, s:b, s:o}", "word", jstr(t[i].word),
                                               "stem", jstr(t[i].stem), "known", t[i].known,
                                               "prefix", t[i].is_prefix, "variants", vars));
    }
    const char *const *stop;
    size_t ns = pvg_search_result_stopwords(r, &stop);
    json_t *js = json_array();
    for (size_t i = 0; i < ns; i++)
        json_array_append_new(js, jstr(stop[i]));
    json_t *items = json_array();
    for (size_t i = 0; i < pvg_search_result_count(r); i++) {
        const pvg_search_hit *h = pvg_search_result_hit(r, i);
        json_array_append_new(items,
                              json_pack("{s:o, s:o, s:o, s:o, s:f}", "id", jstr(h->ext_id), "title",
                                        jstr(h->title), "category", jstr(h->category), "price",
                                        h->price >= 0 ? json_real(h->price) : json_null(), "score",
                                        isfinite(h->score) ? h->score : 0.0));
    }
    const pvg_search_facet *f;
    size_t nf = pvg_search_result_categories(r, &f);
    json_t *cats = json_array();
    for (size_t i = 0; i < nf; i++)
        json_array_append_new(cats, json_pack("{s:o, s:I}", "category", jstr(f[i].label), "count",
                                              (json_int_t)f[i].count));
    nf = pvg_search_result_price_buckets(r, &f);
    json_t *prices = json_array();
    for (size_t i = 0; i < nf; i++)
        json_array_append_new(
            prices, json_pack("{s:s, s:I}", "range", f[i].label, "count", (json_int_t)f[i].count));
    json_t *o = json_pack("{s:{s:o, s:o, s:o, s:I, s:I}, s:I, s:o, s:{s:o, s:o}}", "query", "text",
                          jstr(text), "terms", terms, "stopwords", js, "dropped",
                          (json_int_t)pvg_search_result_dropped(r), "matched_terms",
                          (json_int_t)pvg_search_result_min_matched(r), "total",
                          (json_int_t)pvg_search_result_total(r), "items", items, "facets",
                          "categories", cats, "price", prices);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
}

static void print_text(const pvg_search_result *r)
{
    const pvg_search_term *t;
    size_t nt = pvg_search_result_terms(r, &t);
    for (size_t i = 0; i < nt; i++) {
        int shown = 0;
        for (size_t v = 0; v < t[i].n_variants; v++) {
            const pvg_search_variant *x = &t[i].variants[v];
            if (x->kind == PVG_SEARCH_VARIANT_EXACT) continue;
            if (x->kind == PVG_SEARCH_VARIANT_PREFIX && shown >= 5) continue;
            printf("%s %s -> %s (%s%s)\n", shown ? " " : "#", t[i].word, x->word,
                   pvg_search_variant_kind_name(x->kind),
                   x->kind == PVG_SEARCH_VARIANT_TYPO ? (x->distance == 1 ? " 1" : " 2") : "");
            shown++;
        }
    }
    size_t total = pvg_search_result_total(r);
    printf("%zu item%s", total, total == 1 ? "" : "s");
    if (nt && pvg_search_result_min_matched(r) < nt)
        printf(" (none has every word: these match %zu of %zu)", pvg_search_result_min_matched(r),
               nt);
    printf("\n");
    for (size_t i = 0; i < pvg_search_result_count(r); i++) {
        const pvg_search_hit *h = pvg_search_result_hit(r, i);
        char price[32] = "-";
        if (h->price >= 0) snprintf(price, sizeof price, "%.2f", h->price);
        printf("%-12s %8s %7.3f  %s%s%s%s\n", h->ext_id, price, h->score, h->title ? h->title : "",
               h->category ? "  [" : "", h->category ? h->category : "", h->category ? "]" : "");
    }
}

static int run_search(cli_ctx *c)
{
    pvg_search_query q;
    pvg_search_query_init(&q);
    q.text = cli_pos(c, 0);
    q.k = (size_t)cli_int_range(c, "k", 10, 1, PVG_SEARCH_K_MAX);
    q.offset = (size_t)cli_int_range(c, "offset", 0, 0, 100000);
    q.category = cli_str(c, "category");
    q.price_min = cli_double(c, "price-min", -1);
    q.price_max = cli_double(c, "price-max", -1);
    if (cli_has(c, "price-min") && !(q.price_min >= 0))
        cli_usage_error(c, "--price-min: want a number >= 0");
    if (cli_has(c, "price-max") && !(q.price_max >= 0))
        cli_usage_error(c, "--price-max: want a number >= 0");
    const char *sort = cli_str(c, "sort");
    if (sort && pvg_search_sort_parse(sort, &q.sort) != PVG_OK)
        cli_usage_error(c, "--sort: want relevance, price, price_asc or price_desc, got \"%.40s\"",
                        sort);
    if (cli_bool(c, "no-typo")) q.flags |= PVG_SEARCH_NO_TYPO;
    if (cli_bool(c, "no-synonyms")) q.flags |= PVG_SEARCH_NO_SYNONYMS;
    if (cli_bool(c, "prefix"))
        q.flags |= PVG_SEARCH_PREFIX_ALL;
    else
        q.flags |= PVG_SEARCH_NO_PREFIX; /* a whole query, unless asked */
    char sbuf[PATH_MAX + 64];
    pvg_search_options o = {0};
    o.synonyms_path = find_synonyms(c, sbuf, sizeof sbuf);
    o.no_stemming = cli_bool(c, "no-stemming");
    int rc = CLI_EXIT_OK;
    pvg_store *s = cli_open_store(c, &rc);
    if (!s) return rc;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_search_index *ix = NULL;
    pvg_status st = pvg_search_index_build(s, &o, &ix, &err);
    pvg_store_free(s);
    if (st != PVG_OK) return cli_fail("search index", st, &err);
    pvg_search_result *r = NULL;
    st = pvg_search_run(ix, &q, &r, &err);
    if (st != PVG_OK) {
        pvg_search_index_free(ix);
        if (st == PVG_ERR_INVALID) cli_usage_error(c, "%s", err.text);
        return cli_fail("search", st, &err);
    }
    if (cli_bool(c, "json"))
        print_json(r, q.text);
    else
        print_text(r);
    pvg_search_result_free(r);
    pvg_search_index_free(ix);
    return CLI_EXIT_OK;
}

static const cli_flag search_flags[] = {
    {"k", CLI_INT, "N", "items to show (default 10)"},
    {"offset", CLI_INT, "N", "items to skip (pages)"},
    {"category", CLI_STR, "NAME", "only this category (case-insensitive)"},
    {"price-min", CLI_DOUBLE, "X", "only items priced at least X"},
    {"price-max", CLI_DOUBLE, "X", "only items priced at most X"},
    {"sort", CLI_STR, "ORDER", "relevance (default), price (low first), price_desc"},
    {"prefix", CLI_BOOL, NULL, "complete the last word (search as you type)"},
    {"no-typo", CLI_BOOL, NULL, "no spelling corrections"},
    {"no-synonyms", CLI_BOOL, NULL, "ignore the synonyms file"},
    {"no-stemming", CLI_BOOL, NULL, "match whole words only (no Snowball stemming)"},
    {"synonyms", CLI_STR, "FILE", "synonyms file (default: the installed one; \"\" for none)"},
    {"json", CLI_BOOL, NULL, "JSON output (the shape of GET /v1/search)"},
    {0},
};

const cli_command cli_cmds_search[] = {
    {"search", "QUERY", 1, 1, "search the catalog",
     "Builds the search index from the store's catalog and prints the best items (id, price,\n"
     "score, title, category), with the corrections and completions applied. Words are\n"
     "stemmed (English), stop words dropped, a misspelt word is corrected (edit distance 1 for\n"
     "4-7 letters, 2 for 8 or more), synonyms come from the synonyms file. The items shown\n"
     "match every word when some item does (else the most words). See docs/search.md.",
     search_flags, run_search},
    {0},
};
