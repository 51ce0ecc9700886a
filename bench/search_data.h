/*
 * search_data.h - catalogs for the search benchmarks (bench/search.c,
 * bench/search_relevance.c): the Online Retail items (StockCode, the first
 * description seen, the first non-negative unit price), the Amazon
 * Musical Instruments items (asin; no titles in the file: the review
 * summaries and texts of each asin become its description attributes), and
 * finding the shared data dir. Static functions, included by both.
 */
#ifndef PVG_BENCH_SEARCH_DATA_H
#define PVG_BENCH_SEARCH_DATA_H

#include "search/search_internal.h"

#include <privguide/import.h>

#include <jansson.h>
#include <zlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sd_item {
    char *ext_id, *title, *category, *attrs;
    double price;
} sd_item;

typedef struct sd_catalog {
    sd_item *items;
    size_t n, cap;
    pvg_smap ids; /* ext_id -> index */
} sd_catalog;

static void sd_free(sd_catalog *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->items[i].ext_id);
        free(c->items[i].title);
        free(c->items[i].category);
        free(c->items[i].attrs);
    }
    free(c->items);
    pvg_smap_free(&c->ids);
    memset(c, 0, sizeof *c);
}

/* The index of ext_id, adding an empty item when new; -1 on NOMEM. */
static long sd_item_of(sd_catalog *c, const char *ext_id)
{
    int added = 0;
    long i = pvg_smap_intern(&c->ids, ext_id, strlen(ext_id), &added);
    if (i < 0 || !added) return i;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        sd_item *it = realloc(c->items, nc * sizeof *it);
        if (!it) return -1;
        c->items = it;
        c->cap = nc;
    }
    sd_item *it = &c->items[c->n++];
    memset(it, 0, sizeof *it);
    it->ext_id = strdup(ext_id);
    it->price = -1;
    return i;
}

/* Finds $PVG_SHARED_DIR/data/<rel> (or <arg>/<rel>, ../shared/data/<rel>,
 * ../../shared/data/<rel>) into out; 0 found, -1 not. */
static int sd_find(const char *arg, const char *rel, char *out, size_t cap)
{
    char envp[900];
    const char *cands[4];
    int nc = 0;
    if (arg) cands[nc++] = arg;
    const char *sh = getenv("PVG_SHARED_DIR");
    if (sh) {
        snprintf(envp, sizeof envp, "%s/data", sh);
        cands[nc++] = envp;
    }
    cands[nc++] = "../shared/data";
    cands[nc++] = "../../shared/data";
    for (int i = 0; i < nc; i++) {
        snprintf(out, cap, "%s/%s", cands[i], rel);
        if (access(out, R_OK) == 0) return 0;
    }
    return -1;
}

/* Online Retail through the library's reader. */
static int sd_load_retail(const char *path, sd_catalog *c)
{
    pvg_reader *r = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    if (pvg_reader_open(path, PVG_FORMAT_ONLINE_RETAIL, NULL, &r, &e) != PVG_OK) {
        fprintf(stderr, "%s: %s\n", path, e.text);
        return -1;
    }
    pvg_record rec;
    int rc;
    while ((rc = pvg_reader_next(r, &rec, &e)) == 1) {
        if (rec.kind == PVG_RECORD_REJECT || !rec.has_item || !rec.item.ext_id) continue;
        long i = sd_item_of(c, rec.item.ext_id);
        if (i < 0) break;
        sd_item *it = &c->items[i];
        if (!it->title && rec.item.title && *rec.item.title) it->title = strdup(rec.item.title);
        if (it->price < 0 && rec.item.price > 0) it->price = rec.item.price;
    }
    pvg_reader_free(r);
    return rc < 0 ? -1 : 0;
}

/* Amazon 5-core reviews: per asin, "summaries" and "reviews" attributes. */
typedef struct sd_text {
    char *s;
    size_t n, cap;
} sd_text;

static int sd_text_add(sd_text *t, const char *s)
{
    size_t l = strlen(s);
    if (t->n + l + 3 > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 4096;
        while (nc < t->n + l + 3)
            nc *= 2;
        char *p = realloc(t->s, nc);
        if (!p) return -1;
        t->s = p;
        t->cap = nc;
    }
    if (t->n) t->s[t->n++] = '\n';
    memcpy(t->s + t->n, s, l);
    t->n += l;
    t->s[t->n] = 0;
    return 0;
}

static int sd_load_amazon(const char *path, sd_catalog *c)
{
    gzFile f = gzopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    sd_text *sum = NULL, *rev = NULL;
    size_t ntext = 0;
    int ok = line != NULL;
    while (ok && gzgets(f, line, (int)cap)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) continue;
        const char *asin = json_string_value(json_object_get(j, "asin"));
        const char *s = json_string_value(json_object_get(j, "summary"));
        const char *t = json_string_value(json_object_get(j, "reviewText"));
        if (asin) {
            long i = sd_item_of(c, asin);
            if (i < 0) ok = 0;
            if (ok && (size_t)i >= ntext) {
                size_t nn = c->cap;
                sd_text *a = realloc(sum, nn * sizeof *a);
                if (a) sum = a;
                sd_text *b = a ? realloc(rev, nn * sizeof *b) : NULL;
                if (b) rev = b;
                if (!a || !b) {
                    ok = 0;
                } else {
                    memset(sum + ntext, 0, (nn - ntext) * sizeof *sum);
                    memset(rev + ntext, 0, (nn - ntext) * sizeof *rev);
                    ntext = nn;
                }
            }
            if (ok && s) ok = sd_text_add(&sum[i], s) == 0;
            if (ok && t) ok = sd_text_add(&rev[i], t) == 0;
        }
        json_decref(j);
    }
    gzclose(f);
    free(line);
    for (size_t i = 0; i < c->n && ok; i++) {
        json_t *a = json_pack("{s:s, s:s}", "summaries", sum[i].s ? sum[i].s : "", "reviews",
                              rev[i].s ? rev[i].s : "");
        c->items[i].attrs = a ? json_dumps(a, JSON_COMPACT) : NULL;
        json_decref(a);
    }
    for (size_t i = 0; i < ntext; i++) {
        free(sum[i].s);
        free(rev[i].s);
    }
    free(sum);
    free(rev);
    return ok ? 0 : -1;
}

/* An index over the catalog; NULL on failure (printed). */
static pvg_search_index *sd_index(const sd_catalog *c, const pvg_search_options *o)
{
    pvg_search_index *ix = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    if (pvg_search_index_new(o, &ix, &e) != PVG_OK) {
        fprintf(stderr, "search index: %s\n", e.text);
        return NULL;
    }
    for (size_t i = 0; i < c->n; i++) {
        pvg_item it;
        memset(&it, 0, sizeof it);
        it.ext_id = c->items[i].ext_id;
        it.title = c->items[i].title;
        it.category = c->items[i].category;
        it.price = c->items[i].price;
        it.attrs_json = c->items[i].attrs;
        it.id = (int64_t)i + 1;
        if (pvg_search_index_add(ix, &it, &e) != PVG_OK) {
            fprintf(stderr, "search index: %s\n", e.text);
            pvg_search_index_free(ix);
            return NULL;
        }
    }
    if (pvg_search_index_finish(ix, &e) != PVG_OK) {
        fprintf(stderr, "search index: %s\n", e.text);
        pvg_search_index_free(ix);
        return NULL;
    }
    return ix;
}

#endif
