/*
 * vocab.c - what the assistant's parser knows of the catalog: category
 * names (stemmed) with their price quartiles, how many titles hold each
 * (stemmed) word, and the item ids. Built from the catalog (public data).
 */
#include "assistant/assist_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct smap_entry {
    char *key;
    long value;
} smap_entry;

typedef struct smap {
    smap_entry *slots;
    size_t cap, n;
} smap;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int smap_grow(smap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 256;
    smap_entry *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        size_t j = hash_str(m->slots[i].key) & (cap - 1);
        while (s[j].key)
            j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = cap;
    return 0;
}

/* The entry of key (created with value 0 when create); NULL when absent or
 * out of memory. */
static smap_entry *smap_get(smap *m, const char *key, int create)
{
    if (m->cap) {
        size_t j = hash_str(key) & (m->cap - 1);
        while (m->slots[j].key) {
            if (strcmp(m->slots[j].key, key) == 0) return &m->slots[j];
            j = (j + 1) & (m->cap - 1);
        }
    }
    if (!create) return NULL;
    if ((m->n + 1) * 2 > m->cap && smap_grow(m)) return NULL;
    size_t j = hash_str(key) & (m->cap - 1);
    while (m->slots[j].key)
        j = (j + 1) & (m->cap - 1);
    m->slots[j].key = strdup(key);
    if (!m->slots[j].key) return NULL;
    m->slots[j].value = 0;
    m->n++;
    return &m->slots[j];
}

static const smap_entry *smap_find(const smap *m, const char *key)
{
    return smap_get((smap *)m, key, 0);
}

