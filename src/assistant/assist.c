/*
 * assist.c - the assistant's conversation (privguide/assistant.h): parse,
 * continue the conversation, retrieve with product search under the hard
 * constraints, re-rank (personally only through the access gate, with
 * consent), explain, and keep the conversation (sealed in the store for a
 * shopper, in memory for an anonymous caller). docs/assistant.md.
 */
#include "assistant/assist_internal.h"

#include <privguide/search.h>

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define K_DEFAULT 5
#define K_MAX 50
#define CANDIDATES_MAX 200 /* candidates re-ranked per answer */
#define SEARCH_PAGE 250
#define SEARCH_PAGES 8  /* at most 2,000 search hits examined for the hard filters */
#define RESULTS_MAX 64  /* search result pages held by one answer */
#define TURNS_MAX 20    /* turns a conversation keeps */
#define HISTORY_MAX 100 /* a shopper's items compared for the personal re-rank */
#define PERSONAL_WEIGHT 0.5
#define POPULAR_WEIGHT 0.1

typedef struct anon_conv {
    char id[2 * PVG_CONVERSATION_ID_BYTES + 1];
    int64_t created_at, touched_at;
    char *json;
} anon_conv;

struct pvg_assistant {
    pthread_mutex_t mu;
    pvg_assistant_options o;
    pvg_search_index *ix;
    pvg_assist_vocab *vocab;
    int64_t built_at;
    char *built_dir;
    anon_conv *anon;
    size_t n_anon, cap_anon;
    pvg_assist_llm *llm; /* NULL: answers are phrased by the built-in text only */
};

static void anon_drop(pvg_assistant *a, size_t i)
{
    if (a->anon[i].json) {
        sodium_memzero(a->anon[i].json, strlen(a->anon[i].json));
        free(a->anon[i].json);
    }
    a->anon[i] = a->anon[--a->n_anon];
}

pvg_status pvg_assistant_new(const pvg_assistant_options *opts, pvg_assistant **out, pvg_error *err)
{
    *out = NULL;
    pvg_assistant *a = calloc(1, sizeof *a);
    if (!a) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (opts) a->o = *opts;
    if (a->o.anon_ttl_s <= 0) a->o.anon_ttl_s = 1800;
    if (!a->o.anon_max) a->o.anon_max = 1000;
    if (a->o.catalog_refresh_s <= 0) a->o.catalog_refresh_s = 300;
    memset(&a->o.llm, 0, sizeof a->o.llm); /* borrowed strings: not kept */
    pvg_status st = pvg_assist_llm_new(opts ? &opts->llm : NULL, &a->llm, err);
    if (st != PVG_OK) {
        free(a);
        return st;
    }
    if (pthread_mutex_init(&a->mu, NULL) != 0) {
        pvg_assist_llm_free(a->llm);
        free(a);
        return pvg_error_set(err, PVG_ERR_INTERNAL, "assistant: cannot create its lock");
    }
    *out = a;
    return PVG_OK;
}

void pvg_assistant_free(pvg_assistant *a)
{
    if (!a) return;
    while (a->n_anon)
        anon_drop(a, 0);
    free(a->anon);
    pvg_search_index_free(a->ix);
    pvg_assist_vocab_free(a->vocab);
    free(a->built_dir);
    pvg_assist_llm_free(a->llm);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* The catalog index and vocabulary, rebuilt when stale or of another store. */
static pvg_status ensure_catalog(pvg_assistant *a, pvg_store *s, pvg_error *err)
{
    int64_t now = pvg_store_now(s);
    const char *dir = pvg_store_dir(s);
    if (a->ix && a->built_dir && strcmp(a->built_dir, dir) == 0 &&
        now - a->built_at < a->o.catalog_refresh_s && now >= a->built_at)
        return PVG_OK;
    pvg_search_index *ix = NULL;
    pvg_assist_vocab *v = NULL;
    pvg_status st = pvg_search_index_build(s, NULL, &ix, err);
    if (st == PVG_OK) st = pvg_assist_vocab_build(s, &v, err);
    char *d = st == PVG_OK ? strdup(dir) : NULL;
    if (st == PVG_OK && !d) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (st != PVG_OK) {
        pvg_search_index_free(ix);
        pvg_assist_vocab_free(v);
        return st;
    }
    pvg_search_index_free(a->ix);
    pvg_assist_vocab_free(a->vocab);
    free(a->built_dir);
    a->ix = ix;
    a->vocab = v;
    a->built_dir = d;
    a->built_at = now;
    return PVG_OK;
}

/* ---- the conversation's state ---- */

typedef struct prev_item {
    char id[96];
    double price;
} prev_item;

typedef struct state {
    json_t *root; /* {"v":1, "created_at", "turns":[...]} */
    int64_t created_at;
    int has_last;
    pvg_assist_constraints last;
    prev_item items[K_MAX];
    size_t n_items;
} state;

static void state_from_text(state *st, const char *text)
{
    json_t *r = json_loads(text, 0, NULL);
    if (!json_is_object(r)) {
        json_decref(r);
        r = NULL;
    }
    if (r) {
        st->root = r;
        json_t *ca = json_object_get(r, "created_at");
        if (json_is_integer(ca)) st->created_at = json_integer_value(ca);
        json_t *turns = json_object_get(r, "turns");
        json_t *last = json_array_get(turns, json_array_size(turns) - 1);
        if (json_is_object(last)) {
            st->has_last = 1;
            pvg_assist_constraints_from_json(json_object_get(last, "constraints"), &st->last);
            size_t i;
            json_t *it;
            json_array_foreach(json_object_get(last, "items"), i, it)
            {
                if (st->n_items == K_MAX) break;
                const char *id = json_string_value(json_object_get(it, "item"));
                json_t *p = json_object_get(it, "price");
                if (!id) continue;
                snprintf(st->items[st->n_items].id, sizeof st->items[0].id, "%s", id);
                st->items[st->n_items].price = json_is_number(p) ? json_number_value(p) : -1;
                st->n_items++;
            }
        }
    }
}

static void on_conversation(void *ctx, const pvg_conversation_view *c)
{
    state *st = ctx;
    state_from_text(st, c->json);
    if (!st->created_at) st->created_at = c->created_at;
}

static anon_conv *anon_find(pvg_assistant *a, const char *id, int64_t now)
{
    for (size_t i = 0; i < a->n_anon;) {
        if (now - a->anon[i].touched_at >= a->o.anon_ttl_s || now < a->anon[i].touched_at - 86400) {
            anon_drop(a, i); /* expired */
            continue;
        }
        if (strcmp(a->anon[i].id, id) == 0) return &a->anon[i];
        i++;
    }
    return NULL;
}

static pvg_status anon_put(pvg_assistant *a, const char *id, int64_t created_at, int64_t now,
                           char *json /* steals */, pvg_error *err)
{
    anon_conv *c = anon_find(a, id, now);
    if (!c) {
        if (a->n_anon >= a->o.anon_max) { /* the cap: the least recently used goes */
            size_t old = 0;
            for (size_t i = 1; i < a->n_anon; i++)
                if (a->anon[i].touched_at < a->anon[old].touched_at) old = i;
            anon_drop(a, old);
        }
        if (a->n_anon == a->cap_anon) {
            size_t cap = a->cap_anon ? a->cap_anon * 2 : 16;
            anon_conv *n = realloc(a->anon, cap * sizeof *n);
            if (!n) {
                free(json);
                return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            }
            a->anon = n;
            a->cap_anon = cap;
        }
        c = &a->anon[a->n_anon++];
        memset(c, 0, sizeof *c);
        snprintf(c->id, sizeof c->id, "%s", id);
        c->created_at = created_at;
    }
    if (c->json) {
        sodium_memzero(c->json, strlen(c->json));
        free(c->json);
    }
    c->json = json;
    c->touched_at = now;
    return PVG_OK;
}

/* ---- follow-ups ---- */

static void add_words(pvg_assist_word *dst, int *n, const pvg_assist_word *src, int m)
{
    for (int i = 0; i < m; i++) {
        int dup = 0;
        for (int j = 0; j < *n; j++)
            if (strcmp(dst[j], src[i]) == 0) dup = 1;
        if (dup) continue;
        if (*n == PVG_ASSIST_LIST_MAX) { /* the oldest word goes */
            memmove(dst, dst + 1, (size_t)(*n - 1) * sizeof *dst);
            (*n)--;
        }
        memcpy(dst[(*n)++], src[i], sizeof *dst);
    }
}

static int cmp_price(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The constraints of a follow-up: the last turn's refined by the new
 * message (docs/assistant.md, "Follow-up turns"). */
static void merge(const state *st, const pvg_assist_constraints *cur, pvg_assist_constraints *out)
{
    *out = st->last;
    out->ref = cur->ref;
    out->ref_index = cur->ref_index;
    out->replace = 0;
    snprintf(out->notes, sizeof out->notes, "%s", cur->notes);
    if (cur->price_min >= 0 || cur->price_max >= 0 || cur->cheap || cur->expensive) {
        out->price_min = cur->price_min;
        out->price_max = cur->price_max;
        out->cheap = cur->cheap;
        out->expensive = cur->expensive;
        if (cur->currency[0]) memcpy(out->currency, cur->currency, sizeof out->currency);
    }
    if (cur->n_categories) {
        memcpy(out->categories, cur->categories, sizeof out->categories);
        out->n_categories = cur->n_categories;
    }
    add_words(out->terms, &out->n_terms, cur->terms, cur->n_terms);
    add_words(out->attributes, &out->n_attributes, cur->attributes, cur->n_attributes);
    add_words(out->exclusions, &out->n_exclusions, cur->exclusions, cur->n_exclusions);
    /* a word the shopper now excludes is no longer a word to match */
    for (int e = 0; e < out->n_exclusions; e++)
        for (int i = 0; i < out->n_terms;)
            if (strcmp(out->terms[i], out->exclusions[e]) == 0)
                memmove(out->terms[i], out->terms[i + 1],
                        (size_t)(--out->n_terms - i) * sizeof out->terms[0]);
            else
                i++;
    if (cur->recipient[0]) memcpy(out->recipient, cur->recipient, sizeof out->recipient);
    if (cur->occasion[0]) memcpy(out->occasion, cur->occasion, sizeof out->occasion);
    if (cur->quantity) out->quantity = cur->quantity;
    if (cur->similar_to[0]) {
        memcpy(out->similar_to, cur->similar_to, sizeof out->similar_to);
        out->similar_is_id = cur->similar_is_id;
    }
    /* references to the last answer's items */
    int idx = cur->ref_index == -2 ? (int)st->n_items - 1 : cur->ref_index;
    if (cur->ref == PVG_ASSIST_REF_SIMILAR && st->n_items) {
        if (idx < 0 || (size_t)idx >= st->n_items) idx = 0;
        snprintf(out->similar_to, sizeof out->similar_to, "%s", st->items[idx].id);
        out->similar_is_id = 1;
        out->ref_index = idx;
    }
    if (cur->ref == PVG_ASSIST_REF_CHEAPER && st->n_items) {
        /* below the referenced item's price, else below the median of the
         * last answer's prices */
        double ref = -1;
        if (idx >= 0 && (size_t)idx < st->n_items)
            ref = st->items[idx].price;
        else {
            double p[K_MAX];
            size_t n = 0;
            for (size_t i = 0; i < st->n_items; i++)
                if (st->items[i].price >= 0) p[n++] = st->items[i].price;
            if (n) {
                qsort(p, n, sizeof *p, cmp_price);
                ref = p[(n - 1) / 2];
            }
        }
        if (ref > 0) {
            double cap = ref - 0.005;
            if (cap < 0) cap = 0;
            out->price_max = out->price_max >= 0 ? fmin(out->price_max, cap) : cap;
            if (out->price_min > out->price_max) out->price_min = -1;
        }
    }
}

/* ---- retrieval and ranking ---- */

typedef struct cand {
    const pvg_search_hit *hit;
    double score;
    int popular_rank; /* 1-based; 0: not in the list */
    double personal;  /* best word overlap with an item the shopper interacted with */
    int personal_item;
    size_t order;
} cand;

typedef struct history {
    char **ids;
    char **titles;
    size_t n, cap;
} history;

static void history_free(history *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->ids[i]);
        free(h->titles[i]);
    }
    free(h->ids);
    free(h->titles);
    memset(h, 0, sizeof *h);
}