static void smap_free(smap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

typedef struct prices {
    double *v;
    size_t n, cap;
    double q1, q3;
} prices;

struct pvg_assist_vocab {
    smap words;     /* stem -> titles holding it */
    smap cats;      /* stem -> index into cat_prices */
    smap ids;       /* upper-case id -> index + 1 into id_text */
    char **id_text; /* ids as the catalog spells them */
    size_t n_ids, cap_ids;
    prices *cat_prices;
    size_t n_cats, cap_cats;
    prices all;
};

static int prices_add(prices *p, double x)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        double *v = realloc(p->v, cap * sizeof *v);
        if (!v) return -1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = x;
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void prices_finish(prices *p)
{
    p->q1 = p->q3 = -1;
    if (!p->n) return;
    qsort(p->v, p->n, sizeof *p->v, cmp_d);
    p->q1 = p->v[(size_t)(0.25 * (double)(p->n - 1))];
    size_t hi = (size_t)(0.75 * (double)(p->n - 1) + 0.999999);
    p->q3 = p->v[hi < p->n ? hi : p->n - 1];
}

static void lower_stem(const char *in, size_t n, char *out, size_t cap)
{
    char w[PVG_ASSIST_WORD_MAX];
    if (n >= sizeof w) n = sizeof w - 1;
    for (size_t i = 0; i < n; i++)
        w[i] = (char)tolower((unsigned char)in[i]);
    w[n] = '\0';
    pvg_assist_stem(w, out, cap);
}

static int add_item(pvg_assist_vocab *v, const pvg_item *it)
{
    if (it->ext_id && *it->ext_id) {
        char id[96];
        size_t n = strlen(it->ext_id);
        if (n >= sizeof id) n = sizeof id - 1;
        for (size_t i = 0; i < n; i++)
            id[i] = (char)toupper((unsigned char)it->ext_id[i]);
        id[n] = '\0';
        smap_entry *e = smap_get(&v->ids, id, 1);
        if (!e) return -1;
        if (!e->value) { /* the first spelling seen is the canonical one */
            if (v->n_ids == v->cap_ids) {
                size_t cap = v->cap_ids ? v->cap_ids * 2 : 256;
                char **a = realloc(v->id_text, cap * sizeof *a);
                if (!a) return -1;
                v->id_text = a;
                v->cap_ids = cap;
            }
            v->id_text[v->n_ids] = strdup(it->ext_id);
            if (!v->id_text[v->n_ids]) return -1;
            e->value = (long)++v->n_ids;
        }
    }
    if (it->title) {
        /* each distinct word of the title once ("T-LIGHT" -> "tlight") */
        char seen[16][PVG_ASSIST_WORD_MAX];
        int n_seen = 0;
        const char *p = it->title;
        while (*p) {
            char raw[PVG_ASSIST_WORD_MAX];
            size_t n = 0;
            while (*p && !isalnum((unsigned char)*p))
                p++;
            while (*p && (isalnum((unsigned char)*p) ||
                          (*p == '-' && n && isalpha((unsigned char)p[1])))) {
                if (*p != '-' && n + 1 < sizeof raw) raw[n++] = *p;
                p++;
            }
            if (n < 2) continue;
            char st[PVG_ASSIST_WORD_MAX];
            lower_stem(raw, n, st, sizeof st);
            int dup = 0;
            for (int i = 0; i < n_seen; i++)
                if (strcmp(seen[i], st) == 0) dup = 1;
            if (dup) continue;
            if (n_seen < 16) memcpy(seen[n_seen++], st, sizeof st);
            smap_entry *e = smap_get(&v->words, st, 1);
            if (!e) return -1;
            e->value++;
        }
    }
    if (it->price >= 0 && prices_add(&v->all, it->price)) return -1;
    if (it->category && *it->category) {
        char st[PVG_ASSIST_WORD_MAX];
        lower_stem(it->category, strlen(it->category), st, sizeof st);
        smap_entry *e = smap_get(&v->cats, st, 1);
        if (!e) return -1;
        if (e->value == 0) {
            if (v->n_cats == v->cap_cats) {
                size_t cap = v->cap_cats ? v->cap_cats * 2 : 64;
                prices *np = realloc(v->cat_prices, cap * sizeof *np);
                if (!np) return -1;
                v->cat_prices = np;
                v->cap_cats = cap;
            }
            memset(&v->cat_prices[v->n_cats], 0, sizeof v->cat_prices[0]);
            e->value = (long)++v->n_cats; /* index + 1 */
        }
        prices *cp = &v->cat_prices[e->value - 1];
        /* the count of items lives in n; an unknown price is kept as -1 and
         * dropped before the quartiles */
        if (prices_add(cp, it->price)) return -1;
    }
    return 0;
}

static void finish(pvg_assist_vocab *v)
{
    prices_finish(&v->all);
    for (size_t i = 0; i < v->n_cats; i++) {
        prices *p = &v->cat_prices[i];
        size_t k = 0;
        for (size_t j = 0; j < p->n; j++)
            if (p->v[j] >= 0) p->v[k++] = p->v[j];
        size_t total = p->n;
        p->n = k;
        prices_finish(p);
        p->n = total; /* items in the category */
    }
}

void pvg_assist_vocab_free(pvg_assist_vocab *v)
{
    if (!v) return;
    smap_free(&v->words);
    smap_free(&v->cats);
    smap_free(&v->ids);
    for (size_t i = 0; i < v->n_ids; i++)
        free(v->id_text[i]);
    free(v->id_text);
    for (size_t i = 0; i < v->n_cats; i++)
        free(v->cat_prices[i].v);
    free(v->cat_prices);
    free(v->all.v);
    free(v);
}

pvg_status pvg_assist_vocab_from_items(const pvg_item *items, size_t n, pvg_assist_vocab **out,
                                       pvg_error *err)
{
    *out = NULL;
    pvg_assist_vocab *v = calloc(1, sizeof *v);
    if (!v) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (add_item(v, &items[i])) {
            pvg_assist_vocab_free(v);
            return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        }
    finish(v);
    *out = v;
    return PVG_OK;
}

typedef struct build_ctx {
    pvg_assist_vocab *v;
    int oom;
} build_ctx;

static int build_one(void *ctx, const pvg_item *it)
{
    build_ctx *b = ctx;
    if (!it->catalog) return 0;
    if (add_item(b->v, it)) {
        b->oom = 1;
        return 1;
    }
    return 0;
}

pvg_status pvg_assist_vocab_build(pvg_store *s, pvg_assist_vocab **out, pvg_error *err)
{
    *out = NULL;
    build_ctx b = {calloc(1, sizeof(pvg_assist_vocab)), 0};
    if (!b.v) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    pvg_status st = pvg_store_items_foreach(s, build_one, &b, err);
    if (b.oom) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (st != PVG_OK) {
        pvg_assist_vocab_free(b.v);
        return st;
    }
    finish(b.v);
    *out = b.v;
    return PVG_OK;
}

double pvg_assist_vocab_quartile(const pvg_assist_vocab *v, const char *category, int upper)
{
    const prices *p = &v->all;
    if (category && *category) {
        const smap_entry *e = smap_find(&v->cats, category);
        if (e && v->cat_prices[e->value - 1].q1 >= 0) p = &v->cat_prices[e->value - 1];
    }
    return upper ? p->q3 : p->q1;
}

long pvg_assist_vocab_word_count(const pvg_assist_vocab *v, const char *stem)
{
    const smap_entry *e = smap_find(&v->words, stem);
    return e ? e->value : 0;
}

int pvg_assist_vocab_is_category(const pvg_assist_vocab *v, const char *stem)
{
    if (!v) return 0;
    const smap_entry *e = smap_find(&v->cats, stem);
    return e && v->cat_prices[e->value - 1].n >= 3;
}

int pvg_assist_vocab_has_id(const pvg_assist_vocab *v, const char *id)
{
    char up[96];
    size_t n = strlen(id);
    if (n >= sizeof up) return 0;
    for (size_t i = 0; i < n; i++)
        up[i] = (char)toupper((unsigned char)id[i]);
    up[n] = '\0';
    return smap_find(&v->ids, up) != NULL;
}

int pvg_assist_vocab_canonical_id(const pvg_assist_vocab *v, const char *id, char *out, size_t cap)
{
    char up[96];
    size_t n = strlen(id);
    if (n >= sizeof up) return 0;
    for (size_t i = 0; i < n; i++)
        up[i] = (char)toupper((unsigned char)id[i]);
    up[n] = '\0';
    const smap_entry *e = smap_find(&v->ids, up);
    if (!e) return 0;
    snprintf(out, cap, "%s", v->id_text[e->value - 1]);
    return 1;
}