static int collect_history(void *ctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    (void)u;
    history *h = ctx;
    /* newest first, distinct items, positive interactions only */
    for (size_t i = n; i-- > 0 && h->n < HISTORY_MAX;) {
        if (!ev[i].item || ev[i].type == PVG_EVENT_RETURN || ev[i].type == PVG_EVENT_SEARCH)
            continue;
        if (ev[i].type == PVG_EVENT_RATING && (ev[i].fields & PVG_FIELD_RATING) && ev[i].rating < 3)
            continue;
        int dup = 0;
        for (size_t j = 0; j < h->n && !dup; j++)
            dup = strcmp(h->ids[j], ev[i].item) == 0;
        if (dup) continue;
        if (h->n == h->cap) {
            size_t cap = h->cap ? h->cap * 2 : 16;
            char **a = realloc(h->ids, cap * sizeof *a);
            if (!a) return 1;
            h->ids = a;
            char **b = realloc(h->titles, cap * sizeof *b);
            if (!b) return 1;
            h->titles = b;
            h->cap = cap;
        }
        h->ids[h->n] = strdup(ev[i].item);
        h->titles[h->n] = NULL;
        if (!h->ids[h->n]) return 1;
        h->n++;
    }
    return 0;
}

/* Distinct content words (lower case, stemmed) of a title into w. */
static int title_words(const char *title, pvg_assist_word *w, int cap)
{
    int n = 0;
    if (!title) return 0;
    char cur[PVG_ASSIST_WORD_MAX];
    size_t k = 0;
    for (const char *p = title;; p++) {
        if (*p && (((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9'))) {
            if (k + 1 < sizeof cur) cur[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            continue;
        }
        if (*p == '-' && k) continue;
        if (k >= 3) {
            cur[k] = '\0';
            char st[PVG_ASSIST_WORD_MAX];
            pvg_assist_stem(cur, st, sizeof st);
            int dup = 0;
            for (int i = 0; i < n; i++)
                dup |= strcmp(w[i], st) == 0;
            if (!dup && n < cap) memcpy(w[n++], st, sizeof st);
        }
        k = 0;
        if (!*p) break;
    }
    return n;
}

static int cmp_cand(const void *x, const void *y)
{
    const cand *a = x, *b = y;
    if (a->score != b->score) return a->score < b->score ? 1 : -1;
    return (a->order > b->order) - (a->order < b->order);
}

static const char *cur_symbol(const char *c)
{
    if (strcmp(c, "USD") == 0) return "$";
    if (strcmp(c, "EUR") == 0) return "\xE2\x82\xAC";
    if (strcmp(c, "GBP") == 0) return "\xC2\xA3";
    return "";
}

/* ---- the answer ---- */

typedef struct ask_ctx {
    pvg_assistant *a;
    pvg_access *g;
    const pvg_assist_request *req;
    pvg_assist_constraints parsed, c;
    state st;
    char id[2 * PVG_CONVERSATION_ID_BYTES + 1];
    int followup;
    const char *personalization;
    history h;
    pvg_assist_word (*hist_words)[16];
    int *hist_n;
    cand *cands;
    size_t n_cands, total_hits;
    pvg_search_result *results[RESULTS_MAX];
    size_t n_results;
    int relaxed; /* leading words dropped to find candidates */
    pvg_assist_word query_words[PVG_SEARCH_TERMS_MAX];
    int n_query_words;
    json_t *answer; /* the answer object, phrased after the lock is released */
} ask_ctx;

/* One search over words[from..n) (pages until CANDIDATES_MAX candidates
 * pass the hard constraints). */
static pvg_status search_pages(ask_ctx *x, pvg_assist_word *words, int from, int n,
                               const char *similar_id, pvg_error *err)
{
    const pvg_assist_constraints *c = &x->c;
    char text[PVG_SEARCH_QUERY_MAX_BYTES] = "";
    size_t tl = 0;
    for (int i = from; i < n; i++) {
        int k = snprintf(text + tl, sizeof text - tl, "%s%s", tl ? " " : "", words[i]);
        if (k < 0 || (size_t)k >= sizeof text - tl) break;
        tl += (size_t)k;
    }
    pvg_search_query q;
    pvg_search_query_init(&q);
    q.text = tl ? text : NULL;
    q.price_min = c->price_min;
    q.price_max = c->price_max;
    if (q.price_min >= 0 && q.price_max >= 0 && q.price_min > q.price_max) q.price_min = -1;
    q.k = SEARCH_PAGE;
    q.flags = PVG_SEARCH_NO_PREFIX;
    x->n_query_words = 0;
    for (size_t page = 0; page < SEARCH_PAGES && x->n_cands < CANDIDATES_MAX; page++) {
        q.offset = page * SEARCH_PAGE;
        pvg_search_result *r = NULL;
        if (x->n_results == RESULTS_MAX) break;
        pvg_status st = pvg_search_run(x->a->ix, &q, &r, err);
        if (st != PVG_OK) return st;
        x->results[x->n_results++] = r;
        if (page == 0) {
            x->total_hits = pvg_search_result_total(r);
            const pvg_search_term *terms = NULL;
            size_t nt = pvg_search_result_terms(r, &terms);
            for (size_t i = 0; i < nt && i < PVG_SEARCH_TERMS_MAX; i++)
                snprintf(x->query_words[x->n_query_words++], PVG_ASSIST_WORD_MAX, "%s",
                         terms[i].word);
        }
        size_t m = pvg_search_result_count(r);
        for (size_t i = 0; i < m && x->n_cands < CANDIDATES_MAX; i++) {
            const pvg_search_hit *h = pvg_search_result_hit(r, i);
            if (similar_id[0] && strcasecmp(h->ext_id, similar_id) == 0) continue;
            pvg_item it = {0};
            it.ext_id = h->ext_id;
            it.title = h->title;
            it.category = h->category;
            it.price = h->price;
            if (!pvg_assist_item_satisfies(c, &it)) continue; /* hard constraints: filters */
            cand *k = &x->cands[x->n_cands];
            k->hit = h;
            k->order = x->n_cands++;
        }
        if (m < SEARCH_PAGE) break;
    }
    return PVG_OK;
}

/* Candidates: the search over the content words (and the title words of a
 * "similar to" item); when nothing passes the hard constraints, the
 * leading words are dropped one by one (the product noun, last, stays
 * longest) and x->relaxed counts them. */
static pvg_status retrieve(ask_ctx *x, pvg_error *err)
{
    const pvg_assist_constraints *c = &x->c;
    pvg_assist_word words[2 * PVG_ASSIST_LIST_MAX + 16];
    int n = 0;
    char similar_id[96] = "";
    if (c->similar_to[0] && c->similar_is_id) {
        pvg_item *it = NULL;
        pvg_error e;
        pvg_error_clear(&e);
        /* the parser gives the catalog's spelling of the id */
        snprintf(similar_id, sizeof similar_id, "%s", c->similar_to);
        if (pvg_store_item_get(x->g->store, similar_id, &it, &e) != PVG_OK) it = NULL;
        if (it && it->title) n = title_words(it->title, words, 16);
        pvg_item_free(it);
    }
    for (int i = 0; i < c->n_terms; i++) {
        int dup = 0;
        for (int j = 0; j < n; j++)
            dup |= strcmp(words[j], c->terms[i]) == 0;
        if (!dup) memcpy(words[n++], c->terms[i], sizeof words[0]);
    }
    x->cands = calloc(CANDIDATES_MAX, sizeof *x->cands);
    if (!x->cands) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    for (int from = 0; from < (n ? n : 1); from++) {
        pvg_status st = search_pages(x, words, from, n, similar_id, err);
        if (st != PVG_OK) return st;
        x->relaxed = from;
        if (x->n_cands) break;
    }
    return PVG_OK;
}

/* The shopper's history through the gate (purpose recommend: consent
 * checked and audited first); personalization says what happened. */
static pvg_status personal(ask_ctx *x, pvg_error *err)
{
    if (!x->req->ext_user) {
        x->personalization = "anonymous";
        return PVG_OK;
    }
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_access_user_events(x->g, PVG_PURPOSE_RECOMMEND, x->req->ext_user,
                                           collect_history, &x->h, &e);
    if (st == PVG_ERR_POLICY) {
        x->personalization = "no_consent";
        history_free(&x->h);
        return PVG_OK;
    }
    if (st == PVG_ERR_NOT_FOUND) {
        x->personalization = "unknown_user";
        history_free(&x->h);
        return PVG_OK;
    }
    if (st == PVG_ERR_ABORTED) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (st != PVG_OK) {
        if (err && st != PVG_ERR_NOMEM) *err = e;
        return st;
    }
    x->personalization = x->h.n ? "applied" : "no_history";
    x->hist_words = calloc(x->h.n ? x->h.n : 1, sizeof *x->hist_words);
    x->hist_n = calloc(x->h.n ? x->h.n : 1, sizeof *x->hist_n);
    if (!x->hist_words || !x->hist_n) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < x->h.n; i++) {
        pvg_item *it = NULL;
        pvg_error e2;
        pvg_error_clear(&e2);
        if (pvg_store_item_get(x->g->store, x->h.ids[i], &it, &e2) == PVG_OK && it->title) {
            x->h.titles[i] = strdup(it->title);
            x->hist_n[i] = title_words(it->title, x->hist_words[i], 16);
        }
        pvg_item_free(it);
    }
    return PVG_OK;
}

static void rank(ask_ctx *x)
{
    double top = 0;
    for (size_t i = 0; i < x->n_cands; i++)
        top = fmax(top, x->cands[i].hit->score);
    for (size_t i = 0; i < x->n_cands; i++) {
        cand *k = &x->cands[i];
        /* relevance (normalised), or catalog order when browsing */
        k->score = top > 0 ? k->hit->score / top : 1.0 - (double)i / (double)(x->n_cands + 1);
        for (size_t p = 0; p < x->req->n_popular; p++)
            if (x->req->popular[p] && strcmp(x->req->popular[p], k->hit->ext_id) == 0) {
                k->popular_rank = (int)p + 1;
                k->score += POPULAR_WEIGHT * (1.0 - (double)p / (double)x->req->n_popular);
                break;
            }
        k->personal_item = -1;
        if (x->hist_n && x->h.n) {
            pvg_assist_word w[16];
            int n = title_words(k->hit->title, w, 16);
            for (size_t hi = 0; hi < x->h.n; hi++) {
                if (strcmp(x->h.ids[hi], k->hit->ext_id) == 0) continue;
                int shared = 0;
                for (int a = 0; a < n; a++)
                    for (int b = 0; b < x->hist_n[hi]; b++)
                        shared += strcmp(w[a], x->hist_words[hi][b]) == 0;
                int uni = n + x->hist_n[hi] - shared;
                double jac = uni ? (double)shared / uni : 0;
                if (jac > k->personal) {
                    k->personal = jac;
                    k->personal_item = (int)hi;
                }
            }
            k->score += PERSONAL_WEIGHT * k->personal;
        }
    }
    qsort(x->cands, x->n_cands, sizeof *x->cands, cmp_cand);
}

static json_t *item_answer(ask_ctx *x, const cand *k)
{
    const pvg_assist_constraints *c = &x->c;
    const pvg_search_hit *h = k->hit;
    json_t *o = json_object();
    json_object_set_new(o, "item", json_string(h->ext_id));
    json_object_set_new(o, "title", h->title ? json_string(h->title) : json_null());
    json_object_set_new(o, "category", h->category ? json_string(h->category) : json_null());
    json_object_set_new(o, "price", h->price >= 0 ? json_real(h->price) : json_null());
    json_object_set_new(o, "score", json_real(k->score));
    json_t *why = json_object();
    json_t *matched = json_array();
    for (int i = 0; i < x->n_query_words && i < 32; i++)
        if (h->matched & (1u << i)) json_array_append_new(matched, json_string(x->query_words[i]));
    json_object_set_new(why, "matched_words", matched);
    json_t *sat = json_array();
    char reason[512];
    size_t rl = 0;
#define R(...)                                                                                     \
    do {                                                                                           \
        int n_ = snprintf(reason + rl, sizeof reason - rl, __VA_ARGS__);                           \
        if (n_ > 0 && (size_t)n_ < sizeof reason - rl) rl += (size_t)n_;                           \
    } while (0)
    if (json_array_size(matched)) {
        R("matches");
        size_t i;
        json_t *w;
        json_array_foreach(matched, i, w) R("%s'%s'", i ? ", " : " ", json_string_value(w));
    }
    const char *sym = cur_symbol(c->currency);
    char buf[96];
    if (c->price_min >= 0 && c->price_max >= 0)
        snprintf(buf, sizeof buf, "between %s%.2f and %s%.2f", sym, c->price_min, sym,
                 c->price_max);
    else if (c->price_max >= 0)
        snprintf(buf, sizeof buf, "under %s%.2f", sym, c->price_max);
    else if (c->price_min >= 0)
        snprintf(buf, sizeof buf, "over %s%.2f", sym, c->price_min);
    else
        buf[0] = '\0';
    if (buf[0]) {
        json_array_append_new(sat, json_string(buf));
        R("%s%s", rl ? ", " : "", buf);
    }
    if (c->n_categories) {
        snprintf(buf, sizeof buf, "a %s", h->category ? h->category : c->categories[0]);
        json_array_append_new(sat, json_string(buf));
        R("%s%s", rl ? ", " : "", buf);
    }
    for (int i = 0; i < c->n_exclusions; i++) {
        snprintf(buf, sizeof buf, "no '%s'", c->exclusions[i]);
        json_array_append_new(sat, json_string(buf));
        R("%s%s", rl ? ", " : "", buf);
    }
    json_object_set_new(why, "constraints_satisfied", sat);
    if (k->popular_rank) {
        json_object_set_new(
            why, "popularity",
            json_pack("{s:i, s:s}", "rank", k->popular_rank, "source", "dp_popular_list"));
        R("%spopular (#%d)", rl ? ", " : "", k->popular_rank);
    } else
        json_object_set_new(why, "popularity", json_null());
    if (c->similar_to[0]) json_object_set_new(why, "similar_to", json_string(c->similar_to));
    if (x->hist_n) {
        json_t *sim = json_array();
        if (k->personal_item >= 0 && k->personal > 0) {
            const char *t = x->h.titles[k->personal_item];
            json_array_append_new(sim,
                                  json_pack("{s:s, s:s?, s:f}", "item", x->h.ids[k->personal_item],
                                            "title", t, "overlap", k->personal));
            R("%slike '%s' you interacted with", rl ? ", " : "",
              t ? t : x->h.ids[k->personal_item]);
        }
        json_object_set_new(why, "similar_interacted", sim);
    }
    if (!rl) R("%s", x->total_hits ? "in the catalog" : "");
#undef R
    json_object_set_new(o, "reason", json_string(reason));
    json_object_set_new(o, "why", why);
    return o;
}

static pvg_status save_turn(ask_ctx *x, json_t *constraints, json_t *items, pvg_error *err)
{
    json_t *root = x->st.root ? json_incref(x->st.root) : json_object();
    int64_t now = pvg_store_now(x->g->store);
    int64_t created = x->st.created_at ? x->st.created_at : now;
    json_object_set_new(root, "v", json_integer(1));
    json_object_set_new(root, "created_at", json_integer(created));
    json_t *turns = json_object_get(root, "turns");
    if (!json_is_array(turns)) {
        turns = json_array();
        json_object_set_new(root, "turns", turns);
    }
    while (json_array_size(turns) >= TURNS_MAX)
        json_array_remove(turns, 0);
    json_t *kept = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        json_array_append_new(kept, json_pack("{s:O, s:O}", "item", json_object_get(it, "item"),
                                              "price", json_object_get(it, "price")));
    }
    json_array_append_new(turns,
                          json_pack("{s:I, s:s, s:O, s:o}", "at", (json_int_t)now, "message",
                                    x->req->message, "constraints", constraints, "items", kept));
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(root);
    if (!text) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    pvg_status st;
    if (x->req->ext_user) {
        st = pvg_access_conversation_write(x->g, x->req->ext_user, x->id, created, text, err);
        sodium_memzero(text, strlen(text));
        free(text);
    } else
        st = anon_put(x->a, x->id, created, now, text, err);
    return st;
}

/* The built-in phrasing of an answer: one sentence naming the items. */
static char *builtin_text(const ask_ctx *x, json_t *items)
{
    const pvg_assist_constraints *c = &x->c;
    size_t n = json_array_size(items);
    char t[1024];
    size_t l = 0;
#define T(...)                                                                                     \
    do {                                                                                           \
        int n_ = snprintf(t + l, sizeof t - l, __VA_ARGS__);                                       \
        if (n_ > 0 && (size_t)n_ < sizeof t - l) l += (size_t)n_;                                  \
    } while (0)
    if (!n)
        T("No item of the catalog satisfies this request");
    else
        T("Here %s %zu item%s", n == 1 ? "is" : "are", n, n == 1 ? "" : "s");
    if (x->n_query_words) {
        T(" for '");
        for (int i = 0; i < x->n_query_words; i++)
            T("%s%s", i ? " " : "", x->query_words[i]);
        T("'");
    }
    const char *sym = cur_symbol(c->currency);
    if (c->price_min >= 0 && c->price_max >= 0)
        T(" between %s%.2f and %s%.2f", sym, c->price_min, sym, c->price_max);
    else if (c->price_max >= 0)
        T(" under %s%.2f", sym, c->price_max);
    else if (c->price_min >= 0)
        T(" over %s%.2f", sym, c->price_min);
    if (c->n_exclusions) T(" without '%s'", c->exclusions[0]);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        if (i == 3) {
            T(" and %zu more", n - 3);
            break;
        }
        const char *title = json_string_value(json_object_get(it, "title"));
        json_t *p = json_object_get(it, "price");
        T("%s%s", i == 0 ? ": " : (i + 1 == n ? " and " : ", "),
          title ? title : json_string_value(json_object_get(it, "item")));
        if (json_is_number(p)) T(" (%s%.2f)", sym, json_number_value(p));
    }
    T(".");
#undef T
    return strdup(t);
}

static pvg_status ask_locked(ask_ctx *x, char **json_out, pvg_error *err)
{
    pvg_assistant *a = x->a;
    const pvg_assist_request *req = x->req;
    pvg_status st = ensure_catalog(a, x->g->store, err);
    if (st != PVG_OK) return st;
    st = pvg_assist_parse(a->vocab, req->message, &x->parsed, err);
    if (st != PVG_OK) return st;
    int64_t now = pvg_store_now(x->g->store);
    if (req->conversation && *req->conversation) {
        size_t bl = 0;
        unsigned char bin[PVG_CONVERSATION_ID_BYTES];
        if (strlen(req->conversation) != 2 * PVG_CONVERSATION_ID_BYTES ||
            sodium_hex2bin(bin, sizeof bin, req->conversation, strlen(req->conversation), NULL, &bl,
                           NULL) != 0 ||
            bl != sizeof bin)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "conversation: expected an id of 32 hexadecimal digits");
        sodium_bin2hex(x->id, sizeof x->id, bin, sizeof bin); /* lower case */
        if (req->ext_user) {
            st = pvg_access_conversation_read(x->g, req->ext_user, x->id, on_conversation, &x->st,
                                              err);
            if (st == PVG_ERR_NOT_FOUND)
                return pvg_error_set(err, st,
                                     "conversation %s: not found for this caller (never "
                                     "started, expired or erased)",
                                     x->id);
            if (st != PVG_OK) return st;
        } else {
            anon_conv *c = anon_find(a, x->id, now);
            if (!c)
                return pvg_error_set(err, PVG_ERR_NOT_FOUND,
                                     "conversation %s: not found for this caller (never "
                                     "started, or expired)",
                                     x->id);
            state_from_text(&x->st, c->json);
            if (!x->st.created_at) x->st.created_at = c->created_at;
        }
        x->followup = x->st.has_last && !x->parsed.replace;
    } else {
        unsigned char bin[PVG_CONVERSATION_ID_BYTES];
        randombytes_buf(bin, sizeof bin);
        sodium_bin2hex(x->id, sizeof x->id, bin, sizeof bin);
    }
    if (x->followup)
        merge(&x->st, &x->parsed, &x->c);
    else
        x->c = x->parsed;
    if ((st = retrieve(x, err)) != PVG_OK) return st;
    if ((st = personal(x, err)) != PVG_OK) return st;
    rank(x);
    size_t k = req->k ? req->k : K_DEFAULT;
    json_t *items = json_array();
    for (size_t i = 0; i < x->n_cands && i < k; i++)
        json_array_append_new(items, item_answer(x, &x->cands[i]));
    json_t *cons = pvg_assist_constraints_to_json(&x->c);
    st = save_turn(x, cons, items, err);
    if (st != PVG_OK) {
        json_decref(items);
        json_decref(cons);
        return st;
    }
    json_t *o = json_object();
    json_object_set_new(o, "conversation", json_string(x->id));
    json_object_set_new(o, "message", json_string(req->message));
    json_object_set_new(o, "followup", json_boolean(x->followup));
    json_object_set_new(o, "constraints", cons);
    if (x->followup) json_object_set_new(o, "parsed", pvg_assist_constraints_to_json(&x->parsed));
    json_object_set_new(o, "personalized", json_boolean(x->hist_n && x->h.n));
    json_object_set_new(o, "personalization", json_string(x->personalization));
    json_object_set_new(o, "stored", json_string(req->ext_user ? "sealed" : "memory"));
    json_object_set_new(o, "candidates", json_integer((json_int_t)x->n_cands));
    if (x->relaxed) json_object_set_new(o, "relaxed_words", json_integer(x->relaxed));
    json_object_set_new(o, "items", items);
    char *text = builtin_text(x, items);
    if (!text) {
        json_decref(o);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    json_object_set_new(o, "answer", json_string(text));
    free(text);
    x->answer = o;
    (void)json_out;
    return PVG_OK;
}

/* The language model's phrasing, when one is configured (outside the
 * assistant's lock: a slow endpoint delays only this answer). Only the
 * message and the answered items' title, price and category are sent; a
 * personalised answer (its items reflect the shopper's history) is not. */
static void phrase(const pvg_assistant *a, const ask_ctx *x, json_t *o)
{
    json_t *items = json_object_get(o, "items");
    char reason[256] = "", failed[320];
    const char *by = "builtin";
    if (!a->llm)
        snprintf(reason, sizeof reason, "no language model configured");
    else if (json_is_true(json_object_get(o, "personalized")))
        snprintf(reason, sizeof reason, "a personalised answer is not sent to the language model");
    else if (!json_array_size(items))
        snprintf(reason, sizeof reason, "no items to phrase");
    else {
        char *text = NULL;
        if (pvg_assist_llm_phrase(a->llm, x->req->message, items, &text, reason, sizeof reason)) {
            json_object_set_new(o, "answer", json_string(text));
            free(text);
            by = "llm";
            reason[0] = '\0';
        } else {
            /* The answer may go to an anonymous caller: name the kind of failure, not
             * libcurl's text (the endpoint's host and port) nor the HTTP status (a 401
             * would tell anyone the operator's key is refused). */
            const char *shown = reason;
            if (!strncmp(reason, "request failed", 14))
                shown = "request failed: no connection or TLS";
            else if (!strncmp(reason, "HTTP status", 11))
                shown = "HTTP error status";
            snprintf(failed, sizeof failed, "language model failed (%s): the built-in answer",
                     shown);
            json_object_set_new(o, "phrasing", json_pack("{s:s, s:s}", "by", by, "reason", failed));
            return;
        }
    }
    json_object_set_new(o, "phrasing",
                        reason[0] ? json_pack("{s:s, s:s}", "by", by, "reason", reason)
                                  : json_pack("{s:s, s:n}", "by", by, "reason"));
}

pvg_status pvg_assistant_ask(pvg_assistant *a, pvg_access *g, const pvg_assist_request *req,
                             char **json_out, pvg_error *err)
{
    *json_out = NULL;
    if (!req || !req->message) return pvg_error_set(err, PVG_ERR_INVALID, "message: required");
    if (req->k > K_MAX)
        return pvg_error_set(err, PVG_ERR_INVALID, "k: expected 1..%d, got %zu", K_MAX, req->k);
    if (req->ext_user && !*req->ext_user)
        return pvg_error_set(err, PVG_ERR_INVALID, "user: empty (leave it out for anonymous)");
    ask_ctx *x = calloc(1, sizeof *x);
    if (!x) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    x->a = a;
    x->g = g;
    x->req = req;
    pthread_mutex_lock(&a->mu);
    pvg_status st = ask_locked(x, json_out, err);
    for (size_t i = 0; i < x->n_results; i++) /* they borrow the index: before it can change */
        pvg_search_result_free(x->results[i]);
    pthread_mutex_unlock(&a->mu);
    if (st == PVG_OK) {
        phrase(a, x, x->answer);
        *json_out =
            json_dumps(x->answer, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        if (!*json_out) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    json_decref(x->answer);
    json_decref(x->st.root);
    free(x->cands);
    free(x->hist_words);
    free(x->hist_n);
    history_free(&x->h);
    free(x);
    return st;
}
